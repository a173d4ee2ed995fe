"""Durable runs: the runner with a store.

What a run records (every store, every executor), resuming a failed run
without re-running what succeeded, resuming after the process was SIGKILLed
at random points, ``run_step(from_run=)``, and run directories inside the
store.  The store contract itself is ``test_stores.py``'s.  Steps count their
own runs with marker files (see ``durablesteps.py``), so "not run again" is
checked across processes.
"""

import os
import random
import selectors
import signal
import subprocess
import sys
import time

import pytest

import durablesteps as ds
from microdag import Flow, FlowError, RunFailed
from microdag.stores import JSONStore, MemoryStore, SQLiteStore, StoreError
from support import BACKENDS as EXECUTORS
from support import STORE_KINDS as KINDS
from support import child_env, make_store


@pytest.fixture
def stores(tmp_path):
    """``stores(kind, codec="json", reopen_of=None)``: a store in ``tmp_path``
    (or a fresh instance on the files of ``reopen_of``); all closed at teardown."""
    opened = []

    def make(kind=None, codec="json", reopen_of=None):
        if reopen_of is not None:
            if isinstance(reopen_of, MemoryStore):
                return reopen_of
            store = type(reopen_of)(reopen_of.path, codec=reopen_of.codec)
        else:
            folder = tmp_path / f"store-{len(opened)}"
            folder.mkdir()
            store = make_store(kind or "sqlite", folder, codec)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def marks(tmp_path):
    path = tmp_path / "marks"
    path.mkdir()
    return str(path)


def statuses(run):
    return {name: task.status for name, task in run.tasks.items()}


def attempts(run):
    return {name: task.attempts for name, task in run.tasks.items()}


def counts(marks, flow):
    return {name: ds.runs_of(marks, name) for name in flow.steps}


def uninterrupted_small(tmp_path, x):
    """The outputs of ``small_flow`` when ``flaky`` does not fail."""
    clean = tmp_path / "clean"
    clean.mkdir()
    ds.first_time(str(clean), "flaky")  # use up flaky's failure
    return ds.small_flow().run({"x": x, "marks": str(clean)}, keep_outputs=True).outputs


# -- 1. what a run records ------------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_run_is_recorded_as_it_ran(kind, executor, stores):
    store = stores(kind)
    flow = ds.record_flow()
    run = flow.run({"x": 3}, store=store, executor=executor, on_failure="continue",
                   raise_on_failure=False, keep_outputs=True)
    assert run.status == "failed"
    assert statuses(run) == {"base": "succeeded", "retried": "succeeded", "broken": "failed",
                             "after_broken": "skipped", "after_retried": "succeeded"}
    assert attempts(run)["retried"] == 2

    # a fresh store object on the same files: the record is durable once run() returned
    loaded = stores(reopen_of=store).load_run(run.id)
    assert (loaded.id, loaded.flow, loaded.status) == (run.id, "durable-record", "failed")
    assert statuses(loaded) == statuses(run)
    assert attempts(loaded) == attempts(run)
    assert loaded.inputs == {"x": 3}
    assert dict(loaded.outputs.items()) == run.outputs
    assert loaded["base"] == {"x": 3, "items": [3, 4], "none": None, "ok": True, "f": 0.5}
    assert loaded.started == pytest.approx(run.started, abs=1.0)
    assert loaded.finished == pytest.approx(run.finished, abs=0.01)
    for name in ("base", "retried", "broken", "after_retried"):
        task = loaded.tasks[name]
        assert run.started - 1 <= task.started <= task.finished <= run.finished + 0.01

    error = loaded.tasks["broken"].error
    assert error.type_name == "ValueError"
    assert str(error) == "ValueError: broken step saw x=3"
    assert "ValueError: broken step saw x=3" in error.traceback
    assert "step 'broken' of flow 'durable-record' failed" in error.traceback
    assert loaded.error is not None and loaded.error.type_name == "ValueError"
    assert loaded.tasks["after_broken"].error is None

    (info,) = stores(reopen_of=store).list_runs()
    assert (info.id, info.flow, info.status, info.inputs) == (run.id, "durable-record", "failed", {"x": 3})

    # the retried step's first attempt is kept beside its record (which holds the last)
    (first,) = stores(reopen_of=store).attempts(run.id)
    assert first[:3] == ("retried", -1, 1)
    assert first[5:] == ("ConnectionError", "transient, attempt 1")
    retried = loaded.tasks["retried"]
    assert run.started - 1 <= first[3] <= first[4] <= retried.started + 0.01


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("kind", KINDS)
def test_cancelled_steps_are_recorded_as_cancelled(kind, executor, stores, marks):
    store = stores(kind)
    flow = ds.fail_first_flow()
    run = flow.run({"marks": marks}, store=store, executor=executor, max_workers=1, raise_on_failure=False)
    expected = {"fail_first": "failed", "later": "cancelled", "after": "cancelled"}
    assert statuses(run) == expected
    loaded = stores(reopen_of=store).load_run(run.id)
    assert loaded.status == "failed"
    assert statuses(loaded) == expected
    assert attempts(loaded) == {"fail_first": 1, "later": 0, "after": 0}
    assert len(loaded.outputs) == 0


