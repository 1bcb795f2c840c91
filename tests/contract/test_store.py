"""One behaviour for every store engine: each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sqlite3
import string
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from hibana.errors import QueueError, StoreError
from hibana.store import NewMessage, QueueInfo, Settle, Store, engine_for, open_store
from hibana.store.base import _Op
from hibana.store.sql import SCHEMA_VERSION, stored_key
from hibana.store.sqlite import SqliteEngine
from tests.contract.conftest import run

T = TypeVar("T")


def msg(queue: str = "orders", body: bytes = b"{}", **kw: object) -> NewMessage:
    return NewMessage(queue, body, **kw)  # type: ignore[arg-type]


def test_enqueue_claim_ack(store: Store) -> None:
    sent = run(store.enqueue_many([msg(body=b'{"n":%d}' % i) for i in range(5)]))
    assert [e.duplicate for e in sent] == [False] * 5
    assert len({e.id for e in sent}) == 5
    got = run(store.claim("orders", "w1", 3, lease=30))
    assert [d.body for d in got] == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    assert all(d.attempt == 1 and d.queue == "orders" for d in got)
    assert all(d.lease_until > time.time() + 20 for d in got)
    run(store.settle_many([Settle("ack", d.id, d.attempt) for d in got]))
    rest = run(store.claim("orders", "w1", 10, lease=30))
    assert [d.body for d in rest] == [b'{"n":3}', b'{"n":4}']
    assert run(store.claim("other", "w1", 10, lease=30)) == []


def test_a_claim_says_when_its_lease_began_on_the_claiming_hosts_clock(store: Store) -> None:
    """Its leases end no sooner than ``leased_at`` + the lease there, on a clock that may
    not be the store's: a worker runs a message no longer than that."""
    run(store.enqueue(msg()))
    asked = time.monotonic()
    (d,) = run(store.claim("orders", "w1", 1, lease=30))
    assert asked <= d.leased_at <= time.monotonic()


def test_a_sqlite_store_that_fills_up_says_so_and_writes_nothing(tmp_path: Path) -> None:
    """SQLite ends the transaction itself when the disk (or the file's size limit) fills
    mid-statement: the engine's ROLLBACK after it failed, and that error, "cannot rollback
    - no transaction is active", was all an enqueue said."""
    engine = SqliteEngine(tmp_path / "state.db")
    store = Store(engine)
    store.open()
    try:
        assert engine.conn is not None
        (pages,) = engine.conn.execute("PRAGMA page_count").fetchone()
        engine.conn.execute(f"PRAGMA max_page_count = {pages + 4}")  # as a full disk does
        with pytest.raises(StoreError) as full:
            run(store.enqueue_many([msg(body=b"x" * 10_000)] * 20))
        # the disk has room: the file's limit is named, and where it is
        assert str(full.value).startswith(
            f"the store {engine.display} cannot write: SQLite found the database or disk "
            f"full, though {tmp_path} has "
        )
        assert str(full.value).endswith(
            " free: the file reached a limit on its size (PRAGMA max_page_count, a quota, a "
            "file size limit); raise that limit. Nothing was written; what was stored "
            "before is kept"
        )
        engine.conn.execute(f"PRAGMA max_page_count = {2**31}")  # space again
        assert run(store.stats()) == []  # nothing written
        run(store.enqueue(msg()))
        assert [s.ready for s in run(store.stats())] == [1]
    finally:
        store.close()


def test_a_leased_message_is_not_delivered_twice_until_its_lease_runs_out(store: Store) -> None:
    run(store.enqueue(msg()))
    first = run(store.claim("orders", "w1", 10, lease=0.3))
    assert len(first) == 1
    assert run(store.claim("orders", "w2", 10, lease=0.3)) == []
    time.sleep(0.4)
    again = run(store.claim("orders", "w2", 10, lease=30))
    assert [(d.id, d.attempt) for d in again] == [(first[0].id, 2)]
    # the first consumer's late ack holds a lost lease: it changes nothing
    run(store.settle(Settle("ack", first[0].id, first[0].attempt)))
    stats = {s.queue: s for s in run(store.stats())}
    assert stats["orders"].in_flight == 1
    run(store.settle(Settle("ack", again[0].id, again[0].attempt)))
    # an undeclared queue with nothing in it is not listed
    assert "orders" not in {s.queue for s in run(store.stats())}


def test_retry_hides_the_message_for_its_delay_and_keeps_the_error_history(store: Store) -> None:
    run(store.enqueue(msg()))
    (d,) = run(store.claim("orders", "w1", 1, lease=30))
    errors = [{"attempt": 1, "error": "ValueError: boom", "at": time.time()}]
    run(store.settle(Settle("retry", d.id, d.attempt, delay=0.4, error="boom", errors=errors)))
    assert run(store.claim("orders", "w1", 1, lease=30)) == []
    (s,) = run(store.stats())
    assert (s.ready, s.delayed, s.in_flight) == (0, 1, 0)
    time.sleep(0.5)
    (d2,) = run(store.claim("orders", "w1", 1, lease=30))
    assert d2.attempt == 2
    assert d2.errors == errors


def test_next_visible_says_when_a_message_can_be_claimed(store: Store) -> None:
    # an idle consumer or host sleeps until then (a commit wakes it sooner)
    assert run(store.next_visible(["orders", "other"])) is None
    run(store.enqueue(msg(queue="other", delay=30)))
    run(store.enqueue(msg(queue="other", delay=60)))
    first = run(store.next_visible(["orders", "other"]))
    assert first is not None and 28 < first <= 30
    run(store.enqueue(msg()))
    assert run(store.next_visible(["orders", "other"])) == 0.0  # one can be claimed now
    assert len(run(store.claim("orders", "w1", 1, lease=5))) == 1  # a lease hides it
    leased = run(store.next_visible(["orders", "other"]))
    assert leased is not None and 3 < leased <= 5
    assert run(store.next_visible(["nothing-here"])) is None


