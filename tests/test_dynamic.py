"""Dynamic features of a run, on every backend: maps (fan-out, batches), skips
and trigger rules, async steps and ``Flow.arun``, cancellation (cancel events,
Ctrl-C, a cancelled ``arun`` task) and ``microdag.context()``.

Step functions used on processes live in ``dynsteps.py`` (they must be
importable); "executor" is ``flowsteps.WrappedExecutor``, a
``concurrent.futures.Executor`` subclass wrapping a thread pool (the shared
``executor`` fixture of ``conftest.py``).
"""

import asyncio
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

import dynsteps as ds
import flowsteps as fs
import microdag
from microdag import Flow, FlowError, RunFailed
from support import executor_for

PARALLEL = ["threads", "processes", "executor"]
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(params=PARALLEL)
def parallel(request: pytest.FixtureRequest):
    """An ``executor=`` value that runs steps in parallel."""
    with executor_for(request.param) as value:
        yield value


def name_of(executor) -> str:
    return executor if isinstance(executor, str) else "executor"


def within(seconds: float, call):
    """:func:`flowsteps.within`, releasing the sleeping steps on a timeout."""
    return fs.within(seconds, call, on_timeout=ds.release)


def statuses(run: microdag.Run) -> dict[str, str]:
    return {name: task.status for name, task in run.tasks.items()}


def notes(exc: BaseException) -> str:
    return "\n".join(getattr(exc, "__notes__", []))


