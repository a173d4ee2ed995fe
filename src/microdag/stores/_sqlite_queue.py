"""The SQLite store's work queue: workers of one machine sharing runs in the store's file.

The protocol is ``_queue``'s; this module is its SQL.  Tables, beside the
store's (made on first use):

- ``queue_runs``: a run on the queue: its plan document, the position of its
  log, its state (0 running, 1 stopping after a failure under ``fail_fast``,
  2 cancelled) and whether a step failed;
- ``queue``: its steps that are ready or claimed, one row each: ``state``
  (0 ready, 1 claimed), ``attempt`` (attempts made; a claim makes the next
  and that is its fencing token), ``due`` (ready: when it may be claimed, a
  retry's time; claimed: when its lease runs out), ``worker``, ``claimed``
  (when). A finished step's row is gone; its record is in ``tasks``;
- ``queue_log``: the run's outcomes in order, which each worker's
  :class:`~microdag.stores._queue.Mirror` replays.

Every change is one ``BEGIN IMMEDIATE`` transaction: SQLite's single writer
is the compare-and-swap (a claim reads the ready rows and takes them before
anyone else can write), and a finish deletes the claimed row *where its
attempt is the claim's* (the fence), writes the record and what the mirror
says follows, and commits once (``synchronous=FULL``: a finished step is on
the disk before its dependents can start).  Times are read from SQLite
(``julianday('now')``): on one machine, the database's clock is the
machine's, the one every worker reads.

Waiting: a worker with nothing to claim polls ``PRAGMA data_version`` (it
changes when another connection commits: a cheap read of the file's header)
every millisecond, backing off to :data:`POLL_MAX`, and wakes at once on a
change this process made.
"""

import json
import threading
import time

from .._errors import StoreError
from .._records import run_status
from ._files import BLOB_SIZE, put_blob, read_blob
from ._queue import CANCELLED, FAILED, SKIPPED, STOP, SUCCEEDED, Claim, Mirror, WorkQueue, plan_text
from ._sqlite_file import connect
from ._sql import UPSERT
from ._sqlite_rows import _s, _t

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

    from ._queue import Outcome
    from ._sqlite import SQLiteStore

__all__ = ["POLL_MAX", "SQLiteQueue"]

#: The longest pause between two looks at the file while waiting (seconds).
POLL_MAX = 0.004

_TABLES = """
CREATE TABLE IF NOT EXISTS queue_runs (
    run_id TEXT PRIMARY KEY, plan TEXT NOT NULL, seq INTEGER NOT NULL, state INTEGER NOT NULL,
    failed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS queue (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, state INTEGER NOT NULL, attempt INTEGER NOT NULL,
    due REAL NOT NULL, worker TEXT, claimed REAL, PRIMARY KEY (run_id, step)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS queue_by_due ON queue (state, due);
CREATE TABLE IF NOT EXISTS queue_log (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, step INTEGER NOT NULL, outcome INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
"""

#: The database's clock, in seconds since the epoch.
_NOW = "SELECT (julianday('now') - 2440587.5) * 86400.0"

_STATUS = {"succeeded": SUCCEEDED, "failed": FAILED, "skipped": SKIPPED, "cancelled": CANCELLED}
_RUNNING, _STOPPING, _CANCELLED = 0, 1, 2


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