def test_release_gives_the_message_back_without_counting_the_attempt(store: Store) -> None:
    run(store.enqueue(msg()))
    (d,) = run(store.claim("orders", "w1", 1, lease=30))
    run(store.settle(Settle("release", d.id, d.attempt)))
    (d2,) = run(store.claim("orders", "w2", 1, lease=30))
    assert (d2.id, d2.attempt) == (d.id, 1)


def test_dead_letters_and_redrive(store: Store) -> None:
    ids = [e.id for e in run(store.enqueue_many([msg(body=b"[%d]" % i) for i in range(3)]))]
    for d in run(store.claim("orders", "w1", 3, lease=30)):
        errors = [{"attempt": 1, "error": f"RuntimeError: bad {d.id}", "at": time.time()}]
        run(store.settle(Settle("dead", d.id, d.attempt, error="bad", errors=errors)))
    (s,) = run(store.stats())
    assert (s.ready, s.in_flight, s.dead) == (0, 0, 3)
    dead = run(store.dead_letters("orders"))
    assert [x.id for x in dead] == ids
    assert dead[0].attempts == 1
    assert dead[0].errors[0]["error"] == f"RuntimeError: bad {ids[0]}"
    assert dead[0].body == b"[0]"
    assert run(store.redrive("orders", [ids[1]])) == 1
    assert [x.id for x in run(store.dead_letters("orders"))] == [ids[0], ids[2]]
    (back,) = run(store.claim("orders", "w1", 5, lease=30))
    assert (back.id, back.attempt, back.body) == (ids[1], 1, b"[1]")
    assert run(store.redrive("orders")) == 2
    assert run(store.dead_letters("orders")) == []
    assert run(store.redrive("orders")) == 0


def test_delayed_messages_become_visible_later(store: Store) -> None:
    run(store.enqueue(msg(body=b"later", delay=0.4)))
    run(store.enqueue(msg(body=b"now")))
    assert [d.body for d in run(store.claim("orders", "w1", 5, lease=30))] == [b"now"]
    (s,) = run(store.stats())
    assert s.delayed == 1
    time.sleep(0.5)
    assert [d.body for d in run(store.claim("orders", "w1", 5, lease=30))] == [b"later"]


def test_idempotency_keys(store: Store) -> None:
    a = run(store.enqueue(msg(idempotency_key="k1")))
    b = run(store.enqueue(msg(idempotency_key="k1")))
    assert (a.duplicate, b.duplicate, b.id) == (False, True, a.id)
    other_queue = run(store.enqueue(msg("emails", idempotency_key="k1")))
    assert not other_queue.duplicate
    # the same key twice in one batch is one message too
    batch = run(store.enqueue_many([msg(idempotency_key="k2"), msg(idempotency_key="k2")]))
    assert [e.duplicate for e in batch] == [False, True] and batch[0].id == batch[1].id
    (s,) = [s for s in run(store.stats()) if s.queue == "orders"]
    assert s.ready == 2
    # past its retention the key is forgotten
    short = run(store.enqueue(msg(idempotency_key="k3", key_ttl=0.2)))
    time.sleep(0.3)
    again = run(store.enqueue(msg(idempotency_key="k3", key_ttl=0.2)))
    assert not again.duplicate and again.id != short.id
    time.sleep(0.3)
    assert run(store.purge()) == 1


@pytest.mark.parametrize(
    "key",
    [
        "with\x00nul",
        "".join(random.Random(7).choices(string.ascii_letters, k=5000)),  # not compressible
        "\u00e9" * 2000,
        "lone \udce9 surrogate",
    ],
    ids=["nul", "long", "long-utf8", "surrogate"],
)
def test_any_idempotency_key_works_alike_on_every_engine(store: Store, key: str) -> None:
    """PostgreSQL's text holds no NUL and its index no key over 2,704 bytes: such keys
    failed there (a StoreError) and worked on SQLite."""
    first = run(store.enqueue(msg(idempotency_key=key)))
    again = run(store.enqueue(msg(idempotency_key=key)))
    assert (first.duplicate, again.duplicate, again.id) == (False, True, first.id)
    near = run(store.enqueue(msg(idempotency_key=key + "x")))
    assert not near.duplicate


def test_a_key_written_as_a_hashed_one_is_not_the_long_key_it_hashes(store: Store) -> None:
    """A long key is kept as "sha256:<hex>" of it; that text given as a key was kept as
    given, the same row: the second message was taken for a duplicate of the first."""
    long = "order-" + "x" * 2000
    hashed = "sha256:" + hashlib.sha256(long.encode()).hexdigest()
    first = run(store.enqueue(msg(idempotency_key=long)))
    other = run(store.enqueue(msg(idempotency_key=hashed)))
    assert (first.duplicate, other.duplicate) == (False, False) and other.id != first.id
    again = run(store.enqueue(msg(idempotency_key=hashed)))
    assert (again.duplicate, again.id) == (True, other.id)
    assert run(store.enqueue(msg(idempotency_key=long))).id == first.id


