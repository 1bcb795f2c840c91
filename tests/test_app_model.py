"""The programming model: ``App``, ``Blueprint``, ``app.http`` and the errors a wrong app gets."""

from __future__ import annotations

import functools
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import hibana
from hibana import AppError, Context, Request, RouteError
from hibana.app import HttpTrigger
from hibana.blueprint import DEFAULT_TIMEOUT

FILE = Path(__file__).name


@pytest.fixture(autouse=True)
def _in_tests_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from this file's folder, so the "file:line" in messages is just this file's name."""
    monkeypatch.chdir(Path(__file__).parent)


def _line() -> int:
    """The caller's current line number."""
    return sys._getframe(1).f_lineno


def at(fn: Callable[..., Any]) -> str:
    """Where ``fn`` was declared, as a message shows it: "test_app_model.py:12 (name)"."""
    return f"{FILE}:{fn.__code__.co_firstlineno} ({fn.__name__})"


def create(req: Request, ctx: Context) -> str:
    return "created"


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    return None


def trigger(spec: hibana.FunctionSpec) -> HttpTrigger:
    assert isinstance(spec.trigger, HttpTrigger)
    return spec.trigger


# --- declaring functions -------------------------------------------------------------------


def test_http_records_a_function_spec_and_returns_the_function() -> None:
    app = hibana.App()

    @app.http("/items/{id:int}", methods=["get", "POST", "get"], timeout=5, max_concurrency=3)
    def item(req: Request, ctx: Context) -> str:
        return "x"

    assert item(None, None) == "x"  # type: ignore[arg-type]  # still the plain function
    (spec,) = app.functions
    assert spec.name == "item"
    assert spec.handler is item
    assert spec.is_async is False
    assert spec.timeout == 5.0
    assert isinstance(spec.timeout, float)
    assert spec.max_concurrency == 3
    assert spec.source == f"{FILE}:{item.__code__.co_firstlineno}"
    assert trigger(spec).methods == ("GET", "POST")
    assert trigger(spec).route.pattern == "/items/{id:int}"
    assert trigger(spec).describe() == "[GET,POST] /items/{id:int}"


def test_defaults_are_get_and_the_default_timeout() -> None:
    app = hibana.App()

    @app.http("/")
    async def home(req: Request, ctx: Context) -> str:
        return "home"

    (spec,) = app.functions
    assert spec.is_async is True
    assert trigger(spec).methods == ("GET",)
    assert spec.timeout == DEFAULT_TIMEOUT
    assert spec.max_concurrency is None


def test_a_single_method_may_be_a_string() -> None:
    app = hibana.App()
    app.http("/items", "post")(create)
    assert trigger(app.functions[0]).methods == ("POST",)


def test_name_overrides_the_function_name() -> None:
    app = hibana.App()
    app.http("/items", name="make_item")(create)
    assert app.functions[0].name == "make_item"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "it is empty"),
        ("send mail", "' ' (a space) is not one"),
        ("a\nb", "'\\n' is not one"),
        ("timer:nightly", "':' is not one"),
        (7, "it is of type int, not str"),
    ],
)
def test_a_name_that_is_no_name_is_refused(name: Any, problem: str) -> None:
    app = hibana.App()
    rule = "1 to 200 ASCII letters, digits, '-', '_' or '.'"
    with pytest.raises(AppError) as info:
        app.timer("0 * * * *", name=name)(create)
    assert str(info.value) == (
        f"name={name!r} of the decorator at {FILE}:{_line() - 2}: a function's name must "
        f"be {rule}; {problem}"
    )
    with pytest.raises(AppError) as info:
        app.asgi("/api", asgi_app, name=name)
    assert str(info.value) == (
        f"name={name!r} of app.asgi('/api') at {FILE}:{_line() - 2}: a function's name "
        f"must be {rule}; {problem}"
    )
    assert app.functions == ()


