"""The scheduler ``Kernel`` API, run on both twins through the ``twin`` fixture.

Covers construction errors, graph queries (successors, predecessors,
find_cycle, topological_order, levels, critical_path, ancestors,
descendants), the ready-set policies and user priorities, the run protocol
(take / done / done_many / fail / skip / cancel) with its return values,
errors and counters, the trigger rules, reset and subsets, the stall guard on
cyclic graphs, million-node chains without recursion, node states, and the
module doctest of the pure twin.
"""

from __future__ import annotations

import doctest
import graphlib
import re
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import pytest

import microdag
import microdag._sched_py
from support import child_env


# -- helpers ------------------------------------------------------------------


def make(twin: ModuleType, n: int, edges: Sequence[tuple[int, int]] = ()) -> Any:
    """A kernel of ``n`` nodes with the edges ``(src, dst)``."""
    return twin.Kernel(n, [s for s, _ in edges], [d for _, d in edges])


def drive(kernel, policy: str = "critical", subset=None) -> list[list[int]]:
    """Reset, then take every ready node and mark it done, until the run ends.

    Returns the groups as taken.
    """
    kernel.reset(subset=subset, policy=policy)
    groups = []
    while kernel.remaining:
        group = kernel.take()
        assert group, "a DAG run never stalls"
        groups.append(group)
        kernel.done_many(group)
    return groups


def graphlib_groups(n: int, edges: list[tuple[int, int]]) -> list[list[int]]:
    """graphlib's get_ready() groups for the same graph, nodes added in id order."""
    ts = graphlib.TopologicalSorter()
    for i in range(n):
        ts.add(i)
    for s, d in edges:
        ts.add(d, s)
    ts.prepare()
    groups = []
    while ts.is_active():
        group = ts.get_ready()
        groups.append(list(group))
        ts.done(*group)
    return groups


# A small DAG used by several tests:  0 isolated;  1 -> 2 -> 3;  4 -> 5.
# Longest path to a sink: 0:1, 1:3, 2:2, 3:1, 4:2, 5:1.
SMALL_N = 6
SMALL_EDGES = [(1, 2), (2, 3), (4, 5)]

# A fixed, irregular DAG (edges only go from lower to higher ids, in a
# scrambled order, with a duplicate edge).
MESSY_N = 12
MESSY_EDGES = [
    (3, 7),
    (0, 4),
    (1, 4),
    (0, 5),
    (4, 8),
    (2, 5),
    (5, 8),
    (5, 9),
    (6, 10),
    (7, 10),
    (8, 11),
    (9, 11),
    (10, 11),
    (0, 4),
    (2, 6),
    (1, 9),
]


# -- construction ---------------------------------------------------------------


def test_mismatched_edge_lists_are_rejected(twin: ModuleType) -> None:
    with pytest.raises(ValueError, match=r"src and dst differ in length \(2 != 1\)"):
        twin.Kernel(3, [0, 1], [2])


def test_negative_node_count_is_rejected(twin: ModuleType) -> None:
    with pytest.raises(ValueError, match="not -1"):
        twin.Kernel(-1)


def test_too_many_nodes_are_rejected(twin: ModuleType) -> None:
    with pytest.raises(ValueError, match="not 2147483648"):
        twin.Kernel(2**31)


@pytest.mark.parametrize(
    ("src", "dst", "bad"),
    [([0, 5], [1, 2], 5), ([0, 1], [1, 3], 3), ([-1], [0], -1), ([0], [-2], -2)],
)
def test_edge_ids_out_of_range_name_the_id(twin: ModuleType, src, dst, bad) -> None:
    with pytest.raises(IndexError, match=rf"node id {bad} out of range for a graph of 3 nodes"):
        twin.Kernel(3, src, dst)


def test_empty_kernel(twin: ModuleType) -> None:
    k = twin.Kernel(0)
    assert (k.n, k.edges) == (0, 0)
    assert k.find_cycle() is None
    assert k.topological_order() == []
    assert k.levels() == [] and k.critical_path() == []
    assert k.ancestors([]) == [] and k.descendants([]) == []
    k.reset()
    assert k.take() == []
    assert (k.ready, k.running, k.remaining, k.finished) == (0, 0, 0, 0)
    assert k.states() == b""
    assert k.cancel() == []


def test_node_and_edge_counts_include_duplicate_edges(twin: ModuleType) -> None:
    k = make(twin, 3, [(0, 1), (0, 1), (1, 2)])
    assert (k.n, k.edges) == (3, 3)


# -- graph queries --------------------------------------------------------------


