"""Running a Dask graph on microdag's kernel: the graph read, the tasks' calls, the crew.

The engine behind ``microdag.dask`` (which holds the public functions and
their options).  What a run keeps, over ids ``0 .. n-1`` given to the culled
graph's keys in the order a depth-first walk from the requested keys meets
them (``_Graph``):

- ``fns[i]``, ``args[i]``, ``consts[i]``: task ``i`` is called as
  ``fns[i](*values of args[i], *consts[i])`` by the kernel's hot loop
  (``drive``, every value by position).  A legacy tuple task of the simple
  shape (a callable, then keys, then literals that cannot be keys: numbers,
  strings, ``None``, bytes) is its own function and arguments, called
  directly, as Dask's ``Task`` would call it; anything else (nested tasks,
  lists, dicts, aliases, literals, Dask's own task objects) is read by
  Dask's ``convert_legacy_task`` and called by its own ``__call__``: Dask's
  semantics, not a copy of them, where they are not provably this simple;
- the kernel over the dependency edges, with user priorities giving the
  depth-first order (the latest met first): a reduction's inputs are
  consumed as they are made, as ``dask.order`` would have them;
- ``outputs[i]``: a task's result, dropped by ``drive`` once its last
  dependent has run, unless the key was asked for (``KEEP``);
- with Dask callbacks only, Dask's scheduler ``state`` dict, updated under
  one lock around each task (``_Hooks``).

Why a run cannot hang: a worker waits only while some other worker runs a
task (which notifies when it is done); the last worker to go idle with work
left but nothing ready and nothing running returns (a graph with a cycle is
refused before it runs), and a failure sets the stop event every worker
checks between tasks.  A task under a timeout is abandoned at its deadline
(``runner._call.call_with_timeout``: a Python thread cannot be stopped).
"""

import threading
import time
from functools import partial

from . import _compat
from ._nogc import NoGC
from ._retry import Retry

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Mapping
    from typing import Any

__all__ = ["Options", "dask_state", "execute", "read_graph"]

# Arguments of a tuple task that Dask reads as a key when the graph has that
# key and as the literal otherwise (``isinstance(a, (int, float, str,
# tuple))`` in ``convert_legacy_task``), and literals that are never keys.
_KEYLIKE = frozenset({int, float, str, bool})
_LITERAL = frozenset({type(None), bytes, complex})
_KEYTYPES = _KEYLIKE | {tuple}


class _Known:
    """The keys a task may refer to: the graph's and the cache's."""

    __slots__ = ("dsk", "cache")

    def __init__(self, dsk: "Mapping[Any, Any]", cache: "Mapping[Any, Any]") -> None:
        self.dsk = dsk
        self.cache = cache

    def __contains__(self, key: object) -> bool:
        return key in self.dsk or key in self.cache


class Options:
    """microdag's own powers for each task: retries and a timeout (both off by default)."""

    __slots__ = ("retry", "timeout")

    def __init__(self, retries: int = 0, timeout: "float | None" = None) -> None:
        if type(retries) is not int or retries < 0:
            raise ValueError(f"retries must be a whole number of at least 0, not {retries!r}")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not timeout > 0):
            raise ValueError(f"timeout must be a number of seconds above 0, or None, not {timeout!r}")
        self.retry = Retry(retries) if retries else None
        self.timeout = None if timeout is None else float(timeout)

    def __bool__(self) -> bool:
        return self.retry is not None or self.timeout is not None


def _call_node(node: "Any", deps: "tuple[Any, ...]", *values: "Any") -> "Any":
    """Run one of Dask's task objects: its dependencies' values come in by position, in order."""
    return node(dict(zip(deps, values)))


def _key(a: "Any", known: "Any") -> bool:
    """Whether Dask reads the argument ``a`` of a tuple task as a key, and
    nothing else could it be (not a nested task)."""
    t = type(a)
    if t in _KEYLIKE or (t is tuple and not (a and callable(a[0]))):
        try:
            return a in known
        except TypeError:  # a tuple holding something unhashable
            return False
    return False


def _all_keys(a: "list[Any]", known: "Any") -> bool:
    """Whether every item of the list ``a`` is a key (:func:`_key`), checked in bulk."""
    if not set(map(type, a)) <= _KEYTYPES:
        return False
    try:
        if not all(map(known.__contains__, a)):
            return False
    except TypeError:  # a tuple holding something unhashable
        return False
    return not any(e and callable(e[0]) for e in a if type(e) is tuple)


class _Shaped:
    """A tuple task whose arguments are keys, literals and lists of keys, in any
    order: called with the keys' values by position, in the order they appear."""

    __slots__ = ("fn", "layout")

    def __init__(self, fn: "Callable[..., Any]", layout: "tuple[tuple[int, Any], ...]") -> None:
        self.fn = fn
        self.layout = layout  # per argument: (0, _) a key's value, (1, n) a list of n, (2, x) the literal x

    def __call__(self, *values: "Any") -> "Any":
        args: "list[Any]" = []
        j = 0
        for kind, x in self.layout:
            if kind == 0:
                args.append(values[j])
                j += 1
            elif kind == 1:
                args.append(list(values[j : j + x]))  # as Dask's List: a new list
                j += x
            else:
                args.append(x)
        return self.fn(*args)


