"""How the HTTP trigger writes a response: the ``Responder`` it writes through, its checks
of a function's headers, and a streamed body.

``HttpFront`` (``hibana.triggers.http``) makes the response; this puts it on the wire. A
``Responder`` is a connection to the worker's HTTP server (``hibana.host.http_connection``)
or, through ``AsgiResponder``, any ASGI server's ``send``. A function's headers are checked
as they are written (``response_header``): one that would frame the message or the
connection is the host's to write. A streamed body is sent as it comes, under its
invocation's deadline (``StreamDeadline``), kept to its own Content-Length, and closed when
its client goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import msgspec

from hibana.context import Invocation
from hibana.dispatcher import Outcome
from hibana.errors import Cancelled
from hibana.responses import is_token
from hibana.telemetry.logs import Logger

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

_encode = msgspec.json.encode
CONTENT_TYPE_JSON = (b"content-type", b"application/json")
#: Statuses whose responses carry no content (RFC 9110 15.3.5, 15.3.6, 15.4.5).
BODILESS = frozenset((204, 205, 304))


#: How much of a request's path an error answer quotes (and its log line).
PATH_SHOWN = 200


def shown_path(path: str) -> str:
    """``path`` as an error answer quotes it: a long one (a path of 5,000 digits) cut to
    its first ``PATH_SHOWN`` characters, and how long it was said."""
    if len(path) <= PATH_SHOWN:
        return path
    return f"{path[:PATH_SHOWN]}… ({len(path)} characters)"


def without_content(
    status: int,
    headers: list[tuple[bytes, bytes]],
    dropped: bool,
    told: set[str],
    function: str,
    log: Logger,
) -> list[tuple[bytes, bytes]]:
    """The headers of a 204 or 304 answer, which has no content (RFC 9110 15.3.5,
    15.4.5): no Content-Type, which a cache would otherwise put on the response a 304
    revalidates; the rest (ETag, Cache-Control, Last-Modified...) as given. ``dropped``:
    the function gave a body, which is not sent: the first time for each function (in
    ``told``), a warning says so."""
    if dropped and function not in told:
        told.add(function)
        log.warning(
            f"function {function!r} gave a body with status {status}, which has no content "
            "(RFC 9110): the body and its Content-Type are not sent; give status 200 to "
            "send them (said once per function)",
            status=status,
        )
    return [header for header in headers if header[0] != b"content-type"]


class Responder(Protocol):
    """Where the front writes a response: a connection to the worker's HTTP server
    (``hibana.host.http_connection``) or, through ``AsgiResponder``, any ASGI server's
    ``send``."""

    async def whole(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """A response whose body is all here."""

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """The head of a streamed response."""

    async def chunk(self, data: bytes) -> None:
        """A piece of a streamed body."""

    async def end(self, complete: bool = True) -> None:
        """The end of a streamed body. ``complete=False``: it broke off, and the client
        must be able to tell (the connection is cut without the body's end)."""


class AsgiResponder:
    """A ``Responder`` over an ASGI ``send``."""

    __slots__ = ("send",)

    def __init__(self, send: Send) -> None:
        self.send = send

    async def whole(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    async def chunk(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self, complete: bool = True) -> None:
        if not complete:
            # ASGI's one way to say so: the app raises after the response has started
            raise RuntimeError("the response stream failed; its body is cut short")
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})


async def send_json(
    out: Responder,
    status: int,
    body: dict[str, Any],
    extra: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
) -> None:
    data = _encode(body)
    await out.whole(
        status, [CONTENT_TYPE_JSON, (b"content-length", b"%d" % len(data)), *extra], data
    )


_HEADERS: dict[tuple[str, str], tuple[bytes, bytes]] = {}
#: Response headers that frame the message or the connection, or trace the invocation:
#: the host writes its own, and a function's are left out (headers copied from an
#: upstream response, say, would otherwise contradict the host's and split the response).
#: ``Connection: close`` is kept: it asks for the connection to close after this answer.
#: A streamed response's Content-Length is kept too (it is sent unchunked), and a HEAD
#: answer's with no body.
_HOST_OWNED = frozenset(
    {
        b"transfer-encoding",
        b"connection",
        b"keep-alive",
        b"date",
        b"proxy-connection",
        # the host's own on every answer: the invocation's trace and id, as logged
        b"traceparent",
        b"x-invocation-id",
    }
)
_CLOSE_KEPT = (b"connection", b"close")


#: What a header value may not hold: controls other than the tab (RFC 9110 5.5).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]").search


def response_header(name: str, value: str) -> tuple[bytes, bytes] | None:
    """A response header as bytes, checked: a name that is not an HTTP token, or a value
    with a control character (a line break could forge headers), is a ValueError; None
    for a header the host owns (``_HOST_OWNED``). The common ones (content types) are
    cached."""
    key = (name, value)
    cached = _HEADERS.get(key)
    if cached is None:
        if not is_token(name):
            raise ValueError(f"response header name {name!r} is not a valid HTTP header name")
        bad = _CONTROL(value)
        if bad is not None:
            raise ValueError(
                f"response header {name!r} has a control character ({bad.group()!r}) in its "
                f"value {value!r}: a line break could forge headers, and clients refuse "
                "the others (RFC 9110 5.5 allows tabs and visible characters)"
            )
        try:
            cached = (name.lower().encode("latin-1"), value.encode("latin-1"))
        except UnicodeEncodeError:
            raise ValueError(
                f"response header {name!r} has a value that is not Latin-1: {value!r}; "
                "percent-encode it"
            ) from None
        lowered = cached[0]
        if lowered in _HOST_OWNED:
            if lowered == b"connection" and b"close" in cached[1].lower():
                return _CLOSE_KEPT
            return None
        if lowered == b"content-length" and not cached[1].strip().isdigit():
            raise ValueError(f"response header {name!r} is not a number of bytes: {value!r}")
        if len(_HEADERS) < 256 and lowered == b"content-type":
            _HEADERS[key] = cached
    return cached


