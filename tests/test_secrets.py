"""Secrets: encrypted at rest, granted per function, redacted from logs, and checked
before the host serves."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.hosts import Host, copy_app, run_cli, started
from tests.test_webhooks import (
    API_TOKEN,
    GH_SECRET,
    SECRETS,
    SLACK_SECRET,
    set_all,
    set_secret,
)


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "keys" / "key"
    monkeypatch.setenv("HIBANA_SECRET_KEY_FILE", str(path))
    return path


@pytest.fixture
def app_dir(tmp_path: Path, key_file: Path) -> Path:
    return copy_app("webhooks", tmp_path)


def test_secrets_are_encrypted_at_rest_and_listed_by_name(app_dir: Path, key_file: Path) -> None:
    set_all(app_dir)
    assert key_file.stat().st_mode & 0o777 == 0o600
    listed = run_cli("secrets", "list", "--app", str(app_dir))
    assert listed.stdout.split() == ["api-token", "gh-secret", "slack-secret", "std-secret"]
    db = app_dir / ".hibana" / "state.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(FULL)")
    raw = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith("state.db"))
    for value in (API_TOKEN, GH_SECRET, SLACK_SECRET):
        assert value.encode() not in raw
    assert b"api-token" in raw  # the names are not secret
    # sealed or not, they stay out of the app's repository: git ignores the whole folder
    assert "*" in (db.parent / ".gitignore").read_text().splitlines()
    removed = run_cli("secrets", "rm", "api-token", "--app", str(app_dir))
    assert removed.returncode == 0 and removed.stdout.strip() == "Deleted secret api-token"
    again = run_cli("secrets", "rm", "api-token", "--app", str(app_dir))
    assert again.returncode == 1 and "no secret 'api-token'" in again.stderr


def test_functions_read_granted_secrets_and_logs_never_show_them(app_dir: Path) -> None:
    set_all(app_dir)
    for host in started(app_dir, "--workers", "1"):
        with host.client() as client:
            got = client.get("/uses-token").json()
            failed = client.get("/uses-token", params={"fail": "1"})
            ungranted = client.get("/no-grants").json()
        assert ungranted == {
            "refused": "function 'no_grants' may not read secret 'api-token': it names no "
            "secrets; add 'api-token' to secrets=[...] in its decorator",
            "names": [],
            # a Mapping's `in` and get() answer, where they raised that SecretError
            "in": False,
            "get": "none",
        }
        assert got["length"] == len(API_TOKEN) and got["names"] == ["api-token"]
        assert got["refused"].startswith(
            "function 'uses_token' may not read secret 'gh-secret': it names only api-token"
        )
        assert failed.status_code == 500
        line = host.wait_for_log(msg="calling the API")
        assert line["authorization"] == "Bearer [REDACTED]"
        assert host.wait_for_log(msg="curl -H Authorization: [REDACTED]")["stream"] == "stdout"
        error = host.wait_for_log(msg="function raised")
        assert "the API refused token [REDACTED]" in error["error"]
        assert "[REDACTED]" in error["traceback"]
        with host.client() as client:
            assert client.get("/uses-token", params={"stderr": "1"}).status_code == 200
            assert client.get("/uses-token", params={"enqueue": "1"}).status_code == 200
        host.wait_for_log(function="token_job", outcome="error")
        # a dead letter keeps its error: with the value redacted, as in the log
        dlq = run_cli("queue", "dlq", "token-jobs", "--json", "--app", str(app_dir))
        assert dlq.returncode == 0, dlq.stderr
        (dead,) = json.loads(dlq.stdout)
        assert dead["errors"][0]["error"] == "RuntimeError: the job's token [REDACTED] was refused"
        host.signal(signal.SIGTERM)
        host.wait_exit()
    everything = "\n".join(host.stdout_lines + host.stderr_lines)
    assert API_TOKEN not in everything
    # what the function wrote to stderr went out, redacted
    written_by = (
        "ValueError: printed token",
        "UserWarning: warned token",
        "raw token",
        "child token",
    )
    for written in written_by:
        assert f"{written} [REDACTED]" in everything


NUMERIC_APP = """
import hibana

app = hibana.App()


