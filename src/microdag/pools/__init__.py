"""Where attempts run when not in the runner's own threads: pools.

A pool runs :class:`~microdag.pools._attempt.Attempt` objects and reports
each one back once with its outcome.  The runner's dispatch loop
(``microdag.runner.dispatch``) is their only user; the contract is
:class:`Pool` below (a :class:`typing.Protocol`, read by type checkers only,
so that importing a pool does not import :mod:`typing`):

``free()``
    slots that :meth:`~Pool.submit` may fill now;
``busy()``
    calls still holding a slot: running attempts, and attempts given up on
    (past their timeout) whose call has not returned yet.  A slot held by such
    a call is not reused until it returns, so a backend never runs more calls
    at once than it has workers, and the next attempt never queues behind a
    call that hangs;
``submit(attempt, fn, kwargs)``
    start ``fn(**kwargs)`` as ``attempt`` (raises at once if it cannot: the
    arguments do not pickle, the executor is shut down);
``wait(timeout)``
    wait until some attempt ends or passes its timeout, or ``timeout``
    seconds (``None``: no limit); return ``[(attempt, ok, value)]``, where
    ``value`` is the result or the exception (a ``TimeoutError`` for an
    attempt past its timeout: it is reported once, at its deadline, and any
    later result of its call is discarded);
``kill_running()``
    stop what runs, as far as the backend can (processes are killed, tasks
    cancelled, executor futures cancelled); return their attempts;
``close()``
    release the workers.

The pools: :mod:`.process` (worker processes, one pipe each),
:mod:`.executor` (any ``concurrent.futures.Executor``), :mod:`.aio` (the
running event loop, for ``Flow.arun``; its ``wait`` is a coroutine).
"""

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import Any, Protocol

    from ._attempt import Attempt

    #: What a pool reports: ``(attempt, ok, result or exception)``.
    Outcome = tuple[Attempt, bool, Any]

    class Pool(Protocol):
        """The contract between the dispatch loop and a pool (see the module docs)."""

        def free(self) -> int: ...
        def busy(self) -> int: ...
        def submit(self, attempt: Attempt, fn: Callable[..., Any], kwargs: dict[str, Any]) -> None: ...
        def wait(self, timeout: float | None) -> list[Outcome]: ...
        def kill_running(self) -> list[Attempt]: ...
        def close(self) -> None: ...

    class AwaitPool(Protocol):
        """:class:`Pool` with a coroutine ``wait`` (``Flow.arun``)."""

        def free(self) -> int: ...
        def busy(self) -> int: ...
        def submit(self, attempt: Attempt, fn: Callable[..., Any], kwargs: dict[str, Any]) -> None: ...
        def wait(self, timeout: float | None) -> Awaitable[list[Outcome]]: ...
        def kill_running(self) -> list[Attempt]: ...
        def close(self) -> None: ...


__all__ = ["default_workers", "until_deadline"]


def default_workers(executor: "Any") -> int:
    """Pool size when ``max_workers`` is not given (as :mod:`concurrent.futures` sizes them)."""
    if isinstance(executor, str):
        cpus = os.cpu_count() or 1
        return min(32, cpus + 4) if executor == "threads" else cpus
    return int(getattr(executor, "_max_workers", 0) or os.cpu_count() or 1)


def until_deadline(timeout: "float | None", deadlines: "list[float]", now: "float | None" = None) -> "float | None":
    """``timeout`` shortened to reach the first of ``deadlines`` (``time.monotonic()`` values)."""
    if deadlines:
        first = max(0.0, min(deadlines) - (time.monotonic() if now is None else now))
        timeout = first if timeout is None else min(timeout, first)
    return timeout
