"""``hibana``: the command line. The only place that prints for the user and picks exit codes."""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from hibana.errors import AppError, ConfigError, HibanaError
from hibana.host.scaling import MAX_INSTANCES, MAX_THREADS

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from hibana.store.base import DeadLetter, Store

T = TypeVar("T")

cli = typer.Typer(
    name="hibana",
    help="Self-hosted serverless functions for Python.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _app_dir(ctx: typer.Context, folder: Path) -> Path:
    """``folder``, if it is a folder; else a usage error saying which to pass."""
    command = ctx.info_name or "serve"
    if folder.is_file():
        parent = shlex.quote(str(folder.parent))
        raise typer.BadParameter(
            f"{folder} is a file; pass the folder that holds the app's function_app.py: "
            f"`hibana {command} {parent}`"
        )
    if folder.exists() and not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a folder; pass the app's folder")
    if not folder.is_dir():
        raise typer.BadParameter(
            f"folder {folder} does not exist; check the path, or write a starter app "
            f"there with `hibana new {shlex.quote(str(folder))}`"
        )
    return folder


def _app_option(folder: Path) -> Path:
    """``--app``'s folder; a usage error if it names a file (the app's function_app.py):
    its ``.hibana`` would be looked for inside the file, and the fix named would fail. So
    is a folder that does not exist (a typo): no host can run there, nor a store be."""
    if not folder.exists():
        raise typer.BadParameter(
            f"folder {folder} does not exist; pass the folder that holds the app's function_app.py"
        )
    if folder.is_file():
        raise typer.BadParameter(
            f"{folder} is a file; pass the folder that holds the app's function_app.py: "
            f"--app {shlex.quote(str(folder.parent))}"
        )
    return folder


AppDir = Annotated[
    Path,
    typer.Argument(
        metavar="APP_DIR",
        help="The app folder (holds function_app.py).",
        callback=_app_dir,
    ),
]
Port = Annotated[
    int, typer.Option("--port", "-p", min=0, max=65535, help="Port to listen on (0: any free).")
]
Host = Annotated[str, typer.Option("--host", help="Address to listen on.")]
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        "-w",
        min=1,
        max=MAX_INSTANCES,
        help="A fixed number of workers: --min-instances = --max-instances = N "
        "(default: none; the pool scales between those two).",
    ),
]
MinInstances = Annotated[
    int | None,
    typer.Option(
        min=0,
        max=MAX_INSTANCES,
        help="Workers always running; 0 scales to zero (default: the App's, else 0 serve, 1 dev).",
    ),
]
MaxInstances = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=MAX_INSTANCES,
        help="Most workers under load (default: the App's, else one per core).",
    ),
]
IdleTimeout = Annotated[
    float | None,
    typer.Option(
        help="Seconds without work after which a worker above the minimum exits "
        "(default: the App's, else 60)."
    ),
]
PrewarmOpt = Annotated[
    str | None,
    typer.Option(
        help="What a new worker starts from: app (fastest), runtime, or none "
        "(default: the App's, else app)."
    ),
]
MemoryLimit = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Replace a worker whose memory grows past this many MiB "
        "(default: the App's, else no limit).",
    ),
]
AdminPort = Annotated[
    int, typer.Option(min=0, max=65535, help="Loopback port for `hibana status` (0: any free).")
]
ShutdownTimeout = Annotated[
    float,
    typer.Option(min=0, help="Seconds in-flight invocations get to finish after SIGTERM."),
]
CancelGrace = Annotated[
    float,
    typer.Option(min=0, help="Seconds a timed-out function gets before its worker is replaced."),
]
ConcurrencyWait = Annotated[
    float,
    typer.Option(min=0, help="Seconds a request waits for a max_concurrency slot before 429."),
]
Threads = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=MAX_THREADS,
        help="Threads per worker for sync functions, more for ones that block on I/O "
        "(default: the App's threads=, else 40).",
    ),
]
MaxBody = Annotated[int, typer.Option(min=1, help="Largest request body in bytes (413 above).")]
MaxHeader = Annotated[
    int, typer.Option(min=1, help="Largest request head (line + headers) in bytes (431 above).")
]
HeaderTimeout = Annotated[
    float, typer.Option(min=0, help="Seconds a client has to send a request's headers (408).")
]
BodyTimeout = Annotated[
    float, typer.Option(min=0, help="Seconds a client may pause while sending a body (408).")
]
MinBodyRate = Annotated[
    int,
    typer.Option(
        min=0,
        help="Bytes/s a body still arriving after --body-timeout must average (408; 0: any).",
    ),
]
KeepAliveTimeout = Annotated[
    float, typer.Option(min=0, help="Seconds an idle keep-alive connection is kept open.")
]
LogLevel = Annotated[str, typer.Option(help="debug, info, warning or error.", case_sensitive=False)]
LogFormat = Annotated[
    str,
    typer.Option(
        help="json (one object a line), console (readable, for a terminal), or auto: "
        "console for `hibana dev` on a terminal, json otherwise.",
        case_sensitive=False,
    ),
]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="HIBANA_STORE",
        help="Store URL: postgresql://USER@HOST/DB to share state between hosts "
        "(default: sqlite in APP_DIR/.hibana/state.db).",
        show_envvar=True,
    ),
]
#: The largest message id and count a store takes: a 64-bit integer, in SQLite and PostgreSQL.
MAX_ID = 2**63 - 1
AppOpt = Annotated[
    Path,
    typer.Option(
        "--app", help="The app folder whose store to use (default: here).", callback=_app_option
    ),
]


