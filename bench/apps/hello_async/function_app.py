"""examples/hello's hello as an async function, for bench/http.py: the same route, log
line and answer, run on the worker's event loop instead of its thread pool."""

import hibana

app = hibana.App()


@app.http("/hello/{name}", methods=["GET"])
async def hello(req: hibana.Request, ctx: hibana.Context) -> str:
    ctx.log.info("greeting", name=req.params["name"])
    return f"Hello {req.params['name']}"
