"""Types at the edges of a flow: JSON Schema of its inputs, checked values, checked edges.

Three jobs, all driven by the annotations users already write:

- :func:`schema_of` turns an annotation into a JSON Schema (draft 2020-12)
  fragment of the JSON that stands for its values (as ``_typed``'s
  converters write and read it): ``str``, ``int``, ``float``, ``bool``,
  ``None``, ``list[X]``, ``tuple[...]``, ``set[X]``, ``dict[str, X]``,
  ``Literal[...]``, ``Enum`` classes (their values), unions (``X | None``;
  one of classes is tagged, ``{"type": NAME, "value": ...}``), ``TypedDict``,
  dataclasses and ``NamedTuple`` (objects of their fields), Pydantic models
  (the model's own ``model_json_schema()``, its nested models under
  ``$defs``: :func:`lift_defs` moves them to the top), ``datetime``,
  ``date``, ``time``, ``timedelta``, ``Decimal``, ``UUID``, paths and
  ``bytes`` (text, with a ``format``), ``Any``.  What JSON Schema cannot say
  becomes ``{}`` (anything) with a description naming the type: never an
  error, never a crash.  :func:`typed` says whether an annotation names
  such a class (its inputs are converted).
- :func:`problem` checks a value against such a fragment (the subset this
  module writes, plus what a flow file may declare: ``type``, ``enum``, and
  the keywords of the flow file's own rules: ``minLength``, ``pattern``,
  ``minimum``, ``maximum``, ``exclusiveMinimum``), returning what is wrong
  in words, or ``None``.  It is the one checker: run inputs, typed
  declarations and every key of a flow file go through it.  A bound is a
  bound on a real number: NaN and infinities break any of them (JSON has
  neither).  :func:`describe` says a schema in a few words.
- Which annotations meet (a step's output and a parameter, a value and its
  annotation) is ``_edges``'s (``clash``, ``fits``), on this module's
  reading of annotations (:func:`_known`: the classes whose values are known).

Annotations are read from ``fn.__annotations__``; strings (``from __future__
import annotations``) are evaluated in the function's globals, and one that
does not evaluate counts as absent.  :mod:`typing` is consulted only when
the annotation came from it (so it is already imported).
"""

import math
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["ALLOW_INF_NAN", "INF_NAN", "MISSING", "annotations", "describe", "is_model", "item_type", "lift_defs",
           "problem", "schema_of", "tag", "typed"]

#: An annotation that is absent, or that could not be evaluated.
MISSING = object()

#: The schema keyword that lets a number be NaN or infinite (JSON has neither,
#: and a float input given ``NaN`` is almost always a mistake).
INF_NAN = "x-allow-inf-nan"


