"""A Dask cluster as a pool: ``flow.run(executor=client)`` with a ``distributed.Client``.

Each attempt is a task of the cluster (``client.submit(_Call(fn), kwargs,
attempt, ...)``: ``invoke`` on a worker).  Outputs stay on the cluster: a
finished attempt is reported as :class:`Remote` (its future), a dependent
step's keyword arguments carry the futures of its dependencies' outputs, and
Dask moves the data from worker to worker.  Only what this process needs
comes back (``Remote.fetch``, ``local_all``): the outputs a run returns, what
a store records, the list a map step maps over.

Ahead of time: waiting for each step to finish before submitting the next
would cost a round trip to the client per hop of a chain.  So when an
attempt is submitted, the steps that could only follow it (``all_success``
dependents, plain steps: no map, no cache; every dependency running or done)
are submitted too, their arguments holding the running futures, and so on
down the graph (``Ahead``, given by the runner).  Such a task is *adopted*
when its step is really started; if a dependency fails, is skipped or times
out, the tasks submitted ahead on it are cancelled and the runner decides, as
it would on any backend.

Dask cannot interrupt a running task: an attempt past its timeout is reported
as timed out and abandoned (cancelled, its result dropped), and its slot is
not reused until the cluster lets go of it.  ``distributed`` is imported here
only: ``import microdag`` never imports it.  :func:`connect` gives the client
that ``--executor dask`` or ``dask://HOST:PORT`` names; :class:`AwaitDask` is
the pool for ``arun``.

State: ``_running`` (future -> [attempt, deadline]: attempts the runner
started), ``_abandoned`` (futures given up on), ``_early`` (step id ->
[future, attempt]: tasks submitted ahead, not yet adopted), ``_tasks`` (step
id -> its future, running or ahead), ``_deadlines`` (a heap), ``_new``
(futures submitted since the last wait, not yet watched), ``_done`` (futures
the cluster finished, put there by their watchers on the client's event
loop: ``wait`` takes from it, so a completion costs O(1) however many tasks
are out).
"""

import asyncio
import contextlib
import heapq
import importlib
import os
import pickle
import queue
import time
import uuid

from . import until_deadline
from ._attempt import Captured, Grown, Remote, invoke

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any, Protocol

    from . import Outcome
    from ._attempt import Attempt

    class Ahead(Protocol):
        """What the runner tells a pool about steps it may submit ahead."""

        def after(self, step: int) -> "Iterable[int]": ...
        def call(self, step: int, futures: "dict[int, Any]") -> "tuple[Attempt, Callable[..., Any], dict[str, Any]] | None": ...


__all__ = ["AwaitDask", "DaskPool", "connect"]


def connect(spec: str, workers: "int | None" = None) -> "Any":
    """A context manager giving the ``distributed.Client`` that ``spec`` names:
    ``"dask"``, a ``LocalCluster`` of worker processes on this machine
    (``workers`` of them, default: one per CPU, one thread each), closed on
    exit; ``"dask://HOST:PORT"`` (or ``tcp://``, ``tls://``...), a client of
    the scheduler there.

    Raises:
        ImportError: ``distributed`` is not installed (the message says how).
        OSError: no scheduler answers at the address (the message names it).
    """
    try:
        distributed: Any = importlib.import_module("distributed")  # (untyped in parts: Any here)
    except ImportError as exc:
        raise ImportError(
            f"--executor {spec} needs Dask distributed: pip install 'microdag[dask]'") from exc

    @contextlib.contextmanager
    def client() -> "Any":
        if spec == "dask":
            n = workers or os.cpu_count() or 1
            with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                          dashboard_address=":0") as cluster, distributed.Client(cluster) as c:
                yield c
            return
        address = "tcp://" + spec[len("dask://"):] if spec.startswith("dask://") else spec
        try:
            c = distributed.Client(address, timeout="5s")
        except OSError as exc:
            raise OSError(f"no Dask scheduler answered at {address} ({exc})") from exc
        with c:
            yield c

    return client()


