"""HTTP/1.1 as the worker's server speaks it: keep-alive, pipelining, HEAD, HTTP/1.0,
``Expect: 100-continue``, ``Connection: close``, upgrades, streamed bodies, malformed
requests and forged response headers.

Responses are read with the standard library's ``http.client`` parser, over a raw
socket where the client itself has to misbehave or pipeline."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import struct
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from hibana.triggers.routes import Match
from tests.hosts import APPS, Host, declared, started
from tests.http_wire import Connection, Transport, in_process_server


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    yield from started(
        "basic", "--workers", "1", "--max-body-bytes", "1000", "--keep-alive-timeout", "0.5"
    )


def test_pipelined_requests_are_answered_in_order(host: Host) -> None:
    with Connection(host) as conn:
        conn.send(
            b"GET /hello/one HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /items/2 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nthree"
            b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /hello/five HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        answers = []
        for _ in range(5):
            resp = conn.response()
            answers.append((resp.status, resp.read()))
    assert answers[0] == (200, b"Hello one")
    assert answers[1][0] == 200 and b'"id":2' in answers[1][1]
    assert answers[2] == (200, b"three")
    assert answers[3][0] == 404 and b"GET /nowhere" in answers[3][1]
    assert answers[4] == (200, b"Hello five")


def test_head_gets_the_head_and_no_body(host: Host) -> None:
    with Connection(host) as conn:
        conn.send(b"HEAD /hello/head HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response("HEAD")
        assert resp.status == 200
        assert resp.getheader("content-length") == str(len("Hello head"))
        assert resp.read() == b""
        # no stray body bytes: the next answer on the connection parses cleanly
        conn.hello("after")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"HEAD /hello/a HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"HEAD /hello/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", 413),
    ],
)
def test_a_refused_head_request_gets_the_head_and_no_body(
    host: Host, request_bytes: bytes, status: int
) -> None:
    """RFC 9110 9.3.2: the refusal's JSON came after its head, bytes a client reading no
    body for a HEAD takes for the next response's."""
    with Connection(host) as conn:
        conn.send(request_bytes)
        answer = conn.stream.reader.read()  # raw, all of it: the connection closes
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status)
    assert b"content-length: " in head and b"connection: close" in head
    assert body == b""


