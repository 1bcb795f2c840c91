"""What a sync function's hop to the worker's thread pool costs per request, counted, not
timed: context switches, futex calls, loop turns (epoll waits), syscalls and gen0
collections of one worker, against the same hello as ``async def``.

One worker (``hibana serve bench/apps/hello_counted --workers 1``) under ``wrk -t1 -c32``;
``perf stat``'s software counters on the worker's threads, divided by the requests wrk saw
answered; the worker's gen0 collections read from the app's /gc route before and after.
Counts steady where CPU times swing on a shared machine. Each ``--src`` (a checkout's
``src`` folder, put first on PYTHONPATH; by default this one's) is counted for sync and
for async, in an order rotated each round; the report gives each one's medians.

Run from anywhere: .venv/bin/python bench/hop.py [--rounds 5] [--src /other/checkout/src]
(needs ``perf`` and ``wrk``, and permission to attach perf to a process).
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
# Run as a script, this folder would be sys.path[0] and its http.py shadow the stdlib's.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE.parent)]

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

from bench.http import (  # noqa: E402
    APPS,
    BenchError,
    Server,
    _group_stats,
    ensure_wrk,
    free_port,
    http_get,
    run_wrk,
    start,
    stop,
    wait_ready,
)

#: perf's name for each count, and the column it is shown in.
EVENTS = {
    "context-switches": "switches",
    "syscalls:sys_enter_futex": "futex",
    "syscalls:sys_enter_epoll_wait": "epoll",
    "syscalls:sys_enter_epoll_pwait": "epoll",
    "raw_syscalls:sys_enter": "syscalls",
}
COLUMNS = ["switches", "voluntary", "futex", "epoll", "syscalls", "gen0", "cpu_us"]
PATHS = {"sync": "/hello/you", "async": "/ahello/you"}


def _server(src: str) -> Server:
    argv = [sys.executable, "-m", "hibana", "serve", str(APPS / "hello_counted")]
    argv += ["--host", "127.0.0.1", "--port", "{port}", "--workers", "1"]
    pythonpath = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    return Server("hop", f"hibana ({src})", argv, "Hello you", env={"PYTHONPATH": pythonpath})


def _voluntary(pid: int) -> int:
    """The voluntary context switches of ``pid``'s live threads so far (a thread that
    blocks: on a futex, on epoll), summed."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except OSError:
            continue  # ended meanwhile
        total += int(status.split("voluntary_ctxt_switches:")[1].split()[0])
    return total


def _gen0(port: int) -> int:
    status, _, body = http_get(port, "/gc", timeout=5)
    if status != 200:
        raise BenchError(f"GET /gc answered {status} {body[:200]!r}")
    return int(body)


def count(src: str, kind: str, args: argparse.Namespace, wrk: str) -> dict[str, float]:
    """One round: a fresh host, a warm-up, then the counts per request of its worker."""
    server = _server(src)
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = start(server, port, log)
        try:
            wait_ready(server, proc, port, log)
            url = f"http://127.0.0.1:{port}{PATHS[kind]}"
            run_wrk(wrk, url, args.warmup, 1, args.connections)
            before = _group_stats(proc.pid)
            worker = max(before, key=before.__getitem__)  # the one that served the warm-up
            gen0, voluntary = _gen0(port), _voluntary(worker)
            perf = subprocess.Popen(
                ["perf", "stat", "-x,", "-e", ",".join(EVENTS), "-p", str(worker)],
                stderr=subprocess.PIPE,
                text=True,
            )
            load = run_wrk(wrk, url, args.duration, 1, args.connections)
            perf.send_signal(2)  # SIGINT: perf prints its counts and exits
            _, report = perf.communicate(timeout=30)
            gen0, voluntary = _gen0(port) - gen0, _voluntary(worker) - voluntary
            after = _group_stats(proc.pid)
        finally:
            stop(proc)
    if load.errors:
        raise BenchError(f"{load.errors} of {load.requests} requests failed")
    per = {name: 0.0 for name in COLUMNS}
    for line in report.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2] in EVENTS and fields[0].isdigit():
            per[EVENTS[fields[2]]] += int(fields[0]) / load.requests
    per["gen0"] = gen0 / load.requests
    per["voluntary"] = voluntary / load.requests
    per["cpu_us"] = (after[worker] - before[worker]) / load.requests * 1e6
    return per


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds counted a round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--src", action="append", help="a checkout's src folder (repeatable)")
    parser.add_argument("--only", action="append", choices=list(PATHS), help="sync or async")
    args = parser.parse_args(argv)
    if shutil.which("perf") is None:
        sys.exit("error: this needs perf: apt-get install linux-perf (Debian) or linux-tools")
    wrk = ensure_wrk()
    sources = args.src or [str(_HERE.parent / "src")]
    variants = [(src, kind) for src in sources for kind in args.only or PATHS]
    counted: dict[tuple[str, str], list[dict[str, float]]] = {v: [] for v in variants}
    for r in range(args.rounds):
        shift = r % len(variants)
        for src, kind in variants[shift:] + variants[:shift]:
            per = count(src, kind, args, wrk)
            counted[src, kind].append(per)
            shown = "  ".join(f"{name} {per[name]:.4f}" for name in COLUMNS)
            print(f"round {r + 1} {kind:5} {src}: {shown}", flush=True)
    print(f"\nper request, medians of {args.rounds} rounds (load average {os.getloadavg()[0]:.2f})")
    print("| src | function | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---:|" * len(COLUMNS))
    for (src, kind), rounds in counted.items():
        cells = [statistics.median(per[name] for per in rounds) for name in COLUMNS]
        print(f"| {src} | {kind} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
