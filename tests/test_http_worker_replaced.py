"""A worker forked to replace one whose function ignores its deadline: the first request
it serves, whenever that comes, logs the worker's start-up as its cold start, not the
time the worker sat ready with nothing to do."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import httpx

from tests.hosts import APPS, Host


def test_a_replacement_workers_cold_start_is_its_start_up_not_its_idle_time() -> None:
    host = Host(APPS / "client_gone", "--workers", "1", "--cancel-grace", "0.2").wait_ready()
    try:
        (old,) = host.status()["workers"]
        # a request the old worker is running while it is replaced: it finishes it there
        url = urlsplit(host.url)
        running = socket.create_connection((url.hostname, url.port), timeout=10)
        running.sendall(b"GET /obeys HTTP/1.1\r\nHost: x\r\n\r\n")
        host.wait_inflight(1, "obeys")
        with host.client() as client:
            r = client.get("/deaf")
            assert r.status_code == 504
        host.wait_for_log(
            msg="function did not return after its timeout and cancellation; replacing this worker"
        )
        deadline = time.monotonic() + 30
        while True:
            new = [w for w in host.status()["workers"] if w["pid"] != old["pid"]]
            if new and new[0]["state"] == "ready" and new[0]["idle_s"] >= 2:
                break  # it has sat ready, with no request, for 2 s
            assert time.monotonic() < deadline, f"no replacement worker idle for 2 s: {new}"
            time.sleep(0.05)
        idle_ms = new[0]["idle_s"] * 1000
        running.close()
        with httpx.Client(base_url=host.url, timeout=30) as fresh:
            r = fresh.get("/hello")
        assert r.text == "hello"
        line = host.wait_for_log(msg="invocation", invocation_id=r.headers["x-invocation-id"])
        assert line["cold_start"] is True
        # the time the worker was idle is no part of it (it was 15 s, for a request 15 s on)
        assert line["cold_start_ms"] < idle_ms
        hello = host.function_status("hello")
        assert hello["last_cold_start_ms"] == line["cold_start_ms"]
    finally:
        host.stop()
