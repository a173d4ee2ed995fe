"""Inputs of classes: their JSON Schema, flow files naming them, edges between them.

A parameter annotated with a dataclass, a Pydantic model, an ``Enum``, a
``datetime``... gives its input a JSON Schema of the JSON that stands for
it (a model's own schema, its nested models at the top); a flow file can
name such a class as an input's type; a run is given either the JSON or a
value of the class (passed as it is); and an edge between a step returning
one class and a parameter wanting an unrelated one is refused at
``validate()``, while nothing merely unusual (subclasses, protocols,
generics, type variables, ``Any``, names that do not resolve) ever is.
"""

import dataclasses
import datetime
import decimal
import json
import os
import pathlib
import subprocess
import sys
import uuid
from typing import Any, Optional, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import microdag
from microdag import Flow, FlowError
from microdag._edges import clash, fits
from microdag._schema import schema_of, tag, typed
from support import child_env, edge_flow, run_cli

pydantic = pytest.importorskip("pydantic")
jsonschema = pytest.importorskip("jsonschema")

import inputsteps  # noqa: E402  (Pydantic first: the module defines models)
from inputsteps import (  # noqa: E402
    Box, Cart, Child, Colour, HasQty, Item, Line, Meta, Opaque, Order, Parent, Point, Refund, SubCart,
)

T = TypeVar("T")


def _flow_of(annotation: object, name: str = "value") -> Flow:
    flow = Flow("one")

    def step(value):  # type: ignore[no-untyped-def]
        return value

    step.__annotations__ = {"value": annotation}
    flow.add("step", step, inputs=None)
    return flow


def _schema(annotation: object) -> "dict[str, Any]":
    """The input schema of a parameter so annotated, checked as a whole by a real validator."""
    schema = _flow_of(annotation).input_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def _valid(schema: "dict[str, Any]", value: object) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid({"value": value})


# -- schemas ------------------------------------------------------------------------


@pytest.mark.parametrize("annotation,expected", [
    (datetime.datetime, {"type": "string", "format": "date-time", "description": "datetime"}),
    (datetime.date, {"type": "string", "format": "date", "description": "date"}),
    (datetime.time, {"type": "string", "format": "time", "description": "time"}),
    (datetime.timedelta, {"type": "string", "format": "duration", "description": "timedelta"}),
    (decimal.Decimal, {"type": "string", "format": "decimal", "description": "Decimal"}),
    (uuid.UUID, {"type": "string", "format": "uuid", "description": "UUID"}),
    (pathlib.Path, {"type": "string", "format": "path", "description": "Path"}),
    (bytes, {"type": "string", "contentEncoding": "base64", "description": "bytes"}),
    (frozenset[int], {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}),
    (tuple[int, str], {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}],
                       "minItems": 2, "maxItems": 2}),
    (Colour, {"enum": ["red", "blue"], "description": "Colour"}),
    (Point, {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer", "default": 0}},
             "required": ["x"], "additionalProperties": False, "description": "Point"}),
    (Meta, {"type": "object", "properties": {"tag": {"type": "string"}}, "required": ["tag"],
            "additionalProperties": False, "description": "Meta"}),
    (Optional[Line], {"anyOf": [{"type": "object", "properties": {"sku": {"type": "string"},
                                                                  "qty": {"type": "integer", "default": 1}},
                                 "required": ["sku"], "additionalProperties": False, "description": "Line"},
                                {"type": "null"}]}),
])
def test_classes_become_json_schema(annotation: object, expected: "dict[str, Any]") -> None:
    assert _schema(annotation)["properties"]["value"] == expected


