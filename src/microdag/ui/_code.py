"""A step's code as the step panel shows and saves it: a function in a module file, or inline code.

For a ``call = "pkg.mod:func"`` step the module's file is found as Python
would import it (the flow file's folder first, then ``sys.path``; no code is
run to find it) and the function is found in its text with :mod:`ast`: a
top-level ``def`` or ``async def`` named ``func``, from its first decorator's
line to its last line.  What the panel gets is that text (``code``), its first
line in the file, and a digest of the whole file (``sha256``) to save against.

A save (:func:`save`) replaces exactly those lines and nothing else: every
byte before the first and after the last is kept (a byte order mark, another
line ending, tabs, a last line with no newline); the new code's lines take the
file's line ending.  It is refused, with nothing written, when

- the module is not under the served folder (403: it is shown read only, with
  its path),
- the file changed since the digest the page read (409),
- the new code has a problem (422, with problems ``{"line", "col",
  "message"}``, lines within the code): ``_inline.problems``, the one home of
  the checks of step code, finds them (a syntax error, what only compiling
  finds, no function of that name, a parameter that binds to nothing in the
  flow: the editor's document when the page sends it, else the flow file's),
  or the file with it would not parse.  :meth:`StepCode.check` gives the same
  problems without saving: the panel shows them as the user types.

The file is written as a flow file's save writes it (``stores._files.write_atomic``:
a temporary file beside it, fsync, rename, its permissions kept), and the
module is dropped from ``sys.modules`` so that the server's next check of the
flow imports the new code.

An inline step (``python = '''...'''`` in the flow file) is shown from the
flow file itself (kind ``inline``); it is saved with the flow (``PUT
/api/flows/PATH``), not here.
"""

import ast
import hashlib
import os
import re
import sys
import threading

from .._inline import problems, toml_lines
from ..stores._files import write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: One save at a time: the digest check and the write are one step.
_SAVING = threading.Lock()
_EOL = re.compile(r"\r\n|\r|\n")


class CodeError(Exception):
    """A request for a step's code refused: ``status``, a message and, for
    code that cannot be saved, its ``problems``."""

    def __init__(self, status: int, message: str, problems: "list[dict[str, Any]] | None" = None) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.problems = problems or []


def digest(data: bytes) -> str:
    """The digest a save is checked against: sha256 of the whole file, in hex."""
    return hashlib.sha256(data).hexdigest()


def module_file(module: str, folder: str) -> "str | None":
    """The file Python imports for ``module`` (``pkg.mod``), looking where a flow
    file's ``call`` is imported from: ``folder``, then ``sys.path``; ``None``
    when it is not a plain ``.py`` file there."""
    parts = module.split(".")
    for base in [folder, *sys.path]:
        base = base or os.getcwd()
        for candidate in (os.path.join(base, *parts) + ".py", os.path.join(base, *parts, "__init__.py")):
            if os.path.isfile(candidate):
                return os.path.realpath(candidate)
    return None


def _lines(text: str) -> "list[int]":
    """The offset where each line of ``text`` starts (lines as :mod:`ast` counts them)."""
    return [0] + [m.end() for m in _EOL.finditer(text)]


def find(text: str, function: str) -> "tuple[int, int, int] | None":
    """Where top-level function ``function`` is in module text ``text``:
    ``(first line, start offset, end offset)``, the first line 1-based
    (decorators included), the span from that line's start to the end of the
    function's last line (its line ending excluded); ``None`` when the text
    does not parse or has no such function."""
    try:
        tree = ast.parse(text.removeprefix("\ufeff"))
    except (SyntaxError, ValueError):
        return None
    found = [
        node for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function
    ]
    if not found:
        return None
    node = found[-1]  # (the one the module ends up with)
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    starts = _lines(text)
    last = node.end_lineno or node.lineno
    end = starts[last] if last < len(starts) else len(text)
    while end > starts[last - 1] and text[end - 1] in "\r\n":
        end -= 1
    start = starts[first - 1] + (1 if first == 1 and text.startswith("\ufeff") else 0)
    return first, start, end


def _names(doc: "Any", step: str) -> "set[str] | None":
    """What a parameter of step ``step``'s function may be named in flow document
    ``doc``, as a flow file binds it (``None``: the document has no steps to bind to)."""
    steps = doc.get("steps") if isinstance(doc, dict) else None
    if not isinstance(steps, dict):
        return None
    inputs = doc.get("inputs")
    body = steps.get(step)
    mapped = body.get("inputs") if isinstance(body, dict) else None
    return {*steps, *(inputs if isinstance(inputs, dict) else ()), *(mapped if isinstance(mapped, dict) else ())}


