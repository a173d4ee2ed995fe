"""Flows as documented in docs/api.md: defining steps, binding parameters,
outputs and their release, targets, failure policies, retries, timeouts,
hooks and logs, ``run_step``, warm reuse, concurrent runs, ``Task`` records
and priorities.

Whatever should behave the same on every backend runs on each of them (the
``executor`` fixture): ``"inline"``, ``"threads"``, ``"processes"`` and a
third-party-style ``concurrent.futures.Executor``.  Step functions that must
cross process boundaries live in ``flowsteps``.
"""

import logging
import threading
import time

import pytest

import flowsteps as fs
import microdag
from microdag import Flow, FlowError, RunFailed


def chain_flow(name: str = "chain") -> Flow:
    """source(x) -> double -> plus(double, y=10)."""
    return Flow(name).add("source", fs.source).add("double", fs.double).add("plus", fs.plus)


def diamond_flow(name: str = "diamond") -> Flow:
    """source(x) -> left, right -> join; and an independent ``noargs``."""
    return (
        Flow(name)
        .add("source", fs.source)
        .add("left", fs.left)
        .add("right", fs.right)
        .add("join", fs.join)
        .add("noargs", fs.noargs)
    )


def statuses(run: microdag.Run) -> dict[str, str]:
    return {name: task.status for name, task in run.tasks.items()}


# -- defining steps ------------------------------------------------------------------


def test_decorator_bare_and_with_options_returns_the_function(executor) -> None:
    flow = Flow("deco")
    assert flow.step(fs.source) is fs.source
    decorate = flow.step(name="twice", retries=1, timeout=30)
    assert decorate(fs.double) is fs.double
    assert flow.step(priority=2)(fs.noargs) is fs.noargs  # options, default name
    assert flow.steps == ("source", "twice", "noargs")
    # `double(source)` is bound to step `source` whatever the step is called
    run = flow.run({"x": 3}, executor=executor)
    assert run["twice"] == 6 and run["noargs"] == "ran"


def test_decorator_syntax_keeps_functions_usable() -> None:
    flow = Flow("syntax")

    @flow.step
    def first():
        return 1

    @flow.step(name="second", retries=2)
    def whatever(first):
        return first + 1

    assert first() == 1 and whatever(41) == 42 and whatever.__name__ == "whatever"
    assert flow.steps == ("first", "second") and len(flow) == 2 and "second" in flow
    assert "whatever" not in flow
    assert flow.run().outputs == {"second": 2}


def test_add_returns_the_flow_so_calls_chain(executor) -> None:
    flow = Flow("chained")
    assert flow.add("source", fs.source) is flow
    same = flow.add("double", fs.double).add("plus", fs.plus)
    assert same is flow and flow.steps == ("source", "double", "plus")
    assert flow.run({"x": 5}, executor=executor)["plus"] == 20


# -- binding --------------------------------------------------------------------------


def test_binding_by_name_and_by_inputs_mapping(executor) -> None:
    flow = chain_flow().add("total", fs.total, inputs={"a": "source", "b": "double"})
    run = flow.run({"x": 4}, executor=executor)
    assert run.status == "succeeded"
    assert run.outputs == {"plus": 18, "total": 12}  # 2*4 + 10, 4 + 2*4
    assert flow.graph.dependencies("total") == ("source", "double")


def test_inputs_mapping_wins_over_a_step_of_the_same_name(executor) -> None:
    # `double(source)` would bind to step `source`; inputs= rebinds it
    flow = chain_flow().add("other", fs.double, inputs={"source": "plus"})
    run = flow.run({"x": 1}, executor=executor)
    assert run["other"] == 2 * (2 * 1 + 10)
    assert flow.graph.dependencies("other") == ("plus",)


def test_flow_inputs_required_and_optional_with_defaults(executor) -> None:
    flow = chain_flow()
    assert flow.inputs == {"x": True, "y": False}
    assert flow.run({"x": 1}, executor=executor)["plus"] == 12  # y defaults to 10
    run = flow.run({"x": 1, "y": -2}, executor=executor)
    assert run["plus"] == 0
    assert run.inputs == {"x": 1, "y": -2}


def test_one_input_feeds_every_step_that_names_it(executor) -> None:
    flow = Flow("shared").add("source", fs.source).add("ident", fs.ident, inputs={})
    flow.add("ident2", fs.ident)
    run = flow.run({"x": 1, "value": "v"}, executor=executor)
    assert run.outputs == {"source": 1, "ident": "v", "ident2": "v"}