def test_a_nested_dataclass_says_its_fields_defaults_and_what_is_required() -> None:
    schema = _schema(Order)
    order = schema["properties"]["value"]
    assert order["required"] == ["id", "lines"]  # defaults and default factories: not required
    assert order["properties"]["colour"] == {"enum": ["red", "blue"], "description": "Colour"}  # (a member: not JSON)
    assert order["properties"]["placed"]["default"] is None
    assert order["properties"]["lines"]["items"]["required"] == ["sku"]
    good = {"id": 1, "lines": [{"sku": "a"}], "placed": "2024-03-01T09:00:00+01:00", "colour": "blue"}
    assert _valid(schema, good)
    assert not _valid(schema, {"id": 1})
    assert not _valid(schema, {**good, "unknown": 1})
    assert not _valid(schema, {**good, "colour": "green"})


def test_a_models_schema_is_its_own_with_its_nested_models_at_the_top() -> None:
    schema = _schema(Cart)
    own = Cart.model_json_schema()
    defs = own.pop("$defs")
    assert schema["properties"]["value"] == own
    assert schema["$defs"] == defs
    assert _valid(schema, {"owner": "ann", "items": [{"name": "pen", "price": "1.50"}]})
    assert not _valid(schema, {"owner": "ann", "items": [{"name": "pen"}]})
    assert _schema(Refund)["properties"]["value"] == Refund.model_json_schema()


def test_two_models_of_one_name_keep_both_definitions() -> None:
    class Item(pydantic.BaseModel):  # another Item than the cart's
        code: int

    class Crate(pydantic.BaseModel):
        item: Item

    flow = Flow("two")

    def both(cart: Cart, box: Crate) -> None:
        return None

    flow.add("both", both)
    schema = flow.input_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert sorted(schema["$defs"]) == ["Item", "Item_2"]
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"cart": {"owner": "a", "items": [{"name": "x", "price": "1"}]},
                               "box": {"item": {"code": 3}}})
    assert not validator.is_valid({"cart": {"owner": "a", "items": []}, "box": {"item": {"name": "x"}}})


@dataclasses.dataclass
class Holder:
    cart: Cart
    refunds: list[Refund]


def test_models_inside_a_dataclass_have_their_definitions_at_the_top() -> None:
    seen: list[Any] = []

    def keep(holder: Holder, either: Cart | Refund) -> int:
        seen.extend([holder, either])
        return 1

    flow = Flow("nested")
    flow.add("keep", keep)
    schema = flow.input_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert list(schema["$defs"]) == ["Item"]
    good = {"holder": {"cart": {"owner": "a", "items": [{"name": "n", "price": "1"}]}, "refunds": [{"order": 1}]},
            "either": {"type": "Refund", "value": {"order": 2}}}
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "holder": {"cart": {"owner": "a", "items": [{}]}, "refunds": []}})
    flow.run(good)
    assert seen == [Holder(Cart(owner="a", items=[Item(name="n", price=decimal.Decimal(1))]), [Refund(order=1)]),
                    Refund(order=2)]


def test_a_union_of_classes_is_tagged_by_name() -> None:
    schema = _schema(Cart | Refund | None)
    members = schema["properties"]["value"]["anyOf"]
    assert [m.get("properties", {}).get("type") for m in members] == [{"const": "Cart"}, {"const": "Refund"}, None]
    assert _valid(schema, {"type": "Refund", "value": {"order": 3}})
    assert _valid(schema, None)
    assert not _valid(schema, {"order": 3})
    assert tag(list[Order]) == "list[Order]" and tag(tuple[int, ...]) == "tuple[int]" and tag(None) == "None"
    assert _schema(Order | None)["properties"]["value"]["anyOf"][1] == {"type": "null"}  # X | None: untagged


def test_a_map_over_classes_takes_a_list_of_them() -> None:
    flow = Flow("mapped")
    flow.add("total", inputsteps.total, map="order")
    schema = flow.input_schema()
    assert schema["properties"]["order"]["type"] == "array"
    assert schema["properties"]["order"]["items"]["description"] == "Order"
    assert flow.run({"order": [Order(1, [Line("a", 3)])]})["total"] == [3]
    assert flow.run({"order": [{"id": 1, "lines": [{"sku": "a", "qty": 2}]}, {"id": 2, "lines": []}]})["total"] == [2, 0]
    with pytest.raises(FlowError, match=r"input 'order', at \[1\]: Order needs 'lines'"):
        flow.run({"order": [{"id": 1, "lines": []}, {"id": 2}]})
    assert flow.run({"order": (Order(n, []) for n in range(2))})["total"] == [0, 0]  # a generator: as it is


