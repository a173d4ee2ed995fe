"""Durable runs: the flow-engine workload (50,000 layered steps, inline) with
each store, and the resume of a run that stopped at 90%.

- ``test_store_overhead``: ``flow.run(store=...)`` with no store, a
  ``MemoryStore``, a ``JSONStore``, an ``SQLiteStore`` and a ``PostgresStore``
  (a fresh store per round: files in a temporary directory, a new database on
  the tests' PostgreSQL server, ``tests/pgserver.py``, on this machine);
  ``extra_info["us_per_step"]``;
- ``test_store_1k``: the same for a run of 1,000 tiny steps (where the
  per-run costs show: opening the run, the last commit).
- ``test_resume_decision``: a run whose steps after the first 90% failed is
  resumed and stopped (Ctrl-C from a hook) when it starts the first step it
  runs again; ``extra_info["decision_us_per_recorded_step"]`` is the time
  from the call to that moment (reading what the store recorded, marking
  those steps done, setting the run up), ``extra_info["us_per_recorded_step"]``
  the whole call (which also records the interrupted resume's end).

The smoke run (benchmarks disabled) uses 2,000 steps.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from typing import Any

import pytest

import microdag
from bench_flow import add_up, disabled, layered_deps
from microdag.stores import JSONStore, MemoryStore, PostgresStore, SQLiteStore


def postgres_store(folder: str) -> PostgresStore:
    """A store in a new database of the tests' PostgreSQL server (skipped where there is none)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
    from support import postgres_url  # (the tests' server: started once, stopped at exit)

    return PostgresStore(postgres_url())


STORES = {
    "none": lambda d: None,
    "memory": lambda d: MemoryStore(),
    "json": lambda d: JSONStore(d + "/store"),
    "sqlite": lambda d: SQLiteStore(d + "/runs.db"),
    "postgres": postgres_store,
}


def build(n: int) -> microdag.Flow:
    flow = microdag.Flow("durable")
    for name, ds in layered_deps(n).items():
        flow.add(name, add_up, depends_on=ds)
    flow.validate()
    return flow


_FLOWS: dict[int, microdag.Flow] = {}


def flow_of(n: int) -> microdag.Flow:
    if n not in _FLOWS:
        _FLOWS[n] = build(n)
    return _FLOWS[n]


@pytest.mark.benchmark(group="durable-50k-layered")
@pytest.mark.parametrize("kind", list(STORES))
def test_store_overhead(benchmark: Any, kind: str, request: pytest.FixtureRequest) -> None:
    n = 2_000 if disabled(request) else 50_000
    _timed_runs(benchmark, kind, n, 1 if n == 2_000 else 3)


@pytest.mark.benchmark(group="durable-1k-tiny")
@pytest.mark.parametrize("kind", list(STORES))
def test_store_1k(benchmark: Any, kind: str, request: pytest.FixtureRequest) -> None:
    _timed_runs(benchmark, kind, 1_000, 1 if disabled(request) else 7)


def _timed_runs(benchmark: Any, kind: str, n: int, rounds: int) -> None:
    """``rounds`` runs of the ``n``-step flow, each with a fresh store of ``kind`` (closed after)."""
    flow = flow_of(n)
    dirs: list[Any] = []
    stores: list[Any] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        folder = tempfile.TemporaryDirectory()
        dirs.append(folder)
        stores.append(STORES[kind](folder.name))
        return (), {"store": stores[-1]}

    run = benchmark.pedantic(lambda store: flow.run(store=store), setup=setup, rounds=rounds, iterations=1)
    assert run.status == "succeeded"
    if benchmark.stats:
        benchmark.extra_info["us_per_step"] = round(benchmark.stats.stats.median / n * 1e6, 3)
    for store in stores:
        if store is not None:
            store.close()
    for folder in dirs:
        folder.cleanup()


class _Stop(Exception):
    pass


@pytest.mark.benchmark(group="durable-resume-90pct")
@pytest.mark.parametrize("kind", ["sqlite", "json"])
def test_resume_decision(benchmark: Any, kind: str, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    n = 2_000 if disabled(request) else 50_000
    cut = int(n * 0.9)
    names = list(layered_deps(n))
    late = set(names[cut:])

    def stop_late(**deps: int) -> int:
        raise _Stop()

    first = microdag.Flow("durable")
    for name, ds in layered_deps(n).items():
        first.add(name, stop_late if name in late else add_up, depends_on=ds)
    store = STORES[kind](str(tmp_path))
    crashed = first.run(store=store, raise_on_failure=False, on_failure="continue")
    recorded = sum(1 for t in crashed.tasks.values() if t.status == "succeeded")

    decided: list[float] = []  # seconds from the call to the first step it runs again

    def on_first_step(event: microdag.Event) -> None:
        if event.kind == "step_started":
            decided.append(time.perf_counter() - began[-1])
            raise KeyboardInterrupt  # stop the resume as soon as it runs a step

    began: list[float] = []

    def resume() -> None:
        began.append(time.perf_counter())
        try:
            first.run(store=store, run_id=crashed.id, resume=True, force=True, hooks=[on_first_step],
                      raise_on_failure=False)
        except KeyboardInterrupt:
            pass

    benchmark.pedantic(resume, rounds=1 if n == 2_000 else 3, iterations=1)
    if benchmark.stats:
        # the benchmark's time also holds recording the interrupted resume's end
        benchmark.extra_info["us_per_recorded_step"] = round(benchmark.stats.stats.median / recorded * 1e6, 3)
        benchmark.extra_info["decision_us_per_recorded_step"] = round(
            statistics.median(decided) / recorded * 1e6, 3
        )
    assert len(decided) == len(began)
    assert recorded >= cut * 0.9
