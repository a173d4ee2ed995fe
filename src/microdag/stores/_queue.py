"""The work queue: what a store must do so that workers can share a run.

With ``executor="workers"`` a run's state machine lives in the store, not in
one process.  The run writes its *plan* (steps, dependencies, trigger rules,
the steps it runs, its failure policy) and its ready steps; any number of
workers :meth:`~WorkQueue.claim` ready steps, run them and
:meth:`~WorkQueue.finish` them.  A store that can do this answers
:meth:`Store.queue <microdag.stores.Store.queue>` with a :class:`WorkQueue`
(the SQLite store: ``_sqlite_queue``); the others refuse.

The protocol, one rule each:

- **claims are atomic and leased**: a claim takes a ready step (or one whose
  lease ran out) in one transaction and gives it to one worker until
  ``lease`` seconds from now, on the *database's* clock (SQLite: the one
  machine's; PostgreSQL: ``now()`` of the server), never compared across
  machines.  Claiming makes the step's next attempt: its number is the
  claim's fencing token.
- **heartbeats renew leases** (:meth:`~WorkQueue.heartbeat`); a worker that
  stops renewing (killed, paused, cut off) loses the step when its lease
  runs out, and the next claim of it is the next attempt, counted (the lost
  one is kept with the run's retried attempts as ``WorkerLost``).
- **finishing is fenced**: :meth:`~WorkQueue.finish` records a step's outcome
  only if the claim still holds (same step, same attempt, still claimed), in
  the same statement that ends the claim; a stale claim records nothing.  In
  the same transaction, the outcome goes through the run's :class:`Mirror`
  (below): dependents become ready, descendants are skipped per their
  trigger rules, a failure under ``fail_fast`` stops the run, and the last
  step records the run's end.
- **retries** are decided by the worker (the step's own retry policy, which
  it loaded with the flow): an outcome with ``retry_in`` puts the step back,
  ready that many seconds from now, and keeps the failed attempt.
- **map steps**: the step's own claim ends ``"planned"`` with its units,
  each a claimable row under its first item's index (a retry puts a unit
  back as it puts a step back); when the last unit finished, a
  :data:`GATHER` row is ready, whose outcome is the step's.  The mirror
  sees only the step's.
- **cancel** (:meth:`~WorkQueue.cancel`) stops a run for every worker: ready
  steps end cancelled at once; claimed ones when their workers see it
  (:meth:`~WorkQueue.stopping`, read with each heartbeat) and stop them as a
  timeout would, or when their leases run out.
- **waiting** (:meth:`~WorkQueue.wait`) sleeps until work may have come,
  without busy polling: SQLite polls the file's change counter (``PRAGMA
  data_version``) every millisecond or so, backing off to a few; PostgreSQL
  listens (``LISTEN``/``NOTIFY``).

**The mirror.**  Which steps a finished step makes ready or skips is the
kernel's rule (trigger rules, failure propagation): one home.  The store
keeps the run's outcomes as an ordered log; a :class:`Mirror` is the kernel
of the run's plan replayed over that log.  Whoever finishes a step (under
the store's write lock) first catches its mirror up with the log, then
applies its own outcome and writes what the kernel answers.  A step the
store holds as ready or claimed is ``RUNNING`` in the mirror (it was handed
out), so the kernel's ``take`` after each outcome lists exactly the steps
that just became ready.  Replaying costs each worker O(1) per outcome, and
a mirror is rebuilt from the log when a worker first sees a run.
"""

import json

from .._compat import sched

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any

    from .._records import RunInfo
    from ._base import Store

__all__ = [
    "CANCELLED", "FAILED", "GATHER", "GROW", "SKIPPED", "STOP", "SUCCEEDED", "Claim", "Mirror", "Outcome", "WorkQueue",
    "cancel_shared",
]

#: Outcomes in the log (the kernel's state codes), and the stop of a run.
SUCCEEDED = sched.SUCCEEDED
FAILED = sched.FAILED
SKIPPED = sched.SKIPPED
CANCELLED = sched.CANCELLED
STOP = -1
#: The log entry of a step added as the run ran (its step: the new step's id,
#: its recipe the plan's ``added[id - base]``).
GROW = -3
#: The ``item`` of a claim that gathers a map step's units (a step's own: ``-1``;
#: a map unit's: the index of its first item).
GATHER = -2


class Claim:
    """A step a worker holds: run, step id, attempt number (the fencing token),
    the worker's token and the claim's lease (seconds; ``None``: the
    worker's); ``item``: ``-1`` for the step itself (a map step's: planning
    its units), a map unit's first item, or :data:`GATHER` (a map step's
    result from its units).  ``lost`` is set once a heartbeat finds the claim
    gone (its lease ran out, or the run was cancelled).  ``waited``: in a run
    with pools or rates, the seconds the task's attempts waited for them, in
    all, up to this claim (``None``: it never waited), which its record keeps."""

    __slots__ = ("run_id", "step", "attempt", "worker", "item", "lease", "lost", "waited")

    def __init__(
        self, run_id: str, step: int, attempt: int, worker: str, item: int = -1, lease: "float | None" = None
    ) -> None:
        self.run_id = run_id
        self.step = step
        self.attempt = attempt
        self.worker = worker
        self.item = item
        self.lease = lease
        self.lost = False
        self.waited: float | None = None

    @property
    def key(self) -> "tuple[str, int, int]":
        """What names the claimed row: run, step, item."""
        return self.run_id, self.step, self.item

    def __repr__(self) -> str:
        item = "" if self.item == -1 else f" item {self.item}"
        return f"<Claim run {self.run_id} step {self.step}{item} attempt {self.attempt}>"


