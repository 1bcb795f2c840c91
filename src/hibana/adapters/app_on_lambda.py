"""``hibana.aws.handler(app)``: a hibana App, an ASGI app or a WSGI app on AWS Lambda.

The handler understands the events of API Gateway REST APIs (v1, and HTTP APIs' payload
1.0), HTTP APIs (payload 2.0), Lambda Function URLs and Application Load Balancers (with
and without multi-value headers), and answers in the shape each expects. Repeated query
parameters, repeated headers and several ``Set-Cookie`` survive both ways; bodies whose
content type is not text travel base64-encoded; paths and queries are decoded exactly
once. The Lambda context's remaining time becomes the invocation's deadline, its request
id the invocation id, and ``traceparent`` is continued, or else the X-Ray trace the Lambda
runtime gives the invocation (``_X_AMZN_TRACE_ID``), or else the request's ``X-Amzn-Trace-Id``.

The reverse, a Lambda handler served by hibana, is ``hibana.adapters.lambda_on_hibana``.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
import os
import re
import time
from collections.abc import Iterable, MutableMapping
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, unquote, urlencode

from hibana.adapters.asgi import ASGIApp, AsgiMount, asgi2_as_3, lifespans
from hibana.adapters.wsgi import wsgi_to_asgi
from hibana.declarations import not_two
from hibana.telemetry.trace import TraceContext, new_span_id

#: Content types sent as text; anything else is base64-encoded (images, PDFs, archives).
TEXT_TYPES: tuple[str, ...] = (
    "text/",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/x-www-form-urlencoded",
    "application/graphql",
    "image/svg+xml",
    "+json",
    "+xml",
)
_SHAPES = (
    "API Gateway REST (v1) and HTTP API payload 1.0 (httpMethod, path, requestContext), "
    "HTTP API payload 2.0 and Lambda Function URLs (version 2.0, rawPath, "
    "requestContext.http), and Application Load Balancer (requestContext.elb)"
)


class UnknownEvent(ValueError):
    """An event that is none of the HTTP event shapes hibana understands."""


def is_text(content_type: str, text_types: Iterable[str]) -> bool:
    """Whether a body of ``content_type`` travels as text (else base64)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if not media:
        return True
    return any(
        media.startswith(t)
        if t.endswith("/")
        else (media.endswith(t) if t.startswith("+") else media == t)
        for t in text_types
    )


def as_text(body: bytes, content_type: str, text_types: Iterable[str]) -> str | None:
    """``body`` as the text an event carries, or None: it goes base64-encoded (a binary
    type, or text in a charset other than UTF-8, which a JSON string would garble)."""
    if not body:
        return ""
    if not is_text(content_type, text_types):
        return None
    try:
        return body.decode()
    except UnicodeDecodeError:
        return None


def _shape(event: Any) -> tuple[str, bool]:
    """(format, multi-value) of an event, or UnknownEvent naming the shapes understood."""
    if not isinstance(event, dict):
        raise UnknownEvent(
            f"a Lambda event of type {type(event).__name__}; hibana understands {_SHAPES}"
        )
    if event.get("type") in ("REQUEST", "TOKEN") and ("methodArn" in event or "routeArn" in event):
        # an API Gateway Lambda authorizer's event carries the request too (REQUEST), so it
        # was served as one, and its answer (statusCode, body) was no policy API Gateway reads
        raise UnknownEvent(
            f"an API Gateway Lambda authorizer event (type {event['type']}) is not an HTTP "
            "request to serve: hibana.aws.handler answers proxy integrations "
            f"({_SHAPES}); write the authorizer as a Lambda handler of its own, returning a "
            "policy document (or {'isAuthorized': ...} for an HTTP API's simple responses)"
        )
    context = event.get("requestContext")
    if isinstance(context, dict) and "elb" in context:
        return "alb", "multiValueHeaders" in event
    if event.get("version") == "2.0" and isinstance(context, dict) and "http" in context:
        return "apigw-v2", True
    if "httpMethod" in event and isinstance(context, dict):
        return "apigw-v1", True
    raise UnknownEvent(
        f"an event with keys {', '.join(sorted(map(str, event))[:12]) or '(none)'} is not an "
        f"HTTP event hibana understands: {_SHAPES}"
    )


