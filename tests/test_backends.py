"""Bad input and robustness.

Every invalid definition, option or input is a ``FlowError`` (a cycle a
``CycleError``) raised before any step runs, which the tests prove with a
side-effect list (or marker files for processes).  No failing step, dying
worker process, unpicklable value or interrupt crashes or hangs the runner on
any backend, and runs leave no worker threads or processes behind.
"""

import graphlib
import multiprocessing
import os
import pickle
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import flowsteps as fs
from flowsteps import within
import microdag
from microdag import CycleError, Flow, FlowError
from support import EXECUTORS, executor_value


class Recorder:
    """Steps that record that they ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def step(self, name: str, *params: str):
        """A function named ``name`` taking ``params`` (bound by name)."""
        ran = self.ran
        args = ", ".join(params)
        namespace: dict = {"ran": ran}
        exec(f"def {name}({args}):\n    ran.append({name!r})\n    return {name!r}\n", namespace)
        return namespace[name]


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def flow_with(rec: Recorder, *steps: tuple) -> Flow:
    """A flow of recording steps: ``(name, params, options)`` each."""
    flow = Flow("bad")
    for name, params, options in steps:
        flow.add(name, rec.step(name, *params), **options)
    return flow


# -- definitions checked at compile time, before any step runs ---------------------


def test_unknown_step_in_depends_on(rec) -> None:
    flow = flow_with(rec, ("a", (), {}), ("b", (), {"depends_on": ["a", "missing"]}))
    with pytest.raises(FlowError) as info:
        flow.run()
    assert info.value.problems == ["step 'b' depends on 'missing', which is not defined"]
    with pytest.raises(FlowError):
        flow.validate()
    with pytest.raises(FlowError):
        flow.graph
    assert rec.ran == []


def test_unknown_step_in_inputs(rec) -> None:
    flow = flow_with(rec, ("a", (), {}), ("b", ("value",), {"inputs": {"value": "ghost"}}))
    with pytest.raises(FlowError) as info:
        flow.run({"value": 1})
    text = str(info.value)
    assert "'b'" in text and "'ghost'" in text and "not defined" in text
    assert rec.ran == []


def test_inputs_naming_no_parameter(rec) -> None:
    flow = flow_with(rec, ("a", (), {}), ("b", ("value",), {"inputs": {"other": "a"}}))
    with pytest.raises(FlowError, match="'other'"):
        flow.run({"value": 1})
    assert rec.ran == []


def test_every_compile_problem_in_one_error(rec) -> None:
    flow = flow_with(
        rec,
        ("a", (), {"depends_on": ["nope1"]}),
        ("b", ("value",), {"inputs": {"value": "nope2"}}),
        ("c", (), {"depends_on": ["nope3"]}),
    )
    with pytest.raises(FlowError) as info:
        flow.run({"value": 1})
    assert len(info.value.problems) == 3
    assert str(info.value).startswith("3 problems:")
    assert all(n in str(info.value) for n in ("nope1", "nope2", "nope3"))
    assert rec.ran == []


def test_unknown_target(rec) -> None:
    flow = flow_with(rec, ("a", (), {}), ("b", ("a",), {}))
    with pytest.raises(FlowError) as info:
        flow.run(targets=["b", "zzz"])
    assert "unknown target" in str(info.value) and "'zzz'" in str(info.value)
    assert rec.ran == []


def test_duplicate_step_name_is_refused_at_add(rec) -> None:
    flow = flow_with(rec, ("a", (), {}))
    with pytest.raises(FlowError, match="'a'.*more than once"):
        flow.add("a", fs.noargs)
    with pytest.raises(FlowError, match="more than once"):
        flow.step(name="a")(fs.noargs)
    assert flow.steps == ("a",) and rec.ran == []
    assert flow.run().outputs == {"a": "a"}  # the first definition stands


def test_cycle_through_parameters_raises_cycle_error_with_its_path(rec) -> None:
    flow = flow_with(
        rec,
        ("root", (), {}),
        ("a", ("c",), {}),
        ("b", ("a",), {}),
        ("c", ("b", "root"), {}),
    )
    with pytest.raises(CycleError) as info:
        flow.run()
    err = info.value
    assert isinstance(err, graphlib.CycleError) and isinstance(err, ValueError)
    cycle = err.cycle
    assert cycle[0] == cycle[-1] and sorted(cycle[:-1]) == ["a", "b", "c"]
    deps = {"a": {"c"}, "b": {"a"}, "c": {"b", "root"}}
    for dep, step in zip(cycle, cycle[1:]):
        assert dep in deps[step]  # each step is a dependency of the next
    assert err.args[1] == cycle and " -> ".join(repr(s) for s in cycle) in str(err)
    with pytest.raises(CycleError):
        flow.validate()
    assert rec.ran == []


def test_cycle_through_depends_on(rec) -> None:
    flow = flow_with(rec, ("a", (), {"depends_on": ["b"]}), ("b", (), {"depends_on": ["a"]}))
    with pytest.raises(CycleError) as info:
        flow.run()
    assert info.value.cycle in (["a", "b", "a"], ["b", "a", "b"])
    assert rec.ran == []


def test_self_dependency(rec) -> None:
    flow = flow_with(rec, ("a", (), {"depends_on": ["a"]}), ("b", (), {}))
    with pytest.raises(CycleError) as info:
        flow.run()
    assert info.value.cycle == ["a", "a"]
    named = flow_with(Recorder(), ("me", ("me",), {}))
    with pytest.raises(FlowError, match="itself"):
        named.run({"me": 1})
    assert rec.ran == []


def test_positional_only_parameter(rec) -> None:
    def positional(value, /):
        return value

    def fine(value=1, /):
        return value

    flow = flow_with(rec, ("a", (), {})).add("p", positional).add("f", fine)
    with pytest.raises(FlowError) as info:
        flow.run()
    assert info.value.problems == [
        "step 'p': positional-only parameter 'value' cannot be bound by name"
    ]
    assert rec.ran == []


# -- inputs and run options, checked before any step runs -----------------------------


def test_missing_required_inputs_name_step_and_parameter(rec) -> None:
    flow = flow_with(rec, ("a", (), {}), ("b", ("a", "path"), {}), ("c", ("path", "size"), {}))
    with pytest.raises(FlowError) as info:
        flow.run()
    problems = info.value.problems
    assert len(problems) == 3
    assert any("'b'" in p and "'path'" in p for p in problems)
    assert any("'c'" in p and "'path'" in p for p in problems)
    assert any("'c'" in p and "'size'" in p for p in problems)
    assert rec.ran == []


def test_unknown_input_name(rec) -> None:
    flow = flow_with(rec, ("a", ("path",), {}))
    with pytest.raises(FlowError) as info:
        flow.run({"path": 1, "pth": 2})
    assert info.value.problems == ["flow 'bad' has no input 'pth' (its inputs: path)"]
    assert rec.ran == []


def test_unknown_executor_on_failure_and_other_run_options(rec) -> None:
    flow = flow_with(rec, ("a", (), {}))
    for kwargs, fragment in [
        ({"executor": "gpu"}, "unknown executor 'gpu'"),
        ({"executor": object()}, "neither a name nor a concurrent.futures.Executor"),
        ({"on_failure": "ignore"}, "unknown on_failure 'ignore'"),
        ({"max_workers": 0}, "max_workers"),
        ({"max_workers": True}, "max_workers"),
        ({"hooks": [42]}, "hook 42 is not callable"),
    ]:
        with pytest.raises(FlowError) as info:
            flow.run(**kwargs)
        assert fragment in str(info.value), (kwargs, str(info.value))
    assert rec.ran == []


def test_every_run_problem_in_one_error(rec) -> None:
    flow = flow_with(rec, ("a", ("path",), {}))
    with pytest.raises(FlowError) as info:
        flow.run({"nope": 1}, executor="gpu", on_failure="ignore", targets=["zzz"])
    problems = info.value.problems
    for fragment in ("'gpu'", "'ignore'", "'nope'", "'zzz'"):
        assert any(fragment in p for p in problems), (fragment, problems)
    assert rec.ran == []


def test_a_misspelt_input_reports_the_missing_one_too(rec) -> None:
    """docs/api.md: run() checks options, inputs (unknown names, missing
    required ones) and targets; "All problems go into one FlowError"."""
    flow = flow_with(rec, ("a", ("path",), {}))
    with pytest.raises(FlowError) as info:
        flow.run({"pth": 1})
    problems = info.value.problems
    assert any("no input 'pth'" in p for p in problems), problems
    assert any("'a'" in p and "needs input 'path'" in p for p in problems), problems
    assert rec.ran == []


def test_pickling_problems_come_with_the_other_run_problems(tmp_path) -> None:
    """docs/api.md: for processes, run() also checks that every step's function
    pickles, and "All problems go into one FlowError"."""
    flow = Flow("procs").add("touch", fs.touch).add("anon", lambda touch: touch)
    with pytest.raises(FlowError) as info:
        flow.run({"workdir": str(tmp_path), "nope": 1}, executor="processes")
    problems = info.value.problems
    assert any("'nope'" in p for p in problems), problems
    assert any("'anon'" in p and "module level" in p for p in problems), problems
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("inputs", [["x"], "x", 42])
def test_inputs_that_are_not_a_mapping(rec, inputs) -> None:
    flow = flow_with(rec, ("a", ("x",), {}))
    with pytest.raises(FlowError):
        flow.run(inputs)
    assert rec.ran == []


def test_non_callable_step_and_bad_names() -> None:
    flow = Flow("defs")
    with pytest.raises(FlowError, match="not callable"):
        flow.add("a", 42)  # type: ignore[arg-type]
    with pytest.raises(FlowError):
        flow.add("", fs.noargs)
    with pytest.raises(FlowError):
        flow.add(3, fs.noargs)  # type: ignore[arg-type]
    assert len(flow) == 0
    with pytest.raises(FlowError):
        Flow("")


@pytest.mark.parametrize(
    "options",
    [
        {"retries": -1},
        {"retries": 1.5},
        {"retries": True},
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": "1"},
        {"timeout": float("nan")},
        {"priority": "x"},
        {"priority": 1.0},
        {"priority": 2**31},
        {"retry_on": int},
        {"retry_on": (ValueError, 3)},
        {"retry_on": [ValueError]},
        {"retry_delay": -1},
        {"retry_backoff": 0.5},
        {"retry_max_delay": -1},
        {"depends_on": 3},
        {"depends_on": [3]},
        {"inputs": ["a"]},
        {"inputs": {"a": 1}},
    ],
    ids=lambda o: "-".join(f"{k}={v!r}" for k, v in o.items()),
)
def test_bad_option_values_are_refused_at_add(options) -> None:
    flow = Flow("opts").add("a", fs.noargs)
    (name, value), = options.items()
    with pytest.raises(FlowError) as info:
        flow.add("b", fs.noargs, **options)
    assert len(info.value.problems) == 1
    assert "'b'" in str(info.value) and name in str(info.value)
    assert flow.steps == ("a",)
    assert flow.run().outputs == {"a": "ran"}


def test_bad_options_are_reported_together() -> None:
    flow = Flow("opts")
    with pytest.raises(FlowError) as info:
        flow.add("b", fs.noargs, retries=-1, timeout=0, priority="x", retry_on=int)
    problems = info.value.problems
    assert len(problems) == 4
    for option in ("retries", "timeout", "priority", "retry_on"):
        assert any(option in p for p in problems), option
    assert len(flow) == 0


# -- processes: functions must be importable --------------------------------------------


def test_lambda_and_local_function_on_processes(tmp_path) -> None:
    def local(workdir):
        return workdir

    flow = (
        Flow("procs")
        .add("touch", fs.touch)
        .add("anon", lambda touch: touch)
        .add("local", local)
    )
    with pytest.raises(FlowError) as info:
        flow.run({"workdir": str(tmp_path)}, executor="processes")
    problems = info.value.problems
    assert len(problems) == 2
    assert "'anon'" in problems[0] and "module level" in problems[0]
    assert "'local'" in problems[1] and "module level" in problems[1]
    assert list(tmp_path.iterdir()) == []  # nothing ran
    # the same flow is fine where functions need not pickle
    assert flow.run({"workdir": str(tmp_path)}, executor="threads")["local"] == str(tmp_path)


def test_steps_outside_targets_need_not_pickle(tmp_path) -> None:
    flow = Flow("procs").add("touch", fs.touch).add("anon", lambda touch: touch)
    run = flow.run({"workdir": str(tmp_path)}, executor="processes", targets=["touch"])
    assert run["touch"] == "touched" and len(list(tmp_path.iterdir())) == 1


# -- failing steps never crash or hang the runner ----------------------------------------


def test_raising_steps_never_crash_or_hang(executor) -> None:
    flow = (
        Flow("raising")
        .add("fail_plain", fs.fail_plain)
        .add("fail_unpicklable", fs.fail_unpicklable)
        .add("fail_unrebuildable", fs.fail_unrebuildable)
        .add("noargs", fs.noargs)
        .add("child", fs.ident, inputs={"value": "fail_plain"})
    )
    run = within(
        30,
        lambda: flow.run(executor=executor, on_failure="continue", raise_on_failure=False),
    )
    assert run.status == "failed"
    assert {n: t.status for n, t in run.tasks.items()} == {
        "fail_plain": "failed",
        "fail_unpicklable": "failed",
        "fail_unrebuildable": "failed",
        "noargs": "succeeded",
        "child": "skipped",
    }
    plain = run.tasks["fail_plain"].error
    assert isinstance(plain, ValueError) and str(plain) == "boom"
    for name in ("fail_unpicklable", "fail_unrebuildable"):
        assert isinstance(run.tasks[name].error, Exception)
    if executor == "processes":
        error = run.tasks["fail_unpicklable"].error
        assert "could not be sent back" in str(error) and "carries a lock" in str(error)
    with pytest.raises(microdag.RunFailed):
        within(30, lambda: flow.run(executor=executor))


def test_unpicklable_argument_fails_the_step_on_processes() -> None:
    flow = Flow("args").add("source", fs.source).add("noargs", fs.noargs)
    run = within(
        30,
        lambda: flow.run(
            {"x": threading.Lock()},
            executor="processes",
            max_workers=1,
            on_failure="continue",
            raise_on_failure=False,
        ),
    )
    assert run.tasks["source"].status == "failed"
    assert isinstance(run.tasks["source"].error, (TypeError, pickle.PicklingError))
    assert run.tasks["noargs"].status == "succeeded"


def test_unpicklable_output_fails_the_step_with_a_clear_error() -> None:
    flow = Flow("out").add("unpicklable_output", fs.unpicklable_output).add("noargs", fs.noargs)
    run = within(
        30,
        lambda: flow.run(
            executor="processes", max_workers=1, on_failure="continue", raise_on_failure=False
        ),
    )
    task = run.tasks["unpicklable_output"]
    assert task.status == "failed"
    message = str(task.error)
    assert "output" in message and "could not be sent back" in message and "lock" in message
    assert run.tasks["noargs"].status == "succeeded"  # the same worker goes on


@pytest.mark.parametrize("how", ["os._exit", "SIGKILL"])
def test_a_dying_worker_fails_its_step_and_is_replaced(how) -> None:
    flow = (
        Flow("dies")
        .add("die", fs.die if how == "os._exit" else fs.die_by_signal)
        .add("noargs", fs.noargs)
        .add("source", fs.source)
        .add("after", fs.ident, inputs={"value": "die"})
    )
    t0 = time.monotonic()
    run = within(
        30,
        lambda: flow.run(
            {"x": 1},
            executor="processes",
            max_workers=1,
            on_failure="continue",
            raise_on_failure=False,
        ),
    )
    assert time.monotonic() - t0 < 15
    task = run.tasks["die"]
    assert task.status == "failed" and isinstance(task.error, ChildProcessError)
    assert ("exit code 3" if how == "os._exit" else "exit code -9") in str(task.error)
    # with one worker, the other steps ran on its replacement
    assert run.tasks["noargs"].status == "succeeded" and run.tasks["source"].status == "succeeded"
    assert run.tasks["after"].status == "skipped"
    assert multiprocessing.active_children() == []


def test_a_dying_worker_is_retried(tmp_path) -> None:
    flow = Flow("dies").add("die_first", fs.die_first, retries=1)
    run = within(30, lambda: flow.run({"workdir": str(tmp_path)}, executor="processes"))
    assert run["die_first"] == "survived" and run.tasks["die_first"].attempts == 2
    always = Flow("dies").add("die", fs.die, retries=2)
    run = within(30, lambda: always.run(executor="processes", raise_on_failure=False))
    assert run.tasks["die"].attempts == 3 and isinstance(run.error, ChildProcessError)
    assert multiprocessing.active_children() == []


def test_processes_really_run_in_parallel() -> None:
    flow = Flow("par").add("pid_window", fs.pid_window).add("pid_window_2", fs.pid_window_2)
    run = within(30, lambda: flow.run({"nap": 0.5}, executor="processes", max_workers=2))
    (pid1, start1, end1), (pid2, start2, end2) = run["pid_window"], run["pid_window_2"]
    assert pid1 != pid2 and os.getpid() not in (pid1, pid2)
    assert start1 < end2 and start2 < end1  # the two naps overlapped


def test_threads_really_run_in_parallel() -> None:
    meet = threading.Barrier(3, timeout=10)
    flow = Flow("par")
    for name in ("a", "b", "c"):
        flow.add(name, lambda: meet.wait())
    run = within(30, lambda: flow.run(executor="threads", max_workers=3))
    assert sorted(run.outputs.values()) == [0, 1, 2]


def test_pool_sizes_default_like_concurrent_futures() -> None:
    # threads: min(32, cpus + 4) workers; an executor: its own _max_workers
    size = min(32, (os.cpu_count() or 1) + 4)
    meet = threading.Barrier(size, timeout=10)
    flow = Flow("wide")
    for n in range(size):
        flow.add(f"s{n}", lambda: meet.wait())
    assert within(30, lambda: flow.run(executor="threads")).status == "succeeded"
    meet3 = threading.Barrier(3, timeout=10)
    three = Flow("three")
    for n in range(3):
        three.add(f"s{n}", lambda: meet3.wait())
    with ThreadPoolExecutor(max_workers=3) as pool:
        assert within(30, lambda: three.run(executor=pool)).status == "succeeded"


def test_large_values_cross_process_boundaries() -> None:
    big = b"x" * (8 << 20)
    flow = Flow("big").add("source", fs.source).add("double", fs.double)
    run = within(60, lambda: flow.run({"x": big}, executor="processes", keep_outputs=True))
    assert run["source"] == big and run["double"] == big + big


def test_processes_are_never_forked_from_the_caller() -> None:
    """forkserver or spawn: a worker does not inherit the caller's state."""
    fs.set_state("changed in the calling process")
    try:
        run = Flow("fresh").add("read_state", fs.read_state).run(executor="processes")
    finally:
        fs.set_state("as imported")
    assert run["read_state"] == "as imported"


