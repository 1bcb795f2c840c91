"""The command line: version, help, usage errors."""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import socket
import threading
from pathlib import Path

import httpx
import pytest

import hibana
from tests.hosts import APPS, Host, copy_app, not_a_host, run_cli, started


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


def test_dev_help_says_what_dev_does() -> None:
    """Not 'one worker by default': it keeps one warm and scales as serve does."""
    result = run_cli("dev", "--help")
    said = " ".join(result.stdout.replace("│", "").split())
    assert result.returncode == 0
    assert "Like serve, for development: one worker kept warm, a reload when a .py file" in said
    assert "an app that does not load is waited on (requests get 503 saying why)" in said


def test_help_states_every_options_default() -> None:
    """--prewarm, --memory-limit-mb, --workers, --idempotency-key, --id... said nothing of
    what they are when not given; each option's help of every command states it (typer's
    `[default: ...]`, or the help's words), unless the option is required."""
    import typer.main
    from typer.core import TyperGroup, TyperOption

    from hibana.cli.commands import cli

    def silent(group: TyperGroup, prefix: str) -> list[str]:
        found = []
        for name, command in group.commands.items():
            if isinstance(command, TyperGroup):
                found += silent(command, f"{prefix}{name} ")
                continue
            found += [
                f"{prefix}{name} {param.opts[0]}"
                for param in command.params
                if isinstance(param, TyperOption)
                and param.opts[0] != "--help"
                and not param.required
                and param.default is None
                and "default" not in (param.help or "")
            ]
        return found

    root = typer.main.get_command(cli)
    assert isinstance(root, TyperGroup)
    assert silent(root, "") == []


THREAD_NAMES = """
import threading
import time

import hibana

app = hibana.App()


@app.http("/thread")
def thread(req: hibana.Request, ctx: hibana.Context) -> str:
    time.sleep(0.2)  # blocks, as a call to a slow service does: the next one needs a thread
    return threading.current_thread().name
"""


@pytest.mark.parametrize(
    ("settings", "args", "most"),
    [
        ("", ["--threads", "1"], 1),
        ("", [], 40),
        # an app whose sync functions block on I/O says so itself; the flag wins over it
        ("threads=1", [], 1),
        ("threads=1", ["--threads", "8"], 8),
    ],
)
def test_threads_sets_how_many_sync_functions_a_worker_runs_at_once(
    tmp_path: Path, settings: str, args: list[str], most: int
) -> None:
    """A user whose sync functions block on I/O needs more than the 40 threads a worker
    had, or fewer; the pool's size could not be set, then only with --threads."""
    source = THREAD_NAMES.replace("hibana.App()", f"hibana.App({settings})")
    (tmp_path / "function_app.py").write_text(source)
    host = Host(tmp_path, "--workers", "1", *args).wait_ready()
    try:
        assert host.status()["scaling"]["threads"] == most
        with (
            httpx.Client(base_url=host.url, timeout=30) as client,
            concurrent.futures.ThreadPoolExecutor(8) as pool,
        ):
            names = list(pool.map(lambda _: client.get("/thread").text, range(8)))
        assert all(name.startswith("hibana-fn-") for name in names), names
        if most == 1:
            assert set(names) == {"hibana-fn-0"}
        else:
            assert len(set(names)) > 1  # eight at once, each blocking: several threads
    finally:
        host.stop()


