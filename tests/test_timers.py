"""Timer functions: cron slots fire once each, failures do not stop the schedule, and a
host that was down fires the missed slot once, past due."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import hibana
from hibana.store import NewMessage, open_store
from hibana.timers import Schedule
from tests.hosts import Host, copy_app, read_jsonl, started
from tests.test_queues import wait_until


def fired(app_dir: Path, fn: str) -> list[dict[str, Any]]:
    return read_jsonl(app_dir / "fired.jsonl", fn=fn)


def test_each_slot_fires_once_and_a_failing_timer_keeps_its_schedule(tmp_path: Path) -> None:
    app_dir = copy_app("timers", tmp_path)
    for host in started(app_dir, "--workers", "1"):
        wait_until(lambda: len(fired(app_dir, "tick")) >= 3, timeout=20, what="3 ticks")
        wait_until(lambda: len(fired(app_dir, "broken")) >= 2, timeout=20, what="2 broken runs")
        failure = host.wait_for_log(function="broken", outcome="error")
        assert failure["error"] == "ValueError: this timer always fails"
        assert "dead_lettered" not in failure and "retry_in_s" not in failure
        # counted: hibana status shows the failures beside the runs
        functions = {f["name"]: f for f in host.status()["functions"]}
        assert functions["broken"]["errors"] >= 2
        assert functions["broken"]["invocations"] >= functions["broken"]["errors"]
        assert functions["tick"]["errors"] == 0
    ticks = [t["slot"] for t in fired(app_dir, "tick")]
    assert len(ticks) == len(set(ticks))
    assert all(slot == int(slot) for slot in ticks)  # whole seconds: the cron slots
    assert all(not t["past_due"] for t in fired(app_dir, "tick"))
    broken = [b["slot"] for b in fired(app_dir, "broken")]
    assert all(int(slot) % 2 == 0 for slot in broken)  # */2: even seconds
    assert len(broken) == len(set(broken))  # a failed run is not retried


def test_a_host_that_was_down_fires_the_missed_slot_once_past_due(tmp_path: Path) -> None:
    app_dir = copy_app("timers", tmp_path)
    for _host in started(app_dir, "--workers", "1"):
        wait_until(lambda: fired(app_dir, "tick"), timeout=20, what="a tick")
    stopped = time.time()
    time.sleep(3.2)  # three slots pass with no host
    before = len(fired(app_dir, "tick"))
    for _host in started(app_dir, "--workers", "1"):
        wait_until(lambda: len(fired(app_dir, "tick")) >= before + 2, timeout=20)
    late = [t for t in fired(app_dir, "tick") if t["past_due"]]
    assert len(late) == 1, late
    assert late[0]["slot"] > stopped + 2  # the latest missed slot, not the first


HELD = """
import asyncio, json, os, time
from pathlib import Path

import hibana

HERE = Path(__file__).parent
app = hibana.App()


