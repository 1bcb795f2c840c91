"""The hello app: `python3 -m hibana serve examples/hello`, then GET /hello/you."""

import hibana

app = hibana.App()


@app.http("/hello/{name}", methods=["GET"])
def hello(req: hibana.Request, ctx: hibana.Context) -> str:
    ctx.log.info("greeting", name=req.params["name"])
    return f"Hello {req.params['name']}"


@app.http("/items", methods=["POST"], timeout=5, max_concurrency=50)
async def create(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    return hibana.Response.json({"id": 1, "got": req.json()}, status=201)
