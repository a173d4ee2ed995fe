"""Write a flow file's new data into its text, changing only what the edit changed.

The UI page holds a flow file's parsed data and sends the whole edited dict
back. Users keep flow files in git, so saving must not reformat the file: a
one-step edit is a small diff, and comments, key order, blank lines, quoting
and alignment survive everywhere the edit did not reach.

TOML (no third-party library; tomllib only reads):

- The text is cut into statements (``_tomltext.parse``, which the flow-file
  loader reads too), one per line or per multi-line value:
  blank lines, comment lines, table headers and ``key = value`` entries with
  the span of their value (strings of the four kinds, arrays and inline tables
  over several lines, comments inside them are followed exactly).
- The old data (``tomllib.loads(text)``) is compared with the new, value by
  value, and each difference becomes one edit of the text: a changed value
  replaces only its value's characters (the key's spelling and the comment
  after it stay); a removed key deletes its lines; an added key is a new line
  after the table's last key; a removed step deletes its table together with
  the comment lines directly above its header (comments directly above the
  next header stay with that table); an added step is appended at the end; a
  step renamed (exactly one step gone and one new, at the same place in the
  order, keeping at least half of its options) keeps its place and comments:
  only the name in its header changes, then its keys are edited as above; a missing
  table (``[inputs]``) goes before the first step table. Reordering keys or
  steps changes no data, so it changes no text.
- Line endings (``\\n`` or ``\\r\\n``) and whether the file ends with one are kept.

Only the shape microdag writes is edited in place: keys of the root table
whose values are not tables, ``[NAME]`` tables and ``[steps.NAME]`` tables
(an empty ``[steps]`` header is allowed), each holding plain ``key = value``
entries. Anything else (dotted keys, ``steps = {...}`` inline, arrays of
tables, ``[steps.a.inputs]``...) and any edit whose result would not parse to
the new data falls back to a canonical rewrite of the whole file
(``dump_toml``), and ``edit_text`` says so (its second result is True).

The safety net, and the invariant: whatever path produced it, the text
returned parses to exactly the new data (types included: ``1`` is not
``1.0`` nor ``true``, ``-0.0`` is not ``0.0``), or ``ValueError`` is raised.
Values that cannot be written (``None``, lone surrogates, non-string keys,
objects that are not TOML/JSON data) are refused up front with a
``ValueError`` naming the key; the caller removes a key by leaving it out,
never by sending ``None``. A file that does not parse any more is refused
rather than overwritten.

JSON has no comments, so the file is dumped again with the layout found in it
(indent, separators, ``ensure_ascii``) and the keys in the order the new data
gives them: when the file was written that way, a one-key edit is a one-line
diff; when it was not (hand-formatted), the whole file is rewritten and
``edit_text`` says so.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from .._tomltext import BARE as _BARE
from .._tomltext import Stmt as _Stmt
from .._tomltext import Unsupported as _Unsupported  # also: a shape the in-place edit does not handle
from .._tomltext import parse as _parse
from .._tomltext import ws as _ws

__all__ = ["dump_toml", "dump_toml_value", "edit_text"]

_ESCAPE = re.compile(r'[\x00-\x1f\x7f"\\]')
_ESCAPE_LINES = re.compile(r'[\x00-\x08\x0b-\x1f\x7f"\\]')  # in a multi-line basic string: not \n nor tab
_NOT_LITERAL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # what a literal string cannot hold
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_NAMED = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}
_MAX_DEPTH = 64
_CUT = 3  # the priority that marks the deletion of a whole table


# ---------------------------------------------------------------- writing values


def _no_surrogate(text: str, where: str) -> None:
    bad = _SURROGATE.search(text)
    if bad:
        raise ValueError(f"{where}: the text {text!r} holds a lone surrogate "
                         f"(U+{ord(bad.group()):04X}), which a flow file cannot hold")


def _quote(text: str, where: str) -> str:
    _no_surrogate(text, where)
    return '"' + _ESCAPE.sub(lambda m: _NAMED.get(m.group(), f"\\u{ord(m.group()):04X}"), text) + '"'


def _key(key: object, where: str) -> str:
    """A TOML key: bare when it can be, else a basic string."""
    if not isinstance(key, str):
        raise ValueError(f"{where}: key {key!r} is not a string")
    return key if _BARE.fullmatch(key) else _quote(key, f"{where}: key {key!r}")


def _multiline(text: str, where: str) -> str:
    """`text` (which holds a line break) as a multi-line TOML string, its lines
    one per line of the file: a literal string (no escapes, what you see is the
    text) when it can be one, else a basic string escaping what it must."""
    _no_surrogate(text, where)
    if "'''" not in text and not text.endswith("'") and not _NOT_LITERAL.search(text):
        return "'''\n" + text + "'''"  # (the line break after the quotes is not part of the text)
    return '"""\n' + _ESCAPE_LINES.sub(lambda m: _NAMED.get(m.group(), f"\\u{ord(m.group()):04X}"), text) + '"""'


def dump_toml_value(value: Any, where: str = "value", _depth: int = 0, lines: bool = False) -> str:
    """`value` as a TOML value; `where` names it in a ValueError; `lines`: a
    text holding line breaks is written over several lines (a step's
    ``python`` code), not as one line with escapes."""
    if _depth > _MAX_DEPTH:
        raise ValueError(f"{where}: nested more than {_MAX_DEPTH} levels deep")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(float(value))
    if isinstance(value, str):
        return _multiline(value, where) if lines and "\n" in value else _quote(value, where)
    if isinstance(value, (datetime.date, datetime.time)):
        if isinstance(value, datetime.time) and value.tzinfo is not None:
            raise ValueError(f"{where}: a time of day with a time zone has no TOML form")
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(dump_toml_value(v, f"{where}[{i}]", _depth + 1)
                               for i, v in enumerate(value)) + "]"
    if isinstance(value, dict):
        items = [f"{_key(k, where)} = {dump_toml_value(v, f'{where}.{k}', _depth + 1)}"
                 for k, v in value.items()]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if value is None:
        raise ValueError(f"{where}: None cannot be written to a flow file (leave the key out to remove it)")
    raise ValueError(f"{where}: a {type(value).__name__} ({value!r:.60}) cannot be written to a flow file")


def _line(key: str, value: Any, where: str, indent: str = "") -> str:
    path = f"{where}.{key}" if where else str(key)
    text = dump_toml_value(value, path, lines=key == "python")
    return f"{indent}{_key(key, where or 'top level')} = {text}\n"


def _block(path: tuple[str, ...], data: Any) -> str:
    where = ".".join(map(str, path))
    if not isinstance(data, dict):
        raise ValueError(f"{where}: a table must be a dict, not {type(data).__name__}")
    header = ".".join(_key(p, where) for p in path)
    return f"[{header}]\n" + "".join(_line(k, v, where) for k, v in data.items())


def dump_toml(data: dict[str, Any]) -> str:
    """`data` as a whole TOML flow file: root keys, then ``[flow]``, ``[inputs]``,
    ``[steps.NAME]`` tables (any table in the order the dict gives)."""
    head: list[str] = []
    blocks: list[str] = []
    for k, v in data.items():
        if not isinstance(v, dict):
            head.append(_line(k, v, ""))
        elif k == "steps" and v and all(isinstance(o, dict) for o in v.values()):
            blocks += [_block(("steps", name), opts) for name, opts in v.items()]
        else:
            blocks.append(_block((k,), v))
    return "\n".join((["".join(head)] if head else []) + blocks)


# ---------------------------------------------------------------- reading text
# (statements and their spans come from _tomltext, which the flow-file builder reads too)


@dataclass
class _Table:
    path: tuple[str, ...]
    head: int  # index of its header statement (-1: the root table)
    entries: dict[str, _Stmt] = field(default_factory=dict)


# ---------------------------------------------------------------- editing TOML


def _renamed(old: dict[str, Any], new: dict[str, Any], was: str, now: str) -> bool:
    """Whether step `was` became `now`: same place in the order, and at least
    half of its options kept (else it is a step removed and another added)."""
    a, b = old[was], new[now]
    kept = sum(1 for k in a if k in b and _same(a[k], b[k]))
    return list(old).index(was) == list(new).index(now) and 2 * kept >= len(a.keys() | b.keys())


class _TomlEdit:
    def __init__(self, text: str) -> None:
        self.s = text
        self.stmts = _parse(text)
        self.tables = [_Table((), -1)]
        for idx, st in enumerate(self.stmts):
            if st.kind == "array":
                raise _Unsupported("an array of tables")
            if st.kind == "header":
                if not (len(st.path) == 1 or (len(st.path) == 2 and st.path[0] == "steps")):
                    raise _Unsupported(f"table {st.path}")
                self.tables.append(_Table(st.path, idx))
            elif st.kind == "entry":
                if len(st.path) != 1 or self.tables[-1].path == ("steps",):
                    raise _Unsupported(f"dotted key {st.path}")
                self.tables[-1].entries[st.path[0]] = st
        self.edits: list[tuple[int, int, int, int, str]] = []

    def add(self, start: int, end: int, text: str, prio: int = 1) -> None:
        """Replace s[start:end] with text ("\\n" line breaks); insertions at one
        point go in order of prio, then of call."""
        self.edits.append((start, end, prio, len(self.edits), text))

    def insert(self, pos: int, text: str, prio: int = 1) -> None:
        self.add(pos, pos, text, prio)

    def _lead(self, idx: int) -> int:
        """Index of the first of the comment lines directly above statement idx."""
        while idx > 0 and self.stmts[idx - 1].kind == "comment":
            idx -= 1
        return idx

    def before(self, t: _Table) -> int:
        return self.stmts[self._lead(t.head)].start

    def delete_table(self, t: _Table) -> None:
        nxt = next((k for k in range(t.head + 1, len(self.stmts)) if self.stmts[k].kind == "header"), None)
        end = len(self.s) if nxt is None else self.stmts[self._lead(nxt)].start
        self.add(self.before(t), end, "", _CUT)

    def edit_table(self, t: _Table, old: dict[str, Any], new: dict[str, Any], where: str) -> None:
        if set(t.entries) != set(old):
            raise _Unsupported(f"table {where} does not map")
        for k, st in t.entries.items():
            if k not in new:
                self.add(st.start, st.end, "")
            elif not _same(old[k], new[k]):
                self.add(st.vstart, st.vend, dump_toml_value(new[k], f"{where}.{k}", lines=k == "python"))
        if t.entries:
            last = max(t.entries.values(), key=lambda st: st.start)
            pos, indent = last.end, self.s[last.start:_ws(self.s, last.start)]
        else:
            pos, indent = self.stmts[t.head].end, ""
        lines = "".join(_line(k, v, where, indent) for k, v in new.items() if k not in old)
        if lines:
            self.insert(pos, lines)

    def edit_steps(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        tables = {t.path[1]: t for t in self.tables if len(t.path) == 2}
        if set(tables) != set(old) or not all(isinstance(o, dict) for o in new.values()):
            raise _Unsupported("steps do not map")
        gone = [k for k in old if k not in new]
        added = [k for k in new if k not in old]
        if len(gone) == len(added) == 1 and _renamed(old, new, gone[0], added[0]):
            t = tables[gone[0]]  # the table keeps its place and comments
            a, b = self.stmts[t.head].spans[-1]
            self.add(a, b, _key(added[0], "steps"))
            self.edit_table(t, old[gone[0]], new[added[0]], f"steps.{added[0]}")
            gone = added = []
        for k in gone:
            self.delete_table(tables[k])
        for k in old:
            if k in new:
                self.edit_table(tables[k], old[k], new[k], f"steps.{k}")
        for k in added:
            self.insert(len(self.s), "\n" + _block(("steps", k), new[k]), 2)

    def edit(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        root, tables = self.tables[0], self.tables[1:]
        tops = {t.path[0]: t for t in tables if len(t.path) == 1}
        if set(root.entries) | {t.path[0] for t in tables} != set(old):
            raise _Unsupported("top level does not map")
        for k in old:
            if k in root.entries:
                st = root.entries[k]
                if isinstance(old[k], dict) or isinstance(new.get(k), dict):
                    raise _Unsupported(f"root key {k} holds a table")
                if k not in new:
                    self.add(st.start, st.end, "")
                elif not _same(old[k], new[k]):
                    self.add(st.vstart, st.vend, dump_toml_value(new[k], k))
            elif k not in new:
                for t in tables:
                    if t.path[0] == k:
                        self.delete_table(t)
            elif not isinstance(new[k], dict):
                raise _Unsupported(f"{k} is no longer a table")
            elif k == "steps":
                self.edit_steps(old[k], new[k])
            elif k in tops:
                self.edit_table(tops[k], old[k], new[k], k)
            else:
                raise _Unsupported(f"no table [{k}]")
        n = len(self.s)
        steps = [t for t in tables if t.path[0] == "steps"]
        for k, v in new.items():
            if k in old:
                continue
            if not isinstance(v, dict):
                if root.entries:
                    self.insert(max(st.end for st in root.entries.values()), _line(k, v, ""), 0)
                elif tables:
                    self.insert(self.before(tables[0]), _line(k, v, "") + "\n", 0)
                else:
                    self.insert(n, _line(k, v, ""), 0)
            elif k == "steps" and v and all(isinstance(o, dict) for o in v.values()):
                for name, opts in v.items():
                    self.insert(n, "\n" + _block(("steps", name), opts), 2)
            elif steps:
                self.insert(self.before(steps[0]), _block((k,), v) + "\n", 2)
            else:
                self.insert(n, "\n" + _block((k,), v), 2)

    def result(self, nl: str) -> str:
        out, pos = "", 0
        for start, end, prio, _, text in sorted(self.edits):
            if start < pos:
                raise _Unsupported("overlapping edits")
            out += self.s[pos:start]
            if prio == _CUT and end == len(self.s):  # a table cut to the end: no blank lines left there
                out = re.sub(r"(?<=\n)([ \t]*\r?\n)+\Z", "", out)
            text = text.replace("\n", nl)
            if start == end and text:  # an insertion: on a line of its own, one blank line at most
                if out and not out.endswith("\n"):
                    text = nl + text
                if text.startswith(nl) and (not out or out.endswith("\n" + nl)):
                    text = text[len(nl):]
            out += text
            pos = end
        return out + self.s[pos:]


# ---------------------------------------------------------------- the entry point


def _kind(x: object) -> type:
    return next((t for t in (bool, int, float, str, list, dict) if isinstance(x, t)), type(x))


def _same(a: Any, b: Any) -> bool:
    """Equal as data, types included (1 is not 1.0 nor True; nan is nan; -0.0 is not 0.0)."""
    if _kind(a) is not _kind(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return bool(a == b)


def _check_json(value: Any, where: str, depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError(f"{where}: nested more than {_MAX_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} has no JSON form")
    elif isinstance(value, str):
        _no_surrogate(value, where)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]", depth + 1)
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: key {k!r} is not a string")
            _no_surrogate(k, f"{where}: key {k!r}")
            _check_json(v, f"{where}.{k}", depth + 1)
    else:
        raise ValueError(f"{where}: a {type(value).__name__} ({value!r:.60}) cannot be written to a flow file")


def _edit_json(text: str, new: dict[str, Any]) -> tuple[str, bool]:
    for k, v in new.items():
        if not isinstance(k, str):
            raise ValueError(f"top level: key {k!r} is not a string")
        _check_json(v, k)
    nl = "\r\n" if "\r\n" in text else "\n"
    body = text.replace("\r\n", "\n")
    core = body.rstrip()
    tail = body[len(core):] if core else "\n"
    try:
        old = json.loads(core) if core else {}
    except ValueError as e:
        raise ValueError(f"the file is not valid JSON any more ({e}); not overwriting it") from e
    if _same(old, new):
        return text, False
    m = re.search(r"^([ \t]+)\S", core, re.M)
    indent = (m.group(1) if m else 2) if "\n" in core else None
    layouts: list[dict[str, Any]] = [
        {"indent": ind, "separators": seps, "ensure_ascii": ea}
        for ind in dict.fromkeys([indent, None])
        for seps in ([(",", ": ")] if ind is not None else [(", ", ": ")]) + [(",", ":")]
        for ea in (False, True)
    ]
    layout = next((f for f in layouts if json.dumps(old, **f) == core), None)
    out = (json.dumps(new, **(layout or layouts[0])) + tail).replace("\n", nl)
    if not _same(json.loads(out), new):
        raise ValueError("the new data cannot be written as JSON that reads back the same")
    return out, layout is None


def edit_text(text: str, kind: str, new: dict[str, Any]) -> tuple[str, bool]:
    """The file text `text` (kind "toml" or "json") changed so that it parses to
    `new`, touching only what differs between the data `text` holds and `new`.

    Returns the new text and whether the whole file had to be rewritten (its
    layout could not be kept). Raises ValueError, naming the key, for a value
    that cannot be written (None, a lone surrogate, a non-string key, a
    non-finite float in JSON, an object that is not data), and when `text`
    itself does not parse (it is not overwritten).
    """
    if not isinstance(new, dict):
        raise ValueError(f"a flow file holds a table, not {type(new).__name__}")
    if kind == "json":
        return _edit_json(text, new)
    if kind != "toml":
        raise ValueError(f"unknown flow file kind {kind!r}: expected 'toml' or 'json'")
    full = dump_toml(new)  # checks every value before anything else
    try:
        old = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"the file is not valid TOML any more ({e}); not overwriting it") from e
    nl = "\r\n" if "\r\n" in text else "\n"
    ends = text.endswith("\n") or not text

    def finish(out: str) -> str:
        if not ends:
            return out.rstrip("\r\n")
        return out + nl if out and not out.endswith("\n") else out

    try:
        editor = _TomlEdit(text)
        editor.edit(old, new)
        out = finish(editor.result(nl))
        if _same(tomllib.loads(out), new):
            return out, False
    except Exception:  # _Unsupported, or anything else: the full rewrite below is checked too
        pass
    out = finish(full.replace("\n", nl))
    try:
        ok = _same(tomllib.loads(out), new)
    except tomllib.TOMLDecodeError:
        ok = False
    if not ok:
        raise ValueError("the new data cannot be written as TOML that reads back the same")
    return out, True
