"""A million-step run kept in SQLite, and the commands that look at it.

Usage::

    python bench/durable_scale.py [--steps 1000000] [--shape chain|layered]

In a temporary folder, a flow file (``big.py``: the steps built with
``add_many``, every step adding one to its dependencies' outputs) is run:

1. inline without a store, and with ``MemoryStore``, each in a fresh process
   (the time of ``flow.run()``, after compiling; the baselines);
2. with ``SQLiteStore``, in a fresh process: the run's time and the process's
   peak RSS (``ru_maxrss``);
3. ``python -m microdag runs``, ``show RUN_ID`` (the summary of a big run) and
   ``resume RUN_ID`` of that finished run (nothing left to run), each timed
   from start to its first line of output and to its end, as a shell runs them.

Targets: the SQLite run at most 2.5x the memory store's time and at most
1 GiB peak RSS; each command's first output within 1 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")

FLOW = '''
import os
import microdag

N = int(os.environ.get("BIG_STEPS", "1000000"))
SHAPE = os.environ.get("BIG_SHAPE", "chain")


def add_up(**deps):
    return 1 + sum(deps.values())


names = [f"s{i}" for i in range(N)]
if SHAPE == "chain":
    deps = [[names[i - 1]] if i else [] for i in range(N)]
else:
    import random
    rnd = random.Random(7)
    deps = [[] if i < 1000 else [names[j] for j in rnd.sample(range((i // 1000 - 1) * 1000, (i // 1000) * 1000), 3)]
            for i in range(N)]
flow = microdag.Flow("big").add_many(names, add_up, depends_on=deps)
'''

RUN = r'''
import resource, sys, time
sys.path.insert(0, sys.argv[1])
import big
from microdag.stores import MemoryStore, SQLiteStore
big.flow.validate()
where = sys.argv[2]
store = None if where == "memory" else MemoryStore() if where == "MemoryStore" else SQLiteStore(where)
t = time.perf_counter()
run = big.flow.run(store=store, run_id="big-run")
took = time.perf_counter() - t
assert run.status == "succeeded", run.status
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
'''


def timed(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, float, int]:
    """Seconds to the first line of output, to the end, and the exit code."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    assert proc.stdout is not None
    proc.stdout.readline()
    first = time.perf_counter() - start
    proc.stdout.read()
    code = proc.wait()
    return first, time.perf_counter() - start, code


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--shape", choices=("chain", "layered"), default="chain")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "big.py"), "w") as f:
            f.write(FLOW)
        env = {**os.environ, "PYTHONPATH": SRC, "BIG_STEPS": str(args.steps), "BIG_SHAPE": args.shape}
        db = os.path.join(folder, "runs.db")
        out = {}
        for where in ("memory", "MemoryStore", db):
            done = subprocess.run([sys.executable, "-c", RUN, folder, where], capture_output=True, text=True,
                                  env=env, check=True)
            took, peak = done.stdout.split()
            out[where] = (float(took), int(peak))
        mem, kept, sql = out["memory"], out["MemoryStore"], out[db]
        print(f"{args.steps:,} steps ({args.shape}): no store {mem[0]:.2f} s (peak RSS {mem[1] / 2**20:.0f} MiB); "
              f"MemoryStore {kept[0]:.2f} s (peak RSS {kept[1] / 2**20:.0f} MiB); SQLite {sql[0]:.2f} s = "
              f"{sql[0] / mem[0]:.2f}x no store, {sql[0] / kept[0]:.2f}x MemoryStore (peak RSS {sql[1] / 2**20:.0f} MiB)")
        cli = [sys.executable, "-m", "microdag"]
        for name, command in (("runs", ["runs", "--store", db]), ("show", ["show", "big-run", "--store", db]),
                              ("resume", ["resume", "big-run", "big.py", "--store", db])):
            first, total, code = timed(cli + command, env, folder)
            print(f"  {name:7} first output {first:.2f} s, done {total:.2f} s (exit {code})")


if __name__ == "__main__":
    main()
