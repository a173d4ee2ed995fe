"""``TopologicalSorter`` as a drop-in for :mod:`graphlib`, on both twins.

Covers: CPython's own ``test/test_graphlib.py`` (read from the local install
at run time, never copied) run against each twin, including its subprocess
test; bad input giving the same exception type and message as graphlib; the
``CycleError`` contract (subclass of graphlib's, ``args[1]``, ``.cycle``,
readable ``str``, pickling); node objects handed out exactly as graphlib hands
them out; non-dict mappings; and ``TopologicalSorter[int]`` generic aliases.
"""

from __future__ import annotations

import graphlib
import io
import os
import pickle
import sysconfig
import types
import unittest
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import microdag
from microdag import _compat

SRC = str(Path(microdag.__file__).resolve().parent.parent)
CPYTHON_TEST = Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_graphlib.py"


# -- (a) CPython's own graphlib test suite ---------------------------------------------


def test_cpython_graphlib_suite(twin: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    if not CPYTHON_TEST.is_file():
        pytest.skip(f"CPython's test_graphlib.py is not installed ({CPYTHON_TEST} is missing)")
    try:
        import test.support.script_helper  # noqa: F401
    except ImportError:
        pytest.skip("CPython's test.support package is not installed")
    source = CPYTHON_TEST.read_text(encoding="utf-8")
    # Every "import graphlib" becomes the twin, in this process (the module
    # header) and in the code string of the hash-seed test's subprocess.
    # The import stays on one line so that the subprocess code keeps its
    # indentation; the assert proves the subprocess ran this twin.
    module = twin.__name__
    replacement = f"import {module} as graphlib; assert graphlib.TWIN == {twin.TWIN!r}"
    assert source.count("import graphlib") >= 2, "the test file changed shape"
    source = source.replace("import graphlib", replacement)
    # The subprocess inherits os.environ: make microdag importable there.
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
    )

    namespace: dict[str, Any] = {"__name__": f"cpython_test_graphlib_{twin.TWIN}"}
    exec(compile(source, str(CPYTHON_TEST), "exec"), namespace)
    assert namespace["graphlib"] is twin
    assert namespace["graphlib"].CycleError is microdag.CycleError

    suite = unittest.TestSuite()
    for value in namespace.values():
        if isinstance(value, type) and issubclass(value, unittest.TestCase):
            suite.addTests(unittest.defaultTestLoader.loadTestsFromTestCase(value))
    names = {test.id().rsplit(".", 1)[1] for test in suite}
    assert "test_static_order_does_not_change_with_the_hash_seed" in names
    stream = io.StringIO()
    result = unittest.TextTestRunner(stream=stream, verbosity=2).run(suite)
    assert result.testsRun > 0
    assert not result.skipped, stream.getvalue()
    assert result.wasSuccessful(), stream.getvalue()


# -- (b) bad input: same exception type and message as graphlib --------------------------


def _outcome(module: ModuleType, scenario: Callable[[Any], Any]) -> tuple[Any, ...]:
    """Run ``scenario`` with the module's sorter class; the result or the error."""
    try:
        return ("ok", scenario(module.TopologicalSorter))
    except Exception as exc:  # noqa: BLE001 - the exception is the result
        return ("raised", type(exc).__name__, str(exc))


def _prepared(cls: Any, *adds: tuple[Any, ...]) -> Any:
    ts = cls()
    for args in adds:
        ts.add(*args)
    ts.prepare()
    return ts


def _then(ts: Any, action: Callable[[Any], Any]) -> Any:
    action(ts)
    return ts


def _done_twice(cls: Any) -> None:
    ts = _prepared(cls, (1, 2))
    ts.get_ready()
    ts.done(2)
    ts.done(2)


def _done_partially(cls: Any) -> None:
    ts = _prepared(cls, ("a",), ("b",), ("c", "a", "b"))
    ts.get_ready()
    try:
        ts.done("a", "c", "b")  # "a" is marked before "c" fails
    finally:
        # What is visible afterwards must match too.
        ts.done("b")
        assert ts.get_ready() == ("c",)
        assert ts.is_active()


