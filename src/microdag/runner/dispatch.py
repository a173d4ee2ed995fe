"""The dispatch loop: one body for every pool (processes, executors, ``arun``).

Data flow::

    Runner (the state machine)          dispatch (this module)           Pool
    --------------------------          ----------------------           ----
    due retries, map units,
    ready steps  -- next_attempt() -->  fill()  -- submit(attempt,  -->  a worker runs
                                                   fn, kwargs)           invoke(fn, kwargs, attempt)
                                                                              |
    settle(attempt, ok, value) <------  loop()  <-- wait(timeout) ----  [(attempt, ok, value)]
                                                    (results, errors,
                                                     timeouts)

The body, :func:`_loop`, is a generator that knows nothing of how to wait:
it yields how long it may wait and is sent what the pool reported.  Two
drivers feed it: :func:`run_pool` calls ``pool.wait`` (processes and
``concurrent.futures`` executors), :func:`run_async` awaits it (``arun``).

One pass of the body: stop if the run was cancelled (the pool's running
attempts are killed), fill every free slot (due retries first, then units of
running maps, then ready steps), end when no step remains, else wait and
settle what came back.

How long it waits (:func:`_wait_time`): with every slot taken, until
something in the pool ends (only that can free a slot; a retry that came due
meanwhile stays queued until then); with a free slot, until the next retry is
due, or until something ends.  When no slot is taken and nothing is due, the
run cannot go on: the state machine's stall error is raised instead of
waiting forever.  With a cancel event, every wait is 50 ms at most.
"""

from ..pools._attempt import Captured, Grown, Remote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Generator
    from typing import Any

    from ..pools import AwaitPool, Outcome, Pool
    from ._state import Runner

__all__ = ["run_async", "run_pool"]

_POLL = 0.05


def run_pool(runner: "Runner", pool: "Pool") -> None:
    """Run ``runner``'s steps on ``pool`` until the run is over (or Ctrl-C)."""
    body = _loop(runner, pool)
    try:
        timeout = next(body)
        while True:
            timeout = body.send(pool.wait(timeout))
    except StopIteration:
        return
    except BaseException as exc:  # Ctrl-C while waiting
        _interrupted(runner, pool, exc)


async def run_async(runner: "Runner", pool: "AwaitPool") -> None:
    """Run ``runner``'s steps on ``pool`` in the running event loop.

    Raises:
        BaseException: the task was cancelled (``asyncio.CancelledError``), or
            Ctrl-C; the run is stopped and its running attempts cancelled first.
    """
    body = _loop(runner, pool)
    try:
        timeout = next(body)
        while True:
            timeout = body.send(await pool.wait(timeout))
    except StopIteration:
        return
    except BaseException as exc:
        _interrupted(runner, pool, exc)
        raise


def _loop(runner: "Runner", pool: "Pool | AwaitPool") -> "Generator[float | None, list[Outcome], None]":
    """The dispatch body (see the module docs)."""
    k = runner.k
    while True:
        if runner.check_cancel():
            _kill(runner, pool)
            return
        _fill(runner, pool)
        if k.remaining == 0:
            return
        for attempt, ok, value in (yield _wait_time(runner, pool)):
            _settle(runner, attempt, ok, value)


def _fill(runner: "Runner", pool: "Pool | AwaitPool") -> None:
    """Start attempts while ``pool`` has a free slot and there is work."""
    here = getattr(pool, "in_process", False)  # (its steps may add steps)
    while pool.free() > 0:
        att = runner.next_attempt()
        if att is None:
            return
        if here:
            att.add = runner.add_step
        else:
            att.carry = True  # (its adds come back with its result: Grown)
        fn, kwargs = runner.call_args(att)
        try:
            pool.submit(att, fn, kwargs)
        except Exception as exc:  # the arguments do not pickle, the executor is shut down...
            runner.settle(att, False, exc)


def _wait_time(runner: "Runner", pool: "Pool | AwaitPool") -> "float | None":
    """How long the loop may wait for ``pool`` (see the module docs)."""
    if pool.free() > 0:
        wait = runner.next_due()
        if wait is not None:
            wait = max(wait, 0.0)
        elif pool.busy() == 0:
            raise runner.stall_error()
    else:
        wait = None
    if runner.cancel is not None:
        wait = _POLL if wait is None else min(wait, _POLL)
    return wait


def _settle(runner: "Runner", att: "Any", ok: bool, value: "Any") -> None:
    """Hand an outcome from the pool to the state machine, with what the step
    printed and after the steps it added (``_grow.apply``: a refused add
    fails it); an output that stayed on a cluster is fetched where this
    process needs it (a store records it, the cache keeps it, a batch is
    counted, it carries adds: Dask tells its type without fetching it)."""
    if type(value) is Remote:
        step = runner.plan.steps[att.step]
        if runner.capture or step.cache or (att.unit >= 0 and step.batch_size is not None) \
                or getattr(value.future, "type", None) is Grown:  # (its adds must be read here)
            try:
                value = value.fetch()
            except BaseException as exc:  # the task failed on its way back, or the cluster is gone
                ok, value = False, exc
    added = None
    if type(value) is Grown:
        added = value.added
        value = value.value
    elif isinstance(value, BaseException):
        added = getattr(value, "__microdag_added__", None)
    if added:
        from ._grow import apply  # (only runs whose steps add steps; the owner's: the first add refused, or None)

        refused = apply(runner, added)
        if refused is not None and ok:
            ok, value = False, refused
    text: str | None = None
    if isinstance(value, Captured):
        text = value.text
        value = value.value
    elif isinstance(value, BaseException):  # (what a step raised carries what it printed)
        text = getattr(value, "__microdag_logs__", None)
    if text:
        runner.recorder.logs(att, text)
    runner.settle(att, ok, value)


def _kill(runner: "Runner", pool: "Pool | AwaitPool") -> None:
    """Stop what runs in ``pool``; those steps end cancelled."""
    for att in pool.kill_running():
        runner.killed(att)


def _interrupted(runner: "Runner", pool: "Pool | AwaitPool", exc: BaseException) -> None:
    runner.interrupted(exc)
    _kill(runner, pool)
    runner.stop()
