"""The wire syntax of HTTP/1.1 as the worker's server reads and writes it: status and
``date`` lines, the methods named in scopes, and the patterns of a Host value, a version
and an absolute-form target."""

from __future__ import annotations

import re
import time
from http import HTTPStatus
from typing import Any

_STATUS_LINES = {
    int(s): b"HTTP/1.1 %d %s\r\n" % (s, s.phrase.encode("latin-1")) for s in HTTPStatus
}
METHODS = {m.encode(): m for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")}

#: A Host value (RFC 9112 3.2, RFC 3986 3.2.2): a name or IPv4 address, or an IP literal in
#: brackets, then an optional port (up to 65535, as in an absolute-form target); empty is
#: allowed (a target with no authority).
HOST_VALUE = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)"
    rb"(?::(?:[0-9]{0,4}|[0-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?\Z"
).match

#: The HTTP versions a request line names (in a read the parser refused for its version).
VERSIONS = re.compile(rb"HTTP/([0-9]+\.[0-9]+)").findall

#: An absolute-form request target (RFC 9112 3.2.2), as llhttp let it through: its scheme,
#: its authority (up to the path, query or fragment), its path and its query.
ABSOLUTE = re.compile(rb"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)([^?#]*)(?:\?([^#]*))?").match

_date: list[Any] = [-1, b""]


def date_line() -> bytes:
    """The ``date`` header line, formatted once a second."""
    now = int(time.time())
    if now != _date[0]:
        _date[0] = now
        _date[1] = b"date: %s\r\n" % time.strftime(
            "%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)
        ).encode("ascii")
    line: bytes = _date[1]
    return line


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d \r\n" % status
