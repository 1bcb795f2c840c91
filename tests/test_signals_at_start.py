"""SIGHUP, SIGTERM and SIGINT in the first moments of ``hibana serve`` and ``hibana dev``,
while the command line still imports the host (a few hundred ms): a terminal that hangs up,
or ``systemctl stop`` right after ``start``. Their default action killed the process (SIGHUP
without a word, SIGINT with a traceback); now a stop is a stop before serving, and a SIGHUP
a reload once the host serves, as they are once the supervisor runs."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.hosts import Host
from tests.test_reload_at_start import held_app, imports


def signal_while_the_cli_imports(host: Host, sig: int) -> None:
    """Send ``sig`` once the process has begun importing the host's modules: it has loaded
    msgspec (an extension they import; the entry point's first step comes before), and it
    has not printed that it listens."""
    maps = Path(f"/proc/{host.proc.pid}/maps")
    deadline = time.monotonic() + 60
    while "msgspec" not in maps.read_text():
        assert host.proc.poll() is None, host.stderr_lines
        assert time.monotonic() < deadline, "the host never loaded msgspec"
        time.sleep(0.001)
    assert not any("Listening on" in line for line in host.stderr_lines)
    host.signal(sig)


@pytest.mark.parametrize(
    ("command", "sig"),
    [
        ("serve", signal.SIGTERM),
        ("serve", signal.SIGINT),
        ("dev", signal.SIGTERM),
        ("dev", signal.SIGINT),
    ],
)
def test_a_stop_before_the_host_serves_exits_0_saying_so(
    tmp_path: Path, command: str, sig: int
) -> None:
    app_dir = held_app(tmp_path, "one")  # its import waits: the host cannot serve yet
    host = Host(app_dir, command=command)
    try:
        signal_while_the_cli_imports(host, sig)
        (app_dir / "hold").unlink()
        code = host.wait_exit()
    finally:
        host.stop()
    assert code == 0, host.stderr_lines
    assert host.stderr_lines == ["Stopped before the app served"]


@pytest.mark.parametrize("command", ["serve", "dev"])
def test_a_sighup_before_the_host_serves_is_a_reload_once_it_serves(
    tmp_path: Path, command: str
) -> None:
    app_dir = held_app(tmp_path, "one")
    host = Host(app_dir, "--workers", "1", command=command)
    try:
        signal_while_the_cli_imports(host, signal.SIGHUP)
        (app_dir / "hold").unlink()
        host.wait_ready()
        host.wait_for_stderr("Reloaded: generation 2 of the app serves")
        with host.client() as client:
            assert client.get("/v").text == "one"
        host.signal(signal.SIGTERM)
        code = host.wait_exit()
    finally:
        host.stop()
    assert code == 0, host.stderr_lines
    # the first import, and the reload's: one (a SIGHUP before the supervisor ran counts
    # as one after it)
    assert imports(app_dir) == ["one", "one"]
