"""Typed values through durable stores: a step's output kept as JSON by its
return annotation and read back as the same type (``_typed``, ``stores/_codec``).

- Hypothesis builds nested dataclasses, Pydantic models, enums, datetimes
  with time zones, decimals, bytes and unions: dump -> load gives an equal
  value of the same type, through the codec and through every durable store
  (a resume, a cache hit, ``step --from-run``, workers).
- Corrupted JSON is refused (a ``StoreError`` from a store), never read back
  as a wrong value of the right type.
- A value neither JSON nor its annotation can describe is refused at its
  step with one error; plain JSON outputs are stored as before; Pydantic is
  never imported by a flow without models.
"""

import dataclasses
import datetime
import decimal
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import typedsteps
from microdag import Flow, RunFailed
from microdag._typed import ConvertError, converter
from microdag.stores import StoreError
from microdag.stores._codec import decode, encode
from support import PERSISTENT, child_env, cli, make_store
from typedsteps import Color, Extra, Item, Model, Order, Part, Point, Size

# -- strategies ---------------------------------------------------------------------------

text = st.text(max_size=8)
clean_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)  # (Pydantic refuses lone surrogates)
decimals = st.decimals(allow_nan=False, places=3, min_value=-10**6, max_value=10**6)
zones = st.none() | st.just(datetime.timezone.utc) | st.timezones() | st.builds(
    datetime.timezone, st.timedeltas(min_value=datetime.timedelta(hours=-23), max_value=datetime.timedelta(hours=23)))
moments = st.datetimes(timezones=zones)
items = st.builds(Item, name=text, price=decimals, tags=st.frozensets(text, max_size=3))
points = st.builds(Point, x=st.integers(), y=st.floats(allow_nan=False, allow_infinity=False))
extras = st.builds(Extra, label=text, on=st.dates())


def orders(parent: "st.SearchStrategy[Optional[Order]]" = st.none()) -> "st.SearchStrategy[Order]":
    return st.builds(
        Order, id=st.uuids(), when=moments, items=st.lists(items, max_size=3), color=st.sampled_from(Color),
        blob=st.binary(max_size=8), wait=st.timedeltas(), path=st.builds(Path, text.filter(lambda t: "\x00" not in t)),
        size=st.sampled_from(Size), note=st.none() | text, at=st.none() | st.times(timezones=st.none()),
        point=points, extra=st.none() | extras,
        counts=st.dictionaries(st.integers(), st.tuples(st.integers(), text), max_size=2),
        either=st.integers() | text | items, parent=parent,
    )


nested_orders = orders(st.none() | orders())
models = st.builds(
    Model, title=clean_text, when=st.datetimes(timezones=st.none() | st.just(datetime.timezone.utc)),
    price=decimals, color=st.sampled_from(Color),
    parts=st.lists(st.builds(Part, name=clean_text, count=st.integers()), max_size=3),
    data=st.binary(max_size=8), ids=st.sets(st.uuids(), max_size=2),
)

#: Annotations and the values they take.
CASES: "list[tuple[Any, st.SearchStrategy[Any]]]" = [
    (Order, nested_orders),
    (Model, models),
    (list[Order | Model], st.lists(orders() | models, max_size=3)),
    (dict[Color, Item], st.dictionaries(st.sampled_from(Color), items, max_size=2)),
    (tuple[Size, bytes, datetime.date], st.tuples(st.sampled_from(Size), st.binary(max_size=5), st.dates())),
    (set[uuid.UUID], st.sets(st.uuids(), max_size=3)),
    (Optional[decimal.Decimal], st.none() | decimals),
    (datetime.datetime | datetime.timedelta | None, st.none() | moments | st.timedeltas()),
]


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same type, all the way down (time zones included)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, datetime.datetime):
        zone = getattr(a.tzinfo, "key", None)  # (a fold means something in a zone, at a time the clocks went back)
        return a == b and a.utcoffset() == b.utcoffset() and zone == getattr(b.tzinfo, "key", None) and (
            zone is None or a.fold == b.fold or a.replace(fold=0).utcoffset() == a.replace(fold=1).utcoffset())
    return bool(a == b)


# -- the converter and the codec ------------------------------------------------------------


@pytest.mark.parametrize("case", range(len(CASES)), ids=lambda i: repr(CASES[i][0]))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_value_comes_back_equal_and_of_its_type(case: int, data: st.DataObject) -> None:
    ann, values = CASES[case]
    value = data.draw(values)
    typed = converter(ann, "value")
    assert typed is not None
    encoded = encode("json", value, "the value", typed)
    json.loads(encoded)  # JSON, always
    back = decode("json", encoded, typed)
    assert back == value and same(back, value)