def test_successors_and_predecessors_keep_edge_order(twin: ModuleType) -> None:
    k = make(twin, 5, [(0, 3), (2, 3), (0, 1), (1, 3), (0, 4), (0, 3)])
    assert k.successors(0) == [3, 1, 4, 3]
    assert k.successors(2) == [3]
    assert k.successors(3) == []
    # Predecessors come in edge order as seen walking the sources in id order.
    assert k.predecessors(3) == [0, 0, 1, 2]
    assert k.predecessors(1) == [0]
    assert k.predecessors(0) == []


def test_successors_and_predecessors_check_the_id(twin: ModuleType) -> None:
    k = make(twin, 2, [(0, 1)])
    with pytest.raises(IndexError, match="node id 2 out of range"):
        k.successors(2)
    with pytest.raises(IndexError, match="node id -1 out of range"):
        k.predecessors(-1)


def test_topological_order_is_kahn_with_ties_in_id_order(twin: ModuleType) -> None:
    k = make(twin, SMALL_N, SMALL_EDGES)
    assert k.topological_order() == [0, 1, 4, 2, 5, 3]
    order = make(twin, MESSY_N, MESSY_EDGES).topological_order()
    assert sorted(order) == list(range(MESSY_N))
    pos = {node: i for i, node in enumerate(order)}
    assert all(pos[s] < pos[d] for s, d in MESSY_EDGES)


def test_levels_and_critical_path(twin: ModuleType) -> None:
    k = make(twin, SMALL_N, SMALL_EDGES)
    assert k.levels() == [1, 1, 2, 3, 1, 2]
    assert k.critical_path() == [1, 3, 2, 1, 2, 1]
    # Longest, not shortest, paths: 0 -> 1 -> 2 -> 3 and 0 -> 3.
    k = make(twin, 4, [(0, 3), (0, 1), (1, 2), (2, 3)])
    assert k.levels() == [1, 2, 3, 4]
    assert k.critical_path() == [4, 3, 2, 1]


def test_ancestors_and_descendants(twin: ModuleType) -> None:
    k = make(twin, MESSY_N, MESSY_EDGES)
    assert k.ancestors([8]) == [0, 1, 2, 4, 5, 8]
    assert k.ancestors([8, 6]) == [0, 1, 2, 4, 5, 6, 8]
    assert k.descendants([5]) == [5, 8, 9, 11]
    assert k.descendants([3, 6]) == [3, 6, 7, 10, 11]
    assert k.ancestors([]) == []
    assert k.descendants(iter([11, 11])) == [11]
    with pytest.raises(IndexError, match=f"node id {MESSY_N} out of range"):
        k.ancestors([0, MESSY_N])
    with pytest.raises(IndexError, match="node id -3 out of range"):
        k.descendants([-3])


def test_find_cycle_matches_graphlib(twin: ModuleType) -> None:
    assert make(twin, MESSY_N, MESSY_EDGES).find_cycle() is None
    cases = [
        (1, [(0, 0)]),
        (3, [(0, 1), (1, 2), (2, 0)]),
        (5, [(0, 1), (1, 2), (2, 3), (3, 1), (3, 4)]),
        (6, [(0, 1), (1, 0), (2, 3), (3, 4), (4, 2), (5, 5)]),
    ]
    for n, edges in cases:
        ts = graphlib.TopologicalSorter()
        for i in range(n):
            ts.add(i)
        for s, d in edges:
            ts.add(d, s)
        with pytest.raises(graphlib.CycleError) as expected:
            ts.prepare()
        k = make(twin, n, edges)
        assert k.find_cycle() == expected.value.args[1]
        with pytest.raises(microdag.CycleError) as got:
            k.topological_order()
        assert got.value.args == ("nodes are in a cycle", expected.value.args[1])


def test_levels_and_critical_path_on_a_cyclic_graph(twin: ModuleType) -> None:
    # 0 -> 1 -> 2 -> 1 and 2 -> 3: only node 0 can ever be ordered.
    k = make(twin, 4, [(0, 1), (1, 2), (2, 1), (2, 3)])
    assert k.levels()[2:] == [0, 0]
    assert k.critical_path()[1:] == [0, 0, 0]
    assert k.find_cycle() == [1, 2, 1]


# -- policies and priorities -------------------------------------------------------


def test_fifo_gives_graphlib_order(twin: ModuleType) -> None:
    for n, edges in [(SMALL_N, SMALL_EDGES), (MESSY_N, MESSY_EDGES)]:
        assert drive(make(twin, n, edges), policy="fifo") == graphlib_groups(n, edges)


