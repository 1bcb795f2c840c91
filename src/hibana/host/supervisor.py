"""The supervisor: owns the listening socket, starts the zygote, keeps the workers
running, reloads the app and runs the shutdown sequence.

This module holds its loops: the main one (signals, the admin endpoint, the zygotes'
events, the scaler's ticks) and the waits inside a start, a reload and a shutdown. The
steps they take live in rooms of their own: ``listen`` (the socket), ``zygote_handle`` (a
zygote process and its import), ``worker_pool`` (the scaling cycle, starting and retiring
workers, the zygotes' news of them), ``worker_records`` (what is kept of each worker, the
unresponsive-worker check), ``concurrency_limits`` (the permit table's rows and columns),
``app_store`` (the store, the duties and the secrets), ``log_output`` (where the processes
write), ``reload`` (moving to a new version of the app and back), ``shutdown`` (what ends
the drain), ``file_watch`` (``hibana dev``'s watch) and ``banner`` (what the host prints of
the version it serves).

It never imports the user's app: a broken app cannot take it down, and a reload swaps in a
new version of the app without dropping the socket or a request. A reload is asked for by
SIGHUP (``systemctl reload``), ``hibana reload`` (the admin endpoint) or, under
``hibana dev``, a changed file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import select
import selectors
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from hibana.errors import AppLoadError
from hibana.host import early_signals, open_files, worker_pool
from hibana.host.admin import AdminEndpoint, host_status
from hibana.host.app_store import AppStore
from hibana.host.banner import banner
from hibana.host.board import PermitTable
from hibana.host.concurrency_limits import ConcurrencyLimits
from hibana.host.config import HostConfig, HostStartError
from hibana.host.control import code_stamp
from hibana.host.file_watch import watch_app_files
from hibana.host.handoff import HeldConnections, raw_answer, refuse_backlog
from hibana.host.listen import bind
from hibana.host.log_output import LogOutput
from hibana.host.reload import await_ready, swap
from hibana.host.scaling import Scaler
from hibana.host.service_manager import ServiceManager
from hibana.host.shutdown import STOP_SIGNALS, kill_all, refuse_on_stop, second_stop
from hibana.host.store_duties import StoreDuties
from hibana.host.worker_records import Unresponsive, WorkerRecord, signal_worker
from hibana.host.zygote_handle import IMPORT_TIMEOUT, Zygote, import_too_slow, launch
from hibana.store.base import Store
from hibana.telemetry.process_output import ProcessOutput

#: What other modules import from here, some of it from the rooms it was split into.
__all__ = ["IMPORT_TIMEOUT", "HostStartError", "Supervisor", "WorkerRecord", "Zygote", "bind"]


class Supervisor:
    def __init__(self, config: HostConfig, report: Callable[[str], None]) -> None:
        self.config = config
        self.report = report
        #: The hibana code this process runs, which every zygote must run too.
        self.code = code_stamp()
        #: Workers asked for or running, of every zygote (pid None: not started yet).
        self.records: list[WorkerRecord] = []
        self.zygote: Zygote | None = None
        self.retired: list[Zygote] = []
        self.scaler: Scaler | None = None
        self.stopping = False
        self.sel = selectors.DefaultSelector()
        self._signal_r, self._signal_w = socket.socketpair()
        self._reload_r, self._reload_w = socket.socketpair()
        self.unresponsive = Unresponsive(config.cancel_grace, report)
        #: A new version of the app is importing (``start_zygote``): the serving one's
        #: zygote, if it dies meanwhile, is started again after that import.
        self.importing = False
        #: When the reload under way began (``hibana status`` says so).
        self.reloading_since: float | None = None
        #: The last reload failed, and the version that served had died (``reload``).
        self.previous_lost = False
        self.hold_until = 0.0
        #: Set by the signals (and a changed file under ``hibana dev``); acted on by the loop.
        self._stop_asked = False
        self._reload_asked = False
        self.generation = 0
        self._watching_socket = False
        #: When a connection was first seen waiting with no worker to take it.
        self.waiting_since: float | None = None
        #: The last tick found the fewest workers allowed, all idle (``worker_pool.tick``).
        self.quiet = False
        #: Per-function totals of workers that have exited (their board rows are reused).
        self.past: dict[str, dict[str, float]] = {}
        self.started_at = time.time()
        self.sock: socket.socket | None = None
        self.admin: AdminEndpoint | None = None
        #: Why the app does not load, while ``hibana dev`` waits for a change that fixes it.
        self.load_error: str | None = None
        self.app_store = AppStore(config, report, self._redact, self.sel)
        #: Every worker's max_concurrency permits, of every version of the app: one
        #: column per function with a limit, by name, so a reload's old and new workers
        #: share a function's limit.
        self.permits = PermitTable.create()
        self.limits = ConcurrencyLimits(self.permits, report)
        #: Duplicates of the workers' connections, to answer 502 for a worker that dies.
        self.connections = HeldConnections()
        self.sel.register(self.connections.sock, selectors.EVENT_READ, "handoff")
        self.service_manager = ServiceManager()
        #: Where the processes we start write; opened by run().
        self._logs: LogOutput | None = None
        #: Our limit on open files, raised by run() (the processes we start inherit it).
        self.open_file_limit = open_files.limit()

    # -- starting ---------------------------------------------------------------------
    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the process exit code."""
        # first: a SIGHUP from here on is a reload asked for (done once the host serves),
        # a SIGTERM a stop; neither kills the host with the default action
        self._install_signals()
        if self._stop_asked:  # before the CLI's imports were done (early_signals)
            self.report("Stopped before the app served")
            return 0
        self.sock = bind(self.config.host, self.config.port)
        self.open_file_limit = open_files.raise_limit()
        self._open_output()
        try:
            if self.config.reload:
                # `hibana status` and `hibana reload` reach a dev host waiting for a fix
                # too: it is running, and another one started would not get the port
                self._open_admin()
            zygote = self._first_zygote()
            if zygote is None:  # a signal to stop while the app imported, or was broken (dev)
                self.report("Stopped before the app served")
                self._refuse_on_stop()
                return 0
            self.adopt(zygote)
            self.enforce_limits(zygote)
            self.app_store.start_duties(zygote)
            if self.admin is None:
                self._open_admin()
            self.tick()
            self._await_spawned(zygote)
            if not self.config.reload and any(r.zygote is zygote for r in self.records):
                # a worker that cannot start (a mounted app's lifespan startup raises, say)
                # would be replaced for ever while requests wait: stop, as a broken app does
                failed = await_ready(self, zygote, "the app")
                if failed is not None and zygote.last_crash:
                    raise AppLoadError(failed)
            if self._stop_asked:
                # a signal while the workers started (a mounted app's slow lifespan
                # startup): they are drained, and the host is not announced as serving
                self.report("Stopped before the app served")
                return self._shutdown()
            store = None if self.store is None else self.store.display
            self.report(
                banner(
                    zygote, self.config.app_dir, self.url, store, self.admin, self.open_file_limit
                )
            )
            self.service_manager.ready(self._serving(zygote))
            if self.admin is not None and self.admin.waiting:
                self.admin.answer_waiting(None)  # a `hibana reload` that made it try again
            return self._loop()
        finally:
            self.connections.close()
            self.app_store.stop_duties()
            self.app_store.close()
            if self.admin is not None:
                self.admin.close()
            self.sock.close()
            self._close_output()

    def _open_output(self) -> None:
        self._logs = LogOutput(self.config)

    def _close_output(self) -> None:
        if self._logs is not None:
            self._logs.close()
            self._logs = None

    @property
    def output(self) -> ProcessOutput | None:
        """fd 1 and 2 of the processes we start (None: not open)."""
        return None if self._logs is None else self._logs.output

    def _redact(self, values: list[str]) -> None:
        if self.output is not None:
            self.output.redact(values)

    def check_secrets(self, zygote: Zygote) -> None:
        """Every secret ``zygote``'s functions name is set (raises HostStartError)."""
        self.app_store.check_secrets(zygote)

    @property
    def store(self) -> Store | None:
        return self.app_store.store

    @property
    def duties(self) -> StoreDuties | None:
        return self.app_store.duties

    @property
    def shutting_down(self) -> bool:
        """A stop was asked for (it may not have begun yet)."""
        return self.stopping or self._stop_asked

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
        for sig in (*STOP_SIGNALS, signal.SIGHUP):
            signal.signal(sig, lambda *_: None)  # the byte on the wakeup fd is what we act on
        self.sel.register(self._signal_r, selectors.EVENT_READ, "signal")
        self.sel.register(self._reload_r, selectors.EVENT_READ, "reload")
        # those that came before, from the CLI's first step on, count as these do
        for noted in early_signals.take():
            self._note_signal(noted)

    def _take_signals(self) -> None:
        """Note what the signals that arrived ask for: to stop, or to reload the app."""
        for sig in self._signal_r.recv(64):
            self._note_signal(sig)

    def _note_signal(self, sig: int) -> None:
        if sig in STOP_SIGNALS:
            self._stop_asked = True
        elif sig == signal.SIGHUP:
            self._reload_asked = True

    def adopt(self, zygote: Zygote) -> None:
        assert zygote.scaling is not None
        self.generation += 1
        zygote.generation = self.generation
        zygote.loaded_at = time.time()
        self.zygote = zygote
        self.scaler = Scaler(zygote.scaling)

    def start_zygote(self) -> Zygote | None:
        """A zygote that has imported the app, or raises AppLoadError with the reason."""
        assert self.sock is not None
        assert self._logs is not None
        config = dataclasses.replace(self.config, log_fd=self._logs.fd)
        zygote = launch(
            config, self.sock, self.connections.worker_end, self.permits.fd, self._logs.output
        )
        ours = zygote.channel.sock
        waiter = selectors.DefaultSelector()
        waiter.register(ours, selectors.EVENT_READ, "zygote")
        waiter.register(self._signal_r, selectors.EVENT_READ, "signal")
        # closes of connections wait on us (we hold duplicates): keep taking them
        waiter.register(self.connections.sock, selectors.EVENT_READ, "handoff")
        # the version that serves keeps serving while this one imports (a reload of an
        # app that loads a model, say): its workers' exits and their 502s, a cold start
        # from zero, the scaler's ticks, `hibana status` (a POST /reload waits for the
        # next reload: one now would start another import inside this one)
        if self.admin is not None:
            waiter.register(self.admin.sock, selectors.EVENT_READ, "admin")
        watched = self._watched_socks()  # a zygote that died is not: it is being replaced
        serving = {
            z.channel.sock: z
            for z in [self.zygote, *self.retired]
            if z is not None and z.channel.sock in watched
        }
        for sock, old in serving.items():
            waiter.register(sock, selectors.EVENT_READ, old)
        deadline = time.monotonic() + IMPORT_TIMEOUT
        self.importing = True
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    zygote.kill()
                    raise import_too_slow(self.config.app_dir)
                ready = waiter.select(timeout=min(left, worker_pool.TICK))
                if self.zygote is not None and self.zygote.channel.sock in serving:
                    self.tick()
                for key, _ in ready:
                    if key.data == "handoff":
                        self.connections.receive()
                        continue
                    if key.data == "admin":
                        assert self.admin is not None
                        self.admin.serve_one(busy=True)
                        continue
                    if isinstance(key.data, Zygote):
                        worker_pool.on_zygote(self, key.data)
                        for sock in list(serving):
                            if sock.fileno() < 0 or sock not in self._watched_socks():
                                # it died, or its workers all exited: dealt with, not ours
                                with contextlib.suppress(KeyError, ValueError):
                                    waiter.unregister(sock)
                                del serving[sock]
                        continue
                    if key.data == "signal":
                        self._take_signals()
                        if not self._stop_asked:
                            continue  # a reload asked for meanwhile: done once this ends
                        zygote.kill()
                        return None
                    if zygote.imported(self.code):
                        self.sel.register(ours, selectors.EVENT_READ, zygote)
                        return zygote
        finally:
            self.importing = False
            waiter.close()

    def _await_spawned(self, zygote: Zygote, timeout: float = 10.0) -> None:
        """Process the zygote's events until every worker asked of it exists."""
        self.wait_until(
            lambda: all(r.pid is not None for r in self.records if r.zygote is zygote), timeout
        )

    def _first_zygote(self) -> Zygote | None:
        """The app's first version. ``serve`` fails fast on an app that does not load;
        ``dev`` reports why and tries again at each change to the app's files."""
        if not self.config.reload:
            return self.start_zygote()
        watch_app_files(self.config.app_dir, self._reload_w)
        while True:
            try:
                return self.start_zygote()
            except AppLoadError as exc:
                self.report(
                    f"error: {exc}\nWaiting for a change to {self.config.app_dir}; until then "
                    f"{self.url} answers 503 (Ctrl+C to stop)"
                )
                why = self.load_error = str(exc)
                if self.admin is not None and self.admin.waiting:
                    self.admin.answer_waiting(why)
            self.watch_socket(True)
            try:
                if not self._await_change(why):
                    return None
            finally:
                self.watch_socket(False)

    def _await_change(self, why: str) -> bool:
        """Wait for a change to the app's files (True), or a signal to stop (False);
        meanwhile a request gets 503 saying ``why`` the app does not load."""
        assert self.sock is not None
        answer = raw_answer(
            503, f"the app does not load; hibana dev waits for a change that fixes it: {why}"
        )
        while not self._stop_asked:
            if self._reload_asked:
                # SIGHUP, now or during the import that failed (which may have read the
                # files before the fix it asks to load): try again now
                self._reload_asked = False
                return True
            for key, _ in self.sel.select():
                if key.data == "signal":
                    self._take_signals()
                elif key.data == "reload":
                    self._reload_r.recv(64)
                    return not self._stop_asked
                elif key.data == "listen":
                    refuse_backlog(self.sock, answer)
                elif key.data == "handoff":
                    self.connections.receive()
                elif key.data == "admin":
                    assert self.admin is not None
                    self.admin.serve_one()
                    if self.admin.waiting:  # `hibana reload`: try again now
                        return True
        return False

    # -- running ----------------------------------------------------------------------
    def _loop(self) -> int:
        while True:
            # a reload asked for during the last one (SIGHUP, POST /reload) starts now
            pending = self._reload_asked or (self.admin is not None and bool(self.admin.waiting))
            interval = 0 if pending else worker_pool.tick_interval(self)
            for key, _ in self.sel.select(timeout=interval):
                # After a reload (a changed file, POST /reload), the rest of the events may
                # name a version it has stopped and closed: select again instead.
                if key.data == "signal":
                    self._take_signals()
                elif key.data == "reload":
                    self._reload_r.recv(64)
                    self.report("Change detected; reloading the app")
                    self.reload()
                    break
                elif key.data == "admin":
                    assert self.admin is not None
                    self.admin.serve_one()
                    break
                elif key.data == "listen":
                    pass  # a connection waits and no worker runs: the tick starts one
                elif key.data == "queues":
                    self.app_store.wake.recv(64)  # messages wait: the tick starts a worker
                elif key.data == "handoff":
                    self.connections.receive()
                else:
                    worker_pool.on_zygote(self, key.data)
            waiting = self.admin is not None and bool(self.admin.waiting)
            if (self._reload_asked or waiting) and not self._stop_asked:
                if self._reload_asked:
                    self.report("SIGHUP: reloading the app")
                if waiting:
                    assert self.admin is not None
                    self.admin.reload_waiting()  # that SIGHUP's reload too
                else:
                    self.reload()
            if self._stop_asked:
                return self._shutdown()
            self.tick()

    def tick(self) -> None:
        """One scaling cycle (``worker_pool.tick``)."""
        worker_pool.tick(self)

    def spawn_more(self, zygote: Zygote, total: int, on_demand: bool) -> None:
        """Ask ``zygote`` for workers in free slots until it has ``total``."""
        worker_pool.spawn_more(self, zygote, total, on_demand)

    def _open_admin(self) -> None:
        self.admin = self._admin_endpoint()
        self.sel.register(self.admin.sock, selectors.EVENT_READ, "admin")

    def _admin_endpoint(self) -> AdminEndpoint:
        port = self.config.admin_port
        try:
            return AdminEndpoint(self, port)
        except OSError as exc:
            raise HostStartError(
                f"cannot listen for `hibana status` and `hibana reload` on 127.0.0.1:{port}: "
                f"{exc.strerror}; pass --admin-port another port, or leave it out (a free "
                "one is picked)"
            ) from None

    def enforce_limits(self, zygote: Zygote) -> None:
        """``zygote``'s version serves: its limits are every version's (``limits.enforce``)."""
        self.limits.enforce(zygote)

    def permit_column(self, function: str) -> int | None:
        """``function``'s column in the permit table (None: it has none)."""
        return self.limits.column(function)

    def permit_waits(self, column: int) -> list[float]:
        """When each worker's oldest invocation waiting for a permit of ``column`` arrived
        (time.monotonic()), of the workers with one waiting."""
        rows = [r.permit_row for r in self.records if r.pid is not None and r.permit_row >= 0]
        return self.limits.waits(rows, column)

    def _watched_socks(self) -> set[Any]:
        return {key.fileobj for key in self.sel.get_map().values()}

    def connection_waiting(self) -> bool:
        assert self.sock is not None
        return bool(_readable([self.sock], 0))

    def watch_socket(self, on: bool) -> None:
        """With no worker running, wake up as soon as a connection arrives."""
        assert self.sock is not None
        if on and not self._watching_socket:
            self.sel.register(self.sock, selectors.EVENT_READ, "listen")
        elif not on and self._watching_socket:
            self.sel.unregister(self.sock)
        self._watching_socket = on

    def reload(self) -> str | None:
        """Import the app afresh and move to it without a dropped request: the new
        version's workers start on the same socket (at least as many as the old version
        ran, and at least one, which proves it starts), then the old ones stop accepting,
        finish what they hold (requests, streams, queue deliveries) and exit.

        Returns None once the new version serves and the old one accepts no more; else
        why not (it does not import, a secret it names is missing, its workers fail to
        start, the host is stopping), and the previous version goes on serving."""
        self._reload_asked = False
        old = self.zygote
        if self.shutting_down or old is None:
            return "the host is shutting down"
        self.service_manager.reloading()
        self.reloading_since = time.monotonic()
        try:
            failed = swap(self, old)
        finally:
            self.reloading_since = None
        self.previous_lost = failed is not None and old.dead
        if not self.shutting_down:
            serving = self._serving(self.zygote)  # type: ignore[arg-type]
            if failed is not None:
                serving += f"; the last reload failed: {failed.splitlines()[0]}"
            self.service_manager.ready(serving)
        return failed

    def _serving(self, zygote: Zygote) -> str:
        """One line on what the host serves, for the service manager."""
        return f"serving generation {zygote.generation} of {self.config.app_dir} on {self.url}"

    def restart_duties(self, zygote: Zygote) -> None:
        self.app_store.restart_duties(zygote)

    def wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Process the zygotes' events (and the connection handoffs and signals) until
        ``done()``; False if ``timeout`` passed first or a stop was asked for."""
        deadline = time.monotonic() + timeout
        while not done():
            if self._stop_asked or time.monotonic() >= deadline:
                return False
            zygotes = {z.channel.sock: z for z in [self.zygote, *self.retired] if z is not None}
            watched = [*zygotes, self.connections.sock, self._signal_r]
            if self.admin is not None:
                watched.append(self.admin.sock)
            for sock in _readable(watched, 0.01):
                if sock is self._signal_r:
                    self._take_signals()
                elif sock is self.connections.sock:
                    self.connections.receive()
                elif self.admin is not None and sock is self.admin.sock:
                    self.admin.serve_one(busy=True)
                else:
                    worker_pool.on_zygote(self, zygotes[sock])
        return True

    def status(self) -> dict[str, Any]:
        """What ``hibana status`` shows: per worker and per function."""
        return host_status(self)

    # -- stopping ---------------------------------------------------------------------
    def _shutdown(self) -> int:
        self.stopping = True
        self.service_manager.stopping()
        self.app_store.stop_duties()
        live = [r for r in self.records if r.pid is not None]
        self.report(
            f"Shutting down: draining {len(live)} worker(s), "
            f"up to {self.config.shutdown_timeout:g}s"
        )
        for r in live:
            signal_worker(r.pid, signal.SIGTERM)  # type: ignore[arg-type]
        # a connection waiting now is answered 503 at the end (refuse_on_stop), not a
        # worker to start: watched, it would wake every select of the drain at once
        self.watch_socket(False)
        began = time.monotonic()
        deadline = began + self.config.shutdown_timeout + 5
        while self.records and time.monotonic() < deadline:
            for key, _ in self.sel.select(timeout=0.1):
                if key.data == "signal":
                    # One signal sent twice at once (to the process and to its group, as
                    # `timeout` does) is not a second request to stop; a SIGHUP is none.
                    signals = self._signal_r.recv(64)
                    if second_stop(signals, began):
                        self.report("Second signal: stopping now")
                        self._kill_all(answer=True)
                        self._refuse_on_stop()
                        return 1
                elif key.data == "admin":
                    assert self.admin is not None
                    self.admin.serve_one()
                elif key.data == "handoff":
                    self.connections.receive()
                elif key.data == "reload" or key.data == "queues":
                    # a changed file, or messages waiting: nothing to do now, but read, or
                    # every select of the drain returns at once (the loop spun a core)
                    key.fileobj.recv(64)  # type: ignore[union-attr]
                elif isinstance(key.data, Zygote):
                    worker_pool.on_zygote(self, key.data)
            # a worker asked for but never reported cannot be waited for
            self.records = [r for r in self.records if r.pid is not None]
        if self.records:
            self.report(f"{len(self.records)} worker(s) did not stop in time; killing them")
        self._kill_all(answer=True)  # their requests get a 503, not an empty reply
        self._refuse_on_stop()
        return 0

    def _refuse_on_stop(self) -> None:
        assert self.sock is not None
        refuse_on_stop(self.sock, self.report)

    def _kill_all(self, answer: bool = False) -> None:
        kill_all(
            self.records,
            [self.zygote, *self.retired],
            self.connections,
            self.report,
            self.output,
            answer,
        )


def _readable(socks: list[socket.socket], timeout: float) -> list[socket.socket]:
    """Those of ``socks`` with something to read, waiting up to ``timeout`` seconds
    (poll, not select: a raised limit on open files gives numbers select cannot take)."""
    poller = select.poll()
    by_fd = {}
    for sock in socks:
        by_fd[sock.fileno()] = sock
        poller.register(sock, select.POLLIN)
    return [by_fd[fd] for fd, _ in poller.poll(timeout * 1000)]
