"""The supervisor's handle on a zygote process: starting one, reading its answer to the
import of the app, asking it for workers, counting its workers that die as they start,
stopping it.

The zygote's own side is ``hibana.host.zygote``; this is what the supervisor holds of it.
It is separate from the supervisor because it needs nothing of the supervisor's state:
what a zygote is given (the socket, the handoff end, the permit table, the output) is
passed in, and what it answers is kept on the handle.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from hibana.errors import AppLoadError
from hibana.host.board import Board, Layout
from hibana.host.config import HostConfig
from hibana.host.control import Channel, Spawn
from hibana.host.scaling import Scaling
from hibana.telemetry.process_output import ProcessOutput

#: How long a freshly started zygote may take to import the app.
IMPORT_TIMEOUT = 120.0
#: Workers in a row dead before they served, after which waiting requests get 503 ...
START_CRASHES = 3
#: ... for this long after the last died: then a request waits for a new worker again
#: (what failed them, a database down, may have come back).
START_CRASHES_HELD = 10.0
#: Seconds between imports of the app to replace a zygote that died, while they fail.
REPLACE_RETRY = 5.0


@dataclass
class Zygote:
    proc: subprocess.Popen[bytes]
    channel: Channel
    functions: list[dict[str, str]] = field(default_factory=list)
    scaling: Scaling | None = None
    board: Board | None = None
    #: Which load of the app this is: 1 at start, one more at each reload.
    generation: int = 0
    #: When it started serving (``time.time()``).
    loaded_at: float = 0.0
    #: The exit code of its last worker that exited with an error (0: none has).
    last_crash: int = 0
    #: Workers in a row that exited with an error before they served; none since one did.
    start_crashes: int = 0
    #: When the last of those exited (``time.monotonic()``).
    start_crashed_at: float = 0.0
    #: Its process died (its channel ended): it forks no more workers.
    dead: bool = False
    #: Dead, and the import of the app that was to replace it failed: why, and when
    #: the next import is tried (``time.monotonic()``).
    unreplaced: str | None = None
    replace_at: float = 0.0

    def imported(self, code: str) -> bool:
        """Read what the zygote said: True once it has imported the app (its functions,
        scaling and board are then set); raises AppLoadError if the app did not load, the
        process exited first, or it runs other hibana code than ``code``."""
        try:
            messages = self.channel.receive()
        except (EOFError, ConnectionError):
            exit_code = self.proc.wait()
            raise AppLoadError(
                f"the process importing the app exited with code {exit_code} before "
                "saying whether the app loaded (see its output above)"
            ) from None
        for message in messages:
            if message["event"] == "error":
                self.proc.wait()
                self.channel.close()
                raise AppLoadError(message["message"])
            if message["event"] == "ready":
                if message.get("code") != code:
                    self.kill()
                    self.channel.close()
                    raise AppLoadError(_changed(message.get("version")))
                self.functions = message["functions"]
                self.scaling = Scaling(**message["scaling"])
                board = dict(message["board"])
                fd = board.pop("fd")
                self.board = Board.open(self.proc.pid, fd, Layout(**board))
                return True
        return False

    def worker_exited(self, code: int, served: bool, retiring: bool) -> None:
        """Count the exit, with ``code``, of one of its workers: one that ``served``
        shows the app starts; one that was not ``retiring`` and failed is a crash."""
        if served:
            self.start_crashes = 0  # however it ended, the app started
        elif code != 0 and not retiring:
            self.start_crashes += 1
            self.start_crashed_at = time.monotonic()
        if code != 0 and not retiring:
            self.last_crash = code

    def failing_to_start(self) -> bool:
        """Its workers die as they start: ``START_CRASHES`` in a row, the last less than
        ``START_CRASHES_HELD`` ago."""
        return (
            self.start_crashes >= START_CRASHES
            and time.monotonic() - self.start_crashed_at < START_CRASHES_HELD
        )

    def start_failure(self) -> str:
        """Why a request waiting for one of its workers is refused."""
        return (
            f"the app's workers fail as they start ({self.start_crashes} in a row, the last "
            f"with exit code {self.last_crash}: {exit_reason(self.last_crash)})"
        )

    def spawn(self, spawn: Spawn) -> None:
        # a zygote that has just died (its channel's end not read yet): the worker asked
        # for is dropped with the zygote's other records once its end is read
        with contextlib.suppress(OSError):
            self.channel.send(op="spawn", spawn=dataclasses.asdict(spawn))

    def kill(self) -> None:
        """SIGKILL the process (an import given up on) and reap it."""
        self.proc.kill()
        self.proc.wait()

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


def launch(
    config: HostConfig,
    listen: socket.socket,
    handoff: socket.socket,
    permits_fd: int,
    output: ProcessOutput,
) -> Zygote:
    """A zygote process started on ``listen``, importing the app: ``imported`` says when
    it has. ``handoff`` is the workers' end of the held connections; the process writes
    its log lines to ``config.log_fd`` and the rest of what it prints to ``output``."""
    ours, theirs = socket.socketpair()
    # the zygote starts with SIGHUP held, and ignores it once it can say so (``zygote.main``):
    # a terminal's hangup meanwhile, sent to every process of the host, does not kill it
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hibana.host.zygote",
                config.to_json(),
                str(listen.fileno()),
                str(theirs.fileno()),
                str(os.getpid()),
                str(handoff.fileno()),
                str(permits_fd),
            ],
            pass_fds=(
                listen.fileno(),
                theirs.fileno(),
                handoff.fileno(),
                config.log_fd,
                permits_fd,
            ),
            stdin=subprocess.DEVNULL,
            stdout=output.write_fd,
            stderr=output.errors_fd,
        )
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    theirs.close()
    return Zygote(proc, Channel(ours))


def exit_reason(code: int) -> str:
    """What a worker's exit ``code`` (``os.waitstatus_to_exitcode``) tells of why it
    ended, for a line that says it died."""
    if code == 1:
        return "an exception, which its log line 'worker crashed' shows"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code == signal.SIGKILL:
            return f"killed by {name} (kill -9, or the kernel's OOM killer: see dmesg)"
        return f"killed by {name}"
    return (
        "a code hibana never exits with: the app's own code ended the process "
        "(os._exit in a fork hook or at import, or a C extension)"
    )


def import_too_slow(app_dir: str) -> AppLoadError:
    """The error for an import that took over ``IMPORT_TIMEOUT``."""
    return AppLoadError(
        f"importing the app in {app_dir} took over "
        f"{IMPORT_TIMEOUT:g}s; is module-level code waiting on something?"
    )


def _changed(version: object) -> str:
    from hibana import __version__

    now = f"hibana {version} is installed now" if version != __version__ else "its files changed"
    return (
        f"hibana itself changed since this host started (it runs hibana {__version__}; "
        f"{now}): `hibana reload` loads a new version of the app, not of hibana; restart "
        "the host to run the new hibana"
    )
