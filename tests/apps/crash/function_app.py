"""The crash test's app: an HTTP function that enqueues a batch of numbered items (each
with its number as idempotency key, so a client's retry adds nothing), and a queue
function that records each item it processes in processed.log beside this file."""

import asyncio
import os
from pathlib import Path

import hibana

HERE = Path(__file__).parent
app = hibana.App()


@app.http("/work", methods=["POST"])
async def accept(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    items = req.json()["items"]
    sent = await asyncio.gather(
        *(ctx.enqueue("work", {"n": n}, idempotency_key=str(n)) for n in items)
    )
    return hibana.Response.json({"queued": sum(not s.duplicate for s in sent)}, status=202)


@app.queue("work", visibility_timeout=1, retry=hibana.Fixed(0.05))
async def work(msg: hibana.Message, ctx: hibana.Context) -> None:
    fd = os.open(HERE / "processed.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{msg.data['n']}\n".encode())
    finally:
        os.close(fd)
