"""A broken app fails fast: one message naming the file, the line and the function; exit 2."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.hosts import APPS, run_cli, started


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        (
            "broken_import",
            [
                "function_app.py:2: importing function_app.py failed: ModuleNotFoundError: "
                "No module named 'hibana_no_such_module'",
                "import hibana_no_such_module",
            ],
        ),
        ("broken_syntax", ["function_app.py:7:", "SyntaxError", "def x(req, ctx)"]),
        (
            "broken_dup_route",
            [
                'Route "/items/{item_id}" GET in',
                "function_app.py:11 (second) is already served by",
                '"/items/{id}" in',
                "function_app.py:6 (first)",
            ],
        ),
        (
            "broken_bad_route",
            ['Route "/items/{id" in', "function_app.py:6 (create)", 'unclosed "{"'],
        ),
        ("broken_noncallable", ["function_app.py:5", "applied to 42 (int), which is not callable"]),
        ("broken_no_app", ["function_app.py defines no hibana.App", "app = hibana.App()"]),
        ("broken_raises", ["function_app.py:6:", "KeyError: 'DATABASE_URL'"]),
        (
            "broken_bare_decorator",
            ["@app.http at", "function_app.py:6 is not called, so hello is not declared"],
        ),
        (
            "broken_signature",
            ["function_app.py:6 (hello) takes (req), but is called with two", "(req, ctx)"],
        ),
        (
            "broken_relative_import",
            [
                "function_app.py:3: importing function_app.py failed: ImportError",
                "`from helpers import x`, not `from .helpers import x`",
            ],
        ),
        (
            "broken_two_apps",
            ["defines a second App, admin, whose functions (stats) would not be served"],
        ),
    ],
)
def test_broken_app_exits_2_with_one_clear_message(app: str, expected: list[str]) -> None:
    result = run_cli("serve", str(APPS / app), "--port", "0", "--workers", "1")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ")
    for fragment in expected:
        assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert "Listening on" not in result.stderr


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {
                "function_app.py": b"import hibana\n\napp = hibana.App()\nimport routes\n",
                "routes.py": b"from function_app import app, missing\n",
            },
            "routes.py:1: importing function_app.py failed: ImportError: cannot import name "
            "'missing' from partially initialized module 'function_app' (most likely due to a "
            "circular import)",
        ),
        (
            {
                "function_app.py": b"import hibana\n\napp = hibana.App()\nimport routes\n",
                "routes.py": b"from function_app import app, missing\n",
            },
            "    from function_app import app, missing\n    a module "
            "function_app.py imports imports it back: declare that module's functions on a "
            "hibana.Blueprint, and app.register(bp) in function_app.py",
        ),
        (
            # in a file that is UTF-8 otherwise: it was said to be no UTF-8, at no line
            {"function_app.py": b"import hibana\napp = hibana.App()\x00\n"},
            "function_app.py:2:19: SyntaxError: source code string cannot contain null bytes\n"
            "    app = hibana.App()\\x00\n    a NUL byte (\\x00) is there, which Python source "
            "cannot hold: delete it (editors show it as ^@, <0x00> or nothing at all)\n",
        ),
        (
            # in a module the app imports: function_app.py was named
            {
                "function_app.py": b"import hibana\nimport routes\n\napp = hibana.App()\n",
                "routes.py": "import hibana\n\nbp = hibana.Blueprint()  # café\x00\n".encode(),
            },
            "routes.py:3:32: SyntaxError: source code string cannot contain null bytes\n"
            "    bp = hibana.Blueprint()  # café\\x00\n    a NUL byte (\\x00) is there",
        ),
        (
            {
                "function_app.py": b"import hibana\n\napp = hibana.App()\n"
                b"app.webhook('/hooks/gh', provider='github', secret='s', topic='gihub')\n"
                b"@app.event('github')\nasync def build(event, ctx):\n    pass\n"
            },
            # after "app.webhook('/hooks/gh', topic='gihub') in /tmp/..."
            "function_app.py:4 publishes to a topic no function subscribes to, so each "
            "delivery would be acknowledged to its sender and reach no one; subscribe one "
            "with @app.event('gihub'), or publish to a topic one subscribes to (github)",
        ),
        (
            {
                "function_app.py": b"class Stop(BaseException):\n    pass\n\n\n"
                b"raise Stop('not configured')\n"
            },
            "function_app.py:5: importing function_app.py failed: Stop: not configured",
        ),
        (
            {
                "function_app.py": b"class Odd(Exception):\n    def __str__(self):\n"
                b"        raise RuntimeError('no str')\n\n\nraise Odd()\n"
            },
            "function_app.py:6: importing function_app.py failed: Odd: <Odd whose str raised>",
        ),
        (
            {
                "function_app.py": b"import hibana\napp = hibana.App()\n\n\n"
                b"@app.queue('jobs')\ndef job(*, msg, ctx):\n    pass\n"
            },
            "(job) takes (*, msg, ctx), but is called with two positional arguments, its msg "
            "and the Context: write `def job(msg, ctx)`",
        ),
        (
            {
                "function_app.py": b"import hibana\napp = hibana.App()\n\n\n"
                b"@app.queue('jobs', retry=hibana.Fixed(float('nan')))\ndef job(msg, ctx):\n"
                b"    pass\n"
            },
            "importing function_app.py failed: ValueError: Fixed(seconds=nan): must be a "
            "finite number of seconds, 0 or more",
        ),
        (
            {
                "function_app.py": b"import hibana\napp = hibana.App()\n\n\n"
                b"@app.queue('jobs', retry=hibana.Exponential(1, float('inf')))\n"
                b"def job(msg, ctx):\n    pass\n"
            },
            "ValueError: Exponential(max=inf): must be a finite number of seconds, 0 or more",
        ),
        (
            {
                "function_app.py": b"import hibana\napp = hibana.App()\n\n\n"
                b"@app.http('/feed')\nasync def feed(req, ctx):\n    yield b'news'\n"
            },
            "function_app.py:5 (feed) is an async generator (an async def with yield): it "
            "is called for its result, not iterated; to stream an HTTP answer, move the "
            "yields into an inner async generator and return hibana.StreamingResponse(parts())",
        ),
        (
            {
                "function_app.py": b"import hibana\napp = hibana.App()\n\n\n"
                b"@app.http('/feed')\ndef feed(req, ctx):\n    yield b'news'\n"
            },
            "function_app.py:5 (feed) is a generator (a def with yield): it is called for its "
            "result, not iterated;",
        ),
        (
            {
                "function_app.py": b"import hibana\napp = hibana.App()\n\n\n"
                b"@app.queue('jobs')\nasync def job(msg, ctx):\n    yield msg\n"
            },
            "function_app.py:5 (job) is an async generator (an async def with yield): it is "
            "called for its result, not iterated; write it as a def or an async def that returns",
        ),
        (
            {"function_app.py": b"import hibana\n\napp = hibana.App(max_instances=10**20)\n"},
            "function_app.py:3 is over 1024, the most "
            "workers a host runs; run several hosts on one store to go past it",
        ),
        (
            {"function_app.py": b"import hibana\n\napp = hibana.App\n"},
            "function_app.py:3: `app` is the class hibana.App, not an App: call it, "
            "`app = hibana.App()`",
        ),
        (
            {"function_app.py": b"import hibana\n\n\napp = hibana.Blueprint()\n"},
            "function_app.py:4: `app` is a hibana.Blueprint, not an App: write "
            "`app = hibana.App()` and `app.register(bp)` with the Blueprint",
        ),
        (
            {"function_app.py": b"import hibana\n\n\ndef app(req, ctx):\n    return 'hi'\n"},
            "function_app.py:4: `app` is app (function), not a hibana.App; the app to serve "
            "is `app = hibana.App()`",
        ),
        (
            {"function_app.py": b"import hibana\n\napp = hibana.App()\nNAME = 'caf\xe9'\n"},
            "SyntaxError: (unicode error) 'utf-8' codec can't decode byte "
            "0xe9 in position 3: unexpected end of data\n    NAME = 'caf\ufffd'\n    the file is "
            "not UTF-8 text, which is how Python reads source: save it as UTF-8",
        ),
        (
            {"function_app.py": "import hibana\napp = hibana.App()\n".encode("utf-16")},
            "null bytes\n    the file is not UTF-8 text, which is how Python reads source: "
            "save it as UTF-8",
        ),
        (
            # UTF-16 with no byte order mark: valid UTF-8, a NUL in every other byte
            {"function_app.py": "import hibana\napp = hibana.App()\n".encode("utf-16-le")},
            "null bytes\n    the file is not UTF-8 text, which is how Python reads source: "
            "save it as UTF-8",
        ),
        (
            {"function_app.py": b"import sys\n\nsys.exit()\n"},
            "function_app.py:3: importing function_app.py failed: SystemExit: sys.exit() was "
            "called as the app was imported\n    sys.exit()\n",
        ),
        (
            {"function_app.py": b"raise KeyboardInterrupt\n"},
            "function_app.py:1: importing function_app.py failed: KeyboardInterrupt\n"
            "    raise KeyboardInterrupt\n",
        ),
        (
            {
                # a library installed in the app's own .venv raised: its line was named,
                # not the app's that called it
                ".venv/lib/python3.11/site-packages/dblib.py": b"def connect(url):\n"
                b"    raise ValueError(f'no database at {url!r}')\n",
                "function_app.py": b"import sys\nimport hibana\n\n"
                b"sys.path.append(__file__.replace('function_app.py', "
                b"'.venv/lib/python3.11/site-packages'))\nimport dblib\n\n"
                b"app = hibana.App()\nDB = dblib.connect('db:5432')\n",
            },
            "function_app.py:8: importing function_app.py failed: ValueError: no database at "
            "'db:5432'\n    DB = dblib.connect('db:5432')\n",
        ),
        (
            {
                "function_app.py": b"import hibana\n\napp = hibana.App()\n\n\n"
                b"@app.http('/x', method='POST')\ndef x(req, ctx):\n    pass\n"
            },
            "function_app.py:6: importing function_app.py failed: TypeError: Blueprint.http() "
            "got an unexpected keyword argument 'method'\n    @app.http('/x', method='POST')\n"
            "    app.http() takes no method=: did you mean methods=? it takes route, methods, "
            "timeout, max_concurrency, name, secrets\n",
        ),
        (
            {
                "function_app.py": b"import hibana\n\napp = hibana.App()\n\n\n"
                b"@app.queue('jobs', retry=hibana.Fixed(secs=1))\ndef job(msg, ctx):\n"
                b"    pass\n"
            },
            "    hibana.Fixed() takes no secs=: did you mean seconds=? it takes seconds\n",
        ),
        (
            # app.register(bp) forgotten: its functions answered 404, and nothing said so
            {
                "function_app.py": b"import hibana\nimport routes  # noqa\n\napp = hibana.App()\n",
                "routes.py": b"import hibana\n\nbp = hibana.Blueprint()\n\n\n"
                b"@bp.http('/x')\ndef x(req, ctx):\n    return 'x'\n",
            },
            "routes.py:3 makes the hibana.Blueprint bp, whose functions (x) would not be "
            "served: the App served does not register it; add `app.register(bp)` to "
            "function_app.py (`from routes import bp`)",
        ),
        (
            {
                "function_app.py": b"import hibana\n\nbp = hibana.Blueprint()\n\n\n"
                b"@bp.http('/x')\ndef x(req, ctx):\n    return 'x'\n"
            },
            "function_app.py defines no hibana.App, only the hibana.Blueprint bp (line 3), "
            "which no App serves; add `app = hibana.App()` and `app.register(bp)`",
        ),
        (
            {"function_app.py": b"import hibana\n\napi = hibana.App()\nadmin = hibana.App()\n"},
            "function_app.py defines several Apps, admin (line 4), api (line 3), and none is "
            "named `app`; name the one to serve `app`, and register the others on it",
        ),
        (
            {"app.py": b"import hibana\n\napp = hibana.App()\n"},
            "; app.py makes a hibana.App: rename it function_app.py, the file hibana serves",
        ),
    ],
    ids=[
        "circular",
        "circular-hint",
        "nul",
        "nul-in-a-module-it-imports",
        "webhook-unheard",
        "base-exception",
        "str-raises",
        "keyword-only",
        "retry-nan",
        "retry-inf",
        "async-generator",
        "generator",
        "queue-async-generator",
        "too-many-workers",
        "app-is-the-class",
        "app-is-a-blueprint",
        "app-is-a-function",
        "latin-1",
        "utf-16",
        "utf-16-without-bom",
        "sys-exit",
        "keyboard-interrupt",
        "venv-library",
        "keyword-mistyped",
        "keyword-mistyped-in-a-policy",
        "blueprint-not-registered",
        "blueprint-and-no-app",
        "several-apps-none-named-app",
        "app-file-named-otherwise",
    ],
)
def test_more_broken_apps_get_one_clear_message(
    tmp_path: Path, files: dict[str, bytes], expected: str
) -> None:
    for name, source in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(source)
    result = run_cli("serve", str(tmp_path), "--port", "0", "--workers", "1")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert "None" not in result.stderr


def test_a_class_of_the_apps_named_as_one_of_hibanas_gets_no_hint_of_hibanas(
    tmp_path: Path,
) -> None:
    (tmp_path / "function_app.py").write_text(
        "import hibana\n\n\nclass Fixed:\n    def __init__(self, seconds):\n        pass\n\n\n"
        "app = hibana.App()\nFixed(secs=1)\n"
    )
    result = run_cli("serve", str(tmp_path), "--port", "0", "--workers", "1")
    assert result.returncode == 2, result.stderr
    assert result.stderr.endswith(
        "function_app.py:10: importing function_app.py failed: TypeError: Fixed.__init__() "
        "got an unexpected keyword argument 'secs'\n    Fixed(secs=1)\n"
    ), result.stderr


def test_the_line_named_is_the_apps_own_not_a_sibling_folders(tmp_path: Path) -> None:
    # a module of a folder beside the app whose name the app's begins ("app2" beside
    # "app") raised: its line was taken for the app's own
    app_dir, sibling = tmp_path / "app", tmp_path / "app2"
    app_dir.mkdir()
    sibling.mkdir()
    (sibling / "settings.py").write_text("raise RuntimeError('DATABASE_URL is not set')\n")
    (app_dir / "function_app.py").write_text(
        f"import sys\nsys.path.append({str(sibling)!r})\nimport settings\n"
    )
    result = run_cli("serve", str(app_dir), "--port", "0", "--workers", "1")
    assert result.returncode == 2, result.stderr
    assert (
        "function_app.py:3: importing function_app.py failed: RuntimeError: DATABASE_URL is "
        "not set" in result.stderr
    ), result.stderr


def test_missing_app_file_names_the_fix(tmp_path: Path) -> None:
    result = run_cli("serve", str(tmp_path), "--port", "0")
    assert result.returncode == 2
    assert "No function_app.py in" in result.stderr
    assert "hibana new" in result.stderr


LIFESPAN_FAILS = """
import hibana


