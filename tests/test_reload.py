"""A new version of the app goes live in a running host (``hibana reload``, SIGHUP)
without a dropped request, a 503 or lost queue work; a version that fails to load or to
start is refused and the running one goes on serving."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

import hibana
from tests.hosts import Host, children, not_a_host, read_jsonl, run_cli

V1 = """
import os
import time

import hibana

app = hibana.App()


@app.http("/v")
def v(req, ctx):
    return "one"


@app.http("/slow")
def slow(req, ctx):
    until = req.query.get("until")  # held until this file exists (s seconds at most)
    end = time.monotonic() + float(req.query.get("s", "1.5"))
    while time.monotonic() < end and not (until and os.path.exists(until)):
        time.sleep(0.02)
    return "one"
"""


def _app(tmp_path: Path, source: str = V1) -> Path:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(source)
    return app_dir


def _write(app_dir: Path, source: str) -> None:
    (app_dir / "function_app.py").write_text(source)


def _served_after_503s(host: Host) -> httpx.Response:
    """GET /v until it is no 503 (the app starts again, within 30 s): that answer."""
    deadline = time.monotonic() + 30
    while (r := httpx.get(host.url + "/v", timeout=10)).status_code == 503:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.2)
    return r


class Hammer:
    """One keep-alive client asking GET /v back to back, as a busy caller would."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[int, str]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    r = client.get("/v")
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                else:
                    self.answers.append((r.status_code, r.text))

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 20
        while len(self.answers) < count:
            assert time.monotonic() < deadline, "the client got no answers"
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def test_reload_swaps_versions_without_a_dropped_request(tmp_path: Path) -> None:
    app_dir = _app(tmp_path)
    host = Host(app_dir, "--workers", "2").wait_ready()
    hammer = Hammer(host.url)
    try:
        hammer.wait_for(20)
        slow: list[httpx.Response] = []
        caller = threading.Thread(
            target=lambda: slow.append(httpx.get(host.url + "/slow?s=1.5", timeout=30))
        )
        caller.start()
        host.wait_inflight(1, function="slow")

        _write(app_dir, V1.replace('"one"', '"two"'))
        reloaded = run_cli("reload", "--app", str(app_dir))
        assert reloaded.returncode == 0, reloaded.stderr
        assert "generation 2 serves (v, slow)" in reloaded.stdout
        assert "2 worker(s) of the previous version finish their work" in reloaded.stdout

        # once `hibana reload` returns, a new connection meets only the new version
        for _ in range(20):
            assert httpx.get(host.url + "/v", timeout=10).text == "two"
        caller.join(30)
        # the request that was running finished on the version it started on
        assert slow[0].status_code == 200
        assert slow[0].text == "one"
        hammer.wait_for(len(hammer.answers) + 20)
        host.wait_for_stderr("Generation 1 of the app has exited")
    finally:
        hammer.stop()
        host.stop()
    assert host.proc.returncode == 0
    assert hammer.errors == []
    assert {status for status, _ in hammer.answers} == {200}
    texts = [text for _, text in hammer.answers]
    switched = texts.index("two")
    assert set(texts[:switched]) == {"one"}
    assert set(texts[switched:]) == {"two"}, "an old worker answered after a new one had"


