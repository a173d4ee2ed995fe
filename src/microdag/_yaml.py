"""A YAML writer for the documents microdag writes (Argo manifests): no parser,
no dependency.

Only what JSON can hold is written (dicts with str keys, lists, str, int,
finite float, bool, None), in block style: a mapping's keys one per line, a
sequence's items one per line after ``- ``.  A string is written plain only
when nothing can read it as anything else: it starts with a letter, ``_`` or
``/``, holds only letters, digits and ``_ . / -``, and is not one of the words
YAML 1.1 reads as a boolean or null (``yes``, ``off``, ``null``...); every other
string is double-quoted with JSON's escapes, plus ``\\uXXXX`` for the characters
YAML may not hold as they are or reads as line breaks (C1 controls, U+0085,
U+2028, U+2029, U+FEFF, lone surrogates).  So the text reads back as the same
value in YAML 1.1 and 1.2 readers alike; a test checks it with PyYAML.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["dump"]

#: Plain scalars YAML 1.1 reads as booleans or null (any case is matched).
_SPECIAL = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})
_PLAIN_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_/")
_PLAIN_REST = _PLAIN_FIRST | frozenset("0123456789.-")


def dump(value: "Any", comment: "str | None" = None) -> str:
    """``value`` as a YAML document (ending with a newline); ``comment``, if
    given, is written first as ``# comment`` lines.

    Raises:
        TypeError: ``value`` holds something JSON cannot (a set, an object, a
            dict key that is not a str).
        ValueError: a float that is not finite.
    """
    lines: list[str] = []
    if comment:
        lines.extend("# " + _one_line(line) for line in comment.splitlines())
    if isinstance(value, dict) and value:
        _mapping(value, 0, lines)
    elif isinstance(value, list) and value:
        _sequence(value, 0, lines)
    else:
        lines.append(_scalar(value))
    return "\n".join(lines) + "\n"


def _mapping(value: "dict[Any, Any]", indent: int, lines: "list[str]") -> None:
    pad = " " * indent
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"a YAML mapping key must be a str here, not {type(key).__name__}")
        head = f"{pad}{_string(key)}:"
        if isinstance(item, dict) and item:
            lines.append(head)
            _mapping(item, indent + 2, lines)
        elif isinstance(item, list) and item:
            lines.append(head)
            _sequence(item, indent + 2, lines)
        else:
            lines.append(f"{head} {_scalar(item)}")


def _sequence(value: "list[Any]", indent: int, lines: "list[str]") -> None:
    pad = " " * indent
    for item in value:
        if isinstance(item, dict) and item:
            start = len(lines)
            _mapping(item, indent + 2, lines)
            lines[start] = f"{pad}- {lines[start][indent + 2:]}"  # the first key after the dash
        elif isinstance(item, list) and item:
            lines.append(f"{pad}-")
            _sequence(item, indent + 2, lines)
        else:
            lines.append(f"{pad}- {_scalar(item)}")


def _scalar(value: "Any") -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} cannot be written: not a finite number")
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        if e and "." not in mantissa:  # YAML 1.1 wants a dot in a float with an exponent
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    raise TypeError(f"a {type(value).__name__} cannot be written as YAML here (JSON values only)")


def _string(text: str) -> str:
    if (
        text
        and text[0] in _PLAIN_FIRST
        and all(c in _PLAIN_REST for c in text)
        and text.lower() not in _SPECIAL
    ):
        return text
    import json  # (import time: json loads on first use)

    quoted = json.dumps(text, ensure_ascii=False)
    if all(" " <= c <= "~" for c in quoted):
        return quoted
    return "".join(c if _printable(c) else f"\\u{ord(c):04x}" for c in quoted)


def _printable(c: str) -> bool:
    """Whether YAML holds ``c`` as it is inside a double-quoted scalar (and does
    not read it as a line break)."""
    n = ord(c)
    return (0x20 <= n <= 0x7E or 0xA0 <= n <= 0xD7FF or 0xE000 <= n <= 0xFFFD or n >= 0x10000) and n not in (
        0x2028, 0x2029, 0xFEFF,
    )


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)
