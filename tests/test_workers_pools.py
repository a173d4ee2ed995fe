"""Pools and rates across the workers of a store's work queue: the bound is the store's.

Worker processes (``python -m microdag worker``, 2-3 of them) run flows whose
steps note ``(step, pid, start, end)`` in one file; the tests check from those
intervals, across processes, that the running steps never held more than a
pool's size at any instant and that no window saw more tokens than a rate
allows.  Anything that could hang waits with a deadline (``wait_end``).
"""

import os
import time

import pytest

from test_workers import facts, shared, start_worker, stop, submit, wait_end  # noqa: F401  (shared: a fixture)

import microdag
from microdag.stores import open_store

#: Steps that hold ``db`` (pool of 2), steps that hold nothing, steps that take an ``api`` token,
#: and a map whose items hold ``db`` and fail once each before they succeed.
FLOW = '''
import os, time
import microdag

LOG = os.environ.get("WORKERS_TEST_LOG", "")
flow = microdag.Flow("pooled", pools={{"db": 2}}, rates={{"api": "{rate}"}})


def note(name, seconds, fail_once=False):
    def step(**deps):
        start = time.time()
        if fail_once and not os.path.exists(LOG + "." + name):
            open(LOG + "." + name, "w").close()
            time.sleep(seconds)
            raise RuntimeError("the first attempt fails")
        time.sleep(seconds)
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{{name}} {{os.getpid()}} {{start}} {{time.time()}}\\n".encode())
        os.close(fd)
        return name
    return step


def item(x):
    return note(f"m{{x}}", {seconds}, fail_once=True)()


for i in range({db}):
    flow.add(f"db{{i}}", note(f"db{{i}}", {seconds}), uses="db")
for i in range({free}):
    flow.add(f"free{{i}}", note(f"free{{i}}", 0.05))
for i in range({api}):
    flow.add(f"api{{i}}", note(f"api{{i}}", 0), uses="api")
if {items}:
    flow.add("xs", lambda: list(range({items})))
    flow.add("m", item, map="x", inputs={{"x": "xs"}}, uses="db", retries=1)
'''


def pooled_flow(folder, db: int = 0, free: int = 0, api: int = 0, items: int = 0, seconds: float = 0.05,
                rate: str = "20/s") -> str:
    path = os.path.join(folder, "pooled.py")
    with open(path, "w") as f:
        f.write(FLOW.format(db=db, free=free, api=api, items=items, seconds=seconds, rate=rate))
    return path


def intervals(log: str) -> "list[tuple[str, int, float, float]]":
    with open(log) as f:
        return [(name, int(pid), float(start), float(end)) for name, pid, start, end in map(str.split, f)]


def most_at_once(spans: "list[tuple[str, int, float, float]]") -> int:
    """The most intervals open at one instant (one ending as another starts: not both)."""
    edges = sorted([(end, -1) for *_, end in spans] + [(start, 1) for _, _, start, _ in spans])
    held = most = 0
    for _, delta in edges:
        held += delta
        most = max(most, held)
    return most


def pools_left(store: str, run_id: str) -> "list[tuple]":
    s = open_store(store)
    try:
        return s.queue()._query("SELECT * FROM queue_pools WHERE run_id = ?", (run_id,))  # type: ignore[attr-defined]
    finally:
        s.close()


def run_on(store: str, path: str, workers: int, timeout: float = 60, *args: str) -> "tuple[str, list]":
    log = path + ".log"
    run_id = submit(path, store, *args)
    procs = [start_worker(store, log, "--concurrency", "2") for _ in range(workers)]
    try:
        assert wait_end(store, run_id, timeout) == "succeeded"
    finally:
        stop(procs)
    return run_id, intervals(log)


def test_a_pool_bounds_the_steps_of_every_worker_and_a_step_outside_it_is_not_held_back(tmp_path, shared) -> None:
    path = pooled_flow(tmp_path, db=10, free=4, seconds=0.3)
    run_id, spans = run_on(shared, path, 3)
    db = [s for s in spans if s[0].startswith("db")]
    assert len(db) == 10 and most_at_once(db) <= 2
    assert len({pid for _, pid, _, _ in spans}) >= 2, "the steps ran on several workers"
    db_starts = sorted(start for _, _, start, _ in db)
    free_starts = [start for name, _, start, _ in spans if name.startswith("free")]
    # 6 worker threads, 2 db units: the free steps start while the db steps wait, not behind them
    assert max(free_starts) < db_starts[4]
    assert pools_left(shared, run_id) == []  # (the run's pools went with it)


