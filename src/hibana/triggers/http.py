"""The HTTP trigger: the front that turns each request into an Invocation.

It routes, starts or continues the trace, hands the Invocation to the dispatcher and turns
the Outcome into the response, which it writes through a ``Responder``. Each connection to
the worker's HTTP server (``hibana.host.http_connection``) calls ``handle`` with the body
already read; as an ASGI app (the Lambda adapter serves it so) it reads the body within
limits itself. Answers that hibana gives itself (404, 405, 413, 429, 500, 503, 504) are JSON
bodies that name the problem, and carry the invocation id when there was an invocation.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any, Protocol

import msgspec

from hibana.app import App, FunctionSpec, HttpTrigger
from hibana.context import Context, Invocation, Outbox
from hibana.dispatcher import Dispatcher, Outcome
from hibana.errors import SHUTTING_DOWN, FailedWith, HTTPError, is_client_error
from hibana.requests import Request
from hibana.responses import Response, header_problem, to_response
from hibana.secrets import Secrets
from hibana.telemetry.log_fields import error_text, millis, timestamp
from hibana.telemetry.log_sink import LogSink
from hibana.telemetry.logs import Logger
from hibana.telemetry.trace import continue_or_start, new_invocation_id
from hibana.triggers.http_response import (
    BODILESS,
    CLIENT_GONE,
    CONTENT_TYPE_JSON,
    AsgiResponder,
    Message,
    Responder,
    Send,
    StreamDeadline,
    response_header,
    send_json,
    send_stream,
    shown_path,
    without_content,
)
from hibana.triggers.routes import Match, RouteTable

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]

_CLOSE = (b"connection", b"close")
_SHUTDOWN_HEADERS = {"retry-after": "1", "connection": "close"}
_NO_CONTENT = (b"content-length", b"0")
#: The route table's answer: a Match, the methods the path allows (405), or None (404).
Found = Match | list[str] | None


#: RFC 9110 9.3's methods and PATCH: known to every server, so a path without one is 405.
_STANDARD_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


class _BodyError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail


#: The connection table's states (hibana.host.board): running, the response is being
#: written, waiting for a max_concurrency permit.
_CONN_BUSY, _CONN_RESPONDING, _CONN_WAITING = 1, 2, 3


#: The numeric level of "info" (hibana.telemetry.log_fields.LEVELS); invocation lines are info.
_INFO = 20


class _InvocationLine(msgspec.Struct):
    """The line each invocation ends with, in this order; the fields left unset are left
    out. A struct rather than a dict: a third of the instructions to make, and its keys
    are encoded once, not for each line."""

    ts: str
    level: str
    msg: str
    invocation_id: str
    function: str
    trace_id: str
    span_id: str
    duration_ms: float
    outcome: str
    status: int
    method: str
    path: str
    attempt: int
    parent_span_id: str | msgspec.UnsetType = msgspec.UNSET
    cold_start: bool | msgspec.UnsetType = msgspec.UNSET
    cold_start_ms: float | msgspec.UnsetType = msgspec.UNSET
    error: str | msgspec.UnsetType = msgspec.UNSET
    cancel_reason: str | msgspec.UnsetType | None = msgspec.UNSET


def timed_out(spec: FunctionSpec) -> str:
    """What a 504 says: the front's, and the worker's for a function deaf to its deadline."""
    return f"function {spec.name!r} did not finish within its timeout of {spec.timeout:g}s"


def _unrun(inv: Invocation) -> str:
    """What a timed-out invocation's line adds if it never ran: a sync function's that
    waited for a thread of the worker's pool, every one busy, until its deadline."""
    if inv.function.is_async or inv.on_thread:
        return ""
    return " waiting for a thread (every one of the worker's was busy): it did not run"


#: What a path keeps as it is in a Location (RFC 3986 3.3: pchar and "/").
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def _route_path(scope: Scope) -> str:
    """The path the route table is asked for: the scope's, less the ``root_path`` the app
    is served under (on Lambda, a REST API stage's ``/prod``), which ASGI's path holds."""
    path: str = scope["path"]
    root: str = scope.get("root_path") or ""
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
        return path[len(root) :] or "/"
    return path


