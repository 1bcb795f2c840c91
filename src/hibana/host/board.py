"""The board: per-worker and per-function counters in memory shared by the zygote's
workers and read by the supervisor (scaling, ``hibana status``) without a round trip.

One row per worker slot; each worker writes only its own row, from its event loop's
thread, so no lock is needed to count. Values are doubles in a memfd the zygote creates;
the supervisor maps the same file through ``/proc/<zygote>/fd/<n>``.

The permits of every function's ``max_concurrency`` are in a table of their own, which the
supervisor creates and every version of the app it runs shares (a reload's old and new
workers alike): a row per worker, a column per function with a limit, by name. Each
worker's row says how many of a function's permits it holds and since when its oldest
waiting invocation waits. Taking a permit reads every row under a record lock on the
function's byte of the file (the lock is dropped when its holder dies, so a dead worker
cannot hold it).
"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fcntl import LOCK_EX, LOCK_UN, lockf

WORKER_FIELDS = (
    "pid",
    "started_at",  # time.monotonic() when the worker was asked for
    "ready_at",  # ... and when it started serving
    "cold_start_ms",  # request waiting -> first invocation started, for the first invocation
    "last_active",  # time.monotonic() of the last invocation's end (or stream's step)
    "rss_mb",
    "stopped_at",  # time.monotonic() when it stopped accepting (retiring or draining)
    "watched_at",  # time.monotonic() of its watchdog thread's last round
    "overdue_at",  # ... and then, when its earliest deadline's grace ends (0: none runs)
)
FUNCTION_FIELDS = ("inflight", "invocations", "cold_starts", "last_cold_start_ms", "errors")
_W = {name: i for i, name in enumerate(WORKER_FIELDS)}
#: A worker's invocations in flight and in all: the sums of its functions' columns, so
#: an invocation counts in its function's cells alone (two fewer writes to the map).
_SUMMED = frozenset({"inflight", "invocations"})
_COLD_START_MS, _LAST_ACTIVE = _W["cold_start_ms"], _W["last_active"]
_F = {name: i for i, name in enumerate(FUNCTION_FIELDS)}
#: Values per function in a worker's row (counted on each invocation: a constant, not a call).
_PER_FN = len(FUNCTION_FIELDS)
_fromhex = bytes.fromhex  # looked up once: on the type, each call would bind it anew


#: Connection states in the connection table (one byte, then the invocation id's 16, then
#: its function's column in two, low byte first, then 1 if the request is a HEAD, whose
#: answer has no body): no invocation, one running, its response being written, one
#: waiting for a permit, and a request's body being read for a function (no invocation
#: yet: the id is a past one's). Before the table, a double per connection: the
#: time.monotonic() its invocation began at (its own array: one aligned store to write).
CONN_IDLE, CONN_BUSY, CONN_RESPONDING, CONN_WAITING, CONN_READING = 0, 1, 2, 3, 4
CONN_ENTRY = 20


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
    def began_size(self) -> int:
        return self.slots * self.connections * 8

    @property
    def size(self) -> int:
        table = self.slots * self.connections * CONN_ENTRY
        return max(8, self.counters_size + self.began_size + table)


class Board:
    def __init__(self, fd: int, layout: Layout) -> None:
        self.fd = fd
        self.layout = layout
        self._map = mmap.mmap(fd, layout.size)
        whole = memoryview(self._map)
        self.values = whole[: layout.counters_size].cast("d")
        began = layout.counters_size + layout.began_size
        #: Per worker slot and connection: when its invocation began (time.monotonic()).
        self.began = whole[layout.counters_size : began].cast("d")
        #: Per worker slot and connection: state byte + the running invocation's id.
        self.conns = whole[began:]

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
        if field in _SUMMED:
            fns = range(self.layout.functions)
            return sum(self.function_get(slot, fn, field) for fn in fns)
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
        count = self.layout.connections
        for i in range(slot * count, (slot + 1) * count):
            self.began[i] = 0.0

    def connection(self, slot: int, conn: int) -> tuple[int, str | None, int, bool, float]:
        """(state, invocation id, its function's column, whether its request is a HEAD,
        the time.monotonic() the invocation began at) of worker ``slot``'s connection
        ``conn``."""
        index = slot * self.layout.connections + conn
        at = index * CONN_ENTRY
        state = self.conns[at]
        ident = bytes(self.conns[at + 1 : at + 17]).hex()
        column = self.conns[at + 17] | self.conns[at + 18] << 8
        head = self.conns[at + 19] == 1
        running = state != CONN_IDLE and state != CONN_READING
        return state, ident if running else None, column, head, self.began[index]

    def close(self) -> None:
        self.values.release()
        self.began.release()
        self.conns.release()
        self._map.close()
        os.close(self.fd)


class WorkerRow:
    """One worker's row: the worker's own view, written on each invocation."""

    __slots__ = (
        "_base",
        "_fn_base",
        "_values",
        "_conns",
        "_conn_base",
        "_began",
        "_began_base",
        "connections",
    )

    def __init__(self, board: Board, slot: int) -> None:
        self._values = board.values
        self._base = slot * board.layout.row
        self._fn_base = self._base + len(WORKER_FIELDS)
        self._conns = board.conns
        self.connections = board.layout.connections
        self._conn_base = slot * board.layout.connections * CONN_ENTRY
        self._began = board.began
        self._began_base = slot * board.layout.connections

    def conn_busy(self, conn: int, invocation_id: str, column: int, began: float) -> None:
        """Connection ``conn`` runs ``invocation_id``, of the function in ``column``, begun
        at ``began`` (time.monotonic()): a 502 naming it if the worker dies, and a line
        naming both and how long it ran."""
        at = self._conn_base + conn * CONN_ENTRY
        conns = self._conns
        conns[at + 1 : at + 17] = _fromhex(invocation_id)
        conns[at + 17] = column & 0xFF
        conns[at + 18] = column >> 8
        self._began[self._began_base + conn] = began
        conns[at] = CONN_BUSY

    def conn_state(self, conn: int, state: int) -> None:
        self._conns[self._conn_base + conn * CONN_ENTRY] = state

    def conn_head(self, conn: int, head: bool) -> None:
        """Connection ``conn``'s request is a HEAD (or no longer is): the supervisor's
        answer for it, if the worker dies, has no body."""
        self._conns[self._conn_base + conn * CONN_ENTRY + 19] = 1 if head else 0

    def set(self, field: str, value: float) -> None:
        self._values[self._base + _W[field]] = value

    def started(self, fn: int, cold_start_ms: float | None) -> None:
        # no last_active: its readers (the scaler, idle_s) take a worker with an
        # invocation in flight as active, and the invocation's end writes it
        v, f = self._values, self._fn_base + fn * _PER_FN
        v[f] += 1  # inflight
        v[f + 1] += 1  # invocations
        if cold_start_ms is not None:
            v[self._base + _COLD_START_MS] = cold_start_ms
            v[f + 2] += 1
            v[f + 3] = cold_start_ms

    def hold(self, fn: int, count: int) -> None:
        """``count`` (1 or -1) more invocations of ``fn`` busy past their function's
        return (a streaming response): in flight, so the worker is not idle."""
        v = self._values
        v[self._base + _LAST_ACTIVE] = time.monotonic()
        v[self._fn_base + fn * _PER_FN] += count

    def failed(self, fn: int) -> None:
        self._values[self._fn_base + fn * _PER_FN + 4] += 1  # errors

    def finished(self, fn: int, failed: bool = False) -> None:
        v, f = self._values, self._fn_base + fn * _PER_FN
        v[self._base + _LAST_ACTIVE] = time.monotonic()
        v[f] -= 1
        if failed:
            v[f + 4] += 1


#: Rows of the permit table: workers alive at once, every version of the app together.
PERMIT_ROWS = 64
#: Its columns: functions with a max_concurrency, by name, over the host's life.
PERMIT_COLUMNS = 256
#: Cells per (row, column): permits held, and when the oldest waiter arrived (0: none).
_CELLS = 2
#: The limit in force of a function the serving version runs without a max_concurrency.
NO_LIMIT = 2**31


class PermitTable:
    """Every worker's permits of every function's ``max_concurrency``, shared by all the
    versions of the app the host runs. The supervisor creates it, hands out the rows and
    columns, and empties a dead worker's row."""

    def __init__(self, fd: int, rows: int = PERMIT_ROWS, columns: int = PERMIT_COLUMNS) -> None:
        self.fd = fd
        self.rows = rows
        self.columns = columns
        self._map = mmap.mmap(fd, _permit_bytes(rows, columns))
        cells = memoryview(self._map).cast("d")
        self.values = cells[: rows * columns * _CELLS]
        #: The limit in force for each column: the serving version's (0: none set yet).
        self.limits = cells[rows * columns * _CELLS :]
        self._cells = cells

    @classmethod
    def create(cls) -> PermitTable:
        fd = os.memfd_create("hibana-permits", 0)
        os.ftruncate(fd, _permit_bytes(PERMIT_ROWS, PERMIT_COLUMNS))
        return cls(fd)

    def enforce(self, column: int, limit: int | None) -> None:
        """Every version's workers hold ``column``'s function to ``limit`` from now on
        (after a reload, the new version's: the old one's waiters are let in under it;
        None: the new version has no limit, so theirs are let in at once)."""
        self.limits[column] = NO_LIMIT if limit is None else limit

    def row(self, row: int, columns: Sequence[int]) -> PermitRow:
        """Worker ``row``'s view; ``columns``: the table's column of each of its app's
        functions (by the app's order), -1 for one without a limit."""
        return PermitRow(self, row, columns)

    def waiting_since(self, row: int, column: int) -> float:
        return float(self.values[(row * self.columns + column) * _CELLS + 1])

    def empty(self, row: int) -> None:
        """Worker ``row`` is dead: what it held and waited for goes back to the others."""
        start = row * self.columns * _CELLS
        for i in range(start, start + self.columns * _CELLS):
            self.values[i] = 0.0

    def close(self) -> None:
        self.values.release()
        self.limits.release()
        self._cells.release()
        self._map.close()
        os.close(self.fd)


