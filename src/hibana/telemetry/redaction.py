"""The forms a granted secret takes in what code writes (its repr, its JSON, its URL
encoding), and the values of a line that must go as strings for it to be replaced there:
what ``LogSink.redact`` writes as ``[REDACTED]``."""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from typing import Any

from hibana.telemetry.log_fields import encode

#: What a bare JSON number is written with.
_NUMBER_BYTES = frozenset(b"0123456789+-.eE")


def bare_able(form: bytes) -> bool:
    """A secret's form can be (part of) a JSON value written bare: a number, or a literal."""
    return set(form) <= _NUMBER_BYTES or any(form in word for word in (b"true", b"false", b"null"))


def quoted(record: dict[str, Any], secrets: tuple[bytes, ...]) -> dict[str, Any]:
    """``record`` with each number, bool and None (in it, and in its dicts and lists) whose
    JSON holds one of ``secrets`` as a string of that JSON, where the secret can be
    replaced; copied, not changed where the caller's."""
    try:
        quoted: dict[str, Any] = _quoted_value(record, secrets)
    except RecursionError:  # a dict that holds itself: emit's line says it cannot be written
        return record
    return quoted


def _quoted_value(value: Any, secrets: tuple[bytes, ...]) -> Any:
    kind = type(value)
    if kind is dict:
        return {k: _quoted_value(v, secrets) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_quoted_value(v, secrets) for v in value]
    if value is None or isinstance(value, int | float):
        text = encode(value)
        if any(secret in text for secret in secrets):
            return text.decode()
    return value


def written_forms(value: str) -> set[str]:
    """``value`` and the escaped forms it takes in text that code writes: Python's
    ``repr`` (what ``KeyError(value)`` and ``f"{value!r}"`` say), the repr of its UTF-8
    bytes, JSON with and without ASCII escapes (``json.dumps``), and percent-encoded as a
    URL holds it (a SAS token's ``sig=`` in the URL an HTTP error names). They are the
    same for most tokens; a value with a backslash, a quote, a ``+``, ``/`` or ``=`` (base64)
    or a character outside ASCII differs."""
    forms = {
        value,
        repr(value)[1:-1],
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    with contextlib.suppress(UnicodeEncodeError):
        forms |= {
            urllib.parse.quote(value, safe=""),  # a query's value, as httpx and urlencode write it
            urllib.parse.quote(value),  # a path's segments
            urllib.parse.quote_plus(value),  # a form's value: a space as +
        }
    with contextlib.suppress(UnicodeEncodeError):  # a lone surrogate: no UTF-8 form
        forms.add(repr(value.encode())[2:-1])
    return {form for form in forms if form}