def test_which_annotations_name_classes_and_which_values_are_of_them() -> None:
    for ann in (Order, Cart, Colour, datetime.date, decimal.Decimal, bytes, tuple[int, int], set[int],
                list[Order], Optional[Cart], dict[str, Point]):
        assert typed(ann), ann
    for ann in (int, str, list[int], dict[str, float], Optional[int], Any, T, Opaque, Meta, None):
        assert not typed(ann), ann
    order = Order(1, [])
    assert fits(Order, order) and fits(list[Order], [order]) and fits(Optional[Order], None)
    assert fits(dict[str, Order], {"a": order}) and fits(tuple[Order, int], (order, 1))
    assert not fits(Order, {"id": 1, "lines": []}) and not fits(list[Order], [order, {"id": 2}])
    assert not fits(tuple[Order, int], (order,))


def test_pydantic_is_not_imported_for_a_flow_without_models() -> None:
    code = (
        "import sys, dataclasses, datetime, microdag\n"
        "@dataclasses.dataclass\n"
        "class Order:\n"
        "    id: int\n"
        "    when: datetime.date\n"
        "def total(order: Order, day: datetime.date | None = None) -> int:\n"
        "    return order.id\n"
        "flow = microdag.Flow('plain')\n"
        "flow.add('total', total)\n"
        "flow.input_schema()\n"
        "flow.validate()\n"
        "assert flow.run({'order': Order(1, datetime.date.today())})['total'] == 1\n"
        "assert 'pydantic' not in sys.modules, 'pydantic imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=60)
    assert done.returncode == 0, done.stderr


# -- runs given values of classes ---------------------------------------------------


def test_a_value_already_of_its_class_is_passed_as_it_is() -> None:
    seen = []

    def keep(order: Order, cart: Cart, when: datetime.datetime, price: decimal.Decimal, colour: Colour) -> int:
        seen.extend([order, cart, when, price, colour])
        return 1

    flow = Flow("as-is")
    flow.add("keep", keep)
    values = [Order(1, [Line("a")]), Cart(owner="x", items=[]), datetime.datetime(2024, 3, 1),
              decimal.Decimal("1.10"), Colour.BLUE]
    flow.run(dict(zip(["order", "cart", "when", "price", "colour"], values)))
    assert all(a is b for a, b in zip(seen, values))


def test_wrong_inputs_of_classes_are_all_said_at_once() -> None:
    def keep(order: Order, point: Point, colour: Colour, when: datetime.date) -> int:
        return 1

    flow = Flow("wrong")
    flow.add("keep", keep)
    with pytest.raises(FlowError) as info:
        flow.run({"order": {"id": "one", "lines": []}, "point": {"z": 1}, "colour": "green", "when": 3})
    assert info.value.problems == [
        "input 'order', at id: expected int, not str ('one')",
        "input 'point': Point has no field 'z'",
        "input 'point': Point needs 'x'",
        "input 'colour': expected Colour, not str ('green') ('green' is not a valid Colour)",
        "input 'when': expected date, not int (3)",
    ]


def test_json_inputs_are_read_into_their_classes() -> None:
    seen: list[Any] = []

    def keep(order: Order, carts: list[Cart], when: datetime.datetime, point: Point, ids: tuple[int, int],
             maybe: Optional[Cart] = None) -> int:
        seen.extend([order, carts, when, point, ids, maybe])
        return 1

    flow = Flow("read")
    flow.add("keep", keep)
    flow.run({"order": {"id": 1, "lines": [{"sku": "a", "qty": 2}], "placed": "2024-03-01T09:00:00+01:00",
                        "colour": "blue"},
              "carts": [{"owner": "x", "items": [{"name": "pen", "price": "1.10"}]}],
              "when": "2024-03-01T09:00:00", "point": {"x": 1}, "ids": [1, 2], "maybe": None})
    order, carts, when, point, ids, maybe = seen
    assert order == Order(1, [Line("a", 2)], datetime.datetime.fromisoformat("2024-03-01T09:00:00+01:00"),
                          Colour.BLUE)
    assert carts == [Cart(owner="x", items=[Item(name="pen", price=decimal.Decimal("1.10"))])]
    assert when == datetime.datetime(2024, 3, 1, 9) and point == Point(1) and ids == (1, 2) and maybe is None


def test_run_step_reads_its_inputs_into_their_classes() -> None:
    flow = Flow("one")
    flow.add("total", inputsteps.total)
    assert flow.run_step("total", {"order": {"id": 1, "lines": [{"sku": "a", "qty": 4}]}}) == 4
    with pytest.raises(FlowError, match="input 'order': Order needs 'lines'"):
        flow.run_step("total", {"order": {"id": 1}})


_FAILED_ONCE: list[str] = []


def _total_failing_once(order: Order) -> int:
    if not _FAILED_ONCE:
        _FAILED_ONCE.append(type(order).__name__)
        raise RuntimeError("once")
    _FAILED_ONCE.append(type(order).__name__)
    return order.id


def test_a_value_of_a_class_is_recorded_as_its_json_and_read_back_on_resume(store: Any) -> None:
    _FAILED_ONCE.clear()
    flow = Flow("kept")
    flow.add("total", _total_failing_once)
    order = Order(7, [Line("a")], datetime.datetime(2024, 3, 1, tzinfo=datetime.timezone.utc))
    with pytest.raises(microdag.RunFailed):
        flow.run({"order": order}, store=store, run_id="r1")
    recorded = store.run_info("r1").inputs["order"]
    if store.codec == "json":
        assert recorded == {"id": 7, "lines": [{"sku": "a", "qty": 1}], "placed": "2024-03-01T00:00:00+00:00",
                            "colour": "red", "tags": []}
    run = flow.run(store=store, run_id="r1", resume=True)
    assert run["total"] == 7 and _FAILED_ONCE == ["Order", "Order"]


def test_workers_read_their_inputs_into_their_classes(tmp_path: Any) -> None:
    flow = Flow("workers")
    flow.add("total", inputsteps.total)
    flow.add("kind", inputsteps.kind_of)
    run = flow.run({"order": {"id": 1, "lines": [{"sku": "a", "qty": 3}]}}, executor="workers",
                   store=str(tmp_path / "runs.db"))
    assert run["total"] == 3 and run["kind"] == "Order"


# -- flow files ---------------------------------------------------------------------

TYPED_TOML = """\
[flow]
name = "orders"

[inputs]
order = { type = "inputsteps:Order", description = "the order to price" }
cart = { type = "inputsteps:Cart" }

[steps.kind]
call = "inputsteps:kind_of"

[steps.size]
call = "inputsteps:cart_size"
"""


def test_a_flow_file_names_an_inputs_class(tmp_path: Any) -> None:
    path = tmp_path / "orders.toml"
    path.write_text(TYPED_TOML)
    flow = microdag.load_flow(str(path))
    schema = flow.input_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["order"] == {**schema_of(Order), "description": "the order to price"}
    assert schema["required"] == ["cart", "order"]
    own = Cart.model_json_schema()
    assert schema["$defs"] == own.pop("$defs") and schema["properties"]["cart"] == own
    run = flow.run({"order": Order(2, []), "cart": Cart(owner="a", items=[])})
    assert run["kind"] == "Order" and run["size"] == 0
    run = flow.run({"order": {"id": 2, "lines": [{"sku": "a"}]}, "cart": {"owner": "a", "items": []}})
    assert run["kind"] == "Order" and run["size"] == 0  # the JSON read into the classes
    with pytest.raises(FlowError) as info:
        flow.run({"order": {"id": 2}, "cart": {"owner": "a", "items": [{"name": 1, "price": "x"}], "more": 1}})
    assert info.value.problems == [
        "input 'order': Order needs 'lines'",
        "input 'cart', at items[0].name: Input should be a valid string",
        "input 'cart', at items[0].price: Input should be a valid decimal",  # (Pydantic's words)
    ]
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "src", "microdag", "flowfile.schema.json")) as f:
        import tomllib

        jsonschema.validate(tomllib.loads(TYPED_TOML), json.load(f))


