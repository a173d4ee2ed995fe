"""Hypothesis differential tests of the scheduler kernel.

- ``TopologicalSorter`` (each twin) against :mod:`graphlib` as the oracle, on
  random DAGs and random graphs with cycles (duplicate edges, self-loops,
  isolated nodes, nodes of mixed hashable types including hash collisions and
  equal-but-distinct numbers): identical ``get_ready()`` groups and order
  through the whole protocol with ``done()`` in random orders and partial
  batches, identical ``is_active()``, ``static_order()``, ``CycleError.args[1]``
  and identical exceptions for bad operations.  Invariants: a node is handed
  out at most once, only after all its predecessors are done, and every node
  of a DAG comes out.
- The two ``Kernel`` twins against each other, driven through the same random
  operations (take with random limits, done, done_many, fail, skip, cancel,
  reset with random subsets, policies, priorities and triggers, the graph
  queries): identical results, errors, counters and states after every step.
  Invariants: counters agree with the states, a node is taken at most once per
  run and only when its predecessors' outcomes allow it, ``"critical"`` takes
  the best ready nodes first, and runs on DAGs end with ``remaining == 0``.
"""

from __future__ import annotations

import graphlib
import importlib
import math
import os
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import microdag._sched_py as py_twin

NO_EXTENSIONS = os.environ.get("MICRODAG_NO_EXTENSIONS", "").strip().lower() not in (
    "",
    "0",
    "false",
    "no",
)

SETTINGS = settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- nodes ---------------------------------------------------------------------------

NAN = float("nan")
# Each entry is one node; the tuple lists objects that name it (equal, same
# hash).  ``-1`` and ``-2`` share a hash; so do ``5`` and ``2**61 + 4`` (hash
# modulo the Mersenne prime); ``2**64`` does not fit a machine integer.
NODE_NAMES: list[tuple[Any, ...]] = [
    (0, False, 0.0),
    (1, True, 1.0),
    (-1,),
    (-2, -2.0),
    (5,),
    (2**61 + 4,),
    (2**64,),
    ("a",),
    ("b",),
    ("",),
    (("t", 1), ("t", True)),
    (("t", 2),),
    (None,),
    (NAN,),
    (frozenset({1, 2}),),
    (b"a",),
    (3.5,),
]


def canon(value: Any) -> Any:
    """A comparable form of a node or of a result holding nodes.

    Numbers compare by value (``1``, ``1.0`` and ``True`` name the same
    node); every other node must also have the same type.  A NaN is
    compared by identity (there is only one in the pool).
    """
    if isinstance(value, list):
        return [canon(v) for v in value]
    if isinstance(value, tuple) and not (value and value[0] == "t"):
        return tuple(canon(v) for v in value)
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    if isinstance(value, (bool, int, float)):
        return ("number", value)
    return (type(value).__name__, value)


@st.composite
def sorter_graphs(draw: st.DrawFn, acyclic: bool) -> list[tuple[Any, ...]]:
    """``add()`` calls: (node, *predecessors), names drawn among the aliases.

    With ``acyclic``, a predecessor always comes later in a hidden order
    than its node, so the graph has no cycle; otherwise anything goes
    (self-loops included).
    """
    k = draw(st.integers(0, 10))
    nodes = draw(st.permutations(range(len(NODE_NAMES))))[:k]
    if not nodes:
        return []
    name = lambda i: draw(st.sampled_from(NODE_NAMES[i]))  # noqa: E731
    adds: list[tuple[Any, ...]] = []
    for _ in range(draw(st.integers(0, 14))):
        pos = draw(st.integers(0, len(nodes) - 1))
        if acyclic:
            choices = nodes[pos + 1 :]
        else:
            choices = nodes
        preds = draw(st.lists(st.sampled_from(choices), max_size=4)) if choices else []
        adds.append((name(nodes[pos]), *(name(p) for p in preds)))
    return adds


def build(module: ModuleType, adds: list[tuple[Any, ...]]) -> Any:
    ts = module.TopologicalSorter()
    for args in adds:
        ts.add(*args)
    return ts


def outcome(call: Any, *args: Any) -> tuple[Any, ...]:
    """``("ok", canonical result)`` or ``("raised", type, message)``."""
    try:
        return ("ok", canon(call(*args)))
    except graphlib.CycleError as exc:  # its str differs from graphlib's on purpose
        return ("cycle", exc.args[0], canon(exc.args[1]))
    except Exception as exc:  # noqa: BLE001 - the exception is the result
        return ("raised", type(exc).__name__, str(exc))


