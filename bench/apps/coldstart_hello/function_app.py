"""bench/coldstart.py's light app: one sync function, no imports beyond hibana."""

import hibana

app = hibana.App()


@app.http("/hello", methods=["GET"])
def hello(req: hibana.Request, ctx: hibana.Context) -> str:
    return "Hello"
