"""ASGI apps (FastAPI, Starlette, bare ASGI apps of tests/apps/mounts) mounted in a live
host: lifespans, background tasks, streams, and ASGI messages out of place."""

from __future__ import annotations

import importlib.util
import json
import signal
import socket
import time
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests.adapters.payloads import (
    MakeHandler,
    v2_event,
)
from tests.hosts import APPS, Host, started


def test_a_mounted_apps_own_root_is_served_at_its_prefix_with_a_slash(host: Host) -> None:
    # /api/ is the FastAPI app's "/" (and /flask/ Flask's), as under any ASGI/WSGI server
    api = httpx.get(host.url + "/api/")
    assert (api.status_code, api.json()) == (200, {"root": True, "url": f"{host.url}/api/"})
    flask = httpx.get(host.url + "/flask/")
    assert (flask.status_code, flask.json()) == (200, {"root": True, "url": "/flask/"})


def test_fastapi_mounted_with_root_path_lifespan_and_a_deadline(host: Host) -> None:
    r = httpx.get(host.url + "/api/hello/bob?q=1&q=2", headers=[("X-Multi", "1"), ("X-Multi", "2")])
    assert r.json() == {
        "hello": "bob",
        "root_path": "/api",
        "url": f"{host.url}/api/hello/bob",
        "startups": 1,
        "q": ["1", "2"],
        "multi": ["1", "2"],  # an ASGI app sees repeated headers as they came
    }
    slow = httpx.get(host.url + "/api/slow")
    assert slow.status_code == 504  # the mount's timeout=3 applies to the mounted app
    assert slow.json()["invocation_id"] == slow.headers["x-invocation-id"]
    host.wait_for_log(function="asgi_api", outcome="timeout")


def test_background_tasks_of_a_mounted_app_finish_before_sigterm_exits(tmp_path: Path) -> None:
    host = Host(APPS / "mounts", "--workers", "1").wait_ready()
    until = tmp_path / "go"
    try:
        r = httpx.post(host.url + "/api/job/j1", params={"until": str(until)}, timeout=10)
        assert r.json() == {"queued": "j1"}
        host.wait_for_log(msg="background j1 started")
        host.signal(signal.SIGTERM)
        host.wait_for_stderr("Shutting down")
        until.touch()  # the task can end only now, while the worker drains
        assert host.wait_exit(20) == 0
        host.wait_for_log(msg="background j1 done", timeout=1)
    finally:
        host.stop()


LIFESPAN_RAISES = """
import hibana


async def db_app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        raise ConnectionRefusedError("the database refused us")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"served"})


async def http_only(scope, receive, send):
    if scope["type"] != "http":  # as Django's ASGI app: no lifespan spoken
        raise ValueError("only HTTP here")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"http only"})


app = hibana.App()
app.asgi("/db", db_app)
app.asgi("/plain", http_only)
"""


def test_a_lifespan_startup_that_raises_is_logged_and_the_app_served(tmp_path: Path) -> None:
    # the ASGI spec: a server goes on without lifespan; the error is the one clue the
    # user gets that their startup never ran
    (tmp_path / "function_app.py").write_text(LIFESPAN_RAISES)
    for host in started(tmp_path, "--workers", "1"):
        assert httpx.get(host.url + "/db/").text == "served"
        assert httpx.get(host.url + "/plain/").text == "http only"
        line = host.wait_for_log(
            level="warning", error="ConnectionRefusedError: the database refused us"
        )
        assert line["msg"].startswith(
            "the app mounted at /db raised in its lifespan startup; it is served without its "
            "lifespan (to stop the start instead, catch the error and send "
            "lifespan.startup.failed)"
        )
        # one that never took the startup message does not speak lifespan: nothing to say
        assert not [r for r in host.logs() if "/plain" in str(r.get("msg"))]


LIFESPAN_HANGS = """
import asyncio

import hibana


async def waits(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await asyncio.Event().wait()  # a database that never answers
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"up"})


app = hibana.App()
app.asgi("/slow", waits)
"""


def test_a_lifespan_startup_that_does_not_end_is_told(tmp_path: Path) -> None:
    # the worker serves nothing until it ends: the host printed nothing at all, not even
    # its banner, and the user could not tell what it waited on
    (tmp_path / "function_app.py").write_text(LIFESPAN_HANGS)
    host = Host(tmp_path, "--workers", "1")
    try:
        line = host.wait_for_log(level="warning", timeout=60)
        assert line["msg"].startswith(
            "the app mounted at /slow has not finished its lifespan startup after 5s, and "
            "this worker serves once it does"
        )
    finally:
        host.stop()


LIFESPAN_SHUTDOWN_FAILS = """
import hibana


def lifespan(on_shutdown):
    async def asgi(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await on_shutdown(send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"up"})

    return asgi


async def says_failed(send):
    await send({"type": "lifespan.shutdown.failed", "message": "the cache could not be flushed"})


async def raises(send):
    raise OSError("the disk went away")


app = hibana.App()
app.asgi("/says", lifespan(says_failed))
app.asgi("/raises", lifespan(raises))
"""


