"""The queue benchmark's app: a no-op queue function (the peers run the same no-op)."""

import hibana

app = hibana.App()


@app.queue("bench", visibility_timeout=60)
async def noop(msg: hibana.Message, ctx: hibana.Context) -> None:
    return None
