"""What the SQL stores read: rows read back as checked records.

:class:`SQLReader` is the reading half of ``_sql.SQLStore`` (the store over
the tables both SQL stores share): every query a report, ``show``, the UI or
a resume makes, and the checks that turn a row into a :class:`RunInfo` or a
:class:`TaskRecord` (a damaged row is a :class:`StoreError` naming run, step
and store; a damaged run is listed as ``damaged``).  Reading commits what
the store object buffered first, so that it reads its own saves.  The
database's errors, its text rule and where it keeps big outputs are the
store's (``_sqlite``, ``_postgres``).
"""

from .._errors import StoreError
from .._nogc import NoGC
from .._records import RunInfo, TaskRecord, check_task, limits_of
from ._base import Store
from ._sqlite_rows import _code_of, _records, _s, _successes, _t, _texts

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

    from .._typed import Converter

    from ._base import Successes

__all__ = ["SQLReader"]

#: A run's columns, in the order ``_info`` reads them.
_RUN_COLUMNS = "id, flow, fingerprint, inputs, status, started, finished, source"


class _Lost(Exception):
    """Never raised: what a store whose connection cannot drop retries on."""


class SQLReader(Store):
    """The reading half of an SQL store (see the module docs)."""

    #: The ``code`` and ``limits`` columns of ``runs``, and the ``waited``
    #: column of ``tasks`` (``NULL`` for each missing from an older store opened read-only).
    _code = "code, limits"
    _waited = "waited"
    _t = staticmethod(_t)
    _s = staticmethod(_s)
    _texts = staticmethod(_texts)
    _db: "Any"
    _lock: "threading.RLock"
    path: str

    def _commit(self, statements: "list[tuple[str, tuple[Any, ...]]] | None" = None) -> None:
        """Commit what this store object buffered (``SQLStore``)."""
        raise NotImplementedError

    def _errors(self) -> "tuple[type[BaseException], type[BaseException]]":
        """The database's ``(DatabaseError, IntegrityError)`` classes."""
        raise NotImplementedError

    def _lost(self) -> "type[BaseException]":
        """The error of a dropped connection, after which :meth:`_reconnect` and one retry."""
        return _Lost

    def _reconnect(self) -> bool:
        """A new connection in place of a dropped one; ``False`` when the
        connection did not drop (the error was another)."""
        return False

    def _read_blob(self, ref: str, what: str) -> bytes:
        """A big encoded output by its reference; ``StoreError`` naming ``what`` when it cannot be read."""
        raise NotImplementedError

    def _retrying(self, work: "Callable[[], Any]") -> "Any":
        """``work()`` under the lock; once more on a new connection if the connection dropped."""
        lost = self._lost()
        with self._lock:
            try:
                return work()
            except lost:
                if not self._reconnect():
                    raise
                return work()

    def _read(self, sql: str, params: "tuple[Any, ...]" = (), commit: bool = True) -> "list[Any]":
        """The rows of a query, after committing what is pending (unless not ``commit``)."""
        database_error, _ = self._errors()
        t = self._t

        def read() -> "list[Any]":
            if commit:
                self._commit()
            return self._db.execute(sql, tuple(map(t, params))).fetchall()  # type: ignore[no-any-return]

        try:
            return self._retrying(read)  # type: ignore[no-any-return]
        except database_error as exc:
            raise StoreError(f"cannot read store {self.path!r}: {exc}") from None

    def _info(self, row: "tuple[Any, ...]") -> RunInfo:
        """A ``runs`` row as a :class:`RunInfo`, checked (``ValueError`` names what is wrong)."""
        run_id, flow, fingerprint, inputs, status, started, finished, source, code, limits = map(self._s, row)
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
                       source if type(source) is str else None, code=_code_of(code), limits=limits_of(limits))

    def run_info(self, run_id: str) -> RunInfo:
        return self._run_info(run_id)[0]

    def _run_info(self, run_id: str, also: str = "NULL") -> "tuple[RunInfo, Any]":
        """:meth:`run_info`, and the value of the SQL expression ``also`` over
        the run's row, read in the same query (the work queue's)."""
        rows = self._read(f"SELECT {_RUN_COLUMNS}, {self._code}, {also} FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise StoreError(f"no run {run_id!r} in store {self.path!r}")
        try:
            return self._info(rows[0][:-1]), rows[0][-1]
        except ValueError as exc:
            raise StoreError(f"run {run_id!r} in store {self.path!r} is damaged: {exc}") from None

    def _blob(self, ref: object, run_id: str, step: str, item: int) -> bytes:
        if type(ref) is not str or len(ref) != 64:
            raise StoreError(f"{self._where(run_id, step, item)} is damaged: its blob reference is {ref!r}")
        return self._read_blob(ref, self._where(run_id, step, item))

    def tasks(self, run_id: str, outputs: bool = True) -> "list[TaskRecord]":
        self.run_info(run_id)
        columns = "output, output_ref" if outputs else "NULL, NULL"
        with NoGC():  # (a big run's million rows and records)
            rows = self._read(
                "SELECT step, item, status, attempts, started, finished, error_type, error_message,"
                f" traceback, {columns}, key, {self._waited} FROM tasks WHERE run_id = ? ORDER BY seq",
                (run_id,),
            )
            return _records(rows, lambda row: self._record(run_id, row), self._texts)

    def _record(self, run_id: str, row: "tuple[Any, ...]") -> TaskRecord:
        """A ``tasks`` row (step ... traceback, output, output_ref, key, waited) as a checked :class:`TaskRecord`."""
        s = self._s
        row = (s(row[0]), row[1], s(row[2]), *row[3:6], s(row[6]), s(row[7]), s(row[8]), row[9], row[10], s(row[11]),
               row[12])
        step, item = row[0], row[1]
        output = row[9]
        if row[10] is not None:
            output = self._blob(row[10], run_id, str(step), item if type(item) is int else -1)
        try:
            _, _, status, attempts, started, finished, etype, emsg, tb = row[:9]
            return check_task(step, item, status, attempts, started, finished, etype, emsg, tb, output, row[11],
                              row[12])
        except ValueError as exc:
            raise StoreError(
                f"the record of step {step!r} (item {item!r}) of run {run_id!r} in store "
                f"{self.path!r} is damaged: {exc}"
            ) from None

    def task_summary(self, run_id: str, first: int, worst: int) -> "tuple[dict[str, int], list[TaskRecord]]":
        self.run_info(run_id)
        counts = {self._s(status): n for status, n in self._read(
            "SELECT status, COUNT(*) FROM tasks WHERE run_id = ? GROUP BY status", (run_id,))}
        columns = ("seq, step, item, status, attempts, started, finished, error_type, error_message, traceback,"
                   f" output, output_ref, key, {self._waited}")
        rows = self._read(f"SELECT {columns} FROM tasks WHERE run_id = ? ORDER BY seq LIMIT ?", (run_id, first))
        if counts.get("failed") or counts.get("cancelled"):
            rows += self._read(
                f"SELECT {columns} FROM tasks WHERE run_id = ? AND status IN ('failed', 'cancelled')"
                " ORDER BY seq LIMIT ?", (run_id, worst))
        picked = {row[0]: row[1:] for row in rows}
        return counts, [self._record(run_id, picked[seq]) for seq in sorted(picked)]

    def output(self, run_id: str, step: str, item: int = -1, typed: "Converter | None" = None) -> "Any":
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
        return self._decoded(data, self._where(run_id, step, item), typed)

    def attempts(self, run_id: str) -> "list[tuple[str, int, int, float, float, str, str]]":
        self.run_info(run_id)
        rows = self._read(
            "SELECT step, item, attempt, started, finished, error_type, error_message FROM attempts"
            " WHERE run_id = ? ORDER BY step, item, attempt",
            (run_id,),
        )
        return [tuple(map(self._s, row)) for row in rows]

    def attempt_logs(self, run_id: str, step: str, item: int) -> "list[tuple[int, str]]":
        rows = self._read(
            "SELECT attempt, text FROM logs WHERE run_id = ? AND step = ? AND item = ? ORDER BY attempt",
            (run_id, step, item),
        )
        return [(a, self._s(t)) for a, t in rows]

    def logged(self, run_id: str, tasks: "Iterable[tuple[str, int]]") -> "set[tuple[str, int]]":
        s = self._s
        found = {(s(step), i) for step, i in self._read("SELECT DISTINCT step, item FROM logs WHERE run_id = ?",
                                                        (run_id,))}
        return found.intersection(tasks)

    def owner(self, run_id: str) -> "str | None":
        self.run_info(run_id)
        rows = self._read("SELECT owner FROM owners WHERE run_id = ?", (run_id,))
        return None if not rows else self._s(rows[0][0])

    def shared(self, run_id: str) -> bool:
        try:
            return bool(self._read("SELECT 1 FROM queue_runs WHERE run_id = ?", (run_id,)))
        except StoreError:  # (no queue_runs table: the store was never a work queue)
            return False

    def cache_get(self, key: str) -> "tuple[bytes, float] | None":
        rows = self._read("SELECT output, output_ref, created FROM cache WHERE key = ?", (key,))
        if not rows:
            return None
        data, ref, created = rows[0]
        if ref is not None:
            try:
                data = self._read_blob(ref, "a cached output")
            except (StoreError, TypeError):  # pruned or damaged: a miss
                return None
        if not isinstance(data, bytes) or type(created) not in (int, float):
            return None  # damaged: a miss
        return data, created

    def outputs(
        self, run_id: str, steps: "Iterable[str]", typed: "Mapping[str, Converter] | None" = None
    ) -> "dict[str, Any]":
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
                step = self._s(step)
                if ref is not None:
                    data = self._blob(ref, run_id, step, -1)
                if data is not None:
                    out[step] = self._decoded(bytes(data), self._where(run_id, step),
                                              typed.get(step) if typed else None)
        return out

    def succeeded(self, run_id: str) -> "dict[str, tuple[int, float | None, float | None]]":
        steps, attempts, started, finished = self.succeeded_columns(run_id)
        return dict(zip(steps, zip(attempts, started, finished)))

    def succeeded_columns(self, run_id: str) -> "Successes":
        self.run_info(run_id)
        with NoGC():  # (a resume reads every success of a big run here: checked a column at a time)
            rows = self._read(
                "SELECT step, attempts, started, finished FROM tasks"
                " WHERE run_id = ? AND item = -1 AND status = 'succeeded'",
                (run_id,),
            )
            return _successes(rows, lambda step: f"the record of step {step!r} of run {run_id!r} in store "
                                                 f"{self.path!r} is damaged", self._texts)

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

    def graph(self, fingerprint: str) -> "dict[str, Any] | None":
        import json  # (import time: json loads on first use)

        rows = self._read("SELECT graph FROM graphs WHERE fingerprint = ?", (fingerprint,))
        return json.loads(rows[0][0]) if rows else None
