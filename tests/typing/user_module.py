"""A user's module, checked with ``mypy --strict`` by ``tests/test_typing.py``.

It uses the public API as its users do; each ``assert_type`` is what mypy must
infer (and ``reveal_type`` lines are not needed).  Lines marked
``# type: ignore[...]`` must be errors: the ignore is unused (an error under
``--strict``'s ``warn_unused_ignores``) if mypy accepts them.
"""

import dataclasses
import datetime
import decimal
from collections.abc import Callable, Coroutine
from typing import Any, assert_type

import microdag

flow = microdag.Flow("typed")


@flow.step
def extract(source: str) -> list[int]:
    return [len(source)]


@flow.step(retries=2, timeout=10)
def transform(extract: list[int]) -> dict[str, int]:
    return {"n": sum(extract)}


@flow.step(name="load", depends_on=["transform"])
async def load_it(transform: dict[str, int]) -> int:
    return transform["n"]


# The decorators give the functions back with their own types.
as_callable: Callable[[str], list[int]] = extract
as_coroutine: Callable[[dict[str, int]], Coroutine[Any, Any, int]] = load_it
assert_type(extract("abc"), list[int])
assert_type(transform([1]), dict[str, int])

run = flow.run({"source": "demo"}, executor="threads", on_failure="continue")
assert_type(run, microdag.Run)
assert_type(run.status, "microdag.RunStatus")
status: str = run.status
if run.status == "succeeded":
    pass
if run.status == "succeded":  # type: ignore[comparison-overlap]
    pass
task = run.tasks["extract"]
assert_type(task.status, "microdag.TaskStatus")
assert_type(task.attempts, int)

flow.run(executor="thread")  # type: ignore[arg-type]
flow.run(on_failure="ignore")  # type: ignore[arg-type]
flow.add("bad", extract, trigger="any_success")  # type: ignore[arg-type]

# graphlib's sorter, generic in its node type
ts: microdag.TopologicalSorter[str] = microdag.TopologicalSorter({"b": {"a"}})
ts.prepare()
ready = ts.get_ready()
assert_type(ready, tuple[str, ...])
ts.done(*ready)
order = list(microdag.TopologicalSorter({"b": ["a"]}).static_order())
assert_type(order, list[str])

# Graph, generic in its node type (the README's own example)
g = microdag.Graph({"load": [], "clean": ["load"], "report": ["clean"]}, kind="step")
assert_type(g, microdag.Graph[str])
assert_type(g.order(), list[str])
assert_type(g.ancestors(["clean"]), list[str])
assert_type(g.to_json(), str)
numbers = microdag.Graph({1: [], 2: [1]})
assert_type(numbers.order(), list[int])

# the inputs' JSON Schema: plain JSON data
schema = flow.input_schema()
assert_type(schema, dict[str, Any])
required: list[str] = schema["required"]


# Typed values through a durable store: a step returning a dataclass; with the
# JSON codec it is kept by its annotation and read back as an Order.
@dataclasses.dataclass(frozen=True)
class Order:
    id: int
    when: datetime.datetime
    price: decimal.Decimal


orders = microdag.Flow("orders")


@orders.step
def make_order() -> Order:
    return Order(1, datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc), decimal.Decimal("9.99"))


@orders.step
def total(make_order: Order) -> decimal.Decimal:
    return make_order.price


assert_type(make_order(), Order)
stored = orders.run(store="sqlite:runs.db", keep_outputs=True)
kept: Order = stored["make_order"]
resumed = orders.run(store="sqlite:runs.db", run_id=stored.id, resume=True)
assert_type(resumed, microdag.Run)