class _AllowInfNan:
    """The type of :data:`ALLOW_INF_NAN`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "microdag.ALLOW_INF_NAN"

    def __reduce__(self) -> str:
        return "ALLOW_INF_NAN"


#: ``Annotated[float, ALLOW_INF_NAN]``: this input may be NaN or infinite.
ALLOW_INF_NAN = _AllowInfNan()

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}
_BUILTINS = (str, int, float, bool, bytes, list, dict, tuple, set, frozenset, complex, type(None))


def annotations(fn: "Callable[..., Any]") -> "dict[str, Any]":
    """The evaluated annotations of function ``fn``'s parameters and return
    (``"return"``); names that do not evaluate are left out, and so is
    everything of a callable that is not a function, a method, a
    ``functools.partial`` of one or an object whose ``__call__`` is one."""
    target: Any = fn
    for _ in range(5):  # unwrap: decorators, partials, bound methods, callable objects
        if hasattr(target, "__wrapped__"):
            target = target.__wrapped__
        elif hasattr(target, "func") and type(target).__name__ == "partial":
            target = target.func
        elif hasattr(target, "__func__"):
            target = target.__func__
        elif type(target).__name__ != "function" and not isinstance(target, type) and hasattr(type(target), "__call__"):
            target = type(target).__call__
        else:
            break
    if type(target).__name__ != "function":
        return {}
    raw = target.__annotations__
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if isinstance(value, str):
            try:
                value = eval(value, dict(target.__globals__))  # noqa: S307 - what typing.get_type_hints does
            except Exception:
                continue
        out[name] = value
    return out


def _origin_args(ann: "Any") -> "tuple[Any, tuple[Any, ...]]":
    """``(origin, args)`` of a generic (``list[int]`` -> ``(list, (int,))``), or ``(ann, ())``."""
    origin = getattr(ann, "__origin__", None)
    if origin is None:
        if type(ann).__name__ == "UnionType":  # int | None
            return "union", tuple(ann.__args__)
        return ann, ()
    args = tuple(getattr(ann, "__args__", ()) or ())
    if "typing" in sys.modules:
        import typing  # (import time: typing loads on first use)

        if origin is typing.Union:
            return "union", args
        if origin is typing.Literal:
            return "literal", args
    return origin, args


def _is_any(ann: "Any") -> bool:
    return "typing" in sys.modules and ann is sys.modules["typing"].Any


def schema_of(ann: "Any") -> "dict[str, Any]":
    """The JSON Schema of values of annotation ``ann`` (``{}``: anything)."""
    return _schema(ann, 0)


def _schema(ann: "Any", depth: int) -> "dict[str, Any]":
    if ann is MISSING or _is_any(ann) or ann is object or depth > 20:
        return {}
    if ann is None:
        return {"type": "null"}
    if type(ann).__name__ == "_AnnotatedAlias":  # Annotated[X, ...]: X, NaN allowed if it says so
        inner = _schema(ann.__origin__, depth + 1)
        if any(m is ALLOW_INF_NAN for m in ann.__metadata__):
            inner[INF_NAN] = True
        return inner
    origin, args = _origin_args(ann)
    if origin == "literal":
        return {"enum": list(args)} if len(args) != 1 else {"const": args[0]}
    if origin == "union":
        members = [a for a in args if a is not None and a is not type(None)]
        if len(members) > 1 and any(_typed(a, depth + 1) for a in members):  # tagged: one object per member
            return {"anyOf": [{"type": "null"} if a is None or a is type(None) else {
                "type": "object", "properties": {"type": {"const": tag(a)}, "value": _schema(a, depth + 1)},
                "required": ["type", "value"], "additionalProperties": False} for a in args]}
        return {"anyOf": [_schema(a, depth + 1) for a in args]}
    if isinstance(origin, type) and origin in _JSON_TYPES and not args:
        return {"type": _JSON_TYPES[origin]}
    if origin in (list, set, frozenset) or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        out: dict[str, Any] = {"type": "array"}
        if args:
            out["items"] = _schema(args[0], depth + 1)
        if origin in (set, frozenset):
            out["uniqueItems"] = True
        return out
    if origin is tuple:
        if not args or args == ((),):
            return {"type": "array", "maxItems": 0} if args else {"type": "array"}
        return {"type": "array", "prefixItems": [_schema(a, depth + 1) for a in args],
                "minItems": len(args), "maxItems": len(args)}
    if origin is dict:
        out = {"type": "object"}
        if len(args) == 2 and args[0] is str:
            out["additionalProperties"] = _schema(args[1], depth + 1)
        return out
    if isinstance(origin, type):
        return _class_schema(origin, depth)
    return _unknown(ann)


#: Classes JSON holds as text (or a number), by the module and name of the
#: class or of a base: the JSON Schema of their values.  Looked up by name, so
#: that no module is imported to ask (an annotation's class is loaded already).
_TEXT: "dict[tuple[str, str], dict[str, Any]]" = {
    ("datetime", "datetime"): {"type": "string", "format": "date-time"},
    ("datetime", "date"): {"type": "string", "format": "date"},
    ("datetime", "time"): {"type": "string", "format": "time"},
    ("datetime", "timedelta"): {"type": "string", "format": "duration"},
    ("decimal", "Decimal"): {"type": "string", "format": "decimal"},
    ("uuid", "UUID"): {"type": "string", "format": "uuid"},
    ("pathlib", "PurePath"): {"type": "string", "format": "path"},
    ("builtins", "bytes"): {"type": "string", "contentEncoding": "base64"},
}


def _as_text(cls: type) -> "dict[str, Any] | None":
    """The schema of a class JSON holds as text (:data:`_TEXT`: it or a base,
    by its top module's name: ``pathlib._local`` is ``pathlib``, ``_decimal``
    is ``decimal``), or ``None``."""
    for base in cls.__mro__:
        text = _TEXT.get((base.__module__.partition(".")[0].lstrip("_"), base.__qualname__))
        if text is not None:
            return text
    return None


def is_model(cls: "Any") -> bool:
    """Whether ``cls`` is a Pydantic (v2) model class, told by its bases'
    names: Pydantic is not imported to ask."""
    return isinstance(cls, type) and any(
        base.__name__ == "BaseModel" and base.__module__ == "pydantic.main" for base in cls.__mro__)


def tag(ann: "Any") -> str:
    """The name that tags a member of a union of classes in JSON
    (``{"type": "Order", "value": ...}``): a class's name, a generic's with
    its arguments' (``list[Order]``), ``None``."""
    if ann is None or ann is type(None):
        return "None"
    if type(ann).__name__ == "_AnnotatedAlias":
        return tag(ann.__origin__)
    origin, args = _origin_args(ann)
    if origin == "union":
        return " | ".join(map(tag, args))
    if not args:
        return getattr(ann, "__name__", None) or repr(ann).replace("typing.", "")
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        args = args[:1]
    return f"{getattr(origin, '__name__', origin)}[{', '.join(map(tag, args))}]"