def test_a_succeeded_run_is_recorded_with_every_output(stores):
    store = stores("sqlite")
    flow = ds.record_flow()
    flow.add("fine", ds.use_value, inputs={"value": "base"})
    run = flow.run({"x": 1}, store=store, targets=["after_retried", "fine"])
    assert run.status == "succeeded"
    loaded = stores(reopen_of=store).load_run(run.id)
    assert loaded.status == "succeeded"
    # every succeeded step's output is stored, not only those Run.outputs kept
    assert dict(loaded.outputs.items()) == {
        "base": {"x": 1, "items": [1, 2], "none": None, "ok": True, "f": 0.5},
        "retried": 3, "after_retried": 4, "fine": repr(ds.base(1)),
    }
    # steps outside the targets are not part of the record
    assert set(loaded.tasks) == {"base", "retried", "after_retried", "fine"}


@pytest.mark.parametrize("spec", ["sqlite:{tmp}/runs.sqlite", "{tmp}/runs.db", "json:{tmp}/runs"])
def test_store_given_as_a_spec_string(spec, tmp_path, marks, stores):
    spec = spec.format(tmp=tmp_path)
    flow = ds.small_flow()
    ds.first_time(marks, "flaky")
    run = flow.run({"x": 2, "marks": marks}, store=spec)
    path = spec.split(":", 1)[-1]
    store = JSONStore(path) if spec.startswith("json:") else SQLiteStore(path)
    try:
        loaded = store.load_run(run.id)
        assert loaded.status == "succeeded"
        assert loaded["join"] == run["join"] == {"sum": 36, "parts": [30, [2, 4]], "note": "naïve ✓"}
        assert [r.id for r in store.list_runs(flow="durable-small")] == [run.id]
    finally:
        store.close()


def test_bad_store_spec_or_inputs_fail_before_any_step(tmp_path, marks):
    flow = ds.small_flow()
    with pytest.raises(FlowError, match="unknown store spec 'runs.txt'"):
        flow.run({"x": 1, "marks": marks}, store="runs.txt")
    # inputs the JSON codec cannot keep exactly
    with pytest.raises(FlowError, match="inputs is not JSON: it holds a tuple"):
        flow.run({"x": (1, 2), "marks": marks}, store=f"{tmp_path}/s.db")
    assert os.listdir(marks) == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_id_cannot_be_reused_without_resume(kind, stores, marks):
    store = stores(kind)
    flow = ds.small_flow()
    ds.first_time(marks, "flaky")
    run = flow.run({"x": 1, "marks": marks}, store=store, run_id="nightly")
    assert run.id == "nightly"
    before = store.tasks("nightly")
    with pytest.raises(StoreError, match="nightly"):
        flow.run({"x": 2, "marks": marks}, store=store, run_id="nightly")
    assert all(n == 1 for n in counts(marks, flow).values())
    assert store.tasks("nightly") == before
    assert store.run_info("nightly").inputs == {"x": 1, "marks": marks}


# -- 2. resume -------------------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("kind", KINDS)
def test_resume_reruns_only_what_did_not_succeed(kind, executor, stores, marks, tmp_path):
    store = stores(kind)
    flow = ds.small_flow()
    first = flow.run({"x": 5, "marks": marks}, store=store, executor=executor,
                     on_failure="continue", raise_on_failure=False)
    assert statuses(first) == {"src": "succeeded", "left": "succeeded", "right": "succeeded",
                               "flaky": "failed", "join": "skipped", "solo": "succeeded"}
    assert store.run_info(first.id).status == "failed"

    resumed = flow.run(store=stores(reopen_of=store), run_id=first.id, resume=True,
                       executor=executor, keep_outputs=True)
    assert resumed.id == first.id
    assert resumed.status == "succeeded"
    assert resumed.inputs == {"x": 5, "marks": marks}  # the stored inputs
    assert counts(marks, flow) == {"src": 1, "left": 1, "right": 1, "flaky": 2, "join": 1, "solo": 1}
    expected = uninterrupted_small(tmp_path, 5)
    assert resumed.outputs == expected
    # restored steps keep their first run's attempts
    assert attempts(resumed) == {name: 1 for name in flow.steps}

    loaded = stores(reopen_of=store).load_run(first.id)
    assert loaded.status == "succeeded"
    assert set(statuses(loaded).values()) == {"succeeded"}
    assert dict(loaded.outputs.items()) == expected
    assert loaded.tasks["flaky"].error is None  # the old failure is replaced
    assert [r.id for r in store.list_runs()] == [first.id]  # resuming adds no run


@pytest.mark.parametrize("kind", KINDS)
def test_resume_after_fail_fast_runs_the_cancelled_steps(kind, stores, marks, tmp_path):
    store = stores(kind)
    flow = ds.small_flow()
    with pytest.raises(RunFailed):
        flow.run({"x": 7, "marks": marks}, store=store)
    records = {r.step: r.status for r in store.tasks(store.list_runs()[0].id)}
    run_id = store.list_runs()[0].id
    assert records["flaky"] == "failed"
    assert "cancelled" in records.values() or "skipped" in records.values()
    assert set(records) == set(flow.steps)  # pending/cancelled ones are recorded too
    done = {step for step, status in records.items() if status == "succeeded"}
    before = counts(marks, flow)

    resumed = flow.run(store=store, run_id=run_id, resume=True, keep_outputs=True)
    assert resumed.status == "succeeded"
    assert resumed.outputs == uninterrupted_small(tmp_path, 7)
    after = counts(marks, flow)
    for name in flow.steps:
        assert after[name] == before[name] + (name not in done), name


