# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, embedsignature=True
"""The ready-set scheduler kernel, compiled.

The twin of ``_sched_py.py``, which is the specification (read its module
docstring for the state, the invariants and why a driver cannot hang).  Same
classes, methods, errors and results; only the storage differs: every per-node
and per-edge array here is a C array taken with ``PyMem_Malloc`` (so
``tracemalloc`` sees it), ids are ``int32``, and the ready heap holds packed
``uint64`` keys ``rank << 32 | (0xFFFFFFFF - id)`` so that one integer
comparison orders two nodes.

Ids are checked at every public entry point; inside, loops run unchecked.
"""

cimport cython
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.object cimport PyObject, PyObject_Hash, PyObject_RichCompareBool, Py_EQ
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_CheckExact, PyLong_AsLongLongAndOverflow
from cpython.exc cimport PyErr_Clear
from cpython.unicode cimport PyUnicode_CheckExact
from libc.stdint cimport int32_t, uint8_t, uint32_t, uint64_t, int64_t
from libc.string cimport memset, memcpy, memmove
from libc.stdlib cimport qsort

import heapq
import operator
from types import GenericAlias

from ._errors import CycleError

cdef extern from "Python.h":
    PyObject* PyList_GET_ITEM_BORROWED "PyList_GET_ITEM" (object, Py_ssize_t)
    Py_ssize_t PyList_GET_SIZE(object)
    PyObject* PySequence_Fast_GET_ITEM_BORROWED "PySequence_Fast_GET_ITEM" (object, Py_ssize_t)
    Py_ssize_t PySequence_Fast_GET_SIZE(object)
    object PySequence_Fast(object, const char*)
    Py_ssize_t PyNumber_AsSsize_t(object, PyObject*) except? -1
    ctypedef Py_ssize_t Py_hash_t
    PyObject* PyTuple_GET_ITEM_BORROWED "PyTuple_GET_ITEM" (object, Py_ssize_t)
    Py_ssize_t PyTuple_GET_SIZE(object)
    Py_ssize_t PyBytes_GET_SIZE(object)
    PyObject** PySequence_Fast_ITEMS(object)
    object PyObject_Vectorcall(object, PyObject**, size_t, PyObject*)
    PyObject* PyDict_GetItemWithError(object, object) except? NULL
    PyObject* PyDict_SetDefault(object, object, object) except NULL

__all__ = ["Kernel", "TopologicalSorter", "TWIN", "drive", "ids_of", "link", "name_tuples", "number", "run_items"]

TWIN = "c"

cdef enum:
    _PENDING = 0
    _READY = 1
    _RUNNING = 2
    _SUCCEEDED = 3
    _FAILED = 4
    _SKIPPED = 5
    _CANCELLED = 6
    _EXCLUDED = 7

PENDING = _PENDING
READY = _READY
RUNNING = _RUNNING
SUCCEEDED = _SUCCEEDED
FAILED = _FAILED
SKIPPED = _SKIPPED
CANCELLED = _CANCELLED
EXCLUDED = _EXCLUDED

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

cdef enum:
    _SLOW = 1
    _KEEP = 2

SLOW = _SLOW
KEEP = _KEEP

cdef enum:
    _ALL_SUCCESS = 0
    _ALL_DONE = 1
    _NONE_FAILED = 2

ALL_SUCCESS = _ALL_SUCCESS
ALL_DONE = _ALL_DONE
NONE_FAILED = _NONE_FAILED

cdef enum:
    _CRITICAL = 0
    _FIFO = 1

cdef Py_ssize_t _MAX_NODES = 2147483646
cdef uint32_t _ID_MASK = 0xFFFFFFFF


cdef void* _alloc(Py_ssize_t count, size_t size) except NULL:
    cdef void* p = PyMem_Malloc(<size_t>(count if count > 0 else 1) * size)
    if p == NULL:
        raise MemoryError()
    return p


cdef void* _grown(void* p, Py_ssize_t old, Py_ssize_t count, size_t size) except NULL:
    """``p`` (``old`` items) reallocated to ``count`` items, the new ones zero."""
    cdef void* q = PyMem_Realloc(p, <size_t>(count if count > 0 else 1) * size)
    if q == NULL:
        raise MemoryError()
    if count > old:
        memset(<char*>q + old * size, 0, (count - old) * size)
    return q

cdef inline int _same_int(PyObject* a, object b) noexcept:
    """1: both exact ints, equal; 2: both exact ints, not equal; 0: don't know.

    Interned ids are compared a lot; the generic rich comparison costs
    several times more than reading two machine-size ints.
    """
    cdef int oa = 0, ob = 0
    cdef long long va, vb
    if not (PyLong_CheckExact(<object>a) and PyLong_CheckExact(b)):
        return 0
    va = PyLong_AsLongLongAndOverflow(<object>a, &oa)
    vb = PyLong_AsLongLongAndOverflow(b, &ob)
    if oa or ob:
        PyErr_Clear()
        return 0
    return 1 if va == vb else 2


cdef inline Py_ssize_t _check_id(Py_ssize_t i, Py_ssize_t n) except -1:
    if i < 0 or i >= n:
        raise IndexError(f"node id {i} out of range for a graph of {n} nodes")
    return i


cdef int _cmp_u64(const void* a, const void* b) noexcept nogil:
    cdef uint64_t x = (<const uint64_t*>a)[0]
    cdef uint64_t y = (<const uint64_t*>b)[0]
    return (x > y) - (x < y)


cdef uint64_t* _sort_u64(uint64_t* a, uint64_t* tmp, Py_ssize_t n) noexcept:
    """Sort ``a[:n]`` ascending; return the buffer (``a`` or ``tmp``) holding it.

    Insertion sort for short runs; else an LSD radix sort over only the bytes
    in which the keys differ (ready nodes share their high bytes, so a batch
    usually needs two or three passes).
    """
    cdef Py_ssize_t i, j, b
    cdef uint64_t key, diff = 0, first
    cdef Py_ssize_t counts[256]
    cdef Py_ssize_t total, c
    cdef uint64_t* src = a
    cdef uint64_t* dst = tmp
    cdef uint64_t* swap
    cdef int shift
    if n < 48:
        for i in range(1, n):
            key = a[i]
            j = i - 1
            while j >= 0 and a[j] > key:
                a[j + 1] = a[j]
                j -= 1
            a[j + 1] = key
        return a
    first = a[0]
    for i in range(n):
        diff |= a[i] ^ first
    for b in range(8):
        shift = <int>(b * 8)
        if ((diff >> shift) & 0xFF) == 0:
            continue
        memset(counts, 0, sizeof(counts))
        for i in range(n):
            counts[(src[i] >> shift) & 0xFF] += 1
        total = 0
        for j in range(256):
            c = counts[j]
            counts[j] = total
            total += c
        for i in range(n):
            key = src[i]
            j = (key >> shift) & 0xFF
            dst[counts[j]] = key
            counts[j] += 1
        swap = src
        src = dst
        dst = swap
    return src


