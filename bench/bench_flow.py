"""The flow engine: per-step overhead, parallel efficiency, process speed-up.

Workload (as the flow-engine issue states it): a layered DAG of 50,000 steps,
1000 wide, each step depending on 3 steps of the layer above and returning
``1 + sum(dependency outputs)``, built with ``flow.add`` and a ``**deps``
function.  Timed, in one run so that the ratios are fair:

- ``bare``: a Python loop evaluating the same steps in a precomputed order
  (``out[s] = fn(**{d: out[d] for d in deps[s]})``): the floor;
- ``inline`` and ``threads`` (2 workers): ``flow.run(...)`` on the compiled
  flow (compiled once, untimed: warm reuse);
- peers where installed: a hand-written ``graphlib`` + ``ThreadPoolExecutor``
  loop (2 workers), dask's synchronous and threaded schedulers.

Then ``sleepers``: 200 independent steps sleeping 20 ms each with
``max_workers=16`` (ideal: 13 rounds = 260 ms), and ``cpu``: 8 CPU-bound
steps of about 0.2 s, inline versus ``executor="processes"`` (2 workers).

``extra_info`` carries ``us_per_step`` (median) or ``ratio_to_ideal``.  The
smoke run (benchmarks disabled) uses a small flow and short steps.
"""

from __future__ import annotations

import graphlib
import time
from concurrent.futures import FIRST_COMPLETED, Executor, ThreadPoolExecutor, wait
from typing import Any

import pytest

import benchsteps
import microdag

WIDTH = 1000
DEGREE = 3


def disabled(request: pytest.FixtureRequest) -> bool:
    """Whether this is the smoke run (benchmarks disabled, not forced back on)."""
    config = request.config
    return bool(config.getoption("benchmark_disable")) and not config.getoption("benchmark_enable")


def layered_deps(n: int, seed: int = 7) -> dict[str, list[str]]:
    import random

    rnd = random.Random(seed)
    deps: dict[str, list[str]] = {}
    for i in range(n):
        layer = i // WIDTH
        if layer == 0:
            deps[f"s{i}"] = []
        else:
            lo = (layer - 1) * WIDTH
            deps[f"s{i}"] = [f"s{j}" for j in rnd.sample(range(lo, lo + WIDTH), DEGREE)]
    return deps


def add_up(**deps: int) -> int:
    return 1 + sum(deps.values())


_CACHE: dict[int, tuple[dict[str, list[str]], microdag.Flow, int]] = {}


def workload(n: int) -> tuple[dict[str, list[str]], microdag.Flow, int]:
    """The dependency dict, the compiled flow and the expected largest output."""
    if n not in _CACHE:
        deps = layered_deps(n)
        flow = microdag.Flow("layered")
        for name, ds in deps.items():
            flow.add(name, add_up, depends_on=ds)
        flow.validate()
        _CACHE[n] = (deps, flow, max(bare_loop(deps).values()))
    return _CACHE[n]


def bare_loop(deps: dict[str, list[str]]) -> dict[str, int]:
    out: dict[str, int] = {}
    fn = add_up
    for name, ds in deps.items():  # the dict is in a topological order
        out[name] = fn(**{d: out[d] for d in ds})
    return out


def graphlib_loop(deps: dict[str, list[str]], fn: Any, pool: Executor) -> dict[str, int]:
    """A hand-written graphlib + ``concurrent.futures`` runner on ``pool``: the usual DIY loop."""
    ts = graphlib.TopologicalSorter(deps)
    ts.prepare()
    out: dict[str, int] = {}
    running: dict[Any, str] = {}
    while ts.is_active():
        for name in ts.get_ready():
            kwargs = {d: out[d] for d in deps[name]}
            running[pool.submit(fn, **kwargs)] = name
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for fut in done:
            name = running.pop(fut)
            out[name] = fut.result()
            ts.done(name)
    return out


def graphlib_threads(deps: dict[str, list[str]], workers: int) -> dict[str, int]:
    """:func:`graphlib_loop` on a ``ThreadPoolExecutor`` of ``workers``."""
    with ThreadPoolExecutor(workers) as pool:
        return graphlib_loop(deps, add_up, pool)


def per_step(benchmark: Any, n: int) -> None:
    stats = benchmark.stats.stats if benchmark.stats else None
    if stats is not None:
        benchmark.extra_info["us_per_step"] = round(stats.median / n * 1e6, 3)  # per item for maps


@pytest.fixture
def size(request: pytest.FixtureRequest) -> int:
    return 2_000 if disabled(request) else 50_000


@pytest.mark.benchmark(group="flow-50k-layered")
@pytest.mark.parametrize(
    "runner", ["bare", "inline", "threads-2", "graphlib+ThreadPoolExecutor-2", "dask-sync", "dask-threads-2"]
)
def test_flow_overhead(benchmark: Any, runner: str, size: int) -> None:
    deps, flow, expected = workload(size)
    rounds = 5
    if runner == "bare":
        fn = lambda: bare_loop(deps)  # noqa: E731
        check = lambda out: max(out.values())  # noqa: E731
    elif runner == "inline":
        fn = lambda: flow.run()  # noqa: E731
        check = lambda run: max(run.outputs.values())  # noqa: E731
    elif runner == "threads-2":
        fn = lambda: flow.run(executor="threads", max_workers=2)  # noqa: E731
        check = lambda run: max(run.outputs.values())  # noqa: E731
    elif runner == "graphlib+ThreadPoolExecutor-2":
        fn = lambda: graphlib_threads(deps, 2)  # noqa: E731
        check = lambda out: max(out.values())  # noqa: E731
        rounds = 3
    else:
        pytest.importorskip("dask", reason="dask is a peer, measured where installed")
        dsk = {name: (add_up_tuple, *ds) for name, ds in deps.items()}
        sinks = list(deps)[-WIDTH:]
        threaded = runner == "dask-threads-2"
        fn = lambda: dask_get(dsk, sinks, threaded)  # noqa: E731
        check = lambda out: max(out)  # noqa: E731
        rounds = 1
    result = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1 if size > 2_000 else 0)
    assert check(result) == expected
    per_step(benchmark, size)


