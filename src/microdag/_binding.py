"""Binding a flow's step parameters: signatures, the call layout, annotation clashes.

Per parameter of a step's function:

1. ``inputs={"param": "step"}`` binds it to that step's output;
2. else a parameter named like a step receives that step's output;
3. else it is a flow input, given to ``run``; a default makes it optional.

``depends_on`` adds order-only dependencies, except that a ``**kwargs``
parameter receives the outputs of every declared dependency not already
bound to a named parameter, keyed by step name.

A flow whose functions all take only ``**kwargs`` (or nothing) is laid out a
list at a time (:func:`_layout_together`); any other is bound step by step
(:func:`_layout_each`), which also words every problem.  ``_plan`` compiles
the layout into the plan; this module keeps no state.
"""

from types import FunctionType as _FUNCTION

from ._steps import _NO_BINDING, _Same, _Step, _Steps

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from ._steps import _Options

    #: What binding makes of a flow's steps, by step id: their dependencies
    #: (each once), the keyword names their dependencies' outputs are passed
    #: as and the steps giving them (in that order), their flow inputs
    #: (``(param, input, default)``) and whether each is a coroutine function.
    Layout = tuple[list[tuple[str, ...]], list[tuple[str, ...]], list[tuple[str, ...]],
                   list[tuple[tuple[str, str, object], ...]], list[bool]]

__all__ = ["NO_DEFAULT"]

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
    parameter item-wise); see ``_edges.clash`` for what counts as sure.
    ``fns``, ``signatures``: the flow's functions and their signatures, by
    the function's id."""
    from ._edges import clash  # (loads with the first compile, not with a flow's definition)
    from ._schema import MISSING, annotations, item_type  # (as _edges)

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
            by_key = step.key is not None and producer.key is not None and step.map != param  # (aligned by key)
            if producer.map is not None and producer.batch_size is None and produced is not MISSING and not by_key:
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


#: Up to this many distinct functions, a flow is laid out together (``_layout_together``).
_FEW = 64


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
