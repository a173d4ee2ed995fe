"""The PostgreSQL store's work queue: workers on many machines sharing runs in one database.

The queue's SQL is ``_sql_queue``'s; this is PostgreSQL's side of it:

- a connection of the queue's own (and one more that listens);
- a claim locks the rows it selects with ``FOR UPDATE SKIP LOCKED``: two
  workers never take one step, and neither waits for the other;
- a run's mirror is replayed and extended under a transaction-level advisory
  lock of that run (``pg_advisory_xact_lock``), taken before any queue row
  (a claim only tries it, ``pg_try_advisory_xact_lock``, and leaves the row
  to the next look when it is busy): the log's order is the commits' order;
- the database's clock is the server's (``clock_timestamp()``): lease times
  are never compared across machines; a transaction begins and reads it in
  one round trip;
- a claim of ready steps is one statement, one round trip: it reads the
  clock, takes up to its limit of ready rows (``SKIP LOCKED``) with each
  run's lease (a column of ``queue_runs`` computed from its plan); when a
  lease ran out, it takes nothing and says so, and the claim is made in
  ``_sql_queue``'s transaction (the attempt lost is recorded under its
  run's lock).  A worker learns a run it meets after claiming its steps, and
  gives back, uncounted, those it turns down (remembered: it does not claim
  them again until it learns more of the run, and forgets them once the run
  is no longer on the queue);
- a run with pools or rates (``_queue_pools``) is claimed in ``_sql_queue``'s
  transaction instead, its pool rows locked ``FOR UPDATE`` (in one sorted
  read): the one statement leaves its rows alone and says when some are
  ready, and the claim goes on in the transaction for what is left of its limit;
- claims and renewed leases commit with ``synchronous_commit`` off (the
  session's setting; a transaction that must reach the disk sets it on);
- big outputs go to the store's ``blobs`` table in the transaction that
  names them (under the shared lock that ``prune`` takes exclusively);
- waiting: transactions that make work ``NOTIFY microdag_queue``; a waiting
  worker ``LISTEN``\\ s, and looks again at least every
  :data:`POLL_MAX` seconds (a due retry, a lease run out).
"""

import threading

from .._errors import StoreError
from ._files import checksum
from ._queue import Claim
from ._sql_queue import TABLES, SQLQueue, runs_where

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

    from ._postgres import PostgresStore

__all__ = ["POLL_MAX", "PostgresQueue"]

#: The longest wait for a notification before looking again (seconds).
POLL_MAX = 0.05

_LEASE_COLUMN = "lease DOUBLE PRECISION GENERATED ALWAYS AS ((plan::json ->> 'lease')::float8) STORED"
_TABLES = TABLES.format(real="DOUBLE PRECISION", big="BIGINT", keyed="", lease=", " + _LEASE_COLUMN)

#: Ready rows claimed in one statement (``{where}``: which runs), each with
#: its run's lease; when a lease ran out, none but one row of ``NULL``; rows
#: of runs with pools or rates are left, and a row ``(NULL, 1, ...)`` says some are ready.
_CLAIM = """
WITH clock AS MATERIALIZED (SELECT extract(epoch FROM clock_timestamp()) AS now),
lost AS MATERIALIZED (
    SELECT EXISTS (SELECT 1 FROM queue WHERE state = 1 AND due <= (SELECT now FROM clock){where}) AS ran_out),
limited AS MATERIALIZED (
    SELECT EXISTS (SELECT 1 FROM queue_pools p WHERE EXISTS (SELECT 1 FROM queue
        WHERE queue.run_id = p.run_id AND state = 0 AND due <= (SELECT now FROM clock){where})) AS waiting),
picked AS MATERIALIZED (
    SELECT run_id, step, item FROM queue
    WHERE state = 0 AND due <= (SELECT now FROM clock) AND NOT (SELECT ran_out FROM lost){where}{refused}
        AND NOT EXISTS (SELECT 1 FROM queue_pools p WHERE p.run_id = queue.run_id)
    ORDER BY due LIMIT ? FOR UPDATE SKIP LOCKED),
claimed AS (
    UPDATE queue q SET state = 1, attempt = q.attempt + 1, worker = ?, claimed = clock.now,
        due = clock.now + COALESCE(r.lease, ?)
    FROM picked, clock, queue_runs r
    WHERE q.run_id = picked.run_id AND q.step = picked.step AND q.item = picked.item AND r.run_id = q.run_id
    RETURNING q.run_id, q.step, q.attempt, q.item, COALESCE(r.lease, ?) AS lease)
SELECT run_id, step, attempt, item, lease FROM claimed
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL WHERE (SELECT ran_out FROM lost)
UNION ALL
SELECT NULL, 1, NULL, NULL, NULL WHERE (SELECT waiting FROM limited) AND NOT (SELECT ran_out FROM lost)
"""

