"""Flows for the process pool's tests (``test_process_pool.py``), run in child processes.

Each ``case_*`` function runs something on ``executor="processes"`` (or on a
``ProcessPool`` directly) and returns what the parent test checks, as JSON.
The steps are module-level, so that worker processes load them.
"""

import functools
import multiprocessing
import os
import signal
import time

import microdag

#: How many times this process rebuilt a ``Counting`` step from a pickle.
LOADED = 0


def _load_counting() -> "Counting":
    global LOADED
    LOADED += 1
    return Counting()


class Counting:
    """A step that says how many times its process loaded it and how many
    times this object was called."""

    def __init__(self) -> None:
        self.calls = 0

    def __reduce__(self):
        return _load_counting, ()

    def __call__(self) -> "list[int]":
        self.calls += 1
        return [os.getpid(), LOADED, self.calls]


def case_function_sent_once(workers: int) -> "list[list[int]]":
    """Six steps sharing one callable object, on ``workers`` processes: per step
    ``[pid, loads in that process, calls of the object there]``."""
    step = Counting()
    flow = microdag.Flow("shared")
    for i in range(6):
        flow.add(f"s{i}", step)
    run = flow.run(executor="processes", max_workers=workers)
    return [run[f"s{i}"] for i in range(6)]


def _load_once_marked(marker: str) -> "Loads":
    """The step's function, but not the first time (the module it needs is "missing")."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise ImportError("the step's module is not there yet")
    return Loads()


class Loads:
    """A step whose function loads in a worker only once ``marker`` exists."""

    def __init__(self, marker: str = "") -> None:
        self.marker = marker

    def __reduce__(self):
        return _load_once_marked, (self.marker,)

    def __call__(self) -> str:
        return "loaded"


def case_reload_after_a_failed_load(workdir: str) -> "dict[str, object]":
    """A step whose function does not load on its first attempt, retried once."""
    flow = microdag.Flow("reload").add("late", Loads(os.path.join(workdir, "marker")), retries=1)
    run = flow.run(executor="processes", max_workers=1, raise_on_failure=False)
    task = run.tasks["late"]
    return {"status": task.status, "attempts": task.attempts, "output": run.outputs.get("late"),
            "error": repr(task.error)}


def one() -> int:
    return 1


def add_one(**deps: int) -> int:
    return 1 + sum(deps.values())


def case_workers_started(workers: int) -> "dict[str, int]":
    """The most worker processes alive when a step started: a chain of 5, and 5
    independent steps."""
    peaks = {}
    for shape in ("chain", "wide"):
        flow = microdag.Flow(shape)
        for i in range(5):
            flow.add(f"s{i}", add_one, depends_on=[f"s{i - 1}"] if shape == "chain" and i else [])
        seen = [0]

        def hook(event: microdag.Event) -> None:
            if event.kind == "step_started":
                seen[0] = max(seen[0], len(multiprocessing.active_children()))

        run = flow.run(executor="processes", max_workers=workers, hooks=[hook])
        assert run.status == "succeeded"
        peaks[shape] = seen[0]
    return peaks


def getpid() -> int:
    return os.getpid()


def case_idle_worker_died() -> "dict[str, object]":
    """A worker killed between two attempts: the second goes to a new one."""
    from microdag.pools._attempt import Attempt
    from microdag.pools.process import ProcessPool

    def result(pool: ProcessPool) -> "tuple[bool, object]":
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            out = pool.wait(1.0)
            if out:
                return out[0][1], out[0][2]
        raise AssertionError("no result")

    pool = ProcessPool(1)
    try:
        pool.submit(Attempt(0, -1, None, 1, "first", None, "run", "flow"), getpid, {})
        ok1, pid = result(pool)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until it is gone (its pipe closed)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.01)
        pool.submit(Attempt(1, -1, None, 1, "second", None, "run", "flow"), getpid, {})
        ok2, pid2 = result(pool)
    finally:
        pool.close()
    return {"ok": [ok1, ok2], "new process": pid2 != pid, "left": len(multiprocessing.active_children())}


def sized(n: int) -> bytes:
    return bytes(range(256)) * (n // 256) + b"x" * (n % 256)


def echo(value: bytes) -> bytes:
    return value


#: Output sizes around where the framing changes: one write or two (16 KiB),
#: one read or more (64 KiB), and much more than a pipe holds.
SIZES = [0, 1, 16_300, 16_384, 16_500, 65_400, 65_530, 65_536, 65_600, 300_000, 5_000_000]


def case_message_sizes() -> "list[bool]":
    """Outputs (worker to pool) and arguments (pool to worker) of every size in
    ``SIZES`` come through whole."""
    flow = microdag.Flow("sizes")
    for n in SIZES:
        flow.add(f"make{n}", functools.partial(sized, n))
        flow.add(f"echo{n}", echo, inputs={"value": f"make{n}"})
    run = flow.run(executor="processes", max_workers=2, keep_outputs=True)
    return [run[f"make{n}"] == sized(n) and run[f"echo{n}"] == sized(n) for n in SIZES]
