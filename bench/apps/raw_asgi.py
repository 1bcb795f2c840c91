"""The hello function as a bare ASGI callable, for bench/http.py: what uvicorn alone
serves, the ceiling hibana's HTTP path is measured against.

Run: python -m uvicorn raw_asgi:app --app-dir bench/apps --http httptools --loop uvloop
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"11"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"Hello world"})
