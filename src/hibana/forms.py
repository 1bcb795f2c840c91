"""Form bodies: ``application/x-www-form-urlencoded`` and ``multipart/form-data``
(RFC 7578), parsed from a body that is already read whole (hibana buffers request bodies,
up to ``--max-body-bytes``). A body that does not parse is a ``BadRequest`` naming why.

Multipart is split on its boundary with ``bytes.find``, so a large file costs a few
copies, not a pass of Python over its lines. A part's headers (8 KiB at most) and the
parameters of ``Content-Type`` and ``Content-Disposition`` are read in one pass each, as
browsers write them (HTML's multipart/form-data encoding): a quoted value ends at its
closing quote, ``\\"`` and ``\\\\`` in it are a quote and a backslash, and any other
backslash is itself (a Windows path in a ``filename``); in a name and a filename ``%22``,
``%0D`` and ``%0A`` are a quote, CR and LF (HTML escapes those three, and nothing else).
The standard library's header parser is not used: it recurses on nested comments and is
quadratic in a header's parameters, so a body built for it could take hours.

A form's ``_charset_`` field (HTML fills in a hidden one with the charset the browser sent
the form in) says how the form's text is encoded: a urlencoded body's percent-escapes and
bytes, and a multipart text field that names no charset of its own (RFC 7578 4.6).
"""

from __future__ import annotations

import codecs
import re
from urllib.parse import parse_qsl, unquote

from hibana.datastructures import Files, FormData, UploadedFile, of_request
from hibana.errors import BadRequest

#: Fields a form may hold: a guard against bodies built to make the parse slow.
MAX_FIELDS = 1000
#: The most bytes of headers one part may have.
MAX_PART_HEAD = 8192
#: The longest boundary taken. RFC 2046 has senders write 70 at most, but some write
#: more (80 characters, anthropic-sdk-ruby before 2025-09); the limit is only against
#: abuse, and the body is searched for it in one pass anyway.
MAX_BOUNDARY = 256
_FORM_TYPES = "application/x-www-form-urlencoded or multipart/form-data"
#: The 400s of ``req.form()[name]`` and ``req.files()[name]`` for a name not sent.
_NO_FIELD = "form field {key!r} is missing; send it (a part with a filename is in req.files())"
_NO_FILE = (
    "file {key!r} is missing; send it as a multipart/form-data part with a filename "
    "(a field without one is in req.form())"
)


