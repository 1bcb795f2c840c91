"""Cron schedules for timer functions, and what a timer function receives (``TimerInfo``).

5 fields (minute hour day month weekday) or 6 with seconds first, as Azure Functions
writes them: ``*/10 * * * * *`` is every ten seconds. Slots are computed in the
schedule's time zone, so ``0 9 * * *`` with ``tz="Asia/Tokyo"`` is 09:00 in Tokyo. Across
a daylight saving change it does as cron does: a time the clocks skip (02:30 in spring) runs
when they land (03:00), and one they go back over (01:30 in autumn) runs once, unless the
schedule runs every hour anyway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from croniter import croniter


#: Cron's nicknames, and the schedule each stands for.
_NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


#: An H of a field (Jenkins' hashed value), not one of a name (THU); and what stands for it
#: in the schedule an error suggests: H/15 is */15.
_HASHED = re.compile(r"(?<![a-z])h(?![a-z])(/?)", re.IGNORECASE)


def _for_hashed(match: re.Match[str]) -> str:
    return "*/" if match.group(1) else "17"


class ScheduleError(ValueError):
    """A cron expression or time zone that does not parse; the message says why."""


@dataclass(frozen=True, slots=True)
class Schedule:
    expression: str
    tz: str = "UTC"

    def __post_init__(self) -> None:
        fields = self.expression.split()
        nickname = self.expression.strip().lower()
        if nickname == "@reboot":
            raise ScheduleError(
                f"cron expression {self.expression!r} is no schedule here; for a run when the "
                "host starts, pass run_on_startup=True beside a schedule"
            )
        if nickname in _NICKNAMES:
            raise ScheduleError(
                f"cron expression {self.expression!r} is a nickname hibana does not take; "
                f"write it as {_NICKNAMES[nickname]!r}"
            )
        if any(_HASHED.search(field) for field in fields):
            # croniter's own word for it names an argument of its own ("hash_id")
            example = " ".join(_HASHED.sub(_for_hashed, f) for f in fields)
            raise ScheduleError(
                f"cron expression {self.expression!r} has an H (a hashed value, as Jenkins "
                f"writes), which hibana does not take; write the number itself: {example!r}"
            )
        if len(fields) not in (5, 6):
            raise ScheduleError(
                f"cron expression {self.expression!r} has {len(fields)} fields; use 5 "
                "(minute hour day month weekday) or 6 (second minute hour day month weekday)"
            )
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(
                f"time zone {self.tz!r} is unknown; use an IANA name like 'UTC' or 'Asia/Tokyo'"
            ) from None
        from croniter import CroniterBadDateError, CroniterError

        try:
            self._iter(0.0).get_next(float)
        except CroniterBadDateError:
            # it parses, and no date in 50 years matches: a day its months never have
            day, month = fields[-3], fields[-2]
            raise ScheduleError(
                f"cron expression {self.expression!r} never fires: no month it names "
                f"({month}) has the day it names ({day}): February has no 30th, April no 31st; "
                "fix its day or month field"
            ) from None
        except (CroniterError, ValueError, KeyError) as exc:
            raise ScheduleError(
                f"cron expression {self.expression!r} does not parse: {exc}"
            ) from None

    @property
    def has_seconds(self) -> bool:
        return len(self.expression.split()) == 6

    def _iter(self, after: float) -> croniter:
        # imported here, when an app has a timer: at its import, croniter runs `file` on
        # the Python binary (platform.architecture), a process started by every CLI command
        from croniter import croniter

        start = datetime.fromtimestamp(after, ZoneInfo(self.tz))
        return croniter(self.expression, start, second_at_beginning=self.has_seconds)

    def next_after(self, ts: float) -> float:
        """The first slot strictly after ``ts`` (seconds since the epoch)."""
        it = self._iter(ts)
        slot = float(it.get_next(float))
        while self._repeated(slot):
            slot = float(it.get_next(float))
        return slot

    def last_at_or_before(self, ts: float) -> float:
        """The latest slot at or before ``ts``."""
        # from a moment after ``ts``, so a slot at ``ts`` itself is found; and past one
        # that moment holds (``ts`` is up to a millisecond before a slot)
        it = self._iter(ts + 0.001)
        slot = float(it.get_prev(float))
        while slot > ts or self._repeated(slot):
            slot = float(it.get_prev(float))
        return slot

    def _repeated(self, slot: float) -> bool:
        """``slot`` is a wall-clock time the clocks went back over (the autumn change: 01:30
        comes twice), and the schedule names its hours: it ran at the first 01:30, so not
        at the second, as cron does. One with every hour (``*``, ``*/2``) runs in both."""
        hour = self.expression.split()[2 if self.has_seconds else 1]
        return (
            not hour.startswith("*") and datetime.fromtimestamp(slot, ZoneInfo(self.tz)).fold == 1
        )


@dataclass(frozen=True, slots=True)
class TimerInfo:
    """What a timer function receives."""

    schedule: str
    #: The slot this invocation is for.
    scheduled_ts: float
    #: True when the slot was missed (the host was down) and is run late, once.
    past_due: bool
    #: True for the extra run at host start (``run_on_startup=True``).
    on_startup: bool = False

    @property
    def scheduled_for(self) -> datetime:
        return datetime.fromtimestamp(self.scheduled_ts, UTC)
