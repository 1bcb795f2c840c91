"""Flask, FastAPI and Django apps mounted in one hibana app, beside a hibana function."""

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import django
from django.conf import settings
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import StreamingResponse
from flask import Flask, jsonify, request, url_for

import hibana

# -- Flask (WSGI) -----------------------------------------------------------------------------
flask_app = Flask(__name__)


@flask_app.get("/")
def flask_root():  # type: ignore[no-untyped-def]
    return jsonify(root=True, url=url_for("flask_root"))


@flask_app.get("/items/<int:item_id>")
def flask_item(item_id: int):  # type: ignore[no-untyped-def]
    return jsonify(
        id=item_id,
        tags=request.args.getlist("tag"),
        accept=request.headers.getlist("X-Multi"),
        self_url=url_for("flask_item", item_id=item_id),
        script_name=request.environ["SCRIPT_NAME"],
        path_info=request.environ["PATH_INFO"],
    )


@flask_app.post("/echo")
def flask_echo():  # type: ignore[no-untyped-def]
    resp = flask_app.response_class(request.get_data(), mimetype="application/octet-stream")
    resp.set_cookie("a", "1")
    resp.set_cookie("b", "2")
    return resp


@flask_app.get("/cookies")
def flask_cookies():  # type: ignore[no-untyped-def]
    return jsonify(request.cookies.to_dict())


@flask_app.get("/complain")
def flask_complain():  # type: ignore[no-untyped-def]
    flask_app.logger.error("the upstream said no")  # Flask's handler writes to wsgi.errors
    request.environ["wsgi.errors"].write("written to wsgi.errors\n")
    request.environ["wsgi.errors"].write("ended by CRLF\r\n")  # as csv and Windows end a line
    return "complained"


#: What each streamed WSGI body (/flask/gen, /django/stream) did, by its ?tag: "closed"
#: once its generator ended, whole or not.
wsgi_streams: dict[str, str] = {}


def wsgi_parts(tag: str) -> Iterator[str]:
    wsgi_streams[tag] = "started"
    try:
        for i in range(50):
            yield f"{i}\n" * 1000
            time.sleep(0.1)
        wsgi_streams[tag] = "ended"
    finally:
        wsgi_streams[tag] += ", closed"


@flask_app.get("/gen")
def flask_gen():  # type: ignore[no-untyped-def]
    return flask_app.response_class(wsgi_parts(request.args.get("tag", "")), mimetype="text/plain")


@flask_app.get("/streams")
def flask_stream_states():  # type: ignore[no-untyped-def]
    return jsonify(wsgi_streams)


def late_error(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A bare WSGI app that starts a 200, then fails before its body: PEP 3333 lets it
    send an error page instead (start_response again, with exc_info)."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise LookupError("the record vanished")
    except LookupError:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"sorry"]


def late_error_after_write(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """As late_error, once it wrote a part of its page with write()."""
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"<html>half a page")
    try:
        raise LookupError("the record vanished")
    except LookupError:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"sorry"]


def write_between(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    """A bare WSGI app that uses write() (PEP 3333's legacy way) between its parts."""
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"<")
    yield b"a"
    write(b"WRITTEN")
    yield b"b"
    write(b">")


