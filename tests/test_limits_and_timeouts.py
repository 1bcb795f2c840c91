"""What the host enforces: body and head size, slow clients, deadlines, concurrency."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import resource
import select
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hosts import (
    APPS,
    Host,
    children,
    copy_app,
    read_cut_short,
    read_jsonl,
    run_cli,
    started,
)


@pytest.fixture(scope="module")
def strict_host() -> Iterator[Host]:
    yield from started(
        "basic",
        "--workers", "1",
        "--max-body-bytes", "1000",
        "--max-header-bytes", "4096",
        "--header-timeout", "0.5",
        "--body-timeout", "0.5",
        "--concurrency-wait", "0.2",
        "--cancel-grace", "0.5",
    )  # fmt: skip


def _raw(host: Host, data: bytes, wait: float = 0, *more: bytes) -> bytes:
    """Send ``data`` (then each of ``more``, ``wait`` seconds apart, while the host
    still reads) and read the answer to its end."""
    _, _, hostport = host.url.partition("://")
    addr, _, port = hostport.partition(":")
    with socket.create_connection((addr, int(port)), timeout=10) as sock:
        sock.sendall(data)
        if wait:
            time.sleep(wait)
        for part in more:
            with contextlib.suppress(OSError):  # refused before it was sent: that is the answer
                sock.sendall(part)
            time.sleep(wait)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_body_over_the_limit_is_413_without_reading_it(strict_host: Host) -> None:
    with strict_host.client() as client:
        r = client.post("/echo", content=b"x" * 1001)
        ok = client.post("/echo", content=b"x" * 1000)
    assert r.status_code == 413
    assert r.json()["error"].endswith(
        "1001 bytes is over the limit of 1000 (the host's --max-body-bytes)"
    )
    assert ok.status_code == 200


def test_chunked_body_over_the_limit_is_413(strict_host: Host) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"y" * 100

    with strict_host.client() as client:
        r = client.post("/echo", content=chunks())
    assert r.status_code == 413
    assert "over the limit of 1000 bytes (the host's --max-body-bytes)" in r.json()["error"]


@pytest.mark.parametrize("split", [False, True], ids=["with-the-head", "after-the-head"])
def test_a_chunk_declared_over_the_limit_is_413_before_its_bytes_come(
    strict_host: Host, split: bool
) -> None:
    # its size line alone says it is too big: the client is told at once, not after the
    # body timeout (the bytes it declares never come here)
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = b"10\r\n" + b"a" * 16 + b"\r\n7d0;note=x\r\nonly a few bytes"
    reply = _raw(strict_host, head, 0.05, chunks) if split else _raw(strict_host, head + chunks)
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:300]
    assert (
        b"a chunk of 2000 bytes takes the request body over the limit of 1000 bytes "
        b"(the host's --max-body-bytes)" in reply
    )


def test_trailer_fields_over_the_head_limit_are_431(strict_host: Host) -> None:
    """No limit held them: httptools gathered a trailer field without end in memory,
    copying it whole for each packet, until the body timeout (30 s by default)."""
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    reply = _raw(strict_host, head + b"4\r\nbody\r\n0\r\n", 0.05, b"X-Big: ", *[b"a" * 1500] * 4)
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:300]
    assert (
        b"the chunked body's trailer fields (or size lines) are over the limit of 4096 bytes "
        b"(the host's --max-header-bytes)" in reply
    )
    # trailers within it are read as ever
    closing = head.replace(b"Host: x", b"Host: x\r\nConnection: close")
    ok = _raw(strict_host, closing + b"4\r\nbody\r\n0\r\n", 0.05, b"X-Small: 1\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 ") and ok.endswith(b"\r\n\r\nbody"), ok[:300]


def test_a_chunk_extension_split_from_its_size_line_is_no_size(strict_host: Host) -> None:
    # the packet that ends the size line begins with an extension's value that would be
    # a size over the limit, read on its own
    reply = _raw(
        strict_host,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;n=",
        0.05,
        b"fffff\r\nabc",
        b"\r\n0\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:300]
    assert reply.endswith(b"\r\n\r\nabc")


def test_oversized_request_head_is_431(strict_host: Host) -> None:
    with strict_host.client() as client:
        r = client.get("/hello/x", headers={"x-big": "z" * 5000})
    assert r.status_code == 431
    assert "over the limit of 4096 bytes (the host's --max-header-bytes)" in r.json()["error"]


@pytest.mark.parametrize("pieces", [1, 3])
def test_a_request_line_over_the_head_limit_is_414(strict_host: Host, pieces: int) -> None:
    """RFC 9112 3: a request-target longer than the server parses is 414 (URI Too Long);
    the header fields' 431 would send its user looking in the wrong place."""
    line = b"GET /hello/x?q=" + b"a" * 6000 + b" HTTP/1.1\r\n"
    cut = len(line) // pieces
    parts = [line[i * cut : (i + 1) * cut if i < pieces - 1 else None] for i in range(pieces)]
    reply = _raw(strict_host, parts[0], 0.05, *parts[1:], b"Host: x\r\nConnection: close\r\n\r\n")
    status, _, body = reply.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 414 "), reply[:200]
    assert b"request line (method, target and version) is over the limit of 4096" in body


