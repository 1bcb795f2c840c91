"""``Request`` (what a function reads) and ``Response`` / ``to_response`` (what it answers)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hibana import BadRequest, Headers, HTTPError, Request, Response, StreamingResponse
from hibana.responses import to_response
from tests.hosts import Host


def make_request(
    method: str = "GET",
    path: str = "/items",
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    params: dict[str, Any] | None = None,
) -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers or [],
        "scheme": "http",
        "client": ("127.0.0.1", 50123),
    }
    return Request(scope, body, params or {})


def header(response: Response, name: str) -> list[str]:
    return [v for k, v in response.headers if k.lower() == name.lower()]


# --- Request: basics -----------------------------------------------------------------------


def test_method_path_params_client() -> None:
    req = make_request("POST", "/items/3", params={"id": 3})
    assert req.method == "POST"
    assert req.path == "/items/3"
    assert req.params == {"id": 3}
    assert req.client == ("127.0.0.1", 50123)
    assert repr(req) == "<Request POST /items/3>"


def test_url_uses_the_host_header_and_query() -> None:
    req = make_request(path="/items", query=b"a=1", headers=[(b"host", b"example.com:8080")])
    assert req.url == "http://example.com:8080/items?a=1"
    assert make_request(path="/x").url == "http://localhost/x"


def test_headers_are_case_insensitive_and_keep_repeats() -> None:
    req = make_request(
        headers=[(b"content-type", b"application/json"), (b"x-tag", b"a"), (b"X-Tag", b"b")]
    )
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers.getlist("X-TAG") == ["a", "b"]


def test_content_type_without_parameters() -> None:
    req = make_request(headers=[(b"content-type", b"Application/JSON; charset=utf-8")])
    assert req.content_type == "application/json"
    assert make_request().content_type == ""


# --- Request: query string -----------------------------------------------------------------


def test_query_keeps_repeats_and_blank_values() -> None:
    req = make_request(query=b"tag=a&tag=b&empty=&flag&page=2")
    q = req.query
    assert q.getlist("tag") == ["a", "b"]
    assert q.get("tag") == "a"
    assert q.get("empty") == ""
    assert q.get("flag") == ""
    assert "flag" in q
    assert q.get("page") == "2"
    assert q.get("missing") is None
    assert req.query_string == "tag=a&tag=b&empty=&flag&page=2"


def test_query_is_percent_decoded_exactly_once() -> None:
    req = make_request(query=b"q=%2520&amp=a%26b&eq=x%3Dy&name=caf%C3%A9&sp=a+b&plus=1%2B1")
    q = req.query
    assert q["q"] == "%20"  # decoded once: %25 -> %, not again to a space
    assert q["amp"] == "a&b"
    assert q["eq"] == "x=y"
    assert q["name"] == "café"
    assert q["sp"] == "a b"
    assert q["plus"] == "1+1"


def test_empty_query() -> None:
    req = make_request()
    assert len(req.query) == 0
    assert req.query_string == ""


# --- Request: cookies ----------------------------------------------------------------------


def test_cookies_from_one_or_several_headers() -> None:
    req = make_request(
        headers=[
            (b"cookie", b"session=abc123; theme=dark"),
            (b"Cookie", b'quoted="v a l"; theme=light; junk; =novalue'),
        ]
    )
    assert req.cookies == {"session": "abc123", "theme": "dark", "quoted": "v a l"}


def test_no_cookies() -> None:
    assert make_request().cookies == {}


def test_only_the_quotes_around_a_cookie_value_are_taken_off() -> None:
    req = make_request(headers=[(b"cookie", b'pair="ab"; twice=""x""; end=ab"; lone="')])
    assert req.cookies == {"pair": "ab", "twice": '"x"', "end": 'ab"', "lone": '"'}


def test_a_cookie_of_utf8_text_is_read_as_text() -> None:
    """What a browser sends of ``document.cookie = "city=Zürich"``: its UTF-8 bytes,
    which were read as Latin-1 ("ZÃ¼rich"). Bytes that are no UTF-8 stay Latin-1."""
    req = make_request(headers=[(b"cookie", "city=Zürich; who=José".encode())])
    assert req.cookies == {"city": "Zürich", "who": "José"}
    assert make_request(headers=[(b"cookie", b"old=caf\xe9")]).cookies == {"old": "café"}


def test_cookie_value_may_contain_equals() -> None:
    req = make_request(headers=[(b"cookie", b"token=a=b==")])
    assert req.cookies == {"token": "a=b=="}


# --- Request: body -------------------------------------------------------------------------


def test_json_body() -> None:
    req = make_request(body=b'{"name": "widget", "tags": [1, 2]}')
    assert req.json() == {"name": "widget", "tags": [1, 2]}


def test_a_json_body_after_a_utf8_byte_order_mark_is_read() -> None:
    """PowerShell's and Notepad's UTF-8 begins with one; RFC 8259 lets a parser ignore it.
    It was a 400, "invalid character"."""
    req = make_request(body=b'\xef\xbb\xbf{"name": "widget"}')
    assert req.json() == {"name": "widget"}


def test_empty_body_json_is_a_bad_request() -> None:
    with pytest.raises(BadRequest) as info:
        make_request(body=b"").json()
    assert info.value.status == 400
    assert str(info.value) == "request body is empty; expected JSON"
    assert info.value.detail == "request body is empty; expected JSON"


@pytest.mark.parametrize("body", [b"{bad", b'{"a": 1', b"not json", b"\xff\xfe", b"   "])
def test_malformed_json_is_a_bad_request_naming_the_problem(body: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        make_request(body=body).json()
    assert info.value.status == 400
    assert info.value.detail.startswith("request body is not valid JSON: ")
    assert len(info.value.detail) > len("request body is not valid JSON: ")
    assert isinstance(info.value, HTTPError)
    assert info.value.__cause__ is None


@pytest.mark.parametrize(
    ("content_type", "body", "said"),
    [
        (
            b"application/x-www-form-urlencoded",
            b"name=widget",
            "; it was sent as application/x-www-form-urlencoded: send JSON, with "
            "Content-Type application/json",
        ),
        (
            b"text/plain; charset=utf-8",
            b"widget",
            "; it was sent as text/plain: send JSON, with Content-Type application/json",
        ),
        (
            b"application/json; charset=UTF-16",
            '{"a": 1}'.encode("utf-16"),
            "; it was sent as charset=utf-16, but JSON is UTF-8 (RFC 8259): send UTF-8",
        ),
        (b"application/json; charset=utf-8", b"{bad", ""),
        (b"application/problem+json", b"{bad", ""),
    ],
)
def test_a_body_that_is_no_json_says_what_it_was_sent_as(
    content_type: bytes, body: bytes, said: str
) -> None:
    """A form posted to a JSON function was "not valid JSON: invalid character (byte 0)"."""
    req = make_request(headers=[(b"content-type", content_type)], body=body)
    with pytest.raises(BadRequest) as info:
        req.json()
    assert info.value.detail.startswith("request body is not valid JSON: ")
    if said:
        assert info.value.detail.endswith(said)
    else:
        assert "sent as" not in info.value.detail


def test_text_defaults_to_utf8() -> None:
    assert make_request(body="café ☕".encode()).text() == "café ☕"


def test_text_after_a_utf8_byte_order_mark_is_the_text_alone() -> None:
    """A file Notepad saved, sent with curl --data-binary @file: its text began with
    "\ufeff", so it never equalled what was in it (req.json() took the mark off)."""
    body = b"\xef\xbb\xbfcaf\xc3\xa9"
    assert make_request(body=body).text() == "café"
    utf8 = [(b"content-type", b"text/plain; charset=UTF-8")]
    assert make_request(body=body, headers=utf8).text() == "café"


@pytest.mark.parametrize(
    "content_type",
    [
        b"text/plain; charset=latin-1",
        b'text/plain; Charset="ISO-8859-1"',
        b"text/plain;charset=cp1252",
    ],
)
def test_text_uses_the_declared_charset(content_type: bytes) -> None:
    req = make_request(headers=[(b"content-type", content_type)], body="café".encode("latin-1"))
    assert req.text() == "café"


def test_text_that_does_not_decode_is_a_bad_request() -> None:
    with pytest.raises(BadRequest) as info:
        make_request(body=b"caf\xe9").text()
    assert info.value.status == 400
    assert info.value.detail.startswith("request body is not valid utf-8 text: ")


def test_text_with_an_unknown_charset_is_a_bad_request() -> None:
    req = make_request(headers=[(b"content-type", b"text/plain; charset=klingon")], body=b"x")
    with pytest.raises(BadRequest, match="request body is not valid klingon text"):
        req.text()


@pytest.mark.parametrize("charset", ["idna", "punycode"])
def test_text_in_a_charset_whose_codec_raises_unicode_error_is_a_400(
    basic_host: Host, charset: str
) -> None:
    """Those codecs raise UnicodeError, not its UnicodeDecodeError: it answered 500."""
    with basic_host.client() as client:
        r = client.post(
            "/text", content=b"xn--zz", headers={"content-type": f"text/plain; charset={charset}"}
        )
    assert r.status_code == 400
    assert r.json()["error"].startswith(
        f"request body is not valid {charset} text: decoding with '{charset}' codec failed"
    )


# --- Response ------------------------------------------------------------------------------


def test_bytes_body_has_no_content_type_by_default() -> None:
    r = Response(b"raw")
    assert (r.status, r.body, r.headers) == (200, b"raw", [])


def test_str_body_is_utf8_text() -> None:
    r = Response("héllo", status=201)
    assert r.status == 201
    assert r.body == "héllo".encode()
    assert header(r, "content-type") == ["text/plain; charset=utf-8"]


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ({"content_type": "text/html"}, "text/html; charset=utf-8"),
        ({"content_type": "Text/CSV; header=present"}, "Text/CSV; header=present; charset=utf-8"),
        ({"headers": {"Content-Type": "text/html"}}, "text/html; charset=utf-8"),
        ({"content_type": "text/html; charset=latin-1"}, "text/html; charset=latin-1"),
        ({"content_type": "application/xml"}, "application/xml"),
    ],
)
def test_str_body_of_a_text_type_says_it_is_utf8(given: dict[str, Any], sent: str) -> None:
    """Sent as UTF-8 under a bare text/html, "café" read as windows-1252 in a browser."""
    r = Response("café", **given)
    assert r.body == "café".encode()
    assert header(r, "content-type") == [sent]


def test_a_stream_of_a_text_type_says_it_is_utf8() -> None:
    """Its str chunks go out as UTF-8 (and the bytes of text most likely are)."""

    async def parts() -> Any:
        yield "café"

    r = StreamingResponse(parts(), content_type="text/plain")
    assert header(r, "content-type") == ["text/plain; charset=utf-8"]
    # headers are sent as given: a mounted app's stream is one
    events = StreamingResponse(parts(), headers={"content-type": "text/event-stream"})
    assert header(events, "content-type") == ["text/event-stream"]
    binary = StreamingResponse(parts(), content_type="application/octet-stream")
    assert header(binary, "content-type") == ["application/octet-stream"]


def test_bytes_body_keeps_the_text_type_given() -> None:
    r = Response(b"caf\xe9", content_type="text/plain")
    assert header(r, "content-type") == ["text/plain"]


def test_json_response() -> None:
    r = Response.json({"id": 1, "tags": ["a"]}, status=201, headers={"x-id": "1"})
    assert r.status == 201
    assert r.body == b'{"id":1,"tags":["a"]}'
    assert header(r, "content-type") == ["application/json"]
    assert header(r, "x-id") == ["1"]


def test_a_content_type_header_given_is_not_doubled() -> None:
    r = Response.json({"error": "x"}, headers={"Content-Type": "application/problem+json"})
    assert header(r, "content-type") == ["application/problem+json"]


def test_text_and_html_responses() -> None:
    r = Response.text("plain", status=202)
    assert (r.status, r.body, header(r, "content-type")) == (
        202,
        b"plain",
        ["text/plain; charset=utf-8"],
    )
    r = Response.html("<p>hi</p>")
    assert header(r, "content-type") == ["text/html; charset=utf-8"]


@pytest.mark.parametrize("status", [200, 304, 300, 404, "302"])
def test_a_redirect_has_a_status_browsers_follow(status: Any) -> None:
    """A redirect with another (200, 304) sent its Location to a browser that ignored it."""
    with pytest.raises(ValueError, match="browsers follow") as info:
        Response.redirect("/login", status=status)
    assert str(info.value) == (
        f"Response.redirect('/login', status={status!r}): a redirect's status is 301, 302, "
        "303, 307 or 308 (browsers follow a Location on no other); for another, make a "
        "Response with a location header"
    )
    assert [Response.redirect("/", s).status for s in (301, 302, 303, 307, 308)] == [
        301,
        302,
        303,
        307,
        308,
    ]


def test_headers_given_as_a_multi_dict_keep_every_value() -> None:
    """A Headers (or httpx's) given as a Response's headers kept the first Set-Cookie
    alone: its items() gives one value a name."""
    upstream = Headers([("set-cookie", "a=1"), ("x-id", "7"), ("set-cookie", "b=2")])
    r = Response("x", headers=upstream)
    assert header(r, "set-cookie") == ["a=1", "b=2"]
    assert header(r, "x-id") == ["7"]
    assert header(Response("x", headers={"x-id": "7"}), "x-id") == ["7"]


def test_redirect() -> None:
    r = Response.redirect("/items/a b?x=1")
    assert r.status == 307
    assert header(r, "location") == ["/items/a%20b?x=1"]
    assert Response.redirect("/", status=303).status == 303


def test_headers_as_a_list_keep_repeats() -> None:
    r = Response(b"", headers=[("vary", "accept"), ("vary", "cookie")])
    assert header(r, "vary") == ["accept", "cookie"]


def test_a_header_value_is_text_a_number_or_bytes_and_never_none() -> None:
    r = Response(b"", headers={"x-count": 3, "x-raw": b"caf\xe9", "x-text": "t", b"x-b": "n"})  # type: ignore[arg-type]
    assert [header(r, n) for n in ("x-count", "x-raw", "x-text", "x-b")] == [
        ["3"],
        ["caf\xe9"],
        ["t"],
        ["n"],
    ]
    with pytest.raises(TypeError) as raised:
        Response("x", headers={"ETag": None})  # type: ignore[arg-type]
    assert str(raised.value) == (
        "header 'ETag' is None; leave the header out, or give its value as a str"
    )


def test_set_cookie_twice_keeps_both() -> None:
    r = Response("ok")
    r.set_cookie("session", "abc")
    r.set_cookie(
        "prefs",
        "dark",
        max_age=3600,
        path="/app",
        domain="example.com",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    assert header(r, "set-cookie") == [
        "session=abc; Path=/; SameSite=Lax",
        "prefs=dark; Max-Age=3600; Path=/app; Domain=example.com; Secure; HttpOnly; "
        "SameSite=Strict",
    ]


def test_a_partitioned_cookie_is_set_and_deleted_partitioned() -> None:
    """CHIPS: a third-party cookie where browsers block the others; set_cookie had no
    way to say Partitioned."""
    r = Response()
    r.set_cookie("sid", "v", secure=True, samesite="none", partitioned=True)
    r.delete_cookie("sid", samesite="none", partitioned=True)
    sent, ended = header(r, "set-cookie")
    assert sent == "sid=v; Path=/; Secure; SameSite=None; Partitioned"
    assert ended.startswith("sid=; Max-Age=0; Expires=")
    assert ended.endswith("; Path=/; Secure; SameSite=None; Partitioned")
    with pytest.raises(ValueError, match="partitioned=True without secure=True: browsers drop"):
        r.set_cookie("sid", "v", partitioned=True)


def test_set_cookie_expires_and_no_defaults() -> None:
    r = Response()
    r.set_cookie(
        "a", "1", expires=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC), path=None, samesite=None
    )
    assert header(r, "set-cookie") == ["a=1; Expires=Wed, 02 Jan 2030 03:04:05 GMT"]


def test_set_cookie_expires_without_a_time_zone_is_refused_naming_the_fix() -> None:
    # naive is local time to Python but UTC to whoever wrote datetime.utcnow(): off by the
    # host's offset from UTC either way
    with pytest.raises(ValueError, match="without a time zone") as err:
        Response().set_cookie("a", "1", expires=datetime(2030, 1, 2, 3, 4, 5))
    message = str(err.value)
    assert "cookie 'a' has expires=datetime.datetime(2030, 1, 2, 3, 4, 5)" in message
    assert "without a time zone; give an aware one (datetime.now(timezone.utc)" in message


def test_delete_cookie_expires_it_now() -> None:
    r = Response()
    r.delete_cookie("session")
    (value,) = header(r, "set-cookie")
    assert value.startswith("session=; Max-Age=0; Expires=")
    assert value.endswith(" GMT; Path=/; SameSite=Lax")


def test_a_prefixed_cookie_is_deleted_with_its_attributes() -> None:
    """Browsers ignore a __Host- or __Secure- cookie without Secure (RFC 6265bis 4.1.3):
    deleting one without it deleted nothing."""
    r = Response()
    r.delete_cookie("__Host-sid")
    r.delete_cookie("other", secure=True, httponly=True, samesite="strict")
    host, other = header(r, "set-cookie")
    assert host.startswith("__Host-sid=; Max-Age=0;") and host.endswith(
        "; Path=/; Secure; SameSite=Lax"
    )
    assert other.endswith("; Path=/; Secure; HttpOnly; SameSite=Strict")


def test_a_cookie_of_no_text_says_what_to_give() -> None:
    """``set_cookie("count", 5)`` failed with "expected string or bytes-like object, got
    'int'", and an expires given as text with "'str' object has no attribute 'utcoffset'"."""
    r = Response()
    with pytest.raises(TypeError) as info:
        r.set_cookie("count", 5)  # type: ignore[arg-type]
    assert (
        str(info.value) == "cookie 'count' has a value of int 5; give a str (str(5) for a number)"
    )
    with pytest.raises(TypeError, match="cookie 'a' has a path of int 1; give a str"):
        r.set_cookie("a", "1", path=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cookie 7 has a name of int 7; give a str"):
        r.set_cookie(7, "1")  # type: ignore[arg-type]
    with pytest.raises(TypeError) as info:
        r.set_cookie("a", "1", expires="Wed, 21 Oct 2026 07:28:00 GMT")  # type: ignore[arg-type]
    assert str(info.value).startswith(
        "cookie 'a' has expires='Wed, 21 Oct 2026 07:28:00 GMT', which is no datetime; give "
        "an aware one"
    )
    assert header(r, "set-cookie") == []
    r.set_cookie("a", "1", path=None, domain=None)
    assert header(r, "set-cookie") == ["a=1; SameSite=Lax"]


def test_a_prefixed_cookie_that_breaks_its_prefix_is_refused() -> None:
    """Browsers drop it without a word (RFC 6265bis 4.1.3), so a session never stuck."""
    r = Response()
    with pytest.raises(ValueError, match="browsers drop it") as err:
        r.set_cookie("__Host-sid", "v")
    assert str(err.value) == (
        "cookie '__Host-sid' has a __Host- name but not secure=True: browsers drop it; "
        "pass secure=True (the site must be served over HTTPS)"
    )
    with pytest.raises(ValueError, match="has a __Secure- name but not secure=True"):
        r.set_cookie("__Secure-sid", "v")
    with pytest.raises(ValueError, match="has a __secure- name but not secure=True"):
        r.set_cookie("__secure-sid", "v")  # browsers read the prefix in any case
    with pytest.raises(ValueError, match="browsers drop it") as err:
        r.set_cookie("__Host-sid", "v", secure=True, path="/app")
    assert str(err.value) == (
        "cookie '__Host-sid' has a __Host- name but path='/app', domain=None: browsers drop "
        "it; a __Host- cookie has path='/' and no domain"
    )
    with pytest.raises(ValueError, match=r"has a __Host- name but path='/', domain='x\.example'"):
        r.set_cookie("__Host-sid", "v", secure=True, domain="x.example")
    with pytest.raises(ValueError, match="has a __host- name but path=None"):
        r.delete_cookie("__host-sid", path=None)  # type: ignore[arg-type]
    assert header(r, "set-cookie") == []
    r.set_cookie("__Host-sid", "v", secure=True)
    r.set_cookie("__Secure-sid", "v", secure=True, path="/app", domain="x.example")
    r.delete_cookie("__host-old")
    assert header(r, "set-cookie")[:2] == [
        "__Host-sid=v; Path=/; Secure; SameSite=Lax",
        "__Secure-sid=v; Path=/app; Domain=x.example; Secure; SameSite=Lax",
    ]
    assert header(r, "set-cookie")[2].endswith("; Path=/; Secure; SameSite=Lax")


def test_cookie_max_age_is_whole_seconds_or_a_timedelta() -> None:
    r = Response()
    r.set_cookie("a", "1", max_age=timedelta(hours=1))
    assert header(r, "set-cookie") == ["a=1; Max-Age=3600; Path=/; SameSite=Lax"]


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"max_age": 1.5}, "max_age=1.5; give whole seconds (an int) or a datetime.timedelta"),
        ({"max_age": "3600"}, "max_age='3600'; give whole seconds"),
        ({"samesite": "bogus"}, "samesite='bogus'; give 'lax', 'strict' or 'none'"),
        ({"samesite": "none"}, "samesite='none' without secure=True: browsers drop it"),
        # sent as Latin-1 bytes (or a 500 as the answer went out), never matching the URL
        (
            {"domain": "bücher.example"},
            r"domain that is not ASCII: 'bücher.example'; give the host's IDNA form",
        ),
        ({"path": "/café"}, r"path that is not ASCII: '/café'; percent-encode it"),
        ({"path": "/日本"}, r"path that is not ASCII: '/日本'; percent-encode it"),
    ],
)
def test_a_cookie_attribute_a_browser_would_ignore_is_refused(
    kwargs: dict[str, Any], why: str
) -> None:
    """RFC 6265 5.2.2: a Max-Age that is not digits is ignored, and the cookie silently
    lives for the session; an unknown SameSite is ignored too."""
    with pytest.raises(ValueError, match=re.escape(why)):
        Response().set_cookie("a", "1", **kwargs)