def _fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


def _report(text: str) -> None:
    """``text`` on stderr: what goes on meanwhile (the host's start, a wait)."""
    with contextlib.suppress(OSError):  # a terminal that hung up: no one to tell
        print(text, file=sys.stderr, flush=True)


def _usage(message: str) -> NoReturn:
    raise typer.BadParameter(message)


def _check_store(store: str | None) -> None:
    """A usage error unless ``store`` (``--store`` or ``$HIBANA_STORE``) is a URL hibana
    reads: one it cannot is the command's mistake, not a store that failed."""
    from hibana.errors import StoreError
    from hibana.store import engine_for

    if store is not None:
        try:
            engine_for(store)
        except StoreError as exc:
            _usage(str(exc))


def _version(value: bool) -> None:
    if value:
        from hibana import __version__

        print(f"hibana {__version__}")
        raise typer.Exit()


@cli.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Self-hosted serverless functions for Python."""


def _host_command(reload: bool, doc: str) -> Callable[..., None]:
    """The ``serve`` and ``dev`` commands: the same options, with or without reload."""

    def command(
        app_dir: AppDir,
        port: Port = 7071,
        host: Host = "127.0.0.1",
        workers: Workers = None,
        min_instances: MinInstances = None,
        max_instances: MaxInstances = None,
        idle_timeout: IdleTimeout = None,
        prewarm: PrewarmOpt = None,
        memory_limit_mb: MemoryLimit = None,
        admin_port: AdminPort = 0,
        shutdown_timeout: ShutdownTimeout = 10.0,
        cancel_grace: CancelGrace = 5.0,
        concurrency_wait: ConcurrencyWait = 5.0,
        threads: Threads = None,
        max_body_bytes: MaxBody = 10 * 1024 * 1024,
        max_header_bytes: MaxHeader = 32 * 1024,
        header_timeout: HeaderTimeout = 10.0,
        body_timeout: BodyTimeout = 30.0,
        min_body_rate: MinBodyRate = 240,
        keep_alive_timeout: KeepAliveTimeout = 5.0,
        log_level: LogLevel = "info",
        log_format: LogFormat = "auto",
        store: StoreOpt = None,
    ) -> None:
        from hibana.host.config import HostConfig
        from hibana.host.supervisor import HostStartError, Supervisor

        if workers is not None:
            if min_instances is not None or max_instances is not None:
                _usage(
                    "--workers sets both --min-instances and --max-instances; "
                    "pass one or the others"
                )
            min_instances = max_instances = workers
        elif (
            min_instances is not None
            and max_instances is not None
            and min_instances > max_instances
        ):
            _usage(f"--min-instances {min_instances} is over --max-instances {max_instances}")
        if admin_port and admin_port == port:
            _usage(
                f"--admin-port {admin_port} is --port too: the admin endpoint needs a port of "
                "its own; pass another, or leave --admin-port out (a free one is picked)"
            )
        for flag, seconds in (
            ("--shutdown-timeout", shutdown_timeout),
            ("--cancel-grace", cancel_grace),
            ("--concurrency-wait", concurrency_wait),
            ("--header-timeout", header_timeout),
            ("--body-timeout", body_timeout),
            ("--keep-alive-timeout", keep_alive_timeout),
        ):
            if not math.isfinite(seconds):
                # --cancel-grace inf: a hung function's worker never replaced; a header
                # timeout of inf: a client that never finishes its head holds its place
                _usage(
                    f"{flag} {seconds:g} must be a finite number of seconds; for a long wait, "
                    "give it in seconds (86400 is a day)"
                )
        if idle_timeout is not None and not 0 < idle_timeout < math.inf:  # nan too
            _usage(
                f"--idle-timeout {idle_timeout:g} must be over 0 seconds, and finite (for "
                "workers that never retire, give --min-instances as many as --max-instances)"
            )
        if not host.strip():
            _usage(
                "--host is empty; give the address to listen on: 127.0.0.1 (this machine "
                "only, the default) or 0.0.0.0 (every interface)"
            )
        log_level = log_level.lower()
        if log_level not in ("debug", "info", "warning", "error"):
            _usage(f"--log-level {log_level!r} is not one of: debug, info, warning, error")
        if prewarm is not None and prewarm not in ("app", "runtime", "none"):
            _usage(f"--prewarm {prewarm!r} is not one of: app, runtime, none")
        log_format = log_format.lower()
        if log_format not in ("auto", "json", "console"):
            _usage(f"--log-format {log_format!r} is not one of: auto, json, console")
        if log_format == "auto":
            log_format = "console" if reload and sys.stdout.isatty() else "json"
        _check_store(store)
        try:
            config = HostConfig(
                app_dir=str(app_dir),
                host=host,
                port=port,
                min_instances=min_instances,
                max_instances=max_instances,
                idle_timeout=idle_timeout,
                prewarm=prewarm,  # type: ignore[arg-type]
                memory_limit_mb=memory_limit_mb,
                admin_port=admin_port,
                shutdown_timeout=shutdown_timeout,
                cancel_grace=cancel_grace,
                concurrency_wait=concurrency_wait,
                threads=threads,
                max_body_bytes=max_body_bytes,
                max_header_bytes=max_header_bytes,
                header_timeout=header_timeout,
                body_timeout=body_timeout,
                min_body_rate=min_body_rate,
                keep_alive_timeout=keep_alive_timeout,
                log_level=log_level,  # type: ignore[arg-type]
                log_format=log_format,  # type: ignore[arg-type]
                reload=reload,
                store=store,
            )
            code = Supervisor(config, _report).run()
        except HostStartError as exc:
            _fail(str(exc), 1)
        except (AppError, ConfigError) as exc:
            _fail(str(exc))
        except HibanaError as exc:
            _fail(str(exc), 1)
        raise typer.Exit(code)

    command.__doc__ = doc
    return command


cli.command("serve")(
    _host_command(
        False, "Run the host on APP_DIR: one line per function, then JSON log lines on stdout."
    )
)
cli.command("dev")(
    _host_command(
        True,
        "Like serve, for development: one worker kept warm, a reload when a .py file in "
        "APP_DIR changes, readable log lines on a terminal; an app that does not load is "
        "waited on (requests get 503 saying why) until a change fixes it.",
    )
)


STARTER = '''"""A hibana app: declare functions on `app`, run `hibana dev .` and call them."""

import hibana

app = hibana.App()


@app.http("/hello/{name}", methods=["GET"])
def hello(req: hibana.Request, ctx: hibana.Context) -> str:
    ctx.log.info("greeting", name=req.params["name"])
    return f"Hello {req.params['name']}"


@app.http("/echo", methods=["POST"], timeout=5)
async def echo(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    return hibana.Response.json({"got": req.json(), "invocation": ctx.invocation_id})
'''


@cli.command()
def new(
    directory: Annotated[
        str, typer.Argument(metavar="DIRECTORY", help="Folder to create the app in.")
    ],
) -> None:
    """Write a starter app into DIRECTORY that runs as is."""
    if not directory.strip():
        _usage("DIRECTORY is empty; name the folder to create the app in")
    folder = Path(directory)
    target = folder / "function_app.py"
    if folder.exists() and not folder.is_dir():
        _fail(f"{folder} is a file, not a folder; choose a folder for the app")
    if target.exists():
        _fail(f"{target} already exists; choose another folder, or edit that app")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target.write_text(STARTER)
    except OSError as exc:
        _fail(f"cannot write {target}: {exc.strerror}; choose a folder you can write to", 1)
    shown = str(folder)
    if shown.startswith("-"):  # else the command printed reads it as an option
        shown = f".{os.sep}{shown}"
    print(f"Created {target}\nRun it:  hibana dev {shlex.quote(shown)}")


RunningApp = Annotated[
    Path,
    typer.Option("--app", help="The app folder of the running host.", callback=_app_option),
]


def _ask_host(app: Path, method: str, path: str, timeout: float) -> dict[str, Any]:
    """What the admin endpoint of the host running ``app`` answers to ``method path``
    (an error answer's JSON too); exit 1 naming the problem if no host answers, or if
    the one that does is not that app's: a host killed with SIGKILL leaves its host.json
    behind, and its admin port may since be another host's."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    from hibana.host.admin import host_file

    where = host_file(app)
    try:
        info = json.loads(where.read_text())
        admin, pid = str(info["admin"]), info["pid"]
    except (OSError, ValueError, KeyError, TypeError):
        _fail(
            f"no running host found for {app} ({where} is missing or unreadable); "
            f"start one with `hibana serve {app}`",
            1,
        )
    mine = os.path.realpath(app)
    # the host acts only if it is this one (a reload of another app is not undone)
    who = urllib.parse.urlencode({"pid": pid, "app": os.fsencode(mine)})
    request = urllib.request.Request(f"{admin}{path}?{who}", method=method)
    answer: Any = None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(ValueError):
            answer = json.loads(exc.read())
    except OSError as exc:
        _fail(f"the host at {admin} (pid {pid}) did not answer: {exc}; is it still running?", 1)
    except ValueError:
        pass
    if not isinstance(answer, dict):
        _fail(f"{admin} (named in {where}) is not a hibana host's admin endpoint", 1)
    if "pid" not in answer:  # every answer of a host says whose it is
        _fail(
            f"{admin} (named in {where}) does not say which app it serves: it is not a hibana "
            f"host, or one older than this command; restart the app's host (`hibana serve "
            f"{app}`)",
            1,
        )
    if (answer["pid"], answer.get("app")) != (pid, mine):
        _fail(
            f"no running host found for {app}: {where} is stale; it names the host pid {pid} "
            f"at {admin}, but the host answering there is pid {answer.get('pid')} serving "
            f"{answer.get('app')}; start one with `hibana serve {app}`",
            1,
        )
    return answer


@cli.command()
def status(
    app: RunningApp = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
) -> None:
    """Show a running host's workers and functions: in-flight, cold starts, last cold-start ms."""
    import json

    data = _ask_host(app, "GET", "/status", timeout=5)
    if "error" in data and "workers" not in data:  # the host could not say (at its fd limit)
        _fail(f"the host of {app} answered: {data['error']}", 1)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    scaling = data["scaling"] or {}
    console = _console()
    console.print(
        f"host pid {data['pid']} · {data['url']} · up {data['uptime_s']:.0f}s · "
        f"app generation {data['generation']}, loaded {data['loaded_s']:.0f}s ago · "
        f"workers {scaling.get('min_instances')}..{scaling.get('max_instances')} "
        f"· prewarm {scaling.get('prewarm')} · idle timeout {scaling.get('idle_timeout')}s"
    )
    if (reloading := data.get("reloading_s")) is not None:
        waiting = data["reloads_waiting"]
        console.print(
            f"reloading: a new version of the app has been loading for {reloading:.0f}s; "
            f"generation {data['generation']} serves until it is ready"
            + (f"; {waiting} more asked for meanwhile" if waiting else "")
        )
    functions = _table(
        "function",
        "trigger",
        "workers",
        "in flight",
        "waiting s",
        "invocations",
        "errors",
        "cold starts",
        "last cold start ms",
    )
    for fn in data["functions"]:
        last, wait = fn["last_cold_start_ms"], fn["oldest_wait_s"]
        functions.add_row(
            fn["name"],
            fn["trigger"],
            str(fn["workers"]),
            str(fn["inflight"]) + (f"/{limit}" if (limit := fn["max_concurrency"]) else ""),
            "-" if wait is None else f"{wait:.1f}",
            str(fn["invocations"]),
            str(fn["errors"]),
            str(fn["cold_starts"]),
            "-" if last is None else f"{last:.1f}",
        )
    console.print(functions)
    workers = _table(
        "worker",
        "pid",
        "generation",
        "state",
        "in flight",
        "invocations",
        "cold start ms",
        "idle s",
        "rss MiB",
    )
    for w in data["workers"]:
        workers.add_row(
            str(w["slot"]),
            str(w["pid"]),
            str(w["generation"]),
            w["state"],
            str(w["inflight"]),
            str(w["invocations"]),
            f"{w['cold_start_ms']:.1f}",
            f"{w['idle_s']:.1f}",
            f"{w['rss_mb']:.0f}" if w["rss_mb"] else "-",  # read a second after start
        )
    console.print(workers if data["workers"] else "no workers running (scaled to zero)")
    if data.get("queues"):
        console.print(_queues_table(data["queues"]))


def _console() -> Console:
    """Where tables go: piped (a file, `| less`, a CI log), as wide as they need rather
    than a terminal's 80 columns."""
    from rich.console import Console

    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=200 if wide else None)


