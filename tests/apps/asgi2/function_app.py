"""An ASGI 2 app (a class that takes the scope; its instance is awaited with receive and
send), mounted at two prefixes: its lifespan runs once. And an ASGI 3 app that is a class
whose instances are awaitables (``Awaited(scope, receive, send)`` is awaited)."""

import json
from typing import Any

import hibana

state = {"startups": 0}


class Legacy:
    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        if self.scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    state["startups"] += 1
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = json.dumps(
            {
                "path": self.scope["path"],
                "root_path": self.scope["root_path"],
                "startups": state["startups"],
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class Awaited:
    """As uvicorn serves a class with ``__await__``: ASGI 3, the call makes the awaitable."""

    def __init__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope, self.send = scope, send

    def __await__(self) -> Any:
        return self.serve().__await__()

    async def serve(self) -> None:
        if self.scope["type"] != "http":
            return  # no lifespan: the mount goes on without one
        await self.send({"type": "http.response.start", "status": 200, "headers": []})
        body = f"awaited {self.scope['root_path']} {self.scope['path']}"
        await self.send({"type": "http.response.body", "body": body.encode()})


app = hibana.App()
app.asgi("/legacy", Legacy)
app.asgi("/again", Legacy)
app.asgi("/awaited", Awaited)
