"""Durable-queue throughput and latency of hibana's peers: Celery on Redis, Procrastinate on
PostgreSQL, each with the same no-op job.

``run_celery`` and ``run_procrastinate`` each:

1. start ``workers`` worker processes of the peer (their apps are bench/apps/celery_tasks.py
   and bench/apps/procrastinate_tasks.py, run with bench/apps as working directory);
2. send small rounds of probe jobs until every worker process has run one (``START_TIMEOUT``),
   then ``WARMUP`` warm-up jobs, and wait for all of them;
3. enqueue ``messages`` jobs from this process, in one of two modes:

   * bulk (``rate=None``, the default): as fast as the peer's own client goes. Celery has no
     batch publish, so ``send_task`` in a loop on one producer; Procrastinate's
     ``batch_defer``, ``PROCRASTINATE_BATCH`` jobs a call;
   * steady rate (``rate=R``): one job a call (``send_task`` on one producer; ``defer``),
     open loop: job i leaves at t0 + i/R whatever happened before. A client behind its
     schedule sends as soon as it can, and the delay counts as latency;

4. wait until every job has run, then stop the workers and remove what the run made.

Each job gets the wall time of its enqueue and its first act is bench/apps/queue_probe.py's
``record``, which keeps the time it started in memory; a thread of each worker process
appends them to a file every 50 ms, which this process reads. So ``seconds`` runs from just
before the first enqueue to the start of the last job (a no-op ends as it starts), latencies
are enqueue to start, and neither peer pays a round trip for being measured. The enqueue
time is, in bulk mode, the time the job's send call started (for a batch: the batch call's);
at a steady rate, the job's place in the schedule, t0 + i/R, so that a client running late
shows in the latencies (``PeerResult.send_lag_ms`` says how late it got). In bulk mode every
job is enqueued at once, so when the workers fall behind the client the latencies are mostly
the time a job waits behind the others; at a rate the workers keep up with, they are the
time the peer takes to hand a job over.

Nothing here touches anything it did not make: Celery's keys in Redis all start with
``CELERY_KEY_PREFIX`` (kombu's ``global_keyprefix``) and are deleted before and after;
Procrastinate gets a database of its own, ``PROCRASTINATE_DB``, created on the server ``dsn``
names (connecting to ``dsn``'s database only to create and drop it) and dropped at the end.
Every wait has a limit; a failure raises ``PeerError`` naming the peer and the step.

Run from anywhere: .venv/bin/python bench/queue_peers.py [--messages 20000] [--rate 500]

As a script, this file's folder would be sys.path[0], where bench/http.py
shadows the standard library's ``http`` (which redis-py, kombu and psycopg_pool
import), so the script takes its folder off sys.path first. The workers run in bench/apps.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import redis
    from procrastinate.types import JSONDict

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "bench" / "apps"
#: The no-op task's name in both worker apps.
TASK = "bench.noop"
#: Where bench/apps/queue_probe.py writes; the same name is read there.
OUT_ENV = "BENCH_QUEUE_OUT"
PHASE_PROBE, PHASE_WARMUP, PHASE_MEASURED = 0, 1, 2
#: How long the workers get from their start to all of them running a job.
START_TIMEOUT = 60.0
#: A run fails when no job finishes for this long...
STALL_TIMEOUT = 30.0
#: ...or when it goes slower than this many jobs/s on the whole (plus START_TIMEOUT). At a
#: steady rate, the client may also fall behind its schedule by that much before it fails.
MIN_RATE = 50.0
#: How long a worker gets to exit after SIGTERM before its process group is killed.
STOP_TIMEOUT = 15.0
WARMUP = 500
POLL_INTERVAL = 0.02
#: At a steady rate, how often the sending loop reads the records and checks the workers.
CHECK_INTERVAL = 0.5

CELERY_QUEUE = "hibana_bench"
CELERY_KEY_PREFIX = "hibana_bench:"

PROCRASTINATE_DB = "bench_procrastinate"
#: Jobs a batch_defer call (one INSERT). All jobs of a batch get its start as enqueue time.
PROCRASTINATE_BATCH = 1000
#: Jobs each asyncio worker runs at once. Its fetch loop takes one job per query whatever
#: this is; more only overlaps the status updates of finished jobs with the next fetch.
#: 4 did best of 1, 2, 4, 6, 10 and 20 tried here, though within the noise of 2 to 10.
PROCRASTINATE_CONCURRENCY = 4
#: Connections used to create and drop PROCRASTINATE_DB and by this process's client.
PG_TIMEOUTS = {"connect_timeout": "5", "options": "-c statement_timeout=60000"}


class PeerError(RuntimeError):
    """A peer's run failed; the message says which peer and which step."""


