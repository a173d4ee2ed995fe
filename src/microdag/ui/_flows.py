"""The flow files the UI may show, check and save, and nothing else.

A :class:`Folder` is the folder the UI was started in plus the flow specs
named on its command line.  Every path from a request goes through
:meth:`Folder.resolve`, which refuses absolute paths, ``..``, NUL, names that
are neither flow files nor named, and anything whose real path (symlinks
followed) leaves the folder: that is the one door to the file system.

Flow files (TOML, JSON) are editable; Python flows are shown read only (their
code is the user's to edit).  A save checks the new document first (the text
it would write, checked as that file: ``_spec.check_text``), refuses it with
every problem when it is invalid (a problem of a step's ``python`` code with
its ``line`` and ``col`` within the code, ``field`` ``"python"``), and writes
it atomically (the stores' ``write_atomic``: a temporary file beside it,
fsync, rename, its permissions kept) with ``_edit.edit_text``, which keeps
every byte of the file that the edit did not touch.
"""

import json
import os
import re
import tomllib

from .._errors import CycleError, FlowError
from .._flowrules import DECLARATION
from .._plan import NO_DEFAULT
from .._schema import describe
from .._spec import check_text, load_flow
from ..stores._files import write_atomic
from ._edit import edit_text
from ._runs import graph_json, jsonable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .._flow import Flow

#: Folders never searched for flow files.
_SKIP = {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox", ".mypy_cache",
         ".pytest_cache", ".microdag", "site-packages", "build", "dist"}
#: How a flow file that does not parse is told from other TOML and JSON files: every pattern found.
_LOOKS_LIKE_A_FLOW = {
    "toml": (re.compile(r"^\s*\[+\s*(flow|steps)\s*[\].]", re.MULTILINE),),
    "json": (re.compile(r'"flow"\s*:'), re.compile(r'"steps"\s*:')),
}
#: Files looked at when searching the folder, at most (a flow file is small).
_MAX_FILES, _MAX_BYTES = 2000, 1 << 20


class PathRefused(Exception):
    """A path from a request that the UI does not serve (the message says why)."""


