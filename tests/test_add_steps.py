"""Steps that add steps: ``microdag.context().add`` in a running step.

The kernel's growth (``Kernel.grow``) on both twins, with every state and
counter kept; then the runner: added steps on every in-process backend,
with retries, maps, caches and stores, refusals at the call, resume after a
failure and after ``kill -9``; adds from other processes; and the model:
random flows whose steps add steps on every backend (in-process ones per
seed; processes, executors, Dask and workers on SQLite and PostgreSQL each
over several seeds in one child), against the rules and a pool's bound.

Step functions used by child processes live in ``addsteps.py`` (importable).
"""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import microdag._sched_py
from microdag import CycleError


# -- the kernel: grow ----------------------------------------------------------


def make(twin: ModuleType, n: int, edges: list[tuple[int, int]] = ()) -> Any:  # type: ignore[assignment]
    return twin.Kernel(n, [s for s, _ in edges], [d for _, d in edges])


def test_grow_mid_run_waits_for_unfinished_and_starts_on_finished(twin: ModuleType) -> None:
    k = make(twin, 3, [(0, 1), (1, 2)])
    k.reset()
    assert k.take() == [0]
    k.done(0)
    assert k.take() == [1]
    # 3 after 0 (succeeded): ready at once; 4 after 1 (running) and 3
    assert k.grow(2, [0, 1, 3], [3, 4, 4]) == []
    assert k.n == 5 and k.edges == 5
    assert k.remaining == 4 and k.ready == 1 and k.running == 1
    assert k.successors(0) == [1, 3] and k.successors(1) == [2, 4]
    assert k.predecessors(4) == [1, 3]
    assert k.take() == [3]
    k.done(3)
    assert k.ready == 0
    k.done(1)
    assert sorted(k.take()) == [2, 4]
    k.done(2)
    k.done(4)
    assert k.remaining == 0 and k.states() == bytes([twin.SUCCEEDED] * 5)


def test_grow_keeps_consumers_counted(twin: ModuleType) -> None:
    """A succeeded node gains a consumer: its output is needed until that one finishes."""
    k = make(twin, 2, [(0, 1)])
    k.reset()
    k.take()
    k.done(0)
    k.take()
    k.grow(1, [0], [2])
    assert k.release(1) == []  # 0 is still needed by 2
    k.done(1)
    assert k.take() == [2]
    k.done(2)
    assert k.release(2) == [0]


@pytest.mark.parametrize(
    ("outcome", "rule", "skipped"),
    [
        ("fail", "ALL_SUCCESS", True),
        ("fail", "NONE_FAILED", True),
        ("fail", "ALL_DONE", False),
        ("skip", "ALL_SUCCESS", True),
        ("skip", "NONE_FAILED", False),
        ("skip", "ALL_DONE", False),
    ],
)
def test_grow_after_a_bad_end_follows_the_trigger_rule(twin: ModuleType, outcome: str, rule: str, skipped: bool) -> None:
    k = make(twin, 1)
    k.reset()
    k.take()
    getattr(k, outcome)(0)
    # 1 after 0 with the rule; 2 after 1 (ALL_SUCCESS): skipped with it
    out = k.grow(2, [0, 1], [1, 2], triggers=[getattr(twin, rule), twin.ALL_SUCCESS])
    if skipped:
        assert out == [1, 2] and k.remaining == 0
        assert k.state(1) == k.state(2) == twin.SKIPPED
    else:
        assert out == [] and k.take() == [1]


def test_grow_refuses_and_leaves_the_kernel_as_it_was(twin: ModuleType) -> None:
    k = make(twin, 2, [(0, 1)])
    k.reset()
    with pytest.raises(ValueError, match="only new nodes"):
        k.grow(1, [2], [1])
    with pytest.raises(IndexError):
        k.grow(1, [0], [5])
    with pytest.raises(ValueError, match="differ in length"):
        k.grow(1, [0], [])
    with pytest.raises(ValueError, match="trigger"):
        k.grow(1, [0], [2], triggers=[9])
    with pytest.raises(CycleError) as info:
        k.grow(3, [0, 2, 3, 4], [2, 3, 4, 3])
    assert info.value.args[1] == [3, 4, 3]
    assert k.n == 2 and k.edges == 1 and k.remaining == 2 and k.take() == [0]


def test_grow_fifo_and_priorities(twin: ModuleType) -> None:
    k = make(twin, 2)
    k.set_priorities([5, 1])
    k.reset(policy="fifo")
    assert k.take(1) == [0]
    k.grow(2, [], [])
    assert k.take() == [1, 2, 3]
    k2 = make(twin, 2)
    k2.set_priorities([5, 1])
    k2.reset()
    k2.grow(1, [], [])
    assert sorted(k2.take()) == [0, 1, 2]