def _to_scope(event: dict[str, Any], shape: str, multi: bool) -> tuple[dict[str, Any], bytes]:
    headers: list[tuple[str, str]] = []
    root_path = ""
    if shape == "apigw-v2":
        http = event["requestContext"]["http"]
        method = http["method"]
        raw_path = event.get("rawPath") or http.get("path") or "/"
        path = unquote(raw_path)
        root_path = _named_stage(event["requestContext"], raw_path)
        query = event.get("rawQueryString") or ""
        for k, v in (event.get("headers") or {}).items():
            headers.append((k.lower(), v))
        if event.get("cookies"):
            headers.append(("cookie", "; ".join(event["cookies"])))
        client = http.get("sourceIp")
    else:
        method = event["httpMethod"]
        if shape == "alb":  # the load balancer passes path and query as they came
            raw_path = event.get("path") or "/"
            path = unquote(raw_path)
            params = event.get("multiValueQueryStringParameters") if multi else None
            if params is None:
                params = {k: [v] for k, v in (event.get("queryStringParameters") or {}).items()}
            query = "&".join(
                f"{k}={v}" for k, vs in params.items() for v in vs or () if v is not None
            )
        else:  # API Gateway decoded them; encode once for the raw forms
            path = event.get("path") or "/"
            context = event["requestContext"]
            root_path = _stage_prefix(context.get("path"), path)
            if root_path:
                path = root_path + path  # as ASGI has it: the path holds its root_path
            else:
                # an HTTP API's (payload 1.0) named stage is in the path already, as in
                # rawPath (2.0): /prod/items/9; so is a custom domain's base path mapping
                root_path = _named_stage(context, path) or _stage_prefix(
                    path, _resource_path(event)
                )
            raw_path = quote(path)
            params = event.get("multiValueQueryStringParameters")
            if params is None:
                params = {k: [v] for k, v in (event.get("queryStringParameters") or {}).items()}
            # a null value (a hand-written test event) is no parameter: it became "None"
            query = urlencode(
                [(k, v) for k, vs in params.items() for v in vs or () if v is not None]
            )
        multi_headers = event.get("multiValueHeaders") if multi else None
        if multi_headers:
            headers = [(k.lower(), v) for k, vs in multi_headers.items() for v in vs or ()]
        else:
            headers = [(k.lower(), v) for k, v in (event.get("headers") or {}).items()]
        if shape == "alb":
            # the load balancer appends the address that connected to it: the last one
            forwarded = [v for k, v in headers if k == "x-forwarded-for"]
            client = forwarded[-1].rsplit(",", 1)[-1].strip() if forwarded else None
        else:
            client = (event["requestContext"].get("identity") or {}).get("sourceIp")
    # a header whose value is null (a hand-written test event, a proxy's mapping of a
    # header it lacks) is no header: it became the text "None"
    headers = [(k, v) for k, v in headers if v is not None]
    cookies = [v for k, v in headers if k == "cookie"]
    if len(cookies) > 1:
        # a REST API's multiValueHeaders may hold several: one header of them all, joined
        # as v2's cookies are (RFC 9113 8.2.3); a WSGI environ joined them with commas
        # (a=1,b=2 is one cookie), and Starlette reads the first
        headers = [(k, v) for k, v in headers if k != "cookie"]
        headers.append(("cookie", "; ".join(cookies)))
    body = event.get("body") or ""
    if not isinstance(body, str):  # a hand-written event's {"name": "x"}; AWS sends text
        raise UnknownEvent(
            f"the event's body is a {type(body).__name__}, not the string API Gateway and "
            "ALB send: write it as JSON text (json.dumps), or base64 with isBase64Encoded"
        )
    encoded = event.get("isBase64Encoded")
    if isinstance(encoded, str):  # a hand-written or templated event's "false" is no yes
        encoded = encoded.strip().lower() == "true"
    raw_body = base64.b64decode(body) if encoded else body.encode()
    if raw_body and not any(k == "content-length" for k, _ in headers):
        headers.append(("content-length", str(len(raw_body))))  # WSGI apps read by it
    host = next((v for k, v in headers if k == "host"), "lambda")
    scheme = next((v for k, v in headers if k == "x-forwarded-proto"), "https")
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method.upper(),
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path.encode(),
        "root_path": root_path,
        "query_string": query.encode(),
        "headers": [(k.encode("latin-1"), _value_bytes(str(v))) for k, v in headers],
        "client": (client, 0) if client else None,
        "server": (host.split(":")[0], 443 if scheme == "https" else 80),
    }
    return scope, raw_body


