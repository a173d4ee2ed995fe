"""Typed inputs, their JSON Schema, checked runs, checked edges.

What a user writes (annotations, ``[inputs] x = {type = ...}``) becomes a
JSON Schema that a real validator accepts; a run given wrong inputs is
refused before any step starts, every problem listed; an edge whose types
can never meet is a validation error naming both steps; and nothing that is
merely unusual (``Any``, unions, type variables, user classes, names only
imported for type checkers) is ever refused.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import os
import pathlib
from typing import TYPE_CHECKING, Any, Literal, Optional, TypedDict, TypeVar

import pytest

import microdag
from microdag import Flow, FlowError
from inputsteps import Box, Cart, Child, HasQty, Line, Order, Parent, Refund, SubCart
from inputsteps import Point as NamedPoint
from support import NO_ANNOTATION, edge_flow, run_cli

if TYPE_CHECKING:
    from decimal import Decimal  # a name type checkers see, and runs never resolve

jsonschema = pytest.importorskip("jsonschema")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T = TypeVar("T")


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(TypedDict):
    x: int
    y: int


@dataclasses.dataclass
class Options:
    depth: int
    name: str = "x"


class Opaque:
    pass


def _schema_of_param(annotation: object) -> dict[str, Any]:
    flow = Flow("one")

    def step(value):  # type: ignore[no-untyped-def]
        return value

    step.__annotations__ = {"value": annotation}
    flow.add("step", step)
    schema = flow.input_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema["properties"]["value"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("annotation,expected", [
    (str, {"type": "string"}),
    (int, {"type": "integer"}),
    (float, {"type": "number"}),
    (bool, {"type": "boolean"}),
    (None, {"type": "null"}),
    (list[int], {"type": "array", "items": {"type": "integer"}}),
    (set[str], {"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
    (tuple[int, ...], {"type": "array", "items": {"type": "integer"}}),
    (tuple[int, str], {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}],
                       "minItems": 2, "maxItems": 2}),
    (dict[str, float], {"type": "object", "additionalProperties": {"type": "number"}}),
    (dict, {"type": "object"}),
    (Literal["a", "b"], {"enum": ["a", "b"]}),
    (Literal[3], {"const": 3}),
    (Optional[int], {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
    (int | str, {"anyOf": [{"type": "integer"}, {"type": "string"}]}),
    (Colour, {"enum": ["red", "blue"], "description": "Colour"}),
    (Point, {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
             "required": ["x", "y"], "additionalProperties": False, "description": "Point"}),
    (Options, {"type": "object", "properties": {"depth": {"type": "integer"}, "name": {"type": "string", "default": "x"}},
               "required": ["depth"], "additionalProperties": False, "description": "Options"}),
    (Any, {}),
    ("list[int]", {"type": "array", "items": {"type": "integer"}}),
    ("Decimal", {}),  # imported under TYPE_CHECKING only: not an error, not checked
])
def test_annotations_become_json_schema(annotation: object, expected: dict[str, Any]) -> None:
    assert _schema_of_param(annotation) == expected


@pytest.mark.parametrize("annotation", [Opaque, T, list[Opaque]])
def test_what_json_schema_cannot_say_is_left_open_and_said(annotation: object) -> None:
    schema = _schema_of_param(annotation)
    text = json.dumps(schema)
    assert "type" not in schema or schema.get("type") == "array"
    assert "not checked" in text


def load(path: str, limit: int = 10, mode: Literal["fast", "slow"] = "fast") -> list[int]:
    return list(range(limit))


def count(load: list[int]) -> int:
    return len(load)


def typed_flow() -> Flow:
    flow = Flow("typed")
    flow.add("load", load)
    flow.add("count", count)
    return flow


def test_input_schema_has_types_defaults_and_required() -> None:
    schema = typed_flow().input_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"] == {
        "limit": {"type": "integer", "default": 10},
        "mode": {"enum": ["fast", "slow"], "default": "fast"},
        "path": {"type": "string"},
    }
    assert schema["required"] == ["path"] and schema["additionalProperties"] is False
    jsonschema.validate({"path": "p", "limit": 3}, schema)


@pytest.mark.parametrize("executor", ["inline", "threads", "processes"])
def test_run_checks_inputs_before_any_step(executor: str, tmp_path: Any) -> None:
    flow = typed_flow()
    assert flow.run({"path": "p", "limit": 3}, executor=executor)["count"] == 3
    with pytest.raises(FlowError) as info:
        flow.run({"limit": "5", "mode": "medium"}, executor=executor)
    assert sorted(info.value.problems) == sorted([
        "input 'limit': expected an integer, not a string ('5')",
        "input 'mode': expected one of 'fast', 'slow', not 'medium'",
        "step 'load' needs input 'path' (parameter 'path'), which was not given",
    ])
    with pytest.raises(FlowError, match="expected an integer, not a bool"):
        flow.run({"path": "p", "limit": True}, executor=executor)


def test_values_that_fit() -> None:
    flow = Flow("fits")

    def step(ratio: float, colour: Colour, point: Point, tags: Optional[list[str]] = None) -> str:
        return f"{ratio} {colour.value if isinstance(colour, Colour) else colour} {point['x']} {tags}"

    flow.add("step", step)
    assert flow.run({"ratio": 2, "colour": Colour.RED, "point": {"x": 1, "y": 2}})["step"] == "2 red 1 None"
    assert flow.run({"ratio": 0.5, "colour": "blue", "point": {"x": 1, "y": 2}, "tags": ["a"]})["step"]
    with pytest.raises(FlowError) as info:
        flow.run({"ratio": "x", "colour": "green", "point": {"x": 1}, "tags": [1]})
    assert sorted(info.value.problems) == [
        "input 'colour': expected Colour, not str ('green') ('green' is not a valid Colour)",  # (read into Colour)
        "input 'point': key 'y' is missing",
        "input 'ratio': expected a number, not a string ('x')",
        "input 'tags': expected a list of a string or null (None), not a list ([1])",
    ]


def test_a_map_over_an_input_takes_its_items() -> None:
    flow = Flow("items")

    def double(x: int) -> int:
        return 2 * x

    def triple(chunk: list[int]) -> list[int]:  # a batch of items: one result each
        return [3 * n for n in chunk]

    flow.add("double", double, map="x")
    flow.add("total", triple, map="chunk", batch_size=2)
    assert flow.input_schema()["properties"] == {
        "x": {"type": "array", "items": {"type": "integer"}},
        "chunk": {"type": "array", "items": {"type": "integer"}},
    }
    run = flow.run({"x": [1, 2], "chunk": range(5)})
    assert run["double"] == [2, 4] and run["total"] == [0, 3, 6, 9, 12]
    assert flow.run({"x": (n for n in (3,)), "chunk": []})["double"] == [6]  # a generator is not consumed
    with pytest.raises(FlowError) as info:
        flow.run({"x": ["a"], "chunk": "abc"})
    assert sorted(info.value.problems) == [
        "input 'chunk': expected a list of an integer, not a string ('abc')",
        "input 'x': item 0: expected an integer, not a string ('a')",
    ]


# -- edges --------------------------------------------------------------------------


@pytest.mark.parametrize("produced,wanted", [
    (str, int), (int, str), (None, int), (list[int], dict), (list[str], list[int]), ("str", "int"),
    (dict[str, int], dict[str, str]), (float, int),
    # classes whose values are known, neither a subclass of the other
    (Order, int), (int, Order), (Order, str), (Cart, dict), (dict, Cart), (Order, Cart), (Cart, Refund),
    (Cart, list[Cart]), (list[Order], list[int]), (None, Order), (Order, None), (Colour, int),
    (datetime.date, str), (decimal.Decimal, float), (NamedPoint, dict), (Point, int), (Parent, Line),
    (dict[str, Order], dict[str, Cart]),
])
def test_edges_whose_types_never_meet_are_refused(produced: object, wanted: object) -> None:
    with pytest.raises(FlowError) as info:
        edge_flow(produced, wanted).validate()
    (problem,) = info.value.problems
    assert problem.startswith("step 'sink': parameter 'value' is annotated ")
    assert "what step 'source' returns is annotated" in problem


@pytest.mark.parametrize("produced,wanted", [
    (int, int), (bool, int), (int, float), (bool, float), (list[int], list), (list, list[int]),
    (Any, int), (int, Any), (NO_ANNOTATION, int), (int, NO_ANNOTATION), (Optional[str], int), (int, Optional[str]),
    (T, int), (Opaque, int), (int, Opaque), ("Decimal", int), ("NoSuchName", str), (list[int], list[T]),
    (dict[str, int], dict), (tuple[int, str], tuple),
    # classes: subclasses either way, protocols, generics, unions, what says too little
    (Order, Order), (Order, Order | None), (Order, Optional[Order]), (Child, Parent), (Parent, Child),
    (SubCart, Cart), (Cart, SubCart), (Order, Any), (Order, object), (Any, Order), (object, Order),
    (Order, T), (T, Order), (Line, HasQty), (HasQty, Line), (Box[int], Box[str]), (Box[int], Box),
    (Order, Opaque), (Opaque, Order), (Order, "NoSuchName"), ("NoSuchName", Order), (list[Order], list[T]),
    (Point, dict), (dict, Point), (NamedPoint, tuple), (tuple, NamedPoint), (Colour, Colour),
    (Order | None, Order), (list[Child], list[Parent]), (datetime.datetime, datetime.date),
    (pathlib.PosixPath, pathlib.Path),
])
def test_edges_in_doubt_are_accepted(produced: object, wanted: object) -> None:
    edge_flow(produced, wanted).validate()


def test_map_steps_are_checked_item_wise() -> None:
    edge_flow(list[int], int, map="value").validate()
    edge_flow(list[int], list[int], map="value", batch_size=2).validate()  # a batch is a list of items
    with pytest.raises(FlowError, match="the items of what step 'source' returns are annotated str"):
        edge_flow(list[str], int, map="value").validate()
    edge_flow(dict[str, int], int, map="value").validate()  # keys: in doubt


def test_a_map_steps_output_is_the_list_of_its_calls() -> None:
    flow = Flow("mapped")

    @flow.step
    def numbers() -> list[int]:
        return [1, 2]

    @flow.step(map="n", inputs={"n": "numbers"})
    def doubled(n: int) -> int:
        return 2 * n

    @flow.step
    def total(doubled: list[int]) -> int:
        return sum(doubled)

    assert flow.run()["total"] == 6
    bad = Flow("bad")
    bad.add("numbers", numbers)
    bad.add("doubled", doubled, map="n", inputs={"n": "numbers"})

    def wrong(doubled: int) -> int:
        return doubled

    bad.add("wrong", wrong)
    with pytest.raises(FlowError, match="parameter 'doubled' is annotated int"):
        bad.validate()


# -- flow files and the command line ------------------------------------------------

TYPED = """\
[flow]
name = "typed"