class Outcome:
    """How an attempt ended, as a worker reports it to :meth:`WorkQueue.finish`.

    ``status``: ``"succeeded"`` (``output``: the encoded output),
    ``"failed"``, ``"skipped"`` or ``"cancelled"``, or for a map step's own
    claim ``"planned"`` (``units``: the first item of each of its units, one
    claimable row each); ``retry_in``: seconds until the step (or the unit)
    runs again (a failure its retry policy retries), else ``None``; times are
    wall-clock (``None``: it did not run, a cache hit); ``logs``: what the
    attempt printed; ``attempts``: the step's attempts when they are not the
    claim's (a cache hit's 0, a map step's most-tried unit's)."""

    __slots__ = ("status", "output", "started", "finished", "error_type", "error_message", "traceback", "logs",
                 "retry_in", "attempts", "units", "added")

    def __init__(
        self, status: str, started: "float | None", finished: "float | None", output: "bytes | None" = None,
        error_type: "str | None" = None, error_message: "str | None" = None, traceback: "str | None" = None,
        logs: str = "", retry_in: "float | None" = None, attempts: "int | None" = None,
        units: "Sequence[int]" = (), added: "list[dict[str, Any]] | None" = None,
    ) -> None:
        self.status = status
        self.output = output
        self.started = started
        self.finished = finished
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback
        self.logs = logs
        self.retry_in = retry_in
        self.attempts = attempts
        self.units = units
        self.added = added


class Mirror:
    """The kernel of a run's plan, replayed over the run's log of outcomes
    (see the module docs).

    Args:
        plan: the plan document the run wrote (:meth:`WorkQueue.submit`).
    """

    __slots__ = ("k", "seq", "first", "fail_fast", "names", "base", "added", "timed")

    def __init__(self, plan: "dict[str, Any]") -> None:
        k = self.k = sched.Kernel(plan["n"], plan["src"], plan["dst"])
        if plan.get("triggers"):
            k.set_triggers(plan["triggers"])
        k.reset(plan.get("subset"), policy="fifo", done=plan.get("done"))  # (done: a resumed run's)
        self.seq = 0  # the last log entry applied
        self.fail_fast = plan.get("on_failure", "fail_fast") == "fail_fast"
        #: The steps ready when the run starts.
        self.first: list[int] = k.take(-1)
        self.names: list[str] = plan["names"]
        #: The static flow's steps; added step ``i``'s entry is ``added[i - base]``.
        self.base: int = plan.get("base", plan["n"])
        self.added: list[dict[str, Any]] = plan.get("added", [])
        #: Whether the run has pools or rates: its records keep their waits.
        self.timed: bool = "uses" in plan

    def learn(self, plan: "dict[str, Any]") -> None:
        """The run's plan grew (steps added): its names and added steps."""
        self.names[:] = plan["names"]
        self.added = plan.get("added", [])

    def catch_up(self, rows: "list[tuple[int, int, int]]", reread: "Callable[[], dict[str, Any]]") -> None:
        """Apply the log's entries ``rows`` (``seq, step, outcome``) not applied
        yet; ``reread``: the run's plan, read again when a step was added."""
        for seq, step, outcome in rows:
            if outcome == GROW and step - self.base >= len(self.added):
                self.learn(reread())
            self.apply(step, outcome)
            self.seq = seq

    def apply(self, step: int, outcome: int) -> "tuple[list[int], list[int]]":
        """Apply one entry of the log: the steps that became ready, and those
        skipped (or, for ``STOP``, cancelled while pending) because of it."""
        k = self.k
        if outcome == SUCCEEDED:
            k.done(step)
            gone: list[int] = []
        elif outcome == SKIPPED:
            gone = k.skip(step)
        elif outcome == STOP:
            return [], k.cancel()
        elif outcome == GROW:  # (an added step: its dependencies as bound, its trigger rule)
            made = self.added[step - self.base]
            deps = [self.names.index(d) for d in made["after"]]
            gone = k.grow(1, deps, [step] * len(deps), triggers=[made.get("trigger", 0)])
        else:  # failed, or cancelled while handed out
            gone = k.fail(step)
        return (k.take(-1) if k.ready else []), gone

    def running(self, step: int) -> bool:
        """Whether ``step`` was handed out and has not ended (a map step: its units run)."""
        return bool(self.k.state(step) == sched.RUNNING)

    @property
    def remaining(self) -> int:
        """Steps of the run not finished (ready and claimed ones included)."""
        return int(self.k.remaining)


