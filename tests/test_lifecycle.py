"""The host's life: graceful shutdown, forced shutdown, dead workers, reload."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.hosts import APPS, Host, children


def assert_like_a_workers(host: Host, answer: httpx.Response) -> None:
    """``answer``, which the supervisor wrote for a worker that is gone, is as a worker's
    own would be: dated, compact JSON, its trace sent as a header and in its log line
    (before, none of these), the line saying how long the invocation ran (before, not)."""
    assert "date" in answer.headers
    assert answer.content == json.dumps(answer.json(), separators=(",", ":")).encode()
    _, trace_id, span_id, _ = answer.headers["traceparent"].split("-")
    line = host.wait_for_log(msg="invocation", invocation_id=answer.headers["x-invocation-id"])
    assert (line["trace_id"], line["span_id"]) == (trace_id, span_id)
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0, line


def _get(host: Host, path: str) -> httpx.Response:
    with host.client() as client:
        return client.get(path)


def test_sigterm_lets_inflight_finish_refuses_new_work_and_exits_0() -> None:
    host = Host(APPS / "basic", "--workers", "1", "--shutdown-timeout", "10").wait_ready()
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            inflight = pool.submit(_get, host, "/finish-after-cancel")
            polite = pool.submit(_get, host, "/work/20")
            host.wait_inflight(2)
            host.signal(signal.SIGTERM)
            host.wait_for_stderr("Shutting down: draining 1 worker")
            deadline = time.monotonic() + 10
            while (refused := _get(host, "/hello/late")).status_code != 503:
                # the worker may not have seen the forwarded signal yet on a loaded machine
                assert refused.status_code == 200
                assert time.monotonic() < deadline, "new requests were never refused"
                time.sleep(0.02)
            assert refused.headers["retry-after"] == "1"
            assert refused.headers["connection"] == "close"
            assert "shutting down" in refused.json()["error"]
            done = inflight.result(timeout=10)
            assert done.status_code == 200
            assert done.text == "finished, cancelled=True"  # it saw the cancellation signal
            # a function that polls ctx.cancelled stops early on shutdown
            assert polite.result(timeout=10).text == "stopped early"
        assert host.wait_exit(15) == 0
        line = host.wait_for_log(msg="sync function saw cancellation")
        assert line["reason"] == "shutdown"
    finally:
        host.stop()


def test_a_body_sent_after_sigterm_is_not_asked_for() -> None:
    """A request with Expect: 100-continue that arrives while the worker drains gets its
    503 at once: no 100 Continue, for a body it would only refuse."""
    host = Host(APPS / "basic", "--workers", "1").wait_ready()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            inflight = pool.submit(_get, host, "/finish-after-cancel")
            host.wait_inflight(1)
            host.signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _get(host, "/hello/late").status_code != 503:
                assert time.monotonic() < deadline, "new requests were never refused"
                time.sleep(0.02)
            addr, port = host.url.removeprefix("http://").split(":")
            with socket.create_connection((addr, int(port)), timeout=10) as sock:
                sock.sendall(
                    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n"
                    b"Expect: 100-continue\r\n\r\n"
                )
                first = sock.recv(65536).split(b"\r\n")[0]
            assert first == b"HTTP/1.1 503 Service Unavailable"
            assert inflight.result(timeout=15).status_code == 200
        assert host.wait_exit(15) == 0
    finally:
        host.stop()


def test_a_body_arriving_when_sigterm_comes_gets_its_503() -> None:
    """The worker stopped reading a connection once it drained, a body half sent on it
    too: its client got no answer at all, its connection closed under it."""
    host = Host(APPS / "basic", "--workers", "1").wait_ready()
    try:
        addr, port = host.url.removeprefix("http://").split(":")
        with socket.create_connection((addr, int(port)), timeout=20) as sock:
            sock.sendall(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            reader = sock.makefile("rb")
            assert reader.readline() == b"HTTP/1.1 100 Continue\r\n"  # the head is read
            assert reader.readline() == b"\r\n"
            sock.sendall(b"x" * 10)
            host.signal(signal.SIGTERM)
            answer = reader.read()
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer
        assert b"shutting down" in answer
        assert host.wait_exit(15) == 0
    finally:
        host.stop()


def test_sigterm_to_every_process_of_the_host_is_one_graceful_shutdown() -> None:
    # systemd (KillMode=control-group, its default) signals every process of the service,
    # and the supervisor then passes the signal on: a worker gets it twice, apart. Before,
    # it took the second for "stop now" and cut its requests off without an answer.
    host = Host(APPS / "basic", "--workers", "1").wait_ready()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            inflight = pool.submit(_get, host, "/finish-after-cancel")
            host.wait_inflight(1)
            (worker,) = host.worker_pids()
            os.kill(worker, signal.SIGTERM)
            time.sleep(0.2)
            host.signal(signal.SIGTERM)
            done = inflight.result(timeout=15)
            assert (done.status_code, done.text) == (200, "finished, cancelled=True")
        assert host.wait_exit(15) == 0
    finally:
        host.stop()


def test_a_worker_retiring_after_a_reload_drains_on_sigterm_too(tmp_path: Path) -> None:
    # its requests still finish (up to --shutdown-timeout); SIGTERM is not a "stop now"
    app_dir = tmp_path / "basic"
    shutil.copytree(APPS / "basic", app_dir, ignore=shutil.ignore_patterns(".hibana"))
    host = Host(app_dir, "--workers", "1").wait_ready()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            inflight = pool.submit(_get, host, "/finish-after-cancel")
            host.wait_inflight(1)
            host.signal(signal.SIGHUP)
            host.wait_for_stderr("Reloaded: generation 2")
            host.signal(signal.SIGTERM)
            done = inflight.result(timeout=15)
            assert (done.status_code, done.text) == (200, "finished, cancelled=True")
        assert host.wait_exit(15) == 0
    finally:
        host.stop()


SLOW_TO_START = """
import asyncio

