"""``max_concurrency`` is the host's, not each worker's: requests reaching different workers
share the permits, wait in arrival order, and a dead worker's permits come back."""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hosts import Host, copy_app, read_jsonl, run_cli


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    return copy_app("shared_limit", tmp_path)


def serve(app_dir: Path, *args: str) -> Iterator[Host]:
    host = Host(app_dir, "--workers", "2", *args).wait_ready()
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture
def host(app_dir: Path) -> Iterator[Host]:
    yield from serve(app_dir, "--concurrency-wait", "20")


def pinned(host: Host, count: int) -> list[tuple[httpx.Client, int]]:
    """``count`` clients of one keep-alive connection each, on both workers, with the pid
    of the worker each one's connection landed on."""
    clients: list[tuple[httpx.Client, int]] = []
    spare: list[httpx.Client] = []
    for _ in range(200):
        client = host.client(limits=httpx.Limits(max_connections=1))
        pid = client.get("/pid").json()["pid"]
        pids = [p for _, p in clients]
        # half the clients on each worker
        if pids.count(pid) < (count + 1) // 2:
            clients.append((client, pid))
            if len(clients) == count:
                for c in spare:
                    c.close()
                return clients
        else:
            spare.append(client)  # kept open, so the next connection may go elsewhere
    raise AssertionError(f"200 connections did not land on 2 workers: {len(clients)} did")


def held_get(client: httpx.Client, released: Path, **query: str) -> httpx.Response:
    """GET /one/60 held until ``released`` exists (60 s at most), however long the checks
    meanwhile take on a busy machine; the client waits for it past that."""
    return client.get("/one/60", params={"until": str(released), **query}, timeout=90)


