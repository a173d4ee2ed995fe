"""The pool contract: what every pool does, as ``test_stores.py`` holds every store to its contract.

A pool (``microdag.pools``: worker processes, any ``concurrent.futures``
executor, the event loop of ``Flow.arun``, a Dask cluster) runs attempts for
the runner's dispatch loop and reports each one back once with its outcome
(the ``Pool`` protocol in ``microdag/pools/__init__.py``).  The protocol is
the package's own and may change, so the suite holds each pool to it through
the public API: ``Flow.run(executor=...)`` and ``Flow.arun()``.  Every pool:

- runs each attempt (a step, a map item, an ``async def`` step) and reports
  its outcome: the outputs are those of an inline run;
- runs no more calls at once than it has workers;
- keeps a failing step's own exception (its type, its fields, as the run's
  error and ``RunFailed``'s cause);
- reports an attempt past its timeout as a ``TimeoutError`` at its deadline,
  and a call it gave up on never delays the next attempt's own timeout;
- answers ``microdag.context()`` in the worker (run, step, attempt, item) and
  retries an attempt as a new one;
- gives back what a step printed, per attempt, to a store;
- stops at a cancel (nothing new starts) and leaves no worker behind, and
  leaves an executor or cluster of the caller's usable;
- where the workers are processes: fails the attempt of a worker that dies,
  and a step whose arguments do not pickle, without hanging.

Each pool has ``WORKERS`` workers.  The Dask cluster here is one worker of
threads in this process (quick to start, and the steps it abandons end at
teardown); ``test_dask.py`` runs a cluster of worker processes in a child.
No test reaches into ``microdag.pools`` itself.
"""

import asyncio
import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

import flowsteps
import microdag
import poolsteps as ps
from flowsteps import within
from microdag import Flow, RunFailed


class PoolCase:
    """One pool as the public API reaches it.

    ``isolated``: its workers are processes of their own (a worker may die,
    what a step gets is pickled); ``executor``: what ``Flow.run`` is given
    (``None``: ``Flow.arun`` on a new event loop).
    """

    def __init__(self, name: str, executor: object, isolated: bool, close=None) -> None:
        self.name = name
        self.executor = executor
        self.isolated = isolated
        self._close = close

    def run(self, flow: Flow, inputs=None, **options) -> microdag.Run:
        """``flow``'s run on this pool (``Flow.run``, or ``Flow.arun`` for the event loop)."""
        if self.executor is None:
            return asyncio.run(flow.arun(inputs, **options))
        return flow.run(inputs, executor=self.executor, **options)

    def close(self) -> None:
        flowsteps.release_sleepers()  # ends calls abandoned on threads of this process
        if self._close is not None:
            self._close()


POOLS = ["processes", "executor-threads", "executor-processes", "asyncio", "dask"]
WORKERS = 2  # every pool's size, so that "at most this many at once" means the same everywhere


@pytest.fixture(params=POOLS)
def pool(request: pytest.FixtureRequest):
    """Each pool, with ``WORKERS`` workers; what it started ends at teardown."""
    name = request.param
    if name == "processes":
        case = PoolCase(name, "processes", isolated=True)
    elif name == "executor-threads":
        threads = ThreadPoolExecutor(max_workers=WORKERS)
        case = PoolCase(name, threads, isolated=False, close=threads.shutdown)
    elif name == "executor-processes":
        processes = ProcessPoolExecutor(max_workers=WORKERS, mp_context=multiprocessing.get_context("forkserver"))
        case = PoolCase(name, processes, isolated=True, close=processes.shutdown)
    elif name == "asyncio":
        case = PoolCase(name, None, isolated=False)
    else:
        case = PoolCase(name, request.getfixturevalue("dask_client"), isolated=False)
    yield case
    case.close()
    if name == "processes":
        assert multiprocessing.active_children() == []  # the run's workers are gone


def statuses(run: microdag.Run) -> dict:
    return {name: task.status for name, task in run.tasks.items()}


# -- outcomes ------------------------------------------------------------------------------


def shapes() -> Flow:
    """A step, its dependents, an ``async def`` step, a map step, and their join."""
    flow = Flow("shapes").add("number", ps.number).add("double", ps.double).add("later", ps.later)
    flow.add("square", ps.square, map="items")
    return flow.add("both", ps.both)


def test_each_attempt_runs_and_reports_its_outcome(pool) -> None:
    inputs = {"x": 4, "items": [1, 2, 3]}
    expected = shapes().run(inputs, keep_outputs=True)
    run = within(60, lambda: pool.run(shapes(), inputs, keep_outputs=True, max_workers=WORKERS))
    assert run.status == "succeeded"
    assert run.outputs == expected.outputs
    assert run["both"] == [8, 5, [1, 4, 9]]
    assert {task.attempts for task in run.tasks.values()} == {1}


def test_no_more_calls_at_once_than_workers(pool) -> None:
    flow = Flow("wide")
    for n in range(6):
        flow.add(f"span{n}", ps.span)
    run = within(60, lambda: pool.run(flow, {"seconds": 0.3}, max_workers=WORKERS))
    spans = list(run.outputs.values())
    at_once = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert at_once <= WORKERS, spans


def test_a_failing_steps_own_exception_is_kept(pool) -> None:
    flow = Flow("refusing").add("refuse", ps.refuse).add("after", ps.after).add("quick", ps.quick)
    with pytest.raises(RunFailed) as info:
        within(60, lambda: pool.run(flow, {"x": 3}, on_failure="continue", max_workers=WORKERS))
    run = info.value.run
    assert statuses(run) == {"refuse": "failed", "after": "skipped", "quick": "succeeded"}
    error = run.tasks["refuse"].error
    assert type(error) is ps.Refused and error.code == 7 and str(error) == "refused 3 (code 7)"
    assert info.value.__cause__ is error and run.error is error
    assert any("'refuse'" in note for note in getattr(error, "__notes__", []))


