"""The ready-set scheduler kernel: the pure-Python twin and the reference.

``_sched.pyx`` implements the same classes with the same names, signatures,
errors and results; ``_compat`` picks one of the two.  This file is the
specification: when the twins disagree, this one is right.

State kept by a :class:`Kernel` over node ids ``0 .. n-1``:

- the graph in CSR form: ``succ[start[i]:start[i + 1]]`` are the successors of
  node ``i``, in the order the edges were given (duplicates allowed: each edge
  counts once, as in :mod:`graphlib`);
- per node: a state byte (``PENDING``, ``READY``, ``RUNNING``, ``SUCCEEDED``,
  ``FAILED``, ``SKIPPED``, ``CANCELLED``, ``EXCLUDED``), the number of
  unfinished predecessors, a trigger rule and a scheduling rank;
- the ready set: a FIFO queue (``policy="fifo"``) or a heap ordered by
  (user priority, longest path to a sink, lowest id) (``policy="critical"``);
- counters: active nodes (in the current subset), finished, running, ready.

Invariants: a node is in the ready set exactly when its state is ``READY``;
it enters the set once per run, when its count of unfinished predecessors
reaches zero while it is ``PENDING``; ``remaining == active - finished``.
Every node leaves ``PENDING`` at most once per run, so one run does
``O(nodes + edges)`` work plus the ready-set ordering.

Why a driver loop cannot hang: ``take()`` raises :class:`RuntimeError` when
work remains but nothing is ready and nothing is running (only a cycle can do
that, and graphs are checked for cycles before they run), unless a node
waits for a token bucket's refill (pools and rates: ``set_pools``, below).

Besides the kernel, the hot loops that drive it (``drive``, ``run_items``)
and the graph-building functions a flow of a million steps needs in bulk:
``name_tuples`` (dependency lists checked and copied), ``ids_of`` and
``number`` (names given ids, and their dependencies' ids found while those
are fresh in memory) and ``link`` (a kernel from id tuples, looking up only
what is missing).  They keep no state; the flow's columns are ``_steps``'.

Example:

>>> k = Kernel(3, [0, 1], [1, 2])   # 0 -> 1 -> 2
>>> k.reset()
>>> k.take()
[0]
>>> k.done(0)
1
>>> k.take(), k.remaining
([1], 2)
>>> k.fail(1)
[2]
>>> k.remaining
0
"""

import heapq
import operator
from itertools import chain, repeat
from types import GenericAlias

from ._errors import CycleError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
    from contextlib import AbstractContextManager
    from typing import Any, Generic, Literal, TypeVar

    _N = TypeVar("_N", bound=Hashable)

    class _Generic(Generic[_N]):
        """For type checkers, :class:`TopologicalSorter` is generic in its node type."""
else:
    # At run time nothing from typing is imported: a plain base, subscriptable.
    _N = object

    class _Generic:
        __slots__ = ()
        __class_getitem__ = classmethod(GenericAlias)

__all__ = ["Kernel", "TopologicalSorter", "TWIN", "drive", "ids_of", "link", "name_tuples", "number", "run_items"]

#: Which twin this module is: ``"py"`` here, ``"c"`` in the compiled one.
TWIN = "py"

# Node states.
PENDING = 0
READY = 1
RUNNING = 2
SUCCEEDED = 3
FAILED = 4
SKIPPED = 5
CANCELLED = 6
EXCLUDED = 7

STATE_NAMES = (
    "pending",
    "ready",
    "running",
    "succeeded",
    "failed",
    "skipped",
    "cancelled",
    "excluded",
)

# Step flags for drive().
SLOW = 1  # the caller runs this step (timeouts, hooks, ...)
KEEP = 2  # keep this step's output when its consumers have finished

# Trigger rules: when does a node run, given how its predecessors finished.
ALL_SUCCESS = 0  # every predecessor succeeded, else the node is skipped
ALL_DONE = 1  # every predecessor finished, whatever its state
NONE_FAILED = 2  # no predecessor failed (skipped ones are fine)

_MAX_NODES = 2**31 - 2
_PRIO_MIN = -(2**31)
_PRIO_MAX = 2**31 - 1
_ID_MASK = 0xFFFFFFFF


def _same_object(a: object, b: object) -> bool:
    """Whether handing out ``a`` or ``b`` is the same to a caller: identical, or
    equal ``int``s or ``str``s (indistinguishable but for ``id()``)."""
    return a is b or (type(a) is type(b) and type(a) in (int, str))


def _check_id(i: int, n: int) -> int:
    if not 0 <= i < n:
        raise IndexError(f"node id {i} out of range for a graph of {n} nodes")
    return i