def test_a_name_made_for_a_function_is_held_to_the_rule_of_name() -> None:
    app = hibana.App()
    rule = "1 to 200 ASCII letters, digits, '-', '_' or '.'"
    with pytest.raises(AppError) as info:
        app.http("/a")(lambda req, ctx: "a")
    assert str(info.value) == (
        f"the decorator at {FILE}:{_line() - 2} names its function '<lambda>' (its "
        f"__name__), but a function's name must be {rule}; '<' is not one; give it a name "
        "of its own with name="
    )
    with pytest.raises(AppError) as info:
        app.asgi("/café", asgi_app)
    assert str(info.value) == (
        f"app.asgi('/café') at {FILE}:{_line() - 2} names its function 'asgi_café' (made "
        f"of its prefix), but a function's name must be {rule}; 'é' is not one; give it a "
        "name of its own with name="
    )
    with pytest.raises(AppError, match=r"'webhook_hooks_ü' \(made of its path\)"):
        app.webhook("/hooks/ü", provider="github", secret="gh", topic="pushes")
    assert [spec.name for spec in app.functions] == []
    app.http("/a", name="a")(lambda req, ctx: "a")
    app.asgi("/café", asgi_app, name="cafe")
    assert [spec.name for spec in app.functions] == ["a", "cafe"]


def test_a_mount_prefix_no_request_reaches_as_written_is_refused() -> None:
    app = hibana.App()
    with pytest.raises(AppError) as info:
        app.asgi("/shops/{shop}/api", asgi_app)
    assert str(info.value) == (
        f"app.asgi('/shops/{{shop}}/api', ...) in {FILE}:{_line() - 2}: a prefix is matched "
        "as written, so '{shop}' in it is no parameter (only its bare root took it for "
        "one); mount the app at '/shops' and let it route the rest of the path"
    )
    with pytest.raises(AppError) as info:
        app.wsgi("/api/../v2", create)
    assert str(info.value) == (
        f"app.wsgi('/api/../v2', ...) in {FILE}:{_line() - 2}: the prefix has a \"..\" "
        'segment, but a request reaches a mount by the path with its "." and ".." segments '
        "resolved (as a browser does); mount the app at '/v2'"
    )
    with pytest.raises(AppError, match=r"has a \"\.\" segment.* mount the app at '/'"):
        app.lambda_handler("/.", lambda event, context: {})
    # told in the words of the prefix written, not of the route made of it
    with pytest.raises(AppError) as info:
        app.asgi("/api?v=2", asgi_app)
    assert str(info.value) == (
        f"app.asgi('/api?v=2', ...) in {FILE}:{_line() - 2}: the prefix has a query "
        "(\"?\"), but a request reaches a mount by the path alone; mount the app at '/api' "
        "(the app reads each request's query string itself)"
    )
    with pytest.raises(AppError) as info:
        app.wsgi("/caf%C3%A9", create)
    assert str(info.value) == (
        f"app.wsgi('/caf%C3%A9', ...) in {FILE}:{_line() - 2}: the prefix is "
        'percent-encoded ("%C3"), but a request reaches a mount by the path as decoded; '
        "mount the app at '/café'"
    )
    assert not app.functions
    app.asgi("//", asgi_app)  # the root, as "/" is
    assert [s.name for s in app.functions] == ["asgi_root"]


def test_an_app_its_mount_could_not_call_is_refused() -> None:
    """Each was accepted, and every request to it was a 500 (a TypeError in the call)."""
    import fastapi
    import flask

    app = hibana.App()
    with pytest.raises(AppError) as info:
        app.asgi("/legacy", flask.Flask("legacy"))
    assert str(info.value) == (
        f"app.asgi('/legacy', ...) in {FILE}:{_line() - 2}: the Flask given is a WSGI app, "
        "not an ASGI one; mount it with app.wsgi('/legacy', ...)"
    )
    with pytest.raises(AppError) as info:
        app.wsgi("/api", fastapi.FastAPI())
    assert str(info.value) == (
        f"app.wsgi('/api', ...) in {FILE}:{_line() - 2}: the FastAPI given is an ASGI app, "
        "not a WSGI one; mount it with app.asgi('/api', ...)"
    )
    with pytest.raises(AppError) as info:
        app.asgi("/api", fastapi.FastAPI)
    assert str(info.value) == (
        f"app.asgi('/api', ...) in {FILE}:{_line() - 2}: FastAPI is a class, not an app: "
        "mount an instance of it, app.asgi('/api', FastAPI(...))"
    )

    def environ_only(environ: Any) -> Any:
        return []

    with pytest.raises(AppError) as info:
        app.wsgi("/w", environ_only)
    assert str(info.value) == (
        f"app.wsgi('/w', ...) in {FILE}:{_line() - 2}: environ_only takes (environ), but a "
        "WSGI app is called with (environ, start_response)"
    )
    assert [spec.name for spec in app.functions] == []
    app.asgi("/api", fastapi.FastAPI())
    app.wsgi("/legacy", flask.Flask("legacy"))
    assert [spec.name for spec in app.functions] == ["asgi_api", "wsgi_legacy"]


