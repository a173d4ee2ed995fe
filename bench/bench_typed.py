"""Typed values through the JSON codec (``_typed``, ``stores/_codec``), beside doing it by hand.

- ``test_plain_round_trip``: a plain JSON output (a small dict) encoded and
  decoded by an SQLite store (``Store.encode`` / ``Store.decode``): what every
  output of a flow without typed annotations pays, before and after typed
  values (run this file on both commits);
- ``test_plain_flow``: 1,000 steps returning small dicts, annotated
  ``dict[str, int]``, run into a ``MemoryStore(codec="json")`` (the
  recorder's whole path, encoding as a durable store does, without a disk's
  noise);
- ``test_dataclass_dump`` / ``test_dataclass_load``: a 10-field dataclass
  through its converter and the codec (``encode`` / ``decode``), beside
  ``dataclasses.asdict`` + ``json.dumps`` and ``json.loads`` + the
  constructor by hand (target: within 2x);
- ``test_model_dump`` / ``test_model_load``: a Pydantic model the same way,
  beside ``model_dump_json`` / ``model_validate_json`` (target: within 1.2x).

Each group's ``ours`` and ``hand`` cases are compared in docs/performance.md.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from typing import Any, Optional

import pytest

import microdag
from microdag.stores import MemoryStore, SQLiteStore
from microdag.stores._codec import decode, encode

try:  # (the Pydantic cases need it)
    import pydantic
except ImportError:  # pragma: no cover
    pydantic = None  # type: ignore[assignment]


@dataclasses.dataclass
class Row:
    id: int
    name: str
    price: float
    active: bool
    count: int
    city: str
    weight: float
    tags: list[int]
    scores: dict[str, int]
    note: Optional[str] = None


ROW = Row(7, "tea", 3.5, True, 12, "Paris", 0.25, [1, 2, 3], {"a": 1, "b": 2}, "hot")
PLAIN = {"n": 12345, "name": "tea", "tags": [1, 2, 3]}


def _typed(ann: Any) -> Any:
    from microdag._typed import converter

    typed = converter(ann, "the output of step 'bench'")
    assert typed is not None
    return typed


@pytest.fixture(scope="module")
def sqlite_store() -> Any:
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(folder + "/runs.db")
        yield store
        store.close()


@pytest.mark.benchmark(group="plain JSON output: store round trip")
def test_plain_round_trip(benchmark: Any, sqlite_store: Any) -> None:
    store = sqlite_store

    def trip() -> Any:
        return store.decode(store.encode(PLAIN, "the output of step 'bench'"))

    assert benchmark(trip) == PLAIN


def _plain_step(**_: Any) -> dict[str, int]:
    return {"n": 1}


@pytest.mark.benchmark(group="plain JSON output: 1,000 steps, JSON codec")
def test_plain_flow(benchmark: Any) -> None:
    flow = microdag.Flow("plain")
    for i in range(1000):
        flow.add(f"s{i}", _plain_step, depends_on=[f"s{i - 1}"] if i else [])
    flow.validate()

    def run() -> Any:
        return flow.run(store=MemoryStore(codec="json"))

    assert benchmark.pedantic(run, rounds=30, iterations=1).status == "succeeded"


@pytest.mark.parametrize("how", ["ours", "hand"])
@pytest.mark.benchmark(group="10-field dataclass: dump + encode")
def test_dataclass_dump(benchmark: Any, how: str) -> None:
    if how == "ours":
        typed = _typed(Row)
        data = benchmark(encode, "json", ROW, "the output", typed)
    else:
        data = benchmark(lambda: json.dumps(dataclasses.asdict(ROW)).encode())
    assert json.loads(data)["name"] == "tea"


@pytest.mark.parametrize("how", ["ours", "hand"])
@pytest.mark.benchmark(group="10-field dataclass: decode + load")
def test_dataclass_load(benchmark: Any, how: str) -> None:
    data = json.dumps(dataclasses.asdict(ROW)).encode()
    if how == "ours":
        typed = _typed(Row)
        value = benchmark(decode, "json", data, typed)
    else:
        value = benchmark(lambda: Row(**json.loads(data)))
    assert value == ROW


def _model() -> Any:
    if pydantic is None:
        pytest.skip("pydantic is not installed")

    from pydantic import create_model

    fields: Any = {f.name: (f.type, ... if f.default is dataclasses.MISSING else f.default)
                   for f in dataclasses.fields(Row)}  # (Row's fields, as a model's)
    order = create_model("Order", **fields)
    return order, order(**dataclasses.asdict(ROW))


@pytest.mark.parametrize("how", ["ours", "hand"])
@pytest.mark.benchmark(group="Pydantic model: dump + encode")
def test_model_dump(benchmark: Any, how: str) -> None:
    cls, model = _model()
    if how == "ours":
        data = benchmark(encode, "json", model, "the output", _typed(cls))
    else:
        data = benchmark(lambda: model.model_dump_json().encode())
    assert json.loads(data)["name"] == "tea"


@pytest.mark.parametrize("how", ["ours", "hand"])
@pytest.mark.benchmark(group="Pydantic model: decode + load")
def test_model_load(benchmark: Any, how: str) -> None:
    cls, model = _model()
    data = model.model_dump_json().encode()
    if how == "ours":
        value = benchmark(decode, "json", data, _typed(cls))
    else:
        value = benchmark(cls.model_validate_json, data)
    assert value == model
