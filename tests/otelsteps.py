"""Traced runs for ``test_otel`` (and ``dasksteps``): steps, and scenarios that
return the spans an in-memory exporter received, as JSON-ready dicts.

Functions are at module level so that worker processes can load them.
"""

import asyncio
import os
import threading
import time

import microdag

#: The step ``b`` makes a span of its own with this name when a tracer
#: provider is set in its process.
INNER = "user.inner"


def a() -> int:
    return 1


def current_ids() -> "list[str]":
    """The trace and span ids of the span current here (hex)."""
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    return [format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")]


def b(a: int) -> "list[str]":
    """The ids of the span current in the step; a child span of its own."""
    from opentelemetry import trace

    with trace.get_tracer("user").start_as_current_span(INNER):
        pass
    return current_ids()


async def b_async(a: int) -> "list[str]":
    await asyncio.sleep(0)
    return b(a)


def c(b: "list[str]", x: int) -> int:
    return x * 10


def flaky(marker: str) -> str:
    """Fails on its first call (a marker file says it was made)."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    return "second attempt"


def boom() -> None:
    raise ValueError("bad <thing> \u2603")


def after_boom(boom: None) -> None:  # skipped: never traced
    return None


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def first(value: int) -> int:  # (a tracer that raises: test_otel)
    return value + 1


def second(first: int) -> int:
    return first * 2


def build(async_b: bool = False) -> microdag.Flow:
    flow = microdag.Flow("traced")
    flow.add("a", a)
    flow.add("b", b_async if async_b else b)
    flow.add("c", c, map="x")
    flow.add("flaky", flaky, retries=1, retry_delay=0.01)
    flow.add("boom", boom)
    flow.add("after_boom", after_boom)
    return flow


def spans_json(spans: "list") -> "list[dict]":
    out = []
    for s in spans:
        out.append({
            "name": s.name,
            "trace": format(s.context.trace_id, "032x"),
            "id": format(s.context.span_id, "016x"),
            "parent": None if s.parent is None else format(s.parent.span_id, "016x"),
            "attributes": dict(s.attributes),
            "status": s.status.status_code.name,
            "description": s.status.description,
            "events": [[e.name, dict(e.attributes)] for e in s.events],
            "start": s.start_time,
            "end": s.end_time,
        })
    return out


_PROVIDER: list = []


def _provider() -> "tuple":
    """The global tracer provider (made once: it cannot be replaced) and its exporter, cleared."""
    if _PROVIDER:
        _PROVIDER[1].clear()
        return _PROVIDER[0], _PROVIDER[1]
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # (the steps' own spans use the global one)
    _PROVIDER[:] = [provider, exporter]
    return provider, exporter


def traced(executor: "object", folder: str) -> dict:
    """The basic flow under a span of the caller, traced; its spans and outputs."""
    from opentelemetry import trace

    from microdag.otel import Tracing

    provider, exporter = _provider()
    exporter.clear()
    tracing = Tracing(provider)
    flow = build(async_b=executor == "arun")
    inputs = {"x": [1, 2, 3], "marker": os.path.join(folder, "flaky")}
    with trace.get_tracer("user").start_as_current_span("caller") as outer:
        if executor == "arun":
            run = asyncio.run(flow.arun(inputs, hooks=[tracing], on_failure="continue", raise_on_failure=False,
                                       keep_outputs=True))
        else:
            run = flow.run(inputs, executor=executor, hooks=[tracing], on_failure="continue",
                           raise_on_failure=False, keep_outputs=True,
                           max_workers=2 if executor != "inline" else None)
        caller = format(outer.get_span_context().span_id, "016x")
    return {
        "caller": caller,
        "run_id": run.id,
        "status": run.status,
        "b": run.outputs.get("b"),
        "spans": spans_json(exporter.get_finished_spans()),
        "open": len(tracing._runs),
    }


def timeout_and_cancel(executor: "object") -> dict:
    """A step past its timeout, then a run cancelled while a step sleeps."""
    from microdag.otel import Tracing

    provider, exporter = _provider()
    tracing = Tracing(provider)
    flow = microdag.Flow("slow")
    flow.add("slow", nap, timeout=0.2)
    exporter.clear()
    flow.run({"seconds": 2.0}, executor=executor, hooks=[tracing], raise_on_failure=False)
    timed_out = spans_json(exporter.get_finished_spans())

    flow = microdag.Flow("cancelled")
    flow.add("slow", nap)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    exporter.clear()
    flow.run({"seconds": 2.0}, executor=executor, hooks=[tracing], cancel=cancel, raise_on_failure=False)
    return {"timed_out": timed_out, "cancelled": spans_json(exporter.get_finished_spans()),
            "open": len(tracing._runs)}


BACKENDS = ("inline", "threads", "processes", "executor", "arun")


def run_all() -> dict:
    """Every scenario on every backend (a child process of ``test_otel`` runs this)."""
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    out: dict = {}
    for name in BACKENDS:
        with tempfile.TemporaryDirectory() as folder:
            if name == "executor":
                with ThreadPoolExecutor(2) as pool:
                    out[name] = traced(pool, folder)
            else:
                out[name] = traced(name, folder)
    for name in ("inline", "threads", "processes"):
        out[f"{name} timeout and cancel"] = timeout_and_cancel(name)
    return out