def test_depends_on_is_order_only_without_kwargs(executor) -> None:
    flow = Flow("order").add("marker", fs.marker).add("noargs", fs.noargs, depends_on=["marker"])
    run = flow.run(executor=executor)
    assert run.outputs == {"noargs": "ran"}  # called with no arguments
    assert flow.graph.dependencies("noargs") == ("marker",)
    assert run.tasks["marker"].finished <= run.tasks["noargs"].started


def test_depends_on_single_string(executor) -> None:
    flow = Flow("one").add("marker", fs.marker).add("noargs", fs.noargs, depends_on="marker")
    assert flow.graph.dependencies("noargs") == ("marker",)
    assert flow.run(executor=executor).outputs == {"noargs": "ran"}


def test_kwargs_receive_declared_dependencies_keyed_by_step_name(executor) -> None:
    flow = chain_flow().add("marker", fs.marker)
    flow.add("collect", fs.collect, depends_on=["marker", "source"])
    # `double` is bound by name, so only the others reach **rest
    flow.add("named_and_rest", fs.named_and_rest, depends_on=["double", "marker", "source"])
    run = flow.run({"x": 4}, executor=executor, keep_outputs=True)
    assert run["collect"] == {"marker": "order-only", "source": 4}
    assert run["named_and_rest"] == {"double": 8, "rest": {"marker": "order-only", "source": 4}}


def test_kwargs_receive_inputs_entries_keyed_by_their_parameter_name() -> None:
    """docs/api.md: ``inputs`` entries that name no parameter reach ``**kwargs``
    under the keyword the entry gives (``depends_on`` ones under the step name)."""
    flow = Flow("kw").add("source", fs.source)
    flow.add("collect", fs.collect, inputs={"alias": "source"})
    assert flow.graph.dependencies("collect") == ("source",)
    assert flow.run({"x": 7})["collect"] == {"alias": 7}
    flow.add("both", fs.collect, depends_on=["source"], inputs={"alias": "source"})
    assert flow.run({"x": 7}, targets=["both"])["both"] == {"alias": 7, "source": 7}


def test_var_positional_receives_nothing() -> None:
    flow = Flow("star")

    @flow.step
    def a():
        return 1

    @flow.step
    def b(a, *args):
        return (a, args)

    assert flow.inputs == {} and flow.run()["b"] == (1, ())


# -- outputs ---------------------------------------------------------------------------


def test_outputs_hold_the_sinks_and_intermediates_are_released(executor) -> None:
    run = diamond_flow().run({"x": 2}, executor=executor)
    assert run.outputs == {"join": [("left", 2), ("right", 2)], "noargs": "ran"}
    assert run["join"] == [("left", 2), ("right", 2)]
    for name in ("source", "left", "right"):
        with pytest.raises(KeyError, match="released"):
            run[name]


def test_keep_outputs_keeps_every_output(executor) -> None:
    run = diamond_flow().run({"x": 2}, executor=executor, keep_outputs=True)
    assert run.outputs == {
        "source": 2,
        "left": ("left", 2),
        "right": ("right", 2),
        "join": [("left", 2), ("right", 2)],
        "noargs": "ran",
    }
    assert run["source"] == 2


@pytest.mark.parametrize("backend", ["inline", "threads", "executor"])
def test_an_output_is_released_once_its_consumers_finished(backend) -> None:
    """Outputs held in this process: the runner drops one as soon as every
    step consuming it has finished (unless keep_outputs=True)."""
    flow = Flow("mem").add("make_blob", fs.make_blob).add("use_blob", fs.use_blob)
    flow.add("blob_released", fs.blob_released)
    pool = fs.WrappedExecutor() if backend == "executor" else None
    try:
        released = flow.run(executor=pool or backend)
        kept = flow.run(executor=pool or backend, keep_outputs=True)
    finally:
        if pool is not None:
            pool.shutdown()
    assert released["blob_released"] is True
    assert kept["blob_released"] is False and isinstance(kept["make_blob"], fs.Blob)


def test_targets_run_only_their_ancestors_and_keep_their_outputs(executor) -> None:
    flow = diamond_flow()
    run = flow.run({"x": 3}, executor=executor, targets=["left"])
    assert set(run.tasks) == {"source", "left"}
    assert "join" not in run.tasks and "noargs" not in run.tasks
    assert run.outputs == {"left": ("left", 3)}
    with pytest.raises(KeyError, match="not part of"):
        run["join"]
    with pytest.raises(KeyError, match="not part of"):
        run.tasks["right"]
    with pytest.raises(KeyError, match="released"):
        run["source"]
    both = flow.run({"x": 3}, executor=executor, targets=["source", "right"])
    assert both.outputs == {"source": 3, "right": ("right", 3)}
    kept = flow.run({"x": 3}, executor=executor, targets=["left"], keep_outputs=True)
    assert kept.outputs == {"source": 3, "left": ("left", 3)}