@cython.final
cdef class Kernel:
    """Ready-set scheduler over integer node ids ``0 .. n-1``.

    Args:
        n: number of nodes.
        src, dst: the edges, ``src[e]`` must finish before ``dst[e]`` starts.

    Raises:
        ValueError: ``src`` and ``dst`` differ in length, or ``n`` is negative
            or too large.
        IndexError: an edge names a node id outside ``0 .. n-1``.
    """

    cdef Py_ssize_t _n, _nedges
    cdef int32_t* _start
    cdef int32_t* _succ
    cdef int32_t* _pstart
    cdef int32_t* _pred
    cdef uint8_t* _state
    cdef int32_t* _count
    cdef int32_t* _left
    cdef int32_t* _indeg
    cdef Py_ssize_t _resets
    cdef uint8_t* _trigger
    cdef int32_t* _prio
    cdef uint32_t* _rank
    cdef bint _stale
    cdef int _policy
    cdef int32_t* _queue
    cdef Py_ssize_t _qhead, _qtail
    cdef uint64_t* _heap
    cdef Py_ssize_t _hsize, _nstaged
    cdef uint64_t* _tmp
    cdef int32_t* _out
    cdef list _ids
    cdef int32_t* _work
    cdef Py_ssize_t _active, _finished, _running, _ready
    # pools (see the section below): off unless set_pools() gave some
    cdef bint _pooled
    cdef list _psize, _pfree, _ustart, _upool, _uunits, _pwait
    cdef bytearray _pspent, _apart, _held
    cdef Py_ssize_t _waiting, _seq
    cdef object _clock
    cdef dict _parked_at, _waited
    # Successors gained by growing (grow): a chain per node (head, tail; -1:
    # none) through _xnext, to _xdst; merged into the CSR arrays by _compact.
    cdef int32_t* _xhead
    cdef int32_t* _xtail
    cdef int32_t* _xnext
    cdef int32_t* _xdst
    cdef Py_ssize_t _xn, _xcap

    def __cinit__(self):
        self._n = 0
        self._nedges = 0
        self._policy = _CRITICAL

    def __init__(self, n, src=(), dst=()):
        cdef Py_ssize_t nn = n
        if nn < 0 or nn > _MAX_NODES:
            raise ValueError(f"a kernel holds 0 to {_MAX_NODES} nodes, not {n}")
        fsrc = PySequence_Fast(src, "src must be a sequence of ints")
        fdst = PySequence_Fast(dst, "dst must be a sequence of ints")
        cdef Py_ssize_t ne = PySequence_Fast_GET_SIZE(fsrc)
        if ne != PySequence_Fast_GET_SIZE(fdst):
            raise ValueError(
                f"src and dst differ in length ({ne} != {PySequence_Fast_GET_SIZE(fdst)})")
        if ne > _MAX_NODES:
            raise ValueError(f"a kernel holds at most {_MAX_NODES} edges, not {ne}")
        cdef int32_t* s = <int32_t*>_alloc(ne, sizeof(int32_t))
        cdef int32_t* d = NULL
        cdef Py_ssize_t e
        try:
            d = <int32_t*>_alloc(ne, sizeof(int32_t))
            for e in range(ne):
                s[e] = <int32_t>_check_id(
                    <object>PySequence_Fast_GET_ITEM_BORROWED(fsrc, e), nn)
            for e in range(ne):
                d[e] = <int32_t>_check_id(
                    <object>PySequence_Fast_GET_ITEM_BORROWED(fdst, e), nn)
            self._build(nn, s, d, ne)
        finally:
            PyMem_Free(s)
            PyMem_Free(d)

    cdef int _build(self, Py_ssize_t n, const int32_t* src, const int32_t* dst,
                    Py_ssize_t ne) except -1:
        """Build the CSR arrays from checked edge arrays (stable per source)."""
        cdef Py_ssize_t i, e
        cdef int32_t* fill
        self._free()
        self._n = n
        self._nedges = ne
        self._start = <int32_t*>_alloc(n + 1, sizeof(int32_t))
        self._succ = <int32_t*>_alloc(ne, sizeof(int32_t))
        self._state = <uint8_t*>_alloc(n, sizeof(uint8_t))
        self._count = <int32_t*>_alloc(n, sizeof(int32_t))
        memset(self._start, 0, (n + 1) * sizeof(int32_t))
        memset(self._state, _EXCLUDED, n)
        memset(self._count, 0, n * sizeof(int32_t))
        for e in range(ne):
            self._start[src[e] + 1] += 1
        for i in range(n):
            self._start[i + 1] += self._start[i]
        # Use _count as the fill cursor, then clear it again.
        fill = self._count
        for i in range(n):
            fill[i] = self._start[i]
        for e in range(ne):
            self._succ[fill[src[e]]] = dst[e]
            fill[src[e]] += 1
        memset(self._count, 0, n * sizeof(int32_t))
        return 0

    cdef void _free(self) noexcept:
        PyMem_Free(self._start)
        PyMem_Free(self._succ)
        PyMem_Free(self._pstart)
        PyMem_Free(self._pred)
        PyMem_Free(self._state)
        PyMem_Free(self._count)
        PyMem_Free(self._left)
        PyMem_Free(self._indeg)
        PyMem_Free(self._trigger)
        PyMem_Free(self._prio)
        PyMem_Free(self._rank)
        PyMem_Free(self._queue)
        PyMem_Free(self._heap)
        PyMem_Free(self._work)
        PyMem_Free(self._tmp)
        PyMem_Free(self._out)
        self._free_extra()
        self._tmp = NULL
        self._out = NULL
        self._ids = None
        self._start = self._succ = self._pstart = self._pred = NULL
        self._count = self._prio = self._queue = self._work = self._left = self._indeg = NULL
        self._state = self._trigger = NULL
        self._rank = NULL
        self._heap = NULL

    cdef void _free_extra(self) noexcept:
        PyMem_Free(self._xhead)
        PyMem_Free(self._xtail)
        PyMem_Free(self._xnext)
        PyMem_Free(self._xdst)
        self._xhead = self._xtail = self._xnext = self._xdst = NULL
        self._xn = self._xcap = 0

    cdef int _compact(self) except -1:
        """Merge the successors nodes gained by growing into the CSR arrays."""
        cdef Py_ssize_t n = self._n, i, e, pos = 0, ne = self._nedges + self._xn
        cdef int32_t x
        cdef int32_t* start
        cdef int32_t* succ
        if self._xn == 0:
            return 0
        start = <int32_t*>_alloc(n + 1, sizeof(int32_t))
        succ = <int32_t*>PyMem_Malloc((ne if ne > 0 else 1) * sizeof(int32_t))
        if succ == NULL:
            PyMem_Free(start)
            raise MemoryError()
        start[0] = 0
        for i in range(n):
            for e in range(self._start[i], self._start[i + 1]):
                succ[pos] = self._succ[e]
                pos += 1
            x = self._xhead[i]
            while x >= 0:
                succ[pos] = self._xdst[x]
                pos += 1
                x = self._xnext[x]
            start[i + 1] = <int32_t>pos
        PyMem_Free(self._start)
        PyMem_Free(self._succ)
        PyMem_Free(self._indeg)
        self._indeg = NULL
        self._start, self._succ, self._nedges = start, succ, ne
        self._free_extra()
        return 0

    def __dealloc__(self):
        self._free()

    # -- the graph ---------------------------------------------------------

    @property
    def n(self):
        """Number of nodes."""
        return self._n

    @property
    def edges(self):
        """Number of edges (duplicates included)."""
        return self._nedges + self._xn

    def successors(self, Py_ssize_t i):
        """The successors of node ``i``, in edge order."""
        _check_id(i, self._n)
        out = [self._succ[e] for e in range(self._start[i], self._start[i + 1])]
        cdef int32_t x = -1 if self._xhead == NULL else self._xhead[i]
        while x >= 0:
            out.append(self._xdst[x])
            x = self._xnext[x]
        return out

    def predecessors(self, Py_ssize_t i):
        """The predecessors of node ``i``, in edge order."""
        _check_id(i, self._n)
        self._preds()
        return [self._pred[e] for e in range(self._pstart[i], self._pstart[i + 1])]

    cdef int _preds(self) except -1:
        cdef Py_ssize_t n = self._n, i, e
        cdef int32_t d
        cdef int32_t* fill
        cdef int32_t* pstart
        cdef int32_t* pred
        if self._pstart != NULL:
            return 0
        self._compact()
        pstart = <int32_t*>_alloc(n + 1, sizeof(int32_t))
        pred = <int32_t*>_alloc(self._nedges, sizeof(int32_t))
        fill = <int32_t*>PyMem_Malloc((n if n > 0 else 1) * sizeof(int32_t))
        if fill == NULL:
            PyMem_Free(pstart)
            PyMem_Free(pred)
            raise MemoryError()
        memset(pstart, 0, (n + 1) * sizeof(int32_t))
        for e in range(self._nedges):
            pstart[self._succ[e] + 1] += 1
        for i in range(n):
            pstart[i + 1] += pstart[i]
        for i in range(n):
            fill[i] = pstart[i]
        for i in range(n):
            for e in range(self._start[i], self._start[i + 1]):
                d = self._succ[e]
                pred[fill[d]] = <int32_t>i
                fill[d] += 1
        PyMem_Free(fill)
        self._pstart = pstart
        self._pred = pred
        return 0

    cdef Py_ssize_t _find_cycle(self, int32_t** out) except -1:
        """graphlib's depth-first search.

        ``*out`` gets ``2 * length`` ints: the cycle's ids, then per element the
        edge (CSR position) that reached it, -1 for a root.
        """
        cdef Py_ssize_t n = self._n, root, top, depth = 0, k, first, length
        cdef int32_t node, e
        cdef uint8_t* seen = NULL
        cdef int32_t* stacki = NULL
        cdef int32_t* stack = NULL
        cdef int32_t* pos = NULL
        cdef int32_t* cyc
        cdef bint advanced
        self._compact()
        out[0] = NULL
        try:
            seen = <uint8_t*>_alloc(n, sizeof(uint8_t))
            stacki = <int32_t*>_alloc(n, sizeof(int32_t))
            stack = <int32_t*>_alloc(n, sizeof(int32_t))
            pos = <int32_t*>_alloc(n, sizeof(int32_t))
            memset(seen, 0, n)
            memset(stacki, 0xFF, n * sizeof(int32_t))
            for root in range(n):
                if seen[root]:
                    continue
                node = <int32_t>root
                while True:
                    if seen[node]:
                        if stacki[node] >= 0:
                            first = stacki[node]
                            length = depth - first + 1
                            cyc = <int32_t*>_alloc(2 * length, sizeof(int32_t))
                            for k in range(first, depth):
                                cyc[k - first] = stack[k]
                                cyc[length + k - first] = pos[k - 1] - 1 if k > 0 else -1
                            cyc[length - 1] = node
                            cyc[2 * length - 1] = pos[depth - 1] - 1
                            out[0] = cyc
                            return length
                    else:
                        seen[node] = 1
                        stacki[node] = <int32_t>depth
                        stack[depth] = node
                        pos[depth] = self._start[node]
                        depth += 1
                    advanced = False
                    while depth > 0:
                        top = stack[depth - 1]
                        e = pos[depth - 1]
                        if e < self._start[top + 1]:
                            pos[depth - 1] = e + 1
                            node = self._succ[e]
                            advanced = True
                            break
                        depth -= 1
                        stacki[stack[depth]] = -1
                    if not advanced:
                        break
            return 0
        finally:
            PyMem_Free(seen)
            PyMem_Free(stacki)
            PyMem_Free(stack)
            PyMem_Free(pos)

    def find_cycle(self):
        """One cycle of the graph, or ``None`` when it has none.

        The search is the one :mod:`graphlib` makes (depth first, nodes in id
        order, successors in edge order), so both report the same cycle.
        """
        cdef int32_t* cyc = NULL
        cdef Py_ssize_t length = self._find_cycle(&cyc), k
        if length == 0:
            return None
        try:
            return [cyc[k] for k in range(length)]
        finally:
            PyMem_Free(cyc)

    cdef Py_ssize_t _kahn(self, int32_t* order) except -1:
        """Fill ``order`` with Kahn's order (ties by id); return its length."""
        cdef Py_ssize_t n = self._n, i, e, head = 0, tail = 0
        cdef int32_t s, d
        self._compact()
        cdef int32_t* indeg = <int32_t*>_alloc(n, sizeof(int32_t))
        memset(indeg, 0, n * sizeof(int32_t))
        for e in range(self._nedges):
            indeg[self._succ[e]] += 1
        for i in range(n):
            if indeg[i] == 0:
                order[tail] = <int32_t>i
                tail += 1
        while head < tail:
            s = order[head]
            head += 1
            for e in range(self._start[s], self._start[s + 1]):
                d = self._succ[e]
                indeg[d] -= 1
                if indeg[d] == 0:
                    order[tail] = d
                    tail += 1
        PyMem_Free(indeg)
        return tail

    cdef bint _acyclic(self) except -1:
        cdef int32_t* order = <int32_t*>_alloc(self._n, sizeof(int32_t))
        try:
            return self._kahn(order) == self._n
        finally:
            PyMem_Free(order)

    def topological_order(self):
        """Every node id, each after all its predecessors (Kahn, ties by id).

        Raises:
            CycleError: the graph has a cycle (``args[1]`` holds its ids).
        """
        cdef int32_t* order = <int32_t*>_alloc(self._n, sizeof(int32_t))
        cdef Py_ssize_t length, k
        try:
            length = self._kahn(order)
            if length < self._n:
                raise CycleError("nodes are in a cycle", self.find_cycle())
            return [order[k] for k in range(length)]
        finally:
            PyMem_Free(order)

    def levels(self):
        """Per node, the number of nodes on the longest path from a source to it.

        Sources have level 1.  Meaningful on acyclic graphs: on a graph with a
        cycle, the values on and behind the cycle are unspecified.
        """
        cdef Py_ssize_t n = self._n, length, k, e
        cdef int32_t s, d, nxt
        cdef int32_t* order = <int32_t*>_alloc(n, sizeof(int32_t))
        cdef int32_t* level = NULL
        try:
            level = <int32_t*>_alloc(n, sizeof(int32_t))
            memset(level, 0, n * sizeof(int32_t))
            length = self._kahn(order)
            for k in range(length):
                s = order[k]
                if level[s] == 0:
                    level[s] = 1
                nxt = level[s] + 1
                for e in range(self._start[s], self._start[s + 1]):
                    d = self._succ[e]
                    if level[d] < nxt:
                        level[d] = nxt
            return [level[k] for k in range(n)]
        finally:
            PyMem_Free(order)
            PyMem_Free(level)

    cdef int _critical(self, uint32_t* cp) except -1:
        cdef Py_ssize_t n = self._n, length, k, e
        cdef int32_t s
        cdef uint32_t best, c
        cdef int32_t* order = <int32_t*>_alloc(n, sizeof(int32_t))
        memset(cp, 0, n * sizeof(uint32_t))
        length = self._kahn(order)
        for k in range(length - 1, -1, -1):
            s = order[k]
            best = 0
            for e in range(self._start[s], self._start[s + 1]):
                c = cp[self._succ[e]]
                if c > best:
                    best = c
            cp[s] = best + 1
        PyMem_Free(order)
        return 0

    def critical_path(self):
        """Per node, the number of nodes on the longest path from it to a sink.

        Sinks have 1.  Meaningful on acyclic graphs: on a graph with a cycle,
        the values on and before the cycle are unspecified.
        """
        cdef uint32_t* cp = <uint32_t*>_alloc(self._n, sizeof(uint32_t))
        cdef Py_ssize_t k
        try:
            self._critical(cp)
            return [cp[k] for k in range(self._n)]
        finally:
            PyMem_Free(cp)

    def ancestors(self, ids):
        """The given nodes and everything they depend on, in id order."""
        self._preds()
        return self._closure(ids, self._pstart, self._pred)

    def descendants(self, ids):
        """The given nodes and everything that depends on them, in id order."""
        self._compact()
        return self._closure(ids, self._start, self._succ)

    cdef list _closure(self, ids, const int32_t* start, const int32_t* adj):
        cdef Py_ssize_t n = self._n, head = 0, tail = 0, i, e
        cdef int32_t s, d
        cdef uint8_t* mark = <uint8_t*>_alloc(n, sizeof(uint8_t))
        cdef int32_t* work = NULL
        try:
            work = <int32_t*>_alloc(n, sizeof(int32_t))
            memset(mark, 0, n)
            for obj in ids:
                i = _check_id(obj, n)
                if not mark[i]:
                    mark[i] = 1
                    work[tail] = <int32_t>i
                    tail += 1
            while head < tail:
                s = work[head]
                head += 1
                for e in range(start[s], start[s + 1]):
                    d = adj[e]
                    if not mark[d]:
                        mark[d] = 1
                        work[tail] = d
                        tail += 1
            return [i for i in range(n) if mark[i]]
        finally:
            PyMem_Free(mark)
            PyMem_Free(work)

    # -- run configuration -------------------------------------------------

    def set_priorities(self, priorities):
        """Set user priorities (higher runs first), or ``None`` to clear them.

        User priorities override the critical path under the ``"critical"``
        policy; the ``"fifo"`` policy ignores them.  Takes effect at the next
        :meth:`reset`.

        Raises:
            ValueError: the length is not ``n`` or a value is outside int32.
        """
        cdef Py_ssize_t i, n = self._n
        cdef int64_t p
        cdef int32_t* prio
        if priorities is None:
            PyMem_Free(self._prio)
            self._prio = NULL
            self._stale = True  # the ranks of a run in progress stay as they are
            return
        values = [int(v) for v in priorities]
        if len(values) != n:
            raise ValueError(f"expected {n} priorities, got {len(values)}")
        for i in range(n):
            if not -2147483648 <= values[i] <= 2147483647:
                raise ValueError(
                    f"priority {values[i]} of node {i} is outside the 32-bit range")
        prio = <int32_t*>_alloc(n, sizeof(int32_t))
        for i in range(n):
            prio[i] = <int32_t>values[i]
        PyMem_Free(self._prio)
        self._prio = prio
        self._stale = True

    def set_triggers(self, triggers):
        """Set each node's trigger rule (``ALL_SUCCESS``, ``ALL_DONE``,
        ``NONE_FAILED``), or ``None`` for ``ALL_SUCCESS`` everywhere.

        Raises:
            ValueError: the length is not ``n`` or a value is not a rule.
        """
        cdef Py_ssize_t i, n = self._n
        cdef uint8_t* trig
        if triggers is None:
            PyMem_Free(self._trigger)
            self._trigger = NULL
            return
        values = list(triggers)
        if len(values) != n:
            raise ValueError(f"expected {n} triggers, got {len(values)}")
        for i in range(n):
            t = values[i]
            if type(t) is not int or t not in (_ALL_SUCCESS, _ALL_DONE, _NONE_FAILED):
                raise ValueError(f"unknown trigger rule {t!r} for node {i}")
        trig = <uint8_t*>_alloc(n, sizeof(uint8_t))
        for i in range(n):
            trig[i] = <uint8_t>values[i]
        PyMem_Free(self._trigger)
        self._trigger = trig

    cdef int _ranks(self) except -1:
        cdef Py_ssize_t n = self._n, i, lo, hi, mid, m
        cdef uint32_t* cp
        cdef uint64_t* keys
        cdef uint64_t* uniq
        cdef uint64_t key
        if self._rank != NULL and not self._stale:
            return 0
        self._stale = False
        cp = <uint32_t*>_alloc(n, sizeof(uint32_t))
        self._critical(cp)
        if self._prio != NULL:
            # Dense ranks of (user priority, critical path): fits 32 bits.
            keys = <uint64_t*>PyMem_Malloc((n if n > 0 else 1) * sizeof(uint64_t))
            uniq = <uint64_t*>PyMem_Malloc((n if n > 0 else 1) * sizeof(uint64_t))
            if keys == NULL or uniq == NULL:
                PyMem_Free(keys)
                PyMem_Free(uniq)
                PyMem_Free(cp)
                raise MemoryError()
            for i in range(n):
                keys[i] = ((<uint64_t>(<int64_t>self._prio[i] + 2147483648)) << 32) | cp[i]
            memcpy(uniq, keys, n * sizeof(uint64_t))
            qsort(uniq, n, sizeof(uint64_t), _cmp_u64)
            m = 0
            for i in range(n):
                if m == 0 or uniq[m - 1] != uniq[i]:
                    uniq[m] = uniq[i]
                    m += 1
            for i in range(n):
                key = keys[i]
                lo = 0
                hi = m - 1
                while lo < hi:
                    mid = (lo + hi) // 2
                    if uniq[mid] < key:
                        lo = mid + 1
                    else:
                        hi = mid
                cp[i] = <uint32_t>lo
            PyMem_Free(keys)
            PyMem_Free(uniq)
        PyMem_Free(self._rank)
        self._rank = cp
        return 0

    def reset(self, subset=None, object policy="critical", done=None):
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
        cdef int pol
        self._compact()
        if policy == "critical":
            pol = _CRITICAL
        elif policy == "fifo":
            pol = _FIFO
        else:
            raise ValueError(f"unknown policy {policy!r}: expected 'critical' or 'fifo'")
        cdef Py_ssize_t n = self._n, i, e, active
        cdef uint8_t* state = self._state
        cdef uint8_t* marks
        if subset is None:
            memset(state, _PENDING, n)
            active = n
        else:
            marks = <uint8_t*>_alloc(n, sizeof(uint8_t))
            try:
                memset(marks, _EXCLUDED, n)
                for obj in subset:
                    marks[_check_id(obj, n)] = _PENDING
                memcpy(state, marks, n)
            finally:
                PyMem_Free(marks)
            active = 0
            for i in range(n):
                if state[i] == _PENDING:
                    active += 1
        if self._left == NULL:
            self._left = <int32_t*>_alloc(n, sizeof(int32_t))
        cdef int32_t d
        if subset is None and self._indeg != NULL:
            # A warm kernel run on everything: counts are the in-degrees,
            # consumers the out-degrees; no pass over the edges.
            memcpy(self._count, self._indeg, n * sizeof(int32_t))
            for i in range(n):
                self._left[i] = self._start[i + 1] - self._start[i]
        else:
            memset(self._count, 0, n * sizeof(int32_t))
            memset(self._left, 0, n * sizeof(int32_t))
            for i in range(n):
                if state[i] == _PENDING:
                    for e in range(self._start[i], self._start[i + 1]):
                        d = self._succ[e]
                        self._count[d] += 1
                        if state[d] == _PENDING:
                            self._left[i] += 1
            if subset is None:
                # Reset a second time: keep the in-degrees for the next resets
                # (a sorter, reset once, never pays for them).
                if self._resets:
                    self._indeg = <int32_t*>_alloc(n, sizeof(int32_t))
                    memcpy(self._indeg, self._count, n * sizeof(int32_t))
        self._resets += 1
        cdef Py_ssize_t finished = 0, j
        cdef int32_t p
        if done is not None:
            self._preds()
            for obj in done:
                j = _check_id(obj, n)
                if state[j] != _PENDING:
                    raise ValueError(f"node {j} is not a pending node of this run")
                state[j] = _SUCCEEDED
                finished += 1
                for e in range(self._start[j], self._start[j + 1]):
                    self._count[self._succ[e]] -= 1
                for e in range(self._pstart[j], self._pstart[j + 1]):
                    p = self._pred[e]
                    if self._left[p] > 0:
                        self._left[p] -= 1
        self._policy = pol
        if pol == _FIFO:
            if self._queue == NULL:
                # (twice the nodes: a node ready again, a retry or a pool's
                # waiter, is queued again; _requeue keeps within this)
                self._queue = <int32_t*>_alloc(2 * n + 2, sizeof(int32_t))
        else:
            self._ranks()
            if self._heap == NULL:
                self._heap = <uint64_t*>_alloc(n + 1, sizeof(uint64_t))
        self._qhead = self._qtail = self._hsize = self._nstaged = 0
        self._active = active
        self._finished = finished
        self._running = self._ready = 0
        if self._pooled:
            self._reset_pools()
        for i in range(n):
            if state[i] == _PENDING and self._count[i] == 0:
                self._push(<int32_t>i)

    cdef inline void _push(self, int32_t i) noexcept:
        """Make pending node ``i`` ready.

        Under ``"critical"`` the node is staged behind the heap (one store);
        :meth:`_gather` sorts or heapifies the staged nodes when they are taken.
        """
        self._state[i] = _READY
        self._ready += 1
        if self._policy == _FIFO:
            self._queue[self._qtail] = i
            self._qtail += 1
        else:
            self._heap[self._hsize + self._nstaged] = (
                ((<uint64_t>self._rank[i]) << 32) | (<uint64_t>(_ID_MASK - <uint32_t>i)))
            self._nstaged += 1

    cdef inline void _sift_up(self, Py_ssize_t pos) noexcept:
        cdef uint64_t* heap = self._heap
        cdef uint64_t key = heap[pos]
        cdef Py_ssize_t parent
        while pos > 0:
            parent = (pos - 1) >> 1
            if heap[parent] >= key:
                break
            heap[pos] = heap[parent]
            pos = parent
        heap[pos] = key

    cdef inline int32_t _pop(self) noexcept:
        cdef uint64_t* heap = self._heap
        cdef uint64_t top = heap[0]
        cdef Py_ssize_t size = self._hsize - 1
        cdef uint64_t last = heap[size]
        cdef Py_ssize_t pos = 0, child
        self._hsize = size
        while True:
            child = 2 * pos + 1
            if child >= size:
                break
            if child + 1 < size and heap[child + 1] > heap[child]:
                child += 1
            if heap[child] <= last:
                break
            heap[pos] = heap[child]
            pos = child
        if size > 0:
            heap[pos] = last
        return <int32_t>(_ID_MASK - <uint32_t>(top & _ID_MASK))

    cdef inline int _gather(self, int32_t* out, Py_ssize_t k) except -1:
        """Take the best ``k`` ready nodes into ``out`` and mark them running."""
        cdef Py_ssize_t j, ns = self._nstaged
        cdef uint64_t* keys
        cdef int32_t i
        if self._policy == _FIFO:
            if out != self._queue + self._qhead:
                memcpy(out, self._queue + self._qhead, k * sizeof(int32_t))
            self._qhead += k
        elif self._hsize == 0 and k == ns:
            # Everything ready is taken: one sort instead of k heap pops.
            if self._tmp == NULL:
                self._tmp = <uint64_t*>_alloc(self._n, sizeof(uint64_t))
            keys = _sort_u64(self._heap, self._tmp, k)
            for j in range(k):
                out[j] = <int32_t>(_ID_MASK - <uint32_t>(keys[k - 1 - j] & _ID_MASK))
            self._nstaged = 0
        else:
            for j in range(ns):
                self._hsize += 1
                self._sift_up(self._hsize - 1)
            self._nstaged = 0
            for j in range(k):
                out[j] = self._pop()
        for j in range(k):
            self._state[out[j]] = _RUNNING
        self._ready -= k
        self._running += k
        return 0

    def grow(self, m, src=(), dst=(), triggers=None, uses=None, apart=()):
        """Add nodes ``n .. n+m-1`` in the middle of a run, keeping every state
        and counter (see the Python twin for the rules).

        Returns:
            the new nodes skipped at once, in id order.
        """
        cdef Py_ssize_t mm = m, n = self._n, total, i, j, e, ne, pos
        cdef int32_t s_, d_
        if mm < 0 or n + mm > _MAX_NODES:
            raise ValueError(f"a kernel holds 0 to {_MAX_NODES} nodes, not {n + mm}")
        srcs = [int(x) for x in src]
        dsts = [int(x) for x in dst]
        if len(srcs) != len(dsts):
            raise ValueError(f"src and dst differ in length ({len(srcs)} != {len(dsts)})")
        total = n + mm
        for s, d in zip(srcs, dsts):
            _check_id(s, total)
            _check_id(d, total)
            if d < n:
                raise ValueError(f"node {d} exists: only new nodes (from {n}) may gain predecessors")
        trig = None
        if triggers is not None:
            trig = list(triggers)
            if len(trig) != mm:
                raise ValueError(f"expected {mm} triggers, got {len(trig)}")
            for t in trig:
                if type(t) is not int or t not in (_ALL_SUCCESS, _ALL_DONE, _NONE_FAILED):
                    raise ValueError(f"unknown trigger rule {t!r}")
        held = self._grown_uses(n, mm, uses, apart)
        inner = [[] for _ in range(mm)]
        preds = [[] for _ in range(mm)]
        indeg = [0] * mm
        for s, d in zip(srcs, dsts):
            preds[d - n].append(s)
            if s >= n:
                inner[s - n].append(d - n)
                indeg[d - n] += 1
        order = [j for j in range(mm) if indeg[j] == 0]
        pos = 0
        while pos < len(order):
            for d in inner[order[pos]]:
                indeg[d] -= 1
                if indeg[d] == 0:
                    order.append(d)
            pos += 1
        if len(order) < mm:
            sub = Kernel(mm, [s - n for s, d in zip(srcs, dsts) if s >= n],
                         [d - n for s, d in zip(srcs, dsts) if s >= n])
            cycle = sub.find_cycle() or []
            raise CycleError("nodes are in a cycle", [c + n for c in cycle])
        # The graph: the successors existing nodes gain kept in chains beside
        # the CSR arrays (merged by _compact when a query or a new run needs
        # them whole); the new nodes' predecessors appended.
        self._preds()
        cdef Py_ssize_t np = self._pstart[n], add = len(srcs)
        cdef int32_t xe
        self._start = <int32_t*>_grown(self._start, n + 1, total + 1, sizeof(int32_t))
        for i in range(n + 1, total + 1):
            self._start[i] = self._start[n]
        self._pstart = <int32_t*>_grown(self._pstart, n + 1, total + 1, sizeof(int32_t))
        self._pred = <int32_t*>_grown(self._pred, np, np + add, sizeof(int32_t))
        for j in range(mm):
            for s in preds[j]:
                self._pred[np] = <int32_t>s
                np += 1
            self._pstart[n + j + 1] = <int32_t>np
        self._xhead = <int32_t*>_grown(self._xhead, n if self._xhead != NULL else 0, total, sizeof(int32_t))
        self._xtail = <int32_t*>_grown(self._xtail, n if self._xtail != NULL else 0, total, sizeof(int32_t))
        if self._xn == 0:
            memset(self._xhead, 0xFF, total * sizeof(int32_t))  # -1: no chain
        else:
            memset(self._xhead + n, 0xFF, mm * sizeof(int32_t))
        if self._xn + add > self._xcap:
            self._xcap = max(self._xn + add, 2 * self._xcap, 16)
            self._xnext = <int32_t*>_grown(self._xnext, self._xn, self._xcap, sizeof(int32_t))
            self._xdst = <int32_t*>_grown(self._xdst, self._xn, self._xcap, sizeof(int32_t))
        for s, d in zip(srcs, dsts):
            xe = <int32_t>self._xn
            self._xn += 1
            self._xdst[xe] = <int32_t>d
            self._xnext[xe] = -1
            if self._xhead[<Py_ssize_t>s] < 0:
                self._xhead[<Py_ssize_t>s] = xe
            else:
                self._xnext[self._xtail[<Py_ssize_t>s]] = xe
            self._xtail[<Py_ssize_t>s] = xe
        PyMem_Free(self._indeg)
        PyMem_Free(self._tmp)
        PyMem_Free(self._out)
        PyMem_Free(self._work)
        self._indeg = self._work = self._out = NULL
        self._tmp = NULL
        if self._ids is not None:
            self._ids.extend(range(n, total))
        self._n = total
        if self._pooled:
            self._grow_pools(mm, held)
        self._state = <uint8_t*>_grown(self._state, n, total, sizeof(uint8_t))
        self._count = <int32_t*>_grown(self._count, n, total, sizeof(int32_t))
        self._left = <int32_t*>_grown(self._left, n if self._left != NULL else 0, total, sizeof(int32_t))
        if self._queue != NULL:  # (twice the nodes, as reset() sizes it: a node may be queued again)
            self._queue = <int32_t*>_grown(self._queue, 2 * n + 2, 2 * total + 2, sizeof(int32_t))
        if self._heap != NULL:
            self._heap = <uint64_t*>_grown(self._heap, n + 1, total + 1, sizeof(uint64_t))
        if self._policy == _FIFO and self._queue == NULL:  # (a kernel that never ran: reset() sizes these)
            self._queue = <int32_t*>_grown(NULL, 0, 2 * total + 2, sizeof(int32_t))
        if self._policy == _CRITICAL and self._heap == NULL:
            self._heap = <uint64_t*>_grown(NULL, 0, total + 1, sizeof(uint64_t))
        if trig is not None and any(trig) and self._trigger == NULL:
            self._trigger = <uint8_t*>_grown(NULL, 0, n, sizeof(uint8_t))
        if self._trigger != NULL:
            self._trigger = <uint8_t*>_grown(self._trigger, n, total, sizeof(uint8_t))
            if trig is not None:
                for j in range(mm):
                    self._trigger[n + j] = <uint8_t>trig[j]
        if self._prio != NULL:
            self._prio = <int32_t*>_grown(self._prio, n, total, sizeof(int32_t))
        cp = [0] * mm
        for j in reversed(order):
            cp[j] = 1 + max([cp[d] for d in inner[j]], default=0)
        if self._rank != NULL:
            self._rank = <uint32_t*>_grown(self._rank, n, total, sizeof(uint32_t))
            for j in range(mm):
                self._rank[n + j] = <uint32_t>cp[j]
        self._stale = True  # a new run ranks the whole graph again
        cdef uint8_t* state = self._state
        cdef int rule, st
        self._active += mm
        skipped = []
        for j in order:
            d_ = <int32_t>(n + j)
            rule = _ALL_SUCCESS if trig is None else trig[j]
            waits = 0
            dead = False
            state[d_] = _PENDING
            for s in preds[j]:
                st = state[<Py_ssize_t>s]
                if st == _PENDING or st == _READY or st == _RUNNING:
                    waits += 1
                elif st == _SUCCEEDED or st == _EXCLUDED or rule == _ALL_DONE:
                    continue
                elif st == _SKIPPED and rule == _NONE_FAILED:
                    continue
                else:
                    dead = True
            if dead:
                state[d_] = _SKIPPED
                self._finished += 1
                skipped.append(d_)
                continue
            for s in preds[j]:
                if state[<Py_ssize_t>s] != _EXCLUDED:
                    self._left[<Py_ssize_t>s] += 1
            self._count[d_] = <int32_t>waits
            if waits == 0:
                if self._policy == _CRITICAL and self._rank == NULL:
                    self._ranks()
                self._push(d_)
        skipped.sort()
        return skipped

    # -- a run -------------------------------------------------------------

    @property
    def ready(self):
        """Nodes ready and not yet taken."""
        return self._ready

    @property
    def running(self):
        """Nodes taken and not yet finished."""
        return self._running

    @property
    def remaining(self):
        """Nodes of the current run not yet finished (ready and running included)."""
        return self._active - self._finished

    @property
    def finished(self):
        """Nodes of the current run that finished (any outcome)."""
        return self._finished

    def state(self, Py_ssize_t i):
        """The state of node ``i`` (one of the state constants)."""
        return self._state[_check_id(i, self._n)]

    def states(self):
        """Every node's state, one byte per node id."""
        return (<char*>self._state)[:self._n]

    def take(self, limit=-1):
        """Take up to ``limit`` ready nodes (all when negative), best first.

        The nodes become ``RUNNING``.  Returns ``[]`` when nothing is ready
        but some node is running.

        Raises:
            RuntimeError: nodes remain, but none is ready or running: the
                run could never finish (the graph has a cycle).
        """
        if self._ready == 0 and self._running == 0 and self._active != self._finished \
                and not self._tokens_awaited():
            raise RuntimeError(
                f"scheduler stalled: {self._active - self._finished} nodes remain but none "
                "is ready or running (the graph has a cycle, or a node waits for a pool nobody holds)")
        cdef Py_ssize_t lim = PyNumber_AsSsize_t(limit, NULL)  # clamps huge values
        cdef Py_ssize_t k = self._ready if lim < 0 or lim > self._ready else lim
        cdef Py_ssize_t j
        cdef PyObject* obj
        if self._ids is None:
            # One int object per id, made once and reused by every run.
            self._ids = list(range(self._n))
        if self._out == NULL:
            self._out = <int32_t*>_alloc(self._n, sizeof(int32_t))
        if self._pooled:
            k = self._take_pooled(self._out, lim)
        else:
            self._gather(self._out, k)
        result = PyList_New(k)
        for j in range(k):
            obj = PyList_GET_ITEM_BORROWED(self._ids, self._out[j])
            Py_INCREF(<object>obj)
            PyList_SET_ITEM(result, j, <object>obj)
        return result

    cdef inline int _check_running(self, Py_ssize_t i) except -1:
        _check_id(i, self._n)
        cdef uint8_t st = self._state[i]
        if st != _RUNNING:
            if st == _SUCCEEDED:
                raise ValueError(f"node {i} was already marked done")
            if st == _PENDING or st == _READY:
                raise ValueError(f"node {i} was not passed out (still not ready)")
            raise ValueError(f"node {i} is {STATE_NAMES[st]}, not running")
        return 0

    def done(self, Py_ssize_t i):
        """Mark running node ``i`` succeeded; return how many nodes became ready.

        Raises:
            ValueError: ``i`` is not running (named in the message).
        """
        self._check_running(i)
        cdef Py_ssize_t became = self._done(<int32_t>i)
        if self._pooled:
            became += self._give_back(i)
        return became

    def done_many(self, ids):
        """Mark running nodes succeeded, in order; return how many became ready.

        Stops at the first node that is not running, with the nodes before it
        marked (as :meth:`graphlib.TopologicalSorter.done` does).
        """
        cdef Py_ssize_t became = 0, j, size, i
        seq = PySequence_Fast(ids, "ids must be iterable")
        size = PySequence_Fast_GET_SIZE(seq)
        for j in range(size):
            i = <object>PySequence_Fast_GET_ITEM_BORROWED(seq, j)
            self._check_running(i)
            became += self._done(<int32_t>i)
            if self._pooled:
                became += self._give_back(i)
        return became

    cdef inline Py_ssize_t _done(self, int32_t i) noexcept:
        """Mark node ``i`` succeeded and release its successors.

        Branch-free inner loops: whether a successor became ready is
        unpredictable, so it is added to the ready set unconditionally and
        the set's length grows only when it did.
        """
        cdef Py_ssize_t e, stop = self._start[i + 1], became = 0
        cdef int32_t d, c
        cdef int flag
        cdef int32_t* count = self._count
        cdef int32_t* succ = self._succ
        cdef uint8_t* state = self._state
        cdef int32_t* queue
        cdef uint64_t* staged
        cdef uint32_t* rank
        state[i] = _SUCCEEDED
        self._running -= 1
        self._finished += 1
        if self._policy == _FIFO:
            queue = self._queue + self._qtail
            for e in range(self._start[i], stop):
                d = succ[e]
                c = count[d] - 1
                count[d] = c
                flag = (c == 0) & (state[d] == _PENDING)
                queue[became] = d
                state[d] += flag  # _PENDING + 1 == _READY
                became += flag
            self._qtail += became
        else:
            staged = self._heap + self._hsize + self._nstaged
            rank = self._rank
            for e in range(self._start[i], stop):
                d = succ[e]
                c = count[d] - 1
                count[d] = c
                flag = (c == 0) & (state[d] == _PENDING)
                staged[became] = ((<uint64_t>rank[d]) << 32) | (<uint64_t>(_ID_MASK - <uint32_t>d))
                state[d] += flag
                became += flag
            self._nstaged += became
        self._ready += became
        if self._xhead != NULL and self._xhead[i] >= 0:  # successors it gained by growing
            became += self._done_extra(i)
        return became

    cdef Py_ssize_t _done_extra(self, int32_t i) noexcept:
        """:meth:`_done`'s part for the successors node ``i`` gained by growing."""
        cdef Py_ssize_t before = self._ready
        cdef int32_t d
        cdef int32_t x = self._xhead[i]
        while x >= 0:
            d = self._xdst[x]
            self._count[d] -= 1
            if self._count[d] == 0 and self._state[d] == _PENDING:
                self._push(d)
            x = self._xnext[x]
        return self._ready - before

    cdef int _done_noting(self, int32_t i, dict objs, dict handed) except -1:
        """``_done(i)`` that also notes in ``handed[d]`` the object ``objs`` holds
        for the edge (CSR position) that released ``d``: the sorter's need."""
        cdef Py_ssize_t e, stop = self._start[i + 1]
        cdef int32_t d
        self._state[i] = _SUCCEEDED
        self._running -= 1
        self._finished += 1
        for e in range(self._start[i], stop):
            d = self._succ[e]
            self._count[d] -= 1
            if self._count[d] == 0 and self._state[d] == _PENDING:
                self._push(d)
                obj = objs.get(e)
                if obj is not None:
                    handed[d] = obj
        return 0

    def fail(self, Py_ssize_t i):
        """Mark running node ``i`` failed; return the nodes skipped because of it.

        Each successor follows its trigger rule: ``ALL_SUCCESS`` and
        ``NONE_FAILED`` successors are skipped, and so on down the graph;
        ``ALL_DONE`` successors count the failure as finished.
        """
        self._check_running(i)
        return self._finish_bad(<int32_t>i, _FAILED)

    def skip(self, Py_ssize_t i):
        """Mark running node ``i`` skipped; return the nodes skipped because of it.

        ``ALL_SUCCESS`` successors are skipped too; ``NONE_FAILED`` and
        ``ALL_DONE`` successors count the skip as finished.
        """
        self._check_running(i)
        return self._finish_bad(<int32_t>i, _SKIPPED)

    cdef list _finish_bad(self, int32_t i, uint8_t outcome):
        cdef Py_ssize_t head = 0, tail = 0, e
        cdef int32_t s, d, x
        cdef uint8_t how, rule
        cdef uint8_t* state = self._state
        cdef int32_t* work
        if self._work == NULL:
            self._work = <int32_t*>_alloc(self._n, sizeof(int32_t))
        work = self._work
        state[i] = outcome
        self._running -= 1
        self._finished += 1
        if self._pooled:
            self._give_back(i)
        work[tail] = i
        tail += 1
        while head < tail:
            s = work[head]
            head += 1
            how = state[s]
            x = -1 if self._xhead == NULL else self._xhead[s]  # then the successors it gained by growing
            e = self._start[s]
            while True:
                if e < self._start[s + 1]:
                    d = self._succ[e]
                    e += 1
                elif x >= 0:
                    d = self._xdst[x]
                    x = self._xnext[x]
                else:
                    break
                if state[d] != _PENDING:
                    continue
                rule = _ALL_SUCCESS if self._trigger == NULL else self._trigger[d]
                if rule == _ALL_DONE or (rule == _NONE_FAILED and how == _SKIPPED):
                    self._count[d] -= 1
                    if self._count[d] == 0:
                        self._push(d)
                else:
                    state[d] = _SKIPPED
                    self._finished += 1
                    work[tail] = d
                    tail += 1
        return [work[e] for e in range(1, tail)]

    def release(self, Py_ssize_t i):
        """Count node ``i`` as finished for each of its predecessors' consumers.

        Each active node starts a run with the number of its active
        successors; this takes one off each predecessor of ``i`` and returns
        those that reached zero: nothing in the run needs their output any
        more.  Call it once per finished node, whatever its outcome.
        """
        _check_id(i, self._n)
        self._preds()
        cdef Py_ssize_t e
        cdef int32_t p
        out = []
        for e in range(self._pstart[i], self._pstart[i + 1]):
            p = self._pred[e]
            if self._left[p] > 0:
                self._left[p] -= 1
                if self._left[p] == 0:
                    out.append(p)
        return out

    # -- pools and rates -----------------------------------------------------
    # (the rules: ``_sched_py.py``; the pools' bookkeeping is kept in Python
    # lists here too: a flow without pools pays one flag check, one with
    # pools a few list operations per step)

    cdef object _grown_uses(self, Py_ssize_t n, Py_ssize_t m, object uses, object apart):
        """:meth:`grow`'s ``uses`` and ``apart`` checked (nothing changed):
        per new node its pools and units, and the new nodes' apart flags."""
        cdef Py_ssize_t j
        if uses is None and not apart:
            return None
        psize = self._psize if self._pooled else []
        checked = []
        if uses is not None:
            if len(uses) != m:
                raise ValueError(f"uses needs one entry per new node ({m}), not {len(uses)}")
            for j, pairs in enumerate(uses):
                ps = []
                us = []
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

    cdef int _grow_pools(self, Py_ssize_t m, object held) except -1:
        """:meth:`grow`: the new nodes' uses (none unless given) and flags."""
        cdef list ustart = self._ustart
        if held is None or not held[0]:
            ustart.extend([ustart[len(ustart) - 1]] * m)  # (wraparound is off: no [-1])
        else:
            for ps, us in held[0]:
                self._upool.extend(ps)
                self._uunits.extend(us)
                ustart.append(len(self._upool))
        self._apart.extend(bytes(m) if held is None else held[1])
        self._held.extend(bytes(m))
        return 0

    def set_pools(self, sizes, uses=(), spent=(), apart=(), clock=None):
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
        cdef Py_ssize_t n = self._n, i, np
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
        np = len(psize)
        ustart = [0] * (n + 1)
        upool = []
        uunits = []
        seen = {}  # id(pairs) -> checked (nodes share them)
        for i, pairs in enumerate(uses):
            checked = seen.get(id(pairs))
            if checked is None:
                checked = seen[id(pairs)] = ([], [])
                for p, u in pairs:
                    p = _check_id(operator.index(p), np)
                    u = operator.index(u)
                    if not 0 < u <= psize[p]:
                        raise ValueError(f"node {i} uses {u} units of pool {p}, which holds {psize[p]}")
                    checked[0].append(p)
                    checked[1].append(u)
            upool.extend(checked[0])
            uunits.extend(checked[1])
            ustart[i + 1] = len(upool)
        spent_flags = bytearray(np)
        for p in spent:
            spent_flags[_check_id(operator.index(p), np)] = 1
        apart_flags = bytearray(n)
        for i in apart:
            apart_flags[_check_id(operator.index(i), n)] = 1
        self._psize, self._pspent = psize, spent_flags
        self._ustart, self._upool, self._uunits = ustart, upool, uunits
        self._apart = apart_flags
        self._pooled = True
        self._reset_pools()

    cdef int _reset_pools(self) except -1:
        self._pfree = list(self._psize)
        self._pwait = [[] for _ in self._psize]
        self._held = bytearray(self._n)
        self._waiting = 0
        self._seq = 0
        self._parked_at = {}
        self._waited = {}
        return 0

    @property
    def waiting(self):
        """Ready nodes waiting for room in a pool (not counted in :attr:`ready`)."""
        return self._waiting

    def waited(self, Py_ssize_t i):
        """Seconds node ``i`` waited aside (for room in a pool or a token)
        before it was last taken; ``0.0`` when it did not, or no clock was given."""
        _check_id(i, self._n)
        return self._waited.get(i, 0.0) if self._pooled else 0.0

    def room(self, p):
        """Units of pool ``p`` free now."""
        return self._pfree[_check_id(operator.index(p), len(self._psize))]

    def fits(self, Py_ssize_t i):
        """Whether every pool node ``i`` uses has room for it now."""
        _check_id(i, self._n)
        return not self._pooled or self._blocker(i) < 0

    cdef Py_ssize_t _blocker(self, Py_ssize_t i) except -2:
        cdef Py_ssize_t e, p
        cdef list free = self._pfree, upool = self._upool, uunits = self._uunits
        for e in range(<Py_ssize_t>self._ustart[i], <Py_ssize_t>self._ustart[i + 1]):
            p = upool[e]
            if <Py_ssize_t>free[p] < <Py_ssize_t>uunits[e]:
                return p
        return -1

    cdef int _hold(self, Py_ssize_t i) except -1:
        cdef Py_ssize_t e, p
        cdef list free = self._pfree, upool = self._upool, uunits = self._uunits
        for e in range(<Py_ssize_t>self._ustart[i], <Py_ssize_t>self._ustart[i + 1]):
            p = upool[e]
            free[p] = <Py_ssize_t>free[p] - <Py_ssize_t>uunits[e]
        return 0

    cdef Py_ssize_t _unhold(self, Py_ssize_t i) except -1:
        cdef Py_ssize_t e, p, back = 0
        cdef list free = self._pfree, upool = self._upool, uunits = self._uunits
        cdef bytearray spent = self._pspent
        for e in range(<Py_ssize_t>self._ustart[i], <Py_ssize_t>self._ustart[i + 1]):
            p = upool[e]
            if not spent[p]:
                free[p] = <Py_ssize_t>free[p] + <Py_ssize_t>uunits[e]
                if self._pwait[p]:
                    back += self._readmit(p)
        return back

    cdef Py_ssize_t _give_back(self, Py_ssize_t i) except -1:
        if not self._held[i]:
            return 0
        self._held[i] = 0
        return self._unhold(i)

    cdef int _park(self, int32_t i, Py_ssize_t p) except -1:
        if self._policy == _FIFO:
            self._seq += 1
            key = (self._seq << 32) | i
        else:
            key = -(((<uint64_t>self._rank[i]) << 32) | (<uint64_t>(_ID_MASK - <uint32_t>i)))
        heapq.heappush(self._pwait[p], key)
        self._waiting += 1
        if self._clock is not None and i not in self._parked_at:
            self._parked_at[i] = self._clock()
        return 0

    cdef int _requeue(self) except -1:
        """Make room at the FIFO queue's end for a node that is ready again."""
        cdef Py_ssize_t size
        if self._policy == _FIFO and self._qtail >= self._n:
            size = self._qtail - self._qhead
            memmove(self._queue, self._queue + self._qhead, size * sizeof(int32_t))
            self._qhead = 0
            self._qtail = size
        return 0

    cdef Py_ssize_t _readmit(self, Py_ssize_t p) except -1:
        cdef list wait = self._pwait[p]
        cdef Py_ssize_t budget = self._pfree[p], moved = 0, need, e, i
        cdef bint fifo = self._policy == _FIFO
        while wait and budget > 0:
            key = wait[0]
            if fifo:
                i = key & _ID_MASK
            else:
                i = _ID_MASK - ((-key) & _ID_MASK)
            need = 0
            for e in range(<Py_ssize_t>self._ustart[i], <Py_ssize_t>self._ustart[i + 1]):
                if <Py_ssize_t>self._upool[e] == p:
                    need = self._uunits[e]
            if need > budget:
                break
            heapq.heappop(wait)
            budget -= need
            self._waiting -= 1
            self._requeue()
            self._push(<int32_t>i)
            moved += 1
        return moved

    cdef Py_ssize_t _take_pooled(self, int32_t* out, Py_ssize_t limit) except -1:
        """Take up to ``limit`` (all: negative) ready nodes that fit into ``out``; how many."""
        cdef Py_ssize_t got = 0, j, p
        cdef int32_t i
        cdef bytearray apart = self._apart
        if self._policy != _FIFO:
            for j in range(self._nstaged):
                self._hsize += 1
                self._sift_up(self._hsize - 1)
            self._nstaged = 0
        while self._ready > 0 and (limit < 0 or got < limit):
            if self._policy == _FIFO:
                i = self._queue[self._qhead]
                self._qhead += 1
            else:
                i = self._pop()
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
            self._state[i] = _RUNNING
            self._running += 1
            out[got] = i
            got += 1
        return got

    cdef int _note_wait(self, Py_ssize_t i) except -1:
        since = self._parked_at.pop(i, None)
        if since is not None:
            self._waited[i] = self._clock() - since
        elif self._waited:
            self._waited.pop(i, None)
        return 0

    cdef bint _tokens_awaited(self) except -1:
        cdef Py_ssize_t p
        if not self._pooled:
            return False
        for p in range(len(self._psize)):
            if self._pspent[p] and self._pwait[p]:
                return True
        return False

    def acquire(self, Py_ssize_t i):
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

    def restore(self, Py_ssize_t i):
        """Give back units of node ``i`` that :meth:`acquire` held; return how
        many waiting nodes re-entered the ready set."""
        _check_id(i, self._n)
        return self._unhold(i) if self._pooled else 0

    def give_back(self, Py_ssize_t i):
        """Running node ``i`` gives back the units :meth:`take` held for it
        (it waits to be tried again); return how many waiting nodes re-entered
        the ready set.  Nothing happens when it holds none."""
        self._check_running(i)
        return self._give_back(i) if self._pooled else 0

    def again(self, Py_ssize_t i):
        """Put running node ``i`` back into the ready set (a retry, to be taken
        again under its pools), giving back what it holds; return how many
        nodes became ready, itself included."""
        self._check_running(i)
        cdef Py_ssize_t back = self._give_back(i) if self._pooled else 0
        self._running -= 1
        self._requeue()
        self._push(<int32_t>i)
        return back + 1

    def refill(self, p, units):
        """Add ``units`` to spent pool ``p`` (a token bucket), up to its size;
        return how many waiting nodes re-entered the ready set."""
        cdef Py_ssize_t q = _check_id(operator.index(p), len(self._psize))
        cdef Py_ssize_t u = operator.index(units)
        if u < 0:
            raise ValueError("a refill cannot be negative")
        self._pfree[q] = min(<Py_ssize_t>self._psize[q], <Py_ssize_t>self._pfree[q] + u)
        return self._readmit(q) if self._pwait[q] else 0

    def cancel(self):
        """Cancel every pending and ready node; return them in id order.

        Running nodes are left running: finish them with :meth:`done`,
        :meth:`fail` or :meth:`skip` as usual.
        """
        cdef Py_ssize_t i, cnt = 0
        cdef uint8_t* state = self._state
        result = []
        for i in range(self._n):
            if state[i] == _PENDING or state[i] == _READY:
                state[i] = _CANCELLED
                result.append(i)
                cnt += 1
        self._finished += cnt
        self._ready = 0
        self._qhead = self._qtail = self._hsize = self._nstaged = 0
        if self._pooled:
            self._pwait = [[] for _ in self._psize]
            self._waiting = 0
        return result


