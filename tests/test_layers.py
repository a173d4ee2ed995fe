"""The package's layering: imports point down, with no circle, and no class or module does everything;
an import inside a function says why it is there.

The import graph of ``src/microdag`` is read from the source with :mod:`ast`:
every ``import`` and ``from ... import`` counts, also inside functions (a
circle through a function-level import is still a circle); imports under
``if TYPE_CHECKING:`` do not (they never run).  ``from package import name``
points at the package (whose ``__init__`` runs first) and at the submodule
when ``name`` is one: ``from . import _read`` in ``stores/_base`` depends on
``stores/__init__``, which imports ``_base``: a circle.
"""

import ast
import os

import microdag

ROOT = os.path.dirname(os.path.abspath(microdag.__file__))

#: Bottom to top (docs/design.md): a module may import from its own layer and below.
LAYERS = [
    ["microdag._version", "microdag._context", "microdag._children", "microdag._types", "microdag._yaml",
     "microdag._schema", "microdag._edges", "microdag._typed_nodes", "microdag._typed",  # _typed: typed values to JSON and back
     "microdag._tomltext", "microdag.otel", "microdag._nogc", "microdag._layout"],
    ["microdag._errors"],
    ["microdag._sched_py", "microdag._sched", "microdag._compat"],
    ["microdag._records", "microdag._events", "microdag._capture", "microdag._present"],  # _present: how a run is shown
    ["microdag._result", "microdag._render"],
    ["microdag.stores"],
    ["microdag._graph"],
    ["microdag._steps"],
    ["microdag._build"],  # a step checked as a flow is built (Flow.add, add_many)
    ["microdag._binding", "microdag._retry", "microdag._recipe"],  # a step's parameters bound; when an attempt is retried; an added step's recipe
    ["microdag._plantypes"],  # a plan's inputs and types
    ["microdag._plan"],
    ["microdag.pools"],
    ["microdag.runner"],
    ["microdag._flowrun"],  # a flow run: Flow.run, arun, run_step (Flow's base class)
    ["microdag._flow"],
    ["microdag._command", "microdag._inline"],  # a command step: a program; a python step: code in a flow file
    ["microdag._flowcall"],  # a call step's function found, and the defaults a flow file gives it
    ["microdag._flowrules"],  # what a flow file's keys may hold
    ["microdag._flowfile"],  # a flow file checked against its rules, built into a Flow
    ["microdag._spec", "microdag._cmdline", "microdag._pod", "microdag._argo"],
    ["microdag._dask_run"],  # Dask graphs run on the kernel: the graph read, the calls, the crew
    ["microdag._dask_processes"],  # get_processes: a Dask graph's tasks shipped to processes
    ["microdag.cli", "microdag.ui", "microdag.__main__", "microdag", "microdag.dask"],
]


def modules(suffixes: "tuple[str, ...]" = (".py",)) -> "dict[str, str]":
    """Module name -> path, for every ``.py`` file of the package (and ``.pyx``
    when asked: the compiled kernel imports nothing, but is imported)."""
    found = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(suffixes):
                path = os.path.join(folder, name)
                parts = os.path.splitext(os.path.relpath(path, ROOT))[0].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                found[".".join(["microdag", *parts])] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> "set[int]":
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:  # the else branch does run
                skip.update(id(sub) for sub in ast.walk(statement))
    return skip


