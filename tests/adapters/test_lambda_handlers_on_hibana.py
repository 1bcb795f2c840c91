"""Lambda handlers served by hibana (app.lambda_handler): the events they get have every
field AWS documents (and a stage= of their mount is one API Gateway takes), and their
results are read as each integration reads them."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import hibana.aws
from tests.adapters.payloads import (
    PNG,
    aws_event,
)
from tests.hosts import Host


def _missing(documented: dict[str, Any], built: dict[str, Any], at: str = "") -> list[str]:
    """The keys of an event AWS documents that an event hibana built lacks (the maps of
    headers and parameters hold the request's own keys, so they are not compared)."""
    maps = {"headers", "multiValueHeaders", "queryStringParameters"}
    maps |= {"multiValueQueryStringParameters", "pathParameters"}
    gaps = []
    for key, value in documented.items():
        if key not in built:
            gaps.append(at + key)
        elif isinstance(value, dict) and key not in maps and isinstance(built[key], dict):
            gaps += _missing(value, built[key], f"{at}{key}.")
    return gaps


def test_the_events_hibana_builds_have_every_field_aws_documents(host: Host) -> None:
    with host.client() as client:
        v1 = client.get("/legacy/orders/7?a=1").json()["event"]
        alb = client.get("/alb/orders/7?a=1").json()["event"]
        v2 = client.post("/v2/x?a=1", content=b"{}", headers={"cookie": "s=1"}).json()["got"]
    assert _missing(aws_event("apigw-rest-v1"), v1) == []
    assert _missing(aws_event("alb"), alb) == []
    assert _missing(aws_event("apigw-http-v2"), v2) == []


def test_a_lambda_result_whose_body_is_no_string_is_a_500_naming_it(host: Host) -> None:
    r = httpx.get(host.url + "/v2/dict-body")
    assert r.status_code == 500
    line = host.wait_for_log(msg="function raised", invocation_id=r.headers["x-invocation-id"])
    assert (
        "the Lambda handler's result has a dict body; a apigw-v2 integration takes a string"
        in (line["error"])
    )


def test_a_lambda_result_is_read_as_its_integration_reads_it(host: Host) -> None:
    """A str returned for an HTTP API came back as 'hello' labelled application/json; AWS
    JSON-encodes it. A result a REST API or an ALB cannot read was hibana's 500, not AWS's
    502."""
    with host.client() as client:
        for case, body in [("str", b'"hello"'), ("none", b"null"), ("no-status", None)]:
            r = client.get(f"/bare-apigw-v2/{case}")
            assert r.status_code == 200 and r.headers["content-type"] == "application/json"
            assert r.content == (body or json.dumps({"body": "no statusCode"}).encode())
        for case, why in [
            ("str", "the Lambda handler returned str, not a dict with statusCode"),
            ("none", "the Lambda handler returned NoneType, not a dict with statusCode"),
            ("no-status", "the Lambda handler returned dict, not a dict with statusCode"),
            ("dict-body", "the Lambda handler's result has a dict body"),
            # these were a Set-Cookie for each character, a header ['a', 'b'], hibana's 500
            (
                "multi-value-str",
                "the Lambda handler's multiValueHeaders['Set-Cookie'] is a str, not a list of "
                "strings (write ['a=1'])",
            ),
            ("header-list", "the Lambda handler's headers['x-tags'] is a list, not a string"),
            ("status-999", "the Lambda handler's statusCode 999 is not an HTTP status from 200"),
        ]:
            rest = client.get(f"/bare-apigw-v1/{case}")
            assert rest.status_code == 502, rest.text
            assert rest.json() == {"message": "Internal server error"}  # API Gateway's own
            alb = client.get(f"/bare-alb/{case}")
            assert alb.status_code == 502 and alb.headers["content-type"].startswith("text/html")
            assert "<title>502 Bad Gateway</title>" in alb.text
            for r in (rest, alb):  # the log says why, as API Gateway's execution log does
                line = host.wait_for_log(
                    msg="malformed Lambda result", invocation_id=r.headers["x-invocation-id"]
                )
                assert line["error"].startswith(why)


def test_a_lambda_result_answered_502_is_a_failed_invocation(host: Host) -> None:
    """The handler returned, but its integration could not read what: the invocation
    failed. Its line said "outcome": "ok" and no error was counted."""

    def errors() -> dict[str, int]:
        functions = host.status()["functions"]
        return {f["name"]: f["errors"] for f in functions if f["name"].startswith("lambda_bare")}

    before = errors()
    for event, function in [("apigw-v1", "lambda_bare_apigw_v1"), ("alb", "lambda_bare_alb")]:
        r = httpx.get(f"{host.url}/bare-{event}/str")
        assert r.status_code == 502
        line = host.wait_for_log(msg="invocation", invocation_id=r.headers["x-invocation-id"])
        assert (line["function"], line["level"], line["outcome"], line["status"]) == (
            function,
            "error",
            "error",
            502,
        )
        assert line["error"] == (
            "MalformedResult: the Lambda handler returned str, not a dict with statusCode, "
            f"as a {event} integration needs"
        )
        assert errors()[function] == before[function] + 1


def test_decimals_in_an_http_api_result_are_numbers_as_the_lambda_runtime_writes_them(
    host: Host,
) -> None:
    """DynamoDB reads numbers as Decimal: the Lambda runtime writes them as JSON numbers,
    digit for digit; hibana's json.dumps refused them (a 500)."""
    r = httpx.get(host.url + "/bare-apigw-v2/decimal")
    assert (r.status_code, r.headers["content-type"]) == (200, "application/json")
    assert r.text == '{"item": {"price": 19.90, "stock": 3}}'
    # what the runtime cannot encode either is a 500 whose log line names it
    for case, said in [("a-set", "a dict holding a set"), ("only-a-set", "a set")]:
        bad = httpx.get(f"{host.url}/bare-apigw-v2/{case}")
        assert bad.status_code == 500
        invocation_id = bad.headers["x-invocation-id"]
        line = host.wait_for_log(msg="function raised", invocation_id=invocation_id)
        assert (
            f"the Lambda handler returned {said}, which the Lambda runtime cannot"
            in (line["error"])
        )


@pytest.mark.parametrize(
    ("event", "cookies", "ignored", "fix"),
    [
        ("apigw-v2", ["from-cookies=1"], "multiValueHeaders", "put each Set-Cookie in cookies"),
        ("apigw-v1", ["from-multi=1", "from-multi=2"], "cookies", "in multiValueHeaders"),
        ("alb", ["from-multi=1", "from-multi=2"], "cookies", "in multiValueHeaders"),
    ],
)
def test_a_result_field_its_integration_ignores_is_ignored_and_named(
    host: Host, event: str, cookies: list[str], ignored: str, fix: str
) -> None:
    """An HTTP API reads cookies and no multiValueHeaders, a REST API and an ALB the
    reverse: both were honoured, so cookies set here were lost on AWS."""
    r = httpx.get(f"{host.url}/bare-{event}/both-cookie-fields")
    assert (r.status_code, r.text) == (200, "ok")
    assert r.headers.get_list("set-cookie") == cookies
    line = host.wait_for_log(level="warning", invocation_id=r.headers["x-invocation-id"])
    assert line["msg"].startswith(
        f"the Lambda handler's result has {ignored}, which an {event} integration ignores; "
    )
    assert fix in line["msg"]


def test_a_lambda_handler_that_raises_is_answered_as_its_integration_answers(
    host: Host,
) -> None:
    """A REST API and an ALB answer 502 for a Lambda that failed (an HTTP API 500): it was
    hibana's 500 for all three."""
    with host.client() as client:
        rest = client.get("/bare-apigw-v1/raises")
        alb = client.get("/bare-alb/raises")
        http_api = client.get("/bare-apigw-v2/raises")
    assert (rest.status_code, rest.json()) == (502, {"message": "Internal server error"})
    assert alb.status_code == 502 and "<title>502 Bad Gateway</title>" in alb.text
    assert http_api.status_code == 500
    for r in (rest, alb, http_api):
        invocation_id = r.headers["x-invocation-id"]
        raised = host.wait_for_log(msg="function raised", invocation_id=invocation_id)
        assert raised["error"] == "RuntimeError: the orders table is gone"
        assert 'raise RuntimeError("the orders table is gone")' in raised["traceback"]
        line = host.wait_for_log(msg="invocation", invocation_id=invocation_id)
        assert (line["outcome"], line["status"]) == ("error", r.status_code)
        assert line["error"] == "RuntimeError: the orders table is gone"


def test_a_lambda_handler_behind_hibana_gets_a_real_v1_event(host: Host) -> None:
    r = httpx.get(
        host.url + "/legacy/orders/7?a=1&a=2",
        headers=[("X-H", "x"), ("X-H", "y"), ("X-Forwarded-Proto", "https")],  # a client's lie
    )
    assert r.status_code == 201
    assert r.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert r.headers.get_list("x-multi") == ["1", "2"]
    got = r.json()
    event = got["event"]
    assert event["httpMethod"] == "GET" and event["path"] == "/legacy/orders/7"
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"]}
    # a REST API keeps names' case (as clients write them), and adds the forwarding ones
    assert event["multiValueHeaders"]["X-H"] == ["x", "y"]
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert event["headers"]["X-Forwarded-Proto"] == "http"
    assert event["headers"]["X-Forwarded-Port"] == host.url.rsplit(":", 1)[1]
    assert got["request_id"] == r.headers["x-invocation-id"]
    assert 0 < got["remaining_ms"] <= 5000
    # the attributes of the context object AWS documents for Python
    documented = {
        "aws_request_id",
        "client_context",
        "function_name",
        "function_version",
        "get_remaining_time_in_millis",
        "identity",
        "invoked_function_arn",
        "log_group_name",
        "log_stream_name",
        "memory_limit_in_mb",
    }
    assert documented <= set(got["context"])
    assert (got["identity"], got["client_context"]) == (None, None)


def test_a_lambda_mounts_stage_is_one_api_gateway_takes_for_a_v1_event() -> None:
    app = hibana.App()

    def handler(event: Any, context: Any) -> Any:
        return {}

    for stage, event, said in [
        ("pr/1", "apigw-v1", "stage='pr/1' is not a stage name API Gateway takes: 1 to 128"),
        ("$default", "apigw-v1", "stage='$default' is not a stage name API Gateway takes"),
        ("dev", "apigw-v2", "an apigw-v2 event has the $default stage: leave stage out"),
        ("dev", "alb", "an alb event has no stage: leave stage out"),
    ]:
        with pytest.raises(hibana.AppError) as info:
            app.lambda_handler("/l", handler, event=event, stage=stage)
        assert said in str(info.value)
    assert not app.functions


def test_a_lambda_handler_behind_hibana_gets_a_real_v2_event(host: Host) -> None:
    r = httpx.post(
        host.url + "/v2/x?a=1&a=2",
        content=b'{"k": 1}',
        headers={"content-type": "application/json", "cookie": "s=1; t=2"},
    )
    event = r.json()["got"]
    assert event["rawQueryString"] == "a=1&a=2" and event["cookies"] == ["s=1", "t=2"]
    assert event["body"] == '{"k": 1}' and event["isBase64Encoded"] is False
    png = httpx.get(host.url + "/v2/png")
    assert png.content == PNG and png.headers["content-type"] == "image/png"
    assert png.headers.get_list("set-cookie") == ["c=3", "d=4"]


def test_a_lambda_handlers_time_left_does_not_follow_a_step_of_the_wall_clock(
    host: Host,
) -> None:
    """The context kept a wall-clock deadline: once the clock stepped an hour on, the
    handler was told it had no time left (and one stepped back, an hour too much)."""
    r = httpx.get(host.url + "/clock-step/now")
    assert r.status_code == 200
    assert 0 < r.json()["remaining_ms"] <= 5000
