"""Whole web apps as hibana functions: ``app.asgi("/api", fastapi_app)``,
``app.wsgi("/legacy", flask_app)``.

A mount is an HTTP function that catches every path under its prefix, so each request is
an Invocation like any other (deadline, concurrency limit, log line, trace). The mounted
app sees ``root_path`` (ASGI) or ``SCRIPT_NAME`` (WSGI) set to the prefix, so its own URL
building works, and ``path`` as the client sent it. Its response streams through as it is
produced (server-sent events included); the deadline covers the app until it starts its
response. Its lifespan (startup/shutdown) runs once per worker.

WSGI apps go through ``hibana.adapters.wsgi``'s bridge, which runs them on a pool of
threads: one ASGI core, WSGI a thin wrapper.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from hibana.context import Context
from hibana.declarations import not_two
from hibana.errors import Cancelled
from hibana.requests import Request
from hibana.responses import Response, StreamingResponse, check_status

Message = MutableMapping[str, Any]
#: Body chunks a mounted app may send ahead of what the client has taken.
_CHUNKS_AHEAD = 4
#: Seconds a mounted app's lifespan shutdown may take.
SHUTDOWN_WAIT = 5.0
ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[Message]],
        Callable[[Message], Awaitable[None]],
    ],
    Awaitable[None],
]


def asgi2_as_3(app: Any) -> ASGIApp | None:
    """The ASGI 3 app that serves ``app``, if it is an ASGI 2 one (a class that takes the
    scope, whose instances take ``(receive, send)``: an instance per request or lifespan,
    as uvicorn runs one); None if it is not."""
    if not inspect.isclass(app) or hasattr(app, "__await__") or not_two(app, 1) is not None:
        return None
    call = inspect.getattr_static(app, "__call__", None)
    if not inspect.isfunction(call) or not_two(call, 3) is not None:  # self, receive, send
        return None
    make: Callable[[MutableMapping[str, Any]], Any] = app

    async def asgi3(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        await make(scope)(receive, send)

    asgi3.__wrapped__ = app  # type: ignore[attr-defined]  # its lifespan runs once
    return asgi3


def _str_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """An ASGI app's headers as a Response holds them (the front leaves out the framing
    ones, and sets Content-Length from the body)."""
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]


def _checked_headers(headers: Any, prefix: str) -> list[tuple[bytes, bytes]]:
    """An app's ``http.response.start`` headers as pairs of bytes; a ``TypeError`` naming
    the header that is not one (a str, a name alone)."""
    checked = []
    for header in headers:
        pair = tuple(header) if isinstance(header, (tuple, list)) else ()
        if len(pair) != 2 or not all(isinstance(part, (bytes, bytearray)) for part in pair):
            raise TypeError(
                f"the app mounted at {prefix or '/'} sent the response header {header!r}: "
                'ASGI headers are pairs of bytes, as in (b"content-type", b"text/plain")'
            )
        checked.append((bytes(pair[0]), bytes(pair[1])))
    return checked


def _whole(status: int, raw: list[tuple[bytes, bytes]], body: bytes) -> Response:
    """A whole response from an app's head and body."""
    check_status(status)
    response = Response.__new__(Response)
    response.status = status
    response.body = body
    response.stream = None
    response.headers = _str_headers(raw)
    return response


