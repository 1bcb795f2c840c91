"""The SQL that SQLite and PostgreSQL share; each engine adds its dialect (DDL, the
clock, id reservation, how a claim locks rows).

Statements are written with ``?`` placeholders; the PostgreSQL engine rewrites them.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from typing import Any

from hibana.errors import StoreError
from hibana.store.base import (
    STARTUP_RUN_PREFIX,
    TIMER_FIRES_KEPT,
    DeadLetter,
    Delivery,
    Engine,
    Enqueued,
    NewMessage,
    QueueInfo,
    QueueStats,
    Settle,
    SubscriptionInfo,
    dump_errors,
    load_errors,
)

#: The schema's version history: migration N brings a store from version N-1 to N.
#: Each engine supplies the DDL per version (types differ); append, never edit. Version 3
#: has no DDL: it twins the idempotency keys of the hashed form (``_twin_hashed_form_keys``).
SCHEMA_VERSION = 3


def schema_damage(
    migrations: dict[int, list[str]], columns: list[str], versions: list[Any], tables: set[str]
) -> str | None:
    """What is wrong with a store's schema that migrating it would end in an SQL error
    (no such column, no such table, table already exists); None if nothing. ``columns``:
    its hibana_schema table's; ``versions``: that table's rows (two at most); ``tables``:
    every table of the store's database (or schema); ``migrations``: the engine's DDL."""

    def tables_to(version: int) -> set[str]:
        made = (
            re.match(r"CREATE TABLE (\w+)", sql)
            for v in range(1, version + 1)
            for sql in migrations.get(v, [])  # a version may have no DDL (3)
        )
        return {m.group(1) for m in made if m is not None}

    if "version" not in columns:
        return f"its hibana_schema table has no version column (it has {', '.join(columns)})"
    if len(versions) > 1 or (versions and not (type(versions[0]) is int and versions[0] >= 0)):
        shown = ", ".join(repr(v) for v in versions)
        return f"its hibana_schema table holds {shown}, not one schema version"
    version = versions[0] if versions else 0
    if version > SCHEMA_VERSION:
        return None  # refused as newer than this hibana, naming the fix: upgrade hibana
    missing = sorted(tables_to(version) - tables)
    if missing:
        return (
            f"it says it is of schema version {version}, and lacks its tables {', '.join(missing)}"
        )
    later = sorted((tables_to(SCHEMA_VERSION) - tables_to(version)) & tables)
    if later:
        return (
            f"it says it is of schema version {version}, and holds tables of a later one "
            f"({', '.join(later)})"
        )
    return None


def schema_version(
    display: str,
    migrations: dict[int, list[str]],
    columns: list[str],
    rows: Sequence[Sequence[Any]],
    tables: set[str],
) -> int | None:
    """The schema version of the store ``display`` (None: its hibana_schema table holds
    none yet), from what each engine reads of it in one snapshot (see ``schema_damage``;
    ``rows``: the hibana_schema table's, as read). StoreError if its schema is damaged."""
    versions = [row[0] for row in rows]
    damage = schema_damage(migrations, columns, versions, tables)
    if damage is not None:
        raise StoreError(
            f"the store {display} is damaged (changed by hand, or by another program): "
            f"{damage}; restore it from a backup, or move it aside (what it holds stays "
            "there) and start a host to make a new store"
        )
    return int(versions[0]) if versions else None


#: What a claim returns, in the order ``SqlEngine.claim`` reads it.
CLAIMED_COLUMNS = "id, queue, body, attempt, enqueued_at, trace, errors, visible_at"

#: What a fenced claim adds to its test of a message (``SqlEngine.fenced_until``).
FENCE = " AND leased = 0"


#: What a message's body begins with, to compare with STARTUP_RUN_PREFIX: a timer's
#: startup run or not (substr of a BLOB and of a BYTEA is bytes on both engines).
_BODY_START = f"substr(body, 1, {len(STARTUP_RUN_PREFIX)})"


#: Idempotency keys up to this many bytes of UTF-8 are kept as given.
KEY_BYTES = 1024


#: How a key kept as its SHA-256 is stored: "sha256:" and 64 hex digits.
_HASHED = re.compile(r"sha256:[0-9a-f]{64}")


def stored_key(key: str) -> str:
    """``key`` as the store keeps it: as given when it is at most ``KEY_BYTES`` of
    UTF-8 without NUL; else its SHA-256. Both engines take any key alike so: PostgreSQL's
    text holds no NUL, and its index no entry over 2,704 bytes. A key given in the form a
    hashed one is stored in is hashed too: kept as given, it would be taken for the long
    key whose hash it is (the two would be one message)."""
    try:
        raw = key.encode()
    except UnicodeEncodeError:  # a lone surrogate
        raw = key.encode("utf-8", "surrogatepass")
    else:
        if len(raw) <= KEY_BYTES and b"\0" not in raw and not _HASHED.fullmatch(key):
            return key
    return "sha256:" + hashlib.sha256(raw).hexdigest()


class SqlEngine(Engine):
    """Shared statements; a subclass provides ``_exec``, ``_many``, ids and the claim lock."""

    #: DDL per schema version (types differ between engines): version N's statements
    #: bring a store from N-1 to N.
    migrations: dict[int, list[str]] = {}
    #: When (monotonic, on this host) the transaction under way read its clock (``now``),
    #: or a moment before: however long it waited to begin (for a lock, for a server
    #: restarting), a lease it takes, ``now + lease`` on the store's clock, ends no sooner
    #: than ``began + lease`` on this host's.
    began = 0.0
    #: Until when (the store's clock) claims take no message whose lease ran out, only
    #: those never claimed or given back: the store was away, and a lease that ran out
    #: meanwhile may be that of a worker that holds the message's settlement still, to
    #: be written once it reaches the store again (``postgres_url.LEASE_GRACE``). SQLite, a
    #: file of the host's own, is never away: never fenced.
    fenced_until = 0.0

    def _migrate(self) -> None:
        """Create or migrate the schema to SCHEMA_VERSION; refuse a newer one."""
        with self.transaction(write=True):
            self._migration_lock()
            self._exec("CREATE TABLE IF NOT EXISTS hibana_schema (version INTEGER NOT NULL)")
            row = self._exec("SELECT version FROM hibana_schema").fetchone()
            version = 0 if row is None else int(row[0])
            if row is None:
                self._exec("INSERT INTO hibana_schema (version) VALUES (0)")
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the store {self.display} has schema version {version}, newer than this "
                    f"hibana understands ({SCHEMA_VERSION}); upgrade hibana"
                )
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in self.migrations.get(step, []):
                    self._exec(statement)
                if step == 3:
                    self._twin_hashed_form_keys()
                self._exec("UPDATE hibana_schema SET version = ?", (step,))

    def _twin_hashed_form_keys(self) -> None:
        """Schema 3, where a key given in the hashed form is hashed (``stored_key``): each
        key a store before it held in that form (as given, or a long key's hash: the two
        cannot be told apart) gets a twin under the form a key given so has now, with its
        message and retention, so it still finds its message either way."""
        rows = self._exec(
            "SELECT queue, key, message_id, expires_at FROM hibana_keys WHERE key LIKE ?",
            ("sha256:%",),
        ).fetchall()
        twins = [(r[0], stored_key(r[1]), r[2], r[3]) for r in rows if _HASHED.fullmatch(r[1])]
        if twins:
            self._many(
                "INSERT INTO hibana_keys (queue, key, message_id, expires_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (queue, key) DO NOTHING",
                twins,
            )

    def _migration_lock(self) -> None:
        """Keep hosts that start together from migrating at once (SQLite's write lock
        already does)."""

    # dialect hooks
    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Execute one statement; returns a cursor (fetchall/fetchone/rowcount)."""
        raise NotImplementedError

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def _reserve_ids(self, n: int) -> list[int]:
        """``n`` fresh message ids, increasing, never handed out before."""
        raise NotImplementedError

    def _claim_sql(self, fenced: bool) -> str:
        """UPDATE ... RETURNING that leases up to ? visible messages of a queue;
        ``fenced``: none whose lease ran out (``FENCE``)."""
        raise NotImplementedError

    def _lock_group(self, name: str) -> None:
        """Serialise claims of one concurrency group across every host (until commit)."""

    def _enqueued(self, queues: set[str]) -> None:
        """Messages were written to ``queues`` (visible at commit): tell the watchers."""

    # queues
    def declare(self, now: float, queues: Sequence[QueueInfo]) -> None:
        for q in queues:
            self._exec(
                "INSERT INTO hibana_queues (name, function, max_attempts, declared_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "function = excluded.function, max_attempts = excluded.max_attempts, "
                "declared_at = excluded.declared_at",
                (q.name, q.function, q.max_attempts, now),
            )

    def subscribe(self, now: float, subscriptions: Sequence[SubscriptionInfo]) -> None:
        """Record the app's subscriptions, replacing those of the same topics."""
        for topic in {s.topic for s in subscriptions}:
            self._exec("DELETE FROM hibana_subscriptions WHERE topic = ?", (topic,))
        for sub in subscriptions:
            self._exec(
                "INSERT INTO hibana_subscriptions (function, topic, queue, filter, declared_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (function) DO UPDATE SET "
                "topic = excluded.topic, queue = excluded.queue, filter = excluded.filter, "
                "declared_at = excluded.declared_at",
                (sub.function, sub.topic, sub.queue, sub.filter, now),
            )

    def subscriptions(self, now: float) -> list[SubscriptionInfo]:
        rows = self._exec(
            "SELECT function, topic, queue, filter FROM hibana_subscriptions ORDER BY function"
        ).fetchall()
        return [SubscriptionInfo(r[0], r[1], r[2], r[3]) for r in rows]

    def publish(
        self, now: float, topic: str, key: str, ttl: float, messages: Sequence[NewMessage]
    ) -> bool:
        """Deliver one event to its subscriptions' queues, once per ``key`` (its source
        and id) within ``ttl`` seconds; False for a duplicate, and nothing written."""
        marker = NewMessage(f"topic:{topic}", b"", idempotency_key=key, key_ttl=ttl)
        if self._remember_key(now, marker, 0) is not None:
            return False
        if messages:
            self.enqueue(now, messages)
        return True

    def put_secret(self, now: float, name: str, value: bytes) -> None:
        self._exec(
            "INSERT INTO hibana_secrets (name, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            (name, value, now),
        )

    def secrets(self, now: float, names: Sequence[str] | None) -> dict[str, bytes]:
        rows = self._exec("SELECT name, value FROM hibana_secrets ORDER BY name").fetchall()
        wanted = None if names is None else set(names)
        return {r[0]: bytes(r[1]) for r in rows if wanted is None or r[0] in wanted}

    def delete_secret(self, now: float, name: str) -> bool:
        cur = self._exec("DELETE FROM hibana_secrets WHERE name = ?", (name,))
        return bool(cur.rowcount)

    def declared(self, now: float) -> list[QueueInfo]:
        rows = self._exec(
            "SELECT name, function, max_attempts FROM hibana_queues ORDER BY name"
        ).fetchall()
        return [QueueInfo(r[0], r[1], int(r[2])) for r in rows]

    def enqueue(self, now: float, items: Sequence[NewMessage]) -> list[Enqueued]:
        ids = self._reserve_ids(len(items))
        results: list[Enqueued] = []
        rows: list[tuple[Any, ...]] = []
        for new_id, m in zip(ids, items, strict=True):
            if m.idempotency_key is not None:
                seen = self._remember_key(now, m, new_id)
                if seen is not None:
                    results.append(Enqueued(seen, duplicate=True))
                    continue
            rows.append((new_id, m.queue, m.body, m.trace, now, now + max(m.delay, 0.0)))
            results.append(Enqueued(new_id))
        if rows:
            self._many(
                "INSERT INTO hibana_messages "
                "(id, queue, body, trace, enqueued_at, visible_at, attempt, leased) "
                "VALUES (?, ?, ?, ?, ?, ?, 0, 0)",
                rows,
            )
            self._enqueued({r[1] for r in rows})
        return results

    def _remember_key(self, now: float, m: NewMessage, new_id: int) -> int | None:
        """None if the key is new (and now remembered for ``new_id``); else the id of the
        message it was first given to."""
        assert m.idempotency_key is not None
        key = stored_key(m.idempotency_key)
        self._exec(
            "DELETE FROM hibana_keys WHERE queue = ? AND key = ? AND expires_at <= ?",
            (m.queue, key, now),
        )
        cur = self._exec(
            "INSERT INTO hibana_keys (queue, key, message_id, expires_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (queue, key) DO NOTHING",
            (m.queue, key, new_id, now + m.key_ttl),
        )
        if cur.rowcount == 1:
            return None
        row = self._exec(
            "SELECT message_id FROM hibana_keys WHERE queue = ? AND key = ?", (m.queue, key)
        ).fetchone()
        return int(row[0])

    def claim(
        self,
        now: float,
        queue: str,
        owner: str,
        limit: int,
        lease: float,
        group: tuple[str, int] | None,
    ) -> list[Delivery]:
        fenced = now < self.fenced_until
        if group is not None:
            name, group_limit = group
            self._lock_group(name)
            # fenced, a lease that ran out still counts: its worker may run it still
            held = self._exec(
                "SELECT COUNT(*) FROM hibana_messages "
                "WHERE grp = ? AND leased = 1 AND visible_at > ?",
                (name, -math.inf if fenced else now),
            ).fetchone()[0]
            limit = min(limit, group_limit - int(held))
            if limit <= 0:
                return []
        rows = self._exec(
            self._claim_sql(fenced),
            (now + lease, owner, group[0] if group else None, queue, now, limit),
        ).fetchall()
        out = [
            Delivery(
                id=int(r[0]),
                queue=r[1],
                body=bytes(r[2]),
                attempt=int(r[3]),
                enqueued_at=float(r[4]),
                trace=r[5],
                errors=load_errors(r[6]),
                lease_until=float(r[7]),
                leased_at=self.began,
            )
            for r in rows
        ]
        out.sort(key=lambda d: d.id)
        return out

    def settle(self, now: float, items: Sequence[Settle]) -> None:
        acks = [(s.id, s.attempt) for s in items if s.kind == "ack"]
        if acks:
            self._many("DELETE FROM hibana_messages WHERE id = ? AND attempt = ?", acks)
        retries = [
            (now + s.delay, dump_errors(s.errors), s.id, s.attempt)
            for s in items
            if s.kind == "retry"
        ]
        if retries:
            self._many(
                "UPDATE hibana_messages SET visible_at = ?, leased = 0, owner = NULL, "
                "grp = NULL, errors = ? WHERE id = ? AND attempt = ?",
                retries,
            )
        extended = [(now + s.delay, s.id, s.attempt) for s in items if s.kind == "extend"]
        if extended:
            self._many(
                "UPDATE hibana_messages SET visible_at = ? WHERE id = ? AND attempt = ? "
                "AND leased = 1",
                extended,
            )
        releases = [(now, s.id, s.attempt) for s in items if s.kind == "release"]
        if releases:
            # Not the message's fault (the worker is stopping): this attempt does not count.
            self._many(
                "UPDATE hibana_messages SET visible_at = ?, leased = 0, owner = NULL, "
                "grp = NULL, attempt = attempt - 1 WHERE id = ? AND attempt = ?",
                releases,
            )
        dead = [s for s in items if s.kind == "dead"]
        if dead:
            self._bury(now, dead)

    def _bury(self, now: float, dead: Sequence[Settle]) -> None:
        """Move the messages of ``dead`` (those whose lease it still holds) to the dead
        letters. A copy, then a delete: right only where one writer runs at a time
        (SQLite). Where each statement reads what is committed when it starts, a host
        that claimed a message between the two (its lease ran out) left it both a dead
        letter and in flight: PostgreSQL moves it in one statement."""
        self._many(
            "INSERT INTO hibana_dead "
            "(id, queue, body, trace, enqueued_at, attempts, errors, died_at) "
            "SELECT id, queue, body, trace, enqueued_at, attempt - ?, ?, ? "
            "FROM hibana_messages WHERE id = ? AND attempt = ?",
            [(int(s.unrun), dump_errors(s.errors), now, s.id, s.attempt) for s in dead],
        )
        self._many(
            "DELETE FROM hibana_messages WHERE id = ? AND attempt = ?",
            [(s.id, s.attempt) for s in dead],
        )

    def ready(self, now: float, queues: Sequence[str]) -> int:
        total = 0
        for q in queues:  # counted up to 1000 each: this is polled, and only "any?" matters
            row = self._exec(
                "SELECT COUNT(*) FROM (SELECT 1 FROM hibana_messages "
                "WHERE queue = ? AND visible_at <= ? LIMIT 1000) AS waiting",
                (q, now),
            ).fetchone()
            total += int(row[0])
        return total

    def next_visible(self, now: float, queues: Sequence[str]) -> float | None:
        first: float | None = None
        for q in queues:  # each the first entry of the queue in the (queue, visible_at) index
            row = self._exec(
                "SELECT MIN(visible_at) FROM hibana_messages WHERE queue = ?", (q,)
            ).fetchone()
            if row[0] is not None and (first is None or row[0] < first):
                first = float(row[0])
        return None if first is None else max(0.0, first - now)

    def stats(self, now: float) -> list[QueueStats]:
        found: dict[str, list[Any]] = {q.name: [0, 0, 0, 0, None] for q in self.declared(now)}
        for name, ready, delayed, in_flight, oldest in self._exec(
            "SELECT queue, "
            "SUM(CASE WHEN visible_at <= ? THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN visible_at > ? AND leased = 0 THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN visible_at > ? AND leased = 1 THEN 1 ELSE 0 END), "
            "MIN(enqueued_at) FROM hibana_messages GROUP BY queue",
            (now, now, now),
        ).fetchall():
            found[name] = [int(ready), int(delayed), int(in_flight), 0, oldest]
        for name, dead in self._exec(
            "SELECT queue, COUNT(*) FROM hibana_dead GROUP BY queue"
        ).fetchall():
            found.setdefault(name, [0, 0, 0, 0, None])[3] = int(dead)
        return [
            QueueStats(
                queue=name,
                ready=v[0],
                delayed=v[1],
                in_flight=v[2],
                dead=v[3],
                oldest_age=None if v[4] is None else max(0.0, now - float(v[4])),
            )
            for name, v in sorted(found.items())
        ]

    def dead_letters(self, now: float, queue: str, limit: int) -> list[DeadLetter]:
        rows = self._exec(
            "SELECT id, queue, body, attempts, errors, enqueued_at, died_at, trace "
            "FROM hibana_dead WHERE queue = ? ORDER BY died_at, id LIMIT ?",
            (queue, limit),
        ).fetchall()
        return [
            DeadLetter(
                id=int(r[0]),
                queue=r[1],
                body=bytes(r[2]),
                attempts=int(r[3]),
                errors=load_errors(r[4]),
                enqueued_at=float(r[5]),
                died_at=float(r[6]),
                trace=r[7],
            )
            for r in rows
        ]

    def redrive(self, now: float, queue: str, ids: Sequence[int] | None) -> int:
        where = "queue = ?"
        params: list[Any] = [queue]
        if ids is not None:
            if not ids:
                return 0
            where += f" AND id IN ({', '.join('?' for _ in ids)})"
            params += [int(i) for i in ids]
        moved = self._revive(now, where, params)
        if moved:
            self._enqueued({queue})
        return moved

    def _revive(self, now: float, where: str, params: Sequence[Any]) -> int:
        """Move the dead letters ``where`` selects back into their queue; how many moved.
        A copy, then a delete: right only where one writer runs at a time (SQLite). Where
        each statement reads what is committed when it starts, the delete also took a dead
        letter another host wrote between the two, never copied: PostgreSQL moves them in
        one statement."""
        self._exec(
            "INSERT INTO hibana_messages "
            "(id, queue, body, trace, enqueued_at, visible_at, attempt, leased) "
            f"SELECT id, queue, body, trace, enqueued_at, ?, 0, 0 FROM hibana_dead WHERE {where}",
            [now, *params],
        )
        return int(self._exec(f"DELETE FROM hibana_dead WHERE {where}", params).rowcount)

    def fire_timer(
        self, now: float, function: str, slot: float, message: NewMessage, replacing: bytes
    ) -> bool:
        # Once per slot; and never a slot before the latest fired (a host whose clock is
        # behind the others' would fire again one whose record is no longer kept).
        cur = self._exec(
            "INSERT INTO hibana_timer_fires (function, slot, fired_at) SELECT ?, ?, ? "
            "WHERE NOT EXISTS (SELECT 1 FROM hibana_timer_fires WHERE function = ? AND slot >= ?) "
            "ON CONFLICT (function, slot) DO NOTHING",
            (function, slot, now, function, slot),
        )
        if cur.rowcount != 1:
            return False
        # A slot still waiting (the run before it is slower than the period, or no worker
        # has started yet) becomes this one, as ``replacing``: one waits at most. So does
        # one a worker gave back (its host stops, or max_concurrency kept it from running):
        # it waits as a slot never taken does, and were it kept, a timer whose runs are
        # throttled would pile up a backlog of them; the run that stands for it is past due,
        # as one for a slot missed while the host was down is. Not one being run (leased),
        # nor the startup run: that is no slot's, and the user asked for it. The test of
        # ``leased`` is made again on the row itself: on PostgreSQL a claim that took it
        # meanwhile is seen once its lock is let go, and a new message is sent.
        waiting = self._exec(
            "UPDATE hibana_messages SET body = ?, trace = ? WHERE id = (SELECT MIN(id) FROM "
            f"hibana_messages WHERE queue = ? AND leased = 0 AND {_BODY_START} <> ?) "
            "AND leased = 0",
            (replacing, message.trace, message.queue, STARTUP_RUN_PREFIX),
        )
        if waiting.rowcount != 1:
            self.enqueue(now, [message])
        self._exec(
            "DELETE FROM hibana_timer_fires WHERE function = ? AND slot < ("
            "SELECT MIN(slot) FROM (SELECT slot FROM hibana_timer_fires WHERE function = ? "
            "ORDER BY slot DESC LIMIT ?) AS kept)",
            (function, function, TIMER_FIRES_KEPT),
        )
        return True

    def startup_run(self, now: float, message: NewMessage) -> bool:
        # Two hosts that start at once on PostgreSQL may both find none waiting, and send
        # one each: a run more than needed, none lost.
        waiting = self._exec(
            "SELECT 1 FROM hibana_messages WHERE queue = ? AND leased = 0 AND "
            f"{_BODY_START} = ? LIMIT 1",
            (message.queue, STARTUP_RUN_PREFIX),
        ).fetchone()
        if waiting is not None:
            return False
        self.enqueue(now, [message])
        return True

    def last_fire(self, now: float, function: str) -> float | None:
        row = self._exec(
            "SELECT MAX(slot) FROM hibana_timer_fires WHERE function = ?", (function,)
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def purge(self, now: float) -> int:
        """Forget idempotency keys past their retention."""
        cur = self._exec("DELETE FROM hibana_keys WHERE expires_at <= ?", (now,))
        return int(cur.rowcount)
