"""The runner: runs a compiled plan on a backend and returns its :class:`~microdag.Run`.

How a run flows: :func:`execute` (``Flow.run``) or :func:`execute_async`
(``Flow.arun``) checks the options and sets the run up (``_setup``: the
state machine of ``_state`` with the recorder of ``_recorder``); one loop
runs it: ``inline`` (the caller's thread), ``threads`` (N workers), or
``dispatch`` (processes, any ``concurrent.futures`` executor, the running
event loop, through the pools of :mod:`microdag.pools`); then the run's end
is recorded, the kernel let go of, the hooks told, and an interruption
(Ctrl-C, a cancelled ``arun`` task) raised again.

The modules, from the bottom: ``_options`` (a run's options, frozen),
``_cache`` (cache keys), ``_tracing`` (the hooks that trace attempts),
``_call`` (calling a step once: arguments, attempts, map units, batch
checks, timeouts; also used by ``Flow.run_step``, Argo pods and command
steps), ``_maps`` (map units), ``_recorder`` (all store I/O), ``_state``
(the state machine, the only writer of a run's state), ``_outcome`` (a
finished run's end recorded, its ``Run`` made), ``_local``
(attempts in the calling thread), ``inline``/``threads``/``dispatch`` (the
loops), ``_setup`` (checking, then opening a run); this module ties them
together.  Nothing here imports
the :class:`~microdag.Flow` facade: it hands its plan over.
"""

from .._errors import FlowError
from .._events import log
from ..pools import default_workers
from ._options import RunOptions
from ._outcome import run_result
from ._setup import prepare, release

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from .._plan import _Plan
    from .._result import Run
    from ..pools import AwaitPool, Pool
    from ..pools.dask import DaskPool
    from ._state import Runner

__all__ = ["ASYNC_STEPS", "DASK_STEPS", "RunOptions", "execute", "execute_async"]

#: How many steps ``arun`` runs at once without ``max_workers``: async steps
#: are I/O, so many wait together (plain steps get the threads' default).
ASYNC_STEPS = 100
#: How many attempts a Dask cluster is given at once without ``max_workers``:
#: all there are (its scheduler queues them for its workers).
DASK_STEPS = 1 << 30


def execute(
    plan: "_Plan", flow: str, source: "str | None", inputs: "Mapping[str, Any] | None", options: RunOptions
) -> "Run":
    """Run ``plan`` (the implementation of :meth:`Flow.run`; options as there,
    but a run that does not succeed is returned: the caller raises)."""
    executor = options.executor
    if executor == "workers":
        from .workers import run_on_workers  # (only the backend asked for loads)

        return run_on_workers(plan, flow, source, inputs, options)
    if not isinstance(executor, str):
        _check_client(flow, executor)
    runner, given = prepare(plan, flow, source, inputs, options)
    max_workers = options.max_workers
    if runner.tracers is not None:
        runner.tracers.run_started(flow, executor if isinstance(executor, str)
                                   else "dask" if _is_dask_client(executor) else type(executor).__name__,
                                   runner.wall0)
    try:
        if executor == "inline":
            from .inline import run_inline  # (only the backend asked for loads)

            run_inline(runner)
        elif executor == "threads":
            from .threads import run_threads  # (only the backend asked for loads)

            run_threads(runner, max_workers or default_workers("threads"))
        else:
            _run_on_pool(runner, executor, max_workers)
    except BaseException as exc:  # Ctrl-C in the inline loop
        runner.interrupted(exc)
    return _finish(runner, given)


def _run_on_pool(runner: "Runner", executor: "Any", max_workers: "int | None") -> None:
    from .dispatch import run_pool  # (only the backend asked for loads)

    pool: Pool
    if executor == "processes":
        from ..pools.process import ProcessPool  # (only the backend asked for loads)

        pool = ProcessPool(max_workers or default_workers("processes"))
    elif _is_dask_client(executor):
        pool = _dask_pool(runner, executor, max_workers)
    else:
        from ..pools.executor import ExecutorPool  # (only the backend asked for loads)

        pool = ExecutorPool(executor, max_workers or default_workers(executor))
    try:
        run_pool(runner, pool)
    finally:
        pool.close()


def _is_dask_client(executor: object) -> bool:
    """Whether ``executor`` is a ``distributed.Client`` (or a subclass's), without importing distributed."""
    return any(c.__name__ == "Client" and c.__module__.split(".")[0] == "distributed" for c in type(executor).__mro__)


