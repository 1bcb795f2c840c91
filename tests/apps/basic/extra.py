import hibana

bp = hibana.Blueprint()


@bp.http("/from-blueprint")
def from_blueprint(req: hibana.Request, ctx: hibana.Context) -> str:
    return "blueprint"
