"""The store interface, its records, and what every store shares: the codecs.

A store's methods are the whole contract between the runner and durable
state (the contract tests in ``tests/test_stores.py`` hold every store to it):

- :meth:`Store.begin` records a new run (``status="running"``);
- :meth:`Store.save` upserts task records; a store may buffer them, but
  :meth:`Store.flush` and :meth:`Store.finish` make everything saved so far
  durable (committed and fsync'd) before they return;
- :meth:`Store.run_info`, :meth:`Store.tasks`, :meth:`Store.output`,
  :meth:`Store.list_runs` and :meth:`Store.load_run` read back;
- :meth:`Store.prune` deletes old runs and the outputs only they used.

Outputs travel encoded (``bytes``); the store holds encoded outputs below
:data:`BLOB_SIZE` inline and bigger ones once each under their SHA-256.
"""


TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

    from .._run import Run

__all__ = ["BLOB_SIZE", "RunInfo", "Store", "StoreError", "TaskRecord"]

#: Encoded outputs of this many bytes and more are kept by content hash.
BLOB_SIZE = 64 * 1024

CODECS = ("json", "pickle")


class StoreError(Exception):
    """A store cannot be opened or used (not a microdag store, a newer schema,
    a corrupt file, an unknown run, a run id that is taken); the message says
    which, naming the file or the run."""


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
            import threading

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


class RunInfo:
    """One run as a store records it (without its tasks)."""

    __slots__ = ("id", "flow", "fingerprint", "inputs", "status", "started", "finished", "source")

    def __init__(
        self,
        id: str,
        flow: str,
        fingerprint: str,
        inputs: "dict[str, Any]",
        status: str,
        started: float,
        finished: "float | None" = None,
        source: "str | None" = None,
    ) -> None:
        self.id = id
        self.flow = flow
        self.fingerprint = fingerprint
        self.inputs = inputs
        self.status = status
        self.started = started
        self.finished = finished
        self.source = source

    def __repr__(self) -> str:
        return f"<RunInfo {self.id} of {self.flow!r}: {self.status}>"


class TaskRecord:
    """One task (a step, or item ``item`` of a map step) as a store records it.

    ``output`` is the encoded output (``None`` when there is none).
    """

    __slots__ = (
        "step",
        "item",
        "status",
        "attempts",
        "started",
        "finished",
        "error_type",
        "error_message",
        "traceback",
        "output",
    )

    def __init__(
        self,
        step: str,
        item: int = -1,
        status: str = "pending",
        attempts: int = 0,
        started: "float | None" = None,
        finished: "float | None" = None,
        error_type: "str | None" = None,
        error_message: "str | None" = None,
        traceback: "str | None" = None,
        output: "bytes | None" = None,
    ) -> None:
        self.step = step
        self.item = item
        self.status = status
        self.attempts = attempts
        self.started = started
        self.finished = finished
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback
        self.output = output

    def as_tuple(self) -> tuple["Any", ...]:
        return (
            self.step, self.item, self.status, self.attempts, self.started, self.finished,
            self.error_type, self.error_message, self.traceback, self.output,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskRecord) and self.as_tuple() == other.as_tuple()

    def __repr__(self) -> str:
        item = "" if self.item < 0 else f"[{self.item}]"
        return f"<TaskRecord {self.step}{item} {self.status} attempts={self.attempts}>"


def _owner() -> str:
    import os

    return f"{os.uname().nodename if hasattr(os, 'uname') else 'host'}:{os.getpid()}"


#: This process, as a run's owner: ``host:pid``.
OWNER = _owner()


def _alive(owner: str) -> bool:
    """Whether the process ``owner`` names may still run (another host: assume so)."""
    import os

    host, _, pid = owner.rpartition(":")
    if host != OWNER.rpartition(":")[0]:
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OSError):
        return True
    return True


class StoredError(Exception):
    """A step's error read back from a store: its type's name, message and traceback."""

    def __init__(self, type_name: str, message: str, traceback: str = "") -> None:
        super().__init__(type_name, message, traceback)

    @property
    def type_name(self) -> str:
        return str(self.args[0])

    @property
    def traceback(self) -> str:
        return str(self.args[2])

    def __str__(self) -> str:
        return f"{self.args[0]}: {self.args[1]}"


