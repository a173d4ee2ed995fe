"""Pools, rates and the time steps waited for them, as stores keep them and
``show``, the HTML report and the UI's API show them.

A run with pools or rates records with each task (a step or a map item) the
seconds its attempt waited for room in its pools or a rate's token
(``TaskRecord.waited``, ``Task.waited``), and with its record its pools, rates
and each step's uses (``RunInfo.limits``); a run without them records
neither (``None``).  A store made before these existed gains their columns
when first opened, and its runs read as before.
"""

import json
import sqlite3
import time
from pathlib import Path

import pytest

from microdag import Flow
from microdag.stores import SQLiteStore, Store
from microdag.ui._runs import run_detail
from support import cli

#: How long each ``db`` step holds the pool (of one unit): the second waits about as long.
HOLD = 0.15


def hold(**_: object) -> str:
    time.sleep(HOLD)
    return "done"


def item(x: int) -> int:
    return x * 2


def pooled_flow() -> Flow:
    """Two steps sharing a pool of one (one of them waits), a map step on a
    rate (its items wait for tokens) and a step that uses nothing."""
    flow = Flow("limited")
    flow.add("first", hold, uses={"db": 1})
    flow.add("second", hold, uses="db")
    flow.add("calls", item, map="x", uses={"api": 1})
    flow.add("free", lambda: 1)
    return flow


def run_pooled(store: "Store | None" = None, executor: str = "threads") -> "object":
    return pooled_flow().run(executor=executor, max_workers=4, pools={"db": 1}, rates={"api": "20/s"},
                             inputs={"x": [1, 2, 3]}, store=store)


def test_each_store_keeps_the_waits_and_the_run_s_pools_and_rates(store: Store) -> None:
    run = run_pooled(store)
    records = {(r.step, r.item): r for r in store.tasks(run.id)}  # type: ignore[attr-defined]
    first, second = records[("first", -1)].waited, records[("second", -1)].waited
    assert first is not None and second is not None
    assert max(first, second) >= HOLD * 0.6 and min(first, second) < HOLD * 0.5  # one waited for the other
    assert records[("free", -1)].waited == 0.0
    items = sorted(records[("calls", k)].waited or 0.0 for k in range(3))
    assert items[0] < 0.03 and items[1] >= 0.01 and items[2] >= 0.01  # a token each, 50 ms apart
    info = store.run_info(run.id)  # type: ignore[attr-defined]
    assert info.limits == {"pools": {"db": 1}, "rates": {"api": "20/s"},
                           "uses": {"first": {"db": 1}, "second": {"db": 1}, "calls": {"api": 1}}}
    loaded = store.load_run(run.id)  # type: ignore[attr-defined]
    assert loaded.tasks["second"].waited == second and loaded.tasks["free"].waited == 0.0
    assert loaded.tasks["first"].waited == run.tasks["first"].waited  # type: ignore[attr-defined]


def test_a_run_without_pools_records_no_wait(store: Store) -> None:
    flow = Flow("plain")
    flow.add("a", lambda: 1)
    flow.add("b", item, map="x")
    run = flow.run(inputs={"x": [1, 2]}, store=store)
    assert {r.waited for r in store.tasks(run.id)} == {None}
    assert store.run_info(run.id).limits is None
    assert run.tasks["a"].waited is None and store.load_run(run.id).tasks["a"].waited is None


def test_a_run_in_memory_tells_each_task_s_wait() -> None:
    run = run_pooled(executor="inline")
    waits = sorted([run.tasks["first"].waited, run.tasks["second"].waited])  # type: ignore[attr-defined]
    assert waits[0] == 0.0 and waits[1] == 0.0  # inline: one at a time, never waiting for the pool
    run = run_pooled()
    waits = sorted([run.tasks["first"].waited, run.tasks["second"].waited])  # type: ignore[attr-defined]
    assert waits[0] < HOLD * 0.5 <= waits[1]


