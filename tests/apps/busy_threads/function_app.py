"""A sync queue function behind sync HTTP functions that can take every thread of a
worker: what it ran is appended to ran.jsonl beside this file."""

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


@app.http("/enqueue", methods=["POST"])
async def enqueue(req: hibana.Request, ctx: hibana.Context) -> None:
    await ctx.enqueue("later", {"n": 1})


@app.queue("later", timeout=0.5, visibility_timeout=5, max_attempts=1)
def later(msg: hibana.Message, ctx: hibana.Context) -> None:
    with (HERE / "ran.jsonl").open("a") as f:
        f.write(json.dumps({"data": msg.data, "attempt": ctx.attempt}) + "\n")
