"""Flows: named Python steps, their options, and how parameters bind.

A :class:`Flow` keeps its steps in definition order.  Definitions are checked
as they come (names, callables, option values); what needs the whole flow
(dependencies on steps defined later, cycles, parameters bound to steps) is
checked when the flow is compiled, before any step runs.  The compiled
:class:`_Plan` is cached and reused by every run until a step is added.

Binding, per parameter of a step's function:

1. ``inputs={"param": "step"}`` binds it to that step's output;
2. else a parameter named like a step receives that step's output;
3. else it is a flow input, given to ``run``; a default makes it optional.

``depends_on`` adds order-only dependencies, except that a ``**kwargs``
parameter receives the outputs of every declared dependency not already
bound to a named parameter, keyed by step name.
"""

from ._compat import sched
from ._errors import FlowError
from ._graph import Graph

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from concurrent.futures import Executor
    from typing import Any, TypeVar

    from ._run import Run

    F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["Flow"]

_NO_DEFAULT = object()
#: Trigger rule names, in the kernel's numbering.
TRIGGERS = ("all_success", "all_done", "none_failed")
_RETRY_ON: "tuple[type[BaseException], ...]" = (Exception,)


class _Step:
    """One step's definition (as given; checked for types and ranges)."""

    __slots__ = (
        "name",
        "fn",
        "depends_on",
        "inputs",
        "retries",
        "retry_delay",
        "retry_backoff",
        "retry_max_delay",
        "retry_on",
        "timeout",
        "priority",
        "trigger",
        "map",
        "batch_size",
        "cache",
        "cache_ttl",
    )

    def __init__(
        self,
        name: str,
        fn: "Callable[..., Any]",
        depends_on: "Iterable[str]" = (),
        inputs: "Mapping[str, str] | None" = None,
        retries: int = 0,
        retry_delay: float = 0.0,
        retry_backoff: float = 2.0,
        retry_max_delay: "float | None" = None,
        retry_on: "type[BaseException] | tuple[type[BaseException], ...]" = _RETRY_ON,
        timeout: "float | None" = None,
        priority: "int | None" = None,
        trigger: str = "all_success",
        map: "str | None" = None,
        batch_size: "int | None" = None,
        cache: bool = False,
        cache_ttl: "float | None" = None,
    ) -> None:
        problems: list[str] = []
        where = f"step {name!r}"
        if not callable(fn):
            problems.append(f"{where}: {fn!r} is not callable")
        if isinstance(depends_on, str):
            depends_on = (depends_on,)
        try:
            deps = tuple(depends_on)
        except TypeError:
            problems.append(f"{where}: depends_on must be step names, not {depends_on!r}")
            deps = ()
        for dep in deps:
            if not isinstance(dep, str):
                problems.append(f"{where}: depends_on entry {dep!r} is not a step name")
        binding: dict[str, str] = {}
        if inputs is not None:
            if not hasattr(inputs, "items"):
                problems.append(f"{where}: inputs must map parameter names to step names")
            else:
                for param, source in inputs.items():
                    if not isinstance(param, str) or not isinstance(source, str):
                        problems.append(
                            f"{where}: inputs entry {param!r}: {source!r} must map a "
                            "parameter name to a step name"
                        )
                    else:
                        binding[param] = source
        if not _is_int(retries) or retries < 0:
            problems.append(f"{where}: retries must be an int >= 0, not {retries!r}")
        if not _is_number(retry_delay) or retry_delay < 0:
            problems.append(f"{where}: retry_delay must be a number >= 0, not {retry_delay!r}")
        if not _is_number(retry_backoff) or retry_backoff < 1:
            problems.append(f"{where}: retry_backoff must be a number >= 1, not {retry_backoff!r}")
        if retry_max_delay is not None and (not _is_number(retry_max_delay) or retry_max_delay < 0):
            problems.append(
                f"{where}: retry_max_delay must be a number >= 0 or None, not {retry_max_delay!r}"
            )
        if isinstance(retry_on, type):
            retry_on = (retry_on,)
        if retry_on is not _RETRY_ON and (
            not isinstance(retry_on, tuple)
            or not all(isinstance(t, type) and issubclass(t, BaseException) for t in retry_on)
        ):
            problems.append(
                f"{where}: retry_on must be an exception class or a tuple of them, not {retry_on!r}"
            )
            retry_on = (Exception,)
        if timeout is not None and (not _is_number(timeout) or timeout <= 0):
            problems.append(f"{where}: timeout must be a number > 0 or None, not {timeout!r}")
        if priority is not None and (
            not _is_int(priority) or not -(2**31) <= priority < 2**31
        ):
            problems.append(f"{where}: priority must be a 32-bit int or None, not {priority!r}")
        if map is not None and (not isinstance(map, str) or not map):
            problems.append(f"{where}: map must name a parameter, not {map!r}")
        if batch_size is not None:
            if not _is_int(batch_size) or batch_size < 1:
                problems.append(f"{where}: batch_size must be an int >= 1, not {batch_size!r}")
            elif map is None:
                problems.append(f"{where}: batch_size needs map= (the parameter to map over)")
        if not isinstance(cache, bool):
            problems.append(f"{where}: cache must be True or False, not {cache!r}")
        if cache_ttl is not None and (not _is_number(cache_ttl) or cache_ttl <= 0):
            problems.append(f"{where}: cache_ttl must be a number of seconds > 0 or None, not {cache_ttl!r}")
        if trigger not in TRIGGERS:
            problems.append(
                f"{where}: unknown trigger {trigger!r}: expected one of "
                + ", ".join(repr(t) for t in TRIGGERS)
            )
        if problems:
            raise FlowError(*problems)
        self.name = name
        self.fn = fn
        self.depends_on = deps
        self.inputs = binding
        self.retries = int(retries)
        self.retry_delay = float(retry_delay)
        self.retry_backoff = float(retry_backoff)
        self.retry_max_delay = None if retry_max_delay is None else float(retry_max_delay)
        self.retry_on = retry_on
        self.timeout = None if timeout is None else float(timeout)
        self.priority = priority
        self.trigger = trigger
        self.map = map
        self.batch_size = batch_size
        self.cache = cache
        self.cache_ttl = None if cache_ttl is None else float(cache_ttl)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