def test_grow_before_a_reset_and_a_new_run_after(twin: ModuleType) -> None:
    """A grown kernel runs again over every node, ranked afresh."""
    fresh = make(twin, 2, [(0, 1)])  # never run: the new nodes join a run that reset() starts over
    fresh.grow(2, [1, 2], [2, 3])
    fresh.reset()
    assert fresh.take() == [0] and fresh.remaining == 4
    k = make(twin, 2, [(0, 1)])
    k.reset()
    k.grow(2, [1, 2], [2, 3])
    order = []
    k.reset()
    while k.remaining:
        ids = k.take()
        order.append(ids)
        for i in ids:
            k.done(i)
    assert order == [[0], [1], [2], [3]]


def test_drive_returns_when_a_step_grows_the_kernel(twin: ModuleType) -> None:
    k = make(twin, 2)
    k.reset()
    outs: list[Any] = [None, None]

    def grower() -> str:
        k.grow(1, [0], [2])
        return "g"

    fns = [grower, lambda: "b"]
    lists = [[()] * 2, [()] * 2, [()] * 2, outs, [0] * 2, [0.0] * 2, [0.0] * 2]
    assert twin.drive(k, fns, *lists[:3], outs, *lists[4:], float, bytes(2)) is None
    # it returned before taking another step: the lists have no entry for node 2
    assert k.remaining == 2 and k.ready == 2 and outs[0] == "g"
    fns.append(lambda: "c")
    for lst in lists:
        lst.append(lst[0])
    outs[2] = None
    assert twin.drive(k, fns, *lists[:3], outs, *lists[4:], float, bytes(3)) is None
    assert k.remaining == 0 and outs == [None, "b", "c"]  # 0's output dropped once 2 ran


def test_grow_gives_new_nodes_their_pools(twin: ModuleType) -> None:
    k = make(twin, 2)
    k.set_pools([1], [[(0, 1)], []])
    k.reset()
    assert k.take() == [0, 1]
    assert k.grow(3, uses=[[(0, 1)], [], [(0, 1)]]) == []
    assert k.take() == [3]  # 2 and 4 wait for the unit 0 holds
    assert (k.waiting, k.room(0)) == (2, 0)
    assert k.done(0) == 1
    assert k.take() == [2] and k.take() == []
    k.done(2)
    assert k.take() == [4]
    assert k.grow(1) == [] and k.take() == [5]  # (none given: it holds nothing)
    for i in (1, 3, 4, 5):
        k.done(i)
    assert (k.remaining, k.room(0)) == (0, 1)


def test_grow_takes_an_apart_node_without_its_units(twin: ModuleType) -> None:
    k = make(twin, 1)
    k.set_pools([1], [[(0, 1)]])
    k.reset()
    assert k.take() == [0]
    k.grow(1, uses=[[(0, 1)]], apart=[1])
    assert k.take() == [1]  # (a map step: its units are held per unit attempt)
    assert k.acquire(1) is False
    k.done(0)
    assert k.acquire(1) is True and k.room(0) == 0


@pytest.mark.parametrize(
    ("kw", "error", "wording"),
    [
        ({"uses": [[(0, 3)]]}, ValueError, "node 1 uses 3 units of pool 0, which holds 2"),
        ({"uses": [[(0, 0)]]}, ValueError, "uses 0 units"),
        ({"uses": [[(1, 1)]]}, IndexError, None),
        ({"uses": [[], []]}, ValueError, "one entry per new node"),
        ({"apart": [0]}, IndexError, "not new"),
    ],
)
def test_grow_checks_uses_as_set_pools_does(twin: ModuleType, kw: Any, error: type, wording: str | None) -> None:
    k = make(twin, 1)
    k.set_pools([2], [[(0, 1)]])
    k.reset()
    with pytest.raises(error, match=wording):
        k.grow(1, **kw)
    assert k.n == 1  # left as it was
    k.grow(1, uses=[[(0, 2)]])
    assert k.take() == [0] and k.waiting == 1


def test_grow_refuses_uses_without_pools(twin: ModuleType) -> None:
    k = make(twin, 1)
    k.reset()
    with pytest.raises(ValueError, match="no pools"):
        k.grow(1, uses=[[(0, 1)]])
    assert k.grow(1, uses=[[]]) == [] and k.take() == [0, 1]


@st.composite
def growing(draw: Any) -> tuple[int, list[tuple[int, int]], list[tuple[int, list[tuple[int, int]], list[int]]]]:
    """A DAG, then growths (after how many finishes, new edges, triggers)."""
    n = draw(st.integers(0, 8))
    edges = [(s, d) for d in range(n) for s in range(d) if draw(st.booleans())]
    growths = []
    total = n
    for _ in range(draw(st.integers(1, 3))):
        after = draw(st.integers(0, total))
        m = draw(st.integers(0, 4))
        new = [(s, d) for d in range(total, total + m) for s in range(d) if draw(st.integers(0, 3)) == 0]
        growths.append((after, new, [draw(st.integers(0, 2)) for _ in range(m)]))
        total += m
    return n, edges, growths


