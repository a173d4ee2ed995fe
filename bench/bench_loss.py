"""What a ``kill -9`` costs a durable run: the finished work a resume runs again.

A child process runs 240 steps of 10 ms each (60 layers of 4, each step after
one of the layer above) with a store, and is SIGKILLed after a random 0.2 to
0.9 s.  The steps that finished (each notes it in a file as it returns) but
are not recorded as succeeded are what a resume runs again; their durations,
summed, are the work lost.  ``extra_info``: the median and largest loss over
the kills, in ms, and the bound (0.1 s of step time, plus the step each worker
was just finishing).  The smoke run kills twice per case.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
from typing import Any

import pytest

from bench_flow import disabled

TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
sys.path.insert(0, TESTS)
import durablesteps as ds  # noqa: E402

SECONDS = 0.01


def kill_once(kind: str, executor: str, rng: random.Random) -> tuple[float, float]:
    """One run killed at a random moment: (work lost, longest step), in seconds."""
    from microdag.stores import JSONStore, SQLiteStore

    with tempfile.TemporaryDirectory() as where:
        marks = os.path.join(where, "marks")
        os.mkdir(marks)
        path = os.path.join(where, "store.db" if kind == "sqlite" else "store")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])}
        run_id = ds.kill_timed_run(f"{kind}:{path}", marks, executor, SECONDS, rng.uniform(0.2, 0.9), env)
        finished = ds.finished_steps(marks)
        store = SQLiteStore(path) if kind == "sqlite" else JSONStore(path)
        try:
            recorded = {r.step for r in store.tasks(run_id, outputs=False) if r.status == "succeeded"}
        finally:
            store.close()
        lost = sum(seconds for name, seconds in finished.items() if name not in recorded)
        return lost, max(finished.values(), default=0.0)


@pytest.mark.benchmark(group="durable-loss-after-kill")
@pytest.mark.parametrize("executor", ["inline", "threads"])
@pytest.mark.parametrize("kind", ["sqlite", "json"])
def test_work_lost_to_a_kill(benchmark: Any, kind: str, executor: str, request: pytest.FixtureRequest) -> None:
    kills = 2 if disabled(request) else 20
    rng = random.Random(f"{kind} {executor}")
    losses: list[float] = []
    longest: list[float] = []

    def trial() -> None:
        lost, step = kill_once(kind, executor, rng)
        losses.append(lost)
        longest.append(step)

    benchmark.pedantic(trial, rounds=kills, iterations=1)
    workers = 1 if executor == "inline" else 2
    bound = 0.1 + workers * max(longest)
    assert max(losses) <= bound, (losses, bound)
    benchmark.extra_info["lost_ms_median"] = round(statistics.median(losses) * 1e3, 1)
    benchmark.extra_info["lost_ms_max"] = round(max(losses) * 1e3, 1)
    benchmark.extra_info["bound_ms"] = round(bound * 1e3, 1)
