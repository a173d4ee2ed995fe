"""microdag as Dask's local scheduler: ``dask.compute(x, scheduler=microdag.dask.get)``.

Dask documents its scheduler as a replaceable function, ``get(dsk, keys,
**kwargs)``; this module is one, running the graph on microdag's ready-set
kernel (``_compat.sched``) and its hot loop (``drive``).  Imported only when
used: ``import microdag`` does not load it, nor Dask.

This module holds the public functions, their options and Dask's callbacks
(start, start_state, finish); ``_dask_run`` reads the graph (culling, the
tasks' calls), keeps the state Dask's per-task callbacks read, and runs the
tasks on the calling thread and its crew (see its docs for what a run keeps
and why it cannot hang).  With a ``pool`` given, its threads run every task
(as in Dask) while the calling thread waits for them: a pool whose threads
are all taken (a task calling ``get`` with its own pool) waits for them.
``get_processes`` (``_dask_processes``) runs the tasks in processes.
"""

from ._dask_run import Options, dask_state, execute, read_graph

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["get", "get_processes", "get_sync"]


def get(
    dsk: "Mapping[Any, Any]",
    keys: "Any",
    cache: "dict[Any, Any] | None" = None,
    num_workers: "int | None" = None,
    pool: "Any" = None,
    callbacks: "Any" = None,
    *,
    max_workers: "int | None" = None,
    retries: int = 0,
    timeout: "float | None" = None,
    **kwargs: "Any",
) -> "Any":
    """Compute ``keys`` of the Dask graph ``dsk`` on threads, as ``dask.threaded.get`` does.

    Args:
        dsk: a Dask graph: a mapping of keys to tasks (tuple tasks or
            ``dask._task_spec`` nodes), or a ``HighLevelGraph``.
        keys: a key, or a list of keys and lists of keys (nested as deep as
            wanted); lists come back as tuples.
        cache: values of keys the graph refers to without computing them.
        num_workers: threads to run on (default: the pool's size, else
            ``dask.config`` ``num_workers``, else the CPUs Dask counts).
        pool: a ``concurrent.futures.Executor`` or a
            ``multiprocessing.pool.ThreadPool`` whose threads run the work
            (default: Dask's ``pool`` option); a pool of processes runs the
            tasks in its processes, as :func:`get_processes` does.
        callbacks: Dask callbacks (``dask.callbacks.Callback`` tuples); the
            active ``Callback`` contexts when ``None``.
        max_workers: another name for ``num_workers`` (microdag's).
        retries: run a task that raised an ``Exception`` up to this many more
            times before its error ends the run (default 0).
        timeout: seconds a task may run; past them it fails with
            ``TimeoutError`` (and is retried when ``retries`` allows).  A
            Python thread cannot be stopped: the late task is left running in
            a thread of its own and its result, if it comes, is dropped.
        **kwargs: other options of Dask's schedulers, accepted and ignored.

    Returns:
        The value of ``keys``, shaped like it.

    Raises:
        KeyError: a requested key is not in the graph.
        ValueError: a task depends on a key that is neither in the graph nor
            in ``cache``, the graph has a cycle, or an option is invalid.
        BaseException: the first exception a task raised, itself.
    """
    from dask import config  # (an optional extra: loaded where it is used)

    pool = pool or config.get("pool", None)
    if pool is not None and _in_processes(pool):  # as Dask's threaded get: the tasks run in its processes
        return get_processes(dsk, keys, num_workers, pool, cache=cache, callbacks=callbacks,
                             max_workers=max_workers, retries=retries, timeout=timeout, **kwargs)
    return _on_threads(dsk, keys, cache, num_workers, pool, callbacks, max_workers=max_workers, retries=retries,
                       timeout=timeout)


def _on_threads(dsk: "Any", keys: "Any", cache: "dict[Any, Any] | None" = None, num_workers: "int | None" = None,
                pool: "Any" = None, callbacks: "Any" = None, *, max_workers: "int | None" = None, retries: int = 0,
                timeout: "float | None" = None, **kwargs: "Any") -> "Any":
    """:func:`get` on threads: those of ``pool`` (a pool of threads, or ``None``)."""
    if max_workers is not None:
        if num_workers is not None and num_workers != max_workers:
            raise ValueError(f"num_workers={num_workers!r} and max_workers={max_workers!r} disagree: "
                             "max_workers is another name for num_workers, give one")
        num_workers = max_workers
    options = Options(retries, timeout)
    workers = num_workers or _pool_size(pool)
    if not workers:
        from dask import config  # (as above)
        from dask.system import CPU_COUNT  # (as above; the CPUs this process may use, as Dask counts them)

        workers = config.get("num_workers", None) or CPU_COUNT
    return _run(dsk, keys, cache, callbacks, max(1, int(workers)), pool, options)


