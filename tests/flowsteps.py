"""Module-level step functions for the flow tests.

Worker processes receive step functions by pickling, which works only for
functions importable by name, so every step a ``processes`` test runs lives
here.  The test files import this module as ``flowsteps`` (pytest's default
"prepend" import mode puts ``tests/`` on ``sys.path``, and ``forkserver`` and
``spawn`` children get the parent's ``sys.path``).

Parameter names matter: a parameter named like a step receives its output,
any other one is a flow input.

Steps that sleep for long (to be timed out) sleep in short slices and give up
as soon as :func:`release_sleepers` is called, so that abandoned attempts in
threads do not outlive the test that started them.  :func:`within` runs a
call in a thread and fails the test, instead of hanging, if it takes too long.
"""

import gc
import os
import threading
import time
import weakref
from concurrent.futures import Executor, ThreadPoolExecutor

# -- plain values ---------------------------------------------------------------


def source(x):
    return x


def double(source):
    return 2 * source


def plus(double, y=10):
    return double + y


def total(a, b):
    return a + b


def collect(**kwargs):
    return dict(sorted(kwargs.items()))


def named_and_rest(double, **rest):
    return {"double": double, "rest": dict(sorted(rest.items()))}


def marker():
    return "order-only"


def noargs():
    return "ran"


def ident(value):
    return value


def left(source):
    return ("left", source)


def right(source):
    return ("right", source)


def join(left, right):
    return [left, right]


def positive(source):
    if source < 0:
        raise ValueError(f"negative: {source}")
    return source


class Blob:
    """An output that can be watched with a weak reference."""


_BLOBS: list = []


def make_blob():
    blob = Blob()
    _BLOBS.append(weakref.ref(blob))
    return blob


def use_blob(make_blob):
    return type(make_blob).__name__


def blob_released(use_blob):
    """Whether the latest :func:`make_blob` output is gone (in this process)."""
    gc.collect()
    return _BLOBS[-1]() is None


# -- failures -------------------------------------------------------------------


def fail_value(x):
    raise ValueError(f"bad value {x!r}")


def fail_type():
    raise TypeError("not retryable")


def fail_plain():
    raise ValueError("boom")


def raise_interrupt():
    raise KeyboardInterrupt


class Unpicklable(Exception):
    """An exception whose attribute does not pickle (a lock)."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


class NeedsTwoArgs(Exception):
    """Pickles, but cannot be rebuilt from its ``args`` (unpickling fails)."""

    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


def fail_unpicklable():
    raise Unpicklable("carries a lock")


def fail_unrebuildable():
    raise NeedsTwoArgs("one", "two")


def unpicklable_output():
    return threading.Lock()


# -- counting attempts across processes: one file per attempt --------------------


def flaky(workdir, failures=2, exc="ConnectionError"):
    """Fail the first ``failures`` attempts (counted by files in ``workdir``)."""
    n = len(os.listdir(workdir))
    with open(os.path.join(workdir, f"attempt-{n + 1}"), "w"):
        pass
    if n < failures:
        raise {"ConnectionError": ConnectionError, "TypeError": TypeError}[exc](
            f"attempt {n + 1} failed"
        )
    return n + 1


def count_attempts(workdir):
    return len(os.listdir(workdir))


def die():
    os._exit(3)


def die_by_signal():
    import signal

    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(5)


_STATE = ["as imported"]


def set_state(value):
    _STATE[0] = value


def read_state():
    """Module state as the process running the step sees it."""
    return _STATE[0]


def die_first(workdir):
    """Kill the process on the first attempt (a marker file remembers it)."""
    mark = os.path.join(workdir, "died-once")
    if not os.path.exists(mark):
        with open(mark, "w"):
            pass
        os._exit(3)
    return "survived"


def touch(workdir):
    """Record that the step ran (a file named after the process)."""
    with open(os.path.join(workdir, f"ran-{os.getpid()}-{time.monotonic_ns()}"), "w"):
        pass
    return "touched"


# -- time ---------------------------------------------------------------------------

_GENERATION = [0]


def release_sleepers():
    """End every :func:`sleeper` call now running in this process."""
    _GENERATION[0] += 1


def sleeper(seconds):
    """Sleep ``seconds`` (in short slices; ends early on :func:`release_sleepers`)."""
    generation = _GENERATION[0]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and _GENERATION[0] == generation:
        time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
    return seconds


def quick_nap(nap=0.05):
    time.sleep(nap)
    return nap


def pid_window(nap):
    """Sleep ``nap`` s; return ``(pid, start, end)`` (monotonic clock)."""
    start = time.monotonic()
    time.sleep(nap)
    return (os.getpid(), start, time.monotonic())


def pid_window_2(nap):
    return pid_window(nap)


def getpid():
    return os.getpid()


# -- a third-party-style executor -------------------------------------------------


class WrappedExecutor(Executor):
    """Any ``concurrent.futures.Executor`` will do: this one delegates ``submit``
    to an inner thread pool and counts the calls.  It has no ``_max_workers``
    attribute, like most third-party executors."""

    def __init__(self, workers=4):
        self._inner = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wrapped")
        self.submitted = 0

    def submit(self, fn, /, *args, **kwargs):
        self.submitted += 1
        return self._inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait=True, *, cancel_futures=False):
        self._inner.shutdown(wait=wait, cancel_futures=cancel_futures)


def within(seconds: float, call, on_timeout=None):
    """``call()``, failing the test instead of hanging if it takes over ``seconds``
    (after calling ``on_timeout``, which can release what the run waits on)."""
    import pytest

    box: list = []

    def target() -> None:
        try:
            box.append((True, call()))
        except BaseException as exc:  # re-raised in the test's thread
            box.append((False, exc))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if on_timeout is not None:
            on_timeout()
        pytest.fail(f"the run did not finish within {seconds} s")
    ok, value = box[0]
    if not ok:
        raise value
    return value