def _done_in_cycle(cls: Any) -> None:
    ts = cls({1: [2], 2: [1], 3: []})
    try:
        ts.prepare()
    except graphlib.CycleError:
        pass
    assert ts.get_ready() == (3,)
    ts.done(3)
    assert ts.get_ready() == ()
    assert not ts.is_active()
    ts.done(1)


def _prepare_after_cycle(cls: Any) -> None:
    ts = cls({1: [1]})
    try:
        ts.prepare()
    except graphlib.CycleError:
        pass
    ts.prepare()


BAD_INPUT: dict[str, Callable[[Any], Any]] = {
    "unhashable node": lambda cls: cls().add({}, 1),
    "unhashable predecessor": lambda cls: cls().add(1, [2]),
    "unhashable node and predecessor": lambda cls: cls().add(set(), set()),
    "unhashable predecessor in the graph": lambda cls: cls({1: [2, {}]}),
    "add after prepare": lambda cls: _prepared(cls, (1, 2)).add(3),
    "add after prepare, no args": lambda cls: _prepared(cls).add(1),
    "prepare twice": lambda cls: _prepared(cls, (1,)).prepare(),
    "prepare after a cycle error": _prepare_after_cycle,
    "get_ready before prepare": lambda cls: cls({1: [2]}).get_ready(),
    "done before prepare": lambda cls: cls({1: [2]}).done(2),
    "done of nothing before prepare": lambda cls: cls().done(),
    "is_active before prepare": lambda cls: cls().is_active(),
    "bool before prepare": lambda cls: bool(cls({1: []})),
    "done of an unknown node": lambda cls: _prepared(cls, (1, 2)).done(24),
    "done of an unknown str node": lambda cls: _prepared(cls, ("x", "y")).done("z"),
    "done on an empty graph": lambda cls: _prepared(cls).done(None),
    "done of an unhashable node": lambda cls: _prepared(cls, (1,)).done({}),
    "done of a node not handed out": lambda cls: _prepared(cls, (1, 2, 3, 4), (2, 3, 4)).done(2),
    "done of a ready node not handed out": lambda cls: _prepared(cls, (1, 2)).done(2),
    "done of a tuple node not handed out": lambda cls: _then(
        _prepared(cls, (("t", 1), ("t", 0))), lambda ts: ts.get_ready()
    ).done(("t", 1)),
    "done of a node already done": _done_twice,
    "done of a node already done in one call": lambda cls: _then(
        _prepared(cls, (1,)), lambda ts: ts.get_ready()
    ).done(1, 1),
    "done stops at the first bad node": _done_partially,
    "done of a node in a cycle": _done_in_cycle,
    "static_order twice": lambda cls: _then(cls({1: [2]}), lambda ts: list(ts.static_order()))
    .static_order()
    .__next__(),
}


@pytest.mark.parametrize("scenario", list(BAD_INPUT.values()), ids=list(BAD_INPUT))
def test_bad_input_raises_what_graphlib_raises(
    twin: ModuleType, scenario: Callable[[Any], Any]
) -> None:
    expected = _outcome(graphlib, scenario)
    assert expected[0] == "raised", "the scenario must be an error in graphlib too"
    assert _outcome(twin, scenario) == expected


def test_the_active_sorter_is_a_twin_sorter() -> None:
    assert microdag.TopologicalSorter is _compat.sched.TopologicalSorter
    assert microdag.SCHEDULER == _compat.sched.TWIN


# -- (c) CycleError ---------------------------------------------------------------------


CYCLIC_GRAPHS: list[dict[Any, list[Any]]] = [
    {1: [1]},
    {1: [2], 2: [1]},
    {1: [2], 2: [3], 3: [1], 5: [4], 4: [6]},
    {"a": ["b"], "b": ["c"], "c": ["b", "d"], "d": []},
    {("x", 1): [("x", 2)], ("x", 2): [("x", 1)], None: [("x", 1)]},
    {0: [1, 2], 1: [2], 2: [3], 3: [1, 0]},
]


