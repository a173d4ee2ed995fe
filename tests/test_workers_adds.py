"""Steps that add steps on ``executor="workers"``: the adds travel with the
step's outcome to the queue, which grows the run for every worker.

Worker processes are real children (``python -m microdag worker``) with
deadlines; the flows are ``workadds`` (functions a worker finds by name).
"""

import os
import time

from support import run_cli
from test_workers import shared, start_worker, stop, submit, wait_end  # noqa: F401 (the fixture)

import workadds
from microdag.stores import open_store

FLOW = "import workadds\nflow = workadds.{maker}()\n"
ADDED = {"a", "b", "items", "sq", "total"}


def flow_file(folder, maker: str = "flow") -> str:
    path = os.path.join(folder, f"{maker}.py")
    with open(path, "w") as f:
        f.write(FLOW.format(maker=maker))
    return path


def ran(log: str) -> "dict[str, int]":
    counts: dict[str, int] = {}
    if os.path.exists(log):
        with open(log) as f:
            for line in f:
                counts[line.split()[0]] = counts.get(line.split()[0], 0) + 1
    return counts


def outputs(store: str, run_id: str) -> "dict[str, object]":
    s = open_store(store, readonly=True)
    try:
        return {r.step: s.decode(r.output) for r in s.tasks(run_id) if r.output is not None and r.item < 0}
    finally:
        s.close()


def test_two_workers_run_every_added_step_once(tmp_path, shared) -> None:
    store, log = shared, str(tmp_path / "calls.log")
    run_id = submit(flow_file(tmp_path), store)
    procs = [start_worker(store, log) for _ in range(2)]
    try:
        assert wait_end(store, run_id, 60) == "succeeded"
    finally:
        said = stop(procs)
    assert outputs(store, run_id) == dict(workadds.flow().run(keep_outputs=True).outputs), said
    assert ran(log) == {name: 1 for name in
                        ["seed", "grow", "side", "double", "inc", "items", "total"] + [f"square{x}" for x in range(5)]}
    s = open_store(store, readonly=True)
    try:
        assert {made["step"] for made in s.added_steps(run_id)} == ADDED
    finally:
        s.close()
    shown = run_cli("show", "--store", store, run_id)
    assert shown.returncode == 0, shown.stderr
    for name in ADDED:
        assert name in shown.stdout


def test_a_taken_name_fails_the_step_that_added_it(tmp_path, shared) -> None:
    store = shared
    run_id = workadds.taken_flow().run(executor="workers", store=store, raise_on_failure=False).id
    s = open_store(store, readonly=True)
    try:
        records = {r.step: r for r in s.tasks(run_id) if r.item < 0}
    finally:
        s.close()
    assert records["taken"].status == "failed" and records["taken"].error_type == "FlowError"
    assert "already a step" in records["taken"].error_message and "added by step 'taken'" in \
        records["taken"].error_message
    assert records["side"].status == "succeeded"


def test_a_worker_killed_mid_run_and_the_run_finishes(tmp_path, shared) -> None:
    store, log = shared, str(tmp_path / "calls.log")
    run_id = submit(flow_file(tmp_path), store, "--lease", "0.5")
    os.environ["WORKERS_TEST_SLEEP"] = "0.2"  # (the steps take a while: the kill meets the added steps)
    try:
        procs = [start_worker(store, log, "--lease", "0.5") for _ in range(2)]
    finally:
        del os.environ["WORKERS_TEST_SLEEP"]
    try:
        deadline = time.monotonic() + 30
        while "double" not in ran(log) and time.monotonic() < deadline:
            time.sleep(0.01)
        procs[0].kill()  # SIGKILL: its claims are held until their lease runs out
        status = wait_end(store, run_id, 60)
    finally:
        said = stop(procs)
    assert status == "succeeded", said
    assert outputs(store, run_id) == dict(workadds.flow().run(keep_outputs=True).outputs)


def test_a_run_with_added_steps_resumes_on_workers(tmp_path, shared) -> None:
    """The resumed run makes its added steps again from their records; the
    one that failed runs again, on the workers."""
    gate = tmp_path / "fail"
    gate.touch()
    inputs = {"gate": str(gate)}
    first = workadds.gated_flow().run(inputs, executor="workers", store=shared, raise_on_failure=False)
    assert first.status == "failed"
    gate.unlink()
    again = workadds.gated_flow().run(inputs, executor="workers", store=shared, run_id=first.id, resume=True)
    assert again.status == "succeeded" and dict(again.outputs) == {"plan": 1, "after": 2}


def test_added_steps_hold_the_runs_pools_on_workers(shared) -> None:
    run = workadds.pooled_flow().run(executor="workers", store=shared, max_workers=2, pools={"db": 1})
    assert run.status == "succeeded" and run["p1"] == 6 and run["p2"] == 4
    refused = workadds.pooled_flow().run(executor="workers", store=shared, raise_on_failure=False)
    assert refused.status == "failed"
    assert "no pool or rate of this run" in str(refused.error)


def test_an_added_steps_output_is_kept_by_its_return_annotation(shared) -> None:
    """A JSON store writes an added step's output by its return annotation (a
    dataclass) and its consumer, on a worker, reads the dataclass back."""
    run = workadds.typed_flow().run(executor="workers", store=shared, max_workers=2)
    assert run.status == "succeeded" and run["kind"] == "Part 3"
    assert run["part"] == workadds.Part("p", 3)


def test_the_runs_tasks_name_the_step_that_added_them(shared) -> None:
    """``Task.added_by`` of a run on workers, as in one process (it was ``None``)."""
    run = workadds.flow().run(executor="workers", store=shared, max_workers=2)
    assert {name: task.added_by for name, task in run.tasks.items()} == \
        {name: task.added_by for name, task in workadds.flow().run().tasks.items()}
    assert run.tasks["total"].added_by == "grow"
