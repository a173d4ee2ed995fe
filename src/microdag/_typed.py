"""How a typed value becomes JSON and back: annotations compiled once into converters.

:func:`converter` reads an annotation once and returns a :class:`Converter`
(or ``None`` when the annotation asks for plain JSON, the fast path: no
annotation, ``Any``, ``str``, ``int``, ``list[int]``, ``dict[str, float]``,
unions of those, a class this module does not know).  A converter has

- ``dump(value)`` -> a JSON value (``dict``, ``list``, ``str``, ``int``,
  ``float``, ``bool``, ``None``), checking that ``value`` is what the
  annotation says (exactly: a subclass would come back as its base);
- ``load(json_value)`` -> the value, checking every part against the
  annotation (an ``int`` field given ``"12"`` is refused, not converted);
- ``problems(json_value)`` -> every problem of a value, one line each (for
  inputs);
- ``dumps``/``loads``, the whole value as bytes (a Pydantic model that is the
  whole value goes through the serializer and validator that
  ``model_dump_json``/``model_validate_json`` call: ``whole`` says so).

Errors are :class:`ConvertError` (a ``ValueError``) naming ``what`` and the
path inside the value (``order.items[2].price``).

What each type becomes (docs/stores.md says it for users): a dataclass,
``NamedTuple`` or ``TypedDict`` an object of its fields; a Pydantic v2
model its JSON mode (``model_dump(mode="json")``, or its JSON text when it is
the whole value), loaded by its validator in strict mode; an ``Enum`` its value; ``datetime``/``date``/``time`` ISO 8601 text
(a ``zoneinfo`` zone kept by name: ``2024-03-01T09:00:00+01:00[Europe/Paris]``);
``timedelta`` ``P<days>DT<seconds>.<microseconds>S``; ``Decimal``, ``UUID`` and
paths their text; ``bytes`` base64; ``tuple``/``set``/``frozenset`` a list (a
set's sorted when its items sort); a ``dict`` with keys that are not text
has them as text (``int``, ``Enum``, ``UUID``, dates...).  A union is kept
as is when it is ``X | None`` or all plain JSON; any other union is tagged:
``null`` for ``None``, else ``{"type": "<member>", "value": <its JSON>}``,
``<member>`` the member's name (``Order``, ``int``, ``list[int]``).

Pydantic is never imported here: a model is known by its classes' module
names, and its own methods do the work.  A dataclass loads through a function
written for its class at its first load (``Fields``), as ``dataclasses``
writes ``__init__``: that keeps a load with every field checked within 2x of
``json.loads`` + the constructor (docs/performance.md).  The standard modules a type needs
(``datetime``, ``decimal``...) are loaded already when an annotation names
one of their classes.
"""

import sys