def _table(*names: str) -> Table:
    """A table whose cells, in a narrow terminal, fold onto more lines, never cut."""
    from rich.table import Table

    made = Table(*names)
    for column in made.columns:
        column.overflow = "fold"
    return made


def _queues_table(queues: list[dict[str, Any]]) -> Table:
    """The queues' figures (``QueueStats`` as dicts), for ``status`` and ``queue stats``."""
    table = _table("queue", "ready", "delayed", "in flight", "dead letters", "oldest age s")
    for q in queues:
        age = "-" if q["oldest_age"] is None else f"{q['oldest_age']:.1f}"
        table.add_row(
            q["queue"], str(q["ready"]), str(q["delayed"]), str(q["in_flight"]), str(q["dead"]), age
        )
    return table


@cli.command()
def reload(app: RunningApp = Path(".")) -> None:
    """Load a new version of the app into its running host without dropping a request.

    The new version's workers start first; then the old ones stop accepting, finish what
    they hold and exit. If the new version fails to load, the old one goes on serving and
    this exits 1 with the reason. (SIGHUP to the host does the same, for service managers.)"""
    from hibana.host.supervisor import IMPORT_TIMEOUT

    # one asked for during a reload waits for it, then has its own: each imports the app
    # and then starts its workers, each within IMPORT_TIMEOUT
    answer = _ask_host(app, "POST", "/reload", timeout=4 * IMPORT_TIMEOUT + 30)
    if answer.get("serving") is False:  # `hibana dev` waiting for a fix: none to keep
        _fail(f"the host of {app} tried again: {answer.get('error')}", 1)
    if not answer.get("reloaded"):
        _fail(
            f"the host kept the previous version of {app}: "
            f"{answer.get('error', 'it gave no reason')}",
            1,
        )
    retiring = sum(1 for w in answer["workers"] if w["generation"] < answer["generation"])
    names = ", ".join(fn["name"] for fn in answer["functions"]) or "no functions"
    print(
        f"Reloaded {app}: generation {answer['generation']} serves ({names}); "
        f"{retiring} worker(s) of the previous version finish their work and exit"
    )