cdef int _grow(int32_t** src, int32_t** dst, Py_ssize_t* cap, Py_ssize_t need) except -1:
    """Make room for ``need`` edges in the two edge arrays."""
    cdef void* p
    if need <= cap[0]:
        return 0
    if need > _MAX_NODES:
        raise ValueError(f"a kernel holds at most {_MAX_NODES} edges")
    cap[0] = min(2 * need, _MAX_NODES)
    p = PyMem_Realloc(src[0], cap[0] * sizeof(int32_t))
    if p == NULL:
        raise MemoryError()
    src[0] = <int32_t*>p
    p = PyMem_Realloc(dst[0], cap[0] * sizeof(int32_t))
    if p == NULL:
        raise MemoryError()
    dst[0] = <int32_t*>p
    return 0


def link(dict index, list deps, list known=None):
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
    cdef Py_ssize_t n = PyList_GET_SIZE(deps), i, k, m, ne = 0, looked = 0
    cdef Py_ssize_t cap = n + 16
    if n > _MAX_NODES:
        raise ValueError(f"a kernel holds 0 to {_MAX_NODES} nodes, not {n}")
    if known is not None and PyList_GET_SIZE(known) != n:
        raise ValueError(f"known has {PyList_GET_SIZE(known)} entries for {n} nodes")
    cdef int32_t* src = <int32_t*>_alloc(cap, sizeof(int32_t))
    cdef int32_t* dst = NULL
    cdef PyObject* found
    cdef object d, t
    cdef list ids = PyList_New(n)
    cdef Kernel kernel
    empty = ()
    try:
        dst = <int32_t*>_alloc(cap, sizeof(int32_t))
        for i in range(n):
            d = <object>PyList_GET_ITEM_BORROWED(deps, i)
            if type(d) is not tuple:
                raise TypeError(f"deps[{i}] must be a tuple of names, not {d!r}")
            m = PyTuple_GET_SIZE(d)
            _grow(&src, &dst, &cap, ne + m)
            t = None if known is None else <object>PyList_GET_ITEM_BORROWED(known, i)
            if t is not None:
                if type(t) is not tuple or PyTuple_GET_SIZE(t) != m:
                    raise TypeError(f"known[{i}] must be a tuple of {m} ids, not {t!r}")
                for k in range(m):
                    src[ne] = <int32_t>_check_id(<object>PyTuple_GET_ITEM_BORROWED(t, k), n)
                    dst[ne] = <int32_t>i
                    ne += 1
            elif m == 0:
                t = empty
            else:
                looked += 1
                t = PyTuple_New(m)
                for k in range(m):
                    found = PyDict_GetItemWithError(index, <object>PyTuple_GET_ITEM_BORROWED(d, k))
                    if found == NULL:
                        raise KeyError(<object>PyTuple_GET_ITEM_BORROWED(d, k))
                    src[ne] = <int32_t>_check_id(<object>found, n)
                    dst[ne] = <int32_t>i
                    ne += 1
                    Py_INCREF(<object>found)
                    PyTuple_SET_ITEM(t, k, <object>found)
            Py_INCREF(t)
            PyList_SET_ITEM(ids, i, t)
        kernel = Kernel.__new__(Kernel)
        kernel._build(n, src, dst, ne)
    finally:
        PyMem_Free(src)
        PyMem_Free(dst)
    return (known if known is not None and looked == 0 else ids), kernel


