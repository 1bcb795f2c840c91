"""What wakes a worker's idle queue claim loops besides their polls: the store's change
watcher (PostgreSQL's LISTEN, a watch of SQLite's WAL file), read only while some loop is idle,
and made again when it broke. The loops are ``triggers.queue``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from hibana.store.base import ChangeWatcher, Store

#: How long an idle consumer waits between claims at most (a local enqueue wakes it).
IDLE_POLL_MAX = 0.05
#: How long at most while the store's watcher wakes it at every commit.
IDLE_WATCHED_MAX = 1.0
#: Seconds between attempts to make the store's watcher again once it broke (its
#: PostgreSQL LISTEN connection dropped): until then, idle loops poll every IDLE_POLL_MAX.
REWATCH_EVERY = 5.0


class Wakeups:
    """The store's change watcher of one worker's queue consumer: it sets every event of
    ``wake`` (by queue, the consumer's) at each commit while some claim loop is idle."""

    def __init__(self, store: Store, wake: dict[str, asyncio.Event]) -> None:
        self.store = store
        self._wake = wake
        self._stopping = False
        self._watcher: ChangeWatcher | None = None
        self._watching = False
        #: The store has a watcher (it had one at start): a broken one is made again.
        self._watchable = False
        self._rewatching = False
        self._rewatch_at = 0.0
        self._idle_loops = 0

    def start(self) -> None:
        # Wake at once when anyone (another worker, host or the CLI) enqueues; the polls
        # remain, in case a wake-up is lost. Watched only while some loop is idle: a busy
        # store writes all the time, and every write would wake this thread.
        self._watcher = self.store.watcher()
        self._watchable = self._watcher is not None

    def stop(self) -> None:
        """Watch no more (the consumer stops)."""
        self._stopping = True
        self._unwatch()

    def _rewatch(self) -> None:
        """Make the watcher again after it broke, off the loop (a connect may wait), at
        most every ``REWATCH_EVERY`` seconds: a PostgreSQL restart would otherwise leave
        every idle loop polling the store for good."""
        now = time.monotonic()
        if not self._watchable or self._rewatching or self._stopping or now < self._rewatch_at:
            return
        self._rewatch_at = now + REWATCH_EVERY
        self._rewatching = True
        made = asyncio.get_running_loop().run_in_executor(None, self.store.watcher)

        def done(future: asyncio.Future[ChangeWatcher | None]) -> None:
            self._rewatching = False
            watcher = None if future.cancelled() or future.exception() else future.result()
            if watcher is None:
                return
            if self._stopping or self._watcher is not None:
                watcher.close()
                return
            self._watcher = watcher
            if self._idle_loops > 0:
                self._idle_loops -= 1
                self.idle(True)  # watched from now on, as if the loop had just gone idle

        made.add_done_callback(done)

    def idle(self, on: bool) -> None:
        """A claim loop starts (or stops) waiting for messages."""
        self._idle_loops += 1 if on else -1
        watcher = self._watcher
        if watcher is None:
            if on:
                self._rewatch()
            return
        loop = asyncio.get_running_loop()
        try:
            if self._idle_loops > 0 and not self._watching:
                # what was written while nobody listened is not news; a watcher that broken
                # meanwhile (its connection dropped) is given up: the polls remain
                if not watcher.drain():
                    self._unwatch()
                    return
                loop.add_reader(watcher.fileno(), self._changed)
                self._watching = True
            elif self._idle_loops == 0 and self._watching:
                loop.remove_reader(watcher.fileno())
                self._watching = False
        except Exception:
            self._unwatch()

    async def idle_wait(self, queue: str, idle: float) -> float:
        """How long an idle claim loop waits for a wake-up. Once it has backed off to
        ``IDLE_POLL_MAX``, with the store's watcher waking it at every commit, only a
        hidden message (delayed, retried later, or leased by a worker that died) can
        show unannounced: it waits until the first one does, ``IDLE_WATCHED_MAX`` at
        most, instead of polling."""
        if idle < IDLE_POLL_MAX or not self._watching:
            return idle
        try:
            due = await self.store.next_visible((queue,))
        except Exception:  # the store: the claim that follows will say what is wrong
            return idle
        # 0: one can be claimed now, but the claim found none (a concurrency group is
        # full, or another worker took it): poll as before
        return IDLE_WATCHED_MAX if due is None else min(max(due, idle), IDLE_WATCHED_MAX)

    def _changed(self) -> None:
        watcher = self._watcher
        if watcher is None:
            return
        if not watcher.drain():
            self._unwatch()
        for event in self._wake.values():
            event.set()

    def _unwatch(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            if self._watching:
                with contextlib.suppress(Exception):
                    asyncio.get_running_loop().remove_reader(watcher.fileno())
                self._watching = False
            with contextlib.suppress(Exception):
                watcher.close()
