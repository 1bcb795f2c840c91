"""Functions whose max_concurrency the tests check across the host's workers. Each reports
the worker (pid) it ran on and when it started and ended; the queue function appends
the same to ran.jsonl beside this file."""

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import hibana

HERE = Path(__file__).parent
app = hibana.App()


@app.http("/pid")
def pid(req: hibana.Request, ctx: hibana.Context) -> dict[str, int]:
    return {"pid": os.getpid()}


@app.http("/one/{seconds:float}", max_concurrency=1)
async def one(req: hibana.Request, ctx: hibana.Context) -> dict[str, object]:
    start = time.time()
    await asyncio.sleep(req.params["seconds"])
    if req.query.get("die"):
        os.kill(os.getpid(), signal.SIGKILL)  # dies holding the only permit
    return {"pid": os.getpid(), "start": start, "end": time.time(), "tag": req.query.get("tag")}


@app.http("/two-sync/{seconds:float}", max_concurrency=2)
def two_sync(req: hibana.Request, ctx: hibana.Context) -> dict[str, object]:
    start = time.time()
    time.sleep(req.params["seconds"])
    return {"pid": os.getpid(), "start": start, "end": time.time()}


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
