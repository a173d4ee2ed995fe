"""``microdag.dask.get_processes``: a Dask graph on microdag's kernel, its tasks in processes.

The kernel, the culling, the release of intermediates, Dask's callbacks and
its ``cache`` option stay where ``microdag.dask.get`` has them, in the calling
process: :func:`get_processes` hands ``get`` the same graph with each task
wrapped in one that ships it (the task and its dependencies' values, pickled
with cloudpickle, as ``dask.multiprocessing`` pickles) to a process pool and
waits for its reply.  ``get`` runs ``IN_FLIGHT`` of those at once per process
of the pool, on its threads, which only wait.  Literals and aliases are not
shipped: they cost nothing to compute where they are.

A reply is ``(True, value, None)`` or ``(False, exception, traceback text)``;
the exception is raised in the calling process as itself (its type, its
attributes), with the worker's traceback added as a note (PEP 678).  One
that does not pickle back comes as a ``RuntimeError`` naming it, with that
text; a value that does not pickle back fails its task the same way.

The pool: the one given (a ``concurrent.futures`` executor or a
``multiprocessing`` pool), else Dask's ``pool`` option, else one made for the
call with ``num_workers`` processes, shut down at its end.  A pool made here
starts its processes as microdag's own process pool does (``forkserver``,
else ``spawn``; never ``fork`` from a parent that has threads), and sets
``PYTHONHASHSEED`` as Dask does where it is unset, so that the processes hash
alike (Dask's bag partitions by hash).
"""

import os
import traceback
from functools import partial

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

__all__ = ["get_processes"]

#: Tasks out at once per process: the next ones wait in the pool's queue while
#: a process runs one, so it never waits for the round trip (measured: 4 runs
#: 2,000 tiny tasks on 2 processes in about half the time 1 does; 8 no faster).
IN_FLIGHT = 4


def get_processes(get: "Callable[..., Any]", dsk: "Any", keys: "Any", num_workers: "int | None",
                  pool: "Any", cache: "dict[Any, Any] | None" = None, **kwargs: "Any") -> "Any":
    """``get`` (``microdag.dask.get`` on threads) over ``dsk``, its tasks run by a process pool."""
    from dask import config  # (an optional extra: loaded where it is used)

    pool = pool or config.get("pool", None)
    made = pool is None
    if made:
        from dask.system import CPU_COUNT  # (as above)

        pool = _new_pool(max(1, int(num_workers or config.get("num_workers", None) or CPU_COUNT)))
    workers = num_workers or _size(pool) or 1
    failed = True
    try:
        if not hasattr(dsk, "items"):
            dsk = dsk.__dask_graph__()
        shipped = _shipped(dsk, set(cache or ()), _caller(pool))
        result = get(shipped, keys, cache=cache, num_workers=workers * IN_FLIGHT, **kwargs)
        failed = False
        return result
    finally:
        if made:
            # On an error or Ctrl-C, do not wait for the tasks still running.
            pool.shutdown(wait=not failed, cancel_futures=True)


def _new_pool(size: int) -> "Any":
    import multiprocessing  # (heavy: loaded where it is used)
    from concurrent.futures import ProcessPoolExecutor  # (as above)

    os.environ.setdefault("PYTHONHASHSEED", "6640")  # Dask's value: the processes hash alike
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    return ProcessPoolExecutor(size, mp_context=ctx)


def _caller(pool: "Any") -> "Callable[[bytes], bytes]":
    """What runs one shipped task in ``pool`` and waits for its reply."""
    if hasattr(pool, "submit"):  # a concurrent.futures executor
        return lambda blob: pool.submit(_execute, blob).result()
    return lambda blob: pool.apply(_execute, (blob,))  # a multiprocessing pool


def _size(pool: "Any") -> "int | None":
    size = getattr(pool, "_max_workers", None) or getattr(pool, "_processes", None)
    return int(size) if size else None


def _shipped(dsk: "Mapping[Any, Any]", cached: "set[Any]", run: "Callable[[bytes], bytes]") -> "dict[Any, Any]":
    """``dsk`` with each task replaced by one that ships it to the pool (``run``: see :func:`_caller`)."""
    import cloudpickle  # (Dask's dependency: loaded where it is used)
    from dask._task_spec import Alias, DataNode, Task, TaskRef, convert_legacy_graph  # (as above)

    graph = convert_legacy_graph(dsk, all_keys=set(dsk) | cached)
    dumps = partial(cloudpickle.dumps, protocol=5)
    out: "dict[Any, Any]" = {}
    for key, node in graph.items():
        if isinstance(node, (DataNode, Alias)):
            out[key] = node
            continue
        deps = tuple(node.dependencies)
        out[key] = Task(key, partial(_ship, run, dumps, cloudpickle.loads, node, deps), *map(TaskRef, deps))
    return out


def _ship(run: "Callable[[bytes], bytes]", dumps: "Callable[[Any], bytes]", loads: "Callable[[bytes], Any]",
          node: "Any", deps: "tuple[Any, ...]", *values: "Any") -> "Any":
    """Run ``node`` in the pool with its dependencies' ``values``; its value, or its exception raised."""
    try:
        blob = dumps((node, dict(zip(deps, values))))
    except Exception as exc:
        raise TypeError(f"task {node.key!r} could not be sent to a worker process: {exc}") from exc
    ok, value, text = loads(run(blob))
    if ok:
        return value
    if text and hasattr(value, "add_note"):
        value.add_note(f"Raised in a worker process of microdag.dask.get_processes:\n{text.rstrip()}")
    raise value


def _execute(blob: bytes) -> bytes:
    """In a worker process: run one shipped task; its reply, pickled (see the module docs)."""
    import cloudpickle  # (Dask's dependency: loaded where it is used)

    try:
        node, values = cloudpickle.loads(blob)
        reply: "tuple[bool, Any, str | None]" = (True, node(values), None)
    except BaseException as exc:
        reply = (False, exc, traceback.format_exc())
    try:
        return bytes(cloudpickle.dumps(reply, protocol=5))
    except Exception as exc:
        what = "value" if reply[0] else f"exception ({type(reply[1]).__name__}: {reply[1]})"
        text = reply[2] or ""
        error = RuntimeError(f"the task's {what} could not be sent back from its worker process: {exc}")
        return bytes(cloudpickle.dumps((False, error, text), protocol=5))