def peak(windows) -> int:
    """The most ``(start, end)`` windows open at one time."""
    return max(sum(1 for s, e in windows if s <= start < e) for start, _ in windows)


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def eventually(predicate, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def markers(folder, kind: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(kind + "-"))


# -- maps -------------------------------------------------------------------------


def test_map_runs_once_per_item_and_keeps_input_order(executor) -> None:
    # item 0 is the slowest, so on parallel backends it finishes last
    flow = Flow("map").add("items", ds.items).add("slow_first", ds.slow_first, map="items")
    run = flow.run({"n": 5}, executor=executor, max_workers=3)
    assert run["slow_first"] == [(i, i) for i in range(5)]  # (value, context().item)


def test_map_over_a_flow_input_and_over_any_iterable(executor) -> None:
    flow = Flow("xs").add("square_xs", ds.square_xs, map="xs")
    assert flow.run({"xs": (1, 2, 3)}, executor=executor)["square_xs"] == [1, 4, 9]
    assert flow.run({"xs": (x for x in [4, 5])}, executor=executor)["square_xs"] == [16, 25]
    # a dependency's output that is a range, bound with inputs=, summed downstream
    flow = Flow("range").add("numbers", ds.numbers)
    flow.add("square", ds.square, map="items", inputs={"items": "numbers"}).add("total", ds.total)
    run = flow.run({"n": 5}, executor=executor, keep_outputs=True)
    assert run["square"] == [0, 1, 4, 9, 16] and run["total"] == 30


def test_the_other_parameters_reach_every_item_unchanged(executor) -> None:
    flow = Flow("scale").add("items", ds.items).add("scale", ds.scale, map="items")
    assert flow.run({"n": 4, "factor": 10}, executor=executor)["scale"] == [0, 10, 20, 30]


@pytest.mark.parametrize("batch_size", [None, 3])
def test_an_empty_iterable_gives_an_empty_list(executor, batch_size) -> None:
    flow = Flow("empty").add("items", ds.items)
    if batch_size is None:
        flow.add("square", ds.square, map="items")
    else:
        flow.add("square", ds.batch_square, map="items", batch_size=batch_size)
    flow.add("total", ds.length, inputs={"items": "square"})
    run = flow.run({"n": 0}, executor=executor, keep_outputs=True)
    assert run["square"] == [] and run["total"] == 0
    assert run.status == "succeeded" and run.tasks["square"].status == "succeeded"


def test_batches_pass_lists_and_give_one_result_per_item(executor) -> None:
    flow = Flow("batch").add("items", ds.items)
    flow.add("batch_square", ds.batch_square, map="items", batch_size=4)
    run = flow.run({"n": 10}, executor=executor)
    # (square, size of the batch the item came in, context().item = first index of the batch)
    assert run["batch_square"] == [(x * x, 4 if x < 8 else 2, x // 4 * 4) for x in range(10)]


def test_batch_size_one_is_like_a_plain_map(executor) -> None:
    flow = Flow("one").add("items", ds.items).add("batch_square", ds.batch_square, map="items", batch_size=1)
    assert flow.run({"n": 3}, executor=executor)["batch_square"] == [(0, 1, 0), (1, 1, 1), (4, 1, 2)]


@pytest.mark.parametrize("fn", [ds.batch_one_result, ds.batch_not_a_list], ids=["too-few", "not-a-list"])
def test_a_batch_returning_the_wrong_number_of_results_fails_the_step(executor, fn) -> None:
    flow = Flow("bad-batch").add("items", ds.items).add("batched", fn, map="items", batch_size=4)
    with pytest.raises(RunFailed) as info:
        flow.run({"n": 8}, executor=executor)  # two batches of 4
    run = info.value.run
    assert run.status == "failed" and run.tasks["batched"].status == "failed"
    message = str(run.tasks["batched"].error)
    assert "'batched'" in message and "4 items" in message  # names the step and the batch


def test_a_failing_item_fails_the_step_and_a_note_names_its_index(executor, tmp_path) -> None:
    flow = Flow("item-fails").add("items", ds.items)
    flow.add("fail_on_three", ds.fail_on_three, map="items")
    flow.add("show", ds.show, depends_on=["fail_on_three"])
    with pytest.raises(RunFailed) as info:
        flow.run({"n": 6, "workdir": str(tmp_path)}, executor=executor)
    run = info.value.run
    error = run.tasks["fail_on_three"].error
    assert isinstance(error, ValueError) and str(error) == "item three is bad"
    assert info.value.__cause__ is error and run.error is error
    assert "item 3" in notes(error)
    assert statuses(run) == {"items": "succeeded", "fail_on_three": "failed", "show": "skipped"}


def test_under_continue_the_other_items_still_run(executor, tmp_path) -> None:
    flow = Flow("item-fails").add("items", ds.items).add("ok", ds.ok)
    flow.add("fail_on_three", ds.fail_on_three, map="items")
    flow.add("show", ds.show, depends_on=["fail_on_three"])
    run = flow.run(
        {"n": 6, "workdir": str(tmp_path)}, executor=executor, max_workers=2,
        on_failure="continue", raise_on_failure=False,
    )
    assert sorted(os.listdir(tmp_path)) == [f"item-{i}" for i in (0, 1, 2, 4, 5)]
    assert run.status == "failed"
    assert statuses(run) == {"items": "succeeded", "ok": "succeeded", "fail_on_three": "failed", "show": "skipped"}
    assert "item 3" in notes(run.tasks["fail_on_three"].error)


def test_items_run_in_parallel_up_to_max_workers(parallel) -> None:
    flow = Flow("parallel").add("window", ds.window, map="seconds")
    run = within(30, lambda: flow.run({"seconds": [0.25] * 6}, executor=parallel, max_workers=3))
    windows = run["window"]
    assert len(windows) == 6
    assert 2 <= peak(windows) <= 3


def test_map_items_retry_on_their_own_with_attempts_counted_per_item(executor) -> None:
    flow = Flow("retry").add("items", ds.items).add("flaky_odd", ds.flaky_odd, map="items", retries=1)
    run = flow.run({"n": 5}, executor=executor)
    # odd items failed on attempt 1 and succeeded on attempt 2; even ones needed one
    assert run["flaky_odd"] == [(0, 1), (1, 2), (2, 1), (3, 2), (4, 1)]
    assert run.status == "succeeded"


def test_an_item_failing_every_attempt_fails_the_step_naming_it(executor) -> None:
    flow = Flow("retry").add("items", ds.items)
    flow.add("always_fails_on_two", ds.always_fails_on_two, map="items", retries=2)
    run = flow.run({"n": 4}, executor=executor, raise_on_failure=False)
    error = run.tasks["always_fails_on_two"].error
    assert isinstance(error, ConnectionError) and "item 2" in notes(error)
    assert run.status == "failed"


def test_a_slow_item_times_out_and_the_step_fails_naming_it(executor) -> None:
    flow = Flow("timeout").add("nap_item", ds.nap_item, map="seconds", timeout=0.5)
    t0 = time.monotonic()
    run = within(30, lambda: flow.run(
        {"seconds": [0.01, 0.01, 10, 0.01]}, executor=executor, max_workers=2, raise_on_failure=False
    ))
    assert time.monotonic() - t0 < 4
    error = run.tasks["nap_item"].error
    assert isinstance(error, TimeoutError) and "item 2" in notes(error)
    assert run.status == "failed"


def test_an_item_timing_out_on_its_first_attempt_succeeds_on_retry(executor) -> None:
    flow = Flow("timeout-retry").add("items", ds.items)
    flow.add("slow_on_first_attempt", ds.slow_on_first_attempt, map="items", timeout=0.4, retries=1)
    t0 = time.monotonic()
    run = within(30, lambda: flow.run({"n": 3}, executor=executor))
    assert run["slow_on_first_attempt"] == [(0, 1), (1, 2), (2, 1)]
    assert time.monotonic() - t0 < 4


def test_the_timeout_applies_to_each_item_not_to_the_whole_step(executor) -> None:
    flow = Flow("timeout").add("nap_item", ds.nap_item, map="seconds", timeout=0.5)
    run = within(30, lambda: flow.run({"seconds": [0.15] * 4}, executor=executor, max_workers=1))
    assert run["nap_item"] == [0.15] * 4  # 0.6 s in all, each item well under 0.5 s


def test_a_non_iterable_map_value_fails_the_step_with_a_type_error(executor) -> None:
    flow = Flow("not-iterable").add("not_iterable", ds.not_iterable)
    flow.add("mapped_over_int", ds.mapped_over_int, map="not_iterable")
    run = flow.run({"n": 2.5}, executor=executor, raise_on_failure=False)
    error = run.tasks["mapped_over_int"].error
    assert isinstance(error, TypeError)
    assert "'mapped_over_int'" in str(error) and "float" in str(error)
    assert run.status == "failed"


def test_map_over_an_optional_input_left_at_its_default(executor) -> None:
    # the parameter's value is its default, an iterable, as for any other step
    flow = Flow("default").add("square_default", ds.square_default, map="xs")
    assert flow.run(executor=executor)["square_default"] == [1, 4, 9]
    assert flow.run({"xs": [4]}, executor=executor)["square_default"] == [16]


def test_map_naming_an_unknown_parameter_is_a_flow_error_before_anything_runs() -> None:
    ran: list[str] = []
    flow = Flow("bad-map").add("first", lambda: ran.append("first"))
    flow.add("square", ds.square, map="nope")
    with pytest.raises(FlowError, match=r"step 'square'.*'nope'"):
        flow.run()
    with pytest.raises(FlowError, match="'nope'"):
        flow.validate()
    assert ran == []


@pytest.mark.parametrize(
    "options, message",
    [
        ({"trigger": "sometimes"}, "unknown trigger 'sometimes'"),
        ({"trigger": None}, "unknown trigger None"),
        ({"map": "items", "batch_size": 0}, "batch_size must be an int >= 1"),
        ({"map": "items", "batch_size": -3}, "batch_size must be an int >= 1"),
        ({"map": "items", "batch_size": 2.0}, "batch_size must be an int >= 1"),
        ({"map": "items", "batch_size": True}, "batch_size must be an int >= 1"),
        ({"batch_size": 2}, "batch_size needs map="),
        ({"map": ""}, "map must name a parameter"),
        ({"map": 3}, "map must name a parameter"),
    ],
)
def test_invalid_map_batch_and_trigger_options_are_flow_errors(options, message) -> None:
    flow = Flow("bad-options")
    with pytest.raises(FlowError, match=rf"step 'square'.*{re.escape(message)}"):
        flow.add("square", ds.square, **options)
    assert "square" not in flow


# -- skips and trigger rules ------------------------------------------------------------


def test_skip_marks_the_step_skipped_with_its_reason_and_the_run_succeeds(executor) -> None:
    flow = Flow("skip").add("ok", ds.ok).add("skipper", ds.skipper)
    flow.add("after_skipper", ds.after_skipper).add("after_ok", ds.after_ok)
    run = flow.run(executor=executor)  # skips are not failures: nothing raised
    assert run.status == "succeeded" and run.error is None
    assert statuses(run) == {
        "ok": "succeeded", "skipper": "skipped", "after_skipper": "skipped", "after_ok": "succeeded",
    }
    skipped = run.tasks["skipper"]
    assert skipped.reason == "nothing to do today" and skipped.error is None and skipped.attempts == 1
    assert run.outputs == {"after_ok": ("after", "ok")}
    with pytest.raises(KeyError, match="skipped"):
        run["after_skipper"]


def test_a_skip_is_not_retried(executor, tmp_path) -> None:
    flow = Flow("skip-retries").add("skip_counting", ds.skip_counting, retries=3)
    run = flow.run({"workdir": str(tmp_path)}, executor=executor)
    task = run.tasks["skip_counting"]
    assert task.status == "skipped" and task.reason == "counted" and task.attempts == 1
    assert len(os.listdir(tmp_path)) == 1


def test_trigger_rules_decide_what_runs_after_a_success_a_skip_and_a_failure(executor) -> None:
    flow = Flow("triggers").add("ok", ds.ok).add("skipper", ds.skipper).add("failer", ds.failer)
    for name, deps, trigger in [
        ("all_success_ok", ["ok"], "all_success"),
        ("all_success_skip", ["ok", "skipper"], "all_success"),
        ("all_success_fail", ["ok", "failer"], "all_success"),
        ("all_done", ["ok", "skipper", "failer"], "all_done"),
        ("none_failed_skip", ["ok", "skipper"], "none_failed"),
        ("none_failed_fail", ["ok", "failer"], "none_failed"),
    ]:
        flow.add(name, ds.show, depends_on=deps, trigger=trigger)
    run = flow.run(executor=executor, on_failure="continue", raise_on_failure=False, keep_outputs=True)
    assert statuses(run) == {
        "ok": "succeeded", "skipper": "skipped", "failer": "failed",
        "all_success_ok": "succeeded", "all_success_skip": "skipped", "all_success_fail": "skipped",
        "all_done": "succeeded", "none_failed_skip": "succeeded", "none_failed_fail": "skipped",
    }
    # steps that did not succeed pass None
    assert run["all_done"] == {"ok": "ok", "skipper": None, "failer": None}
    assert run["none_failed_skip"] == {"ok": "ok", "skipper": None}
    assert run["all_success_ok"] == {"ok": "ok"}
    assert run.status == "failed" and isinstance(run.error, ValueError)


def test_skips_cascade_by_the_trigger_rules(executor) -> None:
    # skipper -> after_skipper (all_success) -> chain_next (none_failed) -> chain_last (all_success)
    flow = Flow("cascade").add("skipper", ds.skipper).add("after_skipper", ds.after_skipper)
    flow.add("chain_next", ds.chain_next, trigger="none_failed").add("chain_last", ds.chain_last)
    run = flow.run(executor=executor)
    assert statuses(run) == {
        "skipper": "skipped", "after_skipper": "skipped", "chain_next": "succeeded", "chain_last": "succeeded",
    }
    assert run["chain_last"] == ("last", ("next", None))
    assert run.status == "succeeded"


def test_all_done_runs_after_a_skip_cascade(executor) -> None:
    flow = Flow("cascade").add("skipper", ds.skipper).add("after_skipper", ds.after_skipper)
    flow.add("chain_next", ds.chain_next, trigger="all_done")
    run = flow.run(executor=executor)
    assert run["chain_next"] == ("next", None) and run.status == "succeeded"


def test_skips_and_failures_under_continue(executor) -> None:
    flow = Flow("continue").add("ok", ds.ok).add("skipper", ds.skipper).add("failer", ds.failer)
    flow.add("after_ok", ds.after_ok).add("after_skipper", ds.after_skipper).add("after_failer", ds.after_failer)
    run = flow.run(executor=executor, on_failure="continue", raise_on_failure=False)
    assert statuses(run) == {
        "ok": "succeeded", "skipper": "skipped", "failer": "failed",
        "after_ok": "succeeded", "after_skipper": "skipped", "after_failer": "skipped",
    }
    assert run.status == "failed" and isinstance(run.error, ValueError)
    assert run.tasks["skipper"].reason == "nothing to do today"
    assert run.tasks["after_failer"].error is None
    with pytest.raises(RunFailed, match="'failer'") as info:
        run.raise_for_status()
    assert "skipper" not in str(info.value)


def test_skip_outside_a_step_is_a_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="inside a running step"):
        microdag.Skip("not in a step")
    Flow("once").add("ok", ds.ok).run()
    with pytest.raises(RuntimeError, match="inside a running step"):
        raise microdag.Skip()


# -- async steps ------------------------------------------------------------------------


def test_async_steps_run_on_every_backend(executor) -> None:
    flow = Flow("async").add("async_double", ds.async_double).add("sync_after", ds.sync_after)
    run = flow.run({"n": 21}, executor=executor, keep_outputs=True)
    assert run["sync_after"] == 43
    assert run["async_double"] == {"value": 42, "step": "async_double", "attempt": 1, "run_id": run.id}


def test_async_map_items_on_every_backend(executor) -> None:
    flow = Flow("async-map").add("items", ds.items).add("async_square", ds.async_square, map="items")
    run = flow.run({"n": 6}, executor=executor, max_workers=3)
    assert run["async_square"] == [(i * i, i) for i in range(6)]


def test_async_steps_retry_and_skip_on_every_backend(executor) -> None:
    flow = Flow("async-policies").add("async_flaky", ds.async_flaky, retries=1).add("async_skip", ds.async_skip)
    run = flow.run(executor=executor)
    assert run["async_flaky"] == 2 and run.tasks["async_flaky"].attempts == 2
    assert run.tasks["async_skip"].status == "skipped" and run.tasks["async_skip"].reason == "async skip"
    assert run.status == "succeeded"


def test_an_async_step_past_its_timeout_fails_with_timeout_error(executor) -> None:
    flow = Flow("async-timeout").add("async_nap", ds.async_nap, timeout=0.3)
    t0 = time.monotonic()
    run = within(30, lambda: flow.run({"seconds": 10}, executor=executor, raise_on_failure=False))
    assert time.monotonic() - t0 < 4
    assert isinstance(run.tasks["async_nap"].error, TimeoutError) and run.status == "failed"


def test_arun_runs_async_steps_in_the_callers_loop_and_sync_steps_on_threads() -> None:
    seen: dict[str, object] = {}

    async def fetch(n):
        seen["loop"] = asyncio.get_running_loop()
        await asyncio.sleep(0.01)
        return n + 1

    def parse(fetch):
        seen["thread"] = threading.get_ident()
        return fetch * 2

    flow = Flow("arun").add("fetch", fetch).add("parse", parse)

    async def main():
        return await flow.arun({"n": 1}, keep_outputs=True), asyncio.get_running_loop()

    run, loop = asyncio.run(main())
    assert run.status == "succeeded" and run.outputs == {"fetch": 2, "parse": 4}
    assert seen["loop"] is loop
    assert seen["thread"] != threading.get_ident()


def test_arun_runs_async_steps_concurrently_up_to_max_workers() -> None:
    state = {"now": 0, "peak": 0}

    async def sleepy(seconds):
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        try:
            await asyncio.sleep(seconds)
        finally:
            state["now"] -= 1
        return seconds

    flow = Flow("many")
    for i in range(20):
        flow.add(f"s{i}", sleepy)
    mapped = Flow("many-items").add("sleepy", sleepy, map="seconds")

    def timed(flow, inputs, workers):
        state["peak"] = 0
        t0 = time.monotonic()
        run = asyncio.run(flow.arun(inputs, max_workers=workers))
        assert run.status == "succeeded"
        return time.monotonic() - t0, state["peak"]

    elapsed, top = timed(flow, {"seconds": 0.1}, 20)
    assert elapsed < 1.0 and top > 1  # 20 * 0.1 s one after the other would be 2 s
    elapsed, top = timed(mapped, {"seconds": [0.1] * 20}, 20)
    assert elapsed < 1.0 and top > 1
    elapsed, top = timed(flow, {"seconds": 0.1}, 4)
    assert top <= 4
    elapsed, top = timed(flow, {"seconds": 0.1}, 1)
    assert elapsed > 1.5 and top == 1


def test_arun_cancels_an_async_step_past_its_timeout() -> None:
    cancelled: list[bool] = []

    async def stuck():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    flow = Flow("arun-timeout").add("stuck", stuck, timeout=0.2).add("ok", ds.ok)
    t0 = time.monotonic()
    run = asyncio.run(flow.arun(raise_on_failure=False, on_failure="continue"))
    assert time.monotonic() - t0 < 3
    assert isinstance(run.tasks["stuck"].error, TimeoutError) and cancelled == [True]
    assert statuses(run) == {"stuck": "failed", "ok": "succeeded"}


def test_arun_times_out_sync_steps_too() -> None:
    flow = Flow("arun-sync-timeout").add("nap_item", ds.nap_item, timeout=0.2)
    try:
        t0 = time.monotonic()
        with pytest.raises(RunFailed) as info:
            asyncio.run(flow.arun({"seconds": 10}))
        assert time.monotonic() - t0 < 3
    finally:
        ds.release()
    assert isinstance(info.value.run.tasks["nap_item"].error, TimeoutError)


def test_arun_supports_maps_batches_skips_triggers_retries_and_context() -> None:
    flow = Flow("arun-mix").add("items", ds.items)
    flow.add("async_square", ds.async_square, map="items")
    flow.add("batch_square", ds.batch_square, map="items", batch_size=3)
    flow.add("flaky_odd", ds.flaky_odd, map="items", retries=1)
    flow.add("async_flaky", ds.async_flaky, retries=1)
    flow.add("skipper", ds.skipper).add("after_skipper", ds.after_skipper)
    flow.add("chain_next", ds.chain_next, trigger="none_failed")
    flow.add("whoami", ds.whoami)
    run = asyncio.run(flow.arun({"n": 4}, keep_outputs=True))
    assert run.status == "succeeded"
    assert run["async_square"] == [(0, 0), (1, 1), (4, 2), (9, 3)]
    assert run["batch_square"] == [(0, 3, 0), (1, 3, 0), (4, 3, 0), (9, 1, 3)]
    assert run["flaky_odd"] == [(0, 1), (1, 2), (2, 1), (3, 2)]
    assert run["async_flaky"] == 2
    assert run["chain_next"] == ("next", None)
    assert run.tasks["skipper"].reason == "nothing to do today"
    facts = run["whoami"]
    assert (facts["run_id"], facts["step"], facts["attempt"], facts["item"]) == (run.id, "whoami", 1, None)


def test_arun_raises_run_failed_and_takes_the_run_keywords() -> None:
    flow = Flow("arun-fails").add("ok", ds.ok).add("failer", ds.failer).add("after_ok", ds.after_ok)
    with pytest.raises(RunFailed, match="'failer'") as info:
        asyncio.run(flow.arun())
    assert isinstance(info.value.__cause__, ValueError)
    run = asyncio.run(flow.arun(targets=["after_ok"]))
    assert run.outputs == {"after_ok": ("after", "ok")} and "failer" not in run.tasks


def test_cancelling_the_arun_task_cancels_its_steps_and_re_raises() -> None:
    cancelled: list[bool] = []
    after_ran: list[bool] = []
    events: list[microdag.Event] = []

    async def stuck():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    def after(stuck):
        after_ran.append(True)

    flow = Flow("arun-cancel").add("stuck", stuck).add("after", after)

    async def main():
        task = asyncio.create_task(flow.arun(hooks=[events.append]))
        await asyncio.sleep(0.2)
        task.cancel()
        t0 = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - t0

    assert asyncio.run(main()) < 2
    assert cancelled == [True] and after_ran == []
    assert events[-1].kind == "run_finished" and events[-1].status == "cancelled"


def test_arun_stops_when_its_cancel_event_is_set() -> None:
    event = threading.Event()
    after_ran: list[bool] = []

    def after(async_nap):
        after_ran.append(True)

    flow = Flow("arun-cancel-event").add("async_nap", ds.async_nap).add("after", after)

    async def main():
        asyncio.get_running_loop().call_later(0.2, event.set)
        with pytest.raises(RunFailed, match="cancelled") as info:
            await flow.arun({"seconds": 0.6}, cancel=event)
        return info.value.run

    try:
        run = asyncio.run(main())
    finally:
        ds.release()
    assert run.status == "cancelled" and run.tasks["after"].status == "cancelled"
    assert after_ran == []


# -- cancellation -------------------------------------------------------------------------


def test_a_cancel_event_stops_the_run(executor, tmp_path) -> None:
    event = threading.Event()
    flow = Flow("cancel").add("nap_then_mark", ds.nap_then_mark).add("mark_after", ds.mark_after)
    timer = threading.Timer(0.4, event.set)
    timer.start()
    try:
        with pytest.raises(RunFailed, match="cancelled") as info:
            within(30, lambda: flow.run(
                {"seconds": 1.0, "workdir": str(tmp_path)}, executor=executor, cancel=event, keep_outputs=True
            ))
    finally:
        timer.cancel()
    run = info.value.run
    assert run.status == "cancelled"
    assert run.tasks["mark_after"].status == "cancelled" and run.tasks["mark_after"].attempts == 0
    assert markers(tmp_path, "after") == []  # no new step started
    backend = name_of(executor)
    if backend in ("inline", "threads"):  # left to finish, result recorded
        assert run.tasks["nap_then_mark"].status == "succeeded" and run["nap_then_mark"] == 1.0
        assert len(markers(tmp_path, "done")) == 1
    elif backend == "processes":  # terminated
        assert run.tasks["nap_then_mark"].status == "cancelled"
        assert markers(tmp_path, "done") == []


def test_an_already_set_cancel_event_starts_nothing(executor, tmp_path) -> None:
    event = threading.Event()
    event.set()
    flow = Flow("cancel").add("nap_then_mark", ds.nap_then_mark).add("mark_after", ds.mark_after)
    run = flow.run({"seconds": 0.01, "workdir": str(tmp_path)}, executor=executor, cancel=event,
                   raise_on_failure=False)
    assert run.status == "cancelled"
    assert statuses(run) == {"nap_then_mark": "cancelled", "mark_after": "cancelled"}
    assert os.listdir(tmp_path) == []


def test_a_cancel_event_ends_steps_waiting_to_retry(executor) -> None:
    event = threading.Event()
    flow = Flow("cancel-retry").add("failer", ds.failer, retries=3, retry_delay=30)
    timer = threading.Timer(0.3, event.set)
    timer.start()
    t0 = time.monotonic()
    try:
        run = within(30, lambda: flow.run(executor=executor, cancel=event, raise_on_failure=False))
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 5
    assert run.status == "cancelled" and run.tasks["failer"].status == "cancelled"


def test_a_cancel_event_stops_a_map_between_items(executor, tmp_path) -> None:
    """Map items are tasks: once the event is set no new item starts."""
    event = threading.Event()
    flow = Flow("cancel-map").add("naps_then_mark", ds.naps_then_mark, map="naps")
    set_at: list[float] = []

    def cancel_once_started() -> None:
        eventually(lambda: markers(tmp_path, "start") != [], 30)
        time.sleep(0.15)
        set_at.append(time.monotonic())
        event.set()

    watcher = threading.Thread(target=cancel_once_started, daemon=True)
    watcher.start()
    run = within(60, lambda: flow.run(
        {"naps": [0.1] * 30, "workdir": str(tmp_path)}, executor=executor, max_workers=2,
        cancel=event, raise_on_failure=False,
    ))
    returned = time.monotonic()
    watcher.join()
    started = len(markers(tmp_path, "start"))
    assert run.status == "cancelled"
    assert started < 12, f"{started} of 30 items started although the run was cancelled"
    assert returned - set_at[0] < 1.5


def test_cancelling_terminates_steps_and_map_items_running_on_processes(tmp_path) -> None:
    event = threading.Event()
    flow = Flow("kill").add("nap_then_mark", ds.nap_then_mark).add("mark_after", ds.mark_after)
    flow.add("naps_then_mark", ds.naps_then_mark, map="naps")
    set_at: list[float] = []

    def cancel_when_all_started() -> None:
        eventually(lambda: len(markers(tmp_path, "start")) >= 3, 30)
        set_at.append(time.monotonic())
        event.set()

    watcher = threading.Thread(target=cancel_when_all_started, daemon=True)
    watcher.start()
    with pytest.raises(RunFailed):
        within(60, lambda: flow.run(
            {"seconds": 5, "naps": [5, 5, 5], "workdir": str(tmp_path)},
            executor="processes", max_workers=3, cancel=event,
        ))
    returned = time.monotonic()
    watcher.join()
    assert set_at and returned - set_at[0] < 2.5
    pids = {int(name.rsplit("-", 1)[1]) for name in markers(tmp_path, "start")}
    assert pids and os.getpid() not in pids
    assert eventually(lambda: all(gone(pid) for pid in pids))  # so no marker can come later
    assert markers(tmp_path, "done") == [] and markers(tmp_path, "after") == []
    assert multiprocessing.active_children() == []  # the pool is gone too


def test_keyboard_interrupt_in_a_step_cancels_the_run_and_is_re_raised(tmp_path) -> None:
    flow = Flow("ctrl-c").add("raise_interrupt", ds.raise_interrupt)
    flow.add("mark_after", ds.mark_after, inputs={"nap_then_mark": "raise_interrupt"})
    events: list[microdag.Event] = []
    with pytest.raises(KeyboardInterrupt):
        flow.run({"workdir": str(tmp_path)}, hooks=[events.append])
    assert os.listdir(tmp_path) == []
    assert events[-1].kind == "run_finished" and events[-1].status == "cancelled"
    assert "mark_after" not in {e.step for e in events if e.kind == "step_started"}


@pytest.mark.parametrize("backend", ["inline", "threads"])
def test_keyboard_interrupt_in_a_map_item_cancels_the_run_and_is_re_raised(backend, tmp_path) -> None:
    flow = Flow("ctrl-c-map").add("items", ds.items).add("interrupt_on_two", ds.interrupt_on_two, map="items")
    flow.add("mark_after", ds.mark_after, inputs={"nap_then_mark": "interrupt_on_two"})
    events: list[microdag.Event] = []
    with pytest.raises(KeyboardInterrupt):
        within(30, lambda: flow.run(
            {"n": 4, "workdir": str(tmp_path)}, executor=backend, hooks=[events.append]
        ))
    assert os.listdir(tmp_path) == []
    assert events[-1].kind == "run_finished" and events[-1].status == "cancelled"


SIGINT_SCRIPT = """\
import sys

sys.path[:0] = [{src!r}, {tests!r}]

import dynsteps
import microdag


def main(executor, workdir, seconds):
    flow = microdag.Flow("sigint")
    flow.add("a", dynsteps.nap_then_mark)
    flow.add("b", dynsteps.nap_then_mark, depends_on=["a"])
    flow.add("c", dynsteps.nap_then_mark, depends_on=["b"])
    finished = []

    def hook(event):
        if event.kind == "run_finished":
            finished.append(event.status)

    try:
        flow.run({{"seconds": seconds, "workdir": workdir}}, executor=executor, hooks=[hook])
    except KeyboardInterrupt:
        print("the run was", finished[-1] if finished else "not finished", flush=True)
        raise
    print("the run completed", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
"""


@pytest.mark.parametrize("backend", ["inline", "threads", "processes"])
def test_a_real_sigint_cancels_the_run_and_exits_with_keyboard_interrupt(backend, tmp_path) -> None:
    script = tmp_path / "sigint_flow.py"
    script.write_text(SIGINT_SCRIPT.format(src=SRC, tests=TESTS))
    workdir = tmp_path / "work"
    workdir.mkdir()
    seconds = 1.5  # per step; threads let the running one finish
    proc = subprocess.Popen(
        [sys.executable, str(script), backend, str(workdir), str(seconds)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert eventually(lambda: markers(workdir, "start") != [] or proc.poll() is not None, 30)
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.3)  # the run is under way (a race at thread start-up is tested below)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGINT, (out, err)
    assert "KeyboardInterrupt" in err
    assert "the run was cancelled" in out
    assert elapsed < 2 * seconds + 1  # b and c never ran
    started = {name.split("-")[1] for name in markers(workdir, "start")}
    assert started == {"a"}
    if backend == "threads":  # the running step was left to finish
        assert [name.split("-")[1] for name in markers(workdir, "done")] == ["a"]
    else:  # inline: interrupted in the step itself; processes: terminated
        assert markers(workdir, "done") == []


def test_ctrl_c_while_worker_threads_start_lets_the_running_step_finish(tmp_path, monkeypatch) -> None:
    """A real SIGINT that lands while run() is still starting its worker
    threads (one of them already runs a step): that step is left to finish
    and recorded, as for any Ctrl-C on threads."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    flow = Flow("ctrl-c-start-up").add("nap_then_mark", ds.nap_then_mark).add("mark_after", ds.mark_after)
    original = threading.Thread.start
    workers = [0]

    def start(self) -> None:
        original(self)
        if self.name.startswith("microdag worker"):
            workers[0] += 1
            if workers[0] == 1:  # the first worker is running: press Ctrl-C
                assert eventually(lambda: markers(tmp_path, "start") != [])
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(threading.Thread, "start", start)
    events: list[microdag.Event] = []
    try:
        with pytest.raises(KeyboardInterrupt):
            flow.run({"seconds": 0.5, "workdir": str(tmp_path)}, executor="threads", max_workers=3,
                     hooks=[events.append])
        done_when_run_returned = markers(tmp_path, "done")
        seen = [(e.kind, e.step, e.status) for e in events]
    finally:
        monkeypatch.undo()
        time.sleep(0.6)  # let an abandoned step end before the next test
        ds.release()
    assert ("run_finished", None, "cancelled") in seen
    assert markers(tmp_path, "after") == []
    assert done_when_run_returned != [], f"run() returned while its step was still running: {seen}"
    assert ("step_finished", "nap_then_mark", "succeeded") in seen


# -- run context -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["plain", "timeout", "hooks"])
def test_context_tells_a_step_about_itself(executor, path) -> None:
    options = {"timeout": 30} if path == "timeout" else {}
    hooks = [lambda event: None] if path == "hooks" else []
    flow = Flow("ctx").add("whoami", ds.whoami, **options).add("whoami_too", ds.whoami_too, **options)
    run = flow.run(executor=executor, keep_outputs=True, hooks=hooks)
    for name in ("whoami", "whoami_too"):
        facts = run[name]
        assert (facts["run_id"], facts["flow"], facts["step"], facts["attempt"], facts["item"]) == (
            run.id, "ctx", name, 1, None
        )
        assert (facts["pid"] != os.getpid()) == (executor == "processes")


def test_context_attempt_counts_retries(executor) -> None:
    flow = Flow("ctx-retry").add("attempt_flaky", ds.attempt_flaky, retries=2)
    run = flow.run(executor=executor)
    assert run["attempt_flaky"] == 2 and run.tasks["attempt_flaky"].attempts == 2


def test_steps_share_files_through_workdir_and_path_of(executor) -> None:
    flow = Flow("files").add("produce", ds.produce).add("consume", ds.consume)
    runs = [flow.run({"text": text}, executor=executor, keep_outputs=True) for text in ("hello", "world")]
    try:
        for run, text in zip(runs, ("hello", "world")):
            made, used = run["produce"], run["consume"]
            assert used["text"] == text
            assert made["run_dir"] == used["run_dir"] and made["workdir"] != used["workdir"]
            for workdir in (made["workdir"], used["workdir"]):
                assert os.path.isdir(workdir)
                assert os.path.commonpath([workdir, made["run_dir"]]) == made["run_dir"]
        assert runs[0]["produce"]["run_dir"] != runs[1]["produce"]["run_dir"]  # per run
    finally:
        for run in runs:
            shutil.rmtree(run["produce"]["run_dir"], ignore_errors=True)


def test_map_items_write_to_their_steps_workdir(executor) -> None:
    flow = Flow("item-files").add("items", ds.items).add("write_item", ds.write_item, map="items")
    flow.add("read_items", ds.read_items)
    run = flow.run({"n": 3}, executor=executor, max_workers=2, keep_outputs=True)
    try:
        assert run["read_items"] == {"0.txt": "0", "1.txt": "10", "2.txt": "20"}
        assert len(set(run["write_item"])) == 1  # one directory for all the items
    finally:
        shutil.rmtree(os.path.dirname(run["write_item"][0]), ignore_errors=True)


def test_context_outside_a_step_is_a_runtime_error() -> None:
    with pytest.raises(RuntimeError, match=r"microdag.context\(\) was called outside a running step"):
        microdag.context()
    Flow("once").add("whoami", ds.whoami).run()
    with pytest.raises(RuntimeError, match="outside a running step"):
        microdag.context()  # nothing left behind in the caller's thread


def test_threads_claim_map_units_and_count_them_atomically() -> None:
    """Worker threads switching as often as the interpreter allows must still
    claim every unit once and see the map end once."""
    import sys

    flow = Flow("claims").add("square", ds.square, map="items")
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(5):
            run = flow.run({"items": list(range(20_000))}, executor="threads", max_workers=4)
            assert run["square"] == [v * v for v in range(20_000)]
    finally:
        sys.setswitchinterval(before)