def _check_client(flow: str, executor: "Any", caller: str = "run") -> None:
    """Refuse what the runner cannot drive: an asynchronous Dask client, and
    (``arun``) anything but ``"inline"`` or a Dask client."""
    if not _is_dask_client(executor):
        if caller == "arun":
            raise FlowError(
                f"flow {flow!r}: arun runs steps on the event loop (executor='inline') or on a Dask "
                f"cluster (a distributed.Client), not on {executor!r}; use run() for other executors")
        return
    if getattr(executor, "asynchronous", False):
        raise FlowError(
            f"flow {flow!r}: the Dask client is asynchronous (asynchronous=True); give run() or arun() "
            "a synchronous one, distributed.Client(address)")


def _dask_pool(runner: "Runner", client: "Any", max_workers: "int | None") -> "DaskPool":
    """The pool of a Dask client: every attempt there is at once (its scheduler
    queues what it cannot run yet), and steps submitted ahead of their
    dependencies; with ``max_workers``, that many attempts at most and none
    ahead (a step ahead starts on the cluster when its dependency ends,
    whatever the bound)."""
    from ..pools.dask import DaskPool  # (only the backend asked for loads: dask is an optional extra)
    from ._ahead import Ahead  # (only the backend asked for loads)

    runner.on_cluster()
    ahead = max_workers is None and runner.tracers is None  # (a step's span starts when it does)
    return DaskPool(client, max_workers or DASK_STEPS, Ahead(runner) if ahead else None)


async def execute_async(
    plan: "_Plan", flow: str, source: "str | None", inputs: "Mapping[str, Any] | None", options: RunOptions
) -> "Run":
    """Run ``plan`` in the running event loop (the implementation of :meth:`Flow.arun`)."""
    from ..pools.aio import AsyncPool  # (only the backend asked for loads: asyncio)
    from .dispatch import run_async  # (only the backend asked for loads)

    executor = options.executor
    if executor == "workers":
        return await _on_workers_async(plan, flow, source, inputs, options)
    if executor != "inline":
        _check_client(flow, executor, "arun")
    runner, given = prepare(plan, flow, source, inputs, options.replace(executor="inline"))
    if runner.tracers is not None:
        runner.tracers.run_started(flow, "asyncio" if executor == "inline" else "dask", runner.wall0)
    limit = options.max_workers
    pool: AwaitPool
    if executor == "inline":
        pool = AsyncPool(limit or ASYNC_STEPS, min(limit or default_workers("threads"), default_workers("threads")))
    else:
        from ..pools.dask import AwaitDask  # (only the backend asked for loads: dask is an optional extra)

        pool = AwaitDask(_dask_pool(runner, executor, limit))
    try:
        await run_async(runner, pool)
    except BaseException as exc:  # cancelled, or Ctrl-C
        runner.interrupted(exc)
    finally:
        pool.close()
    return _finish(runner, given)


async def _on_workers_async(
    plan: "_Plan", flow: str, source: "str | None", inputs: "Mapping[str, Any] | None", options: RunOptions
) -> "Run":
    """``arun(executor="workers")``: the run of ``run()``, waited for in a
    thread; cancelling the task cancels the run for every worker (through
    its ``cancel`` event), waits for its end and raises again."""
    import asyncio  # (arun only: asyncio)
    import threading  # (arun only)

    from .workers import run_on_workers  # (only the backend asked for loads)

    cancel = options.cancel if options.cancel is not None else threading.Event()
    done = asyncio.get_running_loop().run_in_executor(
        None, run_on_workers, plan, flow, source, inputs, options.replace(cancel=cancel))
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        cancel.set()
        await asyncio.wait([done])
        raise


def _finish(runner: "Runner", given: "dict[str, Any]") -> "Run":
    """Record the run, let go of the kernel, report; raise an interruption again."""
    run = None
    try:
        if runner.interrupt is not None:
            runner.stop()
        run = run_result(runner, given)
    finally:
        release(runner)
        runner.close()
        if runner.tracers is not None:
            runner.tracers.run_ended(run)
    if runner.debug:
        log(10, "run %s of flow %r finished: %s", run.id, run.flow, run.status)
    runner.emit("run_finished", status=run.status, duration=run.duration)
    if runner.interrupt is not None:
        raise runner.interrupt
    return run
