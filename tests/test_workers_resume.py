"""Runs shared with workers resumed, and what a store knows of a run's life.

A run on workers is resumed as on any backend: its finished steps are kept,
its unfinished ones go back on the queue, a change of a finished step's code
is refused.  A run whose caller died while it was on the queue goes on where
it stands.  ``Store.live`` answers from what the store knows (the queue, and
on PostgreSQL the claim's lock), never from a pid of another machine.
"""

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from support import child_env, postgres_url, run_cli
from test_workers import facts, shared, start_worker, stop, submit, wait_end  # noqa: F401  (shared: a fixture)

import microdag
from microdag.stores import open_store


#: a -> b -> c; b fails while the file FAIL_IF exists; each call is noted in CALLS.
FLOW = '''
import os, time
import microdag

flow = microdag.Flow("three")


def note(name):
    with open(os.environ["CALLS"], "a") as f:
        f.write(name + "\\n")


def a():
    note("a")
    return {a}


def b(a):
    note("b")
    time.sleep(float(os.environ.get("B_SLEEP", "0")))
    if os.path.exists(os.environ["FAIL_IF"]):
        raise RuntimeError("b fails")
    return a + 1


def c(b):
    note("c")
    return b * 10


flow.add("a", a)
flow.add("b", b, depends_on=["a"])
flow.add("c", c, depends_on=["b"])
'''


@pytest.fixture
def three(tmp_path, monkeypatch) -> "tuple[str, str, str]":
    """The flow file, its calls' log and the file whose presence fails ``b``."""
    path = tmp_path / "three.py"
    path.write_text(FLOW.format(a=1))
    calls, fail = str(tmp_path / "calls.log"), str(tmp_path / "fail")
    monkeypatch.setenv("CALLS", calls)
    monkeypatch.setenv("FAIL_IF", fail)
    return str(path), calls, fail


def _calls(log: str) -> "list[str]":
    with open(log) as f:
        return f.read().split()


def _load(path: str) -> microdag.Flow:
    from microdag._spec import load_flow

    return load_flow(path)


def test_a_failed_run_on_workers_is_resumed_on_workers(shared, three) -> None:
    path, calls, fail = three
    open(fail, "w").close()
    flow = _load(path)
    run = flow.run(executor="workers", store=shared, run_id="r-failed", raise_on_failure=False)
    assert run.status == "failed" and {n: t.status for n, t in run.tasks.items()} == {
        "a": "succeeded", "b": "failed", "c": "skipped"}
    os.unlink(fail)
    run = flow.run(executor="workers", store=shared, run_id="r-failed", resume=True, keep_outputs=True)
    assert run.status == "succeeded" and dict(run.outputs) == {"a": 1, "b": 2, "c": 20}
    assert _calls(calls) == ["a", "b", "b", "c"]  # a finished before: kept, not run again
    records = facts(shared, "r-failed")[0]
    assert records == {"a": ("succeeded", 1), "b": ("succeeded", 1), "c": ("succeeded", 1)}
    s = open_store(shared)
    assert not s.shared("r-failed") and s.owner("r-failed") is None
    s.close()


def test_a_submitted_run_whose_steps_all_failed_is_resumed_from_the_command_line(shared, three) -> None:
    path, calls, fail = three
    with open(path, "w") as f:
        f.write(FLOW.format(a=1).replace('    note("a")\n', '    note("a")\n'
                                          '    if os.path.exists(os.environ["FAIL_IF"]):\n'
                                          '        raise RuntimeError("a fails")\n'))
    open(fail, "w").close()
    env = {"CALLS": calls, "FAIL_IF": fail}
    run_id = submit(path, shared)
    worker = start_worker(shared, None, "--exit-idle", "60")
    try:
        assert wait_end(shared, run_id, 30) == "failed"
    finally:
        stop([worker])
    assert {step: status for step, (status, _) in facts(shared, run_id)[0].items()} == {
        "a": "failed", "b": "skipped", "c": "skipped"}
    os.unlink(fail)
    done = run_cli("resume", run_id, "--executor", "workers", "--store", shared, **env)
    assert done.returncode == 0, done.stderr
    assert "c: 20" in done.stdout and "3 succeeded" in done.stderr
    assert facts(shared, run_id)[0] == {"a": ("succeeded", 1), "b": ("succeeded", 1), "c": ("succeeded", 1)}