async def api(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "the database is not there"})


app = hibana.App()
app.asgi("/api", api)
"""


def test_a_mounted_app_whose_lifespan_startup_fails_stops_the_host(tmp_path: Path) -> None:
    """Its workers could never start: replacing them for ever while requests wait is no
    way to serve."""
    (tmp_path / "function_app.py").write_text(LIFESPAN_FAILS)
    result = run_cli("serve", str(tmp_path), "--port", "0", "--workers", "1")
    assert result.returncode == 2, result.stderr
    assert "error: a worker of the app exited with code 1 as it started" in result.stderr
    assert "failed its lifespan startup: the database is not there" in result.stdout
    assert "Listening on" not in result.stderr + result.stdout


SECOND_LIFESPAN_FAILS = """
import pathlib

import hibana

CLOSED = pathlib.Path(__file__).with_name("pool-closed")


async def pool(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        CLOSED.write_text("closed")
        await send({"type": "lifespan.shutdown.complete"})


async def api(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "the database is not there"})


app = hibana.App()
app.asgi("/pool", pool)
app.asgi("/api", api)
"""


def test_the_mounts_started_before_one_whose_lifespan_fails_are_shut_down(
    tmp_path: Path,
) -> None:
    """What the first mount's lifespan opened (a pool, a client) is closed, not left to
    the worker's exit."""
    (tmp_path / "function_app.py").write_text(SECOND_LIFESPAN_FAILS)
    result = run_cli("serve", str(tmp_path), "--port", "0", "--workers", "1")
    assert result.returncode == 2, result.stderr
    assert "the app mounted at /api failed its lifespan startup" in result.stdout
    assert (tmp_path / "pool-closed").read_text() == "closed"


