"""Pools and rates of runs shared with workers: their bound held by the store, not per worker.

A run's pools and rates (``Flow.run(pools=, rates=)``) bound its steps on
every worker at once, so their state lives beside the queue's rows, in two
tables (made with the queue's, in ``_sql_queue``):

- ``queue_pools``: per run and name, a pool or a token bucket: ``size`` (a
  pool's units, a rate's burst), ``rate`` (tokens a second; ``0`` for a
  pool), ``room`` (units free at time ``at``);
- ``queue_uses``: per run and step, the units of each pool or rate it holds
  while one of its claims runs; ``unit`` says which claims hold them: ``0``
  a step's own claim, ``1`` a map step's units (the map step's own claim and
  its gathering hold nothing, as in a run in one process);
- ``queue_waits``: per run, step and ``item`` (as the ``queue`` row's), a
  task that waited for room: ``since`` (when it began waiting; ``NULL``: it
  does not wait now) and ``waited`` (seconds its claims so far waited).

One formula for both: the room at time ``now`` is ``min(size, room + (now -
at) * rate)``: a pool's room moves only when units are taken and given
back, a bucket refills continuously, ``rate`` tokens a second up to its
burst (it starts full).  Consecutive tokens of a bucket of burst 1 are at
least ``1/rate`` seconds apart, on the database's clock (the one the leases
use): no window of ``1/rate`` seconds sees more than ``burst`` tokens taken.

The rules, and where they are kept:

- a claim takes a ready row only when its run's pools and rates have room
  for what it holds (:func:`fits`, a condition on the rows the claim reads,
  so that a row that does not fit never hides one that does), and takes the
  units in the claim's own transaction (:meth:`Limits.take`, over the pool
  rows read and, on PostgreSQL, locked ``FOR UPDATE`` in one sorted read);
- units come back (:meth:`Limits.give`) in the transaction that ends what
  held them: a finish (whatever its outcome; a retry takes them again when
  due), a lease run out (before the row is claimed again), a release, a
  cancel or a stopped run deleting claimed units; a bucket's tokens are
  spent, never given back;
- a worker that finds nothing to claim sleeps until the next token at most
  (:meth:`Limits.next_token`);
- what waiting cost: a ready row that a claim (a worker with room to run
  it) found without room in its pools or rates is marked with the time
  (``queue_waits.since``, on the database's clock): all such rows when a
  worker found nothing it could claim (:meth:`Limits.stamp`, one statement
  after the look that found nothing, which read those rows already), and
  a row whose units a claim could not take (:meth:`Limits.refused`), so
  that a claim that finds work pays nothing more.  The claim that takes
  the row adds the time since to the seconds its task waited, in all, over
  its attempts (``waited``: :meth:`Limits.waited`), which its record keeps
  (``TaskRecord.waited``), as a run in one process keeps the kernel's
  measure.  A row that waited only for a free worker is not marked, as the
  kernel does not set aside a step that no worker took.

What a transaction gives back is summed and written at its end, in one
order (run, name), after everything else it locks: two transactions never
wait for each other's pool rows in opposite orders.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = ["NAMES", "TABLES", "Limits", "fits"]

TABLES = """
CREATE TABLE IF NOT EXISTS queue_pools (
    run_id TEXT NOT NULL, name TEXT NOT NULL, size {real} NOT NULL, rate {real} NOT NULL, room {real} NOT NULL,
    at {real} NOT NULL, PRIMARY KEY (run_id, name)
){keyed};
CREATE TABLE IF NOT EXISTS queue_uses (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, unit INTEGER NOT NULL, name TEXT NOT NULL, units INTEGER NOT NULL,
    PRIMARY KEY (run_id, step, name)
){keyed};
CREATE TABLE IF NOT EXISTS queue_waits (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, item INTEGER NOT NULL, since {real}, waited {real} NOT NULL,
    PRIMARY KEY (run_id, step, item)
){keyed};
"""

#: The tables of a run's pools, rates and waits (deleted with the run).
NAMES = ("queue_pools", "queue_uses", "queue_waits")

#: Which claims of a ``queue`` row hold its step's units (``queue_uses.unit``; ``-1``: none, a gathering).
_UNIT = "CASE WHEN queue.item >= 0 THEN 1 WHEN queue.item = -1 THEN 0 ELSE -1 END"


def _short(now: str, least: str) -> str:
    """The condition that some pool or rate of a ``queue`` row's run lacks
    room for it at time ``now`` (an SQL expression; ``least``: the dialect's
    two-argument minimum)."""
    return ("EXISTS (SELECT 1 FROM queue_uses u JOIN queue_pools p"
            " ON p.run_id = u.run_id AND p.name = u.name WHERE u.run_id = queue.run_id AND u.step = queue.step"
            f" AND u.unit = {_UNIT} AND {least}(p.size, p.room + ({now} - p.at) * p.rate) < u.units)")


def fits(now: str, least: str) -> str:
    """The condition (``" AND ..."``) on a ``queue`` row that its run's pools
    and rates have room for it at time ``now`` (see :func:`_short`); a claimed
    row (a lease run out) passes: its units come back before it is claimed again."""
    return f" AND (state = 1 OR NOT {_short(now, least)})"


#: What makes a task waiting from now, unless it waits already (after the rows inserted into ``queue_waits``).
_FROM_NOW = " ON CONFLICT (run_id, step, item) DO UPDATE SET since = excluded.since WHERE queue_waits.since IS NULL"


def unit_of(item: int) -> int:
    """Which claims hold units (``queue_uses.unit``) of a row of ``item``."""
    return 1 if item >= 0 else 0 if item == -1 else -1


class Limits:
    """What one queue (one connection) knows of the pools of the runs it
    meets, and what its current transaction takes and gives back.

    Args:
        lock: what locks the pool rows a claim reads (PostgreSQL: ``FOR UPDATE``).
        least: the dialect's two-argument minimum.
        skip: what locks the ``queue`` rows a claim marks as waiting, passing
            those locked (PostgreSQL: ``FOR UPDATE SKIP LOCKED``): a mark never
            waits, and whoever else writes a row's wait holds the row.
    """

    __slots__ = ("lock", "least", "skip", "uses", "rooms", "changed", "back", "token")

    def __init__(self, lock: str = "", least: str = "min", skip: str = "") -> None:
        self.lock = lock
        self.least = least
        self.skip = skip
        #: Run -> (step, unit) -> the units it holds ((name, units) pairs); ``{}``: none.
        self.uses: dict[str, dict[tuple[int, int], list[tuple[str, int]]]] = {}
        #: (run, name) -> [size, rate, room, at], read (and locked) by this transaction's claim.
        self.rooms: dict[tuple[str, str], list[float]] = {}
        self.changed: set[tuple[str, str]] = set()  # (those of ``rooms`` taken from or given back to)
        #: (run, name) -> units this transaction gives back to a pool it did not read.
        self.back: dict[tuple[str, str], int] = {}
        #: When the next token comes, on this process's monotonic clock (``None``: no bucket waits).
        self.token: float | None = None

    @staticmethod
    def submit(db: "Any", run_id: str, plan: "dict[str, Any]", now: float) -> None:
        """Keep the pools, rates and uses of a run's ``plan`` (``pools``: name ->
        size; ``rates``: name -> [tokens a second, burst]; ``uses``: per step
        its (name, units) pairs or ``None``; ``mapped``: its map steps)."""
        pools = plan.get("pools") or {}
        rates = plan.get("rates") or {}
        if not (pools or rates):
            return
        db.executemany("INSERT INTO queue_pools VALUES (?, ?, ?, ?, ?, ?)",
                       [(run_id, name, size, 0.0, size, now) for name, size in pools.items()]
                       + [(run_id, name, burst, rate, burst, now) for name, (rate, burst) in rates.items()])
        mapped = set(plan.get("mapped") or ())
        db.executemany("INSERT INTO queue_uses VALUES (?, ?, ?, ?, ?)",
                       [(run_id, i, int(i in mapped), name, units)
                        for i, held in enumerate(plan.get("uses") or ()) if held for name, units in held])

    def held(self, db: "Any", run_id: str, step: int, item: int) -> "list[tuple[str, int]]":
        """The units a claim of ``step`` (its row of ``item``) holds."""
        uses = self.uses.get(run_id)
        if uses is None:
            uses = self.uses[run_id] = {}
            for i, unit, name, units in db.execute(
                    "SELECT step, unit, name, units FROM queue_uses WHERE run_id = ?", (run_id,)).fetchall():
                uses.setdefault((i, unit), []).append((name, units))
        return uses.get((step, unit_of(item)), []) if uses else []

    def read(self, db: "Any", run_ids: "Iterable[str]") -> None:
        """Read (and lock) the pools of ``run_ids`` for a claim, in one sorted read."""
        wanted = sorted(set(run_ids).difference(key[0] for key in self.rooms))
        if not wanted:
            return
        marks = ", ".join("?" * len(wanted))
        for run_id, name, size, rate, room, at in db.execute(
                f"SELECT run_id, name, size, rate, room, at FROM queue_pools WHERE run_id IN ({marks})"
                f" ORDER BY run_id, name{self.lock}", tuple(wanted)).fetchall():
            self.rooms[run_id, name] = [float(size), float(rate), float(room), float(at)]

    def take(self, db: "Any", run_id: str, step: int, item: int, now: float) -> bool:
        """Take the units a claim of ``step`` (row ``item``) holds, if every
        pool and rate has room now (read first, :meth:`read`); whether it did."""
        held = self.held(db, run_id, step, item)
        if not held:
            return True
        rooms = self.rooms
        for name, units in held:
            size, rate, room, at = rooms[run_id, name]
            if min(size, room + (now - at) * rate) < units:
                return False
        for name, units in held:
            pool = rooms[run_id, name]
            size, rate, room, at = pool
            pool[2], pool[3] = min(size, room + (now - at) * rate) - units, now
            self.changed.add((run_id, name))
        return True

    def give(self, db: "Any", run_id: str, step: int, item: int, count: int = 1) -> None:
        """Give back the pool units ``count`` claims of ``step`` (row ``item``)
        held (a rate's tokens are spent)."""
        for name, units in self.held(db, run_id, step, item):
            pool = self.rooms.get((run_id, name))
            if pool is None:
                self.back[run_id, name] = self.back.get((run_id, name), 0) + units * count
            elif pool[1] == 0:
                pool[2] += units * count
                self.changed.add((run_id, name))

    def write(self, db: "Any") -> None:
        """At the end of a transaction: write what it took and gave back, in one order."""
        rooms, back = self.rooms, self.back
        if self.changed:
            db.executemany("UPDATE queue_pools SET room = ?, at = ? WHERE run_id = ? AND name = ?",
                           [(*rooms[key][2:], *key) for key in sorted(self.changed)])
        if back:
            db.executemany("UPDATE queue_pools SET room = room + ? WHERE run_id = ? AND name = ? AND rate = 0",
                           [(units, *key) for key, units in sorted(back.items())])
        self.clear()

    def clear(self) -> None:
        """Forget what the transaction took and gave back (written, or rolled back)."""
        self.rooms.clear()
        self.changed.clear()
        self.back.clear()

    def stamp(self, db: "Any", now: float, where: str = "", params: "tuple[Any, ...]" = ()) -> None:
        """A worker found nothing it could claim at ``now``: the ready rows (of
        the runs ``where``, with ``params``, says) whose pools or rates lack
        room begin waiting, unless they wait already."""
        db.execute("INSERT INTO queue_waits SELECT run_id, step, item, ?, 0 FROM queue WHERE state = 0"
                   f" AND due <= ?{where} AND {_short('?', self.least)}{self.skip}{_FROM_NOW}",
                   (now, now, *params, now))

    def unmarked(self, clock: str, where: str) -> str:
        """A query (parameters: those of ``where``) that finds a ready row at
        ``clock`` (an SQL expression) whose pools or rates lack room and that
        does not wait yet: :meth:`stamp` has work."""
        return (f"SELECT 1 FROM queue WHERE state = 0 AND due <= {clock}{where} AND {_short(clock, self.least)}"
                " AND NOT EXISTS (SELECT 1 FROM queue_waits w WHERE w.run_id = queue.run_id AND w.step ="
                " queue.step AND w.item = queue.item AND w.since IS NOT NULL) LIMIT 1")

    @staticmethod
    def refused(db: "Any", run_id: str, step: int, item: int, now: float) -> None:
        """A claim at ``now`` found no room for ready row ``step`` (``item``): it waits from now."""
        db.execute(f"INSERT INTO queue_waits VALUES (?, ?, ?, ?, 0){_FROM_NOW}", (run_id, step, item, now))

    def waited(self, db: "Any", run_id: str, step: int, item: int, now: float) -> "float | None":
        """A claim at ``now`` takes row ``step`` (``item``), which holds units:
        the seconds its task waited, in all, up to now (``None``: never)."""
        if not self.held(db, run_id, step, item):
            return None
        key = (run_id, step, item)
        row = db.execute("SELECT since, waited FROM queue_waits WHERE run_id = ? AND step = ? AND item = ?",
                         key).fetchone()
        if row is None:
            return None
        since, total = row
        if since is None:
            return float(total)
        total = float(total) + max(0.0, now - float(since))
        db.execute("UPDATE queue_waits SET since = NULL, waited = ? WHERE run_id = ? AND step = ? AND item = ?",
                   (total, *key))
        return total

    def forget(self, run_id: str) -> None:
        """Run ``run_id`` ended."""
        self.uses.pop(run_id, None)

    def next_token(self, rows: "list[tuple[Any, ...]]", now: float) -> "float | None":
        """Seconds until the next whole token of a bucket that is not full, over
        its ``rows`` (size, rate, room, at) read at ``now``; ``None``: all full."""
        soonest = None
        for size, rate, room, at in rows:
            level = min(size, room + (now - at) * rate)
            if level < size:
                wait = (int(level) + 1 - level) / rate
                soonest = wait if soonest is None else min(soonest, wait)
        return soonest
