"""Worker processes for ``executor="processes"``: one pipe each, one attempt at a time.

Workers start with ``forkserver`` (or ``spawn`` where there is none; never
``fork`` from a threaded parent), when an attempt needs one: a pool of
``size`` starts at most ``size`` of them, and a run that never has two steps
running at once (a chain) starts one.  A worker runs one attempt at a time,
so the pool knows which process runs which attempt.  An attempt past its
timeout gets its process killed; a process that dies mid-attempt
(``os._exit``, a signal) is seen at the end of its pipe and the attempt fails
with :class:`ChildProcessError`; one that died while idle is seen the same
way, or when an attempt is sent to it (which then goes to a new worker).
Either way the process is let go of, and the next attempt that finds no idle
worker starts a new one.

A script that runs a flow at its top level, without ``if __name__ ==
"__main__":``, runs it again in each worker, which imports the script anew
(``forkserver`` and ``spawn`` do).  There the run refuses to start
(:func:`refuse_run_in_worker`, called as a run is set up): the worker exits
with :data:`UNGUARDED`, before it starts any run, and the pool raises one
error saying what to add (:func:`unguarded_error`) instead of failing a step.

Data flow::

    dispatch --submit--> [fid, size | fn's pickle | call's pickle] --pipe--> worker: invoke(fn, kwargs, attempt)
    dispatch <--wait---- (attempt, ok, value) <---- (ok, value, has fid) <--pipe-- worker

Messages.  Each is pickled once (protocol 5, with ``multiprocessing``'s
reducers, as ``Connection.send`` would pickle it) and framed as
``Connection`` frames it (a big-endian length, then the bytes); on POSIX the
pool and the workers write and read the pipe's descriptor themselves (one
``os.write`` and, for a message of up to 64 KiB, one ``os.read``), elsewhere
they use ``send_bytes`` and ``recv_bytes`` (the pipe's side: ``_wire``).  A
step's function is pickled once per pool and travels to a worker with that
worker's first attempt of it; later attempts name it by its number in the
pool (``fid``) and the worker calls the function it kept (so a callable
object's state lasts between the attempts one worker runs, as a module's
globals do).  A function that does not load in the worker is not kept, and the
reply says so (``has fid`` false): the next attempt sends it again.  The call
is ``(kwargs, the attempt's fields)``, every field ``Attempt.__reduce__``
gives (the trace context among them), rebuilt into an ``Attempt`` in the
worker.

Latency.  A tiny step costs a message each way, and where waking a process
that sleeps on another CPU is slow (a virtual machine: 25 to 35 us per
wake-up measured here, more than everything else in a hop), the wake-ups are
most of it.  So each side polls for a short while before it sleeps, when the
last wait it made was short: the pool in ``wait``, if the last result came
within ``SPIN`` of its attempt being sent; a worker after it sends a result,
until ``SPIN`` after it, if its last attempt came within ``SPIN`` of the
reply before it.  The poll yields the CPU between checks (``sched_yield``),
so a process with work on that CPU runs first.  ``SPIN`` is about the price
of a sleep and a wake-up, so a wait that outlasts it costs at most twice what
sleeping at once would, and steps longer than ``SPIN`` (or a pool slower than
it to answer) turn the polling off until waits are short again.  The pool
gives an attempt to the idle worker it used last, the one most likely still
polling.

State: ``_workers`` (the started workers, each with its process, pipe,
attempt or ``None``, when that was sent, its deadline or ``None``, and
``known``: the fids it was sent), ``_idle`` (those without an attempt, the one used last at the end),
``_busy`` and ``_timed`` (how many hold an attempt, and how many of those
have a deadline: ``wait`` skips the deadlines while none has), ``_quick``
(whether the last result came within ``SPIN``: ``wait`` polls first), ``_fns``
(``id(fn)`` -> fid and pickled function; ``_keep`` holds the functions, so
that their ids stay theirs) and ``_by_fd`` (pipe descriptor -> worker, for
the ``poll`` object).  Invariants: every started worker is busy or idle
(``len(_workers) == _busy + len(_idle)``); at most one message is in flight
each way on a pipe (a worker is sent an attempt only when idle, and answers
it once), so a read never takes in part of the next message.

Why nothing can hang: ``wait`` polls for at most ``SPIN``, then waits on
the pipes of the started workers with a timeout that ends at the first
deadline among the busy ones, and a worker whose pipe ends is let go of on
the spot, its attempt failed.  The pool writes only to idle workers, which
read a whole message before anything else, so a write never waits on a
running step; a worker writes only its one reply, which the pool reads
whole once it is readable.  A write cut by Ctrl-C leaves the worker's
message unfinished: that worker is killed.
"""

