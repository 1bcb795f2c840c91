"""What an invocation's outcome makes of the queue deliveries it ran: ok acknowledges
them; an error or a timeout retries them per the function's policy, and dead-letters them
after ``max_attempts`` (or at once, for a body that is no JSON); a cancellation releases
them, the attempt not counted."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hibana.app import FunctionSpec, QueueTrigger
from hibana.dispatcher import Outcome
from hibana.errors import BadMessage
from hibana.messages import MAX_DELAY, BatchFailed, Exponential, RetryPolicy
from hibana.store.base import Delivery, Settle
from hibana.telemetry.log_fields import error_text
from hibana.telemetry.logs import Logger


def settlements(
    spec: FunctionSpec,
    deliveries: list[Delivery],
    outcome: Outcome,
    log: Logger,
    scrub: Callable[[str], str],
) -> tuple[list[Settle], dict[str, Any]]:
    """What ``outcome`` makes of ``deliveries`` (one invocation's, of ``spec``): their
    settlements, and the fields of its invocation line that say so. ``scrub``: what hides
    secrets in an error's text."""
    line: dict[str, Any] = {"outcome": outcome.kind}
    if outcome.kind == "ok":
        return [Settle("ack", d.id, d.attempt) for d in deliveries], line
    if outcome.kind in ("cancelled", "throttled"):
        line["released"] = True
        return [Settle("release", d.id, d.attempt) for d in deliveries], line
    failed = {d.id for d in deliveries}
    error = outcome.error
    if outcome.kind == "timeout":
        text = f"timed out after {spec.timeout:g}s"
    elif isinstance(error, BatchFailed):
        cause = error.error
        text = error_text(cause) if isinstance(cause, BaseException) else str(cause) or "failed"
        strangers = error.failed - failed
        if strangers:
            # which of the batch failed is not known (ids from the payloads, say):
            # acknowledging the rest would lose those that did
            text += (
                f" (BatchFailed named {', '.join(map(str, sorted(strangers)))}, no "
                "message of this batch: all of it is retried; name its messages, or "
                "their msg.id)"
            )
        else:
            failed &= error.failed
        line["failed"] = sorted(failed)
    else:
        assert error is not None
        text = error_text(error)
        log.exception("function raised", error)
    # a message whose body is no JSON fails every attempt alike: dead at once
    hopeless = _bad_bodies(error) & failed
    text = scrub(text)
    line["error"] = text
    # what the store keeps with the message, each attempt's, shown by `hibana queue dlq`
    kept = kept_error(text)
    trigger = spec.trigger
    settles: list[Settle] = []
    retried: list[float] = []
    dead: list[int] = []
    now = time.time()
    for d in deliveries:
        if d.id not in failed:
            settles.append(Settle("ack", d.id, d.attempt))
            continue
        errors = [*d.errors, {"attempt": d.attempt, "error": kept, "at": round(now, 3)}]
        if not isinstance(trigger, QueueTrigger) or not trigger.dead_letters:
            settles.append(Settle("ack", d.id, d.attempt))  # a timer: the schedule goes on
        elif d.attempt >= trigger.max_attempts or d.id in hopeless:
            settles.append(Settle("dead", d.id, d.attempt, error=kept, errors=errors))
            dead.append(d.id)
        else:
            delay = _retry_delay(trigger.retry, d.attempt, log)
            settles.append(Settle("retry", d.id, d.attempt, delay=delay, error=kept, errors=errors))
            retried.append(delay)
    if retried:
        line["retry_in_s"] = round(min(retried), 3)
    if dead:
        line["dead_lettered"] = dead if trigger.batch_size > 1 else True  # type: ignore[union-attr]
    return settles, line


#: The pause taken after a failure whose retry policy gave none: the default policy's.
_FALLBACK_RETRY = Exponential(1.0, 60.0)


def _retry_delay(policy: RetryPolicy, attempt: int, log: Logger) -> float:
    """``policy``'s pause after ``attempt`` failed. A policy of the user's own that raises
    or gives no number of seconds from 0 to ``MAX_DELAY`` (a NaN, None) is logged, and the
    default policy's pause taken: raised here, it left the message unsettled, to come back
    when its lease ran out as if its worker had died; a NaN parked it for ever (or failed
    the settlement, on SQLite)."""
    try:
        delay = float(policy.delay(attempt))
    except Exception as exc:
        wrong = f"raised {error_text(exc)}"
    else:
        if 0 <= delay <= MAX_DELAY:
            return delay
        wrong = f"returned {delay!r}"
    fallback = _FALLBACK_RETRY.delay(attempt)
    log.error(
        f"retry policy {type(policy).__name__} {wrong} for attempt {attempt}: its delay() "
        f"must return a number of seconds from 0 to {MAX_DELAY:.0f}; the default policy's "
        f"pause ({fallback:.3g} s) is taken instead",
        attempt=attempt,
    )
    return fallback


def _bad_bodies(error: BaseException | None) -> set[int]:
    """The ids of the messages whose body ``msg.data`` found no JSON, in ``error`` or the
    exceptions it was raised from (a function may wrap the one it got)."""
    found: set[int] = set()
    seen: set[int] = set()
    pending = [error]
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        if isinstance(exc, BadMessage):
            found.add(exc.message_id)
        if isinstance(exc, BatchFailed) and isinstance(exc.error, BaseException):
            pending.append(exc.error)
        pending += (exc.__cause__, exc.__context__)
    return found


#: The most of an attempt's error kept with its message: the body is held to
#: MAX_PAYLOAD_BYTES, and the errors of its attempts, each in full, were not (an exception
#: that holds a response of megabytes grew the message by as much at every retry).
MAX_ERROR_CHARS = 4096


def kept_error(text: str) -> str:
    """``text``, or its first ``MAX_ERROR_CHARS`` and how long it was: what the store
    keeps of an attempt's error (the invocation's log line has it whole)."""
    if len(text) <= MAX_ERROR_CHARS:
        return text
    return f"{text[:MAX_ERROR_CHARS]}... ({len(text)} characters; the log line has them all)"