@pytest.mark.parametrize("status", [99, 600, 0, -200, True, "200", 200.0, None])
def test_bad_status(status: Any) -> None:
    with pytest.raises(ValueError, match="is not an integer from 200 to 599") as info:
        Response(b"", status=status)
    assert str(info.value) == f"HTTP status {status!r} is not an integer from 200 to 599"


@pytest.mark.parametrize("status", [100, 101, 199])
def test_an_interim_status_is_the_hosts_to_send(status: int) -> None:
    with pytest.raises(ValueError, match="1xx are interim responses; the host sends those"):
        Response(b"", status=status)
    with pytest.raises(ValueError, match="1xx are interim responses"):
        HTTPError(status)


@pytest.mark.parametrize("status", [200, 204, 599])
def test_edge_statuses_are_fine(status: int) -> None:
    assert Response(b"", status=status).status == status


def test_body_of_the_wrong_type_points_to_json() -> None:
    with pytest.raises(TypeError) as info:
        Response({"a": 1})  # type: ignore[arg-type]
    assert str(info.value) == (
        "Response body is dict; pass bytes or str, or use Response.json(...) for data"
    )


# --- to_response ---------------------------------------------------------------------------


def test_str_becomes_text() -> None:
    r = to_response("hello", "fn")
    assert (r.status, r.body, header(r, "content-type")) == (
        200,
        b"hello",
        ["text/plain; charset=utf-8"],
    )


