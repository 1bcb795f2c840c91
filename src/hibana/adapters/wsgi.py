"""A WSGI app (Flask, Django's WSGI handler...) as an ASGI app: ``app.wsgi`` mounts one
through ``AsgiMount``, and ``hibana.aws.handler`` runs one on Lambda.

The app runs on a pool of threads, one step at a time: the call that gives its response,
then each ``next()`` of its body as the client takes the one before. No thread ever waits
for the client, so a client that goes away mid-stream leaves no thread blocked behind it:
the body's iterable is closed (PEP 3333: its ``close()`` is called, complete or not) once
the step it is in ends, and a generator's ``finally`` runs.

As PEP 3333 asks, the head goes out with the first non-empty part of the body (or at its
end), so an app may call ``start_response`` again, with ``exc_info``, until then. A body
that is whole by the time its first part is made (its ``Content-Length`` says so, or the
app returned a list of one) is sent as one whole response.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import sys
import traceback
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from hibana.telemetry.logs import ErrorLines, current_logger

Message = MutableMapping[str, Any]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: Threads a WSGI app's requests run on, per worker (each is busy only while the app
#: computes a response or its next part, never while the client reads).
THREADS = 32
_END = object()


def wsgi_to_asgi(wsgi_app: WSGIApp, threads: int = THREADS) -> WsgiBridge:
    return WsgiBridge(wsgi_app, threads)


class _Exchange:
    """One request's WSGI side: ``start_response``, ``write`` and the body's iterator,
    stepped on a pool thread."""

    __slots__ = ("app", "environ", "status", "headers", "sent", "written", "result", "parts")

    def __init__(self, app: WSGIApp, environ: dict[str, Any]) -> None:
        self.app = app
        self.environ = environ
        self.status = ""
        self.headers: list[tuple[str, str]] | None = None
        #: The head has gone to the client: start_response may no longer change it.
        self.sent = False
        #: What the app gave ``write()`` (the legacy way), sent before its iterable's parts.
        self.written: list[bytes] = []
        self.result: Iterable[bytes] | None = None
        self.parts: Iterator[bytes] | None = None

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no cycle through the traceback
            # what write() was given (not sent yet) was the body of the response replaced
            self.written = []
        elif self.headers is not None:
            raise RuntimeError(
                "start_response was called a second time without exc_info (PEP 3333)"
            )
        if not isinstance(status, str) or not status[:3].isdigit():
            raise ValueError(f"the WSGI app's status {status!r} is not like '200 OK'")
        headers = list(headers)
        for header in headers:
            if not (
                isinstance(header, (tuple, list))  # a list too, as gunicorn takes it
                and len(header) == 2
                and all(isinstance(part, str) for part in header)
            ):
                raise TypeError(
                    f"the WSGI app's header {header!r} is not a (name, value) tuple of two "
                    "str (PEP 3333): write its value as text, as in ('Content-Length', "
                    "str(len(body)))"
                )
        self.status, self.headers = status, headers
        return self.write

    def write(self, data: bytes) -> None:
        if self.headers is None:
            raise RuntimeError("write() was called before start_response (PEP 3333)")
        self.written.append(_bytes(data, "write() was given"))

    def begin(self) -> bytes | object:
        """Call the app, then take its body up to the first part that is not empty:
        that part (what ``write`` got before it too), or ``_END``."""
        self.result = self.app(self.environ, self.start_response)
        if self.result is None or isinstance(self.result, (bytes, bytearray, str)):
            # iterated, bytes are ints (each int was as many NUL bytes) and str characters
            shown = repr(self.result)[:60]
            raise TypeError(
                f"the WSGI app returned {shown}, not an iterable of bytes (PEP 3333): return "
                "[body], a list of its one part"
            )
        self.parts = iter(self.result)
        return self.step()

    def step(self) -> bytes | object:
        """The body's next part that is not empty, after what ``write()`` was given
        meanwhile; or ``_END``."""
        assert self.parts is not None
        part: bytes | object = _END
        for chunk in self.parts:
            if chunk:
                part = _bytes(chunk, "body holds")
                break
        if self.written:
            written, self.written = b"".join(self.written), []
            return written + (b"" if part is _END else part)  # type: ignore[operator]
        return part

    def close(self) -> None:
        close = getattr(self.result, "close", None)
        if close is None:
            return
        try:
            close()
        except Exception as exc:
            # on a pool thread whose future nobody reads: said here, or never
            log = current_logger.get()
            if log is None:
                traceback.print_exc()
            else:
                log.exception("the WSGI app's body raised in its close()", exc)


class WsgiBridge:
    """The ASGI app that serves a WSGI app (see the module's docstring)."""

    def __init__(self, app: WSGIApp, threads: int = THREADS) -> None:
        self.app = app
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None  # made at the first request

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Any],
        send: Callable[[Message], Any],
    ) -> None:
        if scope["type"] != "http":
            return  # no lifespan, no websockets: a WSGI app has neither
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went before its body came
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        exchange = _Exchange(self.app, environ(scope, bytes(body)))
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="hibana-wsgi")
        pool = self._pool
        context = contextvars.copy_context()  # the invocation's logger, for every step
        pending: Future[Any] | None = None

        async def run(step: Callable[[], Any]) -> Any:
            nonlocal pending
            pending = pool.submit(context.run, step)
            value = await asyncio.wrap_future(pending)
            pending = None
            return value

        try:
            part = await run(exchange.begin)
            if exchange.headers is None:
                raise RuntimeError("the WSGI app returned without calling start_response")
            headers = [
                (name.strip().lower().encode("latin-1"), value.strip().encode("latin-1"))
                for name, value in exchange.headers
            ]
            status = int(exchange.status[:3])
            if part is _END or _whole(part, exchange.result, headers):
                exchange.sent = True
                await send({"type": "http.response.start", "status": status, "headers": headers})
                data = b"" if part is _END else part
                await send({"type": "http.response.body", "body": data, "more_body": False})
                return
            exchange.sent = True
            await send({"type": "http.response.start", "status": status, "headers": headers})
            while part is not _END:
                await send({"type": "http.response.body", "body": part, "more_body": True})
                part = await run(exchange.step)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            # PEP 3333: close() whether the body went out whole or not; after the step
            # running now, if one is (a generator cannot be closed while it runs)
            if pending is None:
                pool.submit(context.run, exchange.close)
            else:
                pending.add_done_callback(lambda _: pool.submit(context.run, exchange.close))


