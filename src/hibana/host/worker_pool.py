"""The supervisor's workers: how many run (one scaling cycle: the scaler's decision
applied, at the pace ``tick_interval`` sets), starting them in free slots, retiring idle
ones, and what a zygote tells of them (a worker forked, a worker exited, the zygote
itself died), with the 502s for the requests a dead worker held.

These are steps the supervisor's loops take, not loops of their own, so they ask the
supervisor for what they use through ``PoolHost``, as ``reload`` does through
``ReloadingHost``.
"""

from __future__ import annotations

import selectors
import signal
import socket
import time
from typing import Any, Protocol

from hibana.host.board import PermitTable
from hibana.host.concurrency_limits import ConcurrencyLimits
from hibana.host.control import Spawn
from hibana.host.handoff import HeldConnections, raw_answer, refuse_backlog
from hibana.host.reload import ReloadingHost, reap_retired, replace_zygote
from hibana.host.scaling import WorkerView
from hibana.host.store_duties import StoreDuties
from hibana.host.worker_records import (
    Unresponsive,
    WorkerRecord,
    lost_line,
    remember,
    signal_worker,
)
from hibana.host.zygote_handle import START_CRASHES, Zygote, exit_reason
from hibana.telemetry.process_output import ProcessOutput

#: A worker that dies sooner than this after starting is restarted after a pause, not at
#: once; so is one that dies before it serves, the pause doubling with each in a row ...
CRASH_LOOP_WINDOW = 1.0
#: ... up to this: under START_CRASHES_HELD, so requests that wait meanwhile get their
#: 503, and a cause that has gone (a database back up) is seen this soon at most.
CRASH_PAUSE_MAX = 8.0
#: How often the scaler looks at the board (a waiting connection wakes it at once).
TICK = 0.05
#: How often when there is nothing for the scaler to decide (see tick_interval).
IDLE_TICK = 1.0
#: How often while the fewest workers allowed are all idle: a burst of load adds workers
#: this much later at most.
QUIET_TICK = 0.25


class PoolHost(ReloadingHost, Protocol):
    """What the workers' steps ask of the supervisor (a reload's list, and more)."""

    stopping: bool
    sock: socket.socket | None
    permits: PermitTable
    limits: ConcurrencyLimits
    #: Duplicates of the workers' connections, to answer 502 for a worker that dies.
    connections: HeldConnections
    #: Per-function totals of workers that have exited.
    past: dict[str, dict[str, float]]
    unresponsive: Unresponsive
    #: A new version of the app is importing: a dead zygote is replaced after it.
    importing: bool
    #: No worker is started before this (``time.monotonic()``): a crash loop's pause.
    hold_until: float
    #: When a connection was first seen waiting with no worker to take it.
    waiting_since: float | None
    #: The last tick found the fewest workers allowed, all idle (see QUIET_TICK).
    quiet: bool

    @property
    def sel(self) -> selectors.BaseSelector: ...
    @property
    def duties(self) -> StoreDuties | None: ...
    @property
    def output(self) -> ProcessOutput | None: ...
    def connection_waiting(self) -> bool: ...
    def watch_socket(self, on: bool) -> None: ...


def tick_interval(host: PoolHost) -> float:
    """TICK while the scaler has something to watch; IDLE_TICK when nothing can
    change but by an event that wakes the loop (a connection or a queued message
    with no worker to take it, a worker's exit): no worker at all, or a fixed number
    of them all running."""
    if host.waiting_since is not None or time.monotonic() < host.hold_until:
        return TICK
    if not host.records:
        return IDLE_TICK
    zygote = host.zygote
    scaling = zygote.scaling if zygote is not None else None
    fixed = scaling is not None and scaling.min_instances == scaling.max_instances
    if fixed and all(
        r.zygote is zygote and r.pid is not None and not r.retiring for r in host.records
    ):
        return IDLE_TICK
    return QUIET_TICK if host.quiet else TICK