def get_sync(dsk: "Mapping[Any, Any]", keys: "Any", cache: "dict[Any, Any] | None" = None,
             callbacks: "Any" = None, *, retries: int = 0, timeout: "float | None" = None,
             **kwargs: "Any") -> "Any":
    """Compute ``keys`` of ``dsk`` in the calling thread, as ``dask.get`` does.

    Args, Returns and Raises as :func:`get` (``num_workers``, ``max_workers``
    and ``pool`` are ignored; under a ``timeout``, a task runs in a thread of
    its own while the calling thread waits for it).
    """
    return _run(dsk, keys, cache, callbacks, 1, None, Options(retries, timeout))


def get_processes(dsk: "Mapping[Any, Any]", keys: "Any", num_workers: "int | None" = None, pool: "Any" = None,
                  **kwargs: "Any") -> "Any":
    """Compute ``keys`` of ``dsk`` with its tasks in worker processes, as ``dask.multiprocessing.get`` does.

    The kernel runs in the calling process; each task goes to a process with
    its dependencies' values (pickled with cloudpickle) and its value comes
    back, released there once its last dependent has run.

    Args:
        dsk, keys, cache, callbacks, retries, timeout: as :func:`get`.
        num_workers: processes to start (default: Dask's ``num_workers``
            option, else the CPUs Dask counts); with ``pool``, its size.
        pool: a ``concurrent.futures`` executor or ``multiprocessing`` pool
            of processes to run the tasks (default: Dask's ``pool`` option,
            else one made for the call and shut down at its end).
        **kwargs: as :func:`get`.

    Returns:
        The value of ``keys``, shaped like it.

    Raises:
        As :func:`get`; a task's exception is raised as itself, with the
        worker's traceback in a note, or as ``RuntimeError`` if it does not
        pickle; ``TypeError``: a task that does not pickle.
    """
    from ._dask_processes import get_processes as run  # (a process pool: loaded when used)

    max_workers = kwargs.pop("max_workers", None)  # (another name for num_workers, as in get)
    if num_workers is None:
        num_workers = max_workers
    return run(_on_threads, dsk, keys, num_workers, pool, **kwargs)


def _in_processes(pool: "Any") -> bool:
    """Whether ``pool`` runs its work in other processes."""
    import concurrent.futures  # (heavy: only with a pool, which has loaded it already)
    import multiprocessing.pool  # (as above)

    if isinstance(pool, multiprocessing.pool.Pool):
        return not isinstance(pool, multiprocessing.pool.ThreadPool)
    return isinstance(pool, concurrent.futures.ProcessPoolExecutor)


def _pool_size(pool: "Any") -> int:
    if pool is None:
        return 0
    size = getattr(pool, "_max_workers", None)  # concurrent.futures
    if size is None:
        size = len(getattr(pool, "_pool", ()))  # multiprocessing.pool.ThreadPool
    return int(size or 0)


def _flat(keys: "Any", out: "list[Any]") -> "list[Any]":
    if isinstance(keys, list):
        for k in keys:
            _flat(k, out)
    else:
        out.append(keys)
    return out


def _nested(keys: "Any", values: "Mapping[Any, Any]") -> "Any":
    if isinstance(keys, list):
        return tuple(_nested(k, values) for k in keys)
    return values[keys]


def _run(dsk: "Any", keys: "Any", cache: "dict[Any, Any] | None", callbacks: "Any", workers: int,
         pool: "Any", options: "Options | None" = None) -> "Any":
    # (an optional extra: Dask is loaded only when its scheduler is used)
    from dask.callbacks import local_callbacks

    if cache is None:
        from dask import config  # (as above: Dask when used)

        cache = config.get("cache", None)
    kept = cache is not None  # Dask's cache option: the values live in it, as in Dask's state
    if cache is None:
        cache = {}
    if not hasattr(dsk, "items"):
        dsk = dsk.__dask_graph__()
    if type(dsk) is not dict:  # a HighLevelGraph or another mapping: one lookup a key from here on
        dsk = dict(dsk)
    wanted = _flat(keys, [])
    with local_callbacks(callbacks) as cbs:
        # Each callback is a (start, start_state, pretask, posttask, finish) tuple.
        starts, start_states, pretasks, posttasks, finishes = (
            [[f for f in column if f] for column in zip(*cbs)] if cbs else [[], [], [], [], []]
        )
        started: "list[Any]" = []
        state: "dict[str, Any]" = {}
        failed = True
        try:
            if cbs:  # callbacks are shown Dask's task objects, as Dask's schedulers show them
                from dask._task_spec import convert_legacy_graph  # (as above: Dask when used)

                dsk = convert_legacy_graph(dsk, all_keys=set(dsk) | set(cache))
                for cb in cbs:
                    if cb[0]:
                        cb[0](dsk)
                    started.append(cb)
            g = read_graph(dsk, wanted, cache)
            if start_states or pretasks or posttasks or finishes or kept:
                state = dask_state(g, cache)
                for f in start_states:
                    f(g.graph, state)
            out = execute(g, set(wanted), workers, pool, options or Options(), state, pretasks, posttasks)
            failed = False
        finally:
            for cb in started:
                if cb[4]:
                    cb[4](dsk, state, failed)
    return _nested(keys, out)
