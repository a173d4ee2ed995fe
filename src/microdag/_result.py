"""The result of a run: :class:`Run` and :class:`Task`, and run ids.

A :class:`Run` keeps what the runner measured in arrays indexed by step id
(states, attempts, clock readings, errors) and builds a :class:`Task` only
when one is asked for, so that a run of a million steps does not make a
million objects.  Clock readings are the runner's one clock
(``time.perf_counter``); ``offset`` turns them into wall-clock times.  A run
read back from a store is built by :meth:`Run.from_records` with an offset of
zero (stores keep wall-clock times).
"""

import os
import time

from ._errors import RunFailed
from ._records import CODES, EXCLUDED, STATUS, UNKNOWN, StoredError, busy_time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from typing import Any

    from ._records import RunInfo, TaskRecord
    from ._types import RunStatus, TaskStatus

__all__ = ["Run", "Task", "busy_seconds", "failed_tasks", "new_run_id", "run_failed", "status_counts"]


class Task:
    """What happened to one step in a run.

    Attributes:
        name: the step.
        status: ``"succeeded"``, ``"failed"``, ``"skipped"``, ``"cancelled"``
            or ``"pending"``.
        attempts: attempts made (0 if it never started).
        started, finished: wall-clock times (``time.time()``) of the last
            attempt, or ``None``.
        duration: seconds the last attempt took, or ``None``.
        error: the exception that failed the step, or ``None``.
        reason: for a step that raised :class:`~microdag.Skip`, its reason.
        cached: whether its output came from the cache (``cache=True``).
        added_by: for a step that a step of the run added
            (``microdag.context().add``), that step's name; else ``None``.
        waited: seconds its attempts waited, in all, for room in its pools
            or for a rate's tokens before they started (``0.0``: none), or
            ``None`` when the run had no pools and rates or the step never
            started.  Each attempt's own wait is told with its start (the
            ``step_started`` event, its OpenTelemetry span).
    """

    __slots__ = ("name", "status", "attempts", "started", "finished", "error", "reason", "cached", "added_by",
                 "waited")

    def __init__(
        self,
        name: str,
        status: "TaskStatus",
        attempts: int,
        started: "float | None",
        finished: "float | None",
        error: "BaseException | None",
        reason: "str | None" = None,
        cached: bool = False,
        added_by: "str | None" = None,
        waited: "float | None" = None,
    ) -> None:
        self.name = name
        self.status = status
        self.attempts = attempts
        self.started = started
        self.finished = finished
        self.error = error
        self.reason = reason
        self.cached = cached
        self.added_by = added_by
        self.waited = waited

    @property
    def duration(self) -> "float | None":
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    def __repr__(self) -> str:
        return f"<Task {self.name!r} {self.status} attempts={self.attempts}>"


class _Tasks:
    """Read-only mapping of step name -> :class:`Task`, built on access."""

    __slots__ = ("_run",)

    def __init__(self, run: "Run") -> None:
        self._run = run

    def __getitem__(self, name: str) -> Task:
        run = self._run
        i = run._index.get(name, -1)
        if i < 0 or run._states[i] == EXCLUDED:
            raise KeyError(f"step {name!r} is not part of run {run.id}")
        return run._task(i)

    def __iter__(self) -> "Iterator[str]":
        run = self._run
        states = run._states
        return (name for i, name in enumerate(run._names) if states[i] != EXCLUDED)

    def __len__(self) -> int:
        return len(self._run._states) - self._run._states.count(EXCLUDED)

    def __contains__(self, name: object) -> bool:
        run = self._run
        i: int = run._index.get(name, -1)  # type: ignore[call-overload]
        return i >= 0 and run._states[i] != EXCLUDED

    def keys(self) -> "Iterator[str]":
        return iter(self)

    def values(self) -> "Iterator[Task]":
        return (self[name] for name in self)

    def items(self) -> "Iterator[tuple[str, Task]]":
        return ((name, self[name]) for name in self)

    def get(self, name: str, default: "Task | None" = None) -> "Task | None":
        return self[name] if name in self else default

    def __repr__(self) -> str:
        return f"<tasks of run {self._run.id}: {len(self)}>"


