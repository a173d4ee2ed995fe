"""Maps keyed by an attribute (``map="item", key="query_uuid"``): each item is
identified by its key, not its position.

A resume reuses a finished item by key when the list was reordered, extended
or shortened (only new keys run, the output follows the new order); keys are
read once, checked (type, duplicates) and recorded by every store; a keyed
map's parameter bound to another keyed map's output gets the entry of its own
key; flow files take ``key``.
"""

import json
import sqlite3
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from microdag import Flow, FlowError, RunFailed, load_flow
from microdag.stores import SQLiteStore
from support import EXECUTORS, PERSISTENT, executor_for, make_store


@dataclass(frozen=True)
class Query:
    query_uuid: str
    text: str


#: What each item call saw, by key (module level: the process backends' workers are forked copies).
CALLS: "list[str]" = []
#: Keys whose calls fail, until cleared.
FAILING: "set[str]" = set()


def search(query: "dict[str, str]") -> str:
    CALLS.append(query["query_uuid"])
    if query["query_uuid"] in FAILING:
        raise RuntimeError(f"no answer for {query['query_uuid']}")
    return query["text"].upper()


def rank(query: "dict[str, str]", search: str) -> str:
    return f"{query['text']}={search}"


def by_text(item: "dict[str, object]") -> object:
    return item["text"]


def pair(item: "dict[str, object]") -> object:
    return item["id"]


def keyed_flow() -> Flow:
    flow = Flow("keyed")
    flow.add("search", search, map="query", key="query_uuid")
    return flow


def queries(*ids: str) -> "list[dict[str, str]]":
    """Items as a JSON store keeps its inputs: a key of a dict item is read as its key."""
    return [{"query_uuid": i, "text": f"text of {i}"} for i in ids]


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    FAILING.clear()


# -- resume by key, on every durable store ------------------------------------------------


@pytest.mark.parametrize("kind", PERSISTENT)
@pytest.mark.parametrize("change", ["reorder", "extend", "shrink", "all"])
def test_resume_runs_only_new_keys(kind: str, change: str, tmp_path: Path) -> None:
    store = make_store(kind, tmp_path)
    flow = keyed_flow()
    first = queries("a", "b", "c", "d")
    FAILING.add("c")
    with pytest.raises(RunFailed):
        flow.run(inputs={"query": first}, store=store, run_id="r1", on_failure="continue")
    assert sorted(CALLS) == ["a", "b", "c", "d"]
    FAILING.clear()
    CALLS.clear()
    later = {
        "reorder": queries("d", "c", "b", "a"),
        "extend": queries("e", "a", "b", "c", "d", "f"),
        "shrink": queries("d", "c"),
        "all": queries("f", "c", "a", "e"),
    }[change]
    run = flow.run(inputs={"query": later}, store=store, run_id="r1", resume=True)
    new = {q["query_uuid"] for q in later} - {"a", "b", "d"}
    assert sorted(CALLS) == sorted(new)  # only the keys that had not succeeded ran
    assert run["search"] == [q["text"].upper() for q in later]  # in the new order
    fresh = keyed_flow().run(inputs={"query": later})
    assert run["search"] == fresh["search"]
    records = {r.key: r for r in store.tasks("r1") if r.item >= 0}
    assert set(records) >= {json.dumps(q["query_uuid"]) for q in later}
    assert all(records[json.dumps(q["query_uuid"])].status == "succeeded" for q in later)
    numbers = [r.item for r in store.tasks("r1") if r.item >= 0]
    assert len(numbers) == len(set(numbers))  # no two keys under one record number
    store.close()


def test_resume_keeps_item_logs_by_key(tmp_path: Path) -> None:
    store = make_store("sqlite", tmp_path)
    flow = keyed_flow()
    FAILING.add("b")
    with pytest.raises(RunFailed):
        flow.run(inputs={"query": queries("a", "b")}, store=store, run_id="r")
    FAILING.clear()
    flow.run(inputs={"query": queries("b", "a")}, store=store, run_id="r", resume=True)
    items = {r.key: r.item for r in store.tasks("r") if r.item >= 0}
    assert items == {'"a"': 0, '"b"': 1}  # each key kept its number, whatever its position now


@pytest.mark.parametrize("executor", EXECUTORS)
def test_keys_on_every_backend(executor: str, tmp_path: Path) -> None:
    store = make_store("sqlite", tmp_path)
    flow = keyed_flow()
    flow.add("rank", rank, map="query", key="query_uuid", inputs={"search": "search"})
    qs = queries("x", "y", "z")
    with executor_for(executor) as value:
        run = flow.run(inputs={"query": qs}, executor=value, store=store, run_id="r")  # type: ignore[arg-type]
    assert run["rank"] == [f"{q['text']}={q['text'].upper()}" for q in qs]
    keys = sorted(r.key for r in store.tasks("r") if r.step == "search" and r.item >= 0)
    assert keys == ['"x"', '"y"', '"z"']


