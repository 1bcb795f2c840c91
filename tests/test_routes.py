"""Route patterns (``compile_route``) and matching a request to a function (``RouteTable``)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import hibana
from hibana import FunctionSpec, RouteError
from hibana.app import HttpTrigger
from hibana.triggers.routes import (
    CompiledRoute,
    Match,
    RouteTable,
    compile_route,
    remove_dot_segments,
)

WHERE = "function_app.py:12 (create)"


def _handler(req: hibana.Request, ctx: hibana.Context) -> None:
    return None


def table_of(app: hibana.App) -> RouteTable:
    """The table the HTTP trigger builds from an app."""
    rows: list[tuple[CompiledRoute, tuple[str, ...], FunctionSpec]] = []
    for spec in app.functions:
        assert isinstance(spec.trigger, HttpTrigger)
        rows.extend((route, spec.trigger.methods, spec) for route in spec.trigger.routes)
    return RouteTable(rows)


def matched(found: Match | list[str] | None) -> Match:
    assert isinstance(found, Match), f"expected a match, got {found!r}"
    return found


def add(app: hibana.App, route: str, methods: tuple[str, ...], name: str) -> FunctionSpec:
    app.http(route, methods, name=name)(_handler)
    return app.functions[-1]


def test_a_mounted_app_gets_every_path_below_its_prefix() -> None:
    """Its app reads the path itself (no parameter of it is joined onto a folder): one
    with a slash after the prefix reaches it too, as it did."""

    def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        return None

    app = hibana.App()
    app.asgi("/api", asgi_app)
    app.asgi("", asgi_app, name="root")
    table = table_of(app)
    for path in ("/api/x", "/api//x", "/api", "/api/"):
        assert matched(table.lookup("GET", path)).spec.name == "asgi_api", path
    assert matched(table.lookup("GET", "//x")).spec.name == "root"


def test_a_route_under_a_mount_answers_its_methods_and_the_mount_the_rest() -> None:
    """As a Starlette Route listed before a Mount: the other methods of the route's path
    (a POST, a CORS preflight's OPTIONS) are the mounted app's, not a 405; declared
    before or after the mount alike."""

    def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        return None

    for mount_first in (True, False):
        app = hibana.App()
        if mount_first:
            app.asgi("/", asgi_app)
        health = add(app, "/health", ("GET",), "health")
        user = add(app, "/users/{id:int}", ("GET",), "user")
        if not mount_first:
            app.asgi("/", asgi_app)
        table = table_of(app)
        for method in ("GET", "HEAD"):
            assert matched(table.lookup(method, "/health")).spec is health
            assert matched(table.lookup(method, "/users/5")).spec is user
        for method in ("POST", "OPTIONS", "DELETE"):
            for path in ("/health", "/users/5", "/users/five"):
                assert matched(table.lookup(method, path)).spec.name == "asgi_root"


# --- syntax errors -------------------------------------------------------------------------


def test_unclosed_brace_names_route_and_place() -> None:
    with pytest.raises(RouteError) as info:
        compile_route("/items/{id", WHERE)
    assert str(info.value) == (
        'Route "/items/{id" in function_app.py:12 (create) has an unclosed "{"'
    )


def test_brace_opened_again_before_close_is_unclosed() -> None:
    with pytest.raises(RouteError, match=r'has an unclosed "\{"'):
        compile_route("/items/{a{b}", WHERE)


def test_stray_closing_brace_gives_its_position() -> None:
    with pytest.raises(RouteError) as info:
        compile_route("/items/id}", WHERE)
    assert str(info.value) == (
        'Route "/items/id}" in function_app.py:12 (create) has a "}" at position 9 '
        'with no "{" before it'
    )


def test_stray_closing_brace_after_a_parameter() -> None:
    with pytest.raises(RouteError, match=r"at position 11"):
        compile_route("/items/{id}}", WHERE)


@pytest.mark.parametrize("param", ["1id", "", "my-id", "a b", ":int"])
def test_parameter_name_must_be_an_identifier(param: str) -> None:
    pattern = "/items/{" + param + "}"
    with pytest.raises(RouteError) as info:
        compile_route(pattern, WHERE)
    assert str(info.value) == (
        f'Route "{pattern}" in function_app.py:12 (create) has a parameter "{{{param}}}" '
        "whose name is not an identifier; write {name} or {name:int}"
    )


def test_unknown_parameter_type_lists_the_known_ones() -> None:
    with pytest.raises(RouteError) as info:
        compile_route("/items/{id:integer}", WHERE)
    assert str(info.value) == (
        'Route "/items/{id:integer}" in function_app.py:12 (create) has parameter "id" '
        'of unknown type "integer"; use one of: str, int, float, uuid, path'
    )


def test_duplicate_parameter_is_an_error() -> None:
    with pytest.raises(RouteError) as info:
        compile_route("/users/{id}/posts/{id:int}", WHERE)
    assert str(info.value) == (
        'Route "/users/{id}/posts/{id:int}" in function_app.py:12 (create) '
        'uses parameter "id" twice'
    )


@pytest.mark.parametrize("pattern", ["items", "", "items/{id}"])
def test_route_must_start_with_a_slash(pattern: str) -> None:
    with pytest.raises(RouteError) as info:
        compile_route(pattern, WHERE)
    assert str(info.value) == (
        f'Route "{pattern}" in function_app.py:12 (create) does not start with "/"; '
        f'write "/{pattern}"'
    )


@pytest.mark.parametrize(
    ("pattern", "error"),
    [
        (
            "/search?q={q}",
            'has a query ("?"), but a route matches the path alone; write "/search" and read '
            "the query string from req.query",
        ),
        ("/docs#intro", 'has a fragment ("#"), but a route matches the path alone; write "/docs"'),
        (
            "/caf%C3%A9/{x}",
            'is percent-encoded ("%C3"), but a route matches the path as decoded; write '
            '"/café/{x}"',
        ),
        (
            "/static/./{name}",
            'has a "." segment, but a route matches the path with its "." and ".." segments '
            'resolved (as a browser does); write "/static/{name}"',
        ),
        (
            "/v1/../items/{id:int}",
            'has a ".." segment, but a route matches the path with its "." and ".." segments '
            'resolved (as a browser does); write "/items/{id:int}"',
        ),
        (
            "/../up",
            'has a ".." segment, but a route matches the path with its "." and ".." segments '
            'resolved (as a browser does); write "/up"',
        ),
    ],
)
def test_a_route_no_request_can_reach_is_an_error(pattern: str, error: str) -> None:
    """Each was a 404 for every request, with nothing to say why."""
    with pytest.raises(RouteError) as info:
        compile_route(pattern, WHERE)
    assert str(info.value) == f'Route "{pattern}" in function_app.py:12 (create) {error}'


def test_a_route_with_a_percent_sign_of_its_own_is_fine() -> None:
    assert compile_route("/100%", WHERE).match("/100%") == {}


def test_a_segment_that_only_starts_with_a_dot_is_fine() -> None:
    assert compile_route("/.well-known/{name}", WHERE).match("/.well-known/x") == {"name": "x"}
    assert compile_route("/v/..{x}", WHERE).match("/v/..a") == {"x": "a"}


def test_route_that_is_not_a_string() -> None:
    with pytest.raises(RouteError, match=r"Route None in function_app.py:12 \(create\) is not"):
        compile_route(None, WHERE)  # type: ignore[arg-type]


def test_route_errors_are_app_errors() -> None:
    with pytest.raises(hibana.AppError):
        compile_route("/x/{", WHERE)


# --- matching a single route ---------------------------------------------------------------


def test_static_route_matches_only_its_exact_path() -> None:
    route = compile_route("/items", WHERE)
    assert route.regex is None
    assert route.match("/items") == {}
    assert route.match("/items/") is None
    assert route.match("/item") is None
    assert route.match("/items/1") is None


def test_static_route_with_regex_characters_is_literal() -> None:
    route = compile_route("/a.b/(c)+", WHERE)
    assert route.match("/a.b/(c)+") == {}
    assert route.match("/aXb/(c)+") is None


@pytest.mark.parametrize(
    ("pattern", "path", "params"),
    [
        ("/items/{id}", "/items/abc", {"id": "abc"}),
        ("/items/{id:str}", "/items/abc", {"id": "abc"}),
        ("/items/{id:int}", "/items/42", {"id": 42}),
        ("/items/{id:int}", "/items/-7", {"id": -7}),
        ("/items/{id:int}", "/items/007", {"id": 7}),
        ("/price/{p:float}", "/price/1.5", {"p": 1.5}),
        ("/price/{p:float}", "/price/3", {"p": 3.0}),
        (
            "/u/{u:uuid}",
            "/u/12345678-1234-5678-1234-567812345678",
            {"u": uuid.UUID("12345678-1234-5678-1234-567812345678")},
        ),
        ("/files/{rest:path}", "/files/a/b/c.txt", {"rest": "a/b/c.txt"}),
        ("/files/{name}.txt", "/files/report.txt", {"name": "report"}),
        ("/a/{x}/b/{y:int}", "/a/one/b/2", {"x": "one", "y": 2}),
    ],
)
def test_typed_parameters_are_converted(pattern: str, path: str, params: dict[str, Any]) -> None:
    got = compile_route(pattern, WHERE).match(path)
    assert got == params
    assert got is not None
    for key, value in params.items():
        assert type(got[key]) is type(value)


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("/items/{id:int}", "/items/abc"),
        ("/items/{id:int}", "/items/1.5"),
        ("/items/{id:int}", "/items/"),
        ("/price/{p:float}", "/price/1e5"),
        ("/price/{p:float}", "/price/" + "9" * 400),  # would be inf
        ("/price/{p:float}", "/price/-" + "9" * 400),
        ("/u/{u:uuid}", "/u/not-a-uuid"),
        ("/items/{id}", "/items/a/b"),
        ("/items/{id}", "/items/"),
        ("/items/{id}", "/items/1/"),
        ("/files/{rest:path}", "/files/"),
        # what /files//etc/passwd (or /files/%2Fetc/passwd) asks for: joined onto a folder,
        # "/etc/passwd" would be taken from the root
        ("/files/{rest:path}", "/files//etc/passwd"),
        ("/a/{rest:path}/edit", "/a//etc/edit"),
    ],
)
def test_path_that_does_not_fit_the_type_does_not_match(pattern: str, path: str) -> None:
    assert compile_route(pattern, WHERE).match(path) is None


def test_parameter_names_do_not_change_the_shape() -> None:
    assert compile_route("/a/{x}", WHERE).shape == compile_route("/a/{y}", WHERE).shape
    assert compile_route("/a/{x}", WHERE).shape == compile_route("/a/{y:str}", WHERE).shape
    assert compile_route("/a/{x}", WHERE).shape != compile_route("/a/{x:int}", WHERE).shape


# --- the route table -----------------------------------------------------------------------


def test_lookup_finds_static_and_dynamic_functions() -> None:
    app = hibana.App()
    listing = add(app, "/items", ("GET",), "listing")
    new = add(app, "/items/new", ("GET",), "new")
    one = add(app, "/items/{id:int}", ("GET",), "one")
    table = table_of(app)

    found = matched(table.lookup("GET", "/items"))
    assert (found.spec, found.params) == (listing, {})
    found = matched(table.lookup("GET", "/items/new"))
    assert (found.spec, found.params) == (new, {})
    found = matched(table.lookup("GET", "/items/5"))
    assert (found.spec, found.params) == (one, {"id": 5})


def test_static_route_wins_over_a_dynamic_one_declared_first() -> None:
    app = hibana.App()
    add(app, "/items/{name}", ("GET",), "by_name")
    new = add(app, "/items/new", ("GET",), "new")
    found = matched(table_of(app).lookup("GET", "/items/new"))
    assert found.spec is new


@pytest.mark.parametrize("typed_first", [True, False])
def test_a_typed_route_wins_over_a_plain_one_whichever_is_declared_first(
    typed_first: bool,
) -> None:
    app = hibana.App()
    if typed_first:
        by_id = add(app, "/items/{id:int}", ("GET",), "by_id")
        by_slug = add(app, "/items/{slug}", ("GET",), "by_slug")
    else:
        by_slug = add(app, "/items/{slug}", ("GET",), "by_slug")
        by_id = add(app, "/items/{id:int}", ("GET",), "by_id")
    table = table_of(app)
    found = matched(table.lookup("GET", "/items/12"))
    assert (found.spec, found.params) == (by_id, {"id": 12})
    found = matched(table.lookup("GET", "/items/twelve"))
    assert (found.spec, found.params) == (by_slug, {"slug": "twelve"})


def test_a_typed_route_of_another_method_declared_first_does_not_change_the_order() -> None:
    app = hibana.App()
    add(app, "/items/{id:int}", ("DELETE",), "remove")
    by_slug = add(app, "/items/{slug}", ("GET",), "by_slug")
    by_id = add(app, "/items/{num:int}", ("GET",), "by_id")
    table = table_of(app)
    assert matched(table.lookup("GET", "/items/7")).params == {"num": 7}
    assert matched(table.lookup("GET", "/items/7")).spec is by_id
    assert matched(table.lookup("GET", "/items/seven")).spec is by_slug
    assert table.lookup("DELETE", "/items/seven") == ["GET", "HEAD"]


def test_a_literal_segment_wins_over_a_parameter_and_a_path_goes_last() -> None:
    app = hibana.App()
    rest = add(app, "/files/{rest:path}", ("GET",), "rest")
    edit = add(app, "/files/{rest:path}/edit", ("GET",), "edit")
    one = add(app, "/files/{name}", ("GET",), "one")
    mine = add(app, "/files/{owner}/mine", ("GET",), "mine")
    raw = add(app, "/files/{name}.raw", ("GET",), "raw")
    table = table_of(app)
    assert matched(table.lookup("GET", "/files/a/b/c")).spec is rest
    assert matched(table.lookup("GET", "/files/a/b/edit")).spec is edit
    assert matched(table.lookup("GET", "/files/a")).spec is one
    assert matched(table.lookup("GET", "/files/a/mine")).spec is mine
    found = matched(table.lookup("GET", "/files/a.raw"))
    assert (found.spec, found.params) == (raw, {"name": "a"})


def test_routes_equally_specific_are_tried_in_declaration_order() -> None:
    app = hibana.App()
    first = add(app, "/n/{name}.json", ("GET",), "first")
    second = add(app, "/n/{name}.{ext}", ("GET",), "second")
    table = table_of(app)
    assert matched(table.lookup("GET", "/n/x.json")).spec is first
    assert matched(table.lookup("GET", "/n/x.csv")).spec is second


def test_a_path_parameter_holds_a_newline_as_a_plain_one_does() -> None:
    """``%0A`` decoded: a ``{rest:path}`` (and a mount) did not match it, a 404, where a
    ``{name}`` took it; what to make of it is the function's to judge, either way."""

    def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        return None

    app = hibana.App()
    rest = add(app, "/files/{rest:path}", ("GET",), "rest")
    one = add(app, "/one/{name}", ("GET",), "one")
    app.asgi("/api", asgi_app)
    table = table_of(app)
    found = matched(table.lookup("GET", "/files/a\nb/c\n"))
    assert (found.spec, found.params) == (rest, {"rest": "a\nb/c\n"})
    assert matched(table.lookup("GET", "/one/a\nb")).spec is one
    assert matched(table.lookup("GET", "/api/x\ny")).spec.name == "asgi_api"


def test_an_int_route_goes_before_a_float_one_declared_first() -> None:
    """Every int is a float too: declared after a ``{x:float}``, the ``{x:int}`` was never
    reached, its integers served by the float route as 5.0."""
    app = hibana.App()
    real = add(app, "/n/{x:float}", ("GET",), "real")
    whole = add(app, "/n/{x:int}", ("GET",), "whole")
    table = table_of(app)
    found = matched(table.lookup("GET", "/n/5"))
    assert (found.spec, found.params) == (whole, {"x": 5})
    assert matched(table.lookup("GET", "/n/5.5")).spec is real


def test_path_no_route_serves_is_none() -> None:
    app = hibana.App()
    add(app, "/items", ("GET",), "listing")
    add(app, "/items/{id:int}", ("GET",), "one")
    table = table_of(app)
    assert table.lookup("GET", "/nothing") is None
    assert table.lookup("GET", "/items/abc") is None  # int does not match: 404, not 405
    assert table.lookup("POST", "/items/abc") is None


def test_wrong_method_lists_the_allowed_ones_sorted() -> None:
    app = hibana.App()
    add(app, "/items", ("POST",), "create")
    add(app, "/items", ("GET",), "listing")
    add(app, "/items/{id}", ("DELETE", "PUT"), "change")
    table = table_of(app)
    assert table.lookup("DELETE", "/items") == ["GET", "HEAD", "POST"]
    assert table.lookup("GET", "/items/3") == ["DELETE", "PUT"]


def test_allowed_methods_combine_every_route_that_matches_the_path() -> None:
    app = hibana.App()
    add(app, "/items/new", ("POST",), "create")
    add(app, "/items/{id:int}", ("GET",), "one")
    add(app, "/items/{slug}", ("PUT",), "rename")
    assert table_of(app).lookup("DELETE", "/items/new") == ["POST", "PUT"]


def test_head_is_served_by_the_get_function() -> None:
    app = hibana.App()
    get = add(app, "/items", ("GET",), "listing")
    dyn = add(app, "/items/{id}", ("GET",), "one")
    table = table_of(app)
    assert matched(table.lookup("HEAD", "/items")).spec is get
    assert matched(table.lookup("HEAD", "/items/1")).spec is dyn


def test_head_is_not_implied_without_get() -> None:
    app = hibana.App()
    add(app, "/items", ("POST",), "create")
    assert table_of(app).lookup("HEAD", "/items") == ["POST"]


@pytest.mark.parametrize("head_first", [True, False])
def test_an_explicit_head_function_wins_over_the_implied_one(head_first: bool) -> None:
    app = hibana.App()
    if head_first:
        head = add(app, "/items", ("HEAD",), "head")
        add(app, "/items", ("GET",), "listing")
    else:
        add(app, "/items", ("GET",), "listing")
        head = add(app, "/items", ("HEAD",), "head")
    assert matched(table_of(app).lookup("HEAD", "/items")).spec is head


def test_functions_on_one_route_with_different_methods() -> None:
    app = hibana.App()
    read = add(app, "/items/{id:int}", ("GET",), "read")
    write = add(app, "/items/{id:int}", ("PUT",), "write")
    table = table_of(app)
    assert matched(table.lookup("GET", "/items/1")).spec is read
    found = matched(table.lookup("PUT", "/items/1"))
    assert (found.spec, found.params) == (write, {"id": 1})


def test_each_function_gets_its_own_parameter_names() -> None:
    """``/a/{x}`` GET and ``/a/{y}`` POST do not clash; the POST function reads ``y``."""
    app = hibana.App()
    getter = add(app, "/users/{user_id}", ("GET",), "getter")
    poster = add(app, "/users/{name}", ("POST",), "poster")
    table = table_of(app)
    found = matched(table.lookup("GET", "/users/7"))
    assert (found.spec, found.params) == (getter, {"user_id": "7"})
    found = matched(table.lookup("POST", "/users/7"))
    assert (found.spec, found.params) == (poster, {"name": "7"})


@pytest.mark.parametrize(
    ("path", "resolved"),
    [
        ("/a/b/../c", "/a/c"),
        ("/a/./b", "/a/b"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/..", "/"),
        ("/.", "/"),
        ("/.well-known/x", "/.well-known/x"),  # a dot that begins a name is no segment
        ("/a/..b/c.", "/a/..b/c."),
        ("/..", None),
        ("/a/../../etc/passwd", None),
    ],
)
def test_dot_segments_are_resolved_and_none_climbs_above_the_root(
    path: str, resolved: str | None
) -> None:
    assert remove_dot_segments(path) == resolved
