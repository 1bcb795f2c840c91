"""A small FastAPI app for bench/adapters.py, served three ways: mounted in hibana
(``app``, under /api), on plain uvicorn (``api``), and on Lambda through
``hibana.aws.handler(api)`` or Mangum. Path and query parameters are validated by
FastAPI, as in a real app."""

from fastapi import FastAPI

import hibana

api = FastAPI()


@api.get("/items/{item_id}")
async def item(item_id: int, q: str = "") -> dict[str, object]:
    return {"id": item_id, "q": q}


app = hibana.App()
app.asgi("/api", api)
