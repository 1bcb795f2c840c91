"""What a declaration must be: the checks ``hibana.blueprint``'s decorators run.

Each check takes what a decorator was given and where it was written, and raises
``AppError`` naming the input and the fix; beside them, what those messages are made of
(where a line of the app is, a signature as written). Nothing here imports
``hibana.blueprint`` or ``hibana.app``.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from hibana.errors import AppError
from hibana.functions import FunctionSpec, HttpTrigger, QueueTrigger
from hibana.messages import MAX_DELAY, Exponential, RetryPolicy
from hibana.names import NAME_RULE, name_problem


def site_of(filename: str, line: int) -> str:
    try:
        rel = os.path.relpath(filename)
    except ValueError:
        rel = filename
    return f"{rel if len(rel) < len(filename) else filename}:{line}"


def not_bare(first: object, decorator: str, example: str, decl_site: str) -> None:
    """Refuse ``@app.http`` written without its call: it would take the function for its
    route and declare nothing."""
    if callable(first) and not isinstance(first, str):
        name = getattr(first, "__name__", "the function")
        raise AppError(
            f"@app.{decorator} at {decl_site} is not called, so {name} is not declared; "
            f"write @app.{decorator}({example}) with its arguments"
        )


def check_signature(fn: Callable[..., Any], name: str, where: str, given: str) -> None:
    """Refuse a function that cannot be called the way every trigger calls it:
    ``fn(input, ctx)``, two positional arguments (``given``: what its trigger calls the
    input: ``req``, ``msg``, ``event``, ``timer``; then the Context)."""
    signature = not_two(fn)
    if signature is not None:
        raise AppError(
            f"function {where} takes {bare(signature)}, but is called with two positional "
            f"arguments, its {given} and the Context: write `def {name}({given}, ctx)`"
        )


def not_two(fn: Callable[..., Any], count: int = 2) -> inspect.Signature | None:
    """``fn``'s signature if ``count`` (two) positional arguments do not bind to it; None
    if they do, or it has none to read (a builtin or the like: left to the call)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*[None] * count)
    except TypeError:
        return signature
    return None


def bare(signature: inspect.Signature) -> inspect.Signature:
    """``signature``'s parameters as written, without their annotations."""
    return signature.replace(
        parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
        return_annotation=signature.empty,
    )


def is_async_handler(fn: Callable[..., Any], where: str, http: bool) -> bool:
    """Whether calling ``fn`` gives a coroutine to await: an ``async def``, a
    ``functools.partial`` of one, or an object whose class has an ``async def __call__``
    (as Starlette's ``is_async_callable`` tells). A generator function, async or not, is
    refused: calling it gives no result, and its body would never run. ``http``: it
    answers HTTP requests, and the error says how to stream an answer."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    call = type(fn).__call__  # an instance's: a function's own is no coroutine function
    fix = (
        "to stream an HTTP answer, move the yields into an inner async generator and return "
        "hibana.StreamingResponse(parts())"
        if http
        else "write it as a def or an async def that returns"
    )
    if inspect.isasyncgenfunction(fn) or inspect.isasyncgenfunction(call):
        raise AppError(
            f"function {where} is an async generator (an async def with yield): it is "
            f"called for its result, not iterated; {fix}"
        )
    if inspect.isgeneratorfunction(fn) or inspect.isgeneratorfunction(call):
        raise AppError(
            f"function {where} is a generator (a def with yield): it is called for its "
            f"result, not iterated; {fix}"
        )
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def checked_name(name: str | None, what: str) -> str | None:
    """``name`` (a ``name=`` given to ``what``, "app.http at function_app.py:12"), or
    AppError unless it is a name: it keys the function's secrets, its timer's or
    subscription's queue, its line in ``hibana status`` and every log line it writes."""
    if name is None:
        return None
    problem = name_problem(name)
    if problem is not None:
        raise AppError(
            f"name={name!r:.60} of {what}: a function's name must be {NAME_RULE}; {problem}"
        )
    return name


def derived_name(derived: str, what: str, source: str) -> str:
    """``derived``, the name ``what`` gives a function that has no ``name=`` (``source``:
    what it is made of, "its __name__"), or AppError unless it is a name: one the rule of
    ``name=`` refuses (a lambda's ``<lambda>``, a prefix's "é") would be keyed as it is."""
    problem = name_problem(derived)
    if problem is not None:
        raise AppError(
            f"{what} names its function {derived!r:.60} ({source}), but a function's name "
            f"must be {NAME_RULE}; {problem}; give it a name of its own with name="
        )
    return derived


