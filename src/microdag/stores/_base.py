"""The store interface and what every store shares.

A store's methods are the whole contract between the runner's recorder and
durable state (the contract tests in ``tests/test_stores.py`` hold every
store to it), in two parts along its seam:

- :class:`Writer`, the write side the recorder uses: :meth:`Writer.begin`
  records a new run (``status="running"``); :meth:`Writer.save` upserts task
  records (a store may buffer them, but :meth:`Writer.flush` and
  :meth:`Writer.finish` make everything saved so far durable, committed and
  fsync'd, before they return); logs, retried attempts, the flow's graph, the
  cache, and the claim on a run (``claim``/``release``, over the store's
  atomic ``_update_owner``);
- :class:`Store`, the writer plus the reading primitives each store answers
  (``run_info``, ``tasks``, ``list_runs``, ``attempts``, ``attempt_logs``,
  ``graph``, ``owner``) and ``prune``, which deletes old runs and the outputs
  only they used.  What is built on the primitives (reports, ``load_run``,
  logs, summaries) is ``_read``'s, once, for every store.

The work queue of ``executor="workers"`` is a third part beside these
(``_queue``): :meth:`Store.queue` answers it where the store can be one.

Outputs travel encoded (``bytes``, by the store's codec: ``_codec``); the
store holds encoded outputs below ``BLOB_SIZE`` inline and bigger ones once
each under their SHA-256 (``_files``).  The records are those of
``microdag._records``; a stored run becomes a :class:`~microdag.Run` through
:meth:`~microdag.Run.from_records`.
"""

from .._errors import StoreError
from .._records import RunInfo, StoredError, TaskRecord
from ._read import (
    load_run as read_load_run, logged as read_logged, logs as read_logs, output as read_output,
    outputs as read_outputs, report as read_report, run_graph as read_run_graph, succeeded as read_succeeded,
    succeeded_columns as read_succeeded_columns, task_summary as read_task_summary,
)
from ._codec import CODECS, decode, encode
from ._files import BLOB_SIZE, HELD, alive, new_owner

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any

    from .._result import Run
    from .._typed import Converter
    from ._queue import WorkQueue

    #: A run's successes as columns: steps, attempts, starts, finishes (``Store.succeeded_columns``).
    Successes = tuple[Sequence[str], Sequence[int], Sequence["float | None"], Sequence["float | None"]]

__all__ = ["BLOB_SIZE", "WORK_SECONDS", "RunInfo", "Store", "StoreError", "StoredError", "TaskRecord", "Writer"]

#: Buffered records are committed once the successes among them hold this
#: many seconds of step time (the sum of their durations): what a crash can
#: make a resume run again.
WORK_SECONDS = 0.1


