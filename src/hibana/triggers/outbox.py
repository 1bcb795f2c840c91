"""What functions send: the ``Outbox`` behind ``ctx.enqueue`` and ``ctx.publish`` (and the
CLI's ``queue send`` and ``events publish``), which checks and encodes a message or an event
at call time, so nothing is half-written, stores it, and wakes this worker's consumers. The
other side, claiming and running what was sent, is ``triggers.queue``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from hibana.context import Invocation, checked_delay, checked_key
from hibana.errors import Cancelled, QueueError
from hibana.events.cloudevent import CloudEvent, EventError
from hibana.events.filters import Filter
from hibana.messages import encode_json
from hibana.store.base import Enqueued, NewMessage, Store
from hibana.telemetry.trace import carry, is_traceparent

if TYPE_CHECKING:
    from hibana.triggers.queue import QueueConsumer

_T = TypeVar("_T")

#: Like SQS: a message body (JSON) may be at most this big.
MAX_PAYLOAD_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Published:
    """What ``ctx.publish`` did with an event."""

    id: str
    #: The event's (source, id) was published before, within the window: dropped.
    duplicate: bool
    #: How many subscriptions it was delivered to.
    deliveries: int


#: How long an event's (source, id) is remembered to drop a provider's retry.
DEDUPE_WINDOW = 24 * 3600.0


class Outbox:
    """``ctx.enqueue`` and ``ctx.publish``: checks and encodes at call time (nothing
    half-written), stores through the worker's store, and wakes this worker's consumers."""

    def __init__(
        self,
        store: Store,
        queues: tuple[str, ...],
        loop: asyncio.AbstractEventLoop,
        consumer: QueueConsumer | None = None,
        max_bytes: int = MAX_PAYLOAD_BYTES,
        subscriptions: Sequence[tuple[str, str, Filter | None]] = (),
        topics: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.queues = frozenset(queues)
        self._declared = ", ".join(sorted(queues)) or "none"
        #: (topic, queue, filter) of each subscription
        self.subscriptions = tuple(subscriptions)
        self.topics = frozenset(topics) | {t for t, _, _ in subscriptions}
        self.loop = loop
        self.consumer = consumer
        self.max_bytes = max_bytes
        self._loop_thread = threading.get_ident()
        #: Set by ``close``: sync functions' sends are refused from then on.
        self._closed = False
        self._lock = threading.Lock()
        #: Sync functions' sends handed to the loop and not answered yet.
        self._pending: set[concurrent.futures.Future[Any]] = set()

    def close(self) -> None:
        """Refuse what sync functions still running send from now on, and stop waiting
        for what they sent that is not stored yet (each raises ``Cancelled``): the worker
        abandoned them (past shutdown_timeout, or stuck past their grace) and its loop,
        which sends, is ending. Called on the loop."""
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, set()
        for future in pending:
            future.cancel()

    def _blocking(self, coro: Coroutine[Any, Any, _T], what: str) -> _T:
        """What ``coro`` returns, run on the loop for a sync function's thread; Cancelled
        naming ``what`` if the worker has stopped sending (``close``)."""
        with self._lock:
            future = None
            if not self._closed:
                # RuntimeError: the loop has closed (close was not called)
                with contextlib.suppress(RuntimeError):
                    future = asyncio.run_coroutine_threadsafe(coro, self.loop)
            if future is None:
                coro.close()
                raise Cancelled(f"{_STOPPING}; {what} was not sent")
            self._pending.add(future)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise Cancelled(f"{_STOPPING}; {what} may not have been stored") from None
        finally:
            with self._lock:
                self._pending.discard(future)

    def on_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def message(
        self,
        inv: Invocation,
        queue: str,
        data: Any,
        delay: float,
        idempotency_key: str | None,
    ) -> NewMessage:
        if queue not in self.queues:
            raise QueueError(
                f"no function of this app consumes the queue {queue!r}; declared queues: "
                f"{self._declared}"
            )
        delay = checked_delay(delay, f"delay={delay!r}")
        idempotency_key = checked_key(idempotency_key, f"idempotency_key={idempotency_key!r}")
        body = encode_json(data, f"the message for queue {queue!r}")
        if len(body) > self.max_bytes:
            raise QueueError(
                f"the message for queue {queue!r} is {len(body)} bytes of JSON, over the "
                f"limit of {self.max_bytes}; store the data elsewhere and enqueue a reference"
            )
        return NewMessage(queue, body, delay, idempotency_key, inv.trace.carried)

    async def send(self, message: NewMessage) -> Enqueued:
        result = await self.store.enqueue(message)
        if self.consumer is not None and not result.duplicate:
            self.consumer.poke(message.queue)
        return result

    def send_blocking(self, message: NewMessage) -> Enqueued:
        return self._blocking(self.send(message), f"the message for queue {message.queue!r}")

    def prepare(
        self, inv: Invocation, topic: str, events: Sequence[CloudEvent]
    ) -> list[tuple[CloudEvent, list[NewMessage]]]:
        """Each event with its deliveries (one per matching subscription); raises
        EventError (unknown topic 404, too large 413) before anything is written."""
        if topic not in self.topics:
            known = ", ".join(sorted(self.topics)) or "none"
            raise EventError(
                404,
                f"no topic {topic!r} in this app (topics: {known}); subscribe a "
                "function to it with @app.event(topic)",
            )
        prepared = []
        for event in events:
            if not is_traceparent(event.extensions.get("traceparent")):
                # CloudEvents' distributed tracing extension: both W3C headers; one that
                # holds no traceparent is replaced by this invocation's (W3C: an invalid
                # traceparent is ignored, and its tracestate with it)
                event.extensions["traceparent"] = inv.trace.traceparent
                event.extensions.pop("tracestate", None)
                if inv.trace.tracestate:
                    event.extensions["tracestate"] = inv.trace.tracestate
            body = event.to_json()
            if len(body) > self.max_bytes:
                raise EventError(
                    413,
                    f"event {event.id!r} is {len(body)} bytes of JSON, over the limit of "
                    f"{self.max_bytes}",
                )
            prepared.append((event, fan_out(topic, event, body, self.subscriptions)))
        return prepared

    async def publish(
        self, topic: str, prepared: list[tuple[CloudEvent, list[NewMessage]]]
    ) -> list[Published]:
        results = await asyncio.gather(
            *(
                self.store.publish(topic, event_key(event), deliveries, DEDUPE_WINDOW)
                for event, deliveries in prepared
            )
        )
        out = []
        for (event, deliveries), fresh in zip(prepared, results, strict=True):
            if fresh and self.consumer is not None:
                for d in deliveries:
                    self.consumer.poke(d.queue)
            out.append(Published(event.id, not fresh, len(deliveries) if fresh else 0))
        return out

    def publish_blocking(
        self, topic: str, prepared: list[tuple[CloudEvent, list[NewMessage]]]
    ) -> list[Published]:
        what = f"the event for topic {topic!r}"
        return self._blocking(self.publish(topic, prepared), what)


#: Why a sync function's send is refused once its worker has stopped sending.
_STOPPING = (
    "the host is stopping: this function ran past its worker's shutdown_timeout (or its "
    "own timeout and --cancel-grace) and was abandoned, and its worker sends nothing more"
)


def fan_out(
    topic: str,
    event: CloudEvent,
    body: bytes,
    subscriptions: Sequence[tuple[str, str, Filter | None]],
) -> list[NewMessage]:
    """One delivery of ``event`` (encoded as ``body``) per subscription (topic, queue,
    filter) of ``topic`` that it passes; each carries the event's trace."""
    return [
        NewMessage(queue, body, trace=_carried_by(event))
        for t, queue, flt in subscriptions
        if t == topic and (flt is None or flt.matches(event))
    ]


def _carried_by(event: CloudEvent) -> str | None:
    parent = event.traceparent
    return None if parent is None else carry(parent, event.extensions.get("tracestate"))


def event_key(event: CloudEvent) -> str:
    """What deduplicates an event: its source and id, as the CloudEvents spec says."""
    return f"{event.source}\n{event.id}"
