"""The worker's HTTP server's refusals: the whole responses it gives itself (a head or
body refused, a function that is stuck) and the errors that say why; cold paths, kept
out of the connection's."""

from __future__ import annotations

import msgspec

from hibana.host.http_syntax import ABSOLUTE, HOST_VALUE, date_line, status_line

NO_HTTP2 = (
    "this host speaks HTTP/1.1, not HTTP/2: send HTTP/1.1, or put a proxy that speaks "
    "HTTP/2 (and TLS) in front"
)
HOST_HEADERS = "an HTTP/1.1 request must carry one Host header, and no request two"

#: Header fields a request may have (gunicorn's and Apache's default): past it, 431. Each
#: costs a call into Python, so --max-header-bytes alone let 8,000 empty ones cost
#: milliseconds a request.
MAX_FIELDS = 100
TOO_MANY_FIELDS = (
    f"the request has over {MAX_FIELDS} header fields, the most this host reads; send "
    "fewer (a field sent several times can be one, its values joined with commas)"
)


class Refused(Exception):
    """Raised by a parser callback that has refused the request: the parser stops there
    (the rest of the head is not read)."""


def unspoken(version: str) -> str:
    """The error of a request in an HTTP ``version`` (its number; "" if not known) that
    is not 1.1 or 1.0."""
    if version.startswith("2"):
        return NO_HTTP2
    said = f"HTTP/{version}" if version else "the request's HTTP version"
    return f"{said} is not spoken here: this host speaks HTTP/1.1 (and 1.0); send HTTP/1.1"


def headers_over(limit: int) -> str:
    return f"request headers are over the limit of {limit} bytes (the host's --max-header-bytes)"


def line_over(limit: int) -> str:
    return (
        f"the request line (method, target and version) is over the limit of {limit} bytes "
        "(the host's --max-header-bytes); send long data in the body"
    )


def error_response(
    status: int, message: str, invocation_id: str | None = None, head: bool = False
) -> bytes:
    """A whole response the protocol gives itself (the head or body was refused, or the
    function that should answer is stuck); ``head``: to a HEAD request, without its body
    (RFC 9110 9.3.2), its length said."""
    body = msgspec.json.encode(
        {"error": message}
        if invocation_id is None
        else {"error": message, "invocation_id": invocation_id}
    )
    fields = b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n"
    if invocation_id is not None:
        fields += b"x-invocation-id: %s\r\n" % invocation_id.encode()
    framing = fields % len(body) + b"\r\n"
    return status_line(status) + date_line() + framing + (b"" if head else body)


def other_target(method: str, url: bytes) -> tuple[int, str] | None:
    """Why a request target that is not a path is refused (status, message), or None
    for one that is served: an absolute URL, or ``*`` (for OPTIONS)."""
    if url == b"*":
        return None
    if method == "CONNECT":
        return 501, "this host serves functions; it does not open tunnels (CONNECT)"
    parsed = ABSOLUTE(url)
    target = url[:200].decode("latin-1")
    if parsed is not None and parsed[1].lower() in (b"http", b"https"):
        authority = parsed[2]
        if b"@" in authority:
            # RFC 9110 4.2.4: userinfo is an error, most often there to hide the host
            # asked for (http://trusted.example@evil.example/)
            return 400, (
                f"the request target {target!r} names a user before its host (user@host), "
                "which an http URL may not (RFC 9110 4.2.4); send it without"
            )
        # a host, and a port if any, as a Host header's value must be (RFC 9110 4.2.1:
        # an http URL with an empty host is invalid)
        if authority[:1] not in (b"", b":") and HOST_VALUE(authority):
            return None
    return 400, f"the request target {target!r} is not a path or an http URL"
