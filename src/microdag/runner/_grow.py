"""Steps that add steps: ``microdag.context().add`` grows the run it is called in.

A running step adds a step to its own run; the step is checked at the call,
where a refusal is raised in the calling step (a ``FlowError`` naming both
steps), and joins the run at once: the run's plan and kernel grow by it, so
that it runs as any step does (the hot loop or the careful path, retries,
maps, caches, the store's records, hooks and tracing).

What grows, under the runner's lock (:func:`add`):

- the plan: the first add of a run gives the run a plan of its own
  (``_Plan.grown``: its per-step lists and graph copied, over the run's
  kernel), and every add appends one step to it (``_Plan.append``: the
  binding rules of ``Flow.add``, to every step of the run, added ones too);
  the flow's own plan stays the static flow's (``validate()``, later runs),
  and gets a fresh kernel if the run had leased its own;
- the runner's per-step lists (outputs, attempts, clock readings, keyword
  names and bound inputs, flags; the subset and kept outputs), then the
  kernel (``Kernel.grow``): a step whose dependencies succeeded is ready at
  once, one whose dependency failed or was skipped is skipped by its trigger
  rule at once;
- ``Runner.grown`` counts adds: the loops give the hot loop (``drive``) new
  lists when it changed (``drive`` returns when the kernel grew under it).

An added step may depend on any step of the run, but only existing steps:
existing steps never gain dependencies, so no add can close a cycle (the
kernel checks all the same).  It may read the output of a step that
finished only while the run holds that output: the run's kept outputs, or
one some unfinished step still needs; otherwise (and when no store holds it)
the add is refused.

Where: the calling step runs in this process (inline, threads, ``arun``'s
event loop), or in another (processes, executors, Dask), where its adds
are checked as far as that can be done without the run and carried back
with its result (``_recipe.carried``, ``pools._attempt.Grown``): the run
applies them when the attempt settles (:func:`apply`), before the step's
dependents are ready.  A step run by workers carries its adds the same way,
to the queue, which applies them as it records the step's outcome
(``stores/_queue_grow``, bound by ``runner/_worker_run``).  Argo pods
refuse ``add`` (``pools._attempt.elsewhere``).  An added step's ``uses=`` is mapped to the
run's pool ids (``_limits.uses_of``) and given to ``Kernel.grow``.
"""

from .._compat import sched
from .._errors import FlowError
from .._recipe import checked_options, made_again, name_of, recipe
from .._steps import TRIGGERS, _Options, _Step
from ._call import bind_params, input_missing
from ._limits import uses_of
from ._recorder import STORED

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

    from .._plan import _Plan
    from ._state import Runner

__all__ = ["Growth", "add", "apply", "recreate"]

_FINISHED = (sched.SUCCEEDED, sched.FAILED, sched.SKIPPED, sched.CANCELLED)


class Growth:
    """What a run knows of its added steps (``Runner.growth``, made by the first add).

    ``by``: added step id -> the name of the step that added it; ``keep``:
    whether added steps' outputs are kept and returned (a run asked for
    targets returns only theirs).
    """

    __slots__ = ("by", "keep", "made")

    def __init__(self, keep: bool) -> None:
        self.by: dict[int, str] = {}
        self.keep = keep
        #: added step id -> what it was made of (``fn, deps, binding``, the checked options).
        self.made: dict[int, tuple[Any, ...]] = {}


def add(
    r: "Runner", who: str, name: str, fn: "Callable[..., Any]", depends_on: "Iterable[str]",
    inputs: "Mapping[str, str] | None", options: "dict[str, Any]",
) -> str:
    """Add step ``name`` to ``r``'s run, asked by step ``who`` (see the module
    docs); its name.

    Raises:
        FlowError: the step is refused (every problem, naming both steps).
    """
    try:
        i, skipped = _add(r, who, name, fn, depends_on, inputs, options)
    except FlowError as exc:
        raise FlowError(*[f"{problem} (added by step {who!r} of run {r.run_id})"
                          for problem in exc.problems]) from None
    r.emit("step_added", i)
    for s in skipped:
        r.emit("step_finished", s, status="skipped")
    r.wake()
    return name


