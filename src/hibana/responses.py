"""``Response`` and the conversion of whatever a function returns into one."""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import msgspec

_encode_json = msgspec.json.Encoder().encode
#: An HTTP token (RFC 9110 5.6.2): a header's name, a cookie's.
is_token = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match
#: RFC 6265 4.1.1: cookie-octets, optionally in double quotes.
_COOKIE_VALUE = re.compile(
    r'(?:[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*|"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")\Z'
).match
_COOKIE_ATTRIBUTE = re.compile(r"[^\x00-\x1f\x7f;]*\Z").match

HeadersArg = Mapping[str, str] | Iterable[tuple[str, str]] | None
#: The statuses a browser follows a Location on (RFC 9110 15.4).
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _charsetless_text(content_type: str) -> bool:
    """Whether ``content_type`` is a ``text/*`` type that names no charset."""
    return content_type[:5].lower() == "text/" and "charset=" not in content_type.lower()


def check_status(status: object) -> None:
    """Refuse a status a function cannot answer with. 1xx are interim responses, which
    the host sends itself (``100 Continue``); sent as the answer, a client would wait for
    the real one or read the body as the next response."""
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        hint = (
            " (1xx are interim responses; the host sends those)"
            if status in range(100, 200)
            else ""
        )
        raise ValueError(f"HTTP status {status!r} is not an integer from 200 to 599{hint}")


