"""File descriptors 1 and 2 of the processes the host starts, read through pipes: what
is written there without passing through ``sys.stdout`` (a subprocess, a C library)
becomes JSON lines, or goes to the host's stderr redacted."""

from __future__ import annotations

import contextlib
import os
import select
import threading
from collections.abc import Callable
from typing import Any

from hibana.telemetry.log_sink import LogSink, ready
from hibana.telemetry.logs import Logger
from hibana.telemetry.printed import LONGEST_PIECE, Utf8Decoder

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
        self._pipe = LinePipe(self._take, "hibana-output", LONGEST_PIECE)
        self.write_fd = self._pipe.write_fd
        self._errors_fd = errors_fd
        #: The end of what came on fd 2 without its newline yet, not written: a secret
        #: may go on in what comes next (see ``_take_errors``).
        self._held = ""
        #: The same for fd 1, and the bytes of a character that a piece's end cut.
        self._held_out = ""
        self._decode = Utf8Decoder("replace").decode
        self._errors = LinePipe(
            self._take_errors, "hibana-errors", LONGEST_PIECE, idle=_ERRORS_IDLE
        )
        self.errors_fd = self._errors.write_fd

    def redact(self, values: list[str]) -> None:
        """Never write these secret values (see ``LogSink.redact``)."""
        self._sink.redact(values)

    def emit(self, record: dict[str, Any]) -> None:
        """A JSON line of the host's own, among the processes' (see ``LogSink.emit``)."""
        self._sink.emit(record)

    def _take(self, lines: list[bytes]) -> None:
        """Each line as a JSON line. A piece of a line longer than ``LONGEST_PIECE`` goes as a
        line of its own, but for a character cut at its end and as many characters as the
        longest secret has but one: those go at the start of the next piece, so a secret
        across the cut is whole, and replaced, in that one (as ``_take_errors`` does)."""
        for line in lines:
            piece = not line.endswith(b"\n") and len(line) > LONGEST_PIECE
            text = self._held_out + self._decode(line, not piece)
            self._held_out = ""
            keep = self._sink.longest_secret() - 1
            if piece and keep > 0:
                text, self._held_out = text[:-keep], text[-keep:]
            if text:
                self._log.info(text.removesuffix("\n").removesuffix("\r"))

    def _take_errors(self, lines: list[bytes]) -> None:
        """Write what came, redacted. A piece of a line longer than ``LONGEST_PIECE`` keeps
        back as many characters as the longest secret has but one: a secret that starts
        in it and goes on in the next piece is then whole, and replaced, in that one."""
        text = self._held + "".join(line.decode("utf-8", "surrogateescape") for line in lines)
        text = self._sink.scrub(text)
        self._held = ""
        longest = self._sink.longest_secret()
        if not text.endswith("\n") and longest > 1 and len(lines[-1]) > LONGEST_PIECE:
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