@app.timer("* * * * * *")
def tick(timer: hibana.TimerInfo, ctx: hibana.Context) -> None:
    line = json.dumps({"fn": "tick", "t": time.time(), "slot": timer.scheduled_ts,
                       "past_due": timer.past_due, "on_startup": timer.on_startup}) + "\\n"
    fd = os.open(HERE / "fired.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


async def held(scope, receive, send):
    # a worker starts serving (and taking timer slots) once this lifespan has started:
    # while the file "hold" is there, it has not
    assert scope["type"] == "lifespan"
    await receive()
    while (HERE / "hold").exists():
        await asyncio.sleep(0.01)
    await send({"type": "lifespan.startup.complete"})
    await receive()
    await send({"type": "lifespan.shutdown.complete"})


app.asgi("/held", held)
"""


def test_a_missed_slot_waiting_for_a_worker_past_the_next_slot_is_still_run_past_due(
    tmp_path: Path,
) -> None:
    """The host starts under load: its worker is not serving yet when the slot after the
    missed one comes. The run that stands for them both says the host was down."""
    app_dir = tmp_path / "held"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(HELD)
    for _host in started(app_dir, "--workers", "1"):
        wait_until(lambda: fired(app_dir, "tick"), timeout=20, what="a tick")
    stopped = time.time()
    time.sleep(3.2)  # three slots pass with no host
    ran = len(fired(app_dir, "tick"))
    (app_dir / "hold").touch()
    host = Host(app_dir, "--workers", "1")
    try:
        store = open_store(None, app_dir)
        try:

            def last_fire() -> float:
                return asyncio.run(store.last_fire("tick")) or 0.0

            missed = wait_until(lambda: last_fire() > stopped and last_fire(), 30, "the fire")
            wait_until(lambda: last_fire() > missed, 30, "the next slot's fire")
        finally:
            store.close()
        assert len(fired(app_dir, "tick")) == ran  # no worker took a slot meanwhile
        (app_dir / "hold").unlink()
        host.wait_ready()
        wait_until(lambda: len(fired(app_dir, "tick")) >= ran + 2, 30, "2 ticks")
    finally:
        host.stop()
    restarted = fired(app_dir, "tick")[ran:]
    assert restarted[0]["past_due"], restarted
    assert restarted[0]["slot"] > missed  # one run, of the latest slot
    assert [t for t in restarted if t["past_due"]] == restarted[:1]


def test_a_startup_run_waiting_for_a_worker_past_the_next_slot_is_still_run(
    tmp_path: Path,
) -> None:
    """The next slot fired while the startup run waited for the first worker: it took the
    startup run's place, and no run said it was the startup run."""
    app_dir = tmp_path / "held"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(
        HELD.replace('@app.timer("* * * * * *")', '@app.timer("* * * * * *", run_on_startup=True)')
    )
    (app_dir / "hold").touch()
    host = Host(app_dir, "--workers", "1")
    try:
        store = open_store(None, app_dir)
        try:

            def last_fire() -> float:
                return asyncio.run(store.last_fire("tick")) or 0.0

            first = wait_until(last_fire, 30, "a slot's fire")
            wait_until(lambda: last_fire() > first, 30, "the next slot's fire")
        finally:
            store.close()
        assert not (app_dir / "fired.jsonl").exists()  # no worker took a run meanwhile
        (app_dir / "hold").unlink()
        host.wait_ready()
        wait_until(lambda: len(fired(app_dir, "tick")) >= 3, 30, "3 runs")
    finally:
        host.stop()
    runs = fired(app_dir, "tick")
    startup = [t for t in runs if t["on_startup"]]
    assert len(startup) == 1, runs
    assert not startup[0]["past_due"]
    # beside it, the slots that came while no worker served are one run, past due
    assert [t["past_due"] for t in runs if not t["on_startup"]][:1] == [True], runs


def test_run_on_startup(tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(
        "import json, pathlib\n"
        "import hibana\n"
        "app = hibana.App()\n"
        "@app.timer('0 0 1 1 *', run_on_startup=True)\n"
        "def yearly(timer: hibana.TimerInfo, ctx: hibana.Context) -> None:\n"
        "    (pathlib.Path(__file__).parent / 'ran.json').write_text(json.dumps(\n"
        "        {'on_startup': timer.on_startup, 'past_due': timer.past_due}))\n"
    )
    for host in started(app_dir, "--workers", "1"):
        host.wait_for_log(function="yearly", outcome="ok", timeout=20)
        assert "yearly: timer 0 0 1 1 *" in "\n".join(host.stderr_lines)
    assert json.loads((app_dir / "ran.json").read_text()) == {
        "on_startup": True,
        "past_due": False,
    }


def test_a_day_named_with_an_h_is_no_hashed_value() -> None:
    assert Schedule("0 9 * * MON-THU").next_after(0.0) > 0


@pytest.mark.parametrize(
    ("schedule", "tz", "problem"),
    [
        ("* * *", "UTC", "has 3 fields; use 5"),
        ("61 * * * *", "UTC", "does not parse"),
        ("* * * * *", "Mars/Olympus", "time zone 'Mars/Olympus' is unknown"),
        # it said "Hashed definitions must include hash_id", an argument of croniter's
        (
            "H 3 * * *",
            "UTC",
            r"cron expression 'H 3 \* \* \*' has an H \(a hashed value, as Jenkins "
            r"writes\), which hibana does not take; write the number itself: '17 3 \* \* \*'",
        ),
        ("H/15 * * * *", "UTC", r"write the number itself: '\*/15 \* \* \* \*'"),
    ],
)
def test_bad_schedules_are_named_at_declaration(schedule: str, tz: str, problem: str) -> None:
    app = hibana.App()
    with pytest.raises(hibana.AppError, match=problem) as err:

        @app.timer(schedule, tz=tz)
        def t(timer: hibana.TimerInfo, ctx: hibana.Context) -> None: ...

    assert "test_timers.py" in str(err.value)


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ("@daily", "is a nickname hibana does not take; write it as '0 0 * * *'"),
        ("@HOURLY", "is a nickname hibana does not take; write it as '0 * * * *'"),
        (
            "@reboot",
            "is no schedule here; for a run when the host starts, pass run_on_startup=True "
            "beside a schedule",
        ),
    ],
)
def test_a_cron_nickname_is_named_with_what_to_write(schedule: str, problem: str) -> None:
    """It was told it "has 1 fields; use 5": true, and no help to one who wrote cron's
    @daily."""
    app = hibana.App()
    with pytest.raises(hibana.AppError) as err:

        @app.timer(schedule)
        def nightly(timer: hibana.TimerInfo, ctx: hibana.Context) -> None: ...

    assert str(err.value).endswith(f"(nightly): cron expression {schedule!r} {problem}")