@pytest.mark.parametrize("kind", [None, *PERSISTENT])
def test_a_cached_keyed_map_caches_each_item(kind: "str | None", tmp_path: Path) -> None:
    store = None if kind is None else make_store(kind, tmp_path)
    flow = Flow("cached").add("search", search, map="query", key="query_uuid", cache=True)
    tag = f"{kind}-{tmp_path.name}"  # (a run without a store caches in this process: items of this test only)
    items = {i: {"query_uuid": i, "text": f"{tag} {i}"} for i in "abcd"}
    flow.run(inputs={"query": [items["a"], items["b"]]}, store=store)
    assert sorted(CALLS) == ["a", "b"]
    CALLS.clear()
    run = flow.run(inputs={"query": [items["c"], items["b"], items["a"]]}, store=store)
    assert CALLS == ["c"]
    assert run["search"] == [items[i]["text"].upper() for i in "cba"]
    if store is not None:
        store.close()


@pytest.mark.parametrize("pool", ["asyncio", "dask"])
def test_keys_on_the_event_loop_and_dask(pool: str, tmp_path: Path) -> None:
    import asyncio

    store = make_store("sqlite", tmp_path)
    flow = keyed_flow()
    flow.add("reverse", lambda query: query[::-1])
    flow.add("rank", rank, map="query", key="query_uuid", inputs={"query": "reverse", "search": "search"})
    qs = queries("x", "y", "z")
    FAILING.add("y")
    options = {"store": store, "run_id": "r", "on_failure": "continue", "raise_on_failure": False}
    if pool == "asyncio":
        first = asyncio.run(flow.arun({"query": qs}, **options))  # type: ignore[arg-type]
    else:
        distributed = pytest.importorskip("distributed", reason="Dask distributed is not installed")
        cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                           dashboard_address=":0")
        client = distributed.Client(cluster)
        try:
            first = flow.run({"query": qs}, executor=client, **options)  # type: ignore[arg-type]
        finally:
            FAILING.clear()
            later = queries("w", "x", "y", "z")
            CALLS.clear()
            again = flow.run({"query": later}, executor=client, store=store, run_id="r", resume=True,
                             keep_outputs=True)
            client.close()
            cluster.close()
    if pool == "asyncio":
        FAILING.clear()
        later = queries("w", "x", "y", "z")
        CALLS.clear()
        again = asyncio.run(flow.arun({"query": later}, store=store, run_id="r", resume=True, keep_outputs=True))
    assert first.status == "failed"
    assert sorted(CALLS) == ["w", "y"]
    # "reverse" finished in the first run and keeps its output (the first list,
    # reversed); "search" ran over the new list: "rank" matches them by key.
    assert again["search"] == [q["text"].upper() for q in later]
    assert again["rank"] == [f"{q['text']}={q['text'].upper()}" for q in reversed(qs)]
    store.close()


# -- keys checked -------------------------------------------------------------------------


def test_duplicate_keys_refuse_the_step_before_any_item_runs() -> None:
    with pytest.raises(RunFailed) as info:
        keyed_flow().run(inputs={"query": queries("a", "b", "a")})
    assert CALLS == []
    cause = info.value.__cause__
    assert isinstance(cause, ValueError)
    assert "items 0 and 2 have the same key 'query_uuid' value 'a'" in str(cause)
    assert "'search'" in str(cause)


def test_a_key_that_cannot_be_read_fails_its_item() -> None:
    # The first item says how keys are read: dicts by key, other items by attribute.
    items = [{"query_uuid": "b", "text": "y"}, Query("a", "x"), {"query_uuid": 1.5}]
    flow = Flow("k").add("s", lambda q: 1, map="q", key="query_uuid")
    run = flow.run(inputs={"q": items}, on_failure="continue", raise_on_failure=False)
    assert run.tasks["s"].status == "failed"
    error = run.tasks["s"].error
    assert isinstance(error, LookupError)
    assert "step 's' item 1: its key 'query_uuid' cannot be read (TypeError" in str(error)
    run = Flow("k").add("s", lambda q: 1, map="q", key="query_uuid").run(
        inputs={"q": [Query("a", "x"), {"query_uuid": "b"}]}, raise_on_failure=False)
    assert "step 's' item 1: its key 'query_uuid' cannot be read (AttributeError" in str(run.tasks["s"].error)
    with pytest.raises(RunFailed) as info:
        Flow("k").add("s", lambda q: 1, map="q", key="query_uuid").run(inputs={"q": [{"query_uuid": 1.5}]})
    assert "step 's' item 0: its key 'query_uuid' is 1.5, a float: a key must be a str or an int" in str(
        info.value.__cause__)


