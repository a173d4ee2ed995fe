"""Inline step code: a flow file's ``python = '''...'''`` steps.

The rules of step code written in a flow file live here, once: the flow-file
builder (``_flowfile``), the UI editor's check and save, and the pods of an
exported workflow all read code through this module.

:func:`problems` says what is wrong with a step's code before it runs: a
syntax error (what compiling finds too); no function for the step (the code
defines one function named like the step, or else its only top-level
function); a parameter that binds to nothing (no step, input or ``inputs =
{...}`` entry is named like it, and it has no default: "did you mean ...?"),
or one a call by name can never fill (positional-only without a default).
Each :class:`CodeProblem` has its line (from 1) and column (from 0) within
the code.  These are the checks of a ``call`` step's function too, as the
UI's code panel edits it in its module (``ui._code``): there the function is
the one the call names (``function=``), and it binds as the inline step's
does.

:func:`load` compiles the code so that everything a user sees of it names the
flow file and the line in the flow file: the code is parsed, its line numbers
are moved to the lines the file writes it on (``lines``: the file's line of
each line of the code, which ``_flowfile`` works out from where the string
starts), and it is compiled with the flow file's path as its file name.  A
traceback then says ``File "flow.toml", line 12`` and :mod:`linecache` shows
that line of the file, which is the code's own.  Its top-level code runs
once, at load, as a module's would.

The step's function is an :class:`Inline` (a :class:`functools.partial`,
holding the defaults a flow file's ``[inputs]`` give it), which

- pickles as its code, not by reference: a worker process (or a Dask worker)
  compiles the same code again (once per process, :data:`_built`), so it
  needs neither the flow file nor an importable module;
- gives the cache and a resume the code of the whole text as its
  ``__code__``: what the code does (``_plan.code_digest``), so that a change
  to a helper function or a constant beside the step's function changes the
  step's cache key and makes a resume refuse the step's output; whitespace,
  comments and the code's place in the file do not.

Light on purpose: :mod:`ast` is imported when code is checked, not with
the package.
"""

import builtins
import functools

from ._errors import nearest

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ast
    from collections.abc import Callable, Collection, Sequence
    from typing import Any, NamedTuple

    _PartialBase = functools.partial[Any]
else:
    from collections import namedtuple as _namedtuple

    _PartialBase = functools.partial

__all__ = ["CodeProblem", "Inline", "LoadError", "function_node", "load", "problems", "toml_lines"]


if TYPE_CHECKING:

    class CodeProblem(NamedTuple):
        """One problem of step code: its line (from 1) and column (from 0) within the code."""

        line: int
        col: int
        message: str

else:
    CodeProblem = _namedtuple("CodeProblem", "line col message")
    CodeProblem.__doc__ = "One problem of step code: its line (from 1) and column (from 0) within the code."


def problems(
    code: str, step: str, names: "Collection[str] | None", *, function: "str | None" = None
) -> "list[CodeProblem]":
    """What is wrong with ``code`` as the code of step ``step``.

    Args:
        code: the step's code.
        step: the step's name.
        names: what a parameter may be named to receive a value: the flow's
            steps and inputs, and the parameters the step's ``inputs = {...}``
            binds (``None``: parameters are not checked).
        function: the name the function must have (a ``call`` step's
            function in its module); ``None``: inline code's rule, the
            function named like the step, or else the only one.

    Returns:
        Every problem (a syntax error, or a function not found, is the only
        one when there is one), in the order of the code.
    """
    return _check(code, step, names, function)[1]


def _check(
    code: str, step: str, names: "Collection[str] | None", function: "str | None" = None
) -> "tuple[ast.Module | None, list[CodeProblem]]":
    """The parsed code and its problems (``names`` None: parameters not checked)."""
    import ast  # (import time: only when there is step code to read)

    if not isinstance(code, str) or not code.strip():
        return None, [CodeProblem(1, 0, "the code is empty: define a function for the step")]
    try:
        tree = ast.parse(code)
        compile(tree, "<step code>", "exec", dont_inherit=True)  # what only compiling finds: return outside a def...
    except SyntaxError as exc:
        line = exc.lineno or 1
        return None, [CodeProblem(line, max((exc.offset or 1) - 1, 0), f"syntax error: {exc.msg}")]
    except ValueError as exc:  # a NUL character
        return None, [CodeProblem(1, 0, f"cannot be compiled: {exc}")]
    node = function_node(tree, step) if function is None else _named(tree, function)
    if isinstance(node, str):
        return tree, [CodeProblem(1, 0, node)]
    return tree, [] if names is None else _parameters(node, step, names)


