"""Webhooks the tests sign like GitHub, Slack and Standard Webhooks senders do; subscribers
record what they get in delivered.jsonl beside this file. The Slack subscriber replies
through the command's response_url, as a Slack app does after its quick acknowledgement."""

import asyncio
import json
import os
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

import httpx

import hibana

HERE = Path(__file__).parent
app = hibana.App()

app.webhook("/webhooks/github", provider="github", secret="gh-secret", topic="github")
app.webhook(
    "/webhooks/slack/commands",
    provider="slack",
    secret="slack-secret",
    topic="slack",
    ack=lambda cmd: {"response_type": "ephemeral", "text": f"Working on {cmd['text']}"},
)
app.webhook("/webhooks/std", provider="standard", secret="std-secret", topic="std")


async def async_ack(cmd: dict[str, str]) -> dict[str, str]:
    await asyncio.sleep(0)
    return {"response_type": "ephemeral", "text": f"Async on {cmd['text']}"}


app.webhook(
    "/webhooks/slack/async", provider="slack", secret="slack-secret", topic="slack", ack=async_ack
)


def blocking_ack(cmd: dict[str, str]) -> dict[str, str]:
    """An ack that waits (a lookup, say) for what another request does meanwhile."""
    (HERE / "ack-waiting").touch()
    deadline = time.monotonic() + 3
    while not (HERE / "ack-flag").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"text": "flag seen" if (HERE / "ack-flag").exists() else "no flag"}


app.webhook(
    "/webhooks/slack/blocking",
    provider="slack",
    secret="slack-secret",
    topic="slack",
    ack=blocking_ack,
)


@app.http("/ack-flag", methods=["POST"])
async def ack_flag(req: hibana.Request, ctx: hibana.Context) -> str:
    (HERE / "ack-flag").touch()
    return "set"


def record(**fields: object) -> None:
    line = json.dumps({"pid": os.getpid(), "t": time.time(), **fields}) + "\n"
    fd = os.open(HERE / "delivered.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@app.event("github")
async def on_github(event: hibana.CloudEvent, ctx: hibana.Context) -> None:
    record(
        fn="github",
        id=event.id,
        type=event.type,
        subject=event.subject,
        source=event.source,
        action=event.extensions.get("githubaction"),
    )


@app.event("slack", visibility_timeout=60)
async def on_slack(event: hibana.CloudEvent, ctx: hibana.Context) -> None:
    data = event.data
    record(fn="slack", id=event.id, type=event.type, subject=event.subject)
    if event.type == "com.slack.command":
        if data["text"] == "slow":
            await asyncio.sleep(10)  # the slow work; the acknowledgement did not wait
        async with httpx.AsyncClient() as client:
            await client.post(data["response_url"], json={"text": f"Done: {data['text']}"})


@app.event("std")
def on_std(event: hibana.CloudEvent, ctx: hibana.Context) -> None:
    record(fn="std", id=event.id, type=event.type, data=event.data)


@app.http("/uses-token", methods=["GET"], secrets=["api-token"])
def uses_token(req: hibana.Request, ctx: hibana.Context) -> dict[str, object]:
    token = ctx.secrets["api-token"]
    ctx.log.info("calling the API", authorization=f"Bearer {token}")
    # a tool the function runs prints it: that goes to fd 1, not through ctx.log
    subprocess.run(["echo", "curl -H", f"Authorization: {token}"], check=True)
    try:
        ctx.secrets["gh-secret"]
    except hibana.HibanaError as exc:
        refused = str(exc)
    if req.query.get("fail"):
        raise RuntimeError(f"the API refused token {token}")
    if req.query.get("stderr"):  # what a function writes to stderr, not through ctx.log
        try:
            raise ValueError(f"printed token {token}")
        except ValueError:
            traceback.print_exc()
        warnings.warn(f"warned token {token}", stacklevel=1)
        sys.stderr.write(f"raw token {token}\n")
        # a program it runs writes to fd 2 itself, past sys.stderr
        code = "import sys; sys.stderr.write(sys.argv[1])"
        subprocess.run([sys.executable, "-c", code, f"child token {token}\n"], check=True)
    if req.query.get("enqueue"):
        ctx.enqueue_sync("token-jobs", {})
    return {"length": len(token), "refused": refused, "names": sorted(ctx.secrets)}


@app.queue("token-jobs", max_attempts=1, secrets=["api-token"])
def token_job(msg: hibana.Message, ctx: hibana.Context) -> None:
    raise RuntimeError(f"the job's token {ctx.secrets['api-token']} was refused")


@app.http("/no-grants", methods=["GET"])
def no_grants(req: hibana.Request, ctx: hibana.Context) -> dict[str, object]:
    asked = {"in": "api-token" in ctx.secrets, "get": ctx.secrets.get("api-token", "none")}
    try:
        return {"read": ctx.secrets["api-token"]}
    except hibana.HibanaError as exc:
        return {"refused": str(exc), "names": sorted(ctx.secrets), **asked}
