"""HTTP functions through the real host: routing, parameters, bodies, status codes, logs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.hosts import APPS, Host, declared, shown, started


def test_route_parameter_and_text_response(basic_host: Host) -> None:
    with basic_host.client() as client:
        r = client.get("/hello/world")
    assert r.status_code == 200
    assert r.text == "Hello world"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    line = basic_host.wait_for_log(msg="greeting", name="world")
    assert line["function"] == "hello"
    assert line["invocation_id"] == r.headers["x-invocation-id"]


def test_an_object_with_an_async_call_is_an_async_function(basic_host: Host) -> None:
    """It was taken for a sync one: every request failed, "returned coroutine"."""
    with basic_host.client() as client:
        r = client.get("/callable-object")
    assert (r.status_code, r.text) == (200, "greeted by a Greeter")


def test_a_plain_def_that_returns_a_coroutine_is_a_500_naming_the_fix(basic_host: Host) -> None:
    """A decorator whose wrapper is a plain def, around an async def."""
    with basic_host.client() as client:
        r = client.get("/wrapped-async")
    assert r.status_code == 500
    line = basic_host.wait_for_log(invocation_id=r.json()["invocation_id"], msg="invocation")
    assert line["error"].startswith("TypeError: function 'wrapped_async' (")
    # where: the wrapper, the code to change
    assert line["error"].endswith(
        f"function_app.py:{_line_of('    @functools.wraps(fn)')}) is a plain def that returned a "
        "coroutine, so its body never ran: a decorator whose wrapper is a plain def around "
        "an async def does this; make the wrapper `async def` and `return await fn(...)` "
        "in it (functools.wraps alone does not make it async)"
    )


def _line_of(text: str) -> int:
    """The line of the basic app's function_app.py that starts with ``text``."""
    lines = (APPS / "basic" / "function_app.py").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith(text))


def test_typed_route_parameter_is_converted_and_mismatch_is_404(basic_host: Host) -> None:
    with basic_host.client() as client:
        ok = client.put("/items/42")
        neg = client.get("/items/-7")
        wrong = client.get("/items/abc")
    assert ok.json() == {"id": 42, "type": "int", "method": "PUT"}
    assert neg.json()["id"] == -7
    assert wrong.status_code == 404
    assert wrong.json() == {"error": "no function serves GET /items/abc"}


def test_unknown_route_is_404_and_wrong_method_is_405_with_allow(basic_host: Host) -> None:
    with basic_host.client() as client:
        missing = client.get("/no/such/route")
        wrong = client.delete("/items/1")
        unknown = client.request("PROPFIND", "/items/1")
    # RFC 9110 9.1: a method no function of the app takes, and no standard one, is 501
    assert unknown.status_code == 501
    assert unknown.json()["error"] == (
        "no function of this app takes PROPFIND (this path allows GET, HEAD, PUT)"
    )
    assert missing.status_code == 404
    assert "GET /no/such/route" in missing.json()["error"]
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET, HEAD, PUT"
    assert "DELETE" in wrong.json()["error"]
    # no invocation line for either: these say what was asked and not served
    for answer in (missing, wrong):
        line = basic_host.wait_for_log(msg="no function", error=answer.json()["error"])
        assert line["status"] == answer.status_code


def test_a_path_with_or_without_the_routes_trailing_slash_is_redirected(
    basic_host: Host,
) -> None:
    """308, so a POST is sent again as a POST with its body (as Starlette redirects)."""
    with basic_host.client() as client:
        extra = client.get("/items/7/?tag=a")
        posted = client.post("/echo/", content=b"kept")
        followed = client.post("/echo/", content=b"kept", follow_redirects=True)
        wrong = client.delete("/items/7/")  # no function takes DELETE there: 404, as before
    assert (extra.status_code, extra.headers["location"]) == (308, "/items/7?tag=a")
    assert extra.json() == {"error": "/items/7/ is served at /items/7?tag=a"}
    assert (posted.status_code, posted.headers["location"]) == (308, "/echo")
    assert (followed.status_code, followed.content) == (200, b"kept")
    assert wrong.status_code == 404


def test_repeated_query_parameters_and_headers_keep_every_value(basic_host: Host) -> None:
    with basic_host.client() as client:
        r = client.get(
            "/inspect",
            params=[("tag", "a"), ("tag", "b c"), ("empty", ""), ("pct", "100%")],
            headers=[("X-Multi", "one"), ("x-multi", "two")],
        )
    body = r.json()
    assert body["tags"] == ["a", "b c"]
    assert body["first_tag"] == "a"
    assert ["empty", ""] in body["query"]
    assert ["pct", "100%"] in body["query"]  # decoded exactly once
    assert body["x_multi"] == ["one", "two"]