def _unwrap(value: "Any") -> "Any":
    """What Dask is given for an argument: the future of an output on the cluster."""
    if type(value) is Remote:
        return value.future
    if type(value) is list and any(type(v) is Remote for v in value):
        return [_unwrap(v) for v in value]
    return value


class DaskPool:
    """A ``distributed.Client``'s cluster (see the module docs)."""

    def __init__(self, client: "Any", size: int, ahead: "Ahead | None" = None) -> None:
        self._client = client
        self._size = size
        self._ahead = ahead
        self._running: dict[Any, list[Any]] = {}
        self._abandoned: set[Any] = set()
        self._early: dict[int, list[Any]] = {}
        self._tasks: dict[int, Any] = {}  # step id -> its future, running or submitted ahead
        self._deadlines: list[tuple[float, int, Any]] = []  # heap of (deadline, seq, future)
        self._done: queue.SimpleQueue[Any] = queue.SimpleQueue()  # futures the cluster finished
        self.put: Callable[[Any], None] = self._done.put  # (how a finished future is reported)
        self._keys = 0
        self._new: list[Any] = []  # futures submitted, not yet watched (see _track)
        self._watching: set[Any] = set()  # the watchers' tasks (touched on the client's loop only)
        self._done_callback: Any = None
        try:  # a coroutine ending when a future ends, then calling back (on the client's loop)
            from distributed.client import done_callback  # (distributed: an optional extra)

            self._done_callback = done_callback
        except ImportError:  # (a version without it: Future.add_done_callback, one at a time)
            pass
        self._token = uuid.uuid4().hex  # (keys of other runs on the same cluster differ)
        self._calls: dict[int, _Call] = {}  # id(fn) -> the task function that runs it

    def free(self) -> int:
        return self._size - len(self._running) - len(self._abandoned)

    def busy(self) -> int:
        return len(self._running) + len(self._abandoned)

    def _submit(self, attempt: "Attempt", fn: "Callable[..., Any]", kwargs: "dict[str, Any]") -> "Any":
        self._keys += 1
        args = {name: _unwrap(value) for name, value in kwargs.items()}
        lists = tuple(name for name, value in kwargs.items()
                      if type(value) is list and value is not args[name])  # (lists of outputs on the cluster)
        call = self._calls.get(id(fn))
        if call is None or call.fn is not fn:
            call = self._calls[id(fn)] = _Call.of(fn)
        # The key's first word is the function's name, as Dask names its own
        # tasks: its scheduler groups tasks by that word, and a group per step
        # would cost it dearly on a flow of many steps.
        try:
            future = self._client.submit(call, args, attempt, lists, pure=False,
                                         key=f"{call.name}-{self._keys}{self._token}-{attempt.name[:80]}")
        except Exception as exc:  # (an argument or the function does not pickle, the client is closed)
            message = f"{attempt.describe()} could not be sent to the Dask cluster: {exc}"
            try:
                error = type(exc)(message)
            except Exception:  # (an exception type that takes other arguments)
                error = RuntimeError(message)
            raise error from exc
        self._new.append(future)
        return future

    def _track(self) -> None:
        """Have the futures submitted since the last call put on ``_done`` when
        they end: one wake-up of the client's event loop for them all (a
        future's ``add_done_callback`` costs one each, and a hop through a
        thread pool per completion)."""
        new, self._new = self._new, []
        if self._done_callback is None:
            for future in new:
                future.add_done_callback(self.put)
        else:
            self._client.loop.add_callback(self._watch, new)

    async def _watch(self, futures: "list[Any]") -> None:
        """(On the client's event loop.)  A watcher per future."""
        watching, put, done_callback = self._watching, self.put, self._done_callback
        for future in futures:
            task = asyncio.ensure_future(done_callback(future, put))
            watching.add(task)  # (the loop itself holds its tasks weakly)
            task.add_done_callback(watching.discard)

    def submit(self, attempt: "Attempt", fn: "Callable[..., Any]", kwargs: "dict[str, Any]") -> None:
        early = self._early.pop(attempt.step, None) if attempt.unit < 0 else None
        if early is not None and early[1].number == attempt.number:
            future = early[0]  # submitted ahead: adopted
            if future.done():  # (its completion was seen before it was adopted)
                self.put(future)
        else:
            if early is not None:
                early[0].cancel()
            future = self._submit(attempt, fn, kwargs)
        self._running[future] = [attempt, None]
        if attempt.timeout is not None:
            deadline = self._running[future][1] = time.monotonic() + attempt.timeout
            self._keys += 1
            heapq.heappush(self._deadlines, (deadline, self._keys, future))
        if attempt.unit < 0:
            self._tasks[attempt.step] = future
            if self._ahead is not None:
                self._submit_ahead(attempt.step)

    def _submit_ahead(self, step: int) -> None:
        """Submit what can only follow ``step`` now, as far down the graph as it goes."""
        ahead = self._ahead
        assert ahead is not None
        todo = [step]
        while todo:
            for nxt in ahead.after(todo.pop()):
                if nxt in self._early:
                    continue
                call = ahead.call(nxt, self._tasks)
                if call is None:
                    continue
                attempt, fn, kwargs = call
                future = self._submit(attempt, fn, kwargs)
                self._early[nxt] = [future, attempt]
                self._tasks[nxt] = future
                todo.append(nxt)

    def _drop_ahead_of(self, step: int) -> None:
        """``step`` did not succeed: the tasks submitted ahead on it (and on them) go."""
        self._tasks.pop(step, None)
        ahead = self._ahead
        if ahead is None:
            return
        todo = [step]
        while todo:
            for nxt in ahead.after(todo.pop()):
                early = self._early.pop(nxt, None)
                if early is not None:
                    early[0].cancel()
                    self._tasks.pop(nxt, None)
                    todo.append(nxt)

    def wait(self, timeout: "float | None") -> "list[Outcome]":
        if self._new:
            self._track()

        if not self._running and not self._abandoned:
            if timeout:
                time.sleep(timeout)
            return []
        heap = self._deadlines
        timeout = until_deadline(timeout, [heap[0][0]] if heap else [])
        finished = []
        try:
            finished.append(self._done.get(timeout=timeout) if timeout != 0 else self._done.get_nowait())
            while True:
                finished.append(self._done.get_nowait())
        except queue.Empty:
            pass
        out: list[Outcome] = []
        now = time.monotonic()
        for future in finished:
            if future in self._abandoned:
                self._abandoned.discard(future)
                continue
            entry = self._running.pop(future, None)
            if entry is None:
                continue  # a task submitted ahead, reported when it is adopted (or one dropped)
            attempt, deadline = entry
            if deadline is not None and now >= deadline:
                out.append((attempt, False, attempt.timed_out("its result came too late")))
            elif future.status == "finished":
                out.append((attempt, True, Remote(future)))
                continue
            else:
                out.append((attempt, False, _error_of(future)))
            if attempt.unit < 0:
                self._drop_ahead_of(attempt.step)
        out.extend(self._past_deadlines(now))
        return out

    def _past_deadlines(self, now: float) -> "list[Outcome]":
        """The running attempts past their deadline: abandoned (see the module docs)."""
        out: list[Outcome] = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, _, future = heapq.heappop(heap)
            entry = self._running.pop(future, None)
            if entry is None:
                continue  # it ended in time
            attempt = entry[0]
            future.cancel()
            if not future.done():
                self._abandoned.add(future)
            if attempt.unit < 0:
                self._drop_ahead_of(attempt.step)
            out.append((attempt, False, attempt.timed_out(
                "Dask cannot stop a running task: it was abandoned, and its slot is not reused until it ends")))
        return out

    def kill_running(self) -> "list[Attempt]":
        """Cancel the running attempts and those submitted ahead; return the running ones."""
        attempts = [attempt for attempt, _ in self._running.values()]
        for future in [*self._running, *(e[0] for e in self._early.values())]:
            future.cancel()
        self._running.clear()
        self._early.clear()
        self._tasks.clear()
        return attempts

    def close(self) -> None:
        for early in self._early.values():
            early[0].cancel()
        self._early.clear()
        self._tasks.clear()
        self._running.clear()
        self._abandoned.clear()
        self._new.clear()


