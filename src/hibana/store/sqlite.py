"""The embedded engine: one SQLite file in the app's ``.hibana/`` folder.

WAL mode with ``synchronous=FULL``: a commit is on disk (and survives a power cut) before
the store answers; the group commit in ``Store`` keeps that to one fsync per batch.
Several processes (the workers, the supervisor, the CLI) open the same file; SQLite's
write lock serialises their transactions and ``busy_timeout`` makes them wait their turn.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hibana.errors import StoreError
from hibana.store.base import ChangeWatcher
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
        " id INTEGER PRIMARY KEY, queue TEXT NOT NULL, body BLOB NOT NULL, trace TEXT,"
        " enqueued_at REAL NOT NULL, visible_at REAL NOT NULL,"
        " attempt INTEGER NOT NULL DEFAULT 0, leased INTEGER NOT NULL DEFAULT 0,"
        " owner TEXT, grp TEXT, errors TEXT)",
        "CREATE INDEX hibana_messages_ready ON hibana_messages (queue, visible_at)",
        "CREATE INDEX hibana_messages_grp ON hibana_messages (grp) WHERE grp IS NOT NULL",
        "CREATE TABLE hibana_ids (next INTEGER NOT NULL)",
        "INSERT INTO hibana_ids (next) VALUES (1)",
        "CREATE TABLE hibana_dead ("
        " id INTEGER PRIMARY KEY, queue TEXT NOT NULL, body BLOB NOT NULL, trace TEXT,"
        " enqueued_at REAL NOT NULL, attempts INTEGER NOT NULL, errors TEXT,"
        " died_at REAL NOT NULL)",
        "CREATE INDEX hibana_dead_queue ON hibana_dead (queue, died_at)",
        "CREATE TABLE hibana_keys ("
        " queue TEXT NOT NULL, key TEXT NOT NULL, message_id INTEGER NOT NULL,"
        " expires_at REAL NOT NULL, PRIMARY KEY (queue, key))",
        "CREATE TABLE hibana_queues ("
        " name TEXT PRIMARY KEY, function TEXT NOT NULL, max_attempts INTEGER NOT NULL,"
        " declared_at REAL NOT NULL)",
        "CREATE TABLE hibana_timer_fires ("
        " function TEXT NOT NULL, slot REAL NOT NULL, fired_at REAL NOT NULL,"
        " PRIMARY KEY (function, slot))",
    ],
    2: [
        "CREATE TABLE hibana_subscriptions ("
        " function TEXT PRIMARY KEY, topic TEXT NOT NULL, queue TEXT NOT NULL,"
        " filter TEXT, declared_at REAL NOT NULL)",
        "CREATE TABLE hibana_secrets ("
        " name TEXT PRIMARY KEY, value BLOB NOT NULL, updated_at REAL NOT NULL)",
    ],
}


def _claim(fence: str) -> str:
    return (
        "UPDATE hibana_messages SET visible_at = ?, attempt = attempt + 1, leased = 1,"
        " owner = ?, grp = ? WHERE id IN (SELECT id FROM hibana_messages"
        f" WHERE queue = ? AND visible_at <= ?{fence} ORDER BY visible_at LIMIT ?)"
        f" RETURNING {CLAIMED_COLUMNS}"
    )


_CLAIM = _claim("")
_FENCED_CLAIM = _claim(FENCE)


class _Locked(StoreError):
    """Another process held the store's write lock for longer than ``busy_timeout``."""


#: Seconds of a wait for the lock between two looks for Ctrl-C, when ``on_wait`` is set.
_WAIT_SLICE = 0.1
#: Seconds between the checks that the store file is still the one opened.
_FILE_CHECK = 1.0


