"""A run's pools and rates: what the kernel is given, and the clock of the token buckets.

Pools and rates are both the kernel's pools (``Kernel.set_pools``), so that
one rule hands out steps: ``take()`` gives the best ready steps whose pools
have room and sets the others aside, where they hold no worker.  A pool
gets its units back when a step ends; a rate is a token bucket, a *spent*
pool whose units (tokens, ``burst`` of them at most, one to start with
unless a burst is given) are not given back: :meth:`Limits.tick` refills it
from the run's clock, ``rate`` tokens a second, and :meth:`Limits.due` says
when the next token comes, so that a loop with nothing else to do sleeps
exactly that long (``Runner.next_due``) instead of polling.  Why the kernel
and not a bucket in the runner: a step waiting for a token must not be
handed to a worker, and only the ready set knows which step is best among
those that can start; one waiting list for pools and rates keeps that one
rule.  Every attempt takes its tokens: a retried step is put back into the
ready set (``Kernel.again``) and taken again under its pools and rates; a
map step holds nothing itself, each unit attempt holds the step's units
(``acquire``/``restore``).

A bucket that is full gains nothing; the moment it stops being full is the
first tick that sees it so (a tick runs before the loops look for work),
which can only delay a token, never give one early: no window of ``1/rate``
seconds ever sees more than ``burst`` tokens taken.

State: ``rates`` (pool id, tokens a second, burst) and ``last`` (the clock
reading from which each bucket's next token counts; ``None`` while it is full).
"""

from .._errors import FlowError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from .._compat import sched
    from .._plan import _Plan
    from .._steps import _Options

__all__ = ["Limits", "parse_rate", "problems", "uses_of"]

_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
        "h": 3600.0, "hour": 3600.0}


def parse_rate(text: "Any") -> "tuple[float, int]":
    """``"10/s"``, ``"600/min"``, ``"5/h"``, ``"10/s burst 5"``: (tokens a second, burst).

    Raises:
        ValueError: anything else (the message says what is expected).
    """
    expected = f"a rate is 'N/s', 'N/min' or 'N/h', optionally followed by ' burst B', not {text!r}"
    if not isinstance(text, str):
        raise ValueError(expected)
    head, _, tail = text.strip().partition(" burst ")
    count, _, unit = head.strip().partition("/")
    try:
        n = float(count)
        burst = int(tail) if tail else 1
    except ValueError:
        raise ValueError(expected) from None
    per = _PER.get(unit.strip())
    if per is None or not 0 < n < float("inf") or burst < 1:
        raise ValueError(expected)
    return n / per, burst


def problems(
    plan: "_Plan", subset: "list[int] | None", pools: "Mapping[str, Any]", rates: "Mapping[str, Any]",
) -> "list[str]":
    """Every problem with a run's ``pools`` and ``rates`` and the steps' ``uses``:
    a bad size or rate, a name given as both, a step using a name the run
    does not have or more units than its pool's size (naming step and pool)."""
    out: list[str] = []
    sizes: dict[str, int] = {}
    for name, size in pools.items():
        if not isinstance(name, str) or not name:
            out.append(f"pools: a pool's name must be a non-empty string, not {name!r}")
        elif type(size) is not int or size < 1:
            out.append(f"pools: pool {name!r} must have an int size >= 1, not {size!r}")
        else:
            sizes[name] = size
    for name, rate in rates.items():
        if not isinstance(name, str) or not name:
            out.append(f"rates: a rate's name must be a non-empty string, not {name!r}")
            continue
        if name in pools:
            out.append(f"rates: {name!r} is a pool too (a name is one or the other)")
            continue
        try:
            sizes[name] = parse_rate(rate)[1]
        except ValueError as exc:
            out.append(f"rates: {name!r}: {exc}")
    options = plan.options
    bad = set()  # the sets of options with a problem (steps share them)
    for o in set(options):
        for name, units in o.uses:
            if sizes.get(name, 0) < units and (name not in pools and name not in rates or name in sizes):
                bad.add(o)
    if not bad:
        return out
    names = plan.graph.names
    for i in range(len(options)) if subset is None else subset:
        if options[i] not in bad:
            continue
        for name, units in options[i].uses:
            size = sizes.get(name)
            if size is None:
                if name not in pools and name not in rates:
                    known = ", ".join(map(repr, sorted(sizes))) or "none"
                    out.append(f"step {names[i]!r} uses {name!r}, which is no pool or rate of this run "
                               f"(pools and rates: {known})")
            elif units > size:
                what = "pool" if name in pools else "rate (its burst)"
                out.append(f"step {names[i]!r} uses {units} units of {what} {name!r}, which holds {size}")
    return out


def uses_of(limits: "Limits | None", name: str, opts: "_Options") -> "tuple[tuple[int, int], ...]":
    """The pool ids and units of added step ``name`` (``opts``: its options)
    in a run with these ``limits`` (``None``: none), for ``Kernel.grow``.

    Raises:
        FlowError: a name that is no pool or rate of the run, or more units
            than a pool holds (naming the step and the pool).
    """
    ids = {} if limits is None else limits.ids
    out: list[str] = []
    pairs = []
    for pool, units in opts.uses:
        p = ids.get(pool)
        if p is None:
            known = ", ".join(map(repr, sorted(ids))) or "none"
            out.append(f"step {name!r} uses {pool!r}, which is no pool or rate of this run (pools and rates: {known})")
            continue
        assert limits is not None
        size = limits.sizes[p]
        if units > size:
            what = "pool" if p < limits.npools else "rate (its burst)"
            out.append(f"step {name!r} uses {units} units of {what} {pool!r}, which holds {size}")
        pairs.append((p, units))
    if out:
        raise FlowError(*out)
    return tuple(pairs)