def test_a_run_whose_caller_died_goes_on_where_it_stands(shared, three, tmp_path) -> None:
    path, calls, fail = three
    env = {"CALLS": calls, "FAIL_IF": fail, "B_SLEEP": "30"}
    caller = subprocess.Popen(
        [sys.executable, "-m", "microdag", "run", path, "--executor", "workers", "--store", shared, "--run-id",
         "r-died", "--lease", "1", "--quiet"], env=child_env(**env), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while (not os.path.exists(calls) or "b" not in _calls(calls)) and time.monotonic() < deadline:
            time.sleep(0.02)
        caller.send_signal(signal.SIGKILL)  # its claim of b stays until its lease runs out
        caller.wait(10)
    finally:
        caller.kill()
    s = open_store(shared)
    try:
        assert s.run_info("r-died").status == "running" and s.shared("r-died") and s.live("r-died") is True
    finally:
        s.close()
    # another executor would run it beside its workers: refused
    refused = run_cli("resume", "r-died", "--store", shared, **env)
    assert refused.returncode != 0 and "shared with workers" in refused.stderr
    done = run_cli("resume", "r-died", "--executor", "workers", "--store", shared, timeout=90,
                   **{**env, "B_SLEEP": "0"})
    assert done.returncode == 0, done.stderr
    records, outputs, lost = facts(shared, "r-died")
    assert records == {"a": ("succeeded", 1), "b": ("succeeded", 2), "c": ("succeeded", 1)}
    assert outputs["c"] == 20 and len(lost) == 1  # the killed caller's attempt of b: counted, kept
    assert _calls(calls) == ["a", "b", "b", "c"]


def test_a_resume_on_workers_refuses_changed_code_of_finished_steps(shared, three) -> None:
    path, calls, fail = three
    open(fail, "w").close()
    assert _load(path).run(executor="workers", store=shared, run_id="r-code", raise_on_failure=False).status == "failed"
    with open(path, "w") as f:
        f.write(FLOW.format(a=2))  # a's code changed since it ran
    os.unlink(fail)
    with pytest.raises(microdag.FlowError, match="code .*changed since: 'a'"):
        _load(path).run(executor="workers", store=shared, run_id="r-code", resume=True)
    s = open_store(shared)
    try:
        assert s.run_info("r-code").status == "failed" and not s.shared("r-code") and s.owner("r-code") is None
    finally:
        s.close()
    run = _load(path).run(executor="workers", store=shared, run_id="r-code", resume=True, force=True,
                          keep_outputs=True)
    assert run.status == "succeeded" and run["c"] == 20  # forced: a's recorded output is used


def test_the_store_knows_a_postgresql_run_is_live_by_its_claim_not_by_a_pid() -> None:
    spec = postgres_url()
    runner, reader = open_store(spec), open_store(spec, readonly=True)
    try:
        flow = microdag.Flow("held")
        flow.add("a", lambda: 1)
        flow.run(store=runner, run_id="r-held")
        assert reader.live("r-held") is False and reader.shared("r-held") is False
        runner.claim("r-held")  # as a process of any machine resuming it
        assert reader.live("r-held") is True
        runner.release("r-held")
        assert reader.live("r-held") is False
    finally:
        runner.close()
        reader.close()


def test_a_sqlite_store_leaves_a_run_off_the_queue_to_its_owner_process(tmp_path) -> None:
    spec = str(tmp_path / "runs.db")
    flow = microdag.Flow("held")
    flow.add("a", lambda: 1)
    flow.run(store=spec, run_id="r-local")
    s = open_store(spec, readonly=True)  # (a store never used as a queue has no queue tables: not shared)
    try:
        assert s.shared("r-local") is False and s.live("r-local") is None
    finally:
        s.close()


# -- a run's lease -----------------------------------------------------------------------------------

ONCE = """\
import os, time
import microdag

flow = microdag.Flow("once")


def slow_first():
    log = os.environ["WORKERS_TEST_LOG"]
    first = not os.path.exists(log)
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\\n")
    if first:
        time.sleep(60)
    return 1


flow.add("s", slow_first)
"""


def test_a_run_s_lease_is_its_claims_lease_on_every_worker(tmp_path, shared) -> None:
    path, log = tmp_path / "once.py", str(tmp_path / "calls.log")
    path.write_text(ONCE)
    run_id = submit(str(path), shared, "--lease", "0.6")
    workers = [start_worker(shared, log), start_worker(shared, log)]  # their own lease: 30 s
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(log) and time.monotonic() < deadline:
            time.sleep(0.01)
        (pid,) = map(int, open(log).read().split())
        (holder,) = [w for w in workers if w.pid == pid]
        holder.kill()  # SIGKILL: its claim holds for the run's lease, not for the worker's 30 s
        began = time.monotonic()
        assert wait_end(shared, run_id, 20) == "succeeded"
        assert time.monotonic() - began < 10
    finally:
        stop(workers)
    records, _, lost = facts(shared, run_id)
    assert records == {"s": ("succeeded", 2)} and len(lost) == 1


def test_a_claim_holds_for_its_run_s_lease_and_its_heartbeat_renews_that(shared) -> None:
    flow = microdag.Flow("two")
    flow.add("a", lambda: 1)
    flow.add("b", lambda: 2)
    s = open_store(shared)
    from microdag.runner import RunOptions
    from microdag.runner.workers import submit as submit_run

    options = RunOptions(executor="workers", max_workers=None, targets=None, on_failure="fail_fast", hooks=(),
                         keep_outputs=False, cancel=None, store=s, run_id="r-lease", resume=False, force=False,
                         lease=5.0)
    submit_run(flow._compiled(), "two", None, None, options)
    queue = s.queue()
    try:
        assert queue.plan("r-lease")["lease"] == 5.0
        claims = queue.claim("w", 30.0, 2, leases={"r-lease": 5.0})
        assert sorted(c.lease for c in claims) == [5.0, 5.0]
        queue.heartbeat(claims, 30.0)
        (due,) = {round(row[0] - row[1]) for row in s._read("SELECT due, claimed FROM queue")}
        assert due == 5 and not any(c.lost for c in claims)
        queue.cancel("r-lease")
    finally:
        queue.close()
        s.close()


def _two_runs(spec: str) -> "tuple[Any, Any]":
    """Runs ``r-one`` and ``r-two`` (steps a, b each) on the queue of store ``spec``: the store and its queue."""
    from microdag.runner import RunOptions
    from microdag.runner.workers import submit as submit_run

    flow = microdag.Flow("two")
    flow.add("a", lambda: 1)
    flow.add("b", lambda: 2)
    s = open_store(spec)
    for run_id in ("r-one", "r-two"):
        options = RunOptions(executor="workers", max_workers=None, targets=None, on_failure="fail_fast", hooks=(),
                             keep_outputs=False, cancel=None, store=s, run_id=run_id, resume=False, force=False)
        submit_run(flow._compiled(), "two", None, None, options)
    return s, s.queue()


def test_a_worker_serving_one_run_claims_only_its_steps(shared) -> None:
    s, queue = _two_runs(shared)
    try:
        claims = queue.claim("w", 30.0, 8, only="r-two")
        assert sorted((c.run_id, c.step) for c in claims) == [("r-two", 0), ("r-two", 1)]
        assert queue.claim("w", 30.0, 8, skip_runs=["r-one"]) == []
        assert {c.run_id for c in queue.claim("w", 30.0, 8)} == {"r-one"}
    finally:
        queue.close()
        s.close()


def test_a_step_turned_down_is_given_back_uncounted_and_left_to_other_workers(shared) -> None:
    s, queue = _two_runs(shared)
    met: list[list[str]] = []
    try:
        refuse = lambda run_id, step: (run_id, step) == ("r-one", 0)  # noqa: E731  (its code differs here)
        claims = queue.claim("w", 30.0, 8, refuse, meet=met.append)
        assert sorted((c.run_id, c.step) for c in claims) == [("r-one", 1), ("r-two", 0), ("r-two", 1)]
        assert sorted(r for runs in met for r in runs) == ["r-one", "r-two"]  # (learned before asked about)
        assert queue.claim("w", 30.0, 8, refuse) == []  # (nor claimed again by this worker)
        other = s.queue()
        try:
            (claim,) = other.claim("v", 30.0, 8)
            assert (claim.run_id, claim.step, claim.attempt) == ("r-one", 0, 1)  # the first attempt still
        finally:
            other.close()
    finally:
        queue.close()
        s.close()


def test_a_postgresql_queue_made_before_runs_kept_their_lease_in_a_column_gains_it() -> None:
    spec = postgres_url()
    s, queue = _two_runs(spec)
    queue.close()
    s.close()
    import psycopg

    with psycopg.connect(spec, autocommit=True) as db:
        db.execute("ALTER TABLE microdag.queue_runs DROP COLUMN lease")
    s = open_store(spec)
    queue = s.queue()  # (adds the column, computed from the plans of the runs already there)
    try:
        assert sorted((c.run_id, c.lease) for c in queue.claim("w", 7.0, 1, only="r-one")) == [("r-one", 7.0)]
    finally:
        queue.close()
        s.close()


MAPPED = '''
import os
import microdag

flow = microdag.Flow("mapped")


@flow.step
def numbers():
    return [1, 2, 3, 4, 5]


@flow.step(map="numbers", batch_size={batch})
def double(numbers):
    batch = numbers if isinstance(numbers, list) else [numbers]
    with open(os.environ["CALLS"], "a") as f:
        f.write("".join(f"{{n}}\\n" for n in batch))
    if 3 in batch and os.path.exists(os.environ["FAIL_IF"]):
        raise RuntimeError("3 fails")
    return [n * 2 for n in batch] if isinstance(numbers, list) else numbers * 2


@flow.step
def total(double):
    return sum(double)
'''


@pytest.mark.parametrize("batch", ["None", "2"])
def test_a_resumed_map_on_workers_runs_only_the_units_that_did_not_succeed(shared, three, tmp_path, batch) -> None:
    _, calls, fail = three
    path = tmp_path / "mapped.py"
    path.write_text(MAPPED.format(batch=batch))
    flow = _load(str(path))
    open(fail, "w").close()
    run = flow.run(executor="workers", store=shared, run_id="r-map", raise_on_failure=False, on_failure="continue")
    assert run.status == "failed" and sorted(_calls(calls)) == ["1", "2", "3", "4", "5"]
    os.unlink(fail)
    run = flow.run(executor="workers", store=shared, run_id="r-map", resume=True, keep_outputs=True)
    assert run.status == "succeeded" and run["total"] == 30 and run["double"] == [2, 4, 6, 8, 10]
    again = _calls(calls)[5:]
    assert again == (["3"] if batch == "None" else ["3", "4"])  # the unit that failed, alone
    # the same as the runner does on a resume
    os.unlink(calls)
    open(fail, "w").close()
    local = flow.run(store=shared, run_id="r-local", raise_on_failure=False, on_failure="continue")
    os.unlink(fail)
    flow.run(store=shared, run_id=local.id, resume=True)
    assert _calls(calls)[5:] == again
