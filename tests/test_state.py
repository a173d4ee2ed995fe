"""The runner's state machine driven by hand: no loop, no thread, no pool.

As h11's ``test_state.py`` drives its connection state machine, these tests
take steps from the kernel, begin attempts, settle them and read what the
machine decided (``runner/_state.py``); then the rules of calling a step once
(``runner/_call.py``) and the run's frozen options.
"""

import threading
import time

import pytest

import microdag
from microdag import FlowError, Skip
from microdag._compat import sched
from microdag._context import _FRAME, enter, leave
from microdag.runner import RunOptions
from microdag.runner._call import (
    Caller,
    arguments,
    batch_error,
    bind_inputs,
    call_with_timeout,
    kill_limit,
    unit_kwargs,
    units,
)
from microdag.runner._outcome import run_result
from microdag.runner._recorder import NullRecorder
from microdag.runner._state import Runner


def machine(flow: microdag.Flow, **options: object) -> Runner:
    """A runner of ``flow`` on a private kernel, reset and ready to be driven."""
    plan = flow._compiled()
    kernel = plan.graph._new_kernel()
    plan.configure(kernel)
    options.setdefault("keep", plan.sinks())  # as a run keeps by default
    runner = Runner(plan, kernel, "run-1", flow.name, recorder=NullRecorder(), **options)  # type: ignore[arg-type]
    kernel.reset(None)
    return runner


def take(runner: Runner) -> "list[int]":
    return runner.k.take(runner.k.ready)


def chain(**options: object) -> microdag.Flow:
    flow = microdag.Flow("chain")
    flow.add("a", lambda: 1, **options)
    flow.add("b", lambda a: a + 1)
    return flow


def state(runner: Runner, name: str) -> int:
    return runner.k.state(runner.names.index(name))


# -- begin and settle ----------------------------------------------------------------------


def test_begin_makes_the_first_attempt_and_settle_makes_the_next_step_ready() -> None:
    r = machine(chain(timeout=5))
    assert take(r) == [0]
    att = r.begin(0)
    assert att is not None
    assert (att.step, att.unit, att.item, att.number, att.name, att.timeout) == (0, -1, None, 1, "a", 5)
    assert (att.run_id, att.flow) == ("run-1", "chain")
    assert state(r, "a") == sched.RUNNING and r.k.ready == 0
    r.settle(att, True, 1)
    assert state(r, "a") == sched.SUCCEEDED and att.finished >= att.started > 0
    assert take(r) == [1]
    assert r.kwargs(1) == {"a": 1}
    att = r.begin(1)
    assert att is not None
    r.settle(att, True, 2)
    assert r.k.remaining == 0 and r.status() == "succeeded"
    assert run_result(r, {}).outputs == {"b": 2}


def test_a_failure_without_retries_fails_the_step_and_skips_or_cancels_what_follows() -> None:
    r = machine(chain(), on_failure="continue")
    take(r)
    att = r.begin(0)
    assert att is not None
    r.settle(att, False, ValueError("no"))
    assert state(r, "a") == sched.FAILED and state(r, "b") == sched.SKIPPED
    assert r.status() == "failed" and r.first_failure == 0 and not r.stopping
    assert "failed on attempt 1 of 1" in r.errors[0].__notes__[0]

    r = machine(chain())  # fail_fast: the run stops
    take(r)
    att = r.begin(0)
    assert att is not None
    r.failed(att, ValueError("no"))
    assert r.stopping and r.status() == "failed"


def test_fail_fast_cancels_the_pending_steps_of_other_branches() -> None:
    flow = microdag.Flow("two")
    flow.add("a", lambda: 1)
    flow.add("b", lambda: 2)
    flow.add("c", lambda b: b)
    r = machine(flow)
    assert sorted(take(r)) == [0, 1]
    att = r.begin(0)
    assert att is not None
    r.failed(att, RuntimeError("x"))
    # b is running: it belongs to its loop; c, pending behind it, is cancelled
    assert state(r, "c") == sched.CANCELLED and state(r, "b") == sched.RUNNING
    assert r.next_attempt() is None


def test_a_skip_skips_the_step_and_what_needs_it() -> None:
    r = machine(chain())
    take(r)
    att = r.begin(0)
    assert att is not None
    token = enter(r.frame())  # (Skip is raised inside a step)
    try:
        _FRAME.get().current[0] = 0  # type: ignore[union-attr]
        skip = Skip("nothing to do")
    finally:
        leave(token)
    r.settle(att, False, skip)
    assert state(r, "a") == sched.SKIPPED and state(r, "b") == sched.SKIPPED
    assert r.reasons == {0: "nothing to do"} and r.status() == "succeeded"


# -- retries ---------------------------------------------------------------------------------