[inputs]
limit = { type = "integer", default = 10, description = "how many" }
version = { type = "string" }
mode = { type = "string", enum = ["a", "b"], default = "a" }
plain = [1, 2]

[steps.echo]
command = ["echo", "{inputs.version} {inputs.limit} {inputs.mode}"]
"""


def test_flow_files_declare_typed_inputs(tmp_path: Any) -> None:
    path = tmp_path / "typed.toml"
    path.write_text(TYPED)
    flow = microdag.load_flow(str(path))
    schema = flow.input_schema()
    assert schema["properties"] == {
        "limit": {"type": "integer", "description": "how many", "default": 10},
        "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
        "version": {"type": "string"},
    }
    assert schema["required"] == ["version"]
    assert flow.run({"version": "1.10"})["echo"] == "1.10 10 a"
    with pytest.raises(FlowError, match="input 'limit': expected an integer"):
        flow.run({"version": "1", "limit": 2.5})
    with open(os.path.join(ROOT, "src", "microdag", "flowfile.schema.json")) as f:
        file_schema = json.load(f)
    import tomllib

    jsonschema.validate(tomllib.loads(TYPED), file_schema)


def test_bad_declarations_name_the_input_and_line(tmp_path: Any) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[flow]\nname = "bad"\n[inputs]\nlimit = { type = "int" }\n'
                    'n = { type = "integer", default = "x" }\nm = { type = "string", enum = [] }\n'
                    '[steps.a]\ncommand = ["echo", "{inputs.limit} {inputs.n} {inputs.m}"]\n')
    with pytest.raises(FlowError) as info:
        microdag.load_flow(str(path))
    problems = info.value.problems
    assert len(problems) == 3
    assert problems[0].endswith("bad.toml:4: [inputs] 'limit': type must be one of string, integer, number, "
                                "boolean, array, object, null (or a list of them), or a class as \"module:Class\", "
                                "not \"int\"")
    assert "bad.toml:5: [inputs] 'n': the default does not fit its type: expected an integer" in problems[1]
    assert "bad.toml:6: [inputs] 'm': enum must be a non-empty list" in problems[2]


def test_the_command_line_prints_the_schema_and_reads_inputs_by_type(tmp_path: Any) -> None:
    (tmp_path / "typed.toml").write_text(TYPED)
    done = run_cli("schema", "typed.toml", cwd=tmp_path)
    assert done.returncode == 0 and json.loads(done.stdout)["required"] == ["version"]
    done = run_cli("run", "typed.toml", "-i", "version=1.10", "-i", "limit=3", "--json", "--store", "memory",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outputs"] == {"echo": "1.10 3 a"}  # "1.10" stays text
    done = run_cli("run", "typed.toml", "-i", "version=1", "-i", "limit=three", "--store", "memory",
                   cwd=tmp_path)
    assert done.returncode == 2 and done.stderr == "error: --input limit=three: 'limit' takes an integer, not \"three\"\n"
    done = run_cli("run", "typed.toml", "--store", "memory", cwd=tmp_path)
    assert done.returncode == 2 and "needs input 'version'" in done.stderr and "Traceback" not in done.stderr


def test_the_one_checker_reads_the_flow_files_rules() -> None:
    """``problem`` checks the keywords of a flow file's rules too (there is no
    second checker): bounds on real numbers only, text length and patterns."""
    from microdag._schema import describe, problem

    timeout = {"type": "number", "exclusiveMinimum": 0, "maximum": 1_000_000}
    assert problem(timeout, 5) is None and problem(timeout, 1_000_000) is None
    for bad in (0, -1, 1_000_001, float("nan"), float("inf"), True, "5"):
        assert problem(timeout, bad) is not None, bad
    assert problem({"type": "number", "minimum": 1}, float("inf")) is not None  # a bound: real numbers only
    assert problem({"type": "number"}, float("inf")).startswith("expected a finite number")  # unless allowed:
    assert problem({"type": "number", "x-allow-inf-nan": True}, float("inf")) is None
    assert problem({"type": "integer", "minimum": 0}, 10**400) is None
    assert problem({"type": "string", "minLength": 1}, "") == "expected a non-empty string, not ''"
    call = {"type": "string", "pattern": r"^\w+:\w+$"}
    assert problem(call, "m:f") is None and problem(call, "m.f") is not None
    assert describe(timeout) == "a number > 0 and at most 1,000,000"
    assert describe({"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}) == (
        "an integer from -2,147,483,648 to 2,147,483,647"
    )
    assert describe({"type": "integer", "minimum": 0}) == "an integer >= 0"
    assert describe({"enum": ["a", "b"]}) == "one of 'a', 'b'"
    assert describe({"enum": ["a", "b"]}, show=lambda v: f'"{v}"') == 'one of "a", "b"'
