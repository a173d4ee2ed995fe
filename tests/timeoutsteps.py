"""Steps that resist their timeouts, for ``test_timeouts.py`` (module-level, so
that worker processes load them)."""

import subprocess
import time


def hold_the_gil(n=30_000_000):
    """A long C call that never lets another thread run (``sum`` over a range)."""
    return sum(range(n))


async def block_the_loop(seconds=0.6):
    """An async step that blocks its event loop instead of awaiting."""
    time.sleep(seconds)
    return "done"


def spawn_and_hang(marker, seconds=30.0):
    """Start a child process (``sleep MARKER``), then hang past the timeout."""
    subprocess.Popen(["sleep", marker])
    time.sleep(seconds)
    return "never"


def quick():
    return 1


def exits():
    raise SystemExit(3)


class Odd(BaseException):
    """A BaseException that is not an Exception."""


def raises_odd():
    raise Odd("odd")
