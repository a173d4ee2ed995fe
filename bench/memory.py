"""Memory of a prepared ``TopologicalSorter``, and the import time of microdag.

Usage::

    python bench/memory.py                      # memory table, then import time
    python bench/memory.py --nodes 1000000 --impl all
    python bench/memory.py --impl c --no-import-time
    python bench/memory.py --import-time --runs 30   # import time only

Memory: for each implementation (``graphlib``, microdag ``c``, microdag
``py``) a fresh interpreter builds the layered graph dict of ``--nodes``
nodes (``graphs.py``: layers of 1000, 3 predecessors each), collects garbage,
then constructs the sorter and calls ``prepare()``.  Two measurements, each
in its own fresh interpreter so that neither disturbs the other:

- RSS: growth of the *current* resident set (``/proc/self/statm``, not the
  peak) from just before constructing the sorter to just after
  ``prepare()``;
- tracemalloc: traced current size after ``prepare()``, tracing started
  after the graph dict was built (tracemalloc's own bookkeeping is not
  traced, and would inflate the RSS figure, hence the separate process).

The nodes (ints) belong to the graph dict and are not counted: a sorter
holds references to them.  The table shows bytes per node for both and the
larger of the two.

Import time, ``--runs`` times each (30), medians and minimums:

- ``python -X importtime -c "import microdag"``: microdag's cumulative time
  (the figure the target is checked against: the interpreter's own timer,
  free of process start-up noise); the same for ``from microdag import
  TopologicalSorter``, which also loads the scheduler (the package loads its
  modules on first use);
- wall time of ``python -c pass``, ``python -c "import microdag"`` and
  ``python -c "from microdag import TopologicalSorter"``, runs interleaved,
  and the differences.

Each with and without ``-S`` (no ``site``: no ``.pth`` start-up hooks, a
quieter baseline, but ``os`` is then imported by microdag rather than by
``site``).  Subprocesses get this checkout's ``src`` first on
``PYTHONPATH``, so the in-tree microdag is measured, and may write ``.pyc``
files (``PYTHONDONTWRITEBYTECODE`` is dropped: an installed package has its
bytecode, so import time must not include compiling the sources).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
IMPLS = ("graphlib", "c", "py")
TARGET_BYTES_PER_NODE = 100
TARGET_IMPORT_MS = 3.0


def child_env() -> dict[str, str]:
    """The environment of every subprocess: this checkout's ``src`` first on
    ``PYTHONPATH``; bytecode caching allowed (an installed package has its
    ``.pyc`` files, so import times must not include compiling the sources)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = SRC + (os.pathsep + path if path else "")
    return env


def rss_bytes() -> int | None:
    """Current resident set size, or ``None`` where ``/proc`` is missing."""
    try:
        with open("/proc/self/statm") as f:
            resident = int(f.read().split()[1])
    except OSError:
        return None
    return resident * os.sysconf("SC_PAGE_SIZE")


def sorter_class(impl: str):  # type: ignore[no-untyped-def]
    if impl == "graphlib":
        import graphlib

        return graphlib.TopologicalSorter
    if impl == "c":
        from microdag import _sched

        return _sched.TopologicalSorter
    from microdag import _sched_py

    return _sched_py.TopologicalSorter


def child(impl: str, method: str, n: int) -> None:
    """Measure one implementation in this (fresh) interpreter; print JSON."""
    sys.path[:0] = [HERE, SRC]  # as child_env() does, for direct calls too
    import graphs

    cls = sorter_class(impl)  # imported before the baseline
    deps = graphs._DEPS["layered"](n)
    gc.collect()
    if method == "tracemalloc":
        import tracemalloc

        tracemalloc.start()
    before = rss_bytes()
    ts = cls(deps)
    ts.prepare()
    gc.collect()
    after = rss_bytes()
    result: dict[str, object] = {"impl": impl, "method": method, "nodes": n}
    if method == "tracemalloc":
        result["bytes"] = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    else:
        result["bytes"] = None if before is None or after is None else after - before
    # Sanity: the prepared sorter hands out the first layer.
    first = ts.get_ready()
    assert len(first) == min(n, graphs.LAYER_WIDTH), len(first)
    print(json.dumps(result))


def measure(impl: str, method: str, n: int) -> int | None:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", impl, "--method", method,
         "--nodes", str(n)],
        env=child_env(),
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"measuring {impl} ({method}) failed with exit code {out.returncode}")
    value = json.loads(out.stdout.strip().splitlines()[-1])["bytes"]
    return None if value is None else int(value)


def memory_report(impls: list[str], n: int) -> None:
    print(f"Prepared layered TopologicalSorter, {n:,} nodes (bytes per node)")
    print()
    print(f"| {'impl':<8} | {'RSS growth':>10} | {'tracemalloc':>11} | {'larger':>7} | "
          f"<= {TARGET_BYTES_PER_NODE} B? |")
    print(f"|{'-' * 10}|{'-' * 11}:|{'-' * 12}:|{'-' * 8}:|{'-' * 12}|")
    for impl in impls:
        rss = measure(impl, "rss", n)
        traced = measure(impl, "tracemalloc", n)
        per = [v / n for v in (rss, traced) if v is not None]
        larger = max(per) if per else float("nan")
        rss_s = "n/a" if rss is None else f"{rss / n:.1f}"
        verdict = "yes" if larger <= TARGET_BYTES_PER_NODE else "no"
        print(f"| {impl:<8} | {rss_s:>10} | {traced / n:>11.1f} | {larger:>7.1f} | "
              f"{verdict:<10} |")
        sys.stdout.flush()
    print(f"(target: microdag c, prepared 1,000,000-node layered sorter, "
          f"<= {TARGET_BYTES_PER_NODE} bytes/node)")
    print()


