"""Checking a step as a flow is built: ``Flow.add``, ``add_many`` and a flow's declared inputs.

:func:`_checked` turns ``Flow.add``'s arguments into the step's columns (its
dependencies, binding, shared options and dependency ids), the usual step in
a few comparisons; :func:`_many` does the same for ``add_many``, a list at a
time.  A step that fails a check is checked again the careful way, so that
one :class:`FlowError` lists every problem.  What needs the whole flow is
checked when it compiles (``_plan``).
"""

from ._compat import sched
from ._errors import FlowError
from ._steps import _DEFAULTS, _NO_BINDING, _Options, _Step

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any, Literal

__all__ = ["_checked", "_declared", "_many"]


def _many(
    shared: "dict[tuple[Any, ...], _Options]", names: "Iterable[str]", fn: "Callable[..., Any]",
    depends_on: "Iterable[Any] | None", inputs: "Iterable[Any] | None", options: "tuple[Any, ...]",
) -> "tuple[list[str], list[tuple[str, ...]], list[dict[str, str]] | None, _Options]":
    """``add_many``'s steps, checked: their names, dependencies (each once,
    in order), bindings (``None``: none) and shared options (no step: none
    checked).

    Raises:
        FlowError: every problem found.
    """
    names = list(names)
    problems: list[str] = []
    if set(map(type, names)) - {str}:
        problems.extend(f"a step name must be a non-empty string, not {x!r}"
                        for x in names if not isinstance(x, str) or not x)
    deps = _per_step("depends_on", depends_on, len(names), problems)
    binding = _per_step("inputs", inputs, len(names), problems)
    if problems:
        raise FlowError(*problems)
    if not names:
        return names, [], None, _Options.DEFAULT
    try:
        deps_of, bindings = _Step.check_many(names, fn, deps, binding)
        opts = _Options.shared(shared, names[0], options)
    except FlowError:  # every problem, in one error
        raise FlowError(*_every_problem(lambda: _Step.check_many(names, fn, deps, binding),
                                        lambda: _Options(f"step {names[0]!r}", *options))) from None
    return names, deps_of, bindings, opts


def _every_problem(*checks: "Callable[[], object]") -> "list[str]":
    """The problems of every one of ``checks`` (each raises ``FlowError`` or not)."""
    problems: list[str] = []
    for check in checks:
        try:
            check()
        except FlowError as exc:
            problems.extend(exc.problems)
    return problems


def _checked(
    index: "dict[str, int]", shared: "dict[tuple[Any, ...], _Options]", flow: str, name: str,
    fn: "Callable[..., Any]", depends_on: "Iterable[str]", inputs: "Mapping[str, str] | None",
    options: "tuple[Any, ...]",
) -> "tuple[tuple[str, ...], dict[str, str], _Options, tuple[int, ...] | None]":
    """The columns of ``Flow.add``'s step, checked: its dependencies (each
    once, in order), binding, options and dependency ids (``None``: one is
    defined later).

    Raises:
        FlowError: every problem of the step.
    """
    if type(name) is not str or not name:
        if not isinstance(name, str) or not name:
            raise FlowError(f"a step name must be a non-empty string, not {name!r}")
    if name in index:
        raise FlowError(f"step {name!r} is defined more than once in flow {flow!r}")
    # The usual step, names met once and no inputs, is checked here in
    # passing; ``ids``: its dependencies' ids, found while they are fresh
    # in memory (None: one is defined later), or False for the careful way.
    if inputs is None and (type(depends_on) is list or type(depends_on) is tuple) and callable(fn):
        deps = tuple(depends_on)
        ids: "tuple[int, ...] | Literal[False] | None" = sched.ids_of(index, deps) if deps else ()
    else:
        ids = False
    try:
        if ids is False:
            deps, binding = _Step.check(name, fn, depends_on, inputs)
            deps = tuple(dict.fromkeys(deps))  # each name once, in order
            ids = (sched.ids_of(index, deps) or None) if deps else ()
        else:
            binding = _NO_BINDING
        if options == _DEFAULTS and type(options[0]) is int and type(options[1]) is float and \
                type(options[10]) is bool:
            opts = _Options.DEFAULT  # the usual case, checked in a few comparisons
        else:
            opts = _Options.shared(shared, name, options)
    except FlowError:  # every problem of the step, in one error
        raise FlowError(*_step_problems(name, fn, depends_on, inputs, options)) from None
    return deps, binding, opts, ids


def _step_problems(
    name: str, fn: "Callable[..., Any]", depends_on: "Iterable[str]", inputs: "Mapping[str, str] | None",
    options: "tuple[Any, ...]",
) -> "list[str]":
    """Every problem of ``add``'s step (kept out of ``add``, whose closures
    would otherwise cost every call)."""
    return _every_problem(lambda: _Step.check(name, fn, depends_on, inputs),
                          lambda: _Options(f"step {name!r}", *options))


def _per_step(option: str, values: "Iterable[Any] | None", n: int, problems: "list[str]") -> "list[Any] | None":
    """``values`` of ``add_many``'s ``option`` as a list, one per name (``None``: not given)."""
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        problems.append(f"add_many: {option} must be one entry per step, not {values!r}")
        return None
    out = list(values)
    if len(out) != n:
        problems.append(f"add_many: {option} has {len(out)} entries for {n} step names")
    return out


def _declared(flow: str, inputs: "Mapping[str, Mapping[str, Any]] | Iterable[str]") -> "dict[str, dict[str, Any]]":
    """``Flow(inputs=...)`` as input name -> JSON Schema."""
    if isinstance(inputs, str):
        inputs = (inputs,)
    pairs = inputs.items() if hasattr(inputs, "items") else ((name, {}) for name in inputs)
    out: dict[str, dict[str, Any]] = {}
    for key, schema in pairs:
        if not isinstance(key, str) or not key.isidentifier():
            raise FlowError(f"flow {flow!r}: input names must be identifiers, not {key!r}")
        if not hasattr(schema, "items"):
            raise FlowError(f"flow {flow!r}: input {key!r} must be given a JSON Schema (a dict), not {schema!r}")
        out[key] = dict(schema)
    return out