class Limits:
    """The pools and rates of one run, set on its kernel (see the module docs)."""

    __slots__ = ("k", "clock", "rates", "last", "mapped", "ids", "sizes", "npools", "earlier")

    def __init__(
        self, plan: "_Plan", kernel: "sched.Kernel", pools: "Mapping[str, int]", rates: "Mapping[str, str]",
        clock: "Callable[[], float]",
    ) -> None:
        names = list(pools) + list(rates)
        ids = {name: p for p, name in enumerate(names)}
        parsed = [parse_rate(rates[name]) for name in rates]
        sizes = [pools[name] for name in pools] + [burst for _, burst in parsed]
        options = plan.options
        # (per set of options, which steps share: a step costs a lookup)
        each = {o: tuple((ids[name], units) for name, units in o.uses) for o in set(options)}
        uses = list(map(each.__getitem__, options))
        mapping = {o for o in each if o.map is not None and o.uses}
        #: Map steps that use pools or rates: each unit attempt holds their units.
        self.mapped = frozenset(i for i, o in enumerate(options) if o in mapping) if mapping else frozenset()
        kernel.set_pools(sizes, uses, spent=range(len(pools), len(names)), apart=self.mapped, clock=clock)
        self.k = kernel
        self.clock = clock
        self.ids = ids
        self.sizes = sizes
        self.npools = len(pools)
        self.rates = [(len(pools) + j, per_second, burst) for j, (per_second, burst) in enumerate(parsed)]
        self.last: list[float | None] = [None] * len(parsed)
        #: Step -> seconds its attempts before the current one waited (the
        #: kernel measures one take: the current attempt's).
        self.earlier: dict[int, float] = {}

    @classmethod
    def of(
        cls, plan: "_Plan", kernel: "sched.Kernel", pools: "Mapping[str, int] | None",
        rates: "Mapping[str, str] | None", clock: "Callable[[], float]",
    ) -> "Limits | None":
        """A run's limits, or ``None`` without pools and rates (the kernel is
        told so: a run before may have given it some)."""
        if pools or rates:
            return cls(plan, kernel, pools or {}, rates or {}, clock)
        kernel.set_pools(())
        return None

    def retried(self, i: int) -> None:
        """Step ``i``'s attempt failed and will be tried again: keep what it waited."""
        self.earlier[i] = self.earlier.get(i, 0.0) + self.k.waited(i)

    def waited(self, i: int) -> float:
        """Seconds step ``i``'s attempts waited, in all, for room in their pools or a token."""
        return self.k.waited(i) + self.earlier.get(i, 0.0) if self.earlier else self.k.waited(i)

    def sooner(self, due: "float | None", held: "Callable[[], bool]") -> "float | None":
        """``due`` (seconds until a retry), or sooner the next token when a
        step waits for one (``held()``: a running map's units hold some)."""
        if self.rates and (self.k.waiting or held()):
            token = self.due()
            if token is not None and (due is None or token < due):
                return token
        return due

    def tick(self) -> int:
        """Refill the token buckets from the clock; how many waiting steps
        became ready (the caller holds the run's lock)."""
        if not self.rates:
            return 0
        k = self.k
        now = self.clock()
        back = 0
        for j, (p, per_second, burst) in enumerate(self.rates):
            if k.room(p) >= burst:
                self.last[j] = None
                continue
            last = self.last[j]
            if last is None:  # it stopped being full: its next token counts from now
                self.last[j] = now
                continue
            tokens = int((now - last) * per_second)
            if tokens > 0:
                back += k.refill(p, tokens)
                self.last[j] = None if k.room(p) >= burst else last + tokens / per_second
        return back

    def due(self) -> "float | None":
        """Seconds until the next token of a bucket that is not full (after a
        :meth:`tick`), or ``None``."""
        now = self.clock()
        soonest = None
        k = self.k
        for j, (p, per_second, burst) in enumerate(self.rates):
            if k.room(p) >= burst:
                continue
            last = self.last[j]
            wait = 0.0 if last is None else last + 1.0 / per_second - now
            if soonest is None or wait < soonest:
                soonest = wait
        return soonest


def document(plan: "_Plan", pools: "Mapping[str, int]", rates: "Mapping[str, str]") -> "dict[str, Any]":
    """A run's pools and rates as its plan on a store's work queue keeps them
    (``stores/_queue_pools``): ``pools`` (name -> size), ``rates`` (name ->
    [tokens a second, burst]), ``uses`` (per step its (name, units) pairs, or
    ``None``) and ``mapped`` (the map steps using some: their units hold them);
    nothing without pools and rates."""
    if not (pools or rates):
        return {}
    options = plan.options
    return {"pools": dict(pools), "rates": {name: list(parse_rate(rate)) for name, rate in rates.items()},
            "uses": [[list(pair) for pair in o.uses] or None for o in options],
            "mapped": [i for i, o in enumerate(options) if o.map is not None and o.uses]}