@pytest.mark.parametrize("backend", ["threads", "executor"])
def test_max_workers_caps_parallel_steps(backend) -> None:
    lock = threading.Lock()
    running = [0, 0]  # now, peak

    def step():
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.03)
        with lock:
            running[0] -= 1

    flow = Flow("cap")
    for n in range(8):
        flow.add(f"s{n}", step)
    pool = fs.WrappedExecutor(workers=6) if backend == "executor" else None
    try:
        within(30, lambda: flow.run(executor=pool or backend, max_workers=2))
    finally:
        if pool is not None:
            pool.shutdown()
    assert 1 <= running[1] <= 2


def test_steps_run_in_their_own_processes() -> None:
    run = Flow("pid").add("getpid", fs.getpid).run(executor="processes")
    assert run["getpid"] != os.getpid()


# -- interrupts ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["inline", "threads"])
def test_keyboard_interrupt_in_a_step_is_re_raised(rec, backend) -> None:
    # on one worker the longer path (raise_interrupt -> after) starts first
    flow = Flow("ctrl-c").add("raise_interrupt", fs.raise_interrupt)
    flow.add("after", rec.step("after"), depends_on=["raise_interrupt"])
    flow.add("independent", rec.step("independent"))
    events: list[microdag.Event] = []
    with pytest.raises(KeyboardInterrupt):
        within(30, lambda: flow.run(executor=backend, max_workers=1, hooks=[events.append]))
    assert rec.ran == []  # no new step started
    assert events[-1].kind == "run_finished" and events[-1].status == "cancelled"
    # the flow is usable again
    run = flow.run(executor=backend, targets=["independent"])
    assert run.outputs == {"independent": "independent"} and rec.ran == ["independent"]


