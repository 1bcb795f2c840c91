"""Cold start of hibana scaled to zero: how long a request waits when no worker runs.

For each app and each prewarm mode, one host is started with
``--min-instances 0 --max-instances 1 --idle-timeout 0.2 --prewarm MODE`` (``--idle-timeout``
changes the 0.2); then, ``--runs`` times (30):

1. wait until the host runs no worker (GET /status on its admin endpoint, whose address
   is in APP_DIR/.hibana/host.json, until ``workers`` is empty), then ``--settle`` more;
2. time one GET on a fresh TCP connection, from just before connecting to the last byte
   of the response (``Connection: close``, read to Content-Length): the cold request;
3. time one more GET on another fresh connection at once: the warm request, served by
   the worker the cold one started.

The apps (bench/apps/coldstart_*):

* hello: one sync function returning "Hello"; its module imports hibana only;
* heavy: the same function behind module-level imports of Flask, Jinja2, httpx, rich,
  pydantic (and a model) and a few big stdlib packages, all installed with hibana's test
  and bench extras. Before the hosts start, each app's function_app.py is imported in
  fresh interpreters, alone and after hibana's worker modules, and the times printed.

The prewarm modes start a worker by: app, a fork of a zygote that has imported the app;
runtime, a fork of a zygote that has imported hibana only, which then imports the app;
none, a fresh interpreter that imports everything.

Also printed: the hello app's ``cold_start_ms`` as the host logged it (the JSON log line of
each cold invocation, matched to its request by ``x-invocation-id``) beside the client's
figure. The host counts from the moment the supervisor asks for a worker to the start of
the invocation, so the client's figure is larger by the supervisor's reaction to the
connection, writing the response and the client's own overhead.

Cold starts are mostly CPU work, so each row also reports how many cores' worth of CPU the
rest of the machine used meanwhile, with a warning when that is more than a little.

Exits 0 whatever the numbers (it is a measurement, not a test); non-zero only when a host
does not start, answer (within ``--timeout``) or scale to zero. Such a row stops there and
is reported with the runs it completed; the other rows still run.

Run from /work/main: .venv/bin/python bench/coldstart.py [--runs 30]

Nothing here imports the standard library's ``http`` package (nor urllib.request or httpx,
which do): bench/http.py sits in this script's folder, sys.path[0], and would shadow it.
The requests speak HTTP/1.1 over plain sockets, which also keeps the client's overhead low.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "bench" / "apps"
PATH = "/hello"
EXPECT = b"Hello"
MODES = ("app", "runtime", "none")
#: The target: the median cold request with prewarm=app, in ms.
TARGET_MS = 25.0
#: How long a host gets from its start to printing its address.
START_TIMEOUT = 60.0
#: How long a host gets to retire its worker once idle, on top of its idle timeout.
ZERO_TIMEOUT = 30.0
#: How long a host gets to exit after SIGTERM before its process group is killed.
STOP_TIMEOUT = 20.0
#: Cores' worth of other work while a row runs above which the report warns.
OTHER_CORES_WARNING = 0.1
#: How often the admin endpoint is asked whether the host is at zero workers.
POLL_INTERVAL = 0.01
LISTENING = re.compile(rb"Listening on http://127\.0\.0\.1:(\d+)")


class BenchError(Exception):
    """A host did not start, answer or scale to zero."""


@dataclass(frozen=True)
class AppSpec:
    key: str
    folder: Path
    description: str


APP_SPECS = (
    AppSpec("hello", APPS / "coldstart_hello", "sync function returning 'Hello'"),
    AppSpec("heavy", APPS / "coldstart_heavy", "same, with Flask, pydantic, httpx, rich, ..."),
)


@dataclass
class Sample:
    cold_ms: float
    warm_ms: float
    invocation_id: str
    #: cold_start_ms from the host's log line of the cold invocation (None: not found).
    host_ms: float | None = None
    host_said_cold: bool = False


@dataclass
class Result:
    app: AppSpec
    mode: str
    samples: list[Sample] = field(default_factory=list)
    #: Why the row stopped early: the host did not start, answer or scale to zero.
    failure: str | None = None
    #: Cores' worth of CPU the rest of the machine (not the host, not this script) used
    #: while the row ran: other work skews cold starts, which are mostly CPU.
    other_cores: float | None = None

    def cold(self) -> list[float]:
        return [s.cold_ms for s in self.samples]

    def warm(self) -> list[float]:
        return [s.warm_ms for s in self.samples]

    def host(self) -> list[float]:
        return [s.host_ms for s in self.samples if s.host_ms is not None]


# -- HTTP over plain sockets -----------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed_ms: float


def get(port: int, path: str, timeout: float) -> Reply:
    """One GET on a new connection; timed from just before connecting to the response's last
    byte (by Content-Length, so the server closing the connection is not counted)."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request.encode())
        data = b""
        head_end = -1
        length: int | None = None
        while True:
            chunk = sock.recv(65536)
            if chunk:
                data += chunk
            if head_end < 0:
                head_end = data.find(b"\r\n\r\n")
                if head_end >= 0:
                    found = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", data[:head_end])
                    length = int(found[1]) if found else None
            if head_end >= 0 and length is not None and len(data) >= head_end + 4 + length:
                break
            if not chunk:
                break
        elapsed = (time.perf_counter() - started) * 1000
    if head_end < 0:
        raise ConnectionError("the connection closed before a whole response head arrived")
    status_line, *lines = data[:head_end].decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = data[head_end + 4 :]
    if length is not None:
        body = body[:length]
    return Reply(int(status_line.split()[1]), headers, body, elapsed)