class StepCode:
    """One step's code: where it lives and whether it may be saved there."""

    def __init__(self, root: str, flow_path: str, rel: str, step: str, doc: "dict[str, Any] | None") -> None:
        self.root = root
        self.flow_path = flow_path  # the flow file's real path
        self.rel = rel
        self.step = step
        steps = doc.get("steps") if isinstance(doc, dict) else None
        body = steps.get(step) if isinstance(steps, dict) else None
        if not isinstance(body, dict):
            raise CodeError(404, f"flow {rel!r} has no step named {step!r}")
        self.body = body
        self.doc = doc

    def _shown(self, path: str) -> str:
        inside = path.startswith(self.root.rstrip(os.sep) + os.sep)
        return os.path.relpath(path, self.root).replace(os.sep, "/") if inside else path

    def read(self) -> "dict[str, Any]":
        """``GET /api/flows/PATH/steps/STEP/code``."""
        if isinstance(self.body.get("python"), str):
            return self._inline()
        return self._module()[0]

    def _module(self) -> "tuple[dict[str, Any], str, str]":
        """A ``call`` step's code as :meth:`read` shows it, its module's file and its module."""
        call = self.body.get("call")
        if not isinstance(call, str) or ":" not in call:
            kind = "a command step" if "command" in self.body else "not a call step"
            raise CodeError(404, f"step {self.step!r} has no Python code to show: it is {kind}")
        module, _, function = call.partition(":")
        path = module_file(module, os.path.dirname(self.flow_path))
        if path is None:
            raise CodeError(404, f"step {self.step!r}: the source of module {module!r} cannot be found "
                                 "(a .py file beside the flow file or on sys.path)")
        try:
            with open(path, "rb") as f:
                data = f.read()
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CodeError(404, f"step {self.step!r}: {self._shown(path)} cannot be read ({exc})") from None
        where = find(text, function)
        if where is None:
            raise CodeError(404, f"step {self.step!r}: no top-level function {function!r} found in "
                                 f"{self._shown(path)} (or the file does not parse)")
        line, start, end = where
        why = None
        if not path.startswith(self.root.rstrip(os.sep) + os.sep):
            why = f"{path} is outside the folder this UI serves: shown read only"
        elif not os.access(path, os.W_OK):
            why = f"{self._shown(path)} cannot be written"
        return {"kind": "module", "path": self._shown(path), "editable": why is None, "function": function,
                "line": line, "code": text[start:end], "digest": digest(data), "why": why}, path, module

    def _inline(self) -> "dict[str, Any]":
        with open(self.flow_path, "rb") as f:
            data = f.read()
        text = data.decode("utf-8", "replace")
        code = self.body["python"]
        line = 1
        if self.flow_path.lower().endswith(".toml"):
            from .._tomltext import value_spans  # (an inline step's line: its flow file read as TOML)

            body = text.removeprefix("\ufeff")
            found = value_spans(body).get(("steps", self.step, "python"))
            if found is not None:  # where the code's first line is, as the flow file's errors say it
                start, end, first = found
                line = toml_lines(body[start:end], first)[0]
        return {"kind": "inline", "path": self.rel, "editable": True, "function": self.step, "line": max(1, line),
                "code": code, "digest": digest(data), "why": None}

    def check(self, code: str, doc: "dict[str, Any] | None" = None) -> "list[dict[str, Any]]":
        """``POST /api/flows/PATH/steps/STEP/code/check``: the problems of ``code``
        as this step's function (``_inline.problems``: a syntax error, the
        function missing, parameters that bind to nothing in ``doc``, the
        editor's document, or else the flow file's), each ``{"line", "col",
        "message"}`` with its line within the code."""
        function = None if isinstance(self.body.get("python"), str) else self._module()[0]["function"]
        return self._problems(code, doc, function)

    def _problems(self, code: str, doc: "dict[str, Any] | None", function: "str | None") -> "list[dict[str, Any]]":
        names = _names(self.doc if doc is None else doc, self.step)
        return [p._asdict() for p in problems(code, self.step, names, function=function)]

    def save(self, code: str, given: str, doc: "dict[str, Any] | None" = None) -> "dict[str, Any]":
        """``PUT /api/flows/PATH/steps/STEP/code``: the function replaced by ``code``
        (refused when :meth:`check` finds a problem in it)."""
        if isinstance(self.body.get("python"), str):
            raise CodeError(400, f"step {self.step!r} is inline: its code is saved with the flow file")
        shown, path, module = self._module()
        if not shown["editable"]:
            raise CodeError(403, f"step {self.step!r}: {shown['why']}")
        found = self._problems(code, doc, shown["function"])
        if found:
            raise CodeError(422, f"not saved: {found[0]['message']}", found)
        with _SAVING:
            with open(path, "rb") as f:
                data = f.read()
            if digest(data) != given:
                raise CodeError(409, f"{shown['path']} changed since it was read: reload the code to edit it")
            text = data.decode("utf-8")
            where = find(text, shown["function"])
            assert where is not None  # (it was there a moment ago, with the same digest)
            _, start, end = where
            m = _EOL.search(text)
            eol = m.group() if m else "\n"
            new = _EOL.sub(eol, code.rstrip("\r\n"))
            after = text[:start] + new + text[end:]
            if find(after, shown["function"]) is None:
                raise CodeError(422, "not saved: the module would not parse with this code",
                                [{"line": 1, "col": 0, "message": "the module would not parse with this code"}])
            write_atomic(path, after.encode("utf-8"), keep_mode=True)
        sys.modules.pop(module, None)  # the next check imports what was saved
        return self.read()
