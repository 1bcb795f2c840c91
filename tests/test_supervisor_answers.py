"""What the supervisor answers itself, for requests no worker takes: each answer's
traceparent continues the trace the request carried, as a worker's answer does (before,
these answers named no trace at all)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.hosts import Host

SENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_the_503_of_a_dev_host_waiting_for_a_fix_continues_the_requests_trace(
    tmp_path: Path,
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text("import hibana\nraise RuntimeError('not yet')\n")
    host = Host(app_dir, command="dev")
    try:
        waiting = host.wait_for_stderr("Waiting for a change to")
        url = re.search(r"until then (http://\S+) answers 503", waiting)
        assert url is not None, waiting
        traced = httpx.get(url[1] + "/v", headers={"traceparent": SENT}, timeout=10)
        untraced = httpx.get(url[1] + "/v", timeout=10)
        twice = httpx.get(
            url[1] + "/v", headers=[("traceparent", SENT), ("traceparent", SENT)], timeout=10
        )
    finally:
        host.stop()
    assert traced.status_code == untraced.status_code == twice.status_code == 503
    assert "the app does not load" in traced.json()["error"]
    version, trace_id, span_id, flags = traced.headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", SENT.split("-")[1], "01")
    assert span_id != SENT.split("-")[2] and re.fullmatch("[0-9a-f]{16}", span_id)
    # none carried, or two (no one trace to continue): a trace of its own, as a worker's
    for answer in (untraced, twice):
        _, other, _, _ = answer.headers["traceparent"].split("-")
        assert other != trace_id and re.fullmatch("[0-9a-f]{32}", other)
