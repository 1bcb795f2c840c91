"""The supervisor <-> zygote control channel: one JSON object per line over a socketpair."""

from __future__ import annotations

import functools
import hashlib
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class Channel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, **message: Any) -> None:
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def receive(self) -> list[dict[str, Any]]:
        """The whole messages readable now; raises EOFError when the peer has gone."""
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        return [json.loads(line) for line in lines if line]

    def close(self) -> None:
        self.sock.close()


@dataclass(frozen=True, slots=True)
class Spawn:
    """Why and when the supervisor asked for a worker."""

    slot: int
    #: time.monotonic() when the supervisor asked (the clock is system-wide on Linux)
    requested_at: float
    #: True when a request was waiting for it (scale from zero or out): its wait is the
    #: cold start the first invocation reports.
    on_demand: bool
    memory_limit_mb: int | None = None
    #: Its row of the host's permit table (-1: none free; its limits are its own), and
    #: the table's column of each of the app's functions (-1: no max_concurrency).
    permit_row: int = -1
    permit_columns: tuple[int, ...] = ()


@functools.cache
def code_stamp() -> str:
    """What tells apart the hibana code this process runs from another's: its package's
    files, by size and modification time. Installing another hibana (or editing an
    editable install) changes it; a supervisor and a zygote that differ would misread
    each other's board and messages."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(root.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
