"""The zygote: imports the app once, then starts workers on the supervisor's request.

Run as ``python -m hibana.host.zygote CONFIG_JSON LISTEN_FD CONTROL_FD SUPERVISOR_PID``.
It reports ``ready`` (the app's functions, the resolved scaling settings and the board)
or ``error`` (why the app did not load), then ``spawned``/``exited`` for each worker.
It dies with the supervisor, and its workers die with it.

How a worker starts depends on ``prewarm``:
- "app": forked from the zygote, which has imported the app (module-level code included);
- "runtime": forked from a zygote that has imported hibana only; the worker imports the app;
- "none": a fresh interpreter (``python -m hibana.host.worker``) that imports everything.
In the last two modes the zygote checks the app in a short-lived child, so a broken app
still fails fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
from logging.handlers import QueueListener
from typing import Any

from hibana import __version__
from hibana.app import App, EventTrigger, QueueTrigger, TimerTrigger
from hibana.errors import AppError, HibanaError
from hibana.host.board import Board, Layout, PermitTable
from hibana.host.config import HostConfig
from hibana.host.control import Channel, Spawn, code_stamp
from hibana.host.lifeline import die_with_parent
from hibana.host.loader import load_app
from hibana.host.scaling import Scaling, resolve

# run_worker is imported here so forked workers have it
from hibana.host.worker import preload, resident_mb, run_worker
from hibana.host.worker_exit import forget_zygote_hooks
from hibana.telemetry.log_sink import LogSink
from hibana.telemetry.logs import Logger
from hibana.telemetry.printed import PrintedLines
from hibana.telemetry.python_logging import import_logging, restart_listeners, running_listeners


def describe(app: App) -> list[dict[str, Any]]:
    """The app's functions as the supervisor needs them (it never imports the app)."""
    out: list[dict[str, Any]] = []
    for spec in app.functions:
        trigger = spec.trigger
        fn: dict[str, Any] = {
            "name": spec.name,
            "trigger": trigger.describe(),
            "kind": "http",
            "secrets": list(spec.secrets),
            "max_concurrency": spec.max_concurrency,
            "timeout": spec.timeout,
        }
        if isinstance(trigger, EventTrigger):
            fn.update(
                kind="event",
                queue=trigger.queue,
                max_attempts=trigger.max_attempts,
                topic=trigger.topic,
                filter=None if trigger.filter is None else json.dumps(trigger.filter.to_dict()),
            )
        elif isinstance(trigger, QueueTrigger):
            fn.update(kind="queue", queue=trigger.queue, max_attempts=trigger.max_attempts)
        elif isinstance(trigger, TimerTrigger):
            fn.update(
                kind="timer",
                queue=trigger.queue,
                schedule=trigger.schedule.expression,
                tz=trigger.schedule.tz,
                run_on_startup=trigger.run_on_startup,
            )
        out.append(fn)
    return out


#: The app's functions and settings, handed by a zygote that imported the app to the one
#: it execs into when the app asks for ``prewarm`` "runtime" or "none".
_LOADED = "_HIBANA_ZYGOTE_LOADED"
#: The most it carries: Linux holds one environment string to 128 KiB (an app of about a
#: thousand functions, more than that).
_LOADED_MAX = 96 * 1024


def _imported(config: HostConfig, fields: dict[str, Any]) -> App:
    """The app imported, what it logs meanwhile written as JSON lines with ``fields``, as
    a worker writes its records (``import_logging``)."""
    with import_logging(config.log_fd, config.log_level, fields):
        return load_app(config.app_dir)


def _probe(config: HostConfig) -> dict[str, Any]:
    """Load the app in a throwaway child: its functions and settings, or its error."""
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        die_with_parent(parent, signal.SIGKILL)  # a host stopped mid-import takes it along
        try:
            app = _imported(config, {"pid": os.getpid()})
            result: dict[str, Any] = {"functions": describe(app), "settings": app.settings}
        except AppError as exc:
            result = {"error": str(exc)}
        with contextlib.suppress(OSError), os.fdopen(write_fd, "w") as out:
            out.write(json.dumps(result))  # OSError: the zygote stopped waiting (it is gone)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(text) if text else {"error": "the app crashed the process importing it"}


