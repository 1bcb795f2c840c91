"""Functions that raise what is not an Exception: SystemExit (``sys.exit()``),
KeyboardInterrupt, a BaseException of their own. Each is that invocation's failure; the
worker and the other invocations on it carry on."""

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import hibana

app = hibana.App()


class Odd(BaseException):
    """Not an Exception: some libraries raise these."""


def bail(what: str) -> None:
    if what == "exit":
        sys.exit(3)
    if what == "interrupt":
        raise KeyboardInterrupt
    raise Odd("an odd one")


@app.http("/async/{what}", methods=["GET"])
async def raise_async(req: hibana.Request, ctx: hibana.Context) -> str:
    await asyncio.sleep(0)
    bail(req.params["what"])
    return "not reached"


@app.http("/sync/{what}", methods=["GET"])
def raise_sync(req: hibana.Request, ctx: hibana.Context) -> str:
    bail(req.params["what"])
    return "not reached"


@app.http("/stream/{what}", methods=["GET"])
async def raise_in_stream(req: hibana.Request, ctx: hibana.Context) -> hibana.StreamingResponse:
    async def parts() -> AsyncIterator[str]:
        yield "first part\n"
        await asyncio.sleep(0)
        bail(req.params["what"])

    return hibana.StreamingResponse(parts(), content_type="text/plain")


@app.http("/ticks", methods=["GET"])
async def ticks(req: hibana.Request, ctx: hibana.Context) -> hibana.StreamingResponse:
    """A stream that stops by raising ``hibana.Cancelled`` once it is told to."""

    async def parts() -> AsyncIterator[str]:
        while True:
            ctx.raise_if_cancelled()
            yield "tick\n"
            await asyncio.sleep(0.05)

    return hibana.StreamingResponse(parts(), content_type="text/plain")


@app.http("/os-exit", methods=["GET"])
def os_exit(req: hibana.Request, ctx: hibana.Context) -> str:
    """Ends the worker's process at once, with exit code 0."""
    os._exit(0)


@app.http("/slow", methods=["GET"])
async def slow(req: hibana.Request, ctx: hibana.Context) -> str:
    """Runs until the file ``?until=`` names exists (the test's say), 20 s at most."""
    until = req.query.get("until")
    for _ in range(2000):
        if until is None or os.path.exists(until):  # noqa: ASYNC240 - one stat, local
            break
        await asyncio.sleep(0.01)
    return f"slow done by {os.getpid()}"


@app.http("/pid", methods=["GET"])
def pid(req: hibana.Request, ctx: hibana.Context) -> str:
    return str(os.getpid())


@app.http("/later/{what}", methods=["POST"])
async def later(req: hibana.Request, ctx: hibana.Context) -> dict[str, Any]:
    sent = await ctx.enqueue("bail", {"what": req.params["what"]})
    return {"queued": sent.id}


@app.queue("bail", max_attempts=3, retry=hibana.Fixed(0.05))
async def bail_once(msg: hibana.Message, ctx: hibana.Context) -> None:
    if msg.attempt == 1:
        bail(msg.data["what"])
    ctx.log.info("done on a later attempt", attempt=msg.attempt, pid=os.getpid())


async def exits(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A mounted ASGI app that calls sys.exit() while answering."""
    if scope["type"] != "http":
        return
    sys.exit(4)


async def exits_at_startup(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A mounted ASGI app whose lifespan calls sys.exit(): taken as having none."""
    if scope["type"] == "lifespan":
        sys.exit(5)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"served without a lifespan"})


app.asgi("/mounted", exits)
app.asgi("/no-lifespan", exits_at_startup)
