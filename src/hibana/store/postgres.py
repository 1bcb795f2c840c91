"""The scale-out engine: PostgreSQL, shared by every host of a cluster.

Claims lock the rows they take with ``FOR UPDATE SKIP LOCKED``, so hosts never wait on
each other's messages; a concurrency group is one row that claims of that group lock;
the clock is the database's, so hosts with skewed clocks still agree on visibility and
leases. ``?schema=NAME`` in the URL keeps hibana's tables in a schema of their own.

A transaction that loses its connection before its COMMIT was sent did not happen (the
server rolls back what it never saw committed), so ``Store`` runs it once more on a new
connection (made again and again while the server cannot be reached, within the
operation timeout); one that loses it during the COMMIT may have happened, and fails. An
operation that waits on the server longer than the operation timeout (``?operation_timeout``,
see ``postgres_url``) has its connection cut by the engine's watchdog thread, and fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from hibana.errors import StoreError
from hibana.store.base import ChangeWatcher, Settle, dump_errors
from hibana.store.postgres_url import NAME_BYTES, redacted, split_url
from hibana.store.sql import (
    CLAIMED_COLUMNS,
    FENCE,
    SCHEMA_VERSION,
    SqlEngine,
    schema_version,
)

_MIGRATIONS: dict[int, list[str]] = {
    1: [
        "CREATE TABLE hibana_messages ("
        " id BIGINT PRIMARY KEY, queue TEXT NOT NULL, body BYTEA NOT NULL, trace TEXT,"
        " enqueued_at DOUBLE PRECISION NOT NULL, visible_at DOUBLE PRECISION NOT NULL,"
        " attempt INTEGER NOT NULL DEFAULT 0, leased SMALLINT NOT NULL DEFAULT 0,"
        " owner TEXT, grp TEXT, errors TEXT)",
        "CREATE INDEX hibana_messages_ready ON hibana_messages (queue, visible_at)",
        "CREATE INDEX hibana_messages_grp ON hibana_messages (grp) WHERE grp IS NOT NULL",
        "CREATE SEQUENCE hibana_message_ids",
        "CREATE TABLE hibana_dead ("
        " id BIGINT PRIMARY KEY, queue TEXT NOT NULL, body BYTEA NOT NULL, trace TEXT,"
        " enqueued_at DOUBLE PRECISION NOT NULL, attempts INTEGER NOT NULL, errors TEXT,"
        " died_at DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX hibana_dead_queue ON hibana_dead (queue, died_at)",
        "CREATE TABLE hibana_keys ("
        " queue TEXT NOT NULL, key TEXT NOT NULL, message_id BIGINT NOT NULL,"
        " expires_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (queue, key))",
        "CREATE TABLE hibana_queues ("
        " name TEXT PRIMARY KEY, function TEXT NOT NULL, max_attempts INTEGER NOT NULL,"
        " declared_at DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE hibana_timer_fires ("
        " function TEXT NOT NULL, slot DOUBLE PRECISION NOT NULL,"
        " fired_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (function, slot))",
        "CREATE TABLE hibana_groups (name TEXT PRIMARY KEY)",
    ],
    2: [
        "CREATE TABLE hibana_subscriptions ("
        " function TEXT PRIMARY KEY, topic TEXT NOT NULL, queue TEXT NOT NULL,"
        " filter TEXT, declared_at DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE hibana_secrets ("
        " name TEXT PRIMARY KEY, value BYTEA NOT NULL, updated_at DOUBLE PRECISION NOT NULL)",
    ],
}


def _claim(fence: str) -> str:
    return (
        "UPDATE hibana_messages AS m SET visible_at = %s, attempt = m.attempt + 1, leased = 1,"
        " owner = %s, grp = %s FROM (SELECT id FROM hibana_messages"
        f" WHERE queue = %s AND visible_at <= %s{fence} ORDER BY visible_at LIMIT %s"
        " FOR UPDATE SKIP LOCKED) AS c WHERE m.id = c.id"
        f" RETURNING {', '.join('m.' + c.strip() for c in CLAIMED_COLUMNS.split(','))}"
    )


_CLAIM = _claim("")
_FENCED_CLAIM = _claim(FENCE)
#: Held while migrating, so hosts starting together do not migrate twice.
_MIGRATION_LOCK = 0x68_69_62_61

#: Seconds between a reconnect's attempts while the server cannot be reached: the first
#: pause, doubled after each failure up to the last.
RECONNECT_FIRST = 0.05
RECONNECT_MAX = 1.0

#: libpq's connection parameters for noticing a dead server: a connection attempt gives up
#: after 10 s; an idle one is probed after 30 s; one whose data goes unacknowledged for
#: 60 s fails (and is made again), rather than waiting for TCP's 15 minutes.
_LIVENESS: dict[str, int] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}


#: The server's side of the same, set on each of our connections: a backend whose client
#: went silent (a host that lost power, a partition) keeps its connection slot, and the row
#: locks of a transaction it was in, which other hosts' claims step over (SKIP LOCKED: its
#: messages wait), until the server's TCP gives up on it, 2 hours by default. Its client is
#: probed as ours probe the server, and a transaction left idle for the operation timeout is
#: ended (see ``server_liveness``).
_SERVER_LIVENESS: dict[str, str] = {
    "tcp_keepalives_idle": "30",
    "tcp_keepalives_interval": "10",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "60000",  # PostgreSQL 12 and later
}


class PostgresEngine(SqlEngine):
    migrations = _MIGRATIONS

    def __init__(self, url: str, create: bool = True) -> None:
        self.create = create
        self.url, self.schema, self.timeout, self.lease_grace = split_url(url)
        self.display = redacted(url)
        self.conn: Any = None
        self._sql: dict[str, str] = {}
        given = {k for k, _ in parse_qsl(urlsplit(url).query)}
        #: What finds a connection to a server that has gone away (a network partition:
        #: no reset, nothing sent back), unless the URL says otherwise.
        self._liveness: dict[str, Any] = {k: v for k, v in _LIVENESS.items() if k not in given}
        # what the URL's options (``options=-c name=value``) set is the user's choice
        options = " ".join(v for k, v in parse_qsl(urlsplit(url).query) if k == "options")
        chosen = set(re.findall(r"(?:-c\s*|--)([A-Za-z_.]+)\s*=", options))
        settings = {
            **_SERVER_LIVENESS,
            # none of our transactions waits on us between statements; one that waits for
            # as long as we would wait on the server has lost its client
            "idle_in_transaction_session_timeout": str(max(1, round(self.timeout * 1000))),
        }
        self._server_liveness = {k: v for k, v in settings.items() if k not in chosen}
        #: When (monotonic) the operation now waiting on the server began; the watchdog
        #: cuts its connection once it has waited ``timeout``.
        self._busy_since: float | None = None
        #: (when the operation began, how long it had waited): the watchdog cut it.
        self._cut: tuple[float, float] | None = None
        #: The operation has sent its COMMIT: if the connection goes now, it may have happened.
        self._committing = False
        #: The last error that was the connection's (not a statement's), and whether the
        #: transaction it ended surely did not happen (see ``lost_connection``).
        self._broken_by: BaseException | None = None
        self._retry = False
        #: ... and whether it went during the COMMIT (see ``in_doubt``).
        self._in_doubt = False
        #: Held to swap ``conn`` and to cut it: the watchdog never touches a closed one.
        self._conn_lock = threading.Lock()
        self._watchdog: threading.Thread | None = None
        self._stop = threading.Event()
        #: A connection was made before: the next one replaces one that was lost.
        self._connected = False

    def connect(self) -> None:
        try:
            import psycopg
        except ImportError:  # pragma: no cover - psycopg is a dependency
            raise StoreError(
                "the PostgreSQL store needs psycopg: pip install 'psycopg[binary]'"
            ) from None
        try:
            with self.noticed(self._server_wait):
                conn = psycopg.connect(self.url, autocommit=True, **self._liveness)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to the store {self.display}: {_first_line(exc)}; is PostgreSQL "
                "running there, and does the database exist?"
            ) from None
        with self._conn_lock:
            self.conn = conn
        self._watch()
        with self._watched():
            self.server_liveness(conn)
            self._fence(conn)
            if not self.create:
                # a read (hibana queue stats) of a store no host has made: a mistyped URL,
                # most likely, which must not leave a schema and its tables behind
                table = f'"{self.schema}".hibana_schema' if self.schema else "hibana_schema"
                row = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
                if row is None or row[0] is None:
                    self.close()
                    where = f"schema {self.schema!r}" if self.schema else "its public schema"
                    raise StoreError(
                        f"no store at {self.display}: no host has used it yet ({where} has "
                        "no hibana tables); check the URL, or start a host with it"
                    )
            try:
                # a store of this version takes no DDL: a role that may only read and write
                # its tables (no CREATE on the database) opens it
                if self.schema is not None:
                    found = conn.execute(
                        "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
                    ).fetchone()
                    if found is None:
                        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                    conn.execute(f'SET search_path TO "{self.schema}"')
                try:
                    version = _version(conn, self.display)
                except StoreError:
                    self.close()
                    raise
                if version != SCHEMA_VERSION:
                    self._migrate()
            except psycopg.errors.InsufficientPrivilege as exc:
                role, database = conn.info.user, conn.info.dbname
                self.close()
                grant = (
                    f'GRANT CREATE ON DATABASE "{database}" TO "{role}"'
                    if self.schema is not None
                    else f'GRANT CREATE ON SCHEMA public TO "{role}"'
                )
                raise StoreError(
                    f"the store {self.display} cannot be made: the role {role!r} may not "
                    f"create hibana's tables ({_first_line(exc)}); as an owner of the "
                    f"database, run {grant}, or start a host once with a role that may"
                ) from None

    def _fence(self, conn: Any) -> None:
        """Fence claims (``fenced_until``) for ``lease_grace`` (``postgres_url.LEASE_GRACE``
        or the URL's ``?lease_grace=``) after the server started, or, when ``conn``
        replaces a connection that was lost, after now: the server was away (restarted,
        failed over, cut off), for other hosts too, maybe. Fenced, claims take no message
        whose lease ran out: the lease may be that of a worker (on any host) cut off too,
        which holds the message's settlement until it reconnects (``Store._hold``), within
        about a second of the server's return (``RECONNECT_MAX``, ``HELD_RETRY``); claimed
        first, the message would run a second time. A lease of a worker that died waits
        this much longer. One query as the connection is made; none per claim."""
        now, started = conn.execute(
            "SELECT extract(epoch from clock_timestamp()),"
            " extract(epoch from pg_postmaster_start_time())"
        ).fetchone()
        back = float(now) if self._connected else float(started)
        self._connected = True
        self.fenced_until = max(back, float(started)) + self.lease_grace

    def _server_wait(self) -> str:
        """What ``on_wait`` is told of a connection the server has not answered yet."""
        limit = dict(parse_qsl(urlsplit(self.url).query)).get(
            "connect_timeout", self._liveness.get("connect_timeout")
        )
        return (
            f"the store {self.display} has not answered yet (a server starting, or one behind "
            f"a network that drops what is sent to it): waiting up to {limit} s for it"
        )

    def server_liveness(self, conn: Any) -> None:
        """Set the server's side of noticing a silent client on ``conn`` (``_SERVER_LIVENESS``)."""
        settings = {
            k: v
            for k, v in self._server_liveness.items()
            if k != "tcp_user_timeout" or conn.info.server_version >= 120000
        }
        if settings:
            calls = ", ".join("set_config(%s, %s, false)" for _ in settings)
            conn.execute(f"SELECT {calls}", [x for kv in settings.items() for x in kv])

    def _migration_lock(self) -> None:
        self._exec("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))

    def close(self) -> None:
        self._stop.set()
        self._watchdog = None
        self._drop()

    def _drop(self) -> None:
        """Forget the connection (the next transaction makes a new one)."""
        with self._conn_lock:
            conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def lost_connection(self, exc: BaseException) -> bool:
        # Only a transaction whose COMMIT was not sent: the server rolls back what it never
        # saw committed. One cut for not answering is not run again (it would wait again).
        return exc is self._broken_by and self._retry

    def connection_failed(self, exc: BaseException) -> bool:
        return exc is self._broken_by

    def in_doubt(self, exc: BaseException) -> bool:
        return exc is self._broken_by and self._in_doubt

    @contextlib.contextmanager
    def transaction(self, write: bool) -> Iterator[float]:
        import psycopg

        began = self._busy_since
        outer = began is None  # else one that ``connect`` runs as it reconnects: watched
        if began is None:
            began = self._busy(time.monotonic())
            self._broken_by, self._committing = None, False
        try:
            conn = self.conn
            if conn is None or conn.closed or conn.broken:
                conn = self._reconnect(began)  # the server restarted or the connection dropped
                self._committing = False  # (the migration's COMMIT went well)
            try:
                with conn.transaction():
                    self.began = time.monotonic()
                    now = conn.execute("SELECT extract(epoch from clock_timestamp())").fetchone()
                    yield float(now[0])
                    self._committing = True  # psycopg sends the COMMIT as this block ends
            except psycopg.Error as exc:
                if not (conn.closed or conn.broken):
                    if isinstance(exc, psycopg.errors.DiskFull):
                        raise self._full(exc) from exc
                    raise  # a statement's own error (statement_timeout): the connection serves
                self._drop()
                if not outer:
                    raise  # ``_reconnect`` names it
                error = self._lost(exc, began, retry=True)
                if error is exc:
                    raise
                raise error from exc
        finally:
            if outer:
                self._busy(None)

    def _full(self, exc: Exception) -> StoreError:
        """The error of a write the server refused for a full disk (SQLSTATE 53100)."""
        said = _first_line(exc)
        return StoreError(
            f"the store {self.display} cannot write: the PostgreSQL server's disk is full "
            f"(it says: {said}); free space on the server's disk that holds its data folder "
            "(or the tablespace of hibana's tables), or give it more. Nothing was written; "
            "what was stored before is kept"
        )

    def _busy(self, since: float | None) -> float:
        """Note when the operation under way began (None: it ended), under the lock the
        watchdog cuts with: it never cuts the next operation for the last one's wait."""
        with self._conn_lock:
            self._busy_since = since
        return since or 0.0

    def _reconnect(self, began: float) -> Any:
        """A new connection for the operation begun at ``began``. A server that cannot be
        reached (it is restarting, failing over) is tried again, ever less often, until
        the operation timeout has passed since the operation began: an enqueue waits out a
        restart rather than failing at once."""
        pause = RECONNECT_FIRST
        while True:
            self._drop()
            try:
                self.connect()
            except Exception as exc:
                self._drop()
                if time.monotonic() + pause < began + self.timeout and not self._stop.is_set():
                    time.sleep(pause)
                    pause = min(pause * 2, RECONNECT_MAX)
                    continue
                error = self._lost(exc, began, retry=False)
                if error is exc:
                    raise
                raise error from exc
            return self.conn

    def _lost(self, exc: Exception, began: float, retry: bool) -> Exception:
        """What to raise for ``exc``, which ended the connection of the transaction begun
        at ``began``; remembered for ``lost_connection`` (``retry``: it may be run again,
        if it had not sent its COMMIT)."""
        error = exc
        committing = " during its COMMIT" if self._committing else ""
        if self._cut is not None and self._cut[0] == began:
            error = StoreError(
                f"the store {self.display} did not answer for {self._cut[1]:.1f}s{committing} "
                f"(operation_timeout={self.timeout:g}s): its connection was cut, and the "
                "next operation makes a new one"
                + (_IN_DOUBT if committing else "")
                + "; a server that is only slow takes a longer ?operation_timeout=SECONDS "
                "in the store URL"
            )
        elif committing and not isinstance(exc, StoreError):
            error = StoreError(
                f"the store {self.display} lost its connection during a COMMIT "
                f"({_first_line(exc)})" + _IN_DOUBT
            )
        self._broken_by, self._retry = error, retry and error is exc
        self._in_doubt = self._committing
        return error

    # the watchdog
    def _watch(self) -> None:
        if self._watchdog is not None and self._watchdog.is_alive():
            return
        self._stop = threading.Event()
        self._watchdog = threading.Thread(
            target=self._watch_loop, args=(self._stop,), name="hibana-store-watchdog", daemon=True
        )
        self._watchdog.start()

    def _watch_loop(self, stop: threading.Event) -> None:
        """Cut the connection of an operation that waits past ``timeout``: one thread per
        engine, waking every quarter of it while idle (nothing per query)."""
        idle = self.timeout / 4
        while not stop.is_set():
            began = self._busy_since
            wait = idle
            if began is not None and (self._cut is None or self._cut[0] != began):
                wait = began + self.timeout - time.monotonic()
                if wait <= 0:
                    if self._cut_off(began):
                        continue
                    wait = idle
            stop.wait(wait)

    def _cut_off(self, began: float) -> bool:
        """Cut the connection of the operation begun at ``began``; False if it has ended,
        or has no connection to cut yet (it is making one, bounded by connect_timeout)."""
        # shutdown, not close: a close from this thread leaves the writer's recv blocked
        with self._conn_lock:
            if self.conn is None or self._busy_since != began:
                return False
            self._cut = (began, time.monotonic() - began)
            with contextlib.suppress(Exception):
                fd = self.conn.pgconn.socket
                with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
            return True

    @contextlib.contextmanager
    def _watched(self) -> Iterator[None]:
        if self._busy_since is not None:
            yield  # a reconnect, within a watched transaction
            return
        self._busy(time.monotonic())
        try:
            yield
        finally:
            self._busy(None)

    def _q(self, sql: str) -> str:
        converted = self._sql.get(sql)
        if converted is None:
            converted = self._sql[sql] = sql.replace("?", "%s")
        return converted

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(self._q(sql), params)

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(self._q(sql), rows)

    def _reserve_ids(self, n: int) -> list[int]:
        rows = self.conn.execute(
            "SELECT nextval('hibana_message_ids') FROM generate_series(1, %s)", (n,)
        ).fetchall()
        return sorted(int(r[0]) for r in rows)

    def _claim_sql(self, fenced: bool) -> str:
        return _FENCED_CLAIM if fenced else _CLAIM

    def _bury(self, now: float, dead: Sequence[Settle]) -> None:
        # one statement: the row is locked as it is deleted (a claim skips it) and what
        # is deleted is what becomes the dead letter
        self._many(
            "WITH gone AS (DELETE FROM hibana_messages WHERE id = ? AND attempt = ? "
            "RETURNING id, queue, body, trace, enqueued_at, attempt) "
            "INSERT INTO hibana_dead "
            "(id, queue, body, trace, enqueued_at, attempts, errors, died_at) "
            "SELECT id, queue, body, trace, enqueued_at, attempt - ?, ?, ? FROM gone",
            [(s.id, s.attempt, int(s.unrun), dump_errors(s.errors), now) for s in dead],
        )

    def _revive(self, now: float, where: str, params: Sequence[Any]) -> int:
        # one statement: what is deleted is what is moved, seen at one moment
        cur = self._exec(
            f"WITH moved AS (DELETE FROM hibana_dead WHERE {where} "
            "RETURNING id, queue, body, trace, enqueued_at) "
            "INSERT INTO hibana_messages "
            "(id, queue, body, trace, enqueued_at, visible_at, attempt, leased) "
            "SELECT id, queue, body, trace, enqueued_at, ?, 0, 0 FROM moved",
            [*params, now],
        )
        return int(cur.rowcount)

    @property
    def channel(self) -> str:
        """The NOTIFY channel of this store (one per schema: stores never hear each other).
        A name is 63 bytes at most (``pg_notify`` fails on a longer one, and with it every
        enqueue): for a schema whose name is too long for ``hibana_`` before it, a digest
        of it stands in."""
        name = f"hibana_{self.schema or 'public'}"
        if len(name.encode()) <= NAME_BYTES:
            return name
        return "hibana_" + hashlib.sha256(name.encode()).hexdigest()[:32]

    def _enqueued(self, queues: set[str]) -> None:
        self._exec("SELECT pg_notify(?, '')", (self.channel,))

    def watcher(self) -> ChangeWatcher | None:
        return NotifyWatcher.open(self)

    def _lock_group(self, name: str) -> None:
        self._exec("INSERT INTO hibana_groups (name) VALUES (?) ON CONFLICT DO NOTHING", (name,))
        self._exec("SELECT name FROM hibana_groups WHERE name = ? FOR UPDATE", (name,))


_IN_DOUBT = (
    ": what it wrote may or may not have been stored (the server may have committed it "
    "before the connection went), so it is not run again"
)


def _version(conn: Any, display: str) -> int | None:
    """The schema version of the hibana store in ``conn``'s schema (see
    ``schema_version``); None if it holds none yet."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # one snapshot
        (table,) = conn.execute("SELECT to_regclass('hibana_schema')::oid").fetchone()
        if table is None:
            return None
        columns = [
            str(row[0])
            for row in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0"
                " AND NOT attisdropped ORDER BY attnum",
                (table,),
            )
        ]
        rows = (
            conn.execute("SELECT version FROM hibana_schema LIMIT 2").fetchall()
            if "version" in columns
            else []
        )
        tables = {
            str(row[0])
            for row in conn.execute(
                "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') AND relnamespace ="
                " (SELECT relnamespace FROM pg_class WHERE oid = %s)",
                (table,),
            )
        }
    return schema_version(display, _MIGRATIONS, columns, rows, tables)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class NotifyWatcher(ChangeWatcher):
    """LISTEN on the store's channel, on a connection of its own: an enqueue on any host
    sends a NOTIFY at commit."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._fd = int(conn.fileno())  # kept: a closed connection no longer says

    @classmethod
    def open(cls, engine: PostgresEngine) -> NotifyWatcher | None:
        import psycopg

        try:
            conn = psycopg.connect(engine.url, autocommit=True, **engine._liveness)
            engine.server_liveness(conn)
            conn.execute(f'LISTEN "{engine.channel}"')
        except psycopg.Error:
            return None
        return cls(conn)

    def fileno(self) -> int:
        return self._fd

    def drain(self) -> bool:
        import psycopg

        try:
            for _ in self.conn.notifies(timeout=0):
                pass
        except psycopg.Error:
            return False
        return not (self.conn.closed or self.conn.broken)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
