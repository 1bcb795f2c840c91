"""Structured JSON log lines on stdout, one object a line, bound to an invocation.

Lines are buffered and written together once per loop iteration, so a busy worker makes
one ``write`` for many invocations. Each write is a whole number of lines of at most
``PIPE_BUF`` bytes where it can be (a longer line goes alone). When stdout is a pipe or a
socket that other processes of the host write to as well, each flush holds a lock on it
(``lockf``: two system calls a flush): a pipe whose reader falls behind takes a long
write in parts, and without the lock another process's line could land between them.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import contextvars
import fcntl
import io
import json
import os
import select
import stat
import sys
import threading
import time
import traceback
import urllib.parse
import weakref
from collections.abc import Callable
from typing import IO, Any, Literal

import msgspec

Level = Literal["debug", "info", "warning", "error"]
_LEVELS: dict[str, int] = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def _unknown(value: object) -> str:
    """What a line says of a value JSON has no form for: a path's text (``"/srv/in.csv"``,
    as an f-string writes it), anything else's ``repr``."""
    return str(value) if isinstance(value, os.PathLike) else repr(value)


#: Called for values msgspec cannot encode only: the lines of plain values never pay for it.
_encode = msgspec.json.Encoder(enc_hook=_unknown).encode
#: The most bytes one write to a pipe may carry and still never be cut by another
#: writer's (POSIX guarantees 512; Linux gives 4096).
_WHOLE = getattr(select, "PIPE_BUF", 512)


