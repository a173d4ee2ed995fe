"""microdag as Dask's local scheduler: ``microdag.dask.get`` against Dask's own.

Workloads (Dask graphs of legacy tuple tasks, built once per size):

- ``independent``: 20,000 ``inc(i)`` tasks with no dependencies, plus one
  ``sum`` of them all (the key asked for);
- ``chain``: 5,000 tasks, each ``inc`` of the one before;
- ``layered``: a random layered graph of 50,000 tasks: 50 layers of 1,000,
  the first ``inc(j)``, each task of the next layers ``add`` of 1 to 3
  tasks of the layer above drawn at random (seeded), plus one ``sum`` of the
  last layer (the key asked for);
- ``array``: a dask.array workload of 1,000 numpy chunks,
  ``(da.sin(x) * 2 + x).sum(axis=0)`` over a 10,000 x 5,000 array of random
  floats in chunks of 1,000 x 50 (50,000 floats each), Dask's graph
  optimized once (as ``dask.compute`` would) before the timing: about 2,100
  tasks, each doing real numpy work.

Timed in one run, so that the ratios are fair: ``microdag.dask.get`` (2
threads) and ``microdag.dask.get_sync`` against ``dask.threaded.get`` (2
threads) and ``dask.get`` (synchronous).  Each call includes what a scheduler
does with a graph it is handed (Dask's conversion of tuple tasks, culling,
ordering), as ``dask.compute`` would pay it.  ``extra_info`` carries
``us_per_task`` (median).  Skipped where Dask is not installed (the array
workload where numpy is not); the smoke run (benchmarks disabled) uses 500,
200 and 2,000 tasks and 40 chunks.  Peak memory: ``bench/memory_dask_get.py``.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

pytest.importorskip("dask", reason="Dask is measured where installed (the test extras)")

import dask  # noqa: E402
import dask.threaded  # noqa: E402

from microdag import dask as mdask  # noqa: E402


def inc(x: int) -> int:
    return x + 1


def add(*values: int) -> int:
    return sum(values)


def disabled(request: pytest.FixtureRequest) -> bool:
    """Whether this is the smoke run (benchmarks disabled, not forced back on)."""
    config = request.config
    return bool(config.getoption("benchmark_disable")) and not config.getoption("benchmark_enable")


def independent(n: int) -> tuple[dict[Any, Any], Any, int, Any]:
    """``n`` independent ``inc`` tasks and a ``sum`` of them: the graph, its key, its tasks, its value."""
    dsk: dict[Any, Any] = {("inc", i): (inc, i) for i in range(n)}
    dsk["total"] = (sum, [("inc", i) for i in range(n)])
    return dsk, "total", n + 1, sum(range(1, n + 1))


def chain(n: int) -> tuple[dict[Any, Any], Any, int, Any]:
    """A chain of ``n`` ``inc`` tasks: the graph, its last key, its tasks, its value."""
    dsk: dict[Any, Any] = {"c0": (inc, 0)}
    for i in range(1, n):
        dsk[f"c{i}"] = (inc, f"c{i - 1}")
    return dsk, f"c{n - 1}", n, n


def graph(workload: str, small: bool) -> tuple[dict[Any, Any], Any, int, Any]:
    """The graph, the key asked for, the number of tasks and the expected value."""
    if workload == "independent":
        return independent(500 if small else 20_000)
    if workload == "chain":
        return chain(200 if small else 5_000)
    if workload == "layered":
        return layered(40 if small else 1_000, 50)
    return array(small)


def layered(width: int, depth: int) -> tuple[dict[Any, Any], Any, int, Any]:
    rng = random.Random(29)
    dsk: dict[Any, Any] = {("l", 0, j): (inc, j) for j in range(width)}
    for layer in range(1, depth):
        for j in range(width):
            picked = rng.sample(range(width), rng.randint(1, 3))
            dsk[("l", layer, j)] = (add, *[("l", layer - 1, p) for p in picked])
    dsk["out"] = (sum, [("l", depth - 1, j) for j in range(width)])
    return dsk, "out", len(dsk), dask.get(dsk, "out")


def array(small: bool) -> tuple[dict[Any, Any], Any, int, Any]:
    np = pytest.importorskip("numpy")
    import dask.array as da

    rows = 1_000 if small else 10_000
    x = da.random.default_rng(29).random((rows, 5_000 if not small else 200), chunks=(1_000, 50))
    (total,) = dask.optimize((da.sin(x) * 2 + x).sum(axis=0))
    dsk = dict(total.__dask_graph__())
    keys = total.__dask_keys__()
    expected = np.concatenate(dask.get(dsk, keys))
    return dsk, keys, len(dsk), expected


SCHEDULERS = {
    "microdag.dask.get-2": lambda dsk, key: mdask.get(dsk, key, num_workers=2),
    "microdag.dask.get_sync": mdask.get_sync,
    "dask.threaded.get-2": lambda dsk, key: dask.threaded.get(dsk, key, num_workers=2),
    "dask.get": dask.get,
}


@pytest.mark.benchmark(group="dask-scheduler")
@pytest.mark.parametrize("workload", ["independent", "chain", "layered", "array"])
@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_dask_scheduler(benchmark: Any, scheduler: str, workload: str, request: pytest.FixtureRequest) -> None:
    dsk, key, n, expected = graph(workload, disabled(request))
    get = SCHEDULERS[scheduler]
    # Dask takes about 1 ms a task on the layered graph (a minute a call): one round of it.
    slow = workload == "layered" and scheduler.startswith("dask") and not disabled(request)
    result = benchmark.pedantic(lambda: get(dsk, key), rounds=1 if slow else 5, warmup_rounds=0 if slow else 1)
    if workload == "array":
        import numpy as np

        assert np.allclose(np.concatenate(result), expected)
    else:
        assert result == expected
    stats = benchmark.stats.stats if benchmark.stats else None
    if stats is not None:
        benchmark.extra_info["us_per_task"] = round(stats.median / n * 1e6, 2)