_FUNCTION = type(_is_int)
_CO_VARKEYWORDS = 0x08
_CO_COROUTINE = 0x80


class _Signature:
    """What binding needs from a function's signature (cached per function)."""

    __slots__ = ("params", "names", "var_kw", "positional_only", "is_async")

    def __init__(self, fn: "Callable[..., Any]") -> None:
        if type(fn) is _FUNCTION and not hasattr(fn, "__wrapped__") and not hasattr(fn, "__signature__"):
            self._from_code(fn)  # the common case, without importing inspect
            return
        import inspect

        sig = inspect.signature(fn)
        params: list[tuple[str, object]] = []
        var_kw = False
        positional_only: list[str] = []
        for p in sig.parameters.values():
            if p.kind is p.VAR_KEYWORD:
                var_kw = True
            elif p.kind is p.VAR_POSITIONAL:
                continue
            elif p.kind is p.POSITIONAL_ONLY:
                if p.default is p.empty:
                    positional_only.append(p.name)
            else:
                params.append((p.name, _NO_DEFAULT if p.default is p.empty else p.default))
        self.params = tuple(params)
        self.is_async = inspect.iscoroutinefunction(fn)
        self.names = frozenset(p for p, _ in params)
        self.var_kw = var_kw
        self.positional_only = tuple(positional_only)

    def _from_code(self, fn: "Any") -> None:
        """What :func:`inspect.signature` would say of a plain function."""
        code = fn.__code__
        n_pos = code.co_argcount
        n_posonly = code.co_posonlyargcount
        n_kwonly = code.co_kwonlyargcount
        names = code.co_varnames
        defaults = fn.__defaults__ or ()
        first_default = n_pos - len(defaults)
        kwdefaults = fn.__kwdefaults__ or {}
        params: list[tuple[str, object]] = []
        positional_only: list[str] = []
        for k in range(n_pos):
            default = defaults[k - first_default] if k >= first_default else _NO_DEFAULT
            if k < n_posonly:
                if default is _NO_DEFAULT:
                    positional_only.append(names[k])
            else:
                params.append((names[k], default))
        for name in names[n_pos : n_pos + n_kwonly]:
            params.append((name, kwdefaults.get(name, _NO_DEFAULT)))
        self.params = tuple(params)
        self.is_async = bool(code.co_flags & _CO_COROUTINE)
        self.names = frozenset(p for p, _ in params)
        self.var_kw = bool(code.co_flags & _CO_VARKEYWORDS)
        self.positional_only = tuple(positional_only)


