"""The SQLite store: one file, the reference store.

Tables (made by ``_sqlite_file``):

- ``meta``: ``app = microdag``, ``schema = 1``, the ``codec``;
- ``runs``: one row per run (its record: status, times, inputs, code digests);
- ``tasks``: the task records, keyed by run, step and item (``seq`` keeps the
  order tasks were first saved), with outputs below 64 KiB inline;
- ``attempts``: the times and errors of attempts that failed and were retried;
- ``logs``: what each attempt printed and logged;
- ``owners``: the claim on each live run (``host:pid#nonce``);
- ``cache``: the outputs of steps with ``cache=True``, by key;
- ``graphs``: a flow's structure by fingerprint, for reports.

The database runs in WAL mode with ``synchronous=FULL`` (a commit
is fsync'd) and a busy timeout, so several processes can share one file.
What it does with the tables (group commit, reading rows back as records,
claims, prune) is ``_sql``'s, shared with the PostgreSQL store; this module
opens the file and keeps big outputs beside it.  Encoded outputs of 64 KiB and more go to ``<file>.blobs/``, one file per
SHA-256, written atomically.

Opening (``_sqlite_file``) checks the file before changing anything: a file
that is not SQLite, an SQLite database of another application, or a newer
schema is refused with a :class:`StoreError`, and left as it was.
"""

import os

from .._errors import StoreError
from .._records import check_run_id
from ._files import drop_blobs, put_blob, read_blob
from ._sql import SQLStore
from ._sqlite_file import connect

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ._sqlite_queue import SQLiteQueue

__all__ = ["SQLiteStore"]


class SQLiteStore(SQLStore):
    """Runs kept in one SQLite file.

    Args:
        path: the database file (created, with its tables, when missing; its
            directory must exist).
        codec: ``"json"`` or ``"pickle"`` (trusted data only); default: the
            codec the store records (a new store: ``"json"``).  A store keeps
            the codec it was made with; opening it with another, or a pickle
            store without asking for pickle, is a :class:`StoreError`.
        timeout: seconds to wait for another process's lock.

    Raises:
        StoreError: the directory is missing, or the file is not a microdag
            store, has a newer schema, or is corrupt (the file is not changed).
    """

    _BEGIN = "BEGIN IMMEDIATE"  # one writer at a time across processes, from the transaction's start

    def __init__(
        self, path: "str | os.PathLike[str]", codec: "str | None" = None, timeout: float = 10.0,
        readonly: bool = False,
    ) -> None:
        super().__init__(codec)
        self.path = os.fspath(path)
        self.blobs = self.path + ".blobs"
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise StoreError(f"cannot open store {self.path!r}: directory {parent!r} does not exist")
        # readonly: opened for reading only, as asked or because the file or its folder cannot be written
        self._db, self.readonly, self.codec = connect(self.path, timeout, readonly, codec)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(runs)")}
        # (an older store opened read-only: columns added since read as NULL)
        self._code = ", ".join(name if name in columns else "NULL" for name in ("code", "limits"))
        if "waited" not in {row[1] for row in self._db.execute("PRAGMA table_info(tasks)")}:
            self._waited = "NULL"

    def _errors(self) -> "tuple[type[BaseException], type[BaseException]]":
        import sqlite3  # (import time: sqlite3 loads on first use)

        return sqlite3.DatabaseError, sqlite3.IntegrityError

    def _put_blob(self, data: bytes) -> str:
        return put_blob(self.blobs, data, self.path)

    def _read_blob(self, ref: str, what: str) -> bytes:
        return read_blob(self.blobs, ref, what)

    def _drop_blobs(self, db: "Any") -> "Callable[[], None]":
        used = {row[0] for row in db.execute("SELECT output_ref FROM tasks WHERE output_ref IS NOT NULL")}
        used |= {row[0] for row in db.execute("SELECT output_ref FROM cache WHERE output_ref IS NOT NULL")}
        return lambda: drop_blobs(self.blobs, used, self.list_runs())

    def queue(self) -> "SQLiteQueue":
        from ._sqlite_queue import SQLiteQueue  # (runs shared with workers only)

        return SQLiteQueue(self)

    def run_dir(self, run_id: str) -> str:
        return os.path.join(self.path + ".work", check_run_id(run_id))

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"