def run_timed(code: str, flags: tuple[str, ...] = ()) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, *flags, "-c", code], env=child_env(),
                         capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"python {' '.join(flags)} -c {code!r} failed")
    return elapsed, out.stdout


def importtime_us(code: str, flags: tuple[str, ...] = ()) -> int:
    """Microseconds that ``-X importtime`` gives the imports of ``code``.

    The sum of the cumulative times of the top-level imports from the first
    ``microdag`` one on: the package itself and, for a lazily loaded name,
    the modules loaded on first use (everything they import is nested under
    them).  Interpreter start-up and ``site`` come before and are not counted.
    """
    out = subprocess.run([sys.executable, *flags, "-X", "importtime", "-c", code],
                         env=child_env(), capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"python -X importtime -c {code!r} failed")
    total = 0
    started = False
    for line in out.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( *)(\S+)\s*$", line)
        if m is None or len(m.group(3)) > 1:
            continue  # the header, or a nested import (indented)
        started = started or m.group(4).split(".")[0] == "microdag"
        if started:
            total += int(m.group(2))
    if not started:
        raise SystemExit("no top-level 'microdag' line in the -X importtime output")
    return total


FIRST_USE = "from microdag import TopologicalSorter"


def import_times(runs: int, flags: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """(median, min) in ms of: ``-X importtime`` for ``import microdag``
    (``importtime``) and for the first use of the scheduler
    (``importtime_use``); the wall time of ``python -c pass`` (``pass``), of
    ``import microdag`` (``import``) and of the first use of the scheduler
    (``use``)."""
    cumulative = [importtime_us("import microdag", flags) / 1000 for _ in range(runs)]
    first_use = [importtime_us(FIRST_USE, flags) / 1000 for _ in range(runs)]
    walls: dict[str, list[float]] = {"pass": [], "import": [], "use": []}
    for _ in range(runs):  # interleaved, so drifts in machine load hit all
        walls["pass"].append(run_timed("pass", flags)[0] * 1000)
        walls["import"].append(run_timed("import microdag", flags)[0] * 1000)
        walls["use"].append(run_timed(FIRST_USE, flags)[0] * 1000)
    out = {
        "importtime": (statistics.median(cumulative), min(cumulative)),
        "importtime_use": (statistics.median(first_use), min(first_use)),
    }
    for key, values in walls.items():
        out[key] = (statistics.median(values), min(values))
    return out


def import_report(runs: int) -> None:
    """Import time, as is and with ``-S``.

    ``-S`` skips ``site``: no site-packages ``.pth`` hooks run first, so
    nothing microdag needs is imported before it (and ``python -c pass`` is
    the bare interpreter start).  microdag has no dependencies and is found
    through ``PYTHONPATH`` either way.
    """
    # Warm-up: writes any missing or stale .pyc, for both modes.
    _, twin = run_timed("import microdag; print(microdag.SCHEDULER)")
    run_timed(FIRST_USE, ("-S",))
    print(f"Import time ({runs} runs each, interleaved; scheduler twin: {twin.strip()})")
    print()
    normal = import_times(runs, ())
    nosite = import_times(runs, ("-S",))
    print("| ms | python: median | min | python -S: median | min |")
    print("|---|---:|---:|---:|---:|")

    def row(label: str, a: tuple[float, float], b: tuple[float, float]) -> None:
        print(f"| {label} | {a[0]:.2f} | {a[1]:.2f} | {b[0]:.2f} | {b[1]:.2f} |")

    def diff(t: dict[str, tuple[float, float]], key: str) -> tuple[float, float]:
        return (t[key][0] - t["pass"][0], t[key][1] - t["pass"][1])

    row("`-X importtime` cumulative for microdag", normal["importtime"], nosite["importtime"])
    row(f"`-X importtime` for `{FIRST_USE}`", normal["importtime_use"],
        nosite["importtime_use"])
    row("wall `python -c pass`", normal["pass"], nosite["pass"])
    row("wall `python -c \"import microdag\"`", normal["import"], nosite["import"])
    row(f"wall `python -c \"{FIRST_USE}\"`", normal["use"], nosite["use"])
    row("difference: `import microdag`", diff(normal, "import"), diff(nosite, "import"))
    row(f"difference: `{FIRST_USE}`", diff(normal, "use"), diff(nosite, "use"))
    print()
    cost = normal["importtime"][0]
    verdict = "met" if cost <= TARGET_IMPORT_MS else "NOT met"
    print(f"target: import microdag <= {TARGET_IMPORT_MS:g} ms over python -c pass: {verdict} "
          f"by -X importtime ({cost:.2f} ms; first use of the scheduler "
          f"{normal['importtime_use'][0]:.2f} ms).")
    print(f"Wall-time differences of the medians (noisier: whole processes on a shared "
          f"machine): import {diff(normal, 'import')[0]:.2f} ms, -S "
          f"{diff(nosite, 'import')[0]:.2f} ms.")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=1_000_000)
    p.add_argument("--impl", choices=(*IMPLS, "all"), default="all")
    p.add_argument("--runs", type=int, default=30, help="runs per import-time measure")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--import-time", action="store_true", help="only the import time")
    mode.add_argument("--no-import-time", action="store_true", help="only the memory")
    p.add_argument("--child", choices=IMPLS, help=argparse.SUPPRESS)
    p.add_argument("--method", choices=("rss", "tracemalloc"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.method, args.nodes)
        return
    print(f"python {sys.version.split()[0]}, {sys.executable}")
    print()
    if not args.import_time:
        memory_report(list(IMPLS) if args.impl == "all" else [args.impl], args.nodes)
    if not args.no_import_time:
        import_report(args.runs)


if __name__ == "__main__":
    main()
