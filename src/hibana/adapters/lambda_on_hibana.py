"""``app.lambda_handler(prefix, handler, event=...)``: an AWS Lambda handler served by hibana.

Each request becomes the event an API Gateway REST API (``"apigw-v1"``), an HTTP API
(``"apigw-v2"``) or an Application Load Balancer (``"alb"``) would send, with every field
AWS documents, and the handler's result the response that integration would make of it,
so a Lambda function runs and is tested locally. Its ``context`` follows the
invocation's deadline.

The reverse, an app on Lambda, is ``hibana.adapters.app_on_lambda``.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qsl

from hibana.adapters.app_on_lambda import TEXT_TYPES, as_text
from hibana.adapters.wsgi import server_of
from hibana.context import Context
from hibana.errors import AppError, FailedWith
from hibana.requests import Request
from hibana.responses import Response

EventFormat = Literal["apigw-v1", "apigw-v2", "alb"]
EVENT_FORMATS: tuple[str, ...] = ("apigw-v1", "apigw-v2", "alb")


def _capitalized(name: str) -> str:
    """``content-type`` as clients write it: ``Content-Type``."""
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


@dataclass
class LambdaContext:
    """What a Lambda handler gets as ``context``, filled from the invocation. Its deadline
    is on the monotonic clock (``time.monotonic()``), as the invocation's is: a step of the
    wall clock (NTP, a VM resumed) does not change the time it has left."""

    function_name: str
    aws_request_id: str
    _deadline: float
    memory_limit_in_mb: int = 1024
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/hibana"
    log_stream_name: str = "hibana"
    #: Cognito identity and mobile client context: None, as Lambda gives an HTTP event.
    identity: Any = None
    client_context: Any = None

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:local:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


#: The caller's identity fields API Gateway sends as null for an unauthenticated request.
_V1_IDENTITY_UNSET = (
    "accessKey",
    "accountId",
    "caller",
    "cognitoAuthenticationProvider",
    "cognitoAuthenticationType",
    "cognitoIdentityId",
    "cognitoIdentityPoolId",
    "principalOrgId",
    "user",
    "userArn",
)


#: The stage a REST API (v1) event names when the mount names none: a REST API's stages
#: are named (``prod``, ``dev``); ``$default`` is an HTTP API's. Not ``prod``, which code
#: that picks its settings by stage would take for production in development.
DEFAULT_STAGE = "local"

#: What API Gateway takes for a REST API's stage name.
_STAGE_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")


def checked_stage(stage: object, event: str, what: str) -> str:
    """The stage a REST API (``apigw-v1``) event of the mount ``what`` names: ``stage``,
    or ``DEFAULT_STAGE`` if None; an AppError for one API Gateway would refuse, or one
    given for an event that has no such stage (an HTTP API's is ``$default``, an ALB's
    none)."""
    if stage is None:
        return DEFAULT_STAGE
    if event != "apigw-v1":
        raise AppError(
            f"{what}: stage={stage!r} names a REST API's stage, which only an apigw-v1 "
            f"event carries; an {event} event has "
            + ("the $default stage" if event == "apigw-v2" else "no stage")
            + ": leave stage out"
        )
    if not isinstance(stage, str) or not _STAGE_NAME.fullmatch(stage):
        raise AppError(
            f"{what}: stage={stage!r} is not a stage name API Gateway takes: 1 to 128 "
            "letters, digits, hyphens and underscores (stage='prod')"
        )
    return stage


class LambdaProxy:
    """The handler of ``app.lambda_handler``: a Lambda handler behind hibana's HTTP trigger."""

    def __init__(
        self,
        fn: Callable[[dict[str, Any], Any], Any],
        event: EventFormat,
        text_types: Iterable[str] = TEXT_TYPES,
        stage: str = DEFAULT_STAGE,
    ) -> None:
        self.fn = fn
        self.event = event
        self.text_types = tuple(text_types)
        #: The REST API stage its v1 events name.
        self.stage = stage

    def __call__(self, req: Request, ctx: Context) -> Response:
        event = self.build_event(req, ctx)
        context = LambdaContext(
            ctx.function_name, ctx.invocation_id, time.monotonic() + ctx.remaining
        )
        try:
            result = self.fn(event, context)
        except Exception as exc:
            if self.event == "apigw-v2":
                raise  # an HTTP API answers 500, as hibana does for a function that fails
            # a REST API and an ALB answer a Lambda that failed as one whose result they
            # cannot read: 502, their own page
            ctx.log.exception("function raised", exc)
            raise FailedWith(_BAD_GATEWAY[self.event](), f"{type(exc).__name__}: {exc}") from None
        if isinstance(result, dict):
            for field in _IGNORED[self.event]:
                if result.get(field):
                    # AWS drops it without a word: what works here would not work there
                    ctx.log.warning(
                        f"the Lambda handler's result has {field}, which an {self.event} "
                        f"integration ignores; {_HEADERS_HOW[self.event]}",
                        ignored=field,
                    )
        try:
            return self.to_response(result)
        except MalformedResult as exc:
            if self.event == "apigw-v2":
                raise  # an HTTP API answers 500, as hibana does for a function that fails
            # a REST API's 'Malformed Lambda proxy response', an ALB's own 502 page: the
            # invocation failed, though the handler returned
            ctx.log.error("malformed Lambda result", error=str(exc), status=502)
            raise FailedWith(_BAD_GATEWAY[self.event](), f"MalformedResult: {exc}") from None

    def build_event(self, req: Request, ctx: Context) -> dict[str, Any]:
        headers = req.headers.multi_items()
        text = as_text(req.body, req.headers.get("content-type") or "", self.text_types)
        binary = text is None
        body = base64.b64encode(req.body).decode() if text is None else text
        scope = req._scope
        raw_path = (scope.get("raw_path") or req.path.encode()).decode("latin-1")
        raw_query = req.query_string
        now = time.time()
        source_ip = req.client_ip or "127.0.0.1"
        user_agent = req.headers.get("user-agent") or ""
        grouped: dict[str, list[str]] = {}
        for k, v in headers:
            grouped.setdefault(k.lower(), []).append(v)
        # what API Gateway and ALB add for every request: the address they had it from
        # appended, the scheme and the port it came in on
        peer = (scope.get("client") or (source_ip,))[0]
        grouped["x-forwarded-for"] = [", ".join([*grouped.get("x-forwarded-for", []), peer])]
        # set by AWS, whatever the client sent; here a trusted proxy's (which ended TLS),
        # or the connection's: a handler that redirects http to https looped behind one
        scheme = req.scheme
        grouped["x-forwarded-proto"] = [scheme]
        grouped["x-forwarded-port"] = [server_of(req.headers.get("host"), scope, scheme)[1]]
        query: dict[str, list[str]] = {}
        for k, v in parse_qsl(raw_query, keep_blank_values=True):
            query.setdefault(k, []).append(v)
        # API Gateway's domainName is the name the client asked for, without a port (its
        # endpoints have none)
        domain = server_of(req.headers.get("host"), scope, req.scheme)[0]
        domain_prefix = domain.split(".", 1)[0]
        if self.event == "apigw-v2":
            cookies = [
                c.strip() for c in ";".join(grouped.pop("cookie", [])).split(";") if c.strip()
            ]
            event: dict[str, Any] = {
                "version": "2.0",
                "routeKey": "$default",
                "rawPath": raw_path,
                "rawQueryString": raw_query,
                "headers": {k: ",".join(vs) for k, vs in grouped.items()},
                "requestContext": {
                    "accountId": "000000000000",
                    "apiId": "hibana",
                    "domainName": domain,
                    "domainPrefix": domain_prefix,
                    "http": {
                        "method": req.method,
                        "path": req.path,
                        "protocol": "HTTP/1.1",
                        "sourceIp": source_ip,
                        "userAgent": user_agent,
                    },
                    "requestId": ctx.invocation_id,
                    "routeKey": "$default",
                    "stage": "$default",
                    "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                    "timeEpoch": int(now * 1000),
                },
                "isBase64Encoded": binary,
            }
            if cookies:
                event["cookies"] = cookies
            if query:
                event["queryStringParameters"] = {k: ",".join(vs) for k, vs in query.items()}
            if req.body:
                event["body"] = body
            return event
        if self.event == "apigw-v1":
            # a REST API keeps the names' case; the HTTP server had them lower-cased (ASGI),
            # so they go as most clients write them: Content-Type, X-Forwarded-For
            named = {_capitalized(k): vs for k, vs in grouped.items()}
            return {
                "resource": "/{proxy+}",
                "path": req.path,
                "httpMethod": req.method,
                "headers": {k: vs[-1] for k, vs in named.items()},
                "multiValueHeaders": named,
                "queryStringParameters": {k: vs[-1] for k, vs in query.items()} or None,
                "multiValueQueryStringParameters": query or None,
                "pathParameters": {"proxy": req.path.lstrip("/")},
                "stageVariables": None,
                "requestContext": {
                    "accountId": "000000000000",
                    "apiId": "hibana",
                    "domainName": domain,
                    "domainPrefix": domain_prefix,
                    "extendedRequestId": ctx.invocation_id,
                    "httpMethod": req.method,
                    "identity": {
                        **dict.fromkeys(_V1_IDENTITY_UNSET),
                        "sourceIp": source_ip,
                        "userAgent": user_agent,
                    },
                    "path": req.path,
                    "protocol": "HTTP/1.1",
                    "requestId": ctx.invocation_id,
                    "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                    "requestTimeEpoch": int(now * 1000),
                    "resourceId": "hibana",
                    "resourcePath": "/{proxy+}",
                    "stage": self.stage,
                },
                "body": body if req.body else None,
                "isBase64Encoded": binary,
            }
        raw_params: dict[str, list[str]] = {}
        for part in raw_query.split("&") if raw_query else ():
            k, _, v = part.partition("=")
            raw_params.setdefault(k, []).append(v)
        return {
            "requestContext": {
                "elb": {
                    "targetGroupArn": "arn:aws:elasticloadbalancing:local:"
                    "000000000000:targetgroup/hibana/0000000000000000"
                }
            },
            "httpMethod": req.method,
            "path": raw_path,
            "queryStringParameters": {k: vs[-1] for k, vs in raw_params.items()},
            "headers": {k: vs[-1] for k, vs in grouped.items()},
            "body": body,
            "isBase64Encoded": binary,
        }

    def to_response(self, result: Any) -> Response:
        """The response AWS makes of ``result``; MalformedResult if it would refuse it."""
        if not isinstance(result, dict) or "statusCode" not in result:
            if self.event == "apigw-v2":
                # HTTP API: a value without statusCode is a 200 whose body is that value as
                # the Lambda runtime encoded it (a str is "hello", quotes and all)
                return Response(_runtime_json(result), 200, None, _JSON)
            raise MalformedResult(
                f"the Lambda handler returned {type(result).__name__}, not a dict with "
                f"statusCode, as a {self.event} integration needs"
            )
        headers: list[tuple[str, str]] = []
        for k, v in _field(result, "headers", dict).items():
            if isinstance(v, list | dict):
                raise MalformedResult(
                    f"the Lambda handler's headers[{k!r}] is a {type(v).__name__}, not a "
                    f"string; {_HEADERS_HOW[self.event]}"
                )
            headers.append((str(k), str(v)))
        if self.event == "apigw-v2":  # payload 2.0 has no multiValueHeaders: cookies instead
            headers.extend(("set-cookie", str(c)) for c in _field(result, "cookies", list))
        else:  # and payload 1.0 and an ALB have no cookies
            for k, vs in _field(result, "multiValueHeaders", dict).items():
                if not isinstance(vs, list):
                    raise MalformedResult(
                        f"the Lambda handler's multiValueHeaders[{k!r}] is a "
                        f"{type(vs).__name__}, not a list of strings (write [{vs!r}])"
                    )
                seen = {v for hk, v in headers if hk.lower() == str(k).lower()}
                headers.extend((str(k), str(v)) for v in vs if str(v) not in seen)
        body = result.get("body") or ""
        if not isinstance(body, str):
            raise MalformedResult(
                f"the Lambda handler's result has a {type(body).__name__} body; a "
                f"{self.event} integration takes a string (json.dumps it, or base64 with "
                "isBase64Encoded)"
            )
        try:
            status = int(result["statusCode"])
        except (TypeError, ValueError):
            raise MalformedResult(
                f"the Lambda handler's statusCode {result['statusCode']!r} is not a number"
            ) from None
        if not 200 <= status <= 599:
            raise MalformedResult(
                f"the Lambda handler's statusCode {result['statusCode']!r} is not an HTTP "
                "status from 200 to 599"
            )
        try:
            raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
        except ValueError as exc:  # binascii.Error
            raise MalformedResult(
                f"the Lambda handler's body is not base64, yet isBase64Encoded: {exc}"
            ) from None
        return Response(raw, status, headers)


