"""The hello app: `scripts/serve` (or `hibana serve examples/hello`), then GET /hello/you,
or POST /orders to put work on a durable queue."""

import hibana

app = hibana.App()


@app.http("/hello/{name}", methods=["GET"])
def hello(req: hibana.Request, ctx: hibana.Context) -> str:
    ctx.log.info("greeting", name=req.params["name"])
    return f"Hello {req.params['name']}"


@app.http("/items", methods=["POST"], timeout=5, max_concurrency=50)
async def create(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    return hibana.Response.json({"id": 1, "got": req.json()}, status=201)


@app.http("/orders", methods=["POST"])
async def accept_order(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    """Answer at once; the order is processed by `fulfil` (stored in .hibana/state.db)."""
    sent = await ctx.enqueue(
        "orders", req.json(), idempotency_key=req.headers.get("Idempotency-Key")
    )
    return hibana.Response.json({"queued": sent.id, "duplicate": sent.duplicate}, status=202)


@app.queue("orders", max_attempts=5, retry=hibana.Exponential(1, 60))
async def fulfil(msg: hibana.Message, ctx: hibana.Context) -> None:
    ctx.log.info("fulfilling order", order=msg.data, attempt=msg.attempt)


@app.timer("0 * * * *")
def hourly_report(timer: hibana.TimerInfo, ctx: hibana.Context) -> None:
    ctx.log.info("hourly report", slot=timer.scheduled_for.isoformat(), late=timer.past_due)
