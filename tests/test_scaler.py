"""The scaler's rules, one cycle at a time, with a clock of the test's own."""

from __future__ import annotations

import pytest

from hibana.errors import ConfigError
from hibana.host.scaling import Scaler, Scaling, WorkerView, resolve


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scaler(**kw: object) -> tuple[Scaler, Clock]:
    settings: dict[str, object] = {
        "min_instances": 0,
        "max_instances": 3,
        "idle_timeout": 10.0,
        "prewarm": "app",
        "target_inflight": 4.0,
    }
    settings.update(kw)
    clock = Clock()
    return Scaler(Scaling(**settings), clock), clock  # type: ignore[arg-type]


def test_zero_workers_and_a_waiting_connection_starts_one() -> None:
    s, _ = scaler()
    assert s.decide([], waiting_connection=False).spawn == 0
    assert s.decide([], waiting_connection=True).spawn == 1
    # a worker already on its way is enough
    assert s.decide([WorkerView(0, pending=True)], waiting_connection=True).spawn == 0


def test_min_instances_are_kept() -> None:
    s, _ = scaler(min_instances=2)
    assert s.decide([], waiting_connection=False).spawn == 2
    assert s.decide([WorkerView(0, last_active=0.0)], waiting_connection=False).spawn == 1


def test_sustained_load_adds_workers_one_at_a_time_up_to_max() -> None:
    s, clock = scaler(max_instances=2)
    busy = [WorkerView(0, inflight=10, last_active=clock.now)]
    assert s.decide(busy, False).spawn == 0  # load must last a moment first
    clock.now += 0.1
    assert s.decide(busy, False).spawn == 0
    clock.now += 0.15
    assert s.decide(busy, False).spawn == 1
    clock.now += 0.05
    two = [*busy, WorkerView(1, inflight=10, last_active=clock.now)]
    clock.now += 1
    assert s.decide(two, False).spawn == 0  # never past max_instances


def test_load_that_drops_resets_the_timer() -> None:
    s, clock = scaler()
    assert s.decide([WorkerView(0, inflight=10)], False).spawn == 0
    clock.now += 0.1
    assert s.decide([WorkerView(0, inflight=1)], False).spawn == 0
    clock.now += 0.15
    assert s.decide([WorkerView(0, inflight=10)], False).spawn == 0


def test_idle_workers_above_the_minimum_retire() -> None:
    s, clock = scaler(min_instances=1)
    workers = [
        WorkerView(0, last_active=clock.now - 20),
        WorkerView(1, last_active=clock.now - 20),
        WorkerView(2, last_active=clock.now - 1),
    ]
    assert s.decide(workers, False).retire == [0, 1]  # the recently active one stays
    assert s.decide(workers[:2], False).retire == [0]  # the minimum of 1 stays


def test_a_worker_still_starting_is_never_retired() -> None:
    s, clock = scaler(idle_timeout=0.2)
    starting = [WorkerView(0, pending=True, last_active=0.0)]
    clock.now += 60
    decision = s.decide(starting, waiting_connection=True)
    assert decision.retire == []
    assert decision.spawn == 0


def test_busy_workers_are_not_retired() -> None:
    s, clock = scaler(idle_timeout=1)
    assert s.decide([WorkerView(0, inflight=1, last_active=clock.now - 50)], False).retire == []


def test_resolve_prefers_flags_then_app_then_defaults() -> None:
    defaults = {"min_instances": 0, "max_instances": 2, "idle_timeout": 60.0, "prewarm": "app"}
    app = {"min_instances": 1, "max_instances": None, "prewarm": "runtime"}
    flags = {"prewarm": "none", "idle_timeout": None}
    got = resolve(flags, app, defaults)
    assert (got.min_instances, got.max_instances, got.idle_timeout, got.prewarm) == (
        1,
        2,
        60.0,
        "none",
    )


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"min_instances": 4, "max_instances": 2}, "min_instances=4 must be between 0 and"),
        ({"max_instances": 0}, "max_instances=0 must be at least 1"),
        ({"prewarm": "hot"}, "prewarm='hot' is not one of app, runtime, none"),
    ],
)
def test_bad_scaling_is_a_clear_error(kw: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {
        "min_instances": 0,
        "max_instances": 2,
        "idle_timeout": 1.0,
        "prewarm": "app",
    }
    settings.update(kw)
    with pytest.raises(ConfigError, match=message):
        Scaling(**settings)  # type: ignore[arg-type]
