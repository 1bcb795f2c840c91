"""Requests lost while a server reloads its app under load: hibana beside its peers.

Three servers answer the same hello with the same number of workers, each loaded by wrk
(``--connections`` keep-alive connections) for ``--duration`` seconds, during which its
app is reloaded every ``--every`` seconds the way each one offers:

* hibana: ``hibana reload --app examples/hello`` (returns once the new version serves);
* uvicorn (the raw ASGI callable, ``--workers``): SIGHUP, its rolling restart of workers;
* functions-framework (Flask on gunicorn): SIGHUP, gunicorn's graceful reload.

Prints, for each, the reloads done, requests, requests/s and the errors wrk saw (socket
errors: connect, read, write, timeout; and non-2xx answers), which is what a caller of a
service being deployed would see; for hibana also how long each ``hibana reload`` took.
Exits 0 whatever the numbers (a measurement, not a test); non-zero only when a server
does not start or a reload is refused.

Run from anywhere: .venv/bin/python bench/reload.py [--duration 12 --every 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py would shadow the standard library's http module (which httpx and the
# peers import): take this script's folder off the path, and import from the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE.parent)]

import argparse  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from bench.http import (  # noqa: E402
    ROOT,
    WRK_COUNTS,
    BenchError,
    Load,
    Server,
    _machine,
    _tail,
    add_wrk_options,
    check_counts,
    ensure_wrk,
    free_port,
    make_servers,
    parse_wrk,
    start,
    stop,
    wait_ready,
)

HELLO = ROOT / "examples" / "hello"
KEYS = ("sync", "raw", "ff")  # bench/http.py's hibana (sync), uvicorn and functions-framework
HOW = {
    "sync": "hibana reload",
    "raw": "SIGHUP (rolling restart)",
    "ff": "SIGHUP (graceful reload)",
}


@dataclass
class Result:
    server: Server
    load: Load
    reloads: int
    #: How long each reload took, when the server says when it is done (hibana).
    reload_ms: list[float] = field(default_factory=list)


def reload(server: Server, proc: subprocess.Popen[bytes]) -> float | None:
    """Reload ``server``'s app; how long it took in ms, if the server tells."""
    if server.key != "sync":
        os.kill(proc.pid, signal.SIGHUP)
        return None
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "hibana", "reload", "--app", str(HELLO)],
        capture_output=True,
        text=True,
        timeout=150,
    )
    if done.returncode != 0:
        raise BenchError(f"hibana reload failed:\n{done.stderr}")
    return (time.monotonic() - began) * 1000


def measure(server: Server, args: argparse.Namespace, wrk: str) -> Result:
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = start(server, port, log)
        load: subprocess.Popen[bytes] | None = None
        try:
            wait_ready(server, proc, port, log)
            url = f"http://127.0.0.1:{port}{server.path}"
            argv = [wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s"]
            load = subprocess.Popen(
                [*argv, "--latency", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            result = Result(server, Load(0, 0, 0, 0, 0), 0)
            began = time.monotonic()
            # reload from one interval in until one interval before the end
            while time.monotonic() - began + 2 * args.every <= args.duration:
                time.sleep(max(0.0, began + (result.reloads + 1) * args.every - time.monotonic()))
                took = reload(server, proc)
                result.reloads += 1
                if took is not None:
                    result.reload_ms.append(took)
            out, err = load.communicate(timeout=args.duration + 60)
            if load.returncode != 0:
                raise BenchError(f"wrk exited with code {load.returncode}:\n{err.decode()}")
            result.load = parse_wrk(out.decode())
            if proc.poll() is not None:
                raise BenchError(
                    f"{server.name} exited with code {proc.returncode} during the load; "
                    "its stderr:\n" + _tail(log)
                )
            return result
        finally:
            if load is not None and load.poll() is None:  # a failed reload, Ctrl+C
                load.kill()
                load.wait()
            stop(proc)


def report(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"\nwrk -t{args.threads} -c{args.connections} -d{args.duration}s, "
        f"a reload every {args.every:g}s, {args.workers} workers each\n"
    )
    print(
        f"{'server':<38}{'reloaded by':<26}{'reloads':>8}{'requests':>10}{'req/s':>9}{'errors':>8}"
    )
    for r in results:
        print(
            f"{r.server.name:<38}{HOW[r.server.key]:<26}{r.reloads:>8}{r.load.requests:>10}"
            f"{r.load.rps:>9.0f}{r.load.errors:>8}"
        )
    for r in results:
        if r.reload_ms:
            print(
                f"\n`hibana reload` took {statistics.median(r.reload_ms):.0f} ms (median), "
                f"{max(r.reload_ms):.0f} ms at most, until the new version served and the "
                "old accepted no more"
            )
    print(
        "\nerrors: wrk's socket errors (connect, read, write, timeout) and non-2xx answers: "
        "what a caller sees while the service is deployed."
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Requests lost while hibana, uvicorn and gunicorn reload under load."
    )
    parser.add_argument("--duration", type=int, default=12, help="seconds of load per server")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between reloads")
    add_wrk_options(parser)
    parser.add_argument(
        "--only", action="append", choices=KEYS, help="run only these servers (repeatable)"
    )
    args = parser.parse_args(argv)
    check_counts(parser, args, ("duration", *WRK_COUNTS))
    if args.every <= 0:
        parser.error("--every must be more than 0")
    if args.duration < 3 * args.every:
        parser.error("--duration must be at least 3 x --every, for a reload to happen")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    servers = [
        s
        for s in make_servers(args.workers)
        if s.key in KEYS and (args.only is None or s.key in args.only)
    ]
    wrk = ensure_wrk()
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(_machine(wrk), flush=True)
    results = []
    try:
        for server in servers:
            print(f"  loading and reloading {server.name} ...", flush=True)
            results.append(measure(server, args, wrk))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
