"""One attempt, as a pool runs it: :class:`Attempt`, and the call on the worker's side.

An :class:`Attempt` is one try of a step, or of one unit of a map step (an
item, or a batch of items).  The runner's state machine makes one for each
try, a pool runs it (``invoke(fn, kwargs, attempt)`` in a worker process, an
executor's thread, an event loop) and hands it back with the outcome; the
state machine settles it.  It pickles, and carries what the worker needs to
answer ``microdag.context()``: the run's id, flow and folder, the step's name,
the item and the attempt number.
"""

from .._capture import captured_call
from .._context import Frame, current_frame, enter, leave
from .._errors import FlowError, Skip
from .._recipe import carried
from .._records import step_traceback

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["Attempt", "Captured", "Grown", "Remote", "awaited", "invoke", "local", "local_all"]


class Attempt:
    """One try of a step (``unit == -1``) or of unit ``unit`` of a map step.

    Attributes:
        step: the step's id in the plan.
        unit: the map unit's index, or -1 for a step.
        item: the map item index (a batch: its first item's), or ``None``.
        number: the attempt number, 1 for the first.
        name: the step's name.
        timeout: seconds the attempt may take, or ``None``.
        run_id, flow, run_dir: the run's id, flow name and folder (``None``:
            a temporary one).
        capture: whether the worker captures what the step prints and logs.
        started, finished: the runner's clock readings (``0.0`` until set).
        trace: the attempt's span when a run is traced (``microdag.otel``),
            made current around the call; else ``None``.
        key: the item's key, for a unit of a map step with ``key=``; else ``None``.
        waited: seconds it waited for room in its pools or a rate's token
            before it started (this process's; a worker's copy says 0.0).
        add: ``microdag.context().add`` for a pool that runs the attempt in
            the run's own process (``arun``'s); ``None`` elsewhere.  Never pickled.
        carry: without ``add``, whether the attempt's adds are carried back
            with its result (:class:`Grown`; processes, executors, Dask, workers) or
            refused (:func:`elsewhere`; an Argo pod).
    """

    __slots__ = ("step", "unit", "item", "number", "name", "timeout", "run_id", "flow", "run_dir",
                 "capture", "started", "finished", "trace", "key", "waited", "add", "carry")

    def __init__(
        self,
        step: int,
        unit: int,
        item: "int | None",
        number: int,
        name: str,
        timeout: "float | None",
        run_id: str,
        flow: str,
        run_dir: "str | None" = None,
        capture: bool = False,
        started: float = 0.0,
        finished: float = 0.0,
        trace: "Any" = None,
        key: "str | int | None" = None,
        carry: bool = False,
    ) -> None:
        self.step = step
        self.unit = unit
        self.item = item
        self.number = number
        self.name = name
        self.timeout = timeout
        self.run_id = run_id
        self.flow = flow
        self.run_dir = run_dir
        self.capture = capture
        self.started = started
        self.finished = finished
        self.trace = trace
        self.key = key
        self.waited = 0.0
        self.add: "Callable[..., str] | None" = None
        self.carry = carry

    def __reduce__(self) -> "Any":
        return (Attempt, (self.step, self.unit, self.item, self.number, self.name, self.timeout,
                          self.run_id, self.flow, self.run_dir, self.capture, self.started, self.finished, self.trace,
                          self.key, self.carry))

    def describe(self) -> str:
        """``step 'name'``, ``step 'name' item 3`` or ``step 'name' item 3 (key 'q-1')``:
        the attempt in messages."""
        if self.item is None:
            return f"step {self.name!r}"
        if self.key is None:
            return f"step {self.name!r} item {self.item}"
        return f"step {self.name!r} item {self.item} (key {self.key!r})"

    def timed_out(self, how: str) -> TimeoutError:
        """The error of this attempt past its timeout; ``how`` says what became of the call."""
        return TimeoutError(f"{self.describe()} timed out after {self.timeout:g} s ({how})")

    def __repr__(self) -> str:
        return f"<Attempt {self.describe()} #{self.number}>"


class Remote:
    """An output that stays where it was made (a Dask cluster): its future.

    The runner keeps it as the step's output; a pool that can pass it on
    (Dask) gives it to the steps that need it as they are; :func:`local`
    brings it here when this process needs the value."""

    __slots__ = ("future",)

    def __init__(self, future: "Any") -> None:
        self.future = future

    def fetch(self) -> "Any":
        """The value, brought to this process."""
        return self.future.result()

    def __repr__(self) -> str:
        return f"<output on the cluster: {getattr(self.future, 'key', self.future)}>"


def local(value: "Any") -> "Any":
    """``value``, fetched if it stayed on a cluster (so are the items of a list of them)."""
    if type(value) is Remote:
        return value.fetch()
    if type(value) is list and any(type(v) is Remote for v in value):
        return [v.fetch() if type(v) is Remote else v for v in value]
    return value