@pytest.mark.parametrize("kind", KINDS)
def test_resume_of_a_succeeded_run_runs_nothing(kind, stores, marks):
    store = stores(kind)
    flow = ds.small_flow()
    ds.first_time(marks, "flaky")
    run = flow.run({"x": 1, "marks": marks}, store=store)
    again = flow.run(store=store, run_id=run.id, resume=True)
    assert again.status == "succeeded"
    assert again["join"] == run["join"]
    assert all(n == 1 for n in counts(marks, flow).values())


@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_resume_keeps_the_successes_it_did_not_reach(kind, stores, marks):
    """A resume that fails fast before reaching steps the stored run records
    as succeeded must not forget them: the next resume does not re-run them."""
    store = stores(kind)
    flow = ds.fail_first_flow()
    first = flow.run({"marks": marks}, store=store, on_failure="continue", max_workers=1,
                     raise_on_failure=False)
    assert statuses(first) == {"fail_first": "failed", "later": "succeeded", "after": "succeeded"}

    # fail_first still fails (and runs first): the run stops before restoring later/after
    second = flow.run(store=store, run_id=first.id, resume=True, max_workers=1, raise_on_failure=False)
    assert second.status == "failed"
    kept = {r.step: (r.status, r.output) for r in store.tasks(first.id)}
    assert kept["later"] == ("succeeded", b'"later"'), kept
    assert kept["after"] == ("succeeded", b'"later!"'), kept

    third = flow.run(store=store, run_id=first.id, resume=True, on_failure="continue",
                     raise_on_failure=False, keep_outputs=True)
    assert third.outputs == {"later": "later", "after": "later!"}
    assert counts(marks, flow) == {"fail_first": 3, "later": 1, "after": 1}


@pytest.mark.parametrize("kind", KINDS)
def test_resume_with_new_inputs_uses_them(kind, stores, marks):
    store = stores(kind)
    flow = ds.small_flow()
    first = flow.run({"x": 1, "marks": marks}, store=store, on_failure="continue", raise_on_failure=False)
    with pytest.warns(UserWarning, match="input 'x' was given as 100, but only steps the run finished take it"):
        resumed = flow.run({"x": 100, "marks": marks}, store=store, run_id=first.id, resume=True)
    # src, left and right are restored (x=1); nothing re-ran with x=100, and the resume said so
    assert resumed["join"] == {"sum": 23, "parts": [20, [1, 2]], "note": "naïve ✓"}
    assert resumed.inputs == {"x": 100, "marks": marks}


@pytest.mark.parametrize("kind", KINDS)
def test_resume_of_an_unknown_run_is_a_store_error(kind, stores, marks):
    store = stores(kind)
    flow = ds.small_flow()
    with pytest.raises(StoreError, match="no-such-run"):
        flow.run({"x": 1, "marks": marks}, store=store, run_id="no-such-run", resume=True)
    assert os.listdir(marks) == []
    assert store.list_runs() == []


def test_resume_needs_a_store_and_a_run_id(stores, marks):
    store = stores("memory")
    flow = ds.small_flow()
    with pytest.raises(FlowError, match="resume=True needs store= and the run_id="):
        flow.run({"x": 1, "marks": marks}, run_id="r1", resume=True)
    with pytest.raises(FlowError, match="resume=True needs store= and the run_id="):
        flow.run({"x": 1, "marks": marks}, store=store, resume=True)
    assert os.listdir(marks) == []
    assert store.list_runs() == []


@pytest.mark.parametrize("kind", ["json", "sqlite"])
def test_resume_after_the_flow_changed_needs_force(kind, stores, marks, tmp_path):
    store = stores(kind)
    first = ds.small_flow().run({"x": 2, "marks": marks}, store=store, on_failure="continue",
                                raise_on_failure=False)
    before = counts(marks, ds.small_flow())

    changed = ds.small_flow().add("extra", ds.use_value, inputs={"value": "solo"})
    with pytest.raises(FlowError, match="force=True") as info:
        changed.run(store=store, run_id=first.id, resume=True)
    assert first.id in str(info.value) and "durable-small" in str(info.value)
    assert counts(marks, ds.small_flow()) == before  # nothing ran
    assert store.run_info(first.id).status == "failed"

    run = changed.run(store=stores(reopen_of=store), run_id=first.id, resume=True, force=True,
                      keep_outputs=True)
    assert run.status == "succeeded"
    assert run["extra"] == "1"
    assert run["join"] == uninterrupted_small(tmp_path, 2)["join"]
    assert counts(marks, ds.small_flow()) == {"src": 1, "left": 1, "right": 1, "flaky": 2, "join": 1, "solo": 1}


def test_retry_and_timeout_changes_do_not_block_resume(stores, marks, tmp_path):
    store = stores("sqlite")
    first = ds.small_flow().run({"x": 3, "marks": marks}, store=store, raise_on_failure=False)
    flow = ds.Flow("durable-small")
    for fn in (ds.src, ds.left, ds.right, ds.flaky, ds.join, ds.solo):
        flow.add(fn.__name__, fn, retries=2, timeout=30, priority=1)
    run = flow.run(store=store, run_id=first.id, resume=True, keep_outputs=True)
    assert run.outputs == uninterrupted_small(tmp_path, 3)