@dataclass
class PeerResult:
    name: str
    messages: int
    #: From just before the first enqueue to the start of the last job to run.
    seconds: float
    rate: float
    #: Enqueue-to-start latency of the measured jobs.
    p50_ms: float
    p99_ms: float
    #: How long enqueueing them all took: near ``seconds``, the client was the bottleneck.
    enqueue_seconds: float = 0.0
    #: Steady rate only: the most a send started after its place in the schedule (which the
    #: latencies include); near the time between sends or more, the client could not keep up.
    send_lag_ms: float = 0.0


# --- what the jobs recorded -------------------------------------------------------------------


@dataclass
class _Records:
    """Reads the lines bench/apps/queue_probe.py appends, one file per worker process."""

    out: Path
    counts: dict[int, int] = field(default_factory=dict)
    procs: dict[int, set[str]] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    last_start: float = 0.0
    _offsets: dict[Path, int] = field(default_factory=dict)

    def poll(self) -> None:
        for path in self.out.glob("*.txt"):
            offset = self._offsets.get(path, 0)
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read()
            # The line being written is read next time, whole.
            end = data.rfind(b"\n") + 1
            if not end:
                continue
            self._offsets[path] = offset + end
            for line in data[:end].decode("ascii").splitlines():
                phase_s, sent_s, started_s = line.split()
                phase, started = int(phase_s), float(started_s)
                self.counts[phase] = self.counts.get(phase, 0) + 1
                self.procs.setdefault(phase, set()).add(path.stem)
                if phase == PHASE_MEASURED:
                    self.latencies.append(started - float(sent_s))
                    self.last_start = max(self.last_start, started)

    def count(self, phase: int) -> int:
        return self.counts.get(phase, 0)


# --- worker processes -------------------------------------------------------------------------


class _Workers:
    """The worker processes of one peer, each in a process group of its own."""

    def __init__(self, peer: str, logs: Path) -> None:
        self.peer = peer
        self.logs = logs
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        self._files: list[IO[bytes]] = []

    def start(self, argvs: list[list[str]], env: dict[str, str]) -> None:
        for i, argv in enumerate(argvs):
            log = self.logs / f"{self.peer.split('+')[0]}-worker{i}.log"
            f = log.open("wb")
            self._files.append(f)
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=APPS,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise PeerError(f"{self.peer}: cannot start worker {i} ({argv[0]}): {exc}") from exc
            self.procs.append((proc, log))

    def check(self, step: str) -> None:
        for i, (proc, log) in enumerate(self.procs):
            code = proc.poll()
            if code is not None:
                raise PeerError(
                    f"{self.peer}: worker {i} exited with status {code} while {step}; "
                    f"its output ends with:\n{_tail(log)}"
                )

    def tails(self) -> str:
        return "\n".join(
            f"worker {i} output ends with:\n{_tail(log, 600)}"
            for i, (_, log) in enumerate(self.procs)
        )

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc, _ in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
            # The whole group, children too, but only while its leader is unreaped: once
            # reaped, its pid may name someone else's group.
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5.0)
        for f in self._files:
            f.close()


def _tail(path: Path, size: int = 2000) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return data[-size:].decode("utf-8", "replace").rstrip() or "(nothing)"


def _worker_env(out: Path, extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env[OUT_ENV] = str(out)
    # The apps import bench.apps.queue_probe whatever the interpreter's flags.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(APPS), str(APPS.parent.parent), env.get("PYTHONPATH")) if p
    )
    return env


# --- the run both peers share ------------------------------------------------------------------

