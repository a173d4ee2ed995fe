"""Pools and rates in the scheduler kernel, on both twins (``twin`` fixture).

A pool is an id with a size; a node holds its units while it runs.  These
tests drive ``Kernel.set_pools``, ``take`` (which hands out only nodes whose
pools have room, best first, and sets the others aside), ``done``/``fail``/
``skip``/``give_back``/``again`` (units come back, waiters re-enter the ready
set), ``acquire``/``restore`` (a map unit's units), ``refill`` (a token
bucket, whose units are spent), the stall guard with pools, and random runs
where both twins must agree step by step and no pool is ever over its size.
"""

from __future__ import annotations

import random
from types import ModuleType

import pytest

import microdag._sched as c_twin
import microdag._sched_py as py_twin


def _independent(twin: ModuleType, n: int, sizes: list[int], uses: list[list[tuple[int, int]]], **kw: object):
    k = twin.Kernel(n)
    k.set_pools(sizes, uses, **kw)
    k.reset()
    return k


def test_take_hands_out_only_what_fits_and_sets_the_rest_aside(twin: ModuleType) -> None:
    k = _independent(twin, 5, [2], [[(0, 1)]] * 4 + [[]])
    assert k.take() == [0, 1, 4]
    assert (k.ready, k.waiting, k.running, k.room(0)) == (0, 2, 3, 0)
    assert k.done(0) == 1  # its unit back: the best waiter is ready again
    assert (k.ready, k.waiting) == (1, 1)
    assert k.take() == [2]
    k.fail(1)
    assert k.take() == [3]
    assert k.room(0) == 0


def test_the_best_node_that_fits_runs_first(twin: ModuleType) -> None:
    # 0 -> 1 -> 2 is the critical path; 0 and 3 both need the one db unit,
    # 4 needs none: it runs beside 0 while 3 waits.
    k = twin.Kernel(5, [0, 1], [1, 2])
    k.set_pools([1], [[(0, 1)], [], [], [(0, 1)], []])
    k.reset()
    assert k.take(1) == [0]
    assert k.take(1) == [4]  # 3 does not fit: set aside, the next best is taken
    assert k.waiting == 1
    assert k.done(0) == 2  # 1 became ready, and 3 came back
    assert k.take() == [1, 3]


def test_a_node_using_several_pools_waits_for_each(twin: ModuleType) -> None:
    k = _independent(twin, 3, [1, 2], [[(0, 1)], [(0, 1), (1, 2)], [(1, 1)]])
    assert k.take() == [0, 2]
    assert k.waiting == 1
    k.done(0)  # pool 0 free, but pool 1 still lacks a unit
    assert k.take() == []
    assert k.waiting == 1
    k.done(2)
    assert k.take() == [1]
    assert (k.room(0), k.room(1)) == (0, 0)


def test_units_come_back_on_every_ending(twin: ModuleType) -> None:
    k = twin.Kernel(4, [0], [1])
    k.set_pools([1], [[(0, 1)]] * 4)
    k.reset()
    assert k.take() == [0]
    assert k.skip(0) == [1]
    assert k.room(0) == 1
    assert k.take() == [2]
    k.fail(2)
    assert k.take() == [3]
    assert k.cancel() == []
    k.done(3)
    assert (k.room(0), k.remaining, k.waiting) == (1, 0, 0)


def test_cancel_cancels_the_waiters(twin: ModuleType) -> None:
    k = _independent(twin, 3, [1], [[(0, 1)]] * 3)
    assert k.take() == [0]
    assert k.cancel() == [1, 2]
    assert (k.waiting, k.ready) == (0, 0)
    k.done(0)
    assert k.remaining == 0


def test_give_back_and_again_for_a_retry(twin: ModuleType) -> None:
    k = _independent(twin, 2, [1], [[(0, 1)]] * 2)
    assert k.take() == [0]
    assert k.give_back(0) == 1  # 0 waits for its retry: 1 may use the unit
    assert k.give_back(0) == 0  # nothing held any more
    assert k.take() == [1]
    assert k.again(0) == 1  # back in the ready set, and it must wait for the unit
    assert k.take() == []
    assert k.waiting == 1
    k.done(1)
    assert k.take() == [0]
    k.done(0)
    assert k.remaining == 0


def test_again_without_pools(twin: ModuleType) -> None:
    for policy in ("critical", "fifo"):
        k = twin.Kernel(3)
        k.reset(policy=policy)
        assert k.take(1) == [0]
        assert k.again(0) == 1
        assert sorted(k.take()) == [0, 1, 2]


def test_apart_nodes_hold_per_acquire(twin: ModuleType) -> None:
    k = _independent(twin, 2, [2], [[(0, 1)], [(0, 1)]], apart=[0])
    assert k.take() == [0, 1]  # the map step holds nothing itself
    assert k.room(0) == 1
    assert k.acquire(0) is True
    assert k.acquire(0) is False  # no room for a second unit
    assert k.fits(0) is False
    assert k.restore(0) == 0
    assert k.fits(0) is True
    k.done(0)
    k.done(1)
    assert k.room(0) == 2


