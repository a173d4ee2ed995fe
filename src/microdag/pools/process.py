"""Worker processes for ``executor="processes"``: one pipe each.

Workers start with ``forkserver`` (or ``spawn`` where there is none; never
``fork`` from a threaded parent) and run one attempt at a time, so the pool
knows which process runs which attempt.  An attempt past its timeout gets its
process killed and replaced; a process that dies mid-attempt (``os._exit``, a
signal) is seen at the end of its pipe and replaced, and the attempt fails
with :class:`ChildProcessError`.

Data flow::

    dispatch --submit--> (fn, kwargs, attempt) --pipe--> worker: invoke(fn, kwargs, attempt)
    dispatch <--wait---- (attempt, ok, value)  <--pipe-- worker: (ok, value)

Why ``wait`` cannot hang: it waits on the pipes of busy workers with a
timeout that ends at the first deadline among them, and a worker whose pipe
closes is replaced on the spot.
"""

import os
import time

from . import until_deadline
from ._attempt import invoke

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess
    from typing import Any

    from . import Outcome
    from ._attempt import Attempt

__all__ = ["ProcessPool"]


def _worker_main(conn: "Connection") -> None:
    """A worker process: run attempts sent down the pipe until told to stop.

    (``multiprocessing`` gives each new worker the parent's ``sys.path`` of
    that moment, so modules of a flow file's folder added later still load.)
    """
    import pickle

    _own_group()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        except Exception as exc:  # the step's function or arguments do not load here
            exc.add_note("microdag: the worker process could not load the step's function or arguments")
            try:
                conn.send((False, exc))
            except Exception:
                return
            continue
        if msg is None:
            return
        fn, kwargs, attempt = msg
        try:
            payload = (True, invoke(fn, kwargs, attempt))
        except BaseException as exc:
            payload = (False, exc)
        try:
            conn.send(payload)
        except Exception as exc:  # the output or the exception does not pickle
            what = "output" if payload[0] else "exception"
            detail = f"{type(payload[1]).__name__}: {payload[1]}"
            try:
                conn.send((False, pickle.PicklingError(
                    f"the step's {what} could not be sent back from its process ({detail}): {exc}")))
            except Exception:
                return


def _own_group() -> None:
    """Make this worker the leader of a process group of its own, so that
    killing the group takes what its steps started with it; on ``SIGTERM``
    (the pool stopping it) it kills the command steps' groups first."""
    if os.name != "posix":
        return
    import signal

    os.setpgrp()

    def stop(signum: int, frame: "Any") -> None:
        from .._children import kill

        kill(every=True)
        os._exit(1)

    signal.signal(signal.SIGTERM, stop)


def _stop(process: "BaseProcess") -> None:
    """Stop a worker and everything it started: ``SIGTERM`` (it kills its
    commands' groups), then ``SIGKILL`` to its whole process group."""
    pid = process.pid
    if pid is None:
        return
    if os.name != "posix":
        process.kill()
        return
    import signal

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    process.join(0.2)
    from .._children import kill_group

    kill_group(pid)  # the worker leads its own group: its children go too
    process.kill()


class _Worker:
    __slots__ = ("process", "conn", "attempt", "deadline")

    def __init__(self, process: "BaseProcess", conn: "Connection") -> None:
        self.process = process
        self.conn = conn
        self.attempt: Attempt | None = None
        self.deadline: float | None = None


class ProcessPool:
    """Worker processes, one pipe each (see the module docs)."""

    def __init__(self, size: int) -> None:
        import multiprocessing

        methods = multiprocessing.get_all_start_methods()
        method = "forkserver" if "forkserver" in methods else "spawn"
        self._ctx: Any = multiprocessing.get_context(method)
        if method == "forkserver":
            # Workers fork from the server: have it import the worker code once.
            self._ctx.set_forkserver_preload(["microdag.pools.process"])
        self._workers = [self._spawn() for _ in range(size)]

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker_main, args=(child,), daemon=True, name="microdag worker")
        process.start()
        child.close()
        return _Worker(process, parent)

    def free(self) -> int:
        return sum(1 for w in self._workers if w.attempt is None)

    def busy(self) -> int:
        return sum(1 for w in self._workers if w.attempt is not None)

    def submit(self, attempt: "Attempt", fn: "Callable[..., Any]", kwargs: "dict[str, Any]") -> None:
        worker = next(w for w in self._workers if w.attempt is None)
        worker.conn.send((fn, kwargs, attempt))  # raises if they do not pickle
        worker.attempt = attempt
        worker.deadline = None if attempt.timeout is None else time.monotonic() + attempt.timeout

    def _replace(self, worker: _Worker, kill: bool) -> "int | None":
        if kill:
            _stop(worker.process)
        worker.process.join(5)
        code = worker.process.exitcode
        worker.conn.close()
        self._workers[self._workers.index(worker)] = self._spawn()
        return code

    def wait(self, timeout: "float | None") -> "list[Outcome]":
        from multiprocessing.connection import wait

        busy = [w for w in self._workers if w.attempt is not None]
        if not busy:
            if timeout:
                time.sleep(timeout)
            return []
        timeout = until_deadline(timeout, [w.deadline for w in busy if w.deadline is not None])
        ready = wait([w.conn for w in busy], timeout)
        out: list[Outcome] = []
        now = time.monotonic()
        for worker in busy:
            attempt = worker.attempt
            assert attempt is not None
            if worker.conn in ready:
                try:
                    ok, value = worker.conn.recv()
                except (EOFError, OSError):
                    code = self._replace(worker, kill=False)
                    out.append((attempt, False, ChildProcessError(
                        f"the worker process died (exit code {code}) while running the step")))
                    continue
                except Exception as exc:  # the result did not unpickle here
                    ok, value = False, exc
                late = worker.deadline is not None and now >= worker.deadline
                worker.attempt = None
                worker.deadline = None
                if late:  # it came after the deadline: the attempt timed out
                    ok, value = False, TimeoutError(
                        f"{attempt.describe()} timed out after {attempt.timeout:g} s (its result came too late)")
                out.append((attempt, ok, value))
            elif worker.deadline is not None and now >= worker.deadline:
                self._replace(worker, kill=True)
                out.append((attempt, False, TimeoutError(
                    f"{attempt.describe()} timed out after {attempt.timeout:g} s; its worker "
                    "process was terminated and replaced")))
        return out

    def kill_running(self) -> "list[Attempt]":
        """Terminate the processes running attempts (cancellation); return those attempts."""
        attempts = []
        for worker in list(self._workers):
            if worker.attempt is not None:
                attempts.append(worker.attempt)
                self._replace(worker, kill=True)
        return attempts

    def close(self) -> None:
        for worker in self._workers:
            if worker.attempt is not None:
                _stop(worker.process)
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