def tick(host: PoolHost) -> None:
    """One scaling cycle: keep the minimum, follow the load, retire idle workers."""
    host.unresponsive.kill(host.records)
    zygote, scaler = host.zygote, host.scaler
    if zygote is None or scaler is None or host.stopping or zygote.board is None:
        return
    if zygote.dead:
        # it is replaced once the reload under way ends (see ``reload.swap``); one
        # whose replacement did not import is tried again, and until then what waits
        # is answered: it waited for ever (or, watched, spun the loop)
        if zygote.unreplaced is not None and not host.importing:
            if time.monotonic() >= zygote.replace_at:
                replace_zygote(host)
            else:
                host.watch_socket(True)
                _refuse(host, zygote.unreplaced)
        return
    board = zygote.board
    mine = [r for r in host.records if r.zygote is zygote]
    for r in mine:
        if not r.retiring and r.pid is not None and board.get(r.slot, "stopped_at"):
            # it retired itself (over its memory limit, a stuck function): it finishes
            # what it holds, and a replacement takes the new work meanwhile
            r.retiring = True
    views = [
        WorkerView(
            r.slot,
            inflight=board.get(r.slot, "inflight") if r.pid is not None else 0.0,
            last_active=board.get(r.slot, "last_active"),
            # not serving yet (still forking or importing): never idle, never retired
            pending=r.pid is None or not board.get(r.slot, "ready_at"),
            retiring=r.retiring,
        )
        for r in mine
    ]
    waiting = host.connection_waiting() or (host.duties is not None and host.duties.pending)
    if waiting and host.waiting_since is None:
        host.waiting_since = time.monotonic()
    if zygote.start_crashes and any(
        r.pid is not None and board.get(r.slot, "ready_at") for r in mine
    ):
        if zygote.start_crashes >= START_CRASHES:
            host.report(f"a worker serves again, after {zygote.start_crashes} died as they started")
        zygote.start_crashes = 0  # a worker serves: the app starts again
    if waiting and zygote.failing_to_start():
        _refuse_waiting(host, zygote)
    decision = scaler.decide(views, waiting)
    now = time.monotonic()
    # the fewest workers allowed, all idle: only a rise in load can change that
    host.quiet = (
        not waiting
        and not decision.spawn
        and len(views) <= scaler.scaling.min_instances
        and len(mine) == len(host.records)  # no older version's workers to see off
        and all(not v.inflight and not v.pending and not v.retiring for v in views)
    )
    if decision.spawn and now >= host.hold_until:
        # on demand only if something waits for it: a worker forked for load (or to
        # replace a stuck one) may take its first request long after it is ready, and
        # that wait is no cold start; its own start-up is
        spawn_more(host, zygote, len(mine) + decision.spawn, on_demand=bool(waiting))
    if not waiting:
        host.waiting_since = None
    for slot in decision.retire:
        for r in mine:
            if r.slot == slot and r.pid is not None:
                r.retiring = True
                signal_worker(r.pid, signal.SIGUSR1)
    for r in host.records:
        # a worker of an older version that was still starting when told to retire
        # ignored it (it was not serving yet); told again, it stops accepting now
        theirs = r.zygote.board
        if (
            r.zygote is not zygote
            and r.pid is not None
            and theirs is not None
            and theirs.get(r.slot, "ready_at")
            and not theirs.get(r.slot, "stopped_at")
        ):
            signal_worker(r.pid, signal.SIGUSR1)
    active = any(not r.retiring for r in host.records if r.zygote is zygote)
    host.watch_socket(not active)
    if host.duties is not None:
        host.duties.watch_closely(not active)


def spawn_more(host: PoolHost, zygote: Zygote, total: int, on_demand: bool) -> None:
    """Ask ``zygote`` for workers in free slots until it has ``total``."""
    assert zygote.scaling is not None
    mine = [r for r in host.records if r.zygote is zygote]
    used = {r.slot for r in mine}
    slots = zygote.board.layout.slots if zygote.board is not None else 0
    free = (i for i in range(slots) if i not in used)
    for slot, _ in zip(free, range(total - len(mine)), strict=False):
        _spawn(host, zygote, slot, on_demand)


def _spawn(host: PoolHost, zygote: Zygote, slot: int, on_demand: bool) -> None:
    assert zygote.scaling is not None
    now = time.monotonic()
    row = host.limits.free_row({r.permit_row for r in host.records})
    host.records.append(WorkerRecord(zygote, slot, now, permit_row=row))
    # An on-demand worker's cold start counts from when the request began to wait.
    since = (host.waiting_since or now) if on_demand else now
    limit = zygote.scaling.memory_limit_mb
    zygote.spawn(Spawn(slot, since, on_demand, limit, row, host.limits.columns_of(zygote)))