@app.http("/account", methods=["GET"], secrets=["account-id"])
def account(req, ctx):
    number = int(ctx.secrets["account-id"])
    ctx.log.info("charging", account=number, accounts=[number, {"id": number}], inside=number * 10)
    return "ok"
"""


def test_a_secret_a_logged_number_holds_is_redacted_and_the_line_stays_json(
    tmp_path: Path, key_file: Path
) -> None:
    """A secret that is digits (an account number, a PIN) logged as a number was replaced
    where it stood, outside any string: "account":[REDACTED], a stdout line that is no
    JSON, which a log shipper drops or chokes on."""
    (tmp_path / "function_app.py").write_text(NUMERIC_APP)
    assert set_secret(tmp_path, "account-id", "84920173").returncode == 0
    for host in started(tmp_path, "--workers", "1"):
        with host.client() as client:
            assert client.get("/account").text == "ok"
        line = host.wait_for_log(msg="charging")  # every stdout line is read as JSON
        assert line["account"] == "[REDACTED]"
        assert line["accounts"] == ["[REDACTED]", {"id": "[REDACTED]"}]
        assert line["inside"] == "[REDACTED]0"
        assert host.wait_for_log(msg="invocation", function="account")["status"] == 200
    assert "84920173" not in "\n".join(host.stdout_lines + host.stderr_lines)


URL_APP = """
import httpx

import hibana

app = hibana.App()


@app.http("/blob", methods=["GET"], secrets=["sas-sig"])
def blob(req, ctx):
    sig = ctx.secrets["sas-sig"]
    url = httpx.Request("GET", "https://acct.blob.example/c/b", params={"sig": sig}).url
    ctx.log.info("fetching", url=str(url))
    raise RuntimeError(f"GET {url} answered 403")