def parse_form(content_type: str, body: bytes) -> tuple[FormData, Files]:
    """The fields and files of ``body``, whose ``Content-Type`` header is ``content_type``."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        return _urlencoded(body), of_request(Files, (), _NO_FILE)
    if kind == "multipart/form-data":
        return _multipart(content_type, body)
    raise BadRequest(
        f"request body is {kind or 'of no declared type'}, not a form; "
        f"send Content-Type {_FORM_TYPES}"
    )


def _urlencoded(body: bytes) -> FormData:
    declared = _CHARSET_FIELD(body)
    charset = _charset(unquote(declared[1].decode("latin-1"))) if declared else "utf-8"
    try:
        # percent-encoded as a browser sends it, or raw text (UTF-8) as curl -d does
        text = body.decode(charset)
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            encoding=charset,
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except UnicodeError as exc:
        named = "UTF-8" if charset == "utf-8" else charset
        raise BadRequest(f"form body is not {named} text, percent-encoded or not: {exc}") from None
    except ValueError as exc:  # more than MAX_FIELDS fields
        raise BadRequest(f"form body is over the limit of {MAX_FIELDS} fields: {exc}") from None
    return of_request(FormData, pairs, _NO_FIELD)


#: A urlencoded body's ``_charset_`` field, and its value.
_CHARSET_FIELD = re.compile(rb"(?:^|&)_charset_=([^&]*)").search


def _charset(name: str) -> str:
    """The charset a form's ``_charset_`` field names (UTF-8 if it is empty), checked: a
    text encoding Python has, which writes ASCII as ASCII (the form's names, ``=``, ``&``)."""
    if not name.strip():
        return "utf-8"
    try:
        codec = codecs.lookup(name.strip())
        ascii_compatible = "_charset_=&%+".encode(codec.name) == b"_charset_=&%+"
    except (LookupError, UnicodeError, ValueError):  # rot13, base64: no text encodings
        ascii_compatible = False
    if not ascii_compatible:
        raise BadRequest(
            f"form field _charset_ names {name[:60]!r}, which is not a charset forms are "
            "sent in; send UTF-8 (and _charset_=UTF-8, or no _charset_ field)"
        )
    return codec.name


def _multipart(content_type: str, body: bytes) -> tuple[FormData, Files]:
    value = _options(content_type)[1].get("boundary")
    if value is None or not 0 < len(value) <= MAX_BOUNDARY:
        raise BadRequest(
            f"multipart/form-data body has no boundary of 1 to {MAX_BOUNDARY} characters in its "
            "Content-Type (multipart/form-data; boundary=...)"
        )
    delimiter = b"--" + value.encode("latin-1")
    # the first delimiter starts the body, or follows a preamble and a line break
    if body.startswith(delimiter):
        start = len(delimiter)
    else:
        at = body.find(b"\r\n" + delimiter)
        if at == -1:
            raise BadRequest(f"multipart/form-data body has no boundary line {value!r}")
        start = at + 2 + len(delimiter)
    #: A text field: its name, its bytes, and the charset its part names (None: none).
    fields: list[tuple[str, bytes, str | None]] = []
    files: list[tuple[str, UploadedFile]] = []
    separator = b"\r\n" + delimiter
    while True:
        if body.startswith(b"--", start):
            break  # the closing delimiter; what follows is an epilogue
        line_end = body.find(b"\r\n", start)
        if line_end == -1 or body[start:line_end].strip(b" \t"):
            if body[start : start + 1] == b"\n":
                raise BadRequest(
                    "multipart/form-data body has lines that end in LF alone; end them "
                    "in CRLF (\\r\\n), as RFC 7578 has them"
                )
            raise BadRequest("multipart/form-data body ends inside a boundary line")
        end = body.find(separator, line_end)
        if end == -1:
            raise BadRequest("multipart/form-data body has no closing boundary; was it cut short?")
        _part(body[line_end + 2 : end], fields, files)
        if len(fields) + len(files) > MAX_FIELDS:
            raise BadRequest(f"form body is over the limit of {MAX_FIELDS} fields")
        start = end + len(separator)
    default = "utf-8"
    for name, data, _ in fields:
        if name == "_charset_":  # RFC 7578 4.6: the charset of the fields that name none
            default = _charset(data.decode("latin-1"))
            break
    texts = [_text(name, data, charset or default) for name, data, charset in fields]
    return of_request(FormData, texts, _NO_FIELD), of_request(Files, files, _NO_FILE)


def _text(name: str, data: bytes, charset: str) -> tuple[str, str]:
    try:
        return name, data.decode(charset)
    except (LookupError, UnicodeError) as exc:  # idna and punycode raise UnicodeError
        raise BadRequest(f"form field {name!r} is not valid {charset} text: {exc}") from None


def _part(
    part: bytes,
    fields: list[tuple[str, bytes, str | None]],
    files: list[tuple[str, UploadedFile]],
) -> None:
    head_end = part.find(b"\r\n\r\n", 0, MAX_PART_HEAD + 4)
    if part.startswith(b"\r\n"):
        head, data = b"", part[2:]
    elif head_end == -1:
        if len(part) > MAX_PART_HEAD and part.find(b"\r\n\r\n") != -1:
            raise BadRequest(
                f"a multipart/form-data part's headers are over the limit of {MAX_PART_HEAD} bytes"
            )
        raise BadRequest("a multipart/form-data part has no blank line after its headers")
    else:
        head, data = part[:head_end], part[head_end + 4 :]
    headers = _part_headers(head)
    disposition, params = _options(headers.get("content-disposition", ""))
    name = params.get("name")
    if disposition != "form-data" or name is None:
        raise BadRequest(
            "a multipart/form-data part has no Content-Disposition: form-data; name=..."
        )
    if "%" in name:
        name = _unescaped(name)
    filename = _filename(params)
    kind, type_params = _options(headers.get("content-type", ""))
    if filename == "" and not data:
        return  # a file input left empty: HTML sends a nameless, empty file for it
    if filename is not None:
        files.append((name, UploadedFile(filename, kind or "application/octet-stream", data)))
        return
    fields.append((name, data, type_params.get("charset") or None))


def _part_headers(head: bytes) -> dict[str, str]:
    """A part's header fields, by lower-cased name (the first of each): UTF-8, as browsers
    send a file's name, or else Latin-1."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("latin-1")
    headers: dict[str, str] = {}
    last = ""
    for line in text.split("\r\n") if text else ():  # a part may have no headers
        if line[:1] in (" ", "\t") and last:  # a folded line goes on the one before
            headers[last] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise BadRequest(f"a multipart/form-data part's header line {line[:60]!r} has no colon")
        last = name.strip().lower()
        headers.setdefault(last, value.strip())
    return headers


def _options(value: str) -> tuple[str, dict[str, str]]:
    """A header value's main part, lower-cased, and its parameters by lower-cased name
    (the first of each): ``form-data; name="a"; filename="C:\\x.txt"``. One pass."""
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    at, end = 0, len(rest)
    while at < end:
        semicolon = rest.find(";", at)
        equals = rest.find("=", at, end if semicolon == -1 else semicolon)
        if equals == -1:  # a parameter without a value
            if semicolon == -1:
                break
            at = semicolon + 1
            continue
        key = rest[at:equals].strip().lower()
        at = equals + 1
        while at < end and rest[at] in " \t":
            at += 1
        if at < end and rest[at] == '"':
            text, at = _quoted(rest, at + 1)
        else:
            stop = rest.find(";", at)
            stop = end if stop == -1 else stop
            text, at = rest[at:stop].strip(), stop
        if key:
            params.setdefault(key, text)
        semicolon = rest.find(";", at)
        at = end if semicolon == -1 else semicolon + 1
    return main.strip().lower(), params


def _quoted(text: str, at: int) -> tuple[str, int]:
    """The quoted string that starts at ``at`` (past its opening quote), and where it
    ends (past its closing quote): ``\\"`` and ``\\\\`` are a quote and a backslash; any
    other backslash stays, as browsers do not escape (a Windows path keeps its own). One
    scan: the pattern has no nesting that could make it go back over the text."""
    match = _QUOTED.match(text, at)
    assert match is not None  # it matches the empty string
    end = match.end()
    return _ESCAPED.sub(r"\1", match.group()), end + 1 if end < len(text) else end


_QUOTED = re.compile(r'(?:[^"\\]+|\\["\\]|\\)*')
_ESCAPED = re.compile(r'\\(["\\])')


def _filename(params: dict[str, str]) -> str | None:
    """A part's file name: ``filename*`` (RFC 5987: ``UTF-8''na%C3%AFve.txt``) when it
    decodes, else ``filename``; None for a part that is no file."""
    extended = params.get("filename*")
    if extended is not None:
        charset, quote, rest = extended.partition("'")
        _language, quote2, encoded = rest.partition("'")
        if quote and quote2:
            try:
                return unquote(encoded, encoding=charset or "utf-8", errors="strict")
            except (LookupError, UnicodeError):  # idna and punycode raise UnicodeError
                pass  # then the plain filename, if there is one
    filename = params.get("filename")
    return _unescaped(filename) if filename is not None and "%" in filename else filename


def _unescaped(text: str) -> str:
    """A name or filename as HTML's multipart encoding escapes it, unescaped: a browser
    (and httpx, requests) sends ``"``, CR and LF as ``%22``, ``%0D`` and ``%0A``, and
    no other ``%`` (a file named ``100%.txt`` keeps its own)."""
    return text.replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n")