def _class_schema(cls: type, depth: int) -> "dict[str, Any]":
    enum = sys.modules.get("enum")
    if enum is not None and issubclass(cls, enum.Enum):
        values = [m.value for m in getattr(cls, "__members__", {}).values()]
        if all(isinstance(v, (str, int, float, bool)) or v is None for v in values):
            return {"enum": values, "description": cls.__name__}
        return _unknown(cls)
    if is_model(cls):  # the model's own schema (its nested models under "$defs")
        try:
            return dict(cls.model_json_schema())  # type: ignore[attr-defined]
        except Exception:  # (a field JSON Schema cannot say)
            return _unknown(cls)
    text = _as_text(cls)
    if text is not None:
        return {**text, "description": cls.__name__}
    hints = getattr(cls, "__annotations__", None)
    if hasattr(cls, "__required_keys__") and isinstance(hints, dict):  # a TypedDict
        return {"type": "object", "properties": {k: _schema(_resolve(v, cls), depth + 1) for k, v in hints.items()},
                "required": sorted(cls.__required_keys__), "additionalProperties": False,
                "description": cls.__name__}
    fields = getattr(cls, "__dataclass_fields__", None)
    if isinstance(fields, dict):
        import dataclasses  # (import time: dataclasses loads on first use)

        properties = {}
        required = []
        for name, f in fields.items():
            if not f.init:
                continue
            properties[name] = prop = _schema(_resolve(f.type, cls), depth + 1)
            if f.default is not dataclasses.MISSING:
                if _plain(f.default):
                    prop["default"] = f.default
            elif f.default_factory is dataclasses.MISSING:
                required.append(name)
        return {"type": "object", "properties": properties, "required": required, "additionalProperties": False,
                "description": cls.__name__}
    fields = getattr(cls, "_fields", None)
    if issubclass(cls, tuple) and isinstance(fields, tuple):  # a NamedTuple: an object of its fields
        hints = hints if isinstance(hints, dict) else {}
        defaults = getattr(cls, "_field_defaults", {})
        properties = {}
        for name in fields:
            properties[name] = prop = _schema(_resolve(hints.get(name, MISSING), cls), depth + 1)
            if name in defaults and _plain(defaults[name]):
                prop["default"] = defaults[name]
        return {"type": "object", "properties": properties, "required": [n for n in fields if n not in defaults],
                "additionalProperties": False, "description": cls.__name__}
    return _unknown(cls)


def _plain(value: "Any") -> bool:
    """Whether ``value`` is JSON as it is (a default a schema can show)."""
    if value is None or type(value) in (str, int, bool):
        return True
    if type(value) is float:
        return math.isfinite(value)
    if type(value) in (list, tuple):
        return all(map(_plain, value))
    return type(value) is dict and all(type(k) is str and _plain(v) for k, v in value.items())


