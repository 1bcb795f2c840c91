"""A queue function that runs until the test lets it end (a file ``go`` beside this one):
so it can end while the store is away; and one that runs until its host stops. Each run
appends a JSON line to processed.jsonl, as it starts and as it ends, so the test counts
how often each message ran. Their timeouts are short: a worker that retires (a reload)
gives its work the longest of them (and cancel_grace) to finish."""

import json
import os
import time
from pathlib import Path

import hibana

HERE = Path(__file__).parent
app = hibana.App()


def record(kind: str, **fields: object) -> None:
    line = json.dumps({"kind": kind, "pid": os.getpid(), "t": time.time(), **fields}) + "\n"
    fd = os.open(HERE / "processed.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@app.http("/work", methods=["POST"], timeout=5)
async def accept(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    data = req.json()
    sent = await ctx.enqueue(data.pop("queue", "work"), data)
    return hibana.Response.json({"id": sent.id}, status=202)


@app.queue("work", visibility_timeout=5)
def work(msg: hibana.Message, ctx: hibana.Context) -> None:
    n = msg.data["n"]
    record("started", n=n, attempt=msg.attempt)
    while not (HERE / "go").exists():
        time.sleep(0.02)
    record("ended", n=n, attempt=msg.attempt)


@app.queue("give-back", timeout=10)
async def give_back(msg: hibana.Message, ctx: hibana.Context) -> None:
    """Runs until it is cancelled (its host stops): its message is released."""
    record("started", n=msg.data["n"], attempt=msg.attempt)
    await ctx.wait_cancelled()
    ctx.raise_if_cancelled()
