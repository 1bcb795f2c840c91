"""Answering for a worker that died: requests it held get a 502 naming their invocation;
and for the requests no worker will take (see ``refuse_backlog``).

A connection's socket belongs to the worker that accepted it; when that worker dies
(``kill -9``, a segfault, the kernel's OOM killer) the kernel closes the socket and the
client sees a reset, with nothing to say which invocation was lost. So each worker hands
the supervisor a duplicate of every connection it accepts (``SCM_RIGHTS`` over a datagram
socket) and says when it has closed it; in between, the board's connection table says
whether the connection is running an invocation and which. When a worker dies, the
supervisor writes ``502`` with that invocation's id on each connection that was running
one, ``503`` on each whose request's body was being read for a function (not run yet),
and closes the rest.

Per connection that is one ``sendmsg`` at accept and one ``send`` at close; per request,
two writes to shared memory (three for one with a body, marked while it is read). A
handoff that cannot be sent at once (the supervisor is behind) is skipped for an open, so
the worker never waits, and retried for a close, so the supervisor's duplicate never
keeps a connection open that the worker has closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from http import HTTPStatus

import msgspec

from hibana.host.board import CONN_BUSY, CONN_READING, CONN_RESPONDING, CONN_WAITING, Board
from hibana.host.http_syntax import date_line
from hibana.telemetry.log_fields import millis
from hibana.telemetry.trace import TraceContext, continue_or_start

_MESSAGE = struct.Struct("!ciI")  # b"o"pen / b"c"lose, worker pid, connection slot
#: How long ``refuse_backlog`` waits for the requests of the connections it answers.
REQUEST_WAIT = 0.2


class Handoff:
    """The worker's end: connection slots, and the messages about them."""

    def __init__(self, sock: socket.socket, connections: int) -> None:
        self.sock = sock
        sock.setblocking(False)
        self.pid = os.getpid()
        self._free = list(range(connections - 1, -1, -1))
        self._pending: list[bytes] = []
        self._retry: asyncio.TimerHandle | None = None

    def opened(self, fd: int) -> int | None:
        """A connection slot for a new connection, its duplicate handed over; None when
        none is free or the supervisor is behind (that connection just goes without)."""
        if not self._free:
            return None
        conn = self._free.pop()
        try:
            socket.send_fds(self.sock, [_MESSAGE.pack(b"o", self.pid, conn)], [fd])
        except OSError:
            self._free.append(conn)
            return None
        return conn

    def closed(self, conn: int, free: bool = True) -> None:
        """Connection slot ``conn``'s connection is closed: the supervisor drops its
        duplicate. ``free=False``: the slot is given to no other until ``free(conn)``."""
        if free:
            self._free.append(conn)
        self._send(_MESSAGE.pack(b"c", self.pid, conn))

    def free(self, conn: int) -> None:
        self._free.append(conn)

    def _send(self, message: bytes) -> None:
        if self._pending:
            self._pending.append(message)
            return
        try:
            self.sock.send(message)
        except (BlockingIOError, InterruptedError):
            self._pending.append(message)
            self._schedule()
        except OSError:
            pass  # the supervisor is gone; so are its duplicates

    def _schedule(self) -> None:
        if self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(0.01, self._flush)

    def _flush(self) -> None:
        self._retry = None
        while self._pending:
            try:
                self.sock.send(self._pending[0])
            except (BlockingIOError, InterruptedError):
                self._schedule()
                return
            except OSError:
                self._pending.clear()
                return
            self._pending.pop(0)


