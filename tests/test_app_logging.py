"""What an app sets up of its output as it is imported (the standard ``logging`` module's
configuration, a ``sys.stdout`` it holds), under the host: it keeps working, and what it
writes is JSON lines on stdout with their invocation's fields, redacted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.hosts import Host, started
from tests.test_webhooks import API_TOKEN, set_secret

CONFIGURED_APP = """
import logging
import logging.config
import sys

import hibana

logging.config.dictConfig({
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "file": {"class": "logging.FileHandler", "filename": FILE, "formatter": "plain"},
    },
    # errors only: the libraries' warnings are noise to this app
    "root": {"level": "ERROR", "handlers": ["console", "file"]},
})
# a logger of its own, at info, that writes to stdout and not on to the root
mine = logging.getLogger("mine")
mine.setLevel(logging.INFO)
mine.propagate = False
to_stdout = logging.StreamHandler(sys.stdout)
to_stdout.setLevel(logging.WARNING)
mine.addHandler(to_stdout)
# one with a console handler of its own that also goes on to the root's
chatty = logging.getLogger("chatty")
chatty.addHandler(logging.StreamHandler(sys.stderr))

app = hibana.App()


@app.http("/logs", methods=["GET"])
def logs(req, ctx):
    logging.getLogger("some.library").warning("library noise")
    logging.getLogger("some.library").error("library failed")
    mine.info("below the handler's level")
    mine.warning("mine warned")
    chatty.error("chatty failed")
    logging.getLogger("hibana.probe").debug("hibana debug line")
    print("logged", file=sys.stderr, flush=True)
    return "ok"
"""


def test_an_apps_logging_configuration_survives_and_its_lines_carry_the_invocation(
    tmp_path: Path,
) -> None:
    """The worker replaced the root logger's handlers and level: the app's file handler
    got nothing, a library's warnings came out although the app set the root to
    ERROR, a console handler of the app's own wrote its line raw beside the JSON one,
    and a logger that does not propagate wrote its text without its logger's name. The
    ``hibana`` logger was fixed at INFO, whatever --log-level (or $HIBANA_LOG_LEVEL) said."""
    file = tmp_path / "app.log"
    app = CONFIGURED_APP.replace("FILE", repr(str(file)))
    (tmp_path / "function_app.py").write_text(app)
    host = Host(tmp_path, "--workers", "1", env={"HIBANA_LOG_LEVEL": "debug"})
    try:
        host.wait_ready()
        with host.client() as client:
            answer = client.get("/logs")
        assert answer.text == "ok"
        invocation = answer.headers["x-invocation-id"]
        host.wait_for_log(msg="invocation", invocation_id=invocation)
        host.wait_for_stderr("^logged$")  # what the app wrote to fd 2 before it is there too
    finally:
        host.stop()
    lines = [line for line in host.logs() if line.get("invocation_id") == invocation]
    said = {line["msg"]: line for line in lines}
    assert "library noise" not in said  # the root's ERROR, as the app set it
    assert said["library failed"]["logger"] == "some.library"
    assert "below the handler's level" not in said
    assert said["mine warned"]["logger"] == "mine"  # as a record, not as printed text
    assert said["chatty failed"]["level"] == "error"
    assert said["hibana debug line"]["logger"] == "hibana.probe"  # HIBANA_LOG_LEVEL=debug
    written = [line["msg"] for line in lines]
    assert written.count("library failed") == written.count("chatty failed") == 1
    # the app's console handlers' lines are the JSON lines: none on stderr, raw
    assert not [line for line in host.stderr_lines if "chatty failed" in line]
    assert not [line for line in host.stderr_lines if "library failed" in line]
    # the file handler the app gave the root still gets its records, in its format (and
    # the hibana logger's, which goes on to the root's handlers as a library's does)
    assert file.read_text().splitlines() == [
        "ERROR some.library library failed",
        "ERROR chatty chatty failed",
        "DEBUG hibana.probe hibana debug line",
    ]


HELD_STDOUT_APP = """
import sys
import threading

