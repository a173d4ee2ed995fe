"""Compiling a flow: signatures, binding, retry policy, the plan.

A step's definition is checked as it is added (``_steps``); what needs the
whole flow (dependencies on steps defined later, cycles, parameters bound to
steps) is checked when the flow is compiled into a :class:`_Plan`, before
any step runs.  The plan is what the
runner takes: the graph and its kernel, per step its function, how it is
called, its retry policy and its flags.  It is cached by the flow and reused
by every run until a step is added.

Binding, per parameter of a step's function:

1. ``inputs={"param": "step"}`` binds it to that step's output;
2. else a parameter named like a step receives that step's output;
3. else it is a flow input, given to ``run``; a default makes it optional.

``depends_on`` adds order-only dependencies, except that a ``**kwargs``
parameter receives the outputs of every declared dependency not already
bound to a named parameter, keyed by step name.

Retry policy: each step gets a :class:`Retry` when the flow compiles (steps
with equal options share one), whose ``delay(exc, attempt)`` says how long to
wait before the next attempt, or ``None`` for no retry.  It is the only place
that decides retries, for steps and map items alike.
"""

import marshal
from itertools import repeat
from operator import is_
from types import FunctionType as _FUNCTION

from ._compat import sched, sha256
from ._errors import CycleError, FlowError, nearest
from ._graph import Graph
from ._nogc import NoGC
from ._steps import _NO_BINDING, _RETRY_ON, TRIGGERS, _Options, _Same, _Step, _Steps

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any

    #: What binding makes of a flow's steps, by step id: their dependencies
    #: (each once), the keyword names their dependencies' outputs are passed
    #: as and the steps giving them (in that order), their flow inputs
    #: (``(param, input, default)``) and whether each is a coroutine function.
    Layout = tuple[list[tuple[str, ...]], list[tuple[str, ...]], list[tuple[str, ...]],
                   list[tuple[tuple[str, str, object], ...]], list[bool]]

__all__ = ["NO_DEFAULT", "Retry", "_Plan"]

#: The default of a flow input that has none (it is required).
NO_DEFAULT = object()
_CO_VARKEYWORDS = 0x08
_CO_COROUTINE = 0x80


class _Signature:
    """What binding needs from a function's signature (cached per function)."""

    __slots__ = ("params", "names", "var_kw", "positional_only", "is_async")

    def __init__(self, fn: "Callable[..., Any]") -> None:
        if type(fn) is _FUNCTION and not hasattr(fn, "__wrapped__") and not hasattr(fn, "__signature__"):
            self._from_code(fn)  # the common case, without importing inspect
            return
        import inspect  # (import time: inspect loads on first use)

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
                params.append((p.name, NO_DEFAULT if p.default is p.empty else p.default))
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
            default = defaults[k - first_default] if k >= first_default else NO_DEFAULT
            if k < n_posonly:
                if default is NO_DEFAULT:
                    positional_only.append(names[k])
            else:
                params.append((names[k], default))
        for name in names[n_pos : n_pos + n_kwonly]:
            params.append((name, kwdefaults.get(name, NO_DEFAULT)))
        self.params = tuple(params)
        self.is_async = bool(code.co_flags & _CO_COROUTINE)
        self.names = frozenset(p for p, _ in params)
        self.var_kw = bool(code.co_flags & _CO_VARKEYWORDS)
        self.positional_only = tuple(positional_only)


