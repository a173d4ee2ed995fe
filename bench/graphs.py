"""Deterministic benchmark graphs, as a graphlib dict and as kernel edge lists.

Every generator takes a node count ``n`` and returns a :class:`BenchGraph`
whose nodes are the ints ``0 .. n-1``, listed in the dict in id order (so
interning them in dict order gives node ``i`` the kernel id ``i``):

- ``layered``: layers of ``width`` (1000) nodes; every node below the first
  layer has 3 distinct predecessors drawn from the layer above.
- ``random``: node ``i`` draws 3 predecessors uniformly among ``0 .. i-1``
  (with replacement, duplicates dropped: "up to 3", about 3 on average).
- ``chain``: ``0 -> 1 -> ... -> n-1``, one node ready at a time.
- ``wide``: ``n`` nodes and no edges, everything ready at once.

Randomness comes from a ``random.Random`` seeded per graph kind and size, so
every run, on every machine and Python version, benchmarks the same graphs.

The benchmark size is ``MICRODAG_BENCH_N`` (default 200_000); the smoke run
(pytest with benchmarks disabled, the project default) uses
``SMOKE_N`` = 20_000 unless ``MICRODAG_BENCH_N`` is set.
"""

from __future__ import annotations

import functools
import os
import random
from dataclasses import dataclass

__all__ = [
    "KINDS",
    "SMOKE_N",
    "BenchGraph",
    "bench_size",
    "chain",
    "check_groups",
    "env_size",
    "get",
    "layered",
    "make",
    "random_dag",
    "wide",
]

DEFAULT_N = 200_000
SMOKE_N = 20_000
LAYER_WIDTH = 1000
DEGREE = 3


@dataclass(frozen=True)
class BenchGraph:
    """One benchmark graph in both shapes.

    ``deps`` maps each node to the list of its predecessors (the
    :mod:`graphlib` input); ``src[e] -> dst[e]`` are the same edges as kernel
    edge lists (``src`` is the predecessor), in dict order.
    """

    name: str
    n: int
    deps: dict[int, list[int]]
    src: list[int]
    dst: list[int]

    @property
    def edges(self) -> int:
        return len(self.src)


def env_size() -> int | None:
    """``MICRODAG_BENCH_N`` as an int, or ``None`` when unset or empty."""
    value = os.environ.get("MICRODAG_BENCH_N", "").strip().replace("_", "")
    return int(value) if value else None


def bench_size(benchmark_disabled: bool = False) -> int:
    """The node count to benchmark: ``MICRODAG_BENCH_N`` when set, else
    200_000 for real runs and 20_000 for the smoke run."""
    n = env_size()
    if n is not None:
        return n
    return SMOKE_N if benchmark_disabled else DEFAULT_N


def _edges(deps: dict[int, list[int]]) -> tuple[list[int], list[int]]:
    src: list[int] = []
    dst: list[int] = []
    for node, preds in deps.items():
        src.extend(preds)
        dst.extend([node] * len(preds))
    return src, dst


def _deps_layered(n: int, width: int = LAYER_WIDTH, seed: int = 1) -> dict[int, list[int]]:
    if width < DEGREE:
        raise ValueError(f"a layer must hold at least {DEGREE} nodes")
    rng = random.Random(f"layered-{n}-{width}-{seed}")
    rand = rng.random
    deps: dict[int, list[int]] = {i: [] for i in range(min(n, width))}
    for i in range(width, n):
        above = (i // width - 1) * width  # first id of the layer above
        preds: list[int] = []
        while len(preds) < DEGREE:  # DEGREE distinct picks, by rejection
            p = above + int(rand() * width)
            if p not in preds:
                preds.append(p)
        deps[i] = preds
    return deps


def _deps_random(n: int, seed: int = 1) -> dict[int, list[int]]:
    rng = random.Random(f"random-{n}-{seed}")
    rand = rng.random
    deps: dict[int, list[int]] = {0: []} if n else {}
    for i in range(1, n):
        picks = [int(rand() * i) for _ in range(DEGREE)]
        deps[i] = list(dict.fromkeys(picks))  # drop duplicates, keep order
    return deps


def _deps_chain(n: int) -> dict[int, list[int]]:
    deps: dict[int, list[int]] = {0: []} if n else {}
    for i in range(1, n):
        deps[i] = [i - 1]
    return deps


def _deps_wide(n: int) -> dict[int, list[int]]:
    return {i: [] for i in range(n)}


_DEPS = {
    "layered": _deps_layered,
    "random": _deps_random,
    "chain": _deps_chain,
    "wide": _deps_wide,
}

#: The graph kinds, in report order.
KINDS = tuple(_DEPS)


def make(kind: str, n: int) -> BenchGraph:
    """Build a fresh ``kind`` graph of ``n`` nodes (no caching)."""
    deps = _DEPS[kind](n)
    src, dst = _edges(deps)
    return BenchGraph(kind, n, deps, src, dst)


@functools.lru_cache(maxsize=1)
def get(kind: str, n: int) -> BenchGraph:
    """``make(kind, n)``, reused while the same graph is asked for in a row.

    Only the latest graph is kept: the benchmarks run graph by graph, and a
    cache of every graph would leave millions of live objects for the garbage
    collector to walk, slowing the object-heavy cases for nothing.  The graphs
    are read-only.
    """
    return make(kind, n)


def layered(n: int) -> BenchGraph:
    return get("layered", n)


def random_dag(n: int) -> BenchGraph:
    return get("random", n)


def chain(n: int) -> BenchGraph:
    return get("chain", n)


def wide(n: int) -> BenchGraph:
    return get("wide", n)


def check_groups(graph: BenchGraph, groups: list[list[int]] | list[tuple[int, ...]]) -> None:
    """Assert ``groups`` (successive ready batches) is a valid schedule of ``graph``:
    every node exactly once, and each after all its predecessors' batches."""
    batch = [-1] * graph.n
    for b, group in enumerate(groups):
        for node in group:
            assert batch[node] == -1, f"node {node} handed out twice"
            batch[node] = b
    missing = [i for i in range(graph.n) if batch[i] == -1]
    assert not missing, f"{len(missing)} nodes never handed out, e.g. {missing[:5]}"
    for node, preds in graph.deps.items():
        for p in preds:
            assert batch[p] < batch[node], f"node {node} handed out with or before {p}"