import multiprocessing
import os
import pickle
import select
import signal
import struct
import sys
import time
from multiprocessing.connection import wait

from . import until_deadline
from .._children import kill, kill_group
from ._attempt import Attempt, invoke
from ._wire import _pickler, _receiver, _sender

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess
    from typing import Any

    from . import Outcome

__all__ = ["UNGUARDED", "ProcessPool", "refuse_run_in_worker", "unguarded_error"]

#: The exit code of a worker that refused a run its import of the main script started.
UNGUARDED = 86
_NAME = "microdag worker"

#: Seconds each side polls for a message before it sleeps (see the module docs).
SPIN = 100e-6

#: A message's head: the function's number, and the size of the pickled
#: function that follows (0: the worker has it).
_HEAD = struct.Struct("<II")

_LOADING = "microdag: the worker process could not load the step's function or arguments"


def _idler() -> "Callable[[], Any]":
    """What a poll calls between its checks: give the CPU to what else can run."""
    return getattr(os, "sched_yield", None) or (lambda: time.sleep(0))


def _guard_text(script: str) -> str:
    return (
        f"the script {script} runs its flow as it is imported: executor=\"processes\" starts worker "
        "processes that import the main script again, and there the run would start a second time. "
        "Put the code that runs the flow under a main guard (the definitions of the flow and its steps "
        "stay at the top level, where the workers find them):\n\n"
        "    if __name__ == \"__main__\":\n        run = flow.run(...)\n"
    )


def refuse_run_in_worker() -> None:
    """Refuse to start a run while ``multiprocessing`` imports the main script in
    a process it starts (see the module docs): a worker of this pool exits
    with :data:`UNGUARDED`; another process gets the error.

    Raises:
        RuntimeError: a run started by the script's import in a process of
            another pool (the message says what to add).
    """
    mp = sys.modules.get("multiprocessing.process")
    if mp is None:
        return
    me = mp.current_process()
    if not getattr(me, "_inheriting", False):
        return
    if me.name == _NAME:  # the pool that started this worker says what to add
        os._exit(UNGUARDED)
    main = sys.modules.get("__mp_main__")
    raise RuntimeError(_guard_text(getattr(main, "__file__", None) or "of the main module"))


def unguarded_error() -> RuntimeError:
    """The error a run gets when a worker refused a run (see the module docs)."""
    main = sys.modules.get("__main__")
    return RuntimeError(_guard_text(getattr(main, "__file__", None) or "of the main module"))


def _worker_main(conn: "Connection") -> None:
    """A worker process: run attempts sent down the pipe until it closes.

    (``multiprocessing`` gives each new worker the parent's ``sys.path`` of
    that moment, so modules of a flow file's folder added later still load.)
    """
    _own_group()
    dumps = _pickler()
    loads = pickle.loads
    recv, send = _receiver(conn), _sender(conn)
    ready = _readable(conn)
    idle = _idler()
    clock = time.perf_counter
    fns: dict[int, Any] = {}
    quick = False  # whether the last attempt came within SPIN of the reply before it
    sent = 0.0
    while True:
        if quick:  # poll a little for the next attempt before sleeping in recv
            end = sent + SPIN
            while not ready() and clock() < end:
                idle()
        try:
            msg = recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        quick = clock() - sent < SPIN
        fid, size = _HEAD.unpack_from(msg)
        try:
            fn = fns.get(fid)
            if fn is None:
                if not size:
                    raise LookupError(f"the step's function (number {fid}) was not sent to this worker")
                fn = loads(memoryview(msg)[_HEAD.size:_HEAD.size + size])
                fns[fid] = fn
            kwargs, fields = loads(memoryview(msg)[_HEAD.size + size:])
            attempt = Attempt(*fields)
        except Exception as exc:  # the step's function or arguments do not load here
            exc.add_note(_LOADING)
            reply: tuple[bool, Any, bool] = (False, exc, fid in fns)
        else:
            try:
                reply = (True, invoke(fn, kwargs, attempt), True)
            except BaseException as exc:
                reply = (False, exc, True)
        try:
            data = dumps(reply)
        except Exception as exc:  # the output or the exception does not pickle
            what = "output" if reply[0] else "exception"
            detail = f"{type(reply[1]).__name__}: {reply[1]}"
            try:
                data = dumps((False, pickle.PicklingError(
                    f"the step's {what} could not be sent back from its process ({detail}): {exc}"), reply[2]))
            except Exception:
                return
        try:
            send(data)
        except (OSError, KeyboardInterrupt):
            return
        sent = clock()


