"""Damaged stores: every damage is a ``StoreError`` naming what is damaged, and
never hides the rest.

Each test makes a store with two runs (one with a small output, a big output
kept as a blob, a map step's items, logs and a cached step), damages one
thing the way a disk, a crash or a hand edit can (a changed digit in a
blob, a truncated or missing file, flipped bytes, a record with a wrong
type), and checks what reading it gives: a :class:`StoreError` that names
the file or table, the run and the step; the other run still reads; a
damaged cache entry is a miss; the command line prints one line and exits 2.
"""

import json
import sqlite3
from pathlib import Path

import pytest

import microdag
from microdag import Flow
from microdag.stores import JSONStore, StoreError

from support import make_store, run_cli

CODECS = ("json", "pickle")


def small():
    return {"n": 12345}


def big():
    return "x" * 70_000


def square(x):
    print(f"squaring {x}")
    return x * x


def both(small, big, square):
    return [small["n"], len(big), sum(square)]


def cached(both):
    return 1


def make_flow() -> Flow:
    flow = Flow("damaged")
    flow.add("small", small)
    flow.add("big", big)
    flow.add("square", square, map="x")
    flow.add("both", both)
    flow.add("cached", cached, cache=True)
    return flow


@pytest.fixture(params=[(k, c) for k in ("sqlite", "json") for c in CODECS], ids=lambda p: f"{p[0]}-{p[1]}")
def made(request, tmp_path):
    """``(kind, codec, path, damaged run id, good run id)`` of a store with two runs."""
    kind, codec = request.param
    store = make_store(kind, tmp_path, codec)
    try:
        first = make_flow().run({"x": [1, 2, 3]}, store=store, run_id="victim")
        second = make_flow().run({"x": [4]}, store=store, run_id="other")
    finally:
        store.close()
    assert first.status == second.status == "succeeded"
    return kind, codec, tmp_path, "victim", "other"


def blob_of(kind: str, where: Path) -> Path:
    root = where / ("runs.db.blobs" if kind == "sqlite" else "store/blobs")
    blobs = [p for p in root.rglob("*") if p.is_file()]
    assert len(blobs) == 1
    return blobs[0]


def sql(where: Path, statement: str, *params) -> None:
    db = sqlite3.connect(where / "runs.db")
    with db:
        db.execute(statement, params)
    db.close()


def json_run_file(where: Path, run_id: str, name: str) -> Path:
    return where / "store" / "runs" / run_id / name


def reading(kind, codec, where, action):
    store = make_store(kind, where, codec)
    try:
        return action(store)
    finally:
        store.close()


def assert_store_error(kind, codec, where, action, *names) -> StoreError:
    with pytest.raises(StoreError) as info:
        reading(kind, codec, where, action)
    for name in names:
        assert name in str(info.value), (name, str(info.value))
    return info.value


# -- blobs -------------------------------------------------------------------------------


def test_a_blob_whose_content_changed_is_refused_naming_it(made) -> None:
    kind, codec, where, victim, _ = made
    blob = blob_of(kind, where)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit
    blob.write_bytes(bytes(data))
    assert_store_error(kind, codec, where, lambda s: s.output(victim, "big"), blob.name, "'big'", victim)
    assert_store_error(kind, codec, where, lambda s: s.load_run(victim).outputs["big"], blob.name)


@pytest.mark.parametrize("how", ["truncated", "missing", "empty"])
def test_a_truncated_or_missing_blob_is_refused_naming_it(made, how) -> None:
    kind, codec, where, victim, _ = made
    blob = blob_of(kind, where)
    if how == "missing":
        blob.unlink()
    else:
        blob.write_bytes(blob.read_bytes()[: 100 if how == "truncated" else 0])
    assert_store_error(kind, codec, where, lambda s: s.output(victim, "big"), blob.name, "'big'")
    assert_store_error(kind, codec, where, lambda s: s.tasks(victim), blob.name)


def test_a_resume_that_needs_a_damaged_blob_says_so(made) -> None:
    kind, codec, where, victim, _ = made
    blob_of(kind, where).unlink()
    store = make_store(kind, where, codec)
    try:
        with pytest.raises(StoreError, match="'big'"):
            make_flow().run(store=store, run_id=victim, resume=True, keep_outputs=True)
    finally:
        store.close()


def boom(big):
    raise ValueError("not yet")


