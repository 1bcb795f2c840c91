import hibana

app = hibana.App()


@app.http  # type: ignore[arg-type]  # the call is missing: the mistake under test
def hello(req: hibana.Request, ctx: hibana.Context) -> str:
    return "hello"
