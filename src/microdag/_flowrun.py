"""Running a flow: :meth:`Flow.run`, :meth:`Flow.arun` and :meth:`Flow.run_step`.

The second half of the facade (``_flow`` defines a flow's steps; this runs
them): :class:`_Runs` is ``Flow``'s base, holding no state of its own; its
methods build the run's options, the flow's pools and rates with the run's
(``_merged``), and hand the compiled plan to :mod:`microdag.runner`, which
is imported with the first run, not with a flow's definition.
"""

import sys

from ._errors import FlowError
from ._result import new_run_id, run_failed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from concurrent.futures import Executor
    from typing import Any, Literal

    from ._plan import _Plan
    from ._result import Run
    from ._types import DaskClient, ExecutorName, OnFailure

__all__ = ["_Runs"]


class _Runs:
    """How a :class:`~microdag.Flow` runs (its base class; see the module docs)."""

    __slots__ = ()

    if TYPE_CHECKING:
        _name: str
        _source: "str | None"
        _pools: "dict[str, int]"
        _rates: "dict[str, str]"

        def _compiled(self) -> "_Plan": ...

    def run(
        self,
        inputs: "Mapping[str, Any] | None" = None,
        *,
        executor: "ExecutorName | Executor | DaskClient" = "inline",
        max_workers: "int | None" = None,
        targets: "Iterable[str] | None" = None,
        on_failure: "OnFailure" = "fail_fast",
        hooks: "Iterable[Callable[[Any], Any]]" = (),
        raise_on_failure: bool = True,
        keep_outputs: bool = False,
        cancel: "Any" = None,
        store: "Any" = None,
        run_id: "str | None" = None,
        resume: bool = False,
        force: bool = False,
        lease: "float | None" = None,
        pools: "Mapping[str, int] | None" = None,
        rates: "Mapping[str, str] | None" = None,
    ) -> "Run":
        """Run the flow and return its :class:`~microdag.Run`.

        Args:
            inputs: values for the flow inputs, by name.
            executor: ``"inline"`` (the caller's thread), ``"threads"``,
                ``"processes"``, ``"workers"`` (claimed from ``store`` by
                ``python -m microdag worker`` processes and this one:
                docs/workers.md), any ``concurrent.futures.Executor``, or a
                ``distributed.Client``: the steps run on its Dask cluster,
                their outputs stay there (see docs/distributed.md).
            max_workers: parallel steps at most (threads and processes:
                the pool size; default: like ``concurrent.futures``; a Dask
                cluster: every step that can run is given to it).
            targets: run only these steps and what they depend on.
            on_failure: ``"fail_fast"`` (start nothing new after a failure;
                pending steps end ``cancelled``) or ``"continue"`` (run every
                branch that does not depend on the failure; the rest end
                ``skipped``).
            hooks: callables receiving each :class:`~microdag.Event`.
            raise_on_failure: raise :class:`~microdag.RunFailed` when the
                run does not succeed.
            keep_outputs: keep every output in ``Run.outputs``; by default an
                output is released once every step consuming it has finished,
                and ``Run.outputs`` holds the targets' outputs (or, without
                targets, those of the steps nothing else consumes).
            cancel: a ``threading.Event``; once set, no new step starts,
                pending steps end ``cancelled``, steps running on processes
                are terminated, steps running inline or on threads finish
                (their results are recorded), and the run ends ``cancelled``.
            store: keep the run in a store: a :class:`microdag.stores.Store`
                or a spec (``"memory"``, ``"json:DIR"``, ``"sqlite:PATH"``,
                a path ending in ``.db``); each finished step is recorded
                (grouped commits), the run's end durably before ``run``
                returns.
            run_id: the run's id (default: a new one).
            resume: with ``store`` and ``run_id``: go on with that run; steps
                it records as succeeded are not run again (their stored
                outputs are used), every other step runs; ``inputs``
                default to the run's.
            force: resume even if the flow's structure changed since, or the
                run seems live in another process.
            lease: with ``executor="workers"``: the run's lease, seconds every
                worker's claim of one of its steps holds without a heartbeat
                (a worker that dies loses the step after that; default: each
                worker's ``--lease``, 30).
            pools: ``{"db": 2}``: the running steps never hold more units
                of a pool than its size (docs/api.md, "Pools and rates"); added to the flow's.
            rates: ``{"api": "10/s"}`` (``"600/min"``, ``"5/h"``, ``"10/s
                burst 5"``): every attempt of a step using one takes a token.

        Raises:
            FlowError: invalid flow, options or inputs (before any step runs).
            CycleError: the steps form a cycle.
            RunFailed: the run did not succeed and ``raise_on_failure``.
        """
        from .runner import RunOptions, execute  # (the runner loads with the first run, not with a flow's definition)

        plan = self._compiled()
        if executor == "inline":
            _check_no_running_loop(self._name, plan)
        options = RunOptions(
            executor=executor, max_workers=max_workers, targets=targets, on_failure=on_failure, hooks=hooks,
            keep_outputs=keep_outputs, cancel=cancel, store=store, run_id=run_id, resume=resume, force=force,
            lease=lease, pools=_merged(self._pools, pools), rates=_merged(self._rates, rates),
        )
        run = execute(plan, self._name, self._source, inputs, options)
        if raise_on_failure and run.status != "succeeded":
            raise run_failed(run)  # (raised here: the traceback users read starts at their call)
        return run

    async def arun(
        self,
        inputs: "Mapping[str, Any] | None" = None,
        *,
        executor: "Literal['inline', 'workers'] | DaskClient" = "inline",
        max_workers: "int | None" = None,
        targets: "Iterable[str] | None" = None,
        on_failure: "OnFailure" = "fail_fast",
        hooks: "Iterable[Callable[[Any], Any]]" = (),
        raise_on_failure: bool = True,
        keep_outputs: bool = False,
        cancel: "Any" = None,
        store: "Any" = None,
        run_id: "str | None" = None,
        resume: bool = False,
        force: bool = False,
        pools: "Mapping[str, int] | None" = None,
        rates: "Mapping[str, str] | None" = None,
    ) -> "Run":
        """Run the flow inside the caller's event loop; same options as :meth:`run`.

        ``async def`` steps run concurrently as tasks of the running loop,
        other steps on threads; ``max_workers`` bounds how many run at once
        (default: 100 steps, plain ones on at most ``min(32, cpus + 4)``
        threads).  A timed-out async step is cancelled.  Cancelling the
        ``arun`` task cancels the step tasks, ends the run ``cancelled`` and
        re-raises :class:`asyncio.CancelledError`.

        With ``executor=`` a (synchronous) ``distributed.Client``, the steps
        run on its Dask cluster as with :meth:`run`, and this coroutine
        waits for them without blocking the loop; so it does for
        ``executor="workers"``.
        """
        # (the runner loads with the first run, not with a flow's definition)
        from .runner import RunOptions, execute_async

        options = RunOptions(
            executor=executor, max_workers=max_workers, targets=targets, on_failure=on_failure, hooks=hooks,
            keep_outputs=keep_outputs, cancel=cancel, store=store, run_id=run_id, resume=resume, force=force,
            pools=_merged(self._pools, pools), rates=_merged(self._rates, rates),
        )
        run = await execute_async(self._compiled(), self._name, self._source, inputs, options)
        if raise_on_failure and run.status != "succeeded":
            raise run_failed(run)
        return run

    def run_step(
        self,
        name: str,
        inputs: "Mapping[str, Any] | None" = None,
        *,
        from_run: "str | None" = None,
        store: "Any" = None,
    ) -> "Any":
        """Run one step alone, in the calling thread, and return its output.

        Args:
            name: the step.
            inputs: the outputs of the steps it depends on, by step name, and
                the flow inputs it takes, by input name.
            from_run, store: take those values from the stored run
                ``from_run`` instead (``inputs`` overrides any of them); the
                stored run is not changed.

        Raises:
            FlowError: unknown step, or a value it needs is missing.
            StoreError: the store or the run cannot be read.
            Exception: whatever the step raises (no retries).
        """
        return _run_one(self._compiled(), self._name, name, inputs, from_run, store)


