"""What a new user meets first, run as they would run it: the README's example
saved as a script (a real interpreter, a real file, a timeout)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import child_env

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the scripts use POSIX paths")


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Flows of plain functions", 1)[1]
    return re.search(r"^```python\n(.*?)^```$", section, flags=re.M | re.S).group(1)  # type: ignore[union-attr]


def unguarded(code: str) -> str:
    """The example with its main guard taken away (the run at the script's top level)."""
    lines = code.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("if __name__"))
    return "\n".join(lines[:at] + [line[4:] for line in lines[at + 1:]]) + "\n"


def run_script(folder: Path, code: str) -> subprocess.CompletedProcess:
    script = folder / "etl.py"
    script.write_text(code)
    return subprocess.run([sys.executable, str(script)], cwd=folder, capture_output=True, text=True,
                          env=child_env(), timeout=120)


def test_the_readmes_example_on_processes_runs_as_a_script(tmp_path) -> None:
    code = readme_example()
    assert 'if __name__ == "__main__":' in code
    done = run_script(tmp_path, code.replace('executor="threads"', 'executor="processes"'))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == ["60", "succeeded"]


def test_a_script_without_the_main_guard_is_told_what_to_add_and_runs_once(tmp_path) -> None:
    code = unguarded(readme_example()).replace(
        'executor="threads")', 'executor="processes", store="runs.db")')
    assert 'executor="processes", store="runs.db"' in code and "__main__" not in code
    done = run_script(tmp_path, code)
    assert done.returncode == 1
    assert 'if __name__ == "__main__":' in done.stderr and str(tmp_path / "etl.py") in done.stderr
    assert "bootstrapping" not in done.stderr and "RunFailed" not in done.stderr
    assert done.stderr.count("Traceback") == 1, done.stderr  # one error, from the script's own process
    listed = subprocess.run([sys.executable, "-m", "microdag", "runs", "--store", "runs.db"], cwd=tmp_path,
                            capture_output=True, text=True, env=child_env(), timeout=60)
    assert listed.stdout.count("etl") == 1, listed.stdout  # no second run, started in the worker
