"""Contract tests for the run stores.

One suite, run against every store (memory, JSON files, SQLite, PostgreSQL; with the
pickle codec too where the codec matters), holds each to the ``Store``
contract of ``microdag.stores._base``: what is saved reads back exactly, big
outputs are kept once by SHA-256, ``prune`` deletes runs and only their blobs,
flushed records survive in a new store object, concurrent writers lose
nothing, and every unusable file, directory or run id is a ``StoreError``
naming it that leaves the files as they were.
"""

import dataclasses
import hashlib
import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import microdag
from microdag.stores import (
    JSONStore,
    MemoryStore,
    PostgresStore,
    RunInfo,
    SQLiteStore,
    Store,
    StoreError,
    TaskRecord,
    open_store,
)
from microdag.stores._base import BLOB_SIZE, StoredError
from support import FILE_STORES, PERSISTENT
from support import STORE_KINDS as KINDS
from support import make_store as make

CODECS = ("json", "pickle")
T0 = 1_700_000_000.125  # a fixed wall-clock time for runs whose age does not matter
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


def reopen(store: Store) -> Store:
    """A new store object on the same path or database (what another process would see)."""
    return type(store)(getattr(store, "conninfo", None) or store.path, codec=store.codec)  # type: ignore[attr-defined, call-arg]


