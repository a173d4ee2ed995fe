"""Peak memory of a dask.array reduction: ``microdag.dask.get`` against Dask's schedulers.

Usage::

    python bench/memory_dask_get.py                 # 3 rounds, every scheduler, both graphs
    python bench/memory_dask_get.py --rounds 1 --chunks 200

The workload: ``da.arange(chunks * 125_000, chunks=125_000, dtype=float).sum()``,
a reduction Dask keeps small: each chunk (1 MB) is made, summed and dropped,
and the partial sums are combined in a tree.  Computed twice: with Dask's
graph optimization (each chunk's ``arange`` and ``sum`` fused into one task)
and without it (the chunk is a task of its own, whose value waits for its
``sum``: the order in which a scheduler runs the tasks decides how many
chunks are alive at once).

Each (scheduler, graph, round) runs in a fresh interpreter, rounds taken in
turns, which measures:

- ``tracemalloc``: the traced peak during ``dask.compute`` (numpy reports its
  arrays' data to tracemalloc), started after Dask and the collection were
  made;
- RSS: the growth of the peak resident set (``ru_maxrss``) over the same
  call;
- the wall time of the call.

Schedulers: ``microdag.dask.get`` and ``dask.threaded.get`` on 2 threads,
``microdag.dask.get_sync`` and ``dask.get``.  Prints medians per scheduler
and graph, and the ratio of microdag's peak to Dask's (same threads).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")

SCHEDULERS = ("microdag.dask.get-2", "dask.threaded.get-2", "microdag.dask.get_sync", "dask.get")

CHILD = r"""
import json, resource, sys, time, tracemalloc
import dask, dask.array as da, dask.threaded
from microdag import dask as mdask

name, optimize, chunks = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
get = {
    "microdag.dask.get-2": lambda dsk, keys, **kw: mdask.get(dsk, keys, num_workers=2, **kw),
    "dask.threaded.get-2": lambda dsk, keys, **kw: dask.threaded.get(dsk, keys, num_workers=2, **kw),
    "microdag.dask.get_sync": mdask.get_sync,
    "dask.get": dask.get,
}[name]
total = da.arange(chunks * 125_000, chunks=125_000, dtype=float).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
start = time.perf_counter()
(value,) = dask.compute(total, scheduler=get, optimize_graph=optimize)
seconds = time.perf_counter() - start
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
n = chunks * 125_000
assert value == n * (n - 1) / 2, value
print(json.dumps({"traced": peak, "rss": grew * 1024, "seconds": seconds}))
"""


def measure(name: str, optimize: bool, chunks: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", CHILD, name, "1" if optimize else "0", str(chunks)],
                          capture_output=True, text=True, check=True, env=env)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunks", type=int, default=1000, help="chunks of 1 MB (default 1000)")
    args = parser.parse_args(argv)
    mib = 2**20
    for optimize in (True, False):
        seen: dict[str, list[dict[str, float]]] = {name: [] for name in SCHEDULERS}
        for _ in range(args.rounds):
            for name in SCHEDULERS:  # in turns, so that a noisy minute hits every scheduler
                seen[name].append(measure(name, optimize, args.chunks))
        print(f"\n{args.chunks} chunks of 1 MB, .sum(), graph optimization {'on' if optimize else 'off'} "
              f"(medians of {args.rounds}):")
        print(f"{'scheduler':26} {'traced peak MiB':>16} {'RSS growth MiB':>15} {'seconds':>8}")
        med: dict[str, dict[str, float]] = {}
        for name in SCHEDULERS:
            med[name] = {key: statistics.median(r[key] for r in seen[name]) for key in ("traced", "rss", "seconds")}
            m = med[name]
            print(f"{name:26} {m['traced'] / mib:16.1f} {m['rss'] / mib:15.1f} {m['seconds']:8.3f}")
        for ours, theirs in (("microdag.dask.get-2", "dask.threaded.get-2"), ("microdag.dask.get_sync", "dask.get")):
            print(f"{ours} / {theirs}: traced peak {med[ours]['traced'] / med[theirs]['traced']:.2f}x, "
                  f"time {med[ours]['seconds'] / med[theirs]['seconds']:.2f}x")


if __name__ == "__main__":
    main()