class LogSink:
    """Where a process's log lines go: a file descriptor (stdout by default)."""

    def __init__(self, fd: int = 1, level: Level = "info") -> None:
        self.fd = fd
        #: fd is a pipe or a socket, which other processes may write to: writes lock it,
        #: one thread of this process at a time.
        self._shared = _pipe_or_socket(fd)
        self._writing = threading.Lock()
        self.min_level = _LEVELS[level]
        #: Lines (without their newline) written on the loop's thread, and on others
        #: (sync functions' threads). Those go on a deque that is never replaced, only
        #: emptied from its left, so a thread appends without a lock and its line cannot
        #: land on a list already written.
        self._lines: list[bytes] = []
        self._foreign: collections.deque[bytes] = collections.deque()
        #: A thread has asked the loop for a flush (``prompt``) that has not begun yet.
        self._nudged = False
        self._lock = threading.Lock()  # two flushes (the loop's, the watchdog's) at once
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._flush_scheduled = False
        #: Secret values as they appear inside JSON strings; replaced before any write.
        self._redact: tuple[bytes, ...] = ()
        self._bare: tuple[bytes, ...] = ()
        self._values: tuple[str, ...] = ()
        #: The owner's flush timer is slow now (nothing is running): a line from another
        #: thread asks the loop for a flush of its own.
        self.prompt = False

    def redact(self, values: list[str]) -> None:
        """Never write any of ``values`` (granted secrets): wherever one appears in a line,
        in a message, a field or a traceback, it is written as ``[REDACTED]``; so are the
        forms code writes it in (``repr``, a bytes repr, JSON: see ``_written_forms``)."""
        forms = {form for v in values if v for form in _written_forms(v)}
        # Longest first, so a secret that contains another is replaced whole.
        self._values = tuple(sorted(forms, key=len, reverse=True))
        self._redact = tuple(_encode(form)[1:-1] for form in self._values)
        #: Those a number, true, false or null can hold: found outside a string too, where
        #: ``[REDACTED]`` would leave the line no JSON; such values go as strings (``emit``).
        self._bare = tuple(form for form in self._redact if _bare_able(form))

    def longest_secret(self) -> int:
        """The length of the longest form of a secret ``scrub`` replaces (0: none)."""
        return len(self._values[0]) if self._values else 0

    def secret_begun(self, text: str) -> int:
        """How many characters at the end of ``text`` are the start of a secret's form
        ``scrub`` replaces (0: none): what a writer whose text goes on later keeps back,
        so that the secret is whole, and replaced, when the rest comes."""
        begun = 0
        for value in self._values:
            if len(value) < 2:
                continue  # nothing of it can be begun and not ended
            tail = text[1 - len(value) :]
            at = tail.find(value[0])
            # the first place that starts the value is the longest: the rest cannot beat it
            while at != -1 and len(tail) - at > begun:
                if value.startswith(tail[at:]):
                    begun = len(tail) - at
                    break
                at = tail.find(value[0], at + 1)
        return begun

    def scrub(self, text: str) -> str:
        """``text`` with every secret value given to ``redact`` replaced by ``[REDACTED]``:
        for what is kept or written other than as a log line (a dead letter's error,
        stderr)."""
        for value in self._values:
            if value in text:
                text = text.replace(value, "[REDACTED]")
        return text

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Buffer lines and write them once per turn of ``loop``. Lines from other threads
        (sync functions) go out with the loop's next write; the owner also calls
        ``flush()`` on a short timer so a quiet loop does not hold them."""
        self._loop = loop
        self._loop_thread = threading.get_ident()
        sink = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forked(sink))

    def detach(self) -> None:
        """Write what is buffered, and from now on each line as it comes (the loop is
        gone)."""
        self.flush()
        self._loop = None

    def emit(self, record: dict[str, Any] | msgspec.Struct) -> None:
        """Write ``record`` as a line: a dict, or a struct (its unset fields left out)."""
        if self._bare:
            record = _quoted(_as_dict(record), self._bare)
        try:
            line = _encode(record)
        except Exception:  # a lone surrogate, a repr that raises: logging never fails a caller
            line = _escaped(_as_dict(record))
        loop = self._loop
        if loop is None:
            self._write(line + b"\n")
        elif _thread() == self._loop_thread:
            self._lines.append(line)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                loop.call_soon(self.flush)
        else:
            self._foreign.append(line)
            # one flush asked for at a time: a thread that finds one asked for appended
            # before it begins (it clears the flag first), so that flush takes its line
            if self.prompt and not self._nudged:
                self._nudged = True
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    loop.call_soon_threadsafe(self.flush)

    def flush(self) -> None:
        """Write what is buffered. Called on the loop's thread, or by the worker's watchdog
        while that thread is stuck (and so not adding lines)."""
        self._flush_scheduled = False
        self._nudged = False
        lines = self._lines
        foreign = self._foreign
        if foreign:
            # first: a sync function's lines come before the invocation line that the
            # loop writes once the function has returned
            with self._lock:
                take = foreign.popleft
                lines = [take() for _ in range(len(foreign))] + lines
        if lines:
            self._lines = []
            self._write(b"\n".join(lines) + b"\n")

    def _write(self, data: bytes) -> None:
        """Write ``data``, lines each ending in a newline, in pieces of whole lines of at
        most ``_WHOLE`` bytes (a longer line goes alone), each written to its end."""
        for secret in self._redact:
            if secret in data:
                data = data.replace(secret, b"[REDACTED]")
        if not data.isascii():
            data = _unbroken(data)
        if not self._shared:
            self._write_lines(data)
            return
        # lockf's lock is the process's: two threads writing here (the supervisor's) would
        # both hold it, and one's unlock would let another process in on the other's line
        with self._writing:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX)
            except OSError:  # no locks here (ENOLCK), or fd is closed: write as it comes
                self._write_lines(data)
                return
            try:
                self._write_lines(data)
            finally:
                with contextlib.suppress(OSError):
                    fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def _write_lines(self, data: bytes) -> None:
        size = len(data)
        if size <= _WHOLE:
            self._write_piece(data)
            return
        view = memoryview(data)
        start = 0
        while start < size:
            end = size
            if size - start > _WHOLE:
                end = data.rfind(b"\n", start, start + _WHOLE) + 1
                if end <= start:  # one line longer than _WHOLE
                    end = data.find(b"\n", start) + 1 or size
            if not self._write_piece(view[start:end]):
                return
            start = end

    def _write_piece(self, piece: bytes | memoryview) -> bool:
        """False if stdout is closed: nothing sensible is left to do with a log line."""
        view = memoryview(piece)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:  # a non-blocking pipe that is full: wait for room
                ready(self.fd, select.POLLOUT)
                continue
            except OSError:
                return False
            view = view[n:]
        return True


def _unbroken(data: bytes) -> bytes:
    """``data`` (JSON lines) with U+2028, U+2029 and NEL escaped: JSON lets a string hold
    them raw, but Python's ``str.splitlines()`` (and the log shippers that split as it
    does, or as JavaScript does) take them for a line's end. In UTF-8 no other
    character's bytes hold theirs, and JSON has them in strings only, so each may be
    replaced by its escape (Go's encoding/json escapes the first two; ``json.dumps``,
    which structlog and python-json-logger use, all that is not ASCII). A byte is looked
    for first: that search is a ``memchr``, several times quicker than one for three."""
    if b"\xe2" in data:
        data = data.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    if b"\x85" in data:
        data = data.replace(b"\xc2\x85", b"\\u0085")
    return data


def _pipe_or_socket(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _as_dict(record: dict[str, Any] | msgspec.Struct) -> dict[str, Any]:
    """A line's record as a dict: a struct's fields, those left unset left out."""
    if isinstance(record, dict):
        return record
    return {k: v for k, v in msgspec.structs.asdict(record).items() if v is not msgspec.UNSET}


#: What a bare JSON number is written with.
_NUMBER_BYTES = frozenset(b"0123456789+-.eE")


def _bare_able(form: bytes) -> bool:
    """A secret's form can be (part of) a JSON value written bare: a number, or a literal."""
    return set(form) <= _NUMBER_BYTES or any(form in word for word in (b"true", b"false", b"null"))


