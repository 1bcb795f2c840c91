"""The queue trigger: claims messages from the store and turns each delivery (or batch)
into an Invocation. What sends them (``ctx.enqueue``, ``ctx.publish``) is ``triggers.outbox``.

Timer functions ride on the same machinery: each fire is a message on the timer's own
queue (see ``triggers.timer``), so leases, deadlines and shutdown work the same way.

A delivery's fate follows its Outcome (``triggers.settlement``): ok acknowledges it; an
error or a timeout retries it per the function's policy, and dead-letters it after
``max_attempts``; a shutdown releases it for another worker without counting the attempt.
The settlements reach the store through ``triggers.settle_writes`` (which a worker's
shutdown waits on: ``drained``); the store's watcher wakes idle claim loops
(``triggers.queue_wakeups``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from hibana.app import App, EventTrigger, FunctionSpec, QueueTrigger, TimerTrigger
from hibana.blueprint import MAX_BATCH_SIZE
from hibana.context import Context, Invocation
from hibana.dispatcher import PERMIT_POLL, Dispatcher, Outcome
from hibana.events.cloudevent import CloudEvent
from hibana.messages import Message
from hibana.secrets import Secrets
from hibana.store.base import Delivery, Settle, Store
from hibana.telemetry.log_fields import millis
from hibana.telemetry.log_sink import LogSink
from hibana.telemetry.logs import Logger, invocation_line
from hibana.telemetry.trace import carried_link, continue_carried, new_invocation_id
from hibana.timers import TimerInfo
from hibana.triggers.outbox import Outbox
from hibana.triggers.queue_wakeups import IDLE_POLL_MAX, Wakeups
from hibana.triggers.settle_writes import SettleWrites
from hibana.triggers.settlement import settlements
from hibana.triggers.timer import LATE_AFTER

#: How often the leases of deliveries still running are looked at (``_keep_leases``).
LEASE_SWEEP = 0.1
#: Deliveries claimed in one go at most: a batch's most, so a whole batch is one claim.
CLAIM_MAX = MAX_BATCH_SIZE
#: In-flight invocations per queue function and worker, unless max_concurrency says.
ASYNC_DEFAULT_CONCURRENCY = 256

#: Span links an invocation line carries at most (a batch's, one per message): the
#: OpenTelemetry SDK's default limit; a larger batch's line says how many it left out.
MAX_LINKS = 128

_decode = msgspec.json.decode


class QueueConsumer:
    """One claim loop per queue (and timer) function of the app, in one worker."""

    def __init__(
        self,
        app: App,
        store: Store,
        dispatcher: Dispatcher,
        sink: LogSink,
        owner: str,
        log: Logger,
        sync_concurrency: int,
    ) -> None:
        self.specs = [
            spec for spec in app.functions if isinstance(spec.trigger, QueueTrigger | TimerTrigger)
        ]
        self.store = store
        self.dispatcher = dispatcher
        self.sink = sink
        self.owner = owner
        self.log = log
        self.outbox: Outbox | None = None
        #: ``ctx.secrets`` of each function that names some.
        self.secrets: dict[str, Secrets] = {}
        self._sync_concurrency = sync_concurrency
        self._wake: dict[str, asyncio.Event] = {}
        self._wakeups = Wakeups(store, self._wake)
        #: Set when one of a queue's invocations ends (or the consumer stops): its claim
        #: loop, waiting for room under its limit, looks again.
        self._freed: dict[str, asyncio.Event] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._writes = SettleWrites(store, log, self._running)
        #: The deliveries of each invocation running, by its id: with when their lease
        #: ends (monotonic), how long before that it is renewed, and for how long.
        self._leases: dict[str, tuple[list[Delivery], float, float, float]] = {}
        #: Those of them whose last renewal the store has not answered yet.
        self._renewing: set[str] = set()
        #: The function, deliveries and logger of each invocation running, by its id.
        self._invocations: dict[str, tuple[FunctionSpec, list[Delivery], Logger]] = {}
        self._keeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        for spec in self.specs:
            queue = spec.trigger.queue  # type: ignore[union-attr]
            self._wake[queue] = asyncio.Event()
            self._freed[queue] = asyncio.Event()
            self._loops.append(asyncio.create_task(self._consume(spec, queue)))
        self._wakeups.start()

    async def drained(self, deadline: float | None = None) -> list[int]:
        """Return once every delivery this worker held is settled, or by ``deadline``
        (``SettleWrites.drained``): the ids of the messages whose settlements the store has
        not taken by then."""
        return await self._writes.drained(deadline)

    def drain_by(self, deadline: float) -> None:
        """Have ``drained`` return by ``deadline`` (``SettleWrites.drain_by``)."""
        self._writes.drain_by(deadline)

    def poke(self, queue: str) -> None:
        event = self._wake.get(queue)
        if event is not None:
            event.set()

    async def stop(self) -> None:
        """Claim no more; return once the claim loops have ended (work in flight goes on)."""
        self._stopping = True
        self._wakeups.stop()
        for event in (*self._wake.values(), *self._freed.values()):
            event.set()  # a loop waiting for a message, or for room under its limit, ends
        if self._loops:
            await asyncio.gather(*self._loops, return_exceptions=True)

    async def _consume(self, spec: FunctionSpec, queue: str) -> None:
        trigger = spec.trigger
        assert isinstance(trigger, QueueTrigger | TimerTrigger)
        lease = _lease(spec)
        if isinstance(trigger, QueueTrigger):
            batch, group = trigger.batch_size, trigger.group
        else:
            batch, group = 1, None
        # A sync queue function takes at most half the thread pool unless it says
        # otherwise, so a backlog cannot starve the worker's sync HTTP functions.
        limit = spec.max_concurrency or (
            ASYNC_DEFAULT_CONCURRENCY if spec.is_async else max(1, self._sync_concurrency // 2)
        )
        mine: set[asyncio.Task[None]] = set()
        freed = self._freed[queue]
        wake = self._wake[queue]
        idle = 0.001
        failures = 0
        # Claim again once half the slots are free (or all, for small limits): claiming
        # one message each time one finishes would cost a transaction per message.
        refill = max(1, limit // 2)
        while not self._stopping:
            free = limit - len(mine)
            if spec.max_concurrency is not None:
                # the limit is the host's: other workers may hold some of it
                free = min(free, self.dispatcher.room(spec) or 0)
            if free < refill and mine:
                freed.clear()
                await freed.wait()  # an invocation ended, or the consumer stops
                continue
            if free <= 0:  # other workers run all it may: look again soon
                await asyncio.sleep(PERMIT_POLL)
                continue
            wake.clear()  # a poke from here on wakes the wait below
            try:
                if idle > 0.001 and not await self.store.ready((queue,)):
                    # Idle: look with a read (no write lock) before claiming with a write.
                    deliveries = []
                else:
                    deliveries = await self.store.claim(
                        queue, self.owner, min(free * batch, CLAIM_MAX), lease, group
                    )
            except Exception as exc:  # the store, or anything else: the loop must go on
                failures += 1
                if failures == 1 or failures % 60 == 0:
                    self.log.error(
                        "cannot claim messages; retrying",
                        queue=queue,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                await asyncio.sleep(min(1.0, 0.05 * failures))
                continue
            failures = 0
            if not deliveries:
                self._wakeups.idle(True)
                try:
                    await asyncio.wait_for(wake.wait(), await self._wakeups.idle_wait(queue, idle))
                    idle = 0.001  # woken: a message was just enqueued
                except TimeoutError:
                    idle = min(idle * 2, IDLE_POLL_MAX)
                finally:
                    self._wakeups.idle(False)
                continue
            idle = 0.001
            for i in range(0, len(deliveries), batch):
                # its leases end ``lease`` after its ``leased_at``, or a little later: on
                # this host's clock, whatever the store's says (PostgreSQL keeps its own);
                # not after the claim was asked for, which may have waited longer (a lock)
                chunk = deliveries[i : i + batch]
                task = asyncio.create_task(self._handle(spec, chunk, chunk[0].leased_at + lease))
                mine.add(task)
                self._running.add(task)

                def done(t: asyncio.Task[None], mine: set[asyncio.Task[None]] = mine) -> None:
                    mine.discard(t)
                    self._running.discard(t)
                    freed.set()

                task.add_done_callback(done)

    async def _handle(
        self, spec: FunctionSpec, deliveries: list[Delivery], leased_until: float
    ) -> None:
        """Run ``deliveries`` (one, or a batch), leased until ``leased_until`` (monotonic),
        and settle them by the outcome."""
        trigger = spec.trigger
        started = time.monotonic()
        now = time.time()
        assert isinstance(trigger, QueueTrigger | TimerTrigger)
        for d in deliveries:
            _note_unsettled(d, now)
        deliveries = self._set_aside(spec, deliveries, now)
        if not deliveries:
            return
        first = deliveries[0]
        try:
            payload = _payload(trigger, deliveries)
        except Exception as exc:  # a body the function cannot be given: not worth retrying
            self._set_aside(spec, deliveries, now, f"cannot be delivered: {exc}")
            return
        trace = continue_carried(first.trace)
        # the deadline never outlives the lease: past it, another worker may have the
        # message. Not ``first.lease_until``: that is the store's clock, which PostgreSQL
        # keeps, and a host whose clock is ahead of it by the lease ran nothing
        latest = max(started, leased_until)
        inv = Invocation(
            new_invocation_id(),
            spec,
            payload,
            trace,
            min(started + spec.timeout, latest),
            first.attempt,
        )
        inv.latest = latest
        fields: dict[str, Any] = {
            "invocation_id": inv.id,
            "function": spec.name,
            "trace_id": trace.trace_id,
            "span_id": trace.span_id,
        }
        log = Logger(self.sink, fields)
        # renewed once half of it is left (no sooner than two sweeps before its end): the
        # renewal is written well before another worker could claim the message
        lease = _lease(spec)
        self._leases[inv.id] = (
            deliveries,
            latest,
            max(min(lease / 2, 5.0), 2 * LEASE_SWEEP),
            lease,
        )
        self._invocations[inv.id] = (spec, deliveries, log)
        if self._keeper is None:
            self._keeper = asyncio.create_task(self._keep_leases())
        try:
            outcome = await self.dispatcher.run(
                inv, Context(inv, log, self.outbox, self.secrets.get(spec.name))
            )
            ending = self.dispatcher.ended(inv)
            if ending is not None:
                # a sync function timed out and its thread still runs: settled once it
                # returns, so it is not delivered again (nor its concurrency group's slot
                # freed) meanwhile; its lease is renewed. One still running after the grace
                # is stuck: its worker is replaced. (An async one is awaited by ``run``,
                # its lease renewed the same way.)
                await asyncio.wait([ending], timeout=self.dispatcher.cancel_grace + 1.0)
        finally:
            del self._leases[inv.id]
            del self._invocations[inv.id]
        unrun = outcome.kind == "timeout" and not spec.is_async and not inv.on_thread
        if unrun:
            # every thread was busy (sync HTTP functions, say) until its deadline passed,
            # and it never ran: not the message's fault, so no attempt of its own
            outcome = Outcome("cancelled")
        settles, line = settlements(spec, deliveries, outcome, log, self.sink.scrub)
        if unrun:
            line["error"] = "its deadline passed before a thread was free to run it"
        self._writes.add(settles)
        line["duration_ms"] = millis(time.monotonic() - started)
        line["queue"] = first.queue
        batched = isinstance(trigger, QueueTrigger) and trigger.batch_size > 1
        line["message_id"] = [d.id for d in deliveries] if batched else first.id
        if batched:
            # the invocation continues its first message's trace; it links to the span
            # that sent each of its messages, as OpenTelemetry's messaging conventions ask
            # of a span that processes a batch
            links = [
                {"trace_id": link[0], "span_id": link[1], "message_id": d.id}
                for d in deliveries
                if (link := carried_link(d.trace)) is not None
            ]
            if links:
                line["links"] = links[:MAX_LINKS]
            if len(links) > MAX_LINKS:
                line["links_dropped"] = len(links) - MAX_LINKS
        line["attempt"] = first.attempt
        # from its enqueue to its claim, both on the store's clock
        claimed_at = first.lease_until - lease
        line["queue_latency_ms"] = millis(max(0.0, claimed_at - first.enqueued_at))
        if trace.parent_span_id is not None:
            line["parent_span_id"] = trace.parent_span_id
        if inv.cold_start:
            line["cold_start"] = True
            line["cold_start_ms"] = millis((inv.cold_start_ms or 0.0) / 1000)
        ok = line["outcome"] == "ok"
        invocation_line(log, "info" if ok else "error", line)

    def frozen(self, invocations: Sequence[str]) -> list[Settle]:
        """Timed out, each of ``invocations`` that is this consumer's, settled per its
        policy and logged: for the watchdog of a worker whose event loop a function blocks
        past its deadline and grace, which exits with them running. Their messages came
        back only when their leases ran out, taken for a worker's death (a dead letter
        'not run again' on the last attempt). Called from that thread, the loop frozen."""
        settles: list[Settle] = []
        running = dict(self._invocations)
        for inv_id in invocations:
            if inv_id not in running:
                continue
            spec, deliveries, log = running[inv_id]
            settled, line = settlements(spec, deliveries, Outcome("timeout"), log, self.sink.scrub)
            settles += settled
            first = deliveries[0]
            batched = len(deliveries) > 1
            line["queue"] = first.queue
            line["message_id"] = [d.id for d in deliveries] if batched else first.id
            line["attempt"] = first.attempt
            invocation_line(log, "error", line)
        return settles

    async def _keep_leases(self) -> None:
        """While an invocation runs, its deliveries' leases are renewed (for their
        ``visibility_timeout`` again) shortly before they end: a function still running at
        its lease's end (past its timeout, in its ``--cancel-grace``) is not delivered a
        second time meanwhile. A worker that dies renews nothing: its leases run out."""
        try:
            while self._leases:
                await asyncio.sleep(LEASE_SWEEP)
                now = time.monotonic()
                renew: list[Settle] = []
                renewing: set[str] = set()
                for key, (deliveries, until, margin, length) in list(self._leases.items()):
                    # not while its last renewal is unanswered (held, the store away): that
                    # one renews it as it is written, and more would pile up behind it
                    if until - now < margin and key not in self._renewing:
                        renew += (
                            Settle("extend", d.id, d.attempt, delay=length) for d in deliveries
                        )
                        renewing.add(key)
                        self._leases[key] = (deliveries, now + length, margin, length)
                if renew:
                    self._renewing |= renewing

                    def answered(_: asyncio.Task[None], keys: set[str] = renewing) -> None:
                        self._renewing -= keys

                    self._writes.add(renew).add_done_callback(answered)
        finally:
            self._keeper = None

    def _set_aside(
        self, spec: FunctionSpec, deliveries: list[Delivery], now: float, why: str | None = None
    ) -> list[Delivery]:
        """The deliveries not to run, settled without running: all of them with ``why``
        (they cannot be run), else those whose last attempt allowed never ended (their
        worker died in it, a poison message most likely: run again, it would kill worker
        after worker). A queue's become dead letters; a timer's slot is dropped (a failed
        timer is not retried). Returns the rest, to run."""
        trigger = spec.trigger
        assert isinstance(trigger, QueueTrigger | TimerTrigger)
        keeps = isinstance(trigger, QueueTrigger) and trigger.dead_letters
        allowed = trigger.max_attempts if isinstance(trigger, QueueTrigger) and keeps else 1
        rest: list[Delivery] = []
        settles: list[Settle] = []
        for d in deliveries:
            if why is None and d.attempt <= allowed:
                rest.append(d)
                continue
            if why is None:
                error = (
                    f"not run again: attempt {d.attempt - 1} of {allowed} never ended (its "
                    "worker died in it, or its lease ran out before it was settled)"
                )
            else:
                error = self.sink.scrub(why)
            # the claim that found it is no attempt: it did not run. The dead letter counts
            # the attempts that ran; this note is on the last of them, as its death's is.
            unrun = why is None
            attempt = d.attempt - 1 if unrun else d.attempt
            errors = [*d.errors, {"attempt": attempt, "error": error, "at": round(now, 3)}]
            if keeps:
                settles.append(
                    Settle("dead", d.id, d.attempt, error=error, errors=errors, unrun=unrun)
                )
            else:
                settles.append(Settle("ack", d.id, d.attempt))
            Logger(self.sink, {**self.log.fields, "function": spec.name}).error(
                "dead letter, not run" if keeps else "timer slot dropped, not run",
                queue=d.queue,
                message_id=d.id,
                attempt=attempt,
                error=error,
            )
        if settles:
            self._writes.add(settles)
        return rest


def _lease(spec: FunctionSpec) -> float:
    """How long a claim of ``spec``'s messages holds them: a queue's visibility timeout;
    a timer's run gets its timeout and a margin."""
    trigger = spec.trigger
    return trigger.visibility_timeout if isinstance(trigger, QueueTrigger) else spec.timeout + 5.0