def test_a_lambda_handler_lambda_could_not_call_is_refused() -> None:
    app = hibana.App()

    def one(event: Any) -> Any:
        return {}

    async def later(event: Any, context: Any) -> Any:
        return {}

    def parts(event: Any, context: Any) -> Any:
        yield {}

    with pytest.raises(AppError) as info:
        app.lambda_handler("/one", one)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"app.lambda_handler('/one', ...) in {FILE}:{_line() - 2}: one takes (event), but "
        "Lambda calls a handler with two positional arguments: write `def "
        "one(event, context)`"
    )
    for handler, kind in ((later, "an async def"), (parts, "a generator (a def with yield)")):
        with pytest.raises(AppError) as info:
            app.lambda_handler("/x", handler)
        assert str(info.value) == (
            f"app.lambda_handler('/x', ...) in {FILE}:{_line() - 2}: {handler.__name__} is "
            f"{kind}, but Lambda calls a handler for its result and awaits or iterates "
            "nothing; write it as a def that returns (running async work in it with "
            "asyncio.run), or declare it with @app.http"
        )
    assert not app.functions


def test_a_callable_object_can_be_a_function() -> None:
    class Handler:
        def __call__(self, req: Request, ctx: Context) -> str:
            return "ok"

    app = hibana.App()
    deco, line = app.http("/h"), _line()
    deco(Handler())
    (spec,) = app.functions
    assert spec.name == "Handler"
    assert spec.source == f"{FILE}:{line}"


def test_functions_keep_declaration_order() -> None:
    app = hibana.App()
    for i in range(5):
        app.http(f"/r{i}", name=f"f{i}")(create)
    assert [s.name for s in app.functions] == ["f0", "f1", "f2", "f3", "f4"]
    assert isinstance(app.functions, tuple)


@pytest.mark.parametrize(
    ("threads", "said"),
    [
        (0, "threads=0 in {where} must be a positive integer"),
        ("8", "threads='8' in {where} must be a positive integer"),
        (
            1025,
            "threads=1025 in {where} is over 1024, the most a worker runs; for more sync "
            "functions at once, run more workers (max_instances)",
        ),
    ],
)
def test_threads_are_what_threads_holds(threads: Any, said: str) -> None:
    """As --threads: 1 to 1024 (a worker's pool of threads for sync functions)."""
    assert hibana.App(threads=100).settings["threads"] == 100
    with pytest.raises(AppError) as info:
        hibana.App(threads=threads)
    assert str(info.value) == said.format(where=f"{FILE}:{_line() - 1}")


# --- decorator misuse ----------------------------------------------------------------------


def test_route_error_names_the_file_line_and_function() -> None:
    app = hibana.App()
    with pytest.raises(RouteError) as info:
        app.http("/items/{id")(create)
    assert str(info.value) == f'Route "/items/{{id" in {at(create)} has an unclosed "{{"'
    assert app.functions == ()


def test_decorating_something_not_callable() -> None:
    app = hibana.App()
    deco, line = app.http("/items"), _line()
    with pytest.raises(AppError) as info:
        deco(42)  # type: ignore[type-var]
    assert str(info.value) == (
        f"The decorator at {FILE}:{line} was applied to 42 (int), which is not callable; "
        "put it directly above a `def`"
    )