def test_a_short_request_line_with_long_headers_is_still_431(strict_host: Host) -> None:
    line = b"GET /hello/x HTTP/1.1\r\n"
    reply = _raw(strict_host, line, 0.05, b"X-Pad: " + b"p" * 6000 + b"\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 431"), reply[:200]


def test_head_under_the_limit_with_a_body_in_the_same_packet_is_served(strict_host: Host) -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 3500 + b"\r\n"
    body = b"b" * 900
    reply = _raw(
        strict_host,
        head + b"Content-Length: 900\r\nConnection: close\r\n\r\n" + body,
    )
    assert reply.startswith(b"HTTP/1.1 200")
    assert reply.endswith(body)


def test_slow_headers_are_cut_off_with_408(strict_host: Host) -> None:
    started_at = time.monotonic()
    reply = _raw(strict_host, b"GET /hello/slow HTTP/1.1\r\nHost: x\r\n")
    assert reply.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started_at < 5


def test_a_pipelined_head_sent_in_part_is_cut_off_with_408_after_the_answer_before_it(
    strict_host: Host,
) -> None:
    # the second head begins in the packet that ends the first request: once the first
    # is answered it has the header timeout to finish, as a first request would (it used
    # to be taken for an idle connection, and closed unanswered at the keep-alive timeout)
    reply = _raw(
        strict_host, b"GET /hello/a HTTP/1.1\r\nHost: x\r\n\r\nGET /hello/b HTTP/1.1\r\nHo"
    )
    first, _, rest = reply.partition(b"Hello a")
    assert first.startswith(b"HTTP/1.1 200 "), reply[:300]
    assert rest.startswith(b"HTTP/1.1 408 "), reply[:600]
    assert b"request headers did not arrive within 0.5s" in rest


def test_idle_connection_that_sends_nothing_is_closed(strict_host: Host) -> None:
    started_at = time.monotonic()
    assert _raw(strict_host, b"") == b""
    assert time.monotonic() - started_at < 5


def test_slow_body_is_cut_off_with_408(strict_host: Host) -> None:
    reply = _raw(
        strict_host,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part",
    )
    assert reply.startswith(b"HTTP/1.1 408")
    assert b"did not arrive within 0.5s" in reply


def test_a_body_trickled_a_byte_a_pause_is_cut_off_with_408(strict_host: Host) -> None:
    """Each pause is short of --body-timeout (0.5 s), so only the body's rate (under the
    default --min-body-rate of 240 bytes/s once it has taken 0.5 s) tells it apart."""
    _, _, hostport = strict_host.url.partition("://")
    addr, _, port = hostport.partition(":")
    with socket.create_connection((addr, int(port)), timeout=10) as sock:
        # each byte its own packet at once (else Nagle holds it for the last one's ACK)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        reply = b""
        for _ in range(40):  # 8 s at most; cut off after about 0.6 s
            time.sleep(0.2)
            try:
                sock.sendall(b"x")
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([sock], [], [], 0)[0]:  # the answer is in: stop sending
                break
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 408")
    assert b"under the 240 bytes/s a body taking over 0.5s must average" in reply


