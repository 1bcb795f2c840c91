"""What the host's processes write to fd 1 and fd 2 without passing through
``sys.stdout`` (``ProcessOutput``), and text printed without a newline."""

from __future__ import annotations

import gc
import json
import os
import threading
import time

from hibana.telemetry.log_sink import LogSink
from hibana.telemetry.printed import PrintedLines
from hibana.telemetry.process_output import ProcessOutput


def full_non_blocking_pipe() -> tuple[int, int]:
    """A pipe whose write end is non-blocking and has no room left (filled with dots)."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    filler = b"." * 4096
    while filler:
        try:
            os.write(write_end, filler)
        except BlockingIOError:
            filler = filler[: len(filler) // 2]
    return read_end, write_end


def test_a_traceback_on_fd2_reaches_a_non_blocking_stderr_that_is_full() -> None:
    """The host's stderr is non-blocking (a terminal another program set so, say) and its
    reader is behind: what a worker wrote on fd 2 was dropped at the first EAGAIN; now
    it waits for room, as the log lines on stdout do."""
    read_end, write_end = full_non_blocking_pipe()
    output = ProcessOutput(LogSink(os.open(os.devnull, os.O_WRONLY)), errors_fd=write_end)
    received = bytearray()

    def reader() -> None:
        time.sleep(0.2)  # away while the worker's traceback comes
        while chunk := os.read(read_end, 65536):
            received.extend(chunk)

    thread = threading.Thread(target=reader)
    thread.start()
    traceback = b'Traceback (most recent call last):\n  File "app.py", line 3\nKeyError: 1\n'
    os.write(output.errors_fd, traceback)
    output.close(10)  # once what came on fd 2 is written
    os.close(write_end)
    thread.join(10)
    os.close(read_end)
    assert bytes(received).lstrip(b".") == traceback


def test_text_a_thread_printed_without_a_newline_goes_out_after_the_thread_ended() -> None:
    """A thread a function started printed ``"done"`` with no newline and ended: the text
    was held by that thread alone, and went with it; the worker's end wrote nothing. Now
    it goes out when the worker ends, as the lines printed before it did."""
    read_end, write_end = os.pipe()
    printed = PrintedLines(LogSink(write_end), {"pid": 1})

    def background() -> None:
        print("copied 3 files", file=printed)
        print("done", end="", file=printed)

    thread = threading.Thread(target=background)
    thread.start()
    thread.join()
    gc.collect()
    printed.flush_all()  # the worker ends
    os.close(write_end)
    with os.fdopen(read_end, "rb") as lines:
        written = [(line["msg"], line["pid"], line["stream"]) for line in map(json.loads, lines)]
    assert written == [("copied 3 files", 1, "stdout"), ("done", 1, "stdout")]