def _runtime_json(value: Any) -> str:
    """``value`` as the Lambda Python runtime encodes a handler's result: ``json.dumps``'
    text, with a ``Decimal`` (what DynamoDB reads numbers as) the number it holds, digit
    for digit (``Decimal("19.90")`` is ``19.90``), and a NaN one ``NaN``."""
    numbers: list[str] = []
    mark = f"decimal-{secrets.token_hex(8)}-"  # no string of the value's own holds it

    def placeholder(obj: Any) -> str:
        if not isinstance(obj, Decimal):
            held = "" if obj is value else f" holding a {type(obj).__name__}"
            raise TypeError(
                f"the Lambda handler returned a {type(value).__name__}{held}, which the "
                "Lambda runtime cannot encode as JSON (Runtime.MarshalError); make it a "
                "str, number, list or dict"
            )
        numbers.append("NaN" if obj.is_nan() else str(obj))
        return f"{mark}{len(numbers) - 1}"

    text = json.dumps(value, ensure_ascii=False, default=placeholder)
    if not numbers:
        return text
    return re.sub(f'"{mark}([0-9]+)"', lambda m: numbers[int(m[1])], text)


def _field(result: dict[str, Any], name: str, kind: type[dict[Any, Any] | list[Any]]) -> Any:
    """``result[name]``, an empty one if it is missing or null; MalformedResult if it is
    not a ``kind`` (a JSON object or array)."""
    value = result.get(name)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        shape = "an object" if kind is dict else "a list"
        raise MalformedResult(
            f"the Lambda handler's {name} is a {type(value).__name__}, not {shape}"
        )
    return value


class MalformedResult(TypeError):
    """A Lambda handler's result that its integration cannot turn into a response."""


_JSON = "application/json"
#: The fields of a result an integration does not read, and how to say it instead.
_IGNORED: dict[str, tuple[str, ...]] = {
    "apigw-v1": ("cookies",),
    "apigw-v2": ("multiValueHeaders",),
    "alb": ("cookies",),
}
_HEADERS_HOW = {
    "apigw-v1": "put each Set-Cookie in multiValueHeaders",
    "apigw-v2": "put each Set-Cookie in cookies, and other repeated values in headers, "
    "joined with commas",
    "alb": "put each Set-Cookie in multiValueHeaders (with the target group's multi-value "
    "headers on)",
}
#: What AWS answers for a Lambda that raised or a MalformedResult, by integration (an
#: HTTP API's is a 500).
_BAD_GATEWAY: dict[str, Callable[[], Response]] = {
    "apigw-v1": lambda: Response.json({"message": "Internal server error"}, 502),
    "alb": lambda: Response.html(
        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
        "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n",
        502,
    ),
}
