"""The work queue in SQL tables: the protocol of ``_queue`` over the SQL stores' databases.

:class:`SQLQueue` is the queue's SQL, one text for SQLite and PostgreSQL
(``?`` marks parameters, as in ``_sql``); a subclass gives the dialect: its
connection, how a transaction begins and reads the database's clock, how a
run is locked while its mirror is replayed, how claimed rows are locked, its
tables' types, where big outputs go, and how a waiting worker learns of new
work (``_sqlite_queue``, ``_postgres_queue``); its base, ``_sql_queue_read``,
holds the connection and the reads made outside transactions.  Tables,
beside the store's (made on first use):

- ``queue_runs``: a run on the queue: its plan document, the position of its
  log, its state (0 running, 1 stopping after a failure under ``fail_fast``,
  2 cancelled) and whether a step failed;
- ``queue``: its steps that are ready or claimed, one row each: ``state``
  (0 ready, 1 claimed), ``attempt`` (attempts made; a claim makes the next
  and that is its fencing token), ``due`` (ready: when it may be claimed, a
  retry's time; claimed: when its lease runs out), ``worker``, ``claimed``
  (when), ``item`` (``-1``: the step; a map step's units are rows of their
  own under their first item's index, and its gathering one more,
  ``GATHER``).  A finished step's row is gone; its record is in ``tasks``;
- ``queue_log``: the run's outcomes in order, which each worker's
  :class:`~microdag.stores._queue.Mirror` replays;
- ``queue_pools`` and ``queue_uses``: a run's pools and rates and what its
  steps hold (``_queue_pools``: a claim takes only rows whose pools have
  room, and takes their units with them; whatever ends a claim gives them back).

Every change is one transaction.  A claim reads claimable rows and takes
them before anyone else can (SQLite: ``BEGIN IMMEDIATE``, the file's one
writer; PostgreSQL: ``FOR UPDATE SKIP LOCKED``); a finish deletes the
claimed row *where its attempt is the claim's* (the fence), writes the
record and what the mirror says follows, and commits once; what replays a
run's mirror holds the run's lock (SQLite: the file's; PostgreSQL: an
advisory lock per run), taken before any queue row, and a claim never waits
for one (it leaves a row whose run is busy for the next look): no deadlock.
Times are read from the database (``_NOW``).

A map step: its own claim plans it (``"planned"``: a row per unit, which
any worker claims); a unit's finish records its item (or its retry); when
the last unit row is gone, a ``GATHER`` row makes the step's result from
the item records (``items``).  A unit that fails for good under
``fail_fast``, or skips, ends the step at once (its other units' rows are
deleted, so their finishes record nothing); a stopped run deletes the
rows of its maps' units and ends those steps cancelled.
"""

import json
import threading
import time

from .._errors import StoreError
from .._records import run_status
from ._files import BLOB_SIZE
from ._queue import CANCELLED, FAILED, GATHER, SKIPPED, STOP, SUCCEEDED, Claim, Mirror, plan_text
from ._queue_grow import grown as _grown
from ._queue_pools import NAMES as POOL_NAMES
from ._queue_pools import TABLES as POOL_TABLES
from ._queue_pools import Limits, fits
from ._sql import ATTEMPTS, LOGS
from ._sql_queue_read import QueueReader

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any

    from ._queue import Outcome
    from ._sql import SQLStore

__all__ = ["FORGET_EVERY", "TABLES", "SQLQueue", "runs_where"]

#: The queue's tables, in a dialect's types (``real``, ``big``), ``keyed`` (SQLite: ``WITHOUT ROWID``)
#: and ``lease`` (PostgreSQL: a run's lease as a column of its own, read by its one-statement claims).
TABLES = """
CREATE TABLE IF NOT EXISTS queue_runs (
    run_id TEXT PRIMARY KEY, plan TEXT NOT NULL, seq {big} NOT NULL, state INTEGER NOT NULL,
    failed INTEGER NOT NULL{lease}
);
CREATE TABLE IF NOT EXISTS queue (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, state INTEGER NOT NULL, attempt INTEGER NOT NULL,
    due {real} NOT NULL, worker TEXT, claimed {real}, item INTEGER NOT NULL, PRIMARY KEY (run_id, step, item)
){keyed};
CREATE INDEX IF NOT EXISTS queue_by_due ON queue (state, due);
CREATE TABLE IF NOT EXISTS queue_log (
    run_id TEXT NOT NULL, seq {big} NOT NULL, step INTEGER NOT NULL, outcome INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
){keyed};
""" + POOL_TABLES

