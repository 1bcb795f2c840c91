"""What the adapter tests send: a PNG body, Lambda contexts, and API Gateway v1/v2 and ALB
events built on tests/aws_events (each source's event in the shape AWS documents)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import hibana.aws

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


MakeHandler = Callable[[Any], hibana.aws.LambdaHandler]


class Ctx:
    aws_request_id = "5d37a5b7-8d1a-4a3c-9d7e-3f1f3a1d2c4b"

    def get_remaining_time_in_millis(self) -> int:
        return 2500


EVENTS = Path(__file__).parent.parent / "aws_events"


def aws_event(name: str) -> dict[str, Any]:
    """One of tests/aws_events: an event in the exact shape its source sends."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event


def v1_event(
    method: str,
    path: str,
    query: list[tuple[str, str]] | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
    binary: bool = False,
) -> dict[str, Any]:
    """tests/aws_events' REST API event, asking for this request instead."""
    mv_headers: dict[str, list[str]] = {}
    for k, v in headers or []:
        mv_headers.setdefault(k, []).append(v)
    mv_query: dict[str, list[str]] = {}
    for k, v in query or []:
        mv_query.setdefault(k, []).append(v)
    event = aws_event("apigw-rest-v1")
    context = event["requestContext"]
    event.update(
        path=path,
        httpMethod=method,
        headers={k: vs[-1] for k, vs in mv_headers.items()},
        multiValueHeaders=mv_headers,
        queryStringParameters={k: vs[-1] for k, vs in mv_query.items()} or None,
        multiValueQueryStringParameters=mv_query or None,
        pathParameters={"proxy": path.lstrip("/")},
        body=None
        if body is None
        else (base64.b64encode(body).decode() if binary else body.decode()),
        isBase64Encoded=binary,
    )
    context.update(httpMethod=method, path=f"/{context['stage']}{path}")
    return event


def v2_event(
    method: str,
    raw_path: str,
    raw_query: str = "",
    headers: dict[str, str] | None = None,
    cookies: list[str] | None = None,
    body: bytes | None = None,
    binary: bool = False,
    domain: str = "abc.execute-api.us-east-1.amazonaws.com",
) -> dict[str, Any]:
    """tests/aws_events' HTTP API event (or function URL event, for a lambda-url domain),
    asking for this request instead."""
    event = aws_event("function-url" if ".lambda-url." in domain else "apigw-http-v2")
    event.pop("cookies")
    event.pop("queryStringParameters")
    query: dict[str, list[str]] = {}
    for k, v in parse_qsl(raw_query, keep_blank_values=True):
        query.setdefault(k, []).append(v)
    event.update(
        rawPath=raw_path,
        rawQueryString=raw_query,
        headers={"host": domain, **(headers or {})},
        isBase64Encoded=binary,
    )
    if query:
        event["queryStringParameters"] = {k: ",".join(vs) for k, vs in query.items()}
    event["requestContext"].update(domainName=domain, domainPrefix=domain.split(".")[0])
    event["requestContext"]["http"].update(method=method, path=raw_path)
    if cookies:
        event["cookies"] = cookies
    if body is not None:
        event["body"] = base64.b64encode(body).decode() if binary else body.decode()
    return event


def alb_event(
    method: str,
    path: str,
    raw_query: list[tuple[str, str]],
    multi: bool,
    headers: list[tuple[str, str]],
) -> dict[str, Any]:
    """tests/aws_events' load balancer event (with or without multi-value headers),
    asking for this request instead."""
    event = aws_event("alb-multi-value" if multi else "alb")
    event.update(httpMethod=method, path=path)
    if multi:
        q: dict[str, list[str]] = {}
        for k, v in raw_query:
            q.setdefault(k, []).append(v)
        h: dict[str, list[str]] = {}
        for k, v in headers:
            h.setdefault(k, []).append(v)
        event["multiValueQueryStringParameters"] = q
        event["multiValueHeaders"] = h
    else:
        event["queryStringParameters"] = dict(raw_query)
        event["headers"] = dict(headers)
    return event
