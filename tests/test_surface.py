"""The Python surface a user meets first: what a failure looks like, running
inside an event loop, how many async steps ``arun`` overlaps."""

import asyncio
import os
import time
import traceback

import pytest

import microdag
from microdag import Flow, FlowError

# The package's own folder: a frame is microdag's when its file lies under it
# (not when its path merely contains "microdag", as a checkout's folder does).
PACKAGE_DIR = os.path.dirname(os.path.abspath(microdag.__file__)) + os.sep


def broken():
    raise ValueError("the step's own error")


def test_run_failed_prints_as_microdag_run_failed_with_the_steps_frames_first() -> None:
    flow = Flow("fails").add("broken", broken)
    with pytest.raises(microdag.RunFailed) as info:
        flow.run()
    text = "".join(traceback.format_exception(info.value))
    assert text.rstrip().splitlines()[-1].startswith("microdag.RunFailed: run ")
    cause, _, failed = text.partition("The above exception was the direct cause")
    assert 'in broken\n    raise ValueError("the step\'s own error")' in cause  # the step's frame, first
    assert "ValueError: the step's own error" in cause
    frames = traceback.extract_tb(info.value.__traceback__)
    internal = [f.filename for f in frames if os.path.abspath(f.filename).startswith(PACKAGE_DIR)]
    assert len(internal) <= 1, internal  # Flow.run, which raised it; no runner internals


def test_the_public_exceptions_print_and_pickle_by_their_public_names() -> None:
    import pickle

    from microdag.stores import StoreError

    for cls, where in ((microdag.FlowError, "microdag"), (microdag.CycleError, "microdag"),
                       (microdag.RunFailed, "microdag"), (StoreError, "microdag.stores")):
        assert cls.__module__ == where
    error = pickle.loads(pickle.dumps(microdag.FlowError("a", "b")))
    assert isinstance(error, microdag.FlowError) and error.problems == ["a", "b"]


async def fetch(n):
    await asyncio.sleep(0.3)
    return n


def test_run_inside_a_running_loop_with_async_steps_says_to_use_arun() -> None:
    flow = Flow("in-loop").add("fetch", fetch)

    async def main():
        return flow.run({"n": 1})

    with pytest.raises(FlowError, match=r"await flow\.arun"):
        asyncio.run(main())


def test_run_inside_a_running_loop_without_async_steps_just_runs() -> None:
    flow = Flow("sync-in-loop").add("double", lambda n: 2 * n)

    async def main():
        return flow.run({"n": 2})["double"]

    assert asyncio.run(main()) == 4


def test_arun_overlaps_many_async_steps_by_default() -> None:
    """Async steps are I/O: by default arun runs up to 100 at once (not cpus + 4)."""
    flow = Flow("fetches")
    for i in range(20):
        flow.add(f"f{i}", fetch)
    started = time.perf_counter()
    run = asyncio.run(flow.arun({"n": 1}))
    elapsed = time.perf_counter() - started
    assert run.status == "succeeded"
    assert elapsed < 0.3 * 2.5, f"20 fetches of 0.3 s took {elapsed:.2f} s: they did not overlap"


def test_arun_max_workers_still_caps_async_steps() -> None:
    flow = Flow("capped")
    for i in range(4):
        flow.add(f"f{i}", fetch)
    started = time.perf_counter()
    asyncio.run(flow.arun({"n": 1}, max_workers=2))
    assert time.perf_counter() - started >= 0.55  # two rounds of 0.3 s


def interrupt():
    raise KeyboardInterrupt


@pytest.mark.parametrize("executor", ["inline", "threads"])
def test_ctrl_c_leaves_every_step_that_did_not_run_cancelled(executor) -> None:
    """As documented: pending steps end cancelled, those that depended on the
    interrupted step too (they used to end skipped)."""
    flow = Flow("ctrl-c").add("interrupt", interrupt).add("after", lambda interrupt: 1)
    flow.add("other", lambda: 2, depends_on=["after"])
    from microdag.stores import MemoryStore

    store = MemoryStore()
    with pytest.raises(KeyboardInterrupt):
        flow.run(executor=executor, max_workers=1, store=store)
    (info,) = store.list_runs()
    statuses = {r.step: r.status for r in store.tasks(info.id)}
    assert info.status == "cancelled"
    assert statuses == {"interrupt": "cancelled", "after": "cancelled", "other": "cancelled"}