def _check_edges(
    steps: _Steps, kwnames: "list[tuple[str, ...]]", sources: "list[tuple[str, ...]]",
    index: "Mapping[str, int]", fns: "dict[int, Callable[..., Any]]", signatures: "dict[int, _Signature]",
    problems: "list[str]",
) -> None:
    """A problem for each parameter whose annotation a dependency's return
    annotation can never satisfy (``-> str`` feeding ``count: int``; a map
    parameter item-wise); see ``_schema.clash`` for what counts as sure.
    ``fns``, ``signatures``: the flow's functions and their signatures, by
    the function's id."""
    # (_schema loads with the first compile, not with a flow's definition)
    from ._schema import MISSING, annotations, clash, item_type

    hints = {key: annotations(fn) for key, fn in fns.items()}
    # Only a named parameter's annotation is checked (one of **kwargs is not):
    # the steps of functions that annotate none are skipped without a look.
    wanted_by_fn = {key: {k: v for k, v in h.items() if k != "return" and k in signatures[key].names}
                    for key, h in hints.items()}
    if not any(wanted_by_fn.values()):
        return
    for i, fn in enumerate(steps.fns):
        wanted_all = wanted_by_fn[id(fn)]
        if not wanted_all or not kwnames[i]:
            continue
        step = steps[i]
        for param, source in zip(kwnames[i], sources[i]):
            wanted = wanted_all.get(param, MISSING)
            if wanted is MISSING:
                continue
            producer = steps[index[source]]
            produced = hints[id(producer.fn)].get("return", MISSING)
            if producer.map is not None and producer.batch_size is None and produced is not MISSING:
                produced = list[produced]  # type: ignore[valid-type]  # a map step's output: the list of its calls'
            if step.map == param:
                if step.batch_size is not None:
                    continue  # the parameter gets a batch: a list of items
                produced = item_type(produced)
            if clash(produced, wanted):
                what = (f"the items of what step {source!r} returns are" if step.map == param
                        else f"what step {source!r} returns is")
                problems.append(
                    f"step {step.name!r}: parameter {param!r} is annotated {_type_name(wanted)}, but "
                    f"{what} annotated {_type_name(produced)}"
                )


def _type_name(ann: object) -> str:
    if isinstance(ann, type):
        return ann.__qualname__
    return "None" if ann is None else repr(ann).replace("typing.", "")


def _no_signature() -> _Signature:
    """A signature with no parameters, for a function whose own cannot be read."""
    sig = _Signature.__new__(_Signature)
    sig.params, sig.names, sig.var_kw, sig.positional_only, sig.is_async = (), frozenset(), False, (), False
    return sig


class Retry:
    """When a failed attempt is tried again, and after how long.

    Args:
        retries: attempts after the first, at most.
        base: seconds before the first retry; each next one waits
            ``backoff`` times longer, at most ``max_delay`` (jitter: each delay
            is drawn from ``[d/2, d)``).
        on: the exception classes that are retried.
    """

    __slots__ = ("retries", "base", "backoff", "max_delay", "on")

    def __init__(
        self,
        retries: int = 0,
        base: float = 0.0,
        backoff: float = 2.0,
        max_delay: "float | None" = None,
        on: "tuple[type[BaseException], ...]" = _RETRY_ON,
    ) -> None:
        self.retries = retries
        self.base = base
        self.backoff = backoff
        self.max_delay = max_delay
        self.on = on

    def delay(self, exc: BaseException, attempt: int) -> "float | None":
        """Seconds to wait before the attempt after ``attempt`` (1 for the
        first), which raised ``exc``; ``None`` when there is no retry."""
        if attempt > self.retries or not isinstance(exc, self.on):
            return None
        delay = self.base * self.backoff ** (attempt - 1)
        if self.max_delay is not None:
            delay = min(delay, self.max_delay)
        if delay <= 0:
            return 0.0
        import random  # (import time: random loads on first use)

        return delay * (0.5 + random.random() / 2)  # equal jitter: [delay/2, delay)

    def __repr__(self) -> str:
        return f"<Retry retries={self.retries} delay={self.base:g} backoff={self.backoff:g}>"


def _retry_policies(steps: _Steps, options: "set[_Options]") -> "list[Retry]":
    """One :class:`Retry` per step; steps with the same options share one
    (``options``: the distinct ones)."""
    shared: dict[tuple[Any, ...], Retry] = {}
    by_options: dict[int, Retry] = {}
    for o in options:
        key = (o.retries, o.retry_delay, o.retry_backoff, o.retry_max_delay, o.retry_on)
        policy = shared.get(key)
        if policy is None:
            policy = shared[key] = Retry(*key)
        by_options[id(o)] = policy
    if len(by_options) == 1:
        return _Same(next(iter(by_options.values())), len(steps))  # type: ignore[return-value]
    return [by_options[id(o)] for o in steps.opts]


#: Up to this many distinct functions, a flow is laid out together (``_layout_together``).
_FEW = 64
#: A byte of flags with the kernel's KEEP bit set (``bytes.translate`` sets it on every step).
_WITH_KEEP = bytes(b | sched.KEEP for b in range(256))