def test_a_json_flow_file_names_an_inputs_class(tmp_path: Any) -> None:
    path = tmp_path / "orders.json"
    path.write_text(json.dumps({"flow": {"name": "orders"}, "inputs": {"order": {"type": "inputsteps:Order"},
                                                                        "meta": {"type": "inputsteps:Meta"}},
                                "steps": {"kind": {"call": "inputsteps:kind_of"},
                                          "tag": {"python": "def tag(meta):\n    return meta['tag']\n"}}},
                               indent=1))
    flow = microdag.load_flow(str(path))
    assert flow.input_schema()["properties"]["order"] == schema_of(Order)
    run = flow.run({"order": Order(3, []), "meta": {"tag": "t"}})
    assert run["kind"] == "Order" and run["tag"] == "t"
    with pytest.raises(FlowError) as info:  # a TypedDict of plain values: its JSON is checked, and kept a dict
        flow.run({"order": {"id": 3}, "meta": {"tog": "t"}})
    assert info.value.problems == ["input 'order': Order needs 'lines'", "input 'meta': key 'tag' is missing"]


BAD_TYPES = """\
[flow]
name = "bad"

[inputs]
a = { type = "nosuchmodule:Order" }
b = { type = "inputsteps:Nothing" }
c = { type = "inputsteps:kind_of" }
d = { type = "inputsteps:Opaque" }
e = { type = "typed steps:Order" }
f = { type = "inputsteps:not_a_class" }
g = { type = "inputsteps:Order", default = { id = "x", lines = [] } }
h = { type = "inputsteps:Order", default = { id = 1, lines = [] } }

[steps.echo]
command = ["echo", "{inputs.a}{inputs.b}{inputs.c}{inputs.d}{inputs.e}{inputs.f}{inputs.g}{inputs.h}"]
"""


