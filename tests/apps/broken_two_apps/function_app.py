import hibana

app = hibana.App()
admin = hibana.App()


@app.http("/hello")
def hello(req: hibana.Request, ctx: hibana.Context) -> str:
    return "hello"


@admin.http("/stats")
def stats(req: hibana.Request, ctx: hibana.Context) -> str:
    return "stats"