def local_all(values: "list[Any]") -> "list[Any]":
    """:func:`local` of each value, the outputs on a cluster fetched together
    (one round trip, not one each)."""
    remote = [v for v in values if type(v) is Remote]
    remote.extend(x for v in values if type(v) is list for x in v if type(x) is Remote)
    if not remote:
        return values
    futures = [r.future for r in remote]
    fetched = dict(zip(map(id, remote), futures[0].client.gather(futures)))
    return [fetched[id(v)] if type(v) is Remote
            else [fetched[id(x)] if type(x) is Remote else x for x in v] if type(v) is list and v
            else v for v in values]


class Captured:
    """A step's result with the text it printed and logged (from a worker)."""

    __slots__ = ("value", "text")

    def __init__(self, value: "Any", text: str) -> None:
        self.value = value
        self.text = text

    def __reduce__(self) -> "Any":
        return (Captured, (self.value, self.text))


class Grown:
    """A step's result with the steps it added in another process: their
    recipes (``_recipe.carried``), applied by the run as the attempt settles.
    A step that raised carries them as ``__microdag_added__``."""

    __slots__ = ("value", "added")

    def __init__(self, value: "Any", added: "list[dict[str, Any]]") -> None:
        self.value = value
        self.added = added

    def __reduce__(self) -> "Any":
        return (Grown, (self.value, self.added))


def awaited(result: "Any") -> "Any":
    """``result``, or what it returns when run to completion if it is a coroutine."""
    if hasattr(result, "__await__") and hasattr(result, "send"):
        import asyncio  # (import time: asyncio loads on first use)

        return asyncio.run(result)
    return result


def elsewhere(caller: str, name: str, *args: "Any") -> str:
    """``microdag.context().add`` in a step that runs outside its run's
    process and cannot carry its adds back (an Argo pod): refused."""
    raise FlowError(
        f"step {caller!r} cannot add step {name!r}: context().add() needs the run in the step's own process "
        "or one that carries the adds back to it (inline, threads, Flow.arun, processes, an executor, Dask, "
        "workers); this step runs where neither holds (an Argo pod)")


class _Carried:
    """``context().add`` in an attempt whose adds are carried back: the
    recipes so far (``_recipe.carried``: checked here, applied by the run)."""

    __slots__ = ("added",)

    def __init__(self) -> None:
        self.added: list[dict[str, Any]] = []

    def __call__(self, *args: "Any") -> str:
        self.added.append(carried(*args))
        return str(args[1])


def _carry(*args: "Any") -> str:
    """The first add of such an attempt: its frame collects them from now on
    (an attempt that adds nothing pays nothing for it)."""
    frame = current_frame()
    assert frame is not None
    collect = frame.add
    if type(collect) is not _Carried:  # (a StepContext made before holds this function)
        collect = frame.add = _Carried()
    return collect(*args)


def invoke(fn: "Callable[..., Any]", kwargs: "dict[str, Any]", attempt: "Attempt | None" = None) -> "Any":
    """Call ``fn(**kwargs)`` as ``attempt`` of its step: what a pool's worker runs.

    The step's ``microdag.context()`` answers from ``attempt``, and the
    attempt's span (a traced run) is current; with ``attempt.capture`` what
    it prints and logs comes back with its result as a :class:`Captured` (an
    exception carries it as ``__microdag_logs__``); with ``attempt.carry``
    the steps it added come back as a :class:`Grown` (an exception carries
    them as ``__microdag_added__``).  A module-level function, so that it
    pickles for process executors.
    """
    if attempt is None:
        return awaited(fn(**kwargs))
    add = attempt.add or (_carry if attempt.carry else elsewhere)
    frame = Frame(attempt.run_id, attempt.flow, (attempt.name,), None, attempt.run_dir, add=add)
    frame.current[:] = [0, attempt.item, attempt.number, attempt.key]
    token = enter(frame)
    trace = attempt.trace
    span = None if trace is None else trace.enter()
    try:
        if attempt.capture:
            result, text = captured_call(lambda: awaited(fn(**kwargs)), {})
            result = Captured(result, text)
        else:
            result = awaited(fn(**kwargs))
        return Grown(result, frame.add.added) if type(frame.add) is _Carried else result
    except Exception as exc:  # its traceback, as text: the frames do not travel back with it from a process
        if type(frame.add) is _Carried:
            try:
                exc.__microdag_added__ = frame.add.added  # type: ignore[attr-defined]
            except AttributeError:  # (an exception without a __dict__)
                pass
        if not isinstance(exc, Skip):
            try:
                exc.__microdag_traceback__ = step_traceback(exc)  # type: ignore[attr-defined]
            except AttributeError:  # (an exception without a __dict__)
                pass
        raise
    finally:
        if trace is not None:
            trace.leave(span)
        leave(token)
