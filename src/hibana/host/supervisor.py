"""The supervisor: owns the listening socket, starts the zygote, keeps the workers
running, reloads on change (``hibana dev``) and runs the shutdown sequence.

It never imports the user's app: a broken app cannot take it down, and ``hibana dev``
swaps in a new version of the app without dropping the socket or a request.
"""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hibana.errors import AppLoadError, ConfigError
from hibana.host.config import HostConfig
from hibana.host.control import Channel

#: How long a freshly started zygote may take to import the app.
IMPORT_TIMEOUT = 120.0
#: A worker that dies sooner than this after starting is restarted after a pause, not at once.
CRASH_LOOP_WINDOW = 1.0


class HostStartError(ConfigError):
    """The host could not start (the port is taken, say)."""


@dataclass
class Zygote:
    proc: subprocess.Popen[bytes]
    channel: Channel
    functions: list[dict[str, str]] = field(default_factory=list)

    def spawn(self, index: int) -> None:
        self.channel.send(op="spawn", index=index)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.channel.send(op="stop")
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.channel.close()


@dataclass
class WorkerRecord:
    zygote: Zygote
    index: int
    started: float


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise HostStartError(
            f"cannot listen on {host}:{port}: {exc.strerror}; is another host running there? "
            "Pass --port to choose another port (0 picks a free one)"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    def __init__(self, config: HostConfig, report: Callable[[str], None]) -> None:
        self.config = config
        self.report = report
        self.workers: dict[int, WorkerRecord] = {}
        self.zygote: Zygote | None = None
        self.retired: list[Zygote] = []
        self.stopping = False
        self.sel = selectors.DefaultSelector()
        self._signal_r, self._signal_w = socket.socketpair()
        self._reload_r, self._reload_w = socket.socketpair()
        self._respawn_at: list[tuple[float, int]] = []
        self.sock: socket.socket | None = None

    # -- starting ---------------------------------------------------------------------
    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the process exit code."""
        self.sock = bind(self.config.host, self.config.port)
        self._install_signals()
        try:
            zygote = self._start_zygote()
            if zygote is None:
                return 1  # interrupted while the app was importing
            self.zygote = zygote
            for index in range(self.config.workers):
                zygote.spawn(index)
            self._await_spawned(zygote)
            self._banner(zygote)
            if self.config.reload:
                self._watch_for_changes()
            return self._loop()
        finally:
            self.sock.close()

    @property
    def port(self) -> int:
        assert self.sock is not None
        return int(self.sock.getsockname()[1])

    def _install_signals(self) -> None:
        self._signal_w.setblocking(False)
        signal.set_wakeup_fd(self._signal_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)  # the byte on the wakeup fd is what we act on
        self.sel.register(self._signal_r, selectors.EVENT_READ, "signal")
        self.sel.register(self._reload_r, selectors.EVENT_READ, "reload")

    def _start_zygote(self) -> Zygote | None:
        """A zygote that has imported the app, or raises AppLoadError with the reason."""
        assert self.sock is not None
        ours, theirs = socket.socketpair()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hibana.host.zygote",
                self.config.to_json(),
                str(self.sock.fileno()),
                str(theirs.fileno()),
                str(os.getpid()),
            ],
            pass_fds=(self.sock.fileno(), theirs.fileno()),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        zygote = Zygote(proc, Channel(ours))
        waiter = selectors.DefaultSelector()
        waiter.register(ours, selectors.EVENT_READ, "zygote")
        waiter.register(self._signal_r, selectors.EVENT_READ, "signal")
        deadline = time.monotonic() + IMPORT_TIMEOUT
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    zygote.proc.kill()
                    zygote.proc.wait()
                    raise AppLoadError(
                        f"importing the app in {self.config.app_dir} took over "
                        f"{IMPORT_TIMEOUT:g}s; is module-level code waiting on something?"
                    )
                for key, _ in waiter.select(timeout=left):
                    if key.data == "signal":
                        self._signal_r.recv(64)
                        zygote.proc.kill()
                        zygote.proc.wait()
                        return None
                    try:
                        messages = zygote.channel.receive()
                    except (EOFError, ConnectionError):
                        code = zygote.proc.wait()
                        raise AppLoadError(
                            f"the process importing the app exited with code {code} before "
                            "saying whether the app loaded (see its output above)"
                        ) from None
                    for message in messages:
                        if message["event"] == "error":
                            zygote.proc.wait()
                            zygote.channel.close()
                            raise AppLoadError(message["message"])
                        if message["event"] == "ready":
                            zygote.functions = message["functions"]
                            self.sel.register(ours, selectors.EVENT_READ, zygote)
                            return zygote
        finally:
            waiter.close()

    def _await_spawned(self, zygote: Zygote, timeout: float = 10.0) -> None:
        """Process the zygote's events until every worker it was asked for exists."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(r.zygote is zygote for r in self.workers.values()) >= self.config.workers:
                return
            ready, _, _ = select.select([zygote.channel.sock], [], [], 0.05)
            if ready:
                self._on_zygote(zygote)

    def _banner(self, zygote: Zygote) -> None:
        host = self.config.host
        shown = f"[{host}]" if ":" in host else host
        base = f"http://{shown}:{self.port}"
        from hibana import __version__

        lines = [
            f"hibana {__version__} · app {self.config.app_dir} · {self.config.workers} "
            f"worker{'s' if self.config.workers != 1 else ''} · pid {os.getpid()}",
            "",
            "Functions:",
        ]
        if not zygote.functions:
            lines.append("    (none: declare one with @app.http(...) in function_app.py)")
        for fn in zygote.functions:
            methods, _, route = fn["trigger"].partition(" ")
            lines.append(f"    {fn['name']}: {methods} {base}{route}")
        lines += ["", f"Listening on {base} (Ctrl+C to stop)"]
        self.report("\n".join(lines))

    def _watch_for_changes(self) -> None:
        import watchfiles

        def watch() -> None:
            for _changes in watchfiles.watch(
                self.config.app_dir, watch_filter=watchfiles.PythonFilter(), debounce=200
            ):
                try:
                    self._reload_w.send(b"r")
                except OSError:
                    return

        threading.Thread(target=watch, name="hibana-reload", daemon=True).start()

    # -- running ----------------------------------------------------------------------
    def _loop(self) -> int:
        while True:
            timeout = 0.5
            if self._respawn_at:
                timeout = max(0.0, min(t for t, _ in self._respawn_at) - time.monotonic())
            for key, _ in self.sel.select(timeout=timeout):
                if key.data == "signal":
                    signals = self._signal_r.recv(64)
                    if any(s in (signal.SIGTERM, signal.SIGINT) for s in signals):
                        return self._shutdown()
                elif key.data == "reload":
                    self._reload_r.recv(64)
                    self._reload()
                else:
                    self._on_zygote(key.data)
            self._respawn_due()

    def _on_zygote(self, zygote: Zygote) -> None:
        try:
            messages = zygote.channel.receive()
        except (EOFError, ConnectionError):
            self.sel.unregister(zygote.channel.sock)
            if zygote is self.zygote and not self.stopping:
                self.report("error: the zygote process died; restarting it")
                self._replace_zygote()
            return
        for message in messages:
            self._on_event(zygote, message)

    def _on_event(self, zygote: Zygote, message: dict[str, Any]) -> None:
        if message["event"] == "spawned":
            self.workers[message["pid"]] = WorkerRecord(zygote, message["index"], time.monotonic())
        elif message["event"] == "exited":
            record = self.workers.pop(message["pid"], None)
            if record is None or self.stopping or zygote is not self.zygote:
                self._reap_retired()
                return
            code = message["code"]
            if code != 0:
                self.report(
                    f"worker {record.index} (pid {message['pid']}) exited with code {code}; "
                    "starting a new one"
                )
            if time.monotonic() - record.started < CRASH_LOOP_WINDOW:
                self._respawn_at.append((time.monotonic() + CRASH_LOOP_WINDOW, record.index))
            else:
                zygote.spawn(record.index)

    def _respawn_due(self) -> None:
        now = time.monotonic()
        due = [i for t, i in self._respawn_at if t <= now]
        self._respawn_at = [(t, i) for t, i in self._respawn_at if t > now]
        if self.zygote is not None and not self.stopping:
            for index in due:
                self.zygote.spawn(index)

    def _reload(self) -> None:
        self.report("Change detected; reloading the app")
        try:
            fresh = self._start_zygote()
        except AppLoadError as exc:
            self.report(f"error: {exc}\nStill serving the previous version of the app.")
            return
        if fresh is None:
            return
        old = self.zygote
        self.zygote = fresh
        for index in range(self.config.workers):
            fresh.spawn(index)
        self._await_spawned(fresh)
        if old is not None:
            self.retired.append(old)
            for pid, record in self.workers.items():
                if record.zygote is old:
                    _signal(pid, signal.SIGTERM)
            self._reap_retired()
        self._banner(fresh)

    def _replace_zygote(self) -> None:
        try:
            fresh = self._start_zygote()
        except AppLoadError as exc:
            self.report(f"error: {exc}")
            return
        if fresh is not None:
            self.zygote = fresh
            running = {r.index for r in self.workers.values()}
            for index in range(self.config.workers):
                if index not in running:
                    fresh.spawn(index)

    def _reap_retired(self) -> None:
        for old in list(self.retired):
            if not any(r.zygote is old for r in self.workers.values()):
                self.retired.remove(old)
                self.sel.unregister(old.channel.sock)
                old.stop()

    # -- stopping ---------------------------------------------------------------------
    def _shutdown(self) -> int:
        self.stopping = True
        self.report(
            f"Shutting down: draining {len(self.workers)} worker(s), "
            f"up to {self.config.shutdown_timeout:g}s"
        )
        for pid in self.workers:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.shutdown_timeout + 5
        while self.workers and time.monotonic() < deadline:
            for key, _ in self.sel.select(timeout=0.1):
                if key.data == "signal":
                    if self._signal_r.recv(64):
                        self.report("Second signal: stopping now")
                        self._kill_all()
                        return 1
                elif key.data != "reload":
                    self._on_zygote(key.data)
        if self.workers:
            self.report(f"{len(self.workers)} worker(s) did not stop in time; killing them")
        self._kill_all()
        return 0

    def _kill_all(self) -> None:
        for pid in list(self.workers):
            _signal(pid, signal.SIGKILL)
        self.workers.clear()
        for zygote in [self.zygote, *self.retired]:
            if zygote is not None:
                zygote.stop()


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
