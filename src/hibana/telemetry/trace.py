"""W3C Trace Context: parse an incoming ``traceparent`` (and ``tracestate``), start or
continue a trace, and carry both to the next hop (a queue message, an event)."""

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
    #: The caller's ``tracestate`` (vendors' entries), passed on unchanged; "" if none.
    tracestate: str = ""

    @property
    def traceparent(self) -> str:
        """The header value that carries this span on to the next hop."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    @property
    def carried(self) -> str:
        """What a queue message keeps of this span for its consumer (see ``carry``)."""
        return carry(self.traceparent, self.tracestate)


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
#: What TraceContext's __new__ calls, with its fields in order and none left to a default.
_tuple = tuple.__new__
#: A new trace's fields after its two ids: TraceContext's own defaults.
_UNCONTINUED = tuple(TraceContext._field_defaults.values())


def continue_or_start(traceparent: str | None, tracestate: str | None = None) -> TraceContext:
    """A new span that continues ``traceparent`` when it is valid, or starts a new trace.

    A malformed header is ignored rather than rejected, as the W3C spec asks; so is one
    with upper-case hex digits (the spec's ids are lower-case). ``tracestate`` goes on
    with a continued trace only (the spec: never without its traceparent)."""
    if traceparent:
        caller = _parent(traceparent)
        if caller is not None:
            trace_id, parent, sampled = caller
            state = _tracestate(tracestate) if tracestate else ""
            return _tuple(TraceContext, (trace_id, new_span_id(), parent, sampled, state))
    # made without the named tuple's __new__ (a Python function): one of these each
    # request, at a third of the cost
    return _tuple(TraceContext, (new_trace_id(), new_span_id(), *_UNCONTINUED))


def is_traceparent(value: object) -> bool:
    """``value`` is a traceparent that ``continue_or_start`` would continue."""
    return isinstance(value, str) and _parent(value) is not None


def _parent(traceparent: str) -> tuple[str, str, bool] | None:
    """The trace id, parent span id and sampled flag of a valid ``traceparent``."""
    m = _match_traceparent(traceparent.strip())
    if m is None:
        return None
    version, trace_id, parent, flags, more = m.groups()
    if (
        version == "ff"
        or trace_id == _NO_TRACE
        or parent == _NO_SPAN
        or (more is not None and version == "00")
    ):
        return None
    return trace_id, parent, flags[1] in "13579bdf"


def carry(traceparent: str, tracestate: str | None) -> str:
    """The trace a queue message keeps for its consumer: the traceparent, and the
    tracestate after a newline when there is one (read back by ``continue_carried``)."""
    return f"{traceparent}\n{tracestate}" if tracestate else traceparent


def continue_carried(carried: str | None) -> TraceContext:
    """The span of a consumer of what ``TraceContext.carried`` wrote."""
    if carried is None:
        return continue_or_start(None)
    parent, _, state = carried.partition("\n")
    return continue_or_start(parent, state)


def carried_link(carried: str | None) -> tuple[str, str] | None:
    """The trace id and span id of the span that sent what ``carried`` holds (the
    message's creation context), or None if it holds no valid traceparent: a span link."""
    if carried is None:
        return None
    parent = _parent(carried.partition("\n")[0])
    return None if parent is None else (parent[0], parent[1])


#: One list member (W3C Trace Context 3.3.1): a simple or a multi-tenant key, "=", a value of
#: printable ASCII without "," or "=".
_MEMBER = re.compile(
    r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
#: What is passed on at most: the spec asks for 512 characters and 32 members at least.
_STATE_CHARS = 512
_STATE_MEMBERS = 32


def _tracestate(value: str) -> str:
    """``tracestate`` as passed on: its valid list members, in order, the first 32 of
    them within 512 characters (members of over 128 go first, as the spec suggests);
    "" if none is valid, or if a key is in it twice: the spec allows one entry a key
    (its vendor's last position in the trace), and which one is last cannot be told, so
    the whole is dropped, as OpenTelemetry's propagators and the W3C test suite do."""
    members = [m.strip() for m in value.split(",")]
    kept = [m for m in members if m and _MEMBER.fullmatch(m)]
    if len({m.partition("=")[0] for m in kept}) < len(kept):
        return ""
    kept = kept[:_STATE_MEMBERS]
    joined = ",".join(kept)
    if len(joined) <= _STATE_CHARS:
        return joined
    kept = [m for m in kept if len(m) <= 128]
    while kept and len(",".join(kept)) > _STATE_CHARS:
        kept.pop()
    return ",".join(kept)
