"""The app most host tests run: one function per behaviour under test."""

import asyncio
import contextlib
import contextvars
import csv
import functools
import hashlib
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import hibana

from extra import bp  # a blueprint from a second module

app = hibana.App()
app.register(bp)

print("basic app imported")  # stdout is JSON lines: this becomes one too


@app.http("/print/{how}", methods=["GET"])
def printing(req: hibana.Request, ctx: hibana.Context) -> str:
    """Prints, and logs through the standard logging module, as a library would."""
    print("printed", req.params["how"], "by", ctx.invocation_id)
    sys.stdout.buffer.write(b"bytes written by " + ctx.invocation_id.encode() + b"\n")
    sys.stdout.buffer.write(b"caf\xc3")  # a character split between two writes
    sys.stdout.buffer.write(b"\xa9 by " + ctx.invocation_id.encode() + b"\n")
    csv.writer(sys.stdout).writerow(["a csv row", ctx.invocation_id])  # ends in \r\n
    logging.getLogger("some.library").warning("logged through %s", "logging")
    try:
        raise ValueError("a library's failure")
    except ValueError:
        logging.getLogger("some.library").exception("it broke", extra={"order": 7, "msg_id": 1})
    if req.params["how"] == "unfinished":
        print("no newline yet", end="")
    return "printed"


@app.http("/library-logs", methods=["GET"])
def library_logs(req: hibana.Request, ctx: hibana.Context) -> str:
    """A library that sets its own level, and a call whose arguments miss its format."""
    chatty = logging.getLogger("chatty.library")
    chatty.setLevel(logging.DEBUG)
    chatty.debug("a debug line of the library")
    chatty.info("two places %s %s", 1)
    chatty.warning(_NoStr())  # logging.warning(obj), obj's __str__ raising
    return "logged"


class _NoStr:
    def __str__(self) -> str:
        raise ValueError("no str here")


@app.http("/form", methods=["POST"])
def form(req: hibana.Request, ctx: hibana.Context) -> dict[str, object]:
    files = req.files()
    return {
        "fields": req.form().multi_items(),
        "files": [
            [name, f.filename, f.content_type, f.size, hashlib.sha256(f.data).hexdigest()]
            for name, f in files.multi_items()
        ],
    }


@app.http("/fork", methods=["GET"])
def fork(req: hibana.Request, ctx: hibana.Context) -> str:
    """Forks, as a multiprocessing pool does; the child prints."""
    pid = os.fork()
    if pid == 0:
        print("printed by a forked child")
        os._exit(0)
    os.waitpid(pid, 0)
    return "forked"


@app.http("/print-in-threads", methods=["GET"])
def print_in_threads(req: hibana.Request, ctx: hibana.Context) -> str:
    """Prints from threads it starts: one bare, one in a copy of its context."""
    inv = ctx.invocation_id
    bare = threading.Thread(target=print, args=(f"bare thread of {inv}",))
    carried = threading.Thread(
        target=contextvars.copy_context().run, args=(print, f"context thread of {inv}")
    )
    for thread in (bare, carried):
        thread.start()
        thread.join()
    return "printed"


@app.http("/outside", methods=["GET"])
def outside(req: hibana.Request, ctx: hibana.Context) -> str:
    """Writes to fd 1 without sys.stdout, as a subprocess or a C library does."""
    inv = ctx.invocation_id
    subprocess.run(["sh", "-c", f"echo child of {inv}; echo second line of {inv}"], check=True)
    subprocess.run(["echo", f"handed sys.stdout by {inv}"], stdout=sys.stdout, check=True)
    os.write(1, f"os.write by {inv}\r\n".encode())
    os.write(1, b"caf\xc3")
    os.write(1, b"\xa9 at exit, unfinished")
    return "written"


@app.http("/print-async", methods=["GET"])
async def printing_async(req: hibana.Request, ctx: hibana.Context) -> str:
    print("printed async by", ctx.invocation_id)
    logging.getLogger("some.library").warning("logged async")
    return "printed"


