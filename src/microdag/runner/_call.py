"""Calling a step once: its arguments, its attempt, a map's units, a batch's check, a timeout.

Every way microdag calls a step's function goes through here: the runner's
state machine (``_state``, and ``_maps`` for map units), Dask's submit-ahead
path (``_ahead``), the careful path of the inline and threads loops
(``_local``), :meth:`Flow.run_step`, an Argo pod (``_pod``) and the
flow-file command steps (``_command``: :func:`kill_limit`).  So a step cannot be
called one way in a pod and another way in a local run.

The rules, one each:

- **arguments** (:func:`bind_inputs`, :func:`kwargs`, :func:`arguments`): a
  step is called with the outputs of the steps it takes, under the
  parameter names the plan gives them, then the flow inputs it takes that
  were given (checked and turned into their classes first:
  ``_Plan.checked_inputs``); an input not given keeps the function's own
  default (a pod, which has no function default to fall back on when it
  expands a map, asks for the defaults), and a required one not given is a
  problem.
- **attempts** (:class:`Caller`): every :class:`Attempt` of a run is made by
  the run's caller, which knows its id, flow, folder, whether attempts
  capture what they print, and each step's timeout.
- **map units** (:func:`map_call`, :func:`units`, :func:`unit_kwargs`,
  :func:`batch_error`, :func:`gather`): the value a map step maps over is
  expanded into its items, or batches of ``batch_size`` items; a unit is
  called with that value replaced by the unit; a batch must return one
  result per item; the step's output is its units' results in order (a
  batched map's flattened).
- **timeouts** (:func:`call_with_timeout`, :func:`kill_limit`): a call that
  cannot be stopped runs in a daemon thread and is abandoned at its
  deadline (a result that comes after it counts as a timeout too); a
  program a step runs is killed a little before the step's deadline.  How a
  timeout is worded is the attempt's (:meth:`Attempt.timed_out`), which the
  pools share.
"""

import contextvars
import time

from .._binding import NO_DEFAULT
from .._context import enter
from .._errors import FlowError
from ..pools._attempt import Attempt, invoke

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    from .._context import Frame
    from .._plan import _Plan

__all__ = ["Caller", "arguments", "batch_error", "bind_inputs", "bind_params", "input_missing", "call_with_timeout", "invoke_timed", "gather", "kill_limit",
           "kwargs", "map_call", "missing_input", "unit_kwargs", "units"]

#: Seconds (at most a tenth of the timeout) a program's kill comes before its step's deadline.
KILL_GRACE = 0.5


# -- arguments ---------------------------------------------------------------------------


def bind_inputs(
    plan: "_Plan", i: int, given: "Mapping[str, Any]", defaults: bool = False
) -> "tuple[tuple[str, ...], tuple[Any, ...], list[tuple[str, str]]]":
    """Step ``i``'s keyword names (its dependencies' parameters, then those of
    the flow inputs it is given), the values of those inputs, and the
    ``(parameter, input)`` pairs of the required inputs not given.  With
    ``defaults``, an input not given is passed its default."""
    return bind_params(plan.dep_kwnames[i], plan.input_params[i], given, defaults)


def bind_params(
    dep_kwnames: "Sequence[str]", input_params: "Sequence[tuple[str, str, Any]]", given: "Mapping[str, Any]",
    defaults: bool = False,
) -> "tuple[tuple[str, ...], tuple[Any, ...], list[tuple[str, str]]]":
    """:func:`bind_inputs` of a step's keyword names ``dep_kwnames`` and
    ``input_params`` (``(param, input, default)``, as a plan keeps them)."""
    names = list(dep_kwnames)
    values = []
    missing = []
    for param, input_name, default in input_params:
        if input_name in given:
            names.append(param)
            values.append(given[input_name])
        elif default is NO_DEFAULT:
            missing.append((param, input_name))
        elif defaults:
            names.append(param)
            values.append(default)
    return tuple(names), tuple(values), missing


def missing_input(plan: "_Plan", i: int, param: str, input_name: str) -> str:
    """The problem of step ``i``'s required input ``input_name`` not given."""
    return input_missing(plan.graph.names[i], param, input_name)


def input_missing(step: str, param: str, input_name: str) -> str:
    """The problem of step ``step``'s required input ``input_name`` not given."""
    return f"step {step!r} needs input {input_name!r} (parameter {param!r}), which was not given"


def kwargs(names: "Sequence[str]", deps: "list[Any]", consts: "Sequence[Any]") -> "dict[str, Any]":
    """The keyword arguments of a call: ``names`` over the dependencies'
    outputs ``deps`` (in the plan's order; extended in place), then the
    inputs' values ``consts``."""
    deps.extend(consts)
    return dict(zip(names, deps))


def arguments(plan: "_Plan", i: int, given: "Mapping[str, Any]") -> "dict[str, Any]":
    """The keyword arguments of step ``i`` called alone, from ``given``: the
    outputs of the steps it takes, by step name, and the flow inputs it
    takes, by input name (those not given keep their defaults).

    Raises:
        FlowError: a value it needs is not given (each one said).
    """
    names = plan.graph.names
    problems = []
    deps = []
    for dep in plan.argdeps[i]:
        key = names[dep]
        if key in given:
            deps.append(given[key])
        else:
            problems.append(f"step {names[i]!r} needs the output of step {key!r}, which was not given")
    kwnames, consts, missing = bind_inputs(plan, i, plan.checked_inputs(given, problems))
    problems.extend(missing_input(plan, i, param, name) for param, name in missing)
    if problems:
        raise FlowError(*problems)
    return kwargs(kwnames, deps, consts)