def test_reloads_asked_for_at_once_each_happen_and_the_host_serves_on(tmp_path: Path) -> None:
    """The second reload's request came in the same turn of the supervisor's loop as an
    event of the version the first stopped: the host died on its closed socket."""
    app_dir = _app(tmp_path)
    host = Host(app_dir, "--workers", "1").wait_ready()
    try:
        for round_ in range(2):
            _write(app_dir, V1.replace('"one"', f'"v{round_}"'))
            reloads = [
                subprocess.Popen(
                    [sys.executable, "-m", "hibana", "reload", "--app", str(app_dir)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(3)
            ]
            for reload in reloads:
                _, err = reload.communicate(timeout=60)
                assert reload.returncode == 0, err
            assert httpx.get(host.url + "/v", timeout=10).text == f"v{round_}"
        assert host.proc.poll() is None, "\n".join(host.stderr_lines[-20:])
        assert not any("Traceback" in line for line in host.stderr_lines)
    finally:
        host.stop()
    assert host.proc.returncode == 0


def test_an_edit_that_keeps_the_size_and_second_is_the_code_reloaded(tmp_path: Path) -> None:
    """Python's bytecode cache matches a module by its size and modification time in
    whole seconds: two saves in one second, "a1" then "b1", served "a1" again."""
    app_dir = _app(
        tmp_path,
        "import hibana\nimport helper\n\napp = hibana.App()\n\n\n"
        "@app.http('/v')\ndef v(req, ctx):\n    return helper.VALUE\n",
    )
    helper = app_dir / "helper.py"
    helper.write_text('VALUE = "a1"\n')
    stamp = helper.stat().st_mtime_ns
    host = Host(app_dir, "--workers", "1", env={"PYTHONDONTWRITEBYTECODE": ""}).wait_ready()
    try:
        assert httpx.get(host.url + "/v", timeout=10).text == "a1"
        helper.write_text('VALUE = "b1"\n')
        os.utime(helper, ns=(stamp, stamp))  # saved within the same second
        reloaded = run_cli("reload", "--app", str(app_dir))
        assert reloaded.returncode == 0, reloaded.stderr
        assert httpx.get(host.url + "/v", timeout=10).text == "b1"
    finally:
        host.stop()
    assert not list(app_dir.rglob("*.pyc")), "the app's own modules are not cached"


def test_status_shows_the_old_generation_finishing(tmp_path: Path) -> None:
    app_dir = _app(tmp_path)
    host = Host(app_dir, "--workers", "1").wait_ready()
    try:
        # held until the checks are done, however slow a busy machine makes the CLI
        released = tmp_path / "released"
        held = {"s": "40", "until": str(released)}
        caller = threading.Thread(
            target=lambda: httpx.get(host.url + "/slow", params=held, timeout=60)
        )
        caller.start()
        host.wait_inflight(1, function="slow")
        assert run_cli("reload", "--app", str(app_dir)).returncode == 0
        status = host.status()
        assert status["generation"] == 2
        by_generation = {w["generation"]: w for w in status["workers"]}
        assert by_generation[1]["state"] == "retiring"
        assert by_generation[1]["inflight"] == 1
        assert by_generation[2]["state"] == "ready"
        shown = run_cli("status", "--app", str(app_dir))
        assert "app generation 2" in shown.stdout
        assert "retiring" in shown.stdout
        released.touch()
        caller.join(30)
        host.wait_for_stderr("Generation 1 of the app has exited")
        assert [w["generation"] for w in host.status()["workers"]] == [2]
    finally:
        host.stop()


def test_a_version_that_does_not_load_is_refused_and_the_running_one_serves_on(
    tmp_path: Path,
) -> None:
    app_dir = _app(tmp_path)
    host = Host(app_dir, "--workers", "1").wait_ready()
    try:
        _write(app_dir, V1.replace("def v(req, ctx):", "def v(req, ctx)"))
        refused = run_cli("reload", "--app", str(app_dir))
        assert refused.returncode == 1
        assert "the host kept the previous version" in refused.stderr
        assert "function_app.py:" in refused.stderr  # names the file and line
        assert "SyntaxError" in refused.stderr
        host.wait_for_stderr("Still serving the previous version of the app")
        assert httpx.get(host.url + "/v", timeout=10).text == "one"
        assert host.status()["generation"] == 1

        # SIGHUP, as `systemctl reload` sends it, does the same as `hibana reload`
        _write(app_dir, V1.replace('"one"', '"two"'))
        host.signal(signal.SIGHUP)
        host.wait_for_stderr("Reloaded: generation 2 of the app serves")
        assert httpx.get(host.url + "/v", timeout=10).text == "two"
    finally:
        host.stop()
    assert host.proc.returncode == 0


def test_a_reload_after_hibana_itself_changed_is_refused(tmp_path: Path) -> None:
    # A host run from a copy of hibana's code, as if installed: the copy is then changed
    # (an upgrade), and `hibana reload` would start the new hibana's zygote under the old
    # supervisor. It is refused, and the running version serves on.
    code = tmp_path / "site"
    shutil.copytree(
        Path(hibana.__file__).parent, code / "hibana", ignore=shutil.ignore_patterns("__pycache__")
    )
    app_dir = _app(tmp_path)
    host = Host(app_dir, "--workers", "1", env={"PYTHONPATH": str(code)}).wait_ready()
    try:
        assert host.status()["generation"] == 1
        cli = code / "hibana" / "cli" / "__init__.py"
        cli.write_text(cli.read_text() + "\n# upgraded\n")
        _write(app_dir, V1.replace('"one"', '"two"'))
        refused = run_cli("reload", "--app", str(app_dir))
        assert refused.returncode == 1
        assert "hibana itself changed since this host started" in refused.stderr
        assert "restart the host to run the new hibana" in refused.stderr
        assert httpx.get(host.url + "/v", timeout=10).text == "one"
        assert host.status()["generation"] == 1
    finally:
        host.stop()
    assert host.proc.returncode == 0


def test_a_version_whose_workers_fail_to_start_is_rolled_back(tmp_path: Path) -> None:
    app_dir = _app(tmp_path)
    host = Host(app_dir, "--workers", "2").wait_ready()
    broken = V1.replace('"one"', '"two"') + (
        "\n\nasync def lifespan(scope, receive, send):\n"
        "    await receive()\n"
        "    await send({'type': 'lifespan.startup.failed', "
        "'message': 'the database is not there'})\n\n\n"
        'app.asgi("/mounted", lifespan)\n'
    )
    try:
        _write(app_dir, broken)
        refused = run_cli("reload", "--app", str(app_dir))
        assert refused.returncode == 1, refused.stdout
        assert "a worker of the new version exited with code 1 as it started" in refused.stderr
        crashed = host.wait_for_log(msg="worker crashed")
        assert "the database is not there" in crashed["error"]
        # the running version never stopped serving
        assert httpx.get(host.url + "/v", timeout=10).text == "one"
        status = host.status()
        assert status["generation"] == 1
        assert {w["generation"] for w in status["workers"]} == {1}
        assert len(status["workers"]) == 2

        _write(app_dir, V1.replace('"one"', '"three"'))
        assert run_cli("reload", "--app", str(app_dir)).returncode == 0
        assert httpx.get(host.url + "/v", timeout=10).text == "three"
        assert host.status()["generation"] == 3
    finally:
        host.stop()
    assert host.proc.returncode == 0


QUEUE_APP = """
import json
import os
import time

import hibana

app = hibana.App()
VERSION = "one"


@app.queue("jobs")
def job(msg, ctx):
    time.sleep(msg.data["sleep"])
    with open(os.path.join(os.path.dirname(__file__), "done.jsonl"), "a") as out:
        out.write(json.dumps({"n": msg.data["n"], "version": VERSION}) + "\\n")
"""


def test_queue_work_in_flight_finishes_on_the_old_version_and_new_work_gets_the_new(
    tmp_path: Path,
) -> None:
    app_dir = _app(tmp_path, QUEUE_APP)
    done = app_dir / "done.jsonl"
    host = Host(app_dir, "--workers", "1").wait_ready()
    try:
        sent = run_cli(
            "queue", "send", "jobs", "--data", '{"n": 1, "sleep": 1.5}', "--app", str(app_dir)
        )
        assert sent.returncode == 0, sent.stderr
        host.wait_inflight(1, function="job")
        _write(app_dir, QUEUE_APP.replace('VERSION = "one"', 'VERSION = "two"'))
        assert run_cli("reload", "--app", str(app_dir)).returncode == 0
        sent = run_cli(
            "queue", "send", "jobs", "--data", '{"n": 2, "sleep": 0}', "--app", str(app_dir)
        )
        assert sent.returncode == 0, sent.stderr
        deadline = time.monotonic() + 20
        while len(read_jsonl(done)) < 2:
            assert time.monotonic() < deadline, read_jsonl(done)
            time.sleep(0.05)
        host.wait_for_stderr("Generation 1 of the app has exited")
        time.sleep(0.5)  # a message run twice would show up by now
    finally:
        host.stop()
    assert sorted(read_jsonl(done), key=lambda x: x["n"]) == [
        {"n": 1, "version": "one"},
        {"n": 2, "version": "two"},
    ]
    stats = run_cli("queue", "stats", "--app", str(app_dir))
    assert stats.returncode == 0, stats.stderr


STREAM_APP = """
import asyncio

import hibana

app = hibana.App()


@app.http("/events")
async def events(req, ctx):
    async def ticks():
        n = 0
        while not ctx.cancelled:
            yield f"data: {n}\\n\\n"
            n += 1
            await asyncio.sleep(0.05)
        yield "data: bye\\n\\n"

    return hibana.StreamingResponse(ticks(), content_type="text/event-stream")
"""


def test_a_stream_on_the_old_version_is_told_to_end_and_ends_whole(tmp_path: Path) -> None:
    app_dir = _app(tmp_path, STREAM_APP)
    host = Host(app_dir, "--workers", "1").wait_ready()
    try:
        with httpx.stream("GET", host.url + "/events", timeout=30) as stream:
            lines = stream.iter_lines()
            assert next(lines) == "data: 0"
            assert run_cli("reload", "--app", str(app_dir)).returncode == 0
            rest = list(lines)  # raises if the body is cut short
        # it was told (ctx.cancelled) and ended whole, as it does on SIGTERM
        assert rest[-2:] == ["data: bye", ""]
        host.wait_for_stderr("Generation 1 of the app has exited")
        logged = host.wait_for_log(function="events", msg="invocation")
        assert (logged["outcome"], logged["status"]) == ("ok", 200)
    finally:
        host.stop()


def test_a_terminal_that_hangs_up_does_not_take_the_host_down(tmp_path: Path) -> None:
    # The host runs on a terminal of its own (a pty; the host leads its session). Closing
    # the terminal sends SIGHUP to every process of the host and breaks its stdout and
    # stderr; it goes on serving (the supervisor reloads, which is what SIGHUP asks for).
    app_dir = _app(tmp_path)
    pid, terminal = pty.fork()
    if pid == 0:  # the child: becomes the host
        os.execv(
            sys.executable,
            [sys.executable, "-m", "hibana", "serve", str(app_dir), "--port", "0", "-w", "2"],
        )
    seen = b""
    url = None
    deadline = time.monotonic() + 30
    while url is None:
        assert time.monotonic() < deadline, seen.decode(errors="replace")
        if select.select([terminal], [], [], 0.5)[0]:
            seen += os.read(terminal, 4096)
        found = re.search(rb"Listening on (http://\S+)", seen)
        url = found.group(1).decode() if found else None
    try:
        assert httpx.get(url + "/v", timeout=10).text == "one"
        workers = {w for zygote in children(pid) for w in children(zygote)}
        assert len(workers) == 2
        os.close(terminal)  # the terminal hangs up
        deadline = time.monotonic() + 10
        while not _serves(url, "one"):
            assert time.monotonic() < deadline, "the host stopped serving after the hangup"
            time.sleep(0.05)
        time.sleep(0.5)
        assert _serves(url, "one")
        assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the host exited"
    finally:
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _serves(url: str, text: str) -> bool:
    try:
        return httpx.get(url + "/v", timeout=5).text == text
    except httpx.HTTPError:
        return False


def test_a_hangup_during_shutdown_does_not_force_it(tmp_path: Path) -> None:
    app_dir = _app(tmp_path)
    host = Host(app_dir, "--workers", "1").wait_ready()
    slow: list[httpx.Response] = []
    held = {"s": "60", "until": str(tmp_path / "released")}  # until the SIGHUP is taken
    caller = threading.Thread(
        target=lambda: slow.append(httpx.get(host.url + "/slow", params=held, timeout=90))
    )
    caller.start()
    host.wait_inflight(1, function="slow")
    host.signal(signal.SIGTERM)
    host.wait_for_stderr("Shutting down")
    time.sleep(0.4)  # past the window in which a second signal is taken for an echo
    host.signal(signal.SIGHUP)
    # the drain's loop answers `hibana status`, and takes the signal that came before it
    assert run_cli("status", "--app", str(app_dir)).returncode == 0
    (tmp_path / "released").touch()
    assert host.wait_exit() == 0
    caller.join(30)
    assert slow[0].status_code == 200
    assert "Second signal" not in "\n".join(host.stderr_lines)


def test_reload_without_a_running_host_says_so(tmp_path: Path) -> None:
    app_dir = _app(tmp_path)
    result = run_cli("reload", "--app", str(app_dir))
    assert result.returncode == 1
    assert "no running host found" in result.stderr
    assert f"hibana serve {app_dir}" in result.stderr


UNTIL_READY = """
import pathlib

import hibana

if pathlib.Path(__file__).with_name("ready.txt").read_text() != "yes":
    raise RuntimeError("ready.txt does not say yes")
app = hibana.App()


@app.http("/v")
def v(req, ctx):
    return "up"
"""


def test_status_and_reload_reach_a_dev_host_waiting_for_a_fix(tmp_path: Path) -> None:
    """It is running: "no running host found; start one" sent the user to start a
    second one, which would not get the port."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(UNTIL_READY)
    (app_dir / "ready.txt").write_text("no")
    host = Host(app_dir, command="dev")
    try:
        host.wait_for_stderr("Waiting for a change to")
        why = "RuntimeError: ready.txt does not say yes"
        status = run_cli("status", "--app", str(app_dir))
        assert status.returncode == 1, status.stderr
        assert "the app does not load; hibana dev waits for a change that fixes it" in (
            status.stderr
        )
        assert why in status.stderr
        tried = run_cli("reload", "--app", str(app_dir))
        assert tried.returncode == 1, tried.stderr
        assert f"error: the host of {app_dir} tried again: the app does not load" in tried.stderr
        assert why in tried.stderr
        # what it reads is no .py file: only `hibana reload` makes it try again
        (app_dir / "ready.txt").write_text("yes")
        loaded = run_cli("reload", "--app", str(app_dir))
        assert loaded.returncode == 0, loaded.stderr
        assert f"Reloaded {app_dir}: generation 1 serves (v)" in loaded.stdout
        host.wait_ready()
        assert httpx.get(host.url + "/v", timeout=10).text == "up"
    finally:
        host.stop()


def test_a_stop_asked_for_while_a_reload_imports_is_obeyed(tmp_path: Path) -> None:
    app_dir = _app(tmp_path)
    host = Host(app_dir, "--workers", "1").wait_ready()
    try:
        marked = 'open(os.path.join(os.path.dirname(__file__), "importing"), "w").close()'
        _write(app_dir, f"{V1}\n{marked}\ntime.sleep(30)  # a slow import\n")
        host.signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while not (app_dir / "importing").exists():  # the new version is importing now
            assert time.monotonic() < deadline, "the reload's import did not begin"
            time.sleep(0.05)
        host.signal(signal.SIGTERM)
        assert host.wait_exit(timeout=15) == 0
    finally:
        host.stop()
    assert "Shutting down" in "\n".join(host.stderr_lines)


def test_reload_with_a_host_file_that_names_no_host_says_so(tmp_path: Path) -> None:
    app_dir = _app(tmp_path)
    state = app_dir / ".hibana"
    state.mkdir()
    (state / "host.json").write_text("{not json")
    result = run_cli("reload", "--app", str(app_dir))
    assert result.returncode == 1
    assert "missing or unreadable" in result.stderr
    assert "Traceback" not in result.stderr

    # a stale file whose admin address another server now answers, with HTML
    with not_a_host(app_dir, b"<html>not hibana</html>") as admin:
        result = run_cli("reload", "--app", str(app_dir))
    assert result.returncode == 1
    assert f"{admin} (named in" in result.stderr
    assert "is not a hibana host's admin endpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_reload_prints_the_new_versions_functions_not_the_whole_banner(
    tmp_path: Path,
) -> None:
    app_dir = _app(tmp_path)
    host = Host(app_dir, "--workers", "1").wait_ready()
    try:
        _write(app_dir, V1 + '\n\n@app.http("/w")\ndef w(req, ctx):\n    return "new"\n')
        reloaded = run_cli("reload", "--app", str(app_dir))
        assert reloaded.returncode == 0, reloaded.stderr
        host.wait_for_stderr("Reloaded: generation 2 of the app serves")
        assert httpx.get(host.url + "/w", timeout=10).text == "new"
    finally:
        host.stop()
    printed = "\n".join(host.stderr_lines)
    after = printed[printed.index("Functions of generation 2:") :].splitlines()
    assert after[1:4] == [
        f"    v: [GET] {host.url}/v",
        f"    slow: [GET] {host.url}/slow",
        f"    w: [GET] {host.url}/w",
    ]
    assert after[4].startswith("Reloaded: generation 2")
    # the address, the store and the admin endpoint did not change: said once
    assert printed.count("Listening on") == 1
    assert printed.count(f"hibana {hibana.__version__} · app") == 1


SLOW_IMPORT = """
import os
import time

import hibana

here = os.path.dirname(__file__)
while os.path.exists(os.path.join(here, "hold")):  # a reload that loads a model, say
    time.sleep(0.05)

app = hibana.App()


@app.http("/v")
def v(req, ctx):
    return "{version}"


@app.http("/die")
def die(req, ctx):
    os._exit(1)
"""


def test_the_serving_version_serves_on_while_a_new_one_imports(tmp_path: Path) -> None:
    """The supervisor goes on with its work while the new version imports: a cold start
    from zero, and a dead worker's 502 and its replacement, come at once, not after it."""
    app_dir = _app(tmp_path, SLOW_IMPORT.replace("{version}", "one"))
    host = Host(app_dir, "--min-instances", "0", "--idle-timeout", "30").wait_ready()
    try:
        hold = app_dir / "hold"
        hold.touch()
        _write(app_dir, SLOW_IMPORT.replace("{version}", "two"))
        host.signal(signal.SIGHUP)
        host.wait_for_stderr("SIGHUP: reloading the app")
        with httpx.Client(base_url=host.url, timeout=20) as client:
            assert client.get("/v").text == "one"  # a worker of the version that serves
            assert client.get("/die").status_code == 502
            assert client.get("/v").text == "one"  # and another one after it died
        assert not any("Reloaded" in line for line in host.stderr_lines)  # still importing
        hold.unlink()
        host.wait_for_stderr("Reloaded: generation 2")
        assert httpx.get(host.url + "/v", timeout=10).text == "two"
    finally:
        host.stop()


MARKED_SLOW_IMPORT = SLOW_IMPORT.replace(
    "while os.path.exists",
    'open(os.path.join(here, "importing-{version}"), "w").close()\nwhile os.path.exists',
)


def _reload_in_background(app_dir: Path) -> subprocess.Popen[str]:
    """`hibana reload` of ``app_dir``, running; its answer is read with communicate()."""
    return subprocess.Popen(
        [sys.executable, "-m", "hibana", "reload", "--app", str(app_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_import(app_dir: Path, version: str) -> None:
    """Until the import of ``version`` (a MARKED_SLOW_IMPORT) has read the app's file."""
    deadline = time.monotonic() + 30
    while not (app_dir / f"importing-{version}").exists():
        assert time.monotonic() < deadline, "the reload's import did not begin"
        time.sleep(0.05)


def _wait_for_waiting_reload(app_dir: Path) -> None:
    """Until the host holds a `hibana reload` for the reload after the one under way."""
    deadline = time.monotonic() + 30
    while True:
        data = json.loads(run_cli("status", "--app", str(app_dir), "--json").stdout)
        assert data["reloading_s"] is not None, data
        if data["reloads_waiting"]:
            return
        assert time.monotonic() < deadline, "the host took no reload to do after this one"
        time.sleep(0.1)


def test_status_answers_and_a_reload_asked_for_waits_for_the_next_while_one_imports(
    tmp_path: Path,
) -> None:
    """During a slow import `hibana status` answers at once and says a reload is under way
    (it timed out: the admin endpoint waited for the import). A `hibana reload` asked for
    meanwhile is not answered with that import's outcome: the caller's edit came after it
    read the files, so the host reloads once more, after it, and the edit goes live."""
    app_dir = _app(tmp_path, MARKED_SLOW_IMPORT.replace("{version}", "one"))
    host = Host(app_dir, "--workers", "1").wait_ready()
    try:
        hold = app_dir / "hold"
        hold.touch()
        _write(app_dir, MARKED_SLOW_IMPORT.replace("{version}", "two"))
        host.signal(signal.SIGHUP)
        _wait_for_import(app_dir, "two")
        done = run_cli("status", "--app", str(app_dir))
        assert done.returncode == 0, done.stderr
        assert "reloading: a new version of the app has been loading for" in done.stdout
        assert "generation 1 serves until it is ready" in done.stdout
        _write(app_dir, MARKED_SLOW_IMPORT.replace("{version}", "three"))
        reload = _reload_in_background(app_dir)
        _wait_for_waiting_reload(app_dir)
        done = run_cli("status", "--app", str(app_dir))
        assert "generation 1 serves until it is ready; 1 more asked for meanwhile" in done.stdout
        assert httpx.get(host.url + "/v", timeout=10).text == "one"
        assert reload.poll() is None, "answered before the import under way ended"
        hold.unlink()
        _, err = reload.communicate(timeout=120)
        assert reload.returncode == 0, err
        assert httpx.get(host.url + "/v", timeout=10).text == "three"
        data = json.loads(run_cli("status", "--app", str(app_dir), "--json").stdout)
        assert data["generation"] == 3 and data["reloading_s"] is None
        assert host.proc.poll() is None
    finally:
        host.stop()
    assert host.proc.returncode == 0


def test_a_reload_waiting_for_the_next_is_told_when_the_host_stops_instead(
    tmp_path: Path,
) -> None:
    app_dir = _app(tmp_path, MARKED_SLOW_IMPORT.replace("{version}", "one"))
    host = Host(app_dir, "--workers", "1").wait_ready()
    try:
        (app_dir / "hold").touch()
        _write(app_dir, MARKED_SLOW_IMPORT.replace("{version}", "two"))
        host.signal(signal.SIGHUP)
        _wait_for_import(app_dir, "two")
        reload = _reload_in_background(app_dir)
        _wait_for_waiting_reload(app_dir)
        host.signal(signal.SIGTERM)
        _, err = reload.communicate(timeout=60)
        assert reload.returncode == 1
        assert "kept the previous version" in err and "the host is shutting down" in err
        assert host.wait_exit(timeout=30) == 0
    finally:
        host.stop()


def test_a_zygote_that_dies_while_a_reload_imports_is_replaced(tmp_path: Path) -> None:
    """The serving version's zygote killed during the import: the host does not fall over
    (it crashed on the dead zygote's socket), and the new version takes over."""
    app_dir = _app(tmp_path, SLOW_IMPORT.replace("{version}", "one"))
    host = Host(app_dir, "--workers", "1").wait_ready()
    try:
        assert httpx.get(host.url + "/v", timeout=10).text == "one"
        zygotes = [
            pid
            for pid in children(host.proc.pid)
            if b"hibana.host.zygote" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        (serving,) = zygotes
        hold = app_dir / "hold"
        hold.touch()
        _write(app_dir, SLOW_IMPORT.replace("{version}", "two"))
        host.signal(signal.SIGHUP)
        host.wait_for_stderr("SIGHUP: reloading the app")
        os.kill(serving, signal.SIGKILL)
        host.wait_for_stderr("the zygote process died")
        hold.unlink()
        host.wait_for_stderr("Reloaded: generation 2")
        host.wait_for_stderr("Generation 1 of the app has exited")  # seen off, not a crash
        assert httpx.get(host.url + "/v", timeout=10).text == "two"
        assert host.proc.poll() is None
    finally:
        host.stop()


def test_a_zygote_that_dies_when_the_app_no_longer_imports_answers_503_until_it_does(
    tmp_path: Path,
) -> None:
    """The zygote killed (the OOM killer) while the app's file is broken: its replacement
    does not import. Requests get 503 saying why, and the import is tried again until the
    app is fixed; then it serves. A request waited for ever (or, with no worker, the
    supervisor's loop spun), and nothing was tried again."""
    app_dir = _app(tmp_path)
    host = Host(app_dir, "--workers", "1").wait_ready()
    try:
        assert httpx.get(host.url + "/v", timeout=10).text == "one"
        (zygote,) = children(host.proc.pid)
        _write(app_dir, V1 + "\nsyntax error(\n")
        os.kill(zygote, signal.SIGKILL)
        host.wait_for_stderr("the zygote process died")
        refused = httpx.get(host.url + "/v", timeout=10)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert "the app's zygote died, and the app does not import again" in refused.text
        assert "SyntaxError" in refused.text
        assert host.wait_for_stderr("requests get 503 until it does")
        _write(app_dir, V1.replace('"one"', '"fixed"'))
        assert _served_after_503s(host).text == "fixed"
        assert [z for z in children(host.proc.pid) if z != zygote]  # the dead one reaped
        assert zygote not in children(host.proc.pid)
    finally:
        host.stop()


def test_a_reload_that_fails_while_the_zygote_is_dead_does_not_say_it_still_serves(
    tmp_path: Path,
) -> None:
    """The zygote killed while the app's file is broken: nothing serves (503s). A
    `hibana reload` that fails said "Still serving the previous version" and "the host
    kept the previous version", neither of them true."""
    app_dir = _app(tmp_path)
    host = Host(app_dir, "--workers", "1").wait_ready()
    try:
        (zygote,) = children(host.proc.pid)
        _write(app_dir, V1 + "\nsyntax error(\n")
        os.kill(zygote, signal.SIGKILL)
        host.wait_for_stderr("requests get 503 until it does")
        refused = run_cli("reload", "--app", str(app_dir))
        assert refused.returncode == 1
        assert "SyntaxError" in refused.stderr
        assert "kept the previous version" not in refused.stderr
        assert "the previous version does not serve either: its zygote had died" in (
            " ".join(refused.stderr.split())
        )
        host.wait_for_stderr("The previous version does not serve either: its zygote had died")
        assert not [line for line in host.stderr_lines if "Still serving" in line]
        assert httpx.get(host.url + "/v", timeout=10).status_code == 503
    finally:
        host.stop()


def test_a_body_arriving_when_its_worker_retires_is_read_and_answered(tmp_path: Path) -> None:
    """A reload's old worker stopped reading its connections as it retired, a body half
    sent on one too: its client waited for an answer that never came, until the worker
    cut it off (a reload is to drop no request)."""
    app_dir = _app(
        tmp_path,
        V1 + "\n\n@app.http('/echo', methods=['POST'])\ndef echo(req, ctx):\n"
        "    return req.body.decode()\n",
    )
    host = Host(app_dir, "--workers", "1").wait_ready()
    try:
        addr, port = host.url.removeprefix("http://").split(":")
        with socket.create_connection((addr, int(port)), timeout=30) as sock:
            sock.sendall(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            reader = sock.makefile("rb")
            assert reader.readline() == b"HTTP/1.1 100 Continue\r\n"  # the head is read
            assert reader.readline() == b"\r\n"
            sock.sendall(b"x" * 10)
            assert run_cli("reload", "--app", str(app_dir)).returncode == 0
            host.wait_for_stderr(r"Reloaded: generation 2 of the app serves; 1 worker")
            sock.sendall(b"y" * 10)
            answer = reader.read()
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
        assert answer.endswith(b"x" * 10 + b"y" * 10)
        assert b"connection: close" in answer
    finally:
        host.stop()


def test_a_zygote_replaced_from_changed_files_is_checked_as_a_reload_is(tmp_path: Path) -> None:
    """The zygote killed after the app's file changed to name a secret that is not set:
    its replacement imports the file as it is now, and was served without the check a
    reload makes (the function ran without its secret, whose value, set later, went
    unredacted). Now requests get 503 naming the secret until the app starts."""
    app_dir = _app(tmp_path)
    host = Host(app_dir, "--workers", "1").wait_ready()
    try:
        (zygote,) = children(host.proc.pid)
        _write(app_dir, V1.replace('@app.http("/v")', '@app.http("/v", secrets=["unset-one"])'))
        os.kill(zygote, signal.SIGKILL)
        host.wait_for_stderr("the app does not start again: requests get 503 until it does")
        refused = httpx.get(host.url + "/v", timeout=10)
        assert refused.status_code == 503
        assert "names secret 'unset-one', which is not set" in refused.json()["error"]
        _write(app_dir, V1.replace('"one"', '"fixed"'))
        assert _served_after_503s(host).text == "fixed"
    finally:
        host.stop()
