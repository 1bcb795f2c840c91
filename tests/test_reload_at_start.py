"""A reload asked for (SIGHUP) while the host imports the app for the first time is done
once that import is over: it may have read the app's files before the caller's fix."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from tests.hosts import Host, children, run_cli

#: Serves what version.txt said as it imported; held in its import while ``hold`` exists,
#: and fails it if version.txt said "broken". Each import adds a line to imports.txt.
HELD_IMPORT = """
import pathlib
import time

import hibana

here = pathlib.Path(__file__).parent
version = (here / "version.txt").read_text()
with open(here / "imports.txt", "a") as imports:
    imports.write(version + "\\n")
while (here / "hold").exists():
    time.sleep(0.02)
if version == "broken":
    raise RuntimeError("version.txt says broken")
app = hibana.App()


@app.http("/v")
def v(req, ctx):
    return version
"""


def held_app(tmp_path: Path, version: str) -> Path:
    """An app folder of ``HELD_IMPORT`` whose version.txt says ``version``, its import
    held until the test removes ``hold``."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(HELD_IMPORT)
    (app_dir / "version.txt").write_text(version)
    (app_dir / "hold").touch()
    return app_dir


def imports(app_dir: Path) -> list[str]:
    """What version.txt said at each import of the app so far."""
    path = app_dir / "imports.txt"
    return path.read_text().splitlines() if path.exists() else []


def wait_for_imports(app_dir: Path, count: int) -> None:
    """Until the app's ``count``-th import has read version.txt."""
    deadline = time.monotonic() + 60
    while len(imports(app_dir)) < count:
        assert time.monotonic() < deadline, f"{len(imports(app_dir))} of {count} imports began"
        time.sleep(0.02)


def sighup_during_the_import(host: Host, app_dir: Path, command: str) -> None:
    """SIGHUP while the app's import is held; then the import goes on."""
    host.signal(signal.SIGHUP)
    if command == "dev":
        # its `hibana status` is answered by the loop that waits on the import, which
        # takes the signal that came before it: the SIGHUP is taken during the import
        status = run_cli("status", "--app", str(app_dir))
        assert "the app is loading for the first time" in status.stderr, status.stderr
    (app_dir / "hold").unlink()


def test_dev_tries_again_for_a_sighup_that_came_while_its_first_import_failed(
    tmp_path: Path,
) -> None:
    """The SIGHUP was noted, and then lost: the host waited for a change to a .py file,
    and the fix (here in a file the watcher does not watch) was never loaded."""
    app_dir = held_app(tmp_path, "broken")
    host = Host(app_dir, command="dev")
    try:
        wait_for_imports(app_dir, 1)
        (app_dir / "version.txt").write_text("fixed")  # too late for this import
        sighup_during_the_import(host, app_dir, "dev")
        host.wait_for_stderr("RuntimeError: version.txt says broken")
        host.wait_ready()  # imported again for the SIGHUP, without another change
        with host.client() as client:
            assert client.get("/v").text == "fixed"
        assert imports(app_dir) == ["broken", "fixed"]
    finally:
        host.stop()
    assert host.proc.returncode == 0


@pytest.mark.parametrize("command", ["serve", "dev"])
def test_a_sighup_during_the_first_import_reloads_once_it_serves(
    tmp_path: Path, command: str
) -> None:
    app_dir = held_app(tmp_path, "one")
    host = Host(app_dir, "--workers", "1", command=command)
    try:
        wait_for_imports(app_dir, 1)
        (app_dir / "version.txt").write_text("two")  # too late for this import
        sighup_during_the_import(host, app_dir, command)
        host.wait_ready()
        host.wait_for_stderr("Reloaded: generation 2 of the app serves")
        with host.client() as client:
            assert client.get("/v").text == "two"
        # once: the next reload is the third generation, not a fourth
        again = run_cli("reload", "--app", str(app_dir))
        assert again.returncode == 0, again.stderr
        assert "generation 3 serves" in again.stdout, again.stdout
        assert imports(app_dir) == ["one", "two", "two"]
    finally:
        host.stop()
    assert host.proc.returncode == 0


def hangup_handled(pid: int) -> bool:
    """``pid`` no longer dies of a SIGHUP: it catches, blocks or ignores it (its status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    masks = dict(line.split(":\t") for line in status.splitlines() if line.startswith("Sig"))
    return any(int(masks[name], 16) & 1 for name in ("SigCgt", "SigBlk", "SigIgn"))


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs (its zygotes, their workers and probes)."""
    found = children(pid)
    for child in list(found):
        found.extend(descendants(child))
    return found


def test_hangups_from_the_start_kill_no_process_of_the_host_and_reload_once_it_serves(
    tmp_path: Path,
) -> None:
    """A terminal's hangup sends SIGHUP to every process of the host. One that reached a
    zygote before it had set SIGHUP aside (as it imported hibana, before the app) killed
    it, and the host stopped: "the app crashed the process importing it". SIGHUPs are
    sent here from the moment the host takes them to all its processes, from each one's
    start, until it serves: it comes up, and the reload they ask for is done."""
    app_dir = held_app(tmp_path, "one")
    (app_dir / "hold").unlink()
    host = Host(app_dir, "--workers", "1")
    try:
        deadline = time.monotonic() + 60
        while not hangup_handled(host.proc.pid):
            assert host.proc.poll() is None and time.monotonic() < deadline
        sent = 0
        while not any("Listening on" in line for line in host.stderr_lines):
            assert host.proc.poll() is None, "\n".join(host.stderr_lines[-20:])
            assert time.monotonic() < deadline, "the host never served"
            for pid in [host.proc.pid, *descendants(host.proc.pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGHUP)
                    sent += 1
            time.sleep(0.002)
        host.wait_ready()
        host.wait_for_stderr("SIGHUP: reloading the app")
        host.wait_for_stderr("Reloaded: generation 2 of the app serves")
        with host.client() as client:
            assert client.get("/v").text == "one"
        assert sent > 10 and host.proc.poll() is None
    finally:
        host.stop()
    assert host.proc.returncode == 0