def test_keys_an_older_hibana_kept_still_dedupe_after_the_upgrade(store_url: str) -> None:
    """A store of schema 2 held a key given in the hashed form as given, and a long key
    as its hash, both in one form: after the upgrade each still finds its message."""
    literal = "sha256:" + hashlib.sha256(b"the payload").hexdigest()
    long = "order-" + "x" * 2000
    store = open_store(store_url)
    old_literal, old_long = run(store.enqueue_many([msg(body=b"a"), msg(body=b"b")]))
    engine = store.engine
    with engine.transaction(write=True) as now:
        for key, sent in ((literal, old_literal), (stored_key(long), old_long)):
            engine._exec(  # type: ignore[attr-defined]
                "INSERT INTO hibana_keys (queue, key, message_id, expires_at) VALUES (?, ?, ?, ?)",
                ("orders", key, sent.id, now + 3600),
            )
        engine._exec("UPDATE hibana_schema SET version = 2")  # type: ignore[attr-defined]
    store.close()
    upgraded = open_store(store_url)
    try:
        again = run(upgraded.enqueue(msg(idempotency_key=literal)))
        assert (again.duplicate, again.id) == (True, old_literal.id)
        again = run(upgraded.enqueue(msg(idempotency_key=long)))
        assert (again.duplicate, again.id) == (True, old_long.id)
        assert not run(upgraded.enqueue(msg("emails", idempotency_key=literal))).duplicate
    finally:
        upgraded.close()


def test_a_lease_is_extended_while_its_function_runs(open_stores: Callable[[], Store]) -> None:
    one, two = open_stores(), open_stores()
    run(one.enqueue_many([msg(body=b"long"), msg(body=b"other")]))
    (held, other) = run(one.claim("orders", "w1", 2, lease=0.2, group=("db", 2)))
    run(one.settle(Settle("extend", held.id, held.attempt, delay=30)))
    run(one.settle(Settle("release", other.id, other.attempt)))
    run(one.settle(Settle("extend", other.id, other.attempt, delay=30)))  # not leased: no-op
    time.sleep(0.3)  # past the first lease's end
    again = run(two.claim("orders", "w2", 5, lease=30, group=("db", 2)))
    assert [d.body for d in again] == [b"other"]  # the extended one is still leased
    assert len(run(two.claim("orders", "w2", 5, lease=30, group=("db", 2)))) == 0


def test_concurrency_group_caps_leases_across_consumers(
    open_stores: Callable[[], Store],
) -> None:
    one, two = open_stores(), open_stores()
    run(one.enqueue_many([msg("a") for _ in range(10)] + [msg("b") for _ in range(10)]))
    got_a = run(one.claim("a", "w1", 10, lease=30, group=("warehouse", 3)))
    assert len(got_a) == 3
    assert run(two.claim("b", "w2", 10, lease=30, group=("warehouse", 3))) == []
    run(one.settle(Settle("ack", got_a[0].id, got_a[0].attempt)))
    assert len(run(two.claim("b", "w2", 10, lease=30, group=("warehouse", 3)))) == 1
    # without the group, the rest of b is free to go
    assert len(run(two.claim("b", "w2", 100, lease=30))) == 9


def test_consumers_in_parallel_never_share_a_message(open_stores: Callable[[], Store]) -> None:
    stores = [open_stores() for _ in range(4)]
    run(stores[0].enqueue_many([msg(body=b"%d" % i) for i in range(400)]))
    seen: list[list[int]] = [[] for _ in stores]

    def consume(i: int) -> None:
        async def go() -> None:
            while True:
                got = await stores[i].claim("orders", f"w{i}", 7, lease=30)
                if not got:
                    return
                seen[i].extend(d.id for d in got)
                await stores[i].settle_many([Settle("ack", d.id, d.attempt) for d in got])

        asyncio.run(go())

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [x for ids in seen for x in ids]
    assert len(everything) == 400 == len(set(everything))


def test_group_commit_answers_every_caller(store: Store) -> None:
    async def many() -> list[int]:
        results = await asyncio.gather(*(store.enqueue(msg(body=b"%d" % i)) for i in range(1000)))
        return [r.id for r in results]

    ids = run(many())
    assert len(set(ids)) == 1000
    (s,) = run(store.stats())
    assert s.ready == 1000
    assert s.oldest_age is not None and s.oldest_age >= 0


def fire(store: Store, function: str, slot: float, body: bytes = b"{}") -> bool:
    """``store.fire_timer`` of a slot whose message is ``body``, or ``body`` + b" late" in
    the place of one still waiting."""
    return run(store.fire_timer(function, slot, msg(f"timer:{function}", body), body + b" late"))


def test_a_timer_slot_fires_once_across_hosts(open_stores: Callable[[], Store]) -> None:
    one, two = open_stores(), open_stores()
    slot = 1_800_000_000.0
    assert run(one.last_fire("sweep")) is None
    assert fire(one, "sweep", slot) is True
    assert fire(two, "sweep", slot) is False
    assert fire(two, "sweep", slot + 60, b"60") is True
    assert run(one.last_fire("sweep")) == slot + 60
    # the first slot's message still waited: it became the second's (one waits at most),
    # with the body the timer gives a slot that takes a waiting one's place
    (running,) = run(one.claim("timer:sweep", "w", 10, lease=30))
    assert running.body == b"60 late"
    # one being run is not touched: the next slot waits behind it, as its own message
    assert fire(two, "sweep", slot + 120, b"120") is True
    assert fire(two, "sweep", slot + 180, b"180") is True
    assert [d.body for d in run(one.claim("timer:sweep", "w", 10, lease=30))] == [b"180 late"]


