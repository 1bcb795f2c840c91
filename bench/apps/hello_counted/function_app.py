"""examples/hello's hello twice, for bench/hop.py: as a sync function (/hello/{name}) and as
an async one (/ahello/{name}), with /gc telling how many gen0 collections this worker has
made (counted by a ``gc.callbacks`` hook, which costs nothing between collections)."""

import gc

import hibana

app = hibana.App()
_collections = [0]


def _count(phase: str, info: dict[str, int]) -> None:
    if phase == "start" and info["generation"] == 0:
        _collections[0] += 1


gc.callbacks.append(_count)


@app.http("/hello/{name}", methods=["GET"])
def hello(req: hibana.Request, ctx: hibana.Context) -> str:
    ctx.log.info("greeting", name=req.params["name"])
    return f"Hello {req.params['name']}"


@app.http("/ahello/{name}", methods=["GET"])
async def ahello(req: hibana.Request, ctx: hibana.Context) -> str:
    ctx.log.info("greeting", name=req.params["name"])
    return f"Hello {req.params['name']}"


@app.http("/gc", methods=["GET"])
async def collections(req: hibana.Request, ctx: hibana.Context) -> str:
    return str(_collections[0])