def ids_of(dict index, tuple names):
    """The tuple of the ids of ``names`` in ``index`` when they are strings,
    each named once: ``None`` when the one name is not in ``index``,
    ``False`` when not so (a name that is not a string, one named twice,
    several and one not in ``index``)."""
    cdef Py_ssize_t m = PyTuple_GET_SIZE(names), j, a
    cdef Py_ssize_t seen[16]
    cdef PyObject* found
    cdef object name
    cdef object t = PyTuple_New(m)
    for j in range(m):
        name = <object>PyTuple_GET_ITEM_BORROWED(names, j)
        if not PyUnicode_CheckExact(name):
            return False
        found = PyDict_GetItemWithError(index, name)
        if found == NULL:
            return None if m == 1 else False
        Py_INCREF(<object>found)
        PyTuple_SET_ITEM(t, j, <object>found)
        if m <= 16:
            seen[j] = PyNumber_AsSsize_t(<object>found, NULL)
            for a in range(j):
                if seen[a] == seen[j]:
                    return False
    if m > 16 and len(set(t)) != m:
        return False
    return t


def name_tuples(list entries):
    """Each entry of ``entries`` (a list or tuple of strings) as a tuple (a
    tuple is kept as it is); ``None`` when one is anything else."""
    cdef Py_ssize_t n = PyList_GET_SIZE(entries), k, j, m
    cdef object e
    cdef list out = PyList_New(n)
    for k in range(n):
        e = <object>PyList_GET_ITEM_BORROWED(entries, k)
        if type(e) is list:
            e = tuple(<list>e)
        elif type(e) is not tuple:
            return None
        m = PyTuple_GET_SIZE(e)
        for j in range(m):
            if not PyUnicode_CheckExact(<object>PyTuple_GET_ITEM_BORROWED(e, j)):
                return None
        Py_INCREF(e)
        PyList_SET_ITEM(out, k, e)
    return out


