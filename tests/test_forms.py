"""Form bodies: ``req.form()`` and ``req.files()``, on bodies built by httpx (a client
no one here wrote), through the real host and straight through the parser."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import httpx
import pytest

from hibana import BadRequest
from hibana.forms import MAX_FIELDS, parse_form
from tests.hosts import Host


def built(**kwargs: Any) -> tuple[str, bytes]:
    """The Content-Type and body httpx sends for ``kwargs`` (``data=``, ``files=``)."""
    request = httpx.Request("POST", "http://host/form", **kwargs)
    return request.headers["content-type"], request.read()


def test_a_form_with_files_through_the_host(basic_host: Host) -> None:
    photo = os.urandom(300_000) + b"\r\n--not-a-boundary\r\n"  # binary, line breaks and all
    with basic_host.client() as client:
        r = client.post(
            "/form",
            data={"name": "Zoë", "tag": ["a b", "c&d"], "empty": ""},
            files=[
                ("photo", ("naïve photo.jpg", photo, "image/jpeg")),
                ("photo", ("second.txt", b"second\n", "text/plain")),
                ("notes", ("notes", b"", None)),
            ],
        )
        plain = client.post("/form", data={"q": "1 + 1 = 2", "q2": "ü"})
    assert r.status_code == 200
    assert r.json() == {
        "fields": [["name", "Zoë"], ["tag", "a b"], ["tag", "c&d"], ["empty", ""]],
        "files": [
            [
                "photo",
                "naïve photo.jpg",
                "image/jpeg",
                len(photo),
                hashlib.sha256(photo).hexdigest(),
            ],
            ["photo", "second.txt", "text/plain", 7, hashlib.sha256(b"second\n").hexdigest()],
            ["notes", "notes", "application/octet-stream", 0, hashlib.sha256(b"").hexdigest()],
        ],
    }
    assert plain.json() == {"fields": [["q", "1 + 1 = 2"], ["q2", "ü"]], "files": []}


def test_a_file_input_left_empty_sends_no_file(basic_host: Host) -> None:
    """For a file input with no file chosen, a browser sends a part with filename="" and
    nothing in it (HTML's "file with an empty name"): it was an UploadedFile named "",
    0 bytes, so a required file was never missing and an empty "" was saved."""
    body = (
        b'--x\r\nContent-Disposition: form-data; name="title"\r\n\r\nHoliday\r\n'
        b'--x\r\nContent-Disposition: form-data; name="photo"; filename=""\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n\r\n"
        b'--x\r\nContent-Disposition: form-data; name="nameless"; filename=""\r\n\r\n'
        b"kept: it holds something\r\n--x--\r\n"
    )
    with basic_host.client() as client:
        r = client.post(
            "/form", content=body, headers={"content-type": "multipart/form-data; boundary=x"}
        )
    assert r.status_code == 200, r.text
    assert r.json()["fields"] == [["title", "Holiday"]]
    assert [file[:2] for file in r.json()["files"]] == [["nameless", ""]]
    _, files = parse_form("multipart/form-data; boundary=x", body)
    with pytest.raises(BadRequest, match="file 'photo' is missing; send it"):
        files["photo"]


def test_a_body_that_is_not_a_form_is_a_400_naming_the_type(basic_host: Host) -> None:
    with basic_host.client() as client:
        r = client.post("/form", json={"a": 1})
    assert r.status_code == 400
    assert r.json()["error"] == (
        "request body is application/json, not a form; send Content-Type "
        "application/x-www-form-urlencoded or multipart/form-data"
    )


def test_a_charset_whose_codec_raises_unicode_error_is_a_400_or_falls_back(
    basic_host: Host,
) -> None:
    """idna and punycode raise UnicodeError, not its UnicodeDecodeError: a field in one
    answered 500, and so did a ``filename*`` in one rather than give way to ``filename``."""
    head = b"--x\r\nContent-Disposition: form-data; "
    field = head + b'name="q"\r\nContent-Type: text/plain; charset=idna\r\n\r\nxn--zz\r\n--x--'
    named = head + (
        b'name="f"; filename="plain.txt"; filename*=punycode\'\'%78%6E%2D%2D%7A%7A\r\n'
        b"\r\ndata\r\n--x--"
    )
    multipart = {"content-type": "multipart/form-data; boundary=x"}
    with basic_host.client() as client:
        bad = client.post("/form", content=field, headers=multipart)
        fallback = client.post("/form", content=named, headers=multipart)
    assert bad.status_code == 400
    assert bad.json()["error"].startswith(
        "form field 'q' is not valid idna text: decoding with 'idna' codec failed"
    )
    assert fallback.status_code == 200, fallback.text
    assert [f[:2] for f in fallback.json()["files"]] == [["f", "plain.txt"]]


def test_preamble_epilogue_and_a_quoted_boundary_are_understood() -> None:
    body = (
        b"a preamble to ignore\r\n--b o\r\n"
        b'Content-Disposition: form-data; name="a"\r\n\r\none\r\n'
        b"--b o  \r\n"  # transport padding after a boundary is allowed
        b'Content-Disposition: form-data; name="b"\r\nContent-Type: text/plain; charset=latin-1'
        b"\r\n\r\n\xe9t\xe9\r\n--b o--\r\nan epilogue to ignore"
    )
    fields, files = parse_form('multipart/form-data; boundary="b o"', body)
    assert fields.multi_items() == [("a", "one"), ("b", "été")]
    assert len(files) == 0


@pytest.mark.parametrize(
    ("content_type", "body", "named"),
    [
        ("text/plain", b"a=1", "request body is text/plain, not a form"),
        ("", b"a=1", "request body is of no declared type, not a form"),
        ("multipart/form-data", b"--x\r\n\r\n--x--", "no boundary of 1 to 256 characters"),
        (
            "multipart/form-data; boundary=" + "b" * 257,
            b"--x\r\n\r\n--x--",
            "no boundary of 1 to 256 characters",
        ),
        ("multipart/form-data; boundary=x", b"no boundary here", "has no boundary line 'x'"),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\ncut sh',
            "no closing boundary; was it cut short?",
        ),
        (
            "multipart/form-data; boundary=x",
            b"--x\r\nContent-Type: text/plain\r\n\r\nnameless\r\n--x--",
            "has no Content-Disposition: form-data; name=...",
        ),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n\xff\r\n--x--',
            "form field 'a' is not valid utf-8 text",
        ),
        ("application/x-www-form-urlencoded", b"a=%ff", "not UTF-8 text, percent-encoded or not"),
        ("application/x-www-form-urlencoded", b"a=\xe9", "not UTF-8 text, percent-encoded or not"),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="a"'
            + b"; x=y" * 3000
            + b"\r\n\r\n1\r\n--x--",
            "part's headers are over the limit of 8192 bytes",
        ),
        (
            "multipart/form-data; boundary=x",
            b'--x\nContent-Disposition: form-data; name="a"\n\n1\n--x--\n',  # printf, no \r
            "lines that end in LF alone; end them in CRLF (\\r\\n)",
        ),
        (
            "multipart/form-data; boundary=x",
            b"--x\r\n\r\nno headers at all\r\n--x--",
            "has no Content-Disposition: form-data; name=...",  # not "header line ''"
        ),
        (
            "multipart/form-data; boundary=x",
            b"--x\r\nno colon here\r\n\r\n1\r\n--x--",
            "header line 'no colon here' has no colon",
        ),
        (
            "application/x-www-form-urlencoded",
            b"&".join(b"f%d=1" % i for i in range(MAX_FIELDS + 1)),
            f"over the limit of {MAX_FIELDS} fields",
        ),
    ],
)
def test_a_form_that_does_not_parse_is_a_bad_request_naming_why(
    content_type: str, body: bytes, named: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_form(content_type, body)
    assert caught.value.status == 400
    assert named in str(caught.value.detail)


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data; boundary=x; c=" + "(" * 5000,  # the email parser recursed
        "multipart/form-data; boundary=x" + ";" * 200_000 + "; z=1",
        "multipart/form-data; boundary=x; " + "k=v; " * 20_000,
    ],
    ids=["nested-comments", "many-semicolons", "many-parameters"],
)
def test_a_content_type_built_to_be_slow_parses_at_once(content_type: str) -> None:
    """Its boundary is found in one pass (the standard library's header parser recursed
    on nested comments, and was quadratic in the parameters: hours for a 10 MiB body)."""
    fields, _ = parse_form(
        content_type, b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--'
    )
    assert fields.getlist("a") == ["1"]


def test_a_boundary_longer_than_rfc_2046_has_senders_write_is_taken() -> None:
    """Some clients write more than its 70 characters (anthropic-sdk-ruby before 2025-09
    wrote 80); such an upload was a 400."""
    boundary = "-" * 20 + "a" * 60
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--{boundary}--\r\n'
    ).encode()
    fields, _ = parse_form(f"multipart/form-data; boundary={boundary}", body)
    assert fields.getlist("a") == ["1"]


def test_names_are_what_browsers_send() -> None:
    """HTML's multipart encoding escapes nothing with a backslash: a Windows path keeps
    its own; ``\\"`` and ``\\\\`` are a quote and a backslash; an unquoted boundary may
    hold "="; ``filename*`` wins over ``filename``."""
    body = (
        b"--==_Part_0\r\n"
        b'Content-Disposition: form-data; name="dir\\name"; filename="C:\\Users\\me\\a.txt"\r\n'
        b"\r\nx\r\n--==_Part_0\r\n"
        b'Content-Disposition: form-data; name="q\\"uote"\r\n\r\ny\r\n--==_Part_0\r\n'
        b"Content-Disposition: form-data; name=f; filename=plain.txt; "
        b"filename*=UTF-8''na%C3%AFve.txt\r\nContent-Type: Text/Plain; charset=utf-8\r\n\r\n"
        b"z\r\n--==_Part_0--"
    )
    fields, files = parse_form("multipart/form-data; boundary===_Part_0", body)
    (windows,) = files.getlist("dir\\name")
    assert windows.filename == "C:\\Users\\me\\a.txt"
    assert fields.getlist('q"uote') == ["y"]
    (naive,) = files.getlist("f")
    assert (naive.filename, naive.content_type) == ("na\u00efve.txt", "text/plain")


def test_a_quote_or_line_break_in_a_name_is_what_the_browser_escaped() -> None:
    """HTML's multipart encoding (browsers, httpx, requests) sends ``"``, CR and LF in a
    name or filename as %22, %0D and %0A: 'say "hi".txt' arrived as 'say %22hi%22.txt'.
    No other ``%`` is escaped, so ``100%.txt`` and ``%41`` stay as they are."""
    content_type, body = built(
        data={'the "a" field': "1"},
        files=[("f", ('say "hi".txt', b"x")), ("g", ("100% %41.txt", b"y"))],
    )
    assert b"%22" in body
    fields, files = parse_form(content_type, body)
    assert fields.getlist('the "a" field') == ["1"]
    assert [f.filename for f in files.values()] == ['say "hi".txt', "100% %41.txt"]


def test_a_urlencoded_body_of_raw_utf8_is_read() -> None:
    """What ``curl -d 'name=José'`` sends: browsers percent-encode, curl does not."""
    fields, _ = parse_form("application/x-www-form-urlencoded", "name=José&city=Zürich".encode())
    assert (fields.get("name"), fields.get("city")) == ("José", "Zürich")


def test_httpx_bodies_round_trip_through_the_parser() -> None:
    content_type, body = built(
        data={"x": "1"}, files={"f": ("a.bin", bytes(range(256)) * 64, "application/x-thing")}
    )
    fields, files = parse_form(content_type, body)
    assert fields.multi_items() == [("x", "1")]
    upload = files["f"]
    assert (upload.filename, upload.content_type) == ("a.bin", "application/x-thing")
    assert upload.data == bytes(range(256)) * 64


def test_a_forms_charset_field_says_how_its_text_is_encoded(basic_host: Host) -> None:
    """HTML fills a hidden ``_charset_`` field with the charset it sent the form in (a
    page served as windows-1252, a form with ``accept-charset``); RFC 7578 4.6 makes it
    the charset of a multipart text field that names none. Such a form used to be a 400
    saying it was not UTF-8."""
    latin = (
        b'--x\r\nContent-Disposition: form-data; name="_charset_"\r\n\r\nwindows-1252\r\n'
        b'--x\r\nContent-Disposition: form-data; name="dish"\r\n\r\ncr\xe8me br\xfbl\xe9e\r\n'
        b'--x\r\nContent-Disposition: form-data; name="own"\r\n'
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nna\xc3\xafve\r\n--x--\r\n"
    )
    with basic_host.client() as client:
        urlencoded = client.post(
            "/form",
            content=b"_charset_=windows-1252&dish=cr%E8me+br%FBl%E9e&raw=caf\xe9",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        multipart = client.post(
            "/form", content=latin, headers={"content-type": "multipart/form-data; boundary=x"}
        )
        unknown = client.post(
            "/form",
            content=b"a=1&_charset_=utf-16",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert urlencoded.status_code == 200, urlencoded.text
    assert urlencoded.json()["fields"] == [
        ["_charset_", "windows-1252"],
        ["dish", "crème brûlée"],
        ["raw", "café"],
    ]
    assert multipart.status_code == 200, multipart.text
    assert multipart.json()["fields"] == [
        ["_charset_", "windows-1252"],
        ["dish", "crème brûlée"],
        ["own", "naïve"],
    ]
    assert unknown.status_code == 400
    assert unknown.json()["error"] == (
        "form field _charset_ names 'utf-16', which is not a charset forms are sent in; "
        "send UTF-8 (and _charset_=UTF-8, or no _charset_ field)"
    )
