"""Keyed maps: a map of 10,000 tiny items with ``key=`` against the same map without.

Workload: items ``{"id": "q<i>", "x": i}`` (and the same as dataclasses, whose
key is an attribute), a step returning ``x + 1``, one task per item.  Timed
without a store (inline and threads, 2 workers: the keys are read and checked
once, three passes in C over the list, beside a loop that costs under 0.1 us
an item) and with an SQLite store (the case keys are for: every item is
recorded, now with its key).  ``extra_info["us_per_item"]`` is the median per
item; compare a keyed case with its unkeyed twin in the same run.

Run: ``PYTHONPATH=src python -m pytest bench/bench_keyed.py --benchmark-enable
--benchmark-columns=median,min,rounds -p no:cacheprovider``.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import pytest

import microdag

N = 10_000
_RUNS = itertools.count()


@dataclasses.dataclass(frozen=True)
class Item:
    id: str
    x: int


# Unannotated: a run checks the inputs an annotated parameter takes, item by
# item (about 1 us an item, ten times this map), which is not what is measured here.
def bump(item):  # type: ignore[no-untyped-def]
    return item["x"] + 1


def bump_attr(item):  # type: ignore[no-untyped-def]
    return item.x + 1


def disabled(request: pytest.FixtureRequest) -> bool:
    """Whether this is the smoke run (benchmarks disabled, not forced back on)."""
    config = request.config
    return bool(config.getoption("benchmark_disable")) and not config.getoption("benchmark_enable")


@pytest.mark.benchmark(group="keyed-map-10k")
@pytest.mark.parametrize("keyed", [False, True], ids=["unkeyed", "keyed"])
@pytest.mark.parametrize("case", ["inline-dict", "inline-attr", "threads-dict", "sqlite-dict"])
def test_keyed_map(benchmark: Any, case: str, keyed: bool, request: pytest.FixtureRequest,
                   tmp_path: Path) -> None:
    n = 500 if disabled(request) else N
    where, shape = case.split("-")
    items: list[Any] = ([{"id": f"q{i}", "x": i} for i in range(n)] if shape == "dict"
                        else [Item(f"q{i}", i) for i in range(n)])
    flow = microdag.Flow("keyed")
    flow.add("m", bump if shape == "dict" else bump_attr, map="item", **({"key": "id"} if keyed else {}))
    kwargs: dict[str, Any] = {"executor": "inline"}
    if where == "threads":
        kwargs = {"executor": "threads", "max_workers": 2}
    if where == "sqlite":
        store = str(tmp_path / "runs.db")
        kwargs = {"store": store}

        def call() -> Any:
            return flow.run({"item": items}, run_id=f"r{next(_RUNS)}", **kwargs)
    else:
        def call() -> Any:
            return flow.run({"item": items}, **kwargs)

    rounds = 1 if n < N else (5 if where == "sqlite" else 15)
    run = benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=0 if n < N else 1)
    assert run["m"][-1] == n
    if benchmark.stats is not None:
        benchmark.extra_info["us_per_item"] = round(benchmark.stats.stats.median / n * 1e6, 3)