def number(dict index, Py_ssize_t first, list names, list deps):
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
    cdef Py_ssize_t n = PyList_GET_SIZE(names), k, j, a, m
    cdef Py_ssize_t seen[16]
    cdef PyObject* found
    cdef object d, t, name, value
    cdef bint twice
    if PyList_GET_SIZE(deps) != n:
        raise ValueError(f"deps has {PyList_GET_SIZE(deps)} entries for {n} names")
    cdef list ids = PyList_New(n)
    cdef list again = []
    empty = ()
    for k in range(n):
        name = <object>PyList_GET_ITEM_BORROWED(names, k)
        value = first + k
        if PyDict_SetDefault(index, name, value) != <PyObject*>value:
            raise KeyError(name)
        d = <object>PyList_GET_ITEM_BORROWED(deps, k)
        if type(d) is not tuple:
            raise TypeError(f"deps[{k}] must be a tuple of names, not {d!r}")
        m = PyTuple_GET_SIZE(d)
        if m == 0:
            t = empty
        else:
            t = PyTuple_New(m)
            twice = False
            for j in range(m):
                found = PyDict_GetItemWithError(index, <object>PyTuple_GET_ITEM_BORROWED(d, j))
                if found == NULL:
                    t = None
                    twice = m > 1
                    break
                Py_INCREF(<object>found)
                PyTuple_SET_ITEM(t, j, <object>found)
                if 1 < m <= 16:
                    seen[j] = PyNumber_AsSsize_t(<object>found, NULL)
                    for a in range(j):
                        if seen[a] == seen[j]:
                            twice = True
            if t is not None and m > 16 and len(set(t)) != m:
                twice = True
            if twice:
                again.append(k)
        Py_INCREF(t)
        PyList_SET_ITEM(ids, k, t)
    return ids, again


