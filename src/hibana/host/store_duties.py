"""The host's own store work, on a thread of the supervisor with its own event loop:
declare the app's queues, fire timers, watch the queues while no worker runs (so a
message wakes one, as a connection does), and forget expired idempotency keys.

The supervisor's select loop never waits on the store; this thread tells it that work
is waiting by writing a byte to ``wake``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any

from hibana.errors import StoreError
from hibana.store.base import QueueInfo, Store, SubscriptionInfo
from hibana.timers import Schedule
from hibana.triggers.timer import TimerScheduler, TimerSpec

#: How often the queues are looked at for waiting messages.
WATCH_INTERVAL = 0.05
#: How often expired idempotency keys are deleted.
PURGE_INTERVAL = 300.0


class StoreDuties:
    def __init__(
        self,
        store: Store,
        functions: list[dict[str, Any]],
        wake: socket.socket,
        report: Callable[[str], None],
    ) -> None:
        self.store = store
        self.report = report
        self.wake = wake
        self.queues = [fn["queue"] for fn in functions if fn["kind"] in ("queue", "timer", "event")]
        self.infos = [
            QueueInfo(fn["queue"], fn["name"], int(fn["max_attempts"]))
            for fn in functions
            if fn["kind"] in ("queue", "event")
        ]
        self.subscriptions = [
            SubscriptionInfo(fn["name"], fn["topic"], fn["queue"], fn["filter"])
            for fn in functions
            if fn["kind"] == "event"
        ]
        self.scheduler = TimerScheduler(
            store,
            [
                TimerSpec(
                    fn["name"],
                    fn["queue"],
                    Schedule(fn["schedule"], fn["tz"]),
                    bool(fn["run_on_startup"]),
                )
                for fn in functions
                if fn["kind"] == "timer"
            ],
            report,
        )
        #: Messages are visible now in one of the app's queues.
        self.pending = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hibana-store-duties", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        failures = 0
        started = False
        purge_in = PURGE_INTERVAL
        while not self._stop.is_set():
            try:
                if not started:
                    await self.store.declare(self.infos)
                    await self.store.subscribe(self.subscriptions)
                    await self.scheduler.start()
                    started = True
                until_timer = await self.scheduler.tick()
                waiting = await self.store.ready(self.queues) > 0 if self.queues else False
                if waiting and not self.pending:
                    with contextlib.suppress(OSError):
                        self.wake.send(b"q")
                self.pending = waiting
                purge_in -= WATCH_INTERVAL
                if purge_in <= 0:
                    purge_in = PURGE_INTERVAL
                    await self.store.purge()
                failures = 0
            except StoreError as exc:
                failures += 1
                if failures == 1 or failures % 100 == 0:
                    self.report(f"error: {exc}; retrying")
                await asyncio.sleep(min(1.0, 0.05 * failures))
                continue
            await asyncio.sleep(min(WATCH_INTERVAL, until_timer))
