"""The JSON-files store: a directory of plain files, one subdirectory per run.

Layout::

    DIR/microdag-store.json          {"app": "microdag", "schema": 1}
    DIR/runs/<run id>/run.json       the run's record, rewritten as it changes, ending
                                     with "check": the SHA-256 of the record before it
    DIR/runs/<run id>/tasks-<n>.json one group of task records per commit
    DIR/blobs/<ab>/<sha256>          encoded outputs of 64 KiB and more

Every file is written atomically (temporary file, fsync, ``os.replace``, fsync
of the directory), so a crash leaves each file whole, old or new.  Task
records are appended as numbered groups (a log): reading replays the groups
in order, a later record of a task replacing an earlier one, and ignores the
temporary files a crash can leave behind.  A run's record that does not match
its checksum is damaged, never read as what it now says (a flipped digit of a
code digest is not "code changed"); one written before checksums has none, and
loads.  A group is written as soon as
the successes in it hold ``WORK_SECONDS`` (0.1 s) of step time, every
:data:`GROUP` records, :data:`GROUP_SECONDS` after its oldest record, and by
``flush``/``finish``.
"""

import base64
import json
import os
import threading
import time

from .._errors import StoreError
from .._records import RunInfo, TaskRecord, check_run_id, check_task, limits_of
from ._base import WORK_SECONDS, Store, _CommitTimer
from ._codec import settle_codec
from ._files import BLOB_SIZE, FileLock, checksum, doomed, drop_blobs, put_blob, read_blob, write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from .._typed import Converter

SCHEMA = 1
GROUP = 1024
GROUP_SECONDS = 0.5
_MARKER = "microdag-store.json"
#: The keys of a run's record written before checksums (any other is damage).
_RUN_KEYS = frozenset({"id", "flow", "fingerprint", "inputs", "status", "started", "finished", "source", "code"})
_CHECK = b', "check": "'


