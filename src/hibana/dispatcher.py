"""The dispatcher: the one path every Invocation takes, whatever its trigger.

It applies the function's concurrency gate, starts it on its runtime, enforces the
deadline (cooperative cancellation first; a function still running ``cancel_grace``
seconds later is reported as stuck so its worker can be replaced) and reports an
``Outcome`` the trigger turns into its own answer (an HTTP response, an ack, a retry).
"""

from __future__ import annotations

import asyncio
import time
import types
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from hibana.context import Cancellation, Context, Invocation
from hibana.errors import Cancelled, is_client_error
from hibana.runtimes.python import FunctionThreads
from hibana.telemetry.logs import current_logger
from hibana.telemetry.printed import finish_printed

if TYPE_CHECKING:
    from hibana.app import FunctionSpec

OutcomeKind = Literal["ok", "error", "timeout", "throttled", "cancelled"]


@dataclass(slots=True)
class Outcome:
    kind: OutcomeKind
    value: Any = None
    error: BaseException | None = None


class Meter(Protocol):
    """Counts invocations as they start and end (the host's board row for this worker)."""

    def started(self, column: int, cold_start_ms: float | None) -> None: ...
    def finished(self, column: int, failed: bool = False) -> None: ...
    def failed(self, column: int) -> None: ...
    def hold(self, column: int, count: int) -> None: ...


class Permits(Protocol):
    """Permits of a ``max_concurrency`` shared by several processes (the host's workers,
    through the board), by column. Arrival order holds across them: an invocation that
    arrived at ``ticket`` gets no permit while another process's older one waits."""

    def shares(self, column: int) -> bool: ...
    def admit(self, column: int, limit: int, ticket: float, horizon: float) -> bool: ...
    def give_back(self, column: int) -> None: ...
    def waiting(self, column: int, since: float) -> None: ...
    def passes_on(self, column: int, own: int, ticket: float, horizon: float) -> bool: ...
    def limit(self, column: int, own: int) -> int: ...
    def permits_held(self, column: int) -> int: ...


#: Seconds between looks at the shared permits while invocations wait for one (another
#: process's release is not announced).
PERMIT_POLL = 0.002