def _add(
    r: "Runner", who: str, name: str, fn: "Callable[..., Any]", depends_on: "Iterable[str]",
    inputs: "Mapping[str, str] | None", options: "dict[str, Any]", record: bool = True,
) -> "tuple[int, list[int]]":
    """:func:`add`: the new step's id and the steps skipped at once
    (``record``: kept in the run's store, when it has one)."""
    if not isinstance(name, str) or not name:
        raise FlowError(f"a step name must be a non-empty string, not {name!r}")
    deps, binding = _Step.check(name, fn, depends_on, inputs)
    deps = tuple(dict.fromkeys(deps))
    opts = checked_options(name, options)
    made = (fn, deps, binding, tuple(getattr(opts, field) for field in _Options.__slots__))
    saved = None if not record or not r.recorder.durable else recipe(
        name, who, (fn, deps, binding, options), r.recorder.in_memory)
    with r.lock:
        plan = r.plan if r.growth is not None else _own_plan(r)
        growth = r.growth
        assert growth is not None
        again = plan.graph._index.get(name)
        if again is not None and growth.by.get(again) == who and _same(growth.made[again], made):
            return again, []  # added again (a retry, a resumed run): the step it added
        if r.stopping:
            raise FlowError(f"step {name!r} cannot be added: the run is stopping")
        bound = plan.bind(name, fn, deps, binding, opts)
        _, src, dep_kwnames, argdeps, input_params, is_async = bound
        flag = _flag(r, name, argdeps, opts, is_async, growth.keep, record)
        names, consts, missing = bind_params(dep_kwnames, input_params, r.given)
        if missing:
            raise FlowError(*[input_missing(name, p, n) for p, n in missing])
        uses = uses_of(r.limits, name, opts) if opts.uses else ()
        # Nothing is refused from here on.
        i = plan.append(bound)
        r.outputs.append(None)
        r.attempts.append(0)
        r.started.append(0.0)
        r.finished.append(0.0)
        r.kwnames.append(names)
        r.consts.append(consts)
        r.flags = r.flags + bytes((flag,))
        if r.subset is not None:
            r.subset.append(i)
        if r.keep is not None and growth.keep:
            r.keep.append(i)
        r.n += 1
        growth.by[i] = who
        growth.made[i] = made
        if r.tracers is not None:
            r.tracers.added[i] = who
        if saved is not None:
            saved["after"] = [r.names[d] for d in plan.graph._deps[i]]  # (as bound: what reports draw)
            if saved["fn"] is None:
                _LOCAL[(r.run_id, name)] = fn
            r.recorder.step_added(saved)
        triggers = [TRIGGERS.index(opts.trigger)] if plan.has_triggers else None
        apart: tuple[int, ...] = ()
        if uses and opts.map is not None:  # (each unit attempt holds the units)
            assert r.limits is not None
            r.limits.mapped = r.limits.mapped | {i}
            apart = (i,)
        skipped = r.k.grow(1, src, [i] * len(src), triggers=triggers, uses=[uses] if uses else None, apart=apart)
        r.grown += 1
    return i, skipped


def _own_plan(r: "Runner") -> "_Plan":
    """The run's first add: a plan of its own, named steps in every frame;
    the flow's plan gets a fresh kernel if this run had leased its own."""
    static = r.plan
    plan = r.plan = static.grown(r.k)
    if r.owned:
        static.renew_kernel()
        static.busy = False
        r.owned = False
    names = r.names = plan.graph.names
    r.caller.names = names
    r.caller.options = plan.options
    r.recorder.grown(plan)
    for frame in r.frames:
        frame.names = names
    targets = r.keep is not None and r.keep is not static.sinks()
    if r.keep is not None and not targets:
        r.keep = list(r.keep)
    r.growth = Growth(not targets)
    return plan


