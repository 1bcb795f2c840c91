"""An app served behind a proxy on this machine."""

import hibana

app = hibana.App(trusted_proxies=["127.0.0.1/32", "10.0.0.0/8"])


@app.http("/ip")
def ip(req: hibana.Request, ctx: hibana.Context) -> dict[str, object]:
    return {"client_ip": req.client_ip, "peer": list(req.client or ())}


@app.http("/url")
def url(req: hibana.Request, ctx: hibana.Context) -> dict[str, object]:
    return {"url": req.url, "scheme": req.scheme}


# Mounted apps build their URLs and see their client as the proxy forwards them.
from fastapi import FastAPI, Request  # noqa: E402
from flask import Flask, jsonify, request, url_for  # noqa: E402

flask_app = Flask(__name__)


@flask_app.get("/info")
def flask_info():  # type: ignore[no-untyped-def]
    return jsonify(
        url=url_for("flask_info", _external=True),
        remote_addr=request.remote_addr,
        scheme=request.scheme,
    )


api = FastAPI()


@api.get("/info")
async def api_info(request: Request) -> dict[str, object]:
    client = request.client
    return {"url": str(request.url_for("api_info")), "client": client.host if client else None}


app.wsgi("/flask", flask_app)
app.asgi("/api", api)