def test_unknown_method_lists_the_known_ones() -> None:
    app = hibana.App()
    with pytest.raises(AppError) as info:
        app.http("/items", ["GET", "FETCH"])(create)
    assert str(info.value) == (
        f"app.http('/items') in {at(create)} has unknown method 'FETCH'; "
        "use any of DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
    )


def test_no_methods_is_an_error() -> None:
    app = hibana.App()
    with pytest.raises(AppError) as info:
        app.http("/items", [])(create)
    assert str(info.value) == f"app.http('/items') in {at(create)} lists no methods"


@pytest.mark.parametrize("methods", [None, 5])
def test_methods_that_are_no_list_are_an_error(methods: Any) -> None:
    """They raised TypeError: 'NoneType' object is not iterable, from inside hibana."""
    app = hibana.App()
    with pytest.raises(AppError) as info:
        app.http("/items", methods)(create)
    assert str(info.value) == (
        f"app.http('/items') at {FILE}:{_line() - 2}: methods={methods!r} is no list of "
        'methods; write methods=["GET", "POST"] (or leave it out for GET alone)'
    )


@pytest.mark.parametrize("secrets", [None, 5])
def test_secrets_that_are_no_list_are_an_error(secrets: Any) -> None:
    """They raised TypeError: 'NoneType' object is not iterable, from inside hibana."""
    app = hibana.App()
    with pytest.raises(AppError) as info:
        app.http("/items", secrets=secrets)(create)
    assert str(info.value) == (
        f"secrets= in {at(create)} is {secrets!r}, no list of secret names; write "
        'secrets=["db-password"] (or leave it out for none)'
    )


def test_run_on_startup_is_true_or_false() -> None:
    """A string was taken for its truth: "false" (as an environment variable holds it)
    ran the timer at every start."""
    app = hibana.App()
    with pytest.raises(AppError) as info:
        app.timer("0 * * * *", run_on_startup="false")(create)  # type: ignore[arg-type]
    assert str(info.value) == f"run_on_startup='false' in {at(create)} must be True or False"


@pytest.mark.parametrize("timeout", [0, -1, -0.5, True, "30", None])
def test_bad_timeout(timeout: Any) -> None:
    app = hibana.App()
    with pytest.raises(AppError) as info:
        app.http("/items", timeout=timeout)(create)
    assert str(info.value) == f"timeout={timeout!r} in {at(create)} must be a positive number"


def test_timeout_nan_is_rejected() -> None:
    """NaN passes ``value <= 0``; a function with it would time out at once, every time."""
    app = hibana.App()
    with pytest.raises(AppError, match=r"timeout=nan .* must be a positive number"):
        app.http("/items", timeout=float("nan"))(create)


def test_a_timeout_or_lease_without_end_is_rejected() -> None:
    """``inf`` was taken: a queue message leased for ever was never delivered again once
    its worker died, a timer's fire neither, and no deadline was enforced. An int too
    large for a float failed the import with a bare OverflowError."""
    app = hibana.App()
    endless = "must be a finite number of seconds; for work that runs long, give as many"
    with pytest.raises(AppError) as info:
        app.http("/items", timeout=float("inf"))(create)
    assert str(info.value).startswith(f"timeout=inf in {at(create)} {endless}")
    with pytest.raises(AppError, match=f"visibility_timeout=inf in .* {endless}"):
        app.queue("orders", visibility_timeout=float("inf"))(create)
    with pytest.raises(AppError, match=f"timeout=inf in .* {endless}"):
        app.timer("* * * * *", timeout=float("inf"))(create)
    with pytest.raises(AppError, match=f"timeout=1000000000000000000000000.* {endless}"):
        app.http("/items", timeout=10**400)(create)
    with pytest.raises(AppError, match=f"idle_timeout=inf in .* {endless}"):
        hibana.App(idle_timeout=float("inf"))
    assert app.functions == ()


