"""Building a flow: ``flow.add`` (one step a call) and ``flow.add_many`` (in
bulk), then compiling it (``validate``), beside ``graphlib`` preparing the
same graph.

Shapes (``graphs.py``-style, as issue figures use them): a chain (each step
depends on the one before) and the layered graph (layers of 1,000, each step
depending on 3 steps of the layer above), 1,000,000 steps (5,000 in the smoke
run); every step shares one function of ``**deps`` and the default options.
Timed from the step names and dependency lists (built once, untimed):

- ``graphlib``: ``graphlib.TopologicalSorter(deps).prepare()``;
- ``add``: ``Flow``, one ``flow.add(name, fn, depends_on=deps)`` per step,
  then ``flow.validate()`` (which compiles);
- ``add_many``: ``Flow``, one ``flow.add_many(names, fn, depends_on=deps)``,
  then ``flow.validate()``;
- ``add_options``: as ``add``, each step given two options
  (``retries=2, timeout=60.0``, the same for every step).

``extra_info["us_per_step"]``: the median, per step.
"""

from __future__ import annotations

import graphlib
import random
from typing import Any

import pytest

import microdag
from bench_flow import disabled, per_step

WIDTH = 1000


def add_up(**deps: int) -> int:
    return 1 + sum(deps.values())


_SHAPES: dict[tuple[str, int], tuple[list[str], list[list[str]]]] = {}


def shape(kind: str, n: int) -> tuple[list[str], list[list[str]]]:
    """Step names and each step's dependencies."""
    if (kind, n) not in _SHAPES:
        names = [f"s{i}" for i in range(n)]
        if kind == "chain":
            deps = [[names[i - 1]] if i else [] for i in range(n)]
        else:
            rnd = random.Random(7)
            deps = [[] if i < WIDTH else [names[j] for j in rnd.sample(range((i // WIDTH - 1) * WIDTH,
                                                                                 (i // WIDTH) * WIDTH), 3)]
                    for i in range(n)]
        _SHAPES.clear()
        _SHAPES[(kind, n)] = (names, deps)
    return _SHAPES[(kind, n)]


def build_add(names: list[str], deps: list[list[str]]) -> microdag.Flow:
    flow = microdag.Flow("built")
    add = flow.add
    for name, d in zip(names, deps):
        add(name, add_up, depends_on=d)
    flow.validate()
    return flow


def build_add_options(names: list[str], deps: list[list[str]]) -> microdag.Flow:
    flow = microdag.Flow("built")
    add = flow.add
    for name, d in zip(names, deps):
        add(name, add_up, depends_on=d, retries=2, timeout=60.0)
    flow.validate()
    return flow


def build_bulk(names: list[str], deps: list[list[str]]) -> microdag.Flow:
    flow = microdag.Flow("built").add_many(names, add_up, depends_on=deps)
    flow.validate()
    return flow


def prepare(names: list[str], deps: list[list[str]]) -> graphlib.TopologicalSorter[str]:
    ts = graphlib.TopologicalSorter(dict(zip(names, deps)))
    ts.prepare()
    return ts


@pytest.mark.benchmark(group="build")
@pytest.mark.parametrize("kind", ["chain", "layered"])
@pytest.mark.parametrize("builder", ["graphlib", "add", "add_many", "add_options"])
def test_build(benchmark: Any, kind: str, builder: str, request: pytest.FixtureRequest) -> None:
    n = 5_000 if disabled(request) else 1_000_000
    names, deps = shape(kind, n)
    fn = {"graphlib": prepare, "add": build_add, "add_many": build_bulk, "add_options": build_add_options}[builder]
    out = benchmark.pedantic(fn, args=(names, deps), rounds=3, iterations=1)
    if builder != "graphlib":
        assert len(out) == n and out.graph.names[-1] == names[-1]
    per_step(benchmark, n)