def test_a_lifespan_shutdown_that_fails_or_raises_is_logged(tmp_path: Path) -> None:
    (tmp_path / "function_app.py").write_text(LIFESPAN_SHUTDOWN_FAILS)
    host = Host(tmp_path, "--workers", "1").wait_ready()
    try:
        assert httpx.get(host.url + "/says/").text == "up"
        host.signal(signal.SIGTERM)
        assert host.wait_exit(20) == 0
        for prefix, error in [
            ("/says", "the cache could not be flushed"),
            ("/raises", "it raised OSError: the disk went away"),
        ]:
            line = host.wait_for_log(
                msg=f"the app mounted at {prefix} failed its lifespan shutdown", timeout=1
            )
            assert (line["level"], line["error"]) == ("warning", error)
    finally:
        host.stop()


TWO_PREFIXES = """
import os
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import hibana

startups = []


@asynccontextmanager
async def lifespan(app):
    startups.append(os.getpid())
    print("lifespan startup", flush=True)
    yield {"pool": "the one pool"}
    print("lifespan shutdown", flush=True)


async def where(request):
    return JSONResponse(
        {"root": request.scope["root_path"], "startups": len(startups), "pool": request.state.pool}
    )


shop = Starlette(routes=[Route("/", where)], lifespan=lifespan)
app = hibana.App()
app.asgi("/shop", shop)
app.asgi("/v1/shop", shop, name="shop_v1")
"""


def test_one_asgi_app_at_two_prefixes_runs_its_lifespan_once(
    tmp_path: Path, lambda_handler: MakeHandler
) -> None:
    # as under uvicorn with an app mounted twice in Starlette: one app, one lifespan per
    # process, and its state (one pool) reaches the requests of both prefixes
    (tmp_path / "function_app.py").write_text(TWO_PREFIXES)
    host = Host(tmp_path, "--workers", "1").wait_ready()
    try:
        for prefix in ("/shop", "/v1/shop"):
            r = httpx.get(host.url + prefix + "/")
            assert r.json() == {"root": prefix, "startups": 1, "pool": "the one pool"}
        host.signal(signal.SIGTERM)
        assert host.wait_exit(20) == 0
        shutdowns = [line for line in host.stdout_lines if "lifespan shutdown" in line]
        assert len(shutdowns) == 1
    finally:
        host.stop()
    spec = importlib.util.spec_from_file_location("two_prefixes", tmp_path / "function_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handle = lambda_handler(module.app)
    for prefix in ("/shop/", "/v1/shop/"):
        answer = json.loads(handle(v2_event("GET", prefix), None)["body"])
        assert answer == {"root": prefix.rstrip("/"), "startups": 1, "pool": "the one pool"}


def test_background_tasks_of_a_head_request_run_on(host: Host, tmp_path: Path) -> None:
    # a HEAD's body is not sent, and its stream closed unread: the app's work after it is not
    until = tmp_path / "go"
    r = httpx.head(host.url + "/api/job/h1", params={"until": str(until)}, timeout=10)
    assert r.status_code == 200
    host.wait_for_log(msg="background h1 started")
    until.touch()
    host.wait_for_log(msg="background h1 done")


def test_what_a_lifespan_startup_stores_reaches_each_request(
    host: Host, mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    # ASGI's lifespan state: FastAPI's lifespan yields it, request.state holds it
    r = httpx.get(host.url + "/api/db", timeout=10)
    assert (r.status_code, r.json()) == (200, {"db": "connected-db"})
    on_lambda = lambda_handler(mounts.api)(v2_event("GET", "/db"), None)
    assert (on_lambda["statusCode"], json.loads(on_lambda["body"])) == (200, {"db": "connected-db"})


def test_a_mounted_apps_whole_response_is_framed_once_and_head_keeps_its_length(
    host: Host,
) -> None:
    with host.client() as client:
        r = client.get("/api/hello/ann")
        flask = client.get("/flask/items/3")
        head = client.head("/flask/items/3")
    assert r.status_code == 200 and r.json()["hello"] == "ann"
    # one write with a Content-Length, not a chunked stream, and the app's own length
    # header not repeated beside hibana's
    assert r.headers.get_list("content-length") == [str(len(r.content))]
    assert "transfer-encoding" not in r.headers
    assert flask.headers.get_list("content-length") == [str(len(flask.content))]
    # HEAD: no body, and the length the GET's body has
    assert head.status_code == 200 and head.content == b""
    assert head.headers.get_list("content-length") == [str(len(flask.content))]


def test_a_mounted_app_failing_after_its_answer_is_logged(host: Host) -> None:
    with host.client() as client:
        r = client.get("/raw-after")
    assert (r.status_code, r.text) == (200, "answered")  # what was sent stands
    line = host.wait_for_log(msg="the mounted app raised after its whole response")
    assert line["error"] == "RuntimeError: failed after the answer"
    assert line["invocation_id"] == r.headers["x-invocation-id"]


@pytest.mark.parametrize(
    ("path", "error"),
    [
        (
            "/str-headers/",
            "TypeError: the app mounted at /str-headers sent the response header ('x-a', "
            '\'1\'): ASGI headers are pairs of bytes, as in (b"content-type", b"text/plain")',
        ),
        ("/bad-status/", "ValueError: HTTP status 999 is not an integer from 200 to 599"),
    ],
)
def test_an_asgi_response_start_of_another_shape_fails_the_apps_send_naming_it(
    host: Host, path: str, error: str
) -> None:
    # it waited for its deadline (a 504), the error lost in a callback of the loop
    r = httpx.get(host.url + path, timeout=10)
    assert r.status_code == 500
    line = host.wait_for_log(msg="function raised", invocation_id=r.headers["x-invocation-id"])
    assert line["error"] == error


def test_an_asgi_body_sent_before_its_start_fails_the_apps_send_naming_it(host: Host) -> None:
    # it was dropped without a word: the client got 200 "the rest", the body sent first lost
    r = httpx.get(f"{host.url}/out-of-order/body-first", timeout=10)
    assert r.status_code == 500
    line = host.wait_for_log(msg="function raised", invocation_id=r.headers["x-invocation-id"])
    assert line["error"] == (
        "RuntimeError: the app mounted at /out-of-order sent http.response.body before "
        "http.response.start: a response begins with its start (status, headers)"
    )


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        (
            "two-starts",
            "http.response.start a second time: a response has one start (status, "
            "headers), then its body",
        ),
        (
            "trailers",
            "a message of type 'http.response.trailers', which no HTTP response here has: "
            "send http.response.start, then http.response.body",
        ),
    ],
)
def test_an_asgi_message_out_of_place_after_the_start_cuts_the_answer_naming_it(
    host: Host, kind: str, error: str
) -> None:
    # each was dropped without a word, and the answer went out whole as if it were fine:
    # a second start's status replaced the first's, trailers vanished. The head is out
    # by then (it goes as the app streams), so the answer is cut short, as a stream
    # that breaks off is, and its invocation line names what broke it
    with httpx.stream("GET", f"{host.url}/out-of-order/{kind}", timeout=10) as r:
        assert r.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            r.read()
        invocation = r.headers["x-invocation-id"]
    line = host.wait_for_log(msg="invocation", invocation_id=invocation)
    assert line["outcome"] == "error"
    assert line["error"] == "RuntimeError: the app mounted at /out-of-order sent " + error


