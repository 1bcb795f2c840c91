"""A response that says ``connection: close`` is the connection's last: a request the
client pipelined behind it is neither run nor answered, and the connection closes once
that response is written."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from hibana.triggers.routes import Match
from tests.hosts import Host, started
from tests.http_wire import Connection, Transport, in_process_server

_BEHIND = b"GET /hello/behind HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    yield from started("basic", "--workers", "1")


@pytest.mark.parametrize(
    ("first", "status"),
    [
        # the function's own answer says it
        (b"GET /answer/200?h=Connection:close HTTP/1.1\r\nHost: x\r\n\r\n", 200),
        (b"GET /answer-stream/200?h=Connection:close HTTP/1.1\r\nHost: x\r\n\r\n", 200),
        # the client asked for it
        (b"GET /hello/first HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200),
        # a refusal of the server's own (a Host that is none)
        (b"GET /hello/first HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ],
)
def test_nothing_pipelined_behind_a_closing_answer_is_answered(
    host: Host, first: bytes, status: int
) -> None:
    with Connection(host) as conn:
        conn.send(first + _BEHIND)
        resp = conn.response()
        assert resp.status == status
        assert resp.getheader("connection") == "close"
        resp.read()
        assert conn.closed_by_server()  # EOF: no second response


def _serve(first: bytes, handle: Any, then: Any = None) -> tuple[Transport, list[str]]:
    """Feed ``first`` and a request pipelined behind it to an ``HttpProtocol`` whose front
    answers with ``handle``; ``then(server, release)`` runs once the first is being
    answered, before ``release`` (an Event the handler may wait on) is set. Returns what
    was written and the paths the front was asked to answer."""
    asked: list[str] = []

    async def front_handle(
        found: object, scope: Any, body: bytes, receive: object, out: Any
    ) -> None:
        asked.append(scope["path"])
        await handle(scope, out, release)

    found = Match(None, {})  # type: ignore[arg-type]
    front = SimpleNamespace(
        table=SimpleNamespace(lookup=lambda method, path: found),
        handle=front_handle,
        draining=False,
    )
    release = asyncio.Event()
    with in_process_server(front) as served:

        async def main() -> Transport:
            protocol, transport = served.connect()
            protocol.data_received(first + _BEHIND)
            await served.settle()  # the first request's task runs
            if then is not None:
                then(served.server, release)
            release.set()
            await served.settle()  # and whatever follows it
            protocol.connection_lost(None)
            return transport

        transport = asyncio.run(main())
    return transport, asked


def test_a_500_for_a_failure_of_the_front_is_the_connections_last_answer() -> None:
    """Its 500 said ``connection: close``, and the request pipelined behind it was run and
    answered on the same connection after it."""

    async def handle(scope: Any, out: Any, release: asyncio.Event) -> None:
        if scope["path"] == "/first":
            raise RuntimeError("the front broke")
        await out.whole(200, [(b"content-length", b"2")], b"ok")

    transport, asked = _serve(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n", handle)
    assert asked == ["/first"]
    assert transport.written.count(b"HTTP/1.1 ") == 1
    assert transport.written.startswith(b"HTTP/1.1 500 ")
    assert b"connection: close\r\n" in transport.written
    assert transport.closed


def test_a_504_for_a_stuck_function_is_the_connections_last_answer() -> None:
    """A function that ignored its deadline and cancellation got its client a 504 (which
    says ``connection: close``); once it returned, the request pipelined behind it was run
    and answered after the 504."""
    cancellation = object()

    async def handle(scope: Any, out: Any, release: asyncio.Event) -> None:
        if scope["path"] == "/stuck":
            scope["hibana.cancellation"] = cancellation
            await release.wait()  # returns only after its 504 was written
        await out.whole(200, [(b"content-length", b"2")], b"ok")

    def stuck(server: Any, release: asyncio.Event) -> None:
        server.answer_stuck(cancellation, "inv-1", "the function did not return in time")

    transport, asked = _serve(b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n", handle, stuck)
    assert asked == ["/stuck"]
    assert transport.written.count(b"HTTP/1.1 ") == 1
    assert transport.written.startswith(b"HTTP/1.1 504 ")
    assert b"connection: close\r\n" in transport.written
    assert transport.closed