def _resolve(ann: "Any", cls: type) -> "Any":
    """A field's annotation, evaluated in its class's module when it is text
    (``from __future__ import annotations``); :data:`MISSING` when it does not evaluate."""
    text = ann if isinstance(ann, str) else getattr(ann, "__forward_arg__", None)
    if not isinstance(text, str):
        return ann
    module = sys.modules.get(cls.__module__)
    try:
        return eval(text, dict(vars(module)) if module is not None else {})  # noqa: S307
    except Exception:
        return MISSING


def _unknown(ann: "Any") -> "dict[str, Any]":
    name = getattr(ann, "__qualname__", None) or repr(ann)
    return {"description": f"a Python {name} (not checked: JSON Schema cannot describe it)"}


def lift_defs(schema: "Any", defs: "dict[str, Any]") -> "Any":
    """``schema`` without the ``$defs`` inside it (a Pydantic model's schema
    keeps its nested models there, referred to as ``#/$defs/NAME``), which go
    into ``defs``, to be the top level's: a schema holding models is then
    valid as a whole.  Of two different definitions of one name the later is
    renamed (``NAME_2``), and so are the references to it beside it."""
    if isinstance(schema, list):
        return [lift_defs(item, defs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    own = schema.get("$defs")
    if isinstance(own, dict):
        renamed: dict[str, str] = {}
        for name, sub in own.items():
            new, n = name, 1
            while new in defs and defs[new] != sub:
                n += 1
                new = f"{name}_{n}"
            if new != name:
                renamed[f"#/$defs/{name}"] = f"#/$defs/{new}"
        schema = _renamed({k: v for k, v in schema.items() if k != "$defs"}, renamed)
        for name, sub in _renamed(own, renamed).items():
            defs[renamed.get(f"#/$defs/{name}", f"#/$defs/{name}")[8:]] = lift_defs(sub, defs)
    return {k: lift_defs(v, defs) for k, v in schema.items()}


def _renamed(schema: "Any", renamed: "dict[str, str]") -> "Any":
    """``schema`` with its ``$ref`` values renamed by ``renamed``."""
    if not renamed:
        return schema
    if isinstance(schema, list):
        return [_renamed(item, renamed) for item in schema]
    if isinstance(schema, dict):
        return {k: renamed.get(v, v) if k == "$ref" and isinstance(v, str) else _renamed(v, renamed)
                for k, v in schema.items()}
    return schema


# -- Python values of an annotation ------------------------------------------------------


def typed(ann: "Any") -> bool:
    """Whether annotation ``ann`` names a class that JSON values are turned
    into (a dataclass, a Pydantic model, an ``Enum``, a ``datetime``, a
    ``tuple``...), anywhere inside it: an input of it is converted, unless
    the value given already is of it (``_edges.fits``)."""
    return _typed(ann, 0)


def _typed(ann: "Any", depth: int) -> bool:
    if ann is MISSING or ann is None or depth > 20:
        return False
    if type(ann).__name__ == "_AnnotatedAlias":
        return _typed(ann.__origin__, depth + 1)
    origin, args = _origin_args(ann)
    if origin in ("union", list, dict):
        return any(_typed(a, depth + 1) for a in args)
    if not isinstance(origin, type):
        return False
    if origin in _BUILTINS:
        return origin in (bytes, tuple, set, frozenset)
    hints = getattr(origin, "__annotations__", None)
    if hasattr(origin, "__required_keys__") and isinstance(hints, dict):  # a TypedDict: a dict of its fields
        return any(_typed(_resolve(v, origin), depth + 1) for v in hints.values())
    return _known(origin) is not None


# -- values --------------------------------------------------------------------------


def problem(schema: "dict[str, Any]", value: "Any") -> "str | None":
    """What is wrong with ``value`` by ``schema``, in words, or ``None``.

    A number must be finite (not NaN or infinite) unless the schema, or one
    around it, says ``x-allow-inf-nan``.
    """
    return _problem(schema, value, 0)


_CHECKS = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    # any iterable but text and mappings: a map step takes ranges and generators too
    "array": lambda v: hasattr(v, "__iter__") and not isinstance(v, (str, bytes, bytearray, dict)),
    "object": lambda v: isinstance(v, dict),
}


_NOT_FINITE = ("expected a finite number, not {!r} (to allow NaN and infinity, annotate the parameter "
               "Annotated[float, microdag.ALLOW_INF_NAN], or declare the input with allow_inf_nan = true)")


def _non_finite(value: "Any") -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _problem(schema: "dict[str, Any]", value: "Any", depth: int, inf_nan: bool = False) -> "str | None":
    if depth > 50 or not isinstance(schema, dict):
        return None
    inf_nan = inf_nan or schema.get(INF_NAN) is True
    enum = sys.modules.get("enum")  # (not imported: then no value is a member)
    member = None if enum is None else enum.Enum
    if member is not None and isinstance(value, member):  # a member stands for its value
        value = value.value
    if "anyOf" in schema:
        if not any(_problem(s, value, depth + 1, inf_nan) is None for s in schema["anyOf"]):
            if _non_finite(value) and any(_problem(s, value, depth + 1, True) is None for s in schema["anyOf"]):
                return _NOT_FINITE.format(value)
            return f"expected {describe(schema)}, not {_kind(value)}"
        return None
    if "const" in schema and not _same(value, schema["const"]):
        return f"expected {schema['const']!r}, not {_short(value)}"
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        return f"expected one of {', '.join(map(repr, schema['enum']))}, not {_short(value)}"
    kind = schema.get("type")
    if isinstance(kind, str):  # (the usual case, first: a flow file checks every key of every step)
        check = _CHECKS.get(kind)
        if check is not None and not check(value):
            return f"expected {describe(schema)}, not {_kind(value)}"
    elif isinstance(kind, list) and kind and not any(_CHECKS.get(k, lambda v: True)(value) for k in kind):
        return f"expected {describe(schema)}, not {_kind(value)}"
    if isinstance(value, str):
        if ("minLength" in schema or "pattern" in schema) and not _text_fits(schema, value):
            return f"expected {describe(schema)}, not {_short(value)}"
        return None
    if isinstance(value, (int, float)):
        if isinstance(value, bool):
            return None
        if not _BOUNDS.isdisjoint(schema):  # (bounds take real numbers only)
            return None if _in_bounds(schema, value) else f"expected {describe(schema)}, not {_short(value)}"
        if not inf_nan and _non_finite(value) and (kind == "number" or isinstance(kind, list) and "number" in kind):
            return _NOT_FINITE.format(value)
        return None
    if isinstance(value, (list, tuple)):  # (sized and not consumed by reading)
        items = value
        for k, sub in enumerate(schema.get("prefixItems", ())):
            if k < len(items):
                wrong = _problem(sub, items[k], depth + 1, inf_nan)
                if wrong is not None:
                    return f"item {k}: {wrong}"
        if "maxItems" in schema and len(items) > schema["maxItems"] or len(items) < schema.get("minItems", 0):
            return f"expected {describe(schema)}, not a list of {len(items)}"
        sub = schema.get("items")
        if isinstance(sub, dict) and sub:  # ({}: any item, a list of Any: nothing to look at)
            # {"type": T} alone (a list of names): its check is enough for an item that passes it
            kind = sub.get("type") if len(sub) == 1 else None
            simple = _CHECKS.get(kind) if isinstance(kind, str) else None
            for k, item in enumerate(items):
                if simple is not None and simple(item) and (member is None or not isinstance(item, member)) \
                        and (inf_nan or not _non_finite(item)):
                    continue
                wrong = _problem(sub, item, depth + 1, inf_nan)
                if wrong is not None:
                    return f"item {k}: {wrong}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                return f"key {key!r} is missing"
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, extra)
            if sub is False:
                return f"key {key!r} is not expected"
            if isinstance(sub, dict):
                wrong = _problem(sub, item, depth + 1, inf_nan)
                if wrong is not None:
                    return f"key {key!r}: {wrong}"
    return None