def test_a_retry_waits_until_due_then_pop_due_makes_the_next_attempt() -> None:
    r = machine(chain(retries=1, retry_delay=0.05))
    take(r)
    att = r.begin(0)
    assert att is not None
    assert r.next_due() is None
    r.settle(att, False, ConnectionError("try again"))
    assert state(r, "a") == sched.RUNNING  # waiting for its retry
    due = r.next_due()
    assert due is not None and 0 < due <= 0.05
    assert r.pop_due() is None  # not yet: nothing is taken
    assert len(r.retries) == 1
    time.sleep(due)
    again = r.pop_due()
    assert again is not None and again.number == 2 and again.step == 0
    assert r.retries == [] and r.next_due() is None
    r.settle(again, True, 1)
    assert state(r, "a") == sched.SUCCEEDED and r.attempts[0] == 2


def test_the_last_allowed_attempt_fails_the_step() -> None:
    r = machine(chain(retries=1))
    take(r)
    first = r.begin(0)
    assert first is not None
    r.settle(first, False, ConnectionError("1"))
    second = r.pop_due()
    assert second is not None
    r.settle(second, False, ConnectionError("2"))
    assert state(r, "a") == sched.FAILED and str(r.errors[0]) == "2"
    assert "failed on attempt 2 of 2" in r.errors[0].__notes__[0]


def test_next_attempt_hands_a_pool_due_retries_first_then_ready_steps() -> None:
    flow = microdag.Flow("pool")
    flow.add("a", lambda: 1, retries=1)
    flow.add("b", lambda: 2)
    r = machine(flow)
    first = r.next_attempt()
    assert first is not None and first.name in ("a", "b")
    if first.name == "b":
        first = r.next_attempt()
    assert first is not None and first.name == "a"
    r.settle(first, False, ConnectionError("x"))
    retry = r.next_attempt()
    assert retry is not None and (retry.name, retry.number) == ("a", 2)


def test_stop_cancels_waiting_retries_and_pending_steps_once() -> None:
    r = machine(chain(retries=3, retry_delay=60))
    take(r)
    att = r.begin(0)
    assert att is not None
    r.settle(att, False, ConnectionError("x"))
    assert sorted(r.stop()) == [0, 1]
    assert r.stopping and r.retries == [] and 0 in r.cancelled
    assert state(r, "a") == sched.FAILED and state(r, "b") == sched.CANCELLED
    assert r.stop() == []  # stopping twice is stopping once
    assert r.next_attempt() is None


# -- maps ------------------------------------------------------------------------------------


def test_a_map_step_expands_into_unit_attempts_and_settles_with_their_results_in_order() -> None:
    flow = microdag.Flow("map")
    flow.add("xs", lambda: [1, 2, 3])
    flow.add("sq", lambda xs: xs * xs, map="xs")
    r = machine(flow)
    att = r.next_attempt()
    assert att is not None
    r.settle(att, True, [1, 2, 3])
    units_ = [r.next_attempt() for _ in range(3)]
    assert [(u.unit, u.item, u.number) for u in units_ if u] == [(0, 0, 1), (1, 1, 1), (2, 2, 1)]
    assert r.next_attempt() is None
    assert [r.call_args(u)[1] for u in units_ if u] == [{"xs": 1}, {"xs": 2}, {"xs": 3}]
    for u in reversed(units_):
        assert u is not None
        r.settle(u, True, u.item * 10)  # type: ignore[operator]
    assert state(r, "sq") == sched.SUCCEEDED
    assert run_result(r, {}).outputs == {"sq": [0, 10, 20]}


def test_a_batch_that_returns_the_wrong_count_fails_its_item_without_a_retry() -> None:
    flow = microdag.Flow("batch")
    flow.add("xs", lambda: [1, 2, 3])
    flow.add("sq", lambda xs: xs, map="xs", batch_size=2, retries=2)
    r = machine(flow, on_failure="continue")
    att = r.next_attempt()
    assert att is not None
    r.settle(att, True, [1, 2, 3])
    one, two = r.next_attempt(), r.next_attempt()
    assert one is not None and two is not None and (one.item, two.item) == (0, 2)
    r.settle(one, True, [1])
    r.settle(two, True, [3])
    assert state(r, "sq") == sched.FAILED and r.retries == []
    assert "the batch of items 0 to 1 returned 1 results for its 2 items" in str(r.errors[1])


def test_a_map_over_a_value_that_is_not_iterable_fails_at_once() -> None:
    flow = microdag.Flow("bad map")
    flow.add("xs", lambda: 3)
    flow.add("sq", lambda xs: xs, map="xs")
    r = machine(flow, on_failure="continue")
    att = r.next_attempt()
    assert att is not None
    r.settle(att, True, 3)
    assert r.next_attempt() is None
    assert state(r, "sq") == sched.FAILED and isinstance(r.errors[1], TypeError)
    assert "maps over parameter 'xs', but its value is not iterable (int)" in str(r.errors[1])


# -- what the loops say: cancel, interrupt, share ----------------------------------------------


def test_cancel_and_interrupt_halt_through_the_function_given_and_do_no_io_here() -> None:
    halts: list[int] = []
    cancel = threading.Event()
    r = machine(chain(), cancel=cancel, halt=lambda: halts.append(1))
    assert not r.check_cancel() and halts == []
    cancel.set()
    assert r.check_cancel() and halts == [1] and r.stopping
    assert r.check_cancel() and halts == [1]  # once
    assert r.status() == "cancelled"

    r = machine(chain(), halt=lambda: halts.append(2))
    first, second = KeyboardInterrupt(), KeyboardInterrupt()
    r.interrupted(first)
    r.interrupted(second)
    assert r.interrupt is first and halts == [1, 2, 2] and r.status() == "cancelled"


