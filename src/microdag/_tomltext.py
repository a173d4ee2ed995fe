"""TOML text as statements with their positions: the one reader of a TOML file's characters.

:mod:`tomllib` gives a file's data but not where each key is written.  Two
users need that: the flow-file builder (``_flowfile``), to put the line of
a key in its error messages, and the UI's editor (``ui._edit``), to change a
value's characters and nothing else.  Both read the text through
:func:`parse` here, so they agree on where every key is.

:func:`parse` cuts the text into statements, one per line or per
multi-line value: blank lines, comment lines, table headers (``[a.b]``),
array-of-tables headers (``[[a.b]]``) and ``key = value`` entries with the
span of their value.  It follows strings of the four kinds, arrays and
inline tables over several lines and comments inside them exactly, so a
``[`` or ``key =`` inside a string is never taken for a header or a key.
It reads text that :mod:`tomllib` accepts; on anything else it raises
:class:`Unsupported` (the editor then rewrites the whole file; the builder
keeps the lines found so far).  :func:`key_lines` walks the statements (and
the inline tables in their values) into ``key path -> line``; :func:`value_spans`
finds where each key's value is written (an inline step's code: ``_inline``
numbers its lines from there).

Light on purpose: it imports :mod:`re` only, and :mod:`tomllib` when a
quoted key must be decoded.
"""

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["BARE", "Stmt", "Unsupported", "key_lines", "parse", "value_spans", "ws"]

#: A bare TOML key.
BARE = re.compile(r"[A-Za-z0-9_-]+")


class Unsupported(Exception):
    """The text has a shape :func:`parse` does not read (it is not TOML)."""


class Stmt:
    """One statement of the text (see :func:`parse`)."""

    __slots__ = ("end", "kind", "path", "spans", "start", "vend", "vstart")

    def __init__(
        self,
        kind: str,
        start: int,
        end: int,
        path: "tuple[str, ...]" = (),
        spans: "tuple[tuple[int, int], ...]" = (),
        vstart: int = 0,
        vend: int = 0,
    ) -> None:
        self.kind = kind  # "blank", "comment", "header", "array" ([[...]]) or "entry"
        self.start = start  # first character of its first line
        self.end = end  # just past its last line break (or the end of the text)
        self.path = path  # header: the table's; entry: the dotted key's
        self.spans = spans  # where each part of that path is written
        self.vstart = vstart  # entry: its value's characters
        self.vend = vend


def ws(s: str, i: int) -> int:
    """Past the blanks (spaces and tabs) at ``s[i]``."""
    while i < len(s) and s[i] in " \t":
        i += 1
    return i


def _eol(s: str, i: int) -> int:
    j = s.find("\n", i)
    return len(s) if j < 0 else j + 1


def _str_end(s: str, i: int) -> int:
    """Just past the string that starts at s[i] (a quote), of any of the four kinds."""
    q = s[i]
    if s.startswith(q * 3, i):
        j = i + 3
        while True:  # to the next three quotes that no backslash escapes (step code can be long)
            end = s.find(q * 3, j)
            if end < 0:
                raise Unsupported("unterminated string")
            escape = s.find("\\", j, end) if q == '"' else -1
            if escape < 0:
                j = end
                break
            j = escape + 2
        k = j + 3
        while k < min(len(s), j + 5) and s[k] == q:  # up to two quotes before the closing three
            k += 1
        return k
    j = i + 1
    while j < len(s) and s[j] not in (q, "\n"):
        j += 2 if q == '"' and s[j] == "\\" else 1
    if j >= len(s) or s[j] != q:
        raise Unsupported("unterminated string")
    return j + 1


def _value_end(s: str, i: int, inline: bool = False) -> int:
    """Just past the value that starts at s[i] (arrays and strings may span lines);
    ``inline``: a value inside an inline table, which a ``,`` or ``}`` also ends."""
    start, depth = i, 0
    while i < len(s):
        c = s[i]
        if c in "\"'":
            i = _str_end(s, i)
            continue
        if depth <= 0 and (c in "#\n" or inline and c in ",}"):
            break
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        elif c == "#":  # a comment inside an array
            i = _eol(s, i)
            continue
        i += 1
    while i > start and s[i - 1] in " \t\r":
        i -= 1
    return i


def _key_path(s: str, i: int) -> "tuple[tuple[str, ...], tuple[tuple[int, int], ...], int]":
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    while True:
        i = ws(s, i)
        if i < len(s) and s[i] in "\"'":
            import tomllib  # (only for a quoted key: TOML's escapes are its own)

            j = _str_end(s, i)
            parts.append(tomllib.loads("k = " + s[i:j])["k"])
        else:
            m = BARE.match(s, i)
            if not m:
                raise Unsupported(f"no key at {i}")
            j = m.end()
            parts.append(m.group())
        spans.append((i, j))
        i = ws(s, j)
        if i < len(s) and s[i] == ".":
            i += 1
            continue
        return tuple(parts), tuple(spans), i


