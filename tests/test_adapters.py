"""Web apps as functions and the same apps on AWS Lambda: Flask, FastAPI and Django
mounted in a live host, and fed to hibana.aws.handler as API Gateway v1/v2, Function URL
and ALB events (built on tests/aws_events, each source's event in the shape AWS documents);
and Lambda handlers served by hibana, whose events have every field AWS documents."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote

import flask
import httpx
import pytest

import hibana.aws
from tests.hosts import APPS, Host, read_cut_short, started

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    yield from started("mounts", "--workers", "1")


MakeHandler = Callable[[Any], hibana.aws.LambdaHandler]


@pytest.fixture
def lambda_handler() -> Iterator[MakeHandler]:
    """Makes ``hibana.aws.handler``s, closed after the test (their apps' lifespans end)."""
    made: list[hibana.aws.LambdaHandler] = []

    def make(app: Any) -> hibana.aws.LambdaHandler:
        made.append(hibana.aws.handler(app))
        return made[-1]

    yield make
    for handle in made:
        handle.close()


@pytest.fixture(scope="module")
def mounts() -> ModuleType:
    """The mounts app's module, imported here for the Lambda handler tests."""
    spec = importlib.util.spec_from_file_location("mounts_app", APPS / "mounts" / "function_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mounts_app"] = module
    spec.loader.exec_module(module)
    return module


# -- mounted in the live host ----------------------------------------------------------------
def test_flask_mounted_keeps_repeated_values_and_builds_urls_under_its_prefix(host: Host) -> None:
    r = httpx.get(
        host.url + "/flask/items/7?tag=a&tag=b",
        headers=[("X-Multi", "one"), ("X-Multi", "two")],
    )
    assert r.status_code == 200
    assert r.json() == {
        "id": 7,
        "tags": ["a", "b"],
        "accept": ["one,two"],  # WSGI's environ holds one value: RFC 9110's joined form
        "self_url": "/flask/items/7",
        "script_name": "/flask",
        "path_info": "/items/7",
    }
    assert len(r.headers["x-invocation-id"]) == 32  # an invocation like any other


def test_a_mounted_apps_own_root_is_served_at_its_prefix_with_a_slash(host: Host) -> None:
    # /api/ is the FastAPI app's "/" (and /flask/ Flask's), as under any ASGI/WSGI server
    api = httpx.get(host.url + "/api/")
    assert (api.status_code, api.json()) == (200, {"root": True, "url": f"{host.url}/api/"})
    flask = httpx.get(host.url + "/flask/")
    assert (flask.status_code, flask.json()) == (200, {"root": True, "url": "/flask/"})


def test_what_a_flask_app_writes_to_wsgi_errors_is_an_error_line_of_its_invocation(
    host: Host,
) -> None:
    r = httpx.get(host.url + "/flask/complain")
    assert (r.status_code, r.text) == (200, "complained")
    invocation = r.headers["x-invocation-id"]
    # Flask's app.logger reaches Python logging, which hibana logs at the record's level
    logged = host.wait_for_log(msg="the upstream said no", invocation_id=invocation)
    assert (logged["level"], logged["logger"]) == ("error", "function_app")
    # what the app writes to wsgi.errors itself is an error line too (it was info, stdout)
    written = host.wait_for_log(msg="written to wsgi.errors", invocation_id=invocation)
    assert (written["level"], written["stream"]) == ("error", "wsgi.errors")
    # a line ended by \r\n is its text: the \r was kept at the end of the message
    assert host.wait_for_log(msg="ended by CRLF", invocation_id=invocation)["level"] == "error"


def test_cookies_of_two_cookie_headers_reach_flask_apart(host: Host) -> None:
    # as a proxy sends an HTTP/2 client's cookie crumbs (RFC 9113 8.2.3: "; " joins them)
    r = httpx.get(host.url + "/flask/cookies", headers=[("cookie", "a=1; b=2"), ("cookie", "c=3")])
    assert r.json() == {"a": "1", "b": "2", "c": "3"}


def test_flask_binary_body_and_two_cookies(host: Host) -> None:
    r = httpx.post(host.url + "/flask/echo", content=PNG)
    assert r.content == PNG
    assert r.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]


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


def test_a_flask_stream_whose_client_leaves_is_closed_and_frees_its_thread(host: Host) -> None:
    """Its generator's finally runs (PEP 3333: close() is called), and clients that left
    mid-stream, more of them than the bridge has threads, leave the app serving."""
    tags = [f"left-{i}" for i in range(40)]
    for tag in tags:
        with httpx.stream("GET", host.url + "/flask/gen", params={"tag": tag}, timeout=10) as r:
            assert r.status_code == 200
            next(r.iter_bytes())  # one part, then away
    r = httpx.get(host.url + "/flask/items/3", timeout=10)
    assert r.status_code == 200 and r.json()["id"] == 3
    deadline = time.monotonic() + 10
    while True:
        states = httpx.get(host.url + "/flask/streams", timeout=10).json()
        if all(states.get(tag) == "started, closed" for tag in tags):
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.1)


def test_heads_of_a_django_stream_close_it_and_leave_the_app_serving(host: Host) -> None:
    """Django leaves a HEAD's body to the server: the stream is closed, not run to its end
    nor left waiting, however many come."""
    tags = [f"head-{i}" for i in range(40)]
    for tag in tags:
        r = httpx.head(host.url + "/django/stream", params={"tag": tag}, timeout=10)
        assert (r.status_code, r.content) == (200, b"")
    r = httpx.get(host.url + "/django/pages/after-heads", timeout=10)
    assert r.status_code == 200 and r.json()["slug"] == "after-heads"
    deadline = time.monotonic() + 10
    while True:
        states = httpx.get(host.url + "/flask/streams", timeout=10).json()
        # a stream the HEAD never started is closed all the same: it never ran
        if all(states.get(tag, "started, closed") == "started, closed" for tag in tags):
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.1)


def test_what_a_wsgi_app_writes_goes_out_in_order_with_its_parts(host: Host) -> None:
    r = httpx.get(host.url + "/write-between/", timeout=10)
    assert (r.status_code, r.text) == (200, "<aWRITTENb>")


def test_a_wsgi_app_may_change_its_status_until_its_body_starts(host: Host) -> None:
    # PEP 3333: start_response again with exc_info, before any of the body went out
    r = httpx.get(host.url + "/late-error/", timeout=10)
    assert (r.status_code, r.text) == (503, "sorry")


def test_a_wsgi_app_that_wrote_cannot_change_its_status(host: Host) -> None:
    # PEP 3333: write() sends the head; start_response with exc_info then re-raises, and
    # the half page that went out is cut short (it was held back, and a 503 sent instead)
    with host.client() as client:
        r, got = read_cut_short(client, "/late-error-after-write/")
    assert (r.status_code, got) == (200, b"<html>half a page")
    line = host.wait_for_log(msg="invocation", invocation_id=r.headers["x-invocation-id"])
    assert (line["outcome"], line["error"]) == ("error", "LookupError: the record vanished")


@pytest.mark.parametrize(
    ("path", "error"),
    [
        (
            "/str-body/",
            "TypeError: the WSGI app's body holds a str 'hello', not bytes (PEP 3333): "
            "encode it, as in text.encode()",
        ),
        (
            # iterated, b"hello" gave 104 NUL bytes for its "h", and so on
            "/bare-bytes/",
            "TypeError: the WSGI app returned b'hello', not an iterable of bytes (PEP 3333): "
            "return [body], a list of its one part",
        ),
        (
            "/int-header/",
            "TypeError: the WSGI app's header ('Content-Length', 2) is not a (name, value) "
            "tuple of two str (PEP 3333): write its value as text, as in ('Content-Length', "
            "str(len(body)))",
        ),
    ],
)
def test_a_wsgi_app_giving_other_than_pep_3333_asks_is_a_500_naming_it(
    host: Host, path: str, error: str
) -> None:
    r = httpx.get(host.url + path, timeout=10)
    assert r.status_code == 500
    line = host.wait_for_log(msg="function raised", invocation_id=r.headers["x-invocation-id"])
    assert line["error"] == error