def test_scripts_serve_given_options_alone_serves_the_example_with_them() -> None:
    """The README's first command, with a port of its own: `scripts/serve --port 8080`
    passed the options as the APP_DIR (a usage error), where no APP_DIR is the example."""
    root = Path(__file__).parent.parent
    host = Host(
        root / "examples" / "hello", "--workers", "1", launcher=[str(root / "scripts" / "serve")]
    ).wait_ready()
    try:
        r = httpx.get(host.url + "/hello/you", timeout=10)
        assert (r.status_code, r.text) == (200, "Hello you")
    finally:
        host.stop()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["serve", str(APPS / "basic"), "--port", "abc"], "Invalid value for '--port'"),
        (["serve", str(APPS / "basic"), "--port", "70000"], "less than or equal to 65535"),
        (["serve", str(APPS / "basic"), "--workers", "0"], "Invalid value for '--workers'"),
        (  # past what the zygote's board can hold: it was a traceback from the zygote
            ["serve", str(APPS / "basic"), "--workers", "99999999999999999999"],
            "Invalid value for '--workers' / '-w': Input should be less than or equal to 1024",
        ),
        (
            ["serve", str(APPS / "basic"), "--max-instances", "1025"],
            "Invalid value for '--max-instances': Input should be less than or equal to 1024",
        ),
        (
            ["serve", "/definitely/not/here"],
            "Invalid value for 'APP_DIR': folder /definitely/not/here does not exist; check the "
            "path, or write a starter app there with `hibana new /definitely/not/here`",
        ),
        (  # the app's file, not its folder: a new user's first try
            ["dev", str(APPS / "basic" / "function_app.py")],
            f"Invalid value for 'APP_DIR': {APPS / 'basic' / 'function_app.py'} is a file; pass "
            "the folder that holds the app's function_app.py: "
            f"`hibana dev {APPS / 'basic'}`",
        ),
        (["serve", "/dev/null"], "/dev/null is not a folder; pass the app's folder"),
        *(  # --app the app's file: its .hibana was looked for inside it (exit 1, the fix
            # named `hibana serve` on the file)
            (
                [*command, "--app", str(APPS / "queues" / "function_app.py")],
                f"Invalid value for '--app': {APPS / 'queues' / 'function_app.py'} is a file; "
                f"pass the folder that holds the app's function_app.py: --app {APPS / 'queues'}",
            )
            for command in (["status"], ["reload"], ["queue", "stats"], ["secrets", "list"])
        ),
        *(
            (
                [*command, "--app", "/definitely/not/here"],
                "Invalid value for '--app': folder /definitely/not/here does not exist; pass "
                "the folder that holds the app's function_app.py",
            )
            for command in (["status"], ["reload"], ["queue", "stats"])
        ),
        (["serve"], "Missing argument"),
        (["frobnicate"], "No such command"),
        *(  # an option left without its value said only that, with no usage line
            ([*command, flag], f"Option '{flag}' requires an argument")
            for command, flag in (
                (["serve", str(APPS / "basic")], "--port"),
                (["dev", str(APPS / "basic")], "-w"),
                (["queue", "send", "orders"], "--data"),
                (["status"], "--app"),
            )
        ),
        (
            ["serve", str(APPS / "basic"), "--log-level", "loud"],
            "--log-level (or $HIBANA_LOG_LEVEL) 'loud' is not one of: debug, info, warning, error",
        ),
        (["serve", str(APPS / "basic"), "--host", ""], "--host is empty; give the address"),
        (["serve", str(APPS / "basic"), "--host", " "], "--host is empty; give the address"),
        (
            ["serve", str(APPS / "basic"), "--min-instances", "3", "--max-instances", "1"],
            "--min-instances 3 is over --max-instances 1",
        ),
        (["dev", str(APPS / "basic"), "--log-format", "xml"], "--log-format 'xml' is not one of"),
        (["serve", str(APPS / "basic"), "--idle-timeout", "0"], "--idle-timeout 0 must be over 0"),
        (  # not a host that imports the app, then fails to bind the second socket (exit 1)
            ["serve", str(APPS / "basic"), "--port", "18999", "--admin-port", "18999"],
            "--admin-port 18999 is --port too: the admin endpoint needs a port of its own",
        ),
        (["serve", str(APPS / "basic"), "--idle-timeout", "nan"], "--idle-timeout nan must be"),
        (["serve", str(APPS / "basic"), "--idle-timeout", "inf"], "--idle-timeout inf must be"),
        *(  # a hung function's worker never replaced; a client's half-sent head held for ever
            (
                ["serve", str(APPS / "basic"), f"--{flag}", "inf"],
                f"--{flag} inf must be a finite number of seconds",
            )
            for flag in ("cancel-grace", "shutdown-timeout", "header-timeout")
        ),
    ],
)
def test_bad_arguments_exit_2_with_usage(args: list[str], fragment: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert fragment in " ".join(result.stderr.replace("│", "").split()), result.stderr
    assert "Usage:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command", [["serve", str(APPS / "queues"), "--port", "0"], ["queue", "stats"]]
)
@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://u:sekrit@[::1/db", "the store URL is malformed (Invalid IPv6 URL)"),
        (
            "postgresql://u:sekrit@127.0.0.1:99999/db",
            "the store URL postgresql://u:***@127.0.0.1:99999/db has port '99999', not a number "
            "in 1..65535",
        ),
        (
            "postgresql://u:sekrit@127.0.0.1/db?schema=s1&colour=red",
            "postgresql://u:***@127.0.0.1/db?schema=s1&colour=red is malformed: invalid URI "
            'query parameter: "colour"',
        ),
        (
            "postgresql://u:sekrit@127.0.0.1/db?sslmode=bogus",
            "postgresql://u:***@127.0.0.1/db?sslmode=bogus has sslmode='bogus'; sslmode takes "
            "one of disable, allow, prefer, require, verify-ca, verify-full",
        ),
        (
            "postgresql://u:sekrit@127.0.0.1/db?keepalives_idle=30s",
            "has keepalives_idle='30s'; keepalives_idle takes a whole number",
        ),
    ],
)
def test_a_malformed_store_url_is_a_usage_error(command: list[str], url: str, problem: str) -> None:
    """Not a traceback, nor a host that tries to connect and says the server is down."""
    result = run_cli(*command, "--store", url)
    said = " ".join(result.stderr.replace("│", "").split())
    assert result.returncode == 2, result.stderr
    assert "Usage:" in said and problem in said, result.stderr
    assert "fix the URL given to --store (or $HIBANA_STORE)" in said
    assert "Traceback" not in said and "sekrit" not in said


