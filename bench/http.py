"""HTTP throughput of hibana beside its peers, on this machine, one server at a time.

Four servers answer the same hello function, and a fifth answers without one:

* hibana (sync): examples/hello, a sync function run on the worker's thread pool;
* hibana (async): bench/apps/hello_async, the same function as ``async def``;
* raw ASGI: bench/apps/raw_asgi.py under uvicorn with hibana's settings (httptools,
  uvloop, access log off, same worker count): the ceiling for hibana's HTTP path;
* functions-framework: Google's, serving bench/apps/ff_hello.py the way its CLI does;
* canned: bench/apps/canned.py, which parses nothing and answers every request with the
  same bytes on uvloop: the most a Python server reaches under this load on this machine,
  since wrk shares its cores (what wrk's own CPU per request says too).

Each is started on a free port, checked with one GET, loaded with wrk (a warm-up run,
then the measured one) and stopped before the next starts, so they never compete.
Prints a table (requests/s, p50/p99 latency, the server's CPU time per request, and
how busy the rest of the machine was meanwhile, which skews everything if it was) and
the ratios against hibana's targets; exits 0 whatever the numbers
(it is a measurement, not a test) and non-zero only when a server does not start or
answer.

Run from anywhere: .venv/bin/python bench/http.py [--duration 10]

This file is named http.py, so run as a script its folder is sys.path[0] and would
shadow the standard library's ``http`` package: nothing here imports that (the check
GET speaks HTTP/1.1 over a plain socket) and the servers run in their own processes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "bench" / "apps"
PATH = "/hello/you"
#: How long a server gets from its start to its first good answer.
START_TIMEOUT = 60.0
#: How long a server gets to exit after SIGTERM before its process group is killed.
STOP_TIMEOUT = 20.0
RAW_ASGI_TARGET = 0.7
FF_TARGET = 10.0
#: Cores' worth of other work during a measured run above which the report warns.
OTHER_CORES_WARNING = 0.25


class BenchError(Exception):
    """A server did not start, answer or stop, or the load generator failed."""


@dataclass(frozen=True)
class Server:
    key: str
    name: str
    #: The command; ``{port}`` is replaced by the port it gets.
    argv: list[str]
    expect: str
    env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: What is asked for, by wrk and by the first check.
    path: str = PATH

    def command(self, port: int | str) -> list[str]:
        return [arg.replace("{port}", str(port)) for arg in self.argv]


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    #: CPU time (user + system) the server's processes used per request, in microseconds.
    cpu_us: float = 0.0
    #: Cores' worth of CPU the rest of the machine (not the server, not wrk) used meanwhile.
    other_cores: float = 0.0
    #: CPU time wrk itself used per request, in microseconds.
    wrk_us: float = 0.0


@dataclass
class Row:
    server: Server
    loads: list[Load] = field(default_factory=list)
    processes: int = 0
    server_header: str = ""

    @property
    def load(self) -> Load:
        """The round with the median requests/s, among the quiet rounds if there are any
        (rounds during which other work used the machine are left out)."""
        quiet = [load for load in self.loads if load.other_cores <= OTHER_CORES_WARNING]
        ordered = sorted(quiet or self.loads, key=lambda load: load.rps)
        return ordered[(len(ordered) - 1) // 2]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def make_servers(workers: int) -> list[Server]:
    py = sys.executable
    hibana = [py, "-m", "hibana", "serve"]
    hibana_tail = ["--host", "127.0.0.1", "--port", "{port}", "--workers", str(workers)]
    ff_threads = os.environ.get("THREADS", str((os.cpu_count() or 1) * 4))
    return [
        Server(
            "sync",
            "hibana (sync)",
            [*hibana, str(ROOT / "examples" / "hello"), *hibana_tail],
            "Hello you",
            notes=[f"hibana {_version('hibana')}, sync def on the worker's thread pool"],
        ),
        Server(
            "async",
            "hibana (async)",
            [*hibana, str(APPS / "hello_async"), *hibana_tail],
            "Hello you",
            notes=[f"hibana {_version('hibana')}, async def on the worker's event loop"],
        ),
        Server(
            "raw",
            "raw ASGI",
            [
                py,
                "-m",
                "uvicorn",
                "raw_asgi:app",
                "--app-dir",
                str(APPS),
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
                "--workers",
                str(workers),
                "--http",
                "httptools",
                "--loop",
                "uvloop",
                "--lifespan",
                "off",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            "Hello world",
            notes=[f"uvicorn {_version('uvicorn')}, httptools, uvloop, access log off"],
        ),
        Server(
            "ff",
            "functions-framework",
            [
                py,
                "-m",
                "functions_framework",
                "--target",
                "hello",
                "--source",
                str(APPS / "ff_hello.py"),
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
            ],
            "Hello world",
            env={"WORKERS": str(workers)},
            notes=[
                f"functions-framework {_version('functions-framework')}: Flask "
                f"{_version('flask')} (WSGI) under gunicorn {_version('gunicorn')}, "
                f"its production server, gthread workers",
                f"WORKERS={workers} (env; its default is 1), THREADS={ff_threads} "
                "(its default: 4 x cpu_count)",
            ],
        ),
        Server(
            "canned",
            "canned bytes",
            [py, str(APPS / "canned.py"), "{port}", str(workers)],
            "Hello world",
            notes=[
                f"uvloop {_version('uvloop')}; no HTTP parsing, no ASGI, no function: "
                "the same bytes for every request"
            ],
        ),
    ]


# -- the servers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dechunk(body: bytes) -> bytes:
    out = []
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out.append(body[:size])
        body = body[size + 2 :]
    return b"".join(out)


def http_get(port: int, path: str, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """One GET over a fresh connection: the status, the headers (lower-cased names), the body."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request.encode())
        while data := sock.recv(65536):
            chunks.append(data)
    head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not sep:
        raise ConnectionError("the connection closed before a whole response head arrived")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    elif "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return int(status_line.split()[1]), headers, body


