"""What the commands share: the default store, opening a store and reading
inputs, and how values, times and statuses are shown on a terminal."""

import os
import sys
import time

from .._cmdline import UsageError, printable
from .._present import duration_text, shorten
from .._present import preview as present

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any, TextIO

    from .._flow import Flow
    from ..stores import Store

#: Where ``run`` keeps its runs when no ``--store`` is given, and where the
#: other commands look for them.
DEFAULT_STORE = os.path.join(".microdag", "runs.db")

COLORS = {"succeeded": "32", "failed": "31", "cancelled": "33", "skipped": "2", "running": "36"}


def columns(stream: "TextIO | None" = None) -> int:
    """The width of the terminal of ``stream`` (default: ``sys.__stdout__``)
    as :func:`shutil.get_terminal_size` gives it (``COLUMNS`` first), 80 when
    unknown; without importing :mod:`shutil` (and, with it, a few compression
    modules: several milliseconds of a command's start)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            fd = (sys.__stdout__ if stream is None else stream).fileno()  # type: ignore[union-attr]
            columns = os.get_terminal_size(fd).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def store_at(
    spec: "str | None", create: bool = False, readonly: bool = False, codec: "str | None" = None
) -> "Store":
    """The store of ``--store`` (default: ``.microdag/runs.db``) with the codec
    of ``--codec`` (when given: else the store's default, or the one its spec
    names); the reading commands open it read-only, so that they work where it
    cannot be written."""
    from ..stores import StoreError, open_store, spec_parts  # (the store commands only: --help opens none)

    if spec is None:
        spec = DEFAULT_STORE
        if create:
            os.makedirs(os.path.dirname(spec), exist_ok=True)
        elif not os.path.exists(spec):
            raise StoreError(f"no store at {spec} (run a flow here first, or pass --store)")
    elif not create and spec != "memory" and not spec.startswith(("postgresql://", "postgres://")):
        path = spec_parts(spec)[1]
        if path and not os.path.exists(path):  # (a server's URL names no path)
            raise StoreError(f"no store at {spec}")
    options: dict[str, Any] = {} if codec is None else {"codec": codec}
    try:
        return open_store(spec, readonly=readonly, **options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None



def typed_inputs(flow: "Flow", pairs: "list[str]", inputs: "dict[str, Any]") -> "dict[str, Any]":
    """``inputs`` with each ``--input K=V`` read as the type input K declares:
    the text itself for a string, a number or true/false where one is wanted
    (a clear error when V is not one), JSON or text otherwise."""
    import json  # (the command line's start: json loads with the command that uses it)

    from .._schema import describe  # (commands given inputs only)

    if not pairs:
        return inputs
    types = flow._compiled().input_types()
    for pair in pairs:
        key, _, text = pair.partition("=")
        schema = types.get(key) or {}
        kind = schema.get("type")
        if kind == "string":  # -i version=1.10 is "1.10", not 1.1
            inputs[key] = text
        elif kind in ("integer", "number", "boolean"):
            wanted = {"integer": (int,), "number": (int, float), "boolean": (bool,)}[kind]
            if type(inputs.get(key)) not in wanted:
                raise UsageError(f"--input {key}={text}: {key!r} takes {describe(schema)}, not {json.dumps(text)}")
    return inputs


def jsonable(value: "Any") -> "Any":
    """``value`` if JSON can hold it, else its repr."""
    import json  # (the command line's start: json loads with the command that uses it)

    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


def dump(document: "Any") -> None:
    import json  # (the command line's start: json loads with the command that uses it)

    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def color(stream: "TextIO") -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def paint(text: str, status: str, color: bool) -> str:
    code = COLORS.get(status)
    return f"\x1b[{code}m{text}\x1b[0m" if color and code else text


def when(timestamp: "float | None") -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def table(rows: "list[list[str]]", statuses: "list[str]", color: bool) -> str:
    """Rows aligned in columns; the second column (a status) painted."""
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(w) for cell, w in zip(row, widths)]
        if n and color:
            cells[1] = paint(cells[1], statuses[n - 1], color)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def one_line(text: "str | None") -> str:
    """A message on one line: its first line, and its last when it has more
    (a command step's error ends with the last lines of its stderr)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    glue = " " if len(lines) == 2 and lines[0].endswith(":") else " ... "
    return lines[0] + glue + lines[-1]


def indented(text: str, first: str = "  ", rest: str = "    ") -> str:
    """``text`` with ``first`` before its first line and ``rest`` before the others."""
    lines = text.rstrip().splitlines() or [""]
    return "\n".join([first + lines[0]] + [rest + line for line in lines[1:]])


def cols(text: str) -> int:
    """The columns ``text`` takes on a terminal (wide East Asian characters: 2)."""
    if text.isascii():
        return len(text)
    import unicodedata  # (the command line's start: unicodedata loads with the command that uses it)

    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
        for c in text
    )


def cut(text: str, limit: int) -> str:
    """The longest start of ``text`` that takes at most ``limit`` columns."""
    if text.isascii():
        return text[: max(0, limit)]
    if cols(text) <= limit:
        return text
    out, used = [], 0
    for c in text:
        used += cols(c)
        if used > limit:
            break
        out.append(c)
    return "".join(out)


#: How many characters of a value a summary shows (``...`` ends a longer one).
PREVIEW = 100


def preview(value: "Any", limit: int = PREVIEW) -> str:
    """``value`` on one line of at most ``limit`` characters: as JSON when it is
    JSON, else its repr; cut with ``...`` (``_present``'s rules).  A big value is
    not written whole."""
    return shorten(printable(present(value, limit)), limit)


# -- progress ---------------------------------------------------------------------------------


def store_options(p: "argparse.ArgumentParser") -> None:
    """``--store SPEC`` and ``--codec NAME`` on parser ``p``."""
    p.add_argument(
        "--store",
        metavar="SPEC",
        default=None,
        help=f"the run store: a path ending in .db, sqlite:PATH, json:DIR, postgresql://USER@HOST/DB or memory "
        f"(default: {DEFAULT_STORE})",
    )
    p.add_argument(
        "--codec",
        choices=("json", "pickle"),
        default=None,  # json, unless the spec ends in ?codec=NAME
        help="how the store encodes outputs and inputs (default: json); pickle keeps any "
        "picklable value, but reading it runs code: trusted stores only",
    )


def took(wall: "float | None", busy: "float | None") -> str:
    """A run's duration, with the time its steps ran beside it when that is
    much less (a run resumed after idle time): ``16.3 s (15.0 ms running)``."""
    text = duration_text(wall)
    if wall is not None and busy is not None and wall - busy > max(1.0, wall / 10):
        text += f" ({duration_text(busy)} running)"
    return text