def _cycle_error(module: ModuleType, graph: Mapping[Any, list[Any]]) -> graphlib.CycleError:
    ts = module.TopologicalSorter(graph)
    with pytest.raises(graphlib.CycleError) as info:
        ts.prepare()
    return info.value


@pytest.mark.parametrize("graph", CYCLIC_GRAPHS, ids=repr)
def test_cycle_error_matches_graphlib(twin: ModuleType, graph: dict[Any, list[Any]]) -> None:
    expected = _cycle_error(graphlib, graph)
    error = _cycle_error(twin, graph)
    assert type(error) is microdag.CycleError
    assert isinstance(error, ValueError)
    assert error.args == expected.args
    assert error.args[1] == expected.args[1]
    assert error.cycle == expected.args[1]
    assert error.cycle[0] == error.cycle[-1]
    # The static_order route raises the same error.
    with pytest.raises(microdag.CycleError) as info:
        list(twin.TopologicalSorter(graph).static_order())
    assert info.value.args == expected.args


def test_cycle_error_is_a_graphlib_cycle_error() -> None:
    assert issubclass(microdag.CycleError, graphlib.CycleError)
    assert issubclass(microdag.CycleError, ValueError)
    try:
        microdag.TopologicalSorter({1: [2], 2: [1]}).prepare()
    except graphlib.CycleError as exc:  # the graphlib spelling still catches it
        assert exc.cycle == [1, 2, 1]
    else:
        pytest.fail("no CycleError")


def test_cycle_error_str_is_readable(twin: ModuleType) -> None:
    assert str(_cycle_error(twin, {2: [1], 1: [2]})) == "nodes are in a cycle: 2 -> 1 -> 2"
    assert str(_cycle_error(twin, {"a": ["a"]})) == "nodes are in a cycle: 'a' -> 'a'"
    assert str(microdag.CycleError("nodes are in a cycle", [1, 2, 1])) == (
        "nodes are in a cycle: 1 -> 2 -> 1"
    )
    # Without a cycle it behaves like any exception.
    bare = microdag.CycleError("no path")
    assert str(bare) == "no path"
    assert bare.cycle == []


def test_kernel_cycle_error_holds_ids(twin: ModuleType) -> None:
    with pytest.raises(microdag.CycleError) as info:
        twin.Kernel(3, [0, 1, 2], [1, 2, 1]).topological_order()
    assert info.value.args == ("nodes are in a cycle", [1, 2, 1])
    assert str(info.value) == "nodes are in a cycle: 1 -> 2 -> 1"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_cycle_error_pickles(twin: ModuleType, protocol: int) -> None:
    error = _cycle_error(twin, {"a": ["b"], "b": [("c", 1)], ("c", 1): ["a"]})
    clone = pickle.loads(pickle.dumps(error, protocol=protocol))
    assert type(clone) is microdag.CycleError
    assert clone.args == error.args
    assert clone.cycle == error.cycle
    assert str(clone) == str(error) == "nodes are in a cycle: 'a' -> ('c', 1) -> 'b' -> 'a'"


# -- node objects, mappings, iterables -----------------------------------------------------