def mount_clash(
    spec: FunctionSpec, mine: str, other: FunctionSpec, theirs: str, method: str
) -> str | None:
    """What is told when ``spec``'s route ``mine`` clashes on ``method`` with ``other``'s
    ``theirs`` and one of them is a mount, in the words of the call that mounted it (its
    routes, ``/api/{path:path}``, are none the user wrote); None when neither is one."""
    a, b = spec.trigger, other.trigger
    assert isinstance(a, HttpTrigger) and isinstance(b, HttpTrigger)
    if a.mount is not None and b.mount is not None:
        return (
            f"{a.mount} in {spec.source} ({spec.name}) mounts an app where {b.mount} in "
            f"{other.source} ({other.name}) mounted one; mount one at another prefix"
        )
    if b.mount is not None:
        route, pattern, mount, call = spec, mine, other, b.mount
    elif a.mount is not None:
        route, pattern, mount, call = other, theirs, spec, a.mount
    else:
        return None
    return (
        f'Route "{pattern}" {method} in {route.source} ({route.name}) is taken by {call} in '
        f'{mount.source} ({mount.name}): a mount serves its prefix, with and without a "/", '
        "and every path below it; serve the route from the mounted app, or mount it at "
        "another prefix"
    )


def caller_site(depth: int) -> str:
    frame = sys._getframe(depth + 1)
    return site_of(frame.f_code.co_filename, frame.f_lineno)


Q = TypeVar("Q", bound="QueueTrigger")


def delivery_options(
    kind: type[Q],
    where: str,
    fields: dict[str, Any],
    max_attempts: int,
    retry: RetryPolicy | None,
    visibility_timeout: float,
    timeout: float | None,
    max_concurrency: int | None,
    concurrency_group: str | None,
    limit: int | None,
) -> tuple[Q, float]:
    """The checked delivery options that queue and event functions share, as their
    trigger, and the function's timeout."""
    check_positive(max_attempts, "max_attempts", where, integer=True)
    check_positive(visibility_timeout, "visibility_timeout", where)
    if not visibility_timeout <= MAX_DELAY:
        raise AppError(
            f"visibility_timeout={visibility_timeout!r} in {where} must be at most "
            f"{MAX_DELAY:.0f} seconds (365 days): a message whose worker dies is delivered "
            "again once it passes; give the longest a run may take, in seconds"
        )
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise AppError(
            f"retry={retry!r} in {where} must be hibana.Fixed(...) or hibana.Exponential(...)"
        )
    run_for = visibility_timeout if timeout is None else timeout
    check_positive(run_for, "timeout", where)
    if run_for > visibility_timeout:
        raise AppError(
            f"timeout={run_for:g} in {where} is longer than visibility_timeout="
            f"{visibility_timeout:g}: the message would be delivered again while "
            "still running; raise visibility_timeout"
        )
    if max_concurrency is not None:
        check_positive(max_concurrency, "max_concurrency", where, integer=True)
    group: tuple[str, int] | None = None
    if (concurrency_group is None) != (limit is None):
        raise AppError(
            f"concurrency_group and limit in {where} go together: "
            'concurrency_group="warehouse", limit=500'
        )
    if concurrency_group is not None and limit is not None:
        problem = name_problem(concurrency_group)
        if problem is not None:
            raise AppError(
                f"concurrency_group={concurrency_group!r:.60} in {where}: a group's name must "
                f'be {NAME_RULE}; {problem}; e.g. concurrency_group="warehouse"'
            )
        check_positive(limit, "limit", where, integer=True)
        group = (concurrency_group, int(limit))
    trigger = kind(
        max_attempts=max_attempts,
        retry=retry if retry is not None else Exponential(1.0, 60.0),
        visibility_timeout=float(visibility_timeout),
        group=group,
        **fields,
    )
    return trigger, float(run_for)


def check_queue_name(queue: object, what: str, kind: str = "queue") -> None:
    """``kind``: what the name names (a queue, a topic)."""
    problem = name_problem(queue)
    if problem is not None:
        raise AppError(f"{what}: the {kind} name must be {NAME_RULE}; {problem}")


def check_positive(value: object, what: str, where: str, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        raise AppError(
            f"{what}={value!r:.60} in {where} must be a positive "
            f"{'integer' if integer else 'number'}"
        )
    if not integer and not _finite(value):
        # a lease of inf never ends: a message whose worker died would never be delivered
        # again; and no deadline would ever be enforced
        raise AppError(
            f"{what}={value!r:.60} in {where} must be a finite number of seconds; for work "
            "that runs long, give as many as it needs (86400 is a day)"
        )


def _finite(value: object) -> bool:
    try:
        return math.isfinite(value)  # type: ignore[arg-type]
    except OverflowError:  # an int too large for a float
        return False
