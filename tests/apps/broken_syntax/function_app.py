import hibana

app = hibana.App()


@app.http("/x")
def x(req, ctx)
    return "x"
