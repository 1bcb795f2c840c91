"""The event trigger's HTTP source: ``POST /runtime/events/{topic}`` on the host's port.

It is an HTTP function hibana adds to an app that has topics, so each request is an
Invocation like any other (logged, traced, limited). It accepts CloudEvents in binary,
structured and batch mode, checks every event before storing any, and answers 202; each
event is then delivered to the topic's matching subscriptions through their queues.
``OPTIONS`` answers the CloudEvents webhook abuse-protection handshake, so standard
CloudEvents senders (Event Grid, Knative...) may deliver here.

A topic that a webhook feeds takes nothing here (403): its subscribers trust an event on it
to be a delivery whose signature was checked, and anyone who reaches the port could post
one with ``ce-type: com.github.push``. The webhook publishes to it, functions of the app
may (``ctx.publish``), and so may an operator with the store (``hibana events publish``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hibana.context import Context
from hibana.events.cloudevent import EventError, from_http
from hibana.requests import Request
from hibana.responses import Response


class Ingest:
    """The handler of ``/runtime/events/{topic}``; ``webhooks()`` gives the app's webhooks
    as (topic, path, where declared), read at each request."""

    def __init__(self, webhooks: Callable[[], Sequence[tuple[str, str, str]]]) -> None:
        self.webhooks = webhooks

    async def __call__(self, req: Request, ctx: Context) -> Response:
        topic = req.params["topic"]
        try:
            self._not_fed_by_a_webhook(topic)
            if req.method == "OPTIONS":
                await ctx.publish_events(topic, [])  # no grant for a topic that takes nothing
                return handshake(req)
            events = from_http(req.headers.multi_items(), req.body)
            published = await ctx.publish_events(topic, events)
        except EventError as exc:
            ctx.log.warning("event refused", topic=topic, status=exc.status, error=exc.message)
            return Response.json({"error": exc.message}, status=exc.status)
        ctx.log.info(
            "events accepted",
            topic=topic,
            events=[p.id for p in published],
            duplicates=sum(p.duplicate for p in published),
        )
        return Response.json(
            {
                "accepted": sum(not p.duplicate for p in published),
                "duplicates": sum(p.duplicate for p in published),
                "deliveries": sum(p.deliveries for p in published),
            },
            status=202,
        )

    def _not_fed_by_a_webhook(self, topic: str) -> None:
        paths = [path for fed, path, _ in self.webhooks() if fed == topic]
        if paths:
            raise EventError(
                403,
                f"topic {topic!r} is fed by the verified webhook only (POST "
                f"{' or POST '.join(paths)}): its subscribers take an event on it for a "
                "delivery whose signature was checked, and nothing checks one here; send "
                "the delivery to the webhook, or publish to a topic of its own",
            )


def handshake(req: Request) -> Response:
    """The CloudEvents HTTP webhook validation handshake (abuse protection)."""
    origin = req.headers.get("webhook-request-origin")
    if origin is None:
        return Response(b"", status=204, headers={"allow": "POST, OPTIONS"})
    headers = {"webhook-allowed-origin": origin, "allow": "POST, OPTIONS"}
    if req.headers.get("webhook-request-rate") is not None:
        headers["webhook-allowed-rate"] = "*"
    return Response(b"", status=200, headers=headers)
