"""Several hosts on one PostgreSQL store: they share queues and timers, and a message is
never processed by two of them at once, nor lost."""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import subprocess
import sys
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hibana.store import NewMessage, open_store
from hibana.store.postgres import PostgresEngine
from tests.hosts import Host, copy_app, run_cli, started
from tests.pg import StallingProxy, drop_schema, with_schema
from tests.test_queues import records, run, wait_until
from tests.test_timers import fired


def connections(postgres_dsn: str, name: str, also: str = "") -> set[int]:
    """The backends of the connections named ``name`` (``application_name``; ``also``: a
    further condition on them)."""
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s" + also, (name,)
        ).fetchall()
    return {int(r[0]) for r in rows}


def dropped(postgres_dsn: str, name: str) -> int:
    """How many connections named ``name`` were ended, as a server restarting ends them."""
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        ).fetchall()
    return len(rows)


def test_two_hosts_share_a_queue_with_nothing_processed_twice_or_lost(
    tmp_path: Path, pg_store_url: str
) -> None:
    one, two = copy_app("queues", tmp_path / "one"), copy_app("queues", tmp_path / "two")
    store = open_store(pg_store_url)
    try:
        for _host_a in started(one, "--workers", "1", "--store", pg_store_url):
            for host_b in started(two, "--workers", "1", "--store", pg_store_url):
                assert f"Store: {pg_store_url}" in "\n".join(host_b.stderr_lines)
                sent = run(
                    store.enqueue_many(
                        # 0.1 s each, 20 at a time: 1.5 s for one host alone, time enough
                        # for the other to wake and claim its share on a loaded machine
                        [NewMessage("orders", json.dumps({"sleep": 0.1}).encode())] * 300
                    )
                )

                def done() -> bool:
                    return len(records(one, "order")) + len(records(two, "order")) >= 300

                wait_until(done, timeout=60, what="300 messages processed")
        (stats,) = [s for s in run(store.stats()) if s.queue == "orders"]
    finally:
        store.close()
    processed = Counter(r["id"] for r in records(one, "order") + records(two, "order"))
    assert set(processed) == {s.id for s in sent}
    assert max(processed.values()) == 1
    assert records(one, "order") and records(two, "order"), "both hosts took a share"
    assert (stats.ready, stats.in_flight, stats.dead) == (0, 0, 0)


def test_two_hosts_fire_each_timer_slot_once(tmp_path: Path, pg_store_url: str) -> None:
    one, two = copy_app("timers", tmp_path / "one"), copy_app("timers", tmp_path / "two")
    for _a in started(one, "--workers", "1", "--store", pg_store_url):
        for _b in started(two, "--workers", "1", "--store", pg_store_url):
            wait_until(
                lambda: len(fired(one, "tick")) + len(fired(two, "tick")) >= 4,
                timeout=20,
                what="4 ticks",
            )
    slots = [t["slot"] for t in fired(one, "tick") + fired(two, "tick")]
    assert len(slots) == len(set(slots)), sorted(slots)
    broken = [t["slot"] for t in fired(one, "broken") + fired(two, "broken")]
    assert len(broken) == len(set(broken))


def test_two_hosts_started_at_once_fire_every_slot_once(tmp_path: Path, pg_store_url: str) -> None:
    """Both start their timers on a store where none fired yet, and cross the same slot
    boundaries: each slot runs once, on one host or the other, and none is lost. A slot
    may only be missing where the next one took its message's place, unrun (a worker was
    slow to start): that one says so, past due."""
    one, two = copy_app("timers", tmp_path / "one"), copy_app("timers", tmp_path / "two")
    hosts = [Host(app, "--workers", "1", "--store", pg_store_url) for app in (one, two)]
    try:
        for host in hosts:
            host.wait_ready()

        def ticks() -> list[dict[str, Any]]:
            return sorted(fired(one, "tick") + fired(two, "tick"), key=lambda t: t["slot"])

        wait_until(lambda: len(ticks()) >= 6, timeout=30, what="6 ticks")
    finally:
        for host in hosts:
            host.stop()
    got = [t for t in ticks() if not t["on_startup"]]
    slots = [t["slot"] for t in got]
    assert len(slots) == len(set(slots)), slots
    lost = [
        t["slot"]
        for before, t in itertools.pairwise(got)
        if t["slot"] - before["slot"] > 1 and not t["past_due"]
    ]
    assert not lost, f"slots before {lost} never ran, and the next is not past due: {slots}"


