"""The app (``hibana``) and the commands that run or ask a host: serve, dev, new, status,
reload; store.py has those that work on an app's store (queue, events, secrets).

What a command needs beyond typer it imports when it runs: ``hibana --version`` and
``--help`` do not import the host, the store or the app model."""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from hibana.cli.options import Commands, StoreOpt, app_option, check_store, fail, report, usage
from hibana.cli.store import events_cli, queue_cli, secrets_cli
from hibana.cli.tables import new_console, new_table, queues_table
from hibana.host.scaling import MAX_INSTANCES, MAX_THREADS

cli = Commands(
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
LogLevel = Annotated[
    str,
    typer.Option(
        envvar="HIBANA_LOG_LEVEL",
        help="The least level written: debug, info, warning or error (hibana's own lines, "
        "ctx.log and logging alike).",
        case_sensitive=False,
        show_envvar=True,
    ),
]
LogFormat = Annotated[
    str,
    typer.Option(
        help="json (one object a line), console (readable, for a terminal), or auto: "
        "console for `hibana dev` on a terminal, json otherwise.",
        case_sensitive=False,
    ),
]


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
        from hibana.errors import AppError, ConfigError, HibanaError
        from hibana.host.config import HostConfig
        from hibana.host.supervisor import HostStartError, Supervisor

        if workers is not None:
            if min_instances is not None or max_instances is not None:
                usage(
                    "--workers sets both --min-instances and --max-instances; "
                    "pass one or the others"
                )
            min_instances = max_instances = workers
        elif (
            min_instances is not None
            and max_instances is not None
            and min_instances > max_instances
        ):
            usage(f"--min-instances {min_instances} is over --max-instances {max_instances}")
        if admin_port and admin_port == port:
            usage(
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
                usage(
                    f"{flag} {seconds:g} must be a finite number of seconds; for a long wait, "
                    "give it in seconds (86400 is a day)"
                )
        if idle_timeout is not None and not 0 < idle_timeout < math.inf:  # nan too
            usage(
                f"--idle-timeout {idle_timeout:g} must be over 0 seconds, and finite (for "
                "workers that never retire, give --min-instances as many as --max-instances)"
            )
        if not host.strip():
            usage(
                "--host is empty; give the address to listen on: 127.0.0.1 (this machine "
                "only, the default) or 0.0.0.0 (every interface)"
            )
        log_level = log_level.lower()
        if log_level not in ("debug", "info", "warning", "error"):
            usage(
                f"--log-level (or $HIBANA_LOG_LEVEL) {log_level!r} is not one of: debug, info, "
                "warning, error"
            )
        if prewarm is not None and prewarm not in ("app", "runtime", "none"):
            usage(f"--prewarm {prewarm!r} is not one of: app, runtime, none")
        log_format = log_format.lower()
        if log_format not in ("auto", "json", "console"):
            usage(f"--log-format {log_format!r} is not one of: auto, json, console")
        if log_format == "auto":
            log_format = "console" if reload and sys.stdout.isatty() else "json"
        check_store(store)
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
            code = Supervisor(config, report).run()
        except HostStartError as exc:
            fail(str(exc), 1)
        except (AppError, ConfigError) as exc:
            fail(str(exc))
        except HibanaError as exc:
            fail(str(exc), 1)
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
        usage("DIRECTORY is empty; name the folder to create the app in")
    folder = Path(directory)
    target = folder / "function_app.py"
    if folder.exists() and not folder.is_dir():
        fail(f"{folder} is a file, not a folder; choose a folder for the app")
    if target.exists():
        fail(f"{target} already exists; choose another folder, or edit that app")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target.write_text(STARTER)
    except OSError as exc:
        fail(f"cannot write {target}: {exc.strerror}; choose a folder you can write to", 1)
    shown = str(folder)
    if shown.startswith("-"):  # else the command printed reads it as an option
        shown = f".{os.sep}{shown}"
    print(f"Created {target}\nRun it:  hibana dev {shlex.quote(shown)}")


RunningApp = Annotated[
    Path,
    typer.Option("--app", help="The app folder of the running host.", callback=app_option),
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
        fail(
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
        fail(f"the host at {admin} (pid {pid}) did not answer: {exc}; is it still running?", 1)
    except ValueError:
        pass
    if not isinstance(answer, dict):
        fail(f"{admin} (named in {where}) is not a hibana host's admin endpoint", 1)
    if "pid" not in answer:  # every answer of a host says whose it is
        fail(
            f"{admin} (named in {where}) does not say which app it serves: it is not a hibana "
            f"host, or one older than this command; restart the app's host (`hibana serve "
            f"{app}`)",
            1,
        )
    if (answer["pid"], answer.get("app")) != (pid, mine):
        fail(
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
        fail(f"the host of {app} answered: {data['error']}", 1)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    scaling = data["scaling"] or {}
    console = new_console()
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
    functions = new_table(
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
    workers = new_table(
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
        console.print(queues_table(data["queues"]))


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
        fail(f"the host of {app} tried again: {answer.get('error')}", 1)
    if answer.get("kept") is False:  # the version that served had died meanwhile
        fail(f"the reload of {app} failed: {answer.get('error')}", 1)
    if not answer.get("reloaded"):
        fail(
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


cli.add_typer(queue_cli, name="queue")
cli.add_typer(events_cli, name="events")
cli.add_typer(secrets_cli, name="secrets")


def main() -> None:
    cli()