def _shape(task: "tuple[Any, ...]", known: "Any") -> "tuple[_Shaped, tuple[Any, ...]] | None":
    """A tuple task of keys, literals that cannot be keys and non-empty lists
    of keys, as a call and the keys it takes; ``None`` for anything else."""
    layout: "list[tuple[int, Any]]" = []
    keys: "list[Any]" = []
    for a in task[1:]:
        t = type(a)
        if _key(a, known):
            layout.append((0, None))
            keys.append(a)
        elif t is list and a and _all_keys(a, known):
            layout.append((1, len(a)))
            keys.extend(a)
        elif t in _KEYLIKE or t in _LITERAL:
            layout.append((2, a))
        else:
            return None
    return _Shaped(task[0], tuple(layout)), tuple(keys)


class _Graph:
    """A Dask graph culled to the requested keys, numbered for the kernel."""

    def __init__(self, dsk: "dict[Any, Any]", wanted: "list[Any]", cache: "Mapping[Any, Any]") -> None:
        # (an optional extra: Dask is loaded only when its scheduler is used)
        from dask._task_spec import Alias, DataNode, GraphNode, convert_legacy_task

        known: "Any" = _Known(dsk, cache) if cache else dsk
        index: "dict[Any, int]" = {}
        keys: "list[Any]" = []
        fns: "list[Any]" = []
        args: "list[tuple[Any, ...]]" = []  # the keys whose values come first, in order
        consts: "list[tuple[Any, ...]]" = []
        cached: "dict[Any, Any]" = {}
        stack: "list[Any]" = []
        push, pop, keylike, literal, empty = stack.append, stack.pop, _KEYLIKE, _LITERAL, ()
        for key in wanted:
            if key not in dsk and key not in cache:
                raise KeyError(key)
            push(key)
        while stack:  # culling: what the requested keys need, and nothing else
            key = pop()
            if key in index:
                continue
            index[key] = len(keys)
            keys.append(key)
            task = dsk.get(key, index)  # (index: a marker no task can be)
            if type(task) is tuple and task and callable(task[0]):
                m = 0  # the leading arguments that are keys
                lit = False  # a literal came
                for a in task[1:]:
                    t = type(a)
                    if t in keylike:
                        if a in known:
                            if lit:  # a key after a literal
                                break
                            m += 1
                        else:
                            lit = True
                    elif t in literal:
                        lit = True
                    elif t is tuple and not lit and not (a and callable(a[0])):
                        try:
                            if a not in known:
                                break  # a literal tuple: Dask's own reading
                        except TypeError:  # a tuple holding something unhashable
                            break
                        m += 1
                    else:
                        break  # a nested task, a list, another object...: not this simple
                else:  # the function, its keys, then literals: called as they are
                    mine = task[1 : m + 1]
                    fns.append(task[0])
                    args.append(mine)
                    consts.append(task[m + 1 :] if lit else empty)
                    for d in mine:
                        if d not in index:
                            push(d)
                    continue
                shaped = _shape(task, known)  # keys after literals, lists of keys
                if shaped is not None:
                    fns.append(shaped[0])
                    args.append(shaped[1])
                    consts.append(empty)
                    for d in shaped[1]:
                        if d not in index:
                            push(d)
                    continue
            node: "Any" = index if task is index else convert_legacy_task(key, task, known)
            if node is index or (type(node) is Alias and node.target == key):  # (Dask drops the latter)
                if key not in cache:
                    raise KeyError(key)
                node = cached[key] = DataNode(key, cache[key])
            elif not isinstance(node, GraphNode):
                node = DataNode(key, node)
            mine = tuple(node.dependencies)
            for d in mine:
                if d not in index:
                    if d not in known:
                        raise ValueError(f"Missing dependency {d!r} for dependents {{{key!r}}}")
                    push(d)
            fns.append(partial(_call_node, node, mine) if mine else node)
            args.append(mine)
            consts.append(empty)
        self.dsk = dsk
        self.cached = cached
        self.index = index
        self.keys = keys
        self.fns = fns
        self.args = args
        self.consts = consts

    @property
    def graph(self) -> "dict[Any, Any]":
        """The graph Dask's callbacks are shown: the tasks, and the cached values the run used."""
        return {**self.dsk, **self.cached} if self.cached else self.dsk


def read_graph(dsk: "dict[Any, Any]", wanted: "list[Any]", cache: "Mapping[Any, Any]") -> _Graph:
    """The culled graph of ``wanted`` in ``dsk`` (see the module docs)."""
    with NoGC():  # a few small objects per task, none of them garbage
        return _Graph(dsk, wanted, cache)


