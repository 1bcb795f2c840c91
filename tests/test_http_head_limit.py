"""The head's limit (--max-header-bytes) counts the head's bytes, wherever the packets
that carry it end: a blank line that ends the head in the packet of the body still ends
it there."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from hibana.triggers.routes import Match
from tests.http_wire import Transport, in_process_server

_LIMIT = 4096  # in_process_server's max_header_bytes


def _post(size: int) -> bytes:
    """A POST's head of ``size`` bytes, its blank line included, for a 500-byte body."""
    start = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\nX-Pad: "
    return start + b"p" * (size - len(start) - 4) + b"\r\n\r\n"


def _answer(packets: list[bytes]) -> tuple[bytes, list[bytes]]:
    """What an ``HttpProtocol`` fed ``packets`` writes, and the bodies its front gets."""
    bodies: list[bytes] = []

    async def handle(found: object, scope: Any, body: bytes, receive: Any, out: Any) -> None:
        bodies.append(body)
        await out.whole(200, [(b"content-length", b"2")], b"ok")

    found = Match(None, {})  # type: ignore[arg-type]  # a function takes the body
    front = SimpleNamespace(
        table=SimpleNamespace(lookup=lambda method, path: found), handle=handle, draining=False
    )
    with in_process_server(front) as served:

        async def main() -> Transport:
            protocol, transport = served.connect()
            for data in packets:
                protocol.data_received(data)
            await served.settle()  # the answer's task runs
            protocol.connection_lost(None)
            return transport

        transport = asyncio.run(main())
    return transport.written, bodies


@pytest.mark.parametrize("later", [1, 2, 3, 4], ids=lambda n: f"last-{n}-bytes-later")
@pytest.mark.parametrize(("size", "served"), [(4000, True), (_LIMIT, True), (_LIMIT + 1, False)])
def test_a_head_whose_end_comes_with_its_body_is_held_to_its_own_size(
    later: int, size: int, served: bool
) -> None:
    """A head under the limit whose blank line (or the end of it) came in the packet of
    its body was refused 431: the body's bytes were counted as the head's."""
    head = _post(size)
    written, bodies = _answer([head[:-later], head[-later:] + b"b" * 500])
    if served:
        assert written.startswith(b"HTTP/1.1 200 ")
        assert bodies == [b"b" * 500]
    else:
        assert written.startswith(b"HTTP/1.1 431 ")
        assert b"over the limit of 4096 bytes" in written
        assert bodies == []


def test_a_head_under_the_limit_in_one_packet_with_its_body_is_served() -> None:
    written, bodies = _answer([_post(_LIMIT) + b"b" * 500])
    assert written.startswith(b"HTTP/1.1 200 ")
    assert bodies == [b"b" * 500]
    written, bodies = _answer([_post(_LIMIT + 1) + b"b" * 500])
    assert written.startswith(b"HTTP/1.1 431 ")