queue_cli = typer.Typer(
    help="Look into queues and act on them: send, stats, dead letters, redrive. "
    "Works with or without a running host.",
    no_args_is_help=True,
)
cli.add_typer(queue_cli, name="queue")


@contextlib.contextmanager
def _opened_store(app: Path, store: str | None, *, create: bool = False) -> Iterator[Store]:
    """The app's store (or ``--store``), closed afterwards; exit 1 naming the problem.

    A store that does not exist yet is made only when ``create`` (setting a secret before
    the first start); otherwise its absence is the error, so a mistyped ``--app`` or
    ``--store`` leaves no ``.hibana`` folder, nor a store in an empty file, behind. The
    default store needs an app folder around it."""
    from hibana.host.loader import APP_FILE
    from hibana.store import STORE_ENV, open_store, resolve_url

    _check_store(store)
    url = resolve_url(store, app)
    default = not (store or os.environ.get(STORE_ENV))
    if default and not (app / APP_FILE).is_file():
        _fail(
            f"{app.resolve()} is not an app folder (it has no {APP_FILE}): pass --app APP_DIR, "
            "or --store URL",
            1,
        )
    if default and not create:  # (the engine names a --store that is not there)
        path = Path(url.removeprefix("sqlite:///")).resolve()
        if not path.exists():
            _fail(
                f"no store at {path}: no host has run this app yet; start one with "
                f"`hibana serve {app}` (or pass --store URL)",
                1,
            )
    try:
        opened = open_store(store, app, create=create, on_wait=_report)
    except HibanaError as exc:
        _fail(str(exc), 1)
    interrupted = False
    try:
        yield opened
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        # at Ctrl-C, not waited for: its writer may be waiting for a lock, as it was told
        opened.close(timeout=0 if interrupted else None)