def _rest(s: str, i: int) -> int:
    """Past the end of the line, after a statement ending at i: blanks and a comment only."""
    i = ws(s, i)
    if i < len(s) and s[i] not in "#\r\n":
        raise Unsupported(f"unexpected text at {i}")
    return _eol(s, i)


def parse(s: str) -> "list[Stmt]":
    """The statements of TOML text ``s``, in order, covering it whole.

    Raises:
        Unsupported: ``s`` is not TOML this reader follows.
    """
    return list(_statements(s))


def _statements(s: str) -> "Iterator[Stmt]":
    """:func:`parse`, one statement at a time."""
    i = 0
    while i < len(s):
        j = ws(s, i)
        if j >= len(s) or s[j] in "\r\n":
            st = Stmt("blank", i, _eol(s, j))
        elif s[j] == "#":
            st = Stmt("comment", i, _eol(s, j))
        elif s[j] == "[":
            array = s.startswith("[[", j)
            path, spans, k = _key_path(s, j + (2 if array else 1))
            close = "]]" if array else "]"
            if not s.startswith(close, k):
                raise Unsupported(f"unexpected text at {k}")
            st = Stmt("array" if array else "header", i, _rest(s, k + len(close)), path, spans)
        else:
            path, spans, k = _key_path(s, j)
            if k >= len(s) or s[k] != "=":
                raise Unsupported(f"unexpected text at {k}")
            v = ws(s, k + 1)
            e = _value_end(s, v)
            st = Stmt("entry", i, _rest(s, e), path, spans, v, e)
        yield st
        i = st.end


def key_lines(s: str) -> "dict[tuple[str, ...], int]":
    """Key path -> the line (from 1) where TOML text ``s`` writes it.

    A table's line is its header's; a key's is its ``key =`` line, also inside
    inline tables (``a = { b = 1 }`` gives ``(..., "a", "b")``); the first of
    repeated headers (``[[x]]``) counts.  A table only implied by a longer
    path (the ``steps`` of ``[steps.a]``, the ``a`` of ``a.b = 1``) gets the
    line of its first mention, unless it is written itself.  On text that
    :func:`parse` does not read, the lines found before it stopped.
    """
    exact: dict[tuple[str, ...], int] = {}
    implied: dict[tuple[str, ...], int] = {}
    seen = [0, 1]  # offset, line there: offsets only grow, so lines are counted once

    def note(path: "tuple[str, ...]", pos: int) -> None:
        seen[1] += s.count("\n", seen[0], pos)
        seen[0] = pos
        exact.setdefault(path, seen[1])
        for n in range(1, len(path)):
            implied.setdefault(path[:n], seen[1])

    def inline(i: int, path: "tuple[str, ...]") -> None:
        """The keys of the inline table that opens at ``s[i]``."""
        i = ws(s, i + 1)
        while i < len(s) and s[i] != "}":
            keys, spans, k = _key_path(s, i)
            if k >= len(s) or s[k] != "=":
                raise Unsupported(f"unexpected text at {k}")
            note(path + keys, spans[0][0])
            v = ws(s, k + 1)
            if s.startswith("{", v):
                inline(v, path + keys)  # (nests as deep as the file, which its loader bounds)
            i = ws(s, _value_end(s, v, inline=True))
            if s.startswith(",", i):
                i = ws(s, i + 1)

    table: tuple[str, ...] = ()
    try:
        for st in _statements(s):
            if st.kind in ("header", "array"):
                table = st.path
                note(table, st.spans[0][0])
            elif st.kind == "entry":
                note(table + st.path, st.spans[0][0])
                if s.startswith("{", st.vstart):
                    inline(st.vstart, table + st.path)
    except Unsupported:
        pass
    implied.update(exact)
    return implied



def value_spans(s: str) -> "dict[tuple[str, ...], tuple[int, int, int]]":
    """Key path -> where TOML text ``s`` writes its value: its first and
    past-last characters and the line (from 1) where it starts, for each
    ``key = value`` entry of a table (not the keys inside inline tables; the
    first of repeated ones).  On text that :func:`parse` does not read, the
    values found before it stopped."""
    out: dict[tuple[str, ...], tuple[int, int, int]] = {}
    table: tuple[str, ...] = ()
    pos, line = 0, 1  # offsets only grow, so lines are counted once
    try:
        for st in _statements(s):
            if st.kind in ("header", "array"):
                table = st.path
            elif st.kind == "entry":
                line += s.count("\n", pos, st.vstart)
                pos = st.vstart
                out.setdefault(table + st.path, (st.vstart, st.vend, line))
    except Unsupported:
        pass
    return out