# -- timeouts --------------------------------------------------------------------------------


def test_an_attempt_past_its_timeout_is_reported_at_its_deadline(pool) -> None:
    flow = Flow("late").add("slow", ps.slow, timeout=0.3).add("after", ps.after, inputs={"refuse": "slow"})
    flow.add("aslow", ps.aslow, timeout=0.3).add("quick", ps.quick)
    reported: dict = {}

    def on_event(event: microdag.Event) -> None:
        if event.kind == "step_finished":
            reported[event.step] = time.monotonic() - started

    started = time.monotonic()
    run = within(60, lambda: pool.run(flow, {"seconds": 3}, on_failure="continue", raise_on_failure=False,
                                      max_workers=WORKERS, hooks=[on_event]))
    assert statuses(run) == {"slow": "failed", "after": "skipped", "aslow": "failed", "quick": "succeeded"}
    for late in ("slow", "aslow"):
        assert isinstance(run.tasks[late].error, TimeoutError) and "0.3 s" in str(run.tasks[late].error)
        assert run.tasks[late].attempts == 1
        assert reported[late] < 2.5, reported  # at its deadline, not when the call ended (3 s)


def test_a_call_given_up_on_does_not_eat_the_next_attempts_timeout(pool) -> None:
    # One worker: "slow" is given up on at 0.2 s while its call sleeps on
    # (where it cannot be stopped); "quick" starts once a worker is free, and
    # its own timeout counts from then, not from when it was ready.
    flow = Flow("queued").add("slow", ps.slow, timeout=0.2)
    flow.add("quick", ps.quick, depends_on=["slow"], trigger="all_done", timeout=0.5)
    run = within(60, lambda: pool.run(flow, {"seconds": 1.0}, max_workers=1, on_failure="continue",
                                      raise_on_failure=False))
    assert statuses(run) == {"slow": "failed", "quick": "succeeded"}
    assert isinstance(run.tasks["slow"].error, TimeoutError)


# -- attempts ------------------------------------------------------------------------------


def test_each_attempt_knows_its_context_and_a_retry_is_a_new_attempt(pool) -> None:
    flow = Flow("context").add("where", ps.where, retries=2).add("item_where", ps.item_where, map="items",
                                                                   retries=1)
    run = within(60, lambda: pool.run(flow, {"items": ["a", "b"]}, max_workers=WORKERS))
    assert run["where"] == {"run_id": run.id, "flow": "context", "step": "where", "attempt": 3}
    assert run.tasks["where"].attempts == 3
    assert run["item_where"] == [["item_where", 0, 1, "a"], ["item_where", 1, 1, "b"]]


def test_what_a_step_prints_is_given_back_to_the_store(pool) -> None:
    store = microdag.stores.MemoryStore()
    run = within(60, lambda: pool.run(Flow("talking").add("talk", ps.talk), store=store))
    assert run["talk"] == "talked"
    assert "said on stdout\n" in store.logs(run.id, "talk")


# -- stopping --------------------------------------------------------------------------------


def test_a_cancel_starts_nothing_new(pool) -> None:
    cancel = threading.Event()

    def on_event(event: microdag.Event) -> None:
        if event.kind == "step_started" and event.step == "span0":
            cancel.set()

    flow = Flow("cancelled").add("span0", ps.span).add("quick", ps.quick, depends_on=["span0"])
    run = within(60, lambda: pool.run(flow, {"seconds": 0.3}, cancel=cancel, hooks=[on_event],
                                      raise_on_failure=False))
    assert run.status == "cancelled"
    assert run.tasks["quick"].status == "cancelled" and run.tasks["quick"].attempts == 0


def test_an_executor_or_cluster_of_the_callers_stays_usable(pool) -> None:
    flow = Flow("twice").add("number", ps.number).add("double", ps.double)
    for x in (1, 2):
        assert within(60, lambda: pool.run(flow, {"x": x}))["double"] == 2 * x
    if not isinstance(pool.executor, (str, type(None))):
        assert pool.executor.submit(ps.number, 5).result(timeout=30) == 5


# -- workers of their own --------------------------------------------------------------------


def test_a_worker_that_dies_fails_its_attempt_without_a_hang(pool) -> None:
    if not pool.isolated:
        pytest.skip("the workers are this process's threads")
    flow = Flow("dying").add("die", ps.die)
    run = within(60, lambda: pool.run(flow, raise_on_failure=False))
    assert run.status == "failed" and run.tasks["die"].status == "failed"
    assert run.tasks["die"].error is not None
    if pool.name == "processes":  # the pool sees the end of the worker's pipe
        assert isinstance(run.tasks["die"].error, ChildProcessError)


def test_arguments_that_do_not_pickle_fail_the_step_without_a_hang(pool) -> None:
    if not pool.isolated:
        pytest.skip("nothing is pickled on the way to this pool's workers")
    flow = Flow("unpicklable").add("call", ps.call).add("survivor", ps.survivor)
    run = within(60, lambda: pool.run(flow, {"fn": lambda: 1}, on_failure="continue", raise_on_failure=False))
    assert statuses(run) == {"call": "failed", "survivor": "succeeded"}
    assert "pickle" in repr(run.tasks["call"].error).lower() + "".join(
        getattr(run.tasks["call"].error, "__notes__", [])).lower()