class Kernel:
    """Ready-set scheduler over integer node ids ``0 .. n-1``.

    Args:
        n: number of nodes.
        src, dst: the edges, ``src[e]`` must finish before ``dst[e]`` starts.

    Raises:
        ValueError: ``src`` and ``dst`` differ in length, or ``n`` is negative
            or too large.
        IndexError: an edge names a node id outside ``0 .. n-1``.
    """

    __slots__ = (
        "_n",
        "_start",
        "_succ",
        "_extra",
        "_pstart",
        "_pred",
        "_state",
        "_count",
        "_left",
        "_trigger",
        "_prio",
        "_rank",
        "_stale",
        "_policy",
        "_queue",
        "_head",
        "_heap",
        "_active",
        "_finished",
        "_running",
        "_ready",
        "_pooled",
        "_psize",
        "_pfree",
        "_pspent",
        "_ustart",
        "_upool",
        "_uunits",
        "_apart",
        "_held",
        "_pwait",
        "_waiting",
        "_seq",
        "_clock",
        "_parked_at",
        "_waited",
    )

    def __init__(self, n: int, src: "Sequence[int]" = (), dst: "Sequence[int]" = ()) -> None:
        n = operator.index(n)
        src = [operator.index(s) for s in src]
        dst = [operator.index(d) for d in dst]
        if not 0 <= n <= _MAX_NODES:
            raise ValueError(f"a kernel holds 0 to {_MAX_NODES} nodes, not {n}")
        if len(src) != len(dst):
            raise ValueError(f"src and dst differ in length ({len(src)} != {len(dst)})")
        start = [0] * (n + 1)
        for s in src:
            start[_check_id(s, n) + 1] += 1
        for d in dst:
            _check_id(d, n)
        for i in range(n):
            start[i + 1] += start[i]
        fill = start[:-1]
        succ = [0] * len(src)
        for s, d in zip(src, dst):
            succ[fill[s]] = d
            fill[s] += 1
        self._n = n
        self._start = start
        self._succ = succ
        #: Successors gained by growing (:meth:`grow`), node -> list, in the
        #: order added; merged into the CSR arrays by :meth:`_compact`.
        self._extra: dict[int, list[int]] | None = None
        self._pstart: list[int] | None = None
        self._pred: list[int] | None = None
        self._state = bytearray([EXCLUDED]) * n
        self._count = [0] * n
        self._left = [0] * n
        self._trigger: bytearray | None = None
        self._prio: list[int] | None = None
        self._rank: list[int] | None = None
        self._stale = False
        self._policy = "critical"
        self._queue: list[int] = []
        self._head = 0
        self._heap: list[int] = []
        self._active = 0
        self._finished = 0
        self._running = 0
        self._ready = 0
        self._pooled = False
        self._psize: list[int] = []
        self._pfree: list[int] = []
        self._pspent = bytearray()
        self._ustart: list[int] = []
        self._upool: list[int] = []
        self._uunits: list[int] = []
        self._apart = bytearray()
        self._held = bytearray()
        self._pwait: list[list[int]] = []
        self._waiting = 0
        self._seq = 0
        self._clock: Callable[[], float] | None = None
        self._parked_at: dict[int, float] = {}
        self._waited: dict[int, float] = {}

    # -- the graph ---------------------------------------------------------

    @property
    def n(self) -> int:
        """Number of nodes."""
        return self._n

    @property
    def edges(self) -> int:
        """Number of edges (duplicates included)."""
        return len(self._succ) + (0 if self._extra is None else sum(map(len, self._extra.values())))

    def successors(self, i: int) -> list[int]:
        """The successors of node ``i``, in edge order."""
        _check_id(i, self._n)
        out = self._succ[self._start[i] : self._start[i + 1]]
        if self._extra is not None and i in self._extra:
            out.extend(self._extra[i])
        return out

    def predecessors(self, i: int) -> list[int]:
        """The predecessors of node ``i``, in edge order."""
        _check_id(i, self._n)
        pstart, pred = self._preds()
        return pred[pstart[i] : pstart[i + 1]]

    def _preds(self) -> tuple[list[int], list[int]]:
        if self._pstart is None or self._pred is None:
            self._compact()
            n, start, succ = self._n, self._start, self._succ
            pstart = [0] * (n + 1)
            for d in succ:
                pstart[d + 1] += 1
            for i in range(n):
                pstart[i + 1] += pstart[i]
            fill = pstart[:-1]
            pred = [0] * len(succ)
            for s in range(n):
                for e in range(start[s], start[s + 1]):
                    d = succ[e]
                    pred[fill[d]] = s
                    fill[d] += 1
            self._pstart, self._pred = pstart, pred
        return self._pstart, self._pred

    def _compact(self) -> None:
        """Merge the successors nodes gained by growing into the CSR arrays."""
        extra = self._extra
        if extra is None:
            return
        start, succ = [0] * (self._n + 1), []
        old_start, old_succ = self._start, self._succ
        for i in range(self._n):
            succ.extend(old_succ[old_start[i] : old_start[i + 1]])
            if i in extra:
                succ.extend(extra[i])
            start[i + 1] = len(succ)
        self._start, self._succ, self._extra = start, succ, None

    def find_cycle(self) -> list[int] | None:
        """One cycle of the graph, or ``None`` when it has none.

        The search is the one :mod:`graphlib` makes (depth first, nodes in id
        order, successors in edge order), so both report the same cycle: a
        list where each node is an immediate predecessor of the next, and the
        first and last nodes are the same.  Iterative: no recursion limit.
        """
        found = self._find_cycle()
        return None if found is None else found[0]

    def _find_cycle(self) -> "tuple[list[int], list[int]] | None":
        """The cycle and, per element, the edge (CSR position) that reached it (-1: a root)."""
        self._compact()
        n, start, succ = self._n, self._start, self._succ
        seen = bytearray(n)
        stacki = [-1] * n
        stack: list[int] = []
        pos: list[int] = []
        for root in range(n):
            if seen[root]:
                continue
            node = root
            while True:
                if seen[node]:
                    if stacki[node] >= 0:
                        first = stacki[node]
                        via = [pos[k - 1] - 1 if k else -1 for k in range(first, len(stack))]
                        via.append(pos[-1] - 1)
                        return stack[first:] + [node], via
                else:
                    seen[node] = 1
                    stacki[node] = len(stack)
                    stack.append(node)
                    pos.append(start[node])
                while stack:
                    top = stack[-1]
                    e = pos[-1]
                    if e < start[top + 1]:
                        pos[-1] = e + 1
                        node = succ[e]
                        break
                    stacki[stack.pop()] = -1
                    pos.pop()
                else:
                    break
        return None

    def topological_order(self) -> list[int]:
        """Every node id, each after all its predecessors.

        Kahn's algorithm, ties in id order.

        Raises:
            CycleError: the graph has a cycle (``args[1]`` holds its ids).
        """
        order = self._kahn()
        if len(order) < self._n:
            raise CycleError("nodes are in a cycle", self.find_cycle())
        return order

    def _kahn(self) -> list[int]:
        self._compact()
        n, start, succ = self._n, self._start, self._succ
        indeg = [0] * n
        for d in succ:
            indeg[d] += 1
        order = [i for i in range(n) if indeg[i] == 0]
        for s in order:  # the list grows while we walk it
            for e in range(start[s], start[s + 1]):
                d = succ[e]
                indeg[d] -= 1
                if indeg[d] == 0:
                    order.append(d)
        return order

    def levels(self) -> list[int]:
        """Per node, the number of nodes on the longest path from a source to it.

        Sources have level 1.  Meaningful on acyclic graphs: on a graph with a
        cycle, the values on and behind the cycle are unspecified.
        """
        order = self._kahn()
        start, succ = self._start, self._succ
        level = [0] * self._n
        for s in order:
            if level[s] == 0:
                level[s] = 1
            nxt = level[s] + 1
            for e in range(start[s], start[s + 1]):
                d = succ[e]
                if level[d] < nxt:
                    level[d] = nxt
        return level

    def critical_path(self) -> list[int]:
        """Per node, the number of nodes on the longest path from it to a sink.

        Sinks have 1.  Meaningful on acyclic graphs: on a graph with a cycle,
        the values on and before the cycle are unspecified.
        """
        order = self._kahn()
        start, succ = self._start, self._succ
        cp = [0] * self._n
        for s in reversed(order):
            best = 0
            for e in range(start[s], start[s + 1]):
                c = cp[succ[e]]
                if c > best:
                    best = c
            cp[s] = best + 1
        return cp

    def ancestors(self, ids: "Iterable[int]") -> list[int]:
        """The given nodes and everything they depend on, in id order."""
        pstart, pred = self._preds()
        return self._closure(ids, pstart, pred)

    def descendants(self, ids: "Iterable[int]") -> list[int]:
        """The given nodes and everything that depends on them, in id order."""
        self._compact()
        return self._closure(ids, self._start, self._succ)

    def _closure(self, ids: "Iterable[int]", start: list[int], adj: list[int]) -> list[int]:
        n = self._n
        mark = bytearray(n)
        work = []
        for i in ids:
            _check_id(i, n)
            if not mark[i]:
                mark[i] = 1
                work.append(i)
        for s in work:  # grows while we walk it
            for e in range(start[s], start[s + 1]):
                d = adj[e]
                if not mark[d]:
                    mark[d] = 1
                    work.append(d)
        return [i for i in range(n) if mark[i]]

    # -- run configuration -------------------------------------------------

    def set_priorities(self, priorities: "Sequence[int] | None") -> None:
        """Set user priorities (higher runs first), or ``None`` to clear them.

        User priorities override the critical path under the ``"critical"``
        policy; the ``"fifo"`` policy ignores them.  Takes effect at the next
        :meth:`reset`.

        Raises:
            ValueError: the length is not ``n`` or a value is outside int32.
        """
        if priorities is None:
            self._prio = None
        else:
            prio = [int(p) for p in priorities]
            if len(prio) != self._n:
                raise ValueError(f"expected {self._n} priorities, got {len(prio)}")
            for i, p in enumerate(prio):
                if not _PRIO_MIN <= p <= _PRIO_MAX:
                    raise ValueError(f"priority {p} of node {i} is outside the 32-bit range")
            self._prio = prio
        self._stale = True  # the ranks of a run in progress stay as they are

    def set_triggers(self, triggers: "Sequence[int] | None") -> None:
        """Set each node's trigger rule (``ALL_SUCCESS``, ``ALL_DONE``,
        ``NONE_FAILED``), or ``None`` for ``ALL_SUCCESS`` everywhere.

        Raises:
            ValueError: the length is not ``n`` or a value is not a rule.
        """
        if triggers is None:
            self._trigger = None
            return
        trig = bytearray(self._n)
        values = list(triggers)
        if len(values) != self._n:
            raise ValueError(f"expected {self._n} triggers, got {len(values)}")
        for i, t in enumerate(values):
            if type(t) is not int or t not in (ALL_SUCCESS, ALL_DONE, NONE_FAILED):
                raise ValueError(f"unknown trigger rule {t!r} for node {i}")
            trig[i] = t
        self._trigger = trig

    def _ranks(self) -> list[int]:
        if self._rank is None or self._stale:
            self._stale = False
            cp = self.critical_path()
            prio = self._prio
            if prio is None:
                self._rank = cp
            else:
                # Dense ranks of (user priority, critical path): fits 32 bits.
                keys = sorted(set(zip(prio, cp)))
                dense = {key: r for r, key in enumerate(keys)}
                self._rank = [dense[key] for key in zip(prio, cp)]
        return self._rank

    def reset(
        self,
        subset: "Iterable[int] | None" = None,
        policy: str = "critical",
        done: "Iterable[int] | None" = None,
    ) -> None:
        """Prepare a new run, keeping the compiled graph.

        Args:
            subset: run only these node ids (``None``: every node).  A
                predecessor outside the subset counts as already satisfied.
            policy: ``"critical"`` (longest path to a sink first, then lowest
                id; user priorities first when set) or ``"fifo"`` (nodes come
                out in the order they became ready, as in :mod:`graphlib`).
            done: nodes of the run that already succeeded (a resumed run):
                they start ``SUCCEEDED``, counted as finished, and release
                their successors.

        Raises:
            ValueError: unknown policy, or a ``done`` node outside the run.
            IndexError: a subset or done id outside ``0 .. n-1``.
        """
        if policy not in ("critical", "fifo"):
            raise ValueError(f"unknown policy {policy!r}: expected 'critical' or 'fifo'")
        self._compact()
        n, start, succ = self._n, self._start, self._succ
        if subset is None:
            state = bytearray(n)
            active = n
        else:
            state = bytearray([EXCLUDED]) * n
            for i in subset:
                state[_check_id(i, n)] = PENDING
            active = n - state.count(EXCLUDED)
        count = [0] * n
        left = [0] * n
        for s in range(n):
            if state[s] == PENDING:
                for e in range(start[s], start[s + 1]):
                    d = succ[e]
                    count[d] += 1
                    if state[d] == PENDING:
                        left[s] += 1
        finished = 0
        if done is not None:
            pstart, pred = self._preds()
            for i in done:
                if state[_check_id(i, n)] != PENDING:
                    raise ValueError(f"node {i} is not a pending node of this run")
                state[i] = SUCCEEDED
                finished += 1
                for e in range(start[i], start[i + 1]):
                    count[succ[e]] -= 1
                for e in range(pstart[i], pstart[i + 1]):
                    p = pred[e]
                    if left[p] > 0:
                        left[p] -= 1
        self._state, self._count, self._left = state, count, left
        self._policy = policy
        self._queue, self._head, self._heap = [], 0, []
        self._active, self._finished, self._running, self._ready = active, finished, 0, 0
        if policy == "critical":
            self._ranks()
        if self._pooled:
            self._reset_pools()
        for i in range(n):
            if state[i] == PENDING and count[i] == 0:
                self._push(i)

    def _push(self, i: int) -> None:
        self._state[i] = READY
        self._ready += 1
        if self._policy == "fifo":
            self._queue.append(i)
        else:
            rank = self._rank
            assert rank is not None
            heapq.heappush(self._heap, -((rank[i] << 32) | (_ID_MASK - i)))

    def grow(
        self, m: int, src: "Sequence[int]" = (), dst: "Sequence[int]" = (),
        triggers: "Sequence[int] | None" = None,
        uses: "Sequence[Sequence[tuple[int, int]]] | None" = None, apart: "Iterable[int]" = (),
    ) -> list[int]:
        """Add nodes ``n .. n+m-1`` to the kernel in the middle of a run (steps
        that a running step adds), keeping every state and counter.

        Each edge ``src[e] -> dst[e]`` must end at a new node (existing nodes
        cannot gain predecessors), so a cycle can only run through new nodes.
        A new node's predecessors decide its start, as :meth:`reset` and the
        trigger rules would have: one that succeeded (or lies outside the run)
        is satisfied, one still unfinished is waited for, and one that failed,
        was skipped or was cancelled follows the new node's trigger rule
        (``triggers``: one per new node; ``None``: ``ALL_SUCCESS``).  New
        nodes join the run (``remaining`` counts them), those whose
        predecessors are satisfied are ready at once, and every predecessor
        counts them among its consumers (:meth:`release`).  Their scheduling
        rank is their critical path among the new nodes.  With pools
        (:meth:`set_pools`), ``uses`` gives each new node its ``(pool, units)``
        pairs (one entry per new node; ``None``: none), checked as
        :meth:`set_pools` checks them, and ``apart`` the new nodes taken
        without holding their units (map steps).

        Costs ``O(m + new edges)`` (amortised): the successors that existing
        nodes gain are kept beside the graph's arrays, and merged into them
        (``O(n + edges)``) when a new run or a query needs them whole.

        Returns:
            the new nodes skipped at once, in id order.

        Raises:
            ValueError: ``m`` is negative or too large, lengths differ, an edge
                ends at an existing node, a trigger is not a rule, or a use is
                below one unit or more than its pool's size (or there are no pools).
            IndexError: an edge names a node id outside ``0 .. n+m-1``, or a
                use a pool id out of range, or ``apart`` a node that is not new.
            CycleError: the new edges make a cycle (``args[1]`` holds its ids);
                the kernel is left as it was.
        """
        m = operator.index(m)
        n = self._n
        src = [operator.index(s) for s in src]
        dst = [operator.index(d) for d in dst]
        if m < 0 or n + m > _MAX_NODES:
            raise ValueError(f"a kernel holds 0 to {_MAX_NODES} nodes, not {n + m}")
        if len(src) != len(dst):
            raise ValueError(f"src and dst differ in length ({len(src)} != {len(dst)})")
        total = n + m
        for s, d in zip(src, dst):
            _check_id(s, total)
            _check_id(d, total)
            if d < n:
                raise ValueError(f"node {d} exists: only new nodes (from {n}) may gain predecessors")
        trig = None
        if triggers is not None:
            trig = list(triggers)
            if len(trig) != m:
                raise ValueError(f"expected {m} triggers, got {len(trig)}")
            for t in trig:
                if type(t) is not int or t not in (ALL_SUCCESS, ALL_DONE, NONE_FAILED):
                    raise ValueError(f"unknown trigger rule {t!r}")
        held = self._grown_uses(n, m, uses, apart)
        # The new nodes' own edges, their order, and their cycle if any.
        inner: list[list[int]] = [[] for _ in range(m)]  # new node -> its new successors
        preds: list[list[int]] = [[] for _ in range(m)]  # new node -> every predecessor
        indeg = [0] * m
        for s, d in zip(src, dst):
            preds[d - n].append(s)
            if s >= n:
                inner[s - n].append(d - n)
                indeg[d - n] += 1
        order = [j for j in range(m) if indeg[j] == 0]
        for j in order:  # grows while we walk it
            for d in inner[j]:
                indeg[d] -= 1
                if indeg[d] == 0:
                    order.append(d)
        if len(order) < m:
            sub = Kernel(m, [s - n for s, d in zip(src, dst) if s >= n], [d - n for s, d in zip(src, dst) if s >= n])
            cycle = sub.find_cycle() or []
            raise CycleError("nodes are in a cycle", [c + n for c in cycle])
        # The graph: the new nodes' successors kept aside (the CSR arrays are
        # merged with them when a query or a new run needs them whole), their
        # predecessors appended to the predecessor arrays.
        pstart, pred = self._preds()  # (in place: a running drive() holds them)
        extra = self._extra if self._extra is not None else {}
        for s, d in zip(src, dst):
            extra.setdefault(s, []).append(d)
        self._extra = extra or None
        self._start.extend([len(self._succ)] * m)
        for j in range(m):
            pred.extend(preds[j])
            pstart.append(len(pred))
        self._n = total
        if self._pooled:
            self._grow_pools(m, held)
        if trig is not None and any(trig) and self._trigger is None:
            self._trigger = bytearray(n)
        if self._trigger is not None:
            self._trigger.extend(trig if trig is not None else bytes(m))
        if self._prio is not None:
            self._prio.extend([0] * m)
        cp = [0] * m
        for j in reversed(order):
            cp[j] = 1 + max((cp[d] for d in inner[j]), default=0)
        if self._rank is not None:
            self._rank.extend(cp)
        self._stale = True  # a new run ranks the whole graph again
        # The new nodes' states, in order: their predecessors' fates are known.
        state, count, left = self._state, self._count, self._left
        state.extend(bytes([PENDING]) * m)  # (in place: a running drive() holds these)
        count.extend([0] * m)
        left.extend([0] * m)
        self._active += m
        skipped: list[int] = []
        for j in order:
            d = n + j
            rule = ALL_SUCCESS if trig is None else trig[j]
            waits = 0
            dead = False
            for s in preds[j]:
                st = state[s]
                if st in (PENDING, READY, RUNNING):
                    waits += 1
                elif st == SUCCEEDED or st == EXCLUDED or rule == ALL_DONE:
                    continue
                elif st == SKIPPED and rule == NONE_FAILED:
                    continue
                else:
                    dead = True
            if dead:
                state[d] = SKIPPED
                self._finished += 1
                skipped.append(d)
                continue
            for s in preds[j]:
                if state[s] != EXCLUDED:
                    left[s] += 1
            count[d] = waits
            if waits == 0:
                if self._policy == "critical" and self._rank is None:
                    self._ranks()
                self._push(d)
        skipped.sort()
        return skipped

    # -- a run -------------------------------------------------------------

    @property
    def ready(self) -> int:
        """Nodes ready and not yet taken."""
        return self._ready

    @property
    def running(self) -> int:
        """Nodes taken and not yet finished."""
        return self._running

    @property
    def remaining(self) -> int:
        """Nodes of the current run not yet finished (ready and running included)."""
        return self._active - self._finished

    @property
    def finished(self) -> int:
        """Nodes of the current run that finished (any outcome)."""
        return self._finished

    def state(self, i: int) -> int:
        """The state of node ``i`` (one of the state constants)."""
        return self._state[_check_id(i, self._n)]

    def states(self) -> bytes:
        """Every node's state, one byte per node id."""
        return bytes(self._state)

    def take(self, limit: int = -1) -> list[int]:
        """Take up to ``limit`` ready nodes (all when negative), best first.

        The nodes become ``RUNNING``.  Returns ``[]`` when nothing is ready
        but some node is running.

        Raises:
            RuntimeError: nodes remain, but none is ready or running: the
                run could never finish (the graph has a cycle).
        """
        limit = operator.index(limit)
        if self._ready == 0 and self._running == 0 and self._active != self._finished and not self._tokens_awaited():
            raise RuntimeError(
                f"scheduler stalled: {self._active - self._finished} nodes remain but none "
                "is ready or running (the graph has a cycle, or a node waits for a pool nobody holds)"
            )
        return self._take(limit)

    def _take(self, limit: int) -> list[int]:
        if self._pooled:
            return self._take_pooled(limit)
        k = self._ready if limit < 0 or limit > self._ready else limit
        if k == 0:
            return []
        if self._policy == "fifo":
            h = self._head
            ids = self._queue[h : h + k]
            if h + k == len(self._queue):
                self._queue.clear()
                self._head = 0
            else:
                self._head = h + k
        else:
            heap = self._heap
            pop = heapq.heappop
            ids = [_ID_MASK - (-pop(heap) & _ID_MASK) for _ in range(k)]
        state = self._state
        for i in ids:
            state[i] = RUNNING
        self._ready -= k
        self._running += k
        return ids

    def _check_running(self, i: int) -> None:
        st = self._state[_check_id(i, self._n)]
        if st != RUNNING:
            if st == SUCCEEDED:
                raise ValueError(f"node {i} was already marked done")
            if st in (PENDING, READY):
                raise ValueError(f"node {i} was not passed out (still not ready)")
            raise ValueError(f"node {i} is {STATE_NAMES[st]}, not running")

    def done(self, i: int) -> int:
        """Mark running node ``i`` succeeded; return how many nodes became ready.

        Raises:
            ValueError: ``i`` is not running (named in the message).
        """
        self._check_running(i)
        became = self._done(i)
        if self._pooled:
            became += self._give_back(i)
        return became

    def done_many(self, ids: "Iterable[int]") -> int:
        """Mark running nodes succeeded, in order; return how many became ready.

        Stops at the first node that is not running, with the nodes before it
        marked (as :meth:`graphlib.TopologicalSorter.done` does).
        """
        became = 0
        for i in ids:
            self._check_running(i)
            became += self._done(i)
            if self._pooled:
                became += self._give_back(i)
        return became

    def _done(
        self, i: int, objs: "dict[int, Any] | None" = None, handed: "dict[int, Any] | None" = None
    ) -> int:
        # With ``objs`` (CSR position -> object), ``handed[d]`` notes the
        # object of the edge that released ``d`` (TopologicalSorter's need).
        state, count, succ = self._state, self._count, self._succ
        state[i] = SUCCEEDED
        self._running -= 1
        self._finished += 1
        before = self._ready
        for e in range(self._start[i], self._start[i + 1]):
            d = succ[e]
            c = count[d] - 1
            count[d] = c
            if c == 0 and state[d] == PENDING:
                self._push(d)
                if objs and e in objs:
                    handed[d] = objs[e]  # type: ignore[index]
        if self._extra is not None and i in self._extra:  # (successors it gained by growing)
            for d in self._extra[i]:
                c = count[d] - 1
                count[d] = c
                if c == 0 and state[d] == PENDING:
                    self._push(d)
        return self._ready - before

    def fail(self, i: int) -> list[int]:
        """Mark running node ``i`` failed; return the nodes skipped because of it.

        Each successor follows its trigger rule: ``ALL_SUCCESS`` and
        ``NONE_FAILED`` successors are skipped, and so on down the graph;
        ``ALL_DONE`` successors count the failure as finished.
        """
        self._check_running(i)
        return self._finish_bad(i, FAILED)

    def skip(self, i: int) -> list[int]:
        """Mark running node ``i`` skipped; return the nodes skipped because of it.

        ``ALL_SUCCESS`` successors are skipped too; ``NONE_FAILED`` and
        ``ALL_DONE`` successors count the skip as finished.
        """
        self._check_running(i)
        return self._finish_bad(i, SKIPPED)

    def _finish_bad(self, i: int, outcome: int) -> list[int]:
        state, count, succ, start = self._state, self._count, self._succ, self._start
        trig = self._trigger
        state[i] = outcome
        self._running -= 1
        self._finished += 1
        if self._pooled:
            self._give_back(i)
        skipped: list[int] = []
        work = [i]
        extra = self._extra
        for s in work:  # grows while we walk it
            how = state[s]
            after = succ[start[s] : start[s + 1]]
            if extra is not None and s in extra:  # (successors it gained by growing)
                after.extend(extra[s])
            for d in after:
                if state[d] != PENDING:
                    continue
                rule = ALL_SUCCESS if trig is None else trig[d]
                if rule == ALL_DONE or (rule == NONE_FAILED and how == SKIPPED):
                    c = count[d] - 1
                    count[d] = c
                    if c == 0:
                        self._push(d)
                else:
                    state[d] = SKIPPED
                    self._finished += 1
                    skipped.append(d)
                    work.append(d)
        return skipped

    def release(self, i: int) -> list[int]:
        """Count node ``i`` as finished for each of its predecessors' consumers.

        Each active node starts a run with the number of its active
        successors; this takes one off each predecessor of ``i`` and returns
        those that reached zero: nothing in the run needs their output any
        more.  Call it once per finished node, whatever its outcome.
        """
        _check_id(i, self._n)
        pstart, pred = self._preds()
        left = self._left
        out = []
        for e in range(pstart[i], pstart[i + 1]):
            p = pred[e]
            if left[p] > 0:
                left[p] -= 1
                if left[p] == 0:
                    out.append(p)
        return out

    # -- pools and rates -----------------------------------------------------
    #
    # A pool is an integer id with a size; node ``i`` uses ``uunits[e]`` units
    # of pool ``upool[e]`` for ``e`` in ``ustart[i]:ustart[i + 1]`` (CSR).
    # ``take()`` hands out a node only when each of its pools has room, and
    # holds its units (``held[i]``) until ``done``, ``fail``, ``skip`` or
    # ``give_back``.  A ready node that does not fit waits aside in the
    # waiting list of the first pool without room (``pwait[p]``: a heap of the
    # ready set's keys, or of arrival numbers under ``"fifo"``); it is still
    # ``READY`` but not counted in ``ready`` (``waiting`` counts it).  Units
    # coming back to a pool move its best waiters back into the ready set, as
    # many as the units cover, so no take rescans what waits.  A *spent* pool
    # (a rate's token bucket) keeps the units taken from it: only ``refill``
    # adds units.  Nodes in ``apart`` (map steps) are taken without holding
    # anything: their units are held per attempt, by ``acquire``/``restore``.
    # Without pools (``set_pools`` never called, or given no pool), every
    # method pays one flag check.

    def _grown_uses(
        self, n: int, m: int, uses: "Sequence[Sequence[tuple[int, int]]] | None", apart: "Iterable[int]",
    ) -> "tuple[list[tuple[list[int], list[int]]], bytearray] | None":
        """:meth:`grow`'s ``uses`` and ``apart`` checked (nothing changed):
        per new node its pools and units, and the new nodes' apart flags."""
        if uses is None and not apart:
            return None
        psize = self._psize if self._pooled else []
        checked: list[tuple[list[int], list[int]]] = []
        if uses is not None:
            if len(uses) != m:
                raise ValueError(f"uses needs one entry per new node ({m}), not {len(uses)}")
            for j, pairs in enumerate(uses):
                ps: list[int] = []
                us: list[int] = []
                for p, u in pairs:
                    if not psize:
                        raise ValueError(f"node {n + j} uses pool {p}, and the kernel has no pools")
                    p = _check_id(operator.index(p), len(psize))
                    u = operator.index(u)
                    if not 0 < u <= psize[p]:
                        raise ValueError(f"node {n + j} uses {u} units of pool {p}, which holds {psize[p]}")
                    ps.append(p)
                    us.append(u)
                checked.append((ps, us))
        flags = bytearray(m)
        for i in apart:
            i = _check_id(operator.index(i), n + m)
            if i < n:
                raise IndexError(f"node {i} is not new: only new nodes (from {n}) may be given apart")
            flags[i - n] = 1
        return checked, flags

    def _grow_pools(self, m: int, held: "tuple[list[tuple[list[int], list[int]]], bytearray] | None") -> None:
        """:meth:`grow`: the new nodes' uses (none unless given) and flags."""
        ustart = self._ustart
        if held is None or not held[0]:
            ustart.extend([ustart[-1]] * m)
        else:
            for ps, us in held[0]:
                self._upool.extend(ps)
                self._uunits.extend(us)
                ustart.append(len(self._upool))
        self._apart.extend(bytes(m) if held is None else held[1])
        self._held.extend(bytes(m))

    def set_pools(
        self,
        sizes: "Sequence[int]",
        uses: "Sequence[Sequence[tuple[int, int]]]" = (),
        spent: "Iterable[int]" = (),
        apart: "Iterable[int]" = (),
        clock: "Callable[[], float] | None" = None,
    ) -> None:
        """Give the kernel pools; takes effect at the next :meth:`reset`.

        Args:
            sizes: each pool's number of units, by pool id (``[]``: no pools).
            uses: per node (``n`` entries, or none), ``(pool, units)`` pairs:
                what the node holds while it runs.
            spent: pools whose units are used up rather than given back (token
                buckets): only :meth:`refill` adds units to them.
            apart: nodes taken without holding their units (map steps, whose
                units hold them per attempt: :meth:`acquire`).
            clock: when given, how long each node waited aside before it was
                taken is measured with it (:meth:`waited`).

        Raises:
            ValueError: a size or a use below zero or more than its pool's size,
                or ``uses`` not one entry per node.
            IndexError: a pool or node id out of range.
        """
        n = self._n
        self._clock = clock
        psize = [operator.index(s) for s in sizes]
        if any(s < 0 for s in psize):
            raise ValueError("a pool's size cannot be negative")
        if not psize:
            self._pooled = False
            self._psize, self._pfree, self._pspent = [], [], bytearray()
            self._ustart, self._upool, self._uunits = [], [], []
            self._apart, self._held, self._pwait = bytearray(), bytearray(), []
            self._waiting = 0
            return
        if len(uses) not in (0, n):
            raise ValueError(f"uses needs one entry per node ({n}), not {len(uses)}")
        ustart = [0] * (n + 1)
        upool: list[int] = []
        uunits: list[int] = []
        seen: dict[int, tuple[list[int], list[int]]] = {}  # id(pairs) -> checked (nodes share them)
        for i, pairs in enumerate(uses):
            checked = seen.get(id(pairs))
            if checked is None:
                checked = seen[id(pairs)] = ([], [])
                for p, u in pairs:
                    p = _check_id(operator.index(p), len(psize))
                    u = operator.index(u)
                    if not 0 < u <= psize[p]:
                        raise ValueError(f"node {i} uses {u} units of pool {p}, which holds {psize[p]}")
                    checked[0].append(p)
                    checked[1].append(u)
            upool.extend(checked[0])
            uunits.extend(checked[1])
            ustart[i + 1] = len(upool)
        if not uses:
            ustart = [0] * (n + 1)
        spent_flags = bytearray(len(psize))
        for p in spent:
            spent_flags[_check_id(operator.index(p), len(psize))] = 1
        apart_flags = bytearray(n)
        for i in apart:
            apart_flags[_check_id(operator.index(i), n)] = 1
        self._psize, self._pspent = psize, spent_flags
        self._ustart, self._upool, self._uunits = ustart, upool, uunits
        self._apart = apart_flags
        self._pooled = True
        self._reset_pools()

    def _reset_pools(self) -> None:
        self._pfree = list(self._psize)
        self._pwait = [[] for _ in self._psize]
        self._held = bytearray(self._n)
        self._waiting = 0
        self._seq = 0
        self._parked_at = {}
        self._waited = {}

    @property
    def waiting(self) -> int:
        """Ready nodes waiting for room in a pool (not counted in :attr:`ready`)."""
        return self._waiting

    def waited(self, i: int) -> float:
        """Seconds node ``i`` waited aside (for room in a pool or a token)
        before it was last taken; ``0.0`` when it did not, or no clock was given."""
        _check_id(i, self._n)
        return self._waited.get(i, 0.0) if self._pooled else 0.0

    def room(self, p: int) -> int:
        """Units of pool ``p`` free now."""
        return self._pfree[_check_id(operator.index(p), len(self._psize))]

    def fits(self, i: int) -> bool:
        """Whether every pool node ``i`` uses has room for it now."""
        _check_id(i, self._n)
        return not self._pooled or self._blocker(i) < 0

    def _blocker(self, i: int) -> int:
        """The first pool without room for node ``i``, or ``-1``."""
        free, upool, uunits = self._pfree, self._upool, self._uunits
        for e in range(self._ustart[i], self._ustart[i + 1]):
            if free[upool[e]] < uunits[e]:
                return upool[e]
        return -1

    def _hold(self, i: int) -> None:
        free, upool, uunits = self._pfree, self._upool, self._uunits
        for e in range(self._ustart[i], self._ustart[i + 1]):
            free[upool[e]] -= uunits[e]

    def _unhold(self, i: int) -> int:
        """Give node ``i``'s units back (a spent pool's are used up); how
        many waiting nodes re-entered the ready set."""
        free, upool, uunits, spent = self._pfree, self._upool, self._uunits, self._pspent
        back = 0
        for e in range(self._ustart[i], self._ustart[i + 1]):
            p = upool[e]
            if not spent[p]:
                free[p] += uunits[e]
                if self._pwait[p]:
                    back += self._readmit(p)
        return back

    def _give_back(self, i: int) -> int:
        if not self._held[i]:
            return 0
        self._held[i] = 0
        return self._unhold(i)

    def _park(self, i: int, p: int) -> None:
        if self._policy == "fifo":
            self._seq += 1
            key = (self._seq << 32) | i
        else:
            rank = self._rank
            assert rank is not None
            key = -((rank[i] << 32) | (_ID_MASK - i))
        heapq.heappush(self._pwait[p], key)
        self._waiting += 1
        if self._clock is not None and i not in self._parked_at:
            self._parked_at[i] = self._clock()

    def _readmit(self, p: int) -> int:
        """Move the best waiters of pool ``p`` back into the ready set, as many as its free units cover."""
        wait = self._pwait[p]
        budget = self._pfree[p]
        fifo = self._policy == "fifo"
        moved = 0
        while wait and budget > 0:
            key = wait[0]
            i = key & _ID_MASK if fifo else _ID_MASK - (-key & _ID_MASK)
            need = 0
            for e in range(self._ustart[i], self._ustart[i + 1]):
                if self._upool[e] == p:
                    need = self._uunits[e]
            if need > budget:
                break
            heapq.heappop(wait)
            budget -= need
            self._waiting -= 1
            self._push(i)
            moved += 1
        return moved

    def _take_pooled(self, limit: int) -> list[int]:
        ids: list[int] = []
        state = self._state
        apart = self._apart
        while self._ready and (limit < 0 or len(ids) < limit):
            if self._policy == "fifo":
                i = self._queue[self._head]
                self._head += 1
                if self._head == len(self._queue):
                    self._queue.clear()
                    self._head = 0
            else:
                i = _ID_MASK - (-heapq.heappop(self._heap) & _ID_MASK)
            self._ready -= 1
            if not apart[i]:
                p = self._blocker(i)
                if p >= 0:
                    self._park(i, p)
                    continue
                if self._ustart[i] != self._ustart[i + 1]:
                    self._hold(i)
                    self._held[i] = 1
                if self._clock is not None:
                    self._note_wait(i)
            state[i] = RUNNING
            self._running += 1
            ids.append(i)
        return ids

    def _note_wait(self, i: int) -> None:
        since = self._parked_at.pop(i, None)
        if since is not None:
            self._waited[i] = self._clock() - since  # type: ignore[misc]
        elif self._waited:
            self._waited.pop(i, None)

    def _tokens_awaited(self) -> bool:
        """Whether some node waits for a spent pool (a refill will come)."""
        if not self._pooled:
            return False
        return any(self._pspent[p] and self._pwait[p] for p in range(len(self._psize)))

    def acquire(self, i: int) -> bool:
        """Hold node ``i``'s units once more, if every pool has room now (one
        attempt of a map step's units); nothing waits when there is none.

        Returns:
            Whether the units are held (give them back with :meth:`restore`).
        """
        _check_id(i, self._n)
        if not self._pooled:
            return True
        if self._blocker(i) >= 0:
            return False
        self._hold(i)
        return True

    def restore(self, i: int) -> int:
        """Give back units of node ``i`` that :meth:`acquire` held; return how
        many waiting nodes re-entered the ready set."""
        _check_id(i, self._n)
        return self._unhold(i) if self._pooled else 0

    def give_back(self, i: int) -> int:
        """Running node ``i`` gives back the units :meth:`take` held for it
        (it waits to be tried again); return how many waiting nodes re-entered
        the ready set.  Nothing happens when it holds none."""
        self._check_running(i)
        return self._give_back(i) if self._pooled else 0

    def again(self, i: int) -> int:
        """Put running node ``i`` back into the ready set (a retry, to be taken
        again under its pools), giving back what it holds; return how many
        nodes became ready, itself included."""
        self._check_running(i)
        back = self._give_back(i) if self._pooled else 0
        self._running -= 1
        if self._policy == "fifo" and self._head:
            del self._queue[: self._head]
            self._head = 0
        self._push(i)
        return back + 1

    def refill(self, p: int, units: int) -> int:
        """Add ``units`` to spent pool ``p`` (a token bucket), up to its size;
        return how many waiting nodes re-entered the ready set."""
        p = _check_id(operator.index(p), len(self._psize))
        units = operator.index(units)
        if units < 0:
            raise ValueError("a refill cannot be negative")
        self._pfree[p] = min(self._psize[p], self._pfree[p] + units)
        return self._readmit(p) if self._pwait[p] else 0

    def cancel(self) -> list[int]:
        """Cancel every pending and ready node; return them in id order.

        Running nodes are left running: finish them with :meth:`done`,
        :meth:`fail` or :meth:`skip` as usual.
        """
        state = self._state
        ids = [i for i in range(self._n) if state[i] == PENDING or state[i] == READY]
        for i in ids:
            state[i] = CANCELLED
        self._finished += len(ids)
        self._ready = 0
        self._queue, self._head, self._heap = [], 0, []
        if self._pooled:
            self._pwait = [[] for _ in self._psize]
            self._waiting = 0
        return ids


