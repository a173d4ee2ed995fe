"""The recorder: everything a run keeps, between the state machine and the store.

The state machine tells the recorder what happened (a step succeeded,
failed, ended; a unit of a map did; an attempt failed and is retried; an
attempt printed something) and asks it for what a resumed run left (stored
outputs) and for cached outputs.  Two recorders:

- :class:`NullRecorder`, for runs without a store: it keeps nothing, so that
  the hot loop pays nothing; its cache lives in this process's memory;
- :class:`StoreRecorder`: it encodes outputs with the store's codec (with the
  JSON codec, by the step's return annotation: ``_typed``, so that an output
  read back by a resume or a cache hit is of the type it was made), builds
  task records and hands them to the store (which commits them in groups),
  keeps logs and retried attempts, opens the run's record (new, or resumed:
  what already succeeded) and closes it.

Times come in as the runner's clock readings and are stored as wall-clock
times (``reading + offset``).  The recorder is the only part of a run that
knows the store.

A write the store refuses (a full disk: :class:`StoreError`) stops the run:
the error passes on to the caller, and the recorder keeps the first one with
the step it was recording.  Writes after it that fail too are dropped, and
the run's end is recorded as ``failed``, with that step failed by the store's
error, as far as the store can still write.

A resume refused because an output it reads is damaged (a :class:`StoreError`
before the resumed run wrote anything) changes nothing in the run's record:
its status and finish time are put back and its claim let go.
"""

import time
from itertools import compress

from .._capture import take
from .._errors import StoreError
from .._events import log
from .._records import RunInfo, TaskRecord, key_text, step_traceback

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from .._plan import _Plan
    from ..pools._attempt import Attempt
    from .._typed import Converter, Outputs
    from ..stores import Store

    #: The steps a resumed run finished: their ids, attempts, starts and finishes (columns).
    Resumed = tuple[list[int], Sequence[int], Sequence["float | None"], Sequence["float | None"]]

__all__ = ["GRAPH_LIMIT", "PROCESS_CACHE", "STORED", "NullRecorder", "StoreRecorder", "cached"]

#: Flows of at most this many steps have their structure kept with their runs
#: (for reports); drawing a bigger one would not be read anyway.
GRAPH_LIMIT = 10_000

#: The cache of steps with ``cache=True`` in runs without a store: key ->
#: (output, when it was made), for the life of the process.
PROCESS_CACHE: "dict[str, tuple[Any, float]]" = {}


def _fresh(made: float, ttl: "float | None") -> bool:
    return ttl is None or time.time() - made <= ttl


def cached(store: "Store", key: str, ttl: "float | None", typed: "Converter | None" = None) -> "tuple[bool, Any]":
    """The output ``store`` caches under ``key``, if younger than ``ttl``
    seconds: ``(True, value)``, else ``(False, None)``; a damaged entry (or
    one that does not fit ``typed``, the converter of the step's annotation)
    is a miss (logged).  The cache rule of runs with a store and of workers."""
    try:
        found = store.cache_get(key)
        if found is not None and _fresh(found[1], ttl):
            return True, store.decode(found[0]) if typed is None else store.decode(found[0], typed)
    except Exception as exc:
        log(30, "cache entry %s in %r is damaged (%s: %s); the step runs", key, store, type(exc).__name__, exc)
    return False, None



class _Stored:
    """The marker of an output a resumed run's store holds."""

    __repr__ = lambda self: "<stored output>"  # noqa: E731


#: An output the run's store holds (a resumed run's, or one an added step
#: needs after the run let it go), read when a step needs it.
STORED = _Stored()

class NullRecorder:
    """A run without a store: nothing is kept (see the module docs)."""

    durable = False
    timed = False
    in_memory = True
    run_dir: "str | None" = None
    names: "Sequence[str]" = ()

    def grown(self, plan: "_Plan") -> None:
        self.names = plan.graph.names

    def step_added(self, recipe: "dict[str, Any]") -> None:
        return None

    def start(self, offset: float) -> None:
        return None

    def step_succeeded(
        self, i: int, value: "Any", attempts: int, started: float, finished: float, waited: "float | None" = None,
    ) -> None:
        return None

    def step_ended(
        self, i: int, status: str, attempts: int, started: float, finished: float,
        error: "BaseException | None" = None, waited: "float | None" = None,
    ) -> None:
        return None

    def unit_succeeded(self, att: "Attempt", value: "Any", earlier: float = 0.0) -> None:
        return None

    def unit_failed(self, att: "Attempt", exc: BaseException, earlier: float = 0.0) -> None:
        return None

    def retried(self, att: "Attempt", exc: BaseException) -> None:
        return None

    def logs(self, att: "Attempt", text: str) -> None:
        return None

    def hot_logs(self, i: int, attempt: int) -> None:
        return None

    def output(self, step: str, item: int = -1) -> "Any":
        raise KeyError(step)

    def outputs(self, steps: "list[str]") -> "dict[str, Any]":
        return {}

    def cache_get(self, key: str, ttl: "float | None", step: str = "") -> "tuple[bool, Any]":
        entry = PROCESS_CACHE.get(key)
        if entry is not None and _fresh(entry[1], ttl):
            return True, entry[0]
        return False, None

    def cache_put(self, key: str, value: "Any", step: str = "") -> None:
        PROCESS_CACHE[key] = (value, time.time())

    def close(self, status: str, finished: float) -> None:
        return None


