"""The work queue's reads and connection: what a worker reads of the SQL queue outside its transactions.

:class:`QueueReader` is the half of :class:`~._sql_queue.SQLQueue` that
changes nothing: the queue's own connection (``_db``, made by the dialect's
subclass) used under one lock and made again once when it dropped
(:meth:`QueueReader._retrying`), and the reads a worker makes between its
claims and finishes, each one statement: a run's record and lease when it
first meets the run, its plan document, which runs stopped, the outputs a
claimed step takes, a map step's item records (for its units and its
gathering), and a run's progress for its caller.  What they read was
committed by the queue's transactions (``_sql_queue``), which this module
does not know.
"""

import json
import threading

from .._errors import StoreError
from ._queue import WorkQueue

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

    from .._records import RunInfo
    from ._sql import SQLStore

__all__ = ["QueueReader"]


class QueueReader(WorkQueue):
    """The reads of the work queue in a SQL store's database (see the module
    docs); :class:`~._sql_queue.SQLQueue` adds its transactions.

    Args:
        store: the store; the queue keeps a connection of its own (``_db``,
            made by the dialect's subclass).
    """

    #: The lease in a run's plan, over its ``queue_runs`` row (an SQL expression).
    _LEASE = "json_extract(plan, '$.lease')"

    def __init__(self, store: "SQLStore") -> None:
        self.store = store
        self.path = store.path
        self._t = store._t
        self._s = store._s
        self._db: Any
        self._error: type[BaseException] = store._errors()[0]
        self._lost: type[BaseException] = store._lost()
        self._lock = threading.RLock()

    def _reconnect(self) -> bool:
        """After a dropped connection (a server restart): connect again; whether it did."""
        return False

    def _retrying(self, work: "Callable[[], Any]") -> "Any":
        """``work()`` under the lock; once more on a new connection if the connection dropped."""
        with self._lock:
            try:
                return work()
            except self._lost as exc:
                if not self._reconnect():
                    raise StoreError(f"cannot use store {self.path!r}: {exc}") from None
                return work()

    def _query(self, sql: str, params: "tuple[Any, ...]" = ()) -> "list[Any]":
        """The rows of a query outside a transaction."""
        try:
            return self._retrying(lambda: self._db.execute(sql, params).fetchall())  # type: ignore[no-any-return]
        except self._error as exc:
            raise StoreError(f"cannot read store {self.path!r}: {exc}") from None

    # -- the protocol's reads ----------------------------------------------------------------

    def learn(self, run_id: str) -> "tuple[RunInfo, float | None]":
        info, lease = self.store._run_info(run_id, f"(SELECT {self._LEASE} FROM queue_runs WHERE run_id = runs.id)")
        return info, None if lease is None else float(lease)

    def plan(self, run_id: str) -> "dict[str, Any] | None":
        rows = self._query("SELECT plan FROM queue_runs WHERE run_id = ?", (run_id,))
        return json.loads(rows[0][0]) if rows else None

    def stopping(self, run_ids: "Iterable[str]") -> "set[str]":
        wanted = set(run_ids)
        if not wanted:
            return set()
        marks = ", ".join("?" * len(wanted))
        live = self._query(f"SELECT run_id FROM queue_runs WHERE state < 2 AND run_id IN ({marks})", tuple(wanted))
        return wanted.difference(row[0] for row in live)

    def outputs(self, run_id: str, steps: "Sequence[str]") -> "dict[str, bytes]":
        if not steps:
            return {}
        marks = ", ".join("?" * len(steps))
        rows = self._query(
            f"SELECT step, output, output_ref FROM tasks WHERE run_id = ? AND item = -1 AND step IN ({marks})",
            (self._t(run_id), *map(self._t, steps)))
        found = {}
        for step, output, ref in rows:
            name = self._s(step)
            if ref is not None:
                output = self.store._read_blob(ref, f"the output of step {name!r} of run {run_id!r}")
            if output is not None:
                found[name] = bytes(output)
        return found

    def items(self, run_id: str, step: str) -> "list[tuple[Any, ...]]":
        rows = self._query(
            "SELECT item, status, attempts, started, error_type, error_message, traceback, output, output_ref"
            " FROM tasks WHERE run_id = ? AND step = ? AND item >= 0 ORDER BY item", (self._t(run_id), self._t(step)))
        found = []
        s = self._s
        for item, status, attempts, started, etype, emsg, tb, output, ref in rows:
            if ref is not None:
                output = self.store._read_blob(ref, f"the output of item {item} of step {step!r} of run {run_id!r}")
            found.append((item, s(status), attempts, started, s(etype), s(emsg), s(tb),
                          None if output is None else bytes(output)))
        return found

    def progress(self, run_id: str, after: int) -> "tuple[int, list[tuple[str, str, int]]]":
        rows = self._query("SELECT seq, step, status, attempts FROM tasks WHERE run_id = ? AND seq > ?"
                           " AND item = -1 ORDER BY seq", (self._t(run_id), after))
        if not rows:
            return after, []
        s = self._s
        return int(rows[-1][0]), [(s(step), s(status), attempts) for _, step, status, attempts in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