class SqliteEngine(SqlEngine):
    migrations = _MIGRATIONS
    #: Seconds a write waits for another process's write lock before it fails.
    busy_timeout = 30.0

    def __init__(self, path: str | Path, create: bool = True) -> None:
        #: A store not there yet is made (else its absence is the error: a command that
        #: only reads must not leave a store behind, in an empty file, say).
        self.create = create
        self._file: tuple[int, int] | None = None
        #: Why the store file is no longer this store's, once a check has found it so.
        self._file_lost: str | None = None
        self._check_at = 0.0
        self.path = Path(path)
        self.display = f"sqlite:///{self.path}"
        self.conn: sqlite3.Connection | None = None

    def connect(self) -> None:
        if self.path.is_dir():
            raise StoreError(
                f"the store {self.display} is a directory, not a file: name a file, as "
                f"sqlite:///{self.path / 'state.db'}"
            )
        if not self.create:
            if not self.path.exists():
                raise StoreError(self._no_store("there is no such file"))
        else:
            self._make_folder()
        try:
            with self.noticed(self._lock_wait):
                conn, version = self._opened()
        except sqlite3.Error as exc:
            if _busy(exc):  # a program that holds the file's lock in exclusive mode
                raise self._locked() from None
            if _full(exc):
                raise self.full() from None
            raise StoreError(
                f"cannot open the store {self.display}: {exc}; is it a hibana store file, "
                "and writable?"
            ) from None
        self.conn = conn
        self._file = self._identity()
        self._file_lost = None
        self._check_at = time.monotonic() + _FILE_CHECK
        if version != SCHEMA_VERSION:  # else no write lock to wait for: a read waits on none
            self._migrate()

    def _opened(self) -> tuple[sqlite3.Connection, int | None]:
        """A connection to the store file, checked to hold a hibana store (or none yet),
        and the store's schema version (None: no store yet)."""
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout
        )
        try:
            foreign = _foreign_tables(conn)
            if foreign:
                raise StoreError(
                    f"{self.path} is a SQLite database of another program (its tables: "
                    f"{', '.join(foreign)}), not a hibana store; hibana would add its tables "
                    "to it. Pass --store sqlite:///PATH (or $HIBANA_STORE) naming a file of "
                    "its own"
                )
            version = None
            if not _has_table(conn, "hibana_schema"):
                if not self.create:  # refused before anything is written: WAL mode too
                    raise StoreError(self._no_store("the file holds no hibana tables"))
            else:
                version = _version(conn, self.display)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        except BaseException:
            conn.close()
            raise
        return conn, version

    def _begin_told(self, conn: sqlite3.Connection, begin: str) -> None:
        """``begin``, waiting for the lock in slices of ``_WAIT_SLICE``: a wait the user
        was told of must end at Ctrl-C, which Python sees only between SQLite's calls
        (one wait of ``busy_timeout`` in SQLite would hold it off for all of that)."""
        until = time.monotonic() + self.busy_timeout
        conn.execute(f"PRAGMA busy_timeout={int(_WAIT_SLICE * 1000)}")
        try:
            while True:
                try:
                    conn.execute(begin)
                    return
                except sqlite3.OperationalError as exc:
                    if not _busy(exc) or time.monotonic() >= until:
                        raise
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")

    def _lock_wait(self) -> str:
        """What ``on_wait`` is told of a wait for the store's lock."""
        holders = _lock_holders(self.path)
        who = (
            "; ".join(holders[:3])
            if holders
            else f"a program with the file open in a transaction; `fuser {self.path}` names it"
        )
        return (
            f"the store {self.display} is locked by another process ({who}): waiting up to "
            f"{self.busy_timeout:g} s for it to end its transaction"
        )

    def _make_folder(self) -> None:
        for folder in self.path.parents:
            if folder.exists():
                if not folder.is_dir():
                    raise StoreError(
                        f"the store {self.display} cannot be made: {folder} is a file, not a "
                        "folder; name a path in a folder"
                    )
                break
        try:
            if self.path.parent.name == STATE_DIR:
                make_state_dir(self.path.parent)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create {self.path.parent} for the store: {exc.strerror}"
            ) from None

    def _no_store(self, why: str) -> str:
        return (
            f"no store at {self.display}: no host has used it yet ({why}); check the path, "
            "or start a host with it"
        )

    def _identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def _check_file(self) -> None:
        """Refuse to go on with a file that is no longer the store's: deleted, or replaced
        (what this connection writes would be lost, or go where no other process looks)."""
        if self._identity() != self._file:
            self._file_lost = (
                f"the store file {self.path} was deleted or replaced while this process "
                "had it open, so what it writes now would be lost; stop the host, then "
                "put the file back (or start it afresh, without what the store held)"
            )
            raise StoreError(self._file_lost)

    def _locked(self) -> StoreError:
        return _Locked(
            f"the store {self.display} is locked: another process has held its write "
            f"lock for over {self.busy_timeout:g} s (a program with the file open in a "
            f"transaction, a `sqlite3` shell say; `fuser {self.path}` names it); end "
            "that transaction, then try again"
        )

    def full(self) -> StoreError:
        """The error of a write that found the disk full (SQLITE_FULL): which folder, how
        much it has free, and what to do."""
        folder = self.path.parent
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = None
        if free is not None and free >= _ROOMY:
            # SQLite says "database or disk is full" of a limit on the file's size too
            why = (
                f"SQLite found the database or disk full, though {folder} has "
                f"{_size(free)} free: the file reached a limit on its size (PRAGMA "
                "max_page_count, a quota, a file size limit); raise that limit"
            )
        else:
            left = "an unknown amount" if free is None else _size(free)
            why = (
                f"the disk that holds {folder} is full ({left} free); free space on it, or "
                "move the store to a disk with room (--store sqlite:///PATH, with the "
                "host stopped)"
            )
        return StoreError(
            f"the store {self.display} cannot write: {why}. Nothing was written; "
            "what was stored before is kept"
        )

    def connection_failed(self, exc: BaseException) -> bool:
        # every operation of a batch would wait out the lock again, one after another
        return isinstance(exc, _Locked)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @contextlib.contextmanager
    def transaction(self, write: bool) -> Iterator[float]:
        conn = self.conn
        assert conn is not None
        if write:
            if self._file_lost is not None:
                # for good: the writes that follow a failed check within its second (a batch
                # run again op by op) went into the lost file
                raise StoreError(self._file_lost)
            clock = time.monotonic()
            if clock >= self._check_at:  # once a second at most: a stat call
                self._check_at = clock + _FILE_CHECK
                self._check_file()
        begin = "BEGIN IMMEDIATE" if write else "BEGIN"
        try:
            if self.on_wait is None:  # a host's: nothing per transaction
                conn.execute(begin)
            else:
                with self.noticed(self._lock_wait):
                    self._begin_told(conn, begin)
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
            raise self._locked() from None
        try:
            self.began = time.monotonic()
            yield time.time()
            conn.execute("COMMIT")
        except BaseException as exc:
            # SQLite ends it itself on some errors (the disk full mid-statement): a ROLLBACK
            # then fails, and its error took the place of the one that says why
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error) and _full(exc):
                raise self.full() from exc
            raise

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Any:
        assert self.conn is not None
        return self.conn.execute(sql, params)

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        assert self.conn is not None
        self.conn.executemany(sql, rows)

    def _reserve_ids(self, n: int) -> list[int]:
        row = self._exec("UPDATE hibana_ids SET next = next + ? RETURNING next", (n,)).fetchone()
        end = int(row[0])
        return list(range(end - n, end))

    def _claim_sql(self, fenced: bool) -> str:
        return _FENCED_CLAIM if fenced else _CLAIM

    def watcher(self) -> ChangeWatcher | None:
        return WalWatcher.open(self.path) if sys.platform == "linux" else None


