"""What the SQL stores share: the tables' use, group commit, claims and prune.

:class:`SQLStore` is the store over a database with the tables of
``_sqlite_file`` (SQLite) or ``_postgres_schema`` (PostgreSQL): the same
names, columns and keys, so one SQL text serves both (``?`` marks the
parameters; the PostgreSQL connection rewrites them).  A subclass gives the
connection (``_db``: ``execute`` and ``executemany``, as :mod:`sqlite3` has
them), how a transaction begins (``_BEGIN``), its database's errors
(:meth:`SQLStore._errors`), how text goes in and comes out (``_t``, ``_s``,
``_texts``: ``_sqlite_rows``), where big outputs are kept
(:meth:`SQLStore._put_blob`, :meth:`SQLStore._read_blob`,
:meth:`SQLStore._drop_blobs`), and, where a connection can drop,
:meth:`SQLStore._reconnect`.

Saved task records are buffered and committed together (group commit):
as soon as the successes among them hold ``WORK_SECONDS`` (0.1 s) of step
time, every :data:`GROUP` records, :data:`GROUP_SECONDS` after the oldest
one, and always by ``flush``/``finish``; so a crash loses at most 0.1 s of
finished work (or the last ``GROUP`` tiny steps), which a resume runs again,
and a step that ran 0.1 s or more is committed before ``save`` returns.
"""

import threading
import time

from .._context import default_run_dir
from .._errors import StoreError
from .._records import RunInfo, TaskRecord, check_run_id
from ._base import WORK_SECONDS, _CommitTimer
from ._files import BLOB_SIZE, doomed, drop_folders
from ._sql_read import SQLReader
from ._sqlite_rows import _code_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

__all__ = ["ATTEMPTS", "GRAPHS", "GROUP", "GROUP_SECONDS", "LOGS", "OWNERS", "SQLStore", "TASK_UPDATES"]

#: Task records buffered before a commit...
GROUP = 1024
#: ...or seconds the oldest buffered record may wait.
GROUP_SECONDS = 0.5

#: What a later record of a task replaces (its ``seq``, the order it was first saved in, stays).
TASK_UPDATES = """ON CONFLICT (run_id, step, item) DO UPDATE SET
    status = excluded.status, attempts = excluded.attempts, started = excluded.started,
    finished = excluded.finished, error_type = excluded.error_type,
    error_message = excluded.error_message, traceback = excluded.traceback,
    output = excluded.output, output_ref = excluded.output_ref, key = excluded.key,
    waited = excluded.waited"""
_UPSERT = f"""
INSERT INTO tasks (run_id, step, item, seq, status, attempts, started, finished,
                   error_type, error_message, traceback, output, output_ref, key, waited)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
{TASK_UPDATES}
"""
#: What an attempt printed, kept (or replaced).
LOGS = ("INSERT INTO logs VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (run_id, step, item, attempt) DO UPDATE SET text = excluded.text")
#: A flow's structure (or an added step's recipe), kept once per key.
GRAPHS = "INSERT INTO graphs VALUES (?, ?) ON CONFLICT (fingerprint) DO NOTHING"
#: A retried (or lost) attempt, kept (or replaced).
ATTEMPTS = ("INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, step, item, attempt)"
            " DO UPDATE SET started = excluded.started, finished = excluded.finished,"
            " error_type = excluded.error_type, error_message = excluded.error_message")
#: A run's claim, taken or moved.
OWNERS = "INSERT INTO owners VALUES (?, ?) ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner"
_CACHE = ("INSERT INTO cache VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
          " output = excluded.output, output_ref = excluded.output_ref, created = excluded.created")