def test_a_key_error_fails_only_its_item_on_a_store(tmp_path: Path) -> None:
    store = make_store("sqlite", tmp_path)
    flow = Flow("k").add("s", lambda q: q["id"] * 2, map="q", key="id")
    with pytest.raises(RunFailed):
        flow.run(inputs={"q": [{"id": 1}, {"id": True}, {"id": 3}]}, store=store, run_id="r",
                 on_failure="continue")
    status = {r.item: (r.status, r.key) for r in store.tasks("r") if r.item >= 0}
    assert status == {0: ("succeeded", "1"), 1: ("failed", None), 2: ("succeeded", "3")}


def test_attribute_keys() -> None:
    flow = Flow("k").add("a", lambda q: q.text, map="q", key="query_uuid")
    assert flow.run(inputs={"q": [Query("x", "1"), Query("y", "2")]})["a"] == ["1", "2"]


def test_callable_keys_and_int_keys() -> None:
    flow = Flow("k")
    flow.add("a", lambda item: item["text"] * 2, map="item", key=pair)
    run = flow.run(inputs={"item": [{"id": 7, "text": "x"}, {"id": "7", "text": "y"}]})
    assert run["a"] == ["xx", "yy"]  # 7 and "7" are two keys


def test_key_is_checked_as_the_step_is_added() -> None:
    with pytest.raises(FlowError, match=r"key needs map="):
        Flow("k").add("a", search, key="query_uuid")
    with pytest.raises(FlowError, match=r"key goes with map= of one item a call, not with batch_size"):
        Flow("k").add("a", search, map="query", key="query_uuid", batch_size=2)
    with pytest.raises(FlowError, match=r"key must name an attribute"):
        Flow("k").add("a", search, map="query", key=3)  # type: ignore[arg-type]


# -- two maps aligned by key ----------------------------------------------------------------


def test_two_maps_align_by_key_not_position() -> None:
    flow = keyed_flow()
    flow.add("reverse", lambda query: query[::-1])  # (the same items, reordered)
    flow.add("rank", rank, map="query", key="query_uuid", inputs={"query": "reverse", "search": "search"})
    qs = queries("a", "b", "c")
    run = flow.run(inputs={"query": qs})
    assert run["rank"] == [f"{q['text']}={q['text'].upper()}" for q in reversed(qs)]


def test_an_item_without_an_aligned_entry_fails() -> None:
    flow = keyed_flow()
    flow.add("more", lambda query: query + [{"query_uuid": "new", "text": "n"}])
    flow.add("rank", rank, map="query", key="query_uuid", inputs={"query": "more", "search": "search"})
    run = flow.run(inputs={"query": queries("a")}, on_failure="continue", raise_on_failure=False)
    assert "step 'rank' item 1: step 'search' (parameter 'search') has no result for key 'new'" in str(
        run.tasks["rank"].error)


def test_alignment_after_a_resume(tmp_path: Path) -> None:
    store = make_store("sqlite", tmp_path)
    flow = keyed_flow()
    FAILING.add("b")
    flow.add("reverse", lambda query: query[::-1])
    flow.add("rank", rank, map="query", key="query_uuid", inputs={"query": "reverse", "search": "search"})
    qs = queries("a", "b", "c")
    with pytest.raises(RunFailed):
        flow.run(inputs={"query": qs}, store=store, run_id="r")
    FAILING.clear()
    run = flow.run(inputs={"query": qs}, store=store, run_id="r", resume=True)
    assert run["rank"] == [f"{q['text']}={q['text'].upper()}" for q in reversed(qs)]


# -- flow files ------------------------------------------------------------------------------


def test_flow_files_take_key(tmp_path: Path) -> None:
    (tmp_path / "ksteps.py").write_text(textwrap.dedent("""
        def double(item):
            return item["n"] * 2
    """))
    toml = tmp_path / "flow.toml"
    toml.write_text('[flow]\nname = "k"\n\n[steps.double]\ncall = "ksteps:double"\nmap = "item"\nkey = "id"\n')
    flow = load_flow(str(toml))
    run = flow.run(inputs={"item": [{"id": "a", "n": 1}, {"id": "b", "n": 2}]})
    assert run["double"] == [2, 4]
    data = {"flow": {"name": "k"}, "steps": {"double": {"call": "ksteps:double", "map": "item", "key": "id"}}}
    as_json = tmp_path / "flow.json"
    as_json.write_text(json.dumps(data))
    assert load_flow(str(as_json)).run(inputs={"item": [{"id": "a", "n": 3}]})["double"] == [6]
    bad = tmp_path / "bad.toml"
    bad.write_text('[flow]\nname = "k"\n\n[steps.double]\ncall = "ksteps:double"\nkey = "id"\n')
    with pytest.raises(FlowError, match=r"key needs map"):
        load_flow(str(bad))


# -- stores ------------------------------------------------------------------------------------


