"""The timer trigger's scheduler. It runs in the host (supervisor), never in a worker:
at each slot it records the fire in the store and enqueues a message on the timer's own
queue, in one transaction (or, when one still waits there, behind a run that takes longer
than the period, makes that one the new slot, past due: a slow timer has one run waiting,
not a backlog that grows for ever; a startup run waiting there is no slot's, and is run as
well). The fire record is unique per (function, slot), so a slot fires once across every
host sharing the store, whichever gets there first; a worker (started from zero if need be)
consumes the message like any queue message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from hibana.store.base import NewMessage, Store
from hibana.timers import Schedule

_encode = msgspec.json.encode

#: A timer's slot run later than this is past due (the host was busy or asleep, or the
#: run before it took longer than the period).
LATE_AFTER = 5.0


def timer_body(slot: float, past_due: bool, on_startup: bool = False) -> bytes:
    """A timer message's body; a startup run's begins with ``STARTUP_RUN_PREFIX``, so the
    store tells it from a slot's (and never makes it the next slot's)."""
    if on_startup:
        return _encode({"on_startup": True, "slot": slot, "past_due": past_due})
    return _encode({"slot": slot, "past_due": past_due, "on_startup": False})


@dataclass(slots=True)
class TimerSpec:
    function: str
    queue: str
    schedule: Schedule
    run_on_startup: bool
    next_slot: float = 0.0
    #: Its missed slot and startup run are sent: ``start`` tried again (the store failed
    #: on a later timer's) does not send its startup run twice.
    started: bool = False


class TimerScheduler:
    def __init__(
        self,
        store: Store,
        timers: list[TimerSpec],
        report: Callable[[str], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.timers = timers
        self.report = report
        self.clock = clock

    async def start(self) -> None:
        """Fire the one missed slot of each timer that missed some (``past_due``, unless
        it is the one slot since the last fire, and only just come), and the startup runs
        (none where one waits unclaimed: it runs after this start too); then wait for the
        next slots."""
        now = self.clock()
        for t in self.timers:
            if t.started:
                continue
            last = await self.store.last_fire(t.function)
            latest = t.schedule.last_at_or_before(now)
            if last is not None and last < latest:
                # past due as ``tick`` tells it: slots before it went unfired, or it is
                # late. Not a slot that came a moment ago, which the host running the
                # timer had yet to fire (this one starts beside it): that one is on time.
                skipped = t.schedule.next_after(last) < latest
                await self._fire(t, latest, past_due=skipped or now - latest > LATE_AFTER)
            if t.run_on_startup:
                await self.store.startup_run(
                    NewMessage(t.queue, timer_body(now, past_due=False, on_startup=True))
                )
            t.next_slot = t.schedule.next_after(now)
            t.started = True

    async def tick(self) -> float:
        """Fire every slot that is due; returns the seconds until the next one."""
        now = self.clock()
        for t in self.timers:
            if t.next_slot > now:
                continue
            latest = t.schedule.last_at_or_before(now)
            # Fell behind by more than a slot (a suspended machine, say): fire the latest
            # slot once, past due, rather than once per missed slot.
            behind = latest > t.next_slot
            slot = latest if behind else t.next_slot
            await self._fire(t, slot, past_due=behind or now - slot > LATE_AFTER)
            t.next_slot = t.schedule.next_after(max(slot, now))
        if not self.timers:
            return 3600.0
        return max(0.0, min(t.next_slot for t in self.timers) - self.clock())

    async def _fire(self, t: TimerSpec, slot: float, past_due: bool) -> None:
        # A slot whose message takes the place of one still waiting stands for a slot that
        # is skipped, so it is past due, as one fired after the host fell behind is; and a
        # past-due slot waiting (for the first worker of a host that was down) keeps the
        # mark when the next slot comes before a worker takes it.
        await self.store.fire_timer(
            t.function,
            slot,
            NewMessage(t.queue, timer_body(slot, past_due=past_due)),
            replacing=timer_body(slot, past_due=True),
        )