@pytest.mark.parametrize(
    "maker, type_name", [(ds.make_tuple, "tuple"), (ds.make_set, "set"), (ds.make_point, "Point")]
)
@pytest.mark.parametrize("kind", KINDS)
def test_a_non_json_output_fails_its_step(kind, maker, type_name, stores):
    store = stores(kind)
    flow = ds.Flow("durable-values").add("make", maker).add("use", ds.use_value, inputs={"value": "make"})
    with pytest.raises(RunFailed) as info:
        flow.run(store=store)
    run = info.value.run
    assert statuses(run) == {"make": "failed", "use": "skipped"}
    message = str(run.tasks["make"].error)
    assert "step 'make'" in message and type_name in message and "codec='pickle'" in message
    loaded = store.load_run(run.id)
    assert statuses(loaded) == {"make": "failed", "use": "skipped"}
    assert loaded.tasks["make"].error.type_name == "TypeError"
    assert "codec='pickle'" in str(loaded.tasks["make"].error)

    pickled = stores(kind, codec="pickle")
    run = flow.run(store=pickled)
    value = maker()
    assert run["use"] == repr(value)
    kept = stores(reopen_of=pickled).load_run(run.id)["make"]
    assert kept == value and type(kept) is type(value)
    assert flow.run_step("use", from_run=run.id, store=pickled) == repr(value)


@pytest.mark.parametrize("kind", KINDS)
def test_resume_restores_a_big_output(kind, stores, marks):
    store = stores(kind)
    flow = ds.Flow("durable-big").add("big", ds.big).add("count_rows", ds.count_rows)
    first = flow.run({"marks": marks}, store=store, raise_on_failure=False)
    assert statuses(first) == {"big": "succeeded", "count_rows": "failed"}
    resumed = flow.run(store=stores(reopen_of=store), run_id=first.id, resume=True, keep_outputs=True)
    assert resumed["count_rows"] == 10_000
    assert resumed["big"] == {"rows": [f"row {i:06d}" for i in range(10_000)]}
    assert counts(marks, flow) == {"big": 1, "count_rows": 2}


@pytest.mark.parametrize("executor", ["inline", "processes"])
@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_resume_does_not_rerun_a_succeeded_map_step(kind, executor, stores, marks):
    store = stores(kind)
    flow = ds.map_flow()
    first = flow.run({"item": [1, 2, 3, 4], "marks": marks}, store=store, executor=executor,
                     raise_on_failure=False)
    assert statuses(first) == {"square": "succeeded", "total": "failed"}
    assert store.output(first.id, "square") == [1, 4, 9, 16]
    resumed = flow.run(store=store, run_id=first.id, resume=True, executor=executor)
    assert resumed["total"] == 30
    assert [ds.runs_of(marks, f"square-{i}") for i in (1, 2, 3, 4)] == [1, 1, 1, 1]


@pytest.mark.parametrize("batch_size", [None, 2], ids=["items", "batches"])
@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("kind", KINDS)
def test_resume_of_a_failed_map_reruns_only_the_items_that_failed(kind, executor, batch_size, stores, marks):
    store = stores(kind)
    flow = ds.items_flow(batch_size)
    first = flow.run({"item": [1, 2, 3, 4, 5], "marks": marks}, store=store, executor=executor,
                     on_failure="continue", raise_on_failure=False)
    assert statuses(first) == {"picky": "failed"}
    items = {r.item: r for r in store.tasks(first.id) if r.step == "picky" and r.item >= 0}
    base = batch_size or 1
    failed_item = 3 - (3 - 1) % base  # the first item of the unit holding item 3
    assert sorted(items) == list(range(0, 5, base))
    assert {i: r.status for i, r in items.items()} == {
        i: "failed" if i <= failed_item - 1 < i + base else "succeeded" for i in items
    }
    bad = items[failed_item - 1]
    assert bad.error_type == "RuntimeError" and "fails on its first run" in bad.error_message
    assert bad.started is not None and bad.finished >= bad.started
    assert store.attempts(first.id) == []  # no retries: the item's record is its only attempt
    resumed = flow.run(store=store, run_id=first.id, resume=True, executor=executor, keep_outputs=True)
    assert resumed["picky"] == [10, 20, 30, 40, 50]
    rerun = {3, 4} if batch_size == 2 else {3}
    assert [ds.runs_of(marks, f"picky-{i}") for i in (1, 2, 3, 4, 5)] == [
        2 if i in rerun else 1 for i in (1, 2, 3, 4, 5)
    ]
    assert store.run_info(first.id).status == "succeeded"


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_interrupted_by_ctrl_c_is_recorded_and_resumes(kind, stores, marks, tmp_path):
    store = stores(kind)
    flow = ds.small_flow().add("interrupted", ds.interrupted, priority=-100)
    ds.first_time(marks, "flaky")
    with pytest.raises(KeyboardInterrupt):
        flow.run({"x": 6, "marks": marks}, store=store)
    (info,) = stores(reopen_of=store).list_runs()
    assert info.status == "cancelled"
    records = {r.step: r.status for r in store.tasks(info.id)}
    assert records["interrupted"] == "cancelled"
    done = {step for step, status in records.items() if status == "succeeded"}
    assert "src" in done
    before = counts(marks, flow)
    resumed = flow.run(store=store, run_id=info.id, resume=True, keep_outputs=True)
    assert resumed.status == "succeeded"
    assert resumed["interrupted"] == 1006
    after = counts(marks, flow)
    assert all(after[name] == before[name] + (name not in done) for name in flow.steps), (before, after)


