"""Module-level steps for the flow benchmarks (process workers import them)."""

import time


def nap(seconds: float) -> float:
    """Sleep (releasing the GIL), return the seconds slept."""
    time.sleep(seconds)
    return seconds


def burn(seconds: float) -> int:
    """Spin the CPU for about ``seconds``; return the loop count."""
    start = time.perf_counter()
    count = 0
    while time.perf_counter() - start < seconds:
        count += 1
    return count


def plus_one(x: int) -> int:
    """A tiny map item."""
    return x + 1


def plus_one_batch(x: list[int]) -> list[int]:
    """The same, for a batch of items."""
    return [v + 1 for v in x]


def one() -> int:
    """A tiny step with no input."""
    return 1


def add_one(**deps: int) -> int:
    """A tiny step: 1 plus its dependencies' outputs."""
    return 1 + sum(deps.values())


def add_one_args(*values: int) -> int:
    """``add_one`` with positional inputs (a dask task's arguments)."""
    return 1 + sum(values)


def one_of(_: object) -> int:
    """``one()`` for ``Executor.map`` (which passes an item)."""
    return 1


def nap_ms(**deps: object) -> float:
    """Sleep a millisecond; return this process's CPU time so far (a chain's
    last step minus its first: what the worker spent meanwhile)."""
    time.sleep(0.001)
    return time.process_time()
