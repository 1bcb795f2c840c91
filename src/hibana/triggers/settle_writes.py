"""A worker's settlements on their way to the store: all that end in one loop turn go in
one call, in the order asked; and, at the worker's shutdown, the wait for them (and for
the invocations still running) before it exits (``drained``).

The queue consumer (``triggers.queue``) adds what its invocations' outcomes make of their
deliveries (``triggers.settlement``) and the renewals of their leases.
"""

from __future__ import annotations

import asyncio
import time

from hibana.errors import StoreError
from hibana.store.base import Settle, Store
from hibana.telemetry.logs import Logger

#: Seconds a worker that stops gives the settlements of what it abandoned at its
#: shutdown_timeout (a store that answers writes them in milliseconds).
LAST_WRITES = 1.0


class SettleWrites:
    """The settlements of one worker's queue consumer, and its drain at shutdown."""

    def __init__(self, store: Store, log: Logger, running: set[asyncio.Task[None]]) -> None:
        self.store = store
        self.log = log
        #: The consumer's invocations running (its set, filled and emptied by it).
        self._running = running
        #: Settlements not yet handed to the store (all that end in one loop turn go in
        #: one call), and the calls under way.
        self._settles: list[Settle] = []
        #: ... each with the settlements it sends (the list it takes, filled until then).
        self._flushes: dict[asyncio.Task[None], list[Settle]] = {}
        #: The call that will send ``_settles``.
        self._sending: asyncio.Task[None] | None = None
        #: When ``drained`` returns at the latest (``drain_by``), and what wakes it to see.
        self._drain_by: float | None = None
        self._hurry = asyncio.Event()

    async def drained(self, deadline: float | None = None) -> list[int]:
        """Return once every delivery this worker held is settled, or at ``deadline``
        (monotonic), or the one ``drain_by`` gives meanwhile, the sooner (past it, or
        near, ``LAST_WRITES`` from the call: the releases of what was abandoned at it).
        Returns the ids of the messages whose settlements the store has not taken by then
        (it cannot be reached: they are held, see ``Store._hold``)."""
        began = time.monotonic()
        if deadline is not None:
            self.drain_by(deadline)
        told = False
        while self._running or self._flushes:
            left = None
            if self._drain_by is not None:
                left = max(self._drain_by, began + LAST_WRITES) - time.monotonic()
                if left <= 0:
                    break
            wake = left
            if not told:
                # a store that answers takes them in milliseconds: one that has not in
                # LAST_WRITES is away, and the worker says what it waits for
                since = time.monotonic() - began
                if since >= LAST_WRITES and self._flushes:
                    told = True
                    self.log.warning(
                        "waiting for the store to take settlements before this worker "
                        "exits (it has not answered them in a second)",
                        message_ids=self._unsettled(),
                        seconds=None if left is None else round(left, 1),
                    )
                elif since < LAST_WRITES:
                    wake = LAST_WRITES - since if left is None else min(left, LAST_WRITES - since)
            self._hurry.clear()
            hurried = asyncio.ensure_future(self._hurry.wait())
            await asyncio.wait(
                {*self._running, *self._flushes, hurried},
                timeout=wake,
                return_when=asyncio.FIRST_COMPLETED,
            )
            hurried.cancel()
        return self._unsettled()

    def drain_by(self, deadline: float) -> None:
        """Have ``drained`` (under way, or to come) return by ``deadline`` (monotonic), if
        that is sooner than it would: a worker told to stop as it drains (retiring)."""
        if self._drain_by is None or deadline < self._drain_by:
            self._drain_by = deadline
            self._hurry.set()

    def _unsettled(self) -> list[int]:
        """The messages whose settlements are asked for and not taken yet."""
        return sorted({s.id for b in self._flushes.values() for s in b if s.kind != "extend"})

    def add(self, settles: list[Settle]) -> asyncio.Task[None]:
        """Settle ``settles``: with all that end in this loop turn, in one call at the
        next (the task returned). Not after the calls still under way: the store writes
        them in the order asked, so a settlement goes before this worker's next claim (a
        message whose lease ran out while the store was away would be claimed again:
        ``Store._hold``)."""
        task = self._sending
        if not self._settles or task is None:
            self._sending = task = asyncio.create_task(self._send_settles())
            self._flushes[task] = self._settles
            task.add_done_callback(self._flushes.pop)
        self._settles.extend(settles)
        return task

    async def _send_settles(self) -> None:
        batch, self._settles = self._settles, []
        try:
            await self.store.settle_many(batch)
        except StoreError as exc:
            # The leases run out and the messages come back: at least once holds.
            self.log.error(
                "cannot settle messages; they will be delivered again once their leases end",
                messages=len(batch),
                message_ids=sorted({s.id for s in batch}),
                error=str(exc),
            )
