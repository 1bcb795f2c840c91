"""Functions for the scaling tests."""

import asyncio

import hibana

app = hibana.App()
HOARD: list[bytes] = []


@app.http("/hello/{name}")
def hello(req: hibana.Request, ctx: hibana.Context) -> str:
    return f"Hello {req.params['name']}"


@app.http("/nap/{seconds:float}")
async def nap(req: hibana.Request, ctx: hibana.Context) -> str:
    await asyncio.sleep(req.params["seconds"])
    return "rested"


@app.http("/hoard/{mb:int}")
def hoard(req: hibana.Request, ctx: hibana.Context) -> str:
    """Keeps memory after it returns: a leak the memory cap must catch."""
    HOARD.append(b"x" * (req.params["mb"] * 1024 * 1024))
    return f"holding {sum(map(len, HOARD)) // (1024 * 1024)} MiB"
