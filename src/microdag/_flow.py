"""Flows: the public facade over a compiled plan and the runner.

A :class:`Flow` keeps its steps in definition order (each checked as it is
added, by :mod:`microdag._build`) and compiles them into a ``_plan._Plan``
when first needed (see :mod:`microdag._plan` for the checks and
:mod:`microdag._binding` for the binding rules); :meth:`Flow.run` and
:meth:`Flow.arun` (its base class's, in :mod:`microdag._flowrun`) hand
the plan to :mod:`microdag.runner`, which never imports either module.
"""

from ._build import _checked, _declared, _many
from ._compat import sched
from ._errors import FlowError
from ._flowrun import _Runs
from ._graph import Graph
from ._plan import _Plan
from ._steps import _NO_BINDING, _RETRY_ON, TRIGGERS, _Options, _Step, _Steps

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any, TypeVar, overload

    from ._types import Trigger

    F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["Flow", "TRIGGERS", "_Step"]


class Flow(_Runs):
    """A named DAG of Python steps.

    Steps are plain functions; a parameter named like another step receives
    that step's output (see the binding rules in the module docs of
    ``docs/api.md``).  Build with the :meth:`step` decorator or :meth:`add`,
    then :meth:`run`.

    Args:
        name: the flow's name (used in run records, logs and errors).
    """

    __slots__ = ("_name", "_steps", "_index", "_lent", "_plan", "_source", "_declared", "_declared_types", "_shared",
                 "_given", "_pools", "_rates", "__weakref__")

    def __init__(
        self, name: str, *, inputs: "Mapping[str, Mapping[str, Any]] | Iterable[str]" = (),
        pools: "Mapping[str, int] | None" = None, rates: "Mapping[str, str] | None" = None,
    ) -> None:
        """A flow named ``name``, with no step yet; ``inputs`` declares flow
        inputs (name -> JSON Schema, or names), which are then never taken for
        misspelt step names (see :meth:`validate`); ``pools`` and ``rates``:
        its runs' (see :meth:`run`), which :meth:`validate` checks ``uses`` against.

        Raises:
            FlowError: the name is empty, or ``inputs`` is not names or schemas.
        """
        if not isinstance(name, str) or not name:
            raise FlowError(f"a flow name must be a non-empty string, not {name!r}")
        self._name = name
        #: The steps, as columns (a step's id is its index in them).
        self._steps = _Steps([], [], [], [], [], [])
        #: Step name -> its id.  The compiled plan keeps these lists and this
        #: dict as its own (``_lent``): the next ``add`` copies them first.
        self._index: dict[str, int] = {}
        self._lent = False
        self._plan: _Plan | None = None
        #: The options given to steps -> their checked, shared form (``_Options.shared``).
        self._shared: dict[tuple[Any, ...], _Options] = {}
        #: The options ``add`` was last given (no inputs), their types and
        #: their checked form: the next step given equal ones takes it at once.
        self._given: tuple[dict[str, Any], list[type], _Options] | None = None
        #: Where the flow was loaded from (a flow-file path or ``module:attr``),
        #: recorded with its durable runs so they can be resumed by name.
        self._source: str | None = None
        #: Input name -> the JSON Schema its flow file declares (``[inputs] x = {type = ...}``).
        self._declared: dict[str, dict[str, Any]] = _declared(name, inputs)
        self._declared_types: dict[str, Any] = {}  # input -> the class a flow file names (``type = "mod:Class"``)
        #: The pools and rates declared with the flow (a flow file's ``[pools]`` and ``[rates]``).
        self._pools: dict[str, int] = dict(pools or {})
        self._rates: dict[str, str] = dict(rates or {})

    @property
    def name(self) -> str:
        """The flow's name."""
        return self._name

    @property
    def steps(self) -> tuple[str, ...]:
        """The step names, in definition order."""
        return tuple(self._index)

    def __len__(self) -> int:
        return len(self._steps)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __repr__(self) -> str:
        return f"<Flow {self._name!r} with {len(self._steps)} steps>"

    if TYPE_CHECKING:  # the decorator gives the function back with its own type

        @overload
        def step(self, fn: "F", /) -> "F": ...

        @overload
        def step(
            self, fn: None = None, /, *, name: "str | None" = None,
        depends_on: "Iterable[str]" = (),
        inputs: "Mapping[str, str] | None" = None,
        retries: int = 0,
        retry_delay: float = 0.0,
        retry_backoff: float = 2.0,
        retry_max_delay: "float | None" = None,
        retry_on: "type[BaseException] | tuple[type[BaseException], ...]" = _RETRY_ON,
        timeout: "float | None" = None,
        priority: "int | None" = None,
        trigger: "Trigger" = "all_success",
        map: "str | None" = None,
        batch_size: "int | None" = None,
        cache: bool = False,
        cache_ttl: "float | None" = None,
        key: "str | Callable[[Any], Any] | None" = None,
        uses: "str | Mapping[str, int] | None" = None,
        ) -> "Callable[[F], F]": ...

    def step(self, fn: "F | None" = None, /, *, name: "str | None" = None, **options: "Any") -> "Any":
        """Decorator adding a function as a step; returns the function unchanged.

        Use bare (``@flow.step``) or with options (``@flow.step(retries=2)``).
        Options are those of :meth:`add`; ``name`` defaults to the function's
        name.

        Raises:
            FlowError: the definition is invalid (every problem listed).
        """

        def register(func: "F") -> "F":
            step_name = name if name is not None else getattr(func, "__name__", None)
            if step_name is None:
                raise FlowError(f"cannot name the step for {func!r}: pass name=")
            self.add(step_name, func, **options)
            return func

        if fn is not None:
            return register(fn)
        return register

    def _add(
        self,
        name: str,
        fn: "Callable[..., Any]",
        *,
        depends_on: "Iterable[str]" = (),
        inputs: "Mapping[str, str] | None" = None,
        retries: int = 0,
        retry_delay: float = 0.0,
        retry_backoff: float = 2.0,
        retry_max_delay: "float | None" = None,
        retry_on: "type[BaseException] | tuple[type[BaseException], ...]" = _RETRY_ON,
        timeout: "float | None" = None,
        priority: "int | None" = None,
        trigger: "Trigger" = "all_success",
        map: "str | None" = None,
        batch_size: "int | None" = None,
        cache: bool = False,
        cache_ttl: "float | None" = None,
        key: "str | Callable[[Any], Any] | None" = None,
        uses: "str | Mapping[str, int] | None" = None,
    ) -> "Flow":
        """Add a step; returns the flow, so calls chain.

        Args:
            name: the step's name, unique in the flow.
            fn: the function to call.
            depends_on: step names this step runs after (order only, unless
                ``fn`` takes ``**kwargs``, which then receives their outputs).
            inputs: ``{"param": "step"}``: bind a parameter to another
                step's output.
            retries, retry_delay, retry_backoff, retry_max_delay, retry_on:
                retry policy: up to ``retries`` more attempts, for exceptions
                in ``retry_on``, waiting ``retry_delay * retry_backoff**n``
                seconds (capped by ``retry_max_delay``, with jitter).
            timeout: seconds one attempt may take (``TimeoutError`` after).
            priority: higher runs first among ready steps (default: the
                longest path to the end of the flow goes first).
            map: the name of a parameter whose value (a dependency's output
                or a flow input) is iterable: the step runs once per item,
                each item a task of its own (attempts, retries, timeout),
                and its output is the list of item results in order.
            batch_size: with ``map``, pass lists of up to this many items
                per call; the function returns one result per item.
            key: with ``map``, what identifies an item: an attribute's name or ``item -> key``.
            cache: reuse the output of an earlier call with the same inputs
                (any run): the key hashes the step's name, its function's
                code and default values, and its arguments; kept in the
                run's store, or in this process's memory without one.
            cache_ttl: seconds a cached output stays valid (default: always).
            uses: what each attempt (or map item) holds: a pool or rate
                name (one unit) or ``{"name": units}`` (see :meth:`run`).
            trigger: when the step runs, given how its dependencies ended:
                ``"all_success"`` (default; otherwise it is skipped),
                ``"all_done"`` (whatever their state) or ``"none_failed"``
                (skipped dependencies are fine); a dependency that did not
                succeed passes ``None``.

        Raises:
            FlowError: invalid name, duplicate name, non-callable ``fn`` or
                invalid options (every problem listed).
            TypeError: an unknown option.
        """
        index = self._index
        deps, binding, opts, ids = _checked(index, self._shared, self._name, name, fn, depends_on, inputs, (
            retries, retry_delay, retry_backoff, retry_max_delay, retry_on, timeout, priority, trigger, map,
            batch_size, cache, cache_ttl, key, uses))
        if self._lent:
            index = self._own()
        steps = self._steps
        index[name] = len(steps.fns)
        steps.names.append(name)
        steps.fns.append(fn)
        steps.deps.append(deps)
        steps.inputs.append(binding)
        steps.opts.append(opts)
        steps.ids.append(ids)
        self._plan = None
        return self

    def _short(self, name: str, fn: "Callable[..., Any]", *, depends_on: "Iterable[str]" = (),
               **options: "Any") -> "Flow":
        # ``add`` at run time.  The usual step (a list of names, no inputs,
        # the options of the step before or none) is added here: calling
        # ``_add`` would default fourteen keyword-only options, a sixth of a
        # step's cost; its last lines are inlined, for the same reason.
        # Anything else goes the whole way.
        if not options:
            opts = _Options.DEFAULT
        else:
            given = self._given
            if given is None or options != given[0] or list(map(type, options.values())) != given[1]:
                self._add(name, fn, depends_on=depends_on, **options)
                if "inputs" not in options:
                    self._given = (options, list(map(type, options.values())), self._steps.opts[-1])
                return self
            opts = given[2]  # (equal values of equal types: the options ``_add`` checked and shares)
        if type(name) is not str or not name or not callable(fn) or (
                type(depends_on) is not list and type(depends_on) is not tuple):
            return self._add(name, fn, depends_on=depends_on, **options)
        index = self._index
        if name in index:
            raise FlowError(f"step {name!r} is defined more than once in flow {self._name!r}")
        deps = tuple(depends_on)
        ids = sched.ids_of(index, deps) if deps else ()
        if ids is False:  # a name met twice, or not a name
            return self._add(name, fn, depends_on=depends_on, **options)
        if self._lent:
            index = self._own()
        steps = self._steps
        index[name] = len(steps.fns)
        steps.names.append(name)
        steps.fns.append(fn)
        steps.deps.append(deps)
        steps.inputs.append(_NO_BINDING)
        steps.opts.append(opts)
        steps.ids.append(ids)
        self._plan = None
        return self

    if TYPE_CHECKING:
        add = _add  # (the signature type checkers see)
    else:
        # help() and inspect.signature show every option (``__wrapped__``);
        # an unknown option's TypeError names ``Flow.add``.
        _add.__qualname__ = _short.__qualname__ = "Flow.add"
        _short.__name__, _short.__doc__, _short.__wrapped__ = "add", _add.__doc__, _add
        add = _short
        del _short

    def add_many(
        self,
        names: "Iterable[str]",
        fn: "Callable[..., Any]",
        *,
        depends_on: "Iterable[Iterable[str]] | None" = None,
        inputs: "Iterable[Mapping[str, str] | None] | None" = None,
        retries: int = 0,
        retry_delay: float = 0.0,
        retry_backoff: float = 2.0,
        retry_max_delay: "float | None" = None,
        retry_on: "type[BaseException] | tuple[type[BaseException], ...]" = _RETRY_ON,
        timeout: "float | None" = None,
        priority: "int | None" = None,
        trigger: "Trigger" = "all_success",
        map: "str | None" = None,
        batch_size: "int | None" = None,
        cache: bool = False,
        cache_ttl: "float | None" = None,
        key: "str | Callable[[Any], Any] | None" = None,
        uses: "str | Mapping[str, int] | None" = None,
    ) -> "Flow":
        """Add many steps of one function and one set of options; returns the flow.

        The same as calling :meth:`add` for each name in turn (the flow is
        equal to the one built so), only faster: a flow of a million steps is
        built in a fraction of the time.  Nothing is added if anything is wrong.

        Args:
            names: the steps' names, unique in the flow.
            fn: the function every step calls.
            depends_on: one list of step names per step (the ``depends_on`` of
                :meth:`add`), in the order of ``names``; ``None``: none.
            inputs: one ``{"param": "step"}`` mapping (or ``None``) per step,
                in the order of ``names``; ``None``: none.
            retries...cache_ttl: as for :meth:`add`, for every step.

        Raises:
            FlowError: an invalid or duplicate name, ``depends_on`` or
                ``inputs`` of another length than ``names``, invalid entries,
                a non-callable ``fn`` or invalid options (every problem listed).
        """
        names, deps_of, bindings, opts = _many(self._shared, names, fn, depends_on, inputs, (
            retries, retry_delay, retry_backoff, retry_max_delay, retry_on, timeout, priority, trigger, map,
            batch_size, cache, cache_ttl, key, uses))
        if names:
            if self._lent:
                self._own()
            self._steps.extend(self._index, self._name, names, fn, deps_of, bindings, opts)
            self._plan = None
        return self

    def _own(self) -> "dict[str, int]":
        """Copy the steps' lists and name index, which a compiled plan holds,
        before they change; return the index."""
        self._steps = self._steps.copy()
        self._index = dict(self._index)
        self._lent = False
        return self._index

    def _compiled(self) -> _Plan:
        plan = self._plan
        if plan is None:
            plan = self._plan = _Plan(self._steps, self._index)
            self._lent = True
            plan.declared, plan.declared_types = self._declared, self._declared_types
        return plan

    def validate(self, inputs: "Iterable[str]" = ()) -> None:
        """Check the whole flow now (dependencies, cycles, bindings); a required
        input named almost like a step is a misspelling unless declared or
        named in ``inputs`` (those a run will be given).  A flow declaring
        pools or rates has a step using one it lacks, or more units than a
        pool holds, refused too (otherwise a run checks that).

        Raises:
            FlowError: every problem found.
            CycleError: the steps form a cycle (its path is in ``args[1]``).
        """
        plan = self._compiled()
        found = list(plan.misspelt(inputs).values()) + _limit_problems(plan, self._pools, self._rates)
        if found:
            raise FlowError(*found)

    @property
    def graph(self) -> "Graph[str]":
        """The validated :class:`~microdag.Graph` of the steps (compiles the flow)."""
        return self._compiled().graph

    @property
    def inputs(self) -> dict[str, bool]:
        """Every flow input, mapped to whether some step requires it (no default)."""
        return self._compiled().needed_inputs()

    def input_schema(self) -> dict[str, "Any"]:
        """A JSON Schema (draft 2020-12) of the flow's inputs: one property per
        input with its type (from the annotation of the parameters that take
        it, or the flow file's declaration), default and description;
        ``required`` lists those without a default.  ``run`` checks the inputs
        it is given against it.

        Raises:
            FlowError: the flow is invalid (as :meth:`validate`).
        """
        return self._compiled().input_schema(f"inputs of flow {self._name}")


def _limit_problems(plan: _Plan, pools: "dict[str, int]", rates: "dict[str, str]") -> "list[str]":
    """What :meth:`Flow.validate` finds wrong with the steps' ``uses`` given the flow's pools and rates."""
    if not pools and not rates:
        return []
    from .runner._limits import problems  # (the rule's home; flows with pools only)

    return problems(plan, None, pools, rates)
