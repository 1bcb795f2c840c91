"""Start the real host as a subprocess on a free port and read what it prints."""

from __future__ import annotations

import ast
import contextlib
import http.server
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import httpx

APPS = Path(__file__).parent / "apps"
_LISTENING = re.compile(r"Listening on (http://\S+)")
_ADMIN = re.compile(r"Admin \(hibana status\): (http://\S+)")


class Host:
    """A running ``hibana serve``: its URL, its JSON log lines, and its stderr."""

    def __init__(
        self,
        app_dir: Path,
        *args: str,
        command: str = "serve",
        env: dict[str, str] | None = None,
        stdout_pause: float = 0.0,
        open_files: tuple[int, int] | None = None,
        launcher: list[str] | None = None,
    ) -> None:
        """``stdout_pause``: seconds the reader of the host's stdout rests after each
        line, like a log shipper that falls behind (the pipe fills up). ``open_files``:
        the host's (soft, hard) limit on open files as it starts, as a shell's
        ``ulimit -n`` sets it. ``launcher``: what starts it in place of ``python -m hibana
        COMMAND APP_DIR`` (``scripts/serve``), given ``--port 0`` and ``args``."""
        self.app_dir = app_dir
        self.stdout_pause = stdout_pause
        started = launcher or [sys.executable, "-m", "hibana", command, str(app_dir)]
        self.proc = subprocess.Popen(
            [*started, "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            preexec_fn=(
                None
                if open_files is None
                else lambda: resource.setrlimit(resource.RLIMIT_NOFILE, open_files)
            ),
        )
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout_lines)),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr_lines)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()
        self.url = ""
        self.admin_url = ""

    def _pump(self, stream: Any, into: list[str]) -> None:
        pause = self.stdout_pause if into is self.stdout_lines else 0.0
        for raw in stream:
            with self._changed:
                into.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
            if pause:
                time.sleep(pause)
        with self._changed:
            self._changed.notify_all()

    def wait_ready(self, timeout: float = 30) -> Host:
        line = self.wait_for_stderr(_LISTENING.pattern, timeout)
        match = _LISTENING.search(line)
        assert match is not None
        self.url = match.group(1)
        admin = _ADMIN.search(self.wait_for_stderr(_ADMIN.pattern, 1))
        assert admin is not None
        self.admin_url = admin.group(1)
        return self

    def status(self) -> dict[str, Any]:
        """The host's admin status: workers and functions."""
        data: dict[str, Any] = httpx.get(self.admin_url + "/status", timeout=10).json()
        return data

    def function_status(self, name: str) -> dict[str, Any]:
        """Function ``name``'s entry in the host's status."""
        return next(f for f in self.status()["functions"] if f["name"] == name)

    def wait_inflight(self, count: int, function: str | None = None, timeout: float = 20) -> None:
        """Until ``count`` invocations (of ``function``, if named) are running: requests
        sent from other threads have really reached a function (on a loaded machine that
        can take a while). Name the function on a host that earlier tests used: one of
        theirs may still be returning."""

        def running() -> int:
            status = self.status()
            if function is None:
                return sum(w["inflight"] for w in status["workers"])
            return sum(f["inflight"] for f in status["functions"] if f["name"] == function)

        deadline = time.monotonic() + timeout
        while running() < count:
            assert time.monotonic() < deadline, f"{count} invocations never got running"
            time.sleep(0.02)

    def wait_for_stderr(self, pattern: str, timeout: float = 30) -> str:
        return self._wait_for(self.stderr_lines, re.compile(pattern), timeout)

    def wait_for_stdout(self, pattern: str, timeout: float = 10) -> str:
        """A stdout line matching ``pattern`` (a regular expression), as it is."""
        return self._wait_for(self.stdout_lines, re.compile(pattern), timeout)

    def wait_for_log(self, timeout: float = 10, **fields: Any) -> dict[str, Any]:
        """The first JSON log line on stdout whose fields include ``fields``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for record in self.logs():
                    if all(record.get(k) == v for k, v in fields.items()):
                        return record
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._alive_readers()):
                    raise AssertionError(
                        f"no log line with {fields} within {timeout}s; stdout:\n"
                        + "\n".join(self.stdout_lines[-30:])
                        + "\nstderr:\n"
                        + "\n".join(self.stderr_lines[-30:])
                    )
                self._changed.wait(min(left, 0.2))

    def _wait_for(self, lines: list[str], pattern: re.Pattern[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in lines:
                    if pattern.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._alive_readers()):
                    raise AssertionError(
                        f"host never printed {pattern.pattern!r}; exit code "
                        f"{self.proc.poll()}; stderr:\n" + "\n".join(self.stderr_lines[-40:])
                    )
                self._changed.wait(min(left, 0.2))

    def _alive_readers(self) -> bool:
        return any(r.is_alive() for r in self._readers)

    def logs(self) -> list[dict[str, Any]]:
        records = []
        for line in list(self.stdout_lines):
            try:
                records.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"a stdout line is not JSON: {line!r}") from None
        return records

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 30), **kwargs)

    def worker_pids(self) -> set[int]:
        """The pids of this host's workers (grandchildren: supervisor -> zygote -> worker)."""
        pids: set[int] = set()
        for zygote in children(self.proc.pid):
            pids.update(children(zygote))
        return pids

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for reader in self._readers:
            reader.join(5)


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s child processes (none if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def copy_app(name: str, into: Path) -> Path:
    """A private copy of ``tests/apps/<name>``: for tests that read the app folder's
    ``.hibana`` state while other tests serve the same app."""
    target = into / name
    shutil.copytree(APPS / name, target, ignore=shutil.ignore_patterns(".hibana", "__pycache__"))
    return target


def shown(path: Path) -> str:
    """``path`` as the host names it in errors: relative to here, or whole if that is
    shorter (a test's tmp_path seen from a checkout under /work)."""
    rel = os.path.relpath(path)
    return rel if len(rel) < len(str(path)) else str(path)


def declared(app: str, function: str) -> str:
    """How the host's errors name ``function`` of ``tests/apps/<app>``: "function_app.py:12
    (create)", its file as the host is started from here, and the line its code object
    begins at (its first decorator's)."""
    path = APPS / app / "function_app.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            line = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            return f"{shown(path)}:{line} ({function})"
    raise AssertionError(f"{path} has no function {function}")


def read_jsonl(path: Path, **match: Any) -> list[dict[str, Any]]:
    """The JSON lines a test app appended to ``path`` whose fields equal ``match``
    (a None value matches anything)."""
    if not path.exists():
        return []
    lines = [json.loads(x) for x in path.read_text().splitlines() if x]
    return [x for x in lines if all(v is None or x.get(k) == v for k, v in match.items())]


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 60, columns: int | None = 250
) -> subprocess.CompletedProcess[str]:
    """``columns``: the terminal width the CLI is told (wide: usage errors stay on one
    line to match on); None: none, as when its output is piped."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run(
        [sys.executable, "-m", "hibana", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def read_cut_short(
    client: httpx.Client, path: str, on_chunk: Callable[[], None] = lambda: None
) -> tuple[httpx.Response, bytes]:
    """A streamed response whose body must end cut short (no last chunk), and what came
    of it; ``on_chunk`` runs after the first piece of the body."""
    got: list[bytes] = []
    with client.stream("GET", path) as r:
        assert r.status_code == 200
        try:
            for chunk in r.iter_raw():
                if chunk and not got:
                    on_chunk()
                got.append(chunk)
        except httpx.RemoteProtocolError:
            return r, b"".join(got)
    raise AssertionError(f"the body of {path} ended whole: {b''.join(got)!r}")


def started(
    app: str | Path, *args: str, command: str = "serve", stdout_pause: float = 0.0
) -> Generator[Host, None, None]:
    """For fixtures: a ready host on ``tests/apps/<app>`` (or a path), stopped afterwards."""
    app_dir = app if isinstance(app, Path) else APPS / app
    host = Host(app_dir, *args, command=command, stdout_pause=stdout_pause)
    try:
        yield host.wait_ready()
    finally:
        host.stop()


@contextlib.contextmanager
def not_a_host(app_dir: Path, answer: bytes) -> Generator[str, None, None]:
    """``app_dir``'s host.json naming an admin address where a server that is no hibana
    host answers ``answer`` to any GET or POST (a stale file whose port another program
    took). Yields that address."""

    class Answer(http.server.BaseHTTPRequestHandler):
        def _send(self) -> None:
            self.send_response(200)
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_GET = do_POST = _send

        def log_message(self, *args: object) -> None:
            pass

    other = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        admin = f"http://127.0.0.1:{other.server_address[1]}"
        state = app_dir / ".hibana"
        state.mkdir(exist_ok=True)
        (state / "host.json").write_text(json.dumps({"pid": 1, "url": "", "admin": admin}))
        yield admin
    finally:
        other.shutdown()
        other.server_close()
