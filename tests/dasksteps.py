"""Flows run on a real Dask ``LocalCluster`` for ``test_dask.py``.

:func:`run_all` starts one cluster (2 worker processes, one thread each),
runs every scenario on it and returns, per scenario, the facts the tests
check (JSON), so that one child process per kernel twin pays for the
cluster once.  The step functions are module-level: the workers import them.
"""

import asyncio
import os
import tempfile
import threading
import time

import microdag

CLIENT_PID = "MICRODAG_TEST_CLIENT_PID"


def one() -> int:
    return 1


def add(a: int, b: int) -> int:
    return a + b


def double(x: int) -> int:
    return 2 * x


def total(**deps: int) -> int:
    return sum(v for v in deps.values() if type(v) is int)


def where() -> str:
    return "worker" if os.getpid() != int(os.environ[CLIENT_PID]) else "client"


class StaysOnWorkers:
    """A value that cannot be loaded in the client's process: if an output of
    this type reached the client, the run would fail."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __reduce__(self):
        return (_load_on_worker, (self.size,))


def _load_on_worker(size: int) -> StaysOnWorkers:
    if os.getpid() == int(os.environ[CLIENT_PID]):
        raise RuntimeError("an output that should stay on the cluster reached the client")
    return StaysOnWorkers(size)


def big() -> StaysOnWorkers:
    return StaysOnWorkers(1000)


def measure(data: StaysOnWorkers) -> int:
    return data.size


def flaky(fails: int) -> "list[int]":
    """Fails its first ``fails`` attempts; returns the attempt numbers it saw."""
    attempt = microdag.context().attempt
    if attempt <= fails:
        raise ValueError(f"attempt {attempt} fails")
    return list(range(1, attempt + 1))


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def nap_and_mark(seconds: float, marks: str) -> float:
    """Sleep, then leave a file named after the step in the folder ``marks``."""
    time.sleep(seconds)
    with open(os.path.join(marks, microdag.context().step), "w") as f:
        f.write("ran")
    return seconds


def mark(marks: str, **deps: object) -> str:
    name = microdag.context().step
    with open(os.path.join(marks, name), "w") as f:
        f.write("ran")
    return name


def boom(**deps: object) -> None:
    raise ValueError("boom")


def skip_me(**deps: object) -> None:
    raise microdag.Skip("not today")


def items(n: int) -> "list[int]":
    return list(range(n))


def square_batch(x: "list[int]") -> "list[int]":
    if microdag.context().attempt == 1 and 3 in x:
        raise ValueError("the batch with 3 fails once")
    return [v * v for v in x]


def interval(seconds: float) -> "list[float]":
    start = time.time()
    time.sleep(seconds)
    return [start, time.time()]


def counted(counter: str) -> int:
    """Appends a line to the file ``counter`` (so a test sees how often it ran)."""
    with open(counter, "a") as f:
        f.write("x\n")
    return 5


def fails_while(flag: str, value: int) -> int:
    if os.path.exists(flag):
        raise ValueError("the flag file is there")
    return value + 1


def uses(lock: object) -> int:
    return 1


def facts(run: microdag.Run) -> "dict[str, list]":
    return {name: [t.status, t.attempts, type(t.error).__name__ if t.error else None]
            for name, t in sorted(run.tasks.items())}


# -- scenarios: each takes the client and returns JSON facts ------------------


def basic(client) -> dict:
    flow = microdag.Flow("basic")
    flow.add("a", one).add("b", one).add("c", add, inputs={"a": "a", "b": "b"})
    flow.add("d", double, inputs={"x": "c"}).add("e", double, inputs={"x": "c"})
    flow.add("sum", total, depends_on=["d", "e", "a"])
    flow.add("where", where)
    run = flow.run(executor=client)
    kept = flow.run(executor=client, keep_outputs=True).outputs
    targeted = flow.run(executor=client, targets=["d"]).outputs
    return {"outputs": run.outputs, "inline": flow.run().outputs, "kept": kept,
            "kept_inline": flow.run(keep_outputs=True).outputs, "targeted": targeted,
            "status": run.status}


def stays(client) -> dict:
    flow = microdag.Flow("stays")
    flow.add("big", big).add("measure", measure, inputs={"data": "big"})
    run = flow.run(executor=client)
    return {"outputs": run.outputs, "status": run.status}


def retries(client) -> dict:
    flow = microdag.Flow("retries")
    flow.add("flaky", flaky, retries=2, retry_delay=0.05, retry_backoff=2.0)
    events: list = []
    start = time.monotonic()
    run = flow.run({"fails": 2}, executor=client,
                   hooks=[lambda e: events.append([e.kind, e.step, e.attempt, e.duration])])
    took = time.monotonic() - start
    failing = flow.run({"fails": 5}, executor=client, raise_on_failure=False)
    return {"outputs": run.outputs, "facts": facts(run), "took": took,
            "retrying": [e for e in events if e[0] == "step_retrying"],
            "failing": facts(failing), "failing_error": str(failing.tasks["flaky"].error)}


def timeouts(client, marks: str) -> dict:
    flow = microdag.Flow("timeouts")
    flow.add("slow", nap_and_mark, timeout=0.3)
    flow.add("after_slow", mark, depends_on=["slow"])
    flow.add("quick", mark)
    start = time.monotonic()
    run = flow.run({"seconds": 3.0, "marks": marks}, executor=client, on_failure="continue",
                   raise_on_failure=False)
    took = time.monotonic() - start
    return {"facts": facts(run), "took": took, "error": str(run.tasks["slow"].error),
            "marks": sorted(os.listdir(marks))}


def maps(client) -> dict:
    flow = microdag.Flow("maps")
    flow.add("items", items)
    flow.add("squares", square_batch, map="x", inputs={"x": "items"}, batch_size=2, retries=1)
    flow.add("sum", total, depends_on=["squares"])
    flow.add("doubled", double, map="x", inputs={"x": "items"})
    run = flow.run({"n": 7}, executor=client, keep_outputs=True)
    return {"outputs": run.outputs, "inline": flow.run({"n": 7}, keep_outputs=True).outputs,
            "facts": facts(run)}


def triggers(client, marks: str) -> dict:
    flow = microdag.Flow("triggers")
    flow.add("ok", one).add("bad", boom).add("skipper", skip_me)
    flow.add("after_bad", mark, depends_on=["bad"])
    flow.add("after_skip", mark, depends_on=["skipper"])
    flow.add("none_failed", mark, depends_on=["ok", "skipper"], trigger="none_failed")
    flow.add("all_done", mark, depends_on=["bad", "skipper"], trigger="all_done")
    flow.add("chain1", mark, depends_on=["after_bad"])
    options = {"on_failure": "continue", "raise_on_failure": False, "keep_outputs": True}
    run = flow.run({"marks": marks}, executor=client, **options)
    ran = sorted(os.listdir(marks))
    with tempfile.TemporaryDirectory() as other:
        inline = flow.run({"marks": other}, **options)
    return {"facts": facts(run), "inline": facts(inline), "outputs": run.outputs,
            "inline_outputs": {k: v for k, v in inline.outputs.items()}, "ran": ran,
            "status": run.status}


def ahead(client, marks: str) -> dict:
    """A failure in a chain: what was submitted ahead of it never runs."""
    flow = microdag.Flow("ahead")
    flow.add("first", nap)
    flow.add("broken", boom, depends_on=["first"])
    flow.add("next", mark, depends_on=["broken"])
    flow.add("last", mark, depends_on=["next"])
    run = flow.run({"seconds": 0.3, "marks": marks}, executor=client, raise_on_failure=False)
    return {"facts": facts(run), "ran": sorted(os.listdir(marks)), "status": run.status}


def bounded(client) -> dict:
    """``max_workers=1`` on a cluster of two workers: one step at a time."""
    flow = microdag.Flow("bounded")
    for i in range(4):
        flow.add(f"s{i}", interval)
    flow.add("after", interval, depends_on=["s0"])
    run = flow.run({"seconds": 0.15}, executor=client, max_workers=1, keep_outputs=True)
    spans = sorted(run.outputs.values())
    overlaps = sum(1 for a, b in zip(spans, spans[1:]) if b[0] < a[1])
    return {"overlaps": overlaps, "status": run.status, "n": len(spans)}


def cancel(client, marks: str) -> dict:
    flow = microdag.Flow("cancel")
    flow.add("quick", one)
    flow.add("slow", nap_and_mark)
    flow.add("after_slow", mark, depends_on=["slow"])
    stop = threading.Event()

    def hook(event) -> None:
        if event.kind == "step_finished" and event.step == "quick":
            stop.set()

    start = time.monotonic()
    run = flow.run({"seconds": 2.0, "marks": marks}, executor=client, cancel=stop, hooks=[hook],
                   raise_on_failure=False)
    took = time.monotonic() - start
    time.sleep(2.5)  # what a cancelled task would have written by now
    return {"facts": facts(run), "status": run.status, "took": took, "ran": sorted(os.listdir(marks))}


def resume(client, folder: str) -> dict:
    flow = microdag.Flow("resume")
    counter = os.path.join(folder, "counter")
    flag = os.path.join(folder, "flag")
    open(flag, "w").close()
    flow.add("five", counted)
    flow.add("six", fails_while, inputs={"value": "five"})
    flow.add("twelve", double, inputs={"x": "six"})
    store = microdag.stores.SQLiteStore(os.path.join(folder, "runs.db"))
    first = flow.run({"counter": counter, "flag": flag}, executor=client, store=store, raise_on_failure=False)
    os.remove(flag)
    again = flow.run(executor=client, store=store, run_id=first.id, resume=True)
    stored = {t.step: t.status for t in store.tasks(first.id, outputs=False) if t.item == -1}
    with open(counter) as f:
        runs_of_five = len(f.readlines())
    return {"first": facts(first), "again": facts(again), "outputs": again.outputs,
            "runs_of_five": runs_of_five, "stored": stored, "stored_output": store.output(first.id, "five")}


def hooks(client) -> dict:
    flow = microdag.Flow("hooks")
    flow.add("a", one).add("b", flaky, retries=1).add("c", total, depends_on=["a", "b"])

    def kinds(**options) -> list:
        events: list = []
        flow.run({"fails": 1}, hooks=[lambda e: events.append([e.kind, e.step, e.status, e.attempt])], **options)
        return sorted(events, key=str)

    return {"dask": kinds(executor=client), "inline": kinds()}


def arun(client) -> dict:
    flow = microdag.Flow("arun")
    flow.add("a", one).add("b", double, inputs={"x": "a"})
    flow.add("slow", nap, timeout=0.3)

    async def main() -> "tuple[microdag.Run, int]":
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        run = await flow.arun({"seconds": 2.0}, executor=client, on_failure="continue",
                              raise_on_failure=False)
        task.cancel()
        return run, ticks

    start = time.monotonic()
    run, ticks = asyncio.run(main())
    took = time.monotonic() - start

    long = microdag.Flow("arun-cancel").add("slow", nap)

    async def cancelled() -> str:
        task = asyncio.ensure_future(long.arun({"seconds": 2.0}, executor=client))
        await asyncio.sleep(0.5)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"
        return "not cancelled"

    start = time.monotonic()
    ending = asyncio.run(cancelled())
    return {"facts": facts(run), "outputs": run.outputs, "ticks": ticks, "took": took,
            "cancelled": ending, "cancel_took": time.monotonic() - start}


def unpicklable(client) -> dict:
    flow = microdag.Flow("unpicklable")
    flow.add("uses_lock", uses)
    run = flow.run({"lock": threading.Lock()}, executor=client, raise_on_failure=False)
    return {"facts": facts(run), "error": str(run.tasks["uses_lock"].error)}


def model(client) -> dict:
    """The model test's random flows (``modelsteps``), on the cluster."""
    import modelsteps

    out = {}
    options = {"on_failure": "continue", "raise_on_failure": False, "keep_outputs": True}
    for seed in range(10):
        specs = modelsteps.draw(seed)
        flow = modelsteps.build(specs)
        want = modelsteps.expected(specs)
        got = {
            "ahead": modelsteps.facts(flow.run(executor=client, **options)),
            "max_workers=2": modelsteps.facts(flow.run(executor=client, max_workers=2, **options)),
            "arun": modelsteps.facts(asyncio.run(flow.arun(executor=client, **options))),
        }
        out[str(seed)] = {"want": want, "got": got}
    return out


def run_all() -> dict:
    os.environ[CLIENT_PID] = str(os.getpid())  # (before the workers start: they inherit it)
    os.environ["DASK_LOGGING__DISTRIBUTED"] = "critical"  # (the steps that fail on purpose)
    from distributed import Client, LocalCluster

    results: dict = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        client.submit(one).result()
        results["basic"] = basic(client)
        results["stays"] = stays(client)
        results["retries"] = retries(client)
        for name, scenario in (("timeouts", timeouts), ("triggers", triggers), ("ahead", ahead),
                               ("cancel", cancel), ("resume", resume)):
            with tempfile.TemporaryDirectory() as folder:
                results[name] = scenario(client, folder)
        results["maps"] = maps(client)
        results["bounded"] = bounded(client)
        results["hooks"] = hooks(client)
        results["arun"] = arun(client)
        results["unpicklable"] = unpicklable(client)
        results["model"] = model(client)
        import otelsteps

        with tempfile.TemporaryDirectory() as folder:
            results["tracing"] = otelsteps.traced(client, folder)
    return results
