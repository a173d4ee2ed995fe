"""The examples run as users run them: as scripts, on the installed package."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_wordcount_example_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "wordcount.py")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("microdag ")
    assert ": succeeded in " in lines[1]
    assert "top words: a: 3, run: 3, steps: 3" in lines
    assert "flowchart TD" in lines
