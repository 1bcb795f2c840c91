"""W3C Trace Context: parse an incoming ``traceparent``, start or continue a trace."""

from __future__ import annotations

import random
from typing import NamedTuple

# random.getrandbits is reseeded in every forked child by the random module itself,
# so workers forked from one zygote do not repeat each other's ids.
_bits = random.getrandbits
_HEX = frozenset("0123456789abcdef")


class TraceContext(NamedTuple):
    """The trace an invocation belongs to: its own span and, if continued, the caller's.

    Immutable; a named tuple because one is built per invocation (a third of what a
    frozen dataclass costs)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None = None
    sampled: bool = True

    @property
    def traceparent(self) -> str:
        """The header value that carries this span on to the next hop."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def child(self) -> TraceContext:
        """A new span in the same trace, whose parent is this one."""
        return TraceContext(self.trace_id, new_span_id(), self.span_id, self.sampled)


def new_trace_id() -> str:
    return (_bits(128) or 1).to_bytes(16).hex()


def new_span_id() -> str:
    return (_bits(64) or 1).to_bytes(8).hex()


def new_invocation_id() -> str:
    return _bits(128).to_bytes(16).hex()


def _valid_hex(value: str, length: int) -> bool:
    return len(value) == length and set(value) <= _HEX and value != "0" * length


def continue_or_start(traceparent: str | None) -> TraceContext:
    """A new span that continues ``traceparent`` when it is valid, or starts a new trace.

    A malformed header is ignored rather than rejected, as the W3C spec asks; so is one
    with upper-case hex digits (the spec's ids are lower-case)."""
    if traceparent:
        parts = traceparent.strip().split("-")
        if (
            len(parts) >= 4
            and len(parts[0]) == 2
            and set(parts[0]) <= _HEX
            and parts[0] != "ff"
            and _valid_hex(parts[1], 32)
            and _valid_hex(parts[2], 16)
            and len(parts[3]) == 2
            and set(parts[3]) <= _HEX
            and (parts[0] != "00" or len(parts) == 4)
        ):
            return TraceContext(parts[1], new_span_id(), parts[2], bool(int(parts[3], 16) & 1))
    return TraceContext(new_trace_id(), new_span_id())