@pytest.mark.parametrize(
    ("target", "path_info"),
    [
        ("/path-info/caf%C3%A9/%FF%FE", b"/caf\xc3\xa9/\xff\xfe"),  # not UTF-8: as sent
        ("/path-info/a%2Fb%3F", b"/a/b?"),
    ],
)
def test_path_info_holds_the_bytes_the_client_escaped(
    host: Host, target: str, path_info: bytes
) -> None:
    # PEP 3333's PATH_INFO: bytes as latin-1; a %FF was U+FFFD, the app could not tell
    # which bytes the client sent (gunicorn gives "\xff")
    with httpx.Client(base_url=host.url) as client:
        r = client.send(client.build_request("GET", host.url + target))
    assert (r.status_code, r.content) == (200, path_info)


def test_path_info_of_a_path_whose_dot_segments_the_front_resolved_is_that_path() -> None:
    from hibana.adapters.wsgi import environ

    # its raw_path still climbs: PATH_INFO is made from the resolved path, never from it
    scope = {"method": "GET", "root_path": "/w", "path": "/w/\ufffd", "raw_path": b"/w/x/../%FF"}
    assert environ(scope, b"")["PATH_INFO"] == "/\xef\xbf\xbd"


def test_a_wsgi_body_whose_close_raises_is_logged_in_its_invocation(host: Host) -> None:
    # close() runs on a pool thread once the body is out; what it raised went nowhere
    r = httpx.get(host.url + "/fails-to-close/", timeout=10)
    assert (r.status_code, r.text) == (200, "answered")
    line = host.wait_for_log(
        msg="the WSGI app's body raised in its close()",
        invocation_id=r.headers["x-invocation-id"],
    )
    assert (line["level"], line["error"]) == ("error", "RuntimeError: the session could not commit")


def test_the_wsgi_environ_of_a_request() -> None:
    from hibana.adapters.wsgi import environ

    scope = {
        "type": "http",
        "method": "POST",
        "root_path": "/flask",
        "path": "/flask/caf\u00e9/x",
        "query_string": b"a=1&a=2",
        "http_version": "1.1",
        "scheme": "https",
        "server": ("example.com", 443),
        "client": ("203.0.113.9", 5000),
        "headers": [
            (b"host", b"example.com"),
            (b"x-user", b"alice"),
            (b"x_user", b"mallory"),  # would pass for X-User in HTTP_X_USER
            (b"x-multi", b"1"),
            (b"x-multi", b"2"),
            (b"content-type", b"text/plain"),
            (b"content-length", b"4"),
        ],
    }
    env = environ(scope, b"body")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/flask", "/caf\u00c3\u00a9/x")
    assert env["QUERY_STRING"] == "a=1&a=2"
    assert (env["HTTP_X_USER"], env["HTTP_X_MULTI"]) == ("alice", "1,2")
    assert (env["CONTENT_TYPE"], env["CONTENT_LENGTH"]) == ("text/plain", "4")
    assert (env["SERVER_NAME"], env["SERVER_PORT"], env["wsgi.url_scheme"]) == (
        "example.com",
        "443",
        "https",
    )
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("203.0.113.9", "5000")
    assert env["wsgi.input"].read() == b"body"


def test_django_mounted(host: Host) -> None:
    r = httpx.get(host.url + "/django/pages/hello-world?x=1&x=2")
    assert r.json() == {
        "slug": "hello-world",
        "reverse": "/django/pages/hello-world",
        "x": ["1", "2"],
    }
    assert httpx.get(host.url + "/native").text == "native"  # hibana's own, beside mounts


def test_a_chunked_body_reaches_a_django_app_whole(host: Host) -> None:
    # Django reads CONTENT_LENGTH bytes of wsgi.input (none without one); hibana has the
    # whole body before the app runs, so it says how long it is
    def parts() -> Iterator[bytes]:
        yield b"first part, "
        yield b"second part"

    r = httpx.post(host.url + "/django/echo", content=parts(), timeout=10)
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert (r.status_code, r.content) == (200, b"first part, second part")


# -- Lambda events ------------------------------------------------------------------------------
class Ctx:
    aws_request_id = "5d37a5b7-8d1a-4a3c-9d7e-3f1f3a1d2c4b"

    def get_remaining_time_in_millis(self) -> int:
        return 2500


EVENTS = Path(__file__).parent / "aws_events"


def aws_event(name: str) -> dict[str, Any]:
    """One of tests/aws_events: an event in the exact shape its source sends."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event


def v1_event(
    method: str,
    path: str,
    query: list[tuple[str, str]] | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
    binary: bool = False,
) -> dict[str, Any]:
    """tests/aws_events' REST API event, asking for this request instead."""
    mv_headers: dict[str, list[str]] = {}
    for k, v in headers or []:
        mv_headers.setdefault(k, []).append(v)
    mv_query: dict[str, list[str]] = {}
    for k, v in query or []:
        mv_query.setdefault(k, []).append(v)
    event = aws_event("apigw-rest-v1")
    context = event["requestContext"]
    event.update(
        path=path,
        httpMethod=method,
        headers={k: vs[-1] for k, vs in mv_headers.items()},
        multiValueHeaders=mv_headers,
        queryStringParameters={k: vs[-1] for k, vs in mv_query.items()} or None,
        multiValueQueryStringParameters=mv_query or None,
        pathParameters={"proxy": path.lstrip("/")},
        body=None
        if body is None
        else (base64.b64encode(body).decode() if binary else body.decode()),
        isBase64Encoded=binary,
    )
    context.update(httpMethod=method, path=f"/{context['stage']}{path}")
    return event


def v2_event(
    method: str,
    raw_path: str,
    raw_query: str = "",
    headers: dict[str, str] | None = None,
    cookies: list[str] | None = None,
    body: bytes | None = None,
    binary: bool = False,
    domain: str = "abc.execute-api.us-east-1.amazonaws.com",
) -> dict[str, Any]:
    """tests/aws_events' HTTP API event (or function URL event, for a lambda-url domain),
    asking for this request instead."""
    event = aws_event("function-url" if ".lambda-url." in domain else "apigw-http-v2")
    event.pop("cookies")
    event.pop("queryStringParameters")
    query: dict[str, list[str]] = {}
    for k, v in parse_qsl(raw_query, keep_blank_values=True):
        query.setdefault(k, []).append(v)
    event.update(
        rawPath=raw_path,
        rawQueryString=raw_query,
        headers={"host": domain, **(headers or {})},
        isBase64Encoded=binary,
    )
    if query:
        event["queryStringParameters"] = {k: ",".join(vs) for k, vs in query.items()}
    event["requestContext"].update(domainName=domain, domainPrefix=domain.split(".")[0])
    event["requestContext"]["http"].update(method=method, path=raw_path)
    if cookies:
        event["cookies"] = cookies
    if body is not None:
        event["body"] = base64.b64encode(body).decode() if binary else body.decode()
    return event


