import hibana

app = hibana.App()


@app.http("/hello")
def hello(req: hibana.Request) -> str:
    return "hello"
