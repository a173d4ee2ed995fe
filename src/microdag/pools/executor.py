"""Any ``concurrent.futures.Executor`` as a pool (``flow.run(executor=pool)``).

The pool submits ``invoke(fn, kwargs, attempt)`` and never more than its size
at once.  Python cannot stop a call that has started, so an attempt past its
timeout is cancelled if it has not started yet and otherwise *abandoned*: it
is reported as timed out at its deadline, its result is discarded when it
comes, and its slot stays taken until the call returns, so that the next
attempt does not queue behind it inside the executor (where its own timeout
would run out before it starts).  An attempt's timeout counts from the moment
its call starts: while the executor has not started it (the executor is
shared with other work), its deadline moves on.

State: ``_running`` (future -> attempt and deadline), ``_abandoned``
(futures given up on, still running).  ``wait`` waits for either kind, with a
timeout that ends at the first deadline, so it cannot hang past one.
"""

import time
from concurrent.futures import FIRST_COMPLETED, wait

from . import until_deadline
from ._attempt import invoke

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Executor, Future
    from typing import Any

    from . import Outcome
    from ._attempt import Attempt

__all__ = ["ExecutorPool"]


def _late(attempt: "Attempt") -> TimeoutError:
    return attempt.timed_out("its result came too late")


class ExecutorPool:
    """Any ``concurrent.futures.Executor`` (see the module docs)."""

    def __init__(self, executor: "Executor", size: int) -> None:
        self._executor = executor
        self._size = size
        self._running: dict[Future[Any], list[Any]] = {}  # future -> [attempt, deadline]
        self._abandoned: set[Future[Any]] = set()

    def free(self) -> int:
        return self._size - len(self._running) - len(self._abandoned)

    def busy(self) -> int:
        return len(self._running) + len(self._abandoned)

    def submit(self, attempt: "Attempt", fn: "Callable[..., Any]", kwargs: "dict[str, Any]") -> None:
        future = self._executor.submit(invoke, fn, kwargs, attempt)
        deadline = None if attempt.timeout is None else time.monotonic() + attempt.timeout
        self._running[future] = [attempt, deadline]

    def wait(self, timeout: "float | None") -> "list[Outcome]":
        if not self._running and not self._abandoned:
            if timeout:
                time.sleep(timeout)
            return []
        timeout = until_deadline(timeout, [d for _, d in self._running.values() if d is not None])
        done, _ = wait([*self._running, *self._abandoned], timeout, return_when=FIRST_COMPLETED)
        out: list[Outcome] = []
        now = time.monotonic()
        for future in done:
            if future in self._abandoned:
                self._abandoned.discard(future)  # its slot is free again; its result is dropped
                continue
            attempt, deadline = self._running.pop(future)
            if deadline is not None and now >= deadline:
                out.append((attempt, False, _late(attempt)))
                continue
            try:
                out.append((attempt, True, future.result()))
            except BaseException as exc:
                out.append((attempt, False, exc))
        for future, entry in list(self._running.items()):
            attempt, deadline = entry
            if deadline is None or now < deadline or future.done():
                continue
            if not future.running():
                # The executor has not started it (it is busy with other work):
                # its timeout counts from its start.
                entry[1] = now + attempt.timeout
                continue
            del self._running[future]
            if not future.cancel():
                self._abandoned.add(future)
            out.append((attempt, False, attempt.timed_out(
                "the call was abandoned; its worker is not reused until the call returns")))
        return out

    def kill_running(self) -> "list[Attempt]":
        """Cancel what has not started; abandon the rest.  Return their attempts."""
        attempts = [attempt for attempt, _ in self._running.values()]
        for future in self._running:
            if not future.cancel():
                self._abandoned.add(future)
        self._running.clear()
        return attempts

    def close(self) -> None:
        self._running.clear()
        self._abandoned.clear()
