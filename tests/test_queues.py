"""Queue functions end to end: the real host, its SQLite store, the CLI, and kill -9."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from hibana.errors import StoreError
from hibana.store import NewMessage, QueueInfo, Store, open_store
from tests.hosts import Host, copy_app, read_jsonl, run_cli, started

T = TypeVar("T")


def records(app_dir: Path, kind: str | None = None) -> list[dict[str, Any]]:
    return read_jsonl(app_dir / "processed.jsonl", kind=kind)


def wait_until(check: Callable[[], T], timeout: float = 20, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.05)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    return copy_app("queues", tmp_path)


@pytest.fixture
def host(app_dir: Path) -> Iterator[Host]:
    yield from started(app_dir, "--workers", "1")


@pytest.fixture
def store(app_dir: Path) -> Iterator[Store]:
    opened = open_store(None, app_dir)
    yield opened
    opened.close()


def test_a_message_enqueued_over_http_is_processed_in_the_same_trace(
    host: Host, app_dir: Path
) -> None:
    caller = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {
        "traceparent": f"00-{caller}-00f067aa0ba902b7-01",
        "tracestate": "rojo=00f0,congo=t61",
    }
    with host.client() as client:
        r = client.post("/orders", json={"data": {"n": 1}}, headers=headers)
    assert r.status_code == 202
    sent = r.json()
    assert sent["duplicate"] is False and sent["trace_id"] == caller
    (rec,) = wait_until(lambda: records(app_dir, "order"), what="the order to be processed")
    assert rec["id"] == sent["id"] and rec["data"] == {"n": 1} and rec["attempt"] == 1
    assert rec["trace_id"] == sent["trace_id"]
    assert rec["tracestate"] == "rojo=00f0,congo=t61"  # W3C: passed on with the traceparent
    line = host.wait_for_log(function="on_order", outcome="ok")
    producer = host.wait_for_log(msg="invocation", function="accept", trace_id=sent["trace_id"])
    # the consumer's parent is the producer's own span (its log line), not one never logged
    assert line["trace_id"] == sent["trace_id"]
    assert line["parent_span_id"] == producer["span_id"]
    assert line["queue"] == "orders" and line["message_id"] == sent["id"]
    assert line["queue_latency_ms"] >= 0


def test_sync_functions_enqueue_with_enqueue_sync(host: Host, app_dir: Path) -> None:
    with host.client() as client:
        r = client.post("/orders-sync", json={"from": "sync"})
    assert r.status_code == 200
    wait_until(lambda: [x for x in records(app_dir, "order") if x["data"] == {"from": "sync"}])


def test_a_failing_message_is_retried_until_it_succeeds(host: Host, app_dir: Path) -> None:
    with host.client() as client:
        sent = client.post("/orders", json={"data": {"fail_until": 2}}).json()
    wait_until(lambda: len(records(app_dir, "order")) == 3, what="three attempts")
    attempts = records(app_dir, "order")
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["ctx_attempt"] for a in attempts] == [1, 2, 3]
    assert attempts[2]["errors"] == [
        "RuntimeError: failing attempt 1 on purpose",
        "RuntimeError: failing attempt 2 on purpose",
    ]
    host.wait_for_log(function="on_order", outcome="ok", message_id=sent["id"], attempt=3)
    failed = host.wait_for_log(function="on_order", outcome="error", attempt=1)
    assert failed["retry_in_s"] == 0.2
    on_order = host.function_status("on_order")
    assert (on_order["invocations"], on_order["errors"]) == (3, 2)
    # hibana status shows the queues too (refreshed every 2 s)
    queues = wait_until(lambda: host.status()["queues"], timeout=10)
    assert {q["queue"] for q in queues} == {
        "orders",
        "batches",
        "poison",
        "warehouse-a",
        "warehouse-b",
    }
    shown = run_cli("status", "--app", str(app_dir))
    assert shown.returncode == 0 and "dead letters" in shown.stdout and "orders" in shown.stdout
    functions = [f["name"] for f in host.status()["functions"]]
    # piped (no terminal width): every name whole, on its row
    piped = run_cli("status", "--app", str(app_dir), columns=None)
    rows = {line.split("│")[1].strip() for line in piped.stdout.splitlines() if "│" in line}
    assert set(functions) <= rows, piped.stdout
    # in a narrow terminal what does not fit folds onto more lines, never cut to "on_ba…"
    narrow = run_cli("status", "--app", str(app_dir), columns=60).stdout
    assert "…" not in narrow, narrow
    function_table = narrow.split("┏")[1]
    first_column = "".join(
        line.split("│")[1].strip() for line in function_table.splitlines() if "│" in line
    )
    assert first_column == "".join(functions), narrow


def test_an_exception_whose_str_fails_is_retried_and_told_not_taken_for_a_death(
    host: Host, app_dir: Path
) -> None:
    """Telling of it failed: the message was never settled, nothing was logged, and its
    lease ran out: it ran again, noted as an attempt whose worker died in it."""
    with host.client() as client:
        sent = client.post("/orders", json={"data": {"unprintable_until": 1}}).json()
    said = "Unprintable: <exception str() failed>"
    failed = host.wait_for_log(function="on_order", outcome="error", message_id=sent["id"])
    assert (failed["attempt"], failed["error"], failed["retry_in_s"]) == (1, said, 0.2)
    raised = host.wait_for_log(msg="function raised", invocation_id=failed["invocation_id"])
    assert raised["error"] == said and "raise Unprintable" in raised["traceback"]
    host.wait_for_log(function="on_order", outcome="ok", message_id=sent["id"], attempt=2)
    assert [(r["attempt"], r["errors"]) for r in records(app_dir, "order")] == [
        (1, []),
        (2, [said]),
    ]


def test_a_function_that_raises_cancelled_unasked_is_retried_per_its_policy(
    host: Host, app_dir: Path
) -> None:
    """hibana.Cancelled from a function no one cancelled was taken for a shutdown's: the
    message was released with its attempt uncounted, claimed again at once, and ran
    thousands of times a second for good, never retried by its policy nor dead-lettered."""
    with host.client() as client:
        sent = client.post("/orders", json={"data": {"give_up_until": 1}}).json()
    said = "Cancelled: giving up on this one"
    failed = host.wait_for_log(function="on_order", outcome="error", message_id=sent["id"])
    assert (failed["attempt"], failed["error"], failed["retry_in_s"]) == (1, said, 0.2)
    host.wait_for_log(function="on_order", outcome="ok", message_id=sent["id"], attempt=2)
    assert [(r["attempt"], r["errors"]) for r in records(app_dir, "order")] == [
        (1, []),
        (2, [said]),
    ]


def test_dead_letter_after_max_attempts_then_redrive_succeeds(host: Host, app_dir: Path) -> None:
    (app_dir / "broken-flag").write_text("x")
    with host.client() as client:
        sent = client.post("/orders", json={"data": {"fail_while": "broken-flag"}}).json()
    host.wait_for_log(function="on_order", dead_lettered=True, timeout=20)
    stats = run_cli("queue", "stats", "--app", str(app_dir), "--json")
    orders = next(q for q in json.loads(stats.stdout) if q["queue"] == "orders")
    assert (orders["dead"], orders["ready"], orders["in_flight"]) == (1, 0, 0)
    dlq = run_cli("queue", "dlq", "orders", "--app", str(app_dir), "--json")
    assert dlq.returncode == 0, dlq.stderr
    (dead,) = json.loads(dlq.stdout)
    assert dead["id"] == sent["id"] and dead["attempts"] == 3
    assert dead["data"] == {"fail_while": "broken-flag"}
    assert [e["attempt"] for e in dead["errors"]] == [1, 2, 3]
    assert dead["errors"][-1]["error"] == "RuntimeError: broken-flag exists"
    table = run_cli("queue", "dlq", "orders", "--app", str(app_dir))
    assert "broken-flag exists" in table.stdout
    # the bug is fixed: move it back, and it goes through
    (app_dir / "broken-flag").unlink()
    redrive = run_cli(
        "queue", "redrive", "orders", "--id", str(sent["id"]), "--id", str(sent["id"]),
        "--app", str(app_dir),
    )  # fmt: skip
    assert redrive.returncode == 0, redrive.stderr
    assert "Moved 1 message(s) back to orders" in redrive.stdout  # the id twice is one
    host.wait_for_log(function="on_order", outcome="ok", message_id=sent["id"], timeout=20)
    assert records(app_dir, "order")[-1]["attempt"] == 1
    assert run_cli("queue", "dlq", "orders", "--app", str(app_dir), "--json").stdout.strip() == "[]"


def test_idempotency_keys_make_one_message(host: Host, app_dir: Path) -> None:
    with host.client() as client:
        first = client.post(
            "/orders", json={"data": {"k": 1}}, headers={"Idempotency-Key": "order-77"}
        ).json()
        second = client.post(
            "/orders", json={"data": {"k": 1}}, headers={"Idempotency-Key": "order-77"}
        ).json()
    assert first["duplicate"] is False
    assert second == {**second, "duplicate": True, "id": first["id"]}
    wait_until(lambda: records(app_dir, "order"))
    time.sleep(0.5)
    assert len(records(app_dir, "order")) == 1


@pytest.mark.parametrize(
    ("what", "error_type", "message"),
    [
        (
            "queue",
            "QueueError",
            "no function of this app consumes the queue 'nope'; declared queues: batches, "
            "orders, poison, warehouse-a, warehouse-b",
        ),
        ("type", "TypeError", "Encoding objects of type object is unsupported"),
        ("big", "QueueError", "over the limit of 262144"),
        (
            "itself",
            "TypeError",
            "the message for queue 'orders' nests too deeply to encode (about 1000 levels at "
            "most), or holds itself (the payload is a dict); flatten it",
        ),
        (
            "empty-key",
            "QueueError",
            "idempotency_key='' is empty: every message sent with it within 24 h would be one, "
            "the rest dropped as duplicates; pass None (or leave it out) for a message with no key",
        ),
        (
            "nan",
            "TypeError",
            "the message for queue 'orders' holds the float nan, which JSON has no value for "
            "(it would reach the consumer as None); send None, or the number as a string",
        ),
        (
            "surrogate",
            "TypeError",
            "the message for queue 'orders' holds a string with a lone surrogate ('\\udce9': "
            "half of a UTF-16 pair, not a character), which JSON in UTF-8 cannot hold",
        ),
    ],
)
def test_bad_enqueues_raise_clear_errors_and_write_nothing(
    basic_queue_host: tuple[Host, Path], what: str, error_type: str, message: str
) -> None:
    host, app_dir = basic_queue_host
    with host.client() as client:
        # a header sent blank, as a client template with its variable unset sends it
        got = client.post(f"/bad-enqueue/{what}", headers={"Idempotency-Key": ""}).json()
    assert got["error_type"] == error_type
    assert message in got["error"]
    stats = json.loads(run_cli("queue", "stats", "--app", str(app_dir), "--json").stdout)
    assert all(q["ready"] == q["in_flight"] == q["delayed"] == 0 for q in stats)


def test_the_wrong_enqueue_for_the_kind_of_function_is_named(
    basic_queue_host: tuple[Host, Path],
) -> None:
    host, app_dir = basic_queue_host
    with host.client() as client:
        in_sync = client.post("/wrong-call/sync").json()["error"]
        in_async = client.post("/wrong-call/async").json()["error"]
    assert in_sync == (
        "ctx.enqueue() is a coroutine for async functions; in a sync function call "
        "ctx.enqueue_sync(...)"
    )
    assert in_async == (
        "ctx.publish_sync() would block the event loop; in an async function use "
        "`await ctx.publish(...)`"
    )
    stats = json.loads(run_cli("queue", "stats", "--app", str(app_dir), "--json").stdout)
    assert all(q["ready"] == 0 for q in stats)


@pytest.fixture(scope="module")
def basic_queue_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Host, Path]]:
    app_dir = copy_app("queues", tmp_path_factory.mktemp("q"))
    for host in started(app_dir, "--workers", "1"):
        yield host, app_dir


def test_a_batch_function_gets_a_list_and_only_failed_items_are_retried(
    app_dir: Path, store: Store
) -> None:
    bodies = [{"i": 0}, {"i": 1, "bad": True}, {"i": 2}, {"i": 3}, {"i": 4}]
    sent = run(store.enqueue_many([NewMessage("batches", json.dumps(b).encode()) for b in bodies]))
    bad_id = sent[1].id
    for host in started(app_dir, "--workers", "1"):
        host.wait_for_log(function="on_batch", dead_lettered=[bad_id], timeout=20)
    batches = records(app_dir, "batch")
    assert batches[0]["ids"] == [s.id for s in sent]
    assert batches[0]["data"] == bodies
    # the retry carried only the failed item
    assert batches[1]["ids"] == [bad_id] and batches[1]["attempts"] == [2]
    (dead,) = run(store.dead_letters("batches"))
    assert dead.id == bad_id and dead.errors[-1]["error"] == "bad items"


def test_a_batch_failed_that_names_no_message_of_the_batch_retries_all_of_it(
    app_dir: Path, store: Store
) -> None:
    """BatchFailed given ids that are not the batch's (the orders' own ids, from the
    payloads) retried none: every message was acknowledged, the failed ones lost."""
    bodies = [{"order": 9001}, {"order": 9002}]
    sent = run(store.enqueue_many([NewMessage("batches", json.dumps(b).encode()) for b in bodies]))
    ids = [s.id for s in sent]
    for host in started(app_dir, "--workers", "1"):
        failed = host.wait_for_log(function="on_batch", outcome="error", timeout=20)
        assert failed["error"] == (
            "out of stock (BatchFailed named 9001, 9002, no message of this batch: all of it "
            "is retried; name its messages, or their msg.id)"
        )
        assert failed["failed"] == ids and failed["retry_in_s"] == 0.1
        host.wait_for_log(function="on_batch", outcome="ok", attempt=2, timeout=20)
    assert [(b["ids"], b["attempts"]) for b in records(app_dir, "batch")] == [
        (ids, [1, 1]),
        (ids, [2, 2]),
    ]


def test_a_concurrency_group_caps_functions_together(app_dir: Path, store: Store) -> None:
    run(
        store.enqueue_many(
            [NewMessage("warehouse-a", b"{}") for _ in range(6)]
            + [NewMessage("warehouse-b", b"{}") for _ in range(6)]
        )
    )
    for _host in started(app_dir, "--workers", "2"):
        wait_until(lambda: len(records(app_dir, "group")) == 24, timeout=30, what="12 runs")
    running = peak = 0
    for r in sorted(records(app_dir, "group"), key=lambda r: (r["t"], r["phase"] == "start")):
        running += 1 if r["phase"] == "start" else -1
        peak = max(peak, running)
    assert peak == 2
    assert {r["queue"] for r in records(app_dir, "group")} == {"a", "b"}


def test_kill_9_of_the_worker_holding_a_message_delivers_it_again(
    host: Host, app_dir: Path
) -> None:
    with host.client() as client:
        sent = client.post("/orders", json={"data": {"block": 1.5}}).json()
    first = wait_until(lambda: records(app_dir, "order"), what="the first attempt")[0]
    os.kill(first["pid"], signal.SIGKILL)
    # the lease (visibility_timeout=3) runs out; a new worker gets it, attempt 2
    again = wait_until(
        lambda: [r for r in records(app_dir, "order") if r["attempt"] == 2],
        timeout=20,
        what="redelivery",
    )[0]
    assert again["id"] == sent["id"] and again["pid"] != first["pid"]
    host.wait_for_log(function="on_order", outcome="ok", message_id=sent["id"], attempt=2)


def test_a_message_that_kills_every_worker_it_meets_becomes_a_dead_letter(
    host: Host, app_dir: Path
) -> None:
    sent = run_cli("queue", "send", "poison", "--data", '{"kill": 1}', "--app", str(app_dir))
    assert sent.returncode == 0, sent.stderr

    def dead() -> list[dict[str, Any]]:
        listed = run_cli("queue", "dlq", "poison", "--app", str(app_dir), "--json")
        return list(json.loads(listed.stdout))

    (letter,) = wait_until(dead, timeout=30, what="the poison message to be dead-lettered")
    # it ran max_attempts (2) times, each death noted; the third delivery did not run it
    assert [(r["attempt"], r["errors"]) for r in records(app_dir, "poison")] == [
        (1, []),
        (2, ["attempt 1 never ended: its worker died in it (or its lease ran out unsettled)"]),
    ]
    # it counts the two attempts that ran, not the delivery that found it too often run
    assert letter["attempts"] == 2
    assert [e["attempt"] for e in letter["errors"]] == [1, 2, 2]
    assert letter["errors"][1]["error"].startswith("attempt 2 never ended: its worker died")
    assert letter["errors"][2]["error"].startswith("not run again: attempt 2 of 2 never ended")
    line = host.wait_for_log(msg="dead letter, not run")
    assert (line["function"], line["queue"], line["attempt"]) == ("on_poison", "poison", 2)
    time.sleep(1.5)  # past another lease: nothing runs it again
    assert len(records(app_dir, "poison")) == 2
    assert host.status()["workers"]  # and the host serves on


def test_a_message_wakes_a_host_scaled_to_zero(app_dir: Path) -> None:
    for host in started(app_dir, "--min-instances", "0", "--idle-timeout", "30"):
        assert host.status()["workers"] == []
        sent = run_cli("queue", "send", "orders", "--data", '{"wake": 1}', "--app", str(app_dir))
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.startswith("Sent message ")
        line = host.wait_for_log(function="on_order", outcome="ok", timeout=20)
        assert line["cold_start"] is True and line["cold_start_ms"] > 0
        assert len(host.status()["workers"]) == 1


def test_a_delayed_message_wakes_a_host_scaled_to_zero_once_it_is_due(app_dir: Path) -> None:
    # nothing is committed when a delay runs out: the idle host sleeps until then
    for host in started(app_dir, "--min-instances", "0", "--idle-timeout", "30"):
        assert host.status()["workers"] == []
        before = time.time()
        # long enough that the CLI, slow to start on a busy machine, sends it well before
        sent = run_cli(
            "queue", "send", "orders", "--data", '{"due": 1}', "--delay", "6", "--app", str(app_dir)
        )
        assert sent.returncode == 0, sent.stderr
        time.sleep(0.5)
        assert host.status()["workers"] == []  # not woken early
        line = host.wait_for_log(function="on_order", outcome="ok", timeout=30)
        assert line["cold_start"] is True
        (ran,) = records(app_dir, "order")
        assert ran["data"] == {"due": 1} and ran["t"] >= before + 6


def test_shutdown_gives_unfinished_messages_back_without_counting_the_attempt(
    app_dir: Path, store: Store
) -> None:
    (sent,) = run(store.enqueue_many([NewMessage("orders", b'{"sleep": 30}')]))
    for host in started(app_dir, "--workers", "1", "--shutdown-timeout", "0.5"):
        wait_until(lambda: records(app_dir, "order"), what="the message to start")
        host.signal(signal.SIGTERM)
        assert host.wait_exit() == 0
        host.wait_for_log(function="on_order", outcome="cancelled", released=True)
    (again,) = run(store.claim("orders", "test", 1, lease=30))
    assert (again.id, again.attempt) == (sent.id, 1)


def test_a_sync_function_enqueuing_past_the_shutdown_timeout_is_told_the_host_stops(
    app_dir: Path,
) -> None:
    """Abandoned at the shutdown timeout, it enqueues on: once its worker has stopped
    sending, that raises Cancelled in it, naming why, with a log line; the host exits.
    It blocked for good or raised a bare RuntimeError, and nothing was logged."""
    for host in started(app_dir, "--workers", "1", "--shutdown-timeout", "0.5"):
        with host.client() as client, concurrent.futures.ThreadPoolExecutor(1) as pool:
            abandoned = pool.submit(client.post, "/enqueue-past-shutdown")
            host.wait_inflight(1, "enqueue_past_shutdown")
            host.signal(signal.SIGTERM)
            assert host.wait_exit() == 0
            assert abandoned.result().status_code == 503
        inv = abandoned.result().headers["x-invocation-id"]
        said = [x for x in host.logs() if x.get("invocation_id") == inv]
        assert [x["outcome"] for x in said if x["msg"] == "invocation"] == ["cancelled"]
        (line,) = [x for x in said if x["msg"] != "invocation"]
        assert line["level"] == "error"
        assert line["msg"].startswith("the host is stopping: this function ran past its ")
        assert "; the message for queue 'orders' " in line["msg"]


STUBBORN = """
import os
import time

