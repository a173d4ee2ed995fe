"""What a worker knows of a run it works on (``workers.Worker``): its plan and steps' calls.

A run whose steps add steps (``microdag.context().add`` in a step a worker
runs) grows on the queue (``stores/_queue_grow``): its plan document lists
the added steps' recipes.  A worker meeting a step it does not know grows its
copy of the run's plan to the document (:meth:`RunOf.grow_to`: each recipe's
function imported by ``module:qualname`` and bound as ``_grow`` binds an
add, ``_Plan.bind`` and ``_Plan.append``), and the worker that ran the
adding step binds its adds against the whole run as the queue applies them
(:meth:`RunOf.bind_added`: the checks that need the run).
"""

from .._errors import FlowError
from .._plan import code_digest
from .._recipe import checked_options, made_again
from .._steps import TRIGGERS, _Step
from ._call import Caller, bind_inputs, bind_params, input_missing, kwargs, map_call, units

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .._plan import _Plan
    from .._records import RunInfo
    from .._typed import Converter

__all__ = ["RunOf", "added_document"]


class RunOf:
    """What a worker knows of one run it works on: its plan (the flow's, or
    grown by the steps the run's steps added: :meth:`grow_to`), its steps'
    calls, the steps it leaves alone."""

    __slots__ = ("plan", "static", "names", "caller", "inputs", "bound", "foreign", "maps", "outs", "units",
                 "recorded", "codec")

    def __init__(self, plan: "_Plan", info: "RunInfo", run_dir: "str | None", codec: str) -> None:
        self.plan = self.static = plan
        self.codec = codec
        self.outs, self.units = plan.typed_outputs(codec)  # (the converters of its steps' and units' outputs)
        self.names = plan.graph.names
        self.caller = Caller(plan, info.id, info.flow, run_dir, capture=True)
        self.inputs = plan.checked_inputs(info.inputs, [])  # (their problems were said when the run was submitted)
        self.bound: dict[int, tuple[tuple[str, ...], tuple[Any, ...]]] = {}
        #: Map step -> its call's names and values, the position mapped over, its units.
        self.maps: dict[int, tuple[tuple[str, ...], list[Any], int, list[Any]]] = {}
        mine = plan.code() or {}
        recorded = self.recorded = info.code or {}
        #: Steps whose code differs from the run's: left alone.
        self.foreign = {i for i, name in enumerate(self.names)
                        if name in recorded and name in mine and recorded[name] != mine[name]}

    def _bind(self, i: int) -> "tuple[tuple[str, ...], tuple[Any, ...]]":
        bound = self.bound.get(i)
        if bound is None:
            names, consts, _ = bind_inputs(self.plan, i, self.inputs)
            bound = self.bound[i] = (names, consts)
        return bound

    def kwargs(self, i: int, values: "list[Any]") -> "dict[str, Any]":
        """Step ``i``'s arguments over its dependencies' outputs ``values``."""
        names, consts = self._bind(i)
        return kwargs(names, list(values), consts)

    def expand(self, i: int, values: "list[Any]") -> "tuple[tuple[str, ...], list[Any], int, list[Any]]":
        """Map step ``i`` over its dependencies' outputs ``values`` (once):
        its call's names and values, the position mapped over, its units.

        Raises:
            TypeError: the value it maps over is not iterable.
        """
        got = self.maps.get(i)
        if got is None:
            names, consts = self._bind(i)
            args = [*values, *consts]
            names, pos = map_call(self.plan, i, names, args)
            step = self.plan.steps[i]
            assert step.map is not None
            got = self.maps[i] = (names, args, pos, units(str(self.names[i]), step.map, args[pos], step.batch_size))
        return got

    # -- steps the run's steps added ------------------------------------------------------

    def grow_to(self, doc: "dict[str, Any]") -> None:
        """Grow this run's plan by the added steps of the queue's plan document
        ``doc`` it does not have yet (``doc["added"]``: their recipes, in
        order), each made from its recipe (``module:qualname`` imported) and
        bound as ``_grow`` binds an add; one whose function cannot be found
        here, or whose code differs from the run's, is left alone (``foreign``)."""
        names = doc["names"]
        if self.names[:len(names)] != names[:len(self.names)]:  # (a grow this worker made was not kept)
            self.plan = self.static
            self.names = self.plan.graph.names
            self.outs, self.units = self.plan.typed_outputs(self.codec)
        base = doc.get("base", len(self.static.steps))
        for made in doc.get("added", [])[len(self.names) - base:]:
            self._append(made)

    def typed_outputs(self, recipes: "list[dict[str, Any]]") -> "dict[str, Converter]":
        """The converters of the outputs of the run's steps, those its steps
        added too (``recipes``, as the store recorded them): how its ``Run``
        reads them back."""
        names = [*map(str, self.static.graph.names), *(made["step"] for made in recipes)]
        self.grow_to({"names": names, "base": len(self.static.steps), "added": recipes})
        return self.outs

    def _append(self, made: "dict[str, Any]") -> None:
        """Step ``made`` (a recipe) joins this run's plan (a stand-in left alone if it cannot be made)."""
        self._own()
        name = made["step"]
        try:
            fn, options = made_again(made)
        except (ImportError, AttributeError):
            fn, options = _missing, {}
        bound = _bound(self.plan, name, fn, made, options)
        if bound is None:  # (it bound when it was added: here, its function differs)
            bound = _bound(self.plan, name, _missing, {"depends_on": made["after"], "inputs": None}, {})
            fn = _missing
        assert bound is not None
        i = self.plan.append(bound)
        digest = self.recorded.get(name)
        if fn is _missing or (digest is not None and code_digest(fn) != digest):
            self.foreign.add(i)

    def _own(self) -> None:
        """A plan of this run's own, that added steps grow (the flow's stays the static flow's)."""
        if self.plan is self.static:
            self.plan = self.static.grown(self.static.graph.kernel)
            self.names = self.caller.names = self.plan.graph.names
            self.outs, self.units = self.plan.typed_outputs(self.codec)  # (which its adds extend)
            self.caller.options = self.plan.options

    def bind_added(self, doc: "dict[str, Any]", made: "dict[str, Any]") -> "dict[str, Any] | None":
        """A recipe a step of this run added (on this worker), bound to the run's
        whole plan (``doc``, the queue's): the plan document's entry for it
        (``_queue_grow``), or ``None`` when the run has it already.

        Raises:
            FlowError: the step is refused (a name taken, an unknown
                dependency, a parameter bound to nothing, an option, a pool).
        """
        self.grow_to(doc)
        self._own()
        name, who = made["step"], made["by"]
        index = self.plan.graph._index
        if name in index:
            i = index[name]
            base = doc.get("base", len(self.static.steps))
            if i >= base and all(doc["added"][i - base].get(k) == made[k] for k in made):
                return None
        try:
            try:
                fn, options = made_again(made)
            except (ImportError, AttributeError) as exc:
                raise FlowError(f"step {name!r}: its function {made['fn']} is not found ({exc})") from None
            deps, binding = _Step.check(name, fn, made["depends_on"], made["inputs"])
            opts = checked_options(name, options)
            uses = _uses(name, opts.uses, doc)
            bound = self.plan.bind(name, fn, tuple(dict.fromkeys(deps)), binding, opts)
            missing = bind_params(bound[2], bound[4], self.inputs)[2]
            if missing:
                raise FlowError(*[input_missing(name, p, n) for p, n in missing])
        except FlowError as exc:
            raise FlowError(*[f"{problem} (added by step {who!r} of run {self.caller.run_id})"
                              for problem in exc.problems]) from None
        ids = bound[1]
        self.plan.append(bound)
        return made | {"after": [self.names[d] for d in ids], "trigger": TRIGGERS.index(opts.trigger),
                       "timeout": opts.timeout, "retries": opts.retries, "uses": uses, "map": opts.map is not None}