import hibana


async def api(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await asyncio.sleep(60)  # a worker is started for the requests, and is slow to be ready
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"served"})


app = hibana.App()
app.asgi("/api", api)
"""


def test_sigterm_answers_503_to_requests_no_worker_took(tmp_path: Path) -> None:
    """Requests waiting on the socket when the last worker has gone (here: scaled to zero,
    the worker started for them is not ready yet, and stops at once) get the draining 503,
    not a reset."""
    (tmp_path / "function_app.py").write_text(SLOW_TO_START)
    host = Host(tmp_path, "--min-instances", "0").wait_ready()
    address = host.url.removeprefix("http://").split(":")
    waiting = []
    try:
        for n in range(4):  # connected: in the socket's queue, which no worker takes from
            conn = socket.create_connection((address[0], int(address[1])), timeout=20)
            conn.sendall(b"GET /api/%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
            waiting.append(conn)
        deadline = time.monotonic() + 20
        while not host.worker_pids():  # started for them, not ready
            assert time.monotonic() < deadline, "no worker was started for the requests"
            time.sleep(0.02)
        host.signal(signal.SIGTERM)
        for conn in waiting:
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 "), answer
            assert b"\r\nretry-after: 1\r\n" in head
            assert json.loads(body) == {"error": "this host is shutting down; retry the request"}
        assert host.wait_exit(20) == 0
        host.wait_for_stderr(r"answered 4 waiting request\(s\) 503: this host is shutting down")
        # the starting worker stopped when told to, not killed after the shutdown timeout
        assert not any("did not stop in time" in line for line in host.stderr_lines)
        assert not any('"worker crashed"' in line for line in host.stdout_lines)
    finally:
        for conn in waiting:
            conn.close()
        host.stop()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # it has exited
        return b""


def test_sigterm_while_the_app_imports_stops_with_exit_0(tmp_path: Path) -> None:
    (tmp_path / "function_app.py").write_text(
        "import time\n\nimport hibana\n\ntime.sleep(30)\napp = hibana.App()\n"
    )
    host = Host(tmp_path)
    try:
        deadline = time.monotonic() + 20
        while not any(  # the zygote, importing the app
            b"hibana.host.zygote" in _cmdline(pid) for pid in children(host.proc.pid)
        ):
            assert time.monotonic() < deadline, "the host never began to import the app"
            time.sleep(0.02)
        host.signal(signal.SIGTERM)
        assert host.wait_exit(10) == 0
        host.wait_for_stderr("Stopped before the app served")
    finally:
        host.stop()


SLOW_LIFESPAN = """
import asyncio