class Run:
    """The record of one run of a flow.

    Attributes:
        id: the run id.
        flow: the flow's name.
        status: ``"succeeded"``, ``"failed"`` or ``"cancelled"``.
        outputs: step name -> output, for the kept outputs of succeeded
            steps (see ``keep_outputs`` in :meth:`Flow.run`).
        tasks: step name -> :class:`Task`, for every step in the run.
        inputs: the flow inputs given.
        started, finished: wall-clock times; ``duration`` in seconds.
        error: the first failing step's exception, or ``None``.
    """

    __slots__ = (
        "id",
        "flow",
        "status",
        "outputs",
        "inputs",
        "started",
        "finished",
        "error",
        "_names",
        "_index",
        "_states",
        "_attempts",
        "_starts",
        "_ends",
        "_errors",
        "_offset",
        "_cancelled",
        "_reasons",
        "_cached",
        "_added",
        "_waited",
    )

    def __init__(
        self,
        run_id: str,
        flow: str,
        status: "RunStatus",
        outputs: "dict[str, Any]",
        inputs: "dict[str, Any]",
        started: float,
        finished: float,
        error: "BaseException | None",
        names: "tuple[str, ...]",
        index: "Mapping[str, int]",
        states: bytes,
        attempts: "list[int]",
        starts: "list[float]",
        ends: "list[float]",
        errors: "dict[int, BaseException]",
        offset: float,
        cancelled: "frozenset[int]" = frozenset(),
        reasons: "dict[int, str] | None" = None,
        cached: "frozenset[int]" = frozenset(),
        added: "Mapping[int, str] | None" = None,
        waited: "Mapping[int, float] | None" = None,
    ) -> None:
        self.id = run_id
        self.flow = flow
        self.status = status
        self.outputs = outputs
        self.inputs = inputs
        self.started = started
        self.finished = finished
        self.error = error
        self._names = names
        self._index = index
        self._states = states
        self._attempts = attempts
        self._starts = starts
        self._ends = ends
        self._errors = errors
        self._offset = offset
        self._cancelled = cancelled
        self._reasons = reasons or {}
        self._cached = cached
        self._added = added or {}
        self._waited = waited  # (step id -> seconds its attempts waited; None: no pools or rates)

    @property
    def duration(self) -> float:
        """Seconds from start to finish."""
        return self.finished - self.started

    @property
    def tasks(self) -> _Tasks:
        """Step name -> :class:`Task` for every step of the run."""
        return _Tasks(self)

    def _counts(self) -> "dict[str, int]":
        """How many tasks ended in each status (read from the states, without a Task each)."""
        counts: dict[str, int] = {}
        states = self._states
        for code in set(states):
            if code != EXCLUDED:
                counts[STATUS[code]] = counts.get(STATUS[code], 0) + states.count(code)
        for i in self._cancelled:  # (recorded as failed or running in the states)
            counts[STATUS[states[i]]] -= 1
            counts["cancelled"] = counts.get("cancelled", 0) + 1
        return {status: n for status, n in counts.items() if n}

    def _failed(self) -> "list[Task]":
        """The tasks that failed, in step order."""
        failed = CODES["failed"]
        states = self._states
        return [self._task(i) for i in range(len(states)) if states[i] == failed and i not in self._cancelled]

    def _task(self, i: int) -> Task:
        attempts = self._attempts[i]
        status: TaskStatus = "cancelled" if i in self._cancelled else STATUS[self._states[i]]  # type: ignore[assignment]
        started = finished = None
        if attempts:
            started = self._starts[i] + self._offset
            finished = self._ends[i] + self._offset if self._ends[i] else None
        return Task(
            self._names[i], status, attempts, started, finished, self._errors.get(i), self._reasons.get(i),
            i in self._cached, self._added.get(i), None if self._waited is None else self._waited.get(i),
        )

    def __getitem__(self, name: str) -> "Any":
        """The output of step ``name``.

        Raises:
            KeyError: the step did not succeed, is not part of the run, or
                its output was released (the message says which).
        """
        try:
            return self.outputs[name]
        except KeyError:
            pass
        i = self._index.get(name, -1)
        if i < 0 or self._states[i] == EXCLUDED:
            raise KeyError(f"step {name!r} is not part of run {self.id}") from None
        status = self._task(i).status
        if status != "succeeded":
            raise KeyError(f"step {name!r} has no output: it is {status}") from None
        raise KeyError(
            f"the output of step {name!r} was released once the steps consuming it had "
            "run; pass keep_outputs=True (or name it in targets=) to keep it"
        ) from None

    def raise_for_status(self) -> "Run":
        """Raise :class:`~microdag.RunFailed` unless the run succeeded; else return it."""
        if self.status != "succeeded":
            raise run_failed(self)
        return self

    def __repr__(self) -> str:
        return f"<Run {self.id} of {self.flow!r}: {self.status}>"

    @classmethod
    def from_records(
        cls, info: "RunInfo", records: "list[TaskRecord]", output: "Callable[[str], Any]",
        kept: "set[str] | None" = None, added: "Mapping[str, str] | None" = None,
    ) -> "Run":
        """A run as a store keeps it: ``info``, the records of its steps (map
        items are left out) and ``output(step)``, which reads one step's output
        (called when ``outputs[step]`` is first read); with ``kept``, the
        outputs of those steps only.  Errors come back as
        :class:`~microdag.stores.StoredError`; the first to finish is ``error``.
        ``added``: the steps that steps added, by name -> the name of the step that added each.
        """
        steps = [r for r in records if r.item < 0]
        names = tuple(r.step for r in steps)
        states = bytes(CODES.get(r.status, UNKNOWN) for r in steps)
        errors: dict[int, BaseException] = {
            i: StoredError(r.error_type, r.error_message or "", r.traceback or "")
            for i, r in enumerate(steps)
            if r.error_type is not None
        }
        first = min(errors, default=-1, key=lambda i: steps[i].finished or 0.0)
        waited = {i: r.waited for i, r in enumerate(steps) if r.waited is not None}
        outputs = _StoredOutputs(output, {r.step for r in steps if r.output is not None
                                          and (kept is None or r.step in kept)})
        return cls(
            info.id,
            info.flow,
            info.status,  # type: ignore[arg-type]  # (a store may hold a newer version's status)
            outputs,  # type: ignore[arg-type]
            info.inputs,
            info.started,
            info.finished or info.started,
            errors.get(first),
            names,
            {name: i for i, name in enumerate(names)},
            states,
            [r.attempts for r in steps],
            [r.started or 0.0 for r in steps],
            [r.finished or 0.0 for r in steps],
            errors,
            0.0,
            added={i: added[name] for i, name in enumerate(names) if name in added} if added else None,
            waited=waited if waited or info.limits is not None else None,
        )


