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


def test_a_body_that_is_not_a_form_is_a_400_naming_the_type(basic_host: Host) -> None:
    with basic_host.client() as client:
        r = client.post("/form", json={"a": 1})
    assert r.status_code == 400
    assert r.json()["error"] == (
        "request body is application/json, not a form; send Content-Type "
        "application/x-www-form-urlencoded or multipart/form-data"
    )


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
        ("multipart/form-data", b"--x\r\n\r\n--x--", "no boundary of 1 to 70 characters"),
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
        ("application/x-www-form-urlencoded", b"a=%ff", "not valid percent-encoded UTF-8"),
        ("application/x-www-form-urlencoded", b"a=\xe9", "not valid percent-encoded UTF-8"),
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


def test_httpx_bodies_round_trip_through_the_parser() -> None:
    content_type, body = built(
        data={"x": "1"}, files={"f": ("a.bin", bytes(range(256)) * 64, "application/x-thing")}
    )
    fields, files = parse_form(content_type, body)
    assert fields.multi_items() == [("x", "1")]
    upload = files["f"]
    assert (upload.filename, upload.content_type) == ("a.bin", "application/x-thing")
    assert upload.data == bytes(range(256)) * 64