def test_http_1_0_is_answered_then_closed_unless_it_asks_for_keep_alive(host: Host) -> None:
    with Connection(host) as conn:
        conn.send(b"GET /hello/old HTTP/1.0\r\n\r\n")
        resp = conn.response()
        assert (resp.status, resp.read()) == (200, b"Hello old")
        assert resp.getheader("connection") == "close"
        assert conn.closed_by_server()
    with Connection(host) as conn:
        for name in ("a", "b"):
            conn.send(b"GET /hello/%s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % name.encode())
            resp = conn.response()
            assert (resp.status, resp.read()) == (200, b"Hello " + name.encode())
            assert resp.getheader("connection") == "keep-alive"


def test_a_streamed_body_is_chunked_for_http_1_1_and_ends_with_the_close_for_1_0(
    host: Host,
) -> None:
    with host.client() as client, client.stream("GET", "/stream/3") as streamed:
        assert streamed.headers["transfer-encoding"] == "chunked"
        assert b"".join(streamed.iter_raw()) == b"part 0\npart 1\npart 2\n"
    with Connection(host) as conn:
        conn.send(b"GET /stream/2 HTTP/1.0\r\n\r\n")
        resp = conn.response()
        assert resp.getheader("transfer-encoding") is None
        assert resp.read() == b"part 0\npart 1\n"
        assert conn.closed_by_server()


def test_each_request_on_a_connection_is_read_in_its_own_http_version(host: Host) -> None:
    with Connection(host) as conn:
        conn.hello("first")  # HTTP/1.1
        # then HTTP/1.0: no chunks, no Host needed, and the close ends the stream
        conn.send(b"GET /stream/2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        resp = conn.response()
        assert resp.status == 200
        assert resp.getheader("transfer-encoding") is None
        assert resp.read() == b"part 0\npart 1\n"
        assert conn.closed_by_server()
    with Connection(host) as conn:
        conn.send(b"GET /hello/old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        resp = conn.response()
        assert (resp.status, resp.read()) == (200, b"Hello old")
        # then HTTP/1.1 without Host: RFC 9112 3.2, a 400
        conn.send(b"GET /hello/new HTTP/1.1\r\n\r\n")
        resp = conn.response()
        assert resp.status == 400
        assert "Host header" in resp.read().decode()


def test_a_stream_that_fails_is_cut_short_so_the_client_can_tell(host: Host) -> None:
    with Connection(host) as conn:
        conn.send(
            b"GET /broken-stream HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /hello/after HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        resp = conn.response()
        assert resp.status == 200  # the head was out before the stream failed
        # no last chunk: the body is incomplete, and the parser says so
        with pytest.raises(http.client.IncompleteRead) as cut:
            resp.read()
        assert cut.value.partial == b"the first part\n"
        assert conn.closed_by_server()  # the pipelined request behind it is not served
    line = host.wait_for_log(msg="invocation", function="broken_stream")
    assert line["status"] == 200 and line["outcome"] == "error"
    assert line["error"] == "RuntimeError: the source went away"


def test_a_client_that_goes_away_is_told_to_the_function(host: Host) -> None:
    with Connection(host) as conn:
        conn.send(b"GET /wait-for-client HTTP/1.1\r\nHost: x\r\n\r\n")
        host.wait_inflight(1, "wait_for_client")
    # the function was waiting on ctx.wait_cancelled(), and is told (untold, its wait
    # would time out in 5 s and say nothing)
    saw = host.wait_for_log(msg="saw cancellation", function="wait_for_client", timeout=30)
    assert saw["reason"] == "client_disconnected"
    line = host.wait_for_log(msg="invocation", invocation_id=saw["invocation_id"])
    assert (line["outcome"], line["cancel_reason"]) == ("cancelled", "client_disconnected")


def test_a_stream_stops_when_its_client_goes_away(host: Host) -> None:
    with Connection(host) as conn:
        conn.send(b"GET /ticker HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert resp.status == 200
        assert resp.read1().startswith(b"tick\n")
        # in flight while it streams: the worker is busy, not idle for the scaler
        host.wait_inflight(1, "ticker")
    # the generator is closed (its finally runs), not left ticking into the void
    stopped = host.wait_for_log(msg="ticker stopped", function="ticker")
    line = host.wait_for_log(msg="invocation", invocation_id=stopped["invocation_id"])
    assert (line["status"], line["outcome"]) == (200, "cancelled")
    assert line["cancel_reason"] == "client_disconnected"
    with host.client() as client:  # and the worker serves on
        assert client.get("/hello/again").text == "Hello again"
    ticker = [f for f in host.status()["functions"] if f["name"] == "ticker"]
    assert ticker[0]["inflight"] == 0


def test_a_stream_that_never_awaits_stops_when_its_client_resets(host: Host) -> None:
    with Connection(host) as conn:
        conn.send(b"GET /flood HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.response().read(1000) == b"x" * 1000
        # a reset, not a close: the worker's writes fail at once
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stopped = host.wait_for_log(msg="flood stopped")
    line = host.wait_for_log(msg="invocation", invocation_id=stopped["invocation_id"])
    assert (line["outcome"], line["cancel_reason"]) == ("cancelled", "client_disconnected")
    assert stopped["chunks"] < 2000  # not run to its end, writing to no one


def test_connection_close_from_the_client_closes_after_the_answer(host: Host) -> None:
    with Connection(host) as conn:
        conn.send(
            b"GET /hello/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            b"GET /hello/ignored HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        resp = conn.response()
        assert (resp.status, resp.read()) == (200, b"Hello last")
        assert resp.getheader("connection") == "close"
        assert conn.closed_by_server()


def test_expect_100_continue_gets_continue_then_the_answer(host: Host) -> None:
    with Connection(host) as conn:
        conn.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = conn.stream.reader.readline()
        assert interim == b"HTTP/1.1 100 Continue\r\n"
        assert conn.stream.reader.readline() == b"\r\n"
        conn.send(b"body")
        resp = conn.response()
        assert (resp.status, resp.read()) == (200, b"body")


def test_a_path_holding_a_percent_encoded_nul_is_a_400(host: Host) -> None:
    """``%00`` reached ``req.params`` and ``req.path`` as a NUL character."""
    with httpx.Client(base_url=host.url) as client:
        r = client.get("/hello/a%00b")
        other = client.get("/hello/a%0Ab")  # other characters stay the function's to judge
    assert r.status_code == 400
    assert r.json()["error"] == "the path holds %00 (NUL), which no path may hold"
    assert other.status_code == 200


def test_an_expectation_other_than_100_continue_is_417(host: Host) -> None:
    """RFC 9110 10.1.1: it was ignored, and the client went on as if it had been met."""
    with Connection(host) as conn:
        conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 200-ok\r\n\r\n")
        resp = conn.response()
        assert resp.status == 417
        assert json.loads(resp.read())["error"] == (
            "Expect: '200-ok' is not met here; the only one is 100-continue"
        )
    with Connection(host) as conn:  # the same words in another case are the one it meets
        conn.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-Continue\r\n\r\n"
        )
        assert conn.stream.reader.readline() == b"HTTP/1.1 100 Continue\r\n"


@pytest.mark.parametrize(("target", "status"), [(b"/no-such-function", 404), (b"/hello/x", 405)])
def test_expect_100_continue_for_no_function_is_answered_at_once(
    host: Host, target: bytes, status: int
) -> None:
    """The client is spared sending a body no function takes (RFC 9110 10.1.1)."""
    with Connection(host) as conn:
        conn.send(
            b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n"
            b"Expect: 100-continue\r\n\r\n" % target
        )
        # raw: http.client would skip a 100 Continue; this one must not come at all
        answer = conn.stream.reader.read()  # all of it: the connection closes
    head = answer.partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"HTTP/1.1 %d %s" % (status, http.HTTPStatus(status).phrase.encode())
    assert b"connection: close" in head
    if status == 405:
        assert b"allow: GET, HEAD" in head


def test_expect_100_continue_for_no_function_behind_another_request_gets_no_continue(
    host: Host,
) -> None:
    """Pipelined behind a request being answered, it was sent 100 Continue once its turn
    came, and its client a body no function takes (then a 408, had it given up on it)."""
    with Connection(host) as conn:
        conn.send(
            b"GET /slow/0.2 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /no-such-function HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        first = conn.response()
        assert (first.status, first.read()) == (200, b"finished, cancelled=False")
        # raw: http.client would skip a 100 Continue; this one must not come at all
        answer = conn.stream.reader.read()  # all of it: the connection closes
    head = answer.partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"HTTP/1.1 404 Not Found"
    assert b"connection: close" in head


def test_expect_100_continue_over_the_limit_gets_413_and_no_continue(host: Host) -> None:
    with Connection(host) as conn:
        conn.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        resp = conn.response()
        assert resp.status == 413
        assert "5000 bytes is over the limit of 1000" in resp.read().decode()


def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(
    host: Host,
) -> None:
    with Connection(host) as conn:
        conn.hello("idle")
        started_at = time.monotonic()
        assert conn.closed_by_server()
        assert 0.3 < time.monotonic() - started_at < 5


def test_an_upgrade_request_is_answered_as_plain_http_then_closed(host: Host) -> None:
    with Connection(host) as conn:
        conn.send(
            b"GET /hello/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        resp = conn.response()
        assert (resp.status, resp.read()) == (200, b"Hello ws")
        assert conn.closed_by_server()


@pytest.mark.parametrize(
    "framing",
    [b"Content-Length: 4\r\n\r\nbody", b"Transfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n"],
)
def test_an_upgrade_request_with_a_body_is_refused_not_run_without_it(
    host: Host, framing: bytes
) -> None:
    # what curl --http2 sends over plain http: its body would be read as HTTP/2's
    with Connection(host) as conn:
        conn.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n"
            b"Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
            + framing
        )
        resp = conn.response()
        assert resp.status == 400
        assert "--http1.1" in resp.read().decode()


@pytest.mark.parametrize(
    ("request_bytes", "named"),
    [
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n", "Content-Length"),
        (b"GET /hello/x HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", "invalid HTTP request"),
        # request smuggling: framing that two servers could read two ways is refused
        (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hello/smuggled HTTP/1.1\r\n\r\n",
            "invalid HTTP request",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            b"Content-Length: 6\r\n\r\nabcdef",
            "invalid HTTP request",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n"
            b"\r\n0\r\n\r\n",
            "invalid HTTP request",
        ),
        (b"GET /hello/x HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", "invalid HTTP request"),
        (b"GET /hello/x HTTP/1.1\r\nHost : x\r\n\r\n", "invalid HTTP request"),
        # RFC 9112 3.2: an HTTP/1.1 request names its host once; none may name two
        (b"GET /hello/x HTTP/1.1\r\n\r\n", "must carry one Host header"),
        (b"GET /hello/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "must carry one Host"),
        (b"GET /hello/x HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", "must carry one Host"),
        (b"GET /hello/x HTTP/1.1\r\nHost: a b/c\r\n\r\n", "Host header 'a b/c' is not"),
        # no port past 65535, as none in an absolute-form target (req.url would carry it)
        (b"GET /hello/x HTTP/1.1\r\nHost: x:65536\r\n\r\n", "Host header 'x:65536' is not"),
        (b"GET /hello/x#top HTTP/1.1\r\nHost: x\r\n\r\n", "has a fragment"),
        (b"GET ftp://example.com/hello/x HTTP/1.1\r\nHost: x\r\n\r\n", "not a path or an http"),
        (b"GET example.com:80 HTTP/1.1\r\nHost: x\r\n\r\n", "invalid HTTP request"),
    ],
)
def test_malformed_requests_get_400_naming_the_problem(
    host: Host, request_bytes: bytes, named: str
) -> None:
    with Connection(host) as conn:
        conn.send(request_bytes)
        resp = conn.response()
        assert resp.status == 400
        error = json.loads(resp.read())["error"]
        assert named in error
        assert conn.closed_by_server()
    # no function ran, so no invocation line: this one tells the operator
    line = host.wait_for_log(msg="request refused", error=error)
    assert (line["level"], line["status"], line["client"]) == ("info", 400, "127.0.0.1")


@pytest.mark.parametrize(
    ("request_bytes", "status", "named"),
    [
        # what a client that speaks only HTTP/2 or HTTP/0.9 would send: httptools reads
        # the version, but hibana speaks neither
        (b"GET /hello/x HTTP/2.0\r\nHost: x\r\n\r\n", 505, "not HTTP/2"),
        (b"GET /hello/x\r\n\r\n", 505, "HTTP/0.9 is not spoken here"),
        # a version the parser does not know was a 400 "Invalid HTTP version"; RFC 9110
        # 15.6.6: a version refused is a 505
        (b"GET /hello/x HTTP/1.2\r\nHost: x\r\n\r\n", 505, "HTTP/1.2 is not spoken here"),
        (b"GET /hello/x HTTP/3.0\r\nHost: x\r\n\r\n", 505, "HTTP/3.0 is not spoken here"),
        (b"GET /hello/x HTTP/9.9\r\n\r\n", 505, "HTTP/9.9 is not spoken here"),
        # a proxy's tunnel: no error in the host's log, a status that says why
        (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501, "CONNECT"),
        # RFC 9112 6.1: a coding the host cannot undo would reach the function still coded
        (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            501,
            "transfer coding 'gzip, chunked' is not supported",
        ),
    ],
)
def test_what_the_host_does_not_speak_is_refused_naming_it(
    host: Host, request_bytes: bytes, status: int, named: str
) -> None:
    with Connection(host) as conn:
        conn.send(request_bytes)
        resp = conn.response()
        assert resp.status == status
        assert named in resp.read().decode()
        assert conn.closed_by_server()
    assert not [line for line in host.logs() if "failed to read" in line.get("msg", "")]


def test_a_version_not_spoken_behind_a_good_request_is_named(host: Host) -> None:
    """The one refused is named, not the HTTP/1.1 of the request before it in the read."""
    with Connection(host) as conn:
        conn.send(b"GET /hello/a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.9\r\nHost: x\r\n\r\n")
        assert conn.response().read() == b"Hello a"
        resp = conn.response()
        assert resp.status == 505
        assert json.loads(resp.read())["error"] == (
            "HTTP/1.9 is not spoken here: this host speaks HTTP/1.1 (and 1.0); send HTTP/1.1"
        )


def test_a_client_that_half_closes_still_gets_its_answers(host: Host) -> None:
    """RFC 9112 9.6: a client may shut its side once the request is sent (``nc -N``,
    scripts) and read the answer; the answers to everything it sent are written."""
    with Connection(host) as conn:
        conn.send(
            b"GET /slow/0.3 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        )
        conn.sock.shutdown(socket.SHUT_WR)
        first = conn.response()
        # it ran to its end, though told its client might be gone
        assert (first.status, first.read()) == (200, b"finished, cancelled=True")
        second = conn.response("POST")
        assert second.status == 200 and second.getheader("connection") == "close"
        assert second.read() == b"hello"
        assert conn.closed_by_server()
    line = host.wait_for_log(invocation_id=first.getheader("x-invocation-id"), msg="invocation")
    assert (line["outcome"], line["cancel_reason"]) == ("ok", "client_disconnected")


def test_an_http_1_0_request_with_transfer_encoding_is_refused(host: Host) -> None:
    """RFC 9112 6.1: its framing is faulty. It was read as chunked and the connection kept,
    while an HTTP/1.0 proxy in front reads no chunks: the bytes after the head (a request
    smuggled in the "body") are requests to one and a body to the other."""
    with Connection(host) as conn:
        conn.send(
            b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n"
            b"\r\n5\r\nhello\r\n0\r\n\r\nGET /hello/smuggled HTTP/1.0\r\n\r\n"
        )
        resp = conn.response("POST")
        assert resp.status == 400
        assert json.loads(resp.read())["error"] == (
            "an HTTP/1.0 request cannot carry Transfer-Encoding (RFC 9112 6.1): send "
            "HTTP/1.1, or the body with a Content-Length"
        )
        assert conn.closed_by_server()


def test_an_http_1_0_client_is_not_sent_100_continue(host: Host) -> None:
    """RFC 9110 15.2: an HTTP/1.0 client would take a 1xx for the answer."""
    with Connection(host) as conn:
        conn.send(b"POST /echo HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
        # raw bytes: http.client would skip a 100 Continue
        assert conn.file.readline() == b"HTTP/1.1 200 OK\r\n"


def test_dot_segments_are_resolved_before_routing(host: Host) -> None:
    """As a browser would resolve them, and as nginx does: no function gets a ``..``
    in a parameter, encoded (``%2e%2e``) or not."""
    with Connection(host) as conn:
        conn.send(b"GET /hello/zz/../world HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert (resp.status, resp.read()) == (200, b"Hello world")
        conn.send(b"GET /x/%2e%2e/hello/./enc HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert (resp.status, resp.read()) == (200, b"Hello enc")
        conn.send(b"GET /hello/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert resp.status == 400
        assert "climbs above the root" in resp.read().decode()
        assert conn.closed_by_server()


@pytest.mark.parametrize(
    ("target", "location"),
    [
        # the path resolved is /hello/x/: the redirect names /hello/x, not the target as
        # sent, which a client that does not resolve dots (curl --path-as-is) takes off
        # the host
        (b"//evil.example/../../hello/x/", "/hello/x"),
        (b"/\\evil.example/../hello/x/", "/hello/x"),  # read as //evil.example by browsers
        (b"/hello/x/.", "/hello/x"),  # not /hello/x/./, which redirected back here
        (b"/hello/x%2F", "/hello/x"),  # not /hello/x%2F/, a 404
        (b"/hello/caf%C3%A9/?q=1", "/hello/caf%C3%A9?q=1"),
    ],
)
def test_the_trailing_slash_redirect_names_the_resolved_path(
    host: Host, target: bytes, location: str
) -> None:
    with Connection(host) as conn:
        conn.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
        resp = conn.response()
        resp.read()
        assert (resp.status, resp.getheader("location")) == (308, location)


def test_http_2_with_prior_knowledge_is_told_to_speak_http_1_1(host: Host) -> None:
    # what `curl --http2-prior-knowledge` and gRPC clients send first
    with Connection(host) as conn:
        conn.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        resp = conn.response()
        assert resp.status == 505
        assert "speaks HTTP/1.1, not HTTP/2" in resp.read().decode()
        assert conn.closed_by_server()


def test_a_malformed_request_behind_a_good_one_is_refused_after_the_good_answer(
    host: Host,
) -> None:
    with Connection(host) as conn:
        conn.send(b"GET /slow/0.2 HTTP/1.1\r\nHost: x\r\n\r\nNOT HTTP\r\n\r\n")
        first = conn.response()
        assert first.status == 200
        first.read()
        second = conn.response()
        assert second.status == 400
        assert "invalid HTTP request" in second.read().decode()
        assert conn.closed_by_server()


def test_a_forged_response_header_is_a_500_and_never_reaches_the_wire(host: Host) -> None:
    with host.client() as client:
        r = client.get("/forged-header")
    assert r.status_code == 500
    assert "set-cookie" not in r.headers and "x-note" not in r.headers
    invocation_id = r.json()["invocation_id"]
    line = host.wait_for_log(invocation_id=invocation_id, msg="invocation")
    assert "x-note" in line["error"] and "line break" in line["error"]


def test_the_host_alone_sets_traceparent_and_x_invocation_id(basic_host: Host) -> None:
    """A function's own went out beside the host's: two of each, and a client reading
    the first got the function's, which names no invocation the log has."""
    with basic_host.client() as client:
        r = client.get("/own-trace-headers")
    assert r.status_code == 200
    assert len(r.headers.get_list("traceparent")) == 1
    assert r.headers.get_list("x-invocation-id") == [r.headers["x-invocation-id"]]
    line = basic_host.wait_for_log(invocation_id=r.headers["x-invocation-id"], msg="invocation")
    assert r.headers["traceparent"] == f"00-{line['trace_id']}-{line['span_id']}-01"


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("to=999", "999"),
        ("to=0", "0"),
        ("to=-5", "-5"),
        ("to=101", "101"),
        ("to=404&as=str", "'404'"),
    ],
)
def test_a_status_set_after_the_response_was_made_is_checked(
    host: Host, query: str, said: str
) -> None:
    """It went on the wire as it was (``HTTP/1.1 999``); a str gave an empty reply, with
    no invocation line and no error counted."""
    errors = host.function_status("set_status")["errors"]
    with host.client() as client:
        r = client.get(f"/set-status?{query}")
        fine = client.get("/set-status?to=404")
    assert r.status_code == 500
    assert fine.status_code == 404 and fine.text == "body"
    line = host.wait_for_log(invocation_id=r.json()["invocation_id"], msg="invocation")
    assert (line["level"], line["status"], line["outcome"]) == ("error", 500, "error")
    assert line["error"].startswith(
        f"ValueError: function {declared('basic', 'set_status')} returned a Response whose "
        f"status is {said}: "
        f"HTTP status {said} is not an integer from 200 to 599"
    )
    assert line["error"].endswith(
        "; set response.status to an int from 200 to 599 (or an http.HTTPStatus)"
    )
    assert host.function_status("set_status")["errors"] == errors + 1


def test_a_functions_framing_headers_give_way_to_the_hosts(host: Host) -> None:
    """Headers copied from an upstream response (a proxying function) would otherwise
    contradict the host's own and split the response on a kept-alive connection."""
    copied = (
        b"h=Content-Length:6&h=Transfer-Encoding:chunked&h=Connection:keep-alive"
        b"&h=Keep-Alive:timeout%3D5&h=Date:yesterday&h=X-Kept:yes"
    )
    with Connection(host) as conn:
        conn.send(b"GET /answer/200?%s&body=abcdefGET%%20/x HTTP/1.1\r\nHost: x\r\n\r\n" % copied)
        resp = conn.response()
        assert resp.status == 200
        assert resp.headers.get_all("content-length") == ["12"]
        assert resp.headers.get_all("transfer-encoding") is None
        assert resp.headers.get_all("keep-alive") is None
        assert resp.headers.get_all("connection") is None
        dates = resp.headers.get_all("date")
        assert dates is not None and len(dates) == 1 and dates[0].endswith(" GMT")
        assert resp.getheader("x-kept") == "yes"
        assert resp.read() == b"abcdefGET /x"
        conn.hello("next")  # the connection is in step: the body was read whole
    with Connection(host) as conn:  # Connection: close is the function's to ask for
        conn.send(b"GET /answer/200?h=Connection:close HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert (resp.status, resp.getheader("connection")) == (200, "close")
        assert resp.read() == b"body-text"
        assert conn.closed_by_server()


def test_a_head_answer_keeps_the_length_its_function_declares(host: Host) -> None:
    with Connection(host) as conn:
        conn.send(b"HEAD /answer/200?h=Content-Length:1234 HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response("HEAD")
        assert (resp.status, resp.getheader("content-length")) == (200, "1234")
        conn.hello("next")  # no body was sent
        conn.send(b"GET /answer/200?h=Content-Length:abc HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert resp.status == 500
        invocation_id = json.loads(resp.read())["invocation_id"]
    line = host.wait_for_log(invocation_id=invocation_id, msg="invocation")
    assert "not a number of bytes" in line["error"]


@pytest.mark.parametrize("status", [100, 101, 103, 199])
def test_a_function_cannot_answer_with_an_interim_status(host: Host, status: int) -> None:
    """A 1xx sent as the answer would leave the client waiting for the real one, or
    reading the body as the next response."""
    with Connection(host) as conn:
        conn.send(b"GET /answer/%d HTTP/1.1\r\nHost: x\r\n\r\n" % status)
        resp = conn.response()
        assert resp.status == 500
        invocation_id = json.loads(resp.read())["invocation_id"]
        conn.hello("next")
    line = host.wait_for_log(invocation_id=invocation_id, msg="invocation")
    assert f"HTTP status {status} is not an integer from 200 to 599" in line["error"]
    assert "interim" in line["error"]


def test_205_reset_content_carries_no_content(host: Host) -> None:
    with Connection(host) as conn:
        conn.send(b"GET /answer/205 HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert (resp.status, resp.getheader("content-length"), resp.read()) == (205, "0", b"")
        conn.send(b"GET /answer-stream/205 HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert (resp.status, resp.getheader("content-length"), resp.read()) == (205, "0", b"")
        # a streamed one whose function declared a length: the client waited for its bytes
        conn.send(b"GET /answer-stream/205?h=Content-Length:5 HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert (resp.status, resp.getheader("content-length"), resp.read()) == (205, "0", b"")
        conn.hello("next")


def test_a_bodiless_stream_sends_nothing_and_a_declared_one_is_not_chunked(host: Host) -> None:
    with Connection(host) as conn:
        conn.send(b"GET /answer-stream/204 HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert resp.status == 204 and resp.getheader("transfer-encoding") is None
        conn.hello("after-204")  # "part" was not written into the connection
        conn.send(b"GET /answer-stream/200?h=Content-Length:4 HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert resp.getheader("transfer-encoding") is None
        assert (resp.getheader("content-length"), resp.read()) == ("4", b"part")
        conn.hello("after-declared")


def test_the_board_counts_as_errors_what_failed_and_only_that(host: Host) -> None:
    counted = ("boom", "teapot", "bad_return", "forged_header", "broken_stream", "hello")

    def errors() -> dict[str, int]:
        return {f["name"]: f["errors"] for f in host.status()["functions"] if f["name"] in counted}

    before = errors()
    with host.client() as client:
        assert client.get("/boom").status_code == 500  # raised
        assert client.get("/teapot").status_code == 418  # a client error, on purpose
        assert client.get("/bad-return").status_code == 500  # returned what is no response
        assert client.get("/forged-header").status_code == 500
        assert client.get("/hello/fine").status_code == 200
    with pytest.raises(httpx.RemoteProtocolError), host.client() as client:
        client.get("/broken-stream")  # failed after its head was sent
    after = errors()
    assert {name: after[name] - before[name] for name in counted} == {
        "boom": 1,
        "teapot": 0,
        "bad_return": 1,
        "forged_header": 1,
        "broken_stream": 1,
        "hello": 0,
    }


def test_204_has_no_content_length_and_no_body(host: Host) -> None:
    with Connection(host) as conn:
        conn.send(b"DELETE /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert resp.status == 204
        assert resp.getheader("content-length") is None
        conn.hello("next")


def test_options_star_names_the_methods_the_host_serves(host: Host) -> None:
    with Connection(host) as conn:
        conn.send(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert (resp.status, resp.read()) == (200, b"")
        assert resp.getheader("allow") == "DELETE, GET, HEAD, POST, PUT, OPTIONS"
        conn.send(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n")  # the same connection goes on
        resp = conn.response()
        assert resp.status == 400
        assert json.loads(resp.read()) == {"error": "the request target * is for OPTIONS, not GET"}
    host.wait_for_log(msg="no function", status=400)  # a line says so, as for a 404


def test_percent_encoded_and_absolute_form_targets_are_understood(host: Host) -> None:
    with Connection(host) as conn:
        conn.send(b"GET /hello/a%20b HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert (resp.status, resp.read()) == (200, b"Hello a b")
        conn.send(b"GET http://example.com/inspect?tag=t1 HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert resp.status == 200
        body = httpx.Response(200, content=resp.read()).json()
        assert body["path"] == "/inspect" and body["tags"] == ["t1"]


def test_responses_carry_a_date_header(host: Host) -> None:
    with host.client() as client:
        r = client.get("/hello/date")
    assert r.headers["date"].endswith(" GMT")


def test_a_failure_inside_the_server_is_a_logged_500_not_the_clients_400() -> None:
    """A bug in hibana while reading a request must not be blamed on the request."""

    def broken_lookup(method: str, path: str) -> None:
        raise RuntimeError("route table exploded")

    front = SimpleNamespace(table=SimpleNamespace(lookup=broken_lookup))
    with in_process_server(front) as served:

        async def main() -> Transport:
            protocol, transport = served.connect()
            protocol.data_received(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            protocol.connection_lost(None)
            return transport

        transport = asyncio.run(main())
        line = served.logged()[0]
    assert transport.written.startswith(b"HTTP/1.1 500 ")
    assert b"the host failed to read this request" in transport.written
    assert transport.closed
    assert line["msg"] == "the HTTP server failed to read a request"
    assert "route table exploded" in line["error"]


def test_each_request_is_read_in_its_own_http_version_however_its_bytes_are_split() -> None:
    """The version a request line ends with is read from the read that begins its head;
    in a read that goes on with a head begun before (pipelined behind another request), a
    header line that ends in " HTTP/1.1" is no request line."""
    reads = [
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n",
        b"X-Note: HTTP/1.1\r\n\r\nGET /c HTTP/1.0\r\n\r\n",
        b"GET /d HTTP/1.",
        b"1\r\nHost: x\r\n\r\n",
        b"GET /e HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ]
    seen: list[tuple[str, str]] = []

    async def handle(found: object, scope: Any, body: bytes, receive: object, out: Any) -> None:
        seen.append((scope["path"], scope["http_version"]))
        await out.whole(200, [(b"content-length", b"0")], b"")

    front = SimpleNamespace(
        table=SimpleNamespace(lookup=lambda method, path: None), handle=handle, draining=False
    )
    with in_process_server(front) as served:

        async def main() -> None:
            for packets in (reads[:2], reads[2:]):
                protocol, _ = served.connect()
                for data in packets:
                    protocol.data_received(data)
                    await served.settle()  # the answers' tasks run
                protocol.connection_lost(None)

        asyncio.run(main())
    assert seen == [("/a", "1.1"), ("/b", "1.1"), ("/c", "1.0"), ("/d", "1.1"), ("/e", "1.0")]


def test_bodies_pipelined_up_to_the_body_limit_stop_the_reading() -> None:
    """Requests pipelined behind one being answered were read until sixteen waited,
    whatever their bodies: sixteen each just under --max-body-bytes were all kept, one
    connection holding sixteen times the memory the limit means to allow."""
    seen: list[tuple[str, int]] = []

    async def handle(found: object, scope: Any, body: bytes, receive: object, out: Any) -> None:
        if scope["path"] == "/slow":
            await release.wait()
        seen.append((scope["path"], len(body)))
        await out.whole(200, [(b"content-length", b"0")], b"")

    found = Match(None, {})  # type: ignore[arg-type]  # a function takes each body: kept
    front = SimpleNamespace(
        table=SimpleNamespace(lookup=lambda method, path: found), handle=handle, draining=False
    )
    post = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 600\r\n\r\n" + b"x" * 600
    reading: list[bool] = []
    release = asyncio.Event()
    with in_process_server(front) as served:

        async def main() -> None:
            protocol, transport = served.connect()
            protocol.data_received(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" + post)
            reading.append(transport.reading)  # one body waits, under the limit
            protocol.data_received(post)
            reading.append(transport.reading)  # two: 1200 bytes, over it
            release.set()
            await served.settle()  # the answers' tasks run
            reading.append(transport.reading)  # answered: read again
            protocol.connection_lost(None)

        asyncio.run(main())
    assert reading == [True, False, True]
    assert seen == [("/slow", 0), ("/echo", 600), ("/echo", 600)]


def test_a_chunked_body_of_tiny_chunks_is_kept_in_few_pieces() -> None:
    """Each chunk's data was kept as an object of its own: 2-byte chunks held 27 times the
    body's size in memory (280 MB for a body of the default 10 MiB limit)."""
    kept: list[int] = []
    bodies: list[bytes] = []

    async def handle(found: object, scope: Any, body: bytes, receive: object, out: Any) -> None:
        bodies.append(body)
        await out.whole(200, [(b"content-length", b"0")], b"")

    found = Match(None, {})  # type: ignore[arg-type]  # a function takes the body: kept
    front = SimpleNamespace(
        table=SimpleNamespace(lookup=lambda method, path: found), handle=handle, draining=False
    )
    with in_process_server(front, max_body_bytes=100_000) as served:

        async def main() -> None:
            protocol, _ = served.connect()
            protocol.data_received(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            for _ in range(5):
                protocol.data_received(b"2\r\nxy\r\n" * 1000 + b"800\r\n" + b"z" * 2048 + b"\r\n")
            kept.append(len(protocol.parsing.chunks))  # type: ignore[union-attr]
            protocol.data_received(b"0\r\n\r\n")
            await served.settle()  # the answer's task runs
            protocol.connection_lost(None)

        asyncio.run(main())
    assert kept[0] <= 64 + 10  # the first 64, then a buffer and a big chunk each packet
    assert bodies == [(b"xy" * 1000 + b"z" * 2048) * 5]
    assert type(bodies[0]) is bytes


@pytest.mark.parametrize(
    ("declared", "why"),
    [
        (2, "the stream sent more than the 2 bytes its Content-Length declares"),
        (10, "the stream ended after 4 of the 10 bytes its Content-Length declares"),
    ],
)
def test_a_stream_longer_or_shorter_than_its_content_length_is_cut_short(
    host: Host, declared: int, why: str
) -> None:
    """The client must not read the extra bytes as the next response, nor wait for ones
    that never come."""
    with host.client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(f"/answer-stream/200?h=Content-Length:{declared}")
        assert client.get("/hello/next").text == "Hello next"  # on a new connection
    deadline = time.monotonic() + 10
    while not (lines := [x for x in host.logs() if why in x.get("error", "") and x.get("outcome")]):
        assert time.monotonic() < deadline, f"no invocation line says {why!r}"
        time.sleep(0.02)
    assert [(x["msg"], x["level"], x["outcome"], x["status"]) for x in lines] == [
        ("invocation", "error", "error", 200)
    ]
    with Connection(host) as conn:  # what went out: no more than declared, then the close
        conn.send(b"GET /answer-stream/200?h=Content-Length:2 HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert resp.getheader("content-length") == "2"
        assert conn.stream.reader.read() == b""  # the close, before a byte of "part"


def test_a_streamed_204_carries_no_content_length(host: Host) -> None:
    with Connection(host) as conn:
        conn.send(b"GET /answer-stream/204?h=Content-Length:4 HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert (resp.status, resp.getheader("content-length")) == (204, None)
        conn.hello("after-204")


def test_trailers_after_a_chunked_body_are_not_headers(host: Host) -> None:
    """A trailer would otherwise slip past the checks the head went through: a second
    Host, a forged cookie, a proxy's X-Forwarded-For (RFC 9110 6.5.1)."""
    with Connection(host) as conn:
        conn.send(
            b"POST /inspect HTTP/1.1\r\nHost: x\r\nX-Multi: head\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nHost: evil.example\r\nX-Multi: trailer\r\n"
            b"Cookie: session=forged\r\n\r\n"
        )
        resp = conn.response()
        assert resp.status == 200
        seen = json.loads(resp.read())
        assert (seen["x_multi"], seen["cookies"]) == (["head"], {})
        conn.hello("next")


def test_whitespace_after_a_header_value_is_not_part_of_it(host: Host) -> None:
    with Connection(host) as conn:
        conn.send(b"GET /inspect HTTP/1.1\r\nHost: x \t\r\nX-Multi: value \t \r\n\r\n")
        resp = conn.response()
        assert resp.status == 200
        assert json.loads(resp.read())["x_multi"] == ["value"]


@pytest.mark.parametrize(
    ("second_head", "status", "said"),
    [
        (
            b"GET /hello/b HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n",
            431,
            "request headers are over the limit",
        ),
        (
            b"GET /hello/" + b"b" * 40_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            414,
            "request line (method, target and version) is over",
        ),
    ],
    ids=["headers", "request-line"],
)
def test_a_pipelined_head_over_the_limit_is_refused(
    host: Host, second_head: bytes, status: int, said: str
) -> None:
    """Its start came in the read that ended the request before it (over the default
    32 KiB of --max-header-bytes)."""
    with Connection(host) as conn:
        conn.send(b"GET /hello/a HTTP/1.1\r\nHost: x\r\n\r\n" + second_head)
        first = conn.response()
        assert (first.status, first.read()) == (200, b"Hello a")
        second = conn.response()
        assert second.status == status
        assert said in second.read().decode()


@pytest.mark.parametrize("pipelined", [False, True], ids=["alone", "pipelined"])
def test_a_head_is_held_to_the_limit_to_the_byte_alone_or_pipelined(
    host: Host, pipelined: bool
) -> None:
    """A pipelined head whose start came in the read before is measured from its parts;
    the request line's method and version and the lines' ends were left out, so a head
    up to 17 bytes over the limit (a GET's) passed pipelined and was refused alone."""
    start = b"GET /hello/b HTTP/1.1\r\nHost: x\r\nX-Pad: "
    for size, status in ((32768, 200), (32769, 431)):  # the default --max-header-bytes
        head = start + b"p" * (size - len(start) - 4) + b"\r\n\r\n"
        assert len(head) == size
        with Connection(host) as conn:
            if pipelined:
                conn.send(b"GET /hello/a HTTP/1.1\r\nHost: x\r\n\r\n" + head)
                assert conn.response().read() == b"Hello a"
            else:
                conn.send(head)
            assert conn.response().status == status


@pytest.mark.parametrize("pipelined", [False, True], ids=["alone", "pipelined"])
def test_a_request_with_over_100_header_fields_is_a_431_naming_the_limit(
    host: Host, pipelined: bool
) -> None:
    """Only --max-header-bytes bounded them: 8,000 empty fields in its 32 KiB were each
    read, milliseconds of the worker's time for one request."""
    for fields, status in ((100, 200), (101, 431), (8000, 431)):  # Host is one
        head = b"GET /hello/b HTTP/1.1\r\nHost: x\r\n" + b"a:\r\n" * (fields - 1) + b"\r\n"
        with Connection(host) as conn:
            if pipelined:
                conn.send(b"GET /hello/a HTTP/1.1\r\nHost: x\r\n\r\n" + head)
                assert conn.response().read() == b"Hello a"
            else:
                conn.send(head)
            resp = conn.response()
            assert resp.status == status, fields
            if status == 431:
                assert json.loads(resp.read()) == {
                    "error": "the request has over 100 header fields, the most this host "
                    "reads; send fewer (a field sent several times can be one, its values "
                    "joined with commas)"
                }
                assert conn.closed_by_server()


@pytest.mark.parametrize("control", ["%01", "%0B", "%1B", "%7F"])
def test_a_response_header_with_a_control_character_is_a_500(host: Host, control: str) -> None:
    with Connection(host) as conn:
        conn.send(b"GET /answer/200?h=X-V:a%sb HTTP/1.1\r\nHost: x\r\n\r\n" % control.encode())
        resp = conn.response()
        assert resp.status == 500 and resp.getheader("x-v") is None
        invocation_id = json.loads(resp.read())["invocation_id"]
        conn.hello("next")
    line = host.wait_for_log(invocation_id=invocation_id, msg="invocation")
    assert "response header 'X-V' has a control character" in line["error"]


def test_a_worker_killed_while_it_reads_a_body_leaves_its_client_a_503() -> None:
    """The connection was marked on the board only once its invocation started: a worker
    killed while a request's body arrived left its client an empty reply."""
    host = Host(APPS / "basic", "--workers", "1").wait_ready()
    try:
        with Connection(host) as conn:
            conn.send(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            # the head is read and the body awaited
            assert conn.stream.reader.readline() == b"HTTP/1.1 100 Continue\r\n"
            assert conn.stream.reader.readline() == b"\r\n"
            conn.send(b"x" * 10)
            (victim,) = host.worker_pids()
            os.kill(victim, signal.SIGKILL)
            resp = conn.response("POST")
            assert (resp.status, resp.getheader("retry-after")) == (503, "1")
            assert json.loads(resp.read()) == {
                "error": "the worker died while it read this request's body; the function "
                "was not run: it is safe to send it again"
            }
            assert conn.closed_by_server()
        host.wait_for_stderr(
            r"answered 1 request\(s\) of the dead worker 0 \(pid \d+\): "
            r"1 with 503 \(not run: its body was being read\)"
        )
    finally:
        host.stop()


def test_a_keep_alive_connection_idle_after_bodies_is_closed_unanswered_when_its_worker_dies() -> (
    None
):
    """The mark a body's reading leaves is gone once it is answered, whatever answered it:
    a worker that dies later closes the idle connection, with no answer to a request the
    client never sent (it would read it as the answer to its next one)."""
    host = Host(APPS / "basic", "--workers", "1").wait_ready()
    try:
        with Connection(host) as conn:
            for target, status in ((b"/echo", 200), (b"/missing", 404), (b"/hello/x", 405)):
                conn.send(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody" % target)
                resp = conn.response("POST")
                assert resp.status == status
                resp.read()
            (victim,) = host.worker_pids()
            os.kill(victim, signal.SIGKILL)
            assert conn.closed_by_server()
    finally:
        host.stop()


def test_a_connection_given_the_slot_of_one_whose_invocation_runs_on_gets_no_502_of_it() -> None:
    """A connection's slot on the board went to the next connection as soon as it closed,
    while its invocation ran on and wrote its state there: a worker that died then had the
    supervisor answer 502 naming that invocation on the new connection, which asked
    nothing (or wrote nothing for the new one's own invocation)."""
    host = Host(APPS / "basic", "--workers", "1").wait_ready()
    try:
        with Connection(host) as other:
            other.hello("first")  # its slot taken before the one to be freed is
            gone = Connection(host)
            gone.send(b"GET /slow/20 HTTP/1.1\r\nHost: x\r\n\r\n")
            host.wait_inflight(1, "slow")
            # a reset, not a close: its connection is lost at once, not once answered
            gone.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            gone.close()
            other.hello("after")  # the worker has seen it go
            with Connection(host) as idle:
                other.hello("accepted")  # ... and has taken this one
                (victim,) = host.worker_pids()
                os.kill(victim, signal.SIGKILL)
                assert idle.closed_by_server()
    finally:
        host.stop()
