"""The SQLite store: one file, the reference store.

Tables: ``meta`` (``app = microdag``, ``schema = 1``), ``runs`` and ``tasks``
(keyed by run, step and item; ``seq`` keeps the order tasks were first
saved).  The database runs in WAL mode with ``synchronous=FULL`` (a commit
is fsync'd) and a busy timeout, so several processes can share one file.
Saved task records are buffered and committed together (group commit):
every :data:`GROUP` records, and always by ``flush``/``finish``, so a crash
can lose at most the last ``GROUP`` task records, whose steps a resume runs
again.  Encoded outputs of 64 KiB and more go to ``<file>.blobs/``, one file
per SHA-256, written atomically.

Opening checks the file before changing anything: a file that is not SQLite,
an SQLite database of another application, or a newer schema is refused with
a :class:`StoreError`, and left as it was.
"""

import os
import threading

from ._base import BLOB_SIZE, RunInfo, Store, StoreError, TaskRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

SCHEMA = 1
#: Task records buffered before a commit.
GROUP = 256

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, flow TEXT NOT NULL, fingerprint TEXT NOT NULL, inputs BLOB NOT NULL,
    status TEXT NOT NULL, started REAL NOT NULL, finished REAL
);
CREATE INDEX IF NOT EXISTS runs_by_flow ON runs (flow, started);
CREATE TABLE IF NOT EXISTS tasks (
    run_id TEXT NOT NULL, step TEXT NOT NULL, item INTEGER NOT NULL, seq INTEGER NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL, started REAL, finished REAL,
    error_type TEXT, error_message TEXT, traceback TEXT, output BLOB, output_ref TEXT,
    PRIMARY KEY (run_id, step, item)
) WITHOUT ROWID;
"""

_UPSERT = """
INSERT INTO tasks (run_id, step, item, seq, status, attempts, started, finished,
                   error_type, error_message, traceback, output, output_ref)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, step, item) DO UPDATE SET
    status = excluded.status, attempts = excluded.attempts, started = excluded.started,
    finished = excluded.finished, error_type = excluded.error_type,
    error_message = excluded.error_message, traceback = excluded.traceback,
    output = excluded.output, output_ref = excluded.output_ref
