"""What a queue function receives (``Message``), how a failed one is retried (``Fixed``,
``Exponential``), and how a batch reports the items that failed (``BatchFailed``)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from hibana.errors import BadMessage

#: The longest a message may be held back (``delay``, a retry's pause): 365 days. Anything
#: longer is a mistake, not a plan (``math.inf`` for "never", milliseconds given as
#: seconds): such a message would sit unseen, counted as delayed, for longer than any code
#: that reads it.
MAX_DELAY = 365 * 24 * 3600.0

_decode = msgspec.json.Decoder().decode
_encode_json = msgspec.json.encode


@dataclass(slots=True)
class Message:
    """One queue message, as delivered to a queue function."""

    id: int
    queue: str
    #: The payload as enqueued, JSON-encoded.
    body: bytes
    #: 1 on the first delivery, counting up on each retry.
    attempt: int
    #: When it was enqueued (seconds since the epoch).
    enqueued_ts: float
    #: The errors of earlier attempts: {"attempt", "error", "at"} each (of a long error,
    #: its first 4096 characters).
    errors: list[dict[str, Any]] = field(default_factory=list)
    _data: Any = None
    _decoded: bool = False

    @property
    def data(self) -> Any:
        """The payload, decoded from JSON."""
        if not self._decoded:
            try:
                self._data = _decode(self.body)
            except msgspec.DecodeError as exc:
                raise BadMessage(
                    self.id,
                    self.queue,
                    f"message {self.id} on queue {self.queue!r} has a body that is not JSON "
                    f"({exc}): {self.body[:100]!r}; no attempt can change it, so it is a "
                    "dead letter at once. Whatever wrote it sent no JSON: read such a body "
                    "as msg.body (bytes), or have its writer send JSON",
                ) from None
            self._decoded = True
        return self._data

    @property
    def enqueued_at(self) -> datetime:
        return datetime.fromtimestamp(self.enqueued_ts, UTC)


class RetryPolicy:
    """How long a failed message waits before its next attempt."""

    def delay(self, attempt: int) -> float:
        """Seconds to wait after attempt number ``attempt`` (1, 2, ...) failed."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Fixed(RetryPolicy):
    """The same pause after every failure."""

    seconds: float = 5.0

    def __post_init__(self) -> None:
        _non_negative("Fixed", "seconds", self.seconds)

    def delay(self, attempt: int) -> float:
        return self.seconds


@dataclass(frozen=True, slots=True)
class Exponential(RetryPolicy):
    """``base`` seconds after the first failure, doubling each time up to ``max``; with
    ``jitter`` each pause is drawn from its upper half, so retries of many messages that
    failed together do not arrive together."""

    base: float = 1.0
    max: float = 60.0
    jitter: bool = True

    def __post_init__(self) -> None:
        _non_negative("Exponential", "base", self.base)
        _non_negative("Exponential", "max", self.max)
        if self.max < self.base:
            raise ValueError(f"Exponential(base={self.base}, max={self.max}): max is below base")

    def delay(self, attempt: int) -> float:
        pause: float = min(self.max, self.base * 2.0 ** max(0, min(attempt - 1, 60)))
        if self.jitter:
            pause = pause / 2 + random.uniform(0, pause / 2)
        return pause


def _non_negative(policy: str, name: str, value: object) -> None:
    # NaN is no number of seconds, and an infinite pause holds a message back for ever
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(
            f"{policy}({name}={value!r}): must be a finite number of seconds, 0 or more"
        )
    if value > MAX_DELAY:
        # a retry that waits this long parks its message as a delay over the bound would
        raise ValueError(
            f"{policy}({name}={value!r}): a retry would wait over {MAX_DELAY:.0f} seconds "
            "(365 days), longer than a message may be held back; give a pause in seconds "
            "(not milliseconds) of at most that"
        )


class BatchFailed(Exception):
    """Raise from a batch function (``batch_size`` > 1) when only some messages failed:
    those are retried, the rest are acknowledged.

    ``failed`` holds the messages (or their ids) that failed; ``error`` says why."""

    def __init__(self, failed: Iterable[Message | int], error: str | BaseException = "") -> None:
        self.failed = frozenset(m.id if isinstance(m, Message) else int(m) for m in failed)
        self.error = error
        super().__init__(f"{len(self.failed)} message(s) of the batch failed: {error}")


def encode_json(data: Any, what: str) -> bytes:
    """JSON for what a function sends on (``what``: "the message for queue 'q'", "the data
    of event 'e'"), or TypeError naming what could not be encoded: also what JSON has no
    value for, which would reach the consumer as something else."""
    try:
        body = _encode_json(data)
    except (TypeError, msgspec.EncodeError) as exc:
        raise TypeError(
            f"{what} is not JSON-serialisable: {exc} "
            f"(the payload is a {type(data).__name__}); send dicts, lists, strings, "
            "numbers, booleans and None"
        ) from None
    except RecursionError:
        raise TypeError(
            f"{what} nests too deeply to encode (about 1000 levels "
            f"at most), or holds itself (the payload is a {type(data).__name__}); flatten it"
        ) from None
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end]
        raise TypeError(
            f"{what} holds a string with a lone surrogate "
            f"({bad!r}: half of a UTF-16 pair, not a character), which JSON in UTF-8 "
            "cannot hold; decode the text it came from with errors='replace', or send "
            "both halves of the pair as the one character they make"
        ) from None
    # msgspec writes a NaN or an infinity as null: look for one only where a null is
    if b"null" in body:
        odd = _not_finite(data)
        if odd is not None:
            raise TypeError(
                f"{what} holds the float {odd!r}, which JSON has "
                "no value for (it would reach the consumer as None); send None, or the "
                "number as a string"
            )
    return body


def _not_finite(data: Any) -> float | None:
    """The first NaN or infinity in ``data``; None if it holds none."""
    pending = [msgspec.to_builtins(data)]
    while pending:
        item = pending.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return item
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None