_BOUNDS = {"minimum", "maximum", "exclusiveMinimum"}


def _text_fits(schema: "dict[str, Any]", value: str) -> bool:
    if len(value) < schema.get("minLength", 0):
        return False
    if "pattern" not in schema:
        return True
    import re  # (only a flow file's rules have a pattern)

    return re.search(schema["pattern"], value) is not None


def _in_bounds(schema: "dict[str, Any]", value: "int | float") -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return (
        value >= schema.get("minimum", value)
        and value <= schema.get("maximum", value)
        and ("exclusiveMinimum" not in schema or value > schema["exclusiveMinimum"])
    )


def _same(a: "Any", b: "Any") -> bool:
    return type(a) is type(b) and a == b or (
        isinstance(a, (int, float)) and isinstance(b, (int, float))
        and not isinstance(a, bool) and not isinstance(b, bool) and a == b
    )


def describe(schema: "dict[str, Any]", show: "Callable[[Any], str]" = repr) -> str:
    """A schema in a few words (``an integer >= 0``, ``a list of an integer``);
    ``show`` writes the values it names (``repr``; a flow file's loader gives JSON)."""
    if "anyOf" in schema:
        return " or ".join(describe(s, show) for s in schema["anyOf"])
    if "const" in schema:
        return show(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(map(show, schema["enum"]))
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(describe({"type": k}, show) for k in kind)
    words = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
             "null": "null (None)", "object": "an object (dict)"}
    if kind == "array":
        items = schema.get("items")
        return f"a list of {describe(items, show)}" if isinstance(items, dict) and items else "a list"
    if kind == "string" and ("format" in schema or "contentEncoding" in schema):  # a date-time string, ...
        return f"a {schema.get('format') or schema['contentEncoding']} string"
    if kind == "string" and schema.get("minLength"):
        return "a non-empty string" if schema["minLength"] == 1 else f"a string of {schema['minLength']}+ characters"
    if kind in ("integer", "number"):
        return words[kind] + _bounds(schema)
    return words.get(str(kind), "anything")


