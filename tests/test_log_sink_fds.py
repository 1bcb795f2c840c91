"""The log sink on a file descriptor numbered past 1024 (a host holding many connections
has stdout's pipe there when it starts a process, or a function's own writer)."""

from __future__ import annotations

import json
import os
import resource
import threading
import time
from collections.abc import Iterator

import pytest

from hibana.telemetry.log_sink import LogSink
from hibana.telemetry.logs import Logger
from tests.test_process_output import full_non_blocking_pipe

#: Past FD_SETSIZE (1024), the most select() takes.
MANY = 1100


@pytest.fixture
def many_open_files() -> Iterator[None]:
    """More than 1024 files open in this process: the next descriptor is past 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < MANY + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(MANY + 64, hard), hard))
    opened = [os.open(os.devnull, os.O_RDONLY) for _ in range(MANY)]
    try:
        yield
    finally:
        for fd in opened:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.usefixtures("many_open_files")
def test_a_full_non_blocking_pipe_past_fd_1024_loses_no_line() -> None:
    """The sink waited for room on a full pipe with select(), which raised "filedescriptor
    out of range in select()" into the function that logged; now every line goes out."""
    read_end, write_end = full_non_blocking_pipe()  # its first line finds no room
    assert min(read_end, write_end) >= 1024
    received = bytearray()

    def reader() -> None:
        time.sleep(0.2)  # away while the sink finds the pipe full
        while chunk := os.read(read_end, 65536):
            received.extend(chunk)

    thread = threading.Thread(target=reader)
    thread.start()
    log = Logger(LogSink(write_end), {"function": "f"})
    try:
        for i in range(200):
            log.info("line", i=i, pad="x" * 1000)
    finally:
        os.close(write_end)
        thread.join(10)
        os.close(read_end)
    lines = [json.loads(line) for line in bytes(received).lstrip(b".").splitlines()]
    assert [line["i"] for line in lines] == list(range(200))
