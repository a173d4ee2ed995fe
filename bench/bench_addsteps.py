"""Steps that add steps: what one added step costs.

- ``test_add_steps``: one step adds ``N`` steps (``context().add``, no
  dependencies, no store), inline, on each kernel twin (the twin is chosen
  by ``MICRODAG_NO_EXTENSIONS``, as in any run: run the file twice). A
  round is the whole run; ``extra_info["us_per_add"]`` is the median time
  of the adds alone, per added step.
- ``test_kernel_grow``: ``Kernel.grow`` alone, one node at a time, after a
  step that is still running (the adder's shape), on both twins.

    python -m pytest bench/bench_addsteps.py --benchmark-only
    MICRODAG_NO_EXTENSIONS=1 python -m pytest bench/bench_addsteps.py --benchmark-only -k add_steps
"""

from __future__ import annotations

import importlib
import statistics
import time
from typing import Any

import pytest

import microdag

SIZES = (1_000, 10_000)


def leaf() -> int:
    return 1


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.benchmark(group="add-steps")
def test_add_steps(benchmark: Any, n: int) -> None:
    spent: list[float] = []

    def adder() -> int:
        ctx = microdag.context()
        t = time.perf_counter()
        for k in range(n):
            ctx.add(f"s{k}", leaf)
        spent.append(time.perf_counter() - t)
        return n

    flow = microdag.Flow("adds").add("adder", adder)
    run = benchmark.pedantic(flow.run, rounds=5, iterations=1)
    assert len(run.tasks) == n + 1 and run.status == "succeeded"
    benchmark.extra_info["twin"] = microdag._compat.sched.TWIN
    benchmark.extra_info["us_per_add"] = statistics.median(spent) / n * 1e6


@pytest.mark.parametrize("twin", ["c", "py"])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.benchmark(group="kernel-grow")
def test_kernel_grow(benchmark: Any, twin: str, n: int) -> None:
    sched = importlib.import_module("microdag._sched" if twin == "c" else "microdag._sched_py")

    def grow() -> Any:
        k = sched.Kernel(1)
        k.reset()
        k.take()
        for i in range(n):
            k.grow(1, [0], [i + 1])
        return k

    k = benchmark.pedantic(grow, rounds=5, iterations=1)
    assert k.n == n + 1 and k.remaining == n + 1  # (they wait for node 0, still running)
    if benchmark.stats is not None:  # (None in the smoke run, benchmarks disabled)
        benchmark.extra_info["us_per_node"] = benchmark.stats.stats.median / n * 1e6
