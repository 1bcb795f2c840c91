"""Workers that scale to zero and back, through the real host."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hosts import APPS, Host, copy_app, run_cli


def _eventually(check: Callable[[], bool], timeout: float = 15, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _status(host: Host) -> dict[str, Any]:
    result = run_cli("status", "--app", str(host.app_dir), "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def _fresh_get(host: Host, path: str) -> httpx.Response:
    with host.client() as client:
        return client.get(path)


def test_a_worker_streaming_a_response_is_not_idle(tmp_path: Path) -> None:
    host = Host(
        APPS / "basic", "--min-instances", "0", "--idle-timeout", "0.3", "--shutdown-timeout", "2"
    ).wait_ready()
    try:
        with httpx.stream("GET", host.url + "/ticker", timeout=10) as r:
            ticks = r.iter_lines()
            assert next(ticks) == "tick"
            pids = host.worker_pids()
            streamed_until = time.monotonic() + 2  # several idle timeouts
            while time.monotonic() < streamed_until:
                assert next(ticks) == "tick"
            # not retired (which would cut the stream once the retiring grace ran out)
            assert host.worker_pids() == pids
            assert [w["state"] for w in host.status()["workers"]] == ["ready"]
        _eventually(lambda: host.worker_pids() == set(), what="scale to zero after the stream")
    finally:
        host.stop()


def test_scales_from_zero_on_the_first_request_and_back_to_zero_when_idle(tmp_path: Path) -> None:
    host = Host(copy_app("scaling", tmp_path), "--idle-timeout", "0.5").wait_ready()
    try:
        assert "0..2 workers" in host.stderr_lines[0] or "0.." in host.stderr_lines[0]
        assert host.worker_pids() == set()
        assert _status(host)["workers"] == []
        r = _fresh_get(host, "/hello/first")
        assert r.text == "Hello first"
        line = host.wait_for_log(msg="invocation", invocation_id=r.headers["x-invocation-id"])
        assert line["cold_start"] is True
        assert 0 < line["cold_start_ms"] < 5000
        assert len(host.worker_pids()) == 1
        warm = _fresh_get(host, "/hello/second")
        warm_line = host.wait_for_log(
            msg="invocation", invocation_id=warm.headers["x-invocation-id"]
        )
        assert "cold_start" not in warm_line
        # idle past idle_timeout: back to zero, and the status says so
        _eventually(lambda: host.worker_pids() == set(), what="scale to zero")
        status = _status(host)
        assert status["workers"] == []
        hello = next(fn for fn in status["functions"] if fn["name"] == "hello")
        assert hello["invocations"] == 2
        assert hello["cold_starts"] == 1
        assert hello["last_cold_start_ms"] == pytest.approx(line["cold_start_ms"], abs=0.01)
        # and from zero again
        again = _fresh_get(host, "/hello/again")
        assert again.text == "Hello again"
        again_line = host.wait_for_log(
            msg="invocation", invocation_id=again.headers["x-invocation-id"]
        )
        assert again_line["cold_start"] is True
    finally:
        host.stop()
    assert host.proc.returncode == 0


def test_a_worker_running_an_invocation_is_not_idle_and_is_not_retired(tmp_path: Path) -> None:
    """``idle_s`` counts from a worker's last invocation's end; while one runs it is 0."""
    host = Host(copy_app("scaling", tmp_path), "--min-instances", "0", "--idle-timeout", "0.3")
    host.wait_ready()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            # many idle timeouts: the checks below end well within it on a busy machine too
            napping = pool.submit(_fresh_get, host, "/nap/6")
            host.wait_inflight(1)
            pids = host.worker_pids()
            time.sleep(0.5)  # past the idle timeout, which a start marked as activity hid
            [worker] = host.status()["workers"]
            assert (worker["state"], worker["inflight"], worker["idle_s"]) == ("ready", 1, 0.0)
            assert host.worker_pids() == pids  # not retired under it
            assert napping.result().text == "rested"
    finally:
        host.stop()


def test_burst_of_100_concurrent_first_requests_at_zero_workers_all_succeed() -> None:
    host = Host(APPS / "scaling").wait_ready()
    try:
        assert host.worker_pids() == set()
        with concurrent.futures.ThreadPoolExecutor(100) as pool:
            results = list(pool.map(lambda i: _fresh_get(host, f"/hello/{i}"), range(100)))
        assert [r.status_code for r in results] == [200] * 100
        assert {r.text for r in results} == {f"Hello {i}" for i in range(100)}
    finally:
        host.stop()


def test_scales_out_under_load_and_never_past_max_instances(tmp_path: Path) -> None:
    app_dir = copy_app("scaling", tmp_path)
    host = Host(app_dir, "--max-instances", "2", "--idle-timeout", "30").wait_ready()
    try:
        seen: list[int] = []
        stop = False

        def watch() -> None:
            while not stop:
                seen.append(len(_status(host)["workers"]))
                seen.append(len(host.worker_pids()))

        with concurrent.futures.ThreadPoolExecutor(61) as pool:
            watcher = pool.submit(watch)
            # 60 concurrent naps keep in-flight per worker far above the target
            results = list(pool.map(lambda i: _fresh_get(host, "/nap/1.5"), range(60)))
            stop = True
            watcher.result()
        assert all(r.status_code == 200 for r in results)
        assert max(seen) == 2, seen
        status = _status(host)
        assert len(status["workers"]) <= 2
        assert status["scaling"]["max_instances"] == 2
    finally:
        host.stop()


def test_min_instances_are_kept_running(tmp_path: Path) -> None:
    app_dir = copy_app("scaling", tmp_path)
    host = Host(app_dir, "--min-instances", "1", "--idle-timeout", "0.2").wait_ready()
    try:
        assert len(host.worker_pids()) == 1
        time.sleep(1.0)
        assert len(host.worker_pids()) == 1
        status = _status(host)
        assert status["workers"][0]["state"] == "ready"
    finally:
        host.stop()


def test_memory_cap_replaces_a_worker_after_its_work_ends() -> None:
    host = Host(APPS / "scaling", "--workers", "1", "--memory-limit-mb", "150").wait_ready()
    try:
        before = host.worker_pids()
        assert _fresh_get(host, "/hoard/200").text == "holding 200 MiB"
        line = host.wait_for_log(
            msg="worker memory is over memory_limit_mb; replacing it once its work is done"
        )
        assert line["rss_mb"] > 150
        assert line["memory_limit_mb"] == 150
        _eventually(
            lambda: len(host.worker_pids()) == 1 and host.worker_pids() != before,
            what="replacement worker",
        )
        # the new worker starts from the zygote's clean state
        assert _fresh_get(host, "/hoard/1").text == "holding 1 MiB"
    finally:
        host.stop()


def test_a_worker_over_its_memory_cap_is_replaced_while_it_finishes_its_work() -> None:
    """It stops accepting and finishes what it holds; its replacement serves meanwhile.
    The scaler counted it as serving, so new requests waited for its work to end."""
    host = Host(
        APPS / "scaling", "--workers", "1", "--memory-limit-mb", "150", "--shutdown-timeout", "1"
    ).wait_ready()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            long = pool.submit(_fresh_get, host, "/nap/30")  # in flight on that worker
            host.wait_inflight(1, "nap")
            assert _fresh_get(host, "/hoard/200").text == "holding 200 MiB"
            host.wait_for_log(
                msg="worker memory is over memory_limit_mb; replacing it once its work is done"
            )
            with httpx.Client(base_url=host.url, timeout=15) as client:
                assert client.get("/hello/meanwhile").text == "Hello meanwhile"
            assert not long.done(), "the work it held should still be running"
            host.signal(signal.SIGTERM)  # the nap is cut at the shutdown timeout
            long.result(timeout=30)
    finally:
        host.stop()


@pytest.mark.parametrize("mode", ["app", "none"])
def test_a_memory_cap_below_a_fresh_workers_memory_is_refused_at_start(mode: str) -> None:
    # a worker already over it would be replaced after every invocation, forever
    host = Host(APPS / "scaling", "--memory-limit-mb", "5", "--prewarm", mode)
    assert host.wait_exit() == 2
    err = "\n".join(host.stderr_lines)
    assert "memory_limit_mb=5 is not above the" in err and "MB a worker starts with" in err
    assert "set it well above that (--memory-limit-mb" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("mode", ["app", "runtime", "none"])
def test_every_prewarm_mode_serves_from_zero(mode: str) -> None:
    host = Host(APPS / "scaling", "--prewarm", mode).wait_ready()
    try:
        assert f"(prewarm {mode})" in host.stderr_lines[0]
        r = _fresh_get(host, "/hello/cold")
        assert r.text == "Hello cold"
        line = host.wait_for_log(msg="invocation", invocation_id=r.headers["x-invocation-id"])
        assert line["cold_start"] is True
    finally:
        host.stop()


def test_app_settings_apply_and_runtime_prewarm_imports_after_the_fork() -> None:
    host = Host(APPS / "prewarm_runtime").wait_ready()
    try:
        assert "1 worker (prewarm runtime)" in host.stderr_lines[0]
        body = _fresh_get(host, "/who").json()
        # the module was imported by the worker itself, not inherited from the zygote
        assert body["imported_by"] == body["serving"]
        # and twice in all: the zygote that read the settings hands what it found to the
        # zygote it becomes, which does not import the app again to check it
        printed = [r["msg"] for r in host.logs() if r["msg"].startswith("imported ")]
        assert len(printed) == 2, printed
        assert printed[-1] == f"imported {body['serving']}"
    finally:
        host.stop()


def test_a_runtime_prewarmed_worker_that_cannot_import_the_app_says_why(tmp_path: Path) -> None:
    """A worker that imports the app itself (prewarm "runtime") after its file broke
    exited with code 1 and no word: the import's error was dropped by the exit."""
    app_dir = copy_app("prewarm_runtime", tmp_path)
    host = Host(app_dir).wait_ready()
    try:
        assert _fresh_get(host, "/who").status_code == 200
        source = app_dir / "function_app.py"
        source.write_text(source.read_text() + "\nsyntax error(\n")
        (victim,) = host.worker_pids()
        os.kill(victim, signal.SIGKILL)
        line = host.wait_for_log(msg="worker crashed", timeout=30)
        assert line["level"] == "error" and "function_app.py" in line["error"]
        assert "SyntaxError" in line["error"] + line.get("traceback", "")
    finally:
        host.stop()