def test_targets_do_not_need_inputs_of_steps_outside_them() -> None:
    flow = Flow("partial").add("source", fs.source).add("noargs", fs.noargs)
    assert flow.run(targets=["noargs"]).outputs == {"noargs": "ran"}


def test_unknown_step_key_error_says_so() -> None:
    run = diamond_flow().run({"x": 1})
    with pytest.raises(KeyError, match="not part of"):
        run["nope"]


# -- failures -----------------------------------------------------------------------------


def fail_fast_flow() -> Flow:
    """``bad`` fails at once while ``slow`` (0.5 s) runs; ``after`` waits for
    ``slow``, ``child`` for ``bad``.

    Inline runs ``slow`` first (paths of equal length: defined first), then
    ``bad`` (longer path than ``after``); parallel backends start ``slow`` and
    ``bad`` together.  Either way ``after`` is still pending when ``bad`` fails.
    """
    return (
        Flow("ff")
        .add("slow", fs.quick_nap)
        .add("bad", fs.fail_value)
        .add("after", fs.ident, inputs={"value": "slow"})
        .add("child", fs.collect, depends_on=["bad"])
    )


def test_fail_fast_cancels_pending_steps_and_raises_run_failed(executor) -> None:
    flow = fail_fast_flow()
    events: list[microdag.Event] = []
    with pytest.raises(RunFailed) as info:
        flow.run({"x": 1, "nap": 0.5}, executor=executor, hooks=[events.append])
    err = info.value
    run = err.run
    assert isinstance(run, microdag.Run) and run.status == "failed"
    expected = {"slow": "succeeded", "bad": "failed", "after": "cancelled", "child": "skipped"}
    assert statuses(run) == expected
    assert run.tasks["after"].attempts == 0 and run.tasks["child"].attempts == 0
    cause = err.__cause__
    assert isinstance(cause, ValueError) and str(cause) == "bad value 1"
    assert run.error is cause and run.tasks["bad"].error is cause
    notes = getattr(cause, "__notes__", [])
    assert any(
        "'bad'" in note and "attempt 1" in note and "'ff'" in note and run.id in note
        for note in notes
    ), notes
    assert "bad" in str(err) and "ValueError" in str(err)
    finished = {e.step: e.status for e in events if e.kind == "step_finished"}
    assert finished == expected
    assert events[-1].kind == "run_finished" and events[-1].status == "failed"


def test_continue_runs_independent_branches_and_skips_dependents(executor) -> None:
    flow = chain_flow("cont").add("bad", fs.fail_value)
    flow.add("child", fs.ident, inputs={"value": "bad"})
    flow.add("grandchild", fs.collect, depends_on=["child"])
    run = flow.run({"x": 2}, executor=executor, on_failure="continue", raise_on_failure=False)
    assert run.status == "failed"
    assert statuses(run) == {
        "source": "succeeded",
        "double": "succeeded",
        "plus": "succeeded",
        "bad": "failed",
        "child": "skipped",
        "grandchild": "skipped",
    }
    assert run["plus"] == 14
    assert isinstance(run.error, ValueError) and run.tasks["bad"].error is run.error
    with pytest.raises(KeyError, match="skipped"):
        run["child"]
    with pytest.raises(KeyError, match="failed"):
        run["bad"]


def test_continue_raises_after_every_branch_ran(executor) -> None:
    flow = chain_flow("cont2").add("bad", fs.fail_value)
    with pytest.raises(RunFailed) as info:
        flow.run({"x": 2}, executor=executor, on_failure="continue")
    assert info.value.run.tasks["plus"].status == "succeeded"
    assert isinstance(info.value.__cause__, ValueError)


def test_raise_on_failure_false_returns_the_failed_run_and_raise_for_status(executor) -> None:
    flow = Flow("rfs").add("bad", fs.fail_value)
    run = flow.run({"x": 0}, executor=executor, raise_on_failure=False)
    assert run.status == "failed" and isinstance(run.error, ValueError)
    with pytest.raises(RunFailed) as info:
        run.raise_for_status()
    assert info.value.run is run and info.value.__cause__ is run.error
    ok = Flow("ok").add("noargs", fs.noargs).run(executor=executor)
    assert ok.raise_for_status() is ok