@app.http("/print-threads", methods=["GET"])
async def printing_threads(req: hibana.Request, ctx: hibana.Context) -> str:
    """Prints from threads of its own: with the invocation's context, and without."""
    await asyncio.to_thread(print, "printed in to_thread by", ctx.invocation_id)
    carried = threading.Thread(
        target=contextvars.copy_context().run,
        args=(print, "printed in a thread with the context by", ctx.invocation_id),
    )
    plain = threading.Thread(target=print, args=("printed in a plain thread by", ctx.invocation_id))
    for thread in (carried, plain):
        thread.start()
        thread.join()
    return "printed"


@app.http("/hello/{name}", methods=["GET"])
def hello(req: hibana.Request, ctx: hibana.Context) -> str:
    ctx.log.info("greeting", name=req.params["name"])
    return f"Hello {req.params['name']}"


@app.http("/log-odd", methods=["GET"])
def log_odd(req: hibana.Request, ctx: hibana.Context) -> str:
    """Logs a lone surrogate (a file name that is not UTF-8) beside a dict with a tuple key."""
    ctx.log.info("upload", filename="caf\udce9.txt", sizes={(640, 480): "vga"})
    ctx.log.bind(filename="caf\udce9.txt", sizes={(640, 480): "vga"}).info("bound upload")
    return "logged"


@app.http("/log-clash/{case}", methods=["GET"])
def log_clash(req: hibana.Request, ctx: hibana.Context) -> str:
    """Logs fields whose names a line or its renaming already uses, or at no level."""
    case = req.params["case"]
    if case == "msg":
        ctx.log.info("clash", msg="kept?", msg_="other")
    elif case == "exception":
        try:
            raise ValueError("the upload is empty")
        except ValueError as exc:
            ctx.log.exception("upload failed", exc, error="mine")
    elif case == "bound":
        try:
            raise ValueError("the upload is empty")
        except ValueError as exc:
            ctx.log.bind(error="bound", traceback="mine too").exception("bound failed", exc)
    elif case == "logging":
        try:
            raise ValueError("the library broke")
        except ValueError:
            logging.getLogger("some.library").exception(
                "library failed", extra={"error_": "second", "error": "first", "ts": "then"}
            )
    elif case == "invocation":
        # a function's own line about an invocation (a payment's, say), not the host's
        ctx.log.info("invocation", outcome="declined", status=402)
        logging.getLogger("payments").info("invocation", extra={"outcome": "declined"})
    else:
        ctx.log.log(case, "at a level of its own")
    return "logged"


@app.http("/chatty/{lines:int}", methods=["GET"])
def chatty(req: hibana.Request, ctx: hibana.Context) -> str:
    """Logs ``lines`` lines of about 1 KB each (a function that logs a lot)."""
    for i in range(req.params["lines"]):
        ctx.log.info("chatter", i=i, pad="x" * 1000)
    return str(os.getpid())


@app.http("/items/{id:int}", methods=["GET", "PUT"])
async def item(req: hibana.Request, ctx: hibana.Context) -> dict[str, object]:
    return {"id": req.params["id"], "type": type(req.params["id"]).__name__, "method": req.method}


