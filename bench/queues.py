"""Queue throughput and latency: hibana on SQLite and on PostgreSQL beside Celery (Redis
broker) and Procrastinate (PostgreSQL), in one run, on the same machine.

Each system gets ``--workers`` worker processes (2: one per core here) and a no-op job.
The benchmark process enqueues ``--messages`` jobs as fast as that system's own client
allows (batches where it has them), while the workers consume, and measures:

* messages/s: from the first enqueue to the moment the last job has run;
* enqueue-to-start latency, p50 and p99: from the enqueue call's wall time to the job's
  start. hibana reports it in its own log line of each invocation (``queue_latency_ms``,
  from the time the store recorded the enqueue); the peers record it in the job.

hibana: ``hibana serve bench/apps/queue_noop --workers 2`` with logs on (at info, as a
user would run it); messages go in through ``Store.enqueue_many`` in batches of 500.
The SQLite store is a fresh file; the PostgreSQL one is a fresh schema in ``--dsn``.

Exits 0 whatever the numbers; non-zero when a system fails to start or to finish.

Run from /work/main: .venv/bin/python bench/queues.py [--messages 20000] [--only hibana-sqlite]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py would shadow the standard library's http module (which the peers'
# clients import): take this script's folder off the path, and import the peers'
# runner from the bench package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE.parent)]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable  # noqa: E402

from bench.queue_peers import PeerResult, run_celery, run_procrastinate  # noqa: E402

ROOT = _HERE.parent
APP = ROOT / "bench" / "apps" / "queue_noop"
TARGET_RATE = 20_000.0
BATCH = 500
START_TIMEOUT = 60.0
FINISH_TIMEOUT = 300.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_hibana(
    name: str, messages: int, workers: int, store_url: str | None, rate: float | None = None
) -> PeerResult:
    from hibana.store import NewMessage, open_store

    tmp = Path(tempfile.mkdtemp(prefix="hibana-bench-queue-"))
    app_dir = tmp / "app"
    shutil.copytree(APP, app_dir, ignore=shutil.ignore_patterns(".hibana", "__pycache__"))
    args = [sys.executable, "-m", "hibana", "serve", str(app_dir), "--port", "0"]
    args += ["--workers", str(workers)]
    if store_url:
        args += ["--store", store_url]
    out_path, err_path = tmp / "stdout.log", tmp / "stderr.log"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    try:
        _wait_for(lambda: b"Listening on" in err_path.read_bytes(), START_TIMEOUT, proc, err_path)
        store = open_store(store_url, app_dir)
        try:
            # warm up: the workers are running and have claimed once
            asyncio.run(store.enqueue_many([NewMessage("bench", b"{}")] * 10))
            _wait_for(lambda: _done(out_path) >= 10, START_TIMEOUT, proc, err_path)
            before = _done(out_path)
            cpu_before = _tree_cpu(proc.pid)
            body = b'{"n":1}'

            async def enqueue_all() -> float:
                first = time.time()
                for i in range(0, messages, BATCH):
                    n = min(BATCH, messages - i)
                    await store.enqueue_many([NewMessage("bench", body)] * n)
                return first

            async def enqueue_steadily() -> float:
                # open loop: message i leaves at t0 + i/rate, one enqueue call each
                assert rate is not None
                loop = asyncio.get_running_loop()
                t0 = loop.time() + 0.05
                first = time.time() + 0.05

                async def one(i: int) -> None:
                    await asyncio.sleep(max(0.0, t0 + i / rate - loop.time()))
                    # stamped with its scheduled time, as the peers do: a client that
                    # falls behind shows up as latency
                    sent = json.dumps({"sent": first + i / rate}).encode()
                    await store.enqueue(NewMessage("bench", sent))

                await asyncio.gather(*(one(i) for i in range(messages)))
                return first

            first = asyncio.run(enqueue_all() if rate is None else enqueue_steadily())
            _wait_for(lambda: _done(out_path) >= before + messages, FINISH_TIMEOUT, proc, err_path)
            last = time.time()
            cpu = _tree_cpu(proc.pid) - cpu_before
        finally:
            store.close()
        lines = [json.loads(x) for x in out_path.read_bytes().splitlines() if x.startswith(b"{")]
        if rate is None:
            latencies = [
                x["queue_latency_ms"]
                for x in lines
                if x.get("msg") == "invocation" and x.get("outcome") == "ok"
            ][before:]
        else:  # from the client's send, as the peers measure it
            latencies = [x["ms"] for x in lines if x.get("msg") == "bench latency"]
        # the last job ran at the time of its log line; polling the file adds a little
        ends = [x["ts"] for x in lines if x.get("msg") == "invocation"]
        seconds = _log_time(ends[-1]) - first if ends else last - first
        print(
            f"{name}: {cpu / messages * 1e6:.0f} us of host CPU per message "
            "(supervisor, zygote and workers, user + system)",
            file=sys.stderr,
            flush=True,
        )
        return PeerResult(
            name=name,
            messages=messages,
            seconds=seconds,
            rate=messages / seconds,
            p50_ms=_percentile(latencies, 0.5),
            p99_ms=_percentile(latencies, 0.99),
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its descendants alive now."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            stack += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


def _log_time(ts: str) -> float:
    whole, _, ms = ts.rstrip("Z").partition(".")
    return time.mktime(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) - time.timezone + int(ms) / 1000


_INVOCATION = re.compile(rb'"msg":"invocation"')


def _done(path: Path) -> int:
    return len(_INVOCATION.findall(path.read_bytes()))


def _wait_for(
    check: Callable[[], bool], timeout: float, proc: subprocess.Popen[bytes], err: Path
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            raise RuntimeError(f"the host exited with {proc.returncode}:\n{err.read_text()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g}s; host stderr:\n{err.read_text()}")
        time.sleep(0.02)


def _pg_schema_url(dsn: str) -> tuple[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    return f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}", schema


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="Send one message at a time at this rate (open loop) and report latency; "
        "default: enqueue all at once and report throughput.",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=["hibana-sqlite", "hibana-postgresql", "celery", "procrastinate"],
        help="Run only this system (repeatable).",
    )
    args = parser.parse_args()
    chosen = args.only or ["hibana-sqlite", "hibana-postgresql", "celery", "procrastinate"]
    results: list[PeerResult] = []
    failed = False
    for system in chosen:
        print(f"running {system} ...", file=sys.stderr, flush=True)
        try:
            if system == "hibana-sqlite":
                results.append(
                    run_hibana("hibana (SQLite)", args.messages, args.workers, None, args.rate)
                )
            elif system == "hibana-postgresql":
                url, schema = _pg_schema_url(args.dsn)
                try:
                    results.append(
                        run_hibana(
                            "hibana (PostgreSQL)", args.messages, args.workers, url, args.rate
                        )
                    )
                finally:
                    _drop_schema(args.dsn, schema)
            elif system == "celery":
                results.append(run_celery(args.messages, args.workers, args.redis, rate=args.rate))
            else:
                results.append(
                    run_procrastinate(args.messages, args.workers, args.dsn, rate=args.rate)
                )
        except Exception as exc:  # a failed system is reported; the others still run
            failed = True
            print(f"{system} failed: {exc}", file=sys.stderr, flush=True)
    mode = "all at once" if args.rate is None else f"one at a time at {args.rate:g}/s"
    print(
        f"\n{args.messages} messages sent {mode}, {args.workers} worker processes each, "
        f"{os.cpu_count()} cores\n"
    )
    print(f"{'system':<28} {'msgs/s':>10} {'seconds':>9} {'p50 ms':>9} {'p99 ms':>9}")
    for r in results:
        print(f"{r.name:<28} {r.rate:>10,.0f} {r.seconds:>9.2f} {r.p50_ms:>9.1f} {r.p99_ms:>9.1f}")
    hib = next((r for r in results if r.name == "hibana (SQLite)"), None)
    if hib is not None and args.rate is not None:
        for r in results:
            if r is not hib:
                print(f"{r.name} p50 / hibana (SQLite) p50: {r.p50_ms / hib.p50_ms:.1f}x")
    elif hib is not None:
        print(
            f"\nhibana (SQLite) vs the {TARGET_RATE:,.0f} msgs/s target: "
            f"{hib.rate / TARGET_RATE:.2f}x"
        )
        for r in results:
            if r is not hib:
                print(f"hibana (SQLite) / {r.name}: {hib.rate / r.rate:.2f}x msgs/s")
    return 1 if failed else 0


def _drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    sys.exit(main())
