"""Peak memory of a long durable run: ``python bench/memory_durable.py [--steps N]``.

Builds a layered flow of N steps (1000 wide, 3 dependencies each, outputs are
small ints), compiles it, and measures in a fresh process: the resident memory
the compiled flow added (flow, graph, kernel), then the peak resident memory
of ``flow.run(store=SQLiteStore(...))`` over that.  With outputs released
after use and recorded in the store, the run should stay within 2x the memory
of the compiled flow.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile

CHILD = r"""
import os, random, resource, sys, tempfile
import microdag
from microdag.stores import SQLiteStore

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def add_up(**deps):
    return 1 + sum(deps.values())

n = int(sys.argv[1])
rnd = random.Random(7)
before = rss()
flow = microdag.Flow("memory")
for i in range(n):
    layer = i // 1000
    deps = [f"s{j}" for j in rnd.sample(range((layer - 1) * 1000, layer * 1000), 3)] if layer else []
    flow.add(f"s{i}", add_up, depends_on=deps)
flow.validate()
compiled = rss() - before
peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with tempfile.TemporaryDirectory() as d:
    run = flow.run(store=SQLiteStore(os.path.join(d, "runs.db")))
    assert run.status == "succeeded"
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(compiled, max(peak - (before + compiled), 0), peak_before)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    args = parser.parse_args()
    out = subprocess.run([sys.executable, "-c", CHILD, str(args.steps)], capture_output=True, text=True, check=True)
    compiled, extra, _ = (int(x) for x in out.stdout.split())
    print(f"steps: {args.steps:,}")
    print(f"compiled flow: {compiled / 2**20:,.1f} MiB ({compiled / args.steps:,.0f} bytes/step)")
    print(f"run with SQLiteStore, peak over the compiled flow: {extra / 2**20:,.1f} MiB "
          f"({extra / max(compiled, 1):.2f}x the compiled flow)")


if __name__ == "__main__":
    main()
