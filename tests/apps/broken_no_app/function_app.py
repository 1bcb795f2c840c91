import hibana


def hello(req: hibana.Request, ctx: hibana.Context) -> str:
    return "no app here"