import hibana


async def api(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await asyncio.sleep(30)
        await send({"type": "lifespan.startup.complete"})


app = hibana.App()
app.asgi("/api", api)
"""


def test_sigterm_while_the_workers_start_stops_without_announcing_the_host(
    tmp_path: Path,
) -> None:
    """A signal while a mounted app's lifespan starts: the host is not reported (nor told
    to its service manager) as listening just before it shuts down."""
    (tmp_path / "function_app.py").write_text(SLOW_LIFESPAN)
    host = Host(tmp_path, "--workers", "1")
    try:
        deadline = time.monotonic() + 20
        while not host.worker_pids():
            assert time.monotonic() < deadline, "the host never started its worker"
            time.sleep(0.02)
        host.signal(signal.SIGTERM)
        assert host.wait_exit(20) == 0
        host.wait_for_stderr("Stopped before the app served", 1)
        assert not [line for line in host.stderr_lines if "Listening on" in line]
    finally:
        host.stop()


@pytest.mark.parametrize("prewarm", ["runtime", "none"])
def test_a_host_stopped_while_it_checks_the_app_leaves_nothing_running(
    tmp_path: Path, prewarm: str
) -> None:
    """Without the app imported in the zygote, a child of it imports the app to read its
    functions; it went on after the host had gone, and printed a traceback later."""
    (tmp_path / "function_app.py").write_text(
        "import time\n\nimport hibana\n\ntime.sleep(30)\napp = hibana.App()\n"
    )
    host = Host(tmp_path, "--prewarm", prewarm)
    try:
        deadline = time.monotonic() + 20
        while not (checking := _grandchildren(host.proc.pid)):
            assert time.monotonic() < deadline, "the host never began to check the app"
            time.sleep(0.02)
        host.signal(signal.SIGTERM)
        assert host.wait_exit(10) == 0
        deadline = time.monotonic() + 5
        while left := [pid for pid in checking if Path(f"/proc/{pid}").exists()]:
            stat = Path(f"/proc/{left[0]}/stat").read_text().rpartition(")")[2].split()
            if stat[0] == "Z":  # dead, waiting to be reaped by its new parent
                checking.remove(left[0])
                continue
            assert time.monotonic() < deadline, f"still running the app's import: {left}"
            time.sleep(0.05)
    finally:
        host.stop()


def _grandchildren(pid: int) -> list[int]:
    """Before the app has loaded: the zygote's child that imports it to read it."""
    return [grandchild for child in children(pid) for grandchild in children(child)]


def test_shutdown_timeout_bounds_the_wait() -> None:
    host = Host(APPS / "basic", "--workers", "1", "--shutdown-timeout", "1").wait_ready()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            stuck = pool.submit(_get, host, "/slow/20")
            host.wait_inflight(1)
            started = time.monotonic()
            host.signal(signal.SIGTERM)
            assert host.wait_exit(15) == 0
            assert time.monotonic() - started < 8
            abandoned = stuck.result(timeout=10)
            assert abandoned.status_code == 503
            assert abandoned.headers["retry-after"] == "1"
            assert abandoned.json()["invocation_id"] == abandoned.headers["x-invocation-id"]
        line = host.wait_for_log(msg="invocation", outcome="cancelled")
        assert line["cancel_reason"] == "shutdown"
        # a worker's exit as the zygote exits is no traceback on the operator's terminal
        assert [line for line in host.stderr_lines if "Exception ignored" in line] == []
    finally:
        host.stop()


def test_a_streaming_response_is_told_of_shutdown_and_ends_whole() -> None:
    host = Host(APPS / "basic", "--workers", "1", "--shutdown-timeout", "10").wait_ready()
    try:
        with httpx.stream("GET", host.url + "/ticker", timeout=10) as r:
            ticks = r.iter_lines()
            assert next(ticks) == "tick"
            host.signal(signal.SIGTERM)
            rest = list(ticks)  # ends cleanly: no RemoteProtocolError for a cut body
        assert set(rest) <= {"tick"}
        assert host.wait_exit(15) == 0
        stopped = host.wait_for_log(msg="ticker stopped")
        assert stopped["reason"] == "shutdown"
        line = host.wait_for_log(msg="invocation", function="ticker")
        assert (line["outcome"], line["status"]) == ("ok", 200)
    finally:
        host.stop()