class Response:
    """An HTTP response: a status, headers (repeatable, e.g. several ``Set-Cookie``) and a body."""

    __slots__ = ("body", "status", "headers", "stream")

    def __init__(
        self,
        body: bytes | str = b"",
        status: int = 200,
        headers: HeadersArg = None,
        content_type: str | None = None,
    ) -> None:
        check_status(status)
        text = None  # the type of a str body, sent as UTF-8
        if isinstance(body, str):
            body = body.encode()
            content_type = text = content_type or "text/plain; charset=utf-8"
        elif not isinstance(body, bytes | bytearray | memoryview):
            raise TypeError(
                f"Response body is {type(body).__name__}; pass bytes or str, "
                "or use Response.json(...) for data"
            )
        self.body = bytes(body)
        self.status = status
        #: Chunks sent as they come instead of ``body`` (see ``StreamingResponse``).
        self.stream: AsyncIterator[bytes | str] | None = None
        self.headers: list[tuple[str, str]] = header_list(headers)
        if content_type is not None and not self.has_header("content-type"):
            self.headers.append(("content-type", content_type))
        if text is not None and (headers is not None or _charsetless_text(text)):
            for i, (name, value) in enumerate(self.headers):
                if name.lower() == "content-type" and _charsetless_text(value):
                    # the text went out as UTF-8: say so, or a browser reads it in its
                    # own default (windows-1252: "cafÃ©")
                    self.headers[i] = (name, f"{value}; charset=utf-8")

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: HeadersArg = None) -> Response:
        """``data`` encoded as JSON with ``Content-Type: application/json``."""
        return cls(_encode_json(data), status, headers, "application/json")

    @classmethod
    def text(cls, text: str, status: int = 200, headers: HeadersArg = None) -> Response:
        return cls(text, status, headers, "text/plain; charset=utf-8")

    @classmethod
    def html(cls, html: str, status: int = 200, headers: HeadersArg = None) -> Response:
        return cls(html, status, headers, "text/html; charset=utf-8")

    @classmethod
    def redirect(cls, location: str, status: int = 307) -> Response:
        """A redirect to ``location``: its path and query percent-encoded, a host name
        that is not ASCII in its IDNA form (``xn--``). ``status`` is a redirect's: 301,
        302, 303, 307 or 308 (307 keeps the method and the body; 303 turns them into a
        GET), else a ValueError: browsers follow a Location on no other."""
        if status not in _REDIRECTS:
            raise ValueError(
                f"Response.redirect({location!r}, status={status!r}): a redirect's status is "
                "301, 302, 303, 307 or 308 (browsers follow a Location on no other); for "
                "another, make a Response with a location header"
            )
        if not location.isascii():
            parts = urlsplit(location)
            userinfo, at, hostport = parts.netloc.rpartition("@")
            host, colon, port = hostport.partition(":")
            if not host.isascii():
                try:
                    host = host.encode("idna").decode("ascii")
                except UnicodeError as exc:  # an empty label, one over 63 characters
                    raise ValueError(
                        f"Response.redirect({location!r}): its host {host!r} is no host "
                        f"name ({exc}); check the URL before redirecting"
                    ) from None
                netloc = f"{userinfo}{at}{host}{colon}{port}"
                location = urlunsplit(parts._replace(netloc=netloc))
        return cls(b"", status, [("location", quote(location, safe=":/%#?=@[]!$&'()*+,;"))])

    def has_header(self, name: str) -> bool:
        name = name.lower()
        return any(k.lower() == name for k, _ in self.headers)

    def set_cookie(
        self,
        key: str,
        value: str = "",
        *,
        max_age: int | timedelta | None = None,
        expires: datetime | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: Literal["lax", "strict", "none"] | None = "lax",
        partitioned: bool = False,
    ) -> None:
        """Add a ``Set-Cookie`` header; call again for more cookies. ``partitioned``: a
        cookie kept apart for each top-level site (CHIPS), what a third-party cookie needs
        where browsers block the others; it needs ``secure=True``.

        The name must be an HTTP token and the value plain cookie octets (RFC 6265 4.1.1:
        no space, ``"``, ``,``, ``;`` or ``\\``): else a ValueError, so that a value taken
        from a request cannot add attributes (``v; Domain=evil.example``). Percent-encode
        such a value (``urllib.parse.quote``)."""
        for part, given in (("name", key), ("value", value), ("path", path), ("domain", domain)):
            if not isinstance(given, str) and (given is not None or part in ("name", "value")):
                raise TypeError(
                    f"cookie {key!r} has a {part} of {type(given).__name__} {given!r:.60}; "
                    f"give a str (str({given!r:.20}) for a number)"
                )
        if expires is not None and not isinstance(expires, datetime):
            raise TypeError(
                f"cookie {key!r} has expires={expires!r:.60}, which is no datetime; give an "
                "aware one (datetime.now(timezone.utc) + timedelta(days=1)) or max_age"
            )
        if not is_token(key):
            raise ValueError(f"cookie name {key!r} is not an HTTP token")
        if not _COOKIE_VALUE(value):
            raise ValueError(
                f"cookie {key!r} has a value with a character a cookie cannot hold "
                f"(space, quote, comma, semicolon, backslash or a control): {value!r}; "
                "percent-encode it with urllib.parse.quote"
            )
        if isinstance(max_age, timedelta):
            max_age = int(max_age.total_seconds())
        if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int)):
            # RFC 6265 5.2.2: a Max-Age that is not digits is ignored: a session cookie
            raise ValueError(
                f"cookie {key!r} has max_age={max_age!r}; give whole seconds (an int) or a "
                "datetime.timedelta"
            )
        if samesite is not None and str(samesite).lower() not in ("lax", "strict", "none"):
            raise ValueError(
                f"cookie {key!r} has samesite={samesite!r}; give 'lax', 'strict' or 'none'"
            )
        if samesite is not None and samesite.lower() == "none" and not secure:
            raise ValueError(
                f"cookie {key!r} has samesite='none' without secure=True: browsers drop it"
            )
        if partitioned and not secure:
            raise ValueError(
                f"cookie {key!r} has partitioned=True without secure=True: browsers drop it"
            )
        # RFC 6265bis 4.1.3: a name's prefix is a promise browsers hold it to; one that
        # breaks it is dropped without a word (a session that never sticks)
        lowered = key.lower()
        if lowered.startswith(("__secure-", "__host-")) and not secure:
            raise ValueError(
                f"cookie {key!r} has a {key[: key.index('-') + 1]} name but not secure=True: "
                "browsers drop it; pass secure=True (the site must be served over HTTPS)"
            )
        if lowered.startswith("__host-") and (path != "/" or domain is not None):
            raise ValueError(
                f"cookie {key!r} has a {key[:7]} name but path={path!r}, domain={domain!r}: "
                "browsers drop it; a __Host- cookie has path='/' and no domain"
            )
        if expires is not None and expires.utcoffset() is None:
            # naive: local time to Python, UTC to whoever wrote datetime.utcnow(); a guess
            # either way, off by the host's offset from UTC
            raise ValueError(
                f"cookie {key!r} has expires={expires!r}, a datetime without a time zone; "
                "give an aware one (datetime.now(timezone.utc) + timedelta(days=1)) or max_age"
            )
        for attribute, given in (("path", path), ("domain", domain)):
            if given is not None and not _COOKIE_ATTRIBUTE(given):
                raise ValueError(
                    f"cookie {key!r} has a {attribute} with ';' or a control: {given!r}"
                )
            if given is not None and not given.isascii():
                # a browser matches them against the URL's host and path, which are
                # ASCII: as sent (Latin-1 bytes, or none past it) the cookie never matches
                fix = (
                    "give the host's IDNA form (domain.encode('idna').decode())"
                    if attribute == "domain"
                    else "percent-encode it (urllib.parse.quote(path)), as URLs carry it"
                )
                raise ValueError(
                    f"cookie {key!r} has a {attribute} that is not ASCII: {given!r}; {fix}"
                )
        parts = [f"{key}={value}"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if expires is not None:
            parts.append(f"Expires={format_datetime(expires.astimezone(UTC), usegmt=True)}")
        if path is not None:
            parts.append(f"Path={path}")
        if domain is not None:
            parts.append(f"Domain={domain}")
        if secure:
            parts.append("Secure")
        if httponly:
            parts.append("HttpOnly")
        if samesite is not None:
            parts.append(f"SameSite={samesite.capitalize()}")
        if partitioned:
            parts.append("Partitioned")
        self.headers.append(("set-cookie", "; ".join(parts)))

    def delete_cookie(
        self,
        key: str,
        *,
        path: str = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: Literal["lax", "strict", "none"] | None = "lax",
        partitioned: bool = False,
    ) -> None:
        """A ``Set-Cookie`` that ends cookie ``key``: give the attributes it was set with
        (a ``__Host-`` or ``__Secure-`` cookie needs ``secure=True``, or browsers ignore it;
        a partitioned one ``partitioned=True``, or the browser ends an unpartitioned one)."""
        self.set_cookie(
            key,
            "",
            max_age=0,
            expires=datetime.now(UTC) - timedelta(days=1),
            path=path,
            domain=domain,
            secure=secure or partitioned or key.lower().startswith(("__host-", "__secure-")),
            httponly=httponly,
            samesite=samesite,
            partitioned=partitioned,
        )

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


def _plain(body: bytes, status: int, content_type: str | None) -> Response:
    """A Response from parts known to be valid (the hot path of ``to_response``)."""
    response = Response.__new__(Response)
    response.body = body
    response.status = status
    response.stream = None
    response.headers = [] if content_type is None else [("content-type", content_type)]
    return response


def to_response(value: Any, function: str) -> Response:
    """What a function returned, as a Response: str (text), bytes (octet-stream),
    dict/list (JSON), None (204), or a Response as is. Anything else is a TypeError that
    names the function as ``function`` says: "function_app.py:12 (create)"."""
    kind = type(value)
    if kind is str:
        return _plain(value.encode(), 200, "text/plain; charset=utf-8")
    if kind is dict or kind is list:
        return _plain(_returned_json(value, function), 200, "application/json")
    if isinstance(value, Response):
        status = value.status
        if type(status) is not int or not 200 <= status <= 599:
            _check_set_status(status, function)  # an HTTPStatus passes
        if type(value.body) is not bytes:
            _check_set_body(value, function)
        return value
    if isinstance(value, str):
        return _plain(value.encode(), 200, "text/plain; charset=utf-8")
    if isinstance(value, dict | list):
        return _plain(_returned_json(value, function), 200, "application/json")
    if value is None:
        return _plain(b"", 204, None)
    if isinstance(value, bytes | bytearray | memoryview):
        return _plain(bytes(value), 200, "application/octet-stream")
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never to be awaited: no "was never awaited" warning on top
        raise TypeError(
            f"function {function} returned {type(value).__name__} {value!r} without "
            "awaiting it, so it never ran: write `return await ...`"
        )
    if inspect.isgenerator(value) or inspect.isasyncgen(value):
        raise TypeError(
            f"function {function} returned a generator; to send a body as it is made, "
            "return hibana.StreamingResponse(an async generator)"
        )
    if isinstance(value, tuple) and len(value) in (2, 3) and isinstance(value[1], int):
        # Flask's (body, status[, headers]): a status of its own is a Response's
        raise TypeError(
            f"function {function} returned a tuple {value!r:.60}; to answer with a status "
            "of your own, return hibana.Response(text, status) or "
            "hibana.Response.json(data, status)"
        )
    raise TypeError(
        f"function {function} returned {type(value).__name__}; "
        "return a hibana.Response, str, bytes, dict, list or None"
    )


def _check_set_status(status: object, function: str) -> None:
    """Refuse a status set on a Response after it was made (the constructor checks its
    own): it would go on the wire as it is (``HTTP/1.1 999``), or break the answer."""
    try:
        check_status(status)
    except ValueError as exc:
        raise ValueError(
            f"function {function} returned a Response whose status is {status!r}: {exc}; "
            "set response.status to an int from 200 to 599 (or an http.HTTPStatus)"
        ) from None


def header_list(headers: HeadersArg) -> list[tuple[str, str]]:
    """``headers`` (a mapping, or (name, value) pairs) as a list of (name, value) strings;
    what is neither is a TypeError that says what to give. A multi-dict (``req.headers``,
    httpx's ``Headers``) gives every value of a repeated name (each Set-Cookie), not the
    first alone, as its ``items()`` would."""
    items: Iterable[tuple[str, str]]
    if type(headers) is dict:
        items = headers.items()
    elif isinstance(headers, Mapping):
        multi = getattr(headers, "multi_items", None)
        items = multi() if callable(multi) else headers.items()
    else:
        items = headers or ()
    try:
        return [
            (
                k if type(k) is str else _header_name(k),
                v if type(v) is str else _header_text(k, v),
            )
            for k, v in items
        ]
    except (TypeError, ValueError) as exc:
        if isinstance(exc, TypeError) and str(exc).startswith("header "):
            raise  # _header_text's own: it names the header
        raise TypeError(
            f"headers {headers!r} are not a mapping nor (name, value) pairs ({exc}); "
            'give {"retry-after": "1"} or [("retry-after", "1")]'
        ) from None


def _check_set_body(response: Response, function: str) -> None:
    """Take a body set on a Response after it was made as bytes (a bytearray, a
    memoryview), or refuse it: the server can send nothing else, and failed on it once
    the function had ended (its client got no answer)."""
    body = response.body
    if isinstance(body, bytes | bytearray | memoryview):
        response.body = bytes(body)
        return
    raise TypeError(
        f"function {function} returned a Response whose body is {type(body).__name__} "
        f"{body!r:.60}; set response.body to bytes (text.encode()), or make the Response "
        "with it: Response(text), Response.json(data)"
    )


def header_problem(headers: list[tuple[str, str]]) -> str | None:
    """What is wrong with the first entry of a Response's ``headers`` that is not a pair
    of strs (one appended to the list after the Response was made), or None."""
    if not isinstance(headers, list | tuple):  # replaced, by None or a dict
        return (
            f"headers are {type(headers).__name__} {headers!r:.60}, not a list of (name, "
            "value) pairs; append to response.headers, or give headers= to the Response"
        )
    for entry in headers:
        if not isinstance(entry, tuple | list) or len(entry) != 2:
            return f'header {entry!r:.80} is not a (name, value) pair; append ("x-count", "5")'
        name, value = entry
        if type(name) is not str or type(value) is not str:
            return (
                f"header ({name!r:.60}, {value!r:.60}) is not a pair of strs; give "
                "its name and value as str (Response(headers=...) converts numbers and "
                "bytes), or leave a header of no value out"
            )
    return None


def _header_name(name: object) -> str:
    """A header name given as bytes, as Latin-1 (not as its repr, ``b'x-id'``)."""
    if isinstance(name, bytes | bytearray):
        return bytes(name).decode("latin-1")
    return str(name)


def _header_text(name: object, value: object) -> str:
    """A header value given as something else than text: a number as its digits, bytes as
    Latin-1 (as they go on the wire); None is refused, not sent as the word ``None``."""
    if value is None:
        raise TypeError(
            f"header {name!r} is None; leave the header out, or give its value as a str"
        )
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    return str(value)


def _returned_json(value: dict[Any, Any] | list[Any], function: str) -> bytes:
    try:
        return _encode_json(value)
    except RecursionError:
        # the front answers the TypeErrors of what a function returned; this one failed it
        raise TypeError(
            f"function {function} returned a {type(value).__name__} that holds itself, or "
            "is nested too deeply to write as JSON; return data without cycles"
        ) from None
    except (TypeError, ValueError, msgspec.EncodeError) as exc:  # ValueError: a lone surrogate
        raise TypeError(
            f"function {function} returned a {type(value).__name__} that is not JSON: {exc}; "
            "convert what is in it to JSON types first, or return a hibana.Response"
        ) from None


class StreamingResponse(Response):
    """A response whose body is sent chunk by chunk as ``stream`` yields it (chunked, no
    buffering): large downloads, server-sent events. ``stream`` is an async iterator of
    bytes or str (sent as UTF-8), such as an async generator. If it raises, the response is
    cut short (the client sees it unfinished) and the invocation counts as failed. A
    ``text/*`` ``content_type`` that names no charset is sent with ``charset=utf-8``."""

    def __init__(
        self,
        stream: AsyncIterator[bytes | str],
        status: int = 200,
        headers: HeadersArg = None,
        content_type: str | None = None,
    ) -> None:
        if not hasattr(stream, "__anext__"):
            called = (
                f": call it, StreamingResponse({stream.__name__}())"
                if inspect.isasyncgenfunction(stream)
                else ""
            )
            raise TypeError(
                f"StreamingResponse takes an async iterator of bytes or str (an async "
                f"generator, say); got {type(stream).__name__} {stream!r:.60}{called}"
            )
        if content_type is not None and _charsetless_text(content_type):
            content_type += "; charset=utf-8"  # the str it yields goes out as UTF-8
        super().__init__(b"", status, headers, content_type)
        self.stream = stream