def link(
    index: "dict[Any, int]", deps: "list[tuple[Any, ...]]", known: "list[tuple[int, ...] | None] | None" = None
) -> "tuple[list[tuple[int, ...]], Kernel]":
    """``(ids, kernel)`` of a graph given by names: node ``i`` depends on the
    nodes named in ``deps[i]`` (a tuple of names, each once); ``index`` maps
    every name to its id; ``ids[i]`` is the tuple of those ids and the kernel
    has the edges ``ids[i][k] -> i``.  ``known[i]``, where given and not
    ``None``, is taken as ``ids[i]`` without looking its names up (``known``
    itself is returned as ``ids`` when it holds them all).

    Raises:
        KeyError: a name in ``deps`` is not in ``index`` (the first one met).
        TypeError: an entry of ``deps`` is not a tuple.
        IndexError: an id is out of range.
    """
    n = len(deps)
    if known is not None and len(known) != n:
        raise ValueError(f"known has {len(known)} entries for {n} nodes")
    get = index.__getitem__
    ids: list[tuple[int, ...]] = []
    looked = 0
    for i, d in enumerate(deps):
        if type(d) is not tuple:
            raise TypeError(f"deps[{i}] must be a tuple of names, not {d!r}")
        t = None if known is None else known[i]
        if t is not None:
            if type(t) is not tuple or len(t) != len(d):
                raise TypeError(f"known[{i}] must be a tuple of {len(d)} ids, not {t!r}")
        elif d:
            looked += 1
            t = tuple(map(get, d))
        ids.append(t if t is not None else ())
    src = list(chain.from_iterable(ids))
    dst = list(chain.from_iterable(map(repeat, range(n), map(len, ids))))
    kernel = Kernel(n, src, dst)
    return (known if known is not None and not looked else ids), kernel  # type: ignore[return-value]


