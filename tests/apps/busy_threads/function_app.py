"""Sync HTTP functions that can take every thread of a worker, and what waits behind them:
a sync queue function (what it ran is appended to ran.jsonl beside this file), a sync HTTP
function with a short timeout, an async one that blocks the event loop for a while, one
that holds the GIL for a while."""

import ctypes
import json
import time
from pathlib import Path

import hibana

HERE = Path(__file__).parent
app = hibana.App()


@app.http("/work/{seconds:float}", timeout=30)
def work(req: hibana.Request, ctx: hibana.Context) -> str:
    time.sleep(req.params["seconds"])
    return "worked"


@app.http("/quick", timeout=0.1)
def quick(req: hibana.Request, ctx: hibana.Context) -> str:
    return "quick"


@app.http("/block-loop/{seconds:float}", timeout=30)
async def block_loop(req: hibana.Request, ctx: hibana.Context) -> str:
    time.sleep(req.params["seconds"])  # noqa: ASYNC251 - blocking call in async code, on purpose
    return "blocked"


@app.http("/hold-gil/{seconds:int}", timeout=30)
async def hold_gil(req: hibana.Request, ctx: hibana.Context) -> str:
    """Holds the GIL in C code for a while (libc's sleep called as ctypes.PyDLL calls, the
    GIL held): nothing else of its worker runs meanwhile, its watchdog thread neither."""
    ctypes.PyDLL(None).sleep(req.params["seconds"])
    return "held"


@app.http("/enqueue", methods=["POST"])
async def enqueue(req: hibana.Request, ctx: hibana.Context) -> None:
    await ctx.enqueue("later", {"n": 1})


@app.queue("later", timeout=0.5, visibility_timeout=5, max_attempts=1)
def later(msg: hibana.Message, ctx: hibana.Context) -> None:
    with (HERE / "ran.jsonl").open("a") as f:
        f.write(json.dumps({"data": msg.data, "attempt": ctx.attempt}) + "\n")
