"""The board: per-worker and per-function counters in memory shared by the zygote's
workers and read by the supervisor (scaling, ``hibana status``) without a round trip.

One row per worker slot; each worker writes only its own row, from its event loop's
thread, so no lock is needed. Values are doubles in a memfd the zygote creates; the
supervisor maps the same file through ``/proc/<zygote>/fd/<n>``.
"""

from __future__ import annotations

import mmap
import os
import time
from dataclasses import dataclass

WORKER_FIELDS = (
    "pid",
    "inflight",
    "invocations",
    "started_at",  # time.monotonic() when the worker was asked for
    "ready_at",  # ... and when it started serving
    "cold_start_ms",  # request waiting -> first invocation started, for the first invocation
    "last_active",  # time.monotonic() of the last invocation start or end
    "rss_mb",
    "stopped_at",  # time.monotonic() when it stopped accepting (retiring or draining)
)
FUNCTION_FIELDS = ("inflight", "invocations", "cold_starts", "last_cold_start_ms", "errors")
_W = {name: i for i, name in enumerate(WORKER_FIELDS)}
_F = {name: i for i, name in enumerate(FUNCTION_FIELDS)}


#: Connection states in the connection table (one byte, then the invocation id's 16).
CONN_IDLE, CONN_BUSY, CONN_RESPONDING = 0, 1, 2
CONN_ENTRY = 17


@dataclass(frozen=True, slots=True)
class Layout:
    slots: int
    functions: int
    #: Connections per worker whose request the supervisor can answer if the worker dies.
    connections: int = 1024

    @property
    def row(self) -> int:
        return len(WORKER_FIELDS) + len(FUNCTION_FIELDS) * self.functions

    @property
    def counters_size(self) -> int:
        return self.slots * self.row * 8

    @property
    def size(self) -> int:
        return max(8, self.counters_size + self.slots * self.connections * CONN_ENTRY)


class Board:
    def __init__(self, fd: int, layout: Layout) -> None:
        self.fd = fd
        self.layout = layout
        self._map = mmap.mmap(fd, layout.size)
        whole = memoryview(self._map)
        self.values = whole[: layout.counters_size].cast("d")
        #: Per worker slot and connection: state byte + the running invocation's id.
        self.conns = whole[layout.counters_size :]

    @classmethod
    def create(cls, layout: Layout) -> Board:
        fd = os.memfd_create("hibana-board", 0)
        os.ftruncate(fd, layout.size)
        return cls(fd, layout)

    @classmethod
    def open(cls, pid: int, fd: int, layout: Layout) -> Board:
        """The board another process (the zygote ``pid``) created."""
        return cls(os.open(f"/proc/{pid}/fd/{fd}", os.O_RDWR), layout)

    def worker(self, slot: int) -> WorkerRow:
        return WorkerRow(self, slot)

    def get(self, slot: int, field: str) -> float:
        return float(self.values[slot * self.layout.row + _W[field]])

    def function_get(self, slot: int, fn: int, field: str) -> float:
        base = slot * self.layout.row + len(WORKER_FIELDS) + fn * len(FUNCTION_FIELDS)
        return float(self.values[base + _F[field]])

    def clear(self, slot: int) -> None:
        start = slot * self.layout.row
        for i in range(start, start + self.layout.row):
            self.values[i] = 0.0
        size = self.layout.connections * CONN_ENTRY
        self.conns[slot * size : (slot + 1) * size] = bytes(size)

    def connection(self, slot: int, conn: int) -> tuple[int, str | None]:
        """(state, invocation id) of worker ``slot``'s connection ``conn``."""
        at = (slot * self.layout.connections + conn) * CONN_ENTRY
        state = self.conns[at]
        ident = bytes(self.conns[at + 1 : at + CONN_ENTRY]).hex()
        return state, ident if state != CONN_IDLE else None

    def close(self) -> None:
        self.values.release()
        self.conns.release()
        self._map.close()
        os.close(self.fd)


class WorkerRow:
    """One worker's row: the worker's own view, written on each invocation."""

    __slots__ = ("_base", "_fn_base", "_values", "_conns", "_conn_base", "connections")

    def __init__(self, board: Board, slot: int) -> None:
        self._values = board.values
        self._base = slot * board.layout.row
        self._fn_base = self._base + len(WORKER_FIELDS)
        self._conns = board.conns
        self.connections = board.layout.connections
        self._conn_base = slot * board.layout.connections * CONN_ENTRY

    def conn_busy(self, conn: int, invocation_id: str) -> None:
        """Connection ``conn`` runs ``invocation_id``: a 502 naming it if the worker dies."""
        at = self._conn_base + conn * CONN_ENTRY
        self._conns[at + 1 : at + CONN_ENTRY] = bytes.fromhex(invocation_id)
        self._conns[at] = CONN_BUSY

    def conn_state(self, conn: int, state: int) -> None:
        self._conns[self._conn_base + conn * CONN_ENTRY] = state

    def set(self, field: str, value: float) -> None:
        self._values[self._base + _W[field]] = value

    def started(self, fn: int, cold_start_ms: float | None) -> None:
        v, b, f = self._values, self._base, self._fn_base + fn * len(FUNCTION_FIELDS)
        v[b + 1] += 1  # inflight
        v[b + 2] += 1  # invocations
        v[b + 6] = time.monotonic()
        v[f] += 1
        v[f + 1] += 1
        if cold_start_ms is not None:
            v[b + 5] = cold_start_ms
            v[f + 2] += 1
            v[f + 3] = cold_start_ms

    def hold(self, fn: int, count: int) -> None:
        """``count`` (1 or -1) more invocations of ``fn`` busy past their function's
        return (a streaming response): in flight, so the worker is not idle."""
        v, b = self._values, self._base
        v[b + 1] += count
        v[b + 6] = time.monotonic()
        v[self._fn_base + fn * len(FUNCTION_FIELDS)] += count

    def failed(self, fn: int) -> None:
        self._values[self._fn_base + fn * len(FUNCTION_FIELDS) + 4] += 1  # errors

    def finished(self, fn: int, failed: bool = False) -> None:
        v, b = self._values, self._base
        f = self._fn_base + fn * len(FUNCTION_FIELDS)
        v[b + 1] -= 1
        v[b + 6] = time.monotonic()
        v[f] -= 1
        if failed:
            v[f + 4] += 1