_KEY = "hashtextextended(?, 0)"


class PostgresQueue(SQLQueue):
    """The work queue in a PostgreSQL store's database (see the module docs).

    Args:
        store: the store; the queue connects on its own to its database.
    """

    _BEGIN = "BEGIN; SET LOCAL synchronous_commit TO on"
    _BEGIN_FAST = "BEGIN"
    _CLOCK = "extract(epoch FROM clock_timestamp())"
    _TAKE = " FOR UPDATE SKIP LOCKED"
    _LEASE = "lease"
    _LEAST = "LEAST"
    _LOCK_POOLS = " FOR UPDATE"

    def __init__(self, store: "PostgresStore") -> None:
        import psycopg  # (the postgres extra: the store imported it already)

        super().__init__(store)
        self._connect = store._connect  # (waits for the server as the store does)
        self._fresh = store._fresh
        self._db = self._session()
        self._listen = self._connect()
        self._listening = threading.Lock()
        self._refused: set[tuple[str, int]] = set()  # steps given back: not claimed again
        try:
            with self._lock:
                with self._db.conn.transaction():
                    self._db.execute(f"SELECT pg_advisory_xact_lock({_KEY})", ("microdag queue schema",))
                    self._db.conn.execute(_TABLES)
                    if not self._db.execute("SELECT 1 FROM information_schema.columns WHERE table_schema ="
                                            " current_schema() AND table_name = 'queue_runs' AND column_name = "
                                            "'lease'").fetchall():  # (a database made before the column)
                        self._db.conn.execute("ALTER TABLE queue_runs ADD COLUMN " + _LEASE_COLUMN)
            self._listen.execute("LISTEN microdag_queue")
        except psycopg.Error as exc:
            self.close()
            raise StoreError(f"cannot make the work queue in store {self.path!r}: {exc}") from None

    def _lock_run(self, db: "Any", run_id: str, wait: bool) -> bool:
        if wait:
            db.execute(f"SELECT pg_advisory_xact_lock({_KEY})", ("microdag queue " + run_id,))
            return True
        return bool(db.execute(f"SELECT pg_try_advisory_xact_lock({_KEY})", ("microdag queue " + run_id,))
                    .fetchone()[0])

    def _blob(self, db: "Any", data: bytes) -> str:
        ref = checksum(data)
        db.execute(f"SELECT pg_advisory_xact_lock_shared({_KEY})", ("microdag blobs",))
        db.execute("INSERT INTO blobs VALUES (?, ?) ON CONFLICT (sha) DO NOTHING", (ref, data))
        return ref

    def _begin(self, db: "Any", durable: bool) -> float:
        # one round trip: the statements that begin, and the clock (the last result)
        cursor = db.execute(f"{self._BEGIN if durable else self._BEGIN_FAST}; SELECT {self._CLOCK}")
        while cursor.nextset():
            pass
        return float(cursor.fetchone()[0])

    def _notify(self, db: "Any") -> None:
        db.execute("NOTIFY microdag_queue")

    def _session(self, db: "Any" = None) -> "Any":
        """The queue's connection (``db``, else a new one): commits need not reach the disk unless asked."""
        db = db or self._connect()
        db.execute("SET synchronous_commit TO off")
        return db

    def _reconnect(self) -> bool:
        db = self._fresh(self._db)
        if db is None:
            return False
        self._db = self._session(db)
        return True

    def claim(
        self, worker: str, lease: float, limit: int = 1, refuse: "Callable[[str, int], bool] | None" = None,
        skip_runs: "Iterable[str]" = (), meet: "Callable[[list[str]], object] | None" = None,
        leases: "Mapping[str, float] | None" = None, only: "str | None" = None,
    ) -> "list[Claim]":
        self._prune()
        where, params = runs_where(skip_runs, only)
        refused = [key for key in self._refused if key[0] not in params]
        sql = _CLAIM.format(where=where, refused=" AND (run_id, step) NOT IN (VALUES {})".format(
            ", ".join(["(?, ?)"] * len(refused))) if refused else "")
        values = (*params, *params, *params, *(v for key in refused for v in key), limit, worker, lease, lease)
        try:
            rows = self._retrying(lambda: self._db.execute(sql, values).fetchall())
        except self._error as exc:
            raise StoreError(f"cannot write to store {self.path!r}: {exc}") from None
        claims = [Claim(run_id, step, attempt, worker, item, held)
                  for run_id, step, attempt, item, held in rows if run_id is not None]
        marks = {step for run_id, step, *_ in rows if run_id is None}
        if None in marks:  # (leases ran out: the lost attempts are recorded under their runs' locks)
            return super().claim(worker, lease, limit, refuse, skip_runs, meet, leases, only)
        if claims and meet is not None:
            meet(list(dict.fromkeys(c.run_id for c in claims)))
        if claims and refuse is not None:
            back = [c for c in claims if refuse(c.run_id, c.step)]
            if back:
                self._give_back(back)
                claims = [c for c in claims if c not in back]
        if marks and len(claims) < limit:  # (ready steps of runs with pools or rates: the transaction's)
            claims += super().claim(worker, lease, limit - len(claims), refuse, skip_runs, meet, leases, only)
        elif not claims:
            self._limits.token = None
        return claims

    def reconsider(self, run_id: str) -> None:
        self._refused = {key for key in self._refused if key[0] != run_id}
        super().reconsider(run_id)

    def _forget(self, run_id: str) -> None:
        super()._forget(run_id)
        self._refused = {key for key in self._refused if key[0] != run_id}

    def _known(self) -> "set[str]":
        return super()._known().union(key[0] for key in self._refused)

    def _give_back(self, claims: "list[Claim]") -> None:
        """Claims turned down before they began: ready again, their attempts not counted."""
        self._refused.update((c.run_id, c.step) for c in claims)

        def body(db: "Any", now: float) -> None:
            db.executemany("UPDATE queue SET state = 0, attempt = attempt - 1, due = claimed, worker = NULL,"
                           " claimed = NULL WHERE run_id = ? AND step = ? AND item = ? AND attempt = ? AND state = 1",
                           [(*c.key, c.attempt) for c in claims])
            self._notify(db)

        self._transaction(body, durable=False)

    def wait(self, timeout: float) -> None:
        timeout = self._pause(timeout)
        if self._changed.is_set():
            self._changed.clear()
            return
        if not self._listening.acquire(timeout=timeout):
            return  # (another thread of this worker listened meanwhile)
        try:
            for _ in self._listen.conn.notifies(timeout=min(timeout, POLL_MAX), stop_after=1):
                pass
        except Exception:  # the server went away: listen again once it is back (the next claim waits for it)
            try:
                self._listen.close()
                self._listen = self._connect()
                self._listen.execute("LISTEN microdag_queue")
            except Exception:
                pass
        finally:
            self._listening.release()

    def close(self) -> None:
        for db in (self._db, self._listen):
            try:
                db.close()
            except Exception:
                pass
