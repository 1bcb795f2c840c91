"""Functions with short timeouts, for a worker that retires (a stuck function replaces it)
while requests on it wait for a max_concurrency permit."""

import asyncio
import time

import hibana

app = hibana.App()


@app.http("/hold/{seconds:float}", timeout=5, max_concurrency=1)
async def hold(req: hibana.Request, ctx: hibana.Context) -> str:
    await asyncio.sleep(req.params["seconds"])
    return "held"


@app.http("/hang", timeout=0.3)
def hang(req: hibana.Request, ctx: hibana.Context) -> str:
    time.sleep(3600)  # ignores cancellation: its worker must be replaced
    return "never"
