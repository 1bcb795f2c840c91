"""The log sink's writes: whole lines, none lost, on a pipe that fills up."""

from __future__ import annotations

import json
import os
import threading
import time

from hibana.telemetry.logs import Logger, LogSink


def test_a_full_non_blocking_pipe_loses_no_line_and_cuts_none() -> None:
    # A non-blocking stdout whose reader is away for a while: the sink waits for room
    # (it used to spin on EAGAIN), writes everything in order, and a line longer than
    # PIPE_BUF is written whole too when it is the only writer.
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    received = bytearray()

    def reader() -> None:
        time.sleep(0.3)  # away while the pipe fills
        while chunk := os.read(read_end, 65536):
            received.extend(chunk)

    thread = threading.Thread(target=reader)
    thread.start()
    sink = LogSink(write_end)
    log = Logger(sink, {"function": "f"})
    cpu = time.thread_time()
    for i in range(400):  # about 400 KB, several times what the pipe holds
        log.info("line", i=i, pad="x" * (20_000 if i == 7 else 1000))
    spent = time.thread_time() - cpu
    os.close(write_end)
    thread.join(10)
    os.close(read_end)
    lines = [json.loads(line) for line in bytes(received).splitlines()]
    assert [line["i"] for line in lines] == list(range(400))
    assert len(lines[7]["pad"]) == 20_000
    # it slept while the pipe was full: CPU time, not wall time, so a busy machine
    # does not change it (spinning on EAGAIN burnt the whole 0.3 s)
    assert spent < 0.15, f"the writer spent {spent:.2f}s of CPU waiting for the pipe"


def test_a_field_named_like_the_lines_own_does_not_replace_it() -> None:
    # ctx.log.info("slack message", msg=text) keeps the line's message and level; the
    # caller's values are kept beside them, with a trailing underscore
    read_end, write_end = os.pipe()
    sink = LogSink(write_end)
    log = Logger(sink, {"invocation_id": "abc"}).bind(level="bound")
    log.error("sent", msg="hello there", ts="yesterday", name="x")
    os.close(write_end)
    with os.fdopen(read_end, "rb") as lines:
        line = json.loads(lines.readline())
    assert (line["msg"], line["level"], line["name"]) == ("sent", "error", "x")
    assert line["ts"].endswith("Z")
    assert (line["msg_"], line["ts_"], line["level_"]) == ("hello there", "yesterday", "bound")
    assert line["invocation_id"] == "abc"