LIFESPAN_FAILS_WHILE_FLAGGED = """
import pathlib

import hibana

FLAG = pathlib.Path(__file__).with_name("down")


async def api(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        if FLAG.exists():
            await send({"type": "lifespan.startup.failed", "message": "the database is down"})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"up"})


app = hibana.App()
app.asgi("/api", api)
"""


def test_once_what_failed_the_workers_is_back_requests_are_served_again(tmp_path: Path) -> None:
    (tmp_path / "function_app.py").write_text(LIFESPAN_FAILS_WHILE_FLAGGED)
    (tmp_path / "down").write_text("")
    for host in started(tmp_path, "--min-instances", "0", "--idle-timeout", "0.5"):
        with host.client() as client:
            assert client.get("/api/x").status_code == 503  # three workers died starting
            (tmp_path / "down").unlink()  # the database is back
            deadline = time.monotonic() + 30
            while (r := client.get("/api/x")).status_code == 503:
                assert time.monotonic() < deadline, r.text
                time.sleep(0.5)
            assert r.text == "up"
            # and it stays so after its worker has gone idle and exited with code 0,
            # scaled to zero: it was answered 503 for ever
            while host.worker_pids():
                assert time.monotonic() < deadline, "the idle worker did not exit"
                time.sleep(0.1)
            again = client.get("/api/x")
            assert (again.status_code, again.text) == (200, "up")


