"""GitHub and Slack webhooks: verified, acknowledged at once, the work done by subscribers.

Set the secrets first (values from stdin, never the command line):

    hibana secrets set github-webhook-secret --app examples/webhooks
    hibana secrets set slack-signing-secret --app examples/webhooks
    hibana serve examples/webhooks

Point GitHub's webhook at /webhooks/github and a Slack slash command at /webhooks/slack.
"""

import hibana

app = hibana.App()
F = hibana.Filter

app.webhook("/webhooks/github", provider="github", secret="github-webhook-secret", topic="github")
app.webhook(
    "/webhooks/slack",
    provider="slack",
    secret="slack-signing-secret",
    topic="slack",
    ack=lambda cmd: {"response_type": "ephemeral", "text": f"On it: {cmd.get('text', '')}"},
)


@app.event(
    "github", filter=F.all(F.exact(type="com.github.workflow_run"), F.prefix(subject="repo/"))
)
async def failed_runs(event: hibana.CloudEvent, ctx: hibana.Context) -> None:
    """Every completed workflow run; a failed one becomes a durable follow-up job."""
    run = event.data.get("workflow_run", {})
    if run.get("conclusion") == "failure":
        await ctx.enqueue("triage", {"repo": event.subject, "run": run.get("id")})


@app.queue("triage", max_attempts=5, retry=hibana.Exponential(2, 300))
async def triage(msg: hibana.Message, ctx: hibana.Context) -> None:
    ctx.log.warning("a workflow run failed", repo=msg.data["repo"], run=msg.data["run"])


@app.event("slack", filter=F.exact(type="com.slack.command"), visibility_timeout=120)
async def slow_command(event: hibana.CloudEvent, ctx: hibana.Context) -> None:
    """The slow part of a slash command; reply through event.data["response_url"]."""
    ctx.log.info("slash command", command=event.subject, text=event.data.get("text"))