def drive(Kernel k, list fns, list kwnames, list argdeps, list consts, list outputs,
          list attempts, list started, list finished, object clock, bytes flags,
          object lock=None, list idle=None, list current=None, object cancel=None,
          object on_done=None):
    """Run ready steps in the calling thread until none is ready.

    The inline hot loop of the runner, here because a task costs less than
    a trip out of the kernel per task would.  Step ``i`` is called with the
    outputs of ``argdeps[i]`` followed by ``consts[i]`` (one vectorcall, no
    dict), the last ``len(kwnames[i])`` of them under those keyword names and
    any before them by position; its output goes to
    ``outputs[i]``, its attempt count and clock readings to the other lists.
    After a success, predecessors whose consumers have all finished have
    their output dropped (set to ``None``) unless ``flags[p] & KEEP``; then
    the step is marked done in the kernel.

    Several threads may drive one kernel at once: kernel operations here run
    without releasing the GIL, so ``lock`` is accepted and not needed.  When
    ``idle[0] > 0`` (threads waiting for work) and a step made others ready,
    the loop returns ``(-1, None)`` so that the caller can wake them.
    ``current[0]`` is set to the id of the step being called (for
    ``microdag.context()``); once ``cancel.is_set()`` the loop returns
    ``None`` without starting another step.  ``on_done(i)``, when given, is
    called after step ``i`` returned and its output is in ``outputs[i]``
    (the runner records it in its store there); if it returns false, it has
    settled the step itself and the loop goes on without marking it done.

    Returns:
        ``None`` when no step is ready; ``(-1, None)`` as above; ``(i, None)`` when step ``i`` was
        taken but ``flags[i] & SLOW`` asks the caller to run it; ``(i, exc)``
        when step ``i`` raised ``exc`` (it is still running in the kernel:
        the caller decides between a retry, ``fail`` and ``skip``).
    """
    cdef int32_t i, p
    cdef Py_ssize_t j, m, nc, nk, e, became
    cdef const unsigned char* fl = flags
    cdef tuple deps, cst, names, vals
    cdef object obj
    cdef PyObject* item
    if PyBytes_GET_SIZE(flags) < k._n or len(fns) < k._n or len(outputs) < k._n \
            or len(attempts) < k._n or len(started) < k._n or len(finished) < k._n \
            or len(kwnames) < k._n or len(argdeps) < k._n or len(consts) < k._n:
        raise ValueError("drive() needs one entry per node in every list")
    k._preds()
    cdef Py_ssize_t n0 = k._n
    while k._ready > 0 and k._n == n0:
        if cancel is not None:
            if cancel.is_set():
                return None
            if k._ready == 0 or k._n != n0:  # another thread took it (or grew the kernel) meanwhile
                return None
        if k._pooled:
            if k._take_pooled(&i, 1) == 0:  # every ready step waits for room
                return None
        else:
            k._gather(&i, 1)
        if fl[i] & _SLOW:
            return (i, None)
        if current is not None:
            current[0] = i
        deps = <tuple?>PyList_GET_ITEM_BORROWED(argdeps, i)
        cst = <tuple?>PyList_GET_ITEM_BORROWED(consts, i)
        names = <tuple?>PyList_GET_ITEM_BORROWED(kwnames, i)
        m = PyTuple_GET_SIZE(deps)
        nc = PyTuple_GET_SIZE(cst)
        nk = PyTuple_GET_SIZE(names)
        if nk > m + nc:
            raise ValueError(f"step {i}: {nk} names for {m + nc} values")
        vals = PyTuple_New(m + nc)
        for j in range(m):
            item = PyList_GET_ITEM_BORROWED(outputs, _check_id(<object>PyTuple_GET_ITEM_BORROWED(deps, j), k._n))
            Py_INCREF(<object>item)
            PyTuple_SET_ITEM(vals, j, <object>item)
        for j in range(nc):
            item = PyTuple_GET_ITEM_BORROWED(cst, j)
            Py_INCREF(<object>item)
            PyTuple_SET_ITEM(vals, m + j, <object>item)
        attempts[i] = attempts[i] + 1
        started[i] = clock()
        try:
            obj = PyObject_Vectorcall(
                <object>PyList_GET_ITEM_BORROWED(fns, i), PySequence_Fast_ITEMS(vals), m + nc - nk,
                <PyObject*>names if nk else NULL)
        except BaseException as exc:
            finished[i] = clock()
            return (i, exc)
        finished[i] = clock()
        outputs[i] = obj
        obj = None
        vals = None
        if on_done is not None and not on_done(i):
            continue
        for e in range(k._pstart[i], k._pstart[i + 1]):
            p = k._pred[e]
            if k._left[p] > 0:
                k._left[p] -= 1
                if k._left[p] == 0 and not (fl[p] & _KEEP):
                    outputs[p] = None
        became = k._done(i)
        if k._pooled:
            became += k._give_back(i)
        if became and idle is not None and idle[0] > 0:
            return (-1, None)
    return None


