"""The programming model: ``App``, ``Blueprint`` and the decorators that declare functions.

Decorators only record plain data (``FunctionSpec``); the host, the triggers and the
runtimes read it. Nothing here starts a server or touches a global.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar

from hibana.declarations import (
    caller_site,
    check_positive,
    check_queue_name,
    check_signature,
    checked_name,
    delivery_options,
    derived_name,
    is_async_handler,
    mount_clash,
    not_bare,
    site_of,
)
from hibana.errors import AppError, RouteError
from hibana.events.filters import Filter
from hibana.functions import HTTP_METHODS as HTTP_METHODS
from hibana.functions import INPUT_NAMES, Trigger
from hibana.functions import EventTrigger as EventTrigger
from hibana.functions import FunctionSpec as FunctionSpec
from hibana.functions import HttpTrigger as HttpTrigger
from hibana.functions import QueueTrigger as QueueTrigger
from hibana.functions import TimerTrigger as TimerTrigger
from hibana.host.scaling import MAX_INSTANCES, MAX_THREADS
from hibana.messages import MAX_DELAY, RetryPolicy
from hibana.mounts import lambda_mount, web_app_mount
from hibana.proxies import parse_networks
from hibana.secrets import grants
from hibana.timers import Schedule, ScheduleError
from hibana.triggers.routes import compile_route

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_TIMEOUT = 60.0
#: The most messages one batch of a queue function holds (and a worker claims at once).
MAX_BATCH_SIZE = 256


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
    return f"{head}, not {'None' if given is None else 'a ' + type(given).__name__}"


class Blueprint:
    """A group of functions declared in one module and registered on an ``App`` later."""

    def __init__(self) -> None:
        self._functions: list[FunctionSpec] = []
        #: (topic, path, where declared) of each webhook: what feeds each topic its
        #: verified events
        self._webhooks: list[tuple[str, str, str]] = []
        #: Why no function may be declared on it any more, and what to do instead: an App
        #: registered it (and copied its functions then), or the host loaded it; one
        #: declared later would be served by none
        self._closed: tuple[str, str] | None = None

    @property
    def functions(self) -> tuple[FunctionSpec, ...]:
        return tuple(self._functions)

    def http(
        self,
        route: str,
        methods: Iterable[str] = ("GET",),
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_concurrency: int | None = None,
        name: str | None = None,
        secrets: Iterable[str] = (),
    ) -> Callable[[F], F]:
        """Declare an HTTP function on ``route`` for ``methods``.

        ``timeout`` (seconds) ends the invocation with 504; ``max_concurrency`` caps the
        invocations running at once on the host (all its workers together), and excess
        requests wait briefly in arrival order, then 429."""
        decl_site = caller_site(1)
        not_bare(route, "http", '"/path"', decl_site)
        if isinstance(methods, str):
            methods = (methods,)
        if not isinstance(methods, Iterable):
            raise AppError(
                f"app.http({route!r}) at {decl_site}: methods={methods!r:.60} is no list of "
                'methods; write methods=["GET", "POST"] (or leave it out for GET alone)'
            )
        method_list = tuple(dict.fromkeys(str(m).upper() for m in methods))

        def decorate(fn: F) -> F:
            location, where, fn_name = self._describe(fn, name, decl_site)
            if not method_list:
                raise AppError(f"app.http({route!r}) in {where} lists no methods")
            unknown = [m for m in method_list if m not in HTTP_METHODS]
            if unknown:
                raise AppError(
                    f"app.http({route!r}) in {where} has unknown method {unknown[0]!r}; "
                    f"use any of {', '.join(sorted(HTTP_METHODS))}"
                )
            check_positive(timeout, "timeout", where)
            if max_concurrency is not None:
                check_positive(max_concurrency, "max_concurrency", where, integer=True)
            compiled = compile_route(route, where)
            trigger = HttpTrigger(compiled, method_list)
            self._declare(fn, fn_name, trigger, timeout, max_concurrency, location, secrets, where)
            return fn

        return decorate

    def queue(
        self,
        queue: str,
        *,
        batch_size: int = 1,
        max_attempts: int = 5,
        retry: RetryPolicy | None = None,
        visibility_timeout: float = 30.0,
        timeout: float | None = None,
        max_concurrency: int | None = None,
        concurrency_group: str | None = None,
        limit: int | None = None,
        name: str | None = None,
        secrets: Iterable[str] = (),
    ) -> Callable[[F], F]:
        """Declare a function that consumes ``queue``: ``fn(msg: Message, ctx)``, or
        ``fn(msgs: list[Message], ctx)`` when ``batch_size`` > 1.

        Delivery is at least once. A failure (an exception, or ``timeout``, which defaults
        to ``visibility_timeout``) is retried per ``retry`` (default ``Exponential(1, 60)``)
        until ``max_attempts``, then the message goes to the queue's dead letters.
        ``max_concurrency`` caps the invocations at once on the host; ``concurrency_group``
        with ``limit`` caps every function of that group together, across all hosts."""
        decl_site = caller_site(1)
        not_bare(queue, "queue", '"queue-name"', decl_site)

        def decorate(fn: F) -> F:
            location, where, fn_name = self._describe(fn, name, decl_site)
            check_queue_name(queue, f"app.queue({queue!r}) in {where}")
            check_positive(batch_size, "batch_size", where, integer=True)
            if batch_size > MAX_BATCH_SIZE:
                raise AppError(
                    f"batch_size={batch_size!r} in {where} is over the most a batch holds, "
                    f"{MAX_BATCH_SIZE} (what one claim of the store takes); pass "
                    f"{MAX_BATCH_SIZE} or fewer"
                )
            trigger, run_for = delivery_options(
                QueueTrigger,
                where,
                {"queue": queue, "batch_size": batch_size},
                max_attempts,
                retry,
                visibility_timeout,
                timeout,
                max_concurrency,
                concurrency_group,
                limit,
            )
            self._declare(fn, fn_name, trigger, run_for, max_concurrency, location, secrets, where)
            return fn

        return decorate

    def timer(
        self,
        schedule: str,
        *,
        tz: str = "UTC",
        run_on_startup: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        name: str | None = None,
        secrets: Iterable[str] = (),
    ) -> Callable[[F], F]:
        """Declare a function run on a cron ``schedule`` (5 fields, or 6 with seconds
        first) in time zone ``tz``: ``fn(timer: TimerInfo, ctx)``. Each slot runs once
        across every host sharing the store; after downtime, the missed slot runs once,
        late, with ``timer.past_due``. A failure is logged; the schedule goes on."""
        decl_site = caller_site(1)
        not_bare(schedule, "timer", '"*/5 * * * *"', decl_site)

        def decorate(fn: F) -> F:
            location, where, fn_name = self._describe(fn, name, decl_site)
            try:
                parsed = Schedule(str(schedule), str(tz))
            except ScheduleError as exc:
                raise AppError(f"app.timer in {where}: {exc}") from None
            check_positive(timeout, "timeout", where)
            if not timeout <= MAX_DELAY:
                # a run's lease is its timeout and a margin
                raise AppError(
                    f"timeout={timeout!r} in {where} must be at most {MAX_DELAY:.0f} seconds "
                    "(365 days): a slot whose worker dies is held until it passes; give the "
                    "longest a run may take, in seconds"
                )
            if not isinstance(run_on_startup, bool):
                # bool() took "false" (an environment variable's) for True
                raise AppError(
                    f"run_on_startup={run_on_startup!r:.60} in {where} must be True or False"
                )
            trigger = TimerTrigger(parsed, run_on_startup, f"timer:{fn_name}")
            self._declare(fn, fn_name, trigger, timeout, 1, location, secrets, where)
            return fn

        return decorate

    def event(
        self,
        topic: str,
        *,
        filter: Filter | None = None,
        max_attempts: int = 5,
        retry: RetryPolicy | None = None,
        visibility_timeout: float = 30.0,
        timeout: float | None = None,
        max_concurrency: int | None = None,
        concurrency_group: str | None = None,
        limit: int | None = None,
        name: str | None = None,
        secrets: Iterable[str] = (),
    ) -> Callable[[F], F]:
        """Subscribe a function to ``topic``: ``fn(event: CloudEvent, ctx)``. Every
        subscription whose ``filter`` matches gets its own delivery of each event, with
        the retries, dead letters and limits of a queue function (same options)."""
        decl_site = caller_site(1)
        not_bare(topic, "event", '"topic"', decl_site)

        def decorate(fn: F) -> F:
            location, where, fn_name = self._describe(fn, name, decl_site)
            check_queue_name(topic, f"app.event({topic!r}) in {where}", "topic")
            if filter is not None and not isinstance(filter, Filter):
                raise AppError(
                    f"filter={filter!r} in {where} must be a hibana.Filter, e.g. "
                    'hibana.Filter.exact(type="com.github.push")'
                )
            trigger, run_for = delivery_options(
                EventTrigger,
                where,
                {"queue": f"event:{fn_name}", "batch_size": 1, "topic": topic, "filter": filter},
                max_attempts,
                retry,
                visibility_timeout,
                timeout,
                max_concurrency,
                concurrency_group,
                limit,
            )
            self._declare(fn, fn_name, trigger, run_for, max_concurrency, location, secrets, where)
            return fn

        return decorate

    @property
    def queues(self) -> tuple[str, ...]:
        """The queues functions of this app consume (timers' and subscriptions' own
        queues excluded): what ``ctx.enqueue`` accepts."""
        return tuple(
            dict.fromkeys(
                spec.trigger.queue for spec in self._functions if type(spec.trigger) is QueueTrigger
            )
        )

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics this app subscribes to or its webhooks publish to: what
        ``ctx.publish`` and the events endpoint accept."""
        return tuple(
            dict.fromkeys(
                [
                    *(
                        spec.trigger.topic
                        for spec in self._functions
                        if isinstance(spec.trigger, EventTrigger)
                    ),
                    *(topic for topic, _, _ in self._webhooks),
                ]
            )
        )

    def unheard_webhooks(self) -> list[tuple[str, str, str]]:
        """(topic, path, where declared) of each webhook whose topic no function of this
        app subscribes to: its deliveries would be verified, acknowledged and reach no one
        (an event goes to the subscriptions of the app that publishes it)."""
        heard = {
            spec.trigger.topic for spec in self._functions if isinstance(spec.trigger, EventTrigger)
        }
        return [webhook for webhook in self._webhooks if webhook[0] not in heard]

    def asgi(
        self,
        prefix: str,
        asgi_app: Any,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_concurrency: int | None = None,
        name: str | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        """Serve a whole ASGI app (FastAPI, Starlette, Django's ASGI handler...) under
        ``prefix``: every method and path below it is one invocation of this function.
        The app sees ``root_path=prefix``; its lifespan runs once per worker."""
        where = caller_site(1)
        self._add(
            web_app_mount("asgi", prefix, asgi_app, where, timeout, max_concurrency, name, secrets)
        )

    def wsgi(
        self,
        prefix: str,
        wsgi_app: Any,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_concurrency: int | None = None,
        name: str | None = None,
        secrets: Iterable[str] = (),
        threads: int | None = None,
    ) -> None:
        """Serve a whole WSGI app (Flask, Django...) under ``prefix``, with
        ``SCRIPT_NAME=prefix``; each request runs on one thread of a pool of ``threads``
        per worker (32 by default), from the app's call to its body's close()."""
        where = caller_site(1)
        self._add(
            web_app_mount(
                "wsgi", prefix, wsgi_app, where, timeout, max_concurrency, name, secrets, threads
            )
        )

    def lambda_handler(
        self,
        prefix: str,
        handler: Callable[[dict[str, Any], Any], Any],
        *,
        event: str = "apigw-v2",
        timeout: float = DEFAULT_TIMEOUT,
        max_concurrency: int | None = None,
        name: str | None = None,
        secrets: Iterable[str] = (),
        stage: str | None = None,
    ) -> None:
        """Serve an AWS Lambda ``handler(event, context)`` under ``prefix``: each request
        becomes the event API Gateway (``"apigw-v1"``, ``"apigw-v2"``) or an ALB
        (``"alb"``) would send, and its result the HTTP response. It runs on the thread
        pool; ``context.get_remaining_time_in_millis()`` follows the invocation's deadline.
        ``stage``: the REST API stage a v1 event names (``"local"`` if None)."""
        where = caller_site(1)
        self._add(
            lambda_mount(
                prefix, handler, event, where, timeout, max_concurrency, name, secrets, stage
            )
        )

    def webhook(
        self,
        path: str,
        *,
        provider: str,
        secret: str,
        topic: str,
        ack: Callable[[dict[str, Any]], Any] | None = None,
        timeout: float = 10.0,
        name: str | None = None,
    ) -> None:
        """An endpoint that verifies a provider's webhook with the secret named
        ``secret``, publishes it to ``topic`` as a CloudEvent and answers at once
        (``provider``: "github", "slack" or "standard" for Standard Webhooks). For Slack,
        ``ack(command)`` (a function or an ``async def``) returns the immediate reply's
        JSON; the subscriber of ``topic`` does the slow work."""
        from hibana.webhooks import PROVIDERS, handler

        where = caller_site(1)
        if provider not in PROVIDERS:
            raise AppError(
                f"app.webhook({path!r}) in {where}: provider={provider!r} is not one of "
                f"{', '.join(PROVIDERS)}"
            )
        check_queue_name(topic, f"app.webhook({path!r}, topic={topic!r}) in {where}", "topic")
        if ack is not None and not callable(ack):
            raise AppError(f"app.webhook({path!r}) in {where}: ack must be callable")
        check_positive(timeout, "timeout", where)
        name = checked_name(name, f"app.webhook({path!r}) at {where}")
        route = compile_route(path, where)  # first: the name is made of it, a str
        fn_name = name or derived_name(
            "webhook" + "".join(c if c.isalnum() else "_" for c in path),
            f"app.webhook({path!r}) at {where}",
            "made of its path",
        )
        granted = grants((secret,), where)
        self._add(
            FunctionSpec(
                name=fn_name,
                handler=handler(provider, secret, topic, path, ack),  # type: ignore[arg-type]
                trigger=HttpTrigger(route, ("POST",)),
                is_async=True,
                timeout=float(timeout),
                max_concurrency=None,
                source=where,
                secrets=granted,
            )
        )
        # once it is declared: a refused one (a route clash) feeds no topic
        self._webhooks.append((topic, path, where))

    def _declare(
        self,
        fn: Callable[..., Any],
        name: str,
        trigger: Trigger,
        timeout: float,
        max_concurrency: int | None,
        source: str,
        secrets: Iterable[str],
        where: str,
    ) -> None:
        """Record a decorated function."""
        check_signature(fn, name, where, INPUT_NAMES.get(type(trigger), "input"))
        self._add(
            FunctionSpec(
                name=name,
                handler=fn,
                trigger=trigger,
                is_async=is_async_handler(fn, where, isinstance(trigger, HttpTrigger)),
                timeout=float(timeout),
                max_concurrency=max_concurrency,
                source=source,
                secrets=grants(secrets, where),
            )
        )

    @staticmethod
    def _describe(fn: object, name: str | None, decl_site: str) -> tuple[str, str, str]:
        """("function_app.py:12", "function_app.py:12 (create)", "create"): where ``fn`` is,
        how errors name it, and its function name; or an error if ``fn`` is not callable."""
        if not callable(fn):
            raise AppError(
                f"The decorator at {decl_site} was applied to {fn!r} ({type(fn).__name__}), "
                "which is not callable; put it directly above a `def`"
            )
        named: Any = fn
        while isinstance(named, functools.partial):  # named and found by what it wraps
            named = named.func
        code = getattr(named, "__code__", None)
        name = checked_name(name, f"the decorator at {decl_site}")
        fn_name = name or derived_name(
            str(getattr(named, "__name__", type(named).__name__)),
            f"the decorator at {decl_site}",
            "its __name__",
        )
        location = decl_site if code is None else site_of(code.co_filename, code.co_firstlineno)
        return location, f"{location} ({fn_name})", fn_name

    def _add(self, spec: FunctionSpec) -> None:
        self._check_open(spec)
        self._functions.append(spec)

    def _check_open(self, spec: FunctionSpec) -> None:
        if self._closed is not None:
            why, fix = self._closed
            raise AppError(
                f'function "{spec.name}" at {spec.source} is declared {why}: this one would '
                f"never be served; {fix}"
            )


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
