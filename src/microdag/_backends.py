"""Where steps run when not in the runner's own threads.

Two pools share one small interface used by the runner's dispatch loop:
``free()`` (slots to fill), ``submit(i, fn, kwargs, timeout)``,
``wait(timeout) -> [(i, ok, value)]`` and ``close()``.

- :class:`ProcessPool`: worker processes started with ``forkserver`` (or
  ``spawn`` where there is none; never ``fork`` from a threaded parent), one
  duplex pipe each, so the runner knows which process runs which step.  A
  step past its timeout gets its process killed and replaced; a process
  that dies mid-step (``os._exit``, a signal) is detected by the end of its
  pipe and replaced, and the step fails with :class:`ChildProcessError`.

  Data flow::

      runner --(i, fn, kwargs)--> pipe --> worker: fn(**kwargs)
      runner <--(i, ok, value)--- pipe <-- worker

- :class:`ExecutorPool`: any ``concurrent.futures.Executor``; a step past its
  timeout is cancelled if it has not started, else abandoned (its result is
  discarded when it comes).

:func:`call_with_timeout` runs one call in a daemon thread and stops waiting
after the timeout: how inline and thread steps time out (the call is
abandoned; Python cannot stop a thread).
"""

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Executor, Future
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess
    from typing import Any

    Result = tuple[Any, bool, Any]


def invoke(fn: "Callable[..., Any]", kwargs: "dict[str, Any]", ctx: "tuple[Any, ...] | None" = None) -> "Any":
    """Call ``fn(**kwargs)`` inside step context ``ctx``: what a pool is given.

    ``ctx`` is ``(run_id, flow, step, attempt, item, run_dir)``; a
    module-level function, so that it pickles for process executors.
    """
    if ctx is None:
        return awaited(fn(**kwargs))
    from ._context import Frame, enter, leave

    run_id, flow, step, attempt, item, run_dir = ctx[:6]
    frame = Frame(run_id, flow, (step,), None, run_dir)
    frame.current[:] = [0, item, attempt]
    token = enter(frame)
    try:
        if len(ctx) > 6 and ctx[6]:  # capture what it prints and logs
            from ._capture import captured_call

            result, text = captured_call(lambda: awaited(fn(**kwargs)), {})
            return Captured(result, text)
        return awaited(fn(**kwargs))
    finally:
        leave(token)


class Captured:
    """A step's result with the text it printed and logged (from a pool)."""

    __slots__ = ("value", "text")

    def __init__(self, value: "Any", text: str) -> None:
        self.value = value
        self.text = text

    def __reduce__(self) -> "Any":
        return (Captured, (self.value, self.text))


def awaited(result: "Any") -> "Any":
    """``result``, or what it returns when run to completion if it is a coroutine."""
    if hasattr(result, "__await__") and hasattr(result, "send"):
        import asyncio

        return asyncio.run(result)
    return result


def call_with_timeout(
    fn: "Callable[..., Any]",
    kwargs: "dict[str, Any]",
    timeout: float,
    what: str,
    frame: "Any" = None,
) -> "Any":
    """Call ``fn(**kwargs)`` in a daemon thread; raise TimeoutError after ``timeout`` s.

    On timeout the call is abandoned: it keeps running in its thread and its
    result is discarded.
    """
    import threading

    box: list[tuple[bool, Any]] = []
    finished = threading.Event()

    import contextvars

    context = contextvars.copy_context()  # the caller's capture buffer goes along

    def body() -> None:
        if frame is not None:
            from ._context import enter

            enter(frame)
        try:
            box.append((True, fn(**kwargs)))
        except BaseException as exc:  # handed to the waiting thread
            box.append((False, exc))
        finally:
            finished.set()

    def target() -> None:
        context.run(body)

    thread = threading.Thread(target=target, name=f"microdag {what}", daemon=True)
    thread.start()
    if not finished.wait(timeout):
        raise TimeoutError(f"{what} timed out after {timeout:g} s (the call was abandoned)")
    ok, value = box[0]
    if ok:
        return value
    raise value


def _worker_main(conn: "Connection") -> None:
    """A worker process: run steps sent down the pipe until told to stop.

    (``multiprocessing`` gives each new worker the parent's ``sys.path`` of
    that moment, so modules of a flow file's folder added later still load.)
    """
    import pickle

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        except Exception as exc:  # the step's function or arguments do not load here
            exc.add_note("microdag: the worker process could not load the step's function or arguments")
            try:
                conn.send((None, False, exc))
            except Exception:
                return
            continue
        if msg is None:
            return
        i, fn, kwargs, ctx = msg
        try:
            payload = (i, True, invoke(fn, kwargs, ctx))
        except BaseException as exc:
            payload = (i, False, exc)
        try:
            conn.send(payload)
        except Exception as exc:  # the output or the exception does not pickle
            what = "output" if payload[1] else "exception"
            detail = f"{type(payload[2]).__name__}: {payload[2]}"
            try:
                conn.send((i, False, pickle.PicklingError(
                    f"the step's {what} could not be sent back from its process "
                    f"({detail}): {exc}")))
            except Exception:
                return


def _until_deadline(timeout: "float | None", deadlines: "list[float | None]") -> "float | None":
    """``timeout`` shortened to reach the first of ``deadlines`` (``time.monotonic()`` values)."""
    now = time.monotonic()
    left = [d - now for d in deadlines if d is not None]
    if left:
        first = max(0.0, min(left))
        timeout = first if timeout is None else min(timeout, first)
    return timeout


class _Worker:
    __slots__ = ("process", "conn", "step", "deadline", "timeout")

    def __init__(self, process: "BaseProcess", conn: "Connection") -> None:
        self.process = process
        self.conn = conn
        self.step: Any = None
        self.deadline: float | None = None
        self.timeout: float | None = None