@pytest.mark.parametrize("value", [b"\x00\x01", bytearray(b"\x00\x01"), memoryview(b"\x00\x01")])
def test_bytes_become_octet_stream(value: Any) -> None:
    r = to_response(value, "fn")
    assert (r.status, r.body, header(r, "content-type")) == (
        200,
        b"\x00\x01",
        ["application/octet-stream"],
    )


@pytest.mark.parametrize(
    ("value", "body"),
    [({"a": [1, None]}, b'{"a":[1,null]}'), ([1, "two"], b'[1,"two"]'), ({}, b"{}"), ([], b"[]")],
)
def test_dict_and_list_become_json(value: Any, body: bytes) -> None:
    r = to_response(value, "fn")
    assert (r.status, r.body, header(r, "content-type")) == (200, body, ["application/json"])


def test_a_streaming_response_wants_an_async_iterator() -> None:
    with pytest.raises(TypeError, match=r"async iterator of bytes or str .* got list"):
        StreamingResponse([b"not", b"async"])  # type: ignore[arg-type]

    async def parts() -> Any:
        yield b"x"

    # the generator function, not the generator it makes: it said "got function"
    with pytest.raises(
        TypeError, match=r"got function .*: call it, StreamingResponse\(parts\(\)\)"
    ):
        StreamingResponse(parts)  # type: ignore[arg-type]


