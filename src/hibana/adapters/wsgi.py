"""A WSGI app (Flask, Django's WSGI handler...) as an ASGI app: ``app.wsgi`` mounts one
through ``AsgiMount``, and ``hibana.aws.handler`` runs one on Lambda.

Each request runs on one thread of a pool from the app's call to its body's ``close()``,
as a WSGI server's thread runs it: what the app keeps per thread (Django's database
connections, which its ``request_finished`` closes from ``close()``; a thread-local
session) is the same in its call, in each ``next()`` of its body and in ``close()``. The
thread hands each part of the body to the event loop and waits while the loop sends it,
so a streamed response holds its thread until its last part is sent: size the pool
(``app.wsgi(..., threads=N)``) for the streams served at once; the requests past it wait
for a thread, within their deadline. No thread waits for ever on a client: one that goes
away, one that reads nothing for the body timeout (it is cut off), a HEAD whose body is
not sent, a deadline that passes, each tells the thread to stop. It stops once the part
being made is done (a ``write()`` it is in raises ``ConnectionAbortedError``) and closes
the body (PEP 3333: its ``close()`` is called, complete or not; a generator's ``finally``
runs).

As PEP 3333 asks, the head goes out with the first non-empty part of the body, or the
first ``write()`` (or at the body's end), so an app may call ``start_response`` again,
with ``exc_info``, until then; and what ``write()`` is given has been passed on to the
client's connection when it returns (it waits while the client is behind). A body that is
whole by the time its first part is made (its ``Content-Length`` says so, or the app
returned a list of one) is sent as one whole response.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import queue
import sys
import traceback
import urllib.parse
from collections.abc import Callable, Iterable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hibana.telemetry.logs import current_logger
from hibana.telemetry.printed import ErrorLines

Message = MutableMapping[str, Any]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: Threads a WSGI app's requests run on, per worker, unless ``app.wsgi(threads=)`` says:
#: each is a request's from its call to its body's close().
THREADS = 32
#: What a ``write()`` raises once the response it writes goes nowhere.
_GONE = (
    "the response this write() is part of goes nowhere now: its client went away, its "
    "deadline passed, or it answers a HEAD"
)


def wsgi_to_asgi(wsgi_app: WSGIApp, threads: int = THREADS) -> WsgiBridge:
    return WsgiBridge(wsgi_app, threads)


class _Exchange:
    """One request's WSGI side, run on one pool thread (``serve``): ``start_response``,
    ``write`` and the body, each part handed to the loop as it comes."""

    __slots__ = (
        "app",
        "environ",
        "status",
        "headers",
        "sent",
        "result",
        "loop",
        "parts",
        "words",
        "stopped",
    )

    def __init__(
        self, app: WSGIApp, environ: dict[str, Any], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.app = app
        self.environ = environ
        self.status = ""
        self.headers: list[tuple[str, str]] | None = None
        #: The head is the loop's to send: start_response may no longer change it.
        self.sent = False
        self.result: Iterable[bytes] | None = None
        self.loop = loop
        #: What the thread hands the loop, in order: (a part of the body, whether more
        #: comes), or (what the app raised, False).
        self.parts: asyncio.Queue[tuple[bytes | BaseException, bool]] = asyncio.Queue()
        #: The loop's word on each part handed with more to come: True once it is sent,
        #: False to stop (put once more as the loop is done, whatever the thread does).
        self.words: queue.SimpleQueue[bool] = queue.SimpleQueue()
        #: The loop said to stop: nothing more is handed to it.
        self.stopped = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no cycle through the traceback
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
        if not self.hand(_bytes(data, "write() was given"), True):
            raise ConnectionAbortedError(_GONE)

    def hand(self, part: bytes, more: bool) -> bool:
        """Give the loop ``part`` (with ``more``: of a body that goes on) and, if more
        comes, wait until it is sent: whether to go on."""
        if self.headers is None:
            raise RuntimeError("the WSGI app returned without calling start_response")
        if self.stopped:
            return False
        self.sent = True
        self.loop.call_soon_threadsafe(self.parts.put_nowait, (part, more))
        if more and self.words.get():
            return True
        self.stopped = True
        return False

    def serve(self) -> None:
        """Run the request on this thread: the app's call, its body, its ``close()``."""
        try:
            result = self.result = self.app(self.environ, self.start_response)
            if result is None or isinstance(result, (bytes, bytearray, str)):
                # iterated, bytes are ints (each int was as many NUL bytes) and str characters
                shown = repr(result)[:60]
                raise TypeError(
                    f"the WSGI app returned {shown}, not an iterable of bytes (PEP 3333): "
                    "return [body], a list of its one part"
                )
            for chunk in result:
                if not chunk:
                    continue
                part = _bytes(chunk, "body holds")
                if (
                    not self.sent
                    and self.headers is not None
                    and _whole(part, result, self.headers)
                ):
                    self.hand(part, False)
                    return
                if not self.hand(part, True):
                    return
            self.hand(b"", False)
        except BaseException as exc:  # SystemExit too: the loop's task says what it was
            with contextlib.suppress(RuntimeError):  # the loop has closed: no one waits
                self.loop.call_soon_threadsafe(self.parts.put_nowait, (exc, False))
        finally:
            self.close()

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
        exchange = _Exchange(self.app, environ(scope, bytes(body)), asyncio.get_running_loop())
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="hibana-wsgi")
        # the invocation's logger, for the app's call, its body and its close()
        job = self._pool.submit(contextvars.copy_context().run, exchange.serve)
        try:
            part, more = await exchange.parts.get()
            if isinstance(part, BaseException):
                raise part
            assert exchange.headers is not None  # hand() saw to it
            headers = [
                (name.strip().lower().encode("latin-1"), value.strip().encode("latin-1"))
                for name, value in exchange.headers
            ]
            await send(
                {
                    "type": "http.response.start",
                    "status": int(exchange.status[:3]),
                    "headers": headers,
                }
            )
            while more:
                if part:
                    await send({"type": "http.response.body", "body": part, "more_body": True})
                exchange.words.put(True)
                part, more = await exchange.parts.get()
                if isinstance(part, BaseException):
                    raise part
            await send({"type": "http.response.body", "body": part, "more_body": False})
        finally:
            # done, failed or stopped (the client left, a HEAD, the deadline): the thread
            # stops once the part it makes is done, and closes the body; one that never
            # started never will
            if not job.cancel():
                exchange.words.put(False)


