"""Map steps: one step, many units (items, or batches of items), each an attempt of its own.

A map step is one ``RUNNING`` node of the kernel from the moment it starts
until its last unit settles.  Starting it expands the value it maps over into
units (:class:`MapRun`); loops claim units (threads in chunks, pools one at
a time) and report each one back as an :class:`~microdag.pools._attempt.Attempt`
through the state machine's one path (``Runner.settle`` and
``Runner.failed``: retries, skips and interrupts are decided there, the same
way as for steps).  When the last unit settles, the step fails with its first
failed item's error, or succeeds with the list of results in item order.

State of a :class:`MapRun`: ``units`` and ``results`` by unit index;
``next`` (the first unit nobody claimed), ``pending`` (units not settled),
``tries`` (attempts of the units that were tried more than once, or that a
resumed run recorded), ``errors`` (failed units), ``finished``; ``todo``
lists the units still to run in a resumed run.  Claims and counts change
under the runner's lock; a unit's result slot belongs to whoever claimed it.

A map step's ``attempts`` is the largest number of attempts any of its units
took.

A map step with ``key=`` (``_keys``: the rules) also holds its items' keys
(``keys``), their record numbers when a resume moved them (``numbers``) and
the values of parameters aligned by key (``extra``); a resume then finds a
finished item by its key, whatever its position now.
"""

from .._compat import sched
from ..pools._attempt import Attempt, local
from ._call import batch_error, gather, map_call, unit_kwargs, units
from ._keys import aligned, duplicate, numbers, read_keys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ._state import Runner

__all__ = ["MapRun", "Maps", "item_failed", "kept"]


def item_failed(exc: BaseException, att: Attempt) -> None:
    """Note on ``exc`` that map unit attempt ``att`` failed for good with it (its item's record says so)."""
    key = "" if att.key is None else f" (key {att.key!r})"
    exc.add_note(f"microdag: item {att.item}{key} of map step {att.name!r} failed on attempt {att.number}")



def kept(
    unit_list: "list[Any]", size: "int | None", recorded: "dict[int, int]", output: "Callable[[int], Any]"
) -> "dict[int, tuple[Any, int]]":
    """Resume: the units of a map step (``unit_list``, of ``size`` items a
    batch, or one item each) that its run recorded as succeeded, by unit
    position: ``(result, attempts)``.  ``recorded`` is {item index: attempts}
    of its succeeded item records (a unit is recorded under its first item's
    index); ``output(item)`` reads one, raising :class:`KeyError` when it is
    not kept.  A record that does not fit today's units is not used."""
    base = size or 1
    found: dict[int, tuple[Any, int]] = {}
    for item, tries in recorded.items():
        j, rest = divmod(item, base)
        if rest or j >= len(unit_list):
            continue
        try:
            result = output(item)
        except KeyError:
            continue
        if size is not None and (not isinstance(result, list) or len(result) != len(unit_list[j])):
            continue
        found[j] = (result, tries)
    return found

