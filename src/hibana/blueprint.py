"""``Blueprint``: the decorators that declare functions (``@app.http``, ``.queue``,
``.timer``, ``.event``, ``.webhook``, the mounts), each checked where it is written.

Decorators only record plain data (``FunctionSpec``); the host, the triggers and the
runtimes read it. ``App`` (``hibana.app``) is the Blueprint that serves them, and tells
one function's name or route clashing with another's. Nothing here starts a server or
touches a global.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from hibana.declarations import (
    caller_site,
    check_positive,
    check_queue_name,
    check_signature,
    checked_name,
    delivery_options,
    derived_name,
    is_async_handler,
    not_bare,
    site_of,
)
from hibana.errors import AppError
from hibana.events.filters import Filter
from hibana.functions import (
    HTTP_METHODS,
    INPUT_NAMES,
    EventTrigger,
    FunctionSpec,
    HttpTrigger,
    QueueTrigger,
    TimerTrigger,
    Trigger,
)
from hibana.messages import MAX_DELAY, RetryPolicy
from hibana.mounts import lambda_mount, web_app_mount
from hibana.secrets import grants
from hibana.timers import Schedule, ScheduleError
from hibana.triggers.routes import compile_route

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_TIMEOUT = 60.0
#: The most messages one batch of a queue function holds (and a worker claims at once).
MAX_BATCH_SIZE = 256


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