def _check_queue(opened: Store, queue: str) -> None:
    """Exit 1 if the store knows no queue of that name (declared, or holding messages)."""
    known = {q.name for q in _run(opened.declared())} | {s.queue for s in _run(opened.stats())}
    if queue not in known:
        names = ", ".join(sorted(known)) or "none yet (start the host once)"
        _fail(f"no queue {queue!r} in {opened.display}; queues: {names}", 1)


def _text(option: str, value: str) -> str:
    """``value``, if it is text; else a usage error naming ``option``. Bytes of the command
    line that are not UTF-8 reach Python as lone surrogates, which nothing can store."""
    try:
        value.encode()
    except UnicodeEncodeError:
        try:
            shown = repr(os.fsencode(value))  # the bytes as they were given
        except UnicodeEncodeError:
            shown = repr(value)
        _usage(f"{option} {shown} is not UTF-8 text; pass it in UTF-8")
    return value


#: The queues of a timer and of a subscriber are named for the function: timer:NAME.
_OWN_QUEUES = ("timer:", "event:")


def _name(kind: str, name: str) -> None:
    """A usage error unless ``name`` is one the store can hold a ``kind`` (queue, topic)
    under: else 'a b' is said to be a queue or topic not there, as if mistyped."""
    from hibana.names import NAME_RULE, name_problem

    own = kind == "queue" and name.startswith(_OWN_QUEUES)
    problem = name_problem(name.split(":", 1)[1] if own else name)
    if problem is not None:
        rule = NAME_RULE + (
            " (a timer's queue is timer:FUNCTION; a subscriber's, event:FUNCTION)"
            if kind == "queue"
            else ""
        )
        _usage(f"{kind} name {name!r}: use {rule}; {problem}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value; pass a number, or null")


def _finite(number: str) -> float:
    value = float(number)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{number} is too large for a JSON number (at most about 1.8e308)")
    return value


#: Bytes of a document read from @FILE or @- at most: 16 times what a message holds, room
#: for any indentation, while /dev/zero or `yes |` is not read until memory runs out.
MAX_DOCUMENT_BYTES = 16 * 256 * 1024


