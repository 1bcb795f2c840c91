"""The WSGI bridge in a live host (tests/apps/wsgi_bridge): each request on one thread
from its call to its close (Django's thread-locals), write() that goes out before it
returns, the environ's server and scheme, and a pool of the size app.wsgi was given; and
what a Lambda handler is told of the scheme behind the same trusted proxy."""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

import hibana
from hibana.adapters.wsgi import environ
from tests.hosts import Host, started


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    yield from started("wsgi_bridge", "--workers", "1")


def steps_of(host: Host, tags: list[str], last: str = "close") -> dict[str, list[list[Any]]]:
    """The steps each of ``tags`` ran, once each has run its ``last``."""
    deadline = time.monotonic() + 15
    while True:
        steps = httpx.get(host.url + "/seen/", timeout=10).json()
        if all(steps.get(tag) and steps[tag][-1][0] == last for tag in tags):
            return {tag: steps[tag] for tag in tags}
        assert time.monotonic() < deadline, {tag: steps.get(tag) for tag in tags}
        time.sleep(0.05)


def get_all(host: Host, paths: list[str]) -> list[httpx.Response]:
    """Each of ``paths`` got at once, on a connection of its own."""
    with ThreadPoolExecutor(len(paths)) as pool:
        return list(pool.map(lambda p: httpx.get(host.url + p, timeout=30), paths))


@pytest.mark.parametrize(
    ("path", "parts"), [("/threads/?parts=6&", 6), ("/django/stream?", 5)], ids=["wsgi", "django"]
)
def test_each_request_runs_on_one_thread_from_its_call_to_its_close(
    host: Host, path: str, parts: int
) -> None:
    """Django closes a thread's database connections in request_finished, which close()
    sends: one request's call, each next() of its body and its close() ran on whichever
    pool thread was free, so a thread-local set in the view was not there in close()."""
    group = uuid.uuid4().hex
    tags = [f"{group}-{i}" for i in range(6)]
    # all six in their call at once: six threads, which the steps could have moved between
    answers = get_all(host, [f"{path}tag={tag}&together=6&group={group}" for tag in tags])
    assert [r.status_code for r in answers] == [200] * 6
    assert answers[0].text.count("\n") == parts
    steps = steps_of(host, tags)
    for tag in tags:
        assert [what for what, _ in steps[tag]] == ["call", *["next"] * parts, "close"]
        assert len({ident for _, ident in steps[tag]}) == 1, steps[tag]
    # and they ran at once, each on its own thread
    assert len({steps[tag][0][1] for tag in tags}) == 6


def test_what_write_is_given_reaches_the_client_before_write_returns(
    host: Host, tmp_path: Path
) -> None:
    """PEP 3333: write()'s data is sent before it returns. It was held until the app's
    call returned: an app that writes, then waits (a long job, a poll), sent nothing."""
    until = tmp_path / "release"
    got = b""
    with (
        host.client(timeout=10) as client,
        client.stream("GET", "/write-then-wait/", params={"until": str(until)}) as r,
    ):
        assert r.status_code == 200
        parts = r.iter_bytes()
        while b"written first, " not in got:
            got += next(parts)
        assert got == b"written first, "
        until.touch()  # the app returns only now
        got += b"".join(parts)
    assert got == b"written first, then the rest"


def test_one_thread_serves_one_request_at_a_time(host: Host, tmp_path: Path) -> None:
    """app.wsgi(..., threads=1): the second request waits for the first one's thread."""
    until = tmp_path / "release"
    start = len(httpx.get(host.url + "/seen/", timeout=10).json().get("one-thread", []))
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(
            httpx.get, host.url + "/one-thread/", params={"tag": "a", "until": str(until)}
        )
        host.wait_inflight(1, "wsgi_one_thread")
        second = pool.submit(httpx.get, host.url + "/one-thread/", params={"tag": "b"})
        host.wait_inflight(2, "wsgi_one_thread")
        until.touch()
        assert (first.result(30).status_code, second.result(30).status_code) == (200, 200)
    deadline = time.monotonic() + 10
    while True:
        steps = httpx.get(host.url + "/seen/", timeout=10).json()["one-thread"][start:]
        if len(steps) == 4:
            break
        assert time.monotonic() < deadline, steps
        time.sleep(0.05)
    assert [what for what, _ in steps] == ["call a", "closed a", "call b", "closed b"]


