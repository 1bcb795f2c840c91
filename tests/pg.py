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
    cluster = Cluster.made()
    if cluster is None:
        yield None
        return
    try:
        yield cluster.dsn
    finally:
        cluster.remove()


class Cluster:
    """A throwaway PostgreSQL cluster (``initdb``, ``pg_ctl``) in a folder of its own, on a
    port of its own: a test may stop and start it (a server going away and coming back)
    without touching the machine's shared server."""

    def __init__(self, data: str, as_user: list[str], pg_ctl: str, port: int) -> None:
        self.data = data
        self.port = port
        self.dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._as_user = as_user
        self._pg_ctl = pg_ctl
        #: The folders of ``small_disk``.
        self._small: list[str] = []

    @classmethod
    def made(cls) -> Cluster | None:
        """A new cluster, started; None where initdb and pg_ctl cannot be had (or run)."""
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            return None
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
                return None
            os.chown(data, owner.pw_uid, owner.pw_gid)
            as_user = [runuser, "-u", "postgres", "--"]
        cluster = cls(data, as_user, pg_ctl, _free_port())
        try:
            subprocess.run(
                [*as_user, initdb, "-D", data, "-A", "trust", "-U", "postgres"],
                check=True,
                capture_output=True,
            )
            cluster.start()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            shutil.rmtree(data, ignore_errors=True)
            return None
        return cluster

    def start(self, namespace: str = "") -> None:
        """Start the server (again), on the same port; return once it takes connections.
        ``namespace``: shell commands run first, in a mount namespace of the server's own
        (``small_disk``)."""
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        # -l: the server's output goes to a file, not to pipes we would wait on forever
        server = [*self._as_user, self._pg_ctl, "-D", self.data, "-o", options]
        server += ["-l", f"{self.data}/log", "-w", "start"]
        command = server
        if namespace:
            # the server, forked by pg_ctl, stays in the namespace (and keeps its mounts)
            script = f'{namespace} && exec "$@"'
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
            command += ["sh", *server]
        subprocess.run(
            command,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )

    def small_disk(self, kib: int) -> str:
        """A folder on a disk of ``kib`` KiB that only the server sees (a tmpfs in a mount
        namespace of its own, whose disk fills without touching the machine's): the server
        is started again in that namespace. Needs root, as mount does."""
        folder = tempfile.mkdtemp(prefix="hibana-pg-small-")
        self._small.append(folder)
        owner = "postgres:postgres" if self._as_user else str(os.geteuid())
        self.stop()
        self.start(f"mount -t tmpfs -o size={kib}k tmpfs {folder} && chown {owner} {folder}")
        return folder

    def stop(self) -> None:
        """Stop the server at once, as a crash does (its connections are cut; nothing is
        answered until ``start``)."""
        subprocess.run(
            [*self._as_user, self._pg_ctl, "-D", self.data, "-m", "immediate", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )

    def remove(self) -> None:
        """Stop the server, and delete its folder."""
        self.stop()
        for folder in [self.data, *self._small]:
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def own_cluster() -> Iterator[Cluster]:
    """A ``Cluster`` for one test, removed afterwards."""
    made = Cluster.made()
    assert made is not None, "this test needs initdb and pg_ctl (apt-get install postgresql)"
    try:
        yield made
    finally:
        made.remove()


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