@pytest.mark.parametrize("kind", KINDS)
def test_a_cancelled_run_is_recorded_and_resumes(kind, stores, marks, tmp_path):
    import threading

    store = stores(kind)
    cancel = threading.Event()
    flow = ds.small_flow()
    ds.first_time(marks, "flaky")
    run = flow.run({"x": 2, "marks": marks}, store=store, cancel=cancel,
                   hooks=[lambda e: e.kind == "step_finished" and e.step == "src" and cancel.set()],
                   raise_on_failure=False)
    assert run.status == "cancelled"
    assert stores(reopen_of=store).run_info(run.id).status == "cancelled"
    records = {r.step: r.status for r in store.tasks(run.id)}
    assert records["src"] == "succeeded"
    assert "cancelled" in records.values()
    assert statuses(store.load_run(run.id)) == statuses(run)
    resumed = flow.run(store=store, run_id=run.id, resume=True, keep_outputs=True)
    assert resumed.outputs == uninterrupted_small(tmp_path, 2)
    assert ds.runs_of(marks, "src") == 1


@pytest.mark.parametrize("kind", KINDS)
def test_arun_records_and_resumes(kind, stores, marks, tmp_path):
    import asyncio

    store = stores(kind)
    flow = ds.Flow("durable-small")
    for name, fn in [("src", ds.src), ("left", ds.async_left), ("right", ds.right), ("flaky", ds.flaky),
                     ("join", ds.join), ("solo", ds.solo)]:
        flow.add(name, fn)
    first = asyncio.run(flow.arun({"x": 5, "marks": marks}, store=store, on_failure="continue",
                                  raise_on_failure=False))
    assert store.load_run(first.id).status == "failed"
    assert statuses(store.load_run(first.id)) == statuses(first)
    resumed = asyncio.run(flow.arun(store=store, run_id=first.id, resume=True, keep_outputs=True))
    assert resumed.outputs == uninterrupted_small(tmp_path, 5)
    assert counts(marks, flow) == {"src": 1, "left": 1, "right": 1, "flaky": 2, "join": 1, "solo": 1}


# -- 3. crash safety ---------------------------------------------------------------------------


def read_line(proc, timeout=60.0):
    """The child's first line of output (its run id), without hanging."""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            proc.kill()
            pytest.fail(f"the child printed nothing in {timeout} s")
    line = proc.stdout.readline().strip()
    if not line:
        proc.wait()
        pytest.fail(f"the child printed no run id: {proc.stderr.read()}")
    return line


def progress(marks):
    """How many step runs the marker files show."""
    return sum(ds.runs_of(marks, name) for name in os.listdir(marks))


def steps_started(marks):
    """How many steps ran at least once (cheaper than ``progress``)."""
    return len(os.listdir(marks))


def run_and_kill(args, marks, rng, target, max_delay, measure=steps_started):
    """Start ``python -m durablesteps ARGS``, SIGKILL it once ``measure(marks)``
    reaches ``target``, after a random delay; return (run id, whether it was killed)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "durablesteps", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(), text=True,
    )
    try:
        run_id = read_line(proc)
        deadline = time.monotonic() + 60
        while measure(marks) < target and proc.poll() is None:
            assert time.monotonic() < deadline, "the child made no progress"
            time.sleep(0.001)
        time.sleep(rng.uniform(0, max_delay))
        killed = proc.poll() is None
        if killed:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if not killed:
            assert proc.returncode == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return run_id, killed


def recorded(store, run_id, expected):
    """The steps the store records as succeeded, checking each one's output."""
    done = set()
    for record in store.tasks(run_id):
        if record.status == "succeeded":
            assert store.decode(record.output) == expected[record.step], record
            done.add(record.step)
    return done


def check_resumed(store, run_id, flow, expected, marks, before, done):
    """The stored run ended succeeded with every output; each step recorded as
    succeeded before the resume did not run again, every other one ran once more."""
    final = {r.step: r for r in store.tasks(run_id)}
    assert store.run_info(run_id).status == "succeeded"
    assert {step: r.status for step, r in final.items()} == dict.fromkeys(flow.steps, "succeeded")
    assert {step: store.decode(r.output) for step, r in final.items()} == expected
    after = counts(marks, flow)
    for name in flow.steps:
        assert after[name] == before[name] + (name not in done), name


# (layers, width, sleep, group commit size or 0 for the default 1024, child executor).
# With the default group commit a run this small commits only on time, so the
# stores' GROUP is patched in the child to put kills between many commits.
CRASH_MODES = {
    "400 steps, commit every 100 records": (40, 10, 0.001, 100, "inline"),
    "40 steps, commit each record": (10, 4, 0.004, 1, "threads"),
}


@pytest.mark.parametrize("mode", list(CRASH_MODES))
@pytest.mark.parametrize("kind", ["json", "sqlite"])
def test_resume_after_sigkill(kind, mode, tmp_path):
    """A child process runs the flow and is SIGKILLed once a random number of
    steps has started (plus a random delay); the run resumed here ends with
    every output of an uninterrupted run, and no step recorded as succeeded
    before the kill runs again.  A fresh store for each kill."""
    kill_and_resume(kind, mode, tmp_path, f"{kind} {mode}")


