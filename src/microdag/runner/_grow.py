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
event loop).  A step that runs in another process (processes, executors,
Dask, workers) has no run to grow: ``add`` is refused there
(``pools._attempt.elsewhere``).
"""

from .._compat import sched
from .._errors import FlowError
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

__all__ = ["Growth", "add", "recipe", "recreate"]

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
    opts = _options(name, options)
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


def _options(name: str, options: "dict[str, Any]") -> _Options:
    """An added step's options, checked as ``Flow.add`` checks them."""
    try:
        opts = _Options(f"step {name!r}", **options)
    except TypeError:
        known = _Options.__slots__
        raise FlowError(*[f"step {name!r}: unknown option {key!r}" for key in options if key not in known]) from None
    if opts.priority is not None:
        raise FlowError(f"step {name!r}: priority= ranks a flow's steps before a run; an added step takes none")
    return opts


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
    r.recorder.names = names
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
    return (a[0] is b[0] or _name_of(a[0]) == _name_of(b[0]) is not None) and a[1:] == b[1:]


# -- records and resume ---------------------------------------------------------------

#: Functions of added steps kept by name for runs in a memory store (which
#: keeps no code): ``(run id, step) -> fn``, read by a resume in this process.
_LOCAL: "dict[tuple[str, str], Callable[..., Any]]" = {}


def _name_of(obj: "Any") -> "str | None":
    """``module:qualname`` of ``obj`` if importing it finds ``obj`` again, else ``None``."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    try:
        return f"{module}:{qualname}" if _find(f"{module}:{qualname}") is obj else None
    except Exception:  # (not importable as named)
        return None


def _find(spec: str) -> "Any":
    """The object ``module:qualname`` names.

    Raises:
        ImportError, AttributeError: it names nothing.
    """
    import importlib  # (only for steps that add steps, with a store)

    module, _, qualname = spec.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def recipe(name: str, who: str, made: "tuple[Any, ...]", in_memory: bool) -> "dict[str, Any]":
    """How a resume makes added step ``name`` again: a JSON-able dict of the
    step that added it, its function as ``module:qualname``, its
    dependencies, inputs and options (exception classes by name).

    Raises:
        FlowError: the function (or an option) cannot be named, and the store
            keeps the run beyond this process.
    """
    import json  # (only for steps that add steps, with a store)

    fn, deps, binding, options = made
    problems = []
    spec = _name_of(fn)
    if spec is None and not in_memory:
        problems.append(
            f"step {name!r}: its function {getattr(fn, '__qualname__', fn)!r} cannot be found again by "
            "name (a lambda, a closure or a function not at a module's top level), which a resumed run "
            "needs: add a function defined at a module's top level"
        )
    kept = dict(options)
    if "retry_on" in kept:
        on = kept["retry_on"]
        classes = on if isinstance(on, tuple) else (on,)
        named = [_name_of(c) for c in classes]
        if None in named:
            problems.append(f"step {name!r}: retry_on names an exception class that cannot be found again by name")
        kept["retry_on"] = named
    try:
        json.dumps(kept)
    except (TypeError, ValueError):
        problems.append(f"step {name!r}: its options cannot be kept as JSON ({kept!r})")
    if problems:
        raise FlowError(*problems)
    return {"step": name, "by": who, "fn": spec, "depends_on": list(deps), "inputs": dict(binding) or None,
            "options": kept}


def recreate(r: "Runner", recipes: "list[dict[str, Any]]") -> None:
    """A resumed run makes again the steps its steps added (:func:`recipe`), in order.

    Raises:
        FlowError: a function cannot be found again, or a step no longer fits.
    """
    for made in recipes:
        name, who, spec = made["step"], made["by"], made["fn"]
        try:
            fn = _LOCAL[(r.run_id, name)] if spec is None else _find(spec)
        except (ImportError, AttributeError, KeyError) as exc:
            raise FlowError(f"run {r.run_id}: step {name!r}, added by step {who!r}, cannot be made again: "
                            f"its function {spec or '(kept in memory by an ended process)'} is not found ({exc})") from None
        options = dict(made["options"])
        if "retry_on" in options:
            options["retry_on"] = tuple(_find(c) for c in options["retry_on"])
        try:
            _add(r, who, name, fn, made["depends_on"], made["inputs"], options, record=False)
        except FlowError as exc:
            raise FlowError(*[f"run {r.run_id}: step {name!r}, added by step {who!r}, cannot be made again: {p}"
                              for p in exc.problems]) from None