def test_a_stream_that_ignores_shutdown_is_cut_at_the_shutdown_timeout() -> None:
    host = Host(APPS / "basic", "--workers", "1", "--shutdown-timeout", "1").wait_ready()
    try:
        with httpx.stream("GET", host.url + "/ticker?deaf=1", timeout=10) as r:
            ticks = r.iter_lines()
            assert next(ticks) == "tick"
            started = time.monotonic()
            host.signal(signal.SIGTERM)
            with pytest.raises(httpx.RemoteProtocolError):  # cut short, and the client knows
                for _ in ticks:
                    pass
            waited = time.monotonic() - started
        assert host.wait_exit(15) == 0
        assert waited >= 1  # it had its shutdown_timeout
        # and no more: it was not left the 2 s that finished answers get to be written
        assert waited < 2.5, waited
        line = host.wait_for_log(msg="invocation", function="ticker")
        assert (line["outcome"], line["cancel_reason"]) == ("cancelled", "shutdown")
        assert host.wait_for_log(msg="ticker stopped")["reason"] == "shutdown"
    finally:
        host.stop()


def test_second_signal_forces_exit() -> None:
    host = Host(APPS / "basic", "--workers", "1", "--shutdown-timeout", "30").wait_ready()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(_get, host, "/slow/20")
            host.wait_inflight(1)
            host.signal(signal.SIGINT)
            host.wait_for_stderr("Shutting down")  # the window is counted from then
            time.sleep(0.3)  # past the window in which a second signal is taken for an echo
            host.signal(signal.SIGINT)
            assert host.wait_exit(15) == 1  # not after the 20 s the drain would wait
            # its client is told, not left with a closed connection and nothing
            answer = slow.result(timeout=10)
        host.wait_for_stderr("Second signal: stopping now")
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert answer.json()["invocation_id"] == answer.headers["x-invocation-id"]
        assert "stopped at once (a second signal)" in answer.json()["error"]
        assert_like_a_workers(host, answer)
    finally:
        host.stop()


def test_no_process_outlives_the_host() -> None:
    host = Host(APPS / "basic", "--workers", "2").wait_ready()
    try:
        workers = host.worker_pids()
        assert len(workers) == 2
        host.proc.kill()  # kill -9 the supervisor: the zygote and the workers must follow
        host.wait_exit(10)
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "a worker outlived its host"
            time.sleep(0.1)
    finally:
        host.stop()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.split(") ")[1][0] != "Z"


def test_killed_worker_is_replaced_and_the_host_keeps_serving() -> None:
    host = Host(APPS / "basic", "--workers", "2").wait_ready()
    try:
        before = host.worker_pids()
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        host.wait_for_stderr(rf"worker \d \(pid {victim}\) exited with code -9")
        deadline = time.monotonic() + 10
        while len(host.worker_pids() - {victim}) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for i in range(20):
            assert _get(host, f"/hello/{i}").status_code == 200
    finally:
        host.stop()