def test_cli_flags_override_app_settings() -> None:
    host = Host(APPS / "prewarm_runtime", "--prewarm", "app", "--max-instances", "2").wait_ready()
    try:
        assert "1..2 workers (prewarm app)" in host.stderr_lines[0]
        body = _fresh_get(host, "/who").json()
        assert body["imported_by"] != body["serving"]  # forked from the zygote that imported it
    finally:
        host.stop()


def test_status_table_and_errors(tmp_path: Path) -> None:
    app_dir = copy_app("scaling", tmp_path)
    host = Host(app_dir, "--workers", "1").wait_ready()
    try:
        _fresh_get(host, "/hello/x")
        result = run_cli("status", "--app", str(host.app_dir))
        assert result.returncode == 0, result.stderr
        assert "hello" in result.stdout
        assert "ready" in result.stdout
    finally:
        host.stop()
    # the host removed its address on exit: status says no host runs there
    gone = run_cli("status", "--app", str(app_dir))
    assert gone.returncode == 1
    assert "no running host found" in gone.stderr
    # a folder that does not exist: a usage error (it said to `hibana serve` it, which fails)
    nowhere = run_cli("status", "--app", str(tmp_path / "elsewhere"))
    assert nowhere.returncode == 2
    assert f"folder {tmp_path / 'elsewhere'} does not exist" in " ".join(
        nowhere.stderr.replace("│", "").split()
    )


