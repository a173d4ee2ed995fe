"""microdag as Dask's local scheduler: ``dask.compute(x, scheduler=microdag.dask.get)``.

Dask documents its scheduler as a replaceable function, ``get(dsk, keys,
**kwargs)``; this module is one, running the graph on microdag's ready-set
kernel (``_compat.sched``) and its hot loop (``drive``).  Imported only when
used: ``import microdag`` does not load it, nor Dask.

What a call keeps, over ids ``0 .. n-1`` given to the culled graph's keys:

- ``nodes[i]``: the task, a ``dask._task_spec.GraphNode`` (Dask's own
  ``convert_legacy_graph`` turns tuple tasks, aliases and literals into
  these, and a node is executed by its own ``__call__``: Dask's semantics,
  not a copy of them);
- the kernel over the dependency edges, with the critical-path order;
- ``outputs[i]``: a task's result, dropped by ``drive`` once its last
  dependent has run, unless the key was asked for (``KEEP``): peak memory
  like Dask's;
- with Dask callbacks only, Dask's scheduler ``state`` dict (``waiting``,
  ``ready``, ``running``, ``finished``, ``cache``, ``dependencies``,
  ``dependents``, ``released``), updated under one lock around each task, so
  that ``dask.diagnostics.ProgressBar`` and friends read what they expect.

Why a run cannot hang: a worker waits only while some other worker runs a
task (which notifies when it is done); the last worker to go idle with work
left but nothing ready and nothing running returns (a graph with a cycle is
refused before it runs), and a failure sets the stop event every worker
checks between tasks.  With a ``pool`` given, its threads run every task (as
in Dask) while the calling thread waits for them: a pool whose threads are
all taken (a task calling ``get`` with its own pool) waits for them.
"""

import threading
import time
from functools import partial

from . import _compat
from ._nogc import NoGC

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Mapping
    from typing import Any

__all__ = ["get", "get_processes", "get_sync"]


