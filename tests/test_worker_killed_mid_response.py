"""A worker killed while it sends a response: its client gets the response cut short (its
status line went out, so nothing else can be answered), and the invocation has a log line
saying so, as every invocation a dead worker takes with it has."""

from __future__ import annotations

import os
import signal

import httpx
import pytest

from tests.hosts import started


def test_a_response_cut_short_by_its_worker_dying_is_logged_naming_it() -> None:
    gen = started("basic", "--workers", "1")
    host = next(gen)
    try:
        with host.client(timeout=30) as client, client.stream("GET", "/flood") as r:
            assert r.status_code == 200
            invocation = r.headers["x-invocation-id"]
            parts = r.iter_raw(65536)
            next(parts)  # the response has begun; this client then stops reading
            host.wait_inflight(1, "flood")
            (victim,) = host.worker_pids()
            os.kill(victim, signal.SIGKILL)
            with pytest.raises(httpx.RemoteProtocolError):
                for _ in parts:
                    pass
        line = host.wait_for_log(msg="invocation", invocation_id=invocation)
        assert line["function"] == "flood"
        assert line["outcome"] == "error" and line["level"] == "error"
        assert "status" not in line  # the worker sent 200; the supervisor sent nothing
        assert line["error"] == (
            f"worker died while sending invocation {invocation}'s response: "
            "its client got the response cut short"
        )
        assert (line["pid"], line["worker_exit"]) == (victim, "exit code -9")
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
        host.wait_for_stderr(r"was sending 1 response\(s\): cut short")
        with host.client() as client:
            assert client.get("/hello/after").text == "Hello after"
    finally:
        gen.close()