def kill_and_resume(kind, mode, tmp_path, seed, kills=4):
    """``test_resume_after_sigkill`` with the random kill points of ``seed``."""
    layers, width, sleep, group, child_executor = CRASH_MODES[mode]
    flow = ds.crash_flow(layers, width)
    expected = ds.expected_values(flow)
    total = len(expected)
    rng = random.Random(seed)
    # one random kill point in each of `kills` slices of the run, so some kills
    # come before the first commit and some after several
    targets = [rng.randint(2 + k * (total - 4) // kills, 2 + (k + 1) * (total - 4) // kills) for k in range(kills)]
    stored = []  # how many steps each kill left recorded as succeeded
    for n, target in enumerate(targets):
        where = tmp_path / f"kill-{n}"
        where.mkdir()
        marks = str(where / "marks")
        os.mkdir(marks)
        path = str(where / ("store.db" if kind == "sqlite" else "store"))
        spec = f"{kind}:{path}"
        args = [spec, marks, child_executor, str(layers), str(width), str(sleep), str(group)]
        run_id, killed = run_and_kill(args, marks, rng, target, 0.004)

        store = SQLiteStore(path) if kind == "sqlite" else JSONStore(path)
        try:
            info = store.run_info(run_id)
            assert info.status == ("running" if killed else "succeeded")
            assert info.inputs == {"marks": marks, "sleep": sleep}
            assert [r.id for r in store.list_runs()] == [run_id]
            done = recorded(store, run_id, expected)
            before = counts(marks, flow)
            assert all(before[name] == 1 for name in done)  # a recorded step ran once
            assert len(os.listdir(marks)) >= target  # killed mid-run, not before it
            stored.append(len(done))

            executor = "threads" if n % 2 else "inline"
            run = flow.run(store=store, run_id=run_id, resume=True, executor=executor)
            assert run.status == "succeeded"
            sinks = [name for name in flow.steps if not flow.graph.dependents(name)]
            assert run.outputs == {name: expected[name] for name in sinks}
        finally:
            store.close()
        reopened = SQLiteStore(path) if kind == "sqlite" else JSONStore(path)
        try:
            check_resumed(reopened, run_id, flow, expected, marks, before, done)
        finally:
            reopened.close()
    # the kills were not all before the first commit or after the end
    assert any(0 < n < total for n in stored), stored


@pytest.mark.parametrize("kind", ["json", "sqlite"])
def test_a_resume_killed_in_turn_loses_nothing(kind, tmp_path):
    """Crash, resume in another process, crash that one too, resume again."""
    layers, width, sleep, group = 10, 4, 0.004, 1
    flow = ds.crash_flow(layers, width)
    expected = ds.expected_values(flow)
    rng = random.Random(f"twice {kind}")
    marks = str(tmp_path / "marks")
    os.mkdir(marks)
    path = str(tmp_path / ("store.db" if kind == "sqlite" else "store"))
    args = [f"{kind}:{path}", marks, "threads", str(layers), str(width), str(sleep), str(group)]

    run_id, killed = run_and_kill(args, marks, rng, rng.randint(5, 15), 0.004)
    assert killed
    store = SQLiteStore(path) if kind == "sqlite" else JSONStore(path)
    try:
        done_first = recorded(store, run_id, expected)
    finally:
        store.close()
    assert all(ds.runs_of(marks, name) == 1 for name in done_first)
    before_second = counts(marks, flow)

    target = sum(before_second.values()) + rng.randint(3, 10)
    again, killed = run_and_kill(args + [run_id], marks, rng, target, 0.004, measure=progress)
    assert again == run_id
    store = SQLiteStore(path) if kind == "sqlite" else JSONStore(path)
    try:
        done_second = recorded(store, run_id, expected)
        assert done_first <= done_second
        before = counts(marks, flow)
        assert store.run_info(run_id).status == "running"
        for name in flow.steps:  # the second process ran what was not recorded, once at most
            ran = before[name] - before_second[name]
            if name in done_first:
                assert ran == 0, name
            elif name in done_second:
                assert ran == 1, name
            else:
                assert ran in (0, 1), name
        run = flow.run(store=store, run_id=run_id, resume=True)
        assert run.status == "succeeded"
    finally:
        store.close()
    reopened = SQLiteStore(path) if kind == "sqlite" else JSONStore(path)
    try:
        check_resumed(reopened, run_id, flow, expected, marks, before, done_second)
    finally:
        reopened.close()
    assert all(ds.runs_of(marks, name) == 1 for name in done_first)


@pytest.mark.parametrize("executor", ["inline", "threads"])
@pytest.mark.parametrize("kind", ["json", "sqlite"])
def test_a_kill_loses_at_most_a_tenth_of_a_second_of_work_per_worker(kind, executor, tmp_path):
    """SIGKILL a run of 10 ms steps at random moments: the steps that finished
    but are not recorded as succeeded (a resume runs them again) ran, together,
    under 0.1 s of step time, plus the step each worker was just finishing."""
    seconds = 0.01
    workers = 1 if executor == "inline" else 2
    rng = random.Random(f"loss {kind} {executor}")
    losses = []
    for n in range(3):
        where = tmp_path / f"kill-{n}"
        marks = where / "marks"
        marks.mkdir(parents=True)
        path = str(where / ("store.db" if kind == "sqlite" else "store"))
        run_id = ds.kill_timed_run(f"{kind}:{path}", str(marks), executor, seconds, rng.uniform(0.2, 0.9), child_env())
        finished = ds.finished_steps(str(marks))
        store = SQLiteStore(path) if kind == "sqlite" else JSONStore(path)
        try:
            recorded = {r.step for r in store.tasks(run_id, outputs=False) if r.status == "succeeded"}
            assert recorded <= set(finished)
            lost = [finished[name] for name in set(finished) - recorded]
            losses.append(sum(lost))
            longest = max(finished.values(), default=0.0)
            assert sum(lost) <= 0.1 + workers * longest, (len(lost), sum(lost), len(finished))
            if n == 0:  # (resuming is tested elsewhere: once here is enough)
                run = ds.timed_flow().run(store=store, run_id=run_id, resume=True, executor=executor)
                assert run.status == "succeeded"
                assert set(ds.finished_steps(str(marks))) == set(ds.timed_flow().steps)
        finally:
            store.close()
    print(f"lost work per kill ({kind}, {executor}): {[round(x, 3) for x in losses]}")


@pytest.mark.parametrize("kind", ["json", "sqlite"])
def test_of_several_processes_resuming_one_run_at_once_exactly_one_runs_it(kind, tmp_path):
    """Four processes resume one failed run at the same moment: one runs it, the
    others are refused with an error naming the owner, and no step runs twice."""
    marks = tmp_path / "marks"
    marks.mkdir()
    path = str(tmp_path / ("store.db" if kind == "sqlite" else "store"))
    store = SQLiteStore(path) if kind == "sqlite" else JSONStore(path)
    try:
        first = ds.gated_flow().run({"marks": str(marks), "seconds": 0.2}, store=store, raise_on_failure=False)
    finally:
        store.close()
    assert first.status == "failed"
    (marks / "open").write_text("")
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-m", "durablesteps", "race", f"{kind}:{path}", first.id, str(go)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(), text=True)
        for _ in range(4)
    ]
    try:
        for proc in procs:
            assert read_line(proc) == "ready"
        go.write_text("")
        outcomes = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            outcomes.append(out.strip())
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert sorted(o.split(":")[0] for o in outcomes) == ["ran", "refused", "refused", "refused"], outcomes
    for outcome in outcomes:
        if outcome != "ran":
            assert f"run {first.id!r} is live in another process" in outcome
    assert sorted(ds.finished_steps(str(marks))) == ["t0", "t1", "t2"]  # each ran once


def test_of_several_threads_resuming_one_run_at_once_exactly_one_runs_it(tmp_path):
    """The same within one process, on a MemoryStore (and on SQLite)."""
    import threading

    for store in (MemoryStore(), SQLiteStore(tmp_path / "s.db")):
        marks = tmp_path / f"marks-{type(store).__name__}"
        marks.mkdir()
        first = ds.gated_flow().run({"marks": str(marks), "seconds": 0.2}, store=store, raise_on_failure=False)
        (marks / "open").write_text("")
        barrier = threading.Barrier(4)
        outcomes: list = []

        def resume():
            barrier.wait()
            try:
                ds.gated_flow().run(store=store, run_id=first.id, resume=True)
                outcomes.append("ran")
            except StoreError as exc:
                outcomes.append(f"refused: {exc}")

        threads = [threading.Thread(target=resume) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(o.split(":")[0] for o in outcomes) == ["ran", "refused", "refused", "refused"], outcomes
        assert sorted(ds.finished_steps(str(marks))) == ["t0", "t1", "t2"]
        store.close()


# -- 4. run_step(from_run=) -------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_run_step_from_a_stored_run(kind, stores, marks):
    store = stores(kind)
    flow = ds.small_flow()
    run = flow.run({"x": 4, "marks": marks}, store=store, on_failure="continue", raise_on_failure=False)
    tasks_before = store.tasks(run.id)
    info_before = store.run_info(run.id)

    # dependencies' outputs and flow inputs come from the stored run
    assert flow.run_step("left", from_run=run.id, store=store) == {"left": 5}
    assert flow.run_step("flaky", from_run=run.id, store=store) == 50  # its second run succeeds
    # inputs= overrides a stored flow input and a stored output
    assert flow.run_step("src", {"x": 40}, from_run=run.id, store=store) == 40
    assert flow.run_step("left", {"src": 41}, from_run=run.id, store=store) == {"left": 42}
    # a dependency without a stored output must be given
    with pytest.raises(FlowError, match="step 'join' needs the output of step 'flaky'"):
        flow.run_step("join", from_run=run.id, store=store)
    assert flow.run_step("join", {"flaky": 1}, from_run=run.id, store=store) == {
        "sum": 13, "parts": [1, [4, 8]], "note": "naïve ✓"
    }

    after = stores(reopen_of=store)
    assert after.tasks(run.id) == tasks_before
    info = after.run_info(run.id)
    assert (info.status, info.finished, info.inputs) == (info_before.status, info_before.finished, info_before.inputs)
    assert [r.id for r in after.list_runs()] == [run.id]


def test_run_step_from_a_store_spec(tmp_path, marks):
    flow = ds.small_flow()
    run = flow.run({"x": 4, "marks": marks}, store=f"{tmp_path}/runs.db", raise_on_failure=False)
    assert flow.run_step("right", from_run=run.id, store=f"sqlite:{tmp_path}/runs.db") == [4, 8]


def test_run_step_from_run_needs_the_store(stores, marks):
    flow = ds.small_flow()
    with pytest.raises(FlowError, match="needs the store="):
        flow.run_step("left", from_run="some-run")
    with pytest.raises(StoreError, match="missing-run"):
        flow.run_step("left", from_run="missing-run", store=stores("sqlite"))
    assert os.listdir(marks) == []


# -- 5. run directories ------------------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("kind", ["json", "sqlite"])
def test_step_files_live_in_the_store_and_survive_for_resume(kind, executor, stores, marks):
    store = stores(kind)
    flow = ds.files_flow()
    first = flow.run({"marks": marks}, store=store, executor=executor, raise_on_failure=False,
                     keep_outputs=True)
    assert statuses(first) == {"writer": "succeeded", "reader": "failed"}
    if kind == "sqlite":
        run_dir = os.path.join(store.path + ".work", first.id)
    else:
        run_dir = os.path.join(store.path, "runs", first.id, "work")
    assert first["writer"] == run_dir
    with open(os.path.join(run_dir, "writer", "data.txt")) as f:
        assert f.read() == "written by writer"

    resumed = flow.run(store=stores(reopen_of=store), run_id=first.id, resume=True, executor=executor)
    assert resumed["reader"] == ["written by writer", run_dir]
    assert counts(marks, flow) == {"writer": 1, "reader": 2}


def test_two_processes_run_different_runs_on_one_sqlite_store(tmp_path):
    db = str(tmp_path / "shared.db")
    flow = ds.crash_flow(20, 10)
    expected = ds.expected_values(flow)
    procs = []
    for k in range(2):
        marks = tmp_path / f"marks-{k}"
        marks.mkdir()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "durablesteps", db, str(marks), "threads", "20", "10", "0.001", "8"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(), text=True,
        ))
    run_ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        run_ids.append(out.split()[0])
    store = SQLiteStore(db)
    try:
        assert sorted(r.id for r in store.list_runs()) == sorted(run_ids)
        for run_id in run_ids:
            assert store.run_info(run_id).status == "succeeded"
            assert recorded(store, run_id, expected) == set(flow.steps)
    finally:
        store.close()