def test_fractional_timeout_is_fine() -> None:
    app = hibana.App()
    app.http("/items", timeout=0.25)(create)
    assert app.functions[0].timeout == 0.25


@pytest.mark.parametrize("limit", [0, -3, 1.5, 2.0, True, "4"])
def test_bad_max_concurrency(limit: Any) -> None:
    app = hibana.App()
    with pytest.raises(AppError) as info:
        app.http("/items", max_concurrency=limit)(create)
    assert str(info.value) == (
        f"max_concurrency={limit!r} in {at(create)} must be a positive integer"
    )


def test_a_batch_size_over_the_most_a_batch_holds_is_refused() -> None:
    """It was taken for 256 without a word: a function written for batches of 500 got
    batches of 256."""

    def load(msgs: list[hibana.Message], ctx: hibana.Context) -> None: ...

    app = hibana.App()
    app.queue("rows", batch_size=256)(load)  # the most
    with pytest.raises(AppError) as info:
        hibana.App().queue("rows", batch_size=500)(load)
    assert str(info.value) == (
        f"batch_size=500 in {at(load)} is over the most a batch holds, 256 (what one claim "
        "of the store takes); pass 256 or fewer"
    )


@pytest.mark.parametrize(
    ("group", "problem"),
    [("", "it is empty"), ("a b", "' ' (a space) is not one"), (5, "it is of type int, not str")],
)
def test_a_concurrency_group_is_held_to_the_name_rule(group: object, problem: str) -> None:
    """It was taken as given: "" was a group, and 5 was made the group "5"."""

    def load(msg: hibana.Message, ctx: hibana.Context) -> None: ...

    with pytest.raises(AppError) as info:
        hibana.App().queue("rows", concurrency_group=group, limit=5)(load)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith(f"concurrency_group={group!r} in {at(load)}: a group's name must")
    assert f'; {problem}; e.g. concurrency_group="warehouse"' in message


# --- clashes -------------------------------------------------------------------------------


def test_two_functions_on_one_route_and_method_clash() -> None:
    app = hibana.App()

    @app.http("/items")
    def first(req: Request, ctx: Context) -> str:
        return "1"

    def second(req: Request, ctx: Context) -> str:
        return "2"

    with pytest.raises(RouteError) as info:
        app.http("/items", ["POST", "GET"])(second)
    assert str(info.value) == (
        f'Route "/items" GET in {at(second)} is already served by "/items" in {at(first)}; '
        "change one route or method"
    )
    assert [s.name for s in app.functions] == ["first"]


def test_parameter_names_do_not_avoid_a_clash() -> None:
    app = hibana.App()

    @app.http("/a/{x}")
    def by_x(req: Request, ctx: Context) -> str:
        return "x"

    def by_y(req: Request, ctx: Context) -> str:
        return "y"

    with pytest.raises(RouteError) as info:
        app.http("/a/{y}")(by_y)
    assert str(info.value) == (
        f'Route "/a/{{y}}" GET in {at(by_y)} is already served by "/a/{{x}}" in {at(by_x)}; '
        "change one route or method"
    )


def test_a_clash_with_a_mount_is_told_in_the_words_of_the_mount() -> None:
    """Not of the route made of its prefix ("/api/{path:path}"), which no one wrote, with
    "change one route or method" (a mount takes every method)."""
    app = hibana.App()
    app.asgi("/api", asgi_app)
    where = f"{FILE}:{_line() - 1}"
    with pytest.raises(RouteError) as info:
        app.wsgi("/api/", create, name="legacy")
    assert str(info.value) == (
        f"app.wsgi('/api/') in {FILE}:{_line() - 2} (legacy) mounts an app where "
        f"app.asgi('/api') in {where} (asgi_api) mounted one; mount one at another prefix"
    )
    for route in ("/api", "/api/{rest:path}"):
        with pytest.raises(RouteError) as info:
            app.http(route, ["POST"])(create)
        assert str(info.value) == (
            f"Route \"{route}\" POST in {at(create)} is taken by app.asgi('/api') in {where} "
            '(asgi_api): a mount serves its prefix, with and without a "/", and every path '
            "below it; serve the route from the mounted app, or mount it at another prefix"
        )
    app.http("/api/health")(create)  # more specific than the mount: its own


