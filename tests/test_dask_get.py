"""microdag.dask: microdag's kernel as Dask's local scheduler.

Dask's own contract for a foreign ``get`` (``GetFunctionTestMixin``) on both
kernel twins, Dask's collections computed on it against Dask's default
scheduler, callbacks and the progress bar, errors, culling and the release of
intermediates.  Skipped without Dask, except under CI, where the test extras
bring it and a missing Dask is a failure.
"""

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import pytest

if not os.environ.get("CI"):
    pytest.importorskip("dask", reason="Dask is not installed (pip install 'microdag[dask]')")

import dask  # noqa: E402
from dask.callbacks import Callback  # noqa: E402
from dask.utils_test import GetFunctionTestMixin, add, inc  # noqa: E402

import microdag._compat  # noqa: E402
from microdag import dask as mdask  # noqa: E402


@pytest.fixture(autouse=True)
def kernel(twin: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """Every test runs on each kernel twin (conftest's ``twin``)."""
    monkeypatch.setattr(microdag._compat, "sched", twin)
    yield twin


class TestGet(GetFunctionTestMixin):
    get = staticmethod(mdask.get)


class TestGetSync(GetFunctionTestMixin):
    get = staticmethod(mdask.get_sync)


class TestGetTwoWorkers(GetFunctionTestMixin):
    get = staticmethod(lambda dsk, keys, **kw: mdask.get(dsk, keys, num_workers=2, **kw))


@pytest.mark.parametrize("get", [mdask.get, mdask.get_sync])
def test_delayed_equals_the_default_scheduler(get: Any) -> None:
    from dask import delayed

    parts = [delayed(inc)(i) for i in range(50)]
    total = delayed(sum)(parts)
    pairs = [delayed(add)(a, b) for a, b in zip(parts, parts[1:])]
    assert dask.compute(total, pairs, scheduler=get) == dask.compute(total, pairs)
    assert total.compute(scheduler=get) == total.compute(scheduler="sync")
    with dask.config.set(scheduler=get):
        assert total.compute() == sum(range(1, 51))


def test_bag_equals_the_default_scheduler() -> None:
    import dask.bag as db

    b = db.from_sequence(range(500), npartitions=17)
    work = b.map(inc).filter(lambda v: v % 3).frequencies()
    assert sorted(work.compute(scheduler=mdask.get)) == sorted(work.compute())
    assert b.fold(add).compute(scheduler=mdask.get) == sum(range(500))


def test_array_equals_the_default_scheduler() -> None:
    pytest.importorskip("numpy")
    import dask.array as da

    x = da.arange(10_000, chunks=700).reshape((100, 100)).rechunk(30)
    y = (x + x.T).sum(axis=0) - x.mean()
    assert (y.compute(scheduler=mdask.get) == y.compute()).all()


def test_task_spec_nodes() -> None:
    from dask._task_spec import Alias, DataNode, List, Task, TaskRef

    dsk = {
        "a": DataNode("a", 2),
        "b": Task("b", add, TaskRef("a"), 10),
        "c": Alias("c", "b"),
        "d": Task("d", sum, List(TaskRef("a"), TaskRef("c"), 1)),
    }
    assert mdask.get(dsk, ["d", ["c", "a"]]) == (15, (12, 2))
    assert mdask.get_sync(dsk, "d") == 15


def test_pool_and_workers() -> None:
    dsk = {f"x{i}": (inc, i) for i in range(200)}
    dsk["total"] = (sum, [f"x{i}" for i in range(200)])
    expected = sum(range(1, 201))
    with ThreadPoolExecutor(3) as pool:
        assert mdask.get(dsk, "total", pool=pool) == expected
    from multiprocessing.pool import ThreadPool

    with ThreadPool(2) as tpool:
        assert mdask.get(dsk, "total", pool=tpool) == expected
    assert mdask.get(dsk, "total", num_workers=4) == expected


def test_culling_runs_only_what_the_keys_need() -> None:
    ran: list[str] = []
    lock = threading.Lock()

    def note(name: str, *args: int) -> int:
        with lock:
            ran.append(name)
        return sum(args)

    dsk = {"a": (note, "A", 1), "b": (note, "B", "a"), "c": (note, "C", "a"), "d": (note, "D", "c")}
    assert mdask.get(dsk, "b") == 1
    assert sorted(ran) == ["A", "B"]


def test_intermediates_released_after_their_last_dependent() -> None:
    import gc
    import weakref

    class Big:
        pass

    refs: list[Any] = []

    def make() -> Big:
        obj = Big()
        refs.append(weakref.ref(obj))
        return obj

    def check(prev: Big, i: int) -> Big:
        gc.collect()
        # Only the argument and the one before it may still live.
        assert sum(r() is not None for r in refs) <= 2, i
        return make()

    dsk: dict[str, Any] = {"s0": (make,)}
    for i in range(1, 30):
        dsk[f"s{i}"] = (check, f"s{i - 1}", i)
    assert isinstance(mdask.get_sync(dsk, "s29"), Big)
    assert isinstance(mdask.get(dsk, "s29", num_workers=2), Big)


class Boom(Exception):
    pass


def explode(x: int) -> int:
    raise Boom(f"no {x}")


@pytest.mark.parametrize("get", [mdask.get, mdask.get_sync])
def test_an_error_keeps_its_type_and_traceback(get: Any) -> None:
    dsk = {f"x{i}": (inc, i) for i in range(20)}
    dsk["bad"] = (explode, "x3")
    dsk["out"] = (sum, ["bad"] + [f"x{i}" for i in range(20)])
    with pytest.raises(Boom, match="no 4") as info:
        get(dsk, "out")
    assert any(entry.name == "explode" for entry in info.traceback)


def test_missing_dependency_and_cache() -> None:
    dsk = {"y": (inc, "x"), "z": (add, "y", "w")}
    assert mdask.get(dsk, "z", cache={"x": 1, "w": 10}) == 12
    assert mdask.get(dsk, "x", cache={"x": 5}) == 5


def test_cycle_is_refused() -> None:
    with pytest.raises(ValueError, match="[Cc]ycle"):
        mdask.get({"a": (inc, "b"), "b": (inc, "a")}, "a")


@pytest.mark.parametrize("get", [mdask.get, mdask.get_sync])
def test_callbacks(get: Any) -> None:
    seen: dict[str, list[Any]] = {"start": [], "start_state": [], "pretask": [], "posttask": [], "finish": []}

    class Record(Callback):  # type: ignore[misc]
        def _start(self, dsk: Any) -> None:
            seen["start"].append(len(dsk))

        def _start_state(self, dsk: Any, state: Any) -> None:
            seen["start_state"].append(len(state["waiting"]) + len(state["ready"]))

        def _pretask(self, key: Any, dsk: Any, state: Any) -> None:
            assert key in state["running"]
            seen["pretask"].append(key)

        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            assert key in state["finished"]
            seen["posttask"].append((key, result))

        def _finish(self, dsk: Any, state: Any, errored: bool) -> None:
            seen["finish"].append(errored)

    dsk = {"x": 1, "y": (inc, "x"), "z": (add, "x", "y"), "unused": (inc, 0)}
    with Record():
        assert get(dsk, "z") == 3
    assert seen["start"] == [4]
    assert seen["start_state"] == [3]
    assert sorted(seen["pretask"]) == ["x", "y", "z"]
    assert sorted(seen["posttask"]) == [("x", 1), ("y", 2), ("z", 3)]
    assert seen["finish"] == [False]
    with Record(), pytest.raises(Boom):
        get({"a": (explode, 1)}, "a")
    assert seen["finish"] == [False, True]
    # Given explicitly, not as a context.
    get(dsk, "z", callbacks=[Record()._callback])
    assert seen["finish"] == [False, True, False]


def test_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    from dask.diagnostics import ProgressBar

    dsk = {f"x{i}": (inc, i) for i in range(100)}
    dsk["total"] = (sum, [f"x{i}" for i in range(100)])
    with ProgressBar(out=sys.stdout):
        assert mdask.get(dsk, "total") == sum(range(1, 101))
    assert "100% Completed" in capsys.readouterr().out


def test_import_microdag_does_not_load_it() -> None:
    code = "import sys, microdag; assert 'microdag.dask' not in sys.modules and 'dask' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_interrupt_stops_the_run(workers: int) -> None:
    import time

    ran: list[int] = []

    def slow(i: int) -> int:
        if len(ran) == 10:  # the eleventh task to start, whichever it is
            raise KeyboardInterrupt
        time.sleep(0.002)
        ran.append(i)
        return i

    dsk: dict[Any, Any] = {("s", i): (slow, i) for i in range(200)}
    dsk["out"] = (sum, [("s", i) for i in range(200)])
    with pytest.raises(KeyboardInterrupt):
        mdask.get(dsk, "out", num_workers=workers)
    assert len(ran) <= 10 + workers  # no new task started once it was raised


def pair(a: Any, b: Any) -> tuple[Any, Any]:
    return (a, b)


def listed(*args: Any) -> list[Any]:
    return list(args)


def test_tuple_tasks_read_as_dask_reads_them() -> None:
    """Simple tuple tasks are called directly: every shape of argument means
    what it means to Dask (compared with ``dask.get`` on the same graph)."""
    dsk: dict[Any, Any] = {
        "x": 1,
        1: 10,  # an int key: the argument 1 is a key, True too (it equals 1)
        ("t", 0): 5,
        "keys-then-literals": (listed, "x", ("t", 0), 7, "not-a-key", None, b"b", 2.5),
        "literal-then-key": (listed, 7, "x"),
        "int-key": (listed, 1, True, 2),
        "same-key-twice": (listed, "x", "x"),
        "list-of-keys": (listed, ["x", ("t", 0), 1]),
        "list-with-a-literal": (listed, ["x", "literal"]),
        "empty-list": (listed, []),
        "nested-task": (listed, (inc, "x"), "x"),
        "literal-tuple": (listed, ("a", "b")),
        "tuple-with-a-key": (listed, ("x", 3)),
        "dict": (listed, {"k": "x"}),
        "alias": "x",
        "literal-list": [1, 2],
        "unhashable-tuple": (listed, ("t", [0])),
        "callable-head-key": (listed, (inc, 1)),
        (inc, 1): 99,  # a key that looks like a task: as an argument, Dask runs it
        "float-key": (listed, 1.0),
        "pair": (pair, "keys-then-literals", "list-of-keys"),
    }
    keys = [k for k in dsk if isinstance(k, str) and k != "x"]
    expected = dask.get(dsk, keys)
    assert mdask.get_sync(dsk, keys) == expected
    assert mdask.get(dsk, keys, num_workers=2) == expected
    # "x": 1 is an alias of the key 1 (whose value is 10), as Dask reads it.
    assert mdask.get(dsk, ["literal-then-key", "list-of-keys"]) == ([7, 10], [[10, 5, 10]])
    # A cached key is a key for the tasks that use it, literals are not.
    cached = {"y": (listed, "c", "x", "d"), "x": 2}
    assert mdask.get(cached, "y", cache={"c": 3}) == [3, 2, "d"]


def test_a_task_that_needs_itself_is_a_cycle() -> None:
    with pytest.raises(ValueError, match="[Cc]ycle"):
        mdask.get({"a": (inc, "a")}, "a")
    with pytest.raises(ValueError, match="[Cc]ycle"):
        mdask.get({"a": (sum, ["b"]), "b": (add, 1, "a")}, "a")


def test_a_reduction_runs_depth_first() -> None:
    """A tree reduction consumes its inputs as they are made, as ``dask.order``
    would have it: never more than a few leaves' values held at once."""
    live: set[int] = set()
    most = [0]

    def leaf(i: int) -> int:
        live.add(i)
        most[0] = max(most[0], len(live))
        return i

    def combine(*parts: int) -> int:
        live.difference_update(parts)
        return -sum(parts) - 1

    dsk: dict[Any, Any] = {("leaf", i): (leaf, i) for i in range(64)}
    level = [("leaf", i) for i in range(64)]
    depth = 0
    while len(level) > 1:
        depth += 1
        nxt = []
        for j in range(0, len(level), 4):
            dsk[("agg", depth, j)] = (combine, *level[j : j + 4])
            nxt.append(("agg", depth, j))
        level = nxt
    mdask.get_sync(dsk, level[0])
    assert most[0] <= 4  # one combine's inputs; all 64 when leaves run first
    assert not live


class Flaky:
    """Fails its first ``fails`` calls."""

    def __init__(self, fails: int) -> None:
        self.fails = fails
        self.calls = 0

    def __call__(self, x: int) -> int:
        self.calls += 1
        if self.calls <= self.fails:
            raise Boom(f"call {self.calls}")
        return x + 1


@pytest.mark.parametrize("get", [mdask.get, mdask.get_sync])
def test_retries_run_a_failing_task_again(get: Any) -> None:
    flaky = Flaky(2)
    dsk = {"a": (flaky, 1), "b": (inc, "a")}
    assert get(dsk, "b", retries=2) == 3
    assert flaky.calls == 3
    flaky = Flaky(2)
    with pytest.raises(Boom, match="call 2"):
        get({"a": (flaky, 1), "b": (inc, "a")}, "b", retries=1)
    assert flaky.calls == 2
    flaky = Flaky(1)
    with pytest.raises(Boom, match="call 1"):  # off by default
        get({"a": (flaky, 1)}, "a")


@pytest.mark.parametrize("get", [mdask.get, mdask.get_sync])
def test_timeout_fails_a_task_that_runs_too_long(get: Any) -> None:
    import time

    def slow(x: int) -> int:
        time.sleep(x)
        return x

    dsk = {("s", 0): (slow, 0), ("s", 1): (slow, 2), "out": (sum, [("s", 0), ("s", 1)])}
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"\('s', 1\).* timed out after 0.2 s"):
        get(dsk, "out", timeout=0.2)
    assert time.monotonic() - start < 1.5  # the late task is abandoned, not waited for
    assert get(dsk, ("s", 0), timeout=0.2) == 0
    # A timed-out attempt is retried like a failed one.
    flaky = Flaky(0)
    calls: list[float] = []

    def late_once(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            time.sleep(1)
        return flaky(x)

    assert get({"a": (late_once, 1)}, "a", timeout=0.2, retries=1) == 2
    assert len(calls) == 2


def test_max_workers_is_num_workers() -> None:
    dsk = {f"x{i}": (inc, i) for i in range(50)}
    dsk["total"] = (sum, [f"x{i}" for i in range(50)])
    assert mdask.get(dsk, "total", max_workers=3) == sum(range(1, 51))
    assert mdask.get(dsk, "total", max_workers=3, num_workers=3) == sum(range(1, 51))
    with pytest.raises(ValueError, match="num_workers=2 and max_workers=3"):
        mdask.get(dsk, "total", max_workers=3, num_workers=2)


@pytest.mark.parametrize(("option", "value"), [("retries", -1), ("retries", 1.5), ("retries", True),
                                               ("timeout", 0), ("timeout", "1"), ("timeout", True)])
def test_bad_options_are_refused(option: str, value: Any) -> None:
    with pytest.raises(ValueError, match=option):
        mdask.get({"a": (inc, 1)}, "a", **{option: value})


@pytest.mark.parametrize("optimize", [True, False])
def test_an_array_reduction_holds_few_chunks_at_once(optimize: bool) -> None:
    """Each chunk is dropped once summed: the peak is a few chunks, not all 200."""
    pytest.importorskip("numpy")
    import tracemalloc

    import dask.array as da

    n = 200 * 100_000
    total = da.arange(n, chunks=100_000, dtype=float).sum()  # chunks of 0.8 MB
    tracemalloc.start()
    try:
        (value,) = dask.compute(total, scheduler=mdask.get_sync, optimize_graph=optimize)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert value == n * (n - 1) / 2
    assert peak < 10 * 800_000, peak


def test_ctrl_c_returns_while_tasks_still_run() -> None:
    """SIGINT to the calling thread while tasks wait: KeyboardInterrupt at once (Dask's test_interrupt)."""
    import signal
    import time

    main = threading.get_ident()
    release = threading.Event()
    barrier = threading.Barrier(4)

    def blocked() -> None:
        barrier.wait(10)
        release.wait(10)

    def interrupt() -> None:
        barrier.wait(10)
        signal.pthread_kill(main, signal.SIGINT)

    dsk: dict[Any, Any] = {("b", i): (blocked,) for i in range(3)}
    dsk["interrupt"] = (interrupt,)
    pool = ThreadPoolExecutor(4)
    start = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            mdask.get(dsk, list(dsk), pool=pool)
        assert time.perf_counter() - start < 5
    finally:
        release.set()
        pool.shutdown()



@pytest.mark.parametrize("get", [mdask.get, mdask.get_sync])
def test_the_cache_option_holds_values_as_they_are_made(get: Any) -> None:
    """Dask's ``cache`` option (argument or ``dask.config``): the run's values live there while
    they are needed, and the results stay (Dask's ``test_cache_options``)."""
    seen: list[bool] = []
    cache: dict[Any, Any] = {}
    other: dict[Any, Any] = {}
    where = [cache]

    def inc2(x: int) -> int:
        seen.append("y" in where[0])
        return x + 1

    with dask.config.set(cache=cache):
        assert get({"x": (inc2, "y"), "y": 1, "z": (inc, "x")}, "z") == 3
    assert seen == [True]
    assert cache == {"z": 3}  # intermediates released, the result kept, as Dask does
    where[0] = other
    assert get({"x": (inc2, "y"), "y": 1}, "x", cache=other) == 2
    assert seen == [True, True] and other == {"x": 2}


def test_dasks_pool_option_and_a_process_pool() -> None:
    """As ``dask.threaded.get``: Dask's ``pool`` option when no ``pool=``, and a process pool runs
    the tasks in its processes (``get_processes``)."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    dsk: dict[Any, Any] = {("n", i): (threading.current_thread,) for i in range(20)}
    dsk["names"] = (lambda *ts: {t.name for t in ts}, *dsk)
    with ThreadPoolExecutor(2, thread_name_prefix="given") as pool, dask.config.set(pool=pool):
        names = mdask.get(dsk, "names")
    assert all(name.startswith("given") for name in names)  # as in Dask: every task on the pool
    pids: dict[Any, Any] = {("p", i): (os.getpid,) for i in range(4)}
    pids["all"] = (set, list(pids))
    with ProcessPoolExecutor(2) as procs:
        assert os.getpid() not in mdask.get(pids, "all", pool=procs)
        with dask.config.set(pool=procs):
            assert os.getpid() not in mdask.get(pids, "all")
