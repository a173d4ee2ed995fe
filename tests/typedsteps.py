"""Typed values for ``test_typed``: dataclasses, a NamedTuple, a TypedDict, enums,
Pydantic models, and a flow whose steps return them (``typedsteps:flow``).

The flow's first step returns :data:`VALUE` (set by a test); ``use`` fails
while :data:`FAIL` names a file that exists, so that a run can be resumed.
"""

import dataclasses
import datetime
import decimal
import enum
import os
import uuid
from pathlib import Path
from typing import NamedTuple, Optional, TypedDict

from pydantic import BaseModel, ConfigDict

from microdag import Flow


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Size(enum.IntEnum):
    S = 1
    L = 3


class Point(NamedTuple):
    x: int
    y: float = 0.0


class Extra(TypedDict):
    label: str
    on: datetime.date


@dataclasses.dataclass(frozen=True)
class Item:
    name: str
    price: decimal.Decimal
    tags: frozenset[str] = frozenset()


@dataclasses.dataclass
class Order:
    id: uuid.UUID
    when: datetime.datetime
    items: list[Item]
    color: Color
    blob: bytes
    wait: datetime.timedelta
    path: Path
    size: Size = Size.S
    note: Optional[str] = None
    at: Optional[datetime.time] = None
    point: Point = Point(0)
    extra: Optional[Extra] = None
    counts: dict[int, tuple[int, str]] = dataclasses.field(default_factory=dict)
    either: "int | str | Item" = 0
    parent: "Optional[Order]" = None


class Part(BaseModel):
    name: str
    count: int


class Model(BaseModel):
    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    title: str
    when: datetime.datetime
    price: decimal.Decimal
    color: Color
    parts: list[Part]
    data: bytes = b""
    ids: set[uuid.UUID] = set()


def sample() -> Order:
    """An order with every kind of field filled."""
    return Order(
        id=uuid.UUID(int=7), when=datetime.datetime(2024, 3, 1, 9, 30, tzinfo=datetime.timezone.utc),
        items=[Item("tea", decimal.Decimal("3.50"), frozenset({"hot", "green"}))], color=Color.BLUE,
        blob=b"\x00\xff", wait=datetime.timedelta(days=-1, seconds=5), path=Path("/tmp/a"), size=Size.L,
        note="n", at=datetime.time(8, 15), point=Point(2, 1.5),
        extra={"label": "x", "on": datetime.date(2024, 1, 2)}, counts={3: (1, "a")}, either=Item("x", decimal.Decimal(1)),
    )


#: What ``make`` returns.
VALUE: dict[str, object] = {"order": sample()}
#: While this file exists, ``use`` fails.
FAIL = {"flag": ""}


def make() -> Order:
    value = VALUE["order"]
    assert isinstance(value, Order)
    return value


def model() -> Model:
    value = VALUE.get("model")
    assert isinstance(value, Model)
    return value


def items() -> list[int]:
    return [1, 2, 3]


def each(items: int) -> Item:
    return Item(f"item {items}", decimal.Decimal(items) / 4)


def batch(items: list[int]) -> list[Point]:
    return [Point(i, i / 2) for i in items]


def use(make: Order, each: list[Item], batch: list[Point]) -> str:
    if FAIL["flag"] and os.path.exists(FAIL["flag"]):
        raise RuntimeError("failing until the flag is gone")
    kinds = {type(make).__name__, *(type(i).__name__ for i in each), *(type(p).__name__ for p in batch)}
    return f"{sorted(kinds)} {make == VALUE['order']}"


def again(make: Order) -> Order:
    return make


def described(model: Model, remodel: Model) -> str:
    if FAIL["flag"] and os.path.exists(FAIL["flag"]):
        raise RuntimeError("failing until the flag is gone")
    return f"{type(model).__name__} {type(remodel).__name__} {model == VALUE['model']}"


def remodel(model: Model) -> Model:
    return model


def models() -> Flow:
    f = Flow("models")
    f.add("model", model)
    f.add("remodel", remodel, cache=True)
    f.add("described", described)
    return f


def build() -> Flow:
    f = Flow("typed")
    f.add("make", make)
    f.add("items", items)
    f.add("each", each, map="items")
    f.add("batch", batch, map="items", batch_size=2)
    f.add("use", use)
    f.add("again", again, cache=True)
    return f


flow = build()