def path_info(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A bare WSGI app that answers its PATH_INFO's bytes."""
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [environ["PATH_INFO"].encode("latin-1")]


class FailsToClose:
    """A body whose close() raises, as a session's commit in it might."""

    def __iter__(self) -> Iterator[bytes]:
        yield b"answered"

    def close(self) -> None:
        raise RuntimeError("the session could not commit")


def fails_to_close(environ: dict[str, Any], start_response: Any) -> FailsToClose:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return FailsToClose()


def str_body(environ: dict[str, Any], start_response: Any) -> list[str]:
    """A bare WSGI app that gives text, where PEP 3333 asks for bytes."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["hello"]


def bare_bytes(environ: dict[str, Any], start_response: Any) -> bytes:
    """A bare WSGI app that returns its body itself, not in a list."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return b"hello"


def int_header(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A bare WSGI app whose Content-Length is a number, where PEP 3333 asks for text."""
    start_response("200 OK", [("Content-Length", 2)])
    return [b"hi"]


# -- FastAPI (ASGI) ---------------------------------------------------------------------------
state: dict[str, int] = {"startups": 0, "shutdowns": 0}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
    state["startups"] += 1
    yield {"db": "connected-db"}  # the lifespan state: each request's request.state
    state["shutdowns"] += 1


api = FastAPI(lifespan=lifespan)


@api.get("/")
async def api_root(request: Request) -> dict[str, object]:
    return {"root": True, "url": str(request.url_for("api_root"))}


async def after_answer(job: str, until: str) -> None:
    print(f"background {job} started")
    # the test makes the file (another process): never before it has checked
    while not os.path.exists(until):  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.02)
    print(f"background {job} done")


@api.api_route("/job/{job}", methods=["POST", "HEAD"])
async def api_job(job: str, until: str, tasks: BackgroundTasks) -> dict[str, str]:
    tasks.add_task(after_answer, job, until)  # runs after the answer, in the app's own call
    return {"queued": job}


@api.get("/db")
async def api_db(request: Request) -> dict[str, str]:
    return {"db": request.state.db}


@api.get("/hello/{name}")
async def api_hello(name: str, request: Request) -> dict[str, object]:
    return {
        "hello": name,
        "root_path": request.scope["root_path"],
        "url": str(request.url_for("api_hello", name=name)),
        "startups": state["startups"],
        "q": request.query_params.getlist("q"),
        "multi": request.headers.getlist("x-multi"),
    }


@api.get("/events")
async def api_events() -> StreamingResponse:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"data: tick {i}\n\n".encode()
            await asyncio.sleep(0.3)

    return StreamingResponse(gen(), media_type="text/event-stream")


@api.get("/events-broken")
async def api_events_broken() -> StreamingResponse:
    async def gen() -> AsyncIterator[bytes]:
        yield b"data: tick 0\n\n"
        raise RuntimeError("the feed went away")

    return StreamingResponse(gen(), media_type="text/event-stream")


big_chunks_sent = 0


@api.get("/big/{count}")
async def api_big(count: int) -> StreamingResponse:
    async def gen() -> AsyncIterator[bytes]:
        global big_chunks_sent
        for _ in range(count):
            yield b"x" * 65536
            big_chunks_sent += 1

    return StreamingResponse(gen(), media_type="application/octet-stream")


@api.get("/big-sent")
async def api_big_sent() -> dict[str, int]:
    return {"sent": big_chunks_sent}


@api.get("/boom")
async def api_boom() -> None:
    raise RuntimeError("fastapi handler failed")


@api.get("/slow")
async def api_slow() -> dict[str, str]:
    await asyncio.sleep(30)
    return {"slow": "done"}


async def raw_after(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app that answers, then fails while cleaning up."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"answered"})
    raise RuntimeError("failed after the answer")


async def str_headers(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app that gives its headers as str, where ASGI asks for bytes, then
    takes its time over the body."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [("x-a", "1")]})
    await asyncio.sleep(30)
    await send({"type": "http.response.body", "body": b"late"})


async def bad_status(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app that starts a response with a status no client can take."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 999, "headers": []})
    await asyncio.sleep(30)
    await send({"type": "http.response.body", "body": b"late"})


async def out_of_order(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app that sends what no response is made of, by the path's last part: a
    body before its start, a second start, a message of a type HTTP has not."""
    if scope["type"] != "http":
        return
    start = {"type": "http.response.start", "status": 200, "headers": []}
    kind = scope["path"].rsplit("/", 1)[-1]
    if kind == "body-first":
        await send({"type": "http.response.body", "body": b"lost ", "more_body": True})
        await send(start)
    elif kind == "two-starts":
        await send(start)
        await send({**start, "status": 201})
    else:
        await send(start)
        await send({"type": "http.response.trailers", "headers": []})
    await send({"type": "http.response.body", "body": b"the rest"})


# -- Django (WSGI) ----------------------------------------------------------------------------
if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests-only",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
    )
    django.setup()

from django.http import (  # noqa: E402
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path, reverse  # noqa: E402


def django_view(request: HttpRequest, slug: str) -> JsonResponse:
    return JsonResponse(
        {"slug": slug, "reverse": reverse("view", args=[slug]), "x": request.GET.getlist("x")}
    )


def django_stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(wsgi_parts(request.GET.get("tag", "")))


def django_echo(request: HttpRequest) -> HttpResponse:
    """Its body back: Django reads as much of wsgi.input as CONTENT_LENGTH says."""
    return HttpResponse(request.body, content_type="application/octet-stream")


urlpatterns = [
    path("pages/<slug:slug>", django_view, name="view"),
    path("stream", django_stream),
    path("echo", django_echo),
]

from django.core.wsgi import get_wsgi_application  # noqa: E402


async def waits_for_disconnect(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A long poll: answers nothing until its client goes, as receive() says."""
    if scope["type"] != "http":
        return
    while (await receive())["type"] != "http.disconnect":
        pass
    print(f"saw http.disconnect on {scope['path']}")


# -- the hibana app ---------------------------------------------------------------------------
app = hibana.App()
app.wsgi("/flask", flask_app)
app.wsgi("/late-error", late_error)
app.wsgi("/late-error-after-write", late_error_after_write)
app.wsgi("/write-between", write_between)
app.wsgi("/path-info", path_info)
app.wsgi("/str-body", str_body)
app.wsgi("/fails-to-close", fails_to_close)
app.wsgi("/bare-bytes", bare_bytes)
app.wsgi("/int-header", int_header)
app.asgi("/api", api, timeout=3)  # streams run under it too: room for the slow client's
app.wsgi("/django", get_wsgi_application())
app.asgi("/raw-after", raw_after)
app.asgi("/str-headers", str_headers, timeout=3)
app.asgi("/bad-status", bad_status, timeout=3)
app.asgi("/out-of-order", out_of_order, timeout=3)
app.asgi("/long-poll", waits_for_disconnect, timeout=30)


@app.http("/native", methods=["GET"])
def native(req: hibana.Request, ctx: hibana.Context) -> str:
    return "native"


@app.http("/remaining", methods=["GET"])
async def remaining(req: hibana.Request, ctx: hibana.Context) -> dict[str, float]:
    return {"remaining": ctx.remaining}


# -- AWS Lambda handlers served by hibana --------------------------------------------------------
import base64  # noqa: E402
import json  # noqa: E402
from decimal import Decimal  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def legacy(event: dict[str, Any], context: Any) -> dict[str, Any]:
    body = json.dumps(
        {
            "event": event,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "request_id": context.aws_request_id,
            # every attribute AWS documents for the context object is there
            "context": sorted(a for a in dir(context) if not a.startswith("_")),
            "identity": context.identity,
            "client_context": context.client_context,
        }
    )
    return {
        "statusCode": 201,
        "headers": {"content-type": "application/json"},
        "multiValueHeaders": {"set-cookie": ["a=1; Path=/", "b=2; Path=/"], "x-multi": ["1", "2"]},
        "body": body,
        "isBase64Encoded": False,
    }


def legacy_v2(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event["rawPath"].endswith("/png"):
        return {
            "statusCode": 200,
            "headers": {"content-type": "image/png"},
            "cookies": ["c=3", "d=4"],
            "body": base64.b64encode(PNG).decode(),
            "isBase64Encoded": True,
        }
    if event["rawPath"].endswith("/dict-body"):
        return {"statusCode": 200, "body": {"a": 1}}  # not a string: AWS would refuse it
    return {"got": event}  # a bare value: HTTP APIs answer 200 with it as JSON


def bare(event: dict[str, Any], context: Any) -> Any:
    """Results an integration reads its own way: HTTP APIs take a value without statusCode
    for the body; REST APIs and ALBs refuse it (502)."""
    case = (event.get("rawPath") or event["path"]).rsplit("/", 1)[1]
    if case == "raises":
        raise RuntimeError("the orders table is gone")
    return {
        "str": "hello",
        "none": None,
        "no-status": {"body": "no statusCode"},
        "dict-body": {"statusCode": 200, "body": {"a": 1}},
        # an item as DynamoDB reads it: its numbers are Decimals
        "decimal": {"item": {"price": Decimal("19.90"), "stock": Decimal("3")}},
        "a-set": {"tags": {"a"}},
        "only-a-set": {"a"},
        "multi-value-str": {"statusCode": 200, "multiValueHeaders": {"Set-Cookie": "a=1"}},
        "header-list": {"statusCode": 200, "headers": {"x-tags": ["a", "b"]}},
        "status-999": {"statusCode": 999, "body": "?"},
        # each integration reads one of the two ways to set several cookies, not both
        "both-cookie-fields": {
            "statusCode": 200,
            "cookies": ["from-cookies=1"],
            "multiValueHeaders": {"set-cookie": ["from-multi=1", "from-multi=2"]},
            "body": "ok",
        },
    }[case]


app.lambda_handler("/legacy", legacy, event="apigw-v1", timeout=5)
app.lambda_handler("/staged", legacy, event="apigw-v1", stage="dev")  # the API's own stage
app.lambda_handler("/bare-apigw-v1", bare, event="apigw-v1")
app.lambda_handler("/bare-apigw-v2", bare, event="apigw-v2")
app.lambda_handler("/bare-alb", bare, event="alb")
app.lambda_handler("/alb", legacy, event="alb")
app.lambda_handler("/v2", legacy_v2, event="apigw-v2")


def clock_step(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Reads its time left across a step of the wall clock an hour on (NTP, a VM resumed)."""
    import time as clock

    wall = clock.time
    clock.time = lambda: wall() + 3600  # type: ignore[assignment]
    try:
        left = context.get_remaining_time_in_millis()
    finally:
        clock.time = wall  # type: ignore[assignment]
    return {"statusCode": 200, "body": json.dumps({"remaining_ms": left})}


app.lambda_handler("/clock-step", clock_step, event="apigw-v2", timeout=5)
