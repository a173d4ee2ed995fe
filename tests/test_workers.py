"""Runs shared through a store's work queue (``executor="workers"``, ``python -m microdag worker``).

Worker processes are real children (``python -m microdag worker``), stopped
by the test at its end; anything that could hang waits with a deadline.
The flows they run are ``.py`` files written per test (``random_flow``):
random shapes whose steps note each call in a file (``WORKERS_TEST_LOG``),
so that a test counts how often each step really ran, and whose outputs
depend on their dependencies' (a step run before one of them would differ
from an inline run).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

import modelsteps
from support import child_env, postgres_url, run_child, run_cli

import microdag
from microdag.stores import SQLiteStore, StoreError, open_store


@pytest.fixture(params=["sqlite", "postgres"])
def shared(request, tmp_path) -> str:
    """The spec of a store workers share: an SQLite file, or a database on the tests' PostgreSQL server."""
    if request.param == "postgres":
        return postgres_url()
    spec = str(tmp_path / "runs.db")
    SQLiteStore(spec).close()
    return spec

FLOW = '''
import os, random, time
import microdag

LOG = os.environ.get("WORKERS_TEST_LOG")
rng = random.Random({seed})
flow = microdag.Flow("rand")


def make(i, seconds):
    def step(**deps):
        if LOG:
            fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, f"{{i}} {{os.getpid()}}\\n".encode())
            os.close(fd)
        assert all(v is not None for v in deps.values()), deps
        if seconds:
            time.sleep(seconds)
        return {offset} + i + sum(deps.values()) % 1000003
    return step


for i in range({n}):
    deps = rng.sample(range(max(0, i - 30), i), rng.randint(0, min(i, 3)))
    flow.add(f"s{{i}}", make(i, {seconds}), depends_on=[f"s{{d}}" for d in sorted(deps)])
'''


MAP_FLOW = '''
import os, time
import microdag

LOG = os.environ.get("WORKERS_TEST_LOG")
flow = microdag.Flow("mapped")


def square(x):
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{{x}} {{os.getpid()}}\\n".encode())
    os.close(fd)
    time.sleep({seconds})
    return x * x


flow.add("items", lambda: list(range({n})))
flow.add("m", square, map="x", inputs={{"x": "items"}})
flow.add("total", lambda m: sum(m), depends_on=["m"])
'''


def random_flow(folder, seed: int, n: int, seconds: float = 0.0, offset: int = 0, name: str = "flow.py") -> str:
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(FLOW.format(seed=seed, n=n, seconds=seconds, offset=offset))
    return path


def load(path: str) -> microdag.Flow:
    from microdag._spec import load_flow

    return load_flow(path)


