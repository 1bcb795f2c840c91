"""Web apps (Flask, FastAPI, Django, bare ASGI) on AWS Lambda: hibana.aws.handler fed API
Gateway v1/v2, Function URL and ALB events (built on tests/aws_events, each source's event in
the shape AWS documents), under the stage of an API or the base path of a custom domain."""

from __future__ import annotations

import base64
import json
import logging
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, unquote

import flask
import pytest

import hibana.aws
from tests.adapters.payloads import (
    PNG,
    Ctx,
    MakeHandler,
    alb_event,
    aws_event,
    v1_event,
    v2_event,
)
from tests.hosts import Host


def test_flask_on_lambda_with_api_gateway_v1(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    handle = lambda_handler(mounts.flask_app)
    out = handle(
        v1_event(
            "GET",
            "/items/3",
            [("tag", "a b"), ("tag", "c&d")],
            [("X-Multi", "1"), ("X-Multi", "2"), ("Host", "api.example.com")],
        ),
        Ctx(),
    )
    assert out["statusCode"] == 200 and out["isBase64Encoded"] is False
    body = json.loads(out["body"])
    assert body["tags"] == ["a b", "c&d"]  # decoded exactly once
    assert body["accept"] == ["1,2"]  # a WSGI app: one environ value, joined
    echo = handle(
        v1_event("POST", "/echo", body=PNG, binary=True, headers=[("Content-Type", "image/png")]),
        Ctx(),
    )
    assert echo["isBase64Encoded"] is True and base64.b64decode(echo["body"]) == PNG
    assert echo["multiValueHeaders"]["set-cookie"] == ["a=1; Path=/", "b=2; Path=/"]
    assert "set-cookie" not in echo["headers"]


def test_an_app_on_a_rest_apis_execute_api_url_is_served_under_its_stage(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    """There the client asks for /prod/items/3 and the event's path is /items/3: the app
    built its URLs (url_for, redirects, FastAPI's docs) without /prod, which is no URL
    of the API. requestContext.path holds what was asked."""
    host = [("Host", "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com")]
    flask = lambda_handler(mounts.flask_app)(v1_event("GET", "/items/3", headers=host), Ctx())
    seen = json.loads(flask["body"])
    assert (seen["id"], seen["self_url"], seen["script_name"], seen["path_info"]) == (
        3,
        "/prod/items/3",
        "/prod",
        "/items/3",
    )
    api = lambda_handler(mounts.api)(v1_event("GET", "/hello/ann", headers=host), Ctx())
    body = json.loads(api["body"])
    assert (body["hello"], body["root_path"]) == ("ann", "/prod")
    assert body["url"] == "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod/hello/ann"
    # a hibana app routes on what follows the stage, and so do its mounts
    app = hibana.App()

    @app.http("/where/")
    def where(req: hibana.Request, ctx: hibana.Context) -> str:
        return req.url

    handle = lambda_handler(app)
    out = handle(v1_event("GET", "/where/", headers=host), Ctx())
    assert out["body"] == "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod/where/"
    moved = handle(v1_event("GET", "/where", headers=host), Ctx())
    assert (moved["statusCode"], moved["headers"]["location"]) == (308, "/prod/where/")
    mounted = lambda_handler(mounts.app)(v1_event("GET", "/flask/items/4", headers=host), Ctx())
    assert json.loads(mounted["body"])["self_url"] == "/prod/flask/items/4"
    # at a custom domain the two paths are one: no stage to serve under
    custom = v1_event("GET", "/items/3", headers=[("Host", "api.example.com")])
    custom["requestContext"]["path"] = "/items/3"
    seen = json.loads(lambda_handler(mounts.flask_app)(custom, Ctx())["body"])
    assert (seen["self_url"], seen["script_name"]) == ("/items/3", "")


def test_an_app_on_an_http_apis_named_stage_is_served_under_it(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    """An HTTP API's stage other than $default is the first segment of rawPath (and of
    requestContext.http.path) at its execute-api URL: the app routed on /prod/items/3 and
    answered 404 to every request. Served under the stage, as a REST API's is."""

    def staged(path: str, domain: str = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com") -> Any:
        event = v2_event("GET", path, domain=domain)
        event["requestContext"]["stage"] = "prod"
        return event

    flask = lambda_handler(mounts.flask_app)(staged("/prod/items/3"), Ctx())
    seen = json.loads(flask["body"])
    assert (seen["id"], seen["self_url"], seen["script_name"], seen["path_info"]) == (
        3,
        "/prod/items/3",
        "/prod",
        "/items/3",
    )
    api = lambda_handler(mounts.api)(staged("/prod/hello/ann"), Ctx())
    body = json.loads(api["body"])
    assert (body["hello"], body["root_path"]) == ("ann", "/prod")
    assert body["url"] == "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod/hello/ann"
    app = hibana.App()

    @app.http("/where/")
    def where(req: hibana.Request, ctx: hibana.Context) -> str:
        return req.url

    handle = lambda_handler(app)
    out = handle(staged("/prod/where/"), Ctx())
    assert out["body"] == "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod/where/"
    moved = handle(staged("/prod/where"), Ctx())
    assert (moved["statusCode"], moved["headers"]["location"]) == (308, "/prod/where/")
    # at a custom domain mapped to the stage, the path holds no stage
    custom = lambda_handler(mounts.flask_app)(staged("/items/3", "api.example.com"), Ctx())
    assert json.loads(custom["body"])["script_name"] == ""


def test_fastapi_on_lambda_with_http_api_v2_and_function_urls(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    handle = lambda_handler(mounts.api)
    for domain in ("abc.execute-api.us-east-1.amazonaws.com", "xyz.lambda-url.us-east-1.on.aws"):
        out = handle(
            v2_event(
                "GET", "/hello/caf%C3%A9", "q=1&q=2%263", headers={"host": domain}, domain=domain
            ),
            Ctx(),
        )
        assert out["statusCode"] == 200
        body = json.loads(out["body"])
        assert body["hello"] == "café" and body["q"] == ["1", "2&3"]
        assert body["startups"] >= 1  # the lifespan ran
        assert unquote(body["url"]) == f"https://{domain}/hello/café"


def test_flask_cookies_and_binary_on_http_api_v2(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    handle = lambda_handler(mounts.flask_app)
    out = handle(
        v2_event(
            "POST",
            "/echo",
            body=PNG,
            binary=True,
            headers={"content-type": "image/png"},
            cookies=["s=1", "t=2"],
        ),
        Ctx(),
    )
    assert base64.b64decode(out["body"]) == PNG and out["isBase64Encoded"] is True
    assert out["cookies"] == ["a=1; Path=/", "b=2; Path=/"]
    assert "set-cookie" not in out["headers"]


@pytest.mark.parametrize("multi", [True, False])
def test_django_on_lambda_behind_an_alb(
    mounts: ModuleType, multi: bool, lambda_handler: MakeHandler
) -> None:
    handle = lambda_handler(mounts.get_wsgi_application())
    # the ALB passes the query as it came: still encoded
    out = handle(
        alb_event(
            "GET", "/pages/a-b", [("x", "1%202"), ("x", "3")], multi, [("host", "lb.example.com")]
        ),
        Ctx(),
    )
    assert out["statusCode"] == 200 and out["statusDescription"] == "200 OK"
    body = json.loads(out["body"])
    assert body["slug"] == "a-b"
    assert body["x"] == (["1 2", "3"] if multi else ["3"])
    assert ("multiValueHeaders" in out) is multi and ("headers" in out) is not multi


async def _repeats_headers(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"vary", b"accept"), (b"vary", b"cookie"), (b"set-cookie", b"a=1")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def test_repeated_headers_behind_an_alb_without_multi_value_headers_are_joined(
    lambda_handler: MakeHandler, caplog: pytest.LogCaptureFixture
) -> None:
    """Such an ALB takes one value a name: all but the last Vary was lost; several
    cookies cannot be joined, and that only the last is sent is said."""
    handle = lambda_handler(_repeats_headers)
    out = handle(alb_event("GET", "/", [], False, [("host", "lb.example.com")]), Ctx())
    assert out["headers"]["vary"] == "accept, cookie"
    assert out["headers"]["set-cookie"] == "a=1"
    assert not [r for r in caplog.records if r.name == "hibana.aws"]  # one cookie is fine
    multi = handle(alb_event("GET", "/", [], True, [("host", "lb.example.com")]), Ctx())
    assert multi["multiValueHeaders"]["vary"] == ["accept", "cookie"]


def test_cookies_an_alb_without_multi_value_headers_cannot_pass_are_named(
    mounts: ModuleType, lambda_handler: MakeHandler, caplog: pytest.LogCaptureFixture
) -> None:
    handle = lambda_handler(mounts.flask_app)  # /echo sets two cookies
    with caplog.at_level(logging.WARNING, logger="hibana.aws"):
        out = handle(alb_event("POST", "/echo", [], False, [("host", "lb.example.com")]), Ctx())
    assert out["headers"]["set-cookie"] == "b=2; Path=/"
    (record,) = [r for r in caplog.records if r.name == "hibana.aws"]
    assert record.getMessage() == (
        "the response sets 2 cookies, and an ALB target group without multi-value headers "
        "passes one: only the last is sent; turn on the target group's "
        "lambda.multi_value_headers.enabled to send all"
    )


async def _bare_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return  # no lifespan, as many bare ASGI apps
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"bare"})


def test_a_head_request_on_lambda_is_answered_without_a_body(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    """A hibana app's GET body went back, though HTTP has none for HEAD: a client sizing a
    large download with HEAD had the invocation fail at Lambda's 6 MB result limit."""
    for handle, path in (
        (lambda_handler(mounts.flask_app), "/items/3"),
        (lambda_handler(mounts.app), "/native"),
    ):
        got = handle(v2_event("GET", path), Ctx())
        head = handle(v2_event("HEAD", path), Ctx())
        assert (head["statusCode"], head["body"], head["isBase64Encoded"]) == (200, "", False)
        assert head["headers"]["content-length"] == str(len(got["body"].encode()))
    alb = lambda_handler(mounts.flask_app)(
        alb_event("HEAD", "/items/3", [], True, [("host", "lb.example.com")]), Ctx()
    )
    assert alb["body"] == "" and alb["multiValueHeaders"]["content-length"] != ["0"]


def test_a_bare_asgi_app_without_lifespan_runs_on_lambda(lambda_handler: MakeHandler) -> None:
    handle = lambda_handler(_bare_asgi)
    out = handle(v2_event("GET", "/anything"), Ctx())
    assert (out["statusCode"], out["body"]) == (200, "bare")


class _DefMiddleware:
    """ASGI middleware whose ``__call__`` is a def returning the app's coroutine: an ASGI
    app (calling it gives an awaitable), as ``app.asgi`` takes it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        return self.app(scope, receive, send)


def test_an_asgi_app_whose_call_is_a_def_runs_on_lambda(lambda_handler: MakeHandler) -> None:
    # it was taken for a WSGI app (no async def to see), and every event failed with
    # "__call__() missing 1 required positional argument: 'send'"
    handle = lambda_handler(_DefMiddleware(_bare_asgi))
    out = handle(v2_event("GET", "/anything"), Ctx())
    assert (out["statusCode"], out["body"]) == (200, "bare")


async def _scope_keys(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps(sorted(scope)).encode()})


def test_a_bare_asgi_app_on_lambda_sees_only_asgi_keys_in_its_scope(
    lambda_handler: MakeHandler,
) -> None:
    handle = lambda_handler(_scope_keys)
    headers = {
        "x-amzn-trace-id": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8"
    }
    out = handle(v2_event("GET", "/anything", headers=headers), Ctx())
    keys = json.loads(out["body"])
    assert [key for key in keys if key.startswith("hibana")] == [], keys
    assert {"type", "method", "path", "headers", "query_string"} <= set(keys)


async def _fails_after_answering(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"made"})
    raise RuntimeError("the audit write failed")


def test_an_app_that_raises_after_its_whole_response_on_lambda_keeps_the_response(
    lambda_handler: MakeHandler, caplog: pytest.LogCaptureFixture
) -> None:
    # as under an ASGI server (and hibana's own): the answer stands, the error is logged
    handle = lambda_handler(_fails_after_answering)
    with caplog.at_level(logging.ERROR, logger="hibana.aws"):
        out = handle(v2_event("POST", "/things"), Ctx())
    assert (out["statusCode"], out["body"]) == (201, "made")
    (record,) = [r for r in caplog.records if r.name == "hibana.aws"]
    assert "after its whole response" in record.getMessage()
    assert record.exc_info is not None
    assert "the audit write failed" in str(record.exc_info[1])


def test_a_closed_lambda_handler_has_ended_its_apps_lifespan(mounts: ModuleType) -> None:
    handle = hibana.aws.handler(mounts.api)
    assert handle(v2_event("GET", "/hello/x"), Ctx())["statusCode"] == 200
    shutdowns = mounts.state["shutdowns"]
    handle.close()
    handle.close()  # twice is fine
    assert mounts.state["shutdowns"] == shutdowns + 1
    with pytest.raises(RuntimeError, match="this Lambda handler was closed; make a new one"):
        handle(v2_event("GET", "/hello/x"), Ctx())


def test_an_unknown_event_is_named(mounts: ModuleType, lambda_handler: MakeHandler) -> None:
    handle = lambda_handler(mounts.flask_app)
    with pytest.raises(hibana.aws.UnknownEvent, match="is not an HTTP event hibana understands"):
        handle({"Records": [{"eventSource": "aws:sqs"}]}, Ctx())


def test_an_authorizer_event_is_not_served_as_a_request(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    """A REQUEST authorizer's event carries the request, so it was served as a v1 or v2
    request, and its statusCode and body were no policy API Gateway could read."""
    handle = lambda_handler(mounts.flask_app)
    rest = v1_event("GET", "/hello/x")
    rest.update(type="REQUEST", methodArn="arn:aws:execute-api:us-east-1:1:abc/prod/GET/hello/x")
    http = v2_event("GET", "/hello/x")
    http.update(type="REQUEST", routeArn="arn:aws:execute-api:us-east-1:1:abc/$default/GET/hello/x")
    token = {"type": "TOKEN", "authorizationToken": "Bearer x", "methodArn": rest["methodArn"]}
    for event, kind in ((rest, "REQUEST"), (http, "REQUEST"), (token, "TOKEN")):
        with pytest.raises(hibana.aws.UnknownEvent) as info:
            handle(event, Ctx())
        assert str(info.value).startswith(
            f"an API Gateway Lambda authorizer event (type {kind}) is not an HTTP request to "
            "serve: hibana.aws.handler answers proxy integrations ("
        )
        assert "write the authorizer as a Lambda handler of its own" in str(info.value)


async def _echo_request(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app that answers with what it was asked."""
    if scope["type"] != "http":
        return
    seen = {
        "method": scope["method"],
        "path": scope["path"],
        "root_path": scope["root_path"],
        "query": scope["query_string"].decode(),
        "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
        "client": scope["client"],
    }
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps(seen).encode()})


@pytest.mark.parametrize(
    ("name", "tags", "x_tag"),
    [
        ("apigw-rest-v1", ["a", "b"], ["first", "second"]),
        ("apigw-http-v1", ["a", "b"], ["first", "second"]),  # HTTP API, payload 1.0
        ("apigw-http-v2", ["a", "b"], ["first,second"]),  # HTTP API joins repeats
        ("function-url", ["a", "b"], ["first,second"]),
        ("alb", ["b"], ["second"]),  # without multi-value headers ALB keeps the last
        ("alb-multi-value", ["a", "b"], ["first", "second"]),
    ],
)
def test_each_documented_event_shape_reaches_the_app_whole(
    name: str, tags: list[str], x_tag: list[str], lambda_handler: MakeHandler
) -> None:
    out = lambda_handler(_echo_request)(aws_event(name), Ctx())
    assert out["statusCode"] == 200
    seen = json.loads(out["body"])
    # a REST API's execute-api URL has the stage first (/prod/items/9), and so has an HTTP
    # API's payload 1.0 at a named stage (in its path too): the app is served under it, so
    # the URLs it builds keep it
    root = "/prod" if name in ("apigw-rest-v1", "apigw-http-v1") else ""
    assert (seen["method"], seen["path"], seen["root_path"]) == ("GET", root + "/items/9", root)
    query = parse_qs(seen["query"])
    assert query == {"tag": tags, "q": ["green tea"]}  # decoded exactly once
    headers = seen["headers"]
    assert [v for k, v in headers if k == "x-tag"] == x_tag
    assert [v for k, v in headers if k == "accept"] == ["application/json"]
    if name in ("apigw-http-v2", "function-url"):
        assert [v for k, v in headers if k == "cookie"] == ["session=abc; theme=dark"]
    if name.startswith("alb"):
        assert out["statusDescription"] == "200 OK"  # what ALB wants back
    # API Gateway names the caller; ALB appends it to X-Forwarded-For
    assert seen["client"][0] == "198.51.100.23"


async def _header_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    value = dict(scope["headers"])[b"x-name"]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": value})


def test_a_header_value_outside_latin1_reaches_the_app_on_lambda(
    lambda_handler: MakeHandler,
) -> None:
    """API Gateway hands over the UTF-8 it decoded: the handler failed before the app ran."""
    handle = lambda_handler(_header_echo)
    out = handle(v2_event("GET", "/anything", headers={"x-name": "日本"}), Ctx())
    assert out["statusCode"] == 200
    body = out["body"]
    sent = base64.b64decode(body) if out.get("isBase64Encoded") else body.encode()
    assert sent == "日本".encode()


def test_several_cookie_headers_in_a_rest_api_event_are_one_on_lambda(
    lambda_handler: MakeHandler,
) -> None:
    """multiValueHeaders' Cookie ["a=1", "b=2"] reached a WSGI app as HTTP_COOKIE a=1,b=2,
    one cookie a of "1,b=2", and an ASGI app as two headers, of which Starlette reads one."""
    flask_app = flask.Flask("cookies")

    @flask_app.get("/cookies")
    def cookies() -> dict[str, str]:
        return dict(flask.request.cookies)

    event = v1_event("GET", "/cookies", headers=[("Cookie", "a=1"), ("Cookie", "b=2; c=3")])
    out = lambda_handler(flask_app)(event, Ctx())
    assert json.loads(out["body"]) == {"a": "1", "b": "2", "c": "3"}
    seen = json.loads(lambda_handler(_echo_request)(event, Ctx())["body"])
    assert [v for k, v in seen["headers"] if k == "cookie"] == ["a=1; b=2; c=3"]


def test_an_app_on_an_http_apis_named_stage_with_payload_1_0_is_served_under_it(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    """Payload 1.0's path holds an HTTP API's named stage (/prod/items/3), as does its
    requestContext.path: read as a REST API's, whose path has none, the app routed on
    /prod/items/3 and answered 404."""

    def staged(path: str) -> Any:
        event = aws_event("apigw-http-v1")
        event.update(path=f"/prod{path}", pathParameters={"proxy": path.lstrip("/")})
        event.update(queryStringParameters=None, multiValueQueryStringParameters=None)
        event["requestContext"]["path"] = f"/prod{path}"
        return event

    flask = lambda_handler(mounts.flask_app)(staged("/items/3"), Ctx())
    seen = json.loads(flask["body"])
    assert (seen["id"], seen["self_url"], seen["script_name"], seen["path_info"]) == (
        3,
        "/prod/items/3",
        "/prod",
        "/items/3",
    )
    app = hibana.App()

    @app.http("/where/")
    def where(req: hibana.Request, ctx: hibana.Context) -> str:
        return req.url

    out = lambda_handler(app)(staged("/where/"), Ctx())
    assert out["body"] == "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod/where/"
    # at a custom domain mapped to the stage, the path holds no stage
    custom = staged("/items/3")
    custom.update(path="/items/3")
    custom["requestContext"].update(path="/items/3", domainName="api.example.com")
    seen = json.loads(lambda_handler(mounts.flask_app)(custom, Ctx())["body"])
    assert (seen["self_url"], seen["script_name"]) == ("/items/3", "")


def test_an_app_at_a_custom_domains_base_path_is_served_under_it(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    """A REST API mapped at api.example.com/orders gets the base path in its path and
    requestContext.path alike (/orders/items/3), as API Gateway sends it: the app routed
    on /orders/items/3 and answered 404. Its resource and pathParameters say what the API
    routed on (/items/3)."""
    handle = lambda_handler(mounts.flask_app)
    for resource, params in (("/{proxy+}", {"proxy": "items/3"}), ("/items/{id}", {"id": "3"})):
        event = v1_event("GET", "/orders/items/3", headers=[("Host", "api.example.com")])
        event.update(resource=resource, pathParameters=params)
        event["requestContext"].update(path="/orders/items/3", domainName="api.example.com")
        seen = json.loads(handle(event, Ctx())["body"])
        assert (seen["id"], seen["self_url"], seen["script_name"], seen["path_info"]) == (
            3,
            "/orders/items/3",
            "/orders",
            "/items/3",
        )


def test_a_v1_event_names_a_rest_apis_stage_and_a_domain_without_its_port(host: Host) -> None:
    """A REST API event said stage "$default" (an HTTP API's; a REST API's stages are
    named), and its domainName, like a v2 event's, held the port ("127.0.0.1:8080"):
    API Gateway's has none. The stage is the mount's ``stage=``, or "local"."""
    name = host.url.split("//", 1)[1].rsplit(":", 1)[0]
    with host.client() as client:
        plain = client.get("/legacy/orders/7").json()["event"]["requestContext"]
        staged = client.get("/staged/orders/7").json()["event"]["requestContext"]
        v2 = client.get("/v2/x").json()["got"]["requestContext"]
        named = client.get("/v2/x", headers={"host": "api.example.com:8443"}).json()["got"]
    assert (plain["stage"], staged["stage"], v2["stage"]) == ("local", "dev", "$default")
    assert plain["domainName"] == staged["domainName"] == v2["domainName"] == name
    context = named["requestContext"]
    assert (context["domainName"], context["domainPrefix"]) == ("api.example.com", "api")
    assert named["headers"]["host"] == "api.example.com:8443"  # as the client sent it


def test_an_event_whose_body_is_no_string_is_named(lambda_handler: MakeHandler) -> None:
    """A hand-written event's ``"body": {"name": "x"}`` failed with AttributeError: 'dict'
    object has no attribute 'encode'."""
    handle = lambda_handler(_echo_request)
    for event in (v1_event("POST", "/things"), v2_event("POST", "/things")):
        event["body"] = {"name": "x"}
        with pytest.raises(hibana.aws.UnknownEvent) as info:
            handle(event, Ctx())
        assert str(info.value) == (
            "the event's body is a dict, not the string API Gateway and ALB send: write it "
            "as JSON text (json.dumps), or base64 with isBase64Encoded"
        )