@pytest.mark.parametrize(
    ("schedule", "day", "month"),
    [("0 0 30 2 *", "30", "2"), ("0 0 0 31 4,6,9,11 *", "31", "4,6,9,11")],
)
def test_a_schedule_that_never_fires_is_named_at_declaration(
    schedule: str, day: str, month: str
) -> None:
    """It parses, and no date matches it: the error said only "failed to find next date"."""
    app = hibana.App()
    with pytest.raises(hibana.AppError) as err:

        @app.timer(schedule)
        def leap_day(timer: hibana.TimerInfo, ctx: hibana.Context) -> None: ...

    assert str(err.value).endswith(
        f"(leap_day): cron expression {schedule!r} never fires: no month it names ({month}) "
        f"has the day it names ({day}): February has no 30th, April no 31st; fix its day or "
        "month field"
    )


def test_schedule_slots_follow_the_time_zone() -> None:
    nine_in_tokyo = Schedule("0 9 * * *", "Asia/Tokyo")
    start = datetime(2026, 11, 23, 0, 30, tzinfo=UTC).timestamp()  # 09:30 in Tokyo
    nxt = datetime.fromtimestamp(nine_in_tokyo.next_after(start), UTC)
    assert nxt == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    prev = datetime.fromtimestamp(nine_in_tokyo.last_at_or_before(start), UTC)
    assert prev == datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    every_ten_seconds = Schedule("*/10 * * * * *")
    assert every_ten_seconds.next_after(1_800_000_003.5) == 1_800_000_010.0
    assert every_ten_seconds.last_at_or_before(1_800_000_010.0) == 1_800_000_010.0


@pytest.mark.parametrize(("expression", "period"), [("* * * * * *", 1.0), ("*/5 * * * *", 300.0)])
def test_the_latest_slot_at_or_before_a_time_is_never_after_it(
    expression: str, period: float
) -> None:
    """Within a millisecond before a slot, the slot itself was given: a host whose tick
    came a moment before it took it for the latest slot, fired it early and skipped the
    one before."""
    schedule = Schedule(expression)
    slot = 1_800_000_000.0
    assert schedule.last_at_or_before(slot - 0.0005) == slot - period
    assert schedule.last_at_or_before(slot) == slot
    assert schedule.last_at_or_before(slot + 0.0005) == slot


def _local(schedule: Schedule, start: datetime, count: int) -> list[str]:
    """The next ``count`` slots after ``start``, as wall-clock times in its zone."""
    zone = ZoneInfo(schedule.tz)
    slots, ts = [], start.timestamp()
    for _ in range(count):
        ts = schedule.next_after(ts)
        slots.append(datetime.fromtimestamp(ts, zone).strftime("%m-%d %H:%M %Z"))
    return slots