def alb_event(
    method: str,
    path: str,
    raw_query: list[tuple[str, str]],
    multi: bool,
    headers: list[tuple[str, str]],
) -> dict[str, Any]:
    """tests/aws_events' load balancer event (with or without multi-value headers),
    asking for this request instead."""
    event = aws_event("alb-multi-value" if multi else "alb")
    event.update(httpMethod=method, path=path)
    if multi:
        q: dict[str, list[str]] = {}
        for k, v in raw_query:
            q.setdefault(k, []).append(v)
        h: dict[str, list[str]] = {}
        for k, v in headers:
            h.setdefault(k, []).append(v)
        event["multiValueQueryStringParameters"] = q
        event["multiValueHeaders"] = h
    else:
        event["queryStringParameters"] = dict(raw_query)
        event["headers"] = dict(headers)
    return event


def test_flask_on_lambda_with_api_gateway_v1(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    handle = lambda_handler(mounts.flask_app)
    out = handle(
        v1_event(
            "GET",
            "/items/3",
            [("tag", "a b"), ("tag", "c&d")],
            [("X-Multi", "1"), ("X-Multi", "2"), ("Host", "api.example.com")],
        ),
        Ctx(),
    )
    assert out["statusCode"] == 200 and out["isBase64Encoded"] is False
    body = json.loads(out["body"])
    assert body["tags"] == ["a b", "c&d"]  # decoded exactly once
    assert body["accept"] == ["1,2"]  # a WSGI app: one environ value, joined
    echo = handle(
        v1_event("POST", "/echo", body=PNG, binary=True, headers=[("Content-Type", "image/png")]),
        Ctx(),
    )
    assert echo["isBase64Encoded"] is True and base64.b64decode(echo["body"]) == PNG
    assert echo["multiValueHeaders"]["set-cookie"] == ["a=1; Path=/", "b=2; Path=/"]
    assert "set-cookie" not in echo["headers"]


def test_an_app_on_a_rest_apis_execute_api_url_is_served_under_its_stage(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    """There the client asks for /prod/items/3 and the event's path is /items/3: the app
    built its URLs (url_for, redirects, FastAPI's docs) without /prod, which is no URL
    of the API. requestContext.path holds what was asked."""
    host = [("Host", "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com")]
    flask = lambda_handler(mounts.flask_app)(v1_event("GET", "/items/3", headers=host), Ctx())
    seen = json.loads(flask["body"])
    assert (seen["id"], seen["self_url"], seen["script_name"], seen["path_info"]) == (
        3,
        "/prod/items/3",
        "/prod",
        "/items/3",
    )
    api = lambda_handler(mounts.api)(v1_event("GET", "/hello/ann", headers=host), Ctx())
    body = json.loads(api["body"])
    assert (body["hello"], body["root_path"]) == ("ann", "/prod")
    assert body["url"] == "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod/hello/ann"
    # a hibana app routes on what follows the stage, and so do its mounts
    app = hibana.App()

    @app.http("/where/")
    def where(req: hibana.Request, ctx: hibana.Context) -> str:
        return req.url

    handle = lambda_handler(app)
    out = handle(v1_event("GET", "/where/", headers=host), Ctx())
    assert out["body"] == "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod/where/"
    moved = handle(v1_event("GET", "/where", headers=host), Ctx())
    assert (moved["statusCode"], moved["headers"]["location"]) == (308, "/prod/where/")
    mounted = lambda_handler(mounts.app)(v1_event("GET", "/flask/items/4", headers=host), Ctx())
    assert json.loads(mounted["body"])["self_url"] == "/prod/flask/items/4"
    # at a custom domain the two paths are one: no stage to serve under
    custom = v1_event("GET", "/items/3", headers=[("Host", "api.example.com")])
    custom["requestContext"]["path"] = "/items/3"
    seen = json.loads(lambda_handler(mounts.flask_app)(custom, Ctx())["body"])
    assert (seen["self_url"], seen["script_name"]) == ("/items/3", "")


def test_an_app_on_an_http_apis_named_stage_is_served_under_it(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    """An HTTP API's stage other than $default is the first segment of rawPath (and of
    requestContext.http.path) at its execute-api URL: the app routed on /prod/items/3 and
    answered 404 to every request. Served under the stage, as a REST API's is."""

    def staged(path: str, domain: str = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com") -> Any:
        event = v2_event("GET", path, domain=domain)
        event["requestContext"]["stage"] = "prod"
        return event

    flask = lambda_handler(mounts.flask_app)(staged("/prod/items/3"), Ctx())
    seen = json.loads(flask["body"])
    assert (seen["id"], seen["self_url"], seen["script_name"], seen["path_info"]) == (
        3,
        "/prod/items/3",
        "/prod",
        "/items/3",
    )
    api = lambda_handler(mounts.api)(staged("/prod/hello/ann"), Ctx())
    body = json.loads(api["body"])
    assert (body["hello"], body["root_path"]) == ("ann", "/prod")
    assert body["url"] == "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod/hello/ann"
    app = hibana.App()

    @app.http("/where/")
    def where(req: hibana.Request, ctx: hibana.Context) -> str:
        return req.url

    handle = lambda_handler(app)
    out = handle(staged("/prod/where/"), Ctx())
    assert out["body"] == "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod/where/"
    moved = handle(staged("/prod/where"), Ctx())
    assert (moved["statusCode"], moved["headers"]["location"]) == (308, "/prod/where/")
    # at a custom domain mapped to the stage, the path holds no stage
    custom = lambda_handler(mounts.flask_app)(staged("/items/3", "api.example.com"), Ctx())
    assert json.loads(custom["body"])["script_name"] == ""


def test_fastapi_on_lambda_with_http_api_v2_and_function_urls(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    handle = lambda_handler(mounts.api)
    for domain in ("abc.execute-api.us-east-1.amazonaws.com", "xyz.lambda-url.us-east-1.on.aws"):
        out = handle(
            v2_event(
                "GET", "/hello/caf%C3%A9", "q=1&q=2%263", headers={"host": domain}, domain=domain
            ),
            Ctx(),
        )
        assert out["statusCode"] == 200
        body = json.loads(out["body"])
        assert body["hello"] == "café" and body["q"] == ["1", "2&3"]
        assert body["startups"] >= 1  # the lifespan ran
        assert unquote(body["url"]) == f"https://{domain}/hello/café"


def test_flask_cookies_and_binary_on_http_api_v2(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    handle = lambda_handler(mounts.flask_app)
    out = handle(
        v2_event(
            "POST",
            "/echo",
            body=PNG,
            binary=True,
            headers={"content-type": "image/png"},
            cookies=["s=1", "t=2"],
        ),
        Ctx(),
    )
    assert base64.b64decode(out["body"]) == PNG and out["isBase64Encoded"] is True
    assert out["cookies"] == ["a=1; Path=/", "b=2; Path=/"]
    assert "set-cookie" not in out["headers"]


@pytest.mark.parametrize("multi", [True, False])
def test_django_on_lambda_behind_an_alb(
    mounts: ModuleType, multi: bool, lambda_handler: MakeHandler
) -> None:
    handle = lambda_handler(mounts.get_wsgi_application())
    # the ALB passes the query as it came: still encoded
    out = handle(
        alb_event(
            "GET", "/pages/a-b", [("x", "1%202"), ("x", "3")], multi, [("host", "lb.example.com")]
        ),
        Ctx(),
    )
    assert out["statusCode"] == 200 and out["statusDescription"] == "200 OK"
    body = json.loads(out["body"])
    assert body["slug"] == "a-b"
    assert body["x"] == (["1 2", "3"] if multi else ["3"])
    assert ("multiValueHeaders" in out) is multi and ("headers" in out) is not multi


async def _repeats_headers(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"vary", b"accept"), (b"vary", b"cookie"), (b"set-cookie", b"a=1")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def test_repeated_headers_behind_an_alb_without_multi_value_headers_are_joined(
    lambda_handler: MakeHandler, caplog: pytest.LogCaptureFixture
) -> None:
    """Such an ALB takes one value a name: all but the last Vary was lost; several
    cookies cannot be joined, and that only the last is sent is said."""
    handle = lambda_handler(_repeats_headers)
    out = handle(alb_event("GET", "/", [], False, [("host", "lb.example.com")]), Ctx())
    assert out["headers"]["vary"] == "accept, cookie"
    assert out["headers"]["set-cookie"] == "a=1"
    assert not [r for r in caplog.records if r.name == "hibana.aws"]  # one cookie is fine
    multi = handle(alb_event("GET", "/", [], True, [("host", "lb.example.com")]), Ctx())
    assert multi["multiValueHeaders"]["vary"] == ["accept", "cookie"]


def test_cookies_an_alb_without_multi_value_headers_cannot_pass_are_named(
    mounts: ModuleType, lambda_handler: MakeHandler, caplog: pytest.LogCaptureFixture
) -> None:
    handle = lambda_handler(mounts.flask_app)  # /echo sets two cookies
    with caplog.at_level(logging.WARNING, logger="hibana.aws"):
        out = handle(alb_event("POST", "/echo", [], False, [("host", "lb.example.com")]), Ctx())
    assert out["headers"]["set-cookie"] == "b=2; Path=/"
    (record,) = [r for r in caplog.records if r.name == "hibana.aws"]
    assert record.getMessage() == (
        "the response sets 2 cookies, and an ALB target group without multi-value headers "
        "passes one: only the last is sent; turn on the target group's "
        "lambda.multi_value_headers.enabled to send all"
    )


def test_a_hibana_app_on_lambda_gets_deadline_request_id_and_trace(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    handle = lambda_handler(mounts.app)
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    out = handle(v2_event("GET", "/native", headers={"x-amzn-trace-id": trace}), Ctx())
    assert out["statusCode"] == 200 and out["body"] == "native"
    assert out["headers"]["x-invocation-id"] == Ctx.aws_request_id.replace("-", "")
    assert out["headers"]["traceparent"].startswith("00-5759e988bd862e3fe1be46a994272793-")
    # Lambda's remaining time (2.5 s) is the deadline, not the function's 60 s timeout
    left = json.loads(handle(v2_event("GET", "/remaining"), Ctx())["body"])["remaining"]
    assert 2.0 < left <= 2.5
    # the mounts inside the hibana app work on Lambda too
    flask = handle(v2_event("GET", "/flask/items/9", "tag=x"), Ctx())
    assert json.loads(flask["body"])["self_url"] == "/flask/items/9"


class ShortCtx(Ctx):
    """A Lambda invocation with a fifth of a second left."""

    def get_remaining_time_in_millis(self) -> int:
        return 200


def test_a_function_cut_off_by_lambdas_deadline_says_so_not_its_own_timeout(
    lambda_handler: MakeHandler, capfd: pytest.CaptureFixture[str]
) -> None:
    """Lambda's time left, not the function's 60 s timeout, ended it: both the 504 and the
    log line said "timed out after 60s"."""
    app = hibana.App()

    @app.http("/wait")
    async def wait(req: hibana.Request, ctx: hibana.Context) -> str:
        await asyncio.Event().wait()  # never set: only the deadline ends it
        return "never"

    out = lambda_handler(app)(v2_event("GET", "/wait"), ShortCtx())
    assert out["statusCode"] == 504
    assert json.loads(out["body"])["error"] == (
        "function 'wait' did not finish by its caller's deadline (on AWS Lambda, the time "
        "the invocation had left), which came before its timeout of 60s"
    )
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line]
    (line,) = [r for r in lines if r["msg"] == "invocation"]
    assert (line["outcome"], line["error"]) == (
        "timeout",
        "timed out at its caller's deadline, before its 60s timeout",
    )


def test_a_stream_that_breaks_off_on_lambda_fails_the_invocation(
    mounts: ModuleType, lambda_handler: MakeHandler, capfd: pytest.CaptureFixture[str]
) -> None:
    # Lambda buffers the body: half of one must not be returned as a 200; the invocation
    # fails instead, and API Gateway answers 502
    handle = lambda_handler(mounts.app)
    with pytest.raises(RuntimeError, match="cut short"):
        handle(v2_event("GET", "/api/events-broken"), Ctx())
    # and its log line (on stdout, for CloudWatch) says why
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line]
    (line,) = [r for r in lines if r["msg"] == "invocation"]
    assert (line["outcome"], line["error"]) == ("error", "RuntimeError: the feed went away")


async def _bare_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return  # no lifespan, as many bare ASGI apps
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"bare"})


def test_a_head_request_on_lambda_is_answered_without_a_body(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    """A hibana app's GET body went back, though HTTP has none for HEAD: a client sizing a
    large download with HEAD had the invocation fail at Lambda's 6 MB result limit."""
    for handle, path in (
        (lambda_handler(mounts.flask_app), "/items/3"),
        (lambda_handler(mounts.app), "/native"),
    ):
        got = handle(v2_event("GET", path), Ctx())
        head = handle(v2_event("HEAD", path), Ctx())
        assert (head["statusCode"], head["body"], head["isBase64Encoded"]) == (200, "", False)
        assert head["headers"]["content-length"] == str(len(got["body"].encode()))
    alb = lambda_handler(mounts.flask_app)(
        alb_event("HEAD", "/items/3", [], True, [("host", "lb.example.com")]), Ctx()
    )
    assert alb["body"] == "" and alb["multiValueHeaders"]["content-length"] != ["0"]


def test_a_bare_asgi_app_without_lifespan_runs_on_lambda(lambda_handler: MakeHandler) -> None:
    handle = lambda_handler(_bare_asgi)
    out = handle(v2_event("GET", "/anything"), Ctx())
    assert (out["statusCode"], out["body"]) == (200, "bare")


class _DefMiddleware:
    """ASGI middleware whose ``__call__`` is a def returning the app's coroutine: an ASGI
    app (calling it gives an awaitable), as ``app.asgi`` takes it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        return self.app(scope, receive, send)


def test_an_asgi_app_whose_call_is_a_def_runs_on_lambda(lambda_handler: MakeHandler) -> None:
    # it was taken for a WSGI app (no async def to see), and every event failed with
    # "__call__() missing 1 required positional argument: 'send'"
    handle = lambda_handler(_DefMiddleware(_bare_asgi))
    out = handle(v2_event("GET", "/anything"), Ctx())
    assert (out["statusCode"], out["body"]) == (200, "bare")


async def _scope_keys(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps(sorted(scope)).encode()})


def test_a_bare_asgi_app_on_lambda_sees_only_asgi_keys_in_its_scope(
    lambda_handler: MakeHandler,
) -> None:
    handle = lambda_handler(_scope_keys)
    headers = {
        "x-amzn-trace-id": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8"
    }
    out = handle(v2_event("GET", "/anything", headers=headers), Ctx())
    keys = json.loads(out["body"])
    assert [key for key in keys if key.startswith("hibana")] == [], keys
    assert {"type", "method", "path", "headers", "query_string"} <= set(keys)


async def _fails_after_answering(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"made"})
    raise RuntimeError("the audit write failed")


def test_an_app_that_raises_after_its_whole_response_on_lambda_keeps_the_response(
    lambda_handler: MakeHandler, caplog: pytest.LogCaptureFixture
) -> None:
    # as under an ASGI server (and hibana's own): the answer stands, the error is logged
    handle = lambda_handler(_fails_after_answering)
    with caplog.at_level(logging.ERROR, logger="hibana.aws"):
        out = handle(v2_event("POST", "/things"), Ctx())
    assert (out["statusCode"], out["body"]) == (201, "made")
    (record,) = [r for r in caplog.records if r.name == "hibana.aws"]
    assert "after its whole response" in record.getMessage()
    assert record.exc_info is not None
    assert "the audit write failed" in str(record.exc_info[1])


def test_a_closed_lambda_handler_has_ended_its_apps_lifespan(mounts: ModuleType) -> None:
    handle = hibana.aws.handler(mounts.api)
    assert handle(v2_event("GET", "/hello/x"), Ctx())["statusCode"] == 200
    shutdowns = mounts.state["shutdowns"]
    handle.close()
    handle.close()  # twice is fine
    assert mounts.state["shutdowns"] == shutdowns + 1
    with pytest.raises(RuntimeError, match="this Lambda handler was closed; make a new one"):
        handle(v2_event("GET", "/hello/x"), Ctx())


def test_an_unknown_event_is_named(mounts: ModuleType, lambda_handler: MakeHandler) -> None:
    handle = lambda_handler(mounts.flask_app)
    with pytest.raises(hibana.aws.UnknownEvent, match="is not an HTTP event hibana understands"):
        handle({"Records": [{"eventSource": "aws:sqs"}]}, Ctx())


def test_an_authorizer_event_is_not_served_as_a_request(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    """A REQUEST authorizer's event carries the request, so it was served as a v1 or v2
    request, and its statusCode and body were no policy API Gateway could read."""
    handle = lambda_handler(mounts.flask_app)
    rest = v1_event("GET", "/hello/x")
    rest.update(type="REQUEST", methodArn="arn:aws:execute-api:us-east-1:1:abc/prod/GET/hello/x")
    http = v2_event("GET", "/hello/x")
    http.update(type="REQUEST", routeArn="arn:aws:execute-api:us-east-1:1:abc/$default/GET/hello/x")
    token = {"type": "TOKEN", "authorizationToken": "Bearer x", "methodArn": rest["methodArn"]}
    for event, kind in ((rest, "REQUEST"), (http, "REQUEST"), (token, "TOKEN")):
        with pytest.raises(hibana.aws.UnknownEvent) as info:
            handle(event, Ctx())
        assert str(info.value).startswith(
            f"an API Gateway Lambda authorizer event (type {kind}) is not an HTTP request to "
            "serve: hibana.aws.handler answers proxy integrations ("
        )
        assert "write the authorizer as a Lambda handler of its own" in str(info.value)


async def _echo_request(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app that answers with what it was asked."""
    if scope["type"] != "http":
        return
    seen = {
        "method": scope["method"],
        "path": scope["path"],
        "root_path": scope["root_path"],
        "query": scope["query_string"].decode(),
        "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
        "client": scope["client"],
    }
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps(seen).encode()})


@pytest.mark.parametrize(
    ("name", "tags", "x_tag"),
    [
        ("apigw-rest-v1", ["a", "b"], ["first", "second"]),
        ("apigw-http-v1", ["a", "b"], ["first", "second"]),  # HTTP API, payload 1.0
        ("apigw-http-v2", ["a", "b"], ["first,second"]),  # HTTP API joins repeats
        ("function-url", ["a", "b"], ["first,second"]),
        ("alb", ["b"], ["second"]),  # without multi-value headers ALB keeps the last
        ("alb-multi-value", ["a", "b"], ["first", "second"]),
    ],
)
def test_each_documented_event_shape_reaches_the_app_whole(
    name: str, tags: list[str], x_tag: list[str], lambda_handler: MakeHandler
) -> None:
    out = lambda_handler(_echo_request)(aws_event(name), Ctx())
    assert out["statusCode"] == 200
    seen = json.loads(out["body"])
    # a REST API's execute-api URL has the stage first (/prod/items/9), and so has an HTTP
    # API's payload 1.0 at a named stage (in its path too): the app is served under it, so
    # the URLs it builds keep it
    root = "/prod" if name in ("apigw-rest-v1", "apigw-http-v1") else ""
    assert (seen["method"], seen["path"], seen["root_path"]) == ("GET", root + "/items/9", root)
    query = parse_qs(seen["query"])
    assert query == {"tag": tags, "q": ["green tea"]}  # decoded exactly once
    headers = seen["headers"]
    assert [v for k, v in headers if k == "x-tag"] == x_tag
    assert [v for k, v in headers if k == "accept"] == ["application/json"]
    if name in ("apigw-http-v2", "function-url"):
        assert [v for k, v in headers if k == "cookie"] == ["session=abc; theme=dark"]
    if name.startswith("alb"):
        assert out["statusDescription"] == "200 OK"  # what ALB wants back
    # API Gateway names the caller; ALB appends it to X-Forwarded-For
    assert seen["client"][0] == "198.51.100.23"


def _missing(documented: dict[str, Any], built: dict[str, Any], at: str = "") -> list[str]:
    """The keys of an event AWS documents that an event hibana built lacks (the maps of
    headers and parameters hold the request's own keys, so they are not compared)."""
    maps = {"headers", "multiValueHeaders", "queryStringParameters"}
    maps |= {"multiValueQueryStringParameters", "pathParameters"}
    gaps = []
    for key, value in documented.items():
        if key not in built:
            gaps.append(at + key)
        elif isinstance(value, dict) and key not in maps and isinstance(built[key], dict):
            gaps += _missing(value, built[key], f"{at}{key}.")
    return gaps


def test_the_events_hibana_builds_have_every_field_aws_documents(host: Host) -> None:
    with host.client() as client:
        v1 = client.get("/legacy/orders/7?a=1").json()["event"]
        alb = client.get("/alb/orders/7?a=1").json()["event"]
        v2 = client.post("/v2/x?a=1", content=b"{}", headers={"cookie": "s=1"}).json()["got"]
    assert _missing(aws_event("apigw-rest-v1"), v1) == []
    assert _missing(aws_event("alb"), alb) == []
    assert _missing(aws_event("apigw-http-v2"), v2) == []


# -- Lambda handlers served by hibana ------------------------------------------------------------
def test_a_lambda_result_whose_body_is_no_string_is_a_500_naming_it(host: Host) -> None:
    r = httpx.get(host.url + "/v2/dict-body")
    assert r.status_code == 500
    line = host.wait_for_log(msg="function raised", invocation_id=r.headers["x-invocation-id"])
    assert (
        "the Lambda handler's result has a dict body; a apigw-v2 integration takes a string"
        in (line["error"])
    )


def test_a_lambda_result_is_read_as_its_integration_reads_it(host: Host) -> None:
    """A str returned for an HTTP API came back as 'hello' labelled application/json; AWS
    JSON-encodes it. A result a REST API or an ALB cannot read was hibana's 500, not AWS's
    502."""
    with host.client() as client:
        for case, body in [("str", b'"hello"'), ("none", b"null"), ("no-status", None)]:
            r = client.get(f"/bare-apigw-v2/{case}")
            assert r.status_code == 200 and r.headers["content-type"] == "application/json"
            assert r.content == (body or json.dumps({"body": "no statusCode"}).encode())
        for case, why in [
            ("str", "the Lambda handler returned str, not a dict with statusCode"),
            ("none", "the Lambda handler returned NoneType, not a dict with statusCode"),
            ("no-status", "the Lambda handler returned dict, not a dict with statusCode"),
            ("dict-body", "the Lambda handler's result has a dict body"),
            # these were a Set-Cookie for each character, a header ['a', 'b'], hibana's 500
            (
                "multi-value-str",
                "the Lambda handler's multiValueHeaders['Set-Cookie'] is a str, not a list of "
                "strings (write ['a=1'])",
            ),
            ("header-list", "the Lambda handler's headers['x-tags'] is a list, not a string"),
            ("status-999", "the Lambda handler's statusCode 999 is not an HTTP status from 200"),
        ]:
            rest = client.get(f"/bare-apigw-v1/{case}")
            assert rest.status_code == 502, rest.text
            assert rest.json() == {"message": "Internal server error"}  # API Gateway's own
            alb = client.get(f"/bare-alb/{case}")
            assert alb.status_code == 502 and alb.headers["content-type"].startswith("text/html")
            assert "<title>502 Bad Gateway</title>" in alb.text
            for r in (rest, alb):  # the log says why, as API Gateway's execution log does
                line = host.wait_for_log(
                    msg="malformed Lambda result", invocation_id=r.headers["x-invocation-id"]
                )
                assert line["error"].startswith(why)


def test_a_lambda_result_answered_502_is_a_failed_invocation(host: Host) -> None:
    """The handler returned, but its integration could not read what: the invocation
    failed. Its line said "outcome": "ok" and no error was counted."""

    def errors() -> dict[str, int]:
        functions = host.status()["functions"]
        return {f["name"]: f["errors"] for f in functions if f["name"].startswith("lambda_bare")}

    before = errors()
    for event, function in [("apigw-v1", "lambda_bare_apigw_v1"), ("alb", "lambda_bare_alb")]:
        r = httpx.get(f"{host.url}/bare-{event}/str")
        assert r.status_code == 502
        line = host.wait_for_log(msg="invocation", invocation_id=r.headers["x-invocation-id"])
        assert (line["function"], line["level"], line["outcome"], line["status"]) == (
            function,
            "error",
            "error",
            502,
        )
        assert line["error"] == (
            "MalformedResult: the Lambda handler returned str, not a dict with statusCode, "
            f"as a {event} integration needs"
        )
        assert errors()[function] == before[function] + 1


def test_decimals_in_an_http_api_result_are_numbers_as_the_lambda_runtime_writes_them(
    host: Host,
) -> None:
    """DynamoDB reads numbers as Decimal: the Lambda runtime writes them as JSON numbers,
    digit for digit; hibana's json.dumps refused them (a 500)."""
    r = httpx.get(host.url + "/bare-apigw-v2/decimal")
    assert (r.status_code, r.headers["content-type"]) == (200, "application/json")
    assert r.text == '{"item": {"price": 19.90, "stock": 3}}'
    # what the runtime cannot encode either is a 500 whose log line names it
    for case, said in [("a-set", "a dict holding a set"), ("only-a-set", "a set")]:
        bad = httpx.get(f"{host.url}/bare-apigw-v2/{case}")
        assert bad.status_code == 500
        invocation_id = bad.headers["x-invocation-id"]
        line = host.wait_for_log(msg="function raised", invocation_id=invocation_id)
        assert (
            f"the Lambda handler returned {said}, which the Lambda runtime cannot"
            in (line["error"])
        )


@pytest.mark.parametrize(
    ("event", "cookies", "ignored", "fix"),
    [
        ("apigw-v2", ["from-cookies=1"], "multiValueHeaders", "put each Set-Cookie in cookies"),
        ("apigw-v1", ["from-multi=1", "from-multi=2"], "cookies", "in multiValueHeaders"),
        ("alb", ["from-multi=1", "from-multi=2"], "cookies", "in multiValueHeaders"),
    ],
)
def test_a_result_field_its_integration_ignores_is_ignored_and_named(
    host: Host, event: str, cookies: list[str], ignored: str, fix: str
) -> None:
    """An HTTP API reads cookies and no multiValueHeaders, a REST API and an ALB the
    reverse: both were honoured, so cookies set here were lost on AWS."""
    r = httpx.get(f"{host.url}/bare-{event}/both-cookie-fields")
    assert (r.status_code, r.text) == (200, "ok")
    assert r.headers.get_list("set-cookie") == cookies
    line = host.wait_for_log(level="warning", invocation_id=r.headers["x-invocation-id"])
    assert line["msg"].startswith(
        f"the Lambda handler's result has {ignored}, which an {event} integration ignores; "
    )
    assert fix in line["msg"]


def test_a_lambda_handler_that_raises_is_answered_as_its_integration_answers(
    host: Host,
) -> None:
    """A REST API and an ALB answer 502 for a Lambda that failed (an HTTP API 500): it was
    hibana's 500 for all three."""
    with host.client() as client:
        rest = client.get("/bare-apigw-v1/raises")
        alb = client.get("/bare-alb/raises")
        http_api = client.get("/bare-apigw-v2/raises")
    assert (rest.status_code, rest.json()) == (502, {"message": "Internal server error"})
    assert alb.status_code == 502 and "<title>502 Bad Gateway</title>" in alb.text
    assert http_api.status_code == 500
    for r in (rest, alb, http_api):
        invocation_id = r.headers["x-invocation-id"]
        raised = host.wait_for_log(msg="function raised", invocation_id=invocation_id)
        assert raised["error"] == "RuntimeError: the orders table is gone"
        assert 'raise RuntimeError("the orders table is gone")' in raised["traceback"]
        line = host.wait_for_log(msg="invocation", invocation_id=invocation_id)
        assert (line["outcome"], line["status"]) == ("error", r.status_code)
        assert line["error"] == "RuntimeError: the orders table is gone"


async def _header_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    value = dict(scope["headers"])[b"x-name"]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": value})


def test_a_header_value_outside_latin1_reaches_the_app_on_lambda(
    lambda_handler: MakeHandler,
) -> None:
    """API Gateway hands over the UTF-8 it decoded: the handler failed before the app ran."""
    handle = lambda_handler(_header_echo)
    out = handle(v2_event("GET", "/anything", headers={"x-name": "日本"}), Ctx())
    assert out["statusCode"] == 200
    body = out["body"]
    sent = base64.b64decode(body) if out.get("isBase64Encoded") else body.encode()
    assert sent == "日本".encode()


def test_several_cookie_headers_in_a_rest_api_event_are_one_on_lambda(
    lambda_handler: MakeHandler,
) -> None:
    """multiValueHeaders' Cookie ["a=1", "b=2"] reached a WSGI app as HTTP_COOKIE a=1,b=2,
    one cookie a of "1,b=2", and an ASGI app as two headers, of which Starlette reads one."""
    flask_app = flask.Flask("cookies")

    @flask_app.get("/cookies")
    def cookies() -> dict[str, str]:
        return dict(flask.request.cookies)

    event = v1_event("GET", "/cookies", headers=[("Cookie", "a=1"), ("Cookie", "b=2; c=3")])
    out = lambda_handler(flask_app)(event, Ctx())
    assert json.loads(out["body"]) == {"a": "1", "b": "2", "c": "3"}
    seen = json.loads(lambda_handler(_echo_request)(event, Ctx())["body"])
    assert [v for k, v in seen["headers"] if k == "cookie"] == ["a=1; b=2; c=3"]


def test_a_latin1_header_value_reaches_a_hibana_app_on_lambda(
    lambda_handler: MakeHandler,
) -> None:
    """Every header was decoded as UTF-8 to look for X-Ray's: ``café`` (Latin-1, as HTTP
    has it) raised UnicodeDecodeError and the invocation failed before the app ran."""
    app = hibana.App()

    @app.http("/name")
    def name(req: hibana.Request, ctx: hibana.Context) -> str:
        return req.headers.get("x-name") or ""

    out = lambda_handler(app)(v2_event("GET", "/name", headers={"x-name": "café"}), Ctx())
    assert (out["statusCode"], out["body"]) == (200, "café")


def test_an_app_on_an_http_apis_named_stage_with_payload_1_0_is_served_under_it(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    """Payload 1.0's path holds an HTTP API's named stage (/prod/items/3), as does its
    requestContext.path: read as a REST API's, whose path has none, the app routed on
    /prod/items/3 and answered 404."""

    def staged(path: str) -> Any:
        event = aws_event("apigw-http-v1")
        event.update(path=f"/prod{path}", pathParameters={"proxy": path.lstrip("/")})
        event.update(queryStringParameters=None, multiValueQueryStringParameters=None)
        event["requestContext"]["path"] = f"/prod{path}"
        return event

    flask = lambda_handler(mounts.flask_app)(staged("/items/3"), Ctx())
    seen = json.loads(flask["body"])
    assert (seen["id"], seen["self_url"], seen["script_name"], seen["path_info"]) == (
        3,
        "/prod/items/3",
        "/prod",
        "/items/3",
    )
    app = hibana.App()

    @app.http("/where/")
    def where(req: hibana.Request, ctx: hibana.Context) -> str:
        return req.url

    out = lambda_handler(app)(staged("/where/"), Ctx())
    assert out["body"] == "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod/where/"
    # at a custom domain mapped to the stage, the path holds no stage
    custom = staged("/items/3")
    custom.update(path="/items/3")
    custom["requestContext"].update(path="/items/3", domainName="api.example.com")
    seen = json.loads(lambda_handler(mounts.flask_app)(custom, Ctx())["body"])
    assert (seen["self_url"], seen["script_name"]) == ("/items/3", "")


def test_an_app_at_a_custom_domains_base_path_is_served_under_it(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    """A REST API mapped at api.example.com/orders gets the base path in its path and
    requestContext.path alike (/orders/items/3), as API Gateway sends it: the app routed
    on /orders/items/3 and answered 404. Its resource and pathParameters say what the API
    routed on (/items/3)."""
    handle = lambda_handler(mounts.flask_app)
    for resource, params in (("/{proxy+}", {"proxy": "items/3"}), ("/items/{id}", {"id": "3"})):
        event = v1_event("GET", "/orders/items/3", headers=[("Host", "api.example.com")])
        event.update(resource=resource, pathParameters=params)
        event["requestContext"].update(path="/orders/items/3", domainName="api.example.com")
        seen = json.loads(handle(event, Ctx())["body"])
        assert (seen["id"], seen["self_url"], seen["script_name"], seen["path_info"]) == (
            3,
            "/orders/items/3",
            "/orders",
            "/items/3",
        )


def test_a_lambda_handler_behind_hibana_gets_a_real_v1_event(host: Host) -> None:
    r = httpx.get(
        host.url + "/legacy/orders/7?a=1&a=2",
        headers=[("X-H", "x"), ("X-H", "y"), ("X-Forwarded-Proto", "https")],  # a client's lie
    )
    assert r.status_code == 201
    assert r.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert r.headers.get_list("x-multi") == ["1", "2"]
    got = r.json()
    event = got["event"]
    assert event["httpMethod"] == "GET" and event["path"] == "/legacy/orders/7"
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"]}
    # a REST API keeps names' case (as clients write them), and adds the forwarding ones
    assert event["multiValueHeaders"]["X-H"] == ["x", "y"]
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert event["headers"]["X-Forwarded-Proto"] == "http"
    assert event["headers"]["X-Forwarded-Port"] == host.url.rsplit(":", 1)[1]
    assert got["request_id"] == r.headers["x-invocation-id"]
    assert 0 < got["remaining_ms"] <= 5000
    # the attributes of the context object AWS documents for Python
    documented = {
        "aws_request_id",
        "client_context",
        "function_name",
        "function_version",
        "get_remaining_time_in_millis",
        "identity",
        "invoked_function_arn",
        "log_group_name",
        "log_stream_name",
        "memory_limit_in_mb",
    }
    assert documented <= set(got["context"])
    assert (got["identity"], got["client_context"]) == (None, None)


def test_a_v1_event_names_a_rest_apis_stage_and_a_domain_without_its_port(host: Host) -> None:
    """A REST API event said stage "$default" (an HTTP API's; a REST API's stages are
    named), and its domainName, like a v2 event's, held the port ("127.0.0.1:8080"):
    API Gateway's has none. The stage is the mount's ``stage=``, or "local"."""
    name = host.url.split("//", 1)[1].rsplit(":", 1)[0]
    with host.client() as client:
        plain = client.get("/legacy/orders/7").json()["event"]["requestContext"]
        staged = client.get("/staged/orders/7").json()["event"]["requestContext"]
        v2 = client.get("/v2/x").json()["got"]["requestContext"]
        named = client.get("/v2/x", headers={"host": "api.example.com:8443"}).json()["got"]
    assert (plain["stage"], staged["stage"], v2["stage"]) == ("local", "dev", "$default")
    assert plain["domainName"] == staged["domainName"] == v2["domainName"] == name
    context = named["requestContext"]
    assert (context["domainName"], context["domainPrefix"]) == ("api.example.com", "api")
    assert named["headers"]["host"] == "api.example.com:8443"  # as the client sent it


def test_a_lambda_mounts_stage_is_one_api_gateway_takes_for_a_v1_event() -> None:
    app = hibana.App()

    def handler(event: Any, context: Any) -> Any:
        return {}

    for stage, event, said in [
        ("pr/1", "apigw-v1", "stage='pr/1' is not a stage name API Gateway takes: 1 to 128"),
        ("$default", "apigw-v1", "stage='$default' is not a stage name API Gateway takes"),
        ("dev", "apigw-v2", "an apigw-v2 event has the $default stage: leave stage out"),
        ("dev", "alb", "an alb event has no stage: leave stage out"),
    ]:
        with pytest.raises(hibana.AppError) as info:
            app.lambda_handler("/l", handler, event=event, stage=stage)
        assert said in str(info.value)
    assert not app.functions


def test_a_lambda_handler_behind_hibana_gets_a_real_v2_event(host: Host) -> None:
    r = httpx.post(
        host.url + "/v2/x?a=1&a=2",
        content=b'{"k": 1}',
        headers={"content-type": "application/json", "cookie": "s=1; t=2"},
    )
    event = r.json()["got"]
    assert event["rawQueryString"] == "a=1&a=2" and event["cookies"] == ["s=1", "t=2"]
    assert event["body"] == '{"k": 1}' and event["isBase64Encoded"] is False
    png = httpx.get(host.url + "/v2/png")
    assert png.content == PNG and png.headers["content-type"] == "image/png"
    assert png.headers.get_list("set-cookie") == ["c=3", "d=4"]


def test_enqueue_on_lambda_says_there_is_no_store_there(lambda_handler: MakeHandler) -> None:
    app = hibana.App()

    @app.http("/send")
    async def send(req: hibana.Request, ctx: hibana.Context) -> str:
        try:
            await ctx.enqueue("jobs", {})
        except hibana.QueueError as exc:
            return str(exc)
        return "sent"

    @app.queue("jobs")
    async def jobs(msg: hibana.Message, ctx: hibana.Context) -> None: ...

    said = lambda_handler(app)(v2_event("GET", "/send"), Ctx())["body"]
    assert "it runs outside hibana's host (hibana.aws.handler on Lambda has no store" in said


def test_a_stream_on_lambda_comes_back_whole(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    """Starlette's StreamingResponse listens for a disconnect while it streams: Lambda's
    client is there until the answer, so none may come before it."""
    # FastAPI on its own, and mounted in the hibana app
    for handle, path in (
        (lambda_handler(mounts.api), "/events"),
        (lambda_handler(mounts.app), "/api/events"),
    ):
        out = handle(v2_event("GET", path), Ctx())
        assert out["statusCode"] == 200
        assert out["body"] == "data: tick 0\n\ndata: tick 1\n\ndata: tick 2\n\n"


def test_x_ray_root_without_a_parent_is_continued_on_lambda(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    handle = lambda_handler(mounts.app)
    root = "Root=1-65f1a2b3-4c5d6e7f8a9b0c1d2e3f4a5b;Sampled=1"  # what an ALB sends
    out = handle(v2_event("GET", "/native", headers={"x-amzn-trace-id": root}), Ctx())
    assert out["headers"]["traceparent"].startswith("00-65f1a2b34c5d6e7f8a9b0c1d2e3f4a5b-")
    assert out["headers"]["traceparent"].endswith("-01")
    bad = handle(v2_event("GET", "/native", headers={"x-amzn-trace-id": "Root=1-zz-yy"}), Ctx())
    assert bad["statusCode"] == 200  # a Root that does not read: a new trace


def test_the_lambda_runtimes_x_ray_trace_is_continued_when_no_traceparent_is_given(
    mounts: ModuleType, lambda_handler: MakeHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime sets _X_AMZN_TRACE_ID before each invocation; it was never read, so a
    request without an X-Amzn-Trace-Id header (a direct invocation, a Function URL's test)
    started a trace of its own, apart from Lambda's."""
    handle = lambda_handler(mounts.app)
    runtime = "Root=1-6571c9a0-0123456789abcdef01234567;Parent=1a2b3c4d5e6f7a8b;Sampled=1"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", runtime)
    out = handle(v2_event("GET", "/native"), Ctx())
    assert out["headers"]["traceparent"].startswith("00-6571c9a00123456789abcdef01234567-")
    # it is the trace of this very invocation, Lambda's segment its parent: before the
    # request's header, which names the caller Lambda continued from
    header = {"x-amzn-trace-id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"}
    out = handle(v2_event("GET", "/native", headers=header), Ctx())
    assert out["headers"]["traceparent"].startswith("00-6571c9a00123456789abcdef01234567-")
    # a traceparent the request carries goes first
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    out = handle(v2_event("GET", "/native", headers={"traceparent": traceparent}), Ctx())
    assert out["headers"]["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    # and one that does not read leaves the request's header to go on from
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-zz-yy")
    out = handle(v2_event("GET", "/native", headers=header), Ctx())
    assert out["headers"]["traceparent"].startswith("00-5759e988bd862e3fe1be46a994272793-")


@pytest.mark.parametrize(
    "root",
    [
        "1-5759e98-8bd862e3fe1be46a994272793",  # 7 and 25 digits: 32 hex, cut wrong
        "1-5759e988b-d862e3fe1be46a994272793",  # 9 and 23
        "2-5759e988-bd862e3fe1be46a994272793",  # a version X-Ray does not have
        "-5759e988-bd862e3fe1be46a994272793",
    ],
)
def test_an_x_ray_root_not_of_its_documented_shape_starts_a_new_trace_on_lambda(
    root: str, mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    """A Root is ``1-`` and 8 and 24 hex digits: one cut elsewhere, or of another version,
    was read as the trace id its 32 digits make."""
    handle = lambda_handler(mounts.app)
    made = root.split("-", 1)[1].replace("-", "")
    for amzn in (f"Root={root}", f"Root={root};Parent=53995c3f42cd8ad8;Sampled=1"):
        out = handle(v2_event("GET", "/native", headers={"x-amzn-trace-id": amzn}), Ctx())
        assert out["statusCode"] == 200
        trace_id = out["headers"]["traceparent"].split("-")[1]
        assert len(trace_id) == 32 and trace_id != made


def test_an_x_ray_parent_that_does_not_read_keeps_its_root_on_lambda(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    """A Parent of 15 digits lost the whole trace: the Root, which reads, is the trace."""
    handle = lambda_handler(mounts.app)
    root = "Root=1-5759E988-BD862E3FE1BE46A994272793"  # hex in capitals reads too
    for parent in (";Parent=53995c3f42cd8ad", ";Parent=0000000000000000", ";Parent="):
        amzn = f"{root}{parent};Sampled=1"
        out = handle(v2_event("GET", "/native", headers={"x-amzn-trace-id": amzn}), Ctx())
        assert out["headers"]["traceparent"].startswith("00-5759e988bd862e3fe1be46a994272793-")


def test_text_in_another_charset_goes_base64_on_lambda(lambda_handler: MakeHandler) -> None:
    app = hibana.App()

    @app.http("/latin")
    def latin(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
        return hibana.Response(b"caf\xe9", content_type="text/plain; charset=iso-8859-1")

    out = lambda_handler(app)(v2_event("GET", "/latin"), Ctx())
    assert out["isBase64Encoded"] is True
    assert base64.b64decode(out["body"]) == b"caf\xe9"


def test_a_lambda_handlers_time_left_does_not_follow_a_step_of_the_wall_clock(
    host: Host,
) -> None:
    """The context kept a wall-clock deadline: once the clock stepped an hour on, the
    handler was told it had no time left (and one stepped back, an hour too much)."""
    r = httpx.get(host.url + "/clock-step/now")
    assert r.status_code == 200
    assert 0 < r.json()["remaining_ms"] <= 5000


def test_a_null_header_value_in_a_lambda_event_is_no_header(lambda_handler: MakeHandler) -> None:
    """It reached the function as the text "None" (and a null Host failed the request)."""
    app = hibana.App()

    @app.http("/seen")
    def seen(req: hibana.Request, ctx: hibana.Context) -> dict[str, object]:
        return {"x-tenant": req.headers.getlist("x-tenant"), "host": req.url}

    handle = lambda_handler(app)
    v2 = v2_event("GET", "/seen")
    v2["headers"].update({"x-tenant": None, "host": None})
    out = handle(v2, Ctx())
    assert out["statusCode"] == 200, out
    assert json.loads(out["body"])["x-tenant"] == []
    v1 = v1_event("GET", "/seen")
    v1["headers"]["x-tenant"] = None
    v1["multiValueHeaders"]["x-tenant"] = [None]
    out = handle(v1, Ctx())
    assert out["statusCode"] == 200, out
    assert json.loads(out["body"])["x-tenant"] == []


def test_is_base64_encoded_as_a_string_and_null_query_values(lambda_handler: MakeHandler) -> None:
    """``"isBase64Encoded": "false"`` (a templated test event) decoded a plain body as base64;
    a null query value reached the function as the text "None"."""
    app = hibana.App()

    @app.http("/seen", methods=["POST"])
    def seen(req: hibana.Request, ctx: hibana.Context) -> dict[str, object]:
        return {"body": req.body.decode(), "tag": req.query.getlist("tag")}

    handle = lambda_handler(app)
    v1 = v1_event("POST", "/seen", body=b"plain text")
    v1["isBase64Encoded"] = "false"
    v1["queryStringParameters"] = {"tag": None}
    v1["multiValueQueryStringParameters"] = {"tag": [None]}
    out = handle(v1, Ctx())
    assert out["statusCode"] == 200, out
    assert json.loads(out["body"]) == {"body": "plain text", "tag": []}
    v2 = v2_event("POST", "/seen", body=base64.b64encode(b"sent as base64"))
    v2["isBase64Encoded"] = "true"
    out = handle(v2, Ctx())
    assert json.loads(out["body"])["body"] == "sent as base64"


def test_an_event_whose_body_is_no_string_is_named(lambda_handler: MakeHandler) -> None:
    """A hand-written event's ``"body": {"name": "x"}`` failed with AttributeError: 'dict'
    object has no attribute 'encode'."""
    handle = lambda_handler(_echo_request)
    for event in (v1_event("POST", "/things"), v2_event("POST", "/things")):
        event["body"] = {"name": "x"}
        with pytest.raises(hibana.aws.UnknownEvent) as info:
            handle(event, Ctx())
        assert str(info.value) == (
            "the event's body is a dict, not the string API Gateway and ALB send: write it "
            "as JSON text (json.dumps), or base64 with isBase64Encoded"
        )