def _readable(conn: "Connection") -> "Callable[[], bool]":
    """Whether ``conn`` has something to read, without waiting (a ``poll``
    object on POSIX; ``Connection.poll`` builds a selector at every call)."""
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
    except (AttributeError, OSError, ValueError):
        return lambda: conn.poll(0)
    check = poller.poll
    return lambda: bool(check(0))


def _own_group() -> None:
    """Make this worker the leader of a process group of its own, so that
    killing the group takes what its steps started with it; on ``SIGTERM``
    (the pool stopping it) it kills the command steps' groups first."""
    if os.name != "posix":
        return
    os.setpgrp()

    def stop(signum: int, frame: "Any") -> None:
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
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    process.join(0.2)
    kill_group(pid)  # the worker leads its own group: its children go too
    process.kill()


class _Worker:
    __slots__ = ("process", "conn", "send", "recv", "attempt", "sent", "deadline", "known")

    def __init__(self, process: "BaseProcess", conn: "Connection") -> None:
        self.process = process
        self.conn = conn
        self.send = _sender(conn)
        self.recv = _receiver(conn)
        self.attempt: Attempt | None = None
        self.sent = 0.0  # when its attempt was sent (time.monotonic)
        self.deadline: float | None = None
        self.known: set[int] = set()  # the fids of the functions it was sent


