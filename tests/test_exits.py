"""A function that raises SystemExit, KeyboardInterrupt or another BaseException fails
its own invocation, like any error: a 500 naming its invocation, a log line naming what
it raised. The worker does not stop, and the invocations beside it finish. (Out of a
task on the worker's loop, SystemExit and KeyboardInterrupt stopped the loop, and the
worker with every request on it; another BaseException left its client unanswered.)"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.hosts import Host, copy_app, read_cut_short, started

RAISED = {"exit": "SystemExit: 3", "interrupt": "KeyboardInterrupt", "odd": "Odd: an odd one"}


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    app_dir = copy_app("exits", tmp_path_factory.mktemp("exits"))
    yield from started(app_dir, "--workers", "1")


@pytest.mark.parametrize("what", sorted(RAISED))
@pytest.mark.parametrize("kind", ["async", "sync"])
def test_a_function_that_raises_a_base_exception_fails_alone(
    host: Host, kind: str, what: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    with host.client() as client, ThreadPoolExecutor(1) as pool:
        before = client.get("/pid").text
        beside = pool.submit(client.get, "/slow", params={"until": str(go)})  # beside it
        host.wait_inflight(1, "slow")
        r = client.get(f"/{kind}/{what}")
        go.touch()
        slow = beside.result()
        after = client.get("/pid").text
    assert r.status_code == 500
    assert r.json() == {"invocation_id": r.headers["x-invocation-id"]}
    line = host.wait_for_log(msg="function raised", invocation_id=r.headers["x-invocation-id"])
    assert line["error"] == RAISED[what]
    assert (slow.status_code, slow.text) == (200, f"slow done by {before}")
    assert after == before, "the worker was replaced"


@pytest.mark.parametrize("what", sorted(RAISED))
def test_a_stream_that_raises_a_base_exception_is_cut_short(host: Host, what: str) -> None:
    with host.client() as client:
        before = client.get("/pid").text
        r, got = read_cut_short(client, f"/stream/{what}")
        after = client.get("/pid").text
    assert got == b"first part\n"
    line = host.wait_for_log(msg="invocation", invocation_id=r.headers["x-invocation-id"])
    assert (line["outcome"], line["error"]) == ("error", RAISED[what])
    assert after == before, "the worker was replaced"


def test_a_mounted_app_that_calls_sys_exit_fails_alone(host: Host) -> None:
    with host.client() as client:
        before = client.get("/pid").text
        r = client.get("/mounted/anything")
        after = client.get("/pid").text
    assert r.status_code == 500
    line = host.wait_for_log(msg="function raised", invocation_id=r.headers["x-invocation-id"])
    assert "SystemExit: 4" in line["error"]
    assert after == before, "the worker was replaced"


def test_a_mounted_app_whose_lifespan_calls_sys_exit_is_served_without_one(host: Host) -> None:
    with host.client() as client:
        r = client.get("/no-lifespan/page")
    assert (r.status_code, r.text) == (200, "served without a lifespan")


@pytest.mark.parametrize("what", sorted(RAISED))
def test_a_queue_function_that_raises_a_base_exception_is_retried(host: Host, what: str) -> None:
    with host.client() as client:
        before = client.get("/pid").text
        queued = client.post(f"/later/{what}").json()["queued"]
    first = host.wait_for_log(msg="invocation", message_id=queued, attempt=1)
    assert (first["outcome"], first["error"]) == ("error", RAISED[what])
    second = host.wait_for_log(msg="invocation", message_id=queued, attempt=2)
    assert second["outcome"] == "ok"
    done = host.wait_for_log(msg="done on a later attempt", invocation_id=second["invocation_id"])
    assert str(done["pid"]) == before, "the worker was replaced"


def test_a_stream_that_raises_cancelled_at_shutdown_ends_then(tmp_path: Path) -> None:
    # ctx.raise_if_cancelled() in a stream: the body is cut short at once (it did not
    # finish), the log says why, and the host exits without waiting out its grace period.
    app_dir = copy_app("exits", tmp_path)
    host = Host(app_dir, "--workers", "1", "--shutdown-timeout", "30").wait_ready()
    try:
        with host.client() as client:
            r, _ = read_cut_short(client, "/ticks", lambda: host.signal(signal.SIGTERM))
        assert host.wait_exit(timeout=15) == 0
    finally:
        host.stop()
    line = host.wait_for_log(msg="invocation", invocation_id=r.headers["x-invocation-id"])
    assert (line["outcome"], line["cancel_reason"]) == ("cancelled", "shutdown")


def test_a_function_that_ends_its_worker_with_exit_code_0_gets_502s(tmp_path: Path) -> None:
    # os._exit(0) is no clean stop: the worker never stopped accepting. Its requests are
    # answered 502 (the one that did it, and the one beside it), and a new worker serves.
    app_dir = copy_app("exits", tmp_path)
    host = Host(app_dir, "--workers", "1").wait_ready()
    try:
        with host.client() as client, ThreadPoolExecutor(1) as pool:
            before = client.get("/pid").text
            beside = pool.submit(client.get, "/slow", params={"until": str(tmp_path / "no")})
            host.wait_inflight(1, "slow")
            gone = client.get("/os-exit")
            assert (gone.status_code, beside.result().status_code) == (502, 502)
            assert gone.json()["invocation_id"] == gone.headers["x-invocation-id"]
            host.wait_for_stderr(r"worker 0 \(pid \d+\) exited with code 0")
            assert client.get("/pid").text != before
    finally:
        host.stop()