class _AppStream:
    """A mounted app's streamed body: the chunks its ``send`` queues, then its end (or
    its failure). Closed before its end (its client left, a HEAD's body that is not sent,
    the deadline), it cancels the app; ended, it leaves the app's task to finish what it
    does after its answer."""

    __slots__ = ("_chunks", "_task", "finished")

    def __init__(self, chunks: asyncio.Queue[bytes | None], task: asyncio.Task[None]) -> None:
        self._chunks = chunks
        self._task = task
        #: The app has sent its last part (or it was read to its end): what the app does
        #: from here (its background tasks), no client sees, and closing does not stop.
        self.finished = False

    def __aiter__(self) -> _AppStream:
        return self

    async def __anext__(self) -> bytes:
        chunks, task = self._chunks, self._task
        if not (chunks.empty() and task.done()):
            chunk = await chunks.get()
            if chunk is not None:
                return chunk
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        self.finished = True
        raise StopAsyncIteration

    async def aclose(self) -> None:
        task = self._task
        if not task.done() and not self.finished:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class AsgiMount:
    """The handler of a mount: runs the ASGI app for one request."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")
        self._lifespan: asyncio.Task[None] | None = None
        self._lifespan_queue: asyncio.Queue[Message] | None = None
        self._lifespan_done: asyncio.Queue[Message] | None = None
        #: What the app's lifespan startup stores (``yield {"db": ...}`` in Starlette's):
        #: each request's scope gets a copy of it.
        self._state: dict[str, Any] = {}
        #: What the app raised in its lifespan startup, when it raised instead of
        #: answering (served without its lifespan then).
        self.lifespan_error: str | None = None
        #: The app's tasks still running, answered or not.
        self.running: set[asyncio.Task[None]] = set()

    async def __call__(self, req: Request, ctx: Context) -> Response:
        scope = dict(req._scope)
        scope["root_path"] = scope.get("root_path", "") + self.prefix
        scope["state"] = self.request_state()
        if req._trusted:
            # behind a proxy the App trusts: the client and scheme it forwards, as uvicorn's
            # and gunicorn's proxy settings give an app (its url_for, its redirects)
            scope["scheme"] = req.scheme
            client = req.client_ip
            if client is not None and client != (scope.get("client") or ("",))[0]:
                scope["client"] = (client, 0)
        for key in ("hibana.conn", "hibana.given", "hibana.cancellation"):
            scope.pop(key, None)
        body_sent = False
        server_receive = req._receive

        async def receive() -> Message:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": req.body, "more_body": False}
            if server_receive is not None:
                return await server_receive()  # the client's disconnect, when it comes
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        # The answer is a whole Response when the app sends its head and its one body
        # together (most responses: one write, a Content-Length); else a stream, which
        # starts with the head and passes each chunk on as the app sends it.
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Response] = loop.create_future()
        head_only = scope["method"] == "HEAD"  # its Content-Length is the GET's: kept as is
        head: list[Any] = []  # status, headers: until the body's first part decides
        # A stream's chunks, made when there is a stream; bounded: the app's send waits
        # while the client is behind, so a big body is never held in memory whole.
        chunks: asyncio.Queue[bytes | None] | None = None

        body: _AppStream | None = None

        def streamed() -> None:
            # the head came alone (the app is about to stream, or awaited between them)
            nonlocal chunks, body
            if not answer.done() and head:
                chunks = asyncio.Queue(_CHUNKS_AHEAD)
                body = _AppStream(chunks, task)
                answer.set_result(StreamingResponse(body, head[0], _str_headers(head[1])))

        started = False

        async def send(message: Message) -> None:
            nonlocal started
            kind = message["type"]
            if kind == "http.response.start":
                if started:
                    raise RuntimeError(
                        f"the app mounted at {self.prefix or '/'} sent http.response.start a "
                        "second time: a response has one start (status, headers), then its body"
                    )
                # checked here, so that the app's send raises: in ``streamed`` (a callback)
                # an error would reach no one, and the request would wait for its deadline
                status = message.get("status")
                check_status(status)
                head[:] = (status, _checked_headers(message.get("headers", []), self.prefix))
                started = True
                loop.call_soon(streamed)
            elif kind != "http.response.body":
                raise RuntimeError(
                    f"the app mounted at {self.prefix or '/'} sent a message of type {kind!r}, "
                    "which no HTTP response here has: send http.response.start, then "
                    "http.response.body"
                )
            elif not started:
                # it was dropped, and the body the client got lacked it
                raise RuntimeError(
                    f"the app mounted at {self.prefix or '/'} sent http.response.body before "
                    "http.response.start: a response begins with its start (status, headers)"
                )
            else:
                chunk = message.get("body", b"")
                more = message.get("more_body", False)
                if not answer.done() and head:
                    if not more and not head_only:
                        answer.set_result(_whole(head[0], head[1], bytes(chunk)))
                        head.clear()
                        return
                    streamed()
                if chunks is None:
                    return  # after a whole response: nowhere to go
                if chunk:
                    await chunks.put(bytes(chunk))
                if not more:
                    if body is not None:
                        body.finished = True  # a HEAD closes it unread: its tasks run on
                    await chunks.put(None)

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            except (SystemExit, KeyboardInterrupt) as exc:
                # the app's own (a worker takes its signals on the loop); out of a task
                # they would stop the worker's loop: it failed, like with any error
                raise RuntimeError(
                    f"the app mounted at {self.prefix or '/'} raised {type(exc).__name__}: {exc}"
                ) from exc
            finally:
                # wake a reader waiting on an empty queue; a full one is read to its
                # end, and then the reader sees that the app is done
                if chunks is not None:
                    with contextlib.suppress(asyncio.QueueFull):
                        chunks.put_nowait(None)

        def ended(task: asyncio.Task[None]) -> None:
            failed = None if task.cancelled() else task.exception()  # retrieved, always
            if not answer.done():
                if failed is None and ctx.cancel_reason == "client_disconnected":
                    # it stopped because its client left (receive() said so): no one to
                    # answer, and nothing failed
                    answer.set_exception(Cancelled("the client disconnected"))
                    return
                # the app raised before responding: a 500, like any function
                answer.set_exception(
                    failed
                    or RuntimeError(f"the app mounted at {self.prefix or '/'} sent no response")
                )
            elif failed is not None and (body is None or body.finished):
                # a stream's failure cuts it short and is logged then; this one the client
                # never sees, so the log is the one place it is told
                ctx.log.exception("the mounted app raised after its whole response", failed)

        task = loop.create_task(run())
        task.add_done_callback(ended)
        # an app's task may outlive its answer (Starlette's background tasks run after the
        # body): the worker lets these finish before it stops
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        try:
            return await answer
        except asyncio.CancelledError:
            answer.cancel()  # nobody waits for it now
            task.cancel()  # our deadline passed, or the worker is stopping
            raise

    # -- lifespan -------------------------------------------------------------------------
    def share_lifespan(self, other: AsgiMount) -> None:
        """Let ``other``, a mount of the same app at another prefix, run the lifespan for
        this one: its requests get the state ``other``'s startup stores."""
        self._state = other._state

    def request_state(self) -> dict[str, Any]:
        """A request's ``scope["state"]``: a copy of what the lifespan stored (ASGI)."""
        return self._state.copy()

    async def startup(self) -> str | None:
        """Run the app's lifespan startup; an error message if it failed. An app that
        does not speak lifespan is left alone; one that raised once it took the startup
        message is served without its lifespan too (the ASGI spec asks it), and
        ``lifespan_error`` says what it raised."""
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._lifespan_queue, self._lifespan_done = inbox, outbox
        taken = False

        async def receive() -> Message:
            nonlocal taken
            message = await inbox.get()
            taken = True
            return message

        async def run() -> None:
            try:
                await self.app(
                    {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self._state},
                    receive,
                    outbox.put,
                )
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # SystemExit too: out of the task, it would stop the loop
                # raised before it took the startup message: it does not speak lifespan
                # (Django's ASGI app refuses the scope); after: its startup failed
                error = f"{type(exc).__name__}: {exc}" if taken else None
                await outbox.put({"type": "hibana.unsupported", "error": error})
            else:
                # it returned: done with its lifespan, or (answering nothing) it has none,
                # as many bare ASGI apps do (`if scope["type"] != "http": return`)
                await outbox.put({"type": "hibana.unsupported"})

        self._lifespan = asyncio.create_task(run())
        await inbox.put({"type": "lifespan.startup"})
        reply = await outbox.get()
        if reply["type"] == "lifespan.startup.failed":
            return str(reply.get("message") or "lifespan startup failed")
        if reply["type"] == "hibana.unsupported":
            self._lifespan = None
            self.lifespan_error = reply.get("error")
        return None

    async def shutdown(self) -> str | None:
        """Run the app's lifespan shutdown; what went wrong, if it failed, raised or did
        not answer within ``SHUTDOWN_WAIT`` seconds."""
        if self._lifespan is None or self._lifespan_queue is None:
            return None
        await self._lifespan_queue.put({"type": "lifespan.shutdown"})
        assert self._lifespan_done is not None
        self._lifespan = None
        try:
            reply = await asyncio.wait_for(self._lifespan_done.get(), SHUTDOWN_WAIT)
        except TimeoutError:
            return f"it did not answer lifespan.shutdown within {SHUTDOWN_WAIT:.0f}s"
        if reply["type"] == "lifespan.shutdown.failed":
            return str(reply.get("message") or "lifespan shutdown failed")
        if reply["type"] == "hibana.unsupported" and reply.get("error") is not None:
            return f"it raised {reply['error']}"
        return None


def lifespans(mounts: Iterable[AsgiMount]) -> list[AsgiMount]:
    """The mounts whose lifespans to run: one per app, however many prefixes it is
    mounted at (as one app a Starlette router mounts twice: one startup, one pool), the
    others sharing its state."""
    first: dict[int, AsgiMount] = {}
    for mount in mounts:
        kept = first.setdefault(id(getattr(mount.app, "__wrapped__", mount.app)), mount)
        if kept is not mount:
            mount.share_lifespan(kept)
    return list(first.values())
