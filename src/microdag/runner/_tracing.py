"""The tracers of a run: hooks told when the run and each attempt start and end.

A hook with ``_traces_attempts`` (``microdag.otel.Tracing``) is a tracer:
the runner calls it at the four moments it needs (see ``microdag.otel``),
through this one object, which a run without tracers does not have (so the
checks on the careful path are one ``None`` test, and the hot loop has none).
Tracers get no events: the run's times and attempts are all they need.  Like
any hook, one routes every step through the careful path.

A tracer that raises (an OpenTelemetry ``SpanProcessor`` failing in
``on_start`` or ``on_end``, an exporter) never changes the run's outcome or
its records: its error is logged once a run (``_events.raised``) and the run
goes on; the tracer is still called at the next moments.
"""

import time

from .._errors import Skip
from .._events import forget, raised

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any, Protocol

    from .._events import Event
    from .._result import Run
    from ..pools._attempt import Attempt

    class Tracer(Protocol):
        """What the runner calls on a tracer (times are wall-clock seconds)."""

        def _start_run(self, run_id: str, flow: str, executor: str, started: float) -> None: ...
        def _start_attempt(self, att: Attempt, started: float, added_by: str | None = None) -> None: ...
        def _end_attempt(self, att: Attempt, status: str, error: BaseException | None, finished: float) -> None: ...
        def _end_run(self, run_id: str, status: str, error: BaseException | None, finished: float) -> None: ...

__all__ = ["Tracers"]


class Tracers:
    """The tracers among a run's hooks, and the run's clock offset (see the module docs)."""

    __slots__ = ("tracers", "run_id", "offset", "clock", "added")

    def __init__(self, tracers: "tuple[Tracer, ...]", run_id: str, offset: float, clock: "Callable[[], float]") -> None:
        self.tracers = tracers
        self.run_id = run_id
        self.offset = offset  # a clock reading + offset = wall time
        self.clock = clock
        #: Steps that steps added: step id -> the name of the step that added it.
        self.added: dict[int, str] = {}

    @classmethod
    def among(cls, hooks: "Iterable[Any]", run_id: str, offset: float,
              clock: "Callable[[], float]") -> "Tracers | None":
        """The tracers among ``hooks``; ``None`` when there is none."""
        tracers = tuple(h for h in hooks if getattr(h, "_traces_attempts", False))
        return cls(tracers, run_id, offset, clock) if tracers else None

    @staticmethod
    def others(hooks: "tuple[Callable[[Event], Any], ...]") -> "tuple[Callable[[Event], Any], ...]":
        """The hooks that are not tracers: those the run's events are for."""
        return tuple(h for h in hooks if not getattr(h, "_traces_attempts", False))

    def run_started(self, flow: str, executor: str, started: float) -> None:
        """The run started (on ``executor``, as the tracers name it) at wall time ``started``."""
        for t in self.tracers:
            try:
                t._start_run(self.run_id, flow, executor, started)
            except Exception as exc:
                raised(f"tracer {t!r}", exc, self.run_id, t, "as the run started")

    def started(self, att: "Attempt") -> None:
        """``att`` starts now (it carries the first tracer's span into the call)."""
        by = self.added.get(att.step)
        for t in self.tracers:
            try:
                if by is None:
                    t._start_attempt(att, att.started + self.offset)
                else:
                    t._start_attempt(att, att.started + self.offset, added_by=by)
            except Exception as exc:
                raised(f"tracer {t!r}", exc, self.run_id, t, f"as step {att.name!r} started")

    def ended(self, att: "Attempt", ok: bool, value: "Any") -> None:
        """``att`` ended: with result ``value`` if ``ok``, else raising it (``None``: killed)."""
        if ok:
            status, error = "succeeded", None
        elif isinstance(value, Skip):
            status, error = "skipped", None
        elif value is None or isinstance(value, KeyboardInterrupt):
            status, error = "cancelled", None
        else:
            status, error = "failed", value
        finished = (att.finished or self.clock()) + self.offset
        for t in self.tracers:
            try:
                t._end_attempt(att, status, error, finished)
            except Exception as exc:
                raised(f"tracer {t!r}", exc, self.run_id, t, f"as step {att.name!r} ended")

    def run_ended(self, run: "Run | None") -> None:
        """The run ended (``None``: it broke down before its result was made)."""
        for t in self.tracers:
            try:
                if run is None:
                    t._end_run(self.run_id, "failed", None, time.time())
                else:
                    t._end_run(self.run_id, run.status, run.error, run.finished)
            except Exception as exc:
                raised(f"tracer {t!r}", exc, self.run_id, t, "as the run ended")
        forget(self.run_id)