def ids_of(index: "dict[Any, int]", names: "tuple[Any, ...]") -> "tuple[int, ...] | Literal[False] | None":
    """The tuple of the ids of ``names`` in ``index`` when they are strings,
    each named once: ``None`` when the one name is not in ``index``,
    ``False`` when not so (a name that is not a string, one named twice,
    several and one not in ``index``)."""
    for name in names:
        if type(name) is not str:
            return False
    try:
        ids = tuple(map(index.__getitem__, names))
    except KeyError:
        return None if len(names) == 1 else False
    return ids if len(ids) < 2 or len(set(ids)) == len(ids) else False


def name_tuples(entries: "list[Any]") -> "list[tuple[str, ...]] | None":
    """Each entry of ``entries`` (a list or tuple of strings) as a tuple (a
    tuple is kept as it is); ``None`` when one is anything else."""
    if set(map(type, entries)) - {list, tuple}:
        return None
    out = [e if type(e) is tuple else tuple(e) for e in entries]
    if set(map(type, chain.from_iterable(out))) - {str}:
        return None
    return out


def number(
    index: "dict[Any, int]", first: int, names: "list[Any]", deps: "list[tuple[Any, ...]]"
) -> "tuple[list[tuple[int, ...] | None], list[int]]":
    """Give ``names[k]`` the id ``first + k`` in ``index``, in order, and
    find the ids of its dependencies ``deps[k]`` (a tuple of names) right
    after, while the names they mostly point at (the last ones added) are
    fresh in memory.  Returns ``(ids, again)``: ``ids[k]``, the tuple of
    ``deps[k]``'s ids, or ``None`` when one of them is not in ``index`` yet;
    ``again``, the ``k`` whose ``deps[k]`` may name a step twice (an id
    seen twice, or several names not all found yet).

    Raises:
        KeyError: ``names[k]`` is in ``index`` already (the names before it
            are left added: the caller undoes them).
        TypeError: an entry of ``deps`` is not a tuple.
    """
    if len(deps) != len(names):
        raise ValueError(f"deps has {len(deps)} entries for {len(names)} names")
    ids: list[tuple[int, ...] | None] = []
    again: list[int] = []
    get = index.get
    for k, name in enumerate(names):
        if index.setdefault(name, first + k) != first + k:
            raise KeyError(name)
        d = deps[k]
        if type(d) is not tuple:
            raise TypeError(f"deps[{k}] must be a tuple of names, not {d!r}")
        t: "tuple[Any, ...] | None" = tuple(map(get, d))
        if None in t:  # type: ignore[operator]
            t = None
            if len(d) > 1:
                again.append(k)
        elif len(t) > 1 and len(set(t)) != len(t):  # type: ignore[arg-type]
            again.append(k)
        ids.append(t)
    return ids, again