from ._schema import MISSING, _origin_args, _resolve, annotations, item_type
from ._typed_nodes import (
    ANY, PLAIN, Bad, Dict, Fields, Items, Model, Node, Plain, Refused, Scalar, Tuple, Union, kind,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._steps import _Steps

    #: Step name -> the converter of its output; map step name -> that of one unit's.
    Outputs = tuple[dict[str, "Converter"], dict[str, "Converter"]]

__all__ = ["ConvertError", "Converter", "converter", "step_outputs"]


class ConvertError(ValueError):
    """A value that does not fit its annotation; ``lines`` holds every problem
    found (``where: problem``), ``detail`` the first without the value's name."""

    def __init__(self, message: str, lines: "tuple[str, ...] | list[str]" = (), detail: str = "") -> None:
        super().__init__(message)
        self.lines = list(lines) or [message]
        self.detail = detail or message

    def __reduce__(self) -> "tuple[Any, ...]":
        return type(self), (str(self), self.lines, self.detail)


def _say(what: str, path: str, problem: str) -> str:
    if not path:
        return f"{what}: {problem}"
    if what.isidentifier():
        return f"{what}{path}: {problem}"
    return f"{what}, at {path.lstrip('.')}: {problem}"


class Converter:
    """An annotation compiled: see the module docs."""

    __slots__ = ("_node", "what", "name", "whole")

    def __init__(self, node: "Node", what: str) -> None:
        self._node = node
        self.what = what
        #: The annotation in a few words (``Order``, ``list[Order]``).
        self.name = node.name
        #: The whole value has a faster way to and from bytes (a Pydantic model).
        self.whole = isinstance(node, Model)

    def __repr__(self) -> str:
        return f"<Converter {self.name} for {self.what}>"

    def _error(self, bad: Bad) -> ConvertError:
        where = bad.where()
        detail = f"at {where.lstrip('.')}: {bad.problem}" if where else bad.problem
        return ConvertError(_say(self.what, where, bad.problem), detail=detail)

    def dump(self, value: "Any") -> "Any":
        """``value`` as a JSON value.

        Raises:
            ConvertError: ``value`` is not what the annotation says.
        """
        try:
            return self._node.dump(value)
        except Bad as bad:
            raise self._error(bad) from None

    def load(self, value: "Any") -> "Any":
        """The value a JSON value stands for.

        Raises:
            ConvertError: ``value`` does not fit the annotation (the first problem).
        """
        try:
            return self._node.load(value)
        except Bad as bad:
            raise self._error(bad) from None

    def problems(self, value: "Any") -> "list[str]":
        """Every problem of JSON value ``value``, one line each (empty: it loads)."""
        out: list[tuple[str, str]] = []
        self._node.collect(value, "", out)
        return [_say(self.what, path, problem) for path, problem in out]

    def dumps(self, value: "Any") -> bytes:
        """``value`` as JSON bytes (compact; only the JSON codec's encoder writes
        the rest, so call this for a Pydantic model that is the whole value)."""
        node = self._node
        if self.whole:
            cls: Any = node.cls  # type: ignore[attr-defined]
            if type(value) is not cls:
                raise self._error(Bad(f"expected {node.name}, not {kind(value)}"))
            data: bytes = cls.__pydantic_serializer__.to_json(value)  # (what model_dump_json calls)
            return data
        import json  # (import time: json loads on first use)

        return json.dumps(self.dump(value), separators=(",", ":"), allow_nan=False).encode()

    def loads(self, data: bytes) -> "Any":
        """What :meth:`dumps` (or the JSON codec) wrote.

        Raises:
            ConvertError: the JSON does not fit the annotation; ValueError: it is not JSON.
        """
        node = self._node
        if self.whole:
            try:
                return node.cls.__pydantic_validator__.validate_json(data, strict=True)  # type: ignore[attr-defined]
            except ValueError as exc:  # (pydantic's ValidationError is one)
                lines = Model.errors(exc, "")
                where, problem = lines[0]
                raise ConvertError(_say(self.what, where, problem), [_say(self.what, *line) for line in lines],
                                   f"at {where.lstrip('.')}: {problem}" if where else problem) from None
        import json  # (import time: json loads on first use)

        try:
            return node.load(json.loads(data))
        except Bad as bad:
            raise self._error(bad) from None


def converter(annotation: "Any", what: str) -> "Converter | None":
    """``annotation`` compiled into a :class:`Converter` whose errors name
    ``what`` (``"order"``, ``"the output of step 'make'"``); ``None`` when
    values of it are plain JSON, kept as they are."""
    node = _compile(annotation, {})
    return None if node.plain else Converter(node, what)


def step_outputs(steps: "_Steps", start: int = 0) -> "Outputs":
    """The converters of the outputs of ``steps`` (from the ``start``-th on)
    by their functions' return annotations (read once here, each function
    once): a map step's unit by the annotation (a batch's ``list[X]`` too),
    its output as the list of its items (``X`` or the batch's ``list[X]``'s
    ``X``); plain JSON outputs have none."""
    returns: dict[int, Any] = {}
    outs: dict[str, Converter] = {}
    units: dict[str, Converter] = {}
    for name, fn, opts in zip(steps.names[start:], steps.fns[start:], steps.opts[start:]):
        ann = returns.get(id(fn), returns)
        if ann is returns:
            ann = returns[id(fn)] = annotations(fn).get("return", MISSING)
        if ann is MISSING:
            continue
        if opts.map is None:
            out = converter(ann, f"the output of step {name!r}")
        else:
            unit = converter(ann, f"an item's output of step {name!r}")
            if unit is not None:
                units[name] = unit
            item = item_type(ann) if opts.batch_size is not None else ann
            whole = list[item]  # type: ignore[valid-type]  # (a map's output: the list of its items')
            out = None if item is MISSING else converter(whole, f"the output of step {name!r}")
        if out is not None:
            outs[name] = out
    return outs, units


# -- compiling --------------------------------------------------------------------------

_CACHE: "dict[Any, Node]" = {}


def _compile(ann: "Any", memo: "dict[type, Node]") -> Node:
    try:
        return _CACHE[ann]
    except (KeyError, TypeError):
        pass
    node = _make(ann, memo)
    try:
        _CACHE[ann] = node
    except TypeError:
        pass  # (an annotation that does not hash is compiled each time it is met)
    return node


def _make(ann: "Any", memo: "dict[type, Node]") -> Node:
    if ann is MISSING or ann is object:
        return ANY
    if ann is None or ann is type(None):
        return PLAIN[type(None)]
    if type(ann).__name__ == "_AnnotatedAlias":  # Annotated[X, ...]: X
        return _compile(ann.__origin__, memo)
    origin, args = _origin_args(ann)
    if origin == "literal":
        values = args
        return Plain(repr(ann).replace("typing.", ""), lambda v: any(type(v) is type(x) and v == x for x in values))
    if origin == "union":
        nullable = any(a is None or a is type(None) for a in args)
        members = [_compile(a, memo) for a in args if a is not None and a is not type(None)]
        if len({m.name for m in members}) < len(members):
            return Refused(repr(ann), f"the union {ann!r} has members of the same name: it cannot be told apart "
                                       "when read back")
        return Union(members, nullable)
    if origin in (list, set, frozenset) or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        return Items(origin, _compile(args[0], memo) if args else ANY)
    if origin is tuple:
        return Items(tuple, ANY) if not args else Tuple([_compile(a, memo) for a in args if a != ()])
    if origin is dict:
        key, value = (_compile(args[0], memo), _compile(args[1], memo)) if len(args) == 2 else (PLAIN[str], ANY)
        return Dict(key, value)
    if isinstance(origin, type) and not args:
        if origin in PLAIN:
            return PLAIN[origin]
        found = memo.get(origin)
        if found is not None:
            return found
        return _class(origin, memo)
    return ANY  # a type variable, a protocol's generic, a name that did not resolve: as it is


def _class(cls: type, memo: "dict[type, Node]") -> Node:
    scalar = _scalar(cls)
    if scalar is not None:
        return scalar
    if any(c.__name__ == "BaseModel" and c.__module__.startswith("pydantic") for c in cls.__mro__[1:]):
        return Model(cls)
    hints = getattr(cls, "__annotations__", None)
    fields = getattr(cls, "__dataclass_fields__", None)
    if isinstance(fields, dict):
        import dataclasses  # (import time: loaded already by a dataclass)

        node = memo[cls] = Fields(cls, "dataclass")
        kept = {f.name: f for f in dataclasses.fields(cls)}  # (not ClassVar, not InitVar)
        node.fields = {n: _compile(_resolve(f.type, cls), memo) for n, f in kept.items()}
        node.required = frozenset(n for n, f in kept.items() if f.init and f.default is dataclasses.MISSING
                                  and f.default_factory is dataclasses.MISSING)
        node.late = tuple(n for n, f in kept.items() if not f.init)
        return node
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):  # a NamedTuple (or a namedtuple, untyped)
        node = memo[cls] = Fields(cls, "namedtuple")
        defaults = getattr(cls, "_field_defaults", {})
        node.fields = {n: _compile(_resolve((hints or {}).get(n, MISSING), cls), memo) for n in cls._fields}
        node.required = frozenset(n for n in cls._fields if n not in defaults)
        return node
    if hasattr(cls, "__required_keys__") and isinstance(hints, dict):  # a TypedDict
        node = memo[cls] = Fields(cls, "typeddict")
        node.fields = {n: _compile(_resolve(v, cls), memo) for n, v in hints.items()}
        node.required = frozenset(cls.__required_keys__)
        return node
    return ANY  # a class this module does not know: kept as JSON if it is JSON, else refused by the codec


