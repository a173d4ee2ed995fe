"""Module-level step functions for ``test_limits.py`` (pools and rates).

Each step returns the wall-clock interval it ran in (``time.time()``, one
clock for every process of this machine), so that a test can count, at
every instant, how many steps of a pool were running: the steps' own
intervals lie inside the times their units were held.
"""

import asyncio
import time

import microdag


def held(seconds=0.02, **_):
    """Run ``seconds``; the interval it ran in."""
    start = time.time()
    time.sleep(seconds)
    return (start, time.time())


async def held_async(seconds=0.02, **_):
    start = time.time()
    await asyncio.sleep(seconds)
    return (start, time.time())


def item(x, seconds=0.02):
    """A map item: its interval."""
    start = time.time()
    time.sleep(seconds)
    return (start, time.time())


def flaky(**_):
    """Fails its first attempt; its interval on the second."""
    start = time.time()
    if microdag.context().attempt == 1:
        raise ValueError("first attempt fails")
    return (start, time.time())


def call(**_):
    """An instant call: when it ran."""
    return time.time()


def flaky_call(**_):
    """An instant call failing its first attempt: when it ran."""
    if microdag.context().attempt == 1:
        raise ValueError("first attempt fails")
    return time.time()


def most_at_once(intervals):
    """The most intervals open at one instant."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
    now = peak = 0
    for _, delta in events:
        now += delta
        peak = max(peak, now)
    return peak


def five(**_):
    return list(range(5))


def fails_twice(seconds=0.0, **_):
    """Runs ``seconds``, and fails its first two attempts; then its attempt number."""
    time.sleep(seconds)
    if microdag.context().attempt < 3:
        raise ValueError("the first two attempts fail")
    return microdag.context().attempt


def adds_held(**_):
    """Adds step ``added``, which holds a unit of ``db`` and a token of ``api``."""
    microdag.context().add("added", call, uses={"db": 1, "api": 1})
    return 1