# -- a host ----------------------------------------------------------------------------------


def host_argv(folder: Path | str, mode: str, idle_timeout: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hibana",
        "serve",
        str(folder),
        "--port",
        "0",
        "--min-instances",
        "0",
        "--max-instances",
        "1",
        "--idle-timeout",
        f"{idle_timeout:g}",
        "--prewarm",
        mode,
    ]


def _tail(log: IO[bytes], lines: int = 20) -> str:
    log.seek(0)
    text = log.read().decode(errors="replace").rstrip()
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


class Host:
    """A ``hibana serve`` process on a free port, scaled to zero between requests."""

    def __init__(
        self,
        app: AppSpec,
        mode: str,
        args: argparse.Namespace,
        stdout: IO[bytes],
        stderr: IO[bytes],
    ) -> None:
        self.app = app
        self.mode = mode
        self.idle_timeout: float = args.idle_timeout
        self.timeout: float = args.timeout
        self.stdout = stdout
        self.stderr = stderr
        self.argv = host_argv(app.folder, mode, self.idle_timeout)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.admin: tuple[str, int] = ("127.0.0.1", 0)

    @property
    def name(self) -> str:
        return f"host for {self.app.key} (prewarm={self.mode})"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self.stdout,  # JSON log lines: read after the host stops
            stderr=self.stderr,
            start_new_session=True,  # its own process group, so stop() finds every process
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            self._check_alive("before printing its address")
            self.stderr.seek(0)
            found = LISTENING.search(self.stderr.read())
            if found:
                self.port = int(found[1])
                break
            time.sleep(0.02)
        else:
            raise BenchError(
                f"{self.name} printed no 'Listening on' line within {START_TIMEOUT:g}s; "
                "its stderr:\n" + _tail(self.stderr)
            )
        self.admin = self._admin_address()

    def _check_alive(self, when: str) -> None:
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None:
            raise BenchError(
                f"{self.name} exited with code {code} {when}; its stderr:\n" + _tail(self.stderr)
            )

    def _admin_address(self) -> tuple[str, int]:
        """The admin endpoint's address from APP_DIR/.hibana/host.json, written by this host
        (its pid) before it printed its address."""
        assert self.proc is not None
        path = self.app.folder / ".hibana" / "host.json"
        try:
            info: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BenchError(f"{self.name}: cannot read {path}: {exc}") from None
        if info.get("pid") != self.proc.pid:
            raise BenchError(
                f"{path} names pid {info.get('pid')}, not {self.name} (pid {self.proc.pid}); "
                "is another host serving that folder?"
            )
        found = re.fullmatch(r"http://([\d.]+):(\d+)", str(info.get("admin", "")))
        if found is None:
            raise BenchError(f"{path}: no admin address in {info}")
        return found[1], int(found[2])

    def status(self) -> dict[str, Any]:
        """GET /status on the admin endpoint."""
        request = b"GET /status HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
        chunks = []
        with socket.create_connection(self.admin, timeout=5) as sock:
            sock.sendall(request)
            while data := sock.recv(65536):
                chunks.append(data)
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise BenchError(f"{self.name}: the admin endpoint answered {head[:100]!r}")
        status: dict[str, Any] = json.loads(body)
        return status

    def wait_for_zero(self) -> None:
        limit = self.idle_timeout + ZERO_TIMEOUT
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            self._check_alive("while scaling to zero")
            try:
                if not self.status()["workers"]:
                    return
            except (OSError, ValueError) as exc:
                raise BenchError(f"{self.name}: GET /status failed: {exc}") from None
            time.sleep(POLL_INTERVAL)
        raise BenchError(
            f"{self.name} still ran a worker {limit:g}s after its last request "
            f"(idle timeout {self.idle_timeout:g}s); its stderr:\n" + _tail(self.stderr)
        )

    def request(self) -> Reply:
        try:
            reply = get(self.port, PATH, self.timeout)
        except TimeoutError:
            self._check_alive(f"during GET {PATH}")
            raise BenchError(
                f"{self.name}: no response to GET {PATH} within {self.timeout:g}s"
            ) from None
        except OSError as exc:
            self._check_alive(f"during GET {PATH}")
            raise BenchError(f"{self.name}: GET {PATH} failed: {exc}") from None
        if reply.status != 200 or reply.body != EXPECT:
            raise BenchError(
                f"{self.name} answered GET {PATH} with {reply.status} {reply.body[:200]!r}; "
                f"expected 200 {EXPECT!r}"
            )
        return reply

    def stop(self) -> None:
        """SIGTERM the host and wait; whatever of its group is left after that is killed."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        deadline = time.monotonic() + 5
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _group_alive(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def _group(pgid: int) -> list[list[str]]:
    """The /proc/PID/stat fields (from field 3, the state, on) of the live (not zombie)
    processes in process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(fields)
    return found


