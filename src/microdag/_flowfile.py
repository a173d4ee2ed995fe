"""The flow-file builder: a parsed flow file checked against its rules and made a Flow.

A flow file is data: ``[flow]`` (its name), ``[inputs]`` (flow inputs with
their defaults, or typed declarations) and ``[steps.NAME]`` tables holding
one of ``call`` (a Python function, imported), ``python`` (the step's code
itself, compiled by ``_inline`` so that its errors and tracebacks name the
flow file's lines) or ``command`` (an argv list, run without a shell; see
``_command``) and any option of :meth:`Flow.add`
that can be written as data.  Its rules are ``_flowrules``', in JSON Schema
keywords (the shipped ``flowfile.schema.json`` says the same, and a test
keeps them equal); they are checked by ``_schema.problem``, the package's one
schema checker.

Building is one pass that never stops at the first problem: the document is
checked key by key, every valid step is added to a new :class:`Flow`, every
invalid one is replaced by a placeholder that keeps its dependencies, and
then the whole flow is validated, so that unknown dependencies and cycles
are found even beside broken steps.  All problems go into one
:class:`FlowError`, each prefixed with ``FILE:LINE:``; a cycle alone raises
:class:`CycleError` (file-prefixed message, same path in ``args[1]``).
Line numbers come from the text only when there is something to report:
for TOML from ``_tomltext.key_lines`` (the exact reader the UI's editor
uses), for JSON from a search for each ``"key":`` in order.

How a ``call`` step's function is found, and what its parameters receive
from ``[inputs]``, is ``_flowcall``'s; a ``python`` step's code is
``_inline``'s (this module only says where the file writes it).
"""

import keyword
import os

from ._command import Command, Required, parse_item
from ._errors import CycleError, FlowError
from ._flow import Flow
from ._graph import Graph
from ._flowcall import WithDefaults, bound, class_default, input_class, named
from ._inline import CodeProblem, LoadError, load, toml_lines
from ._schema import INF_NAN, describe, problem, schema_of
from ._flowrules import DECLARATION, FLOW_OPTIONS, JSON_TYPES, KINDS, SECONDS, STEP_OPTIONS, TOP_KEYS, WORDS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

__all__ = ["Builder"]



