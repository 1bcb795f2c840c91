"""Where a process's JSON log lines go (stdout), one object a line.

Lines are buffered and written together once per loop iteration, so a busy worker makes
one ``write`` for many invocations. Each write is a whole number of lines of at most
``PIPE_BUF`` bytes where it can be (a longer line goes alone). When stdout is a pipe or a
socket that other processes of the host write to as well, each flush holds a lock on it
(``lockf``: two system calls a flush): a pipe whose reader falls behind takes a long
write in parts, and without the lock another process's line could land between them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import os
import select
import stat
import threading
import weakref
from typing import Any

import msgspec

from hibana.telemetry.log_fields import LEVELS, Level, as_dict, encode, escaped
from hibana.telemetry.long_lines import LONGEST_LINE, cut_to_fit
from hibana.telemetry.redaction import bare_able, quoted, written_forms

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
        self.min_level = LEVELS[level]
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
        forms code writes it in (``repr``, a bytes repr, JSON: see ``written_forms``)."""
        forms = {form for v in values if v for form in written_forms(v)}
        # Longest first, so a secret that contains another is replaced whole.
        self._values = tuple(sorted(forms, key=len, reverse=True))
        self._redact = tuple(encode(form)[1:-1] for form in self._values)
        #: Those a number, true, false or null can hold: found outside a string too, where
        #: ``[REDACTED]`` would leave the line no JSON; such values go as strings (``emit``).
        self._bare = tuple(form for form in self._redact if bare_able(form))

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
            record = quoted(as_dict(record), self._bare)
        try:
            line = encode(record)
        except Exception:  # a lone surrogate, a repr that raises: logging never fails a caller
            line = escaped(as_dict(record))
        if len(line) > LONGEST_LINE:  # a shipper would drop or split it
            line = cut_to_fit(as_dict(record), LONGEST_LINE, self.scrub, self.secret_begun)
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


_thread = threading.get_ident


def ready(fd: int, event: int, timeout: float | None = None) -> bool:
    """``fd`` is ready for ``event`` (``select.POLLIN``: to read, ``POLLOUT``: to write)
    within ``timeout`` seconds (None: once it is). poll, not select: a raised limit on
    open files gives numbers past 1024, which select cannot take."""
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(None if timeout is None else timeout * 1000))
