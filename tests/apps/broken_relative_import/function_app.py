import hibana

from .helpers import greeting  # the mistake under test: the app is no package

app = hibana.App()


@app.http("/hello")
def hello(req: hibana.Request, ctx: hibana.Context) -> str:
    return greeting()