def drive(
    k: Kernel,
    fns: "list[Callable[..., Any]]",
    kwnames: "list[tuple[str, ...]]",
    argdeps: "list[tuple[int, ...]]",
    consts: "list[tuple[Any, ...]]",
    outputs: "list[Any]",
    attempts: list[int],
    started: list[float],
    finished: list[float],
    clock: "Callable[[], float]",
    flags: bytes,
    lock: "AbstractContextManager[Any] | None" = None,
    idle: "list[int] | None" = None,
    current: "list[Any] | None" = None,
    cancel: "Any" = None,
    on_done: "Callable[[int], bool] | None" = None,
) -> "tuple[int, BaseException | None] | None":
    """Run ready steps in the calling thread until none is ready.

    The inline hot loop of the runner, here because a task costs less than
    a trip out of the kernel per task would.  Step ``i`` is called as
    ``fns[i](**dict(zip(kwnames[i], values)))`` where the values are the
    outputs of ``argdeps[i]`` followed by ``consts[i]``; when ``kwnames[i]``
    is shorter than the values, those before the last ``len(kwnames[i])``
    go by position (``fns[i](*values[:-len(kwnames[i])], ...)``, all of them
    when it is empty); its output goes to
    ``outputs[i]``, its attempt count and clock readings to the other lists.
    After a success, predecessors whose consumers have all finished have
    their output dropped (set to ``None``) unless ``flags[p] & KEEP``; then
    the step is marked done in the kernel.

    Several threads may drive one kernel at once: the compiled twin relies on
    the GIL, this one on ``lock`` (held around every kernel operation).  When
    ``idle[0] > 0`` (threads waiting for work) and a step made others ready,
    the loop returns ``(-1, None)`` so that the caller can wake them.
    ``current[0]`` is set to the id of the step being called (for
    ``microdag.context()``); once ``cancel.is_set()`` the loop returns
    ``None`` without starting another step.  ``on_done(i)``, when given, is
    called after step ``i`` returned and its output is in ``outputs[i]``
    (the runner records it in its store there); if it returns false, it has
    settled the step itself and the loop goes on without marking it done.

    A step may grow the kernel (:meth:`Kernel.grow`): the loop then returns
    ``None`` before it takes another step, since the lists it was given
    have no entries for the new nodes; the caller gives it longer ones.

    Returns:
        ``None`` when no step is ready (or the kernel grew); ``(-1, None)`` as above; ``(i, None)`` when step ``i`` was
        taken but ``flags[i] & SLOW`` asks the caller to run it; ``(i, exc)``
        when step ``i`` raised ``exc`` (it is still running in the kernel:
        the caller decides between a retry, ``fail`` and ``skip``).
    """
    pstart, pred = k._preds()
    left = k._left
    n = k._n
    while True:
        if cancel is not None and cancel.is_set():
            return None
        if lock is not None:
            with lock:
                if k._ready == 0 or k._n != n:
                    return None
                got = k._take(1)
        else:
            if k._ready == 0 or k._n != n:
                return None
            got = k._take(1)
        if not got:  # (pools: every ready step waits for room)
            return None
        i = got[0]
        if flags[i] & SLOW:
            return (i, None)
        if current is not None:
            current[0] = i
        values = [outputs[d] for d in argdeps[i]]
        values.extend(consts[i])
        names = kwnames[i]
        npos = len(values) - len(names)
        if npos < 0:
            raise ValueError(f"step {i}: {len(names)} names for {len(values)} values")
        attempts[i] += 1
        started[i] = clock()
        try:
            if npos == 0:
                result = fns[i](**dict(zip(names, values)))
            else:
                result = fns[i](*values[:npos], **dict(zip(names, values[npos:])))
        except BaseException as exc:
            finished[i] = clock()
            return (i, exc)
        finished[i] = clock()
        outputs[i] = result
        del values
        if on_done is not None and not on_done(i):
            continue
        if lock is not None:
            lock.__enter__()
        try:
            for e in range(pstart[i], pstart[i + 1]):
                p = pred[e]
                if left[p] > 0:
                    left[p] -= 1
                    if left[p] == 0 and not flags[p] & KEEP:
                        outputs[p] = None
            became = k._done(i)
            if k._pooled:
                became += k._give_back(i)
        finally:
            if lock is not None:
                lock.__exit__(None, None, None)
        if became and idle is not None and idle[0] > 0:
            return (-1, None)