class ConnectionTable(Protocol):
    """The board row's connection table (see hibana.host.board)."""

    def conn_busy(self, conn: int, invocation_id: str, column: int, began: float) -> None: ...
    def conn_state(self, conn: int, state: int) -> None: ...
    def conn_head(self, conn: int, head: bool) -> None: ...


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
            (route, spec.trigger.methods, spec)
            for spec in app.functions
            if isinstance(spec.trigger, HttpTrigger)
            for route in spec.trigger.routes
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
        #: Each function's column on the board (its place in the app): the connection
        #: table keeps it beside the invocation, so a dead worker's line names it.
        self._columns = {spec.name: i for i, spec in enumerate(app.functions)}
        #: How the errors of what each function returned name it: "function_app.py:12
        #: (create)", its def line (found as it was declared), made once here.
        self._where = {spec.name: f"{spec.source} ({spec.name})" for spec in app.functions}
        #: Invocations whose function has returned and whose response is still streaming.
        self.streaming: dict[str, Invocation] = {}
        #: The functions told that a 204 or 304 sends no body (``without_content``).
        self._told: set[str] = set()

    def cancel_streams(self) -> None:
        """Tell every streaming response's invocation that the worker is stopping: a
        stream that watches ``ctx.cancelled`` ends, and its client gets a whole body."""
        for inv in self.streaming.values():
            inv.cancellation.set("shutdown")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The front as an ASGI app (the Lambda adapter serves it this way)."""
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        out = AsgiResponder(send)
        found = self.table.lookup(scope["method"], _route_path(scope))
        body = b""
        if type(found) is Match and not self.draining:
            try:
                body = await self._read_body(scope, receive)
            except _BodyError as exc:
                await send_json(out, exc.status, {"error": exc.detail}, [_CLOSE])
                return
        await self.handle(found, scope, body, receive, out)

    def handle(
        self, found: Found, scope: Scope, body: bytes, receive: Receive, out: Responder
    ) -> Coroutine[Any, Any, None]:
        """Answer a request whose body has been read: ``found`` is the route table's
        answer for its method and path. A request for a function gets the invocation's
        own coroutine (one coroutine fewer between it and the server's task)."""
        if type(found) is Match and not self.draining:
            return self._invoke(found, scope, body, receive, out)
        return self._unmatched(found, scope, out)

    async def _unmatched(self, found: Found, scope: Scope, out: Responder) -> None:
        """The answer to a request no function takes now: the host drains, the target is
        ``*``, no route has the path (404) or none the method (405)."""
        if self.draining:
            await send_json(
                out,
                503,
                {"error": SHUTTING_DOWN},
                [(b"retry-after", b"1"), _CLOSE],
            )
            return
        if found is None and scope["path"] == "*":
            # the request target of the host as a whole (RFC 9110, 9.3.7): OPTIONS only.
            # Allow: the methods its routes take, OPTIONS last and only if one takes it (a
            # client told OPTIONS would send a preflight, to get the route's 405)
            if scope["method"] == "OPTIONS":
                methods = self.table.methods()
                named = [m for m in methods if m != "OPTIONS"]
                if len(named) < len(methods):
                    named.append("OPTIONS")
                allow = ", ".join(named)
                await out.whole(200, [(b"allow", allow.encode()), (b"content-length", b"0")], b"")
            else:
                error = f"the request target * is for OPTIONS, not {scope['method']}"
                self._unserved(400, error)
                await send_json(out, 400, {"error": error})
        elif found is None:
            twin = self._slash_twin(scope)
            if twin is not None:
                # /items for a route /items/ (or the other way round): where it is served,
                # with the method and the body kept (308), as Starlette does
                error = (
                    f"{shown_path(scope['path'])} is served at {shown_path(twin.decode('latin-1'))}"
                )
                self._unserved(308, error)
                await send_json(out, 308, {"error": error}, [(b"location", twin)])
                return
            error = f"no function serves {scope['method']} {shown_path(scope['path'])}"
            self._unserved(404, error)
            await send_json(out, 404, {"error": error})
        else:
            allow = ", ".join(found)  # type: ignore[arg-type]
            method = scope["method"]
            if method not in _STANDARD_METHODS and method not in self.table.methods():
                # RFC 9110 9.1: a method the server does not know of is 501, not 405
                error = f"no function of this app takes {method} (this path allows {allow})"
                self._unserved(501, error)
                await send_json(out, 501, {"error": error}, [(b"allow", allow.encode())])
                return
            error = f"{shown_path(scope['path'])} does not allow {method}; it allows {allow}"
            self._unserved(405, error)
            await send_json(out, 405, {"error": error}, [(b"allow", allow.encode())])

    def _slash_twin(self, scope: Scope) -> bytes | None:
        """The target, with its path's trailing slash added or taken away, when a
        function serves that path for the request's method."""
        path = _route_path(scope)
        if path == "/" or path == "*":
            return None
        twin = path[:-1] if path.endswith("/") else path + "/"
        if type(self.table.lookup(scope["method"], twin)) is not Match:
            return None
        # from the path as resolved (dot segments, %2F), never the target as sent: that
        # could send the client off the host (``//evil.example/../../items/``), or back
        root: str = scope.get("root_path") or ""
        target = urllib.parse.quote(root + twin, safe=_PATH_SAFE).encode("ascii")
        if target.startswith(b"//"):
            return None  # a network-path reference: another host, for a client
        query: bytes = scope.get("query_string", b"")
        return target + b"?" + query if query else target

    def _unserved(self, status: int, error: str) -> None:
        """The line for a request no function was found for (no invocation line will say)."""
        if self.sink.min_level <= _INFO:
            self.sink.emit(
                {
                    "ts": timestamp(),
                    "level": "info",
                    "msg": "no function",
                    "status": status,
                    "error": error,
                }
            )

    async def _invoke(
        self, match: Match, scope: Scope, body: bytes, receive: Receive, out: Responder
    ) -> None:
        spec = match.spec
        traceparent = tracestate = None
        for name, value in scope["headers"]:
            if name == b"traceparent":
                # two are no one trace to continue: a new one starts (W3C Trace Context)
                traceparent = "" if traceparent is not None else value.decode("latin-1")
            elif name == b"tracestate":  # several lines are one list (RFC 9110 5.3)
                text = value.decode("latin-1")
                tracestate = text if tracestate is None else f"{tracestate},{text}"
        started = time.monotonic()
        deadline = started + spec.timeout
        invocation_id = None
        latest = None
        given = scope.get("hibana.given")  # set by a caller that has them (the Lambda adapter)
        trace = None
        if given is not None:
            if traceparent is None:
                trace = given.get("trace")  # X-Ray's, read by the adapter
            invocation_id = given.get("invocation_id")
            latest = given.get("deadline")
            if latest is not None:
                deadline = min(deadline, latest)
        if trace is None:
            trace = continue_or_start(traceparent, tracestate)
        inv = Invocation(
            invocation_id or new_invocation_id(),
            spec,
            Request(scope, body, match.params, self.trusted_proxies, receive),
            trace,
            deadline,
        )
        if latest is not None:
            inv.latest = latest  # the caller's deadline: a wait for a permit cannot move past it
        fields: dict[str, Any] = {
            "invocation_id": inv.id,
            "function": spec.name,
            "trace_id": trace.trace_id,
            "span_id": trace.span_id,
        }
        log = Logger(self.sink, fields)
        ctx = Context(inv, log, self.outbox, self.secrets.get(spec.name))
        scope["hibana.cancellation"] = inv.cancellation  # for a server whose client goes
        table = self.connections
        conn = scope.get("hibana.conn") if table is not None else None
        waiting = None
        if table is not None and conn is not None:
            table.conn_busy(conn, inv.id, self._columns[spec.name], started)
            if spec.max_concurrency is not None:
                marks = table

                def waiting(now: bool) -> None:
                    # a worker that dies while this waits for a permit never ran it: 503
                    marks.conn_state(conn, _CONN_WAITING if now else _CONN_BUSY)

        # kept: the permit of a max_concurrency is held until the answer is sent, a stream too
        outcome = await self.dispatcher.run(inv, ctx, keep=True, waiting=waiting)
        try:
            if conn is not None:
                # the answer is ours from here: a worker that dies now gets no 502 written over it
                table.conn_state(conn, _CONN_RESPONDING)  # type: ignore[union-attr]
            try:
                response, extra = self._respond(outcome, inv, log)
            except Exception as exc:
                # what the function gave broke the making of its answer in a way not
                # foreseen (a property of a Response subclass that raises): its failure,
                # answered 500 with its id and line, not the front's
                if outcome.kind == "ok" or is_client_error(outcome.error):
                    self.dispatcher.count_failure(inv)  # not counted as the function ended
                outcome = Outcome("error", error=exc)
                response, extra = self._respond(outcome, inv, log)
            headers: list[tuple[bytes, bytes]] = []
            declared = None  # the function's own Content-Length
            length = None  # ... which a streamed body must keep to
            try:
                for name, value in response.headers:
                    header = response_header(name, value)
                    if header is None:
                        continue
                    if header[0] == b"content-length":
                        declared = header
                    else:
                        headers.append(header)
            except (TypeError, ValueError) as exc:  # a forged header, or no header at all
                problem = header_problem(response.headers)
                # the 500's log line says which header, not that a str is no bytes
                error: Exception = (
                    exc
                    if problem is None
                    else TypeError(
                        f"function {self._where[spec.name]} returned a Response whose {problem}"
                    )
                )
                if response.status < 500:
                    self.dispatcher.count_failure(inv)  # not counted when the function ended
                outcome = Outcome("error", error=error)
                response, extra = self._respond(outcome, inv, log)
                headers, declared = [CONTENT_TYPE_JSON], None
            stream = response.stream
            status = response.status
            body = response.body
            if status == 204 or status == 304:
                headers = without_content(
                    status, headers, bool(body) or stream is not None, self._told, spec.name, log
                )
            if stream is None:
                if status == 204 or status == 304:
                    body = b""
                elif status == 205:  # RFC 9110 15.3.6: no content, and said so
                    body = b""
                    headers.append(_NO_CONTENT)
                elif declared is not None and not body and scope["method"] == "HEAD":
                    headers.append(declared)  # a HEAD answer that says what GET would send
                else:
                    headers.append((b"content-length", b"%d" % len(body)))
            elif declared is not None and status != 204 and status != 205:
                # RFC 9110 8.6: none on a 204; a 205 says it has no content (below)
                headers.append(declared)
                if status != 205 and status != 304 and scope["method"] != "HEAD":
                    length = int(declared[1])  # a body of this many bytes, or it is cut short
            elif status == 205:
                headers.append(_NO_CONTENT)
            headers.append((b"traceparent", trace.traceparent.encode()))
            headers.append((b"x-invocation-id", inv.id.encode()))
            broke = None
            try:
                if stream is None:
                    await out.whole(status, headers, body)
                else:
                    await out.start(status, headers)
                    self.streaming[inv.id] = inv
                    self.dispatcher.hold(inv)
                    watch = StreamDeadline(inv, self.dispatcher.cancel_grace)
                    try:
                        stopped = await send_stream(
                            out,
                            stream,
                            log,
                            inv,
                            length,
                            unread=scope["method"] == "HEAD" or status in BODILESS,
                        )
                    finally:
                        watch.cancel()
                        del self.streaming[inv.id]
                        self.dispatcher.hold(inv, -1)
                    if stopped is None and inv.cancellation.is_set():
                        # it ended whole when told to: the line says what told it
                        extra = {"cancel_reason": inv.cancellation.reason}
                    elif stopped is not None:
                        outcome = stopped
                        if stopped.error is not None:
                            broke = stopped.error
                            self.dispatcher.count_failure(inv)
                            extra = {"error": error_text(broke)}
                            await out.end(complete=False)
                        else:
                            extra = {"cancel_reason": inv.cancellation.reason}
            finally:
                failed = broke is not None or (
                    response.status >= 500
                    # one that stopped as its client left failed no one: its 503 went nowhere
                    and (outcome.kind != "cancelled" or inv.cancellation.reason != CLIENT_GONE)
                )
                if failed or self.sink.min_level <= _INFO:
                    # built whole here rather than through Logger.log: no copies; the
                    # invocation's fields (``fields``) written out, which is cheaper
                    line = _InvocationLine(
                        timestamp(),
                        "error" if failed else "info",
                        "invocation",
                        inv.id,
                        spec.name,
                        trace.trace_id,
                        trace.span_id,
                        millis(time.monotonic() - started),
                        outcome.kind,
                        response.status,
                        scope["method"],
                        scope["path"],
                        inv.attempt,
                    )
                    if trace.parent_span_id is not None:
                        line.parent_span_id = trace.parent_span_id
                    if inv.cold_start:
                        line.cold_start = True
                        line.cold_start_ms = millis((inv.cold_start_ms or 0.0) / 1000)
                    if extra:
                        for key, value in extra.items():  # "error" or "cancel_reason"
                            setattr(line, key, value)
                    elif inv.cancellation.reason == "client_disconnected":
                        # it finished all the same: its answer went to a client that had gone
                        # (or half-closed, and got it)
                        line.cancel_reason = "client_disconnected"
                    self.sink.emit(line)
        finally:
            self.dispatcher.let_go(inv)

    def _respond(
        self, outcome: Outcome, inv: Invocation, log: Logger
    ) -> tuple[Response, dict[str, Any]]:
        spec = inv.function
        if outcome.kind == "ok":
            try:
                return to_response(outcome.value, self._where[spec.name]), {}
            # AttributeError: a Response subclass whose __init__ skips Response's
            except (AttributeError, TypeError, ValueError, msgspec.EncodeError) as exc:
                # what it returned is no response: it failed after all, and says so
                self.dispatcher.count_failure(inv)
                if isinstance(exc, AttributeError) and isinstance(outcome.value, Response):
                    exc = TypeError(
                        f"function {self._where[spec.name]} returned a "
                        f"{type(outcome.value).__name__} "
                        f"that is half a Response ({exc}); its __init__ must call "
                        "super().__init__(body, status, headers)"
                    )
                tb = exc.__traceback__
                while tb is not None and str(tb.tb_frame.f_globals.get("__name__")).startswith(
                    "hibana."
                ):
                    tb = tb.tb_next
                if tb is None:
                    # hibana's frames alone (the function had returned), which say nothing
                    # to its author: its line names the function's def instead
                    exc.__traceback__ = None
                outcome.kind, outcome.value, outcome.error = "error", None, exc
        if outcome.kind == "error" and isinstance(outcome.error, HTTPError):
            err = outcome.error
            if isinstance(err, FailedWith):
                return err.response, {"error": str(err)}
            try:
                # a server error says on its invocation line what it was, as any failure does
                return Response.json(
                    {"error": err.detail or str(err.status), "invocation_id": inv.id},
                    err.status,
                    err.headers,
                ), ({"error": error_text(err)} if err.status >= 500 else {})
            except (AttributeError, TypeError, ValueError, msgspec.EncodeError) as exc:
                # one its raiser spoilt (a subclass whose __init__ skips HTTPError's, a
                # status set to text): the function's failure, not the front's
                if is_client_error(err):
                    self.dispatcher.count_failure(inv)  # a client error was not counted
                spoilt = TypeError(
                    f"function {self._where[spec.name]} raised {type(err).__name__}, which "
                    "cannot be "
                    f"answered: {error_text(exc)}; a subclass's __init__ must call "
                    "super().__init__(status, detail), and leave status an int"
                )
                spoilt.__cause__ = err  # its traceback shows where it was raised
                outcome.error = spoilt
        if outcome.kind == "timeout":
            if inv.deadline >= inv.latest:  # its caller's came first: Lambda's time left
                return Response.json(
                    {
                        "error": f"function {spec.name!r} did not finish by its caller's "
                        "deadline (on AWS Lambda, the time the invocation had left), which "
                        f"came before its timeout of {spec.timeout:g}s",
                        "invocation_id": inv.id,
                    },
                    504,
                ), {
                    "error": "timed out at its caller's deadline, before its "
                    f"{spec.timeout:g}s timeout"
                }
            return Response.json(
                {
                    "error": timed_out(spec),
                    "invocation_id": inv.id,
                },
                504,
            ), {"error": f"timed out after {spec.timeout:g}s{_unrun(inv)}"}
        if outcome.kind == "throttled":
            return Response.json(
                {
                    "error": f"function {spec.name!r} is at its max_concurrency of "
                    f"{self.dispatcher.limit(spec)}; retry later",
                    "invocation_id": inv.id,
                },
                429,
                {"retry-after": "1"},
            ), {}
        if outcome.kind == "cancelled":
            shutdown = inv.cancellation.reason == "shutdown"
            return Response.json(
                {
                    "error": SHUTTING_DOWN if shutdown else "the invocation was cancelled",
                    "invocation_id": inv.id,
                },
                503,
                # at shutdown, as for a request that arrives then: try another connection
                _SHUTDOWN_HEADERS if shutdown else {"retry-after": "1"},
            ), {"cancel_reason": inv.cancellation.reason}
        # An exception: the client learns only the invocation id; the log gets the rest.
        error = outcome.error
        assert error is not None
        if error.__traceback__ is None and error.__cause__ is None:
            # made of what the function returned, not raised in it: no frame of its to show
            log.error("function raised", error=error_text(error))
        else:
            log.exception("function raised", error)
        return Response.json({"invocation_id": inv.id}, 500), {"error": error_text(error)}

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