def test_context_fields_reach_the_function(basic_host: Host) -> None:
    with basic_host.client() as client:
        r = client.get("/inspect")
    body = r.json()
    assert body["function"] == "inspect"
    assert body["attempt"] == 1
    assert body["remaining_ok"] is True
    assert body["invocation_id"] == r.headers["x-invocation-id"]
    assert body["client"][0] == "127.0.0.1"


def test_binary_body_round_trips_byte_for_byte(basic_host: Host) -> None:
    payload = os.urandom(300_000) + b"\x00\xff" * 10
    with basic_host.client() as client:
        r = client.post("/echo", content=payload, headers={"content-type": "image/png"})
        raw = client.get("/bytes")
    assert r.status_code == 200
    assert r.content == payload
    assert r.headers["content-type"] == "image/png"
    assert raw.content == bytes(range(256))
    assert raw.headers["content-type"] == "application/octet-stream"


def test_json_helpers_and_status_codes(basic_host: Host) -> None:
    with basic_host.client() as client:
        created = client.post("/json", json={"a": [1, 2, {"b": None}]})
        bad = client.post(
            "/json", content=b"{not json", headers={"content-type": "application/json"}
        )
        empty = client.delete("/nothing")
        tea = client.get("/teapot")
    assert created.status_code == 201
    assert created.json() == {"got": {"a": [1, 2, {"b": None}]}}
    assert bad.status_code == 400
    assert "not valid JSON" in bad.json()["error"]
    assert bad.json()["invocation_id"] == bad.headers["x-invocation-id"]
    assert empty.status_code == 204
    assert empty.content == b""
    assert tea.status_code == 418
    assert tea.json()["error"] == "short and stout"


def test_cookies_in_and_several_set_cookie_out(basic_host: Host) -> None:
    with basic_host.client() as client:
        seen = client.get("/inspect", headers={"cookie": "a=1; b=two"})
        r = client.get("/cookies")
    assert seen.json()["cookies"] == {"a": "1", "b": "two"}
    assert r.status_code == 202
    set_cookies = r.headers.get_list("set-cookie")
    assert len(set_cookies) == 2
    assert set_cookies[0].startswith("session=abc") and "HttpOnly" in set_cookies[0]
    assert set_cookies[1].startswith("theme=dark") and "Max-Age=60" in set_cookies[1]


def test_blueprint_functions_are_served(basic_host: Host) -> None:
    with basic_host.client() as client:
        assert client.get("/from-blueprint").text == "blueprint"


def test_exception_gives_500_with_only_the_invocation_id(basic_host: Host) -> None:
    with basic_host.client() as client:
        r = client.get("/boom")
    assert r.status_code == 500
    assert r.json() == {"invocation_id": r.headers["x-invocation-id"]}
    assert "secret detail" not in r.text
    line = basic_host.wait_for_log(
        msg="function raised", invocation_id=r.headers["x-invocation-id"]
    )
    assert line["level"] == "error"
    assert "RuntimeError: secret detail" in line["error"]
    # the traceback starts at the function: the host's frames that called it say nothing
    app_file = str(APPS / "basic" / "function_app.py")
    assert line["traceback"].startswith("Traceback (most recent call last):\n")
    assert _frames(line["traceback"]) == [(app_file, "boom")]
    with basic_host.client() as client:
        r = client.get("/boom-async")
    assert r.status_code == 500
    line = basic_host.wait_for_log(
        msg="function raised", invocation_id=r.headers["x-invocation-id"]
    )
    assert _frames(line["traceback"]) == [(app_file, "boom_async"), (app_file, "fail_deeper")]


def test_an_exception_whose_str_fails_is_the_documented_500(basic_host: Host) -> None:
    """Its ``str()`` raised while its invocation line was written: the client got the
    front's "the host failed to answer" without an invocation id, and no line was written."""
    for path in ("/unprintable", "/unprintable-async"):
        with basic_host.client() as client:
            r = client.get(path)
        assert r.status_code == 500
        assert r.json() == {"invocation_id": r.headers["x-invocation-id"]}
        line = basic_host.wait_for_log(invocation_id=r.json()["invocation_id"], msg="invocation")
        assert (line["outcome"], line["status"]) == ("error", 500)
        assert line["error"] == "_Unprintable: <exception str() failed>"


def test_a_server_error_raised_as_http_error_says_what_on_its_line(basic_host: Host) -> None:
    """Every other failure's invocation line carries ``error``; a 5xx HTTPError's had none."""
    with basic_host.client() as client:
        r = client.get("/unavailable")
        tea = client.get("/teapot")
    assert r.status_code == 503
    assert r.json()["error"] == "the ledger is down for a bit"
    line = basic_host.wait_for_log(invocation_id=r.json()["invocation_id"], msg="invocation")
    assert line["outcome"] == "error"
    assert line["error"] == "HTTPError: the ledger is down for a bit"
    # a client error is the client's: its line stays without one
    line = basic_host.wait_for_log(invocation_id=tea.json()["invocation_id"], msg="invocation")
    assert "error" not in line


