"""Step functions of ``test_add_steps.py``: steps that add steps.

They live in a module so that a durable store can name them
(``addsteps:part``) and a resumed run, in another process, finds them again.

``python -m addsteps STORE RUN_ID MARKS N`` runs :func:`fan_flow` in a SQLite
store (resuming run RUN_ID if it exists): ``plan`` adds N steps that each
write a mark file in MARKS and sleep a little, and ``gather`` sums them; the
kill test SIGKILLs it midway and runs it again.
"""

import os
import sys
import time

import microdag
from microdag import Flow


def load() -> list[int]:
    return [1, 2, 3]


def part(load: list[int], k: int = 0) -> int:
    return load[k] * 10


def total(**parts: int) -> int:
    return sum(parts.values())


def plan(load: list[int]) -> int:
    """Adds a part per item of ``load``, then ``sum`` after them."""
    ctx = microdag.context()
    for k in range(len(load)):
        ctx.add(f"part{k}", part, depends_on=["load"], inputs={"load": "load"})
    ctx.add("sum", total, depends_on=[f"part{k}" for k in range(len(load))])
    return len(load)


def plain_flow(name: str = "adds") -> Flow:
    flow = Flow(name)
    flow.add("load", load)
    flow.add("plan", plan)
    return flow


# -- failing and flaky steps (a file says how many times they ran) --------------------


def count(path: str) -> int:
    """Add one to the number in ``path``; the new number."""
    n = int(open(path).read()) + 1 if os.path.exists(path) else 1
    with open(path, "w") as f:
        f.write(str(n))
    return n


def flaky(path: str, fails: int = 1) -> str:
    """Fails the first ``fails`` times it runs (counted in ``path``)."""
    if count(path) <= fails:
        raise RuntimeError(f"flaky failure {fails}")
    return "ok"


def adds_flaky(path: str) -> str:
    microdag.context().add("flaky", flaky, inputs={}, retries=2)
    return "added"


def fails_while(gate: str) -> int:
    """Fails while the file ``gate`` exists."""
    if os.path.exists(gate):
        raise RuntimeError("told to fail")
    return 1


def adds_failing(gate: str) -> str:
    ctx = microdag.context()
    ctx.add("shaky", fails_while)
    ctx.add("after", total, depends_on=["shaky"])
    return "planned"


def square(x: int) -> int:
    return x * x


def adds_map(load: list[int]) -> int:
    microdag.context().add("squares", square, map="x", inputs={"x": "load"})
    microdag.context().add("sum_sq", lambda_free_sum, inputs={"values": "squares"})
    return 0


def lambda_free_sum(values: list[int]) -> int:
    return sum(values)


# -- the kill test ------------------------------------------------------------------


def marked(marks: str) -> int:
    """Leaves a mark that it started, sleeps a little, returns its number (``m3``: 3)."""
    k = int(microdag.context().step[1:])
    with open(os.path.join(marks, f"{k}-{os.getpid()}-{time.monotonic_ns()}"), "w"):
        pass
    time.sleep(0.05)
    return k


def fan(n: int, marks: str) -> int:
    ctx = microdag.context()
    for k in range(n):
        ctx.add(f"m{k}", marked, inputs={}, depends_on=[])
    ctx.add("gather", total, depends_on=[f"m{k}" for k in range(n)])
    return n


def fan_flow() -> Flow:
    flow = Flow("fan")
    flow.add("plan", fan)
    return flow


def main(argv: list[str]) -> None:
    from microdag.stores import SQLiteStore

    path, run_id, marks, n = argv
    store = SQLiteStore(path)
    exists = any(info.id == run_id for info in store.list_runs())
    flow = fan_flow()
    inputs = {"n": int(n), "marks": marks}
    run = flow.run(inputs, store=store, run_id=run_id, resume=exists)
    print(run.status, run.outputs.get("gather"))


if __name__ == "__main__":
    main(sys.argv[1:])