class MapRun:
    """One map step being run: its units and how far they got."""

    __slots__ = ("i", "names", "values", "pos", "units", "size", "results", "next", "pending",
                 "tries", "errors", "finished", "todo", "items", "ended", "keys", "numbers", "extra", "cache", "held",
                 "redo", "blocked", "waits", "spent")

    def __init__(
        self, i: int, names: "tuple[str, ...]", values: "list[Any]", pos: int,
        units: "list[Any]", size: "int | None",
    ) -> None:
        self.i = i
        self.names = names
        self.values = values
        self.pos = pos
        self.units = units
        self.size = size
        self.results: list[Any] = [None] * len(units)
        self.next = 0
        self.pending = len(units)
        self.tries: dict[int, int] = {}
        self.errors: dict[int, BaseException] = {}
        self.finished = False
        self.todo: list[int] | None = None
        #: Items it maps over, and those of units that ended (succeeded or failed;
        #: counted only when a run has hooks, which the counts are for).
        self.items = len(units) if size is None else sum(map(len, units))
        self.ended = 0
        #: A keyed map's: each item's key; its record number, when not its
        #: position (a resume); ``(position in names, value by item)`` of the
        #: parameters aligned by key.
        self.keys: list[Any] | None = None
        self.numbers: list[int] | None = None
        self.extra: list[tuple[int, list[Any]]] | None = None
        #: A cached keyed map's: unit -> the cache key its result is kept under.
        self.cache: dict[int, str] | None = None
        #: Whether each unit attempt holds the step's pools and rates (one
        #: unit claimed at a time, when they have room), and the units due to
        #: be tried again, claimed before the others.
        self.held = False
        self.redo: list[int] = []
        #: Of such a map: the clock reading when a unit could have started but
        #: its pools or rates had no room (``None``: none waits), and the seconds
        #: each unit's attempt being claimed waited so.
        self.blocked: float | None = None
        self.waits: dict[int, float] = {}
        #: Unit -> seconds its attempts before the current one waited (its record keeps the sum).
        self.spent: dict[int, float] = {}

    def unclaimed(self) -> bool:
        """Whether some unit of this map is still to be claimed."""
        return (self.next < self.count() or bool(self.redo)) and not self.finished

    def count(self) -> int:
        """How many units this run of the map claims in all."""
        return len(self.units) if self.todo is None else len(self.todo)

    def take(self) -> int:
        """Claim the next unit (the caller holds the lock); its index."""
        k = self.next
        self.next = k + 1
        return k if self.todo is None else self.todo[k]

    def kwargs(self, j: int) -> "dict[str, Any]":
        """The keyword arguments of unit ``j``."""
        out = unit_kwargs(self.names, self.values, self.pos, self.units[j])
        if self.extra is not None:
            for p, by_item in self.extra:
                out[self.names[p]] = by_item[j]
        return out

    def item(self, j: int) -> int:
        """The record number of unit ``j``'s (first) item: its position, or a
        keyed item's number (``_keys.numbers``)."""
        if self.numbers is not None:
            return self.numbers[j]
        return j * (self.size or 1)

    def key(self, j: int) -> "Any":
        """Unit ``j``'s key (``None``: not a keyed map)."""
        return None if self.keys is None else self.keys[j]

    def end_units(self, start: int, stop: int) -> "tuple[int, int]":
        """Units ``start .. stop-1`` ended (the caller holds the lock): the map's
        progress, ``(items ended, items)``."""
        self.ended += stop - start if self.size is None else sum(len(self.units[j]) for j in range(start, stop))
        return self.ended, self.items


