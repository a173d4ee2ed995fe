"""Workers: processes that claim steps from a store's work queue and run them.

``executor="workers"`` runs a flow through its store (``stores/_queue``):
:func:`submit` checks the run and opens its record as any run does
(``_setup``), then writes its plan and first ready steps to the queue;
:func:`run_on_workers` does that, works on the run in this process too, and
waits for its end, telling the hooks what the store records
(``step_finished``), so that the command line shows the usual progress.
Ctrl-C or the run's ``cancel`` event cancel it through the store, for every
worker.  ``python -m microdag worker`` is a :class:`Worker` serving every
run whose flow it can load.

What each rule's home is:

- which steps a finished one makes ready or skips, a failure stopping a run
  under ``fail_fast``: the kernel, replayed by the store's mirror
  (``stores/_queue``); a run's status at its end: ``_records.run_status``;
- calling a step once: ``_call`` (its arguments, its attempt, its timeout,
  a map step's units and their gathering) and the pools' ``invoke`` (its
  context, capture, an ``async def`` step's loop);
- a cached step's key and whether its entry answers: ``_cache.cache_key``
  and ``_recorder.cached``, as in a run with a store;
- whether a failed attempt is tried again and when: the step's ``Retry``
  policy (``plan.retry``), which the worker asks as the state machine does;
- leases, fencing, cancel, and a run's pools and rates (``_limits.document``): the queue.

A map step is three kinds of claim, as an Argo pod's roles are: the step's
own claim plans it (expands the value it maps over into units: ``planned``,
one claimable row per unit, so that every worker shares its items); a
unit's claim runs one unit (its attempts and retries its own, its record an
item record as on any backend); the ``GATHER`` claim, ready once the last
unit finished, makes the step's output (or its failure: the first failed
item's) from the item records.  A worker keeps the units of a map it expanded, by
run and step, so that the value mapped over is read and expanded once per worker.
A cached step's claim whose entry answers is recorded as a hit (no attempt), not run.

A worker runs steps on ``concurrency`` threads, each claiming a few ready
steps at a time (one at first, more while they take under a millisecond:
tiny steps pay one transaction per batch, slow ones are not held back from
idle workers), and one more thread renews the leases of what it holds (every third
of the shortest: a claim holds for its run's lease, given with ``lease=`` or ``submit
--lease``, else for the worker's own) and looks for cancelled runs (every :data:`LOOK`
seconds).  A step of a cancelled run is stopped as a timeout would stop it: its
record says ``cancelled`` at once and the programs of the run's command steps are
killed; the call itself is abandoned and its result, if it comes, is refused by the
fence, and its thread is taken until it returns.

Steps that add steps: a step's attempt carries its adds (``Attempt.carry``)
with its outcome to the queue, which applies them as it records it
(``stores/_queue_grow``); what a worker knows of a run, and its plan grown by
the added steps, is ``_worker_run.RunOf``.

Which code runs: a worker compares each step's code digest with the one the
run recorded, and leaves a step whose code differs alone (it says so once
per run), as it leaves runs whose flow it cannot load or whose structure
differs: a half-deployed fleet cannot record results of other code.
"""

import threading
import time

from .._children import kill
from .._errors import Skip, StoreError
from .._events import Event, dispatch, log
from .._records import step_traceback
from .._result import Run
from .._steps import TRIGGERS
from ..pools._attempt import Captured, Grown
from ..stores._files import new_owner
from ..stores._queue import GATHER, SUCCEEDED, Claim, Outcome
from ._cache import cache_key
from ._limits import document
from ._call import batch_error, gather, invoke_timed, unit_kwargs
from ._maps import item_failed, kept
from ._recorder import cached
from ._setup import prepare, release
from ._worker_run import RunOf, added_document

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from .._plan import _Plan
    from .._records import RunInfo
    from .._typed import Converter
    from ..stores import Store
    from ..stores._queue import WorkQueue
    from ._options import RunOptions

__all__ = ["LEASE", "LOOK", "Worker", "plan_document", "run_on_workers", "submit"]

#: Seconds a claim holds without a heartbeat, by default (a run's ``lease=``, a worker's ``--lease``).
LEASE = 30.0
#: Seconds between two looks for cancelled runs while steps run.
LOOK = 0.1
#: The most steps one claim takes.
BATCH = 64