@pytest.mark.parametrize("kind", ["sqlite", "json"])
def test_a_refused_resume_writes_nothing_but_its_released_claim(kind, tmp_path) -> None:
    flow = Flow("refused")
    flow.add("big", big)
    flow.add("boom", boom)
    store = make_store(kind, tmp_path, "json")
    try:
        with pytest.raises(microdag.RunFailed):
            flow.run(store=store, run_id="r1")
        before = store.run_info("r1")
        records = [(r.step, r.status, r.finished) for r in store.tasks("r1", outputs=False)]
    finally:
        store.close()
    blob = blob_of(kind, tmp_path)
    blob.write_bytes(blob.read_bytes()[:100])
    store = make_store(kind, tmp_path, "json")
    try:
        with pytest.raises(StoreError, match="'big'.* is damaged"):
            flow.run(store=store, run_id="r1", resume=True)
        after = store.run_info("r1")
        assert (after.status, after.finished) == (before.status, before.finished) == ("failed", before.finished)
        assert [(r.step, r.status, r.finished) for r in store.tasks("r1", outputs=False)] == records
        assert store.owner("r1") is None
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["sqlite", "json"])
def test_a_damaged_output_read_only_for_the_result_leaves_no_run_running(kind, tmp_path) -> None:
    """The output of a final step the run finished is read only when the
    resumed run's result is made: the run's end is recorded all the same."""
    flow = Flow("late")
    flow.add("big", big)
    flow.add("other", boom)
    store = make_store(kind, tmp_path, "json")
    try:
        with pytest.raises(microdag.RunFailed):
            flow.run(store=store, run_id="r1", on_failure="continue")
    finally:
        store.close()
    blob = blob_of(kind, tmp_path)
    blob.write_bytes(blob.read_bytes()[:100])
    fixed = Flow("late")
    fixed.add("big", big)
    fixed.add("other", lambda: "ok")
    store = make_store(kind, tmp_path, "json")
    try:
        with pytest.raises(StoreError, match="'big'.* is damaged"):
            fixed.run(store=store, run_id="r1", resume=True, force=True)
        assert store.run_info("r1").status == "succeeded"  # its steps all did; the error says what is damaged
        assert store.owner("r1") is None
    finally:
        store.close()


# -- records -----------------------------------------------------------------------------


def test_an_output_that_does_not_decode_is_refused_naming_the_step(made) -> None:
    kind, codec, where, victim, _ = made
    if kind == "sqlite":
        sql(where, "UPDATE tasks SET output = ? WHERE run_id = ? AND step = 'small'", b"\xff\x00garbage", victim)
    else:
        path = next(json_run_file(where, victim, "").glob("tasks-*.json"))
        rows = json.loads(path.read_text())
        for row in rows:
            if row["step"] == "small":
                row["output"] = "{not json" if codec == "json" else "!!!not base64"
        path.write_text(json.dumps(rows))
    assert_store_error(kind, codec, where, lambda s: s.output(victim, "small"), "'small'", victim)


def test_a_record_with_a_wrong_type_is_refused_naming_the_step(made) -> None:
    kind, codec, where, victim, _ = made
    if kind == "sqlite":
        sql(where, "UPDATE tasks SET attempts = 'many' WHERE run_id = ? AND step = 'both'", victim)
        names = ["'both'", victim]
    else:
        path = next(json_run_file(where, victim, "").glob("tasks-*.json"))
        rows = json.loads(path.read_text())
        for row in rows:
            if row["step"] == "both":
                row["attempts"] = "many"
        path.write_text(json.dumps(rows))
        names = ["'both'", victim, path.name]
    assert_store_error(kind, codec, where, lambda s: s.tasks(victim), *names)
    assert_store_error(kind, codec, where, lambda s: s.load_run(victim), *names)
    assert_store_error(kind, codec, where, lambda s: s.succeeded(victim), *names)  # (what a resume reads)


def test_a_truncated_task_file_is_refused_naming_it(made) -> None:
    kind, codec, where, victim, _ = made
    if kind == "sqlite":
        pytest.skip("SQLite keeps its records in one file, checked by SQLite")
    path = next(json_run_file(where, victim, "").glob("tasks-*.json"))
    path.write_bytes(path.read_bytes()[:40])
    assert_store_error(kind, codec, where, lambda s: s.tasks(victim), path.name, victim)


def test_an_unknown_status_reads_as_unknown_and_the_report_draws_it(made) -> None:
    kind, codec, where, victim, _ = made
    if kind == "sqlite":
        sql(where, "UPDATE tasks SET status = 'teleported' WHERE run_id = ? AND step = 'both'", victim)
    else:
        path = next(json_run_file(where, victim, "").glob("tasks-*.json"))
        rows = json.loads(path.read_text())
        for row in rows:
            if row["step"] == "both":
                row["status"] = "teleported"
        path.write_text(json.dumps(rows))
    run = reading(kind, codec, where, lambda s: s.load_run(victim))
    assert run.tasks["both"].status == "unknown"
    html = reading(kind, codec, where, lambda s: s.report(victim))
    assert "teleported" in html


# -- runs ---------------------------------------------------------------------------------


def damage_run_record(kind, where, victim) -> str:
    """Damage the run's own record; return the name that errors must give."""
    if kind == "sqlite":
        sql(where, "UPDATE runs SET inputs = ? WHERE id = ?", b"\x80\xff\x00", victim)
        return victim
    path = json_run_file(where, victim, "run.json")
    path.write_bytes(path.read_bytes()[:-7])
    return "run.json"


