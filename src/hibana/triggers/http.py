"""The HTTP trigger: an ASGI app that turns each request into an Invocation.

It routes, reads the body within limits, starts or continues the trace, hands the
Invocation to the dispatcher and turns the Outcome into the response. Answers that
hibana gives itself (404, 405, 413, 429, 500, 503, 504) are JSON bodies that name the
problem, and carry the invocation id when there was an invocation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import msgspec

from hibana.app import App, HttpTrigger
from hibana.context import Context, Invocation, Outbox
from hibana.dispatcher import Dispatcher, Outcome
from hibana.errors import HTTPError
from hibana.requests import Request
from hibana.responses import Response, to_response
from hibana.secrets import Secrets
from hibana.telemetry.logs import Logger, LogSink, timestamp
from hibana.telemetry.trace import continue_or_start, new_invocation_id
from hibana.triggers.routes import Match, RouteTable

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_encode = msgspec.json.encode
_JSON = (b"content-type", b"application/json")


class _BodyError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail


async def _send_json(
    send: Send,
    status: int,
    body: dict[str, Any],
    extra: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
) -> None:
    data = _encode(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON, (b"content-length", str(len(data)).encode()), *extra],
        }
    )
    await send({"type": "http.response.body", "body": data})


#: The connection table's state for "the response is being written" (hibana.host.board).
_CONN_RESPONDING = 2


_HEADERS: dict[tuple[str, str], tuple[bytes, bytes]] = {}
#: The numeric level of "info" (hibana.telemetry.logs); invocation lines are info.
_INFO = 20


def _header(name: str, value: str) -> tuple[bytes, bytes]:
    """A response header as ASGI wants it; the common ones (content types) are cached."""
    key = (name, value)
    cached = _HEADERS.get(key)
    if cached is None:
        cached = (name.lower().encode("latin-1"), value.encode("latin-1"))
        if len(_HEADERS) < 256 and name.lower() == "content-type":
            _HEADERS[key] = cached
    return cached


async def _send_stream(send: Send, stream: AsyncIterator[bytes], log: Logger) -> None:
    """A streamed body, each chunk as it comes; the end, whatever happened."""
    try:
        async for chunk in stream:
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except Exception as exc:
        log.exception("the response stream failed; the response is cut short", exc)
    finally:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class ConnectionTable(Protocol):
    """The board row's connection table (see hibana.host.board)."""

    def conn_busy(self, conn: int, invocation_id: str) -> None: ...
    def conn_state(self, conn: int, state: int) -> None: ...


