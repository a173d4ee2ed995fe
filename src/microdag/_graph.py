"""The graph layer: user names <-> kernel ids, validation, subsets, export.

A :class:`Graph` is immutable once built.  It keeps

- ``names``: every node name in definition order; a name's id is its index;
- ``deps``: per id, the ids it depends on (in the order given, duplicates
  removed);
- the compiled :class:`~microdag._sched_py.Kernel` (edges ``dep -> node``).

Validation reports every problem at once: each duplicate name and each
dependency on an undefined name go into one :class:`FlowError`; when there
are none, a cycle raises :class:`CycleError` holding one full path.  All the
algorithms are iterative (the kernel's), so a chain of a million nodes does
not touch the recursion limit.

:class:`TopologicalSorter` (the :mod:`graphlib` drop-in) is the chosen
kernel twin's own class, re-exported here.
"""

from ._compat import sched
from ._errors import CycleError, FlowError, nearest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Hashable, Iterable, Mapping, Sequence
    from typing import Any, Generic, TypeVar

    from ._sched_py import Kernel

    _N = TypeVar("_N", bound=Hashable)

    class _Generic(Generic[_N]):
        """For type checkers, :class:`Graph` is generic in its node type."""
else:
    from types import GenericAlias

    _N = object

    class _Generic:  # at run time: nothing from typing, subscriptable
        __slots__ = ()
        __class_getitem__ = classmethod(GenericAlias)

__all__ = ["Graph", "TopologicalSorter", "name_index", "new_kernel"]

TopologicalSorter = sched.TopologicalSorter