def test_conflicting_scaling_flags_are_usage_errors() -> None:
    both = run_cli("serve", str(APPS / "scaling"), "--workers", "2", "--max-instances", "3")
    assert both.returncode == 2
    assert "--workers sets both" in both.stderr
    bad = run_cli("serve", str(APPS / "scaling"), "--prewarm", "lukewarm")
    assert bad.returncode == 2
    assert "lukewarm" in bad.stderr
    inverted = run_cli(
        "serve", str(APPS / "scaling"), "--min-instances", "3", "--max-instances", "1"
    )
    assert inverted.returncode == 2
    assert "--min-instances 3 is over --max-instances 1" in inverted.stderr


def test_a_worker_slower_to_start_than_the_idle_timeout_still_serves() -> None:
    host = Host(APPS / "slow_import", "--prewarm", "runtime", "--idle-timeout", "0.2").wait_ready()
    try:
        started = time.monotonic()
        r = _fresh_get(host, "/hello")
        assert r.text == "finally"
        assert time.monotonic() - started < 5
        line = host.wait_for_log(msg="invocation", invocation_id=r.headers["x-invocation-id"])
        assert line["cold_start_ms"] >= 600  # the import it waited for is in its cold start
        assert not any("exited with code" in line for line in host.stderr_lines)
    finally:
        host.stop()


def test_an_app_of_many_functions_asking_for_runtime_prewarm_starts(tmp_path: Path) -> None:
    # what the zygote that read its settings hands on is over what an environment string
    # holds (128 KiB): the new zygote checks the app itself instead
    (tmp_path / "function_app.py").write_text(
        "import hibana\n"
        "app = hibana.App(prewarm='runtime')\n"
        "for i in range(1500):\n"
        "    def f(req, ctx):\n"
        "        return 'x'\n"
        "    app.http(f'/api/v1/resources/item{i}', methods=['GET', 'POST'], name=f'item_{i}')(f)\n"
    )
    host = Host(tmp_path).wait_ready(60)
    try:
        assert _fresh_get(host, "/api/v1/resources/item1499").text == "x"
    finally:
        host.stop()
