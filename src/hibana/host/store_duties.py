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
import time
from collections.abc import Callable
from typing import Any

from hibana.errors import StoreError
from hibana.store.base import ChangeWatcher, QueueInfo, QueueStats, Store, SubscriptionInfo
from hibana.timers import Schedule
from hibana.triggers.queue_wakeups import REWATCH_EVERY
from hibana.triggers.timer import TimerScheduler, TimerSpec

#: How often the queues are looked at for waiting messages.
WATCH_INTERVAL = 0.05
#: How often at most while workers run and the queues stay empty (a backlog that builds
#: meanwhile adds workers this much later: the workers themselves take it at once).
QUIET_INTERVAL = 0.5
#: How often, at most, while no worker runs and the store's watcher wakes this thread at
#: every commit: in between it sleeps until a hidden message shows or a timer is due.
IDLE_INTERVAL = 1.0
#: The least time between two looks, however often enqueues wake the watch.
MIN_GAP = 0.005
#: How often the queue figures ``hibana status`` shows are refreshed, at most; a store
#: that takes long to count them (a deep PostgreSQL backlog: about 0.2 s a million
#: messages) is asked less often, so counting takes at most 1/STATS_SHARE of its time.
STATS_INTERVAL = 2.0
STATS_SHARE = 20
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
        #: The latest queue figures (for ``hibana status``), and when they were read.
        self.stats: list[QueueStats] = []
        self.stats_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher: ChangeWatcher | None = None
        #: The store has a watcher (it had one at start): one that broke is made again.
        self._watchable = False
        self._rewatch_at = 0.0
        self._changed = asyncio.Event()
        #: Wake at every enqueue (see watch_closely); starts so: no worker runs yet.
        self._close = True
        self._reading = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hibana-store-duties", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        asyncio.run(self._main())

    def watch_closely(self, on: bool) -> None:
        """Wake at every enqueue (no worker runs: one must start at once), or only at the
        interval (workers run and find the messages themselves): a busy store's commits
        would otherwise wake this thread thousands of times a second."""
        if on == self._close:
            return
        self._close = on
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has stopped
                loop.call_soon_threadsafe(self._set_reader)

    def _set_reader(self) -> None:
        """Follow ``_close`` (in the loop's thread)."""
        loop, watcher = self._loop, self._watcher
        if loop is None or watcher is None or self._reading == self._close:
            return
        self._reading = self._close
        if self._reading:
            loop.add_reader(watcher.fileno(), self._on_change)
        else:
            loop.remove_reader(watcher.fileno())
            self._changed.set()  # out of an idle sleep: workers run, look as often as they need

    async def _rewatch(self) -> None:
        """Make the watcher again once it broke (a PostgreSQL restart), off the loop (a
        connect may wait), at most every ``REWATCH_EVERY`` seconds: else a host with no
        worker running saw a message only at its next look, ``IDLE_INTERVAL`` later, for
        good."""
        now = time.monotonic()
        if self._watcher is not None or not self._watchable or now < self._rewatch_at:
            return
        self._rewatch_at = now + REWATCH_EVERY
        watcher = await asyncio.to_thread(self.store.watcher)
        if watcher is None:
            return
        if self._stop.is_set():
            watcher.close()
            return
        self._watcher = watcher
        self._set_reader()

    def _on_change(self) -> None:
        watcher = self._watcher
        if watcher is not None and not watcher.drain():
            # its connection dropped: give it up; the interval still finds the messages
            assert self._loop is not None
            with contextlib.suppress(Exception):
                self._loop.remove_reader(watcher.fileno())
                watcher.close()
            self._reading = False
            self._watcher = None
        self._changed.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._watcher = self.store.watcher()
        self._watchable = self._watcher is not None
        self._set_reader()
        try:
            await self._watch(self._changed)
        finally:
            watcher, self._watcher = self._watcher, None
            if watcher is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(watcher.fileno())
                watcher.close()

    async def _watch(self, changed: asyncio.Event) -> None:
        failures = 0
        started = False
        next_purge = time.monotonic() + PURGE_INTERVAL
        next_stats = 0.0
        quiet = WATCH_INTERVAL  # the look's interval while workers run
        while not self._stop.is_set():
            changed.clear()
            await self._rewatch()
            try:
                if not started:
                    await self.store.declare(self.infos)
                    await self.store.subscribe(self.subscriptions)
                    await self.scheduler.start()
                    started = True
                until_timer = await self.scheduler.tick()
                waiting = await self.store.ready(self.queues) > 0 if self.queues else False
                was, self.pending = self.pending, waiting
                if waiting and not was:
                    # after ``pending`` is set: woken, the supervisor reads it at once (had
                    # it read False, it slept its idle tick, 1 s, before starting a worker)
                    with contextlib.suppress(OSError):
                        self.wake.send(b"q")
                if time.monotonic() >= next_stats:
                    began = time.monotonic()
                    mine = set(self.queues)
                    self.stats = [q for q in await self.store.stats() if q.queue in mine]
                    self.stats_at = time.monotonic()
                    took = self.stats_at - began
                    next_stats = self.stats_at + max(STATS_INTERVAL, STATS_SHARE * took)
                if time.monotonic() >= next_purge:
                    next_purge = time.monotonic() + PURGE_INTERVAL
                    await self.store.purge()
                failures = 0
            except StoreError as exc:
                failures += 1
                if failures == 1 or failures % 100 == 0:
                    self.report(f"error: {exc}; retrying")
                await asyncio.sleep(min(1.0, 0.05 * failures))
                continue
            # Workers run and claim for themselves: we look for a backlog (to add
            # workers) every WATCH_INTERVAL while there is one, backing off to
            # QUIET_INTERVAL while the queues stay empty.
            quiet = WATCH_INTERVAL if waiting else min(quiet * 2, QUIET_INTERVAL)
            wait = min(quiet, until_timer)
            if self._reading and not waiting and self.queues:
                # Idle: every commit wakes us, so only a message that is hidden now
                # (delayed, retried later, leased by a worker that died) can show
                # unannounced. Sleep until the first one does.
                try:
                    due = await self.store.next_visible(self.queues)
                except StoreError:
                    due = WATCH_INTERVAL
                if due is not None:  # (0 if a message came since `ready`: look again soon)
                    wait = min(max(due, WATCH_INTERVAL), IDLE_INTERVAL, until_timer)
                else:
                    wait = min(IDLE_INTERVAL, until_timer)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), wait)
            # under load every commit wakes us: look at most every MIN_GAP seconds
            await asyncio.sleep(MIN_GAP)