def test_a_rate_holds_across_workers(tmp_path, shared) -> None:
    path = pooled_flow(tmp_path, api=30, rate="20/s")
    began = time.time()
    _, spans = run_on(shared, path, 3)
    starts = sorted(start for _, _, start, _ in spans)
    assert len(starts) == 30
    # 30 tokens at 20/s, one to start with: the last at least 29/20 s after the first (less a
    # step's latency from its claim to its start), and no 0.5 s window with more than 10 + 1
    assert 29 / 20 - 0.1 <= starts[-1] - starts[0] < 29 / 20 + 1.5
    for i, t in enumerate(starts):
        assert sum(t <= u < t + 0.5 for u in starts[i:]) <= 11 + 1, "a window saw more tokens than the rate"
    assert time.time() - began < 20, "workers waiting for a token sleep until it comes"


def test_retried_map_items_hold_and_give_back_their_units(tmp_path, shared) -> None:
    path = pooled_flow(tmp_path, db=3, items=6, seconds=0.05)
    run_id, spans = run_on(shared, path, 2)
    assert sorted(s[0] for s in spans) == sorted([f"db{i}" for i in range(3)] + [f"m{x}" for x in range(6)])
    assert most_at_once(spans) <= 2
    records, outputs, _ = facts(shared, run_id)
    assert records["m"] == ("succeeded", 2) and outputs["m"] == [f"m{x}" for x in range(6)]
    assert pools_left(shared, run_id) == []


def test_a_worker_killed_holding_units_gives_them_back_after_its_lease(tmp_path, shared) -> None:
    """db0 holds the pool's only unit on a worker that is killed; the others
    run after the lease, on another worker, never two at once."""
    path = pooled_flow(tmp_path, db=3, seconds=0.05)
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:  # (a pool of 1, and db0's first attempt holds it for long)
        f.write(text.replace('{"db": 2}', '{"db": 1}').replace(
            'flow.add(f"db{i}", note(f"db{i}", 0.05), uses="db")',
            'flow.add(f"db{i}", note(f"db{i}", 0.05) if i else slow_once, uses="db")').replace(
            "for i in range(3):", '''def slow_once():
    if not os.path.exists(LOG + ".slow"):
        open(LOG + ".slow", "w").close()
        time.sleep(60)
    return note("db0", 0.05)()


for i in range(3):'''))
    log = path + ".log"
    run_id = submit(path, shared, "--lease", "1")
    first = start_worker(shared, log, "--concurrency", "2")
    procs = [first]
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(log + ".slow"):
            assert time.monotonic() < deadline, "db0 did not start"
            time.sleep(0.02)
        first.kill()  # SIGKILL: its claim, and the pool's unit, held until the lease runs out
        first.wait()
        killed = time.time()
        procs.append(start_worker(shared, log, "--concurrency", "2"))
        assert wait_end(shared, run_id, 60) == "succeeded"
    finally:
        stop(procs)
    spans = intervals(log)
    assert sorted(s[0] for s in spans) == ["db0", "db1", "db2"]
    assert most_at_once(spans) == 1
    assert min(start for *_, start, _ in spans) >= killed + 0.5, "nothing took the unit before the lease ran out"
    records, _, lost = facts(shared, run_id)
    assert records["db0"] == ("succeeded", 2) and [a[0] for a in lost] == ["db0"]


def test_pools_on_workers_in_this_process(tmp_path) -> None:
    flow = microdag.Flow("here", pools={"db": 1})
    for i in range(4):
        flow.add(f"s{i}", lambda i=i: i, uses="db")
    flow.add("api", lambda: "a", uses="api")
    run = flow.run(executor="workers", store=str(tmp_path / "runs.db"), max_workers=3, rates={"api": "5/s"})
    assert run.status == "succeeded" and run["s3"] == 3 and run["api"] == "a"


def test_a_step_using_more_than_its_pool_is_refused_on_workers(tmp_path) -> None:
    flow = microdag.Flow("big").add("a", lambda: 1, uses={"db": 3})
    with pytest.raises(microdag.FlowError, match="uses 3 units of pool 'db'"):
        flow.run(executor="workers", store=str(tmp_path / "runs.db"), pools={"db": 2})


