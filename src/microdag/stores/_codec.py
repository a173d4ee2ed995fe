"""The codecs a store encodes outputs (and run inputs) with.

- ``"json"`` (the default): JSON values, and values of the types a step's
  annotation names that ``_typed`` turns into JSON and back (dataclasses,
  Pydantic models, ``datetime``, ``Decimal``...: the caller passes the
  annotation's converter), so that a resumed run reads back exactly what the
  first one produced, of the same type; anything else is refused with one
  error that names the value, its type and the two ways out;
- ``"pickle"``: any picklable value (trusted data only: unpickling runs code).

String values are written with ASCII escapes, so that lone surrogates (file
names that are not UTF-8) survive the trip.
"""

from .._errors import StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .._typed import Converter

__all__ = ["CODECS", "decode", "encode", "json_encoder", "not_json", "settle_codec"]

CODECS = ("json", "pickle")


def encode(codec: str, value: "Any", what: str, typed: "Converter | None" = None) -> bytes:
    """``value`` encoded with ``codec``; ``what`` names it in errors; ``typed``,
    the converter of its annotation (``_typed.converter``; JSON codec only).

    Raises:
        TypeError: the JSON codec cannot represent the value exactly.
    """
    if codec == "pickle":
        import pickle  # (import time: pickle loads on first use)

        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    if type(value) is int and typed is None:  # the commonest small output, as JSON writes it
        return b"%d" % value
    if typed is not None:
        try:
            if typed.whole:  # a Pydantic model: its own JSON, in one call
                return typed.dumps(value)
            value = typed.dump(value)
        except ValueError as exc:  # (ConvertError)
            raise TypeError(_refused(what, getattr(exc, "detail", str(exc)), typed.name)) from None
    bad = not_json(value)
    if bad is not None:
        raise TypeError(_refused(what, f"it holds a {bad}", None if typed is None else typed.name))
    text: str = json_encoder().encode(value)
    return text.encode()


def _refused(what: str, why: str, annotation: "str | None") -> str:
    """The one refusal of a value the JSON codec cannot keep; ``annotation``
    names the type its annotation says, when it has one."""
    said = "it has no annotation that says its type" if annotation is None else f"it is annotated {annotation}"
    return (
        f"{what} is not JSON: {why}, and {said}. A durable store keeps JSON values exactly (dict "
        "with str keys, list, str, int, finite float, bool, None) and the types an annotation names "
        "(dataclasses, Pydantic models, Enum, datetime, Decimal, UUID, Path, bytes, tuple, set...), "
        "and refuses the rest rather than change them. Two ways out: annotate the step's return "
        "with the type it returns, or, to keep any picklable value, use the pickle codec (trusted "
        "data only): SQLiteStore(path, codec='pickle'), the store spec 'sqlite:PATH?codec=pickle', "
        "or --codec pickle on the command line"
    )


def settle_codec(asked: "str | None", recorded: "str | None", where: str) -> str:
    """The codec to open a store with: the one asked for, else the one the store
    records (a store keeps the codec it was made with), else ``"json"``.

    Raises:
        ValueError: an unknown codec.
        StoreError: the codec asked for is not the store's, or the store keeps
            pickle and none was asked for (unpickling runs code: opening a
            pickle store must be asked for by name).
    """
    if asked is not None and asked not in CODECS:
        raise ValueError(f"unknown codec {asked!r}: expected 'json' or 'pickle'")
    if recorded is None or recorded == asked:
        return asked or "json"
    if asked is None and recorded == "json":
        return "json"
    if asked is None:
        raise StoreError(
            f"store {where!r} keeps its outputs with the {recorded} codec: open it with "
            f"codec={recorded!r} (the spec '...?codec={recorded}', or --codec {recorded}), "
            "if you trust who wrote it"
        )
    raise StoreError(f"store {where!r} keeps its outputs with the {recorded} codec, not {asked}")


def decode(codec: str, data: bytes, typed: "Converter | None" = None) -> "Any":
    """What :func:`encode` encoded (with the same ``typed``).

    Raises:
        ValueError: not JSON, or JSON that does not fit ``typed`` (``ConvertError``).
    """
    if codec == "pickle":
        import pickle  # (import time: pickle loads on first use)

        return pickle.loads(data)
    if typed is not None:
        return typed.loads(data)
    import json  # (import time: json loads on first use)

    return json.loads(data)


_ENCODER: "Any" = None


def json_encoder() -> "Any":
    """The one JSON encoder outputs are written with: compact, no NaN or infinity."""
    global _ENCODER
    if _ENCODER is None:
        import json  # (import time: json loads on first use)

        _ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False, allow_nan=False)
    return _ENCODER


def not_json(value: "Any") -> "str | None":
    """What keeps ``value`` from being a JSON value exactly, or ``None``."""
    stack = [value]
    containers: set[int] = set()
    while stack:
        v = stack.pop()
        t = type(v)
        if v is None or t in (str, int, bool):
            continue
        if t is list or t is dict:
            if id(v) in containers:
                return f"{t.__name__} that contains itself (or is shared)"
            containers.add(id(v))
        if t is float:
            if v != v or v in (float("inf"), float("-inf")):
                return f"float {v!r}"
            continue
        if t is list:
            stack.extend(v)
        elif t is dict:
            for k in v:
                if type(k) is not str:
                    return f"dict key of type {type(k).__name__}"
            stack.extend(v.values())
        else:
            return f"{t.__name__}"
    return None

