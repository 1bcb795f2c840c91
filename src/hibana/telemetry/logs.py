"""``ctx.log``: structured log lines bound to an invocation, each carrying its fields
(invocation id, function, trace ids); and the logger of the invocation running in this
task or thread, which printed text and the ``logging`` module write through."""

from __future__ import annotations

import contextvars
import sys
from typing import Any

from hibana.telemetry.log_fields import (
    LEVELS,
    MAY_HOLD_BYTES,
    OWN_FIELDS,
    Level,
    bytes_as_text,
    error_fields,
    timestamp,
)
from hibana.telemetry.log_sink import LogSink


def _message(value: object) -> str:
    """A log line's message that was not a string: its ``str``, as ``logging`` would."""
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__} whose str raised>"


def _renamed(fields: dict[str, Any], own: frozenset[str] | None = None) -> dict[str, Any]:
    """``fields`` with any named like a line's own (``own``: ts, level, msg, and the
    invocation's ids) renamed with a ``_`` after it (``msg_``, ``invocation_id_``), or as
    many as it takes to find a name no other field has: a caller's ``msg=text`` is kept
    without hiding the line's message (nor a ``msg_=`` of its own), ``level=`` cannot make
    an error line look like info, and ``invocation_id=`` cannot put the line on another
    invocation's account."""
    own = OWN_FIELDS if own is None else own
    renamed: dict[str, Any] = {}
    for key, value in fields.items():
        if key in own:
            key += "_"
            while key in fields or key in renamed:
                key += "_"
        renamed[key] = value
    return renamed


#: The names of a line's own fields and of those ``Logger.exception`` adds.
_OWN_AND_ERROR = OWN_FIELDS | {"error", "traceback"}


class Logger:
    """``ctx.log``: ``log.info("message", key=value, ...)`` writes one JSON line that also
    carries the fields this logger is bound to (invocation id, function, trace ids)."""

    __slots__ = ("_sink", "_fields")

    def __init__(self, sink: LogSink, fields: dict[str, Any]) -> None:
        self._sink = sink
        self._fields = fields

    @property
    def fields(self) -> dict[str, Any]:
        """The fields every line of this logger carries (a copy)."""
        return dict(self._fields)

    def bind(self, **fields: Any) -> Logger:
        """A logger that adds ``fields`` to every line."""
        if not OWN_FIELDS.isdisjoint(fields):
            fields = _renamed(fields)
        bound = {**self._fields, **fields}
        bytes_as_text(bound)
        return Logger(self._sink, bound)

    def log(self, level: Level, msg: str, /, **fields: Any) -> None:
        """A line at ``level``: "debug", "info", "warning" or "error" (another is a
        ValueError: a line whose level no reader knows would be missed)."""
        if level not in LEVELS:
            raise ValueError(
                f"log level {level!r} is not one of {', '.join(map(repr, LEVELS))}; "
                "call ctx.log.log() with one of those, or ctx.log.error(...) and the like"
            )
        self._line(level, msg, fields)

    def _line(self, level: Level, msg: str, fields: dict[str, Any]) -> None:
        """``log``'s work, with the call's fields as a dict: ``info`` and the others hand
        theirs on as it is, rather than packed again into ``log``'s."""
        if LEVELS[level] < self._sink.min_level:
            return
        if type(msg) is not str:
            msg = _message(msg)  # as logging does: ctx.log.info(count) says "12"
        if fields:
            if not OWN_FIELDS.isdisjoint(fields):
                fields = _renamed(fields)
            record = {"ts": timestamp(), "level": level, "msg": msg, **self._fields, **fields}
            for value in fields.values():
                if type(value) in MAY_HOLD_BYTES:
                    bytes_as_text(record)
                    break
        else:
            record = {"ts": timestamp(), "level": level, "msg": msg, **self._fields}
        self._sink.emit(record)

    def debug(self, msg: str, /, **fields: Any) -> None:
        self._line("debug", msg, fields)

    def info(self, msg: str, /, **fields: Any) -> None:
        self._line("info", msg, fields)

    def warning(self, msg: str, /, **fields: Any) -> None:
        self._line("warning", msg, fields)

    def error(self, msg: str, /, **fields: Any) -> None:
        self._line("error", msg, fields)

    def exception(self, msg: str, exc: BaseException | None = None, /, **fields: Any) -> None:
        """An error line carrying ``exc``'s type, message and traceback (``error`` and
        ``traceback``: a field of the caller's named so, given here or bound, is kept
        renamed, as ``error_``). Without ``exc``, the exception being handled (in an
        ``except`` block), as ``logging``'s ``exception`` takes it."""
        bound = self._fields
        if "error" in bound or "traceback" in bound:
            # bound by the caller (``bind(error=...)``): kept renamed, as a call's field
            # named so is, rather than replaced by the exception's
            own = {k: v for k, v in bound.items() if k in OWN_FIELDS}
            theirs = {k: v for k, v in bound.items() if k not in OWN_FIELDS}
            Logger(self._sink, own).exception(msg, exc, **{**theirs, **fields})
            return
        if exc is None:
            exc = sys.exc_info()[1]
        told: dict[str, Any] = (
            error_fields(exc) if isinstance(exc, BaseException) else _no_exception(exc)
        )
        if fields:
            told.update(
                _renamed(fields, _OWN_AND_ERROR)
                if "error" in fields or "traceback" in fields
                else fields
            )
        self._line("error", msg, told)


def _no_exception(given: object) -> dict[str, Any]:
    """What an exception line says that was given no exception: logging never fails its
    caller, not even for that; the line says what to pass."""
    if given is None:
        return {
            "log_error": "ctx.log.exception() was called outside an except block, with no "
            "exception: pass the exception, ctx.log.exception(msg, exc)"
        }
    return {
        "error": _message(given),
        "log_error": f"ctx.log.exception() takes an exception, not {type(given).__name__}: "
        "pass the exception, or log the text with ctx.log.error(msg, detail=...)",
    }


def invocation_line(log: Logger, level: Level, fields: dict[str, Any]) -> None:
    """The host's line that ends an invocation (``"msg": "invocation"``), on ``log``'s
    account: ``fields`` (its ``outcome`` first) written as given, none renamed."""
    if LEVELS[level] >= log._sink.min_level:
        log._sink.emit(
            {"ts": timestamp(), "level": level, "msg": "invocation", **log._fields, **fields}
        )


#: The logger of the invocation running in this task or thread (``ctx.log``), set by the
#: dispatcher around a function: what the function prints, and what it logs through the
#: standard ``logging`` module, carries its invocation's fields.
current_logger: contextvars.ContextVar[Logger | None] = contextvars.ContextVar(
    "hibana_current_logger", default=None
)