def added_document(static: "_Plan", grown: "_Plan", recipes: "list[dict[str, Any]]") -> "dict[str, Any]":
    """What the queue's plan document of a resumed run keeps of the steps its
    steps added (``recipes``, as recorded; ``grown``: the run's plan, made
    again by ``_grow.recreate``): ``base``, the static flow's size, and
    ``added``, their entries (``_queue_grow``)."""
    base = len(static.steps)
    return {"base": base, "added": [made | {"trigger": TRIGGERS.index(grown.steps[base + n].trigger)}
                                    for n, made in enumerate(recipes)]}


def _uses(name: str, uses: "tuple[tuple[str, int], ...]", doc: "dict[str, Any]") -> "list[list[Any]] | None":
    """An added step's ``uses=`` as the queue keeps it (``_limits.document``),
    checked against the run's pools and rates as ``_limits.uses_of`` checks them.

    Raises:
        FlowError: a name that is no pool or rate of the run, or more units than it holds.
    """
    if not uses:
        return None
    sizes = {**(doc.get("pools") or {}), **{rate: burst for rate, (_, burst) in (doc.get("rates") or {}).items()}}
    problems = [f"step {name!r} uses {pool!r}, which is no pool or rate of this run "
                f"(pools and rates: {', '.join(map(repr, sorted(sizes))) or 'none'})" if pool not in sizes else
                f"step {name!r} uses {units} units of {pool!r}, which holds {sizes[pool]}"
                for pool, units in uses if pool not in sizes or units > sizes[pool]]
    if problems:
        raise FlowError(*problems)
    return [list(pair) for pair in uses]


def _missing(**kwargs: "Any") -> "Any":
    """The function of an added step this worker cannot make (left alone: never called)."""
    raise RuntimeError("this step's function is not found on this worker")


def _bound(plan: "_Plan", name: str, fn: "Any", made: "dict[str, Any]", options: "dict[str, Any]") -> "Any":
    """``plan.bind`` of a recipe, or ``None`` if it does not bind."""
    try:
        deps, binding = _Step.check(name, fn, made["depends_on"], made["inputs"])
        return plan.bind(name, fn, tuple(dict.fromkeys(deps)), binding, checked_options(name, options))
    except FlowError:
        return None
