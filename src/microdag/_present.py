"""How a run is shown: the one home of the rules the CLI, the HTML report and the UI share.

- **status order**, worst first (:data:`WORST_FIRST`): what a step made of
  items, a layer of a summarised graph or a tally shows first;
- **a map step's status** from its items' (:func:`step_status`): its own
  record's when it has one, else the worst of its items' (``skipped``
  included), ``succeeded`` when every item succeeded, ``pending`` with none;
- **durations as text** (:func:`duration_text`): ``0.3 ms``, ``1.24 s``,
  ``2 min 3 s``, ``1 h 5 min``; the UI's API sends this text beside the
  number (``duration_text``) so the page shows what the terminal shows;
- **the order of a run's tasks** (:func:`task_order`): a step's tasks
  together, steps in the order they first ran, a map step's items by number
  before its own record (a resumed run's new items stay with their step);
- **output previews** (:func:`preview`, :func:`shorten`): a value as JSON
  text when it is JSON, else its repr, never written whole when it is big,
  and cut to a limit with ``...``;
- **pools, rates and waits** (:func:`step_uses`: what each step holds,
  added steps' too; :func:`limits_text`, :func:`uses_text`,
  :func:`wait_text`): a run's pools and rates as ``pools db=2; rates
  api=10/s``, what a step holds as ``db=1, api=2``, and the time an attempt
  waited for them as a duration, ``-`` when it did not wait; the UI's API
  sends these texts.

The page mirrors these rules in ``ui/static/present.js``; the tests of both
pin the same cases.  Nothing here reads a store or imports microdag.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    from ._records import RunInfo, TaskRecord

__all__ = [
    "WORST_FIRST", "step_status", "worst", "duration_text", "item_label", "task_order", "preview", "shorten",
    "limits_text", "step_uses", "uses_text", "wait_text",
]

#: Statuses worst first: a step of items, a layer or a list shows the first one found.
WORST_FIRST = ("failed", "running", "cancelled", "skipped", "pending")


def worst(statuses: "Iterable[str]") -> str:
    """The worst of ``statuses`` by :data:`WORST_FIRST`; ``succeeded`` when all
    succeeded, a status this version does not know before that; ``pending``
    when there are none."""
    seen = set(statuses)
    for status in WORST_FIRST:
        if status in seen:
            return status
    unknown = sorted(seen - {"succeeded"})
    if unknown:
        return unknown[0]
    return "succeeded" if seen else "pending"


def step_status(own: "str | None", items: "Iterable[str]" = ()) -> str:
    """A step's status: its own record's (``own``), else the worst of its items'."""
    return own if own is not None else worst(items)


def task_order(records: "list[TaskRecord]") -> "list[TaskRecord]":
    """``records`` (as a store lists them: by when each was first written) with
    each step's together, steps in the order they first appear, a map step's
    items by number before its own record."""
    first: dict[str, int] = {}
    for r in records:
        first.setdefault(r.step, len(first))
    return sorted(records, key=lambda r: (first[r.step], r.item < 0, r.item))


def item_label(record: "TaskRecord") -> str:
    """How an item of a map step is named (``step[...]``): its number, and a
    keyed map's item's key after it, as recorded (``3``, ``3 key "q-1"``, ``3 key 7``)."""
    return str(record.item) if record.key is None else f"{record.item} key {record.key}"


def duration_text(seconds: "float | None") -> str:
    """``seconds`` as the command line prints it: ``0.3 ms``, ``1.24 s``,
    ``2 min 3 s``, ``1 h 5 min``; ``-`` for ``None``."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes} min {s} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def step_uses(info: "RunInfo", added: "Iterable[Mapping[str, Any]]" = ()) -> "dict[str, dict[str, int]]":
    """Step name -> what it holds of run ``info``'s pools and rates (``{}``: a
    run without them): its flow's steps', as the run recorded them, and those
    of the steps its steps added (``added``: their recipes, ``Store.added_steps``;
    their ``uses=`` option as ``Flow.add`` takes it: a name for one unit, or
    name -> units)."""
    if info.limits is None:
        return {}
    uses: dict[str, dict[str, int]] = info.limits.get("uses", {})
    for recipe in added:
        held = (recipe.get("options") or {}).get("uses")
        if held:
            uses = dict(uses) if uses is info.limits.get("uses") else uses  # (the record's stays as read)
            uses[recipe["step"]] = {held: 1} if isinstance(held, str) else {k: int(v) for k, v in sorted(held.items())}
    return uses


def uses_text(uses: "Mapping[str, int] | None") -> str:
    """What a step holds of its run's pools and rates: ``db=1, api=2`` (``""``: nothing)."""
    return ", ".join(f"{name}={units}" for name, units in (uses or {}).items())


def limits_text(limits: "Mapping[str, Mapping[str, Any]] | None") -> str:
    """A run's pools and rates (``RunInfo.limits``): ``pools db=2, gpu=1; rates
    api=10/s`` (``""``: none)."""
    if not limits:
        return ""
    parts = [f"{kind} " + ", ".join(f"{name}={value}" for name, value in limits[kind].items())
             for kind in ("pools", "rates") if limits.get(kind)]
    return "; ".join(parts)


def wait_text(seconds: "float | None") -> str:
    """The time an attempt waited for room in its pools or a token, as a
    duration (:func:`duration_text`); ``-`` when it did not wait (or ``None``)."""
    return duration_text(seconds) if seconds else "-"


def preview(value: "Any", limit: int, indent: "int | None" = None) -> str:
    """``value`` as JSON text (``indent`` as :func:`json.dumps`'s) when it is
    JSON, else its repr; a big value is not written whole: the text stops soon
    after ``limit`` characters (:func:`shorten` cuts it to the limit)."""
    import json  # (shown values only: import microdag stays light)

    text = ""
    try:
        for chunk in json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=indent).iterencode(value):
            text += chunk
            if len(text) > limit:
                break
    except (TypeError, ValueError, RecursionError):
        import reprlib  # (a value JSON cannot hold: its repr, bounded)

        short = reprlib.Repr()
        short.maxlevel = 3
        short.maxstring = short.maxother = short.maxlong = limit + 2
        short.maxlist = short.maxtuple = short.maxset = short.maxfrozenset = short.maxdict = max(6, limit // 20)
        try:
            text = short.repr(value)
        except Exception as exc:  # a broken __repr__
            text = f"<{type(value).__name__}: repr failed: {type(exc).__name__}>"
    return text


def shorten(text: str, limit: int) -> str:
    """``text`` when it has at most ``limit`` characters, else its start ending in ``...``."""
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."