@pytest.mark.parametrize("backend", EXECUTORS)
def test_ctrl_c_during_a_run_cancels_it_and_is_re_raised(backend, tmp_path) -> None:
    """A real SIGINT while a step runs: no new step starts, KeyboardInterrupt
    comes out of run() (threads first let the running step finish)."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    executor = executor_value(backend)
    flow = Flow("ctrl-c").add("sleeper", fs.sleeper).add("touch", fs.touch, depends_on=["sleeper"])
    events: list[microdag.Event] = []

    def interrupt() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.3)
        fs.release_sleepers()  # ends the attempt a thread cannot abandon

    timer = threading.Timer(0.3, interrupt)
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            flow.run({"seconds": 5, "workdir": str(tmp_path)}, executor=executor, hooks=[events.append])
    finally:
        timer.join()
        fs.release_sleepers()
        if not isinstance(executor, str):
            executor.shutdown()
    assert time.monotonic() - t0 < 4
    assert list(tmp_path.iterdir()) == []  # `touch` never started
    assert events[-1].kind == "run_finished" and events[-1].status == "cancelled"
    assert "touch" not in {e.step for e in events if e.kind == "step_started"}
    assert multiprocessing.active_children() == []


# -- nothing leaks ---------------------------------------------------------------------


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("microdag worker")]


def settle(predicate, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_threads_backend_leaves_no_threads(tmp_path) -> None:
    assert settle(lambda: not worker_threads())
    baseline = threading.active_count()
    wide = Flow("wide")
    for n in range(20):
        wide.add(f"s{n}", fs.noargs)
    wide.add("flaky", fs.flaky, retries=2, retry_delay=0.01)
    wide.add("bad", fs.fail_plain)
    for max_workers in (None, 1, 8):
        for on_failure in ("fail_fast", "continue"):
            workdir = tmp_path / f"{max_workers}-{on_failure}"
            workdir.mkdir()
            within(
                30,
                lambda: wide.run(
                    {"workdir": str(workdir)},
                    executor="threads",
                    max_workers=max_workers,
                    on_failure=on_failure,
                    raise_on_failure=False,
                ),
            )
    assert settle(lambda: not worker_threads()), worker_threads()
    assert settle(lambda: threading.active_count() <= baseline), threading.enumerate()


def test_process_pools_leave_no_children(tmp_path) -> None:
    flow = (
        Flow("procs")
        .add("noargs", fs.noargs)
        .add("fail_plain", fs.fail_plain)
        .add("sleeper", fs.sleeper, timeout=0.2)
        .add("die", fs.die)
    )
    for targets in (["noargs"], ["noargs", "fail_plain"], ["sleeper"], ["die"], None):
        within(
            30,
            lambda: flow.run(
                {"seconds": 10},
                executor="processes",
                targets=targets,
                on_failure="continue",
                raise_on_failure=False,
            ),
        )
        assert multiprocessing.active_children() == [], targets


def test_processes_import_steps_from_a_folder_added_to_sys_path_later(tmp_path) -> None:
    """A flow file's folder joins ``sys.path`` when the flow is loaded, possibly
    after the fork server started: workers must still find its modules."""
    warm = Flow("warm").add("one", fs.noargs)
    assert warm.run(executor="processes", max_workers=1).status == "succeeded"  # the fork server is up
    folder = tmp_path / "late"
    folder.mkdir()
    (folder / "latesteps_8c1f.py").write_text("def late(n=2):\n    return n * 21\n")
    import sys

    sys.path.insert(0, str(folder))
    try:
        import latesteps_8c1f

        run = Flow("late").add("late", latesteps_8c1f.late).run(executor="processes", max_workers=1)
        assert run["late"] == 42
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("latesteps_8c1f", None)


def test_a_step_its_worker_cannot_load_fails_with_the_reason(tmp_path) -> None:
    import sys
    import types

    ghost = types.ModuleType("ghost_steps_51d2")  # in this process only: workers cannot import it
    exec("def haunt():\n    return 'boo'\n", ghost.__dict__)
    sys.modules["ghost_steps_51d2"] = ghost
    try:
        run = Flow("ghost").add("haunt", ghost.haunt).run(
            executor="processes", max_workers=1, raise_on_failure=False
        )
    finally:
        del sys.modules["ghost_steps_51d2"]
    task = run.tasks["haunt"]
    assert task.status == "failed"
    assert isinstance(task.error, ModuleNotFoundError) and "ghost_steps_51d2" in str(task.error)
    assert any("could not load the step" in note for note in task.error.__notes__)