class HeldConnections:
    """The supervisor's end: the duplicates, by (worker pid, connection slot)."""

    def __init__(self) -> None:
        self.sock, self.worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.worker_end.set_inheritable(True)
        # room for bursts of accepts while the supervisor is busy elsewhere
        for s in (self.sock, self.worker_end):
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.held: dict[tuple[int, int], int] = {}

    def receive(self) -> None:
        """Take every message waiting."""
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, _MESSAGE.size, 1)
            except (BlockingIOError, InterruptedError):
                return
            if len(data) != _MESSAGE.size:
                for fd in fds:
                    os.close(fd)
                continue
            kind, pid, conn = _MESSAGE.unpack(data)
            old = self.held.pop((pid, conn), None)
            if old is not None:
                os.close(old)
            if kind == b"o" and fds:
                self.held[(pid, conn)] = fds[0]
                for extra in fds[1:]:
                    os.close(extra)
            else:
                for fd in fds:
                    os.close(fd)

    def worker_died(
        self,
        pid: int,
        slot: int,
        board: Board | None,
        report: Callable[[str], None],
        stopped: bool = False,
        lost: Callable[[str, int | None, str, bool, int, TraceContext, float], None] | None = None,
    ) -> int:
        """Answer 502 on the connections of dead worker ``pid`` that were running an
        invocation (503 if the host ``stopped`` it: a second signal), 503 on those whose
        invocation had not started (it waited for a permit, or the request's body was
        still being read); close them all. ``lost`` is
        told each such invocation (its id, status, error, whether it ran, its function's
        column, the trace its answer names and the milliseconds since it began), answered
        or not (its client may have gone), and each whose response was being sent (cut
        short: no status of the supervisor's). Returns how many were answered."""
        self.receive()  # its last words: connections it opened or closed just before
        ran = waited = read = cut = 0
        for key in [k for k in self.held if k[0] == pid]:
            fd = self.held.pop(key)
            state, invocation, column, head, began = (
                board.connection(slot, key[1]) if board is not None else (0, None, 0, False, 0)
            )
            if state == CONN_READING:
                read += _answer(fd, raw_answer(503, _unread(stopped), retry_after=1), head)
            elif invocation is not None and state in (CONN_BUSY, CONN_WAITING):
                status, error = _lost(invocation, stopped, ran=state == CONN_BUSY)
                # the request's own traceparent went to the worker (it read the head
                # from the socket; the board holds no trace): a trace of its own
                trace = continue_or_start(None)
                written = _answer(fd, raw_answer(status, error, invocation, trace=trace), head)
                if state == CONN_BUSY:
                    ran += written
                else:
                    waited += written
                if lost is not None:
                    took = millis(time.monotonic() - began)
                    lost(invocation, status, error, state == CONN_BUSY, column, trace, took)
            elif invocation is not None and state == CONN_RESPONDING and lost is not None:
                # its status line and part of its body went out: nothing can be answered,
                # but the cut-short response is an invocation its worker wrote no line for
                error = (
                    f"worker died while sending invocation {invocation}'s response: "
                    "its client got the response cut short"
                )
                took = millis(time.monotonic() - began)
                lost(invocation, None, error, True, column, continue_or_start(None), took)
                cut += 1
            os.close(fd)
        if ran or waited or read:
            how = [f"{ran} with {'503 (stopped)' if stopped else '502'}"] if ran else []
            if waited:
                how.append(f"{waited} with 503 (not run: it waited for a permit)")
            if read:
                how.append(f"{read} with 503 (not run: its body was being read)")
            report(
                f"answered {ran + waited + read} request(s) of the dead worker {slot} "
                f"(pid {pid}): " + ", ".join(how)
            )
        if cut:
            report(
                f"the dead worker {slot} (pid {pid}) was sending {cut} response(s): "
                "cut short, their clients got part of them"
            )
        return ran + waited + read

    def worker_exited(self, pid: int) -> None:
        """A worker that stopped on its own closed its connections: drop what is left."""
        self.receive()
        for key in [k for k in self.held if k[0] == pid]:
            os.close(self.held.pop(key))

    def close(self) -> None:
        for fd in self.held.values():
            os.close(fd)
        self.held.clear()
        self.sock.close()
        self.worker_end.close()


def _lost(invocation: str, stopped: bool, ran: bool) -> tuple[int, str]:
    """The status and error of an invocation whose worker is gone: 502 (it died), or 503
    (the host was stopped at once, or the invocation never started)."""
    if not ran:
        what = (
            "the host was stopped at once (a second signal)"
            if stopped
            else "the worker holding this request died"
        )
        return 503, (
            f"{what} while it waited for a max_concurrency permit; the function was not "
            "run: it is safe to send it again"
        )
    what = (
        "the host was stopped at once (a second signal) before this invocation finished"
        if stopped
        else "the worker running this invocation died"
    )
    return (
        503 if stopped else 502
    ), f"{what}; it may or may not have completed: retry if it is safe to"


