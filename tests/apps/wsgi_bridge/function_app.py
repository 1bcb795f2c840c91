"""WSGI apps that tell which thread ran each step of a request, that write() and wait,
that show their environ, and one served on a single thread; Django among them."""

import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import parse_qs

import django
from django.conf import settings
from django.core.signals import request_finished

import hibana

#: By a request's ?tag: each step it ran, as [what, the thread's ident].
steps: dict[str, list[list[Any]]] = {}
#: Requests waiting in their call until this many are in theirs: as many threads at once.
together: dict[str, threading.Barrier] = {}


def _query(environ: dict[str, Any]) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _step(tag: str, what: str) -> None:
    steps.setdefault(tag, []).append([what, threading.get_ident()])


def _wait_for(path: str) -> None:
    """Until the test makes ``path`` (another process): bounded, so a test that fails
    leaves no thread behind."""
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


class Parts:
    """A body of ``count`` parts that records the thread of each ``next()`` and of
    ``close()``."""

    def __init__(self, tag: str, count: int) -> None:
        self.tag, self.left = tag, count

    def __iter__(self) -> "Parts":
        return self

    def __next__(self) -> bytes:
        if not self.left:
            raise StopIteration
        self.left -= 1
        _step(self.tag, "next")
        time.sleep(0.01)  # the other requests' steps come in between
        return f"{self.tag}:{self.left}\n".encode()

    def close(self) -> None:
        _step(self.tag, "close")


def threads_app(environ: dict[str, Any], start_response: Any) -> Parts:
    """Streams ?parts= parts; ?together=N: its call waits until N are in theirs."""
    query = _query(environ)
    tag = query["tag"]
    _step(tag, "call")
    if "together" in query:
        barrier = together.setdefault(query["group"], threading.Barrier(int(query["together"])))
        barrier.wait(30)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Parts(tag, int(query.get("parts", "5")))


def seen(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The steps recorded, by tag."""
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(steps).encode()]


def write_then_wait(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """write()s the start of its page, then waits for ?until= (which the test makes
    once it has read that start) before it returns the rest."""
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written first, ")
    _wait_for(_query(environ)["until"])
    return [b"then the rest"]


def write_forever(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """write()s until its client goes (?tag= records what write() then raised); ?once:
    one write."""
    query = _query(environ)
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    if "once" in query:
        write(b"once")
        return []
    try:
        for _ in range(100_000):  # bounded: a test that fails leaves no thread behind
            write(b"x" * 65536)
    except ConnectionAbortedError as exc:
        _step("write-forever", f"{query['tag']}: {exc}")
        raise
    return []


def where(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The environ's idea of the server and scheme."""
    start_response("200 OK", [("Content-Type", "application/json")])
    keys = ("SERVER_NAME", "SERVER_PORT", "wsgi.url_scheme", "HTTP_HOST")
    return [json.dumps({k: environ.get(k) for k in keys}).encode()]


def one_thread(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    """Records its call and its end; ?until=: waits for it first; ?parts=: streams that
    many parts."""
    query = _query(environ)
    tag = query["tag"]
    _step("one-thread", f"call {tag}")
    try:
        if "until" in query:
            _wait_for(query["until"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        for i in range(int(query.get("parts", "1"))):
            yield f"{tag} {i}\n".encode() * 1000
            time.sleep(0.01)
    finally:
        _step("one-thread", f"closed {tag}")


# -- Django: its view, its stream and its request_finished (sent by close()) ------------------
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

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

#: What the view sets for its thread: Django's request_finished reads it, as a
#: per-thread database connection is closed by it.
local = threading.local()


def django_parts(tag: str) -> Iterator[bytes]:
    for i in range(5):
        _step(tag, "next")
        time.sleep(0.01)
        yield f"{tag}:{i}\n".encode()


def django_stream(request: HttpRequest) -> StreamingHttpResponse:
    tag = request.GET["tag"]
    local.tag = tag
    _step(tag, "call")
    if "together" in request.GET:
        group = request.GET["group"]
        together.setdefault(group, threading.Barrier(int(request.GET["together"]))).wait(30)
    return StreamingHttpResponse(django_parts(tag), content_type="text/plain")


def finished(sender: Any, **kwargs: Any) -> None:
    tag = getattr(local, "tag", None)
    if tag is not None:
        _step(tag, "close")
        del local.tag


request_finished.connect(finished)


def django_where(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "port": request.get_port(),
            "secure": request.is_secure(),
            "uri": request.build_absolute_uri("/next"),
        }
    )


urlpatterns = [path("stream", django_stream), path("where", django_where)]


class Greeting:
    """A WSGI app as PEP 3333's ``AppClass``: calling the class is the app's call, and the
    instance is the body, which starts the response as it is iterated."""

    closed: ClassVar[list[str]] = []

    def __init__(self, environ: dict[str, Any], start_response: Any) -> None:
        self.environ = environ
        self.start = start_response

    def __iter__(self) -> Iterator[bytes]:
        self.start("200 OK", [("Content-Type", "text/plain")])
        yield f"hello from {self.environ['PATH_INFO']}".encode()
        yield f" (closed before: {len(Greeting.closed)})".encode()

    def close(self) -> None:
        Greeting.closed.append(self.environ["PATH_INFO"])


app = hibana.App(trusted_proxies=["127.0.0.1/32"])  # the test is the proxy that ends TLS
app.wsgi("/threads", threads_app)
app.wsgi("/seen", seen)
app.wsgi("/write-then-wait", write_then_wait, timeout=30)
app.wsgi("/where", where)
app.wsgi("/one-thread", one_thread, threads=1, timeout=30)
app.wsgi("/write-forever", write_forever, threads=1)
app.wsgi("/django", get_wsgi_application())
app.wsgi("/greeting", Greeting)


def forwarded(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A Lambda handler that answers the forwarding headers of its event."""
    keep = ("X-Forwarded-Proto", "X-Forwarded-Port")
    body = json.dumps({k: event["headers"].get(k) for k in keep})
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": body}


app.lambda_handler("/lambda-forwarded", forwarded, event="apigw-v1")
