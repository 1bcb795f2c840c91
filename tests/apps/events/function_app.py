"""Event subscriptions the tests drive: three subscribers of "github" with different
filters, one of which fails until a flag file is removed; each delivery appends a line to
delivered.jsonl beside this file."""

import base64
import json
import os
import time
from pathlib import Path

import hibana

HERE = Path(__file__).parent
app = hibana.App()
F = hibana.Filter


def record(**fields: object) -> None:
    line = json.dumps({"pid": os.getpid(), "t": time.time(), **fields}) + "\n"
    fd = os.open(HERE / "delivered.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def seen(fn: str, event: hibana.CloudEvent, ctx: hibana.Context) -> None:
    raw = isinstance(event.data, bytes)  # a JSON line holds it as base64
    record(
        fn=fn,
        id=event.id,
        type=event.type,
        subject=event.subject,
        data=None if raw else event.data,
        data_base64=base64.b64encode(event.data).decode() if raw else None,
        trace_id=ctx.trace.trace_id,
        tracestate=ctx.trace.tracestate,
        attempt=ctx.attempt,
    )


@app.event("github")
async def everything(event: hibana.CloudEvent, ctx: hibana.Context) -> None:
    seen("everything", event, ctx)


@app.event(
    "github", filter=F.all(F.exact(type="com.github.workflow_run"), F.prefix(subject="repo/"))
)
def runs(event: hibana.CloudEvent, ctx: hibana.Context) -> None:
    seen("runs", event, ctx)


@app.event(
    "github",
    filter=F.any(F.suffix(type=".pull_request"), F.not_(F.prefix(source="gh"))),
    max_attempts=2,
    retry=hibana.Fixed(0.1),
)
async def flaky(event: hibana.CloudEvent, ctx: hibana.Context) -> None:
    seen("flaky", event, ctx)
    if (HERE / "fail").exists():
        raise RuntimeError("flaky subscriber fails")


@app.http("/publish-bad/{what}", methods=["POST"])
async def publish_bad(req: hibana.Request, ctx: hibana.Context) -> dict[str, str]:
    """Publishes data JSON has no value for; answers what the call raised."""
    data = {"nan": {"ratio": float("nan")}, "object": {"tags": object()}}[req.params["what"]]
    try:
        await ctx.publish(
            "github", type="t", source="/bad", id=f"bad-{req.params['what']}", data=data
        )
    except Exception as exc:
        return {"error_type": type(exc).__name__, "error": str(exc)}
    return {"error_type": "", "error": "published"}


@app.http("/publish", methods=["POST"])
async def publish(req: hibana.Request, ctx: hibana.Context) -> dict[str, object]:
    body = req.json()
    sent = await ctx.publish(
        "github",
        type=body["type"],
        source=body["source"],
        subject=body.get("subject"),
        id=body.get("id"),
        data=body.get("data"),
    )
    return {
        "id": sent.id,
        "duplicate": sent.duplicate,
        "deliveries": sent.deliveries,
        "trace_id": ctx.trace.trace_id,
    }