def test_a_write_to_a_timers_queue_is_refused_and_its_slots_go_on(store: Store) -> None:
    """A message another program wrote there was taken for a waiting slot: the next slot
    to fire replaced it, unrun and unsaid."""
    for send in (
        lambda: store.enqueue(msg("timer:sweep", b'{"job": 1}')),
        lambda: store.enqueue_many([msg("orders"), msg("timer:sweep", b'{"job": 1}')]),
        lambda: store.publish("github", "src\n1", [msg("event:a"), msg("timer:sweep")]),
    ):
        with pytest.raises(QueueError) as refused:
            run(send())
        assert str(refused.value) == (
            "'timer:sweep' is a timer's own queue: its schedule sends to it, nothing else may "
            "(nothing was written); to run the timer function now, give it "
            "run_on_startup=True, or call its code from a function of your own"
        )
    assert run(store.stats()) == []  # not the batch's other message either
    assert run(store.publish("github", "src\n1", [])) is True  # nor the event's key
    assert fire(store, "sweep", 1_800_000_000.0, b"slot") is True
    assert [d.body for d in run(store.claim("timer:sweep", "w", 10, lease=30))] == [b"slot"]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("delay", float("nan"), "has delay=nan: a delay is a number of seconds from 0 to"),
        ("delay", 366 * 24 * 3600.0, "has delay=31622400.0: a delay is a number of seconds"),
        ("key_ttl", float("nan"), "has key_ttl=nan: it is the seconds its idempotency key"),
        ("key_ttl", float("inf"), "has key_ttl=inf: it is the seconds its idempotency key"),
        ("key_ttl", -1.0, "has key_ttl=-1.0: it is the seconds its idempotency key"),
    ],
)
def test_a_delay_or_key_retention_the_engines_cannot_keep_alike_is_refused(
    store: Store, field: str, value: float, problem: str
) -> None:
    """A NaN delay failed on SQLite with its IntegrityError (NOT NULL constraint failed)
    and, on PostgreSQL, was stored: the message was delayed for ever, never delivered."""
    bad = NewMessage("orders", b"{}", idempotency_key="k", **{field: value})  # type: ignore[arg-type]
    for send in (lambda: store.enqueue(bad), lambda: store.enqueue_many([msg(), bad])):
        with pytest.raises(QueueError, match=problem):
            run(send())
    assert run(store.stats()) == []
    assert not run(store.enqueue(msg(idempotency_key="k"))).duplicate


def test_a_host_whose_clock_is_behind_never_fires_a_slot_again(
    open_stores: Callable[[], Store],
) -> None:
    """The slots it sees as due were fired by a host ahead of it, and their records are
    gone (the store keeps the latest 20): it fired them a second time."""
    ahead, behind = open_stores(), open_stores()
    first = 1_800_000_000.0
    for n in range(25):
        assert fire(ahead, "tick", first + n) is True
    for n in range(25):  # 25 s late: the first five slots' records are no longer kept
        assert fire(behind, "tick", first + n) is False
    assert fire(behind, "tick", first + 25) is True
    assert fire(ahead, "other", first) is True  # its own


def test_declared_queues(store: Store) -> None:
    run(store.declare([QueueInfo("orders", "on_order", 5), QueueInfo("emails", "send", 3)]))
    run(store.declare([QueueInfo("orders", "on_order", 7)]))
    assert run(store.declared()) == [
        QueueInfo("emails", "send", 3),
        QueueInfo("orders", "on_order", 7),
    ]
    assert [s.queue for s in run(store.stats())] == ["emails", "orders"]


def test_an_acknowledged_enqueue_is_visible_to_another_connection(
    open_stores: Callable[[], Store],
) -> None:
    one, two = open_stores(), open_stores()
    sent = run(one.enqueue(msg(body=b"durable")))
    (got,) = run(two.claim("orders", "w2", 1, lease=30))
    assert (got.id, got.body) == (sent.id, b"durable")


def test_a_store_from_a_newer_hibana_is_refused(store_url: str) -> None:
    store = open_store(store_url)
    engine = store.engine

    async def bump() -> None:
        await store._call("declare", ())  # make sure the schema exists

    run(bump())
    with engine.transaction(write=True):
        engine._exec("UPDATE hibana_schema SET version = 99")  # type: ignore[attr-defined]
    store.close()
    with pytest.raises(StoreError, match="schema version 99, newer than this hibana"):
        open_store(store_url)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://x/y", "unknown store URL 'mysql://x/y'"),
        ("sqlite:///", "names no file"),
    ],
)
def test_bad_store_urls_are_named(url: str, problem: str) -> None:
    with pytest.raises(StoreError, match=problem):
        engine_for(url)


def test_an_unreachable_postgresql_is_named() -> None:
    with pytest.raises(StoreError, match=r"cannot connect to the store postgresql://u:\*\*\*@"):
        open_store("postgresql://u:secret@127.0.0.1:1/nope")


def test_a_sqlite_database_of_another_program_is_refused_untouched(tmp_path: Path) -> None:
    """hibana's tables were added to it (and it was switched to WAL mode), even by a
    command that only reads, `hibana queue stats --store sqlite:///their.db`."""
    theirs = tmp_path / "their.db"
    conn = sqlite3.connect(theirs)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as refused:
        open_store(f"sqlite:///{theirs}")
    assert str(refused.value) == (
        f"{theirs} is a SQLite database of another program (its tables: customers, "
        "invoices), not a hibana store; hibana would add its tables to it. Pass --store "
        "sqlite:///PATH (or $HIBANA_STORE) naming a file of its own"
    )
    conn = sqlite3.connect(theirs)
    tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert sorted(tables) == [("customers",), ("invoices",)]
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()
    # an empty file is a new store: what `touch` made, or a store's first open
    (tmp_path / "empty.db").touch()
    open_store(f"sqlite:///{tmp_path / 'empty.db'}").close()
    open_store(f"sqlite:///{tmp_path / 'empty.db'}").close()