class StoreRecorder:
    """A run kept in a store (see the module docs)."""

    durable = True

    def __init__(
        self, store: "Store", run_id: str, names: "tuple[str, ...]", typed: "Outputs" = ({}, {})
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.names = names
        #: Step name -> the converter of its output, and of a map step's unit
        #: (``_Plan.typed_outputs``; empty for plain JSON outputs and other codecs).
        self.typed, self.unit_typed = typed
        self.run_dir = store.run_dir(run_id)
        self.offset = 0.0  # clock reading + offset = wall time (start)
        #: The first write the store refused, with the step and item it recorded.
        self.broken: "tuple[StoreError, str, int] | None" = None
        #: The record of the run being resumed, as it was; whether this run wrote
        #: since; whether it was refused before it did (then it writes nothing).
        self.previous: "RunInfo | None" = None
        self.wrote = self.refused = False
        self.added = 0  # steps recorded as added by steps
        #: Whether the run has pools or rates: then each record keeps how long
        #: its attempts waited for them, in all (``TaskRecord.waited``).
        self.timed = False

    def start(self, offset: float) -> None:
        """The run's clock starts: a reading plus ``offset`` is a wall time."""
        self.offset = offset

    @property
    def in_memory(self) -> bool:
        """Whether the store lives in this process only (it may keep added steps' functions as objects)."""
        return self.store.in_memory

    def grown(self, plan: "_Plan") -> None:
        """The run has a plan of its own (its first add): its steps' names,
        and the converters of their outputs, which its adds extend."""
        self.names = plan.graph.names
        self.typed, self.unit_typed = plan.typed_outputs(self.store.codec)

    def step_added(self, recipe: "dict[str, Any]") -> None:
        """Record a step a step added: how a resume makes it again (``_recipe.recipe``)."""
        self.wrote = True
        try:
            self.store.save_added(self.run_id, self.added, recipe)
        except StoreError as exc:
            self._refused(exc, recipe["step"], -1)
        self.added += 1

    def added_steps(self) -> "list[dict[str, Any]]":
        """The steps the run's steps added, as recorded, in order (a resume)."""
        recipes = self.store.added_steps(self.run_id)
        self.added = len(recipes)
        return recipes

    def _refused(self, exc: StoreError, step: str, item: int) -> None:
        """A write failed: the first failure is kept and passes on (it stops the
        run); later ones are dropped (the run is ending; its end says why)."""
        if self.broken is not None:
            return
        self.broken = (exc, step, item)
        raise exc

    # -- opening -------------------------------------------------------------------

    def begin(self, info: RunInfo, plan: "_Plan") -> None:
        """Record a new run (and the flow's structure, for reports).

        Raises:
            TypeError: the inputs cannot be encoded by the store's codec.
            StoreError: the run id is taken.
        """
        store = self.store
        # The graph first: a store that batches writes commits it with the
        # run's record, so a reader that sees the run sees its graph.
        if len(plan.fns) <= GRAPH_LIMIT and store.graph(info.fingerprint) is None:
            store.save_graph(info.fingerprint, plan.graph_json())
        store.begin(info)

    def resume(
        self, index: "dict[str, int]", active: "set[int] | None", maps: "set[str]", force: bool
    ) -> "tuple[Resumed, dict[int, dict[int, int]], dict[int, tuple[dict[str, int], int]]]":
        """Claim run ``run_id`` to resume it; what its store records as
        succeeded, as ``(steps, items, numbered)``: ``steps``, the ids of the steps
        that succeeded and their attempts, starts and finishes (four
        columns), ``items``, map step id -> {item: attempts} for the
        items of the map steps ``maps`` that succeeded, and ``numbered``,
        map step id -> ({key text: item}, the largest item recorded) over
        the item records of those map steps (keyed maps' items are found
        by key).  Then :meth:`reopen` (or :meth:`let_go`).

        Raises:
            StoreError: the run is live in another process (unless ``force``).
        """
        store = self.store
        run_id = self.run_id
        store.claim(run_id, force=force)
        self.previous = store.run_info(run_id)
        names, *facts = store.succeeded_columns(run_id)
        ids = list(map(index.get, names))
        columns: list[Any] = [ids, *facts]
        if active is not None or None in ids:  # (not the usual case: a million steps are read as they come)
            keep = [i is not None and (active is None or i in active) for i in ids]
            columns = [list(compress(column, keep)) for column in columns]
        steps: Resumed = tuple(columns)
        items: dict[int, dict[int, int]] = {}
        numbered: dict[int, tuple[dict[str, int], int]] = {}
        if maps:
            maps = maps.difference(self.names[i] for i in steps[0])
        if maps:
            for r in store.tasks(run_id, outputs=False):
                if r.item >= 0 and r.step in maps:
                    i = index[r.step]
                    if r.status == "succeeded":
                        items.setdefault(i, {})[r.item] = r.attempts
                    by_key, top = numbered.get(i) or ({}, -1)
                    if r.key is not None:
                        by_key[r.key] = r.item
                    numbered[i] = (by_key, max(top, r.item))
        return steps, items, numbered

    def reopen(self) -> None:
        """The resumed run goes on: recorded as running again."""
        self.store.finish(self.run_id, "running", None)

    def let_go(self) -> None:
        """The resume is refused after :meth:`resume` claimed the run: let go of it."""
        self.store.release(self.run_id)

    def storable(self, values: "dict[str, Any]") -> "dict[str, Any]":
        """The entries of ``values`` that the store's codec can keep."""
        kept = {}
        for name, value in values.items():
            try:
                self.store.encode(value, "an input")
            except Exception:
                continue
            kept[name] = value
        return kept

    # -- what happened ---------------------------------------------------------------

    def _save(
        self, step: str, item: int, status: str, attempts: int, started: "float | None",
        finished: "float | None", error: "BaseException | None" = None, output: "bytes | None" = None,
        key: "str | int | None" = None, waited: "float | None" = None,
    ) -> None:
        if self.refused:
            return
        self.wrote = True
        etype = emsg = tb = None
        if error is not None:
            etype, emsg, tb = type(error).__name__, str(error), step_traceback(error)
        record = TaskRecord(step, item, status, attempts, started, finished, etype, emsg, tb, output,
                            None if key is None else key_text(key), waited)
        try:
            self.store.save(self.run_id, [record])
        except StoreError as exc:
            self._refused(exc, step, item)

    def _wall(self, attempts: int, reading: float) -> "float | None":
        return reading + self.offset if attempts and reading else None

    def step_succeeded(
        self, i: int, value: "Any", attempts: int, started: float, finished: float, waited: "float | None" = None,
    ) -> "Exception | None":
        """Record step ``i``'s success; the exception when its output cannot be stored."""
        name = self.names[i]
        self.wrote = True
        try:
            data = self._encode(value, f"the output of step {name!r}", self.typed.get(name) if self.typed else None)
        except Exception as exc:  # not JSON, does not pickle: the step fails
            return exc
        offset = self.offset
        record = TaskRecord(
            name, -1, "succeeded", attempts, started + offset if attempts else None,
            finished + offset if attempts and finished else None, None, None, None, data, None, waited,
        )
        try:
            self.store.save(self.run_id, [record])
        except StoreError as exc:
            self._refused(exc, name, -1)
        return None

    def _encode(self, value: "Any", what: str, typed: "Converter | None") -> bytes:
        """``value`` encoded by the store (by its annotation's converter ``typed``, if any:
        a store of its own that encodes with two arguments is called with two)."""
        return self.store.encode(value, what) if typed is None else self.store.encode(value, what, typed)

    def step_ended(
        self, i: int, status: str, attempts: int, started: float, finished: float,
        error: "BaseException | None" = None, waited: "float | None" = None,
    ) -> None:
        """Record that step ``i`` ended ``status`` (not a success), or is left pending."""
        self._save(self.names[i], -1, status, attempts, self._wall(attempts, started),
                   self._wall(attempts, finished), error, waited=waited if attempts else None)

    def unit_succeeded(self, att: "Attempt", value: "Any", earlier: float = 0.0) -> None:
        """Record a map unit's success (under its first item's index; ``earlier``:
        seconds its attempts before ``att`` waited for pools and rates)."""
        try:
            data = self._encode(value, f"the output of item {att.item} of step {att.name!r}",
                                self.unit_typed.get(att.name) if self.unit_typed else None)
        except Exception:
            return  # the step's own record reports what cannot be stored
        self._save(att.name, att.item or 0, "succeeded", att.number, att.started + self.offset,
                   att.finished + self.offset, output=data, key=att.key,
                   waited=att.waited + earlier if self.timed else None)

    def unit_failed(self, att: "Attempt", exc: BaseException, earlier: float = 0.0) -> None:
        """Record that a map unit failed for good (``earlier``: as :meth:`unit_succeeded`'s)."""
        self._save(att.name, att.item or 0, "failed", att.number, att.started + self.offset,
                   att.finished + self.offset, exc, key=att.key, waited=att.waited + earlier if self.timed else None)

    def retried(self, att: "Attempt", exc: BaseException) -> None:
        """Keep the times and error of an attempt that failed and is tried again."""
        item = -1 if att.item is None else att.item
        self.wrote = True
        try:
            self.store.save_attempt(self.run_id, att.name, item, att.number, att.started + self.offset,
                                    (att.finished or att.started) + self.offset, type(exc).__name__, str(exc))
        except StoreError as error:
            self._refused(error, att.name, item)

    def logs(self, att: "Attempt", text: str) -> None:
        """Keep what attempt ``att`` printed and logged."""
        if text and not self.refused:
            item = -1 if att.item is None else att.item
            self.wrote = True
            try:
                self.store.save_logs(self.run_id, att.name, item, att.number, text)
            except StoreError as exc:
                self._refused(exc, att.name, item)

    def hot_logs(self, i: int, attempt: int) -> None:
        """Keep what step ``i`` wrote while the hot loop ran it (see ``_capture.route``)."""
        text = take(i)
        if text and not self.refused:
            self.wrote = True
            try:
                self.store.save_logs(self.run_id, self.names[i], -1, attempt, text)
            except StoreError as exc:
                self._refused(exc, self.names[i], -1)

    # -- reading what a resumed run left ------------------------------------------------

    def output(self, step: str, item: int = -1) -> "Any":
        """A stored output of this run (``KeyError`` when there is none), of its annotation's type."""
        typed = (self.unit_typed if item >= 0 else self.typed).get(step)
        try:
            if typed is None:
                return self.store.output(self.run_id, step, item)
            return self.store.output(self.run_id, step, item, typed)
        except StoreError:
            self._unreadable()
            raise

    def outputs(self, steps: "list[str]") -> "dict[str, Any]":
        """Several stored outputs in one read."""
        try:
            if self.typed:
                return self.store.outputs(self.run_id, steps, self.typed)
            return self.store.outputs(self.run_id, steps)
        except StoreError:
            self._unreadable()
            raise

    def _unreadable(self) -> None:
        """An output the resumed run needs is damaged: before it wrote anything,
        the resume is refused (see the module docs)."""
        if self.previous is not None and not self.wrote:
            self.refused = True

    # -- the cache ------------------------------------------------------------------

    def cache_get(self, key: str, ttl: "float | None", step: str = "") -> "tuple[bool, Any]":
        """The cached output of ``step`` under ``key`` (:func:`cached`)."""
        return cached(self.store, key, ttl, self.typed.get(step) if self.typed else None)

    def cache_put(self, key: str, value: "Any", step: str = "") -> None:
        try:
            typed = self.typed.get(step) if self.typed else None
            self.store.cache_put(key, self._encode(value, "a cached output", typed), time.time())
        except TypeError:
            pass  # not storable: the step's own record says so

    def close(self, status: str, finished: float) -> None:
        """Record the run's end (durably) and let go of it: ``failed``, with the
        step the store's error stopped, when a write was refused (see the module docs)."""
        store = self.store
        stop: "tuple[StoreError, str, int] | None" = None
        if self.refused and self.previous is not None:
            try:
                store.finish(self.run_id, self.previous.status, self.previous.finished)
            finally:
                store.release(self.run_id)
            return
        try:
            if self.broken is None:
                try:
                    store.finish(self.run_id, status, finished)
                    return
                except StoreError as refused:  # the end is written without what could not be
                    self.broken = stop = (refused, "", -1)
            error, step, item = self.broken
            if step:
                self._save(step, item, "failed", 1, None, None, error)
            try:
                store.finish(self.run_id, "failed", finished)
            except StoreError:
                pass  # as far as the store can still write; the first error says why
            if stop is not None:
                raise error
        finally:
            store.release(self.run_id)
