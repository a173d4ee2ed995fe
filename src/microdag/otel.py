"""OpenTelemetry traces of runs: the :class:`Tracing` hook.

``flow.run(hooks=[Tracing()])`` makes one span per run (``microdag.run``) and
one child span per step attempt (``microdag.step``), and runs each attempt's
call with its span current, so that spans the step makes itself (an
instrumented HTTP client, a database driver) are its children.  Worker
processes, executors and Dask workers get the span's context with the
attempt (the trace and span ids: a few bytes in the pickle).

How it hooks in.  The runner looks among its hooks for objects with
``_traces_attempts`` and calls them at four moments (never through
:class:`~microdag.Event`, which has no map item and is dispatched where it is
convenient, not when the attempt really starts): the run starts (the caller's
thread, whose current span becomes the run span's parent), an attempt starts
(in-process: in the thread that calls the step, right before the call; on a
pool: when it is handed to a free worker), an attempt ends (with the runner's
clock reading of its end), the run ends.  It gets no events (its
``__call__`` is never called by the runner).  A step span that nothing ended by the run's end (a call
abandoned at cancellation) ends with it, as cancelled.

State: ``_runs``: run id -> its span, the context with it current (the step
spans' parent) and the step spans still open.  Several
runs may share one :class:`Tracing` (from several threads): each touches only
its own entry, and the dict and set operations used are atomic.

Nothing here imports :mod:`opentelemetry` until a :class:`Tracing` is made
(or a worker enters an attempt's context): ``import microdag`` never does.
"""

import os
import sys

from ._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from opentelemetry.trace import TracerProvider

    from ._events import Event
    from .pools._attempt import Attempt

__all__ = ["Tracing"]

_INSTALL = 'the OpenTelemetry API is not installed: pip install "microdag[otel]" (or opentelemetry-api)'


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class Tracing:
    """A hook that traces runs with OpenTelemetry (pass it in ``hooks=[...]``).

    Spans: ``microdag.run`` per run (attributes ``microdag.flow``,
    ``microdag.run_id``, ``microdag.executor``, ``microdag.status``), and under
    it ``microdag.step`` per step attempt (``microdag.step``,
    ``microdag.attempt``, ``microdag.item`` for a map's item or batch,
    ``microdag.step.added_by`` for a step a step of the run added,
    ``microdag.status``, and for a failure ``error.type``, the status
    ``ERROR`` with the error's message, and the exception as an event; a
    success leaves the status unset).  A step's own spans are children of its
    attempt's span, on every backend.

    Args:
        tracer_provider: the ``TracerProvider`` to trace with; ``None``: the
            global one (``opentelemetry.trace.set_tracer_provider``).

    Raises:
        ImportError: ``opentelemetry-api`` is not installed (the message says
            how to install it).
    """

    _traces_attempts = True

    def __init__(self, tracer_provider: "TracerProvider | None" = None) -> None:
        try:
            from opentelemetry import trace  # (opentelemetry: an optional extra)
        except ImportError as exc:
            raise ImportError(f"microdag.otel.Tracing: {_INSTALL}") from exc
        from opentelemetry import context  # (opentelemetry: an optional extra)
        from opentelemetry.trace import Status, StatusCode  # (opentelemetry: an optional extra)

        _StepSpan.api = (context.attach, context.detach, trace.set_span_in_context)
        self._trace = trace
        self._error = (Status, StatusCode.ERROR)
        self._tracer = trace.get_tracer("microdag", __version__, tracer_provider=tracer_provider)
        self._runs: dict[str, tuple[Any, Any, set[_StepSpan]]] = {}

    def __call__(self, event: "Event") -> None:
        """Nothing: the runner tells a tracer what it needs through the methods below."""

    def __repr__(self) -> str:
        return f"<microdag.otel.Tracing, {len(self._runs)} runs open>"

    # -- what the runner calls -------------------------------------------------------

    def _start_run(self, run_id: str, flow: str, executor: str, started: float) -> None:
        span = self._tracer.start_span(
            "microdag.run",
            attributes={"microdag.flow": flow, "microdag.run_id": run_id, "microdag.executor": executor},
            start_time=_ns(started),
        )
        self._runs[run_id] = (span, self._trace.set_span_in_context(span), set())

    def _start_attempt(self, att: "Attempt", started: float, added_by: "str | None" = None) -> None:
        run = self._runs.get(att.run_id)
        if run is None:
            return
        attributes: dict[str, Any] = {"microdag.step": att.name, "microdag.attempt": att.number}
        if att.item is not None:
            attributes["microdag.item"] = att.item
        if att.waited:
            attributes["microdag.pool.wait_s"] = att.waited
        if added_by is not None:
            attributes["microdag.step.added_by"] = added_by
        span = self._tracer.start_span("microdag.step", run[1], attributes=attributes, start_time=_ns(started))
        step = _StepSpan(span)
        run[2].add(step)
        if att.trace is None:
            att.trace = step

    def _end_attempt(self, att: "Attempt", status: str, error: "BaseException | None", finished: float) -> None:
        run = self._runs.get(att.run_id)
        step = att.trace
        if run is None or type(step) is not _StepSpan or step not in run[2]:
            return
        run[2].discard(step)
        self._end(step.span, status, error, _ns(finished))

    def _end_run(self, run_id: str, status: str, error: "BaseException | None", finished: float) -> None:
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        span, _, open_steps = run
        end = _ns(finished)
        first = None
        for step in list(open_steps):
            try:
                self._end(step.span, "cancelled", None, end)
            except Exception as exc:  # (a span processor's): every span still ends
                first = first or exc
        self._end(span, status, error if status == "failed" else None, end)
        if first is not None:
            raise first

    def _end(self, span: "Any", status: str, error: "BaseException | None", end: int) -> None:
        if error is None:
            span.set_attribute("microdag.status", status)
        else:  # (a success keeps the status UNSET, as instrumentations leave it)
            span.set_attributes({"microdag.status": status, "error.type": type(error).__qualname__})
            span.record_exception(error, timestamp=end)
            status_type, code = self._error
            span.set_status(status_type(code, f"{type(error).__name__}: {error}"))
        span.end(end_time=end)


