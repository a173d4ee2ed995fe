"""What tracing costs: a run with ``microdag.otel.Tracing`` against the same run without it.

Workload: the layered flow of ``bench_flow`` (5,000 steps, 1,000 wide, 3
dependencies each; 1,000 in the smoke run).  Timed, in one run:

- ``untraced``: ``flow.run()`` inline, no hooks (the fast path);
- ``hook``: the same with one hook that does nothing (every step on the
  careful path, as any hook puts it);
- ``traced``: with ``Tracing`` on an SDK ``TracerProvider`` whose span
  processor hands each span to an exporter that drops it (what is measured is
  making the spans, not sending them);
- ``hand``: the peer: a Python loop over the same steps in a precomputed
  order, each call inside ``tracer.start_as_current_span`` of the same
  provider: what any traced loop pays to OpenTelemetry itself;
- ``traced-threads-2``: ``Tracing`` on the threads backend, 2 workers.

``extra_info`` carries ``us_per_step`` (median).  Skipped where
``opentelemetry-sdk`` is not installed.
"""

from __future__ import annotations

from typing import Any

import pytest

import microdag
from bench_flow import add_up, disabled, layered_deps, per_step

pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed (the test extras have it)")


def _provider() -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Drop()))
    return provider


def _traced_loop(deps: dict[str, list[str]], tracer: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, ds in deps.items():
        with tracer.start_as_current_span("step", attributes={"step": name}):
            out[name] = add_up(**{d: out[d] for d in ds})
    return out


@pytest.mark.benchmark(group="otel-layered")
@pytest.mark.parametrize("runner", ["untraced", "hook", "traced", "hand", "traced-threads-2"])
def test_tracing_cost(benchmark: Any, runner: str, request: pytest.FixtureRequest) -> None:
    from microdag.otel import Tracing

    n = 1_000 if disabled(request) else 5_000
    deps = layered_deps(n)
    flow = microdag.Flow("layered")
    for name, ds in deps.items():
        flow.add(name, add_up, depends_on=ds)
    flow.validate()
    provider = _provider()
    tracing = Tracing(provider)
    if runner == "untraced":
        fn = lambda: flow.run().outputs  # noqa: E731
    elif runner == "hook":
        fn = lambda: flow.run(hooks=[lambda event: None]).outputs  # noqa: E731
    elif runner == "traced":
        fn = lambda: flow.run(hooks=[tracing]).outputs  # noqa: E731
    elif runner == "traced-threads-2":
        fn = lambda: flow.run(hooks=[tracing], executor="threads", max_workers=2).outputs  # noqa: E731
    else:
        tracer = provider.get_tracer("bench")
        fn = lambda: _traced_loop(deps, tracer)  # noqa: E731
    out = benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)
    assert max(out.values()) == max(_traced_loop(deps, provider.get_tracer("check")).values())
    per_step(benchmark, n)