class ProcessPool:
    """Worker processes, one pipe each (see the module docs)."""

    def __init__(self, size: int) -> None:
        import multiprocessing

        methods = multiprocessing.get_all_start_methods()
        method = "forkserver" if "forkserver" in methods else "spawn"
        self._ctx: Any = multiprocessing.get_context(method)
        if method == "forkserver":
            # Workers fork from the server: have it import the worker code once.
            self._ctx.set_forkserver_preload(["microdag._backends"])
        self._workers = [self._spawn() for _ in range(size)]

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker_main, args=(child,), daemon=True, name="microdag worker")
        process.start()
        child.close()
        return _Worker(process, parent)

    def free(self) -> int:
        return sum(1 for w in self._workers if w.step is None)

    def busy(self) -> int:
        return sum(1 for w in self._workers if w.step is not None)

    def submit(
        self,
        i: "Any",
        fn: "Callable[..., Any]",
        kwargs: "dict[str, Any]",
        timeout: "float | None",
        ctx: "tuple[Any, ...] | None" = None,
    ) -> None:
        worker = next(w for w in self._workers if w.step is None)
        worker.conn.send((i, fn, kwargs, ctx))  # raises if kwargs do not pickle
        worker.step = i
        worker.timeout = timeout
        worker.deadline = None if timeout is None else time.monotonic() + timeout

    def _replace(self, worker: _Worker, kill: bool) -> "int | None":
        if kill:
            worker.process.kill()
        worker.process.join(5)
        code = worker.process.exitcode
        worker.conn.close()
        self._workers[self._workers.index(worker)] = self._spawn()
        return code

    def wait(self, timeout: "float | None") -> "list[Result]":
        from multiprocessing.connection import wait

        busy = [w for w in self._workers if w.step is not None]
        if not busy:
            if timeout:
                time.sleep(timeout)
            return []
        timeout = _until_deadline(timeout, [w.deadline for w in busy])
        ready = wait([w.conn for w in busy], timeout)
        out: list[Result] = []
        for worker in busy:
            if worker.conn in ready:
                i = worker.step
                try:
                    msg = worker.conn.recv()
                except (EOFError, OSError):
                    code = self._replace(worker, kill=False)
                    out.append((i, False, ChildProcessError(
                        f"the worker process died (exit code {code}) while running the step")))
                    continue
                except Exception as exc:  # the result did not unpickle here
                    worker.step = None
                    out.append((i, False, exc))
                    continue
                worker.step = None
                worker.deadline = None
                out.append(msg if msg[0] is not None else (i, msg[1], msg[2]))
            elif worker.deadline is not None and time.monotonic() >= worker.deadline:
                i = worker.step
                limit = worker.timeout
                self._replace(worker, kill=True)
                out.append((i, False, TimeoutError(
                    f"timed out after {limit:g} s; its worker process was terminated and replaced")))
        return out

    def close(self) -> None:
        for worker in self._workers:
            if worker.step is not None:
                worker.process.kill()
            else:
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
        for worker in self._workers:
            worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)
            worker.conn.close()

    def kill_running(self) -> "list[Any]":
        """Terminate the processes running steps (cancellation); return their keys."""
        steps = []
        for worker in list(self._workers):
            if worker.step is not None:
                steps.append(worker.step)
                self._replace(worker, kill=True)
        return steps


class ExecutorPool:
    """Any ``concurrent.futures.Executor`` (see the module docs)."""

    def __init__(self, executor: "Executor", size: int) -> None:
        self._executor = executor
        self._size = size
        self._running: dict[Future[Any], tuple[Any, float | None, float | None]] = {}

    def free(self) -> int:
        return self._size - len(self._running)

    def busy(self) -> int:
        return len(self._running)

    def submit(
        self,
        i: "Any",
        fn: "Callable[..., Any]",
        kwargs: "dict[str, Any]",
        timeout: "float | None",
        ctx: "tuple[Any, ...] | None" = None,
    ) -> None:
        future = self._executor.submit(invoke, fn, kwargs, ctx)
        deadline = None if timeout is None else time.monotonic() + timeout
        self._running[future] = (i, deadline, timeout)

    def wait(self, timeout: "float | None") -> "list[Result]":
        from concurrent.futures import FIRST_COMPLETED, wait

        if not self._running:
            if timeout:
                time.sleep(timeout)
            return []
        timeout = _until_deadline(timeout, [d for _, d, _ in self._running.values()])
        done, _ = wait(list(self._running), timeout, return_when=FIRST_COMPLETED)
        out: list[Result] = []
        for future in done:
            i, _, _ = self._running.pop(future)
            try:
                out.append((i, True, future.result()))
            except BaseException as exc:
                out.append((i, False, exc))
        now = time.monotonic()
        for future, (i, deadline, limit) in list(self._running.items()):
            if deadline is not None and now >= deadline:
                del self._running[future]
                future.cancel()
                out.append((i, False, TimeoutError(
                    f"timed out after {limit:g} s (the call was abandoned)")))
        return out

    def close(self) -> None:
        self._running.clear()

    def kill_running(self) -> "list[Any]":
        steps = [i for i, _, _ in self._running.values()]
        for future in self._running:
            future.cancel()
        self._running.clear()
        return steps


def default_workers(executor: "Any") -> int:
    """Pool size when ``max_workers`` is not given."""
    if isinstance(executor, str):
        cpus = os.cpu_count() or 1
        return min(32, cpus + 4) if executor == "threads" else cpus
    return int(getattr(executor, "_max_workers", 0) or os.cpu_count() or 1)