def plan_document(
    plan: "_Plan", subset: "list[int] | None", on_failure: str, done: "list[int] | None" = None,
    lease: "float | None" = None,
) -> "dict[str, Any]":
    """What the queue keeps of a run's plan (``WorkQueue.submit``); ``done``:
    the steps a resumed run finished before; ``lease``: the run's lease
    (its claims', on every worker; ``None``: each worker's own)."""
    kernel = plan.graph.kernel
    src: list[int] = []
    dst: list[int] = []
    for i in range(len(plan.steps)):
        for p in kernel.predecessors(i):
            src.append(p)
            dst.append(i)
    return {
        "n": len(plan.steps), "src": src, "dst": dst, "names": [str(name) for name in plan.graph.names],
        "triggers": [TRIGGERS.index(s.trigger) for s in plan.steps] if plan.has_triggers else None,
        "subset": subset, "done": done, "on_failure": on_failure, "lease": lease,
        "timeout": [s.timeout for s in plan.steps], "retries": [s.retries for s in plan.steps],
    }


def submit(
    plan: "_Plan", flow: str, source: "str | None", inputs: "Mapping[str, Any] | None", options: "RunOptions"
) -> "tuple[Store, str, list[Callable[[Any], Any]], set[str] | None]":
    """Check and start a run on the store's queue (its record, its plan, its
    first ready steps); the store, the run's id, its hooks and the steps
    whose outputs its ``Run`` holds (``None``: all).

    A resumed run (``options.resume``) is reopened as on any backend (its
    finished steps kept, a change of their code refused) and its unfinished
    steps go back on the queue; one still on the queue (its caller died)
    stays there as it is, for its workers and this process to go on with.

    Raises:
        FlowError: a problem with the options, the inputs, or the store.
        StoreError: the store cannot be used.
    """
    runner, _ = prepare(plan, flow, source, inputs, options)
    keep = None if runner.keep is None else {str(runner.names[i]) for i in runner.keep}
    try:
        store = runner.recorder.store  # type: ignore[union-attr]
        queue = store.queue()
        try:
            if not (options.resume and queue.plan(runner.run_id) is not None):
                done = None
                if options.resume:  # (the steps it finished before: succeeded in the reset kernel)
                    done = [i for i, state in enumerate(runner.k.states()) if state == SUCCEEDED]
                doc = plan_document(runner.plan, runner.subset, options.on_failure, done, options.lease)
                if runner.plan is not plan:  # (a resumed run whose steps added steps: made again by prepare)
                    doc |= added_document(plan, runner.plan, store.added_steps(runner.run_id))
                queue.submit(runner.run_id, doc | document(runner.plan, options.pools, options.rates))
        finally:
            queue.close()
        store.release(runner.run_id)  # (the queue holds the run now, not this process)
    finally:
        release(runner)
    return store, runner.run_id, list(runner.hooks), keep


def run_on_workers(
    plan: "_Plan", flow: str, source: "str | None", inputs: "Mapping[str, Any] | None", options: "RunOptions"
) -> "Run":
    """``Flow.run(executor="workers")``: submit the run, work on it with
    ``max_workers`` threads (default 1) beside the other workers, and wait for
    its end; its :class:`~microdag.Run` as the store records it."""
    store, run_id, hooks, keep = submit(plan, flow, source, inputs, options)
    cancel = options.cancel
    worker = Worker(store, lambda info: plan if info.id == run_id else None, concurrency=options.max_workers or 1,
                    lease=options.lease or LEASE, only=run_id)
    queue = store.queue()
    seen = queue.progress(run_id, 0)[0] if options.resume else 0  # (a resume tells what happens from now on)

    def emit(kind: str, step: "str | None", **fields: "Any") -> None:
        dispatch(tuple(hooks), Event(kind, run_id, flow, step, time=time.time(), **fields))

    try:
        worker.start()
        over = False
        while not over:
            if cancel is not None and cancel.is_set():
                queue.cancel(run_id)
            over = store.run_info(run_id).status != "running"
            if hooks:  # (after the look at the status: what the run's last commit wrote is told too)
                seen, records = queue.progress(run_id, seen)
                for step, status, attempts in records:
                    emit("step_finished", step, status=status, attempt=attempts)
            if not over:
                queue.wait(0.05)
    except BaseException:  # Ctrl-C: the run is cancelled for every worker
        queue.cancel(run_id)
        worker.stop_after(2.0)
        raise
    finally:
        worker.stop_after(0.0)
        queue.close()
    tasks = store.tasks(run_id)
    if keep is not None and not options.targets:  # (added steps' outputs are kept, as in one process)
        keep |= {t.step for t in tasks if t.step not in plan.graph._index}
    info, recipes = store.run_info(run_id), store.added_steps(run_id)
    typed = (worker.runs.get(run_id) or RunOf(plan, info, None, store.codec)).typed_outputs(recipes)
    run = Run.from_records(info, tasks, lambda step: store.output(run_id, step, -1, typed.get(step)), keep,
                           added={made["step"]: made["by"] for made in recipes})
    if hooks:
        emit("run_finished", None, status=run.status, duration=run.duration)
    return run


