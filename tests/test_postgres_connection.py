"""The PostgreSQL store's connection going wrong under a running store: one that drops (a
restart, an ended backend) is made again and the transaction run once more, unless its
COMMIT had gone out; one that stops answering (a partition, a proxy that holds the bytes)
is cut after the URL's operation_timeout, and the next operation makes a new one."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Iterator

import psycopg
import pytest

from hibana.errors import StoreError
from hibana.store import NewMessage, Settle, Store, engine_for, open_store
from hibana.store.postgres import PostgresEngine
from tests.pg import StallingProxy, drop_schema
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


@pytest.fixture
def ended_by_name(pg_store_url: str, postgres_dsn: str) -> Iterator[str]:
    """An application_name for the test's store connections; whatever of them is left
    (a backend a cut connection left in a transaction) is ended afterwards, or the
    schema's drop would wait on its locks."""
    name = f"hibana_{schema_of(pg_store_url)}"
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        )


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


def test_an_operation_on_a_stalled_connection_is_cut_and_the_next_one_reconnects(
    pg_store_url: str, ended_by_name: str
) -> None:
    target = urllib.parse.urlsplit(pg_store_url)
    open_store(pg_store_url).close()  # made directly: the migration is not the point here
    proxy = StallingProxy(target.hostname or "127.0.0.1", target.port or 5432)
    url = f"{proxy.url(pg_store_url)}&operation_timeout=5&password=s3cret"
    store = Store(engine_for(f"{url}&application_name={ended_by_name}"))
    store.open()
    try:
        run(store.enqueue(NewMessage("orders", b"before")))
        before = backend(store)
        proxy.stalled.set()  # the server's bytes go nowhere now; nothing says so

        async def enqueue_stalled() -> None:
            # without a bound of its own it waits for ever (the proxy ACKs every byte)
            await asyncio.wait_for(store.enqueue(NewMessage("orders", b"stalled")), 60)

        with pytest.raises(StoreError) as err:
            run(enqueue_stalled())
        message = str(err.value)
        assert message.startswith(f"the store {store.display} did not answer for ")
        assert "password=***" in message and "s3cret" not in message
        assert "(operation_timeout=5s): its connection was cut" in message
        assert "?operation_timeout=SECONDS" in message
        assert "may or may not" not in message  # it was cut before its COMMIT
        proxy.stalled.clear()
        # the next operation makes a new connection; what was cut did not happen
        (only,) = run(store.claim("orders", "w1", 10, lease=30))
        assert only.body == b"before"
        assert backend(store) != before
    finally:
        store.close(5)
        proxy.close()


def test_an_enqueue_waits_out_a_server_that_is_away_for_a_while(
    pg_store_url: str, ended_by_name: str
) -> None:
    """A restart, a failover: the connection drops and, for a while, no new one can be
    made. The one reconnect was made at once, and failed: every enqueue then (an HTTP
    function's ctx.enqueue, answered 500) failed too. It is tried again, ever less often,
    within the operation timeout."""
    import threading

    target = urllib.parse.urlsplit(pg_store_url)
    open_store(pg_store_url).close()  # made directly: the migration is not the point here
    proxy = StallingProxy(target.hostname or "127.0.0.1", target.port or 5432)
    store = open_store(f"{proxy.url(pg_store_url)}&application_name={ended_by_name}")
    try:
        run(store.enqueue(NewMessage("orders", b"before")))
        proxy.refusing.set()  # the server goes away: its connections end, none is taken
        proxy.cut()
        outcome: list[object] = []

        def enqueue() -> None:
            try:
                outcome.append(run(store.enqueue(NewMessage("orders", b"while away"))))
            except StoreError as exc:
                outcome.append(exc)

        sending = threading.Thread(target=enqueue)
        sending.start()
        wait_until(lambda: proxy.refused >= 2 or outcome, what="two refused reconnects")
        proxy.refusing.clear()  # and it is back
        sending.join(timeout=60)
        (sent,) = outcome
        assert not isinstance(sent, StoreError), sent
        bodies = sorted(d.body for d in run(store.claim("orders", "w1", 10, lease=30)))
        assert bodies == [b"before", b"while away"]
    finally:
        store.close(5)
        proxy.close()