def test_requests_held_by_a_killed_worker_get_502_naming_their_invocation() -> None:
    host = Host(APPS / "basic", "--workers", "1").wait_ready()
    try:
        with host.client() as idle_client:
            # a keep-alive connection with no request running: closed, not answered
            assert idle_client.get("/hello/idle").status_code == 200
            results: list[httpx.Response | Exception] = []

            def slow() -> None:
                try:
                    with host.client() as client:
                        results.append(client.get("/slow/20"))
                except Exception as exc:
                    results.append(exc)

            threads = [threading.Thread(target=slow) for _ in range(3)]
            for t in threads:
                t.start()
            host.wait_inflight(3)
            (victim,) = host.worker_pids()
            os.kill(victim, signal.SIGKILL)
            for t in threads:
                t.join(20)
            host.wait_for_stderr(r"answered 3 request\(s\) of the dead worker 0")
            assert all(isinstance(r, httpx.Response) for r in results), results
            responses = [r for r in results if isinstance(r, httpx.Response)]
            assert [r.status_code for r in responses] == [502, 502, 502]
            ids = {r.json()["invocation_id"] for r in responses}
            assert len(ids) == 3 and all(len(i) == 32 for i in ids)
            assert all(r.headers["x-invocation-id"] == r.json()["invocation_id"] for r in responses)
            assert "the worker running this invocation died" in responses[0].json()["error"]
            for r in responses:
                assert_like_a_workers(host, r)
            # the next request is served by a new worker
            assert _get(host, "/hello/after").status_code == 200
            assert host.worker_pids() and victim not in host.worker_pids()
            # status forgets what the dead worker ran but not what it had done
            status = host.status()
            assert victim not in {w["pid"] for w in status["workers"]}
            functions = {f["name"]: f for f in status["functions"]}
            assert functions["slow"]["inflight"] == 0
            assert functions["hello"]["invocations"] == 2  # /hello/idle (dead one's), /after
            # what it was running failed with it: counted, and each id its client got is a
            # line of the log, as any invocation's
            assert (functions["slow"]["invocations"], functions["slow"]["errors"]) == (3, 3)
            for given in ids:
                line = host.wait_for_log(msg="invocation", invocation_id=given)
                assert (line["level"], line["outcome"], line["status"]) == ("error", "error", 502)
                assert line["error"].startswith("the worker running this invocation died")
                assert (line["pid"], line["worker_exit"]) == (victim, "exit code -9")
                assert line["function"] == "slow"
    finally:
        host.stop()


def test_a_head_request_held_by_a_killed_worker_gets_its_502_without_a_body() -> None:
    """RFC 9110 9.3.2: the supervisor's 502 (and 503) to a HEAD carried its JSON after
    the head, bytes a client reading no body for a HEAD takes for the next response's."""
    host = Host(APPS / "basic", "--workers", "1").wait_ready()
    try:
        addr, port = host.url.removeprefix("http://").split(":")
        with socket.create_connection((addr, int(port)), timeout=20) as sock:
            sock.sendall(b"HEAD /slow/20 HTTP/1.1\r\nHost: x\r\n\r\n")
            host.wait_inflight(1, "slow")
            (victim,) = host.worker_pids()
            os.kill(victim, signal.SIGKILL)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 502 Bad Gateway\r\n"), answer
        assert b"x-invocation-id: " in head and b"content-length: " in head
        assert body == b""
        # the slot's mark goes with the HEAD: a GET on the next connection gets its body
        with host.client() as client:
            assert client.get("/hello/after").status_code == 200
            results: list[httpx.Response] = []
            thread = threading.Thread(target=lambda: results.append(client.get("/slow/20")))
            thread.start()
            host.wait_inflight(1, "slow")
            (victim,) = host.worker_pids()
            os.kill(victim, signal.SIGKILL)
            thread.join(20)
        assert results[0].status_code == 502
        assert "the worker running this invocation died" in results[0].json()["error"]
    finally:
        host.stop()


DEV_SOURCE = (
    "import hibana\napp = hibana.App()\n\n@app.http('/v')\ndef v(req, ctx):\n    return 'one'\n"
)