def test_fifo_follows_the_order_of_done_calls(twin: ModuleType) -> None:
    # 0 -> 2, 1 -> 3: whichever is done first releases its successor first.
    k = make(twin, 4, [(0, 2), (1, 3)])
    k.reset(policy="fifo")
    assert k.take() == [0, 1]
    k.done(1)
    k.done(0)
    assert k.take() == [3, 2]


def test_critical_takes_longest_path_first_then_lowest_id(twin: ModuleType) -> None:
    k = make(twin, SMALL_N, SMALL_EDGES)
    assert drive(k) == [[1, 4, 0], [2, 5], [3]]
    k.reset()
    assert k.take(1) == [1]
    assert k.take(1) == [4]
    k.done(1)
    k.done(4)
    # 2 (path 2) before 0 and 5 (path 1, lower id first).
    assert k.take() == [2, 0, 5]


def test_critical_ties_go_to_the_lowest_id(twin: ModuleType) -> None:
    k = twin.Kernel(5)
    k.reset()
    assert k.take(2) == [0, 1]
    assert k.take() == [2, 3, 4]
    k = make(twin, 6, [(5, 4), (3, 2), (1, 0)])
    k.reset()
    assert k.take() == [1, 3, 5]


def test_priorities_override_the_critical_path(twin: ModuleType) -> None:
    k = make(twin, SMALL_N, SMALL_EDGES)
    k.set_priorities([0, 0, 0, 0, 5, 0])
    assert drive(k) == [[4, 1, 0], [2, 5], [3]]
    k.set_priorities([0, -1, 0, 0, 0, 0])
    assert drive(k) == [[4, 0, 1], [2, 5], [3]]
    # Equal priorities fall back to the critical path, then the id.
    k.set_priorities([7] * SMALL_N)
    assert drive(k) == [[1, 4, 0], [2, 5], [3]]
    # Extreme 32-bit values are accepted and ordered.
    k.set_priorities([2**31 - 1, -(2**31), 0, 0, 0, 0])
    assert drive(k) == [[0, 4, 1], [2, 5], [3]]
    k.set_priorities(None)
    assert drive(k) == [[1, 4, 0], [2, 5], [3]]


def test_priority_of_a_node_that_becomes_ready_later(twin: ModuleType) -> None:
    k = make(twin, SMALL_N, SMALL_EDGES)
    k.set_priorities([0, 0, 0, 9, 0, 0])
    k.reset()
    # 1 leads to the high-priority 3, but its own rank is its own priority.
    assert k.take() == [1, 4, 0]
    k.done_many([1, 4, 0])
    assert k.take(1) == [2]
    k.done(2)
    assert k.take() == [3, 5]


def test_priorities_take_effect_at_the_next_reset(twin: ModuleType) -> None:
    k = make(twin, SMALL_N, SMALL_EDGES)
    k.set_priorities([5, 0, 0, 0, 0, 0])
    assert drive(k) == [[0, 1, 4], [2, 5], [3]]
    k.set_priorities(None)
    assert k.take() == []  # the previous run is over; nothing happens
    assert drive(k) == [[1, 4, 0], [2, 5], [3]]


def test_fifo_ignores_priorities(twin: ModuleType) -> None:
    k = make(twin, SMALL_N, SMALL_EDGES)
    k.set_priorities([0, 0, 0, 0, 100, 0])
    assert drive(k, policy="fifo") == [[0, 1, 4], [2, 5], [3]]
    assert drive(k, policy="critical") == [[4, 1, 0], [2, 5], [3]]


def test_bad_priorities_and_triggers_are_rejected(twin: ModuleType) -> None:
    k = twin.Kernel(3)
    with pytest.raises(ValueError, match="expected 3 priorities, got 2"):
        k.set_priorities([1, 2])
    with pytest.raises(
        ValueError, match="priority 2147483648 of node 1 is outside the 32-bit range"
    ):
        k.set_priorities([0, 2**31, 0])
    with pytest.raises(ValueError, match="priority -2147483649 of node 2"):
        k.set_priorities([0, 0, -(2**31) - 1])
    with pytest.raises(ValueError, match="expected 3 triggers, got 4"):
        k.set_triggers([0, 0, 0, 0])
    with pytest.raises(ValueError, match="unknown trigger rule 3 for node 2"):
        k.set_triggers([twin.ALL_SUCCESS, twin.ALL_DONE, 3])


def test_unknown_policy_is_rejected(twin: ModuleType) -> None:
    k = twin.Kernel(2)
    with pytest.raises(ValueError, match=r"unknown policy 'FIFO': expected 'critical' or 'fifo'"):
        k.reset(policy="FIFO")