import hibana

app = hibana.App()


@app.queue("jobs", visibility_timeout=60{limit})
def job(msg, ctx):
    open(os.path.join(os.path.dirname(__file__), "started"), "w").close()
    time.sleep(30)  # deaf to its cancellation: a thread cannot be stopped
"""


@pytest.mark.parametrize("limit", ["", ", max_concurrency=1"])
def test_shutdown_gives_back_a_message_whose_sync_function_still_runs(
    tmp_path: Path, limit: str
) -> None:
    """Its thread is left to die with the worker, and the message goes back at once, its
    attempt not counted (it stayed leased, and the host took the cancel grace longer).
    A function at its max_concurrency too: its claim loop, waiting for room, held up the
    drain until the worker was killed, with the message still leased."""
    (tmp_path / "function_app.py").write_text(STUBBORN.replace("{limit}", limit))
    store = open_store(None, tmp_path)
    try:
        host = Host(tmp_path, "--workers", "1", "--shutdown-timeout", "0.5").wait_ready()
        try:
            (sent,) = run(store.enqueue_many([NewMessage("jobs", b"{}")]))
            wait_until(lambda: (tmp_path / "started").exists(), what="the job to start")
            host.signal(signal.SIGTERM)
            assert host.wait_exit() == 0
            host.wait_for_log(function="job", outcome="cancelled", released=True)
        finally:
            host.stop()
        (again,) = run(store.claim("jobs", "test", 1, lease=30))
        assert (again.id, again.attempt) == (sent.id, 1)
    finally:
        store.close()


def test_queue_cli_errors_are_named(app_dir: Path, store: Store) -> None:
    run(store.declare([]))
    no_queue = run_cli("queue", "send", "nope", "--data", "{}", "--app", str(app_dir))
    assert no_queue.returncode == 1
    assert "no function consumes the queue 'nope'" in no_queue.stderr
    assert "none yet (start the host once)" in no_queue.stderr
    bad_json = run_cli("queue", "send", "orders", "--data", "{oops", "--app", str(app_dir))
    assert bad_json.returncode == 2 and "--data is not JSON" in bad_json.stderr
    bad_store = run_cli("queue", "stats", "--store", "redis://localhost")
    assert bad_store.returncode == 2 and "unknown store URL 'redis://localhost'" in bad_store.stderr
    run(store.declare([QueueInfo("orders", "on_order", 3)]))
    partial = run_cli("queue", "redrive", "orders", "--id", "12345", "--app", str(app_dir))
    assert partial.returncode == 1 and "Moved 0 of 1 message(s)" in partial.stdout


def test_store_commands_name_a_missing_app_or_store_and_create_nothing(tmp_path: Path) -> None:
    stray = tmp_path / "not-an-app"
    stray.mkdir()
    for args in (["queue", "stats"], ["queue", "dlq", "orders"], ["secrets", "list"]):
        result = run_cli(*args, "--app", str(stray))
        assert result.returncode == 1, result
        assert f"{stray} is not an app folder (it has no function_app.py)" in result.stderr
    fresh = copy_app("queues", tmp_path)
    never_served = run_cli("queue", "stats", "--app", str(fresh))
    assert never_served.returncode == 1
    assert "no store at" in never_served.stderr
    assert "no host has run this app yet" in never_served.stderr
    assert not (stray / ".hibana").exists() and not (fresh / ".hibana").exists()


#: Every command that reads or acts on a store a host made, and must not make one.
NOT_MAKING_A_STORE = [
    ["queue", "stats"],
    ["queue", "dlq", "orders"],
    ["queue", "redrive", "orders"],
    ["queue", "send", "orders", "--data", "1"],
    ["events", "publish", "github", "--type", "t.x", "--source", "/s"],
    ["secrets", "list"],
    ["secrets", "rm", "api-token"],
]


@pytest.mark.parametrize("command", NOT_MAKING_A_STORE)
def test_store_commands_make_no_store_in_an_empty_file(tmp_path: Path, command: list[str]) -> None:
    """An empty file (what `touch` makes; a --store typed for a new file) was made a store
    by a command that only reads, `hibana queue stats` say: 'no queues in sqlite:///...'."""
    fresh = copy_app("queues", tmp_path)
    (fresh / ".hibana").mkdir()
    (fresh / ".hibana" / "state.db").touch()
    result = run_cli(*command, "--app", str(fresh))
    assert result.returncode == 1, result
    assert result.stderr == (
        f"error: no store at sqlite:///{fresh / '.hibana' / 'state.db'}: no host has used it "
        "yet (the file holds no hibana tables); check the path, or start a host with it\n"
    )
    assert [p.name for p in (fresh / ".hibana").iterdir()] == ["state.db"]
    assert (fresh / ".hibana" / "state.db").stat().st_size == 0
    typo = tmp_path / "sate.db"
    named = run_cli(*command, "--store", f"sqlite:///{typo}")
    assert named.returncode == 1, named
    assert named.stderr == (
        f"error: no store at sqlite:///{typo}: no host has used it yet (there is no such "
        "file); check the path, or start a host with it\n"
    )
    assert not typo.exists()


@contextlib.contextmanager
def write_locked(app_dir: Path, store: Store) -> Iterator[Path]:
    """The app's store file, with ``orders`` declared, held in a write transaction by
    another connection (what a `sqlite3` shell in a transaction holds) until the end."""
    path = app_dir / ".hibana" / "state.db"
    run(store.declare([QueueInfo("orders", "on_order", 3)]))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield path
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def redriving(app_dir: Path) -> subprocess.Popen[str]:
    """`hibana queue redrive orders` on ``app_dir``, started; its stderr is read as it goes."""
    command = subprocess.Popen(
        [sys.executable, "-m", "hibana", "queue", "redrive", "orders", "--app", str(app_dir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert command.stderr is not None
    return command


def test_a_store_command_kept_waiting_by_a_lock_says_so_and_who_holds_it(
    app_dir: Path, store: Store
) -> None:
    """It waited up to 30 s for another process's transaction without a word, as if hung."""
    with write_locked(app_dir, store) as path:
        command = redriving(app_dir)
        assert command.stderr is not None
        said = command.stderr.readline()  # while it waits
    out, err = command.communicate(timeout=60)
    assert said.startswith(
        f"the store sqlite:///{path} is locked by another process (pid {os.getpid()}: "
    ), said
    assert said.endswith("): waiting up to 30 s for it to end its transaction\n"), said
    assert command.returncode == 0, err
    assert (out, err) == ("Moved 0 message(s) back to orders\n", "")