def dask_state(g: _Graph, cache: "dict[Any, Any]") -> "dict[str, Any]":
    """The scheduler state Dask's callbacks read, at the start of a run."""
    deps = [set(mine) for mine in g.args]
    dependents: "dict[Any, set[Any]]" = {k: set() for k in g.keys}
    for key, mine in zip(g.keys, deps):
        for d in mine:
            dependents[d].add(key)
    return {
        "cache": cache,
        "dependencies": dict(zip(g.keys, deps)),
        "dependents": dependents,
        "waiting": {key: set(mine) for key, mine in zip(g.keys, deps) if mine},
        "waiting_data": {key: set(d) for key, d in dependents.items() if d},
        # In id order: the kernel takes the highest ids first, and before() looks from the end.
        "ready": [key for key, mine in zip(g.keys, deps) if not mine],
        "running": set(),
        "finished": set(),
        "released": set(),
    }


def _apply(fn: "Callable[..., Any]", args: "tuple[Any, ...]") -> "Any":
    return fn(*args)


class _Guarded:
    """A task under microdag's options: tried again on failure, abandoned past its timeout."""

    __slots__ = ("fn", "key", "options")

    def __init__(self, fn: "Callable[..., Any]", key: "Hashable", options: Options) -> None:
        self.fn = fn
        self.key = key
        self.options = options

    def __call__(self, *args: "Any") -> "Any":
        retry, timeout = self.options.retry, self.options.timeout
        number = 1
        while True:
            try:
                if timeout is None:
                    return self.fn(*args)
                from .pools._attempt import Attempt  # (the runner's layer: only when a timeout is asked for)
                from .runner._call import call_with_timeout  # (as above)

                att = Attempt(-1, -1, None, number, str(self.key), timeout, "", "dask")
                return call_with_timeout(_apply, {"fn": self.fn, "args": args}, att)
            except BaseException as exc:
                delay = None if retry is None else retry.delay(exc, number)
                if delay is None:
                    raise
                if delay:  # pragma: no cover - Options gives no delay
                    time.sleep(delay)
                number += 1


class _Watched:
    """A task between Dask's ``pretask`` and ``posttask`` callbacks."""

    __slots__ = ("fn", "key", "hooks")

    def __init__(self, fn: "Callable[..., Any]", key: "Hashable", hooks: "_Hooks") -> None:
        self.fn = fn
        self.key = key
        self.hooks = hooks

    def __call__(self, *args: "Any") -> "Any":
        self.hooks.before(self.key)
        result = self.fn(*args)
        self.hooks.after(self.key, result)
        return result


class _Hooks:
    """Dask's callbacks around each task, and the state they read (under a lock)."""

    def __init__(self, g: _Graph, state: "dict[str, Any]", wanted: "set[Any]",
                 pretasks: "list[Any]", posttasks: "list[Any]") -> None:
        self.graph = g.graph
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
                f(key, self.graph, state)

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
                f(key, result, self.graph, state, ident)


def execute(g: _Graph, wanted: "set[Any]", workers: int, pool: "Any", options: Options,
            state: "dict[str, Any]", pretasks: "list[Any]", posttasks: "list[Any]") -> "dict[Any, Any]":
    """Run the culled graph on ``workers`` threads; the values of the requested keys."""
    with NoGC():  # a few small objects per task, none of them garbage
        args = _drive_args(g, wanted, options, state, pretasks, posttasks)
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


def _drive_args(g: _Graph, wanted: "set[Any]", options: Options, state: "dict[str, Any]",
                pretasks: "list[Any]", posttasks: "list[Any]") -> "tuple[Any, ...]":
    """The kernel over the culled graph, reset, and the other arguments of its hot loop."""
    sched = _compat.sched
    n = len(g.keys)
    argdeps, k = sched.link(g.index, g.args)  # (ids looked up in bulk, in the kernel's module)
    cycle = k.find_cycle()
    if cycle is not None:
        raise ValueError(f"Cycle detected in the graph: {[g.keys[i] for i in cycle]!r}")
    k.set_priorities(range(n))  # depth first: the latest met runs first
    k.reset()
    fns = g.fns
    if options:
        fns = [_Guarded(fn, key, options) for fn, key in zip(fns, g.keys)]
    if state:  # Dask's state kept up to date, for its callbacks or its cache option
        hooks = _Hooks(g, state, wanted, pretasks, posttasks)
        fns = [_Watched(fn, key, hooks) for fn, key in zip(fns, g.keys)]
    keep = bytearray(n)
    for key in wanted:
        keep[g.index[key]] = sched.KEEP
    zeros = [0.0] * n
    return (k, fns, [()] * n, argdeps, g.consts, [None] * n, [0] * n, zeros, list(zeros),
            time.perf_counter, bytes(keep))


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
