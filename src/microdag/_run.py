"""The runner: drives a flow's compiled kernel on a backend.

State of one run (``_Runner``), all indexed by step id:

- the kernel (the flow's own, or a private copy when another run of the
  same flow holds it): which steps are pending, ready, running, finished;
- ``outputs``: the output of each step until nothing needs it any more
  (``None`` after release); ``attempts``, ``started``, ``finished``
  (``perf_counter`` readings of the last attempt); ``errors`` (failures);
- ``kwnames``/``consts``: how each step is called in this run (its
  dependency-bound keyword names, then its flow inputs with their values);
- ``flags``: ``SLOW`` (the step needs this module's careful path: a timeout,
  hooks or debug logging) and ``KEEP`` (its output is kept for ``Run.outputs``);
- ``retry_heap``: ``(due, seq, key, last_error)`` for steps (``key`` = step
  id) and map units (``key`` = ``(step id, unit index)``) waiting to retry;
  their steps stay ``RUNNING`` in the kernel meanwhile;
- ``maps``: the map steps being run (:class:`_Map`): their units (items, or
  batches of items), results, and which units are claimed, done or failed.
  A map step stays one ``RUNNING`` kernel node until its last unit settles.

The loops.  *inline*: the kernel's ``drive`` runs ready steps until one fails,
needs the careful path, or none is ready; then this module settles that
step, or sleeps until the next retry is due.  *threads*: N workers each run
the same loop; a worker with nothing to do waits on a condition that every
completion notifies (``drive`` returns early to ask for that when some
worker is idle).  *processes* and *executors*: the calling thread fills the
pool from the ready set and settles completions as they come.

Why no loop can hang: each waits only for something that is running or for a
retry that is due at a known time; when nothing is ready, running or due, the
kernel's ``take()`` raises instead (which a validated graph never reaches),
and every wait is woken by the completion that changes the answer.
"""

import heapq
import os
import time

from . import _capture
from ._compat import sched
from ._context import _FRAME, Frame, enter, leave
from ._errors import FlowError, RunFailed, Skip
from ._events import Event, debug_enabled, dispatch, log
from ._flow import _NO_DEFAULT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from concurrent.futures import Executor
    from typing import Any

    from ._flow import Flow, _Plan, _Step

__all__ = ["Run", "Task", "execute"]