def test_same_route_with_other_methods_or_types_does_not_clash() -> None:
    app = hibana.App()
    app.http("/a/{x}", ["GET"], name="read")(create)
    app.http("/a/{y}", ["POST"], name="write")(create)
    app.http("/a/{n:int}", ["GET"], name="by_number")(create)
    app.http("/a/{x}/b", ["GET"], name="deeper")(create)
    assert len(app.functions) == 4


def _users_handler() -> Callable[[Request, Context], str]:
    def handler(req: Request, ctx: Context) -> str:
        return "users"

    return handler


def _orders_handler() -> Callable[[Request, Context], str]:
    def handler(req: Request, ctx: Context) -> str:
        return "orders"

    return handler


def test_duplicate_function_names() -> None:
    app = hibana.App()
    first, second = _users_handler(), _orders_handler()
    app.http("/users")(first)
    with pytest.raises(AppError) as info:
        app.http("/orders")(second)
    assert str(info.value) == (
        f'Two functions are named "handler": {FILE}:{first.__code__.co_firstlineno} and '
        f"{FILE}:{second.__code__.co_firstlineno}; rename one, or give one a name of its own "
        "with name="
    )
    app.http("/orders", name="orders")(second)
    assert [s.name for s in app.functions] == ["handler", "orders"]


def test_a_def_declared_twice_or_two_mounts_named_alike_are_told_how_to_name_them() -> None:
    app = hibana.App()
    with pytest.raises(AppError) as info:

        @app.http("/users", methods=["POST"])
        @app.http("/people", methods=["POST"])
        def add_user(req: Request, ctx: Context) -> str:
            return "added"

    assert str(info.value) == (
        f'function "add_user" at {FILE}:{_line() - 6} is declared twice, and each '
        "declaration is a function with a name of its own; pass name= to one of them"
    )
    app.asgi("/a-b", asgi_app)
    with pytest.raises(AppError) as info:
        app.asgi("/a_b", asgi_app)  # no decorator to pass a name= to
    assert str(info.value) == (
        f'Two functions are named "asgi_a_b": {FILE}:{_line() - 4} and {FILE}:{_line() - 2}; '
        "rename one, or give one a name of its own with name="
    )


def test_name_given_twice_clashes() -> None:
    app = hibana.App()
    app.http("/one", name="same")(create)
    with pytest.raises(AppError, match=r'Two functions are named "same"'):
        app.http("/two", name="same")(create)


# --- blueprints ----------------------------------------------------------------------------


def test_blueprint_functions_join_the_app() -> None:
    bp = hibana.Blueprint()

    @bp.http("/users/{id:int}")
    def user(req: Request, ctx: Context) -> str:
        return "user"

    app = hibana.App()

    @app.http("/")
    def home(req: Request, ctx: Context) -> str:
        return "home"

    assert [s.name for s in bp.functions] == ["user"]
    app.register(bp)
    assert [s.name for s in app.functions] == ["home", "user"]
    assert app.functions[1].handler is user
    assert app.functions[1].source == f"{FILE}:{user.__code__.co_firstlineno}"


def test_blueprint_clash_is_found_when_registered() -> None:
    bp = hibana.Blueprint()

    @bp.http("/items")
    def from_bp(req: Request, ctx: Context) -> str:
        return "bp"

    @bp.http("/items", name="also_from_bp")
    def from_bp_too(req: Request, ctx: Context) -> str:
        return "bp"

    assert len(bp.functions) == 2  # a blueprint does not check; the app it joins does
    app = hibana.App()

    @app.http("/items")
    def from_app(req: Request, ctx: Context) -> str:
        return "app"

    with pytest.raises(RouteError) as info:
        app.register(bp)
    assert str(info.value) == (
        f'Route "/items" GET in {at(from_bp)} is already served by "/items" in '
        f"{at(from_app)}; change one route or method"
    )


