"""The adapters beside their peers, on this machine.

* A FastAPI app mounted in hibana (bench/apps/fastapi_mounted: ``app.asgi("/api", api)``)
  beside the same app on plain uvicorn (httptools, uvloop, access log off), both with 2
  worker processes, each started alone and loaded with wrk as bench/http.py does.
  Target: mounted at least 0.9x plain uvicorn's requests/s.
* The same app on AWS Lambda: the time per API Gateway HTTP API (v2) event of
  ``hibana.aws.handler(api)`` beside Mangum's handler on the same app, in this process,
  the handlers taking turns. Mangum by default runs the app's lifespan around every event;
  it is shown that way and with ``lifespan="off"``. Target: hibana's time per event no
  higher than Mangum's.

Prints both tables and the ratios; exits 0 whatever the numbers (a measurement, not a
test), non-zero when a server does not start or answer.

Run from anywhere: .venv/bin/python bench/adapters.py [--rounds 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py would shadow the standard library's http module (which httpx and the
# peers import): take this script's folder off the path, and import from the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE.parent)]

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from bench.http import (  # noqa: E402
    APPS,
    BenchError,
    Row,
    Server,
    _machine,
    _version,
    add_load_options,
    check_load_options,
    ensure_wrk,
    measure,
    print_table,
)

MOUNTED_TARGET = 0.9
APP_DIR = APPS / "fastapi_mounted"
EXPECT = json.dumps({"id": 7, "q": "x"}, separators=(",", ":"))

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def make_servers(workers: int) -> list[Server]:
    py = sys.executable
    return [
        Server(
            "mounted",
            "hibana, mounted",
            [
                *(py, "-m", "hibana", "serve", str(APP_DIR)),
                *("--host", "127.0.0.1", "--port", "{port}", "--workers", str(workers)),
            ],
            EXPECT,
            notes=[
                f"hibana {_version('hibana')}: app.asgi('/api', api), FastAPI "
                f"{_version('fastapi')}; every request an invocation (log line, trace, deadline)"
            ],
            path="/api/items/7?q=x",
        ),
        Server(
            "plain",
            "uvicorn, plain",
            [
                *(py, "-m", "uvicorn", "function_app:api", "--app-dir", str(APP_DIR)),
                *("--host", "127.0.0.1", "--port", "{port}", "--workers", str(workers)),
                *("--http", "httptools", "--loop", "uvloop", "--lifespan", "on"),
                *("--no-access-log", "--log-level", "warning"),
            ],
            EXPECT,
            notes=[f"uvicorn {_version('uvicorn')}, httptools, uvloop, access log off"],
            path="/items/7?q=x",
        ),
    ]


# -- Lambda ------------------------------------------------------------------------------------


class _Context:
    """What Lambda passes as ``context``: the fields both adapters read."""

    function_name = "bench"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:bench"
    memory_limit_in_mb = 1024

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def v2_event() -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event for GET /items/7?q=x, as AWS sends it."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/items/7",
        "rawQueryString": "q=x",
        "headers": {
            "accept": "application/json",
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
            "user-agent": "bench",
            "x-forwarded-for": "203.0.113.9",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        },
        "queryStringParameters": {"q": "x"},
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": "GET",
                "path": "/items/7",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.9",
                "userAgent": "bench",
            },
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e812345678",
            "routeKey": "$default",
            "stage": "$default",
            "time": "23/Nov/2026:16:00:00 +0000",
            "timeEpoch": 1795363200000,
        },
        "isBase64Encoded": False,
    }


def lambda_handlers() -> list[tuple[str, Handler]]:
    from mangum import Mangum

    import hibana.aws

    spec = importlib.util.spec_from_file_location("fastapi_mounted", APP_DIR / "function_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    api = module.api
    return [
        ("hibana.aws.handler", hibana.aws.handler(api)),
        ("Mangum (lifespan on every event)", Mangum(api)),
        ('Mangum (lifespan="off")', Mangum(api, lifespan="off")),
    ]


def time_events(handle: Handler, events: int) -> float:
    """Microseconds per event, over ``events`` calls."""
    context = _Context()
    event = v2_event()
    started = time.perf_counter()
    for _ in range(events):
        handle(event, context)
    return (time.perf_counter() - started) / events * 1e6


def measure_lambda(args: argparse.Namespace) -> dict[str, list[float]]:
    handlers = lambda_handlers()
    context = _Context()
    for name, handle in handlers:
        out = handle(v2_event(), context)
        if out.get("statusCode") != 200 or json.loads(out["body"]) != json.loads(EXPECT):
            raise BenchError(f"{name} answered {out!r}; expected 200 {EXPECT}")
        time_events(handle, max(1, args.events // 10))  # warm-up
    times: dict[str, list[float]] = {name: [] for name, _ in handlers}
    for _ in range(args.rounds):
        for name, handle in handlers:  # taking turns, so drift hits each alike
            times[name].append(time_events(handle, args.events))
    for _, handle in handlers:
        close = getattr(handle, "close", None)
        if close is not None:
            close()  # hibana's: ends the app's lifespan and the handler's loop
    return times


# -- the report --------------------------------------------------------------------------------


def print_ratios(rows: list[Row], lambda_times: dict[str, list[float]] | None) -> None:
    by_key = {row.server.key: row for row in rows}
    lines = []
    if "mounted" in by_key and "plain" in by_key:
        ratio = by_key["mounted"].load.rps / by_key["plain"].load.rps
        verdict = "PASS" if ratio >= MOUNTED_TARGET else "MISS"
        lines.append(
            f"{'hibana, mounted / uvicorn, plain':<56}{ratio:>6.2f}x   "
            f"target >= {MOUNTED_TARGET:g}x  {verdict}"
        )
    if lambda_times:
        median = {name: statistics.median(each) for name, each in lambda_times.items()}
        print("\nLambda, one API Gateway v2 event (GET /items/7?q=x), medians of rounds:\n")
        header = f"{'handler':<36}{'us/event':>10}   by round"
        print(header)
        print("-" * len(header))
        for name, each in lambda_times.items():
            rounds = ", ".join(f"{t:.0f}" for t in each)
            print(f"{name:<36}{median[name]:>10.0f}   {rounds}")
        ours = median["hibana.aws.handler"]
        for name in median:
            if name.startswith("Mangum"):
                ratio = ours / median[name]
                verdict = "PASS" if ratio <= 1.0 else "MISS"
                lines.append(
                    f"{'hibana.aws.handler / ' + name:<56}{ratio:>6.2f}x   "
                    f"target <= 1x    {verdict}"
                )
    if lines:
        print("\nratios")
        print("\n".join(lines))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="hibana's adapters beside plain uvicorn (mounted) and Mangum (Lambda)."
    )
    add_load_options(parser)
    parser.add_argument("--events", type=int, default=5000, help="Lambda events per round")
    parser.add_argument(
        "--only",
        choices=["http", "lambda"],
        help="run only the HTTP servers or only the Lambda handlers",
    )
    args = parser.parse_args(argv)
    check_load_options(parser, args, ("events",))
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    missing = [m for m in ("fastapi", "uvicorn", "mangum") if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"error: {', '.join(missing)} not installed in this Python; install the bench and "
            "test extras: pip install -e '.[test,bench]'",
            file=sys.stderr,
        )
        return 2
    wrk = ensure_wrk() if args.only != "lambda" else ""
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    if wrk:
        print(_machine(wrk), flush=True)
    rows = [Row(server) for server in make_servers(args.workers)] if wrk else []
    lambda_times = None
    try:
        for round_no in range(args.rounds if rows else 0):
            for row in rows:
                step = f" (round {round_no + 1}/{args.rounds})" if args.rounds > 1 else ""
                print(f"  measuring {row.server.name}{step} ...", flush=True)
                measure(row.server, row, args, wrk)
        if args.only != "http":
            print("  measuring the Lambda handlers ...", flush=True)
            lambda_times = measure_lambda(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if rows:
        print_table(rows, args, what="FastAPI, GET /items/7?q=x")
    print_ratios(rows, lambda_times)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
