"""An app that asks for workers that import it after the fork."""

import os

import hibana

app = hibana.App(prewarm="runtime", min_instances=1, max_instances=1)
IMPORTED_BY = os.getpid()
print("imported", IMPORTED_BY)  # once in the zygote that reads it, once in the worker


@app.http("/who")
def who(req: hibana.Request, ctx: hibana.Context) -> dict[str, int]:
    return {"imported_by": IMPORTED_BY, "serving": os.getpid()}
