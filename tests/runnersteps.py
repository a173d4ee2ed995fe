"""Flows for the runner's regression tests (``test_runner.py``), run in child processes.

Each ``case_*`` function builds a flow, runs it on the backend named (inline,
threads, processes, executor: a ``ThreadPoolExecutor`` of ``max_workers``,
arun: ``asyncio.run(flow.arun(...))``) and returns, per step, its status and
attempts (JSON), for the parent test to check.  Steps are module-level so
that worker processes load them.
"""

import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import microdag


def run_on(flow, backend, max_workers=1, **options):
    """Run ``flow`` on ``backend``; per step ``[status, attempts, error type]``."""
    options.setdefault("raise_on_failure", False)
    if backend == "arun":
        run = asyncio.run(flow.arun(max_workers=max_workers, **options))
    elif backend == "executor":
        with ThreadPoolExecutor(max_workers) as pool:
            run = flow.run(executor=pool, max_workers=max_workers, **options)
    elif backend == "inline":
        run = flow.run(**options)
    else:
        run = flow.run(executor=backend, max_workers=max_workers, **options)
    return {
        name: [task.status, task.attempts, type(task.error).__name__ if task.error else None]
        for name, task in run.tasks.items()
    }


def nap(seconds):
    time.sleep(seconds)
    return seconds


def fails_first(times=1):
    """Fail the first ``times`` attempts, then return the attempt number."""
    attempt = microdag.context().attempt
    if attempt <= times:
        raise ValueError(f"attempt {attempt} fails")
    return attempt


def item_fails_first(x, times=1):
    """Item 1 fails its first ``times`` attempts."""
    if x == 1 and microdag.context().attempt <= times:
        raise ValueError(f"item {x} attempt {microdag.context().attempt} fails")
    return x * 10


def hangs_first(seconds=0.6):
    """Attempt 1 outlives its timeout (``seconds``); later attempts return at once."""
    if microdag.context().attempt == 1:
        time.sleep(seconds)
    return "ok"


def quick():
    return "done"


def case_retry_while_busy(backend):
    """A retry comes due while the only worker is busy with a slow step
    (``flaky`` goes first, fails, and its retry is due while ``slow`` runs)."""
    flow = microdag.Flow("busy")
    flow.add("slow", nap)
    flow.add("flaky", fails_first, retries=1, retry_delay=0.05, priority=1)
    return run_on(flow, backend, 1, inputs={"seconds": 0.4})


def case_unit_retry_while_busy(backend):
    """The same with a map item that fails once."""
    flow = microdag.Flow("busy-map")
    flow.add("slow", nap)
    flow.add("items", three_items, priority=2)
    flow.add("m", item_fails_first, map="x", inputs={"x": "items"}, retries=1, retry_delay=0.05, priority=1)
    return run_on(flow, backend, 1, inputs={"seconds": 0.4})


def three_items():
    return [0, 1, 2]


def case_timeout_frees_no_slot(backend):
    """Attempt 1 of ``stuck`` hangs past its timeout; attempt 2 and ``after`` must
    each get their whole timeout, not spend it queued behind the abandoned call."""
    flow = microdag.Flow("stuck")
    flow.add("stuck", hangs_first, timeout=0.25, retries=1)
    flow.add("after", quick, depends_on=["stuck"], timeout=0.25)
    flow.add("other", quick, timeout=0.25)
    return run_on(flow, backend, 1)


def case_map_attempts(backend):
    """A map step's attempts are its most-tried item's: 3 for a map whose item 1
    failed three times (``retries=2``), 2 for one whose item 1 failed once."""
    out = {}
    for times, name in ((3, "bad"), (1, "good")):
        flow = microdag.Flow(f"map-{name}")
        flow.add("items", three_items)
        flow.add(name, item_fails_first, map="x", inputs={"x": "items"}, retries=2)
        out[name] = run_on(flow, backend, 2, inputs={"times": times})[name]
    return out


def add_up(**deps):
    return 1 + sum(v for v in deps.values() if isinstance(v, int))


def boom(**deps):
    raise ValueError("planned failure")


def race_flows():
    """Flows in which workers go idle while others make steps ready: narrow
    layers (each step after the whole layer above), and failures that make
    ``all_done`` steps ready."""
    layers = microdag.Flow("layers")
    for level in range(60):
        above = [f"n{level - 1}_{w}" for w in range(3)] if level else []
        for w in range(3):
            layers.add(f"n{level}_{w}", add_up, depends_on=above)
    failures = microdag.Flow("failures")
    for c in range(60):
        failures.add(f"f{c}", boom)
        failures.add(f"g{c}", add_up, depends_on=[f"f{c}"], trigger="all_done")
    return layers, failures


def case_threads_race(rounds):
    """Threads switching every microsecond: every run must end with every step settled."""
    sys.setswitchinterval(1e-6)
    counts = {}
    for flow in race_flows():
        for _ in range(rounds):
            run = flow.run(executor="threads", max_workers=4, on_failure="continue", raise_on_failure=False)
            for task in run.tasks.values():
                key = f"{flow.name}:{task.status}"
                counts[key] = counts.get(key, 0) + 1
    return counts
