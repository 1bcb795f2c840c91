"""What a worker does as it exits gracefully (SIGTERM): the app's logging handlers are
flushed and closed, its QueueListeners drained, and the atexit hooks registered in the
worker run; those registered as the zygote imported the app run once, in the zygote."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.hosts import Host, children

EXITING_APP = """
import atexit
import logging
import logging.handlers
import os
import pathlib
import queue
import time

import hibana

here = pathlib.Path(__file__).parent


class Slow(logging.FileHandler):
    \"\"\"A handler that takes its time (a network one): records wait in the queue.\"\"\"

    def emit(self, record):
        time.sleep(0.2)
        super().emit(record)


records = queue.Queue()
listener = logging.handlers.QueueListener(records, Slow(here / "queued.log"))
listener.start()
queued = logging.getLogger("queued")
queued.addHandler(logging.handlers.QueueHandler(records))
queued.propagate = False
buffered = logging.getLogger("buffered")
buffered.addHandler(
    logging.handlers.MemoryHandler(
        10_000, flushLevel=logging.CRITICAL, target=logging.FileHandler(here / "buffered.log")
    )
)
buffered.propagate = False


def hook(what):
    with open(here / "hooks.log", "a") as hooks:
        hooks.write(f"{what} {os.getpid()}\\n")


atexit.register(hook, "import")
registered = []
app = hibana.App()


@app.http("/work", methods=["GET"])
def work(req, ctx):
    if not registered:
        registered.append(atexit.register(hook, "worker"))
    for i in range(8):
        queued.warning("queued %d", i)
        buffered.warning("buffered %d", i)
    return str(os.getpid())
"""


def test_a_sigterm_loses_no_record_of_the_apps_logging_and_runs_its_own_exit_hooks(
    tmp_path: Path,
) -> None:
    """The worker ended with os._exit: what a MemoryHandler buffered and what waited in
    a QueueListener's queue was lost, and no atexit hook ran in a worker."""
    (tmp_path / "function_app.py").write_text(EXITING_APP)
    host = Host(tmp_path, "--workers", "1").wait_ready()
    try:
        with host.client() as client:
            worker = int(client.get("/work").text)
        (zygote,) = children(host.proc.pid)
        host.signal(signal.SIGTERM)
        assert host.wait_exit() == 0
    finally:
        host.stop()
    written = [f"queued {i}" for i in range(8)]
    assert (tmp_path / "queued.log").read_text().splitlines() == written
    written = [f"buffered {i}" for i in range(8)]
    assert (tmp_path / "buffered.log").read_text().splitlines() == written
    hooks = (tmp_path / "hooks.log").read_text().splitlines()
    assert sorted(hooks) == sorted([f"worker {worker}", f"import {zygote}"])


STUCK_APP = """
import logging
import threading

import hibana

app = hibana.App()


class Stuck(logging.Handler):
    def emit(self, record):
        pass

    def flush(self):
        threading.Event().wait()  # a handler whose server never answers


logging.getLogger("stuck").addHandler(Stuck())


@app.http("/stuck", methods=["GET"])
def stuck(req, ctx):
    return "ok"
"""


def test_a_handler_that_never_flushes_does_not_hold_the_worker_past_its_shutdown_timeout(
    tmp_path: Path,
) -> None:
    """The worker goes once its drain's shutdown_timeout is over (one second at least),
    saying so, and is not killed by the supervisor as one that did not stop."""
    (tmp_path / "function_app.py").write_text(STUCK_APP)
    host = Host(tmp_path, "--workers", "1", "--shutdown-timeout", "1").wait_ready()
    try:
        with host.client() as client:
            assert client.get("/stuck").text == "ok"
        host.signal(signal.SIGTERM)
        assert host.wait_exit() == 0
    finally:
        host.stop()
    line = host.wait_for_log(level="warning", seconds=1.0)
    assert line["msg"] == (
        "the app's atexit hooks or logging handlers had not finished; exiting without the "
        "rest of them"
    )
    assert not any("did not stop in time" in line for line in host.stderr_lines)