def test_an_older_sqlite_store_gains_the_key_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE tasks DROP COLUMN key")  # as a store made before keyed maps
    db.commit()
    db.close()
    store = SQLiteStore(path)
    keyed_flow().run(inputs={"query": queries("a")}, store=store, run_id="r")
    assert [r.key for r in store.tasks("r") if r.item >= 0] == ['"a"']
    store.close()


# -- where items are named by key ----------------------------------------------------------------


def test_events_name_the_item_and_its_key() -> None:
    events: "list[object]" = []
    flow = Flow("k").add("s", lambda q: q["id"], map="q", key="id")
    flow.run(inputs={"q": [{"id": "a"}, {"id": 3}]}, hooks=[events.append])
    progress = [(e.item, e.key) for e in events if e.kind == "step_progress"]  # type: ignore[attr-defined]
    assert sorted(progress, key=str) == [(0, "a"), (1, 3)]


def test_show_names_items_by_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from support import cli

    store = str(tmp_path / "runs.db")
    flow = Flow("k").add("s", lambda q: q["id"] * 2, map="q", key="id")
    flow.run(inputs={"q": [{"id": "a"}, {"id": 7}]}, store=store, run_id="r")
    code, out, _ = cli(capsys, "show", "r", "--store", store)
    assert code == 0
    assert 's[0 key "a"]' in out and "s[1 key 7]" in out
    code, out, _ = cli(capsys, "show", "r", "--json", "--store", store)
    assert [t.get("key") for t in json.loads(out)["tasks"]] == ["a", 7, None]


def item_and_key(item: "dict[str, object]") -> "tuple[object, object]":
    import microdag

    ctx = microdag.context()
    return ctx.item, ctx.key


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("careful", [False, True])
def test_the_context_says_the_key(executor: str, careful: bool) -> None:
    flow = Flow("k").add("s", item_and_key, map="item", key=pair, **({"timeout": 30} if careful else {}))
    with executor_for(executor) as value:
        run = flow.run(inputs={"item": [{"id": "a"}, {"id": 5}]}, executor=value)  # type: ignore[arg-type]
    assert run["s"] == [(0, "a"), (1, 5)]


def test_the_report_and_the_ui_name_items_by_key(tmp_path: Path) -> None:
    from microdag.ui._runs import run_detail

    store = make_store("sqlite", tmp_path)
    Flow("k").add("s", lambda q: q["id"] * 2, map="q", key="id").run(
        inputs={"q": [{"id": "a"}, {"id": 7}]}, store=store, run_id="r")
    html = store.report("r")
    assert "s[0 key &quot;a&quot;]" in html and "s[1 key 7]" in html
    labels = [t["item_label"] for t in run_detail(store, "r")["tasks"]]
    assert labels == ['0 key "a"', "1 key 7", None]
    store.close()


def test_workers_refuse_keyed_maps(tmp_path: Path) -> None:
    with pytest.raises(FlowError, match=r"step 'search' maps with key=, which executor='workers' does not run"):
        keyed_flow().run(inputs={"query": queries("a")}, store=str(tmp_path / "runs.db"), executor="workers")


def test_argo_refuses_keyed_maps() -> None:
    from microdag._argo import manifest

    with pytest.raises(FlowError, match=r"step 'search': key cannot be expressed in Argo"):
        manifest(keyed_flow(), image="img", flow_spec="flow.toml")


def test_a_key_added_or_removed_is_a_change_of_structure(tmp_path: Path) -> None:
    store = make_store("sqlite", tmp_path)
    plain = Flow("keyed").add("search", search, map="query")
    FAILING.add("b")
    with pytest.raises(RunFailed):
        plain.run(inputs={"query": queries("a", "b")}, store=store, run_id="r")
    FAILING.clear()
    with pytest.raises(FlowError, match="made by another version of flow"):
        keyed_flow().run(store=store, run_id="r", resume=True)
    run = keyed_flow().run(store=store, run_id="r", resume=True, force=True)
    assert run["search"] == ["TEXT OF A", "TEXT OF B"]  # records without keys are not reused by key
    assert Flow("u").add("s", search, map="query")._compiled().fingerprint() == \
        Flow("u").add("s", search, map="query")._compiled().fingerprint()


def test_an_older_postgres_store_gains_the_key_column(postgres: str) -> None:
    import psycopg

    from microdag.stores import PostgresStore

    PostgresStore(postgres).close()
    with psycopg.connect(postgres, autocommit=True) as db:
        db.execute("ALTER TABLE microdag.tasks DROP COLUMN key")  # as a store made before keyed maps
    store = PostgresStore(postgres)
    keyed_flow().run(inputs={"query": queries("a")}, store=store, run_id="r")
    assert [r.key for r in store.tasks("r") if r.item >= 0] == ['"a"']
    store.close()