@pytest.mark.parametrize("policy", [None, b"fifo", 0])
def test_a_policy_that_is_not_a_str_is_an_unknown_policy(twin: ModuleType, policy) -> None:
    # The pure twin (the specification) reports every unknown policy with the
    # same ValueError; the compiled twin must not differ by raising TypeError.
    k = twin.Kernel(2)
    with pytest.raises(ValueError, match=re.escape(f"unknown policy {policy!r}")):
        k.reset(policy=policy)


# -- the run protocol -------------------------------------------------------------------


def test_take_with_a_limit(twin: ModuleType) -> None:
    k = twin.Kernel(5)
    k.reset()
    assert k.take(0) == []
    assert k.take(2) == [0, 1]
    assert (k.ready, k.running) == (3, 2)
    assert k.take(10) == [2, 3, 4]
    assert k.take() == []  # nothing ready, but nodes are running: no error
    assert k.take(3) == []


def test_take_with_a_limit_under_fifo(twin: ModuleType) -> None:
    k = make(twin, SMALL_N, SMALL_EDGES)
    k.reset(policy="fifo")
    assert k.take(2) == [0, 1]
    k.done(1)
    assert k.take(1) == [4]
    assert k.take(-1) == [2]


def test_done_returns_how_many_nodes_became_ready(twin: ModuleType) -> None:
    # Diamond: 0 -> 1, 0 -> 2, 1 -> 3, 2 -> 3.
    k = make(twin, 4, [(0, 1), (0, 2), (1, 3), (2, 3)])
    k.reset()
    assert k.take() == [0]
    assert k.done(0) == 2
    assert k.take() == [1, 2]
    assert k.done(1) == 0
    assert k.done(2) == 1
    assert k.take() == [3]
    assert k.done(3) == 0


def test_done_many_returns_the_total(twin: ModuleType) -> None:
    k = make(twin, 4, [(0, 1), (0, 2), (1, 3), (2, 3)])
    k.reset()
    k.take()
    assert k.done_many([0]) == 2
    k.take()
    assert k.done_many(iter([2, 1])) == 1
    assert k.done_many([]) == 0


def test_done_many_stops_at_the_first_bad_node(twin: ModuleType) -> None:
    k = twin.Kernel(3)
    k.reset()
    assert k.take(2) == [0, 1]
    with pytest.raises(ValueError, match=r"node 2 was not passed out \(still not ready\)"):
        k.done_many([0, 2, 1])
    assert k.state(0) == twin.SUCCEEDED
    assert k.state(1) == twin.RUNNING
    assert (k.running, k.finished) == (1, 1)