import hibana

OUT = sys.stdout  # as a logging.StreamHandler(sys.stdout) made at import holds it

app = hibana.App()


@app.http("/held", methods=["GET"], secrets=["api-token"])
def held(req, ctx):
    token = ctx.secrets["api-token"]
    thread = threading.Thread(target=print, args=("from a thread", token), kwargs={"file": OUT})
    thread.start()
    thread.join()
    return "ok"
"""


def test_the_stdout_an_app_held_from_its_import_is_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sys.stdout`` as the app was imported is the zygote's: a line printed to it outside
    an invocation (a thread of the app's) went out with the zygote's pid, and a granted
    secret in it in the clear."""
    monkeypatch.setenv("HIBANA_SECRET_KEY_FILE", str(tmp_path / "keys" / "key"))
    (tmp_path / "function_app.py").write_text(HELD_STDOUT_APP)
    assert set_secret(tmp_path, "api-token", API_TOKEN).returncode == 0
    for host in started(tmp_path, "--workers", "1"):
        with host.client() as client:
            assert client.get("/held").text == "ok"
        line = host.wait_for_log(msg="from a thread [REDACTED]")
        assert line["pid"] in host.worker_pids() and line["worker"] == 0
    assert API_TOKEN not in "\n".join(host.stdout_lines + host.stderr_lines)


IMPORT_LOGGING_APP = """
import logging
import logging.handlers
import queue

import hibana

logging.getLogger("some.library").warning("imported: no handler")  # Python's last resort
logging.info("imported: basicConfig")  # logging's own functions call basicConfig()
logging.getLogger("some.library").debug("imported: below the level")

# records taken off the request path, to a handler that may be slow (a file, here)
records = queue.Queue()
listener = logging.handlers.QueueListener(records, logging.FileHandler(FILE))
listener.start()
queued = logging.getLogger("queued")
queued.addHandler(logging.handlers.QueueHandler(records))

app = hibana.App()


@app.http("/queued", methods=["GET"])
def queued_line(req, ctx):
    queued.warning("from a worker")
    return "ok"
"""


@pytest.mark.parametrize("prewarm", ["app", "runtime", "none"])
def test_what_an_app_logs_as_it_is_imported_is_json_and_its_queue_listener_runs(
    tmp_path: Path, prewarm: str
) -> None:
    """What the app logged at its import (in the zygote, or a worker that imports it)
    went to stderr as plain text ('imported: no handler'), while in the workers it is JSON
    lines; and a QueueListener it started then ran in the zygote only: in each worker forked
    from it the listener's thread was gone, and what its QueueHandler took there never
    reached the file."""
    file = tmp_path / "queued.log"
    (tmp_path / "function_app.py").write_text(IMPORT_LOGGING_APP.replace("FILE", repr(str(file))))
    for host in started(tmp_path, "--workers", "1", "--prewarm", prewarm):
        no_handler = host.wait_for_log(msg="imported: no handler")
        configured = host.wait_for_log(msg="imported: basicConfig")
        with host.client() as client:
            assert client.get("/queued").text == "ok"
        host.wait_for_log(msg="from a worker", logger="queued")  # the root's JSON line
        written = ""
        for _ in range(100):
            written = file.read_text() if file.exists() else ""
            if "from a worker" in written:
                break
            time.sleep(0.1)
    assert (no_handler["level"], no_handler["logger"]) == ("warning", "some.library")
    # the root's WARNING, Python's default, is --log-level (info), as in the workers
    assert (configured["level"], configured["logger"]) == ("info", "root")
    # the zygote's (or, prewarm "runtime", the child's that checks the app) say its pid
    imported = [line for line in host.logs() if line["msg"] == "imported: no handler"]
    assert all("pid" in line or "worker" in line for line in imported)
    assert "imported: below the level" not in {line["msg"] for line in host.logs()}
    assert not [line for line in host.stderr_lines if "imported:" in line]
    assert written.splitlines() == ["from a worker"]
