"""``Request``: what an HTTP function receives. Parsed lazily: a function that never reads
the query string or cookies pays nothing for them."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from hibana.datastructures import Files, FormData, Headers, QueryParams, of_request
from hibana.errors import BadRequest, MissingField
from hibana.forms import parse_form
from hibana.proxies import Network, client_ip, forwarded_proto, is_trusted

_decode_json = msgspec.json.decode
_BOM = b"\xef\xbb\xbf"
#: The 400s of ``req.query[name]`` and ``req.headers[name]`` for a name not sent.
_NO_PARAMETER = "query parameter {key!r} is missing; send ?{key}=..."
_NO_HEADER = "header {key!r} is missing; send it"
_NO_COOKIE = "cookie {key!r} is missing; send it"


class _Cookies(dict[str, str]):
    """``req.cookies``: a dict whose ``[name]`` for a cookie the client did not send
    answers 400 naming it (a KeyError too), as ``req.query[name]`` does."""

    __slots__ = ()

    def __missing__(self, key: str) -> str:
        raise MissingField(_NO_COOKIE.format(key=key), key)


class Request:
    """An HTTP request: method, path, route ``params``, ``query``, ``headers``, cookies, body."""

    __slots__ = (
        "_cookies",
        "_form",
        "_headers",
        "_query",
        "_receive",
        "_scope",
        "_trusted",
        "body",
        "params",
    )

    def __init__(
        self,
        scope: MutableMapping[str, Any],
        body: bytes,
        params: dict[str, Any],
        trusted_proxies: Sequence[Network] = (),
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]] | None = None,
    ) -> None:
        self._scope = scope
        #: The server's ASGI receive, after the body was read (adapters wait on it for
        #: the client's disconnect).
        self._receive = receive
        self._trusted = trusted_proxies
        self.body = body
        #: Route parameters, converted by their declared type (``{id:int}`` gives an int).
        self.params = params
        self._query: QueryParams | None = None
        self._headers: Headers | None = None
        self._cookies: dict[str, str] | None = None
        self._form: tuple[FormData, Files] | None = None

    @property
    def method(self) -> str:
        return str(self._scope["method"])

    @property
    def path(self) -> str:
        """The decoded path, without the query string."""
        return str(self._scope["path"])

    @property
    def query_string(self) -> str:
        return bytes(self._scope["query_string"]).decode("latin-1")

    @property
    def url(self) -> str:
        """The full URL as the client asked for it (path still percent-encoded)."""
        host = self.headers.get("host") or "localhost"
        raw_path = bytes(self._scope.get("raw_path") or b"").decode("latin-1") or self.path
        qs = self.query_string
        return f"{self.scheme}://{host}{raw_path}" + (f"?{qs}" if qs else "")

    @property
    def scheme(self) -> str:
        """``http`` or ``https``: the connection's, or, when the socket peer is one of the
        App's ``trusted_proxies``, the one it forwards (``Forwarded: proto=``, else
        ``X-Forwarded-Proto``; the right-most, which the nearest proxy wrote)."""
        scheme = str(self._scope.get("scheme", "http"))
        if not self._trusted:
            return scheme
        client = self._scope.get("client")
        if not is_trusted(str(client[0]) if client else None, self._trusted):
            return scheme
        headers = self.headers
        forwarded = headers.getlist("forwarded")
        return forwarded_proto(forwarded, headers.getlist("x-forwarded-proto")) or scheme

    @property
    def query(self) -> QueryParams:
        """Query parameters; repeated ones keep every value (``getlist``)."""
        if self._query is None:
            pairs = parse_qsl(self.query_string, keep_blank_values=True)
            self._query = of_request(QueryParams, pairs, _NO_PARAMETER)
        return self._query

    @property
    def headers(self) -> Headers:
        """Request headers, case-insensitive; repeated ones keep every value (``getlist``)."""
        if self._headers is None:
            self._headers = of_request(
                Headers,
                ((k.decode("latin-1"), v.decode("latin-1")) for k, v in self._scope["headers"]),
                _NO_HEADER,
            )
        return self._headers

    @property
    def cookies(self) -> dict[str, str]:
        if self._cookies is None:
            cookies: dict[str, str] = _Cookies()
            for header in self.headers.getlist("cookie"):
                if not header.isascii():
                    # what a browser sends of a cookie a page set to text (document.cookie):
                    # its UTF-8, which the header's Latin-1 made "cafÃ©"
                    with contextlib.suppress(UnicodeDecodeError):
                        header = header.encode("latin-1").decode("utf-8")
                for chunk in header.split(";"):
                    key, sep, value = chunk.partition("=")
                    key = key.strip()
                    if sep and key:
                        value = value.strip()
                        if len(value) > 1 and value[0] == value[-1] == '"':
                            value = value[1:-1]  # one pair around it (RFC 6265), no more
                        cookies.setdefault(key, value)
            self._cookies = cookies
        return self._cookies

    @property
    def client(self) -> tuple[str, int] | None:
        """The peer's (address, port) on the socket."""
        client = self._scope.get("client")
        return (str(client[0]), int(client[1])) if client else None

    @property
    def client_ip(self) -> str | None:
        """The client's address: the socket peer, or, when the peer is one of the App's
        ``trusted_proxies``, the right-most forwarded address that is not (never the
        left-most, which the client can write itself; nor one of ``Forwarded`` and
        ``X-Forwarded-For`` that disagree, of which the client may have written either)."""
        client = self._scope.get("client")
        peer = str(client[0]) if client else None
        if not self._trusted:
            return peer
        headers = self.headers
        forwarded = headers.getlist("forwarded")
        return client_ip(peer, forwarded, headers.getlist("x-forwarded-for"), self._trusted)

    @property
    def content_type(self) -> str:
        return (self.headers.get("content-type") or "").split(";")[0].strip().lower()

    def text(self) -> str:
        """The body decoded with the charset the client declared (UTF-8 by default)."""
        charset = "utf-8"
        for part in (self.headers.get("content-type") or "").split(";")[1:]:
            key, _, value = part.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                charset = value.strip().strip('"')
        body = self.body
        if body.startswith(_BOM) and charset.lower() in ("utf-8", "utf8"):
            # a byte order mark (Notepad, PowerShell write one): no text of the body's
            body = body[len(_BOM) :]
        try:
            return body.decode(charset)
        # UnicodeError: what idna and punycode raise, not its UnicodeDecodeError
        except (LookupError, UnicodeError) as exc:
            raise BadRequest(f"request body is not valid {charset} text: {exc}") from None

    def json(self) -> Any:
        """The body parsed as JSON; a malformed body answers 400 naming the problem."""
        if not self.body:
            raise BadRequest("request body is empty; expected JSON")
        body = self.body
        if body.startswith(_BOM):
            # RFC 8259 8.1: a parser may ignore a UTF-8 byte order mark (what PowerShell
            # and Notepad write before UTF-8)
            body = body[len(_BOM) :]
        try:
            return _decode_json(body)
        except msgspec.DecodeError as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}{self._not_json()}") from None
        except RecursionError:
            raise BadRequest("request body is JSON nested too deeply to decode") from None

    def _not_json(self) -> str:
        """Why a body that did not decode may be no JSON: the type or the charset it was
        sent with ("" if those say JSON in UTF-8)."""
        declared = self.headers.get("content-type") or ""
        kind = declared.split(";")[0].strip().lower()
        if kind and kind != "application/json" and not kind.endswith("+json"):
            return f"; it was sent as {kind}: send JSON, with Content-Type application/json"
        for part in declared.split(";")[1:]:
            key, _, value = part.partition("=")
            charset = value.strip().strip('"').lower()
            if key.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
                return (
                    f"; it was sent as charset={charset}, but JSON is UTF-8 (RFC 8259): send UTF-8"
                )
        return ""

    def form(self) -> FormData:
        """The fields of a form body (``application/x-www-form-urlencoded`` or
        ``multipart/form-data``): ``form["name"]``, ``form.getlist("tag")``. A body of
        another type, or one that does not parse, answers 400 naming why."""
        return self._parsed_form()[0]

    def files(self) -> Files:
        """The files of a ``multipart/form-data`` body, by field name: each an
        ``UploadedFile`` (``filename``, ``content_type``, ``data``)."""
        return self._parsed_form()[1]

    def _parsed_form(self) -> tuple[FormData, Files]:
        if self._form is None:
            self._form = parse_form(self.headers.get("content-type") or "", self.body)
        return self._form

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path}>"
