"""The SQLite store's work queue: workers of one machine sharing runs in the store's file.

The queue's SQL is ``_sql_queue``'s; this is SQLite's side of it:

- a connection of the queue's own to the store's file;
- ``BEGIN IMMEDIATE``: the file's single writer is the compare-and-swap (a
  claim reads the ready rows and takes them before anyone else can write),
  and it holds every run at once, so a run needs no lock of its own;
- the database's clock is ``julianday('now')``: on one machine, the
  machine's clock, the one every worker reads;
- commits are fsync'd (``synchronous=FULL``), but for claims and renewed
  leases (``NORMAL``): a finished step is on the disk before its dependents
  can start, and a claim costs no fsync;
- waiting: a worker with nothing to claim polls ``PRAGMA data_version`` (it
  changes when another connection commits: a cheap read of the file's
  header) every half millisecond, backing off to :data:`POLL_MAX`, and wakes
  at once on a change this process made, or when a token comes that ready
  steps wait for (``_queue_pools``).
"""

import time

from .._errors import StoreError
from ._files import put_blob
from ._sql_queue import TABLES, SQLQueue
from ._sqlite_file import connect

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ._sqlite import SQLiteStore

__all__ = ["POLL_MAX", "SQLiteQueue"]

#: The longest pause between two looks at the file while waiting (seconds).
POLL_MAX = 0.004

_TABLES = TABLES.format(real="REAL", big="INTEGER", keyed=" WITHOUT ROWID", lease="")


class SQLiteQueue(SQLQueue):
    """The work queue in an SQLite store's file (see the module docs).

    Args:
        store: the store; the queue opens a connection of its own to its file.
    """

    _BEGIN = _BEGIN_FAST = "BEGIN IMMEDIATE"
    _CLOCK = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, store: "SQLiteStore", timeout: float = 30.0) -> None:
        import sqlite3  # (import time: sqlite3 loads on first use)

        super().__init__(store)
        if store.readonly:
            raise StoreError(f"store {self.path!r} is open for reading only: it cannot be a work queue")
        self.blobs = store.blobs
        self._db, _, _ = connect(self.path, timeout, False, store.codec)
        self._version = -1
        self._durable = True  # synchronous=FULL, as the store's own connection
        try:
            with self._lock:
                self._db.executescript("BEGIN IMMEDIATE;" + _TABLES + "COMMIT;")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"cannot make the work queue in store {self.path!r}: {exc}") from None

    def _transaction(self, body: "Callable[[Any, float], Any]", durable: bool = True) -> "Any":
        if durable is not self._durable:  # (a pragma outside transactions: per connection)
            with self._lock:
                self._db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
                self._durable = durable
        return super()._transaction(body, durable)

    def _blob(self, db: "Any", data: bytes) -> str:
        return put_blob(self.blobs, data, self.path)

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + self._pause(timeout)
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