def test_show_lists_the_pools_the_uses_and_the_waits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    run = run_pooled(store)
    store.close()
    code, out, _ = cli(capsys, "show", run.id, "--store", path)  # type: ignore[attr-defined]
    assert code == 0
    assert "pools db=1; rates api=20/s" in out
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert "USES" in lines["STEP"] and "WAITED" in lines["STEP"]
    assert "db=1" in lines["first"] and "api=1" in lines["calls[1]"] and " - " in lines["free"]
    waited = [lines[s].split()[6] for s in ("first", "second")]  # (STEP STATUS ATTEMPTS DURATION (2 words) USES WAITED)
    assert "-" in waited and any(w != "-" for w in waited)
    code, out, _ = cli(capsys, "show", run.id, "--store", path, "--json")  # type: ignore[attr-defined]
    doc = json.loads(out)
    assert doc["pools"] == {"db": 1} and doc["rates"] == {"api": "20/s"}
    tasks = {(t["step"], t["item"]): t for t in doc["tasks"]}
    assert tasks[("second", None)]["uses"] == {"db": 1} and "uses" not in tasks[("free", None)]
    assert max(tasks[("first", None)]["waited"], tasks[("second", None)]["waited"]) >= HOLD * 0.6


def test_show_of_a_run_without_pools_is_as_before(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    run = Flow("plain").add("a", lambda: 1).run(store=store)
    store.close()
    _, out, _ = cli(capsys, "show", run.id, "--store", path)
    assert "USES" not in out and "WAITED" not in out and "pools" not in out
    _, out, _ = cli(capsys, "show", run.id, "--store", path, "--json")
    doc = json.loads(out)
    assert "pools" not in doc and "waited" not in doc["tasks"][0] and "uses" not in doc["tasks"][0]


def test_the_report_shows_the_pools_the_uses_and_the_waits(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    run = run_pooled(store)
    page = store.report(run.id)  # type: ignore[attr-defined]
    store.close()
    assert "<td>pools and rates</td><td>pools db=1; rates api=20/s</td>" in page
    assert "&middot; uses db=1" in page and "&middot; uses api=1" in page
    assert "&middot; waited " in page and "for its pools and rates</title>" in page


def test_the_ui_api_carries_the_pools_the_uses_and_the_waits(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    run = run_pooled(store)
    doc = run_detail(store, run.id)  # type: ignore[attr-defined]
    plain = Flow("plain").add("a", lambda: 1).run(store=store)
    bare = run_detail(store, plain.id)
    store.close()
    assert doc["run"]["pools"] == {"db": 1} and doc["run"]["rates"] == {"api": "20/s"}
    assert doc["run"]["limits_text"] == "pools db=1; rates api=20/s"
    tasks = {(t["step"], t["item"]): t for t in doc["tasks"]}
    assert tasks[("first", None)]["uses"] == {"db": 1} and tasks[("first", None)]["uses_text"] == "db=1"
    assert tasks[("free", None)]["uses"] is None and tasks[("free", None)]["waited_text"] == "-"
    slow = max((tasks[("first", None)], tasks[("second", None)]), key=lambda t: t["waited"])
    assert slow["waited"] >= HOLD * 0.6 and slow["waited_text"].endswith("ms")
    assert bare["run"]["pools"] is None and bare["run"]["limits_text"] == ""
    assert bare["tasks"][0]["waited"] is None and bare["tasks"][0]["uses_text"] == ""


def test_a_map_s_items_wait_for_their_pool(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    flow = Flow("m").add("each", lambda x: time.sleep(0.05) or x, map="x", uses="db")
    run = flow.run(executor="threads", max_workers=3, pools={"db": 1}, inputs={"x": [1, 2, 3]}, store=store)
    waits = sorted(r.waited for r in store.tasks(run.id) if r.item >= 0)  # type: ignore[type-var]
    store.close()
    assert waits[0] < 0.03 and waits[-1] >= 0.03  # the last of three waited for two others to give the unit back


def test_an_older_sqlite_store_gains_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = SQLiteStore(path)
    old = Flow("plain").add("a", lambda: 1).run(store=store)
    store.close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE tasks DROP COLUMN waited")  # as a store made before waits were kept
    db.execute("ALTER TABLE runs DROP COLUMN limits")
    db.commit()
    db.close()
    readonly = SQLiteStore(path, readonly=True)  # (an older store read without changing it)
    assert readonly.tasks(old.id)[0].waited is None and readonly.run_info(old.id).limits is None
    readonly.close()
    store = SQLiteStore(path)
    assert store.tasks(old.id)[0].waited is None and store.run_info(old.id).limits is None
    run = run_pooled(store)
    assert store.run_info(run.id).limits is not None  # type: ignore[attr-defined]
    assert {r.waited is None for r in store.tasks(run.id)} == {False}  # type: ignore[attr-defined]
    store.close()


def test_an_older_postgres_store_gains_the_columns(postgres: str) -> None:
    import psycopg

    from microdag.stores import PostgresStore

    store = PostgresStore(postgres)
    old = Flow("plain").add("a", lambda: 1).run(store=store)
    store.close()
    with psycopg.connect(postgres, autocommit=True) as db:  # as a store made before waits were kept
        db.execute("ALTER TABLE microdag.tasks DROP COLUMN waited")
        db.execute("ALTER TABLE microdag.runs DROP COLUMN limits")
    store = PostgresStore(postgres)
    assert store.tasks(old.id)[0].waited is None and store.run_info(old.id).limits is None
    run = run_pooled(store)
    assert store.run_info(run.id).limits == {  # type: ignore[attr-defined]
        "pools": {"db": 1}, "rates": {"api": "20/s"},
        "uses": {"first": {"db": 1}, "second": {"db": 1}, "calls": {"api": 1}}}
    assert {r.waited is None for r in store.tasks(run.id)} == {False}  # type: ignore[attr-defined]
    store.close()


def test_how_pools_uses_and_waits_read() -> None:
    from microdag._present import limits_text, uses_text, wait_text

    assert limits_text({"pools": {"db": 2, "gpu": 1}, "rates": {"api": "10/s"}, "uses": {}}) == \
        "pools db=2, gpu=1; rates api=10/s"
    assert limits_text({"pools": {}, "rates": {"api": "600/min"}}) == "rates api=600/min"
    assert limits_text(None) == "" and uses_text(None) == "" and uses_text({"db": 1, "api": 2}) == "db=1, api=2"
    assert wait_text(None) == wait_text(0.0) == "-" and wait_text(0.0123) == "12.3 ms" and wait_text(2.5) == "2.50 s"


def test_a_damaged_wait_or_limits_is_named_or_left_out() -> None:
    from microdag._records import check_task, limits_of

    with pytest.raises(ValueError, match="waited is -1.0"):
        check_task("a", -1, "succeeded", 1, 1.0, 2.0, None, None, None, None, None, -1.0)
    with pytest.raises(ValueError, match="waited is 'x'"):
        check_task("a", -1, "succeeded", 1, 1.0, 2.0, None, None, None, None, None, "x")
    assert check_task("a", -1, "succeeded", 1, 1.0, 2.0, None, None, None, None, None, 0.5).waited == 0.5
    assert limits_of('{"pools": {"db": 2}}') == {"pools": {"db": 2}, "rates": {}, "uses": {}}
    assert limits_of("not json") is None and limits_of({"pools": {"db": "2"}}) is None and limits_of(7) is None


def test_a_damaged_wait_in_an_sqlite_store_is_named(tmp_path: Path) -> None:
    from microdag.stores import StoreError

    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    run = run_pooled(store)
    store.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE tasks SET waited = 'soon' WHERE step = 'free'")
    db.commit()
    db.close()
    store = SQLiteStore(path)
    with pytest.raises(StoreError, match=r"the record of step 'free' .* is damaged: waited is 'soon'"):
        store.tasks(run.id)  # type: ignore[attr-defined]
    store.close()


def test_what_an_added_step_holds_is_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import limitsteps

    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    flow = Flow("adds").add("adder", limitsteps.adds_held, uses="db")
    run = flow.run(pools={"db": 1}, rates={"api": "20/s"}, store=store)
    page = store.report(run.id)
    doc = run_detail(store, run.id)
    store.close()
    assert run.status == "succeeded" and run.tasks["added"].added_by == "adder"
    code, out, _ = cli(capsys, "show", run.id, "--store", path)
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert "api=1, db=1" in lines["added"] and "db=1" in lines["adder"]
    code, out, _ = cli(capsys, "show", run.id, "--store", path, "--json")
    tasks = {t["step"]: t for t in json.loads(out)["tasks"]}
    assert tasks["added"]["uses"] == {"api": 1, "db": 1} and tasks["adder"]["uses"] == {"db": 1}
    assert "&middot; uses api=1, db=1" in page
    ui = {t["step"]: t for t in doc["tasks"]}
    assert ui["added"]["uses"] == {"api": 1, "db": 1} and ui["added"]["uses_text"] == "api=1, db=1"
