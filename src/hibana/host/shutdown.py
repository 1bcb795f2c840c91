"""The end of the shutdown sequence: the signals that ask for it, killing what did not
drain in time (with a 503 for each request it held), and refusing what still waits on the
socket.

The supervisor runs the drain itself (it is its loop, taking the workers' exits); what
follows it needs only the workers' records, the held connections and the socket, passed
in, so it lives here, apart from the loop.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable

from hibana.errors import SHUTTING_DOWN
from hibana.host.handoff import HeldConnections, raw_answer, refuse_backlog
from hibana.host.worker_records import WorkerRecord, lost_line, signal_worker
from hibana.host.zygote_handle import Zygote
from hibana.telemetry.process_output import ProcessOutput

#: The signals that ask the host to stop; SIGHUP asks it to reload the app.
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
#: Signals this close after the first are the same request to stop, delivered twice.
SIGNAL_ECHO = 0.25


def second_stop(signals: bytes, began: float) -> bool:
    """``signals``, arrived while draining since ``began``, ask to stop now: one signal
    sent twice at once (to the process and to its group, as `timeout` does) is not a
    second request to stop; a SIGHUP is none."""
    return any(s in STOP_SIGNALS for s in signals) and time.monotonic() - began > SIGNAL_ECHO


def refuse_on_stop(sock: socket.socket, report: Callable[[str], None]) -> None:
    """Once no worker is left to take them, the connections waiting on the socket get
    the 503 a draining worker gives, not a reset; the socket is closed at once, so
    those that come later are refused by the kernel, not left to wait."""
    refused = refuse_backlog(sock, raw_answer(503, SHUTTING_DOWN))
    sock.close()
    if refused:
        report(f"answered {refused} waiting request(s) 503: {SHUTTING_DOWN}")


def kill_all(
    records: list[WorkerRecord],
    zygotes: list[Zygote | None],
    connections: HeldConnections,
    report: Callable[[str], None],
    output: ProcessOutput | None,
    answer: bool = False,
) -> None:
    """SIGKILL every worker of ``records`` (which is emptied) and stop ``zygotes``;
    ``answer``: first write a 503 to each request the workers were running (from the
    supervisor's duplicates), so no client is left with nothing."""
    killed = [(r.pid, r) for r in records if r.pid is not None]
    for pid, _ in killed:
        signal_worker(pid, signal.SIGKILL)
    if answer:
        wait_dead([pid for pid, _ in killed], 1.0)
        for pid, r in killed:
            board = r.zygote.board
            connections.worker_died(
                pid,
                r.slot,
                board,
                report,
                True,
                lost_line(output, r, "killed: stopped at once"),
            )
    records.clear()
    for zygote in zygotes:
        if zygote is not None:
            zygote.stop()


def wait_dead(pids: list[int], timeout: float) -> None:
    """Wait up to ``timeout`` seconds for ``pids`` to be dead (gone, or zombies their
    parent has not reaped): what they wrote is written, nothing more will be."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{pid}/stat") as file:
                    stat = file.read()
            except OSError:
                break
            if stat.rpartition(")")[2].split()[0] == "Z":
                break
            time.sleep(0.005)