class Folder:
    """The served folder and the flows named on the command line."""

    def __init__(self, root: str, named: "list[str]") -> None:
        self.root = os.path.realpath(root)
        #: A flow file's path -> ((path, its text), its problems): the list's checks, kept while the text is the same.
        self._problem_cache: dict[str, tuple[tuple[str, str], list[dict[str, Any]]]] = {}
        #: Relative (or, outside the folder, absolute) path -> the spec as named.
        self.named: dict[str, str] = {}
        for spec in named:
            path, _, attr = spec.partition(":") if not os.path.exists(spec) else (spec, "", "")
            real = os.path.realpath(path)
            key = os.path.relpath(real, self.root) if _inside(real, self.root) else real
            self.named[key.replace(os.sep, "/") + (f":{attr}" if attr else "")] = spec

    # -- the one door

    def resolve(self, rel: str) -> str:
        """The real path of flow ``rel`` (as the API names it).

        Raises:
            PathRefused: not a flow this UI serves.
        """
        if rel in self.named:
            spec = self.named[rel]
            return os.path.realpath(spec.partition(":")[0] if not os.path.exists(spec) else spec)
        if not rel or "\0" in rel or "\\" in rel or os.path.isabs(rel) or rel.startswith("~"):
            raise PathRefused(f"{rel!r}: only relative paths inside the served folder")
        parts = rel.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise PathRefused(f"{rel!r}: no '..', '.' or empty parts")
        if kind(rel) not in ("toml", "json"):
            raise PathRefused(f"{rel!r}: not a .toml or .json flow file (Python flows: name them on the command line)")
        real = os.path.realpath(os.path.join(self.root, *parts))
        if not _inside(real, self.root):
            raise PathRefused(f"{rel!r}: leads outside the served folder")
        return real

    def key_of(self, source: str) -> "str | None":
        """The API's name of the flow a run recorded as its source (``_source``:
        an absolute path, with ``:NAME`` for a Python file, or ``module:NAME``),
        or ``None`` when this UI does not serve it."""
        for key, spec in self.named.items():
            if spec == source:
                return key
        path, attr = (source, "") if os.path.exists(source) else source.rpartition(":")[::2]
        if not path:
            return None
        real = os.path.realpath(path)
        for key, spec in self.named.items():
            named_path, _, named_attr = spec.partition(":") if not os.path.exists(spec) else (spec, "", "")
            if os.path.realpath(named_path) == real and (named_attr == attr or not attr):
                return key
        if attr or kind(real) not in ("toml", "json") or not _inside(real, self.root):
            return None
        return os.path.relpath(real, self.root).replace(os.sep, "/")

    def spec_of(self, rel: str) -> str:
        """What ``python -m microdag`` (started in the folder) is given for flow ``rel``.

        Raises:
            PathRefused: not a flow this UI serves.
        """
        return self.named[rel] if rel in self.named else self.resolve(rel)

    # -- listing

    def flows(self) -> "list[dict[str, Any]]":
        """``GET /api/flows``: the named flows, then the flow files found in the folder."""
        out = []
        seen = set()
        for rel, spec in self.named.items():
            seen.add(rel)
            out.append(self._entry(rel, spec, None))
        for rel, data in self._search():
            if rel not in seen:
                out.append(self._entry(rel, None, data))
        return out

    def _entry(self, rel: str, spec: "str | None", data: "dict[str, Any] | None") -> "dict[str, Any]":
        """A flow of the list: its name and the messages of the problems
        ``GET /api/flows/PATH`` lists (a file that does not parse included);
        ``data``: its file's, when the search has read it already."""
        k = kind(rel.partition(":")[0] if spec is not None and not os.path.exists(spec) else rel)
        name, problems = None, []
        if k in ("toml", "json"):
            try:
                path = self.resolve(rel)
                with open(path, encoding="utf-8-sig") as f:
                    text = f.read()
                if data is None:
                    data = _parse(text, k)
                name = data.get("flow", {}).get("name") if isinstance(data.get("flow"), dict) else None
            except (OSError, UnicodeDecodeError, PathRefused) as exc:
                problems.append(str(exc))
            except ValueError:
                pass  # (the check below words it as the flow's page does)
            if not problems:
                problems = [p["message"] for p in self._checked(rel, path, text)]
        return {"path": rel, "name": name, "kind": k, "editable": k in ("toml", "json"), "problems": problems}

    def _checked(self, rel: str, path: str, text: str) -> "list[dict[str, Any]]":
        """The problems of flow file ``rel`` holding ``text``, remembered while
        the text is the same (the list shows every flow's on each visit)."""
        key = (path, text)
        found = self._problem_cache.get(path)
        if found is None or found[0] != key:
            found = self._problem_cache[path] = (key, self.checked(rel, path, text)[1])
        return found[1]

    @staticmethod
    def checked(rel: str, path: str, text: str) -> "tuple[Flow | None, list[dict[str, Any]]]":
        """``text`` checked as flow file ``path``: the flow and its problems as the API lists them."""
        flow, located = check_text(path, text[1:] if text.startswith("\ufeff") else text)
        problems = []
        for where, message, code in located:
            problem: dict[str, Any] = {
                "message": _relative(message, path, rel),
                "step": where[1] if len(where) > 1 and where[0] == "steps" else None,
                "key": where[2] if len(where) > 2 and where[0] == "steps" else None,
            }
            if code is not None:  # a problem of step code: where it is within the code
                problem.update(field="python", line=code.line, col=code.col, message=code.message)
            problems.append(problem)
        return flow, problems

    def _search(self) -> "list[tuple[str, dict[str, Any] | None]]":
        """Flow files under the folder (a ``.toml``/``.json`` file with a ``flow``
        table and ``steps``; one that does not parse when it names them) with
        their data (``None``: it does not parse), sorted; symlinks are not followed."""
        found: list[tuple[str, dict[str, Any] | None]] = []
        looked = 0
        for top, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP and not d.startswith("."))
            for name in sorted(files):
                if kind(name) not in ("toml", "json") or name == "pyproject.toml" or name.startswith("."):
                    continue
                looked += 1
                if looked > _MAX_FILES:
                    return found
                path = os.path.join(top, name)
                try:
                    if os.path.islink(path) or os.path.getsize(path) > _MAX_BYTES:
                        continue
                    with open(path, encoding="utf-8-sig") as f:
                        head = f.read(_MAX_BYTES)
                except (OSError, UnicodeDecodeError):
                    continue
                rel = os.path.relpath(path, self.root).replace(os.sep, "/")
                try:
                    data = _parse(head, kind(name))
                except ValueError:  # listed when it reads like a flow file: the user must see what to fix
                    if all(p.search(head) for p in _LOOKS_LIKE_A_FLOW[kind(name)]):
                        found.append((rel, None))
                    continue
                if isinstance(data.get("flow"), dict) and "steps" in data:
                    found.append((rel, data))
        return found

    # -- one flow

    def detail(self, rel: str) -> "dict[str, Any]":
        """``GET /api/flows/PATH``: the flow's document, steps, inputs, problems and drawing."""
        path, k, text = self._read(rel)
        if text is None:
            return self._python(rel)
        try:
            doc = _parse(text, k)
        except ValueError:
            doc = None
        return self._described(rel, k, path, text, doc)

    def document(self, rel: str) -> "tuple[str, dict[str, Any] | None]":
        """The real path of flow file ``rel`` and its data (``None`` when it does not parse).

        Raises:
            PathRefused: not a flow file this UI serves (a Python flow has no document).
        """
        path, k, text = self._read(rel)
        if text is None:
            raise PathRefused(f"{rel!r}: a Python flow's steps are edited in its own file")
        try:
            return path, _parse(text, k)
        except ValueError:
            return path, None

    def _read(self, rel: str) -> "tuple[str, str, str | None]":
        """Flow ``rel``'s real path, kind and text (``None`` for a Python flow, not read).

        Raises:
            PathRefused: not a flow this UI serves, or a file that cannot be read.
        """
        path = self.resolve(rel)  # refuses what is not served
        k = kind(rel) if rel not in self.named else _spec_kind(self.named[rel])
        if k == "py":
            return path, k, None
        try:
            with open(path, encoding="utf-8-sig") as f:
                return path, k, f.read()
        except FileNotFoundError:
            raise PathRefused(f"{rel!r}: no such flow file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PathRefused(f"{rel!r}: cannot be read ({exc})") from None

    def check(self, rel: str, doc: "dict[str, Any]") -> "dict[str, Any]":
        """``POST /api/flows/PATH/check``: what saving ``doc`` would give, without saving."""
        path, k, text = self._edited(rel, doc)
        return self._described(rel, k, path, text, doc)

    def save(self, rel: str, doc: "dict[str, Any]") -> "tuple[bool, dict[str, Any]]":
        """``PUT /api/flows/PATH``: write ``doc`` when it is a valid flow; return
        whether it was written, and the flow as described after."""
        path, k, text = self._edited(rel, doc)
        described = self._described(rel, k, path, text, doc)
        if described["problems"]:
            return False, described
        write_atomic(path, text.encode("utf-8"), keep_mode=True)
        described["saved"] = True
        return True, described

    def create(self, rel: str, doc: "dict[str, Any] | None") -> "tuple[bool, dict[str, Any]]":
        """``POST /api/flows``: a new flow file ``rel`` holding ``doc`` (``None``:
        a flow named after the file, with no steps yet, written as it is); a
        given ``doc`` is written only when it is a valid flow.  Returns whether
        it was written, and the flow as described after.

        Raises:
            PathRefused: not a path of a flow file under the folder.
            FileExistsError: the file exists.
        """
        if rel in self.named or kind(rel) not in ("toml", "json"):
            raise PathRefused(f"{rel!r}: a new flow is a .toml or .json file")
        path = self.resolve(rel)
        if os.path.lexists(path):
            raise FileExistsError(f"{rel!r} exists already")
        starter = doc is None
        if doc is None:
            stem = os.path.splitext(os.path.basename(rel))[0]
            doc = {"flow": {"name": re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "flow"}, "steps": {}}
        text, _ = edit_text("", kind(rel), doc)
        described = self._described(rel, kind(rel), path, text, doc)
        if described["problems"] and not starter:
            return False, described
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))  # (FileExistsError: made meanwhile)
        write_atomic(path, text.encode("utf-8"), keep_mode=True)
        described["saved"] = True
        return True, described

    def _edited(self, rel: str, doc: "dict[str, Any]") -> "tuple[str, str, str]":
        k = kind(rel)
        if k not in ("toml", "json"):
            raise PathRefused(f"{rel!r}: only .toml and .json flow files can be edited here")
        path = self.resolve(rel)
        if not isinstance(doc, dict):
            raise ValueError("doc must be an object: the flow file's data")
        try:
            with open(path, encoding="utf-8", newline="") as f:  # line endings as they are
                before = f.read()
        except FileNotFoundError:
            before = ""
        except (OSError, UnicodeDecodeError) as exc:
            raise PathRefused(f"{rel!r}: cannot be read ({exc})") from None
        bom = "\ufeff" if before.startswith("\ufeff") else ""
        text, _ = edit_text(before[len(bom):], k, doc)
        return path, k, bom + text

    def _described(
        self, rel: str, k: str, path: str, text: str, doc: "dict[str, Any] | None"
    ) -> "dict[str, Any]":
        flow, problems = self.checked(rel, path, text)
        steps = self._steps(flow, doc)
        defaults = doc.get("inputs", {}) if isinstance(doc, dict) and isinstance(doc.get("inputs"), dict) else {}
        inputs = _inputs(flow, defaults)
        name = flow.name if flow is not None else (
            doc.get("flow", {}).get("name") if isinstance(doc, dict) and isinstance(doc.get("flow"), dict) else None
        )
        return {
            "path": rel, "kind": k, "editable": doc is not None, "name": name, "doc": doc, "steps": steps,
            "inputs": inputs, "problems": problems, "graph": _graph(steps),
        }

    def _python(self, rel: str) -> "dict[str, Any]":
        spec = self.named[rel]
        try:
            flow: Flow | None = load_flow(spec)
            problems = []
        except (FlowError, CycleError) as exc:
            flow, problems = None, [{"message": str(exc), "step": None, "key": None}]
        steps = self._steps(flow, None)
        return {
            "path": rel, "kind": "py", "editable": False, "name": None if flow is None else flow.name,
            "doc": None, "steps": steps, "inputs": _inputs(flow, {}), "problems": problems, "graph": _graph(steps),
        }

    @staticmethod
    def _steps(flow: "Flow | None", doc: "dict[str, Any] | None") -> "list[dict[str, Any]]":
        """Each step with the steps it runs after: the flow's own graph when it
        was built, else what the document declares."""
        if flow is not None:
            try:
                graph = flow.graph
            except Exception:  # a cycle or a binding problem the file check did not see
                graph = None
            if graph is not None:
                kinds = _kinds(doc)
                return [
                    {"name": n, "kind": kinds.get(n, "call"), "depends": list(graph.dependencies(n))}
                    for n in graph.names
                ]
        steps = doc.get("steps") if isinstance(doc, dict) else None
        if not isinstance(steps, dict):
            return []
        out = []
        for name, body in steps.items():
            depends: list[str] = []
            if isinstance(body, dict):
                for dep in body.get("depends_on", []) if isinstance(body.get("depends_on"), list) else []:
                    depends.append(str(dep))
                bound = body.get("inputs")
                if isinstance(bound, dict):
                    depends.extend(str(v) for v in bound.values())
                command = body.get("command")
                if isinstance(command, list):
                    depends.extend(_placeholders(command))
            out.append({"name": str(name), "kind": _kinds(doc).get(str(name), "call"),
                        "depends": [d for d in dict.fromkeys(depends) if d in steps and d != name]})
        return out


