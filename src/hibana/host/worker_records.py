"""What the supervisor keeps of each worker: its record while it runs, the totals it
leaves behind when it exits, the log lines of the invocations a dead one took with it, and
the check that kills one whose watchdog has stopped.

All of it needs a worker's record, its zygote's board and what is passed in, nothing else
of the supervisor, so it lives apart from the loop that starts and retires workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from hibana.host.zygote_handle import Zygote
from hibana.telemetry.log_fields import timestamp
from hibana.telemetry.process_output import ProcessOutput
from hibana.telemetry.trace import TraceContext

#: Seconds a worker's watchdog may miss, past an invocation's deadline and grace, before
#: the supervisor kills the worker (its own watchdog could not).
UNRESPONSIVE_AFTER = 3.0


@dataclass
class WorkerRecord:
    zygote: Zygote
    slot: int
    started: float
    pid: int | None = None  # None until the zygote says it exists
    retiring: bool = False
    #: Its row of the permit table (-1: none was free).
    permit_row: int = -1
    #: Killed from here: it stopped answering with an invocation past its deadline.
    killed: bool = False


def signal_worker(pid: int, sig: int) -> None:
    """Send ``sig`` to ``pid``, which may have exited already."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def remember(past: dict[str, dict[str, float]], record: WorkerRecord, died: bool = False) -> None:
    """Fold an exited worker's counters into the per-function totals ``past`` before its
    row is reused; what a dead one was running failed with it."""
    board = record.zygote.board
    if board is None:
        return
    for i, fn in enumerate(record.zygote.functions):
        totals = past.setdefault(
            fn["name"], {"invocations": 0.0, "cold_starts": 0.0, "errors": 0.0}
        )
        totals["invocations"] += board.function_get(record.slot, i, "invocations")
        totals["errors"] += board.function_get(record.slot, i, "errors")
        if died:
            totals["errors"] += board.function_get(record.slot, i, "inflight")
        if board.function_get(record.slot, i, "cold_starts"):
            totals["cold_starts"] += board.function_get(record.slot, i, "cold_starts")
            ready = board.get(record.slot, "ready_at")
            if ready >= totals.get("cold_at", 0.0):
                totals["cold_at"] = ready
                totals["last_cold_start_ms"] = board.function_get(
                    record.slot, i, "last_cold_start_ms"
                )


def lost_line(
    output: ProcessOutput | None, record: WorkerRecord, how: str
) -> Callable[[str, int | None, str, bool, int, TraceContext, float], None]:
    """What writes the log line of each invocation a dead worker took with it: its
    worker wrote none, and the id its client got must be found in the log, with the
    function that was running (which may be what killed it) and how long it ran."""
    functions = record.zygote.functions

    def lost(
        invocation: str,
        status: int | None,
        error: str,
        ran: bool,
        column: int,
        trace: TraceContext,
        duration_ms: float,
    ) -> None:
        if output is not None:
            named = {"function": functions[column]["name"]} if column < len(functions) else {}
            output.emit(
                {
                    "ts": timestamp(),
                    "level": "error",
                    "msg": "invocation",
                    "invocation_id": invocation,
                    **named,
                    "trace_id": trace.trace_id,
                    "span_id": trace.span_id,
                    "duration_ms": duration_ms,
                    "outcome": "error" if ran else "cancelled",
                    # None: the response was begun, its status already sent by the worker
                    **({} if status is None else {"status": status}),
                    "error": error,
                    "worker": record.slot,
                    "pid": record.pid,
                    "worker_exit": how,
                }
            )

    return lost


class Unresponsive:
    """Kills a worker whose watchdog thread has stopped (``UNRESPONSIVE_AFTER``) while
    one of its invocations is past its deadline and grace: a sync function holding the
    GIL in C code (a runaway regex), or a worker stopped with SIGSTOP. It cannot enforce
    that deadline itself; its requests get their 502 as from any dead worker, and its
    permits go to the others."""

    def __init__(self, cancel_grace: float, report: Callable[[str], None]) -> None:
        self.cancel_grace = cancel_grace
        self.report = report
        #: When ``kill`` last looked, and since when it judges (after a gap of its own,
        #: from the end of it).
        self._looked_at = time.monotonic()
        self._judge_from = 0.0

    def kill(self, records: list[WorkerRecord]) -> None:
        """Look at every worker of ``records`` once; SIGKILL those found unresponsive."""
        now = time.monotonic()
        if now - self._looked_at > UNRESPONSIVE_AFTER:
            # this process was not running either (the whole host was stopped: docker
            # pause, Ctrl-Z): what a worker's watchdog missed meanwhile says nothing
            self._judge_from = now
        self._looked_at = now
        for r in records:
            board = r.zygote.board
            if r.pid is None or r.killed or board is None:
                continue
            watched = max(board.get(r.slot, "watched_at"), self._judge_from)
            if not watched or now - watched <= UNRESPONSIVE_AFTER:
                continue
            # what its watchdog last saw: the earliest deadline's grace end; and, for an
            # invocation that started after that look, the longest timeout of the
            # functions it runs (it started before the watchdog stopped, at the latest)
            overdue = board.get(r.slot, "overdue_at")
            longest = max(
                (
                    float(fn.get("timeout") or 0.0)
                    for i, fn in enumerate(r.zygote.functions)
                    if board.function_get(r.slot, i, "inflight") > 0
                ),
                default=None,
            )
            late = (overdue and now > overdue + UNRESPONSIVE_AFTER) or (
                longest is not None
                and now - watched > longest + self.cancel_grace + UNRESPONSIVE_AFTER
            )
            if late:
                r.killed = True
                self.report(
                    f"worker {r.slot} (pid {r.pid}) stopped responding for "
                    f"{now - watched:.1f}s with an invocation past its timeout and "
                    f"--cancel-grace (a function holding the GIL in C code, such as a "
                    f"runaway regex, or a stopped process); killing it"
                )
                signal_worker(r.pid, signal.SIGKILL)
