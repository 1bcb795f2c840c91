"""A log line's ``ts`` is the time it was written, also when threads write at once (the
text of the current second and millisecond is kept between lines, and shared)."""

from __future__ import annotations

import json
import os
import threading
import time
from types import SimpleNamespace

import pytest

from hibana.telemetry import log_fields
from hibana.telemetry.log_sink import LogSink
from hibana.telemetry.logs import Logger

#: 2023-11-14T22:13:20Z, and the second after it.
BEFORE = 1_700_000_000
AFTER = BEFORE + 1


def test_a_line_written_while_another_thread_formats_a_new_second_has_its_own_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sync function's line, from a pool thread, took the second before its own
    (``22:13:20.200Z`` for ``22:13:21.200``) when another thread had begun formatting the
    new second: the second and its text were two values, and it saw the first changed,
    the second not yet. The clock is each thread's own; the thread that formats the new
    second waits inside ``strftime`` while the other writes its line."""
    clock: dict[str, float] = {}
    formatting = threading.Event()
    go_on = threading.Event()

    def strftime(fmt: str, when: time.struct_time) -> str:
        if threading.current_thread().name == "first-of-the-second":
            formatting.set()
            assert go_on.wait(10)
        return time.strftime(fmt, when)

    fake = SimpleNamespace(
        time=lambda: clock[threading.current_thread().name],
        gmtime=time.gmtime,
        strftime=strftime,
    )
    monkeypatch.setattr(log_fields, "time", fake)
    read_end, write_end = os.pipe()
    log = Logger(LogSink(write_end), {"function": "f"})  # no loop: each line written at once

    def write(at: float, msg: str) -> None:
        clock[threading.current_thread().name] = at
        log.info(msg)

    write(BEFORE + 0.250, "before")  # the second kept
    first = threading.Thread(
        target=write, args=(AFTER + 0.100, "first"), name="first-of-the-second"
    )
    first.start()
    assert formatting.wait(10)
    write(AFTER + 0.200, "beside it")
    go_on.set()
    first.join(10)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as lines:
        written = {line["msg"]: line["ts"] for line in map(json.loads, lines)}
    assert written == {
        "before": "2023-11-14T22:13:20.250Z",
        "first": "2023-11-14T22:13:21.100Z",
        "beside it": "2023-11-14T22:13:21.200Z",
    }