def test_an_http_error_the_host_cannot_send_fails_where_it_is_raised(basic_host: Host) -> None:
    """Its headers and detail were read once the function had ended, in the host's front:
    a 500 without the invocation's id ("the host failed to answer"), no invocation line,
    and an error that named neither the function nor the line that raised it."""
    for how, error in [
        ("none", "TypeError: header 'retry-after' is None; leave the header out"),
        ("text", "TypeError: headers 'retry-after: 1' are not a mapping nor (name, value) pairs"),
        (
            "exception",
            'TypeError: HTTPError detail ValueError("invalid literal for int() with base 10: '
            "'x'\") cannot be sent as JSON (TypeError: Encoding objects of type ValueError "
            "is unsupported); give str(exc)",
        ),
    ]:
        with basic_host.client() as client:
            r = client.get(f"/http-error-headers/{how}")
        assert r.status_code == 500
        assert r.json() == {"invocation_id": r.headers["x-invocation-id"]}
        inv = r.headers["x-invocation-id"]
        raised = basic_host.wait_for_log(msg="function raised", invocation_id=inv)
        assert raised["error"].startswith(error), raised
        assert ("function_app.py", "http_error_headers") in [
            (file.rsplit("/", 1)[-1], fn) for file, fn in _frames(raised["traceback"])
        ]
        line = basic_host.wait_for_log(msg="invocation", invocation_id=inv)
        assert (line["outcome"], line["status"]) == ("error", 500)


def test_a_response_whose_headers_or_body_were_set_wrong_is_a_500_naming_them(
    basic_host: Host,
) -> None:
    """A header appended that is no pair of strs, or a str body set after the Response
    was made, failed the host's front once the function had ended: its client got a 500
    without the invocation's id (a str body: no answer at all), and no line said why."""
    for how, error in [
        ("count", "header ('x-count', 5) is not a pair of strs; give its name and value as str"),
        ("line", "header 'x-count: 5' is not a (name, value) pair"),
        ("text", "body is str 'set after'; set response.body to bytes (text.encode())"),
        ("replaced", "headers are dict {'x-count': '5'}, not a list of (name, value) pairs"),
        ("cleared", "headers are NoneType None, not a list of (name, value) pairs"),
        ("half", None),
        ("undecided", None),
    ]:
        with basic_host.client() as client:
            r = client.get(f"/set-after/{how}")
        assert r.status_code == 500
        assert r.json() == {"invocation_id": r.headers["x-invocation-id"]}
        inv = r.headers["x-invocation-id"]
        raised = basic_host.wait_for_log(msg="function raised", invocation_id=inv)
        if how == "undecided":  # no foreseen failure: the 500 says what it was all the same
            assert raised["error"] == "LookupError: the status is not decided yet", raised
        else:
            said = (
                f"a Response whose {error}"
                if error is not None
                else "a Page that is half a Response ('Page' object has no attribute "
                "'status'); its __init__ must call super().__init__(body, status, headers)"
            )
            assert raised["error"].startswith(
                f"TypeError: function {declared('basic', 'set_after')} returned {said}"
            ), raised
        line = basic_host.wait_for_log(msg="invocation", invocation_id=inv)
        assert (line["outcome"], line["status"]) == ("error", 500)
    with basic_host.client() as client:
        r = client.get("/set-after/bytearray")  # bytes all the same: sent
    assert (r.status_code, r.text) == (200, "set after")


def test_reading_what_the_client_did_not_send_is_a_400_naming_it(basic_host: Host) -> None:
    """``req.query["page"]`` (a header, a cookie, a form's field or file) of a key the client left
    out was a KeyError: a 500 counted against the function, and nothing told the client
    what it had left out."""
    with basic_host.client() as client:
        answers = {
            "page": client.get("/needs/page"),
            "key": client.get("/needs/key"),
            "cookie": client.get("/needs/cookie", headers={"cookie": "other=1"}),
            "field": client.post("/needs/field", data={"other": "x"}),
            # read with req.form(), sent as a file: it said "send it", which the client had
            "field as a file": client.post("/needs/field", files={"name": ("a.txt", b"x")}),
            "file": client.post("/needs/file", files={"other": ("a.txt", b"x")}),
            "urlencoded file": client.post("/needs/file", data={"upload": "a.txt"}),
        }
        optional = client.get("/needs/optional")
        sent = client.get("/needs/page", params={"page": "2"}, headers={"x-api-key": "k"})
    field_error = "form field 'name' is missing; send it (a part with a filename is in req.files())"
    file_error = (
        "file 'upload' is missing; send it as a multipart/form-data part with a filename "
        "(a field without one is in req.form())"
    )
    assert {what: (r.status_code, r.json()["error"]) for what, r in answers.items()} == {
        "page": (400, "query parameter 'page' is missing; send ?page=..."),
        "key": (400, "header 'X-Api-Key' is missing; send it"),
        "cookie": (400, "cookie 'session' is missing; send it"),
        "field": (400, field_error),
        "field as a file": (400, field_error),
        "file": (400, file_error),
        "urlencoded file": (400, file_error),
    }
    for r in answers.values():
        line = basic_host.wait_for_log(msg="invocation", invocation_id=r.headers["x-invocation-id"])
        assert (line["outcome"], line["status"]) == ("error", 400)
    # a KeyError all the same, for code that does without the key
    assert (optional.status_code, optional.json()) == (200, {"page": None})
    assert (sent.status_code, sent.json()) == (200, {"page": "2"})


