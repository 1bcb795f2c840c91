"""A PostgreSQL store that goes away and comes back, under a host: a cluster of the
test's own (tests/pg.py's Cluster), stopped and started; never the machine's server."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.hosts import Host, copy_app, read_jsonl, started
from tests.pg import Cluster, StallingProxy, own_cluster, with_schema


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with own_cluster() as made:
        yield made


def _runs(app_dir: Path, kind: str, n: int) -> list[dict[str, Any]]:
    return read_jsonl(app_dir / "processed.jsonl", kind=kind, n=n)


def _wait(check: Any, what: str, timeout: float = 60, host: Host | None = None) -> Any:
    """``check()``'s first true value; timed out, the failure quotes ``host``'s last lines
    (what it said of the store meanwhile)."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() >= deadline:
            said = "\n".join([*host.stdout_lines[-40:], *host.stderr_lines[-20:]]) if host else ""
            raise AssertionError(f"timed out waiting for {what}\n{said}")
        time.sleep(0.05)
    return value


def _messages_left(dsn: str, schema: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{schema}".hibana_messages').fetchone()
    assert row is not None
    return int(row[0])


def test_a_message_that_ended_while_postgresql_was_away_longer_than_its_lease_runs_once(
    tmp_path: Path, cluster: Cluster
) -> None:
    """Its acknowledgement waits for the store to come back, and is written before the
    worker claims again: it ran once. (It was dropped once the store had not answered for
    the operation timeout; the message's lease had run out, so the worker's next claim
    took it again, and it ran a second time.)"""
    app_dir = copy_app("outage", tmp_path)
    url, schema = with_schema(cluster.dsn)
    # the store's operations give up after 2 s (30 by default): an outage of a few
    # seconds outlasts them as a longer one outlasts the default (1 s was too little for
    # a reconnect to a cluster just started on a machine busy with the rest of the suite)
    store = f"{url}&operation_timeout=2"
    for host in started(app_dir, "--workers", "1", "--store", store):
        with host.client() as client:
            assert client.post("/work", json={"n": 1}).status_code == 202
            first = _wait(lambda: _runs(app_dir, "started", 1), "message 1 to start")[0]
            cluster.stop()
            (app_dir / "go").touch()
            _wait(lambda: _runs(app_dir, "ended", 1), "message 1 to end")
            # away past the lease's end (5 s after the claim), and past the time the host
            # gives an operation (2 s) several times over
            time.sleep(max(first["t"] + 5 + 2 - time.time(), 6))
            cluster.start()
            response = _wait(lambda: _enqueued(client, 2), "an enqueue once it is back", host=host)
            assert response.status_code == 202
            _wait(lambda: _runs(app_dir, "ended", 2), "message 2 to run")
            _wait(lambda: _messages_left(cluster.dsn, schema) == 0, "the queue to be empty")
        errors = [x for x in host.logs() if x.get("level") == "error"]
        assert len(_runs(app_dir, "started", 1)) == 1, errors
        assert len(_runs(app_dir, "started", 2)) == 1
        # nothing was given up: no settlement failed
        assert not [x for x in errors if "cannot settle" in x.get("msg", "")], errors


def test_another_host_leaves_a_message_whose_lease_ran_out_in_an_outage_to_its_owner(
    tmp_path: Path, cluster: Cluster
) -> None:
    """PostgreSQL restarts after a message's lease ran out, its function having ended
    meanwhile; its host (behind a proxy here) reaches the server a little after another
    host does. The other host takes new messages, not that one: its owner writes the
    acknowledgement it held, and it ran once. (The other host claimed it as soon as it
    reconnected, and ran it a second time.)"""
    app_dir = copy_app("outage", tmp_path)
    url, schema = with_schema(cluster.dsn)
    # a fence longer than the test's slowest turn: with the default 10 s, on a loaded
    # machine the owner, held off until message 2 ran, was sometimes later than that
    store = f"{url}&operation_timeout=1&lease_grace=60"
    proxy = StallingProxy("127.0.0.1", cluster.port)
    try:
        for owner in started(app_dir, "--workers", "1", "--store", proxy.url(store)):
            with owner.client() as client:
                assert client.post("/work", json={"n": 1}).status_code == 202
            first = _wait(lambda: _runs(app_dir, "started", 1), "message 1 to start")[0]
            other = Host(app_dir, "--workers", "1", "--store", store).wait_ready()
            try:
                cluster.stop()
                proxy.refusing.set()  # the owner does not reach the server once it is back
                proxy.cut()
                (app_dir / "go").touch()
                _wait(lambda: _runs(app_dir, "ended", 1), "message 1 to end")
                time.sleep(max(first["t"] + 5 + 1 - time.time(), 0))  # past its lease
                cluster.start()
                with other.client() as client:
                    _wait(lambda: _enqueued(client, 2), "an enqueue once it is back", host=other)
                # the other host claims again (and before, it would have taken message 1)
                _wait(lambda: _runs(app_dir, "ended", 2), "message 2 to run")
                proxy.refusing.clear()
                _wait(lambda: _messages_left(cluster.dsn, schema) == 0, "the queue to be empty")
            finally:
                other.stop()
            runs = _runs(app_dir, "started", 1)
            assert [r["pid"] for r in runs] == [first["pid"]], runs
    finally:
        proxy.close()


def test_a_host_told_to_stop_while_postgresql_is_away_stops_in_its_shutdown_timeout(
    tmp_path: Path, cluster: Cluster
) -> None:
    """SIGTERM with an acknowledgement held (the server is away): the host stops within
    its shutdown_timeout, naming the message it could not settle, which runs again once
    the server is back (at least once). (The worker waited for the store until the
    supervisor killed it, shutdown_timeout and 5 s later, saying nothing of the message.)"""
    app_dir = copy_app("outage", tmp_path)
    url, schema = with_schema(cluster.dsn)
    store = f"{url}&operation_timeout=1"
    args = ("--workers", "1", "--store", store, "--shutdown-timeout", "2")
    host = Host(app_dir, *args).wait_ready()
    try:
        with host.client() as client:
            sent = client.post("/work", json={"n": 1}).json()["id"]
        _wait(lambda: _runs(app_dir, "started", 1), "message 1 to start")
        cluster.stop()
        (app_dir / "go").touch()
        _wait(lambda: _runs(app_dir, "ended", 1), "message 1 to end")
        host.signal(signal.SIGTERM)
        assert host.wait_exit(60) == 0
    finally:
        host.stop()
    assert not [x for x in host.stderr_lines if "did not stop in time" in x], host.stderr_lines
    said = [x for x in host.logs() if "settlements the store has not taken" in x.get("msg", "")]
    assert [x["message_ids"] for x in said] == [[sent]], host.logs()
    cluster.start()
    for _ in started(app_dir, *args):
        _wait(lambda: len(_runs(app_dir, "ended", 1)) == 2, "message 1 to run again")
        _wait(lambda: _messages_left(cluster.dsn, schema) == 0, "the queue to be empty")
    assert [r["attempt"] for r in _runs(app_dir, "started", 1)] == [1, 2]


#: A host whose one worker retires once idle for 2 s (scale-in): new workers cannot
#: start while the server is away (they open the store as they start), a reload's cannot.
_SCALING_IN = ("--min-instances", "0", "--max-instances", "1", "--idle-timeout", "2")


def _retiring_with_a_held_acknowledgement(app_dir: Path, host: Host, cluster: Cluster) -> int:
    """Message 1 ends while the server is away (its acknowledgement is held), and the
    worker holding it, idle, retires (scale-in) and says it waits for the store to take
    it. Returns the message's id."""
    with host.client() as client:
        sent = int(client.post("/work", json={"n": 1}).json()["id"])
    _wait(lambda: _runs(app_dir, "started", 1), "message 1 to start")
    cluster.stop()
    (app_dir / "go").touch()
    _wait(lambda: _runs(app_dir, "ended", 1), "message 1 to end")
    waiting = _wait(
        lambda: [x for x in host.logs() if "before this worker exits" in x.get("msg", "")],
        "its worker to retire, waiting for the store",
    )
    assert [x["message_ids"] for x in waiting] == [[sent]], waiting
    return sent


def _unsettled(host: Host) -> list[list[int]]:
    """The message_ids of each 'stopping with settlements the store has not taken'."""
    said = [x for x in host.logs() if "settlements the store has not taken" in x.get("msg", "")]
    return [x["message_ids"] for x in said]


def test_a_retiring_worker_told_to_stop_while_postgresql_is_away_stops_in_time(
    tmp_path: Path, cluster: Cluster
) -> None:
    """A worker retiring (scale-in) with an acknowledgement the server (away) has not
    taken is told to stop (SIGTERM to the host): it stops within the shutdown_timeout,
    naming the message. (Its drain had begun with no deadline: it waited for the store
    until the supervisor killed it, saying nothing of the message.)"""
    app_dir = copy_app("outage", tmp_path)
    url, _ = with_schema(cluster.dsn)
    store = f"{url}&operation_timeout=1"
    # its retiring gives its work 17 s (the longest timeout, 10 s, cancel_grace, 2 s)
    host = Host(app_dir, *_SCALING_IN, "--store", store, "--shutdown-timeout", "2").wait_ready()
    try:
        sent = _retiring_with_a_held_acknowledgement(app_dir, host, cluster)
        host.signal(signal.SIGTERM)
        assert host.wait_exit(60) == 0
    finally:
        host.stop()
    assert not [x for x in host.stderr_lines if "did not stop in time" in x], host.stderr_lines
    assert _unsettled(host) == [[sent]], host.logs()


def test_a_retiring_worker_stops_waiting_for_postgresql_when_its_work_is_due(
    tmp_path: Path, cluster: Cluster
) -> None:
    """A worker retiring (scale-in) with an acknowledgement the server (away) has not
    taken exits once the time it gives its work to finish is over (the longest function
    timeout, cancel_grace and 2 s), naming the message, though the server is still away;
    the message runs again once it is back. (It waited for the store as long as the
    server was away.)"""
    app_dir = copy_app("outage", tmp_path)
    url, schema = with_schema(cluster.dsn)
    store = f"{url}&operation_timeout=1"
    for host in started(app_dir, *_SCALING_IN, "--store", store, "--cancel-grace", "1"):
        sent = _retiring_with_a_held_acknowledgement(app_dir, host, cluster)

        def exited(host: Host = host) -> bool:
            return not host.worker_pids()

        _wait(exited, "the retiring worker to exit")
        assert _unsettled(host) == [[sent]], host.logs()
        cluster.start()
        with host.client() as client:  # a worker again, to run it
            _wait(lambda: _enqueued(client, 2), "an enqueue once the server is back")
        _wait(lambda: len(_runs(app_dir, "ended", 1)) == 2, "message 1 to run again")
        _wait(lambda: _messages_left(cluster.dsn, schema) == 0, "the queue to be empty")
    assert [r["attempt"] for r in _runs(app_dir, "started", 1)] == [1, 2]


def test_a_lease_renewed_while_postgresql_is_away_is_written_once_when_it_is_back(
    tmp_path: Path, cluster: Cluster
) -> None:
    """A function that runs on through an outage has its lease renewed every 2.5 s (its
    lease is 5 s): the renewal the store could not take is held, and no other is asked
    for behind it; once the server is back, one transaction renews the lease once. (One
    renewal was held per 2.5 s of the outage, and all were written at once.)"""
    app_dir = copy_app("outage", tmp_path)
    url, schema = with_schema(cluster.dsn)
    store = f"{url}&operation_timeout=1"
    # the function runs past its timeout (5 s): its lease is renewed while it does
    args = ("--workers", "1", "--store", store, "--cancel-grace", "120")
    for host in started(app_dir, *args):
        _count_renewals(cluster.dsn, schema)
        with host.client() as client:
            assert client.post("/work", json={"n": 1}).status_code == 202
        _wait(lambda: _runs(app_dir, "started", 1), "message 1 to start")
        cluster.stop()
        time.sleep(12)  # four renewals' time, and more
        cluster.start()
        back = _renewals(cluster.dsn, schema)[0]

        def renewed(back: int = back) -> bool:
            return any(tx > back for tx in _renewals(cluster.dsn, schema)[1])

        _wait(renewed, "its lease to be renewed once the server is back")
        (app_dir / "go").touch()
        _wait(lambda: _messages_left(cluster.dsn, schema) == 0, "the queue to be empty")
        written = _renewals(cluster.dsn, schema)[1]
        assert max(written.values()) == 1, written


def test_a_release_whose_commit_is_cut_off_is_not_written_again(
    tmp_path: Path, cluster: Cluster
) -> None:
    """A host that stops releases the message it was running; the server takes longer to
    COMMIT that release than the operation timeout, and the connection is cut meanwhile:
    whether it was released is not known. The release is not written again (another
    worker may have claimed the message meanwhile: a second release would take it from
    that one), the log names the message, and the server's COMMIT, which went through,
    released it once: it waits with its attempt given back."""
    import psycopg

    app_dir = copy_app("outage", tmp_path)
    url, schema = with_schema(cluster.dsn)
    store = f"{url}&operation_timeout=1"
    host = Host(app_dir, "--workers", "1", "--store", store).wait_ready()
    try:
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            # a release (its attempt given back) takes 3 s to commit
            conn.execute(
                f'CREATE FUNCTION "{schema}".slow() RETURNS trigger LANGUAGE plpgsql AS $$ '
                "BEGIN PERFORM pg_sleep(3); RETURN NULL; END $$"
            )
            conn.execute(
                f'CREATE CONSTRAINT TRIGGER slow AFTER UPDATE ON "{schema}".hibana_messages '
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.attempt < OLD.attempt) "
                f'EXECUTE FUNCTION "{schema}".slow()'
            )
        with host.client() as client:
            response = client.post("/work", json={"n": 1, "queue": "give-back"})
            sent = response.json()["id"]
        _wait(lambda: _runs(app_dir, "started", 1), "message 1 to start")
        host.signal(signal.SIGTERM)
        assert host.wait_exit(60) == 0
    finally:
        host.stop()
    said = [x for x in host.logs() if x.get("message_ids") == [sent] and x["level"] == "error"]
    assert len(said) == 1, host.logs()
    assert f"whether message {sent} was released is not known" in said[0]["error"], said

    def stored() -> tuple[int, int] | None:
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            row = conn.execute(
                f'SELECT attempt, leased FROM "{schema}".hibana_messages WHERE id = %s', (sent,)
            ).fetchone()
        return None if row is None or row[1] else (int(row[0]), int(row[1]))

    assert _wait(stored, "the server's COMMIT of the release") == (0, 0)


