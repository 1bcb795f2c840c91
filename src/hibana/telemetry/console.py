"""The host's JSON log lines, rendered for a person at a terminal (``--log-format console``,
the default of ``hibana dev`` on a terminal).

The workers write JSON lines as always, to a pipe; the supervisor reads it on a thread of
its own and writes one readable line per record (and a traceback under an error), so the
workers' hot path is the same whatever the format. A line that is not JSON is passed on
as it is.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime
from typing import Any

import msgspec

#: Fields a person does not read on every line: the trace ids (``--log-format json`` has
#: them), the worker's slot and pid, and that a line was printed.
_HIDDEN = frozenset(
    {
        "ts",
        "level",
        "msg",
        "trace_id",
        "span_id",
        "parent_span_id",
        "worker",
        "pid",
        "traceback",
        "stream",
    }
)
#: Fields the invocation line says in words of its own.
_INVOCATION = frozenset(
    {"function", "invocation_id", "outcome", "status", "method", "path", "duration_ms", "attempt"}
)
_LEVELS = {"debug": "DEBUG", "info": "INFO ", "warning": "WARN ", "error": "ERROR"}
_COLORS = {"debug": "2", "info": "32", "warning": "33", "error": "31;1"}
_decode = msgspec.json.Decoder().decode


def render(record: dict[str, Any], color: bool = False) -> str:
    """One record as a line (and its traceback, indented, under it)."""

    def paint(text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if color else text

    level = str(record.get("level", "info"))
    clock = _local_clock(str(record.get("ts", "")))
    head = (
        f"{paint(clock, '2')} {paint(_LEVELS.get(level, level.upper()), _COLORS.get(level, '0'))}"
    )
    msg = str(record.get("msg", ""))
    invocation = str(record.get("invocation_id", ""))[:8]
    if msg == "invocation" and "outcome" in record:
        body = str(record.get("function", "?"))
        if "method" in record:
            body += f"  {record['method']} {record.get('path', '')} → {record.get('status', '')}"
        body += f"  {record.get('outcome')} in {record.get('duration_ms', '?')} ms"
        if record.get("attempt", 1) != 1:
            body += f", attempt {record['attempt']}"
        skip = _INVOCATION
        where = invocation
    else:
        body = msg
        skip = frozenset({"function", "invocation_id"})
        where = f"{record.get('function', '')} {invocation}".strip()
    fields = "  ".join(
        f"{k}={_value(v)}" for k, v in record.items() if k not in _HIDDEN and k not in skip
    )
    line = head + " " + body
    if fields:
        line += "  " + paint(fields, "36")
    if where:
        line += "  " + paint(f"· {where}", "2")
    traceback = record.get("traceback")
    if isinstance(traceback, str) and traceback:
        line += "\n" + "\n".join("    " + t for t in traceback.rstrip("\n").splitlines())
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
        return value if value and " " not in value and "=" not in value else repr(value)
    return msgspec.json.encode(value).decode()


class ConsoleLog:
    """Reads JSON lines from ``read_fd`` (the write end is the processes' log fd) and
    writes them rendered to ``out_fd`` until every writer has closed the pipe."""

    def __init__(self, out_fd: int, color: bool) -> None:
        self._out = out_fd
        self._color = color
        self._read, self.write_fd = os.pipe()
        self._thread = threading.Thread(target=self._pump, name="hibana-console", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        rest = b""
        while True:
            try:
                data = os.read(self._read, 65536)
            except OSError:
                data = b""
            if not data:
                break
            *lines, rest = (rest + data).split(b"\n")
            if lines:
                self._write("".join(self._line(line) + "\n" for line in lines if line))
        if rest:
            self._write(self._line(rest) + "\n")
        os.close(self._read)

    def _line(self, line: bytes) -> str:
        try:
            record = _decode(line)
        except msgspec.DecodeError:
            return line.decode(errors="replace")
        if not isinstance(record, dict):
            return line.decode(errors="replace")
        return render(record, self._color)

    def _write(self, text: str) -> None:
        data = memoryview(text.encode())
        while data:
            try:
                data = data[os.write(self._out, data) :]
            except OSError:
                return  # the terminal went away: nothing sensible is left to do

    def close(self, timeout: float = 2.0) -> None:
        """Our end is closed; the lines the processes wrote last go out first."""
        os.close(self.write_fd)
        self._thread.join(timeout)