# -- map units ----------------------------------------------------------------------------


def map_call(
    plan: "_Plan", i: int, names: "tuple[str, ...]", values: "list[Any]"
) -> "tuple[tuple[str, ...], int]":
    """Map step ``i`` called with ``names`` over ``values``: the names (the
    parameter mapped over added with its default, when it is an optional
    flow input left out; its value appended to ``values``) and the position
    of the parameter mapped over."""
    param = plan.steps[i].map
    assert param is not None
    if param not in names:
        default = next(d for p, _, d in plan.input_params[i] if p == param)
        names = names + (param,)
        values.append(default)
    return names, names.index(param)


def units(name: str, param: str, value: "Any", size: "int | None") -> "list[Any]":
    """The units of map step ``name`` over parameter ``param``'s ``value``:
    its items, or batches of ``size`` items.

    Raises:
        TypeError: ``value`` is not iterable.
    """
    try:
        items = list(value)
    except TypeError:
        raise TypeError(
            f"step {name!r} maps over parameter {param!r}, but its value is not iterable ({type(value).__name__})"
        ) from None
    return items if size is None else [items[j : j + size] for j in range(0, len(items), size)]


def unit_kwargs(names: "Sequence[str]", values: "Sequence[Any]", pos: int, unit: "Any") -> "dict[str, Any]":
    """The keyword arguments of a map unit: ``values`` with the one mapped
    over (at ``pos``) replaced by ``unit``."""
    out = dict(zip(names, values))
    out[names[pos]] = unit
    return out


def batch_error(name: str, first: int, want: int, got: "Any") -> "ValueError | None":
    """The error of a batch of ``want`` items from item ``first`` of map step
    ``name`` that returned ``got``, or ``None`` when it returned one result per item."""
    if hasattr(got, "__len__") and len(got) == want:
        return None
    what = f"{len(got)} results" if hasattr(got, "__len__") else f"a {type(got).__name__}"
    return ValueError(
        f"step {name!r}: the batch of items {first} to {first + want - 1} returned {what} for its "
        f"{want} items (a batch must return one result per item)"
    )


def gather(results: "list[Any]", batched: bool) -> "list[Any]":
    """A map step's output from its units' ``results`` in unit order: the
    results, or a batched map's results flattened (one per item)."""
    return [result for batch in results for result in batch] if batched else results


# -- attempts -----------------------------------------------------------------------------


class Caller:
    """Makes the attempts of one run (see the module docs)."""

    __slots__ = ("names", "options", "run_id", "flow", "run_dir", "capture")

    def __init__(
        self, plan: "_Plan", run_id: str, flow: str, run_dir: "str | None" = None, capture: bool = False
    ) -> None:
        self.names = plan.graph.names
        self.options = plan.options  # (each step's; its timeout goes into its attempts)
        self.run_id = run_id
        self.flow = flow
        self.run_dir = run_dir
        self.capture = capture

    def attempt(
        self, i: int, number: int, started: float = 0.0, finished: float = 0.0, unit: int = -1,
        item: "int | None" = None, key: "str | int | None" = None,
    ) -> Attempt:
        """Attempt ``number`` of step ``i`` (or of its map unit ``unit``, whose
        first item is ``item``, keyed ``key``), with the runner's clock readings."""
        return Attempt(i, unit, item, number, self.names[i], self.options[i].timeout, self.run_id, self.flow,
                       self.run_dir, self.capture, started, finished, None, key)


# -- timeouts -----------------------------------------------------------------------------


def invoke_timed(fn: "Callable[..., Any]", kwargs: "dict[str, Any]", att: Attempt) -> "Any":
    """``pools._attempt.invoke`` of ``fn(**kwargs)`` as attempt ``att``, under
    ``att.timeout`` when it has one (:func:`call_with_timeout`): how a worker
    and an Argo pod call a step."""
    if att.timeout is None:
        return invoke(fn, kwargs, att)
    return call_with_timeout(invoke, {"fn": fn, "kwargs": kwargs, "attempt": att}, att)


def call_with_timeout(
    fn: "Callable[..., Any]", kwargs: "dict[str, Any]", att: Attempt, frame: "Frame | None" = None
) -> "Any":
    """Call ``fn(**kwargs)`` in a daemon thread (in ``frame``, when given);
    raise ``TimeoutError`` once ``att.timeout`` seconds have passed without a
    result, or when the result came after that: the call is abandoned
    (Python cannot stop a thread) and its result, if it ever comes, dropped."""
    import threading  # (import time: threading loads on first use)

    timeout = att.timeout
    assert timeout is not None
    box: list[tuple[bool, Any, float]] = []
    finished = threading.Event()
    context = contextvars.copy_context()  # the caller's capture buffer goes along

    def body() -> None:
        if frame is not None:
            enter(frame)
        try:
            result = (True, fn(**kwargs))
        except BaseException as exc:  # handed to the waiting thread
            result = (False, exc)
        box.append((*result, time.monotonic()))
        finished.set()

    deadline = time.monotonic() + timeout
    thread = threading.Thread(target=context.run, args=(body,), name=f"microdag {att.describe()}", daemon=True)
    thread.start()
    if not finished.wait(timeout) or box[0][2] > deadline:
        raise att.timed_out("the call was abandoned")
    ok, value, _ = box[0]
    if ok:
        return value
    raise value


def kill_limit(timeout: "float | None") -> "float | None":
    """When a program a step runs is killed: a little before the step's
    ``timeout`` (so that the attempt ends with the program gone), or never."""
    if timeout is None:
        return None
    return timeout - min(KILL_GRACE, timeout / 10)
