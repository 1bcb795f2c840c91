"""The admin endpoint on loopback, served by the supervisor: ``GET /status`` for
``hibana status``, ``POST /reload`` for ``hibana reload``. Its address is written to
``APP_DIR/.hibana/host.json``.

That file outlives a host killed with SIGKILL, and its port may then be another host's:
so every answer says whose it is (``pid``, ``app``: the app folder's real path), and
``POST /reload?pid=N&app=PATH`` reloads only if this host is that one (409 otherwise)."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from hibana.store.sqlite import STATE_DIR, make_state_dir

if TYPE_CHECKING:
    from hibana.host.board import Board
    from hibana.host.supervisor import Supervisor

_REASONS = {
    200: b"OK",
    404: b"Not Found",
    409: b"Conflict",
    422: b"Unprocessable Content",
    503: b"Service Unavailable",
}
HOST_FILE = "host.json"
#: Seconds a caller has to send its request's head (the supervisor waits for nothing else).
_HEAD_SECONDS = 1.0


def host_file(app_dir: str | os.PathLike[str]) -> Path:
    return Path(app_dir) / STATE_DIR / HOST_FILE


class AdminEndpoint:
    def __init__(self, supervisor: Supervisor, port: int) -> None:
        self.supervisor = supervisor
        self.sock = socket.create_server(("127.0.0.1", port))
        #: Kept open to be closed when the supervisor is at its limit on open files: a
        #: caller is then told so instead of the accept failing again and again.
        self._spare = os.open(os.devnull, os.O_RDONLY)
        self.sock.setblocking(False)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.file = host_file(supervisor.config.app_dir)
        #: What the file said of another host still running on this folder: it is its
        #: again once this one stops.
        self._displaced: str | None = None
        #: Said in the banner: another host serves this folder too.
        self.warning: str | None = None
        #: Callers of POST /reload held until the next reload (see ``serve_one``).
        self.waiting: list[socket.socket] = []
        with contextlib.suppress(OSError, ValueError, TypeError):
            before = self.file.read_text()
            other = int(json.loads(before)["pid"])
            if other != os.getpid() and _alive(other):
                self._displaced = before
                self.warning = (
                    f"warning: another host (pid {other}) serves {supervisor.config.app_dir} "
                    "too; `hibana status` and `hibana reload` with --app reach this one "
                    "until it stops, then that one again"
                )
        try:
            make_state_dir(self.file.parent)
            self.file.write_text(
                json.dumps({"pid": os.getpid(), "url": supervisor.url, "admin": self.url})
            )
        except OSError:
            self.file = None  # type: ignore[assignment]  # a read-only app folder: no status by --app

    def serve_one(self, busy: bool = False) -> None:
        """Answer one waiting connection; a slow or odd client is dropped, never waited on.

        ``busy``: the supervisor is in the middle of a reload (or of importing the app
        again): a ``POST /reload`` waits for the next one (``reload_waiting``), which
        starts once this one is done, since the caller's edit may have come after this
        import read the files; ``GET /status`` is answered at once."""
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                return  # the caller went before it was taken
            self._at_limit()
            return
        kept = False
        try:
            # the whole head within the time, not each piece: a caller sending a byte at a
            # time would hold the supervisor's loop (this reads on it) for as long as it liked
            until = time.monotonic() + _HEAD_SECONDS
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 8192:
                left = until - time.monotonic()
                if left <= 0:
                    return
                conn.settimeout(left)
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            method, target = head.split(b" ", 2)[:2] if head.count(b" ") >= 2 else (b"", b"")
            answer = self._answer(method, target, busy)
            if answer is None:
                self.waiting.append(conn)
                kept = True
                return
            conn.settimeout(_HEAD_SECONDS)
            _send(conn, *answer)
        except OSError:
            return
        finally:
            if not kept:
                conn.close()

    def _answer(
        self, method: bytes, target: bytes, busy: bool
    ) -> tuple[int, dict[str, Any]] | None:
        """The status and body to answer; None for a reload that waits for the next one."""
        sup = self.supervisor
        parts = urlsplit(target.decode("latin-1"))
        mine = host_identity(sup)
        if (method, parts.path) == (b"GET", "/status"):
            if sup.zygote is None:  # `hibana dev` before its app first loads
                return 503, {"error": _not_loaded(sup), **mine}
            return 200, sup.status()
        if (method, parts.path) == (b"POST", "/reload"):
            # a path's bytes that are not UTF-8 come back as the surrogates fsdecode gives
            asked = parse_qs(parts.query, errors="surrogateescape")
            if any(asked.get(k, [str(v)]) != [str(v)] for k, v in mine.items()):
                error = f"this is the host (pid {mine['pid']}) of {mine['app']}, not of that app"
                return 409, {"reloaded": False, "error": error, **mine}
            if (busy or sup.zygote is None) and not sup.shutting_down:
                # no version serves yet (`hibana dev` waiting for a fix): answered once
                # the import it makes try again now is done
                return None
            # answered once the new version serves, or could not: the caller learns which
            return self._reloaded(sup.reload())
        return 404, {"error": "the admin endpoint serves GET /status and POST /reload", **mine}

    def _reloaded(self, failed: str | None) -> tuple[int, dict[str, Any]]:
        """The answer to a POST /reload, from what ``Supervisor.reload`` returned."""
        sup = self.supervisor
        if failed is None:
            return 200, {"reloaded": True, **sup.status()}
        code = 503 if sup.shutting_down else 422
        kept = not sup.previous_lost  # the version that served had died: none was kept
        return code, {"reloaded": False, "kept": kept, "error": failed, **host_identity(sup)}

    def answer_waiting(self, failed: str | None) -> None:
        """Tell the callers of POST /reload held while no version served how the app's
        first load went: ``failed`` says why it did not."""
        waiting, self.waiting = self.waiting, []
        if failed is None:
            answer = self._reloaded(None)
        else:
            error = _not_loaded(self.supervisor)
            answer = (
                422,
                {
                    "reloaded": False,
                    "serving": False,
                    "error": error,
                    **host_identity(self.supervisor),
                },
            )
        for conn in waiting:
            with conn, contextlib.suppress(OSError):  # a caller gone meanwhile
                _send(conn, *answer)

    def reload_waiting(self) -> None:
        """Reload once for every POST /reload that came during the last reload, and answer
        each of them with how it went (the ones that come during this one wait for the next)."""
        waiting, self.waiting = self.waiting, []
        answer = self._reloaded(self.supervisor.reload())
        for conn in waiting:
            with conn, contextlib.suppress(OSError):  # a caller gone meanwhile
                _send(conn, *answer)

    def _at_limit(self) -> None:
        """No descriptor is left for the caller (the supervisor holds a duplicate of every
        connection of every worker): the one kept spare makes room to tell it so, and the
        host serves on."""
        if self._spare < 0:  # taken by another when it was freed last time: take it back
            try:
                self._spare = os.open(os.devnull, os.O_RDONLY)
            except OSError:
                # nothing to make room with, and the caller waits on the socket, which wakes
                # the loop again at once: a pause, so that is no busy loop
                time.sleep(0.01)
                return
        os.close(self._spare)
        try:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(1.0)
                error = (
                    "the host is at its limit on open files (its supervisor holds a duplicate "
                    "of every connection); raise it (ulimit -n, LimitNOFILE=) or try again "
                    "when fewer clients are connected"
                )
                _send(conn, 503, {"error": error, **host_identity(self.supervisor)})
        except OSError:
            pass
        finally:
            try:
                self._spare = os.open(os.devnull, os.O_RDONLY)
            except OSError:
                self._spare = -1

    def close(self) -> None:
        stopping = {"reloaded": False, "error": "the host is shutting down"}
        for conn in self.waiting:
            with conn, contextlib.suppress(OSError):
                _send(conn, 503, {**stopping, **host_identity(self.supervisor)})
        self.waiting = []
        if self._spare >= 0:
            os.close(self._spare)
        self.sock.close()
        if self.file is not None:
            with contextlib.suppress(OSError, ValueError):
                # another host may have started on this folder since: leave its address
                if json.loads(self.file.read_text()).get("pid") == os.getpid():
                    displaced = self._displaced
                    if displaced is not None and _alive(int(json.loads(displaced)["pid"])):
                        self.file.write_text(displaced)
                    else:
                        self.file.unlink()


def _send(conn: socket.socket, status: int, answer: dict[str, Any]) -> None:
    body = json.dumps(answer).encode()
    conn.sendall(
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body)
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's: alive
    return True


def _not_loaded(sup: Supervisor) -> str:
    """Why no version of the app serves yet."""
    if sup.load_error is None:
        return "the app is loading for the first time; try again once it serves"
    return (
        "the app does not load; hibana dev waits for a change that fixes it (each change "
        f"to a .py file, or `hibana reload`, tries again): {sup.load_error}"
    )


def host_identity(sup: Supervisor) -> dict[str, Any]:
    """Whose answers these are: this process and the real path of the app folder it serves."""
    return {"pid": os.getpid(), "app": os.path.realpath(sup.config.app_dir)}


def _total(rows: list[tuple[Board, int, int]], field: str) -> float:
    """``field`` summed over a function's rows: (board, worker slot, function index)."""
    return sum(board.function_get(slot, i, field) for board, slot, i in rows)