def _bytes(data: Any, what: str) -> bytes:
    """``data``, bytes as PEP 3333 asks of a body: a ``TypeError`` naming it if not."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    shown = repr(data[:40] if isinstance(data, str) else data)[:60]
    raise TypeError(
        f"the WSGI app's {what} a {type(data).__name__} {shown}, not bytes (PEP 3333): "
        "encode it, as in text.encode()"
    )


def _whole(first: bytes, result: Any, headers: list[tuple[str, str]]) -> bool:
    """Whether ``first`` is the whole body: the app returned a list or tuple of one part,
    or declared a ``Content-Length`` that it fills."""
    if isinstance(result, (list, tuple)) and len(result) == 1:
        return True
    for name, value in headers:
        if name.strip().lower() == "content-length":
            value = value.strip()
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
    as ``X-User`` and pass for it. ``SERVER_NAME`` and ``SERVER_PORT`` are those of the
    ``Host`` the client asked, as gunicorn has them: its port, or the scheme's (443 for
    https, 80 for http), not the worker's socket's (behind a proxy that ends TLS, Django's
    ``get_port()`` said 8080 of a page at https://example.com/)."""
    script_name = scope.get("root_path", "").encode("utf-8")
    path = _path_bytes(scope)
    if script_name and path.startswith(script_name):
        path = path[len(script_name) :]
    scheme = scope.get("scheme", "http")
    env: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": script_name.decode("latin-1"),
        "PATH_INFO": path.decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
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
    env["SERVER_NAME"], env["SERVER_PORT"] = server_of(env.get("HTTP_HOST"), scope, scheme)
    return env


def server_of(host: str | None, scope: MutableMapping[str, Any], scheme: str) -> tuple[str, str]:
    """The name and port a request was sent to (``SERVER_NAME`` and ``SERVER_PORT``): of
    ``host`` (``example.com:8443``, ``[::1]:8080``), the port the scheme's when it names
    none; without a Host (HTTP/1.0), the scope's server."""
    default = "443" if scheme == "https" else "80"
    if host:
        name, colon, port = host.rpartition(":")
        if colon and port.isdigit() and (":" not in name or name.endswith("]")):
            return name, port
        return host, default
    server = scope.get("server") or ("localhost", None)
    return str(server[0]), str(server[1] or default)


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
