"""microdag as Dask's local scheduler: ``microdag.dask.get`` against Dask's own.

Workloads (Dask graphs of legacy tuple tasks, built once per size):

- ``independent``: 20,000 ``inc(i)`` tasks with no dependencies, plus one
  ``sum`` of them all (the key asked for);
- ``chain``: 5,000 tasks, each ``inc`` of the one before.

Timed in one run, so that the ratios are fair: ``microdag.dask.get`` (2
threads) and ``microdag.dask.get_sync`` against ``dask.threaded.get`` (2
threads) and ``dask.get`` (synchronous).  Each call includes what a scheduler
does with a graph it is handed (Dask's conversion of tuple tasks, culling,
ordering), as ``dask.compute`` would pay it.  ``extra_info`` carries
``us_per_task`` (median).  Skipped where Dask is not installed; the smoke run
(benchmarks disabled) uses 500 and 200 tasks.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("dask", reason="Dask is measured where installed (the test extras)")

import dask  # noqa: E402
import dask.threaded  # noqa: E402

from microdag import dask as mdask  # noqa: E402


def inc(x: int) -> int:
    return x + 1


def disabled(request: pytest.FixtureRequest) -> bool:
    """Whether this is the smoke run (benchmarks disabled, not forced back on)."""
    config = request.config
    return bool(config.getoption("benchmark_disable")) and not config.getoption("benchmark_enable")


def graph(workload: str, small: bool) -> tuple[dict[Any, Any], Any, int, Any]:
    """The graph, the key asked for, the number of tasks and the expected value."""
    if workload == "independent":
        n = 500 if small else 20_000
        dsk: dict[Any, Any] = {("inc", i): (inc, i) for i in range(n)}
        dsk["total"] = (sum, [("inc", i) for i in range(n)])
        return dsk, "total", n + 1, sum(range(1, n + 1))
    n = 200 if small else 5_000
    dsk = {"c0": (inc, 0)}
    for i in range(1, n):
        dsk[f"c{i}"] = (inc, f"c{i - 1}")
    return dsk, f"c{n - 1}", n, n


SCHEDULERS = {
    "microdag.dask.get-2": lambda dsk, key: mdask.get(dsk, key, num_workers=2),
    "microdag.dask.get_sync": mdask.get_sync,
    "dask.threaded.get-2": lambda dsk, key: dask.threaded.get(dsk, key, num_workers=2),
    "dask.get": dask.get,
}


@pytest.mark.benchmark(group="dask-scheduler")
@pytest.mark.parametrize("workload", ["independent", "chain"])
@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_dask_scheduler(benchmark: Any, scheduler: str, workload: str, request: pytest.FixtureRequest) -> None:
    dsk, key, n, expected = graph(workload, disabled(request))
    get = SCHEDULERS[scheduler]
    result = benchmark.pedantic(lambda: get(dsk, key), rounds=5, warmup_rounds=1)
    assert result == expected
    stats = benchmark.stats.stats if benchmark.stats else None
    if stats is not None:
        benchmark.extra_info["us_per_task"] = round(stats.median / n * 1e6, 2)