def add_up_tuple(*values: int) -> int:
    return 1 + sum(values)


def dask_get(dsk: dict[str, Any], keys: list[str], threaded: bool) -> Any:
    if threaded:
        import dask.threaded

        return dask.threaded.get(dsk, keys, num_workers=2)
    import dask.local

    return dask.local.get_sync(dsk, keys)


@pytest.mark.benchmark(group="flow-parallel-sleepers")
def test_parallel_efficiency(benchmark: Any, request: pytest.FixtureRequest) -> None:
    small = disabled(request)
    count, nap, workers = (32, 0.005, 16) if small else (200, 0.02, 16)
    flow = microdag.Flow("sleepers")
    for i in range(count):
        flow.add(f"nap{i}", benchsteps.nap)
    ideal = -(-count // workers) * nap
    run = benchmark.pedantic(
        lambda: flow.run({"seconds": nap}, executor="threads", max_workers=workers),
        rounds=1 if small else 7,
        iterations=1,
        warmup_rounds=0 if small else 1,
    )
    assert run.status == "succeeded" and len(run.tasks) == count
    if benchmark.stats:
        benchmark.extra_info["ideal_s"] = ideal
        benchmark.extra_info["ratio_to_ideal"] = round(benchmark.stats.stats.median / ideal, 4)


@pytest.mark.benchmark(group="flow-cpu-processes")
@pytest.mark.parametrize("executor", ["inline", "processes"])
def test_process_speedup(benchmark: Any, executor: str, request: pytest.FixtureRequest) -> None:
    small = disabled(request)
    count, seconds = (2, 0.02) if small else (8, 0.2)
    flow = microdag.Flow("cpu")
    for i in range(count):
        flow.add(f"burn{i}", benchsteps.burn)
    run = benchmark.pedantic(
        lambda: flow.run({"seconds": seconds}, executor=executor, max_workers=2),
        rounds=1 if small else 5,
        iterations=1,
        warmup_rounds=0 if small else 1,
    )
    assert run.status == "succeeded"
    assert all(v > 0 for v in run.outputs.values())


@pytest.mark.benchmark(group="flow-map-100k")
@pytest.mark.parametrize("executor", ["inline", "threads-2"])
@pytest.mark.parametrize("batch", [None, 1000])
def test_map_items(benchmark: Any, executor: str, batch: int | None, request: pytest.FixtureRequest) -> None:
    """A map over 100,000 tiny items (``x + 1``), unbatched and in batches of 1000."""
    n = 2_000 if disabled(request) else 100_000
    flow = microdag.Flow("map")
    if batch is None:
        flow.add("m", benchsteps.plus_one, map="x")
    else:
        flow.add("m", benchsteps.plus_one_batch, map="x", batch_size=batch)
    items = list(range(n))
    kwargs: dict[str, Any] = {"executor": "inline"}
    if executor == "threads-2":
        kwargs = {"executor": "threads", "max_workers": 2}
    run = benchmark.pedantic(
        lambda: flow.run({"x": items}, **kwargs), rounds=1 if n == 2_000 else 7, iterations=1,
        warmup_rounds=0 if n == 2_000 else 1,
    )
    out = run["m"]
    assert len(out) == n and out[0] == 1 and out[-1] == n
    per_step(benchmark, n)


_POOLED: dict[int, microdag.Flow] = {}


def pooled_workload(n: int) -> microdag.Flow:
    """The same layered flow, every step using one unit of pool ``db``."""
    if n not in _POOLED:
        flow = microdag.Flow("layered-pooled")
        for name, ds in layered_deps(n).items():
            flow.add(name, add_up, depends_on=ds, uses="db")
        flow.validate()
        _POOLED[n] = flow
    return _POOLED[n]


@pytest.mark.benchmark(group="flow-50k-pools")
@pytest.mark.parametrize("runner", ["inline", "inline-pools", "threads-2", "threads-2-pools"])
def test_flow_pools(benchmark: Any, runner: str, size: int) -> None:
    """What pools cost the scheduler: the 50k-step flow without pools, and with
    every step holding a unit of a pool of 2 (inline: the bookkeeping alone,
    one step runs at a time; threads: steps wait aside and come back)."""
    _, plain, expected = workload(size)
    flow = pooled_workload(size) if runner.endswith("-pools") else plain
    options: dict[str, Any] = {"pools": {"db": 2}} if runner.endswith("-pools") else {}
    if runner.startswith("threads"):
        options.update(executor="threads", max_workers=2)
    run = benchmark.pedantic(lambda: flow.run(**options), rounds=5, iterations=1,
                             warmup_rounds=1 if size > 2_000 else 0)
    assert max(run.outputs.values()) == expected
    per_step(benchmark, size)