def _group_stats(pgid: int) -> dict[int, float]:
    """The live (not zombie) processes in process group ``pgid``: the CPU seconds (user +
    system) each has used so far, by pid."""
    members = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        # fields[0] is field 3 of proc(5): state; 2: pgrp; 11, 12: utime, stime.
        if int(fields[2]) == pgid and fields[0] != "Z":
            members[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    return members


def _machine_busy() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat: all but idle, iowait)."""
    with open("/proc/stat") as stat:
        ticks = [int(n) for n in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    """CPU seconds used by this process's reaped children (the wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _group_members(pgid: int) -> list[int]:
    return list(_group_stats(pgid))


def _tail(log: IO[bytes], lines: int = 20) -> str:
    log.seek(0)
    text = log.read().decode(errors="replace").rstrip()
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def start(server: Server, port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        server.command(port),
        cwd=ROOT,
        env={**os.environ, **server.env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # hibana's JSON log lines: one or two per request
        stderr=log,
        start_new_session=True,  # its own process group, so stop() can find every worker
    )


def wait_ready(
    server: Server, proc: subprocess.Popen[bytes], port: int, log: IO[bytes]
) -> dict[str, str]:
    """Wait for the first answer to GET its path; it must be 200 with the expected body."""
    deadline = time.monotonic() + START_TIMEOUT
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise BenchError(
                f"{server.name} exited with code {code} before answering; its stderr:\n"
                + _tail(log)
            )
        try:
            status, headers, body = http_get(port, server.path, timeout=5)
        except (OSError, ValueError, IndexError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
            continue
        if status != 200 or body.decode(errors="replace") != server.expect:
            raise BenchError(
                f"{server.name} answered GET {server.path} with {status} {body[:200]!r}; "
                f"expected 200 {server.expect!r}"
            )
        return headers
    raise BenchError(
        f"{server.name} did not answer GET {server.path} within {START_TIMEOUT:g}s "
        f"({last_error}); its stderr:\n" + _tail(log)
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server and wait; whatever of its group is left after that is killed."""
    pgid = proc.pid
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"  (pid {pgid} ignored SIGTERM for {STOP_TIMEOUT:g}s; killing it)", flush=True)
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 5
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _group_members(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


# -- the load ------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    hint = "install it: apt-get install wrk (Debian, Ubuntu) or brew install wrk (macOS)"
    if os.geteuid() != 0:
        sys.exit(f"error: this benchmark needs wrk, which is not on PATH; {hint}")
    print("wrk is not on PATH; installing it: apt-get install -y wrk", flush=True)
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL)
        subprocess.run(install, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        sys.exit(f"error: installing wrk with apt-get failed; {hint}")
    return found


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _time_ms(output: str, percentile: str) -> float:
    found = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
    if found is None:
        raise BenchError(f"no {percentile}% latency in wrk's output:\n{output}")
    return float(found[1]) * _UNITS_MS[found[2]]


def parse_wrk(output: str) -> Load:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    count = re.search(r"^\s*(\d+) requests in", output, re.M)
    if rps is None or count is None:
        raise BenchError(f"cannot read wrk's output:\n{output}")
    errors = 0
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx[1])
    return Load(
        rps=float(rps[1]),
        p50_ms=_time_ms(output, "50"),
        p99_ms=_time_ms(output, "99"),
        requests=int(count[1]),
        errors=errors,
    )


def run_wrk(wrk: str, url: str, seconds: int, threads: int, connections: int) -> Load:
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {seconds + 60}s") from None
    if done.returncode != 0:
        raise BenchError(f"wrk exited with code {done.returncode}:\n{done.stderr}{done.stdout}")
    return parse_wrk(done.stdout)


def measure(server: Server, row: Row, args: argparse.Namespace, wrk: str) -> None:
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = start(server, port, log)
        try:
            headers = wait_ready(server, proc, port, log)
            row.server_header = headers.get("server", "")
            url = f"http://127.0.0.1:{port}{server.path}"
            if args.warmup > 0:
                run_wrk(wrk, url, args.warmup, args.threads, args.connections)
            # Counted after the warm-up, when every worker has started.
            before = _group_stats(proc.pid)
            row.processes = len(before)
            busy_before, wrk_before, started = _machine_busy(), _children_cpu(), time.monotonic()
            load = run_wrk(wrk, url, args.duration, args.threads, args.connections)
            wall = time.monotonic() - started
            busy, wrk_cpu = _machine_busy() - busy_before, _children_cpu() - wrk_before
            after = _group_stats(proc.pid)
            cpu = sum(after[pid] - before.get(pid, 0.0) for pid in after)
            load.cpu_us = cpu / max(load.requests, 1) * 1e6
            load.other_cores = max(0.0, busy - cpu - wrk_cpu) / wall
            load.wrk_us = wrk_cpu / max(load.requests, 1) * 1e6
            if proc.poll() is not None:
                raise BenchError(
                    f"{server.name} exited with code {proc.returncode} during the load; "
                    "its stderr:\n" + _tail(log)
                )
            row.loads.append(load)
        finally:
            stop(proc)


# -- the report ----------------------------------------------------------------------------


def _hibana_source() -> str:
    """Where the servers' ``hibana`` comes from, and which commit it is when that is git."""
    spec = importlib.util.find_spec("hibana")
    if spec is None or spec.origin is None:
        return "not importable"
    package = Path(spec.origin).parent
    shown = f"{_version('hibana')} from {package}"
    try:
        git = ["git", "-C", str(package)]
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "."], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return shown
    return shown + f", commit {commit}" + (" + uncommitted changes" if dirty else "")


def _machine(wrk: str) -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = " (" + line.partition(":")[2].strip() + ")"
                break
    except OSError:
        pass
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split()
    return (
        f"machine: nproc {cpus}{model}, {platform.system()} {platform.release()} "
        f"{platform.machine()}\n"
        f"python:  {platform.python_implementation()} {platform.python_version()} "
        f"({sys.executable})\n"
        f"wrk:     {' '.join(wrk_version[:2])}\n"
        f"hibana:  {_hibana_source()}"
    )


def print_table(
    rows: list[Row], args: argparse.Namespace, what: str = f"hello, GET {PATH}"
) -> None:
    rounds = f", median of {args.rounds} rounds" if args.rounds > 1 else ""
    print(
        f"\n{what} · wrk -t{args.threads} -c{args.connections} · "
        f"{args.warmup}s warm-up + {args.duration}s measured{rounds} · "
        f"{args.workers} worker processes each\n"
    )
    header = (
        f"{'server':<22}{'requests/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'CPU us/req':>12}{'wrk us':>8}{'errors':>8}{'procs':>7}{'other':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        load = row.load
        print(
            f"{row.server.name:<22}{load.rps:>12,.0f}{load.p50_ms:>9.2f}{load.p99_ms:>9.2f}"
            f"{load.cpu_us:>12.0f}{load.wrk_us:>8.0f}{load.errors:>8}{row.processes:>7}"
            f"{load.other_cores:>7.2f}"
        )
    print(
        "\nCPU us/req: user + system CPU time of all the server's processes during the "
        "measured run, per\n  request (wrk shares the cores, so requests/s depends on its "
        "share too).\n"
        "wrk us: wrk's own CPU time per request, on the same cores.\n"
        "errors: wrk's socket errors plus non-2xx answers.\n"
        "procs: the server's processes (hibana: supervisor, zygote, workers; uvicorn: main,\n"
        "  multiprocessing's resource tracker, workers; gunicorn: arbiter, workers).\n"
        "other: cores' worth of CPU the rest of the machine used during the measured run\n"
        "  (not the server, not wrk; kernel network work not charged to either lands here too)."
    )
    busiest = max(row.load.other_cores for row in rows)
    if busiest > OTHER_CORES_WARNING:
        print(
            f"WARNING: other work used up to {busiest:.2f} cores during a measured run; "
            "these numbers\n  are skewed by it. Rerun on a quiet machine"
            + (" (or with --rounds 3)." if args.rounds == 1 else ".")
        )
    print()
    for row in rows:
        server_header = f"; Server: {row.server_header}" if row.server_header else ""
        print(f"{row.server.name}: {row.server.notes[0]}{server_header}")
        for note in row.server.notes[1:]:
            print(f"    {note}")
        print(f"    $ {shlex.join(_shown(row.server))}   (from {ROOT})")
    if args.rounds > 1:
        print()
        for row in rows:
            each = ", ".join(
                f"{load.rps:,.0f} (other {load.other_cores:.2f})" for load in row.loads
            )
            print(f"{row.server.name} requests/s by round: {each}")
        print(
            f"(the table shows each server's median round, leaving out rounds with other > "
            f"{OTHER_CORES_WARNING:g} when it has a quieter one;\n the ratios below are the "
            "median of each round's own ratios)"
        )


def _shown(server: Server) -> list[str]:
    env = [f"{name}={value}" for name, value in server.env.items()]
    argv = server.command("PORT")
    if argv[0] == sys.executable and not os.path.relpath(argv[0], ROOT).startswith(".."):
        argv[0] = os.path.relpath(argv[0], ROOT)
    return [*env, *[a.replace(str(ROOT) + os.sep, "") for a in argv]]


def round_ratio(top: Row, bottom: Row) -> float:
    """The median of the two servers' requests/s ratios round by round (each round
    measures them minutes apart at most, so a machine that gets busier or quieter over the
    run skews a round's two sides alike), among the rounds quiet for both if there are any.
    With an even count it is the mean of the middle two: taking each server's median
    round instead picked each one's slower round with two rounds, pairing rounds that were
    not measured together."""
    pairs = list(zip(top.loads, bottom.loads, strict=True))
    quiet = [(a, b) for a, b in pairs if max(a.other_cores, b.other_cores) <= OTHER_CORES_WARNING]
    return statistics.median(a.rps / b.rps for a, b in quiet or pairs)


def print_ratios(rows: list[Row]) -> None:
    by_key = {row.server.key: row for row in rows}
    checks = [
        ("sync", "raw", RAW_ASGI_TARGET),
        ("async", "raw", RAW_ASGI_TARGET),
        ("sync", "ff", FF_TARGET),
    ]
    lines = []
    for top, bottom, target in checks:
        if top not in by_key or bottom not in by_key:
            continue
        a, b = by_key[top], by_key[bottom]
        ratio = round_ratio(a, b)
        verdict = "PASS" if ratio >= target else "MISS"
        label = f"{a.server.name} / {b.server.name}"
        goal = f"{target:g}x"
        lines.append(f"{label:<38}{ratio:>6.2f}x   target >= {goal:<5} {verdict}")
    if lines:
        rounds = len(rows[0].loads)
        each = " (median of the rounds' ratios)" if rounds > 1 else ""
        print(f"\nratios (requests/s){each}")
        print("\n".join(lines))
    ff, canned = by_key.get("ff"), by_key.get("canned")
    hibanas = [by_key[key] for key in ("sync", "async") if key in by_key]
    if ff is not None and ff.load.cpu_us > 0:
        print("\nratios (CPU per request: what each costs the machine, whatever wrk's share)")
        for row in [*hibanas, *([by_key["raw"]] if "raw" in by_key else [])]:
            times = ff.load.cpu_us / row.load.cpu_us
            label = f"{ff.server.name} / {row.server.name}"
            print(
                f"{label:<38}{times:>6.2f}x   ({ff.load.cpu_us:.0f} us / {row.load.cpu_us:.0f} us)"
            )
    if ff is not None and canned is not None:
        need = ff.load.rps * FF_TARGET
        print(
            f"\n{FF_TARGET:g}x {ff.server.name} is {need:,.0f} requests/s here; "
            f"{canned.server.name}, which does no work, reached {canned.load.rps:,.0f}\n  "
            f"({canned.load.rps / ff.load.rps:.1f}x {ff.server.name}), with wrk using "
            f"{canned.load.wrk_us:.0f} us of CPU a request on the same cores"
        )
    raw = by_key.get("raw")
    if raw is not None and hibanas and raw.load.cpu_us > 0:
        budget = raw.load.cpu_us / RAW_ASGI_TARGET
        print(
            f"\nCPU per request vs raw ASGI ({raw.load.cpu_us:.0f} us): at that cost, "
            f"{RAW_ASGI_TARGET:g}x its requests/s leaves hibana about {budget:.0f} us"
        )
        for row in hibanas:
            extra = row.load.cpu_us - raw.load.cpu_us
            times = row.load.cpu_us / raw.load.cpu_us
            print(f"{row.server.name:<38}{extra:>+6.0f} us   ({times:.1f}x raw ASGI's)")


#: The options that count something, so must be 1 or more.
WRK_COUNTS = ("connections", "threads", "workers")
_COUNTS = ("duration", *WRK_COUNTS, "rounds")


def add_wrk_options(parser: argparse.ArgumentParser) -> None:
    """How wrk loads a server, and how many workers the server gets."""
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per server")


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """The options of a wrk run against servers one at a time (``measure``)."""
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per server")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds per server")
    add_wrk_options(parser)
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure everything this often; report medians"
    )


def check_counts(
    parser: argparse.ArgumentParser, args: argparse.Namespace, counts: tuple[str, ...]
) -> None:
    """Refuse, naming it, any of the options ``counts`` that is below 1."""
    for name in counts:
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")


def check_load_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, counts: tuple[str, ...] = ()
) -> None:
    """Refuse the load options (and ``counts``, more options that must be 1 or more) that
    make no sense, naming them."""
    check_counts(parser, args, (*_COUNTS, *counts))
    if args.warmup < 0:
        parser.error("--warmup must be 0 or more")