def _layout_together(
    steps: _Steps, fns: "dict[int, Callable[..., Any]]", signatures: "dict[int, _Signature | Exception]",
    options: "set[_Options]",
) -> "Layout | None":
    """The layout of a flow whose steps all bind the simple way, made a list
    at a time: no ``inputs=``, no map, and each function either takes only
    ``**kwargs`` (it gets its dependencies' outputs by name) or nothing.
    ``None`` when that is not so (or a signature cannot be read): then each
    step is bound on its own, which also words the problems.  Names that are
    not steps are left to the graph, which says so as the binding would."""
    kinds: dict[int, int] = {}
    is_async: dict[int, bool] = {}
    for key in fns:
        sig = signatures[key]
        if not isinstance(sig, _Signature):
            return None
        kind = _shape(sig)
        if not kind:
            return None
        kinds[key] = kind
        is_async[key] = sig.is_async
    if any(o.map is not None for o in options):
        return None
    n = len(steps)
    if steps.inputs.count(_NO_BINDING) != n:  # (a step's inputs are that one empty dict, or not empty)
        return None
    deps_of = steps.deps
    if len(fns) == 1:
        [kind] = kinds.values()
        kwnames: list[tuple[str, ...]] = deps_of if kind == _KWARGS else _Same((), n)  # type: ignore[assignment]
        flags: list[bool] = _Same(next(iter(is_async.values())), n)  # type: ignore[assignment]
    else:
        ids = list(map(id, steps.fns))
        kwnames = [d if kinds[k] == _KWARGS else () for d, k in zip(deps_of, ids)]
        flags = list(map(is_async.__getitem__, ids))
    return deps_of, kwnames, kwnames, _Same((), n), flags  # type: ignore[return-value]


def _layout_each(
    steps: _Steps, index: "Mapping[str, int]", signatures: "dict[int, _Signature | Exception]",
    problems: "list[str]",
) -> "Layout":
    """The layout of any flow, binding each step on its own (see the module
    docs); every problem goes into ``problems``."""
    deps_of: list[tuple[str, ...]] = []
    kwnames: list[tuple[str, ...]] = []
    sources: list[tuple[str, ...]] = []
    inputs_of: list[tuple[tuple[str, str, object], ...]] = []
    is_async: list[bool] = []
    for step in steps:
        fn = step.fn
        sig = signatures[id(fn)]
        if not isinstance(sig, _Signature):  # some builtins have no signature
            problems.append(
                f"step {step.name!r}: cannot read the parameters of "
                f"{_callable_name(fn)} ({sig}); wrap it in a def"
            )
            sig = _no_signature()
        is_async.append(sig.is_async)
        pairs, ins = _bind(step, sig, index, problems)
        if step.depends_on:
            seen = dict.fromkeys(source for _, source in pairs)
            for dep in step.depends_on:
                if dep in index:
                    seen[dep] = None
                else:
                    problems.append(f"step {step.name!r} depends on {dep!r}, which is not defined")
            deps_of.append(tuple(seen))
        else:
            deps_of.append(tuple(dict.fromkeys(source for _, source in pairs)))
        kwnames.append(tuple(p for p, _ in pairs))
        sources.append(tuple(src for _, src in pairs))
        inputs_of.append(tuple(ins))
    return deps_of, kwnames, sources, inputs_of, is_async
_KWARGS = 1  # a function of **kwargs alone
_NOTHING = 2  # a function of no parameters