class Gate:
    """At most ``limit`` invocations at once; the rest wait in arrival order, for a while.

    With ``shared`` permits the limit holds across processes: a permit is taken from
    them, under the limit in force there (the serving version's; ``limit`` until one is
    set), and one freed goes to a local waiter only if no other process's waits longer
    and the limit in force (lowered, say) leaves room for it.
    ``horizon``: no invocation waits longer than this many seconds."""

    __slots__ = ("limit", "active", "_waiters", "_shared", "_column", "_horizon", "_poll")

    def __init__(
        self, limit: int, shared: Permits | None = None, column: int = 0, horizon: float = 0.0
    ) -> None:
        self.limit = limit
        #: Permits this process holds.
        self.active = 0
        #: (arrival time, future) of each invocation waiting, oldest first.
        self._waiters: deque[tuple[float, asyncio.Future[bool]]] = deque()
        self._shared = shared
        self._column = column
        self._horizon = horizon
        self._poll: asyncio.TimerHandle | None = None

    def try_acquire(self) -> bool:
        if self._waiters:
            return False
        shared = self._shared
        if shared is None:
            if self.active >= self.limit:
                return False
        else:
            # the host's count, this worker's permits among them, under the limit in force
            now = time.monotonic()
            if not shared.admit(self._column, self.limit, now, now - self._horizon):
                return False
        self.active += 1
        return True

    def in_force(self) -> int:
        """The limit kept to now: across processes, the serving version's."""
        shared = self._shared
        return self.limit if shared is None else shared.limit(self._column, self.limit)

    def room(self) -> int:
        """How many more could start now (a snapshot: others may take them first)."""
        shared = self._shared
        if shared is None:
            return max(0, self.limit - self.active - len(self._waiters))
        return max(0, self.in_force() - shared.permits_held(self._column) - len(self._waiters))

    async def acquire(self, timeout: float, cancellation: Cancellation | None = None) -> bool:
        """True once a slot is ours; False if none freed up within ``timeout`` seconds, or
        ``cancellation`` was set first (the client left: it is no one's to run)."""
        if self.try_acquire():
            return True
        if timeout <= 0 or (cancellation is not None and cancellation.is_set()):
            return False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        if cancellation is not None:
            cancellation.on_set = lambda: _resolve(waiter, False)
        entry = (time.monotonic(), waiter)
        self._waiters.append(entry)
        if len(self._waiters) == 1:
            self._head_changed()
        if self._shared is not None and self._poll is None:
            self._poll = loop.call_later(PERMIT_POLL, self._look)
        timer = loop.call_later(timeout, _resolve, waiter, False)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.release()  # handed a slot as the caller was cancelled: pass it on
            raise
        finally:
            timer.cancel()
            if cancellation is not None:
                cancellation.on_set = None
            if self._waiters and self._waiters[0] is entry:
                self._waiters.popleft()
                self._head_changed()
            elif entry in self._waiters:
                self._waiters.remove(entry)

    def release(self) -> None:
        # Hand the slot straight to the oldest waiter, so arrivals cannot jump the queue
        # (unless another process's waits longer: then it is theirs to take).
        shared = self._shared
        if self._live_head() and (
            shared is None
            or not shared.passes_on(
                self._column, self.limit, self._waiters[0][0], time.monotonic() - self._horizon
            )
        ):
            self._hand_over()
            return
        self.active -= 1
        if shared is not None:
            shared.give_back(self._column)

    def _live_head(self) -> bool:
        """Drop the waiters at the front that gave up; True if one is left."""
        dropped = False
        while self._waiters and self._waiters[0][1].done():
            self._waiters.popleft()
            dropped = True
        if dropped:
            self._head_changed()
        return bool(self._waiters)

    def _hand_over(self) -> None:
        """The oldest (live) waiter gets a slot this process holds."""
        _, waiter = self._waiters.popleft()
        waiter.set_result(True)
        self._head_changed()

    def _head_changed(self) -> None:
        if self._shared is not None:
            self._shared.waiting(self._column, self._waiters[0][0] if self._waiters else 0.0)

    def _look(self) -> None:
        """Waiters poll the shared permits: another process's release is not announced."""
        self._poll = None
        shared = self._shared
        assert shared is not None
        horizon = time.monotonic() - self._horizon
        while self._live_head() and shared.admit(
            self._column, self.limit, self._waiters[0][0], horizon
        ):
            self.active += 1
            self._hand_over()
        if self._waiters:
            self._poll = asyncio.get_running_loop().call_later(PERMIT_POLL, self._look)


class _Kept:
    """A permit with two owners: an invocation's function and its trigger."""

    __slots__ = ("gate", "owners")

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.owners = 2


#: Invocations due within this many seconds expire together (one timer, not one each).
_DEADLINE_SLACK = 0.001
_current_task = asyncio.current_task


_set_logger = current_logger.set
_reset_logger = current_logger.reset


def _call_bound(fn: Callable[..., Any], inv: Invocation, ctx: Context) -> Any:
    """A sync function on a pool thread, with ``ctx.log`` as the thread's current logger
    while it runs (what it prints or logs through ``logging`` carries its invocation).
    One whose deadline passed while it waited for a thread is not started: its caller
    has had its answer (504), and a run now would repeat its side effects on a retry.
    Nor is one whose client left meanwhile, as one waiting for a permit is not: it is no
    one's to run, and the client that left retries it."""
    reason = inv.cancellation.reason
    if reason is not None and reason != "shutdown":
        if reason == "timeout":
            raise Cancelled("its deadline passed before a thread was free to run it")
        raise Cancelled("its client left before a thread was free to run it")
    inv.on_thread = True
    bound = _set_logger(ctx.log)
    try:
        value = fn(inv.payload, ctx)
    finally:
        finish_printed(ctx.log)
        _reset_logger(bound)
    if type(value) is types.CoroutineType:
        value.close()  # never to be awaited: no "was never awaited" warning on top
        spec = inv.function
        raise TypeError(
            f"function {spec.name!r} ({spec.source}) is a plain def that returned a "
            "coroutine, so its body never ran: a decorator whose wrapper is a plain def "
            "around an async def does this; make the wrapper `async def` and `return await "
            "fn(...)` in it (functools.wraps alone does not make it async)"
        )
    return value