class SQLStore(SQLReader):
    """A store over SQL tables; subclasses connect (see the module docs).  Its
    reading half is :class:`~._sql_read.SQLReader`."""

    #: How a writing transaction begins.
    _BEGIN = "BEGIN"
    #: Whether ASCII text binds as it is (``_t`` needs to see only the rest).
    _ASCII_SAFE = True

    def __init__(self, codec: "str | None") -> None:
        super().__init__(codec)
        self._lock = threading.RLock()
        self._pending: list[tuple[Any, ...]] = []
        self._pending_logs: list[tuple[Any, ...]] = []
        self._pending_graphs: list[tuple[str, str]] = []
        self._pending_attempts: list[tuple[Any, ...]] = []
        self._since = 0.0  # when the oldest pending record was saved
        self._work = 0.0  # seconds of step time the pending records hold
        self._timer = _CommitTimer(self.flush, GROUP_SECONDS)
        # Task order across store objects and processes: a clock-based sequence.
        self._seq = 0

    # -- what a database gives ---------------------------------------------------------

    def _put_blob(self, data: bytes) -> str:
        """Keep a big encoded output (by the time the records naming it are committed); its reference."""
        raise NotImplementedError

    def _drop_blobs(self, db: "Any") -> "Callable[[], None]":
        """Inside prune's transaction: drop (or note) the blobs no record names; what to do after the commit."""
        raise NotImplementedError

    def _upsert_tasks(self, db: "Any", rows: "list[tuple[Any, ...]]") -> None:
        """Write the pending task rows (inside the commit's transaction)."""
        db.executemany(_UPSERT, rows)

    def _before_writes(self, db: "Any") -> None:
        """Inside a writing transaction, before what is pending is written."""

    # -- transactions ------------------------------------------------------------------

    def _in_transaction(self, work: "Callable[[Any], Any]") -> "Any":
        """``work(db)`` in one writing transaction (retried once on a dropped connection)."""

        def once() -> "Any":
            db = self._db
            db.execute(self._BEGIN)
            try:
                result = work(db)
            except BaseException:
                try:
                    db.execute("ROLLBACK")
                except Exception:
                    pass  # (a dropped connection rolled it back)
                raise
            db.execute("COMMIT")
            return result

        return self._retrying(once)

    def _writing(self, work: "Callable[[Any], Any]") -> "Any":
        """``work(db)`` in a transaction of its own, after what is pending is
        committed; a database error (but an ``IntegrityError``, which the
        caller says the meaning of) becomes a :class:`StoreError`."""
        database_error, integrity_error = self._errors()
        try:
            with self._lock:
                if self._has_pending():
                    self._commit()
                return self._in_transaction(work)
        except integrity_error:
            raise
        except database_error as exc:
            raise StoreError(f"cannot write to store {self.path!r}: {exc}") from None

    def begin(self, info: RunInfo) -> None:
        _, integrity_error = self._errors()
        check_run_id(info.id)
        inputs = self.encode(info.inputs, "the run's inputs")
        t = self._t
        try:
            self._transaction([
                (
                    "INSERT INTO runs (id, flow, fingerprint, inputs, status, started, finished, source, code,"
                    " limits) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (t(info.id), t(info.flow), info.fingerprint, inputs, info.status, info.started,
                     info.finished, t(info.source), _code_text(info.code), _code_text(info.limits)),
                ),
                (OWNERS, (t(info.id), self._new_claim(info.id))),
            ])
        except integrity_error:
            self._claims.pop(info.id, None)
            raise StoreError(f"a run with id {info.id!r} is already in store {self.path!r}") from None

    def _transaction(self, statements: "list[tuple[str, tuple[Any, ...]]]") -> None:
        """Run ``statements`` in one transaction (one fsync), with what is pending."""
        with self._lock:
            self._commit(statements)

    def save(self, run_id: str, records: "Iterable[TaskRecord]") -> None:
        with self._lock:
            if not self._pending:  # (a group of records open: nothing to check per record)
                self._pend()
            t = self._t
            key = t(run_id)
            for r in records:
                output, ref = r.output, None
                if output is not None and len(output) >= BLOB_SIZE:
                    ref = self._put_blob(output)
                    output = None
                self._seq = max(self._seq + 1, time.time_ns())
                step, status = r.step, r.status
                if not (step.isascii() and status.isascii() and self._ASCII_SAFE):
                    step, status = t(step), t(status)
                etype, emsg, tb = r.error_type, r.error_message, r.traceback
                if emsg is not None or etype is not None or tb is not None:
                    etype, emsg, tb = t(etype), t(emsg), t(tb)
                self._pending.append(
                    (key, step, r.item, self._seq, status, r.attempts, r.started, r.finished, etype, emsg, tb,
                     output, ref, r.key if r.key is None else t(r.key), r.waited)
                )
                if status == "succeeded" and r.started is not None and r.finished is not None:
                    self._work += r.finished - r.started  # (the work lost if this record were)
            if (self._work >= WORK_SECONDS or len(self._pending) >= GROUP
                    or time.monotonic() - self._since >= GROUP_SECONDS):
                self._commit()

    def _pend(self) -> None:
        """About to buffer something (the caller holds the lock): if nothing
        waits yet, it is the oldest, which the group commit's clock and the
        commit timer start from."""
        if not (self._pending or self._pending_logs or self._pending_graphs or self._pending_attempts):
            self._since = time.monotonic()
            self._timer.arm()

    def _has_pending(self) -> bool:
        return bool(self._pending or self._pending_logs or self._pending_graphs or self._pending_attempts)

    def _commit(self, statements: "list[tuple[str, tuple[Any, ...]]] | None" = None) -> None:
        """Commit what is pending, and ``statements`` after it, in one transaction.

        An ``IntegrityError`` of ``statements`` passes through (the caller
        says what it means); other database errors become :class:`StoreError`.
        """
        database_error, integrity_error = self._errors()
        if not (self._has_pending() or statements):
            return

        def write(db: "Any") -> None:
            self._before_writes(db)
            if self._pending:
                self._upsert_tasks(db, self._pending)
            if self._pending_logs:
                db.executemany(LOGS, self._pending_logs)
            if self._pending_graphs:
                db.executemany(GRAPHS, self._pending_graphs)
            if self._pending_attempts:
                db.executemany(ATTEMPTS, self._pending_attempts)
            for sql, params in statements or ():
                db.execute(sql, params)

        try:
            self._in_transaction(write)
        except integrity_error:
            raise
        except database_error as exc:
            raise StoreError(f"cannot write to store {self.path!r}: {exc}") from None
        self._pending.clear()
        self._work = 0.0
        self._pending_logs.clear()
        self._pending_graphs.clear()
        self._pending_attempts.clear()
        self._committed()

    def _committed(self) -> None:
        """What is pending was committed (a store that buffers more lets go of it)."""

    def _drop_pending(self) -> None:
        """Forget what is pending (a full disk: lost, as in a crash)."""
        self._pending.clear()
        self._pending_logs.clear()
        self._pending_attempts.clear()
        self._work = 0.0

    def flush(self) -> None:
        with self._lock:
            self._commit()

    def finish(self, run_id: str, status: str, finished: "float | None") -> None:
        if not self._read("SELECT 1 FROM runs WHERE id = ?", (run_id,), commit=False):
            raise StoreError(f"no run {run_id!r} in store {self.path!r}")
        t = self._t
        statements: list[tuple[str, tuple[Any, ...]]] = [
            ("UPDATE runs SET status = ?, finished = ? WHERE id = ?", (status, finished, t(run_id)))
        ]
        if status != "running":  # its end: this process lets go of it in the same commit
            token = self._claims.get(run_id)
            if token is not None:
                statements.append(("DELETE FROM owners WHERE run_id = ? AND owner = ?", (t(run_id), token)))
        try:
            self._transaction(statements)
        except StoreError:  # a full disk: the end is kept without what is pending, as after a crash
            if status == "running":
                raise
            with self._lock:
                self._drop_pending()
                self._transaction(statements)
            raise

    def _lock_owner(self, db: "Any", run_id: str) -> None:
        """Inside :meth:`_update_owner`'s transaction: one claimant of ``run_id`` at a time."""

    def save_logs(self, run_id: str, step: str, item: int, attempt: int, text: str) -> None:
        t = self._t
        with self._lock:
            self._pend()
            self._pending_logs.append((t(run_id), t(step), item, attempt, t(text)))

    def save_attempt(
        self, run_id: str, step: str, item: int, attempt: int, started: float, finished: float,
        error_type: str, error_message: str,
    ) -> None:
        t = self._t
        with self._lock:
            self._pend()
            self._pending_attempts.append(
                (t(run_id), t(step), item, attempt, started, finished, t(error_type), t(error_message))
            )

    def _update_owner(
        self, run_id: str, change: "Callable[[str | None], str | None]"
    ) -> "tuple[str | None, str | None]":
        self.run_info(run_id)
        key = self._t(run_id)

        def update(db: "Any") -> "tuple[str | None, str | None]":
            self._lock_owner(db, run_id)
            row = db.execute("SELECT owner FROM owners WHERE run_id = ?", (key,)).fetchone()
            before = None if row is None else row[0]
            after = change(before)
            if after is None:
                db.execute("DELETE FROM owners WHERE run_id = ?", (key,))
            elif after != before:
                db.execute(OWNERS, (key, after))
            return before, after

        return self._writing(update)  # type: ignore[no-any-return]

    def cache_put(self, key: str, output: bytes, created: float) -> None:
        with self._lock:
            ref = None
            if len(output) >= BLOB_SIZE:
                ref = self._put_blob(output)
                output = None  # type: ignore[assignment]
            self._transaction([(_CACHE, (key, output, ref, created))])

    def prune(self, older_than: "float | None" = None, keep_last: "int | None" = None) -> int:
        gone = doomed(self.list_runs(), older_than, keep_last)

        def delete(db: "Any") -> "Callable[[], None]":
            for run_id in map(self._t, gone):
                db.execute("DELETE FROM owners WHERE run_id = ?", (run_id,))
                db.execute("DELETE FROM logs WHERE run_id = ?", (run_id,))
                db.execute("DELETE FROM attempts WHERE run_id = ?", (run_id,))
                db.execute("DELETE FROM tasks WHERE run_id = ?", (run_id,))
                db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            return self._drop_blobs(db)

        after = self._writing(delete)
        after()
        self._pruned(gone)
        return len(gone)

    def _pruned(self, gone: "list[str]") -> None:
        """After prune: the runs ``gone`` were deleted (their work folders go)."""
        drop_folders(self.run_dir(run_id) or default_run_dir(run_id) for run_id in gone)

    def save_graph(self, fingerprint: str, graph: str) -> None:
        with self._lock:  # committed with the next records
            self._pend()
            self._pending_graphs.append((fingerprint, graph))

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._commit()
            self._db.close()