_STATUS = {
    sched.PENDING: "pending",
    sched.READY: "pending",
    sched.RUNNING: "running",
    sched.SUCCEEDED: "succeeded",
    sched.FAILED: "failed",
    sched.SKIPPED: "skipped",
    sched.CANCELLED: "cancelled",
}
_EXECUTORS = ("inline", "threads", "processes")
_POLICIES = ("fail_fast", "continue")
_SLOW = sched.SLOW
_KEEP = sched.KEEP


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
    """

    __slots__ = ("name", "status", "attempts", "started", "finished", "error", "reason", "cached")

    def __init__(
        self,
        name: str,
        status: str,
        attempts: int,
        started: "float | None",
        finished: "float | None",
        error: "BaseException | None",
        reason: "str | None" = None,
        cached: bool = False,
    ) -> None:
        self.name = name
        self.status = status
        self.attempts = attempts
        self.started = started
        self.finished = finished
        self.error = error
        self.reason = reason
        self.cached = cached

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
        if i < 0 or run._states[i] == sched.EXCLUDED:
            raise KeyError(f"step {name!r} is not part of run {run.id}")
        return run._task(i)

    def __iter__(self) -> "Iterator[str]":
        run = self._run
        states = run._states
        return (name for i, name in enumerate(run._names) if states[i] != sched.EXCLUDED)

    def __len__(self) -> int:
        return len(self._run._states) - self._run._states.count(sched.EXCLUDED)

    def __contains__(self, name: object) -> bool:
        run = self._run
        i: int = run._index.get(name, -1)  # type: ignore[call-overload]
        return i >= 0 and run._states[i] != sched.EXCLUDED

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
    )

    def __init__(
        self,
        run_id: str,
        flow: str,
        status: str,
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

    @property
    def duration(self) -> float:
        """Seconds from start to finish."""
        return self.finished - self.started

    @property
    def tasks(self) -> _Tasks:
        """Step name -> :class:`Task` for every step of the run."""
        return _Tasks(self)

    def _task(self, i: int) -> Task:
        attempts = self._attempts[i]
        status = "cancelled" if i in self._cancelled else _STATUS[self._states[i]]
        started = finished = None
        if attempts:
            started = self._starts[i] + self._offset
            finished = self._ends[i] + self._offset if self._ends[i] else None
        return Task(
            self._names[i], status, attempts, started, finished, self._errors.get(i), self._reasons.get(i),
            i in self._cached,
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
        if i < 0 or self._states[i] == sched.EXCLUDED:
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
            raise _run_failed(self)
        return self

    def __repr__(self) -> str:
        return f"<Run {self.id} of {self.flow!r}: {self.status}>"


def _run_failed(run: Run) -> RunFailed:
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


def _new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + os.urandom(4).hex()


class _Runner:
    def __init__(
        self,
        flow: "Flow",
        plan: "_Plan",
        kernel: "sched.Kernel",
        subset: "list[int] | None",
        given: "dict[str, Any]",
        on_failure: str,
        hooks: "tuple[Callable[[Event], Any], ...]",
        keep: "list[int] | None",
        cancel: "Any" = None,
        store: "Any" = None,
        run_id: "str | None" = None,
    ) -> None:
        n = len(plan.steps)
        self.flow = flow
        self.plan = plan
        self.k = kernel
        self.n = n
        self.names: tuple[str, ...] = plan.graph.names  # type: ignore[assignment]
        self.run_id = run_id or _new_run_id()
        self.store = store  # a microdag.stores.Store, or None
        # resume: step id -> (attempts, started, finished) of its recorded success
        self.resumed: dict[int, tuple[int, Any, Any]] = {}
        # resume: map step id -> {recorded item index: attempts} of its succeeded units
        self.resumed_items: dict[int, dict[int, int]] = {}
        self.given = given
        self.hooks = hooks
        self.fail_fast = on_failure == "fail_fast"
        self.outputs: list[Any] = [None] * n
        self.attempts = [0] * n
        self.started = [0.0] * n
        self.finished = [0.0] * n
        self.errors: dict[int, BaseException] = {}
        self.first_failure = -1
        self.retry_heap: list[tuple[float, int, Any, BaseException]] = []
        self.maps: list[_Map] = []
        self.map_of: dict[int, _Map] = {}
        self.workers = 1
        self.retry_seq = 0
        self.stopping = False
        self.interrupt: BaseException | None = None
        self.cancelled: set[int] = set()
        self.cancel = cancel
        self.cancel_requested = False
        self.reasons: dict[int, str] = {}
        self.run_dir: str | None = None if store is None else store.run_dir(self.run_id)
        self.owned = False
        self.loops: dict[int, Any] = {}  # thread id -> event loop, for async steps
        self.cache_keys: dict[int, str] = {}  # step id -> its cache key, until it succeeds
        self.force = False  # resume: ignore a changed fingerprint and a live owner
        self.record_type: Any = None
        if store is not None:
            from .stores import TaskRecord

            self.record_type = TaskRecord
        self.capturing = False  # stdout, stderr and logging captured per attempt (a store)
        self.cached: set[int] = set()  # steps whose output came from the cache
        self.kwnames = list(plan.dep_kwnames)
        self.consts: list[tuple[Any, ...]] = [()] * n
        self.debug = debug_enabled()
        self.keep = keep
        self.flags = plan.flags(bool(hooks) or self.debug, keep)
        self.kernel_lock: Any = None
        self.cond: Any = None
        self.idle = [0]
        self.clock = time.perf_counter
        self.wall0 = time.time()
        self.pc0 = self.clock()
        self.subset = subset

    # -- events ---------------------------------------------------------------

    def emit(self, kind: str, i: int = -1, **fields: "Any") -> None:
        if self.hooks:
            step = self.names[i] if i >= 0 else None
            dispatch(
                self.hooks,
                Event(kind, self.run_id, self.flow.name, step, time=time.time(), **fields),
            )

    # -- calling steps ----------------------------------------------------------

    def kwargs(self, i: int) -> "dict[str, Any]":
        value = self.value
        values = [value(d) for d in self.plan.argdeps[i]]
        values.extend(self.consts[i])
        return dict(zip(self.kwnames[i], values))

    def frame(self) -> Frame:
        """A fresh context frame for a thread (or task) that runs steps."""
        return Frame(self.run_id, self.flow.name, self.names, self.attempts, self.run_dir)

    def run_careful(self, i: int) -> None:
        """One attempt of step ``i`` in this thread, with timeout, hooks and logs."""
        step = self.plan.steps[i]
        if step.cache and self.from_cache(i):
            return
        if step.map is not None:
            ms = self.start_map(i)
            if ms is not None:
                self.run_units(ms)
            return
        name = self.names[i]
        kwargs = self.kwargs(i)
        self.attempts[i] += 1
        attempt = self.attempts[i]
        self.emit("step_started", i, attempt=attempt)
        if self.debug:
            log(10, "run %s: step %r started (attempt %d)", self.run_id, name, attempt)
        self.started[i] = self.clock()
        try:
            result = self.call(i, kwargs, f"step {name!r}", None, 0)
        except BaseException as exc:
            self.finished[i] = self.clock()
            del kwargs
            self.settle_error(i, exc)
            return
        self.finished[i] = self.clock()
        del kwargs
        self.succeed(i, result)

    def call(self, i: int, kwargs: "dict[str, Any]", what: str, item: "int | None", attempt: int) -> "Any":
        """Call step ``i``'s function in this thread, as ``microdag.context()`` says.

        An async step runs on this thread's event loop; a timeout cancels the
        coroutine, or abandons a plain call in its helper thread.  ``attempt``
        is a map unit's (0 for a step: the context reads the step's).
        """
        step = self.plan.steps[i]
        frame = _FRAME.get()
        if frame is not None:
            frame.current[:] = [i, item, attempt]
        captured = None
        if self.store is not None:
            captured, token = _capture.start()
        try:
            if self.plan.is_async[i]:
                return self.run_coroutine(step, step.fn(**kwargs), what)
            if step.timeout is None:
                return step.fn(**kwargs)
            from ._backends import call_with_timeout

            helper = self.frame()
            helper.current[:] = [i, item, attempt]
            return call_with_timeout(step.fn, kwargs, step.timeout, what, helper)
        finally:
            if frame is not None:
                frame.current[:] = [-1, None, 0]
            if captured is not None:
                _capture.stop(token)
                self.save_logs(i, -1 if item is None else item, attempt or self.attempts[i], "".join(captured))

    def succeed(self, i: int, result: "Any") -> None:
        key = self.cache_keys.pop(i, None)
        if key is not None:
            self.cache_put(key, result)
        if self.store is not None:
            try:
                data = self.store.encode(result, f"the output of step {self.names[i]!r}")
            except Exception as exc:  # not JSON, does not pickle: the step fails
                self.fail(i, exc)
                return
            self.save(i, "succeeded", output=data)
        k = self.k
        with self.locked():
            self.outputs[i] = result
            for p in k.release(i):
                if not self.flags[p] & _KEEP:
                    self.outputs[p] = None
            k.done(i)
        if self.hooks or self.debug:
            duration = self.finished[i] - self.started[i]
            self.emit("step_finished", i, status="succeeded", attempt=self.attempts[i], duration=duration)
            if self.debug:
                log(10, "run %s: step %r succeeded in %.6f s", self.run_id, self.names[i], duration)
        self.wake()

    def settle_error(self, i: int, exc: BaseException) -> None:
        """Step ``i`` raised ``exc`` on its latest attempt: retry it or fail it."""
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit, ...
            self.abort(i, exc)
            return
        if isinstance(exc, Skip):
            self.skip(i, exc)
            return
        step = self.plan.steps[i]
        attempt = self.attempts[i]
        name = self.names[i]
        if attempt <= step.retries and isinstance(exc, step.retry_on) and not self.stopping:
            if self.store is not None:
                offset = self.wall0 - self.pc0
                self.store.save_attempt(self.run_id, name, -1, attempt, self.started[i] + offset,
                                        self.finished[i] + offset, type(exc).__name__, str(exc))
            delay = _backoff(step, attempt)
            self.retry_seq += 1
            heapq.heappush(self.retry_heap, (self.clock() + delay, self.retry_seq, i, exc))  # key: the step
            log(20, "run %s: step %r failed on attempt %d (%s: %s); retrying in %.3f s",
                self.run_id, name, attempt, type(exc).__name__, exc, delay)
            self.emit("step_retrying", i, attempt=attempt, duration=delay, error=exc)
            self.wake()
            return
        self.fail(i, exc)

    def fail(self, i: int, exc: BaseException) -> None:
        step = self.plan.steps[i]
        name = self.names[i]
        attempt = self.attempts[i]
        if step.map is not None:  # attempts are per item, and the item's note says them
            exc.add_note(f"microdag: map step {name!r} of flow {self.flow.name!r} failed (run {self.run_id})")
        else:
            exc.add_note(
                f"microdag: step {name!r} of flow {self.flow.name!r} failed on attempt "
                f"{attempt} of {step.retries + 1} (run {self.run_id})"
            )
        self.errors[i] = exc
        if self.first_failure < 0:
            self.first_failure = i
        if self.store is not None:
            self.save(i, "failed", error=exc)
        log(30, "run %s: step %r failed on attempt %d: %s: %s",
            self.run_id, name, attempt, type(exc).__name__, exc)
        k = self.k
        with self.locked():
            skipped = k.fail(i)
            self.release(i)
            for s in skipped:
                self.release(s)
            cancelled = self.stop() if self.fail_fast else []
        duration = self.finished[i] - self.started[i]
        self.emit("step_finished", i, status="failed", attempt=attempt, duration=duration, error=exc)
        for s in skipped:
            self.emit("step_finished", s, status="skipped")
        for c in cancelled:
            self.emit("step_finished", c, status="cancelled")
        self.wake()

    # -- durable records ------------------------------------------------------------

    def save(self, i: int, status: str, output: "bytes | None" = None, error: "BaseException | None" = None) -> None:
        """Hand step ``i``'s record to the store (which commits in groups)."""
        offset = self.wall0 - self.pc0
        started = self.started[i] + offset if self.attempts[i] else None
        finished = self.finished[i] + offset if self.attempts[i] and self.finished[i] else None
        etype = emsg = tb = None
        if error is not None:
            import traceback

            etype, emsg = type(error).__name__, str(error)
            tb = "".join(traceback.format_exception(error))
        record = self.record_type(self.names[i], -1, status, self.attempts[i], started, finished, etype, emsg, tb, output)
        self.store.save(self.run_id, [record])

    # -- the cache ------------------------------------------------------------------

    def from_cache(self, i: int) -> bool:
        """Settle step ``i`` from the cache if an earlier call had its inputs; else
        note its key, so that its output is cached when it succeeds."""
        step = self.plan.steps[i]
        key = _cache_key(step, self.kwargs(i))
        now = time.time()
        if self.store is not None:
            found = self.store.cache_get(key)
            hit = found is not None and (step.cache_ttl is None or now - found[1] <= step.cache_ttl)
            value = self.store.decode(found[0]) if hit and found is not None else None
        else:
            entry = _PROCESS_CACHE.get(key)
            hit = entry is not None and (step.cache_ttl is None or now - entry[1] <= step.cache_ttl)
            value = entry[0] if hit and entry is not None else None
        if not hit:
            self.cache_keys[i] = key
            return False
        self.cached.add(i)
        self.started[i] = self.finished[i] = self.clock()
        self.succeed(i, value)
        return True

    def cache_put(self, key: str, value: "Any") -> None:
        if self.store is not None:
            try:
                self.store.cache_put(key, self.store.encode(value, "a cached output"), time.time())
            except TypeError:
                pass  # not storable: the step's own record says so
        else:
            _PROCESS_CACHE[key] = (value, time.time())

    def record_done(self, i: int) -> bool:
        """The hot loop's ``on_done`` in a run with a store: record step ``i``'s
        success as :meth:`succeed` does; ``False`` if its output cannot be
        stored (the step is failed then)."""
        self.take_logs(i)
        try:
            data = self.store.encode(self.outputs[i], f"the output of step {self.names[i]!r}")
        except Exception as exc:  # not JSON, does not pickle: the step fails
            self.outputs[i] = None
            self.fail(i, exc)
            return False
        self.save(i, "succeeded", output=data)
        return True

    def take_logs(self, i: int) -> None:
        """Keep what step ``i`` wrote while the hot loop ran it (see ``_capture.route``)."""
        text = _capture.take(i)
        if text:
            self.save_logs(i, -1, self.attempts[i], text)

    def save_logs(self, i: int, item: int, attempt: int, text: str) -> None:
        """Keep what attempt ``attempt`` of step ``i`` (map item ``item``) printed and logged."""
        if text and self.store is not None:
            self.store.save_logs(self.run_id, self.names[i], item, attempt, text)

    def resume_from(self, records: "dict[int, tuple[int, Any, Any]]") -> None:
        """Take over the steps a resumed run records as succeeded: their attempts
        and times now, their outputs when a step needs them (:meth:`value`)."""
        offset = self.wall0 - self.pc0
        for i, (attempts, started, finished) in records.items():
            self.attempts[i] = attempts
            self.started[i] = (started or self.wall0) - offset
            self.finished[i] = (finished or self.wall0) - offset
            self.outputs[i] = _STORED
        self.resumed = records
        if records:  # steps reading a stored output take the careful path, which reads it
            flags = bytearray(self.flags)
            argdeps = self.plan.argdeps
            for i in set(range(self.n)).difference(records):
                if not flags[i] & _SLOW and any(d in records for d in argdeps[i]):
                    flags[i] |= _SLOW
            self.flags = bytes(flags)

    def value(self, i: int) -> "Any":
        """Step ``i``'s output, read from the store if a resumed run made it."""
        out = self.outputs[i]
        if out is _STORED:
            out = self.outputs[i] = self.store.output(self.run_id, self.names[i])
        return out

    def skip(self, i: int, exc: Skip) -> None:
        """Step ``i`` raised :class:`Skip`: it and its dependents follow the trigger rules."""
        self.reasons[i] = exc.reason
        k = self.k
        with self.locked():
            skipped = k.skip(i)
            self.release(i)
            for s in skipped:
                self.release(s)
        if self.debug:
            log(10, "run %s: step %r skipped itself: %s", self.run_id, self.names[i], exc.reason)
        self.emit("step_finished", i, status="skipped", attempt=self.attempts[i])
        for s in skipped:
            self.emit("step_finished", s, status="skipped")
        self.wake()

    def check_cancel(self) -> bool:
        """Stop the run if its cancel event is set; return whether it is cancelled."""
        if self.cancel is not None and not self.cancel_requested and self.cancel.is_set():
            self.cancel_requested = True
            log(20, "run %s: cancelled", self.run_id)
            with self.locked():
                cancelled = self.stop()
            for c in cancelled:
                self.emit("step_finished", c, status="cancelled")
            self.wake()
        return self.cancel_requested

    def release(self, i: int) -> None:
        for p in self.k.release(i):
            if not self.flags[p] & _KEEP:
                self.outputs[p] = None

    def stop(self) -> "list[int]":
        """Start nothing new: pending steps, waiting retries and unfinished maps end cancelled."""
        self.stopping = True
        k = self.k
        cancelled = k.cancel()
        while self.retry_heap:
            _, _, key, exc = heapq.heappop(self.retry_heap)
            i = key if isinstance(key, int) else key[0]
            if k.state(i) == sched.RUNNING:
                self.errors[i] = exc
                self.cancelled.add(i)
                k.fail(i)
                cancelled.append(i)
        for ms in self.maps:
            if not ms.finished:
                ms.finished = True
                if k.state(ms.i) == sched.RUNNING:
                    self.cancelled.add(ms.i)
                    k.fail(ms.i)
                    cancelled.append(ms.i)
        self.maps = []
        return cancelled

    def abort(self, i: int, exc: BaseException) -> None:
        """A step was interrupted (KeyboardInterrupt...): cancel the run, re-raise later."""
        if self.interrupt is None:
            self.interrupt = exc
        self.cancelled.add(i)
        with self.locked():
            self.k.fail(i)
            self.stop()
        self.wake()

    def due_retry(self) -> "tuple[Any, float | None]":
        """``(key, None)`` for a retry due now, or ``(None, seconds until the next or None)``."""
        heap = self.retry_heap
        if not heap:
            return None, None
        wait = heap[0][0] - self.clock()
        if wait > 0:
            return None, wait
        return heapq.heappop(heap)[2], None

    def claimable(self) -> bool:
        """Whether some running map has units nobody claimed yet."""
        return any(ms.unclaimed() for ms in self.maps)

    def run_key(self, key: "Any") -> None:
        """Run a due retry in this thread: a step, or one unit of a map."""
        if isinstance(key, int):
            self.run_careful(key)
        else:
            ms = self.map_of.get(key[0])
            if ms is not None and not ms.finished:
                self.run_unit_careful(ms, key[1])

    # -- async steps on threads ------------------------------------------------

    def run_coroutine(self, step: "_Step", coro: "Any", what: str) -> "Any":
        """Run an async step's coroutine on this thread's event loop (timeout: cancel it)."""
        import asyncio
        import threading

        key = threading.get_ident()
        loop = self.loops.get(key)
        if loop is None:
            loop = self.loops[key] = asyncio.new_event_loop()
        if step.timeout is not None:
            coro = _cancel_after(coro, step.timeout, what)
        return loop.run_until_complete(coro)

    def close_loops(self) -> None:
        for loop in self.loops.values():
            loop.close()
        self.loops.clear()

    async def loop_async(self, workers: int) -> None:
        """``arun``: async steps as tasks of the running loop, sync steps on threads."""
        self.workers = workers
        pool = _AsyncPool(workers)
        try:
            while True:
                if self.check_cancel():
                    self.kill_pool(pool)
                    return
                self.fill(pool)
                if self.k.remaining == 0:
                    return
                for key, ok, value in await pool.wait(self.wait_time(pool)):
                    self.settle(key, ok, value)
        except BaseException:  # the arun task was cancelled, or Ctrl-C
            self.kill_pool(pool)
            raise
        finally:
            pool.close()

    # -- maps -----------------------------------------------------------------

    def start_map(self, i: int) -> "_Map | None":
        """Expand map step ``i`` into units; ``None`` when it settled at once."""
        step = self.plan.steps[i]
        name = self.names[i]
        names = self.kwnames[i]
        values = [self.value(d) for d in self.plan.argdeps[i]]
        values.extend(self.consts[i])
        self.attempts[i] += 1
        self.emit("step_started", i, attempt=self.attempts[i])
        self.started[i] = self.clock()
        assert step.map is not None
        if step.map not in names:  # an optional flow input left at its default
            default = next(d for p, _, d in self.plan.input_params[i] if p == step.map)
            names = names + (step.map,)
            values.append(default)
        pos = names.index(step.map)
        value = values[pos]
        try:
            items = list(value)
        except TypeError:
            self.finished[i] = self.clock()
            self.fail(i, TypeError(
                f"step {name!r} maps over parameter {step.map!r}, but its value is not "
                f"iterable ({type(value).__name__})"
            ))
            return None
        size = step.batch_size
        units = items if size is None else [items[j : j + size] for j in range(0, len(items), size)]
        if not units:
            self.finished[i] = self.clock()
            self.succeed(i, [])
            return None
        ms = _Map(i, names, values, pos, units, size)
        recorded = self.resumed_items.pop(i, None)
        if recorded and not self.take_recorded_units(ms, recorded):
            return None
        with self.locked():
            self.maps.append(ms)
            self.map_of[i] = ms
        self.wake()
        return ms

    def take_recorded_units(self, ms: "_Map", recorded: "dict[int, int]") -> bool:
        """Resume: fill in the units of ``ms`` its run records as succeeded (a
        unit is recorded under its first item's index); ``False`` when that
        settled the whole map."""
        base = ms.size or 1
        name = self.names[ms.i]
        done: set[int] = set()
        for item, tries in recorded.items():
            j, rest = divmod(item, base)
            if rest or j >= len(ms.units):
                continue
            try:
                result = self.store.output(self.run_id, name, item)
            except KeyError:
                continue
            if ms.size is not None and (not isinstance(result, list) or len(result) != len(ms.units[j])):
                continue
            ms.results[j] = result
            ms.tries[j] = tries
            done.add(j)
        ms.todo = [j for j in range(len(ms.units)) if j not in done]
        ms.pending = len(ms.todo)
        if ms.todo:
            return True
        self.finish_map(ms)
        return False

    def save_unit(self, ms: "_Map", j: int, status: str, result: "Any" = None,
                  error: "BaseException | None" = None) -> None:
        """Hand unit ``j`` of map step ``ms.i`` to the store, as item ``j * batch size``."""
        i = ms.i
        item = j * (ms.size or 1)
        output = etype = emsg = tb = None
        if status == "succeeded":
            try:
                output = self.store.encode(result, f"the output of item {item} of step {self.names[i]!r}")
            except Exception:
                return  # the step's own record reports what cannot be stored
        if error is not None:
            import traceback

            etype, emsg = type(error).__name__, str(error)
            tb = "".join(traceback.format_exception(error))
        record = self.record_type(
            self.names[i], item, status, ms.tries.get(j, 1), ms.began.get(j), time.time(), etype, emsg, tb, output
        )
        self.store.save(self.run_id, [record])

    def claim(self, ms: "_Map") -> "tuple[int, int]":
        """Claim the next units of ``ms`` for this thread: ``(start, stop)``.

        With a cancel event, one unit at a time, so that a set event stops
        the map between two items.
        """
        if self.cancel is not None and self.check_cancel():
            return 0, 0
        with self.locked():
            left = ms.count() - ms.next
            if ms.finished or left <= 0:
                return 0, 0
            if ms.todo is not None:
                j = ms.take()
                return j, j + 1
            chunk = 1 if self.cancel is not None else max(1, min(256, left // (4 * self.workers)))
            start = ms.next
            ms.next = start + chunk
            return start, start + chunk

    def run_units(self, ms: "_Map") -> None:
        """Run claimed units of ``ms`` in this thread until none is left to claim."""
        step = self.plan.steps[ms.i]
        fn = step.fn
        frame = _FRAME.get()
        current = None
        if frame is not None:
            current = frame.current
            current[0] = ms.i
            current[2] = 1  # first attempts; retries go through run_unit_careful
        base = ms.size or 1
        while True:
            start, stop = self.claim(ms)
            if start == stop:
                break
            if step.timeout is not None or self.hooks or self.plan.is_async[ms.i] or self.store is not None:
                for j in range(start, stop):
                    self.run_unit_careful(ms, j)
                continue
            j = start
            while j < stop:
                r = sched.run_items(fn, ms.names, ms.values, ms.pos, ms.units, ms.results, j, stop, current, base)
                if r is None:
                    self.units_done(ms, j, stop)
                    break
                jf, exc = r
                self.units_done(ms, j, jf)
                self.unit_error(ms, jf, exc)
                if ms.finished:
                    break
                j = jf + 1
        if current is not None:
            current[:] = [-1, None, 0]

    def run_unit_careful(self, ms: "_Map", j: int) -> None:
        """One attempt of unit ``j`` of ``ms`` (timeouts, retries, hooks)."""
        i = ms.i
        ms.tries[j] = ms.tries.get(j, 0) + 1
        item = j * (ms.size or 1)
        if self.store is not None:
            ms.began[j] = time.time()
        try:
            result = self.call(i, ms.kwargs(j), f"step {self.names[i]!r} item {item}", item, ms.tries[j])
        except BaseException as exc:
            self.unit_error(ms, j, exc, counted=True)
            return
        ms.results[j] = result
        self.units_done(ms, j, j + 1, counted=True)

    def units_done(self, ms: "_Map", start: int, stop: int, counted: bool = False) -> None:
        """Units ``start .. stop-1`` of ``ms`` returned (their results are stored)."""
        if stop <= start or ms.finished:
            return
        bad = []
        if ms.size is not None:  # a batch must return one result per item
            for j in range(start, stop):
                got = ms.results[j]
                if not hasattr(got, "__len__") or len(got) != len(ms.units[j]):
                    bad.append(j)
        if self.store is not None:
            for j in range(start, stop):
                if j not in bad:
                    self.save_unit(ms, j, "succeeded", ms.results[j])
        with self.locked():
            ms.pending -= stop - start - len(bad)
            last = ms.pending == 0
        for j in bad:
            got = ms.results[j]
            want = len(ms.units[j])
            first = j * (ms.size or 1)
            what = f"{len(got)} results" if hasattr(got, "__len__") else f"a {type(got).__name__}"
            self.unit_error(ms, j, ValueError(
                f"step {self.names[ms.i]!r}: the batch of items {first} to {first + want - 1} "
                f"returned {what} for its {want} items (a batch must return one result per item)"
            ), counted=counted, retry=False)
        if last:
            self.finish_map(ms)

    def unit_error(
        self, ms: "_Map", j: int, exc: BaseException, counted: bool = False, retry: bool = True
    ) -> None:
        """Unit ``j`` of ``ms`` raised ``exc``: retry it, fail it, or end the map."""
        i = ms.i
        if ms.finished:
            return
        if not counted:
            ms.tries[j] = ms.tries.get(j, 0) + 1
        item = j * (ms.size or 1)
        if not isinstance(exc, Exception):
            ms.finished = True
            self.abort(i, exc)
            return
        if isinstance(exc, Skip):
            ms.finished = True
            self.finished[i] = self.clock()
            self.skip(i, exc)
            return
        step = self.plan.steps[i]
        tries = ms.tries[j]
        if retry and tries <= step.retries and isinstance(exc, step.retry_on) and not self.stopping:
            if self.store is not None:
                began = ms.began.get(j)
                now = time.time()
                self.store.save_attempt(self.run_id, self.names[i], item, tries, now if began is None else began,
                                        now, type(exc).__name__, str(exc))
            delay = _backoff(step, tries)
            self.retry_seq += 1
            heapq.heappush(self.retry_heap, (self.clock() + delay, self.retry_seq, (i, j), exc))
            log(20, "run %s: step %r item %d failed on attempt %d (%s: %s); retrying in %.3f s",
                self.run_id, self.names[i], item, tries, type(exc).__name__, exc, delay)
            self.emit("step_retrying", i, attempt=tries, duration=delay, error=exc)
            self.wake()
            return
        exc.add_note(f"microdag: item {item} of map step {self.names[i]!r} failed on attempt {tries}")
        if self.store is not None:
            self.save_unit(ms, j, "failed", error=exc)
        with self.locked():
            ms.errors[j] = exc
            ms.pending -= 1
            last = ms.pending == 0
        if self.fail_fast or last:
            self.finish_map(ms)

    def finish_map(self, ms: "_Map") -> None:
        """Settle map step ``ms.i`` from its units: fail on the first failed item, else succeed."""
        with self.locked():
            if ms.finished:
                return
            ms.finished = True
            if ms in self.maps:
                self.maps.remove(ms)
        i = ms.i
        self.finished[i] = self.clock()
        if ms.errors:
            self.fail(i, ms.errors[min(ms.errors)])
            return
        results = ms.results
        if ms.size is not None:
            from itertools import chain

            results = list(chain.from_iterable(results))
        self.succeed(i, results)

    # -- locking and waking (threads backend) -----------------------------------

    def locked(self) -> "Any":
        lock = self.kernel_lock
        return lock if lock is not None else _NO_LOCK

    def wake(self) -> None:
        cond = self.cond
        if cond is not None:
            with cond:
                cond.notify_all()

    # -- loops ------------------------------------------------------------------

    def drive_args(self) -> tuple["Any", ...]:
        return (
            self.k,
            self.plan.fns,
            self.kwnames,
            self.plan.argdeps,
            self.consts,
            self.outputs,
            self.attempts,
            self.started,
            self.finished,
            self.clock,
            self.flags,
        )

    def taken(self, frame: Frame, i: int, exc: "BaseException | None") -> None:
        """``drive()`` returned step ``i``: run it carefully (``exc`` is
        ``None``), or settle what it raised, keeping what it wrote."""
        if exc is None:
            self.run_careful(i)
            return
        frame.current[0] = -1
        if self.store is not None:
            self.take_logs(i)
        self.settle_error(i, exc)

    def loop_inline(self) -> None:
        drive = sched.drive
        frame = self.frame()
        token = enter(frame)
        on_done = None
        if self.store is not None:
            routed = _capture.route(frame.current)
            on_done = self.record_done
        args = self.drive_args() + (None, None, frame.current, self.cancel, on_done)
        k = self.k
        try:
            while True:
                r = drive(*args)
                if r is not None:
                    self.taken(frame, *r)
                    continue
                frame.current[0] = -1
                if self.check_cancel() and k.running == 0:
                    return
                if k.remaining == 0:
                    return
                key, wait = self.due_retry()
                if key is not None:
                    self.run_key(key)
                elif wait is not None:
                    time.sleep(wait if self.cancel is None else min(wait, 0.05))
                else:
                    k.take()  # raises: nothing ready, running or due
        finally:
            if on_done is not None:
                _capture.unroute(routed)
            leave(token)

    def loop_threads(self, workers: int) -> None:
        import threading

        self.cond = threading.Condition()
        self.workers = workers
        # Kernel calls of the compiled twin are atomic under the GIL, the
        # runner's own bookkeeping around them (map claims and counts, a
        # careful step's release and done) is not: both twins take this lock
        # for it (the compiled hot loop does not need it and ignores it).
        self.kernel_lock = threading.RLock()
        all_done = threading.Event()
        live = [workers]
        crashes: list[BaseException] = []

        def worker() -> None:
            try:
                self.work()
            except BaseException as exc:  # an internal error: stop the run, report it
                crashes.append(exc)
                with self.cond:
                    with self.locked():
                        if not self.stopping:
                            self.stop()
                    self.cond.notify_all()
            finally:
                with self.cond:
                    live[0] -= 1
                    if live[0] == 0:
                        all_done.set()
                    self.cond.notify_all()

        threads = [
            threading.Thread(target=worker, name=f"microdag worker {w}", daemon=True)
            for w in range(workers)
        ]
        started = 0
        try:
            for t in threads:
                t.start()
                started += 1
            all_done.wait()
        except BaseException as exc:  # Ctrl-C in the calling thread
            if self.interrupt is None:
                self.interrupt = exc
            with self.cond:
                with self.locked():
                    if not self.stopping:
                        self.stop()
                self.cond.notify_all()
            # A start() cut short may still have launched its thread: give such
            # threads a moment to come up, then stop counting on the others.
            deadline = time.monotonic() + 1.0
            for t in threads[started:]:
                while t.ident is None and time.monotonic() < deadline:
                    time.sleep(0.005)
            with self.cond:
                live[0] -= sum(1 for t in threads if t.ident is None)
                if live[0] == 0:
                    all_done.set()
            all_done.wait()
        if crashes:
            raise crashes[0]

    def work(self) -> None:
        """One worker thread's loop (see the module docs)."""
        frame = self.frame()
        token = enter(frame)
        routed = None if self.store is None else _capture.route(frame.current)
        try:
            self._work(frame)
        finally:
            if routed is not None:
                _capture.unroute(routed)
            leave(token)

    def _work(self, frame: Frame) -> None:
        drive = sched.drive
        on_done = None if self.store is None else self.record_done
        args = self.drive_args() + (self.kernel_lock, self.idle, frame.current, self.cancel, on_done)
        k = self.k
        cond = self.cond
        idle = self.idle
        poll = None if self.cancel is None else 0.05
        while True:
            maps = self.maps
            if maps:  # help with the units of running maps first
                for ms in list(maps):
                    if ms.unclaimed():
                        self.run_units(ms)
            r = drive(*args)
            if r is not None:
                if r[0] < 0:
                    with cond:
                        cond.notify_all()
                else:
                    self.taken(frame, *r)
                continue
            frame.current[0] = -1
            self.check_cancel()
            with cond:
                if k.remaining == 0 or (self.cancel_requested and k.running == 0):
                    cond.notify_all()
                    return
                key, wait = self.due_retry()
                if key is None:
                    # Count ourselves idle before looking again, so that a step
                    # finishing in another thread either sees us or we see it.
                    idle[0] += 1
                    try:
                        if k.ready == 0 and k.remaining and not self.claimable():
                            if wait is None and k.running == 0 and not self.retry_heap:
                                k.take()  # raises: nothing ready, running or due
                            if poll is not None:
                                wait = poll if wait is None else min(wait, poll)
                            cond.wait(wait)
                    finally:
                        idle[0] -= 1
                    continue
            self.run_key(key)

    def loop_pool(self, pool: "Any") -> None:
        """Processes and executors: fill the pool, settle what comes back."""
        try:
            while True:
                if self.check_cancel():
                    self.kill_pool(pool)
                    return
                self.fill(pool)
                if self.k.remaining == 0:
                    return
                for key, ok, value in pool.wait(self.wait_time(pool)):
                    self.settle(key, ok, value)
        except BaseException as exc:  # Ctrl-C while waiting
            if self.interrupt is None:
                self.interrupt = exc
            self.kill_pool(pool)
            if not self.stopping:
                self.stop()

    def fill(self, pool: "Any") -> None:
        """Start work in ``pool`` while it has room: due retries, map units, ready steps."""
        k = self.k
        steps = self.plan.steps
        while pool.free() > 0 and not self.stopping:
            key, _ = self.due_retry()
            if key is None:
                unit = self.next_unit()
                if unit is not None:
                    self.submit_unit(pool, *unit)
                    continue
                if k.ready == 0:
                    break
                key = k.take(1)[0]
            if isinstance(key, int):
                if steps[key].cache and self.from_cache(key):
                    continue
                if steps[key].map is not None:
                    self.start_map(key)  # its units go out above
                else:
                    self.submit(pool, key, steps[key])
            else:
                ms = self.map_of.get(key[0])
                if ms is not None and not ms.finished:
                    self.submit_unit(pool, ms, key[1])

    def wait_time(self, pool: "Any") -> "float | None":
        """How long a dispatcher may wait for ``pool`` (raises if nothing could ever come)."""
        _, wait = self.due_retry()
        if pool.busy() == 0 and wait is None and self.k.ready == 0 and not self.claimable():
            self.k.take()  # raises: nothing ready, running or due
        if self.cancel is not None:  # look at the event every 50 ms
            wait = 0.05 if wait is None else min(wait, 0.05)
        return wait

    def settle(self, key: "Any", ok: bool, value: "Any") -> None:
        """A pool finished ``key`` (a step id, or ``(step id, unit)``) with ``value``."""
        from ._backends import Captured

        text = value.text if isinstance(value, Captured) else getattr(value, "__microdag_logs__", None)
        if isinstance(value, Captured):
            value = value.value
        if text:
            i, j = (key, -1) if isinstance(key, int) else key
            attempt = self.attempts[i] if j < 0 else self.map_of[i].tries.get(j, 1)
            self.save_logs(i, j if j < 0 else j * (self.map_of[i].size or 1), attempt, text)
        if isinstance(key, tuple):
            ms = self.map_of[key[0]]
            if ok:
                ms.results[key[1]] = value
                self.units_done(ms, key[1], key[1] + 1, counted=True)
            else:
                self.unit_error(ms, key[1], value, counted=True)
            return
        self.finished[key] = self.clock()
        if ok:
            self.succeed(key, value)
        else:
            self.settle_error(key, value)

    def kill_pool(self, pool: "Any") -> None:
        """Terminate what runs in ``pool``; those steps end cancelled."""
        for key in pool.kill_running():
            i = key if isinstance(key, int) else key[0]
            self.cancelled.add(i)
            if self.k.state(i) == sched.RUNNING:
                self.k.fail(i)

    def next_unit(self) -> "tuple[_Map, int] | None":
        """Claim one unit of a running map, for a pool."""
        for ms in self.maps:
            if ms.unclaimed():
                return ms, ms.take()
        return None

    def submit_unit(self, pool: "Any", ms: "_Map", j: int) -> None:
        i = ms.i
        step = self.plan.steps[i]
        ms.tries[j] = ms.tries.get(j, 0) + 1
        if self.store is not None:
            ms.began[j] = time.time()
        ctx = (self.run_id, self.flow.name, self.names[i], ms.tries[j], j * (ms.size or 1), self.run_dir,
               self.store is not None)
        try:
            pool.submit((i, j), step.fn, ms.kwargs(j), step.timeout, ctx)
        except Exception as exc:
            self.unit_error(ms, j, exc, counted=True)

    def submit(self, pool: "Any", i: int, step: "_Step") -> None:
        kwargs = self.kwargs(i)
        self.attempts[i] += 1
        self.emit("step_started", i, attempt=self.attempts[i])
        self.started[i] = self.clock()
        ctx = (self.run_id, self.flow.name, self.names[i], self.attempts[i], None, self.run_dir,
               self.store is not None)
        try:
            pool.submit(i, step.fn, kwargs, step.timeout, ctx)
        except Exception as exc:  # the arguments do not pickle, the executor is shut down...
            self.finished[i] = self.clock()
            self.settle_error(i, exc)

    # -- the record ---------------------------------------------------------------

    def record(self, inputs: "dict[str, Any]") -> Run:
        k = self.k
        states = k.states()
        names = self.names
        kept = [i for i in (range(self.n) if self.keep is None else self.keep) if states[i] == sched.SUCCEEDED]
        stored = [names[i] for i in kept if self.outputs[i] is _STORED]
        if stored:  # outputs of a resumed run that nothing read yet: one read
            loaded = self.store.outputs(self.run_id, stored)
            for i in kept:
                if self.outputs[i] is _STORED:
                    self.outputs[i] = loaded.get(names[i])
        outputs: dict[str, Any] = {names[i]: self.outputs[i] for i in kept}
        if self.interrupt is not None or self.cancel_requested:
            status = "cancelled"
        elif self.errors and self.first_failure >= 0:
            status = "failed"
        else:
            status = "succeeded"
        error = self.errors.get(self.first_failure) if self.first_failure >= 0 else None
        offset = self.wall0 - self.pc0
        finished = time.time()
        if self.store is not None:
            active = range(self.n) if self.subset is None else self.subset
            for i in active:
                st = states[i]
                if st == sched.SKIPPED or st == sched.CANCELLED or i in self.cancelled:
                    self.save(i, "cancelled" if i in self.cancelled or st == sched.CANCELLED else "skipped")
                elif st in (sched.PENDING, sched.READY):
                    self.save(i, "pending")
            self.store.finish(self.run_id, status, finished)
            self.store.release(self.run_id)
        return Run(
            self.run_id,
            self.flow.name,
            status,
            outputs,
            inputs,
            self.wall0,
            finished,
            error,
            names,
            self.plan.graph._index,  # type: ignore[arg-type]
            states,
            self.attempts,
            self.started,
            self.finished,
            self.errors,
            offset,
            frozenset(self.cancelled),
            self.reasons,
            frozenset(self.cached),
        )


async def _cancel_after(coro: "Any", timeout: float, what: str) -> "Any":
    import asyncio

    try:
        return await asyncio.wait_for(coro, timeout)
    except TimeoutError:
        raise TimeoutError(f"{what} timed out after {timeout:g} s (it was cancelled)") from None


async def _attempt_async(
    fn: "Any", kwargs: "dict[str, Any]", timeout: "float | None", ctx: "tuple[Any, ...]"
) -> "Any":
    """One attempt of an async step, as a task of the running loop (own context frame)."""
    run_id, flow, step, attempt, item, run_dir = ctx[:6]
    frame = Frame(run_id, flow, (step,), None, run_dir)
    frame.current[:] = [0, item, attempt]
    enter(frame)  # a task runs in a copy of the context: this stays in the task
    if len(ctx) > 6 and ctx[6]:
        from ._backends import Captured
        from ._capture import start

        buffer, _ = start()  # the task's own context: nothing to reset
        try:
            value = await _cancel_after(fn(**kwargs), timeout, f"step {step!r}") if timeout else await fn(**kwargs)
        except BaseException as exc:
            exc.__microdag_logs__ = "".join(buffer)  # type: ignore[attr-defined]
            raise
        return Captured(value, "".join(buffer))
    coro = fn(**kwargs)
    if timeout is not None:
        return await _cancel_after(coro, timeout, f"step {step!r}")
    return await coro


async def _attempt_thread(
    pool: "Any", fn: "Any", kwargs: "dict[str, Any]", timeout: "float | None", ctx: "tuple[Any, ...]"
) -> "Any":
    """One attempt of a sync step on a thread; on timeout it is abandoned."""
    import asyncio

    from ._backends import invoke

    future = asyncio.get_running_loop().run_in_executor(pool, invoke, fn, kwargs, ctx)
    if timeout is None:
        return await future
    try:
        return await asyncio.wait_for(future, timeout)
    except TimeoutError:
        raise TimeoutError(f"step {ctx[2]!r} timed out after {timeout:g} s (the call was abandoned)") from None


class _AsyncPool:
    """The pool interface of ``_backends`` over the running event loop (``arun``):
    async steps become tasks, other steps run on a thread pool."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._running: dict[Any, Any] = {}  # task -> key
        self._threads: Any = None

    def free(self) -> int:
        return self._size - len(self._running)

    def busy(self) -> int:
        return len(self._running)

    def submit(
        self, key: "Any", fn: "Any", kwargs: "dict[str, Any]", timeout: "float | None", ctx: "tuple[Any, ...]"
    ) -> None:
        import asyncio

        if asyncio.iscoroutinefunction(fn):
            task = asyncio.ensure_future(_attempt_async(fn, kwargs, timeout, ctx))
        else:
            if self._threads is None:
                from concurrent.futures import ThreadPoolExecutor

                self._threads = ThreadPoolExecutor(self._size, thread_name_prefix="microdag arun")
            task = asyncio.ensure_future(_attempt_thread(self._threads, fn, kwargs, timeout, ctx))
        self._running[task] = key

    async def wait(self, timeout: "float | None") -> "list[tuple[Any, bool, Any]]":
        import asyncio

        if not self._running:
            await asyncio.sleep(timeout or 0)
            return []
        done, _ = await asyncio.wait(self._running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        out = []
        for task in done:
            key = self._running.pop(task)
            if task.cancelled():
                out.append((key, False, asyncio.CancelledError()))
            elif task.exception() is not None:
                out.append((key, False, task.exception()))
            else:
                out.append((key, True, task.result()))
        return out

    def kill_running(self) -> "list[Any]":
        """Cancel the step tasks (a step on a thread is left to finish); return their keys."""
        keys = list(self._running.values())
        for task in self._running:
            task.cancel()
        self._running.clear()
        return keys

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)


class _Map:
    """One map step being run: its units and how far they got."""

    __slots__ = ("i", "names", "values", "pos", "units", "size", "results", "next", "pending",
                 "tries", "errors", "finished", "todo", "began")

    def __init__(
        self, i: int, names: "tuple[str, ...]", values: "list[Any]", pos: int,
        units: "list[Any]", size: "int | None",
    ) -> None:
        self.i = i
        self.names = names
        self.values = values
        self.pos = pos
        self.units = units
        self.size = size
        self.results: list[Any] = [None] * len(units)
        self.next = 0  # first unclaimed unit
        self.pending = len(units)  # units not yet settled
        self.tries: dict[int, int] = {}  # attempts, for units that failed once
        self.errors: dict[int, BaseException] = {}
        self.finished = False
        self.todo: list[int] | None = None  # resumed: the units still to run, in order
        self.began: dict[int, float] = {}  # with a store: unit -> wall time its last attempt began

    def unclaimed(self) -> bool:
        """Whether some unit of this map is still to be claimed."""
        return self.next < self.count() and not self.finished

    def count(self) -> int:
        """How many units this run of the map claims in all."""
        return len(self.units) if self.todo is None else len(self.todo)

    def take(self) -> int:
        """Claim the next unit (the caller holds the kernel lock); its index."""
        k = self.next
        self.next = k + 1
        return k if self.todo is None else self.todo[k]

    def kwargs(self, j: int) -> "dict[str, Any]":
        """The keyword arguments of unit ``j``."""
        kwargs = dict(zip(self.names, self.values))
        kwargs[self.names[self.pos]] = self.units[j]
        return kwargs


#: An output a resumed run's store holds, read when a step needs it.
_STORED = object()
#: Flows of at most this many steps have their structure kept with their runs
#: (for reports); drawing a bigger one would not be read anyway.
GRAPH_LIMIT = 10_000

#: The cache of steps with ``cache=True`` in runs without a store: key ->
#: (output, when it was made), for the life of the process.
_PROCESS_CACHE: "dict[str, tuple[Any, float]]" = {}


def _cache_key(step: "_Step", kwargs: "dict[str, Any]") -> str:
    """A digest of the step's name, its function (code and default values:
    editing either changes what it returns) and its arguments."""
    from ._compat import sha256

    fn = step.fn
    digest = sha256(step.name.encode())
    code = getattr(fn, "__code__", None)
    if code is not None:
        import marshal

        digest.update(marshal.dumps(code))
        defaults = [getattr(fn, name, None) for name in ("__defaults__", "__kwdefaults__", "keywords")]
        digest.update(_canonical(defaults))  # "keywords": a functools.partial's
    else:
        digest.update(repr(getattr(fn, "__qualname__", fn)).encode())
    digest.update(_canonical(sorted(kwargs.items())))
    key: str = digest.hexdigest()
    return key


def _canonical(value: "Any") -> bytes:
    """``value`` as bytes for a cache key: its JSON, else its pickle, else its repr."""
    import json

    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    except (TypeError, ValueError):
        import pickle

        try:
            return pickle.dumps(value, protocol=4)
        except Exception:
            return repr(value).encode()


class _NoLock:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LOCK = _NoLock()


def _backoff(step: "_Step", attempt: int) -> float:
    """Seconds before retry number ``attempt``: exponential, capped, with jitter."""
    delay = step.retry_delay * step.retry_backoff ** (attempt - 1)
    if step.retry_max_delay is not None:
        delay = min(delay, step.retry_max_delay)
    if delay <= 0:
        return 0.0
    import random

    return delay * (0.5 + random.random() / 2)  # equal jitter: [delay/2, delay)


def _bind_inputs(
    plan: "_Plan", subset: "list[int] | None", given: "Mapping[str, Any]", problems: "list[str]"
) -> "dict[int, tuple[tuple[str, ...], tuple[Any, ...]]]":
    """Per step taking flow inputs: its keyword names and constant values for this run.

    A required input that was not given goes into ``problems``, naming the
    step and the parameter.
    """
    active = None if subset is None else set(subset)
    bound = {}
    for i, params in enumerate(plan.input_params):
        if not params or (active is not None and i not in active):
            continue
        names = list(plan.dep_kwnames[i])
        values = []
        for param, input_name, default in params:
            if input_name in given:
                names.append(param)
                values.append(given[input_name])
            elif default is _NO_DEFAULT:
                problems.append(
                    f"step {plan.graph.names[i]!r} needs input {input_name!r} "
                    f"(parameter {param!r}), which was not given"
                )
        bound[i] = (tuple(names), tuple(values))
    return bound


def _prepare(
    flow: "Flow",
    inputs: "Mapping[str, Any] | None",
    *,
    executor: "Any",
    max_workers: "int | None",
    targets: "Iterable[str] | None",
    on_failure: str,
    hooks: "Iterable[Callable[[Event], Any]]",
    keep_outputs: bool,
    cancel: "Any",
    store: "Any" = None,
    run_id: "str | None" = None,
    resume: bool = False,
    force: bool = False,
) -> "_Runner":
    """Check everything a run needs, then set up its runner (the kernel is held)."""
    problems: list[str] = []
    resumed_info = None
    if store is not None:
        from .stores import open_store

        try:
            store = open_store(store)
        except ValueError as exc:
            problems.append(str(exc))
            store = None
    if run_id is not None and (not isinstance(run_id, str) or not run_id):
        problems.append(f"run_id must be a non-empty string, not {run_id!r}")
        run_id = None
    if resume:
        if store is None or run_id is None:
            problems.append("resume=True needs store= and the run_id= of the run to resume")
        else:
            resumed_info = store.run_info(run_id)  # StoreError for an unknown run
            if inputs is None:
                inputs = resumed_info.inputs
    if isinstance(executor, str):
        if executor not in _EXECUTORS:
            problems.append(
                f"unknown executor {executor!r}: expected one of {', '.join(map(repr, _EXECUTORS))} "
                "or a concurrent.futures.Executor"
            )
    elif not callable(getattr(executor, "submit", None)):
        problems.append(f"executor {executor!r} is neither a name nor a concurrent.futures.Executor")
    if on_failure not in _POLICIES:
        problems.append(f"unknown on_failure {on_failure!r}: expected 'fail_fast' or 'continue'")
    if max_workers is not None and (
        not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
    ):
        problems.append(f"max_workers must be an int >= 1 or None, not {max_workers!r}")
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        problems.append(f"cancel must be a threading.Event (or have is_set()), not {cancel!r}")
    hooks = tuple(hooks)
    for hook in hooks:
        if not callable(hook):
            problems.append(f"hook {hook!r} is not callable")
    if inputs is None:
        given: dict[str, Any] = {}
    elif callable(getattr(inputs, "keys", None)) and callable(getattr(inputs, "__getitem__", None)):
        given = {key: inputs[key] for key in inputs.keys()}
    else:
        problems.append(f"inputs must map input names to values, not {type(inputs).__name__}")
        given = {}
    plan = flow._compiled()
    unknown = sorted(set(given) - set(plan.inputs), key=str)
    for name in unknown:
        known = ", ".join(sorted(plan.inputs)) or "none"
        problems.append(f"flow {flow.name!r} has no input {name!r} (its inputs: {known})")
    graph = plan.graph
    subset: list[int] | None = None
    keep: list[int] | None = None
    if targets is not None:
        try:
            target_ids = graph.ids(targets)
        except FlowError as exc:
            problems.extend(p.replace("no step named", "unknown target: no step named") for p in exc.problems)
            target_ids = []
        subset = graph.kernel.ancestors(target_ids)
        keep = None if keep_outputs else target_ids
    elif not keep_outputs:
        keep = plan.sinks()
    bound = _bind_inputs(plan, subset, given, problems)
    if executor == "processes":
        _check_picklable(plan, subset, problems)
    if resumed_info is not None and resumed_info.fingerprint != plan.fingerprint() and not force:
        problems.append(
            f"run {run_id} was made by another version of flow {flow.name!r} (its steps, "
            "dependencies or bindings changed); resume it with force=True to run it anyway"
        )
    if problems:
        raise FlowError(*problems)

    kernel = graph.kernel
    owned = not plan.busy
    if owned:
        plan.busy = True
    else:  # another run of this flow holds the kernel: use a private copy
        kernel = graph._new_kernel()
        plan.configure(kernel)
    try:
        runner = _Runner(flow, plan, kernel, subset, given, on_failure, hooks, keep, cancel, store, run_id)
        runner.owned = owned
        runner.force = force
        for i, (names, values) in bound.items():
            runner.kwnames[i] = names
            runner.consts[i] = values
        if store is not None:
            _open_record(runner, store, resumed_info is not None)
        kernel.reset(subset, done=list(runner.resumed) or None)
        if store is not None:
            from ._capture import install

            install()
            runner.capturing = True
    except BaseException:
        if owned:
            plan.busy = False
        raise
    runner.emit("run_started")
    if runner.debug:
        log(10, "run %s of flow %r started", runner.run_id, flow.name)
    return runner


def _open_record(runner: "_Runner", store: "Any", resume: bool) -> None:
    """Start the run's record in ``store``, or reopen it and note what already succeeded."""
    from .stores import RunInfo

    if resume:
        store.claim(runner.run_id, force=runner.force)  # StoreError while it is live elsewhere
        index = runner.plan.graph._index
        active = None if runner.subset is None else set(runner.subset)
        records = {}
        for step, facts in store.succeeded(runner.run_id).items():
            i = index.get(step)
            if i is not None and (active is None or i in active):
                records[i] = facts
        runner.resume_from(records)
        maps = {
            runner.names[i] for i in runner.plan.maps
            if i not in records and (active is None or i in active)
        }
        if maps:  # their items that succeeded are not run again
            for r in store.tasks(runner.run_id, outputs=False):
                if r.item >= 0 and r.status == "succeeded" and r.step in maps:
                    runner.resumed_items.setdefault(index[r.step], {})[r.item] = r.attempts
        store.finish(runner.run_id, "running", None)
        return
    plan = runner.plan
    fingerprint = plan.fingerprint()
    info = RunInfo(
        runner.run_id, runner.flow.name, fingerprint, runner.given, "running", runner.wall0,
        source=runner.flow._source,
    )
    try:
        store.begin(info)
    except TypeError as exc:  # inputs the codec cannot store
        raise FlowError(str(exc)) from None
    if len(plan.fns) <= GRAPH_LIMIT and store.graph(fingerprint) is None:
        store.save_graph(fingerprint, plan.graph_json())


def _finish(runner: "_Runner", raise_on_failure: bool) -> Run:
    """Record the run, let go of the kernel, report; re-raise an interruption."""
    try:
        with runner.locked():
            if runner.interrupt is not None and not runner.stopping:
                runner.stop()
        run = runner.record(runner.given)
    finally:
        runner.close_loops()
        if runner.capturing:
            from ._capture import uninstall

            uninstall()
        if runner.owned:
            runner.plan.busy = False
    if runner.debug:
        log(10, "run %s of flow %r finished: %s", run.id, run.flow, run.status)
    runner.emit("run_finished", status=run.status, duration=run.duration)
    if runner.interrupt is not None:
        raise runner.interrupt
    if raise_on_failure and run.status != "succeeded":
        raise _run_failed(run)
    return run


def execute(
    flow: "Flow", inputs: "Mapping[str, Any] | None", *, raise_on_failure: bool, **options: "Any"
) -> Run:
    """Run ``flow`` (the implementation of :meth:`Flow.run`; options as there)."""
    runner = _prepare(flow, inputs, **options)
    executor = options["executor"]
    max_workers = options["max_workers"]
    try:
        if executor == "inline":
            runner.loop_inline()
        elif executor == "threads":
            runner.loop_threads(max_workers or _default_workers("threads"))
        else:
            from ._backends import ExecutorPool, ProcessPool

            pool: Any
            if executor == "processes":
                pool = ProcessPool(max_workers or _default_workers("processes"))
            else:
                pool = ExecutorPool(executor, max_workers or _default_workers(executor))
            try:
                runner.loop_pool(pool)
            finally:
                pool.close()
    except BaseException as exc:  # Ctrl-C in the inline loop
        if runner.interrupt is None:
            runner.interrupt = exc
    return _finish(runner, raise_on_failure)


async def execute_async(
    flow: "Flow", inputs: "Mapping[str, Any] | None", *, raise_on_failure: bool, **options: "Any"
) -> Run:
    """Run ``flow`` in the running event loop (the implementation of :meth:`Flow.arun`)."""
    runner = _prepare(flow, inputs, executor="inline", **options)
    try:
        await runner.loop_async(options["max_workers"] or _default_workers("threads"))
    except BaseException as exc:  # cancelled, or Ctrl-C
        if runner.interrupt is None:
            runner.interrupt = exc
    return _finish(runner, raise_on_failure)


def _default_workers(executor: "Any") -> int:
    from ._backends import default_workers

    return default_workers(executor)


def _check_picklable(plan: "_Plan", subset: "list[int] | None", problems: "list[str]") -> None:
    import pickle

    for i in range(len(plan.steps)) if subset is None else subset:
        step = plan.steps[i]
        try:
            pickle.dumps(step.fn)
        except Exception as exc:
            problems.append(
                f"step {step.name!r} cannot run on processes: its function "
                f"{getattr(step.fn, '__qualname__', step.fn)!r} cannot be pickled ({exc}); "
                "define it at module level"
            )