def _no_signature() -> _Signature:
    """A signature with no parameters, for a function whose own cannot be read."""
    sig = _Signature.__new__(_Signature)
    sig.params, sig.names, sig.var_kw, sig.positional_only, sig.is_async = (), frozenset(), False, (), False
    return sig


class _Plan:
    """A compiled flow: graph, kernel and per-step call layout (ids = graph ids).

    ``kwnames[i]`` lists the keyword names step ``i`` is called with: first
    those bound to the outputs of ``argdeps[i]``, then its flow inputs
    (``input_params[i]``: ``(param, input, default)`` triples, in order).
    """

    __slots__ = (
        "graph",
        "steps",
        "fns",
        "dep_kwnames",
        "argdeps",
        "input_params",
        "inputs",
        "has_priority",
        "has_triggers",
        "maps",
        "is_async",
        "busy",
        "_sinks",
        "_flags",
        "_fingerprint",
    )

    def __init__(self, steps: "Sequence[_Step]") -> None:
        names = {s.name for s in steps}
        problems: list[str] = []
        deps_of: list[tuple[str, ...]] = []
        bound: list[list[tuple[str, str]]] = []  # (param, step)
        inputs_of: list[list[tuple[str, str, object]]] = []
        signatures: dict[int, _Signature] = {}  # flows often reuse one function
        is_async: list[bool] = []
        for step in steps:
            sig = signatures.get(id(step.fn))
            if sig is None:
                try:
                    sig = signatures[id(step.fn)] = _Signature(step.fn)
                except (TypeError, ValueError) as exc:  # some builtins have no signature
                    problems.append(
                        f"step {step.name!r}: cannot read the parameters of "
                        f"{_callable_name(step.fn)} ({exc}); wrap it in a def"
                    )
                    sig = _no_signature()
            pairs, ins = _bind(step, sig, names, problems)
            is_async.append(sig.is_async)
            if step.depends_on:
                seen = dict.fromkeys(source for _, source in pairs)
                for dep in step.depends_on:
                    if dep in names:
                        seen[dep] = None
                    else:
                        problems.append(f"step {step.name!r} depends on {dep!r}, which is not defined")
                deps_of.append(tuple(seen))
            else:
                deps_of.append(tuple(dict.fromkeys(source for _, source in pairs)))
            bound.append(pairs)
            inputs_of.append(ins)
        if problems:
            raise FlowError(*problems)
        self.graph = Graph(((s.name, d) for s, d in zip(steps, deps_of)), kind="step")
        index = self.graph._index
        self.steps = tuple(steps)
        self.fns = [s.fn for s in steps]
        self.dep_kwnames = [tuple(p for p, _ in pairs) for pairs in bound]
        self.argdeps = [tuple(index[src] for _, src in pairs) for pairs in bound]
        self.input_params = [tuple(ins) for ins in inputs_of]
        all_inputs: dict[str, list[int]] = {}
        for i, ins in enumerate(inputs_of):
            for _, name, _ in ins:
                all_inputs.setdefault(name, []).append(i)
        self.inputs = all_inputs
        self.has_priority = any(s.priority is not None for s in steps)
        self.has_triggers = any(s.trigger != "all_success" for s in steps)
        self.maps = [i for i, s in enumerate(steps) if s.map is not None]
        self.configure(self.graph.kernel)
        self.is_async = is_async
        self.busy = False
        self._sinks: list[int] | None = None
        self._flags: dict[tuple[bool, bool], bytes] = {}
        self._fingerprint: str | None = None

    def configure(self, kernel: "Any") -> None:
        """Give ``kernel`` the steps' priorities and trigger rules."""
        if self.has_priority:
            kernel.set_priorities([s.priority or 0 for s in self.steps])
        if self.has_triggers:
            kernel.set_triggers([TRIGGERS.index(s.trigger) for s in self.steps])

    def flags(self, slow_all: bool, keep: "list[int] | None") -> bytes:
        """The scheduler's per-step flags for a run (see ``drive``).

        ``SLOW``: the step needs the runner's careful path (a timeout, a map,
        an async function, or ``slow_all`` for hooks and debug logging);
        ``KEEP``: its output is kept (every step when ``keep`` is ``None``).
        The two usual cases (keep all, keep the sinks) are cached.
        """
        usual = keep is None or keep is self._sinks
        key = (slow_all, keep is None)
        if usual and key in self._flags:
            return self._flags[key]
        flags = bytearray(len(self.steps))
        slow, keep_bit = sched.SLOW, sched.KEEP
        for i, step in enumerate(self.steps):
            if slow_all or step.timeout is not None or step.map is not None or self.is_async[i] or step.cache:
                flags[i] = slow
        for i in range(len(flags)) if keep is None else keep:
            flags[i] |= keep_bit
        out = bytes(flags)
        if usual:
            self._flags[key] = out
        return out

    def fingerprint(self) -> str:
        """A digest of the flow's structure: steps, dependencies, bindings, maps, triggers.

        Retry, timeout and priority options and the functions' code are left
        out: changing them does not stop a run from being resumed.
        """
        if self._fingerprint is not None:
            return self._fingerprint
        import json

        from ._compat import sha256

        names = self.graph.names
        shape = [
            [
                s.name,
                [names[j] for j in self.graph._deps[i]],
                list(self.dep_kwnames[i]),
                [[p, n] for p, n, _ in self.input_params[i]],
                s.map,
                s.batch_size,
                s.trigger,
            ]
            for i, s in enumerate(self.steps)
        ]
        self._fingerprint = sha256(json.dumps(shape).encode()).hexdigest()[:32]
        return self._fingerprint

    def graph_json(self) -> str:
        """The structure a store keeps for reports: names and dependency indices."""
        import json

        names = [str(name) for name in self.graph.names]
        return json.dumps({"nodes": names, "deps": [list(d) for d in self.graph._deps]})

    def sinks(self) -> list[int]:
        """Ids of the steps no other step depends on."""
        if self._sinks is None:
            used = bytearray(len(self.steps))
            for deps in self.graph._deps:
                for j in deps:
                    used[j] = 1
            self._sinks = [i for i, u in enumerate(used) if not u]
        return self._sinks