def predecessors_of(adds: list[tuple[Any, ...]]) -> dict[Any, set[Any]]:
    preds: dict[Any, set[Any]] = {}
    for node, *ps in adds:
        preds.setdefault(node, set()).update(ps)
        for p in ps:
            preds.setdefault(p, set())
    return preds


# -- TopologicalSorter against graphlib -----------------------------------------------------


def check_protocol(twin: ModuleType, adds: list[tuple[Any, ...]], data: st.DataObject) -> None:
    ours, oracle = build(twin, adds), build(graphlib, adds)
    preds = predecessors_of(adds)
    prepared = outcome(oracle.prepare)
    assert outcome(ours.prepare) == prepared
    handed: list[Any] = []  # handed out, not done
    done: set[Any] = set()
    seen: set[Any] = set()
    while True:
        assert outcome(ours.is_active) == outcome(oracle.is_active)
        assert bool(ours) == bool(oracle)
        group = oracle.get_ready()
        assert canon(ours.get_ready()) == canon(group)
        for node in group:
            assert node not in seen, f"{node!r} handed out twice"
            assert preds[node] <= done, f"{node!r} handed out before its predecessors"
            seen.add(node)
        handed += group
        if not oracle.is_active():
            break
        # Mark some handed-out nodes done, in a random order and in batches;
        # now and then throw in a bad call, identical for both.
        batch = (
            data.draw(st.lists(st.sampled_from(handed), unique=True, max_size=len(handed)))
            if handed
            else []
        )
        if not batch and not group:
            batch = handed[:1]
        bad = data.draw(st.sampled_from([None, "done", "unknown", "pending", "add", "prepare"]))
        if bad == "done" and done:
            batch.insert(
                data.draw(st.integers(0, len(batch))),
                data.draw(st.sampled_from(sorted(done, key=repr))),
            )
        elif bad == "unknown":
            batch.insert(data.draw(st.integers(0, len(batch))), "never added")
        elif bad == "pending":
            pending = [n for n in preds if n not in seen]
            if pending:
                batch.insert(
                    data.draw(st.integers(0, len(batch))), data.draw(st.sampled_from(pending))
                )
        elif bad == "add":
            assert outcome(ours.add, "x", "y") == outcome(oracle.add, "x", "y")
        elif bad == "prepare":
            assert outcome(ours.prepare) == outcome(oracle.prepare)
        cut = data.draw(st.integers(0, len(batch)))
        for part in (batch[:cut], batch[cut:]):
            result = outcome(oracle.done, *part)
            assert outcome(ours.done, *part) == result
            for node in part:
                if node in handed:
                    handed.remove(node)
                    done.add(node)
                elif result[0] == "raised":
                    break  # graphlib stopped at this node
    if prepared[0] == "ok":
        # A DAG: every node came out and was done.
        assert seen == done == set(preds)
    else:
        assert prepared[0] == "cycle"
        assert seen != set(preds)  # the nodes on the cycle never come out


