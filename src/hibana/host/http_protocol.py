"""uvicorn's httptools protocol with the limits a public endpoint needs: a cap on the
size of a request's head (431) and a deadline for sending it (408), so a slow or
oversized client costs a worker one small buffer, not a connection held forever.

Both are kept off the per-request path: the head is measured per packet while it is
being read, and one timer per connection looks at the clock only when it fires."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hibana.host.handoff import Handoff

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes = 32 * 1024
    header_timeout = 10.0

    #: Bytes of the current request's head read so far; None once the head is complete.
    _head: int | None = 0
    #: When the current head started arriving (time.monotonic()), or None between requests.
    _head_started: float | None = None
    _timer: asyncio.TimerHandle | None = None
    _rejected = False
    #: Hands each connection to the supervisor, which answers 502 if this worker dies.
    handoff: Handoff | None = None
    #: This connection's slot in the board's connection table (None: not handed off).
    _conn: int | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._head_started = time.monotonic()
        self._timer = self.loop.call_later(self.header_timeout, self._check_head)
        if self.handoff is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                self._conn = self.handoff.opened(sock.fileno())

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._conn is not None and self.handoff is not None:
            self.handoff.closed(self._conn)
            self._conn = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        head = self._head
        if head is not None:
            if head == 0 and self._head_started is None:
                self._head_started = time.monotonic()
            head += len(data)
            self._head = head
            if head > self.max_header_bytes and self._head_size(data, head) > self.max_header_bytes:
                self._reject(
                    431, f"request headers are over the limit of {self.max_header_bytes} bytes"
                )
                return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if not self._rejected:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")

    @staticmethod
    def _head_size(data: bytes, counted: int) -> int:
        """The head's size, when this packet (the last ``len(data)`` of ``counted`` bytes)
        may also carry body bytes, which have a limit of their own."""
        end = data.find(b"\r\n\r\n")
        return counted if end == -1 else counted - len(data) + end + 4

    def on_headers_complete(self) -> None:
        self._head = None
        self._head_started = None
        if self._conn is not None:
            self.scope["hibana.conn"] = self._conn  # type: ignore[typeddict-unknown-key]
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._head = 0  # the next request's head starts with its first byte

    def _check_head(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        started = self._head_started
        if started is not None:
            overdue = time.monotonic() - started - self.header_timeout
            if overdue >= 0:
                if self._head:
                    self._reject(
                        408, f"request headers did not arrive within {self.header_timeout:g}s"
                    )
                else:
                    self.transport.close()  # connected, sent nothing
                return
            delay = -overdue
        else:
            delay = self.header_timeout
        self._timer = self.loop.call_later(delay, self._check_head)

    def _reject(self, status: int, message: str) -> None:
        self._rejected = True
        body = ('{"error": "' + message + '"}').encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()


def guarded_protocol(
    max_header_bytes: int, header_timeout: float, handoff: Handoff | None = None
) -> type[HttpToolsProtocol]:
    """The protocol class with these limits, for ``uvicorn.Config(http=...)``."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "max_header_bytes": max_header_bytes,
            "header_timeout": header_timeout,
            "handoff": handoff,
        },
    )
