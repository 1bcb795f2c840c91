"""How many workers to run, and threads in each: the settings, where they come from, and
the scaler's rules.

The scaler is a pure function of what the board shows and the time, so tests can run it
one cycle at a time with a clock of their own."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from hibana.errors import ConfigError

Prewarm = Literal["app", "runtime", "none"]
PREWARM_MODES: tuple[Prewarm, ...] = ("app", "runtime", "none")
#: The most workers a host runs: each is a process, and the board the zygote makes has
#: rows for twice as many (a number past the machine's makes a board it cannot map).
MAX_INSTANCES = 1024
#: Threads a worker runs sync functions on, unless ``--threads`` or ``App(threads=)`` says.
DEFAULT_THREADS = 40
#: The most: each is a thread of the worker's, with its stack.
MAX_THREADS = 1024


@dataclass(frozen=True, slots=True)
class Scaling:
    min_instances: int
    max_instances: int
    idle_timeout: float
    prewarm: Prewarm
    #: Average in-flight invocations per worker above which another worker is added.
    target_inflight: float = 8.0
    memory_limit_mb: int | None = None
    #: Threads each worker runs sync functions on.
    threads: int = DEFAULT_THREADS

    def __post_init__(self) -> None:
        if not 1 <= self.threads <= MAX_THREADS:
            raise ConfigError(f"threads={self.threads} must be between 1 and {MAX_THREADS}")
        if self.max_instances < 1:
            raise ConfigError(f"max_instances={self.max_instances} must be at least 1")
        if self.max_instances > MAX_INSTANCES:
            raise ConfigError(
                f"max_instances={self.max_instances} is over {MAX_INSTANCES}, the most "
                "workers a host runs; run several hosts on one store to go past it"
            )
        if not 0 <= self.min_instances <= self.max_instances:
            raise ConfigError(
                f"min_instances={self.min_instances} must be between 0 and "
                f"max_instances={self.max_instances}"
            )
        if self.prewarm not in PREWARM_MODES:
            raise ConfigError(f"prewarm={self.prewarm!r} is not one of {', '.join(PREWARM_MODES)}")

    def describe(self) -> str:
        if self.min_instances == self.max_instances:
            n = self.max_instances
            return f"{n} worker{'s' if n != 1 else ''}"
        return f"{self.min_instances}..{self.max_instances} workers"


def resolve(
    overrides: dict[str, Any], app_settings: dict[str, Any], defaults: dict[str, Any]
) -> Scaling:
    """CLI flags win over the App's settings, which win over the defaults."""
    merged = {
        name: next(
            (src[name] for src in (overrides, app_settings, defaults) if src.get(name) is not None),
            None,
        )
        for name in Scaling.__dataclass_fields__
    }
    return Scaling(**{k: v for k, v in merged.items() if v is not None})


@dataclass(slots=True)
class WorkerView:
    """What the scaler knows of one worker."""

    slot: int
    inflight: float = 0.0
    #: monotonic time of the last invocation start/end, or when it started serving
    last_active: float = 0.0
    pending: bool = False
    retiring: bool = False


@dataclass(slots=True)
class Decision:
    spawn: int = 0
    retire: list[int] = field(default_factory=list)  # slots


class Scaler:
    #: Load must stay above target this long before a worker is added, and adds are spaced
    #: at least this far apart (a new worker takes load off the others within milliseconds).
    settle = 0.2

    def __init__(self, scaling: Scaling, clock: Callable[[], float] = time.monotonic) -> None:
        self.scaling = scaling
        self.clock = clock
        self._over_since: float | None = None
        self._last_out = -1e9

    def decide(self, workers: list[WorkerView], waiting_connection: bool) -> Decision:
        s, now = self.scaling, self.clock()
        active = [w for w in workers if not w.retiring]
        n = len(active)
        decision = Decision(spawn=max(0, s.min_instances - n))
        if n == 0 and waiting_connection:
            decision.spawn = max(decision.spawn, 1)
        serving = [w for w in active if not w.pending]
        if serving and sum(w.inflight for w in serving) / len(serving) > s.target_inflight:
            if self._over_since is None:
                self._over_since = now
            elif now - self._over_since >= self.settle and now - self._last_out >= self.settle:
                decision.spawn += 1
                self._last_out = now
        else:
            self._over_since = None
        decision.spawn = max(0, min(decision.spawn, s.max_instances - n))
        surplus = n + decision.spawn - s.min_instances
        for w in serving:
            if surplus <= 0:
                break
            if w.inflight <= 0 and now - w.last_active >= s.idle_timeout:
                decision.retire.append(w.slot)
                surplus -= 1
        return decision