def _shape(sig: _Signature) -> int:
    """``_KWARGS`` or ``_NOTHING`` when binding a step of this function is
    that simple (no parameter to look at, positional-only ones included),
    else 0."""
    if sig.params or sig.positional_only:
        return 0
    return _KWARGS if sig.var_kw else _NOTHING


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
        "retry",
        "busy",
        "_sinks",
        "_flags",
        "_fingerprint",
        "_code",
        "declared",
        "_types",
        "_options",
        "options",
    )

    def __init__(self, steps: _Steps, index: "dict[str, int] | None" = None) -> None:
        """Compile ``steps`` (``index``: their names to ids, which the graph
        keeps; made here when not given).

        Raises:
            FlowError: every problem of the flow; CycleError: a cycle.
        """
        with NoGC():
            self._compile(steps, dict(zip(steps.names, range(len(steps)))) if index is None else index)

    def _compile(self, steps: _Steps, index: "dict[str, int]") -> None:
        problems: list[str] = []
        fn_list = steps.fns
        if fn_list and all(map(is_, fn_list, repeat(fn_list[0]))):  # one function for every step
            fns = {id(fn_list[0]): fn_list[0]}
        else:
            fns = dict(zip(map(id, fn_list), fn_list))  # each distinct function, by id
        signatures: dict[int, _Signature | Exception] = {}
        for key, fn in fns.items():
            try:
                signatures[key] = _Signature(fn)
            except (TypeError, ValueError) as exc:  # (said for each step of it, by _layout_each)
                signatures[key] = exc
        options = set(steps.opts)  # each distinct set of options (they hash by identity)
        layout = _layout_together(steps, fns, signatures, options) if len(fns) <= _FEW else None
        if layout is None:
            layout = _layout_each(steps, index, signatures, problems)
        deps_of, kwnames, sources, inputs_of, is_async = layout
        if not problems:
            _check_edges(steps, kwnames, sources, index, fns, signatures, problems)  # type: ignore[arg-type]
        try:
            graph = Graph._of(steps.names, index, deps_of, steps.ids if deps_of is steps.deps else None)
        except FlowError as exc:
            problems.extend(exc.problems)
        except CycleError:
            if not problems:
                raise
        if problems:
            raise FlowError(*problems)
        self.graph = graph
        self.steps = steps
        self.options = steps.opts
        self.fns = fn_list
        self.dep_kwnames = kwnames
        ids = graph._deps  # (the same tuples where the steps giving outputs are the dependencies)
        if sources is deps_of:
            self.argdeps = ids
        elif isinstance(sources, _Same):  # no step is passed anything (the kernel's loop wants a list)
            self.argdeps = [()] * len(steps)
        else:
            self.argdeps = [ids[i] if src is deps_of[i] else tuple(index[d] for d in src)
                            for i, src in enumerate(sources)]
        self.input_params = inputs_of
        all_inputs: dict[str, list[int]] = {}
        if not isinstance(inputs_of, _Same) or inputs_of.value:  # (_Same of nothing: no step takes an input)
            for i, taken in enumerate(inputs_of):
                for _, name, _ in taken:
                    all_inputs.setdefault(name, []).append(i)
        self.inputs = all_inputs
        self._options = options
        self.has_priority = any(o.priority is not None for o in options)
        self.has_triggers = any(o.trigger != "all_success" for o in options)
        self.maps = [i for i, s in enumerate(steps) if s.map is not None] if any(
            o.map is not None for o in options) else []
        self.configure(graph.kernel)
        self.is_async = is_async
        self.retry = _retry_policies(steps, options)
        self.busy = False
        self._sinks: list[int] | None = None
        self._flags: dict[tuple[bool, bool], bytes] = {}
        self._fingerprint: str | None = None
        self._code: dict[str, str] | None = None
        #: Input name -> the JSON Schema a flow file declares for it (``Flow`` sets it).
        self.declared: dict[str, dict[str, Any]] = {}
        self._types: dict[str, dict[str, Any]] | None = None

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
        n = len(self.steps)
        slow, keep_bit = sched.SLOW, sched.KEEP
        if slow_all:
            flags = bytearray([slow]) * n
        else:
            careful = {id(o) for o in self._options
                       if o.timeout is not None or o.map is not None or o.cache}
            flags = bytearray(n)
            if careful:
                for i, o in enumerate(self.options):
                    if id(o) in careful:
                        flags[i] = slow
            if True in self.is_async:
                for i, a in enumerate(self.is_async):
                    if a:
                        flags[i] = slow
        if keep is None:
            flags = flags.translate(_WITH_KEEP)
        else:
            for i in keep:
                flags[i] |= keep_bit
        out = bytes(flags)
        if usual:
            self._flags[key] = out
        return out

    def needed_inputs(self) -> "dict[str, bool]":
        """Every flow input, mapped to whether some step requires it (no default)."""
        out: dict[str, bool] = {}
        for ins in self.input_params:
            for _, name, default in ins:
                out[name] = out.get(name, False) or default is NO_DEFAULT
        return out

    def misspelt(self, given: "Iterable[str]" = ()) -> "dict[str, str]":
        """Required flow inputs that look like a misspelt step name, neither
        declared (``declared``) nor ``given``: input name -> the problem, naming
        the step, the parameter and the step it is most like."""
        out: dict[str, str] = {}
        seen = set(self.declared).union(given)  # (each input is looked at once)
        names = self.graph.names
        for i, params in enumerate(self.input_params):
            for param, input_name, default in params:
                if default is not NO_DEFAULT or input_name in seen:
                    continue
                seen.add(input_name)
                guess = nearest(input_name, names)
                if guess is not None:
                    out[input_name] = (f"parameter {param!r} of step {names[i]!r} matches no step; "
                                       f"did you mean step {guess!r}? (or declare it as a flow input)")
        return out

    def input_schema(self, title: str) -> "dict[str, Any]":
        """``Flow.input_schema``: a JSON Schema of the inputs (see there)."""
        import json  # (import time: json loads on first use)

        types = self.input_types()
        defaults: dict[str, Any] = {}
        for ins in self.input_params:
            for _, name, default in ins:
                if default is not NO_DEFAULT and name not in defaults:
                    defaults[name] = default
        needed = self.needed_inputs()
        properties: dict[str, Any] = {}
        for name in sorted(needed):
            prop = dict(types.get(name, {}))
            if name in defaults:
                try:
                    json.dumps(defaults[name], allow_nan=False)
                    prop["default"] = defaults[name]
                except (TypeError, ValueError):
                    pass
            properties[name] = prop
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": title,
            "type": "object",
            "properties": properties,
            "required": sorted(name for name, required in needed.items() if required),
            "additionalProperties": False,
        }

    def input_types(self) -> "dict[str, dict[str, Any]]":
        """Input name -> its JSON Schema: declared by the flow file, else from
        the annotation of the first parameter that takes it (``{}``: any)."""
        if self._types is None:
            # (_schema loads with the first compile, not with a flow's definition)
            from ._schema import MISSING, annotations, item_type, schema_of

            seen: dict[int, dict[str, Any]] = {}
            types: dict[str, dict[str, Any]] = {}
            for i, ins in enumerate(self.input_params):
                for param, name, _ in ins:
                    if name in types and types[name]:
                        continue
                    if name in self.declared:
                        types[name] = self.declared[name]
                        continue
                    fn = self.fns[i]
                    hints = seen.get(id(fn))
                    if hints is None:
                        hints = seen[id(fn)] = annotations(fn)
                    ann = hints.get(param, MISSING)
                    step = self.steps[i]
                    if step.map == param:  # the input is the items; the parameter, one (or a batch)
                        item = item_type(ann) if step.batch_size is not None else ann
                        types[name] = {"type": "array"} if item is MISSING else {
                            "type": "array", "items": schema_of(item)}
                    else:
                        types[name] = {} if ann is MISSING else schema_of(ann)
            self._types = types
        return self._types

    def code(self) -> "dict[str, str] | None":
        """Step name -> :func:`code_digest` of its function's code, for flows of up to
        ``CODE_LIMIT`` steps (``None`` beyond: kept with each durable run, so
        that a resume can tell when a finished step's code changed)."""
        if self._code is None and len(self.steps) <= CODE_LIMIT:
            seen: dict[int, str] = {}  # flows often reuse one function
            code = {}
            for step in self.steps:
                digest = seen.get(id(step.fn))
                if digest is None:
                    digest = seen[id(step.fn)] = code_digest(step.fn, defaults=False)
                code[step.name] = digest
            self._code = code
        return self._code

    def fingerprint(self) -> str:
        """A digest of the flow's structure: steps, dependencies, bindings, maps, triggers.

        Retry, timeout and priority options and the functions' code are left
        out: changing them does not stop a run from being resumed.  Each
        part is a column serialised whole (``marshal`` format 2: no
        references, no interning, the same bytes for equal values in any
        process), so a million steps take a fraction of a second.
        """
        if self._fingerprint is not None:
            return self._fingerprint
        import json  # (import time: json loads on first use)

        n = len(self.steps)
        triples: dict[int, tuple[Any, ...] | None] = {}  # options -> their structural part, when not the default
        for o in self._options:
            shape = (o.map, o.batch_size, o.trigger)
            triples[id(o)] = None if shape == (None, None, "all_success") else shape
        names, deps, kw, argdeps = self.graph.names, self.graph._deps, self.dep_kwnames, self.argdeps
        with NoGC():
            columns: list[Any] = [
                names,
                deps,
                # keyword names and the steps passed: b"=" where they are the dependencies (names, ids)
                b"=" if _dep_names(kw, self.steps.deps, names, deps) else list(kw),
                b"=" if argdeps is deps or list(argdeps) == deps else list(argdeps),
                [] if isinstance(self.input_params, _Same) and not self.input_params.value else
                [(i, tuple((p, name) for p, name, _ in ins)) for i, ins in enumerate(self.input_params) if ins],
                [] if not any(triples.values()) else
                [(i, t) for i, t in enumerate(map(triples.__getitem__, map(id, self.options))) if t is not None],
            ]
            digest = sha256(b"microdag flow structure, format 2: %d steps\n" % n)
            for column in columns:
                try:
                    digest.update(marshal.dumps(column, 2))
                except ValueError:  # (a name of a str subclass, which marshal refuses)
                    digest.update(json.dumps(column).encode())
        self._fingerprint = digest.hexdigest()[:32]
        return self._fingerprint

    def made(self, fingerprint: str) -> bool:
        """Whether a run recorded with ``fingerprint`` ran a flow of this
        structure (the fingerprint of :meth:`fingerprint`, or of the first
        format, which runs recorded before it carry)."""
        return fingerprint == self.fingerprint() or fingerprint == self._first_fingerprint()

    def _first_fingerprint(self) -> str:
        """The first format of :meth:`fingerprint`: one JSON list per step
        (name, dependency names, keyword names, bound inputs, map, batch
        size, trigger)."""
        import json  # (import time: json loads on first use)

        names = self.graph.names
        with NoGC():
            shape = [
                [name, [names[j] for j in d] if d else [], list(kw), [[p, n] for p, n, _ in ins] if ins else [],
                 o.map, o.batch_size, o.trigger]
                for name, d, kw, ins, o in zip(names, self.graph._deps, self.dep_kwnames, self.input_params,
                                               self.options)
            ]
            return str(sha256(json.dumps(shape).encode()).hexdigest()[:32])

    def graph_json(self) -> str:
        """The structure a store keeps for reports: names and dependency indices."""
        import json  # (import time: json loads on first use)

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


