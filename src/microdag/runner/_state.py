"""The run's state machine: every transition of a step's state, and no I/O.

Everything that changes the state of a step or of a map unit lives here (map
units in ``_maps``, which this module owns), in the spirit of h11's
``_state.py``.  The loops (``inline``, ``threads``, ``dispatch``) ask it for
attempts and report how each one ended; it decides retries, skips and
failures and what is ready next, and tells the recorder (``_recorder``, the
store's side) and the hooks what happened.  It does not know which backend
runs the steps, and it never touches a store, a pool, a thread or a file.

State, by step id ``i`` (the plan's):

- ``k``: the kernel: which steps are pending, ready, running, finished.  A
  step waiting for a retry, and a map step whose units are not all settled,
  stay ``RUNNING``;
- ``outputs[i]``: its output until nothing needs it (``None`` after release;
  ``STORED`` for an output a resumed run's store holds, read when needed);
- ``attempts[i]``, ``started[i]``, ``finished[i]``: attempts made, and the
  clock readings of the last one.  One clock (``time.perf_counter``) for
  steps and map units alike; ``to_wall`` turns a reading into wall time;
- ``errors``, ``reasons``, ``cancelled``, ``cached``: how steps ended;
- ``retries``: a heap of ``(due, seq, attempt, error)``: attempts that failed
  and run again when due;
- ``maps``: the map steps being run and their units (``_maps.Maps``);
- ``limits``: the run's pools and rates, set on the kernel (``_limits``), or ``None``.

Attempts.  :meth:`Runner.begin` starts a step taken from the kernel and
returns its :class:`~microdag.pools._attempt.Attempt` (or ``None`` when the
cache answered, or the step is a map, whose units are attempts of their
own); :meth:`Runner.settle` takes any attempt back, a step's or a unit's,
with its outcome.  Steps that the kernel's hot loop (``drive``) ran come back
through :meth:`Runner.record_done` and :meth:`Runner.hot_failed`.

Only this object writes its state (``_maps`` is its part).  What the setup
knows comes in through its constructor: besides the plan, the kernel, the
run's id and flow name, the ``recorder`` (the store's side), the ``subset``
of steps run and the steps whose outputs it returns (``keep``; ``None``:
all), ``on_failure``, ``hooks`` and ``cancel`` as ``Flow.run`` takes them,
``bound`` (step id -> its keyword names and the values of the flow inputs
it is given, ``_call.bind_inputs``), ``owned`` (whether the run leased the
plan's own kernel) and ``halt``.  What a loop has to say comes in through
verbs: :meth:`Runner.share` (several threads call in),
:meth:`Runner.on_cluster` (outputs stay on a Dask cluster),
:meth:`Runner.interrupted` (Ctrl-C, a cancelled task), :meth:`Runner.stop`;
a resumed run's records through ``_resumed.take_over``, before it starts.
It does no I/O: the
recorder keeps what the store must, and ``halt`` (given by ``_setup``) kills
the programs of the run's command steps when it is cancelled or interrupted.

Locking.  After :meth:`Runner.share` (the threads backend) ``lock`` is a real
lock and several workers call in at once; elsewhere it is a no-op.  A step a
loop took from the kernel (or a retry it popped) belongs to that loop until it
is settled.  Methods marked *(owner)* touch only that step's slots and need no
lock; methods marked *(locks)* take the lock themselves around the kernel and
the shared structures; ``_stop`` is the one called with the lock held.

Why no loop can hang: every step not finished is ready, running, or waiting
for a retry whose time :meth:`Runner.next_due` tells (without taking it);
when none of these holds, :meth:`Runner.stall_error` is raised instead of
waiting.
"""

import heapq
import time

from .._compat import sched
from .._context import Frame
from .._errors import Skip
from .._events import Event, debug_enabled, dispatch, log
from .._records import run_status
from ..pools._attempt import Attempt
from ._call import Caller, kwargs
from ._limits import Limits
from ._maps import Maps
from ._recorder import STORED
from ._tracing import Tracers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

    from .._plan import _Plan
    from .._types import RunStatus
    from ._grow import Growth
    from ._recorder import NullRecorder, StoreRecorder