def _bytes(data: Any, what: str) -> bytes:
    """``data``, bytes as PEP 3333 asks of a body: a ``TypeError`` naming it if not."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    shown = repr(data[:40] if isinstance(data, str) else data)[:60]
    raise TypeError(
        f"the WSGI app's {what} a {type(data).__name__} {shown}, not bytes (PEP 3333): "
        "encode it, as in text.encode()"
    )


def _whole(first: bytes, result: Any, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether ``first`` is the whole body: the app returned a list or tuple of one part,
    or declared a ``Content-Length`` that it fills."""
    if isinstance(result, (list, tuple)) and len(result) == 1:
        return True
    for name, value in headers:
        if name == b"content-length":
            return value.isdigit() and int(value) == len(first)
    return False


def environ(scope: MutableMapping[str, Any], body: bytes) -> dict[str, Any]:
    """The WSGI environ of an ASGI HTTP request (PEP 3333): ``SCRIPT_NAME`` is the scope's
    ``root_path``, ``PATH_INFO`` the rest of its path, both as latin-1 "bytes in a str" of
    the bytes the client's percent-escapes stand for (``%FF`` is ``"\xff"``, as gunicorn
    gives it, where ASGI's ``path`` holds U+FFFD). ``CONTENT_LENGTH`` is the body's
    length when it came chunked (it is whole here). A repeated header's values are joined
    with commas (a Cookie's with "; "); a header whose name holds an ``_`` is left out, as
    gunicorn and nginx do: ``X_User`` would otherwise land in the same ``HTTP_X_USER`` key
    as ``X-User`` and pass for it."""
    script_name = scope.get("root_path", "").encode("utf-8")
    path = _path_bytes(scope)
    if script_name and path.startswith(script_name):
        path = path[len(script_name) :]
    server = scope.get("server") or ("localhost", 80)
    env: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": script_name.decode("latin-1"),
        "PATH_INFO": path.decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1] or 80),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": _errors(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    client = scope.get("client")
    if client:
        env["REMOTE_ADDR"], env["REMOTE_PORT"] = str(client[0]), str(client[1])
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1")
        if "_" in name:
            continue
        if name == "content-type":
            key = "CONTENT_TYPE"
        elif name == "content-length":
            key = "CONTENT_LENGTH"
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if key in env:
            # RFC 6265's cookies are split on "; " (Werkzeug's, Django's parsers): joined
            # with a comma, a second Cookie header's went into the first one's last value
            value = f"{env[key]}{'; ' if key == 'HTTP_COOKIE' else ','}{value}"
        env[key] = value
    if body and "CONTENT_LENGTH" not in env:
        # a chunked body, here whole: Django reads CONTENT_LENGTH bytes, and none without
        env["CONTENT_LENGTH"] = str(len(body))
    return env


def _path_bytes(scope: MutableMapping[str, Any]) -> bytes:
    """The scope's path as bytes: those its ``raw_path`` percent-decodes to, when the
    ``path`` was made from it as hibana's HTTP front makes it (unquoted as UTF-8, and no
    ``..`` resolved: that one is taken as it is); else the ``path``'s UTF-8."""
    path: str = scope["path"]
    raw = scope.get("raw_path")
    if (
        isinstance(raw, bytes)
        and (b"%" in raw or not raw.isascii())
        and urllib.parse.unquote(raw.decode("latin-1")) == path
    ):
        return urllib.parse.unquote_to_bytes(raw)
    return path.encode("utf-8")


def _errors() -> io.TextIOBase:
    """``wsgi.errors``: lines of the request's invocation, or stderr with none (Lambda
    before a hibana invocation, a test)."""
    log = current_logger.get()
    return ErrorLines(log) if log is not None else sys.stderr  # type: ignore[return-value]
