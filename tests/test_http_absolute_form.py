"""Absolute-form request targets (RFC 9112 3.2.2: ``GET http://host/path``, as a proxy
sends them): the host they name is the one asked for, checked as a Host header is."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.hosts import Host, started
from tests.http_wire import Connection


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    yield from started("basic", "--workers", "1")


def test_an_absolute_form_target_names_the_host_asked_for(host: Host) -> None:
    """RFC 9112 3.2.2: the target's authority is the host, whatever Host says."""
    with Connection(host) as conn:
        conn.send(b"GET http://example.com:8080/inspect HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert resp.status == 200
        assert json.loads(resp.read())["url"] == "http://example.com:8080/inspect"
        conn.send(b"GET /inspect HTTP/1.1\r\nHost: [::1]:7071\r\n\r\n")
        resp = conn.response()
        assert json.loads(resp.read())["url"] == "http://[::1]:7071/inspect"


@pytest.mark.parametrize(
    "target", [b"http://trusted.example@evil.example/inspect", b"http://@evil.example/inspect"]
)
def test_an_absolute_form_target_naming_a_user_is_a_400(host: Host, target: bytes) -> None:
    """RFC 9110 4.2.4: userinfo is an error. It was dropped and the request served as
    for the host after the @, which the user before it is there to hide."""
    with Connection(host) as conn:
        conn.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
        resp = conn.response()
        assert resp.status == 400
        assert json.loads(resp.read())["error"] == (
            f"the request target {target.decode()!r} names a user before its host "
            "(user@host), which an http URL may not (RFC 9110 4.2.4); send it without"
        )
    with Connection(host) as conn:  # an @ in the path is the path's
        conn.send(b"GET http://example.com/hello/a@b HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.response().read() == b"Hello a@b"


def test_an_absolute_form_target_with_an_empty_port_is_served(host: Host) -> None:
    """RFC 3986 3.2.3: an empty port is the scheme's default; it used to be a 400 that
    called the URL no http URL."""
    with Connection(host) as conn:
        conn.send(b"GET http://example.com:/inspect?tag=t1 HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert resp.status == 200
        body = json.loads(resp.read())
        assert body["url"] == "http://example.com/inspect?tag=t1"
        assert body["tags"] == ["t1"]
        conn.send(b"GET http://[::1]:/hello/v6 HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert (resp.status, resp.read()) == (200, b"Hello v6")
        conn.send(b"GET http://example.com:x/inspect HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.response()
        assert resp.status == 400
        assert "is not a path or an http URL" in json.loads(resp.read())["error"]


@pytest.mark.parametrize(
    ("authority", "host_asked"),
    [
        (b"my_api:8080", "my_api:8080"),  # a docker compose service's name
        (b"ex%41mple.com", "ex%41mple.com"),
        (b"a,b", "a,b"),  # sub-delims are a reg-name's (RFC 3986 3.2.2)
    ],
)
def test_an_absolute_form_target_names_any_host_a_host_header_may(
    host: Host, authority: bytes, host_asked: str
) -> None:
    """A name that Host may carry was a 400 in the target ("is not a path or an http
    URL"): httptools' URL parser takes no "_", "%" or sub-delims in a host name."""
    with Connection(host) as conn:
        conn.send(b"GET http://%s/inspect HTTP/1.1\r\nHost: x\r\n\r\n" % authority)
        resp = conn.response()
        assert resp.status == 200
        assert json.loads(resp.read())["url"] == f"http://{host_asked}/inspect"
        conn.send(b"GET /inspect HTTP/1.1\r\nHost: %s\r\n\r\n" % authority)  # as Host
        assert json.loads(conn.response().read())["url"] == f"http://{host_asked}/inspect"


@pytest.mark.parametrize(
    ("target", "error"),
    [
        (b"http:///inspect", "the request target 'http:///inspect' is not a path or an http URL"),
        (
            b"http://:80/inspect",
            "the request target 'http://:80/inspect' is not a path or an http URL",
        ),
        (b"http://a:70000/x", "the request target 'http://a:70000/x' is not a path or an http URL"),
        (b"ftp://a/inspect", "the request target 'ftp://a/inspect' is not a path or an http URL"),
        # the fragment's own error, not a URL refused
        (
            b"http://a_b/x#f",
            "the request target has a fragment (#...), which clients keep to themselves",
        ),
    ],
)
def test_an_absolute_form_target_that_names_no_host_is_a_400(
    host: Host, target: bytes, error: str
) -> None:
    with Connection(host) as conn:
        conn.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
        resp = conn.response()
        assert resp.status == 400
        assert json.loads(resp.read())["error"] == error