def _quoted(record: dict[str, Any], secrets: tuple[bytes, ...]) -> dict[str, Any]:
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
        text = _encode(value)
        if any(secret in text for secret in secrets):
            return text.decode()
    return value


def _written_forms(value: str) -> set[str]:
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


def _forked(ref: weakref.ref[LogSink]) -> None:
    """In a child forked from a process whose sink is attached to its loop (a function's
    multiprocessing pool, say): there is no loop here, so the child writes its lines
    directly; what the parent had buffered is the parent's to write."""
    sink = ref()
    if sink is not None:
        sink._loop = None
        sink._lines = []
        sink._foreign = collections.deque()
        sink._flush_scheduled = False
        sink._nudged = False
        sink._lock = threading.Lock()  # another thread may have held it at the fork
        sink._writing = threading.Lock()


_MILLIS = [f".{ms:03d}Z" for ms in range(1000)]
#: The last millisecond formatted and its text, and its second and that one's text: one
#: tuple, replaced whole, so a thread reads the four as one thread wrote them (as two
#: lists changed an item at a time, a line could take the second before its own).
_formatted: tuple[int, str, int, str] = (-1, "", -1, "")
_thread = threading.get_ident


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


def _message(value: object) -> str:
    """A log line's message that was not a string: its ``str``, as ``logging`` would."""
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__} whose str raised>"


def _escaped(record: dict[str, Any]) -> bytes:
    """``record`` as a JSON line, made encodable (``_loggable``); if even that fails (a
    dict that holds itself), a line of its own fields that says why: never an exception."""
    try:
        return _encode(_loggable(record))
    except Exception as exc:
        kept = {k: _loggable(v) for k, v in record.items() if k in OWN_FIELDS and type(v) is str}
        kept["log_error"] = (
            f"the fields of this line could not be written as JSON ({type(exc).__name__}); "
            "log plain values: str, numbers, lists and dicts of them"
        )
        return _encode(kept)


