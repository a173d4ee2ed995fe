"""The graph layer: validation that reports every problem, cycles with their
path, subsets, levels and the DOT / Mermaid / JSON exports."""

import graphlib
import json
import pickle

import pytest

import microdag
from microdag import CycleError, FlowError, Graph


def test_valid_graph_orders_and_names() -> None:
    g = Graph({"load": [], "clean": ["load"], "stats": ["clean"], "plot": ["clean", "stats"]})
    assert g.names == ("load", "clean", "stats", "plot")
    assert g.order() == ["load", "clean", "stats", "plot"]
    assert g.levels() == {"load": 1, "clean": 2, "stats": 3, "plot": 4}
    assert g.dependencies("plot") == ("clean", "stats")
    assert g.dependents("clean") == ("stats", "plot")
    assert len(g) == 4 and "stats" in g and "nope" not in g and [] not in g
    assert g.edges() == [("load", "clean"), ("clean", "stats"), ("clean", "plot"), ("stats", "plot")]


def test_pairs_form_and_single_string_dependency() -> None:
    g = Graph([("a", ()), ("b", "a")])
    assert g.dependencies("b") == ("a",)


def test_every_missing_dependency_and_duplicate_in_one_error() -> None:
    with pytest.raises(FlowError) as info:
        Graph([("a", ["x"]), ("b", ["a", "y", "z"]), ("a", []), ("c", ["b"])], kind="step")
    problems = info.value.problems
    assert problems == [
        "step 'a' is defined more than once",
        "step 'a' depends on 'x', which is not defined",
        "step 'b' depends on 'y', which is not defined",
        "step 'b' depends on 'z', which is not defined",
    ]
    assert isinstance(info.value, ValueError)
    text = str(info.value)
    assert text.startswith("4 problems:") and all(p in text for p in problems)


def test_flow_error_pickles() -> None:
    err = FlowError("one", "two")
    back = pickle.loads(pickle.dumps(err))
    assert back.problems == ["one", "two"] and str(back) == str(err)


def test_cycle_error_carries_full_path() -> None:
    with pytest.raises(CycleError) as info:
        Graph({"a": ["c"], "b": ["a"], "c": ["b"], "d": ["a"]}, kind="step")
    err = info.value
    assert isinstance(err, graphlib.CycleError)
    cycle = err.cycle
    assert cycle[0] == cycle[-1] and sorted(cycle[:-1]) == ["a", "b", "c"]
    # each node is a dependency of the next one
    for dep, node in zip(cycle, cycle[1:]):
        assert dep in {"a": ["c"], "b": ["a"], "c": ["b"]}[node]
    assert str(err) == "steps are in a cycle: " + " -> ".join(repr(n) for n in cycle)
    assert err.args[1] == cycle
    assert pickle.loads(pickle.dumps(err)).cycle == cycle


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(CycleError) as info:
        Graph({"a": ["a"]})
    assert info.value.cycle == ["a", "a"]


def test_missing_dependency_reported_before_cycle() -> None:
    with pytest.raises(FlowError):
        Graph({"a": ["b"], "b": ["a", "ghost"]})


def test_duplicate_dependencies_collapse() -> None:
    g = Graph({"a": [], "b": ["a", "a"]})
    assert g.dependencies("b") == ("a",)
    assert g.kernel.edges == 1


def test_unhashable_name_raises_type_error() -> None:
    with pytest.raises(TypeError):
        Graph([([], [])])  # type: ignore[list-item]


def test_subsets() -> None:
    g = Graph({"a": [], "b": ["a"], "c": ["b"], "d": ["a"], "e": []})
    # ancestors and descendants as in graph theory: without the names given...
    assert g.ancestors(["c"]) == ["a", "b"]
    assert g.ancestors("d") == ["a"]
    assert g.ancestors(["e"]) == []
    assert g.descendants(["b"]) == ["c"]
    assert g.descendants(["a"]) == ["b", "c", "d"]
    # ...unless one of them is related to another
    assert g.ancestors(["c", "b"]) == ["a", "b"]
    assert g.descendants(["a", "b"]) == ["b", "c", "d"]
    with pytest.raises(FlowError, match="no node named 'zz'"):
        g.ancestors(["zz", "a"])
    with pytest.raises(KeyError, match="no node named 'q'"):
        g.id("q")


def test_million_node_chain_no_recursion_limit() -> None:
    n = 1_000_000
    deps = {i: ((i - 1,) if i else ()) for i in range(n)}
    g = Graph(deps)
    assert g.order()[:3] == [0, 1, 2]
    assert g.levels()[n - 1] == n
    assert len(g.ancestors([n - 1])) == n - 1


def test_million_node_cycle_is_found() -> None:
    n = 1_000_000
    deps = {i: (((i - 1) % n),) for i in range(n)}
    with pytest.raises(CycleError) as info:
        Graph(deps)
    assert len(info.value.cycle) == n + 1


def test_dot_export_escapes_names() -> None:
    g = Graph({'say "hi"': [], "back\\slash": ['say "hi"'], "new\nline": ["back\\slash"]})
    dot = g.to_dot(name="my flow", node_attrs={"new\nline": {"color": 'r"ed'}})
    assert dot.startswith('digraph "my flow" {')
    assert '"say \\"hi\\"" -> "back\\\\slash";' in dot
    assert '"new\\nline" ["label"="new\\nline", "color"="r\\"ed"];' in dot
    assert dot.rstrip().endswith("}")
    # every line is balanced: quotes come in unescaped pairs
    for line in dot.splitlines():
        assert line.replace('\\\\', "").replace('\\"', "").count('"') % 2 == 0


def test_mermaid_export_escapes_labels() -> None:
    g = Graph({"<script>": [], 'a "b" #c': ["<script>"], "x&y": ['a "b" #c']})
    text = g.to_mermaid()
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert '  n0["#lt;script#gt;"]' in lines
    assert '  n1["a #quot;b#quot; #35;c"]' in lines
    assert '  n2["x#amp;y"]' in lines
    assert "  n0 --> n1" in lines and "  n1 --> n2" in lines
    assert "<" not in text and "&" not in text.replace("#amp;", "")
    assert g.to_mermaid("LR").startswith("flowchart LR")
    with pytest.raises(ValueError, match="direction"):
        g.to_mermaid("sideways")


def test_json_export() -> None:
    g = Graph({"a": [], "b": ["a"]})
    data = {
        "nodes": [
            {"name": "a", "depends_on": [], "level": 1},
            {"name": "b", "depends_on": ["a"], "level": 2},
        ],
        "edges": [["a", "b"]],
    }
    assert g.to_dict() == data
    assert isinstance(g.to_json(), str) and json.loads(g.to_json()) == data  # text, as to_dot() and to_mermaid()


def test_graph_kernel_runs_in_dependency_order() -> None:
    g = Graph({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]})
    k = g.kernel
    k.reset()
    seen: list[str] = []
    while k.remaining:
        ids = k.take()
        seen.extend(str(g.names[i]) for i in ids)
        k.done_many(ids)
    assert seen[0] == "a" and seen[-1] == "d" and sorted(seen) == ["a", "b", "c", "d"]


def test_topological_sorter_is_exported() -> None:
    ts = microdag.TopologicalSorter({"b": {"a"}})
    assert list(ts.static_order()) == ["a", "b"]