def run_items(object fn, tuple kwnames, list values, Py_ssize_t pos, list units,
              list results, Py_ssize_t start, Py_ssize_t stop, list current=None,
              Py_ssize_t item_base=1):
    """Call ``fn`` once per unit of ``units[start:stop]``: the map hot loop.

    Each call gets the keyword names ``kwnames`` bound to ``values``, except
    that ``values[pos]`` is replaced by the unit; results go to ``results[j]``.
    ``current[1]`` is set to ``j * item_base`` (the item index) before each
    call.

    Returns:
        ``None`` when every call returned, or ``(j, exc)`` for the first unit
        that raised (the results before it are stored).
    """
    cdef Py_ssize_t n = len(values), j
    cdef PyObject** args
    cdef tuple vals
    cdef object unit, obj
    if len(kwnames) != n or not 0 <= pos < n:
        raise ValueError("run_items() needs one keyword name per value and pos among them")
    if not 0 <= start <= stop <= len(units) or len(results) < stop:
        raise ValueError("run_items() range is outside units or results")
    vals = tuple(values)
    args = <PyObject**>_alloc(n, sizeof(PyObject*))
    try:
        for j in range(n):
            args[j] = PyTuple_GET_ITEM_BORROWED(vals, j)
        for j in range(start, stop):
            unit = <object>PyList_GET_ITEM_BORROWED(units, j)
            args[pos] = <PyObject*>unit
            if current is not None:
                current[1] = j * item_base
            try:
                obj = PyObject_Vectorcall(fn, args, 0, <PyObject*>kwnames)
            except BaseException as exc:
                return (j, exc)
            results[j] = obj
        return None
    finally:
        PyMem_Free(args)