def _group_alive(pgid: int) -> bool:
    return bool(_group(pgid))


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) the host's process group has used: its live processes'
    own and that of the children they have reaped (exited workers count in the zygote's)."""
    ticks = sum(int(f[11]) + int(f[12]) + int(f[13]) + int(f[14]) for f in _group(pgid))
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat: all but idle, iowait)."""
    with open("/proc/stat") as stat:
        ticks = [int(n) for n in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def cold_lines(log: IO[bytes]) -> dict[str, dict[str, Any]]:
    """The host's JSON log lines of cold invocations, by invocation id."""
    log.seek(0)
    found = {}
    for raw in log.read().splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict) and line.get("msg") == "invocation" and line.get("cold_start"):
            found[str(line.get("invocation_id"))] = line
    return found


def measure(app: AppSpec, mode: str, args: argparse.Namespace) -> Result:
    """One host, ``args.runs`` cold + warm pairs; a failure ends the row and is kept."""
    result = Result(app, mode)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        host = Host(app, mode, args, out, err)
        try:
            host.start()
            assert host.proc is not None
            host_before, busy_before, own_before = (
                group_cpu(host.proc.pid),
                machine_busy(),
                own_cpu(),
            )
            started = time.monotonic()
            for _ in range(args.runs):
                host.wait_for_zero()
                time.sleep(args.settle)
                cold = host.request()
                warm = host.request()
                result.samples.append(
                    Sample(
                        cold.elapsed_ms, warm.elapsed_ms, cold.headers.get("x-invocation-id", "")
                    )
                )
            if host.proc.poll() is None:  # the group is gone once the host has exited
                used = group_cpu(host.proc.pid) - host_before + own_cpu() - own_before
                wall = time.monotonic() - started
                result.other_cores = max(0.0, machine_busy() - busy_before - used) / wall
        except BenchError as exc:
            result.failure = str(exc)
        finally:
            host.stop()
        logged = cold_lines(out)
        for sample in result.samples:
            line = logged.get(sample.invocation_id)
            if line is not None:
                sample.host_said_cold = True
                sample.host_ms = float(line["cold_start_ms"])
    return result


# -- the apps' import cost -------------------------------------------------------------------

_IMPORT_PROBE = """
import importlib.util, sys, time
if sys.argv[2] == "after-hibana":
    import hibana.host.worker  # what a worker has imported before the app: prewarm=runtime
started = time.perf_counter()
spec = importlib.util.spec_from_file_location("function_app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print((time.perf_counter() - started) * 1000)
"""


