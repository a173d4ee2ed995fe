"""microdag.dask.get_processes: Dask graphs on microdag's kernel, their tasks in worker processes.

Dask's contract for a foreign ``get`` (``GetFunctionTestMixin``) on both kernel
twins, with a shared process pool; the pool made for a call; errors re-raised
with their type and the worker's traceback; culling; what does not pickle; a
dask.array workload against Dask's own multiprocessing scheduler.  Skipped
without Dask, except under CI.
"""

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

if not os.environ.get("CI"):
    pytest.importorskip("dask", reason="Dask is not installed (pip install 'microdag[dask]')")

from dask.utils_test import GetFunctionTestMixin, add, inc  # noqa: E402

import microdag._compat  # noqa: E402
from microdag import dask as mdask  # noqa: E402

POOL: "list[ProcessPoolExecutor]" = []


@pytest.fixture(scope="module", autouse=True)
def shared_pool() -> Iterator[ProcessPoolExecutor]:
    """One pool of two processes for the module's tests (starting processes is the slow part)."""
    with ProcessPoolExecutor(2) as pool:
        POOL.append(pool)
        yield pool
        POOL.clear()


@pytest.fixture(autouse=True)
def kernel(twin: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """Every test runs on each kernel twin (conftest's ``twin``)."""
    monkeypatch.setattr(microdag._compat, "sched", twin)
    yield twin


def on_pool(dsk: Any, keys: Any, **kwargs: Any) -> Any:
    return mdask.get_processes(dsk, keys, pool=POOL[0], **kwargs)


class TestGetProcesses(GetFunctionTestMixin):
    get = staticmethod(on_pool)


class Boom(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message, code)
        self.code = code


def explode(x: int) -> int:
    raise Boom(f"no {x}", 7)


class Unpicklable(Exception):
    def __reduce__(self) -> Any:
        raise TypeError("this exception does not pickle")


def explode_unpicklably(x: int) -> int:
    raise Unpicklable(x)


def test_a_pool_is_made_for_the_call_and_runs_tasks_elsewhere() -> None:
    dsk: dict[Any, Any] = {("pid", i): (os.getpid,) for i in range(4)}
    dsk["pids"] = (set, list(dsk))
    pids = mdask.get_processes(dsk, "pids", num_workers=2)
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    # Lambdas and closures travel (cloudpickle), as with Dask's multiprocessing scheduler.
    offset = 5
    assert mdask.get_processes({"a": 1, "b": (lambda v: v + offset, "a")}, "b", num_workers=1) == 6


def test_an_error_keeps_its_type_attributes_and_the_workers_traceback() -> None:
    dsk: dict[Any, Any] = {f"x{i}": (inc, i) for i in range(10)}
    dsk["bad"] = (explode, "x3")
    dsk["out"] = (sum, ["bad"] + [f"x{i}" for i in range(10)])
    with pytest.raises(Boom, match="no 4") as info:
        on_pool(dsk, "out")
    assert info.value.code == 7
    assert any("in explode" in note for note in info.value.__notes__)
    with pytest.raises(RuntimeError, match="Unpicklable"):
        on_pool({"a": (explode_unpicklably, 1)}, "a")
    with pytest.raises(TypeError, match="'c' could not be sent"):
        on_pool({"c": (inc, threading.Lock())}, "c")


def note(folder: str, name: str, *args: int) -> int:
    Path(folder, name).touch()  # (in a worker process: the files say what ran)
    return sum(args)


def test_culling_runs_only_what_the_keys_need(tmp_path: Path) -> None:
    d = str(tmp_path)
    dsk = {"a": (note, d, "A", 1), "b": (note, d, "B", "a"), "c": (note, d, "C", "a"), "d": (note, d, "D", "c")}
    assert on_pool(dsk, "b") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A", "B"]


def test_cache_and_nested_keys() -> None:
    dsk = {"y": (inc, "x"), "z": (add, "y", "w")}
    assert on_pool(dsk, ["z", ["y"]], cache={"x": 1, "w": 10}) == (12, (2,))


def test_a_numpy_array_workload_equals_dasks_multiprocessing() -> None:
    pytest.importorskip("numpy")
    import dask.array as da
    import dask.multiprocessing

    x = da.arange(40_000, chunks=1_000).reshape((200, 200)).rechunk(50)
    y = (x + x.T).sum(axis=0) - x.mean()
    with dask.config.set(pool=POOL[0]):
        expected = y.compute(scheduler=dask.multiprocessing.get)
        assert (y.compute(scheduler=mdask.get_processes) == expected).all()