def _read_document(option: str, source: str) -> str:
    """What ``option @FILE`` (or ``@-``, standard input) names: a document too large for
    the command line (an argument holds 128 KiB at most on Linux)."""
    if source == "-" and sys.stdin is None:  # started with fd 0 closed (`<&-`)
        _usage(f"{option} @-: standard input is closed; pipe the document in, or pass @FILE")
    try:
        if source == "-":
            raw = sys.stdin.buffer.read(MAX_DOCUMENT_BYTES + 1)
        else:
            with Path(source).open("rb") as f:
                raw = f.read(MAX_DOCUMENT_BYTES + 1)
        if len(raw) > MAX_DOCUMENT_BYTES:
            _usage(
                f"{option} @{source} holds more than {MAX_DOCUMENT_BYTES} bytes; a message "
                "holds 256 KiB of JSON at most"
            )
        return raw.decode()
    except OSError as exc:
        _usage(f"{option} @{source}: cannot read it: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        _usage(f"{option} @{source} is not UTF-8 text: {exc}")


def _json_option(option: str, text: str) -> Any:
    """The JSON document ``text`` holds; a usage error naming ``option`` unless it is one
    that any JSON reader reads back as sent: Python's own reader takes NaN and Infinity,
    and lone surrogates (``"\\ud800"``), which become null and an encoding error later."""
    import json

    if text.startswith("@"):
        text = _read_document(option, text[1:])
    _text(option, text)
    try:
        document = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except ValueError as exc:
        _usage(f"{option} is not JSON: {exc}")
    except RecursionError:
        _usage(f"{option} nests too deeply to read (about 1000 levels at most); flatten it")
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending += [*item, *item.values()]
        elif isinstance(item, list):
            pending += item
        elif isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError as exc:
                bad = item[exc.start : exc.end]
                _usage(
                    f"{option} holds {item!r}, a string with a lone surrogate ({bad!r}: half "
                    "of a UTF-16 pair, not a character); escape both halves "
                    '("\\ud83d\\ude00") or write the character itself'
                )
    return document


def _run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio

    try:
        return asyncio.run(coro)
    except HibanaError as exc:
        _fail(str(exc), 1)


@queue_cli.command("send")
def queue_send(
    queue: Annotated[str, typer.Argument(metavar="QUEUE", help="The queue to send to.")],
    data: Annotated[
        str,
        typer.Option(
            "--data", help="The message: a JSON document, or @FILE, or @- to read standard input."
        ),
    ],
    delay: Annotated[
        float, typer.Option(help="Seconds before it is delivered: 0 to 31536000 (365 days).")
    ] = 0.0,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="The same key twice within 24 h is one message (default: none)."),
    ] = None,
    app: AppOpt = Path("."),
    store: StoreOpt = None,
) -> None:
    """Put a message on a queue of the app."""
    from hibana.context import checked_delay, checked_key
    from hibana.errors import QueueError
    from hibana.messages import encode_json
    from hibana.store.base import NewMessage
    from hibana.triggers.outbox import MAX_PAYLOAD_BYTES

    _name("queue", _text("QUEUE", queue))
    payload = _json_option("--data", data)
    try:
        # as typed: 31536001, not 3.1536e+07
        checked_delay(delay, f"--delay {delay:.15g}")
    except QueueError as exc:
        _usage(str(exc))
    if idempotency_key is not None:
        _text("--idempotency-key", idempotency_key)
        try:
            checked_key(
                idempotency_key,
                f"--idempotency-key {idempotency_key!r}",
                "leave --idempotency-key out",
            )
        except QueueError as exc:
            _usage(str(exc))
    body = encode_json(payload, f"the message for queue {queue!r}")
    if len(body) > MAX_PAYLOAD_BYTES:
        _usage(f"--data is {len(body)} bytes, over the limit of {MAX_PAYLOAD_BYTES}")
    if queue.startswith("timer:"):
        _usage(
            f"{queue!r} is a timer's own queue: its schedule sends to it, nothing else may; "
            "to run the timer function now, give it run_on_startup=True, or call its code "
            "from a function of your own"
        )
    if queue.startswith("event:"):
        # what its subscriber is given is a CloudEvent: anything else would be a dead letter
        # at once, unrun
        from hibana.events.cloudevent import EventError, from_structured

        try:
            from_structured(payload, where="--data")
        except EventError as exc:
            _usage(
                f"{queue!r} takes CloudEvents, and {exc.message}; publish with `hibana events "
                "publish`, or send a whole event to replay it to this subscriber"
            )
    with _opened_store(app, store) as opened:
        declared = [q.name for q in _run(opened.declared())]
        if queue not in declared:
            known = ", ".join(declared) if declared else "none yet (start the host once)"
            _fail(
                f"no function consumes the queue {queue!r} in {opened.display}; declared "
                f"queues: {known}",
                1,
            )
        sent = _run(opened.enqueue(NewMessage(queue, body, delay, idempotency_key)))
    if sent.duplicate:
        print(f"Duplicate: message {sent.id} already has idempotency key {idempotency_key!r}")
    else:
        print(f"Sent message {sent.id} to {queue}")