def _bind(
    step: _Step, sig: _Signature, names: "set[str]", problems: "list[str]"
) -> "tuple[list[tuple[str, str]], list[tuple[str, str, object]]]":
    """Bind ``step``'s parameters (see the module docs); report problems."""
    pairs: list[tuple[str, str]] = []  # (param, source step)
    ins: list[tuple[str, str, object]] = []  # (param, input, default)
    mapped = step.inputs
    for p in sig.positional_only:
        problems.append(f"step {step.name!r}: positional-only parameter {p!r} cannot be bound by name")
    if step.map is not None and step.map not in sig.names:
        problems.append(
            f"step {step.name!r}: map={step.map!r} names no parameter of {_callable_name(step.fn)}"
        )
    for param, source in mapped.items():
        if source not in names:
            problems.append(
                f"step {step.name!r} maps parameter {param!r} to step {source!r}, which is not defined"
            )
        elif param not in sig.names and not sig.var_kw:
            problems.append(
                f"step {step.name!r}: inputs names {param!r}, which is not a parameter of "
                f"{_callable_name(step.fn)}"
            )
    for param, default in sig.params:
        if param in mapped:
            if mapped[param] in names:
                pairs.append((param, mapped[param]))
        elif param in names:
            if param == step.name:
                problems.append(
                    f"step {step.name!r}: parameter {param!r} names the step itself; "
                    "rename it or map it with inputs="
                )
            else:
                pairs.append((param, param))
        else:
            ins.append((param, param, default))
    if sig.var_kw:
        for param, source in mapped.items():
            if param not in sig.names and source in names:
                pairs.append((param, source))
        if step.depends_on:
            taken = {p for p, _ in pairs}
            taken.update(p for p, _, _ in ins)
            for dep in step.depends_on:
                if dep in names and dep not in taken and dep != step.name:
                    pairs.append((dep, dep))
                    taken.add(dep)
    return pairs, ins


