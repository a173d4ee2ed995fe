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
Saved task records are buffered and committed together (group commit):
as soon as the successes among them hold ``WORK_SECONDS`` (0.1 s) of step
time, every :data:`GROUP` records, :data:`GROUP_SECONDS` after the oldest
one, and always by ``flush``/``finish``; so a crash loses at most 0.1 s of
finished work (or the last ``GROUP`` tiny steps), which a resume runs again,
and a step that ran 0.1 s or more is committed before ``save`` returns.
Encoded outputs of 64 KiB and more go to ``<file>.blobs/``, one file per
SHA-256, written atomically.

Opening (``_sqlite_file``) checks the file before changing anything: a file
that is not SQLite, an SQLite database of another application, or a newer
schema is refused with a :class:`StoreError`, and left as it was.
"""

import os
import threading
import time

from .._errors import StoreError
from .._nogc import NoGC
from .._records import RunInfo, TaskRecord, check_run_id, check_task
from ._base import WORK_SECONDS, Store, _CommitTimer
from ._files import BLOB_SIZE, doomed, drop_blobs, drop_folders, put_blob, read_blob
from ._sqlite_file import SCHEMA, connect
from ._sqlite_rows import UPSERT, _code_of, _code_text, _records, _s, _successes, _t

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from ._base import Successes
    from ._sqlite_queue import SQLiteQueue

#: Task records buffered before a commit...
GROUP = 1024
#: ...or seconds the oldest buffered record may wait.
GROUP_SECONDS = 0.5

#: A run's columns, in the order ``_info`` reads them.
_RUN_COLUMNS = "id, flow, fingerprint, inputs, status, started, finished, source"


class SQLiteStore(Store):
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
        self._lock = threading.RLock()
        self._pending: list[tuple[Any, ...]] = []
        self._pending_logs: list[tuple[Any, ...]] = []
        self._pending_graphs: list[tuple[str, str]] = []
        self._pending_attempts: list[tuple[Any, ...]] = []
        self._since = 0.0  # when the oldest pending record was saved
        self._work = 0.0  # seconds of step time the pending records hold
        self._timer = _CommitTimer(self.flush, GROUP_SECONDS)
        # readonly: opened for reading only, as asked or because the file or its folder cannot be written
        self._db, self.readonly, self.codec = connect(self.path, timeout, readonly, codec)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(runs)")}
        self._code = "code" if "code" in columns else "NULL"  # (an older store opened read-only)
        # Task order across store objects and processes: a clock-based sequence.
        self._seq = 0

    # -- writing ---------------------------------------------------------------------

    def _write(self, sql: str, params: "tuple[Any, ...]") -> None:
        import sqlite3  # (import time: sqlite3 loads on first use)

        try:
            with self._lock:
                self._db.execute(sql, params)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot write to store {self.path!r}: {exc}") from None

    def begin(self, info: RunInfo) -> None:
        import sqlite3  # (import time: sqlite3 loads on first use)

        check_run_id(info.id)
        inputs = self.encode(info.inputs, "the run's inputs")
        try:
            self._transaction([
                (
                    "INSERT INTO runs (id, flow, fingerprint, inputs, status, started, finished, source, code)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (_t(info.id), _t(info.flow), info.fingerprint, inputs, info.status, info.started,
                     info.finished, _t(info.source), _code_text(info.code)),
                ),
                ("INSERT OR REPLACE INTO owners VALUES (?, ?)", (_t(info.id), self._new_claim(info.id))),
            ])
        except sqlite3.IntegrityError:
            raise StoreError(f"a run with id {info.id!r} is already in store {self.path!r}") from None

    def _transaction(self, statements: "list[tuple[str, tuple[Any, ...]]]") -> None:
        """Run ``statements`` in one transaction (one fsync), with what is pending."""
        import sqlite3  # (import time: sqlite3 loads on first use)

        with self._lock:
            try:
                self._commit(statements)
            except sqlite3.IntegrityError:
                raise
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"cannot write to store {self.path!r}: {exc}") from None

    def save(self, run_id: str, records: "Iterable[TaskRecord]") -> None:
        with self._lock:
            if not self._pending:  # (a group of records open: nothing to check per record)
                self._pend()
            key = _t(run_id)
            for r in records:
                output, ref = r.output, None
                if output is not None and len(output) >= BLOB_SIZE:
                    ref = self._put_blob(output)
                    output = None
                self._seq = max(self._seq + 1, time.time_ns())
                step, status = r.step, r.status
                if not (step.isascii() and status.isascii()):
                    step, status = _t(step), _t(status)
                etype, emsg, tb = r.error_type, r.error_message, r.traceback
                if emsg is not None or etype is not None or tb is not None:
                    etype, emsg, tb = _t(etype), _t(emsg), _t(tb)
                self._pending.append(
                    (key, step, r.item, self._seq, status, r.attempts, r.started, r.finished, etype, emsg, tb,
                     output, ref)
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

    def _commit(self, statements: "list[tuple[str, tuple[Any, ...]]] | None" = None) -> None:
        """Commit what is pending, and ``statements`` after it, in one transaction.

        An ``IntegrityError`` of ``statements`` passes through (the caller
        says what it means); other database errors become :class:`StoreError`.
        """
        import sqlite3  # (import time: sqlite3 loads on first use)

        if not (self._pending or self._pending_logs or self._pending_graphs or self._pending_attempts
                or statements):
            return
        try:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(UPSERT, self._pending)
                db.executemany("INSERT OR REPLACE INTO logs VALUES (?, ?, ?, ?, ?)", self._pending_logs)
                db.executemany("INSERT OR IGNORE INTO graphs VALUES (?, ?)", self._pending_graphs)
                db.executemany("INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               self._pending_attempts)
                for sql, params in statements or ():
                    db.execute(sql, params)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot write to store {self.path!r}: {exc}") from None
        self._pending.clear()
        self._work = 0.0
        self._pending_logs.clear()
        self._pending_graphs.clear()
        self._pending_attempts.clear()

    def flush(self) -> None:
        with self._lock:
            self._commit()

    def finish(self, run_id: str, status: str, finished: "float | None") -> None:
        import sqlite3  # (import time: sqlite3 loads on first use)

        try:
            with self._lock:  # begin committed the run's row: nothing to commit before looking
                known = self._db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read store {self.path!r}: {exc}") from None
        if known is None:
            raise StoreError(f"no run {run_id!r} in store {self.path!r}")
        statements: list[tuple[str, tuple[Any, ...]]] = [
            ("UPDATE runs SET status = ?, finished = ? WHERE id = ?", (status, finished, _t(run_id)))
        ]
        if status != "running":  # its end: this process lets go of it in the same commit
            token = self._claims.get(run_id)
            if token is not None:
                statements.append(("DELETE FROM owners WHERE run_id = ? AND owner = ?", (_t(run_id), token)))
        try:
            self._transaction(statements)
        except StoreError:  # a full disk: the end is kept without what is pending, as after a crash
            if status == "running":
                raise
            with self._lock:
                self._pending.clear()
                self._pending_logs.clear()
                self._pending_attempts.clear()
                self._work = 0.0
                self._transaction(statements)
            raise

    def _put_blob(self, data: bytes) -> str:
        return put_blob(self.blobs, data, self.path)

    # -- reading -----------------------------------------------------------------------

    def _read(self, sql: str, params: "tuple[Any, ...]" = ()) -> "list[Any]":
        import sqlite3  # (import time: sqlite3 loads on first use)

        try:
            with self._lock:
                self._commit()
                return self._db.execute(sql, tuple(map(_t, params))).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read store {self.path!r}: {exc}") from None

    def _info(self, row: "tuple[Any, ...]") -> RunInfo:
        """A ``runs`` row as a :class:`RunInfo`, checked (``ValueError`` names what is wrong)."""
        run_id, flow, fingerprint, inputs, status, started, finished, source, code = map(_s, row)
        if not all(type(v) is str for v in (run_id, flow, fingerprint, status)):
            raise ValueError("its id, flow, fingerprint or status is not text")
        if type(started) not in (int, float) or (finished is not None and type(finished) not in (int, float)):
            raise ValueError("its start or finish is not a time")
        if isinstance(inputs, str):  # JSON text written by hand or by another tool
            inputs = inputs.encode()
        if not isinstance(inputs, bytes):
            raise ValueError("its inputs are not encoded data")
        try:
            values = self.decode(inputs)
        except Exception as exc:
            raise ValueError(f"its inputs cannot be decoded with the {self.codec} codec ({exc})") from None
        if not isinstance(values, dict):
            raise ValueError("its inputs are not a mapping")
        return RunInfo(run_id, flow, fingerprint, values, status, started, finished,
                       source if type(source) is str else None, code=_code_of(code))

    def run_info(self, run_id: str) -> RunInfo:
        rows = self._read(
            f"SELECT {_RUN_COLUMNS}, {self._code} FROM runs WHERE id = ?",
            (run_id,),
        )
        if not rows:
            raise StoreError(f"no run {run_id!r} in store {self.path!r}")
        try:
            return self._info(rows[0])
        except ValueError as exc:
            raise StoreError(f"run {run_id!r} in store {self.path!r} is damaged: {exc}") from None

    def _blob(self, ref: object, run_id: str, step: str, item: int) -> bytes:
        if type(ref) is not str or len(ref) != 64:
            raise StoreError(f"{self._where(run_id, step, item)} is damaged: its blob reference is {ref!r}")
        return read_blob(self.blobs, ref, self._where(run_id, step, item))

    def tasks(self, run_id: str, outputs: bool = True) -> "list[TaskRecord]":
        self.run_info(run_id)
        columns = "output, output_ref" if outputs else "NULL, NULL"
        with NoGC():  # (a big run's million rows and records)
            rows = self._read(
                "SELECT step, item, status, attempts, started, finished, error_type, error_message,"
                f" traceback, {columns} FROM tasks WHERE run_id = ? ORDER BY seq",
                (run_id,),
            )
            return _records(rows, lambda row: self._record(run_id, row))

    def _record(self, run_id: str, row: "tuple[Any, ...]") -> TaskRecord:
        """A ``tasks`` row (step ... traceback, output, output_ref) as a checked :class:`TaskRecord`."""
        row = (_s(row[0]), row[1], _s(row[2]), *row[3:6], _s(row[6]), _s(row[7]), _s(row[8]), *row[9:])
        step, item = row[0], row[1]
        output = row[9]
        if row[10] is not None:
            output = self._blob(row[10], run_id, str(step), item if type(item) is int else -1)
        try:
            _, _, status, attempts, started, finished, etype, emsg, tb = row[:9]
            return check_task(step, item, status, attempts, started, finished, etype, emsg, tb, output)
        except ValueError as exc:
            raise StoreError(
                f"the record of step {step!r} (item {item!r}) of run {run_id!r} in store "
                f"{self.path!r} is damaged: {exc}"
            ) from None

    def task_summary(self, run_id: str, first: int, worst: int) -> "tuple[dict[str, int], list[TaskRecord]]":
        self.run_info(run_id)
        counts = {_s(status): n for status, n in self._read(
            "SELECT status, COUNT(*) FROM tasks WHERE run_id = ? GROUP BY status", (run_id,))}
        columns = ("seq, step, item, status, attempts, started, finished, error_type, error_message, traceback,"
                   " output, output_ref")
        rows = self._read(f"SELECT {columns} FROM tasks WHERE run_id = ? ORDER BY seq LIMIT ?", (run_id, first))
        if counts.get("failed") or counts.get("cancelled"):
            rows += self._read(
                f"SELECT {columns} FROM tasks WHERE run_id = ? AND status IN ('failed', 'cancelled')"
                " ORDER BY seq LIMIT ?", (run_id, worst))
        picked = {row[0]: row[1:] for row in rows}
        return counts, [self._record(run_id, picked[seq]) for seq in sorted(picked)]

    def output(self, run_id: str, step: str, item: int = -1) -> "Any":
        rows = self._read(
            "SELECT output, output_ref FROM tasks WHERE run_id = ? AND step = ? AND item = ?",
            (run_id, step, item),
        )
        row = rows[0] if rows else None
        if row is None or (row[0] is None and row[1] is None):
            self.run_info(run_id)  # StoreError for an unknown run
            raise KeyError(f"run {run_id} has no stored output for step {step!r}")
        data = self._blob(row[1], run_id, step, item) if row[1] is not None else row[0]
        if not isinstance(data, bytes):
            raise StoreError(f"{self._where(run_id, step, item)} is damaged: it is not encoded data")
        return self._decoded(data, self._where(run_id, step, item))

    def save_logs(self, run_id: str, step: str, item: int, attempt: int, text: str) -> None:
        with self._lock:
            self._pend()
            self._pending_logs.append((_t(run_id), _t(step), item, attempt, _t(text)))

    def save_attempt(
        self, run_id: str, step: str, item: int, attempt: int, started: float, finished: float,
        error_type: str, error_message: str,
    ) -> None:
        with self._lock:
            self._pend()
            self._pending_attempts.append(
                (_t(run_id), _t(step), item, attempt, started, finished, _t(error_type), _t(error_message))
            )

    def attempts(self, run_id: str) -> "list[tuple[str, int, int, float, float, str, str]]":
        self.run_info(run_id)
        rows = self._read(
            "SELECT step, item, attempt, started, finished, error_type, error_message FROM attempts"
            " WHERE run_id = ? ORDER BY step, item, attempt",
            (run_id,),
        )
        return [tuple(map(_s, row)) for row in rows]

    def attempt_logs(self, run_id: str, step: str, item: int) -> "list[tuple[int, str]]":
        rows = self._read(
            "SELECT attempt, text FROM logs WHERE run_id = ? AND step = ? AND item = ? ORDER BY attempt",
            (run_id, step, item),
        )
        return [(a, _s(t)) for a, t in rows]

    def _logged(self, run_id: str, tasks: "Iterable[tuple[str, int]]") -> "set[tuple[str, int]]":
        found = {(_s(s), i) for s, i in self._read("SELECT DISTINCT step, item FROM logs WHERE run_id = ?", (run_id,))}
        return found.intersection(tasks)

    def owner(self, run_id: str) -> "str | None":
        self.run_info(run_id)
        rows = self._read("SELECT owner FROM owners WHERE run_id = ?", (run_id,))
        return None if not rows else _s(rows[0][0])

    def _update_owner(
        self, run_id: str, change: "Callable[[str | None], str | None]"
    ) -> "tuple[str | None, str | None]":
        import sqlite3  # (import time: sqlite3 loads on first use)

        self.run_info(run_id)
        try:
            with self._lock:
                self._commit()
                db = self._db
                db.execute("BEGIN IMMEDIATE")  # one claimant at a time, across processes
                try:
                    row = db.execute("SELECT owner FROM owners WHERE run_id = ?", (_t(run_id),)).fetchone()
                    before = None if row is None else row[0]
                    after = change(before)
                    if after is None:
                        db.execute("DELETE FROM owners WHERE run_id = ?", (_t(run_id),))
                    elif after != before:
                        db.execute("INSERT OR REPLACE INTO owners VALUES (?, ?)", (_t(run_id), after))
                finally:
                    db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot write to store {self.path!r}: {exc}") from None
        return before, after

    def cache_get(self, key: str) -> "tuple[bytes, float] | None":
        rows = self._read("SELECT output, output_ref, created FROM cache WHERE key = ?", (key,))
        if not rows:
            return None
        data, ref, created = rows[0]
        if ref is not None:
            try:
                data = read_blob(self.blobs, ref, "a cached output")
            except (StoreError, TypeError):  # pruned or damaged: a miss
                return None
        if not isinstance(data, bytes) or type(created) not in (int, float):
            return None  # damaged: a miss
        return data, created

    def cache_put(self, key: str, output: bytes, created: float) -> None:
        ref = None
        if len(output) >= BLOB_SIZE:
            ref = self._put_blob(output)
            output = None  # type: ignore[assignment]
        with self._lock:
            self._commit()
            self._write("INSERT OR REPLACE INTO cache VALUES (?, ?, ?, ?)", (key, output, ref, created))

    def outputs(self, run_id: str, steps: "Iterable[str]") -> "dict[str, Any]":
        wanted = list(steps)
        out: dict[str, Any] = {}
        for lo in range(0, len(wanted), 500):
            chunk = wanted[lo : lo + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._read(
                "SELECT step, output, output_ref FROM tasks"
                f" WHERE run_id = ? AND item = -1 AND step IN ({marks})",
                (run_id, *chunk),
            )
            for step, data, ref in rows:
                step = _s(step)
                if ref is not None:
                    data = self._blob(ref, run_id, step, -1)
                if data is not None:
                    out[step] = self._decoded(bytes(data), self._where(run_id, step))
        return out

    def succeeded(self, run_id: str) -> "dict[str, tuple[int, float | None, float | None]]":
        steps, attempts, started, finished = self._succeeded_columns(run_id)
        return dict(zip(steps, zip(attempts, started, finished)))

    def _succeeded_columns(self, run_id: str) -> "Successes":
        self.run_info(run_id)
        with NoGC():  # (a resume reads every success of a big run here: checked a column at a time)
            rows = self._read(
                "SELECT step, attempts, started, finished FROM tasks"
                " WHERE run_id = ? AND item = -1 AND status = 'succeeded'",
                (run_id,),
            )
            return _successes(rows, lambda step: f"the record of step {step!r} of run {run_id!r} in store "
                                                 f"{self.path!r} is damaged")

    def succeeded_count(self, run_id: str) -> int:
        self.run_info(run_id)
        return int(self._read("SELECT COUNT(*) FROM tasks WHERE run_id = ? AND item = -1 AND status = 'succeeded'",
                              (run_id,))[0][0])

    def list_runs(self, flow: "str | None" = None, limit: "int | None" = None) -> "list[RunInfo]":
        sql = f"SELECT {_RUN_COLUMNS}, {self._code} FROM runs"
        params: tuple[Any, ...] = ()
        if flow is not None:
            sql += " WHERE flow = ?"
            params = (flow,)
        sql += " ORDER BY started DESC, id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self._read(sql, params)
        runs = []
        for row in rows:
            try:
                runs.append(self._info(row))
            except ValueError as exc:
                run_id = row[0] if type(row[0]) is str else repr(row[0])
                started = row[5] if type(row[5]) in (int, float) else 0.0
                runs.append(RunInfo.damaged(run_id, f"run {run_id!r} in store {self.path!r} is damaged: {exc}",
                                            row[1] if type(row[1]) is str else "?", started))
        return runs

    def prune(self, older_than: "float | None" = None, keep_last: "int | None" = None) -> int:
        gone = doomed(self.list_runs(), older_than, keep_last)
        with self._lock:
            self._commit()
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            for run_id in map(_t, gone):
                db.execute("DELETE FROM owners WHERE run_id = ?", (run_id,))
                db.execute("DELETE FROM logs WHERE run_id = ?", (run_id,))
                db.execute("DELETE FROM attempts WHERE run_id = ?", (run_id,))
                db.execute("DELETE FROM tasks WHERE run_id = ?", (run_id,))
                db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            used = {row[0] for row in db.execute("SELECT output_ref FROM tasks WHERE output_ref IS NOT NULL")}
            used |= {row[0] for row in db.execute("SELECT output_ref FROM cache WHERE output_ref IS NOT NULL")}
            db.execute("COMMIT")
        drop_blobs(self.blobs, used, self.list_runs())
        drop_folders(self.run_dir(run_id) for run_id in gone)
        return len(gone)

    def save_graph(self, fingerprint: str, graph: str) -> None:
        with self._lock:  # committed with the next records
            self._pend()
            self._pending_graphs.append((fingerprint, graph))

    def graph(self, fingerprint: str) -> "dict[str, Any] | None":
        import json  # (import time: json loads on first use)

        rows = self._read("SELECT graph FROM graphs WHERE fingerprint = ?", (fingerprint,))
        return json.loads(rows[0][0]) if rows else None

    def queue(self) -> "SQLiteQueue":
        from ._sqlite_queue import SQLiteQueue  # (runs shared with workers only)

        return SQLiteQueue(self)

    def run_dir(self, run_id: str) -> str:
        return os.path.join(self.path + ".work", check_run_id(run_id))

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._commit()
            self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"