def test_done_errors_name_the_node(twin: ModuleType) -> None:
    # 0 -> 1 -> 2, 3 -> 4, 5 excluded later.
    k = make(twin, 6, [(0, 1), (1, 2), (3, 4)])
    k.reset(subset=[0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"^node 0 was not passed out \(still not ready\)$"):
        k.done(0)  # ready, not taken
    with pytest.raises(ValueError, match=r"^node 2 was not passed out \(still not ready\)$"):
        k.done(2)  # pending
    with pytest.raises(ValueError, match="^node 5 is excluded, not running$"):
        k.done(5)
    assert k.take() == [0, 3]
    k.done(0)
    with pytest.raises(ValueError, match="^node 0 was already marked done$"):
        k.done(0)
    k.fail(3)
    with pytest.raises(ValueError, match="^node 3 is failed, not running$"):
        k.done(3)
    with pytest.raises(ValueError, match="^node 4 is skipped, not running$"):
        k.skip(4)
    assert k.cancel() == [1, 2]
    with pytest.raises(ValueError, match="^node 1 is cancelled, not running$"):
        k.fail(1)
    with pytest.raises(IndexError, match="node id 6 out of range for a graph of 6 nodes"):
        k.done(6)
    with pytest.raises(IndexError, match="node id -1 out of range"):
        k.done_many([-1])


def test_counters_through_a_run(twin: ModuleType) -> None:
    k = make(twin, 4, [(0, 1), (0, 2), (1, 3), (2, 3)])
    counters = lambda: (k.ready, k.running, k.remaining, k.finished)  # noqa: E731
    k.reset()
    assert counters() == (1, 0, 4, 0)
    k.take()
    assert counters() == (0, 1, 4, 0)
    k.done(0)
    assert counters() == (2, 0, 3, 1)
    k.take(1)
    assert counters() == (1, 1, 3, 1)
    k.done(1)
    assert counters() == (1, 0, 2, 2)
    k.take()
    k.done(2)
    assert counters() == (1, 0, 1, 3)
    k.take()
    k.done(3)
    assert counters() == (0, 0, 0, 4)


# -- trigger rules ----------------------------------------------------------------


def test_fail_skips_all_success_descendants(twin: ModuleType) -> None:
    # 0 -> 1 -> 2, 0 -> 3, 4 independent.
    k = make(twin, 5, [(0, 1), (1, 2), (0, 3)])
    k.reset()
    assert k.take() == [0, 4]
    assert k.fail(0) == [1, 3, 2]
    assert k.state(0) == twin.FAILED
    assert [k.state(i) for i in (1, 2, 3)] == [twin.SKIPPED] * 3
    assert (k.ready, k.running, k.remaining, k.finished) == (0, 1, 1, 4)
    assert k.done(4) == 0
    assert k.remaining == 0
    assert k.take() == []


def test_skip_cascades_like_fail_under_all_success(twin: ModuleType) -> None:
    k = make(twin, 4, [(0, 1), (1, 2), (0, 3)])
    k.reset()
    k.take()
    assert k.skip(0) == [1, 3, 2]
    assert k.states() == bytes([twin.SKIPPED] * 4)
    assert k.remaining == 0


def test_all_success_node_is_skipped_as_soon_as_one_predecessor_fails(twin: ModuleType) -> None:
    k = make(twin, 3, [(0, 2), (1, 2)])
    k.reset()
    assert k.take() == [0, 1]
    assert k.fail(0) == [2]
    assert k.done(1) == 0
    assert k.remaining == 0


def test_all_done_runs_after_a_failure(twin: ModuleType) -> None:
    k = make(twin, 4, [(0, 2), (1, 2), (2, 3)])
    k.set_triggers([twin.ALL_SUCCESS, twin.ALL_SUCCESS, twin.ALL_DONE, twin.ALL_SUCCESS])
    k.reset()
    assert k.take() == [0, 1]
    assert k.fail(0) == []
    assert k.state(2) == twin.PENDING  # still waits for 1
    assert k.done(1) == 1
    assert k.take() == [2]
    assert k.done(2) == 1
    assert k.take() == [3]
    k.done(3)
    assert k.remaining == 0


def test_all_done_runs_after_a_skip_and_after_a_cascade(twin: ModuleType) -> None:
    # 0 -> 1 -> 2: 1 is ALL_SUCCESS, so it is skipped; 2 is ALL_DONE and runs.
    k = make(twin, 3, [(0, 1), (1, 2)])
    k.set_triggers([twin.ALL_SUCCESS, twin.ALL_SUCCESS, twin.ALL_DONE])
    k.reset()
    k.take()
    assert k.fail(0) == [1]
    assert k.ready == 1
    assert k.take() == [2]
    k.set_triggers([twin.ALL_SUCCESS, twin.ALL_DONE, twin.ALL_SUCCESS])
    k.reset()
    k.take()
    assert k.skip(0) == []
    assert k.take() == [1]


def test_none_failed_runs_after_a_skipped_dependency(twin: ModuleType) -> None:
    k = make(twin, 3, [(0, 2), (1, 2)])
    k.set_triggers([twin.ALL_SUCCESS, twin.ALL_SUCCESS, twin.NONE_FAILED])
    k.reset()
    assert k.take() == [0, 1]
    assert k.skip(0) == []
    assert k.done(1) == 1
    assert k.take() == [2]


def test_none_failed_is_skipped_after_a_failed_dependency(twin: ModuleType) -> None:
    k = make(twin, 4, [(0, 2), (1, 2), (2, 3)])
    k.set_triggers([twin.ALL_SUCCESS, twin.ALL_SUCCESS, twin.NONE_FAILED, twin.ALL_DONE])
    k.reset()
    assert k.take() == [0, 1]
    # 2 is skipped; 3 (ALL_DONE) counts the skip as finished and becomes ready.
    assert k.fail(0) == [2]
    assert k.state(2) == twin.SKIPPED
    assert k.take() == [3]
    assert k.done(1) == 0
    k.done(3)
    assert k.remaining == 0


def test_none_failed_counts_a_cascaded_skip_as_a_skip(twin: ModuleType) -> None:
    # 0 fails, 1 (ALL_SUCCESS) is skipped because of it; 2 (NONE_FAILED) sees
    # only a skipped predecessor, so it runs.
    k = make(twin, 3, [(0, 1), (1, 2)])
    k.set_triggers([twin.ALL_SUCCESS, twin.ALL_SUCCESS, twin.NONE_FAILED])
    k.reset()
    k.take()
    assert k.fail(0) == [1]
    assert k.take() == [2]


def test_triggers_can_be_cleared(twin: ModuleType) -> None:
    k = make(twin, 3, [(0, 2), (1, 2)])
    k.set_triggers([twin.ALL_DONE] * 3)
    k.set_triggers(None)
    k.reset()
    k.take()
    assert k.fail(0) == [2]


# -- cancel, reset, subsets ------------------------------------------------------------


def test_cancel_leaves_running_nodes_running(twin: ModuleType) -> None:
    # 0 -> 1 -> 2, 3 isolated, 4 -> 5.
    k = make(twin, 6, [(0, 1), (1, 2), (4, 5)])
    k.reset()
    assert k.take(2) == [0, 4]
    assert k.cancel() == [1, 2, 3, 5]
    assert k.state(0) == k.state(4) == twin.RUNNING
    assert [k.state(i) for i in (1, 2, 3, 5)] == [twin.CANCELLED] * 4
    assert (k.ready, k.running, k.remaining, k.finished) == (0, 2, 2, 4)
    assert k.take() == []
    assert k.done(0) == 0  # its successor was cancelled
    assert k.fail(4) == []
    assert (k.ready, k.running, k.remaining, k.finished) == (0, 0, 0, 6)
    assert k.take() == []  # finished, not stalled
    assert k.cancel() == []


def test_cancel_under_fifo(twin: ModuleType) -> None:
    k = make(twin, 4, [(0, 1), (2, 3)])
    k.reset(policy="fifo")
    assert k.take(1) == [0]
    assert k.cancel() == [1, 2, 3]
    assert k.done(0) == 0
    assert k.remaining == 0


def test_reset_reuses_the_graph_for_many_runs(twin: ModuleType) -> None:
    k = make(twin, MESSY_N, MESSY_EDGES)
    first_critical = drive(k)
    first_fifo = drive(k, policy="fifo")
    assert first_fifo == graphlib_groups(MESSY_N, MESSY_EDGES)
    for _ in range(25):
        assert drive(k) == first_critical
        assert k.states() == bytes([twin.SUCCEEDED] * MESSY_N)
        assert drive(k, policy="fifo") == first_fifo
    # An interrupted run does not leak into the next one.
    k.reset()
    k.take(2)
    k.fail(k.take(1)[0])
    k.cancel()
    assert drive(k) == first_critical
    assert (k.ready, k.running, k.remaining, k.finished) == (0, 0, 0, MESSY_N)


def test_subset_of_ancestors_runs_only_what_targets_need(twin: ModuleType) -> None:
    k = make(twin, MESSY_N, MESSY_EDGES)
    subset = k.ancestors([8])
    assert subset == [0, 1, 2, 4, 5, 8]
    k.reset(subset=subset)
    assert k.remaining == len(subset)
    excluded = [i for i in range(MESSY_N) if i not in subset]
    assert all(k.state(i) == twin.EXCLUDED for i in excluded)
    taken = []
    while k.remaining:
        group = k.take()
        taken += group
        k.done_many(group)
    assert sorted(taken) == subset
    assert taken[-1] == 8
    assert k.finished == len(subset)
    assert all(k.state(i) == twin.EXCLUDED for i in excluded)


def test_subset_of_descendants_treats_outside_predecessors_as_done(twin: ModuleType) -> None:
    k = make(twin, MESSY_N, MESSY_EDGES)
    subset = k.descendants([5])
    assert subset == [5, 8, 9, 11]
    # 5 waits for 0 and 2, 8 for 4, 9 for 1, 11 for 10: all outside the subset.
    assert drive(k, subset=subset) == [[5], [8, 9], [11]]
    assert drive(k, subset=subset, policy="fifo") == [[5], [8, 9], [11]]
    assert drive(k, subset=iter([11, 11, 3])) == [[3, 11]]


def test_subset_errors(twin: ModuleType) -> None:
    k = twin.Kernel(3)
    with pytest.raises(IndexError, match="node id 3 out of range for a graph of 3 nodes"):
        k.reset(subset=[0, 3])
    k.reset(subset=[])
    assert (k.remaining, k.take()) == (0, [])
    assert k.states() == bytes([twin.EXCLUDED] * 3)


# -- stalls on cycles -------------------------------------------------------------------


def test_take_raises_on_a_cyclic_graph_instead_of_hanging(twin: ModuleType) -> None:
    k = make(twin, 2, [(0, 1), (1, 0)])
    k.reset()
    with pytest.raises(RuntimeError, match="stalled: 2 nodes remain"):
        k.take()


def test_take_raises_when_a_run_reaches_a_cycle(twin: ModuleType) -> None:
    # 0 -> 1 -> 2 -> 1: after 0, nothing more can ever run.
    k = make(twin, 3, [(0, 1), (1, 2), (2, 1)])
    for policy in ("critical", "fifo"):
        k.reset(policy=policy)
        assert k.take() == [0]
        assert k.take() == []  # 0 is running: not stalled yet
        assert k.done(0) == 0
        with pytest.raises(RuntimeError, match="stalled: 2 nodes remain but none is ready"):
            k.take(1)
    # The cycle can be left out with a subset.
    assert drive(k, subset=[0]) == [[0]]


def test_a_driver_loop_ends_on_a_cyclic_graph(twin: ModuleType) -> None:
    k = make(twin, 4, [(0, 1), (1, 2), (2, 3), (3, 1)])
    k.reset()
    done = []
    with pytest.raises(RuntimeError, match="stalled"):
        while k.remaining:
            for i in k.take():
                k.done(i)
                done.append(i)
    assert done == [0]


# -- scale -----------------------------------------------------------------------------


def test_million_node_chain_without_recursion(twin: ModuleType) -> None:
    n = 1_000_000 if twin.TWIN == "c" else 200_000
    k = twin.Kernel(n, range(n - 1), range(1, n))
    assert k.find_cycle() is None
    assert k.topological_order() == list(range(n))
    assert k.levels() == list(range(1, n + 1))
    assert k.critical_path() == list(range(n, 0, -1))
    assert k.ancestors([n - 1]) == list(range(n))
    assert k.descendants([n // 2]) == list(range(n // 2, n))


def test_million_node_cycle_without_recursion(twin: ModuleType) -> None:
    n = 1_000_000 if twin.TWIN == "c" else 200_000
    src = list(range(n))
    dst = list(range(1, n)) + [0]
    k = twin.Kernel(n, src, dst)
    assert k.find_cycle() == src + [0]
    with pytest.raises(microdag.CycleError):
        k.topological_order()


# -- states ------------------------------------------------------------------------------


def test_state_constants(twin: ModuleType) -> None:
    names = (
        "PENDING",
        "READY",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "SKIPPED",
        "CANCELLED",
        "EXCLUDED",
    )
    assert [getattr(twin, name) for name in names] == list(range(8))
    assert twin.STATE_NAMES == tuple(name.lower() for name in names)
    assert (twin.ALL_SUCCESS, twin.ALL_DONE, twin.NONE_FAILED) == (0, 1, 2)
    assert twin.TWIN in ("c", "py")


def test_states_through_a_run(twin: ModuleType) -> None:
    k = make(twin, 4, [(0, 1), (1, 2)])
    assert k.states() == bytes([twin.EXCLUDED] * 4)  # no run yet
    k.reset(subset=[0, 1, 2])
    assert isinstance(k.states(), bytes)
    assert k.states() == bytes([twin.READY, twin.PENDING, twin.PENDING, twin.EXCLUDED])
    k.take()
    assert k.state(0) == twin.RUNNING
    k.done(0)
    assert k.states() == bytes([twin.SUCCEEDED, twin.READY, twin.PENDING, twin.EXCLUDED])
    k.take()
    k.fail(1)
    assert k.states() == bytes([twin.SUCCEEDED, twin.FAILED, twin.SKIPPED, twin.EXCLUDED])
    assert [k.state(i) for i in range(4)] == list(k.states())
    with pytest.raises(IndexError, match="node id 4 out of range for a graph of 4 nodes"):
        k.state(4)
    with pytest.raises(IndexError, match="node id -1 out of range"):
        k.state(-1)


# -- changing the configuration during a run -----------------------------------------


def _run_isolated(twin: ModuleType, body: str) -> subprocess.CompletedProcess[str]:
    """Run ``body`` in a fresh interpreter, the twin module imported as ``twin``.

    Used where a bug could crash the interpreter (a segfault would end the
    whole test session).
    """
    code = f"import microdag.{twin.__name__.rsplit('.', 1)[1]} as twin\n" + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=60
    )


def test_set_priorities_during_a_run_waits_for_the_next_reset(twin: ModuleType) -> None:
    # Documented: priorities take effect at the next reset.  The current run
    # must go on with the ranks it started with.
    result = _run_isolated(
        twin,
        """
        k = twin.Kernel(4, [0, 0], [1, 2])   # 0 -> 1, 0 -> 2, 3 isolated
        k.reset()
        assert k.take(1) == [0]
        k.set_priorities([0, 0, 5, 0])
        print(k.done(0), k.take())
        k.reset()
        k.take(1)
        k.done(0)
        print(k.take())
        """,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "2 [1, 2, 3]\n[2, 1, 3]\n", "")


def test_rejected_priorities_during_a_run_change_nothing(twin: ModuleType) -> None:
    result = _run_isolated(
        twin,
        """
        k = twin.Kernel(3, [0], [1])
        k.reset()
        assert k.take(1) == [0]
        try:
            k.set_priorities([1])
        except ValueError as exc:
            print(exc)
        print(k.done(0), k.take())
        """,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "expected 3 priorities, got 1\n1 [1, 2]\n",
        "",
    )


# -- the documentation ------------------------------------------------------------------


def test_doctest_of_the_pure_twin() -> None:
    result = doctest.testmod(microdag._sched_py, verbose=False, report=False)
    assert result.attempted > 0
    assert result.failed == 0


def _drive_chain(twin: ModuleType, on_done: Any, outputs: list[Any]) -> Any:
    """Drive the chain 0 -> 1 -> 2 (each step adds one to its dependency's output)."""
    k = make(twin, 3, [(0, 1), (1, 2)])
    k.reset()
    fns = [lambda: 1, lambda x: x + 1, lambda x: x + 1]
    r = twin.drive(k, fns, [(), ("x",), ("x",)], [(), (0,), (1,)], [()] * 3, outputs, [0] * 3,
                   [0.0] * 3, [0.0] * 3, lambda: 0.0, bytes(3), None, None, None, None, on_done)
    assert r is None
    return k


def test_drive_calls_on_done_after_each_success_before_releasing(twin: ModuleType) -> None:
    outputs: list[Any] = [None] * 3
    seen: list[tuple[int, list[Any]]] = []

    def on_done(i: int) -> bool:
        seen.append((i, list(outputs)))
        return True

    k = _drive_chain(twin, on_done, outputs)
    # each output is there when on_done sees it, and its dependency's is not yet dropped
    assert seen == [(0, [1, None, None]), (1, [1, 2, None]), (2, [None, 2, 3])]
    assert k.remaining == 0


def test_drive_leaves_a_step_on_done_refused_to_the_caller(twin: ModuleType) -> None:
    outputs: list[Any] = [None] * 3
    k = _drive_chain(twin, lambda i: i != 1, outputs)
    assert k.state(0) == twin.SUCCEEDED
    assert k.state(1) == twin.RUNNING  # on_done settles it (here: not at all)
    assert k.state(2) == twin.PENDING
    assert outputs == [1, 2, None]


def test_both_twins_offer_the_same_names(twin: ModuleType) -> None:
    """What one twin exports, the other does (the pure one is the specification)."""
    assert sorted(twin.__all__) == sorted(microdag._sched_py.__all__)
    for name in twin.__all__:
        assert callable(getattr(twin, name)) or name == "TWIN", name


def test_drive_takes_nothing_when_another_thread_took_the_last_ready_step(twin: ModuleType) -> None:
    """The cancel check runs Python code, where another thread may take the
    last ready step: the loop then finds none ready and returns."""
    k = make(twin, 2, [(0, 1)])
    k.reset()
    taken: list[int] = []

    class TakeWhileChecked:
        def is_set(self) -> bool:
            taken.extend(k.take())  # what another worker does meanwhile
            return False

    r = twin.drive(k, [lambda: 1, lambda x: x], [(), ("x",)], [(), (0,)], [()] * 2, [None] * 2, [0] * 2,
                   [0.0] * 2, [0.0] * 2, lambda: 0.0, bytes(2), None, None, None, TakeWhileChecked())
    assert r is None
    assert taken == [0]
    assert (k.state(0), k.state(1), k.ready, k.running) == (twin.RUNNING, twin.PENDING, 0, 1)


def test_drive_passes_values_by_position_before_the_keyword_names(twin: ModuleType) -> None:
    """Values beyond ``kwnames[i]`` go by position, in order (dependencies
    first, then constants); more names than values is refused."""
    k = make(twin, 3, [(0, 2), (1, 2)])
    k.reset()
    calls: list[tuple[Any, ...]] = []

    def record(*args: Any, **kwargs: Any) -> str:
        calls.append((args, kwargs))
        return "out"

    outputs: list[Any] = [None] * 3
    r = twin.drive(k, [lambda: 1, lambda: 2, record], [(), (), ("c",)], [(), (), (1, 0)], [(), (), ("b", "c")],
                   outputs, [0] * 3, [0.0] * 3, [0.0] * 3, lambda: 0.0, bytes(3))
    assert r is None
    assert calls == [((2, 1, "b"), {"c": "c"})]
    assert outputs[2] == "out"
    k.reset()
    with pytest.raises(ValueError, match="step 0: 1 names for 0 values"):
        twin.drive(k, [lambda: 1] * 3, [("x",), (), ()], [()] * 3, [()] * 3, [None] * 3, [0] * 3,
                   [0.0] * 3, [0.0] * 3, lambda: 0.0, bytes(3))
