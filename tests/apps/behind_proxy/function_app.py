"""An app served behind a proxy on this machine."""

import hibana

app = hibana.App(trusted_proxies=["127.0.0.1/32", "10.0.0.0/8"])


@app.http("/ip")
def ip(req: hibana.Request, ctx: hibana.Context) -> dict[str, object]:
    return {"client_ip": req.client_ip, "peer": list(req.client or ())}
