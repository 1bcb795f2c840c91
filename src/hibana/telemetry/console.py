"""The host's JSON log lines, rendered for a person at a terminal (``--log-format console``,
the default of ``hibana dev`` on a terminal).

The workers write JSON lines as always, to a pipe; the supervisor reads it on a thread of
its own and writes one readable line per record (and a traceback under an error), so the
workers' hot path is the same whatever the format. A line that is not JSON is passed on
as it is, but for its control characters (written as escapes, as a record's are).
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from typing import Any

import msgspec

from hibana.telemetry.process_output import LinePipe

#: Fields a person does not read on every line: the trace ids (``--log-format json`` has
#: them), and those drawn in words of their own.
_HIDDEN = frozenset({"ts", "level", "msg", "trace_id", "span_id", "parent_span_id", "traceback"})
#: ... and the host's process fields: on its own lines (no invocation's), a worker's slot
#: and pid; on a printed line, that it was printed. A function's field named so (a child
#: process's ``pid``) is shown: it is the function's to read.
_HOST_ONLY = frozenset({"worker", "pid"})
_LOGGING = frozenset({"worker"})
_PRINTED = frozenset({"stdout", "wsgi.errors"})
#: Fields the invocation line says in words of its own.
_INVOCATION = frozenset(
    {"function", "invocation_id", "outcome", "status", "method", "path", "duration_ms", "attempt"}
)
_LEVELS = {
    "debug": "DEBUG",
    "info": "INFO ",
    "warning": "WARN ",
    "error": "ERROR",
    "critical": "CRIT ",
}
_COLORS = {"debug": "2", "info": "32", "warning": "33", "error": "31;1", "critical": "41;1"}
#: Control characters (line breaks, ESC) and Unicode's line breaks: written as escapes, so
#: what a line says cannot start a line of its own that looks like the host's, nor drive
#: the terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _plain(text: str) -> str:
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


_decode = msgspec.json.Decoder().decode


def render(record: dict[str, Any], color: bool = False) -> str:
    """One record as a line (and its traceback, indented, under it)."""

    def paint(text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if color else text

    level = str(record.get("level", "info"))
    clock = _local_clock(str(record.get("ts", "")))
    shown = _LEVELS.get(level) or _plain(level.upper())  # logging.addLevelName's, as named
    head = f"{paint(clock, '2')} {paint(shown, _COLORS.get(level, '0'))}"
    msg = str(record.get("msg", ""))
    invocation = str(record.get("invocation_id", ""))[:8]
    # only the host's invocation line has an ``outcome``: a function's field named so is
    # written renamed (``outcome_``: see telemetry.log_fields.OWN_FIELDS)
    if msg == "invocation" and "outcome" in record:
        # the supervisor's line for an invocation a dead worker took with it (a 502) knows
        # its function but no request or duration: it says what it knows, and no "?"
        body = str(record.get("function", "invocation"))
        if "method" in record:
            body += f"  {record['method']} {record.get('path', '')} → {record.get('status', '')}"
        elif "status" in record:
            body += f"  → {record['status']}"
        body += f"  {record.get('outcome')}"
        if "duration_ms" in record:
            body += f" in {record['duration_ms']} ms"
        if record.get("attempt", 1) != 1:
            body += f", attempt {record['attempt']}"
        skip = _INVOCATION
        where = invocation
    else:
        body = msg
        skip = frozenset({"function", "invocation_id"})
        where = f"{record.get('function', '')} {invocation}".strip()
    if "invocation_id" not in record or "worker_exit" in record:
        host_only = _HOST_ONLY  # the host's own line, or its line for a dead worker's
    elif "logger" in record:
        host_only = _LOGGING  # logging's line: the host adds the worker's slot
    else:
        host_only = frozenset()
    fields = "  ".join(
        f"{_plain(k)}={_value(v)}"
        for k, v in record.items()
        if k not in _HIDDEN
        and k not in skip
        and k not in host_only
        and not (k == "stream" and v in _PRINTED)
    )
    line = head + " " + _plain(body)
    if fields:
        line += "  " + paint(fields, "36")
    if where:
        line += "  " + paint(f"· {_plain(where)}", "2")
    traceback = record.get("traceback")
    if isinstance(traceback, str) and traceback:
        line += "\n" + "\n".join("    " + _plain(t) for t in traceback.rstrip("\n").split("\n"))
    return line


def _local_clock(ts: str) -> str:
    """``ts`` (UTC, ISO 8601 with milliseconds) as this machine's wall clock, to the ms."""
    try:
        local = datetime.fromisoformat(ts).astimezone()
    except ValueError:
        return ts
    return local.strftime("%H:%M:%S.") + f"{local.microsecond // 1000:03d}"


def _value(value: Any) -> str:
    if isinstance(value, str):
        plain = value and " " not in value and "=" not in value and not _CONTROL.search(value)
        return value if plain else repr(value)
    return msgspec.json.encode(value).decode()


class ConsoleLog:
    """A pipe (``write_fd``: the processes' log fd) whose JSON lines are written rendered
    to ``out_fd``, until every writer has closed it."""

    def __init__(self, out_fd: int, color: bool) -> None:
        self._out = out_fd
        self._color = color
        self._pipe = LinePipe(self._take, "hibana-console")
        self.write_fd = self._pipe.write_fd

    def _take(self, lines: list[bytes]) -> None:
        stripped = (line.removesuffix(b"\n") for line in lines)
        text = "".join(self._line(line) + "\n" for line in stripped if line)
        data = memoryview(text.encode())
        while data:
            try:
                data = data[os.write(self._out, data) :]
            except OSError:
                return  # the terminal went away: nothing sensible is left to do

    def _line(self, line: bytes) -> str:
        try:
            record = _decode(line)
        except msgspec.DecodeError:
            return _plain(line.decode(errors="replace"))
        if not isinstance(record, dict):
            return _plain(line.decode(errors="replace"))
        return render(record, self._color)

    def close(self, timeout: float = 2.0) -> None:
        """Our end is closed; the lines the processes wrote last go out first."""
        self._pipe.close(timeout)
