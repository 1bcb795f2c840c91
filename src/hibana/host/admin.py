"""The admin endpoint: ``GET /status`` on loopback, served by the supervisor for
``hibana status``. Its address is written to ``APP_DIR/.hibana/host.json``."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def host_status(sup: Supervisor) -> dict[str, Any]:
    """What ``hibana status`` shows: per worker and per function, read off the board."""
    zygote = sup.zygote
    now = time.monotonic()
    workers: list[dict[str, Any]] = []
    functions: list[dict[str, Any]] = []
    if zygote is not None and zygote.board is not None:
        board = zygote.board
        live = [r for r in sup.records if r.zygote is zygote and r.pid is not None]
        for r in sorted(live, key=lambda r: r.slot):
            ready = board.get(r.slot, "ready_at")
            workers.append(
                {
                    "slot": r.slot,
                    "pid": r.pid,
                    "state": "retiring" if r.retiring else ("ready" if ready else "starting"),
                    "inflight": int(board.get(r.slot, "inflight")),
                    "invocations": int(board.get(r.slot, "invocations")),
                    "cold_start_ms": round(board.get(r.slot, "cold_start_ms"), 3),
                    "idle_s": round(now - max(board.get(r.slot, "last_active"), r.started), 3),
                    "rss_mb": round(board.get(r.slot, "rss_mb"), 1),
                }
            )
        for i, fn in enumerate(zygote.functions):
            past = sup.past.get(fn["name"], {})
            rows = [r.slot for r in live]
            # the newest worker whose first invocation was this function's
            cold = [
                (board.get(s, "ready_at"), board.function_get(s, i, "last_cold_start_ms"))
                for s in rows
                if board.function_get(s, i, "cold_starts")
            ]
            if past.get("cold_at"):
                cold.append((past["cold_at"], past["last_cold_start_ms"]))
            functions.append(
                {
                    "name": fn["name"],
                    "trigger": fn["trigger"],
                    "workers": len(live),
                    "inflight": int(sum(board.function_get(s, i, "inflight") for s in rows)),
                    "invocations": int(
                        past.get("invocations", 0)
                        + sum(board.function_get(s, i, "invocations") for s in rows)
                    ),
                    "cold_starts": int(
                        past.get("cold_starts", 0)
                        + sum(board.function_get(s, i, "cold_starts") for s in rows)
                    ),
                    "errors": int(
                        past.get("errors", 0)
                        + sum(board.function_get(s, i, "errors") for s in rows)
                    ),
                    "last_cold_start_ms": round(max(cold)[1], 3) if cold else None,
                }
            )
    duties = sup.duties
    queues = [dataclasses.asdict(q) for q in duties.stats] if duties is not None else []
    stats_age = round(now - duties.stats_at, 3) if duties is not None and duties.stats_at else None
    return {
        "queues": queues,
        "queues_age_s": stats_age,
        "pid": os.getpid(),
        "app": sup.config.app_dir,
        "url": sup.url,
        "uptime_s": round(time.time() - sup.started_at, 3),
        "scaling": dataclasses.asdict(zygote.scaling) if zygote and zygote.scaling else None,
        "workers": workers,
        "functions": functions,
    }
