"""The queue benchmark's app: a no-op queue function (the peers run the same no-op).

In the steady-rate run each message carries the wall time it was sent; the function logs
how long ago that was, which is what the peers record too."""

import time

import hibana

app = hibana.App()


@app.queue("bench", visibility_timeout=60)
async def noop(msg: hibana.Message, ctx: hibana.Context) -> None:
    if msg.body.startswith(b'{"sent"'):
        ctx.log.info("bench latency", ms=(time.time() - msg.data["sent"]) * 1000)
