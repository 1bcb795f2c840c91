"""What a declared function is: ``FunctionSpec`` and its trigger kinds.

Plain data: the decorators of ``hibana.blueprint`` record it; the host, the triggers and the
runtimes read it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hibana.events.filters import Filter
from hibana.messages import RetryPolicy
from hibana.timers import Schedule
from hibana.triggers.routes import CompiledRoute

#: What no URL holds as it is: whitespace and control characters.
_BLANKS = re.compile(r"[\x00-\x20\x7f]")


def _escaped(char: re.Match[str]) -> str:
    return f"%{ord(char.group()):02X}"


#: The methods an HTTP function may serve (a mount serves them all).
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class HttpTrigger:
    route: CompiledRoute
    methods: tuple[str, ...]
    #: More routes the same function serves (a mount: its prefix with and without "/").
    also: tuple[CompiledRoute, ...] = ()
    #: A mount's call as written (``app.asgi('/api')``), how errors name it; None for a route.
    mount: str | None = None

    @property
    def routes(self) -> tuple[CompiledRoute, ...]:
        return (self.route, *self.also)

    def describe(self) -> str:
        """``[GET,POST] /items/{id:int}``: a space in a route as a request sends it (%20);
        else the banner, which splits on spaces, showed ``/a `` as two URLs."""
        routes = " ".join(_BLANKS.sub(_escaped, r.pattern) for r in self.routes)
        return f"[{','.join(self.methods)}] {routes}"


@dataclass(frozen=True, slots=True)
class QueueTrigger:
    queue: str
    batch_size: int
    max_attempts: int
    retry: RetryPolicy
    #: Seconds a delivery is leased; unsettled by then, it is delivered again.
    visibility_timeout: float
    #: (name, limit): leases of every function in the group, across hosts, stay under limit.
    group: tuple[str, int] | None
    #: False for timers: a failure is logged and counted, never retried or dead-lettered.
    dead_letters: bool = True

    def describe(self) -> str:
        return f"queue {self.queue}"


@dataclass(frozen=True, slots=True)
class EventTrigger(QueueTrigger):
    """A subscription: events published to ``topic`` that pass ``filter`` are delivered
    to this function through its own queue (``event:<name>``), with its own retries,
    dead letters and limits."""

    topic: str = ""
    filter: Filter | None = None

    def describe(self) -> str:
        return f"event {self.topic}" + ("" if self.filter is None else " (filtered)")


@dataclass(frozen=True, slots=True)
class TimerTrigger:
    schedule: Schedule
    run_on_startup: bool
    #: Each fire is a message on this internal queue, consumed like any other.
    queue: str

    def describe(self) -> str:
        tz = "" if self.schedule.tz == "UTC" else f" {self.schedule.tz}"
        return f"timer {self.schedule.expression}{tz}"


#: Every trigger kind is one dataclass here; later kinds (event, orchestration) join this union.
Trigger = HttpTrigger | QueueTrigger | EventTrigger | TimerTrigger
#: What a function's first argument is called in the examples, by trigger.
INPUT_NAMES: dict[type, str] = {
    HttpTrigger: "req",
    QueueTrigger: "msg",
    EventTrigger: "event",
    TimerTrigger: "timer",
}


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """One declared function: what triggers it and how it must be run. Plain data."""

    name: str
    handler: Callable[..., Any]
    trigger: Trigger
    is_async: bool
    timeout: float
    max_concurrency: int | None
    #: "function_app.py:12", where the function was declared.
    source: str
    #: The secrets it may read from ``ctx.secrets``.
    secrets: tuple[str, ...] = ()
