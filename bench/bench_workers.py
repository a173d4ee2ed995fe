"""Runs shared through a store's work queue: throughput, wake-up latency, work lost to a kill -9.

Each case runs on SQLite (a file) and PostgreSQL (a database on the tests'
throwaway server, ``tests/pgserver.py``, which runs with ``fsync=off`` and
``synchronous_commit=off``: its commits cost no disk flush; skipped where
there is no PostgreSQL).

- ``throughput[microdag]``: two ``python -m microdag worker`` processes,
  started and idle, serve one submitted run of 5,000 tiny independent steps
  (500 in the smoke run); timed from the run's start to its recorded end
  (``extra_info["steps_per_s"]``);
- ``throughput[floor]``: the same rows claimed and finished by two processes
  running a hand-written loop on the same database: take up to 64 ready rows
  (SQLite: in ``BEGIN IMMEDIATE``; PostgreSQL: ``FOR UPDATE SKIP LOCKED``),
  mark them claimed, commit (SQLite: not fsync'd); then mark them done,
  commit (fsync'd): what any queue in that database pays, with no step
  called, no record written and no dependency followed;
- ``latency``: with both workers idle, one-step runs submitted one after
  another; the time from the commit that makes the step ready to the step's
  start (``extra_info["median_ms"]``, ``"p90_ms"``);
- ``lost_work``: a worker running 0.2 s steps with a 1 s lease is SIGKILLed
  in the middle of one; the time from that attempt's claim to its next
  attempt's claim is what the kill cost (``extra_info``: measured and the
  bound: the step's time, the lease, and the step the other worker has in
  hand when the lease runs out).

The workers are real processes; a wide flow is the shape where batched
claims (up to 64 steps per transaction) pay.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import pytest

from bench_flow import disabled

BATCH = 64
TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
KINDS = ["sqlite", "postgres"]


def new_store(kind: str, where: str) -> str:
    """The spec of an empty store of ``kind``."""
    from microdag.stores import SQLiteStore

    if kind == "sqlite":
        spec = os.path.join(where, "runs.db")
        SQLiteStore(spec).close()
        return spec
    sys.path.insert(0, TESTS)
    import pgserver

    why = pgserver.missing()
    if why is not None:
        pytest.skip(why)
    return pgserver.new_database()  # type: ignore[no-any-return]


def env() -> dict[str, str]:
    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.join(os.path.dirname(here), "src")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


def flow_file(where: str, n: int, seconds: float = 0.0) -> str:
    path = os.path.join(where, "flow.py")
    with open(path, "w") as f:
        f.write(
            "import time\nimport microdag\nflow = microdag.Flow('bench')\n"
            f"def step(**deps):\n    {'time.sleep(%r)' % seconds if seconds else 'pass'}\n    return time.time()\n"
            f"for i in range({n}):\n    flow.add(f's{{i}}', step)\n"
        )
    return path


def workers(db: str, flows: str, count: int = 2, *args: str) -> list[subprocess.Popen[bytes]]:
    procs = [subprocess.Popen([sys.executable, "-m", "microdag", "worker", "--store", db, "--flows", flows, *args],
                              stderr=subprocess.DEVNULL, env=env()) for _ in range(count)]
    time.sleep(1.5)  # serving, idle
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def submit(flow: str, db: str) -> str:
    done = subprocess.run([sys.executable, "-m", "microdag", "submit", flow, "--store", db], capture_output=True,
                          text=True, env=env(), check=True)
    return done.stdout.strip()


def wait_end(store: Any, run_id: str) -> Any:
    while True:
        info = store.run_info(run_id)
        if info.status != "running":
            return info
        time.sleep(0.005)


def microdag_throughput(kind: str, n: int) -> float:
    from microdag.stores import open_store

    with tempfile.TemporaryDirectory() as where:
        db = new_store(kind, where)
        flow = flow_file(where, n)
        procs = workers(db, flow)
        try:
            run_id = submit(flow, db)
            store = open_store(db, readonly=True)
            info = wait_end(store, run_id)
            assert info.status == "succeeded"
            tasks = store.tasks(run_id, outputs=False)
            first = min(t.started for t in tasks)
            return n / (info.finished - first)
        finally:
            stop(procs)


FLOOR = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("PRAGMA journal_mode = WAL")
began = ended = time.time()
while True:
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("BEGIN IMMEDIATE")
    rows = db.execute("SELECT id FROM q WHERE state = 0 LIMIT %d" % int(sys.argv[2])).fetchall()
    db.executemany("UPDATE q SET state = 1 WHERE id = ?", rows)
    db.execute("COMMIT")
    if not rows:
        break
    db.execute("PRAGMA synchronous = FULL")
    db.execute("BEGIN IMMEDIATE")
    db.executemany("UPDATE q SET state = 2 WHERE id = ?", rows)
    db.execute("COMMIT")
    ended = time.time()
print(began, ended)
"""


PG_FLOOR = """
import sys, time
import psycopg
db = psycopg.connect(sys.argv[1], autocommit=True)
began = ended = time.time()
while True:
    with db.transaction():
        rows = db.execute("SELECT id FROM q WHERE state = 0 LIMIT %d FOR UPDATE SKIP LOCKED" % int(sys.argv[2])).fetchall()
        db.cursor().executemany("UPDATE q SET state = 1 WHERE id = %s", rows)
    if not rows:
        break
    with db.transaction():
        db.cursor().executemany("UPDATE q SET state = 2 WHERE id = %s", rows)
    ended = time.time()
print(began, ended)
"""