@pytest.mark.parametrize("gap", [0.0, 0.05], ids=["pipelined", "one-at-a-time"])
def test_a_client_that_pipelines_and_never_reads_is_held_to_one_answer_then_cut_off(
    strict_host: Host, gap: float
) -> None:
    _, _, hostport = strict_host.url.partition("://")
    addr, _, port = hostport.partition(":")
    cut_off = "connection cut off: its client read none of its answer"

    def seen(**fields: Any) -> list[dict[str, Any]]:  # the module's host: earlier tests' too
        return [r for r in strict_host.logs() if fields.items() <= r.items()]

    cuts, answered = len(seen(msg=cut_off)), len(seen(function="large"))
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(20)
        sock.connect((addr, int(port)))
        # six 16 MiB answers asked for, none read: they would all sit in the worker's
        # memory, whether asked for all at once or each while the last is unread
        for _ in range(6):
            sock.sendall(b"GET /large/16 HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(gap)
        deadline = time.monotonic() + 20
        while len(seen(msg=cut_off)) == cuts:
            assert time.monotonic() < deadline, "the connection was not cut off"
            time.sleep(0.05)
        cut = seen(msg=cut_off)[-1]
        assert cut["seconds"] == 0.5 and cut["unsent_bytes"] > 0
        with contextlib.suppress(ConnectionResetError):
            while sock.recv(1 << 20):
                pass  # what the kernel held, then the end
    # the next waited for the client to read this one
    assert len(seen(function="large")) - answered == 1


def test_a_client_reading_slowly_gets_its_pipelined_answers_whole() -> None:
    # a client reading at all is not cut off, however long its answers take (here about
    # twice --body-timeout, which a loaded machine cannot stall a reader for)
    gen = started("basic", "--workers", "1", "--body-timeout", "2")
    host = next(gen)
    _, _, hostport = host.url.partition("://")
    addr, _, port = hostport.partition(":")
    with contextlib.closing(gen), socket.create_connection((addr, int(port)), timeout=20) as sock:
        sock.sendall(b"GET /large/4 HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        got = 0
        while got < 8 << 20:  # two 4 MiB bodies
            piece = sock.recv(65536)
            assert piece, f"cut off after {got} bytes"
            got += len(piece) - piece.count(b"HTTP/1.1 200 OK")  # near enough: heads
            time.sleep(0.015)
        sock.sendall(b"GET /hello/after HTTP/1.1\r\nHost: x\r\n\r\n")  # and it serves on
        rest = b""
        while b"Hello after" not in rest:
            rest = (rest + sock.recv(65536))[-64:]


def test_a_body_the_host_holds_back_is_not_timed_against_the_client(strict_host: Host) -> None:
    # behind a request slower than --body-timeout (0.5 s), a POST that waits for its
    # 100 Continue gets it once that one is answered, not a 408 for the body it held back
    behind_slow = (
        b"GET /slow/1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n"
        b"Connection: close\r\n\r\n"
    )
    waited = _raw(
        strict_host,
        behind_slow,
        1.2,  # sent about when the 100 Continue comes (or before: a client may not wait)
        b"body",
    )
    assert b" 408 " not in waited
    assert waited.count(b"HTTP/1.1 100 Continue\r\n") == 1
    assert waited.endswith(b"\r\n\r\nbody")
    # behind 20 pipelined requests taking 1 s in all, the host stops reading: the body
    # still on its way is not timed while it does
    piped = _raw(
        strict_host,
        b"GET /slow/0.05 HTTP/1.1\r\nHost: x\r\n\r\n"
        * 20
        + b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n"
        b"\r\nbo",
        0.2,
        b"dy",
    )
    assert b" 408 " not in piped
    assert piped.count(b"HTTP/1.1 200 OK\r\n") == 21
    assert piped.endswith(b"\r\n\r\nbody")
    # a client tired of waiting for its 100 Continue sends the body anyway (curl does
    # after 1 s): its rate is measured from then, not from the epoch of the loop's clock
    early = _raw(
        strict_host,
        behind_slow,
        0.2,
        b"body",
    )
    assert b" 408 " not in early
    assert early.endswith(b"\r\n\r\nbody")


def test_malformed_request_is_400(strict_host: Host) -> None:
    assert _raw(strict_host, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400")


def test_async_timeout_gives_504_and_cancels_the_function(strict_host: Host) -> None:
    with strict_host.client() as client:
        started_at = time.monotonic()
        r = client.get("/sleep/5")
        elapsed = time.monotonic() - started_at
        after = client.get("/sleep/0.01")
    assert r.status_code == 504
    inv = r.headers["x-invocation-id"]
    assert r.json() == {
        "error": "function 'sleep' did not finish within its timeout of 0.5s",
        "invocation_id": inv,
    }
    assert elapsed < 4
    strict_host.wait_for_log(msg="async function saw cancellation", invocation_id=inv)
    line = strict_host.wait_for_log(msg="invocation", invocation_id=inv)
    assert line["outcome"] == "timeout" and line["status"] == 504
    assert after.text == "slept"


def test_an_async_function_that_blocks_its_loop_past_its_timeout_gets_504(
    strict_host: Host,
) -> None:
    # It returns before the deadline's timer gets a turn of the loop: it is late all the same
    with strict_host.client() as client:
        r = client.get("/block-loop-briefly")
    assert r.status_code == 504
    inv = r.headers["x-invocation-id"]
    assert r.json()["invocation_id"] == inv
    line = strict_host.wait_for_log(msg="invocation", invocation_id=inv)
    assert line["outcome"] == "timeout" and line["status"] == 504


def test_sync_function_can_poll_for_cancellation(strict_host: Host) -> None:
    with strict_host.client() as client:
        r = client.get("/cooperative")
    assert r.status_code == 504
    line = strict_host.wait_for_log(
        msg="sync function saw cancellation", invocation_id=r.headers["x-invocation-id"]
    )
    assert line["reason"] == "timeout"


def test_excess_concurrency_waits_then_gets_429(strict_host: Host, tmp_path: Path) -> None:
    def call(path: str) -> httpx.Response:
        with strict_host.client() as client:
            return client.get(path)

    release = tmp_path / "release"
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        # the first holds the only slot until the others have their answers, however
        # loaded the machine is (with a fixed sleep, a slow start let them in after it)
        first = pool.submit(call, f"/limited/60?until={release}")
        strict_host.wait_inflight(1, "limited")
        rest = [pool.submit(call, "/limited/0.01") for _ in range(3)]
        results = [f.result() for f in rest]
        release.touch()
        assert first.result().status_code == 200
    assert [r.status_code for r in results] == [429, 429, 429]
    for r in results:
        assert r.headers["retry-after"] == "1"
        assert "max_concurrency of 1" in r.json()["error"]
    # once the slot is free, the function is served again
    with strict_host.client() as client:
        assert client.get("/limited/0.01").text == "done"


def test_waiting_request_gets_the_slot_when_it_frees_up() -> None:
    # a host of its own, whose requests may wait long enough for the first one to be seen
    # holding the slot, however loaded the machine is
    patient = Host(APPS / "basic", "--workers", "1", "--concurrency-wait", "10").wait_ready()

    def call(path: str) -> httpx.Response:
        with patient.client() as client:
            return client.get(path)

    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(call, "/limited/1")
            patient.wait_inflight(1, "limited")  # the first one has the only slot
            second = pool.submit(call, "/limited/0.01")
            assert first.result().status_code == 200
            assert second.result().status_code == 200  # it waited for the slot, not 429
    finally:
        patient.stop()


def test_hung_sync_function_gets_504_and_its_worker_replaced(strict_host: Host) -> None:
    before = strict_host.worker_pids()
    assert len(before) == 1
    with strict_host.client() as client:
        r = client.get("/hang")
        assert r.status_code == 504
        inv = r.headers["x-invocation-id"]
        strict_host.wait_for_log(
            msg="function did not return after its timeout and cancellation; replacing this worker",
            invocation_id=inv,
        )
        # the host keeps serving: the next request is answered (by the replacement, forked
        # while the stuck worker finishes), and the stuck worker exits
        assert client.get("/hello/again").text == "Hello again"
        deadline = time.monotonic() + 20
        while True:
            after = strict_host.worker_pids()
            if after and after.isdisjoint(before):
                break
            assert time.monotonic() < deadline, "worker was not replaced"
            time.sleep(0.05)
    assert len(strict_host.worker_pids()) == 1


def test_async_function_blocking_the_loop_gets_its_worker_replaced() -> None:
    gen = started("basic", "--workers", "1", "--cancel-grace", "0.5")
    host = next(gen)
    try:
        before = host.worker_pids()
        with host.client() as client:
            # the worker dies with the request: the host answers for it, naming it
            lost = client.get("/block-loop")
            assert lost.status_code == 502
            assert lost.json()["invocation_id"] == lost.headers["x-invocation-id"]
            line = host.wait_for_log(msg=_BLOCKED)
            assert line["invocations"] == [lost.json()["invocation_id"]]
            assert line["blocked_s"] > 0.8
            assert host.wait_for_stderr(r"exited with code 70")
            assert client.get("/hello/after").text == "Hello after"
        assert host.worker_pids() != before
    finally:
        gen.close()


def test_a_sync_function_holding_the_gil_gets_its_worker_killed_from_outside() -> None:
    """A runaway regex holds the GIL: the worker can neither time it out nor replace
    itself. The supervisor sees its watchdog stop, and kills it once the deadline and the
    grace have passed: the request gets its 502, the permit is free, the host serves on."""
    gen = started("basic", "--workers", "1", "--cancel-grace", "0.5")
    host = next(gen)
    try:
        before = host.worker_pids()
        with host.client(timeout=60) as client:
            lost = client.get("/runaway-regex")
            assert lost.status_code == 502
            assert lost.json()["invocation_id"] == lost.headers["x-invocation-id"]
            assert host.wait_for_stderr(r"stopped responding for .* killing it")
            assert client.get("/hello/after").text == "Hello after"
        assert host.worker_pids() != before
        line = host.wait_for_log(msg="invocation", invocation_id=lost.headers["x-invocation-id"])
        assert (line["status"], line["worker_exit"]) == (502, "exit code -9")
        assert line["function"] == "runaway_regex"  # what killed it: it was not said
    finally:
        gen.close()


def test_a_host_stopped_whole_and_resumed_kills_no_worker() -> None:
    """docker pause, or Ctrl-Z then fg: every process of the host stopped, an invocation's
    deadline passing meanwhile. Resumed (the supervisor first), the worker times the
    invocation out itself: the supervisor, stopped too, took its watchdog's silence for a
    worker that had stopped answering and killed it."""
    gen = started("basic", "--workers", "1", "--cancel-grace", "0.5")
    host = next(gen)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            overdue = pool.submit(lambda: httpx.get(host.url + "/overdue-soon", timeout=30))
            host.wait_inflight(1)
            (worker,) = host.worker_pids()
            others = [*children(host.proc.pid), worker]
            for pid in [host.proc.pid, *others]:
                os.kill(pid, signal.SIGSTOP)
            time.sleep(8)  # past the deadline (3 s), the grace and the supervisor's 3 s
            os.kill(host.proc.pid, signal.SIGCONT)
            time.sleep(1.5)  # a tick of the supervisor's while the worker still sleeps
            for pid in others:
                os.kill(pid, signal.SIGCONT)
            assert overdue.result(timeout=30).status_code == 504
        assert host.worker_pids() == {worker}
        assert not any("stopped responding" in line for line in host.stderr_lines)
    finally:
        gen.close()


_BLOCKED = "event loop blocked; an async function is calling blocking code; replacing this worker"


def test_a_worker_out_of_file_descriptors_still_watches_its_loop() -> None:
    # A worker at its open-files limit (RLIMIT_NOFILE, with a burst of connections) must
    # keep its watchdog, which reads the worker's memory use from /proc every second: the
    # watchdog died on EMFILE, and an event loop blocked after that was never noticed.
    gen = started("basic", "--workers", "1", "--cancel-grace", "0.5")
    host = next(gen)
    try:
        assert httpx.get(host.url + "/hello/ready").status_code == 200  # it serves
        (pid,) = host.worker_pids()
        limit = len(os.listdir(f"/proc/{pid}/fd")) + 4
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
        address = httpx.URL(host.url)
        burst = [socket.create_connection((address.host, address.port)) for _ in range(limit)]
        deadline = time.monotonic() + 10
        while len(os.listdir(f"/proc/{pid}/fd")) < limit:  # every fd it may have is taken
            assert time.monotonic() < deadline, "the worker did not take the connections"
            time.sleep(0.05)
        time.sleep(2.5)  # the watchdog reads /proc once a second: twice with no fd free
        for sock in burst:
            sock.close()
        with host.client(timeout=15) as client:
            lost = client.get("/block-loop")
            assert lost.status_code == 502
            assert host.wait_for_log(msg=_BLOCKED)["invocations"] == [lost.json()["invocation_id"]]
            assert client.get("/hello/after").text == "Hello after"
    finally:
        gen.close()


def test_a_stream_runs_under_its_functions_timeout() -> None:
    # /ticker-short has timeout=0.5. Its stream watches ctx.cancelled: at the deadline it
    # is told (reason "timeout") and ends whole. A deaf one is cut short --cancel-grace
    # later (no last chunk, so the client can tell), and counts as a timeout.
    gen = started("basic", "--workers", "1", "--cancel-grace", "0.5")
    host = next(gen)
    try:
        with host.client() as client:
            with client.stream("GET", "/ticker-short") as r:
                ticks = [line for line in r.iter_lines() if line]  # ends cleanly
            whole = r.headers["x-invocation-id"]
            cut = read_cut_short(client, "/ticker-short?deaf=1")[0].headers["x-invocation-id"]
            assert client.get("/hello/after").text == "Hello after"
        assert len(ticks) >= 2 and set(ticks) == {"tick"}
        line = host.wait_for_log(msg="invocation", invocation_id=whole)
        assert (line["outcome"], line["level"], line["cancel_reason"]) == ("ok", "info", "timeout")
        line = host.wait_for_log(msg="invocation", invocation_id=cut)
        assert (line["outcome"], line["level"], line["status"]) == ("timeout", "error", 200)
        assert line["error"] == "TimeoutError: the stream outlived its function's timeout of 0.5s"
        assert host.wait_for_log(msg="ticker stopped", invocation_id=cut)["reason"] == "timeout"
        short = [f for f in host.status()["functions"] if f["name"] == "ticker_short"]
        assert (short[0]["inflight"], short[0]["errors"]) == (0, 1)
    finally:
        gen.close()


def _answers(host: Host, count: int) -> list[bytes]:
    """What each of ``count`` connections, all held open at once, gets for a request."""
    address = httpx.URL(host.url)
    conns = [socket.create_connection((address.host, address.port)) for _ in range(count)]
    try:
        for conn in conns:
            conn.sendall(b"GET /hello/many HTTP/1.1\r\nHost: x\r\n\r\n")  # kept open
        answers = []
        for conn in conns:
            conn.settimeout(10)
            try:
                answers.append(conn.recv(65536).split(b"\r\n", 1)[0])
            except ConnectionResetError:
                answers.append(b"reset")
        return answers
    finally:
        for conn in conns:
            conn.close()


def test_the_host_raises_its_open_files_limit_to_the_hard_limit() -> None:
    # a shell's default soft limit (1024, here 64) would cap each worker's connections;
    # the hard limit is what the host may use, and uses
    hard = min(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1])  # none may raise it
    assert hard >= 512, f"this machine's hard limit on open files ({hard}) is too low to test"
    host = Host(APPS / "basic", "--workers", "1", open_files=(64, hard)).wait_ready()
    try:
        assert _answers(host, 300) == [b"HTTP/1.1 200 OK"] * 300
        (pid,) = host.worker_pids()
        assert resource.prlimit(pid, resource.RLIMIT_NOFILE)[0] == hard
        low = [line for line in host.stderr_lines if "limit on open files" in line]
        assert bool(low) == (hard < 4096)  # the banner names a low hard limit
    finally:
        host.stop()


def test_a_worker_near_its_open_files_limit_says_so() -> None:
    # past the limit its loop closes new connections unanswered: without this line, the
    # clients' resets are all there is to see
    host = Host(APPS / "basic", "--workers", "1", open_files=(64, 64)).wait_ready()
    try:
        warned = [line for line in host.stderr_lines if "limit on open files is 64" in line]
        assert warned and "raise it" in warned[0]
        answers = _answers(host, 80)
        assert b"HTTP/1.1 200 OK" in answers and set(answers) != {b"HTTP/1.1 200 OK"}
        line = host.wait_for_log(level="warning", open_file_limit=64)
        assert "near its limit on open files" in line["msg"] and "ulimit -n" in line["msg"]
        assert 16 <= line["connections"] < 64
    finally:
        host.stop()


def test_an_async_function_deaf_to_cancellation_gets_its_504_when_its_worker_is_replaced(
    strict_host: Host,
) -> None:
    """It swallows CancelledError: its client is answered when the host gives up on it
    (deadline + --cancel-grace), not whenever the function would return."""
    with strict_host.client() as client:
        r = client.get("/deaf-async", timeout=30)
    assert r.status_code == 504
    invocation_id = r.headers["x-invocation-id"]
    assert r.json() == {
        "error": "function 'deaf_async' did not finish within its timeout of 0.3s",
        "invocation_id": invocation_id,
    }
    replaced = strict_host.wait_for_log(
        invocation_id=invocation_id,
        msg=("function did not return after its timeout and cancellation; replacing this worker"),
    )
    assert replaced["function"] == "deaf_async"
    # answered before the function ended: its last line comes after
    assert not [line for line in strict_host.logs() if line.get("msg") == "deaf function done"]
    with strict_host.client() as client:
        assert client.get("/hello/after").text == "Hello after"


def test_hibana_status_at_the_supervisors_open_files_limit_does_not_stop_the_host(
    tmp_path: Path,
) -> None:
    """The supervisor holds a duplicate of every worker's connection: it reaches its limit
    before its workers do, and an admin call then must be told so, not kill the host."""
    app_dir = copy_app("basic", tmp_path)
    host = Host(app_dir, "--workers", "2", open_files=(64, 64)).wait_ready()
    addr, port = host.url.removeprefix("http://").split(":")
    idle: list[socket.socket] = []
    try:
        for _ in range(120):
            with contextlib.suppress(OSError):
                idle.append(socket.create_connection((addr, int(port)), timeout=5))
        # once the workers have taken them, and handed their duplicates over
        deadline = time.monotonic() + 30
        while (said := run_cli("status", "--app", str(app_dir))).returncode == 0:
            assert time.monotonic() < deadline, "status answered, with every fd taken"
            time.sleep(0.2)
        assert said.returncode == 1, said.stdout + said.stderr
        assert "at its limit on open files" in said.stderr, said.stderr
        assert host.proc.poll() is None, "\n".join(host.stderr_lines)
        for sock in idle:
            sock.close()
        idle.clear()
        deadline = time.monotonic() + 20
        while run_cli("status", "--app", str(app_dir)).returncode != 0:
            assert time.monotonic() < deadline, "status never answered again"
            time.sleep(0.2)
    finally:
        for sock in idle:
            sock.close()
        host.stop()
    assert host.proc.returncode == 0


def test_a_sync_invocation_whose_deadline_passed_while_it_queued_for_a_thread_never_runs(
    tmp_path: Path,
) -> None:
    """Its client has had its 504; run later, it would repeat its side effects when the
    client retries."""
    for host in started(copy_app("basic", tmp_path), "--workers", "1"):
        addr, port = host.url.removeprefix("http://").split(":")
        # 60 at once on 40 threads: 20 wait for one, and their deadline passes there
        socks = [socket.create_connection((addr, int(port)), timeout=10) for _ in range(60)]
        try:
            for sock in socks:
                sock.sendall(b"GET /busy/0.6 HTTP/1.1\r\nHost: x\r\n\r\n")
            heads = [sock.recv(64) for sock in socks]
        finally:
            for sock in socks:
                sock.close()
        assert all(head.startswith(b"HTTP/1.1 504 ") for head in heads), heads
        time.sleep(1.5)  # the first 40 have returned: the others would have started by now
        with httpx.Client() as client:
            assert client.get(host.url + "/hello/after").status_code == 200
        started_lines = [x for x in host.logs() if x.get("msg") == "busy started"]
        # none started past its deadline (those that waited for a thread would start
        # about 0.5 s late)
        assert 40 <= len(started_lines) < 60, len(started_lines)
        assert min(x["remaining"] for x in started_lines) > -0.05, started_lines


def test_a_sync_invocation_queued_for_a_thread_past_its_deadline_does_not_replace_its_worker(
    tmp_path: Path,
) -> None:
    """Every thread is busy with work well within its timeout: one more request waits for a
    thread, gets its 504, and never runs. It is not stuck (nothing of it runs), so its
    worker, busy and healthy, is not replaced when its grace is over."""
    for host in started(copy_app("basic", tmp_path), "--workers", "1", "--cancel-grace", "0.2"):
        before = host.worker_pids()
        addr, port = host.url.removeprefix("http://").split(":")
        # 40 threads, each on a function with 4 s to go and a timeout of 30 s
        socks = [socket.create_connection((addr, int(port)), timeout=30) for _ in range(40)]
        try:
            for sock in socks:
                sock.sendall(b"GET /work/4 HTTP/1.1\r\nHost: x\r\n\r\n")
            host.wait_inflight(40, "work")
            with httpx.Client(base_url=host.url, timeout=30) as client:
                late = client.get("/busy/0")  # a timeout of 0.1 s, spent waiting for a thread
            heads = [sock.recv(64) for sock in socks]  # by now its grace is long over
        finally:
            for sock in socks:
                sock.close()
        assert late.status_code == 504
        assert all(head.startswith(b"HTTP/1.1 200 ") for head in heads), heads
        # its line says why, not only that it took too long: it never ran
        line = host.wait_for_log(msg="invocation", invocation_id=late.headers["x-invocation-id"])
        assert line["error"] == (
            "timed out after 0.1s waiting for a thread (every one of the worker's was busy): "
            "it did not run"
        )
        with httpx.Client(base_url=host.url) as client:
            assert client.get("/hello/after").text == "Hello after"
        assert host.worker_pids() == before
        assert not [x for x in host.logs() if "replacing this worker" in x.get("msg", "")]


def test_a_request_waiting_for_a_permit_on_a_retiring_worker_is_answered() -> None:
    """A stuck function makes its worker retire while a request on it waits for the
    permit of a function with a max_concurrency: it may wait its --concurrency-wait and
    then run its timeout, and its answer comes, not a connection closed under it."""
    gen = started("retiring", "--workers", "1", "--cancel-grace", "0.1", "--concurrency-wait", "30")
    host = next(gen)
    try:
        with (
            host.client() as first,
            host.client() as second,
            concurrent.futures.ThreadPoolExecutor(2) as pool,
        ):
            holder = pool.submit(first.get, "/hold/4.5")
            host.wait_inflight(1, "hold")
            waiter = pool.submit(second.get, "/hold/4.5")
            deadline = time.monotonic() + 20
            while not host.function_status("hold")["oldest_wait_s"]:
                assert time.monotonic() < deadline, "the second request never waited"
                time.sleep(0.02)
            with host.client() as client:
                assert client.get("/hang").status_code == 504
            host.wait_for_log(
                msg="function did not return after its timeout and cancellation; "
                "replacing this worker"
            )
            assert holder.result().text == "held"
            assert waiter.result().text == "held"
        with host.client() as client:
            assert client.get("/hold/0").text == "held"  # served by the new worker
    finally:
        gen.close()


def test_a_sync_invocation_whose_client_left_while_it_queued_for_a_thread_never_runs(
    tmp_path: Path,
) -> None:
    """As one whose client leaves while it waits for a max_concurrency permit: it is no
    one's to run, and its client, gone, sends it again."""
    for host in started(copy_app("basic", tmp_path), "--workers", "1"):
        addr, port = host.url.removeprefix("http://").split(":")
        socks = [socket.create_connection((addr, int(port)), timeout=30) for _ in range(40)]
        try:
            for sock in socks:
                sock.sendall(b"GET /work/3 HTTP/1.1\r\nHost: x\r\n\r\n")
            host.wait_inflight(40, "work")  # every thread is busy
            with socket.create_connection((addr, int(port)), timeout=30) as gone:
                gone.sendall(b"GET /hello/gone HTTP/1.1\r\nHost: x\r\n\r\n")
                host.wait_inflight(1, "hello")  # it waits for a thread
            heads = [sock.recv(64) for sock in socks]
        finally:
            for sock in socks:
                sock.close()
        assert all(head.startswith(b"HTTP/1.1 200 ") for head in heads), heads
        line = host.wait_for_log(msg="invocation", path="/hello/gone")
        assert (line["outcome"], line["cancel_reason"]) == ("cancelled", "client_disconnected")
        with httpx.Client(base_url=host.url) as client:
            assert client.get("/hello/after").text == "Hello after"
        assert not [x for x in host.logs() if x.get("msg") == "greeting" and x["name"] == "gone"]


def test_a_queue_message_whose_deadline_passed_while_it_waited_for_a_thread_is_run_later(
    tmp_path: Path,
) -> None:
    """Every thread is busy with sync HTTP functions: a sync queue function's message waits
    for one past its timeout and is not run then. That is no attempt of its own: it is
    delivered again and runs, where it became a dead letter (its only attempt timed out)."""
    app_dir = copy_app("busy_threads", tmp_path)
    for host in started(app_dir, "--workers", "1", "--cancel-grace", "0.2"):
        addr, port = host.url.removeprefix("http://").split(":")
        socks = [socket.create_connection((addr, int(port)), timeout=30) for _ in range(40)]
        try:
            for sock in socks:
                sock.sendall(b"GET /work/3 HTTP/1.1\r\nHost: x\r\n\r\n")
            host.wait_inflight(40, "work")  # every thread is busy
            with host.client() as client:
                assert client.post("/enqueue").status_code == 204
            heads = [sock.recv(64) for sock in socks]
        finally:
            for sock in socks:
                sock.close()
        assert all(head.startswith(b"HTTP/1.1 200 ") for head in heads), heads
        line = host.wait_for_log(msg="invocation", function="later", outcome="ok", timeout=20)
        assert line["attempt"] == 1
        assert read_jsonl(app_dir / "ran.jsonl") == [{"data": {"n": 1}, "attempt": 1}]
        unrun = host.wait_for_log(msg="invocation", function="later", outcome="cancelled")
        assert unrun["released"] is True
        assert unrun["error"] == "its deadline passed before a thread was free to run it"


def test_a_loop_blocked_within_its_functions_timeout_is_not_blamed_on_one_waiting_for_a_thread(
    tmp_path: Path,
) -> None:
    """The event loop is blocked for a while by an async function well within its timeout,
    while a sync invocation that waits for a thread (every one busy) is past its deadline
    and grace: that one never ran and blocks nothing, so the worker is not killed for it
    (its 40 requests in flight were 502s)."""
    app_dir = copy_app("busy_threads", tmp_path)
    for host in started(app_dir, "--workers", "1", "--cancel-grace", "0.2"):
        before = host.worker_pids()
        addr, port = host.url.removeprefix("http://").split(":")
        socks = [socket.create_connection((addr, int(port)), timeout=30) for _ in range(42)]
        try:
            for sock in socks[:40]:
                sock.sendall(b"GET /work/5 HTTP/1.1\r\nHost: x\r\n\r\n")
            host.wait_inflight(40, "work")  # every thread is busy
            socks[40].sendall(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
            host.wait_inflight(1, "quick")  # it waits for a thread
            socks[41].sendall(b"GET /block-loop/3 HTTP/1.1\r\nHost: x\r\n\r\n")
            heads = [sock.recv(64) for sock in socks]
        finally:
            for sock in socks:
                sock.close()
        assert all(head.startswith(b"HTTP/1.1 200 ") for head in heads[:40]), heads
        assert heads[40].startswith(b"HTTP/1.1 504 ")
        assert heads[41].startswith(b"HTTP/1.1 200 ")
        assert host.worker_pids() == before
        assert not [x for x in host.logs() if "event loop blocked" in x.get("msg", "")]


def test_an_async_function_holding_the_gil_within_its_timeout_is_not_blamed_on_one_queued(
    tmp_path: Path,
) -> None:
    """An async function holds the GIL in C code for a while, well within its timeout, so
    the worker's watchdog stops meanwhile; a sync invocation waiting for the only thread is
    past its deadline and grace. That one never ran and blocks nothing: the supervisor took
    its deadline for the worker's, killed the worker and answered 502 for what it ran."""
    app_dir = copy_app("busy_threads", tmp_path)
    args = ("--workers", "1", "--threads", "1", "--cancel-grace", "0.2")
    for host in started(app_dir, *args):
        before = host.worker_pids()
        addr, port = host.url.removeprefix("http://").split(":")
        socks = [socket.create_connection((addr, int(port)), timeout=30) for _ in range(3)]
        try:
            socks[0].sendall(b"GET /work/9 HTTP/1.1\r\nHost: x\r\n\r\n")
            host.wait_inflight(1, "work")  # the only thread is busy
            socks[1].sendall(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
            assert socks[1].recv(64).startswith(b"HTTP/1.1 504 ")  # it waits for a thread
            # the watchdog beats once a second while nothing ran: its next round (a tenth
            # of a second apart from then) sees the invocations in flight now
            time.sleep(1.5)
            socks[2].sendall(b"GET /hold-gil/6 HTTP/1.1\r\nHost: x\r\n\r\n")
            heads = [socks[0].recv(64), socks[2].recv(64)]
        finally:
            for sock in socks:
                sock.close()
        assert all(head.startswith(b"HTTP/1.1 200 ") for head in heads), heads
        assert host.worker_pids() == before
        assert not any("stopped responding" in line for line in host.stderr_lines)
