"""The admin endpoint: ``GET /status`` on loopback, served by the supervisor for
``hibana status``. Its address is written to ``APP_DIR/.hibana/host.json``."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hibana.host.supervisor import Supervisor

STATE_DIR = ".hibana"
HOST_FILE = "host.json"


def host_file(app_dir: str | os.PathLike[str]) -> Path:
    return Path(app_dir) / STATE_DIR / HOST_FILE


class AdminEndpoint:
    def __init__(self, supervisor: Supervisor, port: int) -> None:
        self.supervisor = supervisor
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.file = host_file(supervisor.config.app_dir)
        try:
            self.file.parent.mkdir(exist_ok=True)
            self.file.write_text(
                json.dumps({"pid": os.getpid(), "url": supervisor.url, "admin": self.url})
            )
        except OSError:
            self.file = None  # type: ignore[assignment]  # a read-only app folder: no status by --app

    def serve_one(self) -> None:
        """Answer one waiting connection; a slow or odd client is dropped, never waited on."""
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        with conn:
            conn.settimeout(1.0)
            try:
                head = b""
                while b"\r\n\r\n" not in head and len(head) < 8192:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                target = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
                if target == b"/status":
                    status, body = 200, json.dumps(self.supervisor.status()).encode()
                else:
                    status, body = 404, b'{"error": "the admin endpoint serves GET /status"}'
                conn.sendall(
                    b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                    b"connection: close\r\n\r\n%s"
                    % (status, b"OK" if status == 200 else b"Not Found", len(body), body)
                )
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        if self.file is not None:
            with contextlib.suppress(OSError, ValueError):
                # another host may have started on this folder since: leave its address
                if json.loads(self.file.read_text()).get("pid") == os.getpid():
                    self.file.unlink()
