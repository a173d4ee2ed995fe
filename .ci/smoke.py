"""The installed wheel as a user gets it: run from outside any checkout.

    python .ci/smoke.py [--no-compiler]

It checks that ``microdag`` comes from the environment's site-packages (not a
``src/`` folder), that the scheduler is the compiled twin (``SCHEDULER == "c"``),
that Cython is not installed, and, with ``--no-compiler``, that no C compiler
is on PATH; then it runs a flow on every local backend and the CLI's
``--version``. ``.ci/wheels`` and cibuildwheel's test command run it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import microdag


def double(xs: int) -> int:
    return 2 * xs


def total(double: list[int]) -> int:
    return sum(double)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-compiler", action="store_true", help="fail if a C compiler is on PATH")
    args = parser.parse_args()

    site = Path(sysconfig.get_paths()["platlib"]).resolve()
    where = Path(microdag.__file__).resolve()
    assert where.is_relative_to(site), f"microdag imported from {where}, not from {site}"
    assert microdag.SCHEDULER == "c", f"the scheduler is {microdag.SCHEDULER!r}, not the compiled twin"
    from microdag import _sched

    assert Path(_sched.__file__).suffix in (".so", ".pyd"), _sched.__file__
    assert importlib.util.find_spec("Cython") is None, "Cython is installed"
    if args.no_compiler:
        found = [c for c in ("cc", "gcc", "clang", "cl") if shutil.which(c)]
        assert not found, f"a compiler is on PATH: {found}"

    ts = microdag.TopologicalSorter({"b": {"a"}, "c": {"a"}, "d": {"b", "c"}})
    assert list(ts.static_order())[::3] == ["a", "d"]

    flow = microdag.Flow("smoke")
    flow.add("double", double, map="xs")
    flow.add("total", total)
    for executor in ("inline", "threads", "processes"):
        run = flow.run({"xs": list(range(10))}, executor=executor)
        assert run["total"] == 90, (executor, run["total"])
    run = asyncio.run(flow.arun({"xs": [1, 2]}))
    assert run["total"] == 6, run["total"]

    version = subprocess.run(
        [sys.executable, "-m", "microdag", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert version.endswith("(scheduler: c)"), version
    print(f"smoke: {version}, from {where.parent}")


if __name__ == "__main__":
    main()
