"""Mounts: a whole web app (ASGI, WSGI) or an AWS Lambda handler served under a prefix,
as one function: the ``FunctionSpec`` that ``Blueprint.asgi``, ``.wsgi`` and
``.lambda_handler`` declare, and the checks only they run.

Each builder takes what the method was given and where it was called, and returns the
spec for the Blueprint to add (its name and route clashes are the Blueprint's to tell),
so nothing here imports ``hibana.blueprint`` (or ``hibana.app``), as nothing in
``hibana.declarations`` does.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, Literal

from hibana.declarations import (
    bare,
    check_positive,
    checked_name,
    derived_name,
    not_two,
)
from hibana.errors import AppError
from hibana.functions import HTTP_METHODS, FunctionSpec, HttpTrigger
from hibana.secrets import grants
from hibana.triggers.routes import compile_mount, compile_route, unreachable


def web_app_mount(
    kind: Literal["asgi", "wsgi"],
    prefix: str,
    web_app: Any,
    where: str,
    timeout: float,
    max_concurrency: int | None,
    name: str | None,
    secrets: Iterable[str],
    threads: int | None = None,
) -> FunctionSpec:
    """The function ``app.asgi(prefix, web_app)`` (or ``app.wsgi``, by ``kind``) at
    ``where`` declares: a WSGI app is served through ``wsgi_to_asgi``, on ``threads``
    threads (``THREADS`` if None)."""
    from hibana.adapters.asgi import AsgiMount, asgi2_as_3
    from hibana.adapters.wsgi import THREADS, wsgi_to_asgi

    if not callable(web_app):
        raise AppError(f"app.{kind}({prefix!r}, ...) in {where}: {web_app!r} is not callable")
    asgi2 = asgi2_as_3(web_app)
    # a class whose instances take two arguments and are called for no coroutine is a
    # WSGI framework's (Flask: its instances are the app), not an ASGI 2 app
    if asgi2 is None or (
        kind == "wsgi"
        and not inspect.iscoroutinefunction(inspect.getattr_static(web_app, "__call__"))
    ):
        check_web_app(web_app, kind, prefix, f"app.{kind}({prefix!r}, ...) in {where}")
    elif kind == "wsgi":
        raise AppError(
            f"app.wsgi({prefix!r}, ...) in {where}: {web_app.__name__} is an ASGI 2 app (a "
            "class that takes the scope), not a WSGI one; mount it with "
            f"app.asgi({prefix!r}, ...)"
        )
    if threads is not None:
        check_positive(threads, "threads", where, integer=True)
    served = (asgi2 or web_app) if kind == "asgi" else wsgi_to_asgi(web_app, threads or THREADS)
    return mount(
        prefix, AsgiMount(served, prefix), where, timeout, max_concurrency, name, secrets, kind
    )


def lambda_mount(
    prefix: str,
    handler: Callable[[dict[str, Any], Any], Any],
    event: str,
    where: str,
    timeout: float,
    max_concurrency: int | None,
    name: str | None,
    secrets: Iterable[str],
    stage: str | None = None,
) -> FunctionSpec:
    """The function ``app.lambda_handler(prefix, handler, event=event)`` at ``where``
    declares; ``stage``, the REST API stage of its v1 events."""
    from hibana.adapters.lambda_on_hibana import EVENT_FORMATS, LambdaProxy, checked_stage

    if event not in EVENT_FORMATS:
        raise AppError(
            f"app.lambda_handler({prefix!r}) in {where}: event={event!r} is not one of "
            f"{', '.join(EVENT_FORMATS)}"
        )
    if not callable(handler):
        raise AppError(f"app.lambda_handler({prefix!r}) in {where}: {handler!r} is not callable")
    check_lambda_handler(handler, f"app.lambda_handler({prefix!r}, ...) in {where}")
    stage = checked_stage(stage, event, f"app.lambda_handler({prefix!r}, ...) in {where}")
    proxy = LambdaProxy(handler, event, stage=stage)  # type: ignore[arg-type]
    return mount(
        prefix,
        proxy,
        where,
        timeout,
        max_concurrency,
        name,
        secrets,
        "lambda",
        is_async=False,
    )


def mount(
    prefix: str,
    handler: Callable[..., Any],
    where: str,
    timeout: float,
    max_concurrency: int | None,
    name: str | None,
    secrets: Iterable[str],
    kind: str,
    is_async: bool = True,
) -> FunctionSpec:
    """The one function that serves ``handler`` for every method at
    ``prefix``, its root with and without "/", and every path below it."""
    if not isinstance(prefix, str) or not (prefix == "" or prefix.startswith("/")):
        raise AppError(f"app.{kind}({prefix!r}, ...) in {where}: the prefix must start with /")
    base = prefix.rstrip("/")
    check_prefix(prefix, base, f"app.{kind}({prefix!r}, ...) in {where}")
    name = checked_name(name, f"app.{kind}({prefix!r}) at {where}")
    check_positive(timeout, "timeout", where)
    if max_concurrency is not None:
        check_positive(max_concurrency, "max_concurrency", where, integer=True)
    fn_name = name or derived_name(
        kind + ("".join(c if c.isalnum() else "_" for c in base) or "_root"),
        f"app.{kind}({prefix!r}) at {where}",
        "made of its prefix",
    )
    granted = grants(secrets, where)
    # one function, so one max_concurrency, one line in status, one name in the logs
    first = compile_mount(base, where)
    roots = [base or "/"]
    if base:  # the app's own root: GET /api/ is a FastAPI app's "/" (a path is not empty)
        roots.append(base + "/")
    also = [compile_route(route, where) for route in roots]
    return FunctionSpec(
        name=fn_name,
        handler=handler,
        trigger=HttpTrigger(
            first, tuple(sorted(HTTP_METHODS)), tuple(also), f"app.{kind}({prefix!r})"
        ),
        is_async=is_async,
        timeout=float(timeout),
        max_concurrency=max_concurrency,
        source=where,
        secrets=granted,
    )


def check_web_app(given: Any, kind: Literal["asgi", "wsgi"], prefix: str, what: str) -> None:
    """Refuse an app ``app.asgi`` or ``app.wsgi`` could not call as its protocol calls
    one (ASGI: ``app(scope, receive, send)``; WSGI: ``app(environ, start_response)``): the
    other protocol's app (a Flask app given to app.asgi), a class in place of the app made
    of it (``FastAPI``), or another callable. Each was accepted and failed every request.
    A WSGI app may be a class whose instances are the response's iterable (PEP 3333:
    ``AppClass(environ, start_response)`` is the call), and an ASGI 3 app a class whose
    instances are awaitables (``AppClass(scope, receive, send)``): those are served."""
    name = getattr(given, "__name__", None)
    if inspect.isclass(given):
        if hasattr(given, "__await__"):
            _check_awaited_class(given, kind, prefix, what)
            return
        if _iterable_class(given):
            if kind == "wsgi":
                return
            raise AppError(
                f"{what}: {name} is a WSGI app (a class whose instances are the body), not "
                f"an ASGI one; mount it with app.wsgi({prefix!r}, ...)"
            )
        raise AppError(
            f"{what}: {name} is a class, not an app: mount an instance of it, "
            f"app.{kind}({prefix!r}, {name}(...))"
        )
    shown = name if isinstance(name, str) else f"the {type(given).__name__} given"
    other: Literal["asgi", "wsgi"] = "wsgi" if kind == "asgi" else "asgi"
    signature = not_two(given, 3 if kind == "asgi" else 2)
    if signature is None:
        return
    if not_two(given, 3 if other == "asgi" else 2) is None:
        raise AppError(
            f"{what}: {shown} is {_PROTOCOLS[other][0]} app, not {_PROTOCOLS[kind][0]} one; "
            f"mount it with app.{other}({prefix!r}, ...)"
        )
    # one argument, the scope: an ASGI 2 app's call, which only its class form tells
    asgi2 = kind == "asgi" and not_two(given, 1) is None
    raise AppError(
        f"{what}: {shown} takes {bare(signature)}, but {_PROTOCOLS[kind][0]} app is "
        f"called with {_PROTOCOLS[kind][1]}"
        + (
            " (ASGI 3); an ASGI 2 app is served as the class that takes the scope, whose "
            "instances take (receive, send)"
            if asgi2
            else ""
        )
    )


def _check_awaited_class(
    given: type, kind: Literal["asgi", "wsgi"], prefix: str, what: str
) -> None:
    """Refuse a class whose instances are awaitables unless it is mounted as the ASGI 3
    app it is: ``Given(scope, receive, send)`` makes the awaitable that serves the scope.
    uvicorn tells such a class so (a class with ``__await__`` is ASGI 3, any other ASGI
    2), and serves it."""
    if kind == "wsgi":
        raise AppError(
            f"{what}: {given.__name__} is an ASGI app (a class whose instances are awaited), "
            f"not a WSGI one; mount it with app.asgi({prefix!r}, ...)"
        )
    signature = not_two(given, 3)
    if signature is not None:
        raise AppError(
            f"{what}: {given.__name__} takes {bare(signature)}, but an ASGI app is called "
            "with (scope, receive, send); a class whose instances are awaited is one when "
            "it takes those three"
        )


def _iterable_class(given: type) -> bool:
    """``given`` is a class-style WSGI app: it takes ``(environ, start_response)`` and its
    instances are iterables (the body), as PEP 3333's ``AppClass``. A framework's class
    (``Flask``, whose instances are the app) has no ``__iter__``."""
    return inspect.getattr_static(given, "__iter__", None) is not None and not_two(given) is None


#: (how a message names an app of the protocol, the arguments the protocol calls it with)
_PROTOCOLS = {
    "asgi": ("an ASGI", "(scope, receive, send)"),
    "wsgi": ("a WSGI", "(environ, start_response)"),
}


def check_lambda_handler(handler: Callable[..., Any], what: str) -> None:
    """Refuse a handler Lambda could not call as it calls one, ``handler(event, context)``
    for its result: one that takes other arguments, or an ``async def`` or a generator
    (its coroutine or iterator is no result: Lambda's Python runtime awaits nothing)."""
    name = getattr(handler, "__name__", "handler")
    fn = handler
    while isinstance(fn, functools.partial):
        fn = fn.func
    for test, kind in (
        (inspect.iscoroutinefunction, "an async def"),
        (inspect.isasyncgenfunction, "an async generator"),
        (inspect.isgeneratorfunction, "a generator (a def with yield)"),
    ):
        if test(fn) or test(type(fn).__call__):
            raise AppError(
                f"{what}: {name} is {kind}, but Lambda calls a handler for its result and "
                "awaits or iterates nothing; write it as a def that returns (running async "
                "work in it with asyncio.run), or declare it with @app.http"
            )
    signature = not_two(handler)
    if signature is not None:
        raise AppError(
            f"{what}: {name} takes {bare(signature)}, but Lambda calls a handler with two "
            f"positional arguments: write `def {name}(event, context)`"
        )


def check_prefix(prefix: str, base: str, what: str) -> None:
    """Refuse a mount's prefix that no request path reaches as it is written: one
    ``unreachable`` as a route is (a query in it, percent-encoding, a ``..`` segment), or
    one with a ``{parameter}`` (the prefix is matched as it is; only its bare root took the
    parameter)."""
    problem = unreachable(prefix)
    if problem is not None:
        held, against, instead = problem
        own = " (the app reads each request's query string itself)" if "?" in prefix else ""
        raise AppError(
            f"{what}: the prefix {held}, but a request reaches a mount by {against}; "
            f"mount the app at {instead!r}{own}"
        )
    segments = base.split("/")[1:]
    fixed = next((i for i, s in enumerate(segments) if "{" in s or "}" in s), None)
    if fixed is not None:
        above = "/" + "/".join(segments[:fixed])
        raise AppError(
            f"{what}: a prefix is matched as written, so {segments[fixed]!r} in it is no "
            f"parameter (only its bare root took it for one); mount the app at {above!r} "
            "and let it route the rest of the path"
        )
