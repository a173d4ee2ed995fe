"""The running event loop as a pool, for ``Flow.arun``.

``async def`` steps become tasks of the loop, up to the pool's ``size`` at
once (they are I/O: many can wait together): a timeout cancels the task, so
its slot is free at once.  Other steps run on a thread pool of ``threads``
workers: a timeout abandons the call (Python cannot stop a thread), reports
the attempt as timed out at its deadline, and keeps its thread taken until
the call returns, as :mod:`.executor` does.  A plain step submitted while
every thread is taken waits here, in order, and its timeout starts when it
gets a thread.  ``wait`` is a coroutine; otherwise the contract is
:class:`~microdag.pools.Pool`'s.

State: ``_running`` (asyncio future -> attempt and deadline, ``None`` for
tasks, which time themselves out), ``_abandoned`` (thread calls given up on),
``_queued`` (plain steps waiting for a thread), ``_on_threads`` (how many
threads are taken: running and abandoned calls).
"""

import asyncio
import inspect
import time

from . import until_deadline
from .._capture import start
from .._context import Frame, enter
from ._attempt import Captured, invoke

TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable
    from typing import Any

    from . import Outcome
    from ._attempt import Attempt

__all__ = ["AsyncPool"]


async def _run_coroutine(fn: "Callable[..., Any]", kwargs: "dict[str, Any]", attempt: "Attempt") -> "Any":
    """One attempt of an async step, as a task of the running loop (own context frame)."""
    frame = Frame(attempt.run_id, attempt.flow, (attempt.name,), None, attempt.run_dir, add=attempt.add)
    frame.current[:] = [0, attempt.item, attempt.number, attempt.key]
    enter(frame)  # a task runs in a copy of the context: this stays in the task
    if attempt.trace is not None:
        attempt.trace.enter()  # (so does the attempt's span)
    if not attempt.capture:
        return await cancel_after(fn(**kwargs), attempt)
    buffer, _ = start()  # the task's own context: nothing to reset
    try:
        value = await cancel_after(fn(**kwargs), attempt)
    except BaseException as exc:
        exc.__microdag_logs__ = "".join(buffer)  # type: ignore[attr-defined]
        raise
    return Captured(value, "".join(buffer))


def _on_loop(loop: "asyncio.AbstractEventLoop", add: "Callable[..., str]") -> "Callable[..., str]":
    """``add`` called from a step on a thread: run on ``loop``, where the run's
    state changes, the thread waiting for its answer."""
    from concurrent.futures import Future  # (a plain step adding steps on arun only)

    def call(*args: "Any") -> str:
        answer: "Future[str]" = Future()

        def run() -> None:
            try:
                answer.set_result(add(*args))
            except BaseException as exc:  # raised in the step that asked
                answer.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return answer.result()

    return call


async def cancel_after(coro: "Any", attempt: "Attempt") -> "Any":
    """Await ``coro``; past ``attempt.timeout`` cancel it and raise ``TimeoutError``."""
    if attempt.timeout is None:
        return await coro
    loop = asyncio.get_running_loop()
    deadline = loop.time() + attempt.timeout
    try:
        result = await asyncio.wait_for(coro, attempt.timeout)
    except TimeoutError:
        raise attempt.timed_out("it was cancelled") from None
    if loop.time() > deadline:  # it blocked the loop past its deadline, so it could not be cancelled
        raise attempt.timed_out("it blocked the event loop; its result came too late")
    return result


class AsyncPool:
    """Async steps as tasks, other steps on threads (see the module docs)."""

    #: Attempts run in the run's own process: its steps may add steps
    #: (on the event loop, where the run's state changes; ``_on_loop``).
    in_process = True

    def __init__(self, size: int, threads: int) -> None:
        self._size = size
        self._threads_max = max(1, min(threads, size))
        self._running: dict[asyncio.Future[Any], tuple[Attempt, float | None]] = {}
        self._abandoned: set[asyncio.Future[Any]] = set()
        self._queued: list[tuple[Attempt, Callable[..., Any], dict[str, Any]]] = []
        self._on_threads: set[asyncio.Future[Any]] = set()
        self._threads: Any = None

    def free(self) -> int:
        return self._size - self.busy()

    def busy(self) -> int:
        return len(self._running) + len(self._abandoned) + len(self._queued)

    def submit(self, attempt: "Attempt", fn: "Callable[..., Any]", kwargs: "dict[str, Any]") -> None:
        if inspect.iscoroutinefunction(fn):
            self._running[asyncio.ensure_future(_run_coroutine(fn, kwargs, attempt))] = (attempt, None)
            return
        self._queued.append((attempt, fn, kwargs))
        self._start_queued()

    def _start_queued(self) -> None:
        """Give waiting plain steps the threads that are free."""
        while self._queued and len(self._on_threads) < self._threads_max:
            attempt, fn, kwargs = self._queued.pop(0)
            if attempt.add is not None:
                attempt.add = _on_loop(asyncio.get_running_loop(), attempt.add)
            if self._threads is None:
                from concurrent.futures import ThreadPoolExecutor  # (plain steps on arun only)

                self._threads = ThreadPoolExecutor(self._threads_max, thread_name_prefix="microdag arun")
            future = asyncio.wrap_future(self._threads.submit(invoke, fn, kwargs, attempt))
            deadline = None if attempt.timeout is None else time.monotonic() + attempt.timeout
            self._running[future] = (attempt, deadline)
            self._on_threads.add(future)

    async def wait(self, timeout: "float | None") -> "list[Outcome]":
        if not self._running and not self._abandoned:
            await asyncio.sleep(timeout or 0)
            return []
        timeout = until_deadline(timeout, [d for _, d in self._running.values() if d is not None])
        done, _ = await asyncio.wait(
            [*self._running, *self._abandoned], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        out: list[Outcome] = []
        now = time.monotonic()
        self._on_threads.difference_update(done)
        for future in done:
            if future in self._abandoned:
                self._abandoned.discard(future)
                if not future.cancelled():
                    future.exception()  # retrieved: no "never retrieved" warning
                continue
            attempt, deadline = self._running.pop(future)
            if deadline is not None and now >= deadline:
                if not future.cancelled():
                    future.exception()
                out.append((attempt, False, attempt.timed_out("its result came too late")))
            elif future.cancelled():
                out.append((attempt, False, asyncio.CancelledError()))
            elif future.exception() is not None:
                out.append((attempt, False, future.exception()))
            else:
                out.append((attempt, True, future.result()))
        now = time.monotonic()
        for future, (attempt, deadline) in list(self._running.items()):
            if deadline is not None and now >= deadline and not future.done():
                del self._running[future]
                self._abandoned.add(future)
                out.append((attempt, False, attempt.timed_out(
                    "the call was abandoned; its thread is not reused until the call returns")))
        self._start_queued()
        return out

    def kill_running(self) -> "list[Attempt]":
        """Cancel the step tasks (a call on a thread is left to finish); return their attempts."""
        attempts = [attempt for attempt, _ in self._running.values()]
        attempts.extend(attempt for attempt, _, _ in self._queued)
        self._queued.clear()
        for future in self._running:
            future.cancel()
        self._running.clear()
        return attempts

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
