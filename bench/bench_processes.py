"""``executor="processes"``: what a step costs when each one runs in a worker process.

Workloads (2 workers everywhere):

- ``chain``: 300 tiny steps, each taking the one before and returning it
  plus one (``add_one``): one step ready at a time, so every hop is a round
  trip to a worker and back;
- ``independent``: 2,000 tiny steps with no dependencies (``one()``).

Contestants, timed in the same run so that the ratios are fair:

- ``microdag``: ``flow.run(executor="processes", max_workers=2)`` on the
  compiled flow (compiled once, untimed).  Its pool is made by each run and
  closed at its end, so **every microdag round includes starting and
  stopping its workers** (the ``start`` group below says how much that is);
- ``graphlib+ProcessPoolExecutor``: a hand-written loop (``graphlib`` orders
  the steps, a ``concurrent.futures.ProcessPoolExecutor`` runs them, the
  ready ones submitted at once, ``wait(FIRST_COMPLETED)``), the same loop as
  ``bench_flow.py``'s thread version;
- ``dask-processes``: dask's multiprocessing scheduler
  (``dask.multiprocessing.get``) with ``optimize_graph=False``, so that each
  step is a task (dask's default fuses a chain into one task, and then no
  hop crosses a process).  Measured where dask is installed.

The peers allow a warm pool, so they get one: a ``ProcessPoolExecutor`` of 2
workers started once for the module (``forkserver``, as microdag's; dask's
the start method it defaults to, ``spawn``), outside the timing.  microdag
cannot be given one, so the comparison favours the peers by microdag's
start-up.  The ``start`` group times that start-up alone, for everyone: one
tiny step with a fresh pool (microdag: a one-step flow run; the executor:
made, one task, shut down; dask: ``get`` with its own pool).

``polling``: what polling before sleeping costs where it cannot help: a chain
of 100 steps that sleep 1 ms each, on microdag, with the CPU time the
calling process and the worker spent per step (``parent_cpu_us``,
``worker_cpu_us``: the worker's clock read by the last step minus the
first's; a step sleeps 1 ms, so that wall time is not the figure here).

``extra_info["us_per_step"]`` is the median round divided by the steps (a hop
of the chain; ``ms`` for the start group).  The smoke run (benchmarks
disabled) uses 30 and 200 steps and one round.  Run under ``python -m
pytest``: a worker process runs the caller's main script again, and the
``pytest`` launcher script would import pytest in every worker.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

import benchsteps
import microdag
from bench_flow import disabled, graphlib_loop, per_step

WORKERS = 2


def chain_deps(n: int) -> dict[str, list[str]]:
    return {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(n)}


def independent_deps(n: int) -> dict[str, list[str]]:
    return {f"t{i}": [] for i in range(n)}


_FLOWS: dict[tuple[str, int], tuple[dict[str, list[str]], microdag.Flow]] = {}


def workload(name: str, small: bool) -> tuple[dict[str, list[str]], microdag.Flow]:
    """The dependencies and the compiled flow of workload ``name``."""
    n = (30 if small else 300) if name == "chain" else (200 if small else 2_000)
    if (name, n) not in _FLOWS:
        deps = chain_deps(n) if name == "chain" else independent_deps(n)
        flow = microdag.Flow(name)
        for step, ds in deps.items():
            flow.add(step, step_function(name), depends_on=ds)
        flow.validate()
        _FLOWS[name, n] = deps, flow
    return _FLOWS[name, n]


def expected(name: str, deps: dict[str, list[str]]) -> dict[str, int]:
    """What each contestant returns: the outputs of the steps nothing depends on."""
    return {f"s{len(deps) - 1}": len(deps)} if name == "chain" else dict.fromkeys(deps, 1)


def step_function(name: str) -> Any:
    return benchsteps.add_one if name == "chain" else benchsteps.one


def graphlib_processes(deps: dict[str, list[str]], fn: Any, pool: ProcessPoolExecutor) -> dict[str, int]:
    """``bench_flow``'s hand-written graphlib loop on a ``ProcessPoolExecutor``; the sinks' outputs."""
    out = graphlib_loop(deps, fn, pool)
    sinks = set(deps) - {d for ds in deps.values() for d in ds}
    return {name: out[name] for name in deps if name in sinks}


def dask_processes(deps: dict[str, list[str]], pool: Any) -> dict[str, int]:
    """dask's multiprocessing scheduler on ``pool``, each step a task."""
    import dask.multiprocessing

    dsk = {name: (benchsteps.add_one_args, *ds) if ds else (benchsteps.one,) for name, ds in deps.items()}
    sinks = [name for name in deps if name not in {d for ds in deps.values() for d in ds}]
    values = dask.multiprocessing.get(dsk, sinks, pool=pool, optimize_graph=False)
    return dict(zip(sinks, values))


