"""Whole web apps as hibana functions: ``app.asgi("/api", fastapi_app)``,
``app.wsgi("/legacy", flask_app)``.

A mount is an HTTP function that catches every path under its prefix, so each request is
an Invocation like any other (deadline, concurrency limit, log line, trace). The mounted
app sees ``root_path`` (ASGI) or ``SCRIPT_NAME`` (WSGI) set to the prefix, so its own URL
building works, and ``path`` as the client sent it. Its response streams through as it is
produced (server-sent events included); the deadline covers the app until it starts its
response. Its lifespan (startup/shutdown) runs once per worker.

WSGI apps go through ``a2wsgi``'s WSGI-to-ASGI bridge, which runs them on its thread
pool: one ASGI core, WSGI a thin wrapper.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from hibana.context import Context
from hibana.requests import Request
from hibana.responses import Response, StreamingResponse

Message = MutableMapping[str, Any]
#: Body chunks a mounted app may send ahead of what the client has taken.
_CHUNKS_AHEAD = 4
ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[Message]],
        Callable[[Message], Awaitable[None]],
    ],
    Awaitable[None],
]


class AsgiMount:
    """The handler of a mount: runs the ASGI app for one request."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")
        self._lifespan: asyncio.Task[None] | None = None
        self._lifespan_queue: asyncio.Queue[Message] | None = None
        self._lifespan_done: asyncio.Queue[Message] | None = None

    async def __call__(self, req: Request, ctx: Context) -> Response:
        scope = dict(req._scope)
        scope["root_path"] = scope.get("root_path", "") + self.prefix
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

        loop = asyncio.get_running_loop()
        started: asyncio.Future[tuple[int, list[tuple[str, str]]]] = loop.create_future()
        # bounded: the app's send waits while the client is behind, so a big body is
        # never held in memory whole
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue(_CHUNKS_AHEAD)

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in message.get("headers", [])
                ]
                if not started.done():
                    started.set_result((int(message["status"]), headers))
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if chunk:
                    await chunks.put(bytes(chunk))
                if not message.get("more_body", False):
                    await chunks.put(None)

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            finally:
                # wake a reader waiting on an empty queue; a full one is read to its
                # end, and then the reader sees that the app is done
                with contextlib.suppress(asyncio.QueueFull):
                    chunks.put_nowait(None)

        task = asyncio.create_task(run())
        try:
            waiting: set[asyncio.Future[Any]] = {task, started}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()  # our deadline passed, or the worker is stopping
            raise
        if not started.done():
            task.result()  # the app raised before responding: a 500, like any function
            raise RuntimeError(f"the app mounted at {self.prefix or '/'} sent no response")
        status, headers = started.result()

        async def stream() -> AsyncIterator[bytes]:
            try:
                while not (chunks.empty() and task.done()):
                    chunk = await chunks.get()
                    if chunk is None:
                        break
                    yield chunk
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            finally:
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

        # the app's own Content-Length (if it set one) frames the body; else it is chunked
        return StreamingResponse(stream(), status, headers)

    # -- lifespan -------------------------------------------------------------------------
    async def startup(self) -> str | None:
        """Run the app's lifespan startup; an error message if it failed. An app that
        does not speak lifespan is left alone."""
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._lifespan_queue, self._lifespan_done = inbox, outbox

        async def run() -> None:
            try:
                await self.app(
                    {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                    inbox.get,
                    outbox.put,
                )
            except Exception as exc:
                await outbox.put({"type": "hibana.unsupported", "error": repr(exc)})

        self._lifespan = asyncio.create_task(run())
        await inbox.put({"type": "lifespan.startup"})
        reply = await outbox.get()
        if reply["type"] == "lifespan.startup.failed":
            return str(reply.get("message") or "lifespan startup failed")
        if reply["type"] == "hibana.unsupported":
            self._lifespan = None
        return None

    async def shutdown(self) -> None:
        if self._lifespan is None or self._lifespan_queue is None:
            return
        await self._lifespan_queue.put({"type": "lifespan.shutdown"})
        assert self._lifespan_done is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._lifespan_done.get(), 5)
        self._lifespan = None


def wsgi_to_asgi(wsgi_app: Any) -> ASGIApp:
    from a2wsgi import WSGIMiddleware

    return WSGIMiddleware(wsgi_app)  # type: ignore[return-value]
