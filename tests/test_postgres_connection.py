"""The PostgreSQL store's connection going wrong under a running store: one that drops (a
restart, an ended backend) is made again and the transaction run once more, unless its
COMMIT had gone out."""

from __future__ import annotations

import urllib.parse

import psycopg
import pytest

from hibana.errors import StoreError
from hibana.store import NewMessage, Settle, Store, open_store
from hibana.store.postgres import PostgresEngine
from tests.test_queues import run, wait_until


def schema_of(url: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["schema"][0]


def backend(store: Store) -> int:
    """The pid of the server process behind the store's connection."""
    assert isinstance(store.engine, PostgresEngine)
    return int(store.engine.conn.info.backend_pid)


def gone(dsn: str, pid: int) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return found is None


def end_backend(dsn: str, pid: int) -> None:
    """End a backend as an administrator (or a restart) would, and wait until it has gone."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    wait_until(lambda: gone(dsn, pid), what=f"backend {pid} to end")


def ready(store: Store, queue: str) -> int:
    return sum(s.ready for s in run(store.stats()) if s.queue == queue)


def test_a_connection_ended_between_operations_is_made_again_with_nothing_lost(
    pg_store_url: str, postgres_dsn: str
) -> None:
    store = open_store(pg_store_url)
    try:
        sent = run(store.enqueue_many([NewMessage("orders", b"%d" % i) for i in range(3)]))

        ended_pids: list[int] = []

        def ended() -> None:
            ended_pids.append(backend(store))
            end_backend(postgres_dsn, ended_pids[-1])

        # each kind of batch meets a dead connection first: a write, a read, a claim, a settle
        ended()
        sent += run(store.enqueue_many([NewMessage("orders", b"%d" % i) for i in range(3, 5)]))
        ended()
        assert ready(store, "orders") == 5
        ended()
        claimed = run(store.claim("orders", "w1", 10, lease=30))
        assert sorted(d.id for d in claimed) == sorted(e.id for e in sent)
        ended()
        run(store.settle_many([Settle("ack", d.id, d.attempt) for d in claimed]))
        ended()
        assert [s for s in run(store.stats()) if s.queue == "orders"] == []
        assert backend(store) not in ended_pids  # a new connection each time
    finally:
        store.close()


def test_a_connection_lost_during_its_commit_fails_and_is_not_run_again(
    pg_store_url: str, postgres_dsn: str
) -> None:
    # A COMMIT that went out may have happened: running the batch again could write it
    # twice. Here the server ends the backend in the middle of committing, once.
    store = open_store(pg_store_url)
    schema = schema_of(pg_store_url)
    try:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            conn.execute("CREATE SEQUENCE test_commits")
            conn.execute(
                "CREATE FUNCTION test_end_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                f" IF nextval('\"{schema}\".test_commits') = 1 THEN"
                " PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(30);"
                " END IF; RETURN NULL; END $$"
            )
            conn.execute(
                "CREATE CONSTRAINT TRIGGER test_end_once AFTER INSERT ON hibana_messages"
                " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_end_once()"
            )
        with pytest.raises(StoreError) as err:
            run(store.enqueue(NewMessage("orders", b"first")))
        message = str(err.value)
        assert f"the store {store.display} lost its connection during a COMMIT" in message
        assert "may or may not have been stored" in message
        assert "terminating connection due to administrator command" in message
        run(store.enqueue(NewMessage("orders", b"second")))  # on a new connection
        (only,) = run(store.claim("orders", "w1", 10, lease=30))
        assert only.body == b"second"  # the first was not run again (here it did not commit)
    finally:
        store.close()
