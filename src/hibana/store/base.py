"""The Store: every piece of durable state goes through this one async interface.

Callers (workers, the supervisor, the CLI) await methods on ``Store``. Each call becomes
an operation on a queue that one writer thread drains: all operations waiting at that
moment run in *one* transaction, committed once (group commit), and then every caller
is answered. So an acknowledged enqueue is on disk, and throughput is not bound by one
commit per message. The SQL lives in an ``Engine``; ``SqlEngine`` holds what SQLite and
PostgreSQL share and each engine module adds its own dialect.

Times are seconds since the epoch (floats). Delays are passed relative; the engine adds
them to its own clock (PostgreSQL's, when several hosts share it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hibana.errors import QueueError, StoreError
from hibana.messages import MAX_DELAY

# The engine's interface is part of the Store's: imported from here, defined there.
from hibana.store.engine import ChangeWatcher as ChangeWatcher
from hibana.store.engine import Engine as Engine

#: Rows kept per timer in the fire record (only the latest matters; a few help debugging).
TIMER_FIRES_KEPT = 20

#: How the name of a timer's own queue begins (``timer:NAME``): only its schedule sends there.
TIMER_QUEUE_PREFIX = "timer:"

#: How the body of a timer's startup run (``run_on_startup``) begins: ``fire_timer`` never
#: makes it a slot's, so the run flagged as the startup run is not lost to the next slot.
STARTUP_RUN_PREFIX = b'{"on_startup":true,'


# -- what goes in and out -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NewMessage:
    queue: str
    body: bytes
    delay: float = 0.0
    idempotency_key: str | None = None
    #: W3C traceparent of the enqueuing invocation.
    trace: str | None = None
    #: Seconds an idempotency key is remembered.
    key_ttl: float = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Enqueued:
    id: int
    #: True when the idempotency key was seen before: no new message was written.
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message leased to one consumer until ``lease_until``."""

    id: int
    queue: str
    body: bytes
    #: 1 on the first delivery; it doubles as the lease token (see ``Settle``).
    attempt: int
    enqueued_at: float
    trace: str | None
    #: One entry per failed attempt: {"attempt", "error", "at"}.
    errors: list[dict[str, Any]]
    lease_until: float
    #: When its lease began (monotonic, on the host that claimed it), or a moment before:
    #: the lease ends no sooner than ``leased_at`` + its length on that host's clock.
    leased_at: float