def test_failed_step_note_is_added_once_per_failure() -> None:
    flow = Flow("notes").add("bad", fs.fail_value)
    run = flow.run({"x": 0}, raise_on_failure=False)
    notes = [n for n in run.error.__notes__ if n.startswith("microdag")]
    assert len(notes) == 1 and "attempt 1 of 1" in notes[0]


# -- retries -----------------------------------------------------------------------------


def test_retries_until_success_counting_attempts(executor, tmp_path) -> None:
    flow = Flow("retry").add("flaky", fs.flaky, retries=2, retry_delay=0.05)
    events: list[microdag.Event] = []
    run = flow.run({"workdir": str(tmp_path), "failures": 2}, executor=executor, hooks=[events.append])
    assert run["flaky"] == 3
    task = run.tasks["flaky"]
    assert task.attempts == 3 and task.error is None and task.status == "succeeded"
    assert len(list(tmp_path.iterdir())) == 3
    # started/finished describe the last attempt
    starts = [e.time for e in events if e.kind == "step_started"]
    assert len(starts) == 3 and task.started >= starts[1] + 0.02


def test_retries_exhausted_fail_with_the_last_error(executor, tmp_path) -> None:
    flow = Flow("retry").add("flaky", fs.flaky, retries=1)
    run = flow.run({"workdir": str(tmp_path), "failures": 5}, executor=executor, raise_on_failure=False)
    task = run.tasks["flaky"]
    assert task.status == "failed" and task.attempts == 2
    assert isinstance(task.error, ConnectionError) and str(task.error) == "attempt 2 failed"
    assert any("attempt 2 of 2" in note for note in task.error.__notes__)
    assert len(list(tmp_path.iterdir())) == 2


def test_retry_on_filters_exception_types(executor, tmp_path) -> None:
    flow = Flow("filter").add("flaky", fs.flaky, retries=3, retry_on=ConnectionError)
    inputs = {"workdir": str(tmp_path), "failures": 3, "exc": "TypeError"}
    run = flow.run(inputs, executor=executor, raise_on_failure=False)
    assert run.tasks["flaky"].attempts == 1 and isinstance(run.error, TypeError)
    assert len(list(tmp_path.iterdir())) == 1
    # a tuple works too, and a matching type is retried
    again = Flow("filter2").add("flaky", fs.flaky, retries=3, retry_on=(KeyError, ConnectionError))
    workdir = tmp_path / "second"
    workdir.mkdir()
    assert again.run({"workdir": str(workdir), "failures": 1}, executor=executor)["flaky"] == 2


def retry_events(run_flow) -> list[microdag.Event]:
    events: list[microdag.Event] = []
    run_flow(events.append)
    return [e for e in events if e.kind == "step_retrying"]


def test_retry_backoff_with_equal_jitter(executor, tmp_path) -> None:
    flow = Flow("backoff").add("flaky", fs.flaky, retries=3, retry_delay=0.02, retry_backoff=3)
    events: list[microdag.Event] = []
    run = flow.run({"workdir": str(tmp_path), "failures": 3}, executor=executor, hooks=[events.append])
    assert run["flaky"] == 4 and run.tasks["flaky"].attempts == 4
    delays = [e.duration for e in events if e.kind == "step_retrying"]
    # the n-th retry waits retry_delay * backoff**(n-1), jittered into [d/2, d]
    assert len(delays) == 3
    nominal = [0.02 * 3.0**n for n in range(3)]
    for delay, full in zip(delays, nominal):
        assert full / 2 <= delay <= full
    assert any(delay < full for delay, full in zip(delays, nominal))  # jittered
    # and really waits at least that long before the next attempt
    started = [e.time for e in events if e.kind == "step_started"]
    for before, after, delay in zip(started, started[1:], delays):
        assert after - before >= delay - 0.005


def test_retry_max_delay_caps_the_wait(executor, tmp_path) -> None:
    flow = Flow("cap").add(
        "flaky", fs.flaky, retries=2, retry_delay=30, retry_backoff=10, retry_max_delay=0.05
    )
    events: list[microdag.Event] = []
    t0 = time.monotonic()
    run = flow.run({"workdir": str(tmp_path), "failures": 2}, executor=executor, hooks=[events.append])
    assert time.monotonic() - t0 < 5
    assert run["flaky"] == 3
    delays = [e.duration for e in events if e.kind == "step_retrying"]
    assert len(delays) == 2 and all(0.025 <= d <= 0.05 for d in delays)


def test_zero_retry_delay_retries_at_once(executor, tmp_path) -> None:
    flow = Flow("zero").add("flaky", fs.flaky, retries=2)
    events: list[microdag.Event] = []
    run = flow.run({"workdir": str(tmp_path), "failures": 2}, executor=executor, hooks=[events.append])
    assert run.tasks["flaky"].attempts == 3
    assert [e.duration for e in events if e.kind == "step_retrying"] == [0.0, 0.0]


