"""Functions whose clients leave, and one that ignores its deadline (the worker is replaced)."""

import asyncio
import time

import hibana

app = hibana.App()


@app.http("/obeys", methods=["GET"], timeout=30)
async def obeys(req: hibana.Request, ctx: hibana.Context) -> str:
    await ctx.wait_cancelled()
    ctx.raise_if_cancelled()  # hibana.Cancelled: it stops as it is told
    return "never"


@app.http("/obeys-sync", methods=["GET"], timeout=30)
def obeys_sync(req: hibana.Request, ctx: hibana.Context) -> str:
    while not ctx.cancelled:
        time.sleep(0.01)
    ctx.raise_if_cancelled()
    return "never"


@app.http("/one-at-a-time", methods=["GET"], timeout=30, max_concurrency=1)
async def one_at_a_time(req: hibana.Request, ctx: hibana.Context) -> str:
    await ctx.wait_cancelled()
    return "stopped"


@app.http("/deaf", methods=["GET"], timeout=0.5)
def deaf(req: hibana.Request, ctx: hibana.Context) -> str:
    time.sleep(60)  # ignores its deadline: its worker is replaced
    return "late"


@app.http("/hello", methods=["GET"])
async def hello(req: hibana.Request, ctx: hibana.Context) -> str:
    await asyncio.sleep(0)
    return "hello"