@SETTINGS
@given(adds=sorter_graphs(acyclic=True), data=st.data())
def test_sorter_protocol_on_dags(
    twin: ModuleType, adds: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    check_protocol(twin, adds, data)


@SETTINGS
@given(adds=sorter_graphs(acyclic=False), data=st.data())
def test_sorter_protocol_on_any_graph(
    twin: ModuleType, adds: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    check_protocol(twin, adds, data)


@SETTINGS
@given(adds=sorter_graphs(acyclic=False))
def test_static_order_and_cycle(twin: ModuleType, adds: list[tuple[Any, ...]]) -> None:
    expected = outcome(lambda: list(build(graphlib, adds).static_order()))
    assert outcome(lambda: list(build(twin, adds).static_order())) == expected
    # The same graph given as a mapping.
    graph: dict[Any, list[Any]] = {}
    for node, *ps in adds:
        graph.setdefault(node, []).extend(ps)
    expected = outcome(lambda: list(graphlib.TopologicalSorter(graph).static_order()))
    assert outcome(lambda: list(twin.TopologicalSorter(graph).static_order())) == expected
    if expected[0] == "cycle":
        cycle = expected[2]
        assert cycle[0] == cycle[-1]


@SETTINGS
@given(adds=sorter_graphs(acyclic=True))
def test_static_order_of_a_dag_is_topological(
    twin: ModuleType, adds: list[tuple[Any, ...]]
) -> None:
    order = list(build(twin, adds).static_order())
    preds = predecessors_of(adds)
    assert len(order) == len(preds)
    position = {node: i for i, node in enumerate(order)}
    assert set(position) == set(preds)
    for node, ps in preds.items():
        assert all(position[p] < position[node] for p in ps)


# -- the two Kernel twins against each other -------------------------------------------


def c_twin() -> ModuleType:
    try:
        return importlib.import_module("microdag._sched")
    except ImportError:
        if NO_EXTENSIONS:
            pytest.skip("MICRODAG_NO_EXTENSIONS is set and microdag._sched is not built")
        raise


@st.composite
def kernel_graphs(draw: st.DrawFn) -> tuple[int, list[int], list[int], bool]:
    """(n, src, dst, acyclic): duplicates always possible, cycles and self-loops sometimes."""
    n = draw(st.integers(0, 14))
    acyclic = draw(st.booleans())
    src: list[int] = []
    dst: list[int] = []
    if n:
        order = draw(st.permutations(range(n)))
        for _ in range(draw(st.integers(0, 3 * n))):
            a, b = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
            if acyclic:
                if a == b:
                    continue
                a, b = sorted((a, b))
                a, b = order[a], order[b]
            src.append(a)
            dst.append(b)
    return n, src, dst, acyclic


FINISHED = (py_twin.SUCCEEDED, py_twin.FAILED, py_twin.SKIPPED, py_twin.CANCELLED)


def call(kernel: Any, name: str, *args: Any) -> tuple[Any, ...]:
    try:
        return ("ok", getattr(kernel, name)(*args))
    except Exception as exc:  # noqa: BLE001 - the exception is the result
        return ("raised", type(exc).__name__, str(exc), getattr(exc, "args", ())[1:])


def snapshot(kernel: Any) -> tuple[Any, ...]:
    return (kernel.ready, kernel.running, kernel.remaining, kernel.finished, kernel.states())


class Run:
    """What a run has done so far, to check the invariants on the pure twin."""

    def __init__(
        self, kernel: Any, policy: str, prio: list[int] | None, trig: list[int] | None
    ) -> None:
        self.k = kernel
        self.policy = policy
        self.taken: set[int] = set()
        cp = kernel.critical_path()
        self.key = [((prio[i] if prio else 0), cp[i], -i) for i in range(kernel.n)]
        self.trig = trig or [py_twin.ALL_SUCCESS] * kernel.n

    def check_counters(self) -> None:
        states = self.k.states()
        assert self.k.ready == states.count(py_twin.READY)
        assert self.k.running == states.count(py_twin.RUNNING)
        assert self.k.finished == sum(states.count(s) for s in FINISHED)
        assert self.k.remaining == sum(
            states.count(s) for s in (py_twin.PENDING, py_twin.READY, py_twin.RUNNING)
        )

    def check_taken(self, ids: list[int], ready_before: list[int]) -> None:
        states = self.k.states()
        for i in ids:
            assert i not in self.taken, f"node {i} taken twice in one run"
            self.taken.add(i)
            outcomes = {states[p] for p in self.k.predecessors(i) if states[p] != py_twin.EXCLUDED}
            rule = self.trig[i]
            if rule == py_twin.ALL_SUCCESS:
                assert outcomes <= {py_twin.SUCCEEDED}
            elif rule == py_twin.NONE_FAILED:
                assert outcomes <= {py_twin.SUCCEEDED, py_twin.SKIPPED}
            else:
                assert outcomes <= {py_twin.SUCCEEDED, py_twin.SKIPPED, py_twin.FAILED}
        assert set(ids) <= set(ready_before)
        if self.policy == "critical" and ids:
            keys = [self.key[i] for i in ids]
            assert keys == sorted(keys, reverse=True)
            left = [self.key[i] for i in ready_before if i not in ids]
            assert not left or max(left) < keys[-1]


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(graph=kernel_graphs(), data=st.data())
def test_kernel_twins_agree(
    graph: tuple[int, list[int], list[int], bool], data: st.DataObject
) -> None:
    c = c_twin()
    n, src, dst, acyclic = graph
    kc, kp = c.Kernel(n, src, dst), py_twin.Kernel(n, src, dst)
    # The graph queries.
    for name in ("n", "edges"):
        assert getattr(kc, name) == getattr(kp, name)
    for name in ("find_cycle", "topological_order", "levels", "critical_path"):
        assert call(kc, name) == call(kp, name)
    if acyclic:
        assert kp.find_cycle() is None
    for i in range(-1, n + 1):
        for name in ("successors", "predecessors", "state"):
            assert call(kc, name, i) == call(kp, name, i)
    ids = data.draw(st.lists(st.integers(-1, n), max_size=4))
    for name in ("ancestors", "descendants"):
        assert call(kc, name, ids) == call(kp, name, ids)
    assert snapshot(kc) == snapshot(kp)

    run: Run | None = None
    ops = ["take", "done", "done_many", "fail", "skip", "cancel", "reset"]
    for step in range(data.draw(st.integers(1, 40))):
        op = "reset" if step == 0 else data.draw(st.sampled_from(ops))
        node = st.integers(-1, n) if n else st.just(0)
        if op == "reset":
            prio = data.draw(
                st.none()
                | st.lists(
                    st.integers(-3, 3) | st.sampled_from([-(2**31), 2**31 - 1]),
                    min_size=n,
                    max_size=n,
                )
            )
            trig = data.draw(
                st.none() | st.lists(st.sampled_from([0, 1, 2]), min_size=n, max_size=n)
            )
            subset = data.draw(st.none() | st.lists(st.integers(0, n - 1) if n else st.nothing()))
            policy = data.draw(st.sampled_from(["critical", "fifo"]))
            for k in (kc, kp):
                k.set_priorities(prio)
                k.set_triggers(trig)
            result = call(kc, "reset", subset, policy)
            assert result == call(kp, "reset", subset, policy)
            run = Run(kp, policy, prio, trig)
        elif op == "take":
            limit = data.draw(st.integers(-2, n + 1))
            ready_before = [i for i in range(n) if kp.state(i) == py_twin.READY]
            result = call(kc, "take", limit)
            assert result == call(kp, "take", limit)
            assert run is not None
            if result[0] == "ok":
                run.check_taken(result[1], ready_before)
            elif result[0] == "raised":
                assert result[1] == "RuntimeError" and "stalled" in result[2]
                assert not acyclic
        elif op == "done_many":
            batch = data.draw(st.lists(node, max_size=4))
            assert call(kc, op, batch) == call(kp, op, batch)
        elif op == "cancel":
            assert call(kc, op) == call(kp, op)
        else:
            i = data.draw(node)
            assert call(kc, op, i) == call(kp, op, i)
        assert snapshot(kc) == snapshot(kp), f"after {op}"
        if run is not None:
            run.check_counters()

    # Finish the run: on a DAG it always ends, with nothing remaining.
    assert run is not None
    while True:
        running = [i for i in range(n) if kp.state(i) == py_twin.RUNNING]
        for i in data.draw(st.permutations(running)):
            op = data.draw(st.sampled_from(["done", "done", "done", "fail", "skip"]))
            assert call(kc, op, i) == call(kp, op, i)
            assert snapshot(kc) == snapshot(kp)
        run.check_counters()
        if not kp.remaining:
            break
        ready_before = [i for i in range(n) if kp.state(i) == py_twin.READY]
        result = call(kc, "take")
        assert result == call(kp, "take")
        if result[0] == "raised":
            assert not acyclic, "a DAG run stalled"
            break
        assert result[1], "take() returned nothing while nothing was running"
        run.check_taken(result[1], ready_before)
    if acyclic:
        assert kc.remaining == kp.remaining == 0
        assert kc.running == kp.running == 0
    assert snapshot(kc) == snapshot(kp)


@SETTINGS
@given(graph=kernel_graphs(), data=st.data())
def test_kernel_fifo_matches_graphlib(
    twin: ModuleType, graph: tuple[int, list[int], list[int], bool], data: st.DataObject
) -> None:
    n, src, dst, acyclic = graph
    kernel = twin.Kernel(n, src, dst)
    kernel.reset(policy="fifo")
    ts = graphlib.TopologicalSorter()
    for i in range(n):
        ts.add(i)
    for s, d in zip(src, dst):
        ts.add(d, s)
    try:
        ts.prepare()
    except graphlib.CycleError as exc:
        assert kernel.find_cycle() == exc.args[1]
    else:
        assert kernel.find_cycle() is None
    while ts.is_active():
        group = list(ts.get_ready())
        assert kernel.take() == group
        for i in data.draw(st.permutations(group)):
            ts.done(i)
            kernel.done(i)
    assert kernel.ready == kernel.running == 0
    # Only a cycle leaves nodes behind (those on it or after it).
    assert (kernel.remaining == 0) == (kernel.find_cycle() is None)
    if acyclic:
        assert kernel.remaining == 0 and kernel.finished == n
