"""The report of a huge run: ``python bench/report_scale.py N memory|sqlite``.

Runs N tiny steps (chains of 10, inline) into the store, then times
``store.report(run_id)`` and prints the run's time, the report's time and
its size (docs/performance.md, "Reports of huge runs").
"""

import sys
import tempfile
import time

import microdag
from microdag.stores import MemoryStore, SQLiteStore


def ok(**deps: object) -> int:
    return 1


def main(n: int, kind: str) -> None:
    flow = microdag.Flow("big")
    for i in range(n):
        flow.add(f"s{i}", ok, depends_on=[f"s{i - 1}"] if i % 10 else [])
    flow.validate()
    store = MemoryStore() if kind == "memory" else SQLiteStore(tempfile.mkdtemp() + "/runs.db")
    started = time.perf_counter()
    run = flow.run(store=store)
    print(f"run: {time.perf_counter() - started:.2f} s")
    started = time.perf_counter()
    html = store.report(run.id)
    print(f"report: {time.perf_counter() - started:.2f} s, {len(html.encode()) / 1e6:.2f} MB")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