def _dev_app(tmp_path: Path) -> Path:
    """An app folder of ``DEV_SOURCE``: its /v answers "one"."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(DEV_SOURCE)
    return app_dir


def test_dev_reloads_on_change_and_keeps_serving_through_a_broken_edit(tmp_path: Path) -> None:
    app_dir, source = _dev_app(tmp_path), DEV_SOURCE
    host = Host(app_dir, command="dev").wait_ready()
    try:
        assert "1..2 workers" in host.stderr_lines[0] or "1 worker " in host.stderr_lines[0]
        assert _get(host, "/v").text == "one"
        (app_dir / "function_app.py").write_text(source.replace("'one'", "'two'"))
        deadline = time.monotonic() + 20
        while True:
            r = _get(host, "/v")
            assert r.status_code == 200, r.text  # no request fails while versions swap
            if r.text == "two":
                break
            assert time.monotonic() < deadline, "dev did not reload"
            time.sleep(0.02)
        (app_dir / "function_app.py").write_text(source.replace("(req, ctx):", "(req, ctx)"))
        host.wait_for_stderr("Still serving the previous version of the app")
        assert _get(host, "/v").text == "two"
        assert any("SyntaxError" in line for line in host.stderr_lines)
    finally:
        host.stop()
    assert host.proc.returncode == 0


def test_dev_does_not_reload_for_the_store_or_installed_packages(tmp_path: Path) -> None:
    app_dir, source = _dev_app(tmp_path), DEV_SOURCE
    host = Host(app_dir, command="dev").wait_ready()
    try:
        site = app_dir / "venv" / "lib" / "python3.11" / "site-packages" / "pkg"
        site.mkdir(parents=True)
        (site / "__init__.py").write_text("X = 1\n")  # a pip install into the app's venv
        (app_dir / ".hibana" / "notes.py").write_text("X = 1\n")
        time.sleep(1.0)  # past the watcher's debounce: a reload would have begun
        (app_dir / "function_app.py").write_text(source.replace("'one'", "'two'"))
        host.wait_for_stderr("Reloaded: generation 2")
        assert _get(host, "/v").text == "two"
        assert sum("Change detected" in line for line in host.stderr_lines) == 1
    finally:
        host.stop()


def test_dev_on_a_broken_app_waits_for_the_fix(tmp_path: Path) -> None:
    # serve fails fast on an app that does not load; dev says why and loads the fix
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    source = "import hibana\napp = hibana.App()\n\n@app.http('/v')\ndef v(req, ctx):\n"
    (app_dir / "function_app.py").write_text(source + "    return undefined_name +\n")
    host = Host(app_dir, command="dev")
    try:
        waiting = host.wait_for_stderr("Waiting for a change to")
        assert any("SyntaxError" in line for line in host.stderr_lines)
        assert host.proc.poll() is None
        url = re.search(r"until then (http://\S+) answers 503", waiting)
        assert url is not None, waiting
        meanwhile = httpx.get(url[1] + "/v", timeout=10)
        assert meanwhile.status_code == 503
        error = meanwhile.json()["error"]
        assert error.startswith("the app does not load; hibana dev waits for a change that fixes")
        assert "SyntaxError" in error
        (app_dir / "function_app.py").write_text(source + "    return 'fixed'\n")
        host.wait_ready()
        assert _get(host, "/v").text == "fixed"
    finally:
        host.stop()
    assert host.proc.returncode == 0


def test_dev_waiting_for_a_fix_stops_on_ctrl_c(tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text("import hibana\nraise RuntimeError('not yet')\n")
    host = Host(app_dir, command="dev")
    try:
        host.wait_for_stderr("Waiting for a change to")
        host.signal(signal.SIGINT)
        assert host.wait_exit(10) == 0
        host.wait_for_stderr("Stopped before the app served")
    finally:
        host.stop()


def test_new_writes_a_starter_that_serves(tmp_path: Path) -> None:
    from tests.hosts import run_cli

    target = tmp_path / "myapp"
    result = run_cli("new", str(target))
    assert result.returncode == 0, result.stderr
    assert (target / "function_app.py").exists()
    host = Host(target, "--workers", "1").wait_ready()
    try:
        assert _get(host, "/hello/starter").text == "Hello starter"
        with host.client() as client:
            echoed = client.post("/echo", json={"k": 1})
        assert echoed.json()["got"] == {"k": 1}
    finally:
        host.stop()
    # the host's state folder keeps itself out of the app's repository
    assert "*" in (target / ".hibana" / ".gitignore").read_text().splitlines()
    again = run_cli("new", str(target))
    assert again.returncode == 2
    assert "already exists" in again.stderr


def test_example_app_serves(tmp_path: Path) -> None:
    example = Path(__file__).parent.parent / "examples" / "hello"
    app_dir = tmp_path / "hello"
    shutil.copytree(example, app_dir)
    host = Host(app_dir, "--workers", "1").wait_ready()
    try:
        assert _get(host, "/hello/you").text == "Hello you"
        with host.client() as client:
            r = client.post("/items", json={"name": "x"})
        assert r.status_code == 201
        assert r.json() == {"id": 1, "got": {"name": "x"}}
        assert any("hello: [GET] http://" in line for line in host.stderr_lines)
        assert any("create: [POST] http://" in line for line in host.stderr_lines)
        assert "fulfil: queue orders" in [x.strip() for x in host.stderr_lines]
        assert "hourly_report: timer 0 * * * *" in [x.strip() for x in host.stderr_lines]
        with host.client() as client:
            order = client.post("/orders", json={"sku": "A-1"}, headers={"Idempotency-Key": "o1"})
        assert order.status_code == 202 and order.json()["duplicate"] is False
        done = host.wait_for_log(msg="fulfilling order")
        assert done["order"] == {"sku": "A-1"} and done["attempt"] == 1
        # the embedded store: a SQLite file in the app's folder, nothing to install
        assert (app_dir / ".hibana" / "state.db").is_file()
    finally:
        host.stop()


def test_the_webhooks_example_starts_once_its_secrets_are_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    monkeypatch.setenv("HIBANA_SECRET_KEY_FILE", str(tmp_path / "key"))
    example = Path(__file__).parent.parent / "examples" / "webhooks"
    app_dir = tmp_path / "webhooks"
    shutil.copytree(example, app_dir, ignore=shutil.ignore_patterns(".hibana", "__pycache__"))
    missing = Host(app_dir)
    assert missing.wait_exit() == 1
    assert "hibana secrets set" in "\n".join(missing.stderr_lines)
    for name in ("github-webhook-secret", "slack-signing-secret"):
        done = subprocess.run(
            [sys.executable, "-m", "hibana", "secrets", "set", name, "--app", str(app_dir)],
            input="an-example-secret-value",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    host = Host(app_dir, "--workers", "1").wait_ready()
    try:
        banner = "\n".join(host.stderr_lines)
        assert "failed_runs: event github (filtered)" in banner
        assert "webhook_webhooks_github: [POST]" in banner
        unsigned = httpx.post(host.url + "/webhooks/github", content=b"{}")
        assert unsigned.status_code == 401
    finally:
        host.stop()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_change_seen_while_dev_drains_does_not_spin_the_supervisor(tmp_path: Path) -> None:
    """The drain's loop never read the file watcher's wake-up byte, so every select
    returned at once: the supervisor spun a whole core until the drain ended."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    source = (
        "import time\nimport hibana\napp = hibana.App()\n\n@app.http('/slow')\n"
        "def slow(req, ctx):\n    time.sleep(5)  # deaf to the shutdown's cancellation\n"
        "    return 'done'\n"
    )
    (app_dir / "function_app.py").write_text(source)
    host = Host(app_dir, "--shutdown-timeout", "20", command="dev").wait_ready()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            inflight = pool.submit(_get, host, "/slow")
            host.wait_inflight(1)
            host.signal(signal.SIGTERM)
            host.wait_for_stderr("Shutting down: draining 1 worker")
            (app_dir / "function_app.py").write_text(source + "# an edit\n")
            time.sleep(0.5)  # the watcher's poll sees it
            before = _cpu_seconds(host.proc.pid)
            time.sleep(2)
            used = _cpu_seconds(host.proc.pid) - before
            # spinning, it used well over a second of these two (a whole core); waiting,
            # a few hundredths
            assert used < 0.5, f"the supervisor used {used:.2f}s of CPU in 2s of drain"
            assert inflight.result(timeout=20).text == "done"
        assert host.wait_exit(15) == 0
    finally:
        host.stop()


def test_the_banner_shows_a_route_with_a_space_as_one_url_a_client_can_use(
    tmp_path: Path,
) -> None:
    """ "/a " (a stray space) was printed "/a, http://127.0.0.1:PORT": the route cut in two
    URLs, neither of them the one that serves it."""
    (tmp_path / "function_app.py").write_text(
        "import hibana\n\napp = hibana.App()\n\n\n"
        '@app.http("/a ")\ndef spaced(req, ctx):\n    return "spaced"\n'
    )
    host = Host(tmp_path).wait_ready()
    try:
        line = next(x.strip() for x in host.stderr_lines if x.strip().startswith("spaced:"))
        assert line == f"spaced: [GET] {host.url}/a%20"
        assert httpx.get(line.split()[-1]).text == "spaced"
    finally:
        host.stop()