class _CommitTimer:
    """Calls a store's ``flush`` ``delay`` seconds after it is armed, so that
    buffered records are committed in time even when no later record comes
    to trigger the commit (a long step after short ones)."""

    def __init__(self, flush: "Any", delay: float) -> None:
        self._flush = flush
        self._delay = delay
        self._timer: "Any" = None

    def arm(self) -> None:
        """Start the countdown unless one is running (the caller holds the store's lock)."""
        if self._timer is None:
            import threading  # (import time: threading loads on first use)

            timer = self._timer = threading.Timer(self._delay, self._fire)
            timer.daemon = True
            timer.start()

    def _fire(self) -> None:
        self._timer = None
        try:
            self._flush()
        except Exception:
            pass  # the next save, flush or finish reports it to the run

    def cancel(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()


class Writer:
    """The write side of a store: what the runner's recorder needs to keep a
    run (records, logs, retried attempts, the flow's graph, the cache, the
    claim on a run).  A new store implements these and :class:`Store`'s few
    reading primitives; see the module docs.

    Args:
        codec: ``"json"`` (default) or ``"pickle"`` (trusted data only).
    """

    def __init__(self, codec: "str | None" = "json") -> None:
        if codec is not None and codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r}: expected 'json' or 'pickle'")
        self.codec: str = codec or "json"
        self._claims: dict[str, str] = {}  # run id -> the owner token this object holds

    def encode(self, value: "Any", what: str, typed: "Converter | None" = None) -> bytes:
        """Encode an output (or the inputs) with the store's codec; ``what``
        names it in errors; ``typed``: the converter of its annotation
        (``_typed.converter``), for the JSON codec.

        Raises:
            TypeError: the JSON codec cannot represent the value exactly.
        """
        if type(value) is int and typed is None and self.codec == "json":  # the commonest small output
            return b"%d" % value
        return encode(self.codec, value, what, typed)

    def decode(self, data: bytes, typed: "Converter | None" = None) -> "Any":
        return decode(self.codec, data, typed)

    def _decoded(self, data: bytes, what: str, typed: "Converter | None" = None) -> "Any":
        """``decode(data, typed)``; a :class:`StoreError` naming ``what`` when it cannot be."""
        try:
            return self.decode(data, typed)
        except Exception as exc:
            if typed is not None and hasattr(exc, "detail"):  # (ConvertError: JSON, but not of its type)
                raise StoreError(
                    f"{what} does not fit its annotation {typed.name} ({exc.detail}); it is damaged, or the "
                    "step's return annotation changed since it was written"
                ) from None
            raise StoreError(
                f"{what} cannot be decoded with the {self.codec} codec ({type(exc).__name__}: {exc}); "
                "it is damaged, or the store was written with another codec"
            ) from None

    def _where(self, run_id: str, step: "str | None" = None, item: int = -1) -> str:
        """``the output of step 'x' (item 3) of run 'r' in store 'path'``, for messages."""
        place = f"run {run_id!r} in store {getattr(self, 'path', 'memory')!r}"
        if step is None:
            return place
        of_item = f" (item {item})" if item >= 0 else ""
        return f"the output of step {step!r}{of_item} of {place}"

    @staticmethod
    def digest(data: bytes) -> str:
        from .._compat import sha256  # (_compat loads the kernel: the reading commands need none)

        return sha256(data).hexdigest()  # type: ignore[no-any-return]

    def begin(self, info: RunInfo) -> None:
        """Record a new run.

        Raises:
            StoreError: the run id is taken.
        """
        raise NotImplementedError

    def save(self, run_id: str, records: "Iterable[TaskRecord]") -> None:
        """Upsert task records (keyed by step and item); may buffer until :meth:`flush`."""
        raise NotImplementedError

    def flush(self) -> None:
        """Make everything saved so far durable."""
        raise NotImplementedError

    def finish(self, run_id: str, status: str, finished: "float | None") -> None:
        """Record the run's status (its end, or ``"running"`` again on resume);
        everything saved is durable when this returns.

        Raises:
            StoreError: what was saved cannot be written (a full disk); the
                run's end is still recorded when the store can write that
                (what was buffered is lost, as in a crash).
        """
        raise NotImplementedError

    def save_logs(self, run_id: str, step: str, item: int, attempt: int, text: str) -> None:
        """Keep what one attempt of a task printed and logged (committed with the records)."""
        raise NotImplementedError

    def save_attempt(
        self, run_id: str, step: str, item: int, attempt: int, started: float, finished: float,
        error_type: str, error_message: str,
    ) -> None:
        """Keep the times and error of an attempt that failed and was retried
        (a task's own record holds its last attempt only); durable with the
        next commit."""
        raise NotImplementedError

    def save_graph(self, fingerprint: str, graph: str) -> None:
        """Keep the structure of the flow with ``fingerprint`` (JSON text:
        ``{"nodes": [names], "deps": [[node indices], ...]}``), once per structure;
        durable with the next commit, as :meth:`save` is."""
        raise NotImplementedError

    #: Whether the store lives in this process only (a run's added steps may
    #: keep functions that have no importable name).
    in_memory = False

    def save_added(self, run_id: str, n: int, recipe: "dict[str, Any]") -> None:
        """Keep the ``n``-th step that run ``run_id``'s steps added (``recipe``:
        JSON-able, how a resume makes it again), before the records of the
        step that added it; durable with the next commit.  Kept once per key
        beside the flows' structures (:meth:`save_graph`), in every store."""
        import json  # (only for steps that add steps)

        self.save_graph(_added_key(run_id, n), json.dumps(recipe))

    def cache_get(self, key: str) -> "tuple[bytes, float] | None":
        """The cached encoded output under ``key`` and when it was made, or ``None``."""
        raise NotImplementedError

    def cache_put(self, key: str, output: bytes, created: float) -> None:
        """Cache an encoded output under ``key`` (durable with the next commit)."""
        raise NotImplementedError

    def claim(self, run_id: str, force: bool = False) -> None:
        """Take run ``run_id`` for this store object (to resume it), atomically:
        of several processes (or threads) claiming one run at once, one gets
        it and the others get :class:`StoreError`.

        Raises:
            StoreError: another live claim holds the run (unless ``force``), or
                there is no such run.
        """
        token = new_owner()

        def take(before: "str | None") -> "str | None":
            return token if force or before is None or not alive(before) else before

        HELD.add(token)  # live from the moment it can be written
        try:
            before, after = self._update_owner(run_id, take)
        except BaseException:
            HELD.discard(token)
            raise
        if after != token:
            HELD.discard(token)
            raise StoreError(
                f"run {run_id!r} is live in another process or run ({before}); wait for it, or "
                "resume it with force if that process is gone"
            )
        self._claims[run_id] = token

    def _new_claim(self, run_id: str) -> str:
        """The owner token of a run this store object is beginning."""
        token = self._claims[run_id] = new_owner()
        HELD.add(token)
        return token

    def release(self, run_id: str) -> None:
        """This store object is done with run ``run_id`` (its end is recorded):
        its claim ends (a claim someone else took over is left alone)."""
        token = self._claims.pop(run_id, None)
        if token is None:
            return
        try:
            self._update_owner(run_id, lambda before: None if before == token else before)
        finally:
            HELD.discard(token)

    def _update_owner(
        self, run_id: str, change: "Callable[[str | None], str | None]"
    ) -> "tuple[str | None, str | None]":
        """Set the owner of run ``run_id`` to ``change(owner)``, atomically
        across processes (``None``: no owner); return the owner before and after.

        Raises:
            StoreError: no such run, or the store cannot be written.
        """
        raise NotImplementedError

    def run_dir(self, run_id: str) -> "str | None":
        """Where the run's steps keep files (``microdag.context().run_dir``), or
        ``None`` for a temporary directory."""
        return None

    def close(self) -> None:
        """Flush and let go of files."""