class ProcessPool:
    """Worker processes, one pipe each (see the module docs)."""

    def __init__(self, size: int) -> None:
        methods = multiprocessing.get_all_start_methods()
        method = "forkserver" if "forkserver" in methods else "spawn"
        self._ctx: Any = multiprocessing.get_context(method)
        if method == "forkserver":
            # Workers fork from the server: have it import once what each of
            # them needs (the worker code; the module that rebuilds its pipe;
            # what runs the caller's script again as __mp_main__).
            self._ctx.set_forkserver_preload(["microdag.pools.process", "multiprocessing.popen_forkserver",
                                              "pkgutil"])
        self._size = size
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._busy = 0
        self._timed = 0  # how many of the busy workers have a deadline
        self._quick = True  # whether the last result came within SPIN of its attempt
        self._fns: dict[int, tuple[int, bytes]] = {}
        self._keep: list[Any] = []
        self._dumps = _pickler()
        self._loads = pickle.loads
        self._idler = _idler()
        self._by_fd: dict[int, _Worker] = {}
        self._poller: Any = None  # a select.poll of the workers' pipes (else multiprocessing's wait)
        if os.name == "posix" and hasattr(select, "poll"):
            self._poller = select.poll()

    def _start(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker_main, args=(child,), daemon=True, name=_NAME)
        try:
            process.start()
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        worker = _Worker(process, parent)
        self._workers.append(worker)
        if self._poller is not None:
            fd = parent.fileno()
            self._poller.register(fd, select.POLLIN)  # (the end of the pipe comes as POLLHUP)
            self._by_fd[fd] = worker
        return worker

    def free(self) -> int:
        return self._size - self._busy

    def busy(self) -> int:
        return self._busy

    def _function(self, fn: "Callable[..., Any]") -> "tuple[int, bytes]":
        """``fn``'s number in this pool and its pickle (made on its first attempt)."""
        entry = self._fns.get(id(fn))
        if entry is None:
            entry = self._fns[id(fn)] = (len(self._keep), self._dumps(fn))  # raises if it does not pickle
            self._keep.append(fn)
        return entry

    def submit(self, attempt: "Attempt", fn: "Callable[..., Any]", kwargs: "dict[str, Any]") -> None:
        fid, blob = self._function(fn)
        call = self._dumps((kwargs, attempt.__reduce__()[1]))  # raises if they do not pickle
        while True:
            fresh = not self._idle
            worker = self._start() if fresh else self._idle.pop()
            if fid in worker.known:
                msg = _HEAD.pack(fid, 0) + call
            else:
                msg = b"".join((_HEAD.pack(fid, len(blob)), blob, call))
            try:
                worker.send(msg)
                break
            except OSError:  # its pipe is gone: it died while idle; the attempt goes to another
                code = self._drop(worker, kill=True)
                if code == UNGUARDED:
                    raise unguarded_error() from None
                if fresh:
                    raise
            except BaseException:  # Ctrl-C mid-message: what the worker read is not whole
                self._drop(worker, kill=True)
                raise
        worker.known.add(fid)
        worker.attempt = attempt
        worker.sent = sent = time.monotonic()
        self._busy += 1
        if attempt.timeout is not None:
            worker.deadline = sent + attempt.timeout
            self._timed += 1

    def _vacate(self, worker: _Worker) -> None:
        """``worker`` holds no attempt any more."""
        worker.attempt = None
        self._busy -= 1
        if worker.deadline is not None:
            worker.deadline = None
            self._timed -= 1

    def _drop(self, worker: _Worker, kill: bool) -> "int | None":
        """Let go of ``worker`` (killed first if ``kill``); its exit code."""
        if kill:
            _stop(worker.process)
        worker.process.join(5)
        code = worker.process.exitcode
        if self._poller is not None:
            fd = worker.conn.fileno()
            self._poller.unregister(fd)
            del self._by_fd[fd]
        worker.conn.close()
        self._workers.remove(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        if worker.attempt is not None:
            self._vacate(worker)
        return code

    def _ready(self, timeout: "float | None") -> "list[_Worker]":
        """The workers whose pipes have something to read (a result, or their
        end), after a poll of up to ``SPIN`` and then a wait of the rest of
        ``timeout``."""
        if self._poller is None:
            by_conn: dict[Any, _Worker] = {w.conn: w for w in self._workers}
            return [by_conn[c] for c in wait(list(by_conn), timeout)]
        poll = self._poller.poll
        events = poll(0)
        if not events and timeout != 0 and self._quick:
            clock = time.perf_counter
            start = clock()
            end = start + (SPIN if timeout is None else min(SPIN, timeout))
            idle = self._idler
            while not events and clock() < end:
                idle()
                events = poll(0)
            if not events:
                timeout = None if timeout is None else max(0.0, timeout - (clock() - start))
        if not events and timeout != 0:
            events = poll(None if timeout is None else timeout * 1000)
        by_fd = self._by_fd
        return [by_fd[fd] for fd, _ in events]

    def wait(self, timeout: "float | None") -> "list[Outcome]":
        if not self._busy:
            if timeout:
                time.sleep(timeout)
            return []
        if self._timed:
            timeout = until_deadline(timeout, [w.deadline for w in self._workers if w.deadline is not None])
        ready = self._ready(timeout)
        out: list[Outcome] = []
        now = time.monotonic()
        for worker in ready:
            attempt = worker.attempt
            if attempt is None:  # an idle worker's pipe ended: it died between attempts
                self._drop(worker, kill=False)
                continue
            try:
                data = worker.recv()
            except (EOFError, OSError):
                code = self._drop(worker, kill=False)
                if code == UNGUARDED:  # the run stops: no step of it can run in a worker
                    raise unguarded_error() from None
                out.append((attempt, False, ChildProcessError(
                    f"the worker process died (exit code {code}) while running the step")))
                continue
            try:
                ok, value, has = self._loads(data)
            except Exception as exc:  # the result did not unpickle here
                ok, value, has = False, exc, True
            if not has:
                worker.known.clear()  # it kept no function it could not load
            late = worker.deadline is not None and now >= worker.deadline
            self._quick = now - worker.sent < SPIN
            self._vacate(worker)
            self._idle.append(worker)
            if late:  # it came after the deadline: the attempt timed out
                ok, value = False, attempt.timed_out("its result came too late")
            out.append((attempt, ok, value))
        for worker in list(self._workers) if self._timed else ():
            attempt = worker.attempt
            if attempt is not None and worker.deadline is not None and now >= worker.deadline:
                self._drop(worker, kill=True)
                out.append((attempt, False, attempt.timed_out(
                    "its worker process was terminated and replaced")))
        return out

    def kill_running(self) -> "list[Attempt]":
        """Terminate the processes running attempts (cancellation); return those attempts."""
        attempts = []
        for worker in list(self._workers):
            if worker.attempt is not None:
                attempts.append(worker.attempt)
                self._drop(worker, kill=True)
        return attempts

    def close(self) -> None:
        for worker in self._workers:
            if worker.attempt is not None:
                _stop(worker.process)
            else:
                worker.conn.close()  # the end of its pipe: it returns
        for worker in self._workers:
            worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)
            worker.conn.close()
        self._workers.clear()
        self._idle.clear()
        self._by_fd.clear()
        self._busy = self._timed = 0