def test_a_rate_is_spent_and_refilled(twin: ModuleType) -> None:
    k = _independent(twin, 3, [1], [[(0, 1)]] * 3, spent=[0])
    assert k.take() == [0]
    assert k.waiting == 2
    k.done(0)
    assert k.room(0) == 0  # a token is not given back
    assert k.take() == []  # nothing runs, but a refill will come: no stall
    assert k.refill(0, 5) == 1  # the bucket holds one token at most
    assert k.room(0) == 1
    assert k.take() == [1]
    k.done(1)
    k.refill(0, 1)
    assert k.take() == [2]
    k.done(2)
    assert k.remaining == 0


def test_the_stall_guard_holds_with_pools(twin: ModuleType) -> None:
    k = twin.Kernel(2, [0, 1], [1, 0])  # a cycle
    k.set_pools([1], [[(0, 1)]] * 2)
    k.reset()
    with pytest.raises(RuntimeError, match="stalled"):
        k.take()
    # Waiting for a pool nobody holds is a stall too (a unit never restored).
    k = _independent(twin, 2, [1], [[(0, 1)]] * 2, apart=[0])
    assert k.take(1) == [0]
    assert k.acquire(0)
    assert k.take() == []
    assert k.waiting == 1
    k.done(0)
    with pytest.raises(RuntimeError, match="waits for a pool"):
        k.take()


def test_set_pools_checks_its_arguments(twin: ModuleType) -> None:
    k = twin.Kernel(2)
    with pytest.raises(ValueError, match="one entry per node"):
        k.set_pools([1], [[(0, 1)]])
    with pytest.raises(ValueError, match="node 1 uses 2 units of pool 0, which holds 1"):
        k.set_pools([1], [[], [(0, 2)]])
    with pytest.raises(IndexError):
        k.set_pools([1], [[], [(3, 1)]])
    with pytest.raises(ValueError, match="negative"):
        k.set_pools([-1], [])
    k.set_pools([1], [[(0, 1)], [(0, 1)]])
    k.set_pools([])  # no pools again
    k.reset()
    assert k.take() == [0, 1]
    assert k.waiting == 0


def test_drive_runs_only_what_fits(twin: ModuleType) -> None:
    n = 6
    k = twin.Kernel(n)
    k.set_pools([1], [[(0, 1)]] * 3 + [[]] * 3)
    k.reset()
    calls: list[int] = []
    fns = [(lambda j=j: calls.append(j)) for j in range(n)]
    args = (k, fns, [()] * n, [()] * n, [()] * n, [None] * n, [0] * n, [0.0] * n, [0.0] * n,
            lambda: 0.0, bytes(n))
    assert twin.drive(*args) is None
    assert sorted(calls) == list(range(n))
    assert k.remaining == 0


def _random_run(twin: ModuleType, seed: int) -> list[object]:
    """A random graph with random pools (sizes 1-3) and a rate, driven by
    random choices; every step of the trace, and the bound at every step."""
    rnd = random.Random(seed)
    n = rnd.randint(1, 25)
    src, dst = [], []
    for d in range(n):
        for s in range(d):
            if rnd.random() < 0.15:
                src.append(s)
                dst.append(d)
    sizes = [rnd.randint(1, 3) for _ in range(rnd.randint(1, 3))] + [2]
    rate = len(sizes) - 1
    uses = []
    for _ in range(n):
        pairs = [(p, rnd.randint(1, sizes[p])) for p in range(rate) if rnd.random() < 0.5]
        if rnd.random() < 0.2:
            pairs.append((rate, 1))
        uses.append(pairs)
    k = twin.Kernel(n, src, dst)
    k.set_pools(sizes, uses, spent=[rate])
    k.reset(policy=rnd.choice(["critical", "fifo"]))
    trace: list[object] = []
    running: list[int] = []
    held = [0] * len(sizes)
    while k.remaining:
        took = k.take(rnd.choice([-1, 1, 2]))
        for i in took:
            for p, u in uses[i]:
                held[p] += u
        assert all(h <= s for h, s in zip(held[:rate], sizes)), "a pool is over its size"
        running.extend(took)
        trace.append(("take", took, k.ready, k.waiting))
        if not running:
            trace.append(("refill", k.refill(rate, 1)))
            continue
        i = running.pop(rnd.randrange(len(running)))
        for p, u in uses[i]:
            if p != rate:
                held[p] -= u
        how = rnd.random()
        if how < 0.1:
            trace.append(("again", i, k.again(i)))
            continue
        if how < 0.2:
            out = k.fail(i)
        else:
            out = k.done(i)
        trace.append((i, out, k.ready, k.waiting, k.remaining))
    return trace


@pytest.mark.parametrize("seed", range(60))
def test_random_runs_agree_on_both_twins_and_keep_the_bound(seed: int) -> None:
    assert _random_run(c_twin, seed) == _random_run(py_twin, seed)


def test_how_long_a_node_waited_aside(twin: ModuleType) -> None:
    now = [0.0]
    k = twin.Kernel(3)
    k.set_pools([1], [[(0, 1)]] * 3, clock=lambda: now[0])
    k.reset()
    assert k.take() == [0]
    assert k.waited(0) == 0.0
    now[0] = 2.5
    k.done(0)
    assert k.take(1) == [1]
    assert k.waited(1) == 2.5  # set aside at 0.0, taken at 2.5
    k.again(1)  # a retry: back in the ready set, taken before 2 (the lower id), without waiting
    now[0] = 3.0
    assert k.take() == [1]
    assert k.waited(1) == 0.0
    k.done(1)
    assert k.take() == [2]
    assert k.waited(2) == 3.0  # set aside since the start