#: Enqueues ``n`` jobs of a phase, each with the wall time it was sent.
Send = Callable[[int, int], None]
#: Enqueues one measured job (one call of the peer's client), with the given enqueue time.
SendOne = Callable[[float], None]
#: Holds what sending one job at a time needs (Celery: a producer) for the whole loop.
OneByOne = Callable[[], contextlib.AbstractContextManager[SendOne]]


def _wait_for(
    peer: str,
    step: str,
    records: _Records,
    workers: _Workers,
    phase: int,
    expected: int,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    last_count, last_progress = -1, time.monotonic()
    while True:
        records.poll()
        count = records.count(phase)
        if count >= expected:
            return
        workers.check(step)
        now = time.monotonic()
        if count != last_count:
            last_count, last_progress = count, now
        if now - last_progress > STALL_TIMEOUT:
            raise PeerError(
                f"{peer}: no job finished for {STALL_TIMEOUT:.0f} s while {step} "
                f"({count} of {expected} done)"
            )
        if now > deadline:
            raise PeerError(
                f"{peer}: {step} took over {timeout:.0f} s ({count} of {expected} done)"
            )
        time.sleep(POLL_INTERVAL)


def _send_steadily(
    peer: str,
    messages: int,
    rate: float,
    one_by_one: OneByOne,
    records: _Records,
    workers: _Workers,
) -> tuple[float, float, float]:
    """Sends the measured jobs one a call, job i at t0 + i/rate on the monotonic clock,
    stamped with t0's wall time + i/rate. Returns t0 and the end of the last send (wall
    times) and how late, at most, a send started (seconds).

    Every ``CHECK_INTERVAL`` it reads the records and checks the workers, so that a worker
    that dies or a peer that stops running jobs fails the run before the schedule ends."""
    step = f"enqueueing the measured jobs at {rate:g}/s"
    limit = messages / rate + START_TIMEOUT + messages / MIN_RATE
    try:
        with one_by_one() as send_one:
            mono0 = time.monotonic()
            wall0 = time.time()
            deadline = mono0 + limit
            next_check = mono0
            done, last_progress = 0, mono0
            lag = 0.0
            for i in range(messages):
                due = mono0 + i / rate
                now = time.monotonic()
                if now >= next_check:
                    records.poll()
                    workers.check(step)
                    count = records.count(PHASE_MEASURED)
                    if count != done or count >= i:
                        done, last_progress = count, now
                    if now - last_progress > STALL_TIMEOUT:
                        raise PeerError(
                            f"{peer}: no job finished for {STALL_TIMEOUT:.0f} s while {step} "
                            f"({count} of {i} sent done)"
                        )
                    if now > deadline:
                        raise PeerError(
                            f"{peer}: {step} took over {limit:.0f} s ({i} of {messages} sent)"
                        )
                    next_check = now + CHECK_INTERVAL
                    now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                    now = time.monotonic()
                lag = max(lag, now - due)
                try:
                    send_one(wall0 + i / rate)
                except Exception as exc:
                    raise PeerError(
                        f"{peer}: sending job {i} of {messages} failed while {step}: {exc!r}"
                    ) from exc
            ended = time.time()
    except PeerError:
        raise
    except Exception as exc:  # from opening or closing what the loop sends with
        raise PeerError(f"{peer}: {step} failed: {exc!r}") from exc
    return wall0, ended, lag


def _measure(
    peer: str,
    messages: int,
    processes: int,
    send: Send,
    records: _Records,
    workers: _Workers,
    rate: float | None = None,
    one_by_one: OneByOne | None = None,
) -> PeerResult:
    """Runs steps 2 to 4 of the module's docstring: bulk with ``send`` when ``rate`` is None,
    else at ``rate`` with ``one_by_one``."""

    def enqueue(phase: int, n: int, step: str) -> None:
        try:
            send(phase, n)
        except Exception as exc:
            raise PeerError(f"{peer}: enqueueing {n} jobs failed while {step}: {exc!r}") from exc

    # Probe rounds until each worker process has run a job: then all of them consume.
    step = f"waiting for {processes} worker processes to run a job"
    deadline = time.monotonic() + START_TIMEOUT
    probes = 0
    while True:
        records.poll()
        if len(records.procs.get(PHASE_PROBE, ())) >= processes:
            break
        workers.check(step)
        if time.monotonic() > deadline:
            ran = len(records.procs.get(PHASE_PROBE, ()))
            raise PeerError(
                f"{peer}: {ran} of {processes} worker processes ran a job within "
                f"{START_TIMEOUT:.0f} s; {workers.tails()}"
            )
        enqueue(PHASE_PROBE, 2 * processes, step)
        probes += 2 * processes
        time.sleep(0.2)
    _wait_for(peer, "draining probe jobs", records, workers, PHASE_PROBE, probes, START_TIMEOUT)

    enqueue(PHASE_WARMUP, WARMUP, "warming up")
    _wait_for(peer, "warming up", records, workers, PHASE_WARMUP, WARMUP, START_TIMEOUT)

    lag = 0.0
    if rate is None:
        started = time.time()
        enqueue(PHASE_MEASURED, messages, "enqueueing the measured jobs")
        enqueued = time.time()
    else:
        assert one_by_one is not None, "a steady rate needs one_by_one"
        started, enqueued, lag = _send_steadily(peer, messages, rate, one_by_one, records, workers)
    limit = START_TIMEOUT + messages / MIN_RATE
    _wait_for(peer, "running the jobs", records, workers, PHASE_MEASURED, messages, limit)

    lat_ms = sorted(x * 1000.0 for x in records.latencies)
    seconds = records.last_start - started
    return PeerResult(
        name=peer,
        messages=messages,
        seconds=seconds,
        rate=messages / seconds if seconds > 0 else float("inf"),
        p50_ms=statistics.median(lat_ms),
        p99_ms=lat_ms[math.ceil(0.99 * len(lat_ms)) - 1],
        enqueue_seconds=enqueued - started,
        send_lag_ms=lag * 1000.0,
    )


@contextlib.contextmanager
def _scratch(peer: str) -> Iterator[tuple[_Records, _Workers, Path]]:
    with tempfile.TemporaryDirectory(prefix="hibana-queue-peers-") as tmp:
        out = Path(tmp) / "records"
        out.mkdir()
        workers = _Workers(peer, Path(tmp))
        try:
            yield _Records(out), workers, out
        finally:
            workers.stop()


@contextlib.contextmanager
def _then(cleanup: Callable[[], object]) -> Iterator[None]:
    """Runs ``cleanup`` after the block. When the block failed, that failure is the one
    raised: a cleanup failing too is only printed."""
    try:
        yield
    except BaseException:
        try:
            cleanup()
        except Exception as exc:
            print(f"also, cleaning up after that failed: {exc}", file=sys.stderr)
        raise
    cleanup()


def _check_args(messages: int, workers: int, rate: float | None) -> None:
    if messages < 1 or workers < 1:
        raise ValueError(f"messages and workers must be at least 1, not {messages}, {workers}")
    if rate is not None and not (0.0 < rate < math.inf):
        raise ValueError(f"rate must be a positive number of jobs/s or None, not {rate}")


# --- Celery on Redis ---------------------------------------------------------------------------


def run_celery(
    messages: int,
    workers: int,
    redis_url: str = "redis://127.0.0.1:6379/15",
    *,
    rate: float | None = None,
) -> PeerResult:
    """Celery with its Redis broker: ``workers`` worker processes on the solo pool. With a
    ``rate``, the measured jobs go one at a time at that rate (see the module's docstring).

    Solo, one process each, rather than one prefork worker of ``workers`` children: prefork
    passes every job from the consuming parent to a child over a pipe, an extra process and
    hop per job, which for a no-op is most of the work (measured here: solo was faster).
    Prefetch stays at Celery's default of 4; results are off (no backend), and so are
    gossip, mingle, heartbeats and remote control, which a no-op job never needs.
    """
    _check_args(messages, workers, rate)
    import redis
    from celery import Celery

    peer = "celery+redis"
    r = redis.Redis.from_url(redis_url, socket_timeout=10.0, socket_connect_timeout=5.0)
    try:
        r.ping()
    except redis.RedisError as exc:
        raise PeerError(f"{peer}: Redis at {redis_url} does not answer: {exc}") from exc
    _delete_keys(r, peer)

    client = Celery("hibana_bench_client", broker=redis_url)
    # As in bench/apps/celery_tasks.py, which reads the same values from the environment.
    client.conf.update(
        broker_transport_options={
            "global_keyprefix": CELERY_KEY_PREFIX,
            "socket_timeout": 10.0,
            "socket_connect_timeout": 5.0,
        },
        broker_connection_retry_on_startup=False,
        task_default_queue=CELERY_QUEUE,
        task_ignore_result=True,
    )

    def send(phase: int, n: int) -> None:
        with client.producer_or_acquire() as producer:
            for _ in range(n):
                client.send_task(TASK, args=(time.time(), phase), producer=producer)

    @contextlib.contextmanager
    def one_by_one() -> Iterator[SendOne]:
        with client.producer_or_acquire() as producer:

            def send_one(sent: float) -> None:
                client.send_task(TASK, args=(sent, PHASE_MEASURED), producer=producer)

            yield send_one

    # Undone in reverse: workers first, then the client, the keys and the Redis connection.
    with (
        _then(r.close),
        _then(lambda: _delete_keys(r, peer)),
        _then(client.close),
        _scratch(peer) as (records, procs, out),
    ):
        env = _worker_env(
            out,
            {
                "BENCH_CELERY_BROKER": redis_url,
                "BENCH_CELERY_QUEUE": CELERY_QUEUE,
                "BENCH_CELERY_KEY_PREFIX": CELERY_KEY_PREFIX,
            },
        )
        argv = [sys.executable, "-m", "celery", "-A", "celery_tasks", "worker"]
        argv += ["--loglevel=WARNING", f"--queues={CELERY_QUEUE}"]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        argv += ["--pool=solo", "--concurrency=1"]
        procs.start([[*argv, f"--hostname=bench{i}@%h"] for i in range(workers)], env)
        return _measure(peer, messages, workers, send, records, procs, rate, one_by_one)


def _delete_keys(r: redis.Redis, peer: str) -> None:
    import redis

    try:
        keys = list(r.scan_iter(match=f"{CELERY_KEY_PREFIX}*", count=1000))
        for i in range(0, len(keys), 1000):
            r.delete(*keys[i : i + 1000])
    except redis.RedisError as exc:
        raise PeerError(f"{peer}: cannot delete its {CELERY_KEY_PREFIX}* keys: {exc}") from exc


# --- Procrastinate on PostgreSQL ---------------------------------------------------------------


def run_procrastinate(
    messages: int, workers: int, dsn: str, *, rate: float | None = None
) -> PeerResult:
    """Procrastinate: ``workers`` asyncio worker processes, each running up to
    ``PROCRASTINATE_CONCURRENCY`` jobs at once, in a database of their own made on the
    server ``dsn`` names (whose own database is used only to create and drop it). With a
    ``rate``, the measured jobs go one ``defer`` at a time at that rate."""
    _check_args(messages, workers, rate)
    import psycopg
    from procrastinate import App, SyncPsycopgConnector
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    peer = "procrastinate+postgresql"
    if conninfo_to_dict(dsn).get("dbname") == PROCRASTINATE_DB:
        raise ValueError(f"dsn must name another database than {PROCRASTINATE_DB}, dropped here")
    admin = make_conninfo(dsn, **PG_TIMEOUTS)
    bench_dsn = make_conninfo(dsn, dbname=PROCRASTINATE_DB, connect_timeout="5")
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
        sql.Identifier(PROCRASTINATE_DB)
    )
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(PROCRASTINATE_DB))

    def admin_do(step: str, *queries: sql.Composed) -> None:
        try:
            with psycopg.connect(admin, autocommit=True) as conn:
                for query in queries:
                    conn.execute(query)
        except psycopg.Error as exc:
            raise PeerError(f"{peer}: {step} failed: {exc}") from exc

    admin_do(f"creating database {PROCRASTINATE_DB}", drop, create)
    with _then(lambda: admin_do(f"dropping database {PROCRASTINATE_DB}", drop)):
        # Its warning about an App made in __main__ is for apps with tasks; this one defers.
        quiet = logging.getLogger("procrastinate.blueprints")
        level, quiet.level = quiet.level, logging.ERROR
        try:
            connector = SyncPsycopgConnector(conninfo=make_conninfo(bench_dsn, **PG_TIMEOUTS))
            app = App(connector=connector)
        finally:
            quiet.setLevel(level)
        app.open()
        with _then(app.close):
            try:
                app.schema_manager.apply_schema()
            except Exception as exc:
                raise PeerError(f"{peer}: applying Procrastinate's schema failed: {exc}") from exc
            deferrer = app.configure_task(TASK)

            def send(phase: int, n: int) -> None:
                for done in range(0, n, PROCRASTINATE_BATCH):
                    batch = min(PROCRASTINATE_BATCH, n - done)
                    sent = time.time()
                    jobs: list[JSONDict] = [{"sent": sent, "phase": phase} for _ in range(batch)]
                    deferrer.batch_defer(*jobs)

            @contextlib.contextmanager
            def one_by_one() -> Iterator[SendOne]:
                def send_one(sent: float) -> None:
                    deferrer.defer(sent=sent, phase=PHASE_MEASURED)

                yield send_one

            with _scratch(peer) as (records, procs, out):
                env = _worker_env(
                    out,
                    {
                        "BENCH_PROCRASTINATE_DSN": bench_dsn,
                        # Fetch loop, heartbeat and abort polling, plus a status update per job.
                        "BENCH_PROCRASTINATE_POOL": str(PROCRASTINATE_CONCURRENCY + 3),
                    },
                )
                argv = [sys.executable, "-m", "procrastinate", "--app=procrastinate_tasks.app"]
                argv += ["--log-level=warning", "worker"]
                argv += [f"--concurrency={PROCRASTINATE_CONCURRENCY}"]
                procs.start([[*argv, f"--name=bench{i}"] for i in range(workers)], env)
                return _measure(peer, messages, workers, send, records, procs, rate, one_by_one)


