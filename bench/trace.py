"""What tracing costs one invocation: hibana's trace work beside the OpenTelemetry SDK's,
for the same HTTP request, with and without an incoming ``traceparent``.

hibana, per invocation, as the HTTP trigger does it: continue the incoming trace (or
start one), put the trace and span ids on the invocation's log line (that line is the
span: ids, parent, duration, outcome), and send ``traceparent`` back. The log line itself
is written either way and is not counted.

OpenTelemetry, as an instrumented server does it with the SDK's recommended set-up (a
``TracerProvider`` with a ``BatchSpanProcessor``; its exporter drops the spans, so no
network is counted): extract the context from the headers, start a server span, make it
current, set the same attributes, inject ``traceparent`` into the answer, end it.

Both run in turns in one process, so the machine's noise falls on both alike. Prints
microseconds per invocation, the ratio and DESIGN.md's budget (under 5 µs); exits 0
whatever the numbers.

Run from anywhere: .venv/bin/python bench/trace.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from hibana.telemetry.trace import continue_or_start

CALLS = 20_000
INCOMING = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
BUDGET_US = 5.0
#: The invocation's id is made whether or not it is traced: the same one for both.
INVOCATION_ID = "0af7651916cd43dd8448eb211c80319c"


class Dropped(SpanExporter):
    """Takes the batches and keeps nothing: what is measured is the invocation's share."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def hibana_invocation(header: bytes | None) -> list[tuple[bytes, bytes]]:
    trace = continue_or_start(header.decode("latin-1") if header is not None else None)
    line: dict[str, Any] = {
        "invocation_id": INVOCATION_ID,
        "function": "hello",
        "trace_id": trace.trace_id,
        "span_id": trace.span_id,
    }
    if trace.parent_span_id is not None:
        line["parent_span_id"] = trace.parent_span_id
    return [(b"traceparent", trace.traceparent.encode())]


def otel_invocation_factory() -> tuple[Callable[[bytes | None], list[tuple[bytes, bytes]]], Any]:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropped()))
    tracer = provider.get_tracer("bench")
    propagator = TraceContextTextMapPropagator()
    server = otel_trace.SpanKind.SERVER

    def invocation(header: bytes | None) -> list[tuple[bytes, bytes]]:
        carrier = {"traceparent": header.decode("latin-1")} if header is not None else {}
        parent = propagator.extract(carrier)
        span = tracer.start_span("hello", context=parent, kind=server)
        token = otel_context.attach(otel_trace.set_span_in_context(span))
        try:
            span.set_attribute("faas.invocation_id", INVOCATION_ID)
            span.set_attribute("faas.name", "hello")
            answer: dict[str, str] = {}
            propagator.inject(answer)
        finally:
            otel_context.detach(token)
            span.end()
        return [(b"traceparent", answer["traceparent"].encode())]

    return invocation, provider


def per_call(fn: Callable[[bytes | None], object], header: bytes | None) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        fn(header)
    return (time.perf_counter() - start) / CALLS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    otel, provider = otel_invocation_factory()
    peers: dict[str, Callable[[bytes | None], object]] = {
        "hibana": hibana_invocation,
        "OpenTelemetry SDK": otel,
    }
    cases = {"traceparent continued": INCOMING, "trace started": None}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for case, header in cases.items():
            for name, fn in peers.items():
                times.setdefault((case, name), []).append(per_call(fn, header))
    provider.shutdown()
    print(f"{'case':<22} {'tracer':<18} {'us per invocation':>18} {'vs hibana':>10}")
    for case in cases:
        base = statistics.median(times[(case, "hibana")])
        for name in peers:
            median = statistics.median(times[(case, name)])
            print(f"{case:<22} {name:<18} {median * 1e6:>18.2f} {median / base:>9.1f}x")
    worst = max(statistics.median(times[(case, "hibana")]) for case in cases) * 1e6
    verdict = "met" if worst < BUDGET_US else "missed"
    print(f"budget: hibana under {BUDGET_US:g} us per invocation: {verdict} ({worst:.2f} us)")


if __name__ == "__main__":
    main()