@pytest.mark.parametrize(
    ("changes", "damage"),
    [
        (
            ["DROP TABLE hibana_schema", "CREATE TABLE hibana_schema (v INTEGER)"],
            "its hibana_schema table has no version column (it has v)",
        ),
        (
            [
                "DROP TABLE hibana_schema",
                "CREATE TABLE hibana_schema (version TEXT)",
                "INSERT INTO hibana_schema VALUES ('two')",
            ],
            "its hibana_schema table holds 'two', not one schema version",
        ),
        (
            ["INSERT INTO hibana_schema VALUES (2)"],
            f"its hibana_schema table holds {SCHEMA_VERSION}, 2, not one schema version",
        ),
        (
            ["DROP TABLE hibana_queues", "DROP TABLE hibana_secrets"],
            f"it says it is of schema version {SCHEMA_VERSION}, and lacks its tables "
            "hibana_queues, hibana_secrets",
        ),
        (
            ["UPDATE hibana_schema SET version = 1"],
            "it says it is of schema version 1, and holds tables of a later one "
            "(hibana_secrets, hibana_subscriptions)",
        ),
    ],
)
def test_a_store_whose_schema_was_changed_by_hand_is_named_damaged(
    store_url: str, changes: list[str], damage: str
) -> None:
    """It said 'cannot open the store ...: no such column: version' or 'the store ...
    failed: OperationalError: no such table: hibana_queues' (at the first command), or
    'invalid literal for int()', naming neither the problem nor the fix."""
    store = open_store(store_url)
    engine = store.engine
    with engine.transaction(write=True):
        for statement in changes:
            engine._exec(statement)  # type: ignore[attr-defined]
    store.close()
    path = Path(store_url.removeprefix("sqlite:///"))
    before = path.read_bytes() if store_url.startswith("sqlite:") else b""
    with pytest.raises(StoreError) as refused:
        open_store(store_url)
    assert str(refused.value) == (
        f"the store {engine.display} is damaged (changed by hand, or by another program): "
        f"{damage}; restore it from a backup, or move it aside (what it holds stays there) "
        "and start a host to make a new store"
    )
    if store_url.startswith("sqlite:"):
        assert path.read_bytes() == before  # refused before anything was written


def test_a_sqlite_store_path_that_is_a_directory_or_under_a_file_is_named(
    tmp_path: Path,
) -> None:
    """They said 'unable to open database file; is it a hibana store file, and writable?'
    and 'cannot create ... for the store: File exists'."""
    (tmp_path / "state.db").mkdir()
    with pytest.raises(StoreError) as folder:
        open_store(f"sqlite:///{tmp_path / 'state.db'}")
    assert str(folder.value) == (
        f"the store sqlite:///{tmp_path / 'state.db'} is a directory, not a file: name a "
        f"file, as sqlite:///{tmp_path / 'state.db' / 'state.db'}"
    )
    (tmp_path / "notes").write_text("")
    under = tmp_path / "notes" / "sub" / "state.db"
    with pytest.raises(StoreError) as file:
        open_store(f"sqlite:///{under}")
    assert str(file.value) == (
        f"the store sqlite:///{under} cannot be made: {tmp_path / 'notes'} is a file, not a "
        "folder; name a path in a folder"
    )


def test_a_sqlite_store_locked_by_another_process_is_named_with_the_fix(tmp_path: Path) -> None:
    """It said 'cannot open the store ...: database is locked' and 'the store ... failed:
    OperationalError: database is locked', naming neither the lock's holder nor the fix."""
    path = tmp_path / "state.db"
    open_store(f"sqlite:///{path}").close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # what a `sqlite3` shell in a transaction holds
    locked = (
        f"the store sqlite:///{path} is locked: another process has held its write lock for "
        f"over 0.2 s (a program with the file open in a transaction, a `sqlite3` shell say; "
        f"`fuser {path}` names it); end that transaction, then try again"
    )
    engine = SqliteEngine(path)
    engine.busy_timeout = 0.2
    store = Store(engine)
    store.open()  # a store of this version is opened with no write: it waits for none
    assert run(store.secrets()) == {}
    with pytest.raises(StoreError) as writing:
        run(store.put_secret("api-token", b"sealed"))
    assert str(writing.value) == locked
    # a batch waits for the lock once, not once more for each of its operations
    tries: list[str] = []
    assert engine.conn is not None
    engine.conn.set_trace_callback(lambda sql: tries.append(sql) if "BEGIN" in sql else None)

    failed: list[str] = []
    store._run(  # one batch, as the writer takes three callers' writes at once
        [
            _Op("put_secret", (f"s{i}", b"sealed"), lambda _, exc: failed.append(str(exc)))
            for i in range(3)
        ]
    )
    assert failed == [locked] * 3
    assert tries == ["BEGIN IMMEDIATE"]
    engine.conn.set_trace_callback(None)
    holder.execute("ROLLBACK")
    run(store.put_secret("api-token", b"sealed"))
    assert run(store.secrets()) == {"api-token": b"sealed"}
    store.close()
    holder.close()


def test_a_sqlite_store_locked_in_exclusive_mode_is_named_as_locked(tmp_path: Path) -> None:
    """A program holding the file in exclusive locking mode keeps readers out too: it said
    'database is locked; is it a hibana store file, and writable?'."""
    path = tmp_path / "state.db"
    open_store(f"sqlite:///{path}").close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    engine = SqliteEngine(path)
    engine.busy_timeout = 0.2
    with pytest.raises(StoreError) as opening:
        Store(engine).open()
    assert str(opening.value).startswith(
        f"the store sqlite:///{path} is locked: another process has held its write lock"
    )
    holder.close()


def test_publish_fans_out_once_per_source_and_id(store: Store) -> None:
    from hibana.store import SubscriptionInfo

    run(
        store.subscribe(
            [
                SubscriptionInfo("a", "github", "event:a", None),
                SubscriptionInfo("b", "github", "event:b", '{"exact": {"type": "x"}}'),
            ]
        )
    )
    subs = run(store.subscriptions())
    assert [(s.function, s.queue, s.filter) for s in subs] == [
        ("a", "event:a", None),
        ("b", "event:b", '{"exact": {"type": "x"}}'),
    ]
    deliveries = [msg("event:a", b"e1"), msg("event:b", b"e1")]
    assert run(store.publish("github", "src\n1", deliveries)) is True
    assert run(store.publish("github", "src\n1", deliveries)) is False
    assert run(store.publish("other", "src\n1", [])) is True  # topics are separate
    got = run(store.claim("event:a", "w", 10, lease=30)) + run(
        store.claim("event:b", "w", 10, lease=30)
    )
    assert [d.body for d in got] == [b"e1", b"e1"]
    # a redeclaration replaces the topic's subscriptions
    run(store.subscribe([SubscriptionInfo("a", "github", "event:a", None)]))
    assert [s.function for s in run(store.subscriptions())] == ["a"]