__all__ = ["Runner"]

_KEEP = sched.KEEP
_RUNNING = sched.RUNNING


class _NoLock:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _nothing() -> None:
    return None


class Runner:
    """The state of one run and its transitions (see the module docs)."""

    def __init__(
        self,
        plan: "_Plan",
        kernel: "sched.Kernel",
        run_id: str,
        flow: str,
        *,
        recorder: "NullRecorder | StoreRecorder",
        subset: "list[int] | None" = None,
        on_failure: str = "fail_fast",
        hooks: "tuple[Callable[[Event], Any], ...]" = (),
        keep: "list[int] | None" = None,
        cancel: "Any" = None,
        bound: "Mapping[int, tuple[tuple[str, ...], tuple[Any, ...]]] | None" = None,
        owned: bool = False,
        halt: "Callable[[], object] | None" = None,
        pools: "Mapping[str, int] | None" = None,
        rates: "Mapping[str, str] | None" = None,
        given: "Mapping[str, Any] | None" = None,
    ) -> None:
        n = len(plan.steps)
        self.plan = plan
        self.k = kernel
        self.n = n
        self.names: tuple[str, ...] = plan.graph.names
        self.run_id = run_id
        self.flow = flow
        self.subset = subset
        self.keep = keep
        self.fail_fast = on_failure == "fail_fast"
        self.debug = debug_enabled()
        self.cancel = cancel
        self.recorder = recorder
        self.capture = recorder.durable  # attempts capture what steps print and log
        self.run_dir = recorder.run_dir
        self.clock = time.perf_counter
        self.wall0 = time.time()
        self.pc0 = self.clock()
        self.offset = self.wall0 - self.pc0  # clock reading + offset = wall time
        recorder.start(self.offset)
        #: The hooks that trace attempts (``microdag.otel``), or ``None``; the
        #: other hooks get the events.
        self.tracers = Tracers.among(hooks, run_id, self.offset, self.clock) if hooks else None
        self.hooks = hooks if self.tracers is None else Tracers.others(hooks)
        self.outputs: list[Any] = [None] * n
        self.attempts = [0] * n
        self.started = [0.0] * n
        self.finished = [0.0] * n
        self.errors: dict[int, BaseException] = {}
        self.first_failure = -1
        self.reasons: dict[int, str] = {}
        self.cancelled: set[int] = set()
        self.cached: set[int] = set()
        self.cache_keys: dict[int, str] = {}  # step id -> its cache key, until it succeeds
        self.retries: list[tuple[float, int, Attempt, BaseException]] = []
        self._seq = 0
        self.maps = Maps(self)
        self.stopping = False
        self.cancel_requested = False
        self.interrupt: BaseException | None = None
        self.kwnames = list(plan.dep_kwnames)
        self.consts: list[tuple[Any, ...]] = [()] * n
        for i, (names, values) in (bound or {}).items():
            self.kwnames[i] = names
            self.consts[i] = values
        self.flags = plan.flags(bool(hooks) or self.debug, keep)
        self.owned = owned
        self.halt: Callable[[], object] = _nothing if halt is None else halt
        self.remote = False  # whether outputs may stay on a cluster (Dask): fetched when needed here
        self.caller = Caller(plan, run_id, flow, self.run_dir, self.capture)
        # Several threads call in at once after share().
        self.lock: Any = _NoLock()
        self.wake: Callable[[], None] = _nothing
        self.workers = 1
        self.limits = Limits.of(plan, kernel, pools, rates, self.clock)  # (None: none)
        recorder.timed = self.limits is not None  # (its records keep their waits)
        # Steps that add steps (``_grow``): inputs given, frames, adds so far, what the first made.
        self.given: Mapping[str, Any] = {} if given is None else given
        self.frames: list[Frame] = []
        self.grown = 0
        self.growth: Growth | None = None

    # -- how the run is run --------------------------------------------------------

    def share(self, workers: int, wake: "Callable[[], None]") -> None:
        """``workers`` threads call in at once (the threads backend): shared
        state changes under a real lock from now on, and ``wake`` is called
        whenever a transition may have made work for an idle worker."""
        import threading  # (import time: threading loads on first use)

        self.workers = workers
        self.lock = threading.RLock()
        self.wake = wake

    def on_cluster(self) -> None:
        """Outputs may stay on a cluster (Dask): fetched where this process needs them."""
        self.remote = True

    # -- reading ------------------------------------------------------------------

    def value(self, i: int) -> "Any":
        """Step ``i``'s output, read from the store if a resumed run made it."""
        out = self.outputs[i]
        if out is STORED:
            out = self.outputs[i] = self.recorder.output(self.names[i])
        return out

    def kwargs(self, i: int) -> "dict[str, Any]":
        """The keyword arguments step ``i`` is called with."""
        return kwargs(self.kwnames[i], list(map(self.value, self.plan.argdeps[i])), self.consts[i])

    def call_args(self, att: Attempt) -> "tuple[Callable[..., Any], dict[str, Any]]":
        """The function and keyword arguments of ``att``."""
        if att.unit < 0:
            return self.plan.fns[att.step], self.kwargs(att.step)
        return self.plan.fns[att.step], self.maps.of[att.step].kwargs(att.unit)

    def frame(self) -> Frame:
        """A fresh context frame for a thread (or task) that runs steps."""
        frame = Frame(self.run_id, self.flow, self.names, self.attempts, self.run_dir, self.cancel, self.add_step)
        self.frames.append(frame)
        return frame

    def add_step(self, caller: str, name: str, fn: "Callable[..., Any]", depends_on: "Iterable[str]",
                 inputs: "Mapping[str, str] | None", options: "dict[str, Any]") -> str:
        """Step ``caller`` adds step ``name`` *(locks)*: ``context().add``, in ``_grow``; FlowError if refused."""
        from ._grow import add  # (only runs whose steps add steps)

        return add(self, caller, name, fn, depends_on, inputs, options)

    def drive_args(self) -> "tuple[Any, ...]":
        """The first arguments of the kernel's hot loop, ``drive()``."""
        return (self.k, self.plan.fns, self.kwnames, self.plan.argdeps, self.consts, self.outputs,
                self.attempts, self.started, self.finished, self.clock, self.flags)

    def emit(self, kind: str, i: int = -1, **fields: "Any") -> None:
        if self.hooks:
            step = self.names[i] if i >= 0 else None
            dispatch(self.hooks, Event(kind, self.run_id, self.flow, step, time=time.time(), **fields))

    # -- starting attempts --------------------------------------------------------------

    def begin(self, i: int) -> "Attempt | None":
        """Start step ``i``, just taken from the kernel *(owner)*: its first
        attempt, or ``None`` when the cache settled it or it is a map step
        (whose units are claimed from :attr:`maps`)."""
        step = self.plan.options[i]
        if step.cache and not self.attempts[i] and self._from_cache(i):
            return None
        if step.map is not None:
            self.maps.start(i)
            return None
        return self._attempt(i)

    def _attempt(self, i: int) -> Attempt:
        self.attempts[i] += 1
        number = self.attempts[i]
        now = self.started[i] = self.clock()
        waited = None if self.limits is None else self.k.waited(i)
        self.emit("step_started", i, attempt=number, waited=waited)
        if self.debug:
            log(10, "run %s: step %r started (attempt %d)", self.run_id, self.names[i], number)
        att = self.caller.attempt(i, number, now)
        att.waited = waited or 0.0
        if self.tracers is not None:
            self.tracers.started(att)
        return att

    def waited(self, i: int) -> "float | None":
        """Seconds step ``i``'s attempts waited, in all, for room in its pools
        or a token (what its record keeps); ``None`` in a run without pools and rates."""
        return None if self.limits is None else self.limits.waited(i)

    def hot_attempt(self, i: int) -> Attempt:
        """The attempt of step ``i`` that ``drive()`` just made."""
        return self.caller.attempt(i, self.attempts[i], self.started[i], self.finished[i])

    def _again(self, att: Attempt) -> "Attempt | None":
        """The next attempt after ``att`` (a due retry), or ``None`` if its map ended."""
        if att.unit >= 0:
            return self.maps.again(att)
        return self._attempt(att.step)

    def _from_cache(self, i: int) -> bool:
        """Settle step ``i`` from the cache if an earlier call had its inputs;
        else note its key, so that its output is cached when it succeeds."""
        from ._cache import cache_key  # (cached steps only)

        step = self.plan.steps[i]
        key = cache_key(step.name, step.fn, self.kwargs(i))
        hit, value = self.recorder.cache_get(key, step.cache_ttl, step.name)
        if not hit:
            self.cache_keys[i] = key
            return False
        self.cached.add(i)
        self.started[i] = self.finished[i] = self.clock()
        self.succeed(i, value)
        return True

    # -- settling -------------------------------------------------------------------

    def settle(self, att: Attempt, ok: bool, value: "Any") -> None:
        """``att`` ended *(owner)*: with result ``value`` if ``ok``, else raising ``value``."""
        if not att.finished:
            att.finished = self.clock()
        if self.tracers is not None:
            self.tracers.ended(att, ok, value)
        if att.unit >= 0:
            self.maps.settle(att, ok, value)
            return
        self.finished[att.step] = att.finished
        if ok:
            self.succeed(att.step, value)
        else:
            self.failed(att, value)

    def record_done(self, i: int) -> bool:
        """``drive()``'s ``on_done`` in a run with a store: record step ``i``'s
        success; ``False`` when its output cannot be stored (it failed then)."""
        recorder = self.recorder
        recorder.hot_logs(i, self.attempts[i])
        exc = recorder.step_succeeded(i, self.outputs[i], self.attempts[i], self.started[i], self.finished[i],
                                      self.waited(i))
        if exc is None:
            return True
        self.outputs[i] = None
        self.fail(i, exc)
        return False

    def hot_failed(self, i: int, exc: BaseException) -> None:
        """``drive()`` returned step ``i``, which raised ``exc`` *(owner)*."""
        if self.capture:
            self.recorder.hot_logs(i, self.attempts[i])
        self.failed(self.hot_attempt(i), exc)

    def succeed(self, i: int, result: "Any") -> None:
        """Step ``i`` succeeded with ``result`` *(owner; locks)*."""
        key = self.cache_keys.pop(i, None)
        if key is not None:
            self.recorder.cache_put(key, result, self.names[i])
        exc = self.recorder.step_succeeded(i, result, self.attempts[i], self.started[i], self.finished[i],
                                           self.waited(i))
        if exc is not None:  # the output cannot be stored: the step fails
            self.fail(i, exc)
            return
        k = self.k
        with self.lock:
            self.outputs[i] = result
            self._release(i)
            k.done(i)
        if self.hooks or self.debug:
            duration = self.finished[i] - self.started[i]
            self.emit("step_finished", i, status="succeeded", attempt=self.attempts[i], duration=duration)
            if self.debug:
                log(10, "run %s: step %r succeeded in %.6f s", self.run_id, self.names[i], duration)
        self.wake()

    def failed(self, att: Attempt, exc: BaseException, retry: bool = True) -> None:
        """``att`` raised ``exc`` *(owner; locks)*: try it again when its step's
        retry policy says so, else fail it (or skip it, or abort the run)."""
        if att.unit >= 0 and self.maps.over(att):
            return  # a late outcome of a map that has ended
        if isinstance(exc, KeyboardInterrupt):  # Ctrl-C: the run stops (SystemExit and the
            self.maps.end(att)                  # other BaseExceptions fail their step below)
            self.abort(att.step, exc)
            return
        if isinstance(exc, Skip):
            if self.maps.end(att):
                self.finished[att.step] = self.clock()
            self.skip(att.step, exc)
            return
        delay = None
        if retry and not self.stopping:
            delay = self.plan.retry[att.step].delay(exc, att.number)
        if delay is None:
            if att.unit < 0:
                self.fail(att.step, exc)
            else:
                self.maps.unit_failed(att, exc)
            return
        self.recorder.retried(att, exc)
        with self.lock:
            if self.limits is not None and att.unit < 0:
                self.limits.retried(att.step)
                self.k.give_back(att.step)  # (its pools' units are free while it waits)
            self._seq += 1
            heapq.heappush(self.retries, (self.clock() + delay, self._seq, att, exc))
        log(20, "run %s: %s failed on attempt %d (%s: %s); retrying in %.3f s",
            self.run_id, att.describe(), att.number, type(exc).__name__, exc, delay)
        self.emit("step_retrying", att.step, attempt=att.number, duration=delay, error=exc, item=att.item, key=att.key)
        self.wake()

    def fail(self, i: int, exc: BaseException) -> None:
        """Step ``i`` failed with ``exc`` *(owner; locks)*: its dependents follow
        their trigger rules; under ``fail_fast`` the run stops."""
        step = self.plan.steps[i]
        name = self.names[i]
        attempt = self.attempts[i]
        if step.map is not None:  # attempts are per item, and the item's note says them
            exc.add_note(f"microdag: map step {name!r} of flow {self.flow!r} failed (run {self.run_id})")
        else:
            exc.add_note(
                f"microdag: step {name!r} of flow {self.flow!r} failed on attempt "
                f"{attempt} of {step.retries + 1} (run {self.run_id})"
            )
        self.errors[i] = exc
        if self.first_failure < 0:
            self.first_failure = i
        self.recorder.step_ended(i, "failed", attempt, self.started[i], self.finished[i], exc, self.waited(i))
        log(30, "run %s: step %r failed on attempt %d: %s: %s", self.run_id, name, attempt, type(exc).__name__, exc)
        with self.lock:
            skipped = self.k.fail(i)
            self._release(i)
            for s in skipped:
                self._release(s)
            cancelled = self._stop() if self.fail_fast else []
        duration = self.finished[i] - self.started[i]
        self.emit("step_finished", i, status="failed", attempt=attempt, duration=duration, error=exc)
        for s in skipped:
            self.emit("step_finished", s, status="skipped")
        for c in cancelled:
            self.emit("step_finished", c, status="cancelled")
        self.wake()

    def skip(self, i: int, exc: Skip) -> None:
        """Step ``i`` raised :class:`Skip` *(owner; locks)*: it and its dependents
        follow the trigger rules."""
        self.reasons[i] = exc.reason
        with self.lock:
            skipped = self.k.skip(i)
            self._release(i)
            for s in skipped:
                self._release(s)
        if self.debug:
            log(10, "run %s: step %r skipped itself: %s", self.run_id, self.names[i], exc.reason)
        self.emit("step_finished", i, status="skipped", attempt=self.attempts[i])
        for s in skipped:
            self.emit("step_finished", s, status="skipped")
        self.wake()

    def abort(self, i: int, exc: BaseException) -> None:
        """Step ``i`` was interrupted (``KeyboardInterrupt``...) *(locks)*: the
        run stops and ends cancelled; ``exc`` is raised again at its end."""
        self.interrupted(exc)
        self.cancelled.add(i)
        with self.lock:
            self._stop()  # first: what depends on step i ends cancelled, as every pending step does
            if self.k.state(i) == _RUNNING:
                self.k.fail(i)
        self.wake()

    def killed(self, att: Attempt) -> None:
        """A pool stopped ``att`` while the run was being cancelled: its step ends cancelled."""
        i = att.step
        self.cancelled.add(i)
        if self.tracers is not None:
            att.finished = self.clock()
            self.tracers.ended(att, False, None)
        with self.lock:
            if self.k.state(i) == _RUNNING:
                self.k.fail(i)

    def _release(self, i: int) -> None:
        """Drop the outputs of ``i``'s dependencies that nothing needs any more."""
        flags = self.flags
        outputs = self.outputs
        for p in self.k.release(i):
            if not flags[p] & _KEEP:
                outputs[p] = None

    # -- retries and work for pools --------------------------------------------------

    def next_due(self) -> "float | None":
        """Seconds until the first waiting retry is due (``<= 0``: due now), or
        ``None`` when none waits.  Takes nothing."""
        with self.lock:
            due = self.retries[0][0] - self.clock() if self.retries else None
            return due if self.limits is None else self.limits.sooner(due, self.maps.held)

    def pop_due(self) -> "Attempt | None":
        """The next attempt of a retry that is due now, taken from the queue
        *(locks)*; ``None`` when none is due."""
        limits = self.limits
        while True:
            with self.lock:
                readied = limits is not None and limits.tick() > 0
                heap = self.retries
                att = heapq.heappop(heap)[2] if heap and heap[0][0] <= self.clock() else None
                if att is not None and limits is not None and att.unit < 0:
                    readied, att = self.k.again(att.step) > 0, None  # taken again under its pools and rates
            if readied:
                self.wake()
            if att is None:
                return None
            again = self._again(att)
            if again is not None:
                return again

    def next_attempt(self) -> "Attempt | None":
        """Work for a pool *(locks)*: a due retry, a unit of a running map, or
        a ready step; ``None`` when there is none now."""
        k = self.k
        while not self.stopping:
            att = self.pop_due()
            if att is None:
                att = self.maps.next_unit()
            if att is not None:
                return att
            took = k.take(1) if k.ready else None
            if not took:  # (nothing is ready, or every ready step waits for room in a pool or a token)
                return None
            att = self.begin(took[0])
            if att is not None:
                return att
        return None

    # -- stopping -----------------------------------------------------------------

    def interrupted(self, exc: BaseException) -> None:
        """The run was interrupted by ``exc`` (Ctrl-C, a cancelled ``arun``
        task): it ends cancelled, and the first such exception is raised again
        at its end; the programs its command steps run are killed now."""
        if self.interrupt is None:
            self.interrupt = exc
        self.halt()

    def stop(self) -> "list[int]":
        """Start nothing new, unless the run already stopped *(locks)*: pending
        steps, waiting retries and unfinished maps end cancelled; return those steps."""
        with self.lock:
            return [] if self.stopping else self._stop()

    def _stop(self) -> "list[int]":
        """:meth:`stop`, the caller holding the lock (and whether or not the run stopped)."""
        self.stopping = True
        k = self.k
        cancelled = k.cancel()
        while self.retries:
            _, _, att, exc = heapq.heappop(self.retries)
            i = att.step
            if k.state(i) == _RUNNING:
                self.errors[i] = exc
                self.cancelled.add(i)
                k.fail(i)
                cancelled.append(i)
        cancelled.extend(self.maps.stop())
        return cancelled

    def check_cancel(self) -> bool:
        """Stop the run if its cancel event is set *(locks)*; whether it is cancelled."""
        if self.cancel is not None and not self.cancel_requested and self.cancel.is_set():
            self.cancel_requested = True
            log(20, "run %s: cancelled", self.run_id)
            self.halt()
            with self.lock:
                cancelled = self._stop()
            for c in cancelled:
                self.emit("step_finished", c, status="cancelled")
            self.wake()
        return self.cancel_requested

    def stall_error(self) -> RuntimeError:
        """What a loop raises instead of waiting when nothing can ever come."""
        k = self.k
        return RuntimeError(
            f"microdag: run {self.run_id} cannot go on: {k.remaining} steps remain, {k.ready} ready, "
            f"{k.running} running, {len(self.retries)} waiting to retry, and no worker has anything "
            "to wait for (an internal error)"
        )

    # -- the end ----------------------------------------------------------------------

    def close(self) -> None:
        """Drop what the run no longer needs once its result is made: the
        references back to this object (the maps', the threads' wake-up, the frames'),
        so that a run's outputs and map units are freed when it returns,
        not when the cycle collector next runs."""
        self.maps.r = None  # type: ignore[assignment]
        self.wake = _nothing
        self.frames = []  # (each holds add_step, bound to this object)
        self.outputs = []  # (a failed step's traceback may keep this object alive)

    def status(self) -> "RunStatus":
        return run_status(
            self.interrupt is not None or self.cancel_requested, bool(self.errors) and self.first_failure >= 0)