@pytest.mark.parametrize("schema", ['"1x"', "null", "[1]", "true", "1.5"])
def test_a_json_store_marker_whose_schema_is_not_a_number_is_damage(tmp_path, schema) -> None:
    JSONStore(tmp_path / "store").close()
    marker = tmp_path / "store" / "microdag-store.json"
    marker.write_text(marker.read_text().replace('"schema": 1', f'"schema": {schema}'))
    with pytest.raises(StoreError, match="microdag-store.json is damaged: its schema"):
        JSONStore(tmp_path / "store")


def one_json_run(where: Path) -> Path:
    """A JSON store under ``where`` with one run, ``r1``; its ``run.json``."""
    store = JSONStore(where / "store")
    try:
        make_flow().run({"x": [1]}, store=store, run_id="r1")
    finally:
        store.close()
    return json_run_file(where, "r1", "run.json")


def test_a_flipped_byte_in_a_run_record_is_damage_not_changed_code(tmp_path) -> None:
    path = one_json_run(tmp_path)
    data = path.read_bytes()
    digest = data.index(b'"code": {') + len(b'"code": {"small": "')
    flipped = bytearray(data)
    flipped[digest] ^= 0x01  # a hex digit of step 'small''s code digest
    path.write_bytes(bytes(flipped))
    store = JSONStore(tmp_path / "store")
    try:
        with pytest.raises(StoreError, match=r"run 'r1' .* is damaged: .*run.json: it does not match its checksum"):
            store.run_info("r1")
        with pytest.raises(StoreError, match="does not match its checksum"):
            make_flow().run(store=store, run_id="r1", resume=True)
    finally:
        store.close()


def test_a_run_record_written_before_checksums_still_loads(tmp_path) -> None:
    path = one_json_run(tmp_path)
    record = json.loads(path.read_bytes())
    record.pop("check", None)
    path.write_text(json.dumps(record))
    store = JSONStore(tmp_path / "store")
    try:
        assert store.run_info("r1").status == "succeeded"
        assert make_flow().run(store=store, run_id="r1", resume=True).status == "succeeded"
        assert "check" in json.loads(path.read_bytes())  # written again with one
    finally:
        store.close()


def test_a_damaged_run_never_hides_the_others(made) -> None:
    kind, codec, where, victim, other = made
    name = damage_run_record(kind, where, victim)
    assert_store_error(kind, codec, where, lambda s: s.run_info(victim), victim, name)
    runs = reading(kind, codec, where, lambda s: s.list_runs())
    by_id = {r.id: r for r in runs}
    assert set(by_id) == {victim, other}
    assert by_id[other].status == "succeeded" and by_id[other].problem is None
    assert by_id[victim].status == "damaged" and name in by_id[victim].problem
    assert reading(kind, codec, where, lambda s: s.load_run(other)).status == "succeeded"
    assert reading(kind, codec, where, lambda s: s.prune(older_than=0)) == 1  # not the damaged one
    assert [r.id for r in reading(kind, codec, where, lambda s: s.list_runs())] == [victim]


def test_a_damaged_cache_entry_is_a_miss(made, caplog) -> None:
    kind, codec, where, victim, _ = made
    if kind == "sqlite":
        sql(where, "UPDATE cache SET output = ?", b"\xff\xfe\x00")
    else:
        for path in (where / "store" / "cache").glob("*.json"):
            path.write_bytes(b"{trunc")
    store = make_store(kind, where, codec)
    try:
        run = make_flow().run({"x": [1, 2, 3]}, store=store, run_id="again")
    finally:
        store.close()
    assert run.status == "succeeded"
    assert run.tasks["cached"].cached is False  # the damaged entry was a miss, the step ran


# -- the command line ------------------------------------------------------------------------


def cli(where: Path, kind: str, *args: str, codec: str = "json"):
    """The command line on the store :func:`support.make_store` made in ``where``."""
    spec = f"sqlite:{where / 'runs.db'}" if kind == "sqlite" else f"json:{where / 'store'}"
    return run_cli(*args, "--store", f"{spec}?codec={codec}")


@pytest.mark.parametrize("command", ["show", "report", "logs"])
def test_the_cli_says_one_line_and_exits_2_on_a_damaged_run(made, command, tmp_path) -> None:
    kind, codec, where, victim, other = made
    damage_run_record(kind, where, victim)
    args = {"show": ["show", victim], "report": ["report", victim, "-o", str(tmp_path / "r.html")],
            "logs": ["logs", victim, "square", "--item", "0"]}[command]
    done = cli(where, kind, *args, codec=codec)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert victim in done.stderr


def test_the_cli_lists_the_runs_of_a_store_with_a_damaged_one(made) -> None:
    kind, codec, where, victim, other = made
    damage_run_record(kind, where, victim)
    done = cli(where, kind, "runs", codec=codec)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert other in done.stdout and victim in done.stdout and "damaged" in done.stdout


def test_the_cli_on_a_pickle_store_read_as_json_says_so(made) -> None:
    kind, codec, where, victim, _ = made
    if codec != "pickle":
        pytest.skip("a pickle store only")
    done = cli(where, kind, "show", victim)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
