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
)
FUNCTION_FIELDS = ("inflight", "invocations", "cold_starts", "last_cold_start_ms", "errors")
_W = {name: i for i, name in enumerate(WORKER_FIELDS)}
_F = {name: i for i, name in enumerate(FUNCTION_FIELDS)}


@dataclass(frozen=True, slots=True)
class Layout:
    slots: int
    functions: int

    @property
    def row(self) -> int:
        return len(WORKER_FIELDS) + len(FUNCTION_FIELDS) * self.functions

    @property
    def size(self) -> int:
        return max(8, self.slots * self.row * 8)


class Board:
    def __init__(self, fd: int, layout: Layout) -> None:
        self.fd = fd
        self.layout = layout
        self._map = mmap.mmap(fd, layout.size)
        self.values = memoryview(self._map).cast("d")

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

    def close(self) -> None:
        self.values.release()
        self._map.close()
        os.close(self.fd)


class WorkerRow:
    """One worker's row: the worker's own view, written on each invocation."""

    __slots__ = ("_base", "_fn_base", "_values")

    def __init__(self, board: Board, slot: int) -> None:
        self._values = board.values
        self._base = slot * board.layout.row
        self._fn_base = self._base + len(WORKER_FIELDS)

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

    def finished(self, fn: int, failed: bool = False) -> None:
        v, b = self._values, self._base
        f = self._fn_base + fn * len(FUNCTION_FIELDS)
        v[b + 1] -= 1
        v[b + 6] = time.monotonic()
        v[f] -= 1
        if failed:
            v[f + 4] += 1
