"""Module-level steps and flows for ``test_durable.py``.

Worker processes unpickle step functions by name and the crash tests run
this module as a script (``python -m durablesteps``), so everything those
runs need lives here.  Every step appends its name to ``<marks>/<step>`` (a
flow input), so a test counts how often each step really ran; which step is
running comes from ``microdag.context()``.
"""

import os
import random
import sys
import time
import zlib

import microdag
from microdag import Flow


def mark(marks: str, name: "str | None" = None) -> None:
    """Note one run of the current step (one ``write`` of one line)."""
    name = name or microdag.context().step
    fd = os.open(os.path.join(marks, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (name + "\n").encode())
    finally:
        os.close(fd)


def runs_of(marks: str, name: str) -> int:
    """How many times step ``name`` ran with this marks directory."""
    try:
        with open(os.path.join(marks, name), "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def first_time(marks: str, what: str) -> bool:
    """True the first time it is asked about ``what`` in this marks directory."""
    try:
        os.close(os.open(os.path.join(marks, what + ".flag"), os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


# -- a small flow: one branch fails, one is independent ------------------------------
#
#   src -> left -> flaky -> join
#     \--> right ----------/
#   solo (independent)


def src(x, marks):
    mark(marks)
    return x


def left(src, marks):
    mark(marks)
    return {"left": src + 1}


def right(src, marks):
    mark(marks)
    return [src, src * 2]


def flaky(left, marks):
    """Fails on the first run in this marks directory, succeeds afterwards."""
    mark(marks)
    if first_time(marks, "flaky"):
        raise RuntimeError("flaky fails on its first run")
    return left["left"] * 10


def join(flaky, right, marks):
    mark(marks)
    return {"sum": flaky + sum(right), "parts": [flaky, right], "note": "naïve ✓"}


def solo(x, marks):
    mark(marks)
    return x - 1


def small_flow(name: str = "durable-small") -> Flow:
    flow = Flow(name)
    for fn in (src, left, right, flaky, join, solo):
        flow.add(fn.__name__, fn)
    return flow


# -- recording: success, retry, failure, skipped/cancelled ----------------------------


def base(x):
    return {"x": x, "items": [x, x + 1], "none": None, "ok": True, "f": 0.5}


def retried(base):
    """Fails on attempt 1, succeeds on attempt 2."""
    if microdag.context().attempt == 1:
        raise ConnectionError("transient, attempt 1")
    return base["x"] * 3


def broken(base):
    raise ValueError(f"broken step saw x={base['x']}")


def after_broken(broken):
    return broken


def after_retried(retried):
    return retried + 1


def record_flow() -> Flow:
    flow = Flow("durable-record")
    flow.add("base", base)
    flow.add("retried", retried, retries=1)
    flow.add("broken", broken)
    flow.add("after_broken", after_broken)
    flow.add("after_retried", after_retried)
    return flow


def fail_first(marks):
    """Fails at once (every run): the highest priority step of ``fail_first_flow``."""
    mark(marks)
    raise ValueError("fail_first always fails")


def later(marks):
    mark(marks)
    return "later"


def fail_first_flow() -> Flow:
    """``fail_first`` runs before anything else; with one worker and fail_fast,
    ``later`` and ``after`` end cancelled."""
    flow = Flow("durable-fail-first")
    flow.add("fail_first", fail_first, priority=10)
    flow.add("later", later)
    flow.add("after", after_later, priority=-10)
    return flow


def after_later(later, marks):
    mark(marks)
    return later + "!"


# -- values the JSON codec refuses ----------------------------------------------------


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __repr__(self) -> str:
        return f"Point({self.x}, {self.y})"


def make_tuple():
    return (1, 2)


def make_set():
    return {1, 2}


def make_point():
    return Point(1, 2)


def use_value(value):
    return repr(value)


# -- files in the run directory --------------------------------------------------------


def writer(marks):
    mark(marks)
    ctx = microdag.context()
    path = os.path.join(ctx.workdir, "data.txt")
    with open(path, "w") as f:
        f.write("written by writer")
    return ctx.run_dir


def reader(writer, marks):
    mark(marks)
    ctx = microdag.context()
    if first_time(marks, "reader"):
        raise RuntimeError("reader fails on its first run")
    with open(os.path.join(ctx.path_of("writer"), "data.txt")) as f:
        return [f.read(), ctx.run_dir]


def files_flow() -> Flow:
    return Flow("durable-files").add("writer", writer).add("reader", reader)


# -- big outputs, map steps, interruptions -----------------------------------------


def big(marks):
    """An output well over the stores' 64 KiB inline limit."""
    mark(marks)
    return {"rows": [f"row {i:06d}" for i in range(10_000)]}


def count_rows(big, marks):
    mark(marks)
    if first_time(marks, "count_rows"):
        raise RuntimeError("count_rows fails on its first run")
    return len(big["rows"])


def square(item, marks):
    mark(marks, f"square-{item}")
    return item * item


def total(square, marks):
    mark(marks)
    if first_time(marks, "total"):
        raise RuntimeError("total fails on its first run")
    return sum(square)


def map_flow() -> Flow:
    return Flow("durable-map").add("square", square, map="item").add("total", total)


def picky(item, marks):
    """Fails for item 3 on its first run in this marks directory."""
    mark(marks, f"picky-{item}")
    if item == 3 and first_time(marks, "picky-3"):
        raise RuntimeError("item 3 fails on its first run")
    return item * 10


def picky_batch(item, marks):
    """``picky`` for a batch of items (``item`` is the batch)."""
    for one in item:
        mark(marks, f"picky-{one}")
    if 3 in item and first_time(marks, "picky-3"):
        raise RuntimeError("the batch with item 3 fails on its first run")
    return [one * 10 for one in item]


def items_flow(batch_size: "int | None" = None) -> Flow:
    fn = picky if batch_size is None else picky_batch
    return Flow("durable-items").add("picky", fn, map="item", batch_size=batch_size)


def interrupted(src, marks):
    """Raises KeyboardInterrupt (a Ctrl-C) on its first run."""
    mark(marks)
    if first_time(marks, "interrupted"):
        raise KeyboardInterrupt
    return src + 1000


async def async_left(src, marks):
    mark(marks)
    return {"left": src + 1}


# -- the crash flow: a seeded layered DAG of generic steps ------------------------------


def node(marks, sleep, **deps):
    """A deterministic value from the step's name and its dependencies' values."""
    name = microdag.context().step
    mark(marks, name)
    if sleep:
        time.sleep(sleep)
    return value_of(name, deps)


def value_of(name: str, deps: dict) -> int:
    return (zlib.crc32(name.encode()) + sum(31 * v for v in deps.values())) % 1_000_003


def crash_flow(layers: int, width: int, seed: int = 20240601) -> Flow:
    """``layers`` x ``width`` steps; each depends on 1-3 steps of the layer above."""
    rng = random.Random(seed)
    flow = Flow(f"durable-crash-{layers}x{width}")
    above: list[str] = []
    for layer in range(layers):
        row = [f"s{layer:03d}_{k:02d}" for k in range(width)]
        for name in row:
            deps = rng.sample(above, min(len(above), rng.randint(1, 3))) if above else []
            flow.add(name, node, depends_on=deps)
        above = row
    return flow


def expected_values(flow: Flow) -> dict:
    """Every step's output in an uninterrupted run, computed without running it."""
    graph = flow.graph
    out: dict = {}
    for name in graph.order():
        out[name] = value_of(name, {d: out[d] for d in graph.dependencies(name)})
    return out


def timed(marks, seconds, **deps):
    """Sleep ``seconds``, then note in ``<marks>/done`` that this step finished,
    and how long it took (``name seconds`` per line)."""
    start = time.perf_counter()
    time.sleep(seconds)
    line = f"{microdag.context().step} {time.perf_counter() - start:.6f}\n"
    fd = os.open(os.path.join(marks, "done"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return 1


def timed_flow(layers: int = 60, width: int = 4) -> Flow:
    """``layers`` x ``width`` timed steps, each after one step of the layer above."""
    flow = Flow("durable-loss")
    for layer in range(layers):
        for k in range(width):
            deps = [f"t{layer - 1:03d}_{k}"] if layer else []
            flow.add(f"t{layer:03d}_{k}", timed, depends_on=deps)
    return flow


def finished_steps(marks: str) -> "dict[str, float]":
    """The steps ``timed`` noted as finished, with how long each took."""
    try:
        with open(os.path.join(marks, "done")) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return {}
    return {name: float(seconds) for name, seconds in (line.split() for line in lines)}


def gate(marks):
    """Fails until ``<marks>/open`` exists."""
    if not os.path.exists(os.path.join(marks, "open")):
        raise RuntimeError("the gate is closed")
    return 0


def gated_flow() -> Flow:
    """``gate`` then three timed steps in a chain: a first run fails at the gate;
    a resume (once the gate is open) runs for about three times ``seconds``."""
    flow = Flow("durable-gated")
    flow.add("gate", gate)
    previous = "gate"
    for k in range(3):
        flow.add(f"t{k}", timed, depends_on=[previous])
        previous = f"t{k}"
    return flow


def race_main(argv: "list[str]") -> None:
    """``python -m durablesteps race STORE RUN_ID GO``: once the file ``GO``
    exists, resume the gated run; print ``ran`` or ``refused: <why>``."""
    from microdag.stores import StoreError

    spec, run_id, go = argv
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.0005)
    try:
        gated_flow().run(store=spec, run_id=run_id, resume=True)
    except StoreError as exc:
        print(f"refused: {exc}", flush=True)
    else:
        print("ran", flush=True)


def kill_timed_run(spec: str, marks: str, executor: str, seconds: float, delay: float, env: "dict[str, str]") -> str:
    """Start ``python -m durablesteps loss`` (the timed flow, with store
    ``spec``), SIGKILL it ``delay`` seconds after its run began; its run id."""
    import signal
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-m", "durablesteps", "loss", spec, marks, executor, str(seconds)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        run_id = proc.stdout.readline().strip()  # type: ignore[union-attr]
        time.sleep(delay)
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit code {proc.returncode}) before it was killed; it said "
                                 f"{run_id!r}, {proc.stdout.read()!r} and {proc.stderr.read()[-3000:]!r}")  # type: ignore[union-attr]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    return run_id


def loss_main(argv: "list[str]") -> None:
    """``python -m durablesteps loss STORE MARKS EXECUTOR SECONDS``: run the timed
    flow durably, printing the run id first."""
    spec, marks, executor, seconds = argv

    def announce(event):
        if event.kind == "run_started":
            print(event.run_id, flush=True)

    timed_flow().run({"marks": marks, "seconds": float(seconds)}, store=spec, executor=executor,
                     max_workers=2, hooks=[announce])
    print("done", flush=True)


def main(argv: "list[str]") -> None:
    """``python -m durablesteps STORE MARKS EXECUTOR LAYERS WIDTH SLEEP GROUP [RUN_ID]``:
    run the crash flow durably (or resume run ``RUN_ID``), printing the run id
    first; ``GROUP`` > 0 commits every ``GROUP`` task records instead of 256."""
    spec, marks, executor, layers, width, sleep, group = argv[:7]
    if int(group) > 0:
        import microdag.stores._json as json_store
        import microdag.stores._sql as sql_store

        json_store.GROUP = sql_store.GROUP = int(group)
    flow = crash_flow(int(layers), int(width))

    def announce(event):
        if event.kind == "run_started":
            print(event.run_id, flush=True)

    if len(argv) > 7:
        flow.run(store=spec, run_id=argv[7], resume=True, executor=executor, hooks=[announce])
    else:
        flow.run({"marks": marks, "sleep": float(sleep)}, store=spec, executor=executor, hooks=[announce])
    print("done", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "loss":
        loss_main(sys.argv[2:])
    elif sys.argv[1] == "race":
        race_main(sys.argv[2:])
    else:
        main(sys.argv[1:])