def test_secrets_are_kept_as_given(store: Store) -> None:
    run(store.put_secret("token", b"\x00sealed\xff"))
    run(store.put_secret("other", b"x"))
    run(store.put_secret("token", b"\x01resealed"))
    assert run(store.secrets(["token"])) == {"token": b"\x01resealed"}
    assert sorted(run(store.secrets())) == ["other", "token"]
    assert run(store.delete_secret("token")) is True
    assert run(store.delete_secret("token")) is False
    assert run(store.secrets(["token"])) == {}


def test_a_store_of_an_older_schema_is_migrated(store_url: str) -> None:
    store = open_store(store_url)
    run(store.put_secret("kept-until-v2", b"x"))
    engine = store.engine
    with engine.transaction(write=True):  # back to how schema version 1 left a store
        engine._exec("DROP TABLE hibana_secrets")  # type: ignore[attr-defined]
        engine._exec("DROP TABLE hibana_subscriptions")  # type: ignore[attr-defined]
        engine._exec("UPDATE hibana_schema SET version = 1")  # type: ignore[attr-defined]
    run(store.enqueue(msg(body=b"from v1")))
    store.close()
    upgraded = open_store(store_url)
    try:
        assert run(upgraded.secrets()) == {}
        assert [d.body for d in run(upgraded.claim("orders", "w", 5, lease=30))] == [b"from v1"]
        with upgraded.engine.transaction(write=False):
            (version,) = upgraded.engine._exec(  # type: ignore[attr-defined]
                "SELECT version FROM hibana_schema"
            ).fetchone()
        assert version == SCHEMA_VERSION
    finally:
        upgraded.close()


def test_a_watcher_hears_enqueues_from_another_connection(
    open_stores: Callable[[], Store],
) -> None:
    import select

    one, two = open_stores(), open_stores()
    watcher = one.watcher()
    assert watcher is not None, "both engines can tell consumers that messages arrived"
    try:
        watcher.drain()
        run(two.enqueue(msg(body=b"wake up")))
        readable, _, _ = select.select([watcher.fileno()], [], [], 10)
        assert readable == [watcher.fileno()]
        assert watcher.drain() is True
    finally:
        watcher.close()


class HalfWay:
    """Holds a PostgreSQL transaction between two of its statements: the first write to
    ``tables`` that a session makes while the hold is on waits at the end of its statement
    (a trigger waits on an advisory lock the test holds), until ``release``."""

    LOCK = 4242

    def __init__(self, postgres_dsn: str, store_url: str, tables: tuple[str, ...]) -> None:
        import psycopg

        self.conn = psycopg.connect(postgres_dsn, autocommit=True)
        self.conn.execute(f'SET search_path TO "{store_url.rsplit("schema=", 1)[1]}"')
        self.conn.execute("CREATE TABLE holding (on_ boolean)")
        self.conn.execute(
            "CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF EXISTS (SELECT 1 FROM holding) THEN PERFORM pg_advisory_xact_lock({self.LOCK}); "
            "END IF; RETURN NULL; END $$"
        )
        for table in tables:
            self.conn.execute(
                f"CREATE TRIGGER hold AFTER INSERT OR UPDATE OR DELETE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION hold()"
            )
        self.conn.execute("INSERT INTO holding VALUES (true)")
        self.conn.execute(f"SELECT pg_advisory_lock({self.LOCK})")

    def wait_held(self) -> None:
        """Return once a transaction waits half way; let the writes after it through."""
        deadline = time.monotonic() + 30
        while not self.conn.execute(
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = %s",
            (self.LOCK,),
        ).fetchone():
            assert time.monotonic() < deadline, "no transaction reached the trigger"
            time.sleep(0.01)
        self.conn.execute("DELETE FROM holding")

    def release(self) -> None:
        self.conn.execute(f"SELECT pg_advisory_unlock({self.LOCK})")
        self.conn.close()


def in_thread(coro: Coroutine[Any, Any, T]) -> tuple[threading.Thread, list[T]]:
    """``coro`` run on a thread of its own (started); its result goes in the list."""
    result: list[T] = []
    thread = threading.Thread(target=lambda: result.append(run(coro)))
    thread.start()
    return thread, result


def test_a_dead_letter_written_while_a_redrive_runs_is_kept(
    pg_store_url: str, postgres_dsn: str
) -> None:
    """PostgreSQL only (SQLite runs one writer at a time): another host dead-letters a
    message while ``hibana queue redrive`` is half way. The redrive copied the dead letters,
    then deleted them, and its delete saw the new one, which it had not copied: lost."""
    dying, redriving = open_store(pg_store_url), open_store(pg_store_url)
    try:
        first, second = run(dying.enqueue_many([msg(body=b"[1]"), msg(body=b"[2]")]))
        one, two = run(dying.claim("orders", "w1", 2, lease=30))
        run(dying.settle(Settle("dead", one.id, one.attempt, error="bad")))
        hold = HalfWay(postgres_dsn, pg_store_url, ("hibana_messages", "hibana_dead"))
        redrive, moved = in_thread(redriving.redrive("orders"))
        hold.wait_held()
        run(dying.settle(Settle("dead", two.id, two.attempt, error="bad")))
        hold.release()
        redrive.join(timeout=30)
        # the second is still a dead letter (it was in neither table), the first moved back
        assert [d.id for d in run(dying.dead_letters("orders"))] == [second.id]
        assert moved == [1]
        (back,) = run(dying.claim("orders", "w1", 5, lease=30))
        assert back.id == first.id
    finally:
        dying.close()
        redriving.close()


