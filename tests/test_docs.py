"""Every Python example of the README and docs/ runs as written.

Each ````python`` block is run on its own, in a fresh interpreter, in a folder
that holds a copy of ``examples/`` (the docs name its files from the project's
folder) and a ``notes.txt`` (api.md's first example reads one), so that what
an example writes (stores, reports) lands there.  A block that is not meant
to run (a signature) is fenced as ``text``.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import child_env

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks() -> "list[tuple[str, str]]":
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"^```python\n(.*?)^```$", text, flags=re.M | re.S):
            line = text[: m.start()].count("\n") + 1
            found.append((f"{path.relative_to(ROOT)}:{line}", m.group(1)))
    return found


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "examples", where / "examples")
    (where / "notes.txt").write_text("the quick brown fox jumps over the lazy dog\n")
    return where


@pytest.mark.parametrize("where, code", blocks(), ids=[w for w, _ in blocks()])
def test_the_example_runs_as_written(where, code, folder) -> None:
    if re.search(r"^import distributed", code, flags=re.M):
        pytest.importorskip("distributed", reason="the example needs Dask distributed")
    if re.search(r"^import dask$", code, flags=re.M):
        pytest.importorskip("dask", reason="the example needs Dask")
    if "opentelemetry" in code:
        pytest.importorskip("opentelemetry.sdk", reason="the example needs opentelemetry-sdk")
    done = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True,
                          env=child_env(), timeout=120)
    assert done.returncode == 0, f"{where} failed:\n{done.stderr[-3000:]}"


def test_the_docs_have_examples() -> None:
    assert len(blocks()) >= 10