def _defs(tree: "ast.Module") -> "list[ast.FunctionDef | ast.AsyncFunctionDef]":
    import ast  # (import time: only when there is step code to read)

    return [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def function_node(tree: "ast.Module", step: str) -> "ast.FunctionDef | ast.AsyncFunctionDef | str":
    """The step's function in ``tree``: the top-level one named like the step,
    else the only top-level one; or why there is none."""
    defs = _defs(tree)
    named = [n for n in defs if n.name == step]
    if named:
        return named[-1]  # the one that stands, as Python would keep it
    if len({n.name for n in defs}) == 1:
        return defs[-1]
    if not defs:
        return f"defines no function: write def {_def_name(step)}(...) at the top level of the code"
    listed = ", ".join(dict.fromkeys(n.name for n in defs))
    close = nearest(step, [n.name for n in defs])
    hint = f" (did you mean {close!r}?)" if close else ""
    return (f"defines several functions ({listed}) and none is named like the step{hint}: "
            f"name the step's function {_def_name(step)}")


def _named(tree: "ast.Module", function: str) -> "ast.FunctionDef | ast.AsyncFunctionDef | str":
    """The top-level function ``function`` of ``tree`` (the last, as Python keeps it); or why there is none."""
    defs = _defs(tree)
    named = [n for n in defs if n.name == function]
    if named:
        return named[-1]
    listed = ", ".join(dict.fromkeys(n.name for n in defs))
    return f"the code defines no function named {function!r}" + (f" (it defines {listed})" if listed else "")


def _def_name(step: str) -> str:
    """A function name for step ``step``, as the UI's starter code names it (static/editor/code.js)."""
    import keyword  # (import time: only when a problem names the step's function)
    import re  # (import time: likewise)

    name = re.sub(r"[^A-Za-z0-9_]", "_", step)
    name = name if re.match(r"[A-Za-z_]", name) else "step_" + name
    return name + "_" if keyword.iskeyword(name) else name


def _parameters(
    node: "ast.FunctionDef | ast.AsyncFunctionDef", step: str, names: "Collection[str]"
) -> "list[CodeProblem]":
    """The function's parameters that bind to nothing (as a ``call`` step binds them)."""
    a = node.args
    found: list[CodeProblem] = []
    positional = [*a.posonlyargs, *a.args]
    first_default = len(positional) - len(a.defaults)
    for k, arg in enumerate(a.posonlyargs):
        if k < first_default:
            found.append(CodeProblem(arg.lineno, arg.col_offset,
                                     f"positional-only parameter {arg.arg!r} cannot be bound by name"))
    params = [(arg, k + len(a.posonlyargs) >= first_default) for k, arg in enumerate(a.args)]
    params += [(arg, default is not None) for arg, default in zip(a.kwonlyargs, a.kw_defaults)]
    for arg, has_default in params:
        if has_default or arg.arg in names and arg.arg != step:
            continue
        if arg.arg == step:
            message = f"parameter {arg.arg!r} is named like the step itself: a step cannot take its own output"
        else:
            close = nearest(arg.arg, names)
            hint = f"did you mean {close!r}?" if close else "declare it in [inputs], or give it a default"
            message = f"parameter {arg.arg!r} binds to nothing: no step or input is named {arg.arg!r} ({hint})"
        found.append(CodeProblem(arg.lineno, arg.col_offset, message))
    return found


# -- compiling ----------------------------------------------------------------------


class LoadError(Exception):
    """Step code that cannot be loaded: ``args`` holds, for each problem, the
    flow file's line (0: not known) and the :class:`CodeProblem` (its line 0
    for what its top-level code raised)."""


def load(
    code: str, step: str, filename: str, lines: "Sequence[int]", names: "Collection[str] | None" = None,
    keywords: "dict[str, Any] | None" = None,
) -> "Inline":
    """Step ``step``'s function, compiled from ``code`` as written in ``filename``.

    Args:
        code: the step's code.
        step: the step's name.
        filename: the flow file (tracebacks name it).
        lines: the file's line of each line of the code (the last one
            stands for any line after it).
        names: checked as :func:`problems` checks them (``None``: not checked).
        keywords: defaults for the function's parameters (a flow file's inputs).

    Raises:
        LoadError: a problem of :func:`problems` (its line in the file), or
            the code's top-level code raised.
    """
    tree, found = _check(code, step, names)
    if found:
        raise LoadError(*[(_file_line(lines, p.line), p) for p in found])
    assert tree is not None
    fn, module = _compiled(tree, step, filename, tuple(lines))
    return Inline(fn, (code, step, filename, tuple(lines)), module, **(keywords or {}))


def _file_line(lines: "Sequence[int]", line: int) -> int:
    """The file's line of the code's line ``line``."""
    if not lines:
        return line
    return lines[min(max(line, 1), len(lines)) - 1]


def _compiled(
    tree: "ast.Module", step: str, filename: str, lines: "tuple[int, ...]"
) -> "tuple[Callable[..., Any], Any]":
    """Compile and run the module ``tree``; its step function and module code."""
    import ast  # (import time: only when there is step code to read)

    for each in ast.walk(tree):
        if "lineno" in each._attributes:
            start = getattr(each, "lineno", None)
            if start is not None:
                end = getattr(each, "end_lineno", None)
                each.lineno = _file_line(lines, start)  # type: ignore[attr-defined]
                each.end_lineno = None if end is None else _file_line(lines, end)  # type: ignore[attr-defined]
    node = function_node(tree, step)
    assert not isinstance(node, str)
    name = node.name
    module = compile(tree, filename, "exec")
    namespace: dict[str, Any] = {"__name__": "microdag.inline", "__file__": filename, "__builtins__": builtins}
    try:
        exec(module, namespace)  # noqa: S102 - the flow file's own code, run as importing a module runs it
    except Exception as exc:
        line = 0
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == filename:
                line = tb.tb_lineno
            tb = tb.tb_next
        raise LoadError((line, CodeProblem(0, 0, f"running its code raised {type(exc).__name__}: {exc}"))) from exc
    fn = namespace.get(name)
    if not callable(fn):
        raise LoadError((0, CodeProblem(0, 0, f"{name!r} is not a function once its code has run")))
    return fn, module


class Inline(_PartialBase):
    """An inline step's function, with the defaults its flow file's inputs give it.

    Pickles as its code (see the module docs); ``__code__`` is the code of
    the whole text, which the cache and a resume digest.
    """

    _source: "tuple[str, str, str, tuple[int, ...]]"
    _module: "Any"

    def __new__(cls, fn: "Callable[..., Any]", source: "tuple[str, str, str, tuple[int, ...]]", module: "Any",
                /, **keywords: "Any") -> "Inline":
        self = super().__new__(cls, fn, **keywords)
        self._source = source
        self._module = module
        return self

    @property
    def __code__(self) -> "Any":
        return self._module

    @property
    def code(self) -> str:
        """The step's code, as the flow file writes it."""
        return self._source[0]

    @property
    def filename(self) -> str:
        """The flow file the code is written in (its absolute path)."""
        return self._source[2]

    @property
    def line(self) -> int:
        """The flow file's line of the code's first line (a JSON file: of its key)."""
        lines = self._source[3]
        return lines[0] if lines else 1

    def with_defaults(self, given: "dict[str, Any]") -> "Inline":
        """The same code, with defaults ``given`` for more parameters."""
        return Inline(self.func, self._source, self._module, **{**self.keywords, **given})

    def __reduce__(self) -> "Any":
        return (_rebuild, (self._source, dict(self.keywords)))

    def __repr__(self) -> str:
        code, step, filename, lines = self._source
        given = ", ".join(f"{k}={v!r}" for k, v in self.keywords.items())
        where = f"{filename}:{lines[0]}" if lines else filename
        return f"inline code of step {step!r} ({where})" + (f" (defaults: {given})" if given else "")


#: Functions compiled again in this process from pickled code: source -> function, module code.
_built: "dict[tuple[str, str, str, tuple[int, ...]], tuple[Callable[..., Any], Any]]" = {}


def _rebuild(source: "tuple[str, str, str, tuple[int, ...]]", keywords: "dict[str, Any]") -> Inline:
    """An :class:`Inline` unpickled: its code compiled again (once per process)."""
    built = _built.get(source)
    if built is None:
        code, step, filename, lines = source
        tree, found = _check(code, step, None)
        if tree is None or found:
            raise LoadError(*[(_file_line(lines, p.line), p) for p in found])
        built = _built[source] = _compiled(tree, step, filename, lines)
    return Inline(built[0], source, built[1], **keywords)


# -- where a flow file writes the code ------------------------------------------------


def toml_lines(raw: str, first: int) -> "tuple[int, ...]":
    """The file's line of each line of a TOML string's value, ``raw`` being the
    string as written (quotes included), starting on the file's line ``first``."""
    if raw.startswith(("'''", '"""')):
        body = raw[3:-3]
        line = first
        if body.startswith("\r\n") or body.startswith("\n"):  # the newline after the quotes is trimmed
            line += 1
            body = body[2:] if body.startswith("\r") else body[1:]
        out = [line]
        literal = raw[0] == "'"
        i, n = 0, len(body)
        while i < n:
            c = body[i]
            if c == "\n":
                line += 1
                out.append(line)
            elif c == "\\" and not literal:
                j = i + 1
                while j < n and body[j] in " \t\r":
                    j += 1
                if j < n and body[j] == "\n":  # a line-ending backslash: no line of the code
                    while j < n and body[j] in " \t\r\n":
                        line += body[j] == "\n"
                        j += 1
                    i = j
                    continue
                if body[i + 1 : i + 2] == "n":
                    out.append(line)
                i += 2
                continue
            i += 1
        return tuple(out)
    count = raw.count("\\n") if raw.startswith('"') else 0
    return (first,) * (count + 1)

