"""Queue functions the end-to-end tests drive. Each processed message appends one JSON line
to processed.jsonl beside this file, so tests see exactly what ran, and how often."""

import asyncio
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


class Unprintable(Exception):
    """An exception whose str() fails, as one whose __str__ returns a None field does."""

    def __str__(self) -> str:
        return None  # type: ignore[return-value]


@app.http("/orders", methods=["POST"])
async def accept(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
    body = req.json()
    sent = await ctx.enqueue(
        body.get("queue", "orders"),
        body["data"],
        delay=body.get("delay", 0),
        idempotency_key=req.headers.get("Idempotency-Key"),
    )
    return hibana.Response.json(
        {"id": sent.id, "duplicate": sent.duplicate, "trace_id": ctx.trace.trace_id}, status=202
    )


@app.http("/orders-sync", methods=["POST"])
def accept_sync(req: hibana.Request, ctx: hibana.Context) -> dict[str, object]:
    sent = ctx.enqueue_sync("orders", req.json())
    return {"id": sent.id}


@app.http("/enqueue-past-shutdown", methods=["POST"])
def enqueue_past_shutdown(req: hibana.Request, ctx: hibana.Context) -> None:
    """Deaf to its cancellation: goes on enqueuing (messages not due for an hour) until
    its worker refuses."""
    while True:
        ctx.enqueue_sync("orders", {"ignored": True}, delay=3600)
        time.sleep(0.01)


@app.http("/bad-enqueue/{what}", methods=["POST"])
async def bad_enqueue(req: hibana.Request, ctx: hibana.Context) -> dict[str, str]:
    what = req.params["what"]
    try:
        if what == "queue":
            await ctx.enqueue("nope", {})
        elif what == "type":
            await ctx.enqueue("orders", {"when": object()})
        elif what == "big":
            await ctx.enqueue("orders", "x" * (300 * 1024))
        elif what == "itself":
            looped: dict[str, object] = {"id": 7}
            looped["parent"] = looped
            await ctx.enqueue("orders", looped)
        elif what == "empty-key":
            await ctx.enqueue("orders", {}, idempotency_key=req.headers.get("Idempotency-Key"))
        elif what == "nan":
            await ctx.enqueue("orders", {"price": None, "items": [{"weight": float("nan")}]})
        elif what == "surrogate":
            await ctx.enqueue("orders", {"name": "caf\udce9"})  # from errors="surrogateescape"
    except (hibana.QueueError, TypeError) as exc:
        return {"error_type": type(exc).__name__, "error": str(exc)}
    return {"error": "none"}


@app.queue(
    "orders",
    max_attempts=3,
    retry=hibana.Fixed(0.2),
    visibility_timeout=3,
    timeout=2,
    max_concurrency=20,
)
async def on_order(msg: hibana.Message, ctx: hibana.Context) -> None:
    data = msg.data
    record(
        "order",
        id=msg.id,
        data=data,
        attempt=msg.attempt,
        ctx_attempt=ctx.attempt,
        trace_id=ctx.trace.trace_id,
        tracestate=ctx.trace.tracestate,
        errors=[e["error"] for e in msg.errors],
    )
    if isinstance(data, dict):
        if data.get("fail_until", 0) >= msg.attempt:
            raise RuntimeError(f"failing attempt {msg.attempt} on purpose")
        if data.get("unprintable_until", 0) >= msg.attempt:
            raise Unprintable
        if data.get("give_up_until", 0) >= msg.attempt:
            raise hibana.Cancelled("giving up on this one")  # unasked: no one cancelled it
        if data.get("fail_while") and (HERE / data["fail_while"]).exists():
            raise RuntimeError(f"{data['fail_while']} exists")
        if data.get("sleep"):
            await asyncio.sleep(data["sleep"])
        if data.get("block"):
            time.sleep(data["block"])  # noqa: ASYNC251 - a worker kill test needs it busy


@app.queue("batches", batch_size=5, max_attempts=2, retry=hibana.Fixed(0.1))
def on_batch(msgs: list[hibana.Message], ctx: hibana.Context) -> None:
    record(
        "batch",
        ids=[m.id for m in msgs],
        data=[m.data for m in msgs],
        attempts=[m.attempt for m in msgs],
    )
    bad = [m for m in msgs if isinstance(m.data, dict) and m.data.get("bad")]
    if bad:
        raise hibana.BatchFailed(bad, "bad items")
    mistaken = [m.data["order"] for m in msgs if isinstance(m.data, dict) and "order" in m.data]
    if mistaken and msgs[0].attempt == 1:
        raise hibana.BatchFailed(mistaken, "out of stock")  # the orders' ids: not the messages'


@app.queue("warehouse-a", concurrency_group="warehouse", limit=2, visibility_timeout=10)
async def stock_a(msg: hibana.Message, ctx: hibana.Context) -> None:
    record("group", queue="a", phase="start", id=msg.id)
    await asyncio.sleep(0.3)
    record("group", queue="a", phase="end", id=msg.id)


@app.queue("warehouse-b", concurrency_group="warehouse", limit=2, visibility_timeout=10)
async def stock_b(msg: hibana.Message, ctx: hibana.Context) -> None:
    record("group", queue="b", phase="start", id=msg.id)
    await asyncio.sleep(0.3)
    record("group", queue="b", phase="end", id=msg.id)


@app.http("/wrong-call/sync", methods=["POST"])
def wrong_in_sync(req: hibana.Request, ctx: hibana.Context) -> dict[str, str]:
    try:
        ctx.enqueue("orders", {})  # a coroutine nobody would await: refused at once
    except RuntimeError as exc:
        return {"error": str(exc)}
    return {"error": "none"}


@app.http("/wrong-call/async", methods=["POST"])
async def wrong_in_async(req: hibana.Request, ctx: hibana.Context) -> dict[str, str]:
    try:
        ctx.publish_sync("nope", type="t", source="s")
    except RuntimeError as exc:
        return {"error": str(exc)}
    return {"error": "none"}


@app.queue("poison", max_attempts=2, visibility_timeout=1, timeout=0.5)
def on_poison(msg: hibana.Message, ctx: hibana.Context) -> None:
    """Kills its worker: a message that crashes whoever runs it."""
    record("poison", id=msg.id, attempt=msg.attempt, errors=[e["error"] for e in msg.errors])
    os._exit(3)
