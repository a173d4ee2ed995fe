"""Run this step, run up to here: the flow a step's run loads, and the values it is given.

The editor's document may be unsaved.  Its run is an ordinary run of a
**draft**: the document written as a hidden file beside the real one
(``.microdag-draft-RUNID.toml``), which a ``python -m microdag run`` child
loads exactly as it would load the real file (the same folder, so the same
modules for ``call`` and the same flow name, so the run is listed with the
flow's), and which is removed once the child has exited.  The Flows list
never shows it (hidden files are not searched).  A hidden file rather than
the flow's text on the child's stdin: the child, the loader and the command
line stay as they are, and a draft is checked by the same ``check_text`` as
any file before the child starts.

- **Run up to here** (``upstream``) runs the draft with ``--target STEP``:
  the step and its ancestors, on the flow inputs given (typed, or the source
  run's).
- **Run this step** runs a draft of **the step alone**: its ``depends_on``
  dropped and each ``{steps.X}`` of a command read as ``{inputs.X}``, so the
  parameters that took its dependencies' outputs take flow inputs of the same
  names.  Their values are the outputs the source run recorded (``from_run``,
  or the flow's newest run that recorded every one), with the flow inputs it
  recorded; values typed as JSON (``inputs``) win.
"""

import ast
import json
import os
import re

from .._inline import function_node
from ._edit import dump_toml

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..stores import Store

#: The start of a draft's file name (a hidden file: never listed as a flow).
PREFIX = ".microdag-draft-"
#: ``{steps.X}`` in a command's item.
_PLACEHOLDER = re.compile(r"(?<!\{)\{steps\.([^{}]+)\}(?!\})")
#: Every JSON type: what a dependency's output may be.
_ANY = ("string", "integer", "number", "boolean", "array", "object", "null")
#: Newest runs of the flow looked at for one that recorded what a step needs.
LOOK_BACK = 50


class DraftError(Exception):
    """A step that cannot be run as asked: ``status`` and a message naming the step."""

    def __init__(self, status: int, message: str, problems: "list[dict[str, Any]] | None" = None) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.problems = problems or []


def path_of(real: str, run_id: str) -> str:
    """Where the draft of flow file ``real`` for run ``run_id`` is written."""
    ext = ".json" if real.lower().endswith(".json") else ".toml"
    return os.path.join(os.path.dirname(real), f"{PREFIX}{run_id}{ext}")


def is_draft(source: str) -> bool:
    """Whether a run's recorded source is a draft (a step run from the editor)."""
    return os.path.basename(source).startswith(PREFIX)


def text_of(doc: "dict[str, Any]", json_file: bool) -> str:
    """``doc`` as a flow file's text."""
    if json_file:
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    return dump_toml(doc)


def write(path: str, text: str) -> None:
    """Write a new draft (never over another file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def alone(doc: "dict[str, Any]", step: str) -> "dict[str, Any]":
    """``doc`` with step ``step`` alone: what it took from other steps, it takes from flow inputs
    (``doc`` itself when the step is not a table of options: its check says so)."""
    if not isinstance(doc["steps"][step], dict):
        return doc
    body = dict(doc["steps"][step])
    body.pop("depends_on", None)
    out = {k: v for k, v in doc.items() if k != "steps"}
    named: list[str] = []
    if isinstance(body.get("python"), str):  # inline code: its parameters named like other steps
        named = [p for p in _parameters(body["python"], step) if p != step and p in doc["steps"]]
    if isinstance(body.get("command"), list):
        named = [m[1] for a in body["command"] if isinstance(a, str) for m in _PLACEHOLDER.finditer(a)]
        body["command"] = [_PLACEHOLDER.sub(r"{inputs.\1}", a) if isinstance(a, str) else a for a in body["command"]]
    if named:
        declared = dict(out["inputs"]) if isinstance(out.get("inputs"), dict) else {}
        for name in named:  # an input of any type, with no default: the step's run gives it
            declared.setdefault(name, {"type": list(_ANY)})
        if declared:
            out["inputs"] = declared
    out["steps"] = {step: body}
    return out


def _parameters(code: str, step: str) -> "list[str]":
    """The parameter names of inline step ``step``'s function (none when the code does not parse)."""
    try:
        node = function_node(ast.parse(code), step)
    except SyntaxError:
        return []
    if isinstance(node, str):  # no function found: the check says so
        return []
    return [a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)]


def values(
    store: "Store | None",
    flow: str,
    step: str,
    wanted: "dict[str, bool]",
    steps: "set[str]",
    typed: "dict[str, Any] | None",
    from_run: "str | None",
) -> "tuple[dict[str, Any], str | None]":
    """The inputs of the run: each of ``wanted`` (input name -> required) that
    is a step of ``steps`` from that step's recorded output, any other from the
    recorded flow inputs, ``typed`` over both; and the run they came from.

    Raises:
        DraftError: ``from_run`` unknown, or a required value found nowhere.
    """
    from ..stores import StoreError  # (the store's errors: a step run from the UI reads one)

    typed = typed or {}
    untyped = [n for n, required in wanted.items() if required and n not in typed]
    source = None
    if store is not None and (from_run is not None or untyped or not typed):
        source = from_run if from_run is not None else _latest(store, flow, [n for n in untyped if n in steps])
    given: dict[str, Any] = {}
    if source is not None and store is not None:
        try:
            recorded = store.run_info(source).inputs
        except StoreError as exc:
            raise DraftError(404, f"step {step!r}: {exc}") from None
        for name in wanted:
            if name in steps:
                try:
                    given[name] = store.output(source, name)
                except (KeyError, StoreError):
                    pass
            elif name in recorded:
                given[name] = recorded[name]
    given.update({k: v for k, v in typed.items() if k in wanted})
    missing = [n for n, required in wanted.items() if required and n not in given]
    if missing:
        where = f"run {source}" if source else f"no run of flow {flow!r}"
        raise DraftError(422, f"step {step!r} needs {', '.join(map(repr, missing))}: {where} recorded "
                              f"{'them' if len(missing) > 1 else 'it'}; run what it depends on first "
                              "(run up to here), or type its arguments as JSON")
    return given, source


def _latest(store: "Store", flow: str, needed: "list[str]") -> "str | None":
    """The newest run of ``flow`` whose steps ``needed`` all succeeded (any run when none is needed)."""
    for info in store.list_runs(flow, LOOK_BACK):
        if not needed:
            return info.id
        done = {r.step for r in store.tasks(info.id, outputs=False) if r.item < 0 and r.status == "succeeded"}
        if all(n in done for n in needed):
            return info.id
    return None