# --- the script -------------------------------------------------------------------------------


def _versions() -> str:
    names = ("celery", "kombu", "redis", "procrastinate", "psycopg")
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def _positive_rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = math.nan
    if not 0.0 < rate < math.inf:
        raise argparse.ArgumentTypeError(f"not a positive number of jobs/s: {text!r}")
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes per peer")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--only", choices=("celery", "procrastinate"))
    parser.add_argument(
        "--rate",
        type=_positive_rate,
        metavar="R",
        help="send the measured jobs one at a time, open loop at R/s, and report their "
        "latency (default: bulk, all at once as fast as each client goes)",
    )
    args = parser.parse_args(argv)
    rate: float | None = args.rate

    print(f"Python {platform.python_version()}, {os.cpu_count()} cores; {_versions()}")
    if rate is None:
        mode = f"bulk: {args.messages} jobs enqueued at once, as fast as each client goes"
    else:
        mode = f"steady rate: {args.messages} jobs one at a time, open loop at {rate:g}/s"
    print(f"mode: {mode}; {args.workers} worker processes per peer")
    runs: list[tuple[str, Callable[[], PeerResult]]] = [
        ("celery", lambda: run_celery(args.messages, args.workers, args.redis_url, rate=rate)),
        (
            "procrastinate",
            lambda: run_procrastinate(args.messages, args.workers, args.dsn, rate=rate),
        ),
    ]
    results: list[PeerResult] = []
    failed = False
    for key, run in runs:
        if args.only and key != args.only:
            continue
        try:
            results.append(run())
        except PeerError as exc:
            failed = True
            print(f"FAILED: {exc}", file=sys.stderr)

    head = ("peer", "messages", "seconds", "msg/s", "p50 ms", "p99 ms", "enqueue s")
    lag_head = "" if rate is None else f" {'max lag ms':>10}"
    print("\n{:<26} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}".format(*head) + lag_head)
    for res in results:
        lag = "" if rate is None else f" {res.send_lag_ms:>10.1f}"
        print(
            f"{res.name:<26} {res.messages:>8} {res.seconds:>8.2f} {res.rate:>8.0f} "
            f"{res.p50_ms:>8.1f} {res.p99_ms:>8.1f} {res.enqueue_seconds:>9.2f}{lag}"
        )
    print(f"({mode})")
    return 1 if failed else 0


if __name__ == "__main__":
    _here = os.path.realpath(os.path.dirname(__file__))
    sys.path[:] = [p for p in sys.path if not p or os.path.realpath(p) != _here]
    sys.exit(main())