@pytest.fixture(scope="module")
def executor() -> Any:
    """The hand loop's warm pool."""
    with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("forkserver")) as pool:
        list(pool.map(benchsteps.one_of, range(WORKERS * 4)))  # both workers up
        yield pool


@pytest.fixture(scope="module")
def dask_pool() -> Any:
    """dask's warm pool (its default start method)."""
    pytest.importorskip("dask", reason="dask is a peer, measured where installed")
    import dask.multiprocessing

    with ProcessPoolExecutor(WORKERS, mp_context=dask.multiprocessing.get_context()) as pool:
        list(pool.map(benchsteps.one_of, range(WORKERS * 4)))
        yield pool


@pytest.mark.benchmark(group="processes-2-workers")
@pytest.mark.parametrize("workload_name", ["chain", "independent"])
@pytest.mark.parametrize("runner", ["microdag", "graphlib+ProcessPoolExecutor", "dask-processes"])
def test_processes_overhead(benchmark: Any, runner: str, workload_name: str, request: pytest.FixtureRequest) -> None:
    small = disabled(request)
    deps, flow = workload(workload_name, small)
    if runner == "microdag":
        fn = lambda: flow.run(executor="processes", max_workers=WORKERS).outputs  # noqa: E731
    elif runner == "graphlib+ProcessPoolExecutor":
        pool = request.getfixturevalue("executor")
        fn = lambda: graphlib_processes(deps, step_function(workload_name), pool)  # noqa: E731
    else:
        pool = request.getfixturevalue("dask_pool")
        fn = lambda: dask_processes(deps, pool)  # noqa: E731
    rounds = 1 if small else (15 if runner == "microdag" else 7)
    outputs = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0 if small else 1)
    assert outputs == expected(workload_name, deps)
    per_step(benchmark, len(deps))


@pytest.mark.benchmark(group="processes-start")
@pytest.mark.parametrize("runner", ["microdag", "ProcessPoolExecutor", "dask-processes"])
def test_pool_start(benchmark: Any, runner: str, request: pytest.FixtureRequest) -> None:
    """One tiny step with a pool started for it, and stopped."""
    small = disabled(request)
    if runner == "microdag":
        flow = microdag.Flow("one").add("one", benchsteps.one)
        fn = lambda: flow.run(executor="processes", max_workers=WORKERS)["one"]  # noqa: E731
    elif runner == "ProcessPoolExecutor":
        def fn() -> int:
            with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("forkserver")) as pool:
                return pool.submit(benchsteps.one).result()
    else:
        pytest.importorskip("dask", reason="dask is a peer, measured where installed")
        import dask.multiprocessing

        fn = lambda: dask.multiprocessing.get({"one": (benchsteps.one,)}, "one", num_workers=WORKERS)  # noqa: E731
    rounds = 1 if small else (5 if runner == "dask-processes" else 11)
    assert benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0 if small else 1) == 1
    stats = benchmark.stats.stats if benchmark.stats else None
    if stats is not None:
        benchmark.extra_info["ms"] = round(stats.median * 1e3, 3)


@pytest.mark.benchmark(group="processes-polling")
def test_polling_cost(benchmark: Any, request: pytest.FixtureRequest) -> None:
    """CPU spent per step by the caller and the worker on steps longer than the poll."""
    import time

    small = disabled(request)
    n = 10 if small else 100
    flow = microdag.Flow("naps")
    for i in range(n):
        flow.add(f"s{i}", benchsteps.nap_ms, depends_on=[f"s{i - 1}"] if i else [])
    flow.validate()
    spent: list[tuple[float, float]] = []

    def run() -> microdag.Run:
        start = time.process_time()
        done = flow.run(executor="processes", max_workers=WORKERS, keep_outputs=True)
        spent.append((time.process_time() - start, done[f"s{n - 1}"] - done["s0"]))
        return done

    result = benchmark.pedantic(run, rounds=1 if small else 7, iterations=1, warmup_rounds=0 if small else 1)
    assert result.status == "succeeded"
    per_step(benchmark, n)
    if benchmark.stats:
        parent, worker = sorted(spent)[len(spent) // 2]
        benchmark.extra_info["parent_cpu_us"] = round(parent / n * 1e6, 1)
        benchmark.extra_info["worker_cpu_us"] = round(worker / (n - 1) * 1e6, 1)
