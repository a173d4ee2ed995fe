"""A flow file's calls into Python: finding a ``call`` step's function, and what it receives from the file.

A ``call`` step's module is imported with the flow file's folder at the front
of ``sys.path`` (:func:`on_path`), left there so that worker processes
started later import it too (:func:`import_module`: the module, or why it
cannot be had).  A ``call`` or ``python`` step's parameters declared in
``[inputs]`` take their defaults from there (:func:`bound`); a ``call``
step's function then becomes a :class:`WithDefaults` (a
``functools.partial``), which still pickles and still reads as async to the
runner when the function is.  An input's ``type = "module:Class"`` is found
the same way (:func:`named`), and its default is read into that class
(:func:`input_class`, :func:`class_default`).
"""

import functools
import sys

from ._binding import _Signature
from ._command import Required

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    _PartialBase = functools.partial[Any]
else:
    _PartialBase = functools.partial

__all__ = ["WithDefaults", "bound", "class_default", "import_module", "input_class", "named", "on_path", "reason"]


def bound(
    name: str, fn: "Callable[..., Any]", options: "dict[str, Any]", defaults: "dict[str, Any]",
    steps: "Mapping[str, Any]",
) -> "tuple[dict[str, Any], list[str]] | None":
    """What a call or python step's function receives from the file: the
    defaults ``[inputs]`` gives its parameters, and the steps its parameters
    name (None: its signature cannot be read)."""
    try:
        params = [p for p, _ in _Signature(fn).params]
    except (TypeError, ValueError):
        return None
    mapped = options.get("inputs", {})
    free = [p for p in params if p not in mapped]
    given = {p: defaults[p] for p in free if p in defaults and p not in steps and defaults[p] is not Required}
    return given, [p for p in free if p in steps and p != name]


def import_module(module_name: str, folder: str) -> object:
    """The module, or the reason it cannot be imported (a str)."""
    import importlib  # (import time: importlib loads on first use)

    on_path(folder)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            return (
                f"cannot import module {module_name!r} ({exc}; looked in the flow file's "
                "folder and sys.path)"
            )
        return f"importing module {module_name!r} raised {reason(exc)}"
    except Exception as exc:
        return f"importing module {module_name!r} raised {reason(exc)}"


def named(target: str, folder: str, modules: "dict[str, object]") -> "tuple[object, str | None]":
    """What ``module:attr`` names, or why it cannot be had (``modules`` keeps
    each module met, or why it does not import, so it is imported once)."""
    module_name, _, attr = target.partition(":")
    module = modules.get(module_name)
    if module is None:
        module = modules[module_name] = import_module(module_name, folder)
    if isinstance(module, str):
        return None, module
    value: object = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            return None, f"module {module_name!r} has no attribute {attr!r}"
    return value, None


def input_class(target: str, folder: str, modules: "dict[str, object]") -> "tuple[type | None, str | None]":
    """The class an input's ``type = "module:Class"`` names, or why it cannot be one."""
    from ._schema import schema_of  # (a flow file naming a class only)

    cls, why = named(target, folder, modules)
    if why is not None:
        return None, why
    if not isinstance(cls, type):
        return None, f"{target.partition(':')[2]!r} is not a class (it is of type {type(cls).__name__})"
    if not set(schema_of(cls)) - {"description"}:
        return None, (f"class {cls.__qualname__!r} cannot be read from JSON (a dataclass, a Pydantic model, an "
                      "Enum, a TypedDict, a NamedTuple, a datetime, a Decimal... can)")
    return cls, None


def class_default(cls: type, label: str, default: "Any") -> "tuple[Any, list[str]]":
    """An input's ``default`` (JSON) read into its class ``cls`` (as runs read
    given inputs), and its problems, each starting with ``label``."""
    from ._typed import converter  # (a flow file naming a class only)

    convert = converter(cls, label)
    if convert is None:  # (a TypedDict of plain values: its JSON is its value)
        return default, []
    try:
        return convert.load(default), []
    except ValueError:
        return default, convert.problems(default)


def reason(exc: BaseException) -> str:
    """An exception as ``Type: message``, as problems quote it."""
    return f"{type(exc).__name__}: {exc}"


def on_path(folder: str) -> None:
    """Put ``folder`` at the front of ``sys.path`` (unless it is there already)."""
    if not sys.path or sys.path[0] != folder:
        sys.path.insert(0, folder)


class WithDefaults(_PartialBase):
    """A ``call`` step's function with defaults for the flow inputs of ``[inputs]``.

    A :class:`functools.partial`: the runner reads its signature (those
    parameters have defaults), sees through it to an async function, and
    pickles it by reference to the function; the cache keys it by the
    function's code, as it would the function itself.
    """

    @property
    def __code__(self) -> object:
        return getattr(self.func, "__code__", None)

    def __repr__(self) -> str:
        fn = self.func
        name = getattr(fn, "__qualname__", None) or repr(fn)
        given = ", ".join(f"{k}={v!r}" for k, v in self.keywords.items())
        return f"{getattr(fn, '__module__', '?')}.{name} (defaults: {given})"