def _count_renewals(dsn: str, schema: str) -> None:
    """Record, in ``schema``'s table renewals, each renewal of a lease the store writes
    (an update of a leased message that keeps it leased, in the same attempt), with the
    transaction that wrote it."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{schema}".renewals (id BIGINT, tx BIGINT)')
        conn.execute(
            f'CREATE FUNCTION "{schema}".renewed() RETURNS trigger LANGUAGE plpgsql AS $$ '
            f'BEGIN INSERT INTO "{schema}".renewals VALUES (NEW.id, txid_current()); '
            "RETURN NEW; END $$"
        )
        conn.execute(
            f'CREATE TRIGGER renewed AFTER UPDATE ON "{schema}".hibana_messages FOR EACH ROW '
            "WHEN (NEW.attempt = OLD.attempt AND NEW.leased = 1 AND OLD.leased = 1) "
            f'EXECUTE FUNCTION "{schema}".renewed()'
        )


def _renewals(dsn: str, schema: str) -> tuple[int, dict[int, int]]:
    """The server's transaction id now, and how many renewals each transaction wrote."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(f'SELECT tx, count(*) FROM "{schema}".renewals GROUP BY tx')
        written = {int(tx): int(n) for tx, n in rows.fetchall()}
        now = conn.execute("SELECT txid_current()").fetchone()
    assert now is not None
    return int(now[0]), written


def _enqueued(client: Any, n: int) -> Any:
    import httpx

    try:
        response = client.post("/work", json={"n": n}, timeout=10)
    except httpx.TransportError:
        return None
    return response if response.status_code == 202 else None
