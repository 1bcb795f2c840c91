"""What a log line is made of: its level, its timestamp, its fields as JSON (values JSON
has no form for, bytes as text, a line that cannot be written at all), and how an
exception is told in one."""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from typing import Any, Literal

import msgspec

Level = Literal["debug", "info", "warning", "error"]

LEVELS: dict[str, int] = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def _unknown(value: object) -> str:
    """What a line says of a value JSON has no form for: a path's text (``"/srv/in.csv"``,
    as an f-string writes it), anything else's ``repr``."""
    return str(value) if isinstance(value, os.PathLike) else repr(value)


#: Called for values msgspec cannot encode only: the lines of plain values never pay for it.
encode = msgspec.json.Encoder(enc_hook=_unknown).encode


def as_dict(record: dict[str, Any] | msgspec.Struct) -> dict[str, Any]:
    """A line's record as a dict: a struct's fields, those left unset left out."""
    if isinstance(record, dict):
        return record
    return {k: v for k, v in msgspec.structs.asdict(record).items() if v is not msgspec.UNSET}


_MILLIS = [f".{ms:03d}Z" for ms in range(1000)]

#: The last millisecond formatted and its text, and its second and that one's text: one
#: tuple, replaced whole, so a thread reads the four as one thread wrote them (as two
#: lists changed an item at a time, a line could take the second before its own).
_formatted: tuple[int, str, int, str] = (-1, "", -1, "")


def timestamp() -> str:
    """UTC now as ISO 8601 with milliseconds; the date part is formatted once a second,
    the whole once a millisecond (a busy worker writes many lines in one)."""
    global _formatted
    ms = int(time.time() * 1000)
    last = _formatted
    if ms == last[0]:
        return last[1]
    whole = ms // 1000
    second = last[3] if whole == last[2] else time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    text = second + _MILLIS[ms - whole * 1000]
    _formatted = (ms, text, whole, second)
    return text


def millis(seconds: float) -> float:
    """``seconds`` as milliseconds to the microsecond, for log lines (a fraction of what
    ``round(x, 3)`` costs, which goes through a decimal string)."""
    return int(seconds * 1_000_000 + 0.5) / 1000


def escaped(record: dict[str, Any]) -> bytes:
    """``record`` as a JSON line, made encodable (``loggable``); if even that fails (a
    dict that holds itself), a line of its own fields that says why: never an exception."""
    try:
        return encode(loggable(record))
    except Exception as exc:
        kept = {k: loggable(v) for k, v in record.items() if k in OWN_FIELDS and type(v) is str}
        kept["log_error"] = (
            f"the fields of this line could not be written as JSON ({type(exc).__name__}); "
            "log plain values: str, numbers, lists and dicts of them"
        )
        return encode(kept)


def loggable(value: Any) -> Any:
    """``value`` made encodable: a string's lone surrogates (a file name that is not
    UTF-8, decoded with ``surrogateescape``) as ``\\udcff`` escapes, a dict's keys that
    are not strings as their ``repr`` (as the encoder writes them), and anything whose
    ``repr`` raises named by its type."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {
            loggable(k if isinstance(k, str) else _repr(k)): loggable(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [loggable(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return loggable(_repr(value))


def _repr(value: object) -> str:
    try:
        return _unknown(value)
    except Exception:
        return f"<{type(value).__name__} whose repr raised>"


_BINARY = frozenset({bytes, bytearray, memoryview})

#: What a field's value may hold bytes in: itself, or inside it.
MAY_HOLD_BYTES = _BINARY | {dict, list, tuple}


def bytes_as_text(record: dict[str, Any]) -> None:
    """Bytes in fields written as text (UTF-8, other bytes as ``\\xff`` escapes), not as
    the JSON encoder's base64: readable, and a secret in them is found and redacted. Also
    inside a field's dicts and lists (copied, not changed: they are the caller's)."""
    for key, value in record.items():
        if type(value) in MAY_HOLD_BYTES:
            # a dict that holds itself is left as it is: emit's line says it could not be written
            with contextlib.suppress(RecursionError):
                record[key] = _as_text(value)


def _as_text(value: Any) -> Any:
    kind = type(value)
    if kind in _BINARY:
        return bytes(value).decode("utf-8", "backslashreplace")
    if kind is dict:
        return {k: _as_text(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_as_text(v) for v in value]
    return value


#: A line's own fields, which a caller's are renamed around. ``outcome`` is the host's
#: invocation line's (``invocation_line``): only that line has one, so a function's
#: ``ctx.log.info("invocation", outcome=...)`` is not taken for it (the console draws it).
OWN_FIELDS = frozenset(
    {"ts", "level", "msg", "invocation_id", "function", "trace_id", "span_id", "outcome"}
)


def error_fields(exc: BaseException) -> dict[str, str]:
    """How a log line tells of ``exc``: ``error`` (its type and message) and
    ``traceback``. A function's exception is told from the function's first frame on:
    the frames of hibana that called it come first, and say nothing to its author."""
    tb = first = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_OWN_CODE):
        tb = tb.tb_next
    return {
        "error": error_text(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, tb or first)),
    }


def error_text(exc: BaseException) -> str:
    """``Type: message``: how a log line, a dead letter and the next attempt's
    ``msg.errors`` tell of ``exc``; just ``Type`` for one with no message (a bare
    ``raise KeyboardInterrupt``). One whose ``str()`` fails (a ``__str__`` that returns
    None, or raises) is told as the traceback module tells it, rather than failing the
    code that reports it."""
    try:
        said = str(exc)
    except Exception:
        said = "<exception str() failed>"
    return f"{type(exc).__name__}: {said}" if said else type(exc).__name__


#: Where hibana's own modules are (``src/hibana/``).
_OWN_CODE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