def run_items(
    fn: "Callable[..., Any]",
    kwnames: "tuple[str, ...]",
    values: "list[Any]",
    pos: int,
    units: "list[Any]",
    results: "list[Any]",
    start: int,
    stop: int,
    current: "list[Any] | None" = None,
    item_base: int = 1,
) -> "tuple[int, BaseException] | None":
    """Call ``fn`` once per unit of ``units[start:stop]``: the map hot loop.

    Each call gets the keyword names ``kwnames`` bound to ``values``, except
    that ``values[pos]`` is replaced by the unit; results go to ``results[j]``.
    ``current[1]`` is set to ``j * item_base`` (the item index) before each
    call.

    Returns:
        ``None`` when every call returned, or ``(j, exc)`` for the first unit
        that raised (the results before it are stored).
    """
    n = len(values)
    if len(kwnames) != n or not 0 <= pos < n:
        raise ValueError("run_items() needs one keyword name per value and pos among them")
    if not 0 <= start <= stop <= len(units) or len(results) < stop:
        raise ValueError("run_items() range is outside units or results")
    kwargs = dict(zip(kwnames, values))
    name = kwnames[pos]
    for j in range(start, stop):
        kwargs[name] = units[j]
        if current is not None:
            current[1] = j * item_base
        try:
            results[j] = fn(**kwargs)
        except BaseException as exc:
            return (j, exc)
    return None


