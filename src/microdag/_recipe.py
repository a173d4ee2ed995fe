"""An added step's recipe: how it is made again, in a resumed run or in the
run's process after a step in another process asked for it.

``microdag.context().add`` keeps, for each step it adds, a JSON-able
*recipe* (:func:`recipe`): the step that added it, its function as
``module:qualname``, its dependencies, inputs and options.  A durable store
records it (a resume makes the step again: ``runner._grow.recreate``); a
step running in another process (processes, an executor, Dask) cannot grow
its run, so its ``add`` makes the recipe there (:func:`carried`: the checks
that need no run: the name, the options, a function that can be found again
by name) and the recipe travels back with the attempt's result, where the
run applies it (``runner._grow.apply``) with the checks that need the run.
"""

from ._errors import FlowError
from ._steps import _Options, _Step

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

__all__ = ["carried", "checked_options", "find", "made_again", "name_of", "recipe"]


def checked_options(name: str, options: "dict[str, Any]") -> _Options:
    """An added step's options, checked as ``Flow.add`` checks them."""
    try:
        opts = _Options(f"step {name!r}", **options)
    except TypeError:
        known = _Options.__slots__
        raise FlowError(*[f"step {name!r}: unknown option {key!r}" for key in options if key not in known]) from None
    if opts.priority is not None:
        raise FlowError(f"step {name!r}: priority= ranks a flow's steps before a run; an added step takes none")
    return opts


def name_of(obj: "Any") -> "str | None":
    """``module:qualname`` of ``obj`` if importing it finds ``obj`` again, else ``None``."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    try:
        return f"{module}:{qualname}" if find(f"{module}:{qualname}") is obj else None
    except Exception:  # (not importable as named)
        return None


def find(spec: str) -> "Any":
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
    spec = name_of(fn)
    if spec is None and not in_memory:
        problems.append(
            f"step {name!r}: its function {getattr(fn, '__qualname__', fn)!r} cannot be found again by "
            "name (a lambda, a closure or a function not at a module's top level), which a resumed run "
            "(or a step in another process) needs: add a function defined at a module's top level"
        )
    kept = dict(options)
    if "retry_on" in kept:
        on = kept["retry_on"]
        classes = on if isinstance(on, tuple) else (on,)
        named = [name_of(c) for c in classes]
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


def made_again(made: "dict[str, Any]") -> "tuple[Any, dict[str, Any]]":
    """A recipe's function and options, found again by name (``fn``: ``None``
    stays ``None``, a function kept in this process only).

    Raises:
        ImportError, AttributeError: a name finds nothing.
    """
    spec = made["fn"]
    options = dict(made["options"])
    if "retry_on" in options:
        options["retry_on"] = tuple(find(c) for c in options["retry_on"])
    return (None if spec is None else find(spec)), options


def carried(
    who: str, name: str, fn: "Any", depends_on: "Iterable[str]", inputs: "Mapping[str, str] | None",
    options: "dict[str, Any]",
) -> "dict[str, Any]":
    """``context().add`` in a step that runs in another process: the recipe
    that carries the add back to the run, after the checks that need no run.

    Raises:
        FlowError: the step is refused (naming both steps).
    """
    try:
        if not isinstance(name, str) or not name:
            raise FlowError(f"a step name must be a non-empty string, not {name!r}")
        deps, binding = _Step.check(name, fn, depends_on, inputs)
        checked_options(name, options)
        return recipe(name, who, (fn, tuple(dict.fromkeys(deps)), binding, options), False)
    except FlowError as exc:
        raise FlowError(*[f"{problem} (added by step {who!r}, in another process)"
                          for problem in exc.problems]) from None