def imports_of(name: str, path: str, known: "dict[str, str]") -> "set[str]":
    """The package's modules that module ``name`` imports (see the module docs)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    skip = _type_checking_nodes(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            targets.append(base)  # (a package's __init__ runs before any of its modules)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:
                    targets.append(sub)
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph() -> "dict[str, set[str]]":
    known = modules((".py", ".pyx"))
    return {name: imports_of(name, path, known) for name, path in modules().items()}


def find_cycle(edges: "dict[str, set[str]]") -> "list[str] | None":
    """One import circle, as a path whose first and last module are the same, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(edges):
        if start in state:
            continue
        path = [start]
        stack = [iter(sorted(edges[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(edges.get(nxt, ()))))
    return None


def layer_of(name: str) -> int:
    best = -1, -1  # (length of the matching prefix, layer)
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best[0]:
                best = len(prefix), level
    assert best[1] >= 0, f"{name} is in no layer: add it to LAYERS (and docs/design.md)"
    return best[1]


def test_the_import_graph_has_no_circle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_imports_point_down() -> None:
    upward = [
        f"{name} -> {target}"
        for name, targets in graph().items()
        for target in targets
        # (a module's own package runs its __init__ first: a circle there is a circle, not a layer)
        if layer_of(target) > layer_of(name) and not name.startswith(target + ".")
    ]
    assert upward == []


def test_no_class_over_500_lines_outside_the_kernel_twin() -> None:
    big = []
    for name, path in modules().items():
        if name == "microdag._sched_py":  # the kernel is one state machine by design
            continue
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                if lines > 500:
                    big.append(f"{name}.{node.name}: {lines} lines")
    assert big == []


#: Modules exempt from the size limit: the kernel twins, one state machine by
#: design (``_sched.pyx`` is not a ``.py`` file and never looked at).  A
#: generated module would join them here, with a word why.
BIG_BY_DESIGN = {"microdag._sched_py"}


def test_no_module_over_600_lines_outside_the_kernel_twins() -> None:
    """A module over about 600 lines does more than one job: split it along a
    seam, so that its opening docstring can say its job in one line."""
    big = []
    for name, path in modules().items():
        if name in BIG_BY_DESIGN:
            continue
        with open(path, encoding="utf-8") as f:
            lines = sum(1 for _ in f)
        if lines > 600:
            big.append(f"{name}: {lines} lines")
    assert big == []


def test_the_checker_sees_function_level_imports_and_circles(tmp_path) -> None:
    """The checker itself: a circle made by an import inside a function is found,
    one hidden under TYPE_CHECKING is not."""
    a = tmp_path / "a.py"
    a.write_text("def f():\n    from .b import g\n")
    b = tmp_path / "b.py"
    b.write_text("TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from . import c\nelse:\n    from . import a\n")
    c = tmp_path / "c.py"
    c.write_text("from .b import x\n")
    known = {"pkg.a": str(a), "pkg.b": str(b), "pkg.c": str(c), "pkg": str(tmp_path / "__init__.py")}
    edges = {name: imports_of(name, path, known) for name, path in known.items() if name != "pkg"}
    assert edges == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg", "pkg.a"}, "pkg.c": {"pkg.b"}}
    assert find_cycle(edges) == ["pkg.a", "pkg.b", "pkg.a"]


def unexplained_imports(path: str, every: bool = False) -> "list[int]":
    """Lines of the function-level imports in ``path`` that give no reason
    (from the package, ``from .`` / ``from ..``, and any other when ``every``):
    the convention (docs/design.md) is a ``# (reason)`` comment on the
    import's line, or on the line just before it."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines = text.splitlines()
    found: list[int] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, True)
            elif isinstance(child, (ast.Import, ast.ImportFrom)) and in_function and (
                    every or isinstance(child, ast.ImportFrom) and child.level):
                own = lines[child.lineno - 1 : (child.end_lineno or child.lineno)]
                before = lines[child.lineno - 2].strip() if child.lineno > 1 else ""
                if not any("# (" in line for line in own) and not before.startswith("# ("):
                    found.append(child.lineno)
            else:
                visit(child, in_function)

    visit(ast.parse(text), False)
    return found


def test_every_function_level_import_from_the_package_says_why() -> None:
    """Such an import hides a dependency from the module's top: it is there to
    keep ``import microdag`` (or a light module, or the command line's start)
    cheap, to load a backend, store or extra only when asked, or to break a
    circle, and it says which on its line.  Anything else goes to the top."""
    unexplained = [
        f"{os.path.relpath(path, ROOT)}:{line}"
        for path in modules().values()
        for line in unexplained_imports(path)
    ]
    assert unexplained == [], "move these imports to the module's top, or give each a # (reason)"


def test_every_function_level_import_says_why() -> None:
    """The same for the standard library and the optional extras: each lazy
    one is there for import time, a platform or an extra, and says so."""
    unexplained = [
        f"{os.path.relpath(path, ROOT)}:{line}"
        for path in modules().values()
        for line in unexplained_imports(path, every=True)
    ]
    assert unexplained == [], "move these imports to the module's top, or give each a # (reason)"


def test_the_reason_checker_reads_a_line_or_the_one_before(tmp_path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from . import top\n"
        "def f():\n"
        "    from .a import b\n"
        "    from .c import d  # (only when asked)\n"
        "    # (a circle: c imports this module)\n"
        "    from .e import (\n"
        "        g,\n"
        "    )\n"
        "    import json\n"
        "    from .h import i  # a comment that is no reason\n"
    )
    assert unexplained_imports(str(module)) == [3, 10]
    assert unexplained_imports(str(module), every=True) == [3, 9, 10]
