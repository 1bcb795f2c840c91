"""Webhooks that verify, acknowledge at once and hand the work to an event.

``app.webhook(path, provider=..., secret=..., topic=...)`` declares an HTTP function (an
Invocation like any other) whose handler is built here: it checks the provider's
signature with the named secret, turns the delivery into a CloudEvent (the provider's
delivery id becomes the event id, so a redelivery is dropped as a duplicate), publishes it
to ``topic`` and answers within milliseconds. Subscribers (``@app.event(topic)``) do the
slow work, with retries and dead letters.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from hibana.context import Context
from hibana.events.cloudevent import CloudEvent, EventError
from hibana.requests import Request
from hibana.responses import Response
from hibana.webhooks import signatures
from hibana.webhooks.signatures import Rejected

Provider = Literal["github", "slack", "standard"]
PROVIDERS: tuple[str, ...] = ("github", "slack", "standard")
Ack = Callable[[dict[str, Any]], Any]
Handler = Callable[[Request, Context], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Notice:
    """A verified delivery that carries no event, only news for the log (a warning), and
    is acknowledged with a 200: Slack's app_rate_limited."""

    message: str
    fields: dict[str, Any]


def handler(provider: Provider, secret: str, topic: str, path: str, ack: Ack | None) -> Handler:
    parse = {"github": _github, "slack": _slack, "standard": _standard}[provider]

    async def webhook(req: Request, ctx: Context) -> Response:
        body = req.body
        try:
            result = parse(ctx.secrets[secret], req, body, path)
        except Rejected as exc:
            ctx.log.warning(
                "webhook rejected", provider=provider, reason=exc.reason, status=exc.status
            )
            return Response.json({"error": exc.reason}, status=exc.status)
        if isinstance(result, Response):
            return result  # a handshake (ping, url_verification, ssl_check): nothing to publish
        if isinstance(result, Notice):
            ctx.log.warning(result.message, provider=provider, **result.fields)
            return Response.json({}, status=200)
        event, answer = result
        try:
            (published,) = await ctx.publish_events(topic, [event])
        except EventError as exc:  # too large to keep (413), say: the sender is told why
            ctx.log.warning(
                "webhook rejected", provider=provider, reason=exc.message, status=exc.status
            )
            return Response.json({"error": exc.message}, status=exc.status)
        ctx.log.info(
            "webhook accepted",
            provider=provider,
            event_id=event.id,
            type=event.type,
            duplicate=published.duplicate,
        )
        if provider == "slack":
            # Slack wants a slash command's reply in the acknowledgement itself.
            reply = None
            if ack is not None and answer:
                # a plain function runs on a thread, as a sync function does: a slow one
                # (a lookup) would hold up every request on this worker's loop
                sync = not inspect.iscoroutinefunction(ack)
                reply = await asyncio.to_thread(ack, event.data) if sync else ack(event.data)
                if inspect.isawaitable(reply):  # an async def ack, or what returns one
                    reply = await reply
            return Response.json(reply if reply is not None else {}, status=200)
        return Response.json(
            {"accepted": not published.duplicate, "duplicate": published.duplicate, "id": event.id},
            status=202,
        )

    return webhook


def _github(
    secret: str, req: Request, body: bytes, path: str
) -> tuple[CloudEvent, bool] | Response:
    signatures.github(secret, body, req.headers.get("x-hub-signature-256"))
    kind = req.headers.get("x-github-event")
    delivery = req.headers.get("x-github-delivery")
    if not kind or not delivery:
        raise Rejected("X-GitHub-Event or X-GitHub-Delivery is missing", 400)
    payload = _json_or_form_payload(req, body)
    if kind == "ping":
        return Response.json({"ok": True, "zen": payload.get("zen")}, status=200)
    repo = payload.get("repository") or {}
    full_name = repo.get("full_name") if isinstance(repo, dict) else None
    extensions = {}
    if isinstance(payload.get("action"), str):
        extensions["githubaction"] = payload["action"]
    return CloudEvent(
        id=delivery,
        source=f"https://github.com/{full_name}" if full_name else "https://github.com",
        type=f"com.github.{kind}",
        subject=f"repo/{full_name}" if full_name else None,
        datacontenttype="application/json",
        data=payload,
        extensions=extensions,
    ), True


