"""Keyed maps: what identifies each item of a map step with ``key=``.

A map step given ``key`` (an attribute name, read as ``item[key]`` when the
items are dicts, the first one saying, else as an attribute; or a callable
``item -> key``) names each item by its key rather than its position.  The
rules, one each:

- **reading keys** (:func:`read_keys`): a key is a ``str`` or an ``int`` (not
  a ``bool``): they compare, hash and record alike in every process and
  store.  An item whose key cannot be read, or is of another type, fails on
  its own, with an error naming the step, the item's position and the key
  expression; the other items run.
- **unique keys** (:func:`duplicate`): two items with one key refuse the
  whole step before any item runs, naming both positions and the key.
- **record numbers** (:func:`numbers`): an item's records (task, attempts,
  logs) are kept under a number: in a first run its position; a resume
  keeps the number each key was recorded under and numbers the keys it
  has not met after every number the step recorded, so that a reordered,
  extended or shortened list never puts two keys under one number.
- **alignment** (:func:`aligned`): a parameter of a keyed map bound to the
  output of another keyed map gets, in each call, that map's result for
  the item's own key (the other map's results are matched to its keys by
  position, as its output lists them).

Nothing here runs per call: keys are read once, when the map step starts,
in three passes in C over the list (read, types, uniqueness); only a list
with a bad or duplicate key is walked again in Python, to say which.
"""

from operator import attrgetter, itemgetter

from .._records import key_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["aligned", "duplicate", "key_expr", "numbers", "read_keys"]

#: The types a key may have (not ``bool``: ``True == 1`` would make two items one).
_KEY_TYPES = frozenset((str, int))


def key_expr(key: "str | Callable[[Any], Any]") -> str:
    """How ``key`` is named in messages: ``key 'query_uuid'`` or ``key make_key``."""
    if isinstance(key, str):
        return f"key {key!r}"
    return f"key {getattr(key, '__qualname__', None) or repr(key)}"


def read_keys(
    name: str, key: "str | Callable[[Any], Any]", items: "list[Any]"
) -> "tuple[list[Any], dict[int, BaseException]]":
    """The keys of map step ``name``'s ``items`` by position, and the errors
    of the items whose key cannot be read or is not a ``str`` or an ``int``
    (their slot in the list holds ``None``).  An attribute name is read as
    ``item[key]`` when the items are dicts (the first one says), else as
    ``getattr(item, key)``."""
    if isinstance(key, str):
        read: Callable[[Any], Any] = (itemgetter if isinstance(items[0], dict) else attrgetter)(key)
    else:
        read = key
    try:  # the usual case: every key read at once, checked in two passes
        keys = list(map(read, items))
        if _KEY_TYPES.issuperset(map(type, keys)):
            return keys, {}
    except Exception:
        pass
    keys, bad = [], {}
    for j, item in enumerate(items):
        try:
            k = read(item)
        except Exception as exc:
            error: BaseException = LookupError(
                f"step {name!r} item {j}: its {key_expr(key)} cannot be read ({type(exc).__name__}: {exc})")
            error.__cause__ = exc
            keys.append(None)
            bad[j] = error
            continue
        if type(k) is not str and type(k) is not int:
            keys.append(None)
            bad[j] = TypeError(f"step {name!r} item {j}: its {key_expr(key)} is {k!r}, a {type(k).__name__}: "
                               "a key must be a str or an int")
            continue
        keys.append(k)
    return keys, bad


def duplicate(name: str, key: "str | Callable[[Any], Any]", keys: "list[Any]") -> "ValueError | None":
    """The error of map step ``name`` whose ``keys`` hold one twice (the
    first such pair), or ``None``."""
    if len(set(keys)) == len(keys):  # (the usual case: one pass in C; two keys None take the long way)
        return None
    seen: dict[Any, int] = {}
    for j, k in enumerate(keys):
        if k is None:
            continue
        first = seen.setdefault(k, j)
        if first != j:
            return ValueError(f"step {name!r}: items {first} and {j} have the same {key_expr(key)} value {k!r} "
                              "(the keys of a keyed map must be unique)")
    return None


def numbers(keys: "list[Any]", recorded: "dict[str, int]", top: int) -> "list[int] | None":
    """The record number of each item (by position) of a map whose keys are
    ``keys``, given the number each key was ``recorded`` under (as
    :func:`~microdag._records.key_text`) and the largest number the step
    recorded (``top``, -1 for none); ``None`` when every number is the
    item's position (a first run)."""
    if top < 0:
        return None
    out = []
    for k in keys:
        number = None if k is None else recorded.get(key_text(k))
        if number is None:
            top += 1
            number = top
        out.append(number)
    return out


def aligned(
    name: str, param: str, other: str, keys: "list[Any]", their_keys: "list[Any] | None", results: "Any"
) -> "tuple[list[Any], dict[int, BaseException]]":
    """Parameter ``param`` of keyed map ``name`` is bound to the output
    ``results`` of keyed map ``other``, whose items had ``their_keys``: the
    value each item (of ``keys``, by position) gets, and the errors of the
    items it has none for.

    Raises:
        ValueError: ``other``'s keys are not known, or do not match its output.
    """
    if their_keys is None or not isinstance(results, list) or len(results) != len(their_keys):
        raise ValueError(
            f"step {name!r}: parameter {param!r} takes the output of keyed map step {other!r}, whose items' keys "
            "are not known in this run, so its results cannot be matched to this step's items by key")
    by_key = dict(zip(their_keys, results))
    values: list[Any] = []
    bad: dict[int, BaseException] = {}
    for j, k in enumerate(keys):
        if k in by_key:
            values.append(by_key[k])
        else:
            values.append(None)
            if k is not None:
                bad[j] = LookupError(f"step {name!r} item {j}: step {other!r} (parameter {param!r}) has no result "
                                     f"for key {k!r}")
    return values, bad
