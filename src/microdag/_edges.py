"""Which annotations meet: what a step returns and what a parameter takes, a value and its annotation.

- :func:`clash` says whether a step's return annotation can never feed a
  parameter's (``validate()`` refuses the edge, naming both steps): only
  when both are classes whose values are known (built-in types,
  dataclasses, Pydantic models, enums, ``NamedTuple``, ``datetime``...:
  ``_schema._known``) and neither is a subclass of the other (built-in
  types as assignment allows: ``bool`` is an ``int``, an ``int`` is a
  ``float``, an ``int`` is never a ``bool``); lists, sets and dicts
  item-wise.  Anything else (``Any``, ``object``, unions, type variables,
  protocols, other classes, names that do not resolve, such as those
  imported under ``TYPE_CHECKING``) is accepted: no false positives.
- :func:`fits` says whether a value already is of an annotation, as deep as
  its containers go: a run's input that is passed to the step as it is
  rather than read from JSON into its class.
"""

from ._schema import _BUILTINS, MISSING, _is_any, _known, _origin_args, _same

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["clash", "fits"]


def clash(produced: "Any", wanted: "Any") -> bool:
    """Whether a value annotated ``produced`` can never be what ``wanted``
    annotates (when in doubt: no).

    Only classes whose values are known are compared: built-in types, and
    data classes (dataclasses, Pydantic models, ``Enum``, ``NamedTuple``,
    ``datetime``, ``Decimal``, ``UUID``, ``Path``...; a ``TypedDict`` is a
    ``dict``).  They clash when neither is a subclass of the other (a subclass
    wanted may be what a base's annotation returns), except between built-in
    types, compared as assignment allows (``bool`` is an ``int``, an ``int``
    a ``float``, an ``int`` never a ``bool``); lists, sets and dicts item-wise.
    Anything else (``Any``, ``object``, unions, type variables, protocols,
    other classes, names that do not resolve) never clashes."""
    if produced is MISSING or wanted is MISSING:
        return False
    p_origin, p_args = _origin_args(None if produced is None else produced)
    w_origin, w_args = _origin_args(None if wanted is None else wanted)
    p_kind, w_kind = _known(p_origin), _known(w_origin)
    if p_kind is None or w_kind is None:
        return False
    if not _assignable(p_kind, w_kind):
        return p_kind in _BUILTINS and w_kind in _BUILTINS or not issubclass(w_kind, p_kind)
    if p_origin in (list, set, frozenset) and w_origin is p_origin and len(p_args) == 1 and len(w_args) == 1:
        return clash(p_args[0], w_args[0])
    if p_origin is dict and w_origin is dict and len(p_args) == 2 and len(w_args) == 2:
        return clash(p_args[0], w_args[0]) or clash(p_args[1], w_args[1])
    return False


def _assignable(produced: type, wanted: type) -> bool:
    if produced is wanted or issubclass(produced, wanted):
        return True
    return (produced, wanted) in {(int, float), (int, complex), (float, complex), (bool, float), (bool, complex)}


def fits(ann: "Any", value: "Any") -> bool:
    """Whether ``value`` already is of annotation ``ann``, as deep as its
    lists, tuples, sets and dicts go (a class: ``isinstance``; anything this
    cannot tell, such as a type variable: yes)."""
    return _fits(ann, value, 0)


def _fits(ann: "Any", value: "Any", depth: int) -> bool:
    if ann is MISSING or _is_any(ann) or ann is object or depth > 20:
        return True
    if ann is None:
        return value is None
    if type(ann).__name__ == "_AnnotatedAlias":
        return _fits(ann.__origin__, value, depth + 1)
    origin, args = _origin_args(ann)
    if origin == "literal":
        return any(_same(value, a) for a in args)
    if origin == "union":
        return any(_fits(a, value, depth + 1) for a in args)
    if not isinstance(origin, type):
        return True
    if hasattr(origin, "__required_keys__"):  # a TypedDict: a dict at run time
        return isinstance(value, dict)
    if origin is float:
        return isinstance(value, (int, float))
    try:
        if not isinstance(value, origin):
            return False
    except TypeError:  # (a protocol that cannot be checked at run time)
        return True
    return _items_fit(origin, args, value, depth)


def _items_fit(origin: type, args: "tuple[Any, ...]", value: "Any", depth: int) -> bool:
    """Whether the items of container ``value`` (of class ``origin``) fit ``args``."""
    if origin in (list, set, frozenset) and len(args) == 1:
        return all(_fits(args[0], item, depth + 1) for item in value)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return all(_fits(args[0], item, depth + 1) for item in value)
    if origin is tuple and args:
        return len(value) == len(args) and all(_fits(a, item, depth + 1) for a, item in zip(args, value))
    if origin is dict and len(args) == 2:
        return all(_fits(args[0], k, depth + 1) and _fits(args[1], v, depth + 1) for k, v in value.items())
    return True