"""


class SQLiteStore(Store):
    """Runs kept in one SQLite file.

    Args:
        path: the database file (created, with its tables, when missing; its
            directory must exist).
        codec: ``"json"`` (default) or ``"pickle"`` (trusted data only).
        timeout: seconds to wait for another process's lock.

    Raises:
        StoreError: the directory is missing, or the file is not a microdag
            store, has a newer schema, or is corrupt (the file is not changed).
    """

    def __init__(self, path: "str | os.PathLike[str]", codec: str = "json", timeout: float = 10.0) -> None:
        super().__init__(codec)
        import sqlite3

        self.path = os.fspath(path)
        self.blobs = self.path + ".blobs"
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise StoreError(f"cannot open store {self.path!r}: directory {parent!r} does not exist")
        self._lock = threading.RLock()
        self._pending: list[tuple[Any, ...]] = []
        try:
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self._check_and_create()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path!r} is not a usable microdag store: {exc}") from None
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM tasks").fetchone()
        self._seq = int(row[0])

    def _check_and_create(self) -> None:
        import sqlite3

        db = self._db
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables:
            if "meta" not in tables:
                raise StoreError(f"{self.path!r} is an SQLite database, but not a microdag store")
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("app") != "microdag":
                raise StoreError(f"{self.path!r} is an SQLite database, but not a microdag store")
            schema = int(meta.get("schema", "0"))
            if schema > SCHEMA:
                raise StoreError(
                    f"{self.path!r} has store schema {schema}, newer than this microdag's "
                    f"({SCHEMA}): upgrade microdag to use it"
                )
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        if not tables:
            try:
                db.executescript(
                    "BEGIN IMMEDIATE;" + _TABLES
                    + f"INSERT OR IGNORE INTO meta VALUES ('app', 'microdag'), ('schema', '{SCHEMA}');"
                    + "COMMIT;"
                )
            except sqlite3.OperationalError as exc:
                raise StoreError(f"cannot create store {self.path!r}: {exc}") from None

    # -- writing ---------------------------------------------------------------------

    def _write(self, sql: str, params: "tuple[Any, ...]") -> None:
        import sqlite3

        try:
            with self._lock:
                self._db.execute(sql, params)
        except sqlite3.OperationalError as exc:
            raise StoreError(f"cannot write to store {self.path!r}: {exc}") from None

    def begin(self, info: RunInfo) -> None:
        import sqlite3

        inputs = self.encode(info.inputs, "the run's inputs")
        try:
            self._write(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (info.id, info.flow, info.fingerprint, inputs, info.status, info.started, info.finished),
            )
        except sqlite3.IntegrityError:
            raise StoreError(f"a run with id {info.id!r} is already in store {self.path!r}") from None

    def save(self, run_id: str, records: "Iterable[TaskRecord]") -> None:
        with self._lock:
            for r in records:
                output, ref = r.output, None
                if output is not None and len(output) >= BLOB_SIZE:
                    ref = self._put_blob(output)
                    output = None
                self._seq += 1
                self._pending.append(
                    (run_id, r.step, r.item, self._seq, r.status, r.attempts, r.started, r.finished,
                     r.error_type, r.error_message, r.traceback, output, ref)
                )
            if len(self._pending) >= GROUP:
                self._commit()

    def _commit(self) -> None:
        import sqlite3

        if not self._pending:
            return
        try:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_UPSERT, self._pending)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"cannot write to store {self.path!r}: {exc}") from None
        self._pending.clear()

    def flush(self) -> None:
        with self._lock:
            self._commit()

    def finish(self, run_id: str, status: str, finished: "float | None") -> None:
        with self._lock:
            self._commit()
            self._write("UPDATE runs SET status = ?, finished = ? WHERE id = ?", (status, finished, run_id))

    def _put_blob(self, data: bytes) -> str:
        digest = self.digest(data)
        folder = os.path.join(self.blobs, digest[:2])
        path = os.path.join(folder, digest)
        if not os.path.exists(path):
            os.makedirs(folder, exist_ok=True)
            write_atomic(path, data)
        return digest

    # -- reading -----------------------------------------------------------------------

    def run_info(self, run_id: str) -> RunInfo:
        with self._lock:
            row = self._db.execute(
                "SELECT id, flow, fingerprint, inputs, status, started, finished FROM runs WHERE id = ?",
                (run_id,),
            ).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id!r} in store {self.path!r}")
        return RunInfo(row[0], row[1], row[2], self.decode(row[3]), row[4], row[5], row[6])

    def tasks(self, run_id: str) -> "list[TaskRecord]":
        self.run_info(run_id)
        with self._lock:
            self._commit()
            rows = self._db.execute(
                "SELECT step, item, status, attempts, started, finished, error_type, error_message,"
                " traceback, output, output_ref FROM tasks WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
        out = []
        for row in rows:
            output = row[9]
            if row[10] is not None:
                with open(os.path.join(self.blobs, row[10][:2], row[10]), "rb") as f:
                    output = f.read()
            step, item, status, attempts, started, finished, etype, emsg, tb = row[:9]
            out.append(TaskRecord(
                step, item, status, attempts, started, finished, etype, emsg, tb,
                None if output is None else bytes(output),
            ))
        return out

    def list_runs(self, flow: "str | None" = None, limit: "int | None" = None) -> "list[RunInfo]":
        sql = "SELECT id, flow, fingerprint, inputs, status, started, finished FROM runs"
        params: tuple[Any, ...] = ()
        if flow is not None:
            sql += " WHERE flow = ?"
            params = (flow,)
        sql += " ORDER BY started DESC, id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [RunInfo(r[0], r[1], r[2], self.decode(r[3]), r[4], r[5], r[6]) for r in rows]

    def prune(self, older_than: "float | None" = None, keep_last: "int | None" = None) -> int:
        from ._memory import _doomed

        doomed = _doomed(self.list_runs(), older_than, keep_last)
        with self._lock:
            self._commit()
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            for run_id in doomed:
                db.execute("DELETE FROM tasks WHERE run_id = ?", (run_id,))
                db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            used = {row[0] for row in db.execute("SELECT output_ref FROM tasks WHERE output_ref IS NOT NULL")}
            db.execute("COMMIT")
        if os.path.isdir(self.blobs):
            for folder in os.listdir(self.blobs):
                for name in os.listdir(os.path.join(self.blobs, folder)):
                    if name not in used:
                        os.remove(os.path.join(self.blobs, folder, name))
        return len(doomed)

    def run_dir(self, run_id: str) -> str:
        return os.path.join(self.path + ".work", run_id)

    def close(self) -> None:
        with self._lock:
            self._commit()
            self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
