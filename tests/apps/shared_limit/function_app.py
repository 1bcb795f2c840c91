"""Functions whose max_concurrency the tests check across the host's workers. Each reports
the worker (pid) it ran on and when it started and ended; the queue function appends
the same to ran.jsonl beside this file."""

import asyncio
import json
import os
import signal
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import hibana

HERE = Path(__file__).parent
app = hibana.App()


@app.http("/pid")
def pid(req: hibana.Request, ctx: hibana.Context) -> dict[str, int]:
    return {"pid": os.getpid()}


@app.http("/one/{seconds:float}", max_concurrency=1)
async def one(req: hibana.Request, ctx: hibana.Context) -> dict[str, object]:
    start = time.time()
    until = req.query.get("until")  # held until this file exists (``seconds`` at most)
    if until:
        # another process (the test) makes the file: nothing in this one to wait on
        end = start + req.params["seconds"]
        while not os.path.exists(until) and time.time() < end:  # noqa: ASYNC110, ASYNC240
            await asyncio.sleep(0.02)
    else:
        await asyncio.sleep(req.params["seconds"])
    if req.query.get("die"):
        os.kill(os.getpid(), signal.SIGKILL)  # dies holding the only permit
    return {"pid": os.getpid(), "start": start, "end": time.time(), "tag": req.query.get("tag")}


@app.http("/two-sync/{seconds:float}", max_concurrency=2)
def two_sync(req: hibana.Request, ctx: hibana.Context) -> dict[str, object]:
    start = time.time()
    time.sleep(req.params["seconds"])
    return {"pid": os.getpid(), "start": start, "end": time.time()}


@app.http("/stream/{seconds:float}", max_concurrency=1)
async def stream(req: hibana.Request, ctx: hibana.Context) -> hibana.StreamingResponse:
    """Returns at once; its body takes ``seconds`` and ends with when it started and ended."""
    start = time.time()

    async def body() -> AsyncIterator[str]:
        yield "started\n"
        await asyncio.sleep(req.params["seconds"])
        yield json.dumps({"pid": os.getpid(), "start": start, "end": time.time()})

    return hibana.StreamingResponse(body(), content_type="text/plain")


async def slow_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A mounted ASGI app whose body streams for the seconds in its query (?s=0.3)."""
    if scope["type"] != "http":
        return
    start = time.time()
    seconds = float(dict(urllib.parse.parse_qsl(scope["query_string"].decode())).get("s", 0))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"started\n", "more_body": True})
    await asyncio.sleep(seconds)
    end = time.time()
    line = {"pid": os.getpid(), "start": start, "end": end, "path": scope["path"]}
    await send({"type": "http.response.body", "body": json.dumps(line).encode()})


app.asgi("/slow", slow_asgi, max_concurrency=1)


@app.http("/enqueue/{count:int}", methods=["POST"])
async def enqueue(req: hibana.Request, ctx: hibana.Context) -> None:
    for n in range(req.params["count"]):
        await ctx.enqueue("serial", {"n": n})


@app.queue("serial", max_concurrency=1, timeout=10, visibility_timeout=30)
async def serial(msg: hibana.Message, ctx: hibana.Context) -> None:
    start = time.time()
    await asyncio.sleep(0.05)
    line = {"n": msg.data["n"], "pid": os.getpid(), "start": start, "end": time.time()}
    fd = os.open(HERE / "ran.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)
