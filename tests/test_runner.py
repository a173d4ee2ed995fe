"""The runner's state machine: one regression test per defect it once had, on
every backend (inline, threads, processes, a foreign executor, arun) and both
kernel twins.  Each flow runs in a child process with a timeout, so that a
hang fails its test (with a stack dump) instead of hanging the suite.
"""

import pytest

from support import run_child

BACKENDS = ["inline", "threads", "processes", "executor", "arun"]



def case(name: str, *args: object, twin: str, timeout: float = 30.0) -> object:
    call = f"runnersteps.case_{name}({', '.join(map(repr, args))})"
    return run_child(f"import json, runnersteps\nprint(json.dumps({call}))", timeout, twin)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_retry_due_while_every_worker_is_busy_runs_when_one_is_free(backend, twin) -> None:
    out = case("retry_while_busy", backend, twin=twin.TWIN)
    assert out == {"slow": ["succeeded", 1, None], "flaky": ["succeeded", 2, None]}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_map_items_retry_due_while_every_worker_is_busy_runs_too(backend, twin) -> None:
    out = case("unit_retry_while_busy", backend, twin=twin.TWIN)
    assert out["slow"] == ["succeeded", 1, None]
    assert out["m"] == ["succeeded", 2, None]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_abandoned_call_keeps_its_slot_and_the_next_attempts_get_their_whole_timeout(backend, twin) -> None:
    out = case("timeout_frees_no_slot", backend, twin=twin.TWIN)
    assert out == {
        "stuck": ["succeeded", 2, None],
        "after": ["succeeded", 1, None],
        "other": ["succeeded", 1, None],
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_map_steps_attempts_are_its_most_tried_items(backend, twin) -> None:
    out = case("map_attempts", backend, twin=twin.TWIN)
    assert out == {"bad": ["failed", 3, "ValueError"], "good": ["succeeded", 2, None]}


def test_threads_never_drop_a_step_made_ready_while_a_worker_looks(twin) -> None:
    rounds = 600
    counts = case("threads_race", rounds, twin=twin.TWIN, timeout=60.0)
    assert counts == {
        "layers:succeeded": 180 * rounds,
        "failures:failed": 60 * rounds,
        "failures:succeeded": 60 * rounds,
    }


class Blob:
    """An output that can be watched with a weak reference."""


def make_blob():
    return Blob()


def keep_blob(make_blob, x):
    return x


@pytest.mark.parametrize("backend", ["inline", "threads", "executor", "arun"])
def test_a_runs_outputs_are_freed_when_it_returns_not_at_the_next_gc(backend) -> None:
    import asyncio
    import gc
    import weakref
    from concurrent.futures import ThreadPoolExecutor

    import microdag

    blobs: list = []

    def source():
        blob = Blob()
        blobs.append(weakref.ref(blob))
        return blob

    flow = microdag.Flow("free")
    flow.add("source", source)
    flow.add("each", keep_blob, map="x", inputs={"make_blob": "source"})
    gc.disable()
    try:
        if backend == "arun":
            run = asyncio.run(flow.arun({"x": [1, 2, 3]}))
        elif backend == "executor":
            with ThreadPoolExecutor(2) as pool:
                run = flow.run({"x": [1, 2, 3]}, executor=pool)
        else:
            run = flow.run({"x": [1, 2, 3]}, executor=backend)
        assert run["each"] == [1, 2, 3]
        del run
        assert blobs[0]() is None, "the run's state outlived it (a reference cycle)"
    finally:
        gc.enable()


@pytest.mark.parametrize("backend", BACKENDS)
def test_system_exit_and_other_base_exceptions_fail_their_step(backend) -> None:
    """A step raising SystemExit (even in a worker process) or another
    BaseException fails that step; the run goes on and returns (a server that
    embeds microdag is not ended by a step)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import microdag
    import timeoutsteps as ts

    flow = microdag.Flow("escapes")
    flow.add("exits", ts.exits)
    flow.add("odd", ts.raises_odd)
    flow.add("fine", ts.quick)
    options = {"on_failure": "continue", "raise_on_failure": False}
    if backend == "arun":
        run = asyncio.run(flow.arun(**options))
    elif backend == "executor":
        with ThreadPoolExecutor(2) as pool:
            run = flow.run(executor=pool, **options)
    else:
        run = flow.run(executor=backend, **options)
    assert run.status == "failed"
    assert run.tasks["exits"].status == "failed" and type(run.tasks["exits"].error) is SystemExit
    assert run.tasks["odd"].status == "failed" and type(run.tasks["odd"].error).__name__ == "Odd"
    assert run["fine"] == 1
    with pytest.raises(microdag.RunFailed):
        flow.run(executor="inline" if backend in ("arun", "executor") else backend)