def test_none_becomes_204_with_no_body() -> None:
    r = to_response(None, "fn")
    assert (r.status, r.body, r.headers) == (204, b"", [])


def test_a_response_is_returned_as_is() -> None:
    original = Response("x", status=418)
    assert to_response(original, "fn") is original


@pytest.mark.parametrize(
    ("value", "type_name"), [(("a", "b"), "tuple"), (42, "int"), ({1, 2}, "set"), (1.5, "float")]
)
def test_other_return_types_are_a_type_error_naming_them(value: Any, type_name: str) -> None:
    with pytest.raises(TypeError) as info:
        to_response(value, "function_app.py:12 (get_item)")
    assert str(info.value) == (
        f"function function_app.py:12 (get_item) returned {type_name}; "
        "return a hibana.Response, str, bytes, dict, list or None"
    )


def test_a_generator_returned_is_a_type_error_pointing_at_streaming_response() -> None:
    with pytest.raises(TypeError, match=r"returned a generator; .* hibana.StreamingResponse"):
        to_response((part for part in [b"x"]), "get_item")


@pytest.mark.parametrize(
    "value", ["v; Domain=evil.example", "a b", "x,y", 'q"', "back\\slash", "\x01"]
)
def test_a_cookie_value_a_cookie_cannot_hold_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=r"percent-encode it with urllib\.parse\.quote"):
        Response().set_cookie("session", value)