#: How often (seconds, at most) a queue looks for the runs it kept something of that ended elsewhere.
FORGET_EVERY = 1.0

_STATUS = {"succeeded": SUCCEEDED, "failed": FAILED, "skipped": SKIPPED, "cancelled": CANCELLED}
_RUNNING, _STOPPING, _CANCELLED = 0, 1, 2


def runs_where(skip_runs: "Iterable[str]", only: "str | None") -> "tuple[str, tuple[str, ...]]":
    """The condition on ``run_id`` (``" AND ..."``, or nothing) that leaves
    out ``skip_runs`` and, with ``only``, every other run; its parameters."""
    skip = tuple(skip_runs)
    where = f" AND run_id NOT IN ({', '.join('?' * len(skip))})" if skip else ""
    if only is None:
        return where, skip
    return where + " AND run_id = ?", (*skip, only)


class _Run:
    """A run on the queue during one transaction: its mirror, caught up with
    the log, and what the transaction adds to it."""

    __slots__ = ("run_id", "mirror", "names", "state", "failed", "log")

    def __init__(self, run_id: str, mirror: Mirror, names: "list[str]", state: int, failed: int) -> None:
        self.run_id = run_id
        self.mirror = mirror
        self.names = names
        self.state = state
        self.failed = failed
        self.log: list[tuple[str, int, int, int]] = []

    def apply(self, step: int, outcome: int) -> "tuple[list[int], list[int]]":
        """Apply an outcome to the mirror and add it to the log."""
        m = self.mirror
        m.seq += 1
        self.log.append((self.run_id, m.seq, step, outcome))
        return m.apply(step, outcome)


