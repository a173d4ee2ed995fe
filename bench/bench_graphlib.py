"""The graphlib protocol loop: ``graphlib`` against microdag's two twins.

Timed, per implementation and graph (nodes are the ints of ``graphs.py``)::

    ts = TopologicalSorter(graph)
    ts.prepare()
    while ts.is_active():
        nodes = ts.get_ready()
        ts.done(*nodes)

- phase ``total``: the whole loop above, construction included (the figure
  the targets speak of);
- phase ``drive``: only the ``is_active``/``get_ready``/``done`` loop, on a
  sorter built and prepared, fresh for each round, by the (untimed) setup.

The sorter is returned from the timed function so that freeing it happens
outside the timing.  ``extra_info["ns_per_node"]`` is the median round over
the node count.  Every case also checks, untimed, that its ready batches form
a valid schedule of the graph, so the smoke run (benchmarks disabled, one
call each, 20_000 nodes) tests something.

Real run::

    PYTHONPATH=src python -m pytest bench --benchmark-enable \\
        --benchmark-columns=median,min,rounds -q -p no:cacheprovider
"""

from __future__ import annotations

import gc
import graphlib
import importlib
import os
from collections.abc import Callable
from typing import Any

import pytest

import graphs

IMPLS = ("graphlib", "c", "py")

#: Timed rounds per implementation (each round of graphlib or py at 200_000
#: nodes takes one to three seconds on a slow VM).
ROUNDS = {"graphlib": 7, "c": 25, "py": 5}

NO_EXTENSIONS = os.environ.get("MICRODAG_NO_EXTENSIONS", "").strip().lower() not in (
    "",
    "0",
    "false",
    "no",
)


def sorter_class(impl: str) -> Callable[..., Any]:
    """The ``TopologicalSorter`` class of ``impl`` ("graphlib", "c" or "py").

    The compiled twin is imported directly: a missing build fails the run,
    unless ``MICRODAG_NO_EXTENSIONS`` asks for the pure twin only (then the
    ``c`` cases are skipped).
    """
    if impl == "graphlib":
        return graphlib.TopologicalSorter
    if impl == "c":
        try:
            module = importlib.import_module("microdag._sched")
        except ImportError:
            if NO_EXTENSIONS:
                pytest.skip("microdag._sched is not built and MICRODAG_NO_EXTENSIONS is set")
            raise
    else:
        module = importlib.import_module("microdag._sched_py")
    return module.TopologicalSorter  # type: ignore[no-any-return]


def protocol(cls: Callable[..., Any], deps: dict[int, list[int]]) -> tuple[int, Any]:
    """The whole protocol; returns (nodes handed out, the sorter)."""
    ts = cls(deps)
    ts.prepare()
    handed = 0
    while ts.is_active():
        nodes = ts.get_ready()
        handed += len(nodes)
        ts.done(*nodes)
    return handed, ts


def drive(ts: Any) -> tuple[int, Any]:
    """The loop on a prepared sorter; returns (nodes handed out, the sorter)."""
    handed = 0
    while ts.is_active():
        nodes = ts.get_ready()
        handed += len(nodes)
        ts.done(*nodes)
    return handed, ts


def batches(cls: Callable[..., Any], deps: dict[int, list[int]]) -> list[tuple[int, ...]]:
    """The ready batches of one untimed run, for the correctness check."""
    ts = cls(deps)
    ts.prepare()
    out = []
    while ts.is_active():
        nodes = ts.get_ready()
        out.append(nodes)
        ts.done(*nodes)
    return out


def record(benchmark: Any, graph: graphs.BenchGraph, impl: str, phase: str) -> None:
    benchmark.extra_info.update(
        graph=graph.name, impl=impl, phase=phase, nodes=graph.n, edges=graph.edges
    )
    stats = benchmark.stats  # None when benchmarks are disabled
    if stats is not None:
        benchmark.extra_info["ns_per_node"] = round(stats.stats.median / graph.n * 1e9, 1)


CASES = [(kind, impl) for kind in graphs.KINDS for impl in IMPLS]  # graph by graph


@pytest.mark.parametrize(("kind", "impl"), CASES)
def test_protocol_total(benchmark: Any, kind: str, impl: str) -> None:
    cls = sorter_class(impl)
    graph = graphs.get(kind, graphs.bench_size(benchmark.disabled))
    graphs.check_groups(graph, batches(cls, graph.deps))
    benchmark.group = f"protocol total: {kind}"

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        gc.collect()
        return (cls, graph.deps), {}

    handed, _ = benchmark.pedantic(protocol, setup=setup, rounds=ROUNDS[impl], iterations=1)
    assert handed == graph.n
    record(benchmark, graph, impl, "total")


@pytest.mark.parametrize(("kind", "impl"), CASES)
def test_protocol_drive(benchmark: Any, kind: str, impl: str) -> None:
    cls = sorter_class(impl)
    graph = graphs.get(kind, graphs.bench_size(benchmark.disabled))
    benchmark.group = f"protocol drive: {kind}"

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        ts = cls(graph.deps)
        ts.prepare()
        gc.collect()
        return (ts,), {}

    handed, ts = benchmark.pedantic(drive, setup=setup, rounds=ROUNDS[impl], iterations=1)
    assert handed == graph.n
    assert not ts.is_active()
    record(benchmark, graph, impl, "drive")