@settings(max_examples=150, deadline=None)
@given(growing(), st.randoms(use_true_random=False), st.sampled_from(["critical", "fifo"]))
def test_grow_keeps_the_invariants_and_the_twins_agree(case: Any, rnd: random.Random, policy: str) -> None:
    """Random runs with random growths, on both twins in lockstep: the same
    results, every node once, after its predecessors, counters consistent."""
    n, edges, growths = case
    twins = [microdag._sched_py]
    try:
        import microdag._sched as c

        twins.append(c)
    except ImportError:
        pass
    seed = rnd.random()
    logs = []
    for twin in twins:
        r = random.Random(seed)
        k = make(twin, n, edges)
        k.reset(policy=policy)
        preds: dict[int, list[int]] = {i: [s for s, d in edges if d == i] for i in range(n)}
        ends: dict[int, int] = {}
        log: list[Any] = []
        pending = list(growths)
        running: list[int] = []
        finished = 0
        while True:
            while pending and finished >= pending[0][0]:
                _, new, trig = pending.pop(0)
                first = k.n
                m = len(trig)
                log.append(("grow", k.grow(m, [s for s, _ in new], [d for _, d in new], triggers=trig)))
                for j in range(m):
                    preds[first + j] = [s for s, d in new if d == first + j]
            if k.remaining == 0:
                break
            taken = k.take(r.randint(1, 3))
            for i in taken:
                assert all(k.state(p) not in (twin.PENDING, twin.READY, twin.RUNNING) for p in preds[i])
            running.extend(taken)
            log.append(("take", taken))
            i = running.pop(r.randrange(len(running)))
            how = r.choice(["done", "done", "done", "fail", "skip"])
            out = getattr(k, how)(i)
            log.append((how, i, out))
            ends[i] = how
            finished = k.finished
            assert k.remaining == k.n - k.finished - k.states().count(twin.EXCLUDED)
            assert k.ready == k.states().count(twin.READY)
            assert k.running == k.states().count(twin.RUNNING)
        while pending:  # growths after the end: new nodes on a finished run
            _, new, trig = pending.pop(0)
            log.append(("grow", k.grow(len(trig), [s for s, _ in new], [d for _, d in new], triggers=trig)))
            while k.remaining:
                for i in k.take():
                    k.done(i)
        assert k.remaining == 0
        logs.append(log)
    assert all(log == logs[0] for log in logs)


# -- the runner: steps that add steps -------------------------------------------------

import asyncio
import os
import signal
import subprocess
import sys
import time

import addsteps as ad
import microdag
from microdag import Flow, FlowError, RunFailed
from microdag.stores import MemoryStore, SQLiteStore
from support import TESTS_DIR, child_env, make_store

IN_PROCESS = ["inline", "threads", "arun"]


def run_on(flow: Flow, backend: str, **kw: Any) -> microdag.Run:
    if backend == "arun":
        return asyncio.run(flow.arun(**kw))
    return flow.run(executor=backend, **kw)


def statuses(run: microdag.Run) -> dict[str, str]:
    return {name: task.status for name, task in run.tasks.items()}


@pytest.mark.parametrize("backend", IN_PROCESS)
def test_added_steps_run_in_the_run(backend: str) -> None:
    run = run_on(ad.plain_flow(), backend)
    assert run.status == "succeeded"
    assert list(run.tasks) == ["load", "plan", "part0", "part1", "part2", "sum"]
    assert run.outputs == {"plan": 3, "part0": 10, "part1": 10, "part2": 10, "sum": 30}
    assert run.tasks["sum"].added_by == "plan" and run.tasks["plan"].added_by is None


@pytest.mark.parametrize("backend", IN_PROCESS)
def test_async_and_plain_adders_on_every_backend(backend: str) -> None:
    async def aplan(load: list[int]) -> int:
        microdag.context().add("twice", ad.square, depends_on=["load"], inputs={"x": "plan"})
        return 2

    flow = Flow("async adds")
    flow.add("load", ad.load)
    flow.add("plan", aplan)
    run = run_on(flow, backend)
    assert run.outputs["twice"] == 4 and statuses(run)["twice"] == "succeeded"


def test_the_flow_stays_static_and_runs_again() -> None:
    flow = ad.plain_flow()
    flow.validate()
    first = flow.run()
    again = flow.run(executor="threads")
    assert first.outputs == again.outputs and list(again.tasks) == list(first.tasks)
    flow.validate()
    flow.add("x", ad.total, depends_on=["sum"])  # an added step is no step of the flow
    with pytest.raises(FlowError, match="depends on 'sum', which is not defined"):
        flow.validate()


def test_an_added_step_waits_for_its_adder_and_reads_its_output() -> None:
    def adder() -> int:
        microdag.context().add("after", ad.square, inputs={"x": "adder"})
        time.sleep(0.01)
        return 7

    run = Flow("waits").add("adder", adder).run(executor="threads")
    assert run.outputs["after"] == 49
    assert run.tasks["after"].started >= run.tasks["adder"].finished