class SQLQueue(QueueReader):
    """The work queue in a SQL store's database (see the module docs); a
    subclass gives the dialect.

    Args:
        store: the store; the queue keeps a connection of its own (``_db``,
            made by the subclass before this runs).
    """

    #: How a transaction begins; one whose commit need not reach the disk.
    _BEGIN = "BEGIN"
    _BEGIN_FAST = "BEGIN"
    #: The database's clock, in seconds since the epoch (an SQL expression).
    _CLOCK = ""
    #: What locks the rows a claim selects (PostgreSQL: ``FOR UPDATE SKIP LOCKED``).
    _TAKE = ""
    #: The dialect's minimum of two numbers; what locks the pool rows a claim reads.
    _LEAST = "min"
    _LOCK_POOLS = ""

    def __init__(self, store: "SQLStore") -> None:
        super().__init__(store)
        self._mirrors: dict[str, tuple[Mirror, list[str]]] = {}
        self._seq = 0
        self._rows: list[tuple[Any, ...]] = []  # task records of the transaction
        self._changed = threading.Event()  # this process changed the queue
        self._limits = Limits(self._LOCK_POOLS, self._LEAST, self._TAKE)
        self._pruned = time.monotonic()  # (when :meth:`_prune` last looked)

    # -- the dialect ------------------------------------------------------------------

    def _lock_run(self, db: "Any", run_id: str, wait: bool) -> bool:
        """Hold run ``run_id`` for the rest of the transaction (to replay and
        extend its log); without ``wait``, only if it is free now."""
        return True

    def _blob(self, db: "Any", data: bytes) -> str:
        """Keep an encoded output of ``BLOB_SIZE`` or more (with the transaction); its reference."""
        raise NotImplementedError

    def _notify(self, db: "Any") -> None:
        """In a transaction that made work: wake the workers waiting (when it commits)."""

    def _begin(self, db: "Any", durable: bool) -> float:
        """Begin a transaction (:meth:`_transaction`); the database's clock."""
        db.execute(self._BEGIN if durable else self._BEGIN_FAST)
        return float(db.execute(f"SELECT {self._CLOCK}").fetchone()[0])

    # -- transactions ------------------------------------------------------------------

    def _transaction(self, body: "Callable[[Any, float], Any]", durable: bool = True) -> "Any":
        """``body(db, now)`` in one transaction; a mirror it touched is dropped
        if it fails (the next one replays the log again).  Unless ``durable``,
        its commit need not reach the disk: a claim or a lease renewed that a
        power cut loses is taken again (its worker is gone too)."""
        def once() -> "Any":
            db = self._db
            try:
                result = body(db, self._begin(db, durable))
                self._limits.write(db)
                if self._rows:
                    self.store._upsert_tasks(db, self._rows)
            except BaseException:
                self._rows.clear()
                self._limits.clear()
                self._mirrors.clear()
                try:
                    db.execute("ROLLBACK")
                except Exception:
                    pass  # (a dropped connection rolled it back)
                raise
            self._rows.clear()
            db.execute("COMMIT")
            return result

        try:
            return self._retrying(once)
        except self._error as exc:
            raise StoreError(f"cannot write to store {self.path!r}: {exc}") from None

    def _run(self, db: "Any", run_id: str, wait: bool = True) -> "_Run | None":
        """Run ``run_id``, held, with its mirror caught up with the log; ``None``
        once it ended (or, without ``wait``, while another transaction holds it)."""
        if not self._lock_run(db, run_id, wait):
            return None
        row = db.execute("SELECT seq, state, failed FROM queue_runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            self._mirrors.pop(run_id, None)
            return None
        seq, state, failed = row
        known = self._mirrors.get(run_id)
        if known is None:
            (text,) = db.execute("SELECT plan FROM queue_runs WHERE run_id = ?", (run_id,)).fetchone()
            plan = json.loads(text)
            mirror = Mirror(plan)
            known = self._mirrors[run_id] = (mirror, mirror.names)
        mirror = known[0]
        if mirror.seq < seq:
            mirror.catch_up(db.execute(
                "SELECT seq, step, outcome FROM queue_log WHERE run_id = ? AND seq > ? ORDER BY seq",
                (run_id, mirror.seq)).fetchall(), lambda: json.loads(db.execute(
                "SELECT plan FROM queue_runs WHERE run_id = ?", (run_id,)).fetchone()[0]))
            mirror.seq = seq
        return _Run(run_id, mirror, known[1], state, failed)

    def _record(
        self, db: "Any", run: _Run, step: int, status: str, attempts: int, started: "float | None" = None,
        finished: "float | None" = None, out: "Outcome | None" = None, item: int = -1, waited: "float | None" = None,
    ) -> None:
        """Keep the task record of ``step`` (or of its map item ``item``; with
        the transaction); ``waited``: seconds its claims waited for pools and rates."""
        output = ref = etype = emsg = tb = None
        if out is not None:
            output, etype, emsg, tb = out.output, out.error_type, out.error_message, out.traceback
            if output is not None and len(output) >= BLOB_SIZE:
                ref, output = self._blob(db, output), None
        self._seq = max(self._seq + 1, time.time_ns())
        t = self._t
        self._rows.append((t(run.run_id), t(run.names[step]), item, self._seq, status, attempts, started, finished,
                           t(etype), t(emsg), t(tb), output, ref, None,  # (no key)
                           (waited or 0.0) if attempts and run.mirror.timed else None))

    def _settle(
        self, db: "Any", run: _Run, step: int, status: str, attempts: int, now: float,
        started: "float | None" = None, finished: "float | None" = None, out: "Outcome | None" = None,
        waited: "float | None" = None,
    ) -> None:
        """Step ``step`` (handed out: its row is gone) ended ``status``: its
        record, and what the kernel says follows from it."""
        self._record(db, run, step, status, attempts, started, finished, out, waited=waited)
        self._follow(db, run, step, _STATUS[status], now)
        if status == "failed":
            run.failed = 1
            if run.mirror.fail_fast and run.state == _RUNNING:
                self._stop(db, run, _STOPPING, now)

    def _follow(self, db: "Any", run: _Run, step: int, outcome: int, now: float) -> None:
        """Log ``outcome`` of ``step`` (``GROW``: added) and write what follows: rows ready, records skipped."""
        ready, skipped = run.apply(step, outcome)
        if ready:
            db.executemany("INSERT INTO queue VALUES (?, ?, 0, 0, ?, NULL, NULL, -1)",
                           [(run.run_id, i, now) for i in ready])
            self._notify(db)
        for i in skipped:
            self._record(db, run, i, "skipped", 0)

    def _stop(self, db: "Any", run: _Run, state: int, now: float) -> None:
        """Start nothing more of ``run`` (``state``: stopping or cancelled):
        its pending steps and its ready ones end cancelled."""
        run.state = max(run.state, state)
        for i in run.apply(-1, STOP)[1]:
            self._record(db, run, i, "cancelled", 0)
        rows = db.execute("DELETE FROM queue WHERE run_id = ? AND (state = 0 OR item <> -1)"
                          " RETURNING step, item, attempt, state", (run.run_id,)).fetchall()
        maps: dict[int, int] = {}  # a map step whose units or gathering were left: its most attempts
        for step, item, attempt, state in sorted(rows):
            if state == 1:  # (a unit claimed: its units come back)
                self._limits.give(db, run.run_id, step, item)
            if item == -1:
                self._settle(db, run, step, "cancelled", attempt, now)
            else:
                maps[step] = max(maps.get(step, 1), attempt)
        for step, attempt in maps.items():
            self._settle(db, run, step, "cancelled", attempt, now)

    def _close(self, db: "Any", runs: "Iterable[_Run]", now: float) -> None:
        """Write what the transaction did to each run; a run with nothing left ends."""
        for run in runs:
            if run.log:
                db.executemany("INSERT INTO queue_log VALUES (?, ?, ?, ?)", run.log)
                run.log = []
            if run.mirror.remaining:
                db.execute("UPDATE queue_runs SET seq = ?, state = ?, failed = ? WHERE run_id = ?",
                           (run.mirror.seq, run.state, run.failed, run.run_id))
                continue
            status = run_status(run.state == _CANCELLED, bool(run.failed))
            key = run.run_id
            db.execute("UPDATE runs SET status = ?, finished = ? WHERE id = ?", (status, now, self._t(key)))
            db.execute("DELETE FROM owners WHERE run_id = ?", (self._t(key),))
            for table in ("queue", "queue_log", "queue_runs", *POOL_NAMES):
                db.execute(f"DELETE FROM {table} WHERE run_id = ?", (key,))
            self._forget(key)
        self._changed.set()

    def _forget(self, run_id: str) -> None:
        """Run ``run_id`` is no longer on the queue: drop what this queue kept of it (under the lock)."""
        self._mirrors.pop(run_id, None)
        self._limits.forget(run_id)

    def _known(self) -> "set[str]":
        """The runs this queue keeps something of."""
        return set(self._mirrors).union(self._limits.uses)

    def _prune(self) -> None:
        """At most every :data:`FORGET_EVERY` seconds: forget the runs this
        queue kept something of that are no longer on the queue (ended by
        any worker's transaction), so that a long-lived worker keeps only
        live runs."""
        now = time.monotonic()
        if now < self._pruned + FORGET_EVERY:
            return
        self._pruned = now
        known = self._known()
        if not known:
            return
        marks = ", ".join("?" * len(known))
        live = {row[0] for row in self._query(f"SELECT run_id FROM queue_runs WHERE run_id IN ({marks})",
                                              tuple(known))}
        with self._lock:
            for run_id in known - live:
                self._forget(run_id)

    # -- the protocol ------------------------------------------------------------------------

    def submit(self, run_id: str, plan: "dict[str, Any]") -> None:
        mirror = Mirror(plan)

        def body(db: "Any", now: float) -> None:
            db.execute("INSERT INTO queue_runs VALUES (?, ?, 0, 0, 0)", (run_id, plan_text(plan)))
            Limits.submit(db, run_id, plan, now)
            db.executemany("INSERT INTO queue VALUES (?, ?, 0, 0, ?, NULL, NULL, -1)",
                           [(run_id, i, now) for i in mirror.first])
            self._notify(db)
            self._mirrors[run_id] = (mirror, plan["names"])
            self._close(db, [_Run(run_id, mirror, plan["names"], _RUNNING, 0)], now)

        self._transaction(body)

    def claim(
        self, worker: str, lease: float, limit: int = 1, refuse: "Callable[[str, int], bool] | None" = None,
        skip_runs: "Iterable[str]" = (), meet: "Callable[[list[str]], object] | None" = None,
        leases: "Mapping[str, float] | None" = None, only: "str | None" = None,
    ) -> "list[Claim]":
        self._prune()
        where, skip = runs_where(skip_runs, only)
        # Rows that do not fit their pools are left out (when some run has pools: else a probe a row for nothing);
        # the claim's own check of the units it takes is the rule, this one keeps them from hiding others.
        limited = bool(self._query("SELECT 1 FROM queue_pools LIMIT 1"))
        seen = self._query(  # a look first, outside a transaction: most find nothing
            f"SELECT DISTINCT run_id, state FROM queue WHERE state IN (0, 1) AND due <= {self._CLOCK}{where}"
            f"{fits(self._CLOCK, self._LEAST) if limited else ''} LIMIT 16", skip)
        self._limits.token = None
        if not seen:
            if limited:
                self._wait_token(where, skip)
                # (a worker with nothing to run: ready rows without room begin waiting; looked at only
                # here, where the look above read them all already, so that a claim pays nothing for it)
                if self._query(self._limits.unmarked(self._CLOCK, where), skip):
                    self._transaction(lambda db, now: self._limits.stamp(db, now, where, skip), durable=False)
            return []
        found = list(dict.fromkeys(row[0] for row in seen))
        if meet is not None:
            meet(found)
        lost = len(seen) == 16 or any(row[1] for row in seen)  # (a lease ran out, or the look saw only some)

        def body(db: "Any", now: float) -> "list[Claim]":
            # Steps whose lease ran out first (they have waited longest), then ready ones as they came.
            select = ("SELECT run_id, step, state, attempt, worker, claimed, item FROM queue"
                      f" WHERE state = ? AND due <= ?{where}{fits('?', self._LEAST) if limited else ''}")
            params = (now, *skip, now) if limited else (now, *skip)
            rows = db.execute(f"{select} LIMIT ?{self._TAKE}", (1, *params, limit)).fetchall() if lost else []
            rows += db.execute(f"{select} ORDER BY due LIMIT ?{self._TAKE}", (0, *params, limit * 4 + 16)).fetchall()
            limits = self._limits
            limits.read(db, [row[0] for row in rows if limits.held(db, row[0], row[1], row[6])])
            claims: list[Claim] = []
            runs: dict[str, _Run | None] = {}
            for run_id, step, state, attempt, holder, claimed, item in rows:
                if len(claims) == limit:
                    break
                if refuse is not None and refuse(run_id, step):
                    continue
                if state == 1:  # its worker's lease ran out: that attempt is lost, and counted
                    if run_id not in runs:
                        runs[run_id] = self._run(db, run_id, wait=False)
                    run = runs[run_id]
                    if run is None:
                        continue  # (ended, or busy: the next look takes it)
                    if item != GATHER:  # (a gathering lost is done again, not an attempt of the step)
                        db.execute(ATTEMPTS, (self._t(run_id), self._t(run.names[step]), item, attempt, claimed,
                                              now, "WorkerLost",
                                              f"worker {holder} stopped renewing its lease; the step runs again"))
                    limits.give(db, run_id, step, item)  # (the lost attempt's units)
                    if run.state == _CANCELLED:
                        db.execute("DELETE FROM queue WHERE run_id = ? AND step = ? AND item = -1", (run_id, step))
                        self._settle(db, run, step, "cancelled", attempt, now, claimed, now)
                        continue
                if not limits.take(db, run_id, step, item, now):
                    if state == 1:  # (ready again, its lost attempt counted, until a token comes)
                        db.execute("UPDATE queue SET state = 0, due = ?, worker = NULL WHERE run_id = ? AND step = ?"
                                   " AND item = ?", (now, run_id, step, item))
                    limits.refused(db, run_id, step, item, now)
                    continue
                held = leases.get(run_id, lease) if leases else lease  # (the run's lease, else the worker's)
                db.execute("UPDATE queue SET state = 1, attempt = ?, due = ?, worker = ?, claimed = ?"
                           " WHERE run_id = ? AND step = ? AND item = ?",
                           (attempt + 1, now + held, worker, now, run_id, step, item))
                claims.append(Claim(run_id, step, attempt + 1, worker, item, held))
                claims[-1].waited = limits.waited(db, run_id, step, item, now) if limited else None
            self._close(db, [run for run in runs.values() if run is not None], now)
            return claims

        return self._transaction(body, durable=False)  # type: ignore[no-any-return]

    def _wait_token(self, where: str, skip: "tuple[str, ...]") -> None:
        """Nothing to claim: when the next token comes of a bucket that ready rows wait for."""
        rows = self._query(f"SELECT size, rate, room, at, {self._CLOCK} FROM queue_pools WHERE rate > 0{where}"
                           " AND EXISTS (SELECT 1 FROM queue WHERE queue.run_id = queue_pools.run_id AND state = 0"
                           f" AND due <= {self._CLOCK})", skip)
        wait = self._limits.next_token([row[:4] for row in rows], float(rows[0][4])) if rows else None
        self._limits.token = None if wait is None else time.monotonic() + wait

    def _pause(self, timeout: float) -> float:
        """``timeout``, or less: until the next token that steps wait for."""
        token = self._limits.token
        return timeout if token is None else max(0.0, min(timeout, token - time.monotonic()))

    def reconsider(self, run_id: str) -> None:
        self._limits.forget(run_id)  # (what its steps hold is read again: added steps')

    def heartbeat(self, claims: "Sequence[Claim]", lease: float) -> None:
        def body(db: "Any", now: float) -> None:
            for c in claims:
                if not db.execute("UPDATE queue SET due = ? WHERE run_id = ? AND step = ? AND item = ?"
                                  " AND attempt = ? AND state = 1",
                                  (now + (c.lease or lease), c.run_id, c.step, c.item, c.attempt)).rowcount:
                    c.lost = True

        if claims:
            self._transaction(body, durable=False)

    def finish(self, done: "Sequence[tuple[Claim, Outcome]]") -> "list[bool]":
        if not done:
            return []

        def body(db: "Any", now: float) -> "list[bool]":
            runs = {key: self._run(db, key) for key in sorted({c.run_id for c, _ in done})}  # (held first)
            # The fence: the rows these attempts still hold, ended in one statement.
            marks = ", ".join(["(?, ?, ?, ?)"] * len(done))
            held = set(db.execute(
                f"DELETE FROM queue WHERE state = 1 AND (run_id, step, item, attempt) IN ({marks})"
                " RETURNING run_id, step, item",
                tuple(v for c, _ in done for v in (*c.key, c.attempt))).fetchall())
            recorded = []
            units: set[tuple[str, int]] = set()  # maps whose units finished: gathered when none is left
            t = self._t
            for claim, out in done:
                key = claim.run_id
                run = runs[key]
                if run is None or claim.key not in held:
                    recorded.append(False)
                    continue
                recorded.append(True)
                self._limits.give(db, key, claim.step, claim.item)
                name = t(run.names[claim.step])
                item = max(claim.item, -1)
                if out.logs:
                    db.execute(LOGS, (t(key), name, item, claim.attempt, t(out.logs)))
                if out.added:  # (steps it added: they join the run first)
                    out = _grown(self, db, run, claim, out, now)
                if out.retry_in is not None and run.state == _RUNNING:
                    db.execute(ATTEMPTS, (t(key), name, item, claim.attempt, out.started, out.finished,
                                          t(out.error_type), t(out.error_message)))
                    db.execute("INSERT INTO queue VALUES (?, ?, 0, ?, ?, NULL, NULL, ?)",
                               (key, claim.step, claim.attempt, now + out.retry_in, claim.item))
                elif claim.item >= 0:
                    self._unit(db, run, claim, out, now, units)
                elif out.status == "planned" and run.state == _RUNNING:
                    db.executemany("INSERT INTO queue VALUES (?, ?, 0, 0, ?, NULL, NULL, ?)",
                                   [(key, claim.step, now, j) for j in out.units])
                    self._notify(db)
                else:
                    status = "cancelled" if out.status == "planned" else out.status
                    attempts = claim.attempt if out.attempts is None else out.attempts
                    self._settle(db, run, claim.step, status, attempts, now, out.started, out.finished, out,
                                 claim.waited)
            for key, step in sorted(units):  # (a map whose last unit finished: its gathering is ready)
                gathering = runs[key]
                if gathering is None or not gathering.mirror.running(step):
                    continue
                if not db.execute("SELECT 1 FROM queue WHERE run_id = ? AND step = ? AND item <> -1 LIMIT 1",
                                  (key, step)).fetchall():
                    db.execute("INSERT INTO queue VALUES (?, ?, 0, 0, ?, NULL, NULL, ?)", (key, step, now, GATHER))
                    self._notify(db)
            self._close(db, [run for run in runs.values() if run is not None], now)
            return recorded

        return self._transaction(body)  # type: ignore[no-any-return]

    def _unit(
        self, db: "Any", run: _Run, claim: Claim, out: "Outcome", now: float, units: "set[tuple[str, int]]"
    ) -> None:
        """Map unit ``claim`` ended ``out`` (not retried): its item's record; a
        failure under ``fail_fast`` (or a skip, or a cancel) ends its step now."""
        step = claim.step
        if not run.mirror.running(step):
            return  # (its map ended in this transaction: a unit that failed before it, in the same finish)
        if out.status in ("succeeded", "failed"):
            self._record(db, run, step, out.status, claim.attempt, out.started, out.finished, out, claim.item,
                         claim.waited)
            if out.status == "succeeded" or not run.mirror.fail_fast:
                units.add((run.run_id, step))
                return
        for state, item in db.execute("DELETE FROM queue WHERE run_id = ? AND step = ? AND item <> -1"
                                      " RETURNING state, item", (run.run_id, step)).fetchall():
            if state == 1:  # (a unit claimed: its units come back; its finish is fenced out)
                self._limits.give(db, run.run_id, step, item)
        units.discard((run.run_id, step))
        self._settle(db, run, step, out.status, claim.attempt, now, out.started, out.finished, out)

    def release(self, claims: "Sequence[Claim]") -> None:
        def body(db: "Any", now: float) -> None:
            for c in claims:  # (the attempt counts: it may have begun)
                if db.execute("UPDATE queue SET state = 0, due = ?, worker = NULL"
                              " WHERE run_id = ? AND step = ? AND item = ? AND attempt = ? AND state = 1",
                              (now, *c.key, c.attempt)).rowcount:
                    self._limits.give(db, *c.key)
            self._notify(db)
            self._changed.set()

        if claims:
            self._transaction(body, durable=False)

    def cancel(self, run_id: str) -> None:
        def body(db: "Any", now: float) -> None:
            run = self._run(db, run_id)
            if run is not None and run.state != _CANCELLED:
                self._stop(db, run, _CANCELLED, now)
                self._close(db, [run], now)

        self._transaction(body)