def test_submit_takes_pools_and_rates_beside_the_flows(tmp_path) -> None:
    path = pooled_flow(tmp_path, db=2, api=1)
    store = str(tmp_path / "runs.db")
    run_id = submit(path, store, "--pool", "db=1", "--rate", "api=5/s burst 2")
    s = open_store(store)
    queue = s.queue()
    try:
        plan = queue.plan(run_id)
        assert plan is not None and plan["pools"] == {"db": 1} and plan["rates"] == {"api": [5.0, 2]}
        assert plan["uses"][:3] == [[["db", 1]], [["db", 1]], [["api", 1]]]
        rows = queue._query(  # type: ignore[attr-defined]
            "SELECT name, size, rate, room FROM queue_pools WHERE run_id = ? ORDER BY name", (run_id,))
        assert [tuple(row) for row in rows] == [("api", 2.0, 5.0, 2.0), ("db", 1.0, 0.0, 1.0)]
        queue.cancel(run_id)
        assert pools_left(store, run_id) == []
    finally:
        queue.close()
        s.close()


def test_a_lost_claim_gives_its_units_back_and_waits_for_a_token(tmp_path, shared) -> None:
    """At the queue: a claim whose lease ran out gives its pool units back
    before the step is claimed again; a rate's token is spent, so the step
    lost waits, ready, for the next one."""
    path = pooled_flow(tmp_path, db=2, api=1, rate="1/h")
    run_id = submit(path, shared, "--pool", "db=1")
    s = open_store(shared)
    queue = s.queue()
    try:
        first = queue.claim("w1", 0.5, limit=3)
        assert sorted(c.step for c in first) == [0, 2], "one db step (the pool holds 1) and the api step"
        assert queue.claim("w2", 30, limit=3) == []
        time.sleep(0.7)  # (both leases ran out)
        again = queue.claim("w2", 30, limit=3)
        assert [c.step for c in again] == [0], "db0's unit came back with its lease; api has no token"
        look = queue._query  # type: ignore[attr-defined]
        rows = look("SELECT step, state, attempt FROM queue WHERE run_id = ? ORDER BY step", (run_id,))
        assert [tuple(row) for row in rows] == [(0, 1, 2), (1, 0, 0), (2, 0, 1)]
        assert sorted(a[0] for a in s.attempts(run_id) if a[5] == "WorkerLost") == ["api0", "db0"]
        queue.cancel(run_id)
    finally:
        queue.close()
        s.close()


def test_units_come_back_when_a_skipped_item_ends_its_map(tmp_path, shared) -> None:
    """At the queue: a map item that skips ends its map, and the units its
    siblings' claims held come back with it (their finishes are fenced out)."""
    from microdag.stores._queue import Outcome

    path = pooled_flow(tmp_path, db=1, items=3)  # db0 (0), xs (1), m (2)
    run_id = submit(path, shared, "--pool", "db=3")
    s = open_store(shared)
    queue = s.queue()
    look = queue._query  # type: ignore[attr-defined]

    def room() -> float:
        return float(look("SELECT room FROM queue_pools WHERE run_id = ? AND name = 'db'", (run_id,))[0][0])

    try:
        db0, xs = sorted(queue.claim("w", 30, limit=2), key=lambda c: c.step)
        assert (db0.step, xs.step, room()) == (0, 1, 2.0)
        now = time.time()
        assert queue.finish([(xs, Outcome("succeeded", now, now, s.encode([0, 1, 2], "xs")))]) == [True]
        (m,) = queue.claim("w", 30)
        assert queue.finish([(m, Outcome("planned", now, now, units=[0, 1, 2]))]) == [True]
        a, b = queue.claim("w", 30, limit=3)  # (db0 holds the third unit)
        assert room() == 0.0 and a.item != b.item
        assert queue.finish([(a, Outcome("skipped", now, now))]) == [True]
        assert room() == 2.0, "the skipped item's unit and its sibling's came back"
        assert queue.finish([(b, Outcome("succeeded", now, now, s.encode(1, "item")))]) == [False]
        assert room() == 2.0
        assert queue.finish([(db0, Outcome("succeeded", now, now, s.encode(0, "db0")))]) == [True]
    finally:
        queue.close()
        s.close()
    assert wait_end(shared, run_id, 10) == "succeeded"