def test_a_run_records_its_source_and_structure(stores):
    store = stores("sqlite")
    flow = ds.small_flow()
    flow._source = "durablesteps:small_flow"
    run = flow.run({"x": 1, "marks": "unused"}, store=store, raise_on_failure=False)
    info = store.run_info(run.id)
    assert info.source == "durablesteps:small_flow"
    graph = store.graph(info.fingerprint)
    assert graph["nodes"] == list(flow.steps)
    names = graph["nodes"]
    assert {names[i]: sorted(names[d] for d in deps) for i, deps in enumerate(graph["deps"])} == {
        name: sorted(flow.graph.dependencies(name)) for name in flow.steps
    }


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_retried_map_item_keeps_its_failed_attempt(executor, stores, marks):
    store = stores("sqlite")
    flow = Flow("retried-items").add("picky", ds.picky, map="item", retries=1)
    run = flow.run({"item": [1, 2, 3, 4], "marks": marks}, store=store, executor=executor, keep_outputs=True)
    assert run["picky"] == [10, 20, 30, 40]
    (attempt,) = store.attempts(run.id)
    assert attempt[:3] == ("picky", 2, 1)  # item index 2 (the value 3), attempt 1
    assert attempt[5:] == ("RuntimeError", "item 3 fails on its first run")
    assert attempt[3] <= attempt[4]
    item = next(r for r in store.tasks(run.id) if r.step == "picky" and r.item == 2)
    assert (item.status, item.attempts) == ("succeeded", 2)