def test_server_sent_events_stream_through(host: Host) -> None:
    arrivals: list[tuple[float, str]] = []
    with httpx.stream("GET", host.url + "/api/events", timeout=10) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line:
                arrivals.append((time.monotonic(), line))
    assert [line for _, line in arrivals] == ["data: tick 0", "data: tick 1", "data: tick 2"]
    # each event arrived when it was produced, not all at the end
    assert arrivals[-1][0] - arrivals[0][0] > 0.4


def test_a_mounted_stream_that_breaks_off_is_cut_short(host: Host) -> None:
    received: list[str] = []
    with httpx.stream("GET", host.url + "/api/events-broken", timeout=10) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        received.append(next(lines))
        with pytest.raises(httpx.RemoteProtocolError):  # no clean end: it was cut short
            received.extend(line for line in lines if line)
    assert received == ["data: tick 0"]  # what came before the failure
    line = host.wait_for_log(msg="invocation", path="/api/events-broken")
    assert line["outcome"] == "error" and line["error"] == "RuntimeError: the feed went away"


def test_a_mounted_app_streaming_to_a_slow_client_waits_for_it(host: Host) -> None:
    # 2000 chunks of 64 KiB (125 MiB) to a client that reads only the head: the app must
    # be held back by the client, not have its whole body buffered in the worker
    def sent() -> int:
        count: int = httpx.get(host.url + "/api/big-sent", timeout=10).json()["sent"]
        return count

    addr, port = host.url.removeprefix("http://").split(":")
    before = sent()
    with socket.create_connection((addr, int(port)), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /api/big/2000 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(12) == b"HTTP/1.1 200"
        last, now = -1, sent() - before
        while now != last:  # until the app stops getting ahead
            time.sleep(0.3)
            last, now = now, sent() - before
        # what fits in the sockets' buffers and a few chunks of hibana's, not the body
        assert now < 500, f"{now} of 2000 chunks produced for a client that read none"
    line = host.wait_for_log(msg="invocation", path="/api/big/2000")
    assert line["cancel_reason"] == "client_disconnected"


def test_a_mounted_app_waiting_on_receive_is_told_its_client_left(host: Host) -> None:
    """A long poll or a stream that watches receive() (Starlette's is_disconnected) must
    not run on to its timeout after its client has gone."""
    addr, port = host.url.removeprefix("http://").split(":")
    with socket.create_connection((addr, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /long-poll/x HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
    said = host.wait_for_log(msg="saw http.disconnect on /long-poll/x")
    # it ended when told, answering no one: not a failure
    line = host.wait_for_log(msg="invocation", invocation_id=said["invocation_id"])
    assert (line["outcome"], line["cancel_reason"]) == ("cancelled", "client_disconnected")