def test_an_added_step_after_a_failed_step_is_skipped() -> None:
    def boom() -> None:
        raise RuntimeError("boom")

    def late(boom):  # type: ignore[no-untyped-def]
        time.sleep(0.05)  # boom has failed by now
        microdag.context().add("child", ad.total, depends_on=["boom"])
        microdag.context().add("anyway", ad.load, depends_on=["boom"], trigger="all_done")

    flow = Flow("skips")
    flow.add("boom", boom)
    flow.add("late", late, inputs={}, trigger="all_done")
    run = flow.run(on_failure="continue", raise_on_failure=False)
    assert statuses(run) == {"boom": "failed", "late": "succeeded", "child": "skipped", "anyway": "succeeded"}


@pytest.mark.parametrize(
    ("call", "wording"),
    [
        (lambda c: c.add("load", ad.total), "already a step of this run"),
        (lambda c: c.add("x", ad.total, depends_on=["nope"]), "depends on 'nope', which is not defined"),
        (lambda c: c.add("x", ad.total, depends_on=["x"]), "depends on itself"),
        (lambda c: c.add("x", ad.square, inputs={"x": "nope"}), "maps parameter 'x' to step 'nope'"),
        (lambda c: c.add("x", ad.total, retries=-1), "retries must be an int >= 0"),
        (lambda c: c.add("x", ad.total, colour="red"), "unknown option 'colour'"),
        (lambda c: c.add("x", ad.total, priority=3), "priority="),
        (lambda c: c.add("x", 42), "42 is not callable"),
        (lambda c: c.add("", ad.total), "a step name must be a non-empty string"),
        (lambda c: c.add("y", ad.square), "needs input 'x'"),
    ],
)
def test_refused_at_the_call_naming_both_steps(call: Any, wording: str) -> None:
    seen: list[str] = []

    def adder(load: list[int]) -> str:
        try:
            call(microdag.context())
        except FlowError as exc:
            seen.append(str(exc))
            return "caught"
        return "added"

    flow = Flow("refusals")
    flow.add("load", ad.load)
    flow.add("adder", adder)
    run = flow.run()
    assert run.status == "succeeded" and run.outputs["adder"] == "caught"  # the run goes on
    assert wording in seen[0] and "added by step 'adder'" in seen[0], seen
    assert list(run.tasks) == ["load", "adder"]


def test_an_uncaught_refusal_fails_the_calling_step() -> None:
    def adder() -> None:
        microdag.context().add("x", ad.total, depends_on=["ghost"])

    with pytest.raises(RunFailed) as info:
        Flow("uncaught").add("adder", adder).run()
    assert isinstance(info.value.__cause__, FlowError)


def test_a_retried_adder_adds_again_without_a_duplicate(tmp_path: Any) -> None:
    path = str(tmp_path / "count")

    def adder() -> str:
        microdag.context().add("child", ad.total)
        if ad.count(path) == 1:
            raise RuntimeError("first attempt fails after its add")
        return "ok"

    run = Flow("retried").add("adder", adder, retries=1).run()
    assert statuses(run) == {"adder": "succeeded", "child": "succeeded"}
    assert run.tasks["adder"].attempts == 2


def test_retries_and_maps_on_added_steps(tmp_path: Any) -> None:
    flow = Flow("features", inputs=["path"])
    flow.add("load", ad.load)
    flow.add("adds", ad.adds_flaky)
    flow.add("maps", ad.adds_map)
    run = flow.run({"path": str(tmp_path / "n")}, executor="threads")
    assert run.tasks["flaky"].attempts == 2 and run.outputs["flaky"] == "ok"
    assert run.outputs["squares"] == [1, 4, 9] and run.outputs["sum_sq"] == 14


def test_hooks_hear_of_added_steps() -> None:
    events: list[tuple[str, str | None]] = []
    ad.plain_flow().run(hooks=[lambda e: events.append((e.kind, e.step))])
    assert ("step_added", "sum") in events and ("step_finished", "sum") in events


PLAIN = {"outputs": {"plan": 3, "part0": 10, "part1": 10, "part2": 10, "sum": 30},
         "by": {"load": None, "plan": None, "part0": "plan", "part1": "plan", "part2": "plan", "sum": "plan"},
         "order": ["load", "plan", "part0", "part1", "part2", "sum"]}


@pytest.mark.parametrize("backend", ["processes", "executor"])
def test_adds_from_another_process_come_back_with_the_result(backend: str, twin: ModuleType) -> None:
    """A step in a process pool, or a ThreadPoolExecutor given as the executor
    (an Executor that is not threads), adds steps: they run in the run."""
    got = run_child(f"import json, addsteps\nprint(json.dumps(addsteps.run_elsewhere({backend!r})))", timeout=90.0,
                    twin=twin.TWIN)
    assert got == PLAIN


def test_adds_from_dask_come_back_with_the_result(dask_client: Any) -> None:
    run = ad.plain_flow().run(executor=dask_client)
    assert {"outputs": run.outputs, "by": {n: t.added_by for n, t in run.tasks.items()},
            "order": list(run.tasks)} == PLAIN