@cython.final
cdef class TopologicalSorter:
    """Drop-in replacement for :class:`graphlib.TopologicalSorter`.

    Same methods, same groups and order, same exceptions and messages, on the
    microdag kernel.  Nodes must be hashable.

    Nodes are interned in an open-addressing table of ``int32`` ids that keeps
    each node's hash beside it, so a node costs a list slot, a hash and about
    two table slots instead of a dict entry and an ``int`` object.
    """

    cdef list _nodes
    cdef Py_hash_t* _hashes
    cdef Py_ssize_t _hcap
    cdef int32_t* _table
    cdef Py_ssize_t _mask
    cdef int32_t* _esrc
    cdef int32_t* _edst
    cdef Py_ssize_t _ne, _ecap
    cdef Kernel _kernel
    # graphlib hands a node out as the object its releasing edge was added
    # with: edge -> that object (original index until prepare, then CSR
    # position), kept only where it could differ from the node's first object.
    cdef dict _objs
    cdef dict _handed

    def __cinit__(self):
        self._nodes = []
        self._hashes = NULL
        self._hcap = 0
        self._table = NULL
        self._mask = -1
        self._esrc = self._edst = NULL
        self._ne = self._ecap = 0
        self._kernel = None
        self._objs = {}
        self._handed = {}

    def __init__(self, graph=None):
        cdef Py_ssize_t i, first
        if graph is None:
            return
        if type(graph) is dict:
            for node, predecessors in (<dict>graph).items():
                i = self._intern(node)
                first = self._ne
                for pred in predecessors:
                    self._edge(self._intern(pred), i)
                self._note(node, i, first)
        else:
            for node, predecessors in graph.items():
                i = self._intern(node)
                first = self._ne
                for pred in predecessors:
                    self._edge(self._intern(pred), i)
                self._note(node, i, first)

    cdef inline int _note(self, object node, Py_ssize_t i, Py_ssize_t first) except -1:
        """Keep ``node`` for edges ``first ..`` if it could differ from node ``i``'s first object."""
        cdef PyObject* canonical = PyList_GET_ITEM_BORROWED(self._nodes, i)
        cdef Py_ssize_t e
        if canonical == <PyObject*>node or first == self._ne:
            return 0
        if type(node) is type(<object>canonical) and (type(node) is int or type(node) is str):
            return 0  # equal ints and strs differ only by id()
        for e in range(first, self._ne):
            self._objs[e] = node
        return 0

    def __dealloc__(self):
        PyMem_Free(self._hashes)
        PyMem_Free(self._table)
        PyMem_Free(self._esrc)
        PyMem_Free(self._edst)

    cdef inline Py_ssize_t _lookup(self, object node, Py_hash_t h, Py_ssize_t* slot) except -2:
        """Id of ``node`` or -1; ``slot`` gets where it would go."""
        cdef size_t perturb
        cdef Py_ssize_t i, j, mask
        cdef int r
        cdef PyObject* other
        while True:  # restarts when an __eq__ resized the table under us
            mask = self._mask
            if mask < 0:
                slot[0] = -1
                return -1
            perturb = <size_t>h
            i = <Py_ssize_t>(<size_t>h & <size_t>mask)
            while True:
                j = self._table[i]
                if j < 0:
                    slot[0] = i
                    return -1
                if self._hashes[j] == h:
                    other = PyList_GET_ITEM_BORROWED(self._nodes, j)
                    if other == <PyObject*>node:
                        return j
                    r = _same_int(other, node)
                    if r == 1:
                        return j
                    if r == 0:
                        r = PyObject_RichCompareBool(<object>other, node, Py_EQ)
                        if self._mask != mask:
                            break
                        if r:
                            return j
                perturb >>= 5
                i = <Py_ssize_t>((<size_t>i * 5 + perturb + 1) & <size_t>mask)

    cdef int _grow_table(self) except -1:
        cdef Py_ssize_t size = (self._mask + 1) * 2 if self._mask >= 0 else 8
        cdef Py_ssize_t n = PyList_GET_SIZE(self._nodes), j, i, mask = size - 1
        cdef size_t perturb
        cdef Py_hash_t h
        cdef int32_t* table = <int32_t*>_alloc(size, sizeof(int32_t))
        memset(table, 0xFF, size * sizeof(int32_t))
        for j in range(n):
            h = self._hashes[j]
            perturb = <size_t>h
            i = <Py_ssize_t>(<size_t>h & <size_t>mask)
            while table[i] >= 0:
                perturb >>= 5
                i = <Py_ssize_t>((<size_t>i * 5 + perturb + 1) & <size_t>mask)
            table[i] = <int32_t>j
        PyMem_Free(self._table)
        self._table = table
        self._mask = mask
        return 0

    cdef inline Py_ssize_t _intern(self, object node) except -1:
        cdef Py_hash_t h = PyObject_Hash(node)
        cdef Py_ssize_t slot, j, n
        cdef void* p
        j = self._lookup(node, h, &slot)
        if j >= 0:
            return j
        n = PyList_GET_SIZE(self._nodes)
        if n >= _MAX_NODES:
            raise ValueError(f"a graph holds at most {_MAX_NODES} nodes")
        if n == self._hcap:
            self._hcap = self._hcap * 2 if self._hcap else 8
            p = PyMem_Realloc(self._hashes, self._hcap * sizeof(Py_hash_t))
            if p == NULL:
                raise MemoryError()
            self._hashes = <Py_hash_t*>p
        if (n + 1) * 2 > self._mask + 1:
            self._grow_table()
            self._lookup(node, h, &slot)
        self._nodes.append(node)
        self._hashes[n] = h
        self._table[slot] = <int32_t>n
        return n

    cdef inline int _edge(self, Py_ssize_t src, Py_ssize_t dst) except -1:
        cdef void* p
        if self._ne == self._ecap:
            if self._ne >= _MAX_NODES:
                raise ValueError(f"a graph holds at most {_MAX_NODES} edges")
            self._ecap = self._ecap * 2 if self._ecap else 16
            p = PyMem_Realloc(self._esrc, self._ecap * sizeof(int32_t))
            if p == NULL:
                raise MemoryError()
            self._esrc = <int32_t*>p
            p = PyMem_Realloc(self._edst, self._ecap * sizeof(int32_t))
            if p == NULL:
                raise MemoryError()
            self._edst = <int32_t*>p
        self._esrc[self._ne] = <int32_t>src
        self._edst[self._ne] = <int32_t>dst
        self._ne += 1
        return 0

    def add(self, node, *predecessors):
        """Add a node and its predecessors (both hashable).

        Calls with the same node add up; a predecessor seen for the first time
        is added with no predecessors of its own.

        Raises:
            ValueError: called after :meth:`prepare`.
            TypeError: a node is not hashable.
        """
        if self._kernel is not None:
            raise ValueError("Nodes cannot be added after a call to prepare()")
        cdef Py_ssize_t i = self._intern(node)
        cdef Py_ssize_t first = self._ne
        for pred in predecessors:
            self._edge(self._intern(pred), i)
        self._note(node, i, first)

    def prepare(self):
        """Freeze the graph and check it for cycles.

        Raises:
            ValueError: called twice.
            CycleError: the graph has a cycle; :meth:`get_ready` still hands
                out every node that the cycle does not block.
        """
        if self._kernel is not None:
            raise ValueError("cannot prepare() more than once")
        cdef Py_ssize_t n = PyList_GET_SIZE(self._nodes), length, k
        cdef Kernel kernel = Kernel.__new__(Kernel)
        cdef int32_t* cyc = NULL
        cdef void* p
        kernel._build(n, self._esrc, self._edst, self._ne)
        cdef int32_t* fill
        cdef Py_ssize_t e, s
        if self._objs:  # original edge index -> CSR position
            objs = {}
            fill = <int32_t*>_alloc(n, sizeof(int32_t))
            memcpy(fill, kernel._start, n * sizeof(int32_t))
            for e in range(self._ne):
                s = self._esrc[e]
                if e in self._objs:
                    objs[fill[s]] = self._objs[e]
                fill[s] += 1
            PyMem_Free(fill)
            self._objs = objs
        PyMem_Free(self._esrc)
        PyMem_Free(self._edst)
        self._esrc = self._edst = NULL
        self._ne = self._ecap = 0
        if n and self._hcap > n:  # give back the growth slack
            p = PyMem_Realloc(self._hashes, n * sizeof(Py_hash_t))
            if p != NULL:
                self._hashes = <Py_hash_t*>p
                self._hcap = n
        kernel.reset(policy="fifo")
        self._kernel = kernel
        if kernel._acyclic():
            return
        length = kernel._find_cycle(&cyc)
        if length:
            try:
                cycle = [
                    self._objs.get(cyc[length + k], self._nodes[cyc[k]])
                    if cyc[length + k] >= 0 else self._nodes[cyc[k]]
                    for k in range(length)
                ]
            finally:
                PyMem_Free(cyc)
            raise CycleError("nodes are in a cycle", cycle)

    cdef Kernel _prepared(self):
        if self._kernel is None:
            raise ValueError("prepare() must be called first")
        return self._kernel

    def get_ready(self):
        """Every node that is ready and was not handed out yet, as a tuple."""
        cdef Kernel kernel = self._prepared()
        cdef Py_ssize_t k = kernel._ready, j, head = kernel._qhead
        cdef PyObject* obj
        kernel._gather(kernel._queue + head, k)  # FIFO: the ids stay in place
        result = PyTuple_New(k)
        cdef object handed
        for j in range(k):
            if self._handed:
                handed = self._handed.pop(kernel._queue[head + j], None)
                if handed is not None:
                    Py_INCREF(handed)
                    PyTuple_SET_ITEM(result, j, handed)
                    continue
            obj = PyList_GET_ITEM_BORROWED(self._nodes, kernel._queue[head + j])
            Py_INCREF(<object>obj)
            PyTuple_SET_ITEM(result, j, <object>obj)
        return result

    def is_active(self):
        """Whether more progress can be made (nodes ready, or handed out and not done)."""
        cdef Kernel kernel = self._prepared()
        return kernel._ready > 0 or kernel._running > 0

    def __bool__(self):
        return self.is_active()

    def done(self, *nodes):
        """Mark nodes handed out by :meth:`get_ready` as processed.

        Raises:
            ValueError: a node was not added, not handed out, or already done
                (the nodes before it in the call are marked done).
        """
        cdef Kernel kernel = self._prepared()
        cdef Py_ssize_t i, slot
        cdef uint8_t st
        for node in nodes:
            i = self._lookup(node, PyObject_Hash(node), &slot)
            if i < 0:
                raise ValueError(f"node {node!r} was not added using add()")
            st = kernel._state[i]
            if st != _RUNNING:
                if st == _SUCCEEDED:
                    raise ValueError(f"node {node!r} was already marked done")
                raise ValueError(f"node {node!r} was not passed out (still not ready)")
            if self._objs:
                kernel._done_noting(<int32_t>i, self._objs, self._handed)
            else:
                kernel._done(<int32_t>i)

    def static_order(self):
        """Every node in a topological order (calls :meth:`prepare`).

        Raises:
            CycleError: the graph has a cycle.
        """
        self.prepare()
        while self.is_active():
            group = self.get_ready()
            yield from group
            self.done(*group)

    def __class_getitem__(cls, item):
        return GenericAlias(cls, item)