def parse_args(argv: list[str]) -> argparse.Namespace:
    keys = [server.key for server in make_servers(1)]
    parser = argparse.ArgumentParser(
        description="hibana's HTTP throughput beside raw ASGI (uvicorn) and functions-framework."
    )
    add_load_options(parser)
    parser.add_argument(
        "--only",
        action="append",
        choices=keys,
        help="run only these servers (repeatable); ratios need both sides",
    )
    args = parser.parse_args(argv)
    check_load_options(parser, args)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    servers = [s for s in make_servers(args.workers) if args.only is None or s.key in args.only]
    if (
        any(s.key == "ff" for s in servers)
        and importlib.util.find_spec("functions_framework") is None
    ):
        print(
            "error: functions-framework is not installed in this Python; "
            "install the bench extra: pip install -e '.[bench]'",
            file=sys.stderr,
        )
        return 2
    wrk = ensure_wrk()
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(_machine(wrk), flush=True)
    rows = [Row(server) for server in servers]
    try:
        for round_no in range(args.rounds):
            # Each round starts one server further on, so none is always first (or last)
            # after the machine's idle spell or another server's load.
            shift = round_no % len(rows)
            for row in rows[shift:] + rows[:shift]:
                step = f" (round {round_no + 1}/{args.rounds})" if args.rounds > 1 else ""
                print(f"  measuring {row.server.name}{step} ...", flush=True)
                measure(row.server, row, args, wrk)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_table(rows, args)
    print_ratios(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
