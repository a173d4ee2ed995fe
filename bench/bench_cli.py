"""Cold start of the command line: whole processes, as a shell starts them.

- ``python -c pass``: the interpreter alone, the baseline of the others;
- ``python -m microdag --help``;
- ``python -m microdag run flow.toml``: a 10-step chain of ``call`` steps,
  inline, with the default store (``.microdag/runs.db``, made by a first run
  before the timed ones, as a CLI user's store is).

Each round is one process; ``extra_info["over_python_ms"]`` is the median
minus the baseline's median of the same session (the baseline runs first).
The children write bytecode caches, as an installed package has them.  The
smoke run starts each process once and checks its exit code.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import microdag
from bench_flow import disabled

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(microdag.__file__)))
STEPS = '''
def first(n=1):
    return n


def step(**deps):
    return sum(deps.values()) + 1
'''
_BASELINE: dict[str, float] = {}


def make_flow(folder: Path) -> Path:
    """``folder`` with the 10-step ``flow.toml`` and its steps module."""
    (folder / "coldsteps.py").write_text(STEPS)
    lines = ['[flow]\nname = "cold"\n', '[steps.s0]\ncall = "coldsteps:first"\n']
    for i in range(1, 10):
        lines.append(f'[steps.s{i}]\ncall = "coldsteps:step"\ndepends_on = ["s{i - 1}"]\n')
    (folder / "flow.toml").write_text("\n".join(lines))
    return folder


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_flow(tmp_path_factory.mktemp("cli"))


def env() -> dict[str, str]:
    """The children's environment: bytecode caches on, and microdag importable
    (an installed one is, as is; ``PYTHONPATH`` would put its folder ahead of
    the standard library and slow every import down)."""
    import site

    e = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if PACKAGE_ROOT not in site.getsitepackages():
        e["PYTHONPATH"] = os.pathsep.join([PACKAGE_ROOT] + [p for p in e.get("PYTHONPATH", "").split(os.pathsep) if p])
    return e


COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "python -m microdag --help": ["-m", "microdag", "--help"],
    "python -m microdag run flow.toml": ["-m", "microdag", "run", "flow.toml", "--quiet"],
}


@pytest.mark.benchmark(group="cli-cold-start")
@pytest.mark.parametrize("name", list(COMMANDS))
def test_cold_start(benchmark: Any, name: str, workdir: Path, request: pytest.FixtureRequest) -> None:
    argv = [sys.executable, *COMMANDS[name]]
    environ = env()

    def start() -> None:
        done = subprocess.run(argv, cwd=workdir, env=environ, capture_output=True)
        assert done.returncode == 0, done.stderr

    start()  # caches written, store made
    if disabled(request):
        benchmark(start)
        return
    benchmark.pedantic(start, rounds=40, iterations=1, warmup_rounds=2)
    median_ms = benchmark.stats.stats.median * 1000
    if name == "python -c pass":
        _BASELINE["ms"] = median_ms
    elif "ms" in _BASELINE:
        benchmark.extra_info["over_python_ms"] = round(median_ms - _BASELINE["ms"], 2)


def interleaved(rounds: int = 40) -> dict[str, float]:
    """Median wall time (ms) of each command, the commands interleaved round by round
    (so a burst of load on the shared machine hits all of them alike)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        folder = make_flow(Path(d))
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        environ = env()
        for n in range(rounds + 2):
            for name, args in COMMANDS.items():
                t0 = time.perf_counter()
                subprocess.run([sys.executable, *args], cwd=folder, env=environ, capture_output=True, check=True)
                if n >= 2:
                    times[name].append((time.perf_counter() - t0) * 1000)
    return {name: statistics.median(ts) for name, ts in times.items()}


if __name__ == "__main__":
    medians = interleaved()
    base = medians["python -c pass"]
    for name, ms in medians.items():
        print(f"{name:36} {ms:7.1f} ms   +{ms - base:5.1f} ms")
