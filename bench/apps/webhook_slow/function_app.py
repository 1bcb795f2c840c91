"""The webhook benchmark's app: GitHub deliveries acknowledged at once; the subscriber
takes 10 s per event, as slow real work would."""

import asyncio

import hibana

app = hibana.App()
app.webhook("/webhooks/github", provider="github", secret="gh-secret", topic="github")


@app.event("github", visibility_timeout=60)
async def slow(event: hibana.CloudEvent, ctx: hibana.Context) -> None:
    await asyncio.sleep(10)