class JSONStore(Store):
    """Runs kept as JSON files in a directory.

    Args:
        path: the directory (created when missing; its parent must exist).
        codec: ``"json"`` or ``"pickle"`` (trusted data only); default: the
            codec the store records (a new store: ``"json"``); see
            :class:`~microdag.stores.SQLiteStore`.

    Raises:
        StoreError: the parent directory is missing, or the directory holds
            other files and is not a microdag store, or has a newer schema.
    """

    def __init__(self, path: "str | os.PathLike[str]", codec: "str | None" = None) -> None:
        super().__init__(codec)
        self.path = os.fspath(path)
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise StoreError(f"cannot open store {self.path!r}: directory {parent!r} does not exist")
        marker = os.path.join(self.path, _MARKER)
        if os.path.isdir(self.path) and os.path.exists(marker):
            try:
                with open(marker, "rb") as f:
                    meta = json.load(f)
            except (OSError, ValueError) as exc:
                raise StoreError(f"{self.path!r} is not a usable microdag store: {exc}") from None
            if not isinstance(meta, dict) or meta.get("app") != "microdag":
                raise StoreError(f"{self.path!r} is not a microdag store")
            schema = meta.get("schema", 0)
            if type(schema) is not int:
                raise StoreError(f"{marker} is damaged: its schema is {schema!r}, not a number")
            if schema > SCHEMA:
                raise StoreError(
                    f"{self.path!r} has store schema {meta['schema']}, newer than this "
                    f"microdag's ({SCHEMA}): upgrade microdag to use it"
                )
            runs = os.path.join(self.path, "runs")
            if not os.path.isdir(runs):  # a crash right after the marker was written
                self._create(runs)
            recorded = meta.get("codec")
            self.codec = settle_codec(codec, recorded if isinstance(recorded, str) else None, self.path)
        elif os.path.isdir(self.path) and _foreign(os.listdir(self.path)):
            raise StoreError(f"{self.path!r} is a directory with other files, not a microdag store")
        else:  # new, or left empty by a crash while it was being made
            self._create(self.path)
            try:
                write_atomic(marker, json.dumps({"app": "microdag", "schema": SCHEMA, "codec": self.codec}).encode())
            except OSError as exc:
                raise StoreError(f"cannot create store {self.path!r}: {exc}") from None
            self._create(os.path.join(self.path, "runs"))
        self._lock = threading.RLock()
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._groups: dict[str, int] = {}
        self._since: dict[str, float] = {}  # run id -> when its oldest pending record came
        self._work: dict[str, float] = {}  # run id -> seconds of step time its pending records hold
        self._timer = _CommitTimer(self.flush, GROUP_SECONDS)
        # run id -> its encoded outputs by (step, item), read once, kept current
        self._outputs: dict[str, dict[tuple[str, int], bytes]] = {}

    def _create(self, folder: str) -> None:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create store {self.path!r}: {exc}") from None

    def _run_dir(self, run_id: str) -> str:
        if not run_id or "/" in run_id or "\\" in run_id or run_id in (".", ".."):
            raise StoreError(f"run id {run_id!r} cannot name a directory")
        return os.path.join(self.path, "runs", run_id)

    def _write_info(self, info: RunInfo) -> None:
        record = {
            "id": info.id,
            "flow": info.flow,
            "fingerprint": info.fingerprint,
            "inputs": self._bytes_out(self.encode(info.inputs, "the run's inputs")),
            "status": info.status,
            "started": info.started,
            "finished": info.finished,
            "source": info.source,
            "code": info.code,
        }
        if info.limits is not None:  # (a run with pools or rates; older files have none)
            record["limits"] = info.limits
        body = json.dumps(record).encode()
        signed = body[:-1] + _CHECK + checksum(body).encode() + b'"}'
        try:
            write_atomic(os.path.join(self._run_dir(info.id), "run.json"), signed)
        except OSError as exc:
            raise StoreError(f"cannot write to store {self.path!r}: {exc}") from None

    def _bytes_out(self, data: bytes) -> str:
        return data.decode() if self.codec == "json" else base64.b64encode(data).decode()

    def _bytes_in(self, text: str) -> bytes:
        return text.encode() if self.codec == "json" else base64.b64decode(text)

    # -- writing -----------------------------------------------------------------------

    def begin(self, info: RunInfo) -> None:
        check_run_id(info.id)
        folder = self._run_dir(info.id)
        self.encode(info.inputs, "the run's inputs")  # refuse before taking the id
        with self._lock:
            try:
                os.mkdir(folder)
            except FileExistsError:
                pass  # taken, or a begin that a crash cut short: the record says which
            except OSError as exc:
                raise StoreError(f"cannot write to store {self.path!r}: {exc}") from None
            try:
                with FileLock(os.path.join(folder, "owner.lock")):  # one begin at a time
                    if os.path.exists(os.path.join(folder, "run.json")):
                        raise StoreError(f"a run with id {info.id!r} is already in store {self.path!r}")
                    self._write_info(info)
                    write_atomic(os.path.join(folder, "owner"), self._new_claim(info.id).encode())
            except OSError as exc:
                raise StoreError(f"cannot write to store {self.path!r}: {exc}") from None

    def save(self, run_id: str, records: "Iterable[TaskRecord]") -> None:
        with self._lock:
            pending = self._pending.setdefault(run_id, [])
            work = self._work.get(run_id, 0.0)
            if not pending:
                self._since[run_id] = time.monotonic()
                self._timer.arm()
            for r in records:
                row: dict[str, Any] = {name: getattr(r, name) for name in TaskRecord.__slots__}
                if r.key is None:  # (only a keyed map's items have one; older files have none)
                    del row["key"]
                if r.waited is None:  # (only a run with pools or rates times waits)
                    del row["waited"]
                if r.output is not None:
                    if len(r.output) >= BLOB_SIZE:
                        row["output"] = None
                        row["output_ref"] = self._put_blob(r.output)
                    else:
                        row["output"] = self._bytes_out(r.output)
                pending.append(row)
                if r.status == "succeeded" and r.started is not None and r.finished is not None:
                    work += r.finished - r.started  # (the work lost if this record were)
            self._work[run_id] = work
            late = time.monotonic() - self._since[run_id] >= GROUP_SECONDS
            if work >= WORK_SECONDS or len(pending) >= GROUP or late:
                self._commit(run_id)

    def _commit(self, run_id: str) -> None:
        pending = self._pending.get(run_id)
        if not pending:
            return
        folder = self._run_dir(run_id)
        n = self._groups.get(run_id)
        if n is None:
            try:
                n = len([name for name in os.listdir(folder) if _is_group(name)])
            except FileNotFoundError:
                raise StoreError(f"no run {run_id!r} in store {self.path!r}") from None
        try:
            write_atomic(os.path.join(folder, f"tasks-{n + 1:06d}.json"), json.dumps(pending).encode())
        except OSError as exc:
            raise StoreError(f"cannot write to store {self.path!r}: {exc}") from None
        self._groups[run_id] = n + 1
        self._outputs.pop(run_id, None)  # read again when next asked
        pending.clear()
        self._work[run_id] = 0.0

    def flush(self) -> None:
        with self._lock:
            for run_id in list(self._pending):
                self._commit(run_id)

    def finish(self, run_id: str, status: str, finished: "float | None") -> None:
        with self._lock:
            lost = None
            try:
                self._commit(run_id)
            except StoreError as exc:  # a full disk: the end is kept without them, as after a crash
                if status == "running":
                    raise
                lost = exc
                self._pending.pop(run_id, None)
            info = self.run_info(run_id)
            info.status = status
            info.finished = finished
            self._write_info(info)
            if lost is not None:
                raise lost

    def _put_blob(self, data: bytes) -> str:
        return put_blob(os.path.join(self.path, "blobs"), data, self.path)

    # -- reading -------------------------------------------------------------------------

    def run_info(self, run_id: str) -> RunInfo:
        path = os.path.join(self._run_dir(run_id), "run.json")
        try:
            with open(path, "rb") as f:
                data = f.read()
            r = json.loads(data)
            _check_record(r, data)
        except FileNotFoundError:
            raise StoreError(f"no run {run_id!r} in store {self.path!r}") from None
        except (OSError, ValueError) as exc:
            raise StoreError(f"run {run_id!r} in store {self.path!r} is damaged: {path}: {exc}") from None
        try:
            return self._info(r)
        except Exception as exc:  # a missing key, a wrong type, inputs that do not decode
            raise StoreError(
                f"run {run_id!r} in store {self.path!r} is damaged: {path}: {type(exc).__name__}: {exc}"
            ) from None

    def _info(self, r: "Any") -> RunInfo:
        """A ``run.json`` record as a :class:`RunInfo`, checked."""
        if not isinstance(r, dict):
            raise TypeError("not a record")
        inputs = self.decode(self._bytes_in(r["inputs"]))
        fields = (r["id"], r["flow"], r["fingerprint"], r["status"])
        if not all(type(v) is str for v in fields) or not isinstance(inputs, dict):
            raise TypeError("a field has the wrong type")
        started, finished = r["started"], r["finished"]
        if type(started) not in (int, float) or (finished is not None and type(finished) not in (int, float)):
            raise TypeError("its start or finish is not a time")
        source = r.get("source")
        code = r.get("code")
        return RunInfo(*fields[:3], inputs, fields[3], started, finished, source if type(source) is str else None,
                       code=code if isinstance(code, dict) else None, limits=limits_of(r.get("limits")))

    def tasks(self, run_id: str, outputs: bool = True) -> "list[TaskRecord]":
        self.run_info(run_id)
        folder = self._run_dir(run_id)
        with self._lock:
            self._commit(run_id)
            names = sorted(name for name in os.listdir(folder) if _is_group(name))
        merged: dict[tuple[str, int], TaskRecord] = {}
        for name in names:
            path = os.path.join(folder, name)
            try:
                with open(path, "rb") as f:
                    rows = json.load(f)
                if not isinstance(rows, list):
                    raise ValueError("not a list of records")
            except (OSError, ValueError) as exc:
                raise StoreError(f"run {run_id!r} in store {self.path!r} is damaged: {path}: {exc}") from None
            for row in rows:
                record = self._task(row, run_id, path, outputs)
                merged[(record.step, record.item)] = record  # a later record wins, in first place
        return list(merged.values())

    def _task(self, row: "Any", run_id: str, path: str, outputs: bool) -> TaskRecord:
        """One row of a task group file as a checked :class:`TaskRecord`."""
        step = row.get("step") if isinstance(row, dict) else None
        try:
            if not isinstance(row, dict):
                raise ValueError("it is not a record")
            ref = row.get("output_ref")
            output = row.get("output")
            if not outputs:
                output = None
            elif ref is not None:
                item = row.get("item")
                where = self._where(run_id, str(step), item if type(item) is int else -1)
                if type(ref) is not str or len(ref) != 64:
                    raise ValueError(f"its blob reference is {ref!r}")
                output = read_blob(os.path.join(self.path, "blobs"), ref, where)
            elif output is not None:
                if type(output) is not str:
                    raise ValueError("its output is not text")
                output = self._bytes_in(output)
            return check_task(
                step, row.get("item"), row.get("status"), row.get("attempts"), row.get("started"),
                row.get("finished"), row.get("error_type"), row.get("error_message"), row.get("traceback"), output,
                row.get("key"), row.get("waited"),
            )
        except ValueError as exc:  # (binascii.Error, UnicodeError are ValueErrors)
            raise StoreError(
                f"the record of step {step!r} of run {run_id!r} in store {self.path!r} is damaged: "
                f"{os.path.basename(path)}: {exc}"
            ) from None

    def output(self, run_id: str, step: str, item: int = -1, typed: "Converter | None" = None) -> "Any":
        with self._lock:
            self._commit(run_id)
            outputs = self._outputs.get(run_id)
            if outputs is None:
                outputs = self._outputs[run_id] = {
                    (r.step, r.item): r.output for r in self.tasks(run_id) if r.output is not None
                }
            data = outputs.get((step, item))
        if data is None:
            raise KeyError(f"run {run_id} has no stored output for step {step!r}")
        return self._decoded(data, self._where(run_id, step, item), typed)

    def save_logs(self, run_id: str, step: str, item: int, attempt: int, text: str) -> None:
        folder = os.path.join(self._run_dir(run_id), "logs")
        name = f"{_safe(step)}.{item}.{attempt}.txt"
        try:
            os.makedirs(folder, exist_ok=True)
            write_atomic(os.path.join(folder, name), text.encode("utf-8", "surrogatepass"))
        except OSError as exc:
            raise StoreError(f"cannot write to store {self.path!r}: {exc}") from None

    def save_attempt(
        self, run_id: str, step: str, item: int, attempt: int, started: float, finished: float,
        error_type: str, error_message: str,
    ) -> None:
        folder = os.path.join(self._run_dir(run_id), "attempts")
        record = [step, item, attempt, started, finished, error_type, error_message]
        try:
            os.makedirs(folder, exist_ok=True)
            write_atomic(os.path.join(folder, f"{_safe(step)}.{item}.{attempt}.json"), json.dumps(record).encode())
        except OSError as exc:
            raise StoreError(f"cannot write to store {self.path!r}: {exc}") from None

    def attempts(self, run_id: str) -> "list[tuple[str, int, int, float, float, str, str]]":
        self.run_info(run_id)
        folder = os.path.join(self._run_dir(run_id), "attempts")
        out = []
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.endswith(".json") and not name.startswith("."):
                    try:
                        with open(os.path.join(folder, name), "rb") as f:
                            out.append(tuple(json.load(f)))
                    except (OSError, ValueError):
                        continue  # a file a crash cut short
        return sorted(out)

    def attempt_logs(self, run_id: str, step: str, item: int) -> "list[tuple[int, str]]":
        folder = os.path.join(self._run_dir(run_id), "logs")
        prefix = f"{_safe(step)}.{item}."
        out = []
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.startswith(prefix) and name.endswith(".txt"):
                    attempt = name[len(prefix) : -4]
                    if attempt.isdigit():
                        with open(os.path.join(folder, name), "rb") as f:
                            out.append((int(attempt), _text(f.read())))
        return sorted(out)

    def logged(self, run_id: str, tasks: "Iterable[tuple[str, int]]") -> "set[tuple[str, int]]":
        folder = os.path.join(self._run_dir(run_id), "logs")
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return set()
        prefixes = {name.rsplit(".", 2)[0] for name in names if name.endswith(".txt") and name.count(".") >= 3}
        return {(step, item) for step, item in tasks if f"{_safe(step)}.{item}" in prefixes}

    def owner(self, run_id: str) -> "str | None":
        self.run_info(run_id)
        try:
            with open(os.path.join(self._run_dir(run_id), "owner"), encoding="utf-8") as f:
                return f.read().strip() or None
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read store {self.path!r}: {exc}") from None

    def _update_owner(
        self, run_id: str, change: "Callable[[str | None], str | None]"
    ) -> "tuple[str | None, str | None]":
        self.run_info(run_id)
        folder = self._run_dir(run_id)
        path = os.path.join(folder, "owner")
        try:
            with self._lock, FileLock(os.path.join(folder, "owner.lock")):  # across processes
                try:
                    with open(path, encoding="utf-8") as f:
                        before: str | None = f.read().strip() or None
                except FileNotFoundError:
                    before = None
                after = change(before)
                if after is None:
                    if before is not None:
                        os.remove(path)
                elif after != before:
                    write_atomic(path, after.encode())
        except OSError as exc:
            raise StoreError(f"cannot write to store {self.path!r}: {exc}") from None
        return before, after

    def cache_get(self, key: str) -> "tuple[bytes, float] | None":
        try:
            with open(os.path.join(self.path, "cache", f"{key}.json"), "rb") as f:
                entry = json.load(f)
            return self._bytes_in(entry["output"]), float(entry["created"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):  # damaged: a miss
            return None

    def cache_put(self, key: str, output: bytes, created: float) -> None:
        folder = os.path.join(self.path, "cache")
        try:
            os.makedirs(folder, exist_ok=True)
            entry = {"output": self._bytes_out(output), "created": created}
            write_atomic(os.path.join(folder, f"{key}.json"), json.dumps(entry).encode())
        except OSError as exc:
            raise StoreError(f"cannot write to store {self.path!r}: {exc}") from None

    def list_runs(self, flow: "str | None" = None, limit: "int | None" = None) -> "list[RunInfo]":
        runs = []
        for run_id in os.listdir(os.path.join(self.path, "runs")):
            if not os.path.exists(os.path.join(self.path, "runs", run_id, "run.json")):
                continue  # a run directory a crash left before its record
            try:
                info = self.run_info(run_id)
            except StoreError as exc:
                info = RunInfo.damaged(run_id, str(exc))
            if flow is None or info.flow == flow:
                runs.append(info)
        runs.sort(key=lambda r: (r.started, r.id), reverse=True)
        return runs if limit is None else runs[:limit]

    def prune(self, older_than: "float | None" = None, keep_last: "int | None" = None) -> int:
        import shutil  # (import time: shutil loads on first use)

        self.flush()
        gone = doomed(self.list_runs(), older_than, keep_last)
        with self._lock:
            for run_id in gone:
                shutil.rmtree(self._run_dir(run_id))
            used: set[str | None] = set()
            readable = True
            for run_id in os.listdir(os.path.join(self.path, "runs")):
                folder = self._run_dir(run_id)
                for name in os.listdir(folder):
                    if _is_group(name):
                        try:
                            with open(os.path.join(folder, name), "rb") as f:
                                used.update(row.get("output_ref") for row in json.load(f))
                        except (OSError, ValueError, AttributeError, TypeError):
                            readable = False  # a damaged group may name blobs: keep them all
            if readable:
                drop_blobs(os.path.join(self.path, "blobs"), used, self.list_runs())
        return len(gone)

    def _graph_path(self, fingerprint: str) -> str:
        return os.path.join(self.path, "graphs", _safe(fingerprint) + ".json")

    def save_graph(self, fingerprint: str, graph: str) -> None:
        path = self._graph_path(fingerprint)
        if os.path.exists(path):
            return
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_atomic(path, graph.encode())
        except OSError as exc:
            raise StoreError(f"cannot write to store {self.path!r}: {exc}") from None

    def graph(self, fingerprint: str) -> "dict[str, Any] | None":
        try:
            with open(self._graph_path(fingerprint), "rb") as f:
                return json.load(f)  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StoreError(f"the graph {fingerprint} in store {self.path!r} is unreadable: {exc}") from None

    def run_dir(self, run_id: str) -> str:
        return os.path.join(self._run_dir(run_id), "work")

    def close(self) -> None:
        self._timer.cancel()
        self.flush()

    def __repr__(self) -> str:
        return f"JSONStore({self.path!r})"


def _check_record(r: "Any", data: bytes) -> None:
    """Check a run's record against its checksum (see the module docs).

    Raises:
        ValueError: it does not match, or it has no checksum and a key that a
            record written before checksums never had.
    """
    if not isinstance(r, dict):
        return  # (refused by the reading of its fields)
    if "check" not in r:
        if not _RUN_KEYS.issuperset(r):
            raise ValueError("it has no checksum and unknown keys")
        return
    end = data.rfind(_CHECK)
    if end < 0 or data[end + len(_CHECK):] != f'{r["check"]}"}}'.encode() or (
        checksum(data[:end] + b"}") != r["check"]
    ):
        raise ValueError("it does not match its checksum")


def _text(data: bytes) -> str:
    """Log text as written (lone surrogates kept: ``surrogatepass``; files of
    older versions used ``surrogateescape``)."""
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return data.decode("utf-8", "surrogateescape")


def _foreign(names: "list[str]") -> bool:
    """Whether a store directory without its marker holds anything a crash of
    this store could not have left (its ``runs`` folder, temporary files)."""
    return any(name != "runs" and not name.endswith(".tmp") for name in names)


def _safe(step: str) -> str:
    """A step name as a file name (hex for anything unusual, so names never clash)."""
    if step.replace("_", "").replace("-", "").isalnum() and not step.startswith("."):
        return step
    return "%" + step.encode("utf-8", "surrogatepass").hex()


def _is_group(name: str) -> bool:
    return name.startswith("tasks-") and name.endswith(".json")
