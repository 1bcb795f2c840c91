"""``Gate`` (max_concurrency) and ``Dispatcher.run``: outcomes, deadlines, cancellation, stuck."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

import hibana
from hibana import Cancelled, Context, FunctionSpec, Invocation
from hibana.dispatcher import Dispatcher, Gate, Outcome
from hibana.host.board import PermitTable
from hibana.runtimes.python import FunctionThreads
from hibana.telemetry.log_sink import LogSink
from hibana.telemetry.logs import Logger
from hibana.telemetry.trace import continue_or_start

T = TypeVar("T")
_ids = itertools.count(1)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def spec_of(
    fn: Callable[..., Any], *, timeout: float = 2.0, max_concurrency: int | None = None
) -> FunctionSpec:
    app = hibana.App()
    app.http("/f", timeout=timeout, max_concurrency=max_concurrency)(fn)
    return app.functions[0]


def invocation(spec: FunctionSpec, payload: Any = None) -> tuple[Invocation, Context]:
    inv = Invocation(
        id=f"inv-{next(_ids)}",
        function=spec,
        payload=payload,
        trace=continue_or_start(None),
        deadline=time.monotonic() + spec.timeout,
    )
    return inv, Context(inv, Logger(LogSink(), {}))


async def wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.005)


class Harness:
    """A Dispatcher on a thread pool that records the invocations reported stuck."""

    def __init__(
        self, pool: FunctionThreads, concurrency_wait: float = 1.0, cancel_grace: float = 0.05
    ) -> None:
        self.stuck: list[Invocation] = []
        self.dispatcher = Dispatcher(
            pool,
            concurrency_wait=concurrency_wait,
            cancel_grace=cancel_grace,
            on_stuck=self.stuck.append,
        )

    async def call(self, spec: FunctionSpec, payload: Any = None) -> tuple[Outcome, Context]:
        inv, ctx = invocation(spec, payload)
        return await self.dispatcher.run(inv, ctx), ctx


@pytest.fixture
def pool() -> Iterator[FunctionThreads]:
    executor = FunctionThreads(4, name="test-fn")
    yield executor
    executor.shutdown(wait=True)  # functions left running by a test finish before the next


# --- Gate ----------------------------------------------------------------------------------


def test_gate_admits_up_to_its_limit() -> None:
    gate = Gate(2)
    assert gate.try_acquire()
    assert gate.try_acquire()
    assert not gate.try_acquire()
    assert gate.active == 2
    gate.release()
    assert gate.active == 1
    assert gate.try_acquire()


def test_gate_acquire_gives_up_after_the_timeout() -> None:
    async def main() -> None:
        gate = Gate(1)
        assert await gate.acquire(0.5)  # free: at once
        start = time.monotonic()
        assert await gate.acquire(0.03) is False
        assert 0.025 <= time.monotonic() - start < 0.5
        start = time.monotonic()
        assert await gate.acquire(0) is False  # no wait at all
        assert time.monotonic() - start < 0.01
        assert gate.active == 1

    run(main())


def test_gate_hands_slots_to_waiters_in_arrival_order() -> None:
    async def main() -> None:
        gate = Gate(1)
        assert gate.try_acquire()
        order: list[str] = []

        async def waiter(name: str) -> None:
            assert await gate.acquire(1.0)
            order.append(name)

        tasks = [asyncio.create_task(waiter(name)) for name in "abc"]
        await asyncio.sleep(0.01)
        assert order == []
        for expected in (["a"], ["a", "b"], ["a", "b", "c"]):
            gate.release()
            assert gate.active == 1  # handed over, not freed
            assert not gate.try_acquire()  # a newcomer cannot take it
            await asyncio.sleep(0.005)
            assert order == expected
        await asyncio.gather(*tasks)
        gate.release()
        assert gate.active == 0

    run(main())


def test_gate_skips_waiters_that_gave_up_or_were_cancelled() -> None:
    async def main() -> None:
        gate = Gate(1)
        assert gate.try_acquire()
        impatient = asyncio.create_task(gate.acquire(0.01))
        cancelled = asyncio.create_task(gate.acquire(1.0))
        patient = asyncio.create_task(gate.acquire(1.0))
        await asyncio.sleep(0.005)
        cancelled.cancel()
        assert await impatient is False
        gate.release()
        assert await patient is True
        assert cancelled.cancelled()
        assert gate.active == 1
        gate.release()
        assert gate.active == 0

    run(main())


# --- outcomes ------------------------------------------------------------------------------


def test_jobs_submitted_together_run_together_when_one_thread_is_idle() -> None:
    # one thread is idle; two jobs arrive before it wakes: each gets a thread of its own
    threads = FunctionThreads(4, name="test-together")
    met = threading.Barrier(2, timeout=5)

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        ended: list[Any] = []

        def then(value: Any, exc: BaseException | None) -> None:
            ended.append(exc if exc is not None else value)

        threads.submit(loop, then, lambda: "warm")
        await wait_until(lambda: len(ended) == 1)
        await asyncio.sleep(0.01)  # the thread is back waiting for a job
        for _ in range(2):
            threads.submit(loop, then, met.wait)  # each waits for the other to start
        await wait_until(lambda: len(ended) == 3, timeout=10)
        return ended

    try:
        ended = run(main())
    finally:
        threads.shutdown(wait=True)
    assert ended[0] == "warm"
    assert sorted(ended[1:]) == [0, 1]  # both met (a BrokenBarrierError: they ran in turn)
    assert len(threads._threads) == 2


def test_jobs_one_after_another_share_one_thread_and_many_at_once_are_capped() -> None:
    # a job that finds a thread back from its last one takes it; many at once start no
    # more than max_threads, and the ones past it wait for a thread, none lost
    threads = FunctionThreads(3, name="test-reuse")
    gate = threading.Event()

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        ended: list[Any] = []

        def then(value: Any, exc: BaseException | None) -> None:
            ended.append(exc if exc is not None else value)

        for i in range(5):
            threads.submit(loop, then, lambda i=i: i)
            count = i + 1
            await wait_until(lambda: len(ended) == count)  # noqa: B023
            await asyncio.sleep(0.01)  # the thread is back waiting for a job
        assert len(threads._threads) == 1
        for i in range(8):
            threads.submit(loop, then, lambda i=i: gate.wait(5) and i + 10)
        gate.set()
        await wait_until(lambda: len(ended) == 13, timeout=10)
        return ended

    try:
        ended = run(main())
    finally:
        threads.shutdown(wait=True)
    assert ended[:5] == [0, 1, 2, 3, 4]
    assert sorted(ended[5:]) == list(range(10, 18))
    assert len(threads._threads) == 3


def test_sync_function_runs_on_the_pool_and_returns_ok(pool: FunctionThreads) -> None:
    seen: dict[str, Any] = {}

    def fn(payload: Any, ctx: Context) -> dict[str, Any]:
        seen["thread"] = threading.current_thread().name
        seen["name"] = ctx.function_name
        seen["remaining"] = ctx.remaining
        return {"echo": payload}

    async def main() -> None:
        h = Harness(pool)
        outcome, ctx = await h.call(spec_of(fn), "hi")
        assert outcome == Outcome("ok", {"echo": "hi"})
        assert not ctx.cancelled
        await asyncio.sleep(0)
        assert h.dispatcher.inflight == {}

    run(main())
    assert seen["thread"].startswith("test-fn")
    assert seen["name"] == "fn"
    assert 0 < seen["remaining"] <= 2.0


def test_async_function_runs_on_the_loop_and_returns_ok(pool: FunctionThreads) -> None:
    async def fn(payload: Any, ctx: Context) -> str:
        await asyncio.sleep(0.001)
        assert threading.current_thread() is threading.main_thread()
        return f"hello {payload}"

    async def main() -> None:
        h = Harness(pool)
        outcome, _ = await h.call(spec_of(fn), "world")
        assert outcome == Outcome("ok", "hello world")
        await asyncio.sleep(0)
        assert h.dispatcher.inflight == {}

    run(main())


@pytest.mark.parametrize("is_async", [False, True])
def test_an_exception_is_an_error_outcome(pool: FunctionThreads, is_async: bool) -> None:
    problem = ValueError("no such item: 42")

    def sync_fn(payload: Any, ctx: Context) -> None:
        raise problem

    async def async_fn(payload: Any, ctx: Context) -> None:
        raise problem

    async def main() -> None:
        h = Harness(pool)
        outcome, _ = await h.call(spec_of(async_fn if is_async else sync_fn))
        assert outcome.kind == "error"
        assert outcome.error is problem
        assert outcome.value is None

    run(main())


def test_an_http_error_is_an_error_outcome_carrying_it(pool: FunctionThreads) -> None:
    def fn(payload: Any, ctx: Context) -> None:
        raise hibana.BadRequest("name is required")

    async def main() -> None:
        outcome, _ = await Harness(pool).call(spec_of(fn))
        assert outcome.kind == "error"
        assert isinstance(outcome.error, hibana.BadRequest)
        assert outcome.error.status == 400

    run(main())


# --- deadlines and cancellation ------------------------------------------------------------


def test_sync_timeout_sets_cancellation_and_a_cooperative_function_is_not_stuck(
    pool: FunctionThreads,
) -> None:
    returned = threading.Event()

    def fn(payload: Any, ctx: Context) -> str:
        while not ctx.cancelled:
            time.sleep(0.002)
        returned.set()
        return "gave up"

    async def main() -> None:
        h = Harness(pool, cancel_grace=0.05)
        start = time.monotonic()
        outcome, ctx = await h.call(spec_of(fn, timeout=0.03))
        assert outcome.kind == "timeout"
        assert 0.025 <= time.monotonic() - start < 0.5
        assert ctx.cancelled
        assert ctx.cancel_reason == "timeout"
        with pytest.raises(Cancelled):
            ctx.raise_if_cancelled()
        await wait_until(returned.is_set)
        await wait_until(lambda: not h.dispatcher.inflight)
        await asyncio.sleep(0.1)  # past cancel_grace
        assert h.stuck == []

    run(main())


def test_sync_function_ignoring_cancellation_is_reported_stuck_after_the_grace(
    pool: FunctionThreads,
) -> None:
    def fn(payload: Any, ctx: Context) -> str:
        time.sleep(0.3)  # never looks at ctx.cancelled
        return "too late"

    async def main() -> None:
        h = Harness(pool, cancel_grace=0.05)
        inv, ctx = invocation(spec_of(fn, timeout=0.02))
        outcome = await h.dispatcher.run(inv, ctx)
        timed_out = time.monotonic()
        assert outcome.kind == "timeout"
        assert ctx.cancelled
        assert h.stuck == []  # not before cancel_grace
        assert inv.id in h.dispatcher.inflight  # still running, so still in flight
        await wait_until(lambda: bool(h.stuck))
        assert time.monotonic() - timed_out >= 0.04
        assert h.stuck == [inv]
        await wait_until(lambda: not h.dispatcher.inflight)  # gone once it returns
        assert h.stuck == [inv]

    run(main())


def test_async_timeout_cancels_the_task(pool: FunctionThreads) -> None:
    state: dict[str, bool] = {}

    async def fn(payload: Any, ctx: Context) -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            state["cancelled"] = ctx.cancelled
            raise
        return "never"

    async def main() -> None:
        h = Harness(pool, cancel_grace=0.05)
        start = time.monotonic()
        outcome, ctx = await h.call(spec_of(fn, timeout=0.03))
        assert outcome.kind == "timeout"
        assert time.monotonic() - start < 0.5
        assert ctx.cancelled
        assert ctx.cancel_reason == "timeout"
        await wait_until(lambda: not h.dispatcher.inflight)
        await asyncio.sleep(0.1)
        assert h.stuck == []

    run(main())
    assert state == {"cancelled": True}


def test_async_function_that_swallows_cancellation_is_reported_stuck(
    pool: FunctionThreads,
) -> None:
    async def fn(payload: Any, ctx: Context) -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)  # carries on regardless
        return "late"

    async def main() -> None:
        h = Harness(pool, cancel_grace=0.03)
        inv, ctx = invocation(spec_of(fn, timeout=0.02))
        assert (await h.dispatcher.run(inv, ctx)).kind == "timeout"
        await wait_until(lambda: bool(h.stuck))
        assert h.stuck == [inv]
        await wait_until(lambda: not h.dispatcher.inflight)

    run(main())


def test_cancel_all_tells_running_functions_to_stop(pool: FunctionThreads) -> None:
    def fn(payload: Any, ctx: Context) -> str:
        while True:
            ctx.raise_if_cancelled()
            time.sleep(0.002)

    async def main() -> None:
        h = Harness(pool)
        inv, ctx = invocation(spec_of(fn, timeout=2.0))
        task = asyncio.create_task(h.dispatcher.run(inv, ctx))
        await wait_until(lambda: inv.id in h.dispatcher.inflight)
        h.dispatcher.cancel_all()
        outcome = await task
        assert outcome.kind == "cancelled"
        assert isinstance(outcome.error, Cancelled)
        assert ctx.cancel_reason == "shutdown"

    run(main())


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_deadline_passing_after_a_shutdown_signal_is_still_a_timeout(
    pool: FunctionThreads, is_async: bool
) -> None:
    # told to stop at shutdown, it ignores that, and then overruns its deadline too: that
    # is a timeout (and it is reported stuck), not a cancellation it obeyed
    def sync_fn(payload: Any, ctx: Context) -> str:
        time.sleep(0.6)
        return "late"

    async def async_fn(payload: Any, ctx: Context) -> str:
        await asyncio.sleep(0.6)
        return "late"

    async def main() -> None:
        h = Harness(pool)
        inv, ctx = invocation(spec_of(async_fn if is_async else sync_fn, timeout=0.2))
        task = asyncio.create_task(h.dispatcher.run(inv, ctx))
        await wait_until(lambda: inv.id in h.dispatcher.inflight)
        h.dispatcher.cancel_all()
        told = ctx.cancel_reason
        outcome = await task
        assert outcome.kind == "timeout"
        assert (told, ctx.cancel_reason) == ("shutdown", "timeout")
        if not is_async:
            await wait_until(lambda: h.stuck == [inv])

    run(main())


def test_abandon_all_answers_running_invocations_at_once(pool: FunctionThreads) -> None:
    async def fn(payload: Any, ctx: Context) -> str:
        await asyncio.sleep(0.2)
        return "done"

    async def main() -> None:
        h = Harness(pool)
        inv, ctx = invocation(spec_of(fn, timeout=2.0))
        task = asyncio.create_task(h.dispatcher.run(inv, ctx))
        await wait_until(lambda: inv.id in h.dispatcher.inflight)
        start = time.monotonic()
        h.dispatcher.abandon_all()
        assert (await task).kind == "cancelled"
        assert time.monotonic() - start < 0.1

    run(main())


# --- max_concurrency -----------------------------------------------------------------------


def test_over_max_concurrency_waits_then_is_throttled(pool: FunctionThreads) -> None:
    calls: list[Any] = []

    async def main() -> None:
        release = asyncio.Event()

        async def fn(payload: Any, ctx: Context) -> Any:
            calls.append(payload)
            await release.wait()
            return payload

        spec = spec_of(fn, max_concurrency=1)
        h = Harness(pool, concurrency_wait=0.03)
        first = asyncio.create_task(h.call(spec, 1))
        await wait_until(lambda: calls == [1])
        start = time.monotonic()
        outcome, _ = await h.call(spec, 2)
        assert outcome.kind == "throttled"
        assert 0.025 <= time.monotonic() - start < 0.5
        assert calls == [1]  # the throttled one never ran
        release.set()
        assert (await first)[0] == Outcome("ok", 1)
        assert (await h.call(spec, 3))[0] == Outcome("ok", 3)

    run(main())


def test_an_invocation_cancelled_while_it_waits_is_not_run(pool: FunctionThreads) -> None:
    calls: list[Any] = []

    async def main() -> None:
        release = asyncio.Event()

        async def fn(payload: Any, ctx: Context) -> Any:
            calls.append(payload)
            await release.wait()
            return payload

        spec = spec_of(fn, max_concurrency=1)
        h = Harness(pool, concurrency_wait=5.0)
        first = asyncio.create_task(h.call(spec, 1))
        await wait_until(lambda: calls == [1])
        inv, ctx = invocation(spec, 2)
        waiting = asyncio.create_task(h.dispatcher.run(inv, ctx))
        await asyncio.sleep(0.01)
        start = time.monotonic()
        inv.cancellation.set("client_disconnected")  # its client left while it waited
        assert await waiting == Outcome("cancelled")
        assert time.monotonic() - start < 0.5  # at once, not at the end of the wait
        release.set()
        assert (await first)[0] == Outcome("ok", 1)
        assert (await h.call(spec, 3))[0] == Outcome("ok", 3)  # its slot was not taken
        assert calls == [1, 3]

    run(main())


def test_a_waiting_invocation_runs_when_a_slot_frees(pool: FunctionThreads) -> None:
    running = 0
    peak = 0

    async def fn(payload: Any, ctx: Context) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        return payload

    async def main() -> None:
        spec = spec_of(fn, max_concurrency=2)
        h = Harness(pool, concurrency_wait=1.0)
        results = await asyncio.gather(*(h.call(spec, i) for i in range(5)))
        assert [outcome for outcome, _ in results] == [Outcome("ok", i) for i in range(5)]

    run(main())
    assert peak == 2


def test_the_wait_for_a_slot_does_not_count_against_the_timeout(pool: FunctionThreads) -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def fn(payload: str, ctx: Context) -> float:
            if payload == "hold":
                await release.wait()
            else:
                await asyncio.sleep(0.05)
            return ctx.remaining

        h = Harness(pool, concurrency_wait=5.0)
        # a timeout with room for a loaded machine: its 0.05 s of work must not outrun it
        spec = spec_of(fn, max_concurrency=1, timeout=1.0)
        # the same function (one gate), its holder with a longer timeout
        first = asyncio.create_task(h.call(spec_of(fn, max_concurrency=1), "hold"))
        await asyncio.sleep(0.005)
        asyncio.get_running_loop().call_later(1.2, release.set)
        started = time.monotonic()
        outcome, _ = await h.call(spec, "work")
        # it waited for the permit longer than its timeout, and still had that to run
        assert outcome.kind == "ok"
        assert 0 < outcome.value < 1.0
        assert time.monotonic() - started > 1.2
        await first

    run(main())


def test_waiting_for_a_slot_stops_at_the_latest_deadline(pool: FunctionThreads) -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def fn(payload: Any, ctx: Context) -> None:
            await release.wait()

        h = Harness(pool, concurrency_wait=5.0)
        first = asyncio.create_task(h.call(spec_of(fn, max_concurrency=1, timeout=2.0)))
        await asyncio.sleep(0.005)
        inv, ctx = invocation(spec_of(fn, max_concurrency=1, timeout=2.0))
        inv.latest = time.monotonic() + 0.05  # a lease's end, a caller's own deadline
        start = time.monotonic()
        outcome = await h.dispatcher.run(inv, ctx)
        assert outcome.kind == "throttled"
        assert time.monotonic() - start < 1.0
        release.set()
        await first

    run(main())


def test_a_slot_freed_just_before_the_latest_deadline_leaves_no_time_to_run(
    pool: FunctionThreads,
) -> None:
    async def main() -> None:
        release = asyncio.Event()
        ran: list[str] = []

        async def fn(payload: str, ctx: Context) -> None:
            ran.append(payload)
            if payload == "first":
                await release.wait()
            else:
                await asyncio.sleep(1.0)

        h = Harness(pool, concurrency_wait=5.0)
        spec = spec_of(fn, max_concurrency=1, timeout=2.0)
        first = asyncio.create_task(h.call(spec, "first"))
        await asyncio.sleep(0.005)
        inv, ctx = invocation(spec, "second")
        inv.latest = time.monotonic() + 0.3
        asyncio.get_running_loop().call_later(0.1, release.set)
        outcome = await h.dispatcher.run(inv, ctx)
        # admitted with 0.2 s left of its latest: it runs with that, not its 2 s timeout
        assert outcome.kind == "timeout"
        assert ran == ["first", "second"]
        await first

    run(main())


def test_a_timed_out_sync_function_keeps_its_slot_until_it_returns(
    pool: FunctionThreads,
) -> None:
    def fn(payload: str, ctx: Context) -> str:
        if payload == "slow":
            time.sleep(0.15)
        return payload

    async def main() -> None:
        spec = spec_of(fn, max_concurrency=1, timeout=0.03)
        h = Harness(pool, concurrency_wait=0.0, cancel_grace=1.0)
        assert (await h.call(spec, "slow"))[0].kind == "timeout"
        assert (await h.call(spec, "fast"))[0].kind == "throttled"  # its thread still runs
        await wait_until(lambda: not h.dispatcher.inflight)
        assert (await h.call(spec, "fast"))[0] == Outcome("ok", "fast")

    run(main())


def test_a_kept_permit_is_held_until_the_trigger_lets_go(pool: FunctionThreads) -> None:
    async def fn(payload: str, ctx: Context) -> str:
        return payload

    async def main() -> None:
        spec = spec_of(fn, max_concurrency=1)
        h = Harness(pool, concurrency_wait=0.0)
        inv, ctx = invocation(spec, "streams")
        assert await h.dispatcher.run(inv, ctx, keep=True) == Outcome("ok", "streams")
        # the function returned; its trigger still answers (a streamed body)
        assert (await h.call(spec, "next"))[0].kind == "throttled"
        h.dispatcher.let_go(inv)
        assert (await h.call(spec, "next"))[0] == Outcome("ok", "next")
        h.dispatcher.let_go(inv)  # twice, or for one never admitted: nothing to give back
        refused, _ = invocation(spec)
        held, held_ctx = invocation(spec, "held")
        assert await h.dispatcher.run(held, held_ctx, keep=True) == Outcome("ok", "held")
        assert await h.dispatcher.run(refused, ctx, keep=True) == Outcome("throttled")
        h.dispatcher.let_go(refused)
        assert (await h.call(spec, "next"))[0].kind == "throttled"  # held still has it
        h.dispatcher.let_go(held)
        assert (await h.call(spec, "next"))[0] == Outcome("ok", "next")

    run(main())


def test_a_kept_permit_of_a_timed_out_sync_function_waits_for_its_thread(
    pool: FunctionThreads,
) -> None:
    def fn(payload: str, ctx: Context) -> str:
        if payload == "slow":
            time.sleep(0.15)
        return payload

    async def main() -> None:
        spec = spec_of(fn, max_concurrency=1, timeout=0.03)
        h = Harness(pool, concurrency_wait=0.0, cancel_grace=1.0)
        inv, ctx = invocation(spec, "slow")
        assert (await h.dispatcher.run(inv, ctx, keep=True)).kind == "timeout"
        h.dispatcher.let_go(inv)  # the 504 is sent: the thread still runs, and holds it
        assert (await h.call(spec, "fast"))[0].kind == "throttled"
        await wait_until(lambda: not h.dispatcher.inflight)
        assert (await h.call(spec, "fast"))[0] == Outcome("ok", "fast")

    run(main())


def test_functions_have_separate_gates(pool: FunctionThreads) -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def one(payload: Any, ctx: Context) -> None:
            await release.wait()

        async def two(payload: Any, ctx: Context) -> str:
            return "two"

        h = Harness(pool, concurrency_wait=0.0)
        first = asyncio.create_task(h.call(spec_of(one, max_concurrency=1)))
        await asyncio.sleep(0.005)
        assert (await h.call(spec_of(two, max_concurrency=1)))[0] == Outcome("ok", "two")
        release.set()
        await first

    run(main())


# --- max_concurrency across processes: gates sharing the host's permit table --------------------


def two_workers_gates(limit: int) -> tuple[PermitTable, Gate, Gate]:
    """Two workers' gates for one function (their app's second; the table's column 7) on
    one permit table (the host's workers do this in separate processes; the permits work
    the same within one)."""
    table = PermitTable.create()
    here, there = table.row(0, [-1, 7]), table.row(5, [-1, 7])
    return table, Gate(limit, here, 1, 5.0), Gate(limit, there, 1, 5.0)


def test_gates_on_one_permit_table_share_the_limit() -> None:
    async def main() -> None:
        table, here, there = two_workers_gates(2)
        assert here.try_acquire() and there.try_acquire()
        assert not here.try_acquire() and not there.try_acquire()
        assert here.room() == 0
        waiting = asyncio.create_task(there.acquire(1.0))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        here.release()  # a release in one worker frees a permit for the other
        assert await asyncio.wait_for(waiting, 0.5) is True
        assert table.row(0, [7]).permits_held(0) == 2
        assert here.active == 0 and there.active == 2
        table.close()

    run(main())


def test_a_permit_goes_to_the_oldest_waiter_whichever_worker_it_is_on() -> None:
    async def main() -> None:
        table, here, there = two_workers_gates(1)
        order: list[str] = []

        async def wait(gate: Gate, name: str) -> None:
            assert await gate.acquire(1.0)
            order.append(name)
            gate.release()

        assert here.try_acquire()
        older = asyncio.create_task(wait(there, "there"))
        await asyncio.sleep(0.01)
        newer = asyncio.create_task(wait(here, "here"))
        await asyncio.sleep(0.01)
        here.release()  # not handed to its own (newer) waiter
        await asyncio.wait_for(asyncio.gather(older, newer), 1.0)
        assert order == ["there", "here"]
        assert table.row(0, [7]).permits_held(0) == 0
        table.close()

    run(main())


def test_a_waiter_that_gives_up_stops_holding_back_the_others() -> None:
    async def main() -> None:
        table, here, there = two_workers_gates(1)
        assert here.try_acquire()
        assert await there.acquire(0.02) is False  # gave up
        here.release()
        assert here.try_acquire()  # nobody waits before it any more
        table.close()

    run(main())


def test_a_slot_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    async def main() -> None:
        gate = Gate(1)
        assert gate.try_acquire()
        waiting = asyncio.create_task(gate.acquire(1.0))
        await asyncio.sleep(0)
        gate.release()  # handed over ...
        waiting.cancel()  # ... as its caller is cancelled
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert gate.active == 0 and gate.try_acquire()

    run(main())


def test_a_dead_workers_permits_and_waits_are_freed() -> None:
    async def main() -> None:
        table, here, there = two_workers_gates(1)
        assert there.try_acquire()
        table.row(5, [7]).waiting(0, time.monotonic() - 1)
        assert not here.try_acquire()
        table.empty(5)  # the supervisor, when that worker's process exits
        assert here.try_acquire()
        table.close()

    run(main())


def test_a_raised_limit_in_force_lets_in_the_waiters_of_every_version() -> None:
    async def main() -> None:
        table, old, new = two_workers_gates(1)  # both at 1; say `new` is the next version
        new.limit = 3
        assert old.try_acquire()
        older = asyncio.create_task(old.acquire(2.0))  # an old version's waiter
        await asyncio.sleep(0.01)
        # before the new version serves, arrival order holds: it waits its turn
        assert not new.try_acquire()
        table.enforce(7, 3)  # the supervisor, once the new version serves
        assert await asyncio.wait_for(older, 0.5) is True  # let in under 3, holder or not
        assert new.try_acquire()  # the third
        assert not new.try_acquire() and not old.try_acquire()
        assert old.room() == 0 and table.row(0, [7]).permits_held(0) == 3
        table.close()

    run(main())


def test_a_lowered_limit_in_force_admits_no_one_until_the_held_are_under_it() -> None:
    async def main() -> None:
        table, old, new = two_workers_gates(2)
        assert old.try_acquire() and old.try_acquire()
        waiting = asyncio.create_task(old.acquire(0.3))
        await asyncio.sleep(0.01)
        table.enforce(7, 1)
        old.release()  # 2 held, limit 1: not handed to its waiter
        await asyncio.sleep(0.02)
        assert not waiting.done()
        assert not new.try_acquire()
        old.release()  # none held: the waiter's turn, under 1
        assert await asyncio.wait_for(waiting, 0.5) is True
        assert not new.try_acquire()
        table.close()

    run(main())