class _StepSpan:
    """An attempt's span, carried by the attempt (``Attempt.trace``).

    In this process it holds the span itself, made current around the call
    (so a step can set attributes on it); pickled for another process, it
    becomes the span's context (:class:`_RemoteSpan`)."""

    __slots__ = ("span",)
    #: ``attach``, ``detach`` and ``set_span_in_context`` (set by the first :class:`Tracing`).
    api: "tuple[Any, Any, Any]"

    def __init__(self, span: "Any") -> None:
        self.span = span

    def __reduce__(self) -> "Any":
        ctx = self.span.get_span_context()
        return (_RemoteSpan, (ctx.trace_id, ctx.span_id, int(ctx.trace_flags)))

    def enter(self) -> object:
        """Make the span current in this context; return what :meth:`leave` takes."""
        attach, _, current = self.api
        return attach(current(self.span))

    def leave(self, token: object) -> None:
        """Make current again what was before :meth:`enter`."""
        self.api[1](token)


class _RemoteSpan:
    """An attempt's span context in the process that runs it: made current
    around the call (a non-recording span with the attempt span's ids), so
    that the spans the step makes there are its children."""

    __slots__ = ("ids",)

    def __init__(self, trace_id: int, span_id: int, flags: int) -> None:
        self.ids = (trace_id, span_id, flags)

    def __reduce__(self) -> "Any":
        return (_RemoteSpan, self.ids)

    def enter(self) -> object:
        try:
            from opentelemetry import context, trace  # (opentelemetry: an optional extra)
        except ImportError:  # a worker without the API: its steps cannot make spans either
            return None
        trace_id, span_id, flags = self.ids
        span = trace.NonRecordingSpan(trace.SpanContext(trace_id, span_id, True, trace.TraceFlags(flags)))
        return context.attach(trace.set_span_in_context(span))

    @staticmethod
    def leave(token: object) -> None:
        if token is not None:
            from opentelemetry import context  # (opentelemetry: an optional extra)

            context.detach(token)  # type: ignore[arg-type]


def traceparent() -> "str | None":
    """The W3C ``traceparent`` of the current span, if a traced step is
    running here (``None`` otherwise; never imports :mod:`opentelemetry`)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def provider_from_environment() -> "Any":  # an SDK TracerProvider
    """A ``TracerProvider`` of ``opentelemetry-sdk`` set up by the standard
    ``OTEL_*`` variables: its exporters (``OTEL_TRACES_EXPORTER``, default
    ``otlp``; each found by its entry point and configured by its own
    variables), service name (``OTEL_SERVICE_NAME``, default ``microdag``) and
    resource, sampler, and batching.  ``shutdown()`` it to flush.

    Raises:
        RuntimeError: the SDK or a named exporter is not installed, or the
            exporter list names none (the message says what to install or set).
    """
    try:
        from opentelemetry.sdk.resources import Resource  # (opentelemetry: an optional extra)
        from opentelemetry.sdk.trace import TracerProvider  # (opentelemetry: an optional extra)
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # (opentelemetry: an optional extra)
    except ImportError:
        raise RuntimeError(
            "tracing needs the OpenTelemetry SDK and an exporter: pip install opentelemetry-sdk "
            "opentelemetry-exporter-otlp (or set OTEL_TRACES_EXPORTER=console to print spans)") from None
    from importlib.metadata import entry_points  # (entry points: only when asked for)

    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    if not names or names == ["none"]:
        raise RuntimeError("OTEL_TRACES_EXPORTER is 'none': no exporter would receive the spans")
    found = {ep.name: ep for ep in entry_points(group="opentelemetry_traces_exporter")}
    exporters = []
    for name in names:
        if name == "none":
            continue
        ep = found.get(name)
        if ep is None:
            hint = " (pip install opentelemetry-exporter-otlp)" if name.startswith("otlp") else ""
            known = ", ".join(sorted(found)) or "none"
            raise RuntimeError(
                f"OTEL_TRACES_EXPORTER names exporter {name!r}, which is not installed{hint}; "
                f"installed exporters: {known}")
        exporters.append(ep.load()())
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    attributes = {} if named else {"service.name": "microdag"}
    provider = TracerProvider(resource=Resource.create(attributes))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