@pytest.mark.parametrize("ann", [int, str, float, bool, None, list[int], dict[str, list[float]], Optional[str],
                                 int | str, Any, object, "NotAType", Flow])
def test_plain_json_annotations_have_no_converter(ann: Any) -> None:
    assert converter(ann, "x") is None


def test_a_time_in_a_zone_keeps_its_zone_and_fold() -> None:
    import zoneinfo

    paris = zoneinfo.ZoneInfo("Europe/Paris")
    typed = converter(datetime.datetime, "when")
    assert typed is not None
    for value in (datetime.datetime(2024, 10, 27, 2, 30, tzinfo=paris, fold=1),  # the clocks went back over it
                  datetime.datetime(2024, 3, 31, 2, 30, tzinfo=paris)):  # they skipped it
        assert typed.dump(value).endswith("[Europe/Paris]")
        assert same(typed.load(typed.dump(value)), value)


def test_load_names_the_path_and_problems_lists_every_problem() -> None:
    typed = converter(Order, "order")
    assert typed is not None
    doc = typed.dump(typedsteps.sample())
    doc["items"][0]["price"] = 12
    doc["color"] = "green"
    doc["bogus"] = 1
    with pytest.raises(ConvertError, match=r"^order\.items\[0\]\.price: expected Decimal, not int \(12\)$"):
        typed.load(doc)
    assert typed.problems(doc) == [
        "order.items[0].price: expected Decimal, not int (12)",
        "order.color: expected Color, not str ('green') ('green' is not a valid Color)",
        "order: Order has no field 'bogus'",
    ]
    typed = converter(Model, "model")
    assert typed is not None
    assert typed.problems({"title": 1, "when": "2024-01-01T00:00", "price": "1", "color": "red", "parts": [{"name": "a"}]}) == [
        "model.title: Input should be a valid string",
        "model.parts[0].count: Field required",
    ]


# -- corruption -------------------------------------------------------------------------------


def _nodes(doc: Any, path: "tuple[Any, ...]" = ()) -> "list[tuple[Any, ...]]":
    out = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _nodes(v, (*path, k))
    elif isinstance(doc, list):
        for k, v in enumerate(doc):
            out += _nodes(v, (*path, k))
    return out


def _kind(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _canon(v: Any) -> Any:
    """JSON compared with list order left out (a set is written sorted)."""
    if isinstance(v, dict):
        return {k: _canon(x) for k, x in v.items()}
    if isinstance(v, list):
        return sorted((_canon(x) for x in v), key=lambda x: json.dumps(x, sort_keys=True))
    return v


@settings(max_examples=150, deadline=None)
@given(order=nested_orders, data=st.data())
def test_corrupted_json_is_refused_never_read_as_a_wrong_value(order: Order, data: st.DataObject) -> None:
    typed = converter(Order, "order")
    assert typed is not None
    encoded = encode("json", order, "the order", typed)
    if data.draw(st.booleans()):  # a value of another kind somewhere in the document
        doc = json.loads(encoded)
        path = data.draw(st.sampled_from(_nodes(doc)[1:]))
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        old = parent[path[-1]]
        new = data.draw(st.sampled_from([None, 7, "7", 7.5, True, [], {}, [7], {"x": 7}]).filter(
            lambda v: _kind(v) != _kind(old)))
        parent[path[-1]] = new
        corrupted = json.dumps(doc).encode()
    else:  # a byte flipped
        at = data.draw(st.integers(0, len(encoded) - 1))
        corrupted = encoded[:at] + bytes([encoded[at] ^ data.draw(st.integers(1, 255))]) + encoded[at + 1:]
    try:
        back = decode("json", corrupted, typed)
    except ValueError:
        return  # refused (a store says StoreError: the next test)
    # Read: then it is exactly what the JSON says, converted by no guess.
    assert _canon(json.loads(encode("json", back, "back", typed))) == _canon(json.loads(corrupted))


@pytest.mark.parametrize("kind", ["sqlite", "json"])
def test_a_stored_output_that_does_not_fit_its_annotation_is_a_store_error(kind: str, tmp_path: Path) -> None:
    store = make_store(kind, tmp_path)
    try:
        run = typedsteps.build().run(store=store, run_id="r1", targets=["make"])
        if kind == "sqlite":
            db = sqlite3.connect(tmp_path / "runs.db")
            with db:
                (data,) = db.execute("SELECT output FROM tasks WHERE step = 'make'").fetchone()
                data = data.replace(b'"price":"3.50"', b'"price":3.5')  # a number where the annotation keeps text
                db.execute("UPDATE tasks SET output = ? WHERE step = 'make'", (data,))
            db.close()
        else:
            for path in (tmp_path / "store" / "runs" / "r1").glob("tasks-*.json"):
                path.write_text(path.read_text().replace('\\"price\\":\\"3.50\\"', '\\"price\\":3.5'))
        with pytest.raises(StoreError, match=r"'make'.* does not fit its annotation Order \(at items\[0\]\.price: "
                                             r"expected Decimal, not float \(3\.5\)\)"):
            store.output(run.id, "make", typed=converter(Order, "x"))
        with pytest.raises(StoreError, match="'make'"):
            typedsteps.build().run(store=store, run_id="r1", resume=True)
        assert store.output(run.id, "make")["items"][0]["price"] == 3.5  # with no flow: the JSON as it is
    finally:
        store.close()


# -- through the stores ----------------------------------------------------------------------


@pytest.fixture(params=PERSISTENT)
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    store = make_store(request.param, tmp_path)
    yield store
    store.close()


@pytest.fixture
def failing(tmp_path: Path) -> Any:
    flag = tmp_path / "fail"
    typedsteps.FAIL["flag"] = str(flag)
    yield flag
    typedsteps.FAIL["flag"] = ""
    typedsteps.VALUE.pop("model", None)
    typedsteps.VALUE["order"] = typedsteps.sample()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=nested_orders)