_CALLS: list[str] = []


def _counted(name: str, fail: "set[str]"):  # type: ignore[no-untyped-def]
    def step(**deps: int) -> int:
        _CALLS.append(name)
        if name in fail:
            raise ValueError(f"{name} fails")
        return 1 + sum(deps.values())
    return step


def _chain_flow(fail: "set[str]", rename_d: bool = False) -> Flow:
    flow = Flow("resume-subset")
    for name, deps in (("a", []), ("b", ["a"]), ("c", ["b"]), ("e" if rename_d else "d", [])):
        flow.add(name, _counted(name, fail), depends_on=deps)
    return flow


@pytest.mark.parametrize("kind", KINDS)
def test_resume_of_some_targets_takes_over_only_their_successes(kind, stores):
    store = stores(kind)
    first = _chain_flow({"c"}).run(store=store, on_failure="continue", raise_on_failure=False)
    assert {t: first.tasks[t].status for t in "abcd"} == {"a": "succeeded", "b": "succeeded", "c": "failed",
                                                          "d": "succeeded"}
    _CALLS.clear()
    again = _chain_flow(set()).run(store=stores(reopen_of=store), run_id=first.id, resume=True, targets=["c"],
                                   keep_outputs=True)
    assert _CALLS == ["c"]  # a and b taken over; d is outside the targets
    assert again["c"] == 3 and set(again.tasks) == {"a", "b", "c"}
    assert again.tasks["a"].attempts == first.tasks["a"].attempts


@pytest.mark.parametrize("kind", KINDS)
def test_a_forced_resume_ignores_recorded_steps_the_flow_no_longer_has(kind, stores):
    store = stores(kind)
    first = _chain_flow({"c"}).run(store=store, on_failure="continue", raise_on_failure=False)
    _CALLS.clear()
    renamed = _chain_flow(set(), rename_d=True)  # d is now e: another structure
    with pytest.raises(FlowError, match="force=True"):
        renamed.run(store=stores(reopen_of=store), run_id=first.id, resume=True)
    again = renamed.run(store=stores(reopen_of=store), run_id=first.id, resume=True, force=True,
                        keep_outputs=True)
    assert sorted(_CALLS) == ["c", "e"]  # a and b taken over, d's record ignored
    assert again.status == "succeeded" and again["c"] == 3 and "d" not in again.tasks
