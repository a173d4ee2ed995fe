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
- claims and renewed leases commit with ``synchronous_commit`` off;
- big outputs go to the store's ``blobs`` table in the transaction that
  names them (under the shared lock that ``prune`` takes exclusively);
- waiting: transactions that make work ``NOTIFY microdag_queue``; a waiting
  worker ``LISTEN``\\ s, and looks again at least every
  :data:`POLL_MAX` seconds (a due retry, a lease run out).
"""

import threading

from .._errors import StoreError
from ._files import checksum
from ._sql_queue import TABLES, SQLQueue

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._postgres import PostgresStore

__all__ = ["POLL_MAX", "PostgresQueue"]

#: The longest wait for a notification before looking again (seconds).
POLL_MAX = 0.05

_TABLES = TABLES.format(real="DOUBLE PRECISION", big="BIGINT", keyed="")

_KEY = "hashtextextended(?, 0)"


class PostgresQueue(SQLQueue):
    """The work queue in a PostgreSQL store's database (see the module docs).

    Args:
        store: the store; the queue connects on its own to its database.
    """

    _BEGIN_FAST = "BEGIN; SET LOCAL synchronous_commit TO off"
    _CLOCK = "extract(epoch FROM clock_timestamp())"
    _TAKE = " FOR UPDATE SKIP LOCKED"
    _LEASE = "(plan::json ->> 'lease')::float8"

    def __init__(self, store: "PostgresStore") -> None:
        import psycopg  # (the postgres extra: the store imported it already)

        super().__init__(store)
        self._connect = store._connect  # (waits for the server as the store does)
        self._fresh = store._fresh
        self._db = self._connect()
        self._listen = self._connect()
        self._listening = threading.Lock()
        try:
            with self._lock:
                with self._db.conn.transaction():
                    self._db.execute(f"SELECT pg_advisory_xact_lock({_KEY})", ("microdag queue schema",))
                    self._db.conn.execute(_TABLES)
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

    def _reconnect(self) -> bool:
        db = self._fresh(self._db)
        if db is None:
            return False
        self._db = db
        return True

    def wait(self, timeout: float) -> None:
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