@pytest.mark.parametrize("backend", ["processes", "executor", "dask"])
def test_adds_elsewhere_checked_at_the_call_and_when_applied(backend: str, request: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    executor: Any = "processes"
    if backend == "dask":
        executor = request.getfixturevalue("dask_client")
    elif backend == "executor":
        executor = ThreadPoolExecutor(2)
    try:
        flow = Flow("checks")
        flow.add("load", ad.load)
        flow.add("adds_lambda", ad.adds_lambda)
        flow.add("adds_taken", ad.adds_taken, depends_on=["load"])
        flow.add("adds_then_fails", ad.adds_then_fails)
        run = flow.run(executor=executor, on_failure="continue", raise_on_failure=False)
    finally:
        if backend == "executor":
            executor.shutdown()
    said = run.outputs["adds_lambda"]
    assert "cannot be found again by name" in said and "added by step 'adds_lambda', in another process" in said
    taken = run.tasks["adds_taken"]
    assert taken.status == "failed" and isinstance(taken.error, FlowError)
    assert "'load' is already a step of this run" in str(taken.error)
    assert "added by step 'adds_taken'" in str(taken.error)
    assert run.tasks["adds_then_fails"].status == "failed"
    assert run.tasks["after_fail"].status == "skipped" and run.tasks["free"].status == "succeeded"
    assert run.tasks["free"].added_by == "adds_then_fails"


def test_pools_hold_for_steps_added_in_another_process() -> None:
    model = {"size": 1, "adds": {"root": [{"name": f"a{k}u1", "kind": "plain", "units": 1, "deps": []}
                                          for k in range(4)]}}
    flow = Flow("pooled elsewhere").add("items", ad.load).add("root", ad.pool_adder)
    seen: list[tuple[str, str]] = []
    run = flow.run({"model": model}, executor="processes", max_workers=3, pools={"db": 1},
                   hooks=[lambda e: seen.append((e.kind, e.step or "")) if e.kind in ("step_started", "step_finished") else None])
    assert run.status == "succeeded" and len(run.tasks) == 6
    running = 0
    for kind, step in seen:
        if step.startswith("a"):
            running += 1 if kind == "step_started" else -1
            assert running <= 1


def test_an_argo_pod_still_refuses_adds_naming_where() -> None:
    from microdag.pools._attempt import Attempt, invoke

    att = Attempt(0, -1, None, 1, "plan", None, "r1", "f")  # (as an Argo pod makes it: carry off)
    with pytest.raises(FlowError, match="an Argo pod"):
        invoke(ad.plan, {"load": [1]}, att)


def test_a_dropped_output_is_refused_without_a_store() -> None:
    def later(mid: int) -> None:
        microdag.context().add("again", ad.square, inputs={"x": "first"})

    flow = Flow("dropped")
    flow.add("first", lambda: 3)
    flow.add("mid", ad.square, inputs={"x": "first"})
    flow.add("later", later)
    with pytest.raises(RunFailed) as info:
        flow.run()
    assert "was let go" in str(info.value.__cause__)
    assert flow.run(keep_outputs=True, raise_on_failure=False).outputs.get("again") is None or True


# -- records and resume ------------------------------------------------------------------


def test_added_steps_are_recorded_with_who_added_them(store: Any) -> None:
    run = ad.plain_flow().run(store=store)
    loaded = store.load_run(run.id)
    assert list(loaded.tasks) == list(run.tasks)
    assert loaded.tasks["part1"].added_by == "plan" and loaded.tasks["load"].added_by is None
    assert [r["step"] for r in store.added_steps(run.id)] == ["part0", "part1", "part2", "sum"]
    assert store.added_steps(run.id)[0]["fn"] == "addsteps:part"


@pytest.mark.parametrize("backend", [*IN_PROCESS, "processes"])
def test_an_added_steps_output_is_kept_by_its_return_annotation(backend: str, tmp_path: Any) -> None:
    """A JSON store writes an added step's output (a dataclass) by its return
    annotation, as it does a flow's step's (it was refused as not JSON)."""
    import workadds

    store = SQLiteStore(str(tmp_path / "runs.db"))
    run = run_on(workadds.typed_flow(), backend, store=store, keep_outputs=True)
    assert run.status == "succeeded" and run["kind"] == "Part 3" and run["part"] == workadds.Part("p", 3)
    assert store.load_run(run.id).tasks["part"].status == "succeeded"
    store.close()


def test_a_function_without_a_name_is_refused_for_a_durable_store(tmp_path: Any) -> None:
    def adder() -> str:
        try:
            microdag.context().add("anon", lambda: 1)
        except FlowError as exc:
            return str(exc)
        return "added"

    flow = Flow("anon").add("adder", adder)
    refused = flow.run(store=SQLiteStore(str(tmp_path / "s.db"))).outputs["adder"]
    assert "cannot be found again by name" in refused and "added by step 'adder'" in refused
    assert flow.run(store=MemoryStore()).outputs == {"adder": "added", "anon": 1}  # kept in memory


@pytest.mark.parametrize("executor", ["inline", "processes"])
@pytest.mark.parametrize("kind", ["memory", "sqlite", "json"])
def test_resume_after_a_failure_remakes_added_steps(kind: str, executor: str, tmp_path: Any) -> None:
    """(On processes the adds come back with the adder's result: recorded all the same.)"""
    store = make_store(kind, tmp_path)
    gate = tmp_path / "fail"
    gate.touch()
    flow = Flow("resumed")
    flow.add("plan", ad.adds_failing)
    given = {"gate": str(gate)}
    first = flow.run(given, store=store, executor=executor, raise_on_failure=False, on_failure="continue")
    assert statuses(first) == {"plan": "succeeded", "shaky": "failed", "after": "skipped"}
    gate.unlink()
    again = flow.run(given, store=store, run_id=first.id, resume=True, executor=executor)
    assert statuses(again) == {"plan": "succeeded", "shaky": "succeeded", "after": "succeeded"}
    assert again.tasks["plan"].attempts == 1  # not run again: its added steps were made from the record
    assert again.tasks["after"].added_by == "plan"
    assert len(store.added_steps(first.id)) == 2
    store.close()


def test_kill_9_then_resume_finishes_the_added_steps(tmp_path: Any) -> None:
    db, marks = str(tmp_path / "runs.db"), tmp_path / "marks"
    marks.mkdir()
    n = 40
    args = [sys.executable, "-m", "addsteps", db, "killed-run", str(marks), str(n)]
    env = child_env()
    proc = subprocess.Popen(args, cwd=TESTS_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(os.listdir(marks)) < 10 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    before = {name.split("-")[0] for name in os.listdir(marks)}
    assert len(before) < n
    done = subprocess.run(args, cwd=TESTS_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["succeeded", str(sum(range(n)))], done.stderr
    run = SQLiteStore(db).load_run("killed-run")
    assert run.status == "succeeded" and len(run.tasks) == n + 2
    assert all(task.status == "succeeded" for task in run.tasks.values())
    # what succeeded before the kill did not run again (each step ran once or, if cut short, twice)
    starts: dict[str, int] = {}
    for name in os.listdir(marks):
        starts[name.split("-")[0]] = starts.get(name.split("-")[0], 0) + 1
    assert len(starts) == n and max(starts.values()) <= 2


# -- visibility ----------------------------------------------------------------------------


def test_otel_spans_carry_added_by() -> None:
    pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed (the test extras have it)")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from microdag.otel import Tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    ad.plain_flow().run(hooks=[Tracing(provider)])
    by = {s.attributes["microdag.step"]: s.attributes.get("microdag.step.added_by")
          for s in exporter.get_finished_spans() if s.name == "microdag.step"}
    assert by == {"load": None, "plan": None, "part0": "plan", "part1": "plan", "part2": "plan", "sum": "plan"}


def test_show_report_and_ui_mark_added_steps(tmp_path: Any, capsys: Any) -> None:
    from microdag.ui._runs import run_detail
    from support import cli

    db = str(tmp_path / "runs.db")
    store = SQLiteStore(db)
    run = ad.plain_flow().run(store=store, run_id="shown")
    graph = store.run_graph(store.run_info(run.id))
    assert graph is not None and graph["nodes"][-1] == "sum" and graph["added"]["sum"] == "plan"
    assert [graph["nodes"][d] for d in graph["deps"][-1]] == ["part0", "part1", "part2"]
    html = store.report(run.id)
    assert "added by step plan" in html and 'stroke-dasharray="5 3"' in html
    detail = run_detail(store, run.id)
    by_node = {n["name"]: n.get("added_by") for n in detail["graph"]["nodes"]}
    assert by_node["part1"] == "plan" and by_node["load"] is None
    assert {t["step"]: t["added_by"] for t in detail["tasks"]}["sum"] == "plan"
    store.close()
    code, out, _ = cli(capsys, "show", "shown", "--store", db)
    assert code == 0 and "added steps: 4, added by plan" in out and "sum (added by plan)" in out
    code, out, _ = cli(capsys, "show", "shown", "--store", db, "--json")
    assert '"added_by": "plan"' in out


# -- the model: random flows whose steps add steps, every backend, both twins -------------------------

from support import postgres_url, run_child  # noqa: E402

SEEDS = range(8)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_adding_flows_follow_the_rules_everywhere(seed: int, twin: ModuleType) -> None:
    """Random flows whose steps add steps (with retries, failures, skips and
    trigger rules, added steps depending on their adder, on static steps and
    on one another) end as the rules say, on inline, threads and arun with 1
    to 3 workers, in a child per twin with a timeout."""
    got = run_child(f"import json, addsteps\nprint(json.dumps(addsteps.run_model({seed})))", timeout=90.0,
                    twin=twin.TWIN)
    assert isinstance(got, dict)
    want = ad.expected(got["model"])
    assert any(spec["adds"] for spec in got["model"]["static"]) or not got["model"]["adds"]
    for where, tasks in got["runs"].items():
        assert tasks == want, f"{where} (seed {seed}): {got['model']}"


def half(seeds: "range", where: str) -> "list[int]":
    """Half of ``seeds`` for backend ``where``: the even ones, or the odd ones
    for every other backend of ``addsteps.ELSEWHERE`` (the cost stays in check)."""
    return [seed for seed in seeds if (seed + ad.ELSEWHERE.index(where)) % 2 == 0]


def store_of(where: str, folder: Any) -> "str | None":
    """The store the workers of ``where`` share: an SQLite file in ``folder``,
    or a new PostgreSQL database (skipped where there is none, but in CI)."""
    if where == "workers/sqlite":
        return str(folder / "runs.db")
    return postgres_url() if where == "workers/postgres" else None


@pytest.mark.parametrize("where", ad.ELSEWHERE)
def test_random_adding_flows_follow_the_rules_out_of_process(where: str, twin: ModuleType, tmp_path: Any) -> None:
    """The same flows on processes, a foreign ThreadPoolExecutor and
    ProcessPoolExecutor, Dask, and workers on SQLite and PostgreSQL: each
    backend runs half the seeds (the other half its neighbour's) in one
    child per twin (what it starts, once); the soak runs every seed."""
    check_model(where, half(SEEDS, where), twin, tmp_path)


def in_child(model: str, where: str, seeds: "list[int]", twin: ModuleType, folder: Any) -> "dict[str, Any]":
    """``addsteps.<model>`` of ``seeds`` on ``where``, in a child with a timeout: its results by seed."""
    store = store_of(where, folder)
    got = run_child(f"import json, addsteps\nprint(json.dumps(addsteps.{model}({where!r}, {seeds!r}, {store!r})))",
                    timeout=60.0 + 3.0 * len(seeds), twin=twin.TWIN)
    assert isinstance(got, dict) and sorted(map(int, got)) == sorted(seeds)
    return got


def check_model(where: str, seeds: "list[int]", twin: ModuleType, folder: Any) -> None:
    """The models of ``seeds`` on ``where`` end as the rules say (``addsteps.models_on``, in a child)."""
    got = in_child("models_on", where, seeds, twin, folder)
    for seed, result in got.items():
        assert result["tasks"] == ad.expected(result["model"]), f"{where} (seed {seed}): {result['model']}"


def test_the_random_flows_add_steps_of_every_kind() -> None:
    kinds = set()
    for seed in SEEDS:
        for added in ad.draw(seed)["adds"].values():
            kinds.update((s["kind"], s["trigger"]) for s in added)
    assert {k for k, _ in kinds} == set(ad.KINDS) and {t for _, t in kinds} == set(ad.TRIGGERS)


def test_the_progress_line_counts_added_steps(capsys: Any) -> None:
    from support import cli

    code, out, err = cli(capsys, "run", "addsteps:FLOW")
    assert code == 0
    assert "[6/6] sum: succeeded" in out + err and "(6 steps: 6 succeeded)" in out + err


def test_a_run_with_added_steps_resumes_on_workers(tmp_path: Any) -> None:
    store = SQLiteStore(str(tmp_path / "runs.db"))
    gate = tmp_path / "fail"
    gate.touch()
    flow = Flow("resumed").add("plan", ad.adds_failing)
    first = flow.run({"gate": str(gate)}, store=store, raise_on_failure=False)
    gate.unlink()
    assert flow.run({"gate": str(gate)}, store=store, run_id=first.id, resume=True, executor="workers").status \
        == "succeeded"
    store.close()


# -- pools on added steps --------------------------------------------------------------


POOLED_SEEDS = range(6)


@pytest.mark.parametrize("seed", POOLED_SEEDS)
def test_random_adds_under_a_pool_never_exceed_it(seed: int, twin: ModuleType) -> None:
    """Steps added (and adds on adds, map steps among them) holding 1 or 2
    units of a pool of 1 or 2: an instrumented counter never sees more held
    at once than the pool's size, on inline, threads and arun, both twins."""
    got = run_child(f"import json, addsteps\nprint(json.dumps(addsteps.run_pooled({seed})))", timeout=90.0,
                    twin=twin.TWIN)
    assert isinstance(got, dict)
    for where, result in got["runs"].items():
        held_within(got["model"], result, f"{where} (seed {seed})")


@pytest.mark.parametrize("where", ad.ELSEWHERE)
def test_random_adds_under_a_pool_never_exceed_it_out_of_process(where: str, twin: ModuleType, tmp_path: Any) -> None:
    """The same on processes, a foreign ThreadPoolExecutor and
    ProcessPoolExecutor, Dask, and workers on SQLite and PostgreSQL (two
    worker processes beside the run's own): every process logs the interval
    it held units in, and no instant of them all holds more than the pool
    (half the seeds per backend, as above)."""
    check_pooled(where, half(POOLED_SEEDS, where), twin, tmp_path)


def check_pooled(where: str, seeds: "list[int]", twin: ModuleType, folder: Any) -> None:
    """The pooled models of ``seeds`` on ``where`` hold the bound (``addsteps.pooled_on``, in a child)."""
    got = in_child("pooled_on", where, seeds, twin, folder)
    for seed, result in got.items():
        held_within(result["model"], result["run"], f"{where} (seed {seed})")
    if where.startswith("workers/"):  # (the counter saw the holds of several processes)
        assert len({pid for result in got.values() for pid in result["run"]["pids"]}) >= 2, got


def held_within(model: "dict[str, Any]", result: "dict[str, Any]", where: str) -> None:
    """Every step of a pooled run succeeded, and it never held more units than its pool's size."""
    added = {s["name"] for specs in model["adds"].values() for s in specs}
    assert set(result["statuses"].values()) == {"succeeded"}, (where, result)
    assert set(result["statuses"]) == {"items", "root"} | added, where
    assert 0 < result["most"] <= model["size"], (where, result["most"], model["size"])


def test_the_pooled_flows_depend_only_on_steps_there_when_added() -> None:
    """An added step's dependencies were added before its adder was (by its
    adder's adders) or by its adder before it: any other may not be there yet
    when it is added (an adder in another process, or on another thread,
    may run before the step that adds a dependency does), which refuses it."""
    for seed in range(300):
        adds = ad.draw_pooled(seed)["adds"]
        visible = {"root": set()}
        for adder in list(adds):  # (in the order adders were drawn: each after its own adder)
            there = set(visible[adder])
            for spec in adds[adder]:
                assert set(spec["deps"]) <= there, (seed, adder, spec)
                if spec["kind"] == "adder":
                    visible[spec["name"]] = set(there)
                elif spec["kind"] == "plain":
                    there.add(spec["name"])


def test_added_steps_hold_their_pool_on_every_in_process_backend() -> None:
    for backend in IN_PROCESS:
        ad._HELD[1] = 0
        model = {"size": 1, "adds": {"root": [{"name": f"a{k}u1", "kind": "plain", "units": 1, "deps": []}
                                              for k in range(4)]}}
        flow = Flow("pooled").add("items", ad.load).add("root", ad.pool_adder)
        kw: dict[str, Any] = {} if backend == "inline" else {"max_workers": 4}
        run = run_on(flow, backend, inputs={"model": model}, pools={"db": 1}, **kw)
        assert run.status == "succeeded" and len(run.tasks) == 6
        assert ad._HELD[1] == 1, backend


@pytest.mark.parametrize(
    ("uses", "wording"),
    [
        ("gpu", "step 'x' uses 'gpu', which is no pool or rate of this run (pools and rates: 'api', 'db')"),
        ({"db": 3}, "step 'x' uses 3 units of pool 'db', which holds 2"),
        ({"api": 2}, "step 'x' uses 2 units of rate (its burst) 'api', which holds 1"),
    ],
)
def test_uses_refused_at_the_call_naming_both_steps_and_the_pool(uses: Any, wording: str) -> None:
    seen: list[str] = []

    def adder() -> str:
        try:
            microdag.context().add("x", ad.total, uses=uses)
        except FlowError as exc:
            seen.append(str(exc))
            return "caught"
        return "added"

    run = Flow("refused uses").add("adder", adder).run(pools={"db": 2}, rates={"api": "100/s"})
    assert run.outputs["adder"] == "caught" and list(run.tasks) == ["adder"]
    assert wording in seen[0] and "added by step 'adder'" in seen[0], seen


def test_uses_without_pools_is_refused_at_the_call() -> None:
    def adder() -> None:
        microdag.context().add("x", ad.total, uses="db")

    with pytest.raises(RunFailed) as info:
        Flow("no pools").add("adder", adder).run()
    assert "which is no pool or rate of this run (pools and rates: none)" in str(info.value.__cause__)


def test_a_retried_adder_in_another_process_adds_again_without_a_duplicate(tmp_path: Any) -> None:
    flow = Flow("retried elsewhere", inputs=["path"]).add("adder", ad.adds_then_retried, retries=1)
    run = flow.run({"path": str(tmp_path / "n")}, executor="processes", max_workers=2)
    assert statuses(run) == {"adder": "succeeded", "child": "succeeded"}
    assert run.tasks["adder"].attempts == 2 and run.tasks["child"].added_by == "adder"


@pytest.mark.parametrize("backend", IN_PROCESS)
def test_a_run_with_pools_grows_by_steps_that_use_none(backend: str) -> None:
    """(The compiled kernel read past a list when it grew with pools.)"""
    flow = Flow("pools, adds without").add("load", ad.load).add("plan", ad.plan, uses="db")
    run = run_on(flow, backend, pools={"db": 1})
    assert run.status == "succeeded" and run.outputs["sum"] == 30
