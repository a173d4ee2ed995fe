"""The in-memory store: this process only, for tests and warm functions."""

import copy
import itertools
import json
import threading

from .._context import default_run_dir
from .._errors import StoreError
from .._nogc import NoGC
from .._records import RunInfo, TaskRecord, check_run_id
from ._base import Store
from ._files import BLOB_SIZE, doomed, drop_folders

#: Where a kept task row (``TaskRecord.as_tuple()``) has its output.
_OUTPUT = TaskRecord.__slots__.index("output")
#: A kept task row without its output (``None`` in its place).
_NO_OUTPUT = lambda row: (*row[:_OUTPUT], None, *row[_OUTPUT + 1:])  # noqa: E731

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from .._typed import Converter


class MemoryStore(Store):
    """Runs kept in this process's memory (nothing survives it).

    Args:
        codec: ``None`` (default): outputs are kept as they are, whatever
            their type (nothing is written anywhere, so nothing is refused);
            ``"json"`` or ``"pickle"``: encoded as a durable store would, to
            check what one would keep.
    """

    in_memory = True

    def __init__(self, codec: "str | None" = None) -> None:
        super().__init__(codec)
        #: Outputs kept as they are (``codec=None``): token -> value.
        self._objects: "dict[bytes, Any] | None" = {} if codec is None else None
        self._tokens = itertools.count()
        if codec is None:
            self.codec = "none"
        self._lock = threading.Lock()
        self._runs: dict[str, RunInfo] = {}
        #: Run id -> (step, item) -> the task's fields (``TaskRecord.as_tuple()``):
        #: tuples of plain values, which the cycle collector stops walking.
        self._tasks: dict[str, dict[tuple[str, int], tuple[Any, ...]]] = {}
        self._blobs: dict[str, bytes] = {}
        self._cache: dict[str, tuple[bytes, float]] = {}
        self._owners: dict[str, str] = {}
        self._logs: dict[tuple[str, str, int, int], str] = {}
        self._graphs: dict[str, str] = {}
        self._attempts: dict[tuple[str, str, int, int], tuple[float, float, str, str]] = {}

    def encode(self, value: "Any", what: str, typed: "Converter | None" = None) -> bytes:
        objects = self._objects
        if objects is None:
            return super().encode(value, what, typed)
        token = b"\x00kept %d" % next(self._tokens)  # (pickle and JSON never start with a NUL)
        objects[token] = value
        return token

    def decode(self, data: bytes, typed: "Converter | None" = None) -> "Any":
        objects = self._objects
        if objects is None or not data.startswith(b"\x00kept "):
            return super().decode(data, typed)
        return objects[bytes(data)]

    def begin(self, info: RunInfo) -> None:
        check_run_id(info.id)
        # Inputs go through the codec, as in the other stores: what one refuses, all do.
        inputs = self.decode(self.encode(info.inputs, "the run's inputs"))
        with self._lock:
            if info.id in self._runs:
                raise StoreError(f"a run with id {info.id!r} is already in this store")
            kept = _copy_info(info)
            kept.inputs = inputs
            self._runs[info.id] = kept
            self._tasks[info.id] = {}
            self._owners[info.id] = self._new_claim(info.id)

    def save(self, run_id: str, records: "Iterable[TaskRecord]") -> None:
        with self._lock:
            self._info(run_id)
            tasks = self._tasks[run_id]
            for record in records:
                kept = record.as_tuple()
                data = record.output
                if data is not None and len(data) >= BLOB_SIZE:
                    digest = self.digest(data)
                    self._blobs[digest] = data
                    kept = (*kept[:_OUTPUT], _Blob(digest), *kept[_OUTPUT + 1:])
                tasks[(record.step, record.item)] = kept

    def flush(self) -> None:
        return None

    def save_logs(self, run_id: str, step: str, item: int, attempt: int, text: str) -> None:
        with self._lock:
            self._info(run_id)
            self._logs[(run_id, step, item, attempt)] = text

    def save_attempt(
        self, run_id: str, step: str, item: int, attempt: int, started: float, finished: float,
        error_type: str, error_message: str,
    ) -> None:
        with self._lock:
            self._info(run_id)
            self._attempts[(run_id, step, item, attempt)] = (started, finished, error_type, error_message)

    def attempts(self, run_id: str) -> "list[tuple[str, int, int, float, float, str, str]]":
        with self._lock:
            self._info(run_id)
            return sorted((s, i, a, *facts) for (r, s, i, a), facts in self._attempts.items() if r == run_id)

    def attempt_logs(self, run_id: str, step: str, item: int) -> "list[tuple[int, str]]":
        with self._lock:
            return sorted(
                (a, text) for (r, s, i, a), text in self._logs.items() if (r, s, i) == (run_id, step, item)
            )

    def logged(self, run_id: str, tasks: "Iterable[tuple[str, int]]") -> "set[tuple[str, int]]":
        with self._lock:
            found = {(s, i) for (r, s, i, _), _text in self._logs.items() if r == run_id}
        return found.intersection(tasks)

    def owner(self, run_id: str) -> "str | None":
        with self._lock:
            self._info(run_id)
            return self._owners.get(run_id)

    def _update_owner(
        self, run_id: str, change: "Callable[[str | None], str | None]"
    ) -> "tuple[str | None, str | None]":
        with self._lock:
            self._info(run_id)
            before = self._owners.get(run_id)
            after = change(before)
            if after is None:
                self._owners.pop(run_id, None)
            else:
                self._owners[run_id] = after
            return before, after

    def cache_get(self, key: str) -> "tuple[bytes, float] | None":
        with self._lock:
            return self._cache.get(key)

    def cache_put(self, key: str, output: bytes, created: float) -> None:
        with self._lock:
            self._cache[key] = (output, created)

    def finish(self, run_id: str, status: str, finished: "float | None") -> None:
        with self._lock:
            info = self._info(run_id)
            info.status = status
            info.finished = finished

    def _info(self, run_id: str) -> RunInfo:
        try:
            return self._runs[run_id]
        except KeyError:
            raise StoreError(f"no run {run_id!r} in this memory store") from None

    def run_info(self, run_id: str) -> RunInfo:
        with self._lock:
            return _copy_info(self._info(run_id))

    def tasks(self, run_id: str, outputs: bool = True) -> "list[TaskRecord]":
        with self._lock, NoGC():  # (copies: a caller may change them; a big run's million of them)
            self._info(run_id)
            rows = self._tasks[run_id].values()
            out = list(itertools.starmap(TaskRecord, rows if outputs else map(_NO_OUTPUT, rows)))
            if outputs and self._blobs:
                for copy in out:
                    if isinstance(copy.output, _Blob):
                        copy.output = self._blobs[copy.output.digest]
            return out

    def output(self, run_id: str, step: str, item: int = -1, typed: "Converter | None" = None) -> "Any":
        with self._lock:
            self._info(run_id)
            row = self._tasks[run_id].get((step, item))
            data = None if row is None else row[_OUTPUT]
            if isinstance(data, _Blob):
                data = self._blobs[data.digest]
        if data is None:
            raise KeyError(f"run {run_id} has no stored output for step {step!r}")
        if typed is None or self._objects is not None:  # (kept as they are: nothing to convert)
            return self.decode(data)
        return self._decoded(data, self._where(run_id, step, item), typed)

    def list_runs(self, flow: "str | None" = None, limit: "int | None" = None) -> "list[RunInfo]":
        with self._lock:
            runs = [_copy_info(r) for r in self._runs.values() if flow is None or r.flow == flow]
        runs.sort(key=lambda r: (r.started, r.id), reverse=True)
        return runs if limit is None else runs[:limit]

    def prune(self, older_than: "float | None" = None, keep_last: "int | None" = None) -> int:
        gone = doomed(self.list_runs(), older_than, keep_last)
        with self._lock:
            for run_id in gone:
                del self._runs[run_id]
                del self._tasks[run_id]
                self._owners.pop(run_id, None)
            self._logs = {k: v for k, v in self._logs.items() if k[0] in self._runs}
            self._attempts = {k: v for k, v in self._attempts.items() if k[0] in self._runs}
            used: set[str] = set()
            for tasks in self._tasks.values():
                for row in tasks.values():
                    blob = row[_OUTPUT]
                    if isinstance(blob, _Blob):
                        used.add(blob.digest)
            for digest in set(self._blobs) - used:
                del self._blobs[digest]
            if self._objects is not None:  # values kept as they are: those of the runs left
                kept = {row[_OUTPUT] for tasks in self._tasks.values() for row in tasks.values()}
                kept.update(entry[0] for entry in self._cache.values())
                self._objects = {t: v for t, v in self._objects.items() if t in kept}
        drop_folders(default_run_dir(run_id) for run_id in gone)  # the runs' temporary folders
        return len(gone)

    def save_graph(self, fingerprint: str, graph: str) -> None:
        with self._lock:
            self._graphs.setdefault(fingerprint, graph)

    def graph(self, fingerprint: str) -> "dict[str, Any] | None":
        text = self._graphs.get(fingerprint)
        return None if text is None else json.loads(text)


class _Blob:
    __slots__ = ("digest",)

    def __init__(self, digest: str) -> None:
        self.digest = digest


def _copy_info(info: RunInfo) -> RunInfo:
    inputs = copy.deepcopy(info.inputs)
    return RunInfo(
        info.id, info.flow, info.fingerprint, inputs, info.status, info.started, info.finished, info.source,
        code=None if info.code is None else dict(info.code), limits=copy.deepcopy(info.limits),
    )