def blob_files(store: Store) -> dict[str, bytes]:
    """Every blob of the store (a file under its blobs directory; a row of PostgreSQL's
    ``blobs``): name -> content."""
    if isinstance(store, PostgresStore):
        return {sha: bytes(data) for sha, data in store._read("SELECT sha, data FROM blobs")}
    root = Path(store.blobs) if isinstance(store, SQLiteStore) else Path(store.path) / "blobs"  # type: ignore[attr-defined]
    if not root.exists():
        return {}
    return {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def blob_paths(store: Store) -> list[Path]:
    """Every file under the store's blobs directory (none in a database)."""
    if isinstance(store, PostgresStore):
        return []
    root = Path(store.blobs) if isinstance(store, SQLiteStore) else Path(store.path) / "blobs"  # type: ignore[attr-defined]
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_run(run_id: str = "r1", flow: str = "etl", started: float = T0, inputs: "dict | None" = None) -> RunInfo:
    return RunInfo(run_id, flow, "fp-" + flow, {"day": "2024-06-01"} if inputs is None else inputs, "running", started)


def big_json(tag: str, size: int = 70_000) -> bytes:
    """A JSON-encoded string output of ``size`` bytes (valid for either store codec's files)."""
    return b'"' + (tag.encode() * size)[: size - 2] + b'"'


def tree(root: Path) -> dict[str, "bytes | None"]:
    """Everything under ``root``: relative path -> bytes (``None`` for directories)."""
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = None if p.is_dir() else p.read_bytes()
    return out


@pytest.fixture(params=[(k, c) for k in KINDS for c in CODECS], ids=lambda p: f"{p[0]}-{p[1]}")
def cstore(request: pytest.FixtureRequest, tmp_path: Path):
    """Every store with each codec."""
    s = make(request.param[0], tmp_path, codec=request.param[1])
    yield s
    s.close()


@pytest.fixture(params=[(k, c) for k in PERSISTENT for c in CODECS], ids=lambda p: f"{p[0]}-{p[1]}")
def pstore(request: pytest.FixtureRequest, tmp_path: Path):
    """The stores that outlive their object, with each codec."""
    s = make(request.param[0], tmp_path, codec=request.param[1])
    yield s
    s.close()


def sample_records(store: Store) -> list[TaskRecord]:
    """One record of each kind a runner writes, every field set where it can be."""
    return [
        TaskRecord("extract", -1, "succeeded", 1, T0 + 1.5, T0 + 2.75, output=store.encode({"rows": [1, 2.5, "é"]}, "o")),
        TaskRecord(
            "transform", -1, "failed", 3, T0 + 3.0, T0 + 4.0625,
            "ValueError", "bad row 7: 'ünïcode'\nsecond line",
            'Traceback (most recent call last):\n  File "etl.py", line 3, in transform\nValueError: bad row 7\n',
        ),
        TaskRecord("load", -1, "skipped", 0),
        TaskRecord("stream", -1, "running", 2, T0 + 5.0),
        TaskRecord("fan", 0, "succeeded", 1, T0 + 6.0, T0 + 6.5, output=store.encode([0, None], "o")),
        TaskRecord("report", -1, "cancelled", 1, T0 + 7.0, T0 + 7.0, "Cancelled", "", ""),
        TaskRecord("audit"),
    ]


# -- round trips ---------------------------------------------------------------------


def test_run_info_round_trips(cstore: Store) -> None:
    inputs = {"day": "2024-06-01", "n": 3, "ratio": 0.25, "tags": ["a", "é"], "cfg": {"dry": True, "x": None}}
    cstore.begin(RunInfo("run-1", "etl", "fp-abc", inputs, "running", T0))
    got = cstore.run_info("run-1")
    assert (got.id, got.flow, got.fingerprint, got.inputs, got.status, got.started, got.finished) == (
        "run-1", "etl", "fp-abc", inputs, "running", T0, None,
    )
    cstore.finish("run-1", "succeeded", T0 + 9.5)
    got = cstore.run_info("run-1")
    assert (got.status, got.finished, got.inputs, got.started) == ("succeeded", T0 + 9.5, inputs, T0)


def test_every_task_field_survives(cstore: Store) -> None:
    cstore.begin(new_run())
    records = sample_records(cstore)
    cstore.save("r1", records[:3])
    cstore.save("r1", records[3:])
    cstore.flush()
    assert cstore.tasks("r1") == records
    assert cstore.output("r1", "extract") == {"rows": [1, 2.5, "é"]}
    assert cstore.output("r1", "fan", 0) == [0, None]


def test_a_store_reads_its_own_saves_before_flush(store: Store) -> None:
    store.begin(new_run())
    records = sample_records(store)
    store.save("r1", records)
    assert store.tasks("r1") == records
    assert store.output("r1", "extract") == {"rows": [1, 2.5, "é"]}


def test_later_saves_replace_but_keep_first_saved_order(store: Store) -> None:
    store.begin(new_run())
    store.save("r1", [TaskRecord("a"), TaskRecord("b"), TaskRecord("c")])
    store.flush()
    b2 = TaskRecord("b", status="running", attempts=1, started=T0 + 1)
    store.save("r1", [b2])
    a2 = TaskRecord("a", status="succeeded", attempts=1, started=T0, finished=T0 + 1, output=b"1")
    store.save("r1", [TaskRecord("d"), a2])
    store.flush()
    b3 = TaskRecord("b", status="failed", attempts=2, started=T0 + 2, finished=T0 + 3, error_type="E", error_message="m")
    d2 = TaskRecord("d", status="succeeded", attempts=1, output=b"2")
    store.save("r1", [TaskRecord("d", status="running"), d2, b3])  # the last of one save wins too
    assert store.tasks("r1") == [a2, b3, TaskRecord("c"), d2]
    store.flush()
    assert store.tasks("r1") == [a2, b3, TaskRecord("c"), d2]
    # a replacement without an output drops the old output
    store.save("r1", [TaskRecord("a", status="pending")])
    store.flush()
    assert store.tasks("r1")[0] == TaskRecord("a", status="pending")
    with pytest.raises(KeyError):
        store.output("r1", "a")


def test_a_resumed_run_keeps_first_saved_order_in_another_store_object(pstore: Store) -> None:
    """A second store object on the file (opened before the run was written,
    like a long-lived service resuming a run another process started) appends
    new tasks after the existing ones and replaces old ones in place."""
    later = reopen(pstore)
    pstore.begin(new_run())
    pstore.save("r1", [TaskRecord("a"), TaskRecord("b"), TaskRecord("c")])
    pstore.flush()
    later.save("r1", [TaskRecord("d", status="succeeded"), TaskRecord("b", status="succeeded")])
    later.flush()
    expected = [TaskRecord("a"), TaskRecord("b", status="succeeded"), TaskRecord("c"), TaskRecord("d", status="succeeded")]
    assert later.tasks("r1") == expected
    assert reopen(pstore).tasks("r1") == expected
    later.close()


def test_map_items_are_separate_tasks(cstore: Store) -> None:
    enc = cstore.encode
    cstore.begin(new_run())
    cstore.save("r1", [TaskRecord("m", -1, "running", 1)])
    cstore.save("r1", [TaskRecord("m", i, "succeeded", 1, output=enc(i * 10, "o")) for i in range(4)])
    cstore.save("r1", [TaskRecord("m", 2, "failed", 2, error_type="KeyError", error_message="'x'")])
    cstore.save("r1", [TaskRecord("m", -1, "failed", 1, output=enc([0, 10, None, 30], "o"))])
    cstore.flush()
    records = cstore.tasks("r1")
    assert [(r.step, r.item, r.status) for r in records] == [
        ("m", -1, "failed"), ("m", 0, "succeeded"), ("m", 1, "succeeded"), ("m", 2, "failed"), ("m", 3, "succeeded"),
    ]
    assert cstore.output("r1", "m", 1) == 10
    assert cstore.output("r1", "m", 3) == 30
    assert cstore.output("r1", "m") == [0, 10, None, 30]
    with pytest.raises(KeyError):
        cstore.output("r1", "m", 2)


def test_output_of_a_task_without_one_is_a_key_error(store: Store) -> None:
    store.begin(new_run())
    store.save("r1", [TaskRecord("failed", status="failed", error_type="E", error_message="m")])
    for step, item in (("failed", -1), ("never-saved", -1), ("failed", 0)):
        with pytest.raises(KeyError):
            store.output("r1", step, item)


def test_list_runs_newest_first_with_flow_and_limit(store: Store) -> None:
    for run_id, flow, started in [
        ("b1", "billing", T0 + 20), ("e1", "etl", T0 + 10), ("e3", "etl", T0 + 30),
        ("b2", "billing", T0 + 40), ("e2", "etl", T0 + 15),
    ]:
        store.begin(new_run(run_id, flow, started))
    store.finish("e3", "failed", T0 + 31)

    def ids(runs: "list[RunInfo]") -> list[str]:
        return [r.id for r in runs]

    assert ids(store.list_runs()) == ["b2", "e3", "b1", "e2", "e1"]
    assert ids(store.list_runs(flow="etl")) == ["e3", "e2", "e1"]
    assert ids(store.list_runs(limit=2)) == ["b2", "e3"]
    assert ids(store.list_runs(flow="billing", limit=1)) == ["b2"]
    assert store.list_runs(flow="nope") == []
    e3 = store.list_runs(flow="etl", limit=1)[0]
    assert (e3.flow, e3.status, e3.started, e3.finished, e3.inputs) == ("etl", "failed", T0 + 30, T0 + 31, {"day": "2024-06-01"})


def test_load_run_rebuilds_the_run(cstore: Store) -> None:
    enc = cstore.encode
    cstore.begin(new_run(inputs={"day": "2024-06-01", "limit": 5}))
    cstore.save("r1", [
        TaskRecord("extract", -1, "succeeded", 1, T0 + 1, T0 + 2, output=enc({"rows": [1, 2, 3]}, "o")),
        TaskRecord("fan", -1, "succeeded", 1, T0 + 2, T0 + 3, output=enc([10, 20], "o")),
        TaskRecord("fan", 0, "succeeded", 1, T0 + 2, T0 + 2.5, output=enc(10, "o")),
        TaskRecord("fan", 1, "succeeded", 2, T0 + 2, T0 + 3, output=enc(20, "o")),
        TaskRecord("transform", -1, "failed", 3, T0 + 3, T0 + 8, "ValueError", "bad row 7", "Traceback ...\nValueError: bad row 7\n"),
        TaskRecord("notify", -1, "failed", 1, T0 + 3, T0 + 4, "TimeoutError", "took 30 s", "tb-notify"),
        TaskRecord("load", -1, "skipped", 0),
        TaskRecord("report", -1, "cancelled", 0),
        TaskRecord("audit", -1, "pending", 0),
        TaskRecord("stream", -1, "running", 1, T0 + 5),
    ])
    cstore.finish("r1", "failed", T0 + 9)

    run = cstore.load_run("r1")
    assert isinstance(run, microdag.Run)
    assert (run.id, run.flow, run.status, run.inputs) == ("r1", "etl", "failed", {"day": "2024-06-01", "limit": 5})
    assert (run.started, run.finished) == (T0, T0 + 9)
    tasks = run.tasks
    assert list(tasks) == ["extract", "fan", "transform", "notify", "load", "report", "audit", "stream"]
    assert {name: (t.status, t.attempts) for name, t in tasks.items()} == {
        "extract": ("succeeded", 1), "fan": ("succeeded", 1), "transform": ("failed", 3), "notify": ("failed", 1),
        "load": ("skipped", 0), "report": ("cancelled", 0), "audit": ("pending", 0), "stream": ("running", 1),
    }
    assert (tasks["extract"].started, tasks["extract"].finished) == (T0 + 1, T0 + 2)
    assert (tasks["stream"].started, tasks["stream"].finished) == (T0 + 5, None)
    assert (tasks["load"].started, tasks["load"].error) == (None, None)

    err = tasks["transform"].error
    assert isinstance(err, StoredError)
    assert str(err) == "ValueError: bad row 7"
    assert (err.type_name, err.traceback) == ("ValueError", "Traceback ...\nValueError: bad row 7\n")
    assert isinstance(run.error, StoredError)
    assert str(run.error) == "TimeoutError: took 30 s"  # the failure that finished first
    assert tasks["extract"].error is None

    assert sorted(run.outputs) == ["extract", "fan"]
    assert run["extract"] == {"rows": [1, 2, 3]}
    assert run.outputs["fan"] == [10, 20]
    assert "transform" not in run.outputs
    with pytest.raises(KeyError, match="failed"):
        run["transform"]


def test_load_run_decodes_outputs_only_when_read(cstore: Store) -> None:
    """An output that no longer decodes (say, a pickled class that was
    removed) does not keep the run from loading; only reading it fails."""
    cstore.begin(new_run())
    cstore.save("r1", [
        TaskRecord("good", -1, "succeeded", 1, output=cstore.encode({"ok": 1}, "o")),
        TaskRecord("stale", -1, "succeeded", 1, output=b"{no longer decodable"),
    ])
    cstore.finish("r1", "succeeded", T0 + 1)
    run = cstore.load_run("r1")
    assert "stale" in run.outputs
    assert run["good"] == {"ok": 1}
    with pytest.raises(Exception):
        run["stale"]


# -- codecs --------------------------------------------------------------------------

JSON_VALUES = [
    None, True, False, 0, -7, 2**70, 1.5, -0.0, 1e300, "", "héllo\n\t\"q\" \\ 🙂",
    [], {}, [1, "a", None, [2.5, {"k": [True, 1, 1.0]}]], {"nested": {"deep": [1, 2, {"x": None}]}, "": 0},
]


def test_json_codec_round_trips_json_values_exactly(store: Store) -> None:
    store.begin(new_run())
    store.save("r1", [TaskRecord(f"s{i}", output=store.encode(v, "o")) for i, v in enumerate(JSON_VALUES)])
    store.flush()
    for i, value in enumerate(JSON_VALUES):
        got = store.output("r1", f"s{i}")
        assert got == value and repr(got) == repr(value)  # repr: no bool/int/float or -0.0 drift


@pytest.mark.parametrize(
    "value, type_name",
    [
        ((1, 2), "tuple"),
        ({1, 2}, "set"),
        (frozenset({1}), "frozenset"),
        ({1: "one"}, "int"),
        ({("a", 1): 2}, "tuple"),
        (float("nan"), "float"),
        (float("inf"), "float"),
        (float("-inf"), "float"),
        (object(), "object"),
        (b"raw", "bytes"),
        (Point(1, 2), "Point"),
        ({"rows": [1, {"at": (2, 3)}]}, "tuple"),
        ([1.0, {"x": float("nan")}], "float"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v,
)
def test_json_codec_refuses_what_json_cannot_hold_exactly(store: Store, value: object, type_name: str) -> None:
    with pytest.raises(TypeError) as info:
        store.encode(value, "the output of step 'shape'")
    message = str(info.value)
    assert type_name in message
    assert "codec='pickle'" in message
    assert "the output of step 'shape'" in message


def test_json_codec_refuses_a_value_that_contains_itself() -> None:
    """A cyclic value is refused with an error instead of hanging the run."""
    code = textwrap.dedent(
        """
        from microdag.stores import MemoryStore
        a = []; a.append(a)
        d = {}; d["self"] = d
        for value in (a, d):
            try:
                MemoryStore(codec="json").encode(value, "the output of step 'walk'")
            except (TypeError, ValueError) as exc:
                print("refused:", type(exc).__name__)
        """
    )
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3, env=dict(os.environ))
    except subprocess.TimeoutExpired:
        pytest.fail("Store.encode(a list that contains itself) did not return within 3 s")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("refused:") == 2


def test_json_codec_takes_a_file_name_that_is_not_utf8(store: Store) -> None:
    """``os.listdir`` gives such names as str with lone surrogates: the codec
    stores them exactly or refuses them with its TypeError, never crashes."""
    value = {"files": [os.fsdecode(b"report-\xe9.csv"), "ok.csv"]}
    try:
        data = store.encode(value, "the output of step 'ls'")
    except TypeError as exc:
        assert "codec='pickle'" in str(exc)
        return
    store.begin(new_run())
    store.save("r1", [TaskRecord("ls", output=data)])
    store.flush()
    assert store.output("r1", "ls") == value


PICKLE_ONLY = [
    (1, (2, 3)), {1, 2}, frozenset({"a"}), {1: "one", (2, 3): "pair"}, float("inf"), b"\x00\xffraw",
    Point(1, 2), {"rows": [1, {"at": (2, 3)}]}, [float("-inf"), {"x": Point(0, 0)}],
]


@pytest.mark.parametrize("kind", KINDS)
def test_pickle_codec_round_trips_what_json_refuses(kind: str, tmp_path: Path) -> None:
    s = make(kind, tmp_path, codec="pickle")
    s.begin(new_run())
    values = [*PICKLE_ONLY, float("nan")]
    s.save("r1", [TaskRecord(f"s{i}", output=s.encode(v, "o")) for i, v in enumerate(values)])
    s.flush()
    for i, value in enumerate(PICKLE_ONLY):
        got = s.output("r1", f"s{i}")
        assert got == value and type(got) is type(value)
    assert math.isnan(s.output("r1", f"s{len(PICKLE_ONLY)}"))
    s.close()


@pytest.mark.parametrize("kind", KINDS)
def test_inputs_follow_the_codec(kind: str, tmp_path: Path) -> None:
    """A run's inputs are held to the codec like outputs: the JSON codec
    refuses a tuple (in every store alike), the pickle codec keeps it."""
    (tmp_path / "j").mkdir()
    (tmp_path / "p").mkdir()
    js, pk = make(kind, tmp_path / "j"), make(kind, tmp_path / "p", codec="pickle")
    with pytest.raises(TypeError, match="tuple"):
        js.begin(new_run(inputs={"shape": (2, 3)}))
    pk.begin(new_run(inputs={"shape": (2, 3)}))
    assert pk.run_info("r1").inputs == {"shape": (2, 3)}
    assert type(pk.run_info("r1").inputs["shape"]) is tuple
    js.close()
    pk.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_begin_leaves_the_run_id_free(kind: str, tmp_path: Path) -> None:
    """After ``begin`` refuses a run's inputs, the same run id can begin with good ones."""
    s = make(kind, tmp_path)
    with pytest.raises(TypeError):
        s.begin(new_run("nightly-2024-06-01", inputs={"when": {1, 2}}))
    with pytest.raises(StoreError):
        s.run_info("nightly-2024-06-01")
    assert s.list_runs() == []
    s.begin(new_run("nightly-2024-06-01", inputs={"when": [1, 2]}))
    assert s.run_info("nightly-2024-06-01").inputs == {"when": [1, 2]}
    s.close()


# -- big outputs and prune -----------------------------------------------------------


def test_big_outputs_are_kept_once_by_sha256(cstore: Store) -> None:
    shared = cstore.encode({"blob": "s" * 70_000}, "o")
    other = cstore.encode({"blob": "o" * 90_000}, "o")
    edge = big_json("e", BLOB_SIZE)  # exactly the threshold: a blob
    small = big_json("m", BLOB_SIZE - 1)  # one byte less: inline
    assert len(shared) >= BLOB_SIZE and len(other) >= BLOB_SIZE
    cstore.begin(new_run("r1"))
    cstore.begin(new_run("r2", started=T0 + 1))
    r1 = [TaskRecord("a", output=shared), TaskRecord("b", output=other), TaskRecord("c", output=shared),
          TaskRecord("m", 0, output=edge), TaskRecord("n", output=small)]
    r2 = [TaskRecord("a", output=shared)]
    cstore.save("r1", r1)
    cstore.save("r2", r2)
    cstore.flush()
    assert cstore.tasks("r1") == r1
    assert cstore.tasks("r2") == r2
    assert cstore.output("r1", "b") == {"blob": "o" * 90_000}
    if not isinstance(cstore, MemoryStore):
        assert blob_files(cstore) == {sha(shared): shared, sha(other): other, sha(edge): edge}
        assert reopen(cstore).tasks("r1") == r1


def _runs(store: Store, spec: "list[tuple[str, str, float]]") -> None:
    for run_id, flow, started in spec:
        store.begin(new_run(run_id, flow, started))
        store.finish(run_id, "succeeded", started + 1)


def test_prune_older_than(store: Store) -> None:
    now = time.time()
    _runs(store, [("old", "etl", now - 1000), ("older", "billing", now - 5000), ("new", "etl", now - 5)])
    assert store.prune() == 0
    assert store.prune(older_than=100) == 2
    assert [r.id for r in store.list_runs()] == ["new"]
    for gone in ("old", "older"):
        with pytest.raises(StoreError, match=gone):
            store.run_info(gone)
    assert store.prune(older_than=100) == 0


def test_prune_keep_last_per_flow(store: Store) -> None:
    _runs(store, [(f"e{i}", "etl", T0 + i) for i in range(4)] + [("b0", "billing", T0), ("b1", "billing", T0 + 9)])
    assert store.prune(keep_last=2) == 2
    assert [r.id for r in store.list_runs()] == ["b1", "e3", "e2", "b0"]
    assert store.prune(keep_last=2) == 0


def test_prune_older_than_and_keep_last_together(store: Store) -> None:
    now = time.time()
    _runs(store, [
        ("e-new1", "etl", now - 2), ("e-new2", "etl", now - 1), ("e-old1", "etl", now - 1000), ("e-old2", "etl", now - 2000),
        ("b-old", "billing", now - 3000),
    ])
    # the newest run of each flow stays whatever its age; younger runs stay too
    assert store.prune(older_than=100, keep_last=1) == 2
    assert [r.id for r in store.list_runs()] == ["e-new2", "e-new1", "b-old"]


def test_prune_removes_only_blobs_no_remaining_run_uses(store: Store) -> None:
    now = time.time()
    only_old, shared, only_new = big_json("A"), big_json("S"), big_json("B")
    store.begin(new_run("old", started=now - 1000))
    store.save("old", [TaskRecord("a", output=only_old), TaskRecord("s", output=shared)])
    store.flush()
    if not isinstance(store, MemoryStore):  # the old run wrote its blobs back then
        for path in blob_paths(store):
            os.utime(path, (now - 1000, now - 1000))
    store.begin(new_run("new", started=now))
    new_records = [TaskRecord("s", output=shared), TaskRecord("b", output=only_new)]
    store.save("new", new_records)
    store.flush()
    assert store.prune(older_than=100) == 1
    assert store.tasks("new") == new_records
    with pytest.raises(StoreError, match="old"):
        store.tasks("old")
    if not isinstance(store, MemoryStore):
        assert set(blob_files(store)) == {sha(shared), sha(only_new)}
        assert reopen(store).tasks("new") == new_records


def test_prune_keeps_big_outputs_of_saves_not_yet_flushed(store: Store) -> None:
    """Pruning old runs while another run of this store object is in
    progress must not delete the big outputs that run saved."""
    now = time.time()
    live = big_json("L")
    store.begin(new_run("old", started=now - 1000))
    store.begin(new_run("live", started=now))
    store.save("live", [TaskRecord("a", status="succeeded", output=live)])
    assert store.prune(older_than=100) == 1
    store.flush()
    assert store.tasks("live")[0].output == live


def test_prune_elsewhere_keeps_big_outputs_of_a_run_in_progress(pstore: Store) -> None:
    """A prune through another store object (a cron job, another process)
    while a run is in progress must not delete big outputs that run saved
    and has not flushed yet: once flushed, they must read back."""
    now = time.time()
    live = big_json("L")
    pstore.begin(new_run("old", started=now - 1000))
    pstore.begin(new_run("live", started=now))
    pstore.flush()
    pstore.save("live", [TaskRecord("a", status="succeeded", output=live)])
    cron = reopen(pstore)
    assert cron.prune(older_than=100) == 1
    pstore.flush()
    assert reopen(pstore).tasks("live")[0].output == live
    cron.close()


# -- durability ----------------------------------------------------------------------


def test_flushed_records_survive_in_a_new_store_object(pstore: Store) -> None:
    pstore.begin(new_run(inputs={"day": "2024-06-01", "n": 3}))
    records = sample_records(pstore) + [TaskRecord("big", output=big_json("x"))]
    records += [TaskRecord(f"s{i}", i % 3 - 1, "succeeded", 1, T0 + i, T0 + i + 0.5, output=b"%d" % i) for i in range(300)]
    for start in range(0, len(records), 70):
        pstore.save("r1", records[start : start + 70])
    pstore.flush()
    other = reopen(pstore)
    assert other.tasks("r1") == records
    assert other.run_info("r1").inputs == {"day": "2024-06-01", "n": 3}
    assert [r.id for r in other.list_runs()] == ["r1"]
    pstore.finish("r1", "succeeded", T0 + 400)
    info = reopen(pstore).run_info("r1")
    assert (info.status, info.finished) == ("succeeded", T0 + 400)
    other.close()


def test_finish_makes_saves_durable(pstore: Store) -> None:
    pstore.begin(new_run())
    records = sample_records(pstore)
    pstore.save("r1", records)
    pstore.finish("r1", "failed", T0 + 10)
    other = reopen(pstore)
    assert other.tasks("r1") == records
    assert other.run_info("r1").status == "failed"
    other.close()


def test_unflushed_records_are_whole_or_absent(pstore: Store) -> None:
    pstore.begin(new_run())
    first = [TaskRecord(f"f{i}", status="running", attempts=1, started=T0 + i) for i in range(20)]
    pstore.save("r1", first)
    pstore.flush()
    second = [TaskRecord(f"f{i}", -1, "succeeded", 1, T0 + i, T0 + i + 1, output=pstore.encode({"i": i}, "o")) for i in range(20)]
    fresh = [TaskRecord(f"n{i}", -1, "failed", 2, T0, T0 + 1, "E", f"message {i}", "tb " * 50) for i in range(300)]
    for start in range(0, 320, 40):
        pstore.save("r1", (second + fresh)[start : start + 40])
    allowed = {(r.step, r.item): [r] for r in fresh}
    for old, new in zip(first, second):
        allowed[(old.step, old.item)] = [old, new]
    other = reopen(pstore)
    seen = other.tasks("r1")
    assert {(r.step, r.item) for r in first} <= {(r.step, r.item) for r in seen}
    for record in seen:
        assert record in allowed[(record.step, record.item)]
    pstore.flush()
    assert reopen(pstore).tasks("r1") == second + fresh
    other.close()


# -- errors --------------------------------------------------------------------------


def test_a_taken_run_id_is_refused_and_the_run_kept(store: Store) -> None:
    store.begin(new_run("nightly-7"))
    store.save("nightly-7", [TaskRecord("a", status="succeeded", output=b"1")])
    store.flush()
    with pytest.raises(StoreError, match="nightly-7"):
        store.begin(new_run("nightly-7", flow="other", started=T0 + 5))
    info = store.run_info("nightly-7")
    assert (info.flow, info.started) == ("etl", T0)
    assert store.tasks("nightly-7") == [TaskRecord("a", status="succeeded", output=b"1")]


@pytest.mark.parametrize("method", ["run_info", "tasks", "load_run"])
def test_an_unknown_run_id_is_a_store_error_naming_it(store: Store, method: str) -> None:
    store.begin(new_run("known"))
    with pytest.raises(StoreError, match="no-such-run-42"):
        getattr(store, method)("no-such-run-42")


def test_open_store_specs(tmp_path: Path) -> None:
    assert isinstance(open_store("memory"), MemoryStore)
    assert open_store("memory", codec="pickle").codec == "pickle"
    js = open_store(f"json:{tmp_path / 'js'}", codec="pickle")
    assert isinstance(js, JSONStore) and Path(js.path) == tmp_path / "js" and js.codec == "pickle"
    sq = open_store(f"sqlite:{tmp_path / 'runs.data'}")
    assert isinstance(sq, SQLiteStore) and Path(sq.path) == tmp_path / "runs.data" and sq.codec == "json"
    for name in ("a.db", "b.sqlite", "c.sqlite3"):
        s = open_store(str(tmp_path / name))
        assert isinstance(s, SQLiteStore) and Path(s.path) == tmp_path / name
        s.begin(new_run())
        s.close()
        assert (tmp_path / name).is_file()
    mine = MemoryStore()
    assert open_store(mine) is mine
    sq.close()


@pytest.mark.parametrize("spec", ["postgre://host/runs", "runs.txt", "runs", "", "mem", 42])
def test_open_store_unknown_spec_is_a_value_error(spec: object) -> None:
    with pytest.raises(ValueError) as info:
        open_store(spec)  # type: ignore[arg-type]
    if isinstance(spec, str) and spec:
        assert spec in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_an_unknown_codec_is_a_value_error(kind: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="yaml"):
        make(kind, tmp_path, codec="yaml")


@pytest.mark.parametrize("kind", FILE_STORES)  # (a database has no directory)
def test_a_store_in_a_missing_directory_is_a_store_error_naming_it(kind: str, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(StoreError, match=re.escape(str(missing))):
        make(kind, missing)
    spec = f"json:{missing / 'store'}" if kind == "json" else str(missing / "runs.db")
    with pytest.raises(StoreError, match=re.escape(str(missing))):
        open_store(spec)
    assert not (tmp_path / "no").exists()


def _sqlite_store_with_records(path: Path) -> None:
    s = SQLiteStore(path)
    s.begin(new_run())
    s.save("r1", [TaskRecord(f"s{i}", status="succeeded", output=big_json(str(i % 10), 2000)) for i in range(300)])
    s.finish("r1", "succeeded", T0 + 1)
    s.close()


def _corrupt_root_page(path: Path, table: str) -> None:
    _sqlite_store_with_records(path)
    con = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    (root,) = con.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    con.close()
    data = bytearray(path.read_bytes())
    data[(root - 1) * page_size : root * page_size] = b"\xff" * page_size
    path.write_bytes(bytes(data))


def _not_sqlite(path: Path) -> None:
    path.write_bytes(b"my notes, not a database\n" * 40)


def _other_app(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO users VALUES (1, 'ada')")
    con.commit()
    con.close()


def _other_app_with_meta(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute("INSERT INTO meta VALUES ('app', 'photos'), ('schema', '1')")
    con.commit()
    con.close()


def _schema_99(path: Path) -> None:
    s = SQLiteStore(path)
    s.begin(new_run())
    s.close()
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    con.commit()
    con.close()


def _truncated(path: Path) -> None:
    _sqlite_store_with_records(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "spoil",
    [
        _not_sqlite, _other_app, _other_app_with_meta, _schema_99, _truncated,
        lambda p: _corrupt_root_page(p, "tasks"), lambda p: _corrupt_root_page(p, "runs"),
    ],
    ids=["not-sqlite", "other-app", "other-app-meta", "schema-99", "truncated", "corrupt-tasks", "corrupt-runs"],
)
def test_sqlite_refuses_an_unusable_file_and_leaves_it_unchanged(spoil, tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    spoil(path)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=re.escape(str(path))):
        s = SQLiteStore(path)  # refused here, or at the latest when the runs are read
        try:
            for info in s.list_runs():
                s.tasks(info.id)
            s.tasks("r1")
        finally:
            s.close()
    assert path.read_bytes() == before
    assert not Path(str(path) + ".blobs").exists()


def _json_other_files(path: Path) -> None:
    path.mkdir()
    (path / "notes.txt").write_text("mine")
    (path / "data").mkdir()
    (path / "data" / "x.csv").write_text("a,b\n")


def _json_marker(content: bytes):
    def spoil(path: Path) -> None:
        JSONStore(path).begin(new_run())
        (path / "microdag-store.json").write_bytes(content)

    return spoil


@pytest.mark.parametrize(
    "spoil",
    [
        _json_other_files,
        _json_marker(b'{"app": "microdag", "schema": 99}'),
        _json_marker(b'{"app": "photos", "schema": 1}'),
        _json_marker(b'{"app": "micro'),
        lambda p: p.write_text("a file, not a directory"),
    ],
    ids=["other-files", "schema-99", "other-app", "half-written-marker", "a-file"],
)
def test_json_refuses_an_unusable_directory_and_leaves_it_unchanged(spoil, tmp_path: Path) -> None:
    path = tmp_path / "store"
    spoil(path)
    before = tree(tmp_path)
    with pytest.raises(StoreError, match=re.escape(str(path))):
        JSONStore(path)
    with pytest.raises(StoreError, match=re.escape(str(path))):
        open_store(f"json:{path}")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("codec", CODECS)
def test_json_store_ignores_what_a_crash_leaves_behind(codec: str, tmp_path: Path) -> None:
    s = JSONStore(tmp_path / "store", codec=codec)
    s.begin(new_run())
    group1 = sample_records(s)
    s.save("r1", group1)
    s.flush()
    s.close()
    run_dir = tmp_path / "store" / "runs" / "r1"
    assert (run_dir / "tasks-000001.json").is_file()
    whole = json.dumps([{"step": "lost", "item": -1, "status": "succeeded", "attempts": 1}]).encode()
    (run_dir / "tasks-000002.json.1234.tmp").write_bytes(whole[: len(whole) // 2])
    (run_dir / "run.json.1234.tmp").write_bytes(b'{"id": "r1", "flo')
    (tmp_path / "store" / "runs" / "begun").mkdir()  # a crash between creating a run and writing its record

    after = JSONStore(tmp_path / "store", codec=codec)  # the next process
    assert after.tasks("r1") == group1
    assert [r.id for r in after.list_runs()] == ["r1"]
    more = [TaskRecord("extract", status="failed", attempts=2), TaskRecord("late", status="succeeded", output=b"7")]
    after.save("r1", more)
    after.finish("r1", "failed", T0 + 3)
    expected = [more[0], *group1[1:], more[1]]
    assert JSONStore(tmp_path / "store", codec=codec).tasks("r1") == expected
    assert after.run_info("r1").status == "failed"


def _make_read_only(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)


def _make_writable(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


@pytest.mark.skipif(AS_ROOT, reason="root ignores file permissions")
@pytest.mark.parametrize("kind", FILE_STORES)  # (file permissions)
def test_a_read_only_store_reads_but_refuses_writes(kind: str, tmp_path: Path) -> None:
    s = make(kind, tmp_path)
    s.begin(new_run())
    records = sample_records(s)
    s.save("r1", records)
    s.flush()
    s.close()
    target = tmp_path / "store" if kind == "json" else tmp_path / "runs.db"
    _make_read_only(target)
    try:
        ro = make(kind, tmp_path)
        assert ro.tasks("r1") == records
        assert [r.id for r in ro.list_runs()] == ["r1"]
        with pytest.raises(StoreError, match=re.escape(str(target))):
            ro.begin(new_run("r2"))
        with pytest.raises(StoreError, match=re.escape(str(target))):
            ro.save("r1", [TaskRecord("more", status="succeeded")])
            ro.flush()
        with pytest.raises(StoreError, match=re.escape(str(target))):
            ro.finish("r1", "succeeded", T0 + 1)
    finally:
        _make_writable(target)


@pytest.mark.skipif(AS_ROOT, reason="root ignores file permissions")
@pytest.mark.parametrize("kind", FILE_STORES)  # (file permissions)
def test_a_store_that_cannot_write_a_big_output_says_so_with_a_store_error(kind: str, tmp_path: Path) -> None:
    s = make(kind, tmp_path)
    s.begin(new_run())
    s.flush()
    s.close()
    root = tmp_path / "store" if kind == "json" else tmp_path / "runs.db.blobs"
    root.mkdir(exist_ok=True)
    _make_read_only(root)
    try:
        ro = make(kind, tmp_path)
        with pytest.raises(StoreError):
            ro.save("r1", [TaskRecord("big", status="succeeded", output=big_json("b"))])
            ro.flush()
    finally:
        _make_writable(root)


# -- concurrency ---------------------------------------------------------------------


def test_two_threads_saving_at_once(store: Store) -> None:
    n = 300
    store.begin(new_run("shared"))
    for t in range(2):
        store.begin(new_run(f"own{t}", started=T0 + t))
    start = threading.Barrier(2)
    errors: list[str] = []

    def expected(t: int, run: str) -> list[TaskRecord]:
        big = big_json(f"{t}", BLOB_SIZE + 100)
        return [TaskRecord(f"t{t}-{i}", -1, "succeeded", 1, T0 + i, T0 + i + 1,
                           output=big if i % 100 == 0 else store.encode({"t": t, "i": i, "run": run}, "o")) for i in range(n)]

    def work(t: int) -> None:
        try:
            start.wait()
            own, shared = expected(t, f"own{t}"), expected(t, "shared")
            for k in range(0, n, 15):
                store.save(f"own{t}", own[k : k + 15])
                store.save("shared", shared[k : k + 15])
                if k % 45 == 0:
                    store.flush()
                    store.tasks("shared")
                    store.list_runs()
        except BaseException as exc:  # reported below
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    store.flush()
    for t in range(2):
        assert store.tasks(f"own{t}") == expected(t, f"own{t}")
    shared = store.tasks("shared")
    assert len(shared) == 2 * n
    for t in range(2):  # each thread's records, in its order
        assert [r for r in shared if r.step.startswith(f"t{t}-")] == expected(t, "shared")


@pytest.mark.parametrize("kind", PERSISTENT)
def test_two_store_objects_in_one_process_save_the_same_big_output_at_once(kind: str, tmp_path: Path) -> None:
    """Two runs in threads of one process, each with its own store object on
    the same path (``flow.run(store="runs.db")`` twice), may produce the same
    big output at the same moment: both saves succeed and read back."""
    stores = [make(kind, tmp_path), make(kind, tmp_path)]
    errors: list[str] = []
    for trial in range(8):
        big = big_json(os.urandom(8).hex(), 300_000)
        start = threading.Barrier(2)

        def work(i: int) -> None:
            try:
                stores[i].begin(new_run(f"r{trial}-{i}"))
                start.wait()
                stores[i].save(f"r{trial}-{i}", [TaskRecord("load", status="succeeded", output=big)])
                stores[i].flush()
            except BaseException as exc:  # reported below
                errors.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == [], f"trial {trial}"
        for i in range(2):
            assert reopen(stores[0]).tasks(f"r{trial}-{i}") == [TaskRecord("load", status="succeeded", output=big)]
    for s in stores:
        s.close()


WRITER = textwrap.dedent(
    """
    import sys, time
    from microdag.stores import SQLiteStore, RunInfo, TaskRecord
    path, run_id, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = SQLiteStore(path)
    store.begin(RunInfo(run_id, "flow-" + run_id, "fp", {"who": run_id}, "running", time.time()))
    big = b'"' + run_id.encode() * 40000 + b'"'
    for start in range(0, n, 40):
        store.save(run_id, [TaskRecord(f"s{i}", -1, "succeeded", 1, 1.0, 2.0,
                                       output=big if i == 0 else b"%d" % i) for i in range(start, start + 40)])
        if start % 120 == 0:
            store.flush()
    store.finish(run_id, "succeeded", time.time())
    store.close()
    """
)


@pytest.mark.parametrize("existing", [False, True], ids=["new-file", "existing-file"])
def test_two_processes_write_one_sqlite_file_at_once(existing: bool, tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    if existing:
        SQLiteStore(path).close()
    n = 1200
    env = dict(os.environ)
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), run_id, str(n)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for run_id in ("p1", "p2")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    s = SQLiteStore(path)
    assert sorted(r.id for r in s.list_runs()) == ["p1", "p2"]
    for run_id in ("p1", "p2"):
        info = s.run_info(run_id)
        assert (info.status, info.flow, info.inputs) == ("succeeded", "flow-" + run_id, {"who": run_id})
        records = s.tasks(run_id)
        assert [r.step for r in records] == [f"s{i}" for i in range(n)]
        assert records[0].output == b'"' + run_id.encode() * 40000 + b'"'
        assert all(r.status == "succeeded" and r.output == b"%d" % i for i, r in enumerate(records) if i)
    s.close()


def test_a_run_keeps_the_source_it_was_started_from(pstore: Store) -> None:
    pstore.begin(RunInfo("r1", "etl", "fp", {}, "running", T0, source="/flows/etl.toml"))
    pstore.begin(new_run("r2"))
    pstore.flush()
    again = reopen(pstore)
    assert again.run_info("r1").source == "/flows/etl.toml"
    assert again.run_info("r2").source is None
    assert sorted(str(r.source) for r in again.list_runs()) == ["/flows/etl.toml", "None"]
    again.close()


def test_a_graph_is_kept_once_per_fingerprint(store: Store) -> None:
    first = json.dumps({"nodes": ["a", "b <&>"], "deps": [[], [0]]})
    store.save_graph("fp1", first)
    store.save_graph("fp1", json.dumps({"nodes": ["other"], "deps": [[]]}))
    assert store.graph("fp1") == {"nodes": ["a", "b <&>"], "deps": [[], [0]]}
    assert store.graph("fp2") is None


def test_a_kept_graph_survives_in_a_new_store_object(pstore: Store) -> None:
    pstore.save_graph("0123abcd", json.dumps({"nodes": ["x"], "deps": [[]]}))
    pstore.flush()
    again = reopen(pstore)
    assert again.graph("0123abcd") == {"nodes": ["x"], "deps": [[]]}
    again.close()


def test_a_store_made_before_graphs_and_sources_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE graphs")
    db.execute("ALTER TABLE runs DROP COLUMN source")
    db.execute("ALTER TABLE runs DROP COLUMN code")
    db.execute("ALTER TABLE runs DROP COLUMN limits")
    db.execute("INSERT INTO runs VALUES ('old', 'etl', 'fp', '{}', 'succeeded', 1.0, 2.0)")
    db.commit()
    db.close()
    store = SQLiteStore(path)
    assert store.run_info("old").source is None and store.run_info("old").code is None
    store.save_graph("fp", json.dumps({"nodes": ["a"], "deps": [[]]}))
    assert store.graph("fp") == {"nodes": ["a"], "deps": [[]]}
    store.close()


def test_a_lone_record_is_committed_within_the_group_time_without_another_save(pstore: Store) -> None:
    """A long step after a short one: the short one's record must not wait for
    the next save to be committed."""
    pstore.begin(new_run())
    pstore.save("r1", [TaskRecord("short", -1, "succeeded", 1, T0, T0 + 1, output=b"1")])
    deadline = time.monotonic() + 10
    while True:
        other = reopen(pstore)
        try:
            if [r.step for r in other.tasks("r1")] == ["short"]:
                break
        finally:
            other.close()
        assert time.monotonic() < deadline, "the record was never committed"
        time.sleep(0.1)


def test_retried_attempts_are_kept_by_step_item_and_attempt(pstore: Store) -> None:
    pstore.begin(new_run())
    pstore.begin(new_run("r2"))
    pstore.save_attempt("r1", "load", -1, 2, T0 + 2, T0 + 3, "OSError", "disk <full>")
    pstore.save_attempt("r1", "load", -1, 1, T0, T0 + 1, "TimeoutError", "timed out after 1 s")
    pstore.save_attempt("r1", "fan", 4, 1, T0 + 5, T0 + 5.5, "ValueError", "bad item 'é'")
    pstore.save_attempt("r2", "load", -1, 1, T0, T0 + 1, "OSError", "other run")
    pstore.flush()
    again = reopen(pstore)
    assert again.attempts("r1") == [
        ("fan", 4, 1, T0 + 5, T0 + 5.5, "ValueError", "bad item 'é'"),
        ("load", -1, 1, T0, T0 + 1, "TimeoutError", "timed out after 1 s"),
        ("load", -1, 2, T0 + 2, T0 + 3, "OSError", "disk <full>"),
    ]
    assert again.prune(keep_last=0, older_than=0) == 2
    again.close()


def test_attempts_of_an_unknown_run_is_a_store_error(store: Store) -> None:
    with pytest.raises(StoreError, match="nope"):
        store.attempts("nope")


def test_logged_lists_the_tasks_with_logs(store: Store) -> None:
    store.begin(new_run("r1"))
    store.save_logs("r1", "a", -1, 1, "one")
    store.save_logs("r1", "b.c <x>", 3, 2, "two")
    store.save_logs("r1", "b.c <x>", 3, 1, "three")
    store.flush()
    asked = [("a", -1), ("b.c <x>", 3), ("b.c <x>", 2), ("d", -1)]
    assert store.logged("r1", asked) == {("a", -1), ("b.c <x>", 3)}
    assert store.logged("r1", []) == set()


def test_owner_reads_the_claim_without_taking_it(store: Store) -> None:
    store.begin(new_run("r1"))
    owner = store.owner("r1")
    assert owner is not None and owner.split("#")[0].endswith(f":{os.getpid()}")
    assert store.owner("r1") == owner  # reading changes nothing
    store.finish("r1", "succeeded", 2.0)
    store.release("r1")
    assert store.owner("r1") is None
    with pytest.raises(StoreError, match="nope"):
        store.owner("nope")


@pytest.mark.parametrize("kind", PERSISTENT)
def test_a_claim_is_atomic_across_store_objects(kind, tmp_path, monkeypatch) -> None:
    """Four store objects on one path claim one run at once, while writing the
    owner is slow: exactly one claim succeeds, the others name the owner."""
    import threading

    import microdag.stores._json as json_store

    first = make(kind, tmp_path)
    first.begin(new_run("r1"))
    first.release("r1")  # a run nobody holds, as after a crash of its owner
    real_write = json_store.write_atomic

    def slow_write(path, data):
        if path.endswith("owner"):
            time.sleep(0.05)  # widen the window between reading and writing the owner
        real_write(path, data)

    monkeypatch.setattr(json_store, "write_atomic", slow_write)
    stores = [reopen(first) for _ in range(4)]
    barrier = threading.Barrier(4)
    outcomes: list = []

    def claim(store):
        barrier.wait()
        try:
            store.claim("r1")
            outcomes.append("claimed")
        except StoreError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcomes.count("claimed") == 1, outcomes
    assert all("is live in another process" in o for o in outcomes if o != "claimed")
    for s in stores:
        s.release("r1")  # only the holder's release clears the claim
        s.close()
    again = reopen(first)
    again.claim("r1")  # free again once its holder let go
    again.release("r1")
    again.close()
    first.close()


def test_an_sqlite_store_opened_read_only_reads_and_refuses_writes(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "runs.db")
    s.begin(new_run())
    records = sample_records(s)
    s.save("r1", records)
    s.close()
    ro = SQLiteStore(tmp_path / "runs.db", readonly=True)
    try:
        assert ro.readonly
        assert ro.tasks("r1") == records and [r.id for r in ro.list_runs()] == ["r1"]
        assert "<html" in ro.report("r1")
        with pytest.raises(StoreError, match="runs.db"):
            ro.begin(new_run("r2"))
    finally:
        ro.close()
    with pytest.raises(StoreError, match="no store"):
        SQLiteStore(tmp_path / "missing.db", readonly=True)


def test_an_sqlite_store_whose_folder_cannot_be_written_opens_read_only(tmp_path: Path, monkeypatch) -> None:
    """Where SQLite cannot write the file or make its WAL files (a read-only
    folder: simulated, as root writes anywhere), the store opens read-only
    instead of failing, so that show, runs, logs and report still work."""
    s = SQLiteStore(tmp_path / "runs.db")
    s.begin(new_run())
    s.save("r1", sample_records(s))
    s.close()
    real_connect = sqlite3.connect

    def connect(database, *args, **kwargs):
        if not kwargs.get("uri"):
            raise sqlite3.OperationalError("unable to open database file")
        if "mode=ro" in str(database):  # no WAL index can be made here either
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    ro = SQLiteStore(tmp_path / "runs.db")
    try:
        assert ro.readonly
        assert [r.id for r in ro.list_runs()] == ["r1"]
    finally:
        ro.close()


def test_the_task_summary_counts_every_task_and_picks_the_first_and_the_failed(store) -> None:
    """``show``'s view of a big run: the same answer from every store, read
    without the whole run where the store can (SQLite)."""
    from microdag.stores import Store

    flow = microdag.Flow("summary")

    def ok(**deps):
        return "out"

    def boom(**deps):
        raise ValueError("boom")

    names = [f"s{i}" for i in range(300)]
    flow.add_many(names, ok, depends_on=[[names[i - 1]] if i % 10 else [] for i in range(300)])
    for i in (5, 150, 299):
        flow.add(f"bad{i}", boom, depends_on=[names[i]])
    run = flow.run(store=store, on_failure="continue", raise_on_failure=False)
    counts, picked = store.task_summary(run.id, 10, 2)
    every = store.tasks(run.id)
    assert counts == {"succeeded": 300, "failed": 3}
    assert [r.step for r in picked] == [r.step for r in every[:10]] + [
        r.step for r in every if r.status == "failed"][:2]
    assert picked[0].output == every[0].output
    assert Store.task_summary(store, run.id, 10, 2) == (counts, picked)
    with pytest.raises(microdag.stores.StoreError):
        store.task_summary("no-such-run", 10, 2)


def test_the_sqlite_stores_opening_names_every_table_it_makes() -> None:
    import re

    from microdag.stores import _sqlite, _sqlite_file

    tables = re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", _sqlite_file._TABLES)
    assert len(tables) == 8
    assert [t for t in tables if f"``{t}``" not in _sqlite.__doc__] == []