def test_at_zero_workers_a_request_gets_503_when_every_worker_dies_as_it_starts(
    tmp_path: Path,
) -> None:
    """Scaled to zero, the host only finds out at the first request: that request, and
    the ones after it, are answered rather than left waiting for a worker that never comes."""
    (tmp_path / "function_app.py").write_text(LIFESPAN_FAILS)
    for host in started(tmp_path, "--min-instances", "0"):
        r = httpx.get(host.url + "/api/x", timeout=30)
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "5"
        assert r.json()["error"].startswith("the app's workers fail as they start (3 in a row")
        host.wait_for_stderr(r"answered 1 request\(s\) 503: the app's workers fail")
        # RFC 9110 9.3.2: to a HEAD, the head alone (its JSON was written after it)
        addr, port = host.url.removeprefix("http://").split(":")
        with socket.create_connection((addr, int(port)), timeout=30) as sock:
            sock.sendall(b"HEAD /api/x HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 503 ") and answer.endswith(b"\r\n\r\n"), answer


REGISTERED_APP = """
import hibana

app = hibana.App()
admin = hibana.App()


@admin.http("/stats")
def stats(req, ctx):
    return "stats of admin"


app.register(admin)
"""


def test_a_second_app_registered_on_app_is_served_not_refused(tmp_path: Path) -> None:
    """Its functions are `app`'s: the error for a second App whose functions would not be
    served is not this one's."""
    (tmp_path / "function_app.py").write_text(REGISTERED_APP)
    for host in started(tmp_path, "--workers", "1"):
        r = httpx.get(host.url + "/stats", timeout=30)
        assert (r.status_code, r.text) == (200, "stats of admin")