def _scalar(cls: type) -> "Node | None":
    enum = sys.modules.get("enum")
    if enum is not None and issubclass(cls, enum.Enum):
        return Scalar(cls, lambda v: v.value, cls, exact=False)
    module, name = cls.__module__, cls.__qualname__
    if module == "datetime" and name in ("datetime", "date", "time"):
        return Scalar(cls, _iso, lambda v: _from_iso(cls, v))
    if module == "datetime" and name == "timedelta":
        return Scalar(cls, lambda v: f"P{v.days}DT{v.seconds}.{v.microseconds:06d}S", _duration)
    if (module, name) in (("decimal", "Decimal"), ("_decimal", "Decimal"), ("uuid", "UUID")):
        return Scalar(cls, str, lambda v: cls(_text(v)))
    if module == "pathlib" and any(c.__name__ == "PurePath" for c in cls.__mro__):
        return Scalar(cls, str, lambda v: cls(_text(v)), exact=False)
    if cls is bytes:
        return Scalar(cls, _b64, _from_b64)
    return None


def _text(value: "Any") -> str:
    if type(value) is not str:
        raise TypeError()  # (the node says what it expected)
    return value


def _iso(value: "Any") -> str:
    text: str = value.isoformat()
    key = getattr(value.tzinfo, "key", None) if type(value).__name__ == "datetime" else None
    return f"{text}[{key}]" if isinstance(key, str) else text