def overlapping(runs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    runs = sorted(runs, key=lambda r: r["start"])
    return [(a, b) for a, b in itertools.pairwise(runs) if b["start"] < a["end"]]


def test_a_limit_of_one_holds_across_workers(host: Host) -> None:
    clients = pinned(host, 4)
    with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
        calls = [pool.submit(c.get, "/one/0.3") for c, _ in clients for _ in range(2)]
        responses = [f.result() for f in calls]
    assert [r.status_code for r in responses] == [200] * 8  # all waited their turn
    runs = [r.json() for r in responses]
    assert len({r["pid"] for r in runs}) == 2  # both workers ran some
    assert overlapping(runs) == []  # never two at once, wherever they ran


def test_a_sync_functions_limit_holds_across_workers(host: Host) -> None:
    clients = pinned(host, 6)
    with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
        calls = [pool.submit(c.get, "/two-sync/0.2") for c, _ in clients]
        runs = [f.result().json() for f in calls]
    # at no moment were more than two running, host-wide
    for run in runs:
        at_once = [r for r in runs if r["start"] <= run["start"] < r["end"]]
        assert len(at_once) <= 2, at_once
    assert len({r["pid"] for r in runs}) == 2


def last_line(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    line: dict[str, Any] = json.loads(response.text.splitlines()[-1])
    return line


def test_a_streamed_body_holds_the_permit_until_it_ends(host: Host) -> None:
    # the function returns at once; its body takes 0.3 s: the next waits for the body
    clients = pinned(host, 4)
    with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
        calls = [pool.submit(c.get, "/stream/0.3") for c, _ in clients]
        runs = [last_line(f.result()) for f in calls]
    assert len({r["pid"] for r in runs}) == 2
    assert overlapping(runs) == []


def test_a_mount_is_one_function_with_one_limit(host: Host) -> None:
    # the app's paths, its prefix and its root ("/slow", "/slow/") are one function
    names = [f["name"] for f in host.status()["functions"]]
    assert names.count("asgi_slow") == 1
    assert not [n for n in names if n.startswith("asgi_slow_")]
    clients = pinned(host, 4)
    paths = ["/slow/a?s=0.3", "/slow?s=0.3", "/slow/?s=0.3", "/slow/b/c?s=0.3"]
    with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
        calls = [pool.submit(c.get, path) for (c, _), path in zip(clients, paths, strict=True)]
        runs = [last_line(f.result()) for f in calls]
    assert sorted(r["path"] for r in runs) == ["/slow", "/slow/", "/slow/a", "/slow/b/c"]
    assert overlapping(runs) == []  # its body streamed under the one permit, all four


def test_a_request_on_another_worker_gets_429_while_the_permit_is_held(
    app_dir: Path, tmp_path: Path
) -> None:
    released = tmp_path / "released"
    for host in serve(app_dir, "--concurrency-wait", "0.3"):
        (a, pid_a), (b, pid_b) = pinned(host, 2)
        assert pid_a != pid_b
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            # held until the checks are done, however slow a busy machine makes them
            first = pool.submit(held_get, a, released)
            host.wait_inflight(1, "one")
            refused = b.get("/one/0")
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "1"
            assert "function 'one' is at its max_concurrency of 1" in refused.json()["error"]
            released.touch()
            assert first.result().status_code == 200
        # the permit the first worker held is free again for the second
        assert b.get("/one/0").json()["pid"] == pid_b


def two_here_one_there(host: Host) -> tuple[httpx.Client, int, httpx.Client, httpx.Client]:
    """Clients ``a`` and ``c`` on one worker (``a``'s pid), ``b`` on the other."""
    clients = pinned(host, 4)
    a, pid_a = clients[0]
    c = next(client for client, pid in clients[1:] if pid == pid_a)
    b = next(client for client, pid in clients if pid != pid_a)
    return a, pid_a, c, b


def test_waiters_on_different_workers_are_served_in_arrival_order(
    host: Host, tmp_path: Path
) -> None:
    a, _, c, b = two_here_one_there(host)
    released = tmp_path / "released"
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        holder = pool.submit(held_get, a, released, tag="holder")  # until ``other`` waits
        host.wait_inflight(1, "one")
        other = pool.submit(b.get, "/one/0.2?tag=other")  # waits on the other worker
        wait_for_a_waiter(host)
        local = pool.submit(c.get, "/one/0.2?tag=local")  # waits where the permit is
        # time for ``local`` to come in before the permit is given back (status shows
        # the oldest waiter only); one later still waits behind ``other`` all the same
        threading.Timer(1.0, released.touch).start()
        runs = [f.result().json() for f in (holder, other, local)]
    assert [r["tag"] for r in sorted(runs, key=lambda r: r["start"])] == [
        "holder",
        "other",
        "local",
    ]
    assert overlapping(runs) == []


def wait_for_a_waiter(host: Host) -> None:
    deadline = time.monotonic() + 20
    while not host.function_status("one")["oldest_wait_s"]:
        assert time.monotonic() < deadline, "no invocation of one ever waited"
        time.sleep(0.02)


def test_status_shows_how_long_the_oldest_invocation_has_waited(host: Host, tmp_path: Path) -> None:
    (a, _), (b, _) = pinned(host, 2)
    released = tmp_path / "released"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        # held until the checks are done, however long the CLI takes to start
        first = pool.submit(held_get, a, released)
        host.wait_inflight(1, "one")
        second = pool.submit(b.get, "/one/0")
        wait_for_a_waiter(host)
        one = host.function_status("one")
        assert 0 < one["oldest_wait_s"] < 20
        assert one["max_concurrency"] == 1 and one["inflight"] == 1
        table = run_cli("status", "--app", str(host.app_dir))
        assert table.returncode == 0, table.stderr
        row = next(line for line in table.stdout.splitlines() if "│ one " in line)
        cells = [cell.strip() for cell in row.split("│")[1:-1]]
        assert cells[3] == "1/1"  # in flight, of its limit
        assert float(cells[4]) >= 0  # how long the oldest has waited
        released.touch()
        assert first.result().status_code == 200 and second.result().status_code == 200
    one = host.function_status("one")
    assert one["oldest_wait_s"] is None  # no one waits any more


def test_a_worker_that_dies_holding_the_permit_gives_it_back(host: Host, tmp_path: Path) -> None:
    (a, _), (b, pid_b) = pinned(host, 2)
    released = tmp_path / "released"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        # it dies once ``waiting`` waits for its permit
        dying = pool.submit(held_get, a, released, die="1")
        host.wait_inflight(1, "one")
        waiting = pool.submit(b.get, "/one/0")
        wait_for_a_waiter(host)
        released.touch()
        assert dying.result().status_code == 502  # its worker died under it
        served = waiting.result()
    assert served.status_code == 200 and served.json()["pid"] == pid_b
    # and the permit is not held twice over: one more at a time, on either worker
    clients = pinned(host, 2)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = [f.result().json() for f in [pool.submit(c.get, "/one/0.2") for c, _ in clients]]
    assert overlapping(runs) == []


def test_a_request_that_waited_on_a_worker_that_died_gets_503_it_was_not_run(
    host: Host, tmp_path: Path
) -> None:
    a, pid_a, c, b = two_here_one_there(host)
    released = tmp_path / "released"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        # it dies once ``waiter`` waits for its permit
        dying = pool.submit(held_get, a, released, die="1")
        host.wait_inflight(1, "one")
        waiter = pool.submit(c.get, "/one/0?tag=waiter")  # waits where the permit is
        wait_for_a_waiter(host)
        released.touch()
        died, waited = dying.result(), waiter.result()
    assert died.status_code == 502  # it ran: it may or may not have done its work
    assert waited.status_code == 503, waited.text  # it never ran: safe to send again
    assert waited.headers["retry-after"] == "1"
    assert "was not run" in waited.json()["error"]
    assert waited.json()["invocation_id"] == waited.headers["x-invocation-id"]
    # the permit the dead worker held is back: the other worker runs the next one
    again = b.get("/one/0?tag=again")
    assert again.status_code == 200 and again.json()["pid"] != pid_a
    said = host.wait_for_stderr("request.s. of the dead worker")
    assert "1 with 502" in said and "1 with 503 (not run" in said, said


def test_a_queue_functions_limit_holds_across_workers(host: Host, app_dir: Path) -> None:
    with host.client() as client:
        assert client.post("/enqueue/40").status_code == 204
    deadline = time.monotonic() + 60
    while len(runs := read_jsonl(app_dir / "ran.jsonl")) < 40:
        assert time.monotonic() < deadline, f"{len(runs)} of 40 messages ran"
        time.sleep(0.05)
    assert sorted(r["n"] for r in runs) == list(range(40))  # each once
    assert overlapping(runs) == []


def test_a_waiter_whose_client_leaves_is_not_run(host: Host, tmp_path: Path) -> None:
    (a, _), (b, _) = pinned(host, 2)
    released = tmp_path / "released"

    def impatient() -> None:
        # a read timeout: it has connected and sent its request (however long a busy
        # machine takes to connect), and leaves while it waits for the permit
        timeout = httpx.Timeout(30, read=0.5)
        with host.client(timeout=timeout) as client, pytest.raises(httpx.ReadTimeout):
            client.get("/one/50?tag=gone")

    with concurrent.futures.ThreadPoolExecutor(7) as pool:
        # held until they have all left
        holder = pool.submit(held_get, a, released, tag="holder")
        host.wait_inflight(1, "one")
        gave_up = [pool.submit(impatient) for _ in range(6)]  # they wait, then leave
        for f in gave_up:
            f.result()
        released.touch()
        assert holder.result().status_code == 200
    # the next one is served: no 50 s run for a client that left holds the permit (it
    # would wait past the host's --concurrency-wait, and get 429)
    assert b.get("/one/0?tag=next").status_code == 200
    gone = wait_for_invocations(host, "/one/50", 6)
    assert {(x["outcome"], x["cancel_reason"]) for x in gone} == {
        ("cancelled", "client_disconnected")
    }


def wait_for_invocations(host: Host, path: str, count: int) -> list[dict[str, Any]]:
    """The log lines of ``count`` invocations of one at ``path``, once they are all out
    (the workers' log lines reach the host's stdout in their own time)."""
    deadline = time.monotonic() + 30
    while True:
        logs = host.logs()
        lines = [x for x in logs if x.get("msg") == "invocation" and x.get("path") == path]
        if len(lines) >= count or time.monotonic() > deadline:
            assert len(lines) == count, lines
            return lines
        time.sleep(0.05)


def test_at_shutdown_a_waiter_gets_503_and_the_holder_finishes(
    app_dir: Path, tmp_path: Path
) -> None:
    released = tmp_path / "released"
    for host in serve(app_dir, "--concurrency-wait", "20", "--shutdown-timeout", "30"):
        (a, _), (b, _) = pinned(host, 2)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            # held until the waiter has its answer (it ignores the shutdown's cancellation)
            holder = pool.submit(held_get, a, released)
            host.wait_inflight(1, "one")
            waiter = pool.submit(b.get, "/one/0.01")
            wait_for_a_waiter(host)
            host.signal(signal.SIGTERM)
            refused = waiter.result()
            assert refused.status_code == 503  # it never ran: safe to send again elsewhere
            assert refused.headers["retry-after"] == "1"
            assert refused.headers["connection"] == "close"  # as a request arriving now gets
            assert "shutting down" in refused.json()["error"]
            released.touch()
            assert holder.result().status_code == 200  # what runs finishes
        assert host.wait_exit(60) == 0
        (line,) = [x for x in host.logs() if x.get("path") == "/one/0.01"]
        assert (line["outcome"], line["cancel_reason"]) == ("cancelled", "shutdown")


VERSION = """
import asyncio
import os

import hibana

app = hibana.App()


@app.http("/one/{seconds:float}", max_concurrency=LIMIT)
async def one(req, ctx):
    until = req.query.get("until")  # held until this file exists (``seconds`` at most)
    end = asyncio.get_running_loop().time() + req.params["seconds"]
    if until:
        while not os.path.exists(until) and asyncio.get_running_loop().time() < end:
            await asyncio.sleep(0.02)
    else:
        await asyncio.sleep(req.params["seconds"])
    return "VERSION"
"""


def version(name: str, limit: int | None = 1) -> str:
    return VERSION.replace("VERSION", name).replace("LIMIT", str(limit))


def versioned_app(tmp_path: Path, source: str) -> Path:
    """An app folder whose function_app.py is ``source`` (a ``version``)."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(source)
    return app_dir


def test_the_limit_holds_across_a_reload(tmp_path: Path) -> None:
    app_dir = versioned_app(tmp_path, version("v1"))
    released = tmp_path / "released"
    for host in serve(app_dir, "--concurrency-wait", "0.3"):
        with concurrent.futures.ThreadPoolExecutor(1) as pool, host.client() as client:
            # held until the checks are done, however long the reload takes
            old = pool.submit(held_get, client, released)
            host.wait_inflight(1, "one")
            before = host.function_status("one")
            (app_dir / "function_app.py").write_text(version("v2"))
            reloaded = run_cli("reload", "--app", str(app_dir))
            assert reloaded.returncode == 0, reloaded.stderr
            # the new version's workers see the permit the old version's request holds
            with host.client() as fresh:
                refused = fresh.get("/one/0")
            assert refused.status_code == 429, refused.text
            # and status counts what the old version's workers run and ran
            during = host.function_status("one")
            assert during["inflight"] == 1, during
            assert during["invocations"] >= before["invocations"] >= 1
            released.touch()
            assert old.result().text == "v1"
        with host.client() as fresh:
            assert fresh.get("/one/0").text == "v2"  # and get it once it is given back


@pytest.mark.parametrize("new_limit", [3, None], ids=["raised", "dropped"])
def test_a_limit_raised_or_dropped_by_a_reload_lets_in_the_old_versions_waiters(
    tmp_path: Path, new_limit: int | None
) -> None:
    app_dir = versioned_app(tmp_path, version("v1", limit=1))
    released = tmp_path / "released"
    for host in serve(app_dir, "--concurrency-wait", "20"):
        with (
            concurrent.futures.ThreadPoolExecutor(2) as pool,
            host.client() as a,
            host.client() as b,
        ):
            # held until the checks are done, however long the reload takes
            holder = pool.submit(held_get, a, released)
            host.wait_inflight(1, "one")
            waiter = pool.submit(b.get, "/one/0")  # the old version's, behind the holder
            wait_for_a_waiter(host)
            (app_dir / "function_app.py").write_text(version("v2", limit=new_limit))
            reloaded = run_cli("reload", "--app", str(app_dir))
            assert reloaded.returncode == 0, reloaded.stderr
            # the new version's limit (or none) is the host's now: the old waiter is let
            # in under it while the holder still runs, rather than after it (or a 429
            # once its --concurrency-wait is over)
            assert waiter.result().text == "v1"
            with host.client() as fresh:
                assert fresh.get("/one/0").text == "v2"
            assert not holder.done()
            assert host.function_status("one")["max_concurrency"] == new_limit
            released.touch()
            assert holder.result().text == "v1"


def test_a_429_during_a_reload_names_the_limit_in_force(tmp_path: Path) -> None:
    app_dir = versioned_app(tmp_path, version("v1", limit=2))
    released = tmp_path / "released"
    # the waiter's wait must outlast the reload, however slow a busy machine makes it
    for host in serve(app_dir, "--concurrency-wait", "20"):
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            clients = [host.client() for _ in range(3)]
            # held until the checks are done
            holders = [pool.submit(held_get, c, released) for c in clients[:2]]
            host.wait_inflight(2, "one")
            waiter = pool.submit(clients[2].get, "/one/0")  # the old version's, behind them
            wait_for_a_waiter(host)
            (app_dir / "function_app.py").write_text(version("v2", limit=1))
            reloaded = run_cli("reload", "--app", str(app_dir))
            assert reloaded.returncode == 0, reloaded.stderr
            refused = waiter.result()
            assert refused.status_code == 429, refused.text
            # the old worker turns it away under the new version's limit, and says so
            assert "at its max_concurrency of 1;" in refused.json()["error"], refused.text
            released.touch()
            assert [h.result().text for h in holders] == ["v1", "v1"]
            for c in clients:
                c.close()
