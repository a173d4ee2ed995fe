"""Does Cython's limited API cost the compiled twin speed? (docs/performance.md,
"Wheels and the limited API")

    python bench/limited_api.py            # about 5 minutes here; needs Cython, a compiler, valgrind
    python bench/limited_api.py --keep DIR # keeps the builds in DIR/full and DIR/limited

One wheel per platform for every Python (``abi3``) needs the extension built
against the limited C API. This builds ``src/microdag/_sched.pyx`` twice, in
temporary folders: with the full C API, as the wheels are, and with the limited
API of Python 3.11 (``Py_LIMITED_API=0x030B0000``; the few non-limited macros
the kernel calls, such as ``PyList_GET_ITEM`` and ``PyObject_Vectorcall``, are
mapped onto limited functions by a header forced in ahead of the module, so
the ``.pyx`` is unchanged). Then callgrind counts the instructions per node of
four workloads on the 20,000-node layered graph, for each build: (count of
three rounds - count of one) / 2 / 20,000, which no other load on the machine
moves.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
N = 20_000

SHIM = r"""#include <Python.h>
#undef PyList_GET_ITEM
#undef PyList_GET_SIZE
#undef PyList_SET_ITEM
#undef PyTuple_GET_ITEM
#undef PyTuple_GET_SIZE
#undef PyTuple_SET_ITEM
#define PyList_GET_ITEM(o, i) PyList_GetItem((PyObject *)(o), (i))
#define PyList_GET_SIZE(o) PyList_Size((PyObject *)(o))
#define PyList_SET_ITEM(o, i, v) ((void)PyList_SetItem((PyObject *)(o), (i), (PyObject *)(v)))
#define PyTuple_GET_ITEM(o, i) PyTuple_GetItem((PyObject *)(o), (i))
#define PyTuple_GET_SIZE(o) PyTuple_Size((PyObject *)(o))
#define PyTuple_SET_ITEM(o, i, v) ((void)PyTuple_SetItem((PyObject *)(o), (i), (PyObject *)(v)))
#define PyBytes_GET_SIZE(o) PyBytes_Size((PyObject *)(o))
#define PySequence_Fast_GET_SIZE(o) PySequence_Size((PyObject *)(o))
#define PySequence_Fast_GET_ITEM(o, i) (PyList_Check(o) ? PyList_GetItem((PyObject *)(o), (i)) : PyTuple_GetItem((PyObject *)(o), (i)))
static PyObject *shim_setdefault(PyObject *d, PyObject *k, PyObject *v) {
    PyObject *r = PyDict_GetItemWithError(d, k);
    if (r || PyErr_Occurred()) return r;
    if (PyDict_SetItem(d, k, v) < 0) return NULL;
    return v;
}
#define PyDict_SetDefault shim_setdefault
static PyObject *shim_vectorcall(PyObject *fn, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Py_ssize_t n = (Py_ssize_t)(nargsf & ~((size_t)1 << (8 * sizeof(size_t) - 1)));
    Py_ssize_t nk = kwnames ? PyTuple_Size(kwnames) : 0, i;
    PyObject *t = PyTuple_New(n), *kw = NULL, *r;
    if (!t) return NULL;
    for (i = 0; i < n; i++) { Py_INCREF(args[i]); PyTuple_SetItem(t, i, args[i]); }
    if (nk) {
        kw = PyDict_New();
        if (!kw) { Py_DECREF(t); return NULL; }
        for (i = 0; i < nk; i++) PyDict_SetItem(kw, PyTuple_GetItem(kwnames, i), args[n + i]);
    }
    r = PyObject_Call(fn, t, kw);
    Py_DECREF(t); Py_XDECREF(kw);
    return r;
}
#define PyObject_Vectorcall shim_vectorcall
static _Thread_local PyObject *shim_buf[1024];
static PyObject *const *shim_items(PyObject *o) {
    Py_ssize_t n = PySequence_Size(o), i;
    for (i = 0; i < n && i < 1024; i++) shim_buf[i] = PySequence_Fast_GET_ITEM(o, i);
    return shim_buf;
}
#undef PySequence_Fast_ITEMS
#define PySequence_Fast_ITEMS(o) ((PyObject **)shim_items((PyObject *)(o)))
"""

SETUP = """
import os, sys
from setuptools import Extension, setup
from Cython.Build import cythonize
limited = sys.argv.pop() == "limited"
extra = dict(define_macros=[("Py_LIMITED_API", "0x030B0000")], py_limited_api=True,
             extra_compile_args=["-include", os.path.abspath("shim.h")]) if limited else {}
setup(ext_modules=cythonize([Extension("microdag._sched", ["microdag/_sched.pyx"], **extra)],
                            compiler_directives={"language_level": "3"}, quiet=True))
"""

WORKLOAD = """
import sys
import graphs, bench_flow
import microdag
from microdag import _sched
assert microdag.SCHEDULER == "c"
what, times = sys.argv[1], int(sys.argv[2])
g = graphs.get("layered", N)
if what == "kernel run":
    k = _sched.Kernel(g.n, g.src, g.dst)
    for _ in range(times):
        k.reset(policy="fifo")
        while k.remaining:
            k.done_many(k.take())
elif what == "kernel build":
    for _ in range(times):
        _sched.Kernel(g.n, g.src, g.dst)
elif what == "graphlib protocol":
    for _ in range(times):
        ts = _sched.TopologicalSorter(g.deps)
        ts.prepare()
        while ts.is_active():
            ts.done(*ts.get_ready())
else:
    flow = bench_flow.workload(N)[1]
    for _ in range(times):
        flow.run()
""".replace("N)", f"{N})")

WORKLOADS = ("kernel run", "kernel build", "graphlib protocol", "flow, inline")


def build(where: Path, kind: str) -> Path:
    """The compiled twin built the ``kind`` way (full or limited) in ``where``/microdag."""
    subprocess.run(["cp", "-r", str(ROOT / "src" / "microdag"), str(where)], check=True)
    for built in (where / "microdag").glob("_sched*.so"):
        built.unlink()
    (where / "shim.h").write_text(SHIM)
    (where / "setup.py").write_text(SETUP)
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace", kind], cwd=where, check=True,
                   capture_output=True)
    (so,) = (where / "microdag").glob("_sched*.so")
    return so


def instructions(where: Path, what: str, times: int) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(where), str(BENCH)])}
    env.pop("MICRODAG_NO_EXTENSIONS", None)
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                          sys.executable, "-c", WORKLOAD, what, str(times)],
                         cwd=where, env=env, capture_output=True, text=True, check=True)
    return int(re.search(r"Collected : (\d+)", out.stderr).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="build in this folder and keep the builds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            tmp = str(args.keep)
        builds = {}
        for kind in ("full", "limited"):
            (Path(tmp) / kind).mkdir()
            builds[kind] = Path(tmp) / kind
            print(f"{kind}: {build(builds[kind], kind).name}", flush=True)
        print(f"{'instructions per node':24} {'full API':>9} {'limited':>9} {'ratio':>6}")
        for what in WORKLOADS:
            per = {kind: (instructions(w, what, 3) - instructions(w, what, 1)) / 2 / N for kind, w in builds.items()}
            print(f"{what:24} {per['full']:9,.0f} {per['limited']:9,.0f} {per['limited'] / per['full']:6.2f}", flush=True)


if __name__ == "__main__":
    main()