#: The messages of the cancellations a server gives a request task whose response is
#: streaming (``hibana.host.http_connection``): its client has gone, or the worker stops now.
CLIENT_GONE = "client_disconnected"
STOPPING = "shutdown"
#: ... and the one its own deadline gives it: the stream outlived its function's timeout
#: by the grace period.
OVERDUE = "timeout"


class StreamDeadline:
    """A streamed body runs under its invocation's deadline too. When it passes, the
    invocation is cancelled (reason "timeout"): a stream that watches ``ctx.cancelled``
    ends, whole. One still going ``grace`` seconds later has its task cancelled with
    ``OVERDUE``, and is cut short."""

    __slots__ = ("_inv", "_grace", "_task", "_timer")

    def __init__(self, inv: Invocation, grace: float) -> None:
        loop = asyncio.get_running_loop()
        self._inv = inv
        self._grace = grace
        self._task = asyncio.current_task()
        self._timer = loop.call_later(max(0.0, inv.deadline - time.monotonic()), self._passed)

    def _passed(self) -> None:
        self._inv.cancellation.set("timeout")
        self._timer = asyncio.get_running_loop().call_later(self._grace, self._cut)

    def _cut(self) -> None:
        if self._task is not None:
            self._task.cancel(OVERDUE)

    def cancel(self) -> None:
        self._timer.cancel()


class _WrongLength(ValueError):
    """A streamed body that is not as long as its own Content-Length says."""


async def _aclose(stream: AsyncIterator[bytes | str]) -> None:
    """Close a stream that will not be read to its end, so a generator's ``finally`` runs;
    what it raises as it closes is not the response's concern."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


async def send_stream(
    out: Responder,
    stream: AsyncIterator[bytes | str],
    log: Logger,
    inv: Invocation,
    length: int | None = None,
    *,
    unread: bool = False,
) -> Outcome | None:
    """A streamed body, each chunk as it comes, then its end. None if it all went out;
    else what stopped it: an error (the caller cuts the body short, once it has noted
    why), or a client that went away or a worker that stopped (the stream is closed, so a
    generator's ``finally`` runs, and ``inv``'s cancellation says why).

    ``length``: the body's Content-Length. A chunk that would send more is not sent, and a
    stream that ends short of it fails: either way the client must see the body cut
    short, or it would read the rest as the next response (or wait for bytes that never
    come).

    ``unread``: the response has no body to send (an answer to HEAD, a 204, 205 or 304),
    so the stream is closed unread: a HEAD of a large download or an event stream does not
    produce it only for the host to drop it."""
    if unread:
        await _aclose(stream)
        await out.end()
        return None
    sent = 0
    chunk: object = b""
    try:
        async for chunk in stream:
            if chunk:
                data = chunk.encode() if isinstance(chunk, str) else chunk
                if length is not None:
                    sent += len(data)
                    if sent > length:
                        raise _WrongLength(
                            f"the stream sent more than the {length} bytes its Content-Length "
                            f"declares ({sent} so far)"
                        )
                await out.chunk(data)
        if length is not None and sent < length:
            raise _WrongLength(
                f"the stream ended after {sent} of the {length} bytes its Content-Length declares"
            )
    except asyncio.CancelledError as exc:
        overdue = exc.args == (OVERDUE,)
        if exc.args == (CLIENT_GONE,):
            inv.cancellation.set("client_disconnected")
        elif exc.args == (STOPPING,):
            inv.cancellation.set("shutdown")
        elif not overdue:
            raise  # not ours to end here
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        await _aclose(stream)  # a generator waiting at its yield: let it clean up
        if length is not None and sent == length and exc.args == (CLIENT_GONE,):
            return None  # its client had the whole body and went: it was answered
        if overdue:
            timeout = inv.function.timeout
            late = TimeoutError(f"the stream outlived its function's timeout of {timeout:g}s")
            return Outcome("timeout", error=late)
        return Outcome("cancelled")
    except Cancelled:  # it obeyed its cancellation (ctx.raise_if_cancelled()): cut short
        await out.end(complete=False)
        return Outcome("cancelled")
    except BaseException as exc:  # SystemExit too: the stream's failure, not the worker's
        unsendable = isinstance(exc, TypeError) and not isinstance(
            chunk, bytes | bytearray | memoryview | str
        )
        if unsendable:
            # what failed is sending what it yielded: say so, not that an int has no len()
            exc = TypeError(
                f"the stream of function {inv.function.name!r} yielded "
                f"{type(chunk).__name__} {chunk!r:.60}; yield bytes or str (json.dumps(...) "
                "for data)"
            )
        log.exception("the response stream failed; the response is cut short", exc)
        if unsendable or isinstance(exc, _WrongLength):
            await _aclose(stream)  # stopped at a yield: its finally runs now
        return Outcome("error", error=exc)
    await out.end()
    return None
