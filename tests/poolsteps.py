"""Module-level step functions for ``test_pools.py`` (the pool contract).

Workers (processes, a process executor, a Dask cluster) get a step by
pickling, which works only for functions importable by name: ``tests/`` is on
their ``sys.path`` (see ``support.child_env``).  Sleeping steps use
``flowsteps.sleeper`` (``dynsteps.async_nap`` for ``async def`` steps),
which a test's teardown ends in this process.
"""

import asyncio
import os
import time

import microdag
from dynsteps import async_nap
from flowsteps import sleeper


class Refused(ValueError):
    """A step's own exception type, with a field of its own."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message, code)
        self.code = code

    def __str__(self) -> str:
        return f"{self.args[0]} (code {self.code})"


def number(x):
    return x


def double(number):
    return 2 * number


async def later(number):
    await asyncio.sleep(0.01)
    return number + 1


def square(items):
    return items * items


def both(double, later, square):
    return [double, later, square]


def span(seconds):
    """Sleep ``seconds``; return when this call started and ended (wall clock)."""
    started = time.time()
    time.sleep(seconds)
    return [started, time.time()]


def refuse(x):
    raise Refused(f"refused {x}", 7)


def after(refuse):
    return refuse


def slow(seconds):
    return sleeper(seconds)


async def aslow(seconds):
    return await async_nap(seconds)


def quick():
    return "quick"


def where():
    """The facts a step's context gives, in the process that runs it; fails its first two attempts."""
    ctx = microdag.context()
    if ctx.attempt < 3:
        raise ConnectionError(f"attempt {ctx.attempt} fails")
    return {"run_id": ctx.run_id, "flow": ctx.flow, "step": ctx.step, "attempt": ctx.attempt}


def item_where(items):
    ctx = microdag.context()
    return [ctx.step, ctx.item, ctx.attempt, items]


def talk():
    print("said on stdout")
    return "talked"


def die():
    os._exit(3)


def survivor():
    return "survived"


def call(fn):
    return fn()