class SQLiteQueue(WorkQueue):
    """The work queue in an SQLite store's file (see the module docs).

    Args:
        store: the store; the queue opens a connection of its own to its file.
    """

    def __init__(self, store: "SQLiteStore", timeout: float = 30.0) -> None:
        import sqlite3  # (import time: sqlite3 loads on first use)

        self.store = store
        self.path = store.path
        if store.readonly:
            raise StoreError(f"store {self.path!r} is open for reading only: it cannot be a work queue")
        self._db, _, _ = connect(self.path, timeout, False, store.codec)
        self._lock = threading.RLock()
        self._mirrors: dict[str, tuple[Mirror, list[str]]] = {}
        self._seq = 0
        self._rows: list[tuple[Any, ...]] = []  # task records of the transaction
        self._changed = threading.Event()  # this process changed the queue
        self._version = -1
        self._durable = True  # synchronous=FULL, as the store's own connection
        try:
            with self._lock:
                self._db.executescript("BEGIN IMMEDIATE;" + _TABLES + "COMMIT;")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"cannot make the work queue in store {self.path!r}: {exc}") from None

    # -- transactions ------------------------------------------------------------------

    def _transaction(self, body: "Callable[[sqlite3.Connection, float], Any]", durable: bool = True) -> "Any":
        """``body(db, now)`` in one immediate transaction; a mirror it touched
        is dropped if it fails (the next one replays the log again).  Unless
        ``durable``, its commit is not fsync'd: a claim or a lease renewed
        that a power cut loses is taken again (its worker is gone too)."""
        import sqlite3  # (import time: sqlite3 loads on first use)

        with self._lock:
            db = self._db
            try:
                if durable is not self._durable:
                    db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
                    self._durable = durable
                db.execute("BEGIN IMMEDIATE")
                try:
                    now = db.execute(_NOW).fetchone()[0]
                    result = body(db, now)
                    if self._rows:
                        db.executemany(UPSERT, self._rows)
                except BaseException:
                    self._rows.clear()
                    self._mirrors.clear()
                    db.execute("ROLLBACK")
                    raise
                self._rows.clear()
                db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"cannot write to store {self.path!r}: {exc}") from None
        return result

    def _run(self, db: "sqlite3.Connection", run_id: str) -> "_Run | None":
        """Run ``run_id`` with its mirror caught up with the log, or ``None`` once it ended."""
        row = db.execute("SELECT seq, state, failed FROM queue_runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            self._mirrors.pop(run_id, None)
            return None
        seq, state, failed = row
        known = self._mirrors.get(run_id)
        if known is None:
            (text,) = db.execute("SELECT plan FROM queue_runs WHERE run_id = ?", (run_id,)).fetchone()
            plan = json.loads(text)
            known = self._mirrors[run_id] = (Mirror(plan), plan["names"])
        mirror = known[0]
        if mirror.seq < seq:
            for _, step, outcome in db.execute(
                "SELECT seq, step, outcome FROM queue_log WHERE run_id = ? AND seq > ? ORDER BY seq",
                (run_id, mirror.seq),
            ).fetchall():
                mirror.apply(step, outcome)
            mirror.seq = seq
        return _Run(run_id, mirror, known[1], state, failed)

    def _record(
        self, run: _Run, step: int, status: str, attempts: int, started: "float | None" = None,
        finished: "float | None" = None, out: "Outcome | None" = None,
    ) -> None:
        """Keep the task record of ``step`` (with the transaction)."""
        output = ref = etype = emsg = tb = None
        if out is not None:
            output, etype, emsg, tb = out.output, out.error_type, out.error_message, out.traceback
            if output is not None and len(output) >= BLOB_SIZE:
                ref, output = put_blob(self.store.blobs, output, self.path), None
        self._seq = max(self._seq + 1, time.time_ns())
        self._rows.append((_t(run.run_id), _t(run.names[step]), -1, self._seq, status, attempts, started, finished,
                           _t(etype), _t(emsg), _t(tb), output, ref))

    def _settle(
        self, db: "sqlite3.Connection", run: _Run, step: int, status: str, attempts: int, now: float,
        started: "float | None" = None, finished: "float | None" = None, out: "Outcome | None" = None,
    ) -> None:
        """Step ``step`` (handed out: its row is gone) ended ``status``: its
        record, and what the kernel says follows from it."""
        self._record(run, step, status, attempts, started, finished, out)
        ready, skipped = run.apply(step, _STATUS[status])
        if ready:
            db.executemany("INSERT INTO queue VALUES (?, ?, 0, 0, ?, NULL, NULL)",
                           [(run.run_id, i, now) for i in ready])
        for i in skipped:
            self._record(run, i, "skipped", 0)
        if status == "failed":
            run.failed = 1
            if run.mirror.fail_fast and run.state == _RUNNING:
                self._stop(db, run, _STOPPING, now)

    def _stop(self, db: "sqlite3.Connection", run: _Run, state: int, now: float) -> None:
        """Start nothing more of ``run`` (``state``: stopping or cancelled):
        its pending steps and its ready ones end cancelled."""
        run.state = max(run.state, state)
        for i in run.apply(-1, STOP)[1]:
            self._record(run, i, "cancelled", 0)
        rows = db.execute("SELECT step, attempt FROM queue WHERE run_id = ? AND state = 0", (run.run_id,)).fetchall()
        db.execute("DELETE FROM queue WHERE run_id = ? AND state = 0", (run.run_id,))
        for step, attempt in rows:
            self._settle(db, run, step, "cancelled", attempt, now)

    def _close(self, db: "sqlite3.Connection", runs: "Iterable[_Run]", now: float) -> None:
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
            db.execute("UPDATE runs SET status = ?, finished = ? WHERE id = ?", (status, now, key))
            for table in ("owners", "queue", "queue_log"):
                db.execute(f"DELETE FROM {table} WHERE run_id = ?", (key,))
            db.execute("DELETE FROM queue_runs WHERE run_id = ?", (key,))
            self._mirrors.pop(key, None)
        self._changed.set()

    # -- the protocol ------------------------------------------------------------------------

    def submit(self, run_id: str, plan: "dict[str, Any]") -> None:
        mirror = Mirror(plan)

        def body(db: "sqlite3.Connection", now: float) -> None:
            db.execute("INSERT INTO queue_runs VALUES (?, ?, 0, 0, 0)", (run_id, plan_text(plan)))
            db.executemany("INSERT INTO queue VALUES (?, ?, 0, 0, ?, NULL, NULL)",
                           [(run_id, i, now) for i in mirror.first])
            self._mirrors[run_id] = (mirror, plan["names"])
            self._close(db, [_Run(run_id, mirror, plan["names"], _RUNNING, 0)], now)

        self._transaction(body)

    def plan(self, run_id: str) -> "dict[str, Any] | None":
        with self._lock:
            row = self._db.execute("SELECT plan FROM queue_runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def claim(
        self, worker: str, lease: float, limit: int = 1, refuse: "Callable[[str, int], bool] | None" = None,
        skip_runs: "Iterable[str]" = (),
    ) -> "list[Claim]":
        skip = tuple(skip_runs)
        where = f" AND run_id NOT IN ({', '.join('?' * len(skip))})" if skip else ""
        with self._lock:  # a look first, without the write lock: most idle looks find nothing
            now = self._db.execute(_NOW).fetchone()[0]
            if self._db.execute(f"SELECT 1 FROM queue WHERE state IN (0, 1) AND due <= ?{where} LIMIT 1",
                                (now, *skip)).fetchone() is None:
                return []

        def body(db: "sqlite3.Connection", now: float) -> "list[Claim]":
            # Steps whose lease ran out first (they have waited longest), then ready ones as they came.
            select = f"SELECT run_id, step, state, attempt, worker, claimed FROM queue WHERE state = ? AND due <= ?{where}"
            rows = db.execute(f"{select} LIMIT ?", (1, now, *skip, limit)).fetchall()
            rows += db.execute(f"{select} ORDER BY due LIMIT ?", (0, now, *skip, limit * 4 + 16)).fetchall()
            claims: list[Claim] = []
            runs: dict[str, _Run | None] = {}
            for run_id, step, state, attempt, holder, claimed in rows:
                if len(claims) == limit:
                    break
                if refuse is not None and refuse(run_id, step):
                    continue
                if state == 1:  # its worker's lease ran out: that attempt is lost, and counted
                    run = runs[run_id] = runs.get(run_id) or self._run(db, run_id)
                    if run is None:
                        continue
                    db.execute(
                        "INSERT OR REPLACE INTO attempts VALUES (?, ?, -1, ?, ?, ?, 'WorkerLost', ?)",
                        (_t(run_id), _t(run.names[step]), attempt, claimed, now,
                         f"worker {holder} stopped renewing its lease; the step runs again"))
                    if run.state == _CANCELLED:
                        db.execute("DELETE FROM queue WHERE run_id = ? AND step = ?", (run_id, step))
                        self._settle(db, run, step, "cancelled", attempt, now, claimed, now)
                        continue
                db.execute("UPDATE queue SET state = 1, attempt = ?, due = ?, worker = ?, claimed = ?"
                           " WHERE run_id = ? AND step = ?", (attempt + 1, now + lease, worker, now, run_id, step))
                claims.append(Claim(run_id, step, attempt + 1, worker))
            self._close(db, [run for run in runs.values() if run is not None], now)
            return claims

        return self._transaction(body, durable=False)  # type: ignore[no-any-return]

    def heartbeat(self, claims: "Sequence[Claim]", lease: float) -> None:
        def body(db: "sqlite3.Connection", now: float) -> None:
            for c in claims:
                if not db.execute("UPDATE queue SET due = ? WHERE run_id = ? AND step = ? AND attempt = ?"
                                  " AND state = 1", (now + lease, c.run_id, c.step, c.attempt)).rowcount:
                    c.lost = True

        if claims:
            self._transaction(body, durable=False)

    def finish(self, done: "Sequence[tuple[Claim, Outcome]]") -> "list[bool]":
        def body(db: "sqlite3.Connection", now: float) -> "list[bool]":
            runs: dict[str, _Run | None] = {}
            recorded = []
            for claim, out in done:
                key = claim.run_id
                if key not in runs:
                    runs[key] = self._run(db, key)
                run = runs[key]
                if run is None or not db.execute(  # the fence: this attempt still holds the step
                        "DELETE FROM queue WHERE run_id = ? AND step = ? AND attempt = ? AND state = 1",
                        (key, claim.step, claim.attempt)).rowcount:
                    recorded.append(False)
                    continue
                recorded.append(True)
                name = _t(run.names[claim.step])
                if out.logs:
                    db.execute("INSERT OR REPLACE INTO logs VALUES (?, ?, -1, ?, ?)",
                               (_t(key), name, claim.attempt, _t(out.logs)))
                if out.retry_in is not None and run.state == _RUNNING:
                    db.execute("INSERT OR REPLACE INTO attempts VALUES (?, ?, -1, ?, ?, ?, ?, ?)",
                               (_t(key), name, claim.attempt, out.started, out.finished, _t(out.error_type),
                                _t(out.error_message)))
                    db.execute("INSERT INTO queue VALUES (?, ?, 0, ?, ?, NULL, NULL)",
                               (key, claim.step, claim.attempt, now + out.retry_in))
                    continue
                self._settle(db, run, claim.step, out.status, claim.attempt, now, out.started, out.finished, out)
            self._close(db, [run for run in runs.values() if run is not None], now)
            return recorded

        return self._transaction(body)  # type: ignore[no-any-return]

    def release(self, claims: "Sequence[Claim]") -> None:
        def body(db: "sqlite3.Connection", now: float) -> None:
            db.executemany("UPDATE queue SET state = 0, due = ?, attempt = attempt - 1, worker = NULL"
                           " WHERE run_id = ? AND step = ? AND attempt = ? AND state = 1",
                           [(now, c.run_id, c.step, c.attempt) for c in claims])
            self._changed.set()

        if claims:
            self._transaction(body, durable=False)

    def cancel(self, run_id: str) -> None:
        def body(db: "sqlite3.Connection", now: float) -> None:
            run = self._run(db, run_id)
            if run is not None and run.state != _CANCELLED:
                self._stop(db, run, _CANCELLED, now)
                self._close(db, [run], now)

        self._transaction(body)

    def stopping(self, run_ids: "Iterable[str]") -> "set[str]":
        wanted = set(run_ids)
        if not wanted:
            return set()
        marks = ", ".join("?" * len(wanted))
        with self._lock:
            live = self._db.execute(
                f"SELECT run_id FROM queue_runs WHERE state < 2 AND run_id IN ({marks})", tuple(wanted)).fetchall()
        return wanted.difference(row[0] for row in live)

    def outputs(self, run_id: str, steps: "Sequence[str]") -> "dict[str, bytes]":
        if not steps:
            return {}
        marks = ", ".join("?" * len(steps))
        with self._lock:
            rows = self._db.execute(
                f"SELECT step, output, output_ref FROM tasks WHERE run_id = ? AND item = -1 AND step IN ({marks})",
                (_t(run_id), *map(_t, steps))).fetchall()
        found = {}
        for step, output, ref in rows:
            name = _s(step)
            if ref is not None:
                output = read_blob(self.store.blobs, ref, f"the output of step {name!r} of run {run_id!r}")
            if output is not None:
                found[name] = output
        return found

    def progress(self, run_id: str, after: int) -> "tuple[int, list[tuple[str, str, int]]]":
        with self._lock:
            rows = self._db.execute("SELECT seq, step, status, attempts FROM tasks WHERE run_id = ? AND seq > ?"
                                    " AND item = -1 ORDER BY seq", (_t(run_id), after)).fetchall()
        if not rows:
            return after, []
        return rows[-1][0], [(_s(step), _s(status), attempts) for _, step, status, attempts in rows]

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pause = 0.0005
        changed = self._changed
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if changed.wait(min(pause, left)):
                changed.clear()
                return
            pause = min(pause * 2, POLL_MAX)
            with self._lock:
                version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version:
                self._version = version
                return

    def close(self) -> None:
        with self._lock:
            self._db.close()