def test_a_resume_a_cache_hit_and_run_step_read_the_same_type(durable: Any, failing: Path, order: Order) -> None:
    typedsteps.VALUE["order"] = order
    failing.touch()
    with pytest.raises(RunFailed) as failed:
        typedsteps.build().run(store=durable, on_failure="continue", keep_outputs=True)
    first = failed.value.run
    failing.unlink()
    resumed = typedsteps.build().run(store=durable, run_id=first.id, resume=True, keep_outputs=True)
    for step in ("make", "each", "batch", "again"):
        assert resumed[step] == first[step] and same(resumed[step], first[step]), step
    assert resumed["use"] == f"['Item', 'Order', 'Point'] {order == order}"
    assert resumed.tasks["make"].attempts == first.tasks["make"].attempts  # (read, not run again)
    hit = typedsteps.build().run(store=durable, keep_outputs=True)
    assert hit.tasks["again"].cached and same(hit["again"], first["again"])
    assert typedsteps.build().run_step("use", from_run=first.id, store=durable) == resumed["use"]


def test_a_pydantic_model_is_kept_by_its_own_json(durable: Any, failing: Path) -> None:
    value = Model(title="t", when=datetime.datetime(2024, 1, 1), price=decimal.Decimal("2.5"), color=Color.RED,
                  parts=[Part(name="p", count=2)], data=b"\xff", ids={uuid.UUID(int=1)})
    typedsteps.VALUE["model"] = value
    failing.touch()
    with pytest.raises(RunFailed) as failed:
        typedsteps.models().run(store=durable, keep_outputs=True)
    first = failed.value.run
    assert same(first["model"], value)
    failing.unlink()
    resumed = typedsteps.models().run(store=durable, run_id=first.id, resume=True, keep_outputs=True)
    assert same(resumed["model"], value) and same(resumed["remodel"], value)
    assert resumed["described"] == "Model Model True"
    hit = typedsteps.models().run(store=durable, keep_outputs=True)
    assert hit.tasks["remodel"].cached and same(hit["remodel"], value)


def test_a_value_of_another_type_than_its_annotation_is_refused_naming_both(durable: Any) -> None:
    flow = Flow("mixed")
    flow.add("make", typedsteps.make)
    flow.add("again", lambda make: typedsteps.Part(name="p", count=1))  # (not annotated: plain JSON, or refused)
    flow.add("again2", typedsteps.again, depends_on=["make"])
    with pytest.raises(RunFailed) as failed:
        flow.run(store=durable, on_failure="continue")
    error = str(failed.value.run.tasks["again"].error)
    assert error.startswith("the output of step 'again' is not JSON: it holds a Part, and it has no annotation")
    assert failed.value.run.tasks["again2"].status == "succeeded"