def _flag(r: "Runner", name: str, argdeps: "tuple[int, ...]", opts: _Options, is_async: bool, keep: bool,
          running: bool) -> int:
    """The new step's flags for ``drive``; in a ``running`` run (not one
    being resumed, whose kernel is reset after), refuses a dependency whose
    output the run no longer holds (and no store does)."""
    k = r.k
    flag = sched.KEEP if keep else 0
    if r.hooks or r.tracers is not None or r.debug or opts.timeout is not None or opts.map is not None \
            or opts.cache or is_async:
        flag |= sched.SLOW
    for d in argdeps:
        if r.outputs[d] is STORED:
            flag |= sched.SLOW  # (the careful path reads it from the store)
        if not running or k.state(d) != sched.SUCCEEDED or r.flags[d] & sched.KEEP:
            continue
        if any(k.state(s) not in _FINISHED for s in k.successors(d)):
            continue  # a step that has not finished needs it: still held
        if r.recorder.durable:
            r.outputs[d] = STORED
            flag |= sched.SLOW
            continue
        raise FlowError(
            f"step {name!r} needs the output of step {r.names[d]!r}, which finished and was let go, "
            "as nothing else needed it (keep_outputs=True, or a store, keeps it)")
    return flag


def _same(a: "tuple[Any, ...]", b: "tuple[Any, ...]") -> bool:
    """Whether two adds made the same step (the function itself, or one of the same name)."""
    return (a[0] is b[0] or name_of(a[0]) == name_of(b[0]) is not None) and a[1:] == b[1:]


# -- records and resume ---------------------------------------------------------------

#: Functions of added steps kept by name for runs in a memory store (which
#: keeps no code): ``(run id, step) -> fn``, read by a resume in this process.
_LOCAL: "dict[tuple[str, str], Callable[..., Any]]" = {}


def recreate(r: "Runner", recipes: "list[dict[str, Any]]") -> None:
    """A resumed run makes again the steps its steps added (:func:`recipe`), in order.

    Raises:
        FlowError: a function cannot be found again, or a step no longer fits.
    """
    for made in recipes:
        name, who, spec = made["step"], made["by"], made["fn"]
        try:
            fn, options = made_again(made)
            if fn is None:
                fn = _LOCAL[(r.run_id, name)]
        except (ImportError, AttributeError, KeyError) as exc:
            raise FlowError(f"run {r.run_id}: step {name!r}, added by step {who!r}, cannot be made again: "
                            f"its function {spec or '(kept in memory by an ended process)'} is not found ({exc})") from None
        try:
            _add(r, who, name, fn, made["depends_on"], made["inputs"], options, record=False)
        except FlowError as exc:
            raise FlowError(*[f"run {r.run_id}: step {name!r}, added by step {who!r}, cannot be made again: {p}"
                              for p in exc.problems]) from None


def apply(r: "Runner", recipes: "list[dict[str, Any]]") -> "FlowError | None":
    """The adds a step made in another process (``_recipe.carried``), applied
    in order as its attempt settles, before its dependents are ready; the
    first one refused (with the checks that need the run: a name taken, an
    unknown dependency, a parameter bound to nothing, a pool) ends them, as
    a ``FlowError`` that fails the step (those before it stay added)."""
    for made in recipes:
        name, who = made["step"], made["by"]
        try:
            fn, options = made_again(made)
        except (ImportError, AttributeError) as exc:
            return FlowError(f"step {name!r}, added by step {who!r} in another process, cannot be made in the "
                             f"run's process: its function {made['fn']} is not found here ({exc})")
        try:
            add(r, who, name, fn, made["depends_on"], made["inputs"], options)
        except FlowError as exc:
            return exc
    return None