#: Bytes free past which a full database is not taken for a full disk: SQLite needs a
#: few pages to go on, and what a write asks for at most is a few MiB (a batch of messages).
_ROOMY = 64 * 1024 * 1024


def _size(n: int) -> str:
    """``n`` bytes, as people read it: 0 bytes, 512 KiB, 3.2 GiB."""
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.4g} {unit}"
    return f"{value / 1024:.4g} TiB"


def _full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_FULL


def _busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _lock_holders(path: Path) -> list[str]:
    """The processes (other than this one) holding a write lock of the store at ``path``:
    on the file (a rollback journal's, or exclusive mode's) or on its WAL's write-lock
    byte; each as "pid N: its command line". None found where there is no /proc/locks."""
    wanted: dict[str, int | None] = {}
    for file, byte in ((path, None), (Path(f"{path}-shm"), _WAL_WRITE_LOCK)):
        with contextlib.suppress(OSError):
            wanted[str(os.stat(file).st_ino)] = byte
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    pids: list[int] = []
    for line in lines:  # "1: POSIX  ADVISORY  WRITE 4242 fe:00:2163739 120 120"
        fields = line.split()  # (one waiting for a lock has "->" after its number: 9)
        if len(fields) != 8 or fields[1] != "POSIX" or fields[3] != "WRITE":
            continue
        inode, start, end = fields[5].rsplit(":", 1)[-1], fields[6], fields[7]
        if inode not in wanted or not fields[4].isdigit():
            continue
        byte = wanted[inode]
        if byte is not None and not (int(start) <= byte and (end == "EOF" or byte <= int(end))):
            continue
        pid = int(fields[4])
        if pid != os.getpid() and pid not in pids:
            pids.append(pid)
    shown = []
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
        except OSError:
            command = b"?"
        shown.append(f"pid {pid}: {command.decode(errors='replace')[:80]}")
    return shown