def on_zygote(host: PoolHost, zygote: Zygote) -> None:
    """Act on what ``zygote`` has said of its workers, or on its death."""
    try:
        messages = zygote.channel.receive()
    except (EOFError, ConnectionError):
        zygote.dead = True
        zygote.kill()  # reaped: it left a zombie process for the host's life
        host.sel.unregister(zygote.channel.sock)
        for r in host.records:
            if r.zygote is zygote and r.permit_row >= 0:
                host.permits.empty(r.permit_row)  # its workers die with it
        host.records = [r for r in host.records if r.zygote is not zygote]
        if zygote is host.zygote and not host.stopping:
            host.report("error: the zygote process died; restarting it")
            if not host.importing:  # else once that import ends (``reload.swap``)
                replace_zygote(host)
        return
    for message in messages:
        _on_event(host, zygote, message)


def _on_event(host: PoolHost, zygote: Zygote, message: dict[str, Any]) -> None:
    if message["event"] == "spawned":
        for r in host.records:
            if r.zygote is zygote and r.slot == message["slot"] and r.pid is None:
                r.pid = message["pid"]
                if host.stopping:
                    # forked before the stop, told of after it: the drain's SIGTERM
                    # went to the workers known then, and this one would be waited
                    # for until the shutdown timeout, then killed
                    signal_worker(r.pid, signal.SIGTERM)
                break
    elif message["event"] == "exited":
        record = next((r for r in host.records if r.pid == message["pid"]), None)
        if record is None:
            return
        host.records.remove(record)
        code = message["code"]
        rows = record.zygote.board
        served = rows is not None and rows.get(record.slot, "ready_at") > 0
        zygote.worker_exited(code, served, record.retiring)
        # exit code 0 without having stopped accepting first (os._exit(0) in a
        # function) is a death all the same: its requests get their 502
        board = record.zygote.board
        stopped = board is not None and board.get(record.slot, "stopped_at") > 0
        died = code != 0 or not (record.retiring or host.stopping or stopped)
        if died:
            host.connections.worker_died(
                message["pid"],
                record.slot,
                record.zygote.board,
                host.report,
                lost=lost_line(host.output, record, f"exit code {code}"),
            )
        else:
            host.connections.worker_exited(message["pid"])
        remember(host.past, record, died)
        if record.permit_row >= 0:
            host.permits.empty(record.permit_row)  # what it held goes to the others
        if record.zygote is not host.zygote:
            reap_retired(host)
        elif died and not record.retiring and not host.stopping:
            _crashed(host, record, code)


def _crashed(host: PoolHost, record: WorkerRecord, code: int) -> None:
    """Say that the serving version's worker of ``record`` died with ``code``, and pause
    before the next start if it died as it started: a line each for the first few, then
    one line for the loop, not one a second for ever."""
    crashes = record.zygote.start_crashes  # in a row, since one last served
    if crashes < START_CRASHES:
        host.report(f"worker {record.slot} (pid {record.pid}) exited with code {code}")
    elif crashes == START_CRASHES:
        host.report(
            f"error: worker {record.slot} keeps dying as it starts ({crashes} in a row, the "
            f"last with exit code {code}: {exit_reason(code)}); it is started again after "
            f"a pause that grows to {CRASH_PAUSE_MAX:g}s, requests get 503 meanwhile, and "
            "no more of these exits are reported until one serves"
        )
    if crashes or time.monotonic() - record.started < CRASH_LOOP_WINDOW:
        pause = min(CRASH_LOOP_WINDOW * 2 ** max(0, crashes - 1), CRASH_PAUSE_MAX)
        host.hold_until = time.monotonic() + pause


def _refuse_waiting(host: PoolHost, zygote: Zygote) -> None:
    """Answer 503 to the connections waiting for a worker when every worker started
    for them has died before it served (a mounted app's lifespan startup fails, say):
    they would wait for ever, each new worker dying the same way."""
    assert host.sock is not None
    _refuse(host, zygote.start_failure())


def _refuse(host: PoolHost, failure: str) -> None:
    """Answer 503 to the connections waiting: ``failure`` is why no worker serves."""
    assert host.sock is not None
    why = f"{failure}: no worker can serve this request"
    refused = refuse_backlog(host.sock, raw_answer(503, why, retry_after=5))
    if refused:
        host.report(f"answered {refused} request(s) 503: {why}")