class AwaitDask:
    """A :class:`DaskPool` for ``arun``: ``wait`` is a coroutine of the
    caller's event loop, woken when the cluster finishes a task."""

    def __init__(self, pool: DaskPool) -> None:
        self.pool = pool
        loop = asyncio.get_running_loop()
        event = self._event = asyncio.Event()
        done = pool.put

        def put(future: "Any") -> None:
            done(future)
            loop.call_soon_threadsafe(event.set)

        pool.put = put
        self.free, self.busy, self.submit = pool.free, pool.busy, pool.submit
        self.kill_running, self.close = pool.kill_running, pool.close

    async def wait(self, timeout: "float | None") -> "list[Outcome]":
        pool, event = self.pool, self._event
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            event.clear()
            out = pool.wait(0)  # (what finished, and the attempts past their deadline)
            if out or (end is not None and time.monotonic() >= end):
                return out
            heap = pool._deadlines
            left = until_deadline(None if end is None else end - time.monotonic(), [heap[0][0]] if heap else [])
            try:
                await asyncio.wait_for(event.wait(), left)
            except TimeoutError:
                pass


class _Call:
    """The task function of one step function, made once per run: its name is
    the first word of the task keys.  A function of a module registered with
    ``cloudpickle.register_pickle_by_value`` (Dask's way to send code the
    workers cannot import) travels by value: pickled once, here."""

    __slots__ = ("fn", "name", "blob")

    def __init__(self, fn: "Callable[..., Any]", blob: "bytes | None" = None) -> None:
        self.fn = fn
        self.name = str(getattr(fn, "__name__", "step"))[:80] or "step"
        self.blob = blob

    @classmethod
    def of(cls, fn: "Callable[..., Any]") -> "_Call":
        import cloudpickle  # (cloudpickle: an optional extra)

        if getattr(fn, "__module__", None) in cloudpickle.list_registry_pickle_by_value():
            return cls(fn, cloudpickle.dumps(fn))
        return cls(fn)

    def __call__(self, kwargs: "dict[str, Any]", attempt: "Attempt", lists: "tuple[str, ...]") -> "Any":
        # An output that a worker captured the prints of comes as Captured, one
        # of a step that added steps as Grown: the step is given its value
        # (alone, or in a list of a map's outputs).
        for name, value in kwargs.items():
            if type(value) is Grown or type(value) is Captured:
                kwargs[name] = _value(value)
        for name in lists:
            kwargs[name] = [_value(v) for v in kwargs[name]]
        return invoke(self.fn, kwargs, attempt)

    def __reduce__(self) -> "Any":
        if self.blob is not None:
            return (_by_value, (self.blob,))
        return (_Call, (self.fn,))


def _value(v: "Any") -> "Any":
    """An output as the step gave it, out of its :class:`Grown` and :class:`Captured`."""
    if type(v) is Grown:
        v = v.value
    return v.value if type(v) is Captured else v


def _by_value(blob: bytes) -> _Call:
    return _Call(pickle.loads(blob))


def _error_of(future: "Any") -> BaseException:
    """The exception of a task that did not finish (a cancelled one: CancelledError)."""
    try:
        error = future.exception()
    except BaseException as exc:  # cancelled, or the cluster is gone
        return exc
    return error if error is not None else RuntimeError(f"the Dask task {future.key} ended {future.status}")