def test_across_daylight_saving_changes_slots_run_as_cron_runs_them() -> None:
    zone = "America/New_York"
    autumn = datetime(2026, 10, 31, 23, 0, tzinfo=ZoneInfo(zone))  # 01:00-02:00 comes twice
    # a schedule that names its hour runs once in the hour that repeats
    assert _local(Schedule("30 1 * * *", zone), autumn, 2) == [
        "11-01 01:30 EDT",
        "11-02 01:30 EST",
    ]
    assert _local(Schedule("0 30 1 * * *", zone), autumn, 1) == ["11-01 01:30 EDT"]
    # one that runs every hour runs in both
    assert _local(Schedule("0 * * * *", zone), autumn, 4) == [
        "11-01 00:00 EDT",
        "11-01 01:00 EDT",
        "11-01 01:00 EST",
        "11-01 02:00 EST",
    ]
    # the latest slot before the second 01:45 is the first 01:30, not a second one
    second = datetime(2026, 11, 1, 1, 45, fold=1, tzinfo=ZoneInfo(zone)).timestamp()
    latest = Schedule("30 1 * * *", zone).last_at_or_before(second)
    assert datetime.fromtimestamp(latest, ZoneInfo(zone)).strftime("%H:%M %Z") == "01:30 EDT"
    # spring: 02:30 does not exist that night; it runs when the clocks land, at 03:00
    spring = datetime(2026, 3, 7, 12, 0, tzinfo=ZoneInfo(zone))
    assert _local(Schedule("30 2 * * *", zone), spring, 2) == [
        "03-08 03:00 EDT",
        "03-09 02:30 EDT",
    ]


def _logged(host: Host, msg: str, at_least: int) -> bool:
    seen: int = sum(record.get("msg") == msg for record in host.logs())
    return seen >= at_least


YEARLY = """
import hibana

app = hibana.App()


@app.timer("0 0 1 1 *")
def yearly(timer: hibana.TimerInfo, ctx: hibana.Context) -> None:
    pass


@app.timer("* * * * * *")
def tick(timer: hibana.TimerInfo, ctx: hibana.Context) -> None:
    ctx.log.info("ticked")
"""


def test_a_message_on_a_timers_queue_that_is_no_slot_is_dropped_and_said(tmp_path: Path) -> None:
    # on a timer whose slots do not come during the test: a slot that fires while such a
    # message waits takes its place, as it takes a waiting slot's (before a worker that
    # a busy machine held back got to it, this test's message was gone that way)
    app_dir = tmp_path / "yearly"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(YEARLY)
    for host in started(app_dir, "--workers", "1"):
        # the CLI and the store send to no timer's queue: a write an older hibana let in
        # (or one made in SQL), which is in the store at an upgrade
        store = open_store(None, app_dir)
        try:
            asyncio.run(store._call("enqueue", [NewMessage("timer:yearly", b'"soon"')]))
        finally:
            store.close()
        line = host.wait_for_log(msg="timer slot dropped, not run")
        assert (line["function"], line["queue"]) == ("yearly", "timer:yearly")
        assert line["error"] == "cannot be delivered: b'\"soon\"' is not a timer slot"
        ticked = functools.partial(_logged, host, "ticked", 2)
        wait_until(ticked, timeout=20, what="the other timer goes on")


SLOW = """
import time

import hibana

app = hibana.App()


@app.timer("* * * * * *")
def slow(timer: hibana.TimerInfo, ctx: hibana.Context) -> None:
    ctx.log.info("slow run", slot=timer.scheduled_ts)
    time.sleep(2.2)
"""


def runs(host: Host, at_least: int) -> bool:
    return len([x for x in host.logs() if x.get("msg") == "slow run"]) >= at_least


def test_a_timer_slower_than_its_period_has_one_slot_waiting_not_a_backlog(
    tmp_path: Path,
) -> None:
    app_dir = tmp_path / "slow"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(SLOW)
    for host in started(app_dir, "--workers", "1"):
        wait_until(functools.partial(runs, host, 3), timeout=30, what="3 runs")
        store = open_store(None, app_dir)
        try:
            (stats,) = [s for s in asyncio.run(store.stats()) if s.queue == "timer:slow"]
        finally:
            store.close()
        # a slot fires every second, a run takes 2.2 s: the slots that came while it ran
        # are one run, of the latest of them
        assert stats.ready <= 1 and stats.in_flight <= 1, stats
    slots = [x["slot"] for x in host.logs() if x.get("msg") == "slow run"]
    assert slots == sorted(slots) and all(b - a >= 2 for a, b in itertools.pairwise(slots))