def test_every_bad_class_name_is_said_with_its_line(tmp_path: Any) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD_TYPES)
    with pytest.raises(FlowError) as info:
        microdag.load_flow(str(path))
    problems = [p.replace(str(path), "bad.toml") for p in info.value.problems]
    assert problems[0].startswith("bad.toml:5: [inputs] 'a': type \"nosuchmodule:Order\": cannot import module "
                                  "'nosuchmodule'")
    assert problems[1:] == [
        "bad.toml:6: [inputs] 'b': type \"inputsteps:Nothing\": module 'inputsteps' has no attribute 'Nothing'",
        "bad.toml:7: [inputs] 'c': type \"inputsteps:kind_of\": 'kind_of' is not a class (it is of type function)",
        "bad.toml:8: [inputs] 'd': type \"inputsteps:Opaque\": class 'Opaque' cannot be read from JSON (a "
        "dataclass, a Pydantic model, an Enum, a TypedDict, a NamedTuple, a datetime, a Decimal... can)",
        "bad.toml:9: [inputs] 'e': type \"typed steps:Order\": a class is named as \"module:Class\" "
        "(e.g. \"orders:Order\")",
        "bad.toml:10: [inputs] 'f': type \"inputsteps:not_a_class\": 'not_a_class' is not a class (it is of type int)",
        "bad.toml:11: [inputs] 'g': the default, at id: expected int, not str ('x')",
    ]


