"""PostgreSQL for tests: ``$HIBANA_TEST_POSTGRES_DSN`` when set (CI sets it), else a
throwaway cluster started with ``initdb``/``pg_ctl`` when they are on the machine.

Each test gets a schema of its own (``?schema=``), so tests in parallel never meet."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator

DSN_ENV = "HIBANA_TEST_POSTGRES_DSN"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@contextlib.contextmanager
def postgres_server() -> Iterator[str | None]:
    """A DSN to a database tests may use, or None (with no way to get one)."""
    dsn = os.environ.get(DSN_ENV)
    if dsn:
        yield dsn
        return
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        yield None
        return
    data = tempfile.mkdtemp(prefix="hibana-pg-")
    as_user: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root: run the throwaway cluster as the postgres user
        import pwd

        runuser = shutil.which("runuser")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            runuser = None
        if runuser is None:
            shutil.rmtree(data, ignore_errors=True)
            yield None
            return
        os.chown(data, owner.pw_uid, owner.pw_gid)
        as_user = [runuser, "-u", "postgres", "--"]
    port = _free_port()
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    try:
        subprocess.run(
            [*as_user, initdb, "-D", data, "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
        )
        # -l: the server's output goes to a file, not to pipes we would wait on forever
        subprocess.run(
            [*as_user, pg_ctl, "-D", data, "-o", options, "-l", f"{data}/log", "-w", "start"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        shutil.rmtree(data, ignore_errors=True)
        yield None
        return
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", data, "-m", "immediate", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        shutil.rmtree(data, ignore_errors=True)


def with_schema(dsn: str) -> tuple[str, str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}schema={schema}", schema


def drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class StallingProxy:
    """A TCP forwarder to a PostgreSQL server that can stop passing bytes on, its
    connections left open: a server that stops answering (a network partition, a hung
    machine), which no reset or error reveals."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.stalled = threading.Event()
        #: Set: a new connection is closed as it comes (a server restarting, away).
        self.refusing = threading.Event()
        #: How many connections were closed so.
        self.refused = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, store_url: str) -> str:
        """``store_url`` (host and port of the target) through this proxy."""
        parts = urllib.parse.urlsplit(store_url)
        netloc = parts.netloc.replace(
            f"{self.target[0]}:{self.target[1]}", f"127.0.0.1:{self.port}"
        )
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refusing.is_set():
                client.close()
                self.refused += 1
                continue
            server = socket.create_connection(self.target)
            self._open += (client, server)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                while self.stalled.is_set():
                    time.sleep(0.05)  # held: not passed on, not refused
                dst.sendall(data)

    def cut(self) -> None:
        """End every connection through it, as a server that goes down ends them."""
        open_now, self._open = self._open, []
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # a close alone leaves a blocked recv's open
            sock.close()

    def close(self) -> None:
        self.stalled.clear()
        self._listener.close()
        self.cut()
