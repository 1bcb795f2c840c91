"""One connection to the worker's HTTP/1.1 server: httptools parses, hibana's front answers.

Each connection is an ``HttpProtocol``. It parses requests with httptools, routes each one
as soon as its head is complete (so a request for no function never has its body kept),
reads the body within the limits, and hands the whole request to ``HttpFront.handle``.
The front answers through the protocol's ``Responder`` methods: a whole response is one
``transport.write`` (head and body together), a stream is chunked as it comes.

What a public endpoint needs, and what it costs per request:

* Limits: the head's size (431) and the body's (413, from Content-Length before any body
  arrives, from a chunk's size line before its data does, or as chunks add up), a
  deadline for the head (408), for each pause in the body (408) and for an idle
  keep-alive connection (closed). One timer per connection checks one deadline, which
  each state change moves: a float written, no timer re-armed.
* Keep-alive and pipelining: requests on one connection are answered in order; a
  connection with many waiting, or bodies waiting of the body limit's size, stops being
  read until they are answered, and the next is answered only once the client has read
  enough of the last (one that reads nothing of it for the body timeout is cut off), so
  neither requests nor answers pile up in memory.
* ``Expect: 100-continue``, HEAD (the head without the body), HTTP/1.0 (no chunks; the
  connection closes unless it asked to be kept), ``Connection: close`` either way,
  ``Upgrade`` answered as plain HTTP/1.1 (then closed), and a client that half-closes
  after its requests (they are answered, then the connection closes).
* The 502 handoff: each connection is handed to the supervisor (see ``handoff.py``) so
  it can answer for a worker that dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import urllib.parse
from collections import deque
from typing import TYPE_CHECKING, Any

import httptools

from hibana.host.board import CONN_IDLE, CONN_READING
from hibana.host.handoff import Handoff
from hibana.host.http_refusals import (
    HOST_HEADERS,
    MAX_FIELDS,
    NO_HTTP2,
    TOO_MANY_FIELDS,
    Refused,
    error_response,
    headers_over,
    line_over,
    other_target,
    unspoken,
)
from hibana.host.http_syntax import ABSOLUTE, HOST_VALUE, METHODS, VERSIONS, date_line, status_line
from hibana.triggers.http import ConnectionTable
from hibana.triggers.http_response import BODILESS
from hibana.triggers.http_response import CLIENT_GONE as _CLIENT_GONE
from hibana.triggers.http_response import STOPPING as _STOPPING
from hibana.triggers.routes import Match, remove_dot_segments

if TYPE_CHECKING:
    from hibana.host.http_server import HttpServer

try:  # the kernel's count of a socket's bytes sent and not yet acknowledged (SIOCOUTQ)
    import fcntl
    import termios

    _OUTQ: int | None = termios.TIOCOUTQ if sys.platform == "linux" else None
except (ImportError, AttributeError):  # pragma: no cover - not Linux
    _OUTQ = None

_ASGI = {"version": "3.0", "spec_version": "2.3"}
#: Complete requests waiting on one connection beyond which it is not read until they
#: are answered (a client pipelining without end cannot fill the worker's memory); and
#: the same once their bodies come to the body limit (``--max-body-bytes``), or sixteen
#: bodies each just under it would be kept.
_PIPELINE_LIMIT = 16

#: A body's pieces (one per chunk of a chunked body) kept as they come, up to this many;
#: past it, those under ``_SMALL_PIECE`` bytes are gathered in one buffer.
_PIECES = 64
_SMALL_PIECE = 1024

#: How long an idle keep-alive connection stays open once the worker stops accepting.
_DRAIN_IDLE = 0.25

#: What the connection's one deadline means when it passes.
_IDLE = 1  # nothing sent yet, or keep-alive between requests: close quietly
_HEAD = 2  # a head is arriving: 408
_BODY = 3  # a body is arriving: 408

#: The largest body joined to its head for one write; a larger one is written beside it.
_JOINED_UP_TO = 1 << 16

#: The name of every request's task (in asyncio's debug output and repr).
_TASK_NAME = "hibana-request"


def _free_slot(handoff: Handoff, board: ConnectionTable | None, conn: int) -> None:
    """Give back the slot of a closed connection whose last invocation has ended, its
    state idle: the next connection given it inherits no 502 to write."""
    if board is not None:
        board.conn_state(conn, CONN_IDLE)
    handoff.free(conn)


class _Request:
    """One request on a connection, from its head to its answer."""

    __slots__ = ("scope", "found", "chunks", "size", "keep_alive", "head", "gone", "answered")

    def __init__(self, scope: dict[str, Any], found: Any, keep_alive: bool, head: bool) -> None:
        self.scope = scope
        #: The route table's answer: a Match, the allowed methods (405) or None (404).
        self.found = found
        self.chunks: list[bytes | bytearray] = []
        self.size = 0
        self.keep_alive = keep_alive
        #: A HEAD request: the response's head is written, its body is not.
        self.head = head
        #: Resolved when the client is gone or the request is answered (``receive``).
        self.gone: asyncio.Future[None] | None = None
        self.answered = False

    async def receive(self) -> dict[str, str]:
        """ASGI's receive after the body was read: returns when the client disconnects
        (or half-closes: no one can tell the two apart) or the request has been answered
        (a mounted app waits on it)."""
        if not self.answered:
            if self.gone is None:
                self.gone = asyncio.get_running_loop().create_future()
            await self.gone
        return {"type": "http.disconnect"}

    def finish(self) -> None:
        self.answered = True
        if self.gone is not None and not self.gone.done():
            self.gone.set_result(None)


class HttpProtocol(asyncio.Protocol):
    """One client connection (see the module's docstring)."""

    def __init__(self, server: HttpServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.front = server.front
        self.lookup = server.front.table.lookup
        self.loop = loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.client: tuple[str, int] | None = None
        self.address: tuple[str, int] | None = None
        self.conn: int | None = None
        #: The board's connection table, if this connection has a slot in it (``conn``).
        self.board: ConnectionTable | None = None
        #: The slot says its request is a HEAD (``_mark_head``).
        self.head_marked = False
        #: What every request's scope on this connection starts as (``_scope``).
        self.scope_base: dict[str, Any] = {}
        # the request being parsed
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.declared = -1  # its Content-Length, -1 if none
        self.chunked_body = False  # Transfer-Encoding (chunked): a body of unknown size
        self.expect_continue = False
        #: When the current body began to be awaited (its rate is measured from there).
        self.body_from = 0.0
        self.hosts = 0  # Host header lines
        self.measure = False
        self.host_ok = b""  # the last Host value found valid on this connection
        self.bad_host: bytes | None = None  # a Host value that is not one
        self.coding: bytes | None = None  # a transfer coding other than chunked
        self.expectation: bytes | None = None  # an Expect other than 100-continue
        #: A chunk's size line was read in the packet being parsed and its data has not
        #: all come: the size it declares is checked against the limit (``_chunk_size``).
        self.new_chunk = False
        #: The body's size when that chunk's data began.
        self.chunk_from = 0
        #: The last packet of a chunked body ended a line: the next begins a size line.
        self.line_ended = False
        #: The body's size after the last packet of a chunked body that carried data, and
        #: the bytes since then, which carried none (``_chunk_size``).
        self.body_seen = -1
        self.framing = 0
        #: The HTTP version ("1.1") of the last request read; "" before the first.
        self.http_version = ""
        self.parsing: _Request | None = None
        #: Bytes of the current head read so far; None while a body is being read.
        self.head_bytes: int | None = 0
        #: The reads of the current head so far have not ended its request line.
        self.line_open = True
        #: This read began a head whose request line it ends with " HTTP/1.1" (see
        #: ``data_received``); taken by the request that begins in it, and so the current
        #: request's (``line_11``): its version known without asking the parser.
        self.read_11 = False
        self.line_11 = False
        # requests parsed and waiting, and the one being answered
        self.waiting: deque[_Request] = deque()
        #: The bytes of their bodies.
        self.waiting_bytes = 0
        self.active: _Request | None = None
        self.task: asyncio.Task[None] | None = None
        #: Chunked transfer coding for the active streamed response.
        self.chunked = False
        self.started = False
        #: A refusal to write once the requests ahead of it are answered (pipelining).
        self.refusal: bytes | None = None
        self.closing = False
        #: Closing, but an idle connection still reads the request that may be on its way.
        self.lingering = False
        self.lost = False
        self.aborted = False  # closed by the worker stopping now, not by the client
        self.paused_reading = False
        self.writable: asyncio.Future[None] | None = None
        #: The next request waits for the client to read the answers written so far.
        self.held = False
        #: While writes are paused: the check that the client reads.
        self.reading: asyncio.TimerHandle | None = None
        # the one deadline and the timer that watches it
        self.deadline: float | None = None
        self.on_deadline = _IDLE
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0

    # -- connection ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        server = self.server
        server.connections.add(self)
        if len(server.connections) >= server.crowded and not server.crowding:
            server.warn_crowded()
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.client = (str(peer[0]), int(peer[1]))
        local = transport.get_extra_info("sockname")
        if isinstance(local, tuple):
            self.address = (str(local[0]), int(local[1]))
        self._expect(_IDLE, self.server.header_timeout)
        handoff = self.server.handoff
        if handoff is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                self.conn = handoff.opened(sock.fileno())
                if self.conn is not None:
                    self.board = self.front.connections
        # a copy of a dict is cheaper to make than a dict of as many entries, and a
        # request's scope differs from this one in six of them
        self.scope_base = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": "1.1",
            "server": self.address,
            "client": self.client,
            "scheme": "http",
            "method": "GET",
            "root_path": "",
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "headers": [],
        }
        if self.conn is not None:
            self.scope_base["hibana.conn"] = self.conn

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.head_marked:
            self._mark_head(False)  # the next connection given the slot may ask a GET
        server = self.server
        server.connections.discard(self)
        if server.crowding and len(server.connections) <= server.uncrowded:
            server.crowding = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.reading is not None:
            self.reading.cancel()
            self.reading = None
        handoff = self.server.handoff
        if self.conn is not None and handoff is not None:
            task, board, slot = self.task, self.board, self.conn
            if task is None:
                if board is not None:
                    # a body it was reading (``_reading``) is no one's now: the next
                    # connection given the slot must not inherit a 503 to write
                    board.conn_state(slot, CONN_IDLE)
                handoff.closed(slot)
            else:
                # its invocation may run on, writing its state to the slot: the slot goes
                # to another connection once it has ended, or a worker that dies would have
                # the supervisor answer 502 for it there (or answer nothing for the other's)
                handoff.closed(slot, free=False)
                task.add_done_callback(lambda _: _free_slot(handoff, board, slot))
            self.conn = None
            self.board = None
        active = self.active
        if active is not None and not self.aborted:
            # nobody to answer: its answer, if it finishes, is dropped
            self._client_gone(active)
        for req in (active, *self.waiting):
            if req is not None:
                req.finish()
        self.waiting.clear()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def eof_received(self) -> bool:
        """The client has sent all it will. A request it sent before is still answered:
        a client may half-close and wait for the answer (RFC 9112 9.6: ``nc -N``,
        scripts). Its function is told, as when a client goes (no one can tell the two
        apart until the answer is written), and a stream stops."""
        active = self.active
        if active is None:
            if self.waiting:  # held until the client reads what it was sent (``_answered``)
                self.closing = True
                return True
            return False  # nothing asked (or a request cut off): the transport closes
        self.closing = True  # the answers to what was read, then the close
        self._client_gone(active)
        return True

    def _client_gone(self, active: _Request) -> None:
        """Tell ``active``'s function its client is gone (it may stop early); a response
        being streamed stops at once."""
        cancellation = active.scope.get("hibana.cancellation")
        if cancellation is not None:
            cancellation.set("client_disconnected")
        active.finish()  # a mounted app waiting on receive() gets http.disconnect
        if self.started and self.task is not None and not self.task.done():
            self.task.cancel(_CLIENT_GONE)

    def pause_writing(self) -> None:
        self.writable = self.loop.create_future()
        # a client that stops reading is cut off, or its answers would stay in memory
        self.reading = self.loop.call_later(
            self.server.body_timeout, self._check_reading, self._unsent()
        )

    def _unsent(self) -> int:
        """Bytes written and not yet taken by the client: the transport's buffer, and the
        kernel's send queue where it tells (Linux), which drains between the transport's
        wake-ups (a third of a send buffer of megabytes each) as a slow client reads."""
        unsent = self.transport.get_write_buffer_size()
        if _OUTQ is not None:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError, ValueError):
                    queued = fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0")
                    unsent += int.from_bytes(queued, sys.byteorder)
        return unsent

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None
        if self.reading is not None:
            self.reading.cancel()
            self.reading = None
        if self.held and not self.lost:  # the next answer waited for the client to read
            self.held = False
            self._next()

    def _check_reading(self, size: int) -> None:
        """While writes are paused: cut the connection off if the client read nothing of
        its answers for ``body_timeout`` (what is left to write is ``size`` bytes or more)."""
        self.reading = None
        if self.writable is None or self.lost:
            return  # it has gone
        left = self._unsent()
        if left < size:  # reading, however slowly
            self.reading = self.loop.call_later(self.server.body_timeout, self._check_reading, left)
            return
        client = self.client[0] if self.client is not None else None
        self.server.log.info(
            "connection cut off: its client read none of its answer",
            seconds=self.server.body_timeout,
            unsent_bytes=left,
            client=client,
        )
        self.transport.abort()

    def shutdown(self) -> None:
        """Close once the requests read are answered, the last answer saying
        ``Connection: close``. An idle keep-alive connection gets ``_DRAIN_IDLE`` seconds
        first: a request already on its way is answered, so a busy client sees a clean
        close instead of a connection reset under the request it just sent."""
        self.closing = True
        if self.active is None and not self.waiting and self.parsing is None:
            self.lingering = True
            if not self.head_bytes:  # else a head is arriving: answered (or timed out) first
                self._expect(_IDLE, _DRAIN_IDLE)
        elif self.active is None and not self.waiting and self.front.draining:
            # a body arriving for a request the drain will not run: its 503 now, not once
            # the whole body has come (the connection was cut before it could)
            req = self.parsing
            assert req is not None
            self.parsing = None
            self.deadline = None
            self._answer(req)

    def abort(self) -> None:
        self.aborted = True
        if self.task is not None and not self.task.done():
            self.task.cancel(_STOPPING)
        self.transport.close()

    # -- reading ---------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.refusal is not None or (
            self.closing and not self.lingering and self.parsing is None
        ):
            # refused, or shutting down: what was read is answered, nothing more (but the
            # rest of a body being read, or its request would never be answered)
            return
        head = self.head_bytes
        if head is not None:
            fresh = head == 0
            if fresh:  # a new head starts
                self._expect(_HEAD, self.server.header_timeout)
                self.line_open = True
            head += len(data)
            self.head_bytes = head
            limit = self.server.max_header_bytes
            if head > limit:
                self._held_to_limit(data, head, limit)
                return
            if self.line_open:
                # find, not in: bytes' `in` tries its operand as an int first, and the
                # TypeError it makes and drops costs more than the search (as below)
                end = data.find(b"\n")
                self.line_open = end == -1
                # a head this read begins, its request line the first line in it: the line
                # ends with the version as the parser reads it (get_http_version formats it
                # anew for each request, a str.format)
                self.read_11 = fresh and end >= 10 and data[end - 10 : end] == b" HTTP/1.1\r"
        try:
            self.parser.feed_data(data)
            if self.chunked_body:
                self._chunk_size(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._unparsed(data, exc)

    def _unparsed(self, data: bytes, exc: Exception) -> None:
        """Answer the read ``data`` the parser stopped in with ``exc``: a refusal, or
        nothing (an upgrade, answered as plain HTTP/1.1; a request already refused)."""
        if isinstance(exc, httptools.HttpParserUpgrade):
            return  # answered as plain HTTP/1.1, then closed (see on_headers_complete)
        if isinstance(exc, httptools.HttpParserCallbackError):
            if isinstance(exc.__context__, Refused):
                return  # answered (``_refuse``)
            # one of the callbacks above failed: hibana's fault, not the request's
            failure = exc.__context__ if isinstance(exc.__context__, Exception) else exc
            self.server.log.exception("the HTTP server failed to read a request", failure)
            if self.refusal is None and not self.transport.is_closing():
                self._refuse(500, "the host failed to read this request")
            return
        if self.refusal is None and not self.transport.is_closing():
            if not self.http_version and data.startswith(b"PRI * HTTP/2.0"):
                # HTTP/2 with prior knowledge (h2c): say so, not "Pause on PRI"
                self._refuse(505, NO_HTTP2)
            elif str(exc) == "Invalid HTTP version":
                # llhttp reads 0.9, 1.0, 1.1 and 2.0 alone: HTTP/1.2 or 3.0 is no
                # malformed request but a version not spoken (RFC 9110 15.6.6)
                found = [v for v in VERSIONS(data) if v != b"1.1" and v != b"1.0"]
                self._refuse(505, unspoken(found[0].decode() if found else ""))
            else:
                self._refuse(400, f"invalid HTTP request: {exc}")

    def _over_limit(self, data: bytes, head: int, limit: int) -> tuple[int, str]:
        """The refusal of a head over ``limit`` bytes: 414 if its request line alone is
        (RFC 9112 3), 431 if its header fields are; ``data`` ends its first ``head`` bytes."""
        if self.line_open:
            end = data.find(b"\n")
            if end == -1 or head - len(data) + end > limit:
                return 414, line_over(limit)
        return 431, headers_over(limit)

    def _held_to_limit(self, data: bytes, head: int, limit: int) -> None:
        """Read a packet that takes the head past ``limit`` bytes (``data``, the last of
        its ``head`` bytes so far): the parser reads up to the limit, and the rest once
        the head has ended there (the rest is the body, which has a limit of its own, or
        the next request); else the head is refused. Where the head ends is the parser's
        to say: its blank line may have begun in the packet before."""
        cut = len(data) - (head - limit)
        self.head_bytes = head - len(data)
        self.data_received(data[:cut])
        if self.head_bytes == limit:  # the head goes on past the limit
            if self.refusal is None:
                self._refuse(*self._over_limit(data, head, limit))
        elif self.refusal is None:
            self.data_received(data[cut:])

    def on_message_begin(self) -> None:
        #: This head began inside a read that held the end of the one before (pipelining):
        #: the bytes counted as they arrive missed its start, so it is measured whole.
        self.measure = self.head_bytes == 0
        if self.measure:
            # and it has begun: once the answers ahead of it are written, the rest of it
            # has the header timeout to arrive (``_next``), not the keep-alive one
            self.head_bytes = 1
        # the request line checked is this request's if its read began its head; one that
        # began in an earlier read ends its head (on_headers_complete) before another begins
        self.line_11 = self.read_11
        self.url = b""
        self.headers = []
        self.declared = -1
        self.chunked_body = False
        self.expect_continue = False
        self.hosts = 0
        self.bad_host = None
        self.coding = None
        self.expectation = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_bytes is None:
            # a trailer field (after a chunked body): RFC 9110 6.5.1, never merged into
            # the header section; the checks on Host, proxies' headers and the rest ran
            # on the head alone, so a trailer could forge what they let through
            return
        if len(self.headers) == MAX_FIELDS:
            self._refuse(431, TOO_MANY_FIELDS)
            raise Refused
        name = name.lower()
        value = value.rstrip(b" \t")  # RFC 9110 5.5: no part of the value; llhttp keeps it
        if name == b"content-length":
            try:
                self.declared = int(value)
            except ValueError:
                self.declared = -2
        elif name == b"transfer-encoding":
            self.chunked_body = True
            if value.lower() != b"chunked" and self.coding is None:
                self.coding = value  # httptools checks that chunked comes last, not the rest
        elif name == b"expect":
            if value.lower() == b"100-continue":
                self.expect_continue = True
            else:
                self.expectation = value
        elif name == b"host":
            self.hosts += 1
            if value != self.host_ok:
                if HOST_VALUE(value):
                    self.host_ok = value
                else:
                    self.bad_host = value
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.refusal is not None:
            return  # the rest of a packet after a refusal: nothing more is answered
        self.head_bytes = None
        self.read_11 = False
        parser = self.parser
        raw = parser.get_method()
        if self.measure:
            # as a head counted as it arrives is: "METHOD TARGET HTTP/1.1\r" for the line,
            # each field as "name: value\r\n", and the blank line
            limit = self.server.max_header_bytes
            line = len(raw) + len(self.url) + 11
            if line > limit:
                self._refuse(414, line_over(limit))
                return
            if line + 3 + sum(len(n) + len(v) + 4 for n, v in self.headers) > limit:
                self._refuse(431, headers_over(limit))
                return
        method = METHODS.get(raw) or raw.decode("ascii")
        url = self.url
        headers = self.headers
        # each request's own: a connection may carry HTTP/1.0 and 1.1 requests both
        version = self.http_version = "1.1" if self.line_11 else parser.get_http_version()
        if version != "1.1" and version != "1.0":
            self._refuse(505, unspoken(version))
            return
        if url[:1] == b"/":
            raw_path, _, query = url.partition(b"?")
        else:  # absolute form (through a proxy), "*", or no target hibana serves
            refused = other_target(method, url)
            if refused is not None:
                self._refuse(*refused)
                return
            if url == b"*":
                raw_path, query = url, b""
            else:
                _, authority, raw_path, query = ABSOLUTE(url).groups()  # type: ignore[union-attr]
                raw_path, query = raw_path or b"/", query or b""
                # RFC 9112 3.2.2: the target's authority is the host asked for, not Host;
                # an empty port is none, the scheme's default (RFC 3986 3.2.3)
                authority = authority.removesuffix(b":")
                headers = [(k, v) for k, v in headers if k != b"host"] + [(b"host", authority)]
        if url.find(b"#") != -1:
            self._refuse(
                400, "the request target has a fragment (#...), which clients keep to themselves"
            )
            return
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = urllib.parse.unquote(path)
            if "\x00" in path:
                # a NUL ends a string in C, and so a file name or a query built from a
                # route parameter, where what came after it is silently lost
                self._refuse(400, "the path holds %00 (NUL), which no path may hold")
                return
        if "/." in path:
            resolved = remove_dot_segments(path)
            if resolved is None:
                self._refuse(400, f"the path {path[:200]!r} climbs above the root with '..'")
                return
            path = resolved
        scope = self.scope_base.copy()
        scope["http_version"] = version
        scope["method"] = method
        scope["path"] = path
        scope["raw_path"] = raw_path
        scope["query_string"] = query
        scope["headers"] = headers
        keep_alive = parser.should_keep_alive() and not parser.should_upgrade()
        self.parsing = _Request(scope, self.lookup(method, path), keep_alive, method == "HEAD")
        declared = self.declared
        limit = self.server.max_body_bytes
        if declared == -2:
            self._refuse(400, "Content-Length is not a number")
        elif self.hosts != 1 and (self.hosts or version == "1.1"):
            # RFC 9112 3.2: which site is asked for must be plain, or a proxy in front
            # and hibana could each read it their own way
            self._refuse(400, HOST_HEADERS)
        elif self.bad_host is not None:
            host = self.bad_host.decode("latin-1")
            self._refuse(400, f"the Host header {host!r} is not a host name, address or port")
        elif self.coding is not None:
            coding = self.coding.decode("latin-1")
            self._refuse(501, f"transfer coding {coding!r} is not supported; send chunked alone")
        elif self.chunked_body and version == "1.0":
            # RFC 9112 6.1: faulty framing; a proxy of HTTP/1.0 in front reads no chunks,
            # so it and hibana would split the connection into requests two ways
            self._refuse(
                400,
                "an HTTP/1.0 request cannot carry Transfer-Encoding (RFC 9112 6.1): send "
                "HTTP/1.1, or the body with a Content-Length",
            )
        elif self.expectation is not None:
            # RFC 9110 10.1.1: an expectation the server cannot meet is refused, not
            # ignored (the client would go on as if it had been met)
            said = self.expectation.decode("latin-1")[:200]
            self._refuse(417, f"Expect: {said!r} is not met here; the only one is 100-continue")
        elif declared > limit:
            self._refuse(
                413,
                f"request body of {declared} bytes is over the limit of {limit} "
                "(the host's --max-body-bytes)",
            )
        elif (declared > 0 or self.chunked_body) and parser.should_upgrade():
            # the parser reads what follows the head of an upgrade as the new protocol's,
            # not as a body: refused, rather than run with its body lost
            self._refuse(
                400,
                "a request that asks to upgrade the protocol (Upgrade) cannot carry a body "
                "here; send it without Upgrade (curl: --http1.1, not --http2)",
            )
        elif declared > 0 or self.chunked_body:
            self.body_seen = -1  # the packet that ends the head is never counted as framing
            if version == "1.0":
                self.expect_continue = False  # RFC 9110 10.1.1: no 1xx to an HTTP/1.0 client
            if self.expect_continue and (self.active is not None or self.waiting):
                # the client waits for the 100 Continue, which goes (and the body's time
                # starts) once the requests ahead of it are answered; or sends the body
                # before, tired of waiting: its rate is measured from its first bytes
                self.deadline = None
                self.body_from = -1.0
                return
            self._expect(_BODY, self.server.body_timeout)
            if self.active is None and not self.waiting:
                self._reading()
                if self.expect_continue:
                    self._continue()
        else:
            self.deadline = None

    def _reading(self) -> None:
        """The body of the request being read, the first on the connection still to be
        answered, is awaited: if it is a function's, a worker that dies before it is read
        leaves the supervisor a 503 to write (the function was not run), not an empty
        reply. Its invocation's start overwrites the mark, and so does the connection's
        close; any other answer closes the connection (a refusal, or a drain's 503)."""
        req = self.parsing
        if self.board is not None and type(req.found) is Match:  # type: ignore[union-attr]
            if req.head is not self.head_marked:  # type: ignore[union-attr]
                self._mark_head(req.head)  # type: ignore[union-attr]
            self.board.conn_state(self.conn, CONN_READING)  # type: ignore[arg-type]

    def _mark_head(self, head: bool) -> None:
        """Say in the connection's slot whether its request is a HEAD: the supervisor's
        502 or 503 for it, if the worker dies, then has no body (RFC 9110 9.3.2)."""
        self.head_marked = head
        if self.board is not None:
            self.board.conn_head(self.conn, head)  # type: ignore[arg-type]

    def _continue(self) -> None:
        """Answer the ``Expect: 100-continue`` of the request being read, the first on the
        connection still to be answered: 100 Continue if a function takes its body."""
        self.expect_continue = False
        req = self.parsing
        assert req is not None
        if type(req.found) is Match and not self.front.draining:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        else:
            # no function takes it (or the worker is shutting down): the 404, 405 or 503
            # now, and the body the client waits to send is spared (RFC 9110 10.1.1); the
            # connection closes
            self.parsing = None
            self.closing = True
            self.deadline = None
            self._answer(req)

    def on_body(self, body: bytes) -> None:
        req = self.parsing
        if req is None or self.refusal is not None:
            return
        req.size += len(body)
        limit = self.server.max_body_bytes
        if req.size > limit:
            self._refuse(
                413,
                f"request body is over the limit of {limit} bytes (the host's --max-body-bytes)",
            )
            return
        if type(req.found) is Match:  # a body for no function (404, 405) is not kept
            chunks = req.chunks
            if len(chunks) < _PIECES or len(body) >= _SMALL_PIECE:
                chunks.append(body)
            elif type(chunks[-1]) is bytearray:
                chunks[-1] += body
            else:
                # a chunked body of tiny chunks: an object each held 27 times the body's
                # size (2-byte chunks; 280 MB for the default limit), so they go in one
                chunks.append(bytearray(body))
        server = self.server
        now = self.loop.time()
        self.deadline = now + server.body_timeout
        if self.body_from < 0:  # its 100 Continue not sent yet (``on_headers_complete``)
            self.body_from = now
            self.on_deadline = _BODY
        took = now - self.body_from
        if took > server.body_timeout and req.size < server.min_body_rate * took:
            # a pause each short of the timeout, a byte each: the connection held for ever
            self._refuse(
                408,
                f"the request body arrives at {req.size / took:.0f} bytes/s, under the "
                f"{server.min_body_rate} bytes/s a body taking over {server.body_timeout:g}s "
                "must average",
            )

    def on_chunk_header(self) -> None:
        req = self.parsing
        if req is not None:
            self.new_chunk = True
            self.chunk_from = req.size

    def on_chunk_complete(self) -> None:
        self.new_chunk = False  # all its data came: counted as it did (``on_body``)

    def _chunk_size(self, data: bytes) -> None:
        """After a packet of a chunked body: refuse (431) packets carrying no data that
        add up to over the head's limit (a trailer field without end); and refuse at once
        (413) a chunk whose size line, read in ``data``, says more than the limit has room
        for, rather than wait for its bytes and count them. ``data`` then ends inside the
        chunk's data, of which the ``got`` bytes at its end came so far; its size line ends
        just before them. One whose size line began in an earlier packet is left to the
        count."""
        line_ended = self.line_ended
        self.line_ended = data.endswith(b"\n")
        req = self.parsing
        if req is None or self.refusal is not None:
            self.new_chunk = False
            return
        if req.size != self.body_seen:
            self.body_seen = req.size
            self.framing = 0
        else:
            # packets of no data: size lines, extensions, or the trailer fields, which no
            # other limit holds and httptools gathers in memory, copying each field's bytes
            # so far for each packet of it
            self.framing += len(data)
            limit = self.server.max_header_bytes
            if self.framing > limit:
                self._refuse(
                    431,
                    f"the chunked body's trailer fields (or size lines) are over the limit "
                    f"of {limit} bytes (the host's --max-header-bytes)",
                )
                return
        if not self.new_chunk:
            return
        self.new_chunk = False
        got = req.size - self.chunk_from
        end = len(data) - got  # where the chunk's data began: its size line ends there
        if end < 2 or data[end - 2 : end] != b"\r\n":
            return  # the packet ended after its data, in the CRLF; or split the size line's
        start = data.rfind(b"\n", 0, end - 2) + 1
        if start == 0 and not line_ended:
            return  # the size line began in an earlier packet
        try:
            size = int(data[start : end - 2].partition(b";")[0], 16)
        except ValueError:
            return
        limit = self.server.max_body_bytes
        if self.chunk_from + size > limit:
            self._refuse(
                413,
                f"a chunk of {size} bytes takes the request body over the limit of {limit} bytes "
                "(the host's --max-body-bytes)",
            )

    def on_message_complete(self) -> None:
        req = self.parsing
        if req is None or self.refusal is not None:
            return
        self.parsing = None
        self.head_bytes = 0
        self.deadline = None  # the dispatcher has the request's deadline now
        if self.active is None and not self.waiting and self.writable is None:
            self._answer(req)
        elif self.active is None and not self.waiting:
            # the client is behind with the last answer: this one waits until it reads
            self.waiting.append(req)
            self.waiting_bytes = req.size
            self.held = True
        else:
            self.waiting.append(req)
            self.waiting_bytes += req.size
            if (
                len(self.waiting) >= _PIPELINE_LIMIT
                or self.waiting_bytes >= self.server.max_body_bytes
            ) and not self.paused_reading:
                self.paused_reading = True
                self.transport.pause_reading()

    # -- answering -------------------------------------------------------------------------
    def _answer(self, req: _Request) -> None:
        if req.head is not self.head_marked:
            self._mark_head(req.head)
        self.active = req
        self.started = False
        # a Task of its own making, named: the loop's create_task has each one format a
        # "Task-<n>" name first, which costs more than the request's route lookup
        self.task = asyncio.Task(self._run(req), loop=self.loop, name=_TASK_NAME)

    async def _run(self, req: _Request) -> None:
        chunks = req.chunks
        # most requests have no body: b"" itself, not the join of an empty list
        # (one piece is bytes: a buffer of small ones comes after ``_PIECES`` of them)
        body = (chunks[0] if len(chunks) == 1 else b"".join(chunks)) if chunks else b""
        try:
            await self.front.handle(req.found, req.scope, body, req.receive, self)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            # the worker stopping now (abort), or a cancellation nothing caught: either
            # way no answer comes, and a connection left open would wait for one for ever
            if not self.started and not self.lost and not self.aborted:
                self.transport.write(
                    error_response(500, "the host failed to answer this request", None, req.head)
                )
            self.transport.close()
            raise
        except Exception as exc:
            self.server.log.exception("the HTTP front failed on a request", exc)
            if not self.started and not self.lost:
                self.transport.write(
                    error_response(500, "the host failed to answer this request", None, req.head)
                )
            # its 500 says ``connection: close`` (and a stream it broke is cut short): no
            # request pipelined behind it is answered
            req.keep_alive = False
        self._answered(req)

    def _answered(self, req: _Request) -> None:
        req.finish()
        self.active = None
        self.task = None
        if self.lost:
            return
        if (self.closing and not self.waiting) or not req.keep_alive:
            self.transport.close()
            return
        if self.writable is not None and self.waiting:
            # the client is behind with this answer: the next waits until it reads (a
            # client pipelining requests it never reads cannot fill the worker's memory)
            self.held = True
            return
        self._next()

    def _next(self) -> None:
        """What the connection does once an answer is written: the next request's."""
        if self.waiting:
            req = self.waiting.popleft()
            self.waiting_bytes -= req.size
            self._answer(req)
            if (
                self.paused_reading
                and len(self.waiting) < _PIPELINE_LIMIT // 2
                and self.waiting_bytes < self.server.max_body_bytes
            ):
                self.paused_reading = False
                self.transport.resume_reading()
                if self.deadline is not None and self.on_deadline != _IDLE:
                    # a head or body cut off by the pause: its time starts again now
                    self._expect(self.on_deadline, self._timeout(self.on_deadline))
            return
        if self.refusal is not None:
            self.transport.write(self.refusal)
            self.transport.close()
            return
        if self.parsing is not None:  # the next request's head is in; its body may follow
            self._expect(_BODY, self.server.body_timeout)
            self._reading()
            if self.expect_continue:
                self._continue()
        elif self.head_bytes:
            self._expect(_HEAD, self.server.header_timeout)
        else:
            self._expect(_IDLE, self.server.keep_alive_timeout)

    def _head_bytes(self, status: int, headers: list[tuple[bytes, bytes]]) -> list[bytes]:
        self.started = True
        parts = [status_line(status), date_line()]
        req = self.active
        assert req is not None
        for name, value in headers:
            if name == b"connection" and value.lower() == b"close":
                req.keep_alive = False
                continue
            parts += (name, b": ", value, b"\r\n")  # joined once, with the rest
        if not req.keep_alive or (self.closing and not self.waiting):
            req.keep_alive = False
            parts.append(b"connection: close\r\n")
        elif req.scope["http_version"] == "1.0":
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        return parts

    async def whole(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """A response whose body is all here: one write."""
        if self.lost or self.started:  # started: answered already (``answer_stuck``)
            return
        parts = self._head_bytes(status, headers)
        req = self.active
        if body and not req.head:  # type: ignore[union-attr]
            parts.append(body)
            if len(body) > _JOINED_UP_TO:
                # head and body apart (uvloop: one writev, no copy); joined, a 100 MB
                # body was a second 100 MB in the worker while it was sent
                self.transport.writelines(parts)
                return
        self.transport.write(b"".join(parts))

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """The head of a streamed response; chunked unless it carries a Content-Length."""
        if self.lost or self.started:
            return
        req = self.active
        assert req is not None
        framed = any(name == b"content-length" for name, _ in headers)
        self.chunked = False
        if status in BODILESS:
            req.head = True  # whatever the stream yields, it has no content to carry
        elif not framed and not req.head:
            if req.scope["http_version"] == "1.0":
                req.keep_alive = False  # no chunks in HTTP/1.0: the close ends the body
            else:
                self.chunked = True
                headers = [*headers, (b"transfer-encoding", b"chunked")]
        self.transport.write(b"".join(self._head_bytes(status, headers)))

    async def chunk(self, data: bytes) -> None:
        """A piece of a streamed body; waits while the client is behind."""
        if self.lost or self.transport.is_closing():
            # the client has gone (its connection_lost may be queued behind this task):
            # a turn of the loop, for the cancellation it gives the task to land, even in
            # a stream that never awaits, which would run to its end writing to no one
            await asyncio.sleep(0)
            return
        if self.active is None or self.active.head or not data:
            return
        if self.chunked:
            self.transport.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.transport.write(data)
        if self.writable is not None:
            await self.writable

    async def end(self, complete: bool = True) -> None:
        """The end of a streamed body; one that broke off (``complete=False``) gets no
        last chunk, and the connection is closed, so the client sees it cut short."""
        if not complete:
            self.active.keep_alive = False  # type: ignore[union-attr]
        elif self.chunked and not self.lost:
            self.transport.write(b"0\r\n\r\n")
        self.chunked = False

    # -- limits ----------------------------------------------------------------------------
    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` and close: now, or after the requests ahead of this one.
        A line says so: no function ran, so no invocation line will."""
        # a HEAD's, once its head is read (and its method known): no body either
        head = self.head_bytes is None and self.parser.get_method() == b"HEAD"
        self.refusal = error_response(status, message, None, head)
        client = self.client[0] if self.client is not None else None
        self.server.log.info("request refused", status=status, error=message, client=client)
        self.parsing = None
        self.deadline = None
        if self.active is None and not self.waiting:
            if self.board is not None:
                self.board.conn_state(self.conn, CONN_IDLE)  # type: ignore[arg-type]  # a body's
            self.transport.write(self.refusal)
            self.transport.close()
        elif not self.paused_reading:
            self.paused_reading = True
            self.transport.pause_reading()

    def _expect(self, what: int, seconds: float) -> None:
        """Set the connection's deadline ``seconds`` from now."""
        now = self.loop.time()
        if what == _BODY:
            self.body_from = now
        deadline = now + seconds
        self.deadline = deadline
        self.on_deadline = what
        if self.timer is None or deadline < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer_at = deadline
            self.timer = self.loop.call_at(deadline, self._check_deadline)

    def _timeout(self, what: int) -> float:
        server = self.server
        return server.header_timeout if what == _HEAD else server.body_timeout

    def _check_deadline(self) -> None:
        self.timer = None
        deadline = self.deadline
        if deadline is None or self.lost:
            return  # a request is being answered: the dispatcher has its deadline
        if self.loop.time() < deadline:
            self.timer_at = deadline
            self.timer = self.loop.call_at(deadline, self._check_deadline)
            return
        if self.paused_reading and self.on_deadline != _IDLE and self.refusal is None:
            # the host stopped reading (requests pipelined ahead): what has not arrived
            # is held back by it, not by the client; the time starts again on resuming
            self._expect(self.on_deadline, self._timeout(self.on_deadline))
            return
        self.deadline = None
        if self.on_deadline == _IDLE:
            self.transport.close()
        elif self.on_deadline == _HEAD:
            timeout = self.server.header_timeout
            self._refuse(408, f"request headers did not arrive within {timeout:g}s")
        else:
            timeout = self.server.body_timeout
            self._refuse(408, f"the request body did not arrive within {timeout:g}s")
