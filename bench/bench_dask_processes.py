"""Dask graphs with their tasks in processes: ``microdag.dask.get_processes`` against
``dask.multiprocessing.get``.

Workloads (Dask graphs, built once per size):

- ``independent``: 2,000 ``inc(i)`` tasks with no dependencies, plus one ``sum``;
- ``chain``: 500 tasks, each ``inc`` of the one before;
- ``array``: ``(x + x.T).sum(axis=0)`` over a dask.array of 400 numpy chunks
  (2,000 x 2,000 float64, chunks of 100 x 100): real work in each task.

The schedulers are handed the same ``ProcessPoolExecutor`` of 2 processes,
started and warmed before timing, so that the figures hold the cost per task
(pickling, the trip to a process and back, the scheduler), not process
start-up.  Dask's scheduler runs twice: as it does by default (it fuses
linear chains, ``optimize_graph=True``, and sends tasks in batches of
``chunksize``; its fused chain of 500 is too deep to pickle, so that pair is
skipped), and with ``optimize_graph=False`` (each task on its own, as
microdag's sends them, still in batches).  ``extra_info`` carries ``us_per_task``
(median).  Skipped where Dask is not installed; the smoke run (benchmarks
disabled) uses smaller graphs.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

pytest.importorskip("dask", reason="Dask is measured where installed (the test extras)")

import dask.multiprocessing  # noqa: E402

from bench_dask_get import chain, inc, independent  # noqa: E402  (the same tiny graphs, smaller)
from microdag import dask as mdask  # noqa: E402


def disabled(request: pytest.FixtureRequest) -> bool:
    """Whether this is the smoke run (benchmarks disabled, not forced back on)."""
    config = request.config
    return bool(config.getoption("benchmark_disable")) and not config.getoption("benchmark_enable")


def graph(workload: str, small: bool) -> tuple[Any, Any, int, Any]:
    """The graph, the key asked for, the number of tasks and a check of the value."""
    if workload == "independent":
        return independent(100 if small else 2_000)
    if workload == "chain":
        return chain(50 if small else 500)
    np = pytest.importorskip("numpy")
    import dask.array as da

    side = 400 if small else 2_000
    x = da.ones((side, side), chunks=100)
    y = (x + x.T).sum(axis=0)
    keys = y.__dask_keys__()
    dsk = dict(y.__dask_graph__())
    return dsk, keys, len(dsk), lambda out: float(np.concatenate(out).sum()) == 2.0 * side * side


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(2) as executor:
        list(executor.map(inc, range(8)))  # both processes started
        yield executor


@pytest.mark.benchmark(group="dask-processes")
@pytest.mark.parametrize("workload", ["independent", "chain", "array"])
@pytest.mark.parametrize("scheduler", ["microdag.dask.get_processes", "dask.multiprocessing.get",
                                       "dask.multiprocessing.get-unfused"])
def test_dask_processes(benchmark: Any, scheduler: str, workload: str, pool: ProcessPoolExecutor,
                        request: pytest.FixtureRequest) -> None:
    dsk, key, n, expected = graph(workload, disabled(request))
    if scheduler == "dask.multiprocessing.get" and workload == "chain":
        pytest.skip("Dask fuses the chain into one task, too deep for cloudpickle")
    get = mdask.get_processes if scheduler.startswith("microdag") else dask.multiprocessing.get
    options = {"optimize_graph": False} if scheduler.endswith("unfused") else {}
    result = benchmark.pedantic(lambda: get(dsk, key, pool=pool, **options), rounds=5, warmup_rounds=1)
    assert expected(result) if callable(expected) else result == expected
    stats = benchmark.stats.stats if benchmark.stats else None
    if stats is not None:
        benchmark.extra_info["us_per_task"] = round(stats.median / n * 1e6, 2)