class Store:
    """Where runs are kept.  Subclasses implement the storage; see the module docs.

    Args:
        codec: ``"json"`` (default) or ``"pickle"`` (trusted data only).
    """

    def __init__(self, codec: str = "json") -> None:
        if codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r}: expected 'json' or 'pickle'")
        self.codec = codec

    # -- codecs ----------------------------------------------------------------

    def encode(self, value: "Any", what: str) -> bytes:
        """Encode an output (or the inputs); ``what`` names it in errors.

        Raises:
            TypeError: the JSON codec cannot represent the value exactly.
        """
        if self.codec == "pickle":
            import pickle

            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        if type(value) is int:  # the commonest small output, as JSON writes it
            return b"%d" % value
        bad = _not_json(value)
        if bad is not None:
            raise TypeError(
                f"{what} is not JSON: it holds a {bad}; store it with codec='pickle' "
                "(trusted data only), or return JSON values (dict with str keys, list, "
                "str, int, float, bool, None)"
            )
        # ASCII escapes keep str values exact, lone surrogates (file names) too.
        text: str = _json_encoder().encode(value)
        return text.encode()

    def decode(self, data: bytes) -> "Any":
        if self.codec == "pickle":
            import pickle

            return pickle.loads(data)
        import json

        return json.loads(data)

    @staticmethod
    def digest(data: bytes) -> str:
        from .._compat import sha256

        return sha256(data).hexdigest()  # type: ignore[no-any-return]

    # -- the interface -------------------------------------------------------------

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
        everything saved is durable when this returns."""
        raise NotImplementedError

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

    def prune(self, older_than: "float | None" = None, keep_last: "int | None" = None) -> int:
        """Delete runs that started more than ``older_than`` seconds ago, keeping
        the ``keep_last`` newest of each flow; return how many were deleted."""
        raise NotImplementedError

    def save_logs(self, run_id: str, step: str, item: int, attempt: int, text: str) -> None:
        """Keep what one attempt of a task printed and logged (committed with the records)."""
        raise NotImplementedError

    def attempt_logs(self, run_id: str, step: str, item: int) -> "list[tuple[int, str]]":
        """``(attempt, text)`` of every attempt of a task that printed or logged."""
        raise NotImplementedError

    def logs(self, run_id: str, step: str, item: "int | None" = None) -> str:
        """What a step (or item ``item`` of a map step) printed and logged, all
        attempts in order, each under an ``--- attempt N ---`` line when there are
        several.

        Raises:
            StoreError: no such run.
        """
        self.run_info(run_id)
        parts = self.attempt_logs(run_id, step, -1 if item is None else item)
        if len(parts) == 1:
            return parts[0][1]
        return "".join(f"--- attempt {attempt} ---\n{text}" for attempt, text in parts)

    def claim(self, run_id: str, force: bool = False) -> None:
        """Take run ``run_id`` for this process (to resume it).

        Raises:
            StoreError: another live process holds the run (unless ``force``).
        """
        holder = self._swap_owner(run_id, OWNER, force)
        if holder is not None and holder != OWNER and not force and _alive(holder):
            raise StoreError(
                f"run {run_id!r} is live in another process ({holder}); wait for it, or "
                "pass force=True if that process is gone"
            )

    def release(self, run_id: str) -> None:
        """This process is done with run ``run_id`` (its end is recorded)."""
        self._swap_owner(run_id, None, True)

    def _swap_owner(self, run_id: str, owner: "str | None", force: bool) -> "str | None":
        """Set the run's owner to ``owner`` unless a live other one holds it
        (``force``: always); return the previous owner.  Atomic per store."""
        raise NotImplementedError

    def cache_get(self, key: str) -> "tuple[bytes, float] | None":
        """The cached encoded output under ``key`` and when it was made, or ``None``."""
        raise NotImplementedError

    def cache_put(self, key: str, output: bytes, created: float) -> None:
        """Cache an encoded output under ``key`` (durable with the next commit)."""
        raise NotImplementedError

    def save_attempt(
        self, run_id: str, step: str, item: int, attempt: int, started: float, finished: float,
        error_type: str, error_message: str,
    ) -> None:
        """Keep the times and error of an attempt that failed and was retried
        (a task's own record holds its last attempt only); durable with the
        next commit."""
        raise NotImplementedError

    def attempts(self, run_id: str) -> "list[tuple[str, int, int, float, float, str, str]]":
        """The retried attempts of the run: ``(step, item, attempt, started,
        finished, error type, error message)``, by step, item and attempt."""
        raise NotImplementedError

    def save_graph(self, fingerprint: str, graph: str) -> None:
        """Keep the structure of the flow with ``fingerprint`` (JSON text:
        ``{"nodes": [names], "deps": [[node indices], ...]}``), once per structure;
        durable with the next commit, as :meth:`save` is."""
        raise NotImplementedError

    def graph(self, fingerprint: str) -> "dict[str, Any] | None":
        """The structure kept by :meth:`save_graph`, or ``None``."""
        raise NotImplementedError

    def report(self, run_id: str) -> str:
        """One self-contained HTML page on the run: its DAG coloured by status,
        a timeline of its tasks, each step's error and logs.

        Raises:
            StoreError: no such run.
        """
        from .._render import render_report

        info = self.run_info(run_id)
        tasks = self.tasks(run_id, outputs=False)
        graph = self.graph(info.fingerprint)
        return render_report(
            info, tasks, graph, lambda step, item: self.logs(run_id, step, None if item < 0 else item),
            self.attempts(run_id),
        )

    def close(self) -> None:
        """Flush and let go of files."""

    def run_dir(self, run_id: str) -> "str | None":
        """Where the run's steps keep files (``microdag.context().run_dir``), or
        ``None`` for a temporary directory."""
        return None

    # -- shared reading ------------------------------------------------------------

    def output(self, run_id: str, step: str, item: int = -1) -> "Any":
        """The decoded output of a task.

        Raises:
            KeyError: the task has no stored output.
        """
        for record in self.tasks(run_id):
            if record.step == step and record.item == item and record.output is not None:
                return self.decode(record.output)
        raise KeyError(f"run {run_id} has no stored output for step {step!r}")

    def outputs(self, run_id: str, steps: "Iterable[str]") -> "dict[str, Any]":
        """The decoded outputs of several steps (those with one), in one read."""
        out = {}
        for step in steps:
            try:
                out[step] = self.output(run_id, step)
            except KeyError:
                pass
        return out

    def succeeded(self, run_id: str) -> "dict[str, tuple[int, float | None, float | None]]":
        """Per step that succeeded (not map items): its attempts, start and finish."""
        return {
            r.step: (r.attempts, r.started, r.finished)
            for r in self.tasks(run_id, outputs=False)
            if r.item < 0 and r.status == "succeeded"
        }

    def load_run(self, run_id: str) -> "Run":
        """The run as a :class:`~microdag.Run`; outputs are decoded when read.

        Raises:
            StoreError: no such run.
        """
        from .._compat import sched
        from .._run import Run

        info = self.run_info(run_id)
        records = [r for r in self.tasks(run_id) if r.item < 0]
        names = tuple(r.step for r in records)
        codes = {
            "pending": sched.PENDING,
            "running": sched.RUNNING,
            "succeeded": sched.SUCCEEDED,
            "failed": sched.FAILED,
            "skipped": sched.SKIPPED,
            "cancelled": sched.CANCELLED,
        }
        states = bytes(codes.get(r.status, sched.PENDING) for r in records)
        errors = {
            i: StoredError(r.error_type, r.error_message or "", r.traceback or "")
            for i, r in enumerate(records)
            if r.error_type is not None
        }
        first = min(errors, default=-1, key=lambda i: records[i].finished or 0.0)
        outputs = _Outputs(self, run_id, {r.step for r in records if r.output is not None})
        return Run(
            info.id,
            info.flow,
            info.status,
            outputs,  # type: ignore[arg-type]
            info.inputs,
            info.started,
            info.finished or info.started,
            errors.get(first),
            names,
            {name: i for i, name in enumerate(names)},
            states,
            [r.attempts for r in records],
            [r.started or 0.0 for r in records],
            [r.finished or 0.0 for r in records],
            errors,  # type: ignore[arg-type]
            0.0,
        )


class _Outputs:
    """Read-only mapping of step -> output, decoded from the store when read."""

    def __init__(self, store: Store, run_id: str, steps: "set[str]") -> None:
        self._store = store
        self._run_id = run_id
        self._steps = steps
        self._cache: dict[str, Any] = {}

    def __getitem__(self, step: str) -> "Any":
        if step not in self._steps:
            raise KeyError(step)
        if step not in self._cache:
            self._cache[step] = self._store.output(self._run_id, step)
        return self._cache[step]

    def __contains__(self, step: object) -> bool:
        return step in self._steps

    def __iter__(self) -> "Iterator[str]":
        return iter(sorted(self._steps))

    def __len__(self) -> int:
        return len(self._steps)

    def get(self, step: str, default: "Any" = None) -> "Any":
        return self[step] if step in self._steps else default

    def keys(self) -> "list[str]":
        return sorted(self._steps)

    def items(self) -> "list[tuple[str, Any]]":
        return [(step, self[step]) for step in sorted(self._steps)]

    def values(self) -> "list[Any]":
        return [self[step] for step in sorted(self._steps)]


_ENCODER: "Any" = None


def _json_encoder() -> "Any":
    global _ENCODER
    if _ENCODER is None:
        import json

        _ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False, allow_nan=False)
    return _ENCODER


def _not_json(value: "Any") -> "str | None":
    """What keeps ``value`` from being a JSON value exactly, or ``None``."""
    stack = [value]
    containers: set[int] = set()
    while stack:
        v = stack.pop()
        t = type(v)
        if v is None or t in (str, int, bool):
            continue
        if t is list or t is dict:
            if id(v) in containers:
                return f"{t.__name__} that contains itself (or is shared)"
            containers.add(id(v))
        if t is float:
            if v != v or v in (float("inf"), float("-inf")):
                return f"float {v!r}"
            continue
        if t is list:
            stack.extend(v)
        elif t is dict:
            for k in v:
                if type(k) is not str:
                    return f"dict key of type {type(k).__name__}"
            stack.extend(v.values())
        else:
            return f"{t.__name__}"
    return None