def _memory_limit_below_start(scaling: Scaling, app_imported: bool) -> str | None:
    """Why ``memory_limit_mb`` cannot work, if it is no more than the memory a worker
    starts with (this process's, which it is forked from): each worker would be
    replaced after each invocation."""
    limit = scaling.memory_limit_mb
    if limit is None:
        return None
    try:
        statm = os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:
        return None  # no /proc: the workers cannot measure themselves either
    try:
        start_mb = resident_mb(statm)
    finally:
        os.close(statm)
    if start_mb is None or start_mb < limit:
        return None
    what = "with the app imported" if app_imported else "before the app is imported"
    return (
        f"memory_limit_mb={limit} is not above the {start_mb:.0f} MB a worker starts with "
        f"({what}): every worker would be replaced after each invocation; set it well "
        "above that (--memory-limit-mb, or App(memory_limit_mb=...))"
    )


#: How often the zygote looks for exited workers if no SIGCHLD has told it.
_REAP_INTERVAL = 1.0


class Zygote:
    def __init__(
        self,
        config: HostConfig,
        listener: socket.socket,
        control: Channel,
        app: App | None,
        scaling: Scaling,
        board: Board,
        handoff: int,
        permits: PermitTable,
        listeners: list[QueueListener],
    ) -> None:
        #: The app's logging QueueListeners that run here, to start again in each worker
        #: forked from here: a thread does not survive a fork.
        self.listeners = listeners
        #: The supervisor's socket for connection handoffs (see host.handoff); inherited.
        self.handoff = handoff
        self.config = config
        self.listener = listener
        self.control = control
        self.app = app
        self.scaling = scaling
        self.board = board
        #: The supervisor's table of max_concurrency permits; inherited.
        self.permits = permits
        self.children: set[int] = set()
        #: Where SIGCHLD lands (the signal module's wakeup fd writes to the second).
        self._exits = socket.socketpair()

    def start_worker(self, spawn: Spawn) -> int:
        self.board.clear(spawn.slot)
        if self.scaling.prewarm == "none":
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hibana.host.worker",
                    self.config.to_json(),
                    json.dumps(dataclasses.asdict(spawn)),
                    str(self.listener.fileno()),
                    str(self.board.fd),
                    json.dumps(dataclasses.asdict(self.board.layout)),
                    str(os.getpid()),
                    str(self.handoff),
                    str(self.permits.fd),
                ],
                pass_fds=(
                    self.listener.fileno(),
                    self.board.fd,
                    self.handoff,
                    self.config.log_fd,
                    self.permits.fd,
                ),
                stdin=subprocess.DEVNULL,
            )
            return proc.pid
        zygote = os.getpid()  # before the fork: if the zygote exits first, getppid() says 1
        # held, not ignored (the zygote's own way with it), from the fork until the child
        # takes it as a worker does: one sent the child at once is kept, not lost
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        pid = os.fork()
        if pid:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            return pid
        # The child: a worker. Nothing of the zygote's loop runs here again.
        try:
            self.control.close()
            signal.set_wakeup_fd(-1)
            for sock in self._exits:
                sock.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            # a scale-in signal before the worker serves is moot: it is not idle yet
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)
            die_with_parent(zygote)
            restart_listeners(self.listeners)
            app = (
                self.app if self.app is not None else _imported(self.config, {"worker": spawn.slot})
            )
            run_worker(
                app, self.listener, self.config, spawn, self.board, self.handoff, self.permits
            )
        except BaseException as exc:
            # before the worker could say it (run_worker exits the process itself): the
            # app does not import in it (prewarm "runtime": its files changed since)
            sink = LogSink(self.config.log_fd, self.config.log_level)
            Logger(sink, {"pid": os.getpid()}).exception("worker crashed", exc)
        finally:
            os._exit(1)

    def serve(self) -> int:
        # a worker's exit (SIGCHLD) wakes the loop through the wakeup fd: no polling
        exits, wake = self._exits
        exits.setblocking(False)
        wake.setblocking(False)
        signal.set_wakeup_fd(wake.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        try:
            return self._serve(exits)
        finally:
            # workers may exit while this process does: their SIGCHLD must not go to a
            # wakeup fd closed under it ("Exception ignored ... Bad file descriptor")
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)

    def _serve(self, exits: socket.socket) -> int:
        sel = selectors.DefaultSelector()
        sel.register(self.control.sock, selectors.EVENT_READ, "control")
        sel.register(exits, selectors.EVENT_READ, "exits")
        while True:
            for key, _ in sel.select(timeout=_REAP_INTERVAL):
                if key.data == "exits":
                    with contextlib.suppress(OSError):
                        exits.recv(4096)
                    continue
                try:
                    messages = self.control.receive()
                except (EOFError, ConnectionError):
                    return 0  # the supervisor is gone; workers follow through their lifeline
                for message in messages:
                    if message["op"] == "spawn":
                        spawn = Spawn(**message["spawn"])
                        pid = self.start_worker(spawn)
                        self.children.add(pid)
                        self.control.send(event="spawned", pid=pid, slot=spawn.slot)
                    elif message["op"] == "stop":
                        return 0
            self._reap()

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.control.send(event="exited", pid=pid, code=os.waitstatus_to_exitcode(status))


