"""The Python steps of the flows in this folder (tests/test_argo.py exports and
emulates them): maps, a batch, retries, a timeout, a skip and its triggers."""

import time

import microdag


def numbers(n):
    """1 .. n."""
    return list(range(1, n + 1))


def square(x):
    return x * x


def pair_up(xs):
    """A batch: one result per item."""
    return [[x, x + 1] for x in xs]


def bad_batch(xs):
    """A batch that returns one result too few."""
    return [x for x in xs][:-1]


def nothing():
    return []


def flaky(numbers):
    """Fails on its first attempt, as a flaky service would; then counts."""
    attempt = microdag.context().attempt
    print(f"flaky: attempt {attempt}")
    if attempt == 1:
        raise ConnectionError("the service did not answer (attempt 1)")
    return {"count": len(numbers), "attempt": attempt}


def slow_first(numbers):
    """Hangs on its first attempt (its timeout ends it), answers on the next."""
    if microdag.context().attempt == 1:
        time.sleep(30)
    return sum(numbers)


def maybe(skip_it):
    if skip_it:
        raise microdag.Skip("skip_it is set")
    return "ran"


def after(maybe):
    """all_success: skipped when `maybe` is."""
    return f"after {maybe}"


def done(maybe, after, square):
    """all_done: runs whatever its dependencies did; those that did not succeed give None."""
    return {"maybe": maybe, "after": after, "square": square}


def tolerant(after, flaky):
    """none_failed: runs after a skip, with None for it."""
    return {"after": after, "flaky": flaky["count"]}


def where(numbers):
    """Writes a file in its working folder; returns the folder and the run's id."""
    ctx = microdag.context()
    with open(f"{ctx.workdir}/numbers.txt", "w", encoding="utf-8") as f:
        f.write(" ".join(map(str, numbers)))
    return {"run_id": ctx.run_id, "step": ctx.step}


def reads(where):
    """Reads the file the step `where` wrote, through the run's folder."""
    path = microdag.context().path_of("where")
    with open(f"{path}/numbers.txt", encoding="utf-8") as f:
        return f.read().split()


def boom(numbers):
    raise ValueError(f"boom on {len(numbers)} numbers")


def big(n):
    """An output bigger than an Argo parameter may hold."""
    return "x" * n


def a_set(numbers):
    return set(numbers)
