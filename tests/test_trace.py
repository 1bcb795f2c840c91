"""W3C ``traceparent``: a valid header continues the caller's trace, anything else starts one."""

from __future__ import annotations

import re

import pytest

from hibana.telemetry.trace import (
    TraceContext,
    continue_or_start,
    new_invocation_id,
    new_span_id,
    new_trace_id,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{SPAN_ID}-01"

HEX32 = re.compile(r"[0-9a-f]{32}\Z")
HEX16 = re.compile(r"[0-9a-f]{16}\Z")


def assert_new_trace(ctx: TraceContext) -> None:
    assert HEX32.match(ctx.trace_id)
    assert ctx.trace_id != "0" * 32
    assert ctx.trace_id != TRACE_ID
    assert HEX16.match(ctx.span_id)
    assert ctx.span_id != "0" * 16
    assert ctx.parent_span_id is None
    assert ctx.sampled is True


def test_valid_header_continues_the_trace() -> None:
    ctx = continue_or_start(VALID)
    assert ctx.trace_id == TRACE_ID
    assert ctx.parent_span_id == SPAN_ID
    assert ctx.span_id != SPAN_ID
    assert HEX16.match(ctx.span_id)
    assert ctx.sampled is True
    assert ctx.traceparent == f"00-{TRACE_ID}-{ctx.span_id}-01"


def test_each_continuation_is_a_new_span() -> None:
    spans = {continue_or_start(VALID).span_id for _ in range(20)}
    assert len(spans) == 20


def test_not_sampled_flag_is_kept() -> None:
    ctx = continue_or_start(f"00-{TRACE_ID}-{SPAN_ID}-00")
    assert ctx.trace_id == TRACE_ID
    assert ctx.sampled is False
    assert ctx.traceparent.endswith("-00")


def test_other_flag_bits_do_not_change_sampling() -> None:
    assert continue_or_start(f"00-{TRACE_ID}-{SPAN_ID}-03").sampled is True
    assert continue_or_start(f"00-{TRACE_ID}-{SPAN_ID}-02").sampled is False


def test_surrounding_whitespace_is_ignored() -> None:
    assert continue_or_start(f"  {VALID} ").trace_id == TRACE_ID


def test_a_future_version_with_more_fields_continues() -> None:
    ctx = continue_or_start(f"cc-{TRACE_ID}-{SPAN_ID}-01-what-the-future-holds")
    assert ctx.trace_id == TRACE_ID
    assert ctx.parent_span_id == SPAN_ID


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "00-garbage",
        f"00-{'0' * 32}-{SPAN_ID}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE_ID}-{SPAN_ID}-01",  # version ff is forbidden
        f"00-{TRACE_ID[:-1]}-{SPAN_ID}-01",  # trace id too short
        f"00-{TRACE_ID}0-{SPAN_ID}-01",  # trace id too long
        f"00-{TRACE_ID}-{SPAN_ID[:-1]}-01",  # span id too short
        f"00-{TRACE_ID[:-1]}g-{SPAN_ID}-01",  # not hex
        f"00-{TRACE_ID}-{SPAN_ID[:-1]}x-01",  # not hex
        f"00-{TRACE_ID}-{SPAN_ID}-1",  # flags too short
        f"00-{TRACE_ID}-{SPAN_ID}-zz",  # flags not hex
        f"00-{TRACE_ID}-{SPAN_ID}",  # no flags
        f"00-{TRACE_ID}-{SPAN_ID}-01-extra",  # version 00 has exactly four fields
        f"0-{TRACE_ID}-{SPAN_ID}-01",  # version too short
        f"000-{TRACE_ID}-{SPAN_ID}-01",  # version too long
        f"00_{TRACE_ID}_{SPAN_ID}_01",  # wrong separator
        f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",  # the ids are lower-case hex
        f"00-{TRACE_ID}-{SPAN_ID.upper()}-01",
        f"0A-{TRACE_ID}-{SPAN_ID}-01",  # and so is the version
    ],
)
def test_invalid_header_starts_a_new_trace(header: str | None) -> None:
    assert_new_trace(continue_or_start(header))


@pytest.mark.parametrize("version", ["zz", "0g", "-1"])
def test_a_version_that_is_not_hex_starts_a_new_trace(version: str) -> None:
    """The spec: a version that cannot be parsed as two hex digits means "ignore the header"."""
    assert_new_trace(continue_or_start(f"{version}-{TRACE_ID}-{SPAN_ID}-01"))


def test_new_traces_are_distinct() -> None:
    ids = {continue_or_start(None).trace_id for _ in range(20)}
    assert len(ids) == 20


def test_id_formats() -> None:
    assert HEX32.match(new_trace_id())
    assert HEX16.match(new_span_id())
    assert HEX32.match(new_invocation_id())
    assert new_invocation_id() != new_invocation_id()


@pytest.mark.parametrize(
    "state", ["foo=1,foo=1", "foo=1,foo=2", "foo=1,bar=2,baz=3,foo=4", "foo=1, bad key=2 ,foo=3"]
)
def test_a_tracestate_with_a_key_twice_is_dropped_and_the_trace_goes_on(state: str) -> None:
    # W3C Trace Context 3.3.1.5: one entry a key; its test suite, and OpenTelemetry's
    # propagators, drop the whole tracestate (it was passed on as it came)
    ctx = continue_or_start(VALID, state)
    assert (ctx.trace_id, ctx.parent_span_id, ctx.tracestate) == (TRACE_ID, SPAN_ID, "")


def test_a_tracestate_with_keys_alike_but_not_the_same_goes_on() -> None:
    state = "foo=1,foo@tenant=2,tenant@foo=3,bar=foo"
    assert continue_or_start(VALID, state).tracestate == state