def _payload(trigger: QueueTrigger | TimerTrigger, deliveries: list[Delivery]) -> Any:
    """What the function is given: raises if a body is not what its trigger sends (a
    message put on an event or timer queue by hand, say)."""
    first = deliveries[0]
    if isinstance(trigger, EventTrigger):
        return CloudEvent.from_json(first.body)
    if isinstance(trigger, TimerTrigger):
        try:
            info = _decode(first.body)
            slot = float(info["slot"])
            on_startup = bool(info.get("on_startup", False))
            # late when it runs, not only when it fired (it waited behind a slow run)
            late = not on_startup and time.time() - slot > LATE_AFTER
            past_due = bool(info.get("past_due", False)) or late
            return TimerInfo(trigger.schedule.expression, slot, past_due, on_startup)
        except (msgspec.DecodeError, KeyError, TypeError, ValueError):
            raise ValueError(f"{first.body[:200]!r} is not a timer slot") from None
    messages = [
        Message(d.id, d.queue, d.body, d.attempt, d.enqueued_at, d.errors) for d in deliveries
    ]
    return messages[0] if len(messages) == 1 and trigger.batch_size == 1 else messages


#: The error an attempt that never ended is given (the worker running it died).
UNSETTLED = "attempt {} never ended: its worker died in it (or its lease ran out unsettled)"


def _note_unsettled(d: Delivery, now: float) -> None:
    """Add to ``d.errors`` the attempts before this one that left no error: none was
    settled (a shutdown's release does not count its attempt), so its worker died."""
    if d.attempt <= 1 or len(d.errors) >= d.attempt - 1:
        return  # the common case: a first delivery, or every earlier attempt said why
    seen = {e.get("attempt") for e in d.errors}
    d.errors.extend(
        {"attempt": n, "error": UNSETTLED.format(n), "at": round(now, 3)}
        for n in range(1, d.attempt)
        if n not in seen
    )
    d.errors.sort(key=lambda e: int(e.get("attempt") or 0))