def _protocol(module: ModuleType, adds: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Every get_ready() group (done in the order given), or the CycleError's cycle."""
    ts = module.TopologicalSorter()
    for args in adds:
        ts.add(*args)
    try:
        ts.prepare()
    except graphlib.CycleError as exc:
        return [("cycle", *exc.args[1])]
    groups = []
    while ts.is_active():
        group = ts.get_ready()
        groups.append(group)
        ts.done(*group)
    return groups


def _typed(value: Any) -> Any:
    """``value`` with the type of every node made visible (1 == 1.0 == True)."""
    if isinstance(value, (list, tuple)):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


@pytest.mark.parametrize(
    "adds",
    [
        [(1,), (1.0, "a")],  # 1.0 is node 1, named 1.0 in the edge from "a"
        [(0, "a"), ("b", False), ("a",)],  # False is node 0, "b" waits for it
        [(1,), ("a", 1), (1.0, "a")],  # a cycle closed through 1.0
        [("a",), (True, "a"), (1.0, "a")],
    ],
    ids=["successor", "predecessor", "cycle", "twice"],
)
def test_equal_nodes_are_handed_out_as_graphlib_hands_them_out(
    twin: ModuleType, adds: list[tuple[Any, ...]]
) -> None:
    # graphlib keys nodes by equality but hands out a node that becomes ready
    # after done() as the object given when its edge was added (and reports a
    # cycle with the objects met along its edges).  A drop-in must hand out
    # the very same objects, not merely equal ones.
    assert _typed(_protocol(twin, adds)) == _typed(_protocol(graphlib, adds))


class _Key:
    """A node type whose instances all share one hash."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __hash__(self) -> int:
        return 42

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and other.name == self.name

    def __repr__(self) -> str:
        return f"_Key({self.name!r})"


@pytest.mark.parametrize(
    "graph",
    [
        {-1: [-2]},  # hash(-1) == hash(-2) == -2
        {5: [], 2**61 + 4: []},  # equal hashes modulo 2**61 - 1
        {2**64: [2**64 + 2**61 - 1]},  # beyond a machine integer, equal hashes
        {_Key("a"): [_Key("b")], _Key("b"): [], _Key("c"): [_Key("a")]},
    ],
    ids=["-1,-2", "5,2**61+4", "2**64", "same-hash-objects"],
)
def test_distinct_nodes_with_equal_hashes_stay_distinct(twin: ModuleType, graph: dict) -> None:
    nodes = set(graph) | {p for ps in graph.values() for p in ps}
    expected = list(graphlib.TopologicalSorter(graph).static_order())
    assert len(expected) == len(nodes)
    assert list(twin.TopologicalSorter(graph).static_order()) == expected
    adds = [(node, *preds) for node, preds in graph.items()]
    assert _protocol(twin, adds) == _protocol(graphlib, adds)
    # Each node is known by itself: done() of one does not touch the other.
    ts = twin.TopologicalSorter(graph)
    ts.prepare()
    ready = ts.get_ready()
    ts.done(*ready)
    for node in ready:
        with pytest.raises(ValueError, match="was already marked done"):
            ts.done(node)


class _Graph(Mapping[Any, Any]):
    """A read-only mapping that is not a dict."""

    def __init__(self, data: dict[Any, Any]) -> None:
        self._data = data

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_any_mapping_and_any_iterable_of_predecessors(twin: ModuleType) -> None:
    data = {"d": ("b", "c"), "b": ["a"], "c": iter(["a"]), "e": {"d"}}
    expected = list(graphlib.TopologicalSorter(dict(data, c=["a"])).static_order())
    assert (
        list(twin.TopologicalSorter(_Graph(dict(data, c=iter(["a"])))).static_order()) == expected
    )
    assert list(twin.TopologicalSorter(types.MappingProxyType(data)).static_order()) == expected
    assert expected == ["a", "b", "c", "d", "e"]


def test_is_active_and_bool_follow_graphlib(twin: ModuleType) -> None:
    ts = twin.TopologicalSorter({2: [1]})
    ts.prepare()
    seen = [(ts.is_active(), bool(ts))]
    for _ in range(2):
        group = ts.get_ready()
        seen.append((ts.is_active(), bool(ts)))
        ts.done(*group)
        seen.append((ts.is_active(), bool(ts)))
    assert seen == [(True, True), (True, True), (True, True), (True, True), (False, False)]


# -- (d) generic alias -------------------------------------------------------------------


def test_generic_alias(twin: ModuleType) -> None:
    alias = twin.TopologicalSorter[int]
    assert isinstance(alias, types.GenericAlias)
    assert alias.__origin__ is twin.TopologicalSorter
    assert alias.__args__ == (int,)
    assert repr(alias) == f"{twin.__name__}.TopologicalSorter[int]"
    ts = alias({2: [1]})
    assert type(ts) is twin.TopologicalSorter
    assert list(ts.static_order()) == [1, 2]
    assert microdag.TopologicalSorter[str].__origin__ is microdag.TopologicalSorter
    assert twin.TopologicalSorter[tuple[int, str]].__args__ == (tuple[int, str],)
