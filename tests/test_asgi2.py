"""ASGI 2 apps (a class that takes the scope, whose instances take receive and send):
served by app.asgi in a live host (tests/apps/asgi2) and by hibana.aws.handler, and
refused by app.wsgi, naming the mount to use."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hibana
import hibana.aws
from tests.hosts import Host, started

EVENTS = Path(__file__).parent / "aws_events"


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    yield from started("asgi2", "--workers", "1")


def test_an_asgi2_app_is_served_and_its_lifespan_runs_once(host: Host) -> None:
    """It was refused as 'a class, not an app: mount an instance of it', which it cannot
    be without a scope."""
    with host.client() as client:
        first = client.get("/legacy/items/9").json()
        again = client.get("/again/x").json()
    assert first == {"path": "/legacy/items/9", "root_path": "/legacy", "startups": 1}
    assert again == {"path": "/again/x", "root_path": "/again", "startups": 1}


def test_a_class_whose_instances_are_awaitables_is_served_as_asgi3(host: Host) -> None:
    """uvicorn serves it (a class with ``__await__`` is ASGI 3: ``Awaited(scope, receive,
    send)`` is awaited); app.asgi refused it as 'a class, not an app: mount an instance of
    it', and the app did not load."""
    with host.client() as client:
        answer = client.get("/awaited/items/3")
    assert (answer.status_code, answer.text) == (200, "awaited /awaited /awaited/items/3")


class Awaitable:
    def __init__(self, scope: Any, receive: Any, send: Any) -> None:
        pass

    def __await__(self) -> Any:
        return iter(())


class AwaitableOfTheScope(Awaitable):
    def __init__(self, scope: Any) -> None:
        pass


def test_a_class_whose_instances_are_awaitables_is_refused_by_app_wsgi_and_if_it_takes_less() -> (
    None
):
    app = hibana.App()
    with pytest.raises(hibana.AppError) as info:
        app.wsgi("/a", Awaitable)
    assert str(info.value).endswith(
        ": Awaitable is an ASGI app (a class whose instances are awaited), not a WSGI one; "
        "mount it with app.asgi('/a', ...)"
    )
    with pytest.raises(hibana.AppError) as info:
        app.asgi("/a", AwaitableOfTheScope)
    assert str(info.value).endswith(
        ": AwaitableOfTheScope takes (scope), but an ASGI app is called with (scope, receive, "
        "send); a class whose instances are awaited is one when it takes those three"
    )
    assert not app.functions


class Legacy:
    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        if self.scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": self.scope["path"].encode()})


class Ctx:
    aws_request_id = "5d37a5b7-8d1a-4a3c-9d7e-3f1f3a1d2c4b"

    def get_remaining_time_in_millis(self) -> int:
        return 2500


def test_an_asgi2_app_runs_on_lambda() -> None:
    """hibana.aws.handler took it for a WSGI app (a callable not async), and every
    request was a 500 (Legacy() takes one argument, given environ and start_response)."""
    event = json.loads((EVENTS / "apigw-http-v2.json").read_text())
    handle = hibana.aws.handler(Legacy)
    try:
        result = handle(event, Ctx())
    finally:
        handle.close()
    assert (result["statusCode"], result["body"]) == (200, event["rawPath"])


def test_an_asgi2_app_given_to_app_wsgi_is_refused_naming_app_asgi() -> None:
    app = hibana.App()
    with pytest.raises(hibana.AppError) as info:
        app.wsgi("/legacy", Legacy)
    assert str(info.value).endswith(
        ": Legacy is an ASGI 2 app (a class that takes the scope), not a WSGI one; mount it "
        "with app.asgi('/legacy', ...)"
    )
    assert not app.functions


def test_a_class_that_is_no_asgi2_app_is_still_refused_as_a_class() -> None:
    import starlette.applications

    # Starlette(debug) takes one argument too, but its instances take (scope, receive, send)
    app = hibana.App()
    with pytest.raises(hibana.AppError) as info:
        app.asgi("/api", starlette.applications.Starlette)
    assert str(info.value).endswith(
        ": Starlette is a class, not an app: mount an instance of it, "
        "app.asgi('/api', Starlette(...))"
    )


def test_an_asgi2_app_as_a_function_is_refused_saying_asgi3_is_needed() -> None:
    """Only its class form tells an ASGI 2 app from a function that takes one argument
    by mistake (a factory): the error says which shapes are served."""

    def legacy(scope: dict[str, Any]) -> Any:
        return Legacy(scope)

    app = hibana.App()
    with pytest.raises(hibana.AppError) as info:
        app.asgi("/legacy", legacy)
    assert str(info.value).endswith(
        ": legacy takes (scope), but an ASGI app is called with (scope, receive, send) "
        "(ASGI 3); an ASGI 2 app is served as the class that takes the scope, whose "
        "instances take (receive, send)"
    )
    assert not app.functions