"""


def test_a_secret_percent_encoded_in_a_url_is_redacted(tmp_path: Path, key_file: Path) -> None:
    """A base64 signature (an Azure SAS token's sig=) holds + / =, which a URL holds as
    %2B %2F %3D: the URL an HTTP client logs or names in its error showed it whole."""
    (tmp_path / "function_app.py").write_text(URL_APP)
    sig = "Zm9v+YmFy/YmF6=="
    assert set_secret(tmp_path, "sas-sig", sig).returncode == 0
    for host in started(tmp_path, "--workers", "1"):
        with host.client() as client:
            assert client.get("/blob").status_code == 500
        assert host.wait_for_log(msg="fetching")["url"] == (
            "https://acct.blob.example/c/b?sig=[REDACTED]"
        )
        error = host.wait_for_log(msg="function raised")["error"]
        assert (
            error == "RuntimeError: GET https://acct.blob.example/c/b?sig=[REDACTED] answered 403"
        )
    everything = "\n".join(host.stdout_lines + host.stderr_lines)
    assert "Zm9v%2BYmFy%2FYmF6%3D%3D" not in everything and sig not in everything


LOGGING_APP = """
import logging

import hibana

app = hibana.App()


@app.http("/call", methods=["GET"], secrets=["api-token"])
def call(req, ctx):
    sent = f"Authorization: Bearer {ctx.secrets['api-token']}".encode()
    logging.getLogger("some.client").info(
        "sent", extra={"head": sent, "parts": [sent, {"raw": bytearray(b"caf\\xc3\\xa9")}]}
    )
    return "ok"
"""


def test_bytes_a_library_logs_through_logging_are_text_with_the_secret_redacted(
    tmp_path: Path, key_file: Path
) -> None:
    """``logging``'s ``extra=`` with bytes (a request's head an HTTP client logs) was
    written as the JSON encoder's base64, a granted token in it unredacted; ctx.log has
    written bytes as text for a while."""
    (tmp_path / "function_app.py").write_text(LOGGING_APP)
    assert set_secret(tmp_path, "api-token", API_TOKEN).returncode == 0
    for host in started(tmp_path, "--workers", "1"):
        with host.client() as client:
            assert client.get("/call").text == "ok"
        line = host.wait_for_log(msg="sent", logger="some.client")
        assert line["head"] == "Authorization: Bearer [REDACTED]"
        assert line["parts"] == ["Authorization: Bearer [REDACTED]", {"raw": "café"}]
    everything = "\n".join(host.stdout_lines + host.stderr_lines)
    assert API_TOKEN not in everything


def test_a_missing_secret_stops_the_start_naming_it(app_dir: Path) -> None:
    assert set_secret(app_dir, "gh-secret", GH_SECRET).returncode == 0
    host = Host(app_dir)
    assert host.wait_exit() == 1
    err = "\n".join(host.stderr_lines)
    assert "names secret" in err and "which is not set in sqlite:///" in err
    assert "set it with: hibana secrets set" in err


def test_a_secret_named_where_none_was_ever_set_is_named_not_the_key(
    app_dir: Path, key_file: Path
) -> None:
    """On a machine where no secret was ever set there is no key file: the start said the
    key file did not exist (or, with one left in ~/.config by another app, named the
    secret), so what a user was told hung on files outside the app. Now the secret."""
    assert not key_file.exists()
    host = Host(app_dir)
    assert host.wait_exit() == 1
    err = "\n".join(host.stderr_lines)
    assert "names secret" in err and "which is not set in sqlite:///" in err
    assert "set it with: hibana secrets set" in err
    assert "the secrets key file" not in err


def test_a_missing_or_wrong_key_is_named(
    app_dir: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    set_all(app_dir)
    monkeypatch.setenv("HIBANA_SECRET_KEY_FILE", str(tmp_path / "nowhere" / "key"))
    host = Host(app_dir)
    assert host.wait_exit() == 1
    assert "the secrets key file" in "\n".join(host.stderr_lines)
    assert "does not exist" in "\n".join(host.stderr_lines)
    other = tmp_path / "other-key"
    other.write_text("QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=\n")
    other.chmod(0o600)
    monkeypatch.setenv("HIBANA_SECRET_KEY_FILE", str(other))
    host = Host(app_dir)
    assert host.wait_exit() == 1
    assert "cannot be decrypted with the key in" in "\n".join(host.stderr_lines)
    other.chmod(0o644)
    listed = set_secret(app_dir, "x-secret", "value-1234")
    assert listed.returncode == 1 and "chmod 600" in listed.stderr
    # the folder the key is in, not the key: its mode is no matter (chmod 600 it was told)
    key_file.parent.chmod(0o755)
    monkeypatch.setenv("HIBANA_SECRET_KEY_FILE", str(key_file.parent))
    named = set_secret(app_dir, "x-secret", "value-1234")
    assert named.returncode == 1
    assert (
        f"the secrets key file {key_file.parent} is a directory; point HIBANA_SECRET_KEY_FILE "
        f"at the key file (the one the first `hibana secrets set` made, {key_file} if it was "
        "made there)"
    ) in named.stderr


def test_bad_secret_values_and_names(app_dir: Path) -> None:
    short = set_secret(app_dir, "pin", "123")
    assert short.returncode == 1 and "shorter than 4 characters" in short.stderr
    empty = set_secret(app_dir, "nothing", "")
    assert empty.returncode == 1 and "no value for nothing on stdin" in empty.stderr
    bad = set_secret(app_dir, "has space", "value-1234")
    assert bad.returncode == 2 and "secret name 'has space'" in bad.stderr
    assert "; ' ' (a space) is not one" in bad.stderr
    accented = run_cli("secrets", "set", "clé", "--app", str(app_dir))  # named before the value
    assert accented.returncode == 2, accented
    assert (
        "secret name 'clé': use 1 to 200 ASCII letters, digits, '-', '_' or '.'; 'é' is not one"
        in accented.stderr
    )
    binary = subprocess.run(
        [sys.executable, "-m", "hibana", "secrets", "set", "blob", "--app", str(app_dir)],
        input=b"\x89PNG\r\n\x1a\n\xff\xfe binary",
        capture_output=True,
        timeout=60,
    )
    assert binary.returncode == 1, binary
    assert binary.stderr.decode() == (
        "error: the value of blob on stdin is not UTF-8 text (byte 0); a secret is text: "
        "base64-encode a binary value first. Nothing was set\n"
    )
    listed = run_cli("secrets", "list", "--app", str(app_dir))
    assert "blob" not in listed.stdout


def test_secrets_set_checks_the_store_and_the_key_before_it_reads_the_value(
    app_dir: Path, key_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The value was read first (at a terminal: typed twice), and only then was the store,
    or the key file, found to be wrong. A value it would refuse shows which came first."""
    refused_once_read = "a" * 70_000
    (tmp_path / "notes").write_text("")
    bad = tmp_path / "notes" / "state.db"
    monkeypatch.setenv("HIBANA_STORE", f"sqlite:///{bad}")
    no_store = set_secret(app_dir, "api-token", refused_once_read)
    assert no_store.returncode == 1, no_store
    assert no_store.stderr == (
        f"error: the store sqlite:///{bad} cannot be made: {tmp_path / 'notes'} is a file, "
        "not a folder; name a path in a folder\n"
    )
    monkeypatch.delenv("HIBANA_STORE")
    key_file.parent.mkdir()
    key_file.write_text("QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=\n")
    key_file.chmod(0o644)
    open_key = set_secret(app_dir, "api-token", refused_once_read)
    assert open_key.returncode == 1, open_key
    assert open_key.stderr == (
        f"error: the secrets key file {key_file} can be read by other users (mode 644); "
        f"run: chmod 600 {key_file}\n"
    )