def test_a_stream_that_yields_no_bytes_nor_str_says_what_it_yielded(basic_host: Host) -> None:
    """Its line said "object of type 'int' has no len()", naming neither it nor the fix."""
    with basic_host.client() as client, pytest.raises(httpx.RemoteProtocolError):
        client.get("/stream-odd")  # cut short after its first part
    line = basic_host.wait_for_log(msg="invocation", function="stream_odd")
    assert (line["status"], line["outcome"]) == (200, "error")
    assert line["error"] == (
        "TypeError: the stream of function 'stream_odd' yielded int 5; yield bytes or str "
        "(json.dumps(...) for data)"
    )


def test_an_http_error_spoilt_by_its_raiser_is_a_500_naming_it(basic_host: Host) -> None:
    """A subclass whose __init__ skips HTTPError's, or a status set to text, failed the
    host's front: a 500 without the invocation's id, and no invocation line."""
    for how, error in [
        ("init", "AttributeError: 'NotFound' object has no attribute 'detail'"),
        ("status", "ValueError: HTTP status '404' is not an integer from 200 to 599"),
    ]:
        with basic_host.client() as client:
            r = client.get(f"/spoilt-http-error/{how}")
        assert r.status_code == 500
        assert r.json() == {"invocation_id": r.headers["x-invocation-id"]}
        inv = r.headers["x-invocation-id"]
        raised = basic_host.wait_for_log(msg="function raised", invocation_id=inv)
        kind = "NotFound" if how == "init" else "HTTPError"
        assert raised["error"] == (
            f"TypeError: function {declared('basic', 'spoilt_http_error')} raised {kind}, "
            "which cannot be answered: "
            f"{error}; a subclass's __init__ must call super().__init__(status, detail), and "
            "leave status an int"
        )
        assert ("function_app.py", "spoilt_http_error") in [
            (file.rsplit("/", 1)[-1], fn) for file, fn in _frames(raised["traceback"])
        ]
        line = basic_host.wait_for_log(msg="invocation", invocation_id=inv)
        assert (line["outcome"], line["status"]) == ("error", 500)


def test_cancelled_raised_unasked_is_a_500_counted_as_an_error(basic_host: Host) -> None:
    """No one cancelled it: it was a 503 "the invocation was cancelled" with Retry-After,
    telling the client to send again what would fail again, and not counted as a failure."""
    with basic_host.client() as client:
        r = client.get("/cancels-itself")
    assert r.status_code == 500
    assert r.json() == {"invocation_id": r.headers["x-invocation-id"]}
    assert "retry-after" not in r.headers
    line = basic_host.wait_for_log(invocation_id=r.json()["invocation_id"], msg="invocation")
    assert (line["outcome"], line["status"]) == ("error", 500)
    assert line["error"] == "Cancelled: giving up of its own"
    assert "cancel_reason" not in line
    # the board counts it as the invocation ends, which may be just after its answer
    give_up = time.monotonic() + 10
    while basic_host.function_status("cancels_itself")["errors"] == 0:
        assert time.monotonic() < give_up, "hibana status never counted it as an error"
        time.sleep(0.05)


def _frames(traceback: str) -> list[tuple[str, str]]:
    """The (file, function) of each frame of a formatted traceback."""
    return re.findall(r'^  File "([^"]+)", line \d+, in (\w+)$', traceback, re.MULTILINE)


def test_a_coroutine_returned_unawaited_is_a_500_that_says_to_await_it(
    basic_host: Host,
) -> None:
    with basic_host.client() as client:
        r = client.get("/forgot-await")
    assert r.status_code == 500
    inv = r.headers["x-invocation-id"]
    line = basic_host.wait_for_log(msg="function raised", invocation_id=inv)
    assert "returned coroutine" in line["error"], line
    assert "without awaiting it, so it never ran: write `return await ...`" in line["error"]
    basic_host.wait_for_log(msg="invocation", invocation_id=inv)
    never_awaited = [text for text in basic_host.stderr_lines if "never awaited" in text]
    assert never_awaited == []