def test_blueprint_name_clash_is_found_when_registered() -> None:
    bp = hibana.Blueprint()
    bp.http("/b", name="dup")(create)
    app = hibana.App()
    app.http("/a", name="dup")(create)
    with pytest.raises(AppError, match=r'Two functions are named "dup"'):
        app.register(bp)


def test_registering_a_blueprint_twice_names_both_places() -> None:
    bp = hibana.Blueprint()
    bp.http("/b")(create)
    app = hibana.App()
    app.register(bp)
    first = sys._getframe().f_lineno - 1
    with pytest.raises(AppError) as info:
        app.register(bp)
    here = os.path.relpath(__file__)
    assert str(info.value) == (
        f"A Blueprint is registered twice on this App: at {here}:{first} and at "
        f"{here}:{first + 3}; register it once"
    )


def test_a_function_declared_on_a_blueprint_after_it_was_registered_is_refused() -> None:
    bp = hibana.Blueprint()
    bp.http("/early")(create)
    first, second = hibana.App(), hibana.App()
    first.register(bp)
    registered = _line() - 1
    second.register(bp)  # the same Blueprint on two Apps: each takes its functions
    with pytest.raises(AppError) as info:

        @bp.http("/late")
        def late(req: Request, ctx: Context) -> str:
            return "late"

    assert str(info.value) == (
        f'function "late" at {FILE}:{registered + 5} is declared on a Blueprint that was '
        f"registered at {FILE}:{registered}, and an App takes a Blueprint's functions when "
        "it registers it: this one would never be served; declare every function of the "
        "Blueprint before app.register(...)"
    )
    assert [s.name for s in first.functions] == [s.name for s in second.functions] == ["create"]


def test_a_function_named_as_the_events_endpoint_clashes_with_it() -> None:
    app = hibana.App()
    app.http("/feed", name="runtime_events")(create)
    with pytest.raises(AppError) as info:
        app.event("orders")(create)
    assert str(info.value) == (
        f'Two functions are named "runtime_events": {FILE}:{create.__code__.co_firstlineno} '
        "and hibana/triggers/event.py; rename one, or give one a name of its own with name="
    )
    inner = hibana.App()  # an App registered on another brings its endpoint along
    inner.event("orders")(create)
    outer = hibana.App()
    outer.register(inner)
    outer.event("invoices", name="invoices")(create)
    assert [s.name for s in outer.functions] == ["create", "runtime_events", "invoices"]


def test_registering_what_is_no_blueprint_says_what_to_register() -> None:
    app = hibana.App()
    orders = types.ModuleType("shop.orders")
    orders.routes = hibana.Blueprint()  # type: ignore[attr-defined]

    def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        pass

    head = "app.register() at {}:{} takes a hibana.Blueprint, not"
    for given, told in (
        (
            orders,
            "the module shop.orders; register the Blueprint it holds: app.register(orders.routes)",
        ),
        (types.ModuleType("empty"), "the module empty, which holds none"),
        (
            asgi_app,
            "a function; to serve an ASGI or WSGI app (FastAPI, Flask...), mount "
            "it: app.asgi('/prefix', it) or app.wsgi('/prefix', it)",
        ),
        (None, "None"),
        (5, "5 (int)"),
        ("routes", "'routes' (str)"),
    ):
        with pytest.raises(AppError) as info:
            app.register(given)  # type: ignore[arg-type]
        assert str(info.value) == f"{head.format(FILE, _line() - 1)} {told}"
    assert not app.functions


def test_an_app_cannot_register_itself() -> None:
    app = hibana.App()
    with pytest.raises(AppError, match="An App cannot register itself"):
        app.register(app)


