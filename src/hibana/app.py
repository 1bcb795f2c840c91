"""The programming model: ``App``, the functions one app serves, and its scaling settings.

An App is a ``Blueprint`` (``hibana.blueprint``: the decorators that declare functions)
that keeps one function per name, one consumer per queue and one per route and method, and
takes in the functions of the Blueprints it registers. Nothing here starts a server or
touches a global.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any, Literal

from hibana.blueprint import Blueprint
from hibana.declarations import caller_site, check_positive, mount_clash
from hibana.errors import AppError, RouteError
from hibana.functions import HTTP_METHODS as HTTP_METHODS
from hibana.functions import EventTrigger as EventTrigger
from hibana.functions import FunctionSpec as FunctionSpec
from hibana.functions import HttpTrigger as HttpTrigger
from hibana.functions import QueueTrigger as QueueTrigger
from hibana.functions import TimerTrigger as TimerTrigger
from hibana.host.scaling import MAX_INSTANCES, MAX_THREADS
from hibana.proxies import parse_networks
from hibana.triggers.routes import compile_route

#: The host's own endpoint for publishing CloudEvents over HTTP; added to an app that
#: has topics (see ``App.event``).
EVENTS_ROUTE = "/runtime/events/{topic}"
EVENTS_FUNCTION = "runtime_events"
EVENTS_SOURCE = "hibana/triggers/event.py"


def _not_a_blueprint(given: object, where: str) -> str:
    """What ``app.register(given)`` at ``where`` is told when ``given`` is no Blueprint."""
    head = f"app.register() at {where} takes a hibana.Blueprint"
    if inspect.ismodule(given):
        held = [n for n, v in vars(given).items() if isinstance(v, Blueprint)]
        if held:
            return (
                f"{head}, not the module {given.__name__}; register the Blueprint it holds: "
                f"app.register({given.__name__.rpartition('.')[2]}.{held[0]})"
            )
        return f"{head}, not the module {given.__name__}, which holds none"
    if callable(given):
        return (
            f"{head}, not a {type(given).__name__}; to serve an ASGI or WSGI app (FastAPI, "
            "Flask...), mount it: app.asgi('/prefix', it) or app.wsgi('/prefix', it)"
        )
    if given is None:
        return f"{head}, not None"
    return f"{head}, not {given!r:.60} ({type(given).__name__})"


class App(Blueprint):
    """A hibana app: the functions it serves. Build one per app file; ``hibana serve`` finds it.

    The scaling settings apply unless ``hibana serve`` flags override them:
    ``min_instances`` workers always run (0: scale to zero; ``serve`` defaults to 0, ``dev``
    to 1), at most ``max_instances`` (default: one per core); a worker above the minimum
    exits after ``idle_timeout`` seconds without work (default 60). ``prewarm`` is what a
    new worker starts from: "app" (forked from a process that imported the app: fastest),
    "runtime" (forked, then imports the app) or "none" (a fresh interpreter).
    ``memory_limit_mb`` replaces a worker whose memory grows past it, once its work ends.
    ``threads`` is how many sync functions a worker runs at once (default 40; more for
    ones that wait on I/O; ``--threads`` overrides it).
    ``trusted_proxies`` (addresses or networks) are the proxies whose forwarding headers
    ``req.client_ip`` believes."""

    def __init__(
        self,
        *,
        min_instances: int | None = None,
        max_instances: int | None = None,
        idle_timeout: float | None = None,
        prewarm: Literal["app", "runtime", "none"] | None = None,
        memory_limit_mb: int | None = None,
        threads: int | None = None,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        super().__init__()
        where = caller_site(1)
        #: Peers whose Forwarded / X-Forwarded-For headers are believed (req.client_ip).
        self.trusted_proxies = parse_networks(trusted_proxies, where)
        for name, value in (
            ("max_instances", max_instances),
            ("memory_limit_mb", memory_limit_mb),
            ("threads", threads),
        ):
            if value is not None:
                check_positive(value, name, where, integer=True)
        if min_instances is not None and (
            isinstance(min_instances, bool)
            or not isinstance(min_instances, int)
            or min_instances < 0
        ):
            raise AppError(
                f"min_instances={min_instances!r} in {where} must be a whole number >= 0"
            )
        for name, value in (("min_instances", min_instances), ("max_instances", max_instances)):
            if value is not None and value > MAX_INSTANCES:
                raise AppError(
                    f"{name}={value!r} in {where} is over {MAX_INSTANCES}, the most workers "
                    "a host runs; run several hosts on one store to go past it"
                )
        if threads is not None and threads > MAX_THREADS:
            raise AppError(
                f"threads={threads!r} in {where} is over {MAX_THREADS}, the most a worker "
                "runs; for more sync functions at once, run more workers (max_instances)"
            )
        if idle_timeout is not None:
            check_positive(idle_timeout, "idle_timeout", where)
        if prewarm is not None and prewarm not in ("app", "runtime", "none"):
            raise AppError(f'prewarm={prewarm!r} in {where} must be "app", "runtime" or "none"')
        #: Scaling settings as written in the app (None: not set).
        self.settings: dict[str, Any] = {
            "min_instances": min_instances,
            "max_instances": max_instances,
            "idle_timeout": idle_timeout,
            "prewarm": prewarm,
            "memory_limit_mb": memory_limit_mb,
            "threads": threads,
        }
        self._names: dict[str, FunctionSpec] = {}
        self._routes: dict[tuple[str, str], FunctionSpec] = {}
        #: id -> (the Blueprint, where it was registered): kept, so an id is not reused
        self._registered: dict[int, tuple[Blueprint, str]] = {}

    def _add_events_endpoint(self) -> None:
        from hibana.triggers.event import Ingest

        self._add(
            FunctionSpec(
                name=EVENTS_FUNCTION,
                # read at each request: webhooks declared (or registered) after it count too
                handler=Ingest(lambda: self._webhooks),
                trigger=HttpTrigger(compile_route(EVENTS_ROUTE, "hibana"), ("POST", "OPTIONS")),
                is_async=True,
                timeout=30.0,
                max_concurrency=None,
                source=EVENTS_SOURCE,
            )
        )

    def loaded(self, source: str) -> None:
        """Mark this App as loaded by the host from ``source`` (its ``function_app.py``):
        its functions are read once, so declaring or registering one later is an error."""
        self._closed = (
            f"after the host loaded the app from {source}, and the host reads its functions "
            "as it loads it",
            f"declare it as {source} is imported, not later (in a function, say)",
        )

    def register(self, blueprint: Blueprint) -> None:
        """Add every function declared on ``blueprint`` to this app."""
        if blueprint is self:
            raise AppError("An App cannot register itself")
        where = caller_site(1)
        if not isinstance(blueprint, Blueprint):
            raise AppError(_not_a_blueprint(blueprint, where))
        seen = self._registered.get(id(blueprint))
        if seen is not None:
            raise AppError(
                f"A Blueprint is registered twice on this App: at {seen[1]} and at {where}; "
                "register it once"
            )
        self._registered[id(blueprint)] = (blueprint, where)
        if blueprint._closed is None:
            blueprint._closed = (
                f"on a Blueprint that was registered at {where}, and an App takes a "
                "Blueprint's functions when it registers it",
                "declare every function of the Blueprint before app.register(...)",
            )
        for spec in blueprint.functions:
            if spec.source != EVENTS_SOURCE:  # a registered App's: this one adds its own
                self._add(spec)
        self._webhooks.extend(blueprint._webhooks)

    def _add(self, spec: FunctionSpec) -> None:
        self._check_open(spec)
        other = self._names.get(spec.name)
        if other is not None:
            if other.handler is spec.handler and spec.name == getattr(
                spec.handler, "__name__", None
            ):
                # two decorators on one def (two routes, say), named by it: two functions
                raise AppError(
                    f'function "{spec.name}" at {spec.source} is declared twice, and each '
                    "declaration is a function with a name of its own; pass name= to one "
                    "of them"
                )
            raise AppError(
                f'Two functions are named "{spec.name}": {other.source} and {spec.source}; '
                "rename one, or give one a name of its own with name="
            )
        trigger = spec.trigger
        if isinstance(trigger, QueueTrigger):
            for other_spec in self._names.values():
                if (
                    isinstance(other_spec.trigger, QueueTrigger)
                    and other_spec.trigger.queue == trigger.queue
                ):
                    raise AppError(
                        f'Queue "{trigger.queue}" is consumed by {other_spec.source} '
                        f"({other_spec.name}) and {spec.source} ({spec.name}); one queue has "
                        "one consumer function (publish to a topic to fan out)"
                    )
        if not isinstance(trigger, HttpTrigger):
            self._names[spec.name] = spec
            super()._add(spec)
            if isinstance(trigger, EventTrigger):
                served = self._names.get(EVENTS_FUNCTION)
                if served is None or served.source != EVENTS_SOURCE:
                    # one of the app's own functions by its name: the clash is told
                    self._add_events_endpoint()
            return
        for route in trigger.routes:
            for method in trigger.methods:
                clash = self._routes.get((route.shape, method))
                if clash is not None:
                    theirs = next(
                        r.pattern
                        for r in clash.trigger.routes  # type: ignore[union-attr]
                        if r.shape == route.shape
                    )
                    mounted = mount_clash(spec, route.pattern, clash, theirs, method)
                    if mounted is not None:
                        raise RouteError(mounted)
                    raise RouteError(
                        f'Route "{route.pattern}" {method} in {spec.source} ({spec.name}) '
                        f'is already served by "{theirs}" in {clash.source} '
                        f"({clash.name}); change one route or method"
                    )
        for route in trigger.routes:
            for method in trigger.methods:
                self._routes[(route.shape, method)] = spec
        self._names[spec.name] = spec
        super()._add(spec)