def _run_one(
    plan: "_Plan", flow: str, name: str, inputs: "Mapping[str, Any] | None", from_run: "str | None", store: "Any",
) -> "Any":
    """What :meth:`Flow.run_step` does, for ``plan``, the plan of flow ``flow``."""
    i = plan.graph.ids([name])[0]
    given: dict[str, Any] = {}
    if from_run is not None:
        from .stores import open_store  # (stores load for a run that keeps one)

        if store is None:
            raise FlowError("run_step(from_run=...) needs the store= that holds the run")
        source = open_store(store)
        given.update(source.run_info(from_run).inputs)
        typed = plan.typed_outputs(source.codec)[0]
        for dep in plan.argdeps[i]:
            dep_name = str(plan.graph.names[dep])
            converter = typed.get(dep_name)
            try:
                given[dep_name] = source.output(from_run, dep_name) if converter is None else source.output(
                    from_run, dep_name, typed=converter)  # (of the type its step's annotation says)
            except KeyError:
                pass  # reported below as missing, unless inputs gives it
    given.update(inputs or {})
    from .pools._attempt import invoke  # (the runner loads with the first run, not with a flow's definition)
    from .runner._call import Caller, arguments  # (the runner loads with the first run, not with a flow's definition)

    kwargs = arguments(plan, i, given)
    return invoke(plan.fns[i], kwargs, Caller(plan, new_run_id(), flow).attempt(i, 1))


def _merged(declared: "dict[str, Any]", given: "Mapping[str, Any] | None") -> "Mapping[str, Any]":
    """A run's pools (or rates): the flow's, with those the run gives."""
    if not given:
        return declared
    if not declared:
        return given
    return {**declared, **given}


def _check_no_running_loop(flow: str, plan: "_Plan") -> None:
    """``run(executor="inline")`` from inside a running event loop cannot run
    ``async def`` steps (they need this thread's loop): say so at once."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None or asyncio._get_running_loop() is None:
        return
    steps = [s.name for s, is_async in zip(plan.steps, plan.is_async) if is_async]
    if steps:
        shown = ", ".join(repr(name) for name in steps[:3]) + (" ..." if len(steps) > 3 else "")
        raise FlowError(
            f"flow {flow!r} has async steps ({shown}) and run() was called inside a running event "
            "loop: use `await flow.arun(...)` there (or run(executor='threads'))"
        )
