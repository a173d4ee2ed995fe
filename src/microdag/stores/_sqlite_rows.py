"""The SQL stores' rows: values as SQLite keeps them, and rows read back as checked records.

Text SQLite cannot take as UTF-8 goes in as bytes and comes back whole
(:func:`_t`, :func:`_s`); a run's code digests, and its pools and rates, are one JSON text each
(:func:`_code_text`, :func:`_code_of`); ``tasks`` rows become
:class:`TaskRecord` s a column at a time when every value has a type it may
have, else row by row, naming what is damaged (:func:`_records`,
:func:`_successes`).  No I/O: ``_sql`` reads and writes, this module
only converts.  The PostgreSQL store reads its rows with the same functions,
given its own ``texts`` (``_postgres``: what PostgreSQL cannot keep as text).
"""

from .._errors import StoreError
from .._records import TaskRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ._base import Successes

__all__ = ["_code_of", "_code_text", "_records", "_s", "_successes", "_t", "_texts"]

_TIME = (float, int, type(None))


def _code_text(code: "dict[str, Any] | None") -> "str | None":
    import json  # (import time: json loads on first use)

    return None if code is None else json.dumps(code, separators=(",", ":"))


def _code_of(text: "Any") -> "dict[str, str] | None":
    """The code digests a run recorded (``None`` when missing or unreadable:
    they only let a resume check more)."""
    if type(text) is not str:
        return None
    import json  # (import time: json loads on first use)

    try:
        code = json.loads(text)
    except ValueError:
        return None
    return code if isinstance(code, dict) else None


def _t(value: "Any") -> "Any":
    """A value to bind: a ``str`` SQLite cannot take as UTF-8 (lone surrogates,
    from file names that are not UTF-8) goes in as its bytes, surrogates kept
    (``surrogatepass``), and comes back whole through :func:`_s`."""
    if value.__class__ is str and not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogatepass")
    return value


def _s(value: "Any") -> "Any":
    """A text column's value as read: the ``str`` that :func:`_t` stored."""
    if value.__class__ is bytes:
        try:
            return value.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return value
    return value


def _texts(column: "tuple[Any, ...]") -> "tuple[Any, ...]":
    """A text column as read (:func:`_s` of each value, when one is neither a ``str`` nor ``None``)."""
    return tuple(map(_s, column)) if set(map(type, column)) - {str, type(None)} else column


def _records(
    rows: "list[tuple[Any, ...]]", one: "Callable[[tuple[Any, ...]], TaskRecord]",
    texts: "Callable[[tuple[Any, ...]], tuple[Any, ...]]" = _texts,
) -> "list[TaskRecord]":
    """``tasks`` rows as checked :class:`TaskRecord` s: a column at a time
    when every field has a type it may have (a big run's million rows),
    else row by row with ``one``, which names what is damaged; ``texts``
    reads a text column as the database keeps it (:func:`_texts`)."""
    if not rows:
        return []
    columns = list(zip(*rows))
    for k in (0, 2, 6, 7, 8, 11):  # the text columns
        columns[k] = texts(columns[k])
    step, item, status, attempts, started, finished, etype, emsg, tb, output, ref, key, waited = columns
    times = set(map(type, started)) | set(map(type, finished))
    if waited.count(None) != len(waited):  # (a run with pools or rates: each wait a time, not below zero)
        times |= set(map(type, waited))
        if not times <= set(_TIME) or min(w for w in waited if w is not None) < 0:
            return [one(row) for row in rows]
    kinds = set(map(type, etype)) | set(map(type, emsg)) | set(map(type, tb)) | set(map(type, key))
    if not (set(map(type, step)) == set(map(type, status)) == {str} and set(map(type, item)) == {int}
            and set(map(type, attempts)) == {int} and min(item) >= -1 and min(attempts) >= 0
            and times <= {float, int, type(None)} and kinds <= {str, type(None)}
            and set(map(type, output)) <= {bytes, type(None)} and ref.count(None) == len(ref)):
        return [one(row) for row in rows]  # (a REAL column never holds NaN: SQLite makes it NULL)
    return list(map(TaskRecord, step, item, status, attempts, started, finished, etype, emsg, tb, output, key, waited))


def _successes(
    rows: "list[tuple[Any, ...]]", damaged: "Callable[[str], str]",
    texts: "Callable[[tuple[Any, ...]], tuple[Any, ...]]" = _texts,
) -> "Successes":
    """``(step, attempts, started, finished)`` rows as four checked columns
    (``damaged(step)``: the message of a step whose record is damaged)."""
    if not rows:
        return (), (), (), ()
    steps, attempts, started, finished = zip(*rows)
    del rows
    steps = texts(steps)
    if (set(map(type, steps)) != {str} or set(map(type, attempts)) != {int}
            or not set(map(type, started)) | set(map(type, finished)) <= set(_TIME)):
        for step, tries, start, end in zip(steps, attempts, started, finished):
            if not (tries.__class__ is int and start.__class__ in _TIME and end.__class__ in _TIME
                    and step.__class__ is str):
                raise StoreError(f"{damaged(step)}: attempts {tries!r}, started {start!r}, finished {end!r}")
    return steps, attempts, started, finished