def test_a_message_claimed_again_while_it_is_dead_lettered_is_one_or_the_other(
    pg_store_url: str, postgres_dsn: str
) -> None:
    """PostgreSQL only: a message whose lease has run out is dead-lettered by its worker
    while another host claims it. The dead letter was copied, then the message deleted by
    its lease (attempt), which the claim had moved on: it was a dead letter and in flight
    at once, run again, and its next death (or a redrive) failed on the id held twice."""
    dying, claiming = open_store(pg_store_url), open_store(pg_store_url)
    try:
        (sent,) = run(dying.enqueue_many([msg()]))
        (leased,) = run(dying.claim("orders", "w1", 1, lease=0.01))  # run out at once
        hold = HalfWay(postgres_dsn, pg_store_url, ("hibana_messages", "hibana_dead"))
        settle, _ = in_thread(dying.settle(Settle("dead", sent.id, leased.attempt, error="x")))
        hold.wait_held()
        again = run(claiming.claim("orders", "w2", 1, lease=30))
        hold.release()
        settle.join(timeout=30)
        dead = run(claiming.dead_letters("orders"))
        (stats,) = run(claiming.stats())
        # the settlement held the message: the claim passed it by, and it is a dead letter
        assert ([d.id for d in dead], again, stats.in_flight) == ([sent.id], [], 0)
    finally:
        dying.close()
        claiming.close()


def test_a_waiting_startup_run_is_not_made_the_next_slots(store: Store) -> None:
    """``run_on_startup``'s run waited for a worker when the next slot fired: the slot
    took its place, and no run said it was the startup run."""
    from hibana.timers import Schedule
    from hibana.triggers.timer import TimerScheduler, TimerSpec

    now = [1_800_000_000.5]
    spec = TimerSpec("tick", "timer:tick", Schedule("* * * * * *"), run_on_startup=True)
    scheduler = TimerScheduler(store, [spec], report=print, clock=lambda: now[0])
    run(scheduler.start())
    now[0] += 1.0
    run(scheduler.tick())
    got = run(store.claim("timer:tick", "w", 10, lease=30))
    runs = sorted((json.loads(d.body)["on_startup"], json.loads(d.body)["slot"]) for d in got)
    assert runs == [(False, 1_800_000_001.0), (True, 1_800_000_000.5)]
    # and the slots after it still make one wait at most, beside it
    run(store.settle_many([Settle("release", d.id, d.attempt) for d in got]))
    for _ in range(3):
        now[0] += 1.0
        run(scheduler.tick())
    got = run(store.claim("timer:tick", "w", 10, lease=30))
    runs = sorted((json.loads(d.body)["on_startup"], json.loads(d.body)["slot"]) for d in got)
    assert runs == [(False, 1_800_000_004.0), (True, 1_800_000_000.5)]


def test_a_timer_slot_given_back_by_its_worker_waits_as_one_never_taken(store: Store) -> None:
    """A worker that stops (or is throttled) releases the slot it took: the next slot
    takes its place, past due, as it takes a waiting one's. Kept, the released slots of a
    timer throttled run after run would pile up."""
    assert fire(store, "sweep", 1_800_000_000.0, b"0") is True
    (taken,) = run(store.claim("timer:sweep", "w", 10, lease=30))
    run(store.settle(Settle("release", taken.id, taken.attempt)))
    assert fire(store, "sweep", 1_800_000_060.0, b"60") is True
    (s,) = [s for s in run(store.stats()) if s.queue == "timer:sweep"]
    assert (s.ready, s.in_flight) == (1, 0)
    (again,) = run(store.claim("timer:sweep", "w", 10, lease=30))
    assert (again.id, again.attempt, again.body) == (taken.id, 1, b"60 late")


def test_a_host_starting_as_a_slot_comes_fires_it_on_time_not_past_due(
    open_stores: Callable[[], Store],
) -> None:
    """A second host starts a moment after a slot, before the running host has fired it:
    it fires it itself. Nothing was missed, and its run said it was past due."""
    from hibana.timers import Schedule
    from hibana.triggers.timer import TimerScheduler, TimerSpec

    one, two = open_stores(), open_stores()
    now = [1_800_000_000.5]

    def scheduler(store: Store) -> TimerScheduler:
        spec = TimerSpec("tick", "timer:tick", Schedule("* * * * * *"), run_on_startup=False)
        return TimerScheduler(store, [spec], report=print, clock=lambda: now[0])

    running, starting = scheduler(one), scheduler(two)
    run(running.start())
    now[0] = 1_800_000_001.01
    run(running.tick())
    (first,) = run(one.claim("timer:tick", "w", 10, lease=30))
    now[0] = 1_800_000_002.01
    run(starting.start())
    run(running.tick())  # too late: the slot is fired
    (second,) = run(one.claim("timer:tick", "w", 10, lease=30))
    assert [
        (json.loads(d.body)["slot"], json.loads(d.body)["past_due"]) for d in (first, second)
    ] == [
        (1_800_000_001.0, False),
        (1_800_000_002.0, False),
    ]
    run(one.settle_many([Settle("ack", d.id, d.attempt) for d in (first, second)]))
    # a host that starts after slots passed with none fired still says so
    now[0] = 1_800_000_005.01
    run(scheduler(two).start())
    (late,) = run(one.claim("timer:tick", "w", 10, lease=30))
    assert (json.loads(late.body)["slot"], json.loads(late.body)["past_due"]) == (
        1_800_000_005.0,
        True,
    )