def test_a_batch_cut_during_its_commit_fails_whole_and_is_not_run_again(
    pg_store_url: str, postgres_dsn: str, ended_by_name: str
) -> None:
    # A COMMIT that waits past operation_timeout, then happens: every operation of its
    # batch is told it may have been stored, and none is run again (each would then be
    # stored twice). The server holds the COMMIT on an advisory lock the test holds.
    schema = schema_of(pg_store_url)
    hold_key, commit_key = (int(schema[2:9], 16) * 2 + i for i in (0, 1))
    store = Store(
        engine_for(f"{pg_store_url}&operation_timeout=5&application_name={ended_by_name}")
    )
    store.open()
    locks = psycopg.connect(postgres_dsn, autocommit=True)
    try:
        locks.execute(f'SET search_path TO "{schema}"')
        locks.execute("CREATE SEQUENCE test_commits")
        # an enqueue to "hold" waits (as it inserts) on the first lock: the writer is busy
        locks.execute(
            "CREATE FUNCTION test_hold() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.queue = 'hold' THEN PERFORM pg_advisory_xact_lock({hold_key}); END IF;"
            " RETURN NULL; END $$"
        )
        locks.execute(
            "CREATE TRIGGER test_hold AFTER INSERT ON hibana_messages"
            " FOR EACH ROW EXECUTE FUNCTION test_hold()"
        )
        # the first commit of "orders" waits (as it commits) on the second
        locks.execute(
            "CREATE FUNCTION test_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.queue = 'orders' AND nextval('\"{schema}\".test_commits') = 1 THEN"
            f" PERFORM pg_advisory_xact_lock({commit_key}); END IF; RETURN NULL; END $$"
        )
        locks.execute(
            "CREATE CONSTRAINT TRIGGER test_commit AFTER INSERT ON hibana_messages"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_commit()"
        )
        locks.execute("SELECT pg_advisory_lock(%s), pg_advisory_lock(%s)", (hold_key, commit_key))

        def waiting_on(key: int) -> list[int]:
            with psycopg.connect(postgres_dsn, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND ((classid::bigint << 32) | objid::bigint) = %s",
                    (key,),
                ).fetchall()
            return [int(r[0]) for r in rows]

        async def scenario() -> list[BaseException | object]:
            hold = asyncio.ensure_future(store.enqueue(NewMessage("hold", b"")))
            await asyncio.to_thread(wait_until, lambda: waiting_on(hold_key), 30, "the hold")
            batch = [
                asyncio.ensure_future(store.enqueue(NewMessage("orders", b"%d" % i)))
                for i in range(2)
            ]
            # both wait behind the hold, so the writer takes them as one batch
            await asyncio.to_thread(wait_until, lambda: store._ops.qsize() == 2, 30, "queued")
            locks.execute("SELECT pg_advisory_unlock(%s)", (hold_key,))
            await hold
            return list(await asyncio.gather(*batch, return_exceptions=True))

        results = run(scenario())
        (committing,) = waiting_on(commit_key)  # the batch's COMMIT, still held
        for result in results:
            assert isinstance(result, StoreError), result
            message = str(result)
            assert "did not answer for" in message and "during its COMMIT" in message
            assert "may or may not have been stored" in message
        locks.execute("SELECT pg_advisory_unlock(%s)", (commit_key,))
        wait_until(lambda: gone(postgres_dsn, committing), what="the held COMMIT to end")
        # it did commit, once: the two are there, not four
        assert ready(store, "orders") == 2
        assert ready(store, "hold") == 1
    finally:
        locks.close()
        store.close(5)