class Maps:
    """The map steps of one run that are being run (see the module docs)."""

    def __init__(self, runner: "Runner") -> None:
        self.r = runner
        self.running: list[MapRun] = []
        self.of: dict[int, MapRun] = {}
        #: Resume: map step id -> {recorded item index: attempts} of its succeeded units.
        self.resumed: dict[int, dict[int, int]] = {}
        #: Resume: keyed map step id -> ({key text: record number}, the largest number recorded).
        self.numbered: dict[int, tuple[dict[str, int], int]] = {}
        #: Keyed map step id -> its items' keys, in this run (for the maps aligned with it).
        self.keys_of: dict[int, list[Any]] = {}

    # -- starting -----------------------------------------------------------------

    def start(self, i: int) -> None:
        """Start map step ``i`` *(owner; locks)*: expand it into units, or
        settle it at once (not iterable: failed; no items, or every unit
        recorded by the resumed run: succeeded)."""
        r = self.r
        step = r.plan.steps[i]
        assert step.map is not None
        values = [r.value(d) for d in r.plan.argdeps[i]]
        values.extend(r.consts[i])
        r.attempts[i] += 1
        r.emit("step_started", i, attempt=r.attempts[i])
        r.started[i] = r.clock()
        names, pos = map_call(r.plan, i, r.kwnames[i], values)
        if self.r.remote:  # an output on a cluster is needed here
            values[pos] = local(values[pos])
        size = step.batch_size
        try:
            unit_list = units(r.names[i], step.map, values[pos], size)
        except TypeError as exc:
            r.finished[i] = r.clock()
            r.fail(i, exc)
            return
        if not unit_list:
            r.finished[i] = r.clock()
            r.succeed(i, [])
            return
        ms = MapRun(i, names, values, pos, unit_list, size)
        bad: dict[int, BaseException] = {}
        if step.key is not None:
            try:
                bad = self._keyed(ms, step.key)
            except ValueError as exc:  # duplicate keys, or a map to align with whose keys are not known
                r.finished[i] = r.clock()
                r.fail(i, exc)
                return
        hits = self._cached_items(ms, bad) if step.cache and ms.keys is not None else {}
        ms.held = r.limits is not None and i in r.limits.mapped
        recorded = self.resumed.pop(i, None)
        with r.lock:
            self.of[i] = ms
        if (recorded or bad or hits) and not self._take_recorded(ms, recorded or {}, bad, hits):
            return
        with r.lock:
            self.running.append(ms)
        r.wake()

    def _keyed(self, ms: MapRun, key: "Any") -> "dict[int, BaseException]":
        """Read the keys of keyed map ``ms``, number its items and align the
        parameters bound to other keyed maps (``_keys``); the errors of the
        items that fail without running.

        Raises:
            ValueError: two items have one key, or a map to align with has no known keys.
        """
        r = self.r
        i = ms.i
        name = r.names[i]
        keys, bad = read_keys(name, key, ms.units)
        error = duplicate(name, key, keys)
        if error is not None:
            raise error
        ms.keys = self.keys_of[i] = keys
        got = self.numbered.pop(i, None)
        if got is not None:
            ms.numbers = numbers(keys, *got)
        argdeps = r.plan.argdeps[i]
        for p, d in enumerate(argdeps):
            other = r.plan.steps[d]
            if p == ms.pos or other.map is None or other.key is None:
                continue
            their = self.keys_of.get(d)
            if their is None:  # a map a resumed run finished before: its keys read again from its items
                their = self._keys_again(d)
            by_item, missing = aligned(name, ms.names[p], r.names[d], keys, their, local(ms.values[p]))
            ms.extra = (ms.extra or []) + [(p, by_item)]
            for j, exc in missing.items():
                bad.setdefault(j, exc)
        return bad

    def _keys_again(self, d: int) -> "list[Any] | None":
        """The keys of keyed map step ``d``, which did not start in this run (a
        resume: it finished before), from the value it maps over, if that is
        still at hand and every key reads."""
        r = self.r
        step = r.plan.steps[d]
        assert step.key is not None
        try:
            values = [r.value(x) for x in r.plan.argdeps[d]]
            values.extend(r.consts[d])
            _, pos = map_call(r.plan, d, r.kwnames[d], values)
            keys, bad = read_keys(r.names[d], step.key, units(r.names[d], str(step.map), local(values[pos]), None))
        except Exception:  # (not at hand: the caller says what cannot be aligned)
            return None
        return None if bad else keys

    def _cached_items(self, ms: MapRun, bad: "dict[int, BaseException]") -> "dict[int, Any]":
        """A cached keyed map caches each item: the results the cache holds for
        items of ``ms`` (by unit), and the keys the others' results go under
        (``ms.cache``), so that a list reordered, extended or shortened since
        runs only the items the cache has not seen."""
        from ._cache import cache_key  # (cached steps only)

        r = self.r
        step = r.plan.steps[ms.i]
        ms.cache = {}
        hits = {}
        for j in range(len(ms.units)):
            if j not in bad:
                key = cache_key(f"{step.name}\x00item", step.fn, ms.kwargs(j))
                hit, value = r.recorder.cache_get(key, step.cache_ttl)
                if hit:
                    hits[j] = value
                else:
                    ms.cache[j] = key
        return hits

    def _take_recorded(
        self, ms: MapRun, recorded: "dict[int, int]", bad: "dict[int, BaseException]", hits: "dict[int, Any]",
    ) -> bool:
        """Resume: fill in the units of ``ms`` its run records as succeeded (a
        unit is recorded under its first item's index, a keyed item under its
        number), and the results the cache had (``hits``, recorded now); fail
        the items in ``bad`` (a keyed map's, without running them); ``False``
        when that settled the whole map."""
        name = self.r.names[ms.i]
        output = self.r.recorder.output
        if ms.keys is None:
            done = kept(ms.units, ms.size, recorded, lambda item: output(name, item))
        else:
            done = {}
            for j in range(len(ms.units)):
                tries = None if j in bad else recorded.get(ms.item(j))
                if tries is not None:
                    try:
                        done[j] = (output(name, ms.item(j)), tries)
                    except KeyError:
                        continue
        for j, value in hits.items():
            if j not in done:
                att = self.r.caller.attempt(ms.i, 0, self.r.clock(), unit=j, item=ms.item(j), key=ms.key(j))
                att.finished = att.started
                self.r.recorder.unit_succeeded(att, value)
                done[j] = (value, 0)
        for j, (result, tries) in done.items():
            ms.results[j] = result
            ms.tries[j] = tries
        ms.todo = [j for j in range(len(ms.units)) if j not in done and j not in bad]
        ms.pending = len(ms.todo) + len(bad)
        if self.r.hooks:
            for j in done:
                ms.end_units(j, j + 1)
        for j, exc in bad.items():
            att = self.begin_unit(ms, j)
            att.finished = att.started
            self.r.failed(att, exc, retry=False)
            if ms.finished:
                return False
        if ms.todo:
            return True
        self.finish(ms)
        return False

    # -- claiming units ---------------------------------------------------------------

    def claimable(self) -> bool:
        """Whether some running map has units nobody claimed yet (and room in
        its pools and rates for one)."""
        return any(ms.unclaimed() and (not ms.held or self._fits(ms)) for ms in self.running)

    def _fits(self, ms: MapRun) -> bool:
        """Whether a unit of ``ms`` (which holds pools or rates) could be
        claimed now; if not, it waits from now (the caller holds the lock)."""
        if self.r.k.fits(ms.i):
            return True
        if ms.blocked is None:
            ms.blocked = self.r.clock()
        return False

    def held(self) -> bool:
        """Whether some running map's units hold pools or rates."""
        return any(ms.held for ms in self.running)

    def _claim_held(self, ms: MapRun) -> int:
        """Claim one unit of ``ms``, whose units hold pools or rates, if they
        have room (the caller holds the lock); its index, or -1."""
        if not ms.unclaimed():
            return -1
        if not self.r.k.acquire(ms.i):
            if ms.blocked is None:  # (a free worker asked for a unit: it waits from now)
                ms.blocked = self.r.clock()
            return -1
        j = ms.redo.pop(0) if ms.redo else ms.take()
        if ms.blocked is not None:
            ms.waits[j] = self.r.clock() - ms.blocked
            ms.blocked = None
        return j

    def unclaimed(self) -> "list[MapRun]":
        """The running maps with units nobody claimed yet."""
        return [ms for ms in self.running if ms.unclaimed()]

    def claim(self, ms: MapRun) -> "tuple[int, int]":
        """Claim the next units of ``ms`` for this thread *(locks)*: ``(start, stop)``.

        Chunks shrink as the map nears its end, so that threads finish
        together; with a cancel event, one unit at a time, so that a set event
        stops the map between two items.
        """
        r = self.r
        if r.cancel is not None and r.check_cancel():
            return 0, 0
        with r.lock:
            if ms.held:
                j = self._claim_held(ms)
                return (0, 0) if j < 0 else (j, j + 1)
            left = ms.count() - ms.next
            if ms.finished or left <= 0:
                return 0, 0
            if ms.todo is not None:
                j = ms.take()
                return j, j + 1
            chunk = 1 if r.cancel is not None else max(1, min(256, left // (4 * r.workers)))
            start = ms.next
            ms.next = start + chunk
            return start, start + chunk

    def next_unit(self) -> "Attempt | None":
        """Claim one unit of a running map, for a pool *(locks)*."""
        with self.r.lock:
            for ms in self.running:
                if ms.held:
                    j = self._claim_held(ms)
                    if j >= 0:
                        break
                elif ms.unclaimed():
                    j = ms.take()
                    break
            else:
                return None
        return self.begin_unit(ms, j)

    def begin_unit(self, ms: MapRun, j: int) -> Attempt:
        """The next attempt of unit ``j`` of ``ms``, which the caller claimed."""
        r = self.r
        number = ms.tries[j] = ms.tries.get(j, 0) + 1
        i = ms.i
        att = r.caller.attempt(i, number, r.clock(), unit=j, item=ms.item(j), key=ms.key(j))
        if ms.waits:
            att.waited = ms.waits.pop(j, 0.0)
        if r.tracers is not None:
            r.tracers.started(att)
        return att

    def hot_attempt(self, ms: MapRun, j: int) -> Attempt:
        """The attempt of unit ``j`` that the hot loop (``run_items``) just made."""
        att = self.begin_unit(ms, j)
        att.finished = att.started
        return att

    def again(self, att: Attempt) -> "Attempt | None":
        """The retry of unit attempt ``att``, or ``None`` if its map has ended."""
        ms = self.of.get(att.step)
        if ms is None or ms.finished:
            return None
        if att.waited:
            ms.spent[att.unit] = ms.spent.get(att.unit, 0.0) + att.waited
        if ms.held:  # claimed again when its pools and rates have room
            with self.r.lock:
                ms.redo.append(att.unit)
            self.r.wake()
            return None
        return self.begin_unit(ms, att.unit)

    # -- settling units ------------------------------------------------------------

    def over(self, att: Attempt) -> bool:
        """Whether the map of unit attempt ``att`` has ended (its outcome is moot)."""
        ms = self.of.get(att.step)
        return ms is None or ms.finished

    def settle(self, att: Attempt, ok: bool, value: "Any") -> None:
        """Unit attempt ``att`` ended (see ``Runner.settle``)."""
        ms = self.of.get(att.step)
        if ms is not None and ms.held:  # the units it held go back
            with self.r.lock:
                self.r.k.restore(att.step)
            self.r.wake()
        if ms is None or ms.finished:
            return
        if not ok:
            self.r.failed(att, value)
            return
        ms.results[att.unit] = value
        self.units_done(ms, att.unit, att.unit + 1, att)

    def units_done(self, ms: MapRun, start: int, stop: int, att: "Attempt | None" = None) -> None:
        """Units ``start .. stop-1`` of ``ms`` returned; their results are in
        ``ms.results`` (``att``: the attempt, when there is one unit) *(locks)*."""
        if stop <= start or ms.finished:
            return
        r = self.r
        bad = []
        if ms.size is not None:  # a batch must return one result per item
            name = r.names[ms.i]
            for j in range(start, stop):
                error = batch_error(name, ms.item(j), len(ms.units[j]), ms.results[j])
                if error is not None:
                    bad.append((j, error))
        if att is not None and not bad:
            r.recorder.unit_succeeded(att, ms.results[att.unit], ms.spent.get(att.unit, 0.0))
            if ms.cache is not None and att.unit in ms.cache:
                r.recorder.cache_put(ms.cache.pop(att.unit), ms.results[att.unit])
        with r.lock:
            ms.pending -= stop - start - len(bad)
            last = ms.pending == 0
            progress = ms.end_units(start, stop) if r.hooks else None  # (counted for the hooks alone)
        if progress is not None:
            one = att if att is not None and stop - start == 1 else None  # (one item: named)
            r.emit("step_progress", ms.i, items=progress, item=None if one is None else one.item,
                   key=None if one is None else one.key)
        for j, error in bad:
            r.failed(att if att is not None else self.hot_attempt(ms, j), error, retry=False)
        if last:
            self.finish(ms)

    def unit_failed(self, att: Attempt, exc: BaseException) -> None:
        """Unit attempt ``att`` raised ``exc`` and is not retried: its item fails
        *(locks)*; the map ends when it was the last unit, or under ``fail_fast``."""
        r = self.r
        ms = self.of[att.step]
        if ms.finished:
            return
        item_failed(exc, att)
        r.recorder.unit_failed(att, exc, ms.spent.get(att.unit, 0.0))
        with r.lock:
            ms.errors[att.unit] = exc
            ms.pending -= 1
            last = ms.pending == 0
            progress = ms.end_units(att.unit, att.unit + 1) if r.hooks else None
        if progress is not None:
            r.emit("step_progress", ms.i, items=progress, item=att.item, key=att.key)
        if r.fail_fast or last:
            self.finish(ms)

    def end(self, att: Attempt) -> bool:
        """End the map of unit attempt ``att`` early (a unit skipped or was
        interrupted) *(locks)*; ``False`` if ``att`` is a step's."""
        if att.unit < 0:
            return False
        ms = self.of[att.step]
        with self.r.lock:
            ms.finished = True
            if ms in self.running:
                self.running.remove(ms)
        return True

    def finish(self, ms: MapRun) -> None:
        """Settle map step ``ms.i`` from its units *(locks)*: fail it with the
        first failed item's error, else succeed with the results in order."""
        r = self.r
        with r.lock:
            if ms.finished:
                return
            ms.finished = True
            if ms in self.running:
                self.running.remove(ms)
        i = ms.i
        r.finished[i] = r.clock()
        if ms.tries:
            r.attempts[i] = max(r.attempts[i], max(ms.tries.values()))
        if ms.errors:
            r.fail(i, ms.errors[min(ms.errors)])
            return
        r.succeed(i, gather(ms.results, ms.size is not None))

    def stop(self) -> "list[int]":
        """The run stops (the caller holds the lock): unfinished maps end
        cancelled; return their steps."""
        r = self.r
        cancelled = []
        for ms in self.running:
            if not ms.finished:
                ms.finished = True
                if r.k.state(ms.i) == sched.RUNNING:
                    r.cancelled.add(ms.i)
                    r.k.fail(ms.i)
                    cancelled.append(ms.i)
        self.running = []
        return cancelled