class TopologicalSorter(_Generic[_N]):
    """Drop-in replacement for :class:`graphlib.TopologicalSorter`.

    Same methods, same groups and order, same exceptions and messages, on the
    microdag kernel.  Nodes must be hashable.  Generic in the node type, as
    ``graphlib.TopologicalSorter[str]`` is.
    """

    __slots__ = ("_index", "_nodes", "_src", "_dst", "_kernel", "_objs", "_handed")

    def __init__(self, graph: "Mapping[_N, Iterable[_N]] | None" = None) -> None:
        self._index: dict[_N, int] = {}
        self._nodes: list[_N] = []
        self._src: list[int] = []
        self._dst: list[int] = []
        self._kernel: Kernel | None = None
        # graphlib hands a node out as the object its releasing edge was added
        # with: edge (CSR position after prepare) -> that object, kept only
        # where it could differ from the node's first object.
        self._objs: dict[int, _N] = {}
        self._handed: dict[int, _N] = {}
        if graph is not None:
            for node, predecessors in graph.items():
                self.add(node, *predecessors)

    def _intern(self, node: "_N") -> int:
        index = self._index
        i = index.get(node)
        if i is None:
            i = index[node] = len(self._nodes)
            self._nodes.append(node)
        return i

    def add(self, node: "_N", *predecessors: "_N") -> None:
        """Add a node and its predecessors (both hashable).

        Calls with the same node add up; a predecessor seen for the first time
        is added with no predecessors of its own.

        Raises:
            ValueError: called after :meth:`prepare`.
            TypeError: a node is not hashable.
        """
        if self._kernel is not None:
            raise ValueError("Nodes cannot be added after a call to prepare()")
        i = self._intern(node)
        src, dst, intern = self._src, self._dst, self._intern
        first = len(src)
        for pred in predecessors:
            src.append(intern(pred))
            dst.append(i)
        if not _same_object(node, self._nodes[i]):
            for e in range(first, len(src)):
                self._objs[e] = node

    def prepare(self) -> None:
        """Freeze the graph and check it for cycles.

        Raises:
            ValueError: called twice.
            CycleError: the graph has a cycle; :meth:`get_ready` still hands
                out every node that the cycle does not block.
        """
        if self._kernel is not None:
            raise ValueError("cannot prepare() more than once")
        kernel = Kernel(len(self._nodes), self._src, self._dst)
        if self._objs:  # original edge index -> CSR position
            fill = kernel._start[:-1]
            objs = {}
            for e, s in enumerate(self._src):
                if e in self._objs:
                    objs[fill[s]] = self._objs[e]
                fill[s] += 1
            self._objs = objs
        self._src, self._dst = [], []
        kernel.reset(policy="fifo")
        self._kernel = kernel
        found = kernel._find_cycle()
        if found is not None:
            nodes, objs = self._nodes, self._objs
            cycle = [objs.get(e, nodes[i]) if e >= 0 else nodes[i] for i, e in zip(*found)]
            raise CycleError("nodes are in a cycle", cycle)

    def _prepared(self) -> "Kernel":
        kernel = self._kernel
        if kernel is None:
            raise ValueError("prepare() must be called first")
        return kernel

    def get_ready(self) -> "tuple[_N, ...]":
        """Every node that is ready and was not handed out yet, as a tuple."""
        ids = self._prepared()._take(-1)
        if self._handed:
            handed, nodes = self._handed, self._nodes
            return tuple([handed.pop(i) if i in handed else nodes[i] for i in ids])
        return tuple(map(self._nodes.__getitem__, ids))

    def is_active(self) -> bool:
        """Whether more progress can be made (nodes ready, or handed out and not done)."""
        kernel = self._prepared()
        return kernel._ready > 0 or kernel._running > 0

    def __bool__(self) -> bool:
        return self.is_active()

    def done(self, *nodes: "_N") -> None:
        """Mark nodes handed out by :meth:`get_ready` as processed.

        Raises:
            ValueError: a node was not added, not handed out, or already done
                (the nodes before it in the call are marked done).
        """
        kernel = self._prepared()
        index = self._index
        state = kernel._state
        for node in nodes:
            i = index.get(node)
            if i is None:
                raise ValueError(f"node {node!r} was not added using add()")
            st = state[i]
            if st != RUNNING:
                if st == SUCCEEDED:
                    raise ValueError(f"node {node!r} was already marked done")
                raise ValueError(f"node {node!r} was not passed out (still not ready)")
            kernel._done(i, self._objs, self._handed)

    def static_order(self) -> "Iterator[_N]":
        """Every node in a topological order (calls :meth:`prepare`).

        Raises:
            CycleError: the graph has a cycle.
        """
        self.prepare()
        while self.is_active():
            group = self.get_ready()
            yield from group
            self.done(*group)

    def __class_getitem__(cls, item: object) -> GenericAlias:
        return GenericAlias(cls, item)