def start_worker(store: str, log: "str | None" = None, *args: str) -> subprocess.Popen:
    env = child_env(**({"WORKERS_TEST_LOG": log} if log else {}))
    return subprocess.Popen([sys.executable, "-m", "microdag", "worker", "--store", store, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def stop(workers: "list[subprocess.Popen]") -> "list[str]":
    """Stop the workers (SIGTERM, then SIGKILL); what each said on stderr."""
    said = []
    for p in workers:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.terminate()
    for p in workers:
        try:
            _, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        said.append(err)
    return said


def submit(path: str, store: str, *args: str) -> str:
    done = run_cli("submit", path, "--store", store, *args, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def wait_end(store: str, run_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = open_store(store, readonly=True)
        try:
            status = s.run_info(run_id).status
        finally:
            s.close()
        if status != "running":
            return status
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end within {timeout} s")


def calls(log: str) -> "dict[str, int]":
    counts: dict[str, int] = {}
    if os.path.exists(log):
        with open(log) as f:
            for line in f:
                step = f"s{line.split()[0]}"
                counts[step] = counts.get(step, 0) + 1
    return counts


def facts(store: str, run_id: str) -> "tuple[dict, dict, list]":
    """Per step ``(status, attempts)``, the outputs, and the lost attempts."""
    s = open_store(store, readonly=True)
    try:
        records = s.tasks(run_id)
        lost = [a for a in s.attempts(run_id) if a[5] == "WorkerLost"]
        outputs = {r.step: s.decode(r.output) for r in records if r.output is not None}
        return {r.step: (r.status, r.attempts) for r in records}, outputs, lost
    finally:
        s.close()


def inline_outputs(path: str) -> "dict[str, object]":
    run = load(path).run(keep_outputs=True)
    return dict(run.outputs)


# -- in one process ------------------------------------------------------------------------------


def test_a_run_on_workers_is_a_run_like_any_other(shared) -> None:
    flow = microdag.Flow("demo")
    flow.add("a", lambda: 1)
    flow.add("b", lambda a: a + 1, depends_on=["a"])
    flow.add("c", lambda a: print("c says hi") or a * 10, depends_on=["a"])
    flow.add("d", lambda b, c: b + c, depends_on=["b", "c"])
    store = shared
    run = flow.run(executor="workers", store=store, max_workers=2)
    assert run.status == "succeeded"
    assert dict(run.outputs) == {"d": 12}
    assert {name: (t.status, t.attempts) for name, t in run.tasks.items()} == {
        name: ("succeeded", 1) for name in "abcd"}
    s = open_store(store)
    assert s.logs(run.id, "c") == "c says hi\n"
    assert s.list_runs()[0].status == "succeeded"
    assert s.owner(run.id) is None
    assert "<html" in s.report(run.id).lower()


def test_retries_failures_skips_and_the_failure_policy_follow_the_runners_rules(tmp_path) -> None:
    tries = {"n": 0}

    def flaky():
        tries["n"] += 1
        if tries["n"] < 3:
            raise ValueError("not yet")
        return 5

    def skipper():
        raise microdag.Skip("nothing to do")

    flow = microdag.Flow("rules")
    flow.add("flaky", flaky, retries=3, retry_delay=0.01)
    flow.add("bad", lambda flaky: 1 / 0, depends_on=["flaky"])
    flow.add("after_bad", lambda bad: 1, depends_on=["bad"])
    flow.add("always", lambda bad: 2, depends_on=["bad"], trigger="all_done")
    flow.add("skipper", skipper)
    flow.add("after_skip", lambda skipper: 3, depends_on=["skipper"], trigger="none_failed")
    store = str(tmp_path / "runs.db")
    for policy in ("continue", "fail_fast"):
        tries["n"] = 0
        got = flow.run(executor="workers", store=store, on_failure=policy, raise_on_failure=False)
        tries["n"] = 0
        want = flow.run(on_failure=policy, raise_on_failure=False, store=str(tmp_path / "inline.db"))
        assert got.status == want.status == "failed"
        assert {n: (t.status, t.attempts) for n, t in got.tasks.items()} == \
            {n: (t.status, t.attempts) for n, t in want.tasks.items()}, policy
        assert type(got.tasks["bad"].error).__name__ == "StoredError"
        assert got.tasks["bad"].error.type_name == "ZeroDivisionError"
        retried = SQLiteStore(store).attempts(got.id)
        assert [(a[0], a[2], a[5]) for a in retried] == [("flaky", 1, "ValueError"), ("flaky", 2, "ValueError")]
    with pytest.raises(microdag.RunFailed):
        flow.run(executor="workers", store=store)


def test_targets_and_inputs(tmp_path) -> None:
    flow = microdag.Flow("inputs")
    flow.add("a", lambda x, y=2: x + y)
    flow.add("b", lambda a: a * 2, depends_on=["a"])
    flow.add("c", lambda a: 1 / 0, depends_on=["a"])
    run = flow.run({"x": 1}, executor="workers", store=str(tmp_path / "r.db"), targets=["b"])
    assert run.status == "succeeded" and dict(run.outputs) == {"b": 6}
    assert set(run.tasks) == {"a", "b"}


def test_stores_that_are_no_work_queue_refuse(tmp_path) -> None:
    flow = microdag.Flow("f")
    flow.add("a", lambda: 1)
    for store in ("memory", f"json:{tmp_path}/j"):
        with pytest.raises(microdag.FlowError, match="cannot share a run with workers.*SQLite"):
            flow.run(executor="workers", store=store)
    with pytest.raises(microdag.FlowError, match="needs store="):
        flow.run(executor="workers")
    with pytest.raises(microdag.FlowError, match="lease"):
        flow.run(executor="workers", store=str(tmp_path / "r.db"), lease=0)
    with pytest.raises(microdag.FlowError, match="lease= goes with executor='workers'"):
        flow.run(lease=3)


def test_cancel_event_cancels_the_run_for_every_worker(tmp_path) -> None:
    import threading

    cancel = threading.Event()
    flow = microdag.Flow("slow")
    flow.add("first", lambda: cancel.set() or time.sleep(5))
    flow.add("then", lambda first: 1, depends_on=["first"])
    began = time.monotonic()
    run = flow.run(executor="workers", store=str(tmp_path / "r.db"), cancel=cancel, raise_on_failure=False)
    assert time.monotonic() - began < 4
    assert run.status == "cancelled"
    assert {n: t.status for n, t in run.tasks.items()} == {"first": "cancelled", "then": "cancelled"}


def test_arun_on_workers_and_its_cancel(tmp_path) -> None:
    import asyncio

    flow = microdag.Flow("async")
    flow.add("a", lambda: 2)
    flow.add("b", lambda a: a * 3, depends_on=["a"])
    store = str(tmp_path / "r.db")
    run = asyncio.run(flow.arun(executor="workers", store=store))
    assert run.status == "succeeded" and dict(run.outputs) == {"b": 6}

    slow = microdag.Flow("slow")
    slow.add("sleepy", lambda: time.sleep(30))

    async def cancelled() -> None:
        task = asyncio.ensure_future(slow.arun(executor="workers", store=store))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    began = time.monotonic()
    asyncio.run(cancelled())
    assert time.monotonic() - began < 10
    assert SQLiteStore(store).list_runs(flow="slow")[0].status == "cancelled"


def map_flow() -> microdag.Flow:
    """Map steps of every kind: over an input and an output, batched, empty,
    flaky and failing items, a value that is not a list, a unit that skips."""

    def flaky(x):
        if x % 3 == 0 and microdag.context().attempt < 2:
            raise ValueError(f"item {x} not yet")
        return x * x

    def bad(x):
        if x == 2:
            raise ValueError("item 2 is bad")
        return x

    def skipping(x):
        if x == 1:
            raise microdag.Skip("item 1 says no")
        return x

    flow = microdag.Flow("maps")
    flow.add("items", lambda: list(range(10)))
    flow.add("empty", lambda: [])
    flow.add("number", lambda: 7)
    flow.add("given", lambda x: x + 1, map="x")  # over the flow input x
    flow.add("sq", flaky, map="x", inputs={"x": "items"}, retries=1)
    flow.add("total", lambda sq: sum(sq), depends_on=["sq"])
    flow.add("batched", lambda xs: [x * 10 for x in xs], map="xs", inputs={"xs": "items"}, batch_size=3)
    flow.add("short", lambda xs: xs[:1], map="xs", inputs={"xs": "items"}, batch_size=4)
    flow.add("none", lambda x: x, map="x", inputs={"x": "empty"})
    flow.add("bad", bad, map="x", inputs={"x": "items"}, retries=1)
    flow.add("after_bad", lambda bad: 1, depends_on=["bad"])
    flow.add("not_list", lambda x: x, map="x", inputs={"x": "number"})
    flow.add("skipping", skipping, map="x", inputs={"x": "items"})
    flow.add("after_skip", lambda skipping: 1, depends_on=["skipping"], trigger="none_failed")
    return flow


def stored(store: str, run_id: str) -> "tuple[dict, list]":
    """A run's records by step and item (status, attempts, output, error type), and its retried attempts."""
    s = open_store(store, readonly=True)
    try:
        records = {(r.step, r.item): (r.status, r.attempts, s.decode(r.output) if r.output is not None else None,
                                      r.error_type) for r in s.tasks(run_id)}
        return records, sorted((a[0], a[1], a[2], a[5]) for a in s.attempts(run_id))
    finally:
        s.close()


def test_map_steps_on_workers_are_recorded_as_on_any_backend(tmp_path, shared) -> None:
    flow = map_flow()
    inline = str(tmp_path / "inline.db")
    options = {"on_failure": "continue", "raise_on_failure": False, "keep_outputs": True}
    got = flow.run({"x": [1, 2, 3]}, executor="workers", store=shared, max_workers=2, **options)
    want = flow.run({"x": [1, 2, 3]}, store=inline, **options)
    assert got.status == want.status == "failed"
    assert {n: (t.status, t.attempts) for n, t in got.tasks.items()} == \
        {n: (t.status, t.attempts) for n, t in want.tasks.items()}
    assert dict(got.outputs) == dict(want.outputs)
    assert got["sq"] == [x * x for x in range(10)] and got["total"] == 285 and got["none"] == []
    assert got["batched"] == [x * 10 for x in range(10)] and got["given"] == [2, 3, 4]
    (records, retried), (expected, retried_inline) = stored(shared, got.id), stored(inline, want.id)
    assert retried == retried_inline  # items, errors and retried attempts alike, but the items run
    ran = {key for key in [*records, *expected] if key[0] == "skipping" and key[1] >= 0}  # beside the one that skipped
    assert {k: v for k, v in records.items() if k not in ran} == {k: v for k, v in expected.items() if k not in ran}
    assert records["skipping", -1][0] == "skipped" and ("skipping", 1) not in records
    assert got.tasks["bad"].error.type_name == "ValueError"
    assert got.tasks["not_list"].error.type_name == "TypeError"
    assert got.tasks["short"].error.type_name == "ValueError"
    s = open_store(shared, readonly=True)
    assert "<html" in s.report(got.id).lower()
    batched = [r.item for r in s.tasks(got.id) if r.step == "batched"]  # records in the order first saved:
    assert sorted(batched[:-1]) == [0, 3, 6, 9] and batched[-1] == -1  # units end in any order, the step after them
    s.close()


def test_an_item_failing_under_fail_fast_ends_its_map_and_the_run(tmp_path) -> None:
    def bad(x):
        if x == 5:
            raise ValueError("item 5 is bad")
        time.sleep(0.01)
        return x

    flow = microdag.Flow("ff")
    flow.add("items", lambda: list(range(40)))
    flow.add("m", bad, map="x", inputs={"x": "items"})
    flow.add("after", lambda m: 1, depends_on=["m"])
    run = flow.run(executor="workers", store=str(tmp_path / "r.db"), max_workers=2, raise_on_failure=False)
    assert run.status == "failed"
    assert run.tasks["m"].status == "failed" and run.tasks["m"].error.type_name == "ValueError"
    assert run.tasks["after"].status in ("skipped", "cancelled")
    assert open_store(str(tmp_path / "r.db")).queue().plan(run.id) is None  # (nothing left on the queue)


def test_cancel_during_a_map_ends_it_cancelled(tmp_path) -> None:
    import threading

    cancel = threading.Event()

    def slow(x):
        if x == 3:
            cancel.set()
        time.sleep(0.02)
        return x

    flow = microdag.Flow("cancelmap")
    flow.add("items", lambda: list(range(200)))
    flow.add("m", slow, map="x", inputs={"x": "items"})
    flow.add("after", lambda m: 1, depends_on=["m"])
    store = str(tmp_path / "r.db")
    began = time.monotonic()
    run = flow.run(executor="workers", store=store, max_workers=2, cancel=cancel, raise_on_failure=False)
    assert time.monotonic() - began < 3
    assert run.status == "cancelled"
    assert run.tasks["m"].status == "cancelled" and run.tasks["after"].status == "cancelled"
    s = SQLiteStore(store)
    assert len([r for r in s.tasks(run.id) if r.step == "m" and r.item >= 0]) < 20
    assert s.queue().plan(run.id) is None  # (nothing left on the queue)


def test_a_cached_step_hit_on_workers_does_not_run(tmp_path, shared) -> None:
    calls: list[str] = []

    def slow(a):
        calls.append("slow")
        return a * 2

    def item(x):
        calls.append(f"item {x}")
        return x + 1

    flow = microdag.Flow("cached")
    flow.add("a", lambda: 21)
    flow.add("slow", slow, depends_on=["a"], cache=True)
    flow.add("xs", lambda: [1, 2, 3])
    flow.add("m", item, map="x", inputs={"x": "xs"}, cache=True)
    first = flow.run(store=shared, keep_outputs=True)  # a run on another backend fills the cache
    assert sorted(calls) == ["item 1", "item 2", "item 3", "slow"]
    calls.clear()
    run = flow.run(executor="workers", store=shared, max_workers=2, keep_outputs=True)
    assert calls == [], "cache hits do not run"
    assert run["slow"] == first["slow"] == 42 and run["m"] == [2, 3, 4]
    assert (run.tasks["slow"].status, run.tasks["slow"].attempts) == ("succeeded", 0)  # as the runner records a hit
    assert run.tasks["m"].attempts == 0
    flow2 = microdag.Flow("cached")
    flow2.add("a", lambda: 22)  # other inputs: a miss, run and cached on workers, then a hit anywhere
    flow2.add("slow", slow, depends_on=["a"], cache=True)
    assert flow2.run(executor="workers", store=shared, keep_outputs=True)["slow"] == 44 and calls == ["slow"]
    again = flow2.run(store=shared, keep_outputs=True)
    assert again["slow"] == 44 and again.tasks["slow"].attempts == 0 and calls == ["slow"]


# -- worker processes ------------------------------------------------------------------------------


def test_every_step_runs_exactly_once_on_several_workers(tmp_path, shared) -> None:
    check_exactly_once(tmp_path, shared, workers=3, steps=300)


@pytest.mark.soak
def test_four_workers_two_thousand_steps(tmp_path, shared) -> None:
    check_exactly_once(tmp_path, shared, workers=4, steps=2000)


def check_exactly_once(tmp_path, store: str, workers: int, steps: int) -> None:
    path = random_flow(tmp_path, seed=steps, n=steps, seconds=0.001)
    log = str(tmp_path / "calls.log")
    procs = [start_worker(store, log) for _ in range(workers)]
    time.sleep(1.0)  # (all of them serving before the run comes)
    run_id = submit(path, store)
    try:
        assert wait_end(store, run_id, 120) == "succeeded"
    finally:
        said = stop(procs)
    records, outputs, lost = facts(store, run_id)
    assert records == {f"s{i}": ("succeeded", 1) for i in range(steps)}
    assert calls(log) == {f"s{i}": 1 for i in range(steps)}
    assert outputs == inline_outputs(path)
    assert not lost
    ran = [int(text.rsplit(": ", 1)[1].split()[0]) for text in said]
    assert sum(ran) == steps
    with open(log) as f:
        pids = {line.split()[1] for line in f}
    assert len(pids) >= 2, "the work was shared"


@pytest.mark.parametrize("trial", range(10))
def test_a_worker_killed_at_a_random_moment_costs_a_counted_attempt(tmp_path, shared, trial) -> None:
    rnd = random.Random(trial)
    steps = 60
    path = random_flow(tmp_path, seed=trial, n=steps, seconds=0.01)
    store, log = shared, str(tmp_path / "calls.log")
    run_id = submit(path, store)
    procs = [start_worker(store, log, "--lease", "0.4") for _ in range(2)]
    try:
        while calls(log).__len__() < rnd.randint(3, 40):
            time.sleep(0.002)
        procs[0].kill()  # SIGKILL: no goodbye, its claims held until their lease runs out
        assert open_store(store, readonly=True).run_info(run_id).status == "running"
        procs.append(start_worker(store, log, "--lease", "0.4"))
        assert wait_end(store, run_id, 90) == "succeeded"
    finally:
        stop(procs)
    records, outputs, lost = facts(store, run_id)
    assert all(status == "succeeded" for status, _ in records.values()) and len(records) == steps
    assert outputs == inline_outputs(path), "no output lost or wrong"
    ran = calls(log)
    lost_of: dict[str, int] = {}
    for step, *_ in lost:
        lost_of[step] = lost_of.get(step, 0) + 1
    for step, (_, attempts) in records.items():
        assert attempts == 1 + lost_of.get(step, 0), step  # each re-run is a counted attempt
        assert 1 <= ran[step] <= attempts, step  # never run more often than counted


@pytest.mark.parametrize("trial", range(2))
def test_a_worker_killed_during_a_maps_units_costs_a_counted_attempt_of_one_item(tmp_path, shared, trial) -> None:
    """A map's units are shared by the workers; a kill loses the units the
    killed worker held, which run again as counted attempts of their items."""
    n = 40
    path = tmp_path / "mapped.py"
    path.write_text(MAP_FLOW.format(n=n, seconds=0.05))  # (2 s of units: time for the third worker to start)
    store, log = shared, str(tmp_path / "calls.log")
    run_id = submit(str(path), store)
    procs = [start_worker(store, log, "--lease", "0.4") for _ in range(2)]
    try:
        while calls(log).__len__() < random.Random(trial).randint(3, 15):
            time.sleep(0.002)
        procs[0].kill()
        procs.append(start_worker(store, log, "--lease", "0.4"))
        assert wait_end(store, run_id, 60) == "succeeded"
    finally:
        stop(procs)
    records, outputs, lost = facts(store, run_id)
    s = open_store(store, readonly=True)
    items = {r.item: (r.status, r.attempts) for r in s.tasks(run_id, outputs=False) if r.step == "m" and r.item >= 0}
    s.close()
    assert outputs["m"] == [x * x for x in range(n)] and outputs["total"] == sum(x * x for x in range(n))
    assert sorted(items) == list(range(n)) and all(status == "succeeded" for status, _ in items.values())
    lost_of: dict[int, int] = {}
    for step, item, *_ in lost:
        assert step == "m" and item >= 0
        lost_of[item] = lost_of.get(item, 0) + 1
    ran = calls(log)
    for item, (_, attempts) in items.items():
        assert attempts == 1 + lost_of.get(item, 0), item
        assert 1 <= ran[f"s{item}"] <= attempts, item
    assert records["m"] == ("succeeded", max(attempts for _, attempts in items.values()))
    with open(log) as f:
        assert len({line.split()[1] for line in f}) >= 2, "the map's items were shared"


def test_a_worker_paused_past_its_lease_cannot_record_its_stale_attempt(tmp_path, shared) -> None:
    path = tmp_path / "pause.py"
    path.write_text(
        "import os, time, microdag\n"
        "flow = microdag.Flow('pause')\n"
        "def slow():\n"
        "    open(os.environ['WORKERS_TEST_LOG'], 'a').write(f'{os.getpid()}\\n')\n"
        "    time.sleep(1.0)\n"
        "    return os.getpid()\n"
        "flow.add('slow', slow)\n"
        "flow.add('after', lambda slow: slow, depends_on=['slow'])\n"
    )
    store, log = shared, str(tmp_path / "calls.log")
    run_id = submit(str(path), store)
    first = start_worker(store, log, "--lease", "0.5")
    procs = [first]
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(log) and time.monotonic() < deadline:
            time.sleep(0.01)
        first.send_signal(signal.SIGSTOP)
        second = start_worker(store, log, "--lease", "0.5")
        procs.append(second)
        assert wait_end(store, run_id, 30) == "succeeded"
        first.send_signal(signal.SIGCONT)
        time.sleep(1.5)  # the paused attempt finishes now, and tries to record
    finally:
        stop(procs)
    records, outputs, lost = facts(store, run_id)
    assert records["slow"] == ("succeeded", 2)
    assert outputs["slow"] == outputs["after"] == second.pid, "the stale attempt recorded nothing"
    assert len(lost) == 1
    with open(log) as f:
        assert [int(line) for line in f] == [first.pid, second.pid]


def test_workers_reconnect_when_the_postgresql_server_restarts(tmp_path) -> None:
    import pgserver

    store = postgres_url()
    steps = 60
    path = random_flow(tmp_path, seed=5, n=steps, seconds=0.02)
    log = str(tmp_path / "calls.log")
    run_id = submit(path, store)
    procs = [start_worker(store, log, "--lease", "20") for _ in range(2)]
    try:
        while len(calls(log)) < 10:
            time.sleep(0.01)
        pgserver.restart()
        assert wait_end(store, run_id, 90) == "succeeded"
    finally:
        stop(procs)
    records, outputs, _ = facts(store, run_id)
    assert all(status == "succeeded" for status, _ in records.values()) and len(records) == steps
    assert outputs == inline_outputs(path)


def test_a_worker_with_other_code_leaves_the_step_alone(tmp_path, shared) -> None:
    path = random_flow(tmp_path, seed=1, n=6)
    other = random_flow(tmp_path, seed=1, n=6, offset=1, name="other.py")  # same shape, other code
    store, log = shared, str(tmp_path / "calls.log")
    run_id = submit(path, store)
    odd = start_worker(store, log, "--flows", other)
    try:
        time.sleep(1.0)
        assert open_store(store, readonly=True).run_info(run_id).status == "running"
        assert not os.path.exists(log)
        good = start_worker(store, log)
        assert wait_end(store, run_id, 30) == "succeeded"
    finally:
        said = stop([odd, good])
    assert "left alone" in said[0] and said[0].count("left alone") == 1
    assert facts(store, run_id)[1] == inline_outputs(path)


def test_cancel_from_another_process_stops_a_running_step(tmp_path, shared) -> None:
    path = tmp_path / "long.py"
    path.write_text(
        "import os, time, microdag\n"
        "flow = microdag.Flow('long')\n"
        "flow.add('sleepy', lambda: open(os.environ['WORKERS_TEST_LOG'], 'a').write('go') and time.sleep(60))\n"
        "flow.add('after', lambda sleepy: 1, depends_on=['sleepy'])\n"
    )
    store, log = shared, str(tmp_path / "calls.log")
    run_id = submit(str(path), store)
    worker = start_worker(store, log)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(log) and time.monotonic() < deadline:
            time.sleep(0.01)
        began = time.monotonic()
        done = run_cli("cancel", run_id, "--store", store)
        assert done.returncode == 0, done.stderr
        assert wait_end(store, run_id, 10) == "cancelled"
        assert time.monotonic() - began < 5
    finally:
        stop([worker])
    records = facts(store, run_id)[0]
    assert records == {"sleepy": ("cancelled", 1), "after": ("cancelled", 0)}
    again = run_cli("cancel", run_id, "--store", store)
    assert again.returncode == 0 and "already ended: cancelled" in again.stderr


# -- the command line ------------------------------------------------------------------------------


def test_run_with_executor_workers_shows_progress_and_the_outputs(tmp_path) -> None:
    path = random_flow(tmp_path, seed=3, n=5)
    store = str(tmp_path / "runs.db")
    done = run_cli("run", path, "--executor", "workers", "--store", store, "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert "[5/5]" in done.stderr and "succeeded" in done.stderr
    shown = run_cli("show", "--store", store, json.loads(run_cli("runs", "--store", store, "--json").stdout)[0]["run_id"])
    assert shown.returncode == 0 and "succeeded" in shown.stdout


def test_ctrl_c_in_run_cancels_the_run_for_every_worker(tmp_path) -> None:
    path = tmp_path / "long.py"
    path.write_text(
        "import os, time, microdag\n"
        "flow = microdag.Flow('long')\n"
        "def sleepy(i):\n"
        "    open(os.environ['WORKERS_TEST_LOG'], 'a').write('go\\n')\n"
        "    time.sleep(60)\n"
        "for i in range(3):\n"
        "    flow.add(f's{i}', lambda i=i: sleepy(i))\n"
    )
    store, log = str(tmp_path / "runs.db"), str(tmp_path / "calls.log")
    SQLiteStore(store).close()
    other = start_worker(store, log)
    run = subprocess.Popen([sys.executable, "-m", "microdag", "run", str(path), "--executor", "workers",
                            "--store", store], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=child_env(WORKERS_TEST_LOG=log))
    try:
        deadline = time.monotonic() + 30
        while (not os.path.exists(log) or open(log).read().count("go") < 2) and time.monotonic() < deadline:
            time.sleep(0.01)
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=20)
        assert run.returncode == 130, err
        assert "recorded as cancelled" in err
        (info,) = SQLiteStore(store).list_runs()
        assert wait_end(store, info.id, 10) == "cancelled"
        records = facts(store, info.id)[0]
        assert {status for status, _ in records.values()} == {"cancelled"}
    finally:
        run.kill()
        stop([other])


def test_clean_errors(tmp_path) -> None:
    path = random_flow(tmp_path, seed=3, n=3)
    done = run_cli("submit", path, "--store", "memory")
    assert done.returncode == 2 and "Traceback" not in done.stderr and "--store" in done.stderr
    done = run_cli("worker", "--store", "memory", "--exit-idle", "0.1")
    assert done.returncode == 2 and "Traceback" not in done.stderr and "cannot share a run" in done.stderr
    done = run_cli("worker", "--store", str(tmp_path / "r.db"), "--lease", "0")
    assert done.returncode == 2 and "--lease" in done.stderr
    done = run_cli("run", path, "--lease", "3")
    assert done.returncode == 2 and "--executor workers" in done.stderr
    done = run_cli("cancel", "nope", "--store", str(tmp_path / "none.db"))
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_a_worker_exits_when_idle_and_says_what_it_ran(tmp_path) -> None:
    store = str(tmp_path / "runs.db")
    SQLiteStore(store).close()
    done = run_cli("worker", "--store", store, "--exit-idle", "0.2", timeout=30)
    assert done.returncode == 0 and "0 steps run" in done.stderr


def test_the_queue_fences_a_stale_claim(shared) -> None:
    """The protocol by hand: a claim whose lease ran out is the next
    attempt's; the old claim can neither renew nor record."""
    from microdag.stores._queue import Outcome

    flow = microdag.Flow("q")
    flow.add("a", lambda: 1)
    store = open_store(shared)
    from microdag.runner import RunOptions
    from microdag.runner.workers import submit as submit_run

    options = RunOptions(executor="workers", max_workers=None, targets=None, on_failure="fail_fast", hooks=(),
                         keep_outputs=False, cancel=None, store=store, run_id=None, resume=False, force=False)
    _, run_id, _, _ = submit_run(flow._compiled(), "q", None, None, options)
    queue = store.queue()
    (old,) = queue.claim("w1", 0.05)
    assert old.attempt == 1 and queue.claim("w2", 10) == []
    time.sleep(0.1)
    (new,) = queue.claim("w2", 10)
    assert new.attempt == 2
    queue.heartbeat([old], 10)
    assert old.lost
    now = time.time()
    assert queue.finish([(old, Outcome("succeeded", now, now, b"1"))]) == [False]
    assert store.run_info(run_id).status == "running"
    assert queue.finish([(new, Outcome("succeeded", now, now, b"2"))]) == [True]
    assert store.run_info(run_id).status == "succeeded"
    assert store.output(run_id, "a") == 2
    assert [a[5] for a in store.attempts(run_id)] == ["WorkerLost"]
    queue.close()


def test_a_store_opened_read_only_is_no_work_queue(tmp_path) -> None:
    SQLiteStore(str(tmp_path / "r.db")).close()
    with pytest.raises(StoreError, match="reading only"):
        SQLiteStore(str(tmp_path / "r.db"), readonly=True).queue()


def test_a_worker_forgets_the_runs_that_ended_elsewhere(shared, monkeypatch) -> None:
    """What a worker's queue keeps of a run (its mirror, on PostgreSQL the
    steps it turned down) goes once another worker ended the run."""
    from microdag.runner import RunOptions
    from microdag.runner.workers import submit as submit_run
    from microdag.stores import _sql_queue
    from microdag.stores._queue import Outcome

    monkeypatch.setattr(_sql_queue, "FORGET_EVERY", 0.0)
    flow = microdag.Flow("q")
    flow.add("a", lambda: 1)
    flow.add("b", lambda: 2)
    store = open_store(shared)
    options = RunOptions(executor="workers", max_workers=None, targets=None, on_failure="fail_fast", hooks=(),
                         keep_outputs=False, cancel=None, store=store, run_id=None, resume=False, force=False)
    _, run_id, _, _ = submit_run(flow._compiled(), "q", None, None, options)
    other = open_store(shared)
    mine, theirs = store.queue(), other.queue()
    try:
        (a,) = mine.claim("w1", 10, limit=2, refuse=lambda run, step: step == 1)  # (b turned down)
        now = time.time()
        assert a.step == 0 and mine.finish([(a, Outcome("succeeded", now, now, b"1"))]) == [True]
        known = mine._known()  # type: ignore[attr-defined]
        assert run_id in known
        (b,) = theirs.claim("w2", 10)
        assert theirs.finish([(b, Outcome("succeeded", now, now, b"2"))]) == [True]  # (the run ends there)
        assert store.run_info(run_id).status == "succeeded"
        assert mine.claim("w1", 10) == []
        assert mine._known() == set()  # type: ignore[attr-defined]
        assert getattr(mine, "_refused", set()) == set()
    finally:
        mine.close()
        theirs.close()
        store.close()
        other.close()
