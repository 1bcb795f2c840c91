"""WSGI apps (Flask, Django, PEP 3333 apps of tests/apps/mounts) mounted in a live host:
what the environ holds, how their status, body, streams and errors reach the client."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.adapters.payloads import PNG
from tests.hosts import Host, read_cut_short


def test_flask_mounted_keeps_repeated_values_and_builds_urls_under_its_prefix(host: Host) -> None:
    r = httpx.get(
        host.url + "/flask/items/7?tag=a&tag=b",
        headers=[("X-Multi", "one"), ("X-Multi", "two")],
    )
    assert r.status_code == 200
    assert r.json() == {
        "id": 7,
        "tags": ["a", "b"],
        "accept": ["one,two"],  # WSGI's environ holds one value: RFC 9110's joined form
        "self_url": "/flask/items/7",
        "script_name": "/flask",
        "path_info": "/items/7",
    }
    assert len(r.headers["x-invocation-id"]) == 32  # an invocation like any other


def test_what_a_flask_app_writes_to_wsgi_errors_is_an_error_line_of_its_invocation(
    host: Host,
) -> None:
    r = httpx.get(host.url + "/flask/complain")
    assert (r.status_code, r.text) == (200, "complained")
    invocation = r.headers["x-invocation-id"]
    # Flask's app.logger reaches Python logging, which hibana logs at the record's level
    logged = host.wait_for_log(msg="the upstream said no", invocation_id=invocation)
    assert (logged["level"], logged["logger"]) == ("error", "function_app")
    # what the app writes to wsgi.errors itself is an error line too (it was info, stdout)
    written = host.wait_for_log(msg="written to wsgi.errors", invocation_id=invocation)
    assert (written["level"], written["stream"]) == ("error", "wsgi.errors")
    # a line ended by \r\n is its text: the \r was kept at the end of the message
    assert host.wait_for_log(msg="ended by CRLF", invocation_id=invocation)["level"] == "error"


def test_cookies_of_two_cookie_headers_reach_flask_apart(host: Host) -> None:
    # as a proxy sends an HTTP/2 client's cookie crumbs (RFC 9113 8.2.3: "; " joins them)
    r = httpx.get(host.url + "/flask/cookies", headers=[("cookie", "a=1; b=2"), ("cookie", "c=3")])
    assert r.json() == {"a": "1", "b": "2", "c": "3"}


def test_flask_binary_body_and_two_cookies(host: Host) -> None:
    r = httpx.post(host.url + "/flask/echo", content=PNG)
    assert r.content == PNG
    assert r.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]


def test_a_flask_stream_whose_client_leaves_is_closed_and_frees_its_thread(host: Host) -> None:
    """Its generator's finally runs (PEP 3333: close() is called), and clients that left
    mid-stream, more of them than the bridge has threads, leave the app serving."""
    tags = [f"left-{i}" for i in range(40)]
    for tag in tags:
        with httpx.stream("GET", host.url + "/flask/gen", params={"tag": tag}, timeout=10) as r:
            assert r.status_code == 200
            next(r.iter_bytes())  # one part, then away
    r = httpx.get(host.url + "/flask/items/3", timeout=10)
    assert r.status_code == 200 and r.json()["id"] == 3
    deadline = time.monotonic() + 10
    while True:
        states = httpx.get(host.url + "/flask/streams", timeout=10).json()
        if all(states.get(tag) == "started, closed" for tag in tags):
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.1)


def test_heads_of_a_django_stream_close_it_and_leave_the_app_serving(host: Host) -> None:
    """Django leaves a HEAD's body to the server: the stream is closed, not run to its end
    nor left waiting, however many come."""
    tags = [f"head-{i}" for i in range(40)]
    for tag in tags:
        r = httpx.head(host.url + "/django/stream", params={"tag": tag}, timeout=10)
        assert (r.status_code, r.content) == (200, b"")
    r = httpx.get(host.url + "/django/pages/after-heads", timeout=10)
    assert r.status_code == 200 and r.json()["slug"] == "after-heads"
    deadline = time.monotonic() + 10
    while True:
        states = httpx.get(host.url + "/flask/streams", timeout=10).json()
        # a stream the HEAD never started is closed all the same: it never ran
        if all(states.get(tag, "started, closed") == "started, closed" for tag in tags):
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.1)


def test_what_a_wsgi_app_writes_goes_out_in_order_with_its_parts(host: Host) -> None:
    r = httpx.get(host.url + "/write-between/", timeout=10)
    assert (r.status_code, r.text) == (200, "<aWRITTENb>")


def test_a_wsgi_app_may_change_its_status_until_its_body_starts(host: Host) -> None:
    # PEP 3333: start_response again with exc_info, before any of the body went out
    r = httpx.get(host.url + "/late-error/", timeout=10)
    assert (r.status_code, r.text) == (503, "sorry")


def test_a_wsgi_app_that_wrote_cannot_change_its_status(host: Host) -> None:
    # PEP 3333: write() sends the head; start_response with exc_info then re-raises, and
    # the half page that went out is cut short (it was held back, and a 503 sent instead)
    with host.client() as client:
        r, got = read_cut_short(client, "/late-error-after-write/")
    assert (r.status_code, got) == (200, b"<html>half a page")
    line = host.wait_for_log(msg="invocation", invocation_id=r.headers["x-invocation-id"])
    assert (line["outcome"], line["error"]) == ("error", "LookupError: the record vanished")


@pytest.mark.parametrize(
    ("path", "error"),
    [
        (
            "/str-body/",
            "TypeError: the WSGI app's body holds a str 'hello', not bytes (PEP 3333): "
            "encode it, as in text.encode()",
        ),
        (
            # iterated, b"hello" gave 104 NUL bytes for its "h", and so on
            "/bare-bytes/",
            "TypeError: the WSGI app returned b'hello', not an iterable of bytes (PEP 3333): "
            "return [body], a list of its one part",
        ),
        (
            "/int-header/",
            "TypeError: the WSGI app's header ('Content-Length', 2) is not a (name, value) "
            "tuple of two str (PEP 3333): write its value as text, as in ('Content-Length', "
            "str(len(body)))",
        ),
    ],
)
def test_a_wsgi_app_giving_other_than_pep_3333_asks_is_a_500_naming_it(
    host: Host, path: str, error: str
) -> None:
    r = httpx.get(host.url + path, timeout=10)
    assert r.status_code == 500
    line = host.wait_for_log(msg="function raised", invocation_id=r.headers["x-invocation-id"])
    assert line["error"] == error


@pytest.mark.parametrize(
    ("target", "path_info"),
    [
        ("/path-info/caf%C3%A9/%FF%FE", b"/caf\xc3\xa9/\xff\xfe"),  # not UTF-8: as sent
        ("/path-info/a%2Fb%3F", b"/a/b?"),
    ],
)
def test_path_info_holds_the_bytes_the_client_escaped(
    host: Host, target: str, path_info: bytes
) -> None:
    # PEP 3333's PATH_INFO: bytes as latin-1; a %FF was U+FFFD, the app could not tell
    # which bytes the client sent (gunicorn gives "\xff")
    with httpx.Client(base_url=host.url) as client:
        r = client.send(client.build_request("GET", host.url + target))
    assert (r.status_code, r.content) == (200, path_info)


def test_path_info_of_a_path_whose_dot_segments_the_front_resolved_is_that_path() -> None:
    from hibana.adapters.wsgi import environ

    # its raw_path still climbs: PATH_INFO is made from the resolved path, never from it
    scope = {"method": "GET", "root_path": "/w", "path": "/w/\ufffd", "raw_path": b"/w/x/../%FF"}
    assert environ(scope, b"")["PATH_INFO"] == "/\xef\xbf\xbd"


def test_a_wsgi_body_whose_close_raises_is_logged_in_its_invocation(host: Host) -> None:
    # close() runs on a pool thread once the body is out; what it raised went nowhere
    r = httpx.get(host.url + "/fails-to-close/", timeout=10)
    assert (r.status_code, r.text) == (200, "answered")
    line = host.wait_for_log(
        msg="the WSGI app's body raised in its close()",
        invocation_id=r.headers["x-invocation-id"],
    )
    assert (line["level"], line["error"]) == ("error", "RuntimeError: the session could not commit")


def test_the_wsgi_environ_of_a_request() -> None:
    from hibana.adapters.wsgi import environ

    scope = {
        "type": "http",
        "method": "POST",
        "root_path": "/flask",
        "path": "/flask/caf\u00e9/x",
        "query_string": b"a=1&a=2",
        "http_version": "1.1",
        "scheme": "https",
        "server": ("example.com", 443),
        "client": ("203.0.113.9", 5000),
        "headers": [
            (b"host", b"example.com"),
            (b"x-user", b"alice"),
            (b"x_user", b"mallory"),  # would pass for X-User in HTTP_X_USER
            (b"x-multi", b"1"),
            (b"x-multi", b"2"),
            (b"content-type", b"text/plain"),
            (b"content-length", b"4"),
        ],
    }
    env = environ(scope, b"body")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/flask", "/caf\u00c3\u00a9/x")
    assert env["QUERY_STRING"] == "a=1&a=2"
    assert (env["HTTP_X_USER"], env["HTTP_X_MULTI"]) == ("alice", "1,2")
    assert (env["CONTENT_TYPE"], env["CONTENT_LENGTH"]) == ("text/plain", "4")
    assert (env["SERVER_NAME"], env["SERVER_PORT"], env["wsgi.url_scheme"]) == (
        "example.com",
        "443",
        "https",
    )
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("203.0.113.9", "5000")
    assert env["wsgi.input"].read() == b"body"


def test_django_mounted(host: Host) -> None:
    r = httpx.get(host.url + "/django/pages/hello-world?x=1&x=2")
    assert r.json() == {
        "slug": "hello-world",
        "reverse": "/django/pages/hello-world",
        "x": ["1", "2"],
    }
    assert httpx.get(host.url + "/native").text == "native"  # hibana's own, beside mounts


def test_a_chunked_body_reaches_a_django_app_whole(host: Host) -> None:
    # Django reads CONTENT_LENGTH bytes of wsgi.input (none without one); hibana has the
    # whole body before the app runs, so it says how long it is
    def parts() -> Iterator[bytes]:
        yield b"first part, "
        yield b"second part"

    r = httpx.post(host.url + "/django/echo", content=parts(), timeout=10)
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert (r.status_code, r.content) == (200, b"first part, second part")
