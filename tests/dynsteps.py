"""Module-level step functions for ``test_dynamic.py`` (maps, skips, async
steps, cancellation, run context).

Worker processes get step functions by pickling, which works only for
functions importable by name; pytest's default "prepend" import mode puts
``tests/`` on ``sys.path`` and ``forkserver``/``spawn`` children inherit the
parent's ``sys.path``, so they can import this module as ``dynsteps``.

Parameter names matter: a parameter named like a step receives its output,
any other one is a flow input.  Steps that sleep for long sleep in short
slices and stop early once :func:`release` is called, so that attempts
abandoned in threads do not outlive their test.
"""

import asyncio
import os
import time

import microdag
from flowsteps import _GENERATION
from flowsteps import release_sleepers as release  # ends every nap now running
from flowsteps import sleeper as nap  # sleeps in short slices, ends early on release()

# -- plain steps -----------------------------------------------------------------------


def items(n):
    return list(range(n))


def numbers(n):
    return range(n)  # any iterable, not only a list


def square(items):
    return items * items


def scale(items, factor):
    return items * factor


def square_xs(xs):
    return xs * xs


def total(square):
    return sum(square)


def length(items):
    return len(items)


def not_iterable(n):
    return n


def mapped_over_int(not_iterable):
    return not_iterable


def slow_first(items):
    """Item 0 finishes last: results must still come back in input order."""
    time.sleep(0.15 if items == 0 else 0.01)
    return (items, microdag.context().item)


# -- batches ---------------------------------------------------------------------------


def batch_square(items):
    ctx = microdag.context()
    return [(x * x, len(items), ctx.item) for x in items]


def batch_one_result(items):
    return [sum(items)]


def batch_not_a_list(items):
    return 42


# -- failures, retries, timeouts in maps -----------------------------------------------


def fail_on_three(items, workdir):
    """Fail item 3; every other item leaves a marker file."""
    if items == 3:
        raise ValueError("item three is bad")
    time.sleep(0.01)
    with open(os.path.join(workdir, f"item-{items}"), "w"):
        pass
    return items


def flaky_odd(items):
    """Odd items fail on their first attempt only."""
    attempt = microdag.context().attempt
    if items % 2 and attempt == 1:
        raise ConnectionError(f"item {items} failed on attempt 1")
    return (items, attempt)


def slow_on_first_attempt(items):
    """Item 1 hangs on its first attempt only (to be timed out, then retried)."""
    attempt = microdag.context().attempt
    if items == 1 and attempt == 1:
        nap(10)
    return (items, attempt)


def square_default(xs=(1, 2, 3)):
    return xs * xs


def always_fails_on_two(items):
    if items == 2:
        raise ConnectionError("item 2 never works")
    return items


def nap_item(seconds):
    return nap(seconds)


def _mark(workdir, kind):
    ctx = microdag.context()
    with open(os.path.join(workdir, f"{kind}-{ctx.step}-{ctx.item}-{os.getpid()}"), "w"):
        pass


def nap_then_mark(seconds, workdir):
    """Leave a ``start-`` marker, sleep, then a ``done-`` one (both name the
    step, the item and the process)."""
    _mark(workdir, "start")
    nap(seconds)
    _mark(workdir, "done")
    return seconds


def naps_then_mark(naps, workdir):
    """:func:`nap_then_mark`, for mapping over ``naps``."""
    return nap_then_mark(naps, workdir)


def mark_after(nap_then_mark, workdir):
    _mark(workdir, "after")
    return "after"


def window(seconds):
    """Sleep ``seconds``; return ``(start, end)`` on the system-wide monotonic clock."""
    start = time.monotonic()
    time.sleep(seconds)
    return (start, time.monotonic())


# -- skips and trigger rules -------------------------------------------------------------


def ok():
    return "ok"


def skipper():
    raise microdag.Skip("nothing to do today")


def failer():
    raise ValueError("broken on purpose")


def show(**deps):
    """Report exactly what each dependency passed."""
    return dict(sorted(deps.items()))


def after_ok(ok):
    return ("after", ok)


def after_skipper(skipper):
    return ("after", skipper)


def after_failer(failer):
    return ("after", failer)


def chain_next(after_skipper):
    return ("next", after_skipper)


def chain_last(chain_next):
    return ("last", chain_next)


def skip_counting(workdir):
    """Skip, leaving one marker file per attempt."""
    with open(os.path.join(workdir, f"attempt-{len(os.listdir(workdir)) + 1}"), "w"):
        pass
    raise microdag.Skip("counted")


# -- async steps ---------------------------------------------------------------------------


async def async_double(n):
    await asyncio.sleep(0.01)
    ctx = microdag.context()
    return {"value": 2 * n, "step": ctx.step, "attempt": ctx.attempt, "run_id": ctx.run_id}


def sync_after(async_double):
    return async_double["value"] + 1


async def async_square(items):
    await asyncio.sleep(0.01 * (3 - items % 3))
    return (items * items, microdag.context().item)


async def async_nap(seconds):
    """:func:`nap` for event loops (ends early after :func:`release`)."""
    generation = _GENERATION[0]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and _GENERATION[0] == generation:
        await asyncio.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
    return seconds


async def async_skip():
    await asyncio.sleep(0)
    raise microdag.Skip("async skip")


async def async_flaky():
    attempt = microdag.context().attempt
    if attempt == 1:
        raise ConnectionError("first attempt fails")
    return attempt


# -- run context and working directories ------------------------------------------------------


def _facts():
    ctx = microdag.context()
    return {
        "run_id": ctx.run_id,
        "flow": ctx.flow,
        "step": ctx.step,
        "attempt": ctx.attempt,
        "item": ctx.item,
        "pid": os.getpid(),
    }


def whoami():
    return _facts()


def whoami_too(whoami):
    return _facts()


def attempt_flaky():
    """Fail on the first attempt; return the attempt number seen by the retry."""
    attempt = microdag.context().attempt
    if attempt == 1:
        raise ConnectionError("first attempt fails")
    return attempt


def produce(text):
    ctx = microdag.context()
    path = os.path.join(ctx.workdir, "out.txt")
    with open(path, "w") as f:
        f.write(text)
    return {"workdir": ctx.workdir, "run_dir": ctx.run_dir}


def consume(produce):
    ctx = microdag.context()
    with open(os.path.join(ctx.path_of("produce"), "out.txt")) as f:
        text = f.read()
    return {"text": text, "workdir": ctx.workdir, "run_dir": ctx.run_dir}


def write_item(items):
    ctx = microdag.context()
    with open(os.path.join(ctx.workdir, f"{ctx.item}.txt"), "w") as f:
        f.write(str(items * 10))
    return ctx.workdir


def read_items(write_item):
    folder = microdag.context().path_of("write_item")
    return {name: open(os.path.join(folder, name)).read() for name in sorted(os.listdir(folder))}


# -- interrupts ------------------------------------------------------------------------------


def raise_interrupt():
    raise KeyboardInterrupt


def interrupt_on_two(items):
    if items == 2:
        raise KeyboardInterrupt
    return items
