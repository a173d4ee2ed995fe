"""Flow files: loading a :class:`~microdag.Flow` from a TOML or JSON file, a
``.py`` file or a ``module:attr`` name.

A flow file is data: ``[flow]`` (its name), ``[inputs]`` (flow inputs with
their defaults) and ``[steps.NAME]`` tables holding either ``call`` (a Python
function, imported) or ``command`` (an argv list, run without a shell) and any
option of :meth:`Flow.add` that can be written as data.  The format is
described in ``docs/flow-file.md`` and, for editors, by the JSON Schema
``flowfile.schema.json`` shipped beside this module.

Loading is one pass that never stops at the first problem: the parsed
document is checked key by key against :data:`STEP_OPTIONS` (the same rules
as the schema, in the schema's own keywords), every valid step is added to a
new :class:`Flow`, every invalid one is replaced by a placeholder that keeps
its dependencies, and then the whole flow is validated, so that unknown
dependencies and cycles are found even beside broken steps.  All problems go
into one :class:`FlowError`, each prefixed with ``FILE:LINE:``.  Line numbers
of key problems come from a best-effort scan of the source text, done only
when there is something to report; a cycle alone raises :class:`CycleError`
(file-prefixed message, same path in ``args[1]``).

A ``command`` step is a :class:`_Command` instance: module-level, so it
pickles for worker processes, with an ``inspect.Signature`` made of one
keyword parameter per flow input its argv uses (with the file's default) and
``**deps`` when it uses step outputs.  Step outputs reach it through
``depends_on`` and the ``**kwargs`` binding rule, so step names need not be
identifiers.  A ``call`` step whose parameters take defaults from
``[inputs]`` becomes a :class:`_WithDefaults` (a ``functools.partial``), which
still pickles and still reads as async to the runner when the function is.

Command argv items are full of braces that are not ours (``awk '{print
$1}'``, ``find -exec {} ;``, ``${HOME}``, Python dicts), so only the
placeholder forms are special (:data:`_PLACEHOLDER`): ``{inputs.X}``,
``{steps.X}``, ``{env.X}``, ``{run_dir}``, ``{workdir}``, and the same forms
in doubled braces, which stand for their own text.  Every other brace is
literal; a form that names no input or step is still a load-time problem.
What a command returns is its stdout as text unless its ``output`` says
``"json"`` or ``"lines"``: guessing JSON turned ``1.10`` into ``1.1``.  A
batched command must say which of the two, since one result per item comes
back.  ``{env.X}`` is read when the step runs, in the process that runs it.

The flow file's directory is put at the front of ``sys.path`` and left
there: worker processes started later inherit it, so the modules ``call``
names import in them too.  For the same reason a ``.py`` flow is imported
under its own stem when no other module has that name (a worker unpickling
one of its functions imports it by that name), else under a unique one.

Nothing heavy is imported at module level (``tomllib``, ``json``,
``importlib``, ``subprocess``, ``inspect``): ``python -m microdag run`` pays
for them only when it needs them.
"""

import functools
import os
import sys

from ._errors import CycleError, FlowError
from ._flow import Flow
from ._steps import MAX_SECONDS, TRIGGERS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    _PartialBase = functools.partial[Any]
else:
    _PartialBase = functools.partial

__all__ = ["CommandError", "load_flow"]

