"""The supervisor: owns the listening socket, starts the zygote, keeps the workers
running, reloads on change (``hibana dev``) and runs the shutdown sequence.

It never imports the user's app: a broken app cannot take it down, and ``hibana dev``
swaps in a new version of the app without dropping the socket or a request.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

from hibana.errors import AppLoadError, ConfigError, StoreError
from hibana.host.admin import AdminEndpoint, host_status
from hibana.host.board import Board, Layout
from hibana.host.config import HostConfig
from hibana.host.control import Channel, Spawn
from hibana.host.handoff import HeldConnections
from hibana.host.scaling import Scaler, Scaling, WorkerView
from hibana.host.store_duties import StoreDuties
from hibana.store.base import Store

#: How long a freshly started zygote may take to import the app.
IMPORT_TIMEOUT = 120.0
#: A worker that dies sooner than this after starting is restarted after a pause, not at once.
CRASH_LOOP_WINDOW = 1.0
#: Signals this close after the first are the same request to stop, delivered twice.
SIGNAL_ECHO = 0.25
#: How often the scaler looks at the board (a waiting connection wakes it at once).
TICK = 0.05


class HostStartError(ConfigError):
    """The host could not start (the port is taken, say)."""


@dataclass
class Zygote:
    proc: subprocess.Popen[bytes]
    channel: Channel
    functions: list[dict[str, str]] = field(default_factory=list)
    scaling: Scaling | None = None
    board: Board | None = None

    def spawn(self, spawn: Spawn) -> None:
        self.channel.send(op="spawn", spawn=dataclasses.asdict(spawn))

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.channel.send(op="stop")
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.channel.close()
        if self.board is not None:
            self.board.close()


@dataclass
class WorkerRecord:
    zygote: Zygote
    slot: int
    started: float
    pid: int | None = None  # None until the zygote says it exists
    retiring: bool = False


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
        #: Workers asked for or running, of every zygote (pid None: not started yet).
        self.records: list[WorkerRecord] = []
        self.zygote: Zygote | None = None
        self.retired: list[Zygote] = []
        self.scaler: Scaler | None = None
        self.stopping = False
        self.sel = selectors.DefaultSelector()
        self._signal_r, self._signal_w = socket.socketpair()
        self._reload_r, self._reload_w = socket.socketpair()
        self._hold_until = 0.0
        self._watching_socket = False
        #: When a connection was first seen waiting with no worker to take it.
        self._waiting_since: float | None = None
        #: Per-function totals of workers that have exited (their board rows are reused).
        self.past: dict[str, dict[str, float]] = {}
        self.started_at = time.time()
        self.sock: socket.socket | None = None
        self.admin: AdminEndpoint | None = None
        #: Opened when the app has queue or timer functions.
        self.store: Store | None = None
        self.duties: StoreDuties | None = None
        self._queues_r, self._queues_w = socket.socketpair()
        #: Duplicates of the workers' connections, to answer 502 for a worker that dies.
        self.connections = HeldConnections()
        self.sel.register(self.connections.sock, selectors.EVENT_READ, "handoff")

    # -- starting ---------------------------------------------------------------------
    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the process exit code."""
        self.sock = bind(self.config.host, self.config.port)
        self._install_signals()
        try:
            zygote = self._start_zygote()
            if zygote is None:
                return 1  # interrupted while the app was importing
            self._adopt(zygote)
            self._start_duties(zygote)
            self.admin = AdminEndpoint(self, self.config.admin_port)
            self.sel.register(self.admin.sock, selectors.EVENT_READ, "admin")
            self._tick()
            self._await_spawned(zygote)
            self._banner(zygote)
            if self.config.reload:
                self._watch_for_changes()
            return self._loop()
        finally:
            self.connections.close()
            self._stop_duties()
            if self.store is not None:
                self.store.close()
            if self.admin is not None:
                self.admin.close()
            self.sock.close()

    def _open_store(self) -> Store:
        if self.store is None:
            from hibana.store import engine_for

            store = Store(engine_for(self.config.store_url))
            try:
                store.open()
            except StoreError as exc:
                raise HostStartError(str(exc)) from None
            self.store = store
            self.sel.register(self._queues_r, selectors.EVENT_READ, "queues")
        return self.store

    def _start_duties(self, zygote: Zygote) -> None:
        """Check the app's secrets; open the store and start the timers and the queue
        watch, if the app has any."""
        self._check_secrets(zygote)
        if not any(fn["kind"] in ("queue", "timer", "event") for fn in zygote.functions):
            return
        store = self._open_store()
        self.duties = StoreDuties(store, zygote.functions, self._queues_w, self.report)
        self.duties.start()

    def _check_secrets(self, zygote: Zygote) -> None:
        """Every secret a function names exists and the key opens: fail at start, not in
        a worker at its first request."""
        wanted = {(fn["name"], name) for fn in zygote.functions for name in fn["secrets"]}
        if not wanted:
            return
        import asyncio

        from hibana.secrets import SecretError, load_key, unseal

        store = self._open_store()
        try:
            key = load_key()
            sealed = asyncio.run(store.secrets(sorted({name for _, name in wanted})))
            for function, name in sorted(wanted):
                if name not in sealed:
                    raise SecretError(
                        f"function {function!r} names secret {name!r}, which is not set in "
                        f"{store.display}; set it with: hibana secrets set {name} "
                        f"--app {self.config.app_dir}"
                    )
                unseal(key, name, sealed[name])
        except (SecretError, StoreError) as exc:
            raise HostStartError(str(exc)) from None

    def _stop_duties(self) -> None:
        if self.duties is not None:
            self.duties.stop()
            self.duties = None

    @property
    def port(self) -> int:
        assert self.sock is not None
        return int(self.sock.getsockname()[1])

    @property
    def url(self) -> str:
        host = self.config.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def _install_signals(self) -> None:
        self._signal_w.setblocking(False)
        signal.set_wakeup_fd(self._signal_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)  # the byte on the wakeup fd is what we act on
        self.sel.register(self._signal_r, selectors.EVENT_READ, "signal")
        self.sel.register(self._reload_r, selectors.EVENT_READ, "reload")

    def _adopt(self, zygote: Zygote) -> None:
        assert zygote.scaling is not None
        self.zygote = zygote
        self.scaler = Scaler(zygote.scaling)

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
                str(self.connections.worker_end.fileno()),
            ],
            pass_fds=(self.sock.fileno(), theirs.fileno(), self.connections.worker_end.fileno()),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        zygote = Zygote(proc, Channel(ours))
        waiter = selectors.DefaultSelector()
        waiter.register(ours, selectors.EVENT_READ, "zygote")
        waiter.register(self._signal_r, selectors.EVENT_READ, "signal")
        # closes of connections wait on us (we hold duplicates): keep taking them
        waiter.register(self.connections.sock, selectors.EVENT_READ, "handoff")
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
                    if key.data == "handoff":
                        self.connections.receive()
                        continue
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
                            zygote.scaling = Scaling(**message["scaling"])
                            board = dict(message["board"])
                            fd = board.pop("fd")
                            zygote.board = Board.open(proc.pid, fd, Layout(**board))
                            self.sel.register(ours, selectors.EVENT_READ, zygote)
                            return zygote
        finally:
            waiter.close()

    def _await_spawned(self, zygote: Zygote, timeout: float = 10.0) -> None:
        """Process the zygote's events until every worker asked of it exists."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(r.pid is not None for r in self.records if r.zygote is zygote):
                return
            ready, _, _ = select.select([zygote.channel.sock], [], [], 0.05)
            if ready:
                self._on_zygote(zygote)

    def _banner(self, zygote: Zygote) -> None:
        from hibana import __version__

        assert zygote.scaling is not None
        lines = [
            f"hibana {__version__} · app {self.config.app_dir} · {zygote.scaling.describe()} "
            f"(prewarm {zygote.scaling.prewarm}) · pid {os.getpid()}",
            "",
            "Functions:",
        ]
        if not zygote.functions:
            lines.append("    (none: declare one with @app.http(...) in function_app.py)")
        for fn in zygote.functions:
            if fn["kind"] != "http":
                lines.append(f"    {fn['name']}: {fn['trigger']}")
                continue
            methods, _, route = fn["trigger"].partition(" ")
            lines.append(f"    {fn['name']}: {methods} {self.url}{route}")
        if self.store is not None:
            lines += ["", f"Store: {self.store.display}"]
        if self.admin is not None:
            lines += ["", f"Admin (hibana status): {self.admin.url}"]
        lines += ["", f"Listening on {self.url} (Ctrl+C to stop)"]
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
            for key, _ in self.sel.select(timeout=TICK):
                if key.data == "signal":
                    signals = self._signal_r.recv(64)
                    if any(s in (signal.SIGTERM, signal.SIGINT) for s in signals):
                        return self._shutdown()
                elif key.data == "reload":
                    self._reload_r.recv(64)
                    self._reload()
                elif key.data == "admin":
                    assert self.admin is not None
                    self.admin.serve_one()
                elif key.data == "listen":
                    pass  # a connection waits and no worker runs: the tick starts one
                elif key.data == "queues":
                    self._queues_r.recv(64)  # messages wait: the tick starts a worker
                elif key.data == "handoff":
                    self.connections.receive()
                else:
                    self._on_zygote(key.data)
            self._tick()

    def _tick(self) -> None:
        """One scaling cycle: keep the minimum, follow the load, retire idle workers."""
        zygote, scaler = self.zygote, self.scaler
        if zygote is None or scaler is None or self.stopping or zygote.board is None:
            return
        board = zygote.board
        mine = [r for r in self.records if r.zygote is zygote]
        views = [
            WorkerView(
                r.slot,
                inflight=board.get(r.slot, "inflight") if r.pid is not None else 0.0,
                last_active=board.get(r.slot, "last_active"),
                # not serving yet (still forking or importing): never idle, never retired
                pending=r.pid is None or not board.get(r.slot, "ready_at"),
                retiring=r.retiring,
            )
            for r in mine
        ]
        waiting = self._connection_waiting() or (self.duties is not None and self.duties.pending)
        if waiting and self._waiting_since is None:
            self._waiting_since = time.monotonic()
        decision = scaler.decide(views, waiting)
        now = time.monotonic()
        if decision.spawn and now >= self._hold_until:
            busy = waiting or any(v.inflight for v in views)
            used = {r.slot for r in mine}
            free = (i for i in range(zygote.scaling.max_instances) if i not in used)  # type: ignore[union-attr]
            for slot, _ in zip(free, range(decision.spawn), strict=False):
                self._spawn(zygote, slot, on_demand=busy)
        if not waiting:
            self._waiting_since = None
        for slot in decision.retire:
            for r in mine:
                if r.slot == slot and r.pid is not None:
                    r.retiring = True
                    _signal(r.pid, signal.SIGUSR1)
        active = any(not r.retiring for r in self.records if r.zygote is zygote)
        self._watch_socket(not active)
        if self.duties is not None:
            self.duties.watch_closely(not active)

    def _spawn(self, zygote: Zygote, slot: int, on_demand: bool) -> None:
        assert zygote.scaling is not None
        now = time.monotonic()
        self.records.append(WorkerRecord(zygote, slot, now))
        # An on-demand worker's cold start counts from when the request began to wait.
        since = (self._waiting_since or now) if on_demand else now
        zygote.spawn(Spawn(slot, since, on_demand, zygote.scaling.memory_limit_mb))

    def _connection_waiting(self) -> bool:
        assert self.sock is not None
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def _watch_socket(self, on: bool) -> None:
        """With no worker running, wake up as soon as a connection arrives."""
        assert self.sock is not None
        if on and not self._watching_socket:
            self.sel.register(self.sock, selectors.EVENT_READ, "listen")
        elif not on and self._watching_socket:
            self.sel.unregister(self.sock)
        self._watching_socket = on

    def _on_zygote(self, zygote: Zygote) -> None:
        try:
            messages = zygote.channel.receive()
        except (EOFError, ConnectionError):
            self.sel.unregister(zygote.channel.sock)
            self.records = [r for r in self.records if r.zygote is not zygote]
            if zygote is self.zygote and not self.stopping:
                self.report("error: the zygote process died; restarting it")
                self._replace_zygote()
            return
        for message in messages:
            self._on_event(zygote, message)

    def _on_event(self, zygote: Zygote, message: dict[str, Any]) -> None:
        if message["event"] == "spawned":
            for r in self.records:
                if r.zygote is zygote and r.slot == message["slot"] and r.pid is None:
                    r.pid = message["pid"]
                    break
        elif message["event"] == "exited":
            record = next((r for r in self.records if r.pid == message["pid"]), None)
            if record is None:
                return
            self.records.remove(record)
            code = message["code"]
            if code != 0:
                self.connections.worker_died(
                    message["pid"], record.slot, record.zygote.board, self.report
                )
            else:
                self.connections.worker_exited(message["pid"])
            self._remember(record)
            if record.zygote is not self.zygote:
                self._reap_retired()
            elif not record.retiring and not self.stopping and code != 0:
                self.report(f"worker {record.slot} (pid {record.pid}) exited with code {code}")
                if time.monotonic() - record.started < CRASH_LOOP_WINDOW:
                    self._hold_until = time.monotonic() + CRASH_LOOP_WINDOW

    def _remember(self, record: WorkerRecord) -> None:
        """Fold an exited worker's counters into the totals before its row is reused."""
        board = record.zygote.board
        if board is None:
            return
        for i, fn in enumerate(record.zygote.functions):
            totals = self.past.setdefault(
                fn["name"], {"invocations": 0.0, "cold_starts": 0.0, "errors": 0.0}
            )
            totals["invocations"] += board.function_get(record.slot, i, "invocations")
            totals["errors"] += board.function_get(record.slot, i, "errors")
            if board.function_get(record.slot, i, "cold_starts"):
                totals["cold_starts"] += board.function_get(record.slot, i, "cold_starts")
                ready = board.get(record.slot, "ready_at")
                if ready >= totals.get("cold_at", 0.0):
                    totals["cold_at"] = ready
                    totals["last_cold_start_ms"] = board.function_get(
                        record.slot, i, "last_cold_start_ms"
                    )

    def _reload(self) -> None:
        self.report("Change detected; reloading the app")
        try:
            fresh = self._start_zygote()
        except AppLoadError as exc:
            self.report(f"error: {exc}\nStill serving the previous version of the app.")
            return
        if fresh is None:
            return
        try:
            self._check_secrets(fresh)
        except HostStartError as exc:
            self.report(f"error: {exc}\nStill serving the previous version of the app.")
            self.sel.unregister(fresh.channel.sock)
            fresh.stop()
            return
        old = self.zygote
        self._adopt(fresh)
        self._stop_duties()
        try:
            self._start_duties(fresh)
        except HostStartError as exc:
            self.report(f"error: {exc}")
        self._tick()
        self._await_spawned(fresh)
        if old is not None:
            self.retired.append(old)
            for r in self.records:
                if r.zygote is old and r.pid is not None:
                    # retire, not shut down: the old version finishes its requests and
                    # stops accepting; new ones go to the new workers, never a 503
                    r.retiring = True
                    _signal(r.pid, signal.SIGUSR1)
            self._reap_retired()
        self._banner(fresh)

    def _replace_zygote(self) -> None:
        try:
            fresh = self._start_zygote()
        except AppLoadError as exc:
            self.report(f"error: {exc}")
            return
        if fresh is not None:
            self._adopt(fresh)

    def _reap_retired(self) -> None:
        for old in list(self.retired):
            if not any(r.zygote is old for r in self.records):
                self.retired.remove(old)
                self.sel.unregister(old.channel.sock)
                old.stop()

    def status(self) -> dict[str, Any]:
        """What ``hibana status`` shows: per worker and per function."""
        return host_status(self)

    # -- stopping ---------------------------------------------------------------------
    def _shutdown(self) -> int:
        self.stopping = True
        self._stop_duties()
        live = [r for r in self.records if r.pid is not None]
        self.report(
            f"Shutting down: draining {len(live)} worker(s), "
            f"up to {self.config.shutdown_timeout:g}s"
        )
        for r in live:
            _signal(r.pid, signal.SIGTERM)  # type: ignore[arg-type]
        began = time.monotonic()
        deadline = began + self.config.shutdown_timeout + 5
        while self.records and time.monotonic() < deadline:
            for key, _ in self.sel.select(timeout=0.1):
                if key.data == "signal":
                    # One signal sent twice at once (to the process and to its group, as
                    # `timeout` does) is not a second request to stop.
                    if self._signal_r.recv(64) and time.monotonic() - began > SIGNAL_ECHO:
                        self.report("Second signal: stopping now")
                        self._kill_all()
                        return 1
                elif key.data == "admin":
                    assert self.admin is not None
                    self.admin.serve_one()
                elif key.data == "handoff":
                    self.connections.receive()
                elif isinstance(key.data, Zygote):
                    self._on_zygote(key.data)
            # a worker asked for but never reported cannot be waited for
            self.records = [r for r in self.records if r.pid is not None]
        if self.records:
            self.report(f"{len(self.records)} worker(s) did not stop in time; killing them")
        self._kill_all()
        return 0

    def _kill_all(self) -> None:
        for r in self.records:
            if r.pid is not None:
                _signal(r.pid, signal.SIGKILL)
        self.records.clear()
        for zygote in [self.zygote, *self.retired]:
            if zygote is not None:
                zygote.stop()


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