def test_step_from_run_on_the_command_line_reads_typed_outputs(failing: Path, tmp_path: Path, capsys) -> None:
    store = f"sqlite:{tmp_path / 'runs.db'}"
    run = typedsteps.build().run(store=store)
    code, out, err = cli(capsys, "step", "typedsteps:flow", "use", "--from-run", run.id, "--store", store)
    assert code == 0, err
    assert json.loads(out) == "['Item', 'Order', 'Point'] True"
    code, out, err = cli(capsys, "step", "typedsteps:flow", "make", "--from-run", run.id, "--store", store)
    assert code == 0, err
    assert json.loads(out) == converter(Order, "x").dump(typedsteps.sample())  # type: ignore[union-attr]
    code, out, err = cli(capsys, "show", run.id, "--store", store, "--json")  # no flow: the JSON as it is
    assert code == 0, err


def test_typed_outputs_on_workers(tmp_path: Path, failing: Path) -> None:
    run = typedsteps.build().run(executor="workers", store=str(tmp_path / "r.db"), keep_outputs=True)
    assert run["use"] == "['Item', 'Order', 'Point'] True"
    assert same(run["make"], typedsteps.sample()) and same(run["each"], typedsteps.build().run(keep_outputs=True)["each"])
    assert [type(p) for p in run["batch"]] == [Point] * 3


# -- refusals ---------------------------------------------------------------------------------


def loose() -> Any:
    return {1, 2}


def wrong() -> Order:
    return {"id": 1}  # type: ignore[return-value]


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
@pytest.mark.parametrize(("fn", "words"), [
    (loose, "the output of step 'bad' is not JSON: it holds a set, and it has no annotation that says its type."),
    (wrong, "the output of step 'bad' is not JSON: expected Order, not dict ({'id': 1}), and it is annotated Order."),
])
def test_a_value_neither_json_nor_its_annotation_describes_is_refused_at_its_step(fn, words, kind, tmp_path) -> None:
    flow = Flow("refused")
    flow.add("bad", fn)
    store = make_store(kind, tmp_path, codec="json")
    try:
        with pytest.raises(RunFailed) as failed:
            flow.run(store=store, run_id="r1")
        message = str(failed.value.run.tasks["bad"].error)
        assert message.startswith(words), message
        assert "annotate the step's return" in message and "codec='pickle'" in message
        assert message.count("is not JSON") == 1
        assert [r.output for r in store.tasks("r1") if r.step == "bad"] == [None]  # nothing written half
    finally:
        store.close()


def test_a_union_whose_members_share_a_name_is_refused() -> None:
    other = dataclasses.make_dataclass("Item", [("x", int)])
    typed = converter(Item | other, "the output")  # type: ignore[operator]
    assert typed is not None
    with pytest.raises(ConvertError, match="members of the same name"):
        typed.dump(Item("a", decimal.Decimal(1)))


def test_the_pickle_codec_and_the_memory_store_keep_values_as_they_are(tmp_path: Path) -> None:
    for store in (make_store("sqlite", tmp_path, codec="pickle"), make_store("memory", tmp_path, codec=None)):  # type: ignore[arg-type]
        run = typedsteps.build().run(store=store, keep_outputs=True)
        assert same(run["make"], typedsteps.sample())
        if store.codec == "pickle":
            assert store.decode([r for r in store.tasks(run.id) if r.step == "make"][0].output) == run["make"]
        store.close()


def test_plain_json_outputs_are_stored_as_before(tmp_path: Path) -> None:
    def counts() -> dict[str, list[int]]:
        return {"a": [1, 2]}

    def number() -> int:
        return 7

    flow = Flow("plain")
    flow.add("counts", counts)
    flow.add("number", number)
    store = make_store("sqlite", tmp_path)
    try:
        run = flow.run(store=store)
        assert {r.step: r.output for r in store.tasks(run.id)} == {"counts": b'{"a":[1,2]}', "number": b"7"}
        assert flow._compiled().typed_outputs() == ({}, {})
    finally:
        store.close()


def test_a_flow_without_models_never_imports_pydantic(tmp_path: Path) -> None:
    code = f"""
import dataclasses, datetime, sys
import microdag
assert "pydantic" not in sys.modules
@dataclasses.dataclass
class Order:
    when: datetime.datetime
def make() -> Order:
    return Order(datetime.datetime(2024, 1, 1))
def use(make: Order) -> str:
    return type(make).__name__
flow = microdag.Flow("plain")
flow.add("make", make)
flow.add("use", use)
run = flow.run(store={str(tmp_path / 'r.db')!r}, keep_outputs=True)
again = flow.run(store={str(tmp_path / 'r.db')!r}, run_id=run.id, resume=True, keep_outputs=True)
assert type(again["make"]) is Order and again["use"] == "Order"
assert "pydantic" not in sys.modules, "pydantic was imported"
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=120)
    assert done.returncode == 0, done.stderr