class Builder:
    """One flow file being checked and turned into a Flow (see the module docs)."""

    def __init__(self, path: str, text: str, is_json: bool, data: object, problems: "list[str]") -> None:
        self.path = path
        self.text = text
        self.is_json = is_json
        self.data = data
        self.problems = [(0, p) for p in problems]  # (line or 0, text), sorted when raised
        #: (key path, text, the problem of step code it is, if it is one)
        self.located: list[tuple[tuple[str, ...], str, CodeProblem | None]] = [((), p, None) for p in problems]
        self.declared: dict[str, dict[str, Any]] = {}  # typed inputs: name -> JSON Schema
        self.classes: dict[str, type] = {}  # typed inputs naming a class: name -> the class
        self.deps: dict[str, list[str]] = {}  # step -> the steps it runs after
        self.folder = os.path.dirname(os.path.abspath(path))
        self._lines: dict[tuple[str, ...], int] | None = None
        self._values: dict[tuple[str, ...], tuple[int, int, int]] | None = None  # TOML: where values are
        self._modules: dict[str, object] = {}  # module name -> module or the reason it failed

    # -- reporting

    def report(
        self, where: "tuple[str, ...]", message: str, line: "int | None" = None, code: "CodeProblem | None" = None
    ) -> None:
        """Add a problem located at key path ``where`` (at ``line``, else its
        line, or its nearest written parent's); ``code``: the problem of step
        code it is."""
        line = line or self.line(where)
        text = f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}"
        self.problems.append((line or 0, text))
        self.located.append((where, text, code))

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
            from ._tomltext import key_lines  # (only when there is a problem to place)

            self._lines = key_lines(self.text)
        for n in range(len(where), 0, -1):
            line = self._lines.get(where[:n])
            if line is not None:
                return line
        return None

    def bad_value(self, where: "tuple[str, ...]", label: str, key: str, value: object, rule: "dict[str, Any]") -> bool:
        """Report ``value`` if it breaks ``rule``; return whether it did."""
        if problem(rule, value) is None:
            return False
        words = WORDS.get(key) or describe(rule, _show) + (" s" if key in SECONDS else "")
        self.report(where, f"{label}{key} must be {words}, not {_show(value)}")
        return True

    def unknown_key(self, where: "tuple[str, ...]", label: str, key: str, known: "Any") -> None:
        import difflib  # (import time: difflib loads on first use)

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
        pools = self.limits(data.get("pools", {}), "pools")
        rates = self.limits(data.get("rates", {}), "rates")
        flow = Flow(name, inputs=self.declared, pools=pools, rates=rates)
        flow._declared_types = self.classes
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
        try:
            Graph([(name, [d for d in deps if d in self.deps]) for name, deps in self.deps.items()], kind="step")
        except CycleError as exc:
            return exc
        except FlowError:
            pass
        return None

    def limits(self, section: object, kind: str) -> "dict[str, Any]":
        """``[pools]`` (name = size) or ``[rates]`` (name = "10/s"...), the good entries."""
        from .runner._limits import parse_rate  # (the rule's home; files with pools or rates only)

        if not isinstance(section, dict):
            self.report((kind,), f"{kind} must be a table of names, not {_show(section)}")
            return {}
        out = {}
        for key, value in section.items():
            try:
                if kind == "rates":
                    parse_rate(value)
                elif type(value) is not int or value < 1:
                    raise ValueError(f"a pool's size is an integer >= 1, not {_show(value)}")
                out[key] = value
            except ValueError as exc:
                self.report((kind, key), f"[{kind}] {key!r}: {exc}")
                # (a stand-in, so that the steps using it are not also told it is unknown: the file is refused)
                out[key] = f"1/s burst {2**31}" if kind == "rates" else 2**31
        return out

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
            elif isinstance(value, dict) and "type" in value and set(value) <= DECLARATION:
                out[key] = self.declaration(key, value)
            else:
                out[key] = value
        return out

    def declaration(self, key: str, value: "dict[str, Any]") -> "Any":
        """``[inputs] key = {type = ..., default = ..., description = ..., enum = [...], allow_inf_nan = ...}``:
        keep its schema for the flow; return its default (:class:`Required`: none)."""
        where = ("inputs", key)
        kinds = value["type"] if isinstance(value["type"], list) else [value["type"]]
        schema: dict[str, Any] = {}
        if isinstance(value["type"], str) and ":" in value["type"]:
            schema = self.declared_class(key, value["type"])
        elif not kinds or not all(k in JSON_TYPES for k in kinds):
            self.report(where, f"[inputs] {key!r}: type must be one of {', '.join(JSON_TYPES)} (or a list of "
                               f"them), or a class as \"module:Class\", not {_show(value['type'])}")
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
        if "allow_inf_nan" in value:
            if isinstance(value["allow_inf_nan"], bool):
                if value["allow_inf_nan"]:
                    schema[INF_NAN] = True
            else:
                self.report(where, f"[inputs] {key!r}: allow_inf_nan must be true or false")
        self.declared[key] = schema
        if "default" not in value:
            return Required
        if key in self.classes:  # read into its class, as a run reads the input
            default, wrong_lines = class_default(self.classes[key], f"[inputs] {key!r}: the default", value["default"])
            for line in wrong_lines:
                self.report(where, line)
            return default
        wrong = problem(schema, value["default"])
        if wrong is not None:
            self.report(where, f"[inputs] {key!r}: the default does not fit its type: {wrong}")
        return value["default"]

    def declared_class(self, key: str, target: str) -> "dict[str, Any]":
        """``[inputs] key = {type = "module:Class"}``: the class's schema (the
        class kept for the flow), or each problem reported at the input's line."""
        label = f"[inputs] {key!r}: type {_show(target)}: "
        cls, why = (None, 'a class is named as "module:Class" (e.g. "orders:Order")') if problem(
            STEP_OPTIONS["call"], target) is not None else input_class(target, self.folder, self._modules)
        if cls is None:
            self.report(("inputs", key), label + str(why))
            return {}
        self.classes[key] = cls
        return schema_of(cls)

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
            self.report(where, f"{label}must be a table of options (call, python or command, ...), not {_show(body)}")
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
        kinds = [k for k in KINDS if k in body]
        if len(kinds) > 1:
            given = f"both {kinds[0]} and {kinds[1]}" if len(kinds) == 2 else f"{', '.join(kinds[:-1])} and {kinds[-1]}"
            self.report(where, f"{label}has {given}: give exactly one")
        elif not kinds:
            self.report(
                where, f"{label}needs call = \"module:function\", python = '''code''' or command = [argv...]"
            )
        if "batch_size" in options and "map" not in body:
            self.report(where + ("batch_size",), f"{label}batch_size needs map (the parameter to map over)")
        elif "batch_size" in options and "command" in body and body.get("output", "text") == "text":
            self.report(
                where + ("batch_size",),
                f'{label}batch_size needs output = "json" or "lines": the command prints one result '
                "per item of its batch (a JSON list, or one line each)",
            )
        if "key" in options and "map" not in body:
            self.report(where + ("key",), f"{label}key needs map (the parameter whose items it names)")
        elif "key" in options and "batch_size" in body:
            self.report(where + ("key",), f"{label}key goes with map of one item a call, not with batch_size")
        if "output" in body and "command" not in body and kinds:
            self.report(
                where + ("output",),
                f"{label}output is for command steps: a {kinds[0]} step's output is what its function returns",
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
        elif "python" in options and len(kinds) == 1:
            fn, implicit = self.inline(name, options["python"], options, defaults, steps)
            self.deps[name] = deps + [s for s in implicit if s not in deps]
        elif "command" in options:
            fn, used = self.command(name, options, defaults, steps)
            deps.extend(s for s in used if s not in deps)
        self.deps.setdefault(name, deps)
        if len(self.problems) > before or fn is None:
            if name:
                flow.add(name, _invalid, depends_on=[d for d in deps if d != name])
            return
        for key in ("call", "python", "command", "output"):
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
        value, why = named(target, self.folder, self._modules)
        if why is not None:
            self.report(where, label + why)
            return None, []
        if not callable(value):
            self.report(where, f"{label}{target.partition(':')[2]!r} is not callable (it is of type "
                               f"{type(value).__name__})")
            return None, []
        fn: Callable[..., Any] = value
        found = bound(name, fn, options, defaults, steps)
        if found is None:
            return fn, []  # validation reports it
        given, implicit = found
        return (WithDefaults(fn, **given) if given else fn), implicit

    def inline(
        self,
        name: str,
        code: str,
        options: "dict[str, Any]",
        defaults: "dict[str, Any]",
        steps: "Mapping[str, Any]",
    ) -> "tuple[Callable[..., Any] | None, list[str]]":
        """The function ``python`` defines, with its defaults from ``[inputs]``
        (None if it cannot be had: each problem reported at its line of the
        file), and the steps its parameters name."""
        where = ("steps", name, "python")
        names = {*steps, *defaults, *options.get("inputs", {})}
        lines = self.code_lines(name)
        try:
            fn = load(code, name, os.path.abspath(self.path), lines, names)
        except LoadError as exc:
            for line, found in exc.args:
                if self.is_json and found.line:
                    message = f"step {name!r}: python, line {found.line} of its code: {found.message}"
                else:
                    message = f"step {name!r}: python: {found.message}"
                self.report(where, message, line=None if self.is_json else line or None,
                            code=found if found.line else None)
            return None, []
        found = bound(name, fn.func, options, defaults, steps)
        if found is None:
            return fn, []
        given, implicit = found
        return (fn.with_defaults(given) if given else fn), implicit

    def code_lines(self, name: str) -> "tuple[int, ...]":
        """The file's line of each line of step ``name``'s code (the key's line
        for a JSON file, or where the value is not a ``key = value`` entry)."""
        where = ("steps", name, "python")
        if not self.is_json:
            if self._values is None:
                from ._tomltext import value_spans  # (only for a flow file with step code)

                self._values = value_spans(self.text)
            found = self._values.get(where)
            if found is not None:
                start, end, line = found
                return toml_lines(self.text[start:end], line)
        return (self.line(where) or 1,)

    def command(
        self, name: str, options: "dict[str, Any]", defaults: "dict[str, Any]", steps: "Mapping[str, Any]"
    ) -> "tuple[Command | None, list[str]]":
        """The command step's callable and the steps whose outputs it uses."""
        where = ("steps", name, "command")
        label = f"step {name!r}: command"
        argv: list[str] = options["command"]
        parts: list[tuple[str | tuple[str, str], ...]] = []
        used_inputs: dict[str, Any] = {}
        used_steps: list[str] = []
        ok = True
        for n, item in enumerate(argv):
            parsed = parse_item(item)
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
        fn = Command(
            tuple(argv), tuple(parts), used_inputs, bool(used_steps), options.get("timeout"),
            output=options.get("output", "text"), step=name,
        )
        return fn, used_steps

    def flow_problem(self, problem: str, steps: "Mapping[str, Any]") -> None:
        """Locate and report a problem the Flow found (it names the step first)."""
        for name in sorted(steps, key=len, reverse=True):
            prefix = f"step {name!r}"
            if problem.startswith("parameter ") and f" of {prefix} " in problem:  # (a misspelt step name)
                body = steps[name] if isinstance(steps[name], dict) else {}
                kind = "call" if "call" in body else "python" if "python" in body else ""
                self.report(("steps", name, kind) if kind else ("steps", name), problem)
                return
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
                elif "python" in body:
                    key = "python"
            self.report(("steps", name, key) if key else ("steps", name), problem)
            return
        self.problems.append((0, f"{self.path}: {problem}"))


def _invalid(**deps: "Any") -> None:
    """Stands in for an invalid step while the rest of the file is checked; never runs."""
    raise FlowError("this step's definition is invalid")


def _show(value: object) -> str:
    """``value`` as it would be written in the file (JSON), shortened."""
    import json  # (import time: json loads on first use)

    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _json_line(text: str, where: "tuple[str, ...]") -> "int | None":
    """The line of the deepest ``"key":`` of ``where`` found in order (best effort)."""
    import json  # (import time: json loads on first use)
    import re  # (import time: re loads on first use)

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
