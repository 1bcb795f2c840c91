import hibana

app = hibana.App()


@app.http("/items/{id}", methods=["GET"])
def first(req: hibana.Request, ctx: hibana.Context) -> str:
    return "first"


@app.http("/items/{item_id}", methods=["POST", "GET"])
def second(req: hibana.Request, ctx: hibana.Context) -> str:
    return "second"
