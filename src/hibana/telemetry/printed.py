"""``sys.stdout``, ``sys.stderr`` and a WSGI app's ``wsgi.errors`` in the host's
processes: what is printed becomes log lines of the invocation that printed it; what goes
to stderr has the granted secrets' values redacted."""

from __future__ import annotations

import codecs
import io
import sys
import threading
from typing import IO, Any

from hibana.telemetry.log_sink import LogSink
from hibana.telemetry.logs import Logger, current_logger

#: The longest unfinished line held, in characters printed (``PrintedLines``) or bytes
#: written to fd 1 and 2 (``ProcessOutput``): past it, what is held goes out as a line of
#: its own. Output need not have newlines (``print(".", end="")`` for ever, a progress
#: bar); held whole, it would take a worker's memory with it.
LONGEST_PIECE = 64 * 1024


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
    ``flush()`` is called, when its thread prints for another invocation, at
    ``flush_all()`` (the process ends), or in pieces: what it holds once that is longer
    than ``LONGEST_PIECE`` characters, as more comes. Threads printing at once do not
    mix."""

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
            if len(line.text) > LONGEST_PIECE:
                # a line that goes on and on (``print(".", end="")`` in a loop): what it
                # has goes out as a piece; one long write and its newline stay one line
                _out_but_begun(line)
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
        if line is not None and line.text:
            _out_but_begun(line)

    def flush_all(self) -> None:
        """Write every thread's unfinished line, also a thread's that has ended (the
        process ends)."""
        for line in list(self._unfinished):
            line.out()


def _out_but_begun(line: _Unfinished) -> None:
    """Write ``line``'s text but for an end that may be the start of a secret: that waits
    for what comes next, and is replaced whole with it."""
    begun = line.log._sink.secret_begun(line.text)
    if not begun:
        line.out()
    elif begun < len(line.text):
        text, line.text = line.text[:-begun], line.text[-begun:]
        line.log.info(text, stream="stdout")


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
            # a line ended by \r\n is its text, as a printed one (PrintedLines)
            self._log.error(line.removesuffix("\r"), stream="wsgi.errors")
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
            decoder = self._local.decoder = Utf8Decoder("replace")
        view = memoryview(data)
        self._text.write(decoder.decode(view))
        return view.nbytes

    def flush(self) -> None:
        decoder = getattr(self._local, "decoder", None)
        if decoder is not None:
            self._text.write(decoder.decode(b"", True))  # a character never finished
        self._text.flush()


Utf8Decoder = codecs.getincrementaldecoder("utf-8")