def _dep_names(
    kwnames: "Sequence[tuple[str, ...]]", given: "list[tuple[str, ...]]", names: "Sequence[str]",
    deps: "list[tuple[int, ...]]",
) -> bool:
    """Whether every step's keyword names are the names of its dependencies
    ``deps`` (as for steps of ``**kwargs``; ``given``: the steps' own
    ``depends_on``, which ``kwnames`` is when the flow was laid out together)."""
    if kwnames is given:
        return True
    if isinstance(kwnames, _Same):
        return kwnames.value == () and not any(deps)
    return all(kw == tuple(map(names.__getitem__, d)) for kw, d in zip(kwnames, deps))


def _bind(
    step: _Step, sig: _Signature, names: "Mapping[str, int]", problems: "list[str]"
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


#: Flows of at most this many steps keep a digest of each step's code with their runs.
CODE_LIMIT = 10_000


def code_digest(fn: "Callable[..., Any]", defaults: bool = True) -> str:
    """A digest of what ``fn`` runs: its code, and with ``defaults`` its default
    values (a ``functools.partial``'s keywords too).  A callable without code
    of its own is described by its ``__microdag_code__`` (what it runs,
    without defaults: a flow file's command step has one), else its qualified
    name.  Editing what is digested changes the digest.

    The cache keys outputs with the defaults (they change what a step
    returns); a resume compares the code alone, as a run records its inputs'
    values, defaults included.  Only what the code does counts: not its
    name, file or line numbers (see :func:`_what_code_does`).
    """
    digest = sha256()
    described = getattr(fn, "__microdag_code__", None)
    code = getattr(fn, "__code__", None)
    if described is not None and not defaults:
        digest.update(str(described).encode("utf-8", "surrogatepass"))
    elif code is not None:
        digest.update(marshal.dumps(_what_code_does(code)))
        if defaults:
            values = [getattr(fn, attr, None) for attr in ("__defaults__", "__kwdefaults__", "keywords")]
            digest.update(canonical(values))
    else:
        digest.update(repr(getattr(fn, "__qualname__", fn)).encode("utf-8", "surrogatepass"))
    return str(digest.hexdigest()[:16])


def _what_code_does(code: "Any") -> "tuple[Any, ...]":
    """A code object's instructions, names and constants (nested code objects
    likewise), without its name, file and line numbers: moving a function, or
    editing the lines above it, does not change what it does."""
    consts = tuple(_what_code_does(c) if hasattr(c, "co_code") else c for c in code.co_consts)
    return (code.co_code, consts, code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars,
            code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags)


def canonical(value: "Any") -> bytes:
    """``value`` as bytes for a digest: its JSON, else its pickle, else its repr."""
    import json  # (import time: json loads on first use)

    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    except (TypeError, ValueError):
        import pickle  # (import time: pickle loads on first use)

        try:
            return pickle.dumps(value, protocol=4)
        except Exception:
            return repr(value).encode()