@queue_cli.command("stats")
def queue_stats(
    app: AppOpt = Path("."),
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Depth, delayed, in flight, oldest age and dead letters of every queue."""
    import dataclasses
    import json

    with _opened_store(app, store) as opened:
        stats = _run(opened.stats())
    if as_json:
        print(json.dumps([dataclasses.asdict(s) for s in stats], indent=2))
        return
    shown = _queues_table([dataclasses.asdict(s) for s in stats])
    _console().print(shown if stats else f"no queues in {opened.display}")


@queue_cli.command("dlq")
def queue_dlq(
    queue: Annotated[
        str, typer.Argument(metavar="QUEUE", help="The queue whose dead letters to list.")
    ],
    limit: Annotated[int, typer.Option(min=1, max=MAX_ID, help="List at most this many.")] = 100,
    app: AppOpt = Path("."),
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List a queue's dead letters: id, attempts, last error, payload."""
    import json
    import time

    _name("queue", _text("QUEUE", queue))
    with _opened_store(app, store) as opened:
        dead = _run(opened.dead_letters(queue, limit))
        if not dead:
            _check_queue(opened, queue)
    if as_json:
        print(json.dumps([_dead_letter(d) for d in dead], indent=2))
        return
    table = _table("id", "attempts", "died", "last error", "data")
    for d in dead:
        died = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.died_at))
        last = d.errors[-1]["error"] if d.errors else "-"
        text = d.body.decode(errors="replace")
        table.add_row(str(d.id), str(d.attempts), died, last, text[:60])
    _console().print(table if dead else f"no dead letters in {queue}")


def _dead_letter(d: DeadLetter) -> dict[str, Any]:
    """A dead letter for ``queue dlq --json``: its payload as ``data``, or, for a body that
    is no JSON (code may write any bytes through ``hibana.store``), as ``body_base64``."""
    import base64
    import json

    shown: dict[str, Any] = {"id": d.id, "queue": d.queue}
    try:
        shown["data"] = json.loads(d.body, parse_constant=_no_constant)
    except ValueError:  # not UTF-8 either, or NaN: what any JSON reader would refuse
        shown["body_base64"] = base64.b64encode(d.body).decode()
    return {
        **shown,
        "attempts": d.attempts,
        "errors": d.errors,
        "enqueued_at": d.enqueued_at,
        "died_at": d.died_at,
    }


@queue_cli.command("redrive")
def queue_redrive(
    queue: Annotated[
        str, typer.Argument(metavar="QUEUE", help="The queue whose dead letters to move back.")
    ],
    ids: Annotated[
        list[int] | None,
        typer.Option(
            "--id",
            min=1,
            max=MAX_ID,
            help="Only this dead letter (repeatable; default: every one of QUEUE).",
        ),
    ] = None,
    app: AppOpt = Path("."),
    store: StoreOpt = None,
) -> None:
    """Move dead letters back into their queue, with their attempts reset."""
    _name("queue", _text("QUEUE", queue))
    if ids:
        ids = list(dict.fromkeys(ids))  # an id given twice is one message
    with _opened_store(app, store) as opened:
        moved = _run(opened.redrive(queue, ids or None))
        if not moved:
            _check_queue(opened, queue)
    if ids and moved < len(ids):
        print(
            f"Moved {moved} of {len(ids)} message(s) back to {queue}; the rest are not "
            "dead letters of that queue"
        )
        raise typer.Exit(1)
    print(f"Moved {moved} message(s) back to {queue}")


events_cli = typer.Typer(help="Publish CloudEvents to the app's topics.", no_args_is_help=True)
cli.add_typer(events_cli, name="events")


@events_cli.command("publish")
def events_publish(
    topic: Annotated[str, typer.Argument(metavar="TOPIC", help="The topic to publish to.")],
    type_: Annotated[str, typer.Option("--type", help="The event's type attribute.")],
    source: Annotated[str, typer.Option(help="The event's source attribute.")],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="The event's data: JSON, or @FILE, or @- for standard input (default: none).",
        ),
    ] = None,
    subject: Annotated[
        str | None, typer.Option(help="The event's subject (default: none).")
    ] = None,
    event_id: Annotated[
        str | None, typer.Option("--id", help="The event's id (default: a new one).")
    ] = None,
    app: AppOpt = Path("."),
    store: StoreOpt = None,
) -> None:
    """Publish one CloudEvent to every subscription of TOPIC whose filter matches."""
    import json

    from hibana.events.cloudevent import EventError, new_event
    from hibana.events.filters import Filter
    from hibana.telemetry.trace import continue_or_start
    from hibana.triggers.outbox import DEDUPE_WINDOW, MAX_PAYLOAD_BYTES, event_key, fan_out

    for option, value in [
        ("TOPIC", topic),
        ("--type", type_),
        ("--source", source),
        ("--subject", subject),
        ("--id", event_id),
    ]:
        if value is not None:
            _text(option, value)
    _name("topic", topic)
    for option, value, left_out in [
        ("--subject", subject, "for an event with no subject"),
        ("--id", event_id, "for a new id"),
    ]:
        if value == "":  # the library's message names None, which no command line passes
            _usage(f"{option} '' is empty: leave {option} out {left_out}")
    payload = None if data is None else _json_option("--data", data)
    try:
        event = new_event(type=type_, source=source, data=payload, subject=subject, id=event_id)
    except EventError as exc:
        _usage(exc.message)
    # one trace for every subscriber's invocation, as ctx.publish gives them
    trace = continue_or_start(None)
    event.extensions["traceparent"] = trace.traceparent
    body = event.to_json()
    if len(body) > MAX_PAYLOAD_BYTES:
        _usage(f"the event is {len(body)} bytes, over the limit of {MAX_PAYLOAD_BYTES}")
    with _opened_store(app, store) as opened:
        subs = _run(opened.subscriptions())
        topics = sorted({s.topic for s in subs})
        if topic not in topics:
            known = ", ".join(topics) if topics else "none yet (start the host once)"
            _fail(f"no subscription to topic {topic!r} in {opened.display}; topics: {known}", 1)
        routes = [
            (s.topic, s.queue, None if s.filter is None else Filter.from_dict(json.loads(s.filter)))
            for s in subs
        ]
        deliveries = fan_out(topic, event, body, routes)
        fresh = _run(opened.publish(topic, event_key(event), deliveries, DEDUPE_WINDOW))
    if not fresh:
        print(f"Duplicate: event {event.id!r} from {event.source!r} was published already")
    else:
        print(
            f"Published event {event.id} to {len(deliveries)} subscription(s) of {topic} "
            f"(trace {trace.trace_id})"
        )