def _bounds(schema: "dict[str, Any]") -> str:
    """`` >= 0``, `` from 0 to 1,000,000``, `` > 0 and at most 10``, or ``""``."""
    low, high, above = schema.get("minimum"), schema.get("maximum"), schema.get("exclusiveMinimum")
    if low is not None and high is not None:
        return f" from {low:,} to {high:,}"
    if low is not None:
        return f" >= {low}"
    if above is not None and high is not None:
        return f" > {above} and at most {high:,}"
    if above is not None:
        return f" > {above}"
    return f" at most {high:,}" if high is not None else ""


def _kind(value: "Any") -> str:
    names = {str: "a string", bool: "a bool", int: "an int", float: "a float", list: "a list", dict: "a dict",
             tuple: "a tuple", type(None): "None"}
    return f"{names.get(type(value), type(value).__name__)} ({_short(value)})"


def _short(value: "Any") -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- edges ---------------------------------------------------------------------------


def item_type(ann: "Any") -> "Any":
    """The type of one item of an iterable annotation (``list[int]`` -> ``int``), or :data:`MISSING`."""
    origin, args = _origin_args(ann)
    if origin in (list, set, frozenset) and len(args) == 1:
        return args[0]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return MISSING


def _known(origin: "Any") -> "type | None":
    """The class an edge check compares for annotation origin ``origin``, or
    ``None`` when its values are not known well enough to refuse anything."""
    if origin is None:
        return type(None)
    if not isinstance(origin, type):
        return None
    if origin in _BUILTINS:
        return origin
    if hasattr(origin, "__required_keys__"):  # a TypedDict: a dict at run time
        return dict
    if getattr(origin, "_is_protocol", False):
        return None
    enum = sys.modules.get("enum")
    if (isinstance(getattr(origin, "__dataclass_fields__", None), dict) or is_model(origin)
            or enum is not None and issubclass(origin, enum.Enum)
            or issubclass(origin, tuple) and isinstance(getattr(origin, "_fields", None), tuple)
            or _as_text(origin) is not None):
        return origin
    return None