@dataclass(frozen=True, slots=True)
class Settle:
    """What became of a delivery. A settlement whose lease was lost (the message was
    delivered again after the lease ran out) changes nothing."""

    kind: Literal["ack", "retry", "dead", "release", "extend"]
    id: int
    attempt: int
    #: retry: seconds until the message is visible again; extend: until its lease ends
    #: (its function still runs, past its timeout: no other delivery meanwhile).
    delay: float = 0.0
    #: retry / dead: the error of this attempt.
    error: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: dead: this delivery was not run (set aside as it was claimed): it is no attempt.
    unrun: bool = False


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue as the app declares it (the CLI checks sends against these)."""

    name: str
    function: str
    max_attempts: int


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    """An event subscription as the app declares it: events of ``topic`` that pass
    ``filter`` (its JSON form; None: all) go to ``queue``."""

    function: str
    topic: str
    queue: str
    filter: str | None


@dataclass(frozen=True, slots=True)
class QueueStats:
    queue: str
    #: Visible now (a message whose lease ran out counts here again).
    ready: int
    delayed: int
    in_flight: int
    dead: int
    #: Seconds since the oldest message still in the queue was enqueued; None if empty.
    oldest_age: float | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    queue: str
    body: bytes
    attempts: int
    errors: list[dict[str, Any]]
    enqueued_at: float
    died_at: float
    trace: str | None


# -- the async facade -----------------------------------------------------------------------
#: Operations whose items the writer may merge into one call when several wait at once.
_MERGEABLE = frozenset({"enqueue", "settle"})
_READS = frozenset(
    {
        "declared",
        "ready",
        "next_visible",
        "stats",
        "dead_letters",
        "last_fire",
        "subscriptions",
        "secrets",
    }
)


@dataclass(slots=True)
class _Op:
    name: str
    args: tuple[Any, ...]
    #: Resolved on the caller's loop: (result, None) or (None, exception).
    done: Callable[[Any, BaseException | None], None]


#: Seconds between tries of the settlements held (the server is away) while nothing
#: else is asked for; each try waits for the server as an operation does.
HELD_RETRY = 0.5

#: How long the last writes may take as a host process exits with ``Store.close``: a
#: database that stopped answering must not keep it from exiting.
CLOSE_TIMEOUT = 5.0


class Store:
    """The async interface to a store engine. Safe to use from several event loops and
    threads at once; every call is answered after its transaction commits."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._ops: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()
        #: Settlements that failed with the connection, written first in the next
        #: transaction (see ``_hold``); the writer thread's alone.
        self._held: list[_Op] = []

    @property
    def display(self) -> str:
        return self.engine.display

    def watcher(self) -> ChangeWatcher | None:
        """See ``ChangeWatcher``; None when the engine cannot tell (consumers poll)."""
        try:
            return self.engine.watcher()
        except Exception:
            return None  # polling still finds every message

    # lifecycle
    def open(self) -> None:
        """Connect and create or migrate the schema; raises StoreError naming the problem."""
        with self._lock:
            if self._thread is not None:
                return
            try:
                self.engine.connect()
            except StoreError:
                raise
            except Exception as exc:
                raise StoreError(f"cannot open the store {self.engine.display}: {exc}") from exc
            self._thread = threading.Thread(
                target=self._write_loop, name="hibana-store", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float | None = None) -> bool:
        """Finish every operation already asked for, then disconnect. False if they did not
        finish within ``timeout`` seconds (a database that stopped answering): they are
        left to the writer thread, which dies with the process, and nothing is closed."""
        with self._lock:
            if self._thread is None or self._closed:
                return True
            self._closed = True
            self._ops.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        self.engine.close()
        return True

    # operations
    async def declare(self, queues: Sequence[QueueInfo]) -> None:
        await self._call("declare", tuple(queues))

    async def declared(self) -> list[QueueInfo]:
        result: list[QueueInfo] = await self._call("declared")
        return result

    async def enqueue(self, message: NewMessage) -> Enqueued:
        """Write ``message``; QueueError, and nothing written, for a timer's own queue."""
        _checked(message)
        result: list[Enqueued] = await self._call("enqueue", [message])
        return result[0]

    async def enqueue_many(self, messages: Sequence[NewMessage]) -> list[Enqueued]:
        """Write ``messages`` in one go; QueueError, and none written, if one is for a
        timer's own queue."""
        if not messages:
            return []
        for m in messages:
            _checked(m)
        result: list[Enqueued] = await self._call("enqueue", list(messages))
        return result

    async def claim(
        self,
        queue: str,
        owner: str,
        limit: int,
        lease: float,
        group: tuple[str, int] | None = None,
    ) -> list[Delivery]:
        """Lease up to ``limit`` visible messages of ``queue`` for ``lease`` seconds.
        ``group`` (name, limit): claim only while the group's leases stay under its limit,
        counted across every host sharing the store."""
        result: list[Delivery] = await self._call("claim", queue, owner, limit, lease, group)
        return result

    async def settle(self, item: Settle) -> None:
        await self._call("settle", [item])

    async def settle_many(self, items: Sequence[Settle]) -> None:
        if items:
            await self._call("settle", list(items))

    async def ready(self, queues: Sequence[str]) -> int:
        """How many messages of ``queues`` are visible now."""
        result: int = await self._call("ready", tuple(queues))
        return result

    async def next_visible(self, queues: Sequence[str]) -> float | None:
        """Seconds until a message of ``queues`` can be claimed: 0 if one can now, else
        when the first that is hidden (delayed, waiting to be retried, or leased) shows;
        None if they hold no message."""
        result: float | None = await self._call("next_visible", tuple(queues))
        return result

    async def stats(self) -> list[QueueStats]:
        result: list[QueueStats] = await self._call("stats")
        return result

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        result: list[DeadLetter] = await self._call("dead_letters", queue, limit)
        return result

    async def redrive(self, queue: str, ids: Sequence[int] | None = None) -> int:
        """Move dead letters of ``queue`` (all, or those ``ids``) back into it, with their
        attempts reset; returns how many moved."""
        result: int = await self._call("redrive", queue, None if ids is None else tuple(ids))
        return result

    async def fire_timer(
        self, function: str, slot: float, message: NewMessage, replacing: bytes
    ) -> bool:
        """Record that ``function``'s ``slot`` fired and enqueue ``message``, atomically;
        False (and nothing enqueued) if some host fired that slot already. When an earlier
        slot's message still waits unclaimed, it is not run: it takes ``replacing`` as its
        body instead of a second message being enqueued. A startup run (its body begins
        with ``STARTUP_RUN_PREFIX``) is no slot's: it is never replaced."""
        result: bool = await self._call("fire_timer", function, slot, message, replacing)
        return result

    async def startup_run(self, message: NewMessage) -> bool:
        """Enqueue ``message``, a timer's startup run (its body begins with
        ``STARTUP_RUN_PREFIX``), unless one waits unclaimed on its queue already: that one
        runs after this start too. False then, and nothing enqueued."""
        result: bool = await self._call("startup_run", message)
        return result

    async def last_fire(self, function: str) -> float | None:
        result: float | None = await self._call("last_fire", function)
        return result

    async def purge(self) -> int:
        """Forget idempotency keys past their retention; returns how many."""
        result: int = await self._call("purge")
        return result

    async def subscribe(self, subscriptions: Sequence[SubscriptionInfo]) -> None:
        await self._call("subscribe", tuple(subscriptions))

    async def subscriptions(self) -> list[SubscriptionInfo]:
        result: list[SubscriptionInfo] = await self._call("subscriptions")
        return result

    async def publish(
        self, topic: str, key: str, messages: Sequence[NewMessage], ttl: float = 24 * 3600.0
    ) -> bool:
        """Enqueue one event's deliveries (one message per matching subscription) unless
        ``key`` (the event's source and id) was published to ``topic`` within ``ttl``
        seconds: a provider's retry is not processed twice. False for a duplicate.
        QueueError, and nothing written, as ``enqueue_many`` refuses a message."""
        for m in messages:
            _checked(m)
        result: bool = await self._call("publish", topic, key, ttl, tuple(messages))
        return result

    async def put_secret(self, name: str, value: bytes) -> None:
        """Store an (already encrypted) secret."""
        await self._call("put_secret", name, value)

    async def secrets(self, names: Sequence[str] | None = None) -> dict[str, bytes]:
        """Encrypted secrets by name: those ``names`` (all when None)."""
        result: dict[str, bytes] = await self._call(
            "secrets", None if names is None else tuple(names)
        )
        return result

    async def delete_secret(self, name: str) -> bool:
        result: bool = await self._call("delete_secret", name)
        return result

    # the writer
    async def _call(self, name: str, *args: Any) -> Any:
        if self._thread is None:
            self.open()
        if self._closed:
            raise StoreError(f"the store {self.engine.display} is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def settle(fut: asyncio.Future[Any], value: Any, exc: BaseException | None) -> None:
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(value)

        def done(value: Any, exc: BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the caller's loop has closed
                loop.call_soon_threadsafe(settle, fut, value, exc)

        self._ops.put(_Op(name, args, done))
        return await fut

    def _write_loop(self) -> None:
        while True:
            try:
                # held settlements are tried again even while nothing else is asked for
                first = self._ops.get(timeout=HELD_RETRY if self._held else None)
            except queue.Empty:
                self._run([])
                continue
            if first is None:
                if self._held:
                    self._run([], final=True)
                return
            batch = [first]
            stop = False
            while True:
                try:
                    op = self._ops.get_nowait()
                except queue.Empty:
                    break
                if op is None:
                    stop = True
                    break
                batch.append(op)
            self._run(batch, final=stop)
            if stop:
                return

    def _run(self, batch: list[_Op], final: bool = False) -> None:
        """Run ``batch`` in one transaction, after the settlements held (see ``_hold``):
        a claim never runs before them. ``final``: the store is closing, and what cannot
        be written now fails."""
        batch, self._held = [*self._held, *batch], []
        if not batch:
            return
        write = any(op.name not in _READS for op in batch)
        try:
            try:
                with self.engine.transaction(write) as now:
                    results = [(op, self._apply(now, op)) for op in _merged(batch)]
            except Exception as exc:
                if not self.engine.lost_connection(exc):
                    raise
                # once more, on a new connection (the engine reconnects)
                with self.engine.transaction(write) as now:
                    results = [(op, self._apply(now, op)) for op in _merged(batch)]
        except Exception as exc:
            lost = self.engine.connection_failed(exc)
            if len(batch) > 1 and not lost:
                # One bad operation must not fail the others: run each on its own.
                for op in batch:
                    self._run([op], final)
                return
            error = exc if isinstance(exc, StoreError) else _store_error(self.engine, exc)
            if lost and not final:
                batch = self._hold(batch, self.engine.in_doubt(exc))
            for op in batch:
                op.done(None, error)
            return
        for op, result in results:
            op.done(result, None)

    def _hold(self, batch: list[_Op], in_doubt: bool) -> list[_Op]:
        """Keep the settlements of ``batch``, which failed with the connection (the
        server is away), to be written first in the next transaction; returns the rest,
        to fail. A settlement's caller waits until it is written: its message's lease may
        run out meanwhile, and a claim that ran first (this worker's next, once the server
        is back) would take the message again, and run it twice. Written twice, a
        settlement changes nothing the second time (its attempt, the lease token, no
        longer matches, or the row is gone), except a release (it gives back an attempt):
        one that may have been committed (``in_doubt``: the connection went during the
        COMMIT) fails, naming its messages, and is not written again."""
        rest: list[_Op] = []
        for op in batch:
            if op.name != "settle":
                rest.append(op)
                continue
            items: list[Settle] = op.args[0]
            released = [s.id for s in items if s.kind == "release"] if in_doubt else []
            if not released:
                self._held.append(op)
                continue
            kept = [s for s in items if s.kind != "release"]
            unknown = StoreError(
                f"the store {self.engine.display} lost its connection during a COMMIT: "
                f"whether message{'s' if len(released) > 1 else ''} "
                f"{', '.join(map(str, released))} {'were' if len(released) > 1 else 'was'} "
                "released is not known, so the release is not written again (a message "
                "not released is delivered again once its lease ends)"
            )
            if kept:
                self._held.append(_Op("settle", (kept,), _failing(op.done, unknown)))
            else:
                op.done(None, unknown)
        return rest

    def _apply(self, now: float, op: _Op) -> Any:
        method: Callable[..., Any] = getattr(self.engine, op.name)
        return method(now, *op.args)


def _checked(message: NewMessage) -> None:
    """Refuse ``message`` (QueueError) if it is for a timer's own queue: what waits there is
    taken for a slot, so the next slot to fire would replace it unrun (``fire_timer``), and
    one that reached a worker would be dropped (it is no slot). Or if its delay or key
    retention is no number of seconds the engines keep alike: a NaN failed on SQLite (no
    NULL there) and parked the message unseen for ever on PostgreSQL."""
    delay, ttl = message.delay, message.key_ttl
    if not (isinstance(delay, int | float) and delay <= MAX_DELAY and not math.isnan(delay)):
        raise QueueError(
            f"the message for queue {message.queue!r} has delay={delay!r}: a delay is a "
            f"number of seconds from 0 to {MAX_DELAY:.0f} (365 days); nothing was written"
        )
    if not (isinstance(ttl, int | float) and 0 <= ttl < math.inf):
        raise QueueError(
            f"the message for queue {message.queue!r} has key_ttl={ttl!r}: it is the "
            "seconds its idempotency key is remembered, a finite number, 0 or more; "
            "nothing was written"
        )
    if message.queue.startswith(TIMER_QUEUE_PREFIX):
        raise QueueError(
            f"{message.queue!r} is a timer's own queue: its schedule sends to it, nothing "
            "else may (nothing was written); to run the timer function now, give it "
            "run_on_startup=True, or call its code from a function of your own"
        )


def _failing(
    done: Callable[[Any, BaseException | None], None], error: BaseException
) -> Callable[[Any, BaseException | None], None]:
    """``done``, given ``error`` whatever the operation's own outcome."""
    return lambda _, exc: done(None, exc or error)


def _store_error(engine: Engine, exc: Exception) -> StoreError:
    err = StoreError(f"the store {engine.display} failed: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


def _merged(batch: list[_Op]) -> list[_Op]:
    """Merge each run of enqueues (and of settlements) into one call, whose result is
    split back among the callers: one executemany instead of many executes."""
    out: list[_Op] = []
    i = 0
    while i < len(batch):
        op = batch[i]
        j = i + 1
        while j < len(batch) and op.name in _MERGEABLE and batch[j].name == op.name:
            j += 1
        if j - i == 1:
            out.append(op)
        else:
            group = batch[i:j]
            items = [item for member in group for item in member.args[0]]
            out.append(_Op(op.name, (items,), _splitter(group)))
        i = j
    return out


def _splitter(group: list[_Op]) -> Callable[[Any, BaseException | None], None]:
    def done(value: Any, exc: BaseException | None) -> None:
        at = 0
        for member in group:
            n = len(member.args[0])
            member.done(None if value is None else value[at : at + n], exc)
            at += n

    return done


def dump_errors(errors: list[dict[str, Any]]) -> str:
    return json.dumps(errors, separators=(",", ":"))


def load_errors(text: str | None) -> list[dict[str, Any]]:
    if not text:
        return []
    value = json.loads(text)
    return value if isinstance(value, list) else []