def _stage_prefix(asked: Any, path: str | None) -> str:
    """What the path the client asked for (``requestContext.path``: ``/prod/items/9`` at a
    REST API's execute-api URL) has before the ``path`` the event routes on (``/items/9``):
    the stage (or a custom domain's base path), which the app is served under, so that the
    URLs it builds (redirects, ``url_for``, FastAPI's docs) keep it. "" when the two paths
    are one."""
    if not isinstance(asked, str) or path is None or asked == path:
        return ""
    for form in (asked, unquote(asked)):
        if form.endswith(path):
            prefix = form[: -len(path)]
        elif path == "/":  # the stage's own root: /prod, not /prod/
            prefix = form
        else:
            continue
        if prefix.startswith("/") and not prefix.endswith("/"):
            return prefix
    return ""


def _resource_path(event: dict[str, Any]) -> str | None:
    """The path the API routed on: its ``resource`` (``/items/{id}``, ``/{proxy+}``) with
    the ``pathParameters`` it matched. A custom domain's base path mapping (``/orders``)
    begins the event's ``path`` (``/orders/items/9``) and not this one (``/items/9``).
    None if the parameters do not fill it."""
    resource = event.get("resource")
    if not isinstance(resource, str) or not resource.startswith("/"):
        return None
    params = event.get("pathParameters") or {}
    for name, value in params.items() if isinstance(params, dict) else ():
        if isinstance(value, str):
            resource = resource.replace(f"{{{name}+}}", value).replace(f"{{{name}}}", value)
    return None if "{" in resource else resource


def _named_stage(context: dict[str, Any], raw_path: str) -> str:
    """``/prod``, when an HTTP API's stage of that name begins ``rawPath`` (payload 2.0)
    or ``path`` (1.0): at its execute-api URL the client asks for ``/prod/items/9``, and
    the path holds the stage (as a REST API's does not), which the app is served under.
    "" for the ``$default`` stage and a Function URL (served at the root), and at a custom
    domain (its mapping picks the stage, and the path holds none)."""
    stage, domain = context.get("stage"), context.get("domainName")
    if not isinstance(stage, str) or stage in ("", "$default") or "/" in stage:
        return ""
    if not isinstance(domain, str) or ".execute-api." not in domain:
        return ""
    prefix = "/" + stage
    return prefix if raw_path == prefix or raw_path.startswith(prefix + "/") else ""


def _value_bytes(value: str) -> bytes:
    """A header value as the client sent it: Latin-1, as HTTP has it, or the UTF-8 that
    API Gateway decoded (``x-name: 日本``)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def _xray_trace(amzn: str | None) -> TraceContext | None:
    """The trace of X-Ray's ``X-Amzn-Trace-Id: Root=1-<8>-<24>;Parent=<16>;Sampled=1``:
    its Root is the trace id, its Parent (when there is one: an ALB, API Gateway's own
    requests send none) the caller's span. None without a Root of exactly that shape."""
    if not amzn:
        return None
    parts: dict[str, str] = {}
    for part in amzn.split(";"):
        key, has, value = part.partition("=")
        if has:
            parts[key.strip()] = value.strip()
    root = _ROOT(parts.get("Root", ""))
    if root is None:  # "1-5759e98-8bd8...", "2-...": no X-Ray trace id to go on with
        return None
    trace_id = (root[1] + root[2]).lower()
    if trace_id == "0" * 32:
        return None
    parent = parts.get("Parent", "").lower()
    # a Parent that does not read is none: the trace goes on from its Root
    caller = parent if _SPAN_ID(parent) and parent != "0" * 16 else None
    return TraceContext(trace_id, new_span_id(), caller, parts.get("Sampled") == "1")