class Graph(_Generic[_N]):
    """A validated DAG of named nodes, compiled for the scheduler (generic in
    the node type: ``Graph[str]``).

    Args:
        dependencies: each node's name and the names it depends on, either as
            a mapping ``{name: deps}`` or as an iterable of ``(name, deps)``
            pairs (the only form in which a name can be given twice).
        kind: what a node is called in error messages (``"step"`` in flows).

    Raises:
        FlowError: some names are defined twice or depend on undefined names
            (every such problem is listed).
        CycleError: the graph has a cycle; ``args[1]`` is the path, each node
            a dependency of the next, first and last the same.
        TypeError: a name is not hashable.
    """

    __slots__ = ("_names", "_index", "_deps", "_kernel", "_kind")

    def __init__(
        self,
        dependencies: "Mapping[_N, Iterable[_N]] | Iterable[tuple[_N, Iterable[_N]]]",
        *,
        kind: str = "node",
    ) -> None:
        pairs: Iterable[tuple[_N, Iterable[_N]]]
        items = getattr(dependencies, "items", None)
        pairs = items() if callable(items) else dependencies  # type: ignore[assignment]
        names: list[_N] = []
        index: dict[_N, int] = {}
        raw: list[tuple[_N, ...]] = []
        problems: list[str] = []
        for name, deps in pairs:
            if name in index:
                problems.append(f"{kind} {name!r} is defined more than once")
                continue
            if isinstance(deps, (str, bytes)):  # one name given alone
                deps = (deps,)  # type: ignore[assignment]
            index[name] = len(names)
            names.append(name)
            raw.append(tuple(deps))
        src: list[int] = []
        dst: list[int] = []
        deps_ids: list[tuple[int, ...]] = []
        for i, deps in enumerate(raw):
            seen: dict[int, None] = {}
            for dep in deps:
                j = index.get(dep)
                if j is None:
                    problems.append(
                        f"{kind} {names[i]!r} depends on {dep!r}, which is not defined"
                    )
                elif j not in seen:
                    seen[j] = None
                    src.append(j)
                    dst.append(i)
            deps_ids.append(tuple(seen))
        if problems:
            raise FlowError(*problems)
        kernel = sched.Kernel(len(names), src, dst)
        cycle = kernel.find_cycle()
        if cycle is not None:
            raise CycleError(f"{kind}s are in a cycle", [names[i] for i in cycle])
        self._names = tuple(names)
        self._index = index
        self._deps = deps_ids
        self._kernel = kernel
        self._kind = kind

    @classmethod
    def _of(
        cls, names: "Sequence[_N]", index: "dict[_N, int]", deps: "list[tuple[_N, ...]]",
        known: "list[tuple[int, ...] | None] | None" = None,
    ) -> "Graph[_N]":
        """The graph of a flow's steps (``kind="step"``): ``names`` (unique),
        ``index`` (name -> id; the graph keeps it as its own) and ``deps[i]``,
        step ``i``'s dependencies, each once (``known[i]``: their ids, where
        already found).  Builds what ``__init__`` builds, without its
        per-name checks (a missing name still raises ``FlowError``, a cycle
        ``CycleError``, with the same messages)."""
        try:
            ids, kernel = sched.link(index, deps, known)
        except KeyError:
            missing = [f"step {name!r} depends on {d!r}, which is not defined"
                       for name, ds in zip(names, deps) for d in ds if d not in index]
            raise FlowError(*missing) from None
        cycle = kernel.find_cycle()
        if cycle is not None:
            raise CycleError("steps are in a cycle", [names[i] for i in cycle])
        graph = cls.__new__(cls)
        graph._names = tuple(names)
        graph._index = index
        graph._deps = ids
        graph._kernel = kernel
        graph._kind = "step"
        return graph

    def _for_run(self, kernel: "Kernel") -> "Graph[_N]":
        """A copy whose names (a list), name index and dependency ids are its
        own, over ``kernel``: the graph of one run whose steps add steps."""
        graph = type(self).__new__(type(self))
        graph._names = list(self._names)  # type: ignore[assignment]
        graph._index = dict(self._index)
        graph._deps = list(self._deps)
        graph._kernel = kernel
        graph._kind = self._kind
        return graph

    def _new_kernel(self) -> "Kernel":
        """A fresh kernel for this graph (for a run while another holds :attr:`kernel`)."""
        src = [j for deps in self._deps for j in deps]
        dst = [i for i, deps in enumerate(self._deps) for _ in deps]
        return sched.Kernel(len(self._names), src, dst)

    # -- names and ids -----------------------------------------------------

    @property
    def names(self) -> "tuple[_N, ...]":
        """Every node name, in definition order (a name's id is its index)."""
        return self._names

    @property
    def kernel(self) -> "Kernel":
        """The compiled scheduler kernel (ids are indexes into :attr:`names`)."""
        return self._kernel

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._index
        except TypeError:
            return False

    def __iter__(self) -> "Any":
        return iter(self._names)

    def id(self, name: "_N") -> int:
        """The kernel id of ``name``.

        Raises:
            KeyError: no node has that name (the message names it).
        """
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"no {self._kind} named {name!r}") from None

    def ids(self, names: "Iterable[_N]") -> list[int]:
        """The kernel ids of ``names``.

        Raises:
            FlowError: some names are unknown (every one is listed).
        """
        if isinstance(names, (str, bytes)):  # one name given alone
            names = (names,)  # type: ignore[assignment]
        out: list[int] = []
        unknown: list[str] = []
        for name in names:
            i = self._index.get(name)
            if i is None:
                guess = nearest(name, self._index) if isinstance(name, str) else None
                hint = f"; did you mean {self._kind} {guess!r}?" if guess is not None else ""
                unknown.append(f"no {self._kind} named {name!r}{hint}")
            else:
                out.append(i)
        if unknown:
            raise FlowError(*unknown)
        return out

    def dependencies(self, name: "_N") -> "tuple[_N, ...]":
        """The names ``name`` depends on, in the order given."""
        names = self._names
        return tuple(names[j] for j in self._deps[self.id(name)])

    def dependents(self, name: "_N") -> "tuple[_N, ...]":
        """The names that depend on ``name``, in definition order."""
        names = self._names
        return tuple(names[j] for j in sorted(self._kernel.successors(self.id(name))))

    # -- whole-graph queries -----------------------------------------------

    def order(self) -> "list[_N]":
        """Every name, each after all its dependencies (ties in definition order)."""
        names = self._names
        return [names[i] for i in self._kernel.topological_order()]

    def levels(self) -> "dict[_N, int]":
        """Per name, the number of nodes on the longest path from a source to it (sources: 1)."""
        return dict(zip(self._names, self._kernel.levels()))

    def ancestors(self, names: "Iterable[_N]") -> "list[_N]":
        """Every node that one of ``names`` depends on, directly or not, in
        definition order.  A given name is in the result only when another
        given name depends on it (as in graph theory and networkx).

        Raises:
            FlowError: some names are unknown.
        """
        deps = self._deps
        direct = [j for i in self.ids(names) for j in deps[i]]
        all_names = self._names
        return [all_names[i] for i in self._kernel.ancestors(direct)]

    def descendants(self, names: "Iterable[_N]") -> "list[_N]":
        """Every node that depends on one of ``names``, directly or not, in
        definition order (a given name only when it depends on another).

        Raises:
            FlowError: some names are unknown.
        """
        kernel = self._kernel
        direct = [j for i in self.ids(names) for j in kernel.successors(i)]
        all_names = self._names
        return [all_names[i] for i in kernel.descendants(direct)]

    def edges(self) -> "list[tuple[_N, _N]]":
        """Every ``(dependency, dependent)`` pair, dependents in definition order."""
        names = self._names
        return [(names[j], names[i]) for i, deps in enumerate(self._deps) for j in deps]

    # -- export ------------------------------------------------------------

    def to_dot(
        self,
        name: str = "microdag",
        node_attrs: "Mapping[_N, Mapping[str, str]] | None" = None,
    ) -> str:
        """The graph in Graphviz DOT, every name quoted and escaped.

        Args:
            name: the graph's name.
            node_attrs: optional extra attributes per node name
                (``{"a": {"color": "red"}}``), escaped the same way.
        """
        lines = [f"digraph {_dot_id(name)} {{", "  rankdir=TB;"]
        for node in self._names:
            attrs = {"label": str(node)}
            if node_attrs and node in node_attrs:
                attrs.update(node_attrs[node])
            body = ", ".join(f"{_dot_id(k)}={_dot_id(v)}" for k, v in attrs.items())
            lines.append(f"  {_dot_id(str(node))} [{body}];")
        for a, b in self.edges():
            lines.append(f"  {_dot_id(str(a))} -> {_dot_id(str(b))};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_mermaid(self, direction: str = "TD") -> str:
        """The graph as a Mermaid ``flowchart``; names become escaped labels.

        Node ids are ``n0, n1, ...`` (their kernel ids), so any name is safe.
        """
        if direction not in ("TD", "TB", "BT", "LR", "RL"):
            raise ValueError(f"unknown Mermaid direction {direction!r}")
        lines = [f"flowchart {direction}"]
        for i, node in enumerate(self._names):
            lines.append(f'  n{i}["{_mermaid_label(str(node))}"]')
        for i, deps in enumerate(self._deps):
            for j in deps:
                lines.append(f"  n{j} --> n{i}")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> "dict[str, Any]":
        """The graph as plain data: ``{"nodes": [{"name", "depends_on", "level"}, ...],
        "edges": [[dependency, dependent], ...]}``; names are converted with ``str``."""
        levels = self._kernel.levels()
        return {
            "nodes": [
                {"name": str(node), "depends_on": [str(self._names[j]) for j in deps], "level": lv}
                for node, deps, lv in zip(self._names, self._deps, levels)
            ],
            "edges": [[str(a), str(b)] for a, b in self.edges()],
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text (as :meth:`to_dot` and :meth:`to_mermaid`
        return their formats' text)."""
        import json  # (import time: json loads on first use)

        return json.dumps(self.to_dict(), ensure_ascii=False)

    def __repr__(self) -> str:
        return f"<Graph of {len(self._names)} {self._kind}s, {self._kernel.edges} edges>"


def _dot_id(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )
    return f'"{escaped}"'


_MERMAID_ENTITIES = {
    "#": "#35;",
    '"': "#quot;",
    "<": "#lt;",
    ">": "#gt;",
    "&": "#amp;",
    "`": "#96;",
    "\n": " ",
    "\r": " ",
}


def _mermaid_label(text: str) -> str:
    return "".join(_MERMAID_ENTITIES.get(ch, ch) for ch in text)


def new_kernel(graph: "Graph[Any]") -> "Kernel":
    """A fresh kernel for ``graph`` (for a run while another holds its :attr:`~Graph.kernel`)."""
    return graph._new_kernel()


def name_index(graph: "Graph[Any]") -> "dict[Any, int]":
    """``graph``'s name -> id table, as it is (not a copy: do not change it)."""
    return graph._index