def test_cookie_names_paths_and_domains_are_checked_and_quoted_values_are_fine() -> None:
    r = Response()
    r.set_cookie("session", '"quoted-value"')
    assert header(r, "set-cookie") == ['session="quoted-value"; Path=/; SameSite=Lax']
    with pytest.raises(ValueError, match="cookie name 'a b' is not an HTTP token"):
        r.set_cookie("a b", "v")
    with pytest.raises(ValueError, match="has a path with ';'"):
        r.set_cookie("a", "v", path="/; Domain=evil.example")
    with pytest.raises(ValueError, match="has a domain with ';'"):
        r.set_cookie("a", "v", domain="x.example; Secure")


@pytest.mark.parametrize("status", [200, 302, 399])
def test_an_http_error_is_an_error_status(status: int) -> None:
    with pytest.raises(ValueError, match=r"an error status is 400 to 599"):
        HTTPError(status)


def test_a_redirect_to_a_host_idna_cannot_write_names_it() -> None:
    """``Response.redirect(req.query["next"])`` of such a URL raised a bare UnicodeError
    ("encoding with 'idna' codec failed") that named neither the URL nor the call."""
    with pytest.raises(ValueError, match=r"Response.redirect\('https://ä..example/x'\): its host"):
        Response.redirect("https://ä..example/x")


@pytest.mark.parametrize(
    ("location", "sent"),
    [
        ("https://bücher.example/ü?q=ä", "https://xn--bcher-kva.example/%C3%BC?q=%C3%A4"),
        ("https://user@Bücher.example:8080/x", "https://user@xn--bcher-kva.example:8080/x"),
        ("/local/ü", "/local/%C3%BC"),
        ("https://example.com/a b", "https://example.com/a%20b"),
    ],
)
def test_a_redirect_location_is_ascii_with_an_idna_host(location: str, sent: str) -> None:
    assert header(Response.redirect(location), "location") == [sent]


def test_a_float_json_has_no_value_for_goes_out_as_null() -> None:
    # NaN and infinity are no JSON: null, as JSON.stringify sends, never an invalid body
    nan, inf = float("nan"), float("inf")
    assert Response.json({"a": nan, "b": -inf}).body == b'{"a":null,"b":null}'
    assert to_response([nan, 1.5], "f").body == b"[null,1.5]"
