"""Form bodies: ``application/x-www-form-urlencoded`` and ``multipart/form-data``
(RFC 7578), parsed from a body that is already read whole (hibana buffers request bodies,
up to ``--max-body-bytes``). A body that does not parse is a ``BadRequest`` naming why.

Multipart is split on its boundary with ``bytes.find``, so a large file costs a few
copies, not a pass of Python over its lines; each part's few header lines are read with
the standard library's header parser, which knows the quoting rules.
"""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import HTTP
from urllib.parse import parse_qsl

from hibana.datastructures import Files, FormData, UploadedFile
from hibana.errors import BadRequest

#: Fields a form may hold: a guard against bodies built to make the parse slow.
MAX_FIELDS = 1000
_headers = BytesHeaderParser(policy=HTTP).parsebytes
_FORM_TYPES = "application/x-www-form-urlencoded or multipart/form-data"


def parse_form(content_type: str, body: bytes) -> tuple[FormData, Files]:
    """The fields and files of ``body``, whose ``Content-Type`` header is ``content_type``."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        return _urlencoded(body), Files()
    if kind == "multipart/form-data":
        return _multipart(content_type, body)
    raise BadRequest(
        f"request body is {kind or 'of no declared type'}, not a form; "
        f"send Content-Type {_FORM_TYPES}"
    )


def _urlencoded(body: bytes) -> FormData:
    try:
        text = body.decode("ascii")  # percent-encoded: anything else is not this type
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"form body is not valid percent-encoded UTF-8: {exc}") from None
    except ValueError as exc:  # more than MAX_FIELDS fields
        raise BadRequest(f"form body is over the limit of {MAX_FIELDS} fields: {exc}") from None
    return FormData(pairs)


def _multipart(content_type: str, body: bytes) -> tuple[FormData, Files]:
    declared = _headers(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n")
    value = declared.get_param("boundary")
    if not isinstance(value, str) or not 0 < len(value) <= 70:
        raise BadRequest(
            "multipart/form-data body has no boundary of 1 to 70 characters in its "
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
    fields: list[tuple[str, str]] = []
    files: list[tuple[str, UploadedFile]] = []
    separator = b"\r\n" + delimiter
    while True:
        if body.startswith(b"--", start):
            break  # the closing delimiter; what follows is an epilogue
        line_end = body.find(b"\r\n", start)
        if line_end == -1 or body[start:line_end].strip(b" \t"):
            raise BadRequest("multipart/form-data body ends inside a boundary line")
        end = body.find(separator, line_end)
        if end == -1:
            raise BadRequest("multipart/form-data body has no closing boundary; was it cut short?")
        _part(body[line_end + 2 : end], fields, files)
        if len(fields) + len(files) > MAX_FIELDS:
            raise BadRequest(f"form body is over the limit of {MAX_FIELDS} fields")
        start = end + len(separator)
    return FormData(fields), Files(files)


def _part(
    part: bytes, fields: list[tuple[str, str]], files: list[tuple[str, UploadedFile]]
) -> None:
    head_end = part.find(b"\r\n\r\n")
    if part.startswith(b"\r\n"):
        head, data = b"", part[2:]
    elif head_end == -1:
        raise BadRequest("a multipart/form-data part has no blank line after its headers")
    else:
        head, data = part[:head_end], part[head_end + 4 :]
    headers = _headers(head + b"\r\n\r\n")
    name = headers.get_param("name", header="content-disposition")
    if not isinstance(name, str):
        raise BadRequest(
            "a multipart/form-data part has no Content-Disposition: form-data; name=..."
        )
    filename = headers.get_filename()
    if filename is not None:
        kind = headers.get_content_type() if "content-type" in headers else ""
        files.append((name, UploadedFile(filename, kind or "application/octet-stream", data)))
        return
    charset = headers.get_content_charset() or "utf-8"
    try:
        fields.append((name, data.decode(charset)))
    except (LookupError, UnicodeDecodeError) as exc:
        raise BadRequest(f"form field {name!r} is not valid {charset} text: {exc}") from None
