"""The zygote: imports the app once, then forks workers on the supervisor's request.

Run as ``python -m hibana.host.zygote CONFIG_JSON LISTEN_FD CONTROL_FD``. It reports
``ready`` (with the app's functions) or ``error`` (why the app did not load), then
``spawned``/``exited`` for each worker. It dies with the supervisor, and its workers
die with it.
"""

from __future__ import annotations

import gc
import os
import selectors
import signal
import socket
import sys

from hibana.app import App
from hibana.errors import AppError
from hibana.host.config import HostConfig
from hibana.host.control import Channel
from hibana.host.lifeline import die_with_parent
from hibana.host.loader import load_app
from hibana.host.worker import run_worker  # imported here so forked workers start with it


def _describe(app: App, config: HostConfig) -> list[dict[str, str]]:
    return [
        {"name": spec.name, "trigger": spec.trigger.describe(), "kind": "http"}
        for spec in app.functions
    ]


def _fork_worker(
    app: App, listener: socket.socket, control: Channel, config: HostConfig, index: int
) -> int:
    pid = os.fork()
    if pid:
        return pid
    # The child: a worker. Nothing of the zygote's loop runs here again.
    zygote = os.getppid()
    try:
        control.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        die_with_parent(zygote)
        run_worker(app, listener, config, index)
    finally:
        os._exit(1)


def serve_forks(app: App, listener: socket.socket, control: Channel, config: HostConfig) -> int:
    sel = selectors.DefaultSelector()
    sel.register(control.sock, selectors.EVENT_READ)
    children: set[int] = set()
    while True:
        for _ in sel.select(timeout=0.05):
            try:
                messages = control.receive()
            except (EOFError, ConnectionError):
                return 0  # the supervisor is gone; workers follow through their lifeline
            for message in messages:
                if message["op"] == "spawn":
                    pid = _fork_worker(app, listener, control, config, message["index"])
                    children.add(pid)
                    control.send(event="spawned", pid=pid, index=message["index"])
                elif message["op"] == "stop":
                    return 0
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.discard(pid)
            control.send(event="exited", pid=pid, code=os.waitstatus_to_exitcode(status))


def main(argv: list[str]) -> int:
    config = HostConfig.from_json(argv[1])
    listener = socket.socket(fileno=int(argv[2]))
    control = Channel(socket.socket(fileno=int(argv[3])))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which decides
    die_with_parent(int(argv[4]))
    try:
        app = load_app(config.app_dir)
    except AppError as exc:
        control.send(event="error", message=str(exc))
        return 2
    # Objects that exist now are shared with every worker; keep the GC from touching
    # (and so copying) their pages in each child.
    gc.collect()
    gc.freeze()
    control.send(event="ready", functions=_describe(app, config))
    return serve_forks(app, listener, control, config)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
