"""A client that leaves: the function that stops as it is told is no failure in the log,
and one that left while it waited for a permit neither."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.hosts import APPS, Host, started


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    yield from started(APPS / "client_gone", "--workers", "1")


def _send(host: Host, path: str) -> socket.socket:
    """A connection that has sent GET ``path`` and reads nothing of the answer."""
    url = urlsplit(host.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


@pytest.mark.parametrize(("path", "function"), [("/obeys", "obeys"), ("/obeys-sync", "obeys_sync")])
def test_a_function_that_stops_when_its_client_leaves_is_logged_as_no_error(
    host: Host, path: str, function: str
) -> None:
    sock = _send(host, path)
    host.wait_inflight(1, function)
    sock.close()
    line = host.wait_for_log(msg="invocation", function=function)
    assert line["outcome"] == "cancelled"
    assert line["cancel_reason"] == "client_disconnected"
    # its 503 reached no one, and it did what it was asked: no error for a log alert to count
    assert line["level"] == "info"
    assert "error" not in line
    assert host.function_status(function)["errors"] == 0


def test_a_request_whose_client_leaves_while_it_waits_for_a_permit_is_no_error(
    host: Host,
) -> None:
    holder = _send(host, "/one-at-a-time")
    host.wait_inflight(1, "one_at_a_time")
    waiter = _send(host, "/one-at-a-time")
    deadline = time.monotonic() + 20
    while host.function_status("one_at_a_time")["oldest_wait_s"] is None:
        assert time.monotonic() < deadline, "the second request never waited for the permit"
        time.sleep(0.02)  # until it waits for the permit the holder has
    waiter.close()
    line = host.wait_for_log(msg="invocation", function="one_at_a_time", outcome="cancelled")
    assert line["cancel_reason"] == "client_disconnected"
    assert line["level"] == "info"
    holder.close()
    done = host.wait_for_log(msg="invocation", function="one_at_a_time", outcome="ok")
    assert done["level"] == "info"