def test_clients_leaving_mid_stream_free_the_one_thread(host: Host) -> None:
    """A streamed response holds its thread while its client reads; one that goes away
    frees it (its body closed), or a pool of one would serve no one after it."""
    tags = [f"left-{uuid.uuid4().hex[:8]}-{i}" for i in range(3)]
    for tag in tags:
        with httpx.stream(
            "GET", host.url + "/one-thread/", params={"tag": tag, "parts": "200"}, timeout=10
        ) as r:
            assert r.status_code == 200
            next(r.iter_bytes())  # one part, then away
    r = httpx.get(host.url + "/one-thread/", params={"tag": "after"}, timeout=20)
    assert (r.status_code, r.text) == (200, "after 0\n" * 1000)
    steps = [what for what, _ in httpx.get(host.url + "/seen/", timeout=10).json()["one-thread"]]
    for tag in tags:
        assert steps.index(f"closed {tag}") == steps.index(f"call {tag}") + 1


def test_a_write_whose_client_left_raises_and_frees_the_one_thread(host: Host) -> None:
    """An app that write()s in a loop is stopped by the write() it is in when its client
    goes away: it raises ConnectionAbortedError, and the thread serves the next request."""
    tags = [f"gone-{uuid.uuid4().hex[:8]}-{i}" for i in range(2)]
    for tag in tags:
        with httpx.stream(
            "GET", host.url + "/write-forever/", params={"tag": tag}, timeout=10
        ) as r:
            assert r.status_code == 200
            next(r.iter_bytes())  # one part, then away
    r = httpx.get(host.url + "/write-forever/", params={"once": "1"}, timeout=20)
    assert (r.status_code, r.text) == (200, "once")
    said = [what for what, _ in httpx.get(host.url + "/seen/", timeout=10).json()["write-forever"]]
    gone = (
        "the response this write() is part of goes nowhere now: its client went away, its "
        "deadline passed, or it answers a HEAD"
    )
    for tag in tags:
        assert f"{tag}: {gone}" in said


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {"Host": "example.com", "X-Forwarded-Proto": "https"},
            {"SERVER_NAME": "example.com", "SERVER_PORT": "443", "wsgi.url_scheme": "https"},
        ),
        (
            {"Host": "example.com"},
            {"SERVER_NAME": "example.com", "SERVER_PORT": "80", "wsgi.url_scheme": "http"},
        ),
        (
            {"Host": "example.com:8443", "X-Forwarded-Proto": "https"},
            {"SERVER_NAME": "example.com", "SERVER_PORT": "8443", "wsgi.url_scheme": "https"},
        ),
    ],
)
def test_the_server_port_is_the_hosts_the_client_asked_for(
    host: Host, headers: dict[str, str], expected: dict[str, str]
) -> None:
    """It was the worker's socket's (a proxy that ends TLS in front: https on 443, and the
    app was told the port of the socket behind it)."""
    env = httpx.get(host.url + "/where/", headers=headers, timeout=10).json()
    assert {k: env[k] for k in expected} == expected


def test_django_behind_a_proxy_that_ends_tls_sees_https_on_443(host: Host) -> None:
    headers = {"Host": "example.com", "X-Forwarded-Proto": "https"}
    r = httpx.get(host.url + "/django/where", headers=headers, timeout=10)
    assert r.json() == {"port": "443", "secure": True, "uri": "https://example.com/next"}