secrets_cli = typer.Typer(
    help="Secrets for functions: encrypted in the store, never in environment variables.",
    no_args_is_help=True,
)
cli.add_typer(secrets_cli, name="secrets")


@secrets_cli.command("set")
def secrets_set(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="The secret's name, as functions name it.")
    ],
    app: AppOpt = Path("."),
    store: StoreOpt = None,
) -> None:
    """Set a secret. The value comes from stdin (piped) or a hidden prompt, never from the
    command line, which shell history and `ps` would show."""
    from hibana.secrets import SecretError, check_name, load_key, seal

    try:
        check_name(name)
    except SecretError as exc:
        _usage(str(exc))
    if sys.stdin is None:  # started with fd 0 closed (`<&-`)
        _fail(
            f"no value for {name}: standard input is closed; pipe the value in, or run the "
            "command in a terminal to be asked for it. Nothing was set",
            1,
        )
    # the store and the key first: a value typed (twice) for a store that cannot be
    # opened would be typed in vain
    with _opened_store(app, store, create=True) as opened:
        try:
            key = load_key(create=True)
        except SecretError as exc:
            _fail(str(exc), 1)
        value = _secret_value(name)
        try:
            sealed = seal(key, name, value)
        except SecretError as exc:
            _fail(str(exc), 1)
        _run(opened.put_secret(name, sealed))
    print(f"Set secret {name} in {opened.display}")


def _secret_value(name: str) -> str:
    """The value of secret ``name``: from a hidden prompt (twice) on a terminal, else from
    standard input; exit 1 naming what is wrong with it."""
    import getpass

    from hibana.secrets import MAX_VALUE_BYTES

    if sys.stdin.isatty():
        value = getpass.getpass(f"Value of {name}: ")
        if getpass.getpass("Again, to confirm: ") != value:
            _fail("the two values differ; nothing was set", 1)
    else:
        # past the limit, and a line end, is enough to refuse: `yes |` never ends
        raw = sys.stdin.buffer.read(MAX_VALUE_BYTES + 3)
        if len(raw) > MAX_VALUE_BYTES + 2:
            _fail(
                f"the value of {name} on stdin is over {MAX_VALUE_BYTES} bytes (64 KiB); keep "
                "a large file elsewhere, and the key that opens it as the secret. Nothing "
                "was set",
                1,
            )
        try:
            value = raw.decode().removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError as exc:
            _fail(
                f"the value of {name} on stdin is not UTF-8 text (byte {exc.start}); a secret "
                "is text: base64-encode a binary value first. Nothing was set",
                1,
            )
    if not value:
        _fail(f"no value for {name} on stdin; nothing was set", 1)
    return value


@secrets_cli.command("list")
def secrets_list(app: AppOpt = Path("."), store: StoreOpt = None) -> None:
    """The names of the secrets in the store (never their values)."""
    with _opened_store(app, store) as opened:
        names = sorted(_run(opened.secrets()))
    print("\n".join(names) if names else f"no secrets in {opened.display}")


@secrets_cli.command("rm")
def secrets_rm(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The secret to delete.")],
    app: AppOpt = Path("."),
    store: StoreOpt = None,
) -> None:
    """Delete a secret."""
    from hibana.secrets import SecretError, check_name

    _text("NAME", name)
    try:
        check_name(name)  # else 'a b' is said to be no secret, as if mistyped
    except SecretError as exc:
        _usage(str(exc))
    with _opened_store(app, store) as opened:
        removed = _run(opened.delete_secret(name))
    if not removed:
        _fail(f"no secret {name!r} in {opened.display}", 1)
    print(f"Deleted secret {name}")


def main() -> None:
    cli()