def _loggable(value: Any) -> Any:
    """``value`` made encodable: a string's lone surrogates (a file name that is not
    UTF-8, decoded with ``surrogateescape``) as ``\\udcff`` escapes, a dict's keys that
    are not strings as their ``repr`` (as the encoder writes them), and anything whose
    ``repr`` raises named by its type."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {
            _loggable(k if isinstance(k, str) else _repr(k)): _loggable(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_loggable(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return _loggable(_repr(value))


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


#: A line's own fields, which a caller's are renamed around. ``outcome`` is the host's
#: invocation line's (``invocation_line``): only that line has one, so a function's
#: ``ctx.log.info("invocation", outcome=...)`` is not taken for it (the console draws it).
OWN_FIELDS = frozenset(
    {"ts", "level", "msg", "invocation_id", "function", "trace_id", "span_id", "outcome"}
)
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
        if level not in _LEVELS:
            raise ValueError(
                f"log level {level!r} is not one of {', '.join(map(repr, _LEVELS))}; "
                "call ctx.log.log() with one of those, or ctx.log.error(...) and the like"
            )
        self._line(level, msg, fields)

    def _line(self, level: Level, msg: str, fields: dict[str, Any]) -> None:
        """``log``'s work, with the call's fields as a dict: ``info`` and the others hand
        theirs on as it is, rather than packed again into ``log``'s."""
        if _LEVELS[level] < self._sink.min_level:
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
    if _LEVELS[level] >= log._sink.min_level:
        log._sink.emit(
            {"ts": timestamp(), "level": level, "msg": "invocation", **log._fields, **fields}
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
    ``msg.errors`` tell of ``exc``. One whose ``str()`` fails (a ``__str__`` that returns
    None, or raises) is told as the traceback module tells it, rather than failing the
    code that reports it."""
    try:
        said = str(exc)
    except Exception:
        said = "<exception str() failed>"
    return f"{type(exc).__name__}: {said}"


#: Where hibana's own modules are (``src/hibana/``).
_OWN_CODE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


#: The logger of the invocation running in this task or thread (``ctx.log``), set by the
#: dispatcher around a function: what the function prints, and what it logs through the
#: standard ``logging`` module, carries its invocation's fields.
current_logger: contextvars.ContextVar[Logger | None] = contextvars.ContextVar(
    "hibana_current_logger", default=None
)


class _Unfinished:
    """A thread's printed text that has no newline yet, and whose it is."""

    __slots__ = ("log", "text", "_held")

    def __init__(self, log: Logger, held: set[_Unfinished]) -> None:
        self.log = log
        self.text = ""
        #: The lines that have text (``PrintedLines``'s), this one among them while it has.
        self._held = held

    def out(self) -> None:
        """Write the text as a line of its own, if there is any."""
        if self.text:
            self.log.info(self.text, stream="stdout")
            self.text = ""
        self._held.discard(self)


class PrintedLines(io.TextIOBase):
    """``sys.stdout`` in the host's processes, which must write one JSON object a line:
    each line an app prints becomes an info line (``"msg"``: the text, ``"stream"``:
    ``"stdout"``) with the fields of the invocation that printed it, or ``fields``
    outside one. A line goes out once its newline is written; an unfinished one, when
    ``flush()`` is called, when its thread prints for another invocation, or at
    ``flush_all()`` (the process ends). Threads printing at once do not mix."""

    def __init__(self, sink: LogSink, fields: dict[str, Any]) -> None:
        super().__init__()
        self._log = Logger(sink, fields)
        self._local = threading.local()
        #: Each thread's line while it has text: held here, not only by the thread's
        #: ``_local``, so that a thread that ends does not take its text with it.
        self._unfinished: set[_Unfinished] = set()
        self._bytes = _PrintedBytes(self)
        #: Some thread has left printed text without its newline: only then does the end
        #: of an invocation look for its own (``finish``).
        self.partly = False

    def rebind(self, sink: LogSink, fields: dict[str, Any]) -> None:
        """Write what is printed outside an invocation to ``sink``, with ``fields``: a
        worker's, not the zygote's it was forked from. The app may hold this very object
        (a ``StreamHandler`` or a ``file=`` given ``sys.stdout`` as it was imported): its
        lines are then redacted as the worker's, and say the worker's pid. Text the zygote
        left without a newline is the zygote's to write."""
        self._log = Logger(sink, fields)
        for line in self._unfinished:
            line.text = ""
        self._unfinished.clear()
        self.partly = False

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        """fd 1: a child process handed ``sys.stdout`` writes there (under the host, a
        pipe whose lines become JSON lines too: see ``ProcessOutput``)."""
        return 1

    @property
    def buffer(self) -> _PrintedBytes:
        """``sys.stdout.buffer``: bytes written there become lines too (as UTF-8)."""
        return self._bytes

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        log = current_logger.get() or self._log
        line: _Unfinished | None = getattr(self._local, "line", None)
        if line is None:
            line = self._local.line = _Unfinished(log, self._unfinished)
        elif line.log is not log:
            line.out()  # another invocation's unfinished line: out first, as its own
            line.log = log
        if "\n" not in text:
            line.text += text
            self._unfinished.add(line)
            self.partly = True
            return len(text)
        *lines, line.text = (line.text + text).split("\n")
        for done in lines:
            # a line ended by \r\n (csv's, say) is its text, as one on fd 1 (ProcessOutput)
            log.info(done.removesuffix("\r"), stream="stdout")
        if line.text:
            self._unfinished.add(line)
            self.partly = True
        else:
            self._unfinished.discard(line)
        return len(text)

    def finish(self, log: Logger) -> None:
        """Write what ``log``'s invocation printed on this thread without a newline: it has
        ended, and nothing else would write the text until the process ends."""
        line: _Unfinished | None = getattr(self._local, "line", None)
        if line is not None and line.log is log:
            line.out()

    def flush(self) -> None:
        """Write this thread's unfinished line, but for an end that may be the start of a
        secret (``print(part, end="", flush=True)`` twice): that waits for what comes next."""
        line: _Unfinished | None = getattr(self._local, "line", None)
        if line is None or not line.text:
            return
        begun = line.log._sink.secret_begun(line.text)
        if not begun:
            line.out()
        elif begun < len(line.text):
            text, line.text = line.text[:-begun], line.text[-begun:]
            line.log.info(text, stream="stdout")

    def flush_all(self) -> None:
        """Write every thread's unfinished line, also a thread's that has ended (the
        process ends)."""
        for line in list(self._unfinished):
            line.out()


def finish_printed(log: Logger) -> None:
    """At the end of ``log``'s invocation, on the thread that ran it: what it printed
    without a newline goes out as its line (``sys.stdout.write("result: 42")`` was held
    until the worker stopped)."""
    out = sys.stdout
    if type(out) is PrintedLines and out.partly:
        out.finish(log)


class ErrorLines(io.TextIOBase):
    """``wsgi.errors`` of a mounted WSGI app's request (Flask's ``app.logger`` writes
    there): each line becomes an error line of ``log``, the request's invocation, with
    ``"stream": "wsgi.errors"``. A line goes out once its newline is written, or at
    ``flush()``."""

    def __init__(self, log: Logger) -> None:
        super().__init__()
        self._log = log
        self._text = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        *lines, self._text = (self._text + text).split("\n")
        for line in lines:
            self._log.error(line, stream="wsgi.errors")
        return len(text)

    def flush(self) -> None:
        if self._text:
            text, self._text = self._text, ""
            self._log.error(text, stream="wsgi.errors")


class ScrubbedText(io.TextIOBase):
    """``sys.stderr`` in the workers: what is written there (a traceback a function
    prints, a warning) goes to ``stream`` with the granted secrets' values replaced by
    ``[REDACTED]``, as in the log lines (``LogSink.scrub``). A value written in two
    pieces is not caught; the standard library writes a traceback line or a warning whole."""

    def __init__(self, sink: LogSink, stream: io.TextIOBase | IO[str]) -> None:
        super().__init__()
        self._sink = sink
        self._stream = stream

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self._stream, "encoding", "utf-8"))

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._stream.write(self._sink.scrub(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()


class _PrintedBytes(io.RawIOBase):
    """``sys.stdout.buffer`` over ``PrintedLines``."""

    def __init__(self, text: PrintedLines) -> None:
        super().__init__()
        self._text = text
        self._local = threading.local()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        # a character may be split between two writes: each thread keeps its unfinished
        # bytes until the rest comes
        decoder = getattr(self._local, "decoder", None)
        if decoder is None:
            decoder = self._local.decoder = _utf8("replace")
        view = memoryview(data)
        self._text.write(decoder.decode(view))
        return view.nbytes

    def flush(self) -> None:
        decoder = getattr(self._local, "decoder", None)
        if decoder is not None:
            self._text.write(decoder.decode(b"", True))  # a character never finished
        self._text.flush()


_utf8 = codecs.getincrementaldecoder("utf-8")
#: The longest unfinished line ``ProcessOutput`` holds: past it, what it has goes out (a
#: program's output need not have newlines; the JSON lines ConsoleLog reads all do).
_LONGEST = 64 * 1024
#: How long an unfinished line on fd 2 (a prompt, a progress bar) waits for its end.
_ERRORS_IDLE = 0.05


class LinePipe:
    """A pipe, and a thread of the supervisor's that hands ``take`` what is written to it,
    a line at a time (each with its newline), as it comes: a line goes out when its
    newline arrives, or when the last writer closes the pipe. A line longer than
    ``longest`` bytes (if given) goes in pieces (without a newline but the last's); with
    ``idle``, an unfinished line also goes once nothing more came for that many seconds
    (a prompt, a progress bar)."""

    def __init__(
        self,
        take: Callable[[list[bytes]], None],
        name: str,
        longest: int | None = None,
        idle: float | None = None,
    ) -> None:
        self._take = take
        self._longest = longest
        self._idle = idle
        self._read, self.write_fd = os.pipe()
        self._thread = threading.Thread(target=self._pump, name=name, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        rest = b""
        while True:
            if rest and self._idle is not None and not ready(self._read, select.POLLIN, self._idle):
                self._hand([rest])
                rest = b""
                continue
            try:
                data = os.read(self._read, 65536)
            except OSError:
                data = b""
            rest += data
            end = rest.rfind(b"\n") + 1
            lines = [line + b"\n" for line in rest[:end].split(b"\n")[:-1]]
            rest = rest[end:]
            if (not data and rest) or (self._longest and len(rest) > self._longest):
                lines.append(rest)  # the end of the last line, or a piece of a long one
                rest = b""
            if lines:
                self._hand(lines)
            if not data:
                os.close(self._read)
                return

    def _hand(self, lines: list[bytes]) -> None:
        with contextlib.suppress(Exception):  # the pump goes on, or every writer blocks
            self._take(lines)

    def close(self, timeout: float) -> bool:
        """Close our end, and hand over what the processes still had to say (a writer
        that outlives them, still holding the pipe, is not waited for past ``timeout``).
        True if all of it was: every writer has closed the pipe."""
        os.close(self.write_fd)
        self._thread.join(timeout)
        return not self._thread.is_alive()


def ready(fd: int, event: int, timeout: float | None = None) -> bool:
    """``fd`` is ready for ``event`` (``select.POLLIN``: to read, ``POLLOUT``: to write)
    within ``timeout`` seconds (None: once it is). poll, not select: a raised limit on
    open files gives numbers past 1024, which select cannot take."""
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(None if timeout is None else timeout * 1000))


class ProcessOutput:
    """File descriptors 1 and 2 of the processes the host starts. fd 1 is a pipe whose
    lines become JSON lines (``"stream": "stdout"``) on the host's stdout; fd 2 one whose
    lines go to the host's stderr as they are, with the granted secrets' values redacted.

    What goes to fd 1 without passing through ``sys.stdout`` (a function's subprocess, a
    C library, ``os.write(1, ...)``) would otherwise land raw between the JSON lines. It
    carries no invocation's fields: a pipe does not say who wrote to it. What goes to fd 2
    that way (a subprocess's errors) would otherwise skip the redaction ``sys.stderr`` has."""

    def __init__(self, sink: LogSink, errors_fd: int = 2) -> None:
        self._sink = sink
        self._log = Logger(sink, {"stream": "stdout"})
        self._pipe = LinePipe(self._take, "hibana-output", _LONGEST)
        self.write_fd = self._pipe.write_fd
        self._errors_fd = errors_fd
        #: The end of what came on fd 2 without its newline yet, not written: a secret
        #: may go on in what comes next (see ``_take_errors``).
        self._held = ""
        #: The same for fd 1, and the bytes of a character that a piece's end cut.
        self._held_out = ""
        self._decode = _utf8("replace").decode
        self._errors = LinePipe(self._take_errors, "hibana-errors", _LONGEST, idle=_ERRORS_IDLE)
        self.errors_fd = self._errors.write_fd

    def redact(self, values: list[str]) -> None:
        """Never write these secret values (see ``LogSink.redact``)."""
        self._sink.redact(values)

    def emit(self, record: dict[str, Any]) -> None:
        """A JSON line of the host's own, among the processes' (see ``LogSink.emit``)."""
        self._sink.emit(record)

    def _take(self, lines: list[bytes]) -> None:
        """Each line as a JSON line. A piece of a line longer than ``_LONGEST`` goes as a
        line of its own, but for a character cut at its end and as many characters as the
        longest secret has but one: those go at the start of the next piece, so a secret
        across the cut is whole, and replaced, in that one (as ``_take_errors`` does)."""
        for line in lines:
            piece = not line.endswith(b"\n") and len(line) > _LONGEST
            text = self._held_out + self._decode(line, not piece)
            self._held_out = ""
            keep = self._sink.longest_secret() - 1
            if piece and keep > 0:
                text, self._held_out = text[:-keep], text[-keep:]
            if text:
                self._log.info(text.removesuffix("\n").removesuffix("\r"))

    def _take_errors(self, lines: list[bytes]) -> None:
        """Write what came, redacted. A piece of a line longer than ``_LONGEST`` keeps
        back as many characters as the longest secret has but one: a secret that starts
        in it and goes on in the next piece is then whole, and replaced, in that one."""
        text = self._held + "".join(line.decode("utf-8", "surrogateescape") for line in lines)
        text = self._sink.scrub(text)
        self._held = ""
        longest = self._sink.longest_secret()
        if not text.endswith("\n") and longest > 1 and len(lines[-1]) > _LONGEST:
            text, self._held = text[: 1 - longest], text[1 - longest :]
        self._write_errors(text)

    def _write_errors(self, text: str) -> None:
        data = memoryview(text.encode("utf-8", "surrogateescape"))  # the bytes as they came
        while data:
            try:
                data = data[os.write(self._errors_fd, data) :]
            except BlockingIOError:  # a non-blocking stderr that is full: wait for room
                ready(self._errors_fd, select.POLLOUT)
            except OSError:  # stderr closed or gone: nobody to tell
                return

    def close(self, timeout: float = 1.0) -> None:
        if self._pipe.close(timeout) and self._held_out:
            self._log.info(self._held_out)  # the end of a long line that had no newline
        if self._errors.close(timeout) and self._held:
            self._write_errors(self._held)