def cancel_shared(store: "Store", run_id: str) -> bool:
    """Cancel run ``run_id`` for every worker, through ``store``'s queue (what
    ``python -m microdag cancel`` and the UI's Cancel do); ``False`` when the
    run is not on the queue (not shared with workers, or ended).

    Raises:
        StoreError: the store cannot be written, or is no work queue.
    """
    queue = store.queue()
    try:
        if queue.plan(run_id) is None:
            return False
        queue.cancel(run_id)
        return True
    finally:
        queue.close()


def plan_text(plan: "dict[str, Any]") -> str:
    """A plan document as the store keeps it."""
    return json.dumps(plan, separators=(",", ":"))


class WorkQueue:
    """What a store must do to be a work queue (see the module docs).  A store
    implements it beside its writer side; the runner's workers
    (``runner/workers``) are its only users."""

    #: Binds a step a worker's step added to the run's plan document
    #: (``_queue_grow``): ``(run id, plan, recipe)`` -> the plan's entry for it
    #: (the recipe, ``after``, ``trigger``, ``timeout``, ``retries``), or
    #: ``None`` when the run has it already; raises ``FlowError`` to refuse it.
    #: Given by the worker that uses the queue.
    bind_added: "Callable[[str, dict[str, Any], dict[str, Any]], dict[str, Any] | None] | None" = None

    def submit(self, run_id: str, plan: "dict[str, Any]") -> None:
        """Start run ``run_id`` (already begun in the store) on the queue:
        keep ``plan`` (``n``, ``src``, ``dst``, ``names``, ``triggers``,
        ``subset``, ``done`` (the steps a resumed run finished), ``on_failure``,
        ``lease`` (the run's, or ``None``: each worker's), and per step what it needs to run) and
        make its first steps ready.  A run with nothing to run ends at once."""
        raise NotImplementedError

    def learn(self, run_id: str) -> "tuple[RunInfo, float | None]":
        """What a worker reads of a run it meets: its record and its lease
        (``None``: each worker's own), in one read.

        Raises:
            StoreError: no such run.
        """
        raise NotImplementedError

    def plan(self, run_id: str) -> "dict[str, Any] | None":
        """The plan document of a run on the queue, or ``None`` once it ended."""
        raise NotImplementedError

    def claim(
        self, worker: str, lease: float, limit: int = 1, refuse: "Callable[[str, int], bool] | None" = None,
        skip_runs: "Iterable[str]" = (), meet: "Callable[[list[str]], object] | None" = None,
        leases: "Mapping[str, float] | None" = None, only: "str | None" = None,
    ) -> "list[Claim]":
        """Claim up to ``limit`` steps that are ready (or whose lease ran out),
        for ``lease`` seconds (a run of ``leases``: its own), atomically; none of ``skip_runs``
        (and, with ``only``, of no other run), and none that ``refuse(run_id, step)``
        turns down (no I/O).  ``meet`` is told the runs met, before ``refuse``
        is asked about their steps (a worker learns runs it has not seen)."""
        raise NotImplementedError

    def reconsider(self, run_id: str) -> None:
        """Steps of run ``run_id`` that ``claim`` was told to turn down may be
        claimed again (their worker learned the steps its run's steps added)."""

    def heartbeat(self, claims: "Sequence[Claim]", lease: float) -> None:
        """Renew the leases of ``claims`` for their own lease (else ``lease``)
        seconds from now; a claim that no longer holds is marked ``lost``."""
        raise NotImplementedError

    def finish(self, done: "Sequence[tuple[Claim, Outcome]]") -> "list[bool]":
        """Record each outcome, fenced by its claim, and what follows from it
        (see the module docs), in one transaction; per outcome, whether it
        was recorded (``False``: the claim was stale)."""
        raise NotImplementedError

    def release(self, claims: "Sequence[Claim]") -> None:
        """Give claims back unfinished (a worker stopping): ready again at once;
        their attempts count (the calls may have begun), so a call still
        running cannot record under the next claim."""
        raise NotImplementedError

    def cancel(self, run_id: str) -> None:
        """Cancel run ``run_id`` for every worker (nothing when it ended)."""
        raise NotImplementedError

    def stopping(self, run_ids: "Iterable[str]") -> "set[str]":
        """Which of ``run_ids`` are cancelled (or ended)."""
        raise NotImplementedError

    def outputs(self, run_id: str, steps: "Sequence[str]") -> "dict[str, bytes]":
        """The encoded outputs of ``steps`` of run ``run_id`` (those with one)."""
        raise NotImplementedError

    def items(self, run_id: str, step: str) -> "list[tuple[Any, ...]]":
        """The item records of map step ``step`` of run ``run_id``, in item
        order: ``(item, status, attempts, started, error_type, error_message,
        traceback, encoded output)``."""
        raise NotImplementedError

    def progress(self, run_id: str, after: int) -> "tuple[int, list[tuple[str, str, int]]]":
        """Task records of the run saved after position ``after``: the new
        position and ``(step, status, attempts)`` of each (for progress)."""
        raise NotImplementedError

    def wait(self, timeout: float) -> None:
        """Sleep until work may have come, or ``timeout`` seconds."""
        raise NotImplementedError

    def close(self) -> None:
        """Let go of the connection."""
