"""A Dask cluster: what microdag adds over submitting the functions by hand.

Workloads, on a ``LocalCluster`` of 2 worker processes with one thread each,
started once for the module:

- ``independent``: 2,000 tiny steps with no dependencies (``one()``);
- ``chain``: 300 tiny steps, each taking the one before (``add_one``).

Timed, in the same run: ``microdag`` (``flow.run(executor=client)``, the
outputs brought back as ``Run.outputs``) and ``client.submit`` (a
hand-written loop submitting the same functions, the chain's futures passed
as arguments, then ``client.gather`` of what ``Run.outputs`` holds: the
steps nothing depends on).  The target: the
first at most 10% over the second.  Skipped where ``distributed`` is not
installed; the smoke run (benchmarks disabled) uses 200 and 30 steps.
"""

from __future__ import annotations

from typing import Any

import pytest

import benchsteps
import microdag

pytest.importorskip("distributed", reason="Dask distributed is measured where installed (the test extras)")


@pytest.fixture(scope="module")
def client() -> Any:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as c:
            c.submit(benchsteps.one).result()  # the workers are up
            yield c


def disabled(request: pytest.FixtureRequest) -> bool:
    config = request.config
    return bool(config.getoption("benchmark_disable")) and not config.getoption("benchmark_enable")


def flows(request: pytest.FixtureRequest) -> tuple[microdag.Flow, microdag.Flow]:
    small = disabled(request)
    independent = microdag.Flow("independent")
    for i in range(200 if small else 2_000):
        independent.add(f"t{i}", benchsteps.one)
    chain = microdag.Flow("chain")
    chain.add("s0", benchsteps.add_one)
    for i in range(1, 30 if small else 300):
        chain.add(f"s{i}", benchsteps.add_one, depends_on=[f"s{i - 1}"])
    return independent, chain


def by_hand(client: Any, flow: microdag.Flow) -> dict[str, Any]:
    """The same steps with ``client.submit``, each given its dependency's future."""
    graph = flow.graph
    futures: dict[str, Any] = {}
    for name in flow.steps:
        deps = graph.dependencies(name)
        fn = benchsteps.add_one if deps else benchsteps.one
        kwargs = {dep: futures[dep] for dep in deps}
        futures[name] = client.submit(fn, pure=False, **kwargs)
    leaves = [name for name in futures if not graph.dependents(name)]  # what Run.outputs holds
    return dict(zip(leaves, client.gather([futures[name] for name in leaves])))


@pytest.mark.benchmark(group="dask-2-workers")
@pytest.mark.parametrize("workload", ["independent", "chain"])
@pytest.mark.parametrize("runner", ["client.submit", "microdag"])
def test_dask_overhead(benchmark: Any, client: Any, runner: str, workload: str,
                       request: pytest.FixtureRequest) -> None:
    independent, chain = flows(request)
    flow = independent if workload == "independent" else chain
    if runner == "microdag":
        outputs = benchmark.pedantic(lambda: flow.run(executor=client).outputs, rounds=7, warmup_rounds=1)
    else:
        outputs = benchmark.pedantic(lambda: by_hand(client, flow), rounds=7, warmup_rounds=1)
    n = len(flow.steps)
    assert outputs == ({name: 1 for name in flow.steps} if workload == "independent" else {f"s{n - 1}": n})