def test_a_store_command_that_reads_waits_for_no_writer(app_dir: Path, store: Store) -> None:
    """A write lock held elsewhere (a `sqlite3` shell in a transaction) kept `hibana queue
    stats` waiting, 30 s, then failing: each open took the write lock to check the schema."""
    with write_locked(app_dir, store):
        stats = run_cli("queue", "stats", "--app", str(app_dir), "--json")
        assert stats.returncode == 0, stats
        assert [q["queue"] for q in json.loads(stats.stdout)] == ["orders"]


def test_a_store_command_told_to_wait_for_a_lock_ends_at_ctrl_c(
    app_dir: Path, store: Store
) -> None:
    """Told it waits up to 30 s, the user presses Ctrl-C: it went on waiting, all 30 s
    (Python sees the signal only once SQLite's wait returns)."""
    with write_locked(app_dir, store):
        command = redriving(app_dir)
        try:
            assert command.stderr is not None
            assert "waiting up to 30 s" in command.stderr.readline()
            command.send_signal(signal.SIGINT)
            # the bound is the lock's 30 s, not a speed: it ends while the lock is still held
            assert command.wait(timeout=20) == 130
        finally:
            command.kill()


def test_a_claim_kept_waiting_past_its_lease_runs_what_it_claimed(
    host: Host, app_dir: Path, store: Store
) -> None:
    """A worker's claim waited for the store (a `sqlite3` shell's transaction here; on
    PostgreSQL, a server restarting) longer than the visibility timeout: what it leased
    timed out at once, never run, an attempt counted (a dead letter, on the last)."""
    with host.client() as client:
        sent = client.post("/orders", json={"data": {"n": 1}, "delay": 1}).json()
    due = time.time() + 1
    with write_locked(app_dir, store):
        # it comes due meanwhile; the worker's claim waits for the lock past the lease
        # (visibility_timeout=3), which begins once the claim has the lock
        wait_until(lambda: time.time() > due + 3 + 2, timeout=30, what="the lease's length")
    ran = wait_until(lambda: records(app_dir, "order"), timeout=30, what="the message run")
    assert [(r["id"], r["attempt"]) for r in ran] == [(sent["id"], 1)]
    host.wait_for_log(function="on_order", outcome="ok", message_id=sent["id"], attempt=1)