@pytest.mark.parametrize(
    ("declare", "kind", "problem"),
    [
        (lambda app: app.queue("a b"), "queue", "' ' (a space) is not one"),
        (lambda app: app.queue("注文"), "queue", "'注' is not one"),
        (lambda app: app.queue("q" * 201), "queue", "it is 201 characters long"),
        (lambda app: app.event(""), "topic", "it is empty"),
        (lambda app: app.event("a/b"), "topic", "'/' is not one"),
    ],
)
def test_a_bad_queue_or_topic_name_is_named_as_what_it_is_with_its_problem(
    declare: Callable[[hibana.App], Callable[[Any], Any]], kind: str, problem: str
) -> None:
    """The problem was left to guess: 'must be letters' said to a name of letters."""
    app = hibana.App()

    def fn(item: Any, ctx: Context) -> None: ...

    with pytest.raises(AppError) as raised:
        declare(app)(fn)
    assert str(raised.value).endswith(
        f"(fn): the {kind} name must be 1 to 200 ASCII letters, digits, '-', '_' or '.'; " + problem
    )


def consume(msg: hibana.Message, ctx: Context) -> None: ...


def on_tick(timer: hibana.TimerInfo, ctx: Context) -> None: ...


@pytest.mark.parametrize(
    ("declare", "fn", "problem"),
    [
        (
            lambda app, t: app.queue("jobs", visibility_timeout=t),
            consume,
            "visibility_timeout={} in {} must be at most 31536000 seconds (365 days): a "
            "message whose worker dies is delivered again once it passes; give the longest a "
            "run may take, in seconds",
        ),
        (
            lambda app, t: app.event("orders", visibility_timeout=t, timeout=5),
            consume,
            "visibility_timeout={} in {} must be at most 31536000 seconds (365 days): a "
            "message whose worker dies is delivered again once it passes; give the longest a "
            "run may take, in seconds",
        ),
        (
            lambda app, t: app.timer("* * * * *", timeout=t),
            on_tick,
            "timeout={} in {} must be at most 31536000 seconds (365 days): a slot whose "
            "worker dies is held until it passes; give the longest a run may take, in seconds",
        ),
    ],
    ids=["queue", "event", "timer"],
)
@pytest.mark.parametrize("lease", [1e300, 365 * 86400 + 1])  # inf: the finite-seconds test
def test_a_lease_that_never_ends_is_refused(
    declare: Callable[[hibana.App, float], Callable[[Any], Any]],
    fn: Callable[..., Any],
    problem: str,
    lease: float,
) -> None:
    """A worker that dies holding it would hold it for ever (or for longer than a message
    may be held back): the message was not delivered again (with kill -9, lost), its lease
    never counted as run out."""
    app = hibana.App()
    with pytest.raises(AppError) as info:
        declare(app, lease)(fn)
    assert str(info.value) == problem.format(repr(lease), at(fn))
    declare(hibana.App(), 365 * 86400)(fn)  # a year is the most


@pytest.mark.parametrize(
    "policy",
    [lambda: hibana.Fixed(1e300), lambda: hibana.Exponential(1, 365 * 86400 + 1)],
    ids=["fixed", "exponential"],
)
def test_a_retry_pause_longer_than_a_message_may_wait_is_refused(
    policy: Callable[[], hibana.RetryPolicy],
) -> None:
    """A delay over 365 days is refused (a mistake, not a plan); a retry's pause over it
    parked the message as that delay would have, counted as delayed."""
    with pytest.raises(ValueError, match=r"a retry would wait over 31536000 seconds") as info:
        policy()
    assert str(info.value).endswith(
        "(365 days), longer than a message may be held back; give a pause in seconds "
        "(not milliseconds) of at most that"
    )


def greet(greeting: str, req: Request, ctx: Context) -> str:
    return greeting


def farewell(words: str, req: Request, ctx: Context) -> str:
    return words


def test_a_partial_is_named_and_placed_after_the_function_it_wraps() -> None:
    """A functools.partial was named "partial", declared where its decorator was: two of
    them (of two functions) clashed as 'Two functions are named partial'."""
    app = hibana.App()
    app.http("/hi")(functools.partial(greet, "hi"))
    app.http("/bye")(functools.partial(functools.partial(farewell), "bye"))
    found = {spec.name: spec.source for spec in app.functions}
    assert found == {
        "greet": f"{FILE}:{greet.__code__.co_firstlineno}",
        "farewell": f"{FILE}:{farewell.__code__.co_firstlineno}",
    }