def test_the_host_rides_out_lost_postgresql_connections(
    tmp_path: Path, pg_store_url: str, postgres_dsn: str
) -> None:
    """PostgreSQL restarts or a proxy drops connections: claims, enqueues and timers
    reconnect, and nothing acknowledged is lost."""
    import httpx

    name = f"hibana_{tmp_path.name[-12:]}".replace("-", "_")
    url = f"{pg_store_url}&application_name={name}"
    app_dir = copy_app("queues", tmp_path)

    def backends(also: str = "") -> set[int]:
        return connections(postgres_dsn, name, also)

    def drop_connections() -> int:
        return dropped(postgres_dsn, name)

    for host in started(app_dir, "--workers", "1", "--store", url):
        with host.client() as client:
            first = client.post("/orders", json={"data": {"n": 1}})
            assert first.status_code == 202
            wait_until(lambda: len(records(app_dir, "order")) == 1)
            before = backends()
            assert drop_connections() >= 2  # the worker's and the host's
            # the next enqueue meets a dead connection: it is made again and the transaction
            # run once more (its COMMIT had not gone out), so no request fails, none is lost
            sent = []
            for i in range(2, 12):
                r = client.post("/orders", json={"data": {"n": i}})
                assert r.status_code == 202, r.text
                sent.append(i)
            expected = {1, *sent}

            def all_processed(expected: set[int] = expected) -> bool:
                return {r["data"]["n"] for r in records(app_dir, "order")} >= expected

            wait_until(
                all_processed,
                timeout=30,
                what="the messages enqueued after the connections dropped",
            )
            assert httpx.get(host.admin_url + "/status").status_code == 200
            # new connections, not the old ones: the engine reconnected
            after = backends()
            assert after and not after & before

            def listening(before: set[int] = before) -> set[int]:
                return backends(" AND query LIKE 'LISTEN %%'") - before

            # and the worker listens again for enqueues (else its idle loops poll for good)
            wait_until(lambda: bool(listening()), timeout=30, what="a new LISTEN connection")


def test_a_host_scaled_to_zero_listens_again_once_postgresql_dropped_its_connections(
    tmp_path: Path, pg_store_url: str, postgres_dsn: str
) -> None:
    """With no worker running, the host LISTENs for enqueues to start one at once. Its
    LISTEN connection dropped (PostgreSQL restarted), it never listened again: each
    message waited for its next look at the queues, a second later, for good."""
    name = f"hibana_{tmp_path.name[-12:]}".replace("-", "_")

    def listening() -> set[int]:
        return connections(postgres_dsn, name, " AND query LIKE 'LISTEN %%'")

    app_dir = copy_app("queues", tmp_path)
    url = f"{pg_store_url}&application_name={name}"
    for host in started(app_dir, "--min-instances", "0", "--store", url):
        before = wait_until(listening, timeout=30, what="the host's LISTEN connection")
        dropped(postgres_dsn, name)

        def again(before: set[int] = before) -> set[int]:
            return listening() - before

        wait_until(again, timeout=30, what="a new LISTEN connection")
        assert host.worker_pids() == set()  # the host's own, no worker's
        with host.client() as client:
            assert client.post("/orders", json={"data": {"n": 1}}).status_code == 202
        wait_until(lambda: records(app_dir, "order"), timeout=30, what="the message run")


def test_sigterm_ends_the_host_when_postgresql_stops_answering(
    tmp_path: Path, pg_store_url: str, postgres_dsn: str
) -> None:
    """A server that stops answering (a partition: no reset, no error) holds the host's
    last writes for ever: it exits all the same, saying what it left."""
    import httpx
    import psycopg

    name = f"hibana_{tmp_path.name[-12:]}".replace("-", "_")
    target = urllib.parse.urlsplit(pg_store_url)
    proxy = StallingProxy(target.hostname or "127.0.0.1", target.port or 5432)
    app_dir = copy_app("queues", tmp_path)
    url = f"{proxy.url(pg_store_url)}&application_name={name}"
    gen = started(app_dir, "--workers", "1", "--store", url, "--shutdown-timeout", "1")
    host = next(gen)
    try:
        with host.client() as client:
            assert client.post("/orders", json={"data": {"n": 1}}).status_code == 202
            wait_until(lambda: len(records(app_dir, "order")) == 1)
            proxy.stalled.set()
            # an enqueue, and the host's own work, now wait on a server that says nothing
            with contextlib.suppress(httpx.TimeoutException):
                client.post("/orders", json={"data": {"n": 2}}, timeout=1)
        host.signal(signal.SIGTERM)
        assert host.wait_exit(30) == 0
        assert host.wait_for_stderr(r"did not answer within 5s; exiting without what was left")
    finally:
        gen.close()
        proxy.close()
        # the server's side of what the host left mid-transaction, or the schema's drop
        # would wait on its locks
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (name,),
            )