def test_unsupported_return_type_is_a_500_that_names_the_type(basic_host: Host) -> None:
    with basic_host.client() as client:
        r = client.get("/bad-return")
    assert r.status_code == 500
    line = basic_host.wait_for_log(
        msg="function raised", invocation_id=r.headers["x-invocation-id"]
    )
    assert "returned int" in line["error"]
    line = basic_host.wait_for_log(msg="invocation", invocation_id=r.headers["x-invocation-id"])
    assert (line["outcome"], line["status"], line["level"]) == ("error", 500, "error")
    with basic_host.client() as client:
        r = client.get("/bad-return", params={"in": "dict"})
    assert r.status_code == 500
    line = basic_host.wait_for_log(
        msg="function raised", invocation_id=r.headers["x-invocation-id"]
    )
    assert line["error"].startswith(
        f"TypeError: function {declared('basic', 'bad_return')} returned a dict that is not "
        "JSON: Encoding objects "
        "of type object is unsupported"
    )
    with basic_host.client() as client:
        # a cycle failed the front (no invocation id, no line); a lone surrogate named no one
        cycle = client.get("/bad-return", params={"in": "cycle"})
        surrogate = client.get("/bad-return", params={"in": "surrogate"})
        pair = client.get("/bad-return", params={"in": "tuple"})
    line = basic_host.wait_for_log(
        msg="function raised", invocation_id=pair.headers["x-invocation-id"]
    )
    assert line["error"] == (
        f"TypeError: function {declared('basic', 'bad_return')} returned a tuple ({{'id': 7}}, "
        "201); to answer with a "
        "status of your own, return hibana.Response(text, status) or "
        "hibana.Response.json(data, status)"
    )
    for r, error in [
        (cycle, "holds itself, or is nested too deeply to write as JSON; return data without"),
        (surrogate, "is not JSON: 'utf-8' codec can't encode character '\\udce9'"),
    ]:
        assert r.status_code == 500
        line = basic_host.wait_for_log(
            msg="function raised", invocation_id=r.headers["x-invocation-id"]
        )
        assert line["error"].startswith(
            f"TypeError: function {declared('basic', 'bad_return')} returned a dict that {error}"
        ), line


BAD_RETURNS = """\
import hibana

app = hibana.App()


@app.http("/set")
def give_set(req, ctx):
    return {1, 2}


class Thing:
    pass


@app.http("/object")
async def give_object(req, ctx):
    return Thing()


@app.http("/body")
def give_body(req, ctx):
    r = hibana.Response("fine")
    r.body = {"a": 1}
    return r
"""


def test_a_bad_return_is_logged_naming_the_functions_file_and_line(tmp_path: Path) -> None:
    """Its line named the function but not where it is, and its traceback was hibana's
    alone (http.py, then responses.py), none of the function's: the function had returned."""
    (tmp_path / "function_app.py").write_text(BAD_RETURNS)
    where = shown(tmp_path / "function_app.py")
    for host in started(tmp_path, "--workers", "1"):
        for path, said in [
            ("/set", f"{where}:6 (give_set) returned set; return a hibana.Response, str"),
            ("/object", f"{where}:15 (give_object) returned Thing; return a hibana.Response"),
            ("/body", f"{where}:20 (give_body) returned a Response whose body is dict"),
        ]:
            with host.client() as client:
                r = client.get(path)
            assert r.status_code == 500
            inv = r.headers["x-invocation-id"]
            assert r.json() == {"invocation_id": inv}  # the client learns no more
            raised = host.wait_for_log(msg="function raised", invocation_id=inv)
            assert raised["error"].startswith(f"TypeError: function {said}"), raised
            assert "traceback" not in raised, raised["traceback"]
            line = host.wait_for_log(msg="invocation", invocation_id=inv)
            assert line["error"] == raised["error"]


def test_every_invocation_logs_one_structured_line(basic_host: Host) -> None:
    with basic_host.client() as client:
        r = client.get("/hello/logs")
    inv = r.headers["x-invocation-id"]
    line = basic_host.wait_for_log(msg="invocation", invocation_id=inv)
    assert line["function"] == "hello"
    assert line["outcome"] == "ok"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert len(line["trace_id"]) == 32 and len(line["span_id"]) == 16
    assert line["level"] == "info"
    assert line["ts"].endswith("Z")
    # the function's own line carries the same invocation and trace, and comes first
    # (it was written on the function's thread, before the function returned)
    greeting = basic_host.wait_for_log(msg="greeting", name="logs")
    assert greeting["trace_id"] == line["trace_id"]
    order = [rec["msg"] for rec in basic_host.logs() if rec.get("invocation_id") == inv]
    assert order == ["greeting", "invocation"]


