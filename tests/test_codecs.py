"""What a store does to outputs: nothing in memory, exact JSON by default on
disk, pickle when asked for by name, everywhere a store can be named."""

import pytest

from microdag import Flow, FlowError
from microdag.stores import JSONStore, MemoryStore, SQLiteStore, StoreError, open_store


class Point:
    def __init__(self, x):
        self.x = x

    def __eq__(self, other):
        return isinstance(other, Point) and other.x == self.x


def pair():
    return (1, 2)


def point():
    return Point(3)


def unpicklable():
    return lambda: None


def flow_of(*steps) -> Flow:
    flow = Flow("values")
    for fn in steps:
        flow.add(fn.__name__, fn)
    return flow


@pytest.mark.parametrize("store", [MemoryStore, lambda: "memory"])
def test_a_memory_store_keeps_any_output_as_it_is(store) -> None:
    s = store()
    s = open_store(s) if isinstance(s, str) else s
    run = flow_of(pair, point, unpicklable).run(store=s, keep_outputs=True)
    assert run["pair"] == (1, 2) and run["point"] == Point(3) and callable(run["unpicklable"])
    loaded = s.load_run(run.id)
    assert loaded.outputs["pair"] == (1, 2)  # not turned into a list


@pytest.mark.parametrize("kind", ["sqlite", "json"])
def test_a_durable_store_refuses_what_json_would_change_and_says_how_to_keep_it(kind, tmp_path) -> None:
    store = SQLiteStore(tmp_path / "r.db") if kind == "sqlite" else JSONStore(tmp_path / "s")
    try:
        run = flow_of(pair).run(store=store, raise_on_failure=False)
    finally:
        store.close()
    error = run.tasks["pair"].error
    assert isinstance(error, TypeError)
    message = str(error)
    assert "the output of step 'pair' is not JSON: it holds a tuple" in message
    for hint in ("codec='pickle'", "?codec=pickle", "--codec pickle", "trusted data only"):
        assert hint in message


@pytest.mark.parametrize("prefix", ["sqlite:", "json:", ""])
def test_the_pickle_codec_can_be_named_in_a_store_spec_and_is_kept_by_the_store(prefix, tmp_path) -> None:
    path = tmp_path / ("store" if prefix == "json:" else "runs.db")
    spec = f"{prefix}{path}"
    run = flow_of(pair, point).run(store=f"{spec}?codec=pickle", keep_outputs=True)
    assert run["pair"] == (1, 2)
    again = open_store(f"{spec}?codec=pickle")
    try:
        assert again.codec == "pickle"
        assert again.load_run(run.id).outputs["pair"] == (1, 2)
    finally:
        again.close()
    with pytest.raises(StoreError, match=r"pickle codec: open it with codec='pickle'"):
        open_store(spec)  # a pickle store is opened as one only when asked by name
    with pytest.raises(StoreError, match="keeps its outputs with the pickle codec, not json"):
        open_store(spec, codec="json")
    resumed = flow_of(pair, point).run(store=f"{spec}?codec=pickle", run_id=run.id, resume=True, keep_outputs=True)
    assert resumed["point"] == Point(3)


def test_a_json_store_opens_without_naming_its_codec(tmp_path) -> None:
    run = flow_of(pair).run(store=str(tmp_path / "r.db"), raise_on_failure=False)
    store = open_store(str(tmp_path / "r.db"))
    try:
        assert store.codec == "json" and store.run_info(run.id).status == "failed"
    finally:
        store.close()


@pytest.mark.parametrize("spec", ["memory?codec=xml", "sqlite:r.db?codec=yaml"])
def test_an_unknown_codec_in_a_spec_is_refused(spec, tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown codec"):
        open_store(spec)
    with pytest.raises(FlowError, match="unknown codec"):
        flow_of(pair).run(store=spec)


def test_a_codec_given_twice_must_agree() -> None:
    with pytest.raises(ValueError, match="asks for codec 'pickle', but codec 'json' was given"):
        open_store("memory?codec=pickle", codec="json")