def _permit_bytes(rows: int, columns: int) -> int:
    return (rows * columns * _CELLS + columns) * 8


class PermitRow:
    """One worker's row of the permit table: the dispatcher's ``Permits``, by the worker's
    own function columns.

    A worker's own waiting cell always holds its oldest waiter's arrival (or 0), so
    comparing a ticket of its own with every row's cell skips its own row by itself."""

    __slots__ = ("_values", "_limits", "_fd", "_stride", "_own", "_columns")

    def __init__(self, table: PermitTable, row: int, columns: Sequence[int]) -> None:
        self._values = table.values
        self._limits = table.limits
        self._fd = table.fd
        self._stride = table.columns * _CELLS
        self._own = row * self._stride
        self._columns = list(columns)

    def shares(self, fn: int) -> bool:
        """Function ``fn`` has a column: its limit holds across the host."""
        return 0 <= fn < len(self._columns) and self._columns[fn] >= 0

    def limit(self, fn: int, own: int) -> int:
        """``fn``'s limit in force: the serving version's, or ``own`` (this worker's
        version's) if the supervisor has set none."""
        return int(self._limits[self._columns[fn]]) or own

    def admit(self, fn: int, limit: int, ticket: float, horizon: float) -> bool:
        """Take one of ``fn``'s permits for an invocation that arrived at ``ticket``
        (time.monotonic()): there must be one free across all workers under the limit in
        force (``limit``: this worker's, if none is), and no other worker's invocation
        waiting since before ``ticket`` (arrival order holds host-wide). Waits older than
        ``horizon`` are ignored: no one waits that long."""
        column = self._columns[fn]
        v, first = self._values, column * _CELLS
        limit = int(self._limits[column]) or limit
        lockf(self._fd, LOCK_EX, 1, column)
        try:
            if sum(v[first :: self._stride]) >= limit or self._before(first + 1, ticket, horizon):
                return False
            v[self._own + first] += 1
            return True
        finally:
            lockf(self._fd, LOCK_UN, 1, column)

    def give_back(self, fn: int) -> None:
        """A permit of ``fn`` this worker held is free."""
        at = self._own + self._columns[fn] * _CELLS
        if self._values[at] > 0:  # 0: the supervisor emptied the row (its zygote died)
            self._values[at] -= 1

    def waiting(self, fn: int, since: float) -> None:
        """This worker's oldest invocation of ``fn`` waiting for a permit arrived at
        ``since`` (0: none waits)."""
        self._values[self._own + self._columns[fn] * _CELLS + 1] = since

    def passes_on(self, fn: int, own: int, ticket: float, horizon: float) -> bool:
        """A permit of ``fn`` this worker gives up is not for its own oldest waiter (which
        arrived at ``ticket``): another worker's invocation waits since before it, or the
        limit in force (``own``: this worker's, if none is) was lowered below what is held."""
        column = self._columns[fn]
        first = column * _CELLS
        limit = int(self._limits[column]) or own
        if sum(self._values[first :: self._stride]) > limit:
            return True
        return self._before(first + 1, ticket, horizon)

    def _before(self, cell: int, ticket: float, horizon: float) -> bool:
        waits = self._values[cell :: self._stride]
        if max(waits) <= horizon:
            return False  # no one waits (0), or not for long: the common case, in C
        return any(since and horizon < since < ticket for since in waits)

    def permits_held(self, fn: int) -> int:
        """``fn``'s permits all workers hold (a snapshot, read without the lock)."""
        return int(sum(self._values[self._columns[fn] * _CELLS :: self._stride]))
