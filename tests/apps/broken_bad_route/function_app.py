import hibana

app = hibana.App()


@app.http("/items/{id", methods=["POST"])
async def create(req: hibana.Request, ctx: hibana.Context) -> str:
    return "never"
