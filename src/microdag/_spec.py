"""Loading a flow: from a TOML or JSON flow file, a ``.py`` file or a ``module:attr`` name.

:func:`load_flow` tells the three apart by the spec's form.  A flow file is
read here (UTF-8, a byte-order mark allowed), refused before parsing when
its values nest too deep for the parsers' stack (:func:`_too_deep`), parsed
(``tomllib`` or ``json``, whose errors become ``FILE:LINE:`` problems; a
JSON key given twice is a problem too) and handed to ``_flowfile.Builder``,
which checks it against the rules and builds the :class:`Flow`.
:func:`check_text` does the same for an editor's unsaved text and returns
each problem with the key path it concerns.  The format is described in
``docs/flow-file.md`` and, for editors, by the JSON Schema
``flowfile.schema.json`` shipped beside this package.

A ``.py`` file or a module is imported and its :class:`Flow` taken.  The
file's directory is put at the front of ``sys.path`` and left there: worker
processes started later inherit it, so the modules its steps import load in
them too.  For the same reason a ``.py`` flow is imported under its own stem
when no other module has that name (a worker unpickling one of its
functions imports it by that name), else under a unique one.

Nothing heavy is imported at module level (``tomllib``, ``json``,
``importlib``, ``inspect``): ``python -m microdag run`` pays for them only
when it needs them.
"""

import os
import sys

from ._command import CommandError
from ._errors import CycleError, FlowError
from ._flow import Flow
from ._flowcall import on_path, reason
from ._flowfile import Builder

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._inline import CodeProblem

__all__ = ["CommandError", "check_text", "load_flow"]

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
    import importlib.util  # (import time: importlib.util loads on first use)

    spec = path if attr is None else f"{path}:{attr}"
    if not os.path.isfile(path):
        raise FlowError(f"{spec}: no such file")
    full = os.path.abspath(path)
    on_path(os.path.dirname(full))
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
        raise FlowError(f"{_raised_in(path, exc)}: importing it raised {reason(exc)}") from exc
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
    import importlib.machinery  # (import time: importlib.machinery loads on first use)

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
    import importlib  # (import time: importlib loads on first use)

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise FlowError(f"{spec}: cannot import module {module_name!r}: {exc}") from exc
        raise FlowError(f"{spec}: importing module {module_name!r} raised {reason(exc)}") from exc
    except FlowError as exc:
        raise FlowError(*(f"{spec}: {p}" for p in exc.problems)) from exc
    except Exception as exc:
        raise FlowError(f"{spec}: importing module {module_name!r} raised {reason(exc)}") from exc
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
    import traceback  # (import time: traceback loads on first use)

    full = os.path.abspath(path)
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) == full:
            line = frame.lineno
    if line is None and isinstance(exc, SyntaxError) and exc.filename and os.path.abspath(exc.filename) == full:
        line = exc.lineno
    return path if line is None else f"{path}:{line}"


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
    return Builder(path, text, is_json, data, problems).build()


def check_text(
    path: str, text: str
) -> "tuple[Flow | None, list[tuple[tuple[str, ...], str, CodeProblem | None]]]":
    """Check ``text`` as the content of the flow file ``path`` (which need not
    hold it: an editor's unsaved text); its ``call`` modules are imported from
    beside ``path``.

    Returns:
        The flow (``None`` when there are problems) and every problem with the
        key path it concerns (``("steps", NAME, KEY)``, shorter when less is
        known, ``()`` for the whole file), in the order of the file, and for
        a problem of a step's ``python`` code that problem as
        ``_inline.problems`` gives it (its line and column within the code;
        else ``None``).
    """
    is_json = path.lower().endswith(".json")
    problems: list[str] = []
    deep = _too_deep(text)
    try:
        if deep is not None:
            raise FlowError(f"{path}:{deep}: values nest more than {_MAX_DEPTH} levels deep")
        data = _parse_json(path, text, problems) if is_json else _parse_toml(path, text)
    except FlowError as exc:
        return None, [((), str(exc), None)]
    builder = Builder(path, text, is_json, data, problems)
    try:
        return builder.build(), []
    except CycleError as exc:
        return None, [(("steps", str(exc.cycle[0])) if exc.cycle else (), str(exc), None)]
    except FlowError:
        order = {problem: n for n, (_, problem) in enumerate(sorted(builder.problems, key=lambda p: p[0]))}
        return None, sorted(builder.located, key=lambda p: order.get(p[1], 0))


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
    import re  # (import time: re loads on first use)
    import tomllib  # (import time: tomllib loads on first use)

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
    import json  # (import time: json loads on first use)

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