def test_the_server_of_a_request_without_a_host_header() -> None:
    scope: dict[str, Any] = {"method": "GET", "path": "/", "scheme": "https", "headers": []}
    assert (environ(scope, b"")["SERVER_NAME"], environ(scope, b"")["SERVER_PORT"]) == (
        "localhost",
        "443",
    )
    scope["server"] = ("10.0.0.5", 8080)
    assert (environ(scope, b"")["SERVER_NAME"], environ(scope, b"")["SERVER_PORT"]) == (
        "10.0.0.5",
        "8080",
    )
    scope["headers"] = [(b"host", b"[::1]:9000")]
    assert (environ(scope, b"")["SERVER_NAME"], environ(scope, b"")["SERVER_PORT"]) == (
        "[::1]",
        "9000",
    )
    scope["headers"] = [(b"host", b"[::1]")]
    assert (environ(scope, b"")["SERVER_NAME"], environ(scope, b"")["SERVER_PORT"]) == (
        "[::1]",
        "443",
    )


def _wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b""]


@pytest.mark.parametrize("threads", [0, -2, 2.5, "4", True])
def test_a_wsgi_mounts_threads_that_is_no_positive_integer_is_refused(threads: Any) -> None:
    app = hibana.App()
    line = inspect.currentframe().f_lineno + 2  # type: ignore[union-attr]
    with pytest.raises(hibana.AppError) as info:
        app.wsgi("/w", _wsgi_app, threads=threads)
    said = str(info.value)  # its file as the working directory names it
    assert said.startswith(f"threads={threads!r} in ")
    assert said.endswith(f"test_wsgi_bridge.py:{line} must be a positive integer")
    assert not app.functions
    app.wsgi("/w", _wsgi_app, threads=4)
    assert [spec.name for spec in app.functions] == ["wsgi_w"]


def test_a_lambda_handler_behind_a_proxy_that_ends_tls_is_told_https_on_443(host: Host) -> None:
    """hibana is the API Gateway here, and sets X-Forwarded-Proto as it does: it was the
    connection's http (and the socket's port) behind a trusted proxy that said https, so a
    handler that redirects http to https redirected for ever. (Here: this module's app is
    the one behind a trusted proxy.)"""
    headers = {"Host": "example.com", "X-Forwarded-Proto": "https"}
    r = httpx.get(host.url + "/lambda-forwarded/x", headers=headers, timeout=10)
    assert r.json() == {"X-Forwarded-Proto": "https", "X-Forwarded-Port": "443"}


def test_a_class_style_wsgi_app_is_served_and_its_body_closed(host: Host) -> None:
    """PEP 3333 lets a WSGI app be a class whose instances are the body (its ``AppClass``:
    the call makes the instance, whose iteration starts the response): app.wsgi refused it
    as 'a class, not an app'. Each body is closed, as any WSGI body with a close()."""
    with host.client() as client:
        first = client.get("/greeting/a")
        second = client.get("/greeting/b")
    assert (first.status_code, first.headers["content-type"]) == (200, "text/plain")
    assert first.text == "hello from /a (closed before: 0)"
    assert second.text == "hello from /b (closed before: 1)"


class _Body:
    def __init__(self, environ: dict[str, Any], start_response: Any) -> None:
        start_response("200 OK", [])

    def __iter__(self) -> Iterator[bytes]:
        yield b""


def test_a_class_style_wsgi_app_given_to_app_asgi_is_refused_naming_app_wsgi() -> None:
    """The class a WSGI app may be is no ASGI app; and a framework's class, whose instances
    are the app, is still refused as a class (``Flask`` was said to be an ASGI 2 app, to
    mount with app.asgi, for its one argument and its instances' two)."""
    app = hibana.App()
    with pytest.raises(hibana.AppError) as info:
        app.asgi("/body", _Body)
    assert str(info.value).endswith(
        ": _Body is a WSGI app (a class whose instances are the body), not an ASGI one; "
        "mount it with app.wsgi('/body', ...)"
    )
    import flask

    with pytest.raises(hibana.AppError) as info:
        app.wsgi("/flask", flask.Flask)
    assert str(info.value).endswith(
        ": Flask is a class, not an app: mount an instance of it, app.wsgi('/flask', Flask(...))"
    )
    assert not app.functions