@pytest.mark.parametrize("given", ["soon", "0", "-1", "inf"])
@pytest.mark.parametrize(("name", "default"), [("operation_timeout", 30), ("lease_grace", 10)])
def test_a_store_urls_seconds_that_are_not_seconds_are_refused_naming_them(
    name: str, default: int, given: str
) -> None:
    with pytest.raises(StoreError) as err:
        engine_for(f"postgresql://app@db.internal/app?{name}={given}")
    assert str(err.value) == (
        f"{name}={given!r} in the store URL must be a number of seconds over 0 "
        f"(the default is {default})"
    )


@pytest.mark.parametrize(("given", "grace"), [("", 10.0), ("&lease_grace=45.5", 45.5)])
def test_claims_are_fenced_for_the_urls_lease_grace_after_the_server_started(
    pg_store_url: str, given: str, grace: float
) -> None:
    """The fence was 10 s, fixed: a host that may take longer to reach a server that is
    back (a slow network, a failover) had its messages run again by another host."""
    store = open_store(f"{pg_store_url}{given}")
    try:
        engine = store.engine
        assert isinstance(engine, PostgresEngine)
        (started,) = engine.conn.execute(
            "SELECT extract(epoch from pg_postmaster_start_time())"
        ).fetchone()
        assert engine.fenced_until == pytest.approx(float(started) + grace)
        assert "lease_grace" not in engine.url  # hibana's, not libpq's
    finally:
        store.close()


def test_a_schema_whose_name_is_near_postgresqls_limit_takes_messages(
    postgres_dsn: str,
) -> None:
    """Its NOTIFY channel, ``hibana_`` and the schema's name, was over 63 bytes: every
    enqueue failed, "channel name too long"."""
    import select
    import uuid

    schema = f"t_{uuid.uuid4().hex}".ljust(63, "x")
    sep = "&" if "?" in postgres_dsn else "?"
    url = f"{postgres_dsn}{sep}schema={schema}"
    one, two = open_store(url), open_store(url)
    watcher = one.watcher()
    try:
        assert watcher is not None
        watcher.drain()
        sent = run(two.enqueue(NewMessage("orders", b"{}")))
        readable, _, _ = select.select([watcher.fileno()], [], [], 10)
        assert readable == [watcher.fileno()]
        (got,) = run(one.claim("orders", "w", 1, lease=30))
        assert got.id == sent.id
    finally:
        if watcher is not None:
            watcher.close()
        one.close()
        two.close()
        drop_schema(postgres_dsn, schema)


def test_a_schema_name_postgresql_would_cut_short_is_refused() -> None:
    """PostgreSQL keeps a name's first 63 bytes: two stores named apart would be one."""
    schema = "tenant_" + "a" * 60
    with pytest.raises(StoreError) as err:
        engine_for(f"postgresql://app@db.internal/app?schema={schema}")
    assert str(err.value) == (
        f"schema={schema!r} in the store URL is 67 bytes, and PostgreSQL keeps a name's "
        "first 63 only; name one of at most 63 bytes"
    )


def test_a_transaction_a_silent_host_left_open_is_ended_and_its_message_claimed(
    pg_store_url: str, postgres_dsn: str, ended_by_name: str
) -> None:
    # A host that goes silent in the middle of a transaction (its machine loses power, a
    # partition, `kill -STOP`) kept the rows it had locked until the server's TCP gave up
    # on it, 2 hours by default: every other host's claims stepped over its messages. The
    # server now ends a transaction left idle for the operation timeout.
    silent = Store(
        engine_for(f"{pg_store_url}&operation_timeout=2&application_name={ended_by_name}")
    )
    silent.open()
    other = open_store(pg_store_url)
    try:
        run(other.enqueue(NewMessage("orders", b"only")))
        assert isinstance(silent.engine, PostgresEngine)
        conn = silent.engine.conn
        settings = dict(conn.execute("SELECT name, setting FROM pg_settings").fetchall())
        assert settings["idle_in_transaction_session_timeout"] == "2000"
        assert settings["tcp_keepalives_idle"] == "30"
        conn.execute("BEGIN")
        locked = conn.execute("SELECT id FROM hibana_messages FOR UPDATE").fetchall()
        assert len(locked) == 1
        # from here on it sends nothing, as a host that lost its power
        assert run(other.claim("orders", "w2", 10, lease=30)) == []  # locked: stepped over
        (claimed,) = wait_until(
            lambda: run(other.claim("orders", "w2", 10, lease=30)),
            60,
            "the silent host's transaction to be ended and its message claimed",
        )
        assert claimed.body == b"only"
    finally:
        other.close()
        silent.close(5)