def _idle(board: Board, slot: int, started: float, now: float) -> float:
    """Seconds since worker ``slot`` last had work: 0 while it has an invocation in flight
    (the board marks an invocation's end, not its start)."""
    if board.get(slot, "inflight") > 0:
        return 0.0
    return round(now - max(board.get(slot, "last_active"), started), 3)


def host_status(sup: Supervisor) -> dict[str, Any]:
    """What ``hibana status`` shows: per worker and per function, read off the board."""
    zygote = sup.zygote
    now = time.monotonic()
    workers: list[dict[str, Any]] = []
    functions: list[dict[str, Any]] = []
    # the workers of earlier generations still finishing their work after a reload first
    for old in [*sup.retired, zygote]:
        if old is None or old.board is None:
            continue
        mine = [r for r in sup.records if r.zygote is old and r.pid is not None]
        for r in sorted(mine, key=lambda r: r.slot):
            ready = old.board.get(r.slot, "ready_at")
            workers.append(
                {
                    "slot": r.slot,
                    "pid": r.pid,
                    "generation": old.generation,
                    "state": "retiring" if r.retiring else ("ready" if ready else "starting"),
                    "inflight": int(old.board.get(r.slot, "inflight")),
                    "invocations": int(old.board.get(r.slot, "invocations")),
                    "cold_start_ms": round(old.board.get(r.slot, "cold_start_ms"), 3),
                    "idle_s": _idle(old.board, r.slot, r.started, now),
                    "rss_mb": round(old.board.get(r.slot, "rss_mb"), 1),
                }
            )
    if zygote is not None and zygote.board is not None:
        live = [r for r in sup.records if r.zygote is zygote and r.pid is not None]
        # every live worker's row of each function by name: after a reload the old
        # version's workers still finishing their work count too (what they run holds
        # the function's permits; what they ran is folded into ``past`` once they exit)
        rows: dict[str, list[tuple[Board, int, int]]] = {}
        for version in [*sup.retired, zygote]:
            if version.board is None:
                continue
            index = {fn["name"]: i for i, fn in enumerate(version.functions)}
            for r in sup.records:
                if r.zygote is version and r.pid is not None:
                    for name, i in index.items():
                        rows.setdefault(name, []).append((version.board, r.slot, i))
        for fn in zygote.functions:
            past = sup.past.get(fn["name"], {})
            of_fn = rows.get(fn["name"], [])
            # the newest worker whose first invocation was this function's
            cold = [
                (board.get(s, "ready_at"), board.function_get(s, i, "last_cold_start_ms"))
                for board, s, i in of_fn
                if board.function_get(s, i, "cold_starts")
            ]
            column = sup.permit_column(fn["name"])
            waits = [] if column is None else sup.permit_waits(column)
            if past.get("cold_at"):
                cold.append((past["cold_at"], past["last_cold_start_ms"]))
            functions.append(
                {
                    "name": fn["name"],
                    "trigger": fn["trigger"],
                    "workers": len(live),
                    "inflight": int(_total(of_fn, "inflight")),
                    "max_concurrency": fn.get("max_concurrency"),
                    "invocations": int(past.get("invocations", 0) + _total(of_fn, "invocations")),
                    "cold_starts": int(past.get("cold_starts", 0) + _total(of_fn, "cold_starts")),
                    "errors": int(past.get("errors", 0) + _total(of_fn, "errors")),
                    "last_cold_start_ms": round(max(cold)[1], 3) if cold else None,
                    # the oldest invocation waiting for a max_concurrency permit
                    "oldest_wait_s": round(now - min(waits), 3) if waits else None,
                }
            )
    duties = sup.duties
    queues = [dataclasses.asdict(q) for q in duties.stats] if duties is not None else []
    stats_age = round(now - duties.stats_at, 3) if duties is not None and duties.stats_at else None
    return {
        "queues": queues,
        "queues_age_s": stats_age,
        **host_identity(sup),
        "url": sup.url,
        "uptime_s": round(time.time() - sup.started_at, 3),
        "generation": zygote.generation if zygote is not None else 0,
        "loaded_s": round(time.time() - zygote.loaded_at, 3) if zygote is not None else None,
        # a new version of the app imports, or its workers start: the one above serves
        "reloading_s": round(now - since, 3) if (since := sup.reloading_since) else None,
        # `hibana reload`s asked for meanwhile: one more reload, after it, for all of them
        "reloads_waiting": len(sup.admin.waiting) if sup.admin is not None else 0,
        "scaling": dataclasses.asdict(zygote.scaling) if zygote and zygote.scaling else None,
        "workers": workers,
        "functions": functions,
    }