def test_a_key_file_that_cannot_be_made_is_named_with_the_fix(
    app_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A traceback: 'FileExistsError: [Errno 17] File exists: ...' from pathlib's mkdir."""
    (tmp_path / "notes").write_text("")
    key = tmp_path / "notes" / "key"
    monkeypatch.setenv("HIBANA_SECRET_KEY_FILE", str(key))
    result = set_secret(app_dir, "api-token", API_TOKEN)
    assert result.returncode == 1, result
    assert result.stderr == (
        f"error: cannot make the secrets key file {key} ({tmp_path / 'notes'} is a file, not "
        "a folder); point HIBANA_SECRET_KEY_FILE at a path in a folder this user may write "
        "to\n"
    )


def test_a_secret_value_is_64_kib_at_most(app_dir: Path) -> None:
    """Any size was taken: every log line is searched for every value, and `yes |` was read
    until memory ran out."""
    assert set_secret(app_dir, "cert", "a" * 65536 + "\n").returncode == 0
    over = set_secret(app_dir, "cert-2", "a" * 65537)
    assert over.returncode == 1, over
    assert over.stderr == (
        "error: the value of secret 'cert-2' is over 65536 bytes (64 KiB); keep a large file "
        "elsewhere, and the key that opens it as the secret\n"
    )
    endless = set_secret(app_dir, "cert-3", "a" * 10_000_000)
    assert endless.returncode == 1, endless
    assert endless.stderr == (
        "error: the value of cert-3 on stdin is over 65536 bytes (64 KiB); keep a large file "
        "elsewhere, and the key that opens it as the secret. Nothing was set\n"
    )
    listed = run_cli("secrets", "list", "--app", str(app_dir))
    assert listed.stdout.split() == ["cert"]


def test_secrets_are_not_in_the_environment_of_workers(app_dir: Path) -> None:
    set_all(app_dir)
    for host in started(app_dir, "--workers", "1"):
        httpx.get(host.url + "/uses-token")
        (pid,) = host.worker_pids()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert API_TOKEN.encode() not in environ
        assert os.environ.get("HIBANA_SECRET_KEY_FILE", "").encode() in environ


def test_a_missing_secret_on_postgresql_names_the_store_in_the_fix(
    app_dir: Path, pg_store_url: str
) -> None:
    """The fix must set it where the host looks, not in the app folder's SQLite store."""

    def run(command: str, value: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", *shlex.split(command)],
            input=value,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

    given = f"hibana secrets set api-token --app {app_dir} --store '{pg_store_url}'"
    run(given, API_TOKEN)
    host = Host(app_dir, "--store", pg_store_url)
    assert host.wait_exit() == 1
    err = "\n".join(host.stderr_lines)
    fix = re.search(r"set it with: (hibana secrets set (\S+) --app \S+ --store '(\S+)')", err)
    assert fix is not None and fix.group(3) == pg_store_url, err
    # the commands, run as said, set them where the host looks: it starts
    for name, value in SECRETS.items():
        run(fix.group(1).replace(f"set {fix.group(2)} ", f"set {name} ", 1), value)
    for _host in started(app_dir, "--workers", "1", "--store", pg_store_url):
        pass
