"""Step functions for the CLI tests' flow files (``call = "clisteps:NAME"``).

The flow files live in each test's temporary directory; this module is found
through ``sys.path`` (the tests directory), also by the CLI subprocesses, whose
``PYTHONPATH`` includes it.  Steps that must behave differently between a run
and its resume look for flag files in a directory given as a flow input.
"""

import logging
import os
import time


def extract(n: int = 3) -> list[int]:
    print(f"extracting {n} numbers")
    logging.getLogger("clisteps").warning("extract saw n=%d", n)
    return list(range(n))


def double(extract: list[int]) -> list[int]:
    return [x * 2 for x in extract]


def total(double: list[int]) -> int:
    return sum(double)


def mark(flags: str, name: str) -> None:
    with open(os.path.join(flags, name + ".ran"), "a") as f:
        f.write("x\n")


def runs_of(flags: str, name: str) -> int:
    try:
        with open(os.path.join(flags, name + ".ran")) as f:
            return len(f.read().splitlines())
    except FileNotFoundError:
        return 0


def checked(total: int, flags: str) -> int:
    """Fails while ``<flags>/broken`` exists."""
    mark(flags, "checked")
    if os.path.exists(os.path.join(flags, "broken")):
        raise ValueError(f"total {total} failed the check <b>")
    return total + 1


def slow(total: int, flags: str) -> int:
    """Sleeps (up to 60 s) while ``<flags>/sleep`` exists."""
    mark(flags, "slow")
    deadline = time.monotonic() + 60
    while os.path.exists(os.path.join(flags, "sleep")) and time.monotonic() < deadline:
        time.sleep(0.02)
    return total


def square(extract: int) -> int:
    """Mapped over ``extract``'s output: one item each."""
    print(f"squaring {extract}")
    return extract * extract


def squares(extract: list[int]) -> list[int]:
    """Mapped over ``extract``'s output in batches."""
    print(f"squaring {extract}")
    return [x * x for x in extract]


def unique(extract: list[int]):  # type: ignore[no-untyped-def]
    """A value JSON cannot hold without an annotation that says it is a set: it needs the pickle codec."""
    return set(extract)