def main(argv: list[str]) -> int:
    config = HostConfig.from_json(argv[1])
    listener = socket.socket(fileno=int(argv[2]))
    control = Channel(socket.socket(fileno=int(argv[3])))
    # Ctrl-C, or a service manager signalling the whole group, reaches the supervisor, which
    # decides; the zygote holds nothing to drain and goes when the supervisor goes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # SIGHUP asks the supervisor to reload the app; a terminal that hangs up sends it to the
    # whole group, and neither the zygote nor its workers (who inherit this) may die of it.
    # The supervisor started us with it held (``zygote_handle.launch``): one that came
    # meanwhile is dropped as ignored, not taken with the default action.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    die_with_parent(int(argv[4]), signal.SIGKILL)
    forget_zygote_hooks()  # the atexit hooks registered here run here, not in each worker
    # stdout is JSON lines: what the app prints as it is imported becomes log lines too
    sys.stdout = PrintedLines(LogSink(config.log_fd, config.log_level), {"pid": os.getpid()})
    preload()
    app: App | None = None
    if config.prewarm in (None, "app"):
        try:
            app = _imported(config, {"pid": os.getpid()})
        except AppError as exc:
            control.send(event="error", message=str(exc))
            return 2
        functions, settings = describe(app), app.settings
        if config.prewarm is None and settings.get("prewarm") not in (None, "app"):
            # The app asks for a zygote without the app in it: start over as one.
            # What it found goes along, so the new zygote need not import the app again to
            # check it (an import's side effects, such as a connection made, happen once less).
            fresh = dataclasses.replace(config, prewarm=settings["prewarm"])
            handed = json.dumps({"functions": functions, "settings": settings})
            if len(handed) <= _LOADED_MAX:  # else the new zygote checks the app itself
                os.environ[_LOADED] = handed
            os.execv(
                sys.executable,
                [sys.executable, "-m", "hibana.host.zygote", fresh.to_json(), *argv[2:]],
            )
    else:
        loaded = os.environ.pop(_LOADED, None)
        probe = json.loads(loaded) if loaded is not None else _probe(config)
        if "error" in probe:
            control.send(event="error", message=probe["error"])
            return 2
        functions, settings = probe["functions"], probe["settings"]
    try:
        scaling = resolve(config.scaling_overrides(), settings, config.scaling_defaults())
    except HibanaError as exc:
        control.send(event="error", message=str(exc))
        return 2
    # the workers' pool, as the CLI, the App or the default has it
    config = dataclasses.replace(config, threads=scaling.threads)
    if (too_low := _memory_limit_below_start(scaling, app is not None)) is not None:
        control.send(event="error", message=too_low)
        return 2
    # twice the most workers: a worker that retires (scale-in, over its memory limit, a
    # stuck function) keeps its row until it exits, and its replacement needs one meanwhile
    board = Board.create(Layout(slots=2 * scaling.max_instances, functions=max(1, len(functions))))
    # Objects that exist now are shared with every forked worker; keep the GC from touching
    # (and so copying) their pages in each child.
    gc.collect()
    gc.freeze()
    control.send(
        event="ready",
        code=code_stamp(),
        version=__version__,
        functions=functions,
        scaling=dataclasses.asdict(scaling),
        board={"fd": board.fd, **dataclasses.asdict(board.layout)},
    )
    permits = PermitTable(int(argv[6]))
    zygote = Zygote(
        config, listener, control, app, scaling, board, int(argv[5]), permits, running_listeners()
    )
    return zygote.serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