def test_a_host_whose_store_fails_as_it_starts_its_timers_runs_each_startup_run_once(
    pg_store_url: str, postgres_dsn: str
) -> None:
    """PostgreSQL only (it can fail one write and not the one before): the first timer's
    startup run was sent, the second timer's missed slot could not be. The host tries its
    start again, and the first timer's startup run was sent again: it ran twice."""
    from hibana.errors import StoreError
    from hibana.timers import Schedule
    from hibana.triggers.timer import TimerScheduler, TimerSpec

    store = open_store(pg_store_url + "&operation_timeout=0.5")
    try:
        now = 1_800_000_060.5
        assert fire(store, "later", 1_800_000_000.0)  # it missed the slots since
        run(store.claim("timer:later", "w", 10, lease=30))
        timers = [
            TimerSpec("first", "timer:first", Schedule("0 0 1 1 *"), run_on_startup=True),
            TimerSpec("later", "timer:later", Schedule("* * * * * *"), run_on_startup=False),
        ]
        scheduler = TimerScheduler(store, timers, report=print, clock=lambda: now)
        hold = HalfWay(postgres_dsn, pg_store_url, ("hibana_timer_fires",))
        try:
            with pytest.raises(StoreError, match="operation_timeout"):
                run(scheduler.start())
        finally:
            hold.release()
        run(scheduler.start())  # the host's store duties try again
        startup = run(store.claim("timer:first", "w", 10, lease=30))
        assert [json.loads(d.body)["on_startup"] for d in startup] == [True]
        (missed,) = run(store.claim("timer:later", "w", 10, lease=30))
        assert json.loads(missed.body)["slot"] == now - 0.5
    finally:
        store.close()


def waiting_on_the_claim(hold: HalfWay, statement: str) -> None:
    """Return once a session runs ``statement`` and waits for a lock."""
    deadline = time.monotonic() + 30
    while not hold.conn.execute(
        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
        (statement + "%",),
    ).fetchone():
        assert time.monotonic() < deadline, f"no session waits in {statement!r}"
        time.sleep(0.01)


def test_a_slot_claimed_while_the_next_fires_is_run_and_the_next_waits(
    pg_store_url: str, postgres_dsn: str
) -> None:
    """PostgreSQL only (SQLite runs one writer at a time): a worker's claim of the waiting
    slot is half way when the next slot fires. The fire's replacing update waits for the
    claim's lock, sees the row leased once it is let go, and sends its own message."""
    firing, claiming = open_store(pg_store_url), open_store(pg_store_url)
    try:
        assert fire(firing, "sweep", 1_800_000_000.0, b"0")
        hold = HalfWay(postgres_dsn, pg_store_url, ("hibana_messages",))
        claim, claimed = in_thread(claiming.claim("timer:sweep", "w", 10, lease=30))
        hold.wait_held()  # the claim has leased the row, and not committed
        fired, _ = in_thread(
            firing.fire_timer("sweep", 1_800_000_060.0, msg("timer:sweep", b"60"), b"60 late")
        )
        waiting_on_the_claim(hold, "UPDATE hibana_messages SET body")
        hold.release()
        claim.join(timeout=30)
        fired.join(timeout=30)
        assert [d.body for d in claimed[0]] == [b"0"]
        assert [d.body for d in run(firing.claim("timer:sweep", "w", 10, lease=30))] == [b"60"]
    finally:
        firing.close()
        claiming.close()


def test_a_startup_run_waiting_is_the_next_host_starts_too(
    open_stores: Callable[[], Store],
) -> None:
    """A startup run given back by its worker (its host stopped) still waited when the
    host started again, and that start sent one more: two startup runs, back to back. As
    with slots, one waits at most; one being run does not stand for a start after it."""
    from hibana.timers import Schedule
    from hibana.triggers.timer import TimerScheduler, TimerSpec

    one, two = open_stores(), open_stores()

    def start(store: Store) -> None:
        spec = TimerSpec("yearly", "timer:yearly", Schedule("0 0 1 1 *"), run_on_startup=True)
        run(TimerScheduler(store, [spec], report=print, clock=lambda: 1_800_000_000.5).start())

    def startup_runs() -> list[int]:
        got = run(one.claim("timer:yearly", "w", 10, lease=30))
        assert all(json.loads(d.body)["on_startup"] for d in got)
        return [d.id for d in got]

    start(one)
    (taken,) = run(one.claim("timer:yearly", "w", 10, lease=30))
    run(one.settle(Settle("release", taken.id, taken.attempt)))  # its host stops
    start(two)
    start(one)  # two hosts start while it waits: it is their startup run
    assert startup_runs() == [taken.id]
    start(two)  # while it runs: a start after it gets a run of its own
    (after,) = startup_runs()
    assert after != taken.id


def test_a_tick_a_moment_before_the_next_slot_fires_the_one_due(store: Store) -> None:
    """The host's tick came late, a millisecond before the slot after the one due: it took
    that later slot for the latest, fired it early, past due, and skipped the one due."""
    from hibana.timers import Schedule
    from hibana.triggers.timer import TimerScheduler, TimerSpec

    now = [1_800_000_000.5]
    spec = TimerSpec("tick", "timer:tick", Schedule("* * * * * *"), run_on_startup=False)
    scheduler = TimerScheduler(store, [spec], report=print, clock=lambda: now[0])
    run(scheduler.start())
    now[0] = 1_800_000_001.9995
    run(scheduler.tick())
    (due,) = run(store.claim("timer:tick", "w", 10, lease=30))
    assert (json.loads(due.body)["slot"], json.loads(due.body)["past_due"]) == (
        1_800_000_001.0,
        False,
    )
    assert spec.next_slot == 1_800_000_002.0
