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
  its gathering hold nothing, as in a run in one process).

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
  (:meth:`Limits.next_token`).

What a transaction gives back is summed and written at its end, in one
order (run, name), after everything else it locks: two transactions never
wait for each other's pool rows in opposite orders.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = ["TABLES", "Limits", "fits"]

TABLES = """
CREATE TABLE IF NOT EXISTS queue_pools (
    run_id TEXT NOT NULL, name TEXT NOT NULL, size {real} NOT NULL, rate {real} NOT NULL, room {real} NOT NULL,
    at {real} NOT NULL, PRIMARY KEY (run_id, name)
){keyed};
CREATE TABLE IF NOT EXISTS queue_uses (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, unit INTEGER NOT NULL, name TEXT NOT NULL, units INTEGER NOT NULL,
    PRIMARY KEY (run_id, step, name)
){keyed};
"""

#: Which claims of a ``queue`` row hold its step's units (``queue_uses.unit``; ``-1``: none, a gathering).
_UNIT = "CASE WHEN queue.item >= 0 THEN 1 WHEN queue.item = -1 THEN 0 ELSE -1 END"


def fits(now: str, least: str) -> str:
    """The condition (``" AND ..."``) on a ``queue`` row that its run's pools
    and rates have room for it at time ``now`` (an SQL expression; ``least``:
    the dialect's two-argument minimum); a claimed row (a lease run out)
    passes: its units come back before it is claimed again."""
    return (" AND (state = 1 OR NOT EXISTS (SELECT 1 FROM queue_uses u JOIN queue_pools p"
            " ON p.run_id = u.run_id AND p.name = u.name WHERE u.run_id = queue.run_id AND u.step = queue.step"
            f" AND u.unit = {_UNIT} AND {least}(p.size, p.room + ({now} - p.at) * p.rate) < u.units))")


def unit_of(item: int) -> int:
    """Which claims hold units (``queue_uses.unit``) of a row of ``item``."""
    return 1 if item >= 0 else 0 if item == -1 else -1


class Limits:
    """What one queue (one connection) knows of the pools of the runs it
    meets, and what its current transaction takes and gives back.

    Args:
        lock: what locks the pool rows a claim reads (PostgreSQL: ``FOR UPDATE``).
    """

    __slots__ = ("lock", "uses", "rooms", "changed", "back", "token")

    def __init__(self, lock: str = "") -> None:
        self.lock = lock
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