def _from_iso(cls: "Any", value: "Any") -> "Any":
    text, _, zone = _text(value).partition("[")
    made = cls.fromisoformat(text)
    if zone:
        import zoneinfo  # (import time: only a value that was kept with its zone)

        if not zone.endswith("]") or made.tzinfo is None:
            raise ValueError("a zone is written [Area/City] after an offset")
        wall = made.replace(tzinfo=zoneinfo.ZoneInfo(zone[:-1]))
        for fold in (0, 1):  # (the same wall time and offset: a time the clocks went back over, or skipped)
            kept = wall.replace(fold=fold)
            if kept.utcoffset() == made.utcoffset():
                return kept
        raise ValueError(f"offset {text[-6:]} is not one of zone {zone[:-1]}'s at that time")
    return made


def _duration(value: "Any") -> "Any":
    import datetime  # (loaded already: the annotation names timedelta)

    text = _text(value)
    if not (text.startswith("P") and "DT" in text and text.endswith("S")):
        raise ValueError("expected P<days>DT<seconds>.<microseconds>S")
    days, _, rest = text[1:-1].partition("DT")
    seconds, _, micro = rest.partition(".")
    if len(micro) != 6 or not micro.isdigit() or not seconds.isdigit():
        raise ValueError("expected P<days>DT<seconds>.<microseconds>S")
    return datetime.timedelta(days=int(days), seconds=int(seconds), microseconds=int(micro))


def _b64(value: bytes) -> str:
    import base64  # (import time: only bytes need it)

    return base64.b64encode(value).decode()


def _from_b64(value: "Any") -> bytes:
    import base64  # (import time: only bytes need it)

    return base64.b64decode(_text(value), validate=True)