#: X-Ray's trace id: version 1, the epoch seconds in 8 hex digits, 24 random ones.
_ROOT = re.compile(r"1-([0-9a-fA-F]{8})-([0-9a-fA-F]{24})").fullmatch
_SPAN_ID = re.compile(r"[0-9a-fA-F]{16}").fullmatch


async def _run(
    asgi: ASGIApp, scope: dict[str, Any], body: bytes
) -> tuple[int, list[tuple[str, str]], bytes]:
    sent = False
    complete = False
    status = 500
    headers: list[tuple[str, str]] = []
    chunks: list[bytes] = []

    answered = asyncio.Event()

    async def receive() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        # Lambda's client stays until the answer: a disconnect now would make an app that
        # listens for one (Starlette's StreamingResponse) stop its stream half way
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status, complete
        if message["type"] == "http.response.start":
            status = int(message["status"])
            headers.extend(
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])
            )
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))
            complete = not message.get("more_body", False)
            if complete:
                answered.set()

    try:
        await asgi(scope, receive, send)
    except Exception:
        if not complete:
            raise  # no whole response to give: the invocation fails (API Gateway: 502)
        # as an ASGI server does: the client has its answer, the log has the error
        logging.getLogger("hibana.aws").exception(
            "the app raised after its whole response; the response stands"
        )
    return status, headers, b"".join(chunks)


def _result(
    shape: str,
    multi: bool,
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    text_types: Iterable[str],
) -> dict[str, Any]:
    content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
    text = as_text(body, content_type, text_types)
    out: dict[str, Any] = {
        "statusCode": status,
        "body": base64.b64encode(body).decode() if text is None else text,
        "isBase64Encoded": text is None,
    }
    grouped: dict[str, list[str]] = {}
    for k, v in headers:
        grouped.setdefault(k.lower(), []).append(v)
    if shape == "apigw-v2":
        out["cookies"] = grouped.pop("set-cookie", [])
        out["headers"] = {k: ", ".join(vs) for k, vs in grouped.items()}
    elif shape == "apigw-v1":
        # API Gateway merges the two maps: single values in one, repeated ones in the other
        out["headers"] = {k: vs[0] for k, vs in grouped.items() if len(vs) == 1}
        out["multiValueHeaders"] = {k: vs for k, vs in grouped.items() if len(vs) > 1}
    else:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        out["statusDescription"] = f"{status} {phrase}".strip()
        if multi:
            out["multiValueHeaders"] = grouped
        else:
            # one value a name: repeated ones joined, as RFC 9110 allows for all but cookies
            cookies = grouped.pop("set-cookie", None)
            out["headers"] = {k: ", ".join(vs) for k, vs in grouped.items()}
            if cookies is not None:
                out["headers"]["set-cookie"] = cookies[-1]
                if len(cookies) > 1:
                    logging.getLogger("hibana.aws").warning(
                        "the response sets %d cookies, and an ALB target group without "
                        "multi-value headers passes one: only the last is sent; turn on "
                        "the target group's lambda.multi_value_headers.enabled to send all",
                        len(cookies),
                    )
    return out


def _as_asgi(app: Any) -> tuple[ASGIApp, list[AsgiMount]]:
    """The ASGI callable for a hibana App, an ASGI app or a WSGI app; and the lifespans
    to start."""
    from hibana.app import App

    if isinstance(app, App):
        from hibana.dispatcher import Dispatcher
        from hibana.runtimes.python import FunctionThreads
        from hibana.telemetry.log_sink import LogSink
        from hibana.triggers.http import HttpFront

        dispatcher = Dispatcher(
            FunctionThreads(8), concurrency_wait=1.0, cancel_grace=1.0, on_stuck=lambda inv: None
        )
        front = HttpFront(
            app, dispatcher, LogSink(1), max_body_bytes=6 * 1024 * 1024, body_timeout=30.0
        )
        mounts = {id(s.handler): s.handler for s in app.functions}
        return front, lifespans(m for m in mounts.values() if isinstance(m, AsgiMount))
    asgi2 = asgi2_as_3(app)
    if asgi2 is not None:  # a class, which the checks below took for a WSGI app
        return asgi2, [AsgiMount(asgi2, "")]
    if (
        inspect.iscoroutinefunction(app)
        or inspect.iscoroutinefunction(type(app).__call__)
        # a def that returns the coroutine (middleware often is): ASGI's three arguments
        # bind to it, WSGI's two do not
        or (callable(app) and not_two(app, 3) is None and not_two(app, 2) is not None)
    ):
        return app, [AsgiMount(app, "")]
    if callable(app):
        return wsgi_to_asgi(app), []
    raise TypeError(
        f"hibana.aws.handler() takes a hibana App, an ASGI app or a WSGI app, not {app!r}"
    )