def floor_throughput(kind: str, n: int) -> float:
    if kind == "postgres":
        return pg_floor_throughput(n)
    with tempfile.TemporaryDirectory() as where:
        db = os.path.join(where, "floor.db")
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("CREATE TABLE q (id INTEGER PRIMARY KEY, state INTEGER NOT NULL)")
        con.execute("CREATE INDEX q_state ON q (state)")
        con.execute("BEGIN")
        con.executemany("INSERT INTO q VALUES (?, 0)", [(i,) for i in range(n)])
        con.execute("COMMIT")
        procs = [subprocess.Popen([sys.executable, "-c", FLOOR, db, str(BATCH)], stdout=subprocess.PIPE, text=True)
                 for _ in range(2)]
        times = [tuple(map(float, p.communicate()[0].split())) for p in procs]
        assert con.execute("SELECT COUNT(*) FROM q WHERE state = 2").fetchone()[0] == n
        return n / (max(t[1] for t in times) - min(t[0] for t in times))  # (from the first claim: no start-up)


def pg_floor_throughput(n: int) -> float:
    import psycopg

    with tempfile.TemporaryDirectory() as where:
        url = new_store("postgres", where)
        con = psycopg.connect(url, autocommit=True)
        con.execute("CREATE TABLE q (id INTEGER PRIMARY KEY, state INTEGER NOT NULL)")
        con.execute("CREATE INDEX q_state ON q (state)")
        con.execute("INSERT INTO q SELECT i, 0 FROM generate_series(0, %s) AS i", (n - 1,))
        procs = [subprocess.Popen([sys.executable, "-c", PG_FLOOR, url, str(BATCH)], stdout=subprocess.PIPE, text=True)
                 for _ in range(2)]
        times = [tuple(map(float, p.communicate()[0].split())) for p in procs]
        assert con.execute("SELECT COUNT(*) FROM q WHERE state = 2").fetchone()[0] == n
        con.close()
        return n / (max(t[1] for t in times) - min(t[0] for t in times))


@pytest.mark.benchmark(group="workers-throughput")
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("who", ["microdag", "floor"])
def test_throughput(benchmark: Any, request: pytest.FixtureRequest, who: str, kind: str) -> None:
    n = 500 if disabled(request) else 5_000
    measure = microdag_throughput if who == "microdag" else floor_throughput
    rates: list[float] = []
    benchmark.pedantic(lambda: rates.append(measure(kind, n)), rounds=1 if disabled(request) else 3, iterations=1)
    benchmark.extra_info["steps_per_s"] = round(statistics.median(rates))


@pytest.mark.benchmark(group="workers-latency")
@pytest.mark.parametrize("kind", KINDS)
def test_latency(benchmark: Any, request: pytest.FixtureRequest, kind: str) -> None:
    from microdag._spec import load_flow
    from microdag.runner import RunOptions
    from microdag.runner.workers import submit as submit_run
    from microdag.stores import open_store
    from microdag.stores._sql_queue import SQLQueue

    runs = 5 if disabled(request) else 40
    committed: list[float] = []
    submit_plan = SQLQueue.submit

    def timed(self: Any, run_id: str, plan: Any) -> None:
        submit_plan(self, run_id, plan)
        committed.append(time.time())

    with tempfile.TemporaryDirectory() as where:
        db = new_store(kind, where)
        path = flow_file(where, 1)
        flow = load_flow(path)
        procs = workers(db, path)
        SQLQueue.submit = timed  # type: ignore[method-assign]
        store = open_store(db)
        delays: list[float] = []
        try:
            def one() -> None:
                options = RunOptions(executor="workers", max_workers=None, targets=None, on_failure="fail_fast",
                                     hooks=(), keep_outputs=False, cancel=None, store=store, run_id=None,
                                     resume=False, force=False)
                _, run_id, _, _ = submit_run(flow._compiled(), flow.name, path, None, options)
                wait_end(store, run_id)
                delays.append(store.output(run_id, "s0") - committed[-1])
                time.sleep(0.2)  # the workers idle again (backed off)

            benchmark.pedantic(one, rounds=runs, iterations=1)
        finally:
            SQLQueue.submit = submit_plan  # type: ignore[method-assign]
            stop(procs)
    delays.sort()
    benchmark.extra_info["median_ms"] = round(statistics.median(delays) * 1e3, 2)
    benchmark.extra_info["p90_ms"] = round(delays[int(len(delays) * 0.9)] * 1e3, 2)


@pytest.mark.benchmark(group="workers-lost-work")
@pytest.mark.parametrize("kind", KINDS)
def test_lost_work(benchmark: Any, request: pytest.FixtureRequest, kind: str) -> None:
    from microdag.stores import open_store

    lease, seconds = 1.0, 0.2
    lost: list[float] = []

    def once() -> None:
        with tempfile.TemporaryDirectory() as where:
            db = new_store(kind, where)
            flow = flow_file(where, 40, seconds)
            procs = workers(db, flow, 2, "--lease", str(lease))
            try:
                run_id = submit(flow, db)
                time.sleep(1.0 + seconds / 2)  # in the middle of a step
                procs[0].kill()
                store = open_store(db, readonly=True)
                assert wait_end(store, run_id).status == "succeeded"
                gone = [a for a in store.attempts(run_id) if a[5] == "WorkerLost"]
                lost.extend(a[4] - a[3] for a in gone)
            finally:
                stop(procs)

    benchmark.pedantic(once, rounds=1 if disabled(request) else 3, iterations=1)
    benchmark.extra_info["lost_s_max"] = round(max(lost), 3)
    benchmark.extra_info["lost_s_median"] = round(statistics.median(lost), 3)
    benchmark.extra_info["bound_s"] = lease + 2 * seconds  # (and the survivor's step in hand, to take it)
    assert max(lost) <= lease + 2 * seconds + 0.2