DIES_AT_FORK = """
import os
from pathlib import Path

import hibana

HERE = Path(__file__).parent


def _forked():
    # while the file "broken" exists, each worker dies as soon as it is forked, its
    # death counted in "deaths" (a library's fork hook, a C extension that exits)
    if (HERE / "broken").exists():
        with open(HERE / "deaths", "a") as deaths:
            deaths.write("died\\n")
        os._exit(3)


os.register_at_fork(after_in_child=_forked)
app = hibana.App()


@app.http("/v")
def v(req, ctx):
    return "up"
"""


def test_a_worker_that_dies_as_it_starts_is_reported_once_and_recovers(tmp_path: Path) -> None:
    """It was started again once a second for ever, each death a line saying only its
    exit code; now the pause grows, one line says it keeps dying and why, and once the
    cause has gone a worker serves again."""
    (tmp_path / "function_app.py").write_text(DIES_AT_FORK)
    for host in started(tmp_path, "--workers", "1"):
        assert httpx.get(host.url + "/v", timeout=30).text == "up"
        (tmp_path / "broken").touch()
        (victim,) = host.worker_pids()
        os.kill(victim, signal.SIGKILL)
        host.wait_for_stderr(
            r"error: worker 0 keeps dying as it starts \(3 in a row, the last with exit code "
            r"3: a code hibana never exits with: the app's own code ended the process",
            60,
        )
        deaths = tmp_path / "deaths"
        deadline = time.monotonic() + 60
        while len(deaths.read_text().splitlines()) < 5:
            assert time.monotonic() < deadline, deaths.read_text()
            time.sleep(0.1)
        said = [line for line in host.stderr_lines if "exited with code 3" in line]
        assert len(said) == 2, said  # the 3rd on are the loop's, said once
        assert len([line for line in host.stderr_lines if "keeps dying" in line]) == 1
        r = httpx.get(host.url + "/v", timeout=30)
        assert r.status_code == 503
        assert "exit code 3: a code hibana never exits with" in r.json()["error"]
        (tmp_path / "broken").unlink()
        while (r := httpx.get(host.url + "/v", timeout=30)).status_code == 503:
            assert time.monotonic() < deadline + 30, r.text
            time.sleep(0.2)
        assert r.text == "up"
        host.wait_for_stderr(r"a worker serves again, after \d+ died as they started")