# -- timeouts -----------------------------------------------------------------------------


def test_timeout_fails_the_step_with_timeout_error(executor) -> None:
    flow = Flow("slow").add("sleeper", fs.sleeper, timeout=0.2).add("noargs", fs.noargs)
    t0 = time.monotonic()
    run = flow.run(
        {"seconds": 10}, executor=executor, on_failure="continue", raise_on_failure=False
    )
    elapsed = time.monotonic() - t0
    assert elapsed < 0.2 + 1.3, elapsed
    task = run.tasks["sleeper"]
    assert task.status == "failed" and task.attempts == 1
    assert isinstance(task.error, TimeoutError) and isinstance(run.error, TimeoutError)
    assert run.tasks["noargs"].status == "succeeded"
    assert task.duration is not None and 0.1 <= task.duration < 1.5


def test_timeout_is_per_attempt_and_retried(executor) -> None:
    flow = Flow("slow").add("sleeper", fs.sleeper, timeout=0.2, retries=1)
    events: list[microdag.Event] = []
    t0 = time.monotonic()
    with pytest.raises(RunFailed) as info:
        flow.run({"seconds": 10}, executor=executor, hooks=[events.append])
    assert time.monotonic() - t0 < 2 * 0.2 + 1.5
    run = info.value.run
    assert run.tasks["sleeper"].attempts == 2
    assert isinstance(info.value.__cause__, TimeoutError)
    retrying = [e for e in events if e.kind == "step_retrying"]
    assert len(retrying) == 1 and isinstance(retrying[0].error, TimeoutError)


def test_a_step_within_its_timeout_succeeds(executor) -> None:
    flow = Flow("fast").add("quick_nap", fs.quick_nap, timeout=10)
    run = flow.run({"nap": 0.01}, executor=executor)
    assert run["quick_nap"] == 0.01 and run.tasks["quick_nap"].attempts == 1


# -- hooks and logs -----------------------------------------------------------------------