def test_a_store_command_kept_waiting_by_a_silent_postgresql_says_so() -> None:
    """It waited for the server's answer (up to connect_timeout, 10 s) without a word."""
    silent = socket.create_server(("127.0.0.1", 0))  # takes connections, answers nothing
    url = f"postgresql://u@127.0.0.1:{silent.getsockname()[1]}/db"
    try:
        command = subprocess.Popen(
            [sys.executable, "-m", "hibana", "queue", "stats", "--store", url],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert command.stderr is not None
        said = command.stderr.readline()  # while it waits
    finally:
        silent.close()
    _, err = command.communicate(timeout=60)
    assert said == (
        f"the store {url} has not answered yet (a server starting, or one behind a network "
        "that drops what is sent to it): waiting up to 10 s for it\n"
    )
    assert command.returncode == 1 and err.startswith(f"error: cannot connect to the store {url}")


def test_dead_letter_commands_name_an_unknown_queue(app_dir: Path, store: Store) -> None:
    run(store.declare([QueueInfo("orders", "on_order", 3)]))
    for args in (["queue", "dlq", "ordres"], ["queue", "redrive", "ordres"]):
        result = run_cli(*args, "--app", str(app_dir))
        assert result.returncode == 1, result
        assert "no queue 'ordres'" in result.stderr and "queues: orders" in result.stderr
    empty = run_cli("queue", "dlq", "orders", "--app", str(app_dir))
    assert empty.returncode == 0 and "no dead letters in orders" in empty.stdout


def test_dlq_json_shows_a_body_that_is_no_json_as_its_bytes(app_dir: Path, store: Store) -> None:
    """Code may write any bytes through hibana.store; such a dead letter made
    `hibana queue dlq --json` end in a JSONDecodeError traceback, listing none."""
    from hibana.store import Settle

    run(store.declare([QueueInfo("orders", "on_order", 3)]))
    raw = b"\xff\x00 not json"
    sent = run(store.enqueue_many([NewMessage("orders", raw), NewMessage("orders", b'{"n": 1}')]))
    for d in run(store.claim("orders", "w1", 2, lease=30)):
        run(store.settle(Settle("dead", d.id, d.attempt, error="x")))
    listed = run_cli("queue", "dlq", "orders", "--app", str(app_dir), "--json")
    assert listed.returncode == 0, listed.stderr
    shown = {d["id"]: d for d in json.loads(listed.stdout)}
    assert base64.b64decode(shown[sent[0].id]["body_base64"]) == raw
    assert "data" not in shown[sent[0].id]
    assert shown[sent[1].id]["data"] == {"n": 1} and "body_base64" not in shown[sent[1].id]


DELAYS_APP = """
import datetime
import math

import hibana

app = hibana.App()
DELAYS = {"inf": math.inf, "nan": math.nan, "huge": 1e300, "over": 365 * 86400 + 1,
          "year": 365 * 86400, "past": -0.5, "wait": datetime.timedelta(seconds=5),
          "when": datetime.datetime(2030, 1, 1)}


@app.queue("work")
def work(msg, ctx):
    pass


@app.http("/async/{d}", methods=["POST"])
async def send_async(req, ctx):
    try:
        return {"id": (await ctx.enqueue("work", 1, delay=DELAYS[req.params["d"]])).id}
    except hibana.QueueError as exc:
        return {"error": str(exc)}


@app.http("/sync/{d}", methods=["POST"])
def send_sync(req, ctx):
    try:
        return {"id": ctx.enqueue_sync("work", 1, delay=DELAYS[req.params["d"]]).id}
    except hibana.QueueError as exc:
        return {"error": str(exc)}
"""


def test_a_delay_that_would_park_a_message_for_good_is_refused(tmp_path: Path) -> None:
    app_dir = tmp_path / "delays"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(DELAYS_APP)
    for host in started(app_dir, "--workers", "1"):
        with host.client() as client:
            for kind in ("async", "sync"):
                for name, shown in [
                    ("inf", "inf"),
                    ("nan", "nan"),
                    ("huge", "1e+300"),
                    ("over", "31536001"),
                ]:
                    answer = client.post(f"/{kind}/{name}").json()
                    assert answer == {
                        "error": f"delay={shown} must be a number of seconds from 0 to 31536000 "
                        "(365 days); for work due later, keep it elsewhere and let an "
                        "@app.timer function enqueue it"
                    }, (kind, name)
                assert "id" in client.post(f"/{kind}/year").json()
        opened = open_store(None, app_dir)
        try:
            (stats,) = run(opened.stats())
        finally:
            opened.close()
        assert (stats.queue, stats.ready, stats.delayed) == ("work", 0, 2)


def test_a_delay_below_0_or_given_as_a_timedelta_or_a_datetime_says_what_to_pass(
    tmp_path: Path,
) -> None:
    (tmp_path / "function_app.py").write_text(DELAYS_APP)
    bound = "must be a number of seconds from 0 to 31536000 (365 days)"
    for host in started(tmp_path, "--workers", "1"):
        with host.client() as client:
            for kind in ("async", "sync"):
                for name, told in [
                    (
                        "past",
                        f"delay=-0.5 {bound}; a message cannot be due before it is sent: for "
                        "a time that may have passed, pass max(0, seconds)",
                    ),
                    (
                        "wait",
                        f"delay=datetime.timedelta(seconds=5) {bound}, not a timedelta; pass "
                        "its seconds: delay.total_seconds()",
                    ),
                    (
                        "when",
                        f"delay=datetime.datetime(2030, 1, 1, 0, 0) {bound}, not a datetime "
                        "(a time, not a wait); pass the seconds until it: "
                        "max(0, (when - datetime.now(UTC)).total_seconds())",
                    ),
                ]:
                    answer = client.post(f"/{kind}/{name}").json()
                    assert answer == {"error": told}, (kind, name)
        opened = open_store(None, tmp_path)
        try:
            (stats,) = run(opened.stats())
        finally:
            opened.close()
        assert (stats.queue, stats.ready, stats.delayed) == ("work", 0, 0)  # nothing sent


OVERRUN = """
import asyncio
import json
import os
import time

import hibana

app = hibana.App()
HERE = os.path.dirname(__file__)


def note(event, msg):
    line = json.dumps({"event": event, "id": msg.id, "attempt": msg.attempt, "t": time.time()})
    fd = os.open(os.path.join(HERE, "runs.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (line + "\\n").encode())
    os.close(fd)


@app.queue(
    "charge", timeout=0.5, max_attempts=2, retry=hibana.Fixed(0),
    concurrency_group="db", limit=1,
)
def charge(msg, ctx):
    note("start", msg)
    time.sleep(1.2)  # past its timeout: a thread cannot be stopped, only told
    note("end", msg)


@app.queue("rollback", visibility_timeout=1, max_attempts=2, retry=hibana.Fixed(0.3))
async def rollback(msg, ctx):
    note("start", msg)
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        await asyncio.sleep(0.8)  # a rollback, after its lease's end
        note("end", msg)
        raise
"""


def _most_at_once(runs: list[dict[str, Any]]) -> int:
    running = most = 0
    for run in sorted(runs, key=lambda r: (r["t"], r["event"] == "start")):
        running += 1 if run["event"] == "start" else -1
        most = max(most, running)
    return most


@pytest.mark.parametrize("queue", ["charge", "rollback"])
def test_a_function_running_past_its_timeout_is_not_delivered_again_meanwhile(
    tmp_path: Path, queue: str
) -> None:
    """A timed-out sync function's thread goes on until it returns, and an async one may
    take a while to give up; retried at once (sync), or claimed again when the lease ran
    out (async), the same message ran twice at once, and its concurrency group's slot
    was free for another."""
    (tmp_path / "function_app.py").write_text(OVERRUN)
    host = Host(tmp_path, "--workers", "1").wait_ready()
    try:
        count = 2 if queue == "charge" else 1
        for n in range(count):
            sent = run_cli("queue", "send", queue, "--data", str(n), "--app", str(tmp_path))
            assert sent.returncode == 0, sent.stderr
        wait_until(
            lambda: len(read_jsonl(tmp_path / "runs.jsonl", event="end")) == 2 * count,
            timeout=30,
            what="every attempt to end",
        )
        runs = read_jsonl(tmp_path / "runs.jsonl")
        assert _most_at_once(runs) == 1, runs  # one message of the group, one attempt
        for message in {r["id"] for r in runs}:
            mine = {(r["attempt"], r["event"]): r["t"] for r in runs if r["id"] == message}
            assert mine[(2, "start")] >= mine[(1, "end")], mine
        host.wait_for_log(function=queue, outcome="timeout", dead_lettered=True, timeout=20)
    finally:
        host.stop()


BLOCKING = """
import json
import os
import time

import hibana

app = hibana.App()


@app.queue("stuck", timeout=0.5, visibility_timeout=60, max_attempts=2, retry=hibana.Fixed(0))
async def stuck(msg, ctx):
    line = json.dumps({"attempt": msg.attempt, "errors": [e["error"] for e in msg.errors]})
    with open(os.path.join(os.path.dirname(__file__), "runs.jsonl"), "a") as out:
        out.write(line + "\\n")
    if msg.attempt == 1:
        time.sleep(3600)  # blocks the event loop: its worker is replaced
"""


def test_a_message_whose_function_blocks_the_event_loop_is_retried_as_timed_out(
    tmp_path: Path,
) -> None:
    """The worker whose loop it blocked past its deadline and grace exits; its message came
    back only once its lease ran out (60 s here), noted as a worker's death, and its last
    attempt's would have made it a dead letter 'not run again'."""
    (tmp_path / "function_app.py").write_text(BLOCKING)
    for host in started(tmp_path, "--workers", "1", "--cancel-grace", "0.5"):
        sent = run_cli("queue", "send", "stuck", "--data", "1", "--app", str(tmp_path))
        assert sent.returncode == 0, sent.stderr
        host.wait_for_log(
            msg="event loop blocked; an async function is calling blocking code; "
            "replacing this worker",
            timeout=20,
        )
        line = host.wait_for_log(msg="invocation", function="stuck", attempt=1, timeout=20)
        assert (line["outcome"], line["error"], line["retry_in_s"]) == (
            "timeout",
            "timed out after 0.5s",
            0,
        )
        host.wait_for_log(msg="invocation", function="stuck", attempt=2, outcome="ok", timeout=30)
    assert read_jsonl(tmp_path / "runs.jsonl") == [
        {"attempt": 1, "errors": []},
        {"attempt": 2, "errors": ["timed out after 0.5s"]},
    ]


def test_a_store_file_deleted_under_the_host_is_named_not_written_into_the_void(
    host: Host, app_dir: Path
) -> None:
    with host.client() as client:
        assert client.post("/orders", json={"data": {"n": 1}}).status_code == 202
        for name in ("state.db", "state.db-wal", "state.db-shm"):
            (app_dir / ".hibana" / name).unlink(missing_ok=True)
        time.sleep(1.1)  # the file is checked once a second at most
        lost = client.post("/orders", json={"data": {"n": 2}})
    assert lost.status_code == 500  # not a 202 for a message nothing will ever see
    line = host.wait_for_log(msg="function raised", invocation_id=lost.json()["invocation_id"])
    assert "store file" in line["error"] and "was deleted or replaced" in line["error"]


def test_after_its_file_is_found_deleted_no_write_of_the_store_goes_into_the_void(
    tmp_path: Path,
) -> None:
    """Writes that come together are one batch: once the file check fails it, each is run
    again on its own, within the second in which the file is not looked at again. They went
    into the deleted file (a 202 for a message nothing would see, now and then)."""
    store = open_store(None, tmp_path)
    try:
        run(store.declare([QueueInfo("orders", "on_order", 3)]))
        run(store.enqueue(NewMessage("orders", b"{}")))
        for path in (tmp_path / ".hibana").glob("state.db*"):
            path.unlink()
        time.sleep(1.1)  # the file is looked at once a second at most

        async def together() -> list[Any]:
            sends = [store.enqueue(NewMessage("orders", b"{}")) for _ in range(5)]
            return await asyncio.gather(*sends, return_exceptions=True)

        results = run(together())
        assert all("was deleted or replaced" in str(r) for r in results), results
        with pytest.raises(StoreError, match="was deleted or replaced"):
            run(store.enqueue(NewMessage("orders", b"{}")))  # and every write after them
    finally:
        store.close()


HUGE_ERROR_APP = """
import hibana

app = hibana.App()


@app.queue("fetch", max_attempts=2, retry=hibana.Fixed(0))
def fetch(msg, ctx):
    raise ValueError("the server answered " + "x" * 100_000)
"""


def test_the_error_an_attempt_keeps_with_its_message_is_bounded(tmp_path: Path) -> None:
    """Each attempt's error was kept whole with the message: an exception that holds a
    response of megabytes grew the message (whose body is held to 256 KiB) by as much at
    every retry, and its dead letter with it."""
    app_dir = tmp_path / "huge"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(HUGE_ERROR_APP)
    for host in started(app_dir, "--workers", "1"):
        sent = run_cli("queue", "send", "fetch", "--data", "1", "--app", str(app_dir))
        assert sent.returncode == 0, sent.stderr
        line = host.wait_for_log(function="fetch", dead_lettered=True, timeout=20)
        assert len(line["error"]) == 100_032  # the log line has it whole
    store = open_store(None, app_dir)
    try:
        (dead,) = run(store.dead_letters("fetch"))
    finally:
        store.close()
    kept = "ValueError: the server answered " + "x" * (4096 - 32)
    assert [e["error"] for e in dead.errors] == [
        f"{kept}... (100032 characters; the log line has them all)"
    ] * 2


def test_a_body_that_is_no_json_is_a_dead_letter_at_once_not_after_max_attempts(
    app_dir: Path, store: Store
) -> None:
    """Another program's write through hibana.store: msg.data failed at every attempt
    alike, and the message was tried max_attempts times before it was set aside."""
    run(store.declare([QueueInfo("orders", "on_order", 3)]))
    sent = run(store.enqueue(NewMessage("orders", b"\xff not json")))
    for host in started(app_dir, "--workers", "1"):
        line = host.wait_for_log(function="on_order", outcome="error", message_id=sent.id)
        assert line["attempt"] == 1 and line["dead_lettered"] is True
        assert "retry_in_s" not in line
    (dead,) = run(store.dead_letters("orders"))
    assert dead.id == sent.id and dead.attempts == 1
    assert dead.errors[-1]["error"].startswith(
        f"BadMessage: message {sent.id} on queue 'orders' has a body that is not JSON ("
    )
    assert "read such a body as msg.body (bytes)" in dead.errors[-1]["error"]


def test_a_batch_invocation_links_to_the_span_that_sent_each_of_its_messages(
    app_dir: Path, store: Store
) -> None:
    """It continued its first message's trace and said nothing of the others': the
    producers of all but one message lost sight of what became of them."""
    senders = [
        ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"),
        ("a3ce929d0e0e47364bf92f3577b34da6", "b7ad6b7169203331"),
    ]
    sent = run(
        store.enqueue_many(
            [
                NewMessage("batches", b'{"i": %d}' % i, trace=f"00-{t}-{s}-01")
                for i, (t, s) in enumerate(senders)
            ]
            + [NewMessage("batches", b'{"i": 2}')]  # sent by no traced span
        )
    )
    for host in started(app_dir, "--workers", "1"):
        line = host.wait_for_log(function="on_batch", outcome="ok", timeout=20)
    assert line["message_id"] == [s.id for s in sent]
    assert line["trace_id"] == senders[0][0] and line["parent_span_id"] == senders[0][1]
    assert line["links"] == [
        {"trace_id": t, "span_id": s, "message_id": m.id}
        for (t, s), m in zip(senders, sent, strict=False)
    ]


def test_a_batch_sets_aside_its_body_that_is_no_json_and_the_rest_runs_again(
    app_dir: Path, store: Store
) -> None:
    good, bad = run(
        store.enqueue_many([NewMessage("batches", b'{"i": 0}'), NewMessage("batches", b"<xml/>")])
    )
    for host in started(app_dir, "--workers", "1"):
        failed = host.wait_for_log(function="on_batch", outcome="error", timeout=20)
        assert failed["dead_lettered"] == [bad.id] and failed["attempt"] == 1
        done = host.wait_for_log(function="on_batch", outcome="ok", timeout=20)
        assert (done["message_id"], done["attempt"]) == ([good.id], 2)
    (dead,) = run(store.dead_letters("batches"))
    assert (dead.id, dead.attempts) == (bad.id, 1)


BIG_BATCH_APP = """
import hibana

app = hibana.App()


@app.queue("rows", batch_size=200)
def load(msgs, ctx):
    pass
"""


def test_a_batch_line_carries_at_most_128_links_and_says_how_many_it_left_out(
    tmp_path: Path,
) -> None:
    (tmp_path / "function_app.py").write_text(BIG_BATCH_APP)
    opened = open_store(None, tmp_path)
    try:
        run(opened.declare([QueueInfo("rows", "load", 5)]))
        traced = [f"00-{n:032x}-{n:016x}-01" for n in range(1, 131)]
        sent = run(opened.enqueue_many([NewMessage("rows", b"{}", trace=t) for t in traced]))
    finally:
        opened.close()
    for host in started(tmp_path, "--workers", "1"):
        line = host.wait_for_log(function="load", outcome="ok", timeout=20)
    assert line["message_id"] == [s.id for s in sent]
    assert [link["span_id"] for link in line["links"]] == [f"{n:016x}" for n in range(1, 129)]
    assert line["links_dropped"] == 2


OWN_RETRY_APP = """
import hibana


class Steps(hibana.RetryPolicy):
    def delay(self, attempt):
        if attempt == 1:
            return float("nan")
        return [0.1][attempt - 1]  # an IndexError from attempt 2 on


app = hibana.App()


@app.queue("jobs", max_attempts=3, retry=Steps(), visibility_timeout=60)
def job(msg, ctx):
    raise RuntimeError("no luck")
"""


def test_a_retry_policy_that_raises_or_gives_nan_is_named_and_the_message_retried(
    tmp_path: Path,
) -> None:
    """A policy's exception left the message unsettled until its lease ran out, to be
    told as a worker's death; its NaN failed the settlement on SQLite (parked it for ever
    on PostgreSQL)."""
    (tmp_path / "function_app.py").write_text(OWN_RETRY_APP)
    opened = open_store(None, tmp_path)
    try:
        run(opened.declare([QueueInfo("jobs", "job", 3)]))
        sent = run(opened.enqueue(NewMessage("jobs", b"{}")))
        for host in started(tmp_path, "--workers", "1"):
            host.wait_for_log(function="job", outcome="error", attempt=3, dead_lettered=True)
            said = [x["msg"] for x in host.logs() if "retry policy" in str(x.get("msg"))]
            assert len(said) == 2, said
            assert said[0].startswith(
                "retry policy Steps returned nan for attempt 1: its delay() must return a "
                "number of seconds from 0 to 31536000; the default policy's pause ("
            )
            assert said[1].startswith(
                "retry policy Steps raised IndexError: list index out of range for attempt 2"
            )
        (dead,) = run(opened.dead_letters("jobs"))
        assert (dead.id, dead.attempts) == (sent.id, 3)
        assert [e["error"] for e in dead.errors] == ["RuntimeError: no luck"] * 3
    finally:
        opened.close()
