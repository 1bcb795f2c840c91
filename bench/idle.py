"""What a server costs while nobody calls it: CPU and wake-ups per second of an idle host,
beside the peers of bench/http.py, all serving the same hello.

Each server is started alone, answers one request, then is left alone: hibana once as it
runs by default, until it has scaled to zero workers, and once with its workers kept (the
example app has a queue and a timer, so its store duties run in both); the peers as they
are (their workers stay). Then its processes' CPU time and
context switches are read over the measured window.

Prints a table; exits 0 whatever the numbers (a measurement, not a test), non-zero when a
server does not start or answer.

Run from anywhere: .venv/bin/python bench/idle.py [--seconds 30]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py would shadow the standard library's http module: take this script's
# folder off the path, and import from the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE.parent)]

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

from bench.http import (  # noqa: E402
    ROOT,
    BenchError,
    Server,
    _group_stats,
    free_port,
    make_servers,
    start,
    stop,
    wait_ready,
)

#: How long hibana's workers stay after the last request (its --idle-timeout).
IDLE_TIMEOUT = 2.0


def _switches(pids: list[int]) -> int:
    """Context switches (voluntary and not) of every thread of ``pids`` so far."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                status = (task / "status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if "ctxt_switches:" in line:  # voluntary_ and nonvoluntary_
                    total += int(line.split()[1])
    return total


def _workers(admin: str) -> int:
    with urllib.request.urlopen(admin + "/status", timeout=5) as answer:
        status = json.load(answer)
    return len(status["workers"])


def _admin_url(log_path: Path) -> str:
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("Admin (hibana status): "):
            return line.rpartition(" ")[2]
    raise BenchError("hibana printed no admin address")


def measure(server: Server, seconds: float) -> tuple[float, float, int]:
    """CPU % of one core, wake-ups per second, and processes, while ``server`` idles."""
    port = free_port()
    with tempfile.NamedTemporaryFile(prefix="idle-", suffix=".log") as log:
        proc = start(server, port, log)
        try:
            wait_ready(server, proc, port, log)
            if server.key == "sync":
                admin = _admin_url(Path(log.name))
                deadline = time.monotonic() + IDLE_TIMEOUT + 30
                while _workers(admin):
                    if time.monotonic() > deadline:
                        raise BenchError("hibana did not scale to zero workers")
                    time.sleep(0.2)
            time.sleep(1.0)  # settled
            before = _group_stats(proc.pid)
            switches = _switches(list(before))
            began = time.monotonic()
            time.sleep(seconds)
            after = _group_stats(proc.pid)
            took = time.monotonic() - began
            switched = _switches(list(after)) - switches
        finally:
            stop(proc)
    cpu = sum(after.get(pid, 0.0) - used for pid, used in before.items())
    return 100 * cpu / took, switched / took, len(after)


def _scaling_to_zero(server: Server) -> Server:
    """hibana as it runs by default (0..N workers), with a short idle timeout."""
    if server.key != "sync":
        return server
    argv = list(server.argv)
    at = argv.index("--workers")
    argv[at : at + 2] = [
        "--max-instances", argv[at + 1],
        "--min-instances", "0",
        "--idle-timeout", str(IDLE_TIMEOUT),
    ]  # fmt: skip
    return dataclasses.replace(server, name="hibana (scaled to 0 workers)", argv=argv)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured idle window")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per server")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.workers < 1:
        parser.error("--seconds must be positive and --workers at least 1")
    peers = {s.key: s for s in make_servers(args.workers)}
    kept = dataclasses.replace(
        peers["sync"], key="kept", name=f"hibana ({args.workers} workers kept)"
    )
    servers = [_scaling_to_zero(peers["sync"]), kept, peers["raw"], peers["ff"]]
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"idle for {args.seconds:g}s after one request; CPU of all the server's processes\n")
    rows = []
    for server in servers:
        print(f"  measuring {server.name} ...", flush=True)
        rows.append((server, *measure(server, args.seconds)))
    print(f"\n{'server':<42}{'CPU % of a core':>16}{'wake-ups/s':>12}{'procs':>7}")
    print("-" * 77)
    for server, cpu, wakeups, procs in rows:
        print(f"{server.name:<42}{cpu:>16.2f}{wakeups:>12.1f}{procs:>7}")
    print()
    for server, *_ in rows:
        print(f"{server.name}: $ {shlex.join(server.command('PORT'))}   (from {ROOT})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