class Worker:
    """Claims steps from ``store``'s queue and runs them (see the module docs).

    Args:
        store: an opened store that is a work queue.
        plans: a run's record -> the plan of its flow, or ``None`` when this
            worker cannot run it.
        concurrency: steps run at once (threads).
        lease: seconds a claim holds without a heartbeat.
        only: work on this run only.
        say: where the worker says what it leaves alone (default: a warning log).
    """

    def __init__(
        self, store: "Store", plans: "Callable[[RunInfo], _Plan | None]", *, concurrency: int = 1,
        lease: float = LEASE, only: "str | None" = None, say: "Callable[[str], object] | None" = None,
    ) -> None:
        self.store = store
        self.queue: WorkQueue = store.queue()
        self.plans = plans
        self.concurrency = concurrency
        self.lease = lease
        self.only = only
        self.say = say or (lambda text: log(30, "%s", text))
        self.token = new_owner()
        self.runs: dict[str, RunOf | None] = {}
        self.leases: dict[str, float] = {}  # the runs that have a lease of their own
        self.unknown: set[str] = set()  # runs met in a claim, to look at outside it
        self.growing: set[str] = set()  # runs with a step added that this worker has not made yet
        self.queue.bind_added = lambda run_id, doc, made: self.runs[run_id].bind_added(doc, made)  # type: ignore[union-attr]
        self.learning = threading.Lock()
        self.held: dict[tuple[str, int, int], Claim] = {}
        self.done = threading.Event()
        self.threads: list[threading.Thread] = []
        self.ran = 0  # steps whose outcome was recorded

    # -- which runs and steps ------------------------------------------------------------

    def _refuse(self, run_id: str, step: int) -> bool:
        """Whether to leave a step alone (in the claim's transaction: no I/O)."""
        if self.only is not None and run_id != self.only:
            return True
        run = self.runs.get(run_id, False)
        if run is False:
            self.unknown.add(run_id)
            return True
        if run is not None and step >= len(run.names):  # type: ignore[union-attr]
            self.growing.add(run_id)  # (an added step: made outside the claim)
            return True
        return run is None or step in run.foreign  # type: ignore[union-attr]

    def _meet(self, run_ids: "list[str]") -> None:
        """Runs with steps to claim: learn those not seen yet, before the claim."""
        new = [run_id for run_id in run_ids if run_id not in self.runs and (self.only in (None, run_id))]
        if new:
            self.unknown.update(new)
            self._learn()

    def _learn(self) -> None:
        """Look at the runs claims met for the first time: can this worker run them?"""
        with self.learning:  # (one thread at a time: each run is looked at, and told about, once)
            self._look()

    def _look(self) -> None:
        for run_id in list(self.growing):
            self.growing.discard(run_id)
            run = self.runs.get(run_id)
            doc = self.queue.plan(run_id)
            if run is not None and doc is not None:
                run.grow_to(doc)
                self.queue.reconsider(run_id)  # (its added steps, turned down while unknown)
        for run_id in list(self.unknown):
            if run_id in self.runs:
                self.unknown.discard(run_id)
                continue
            self.unknown.discard(run_id)
            try:
                info, lease = self.queue.learn(run_id)  # (one read: on the way to a claim)
                plan = self.plans(info)
            except Exception as exc:
                self.runs[run_id] = None
                self.say(f"worker: run {run_id} is left alone: its flow cannot be loaded "
                         f"({type(exc).__name__}: {exc})")
                continue
            if plan is None:
                self.runs[run_id] = None
                self.say(f"worker: run {run_id} of flow {info.flow!r} is left alone: this worker has no such "
                         "flow (give it with --flows)")
                continue
            if not plan.made(info.fingerprint):
                self.runs[run_id] = None
                self.say(f"worker: run {run_id} of flow {info.flow!r} is left alone: its steps or dependencies "
                         "differ from the flow this worker loaded")
                continue
            if lease:
                self.leases[run_id] = lease
            run = self.runs[run_id] = RunOf(plan, info, self.store.run_dir(run_id), self.store.codec)
            if run.foreign:
                shown = ", ".join(repr(run.names[i]) for i in sorted(run.foreign)[:5])
                self.say(f"worker: run {run_id} of flow {info.flow!r}: steps {shown} are left alone: their "
                         "code differs from the code the run was started with")

    def _skipped_runs(self) -> "list[str]":
        return [run_id for run_id, run in self.runs.items() if run is None]

    # -- running ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker's threads (and capture of what steps print)."""
        from .. import _capture  # (what steps print is kept, as in any durable run)

        _capture.install()
        for n in range(self.concurrency):
            thread = threading.Thread(target=self._work, name=f"microdag worker {n}", daemon=True)
            thread.start()
            self.threads.append(thread)
        beat = threading.Thread(target=self._beat, name="microdag heartbeat", daemon=True)
        beat.start()
        self.threads.append(beat)

    def serve(self) -> None:
        """Work until :meth:`stop_after` is called (or Ctrl-C: what it holds is given back)."""
        self.start()
        try:
            while not self.done.wait(0.5):
                pass
        finally:
            self.stop_after(0.0)

    def stop_after(self, seconds: float) -> None:
        """Stop claiming; wait up to ``seconds`` for the steps running to end,
        then give back what is still held."""
        first = not self.done.is_set()
        self.done.set()
        deadline = time.monotonic() + seconds
        for thread in self.threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        if first:
            held = [c for c in list(self.held.values()) if not c.lost]
            try:
                self._end_cancelled(held)  # (a cancelled run's steps end cancelled, not given back)
                self.queue.release([c for c in held if not c.lost])
            except StoreError:
                pass  # their leases run out instead
            from .. import _capture  # (started by start())

            _capture.uninstall()

    def _work(self) -> None:
        """One thread: claim, run, finish, until stopped."""
        batch = 1
        queue = self.queue
        while not self.done.is_set():
            try:
                claims = queue.claim(self.token, self.lease, batch, self._refuse, self._skipped_runs(), self._meet,
                                     self.leases, self.only)
            except StoreError as exc:
                log(30, "worker: %s", exc)
                self.done.wait(0.5)
                continue
            if self.unknown or self.growing:
                self._learn()
                if not claims:
                    continue  # (the steps of the runs just learned are claimed at once)
            if not claims:
                batch = 1
                queue.wait(0.05)
                continue
            for c in claims:
                self.held[c.key] = c
            began = time.perf_counter()
            done: list[tuple[Claim, Outcome]] = []
            try:
                outputs = self._inputs(claims)
            except StoreError as exc:
                log(30, "worker: %s", exc)
                outputs = {}
            for c in claims:
                if self.done.is_set():
                    break
                if not c.lost:
                    done.append((c, self._run(c, outputs.get(c.run_id, {}))))
            took = time.perf_counter() - began
            self._finish(done)
            for c in claims:
                self.held.pop(c.key, None)
            batch = min(BATCH, batch * 2) if took < 0.001 * len(claims) else 1

    def _finish(self, done: "list[tuple[Claim, Outcome]]") -> None:
        """Record what ran; while the store cannot be written (a server
        restarting), try again for as long as the leases hold."""
        deadline = time.monotonic() + min([c.lease or self.lease for c, _ in done], default=self.lease) / 2
        while True:
            try:
                self.ran += sum(self.queue.finish([d for d in done if not d[0].lost]))
                return
            except StoreError as exc:
                log(30, "worker: %s", exc)
                if time.monotonic() >= deadline or self.done.wait(0.5):
                    return  # (their leases run out: the steps run again, as after a kill)

    def _inputs(self, claims: "list[Claim]") -> "dict[str, dict[str, bytes]]":
        """The encoded outputs the claimed steps take, by run: one read per run
        (a claimed step is ready: what it takes is recorded); none for the
        units of a map this worker expanded already."""
        wanted: dict[str, set[str]] = {}
        for c in claims:
            run = self.runs[c.run_id]
            assert run is not None
            if c.item >= 0 and c.step in run.maps:
                continue
            wanted.setdefault(c.run_id, set()).update(run.names[d] for d in run.plan.argdeps[c.step])
        return {run_id: self.queue.outputs(run_id, sorted(steps)) for run_id, steps in wanted.items() if steps}

    def _run(self, claim: Claim, encoded: "dict[str, bytes]") -> Outcome:
        """Run what ``claim`` holds (``encoded``: the outputs it takes): a
        step's attempt, a map step's plan or one of its units or its
        gathering (see the module docs); how it ended."""
        run = self.runs[claim.run_id]
        assert run is not None
        i = claim.step
        plan = run.plan
        names = run.names
        step = plan.steps[i]
        att = run.caller.attempt(i, claim.attempt)
        att.carry = True  # (its adds come back with its result, applied as it finishes: _queue_grow)
        started = time.time()
        key = None
        fn = plan.fns[i]
        try:
            expanded = run.maps.get(i) if claim.item >= 0 else None
            if expanded is None:
                values = [self.store.decode(encoded[d], run.outs.get(d)) if d in encoded else None
                          for d in (names[d] for d in plan.argdeps[i])]
                if claim.item == GATHER:
                    return self._gather(run, claim, values, started)
                if claim.item >= 0:
                    expanded = run.expand(i, values)
            if expanded is not None:  # a map unit
                call_names, args, pos, unit_list = expanded
                j = claim.item // (step.batch_size or 1)
                att = run.caller.attempt(i, claim.attempt, unit=j, item=claim.item)
                att.carry = True
                kw = unit_kwargs(call_names, args, pos, unit_list[j])
            else:
                kw = run.kwargs(i, values)
                if step.cache:
                    key = cache_key(step.name, step.fn, kw)
                    hit, value = cached(self.store, key, step.cache_ttl, run.outs.get(step.name))
                    if hit:  # (recorded as the runner records a hit: no attempt, no times)
                        return Outcome("succeeded", None, None, self.store.encode(
                            value, "a cached output", run.outs.get(step.name)), attempts=0)
                if step.map is not None:
                    return self._plan(run, claim, values, started, key)
            value = invoke_timed(fn, kw, att)
        except Skip as exc:
            return Outcome("skipped", started, time.time(), logs=getattr(exc, "__microdag_logs__", ""),
                           added=getattr(exc, "__microdag_added__", None))
        except Exception as exc:
            retry = plan.retry[i].delay(exc, claim.attempt)
            if expanded is not None and retry is None:
                item_failed(exc, att)
            out = self._failed(exc, started, time.time(), getattr(exc, "__microdag_logs__", ""), retry)
            out.added = getattr(exc, "__microdag_added__", None)
            return out
        finished = time.time()
        added = None
        if type(value) is Grown:  # (the steps it added: applied by the queue as it finishes)
            value, added = value.value, value.added
        text = ""
        if type(value) is Captured:
            value, text = value.value, value.text
        if expanded is not None and step.batch_size is not None:  # a batch returns one result per item
            error = batch_error(str(names[i]), claim.item, len(expanded[3][att.unit]), value)
            if error is not None:
                item_failed(error, att)
                out = self._failed(error, started, finished, text)
                out.added = added
                return out
        what, typed = (f"the output of step {names[i]!r}", run.outs) if expanded is None else \
            (f"the output of item {claim.item} of step {names[i]!r}", run.units)
        out = self._succeeded(value, what, started, finished, key, text, typed=typed.get(names[i]))
        out.added = added
        return out

    def _succeeded(
        self, value: "Any", what: str, started: float, finished: float, key: "str | None", logs: str = "",
        attempts: "int | None" = None, typed: "Converter | None" = None,
    ) -> Outcome:
        """A success with ``value`` (``what`` it is, ``typed`` its converter; cached
        under ``key``), or a failure when the store cannot keep it."""
        try:
            data = self.store.encode(value, what, typed)
        except Exception as exc:  # not JSON, does not pickle: the step fails
            return self._failed(exc, started, finished, logs, attempts=attempts)
        if key is not None:
            try:
                self.store.cache_put(key, data, time.time())
            except StoreError as exc:
                log(30, "worker: %s", exc)
        return Outcome("succeeded", started, finished, data, logs=logs, attempts=attempts)

    @staticmethod
    def _failed(
        exc: BaseException, started: float, finished: float, logs: str = "", retry: "float | None" = None,
        attempts: "int | None" = None,
    ) -> Outcome:
        tb = getattr(exc, "__microdag_traceback__", None) or step_traceback(exc)
        return Outcome("failed", started, finished, None, type(exc).__name__, str(exc), tb, logs, retry, attempts)

    def _plan(self, run: RunOf, claim: Claim, values: "list[Any]", started: float, key: "str | None") -> Outcome:
        """Map step ``claim.step``'s own claim: expand it into the units its run
        has not recorded as succeeded (``_maps.kept``: a resume's), or end it
        (no items, or none left: succeeded; not iterable: failed, not retried)."""
        i = claim.step
        try:
            unit_list = run.expand(i, values)[3]
        except TypeError as exc:
            return self._failed(exc, started, time.time())
        if not unit_list:
            return self._succeeded([], f"the output of step {run.names[i]!r}", started, time.time(), key)
        size = run.plan.steps[i].batch_size
        rows = {row[0]: row for row in self.queue.items(claim.run_id, str(run.names[i])) if row[1] == "succeeded"}
        done = kept(unit_list, size, {item: row[2] for item, row in rows.items()},
                    lambda item: self.store.decode(rows[item][7], run.units.get(str(run.names[i])))) if rows else {}
        if len(done) == len(unit_list):
            return self._gather(run, claim, values, started)
        todo = [j * (size or 1) for j in range(len(unit_list)) if j not in done]
        return Outcome("planned", started, time.time(), units=todo)

    def _gather(self, run: RunOf, claim: Claim, values: "list[Any]", started: float) -> Outcome:
        """Map step ``claim.step``'s last unit finished: its outcome from its
        item records (``_call.gather``; the first failed item's error), its
        attempts its most-tried unit's."""
        i = claim.step
        step = run.plan.steps[i]
        name = str(run.names[i])
        items = self.queue.items(claim.run_id, name)
        attempts = max((row[2] for row in items), default=1)
        began = min((row[3] for row in items if row[3] is not None), default=started)
        for _, status, _, _, etype, emsg, tb, _ in items:
            if status != "succeeded":
                return Outcome("failed", began, time.time(), None, etype, emsg, tb, attempts=attempts)
        results = [self.store.decode(row[7], run.units.get(name)) for row in items]
        key = cache_key(step.name, step.fn, run.kwargs(i, values)) if step.cache else None
        return self._succeeded(gather(results, step.batch_size is not None), f"the output of step {name!r}",
                               began, time.time(), key, attempts=attempts, typed=run.outs.get(name))

    def _beat(self) -> None:
        """Renew leases; stop the steps of cancelled runs."""
        queue = self.queue
        last = time.monotonic()
        while not self.done.wait(LOOK):
            held = [c for c in list(self.held.values()) if not c.lost]
            if not held:
                continue
            try:
                if time.monotonic() - last >= min(c.lease or self.lease for c in held) / 3:  # (the shortest lease)
                    last = time.monotonic()
                    queue.heartbeat(held, self.lease)
                self._end_cancelled(held)
            except StoreError as exc:
                log(30, "worker: %s", exc)

    def _end_cancelled(self, held: "list[Claim]") -> None:
        """The steps of ``held`` whose runs were cancelled end ``cancelled`` now,
        as a timeout would end them: their calls are abandoned (their threads'
        own finish is fenced out) and the programs of the runs' command steps killed."""
        stopped = self.queue.stopping({c.run_id for c in held})
        if not stopped:
            return
        now = time.time()
        ended = [c for c in held if c.run_id in stopped and not c.lost]
        for c in ended:
            c.lost = True
        self.queue.finish([(c, Outcome("cancelled", now, now)) for c in ended])
        for run_id in stopped:
            kill(run_id)
