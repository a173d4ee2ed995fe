"""Classes and steps for the typed-inputs tests; flow files name them (``inputsteps:Order``)."""

import dataclasses
import datetime
import decimal
import enum
from typing import Generic, NamedTuple, Protocol, TypedDict, TypeVar

import pydantic


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass(frozen=True)
class Line:
    sku: str
    qty: int = 1


@dataclasses.dataclass
class Order:
    id: int
    lines: list[Line]
    placed: "datetime.datetime | None" = None
    colour: Colour = Colour.RED
    tags: list[str] = dataclasses.field(default_factory=list)


class Item(pydantic.BaseModel):
    name: str
    price: decimal.Decimal


class Cart(pydantic.BaseModel):
    owner: str
    items: list[Item]


class Refund(pydantic.BaseModel):
    order: int


class Point(NamedTuple):
    x: int
    y: int = 0


class Meta(TypedDict):
    tag: str


class Opaque:
    """A class JSON cannot stand for."""


# -- for edges: subclasses, a protocol, a generic class

T = TypeVar("T")


@dataclasses.dataclass
class Parent:
    x: int


@dataclasses.dataclass
class Child(Parent):
    y: int = 0


class SubCart(Cart):
    extra: int = 0


class HasQty(Protocol):
    qty: int


@dataclasses.dataclass
class Box(Generic[T]):
    item: T


not_a_class = 3


def kind_of(order):  # type: ignore[no-untyped-def]
    """A parameter without annotation: what a flow file declares gives its type."""
    return type(order).__name__


def total(order: Order) -> int:
    return sum(line.qty for line in order.lines)


def cart_size(cart: Cart) -> int:
    return len(cart.items)


def make_order() -> Order:
    return Order(1, [Line("a", 2)])


def make_cart() -> Cart:
    return Cart(owner="ann", items=[])


def count(n: int) -> int:
    return n