def raw_answer(
    status: int,
    error: str,
    invocation: str | None = None,
    retry_after: int = 1,
    trace: TraceContext | None = None,
) -> bytes:
    """A whole response the supervisor writes itself, as a worker writes its own (less
    the ``date``, which ``_dated`` adds as it is sent): ``{"error": ...}`` and the
    invocation's id and trace if there is one, closing the connection; a 503 says when to
    retry."""
    fields = {"error": error}
    head = [b"HTTP/1.1 %d %s" % (status, HTTPStatus(status).phrase.encode())]
    if invocation is not None:
        fields["invocation_id"] = invocation
        head.append(b"x-invocation-id: " + invocation.encode())
    if trace is not None:
        head.append(b"traceparent: " + trace.traceparent.encode())
    if status == 503:
        head.append(b"retry-after: %d" % retry_after)
    body = msgspec.json.encode(fields)
    head += [
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        b"connection: close",
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _unread(stopped: bool) -> str:
    """The error of a request whose worker is gone while it read the request's body."""
    what = "the host was stopped at once (a second signal)" if stopped else "the worker died"
    return (
        f"{what} while it read this request's body; the function was not run: it is safe "
        "to send it again"
    )


def _dated(answer: bytes) -> bytes:
    """``answer`` (a ``raw_answer``) with the ``date`` header of now, as it is sent: one
    answer may be written for minutes (a backlog refused while an app does not load)."""
    return _with_line(answer, date_line())


def _bodiless(answer: bytes) -> bytes:
    """``answer`` (a ``raw_answer``) as a HEAD request gets it: its head alone, the
    length of its body said (RFC 9110 9.3.2)."""
    return answer[: answer.index(b"\r\n\r\n") + 4]


def _answer(fd: int, answer: bytes, head: bool) -> int:
    """Write ``answer`` (without its body to a ``head`` request) on the connection ``fd``
    of a worker that is gone, and close it for reading and writing: 1 if written. What
    the client sent that is still unread (a body being read) is read first: a socket
    closed with unread bytes is reset, and the client may lose the answer."""
    answer = _dated(_bodiless(answer) if head else answer)
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.setblocking(False)
            with contextlib.suppress(OSError):  # BlockingIOError: nothing left
                for _ in range(16):
                    if not sock.recv(65536):
                        break
            sock.send(answer)
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        return 0
    return 1


def refuse_backlog(listening: socket.socket, answer: bytes) -> int:
    """Accept every connection waiting on ``listening`` (non-blocking) and write
    ``answer`` (a ``raw_answer`` without a trace) on each: what no worker will take (they
    all die as they start, or the host stops) gets an answer, not a reset. Returns how
    many were accepted.

    Their requests are waited for together, up to ``REQUEST_WAIT`` seconds (a client
    writes it just after connecting, often after the accept): read, the close is clean
    (a socket closed with bytes unread is reset, and the client may lose the answer), a
    HEAD gets its answer without the body (RFC 9110 9.3.2), and each answer's
    traceparent continues the request's trace, as a worker's answer does."""
    accepted: dict[int, socket.socket] = {}
    while True:
        try:
            conn, _ = listening.accept()
        except OSError:  # none left (BlockingIOError), a worker took it, or it went
            break
        conn.setblocking(False)
        accepted[conn.fileno()] = conn
    asked: dict[int, bytes] = {}
    poller = select.poll()
    for fd in accepted:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + REQUEST_WAIT
    while len(asked) < len(accepted) and (left := deadline - time.monotonic()) > 0:
        for fd, _ in poller.poll(left * 1000):
            poller.unregister(fd)
            asked[fd] = b""
            with contextlib.suppress(OSError):
                asked[fd] = accepted[fd].recv(65536)
    answer, bodiless = _dated(answer), _dated(_bodiless(answer))
    for fd, conn in accepted.items():
        request = asked.get(fd, b"")
        sent = bodiless if request.startswith(b"HEAD ") else answer
        with conn, contextlib.suppress(OSError):
            conn.send(_traced(sent, continue_or_start(_traceparent(request))))
            conn.shutdown(socket.SHUT_WR)
    return len(accepted)


def _traceparent(request: bytes) -> str | None:
    """The traceparent of ``request`` (what was read of it): None if its head has none,
    or two (no one trace to continue), as a worker takes it."""
    found = None
    for line in request.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.lower() == b"traceparent":
            if found is not None:
                return None
            found = value.strip(b" \t").decode("latin-1")
    return found


def _traced(answer: bytes, trace: TraceContext) -> bytes:
    """``answer`` (a ``raw_answer``) naming ``trace``."""
    return _with_line(answer, b"traceparent: %s\r\n" % trace.traceparent.encode())


def _with_line(answer: bytes, line: bytes) -> bytes:
    """``answer`` with the header ``line`` (its CRLF included) after its status line."""
    at = answer.index(b"\r\n") + 2
    return answer[:at] + line + answer[at:]