def _slack(
    secret: str, req: Request, body: bytes, path: str
) -> tuple[CloudEvent, bool] | Response | Notice:
    signatures.slack(
        secret,
        body,
        req.headers.get("x-slack-request-timestamp"),
        req.headers.get("x-slack-signature"),
        time.time(),
    )
    if req.content_type.startswith("application/json"):
        payload = _json(body)
        if payload.get("type") == "url_verification":
            return Response.json({"challenge": payload.get("challenge")}, status=200)
        if payload.get("type") == "app_rate_limited":
            # the app went over the Events API's limit and Slack holds its events back for
            # a while; it wants a 200 (no event_id: nothing to publish, only to know)
            return Notice(
                "slack app rate-limited",
                {
                    "team_id": payload.get("team_id"),
                    "api_app_id": payload.get("api_app_id"),
                    "minute_rate_limited": payload.get("minute_rate_limited"),
                },
            )
        inner = _object(payload.get("event") or {}, "the Slack event's event")
        event_id = payload.get("event_id")
        if not event_id:
            raise Rejected("a Slack event without event_id", 400)
        return CloudEvent(
            id=str(event_id),
            source=f"https://slack.com/{payload.get('team_id', '')}",
            type=f"com.slack.event.{inner.get('type', 'unknown')}",
            datacontenttype="application/json",
            data=payload,
        ), False
    form = dict(
        urllib.parse.parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    )
    if form.get("ssl_check") == "1":
        # Slack checking the certificate of a slash command's URL: it wants a 200
        return Response(b"", status=200)
    if "payload" in form:  # an interactive component: buttons, menus, modals
        interactive = _json(form["payload"].encode())
        kind = str(interactive.get("type", "unknown"))
        actions = interactive.get("actions") or [{}]
        if not isinstance(actions, list):
            shown = json.dumps(actions)[:40]
            raise Rejected(
                f"the Slack interactive payload's actions is {shown}, not a JSON array", 400
            )
        first = _object(actions[0], "the Slack interactive payload's first action")
        team = _object(interactive.get("team") or {}, "the Slack interactive payload's team")
        ident = interactive.get("trigger_id") or first.get("action_ts") or ""
        return CloudEvent(
            id=str(ident) or f"{kind}-{time.time_ns()}",
            source=f"https://slack.com/{team.get('id', '')}",
            type=f"com.slack.interactive.{kind}",
            datacontenttype="application/json",
            data=interactive,
        ), False
    if "command" not in form:
        raise Rejected("neither a slash command, an interactive payload nor an event", 400)
    return CloudEvent(
        id=form.get("trigger_id") or f"command-{time.time_ns()}",
        source=f"https://slack.com/{form.get('team_id', '')}",
        type="com.slack.command",
        subject=form["command"],
        datacontenttype="application/json",
        data=form,
    ), True


def _standard(
    secret: str, req: Request, body: bytes, path: str
) -> tuple[CloudEvent, bool] | Response:
    msg_id = req.headers.get("webhook-id")
    signatures.standard(
        secret,
        body,
        msg_id,
        req.headers.get("webhook-timestamp"),
        req.headers.get("webhook-signature"),
        time.time(),
    )
    payload = _json(body)
    kind = payload.get("type") if isinstance(payload.get("type"), str) else "webhook"
    return CloudEvent(
        id=str(msg_id),
        source=f"webhook:{path}",
        type=str(kind),
        datacontenttype="application/json",
        data=payload.get("data", payload),
    ), True


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body, parse_constant=_no_constant, parse_float=_finite)
    except _NotJson as exc:
        raise Rejected(f"the body is not JSON: {exc}", 400) from None
    except ValueError:
        raise Rejected("the body is not JSON", 400) from None
    except RecursionError:
        raise Rejected("the body is JSON nested too deeply to decode", 400) from None
    if not isinstance(value, dict):
        raise Rejected("the body is not a JSON object", 400)
    if b"\\ud" in body or b"\\uD" in body:
        # an escaped surrogate: a lone one decodes to a str that no UTF-8 (the event's
        # JSON) can hold, and the event could not be kept (a 500, it was)
        try:
            json.dumps(value, ensure_ascii=False).encode()
        except UnicodeEncodeError as exc:
            bad = ascii(exc.object[exc.start : exc.end])
            raise Rejected(
                f"the body is not JSON: {bad} is half of a UTF-16 surrogate pair, not a character",
                400,
            ) from None
    return value


class _NotJson(Exception):
    pass


def _no_constant(name: str) -> Any:
    """``json.loads`` takes NaN and Infinity (Python's ``json.dumps`` writes them); no JSON
    holds them, and the event made of them could not be kept (a 500, it was)."""
    raise _NotJson(f"{name} is no JSON number")


def _finite(text: str) -> float:
    """A JSON number as a float; one past a float's range (``1e400``) would be infinity."""
    value = float(text)
    if math.isinf(value):
        raise _NotJson(f"{text[:40]} is past the range of a number")
    return value


def _object(value: Any, what: str) -> dict[str, Any]:
    """``value``, a JSON object where a signed delivery of another shape is a 400."""
    if not isinstance(value, dict):
        raise Rejected(f"{what} is {json.dumps(value)[:40]}, not a JSON object", 400)
    return value


def _json_or_form_payload(req: Request, body: bytes) -> dict[str, Any]:
    if req.content_type.startswith("application/x-www-form-urlencoded"):
        form = dict(
            urllib.parse.parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        )
        return _json(form.get("payload", "").encode())
    return _json(body)