def test_what_the_url_sets_on_the_server_is_kept(pg_store_url: str) -> None:
    options = urllib.parse.quote("-c idle_in_transaction_session_timeout=0")
    store = open_store(f"{pg_store_url}&options={options}")
    try:
        assert isinstance(store.engine, PostgresEngine)
        row = store.engine.conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()
        assert row == ("0",)
    finally:
        store.close()


def test_a_role_that_may_not_create_the_tables_is_told_the_grant(
    pg_store_url: str, postgres_dsn: str
) -> None:
    """It said 'cannot open the store ...: permission denied for schema public', then the
    SQL of the statement over two more lines, and no fix."""
    import uuid

    role = f"hibana_test_{uuid.uuid4().hex[:12]}"
    admin = urllib.parse.urlsplit(postgres_dsn)
    as_role = admin._replace(netloc=f"{role}@{admin.hostname}:{admin.port or 5432}")
    database = admin.path.lstrip("/")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        in_public = urllib.parse.urlunsplit(as_role._replace(query=""))
        with pytest.raises(StoreError) as public:
            open_store(in_public)
        assert str(public.value) == (
            f"the store {in_public} cannot be made: the role {role!r} may not create "
            "hibana's tables (permission denied for schema public); as an owner of the "
            f'database, run GRANT CREATE ON SCHEMA public TO "{role}", or start a host once '
            "with a role that may"
        )
        in_schema = urllib.parse.urlunsplit(as_role._replace(query="schema=hibana_x"))
        with pytest.raises(StoreError) as schema:
            open_store(in_schema)
        assert str(schema.value) == (
            f"the store {in_schema} cannot be made: the role {role!r} may not create "
            f"hibana's tables (permission denied for database {database}); as an owner of "
            f'the database, run GRANT CREATE ON DATABASE "{database}" TO "{role}", or start '
            "a host once with a role that may"
        )
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP ROLE "{role}"')


def test_a_role_that_may_only_read_and_write_the_tables_opens_the_store(
    pg_store_url: str, postgres_dsn: str
) -> None:
    """A role given the store's tables (USAGE on its schema; SELECT, INSERT, UPDATE, DELETE)
    and not CREATE, as an app's role is where the owner migrates, was told 'the store ...
    cannot be made: ... may not create hibana's tables (permission denied for database
    ...)', on a store that was made already: each open ran CREATE ... IF NOT EXISTS."""
    import uuid

    open_store(pg_store_url).close()  # made, as its owner
    schema = urllib.parse.parse_qs(urllib.parse.urlsplit(pg_store_url).query)["schema"][0]
    role = f"hibana_test_{uuid.uuid4().hex[:12]}"
    admin = urllib.parse.urlsplit(pg_store_url)
    as_role = urllib.parse.urlunsplit(
        admin._replace(netloc=f"{role}@{admin.hostname}:{admin.port or 5432}")
    )
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        conn.execute(
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"'
        )
        conn.execute(f'GRANT USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{role}"')
    try:
        for create in (False, True):
            store = open_store(as_role, create=create)
            try:
                assert run(store.stats()) == []
                run(store.put_secret("api-token", b"sealed"))
                assert run(store.secrets()) == {"api-token": b"sealed"}
            finally:
                store.close()
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')