def _callable_name(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


class Flow:
    """A named DAG of Python steps.

    Steps are plain functions; a parameter named like another step receives
    that step's output (see the binding rules in the module docs of
    ``docs/api.md``).  Build with the :meth:`step` decorator or :meth:`add`,
    then :meth:`run`.

    Args:
        name: the flow's name (used in run records, logs and errors).
    """

    __slots__ = ("_name", "_steps", "_plan", "_source", "__weakref__")

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise FlowError(f"a flow name must be a non-empty string, not {name!r}")
        self._name = name
        self._steps: dict[str, _Step] = {}
        self._plan: _Plan | None = None
        #: Where the flow was loaded from (a flow-file path or ``module:attr``),
        #: recorded with its durable runs so they can be resumed by name.
        self._source: str | None = None

    @property
    def name(self) -> str:
        """The flow's name."""
        return self._name

    @property
    def steps(self) -> tuple[str, ...]:
        """The step names, in definition order."""
        return tuple(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def __contains__(self, name: object) -> bool:
        return name in self._steps

    def __repr__(self) -> str:
        return f"<Flow {self._name!r} with {len(self._steps)} steps>"

    def step(
        self, fn: "F | None" = None, /, *, name: "str | None" = None, **options: "Any"
    ) -> "Any":
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

    def add(self, name: str, fn: "Callable[..., Any]", **options: "Any") -> "Flow":
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
            cache: reuse the output of an earlier call with the same inputs
                (any run): the key hashes the step's name, its function's
                code and default values, and its arguments; kept in the
                run's store, or in this process's memory without one.
            cache_ttl: seconds a cached output stays valid (default: always).
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
        if not isinstance(name, str) or not name:
            raise FlowError(f"a step name must be a non-empty string, not {name!r}")
        if name in self._steps:
            raise FlowError(f"step {name!r} is defined more than once in flow {self._name!r}")
        self._steps[name] = _Step(name, fn, **options)
        self._plan = None
        return self

    def _compiled(self) -> _Plan:
        plan = self._plan
        if plan is None:
            plan = self._plan = _Plan(tuple(self._steps.values()))
        return plan

    def validate(self) -> None:
        """Check the whole flow now (dependencies, cycles, bindings).

        Raises:
            FlowError: every problem found.
            CycleError: the steps form a cycle (its path is in ``args[1]``).
        """
        self._compiled()

    @property
    def graph(self) -> Graph:
        """The validated :class:`~microdag.Graph` of the steps (compiles the flow)."""
        return self._compiled().graph

    @property
    def inputs(self) -> dict[str, bool]:
        """Every flow input, mapped to whether some step requires it (no default)."""
        plan = self._compiled()
        out: dict[str, bool] = {}
        for ins in plan.input_params:
            for _, name, default in ins:
                out[name] = out.get(name, False) or default is _NO_DEFAULT
        return out

    def run(
        self,
        inputs: "Mapping[str, Any] | None" = None,
        *,
        executor: "str | Executor" = "inline",
        max_workers: "int | None" = None,
        targets: "Iterable[str] | None" = None,
        on_failure: str = "fail_fast",
        hooks: "Iterable[Callable[[Any], Any]]" = (),
        raise_on_failure: bool = True,
        keep_outputs: bool = False,
        cancel: "Any" = None,
        store: "Any" = None,
        run_id: "str | None" = None,
        resume: bool = False,
        force: bool = False,
    ) -> "Run":
        """Run the flow and return its :class:`~microdag.Run`.

        Args:
            inputs: values for the flow inputs, by name.
            executor: ``"inline"`` (the caller's thread), ``"threads"``,
                ``"processes"``, or any ``concurrent.futures.Executor``.
            max_workers: parallel steps at most (threads and processes:
                the pool size; default: like ``concurrent.futures``).
            targets: run only these steps and what they depend on.
            on_failure: ``"fail_fast"`` (start nothing new after a failure;
                pending steps end ``cancelled``) or ``"continue"`` (run every
                branch that does not depend on the failure; the rest end
                ``skipped``).
            hooks: callables receiving each :class:`~microdag.Event`.
            raise_on_failure: raise :class:`~microdag.RunFailed` when the
                run does not succeed.
            keep_outputs: keep every output in ``Run.outputs``; by default an
                output is released once every step consuming it has finished,
                and ``Run.outputs`` holds the targets' outputs (or, without
                targets, those of the steps nothing else consumes).
            cancel: a ``threading.Event``; once set, no new step starts,
                pending steps end ``cancelled``, steps running on processes
                are terminated, steps running inline or on threads finish
                (their results are recorded), and the run ends ``cancelled``.
            store: keep the run in a store: a :class:`microdag.stores.Store`
                or a spec (``"memory"``, ``"json:DIR"``, ``"sqlite:PATH"``,
                a path ending in ``.db``); each finished step is recorded
                (grouped commits), the run's end durably before ``run``
                returns.
            run_id: the run's id (default: a new one).
            resume: with ``store`` and ``run_id``: go on with that run; steps
                it records as succeeded are not run again (their stored
                outputs are used), every other step runs; ``inputs``
                default to the run's.
            force: resume even if the flow's structure changed since, or the
                run seems live in another process.

        Raises:
            FlowError: invalid flow, options or inputs (before any step runs).
            CycleError: the steps form a cycle.
            RunFailed: the run did not succeed and ``raise_on_failure``.
        """
        from ._run import execute

        return execute(
            self,
            inputs,
            executor=executor,
            max_workers=max_workers,
            targets=targets,
            on_failure=on_failure,
            hooks=hooks,
            raise_on_failure=raise_on_failure,
            keep_outputs=keep_outputs,
            cancel=cancel,
            store=store,
            run_id=run_id,
            resume=resume,
            force=force,
        )

    async def arun(
        self,
        inputs: "Mapping[str, Any] | None" = None,
        *,
        max_workers: "int | None" = None,
        targets: "Iterable[str] | None" = None,
        on_failure: str = "fail_fast",
        hooks: "Iterable[Callable[[Any], Any]]" = (),
        raise_on_failure: bool = True,
        keep_outputs: bool = False,
        cancel: "Any" = None,
        store: "Any" = None,
        run_id: "str | None" = None,
        resume: bool = False,
        force: bool = False,
    ) -> "Run":
        """Run the flow inside the caller's event loop; same options as :meth:`run`.

        ``async def`` steps run concurrently as tasks of the running loop,
        other steps on threads; ``max_workers`` bounds how many run at once
        (default: like the threads executor).  A timed-out async step is
        cancelled.  Cancelling the ``arun`` task cancels the step tasks,
        ends the run ``cancelled`` and re-raises
        :class:`asyncio.CancelledError`.
        """
        from ._run import execute_async

        return await execute_async(
            self,
            inputs,
            max_workers=max_workers,
            targets=targets,
            on_failure=on_failure,
            hooks=hooks,
            raise_on_failure=raise_on_failure,
            keep_outputs=keep_outputs,
            cancel=cancel,
            store=store,
            run_id=run_id,
            resume=resume,
            force=force,
        )

    def run_step(
        self,
        name: str,
        inputs: "Mapping[str, Any] | None" = None,
        *,
        from_run: "str | None" = None,
        store: "Any" = None,
    ) -> "Any":
        """Run one step alone, in the calling thread, and return its output.

        Args:
            name: the step.
            inputs: the outputs of the steps it depends on, by step name, and
                the flow inputs it takes, by input name.
            from_run, store: take those values from the stored run
                ``from_run`` instead (``inputs`` overrides any of them); the
                stored run is not changed.

        Raises:
            FlowError: unknown step, or a value it needs is missing.
            StoreError: the store or the run cannot be read.
            Exception: whatever the step raises (no retries).
        """
        plan = self._compiled()
        i = plan.graph.ids([name])[0]
        given: dict[str, Any] = {}
        if from_run is not None:
            from .stores import open_store

            if store is None:
                raise FlowError("run_step(from_run=...) needs the store= that holds the run")
            source = open_store(store)
            given.update(source.run_info(from_run).inputs)
            for dep in plan.argdeps[i]:
                dep_name = str(plan.graph.names[dep])
                try:
                    given[dep_name] = source.output(from_run, dep_name)
                except KeyError:
                    pass  # reported below as missing, unless inputs gives it
        given.update(inputs or {})
        kwargs: dict[str, Any] = {}
        missing: list[str] = []
        names = plan.graph.names
        for param, dep in zip(plan.dep_kwnames[i], plan.argdeps[i]):
            key = names[dep]
            if key in given:
                kwargs[param] = given[key]
            else:
                missing.append(f"step {name!r} needs the output of step {key!r}, which was not given")
        for param, input_name, default in plan.input_params[i]:
            if input_name in given:
                kwargs[param] = given[input_name]
            elif default is _NO_DEFAULT:
                missing.append(
                    f"step {name!r} needs input {input_name!r} (parameter {param!r}), "
                    "which was not given"
                )
        if missing:
            raise FlowError(*missing)
        from ._backends import invoke
        from ._run import _new_run_id

        return invoke(plan.fns[i], kwargs, (_new_run_id(), self._name, name, 1, None, None))