class Store(Writer):
    """Where runs are kept: the write side (:class:`Writer`) and the reads.
    A store answers the primitives (``run_info``, ``tasks``, ``list_runs``,
    ``attempts``, ``attempt_logs``, ``graph``, ``owner``) and ``prune``; the
    rest are ``_read``'s functions of a store, which a store may answer its
    own faster way by overriding the method."""

    # -- reading primitives: each store answers them -------------------------------

    def run_info(self, run_id: str) -> RunInfo:
        """The run's record.

        Raises:
            StoreError: no such run.
        """
        raise NotImplementedError

    def tasks(self, run_id: str, outputs: bool = True) -> "list[TaskRecord]":
        """Every task record of the run, in the order they were first saved
        (without their outputs when ``outputs`` is false)."""
        raise NotImplementedError

    def list_runs(self, flow: "str | None" = None, limit: "int | None" = None) -> "list[RunInfo]":
        """The runs, newest first; only those of ``flow`` when given."""
        raise NotImplementedError

    def attempts(self, run_id: str) -> "list[tuple[str, int, int, float, float, str, str]]":
        """The retried attempts of the run: ``(step, item, attempt, started,
        finished, error type, error message)``, by step, item and attempt."""
        raise NotImplementedError

    def attempt_logs(self, run_id: str, step: str, item: int) -> "list[tuple[int, str]]":
        """``(attempt, text)`` of every attempt of a task that printed or logged."""
        raise NotImplementedError

    def graph(self, fingerprint: str) -> "dict[str, Any] | None":
        """The structure kept by :meth:`save_graph`, or ``None``."""
        raise NotImplementedError

    def added_steps(self, run_id: str) -> "list[dict[str, Any]]":
        """The steps run ``run_id``'s steps added (:meth:`save_added`), in order."""
        out: list[dict[str, Any]] = []
        while True:
            recipe = self.graph(_added_key(run_id, len(out)))
            if recipe is None:
                return out
            out.append(recipe)

    def added_by(self, run_id: str) -> "dict[str, str]":
        """The steps run ``run_id``'s steps added: name -> the name of the step that added it."""
        return {recipe["step"]: recipe["by"] for recipe in self.added_steps(run_id)}

    def owner(self, run_id: str) -> "str | None":
        """Who holds run ``run_id`` now: ``"host:pid#nonce"`` of the process
        running or resuming it, or ``None`` (read only: by the time the answer
        is used, that process may have ended).

        Raises:
            StoreError: no such run.
        """
        raise NotImplementedError

    def shared(self, run_id: str) -> bool:
        """Whether run ``run_id`` is on the store's work queue and not ended
        (``executor="workers"``, ``submit``): its workers run it, whatever
        becomes of the process that started it."""
        return False

    def live(self, run_id: str) -> "bool | None":
        """Whether run ``run_id`` is being run, as far as the store itself
        knows: ``True`` while it is on the work queue (:meth:`shared`), or
        (PostgreSQL) while a process on any machine holds its claim;
        ``False`` when the store knows that nobody runs it; ``None`` when
        only its :meth:`owner`'s process can tell (a process of this machine,
        which the caller may look for)."""
        return True if self.shared(run_id) else None

    def queue(self) -> "WorkQueue":
        """The store's work queue, for runs that workers share
        (``executor="workers"``; ``stores/_queue``): a new connection, closed
        by its ``close``.

        Raises:
            StoreError: the store cannot be one (memory and JSON stores cannot;
                SQLite and PostgreSQL stores can).
        """
        raise StoreError(
            f"{type(self).__name__} cannot share a run with workers: executor='workers' needs a store "
            "that is a work queue: an SQLite store (store='runs.db') or a PostgreSQL one"
        )

    def prune(self, older_than: "float | None" = None, keep_last: "int | None" = None) -> int:
        """Delete runs that started more than ``older_than`` seconds ago, keeping
        the ``keep_last`` newest of each flow; return how many were deleted."""
        raise NotImplementedError

    # -- reads built on them (stores/_read.py) -------------------------------------------

    def task_summary(self, run_id: str, first: int, worst: int) -> "tuple[dict[str, int], list[TaskRecord]]":
        """What ``show`` prints of a big run (``_read.task_summary``).

        Raises:
            StoreError: no such run.
        """
        return read_task_summary(self, run_id, first, worst)

    def logs(self, run_id: str, step: str, item: "int | None" = None) -> str:
        """What a step (or item ``item`` of a map step) printed and logged, all
        attempts in order (``_read.logs``).

        Raises:
            StoreError: no such run.
        """
        return read_logs(self, run_id, step, item)

    def logged(self, run_id: str, tasks: "Iterable[tuple[str, int]]") -> "set[tuple[str, int]]":
        """Which of ``tasks`` (``(step, item)``) have logs: for the UI's views
        of big runs, one read where the store can."""
        return read_logged(self, run_id, tasks)

    def report(self, run_id: str) -> str:
        """One self-contained HTML page on the run (``_read.report``).

        Raises:
            StoreError: no such run.
        """
        return read_report(self, run_id)

    def run_graph(self, info: RunInfo) -> "dict[str, Any] | None":
        """The run's graph, its added steps with it (``_read.run_graph``), or ``None``."""
        return read_run_graph(self, info)

    def output(self, run_id: str, step: str, item: int = -1, typed: "Converter | None" = None) -> "Any":
        """The decoded output of a task (``typed``: the converter of the step's
        annotation, which the flow knows: ``_typed``).

        Raises:
            KeyError: the task has no stored output.
            StoreError: it is damaged (or does not fit ``typed``).
        """
        return read_output(self, run_id, step, item, typed)

    def outputs(
        self, run_id: str, steps: "Iterable[str]", typed: "Mapping[str, Converter] | None" = None
    ) -> "dict[str, Any]":
        """The decoded outputs of several steps (those with one), in one read
        (``typed``: step name -> the converter of its annotation)."""
        return read_outputs(self, run_id, steps, typed)

    def succeeded(self, run_id: str) -> "dict[str, tuple[int, float | None, float | None]]":
        """Per step that succeeded (not map items): its attempts, start and finish."""
        return read_succeeded(self, run_id)

    def succeeded_count(self, run_id: str) -> int:
        """How many steps (not map items) of the run succeeded."""
        return len(self.succeeded(run_id))

    def succeeded_columns(self, run_id: str) -> "Successes":
        """:meth:`succeeded` as four columns: steps, attempts, starts and
        finishes (what a resume reads; a store that can read them without a
        record or a tuple per step does)."""
        return read_succeeded_columns(self, run_id)

    def load_run(self, run_id: str) -> "Run":
        """The run as a :class:`~microdag.Run`; outputs are decoded when read.

        Raises:
            StoreError: no such run.
        """
        return read_load_run(self, run_id)


def _added_key(run_id: str, n: int) -> str:
    """Where the ``n``-th added step of run ``run_id`` is kept, among the flows' structures."""
    return f"added-{run_id}-{n}"
