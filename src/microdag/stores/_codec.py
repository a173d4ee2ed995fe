"""The codecs a store encodes outputs (and run inputs) with.

- ``"json"`` (the default): JSON values only, so that a resumed run reads
  back exactly what the first one produced; anything else is refused with an
  error that names the value and what to do;
- ``"pickle"``: any picklable value (trusted data only: unpickling runs code).

String values are written with ASCII escapes, so that lone surrogates (file
names that are not UTF-8) survive the trip.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CODECS", "decode", "encode"]

CODECS = ("json", "pickle")


def encode(codec: str, value: "Any", what: str) -> bytes:
    """``value`` encoded with ``codec``; ``what`` names it in errors.

    Raises:
        TypeError: the JSON codec cannot represent the value exactly.
    """
    if codec == "pickle":
        import pickle

        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    if type(value) is int:  # the commonest small output, as JSON writes it
        return b"%d" % value
    bad = _not_json(value)
    if bad is not None:
        raise TypeError(
            f"{what} is not JSON: it holds a {bad}; store it with codec='pickle' "
            "(trusted data only), or return JSON values (dict with str keys, list, "
            "str, int, float, bool, None)"
        )
    text: str = _json_encoder().encode(value)
    return text.encode()


def decode(codec: str, data: bytes) -> "Any":
    """What :func:`encode` encoded."""
    if codec == "pickle":
        import pickle

        return pickle.loads(data)
    import json

    return json.loads(data)


_ENCODER: "Any" = None


def _json_encoder() -> "Any":
    global _ENCODER
    if _ENCODER is None:
        import json

        _ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False, allow_nan=False)
    return _ENCODER


def _not_json(value: "Any") -> "str | None":
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

