"""Memory of a compiled flow of a million steps, and of a run of it.

Usage::

    python bench/memory_flow.py                       # chain and layered, add and add_many
    python bench/memory_flow.py --steps 200000 --shape chain --build add_many

For each shape (a chain; layers of 1,000 with 3 dependencies each) and each
way of building (``add``: one call per step; ``add_many``), two fresh
interpreters (so that neither measurement disturbs the other) first make the
step names and dependency lists (the user's data: not counted), then:

- RSS: growth of the *current* resident set (``/proc/self/statm``) from
  before building to after ``validate()`` (the compiled flow), then to after
  ``flow.run()`` (its ``Run`` held; the outputs of the steps nothing depends
  on kept, as by default);
- tracemalloc: traced size after ``validate()``, and the traced *peak*
  during the run above the compiled flow (what a run adds at its height).

Bytes per step; the target is the larger of the two measures.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")


def add_up(**deps: int) -> int:
    return 1 + sum(deps.values())


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(shape: str, build: str, n: int, traced: bool) -> dict[str, float]:
    import random
    import tracemalloc

    import microdag

    names = [f"s{i}" for i in range(n)]
    if shape == "chain":
        deps = [[names[i - 1]] if i else [] for i in range(n)]
    else:
        rnd = random.Random(7)
        deps = [[] if i < 1000 else [names[j] for j in rnd.sample(range((i // 1000 - 1) * 1000, (i // 1000) * 1000), 3)]
                for i in range(n)]
    gc.collect()
    before = rss()
    if traced:
        tracemalloc.start()
    flow = microdag.Flow("memory")
    if build == "add_many":
        flow.add_many(names, add_up, depends_on=deps)
    else:
        for name, d in zip(names, deps):
            flow.add(name, add_up, depends_on=d)
    flow.validate()
    gc.collect()
    out: dict[str, float] = {}
    if traced:
        compiled = tracemalloc.get_traced_memory()[0]
        out["compiled"] = compiled / n
        tracemalloc.reset_peak()
        run = flow.run()
        out["run"] = (tracemalloc.get_traced_memory()[1] - compiled) / n
    else:
        out["compiled"] = (rss() - before) / n
        compiled = rss()
        run = flow.run()
        out["run"] = (rss() - compiled) / n
    assert run.status == "succeeded"
    return out


def measure(shape: str, build: str, n: int, traced: bool) -> dict[str, float]:
    code = (f"import json, sys; sys.path[:0] = [{SRC!r}, {HERE!r}]; import memory_flow; "
            f"print(json.dumps(memory_flow.child({shape!r}, {build!r}, {n}, {traced})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--shape", choices=("chain", "layered"), action="append")
    parser.add_argument("--build", choices=("add", "add_many"), action="append")
    args = parser.parse_args(argv)
    print(f"{'shape':8} {'build':9} {'compiled: rss':>14} {'tracemalloc':>12} {'run adds: rss':>14} {'peak':>6}  (bytes per step, {args.steps:,} steps)")
    for shape in args.shape or ["chain", "layered"]:
        for build in args.build or ["add", "add_many"]:
            r = measure(shape, build, args.steps, False)
            t = measure(shape, build, args.steps, True)
            print(f"{shape:8} {build:9} {r['compiled']:14.0f} {t['compiled']:12.0f} {r['run']:14.0f} {t['run']:6.0f}")


if __name__ == "__main__":
    main()