def test_a_module_that_raises_is_said_with_its_line(tmp_path: Any) -> None:
    (tmp_path / "broken_types.py").write_text("raise RuntimeError('no')\n")
    path = tmp_path / "bad.json"
    path.write_text('{\n "flow": {"name": "bad"},\n "inputs": {\n  "x": {"type": "broken_types:X"}\n },\n'
                    ' "steps": {"s": {"command": ["echo", "{inputs.x}"]}}\n}\n')
    with pytest.raises(FlowError) as info:
        microdag.load_flow(str(path))
    (problem,) = info.value.problems
    assert problem == (f"{path}:4: [inputs] 'x': type \"broken_types:X\": importing module 'broken_types' "
                       "raised RuntimeError: no")


# -- the command line ---------------------------------------------------------------

CLI_TOML = """\
[flow]
name = "cli"

[steps.total]
call = "inputsteps:total"
"""


def test_the_command_line_reads_a_dataclass_input_and_says_what_is_wrong(tmp_path: Any) -> None:
    (tmp_path / "cli.toml").write_text(CLI_TOML)
    done = run_cli("schema", "cli.toml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["properties"]["order"]["description"] == "Order"
    done = run_cli("run", "cli.toml", "-i", 'order={"id": "x", "lines": [{"qty": 2}]}', "--store", "memory",
                   cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert "input 'order', at id: expected int, not str ('x')" in done.stderr
    assert "input 'order', at lines[0]: Line needs 'sku'" in done.stderr
    done = run_cli("run", "cli.toml", "-i", 'order={"id": 1, "lines": [{"sku": "a", "qty": 2}]}', "--json",
                   "--store", str(tmp_path / "runs.db"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outputs"] == {"total": 2}


# -- edges (the tables: test_schema.py) ----------------------------------------------


_CLASSES = [Order, Line, Cart, SubCart, Item, Refund, Parent, Child, Colour, Point, Meta, Box, Opaque, int, str,
            float, bool, bytes, datetime.datetime, datetime.date, decimal.Decimal, uuid.UUID, pathlib.Path,
            list, dict]
_DOUBT: "list[object]" = [Any, object, T, HasQty, "NoSuchName", Opaque]
_BUILTIN = (int, str, float, bool, bytes, list, dict, tuple)


def _in_doubt_with(cls: type) -> "list[tuple[object, object]]":
    """Edges from or to ``cls`` that may always carry a value: itself, a
    union with it, a base or a subclass (between built-in types, only as
    assignment allows), and annotations that say too little."""
    pairs: list[tuple[object, object]] = [(cls, cls), (cls, Optional[cls]), (cls, cls | int), (Optional[cls], cls)]
    kin = [b for b in cls.__mro__ if b is not object] + [c for c in _CLASSES if c is not cls and _sub(c, cls)]
    for other in kin:
        pairs.append((cls, other) if _sub(cls, other) else (other, cls))
        if not (cls in _BUILTIN and other in _BUILTIN):
            pairs.append((other, cls) if _sub(cls, other) else (cls, other))
    pairs += [(cls, d) for d in _DOUBT] + [(d, cls) for d in _DOUBT]
    return pairs


def _sub(a: type, b: type) -> bool:
    """``issubclass``, with a ``TypedDict`` taken as the ``dict`` it is at run time."""
    return issubclass(dict if a is Meta else a, dict if b is Meta else b)


@st.composite
def _in_doubt(draw: st.DrawFn) -> "tuple[object, object]":
    produced, wanted = draw(st.sampled_from(_in_doubt_with(draw(st.sampled_from(_CLASSES)))))
    for _ in range(draw(st.integers(0, 2))):  # the same container around both
        wrap = draw(st.sampled_from([lambda a: list[a], lambda a: dict[str, a], lambda a: set[a]]))
        produced, wanted = wrap(produced), wrap(wanted)
    return produced, wanted


@settings(max_examples=300, deadline=None)
@given(_in_doubt())
def test_no_edge_in_doubt_is_ever_refused(pair: "tuple[object, object]") -> None:
    produced, wanted = pair
    assert not clash(produced, wanted), pair
    edge_flow(produced, wanted).validate()  # (a name that does not resolve is left out as the annotation)