class _StoredOutputs:
    """Read-only mapping of step -> output, read from a store when first asked for."""

    def __init__(self, read: "Callable[[str], Any]", steps: "set[str]") -> None:
        self._read = read
        self._steps = steps
        self._cache: dict[str, Any] = {}

    def __getitem__(self, step: str) -> "Any":
        if step not in self._steps:
            raise KeyError(step)
        if step not in self._cache:
            self._cache[step] = self._read(step)
        return self._cache[step]

    def __contains__(self, step: object) -> bool:
        return step in self._steps

    def __iter__(self) -> "Iterator[str]":
        return iter(sorted(self._steps))

    def __len__(self) -> int:
        return len(self._steps)

    def get(self, step: str, default: "Any" = None) -> "Any":
        return self[step] if step in self._steps else default

    def keys(self) -> "list[str]":
        return sorted(self._steps)

    def items(self) -> "list[tuple[str, Any]]":
        return [(step, self[step]) for step in sorted(self._steps)]

    def values(self) -> "list[Any]":
        return [self[step] for step in sorted(self._steps)]


def run_failed(run: Run) -> RunFailed:
    if run.status == "cancelled":
        message = f"run {run.id} of flow {run.flow!r} was cancelled"
    else:
        failed = [t.name for t in run.tasks.values() if t.status == "failed"]
        first = failed[0] if failed else "?"
        err = run.error
        detail = f": {type(err).__name__}: {err}" if err is not None else ""
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        message = f"run {run.id} of flow {run.flow!r} failed: step {first!r}{more}{detail}"
    exc = RunFailed(message, run)
    exc.__cause__ = run.error
    return exc


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + os.urandom(4).hex()


def busy_seconds(run: Run) -> float:
    """Seconds some step of ``run`` was running: less than its duration by the
    idle time between an interrupt and a resume (what the CLI's summary shows
    beside the wall time)."""
    # (the clock readings of the steps that ran, and ended: any clock will do)
    return busy_time((s, e) for s, e, a in zip(run._starts, run._ends, run._attempts) if a and e)


def status_counts(run: Run) -> "dict[str, int]":
    """How many of ``run``'s tasks ended in each status (none with 0), read
    without a :class:`Task` each."""
    return run._counts()


def failed_tasks(run: Run) -> "list[Task]":
    """``run``'s tasks that failed, in step order."""
    return run._failed()