#: Where SQLite's WAL mode takes a writer's lock: byte 120 of the ``-shm`` file.
_WAL_WRITE_LOCK = 120


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return found.fetchone() is not None


def _version(conn: sqlite3.Connection, display: str) -> int | None:
    """The schema version of the hibana store ``conn`` opens (see ``schema_version``)."""
    conn.execute("BEGIN")  # one snapshot: not a migration half seen
    try:
        columns = [str(row[1]) for row in conn.execute("PRAGMA table_info(hibana_schema)")]
        rows = (
            conn.execute("SELECT version FROM hibana_schema LIMIT 2").fetchall()
            if "version" in columns
            else []
        )
        tables = {
            str(row[0])
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    finally:
        conn.execute("COMMIT")
    return schema_version(display, _MIGRATIONS, columns, rows, tables)


def _foreign_tables(conn: sqlite3.Connection) -> list[str]:
    """The tables of a database that holds no hibana store (some, at most 5, named):
    checked before anything is written, the switch to WAL mode too."""
    names = [
        str(row[0])
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
    ]
    if not names or "hibana_schema" in names:
        return []
    return names[:5] + (["..."] if len(names) > 5 else [])


class WalWatcher(ChangeWatcher):
    """inotify on the store's folder: every commit, by any process, writes the WAL."""

    _IN_MODIFY = 0x00000002

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def open(cls, path: Path) -> WalWatcher | None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return None
        if libc.inotify_add_watch(fd, os.fsencode(path.parent), cls._IN_MODIFY) < 0:
            os.close(fd)
            return None
        return cls(fd)

    def fileno(self) -> int:
        return self._fd

    def drain(self) -> bool:
        try:
            while os.read(self._fd, 65536):
                pass
        except BlockingIOError:
            return True
        except OSError:
            return False
        return True

    def close(self) -> None:
        os.close(self._fd)


#: The app's state folder, in the app's folder: the SQLite store, the running host's address.
STATE_DIR = ".hibana"


def default_path(app_dir: str | os.PathLike[str]) -> Path:
    return Path(app_dir) / STATE_DIR / "state.db"


def make_state_dir(folder: Path) -> None:
    """Create the state folder ``folder``, with a ``.gitignore`` that keeps it out of the
    app's repository: it holds the app's queued messages and sealed secrets, not its code
    (pytest's and ruff's caches do the same)."""
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# hibana's state for this app (queues, secrets): not source\n*\n")
