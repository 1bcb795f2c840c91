"""The command line: version, help, usage errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import hibana
from tests.hosts import APPS, copy_app, run_cli


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"hibana {hibana.__version__}"


@pytest.mark.parametrize("command", [[], ["serve"], ["dev"], ["new"]])
def test_help_on_every_command(command: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.returncode == 0
    assert "Usage:" in result.stdout
    if not command:
        for name in ("serve", "dev", "new"):
            assert name in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["serve", str(APPS / "basic"), "--port", "abc"], "Invalid value for '--port'"),
        (["serve", str(APPS / "basic"), "--port", "70000"], "less than or equal to 65535"),
        (["serve", str(APPS / "basic"), "--workers", "0"], "Invalid value for '--workers'"),
        (["serve", "/definitely/not/here"], "does not exist"),
        (["serve"], "Missing argument"),
        (["frobnicate"], "No such command"),
        (["serve", str(APPS / "basic"), "--log-level", "loud"], "log_level='loud'"),
        (["dev", str(APPS / "basic"), "--log-format", "xml"], "--log-format 'xml' is not one of"),
    ],
)
def test_bad_arguments_exit_2_with_usage(args: list[str], fragment: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_names_the_port_and_the_fix() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("serve", str(APPS / "basic"), "--port", str(port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--port" in result.stderr


def test_admin_port_in_use_names_the_port_and_the_fix(tmp_path: Path) -> None:
    app_dir = copy_app("basic", tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("serve", str(app_dir), "--port", "0", "--admin-port", str(port))
    assert result.returncode == 1
    assert f"cannot listen for `hibana status` and `hibana reload` on 127.0.0.1:{port}" in (
        result.stderr
    )
    assert "pass --admin-port another port" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("host", ["999.1.1.1", "192.0.2.1"])  # no such address; not ours
def test_an_address_that_cannot_be_listened_on_names_the_fix(host: str) -> None:
    result = run_cli("serve", str(APPS / "basic"), "--host", host, "--port", "0")
    assert result.returncode == 1
    assert f"cannot listen on {host}:0" in result.stderr
    assert "pass --host an address of this machine" in result.stderr
    assert "another host" not in result.stderr


def test_new_into_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_cli("new", str(blocker / "app"))
    assert result.returncode == 1
    assert "cannot write" in result.stderr


def test_new_refuses_a_file_an_existing_app_and_an_empty_name(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    result = run_cli("new", str(afile))
    assert (result.returncode, result.stderr.strip()) == (
        2,
        f"error: {afile} is a file, not a folder; choose a folder for the app",
    )
    assert run_cli("new", str(tmp_path / "app")).returncode == 0
    again = run_cli("new", str(tmp_path / "app"))
    assert again.returncode == 2 and "function_app.py already exists" in again.stderr
    empty = run_cli("new", "", cwd=tmp_path)
    assert empty.returncode == 2 and "DIRECTORY is empty" in empty.stderr