def kind(path: str) -> str:
    """``toml``, ``json`` or ``py`` by the name's extension (``""``: none of them)."""
    lower = path.lower()
    for k in ("toml", "json", "py"):
        if lower.endswith("." + k):
            return k
    return ""


def _spec_kind(spec: str) -> str:
    if os.path.exists(spec):
        return kind(spec) or "py"
    return "py"  # path.py:NAME or module:NAME


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _parse(text: str, k: str) -> "dict[str, Any]":
    try:
        data = json.loads(text) if k == "json" else tomllib.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"invalid {k.upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("not a flow file: the top level is not a table")
    return data


def _kinds(doc: "dict[str, Any] | None") -> "dict[str, str]":
    steps = doc.get("steps") if isinstance(doc, dict) else None
    if not isinstance(steps, dict):
        return {}
    return {str(n): next((k for k in ("command", "python") if isinstance(b, dict) and k in b), "call")
            for n, b in steps.items()}


def _placeholders(argv: "list[Any]") -> "list[str]":
    return [m.group(1) for item in argv if isinstance(item, str)
            for m in re.finditer(r"(?<!\{)\{steps\.([^{}]+)\}(?!\})", item)]


def _inputs(flow: "Flow | None", defaults: "dict[str, Any]") -> "list[dict[str, Any]]":
    defaults = {  # a typed declaration's default (a flow file that does not load)
        n: v.get("default") if isinstance(v, dict) and "type" in v and set(v) <= DECLARATION else v
        for n, v in defaults.items()
    }
    if flow is None:
        return [{"name": n, "default": jsonable(v), "required": False} for n, v in defaults.items()]
    try:
        required = flow.inputs
        plan = flow._compiled()
        types = plan.input_types()
    except Exception:
        return [{"name": n, "default": jsonable(v), "required": False} for n, v in defaults.items()]
    found: dict[str, Any] = {}  # the defaults the steps see (a flow file's, or Python's)
    for ins in plan.input_params:
        for _, name, default in ins:
            if name not in found and default is not NO_DEFAULT:
                found[name] = default
    return [
        {"name": n, "default": jsonable(found[n]) if n in found else None,
         "required": need, "schema": types.get(n, {}),
         "type": describe(types[n]) if types.get(n) and ("type" in types[n] or "anyOf" in types[n]) else None}
        for n, need in required.items()
    ]


def _graph(steps: "list[dict[str, Any]]") -> "dict[str, Any]":
    index = {s["name"]: n for n, s in enumerate(steps)}
    deps = [[index[d] for d in s["depends"] if d in index] for s in steps]
    return graph_json([s["name"] for s in steps], deps, {})


def _relative(message: str, path: str, rel: str) -> str:
    """A problem's text naming the file as the UI names it."""
    return message.replace(path, rel)