class HttpFront:
    """The ASGI callable a worker serves."""

    def __init__(
        self,
        app: App,
        dispatcher: Dispatcher,
        sink: LogSink,
        *,
        max_body_bytes: int,
        body_timeout: float,
    ) -> None:
        self.table = RouteTable(
            (spec.trigger.route, spec.trigger.methods, spec)
            for spec in app.functions
            if isinstance(spec.trigger, HttpTrigger)
        )
        self.trusted_proxies = app.trusted_proxies
        self.dispatcher = dispatcher
        self.sink = sink
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        #: Set on SIGTERM: new requests get 503 with Retry-After and Connection: close.
        self.draining = False
        #: ``ctx.enqueue``'s way to the store, when the app has queues.
        self.outbox: Outbox | None = None
        #: ``ctx.secrets`` of each function that names some.
        self.secrets: dict[str, Secrets] = {}
        #: This worker's board row: which connection runs which invocation, so the
        #: supervisor can answer 502 for them if the worker dies.
        self.connections: ConnectionTable | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        if self.draining:
            await _send_json(
                send,
                503,
                {"error": "this host is shutting down; retry the request"},
                [(b"retry-after", b"1"), (b"connection", b"close")],
            )
            return
        method = scope["method"]
        found = self.table.lookup(method, scope["path"])
        if type(found) is not Match:
            if found is None:
                await _send_json(
                    send, 404, {"error": f"no function serves {method} {scope['path']}"}
                )
            else:
                allow = ", ".join(found)  # type: ignore[arg-type]
                await _send_json(
                    send,
                    405,
                    {"error": f"{scope['path']} does not allow {method}; it allows {allow}"},
                    [(b"allow", allow.encode())],
                )
            return
        try:
            body = await self._read_body(scope, receive)
        except _BodyError as exc:
            await _send_json(send, exc.status, {"error": exc.detail}, [(b"connection", b"close")])
            return
        await self._invoke(found, scope, body, receive, send)

    async def _invoke(
        self, match: Match, scope: Scope, body: bytes, receive: Receive, send: Send
    ) -> None:
        spec = match.spec
        traceparent = None
        for name, value in scope["headers"]:
            if name == b"traceparent":
                traceparent = value.decode("latin-1")
                break
        started = time.monotonic()
        deadline = started + spec.timeout
        invocation_id = None
        given = scope.get("hibana.given")  # set by a caller that has them (the Lambda adapter)
        if given is not None:
            traceparent = traceparent or given.get("traceparent")
            invocation_id = given.get("invocation_id")
            deadline = min(deadline, given.get("deadline", deadline))
        trace = continue_or_start(traceparent)
        inv = Invocation(
            invocation_id or new_invocation_id(),
            spec,
            Request(scope, body, match.params, self.trusted_proxies, receive),
            trace,
            deadline,
        )
        fields: dict[str, Any] = {
            "invocation_id": inv.id,
            "function": spec.name,
            "trace_id": trace.trace_id,
            "span_id": trace.span_id,
        }
        log = Logger(self.sink, fields)
        ctx = Context(inv, log, self.outbox, self.secrets.get(spec.name))
        table = self.connections
        conn = scope.get("hibana.conn") if table is not None else None
        if conn is not None:
            table.conn_busy(conn, inv.id)  # type: ignore[union-attr]
        outcome = await self.dispatcher.run(inv, ctx)
        if conn is not None:
            # the answer is ours from here: a worker that dies now gets no 502 written over it
            table.conn_state(conn, _CONN_RESPONDING)  # type: ignore[union-attr]
        response, extra = self._respond(outcome, inv, log)
        headers = [_header(k, v) for k, v in response.headers]
        stream = response.stream
        if stream is None:
            headers.append((b"content-length", str(len(response.body)).encode()))
        headers.append((b"traceparent", trace.traceparent.encode()))
        headers.append((b"x-invocation-id", inv.id.encode()))
        try:
            await send(
                {"type": "http.response.start", "status": response.status, "headers": headers}
            )
            if stream is None:
                await send({"type": "http.response.body", "body": response.body})
            else:
                await _send_stream(send, stream, log)
        finally:
            failed = response.status >= 500
            if failed or self.sink.min_level <= _INFO:
                # built whole here rather than through Logger.log: one dict, no copies
                line: dict[str, Any] = {
                    "ts": timestamp(),
                    "level": "error" if failed else "info",
                    "msg": "invocation",
                    **fields,
                    "duration_ms": round((time.monotonic() - started) * 1000, 3),
                    "outcome": outcome.kind,
                    "status": response.status,
                    "method": scope["method"],
                    "path": scope["path"],
                    "attempt": inv.attempt,
                }
                if trace.parent_span_id is not None:
                    line["parent_span_id"] = trace.parent_span_id
                if inv.cold_start:
                    line["cold_start"] = True
                    line["cold_start_ms"] = round(inv.cold_start_ms or 0.0, 3)
                if extra:
                    line.update(extra)
                self.sink.emit(line)

    def _respond(
        self, outcome: Outcome, inv: Invocation, log: Logger
    ) -> tuple[Response, dict[str, Any]]:
        spec = inv.function
        if outcome.kind == "ok":
            try:
                return to_response(outcome.value, spec.name), {}
            except (TypeError, ValueError, msgspec.EncodeError) as exc:
                outcome = Outcome("error", error=exc)
        if outcome.kind == "error" and isinstance(outcome.error, HTTPError):
            err = outcome.error
            return Response.json(
                {"error": err.detail or str(err.status), "invocation_id": inv.id},
                err.status,
                err.headers,
            ), {}
        if outcome.kind == "timeout":
            return Response.json(
                {
                    "error": f"function {spec.name!r} did not finish within its timeout "
                    f"of {spec.timeout:g}s",
                    "invocation_id": inv.id,
                },
                504,
            ), {"error": f"timed out after {spec.timeout:g}s"}
        if outcome.kind == "throttled":
            return Response.json(
                {
                    "error": f"function {spec.name!r} is at its max_concurrency of "
                    f"{spec.max_concurrency}; retry later",
                    "invocation_id": inv.id,
                },
                429,
                {"retry-after": "1"},
            ), {}
        if outcome.kind == "cancelled":
            return Response.json(
                {"error": "the invocation was cancelled", "invocation_id": inv.id},
                503,
                {"retry-after": "1"},
            ), {"cancel_reason": inv.cancellation.reason}
        # An exception: the client learns only the invocation id; the log gets the rest.
        error = outcome.error
        assert error is not None
        log.exception("function raised", error)
        return Response.json({"invocation_id": inv.id}, 500), {
            "error": f"{type(error).__name__}: {error}"
        }

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise _BodyError(400, "Content-Length is not a number") from None
                if declared > limit:
                    raise _BodyError(
                        413, f"request body of {declared} bytes is over the limit of {limit}"
                    )
                break
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False) and len(body) <= limit:
            return body
        chunks = [body]
        size = len(body)
        if size > limit:
            raise _BodyError(413, f"request body is over the limit of {limit} bytes")
        while message.get("more_body", False):
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except TimeoutError:
                raise _BodyError(
                    408, f"the request body did not arrive within {self.body_timeout:g}s"
                ) from None
            if message["type"] == "http.disconnect":
                raise _BodyError(400, "the client disconnected before sending the body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _BodyError(413, f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