#: Keys of the document's top level (``$schema`` lets editors find the schema).
TOP_KEYS = ("$schema", "flow", "inputs", "steps")
#: Keys of ``[flow]``.
FLOW_OPTIONS: "dict[str, dict[str, Any]]" = {"name": {"type": "string", "minLength": 1}}
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
#: Every key a step accepts, with its rule in JSON Schema keywords.  The
#: shipped schema's step properties say the same (a test keeps them equal).
STEP_OPTIONS: "dict[str, dict[str, Any]]" = {
    "call": {"type": "string", "pattern": rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*$"},
    "command": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    "output": {"enum": ["text", "json", "lines"]},
    "depends_on": {"type": "array", "items": {"type": "string"}},
    "inputs": {"type": "object", "additionalProperties": {"type": "string"}},
    "retries": {"type": "integer", "minimum": 0},
    "retry_delay": {"type": "number", "minimum": 0, "maximum": MAX_SECONDS},
    "retry_backoff": {"type": "number", "minimum": 1},
    "retry_max_delay": {"type": "number", "minimum": 0, "maximum": MAX_SECONDS},
    "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_SECONDS},
    "priority": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    "trigger": {"enum": list(TRIGGERS)},
    "map": {"type": "string", "minLength": 1},
    "batch_size": {"type": "integer", "minimum": 1},
    "cache": {"type": "boolean"},
    "cache_ttl": {"type": "number", "exclusiveMinimum": 0},
}
#: A placeholder in a command's argv item (group 2), or one written with doubled
#: braces (group 1), which stands for its own text with single braces.
_FORM = r"(?:inputs|steps|env)\.[^{}]+|run_dir|workdir"
_PLACEHOLDER = rf"\{{\{{({_FORM})\}}\}}|\{{({_FORM})\}}"
_STDERR_LINES = 10
_KILL_GRACE = 0.5  # seconds (at most a tenth of the timeout) a command's timeout leaves the runner
_loaded = [0]  # .py files loaded under a name of their own so far


def load_flow(spec: str) -> Flow:
    """Load a flow from a flow file, a ``.py`` file or a ``module:attr`` name.

    Args:
        spec: one of

            - ``path/to/flow.toml`` or ``path/to/flow.json``: a flow file
              (see ``docs/flow-file.md``);
            - ``path/to/flows.py``: a Python file holding exactly one
              module-level :class:`Flow` (``path/to/flows.py:NAME`` picks
              one); its directory is put on ``sys.path`` first, so that its
              sibling modules import;
            - ``package.module:attr``: a :class:`Flow` in an importable module.

    Returns:
        The flow, with ``flow._source`` set to where it came from (the file's
        absolute path, plus ``:attr`` if given, or ``module:attr`` as given).

    Raises:
        FlowError: the spec names nothing loadable, or the flow file is
            invalid: every problem found, each naming the file (and the line
            when known), the step and the key.
        CycleError: the flow file's steps form a cycle (and nothing else is
            wrong).
    """
    if not isinstance(spec, str) or not spec:
        raise FlowError(f"a flow spec must be a non-empty string, not {spec!r}")
    lower = spec.lower()
    if lower.endswith((".toml", ".json")):
        flow = _load_file(spec)
        flow._source = os.path.abspath(spec)
        return flow
    if lower.endswith(".py"):
        return _load_py(spec, None)
    head, colon, tail = spec.rpartition(":")
    if colon and head.lower().endswith(".py"):
        return _load_py(head, tail)
    if colon and head and tail and not os.path.exists(spec):
        return _load_module(spec, head, tail)
    if os.path.isfile(spec):
        raise FlowError(
            f"{spec}: unknown kind of flow file: expected a .toml, .json or .py file"
        )
    raise FlowError(
        f"cannot load a flow from {spec!r}: expected a .toml, .json or .py file, "
        "or package.module:attr"
    )


# -- .py files and modules -------------------------------------------------------


def _load_py(path: str, attr: "str | None") -> Flow:
    """The Flow of Python file ``path`` (the one there is, or ``attr``)."""
    import importlib.util

    spec = path if attr is None else f"{path}:{attr}"
    if not os.path.isfile(path):
        raise FlowError(f"{spec}: no such file")
    full = os.path.abspath(path)
    _on_path(os.path.dirname(full))
    name = _module_name(full)
    module_spec = importlib.util.spec_from_file_location(name, full)
    if module_spec is None or module_spec.loader is None:
        raise FlowError(f"{spec}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module  # so that its functions pickle and dataclasses work
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
        if isinstance(exc, FlowError):
            raise FlowError(*(f"{_raised_in(path, exc)}: {p}" for p in exc.problems)) from exc
        raise FlowError(f"{_raised_in(path, exc)}: importing it raised {_reason(exc)}") from exc
    if attr is not None:
        flow = _attribute(module, attr, spec)
    else:
        flows: dict[int, tuple[str, Flow]] = {}
        for key, value in vars(module).items():
            if isinstance(value, Flow) and id(value) not in flows:
                flows[id(value)] = (key, value)
        if not flows:
            raise FlowError(f"{spec}: defines no module-level microdag.Flow")
        if len(flows) > 1:
            names = ", ".join(key for key, _ in flows.values())
            raise FlowError(
                f"{spec}: defines several flows ({names}): pick one with {path}:NAME"
            )
        ((_, flow),) = flows.values()
    flow._source = full if attr is None else f"{full}:{attr}"
    return flow


def _module_name(full: str) -> str:
    """The name to import Python file ``full`` under.

    Its own stem when no other module has that name (loaded, built in, or
    on ``sys.path`` outside the file's folder): then worker processes,
    whose ``sys.path`` holds the folder, import the file by that name when
    they unpickle its functions.  Otherwise a name of its own.
    """
    import importlib.machinery

    folder = os.path.dirname(full)
    stem = os.path.splitext(os.path.basename(full))[0]
    if stem.isidentifier() and stem not in sys.builtin_module_names:
        loaded = sys.modules.get(stem)
        if loaded is None:
            elsewhere = [p for p in sys.path if os.path.abspath(p or os.curdir) != folder]
            free = importlib.machinery.PathFinder.find_spec(stem, elsewhere) is None
            if free and importlib.machinery.FrozenImporter.find_spec(stem) is None:
                return stem
        elif getattr(loaded, "__file__", None) == full:
            return stem  # loaded again: the file may have changed
    _loaded[0] += 1
    clean = "".join(c if c.isalnum() else "_" for c in stem)
    return f"_microdag_flow_{_loaded[0]}_{clean}"


def _load_module(spec: str, module_name: str, attr: str) -> Flow:
    """The Flow ``attr`` of the importable module ``module_name``."""
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise FlowError(f"{spec}: cannot import module {module_name!r}: {exc}") from exc
        raise FlowError(f"{spec}: importing module {module_name!r} raised {_reason(exc)}") from exc
    except FlowError as exc:
        raise FlowError(*(f"{spec}: {p}" for p in exc.problems)) from exc
    except Exception as exc:
        raise FlowError(f"{spec}: importing module {module_name!r} raised {_reason(exc)}") from exc
    flow = _attribute(module, attr, spec)
    flow._source = spec
    return flow


def _attribute(module: object, attr: str, spec: str) -> Flow:
    value = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise FlowError(f"{spec}: there is no {attr!r} in it") from None
    if not isinstance(value, Flow):
        raise FlowError(f"{spec}: {attr!r} is of type {type(value).__name__}, not a microdag.Flow")
    return value


def _raised_in(path: str, exc: BaseException) -> str:
    """``path:LINE`` of the innermost frame of ``exc`` in ``path`` (or just ``path``)."""
    import traceback

    full = os.path.abspath(path)
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) == full:
            line = frame.lineno
    if line is None and isinstance(exc, SyntaxError) and exc.filename and os.path.abspath(exc.filename) == full:
        line = exc.lineno
    return path if line is None else f"{path}:{line}"


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _on_path(folder: str) -> None:
    """Put ``folder`` at the front of ``sys.path`` (unless it is there already)."""
    if not sys.path or sys.path[0] != folder:
        sys.path.insert(0, folder)


# -- flow files ------------------------------------------------------------------


def _load_file(path: str) -> Flow:
    """Read, parse and check a TOML or JSON flow file; build its Flow."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except FileNotFoundError:
        raise FlowError(f"{path}: no such flow file") from None
    except UnicodeDecodeError as exc:
        raise FlowError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise FlowError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    problems: list[str] = []
    is_json = path.lower().endswith(".json")
    deep = _too_deep(text)
    if deep is not None:
        raise FlowError(f"{path}:{deep}: values nest more than {_MAX_DEPTH} levels deep")
    data = _parse_json(path, text, problems) if is_json else _parse_toml(path, text)
    return _Builder(path, text, is_json, data, problems).build()


def check_text(path: str, text: str) -> "tuple[Flow | None, list[tuple[tuple[str, ...], str]]]":
    """Check ``text`` as the content of the flow file ``path`` (which need not
    hold it: an editor's unsaved text); its ``call`` modules are imported from
    beside ``path``.

    Returns:
        The flow (``None`` when there are problems) and every problem with the
        key path it concerns (``("steps", NAME, KEY)``, shorter when less is
        known, ``()`` for the whole file), in the order of the file.
    """
    is_json = path.lower().endswith(".json")
    problems: list[str] = []
    deep = _too_deep(text)
    try:
        if deep is not None:
            raise FlowError(f"{path}:{deep}: values nest more than {_MAX_DEPTH} levels deep")
        data = _parse_json(path, text, problems) if is_json else _parse_toml(path, text)
    except FlowError as exc:
        return None, [((), str(exc))]
    builder = _Builder(path, text, is_json, data, problems)
    try:
        return builder.build(), []
    except CycleError as exc:
        return None, [(("steps", str(exc.cycle[0])) if exc.cycle else (), str(exc))]
    except FlowError:
        order = {problem: n for n, (_, problem) in enumerate(sorted(builder.problems, key=lambda p: p[0]))}
        return None, sorted(builder.located, key=lambda p: order.get(p[1], 0))


class Required:
    """The default of a typed input declared without one: it must be given."""


#: The keys of a typed input's declaration, and the types it may name.
_DECLARATION = {"type", "default", "description", "enum"}
_JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")

#: How deep lists and tables may nest in a flow file (a flow needs a few levels).
_MAX_DEPTH = 64


def _too_deep(text: str) -> "int | None":
    """The line where brackets (``[``, ``{``) outside strings first nest more than
    ``_MAX_DEPTH`` deep, or ``None``: checked before parsing, which would run
    out of stack on such a file (TOML and JSON alike)."""
    if text.count("[") + text.count("{") <= _MAX_DEPTH:
        return None
    depth = 0
    line = 1
    quote = ""
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        if quote:
            if c == "\\" and quote == '"':
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "#":  # a TOML comment (never inside a JSON value outside a string)
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif c in "[{":
            depth += 1
            if depth > _MAX_DEPTH:
                return line
        elif c in "]}":
            depth -= 1
        i += 1
    return None


def _parse_toml(path: str, text: str) -> object:
    import re
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        at = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        if at is None:
            raise FlowError(f"{path}: invalid TOML: {message}") from None
        raise FlowError(
            f"{path}:{at.group(1)}: invalid TOML: {message[: at.start()]} (column {at.group(2)})"
        ) from None


def _parse_json(path: str, text: str, problems: "list[str]") -> object:
    import json

    def pairs(items: "list[tuple[str, Any]]") -> "dict[str, Any]":
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                problems.append(f"{path}: key {key!r} appears more than once in the same object")
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise FlowError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from None


class _Builder:
    """One flow file being checked and turned into a Flow (see the module docs)."""

    def __init__(self, path: str, text: str, is_json: bool, data: object, problems: "list[str]") -> None:
        self.path = path
        self.text = text
        self.is_json = is_json
        self.data = data
        self.problems = [(0, p) for p in problems]  # (line or 0, text), sorted when raised
        self.located: list[tuple[tuple[str, ...], str]] = [((), p) for p in problems]  # (key path, text)
        self.declared: dict[str, dict[str, Any]] = {}  # typed inputs: name -> JSON Schema
        self.deps: dict[str, list[str]] = {}  # step -> the steps it runs after
        self.folder = os.path.dirname(os.path.abspath(path))
        self._lines: dict[tuple[str, ...], int] | None = None
        self._modules: dict[str, object] = {}  # module name -> module or the reason it failed

    # -- reporting

    def report(self, where: "tuple[str, ...]", message: str) -> None:
        """Add a problem located at key path ``where`` (best effort)."""
        line = self.line(where)
        text = f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}"
        self.problems.append((line or 0, text))
        self.located.append((where, text))

    def fail(self) -> FlowError:
        """Every problem, in the order of the file."""
        return FlowError(*(text for _, text in sorted(self.problems, key=lambda p: p[0])))

    def line(self, where: "tuple[str, ...]") -> "int | None":
        """The line of key path ``where``, or of its nearest located parent."""
        if not where:
            return None
        if self.is_json:
            return _json_line(self.text, where)
        if self._lines is None:
            self._lines = _toml_lines(self.text)
        for n in range(len(where), 0, -1):
            line = self._lines.get(where[:n])
            if line is not None:
                return line
        return None

    def bad_value(self, where: "tuple[str, ...]", label: str, key: str, value: object, rule: "dict[str, Any]") -> bool:
        """Report ``value`` if it breaks ``rule``; return whether it did."""
        expected = _check(value, rule)
        if expected is None:
            return False
        self.report(where, f"{label}{key} must be {expected}, not {_show(value)}")
        return True

    def unknown_key(self, where: "tuple[str, ...]", label: str, key: str, known: "Any") -> None:
        import difflib

        close = difflib.get_close_matches(key, list(known), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(known)
        self.report(where, f"{label}unknown key {key!r} ({hint})")

    # -- the document

    def build(self) -> Flow:
        data = self.data
        if not isinstance(data, dict):
            self.report((), f"the top level must be a table of [flow] and [steps], not {_show(data)}")
            raise self.fail()
        for key in data:
            if key not in TOP_KEYS:
                self.unknown_key((key,), "", key, TOP_KEYS)
        if "$schema" in data and not isinstance(data["$schema"], str):
            self.report(("$schema",), f"$schema must be a string, not {_show(data['$schema'])}")
        name = self.flow_name(data.get("flow"))
        defaults = self.inputs(data.get("inputs", {}))
        steps = data.get("steps")
        if steps is None or steps == {}:
            self.report(("steps",), "there are no [steps.NAME] tables: a flow needs at least one step")
            steps = {}
        elif not isinstance(steps, dict):
            self.report(("steps",), f"steps must be a table of [steps.NAME] tables, not {_show(steps)}")
            steps = {}
        for input_name in defaults:
            if input_name in steps:
                self.report(
                    ("inputs", input_name),
                    f"input {input_name!r} is named like step {input_name!r}: "
                    "a parameter of that name would receive the step's output; rename one",
                )
        flow = Flow(name)
        flow._declared = self.declared
        for step_name, body in steps.items():
            self.step(flow, step_name, body, defaults, steps)
        cycle: CycleError | None = None
        try:
            flow.validate()
        except CycleError as exc:
            cycle = exc
        except FlowError as exc:
            for problem in exc.problems:
                self.flow_problem(problem, steps)
            cycle = self.cycle()
        if self.problems:
            if cycle is not None:
                self.report(("steps", str(cycle.cycle[0])) if cycle.cycle else (), str(cycle))
            raise self.fail()
        if cycle is not None:
            line = self.line(("steps", str(cycle.cycle[0]))) if cycle.cycle else None
            where = f"{self.path}:{line}" if line else self.path
            raise CycleError(f"{where}: {cycle.args[0]}", cycle.cycle) from None
        return flow

    def cycle(self) -> "CycleError | None":
        """A cycle among the steps, ignoring dependencies on undefined steps."""
        from ._graph import Graph

        try:
            Graph([(name, [d for d in deps if d in self.deps]) for name, deps in self.deps.items()], kind="step")
        except CycleError as exc:
            return exc
        except FlowError:
            pass
        return None

    def flow_name(self, section: object) -> str:
        fallback = os.path.splitext(os.path.basename(self.path))[0] or "flow"
        if section is None:
            self.report((), 'there is no [flow] table: it needs name = "..."')
            return fallback
        if not isinstance(section, dict):
            self.report(("flow",), f"flow must be a table holding name, not {_show(section)}")
            return fallback
        for key in section:
            if key not in FLOW_OPTIONS:
                self.unknown_key(("flow", key), "[flow] ", key, FLOW_OPTIONS)
        if "name" not in section:
            self.report(("flow",), '[flow] needs name = "..."')
            return fallback
        if self.bad_value(("flow", "name"), "[flow] ", "name", section["name"], FLOW_OPTIONS["name"]):
            return fallback
        return str(section["name"])

    def inputs(self, section: object) -> "dict[str, Any]":
        import keyword

        if not isinstance(section, dict):
            self.report(("inputs",), f"inputs must be a table of input = default, not {_show(section)}")
            return {}
        out = {}
        for key, value in section.items():
            if not key.isidentifier() or keyword.iskeyword(key):
                self.report(
                    ("inputs", key),
                    f"[inputs] {key!r} is not a valid input name: use letters, digits and _ "
                    "(a Python identifier), as parameters are named",
                )
            elif isinstance(value, dict) and "type" in value and set(value) <= _DECLARATION:
                out[key] = self.declaration(key, value)
            else:
                out[key] = value
        return out

    def declaration(self, key: str, value: "dict[str, Any]") -> "Any":
        """``[inputs] key = {type = ..., default = ..., description = ..., enum = [...]}``:
        keep its schema for the flow; return its default (:class:`Required`: none)."""
        from ._schema import problem

        where = ("inputs", key)
        kinds = value["type"] if isinstance(value["type"], list) else [value["type"]]
        schema: dict[str, Any] = {}
        if not kinds or not all(k in _JSON_TYPES for k in kinds):
            self.report(where, f"[inputs] {key!r}: type must be one of {', '.join(_JSON_TYPES)} (or a list of "
                               f"them), not {_show(value['type'])}")
        else:
            schema["type"] = value["type"]
        if "enum" in value:
            if isinstance(value["enum"], list) and value["enum"]:
                schema["enum"] = value["enum"]
            else:
                self.report(where, f"[inputs] {key!r}: enum must be a non-empty list of values")
        if "description" in value:
            if isinstance(value["description"], str):
                schema["description"] = value["description"]
            else:
                self.report(where, f"[inputs] {key!r}: description must be a string")
        self.declared[key] = schema
        if "default" not in value:
            return Required
        wrong = problem(schema, value["default"])
        if wrong is not None:
            self.report(where, f"[inputs] {key!r}: the default does not fit its type: {wrong}")
        return value["default"]

    # -- steps

    def step(
        self, flow: Flow, name: str, body: object, defaults: "dict[str, Any]", steps: "Mapping[str, Any]"
    ) -> None:
        """Check step ``name``; add it to ``flow`` (or a placeholder if it is invalid)."""
        where = ("steps", name)
        label = f"step {name!r}: "
        before = len(self.problems)
        if not name:
            self.report(where, "a step name must not be empty")
        if not isinstance(body, dict):
            self.report(where, f"{label}must be a table of options (call or command, ...), not {_show(body)}")
            if name:
                flow.add(name, _invalid)
                self.deps[name] = []
            return
        options: dict[str, Any] = {}
        for key, value in body.items():
            if key not in STEP_OPTIONS:
                self.unknown_key(where + (key,), label, key, STEP_OPTIONS)
            elif not self.bad_value(where + (key,), label, key, value, STEP_OPTIONS[key]):
                options[key] = value
        if "call" in body and "command" in body:
            self.report(where, f"{label}has both call and command: give exactly one")
        elif "call" not in body and "command" not in body:
            self.report(where, f"{label}needs call = \"module:function\" or command = [argv...]")
        if "batch_size" in options and "map" not in body:
            self.report(where + ("batch_size",), f"{label}batch_size needs map (the parameter to map over)")
        elif "batch_size" in options and "command" in body and body.get("output", "text") == "text":
            self.report(
                where + ("batch_size",),
                f'{label}batch_size needs output = "json" or "lines": the command prints one result '
                "per item of its batch (a JSON list, or one line each)",
            )
        if "output" in body and "call" in body and "command" not in body:
            self.report(
                where + ("output",),
                f"{label}output is for command steps: a call step's output is what its function returns",
            )
        if "command" in body and "inputs" in body:
            self.report(
                where + ("inputs",),
                f"{label}inputs is for call steps: a command names step outputs as {{steps.NAME}}",
            )
        deps = list(options.get("depends_on", ()))
        deps.extend(v for v in options.get("inputs", {}).values() if v not in deps)
        fn: Callable[..., Any] | None = None
        if "call" in options:
            fn, implicit = self.call(name, options["call"], options, defaults, steps)
            self.deps[name] = deps + [s for s in implicit if s not in deps]
        elif "command" in options:
            fn, used = self.command(name, options, defaults, steps)
            deps.extend(s for s in used if s not in deps)
        self.deps.setdefault(name, deps)
        if len(self.problems) > before or fn is None:
            if name:
                flow.add(name, _invalid, depends_on=[d for d in deps if d != name])
            return
        for key in ("call", "command", "output"):
            options.pop(key, None)
        if "command" in body and deps:
            options["depends_on"] = deps
        try:
            flow.add(name, fn, **options)
        except FlowError as exc:
            for problem in exc.problems:
                self.flow_problem(problem, steps)
            flow.add(name, _invalid, depends_on=[d for d in deps if d != name])

    def call(
        self,
        name: str,
        target: str,
        options: "dict[str, Any]",
        defaults: "dict[str, Any]",
        steps: "Mapping[str, Any]",
    ) -> "tuple[Callable[..., Any] | None, list[str]]":
        """The function ``call`` names, with its defaults from ``[inputs]`` (None if it
        cannot be had), and the steps its parameters name."""
        where = ("steps", name, "call")
        label = f"step {name!r}: call {target!r}: "
        module_name, _, attr = target.partition(":")
        module = self._modules.get(module_name)
        if module is None:
            module = self._modules[module_name] = _import(module_name, self.folder)
        if isinstance(module, str):
            self.report(where, label + module)
            return None, []
        value: object = module
        for part in attr.split("."):
            try:
                value = getattr(value, part)
            except AttributeError:
                self.report(where, f"{label}module {module_name!r} has no attribute {attr!r}")
                return None, []
        if not callable(value):
            self.report(where, f"{label}{attr!r} is not callable (it is of type {type(value).__name__})")
            return None, []
        fn: Callable[..., Any] = value
        from ._plan import _Signature

        try:
            params = [p for p, _ in _Signature(fn).params]
        except (TypeError, ValueError):
            return fn, []  # validation reports it
        mapped = options.get("inputs", {})
        free = [p for p in params if p not in mapped]
        given = {p: defaults[p] for p in free if p in defaults and p not in steps and defaults[p] is not Required}
        implicit = [p for p in free if p in steps and p != name]
        return (_WithDefaults(fn, **given) if given else fn), implicit

    def command(
        self, name: str, options: "dict[str, Any]", defaults: "dict[str, Any]", steps: "Mapping[str, Any]"
    ) -> "tuple[_Command | None, list[str]]":
        """The command step's callable and the steps whose outputs it uses."""
        where = ("steps", name, "command")
        label = f"step {name!r}: command"
        argv: list[str] = options["command"]
        parts: list[tuple[str | tuple[str, str], ...]] = []
        used_inputs: dict[str, Any] = {}
        used_steps: list[str] = []
        ok = True
        for n, item in enumerate(argv):
            parsed = _parse_item(item)
            for part in parsed:
                if isinstance(part, str):
                    continue
                kind, ref = part
                if kind == "inputs":
                    if ref not in defaults:
                        declared = ", ".join(defaults) or "none"
                        self.report(
                            where,
                            f"{label} item {n} {item!r}: {{inputs.{ref}}} names no input of "
                            f"[inputs] (declared: {declared})",
                        )
                        ok = False
                    else:
                        used_inputs.setdefault(ref, defaults[ref])
                elif kind == "steps":
                    if ref not in steps:
                        self.report(
                            where, f"{label} item {n} {item!r}: {{steps.{ref}}} names no step of this file"
                        )
                        ok = False
                    elif ref not in used_steps:
                        used_steps.append(ref)
            parts.append(tuple(parsed))
        if "map" in options and options["map"] not in used_inputs:
            self.report(
                ("steps", name, "map"),
                f"step {name!r}: map must name an input the command uses as {{inputs.NAME}}, "
                f"not {_show(options['map'])}",
            )
            ok = False
        if not ok:
            return None, used_steps
        fn = _Command(
            tuple(argv), tuple(parts), used_inputs, bool(used_steps), options.get("timeout"),
            output=options.get("output", "text"), step=name,
        )
        return fn, used_steps

    def flow_problem(self, problem: str, steps: "Mapping[str, Any]") -> None:
        """Locate and report a problem the Flow found (it names the step first)."""
        for name in sorted(steps, key=len, reverse=True):
            prefix = f"step {name!r}"
            if not problem.startswith(prefix):
                continue
            body = steps[name] if isinstance(steps[name], dict) else {}
            rest = problem[len(prefix):].lstrip(": ")
            key = rest.split(" ", 1)[0]
            if key not in STEP_OPTIONS:
                key = ""
                if "depends on" in rest:
                    target = rest.split("depends on ", 1)[1].split(",", 1)[0]
                    if any(repr(d) == target for d in body.get("depends_on", ()) or ()):
                        key = "depends_on"
                    elif "inputs" in body:
                        key = "inputs"
                elif "maps parameter" in rest or rest.startswith("inputs"):
                    key = "inputs"
                elif "map=" in rest:
                    key = "map"
                elif "call" in body:
                    key = "call"
            self.report(("steps", name, key) if key else ("steps", name), problem)
            return
        self.problems.append((0, f"{self.path}: {problem}"))


def _invalid(**deps: "Any") -> None:
    """Stands in for an invalid step while the rest of the file is checked; never runs."""
    raise FlowError("this step's definition is invalid")


def _import(module_name: str, folder: str) -> object:
    """The module, or the reason it cannot be imported (a str)."""
    import importlib

    _on_path(folder)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            return (
                f"cannot import module {module_name!r} ({exc}; looked in the flow file's "
                "folder and sys.path)"
            )
        return f"importing module {module_name!r} raised {_reason(exc)}"
    except Exception as exc:
        return f"importing module {module_name!r} raised {_reason(exc)}"


# -- checks against the rules ----------------------------------------------------


def _check(value: object, rule: "dict[str, Any]") -> "str | None":
    """What ``value`` should have been if it breaks ``rule`` (JSON Schema keywords), else None."""
    import math
    import re

    kind = rule.get("type")
    if "enum" in rule:
        ok = isinstance(value, str) and value in rule["enum"]
    elif kind == "string":
        ok = isinstance(value, str) and len(value) >= rule.get("minLength", 0)
        if ok and "pattern" in rule:
            ok = re.search(rule["pattern"], str(value)) is not None
    elif kind in ("integer", "number"):
        if kind == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok:
            assert isinstance(value, (int, float))
            ok = (
                value >= rule.get("minimum", value)
                and value <= rule.get("maximum", value)
                and ("exclusiveMinimum" not in rule or value > rule["exclusiveMinimum"])
            )
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "array":
        ok = (
            isinstance(value, list)
            and len(value) >= rule.get("minItems", 0)
            and all(isinstance(v, str) for v in value)
        )
    elif kind == "object":
        ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    else:  # pragma: no cover - every rule has a type or an enum
        raise AssertionError(rule)
    return None if ok else _expected(rule)


def _expected(rule: "dict[str, Any]") -> str:
    """``rule`` in words: "an integer >= 0", "one of 'a', 'b'"..."""
    if "enum" in rule:
        return "one of " + ", ".join(_show(v) for v in rule["enum"])
    kind = rule["type"]
    if kind == "string":
        if "pattern" in rule:
            return 'a string "module:function" (e.g. "steps:fetch")'
        return "a non-empty string" if rule.get("minLength") else "a string"
    if kind == "boolean":
        return "true or false"
    if kind == "array":
        return "a non-empty list of strings" if rule.get("minItems") else "a list of strings"
    if kind == "object":
        return "a table of parameter = \"step name\""
    words = "an integer" if kind == "integer" else "a number"
    if "minimum" in rule and "maximum" in rule:
        return f"{words} from {rule['minimum']:,} to {rule['maximum']:,}"
    if "minimum" in rule:
        return f"{words} >= {rule['minimum']}"
    if "exclusiveMinimum" in rule and "maximum" in rule:
        return f"{words} > {rule['exclusiveMinimum']} and at most {rule['maximum']:,}"
    if "exclusiveMinimum" in rule:
        return f"{words} > {rule['exclusiveMinimum']}"
    return words


def _show(value: object) -> str:
    """``value`` as it would be written in the file (JSON), shortened."""
    import json

    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- locating keys in the source text --------------------------------------------


def _toml_lines(text: str) -> "dict[tuple[str, ...], int]":
    """Key path -> line of its table header or ``key =`` line (a best-effort scan)."""
    import re

    key = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
    dotted = rf"{key}(?:\s*\.\s*{key})*"
    header = re.compile(rf"^\[\[?\s*({dotted})\s*\]\]?\s*(?:#.*)?$")
    assign = re.compile(rf"^({dotted})\s*=(.*)$")
    inline = re.compile(rf"({key})\s*=")
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    open_string: str | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        s = raw.strip()
        if open_string is not None:
            if s.count(open_string) % 2:
                open_string = None
            continue
        if not s or s.startswith("#"):
            continue
        m = header.match(s)
        if m:
            table = _key_path(m.group(1))
            lines.setdefault(table, n)
            continue
        m = assign.match(s)
        if not m:
            continue
        path = table + _key_path(m.group(1))
        lines.setdefault(path, n)
        rest = m.group(2)
        for quotes in ('"""', "'''"):
            if rest.count(quotes) % 2:
                open_string = quotes
        if rest.lstrip().startswith("{"):
            for k in inline.finditer(rest):
                lines.setdefault(path + _key_path(k.group(1)), n)
    return lines


def _key_path(text: str) -> "tuple[str, ...]":
    """A TOML dotted key as its parts, unquoted."""
    import json

    parts: list[str] = []
    current = ""
    quote = ""
    for c in text:
        if quote:
            current += c
            if c == quote and not (quote == '"' and current.endswith('\\"') and not current.endswith('\\\\"')):
                quote = ""
        elif c in "\"'":
            quote = c
            current += c
        elif c == ".":
            parts.append(current.strip())
            current = ""
        else:
            current += c
    parts.append(current.strip())
    out = []
    for part in parts:
        if part.startswith('"') and part.endswith('"') and len(part) >= 2:
            try:
                part = json.loads(part)
            except ValueError:
                part = part[1:-1]
        elif part.startswith("'") and part.endswith("'") and len(part) >= 2:
            part = part[1:-1]
        out.append(part)
    return tuple(out)


def _json_line(text: str, where: "tuple[str, ...]") -> "int | None":
    """The line of the deepest ``"key":`` of ``where`` found in order (best effort)."""
    import json
    import re

    pos = -1
    start = 0
    for key in where:
        found = None
        for encoded in dict.fromkeys((json.dumps(key, ensure_ascii=False), json.dumps(key))):
            m = re.compile(re.escape(encoded) + r"\s*:").search(text, start)
            if m is not None and (found is None or m.start() < found):
                found = m.start()
        if found is None:
            break
        pos = start = found
    return None if pos < 0 else text.count("\n", 0, pos) + 1


# -- command steps ---------------------------------------------------------------


def _parse_item(item: str) -> "list[str | tuple[str, str]]":
    """An argv item as literal text and ``(kind, name)`` placeholders.

    Only the forms of :data:`_PLACEHOLDER` are placeholders: any other brace
    is text, and ``{{inputs.x}}`` (doubled braces) is the text ``{inputs.x}``.
    """
    import re

    parts: list[str | tuple[str, str]] = []
    text = ""
    pos = 0
    for m in re.finditer(_PLACEHOLDER, item):
        text += item[pos : m.start()]
        pos = m.end()
        escaped, body = m.groups()
        if escaped is not None:
            text += "{" + escaped + "}"
            continue
        if text:
            parts.append(text)
            text = ""
        kind, _, name = body.partition(".")
        parts.append((kind, name))
    text += item[pos:]
    if text or not parts:
        parts.append(text)
    return parts


class CommandError(RuntimeError):
    """A command step's program exited with a non-zero code (or was killed by a signal).

    Args:
        message: names the program, the exit code and the last lines of its
            standard error.
        returncode: the exit code (negative: killed by that signal).
        stderr: the last lines of its standard error.
    """

    def __init__(self, message: str, returncode: int = 1, stderr: str = "") -> None:
        super().__init__(message, returncode, stderr)

    @property
    def returncode(self) -> int:
        """The exit code (negative: the signal that killed it)."""
        return int(self.args[1])

    @property
    def stderr(self) -> str:
        """The last lines of the program's standard error."""
        return str(self.args[2])

    def __str__(self) -> str:
        return str(self.args[0])


class _Command:
    """A ``command`` step: runs its argv (no shell) and returns what it prints.

    Called with the flow inputs its argv uses (by name) and, under
    ``**deps``, the outputs of the steps it uses (by step name).  Module-level
    and made of plain data, so it pickles for worker processes.  ``output``
    is ``"text"``, ``"json"`` or ``"lines"``; ``step`` is the step's name,
    for error messages.
    """

    def __init__(
        self,
        argv: "tuple[str, ...]",
        parts: "tuple[tuple[str | tuple[str, str], ...], ...]",
        inputs: "dict[str, Any]",
        takes_steps: bool,
        timeout: "float | None",
        output: str = "text",
        step: str = "",
    ) -> None:
        self.argv = argv
        self.parts = parts
        self.inputs = inputs  # input name -> default
        self.takes_steps = takes_steps
        self.timeout = timeout
        self.output = output
        self.step = step
        # The cache keys a step by its name, this and its arguments: the
        # defaults of inputs not given are not arguments, so they go here,
        # and so does the output's kind, which changes what is returned.
        self.__qualname__ = f"command{list(argv)!r} (output {output})" + _defaults_text(inputs)
        # What it runs, without its defaults (a resume compares this: a run
        # records the inputs it used, defaults included).
        self.__microdag_code__ = f"command{list(argv)!r} (output {output})"

    @property
    def __signature__(self) -> "Any":
        import inspect

        params = [
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=inspect.Parameter.empty if default is Required else default
            )
            for name, default in self.inputs.items()
        ]
        if self.takes_steps:
            var = "deps"
            while var in self.inputs:
                var += "_"
            params.append(inspect.Parameter(var, inspect.Parameter.VAR_KEYWORD))
        return inspect.Signature(params)

    def __repr__(self) -> str:
        shown = [_short(a) for a in self.argv[:3]]
        return "command[" + ", ".join(repr(a) for a in shown) + (", ...]" if len(self.argv) > 3 else "]")

    def render(self, values: "Mapping[str, Any]") -> "list[str]":
        """The argv with its placeholders filled from ``values`` (inputs and step
        outputs) and, for ``{env.NAME}``, from ``os.environ``.

        Raises:
            TypeError: a value that is not a str cannot be written as JSON.
            LookupError: an environment variable it uses is not set.
        """
        import json

        argv = []
        for n, parts in enumerate(self.parts):
            item = []
            for part in parts:
                if isinstance(part, str):
                    item.append(part)
                    continue
                kind, name = part
                if kind == "run_dir" or kind == "workdir":
                    from ._context import context

                    item.append(getattr(context(), kind))
                    continue
                if kind == "env":
                    if name not in os.environ:
                        raise LookupError(
                            f"step {self.step!r}: command item {n} {self.argv[n]!r}: "
                            f"environment variable {name!r} is not set"
                        )
                    item.append(os.environ[name])
                    continue
                value = values[name] if name in values else self.inputs[name]
                if isinstance(value, str):
                    item.append(value)
                    continue
                try:
                    item.append(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
                except (TypeError, ValueError) as exc:
                    raise TypeError(
                        f"{{{kind}.{name}}} is a {type(value).__name__}, which cannot be "
                        f"written into a command line as JSON ({exc})"
                    ) from None
            argv.append("".join(item))
        return argv

    def __call__(self, **values: "Any") -> "Any":
        """Run the command; return its stdout as ``output`` says (see :meth:`result`).

        Raises:
            CommandError: it exited with a non-zero code.
            TimeoutError: it ran past the step's timeout (it is killed).
            OSError: it could not be started (e.g. no such program).
            LookupError: an environment variable it uses is not set.
            ValueError: ``output`` is ``"json"`` and stdout is not JSON.
        """
        argv = self.render(values)
        limit = None
        if self.timeout is not None:
            # Kill it a little before the runner's own deadline, so that the
            # attempt ends with the program gone.
            limit = self.timeout - min(_KILL_GRACE, self.timeout / 10)
        done = _run_program(argv, limit)
        if done is None:
            raise TimeoutError(
                f"command {argv[0]!r} ran into the step's timeout of {self.timeout:g} s and was killed "
                "(with every process it started)"
            )
        err = done.stderr.decode("utf-8", "replace")
        if err:
            sys.stderr.write(err)
        if done.returncode != 0:
            tail = "\n".join(err.rstrip().splitlines()[-_STDERR_LINES:])
            code = done.returncode
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            message = f"command {argv[0]!r} {how}"
            message += f"; the end of its stderr:\n{tail}" if tail else " (its stderr was empty)"
            raise CommandError(message, code, tail)
        return self.result(done.stdout.decode("utf-8", "replace"), argv[0])

    def result(self, out: str, program: str) -> "Any":
        """What stdout ``out`` makes: the text without one trailing newline
        (``"text"``), its lines without their endings (``"lines"``), or the
        value it holds (``"json"``: strict JSON, so no ``NaN``).

        Raises:
            ValueError: ``output`` is ``"json"`` and ``out`` is not JSON.
        """
        if self.output == "lines":
            lines = out.split("\n")
            if lines[-1] == "":
                lines.pop()
            return [line[:-1] if line.endswith("\r") else line for line in lines]
        if self.output == "json":
            import json

            def constant(name: str) -> "Any":
                raise ValueError(f"{name} is not a JSON value")

            try:
                return json.loads(out, parse_constant=constant)
            except (ValueError, RecursionError) as exc:
                start = f"it began {_short(out)!r}" if out.strip() else "it was empty"
                raise ValueError(
                    f'step {self.step!r} has output = "json", but the output of command {program!r} '
                    f"is not JSON ({exc}); {start}"
                ) from None
        if out.endswith("\r\n"):
            return out[:-2]
        return out[:-1] if out.endswith("\n") else out


def _run_program(argv: "list[str]", limit: "float | None") -> "Any":
    """Run ``argv`` in a process group of its own, capturing its output;
    ``None`` when it ran past ``limit`` seconds.

    The group is registered for the step's run (``_children``), so that a
    cancelled or interrupted run kills it (the runner does, and so does this
    function when it sees the run's cancel event set); it is killed whole (the
    program and what it started) on a timeout and on any exception here.  In
    a traced run (``microdag.otel``) its environment has ``TRACEPARENT``, the
    step span's context, for the program's own spans.

    Raises:
        CommandError: the run was cancelled while the program ran.
    """
    import subprocess
    import time

    from . import _children
    from ._context import _FRAME

    frame = _FRAME.get()
    run_id = frame.run_id if frame is not None else None
    cancel = frame.cancel if frame is not None else None
    posix = os.name == "posix"
    env = None
    if "opentelemetry.trace" in sys.modules:  # a traced step: the program is told its span
        from .otel import traceparent

        parent = traceparent()
        if parent is not None:
            env = {**os.environ, "TRACEPARENT": parent}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            process_group=0 if posix else None)
    if posix:
        _children.register(run_id, proc.pid)
    deadline = None if limit is None else time.monotonic() + limit
    try:
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if cancel is not None:
                wait = 0.05 if wait is None else min(wait, 0.05)
            try:
                out, err = proc.communicate(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    _children.kill(run_id)
                    continue  # the next communicate() returns: the group is dead
                if deadline is not None and time.monotonic() >= deadline:
                    _children.kill_group(proc.pid)
                    proc.communicate()
                    return None
            except BaseException:
                _children.kill_group(proc.pid)
                proc.communicate()
                raise
        stopped = posix and _children.stopped(proc.pid)
    finally:
        if posix:
            _children.unregister(run_id, proc.pid)
    if stopped:
        raise CommandError(f"command {argv[0]!r} was stopped: its run was cancelled", proc.returncode, "")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _defaults_text(inputs: "Mapping[str, Any]") -> str:
    """`` with name=default...`` (a digest of them when long), or ``""``."""
    inputs = {k: v for k, v in inputs.items() if v is not Required}
    if not inputs:
        return ""
    import json

    text = json.dumps(inputs, sort_keys=True, ensure_ascii=False, default=repr)
    if len(text) > 200:
        import hashlib

        text = "#" + hashlib.sha256(text.encode()).hexdigest()[:16]
    return f" with defaults {text}"


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


class _WithDefaults(_PartialBase):
    """A ``call`` step's function with defaults for the flow inputs of ``[inputs]``.

    A :class:`functools.partial`: the runner reads its signature (those
    parameters have defaults), sees through it to an async function, and
    pickles it by reference to the function; the cache keys it by the
    function's code, as it would the function itself.
    """

    @property
    def __code__(self) -> object:
        return getattr(self.func, "__code__", None)

    def __repr__(self) -> str:
        fn = self.func
        name = getattr(fn, "__qualname__", None) or repr(fn)
        given = ", ".join(f"{k}={v!r}" for k, v in self.keywords.items())
        return f"{getattr(fn, '__module__', '?')}.{name} (defaults: {given})"
