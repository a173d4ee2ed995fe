"""The scheduler kernel alone, on integer ids, for both twins.

- ``test_kernel_run``: on a kernel built once (untimed), one timed round is::

      k.reset(policy=policy)
      while k.remaining:
          k.done_many(k.take())

  for the ``"fifo"`` and ``"critical"`` policies.  An untimed first run
  checks the schedule and warms the kernel (``"critical"`` computes and keeps
  the critical-path ranks then), so rounds measure a repeated run.
- ``test_kernel_build``: the construction ``Kernel(n, src, dst)``.

``extra_info["ns_per_node"]`` is the median round over the node count.
"""

from __future__ import annotations

import gc
import importlib
import os
from typing import Any

import pytest

import graphs

TWINS = ("c", "py")
POLICIES = ("fifo", "critical")
ROUNDS = {"c": 41, "py": 5}

NO_EXTENSIONS = os.environ.get("MICRODAG_NO_EXTENSIONS", "").strip().lower() not in (
    "",
    "0",
    "false",
    "no",
)


def twin_module(twin: str) -> Any:
    """``microdag._sched`` (c) or ``microdag._sched_py`` (py).

    A missing compiled twin fails the run unless ``MICRODAG_NO_EXTENSIONS`` is
    set (then the ``c`` cases are skipped).
    """
    if twin == "c":
        try:
            return importlib.import_module("microdag._sched")
        except ImportError:
            if NO_EXTENSIONS:
                pytest.skip("microdag._sched is not built and MICRODAG_NO_EXTENSIONS is set")
            raise
    return importlib.import_module("microdag._sched_py")


def run(k: Any, policy: str) -> Any:
    k.reset(policy=policy)
    while k.remaining:
        k.done_many(k.take())
    return k


def record(benchmark: Any, graph: graphs.BenchGraph, **info: Any) -> None:
    benchmark.extra_info.update(graph=graph.name, nodes=graph.n, edges=graph.edges, **info)
    stats = benchmark.stats  # None when benchmarks are disabled
    if stats is not None:
        benchmark.extra_info["ns_per_node"] = round(stats.stats.median / graph.n * 1e9, 1)


RUN_CASES = [(kind, twin, policy) for kind in graphs.KINDS for twin in TWINS for policy in POLICIES]


@pytest.mark.parametrize(("kind", "twin", "policy"), RUN_CASES)
def test_kernel_run(benchmark: Any, kind: str, twin: str, policy: str) -> None:
    module = twin_module(twin)
    graph = graphs.get(kind, graphs.bench_size(benchmark.disabled))
    k = module.Kernel(graph.n, graph.src, graph.dst)

    # Untimed first run: check the schedule, and warm the kernel up.
    k.reset(policy=policy)
    groups = []
    while k.remaining:
        ids = k.take()
        groups.append(ids)
        k.done_many(ids)
    graphs.check_groups(graph, groups)
    del groups
    gc.collect()

    benchmark.group = f"kernel run: {kind}"
    benchmark.pedantic(run, args=(k, policy), rounds=ROUNDS[twin], iterations=1)
    assert k.remaining == 0
    assert k.finished == graph.n
    assert k.states() == bytes([module.SUCCEEDED]) * graph.n
    record(benchmark, graph, twin=twin, policy=policy)


BUILD_CASES = [(kind, twin) for kind in graphs.KINDS for twin in TWINS]


@pytest.mark.parametrize(("kind", "twin"), BUILD_CASES)
def test_kernel_build(benchmark: Any, kind: str, twin: str) -> None:
    kernel = twin_module(twin).Kernel
    graph = graphs.get(kind, graphs.bench_size(benchmark.disabled))
    benchmark.group = f"kernel build: {kind}"

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        gc.collect()
        return (graph.n, graph.src, graph.dst), {}

    k = benchmark.pedantic(kernel, setup=setup, rounds=ROUNDS[twin], iterations=1)
    assert k.n == graph.n
    assert k.edges == graph.edges
    assert sorted(k.successors(0)) == sorted(
        d for s, d in zip(graph.src, graph.dst) if s == 0
    )
    record(benchmark, graph, twin=twin)


def run_one_by_one(k: Any, policy: str) -> Any:
    """``take(1)`` and ``done`` per node: what a runner's loop pays per step."""
    k.reset(policy=policy)
    take, done = k.take, k.done
    while k.remaining:
        for i in take(1):
            done(i)
    return k


POOL_CASES = [(twin, pools) for twin in TWINS for pools in ("none", "roomy", "tight")]


@pytest.mark.parametrize(("twin", "pools"), POOL_CASES)
def test_kernel_pools(benchmark: Any, twin: str, pools: str) -> None:
    """One node at a time (``take(1)``, ``done``) on the wide graph: without
    pools (``none``: what every flow without pools pays), every node holding
    a unit of a pool that never runs out (``roomy``: the cost of the
    bookkeeping), or of a pool of 4 (``tight``: nodes wait aside and come
    back as units are given back)."""
    module = twin_module(twin)
    graph = graphs.get("wide", graphs.bench_size(benchmark.disabled))
    k = module.Kernel(graph.n, graph.src, graph.dst)
    if pools != "none":
        size = graph.n if pools == "roomy" else 4
        k.set_pools([size], [((0, 1),)] * graph.n)
    run_one_by_one(k, "critical")
    gc.collect()
    benchmark.group = "kernel take(1)/done, pools"
    benchmark.pedantic(run_one_by_one, args=(k, "critical"), rounds=ROUNDS[twin], iterations=1)
    assert k.finished == graph.n
    record(benchmark, graph, twin=twin, pools=pools)