def test_incoming_traceparent_is_continued_and_returned(basic_host: Host) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = "00f067aa0ba902b7"
    with basic_host.client() as client:
        r = client.get("/inspect", headers={"traceparent": f"00-{trace_id}-{parent}-01"})
        fresh = client.get("/inspect", headers={"traceparent": "garbage"})
    body = r.json()
    assert body["trace_id"] == trace_id
    assert body["parent_span_id"] == parent
    assert body["span_id"] != parent
    assert r.headers["traceparent"] == f"00-{trace_id}-{body['span_id']}-01"
    line = basic_host.wait_for_log(msg="invocation", invocation_id=body["invocation_id"])
    assert line["trace_id"] == trace_id and line["parent_span_id"] == parent
    assert fresh.json()["trace_id"] != trace_id
    assert fresh.json()["parent_span_id"] is None
    assert fresh.headers["traceparent"].split("-")[1] == fresh.json()["trace_id"]


def test_tracestate_goes_on_with_the_trace_it_came_with(basic_host: Host) -> None:
    """W3C Trace Context 3.3: a continued trace passes its tracestate on (its several
    header lines are one list); one whose traceparent is not continued is dropped, and so
    is one with a key twice (in one line or over two)."""
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    long_members = [f"big{i}=" + "x" * 200 for i in range(3)]
    with basic_host.client() as client:
        two_lines = client.get(
            "/inspect",
            headers=[
                ("traceparent", parent),
                ("tracestate", "rojo=00f067aa0ba902b7"),
                ("tracestate", "congo=t61rcWkgMzE, bad key=1"),
            ],
        ).json()
        too_long = client.get(
            "/inspect",
            headers={
                "traceparent": parent,
                "tracestate": ",".join(long_members + [f"k{i}=v" for i in range(40)]),
            },
        ).json()
        twice = client.get(
            "/inspect",
            headers=[
                ("traceparent", parent),
                ("tracestate", "rojo=1,congo=2"),
                ("tracestate", "rojo=3"),
            ],
        ).json()
        orphan = client.get(
            "/inspect", headers={"traceparent": "garbage", "tracestate": "rojo=1"}
        ).json()
    assert two_lines["tracestate"] == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    # the first 32 members, within 512 characters: those over 128 go first
    assert too_long["tracestate"].split(",") == [f"k{i}=v" for i in range(29)]
    assert orphan["tracestate"] == ""
    assert twice["tracestate"] == ""
    assert twice["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"  # the trace goes on


def test_a_stream_whose_client_read_it_all_and_left_is_ok(basic_host: Host) -> None:
    """Its client had every byte its Content-Length declares and closed before the stream
    itself ended (a mounted Flask app does so, its bridge finishing after the body): it
    was answered, not cancelled."""
    r = httpx.get(basic_host.url + "/stream-then-linger", timeout=10)
    assert (r.status_code, r.content) == (200, b"whole")
    line = basic_host.wait_for_log(msg="invocation", invocation_id=r.headers["x-invocation-id"])
    assert (line["outcome"], line["status"]) == ("ok", 200), line


def test_two_traceparents_start_a_new_trace(basic_host: Host) -> None:
    """Two callers' contexts are no one trace to continue (the W3C test suite's
    duplicated-traceparent case): the host starts its own."""
    first = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    second = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with basic_host.client() as client:
        r = client.get("/inspect", headers=[("traceparent", first), ("traceparent", second)])
    body = r.json()
    assert body["trace_id"] not in (first.split("-")[1], second.split("-")[1])
    assert body["parent_span_id"] is None


def test_stdout_is_only_json_lines(basic_host: Host) -> None:
    with basic_host.client() as client:
        client.get("/hello/x")
    basic_host.wait_for_log(msg="greeting", name="x")
    for line in basic_host.stdout_lines:
        assert isinstance(json.loads(line), dict)


def test_head_is_served_for_get_routes(basic_host: Host) -> None:
    with basic_host.client() as client:
        r = client.head("/hello/head")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["content-length"] == str(len("Hello head"))


def test_head_of_a_streamed_response_does_not_run_the_stream(basic_host: Host) -> None:
    """A HEAD of a large download or an event stream answers with the head at once: the
    stream is closed unread, not produced for its bytes to be dropped."""
    with basic_host.client() as client:
        r = client.head("/flood")
    assert (r.status_code, r.content) == (200, b"")
    inv = r.headers["x-invocation-id"]
    line = basic_host.wait_for_log(msg="invocation", invocation_id=inv)
    assert (line["outcome"], line["method"]) == ("ok", "HEAD"), line
    # a worker's lines are in order: had the stream run, its line would be here by now
    ran = [ln for ln in basic_host.logs() if ln.get("msg") == "flood stopped"]
    assert [ln for ln in ran if ln.get("invocation_id") == inv] == []


def test_keep_alive_connection_serves_many_requests(basic_host: Host) -> None:
    with httpx.Client(base_url=basic_host.url) as client:
        ids = {client.get(f"/hello/{i}").headers["x-invocation-id"] for i in range(50)}
    assert len(ids) == 50


def test_log_lines_stay_whole_when_stdout_falls_behind() -> None:
    # Two workers share the host's stdout, a pipe whose reader (journald, a log shipper,
    # `| tee`) falls behind: the pipe fills up. A write to a full pipe may be cut short,
    # and another worker's write lands in the cut, unless each write is small enough for
    # the kernel to make it whole (PIPE_BUF). Every line must still be one JSON object,
    # and none may be lost.
    requests, lines = 48, 30
    with contextlib.ExitStack() as stack:
        host = stack.enter_context(
            contextlib.contextmanager(started)("basic", "--workers", "2", stdout_pause=0.0002)
        )
        client = stack.enter_context(host.client())
        pool = stack.enter_context(ThreadPoolExecutor(16))
        answers = list(pool.map(lambda _: client.get(f"/chatty/{lines}"), range(requests)))
        assert [r.status_code for r in answers] == [200] * requests
        invocations = {r.headers["x-invocation-id"] for r in answers}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = [rec for rec in host.logs() if rec["msg"] == "invocation"]
            if {rec["invocation_id"] for rec in done} >= invocations:
                break
            time.sleep(0.1)
        records = host.logs()  # fails naming a line that is not JSON
    said = {(rec["invocation_id"], rec["i"]) for rec in records if rec["msg"] == "chatter"}
    assert said == {(inv, i) for inv in invocations for i in range(lines)}
    assert len({r.text for r in answers}) == 2, "both workers wrote to the one pipe"


def test_logging_keeps_the_hosts_level_and_a_bad_format_never_fails_the_function(
    basic_host: Host,
) -> None:
    with basic_host.client() as client:
        r = client.get("/library-logs")
    assert (r.status_code, r.text) == (200, "logged")
    inv = r.headers["x-invocation-id"]
    line = basic_host.wait_for_log(logger="chatty.library", invocation_id=inv)
    assert line["msg"] == (
        "two places %s %s (its arguments (1,) did not format: TypeError: not enough "
        "arguments for format string)"
    )
    # a message whose str raises: told as ctx.log tells it (the exception failed the function)
    line = basic_host.wait_for_log(logger="chatty.library", level="warning", invocation_id=inv)
    assert line["msg"] == "<_NoStr whose str raised> (ValueError: no str here)"
    basic_host.wait_for_log(msg="invocation", invocation_id=inv)
    # the library's own DEBUG level does not lower the host's (info)
    assert not [x for x in basic_host.logs() if x.get("msg") == "a debug line of the library"]


def test_what_a_function_prints_or_logs_through_logging_is_a_line_of_its_invocation(
    basic_host: Host,
) -> None:
    with basic_host.client() as client:
        sync = client.get("/print/plainly").headers["x-invocation-id"]
        asynchronous = client.get("/print-async").headers["x-invocation-id"]
    printed = basic_host.wait_for_log(msg=f"printed plainly by {sync}")
    assert (printed["stream"], printed["level"]) == ("stdout", "info")
    assert printed["invocation_id"] == sync and printed["function"] == "printing"
    written = basic_host.wait_for_log(msg=f"bytes written by {sync}")
    assert (written["invocation_id"], written["stream"]) == (sync, "stdout")
    assert basic_host.wait_for_log(msg=f"café by {sync}")["invocation_id"] == sync
    # a line ended by \r\n (csv's) is its text, as one on fd 1 is: its \r was kept
    assert basic_host.wait_for_log(msg=f"a csv row,{sync}")["stream"] == "stdout"
    logged = basic_host.wait_for_log(msg="logged through logging")
    assert (logged["logger"], logged["level"]) == ("some.library", "warning")
    assert logged["invocation_id"] == sync
    # logger.exception(...) carries the traceback, and extra={...} its fields
    broke = basic_host.wait_for_log(msg="it broke", invocation_id=sync)
    assert (broke["level"], broke["error"]) == ("error", "ValueError: a library's failure")
    assert 'raise ValueError("a library\'s failure")' in broke["traceback"]
    assert (broke["order"], broke["msg_id"]) == (7, 1)
    printed = basic_host.wait_for_log(msg=f"printed async by {asynchronous}")
    assert printed["invocation_id"] == asynchronous
    assert basic_host.wait_for_log(msg="logged async")["invocation_id"] == asynchronous
    # printed as the app was imported, before any invocation: a line of its own too
    assert "invocation_id" not in basic_host.wait_for_log(msg="basic app imported")


def test_what_a_thread_the_function_starts_prints_is_its_line_if_it_has_its_context(
    basic_host: Host,
) -> None:
    with basic_host.client() as client:
        inv = client.get("/print-threads").headers["x-invocation-id"]
    for how in ("in to_thread", "in a thread with the context"):
        line = basic_host.wait_for_log(msg=f"printed {how} by {inv}")
        assert (line["invocation_id"], line["function"]) == (inv, "printing_threads")
    # a thread started plainly does not carry the context (Python's rule for threads):
    # its line is stdout's, with no invocation's fields
    plain = basic_host.wait_for_log(msg=f"printed in a plain thread by {inv}")
    assert plain["stream"] == "stdout" and "invocation_id" not in plain


def test_what_a_forked_child_prints_is_a_line_too(basic_host: Host) -> None:
    # a child forked by a function (multiprocessing) has no event loop to write for it
    with basic_host.client() as client:
        r = client.get("/fork")
    assert r.text == "forked"
    line = basic_host.wait_for_log(msg="printed by a forked child")
    assert (line["invocation_id"], line["stream"]) == (r.headers["x-invocation-id"], "stdout")


def test_a_thread_a_function_starts_carries_its_invocation_only_in_a_copied_context(
    basic_host: Host,
) -> None:
    # what the README tells users to do, proven
    with basic_host.client() as client:
        inv = client.get("/print-in-threads").headers["x-invocation-id"]
    assert basic_host.wait_for_log(msg=f"context thread of {inv}")["invocation_id"] == inv
    assert "invocation_id" not in basic_host.wait_for_log(msg=f"bare thread of {inv}")


def test_what_reaches_fd_1_without_sys_stdout_becomes_json_lines_too() -> None:
    # a subprocess, a C library, os.write(1, ...): no Python object sees these bytes
    gen = started("basic", "--workers", "1")
    host = next(gen)
    try:
        with host.client() as client:
            inv = client.get("/outside").headers["x-invocation-id"]
        for text in ("child of", "second line of", "handed sys.stdout by", "os.write by"):
            line = host.wait_for_log(msg=f"{text} {inv}")
            assert (line["stream"], line["level"]) == ("stdout", "info")
    finally:
        gen.close()
    # the bytes never finished by a newline go out when the host stops
    assert host.wait_for_log(msg="café at exit, unfinished")["stream"] == "stdout"
    host.logs()  # fails naming any stdout line that is not a JSON object


def test_a_printed_line_without_its_newline_is_written_when_the_worker_stops() -> None:
    gen = started("basic", "--workers", "1")
    host = next(gen)
    try:
        with host.client() as client:
            inv = client.get("/print/unfinished").headers["x-invocation-id"]
        host.wait_for_log(msg="invocation", invocation_id=inv)
    finally:
        gen.close()
    line = host.wait_for_log(msg="no newline yet")
    assert (line["invocation_id"], line["stream"]) == (inv, "stdout")


def test_json_nested_too_deeply_is_a_400_not_a_500(basic_host: Host) -> None:
    with basic_host.client() as client:
        r = client.post(
            "/json",
            content=b"[" * 100_000 + b"]" * 100_000,
            headers={"content-type": "application/json"},
        )
    assert r.status_code == 400
    assert "nested too deeply" in r.json()["error"]


def test_a_cookie_value_cannot_add_attributes(basic_host: Host) -> None:
    """A value taken from the request (``v; Domain=evil.example``) is refused: the
    function fails (500, the log says why) rather than set a cookie for another site."""
    with basic_host.client() as client:
        good = client.get("/cookie-from-query", params={"v": "plain-value%3B"})
        bad = client.get("/cookie-from-query", params={"v": "v; Domain=evil.example"})
    assert good.headers["set-cookie"].startswith("session=plain-value%3B; Path=/")
    assert bad.status_code == 500 and "set-cookie" not in bad.headers
    line = basic_host.wait_for_log(invocation_id=bad.json()["invocation_id"], msg="invocation")
    assert "percent-encode it" in line["error"]


def test_a_cancelled_error_of_the_functions_own_is_a_500_not_a_hang(basic_host: Host) -> None:
    """It awaited a task of its own that was cancelled: the request was not cancelled, so
    it fails like any exception (before, the client waited for ever)."""
    with basic_host.client() as client:
        r = client.get("/cancelled-inside", timeout=10)
        assert r.status_code == 500
        assert client.get("/hello/after").text == "Hello after"
    line = basic_host.wait_for_log(invocation_id=r.json()["invocation_id"], msg="invocation")
    assert line["outcome"] == "error" and "CancelledError" in line["error"]