def test_hooks_receive_events_in_order(executor, tmp_path) -> None:
    flow = chain_flow("hooked").add("flaky", fs.flaky, retries=1)
    events: list[microdag.Event] = []
    run = flow.run({"x": 1, "workdir": str(tmp_path), "failures": 1}, executor=executor, hooks=[events.append])
    kinds = [e.kind for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("run_started") == 1 and kinds.count("run_finished") == 1
    assert all(e.run_id == run.id and e.flow == "hooked" for e in events)
    assert events[0].step is None and events[-1].step is None
    finished = events[-1]
    assert finished.status == "succeeded" and finished.duration >= 0
    per_step: dict[str, list[microdag.Event]] = {}
    for e in events[1:-1]:
        per_step.setdefault(e.step, []).append(e)
    assert set(per_step) == {"source", "double", "plus", "flaky"}
    for name in ("source", "double", "plus"):
        assert [(e.kind, e.attempt) for e in per_step[name]] == [
            ("step_started", 1),
            ("step_finished", 1),
        ]
        end = per_step[name][1]
        assert end.status == "succeeded" and end.duration >= 0 and end.error is None
    assert [(e.kind, e.attempt) for e in per_step["flaky"]] == [
        ("step_started", 1),
        ("step_retrying", 1),
        ("step_started", 2),
        ("step_finished", 2),
    ]
    assert isinstance(per_step["flaky"][1].error, ConnectionError)
    # a step starts after the steps it depends on finished
    position = {(e.kind, e.step): n for n, e in enumerate(events)}
    assert position[("step_finished", "source")] < position[("step_started", "double")]
    assert position[("step_finished", "double")] < position[("step_started", "plus")]


def test_hooks_on_a_failed_run(executor) -> None:
    flow = Flow("hooked").add("bad", fs.fail_value).add("child", fs.ident, inputs={"value": "bad"})
    events: list[microdag.Event] = []
    run = flow.run(
        {"x": 1}, executor=executor, hooks=[events.append], on_failure="continue", raise_on_failure=False
    )
    finished = {e.step: e for e in events if e.kind == "step_finished"}
    assert finished["bad"].status == "failed" and finished["bad"].error is run.error
    assert finished["bad"].attempt == 1 and finished["bad"].duration >= 0
    assert finished["child"].status == "skipped"
    assert events[-1].kind == "run_finished" and events[-1].status == "failed"


def test_hooks_run_in_the_thread_that_ran_the_step(executor) -> None:
    """The calling thread for inline, processes and executors; a worker for threads."""
    seen: list[tuple[str, int]] = []
    chain_flow().run({"x": 1}, executor=executor, hooks=[lambda e: seen.append((e.kind, threading.get_ident()))])
    me = threading.get_ident()
    run_threads = {t for kind, t in seen if kind.startswith("run_")}
    step_threads = {t for kind, t in seen if kind.startswith("step_")}
    assert run_threads == {me} and len(seen) == 8
    if executor == "threads":
        assert me not in step_threads
    else:
        assert step_threads == {me}


def test_a_raising_hook_is_logged_and_skipped(executor, caplog) -> None:
    seen: list[str] = []

    def broken(event):
        raise RuntimeError("hook broke")

    with caplog.at_level(logging.WARNING, logger="microdag"):
        run = chain_flow().run({"x": 1}, executor=executor, hooks=[broken, lambda e: seen.append(e.kind)])
    assert run.status == "succeeded" and run["plus"] == 12
    assert seen[0] == "run_started" and seen[-1] == "run_finished" and len(seen) == 8
    warnings = [r for r in caplog.records if r.name == "microdag" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "hook broke" in warnings[0].getMessage()  # once a run, not once an event


def test_failure_is_logged_at_warning_and_retries_at_info(executor, caplog, tmp_path) -> None:
    flow = Flow("logged").add("bad", fs.fail_value).add("flaky", fs.flaky, retries=1)
    with caplog.at_level(logging.INFO, logger="microdag"):
        flow.run(
            {"x": 1, "workdir": str(tmp_path), "failures": 1},
            executor=executor,
            on_failure="continue",
            raise_on_failure=False,
        )
    records = [r for r in caplog.records if r.name == "microdag"]
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'bad'" in warnings[0].getMessage() and "bad value 1" in warnings[0].getMessage()
    infos = [r for r in records if r.levelno == logging.INFO]
    assert len(infos) == 1 and "'flaky'" in infos[0].getMessage()


def test_debug_logging_reports_each_step(caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger="microdag"):
        run = chain_flow().run({"x": 1})
    assert run["plus"] == 12
    debug = [r.getMessage() for r in caplog.records if r.name == "microdag" and r.levelno == logging.DEBUG]
    for name in ("source", "double", "plus"):
        assert any(f"'{name}'" in m and "started" in m for m in debug), debug
        assert any(f"'{name}'" in m and "succeeded" in m for m in debug), debug


def test_a_successful_run_logs_nothing_at_info(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="microdag"):
        chain_flow().run({"x": 1})
    assert [r for r in caplog.records if r.name == "microdag"] == []


# -- run_step ---------------------------------------------------------------------------


def test_run_step_returns_the_output() -> None:
    flow = chain_flow().add("total", fs.total, inputs={"a": "source", "b": "double"})
    assert flow.run_step("double", {"source": 21}) == 42
    assert flow.run_step("plus", {"double": 1}) == 11  # default y
    assert flow.run_step("plus", {"double": 1, "y": 1}) == 2
    assert flow.run_step("total", {"source": 1, "double": 2}) == 3
    assert flow.run_step("source", {"x": "given"}) == "given"


def test_run_step_raises_the_steps_exception_without_retries(tmp_path) -> None:
    flow = Flow("rs").add("bad", fs.fail_value).add("flaky", fs.flaky, retries=5, timeout=10)
    with pytest.raises(ValueError, match="bad value 3"):
        flow.run_step("bad", {"x": 3})
    with pytest.raises(ConnectionError):
        flow.run_step("flaky", {"workdir": str(tmp_path)})
    assert len(list(tmp_path.iterdir())) == 1


def test_run_step_missing_values_are_flow_errors() -> None:
    flow = chain_flow().add("total", fs.total, inputs={"a": "source", "b": "double"})
    with pytest.raises(FlowError) as info:
        flow.run_step("total", {"source": 1})
    assert "'total'" in str(info.value) and "'double'" in str(info.value)
    with pytest.raises(FlowError) as info:
        flow.run_step("source", {})
    assert "'source'" in str(info.value) and "'x'" in str(info.value)
    with pytest.raises(FlowError) as info:
        flow.run_step("total")
    assert len(info.value.problems) == 2
    with pytest.raises(FlowError, match="nope"):
        flow.run_step("nope", {})


def test_run_step_runs_in_the_calling_thread() -> None:
    flow = Flow("here")

    @flow.step(timeout=5)
    def where():
        return threading.get_ident()

    assert flow.run_step("where", {}) == threading.get_ident()


def test_run_step_kwargs_get_declared_dependencies() -> None:
    flow = Flow("rs").add("marker", fs.marker).add("source", fs.source)
    flow.add("collect", fs.collect, depends_on=["marker", "source"])
    assert flow.run_step("collect", {"marker": 1, "source": 2}) == {"marker": 1, "source": 2}


# -- warm reuse and concurrency -------------------------------------------------------------


def test_warm_reuse_gives_identical_results(executor) -> None:
    flow = diamond_flow().add("positive", fs.positive)
    expected = {"join": [("left", 5), ("right", 5)], "noargs": "ran", "positive": 5}
    graph = flow.graph
    for _ in range(3):
        assert flow.run({"x": 5}, executor=executor).outputs == expected
    # a partial run, a failed run and a run on another backend leave no trace
    assert flow.run({"x": 5}, executor=executor, targets=["left"]).outputs == {"left": ("left", 5)}
    failed = flow.run({"x": -1}, executor=executor, raise_on_failure=False)
    assert failed.status == "failed" and failed.tasks["positive"].status == "failed"
    assert flow.run({"x": 5}, executor="inline").outputs == expected
    again = flow.run({"x": 5}, executor=executor)
    assert again.outputs == expected and set(again.tasks) == set(flow.steps)
    assert all(t.attempts == 1 for t in again.tasks.values())
    assert flow.graph is graph  # compiled once


def test_adding_a_step_recompiles(executor) -> None:
    flow = chain_flow()
    assert flow.run({"x": 1}, executor=executor).outputs == {"plus": 12}
    graph = flow.graph
    flow.add("more", fs.ident, inputs={"value": "plus"})
    assert flow.graph is not graph and flow.graph.names[-1] == "more"
    assert flow.run({"x": 1}, executor=executor).outputs == {"more": 12}


@pytest.mark.parametrize("backend", ["inline", "threads"])
def test_two_runs_of_one_flow_at_once(backend) -> None:
    meet = threading.Barrier(2, timeout=10)
    flow = Flow("twice").add("source", fs.source)

    @flow.step
    def together(source):
        meet.wait()  # both runs are inside a step at the same moment
        return source * 10

    flow.add("after", fs.ident, inputs={"value": "together"})
    results: dict[int, object] = {}

    def go(x):
        try:
            results[x] = flow.run({"x": x}, executor=backend)["after"]
        except BaseException as exc:  # reported below
            results[x] = exc

    threads = [threading.Thread(target=go, args=(x,)) for x in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {1: 10, 2: 20}
    # and the flow is still reusable afterwards
    assert flow.run({"x": 3}, executor=backend, targets=["source"]).outputs == {"source": 3}


def test_many_concurrent_runs_share_one_flow() -> None:
    flow = diamond_flow()
    failures: list[object] = []

    def go(x):
        for _ in range(30):
            try:
                out = flow.run({"x": x}, executor="inline").outputs
            except BaseException as exc:
                failures.append(exc)
                return
            if out != {"join": [("left", x), ("right", x)], "noargs": "ran"}:
                failures.append(out)

    threads = [threading.Thread(target=go, args=(x,)) for x in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []


# -- Run and Task records ------------------------------------------------------------------


def test_task_fields(executor) -> None:
    flow = chain_flow("fields").add("bad", fs.fail_value).add("child", fs.ident, inputs={"value": "bad"})
    run = flow.run({"x": 1}, executor=executor, on_failure="continue", raise_on_failure=False)
    assert run.flow == "fields" and run.id and run.id in repr(run)
    assert run.started <= run.finished and run.duration == run.finished - run.started
    for name in ("source", "double", "plus", "bad"):
        task = run.tasks[name]
        assert isinstance(task, microdag.Task) and task.name == name
        assert task.attempts == 1
        assert run.started - 0.05 <= task.started <= task.finished <= run.finished + 0.05
        assert task.duration >= 0
        assert abs(task.duration - (task.finished - task.started)) < 1e-9
    assert run.tasks["source"].status == "succeeded" and run.tasks["source"].error is None
    bad = run.tasks["bad"]
    assert bad.status == "failed" and isinstance(bad.error, ValueError)
    child = run.tasks["child"]
    assert child.status == "skipped" and child.attempts == 0
    assert child.started is None and child.finished is None and child.duration is None
    assert child.error is None
    assert "child" in repr(child) and "skipped" in repr(child)


def test_tasks_is_a_read_only_mapping_in_definition_order() -> None:
    flow = diamond_flow()
    run = flow.run({"x": 1})
    tasks = run.tasks
    assert list(tasks) == list(flow.steps) and len(tasks) == 5
    assert list(tasks.keys()) == list(flow.steps)
    assert [t.name for t in tasks.values()] == list(flow.steps)
    assert [(n, t.name) for n, t in tasks.items()] == [(n, n) for n in flow.steps]
    assert set(dict(tasks)) == set(flow.steps)
    assert "join" in tasks and "nope" not in tasks
    assert tasks.get("nope") is None and tasks.get("join").name == "join"
    with pytest.raises(KeyError):
        tasks["nope"]
    with pytest.raises(TypeError):
        tasks["join"] = None  # type: ignore[index]
    with pytest.raises(TypeError):
        del tasks["join"]  # type: ignore[attr-defined]
    partial = flow.run({"x": 1}, targets=["right"])
    assert list(partial.tasks) == ["source", "right"] and len(partial.tasks) == 2
    assert partial.tasks.get("left", "absent") == "absent"


def test_run_records_inputs_and_status() -> None:
    run = chain_flow().run({"x": 2, "y": 3})
    assert run.inputs == {"x": 2, "y": 3} and run.status == "succeeded" and run.error is None
    assert run.flow == "chain" and run["plus"] == 7


# -- priorities ------------------------------------------------------------------------------


def recording_flow(order: list[str], specs: list[tuple[str, dict]]) -> Flow:
    """Steps that append their name to ``order`` when they run."""

    def recorder(name: str):
        def step():
            order.append(name)

        return step

    flow = Flow("prio")
    for name, options in specs:
        flow.add(name, recorder(name), **options)
    return flow


def test_longest_path_goes_first_then_definition_order() -> None:
    order: list[str] = []
    flow = recording_flow(
        order,
        [
            ("short", {}),
            ("long1", {}),
            ("long2", {"depends_on": ["long1"]}),
            ("long3", {"depends_on": ["long2"]}),
            ("other", {}),
        ],
    )
    flow.run()
    assert order == ["long1", "long2", "short", "long3", "other"]


def test_priority_overrides_the_longest_path() -> None:
    order: list[str] = []
    flow = recording_flow(
        order,
        [
            ("low", {"priority": 1}),
            ("high", {"priority": 5}),
            ("none", {}),
            ("negative", {"priority": -3}),
            ("long1", {}),
            ("long2", {"depends_on": ["long1"]}),
        ],
    )
    flow.run()
    assert order.index("high") == 0 and order.index("low") == 1
    assert order.index("negative") == len(order) - 1
    assert order.index("long1") < order.index("long2")


def test_order_is_the_same_on_one_worker_of_any_backend(executor) -> None:
    flow = (
        Flow("prio")
        .add("short", fs.noargs)
        .add("urgent", fs.noargs, priority=9)
        .add("long1", fs.noargs)
        .add("long2", fs.noargs, depends_on=["long1"])
        .add("late", fs.noargs, priority=-1)
    )

    def order(backend) -> list[str]:
        events: list[microdag.Event] = []
        flow.run(executor=backend, max_workers=1, hooks=[events.append])
        return [e.step for e in events if e.kind == "step_started"]

    inline = order("inline")
    assert inline[0] == "urgent" and inline[-1] == "late"
    assert order(executor) == inline


def test_a_third_party_executor_is_really_used() -> None:
    pool = fs.WrappedExecutor()
    try:
        run = chain_flow().run({"x": 1}, executor=pool)
    finally:
        pool.shutdown()
    assert run["plus"] == 12 and pool.submitted == 3


def _shapes():
    def plain(a, b=1, *args, c, d=2, **kw):
        return a

    def posonly(a, b=3, /, c=4, *, d):
        return a

    def nothing():
        return None

    async def coro(x, y=None):
        return x

    async def agen(x):
        yield x

    def varargs_only(*items):
        return items

    def kwargs_only(**deps):
        return deps

    def defaults_all(a=1, b=None, c=()):
        return a

    return [plain, posonly, nothing, coro, agen, varargs_only, kwargs_only, defaults_all, lambda s, t=5: s]


@pytest.mark.parametrize("fn", _shapes(), ids=lambda f: f.__name__)
def test_signatures_read_from_code_match_inspect(fn):
    from microdag._binding import _Signature

    fast = _Signature(fn)
    fn.__signature__ = None  # a set attribute sends _Signature through inspect
    try:
        slow = _Signature(fn)
    finally:
        del fn.__signature__
    for attr in ("params", "names", "var_kw", "positional_only", "is_async"):
        assert getattr(fast, attr) == getattr(slow, attr), attr