def _resolve(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


def _outcome(inv: Invocation, value: Any, exc: BaseException | None) -> Outcome:
    """What a function's return or exception means, given whether its deadline passed."""
    if inv.cancellation.reason == "timeout":
        return Outcome("timeout", error=exc)  # too late, whatever it did
    if exc is None:
        return Outcome("ok", value)
    if isinstance(exc, Cancelled) and inv.cancellation.is_set():
        return Outcome("cancelled", error=exc)
    # an exception, or hibana.Cancelled raised of the function's own, unasked: a failure
    return Outcome("error", error=exc)


def _overran(inv: Invocation) -> None:
    """An async function that blocked the loop past its deadline ended before the deadline
    timer could run: it timed out all the same (a 504, a retry), as a sync one would."""
    if inv.cancellation.reason != "timeout" and time.monotonic() >= inv.deadline:
        inv.cancellation.set("timeout")


def _counts_as_failure(inv: Invocation, exc: BaseException) -> bool:
    """An exception that counts as the function failing: not a cancellation it obeyed,
    nor an HTTPError answering a client error (4xx)."""
    if inv.cancellation.reason == "timeout":
        return True
    if isinstance(exc, Cancelled):
        return not inv.cancellation.is_set()  # obeyed, or raised of its own unasked
    return not is_client_error(exc)


def _interrupted(inv: Invocation, exc: BaseException | None) -> Outcome:
    """We stopped waiting: the deadline passed, or the worker abandoned it at shutdown."""
    kind: OutcomeKind = "timeout" if inv.cancellation.reason == "timeout" else "cancelled"
    return Outcome(kind, error=exc)


class _SyncEnd:
    """A sync function's end, told on the loop (the pool's ``then``): it settles the
    accounting, then resolves the future the caller awaits with itself, what the function
    returned or raised set on it. One object, where a closure was a function, a cell for
    each name it used and their tuple: young objects alive across the hop, which is what
    sets off the collector on the sync path."""

    __slots__ = ("column", "dispatcher", "exc", "gate", "inv", "value", "waiter")

    def __init__(
        self,
        dispatcher: Dispatcher,
        inv: Invocation,
        gate: Gate | None,
        column: int,
        waiter: asyncio.Future[_SyncEnd | None],
    ) -> None:
        self.dispatcher = dispatcher
        self.inv = inv
        self.gate = gate
        self.column = column
        self.waiter: asyncio.Future[_SyncEnd | None] | None = waiter
        self.value: Any = None
        self.exc: BaseException | None = None

    def __call__(self, value: Any, exc: BaseException | None) -> None:
        self.value, self.exc = value, exc
        inv = self.inv
        failed = inv.cancellation.reason == "timeout" or (
            exc is not None and _counts_as_failure(inv, exc)
        )
        self.dispatcher._finished(inv, self.gate, self.column, failed)
        waiter, self.waiter = self.waiter, None  # its result is this: no cycle left behind
        if waiter is not None and not waiter.done():
            waiter.set_result(self)


class Dispatcher:
    """Runs Invocations in one worker: gates, deadlines, cancellation, in-flight tracking."""

    def __init__(
        self,
        pool: FunctionThreads,
        *,
        concurrency_wait: float,
        cancel_grace: float,
        on_stuck: Callable[[Invocation], None],
        meter: Meter | None = None,
        permits: Permits | None = None,
        functions: Sequence[str] = (),
        cold_since: float | None = None,
    ) -> None:
        """``meter`` is this worker's row on the board; ``functions`` names its columns.
        ``permits``: the host's, so a ``max_concurrency`` holds across its workers.
        ``cold_since``: when the request that made this worker start began waiting (None
        for a worker started ahead of demand: then ``cold_ms`` is set to its start-up)."""
        self._pool = pool
        self._meter = meter
        self._permits = permits
        self._columns = {name: i for i, name in enumerate(functions)}
        self._cold = True
        self.cold_since = cold_since
        self.cold_ms = 0.0
        self._concurrency_wait = concurrency_wait
        self._cancel_grace = cancel_grace
        self._on_stuck = on_stuck
        self._gates: dict[str, Gate] = {}
        #: The loop the dispatcher runs on: the first one it runs an invocation on.
        self._bound_loop: asyncio.AbstractEventLoop | None = None
        #: Invocations whose function has not returned yet (timed-out ones included).
        self.inflight: dict[str, Invocation] = {}
        #: Invocations waiting for a max_concurrency permit.
        self._waiting: dict[str, Invocation] = {}
        #: How to stop waiting for each in-flight invocation: its caller task (async
        #: functions run in it) or the future the caller awaits (sync functions).
        self._interrupt: dict[str, asyncio.Task[Any] | asyncio.Future[Any]] = {}
        #: Resolved when a function that ``run`` stopped waiting for returns (``ended``).
        self._ending: dict[str, asyncio.Future[None]] = {}
        #: Permits an invocation's trigger keeps past its function's return (it is still
        #: answering: a streamed body), by invocation id: given back by the last to let go.
        self._kept: dict[str, _Kept] = {}
        self._abandoning = False
        self._watch: asyncio.TimerHandle | None = None
        self._watch_at = 0.0

    @property
    def cancel_grace(self) -> float:
        """Seconds a function (or a stream) gets after its deadline before it is cut off."""
        return self._cancel_grace

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = self._bound_loop
        if loop is None:
            loop = self._bound_loop = asyncio.get_running_loop()
        return loop

    def cancel_all(self) -> None:
        """Signal cancellation to every running invocation (the worker is shutting down);
        those still waiting for a max_concurrency permit stop waiting, and do not run."""
        for inv in [*self.inflight.values(), *self._waiting.values()]:
            inv.cancellation.set("shutdown")

    def abandon_all(self) -> None:
        """Stop waiting for running invocations: each gets a "cancelled" outcome now, and
        its function is left to die with the worker."""
        self._abandoning = True
        for inv_id in list(self._interrupt):
            self._wake(inv_id)
        # whoever waits for a timed-out function to end waits no more: it dies with us
        for ending in self._ending.values():
            if not ending.done():
                ending.set_result(None)
        self._ending.clear()

    def _gate(self, spec: FunctionSpec, limit: int) -> Gate:
        gate = self._gates.get(spec.name)
        if gate is None:
            # no one waits longer than concurrency_wait: an older wait is a dead worker's
            horizon = self._concurrency_wait + 1.0
            column = self._columns.get(spec.name)
            # a function without a column in the host's permits gates alone
            permits = self._permits
            sharing = column is not None and permits is not None and permits.shares(column)
            shared = permits if sharing else None
            gate = Gate(limit, shared, column or 0, horizon)
            self._gates[spec.name] = gate
        return gate

    def room(self, spec: FunctionSpec) -> int | None:
        """How many more invocations of ``spec`` its ``max_concurrency`` lets start now
        (None: it has none)."""
        if spec.max_concurrency is None:
            return None
        return self._gate(spec, spec.max_concurrency).room()

    def limit(self, spec: FunctionSpec) -> int | None:
        """``spec``'s max_concurrency in force (None: it has none): while the host reloads,
        the serving version's, which may not be ``spec``'s own."""
        if spec.max_concurrency is None:
            return None
        return self._gate(spec, spec.max_concurrency).in_force()

    async def run(
        self,
        inv: Invocation,
        ctx: Context,
        *,
        keep: bool = False,
        waiting: Callable[[bool], None] | None = None,
    ) -> Outcome:
        """Run ``inv`` under its function's gate and deadline. ``keep``: the trigger goes on
        with the invocation after the function returns (it streams the answer), and calls
        `let_go` when it is done; its ``max_concurrency`` permit is held until then.
        ``waiting`` is told True when ``inv`` starts to wait for a permit, False when the
        wait ends (the HTTP trigger marks its connection: a request that never ran)."""
        spec = inv.function
        gate: Gate | None = None
        if spec.max_concurrency is not None:
            gate = self._gate(spec, spec.max_concurrency)
            if not gate.try_acquire():
                since = time.monotonic()
                wait = min(self._concurrency_wait, inv.latest - since)
                self._waiting[inv.id] = inv
                if waiting is not None:
                    waiting(True)
                try:
                    admitted = await gate.acquire(wait, inv.cancellation)
                finally:
                    del self._waiting[inv.id]
                    if waiting is not None:
                        waiting(False)
                if not admitted:
                    # cancelled while it waited (its client left, the host stops): not run
                    return Outcome("cancelled" if inv.cancellation.is_set() else "throttled")
                # the wait is not the function's: its timeout starts now
                inv.deadline = min(inv.deadline + (time.monotonic() - since), inv.latest)
        deadline = inv.deadline
        if deadline <= time.monotonic():
            if gate is not None:
                gate.release()
            inv.cancellation.set("timeout")
            return Outcome("timeout")
        if keep and gate is not None:
            self._kept[inv.id] = _Kept(gate)
        self.inflight[inv.id] = inv
        if self._cold:
            self._cold = False
            inv.cold_start = True
            inv.cold_start_ms = (
                self.cold_ms
                if self.cold_since is None
                else (time.monotonic() - self.cold_since) * 1000
            )
        column = 0
        if self._meter is not None:
            column = self._columns.get(spec.name, 0)
            self._meter.started(column, inv.cold_start_ms if inv.cold_start else None)
        if self._watch is None or deadline < self._watch_at:
            self._watch_deadlines(deadline)
        if not spec.is_async:
            # awaited here, not in a coroutine of its own: one fewer to make and to resume
            waiter = self._start_sync(inv, ctx, gate, column)
            try:
                ended = await waiter
            finally:
                del self._interrupt[inv.id]
            if ended is None:
                return _interrupted(inv, None)
            return _outcome(inv, ended.value, ended.exc)
        # An async function runs in the caller's task: no task of its own, no extra loop
        # turn, and no coroutine between it and the caller.
        caller = _current_task(self._loop)
        assert caller is not None
        self._interrupt[inv.id] = caller
        failed = True
        bound = _set_logger(ctx.log)  # the caller's task is the function's own
        try:
            value = await spec.handler(inv.payload, ctx)
        except asyncio.CancelledError as exc:
            if inv.cancellation.reason != "timeout" and not self._abandoning:
                if caller.cancelling():
                    raise  # not ours: the request task itself is being cancelled
                # the function's own (it awaited a task that was cancelled, or raised
                # it): a failure like any other exception, answered and logged
                failed = _counts_as_failure(inv, exc)
                return _outcome(inv, None, exc)
            caller.uncancel()
            failed = inv.cancellation.reason == "timeout"
            return _interrupted(inv, exc)
        except BaseException as exc:
            # SystemExit and KeyboardInterrupt too: the function's own (a worker takes its
            # signals on the loop), and out of the task they would stop the worker's loop
            _overran(inv)
            failed = _counts_as_failure(inv, exc)
            return _outcome(inv, None, exc)
        else:
            _overran(inv)
            failed = inv.cancellation.reason == "timeout"
            return _outcome(inv, value, None)
        finally:
            finish_printed(ctx.log)
            _reset_logger(bound)
            del self._interrupt[inv.id]
            self._finished(inv, gate, column, failed)

    # -- deadlines -------------------------------------------------------------------------
    # One timer for all in-flight invocations, set for the earliest deadline: most
    # invocations end long before theirs, so per invocation there is no timer to start
    # and cancel, only a comparison. When it fires it expires what is due and is set
    # again for the next deadline.
    def _watch_deadlines(self, deadline: float) -> None:
        if self._watch is not None:
            self._watch.cancel()
        self._watch_at = deadline
        delay = max(0.0, deadline - time.monotonic())
        self._watch = self._loop.call_later(delay, self._expire_due)

    def _expire_due(self) -> None:
        self._watch = None
        now = time.monotonic() + _DEADLINE_SLACK
        nearest = None
        for inv in list(self.inflight.values()):
            if inv.cancellation.reason == "timeout":
                continue  # expired already; _check_stuck watches it
            if inv.deadline <= now:
                self._expire(inv)
            elif nearest is None or inv.deadline < nearest:
                nearest = inv.deadline
        if nearest is not None:
            self._watch_deadlines(nearest)

    def _start_sync(
        self, inv: Invocation, ctx: Context, gate: Gate | None, column: int
    ) -> asyncio.Future[_SyncEnd | None]:
        """Start a sync function on a pool thread; the caller awaits the future returned,
        which the function's end resolves with its `_SyncEnd` (what it returned or
        raised), and the deadline or abandonment with None. The accounting is settled when
        the function really returns (a thread cannot be stopped, only told)."""
        loop = self._loop
        waiter: asyncio.Future[_SyncEnd | None] = loop.create_future()
        try:
            self._pool.submit(
                loop,
                _SyncEnd(self, inv, gate, column, waiter),
                _call_bound,
                inv.function.handler,
                inv,
                ctx,
            )
        except BaseException:
            self._finished(inv, gate, column)
            raise
        self._interrupt[inv.id] = waiter
        return waiter

    def hold(self, inv: Invocation, count: int = 1) -> None:
        """Count ``inv`` in flight again (1) or no more (-1) after its function returned:
        its trigger is still busy with it (a streaming response), and its worker is not
        idle (the scaler would retire it, cutting the stream)."""
        if self._meter is not None:
            self._meter.hold(self._columns.get(inv.function.name, 0), count)

    def let_go(self, inv: Invocation) -> None:
        """The trigger is done with ``inv`` (run with ``keep``): its permit is given back,
        now or, if its function is still running (timed out), when that returns."""
        kept = self._kept.get(inv.id)
        if kept is not None:
            self._give_back(inv.id, kept.gate)

    def _give_back(self, inv_id: str, gate: Gate) -> None:
        kept = self._kept.get(inv_id)
        if kept is not None:
            kept.owners -= 1
            if kept.owners:
                return  # the other one still has it
            del self._kept[inv_id]
        gate.release()

    def count_failure(self, inv: Invocation) -> None:
        """The invocation ended well but failed after: its trigger could not turn what it
        returned into an answer (a body that is no response, a forged header, a stream
        that broke off). It counts as an error, like a function that raised."""
        if self._meter is not None:
            self._meter.failed(self._columns.get(inv.function.name, 0))

    def _expire(self, inv: Invocation) -> None:
        """The deadline passed: tell the function, stop waiting for it, watch for it to end."""
        inv.cancellation.set("timeout")
        self._wake(inv.id)
        self._loop.call_later(self._cancel_grace, self._check_stuck, inv)

    def _wake(self, inv_id: str) -> None:
        waiting = self._interrupt.get(inv_id)
        if waiting is None:
            return
        if isinstance(waiting, asyncio.Task):
            waiting.cancel()  # the async function gets CancelledError at its next await
        elif not waiting.done():
            waiting.set_result(None)

    def ended(self, inv: Invocation) -> asyncio.Future[None] | None:
        """A future resolved when ``inv``'s function returns, if it is still running after
        ``run`` came back (it timed out: a thread cannot be stopped, only told); else None."""
        if inv.id not in self.inflight or self._abandoning:
            return None  # ended; or the worker stops, and the function dies with it
        ending = self._ending.get(inv.id)
        if ending is None:
            ending = self._ending[inv.id] = self._loop.create_future()
        return ending

    def _finished(
        self, inv: Invocation, gate: Gate | None, column: int, failed: bool = False
    ) -> None:
        self.inflight.pop(inv.id, None)
        ending = self._ending.pop(inv.id, None) if self._ending else None
        if ending is not None and not ending.done():
            ending.set_result(None)
        if self._meter is not None:
            self._meter.finished(column, failed)
        if gate is not None:
            self._give_back(inv.id, gate)

    def _check_stuck(self, inv: Invocation) -> None:
        # a sync one still queued for a thread is not stuck: the threads are busy with
        # others (each watched on its own), and it ends unrun as soon as one is free
        if inv.id in self.inflight and (inv.on_thread or inv.function.is_async):
            self._on_stuck(inv)