@pytest.mark.parametrize(
    "command",
    [
        ["dev", str(APPS / "queues"), "--port", "0"],
        ["queue", "send", "orders", "--data", "{}"],
        ["queue", "dlq", "orders"],
        ["queue", "redrive", "orders"],
        ["events", "publish", "orders", "--type", "t", "--source", "s"],
        ["secrets", "set", "token"],
        ["secrets", "list"],
        ["secrets", "rm", "token"],
    ],
)
def test_every_command_on_a_store_refuses_a_libpq_parameter_it_would_fail_on(
    command: list[str], tmp_path: Path
) -> None:
    """libpq reads sslmode and its like only as it connects: every command said the server
    could not be reached (exit 1). Now each names the parameter and what it takes."""
    url = "postgresql://u@127.0.0.1/db?target_session_attrs=primary&gssencmode=never"
    result = run_cli(*command, "--store", url, cwd=tmp_path)
    said = " ".join(result.stderr.replace("│", "").split())
    assert result.returncode == 2, result.stderr
    assert "gssencmode='never'; gssencmode takes one of disable, prefer, require" in said
    assert list(tmp_path.iterdir()) == []  # nothing made: no key file, no .hibana


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("bogus://x", "unknown store URL 'bogus://x'"),
        ("sqlite:///", "the store URL 'sqlite:///' names no file"),
    ],
)
def test_a_store_url_from_the_environment_is_named_as_from_there(
    url: str, problem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL in $HIBANA_STORE is not on the command line: the error said only "unknown
    store URL", and the user looked for a --store they had not given."""
    monkeypatch.setenv("HIBANA_STORE", url)
    result = run_cli("serve", str(APPS / "basic"), "--port", "0", cwd=tmp_path)
    said = " ".join(result.stderr.replace("│", "").split())
    assert result.returncode == 2, result.stderr
    assert problem in said and "fix the URL given to --store (or $HIBANA_STORE)" in said


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
    assert result.stderr == (
        f"error: cannot write {blocker / 'app' / 'function_app.py'}: Not a directory; choose a "
        "folder you can write to\n"
    )


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


def test_new_says_how_to_run_a_folder_whose_name_the_shell_would_split(tmp_path: Path) -> None:
    result = run_cli("new", "my app", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.splitlines()[-1] == "Run it:  hibana dev 'my app'"


def test_new_says_how_to_run_a_folder_whose_name_starts_with_a_dash(tmp_path: Path) -> None:
    """`hibana dev -app` would read it as an option: the command printed must run as is."""
    result = run_cli("new", "--", "-app", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "Run it:  hibana dev ./-app"
    assert (tmp_path / "-app" / "function_app.py").is_file()


TINY = """
import hibana

app = hibana.App()


@app.http("/hi")
def hi(req, ctx):
    return "hi"
"""


def _tiny_app(parent: Path, name: str) -> Path:
    app_dir = parent / name
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(TINY)
    return app_dir


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_a_stale_host_file_never_reaches_another_apps_host(tmp_path: Path) -> None:
    """A host killed with SIGKILL leaves its host.json; when another app's host gets its
    admin port, `--app` of the dead one must not show or reload the other one."""
    gone, other = _tiny_app(tmp_path, "gone"), _tiny_app(tmp_path, "other")
    port = _free_port()
    dead = Host(gone, "--admin-port", str(port)).wait_ready()
    dead.proc.kill()  # kill -9: no chance to remove its host.json
    dead.wait_exit()
    stale = gone / ".hibana" / "host.json"
    assert stale.exists()
    host = Host(other, "--admin-port", str(port)).wait_ready()
    try:
        assert host.admin_url == f"http://127.0.0.1:{port}"
        for command in ("status", "reload"):
            refused = run_cli(command, "--app", str(gone))
            assert refused.returncode == 1, refused
            assert refused.stderr.strip() == (
                f"error: no running host found for {gone}: {stale} is stale; it names the host "
                f"pid {dead.proc.pid} at {host.admin_url}, but the host answering there is pid "
                f"{host.proc.pid} serving {other.resolve()}; start one with `hibana serve {gone}`"
            )
        assert host.status()["generation"] == 1  # not reloaded by the refused `reload`
        assert "generation 2" not in "\n".join(host.stderr_lines)

        # the host itself reloads only if it is the one asked for: nothing between the
        # CLI's check and the reload can make it reload another app
        asked = httpx.post(
            host.admin_url + "/reload", params={"pid": host.proc.pid, "app": str(gone)}
        )
        assert asked.status_code == 409
        assert asked.json()["reloaded"] is False
        assert (asked.json()["pid"], asked.json()["app"]) == (host.proc.pid, str(other.resolve()))
        assert host.status()["generation"] == 1

        # a copy of the app folder carries the host's host.json along: the same pid
        # answers, but it does not serve the copy
        copy = tmp_path / "copy"
        shutil.copytree(other, copy)
        assert run_cli("status", "--app", str(copy)).returncode == 1

        # the app's own host answers, whatever path names the folder
        (tmp_path / "link").symlink_to(other)
        assert run_cli("status", "--app", str(other)).returncode == 0
        assert run_cli("status", cwd=other).returncode == 0
        reloaded = run_cli("reload", "--app", str(tmp_path / "link"))
        assert reloaded.returncode == 0, reloaded.stderr
        assert host.status()["generation"] == 2
    finally:
        host.stop()


def test_an_admin_answer_that_names_no_host_is_not_trusted(tmp_path: Path) -> None:
    """What answers at host.json's address must say whose host it is (as every hibana
    host's answer does), or the command acts on nothing."""
    app_dir = _tiny_app(tmp_path, "app")
    where = app_dir / ".hibana" / "host.json"
    answer = json.dumps({"generation": 1, "workers": []}).encode()
    with not_a_host(app_dir, answer) as admin:
        result = run_cli("status", "--app", str(app_dir))
    assert (result.returncode, result.stderr.strip()) == (
        1,
        f"error: {admin} (named in {where}) does not say which app it serves: it is not a "
        f"hibana host, or one older than this command; restart the app's host "
        f"(`hibana serve {app_dir}`)",
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:sekrit@127.0.0.1:1/db", "postgresql://u:***@127.0.0.1:1/db"),
        (
            "postgresql://u@127.0.0.1:1/db?password=sekrit&schema=s1",
            "postgresql://u@127.0.0.1:1/db?password=***&schema=s1",
        ),
    ],
)
def test_a_store_urls_password_is_never_shown(url: str, shown: str) -> None:
    result = run_cli("queue", "stats", "--store", url)
    assert result.returncode == 1
    assert f"cannot connect to the store {shown}:" in result.stderr
    assert "sekrit" not in result.stderr + result.stdout


def test_a_store_named_for_an_app_without_queues_is_checked_at_start(tmp_path: Path) -> None:
    """The store was opened only for queue, timer and event functions: a host given a URL
    that cannot connect served on, saying nothing, until one was added."""
    app_dir = _tiny_app(tmp_path, "app")
    url = "postgresql://127.0.0.1:1/db"
    result = run_cli("serve", str(app_dir), "--port", "0", "--store", url, timeout=30)
    assert result.returncode == 1
    assert f"error: cannot connect to the store {url}:" in result.stderr


def test_a_second_host_on_one_app_folder_warns_and_hands_status_back_when_it_stops(
    tmp_path: Path,
) -> None:
    app_dir = copy_app("basic", tmp_path)
    first = Host(app_dir, "--workers", "1").wait_ready()
    try:
        second = Host(app_dir, "--workers", "1").wait_ready()
        try:
            second.wait_for_stderr(rf"warning: another host \(pid {first.proc.pid}\) serves")
            assert json.loads(run_cli("status", "--json", "--app", str(app_dir)).stdout)["pid"] == (
                second.proc.pid
            )
        finally:
            second.stop()
        # the first one is the app folder's host again
        status = run_cli("status", "--json", "--app", str(app_dir))
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["pid"] == first.proc.pid
    finally:
        first.stop()


def test_a_caller_of_the_admin_endpoint_that_trickles_its_head_does_not_hold_the_host(
    tmp_path: Path,
) -> None:
    """The supervisor reads an admin request on its own loop, a second at most for each
    piece: a local caller sending a byte a fifth of a second held it (no status, no
    reload, no scaling) until 8 KiB had come, half an hour."""
    for host in started(copy_app("basic", tmp_path), "--workers", "1"):
        addr, port = host.admin_url.removeprefix("http://").split(":")
        stop = threading.Event()
        trickler = threading.Thread(target=_trickle, args=(addr, int(port), stop), daemon=True)
        trickler.start()
        try:
            assert host.status()["workers"], "no status while a caller trickled"
        finally:
            stop.set()
            trickler.join(10)


def _trickle(addr: str, port: int, stop: threading.Event) -> None:
    """Send a request's head a byte at a time until ``stop``, or until dropped."""
    with socket.create_connection((addr, port), timeout=5) as sock:
        sock.sendall(b"GET /status HTTP/1.1\r\nX: ")
        while not stop.wait(0.2):
            try:
                sock.sendall(b"x")
            except OSError:  # dropped: what the host should do
                return
