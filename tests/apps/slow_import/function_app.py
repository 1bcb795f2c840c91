"""An app whose import takes longer than the idle timeout the test gives it."""

import time

import hibana

time.sleep(0.6)
app = hibana.App()


@app.http("/hello")
def hello(req: hibana.Request, ctx: hibana.Context) -> str:
    return "finally"
