"""Step functions of ``test_workers_adds.py``: steps that add steps, run by workers.

They live in a module so that a worker in another process finds an added
step's function by its name (``workadds:double``).  Each step notes its call
in ``WORKERS_TEST_LOG`` (when set), so that a test counts how often it ran.
"""

import os
import time

import microdag
from microdag import Flow


def note(name: str) -> None:
    log = os.environ.get("WORKERS_TEST_LOG")
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{name} {os.getpid()}\n".encode())
        os.close(fd)
    time.sleep(float(os.environ.get("WORKERS_TEST_SLEEP", "0")))


def seed() -> int:
    note("seed")
    return 3


def double(x: int) -> int:
    note("double")
    return 2 * x


def inc(x: int) -> int:
    note("inc")
    return x + 1


def items_of(n: int) -> list[int]:
    note("items")
    return list(range(n + 2))


def square(x: int) -> int:
    note(f"square{x}")
    return x * x


def total(**parts: "int | list[int]") -> int:
    note("total")
    return sum(sum(v) if isinstance(v, list) else v for v in parts.values())


def grow(seed: int) -> int:
    """Adds steps: a chain (``b`` after ``a``), a map (``sq``) and ``total`` after them all."""
    note("grow")
    ctx = microdag.context()
    ctx.add("a", double, inputs={"x": "seed"})
    ctx.add("b", inc, inputs={"x": "a"})
    ctx.add("items", items_of, inputs={"n": "seed"})
    ctx.add("sq", square, map="x", inputs={"x": "items"}, retries=1)
    ctx.add("total", total, depends_on=["b", "sq", "side"])
    return seed


def side(seed: int) -> int:
    note("side")
    return seed + 100


def taken(seed: int) -> int:
    """Adds a step whose name the run has already."""
    microdag.context().add("side", double, inputs={"x": "seed"})
    return seed


def flow(name: str = "wadds") -> Flow:
    f = Flow(name)
    f.add("seed", seed)
    f.add("grow", grow)
    f.add("side", side)
    return f


def taken_flow() -> Flow:
    f = Flow("wtaken")
    f.add("seed", seed)
    f.add("side", side)
    f.add("taken", taken)
    return f


def gated(gate: str) -> int:
    """Fails while the file ``gate`` exists."""
    if os.path.exists(gate):
        raise RuntimeError("told to fail")
    return 2


def adds_gated(gate: str) -> int:
    microdag.context().add("after", gated)
    return 1


def gated_flow() -> Flow:
    return Flow("wgated").add("plan", adds_gated)


def adds_pooled(seed: int) -> int:
    """Adds two steps that hold pool ``db``."""
    ctx = microdag.context()
    ctx.add("p1", double, inputs={"x": "seed"}, uses="db")
    ctx.add("p2", inc, inputs={"x": "seed"}, uses="db")
    return seed


def pooled_flow() -> Flow:
    return Flow("wpooled").add("seed", seed).add("pooled", adds_pooled)


# -- an added step's output kept by its return annotation -------------------------------

import dataclasses


@dataclasses.dataclass
class Part:
    name: str
    count: int


def part(seed: int) -> Part:
    return Part("p", seed)


def part_kind(part: Part) -> str:
    """What its consumer received: the class's name and a field."""
    return f"{type(part).__name__} {part.count}"


def adds_typed(seed: int) -> int:
    """Adds ``part`` (annotated to return a dataclass) and ``kind``, which reads it."""
    ctx = microdag.context()
    ctx.add("part", part, inputs={"seed": "seed"})
    ctx.add("kind", part_kind, inputs={"part": "part"})
    return seed


def typed_flow() -> Flow:
    return Flow("wtyped").add("seed", seed).add("typed", adds_typed)
