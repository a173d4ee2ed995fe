"""Timeouts that hold: a timed-out attempt is never recorded as succeeded, and
what a step started dies with it.

- a C call holding the GIL, and an ``async def`` step blocking its event loop,
  past their timeout: failed with ``TimeoutError`` (their result comes too
  late), never succeeded;
- a ``command`` step whose program started children (``sh -c "sleep N; true"``)
  past its timeout, or in a cancelled run: the whole process group is gone;
- a Python step on processes that started a child and hung: its worker and the
  child are gone;
- timeouts and retry delays that no backend can wait for are refused.
"""

import asyncio
import os
import threading
import time
import uuid

import pytest

import microdag
import timeoutsteps as ts
from microdag import Flow, FlowError


def alive_with(marker: str) -> "list[int]":
    """Pids of the processes whose command line holds ``marker``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != b"Z":
            found.append(int(pid))
    return found


def gone(marker: str, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while alive_with(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def unique_seconds() -> str:
    """A ``sleep`` argument no other process has: a marker in the process table."""
    return f"{60 + uuid.uuid4().int % 10_000 / 1000:.3f}"


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")


@pytest.mark.parametrize("executor", ["inline", "threads"])
def test_a_gil_holding_call_past_its_timeout_is_never_recorded_succeeded(executor) -> None:
    flow = Flow("gil")
    flow.add("hold", ts.hold_the_gil, timeout=0.05)
    started = time.perf_counter()
    probe = time.perf_counter()
    ts.hold_the_gil()
    alone = time.perf_counter() - probe
    if alone < 0.2:
        pytest.skip(f"the C call took only {alone:.3f} s here")
    run = flow.run(executor=executor, raise_on_failure=False)
    assert run.tasks["hold"].status == "failed"
    assert isinstance(run.tasks["hold"].error, TimeoutError)
    assert time.perf_counter() - started < 30


@pytest.mark.parametrize("executor", ["inline", "threads", "arun"])
def test_an_async_step_blocking_its_loop_past_its_timeout_fails(executor) -> None:
    flow = Flow("blocking")
    flow.add("block", ts.block_the_loop, timeout=0.1)
    if executor == "arun":
        run = asyncio.run(flow.arun(raise_on_failure=False))
    else:
        run = flow.run(executor=executor, raise_on_failure=False)
    assert run.tasks["block"].status == "failed"
    assert isinstance(run.tasks["block"].error, TimeoutError)


def command_flow(tmp_path, marker: str, timeout: "float | None") -> Flow:
    line = f'timeout = {timeout}\n' if timeout is not None else ""
    (tmp_path / "flow.toml").write_text(
        '[flow]\nname = "cmd"\n'
        f'[steps.slow]\ncommand = ["sh", "-c", "sleep {marker}; true"]\n{line}'
        '[steps.after]\ncommand = ["true"]\ndepends_on = ["slow"]\n'
    )
    return microdag.load_flow(str(tmp_path / "flow.toml"))


@needs_proc
@pytest.mark.parametrize("executor", ["inline", "threads", "processes"])
def test_a_command_past_its_timeout_is_killed_with_what_it_started(executor, tmp_path) -> None:
    marker = unique_seconds()
    flow = command_flow(tmp_path, marker, 0.5)
    started = time.perf_counter()
    run = flow.run(executor=executor, raise_on_failure=False)
    assert time.perf_counter() - started < 20
    assert run.tasks["slow"].status == "failed"
    assert isinstance(run.tasks["slow"].error, TimeoutError)
    assert gone(marker), f"sleep {marker} outlived its step"


@needs_proc
@pytest.mark.parametrize("executor", ["inline", "threads", "processes"])
def test_a_cancelled_run_kills_its_commands(executor, tmp_path) -> None:
    marker = unique_seconds()
    flow = command_flow(tmp_path, marker, None)
    cancel = threading.Event()
    threading.Thread(target=lambda: (gone_after_start(marker), cancel.set()), daemon=True).start()
    started = time.perf_counter()
    run = flow.run(executor=executor, cancel=cancel, raise_on_failure=False)
    assert time.perf_counter() - started < 20
    assert run.status == "cancelled"
    assert gone(marker), f"sleep {marker} outlived the cancelled run"


def gone_after_start(marker: str) -> None:
    """Wait until ``sleep MARKER`` runs."""
    deadline = time.monotonic() + 20
    while not alive_with(marker) and time.monotonic() < deadline:
        time.sleep(0.02)


@needs_proc
def test_a_process_steps_children_die_with_its_worker(tmp_path) -> None:
    marker = unique_seconds()
    flow = Flow("spawner")
    flow.add("spawn", ts.spawn_and_hang, timeout=1.0)
    run = flow.run({"marker": marker}, executor="processes", max_workers=1, raise_on_failure=False)
    assert run.tasks["spawn"].status == "failed"
    assert isinstance(run.tasks["spawn"].error, TimeoutError)
    assert gone(marker), f"the step's child (sleep {marker}) outlived its worker"


@pytest.mark.parametrize("option, value", [
    ("timeout", float("inf")), ("timeout", 1e9), ("timeout", float("nan")),
    ("retry_delay", float("inf")), ("retry_max_delay", 1e12),
])
def test_timeouts_and_delays_no_backend_can_wait_for_are_refused(option, value) -> None:
    flow = Flow("forever")
    with pytest.raises(FlowError, match=f"{option} must be .*at most 1,000,000 s"):
        flow.add("s", ts.quick, **{option: value})


def test_a_flow_file_refuses_a_timeout_past_the_longest(tmp_path) -> None:
    from microdag import load_flow

    path = tmp_path / "flow.toml"
    path.write_text('[flow]\nname = "f"\n[steps.s]\ncommand = ["true"]\ntimeout = 1e9\n')
    with pytest.raises(FlowError, match="timeout must be a number > 0 and at most 1,000,000 s"):
        load_flow(str(path))


def test_the_longest_timeout_is_accepted_and_runs_on_processes() -> None:
    flow = Flow("long")
    flow.add("s", ts.quick, timeout=1_000_000, retry_delay=1_000_000)
    run = flow.run(executor="processes", max_workers=1)
    assert run["s"] == 1
