"""W3C Trace Context: parse an incoming ``traceparent``, start or continue a trace."""

from __future__ import annotations

import random
import re
from typing import NamedTuple

# random.getrandbits is reseeded in every forked child by the random module itself,
# so workers forked from one zygote do not repeat each other's ids.
_bits = random.getrandbits


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


def new_trace_id() -> str:
    return (_bits(128) or 1).to_bytes(16).hex()


def new_span_id() -> str:
    return (_bits(64) or 1).to_bytes(8).hex()


def new_invocation_id() -> str:
    return _bits(128).to_bytes(16).hex()


#: version-trace_id-parent_id-flags, lower-case hex; a version after 00 may add fields.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.S)
_match_traceparent = _TRACEPARENT.fullmatch
_NO_TRACE, _NO_SPAN = "0" * 32, "0" * 16


def continue_or_start(traceparent: str | None) -> TraceContext:
    """A new span that continues ``traceparent`` when it is valid, or starts a new trace.

    A malformed header is ignored rather than rejected, as the W3C spec asks; so is one
    with upper-case hex digits (the spec's ids are lower-case)."""
    if traceparent:
        m = _match_traceparent(traceparent.strip())
        if m is not None:
            version, trace_id, parent, flags, more = m.groups()
            if (
                version != "ff"
                and trace_id != _NO_TRACE
                and parent != _NO_SPAN
                and (more is None or version != "00")
            ):
                return TraceContext(trace_id, new_span_id(), parent, flags[1] in "13579bdf")
    return TraceContext(new_trace_id(), new_span_id())