def get(
    dsk: "Mapping[Any, Any]",
    keys: "Any",
    cache: "dict[Any, Any] | None" = None,
    num_workers: "int | None" = None,
    pool: "Any" = None,
    callbacks: "Any" = None,
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
        **kwargs: other options of Dask's schedulers, accepted and ignored.

    Returns:
        The value of ``keys``, shaped like it.

    Raises:
        KeyError: a requested key is not in the graph.
        ValueError: a task depends on a key that is neither in the graph nor
            in ``cache``, or the graph has a cycle.
        BaseException: the first exception a task raised, itself.
    """
    from dask import config  # (an optional extra: loaded where it is used)

    pool = pool or config.get("pool", None)
    if pool is not None and _in_processes(pool):  # as Dask's threaded get: the tasks run in its processes
        return get_processes(dsk, keys, num_workers, pool, cache=cache, callbacks=callbacks, **kwargs)
    return _on_threads(dsk, keys, cache, num_workers, pool, callbacks)


def _on_threads(dsk: "Any", keys: "Any", cache: "dict[Any, Any] | None" = None, num_workers: "int | None" = None,
                pool: "Any" = None, callbacks: "Any" = None, **kwargs: "Any") -> "Any":
    """:func:`get` on threads: those of ``pool`` (a pool of threads, or ``None``)."""
    workers = num_workers or _pool_size(pool)
    if not workers:
        from dask import config  # (as above)
        from dask.system import CPU_COUNT  # (as above; the CPUs this process may use, as Dask counts them)

        workers = config.get("num_workers", None) or CPU_COUNT
    return _run(dsk, keys, cache, callbacks, max(1, int(workers)), pool)


def get_sync(dsk: "Mapping[Any, Any]", keys: "Any", cache: "dict[Any, Any] | None" = None,
             callbacks: "Any" = None, **kwargs: "Any") -> "Any":
    """Compute ``keys`` of ``dsk`` in the calling thread, as ``dask.get`` does.

    Args, Returns and Raises as :func:`get` (``num_workers`` and ``pool`` are ignored).
    """
    return _run(dsk, keys, cache, callbacks, 1, None)


def get_processes(dsk: "Mapping[Any, Any]", keys: "Any", num_workers: "int | None" = None, pool: "Any" = None,
                  **kwargs: "Any") -> "Any":
    """Compute ``keys`` of ``dsk`` with its tasks in worker processes, as ``dask.multiprocessing.get`` does.

    The kernel runs in the calling process; each task goes to a process with
    its dependencies' values (pickled with cloudpickle) and its value comes
    back, released there once its last dependent has run.

    Args:
        dsk, keys, cache, callbacks: as :func:`get`.
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


def _call(node: "Any", deps: "tuple[Any, ...]", **values: "Any") -> "Any":
    """Run one task: its dependencies' values come in as keyword arguments, in order."""
    return node(dict(zip(deps, values.values())))


class _Graph:
    """A Dask graph culled to the requested keys, numbered for the kernel."""

    def __init__(self, dsk: "Mapping[Any, Any]", wanted: "list[Any]", cache: "Mapping[Any, Any]") -> None:
        # (an optional extra: Dask is loaded only when its scheduler is used)
        from dask._task_spec import DataNode, convert_legacy_graph

        graph = convert_legacy_graph(dsk, all_keys=set(dsk) | set(cache))
        index: "dict[Any, int]" = {}
        nodes: "list[Any]" = []
        deps: "list[tuple[Any, ...]]" = []
        stack: "list[Any]" = []
        push = stack.append
        for key in wanted:
            if key not in graph:
                if key not in cache:
                    raise KeyError(key)
                graph[key] = DataNode(key, cache[key])
            push(key)
        while stack:  # culling: what the requested keys need, and nothing else
            key = stack.pop()
            if key in index:
                continue
            node = graph[key]
            index[key] = len(nodes)
            nodes.append(node)
            mine = tuple(node.dependencies)
            deps.append(mine)
            for d in mine:
                if d not in index:
                    if d not in graph:
                        if d not in cache:
                            raise ValueError(f"Missing dependency {d!r} for dependents {{{key!r}}}")
                        graph[d] = DataNode(d, cache[d])
                    push(d)
        self.graph = graph
        self.index = index
        self.keys = list(index)
        self.nodes = nodes
        self.deps = deps
        at = index.__getitem__
        self.argdeps = [tuple(map(at, mine)) for mine in deps]


def _run(dsk: "Any", keys: "Any", cache: "dict[Any, Any] | None", callbacks: "Any", workers: int,
         pool: "Any") -> "Any":
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
            if starts:
                from dask._task_spec import convert_legacy_graph  # (as above: Dask when used)

                dsk = convert_legacy_graph(dsk)
                for cb in cbs:
                    if cb[0]:
                        cb[0](dsk)
                    started.append(cb)
            else:
                started = list(cbs)
            with NoGC():  # a few small objects per task, none of them garbage
                g = _Graph(dsk, wanted, cache)
            if start_states or pretasks or posttasks or finishes or kept:
                state = _dask_state(g, cache)
                for f in start_states:
                    f(g.graph, state)
            out = _execute(g, set(wanted), workers, pool, state, pretasks, posttasks)
            failed = False
        finally:
            for cb in started:
                if cb[4]:
                    cb[4](dsk, state, failed)
    return _nested(keys, out)


def _dask_state(g: _Graph, cache: "dict[Any, Any]") -> "dict[str, Any]":
    """The scheduler state Dask's callbacks read, at the start of a run."""
    dependents: "dict[Any, set[Any]]" = {k: set() for k in g.keys}
    for key, mine in zip(g.keys, g.deps):
        for d in mine:
            dependents[d].add(key)
    waiting = {key: set(mine) for key, mine in zip(g.keys, g.deps) if mine}
    return {
        "cache": cache,
        "dependencies": {key: set(mine) for key, mine in zip(g.keys, g.deps)},
        "dependents": dependents,
        "waiting": waiting,
        "waiting_data": {key: set(d) for key, d in dependents.items() if d},
        # Reversed: the kernel takes low ids first, and before() pops from the end.
        "ready": [key for key, mine in zip(g.keys, g.deps) if not mine][::-1],
        "running": set(),
        "finished": set(),
        "released": set(),
    }


def _call_watched(node: "Any", deps: "tuple[Any, ...]", key: "Hashable", hooks: "_Hooks", **values: "Any") -> "Any":
    """Run one task between Dask's ``pretask`` and ``posttask`` callbacks."""
    hooks.before(key)
    result = node(dict(zip(deps, values.values())))
    hooks.after(key, result)
    return result


class _Hooks:
    """Dask's callbacks around each task, and the state they read (under a lock)."""

    def __init__(self, g: _Graph, state: "dict[str, Any]", wanted: "set[Any]",
                 pretasks: "list[Any]", posttasks: "list[Any]") -> None:
        self.g = g
        self.state = state
        self.wanted = wanted
        self.pretasks = pretasks
        self.posttasks = posttasks
        self.lock = threading.Lock()

    def before(self, key: "Hashable") -> None:
        state = self.state
        with self.lock:
            ready = state["ready"]
            for j in range(len(ready) - 1, -1, -1):  # near the end, mostly
                if ready[j] == key:
                    del ready[j]
                    break
            state["running"].add(key)
            for f in self.pretasks:
                f(key, self.g.graph, state)

    def after(self, key: "Hashable", result: "Any") -> None:
        state = self.state
        with self.lock:
            waiting, ready = state["waiting"], state["ready"]
            for d in state["dependents"][key]:
                left = waiting[d]
                left.discard(key)
                if not left:
                    del waiting[d]
                    ready.append(d)
            state["cache"][key] = result
            for d in state["dependencies"][key]:
                users = state["waiting_data"].get(d)
                if users is not None:
                    users.discard(key)
                    if not users and d not in self.wanted:
                        del state["waiting_data"][d]
                        state["released"].add(d)
                        state["cache"].pop(d, None)
            state["running"].discard(key)
            state["finished"].add(key)
            ident = threading.current_thread().ident
            for f in self.posttasks:
                f(key, result, self.g.graph, state, ident)


def _execute(g: _Graph, wanted: "set[Any]", workers: int, pool: "Any", state: "dict[str, Any]",
             pretasks: "list[Any]", posttasks: "list[Any]") -> "dict[Any, Any]":
    """Run the culled graph; the values of the requested keys."""
    with NoGC():  # a few small objects per task, none of them garbage
        args = _drive_args(g, wanted, state, pretasks, posttasks)
    k, outputs = args[0], args[5]
    if workers <= 1 or len(outputs) <= 1:
        r = _compat.sched.drive(*args)
        if r is not None:
            raise r[1] if r[1] is not None else RuntimeError(f"task {g.keys[r[0]]!r} was not run")
    else:
        _Crew(k, args, min(workers, len(outputs))).run(pool)
    if k.remaining:  # pragma: no cover - only a cycle leaves work, and cycles are refused
        raise RuntimeError("the scheduler stopped with tasks left")
    return {key: outputs[g.index[key]] for key in wanted}


def _drive_args(g: _Graph, wanted: "set[Any]", state: "dict[str, Any]", pretasks: "list[Any]",
                posttasks: "list[Any]") -> "tuple[Any, ...]":
    """The kernel over the culled graph, reset, and the other arguments of its hot loop."""
    sched = _compat.sched
    n = len(g.keys)
    src = [d for mine in g.argdeps for d in mine]
    dst = [i for i, mine in enumerate(g.argdeps) for _ in mine]
    k = sched.Kernel(n, src, dst)
    cycle = k.find_cycle()
    if cycle is not None:
        raise ValueError(f"Cycle detected in the graph: {[g.keys[i] for i in cycle]!r}")
    k.reset()
    names = tuple(f"a{j}" for j in range(max(map(len, g.argdeps), default=0)))
    kwnames = [names[: len(mine)] for mine in g.argdeps]
    if state:  # Dask's state kept up to date, for its callbacks or its cache option
        hooks = _Hooks(g, state, wanted, pretasks, posttasks)
        fns: "list[Callable[..., Any]]" = [
            partial(_call_watched, node, mine, key, hooks) for node, mine, key in zip(g.nodes, g.deps, g.keys)
        ]
    else:
        fns = [partial(_call, node, mine) if mine else node for node, mine in zip(g.nodes, g.deps)]
    keep = bytearray(n)
    for key in wanted:
        keep[g.index[key]] = sched.KEEP
    zeros = [0.0] * n
    return (k, fns, kwnames, g.argdeps, [()] * n, [None] * n, [0] * n, zeros, list(zeros), time.perf_counter,
            bytes(keep))


class _Crew:
    """Worker threads driving one kernel: the calling thread and ``workers - 1`` others."""

    def __init__(self, k: "Any", args: "tuple[Any, ...]", workers: int) -> None:
        self.k = k
        self.cond = threading.Condition()
        self.lock = threading.RLock()  # the pure twin's kernel operations
        self.idle = [0]
        self.live = workers
        self.stop = threading.Event()
        self.errors: "list[BaseException]" = []
        self.workers = workers
        self.args = args + (self.lock, self.idle, [None], self.stop, None)

    def run(self, pool: "Any") -> None:
        """Run the graph; re-raise the first exception a task raised."""
        helpers = self.workers - 1 if pool is None else self.workers
        threads: "list[threading.Thread]" = []
        futures: "list[Any]" = []
        try:
            for _ in range(helpers):
                if pool is None:
                    t = threading.Thread(target=self.work, name="microdag dask worker", daemon=True)
                    t.start()
                    threads.append(t)
                elif hasattr(pool, "submit"):  # a concurrent.futures executor
                    futures.append(pool.submit(self.work))
                else:  # a multiprocessing.pool.ThreadPool
                    futures.append(pool.apply_async(self.work))
            if pool is None:
                self.work()
            else:  # as in Dask, a pool given runs every task; this thread waits (and takes Ctrl-C)
                with self.cond:
                    while self.live and not self.errors:
                        # Timed: CPython can miss a SIGINT that lands as a wait begins;
                        # the next wake-up takes it.
                        self.cond.wait(0.05)
        except BaseException as exc:  # Ctrl-C in the calling thread: stop the others
            self.halt(exc)
        finally:
            # On an error or Ctrl-C, return at once as Dask does: the tasks still
            # running finish in their threads, which then see the stop event.
            for t in threads if not self.errors else ():
                t.join()
            for f in futures if not self.errors else ():
                if hasattr(f, "result"):
                    f.result()
                else:
                    f.get()
        if self.errors:
            raise self.errors[0]

    def halt(self, exc: BaseException) -> None:
        with self.cond:
            self.errors.append(exc)
            self.stop.set()
            self.cond.notify_all()

    def work(self) -> None:
        """One worker: the kernel's hot loop, then wait for work while others run."""
        try:
            self._loop()
        except BaseException as exc:
            self.halt(exc)
        finally:
            with self.cond:
                self.live -= 1
                self.cond.notify_all()

    def _loop(self) -> None:
        drive = _compat.sched.drive
        args, k, cond, idle, stop, lock = self.args, self.k, self.cond, self.idle, self.stop, self.lock
        while not stop.is_set():
            r = drive(*args)
            if r is not None:
                i, exc = r
                if i < 0:  # tasks became ready while workers wait
                    with cond:
                        cond.notify_all()
                    continue
                self.halt(exc if exc is not None else RuntimeError(f"task {i} was not run"))
                return
            with cond:
                if stop.is_set() or k.remaining == 0:
                    cond.notify_all()
                    return
                # Count ourselves idle before looking again, so that a task
                # finishing in another thread either sees us or we see it.
                idle[0] += 1
                try:
                    with lock:
                        nothing = k.ready == 0
                    if nothing:
                        # Another worker runs a task (the graph has no cycle):
                        # it notifies when it makes work or ends the run.
                        cond.wait()
                finally:
                    idle[0] -= 1