@app.http("/inspect", methods=["GET", "POST"])
async def inspect(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    return hibana.Response.json(
        {
            "query": req.query.multi_items(),
            "tags": req.query.getlist("tag"),
            "first_tag": req.query.get("tag"),
            "x_multi": req.headers.getlist("X-Multi"),
            "cookies": req.cookies,
            "path": req.path,
            "url": req.url,
            "client": list(req.client or ()),
            "invocation_id": ctx.invocation_id,
            "function": ctx.function_name,
            "attempt": ctx.attempt,
            "remaining_ok": 0 < ctx.remaining <= 60,
            "trace_id": ctx.trace.trace_id,
            "span_id": ctx.trace.span_id,
            "parent_span_id": ctx.trace.parent_span_id,
            "tracestate": ctx.trace.tracestate,
        }
    )


@app.http("/echo", methods=["POST"])
def echo(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    ctype = req.headers.get("content-type", "application/octet-stream")
    return hibana.Response(req.body, status=200, content_type=ctype)


@app.http("/text", methods=["POST"])
def text(req: hibana.Request, ctx: hibana.Context) -> str:
    return req.text()


@app.http("/json", methods=["POST"])
async def json_echo(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    return hibana.Response.json({"got": req.json()}, status=201)


@app.http("/bytes")
def raw_bytes(req: hibana.Request, ctx: hibana.Context) -> bytes:
    return bytes(range(256))


@app.http("/nothing", methods=["DELETE"])
def nothing(req: hibana.Request, ctx: hibana.Context) -> None:
    return None


@app.http("/cookies")
def cookies(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    resp = hibana.Response.text("set", status=202)
    resp.set_cookie("session", "abc", httponly=True)
    resp.set_cookie("theme", "dark", max_age=60)
    return resp


@app.http("/boom")
def boom(req: hibana.Request, ctx: hibana.Context) -> str:
    raise RuntimeError("secret detail that must stay in the log")


@app.http("/boom-async")
async def boom_async(req: hibana.Request, ctx: hibana.Context) -> str:
    await asyncio.sleep(0)
    return fail_deeper()


def fail_deeper() -> str:
    raise RuntimeError("secret detail from a helper")


@app.http("/http-error-headers/{how}")
def http_error_headers(req: hibana.Request, ctx: hibana.Context) -> str:
    """Raises an HTTPError whose headers are no headers (a None value, a line of text), or
    whose detail JSON cannot carry (an exception)."""
    how = req.params["how"]
    if how == "none":
        raise hibana.HTTPError(429, "slow down", headers={"retry-after": None})  # type: ignore[dict-item]
    if how == "text":
        raise hibana.HTTPError(429, "slow down", headers="retry-after: 1")  # type: ignore[arg-type]
    try:
        int(req.query.get("id", "x"))
    except ValueError as exc:
        raise hibana.BadRequest(exc) from exc  # type: ignore[arg-type]
    return "a number"


class Page(hibana.Response):
    """A Response of the app's own whose __init__ forgets Response's."""

    def __init__(self, html: str) -> None:
        self.html = html


class Undecided(hibana.Response):
    """A Response whose status is a property that raises when it is read."""

    @property  # type: ignore[override]
    def status(self) -> int:
        raise LookupError("the status is not decided yet")

    @status.setter
    def status(self, value: int) -> None:
        pass


@app.http("/set-after/{how}")
def set_after(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    """Returns a Response whose headers or body were set after it was made."""
    how = req.params["how"]
    response = hibana.Response("made")
    if how == "count":
        response.headers.append(("x-count", 5))  # type: ignore[arg-type]
    elif how == "line":
        response.headers.append("x-count: 5")  # type: ignore[arg-type]
    elif how == "text":
        response.body = "set after"  # type: ignore[assignment]
    elif how == "replaced":
        response.headers = {"x-count": "5"}  # type: ignore[assignment]
    elif how == "cleared":
        response.headers = None  # type: ignore[assignment]
    elif how == "half":
        return Page("<p>made</p>")
    elif how == "undecided":
        return Undecided("made")
    elif how == "bytearray":
        response.body = bytearray(b"set after")  # type: ignore[assignment]
    return response


@app.http("/needs/{what}", methods=["GET", "POST"])
def needs(req: hibana.Request, ctx: hibana.Context) -> dict[str, object]:
    """Reads with [] what the client may have left out; or does without it (``optional``)."""
    what = req.params["what"]
    if what == "optional":
        try:
            return {"page": req.query["page"]}
        except KeyError:
            return {"page": None}
    if what == "page":
        return {"page": req.query["page"]}
    if what == "key":
        return {"key": req.headers["X-Api-Key"]}
    if what == "field":
        return {"name": req.form()["name"]}
    if what == "cookie":
        return {"session": req.cookies["session"]}
    return {"upload": req.files()["upload"].filename}


class NotFound(hibana.HTTPError):
    """An HTTPError of the app's own whose __init__ forgets HTTPError's."""

    def __init__(self, what: str) -> None:
        self.what = what


@app.http("/spoilt-http-error/{how}")
def spoilt_http_error(req: hibana.Request, ctx: hibana.Context) -> str:
    if req.params["how"] == "init":
        raise NotFound("order 7")
    err = hibana.HTTPError(404, "no order 7")
    err.status = "404"  # type: ignore[assignment]
    raise err


@app.http("/teapot")
async def teapot(req: hibana.Request, ctx: hibana.Context) -> str:
    raise hibana.HTTPError(418, "short and stout")


@app.http("/unavailable")
def unavailable(req: hibana.Request, ctx: hibana.Context) -> str:
    raise hibana.HTTPError(503, "the ledger is down for a bit")


class _Unprintable(Exception):
    """An exception whose ``str()`` itself raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text for this one")


@app.http("/unprintable")
def unprintable(req: hibana.Request, ctx: hibana.Context) -> str:
    raise _Unprintable()


@app.http("/unprintable-async")
async def unprintable_async(req: hibana.Request, ctx: hibana.Context) -> str:
    raise _Unprintable()


@app.http("/cancels-itself")
def cancels_itself(req: hibana.Request, ctx: hibana.Context) -> str:
    raise hibana.Cancelled("giving up of its own")  # unasked: no one cancelled it


@app.http("/bad-return")
def bad_return(req: hibana.Request, ctx: hibana.Context) -> object:
    if req.query.get("in") == "dict":
        return {"when": object()}  # a dict, but not all of it JSON
    if req.query.get("in") == "tuple":
        return {"id": 7}, 201  # as Flask has it
    if req.query.get("in") == "cycle":
        order: dict[str, object] = {"id": 1}
        order["self"] = order  # a dict that holds itself
        return order
    if req.query.get("in") == "surrogate":
        return {"file": "caf\udce9.txt"}  # a file name that is not UTF-8
    return 42


@app.http("/forgot-await")
async def forgot_await(req: hibana.Request, ctx: hibana.Context) -> object:
    return asyncio.sleep(0, "never")  # no await: a coroutine, not its result


@app.http("/sleep/{seconds:float}", timeout=0.5)
async def sleep(req: hibana.Request, ctx: hibana.Context) -> str:
    try:
        await asyncio.sleep(req.params["seconds"])
    except asyncio.CancelledError:
        ctx.log.info("async function saw cancellation", reason=ctx.cancel_reason)
        raise
    return "slept"


@app.http("/busy/{seconds:float}", timeout=0.1)
def busy(req: hibana.Request, ctx: hibana.Context) -> str:
    """Sync work that outlives its timeout, and says when it starts."""
    ctx.log.info("busy started", remaining=ctx.remaining)
    time.sleep(req.params["seconds"])
    return "done"


@app.http("/work/{seconds:float}", timeout=30)
def work(req: hibana.Request, ctx: hibana.Context) -> str:
    """Sync work that checks for cancellation, as long-running sync code should."""
    end = time.monotonic() + req.params["seconds"]
    while time.monotonic() < end:
        if ctx.cancelled:
            ctx.log.info("sync function saw cancellation", reason=ctx.cancel_reason)
            return "stopped early"
        time.sleep(0.01)
    return "worked"


@app.http("/cooperative", timeout=0.3)
def cooperative(req: hibana.Request, ctx: hibana.Context) -> str:
    while not ctx.cancelled:
        time.sleep(0.01)
    ctx.log.info("sync function saw cancellation", reason=ctx.cancel_reason)
    return "too late"


@app.http("/hang", timeout=0.3)
def hang(req: hibana.Request, ctx: hibana.Context) -> str:
    time.sleep(3600)  # ignores cancellation: its worker must be replaced
    return "never"


@app.http("/limited/{seconds:float}", max_concurrency=1)
async def limited(req: hibana.Request, ctx: hibana.Context) -> str:
    until = req.query.get("until")  # held until this file exists (``seconds`` at most)
    if until:
        # another process (the test) makes the file: nothing in this one to wait on
        end = time.monotonic() + req.params["seconds"]
        while not os.path.exists(until) and time.monotonic() < end:  # noqa: ASYNC110, ASYNC240
            await asyncio.sleep(0.02)
    else:
        await asyncio.sleep(req.params["seconds"])
    return "done"


@app.http("/slow/{seconds:float}", timeout=30)
async def slow(req: hibana.Request, ctx: hibana.Context) -> str:
    """Ignores cancellation: shutdown must still let it finish within shutdown_timeout."""
    await asyncio.sleep(req.params["seconds"])
    return f"finished, cancelled={ctx.cancelled}"


@app.http("/finish-after-cancel", timeout=30)
async def finish_after_cancel(req: hibana.Request, ctx: hibana.Context) -> str:
    """Runs until it is cancelled (20 s at most), then on for a while: shutdown must let
    it finish within shutdown_timeout. Unlike a fixed sleep, it is still running when a
    signal sent late on a loaded machine arrives."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ctx.wait_cancelled(), 20)
    await asyncio.sleep(0.5)
    return f"finished, cancelled={ctx.cancelled}"


@app.http("/overdue-soon", timeout=3)
async def overdue_soon(req: hibana.Request, ctx: hibana.Context) -> str:
    await asyncio.sleep(30)  # cancelled at its deadline: a 504
    return "never"


@app.http("/runaway-regex", timeout=0.5, max_concurrency=1)
def runaway_regex(req: hibana.Request, ctx: hibana.Context) -> str:
    """Holds the GIL in C code for ever (catastrophic backtracking): nothing in its worker
    runs again, its watchdog thread neither."""
    return str(bool(re.match(r"(a+)+$", "a" * 64 + "b")))


@app.http("/block-loop-briefly", timeout=0.3)
async def block_loop_briefly(req: hibana.Request, ctx: hibana.Context) -> str:
    # past the timeout, but back before --cancel-grace more: the deadline's timer never ran
    time.sleep(0.45)  # noqa: ASYNC251 - blocking call in async code, on purpose
    return "too late"


@app.http("/block-loop", timeout=0.3)
async def block_loop(req: hibana.Request, ctx: hibana.Context) -> str:
    time.sleep(3600)  # noqa: ASYNC251 - blocking call in async code, on purpose
    return "never"


@app.http("/stream/{n:int}")
async def stream(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    async def parts() -> AsyncIterator[bytes | str]:
        for i in range(req.params["n"]):
            text = f"part {i}\n"
            yield text if i % 2 else text.encode()  # str is sent as UTF-8

    return hibana.StreamingResponse(parts(), content_type="text/plain")


@app.http("/large/{mb:int}")
def large(req: hibana.Request, ctx: hibana.Context) -> bytes:
    return b"x" * (req.params["mb"] << 20)


@app.http("/flood")
async def flood(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    async def parts() -> AsyncIterator[bytes]:
        sent = 0
        try:
            while sent < 2000:  # 125 MiB, and never an await of its own
                sent += 1
                yield b"x" * 65536
        finally:
            ctx.log.info("flood stopped", chunks=sent)

    return hibana.StreamingResponse(parts())


@app.http("/broken-stream")
async def broken_stream(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    async def parts() -> AsyncIterator[bytes]:
        yield b"the first part\n"
        raise RuntimeError("the source went away")

    return hibana.StreamingResponse(parts(), content_type="text/plain")


@app.http("/stream-odd")
async def stream_odd(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    async def parts() -> AsyncIterator[bytes]:
        yield b"counted: "
        yield 5  # type: ignore[misc]

    return hibana.StreamingResponse(parts(), content_type="text/plain")


@app.http("/wait-for-client", timeout=10)
async def wait_for_client(req: hibana.Request, ctx: hibana.Context) -> str:
    await asyncio.wait_for(ctx.wait_cancelled(), 5)
    ctx.log.info("saw cancellation", reason=ctx.cancel_reason)
    ctx.raise_if_cancelled()
    return "never"


@app.http("/ticker")
async def ticker(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    """Ticks until told to stop (``?deaf=1``: until its client goes, or it is cut off)."""
    return _ticker(req, ctx)


@app.http("/ticker-short", timeout=0.5)
async def ticker_short(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    """The ticker under a deadline of its own, which its stream outlives."""
    return _ticker(req, ctx)


def _ticker(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    deaf = req.query.get("deaf") == "1"

    async def ticks() -> AsyncIterator[bytes]:
        try:
            while deaf or not ctx.cancelled:
                yield b"tick\n"
                await asyncio.sleep(0.05)
        finally:
            ctx.log.info("ticker stopped", reason=ctx.cancel_reason)

    return hibana.StreamingResponse(ticks(), content_type="text/plain")


@app.http("/forged-header")
def forged_header(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    return hibana.Response("x", headers={"x-note": "a\r\nset-cookie: stolen=1"})


@app.http("/own-trace-headers")
def own_trace_headers(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    """A function setting the headers the host sets on every answer of its own."""
    own = f"00-{'a' * 32}-{'b' * 16}-01"
    return hibana.Response("x", headers={"traceparent": own, "X-Invocation-Id": "mine"})


@app.http("/set-status")
def set_status(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    """A status set after the Response was made (``?to=999``; ``&as=str``: the text)."""
    response = hibana.Response("body")
    to = req.query.get("to", "200")
    response.status = to if req.query.get("as") == "str" else int(to)  # type: ignore[assignment]
    return response


class Greeter:
    """An object whose class has an ``async def __call__``: an async function."""

    async def __call__(self, req: hibana.Request, ctx: hibana.Context) -> str:
        await asyncio.sleep(0)
        return f"greeted by a {type(self).__name__}"


app.http("/callable-object", name="callable_object")(Greeter())


def _traced(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A decorator whose wrapper is a plain def: around an async def, it returns the
    coroutine without awaiting it."""

    @functools.wraps(fn)
    def wrapper(req: hibana.Request, ctx: hibana.Context) -> Any:
        return fn(req, ctx)

    return wrapper


@app.http("/wrapped-async")
@_traced
async def wrapped_async(req: hibana.Request, ctx: hibana.Context) -> str:
    return "never"


def _asked_headers(req: hibana.Request) -> list[tuple[str, str]]:
    """The headers in the query (``?h=Name:Value``, repeatable): what an app copying an
    upstream response's headers would return."""
    return [(name, value) for name, _, value in (h.partition(":") for h in req.query.getlist("h"))]


@app.http("/answer/{status:int}")
def answer(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    body = "" if req.method == "HEAD" else req.query.get("body", "body-text")
    return hibana.Response(body, status=req.params["status"], headers=_asked_headers(req))


@app.http("/answer-stream/{status:int}")
async def answer_stream(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    async def parts() -> AsyncIterator[bytes]:
        yield b"part"

    return hibana.StreamingResponse(parts(), req.params["status"], _asked_headers(req))


@app.http("/stream-then-linger")
async def stream_then_linger(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    """All of its declared body, then a while before the stream ends (a mounted WSGI app
    whose bridge finishes after the body has gone out)."""

    async def parts() -> AsyncIterator[bytes]:
        yield b"whole"
        await asyncio.sleep(1)

    return hibana.StreamingResponse(parts(), headers={"content-length": "5"})


@app.http("/cookie-from-query")
def cookie_from_query(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    resp = hibana.Response.text("set")
    resp.set_cookie("session", req.query.get("v", ""))
    return resp


@app.http("/preflight", methods=["OPTIONS"])
def preflight(req: hibana.Request, ctx: hibana.Context) -> None:
    return None


@app.http("/cancelled-inside")
async def cancelled_inside(req: hibana.Request, ctx: hibana.Context) -> str:
    """Awaits a task of its own that was cancelled: CancelledError escapes the function."""
    task = asyncio.create_task(asyncio.sleep(10))
    await asyncio.sleep(0)
    task.cancel()
    await task
    return "never"


@app.http("/deaf-async", timeout=0.3)
async def deaf_async(req: hibana.Request, ctx: hibana.Context) -> str:
    """Swallows its cancellation and runs on past its deadline and the grace."""
    end = time.monotonic() + 3
    while time.monotonic() < end:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.05)
    ctx.log.info("deaf function done")
    return "too late"
