"""Under systemd (``Type=notify`` / ``notify-reload``) the host says when it is ready, when
it reloads and when it stops, over the socket systemd names in ``NOTIFY_SOCKET``. The
test plays systemd's part: a datagram socket of its own."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hosts import Host, children

APP = """
import hibana

app = hibana.App()


@app.http("/v")
def v(req, ctx):
    return "one"
"""


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    try:
        yield sock, path
    finally:
        sock.close()


def _fields(sock: socket.socket) -> dict[str, str]:
    message = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in message.splitlines())


def test_the_host_tells_systemd_when_it_is_ready_reloads_and_stops(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(APP)
    host = Host(app_dir, "--workers", "1", env={"NOTIFY_SOCKET": path})
    try:
        ready = _fields(sock)
        # READY comes once requests can be served, not before
        assert ready["READY"] == "1"
        host.wait_ready()
        assert httpx.get(host.url + "/v", timeout=10).text == "one"
        assert ready["STATUS"] == f"serving generation 1 of {app_dir} on {host.url}"

        (app_dir / "function_app.py").write_text(APP.replace('"one"', '"two"'))
        host.signal(signal.SIGHUP)
        reloading = _fields(sock)
        assert reloading["RELOADING"] == "1"
        # systemd (notify-reload) matches it to the SIGHUP it sent by this clock
        assert abs(int(reloading["MONOTONIC_USEC"]) - time.monotonic_ns() // 1000) < 10e6
        ready = _fields(sock)
        assert ready["READY"] == "1"
        assert ready["STATUS"].startswith("serving generation 2 of")
        assert httpx.get(host.url + "/v", timeout=10).text == "two"

        (app_dir / "function_app.py").write_text("import hibana\napp = hibana.App(\n")
        host.signal(signal.SIGHUP)
        assert _fields(sock)["RELOADING"] == "1"
        ready = _fields(sock)  # still serving, and says the reload failed
        assert ready["READY"] == "1"
        assert ready["STATUS"].startswith("serving generation 2 of")
        assert "the last reload failed: " in ready["STATUS"]
        assert "SyntaxError" in ready["STATUS"]

        # the host's children are not the service: they do not inherit the socket
        for pid in [*children(host.proc.pid), *host.worker_pids()]:
            assert b"NOTIFY_SOCKET=" not in Path(f"/proc/{pid}/environ").read_bytes()

        host.signal(signal.SIGTERM)
        assert _fields(sock)["STOPPING"] == "1"
        assert host.wait_exit() == 0
    finally:
        host.stop()


def test_a_notify_socket_that_is_not_there_does_not_stop_the_host(tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(APP)
    # a socket that is not there: the host serves regardless
    host = Host(app_dir, "--workers", "1", env={"NOTIFY_SOCKET": str(tmp_path / "gone")})
    try:
        host.wait_ready()
        assert httpx.get(host.url + "/v", timeout=10).text == "one"
    finally:
        host.stop()
    assert host.proc.returncode == 0