def test_a_store_url_passes_libpq_parameters_with_spaces_as_given(pg_store_url: str) -> None:
    # libpq reads no "+" as a space: the URL's %20 must reach it as one
    url = f"{pg_store_url}&options=-c%20statement_timeout%3D4321&application_name=my%20app"
    engine = PostgresEngine(url)
    engine.connect()
    try:
        settings = engine.conn.execute(
            "SELECT current_setting('statement_timeout'), current_setting('application_name')"
        ).fetchone()
        assert settings == ("4321ms", "my app")
    finally:
        engine.close()


def test_reading_a_store_no_host_has_made_leaves_nothing_behind(
    pg_store_url: str, postgres_dsn: str
) -> None:
    # a mistyped schema: named, and not created with its tables as a side effect
    import psycopg

    schema = urllib.parse.parse_qs(urllib.parse.urlsplit(pg_store_url).query)["schema"][0]
    result = run_cli("queue", "stats", "--store", pg_store_url)
    assert result.returncode == 1
    assert f"no host has used it yet (schema {schema!r} has no hibana tables)" in result.stderr
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        found = conn.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchone()
    assert found is None
    # what writes (a secret set before the first start) still makes it
    made = subprocess.run(
        [sys.executable, "-m", "hibana", "secrets", "set", "token", "--store", pg_store_url],
        input=b"s3cret-value",
        capture_output=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    assert run_cli("queue", "stats", "--store", pg_store_url).returncode == 0


@pytest.fixture
def store_behind(postgres_dsn: str | None) -> Iterator[str]:
    """A store URL on a PostgreSQL whose clock is a minute behind this machine's: its
    tables go in a schema of their own, first on the search path, whose clock_timestamp()
    (the engine's clock) is the server's less 60 s."""
    import psycopg

    if postgres_dsn is None:  # as pg_store_url: only with no server at all, never in CI
        pytest.skip("NO POSTGRESQL: set HIBANA_TEST_POSTGRES_DSN or install initdb/pg_ctl")
    _, schema = with_schema(postgres_dsn)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(
            f'CREATE FUNCTION "{schema}".clock_timestamp() RETURNS timestamptz LANGUAGE sql '
            "AS $$ SELECT pg_catalog.clock_timestamp() - interval '60 seconds' $$"
        )
    options = urllib.parse.quote(f"-c search_path={schema},pg_catalog")
    yield f"{postgres_dsn}{'&' if '?' in postgres_dsn else '?'}options={options}"
    drop_schema(postgres_dsn, schema)


def test_a_host_whose_clock_is_ahead_of_postgresqls_runs_its_messages(
    tmp_path: Path, store_behind: str
) -> None:
    """The deadline was the lease's end on the database's clock less the time on the
    host's: a host a lease (3 s here) or more ahead timed out every message at once,
    unrun, and dead-lettered it; its latency was the skew."""
    app_dir = copy_app("queues", tmp_path)
    store = open_store(store_behind)
    try:
        for host in started(app_dir, "--workers", "1", "--store", store_behind):
            (sent,) = run(store.enqueue_many([NewMessage("orders", b'{"n": 1}')]))
            line = host.wait_for_log(function="on_order", message_id=sent.id, timeout=20)
            assert (line["outcome"], line["attempt"]) == ("ok", 1), line
            assert line["queue_latency_ms"] < 30_000  # not the minute between the clocks
    finally:
        store.close()
    assert [(r["id"], r["attempt"]) for r in records(app_dir, "order")] == [(sent.id, 1)]
