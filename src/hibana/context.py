"""The seam: every trigger turns its input into an ``Invocation``; a function sees a ``Context``.

Nothing else reaches a function. Tracing, deadlines, concurrency limits and retries are
wrappers around this one shape (see ``hibana.dispatcher``), not parallel stacks.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from hibana.errors import Cancelled, QueueError
from hibana.events.cloudevent import new_event
from hibana.messages import MAX_DELAY
from hibana.secrets import Secrets
from hibana.telemetry.logs import Logger
from hibana.telemetry.trace import TraceContext

if TYPE_CHECKING:
    from hibana.app import FunctionSpec
    from hibana.events.cloudevent import CloudEvent
    from hibana.store.base import Enqueued, NewMessage
    from hibana.triggers.outbox import Published


def checked_delay(delay: object, shown: str) -> float:
    """``delay`` as seconds; QueueError naming it as ``shown`` (``delay=inf``, ``--delay
    inf``) unless it is a number from 0 to ``MAX_DELAY``."""
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= MAX_DELAY:
        raise QueueError(
            f"{shown} must be a number of seconds from 0 to {MAX_DELAY:.0f} (365 days)"
            + _delay_fix(delay)
        )
    return float(delay)


def _delay_fix(delay: object) -> str:
    """How to mend ``delay``, refused as a delay: what it is, and what to pass instead."""
    if isinstance(delay, datetime.datetime):
        return (
            ", not a datetime (a time, not a wait); pass the seconds until it: "
            "max(0, (when - datetime.now(UTC)).total_seconds())"
        )
    if isinstance(delay, datetime.timedelta):
        return ", not a timedelta; pass its seconds: delay.total_seconds()"
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        return f", not a {type(delay).__name__}"
    if delay < 0:
        return (
            "; a message cannot be due before it is sent: for a time that may have "
            "passed, pass max(0, seconds)"
        )
    return "; for work due later, keep it elsewhere and let an @app.timer function enqueue it"


def checked_key(key: object, shown: str, no_key: str = "pass None (or leave it out)") -> str | None:
    """``key`` as an idempotency key (None: none); QueueError naming it as ``shown`` unless
    it is a string, and one with something in it: every message sent with an empty one
    (a header sent blank, a variable never set) would be one message, the rest dropped.
    ``no_key`` says how the caller sends a message with no key."""
    if key is None:
        return None
    if not isinstance(key, str):
        raise QueueError(f"{shown} must be a string (or None), not {type(key).__name__}")
    if not key:
        raise QueueError(
            f"{shown} is empty: every message sent with it within 24 h would be one, the "
            f"rest dropped as duplicates; {no_key} for a message with no key"
        )
    return key


#: What a function is: ``fn(payload, ctx)``, sync or async.
Handler = Callable[[Any, "Context"], Any] | Callable[[Any, "Context"], Awaitable[Any]]

CancelReason = Literal["timeout", "shutdown", "client_disconnected"]


class Cancellation:
    """A one-way signal: set once (from the event loop's thread), read from anywhere. Its
    reason is the first one given, unless the deadline passes later: then it is "timeout".

    Sync code polls ``is_set()``; async code awaits ``wait()``."""

    __slots__ = ("_is_set", "_event", "reason", "on_set")

    def __init__(self) -> None:
        self._is_set = False
        self._event: asyncio.Event | None = None
        self.reason: CancelReason | None = None
        #: Called (on the loop) when it is set: it ends a wait for a max_concurrency permit.
        self.on_set: Callable[[], None] | None = None

    def is_set(self) -> bool:
        return self._is_set

    def set(self, reason: CancelReason) -> None:
        if self._is_set:
            if reason == "timeout":
                self.reason = reason  # a deadline that passes is one, whatever came first
            return
        self.reason = reason
        self._is_set = True
        if self._event is not None:
            self._event.set()
        if self.on_set is not None:
            self.on_set()

    async def wait(self) -> None:
        if self._is_set:
            return
        if self._event is None:
            self._event = asyncio.Event()
        await self._event.wait()


@dataclass(slots=True)
class Invocation:
    """One run of one function: what the dispatcher schedules, times and traces."""

    id: str
    function: FunctionSpec
    payload: Any
    trace: TraceContext
    #: ``time.monotonic()`` at which the invocation times out.
    deadline: float
    attempt: int = 1
    cancellation: Cancellation = field(default_factory=Cancellation)
    #: The first invocation in a new worker, and how long it waited for that worker.
    cold_start: bool = False
    cold_start_ms: float | None = None
    #: The latest the deadline may move to. The ``timeout`` is the function's time to run:
    #: a wait for a ``max_concurrency`` permit moves the deadline on by as long as it
    #: waited, but never past this (its lease's end, a caller's own deadline).
    latest: float = math.inf
    #: A sync function's pool thread took it up (one still queued for a thread when its
    #: deadline passed never runs: it is not stuck, only behind busy threads).
    on_thread: bool = False


class Outbox(Protocol):
    """Where ``ctx.enqueue`` sends messages (the worker's store, see triggers.outbox)."""

    def message(
        self,
        inv: Invocation,
        queue: str,
        data: Any,
        delay: float,
        idempotency_key: str | None,
    ) -> NewMessage: ...
    def on_loop_thread(self) -> bool: ...
    def send(self, message: NewMessage) -> Coroutine[Any, Any, Enqueued]: ...
    def send_blocking(self, message: NewMessage) -> Enqueued: ...
    def prepare(
        self, inv: Invocation, topic: str, events: list[CloudEvent]
    ) -> list[tuple[CloudEvent, list[NewMessage]]]: ...
    def publish(
        self, topic: str, prepared: list[tuple[CloudEvent, list[NewMessage]]]
    ) -> Coroutine[Any, Any, list[Published]]: ...
    def publish_blocking(
        self, topic: str, prepared: list[tuple[CloudEvent, list[NewMessage]]]
    ) -> list[Published]: ...


class Context:
    """What a function knows of its invocation: ids, attempt, deadline, cancellation, logger;
    and how it hands work on (``enqueue``)."""

    __slots__ = ("_inv", "log", "_outbox", "_secrets")

    def __init__(
        self,
        invocation: Invocation,
        log: Logger,
        outbox: Outbox | None = None,
        secrets: Secrets | None = None,
    ) -> None:
        self._inv = invocation
        self.log = log
        self._outbox = outbox
        self._secrets = secrets

    @property
    def secrets(self) -> Secrets:
        """The secrets this function named in ``secrets=[...]``: ``ctx.secrets["name"]``.
        Reading one it did not name raises SecretError."""
        if self._secrets is None:
            self._secrets = Secrets({}, self._inv.function.name)
        return self._secrets

    def enqueue(
        self,
        queue: str,
        data: Any,
        *,
        delay: float = 0.0,
        idempotency_key: str | None = None,
    ) -> Coroutine[Any, Any, Enqueued]:
        """``await ctx.enqueue("orders", {...})``: put a message on a queue of this app;
        returns once it is durably stored. ``delay`` (seconds) hides it for a while; the
        same ``idempotency_key`` twice within 24 h is one message (``.duplicate`` says so).
        The message carries this invocation's trace. Sync functions use ``enqueue_sync``.

        Raises QueueError (unknown queue, payload over the limit, a delay that is not 0 to
        ``MAX_DELAY`` seconds) or TypeError (a payload that is not JSON-serialisable) at
        once, with nothing written."""
        outbox = self._outbox_for("enqueue", on_loop=True)
        return outbox.send(outbox.message(self._inv, queue, data, delay, idempotency_key))

    def enqueue_sync(
        self,
        queue: str,
        data: Any,
        *,
        delay: float = 0.0,
        idempotency_key: str | None = None,
    ) -> Enqueued:
        """``ctx.enqueue`` for sync functions: blocks until the message is stored. Raises
        ``Cancelled`` if the function runs on after its worker stopped sending (it was
        abandoned past shutdown_timeout): the message is not sent."""
        outbox = self._outbox_for("enqueue", on_loop=False)
        message = outbox.message(self._inv, queue, data, delay, idempotency_key)
        try:
            return outbox.send_blocking(message)
        except Cancelled as exc:
            self.log.error(str(exc))  # its worker is exiting: no other trace of what was lost
            raise

    def publish(
        self,
        topic: str,
        *,
        type: str,
        source: str,
        data: Any = None,
        subject: str | None = None,
        id: str | None = None,
        extensions: dict[str, str] | None = None,
    ) -> Coroutine[Any, Any, Published]:
        """``await ctx.publish("orders", type="com.shop.order.created", source="/shop",
        data={...})``: a CloudEvent to every subscription of ``topic`` whose filter
        matches, each delivered through its own queue. Carries this invocation's trace
        (the ``traceparent`` extension). The same (source, id) within 24 h is dropped
        (``.duplicate``). Sync functions use ``publish_sync``."""
        outbox = self._outbox_for("publish", on_loop=True)
        prepared = self._one_event(outbox, topic, type, source, data, subject, id, extensions)

        async def one() -> Published:
            return (await outbox.publish(topic, prepared))[0]

        return one()

    def publish_sync(
        self,
        topic: str,
        *,
        type: str,
        source: str,
        data: Any = None,
        subject: str | None = None,
        id: str | None = None,
        extensions: dict[str, str] | None = None,
    ) -> Published:
        """``ctx.publish`` for sync functions: blocks until the event is stored. Raises
        ``Cancelled`` if the function runs on after its worker stopped sending."""
        outbox = self._outbox_for("publish", on_loop=False)
        prepared = self._one_event(outbox, topic, type, source, data, subject, id, extensions)
        try:
            return outbox.publish_blocking(topic, prepared)[0]
        except Cancelled as exc:
            self.log.error(str(exc))  # its worker is exiting: no other trace of what was lost
            raise

    async def publish_events(self, topic: str, events: list[CloudEvent]) -> list[Published]:
        """Publish CloudEvents as they are (forwarded ones, say): all checked first, then
        each delivered (or dropped as a duplicate)."""
        outbox = self._need_outbox()
        return await outbox.publish(topic, outbox.prepare(self._inv, topic, events))

    def _outbox_for(self, call: str, on_loop: bool) -> Outbox:
        """The outbox, if ``ctx.<call>`` (on_loop) or ``ctx.<call>_sync`` is called from
        the thread it is made for; else a RuntimeError naming the other one."""
        outbox = self._need_outbox()
        if outbox.on_loop_thread() != on_loop:
            if on_loop:
                raise RuntimeError(
                    f"ctx.{call}() is a coroutine for async functions; in a sync function "
                    f"call ctx.{call}_sync(...)"
                )
            raise RuntimeError(
                f"ctx.{call}_sync() would block the event loop; in an async function use "
                f"`await ctx.{call}(...)`"
            )
        return outbox

    def _one_event(
        self,
        outbox: Outbox,
        topic: str,
        type: str,
        source: str,
        data: Any,
        subject: str | None,
        id: str | None,
        extensions: dict[str, str] | None,
    ) -> list[tuple[CloudEvent, list[NewMessage]]]:
        event = new_event(
            type=type, source=source, data=data, subject=subject, id=id, extensions=extensions
        )
        return outbox.prepare(self._inv, topic, [event])

    def _need_outbox(self) -> Outbox:
        if self._outbox is None:
            raise QueueError(
                "there is no queue here to enqueue or publish to: this app declares no "
                "queue, event or timer functions (declare one with @app.queue(...) or "
                "@app.event(...)), or it runs outside hibana's host (hibana.aws.handler on "
                "Lambda has no store: send to SQS or EventBridge with boto3 there)"
            )
        return self._outbox

    @property
    def invocation_id(self) -> str:
        return self._inv.id

    @property
    def function_name(self) -> str:
        return self._inv.function.name

    @property
    def attempt(self) -> int:
        """1 on the first try, counting up on each retry."""
        return self._inv.attempt

    @property
    def trace(self) -> TraceContext:
        return self._inv.trace

    @property
    def deadline(self) -> float:
        """The deadline as a Unix timestamp (``time.time()`` scale)."""
        return time.time() + self.remaining

    @property
    def remaining(self) -> float:
        """Seconds left before the deadline; zero or less once it has passed."""
        return self._inv.deadline - time.monotonic()

    @property
    def cancelled(self) -> bool:
        """True once the invocation is cancelled (deadline passed, or the worker is stopping).
        Long-running sync code should poll this and return early."""
        return self._inv.cancellation.is_set()

    @property
    def cancel_reason(self) -> CancelReason | None:
        return self._inv.cancellation.reason

    async def wait_cancelled(self) -> None:
        """Returns when the invocation is cancelled; race it against slow work."""
        await self._inv.cancellation.wait()

    def raise_if_cancelled(self) -> None:
        """Raise ``hibana.Cancelled`` if the invocation is cancelled."""
        if self._inv.cancellation.is_set():
            raise Cancelled(self._inv.cancellation.reason)