def import_ms(app: AppSpec, after_hibana: bool, rounds: int = 5) -> float:
    """The median time to import the app's function_app.py in a fresh interpreter."""
    times = []
    for _ in range(rounds):
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _IMPORT_PROBE,
                str(app.folder / "function_app.py"),
                "after-hibana" if after_hibana else "fresh",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise BenchError(f"importing {app.folder}/function_app.py failed:\n{done.stderr}")
        times.append(float(done.stdout.strip()))
    return statistics.median(times)


def interpreter_ms(rounds: int = 5) -> float:
    """The median wall time of ``python -c pass``: an interpreter's own start and exit."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


# -- the report ------------------------------------------------------------------------------


def tail_stat(values: list[float]) -> float:
    """p99 (nearest rank) with 100 values or more, else the maximum."""
    ordered = sorted(values)
    if len(ordered) < 100:
        return ordered[-1]
    rank = max(0, -(-99 * len(ordered) // 100) - 1)
    return ordered[rank]


def _machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = " (" + line.partition(":")[2].strip() + ")"
                break
    return (
        f"machine: nproc {cpus}{model}, {platform.system()} {platform.release()} "
        f"{platform.machine()}\n"
        f"python:  {platform.python_implementation()} {platform.python_version()} "
        f"({sys.executable})"
    )


def _cores(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    tail = "p99 ms" if args.runs >= 100 else "max ms"
    print(
        f"\ncold start from zero workers, GET {PATH} on a fresh connection, {args.runs} runs "
        f"per row\n(idle timeout {args.idle_timeout:g}s, settle {args.settle:g}s after the host "
        "reports zero workers)\n"
    )
    header = (
        f"{'app':<7}{'prewarm':<9}{'runs':>5}{'median ms':>11}{tail:>9}{'min ms':>9}"
        f"{'warm median ms':>16}{'host cold_start_ms median':>27}{'other':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        runs = f"{len(r.samples)}{'!' if r.failure else ''}"
        if not r.samples:
            print(f"{r.app.key:<7}{r.mode:<9}{runs:>5}   FAILED (below)")
            continue
        cold, host = r.cold(), r.host()
        host_median = f"{statistics.median(host):.2f}" if host else "n/a"
        print(
            f"{r.app.key:<7}{r.mode:<9}{runs:>5}{statistics.median(cold):>11.2f}"
            f"{tail_stat(cold):>9.2f}{min(cold):>9.2f}"
            f"{statistics.median(r.warm()):>16.2f}{host_median:>27}{_cores(r.other_cores):>7}"
        )
    print(
        f"\nmedian, {tail.split()[0]}, min: the cold request, client side, from just before "
        "connecting to the\n  response's last byte.\n"
        "warm median: the request right after it, on a new connection to the same worker.\n"
        "host cold_start_ms: what the host logged for the cold invocation, from the "
        "supervisor asking\n  for a worker to the invocation starting.\n"
        "other: cores' worth of CPU the rest of the machine (not the host, not this script) "
        "used\n  while the row ran.\n"
        "runs with !: the row stopped early, after that many good runs; why is below."
    )
    busiest = max((r.other_cores or 0.0 for r in results), default=0.0)
    if busiest > OTHER_CORES_WARNING:
        print(
            f"WARNING: other work used up to {busiest:.2f} cores while a row ran; cold starts are "
            "mostly\n  CPU, so these numbers are skewed by it. Rerun on a quiet machine."
        )
    for r in results:
        if r.failure:
            print(f"FAILED {r.app.key}, prewarm={r.mode}: {r.failure}")
    if any(r.failure and "no response" in r.failure for r in results):
        print(
            "  (hint: a worker still starting when --idle-timeout passes can be retired "
            "before it\n  accepts; compare the app's start-up above, and rerun with a longer "
            "--idle-timeout)"
        )
    unmatched = sum(not s.host_said_cold for r in results for s in r.samples)
    if unmatched:
        print(
            f"WARNING: {unmatched} cold request(s) had no log line with cold_start: true "
            "for their x-invocation-id"
        )


def print_hello_detail(results: list[Result]) -> None:
    rows = [r for r in results if r.app.key == "hello" and r.samples]
    if not rows:
        return
    print("\nhello app, each cold request: client ms / host's cold_start_ms (client - host)\n")
    header = f"{'run':>4}" + "".join(f"  {'prewarm=' + r.mode:<27}" for r in rows)
    print(header)
    print("-" * len(header))
    for i in range(max(len(r.samples) for r in rows)):
        cells = []
        for r in rows:
            if i >= len(r.samples):
                cells.append(f"  {'':<27}")
                continue
            s = r.samples[i]
            if s.host_ms is None:
                cells.append(f"  {s.cold_ms:>7.2f} / {'n/a':>7}{'':<11}")
            else:
                diff = s.cold_ms - s.host_ms
                cells.append(f"  {s.cold_ms:>7.2f} / {s.host_ms:>7.2f} ({diff:+7.2f})")
        print(f"{i + 1:>4}" + "".join(cells))
    line = f"{'med':>4}"
    for r in rows:
        cold, host = statistics.median(r.cold()), r.host()
        if host:
            diffs = [s.cold_ms - s.host_ms for s in r.samples if s.host_ms is not None]
            host_median, diff = statistics.median(host), statistics.median(diffs)
            line += f"  {cold:>7.2f} / {host_median:>7.2f} ({diff:+7.2f})"
        else:
            line += f"  {cold:>7.2f} / {'n/a':>7}{'':<11}"
    print("-" * len(header))
    print(line)


def print_target(results: list[Result]) -> None:
    print()
    for r in results:
        if r.mode != "app":
            continue
        if not r.samples:
            print(f"prewarm=app median < {TARGET_MS:g} ms: MISS ({r.app.key} app: no answer)")
            continue
        median = statistics.median(r.cold())
        verdict = "PASS" if median < TARGET_MS else "MISS"
        print(
            f"prewarm=app median < {TARGET_MS:g} ms: {verdict} "
            f"({r.app.key} app: {median:.2f} ms over {len(r.samples)} runs)"
        )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="hibana's cold start from zero workers, per prewarm mode, for a light "
        "and a heavy app."
    )
    parser.add_argument("--runs", type=int, default=30, help="cold requests per app and mode")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=0.2,
        help="the hosts' --idle-timeout: how soon an idle worker is retired (seconds)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=0.1,
        help="seconds to wait after the host reports zero workers, before the cold request",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds a request may take before its row is given up as failed",
    )
    parser.add_argument(
        "--app",
        action="append",
        choices=[a.key for a in APP_SPECS],
        help="only these apps (repeatable)",
    )
    parser.add_argument(
        "--prewarm", action="append", choices=MODES, help="only these modes (repeatable)"
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.settle < 0:
        parser.error("--settle must be 0 or more")
    if not args.idle_timeout > 0 or not args.timeout > 0:
        parser.error("--idle-timeout and --timeout must be more than 0")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    apps = [a for a in APP_SPECS if args.app is None or a.key in args.app]
    modes = [m for m in MODES if args.prewarm is None or m in args.prewarm]
    print(f"command: {shlex.join([sys.executable, *sys.argv])}   (cwd {Path.cwd()})")
    print(_machine(), flush=True)
    try:
        print(f"\ninterpreter start + exit (python -c pass): {interpreter_ms():.1f} ms")
        print("app module import (function_app.py), median of 5 fresh interpreters:")
        for app in apps:
            fresh, after = import_ms(app, after_hibana=False), import_ms(app, after_hibana=True)
            print(
                f"  {app.key:<6}{fresh:7.1f} ms alone, {after:7.1f} ms after hibana's worker "
                f"modules ({app.description})"
            )
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    results: list[Result] = []
    for app in apps:
        for mode in modes:
            print(f"  measuring {app.key}, prewarm={mode} ...", flush=True)
            results.append(measure(app, mode, args))
    print_table(results, args)
    print_hello_detail(results)
    print_target(results)
    shown = host_argv("bench/apps/coldstart_APP", "MODE", args.idle_timeout)
    shown[0] = os.path.relpath(shown[0], ROOT)
    print(f"\nhosts: {shlex.join(shown)}   (from {ROOT}; stdout to a file)")
    # A measurement, not a test: a MISS is still exit 0; a host that failed is not.
    return 1 if any(r.failure for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