def test_a_step_interrupted_by_ctrl_c_stops_the_run() -> None:
    halts: list[int] = []
    r = machine(chain(retries=3), halt=lambda: halts.append(1))
    take(r)
    att = r.begin(0)
    assert att is not None
    exc = KeyboardInterrupt()
    r.settle(att, False, exc)
    assert r.interrupt is exc and halts == [1] and r.retries == []
    assert 0 in r.cancelled and state(r, "b") == sched.CANCELLED


def test_share_gives_the_runner_a_real_lock_and_a_wake_up() -> None:
    woken: list[int] = []
    r = machine(chain())
    with r.lock:  # a no-op lock until several threads call in
        pass
    r.share(2, lambda: woken.append(1))
    assert r.workers == 2 and hasattr(r.lock, "acquire")
    take(r)
    att = r.begin(0)
    assert att is not None
    r.settle(att, True, 1)
    assert woken == [1]


def test_inputs_bound_at_construction_are_passed_to_the_step() -> None:
    flow = microdag.Flow("inputs")
    flow.add("a", lambda x, y=2: x + y)
    plan = flow._compiled()
    names, values, missing = bind_inputs(plan, 0, {"x": 1})
    assert (names, values, missing) == (("x",), (1,), [])
    r = machine(flow, bound={0: (names, values)})
    take(r)
    assert r.kwargs(0) == {"x": 1}
    assert bind_inputs(plan, 0, {}, defaults=True) == (("y",), (2,), [("x", "x")])


# -- calling a step once -------------------------------------------------------------------------


def test_arguments_of_a_step_called_alone_say_every_missing_value() -> None:
    flow = microdag.Flow("alone")
    flow.add("a", lambda: 1)
    flow.add("b", lambda a, x: a + x)
    plan = flow._compiled()
    assert arguments(plan, 1, {"a": 1, "x": 2}) == {"a": 1, "x": 2}
    with pytest.raises(FlowError) as caught:
        arguments(plan, 1, {})
    assert caught.value.problems == [
        "step 'b' needs the output of step 'a', which was not given",
        "step 'b' needs input 'x' (parameter 'x'), which was not given",
    ]


def test_the_caller_makes_attempts_with_the_steps_timeout() -> None:
    plan = chain(timeout=3)._compiled()
    att = Caller(plan, "r", "f", "/tmp/run", True).attempt(0, 2, 1.0, 2.0, unit=4, item=8)
    assert (att.step, att.unit, att.item, att.number, att.name, att.timeout) == (0, 4, 8, 2, "a", 3)
    assert (att.run_id, att.flow, att.run_dir, att.capture, att.started, att.finished) == (
        "r", "f", "/tmp/run", True, 1.0, 2.0)
    assert Caller(plan, "r", "f").attempt(1, 1).timeout is None


def test_map_units_and_batch_checks() -> None:
    assert units("m", "xs", range(5), None) == [0, 1, 2, 3, 4]
    assert units("m", "xs", range(5), 2) == [[0, 1], [2, 3], [4]]
    with pytest.raises(TypeError, match="step 'm' maps over parameter 'xs', but its value is not iterable"):
        units("m", "xs", 3, None)
    assert unit_kwargs(("xs", "k"), ([1, 2], 7), 0, 2) == {"xs": 2, "k": 7}
    assert batch_error("m", 4, 2, [1, 2]) is None
    assert str(batch_error("m", 4, 2, 5)) == (
        "step 'm': the batch of items 4 to 5 returned a int for its 2 items (a batch must return one result per item)")


def test_call_with_timeout_abandons_a_late_call() -> None:
    plan = chain(timeout=0.05)._compiled()
    att = Caller(plan, "r", "f").attempt(0, 1)
    assert call_with_timeout(lambda x: x + 1, {"x": 1}, att) == 2
    with pytest.raises(ValueError, match="own"):
        call_with_timeout(lambda: (_ for _ in ()).throw(ValueError("own")), {}, att)
    with pytest.raises(TimeoutError, match=r"step 'a' timed out after 0.05 s \(the call was abandoned\)"):
        call_with_timeout(lambda: time.sleep(1), {}, att)
    assert kill_limit(None) is None and kill_limit(10) == 9.5 and kill_limit(1) == 0.9


def test_run_options_are_frozen_and_replace_makes_a_copy() -> None:
    options = RunOptions(executor="threads", max_workers=2, targets=None, on_failure="fail_fast", hooks=(),
                         keep_outputs=False, cancel=None, store=None, run_id=None, resume=False, force=False)
    with pytest.raises(AttributeError, match="frozen"):
        options.executor = "inline"  # type: ignore[misc]
    copy = options.replace(executor="inline")
    assert (copy.executor, copy.max_workers, options.executor) == ("inline", 2, "threads")
    assert "max_workers=2" in repr(copy)