def handler(app: Any, *, text_types: Iterable[str] = TEXT_TYPES) -> LambdaHandler:
    """A Lambda handler (``handler(event, context)``) that serves ``app``."""
    return LambdaHandler(app, text_types)


class LambdaHandler:
    """``handler(event, context)`` for Lambda, serving one app on its own event loop, which
    lives as long as the handler (Lambda reuses a warm process). ``close()`` ends the
    app's lifespan and the loop, for a process that goes on without it (tests, scripts)."""

    def __init__(self, app: Any, text_types: Iterable[str] = TEXT_TYPES) -> None:
        from hibana.app import App

        self._asgi, self._mounts = _as_asgi(app)
        #: The app is hibana's: it takes the invocation's id, deadline and trace from
        #: Lambda (in the scope's ``hibana.given``). Another app's scope is ASGI's alone.
        self._gives = isinstance(app, App)
        #: A bare ASGI app's own lifespan, whose state its requests get.
        self._own = next((m for m in self._mounts if m.app is self._asgi), None)
        self._types = tuple(text_types)
        self._loop = asyncio.new_event_loop()
        self._started = False

    def close(self) -> None:
        loop = self._loop
        if loop.is_closed():
            return
        if self._started:
            for mount in self._mounts:
                loop.run_until_complete(mount.shutdown())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        loop = self._loop
        if loop.is_closed():
            raise RuntimeError("this Lambda handler was closed; make a new one")
        shape, multi = _shape(event)
        scope, body = _to_scope(event, shape, multi)
        if not self._started:
            for mount in self._mounts:
                failed = loop.run_until_complete(mount.startup())
                if failed is not None:
                    raise RuntimeError(f"the app's lifespan startup failed: {failed}")
            self._started = True
        if self._gives:
            scope["hibana.given"] = _given(scope, context)
        elif self._own is not None:
            scope["state"] = self._own.request_state()
        status, headers, out = loop.run_until_complete(_run(self._asgi, scope, body))
        if scope["method"] == "HEAD":
            # no body answers a HEAD (RFC 9110 9.3.2), whatever the app wrote; its
            # Content-Length, the GET's, stays: a client sizes a download by it, and a
            # large one would have failed the invocation (Lambda's 6 MB result)
            out = b""
        return _result(shape, multi, status, headers, out, self._types)


def _given(scope: dict[str, Any], context: Any) -> dict[str, Any]:
    """What hibana's HTTP trigger takes from Lambda: the invocation's id, its deadline, and
    the trace (X-Ray's, when no traceparent is given)."""
    given: dict[str, Any] = {}
    request_id = getattr(context, "aws_request_id", None)
    if request_id:
        given["invocation_id"] = str(request_id).replace("-", "")
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        given["deadline"] = time.monotonic() + remaining() / 1000.0
    # only this header is read: another's value may be Latin-1 (café), no UTF-8 to decode
    amzn = [v for k, v in scope["headers"] if k == b"x-amzn-trace-id"]
    # the runtime sets this one before each invocation (and removes it for one without):
    # the trace Lambda continued from the request's header, or started; with active
    # tracing its Parent is Lambda's own segment, nearer than the header's caller
    trace = _xray_trace(os.environ.get("_X_AMZN_TRACE_ID")) or _xray_trace(
        amzn[-1].decode("latin-1") if amzn else None
    )
    if trace is not None:
        given["trace"] = trace  # a traceparent header, if there is one, goes first
    return given
