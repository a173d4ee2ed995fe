"""The examples run as users run them: as scripts or through the CLI, on the
installed package, each in a fresh working directory."""

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from support import child_env

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(args, cwd, timeout=120):
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                         env=child_env())
    assert out.returncode == 0, out.stderr
    return out


def test_wordcount_example_runs(tmp_path) -> None:
    lines = run([str(EXAMPLES / "wordcount.py")], tmp_path).stdout.splitlines()
    assert lines[0].startswith("microdag ")
    assert ": succeeded in " in lines[1]
    assert "top words: a: 3, run: 3, steps: 3" in lines
    assert "flowchart TD" in lines


@pytest.mark.parametrize("store", [[], ["--store", "memory"]], ids=["default store", "memory"])
def test_wordcount_example_runs_from_the_command_line(tmp_path, store) -> None:
    out = run(["-m", "microdag", "run", str(EXAMPLES / "wordcount.py"), *store], tmp_path)
    assert 'report: "a: 3, run: 3, steps: 3"' in out.stdout


def test_pipeline_passes_files_through_the_run_directory(tmp_path) -> None:
    out = run([str(EXAMPLES / "pipeline.py")], tmp_path).stdout
    assert "succeeded, 5 rows" in out
    saved = out.strip().splitlines()[-1].removeprefix("saved ")
    assert json.loads((tmp_path / saved).read_text()) == {"bread": 36.0, "buns": 40.0, "coffee": 19.6}
    assert (tmp_path / ".microdag" / "runs.db").exists()


class Nodes(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.nodes: dict[str, str] = {}

    def handle_starttag(self, tag, attrs) -> None:
        a = dict(attrs)
        if tag == "g" and a.get("class") == "node":
            self.nodes[a["data-step"]] = a["data-status"]


def test_website_analysis_runs_and_writes_its_report(tmp_path) -> None:
    out = run([str(EXAMPLES / "website.py")], tmp_path).stdout
    assert "Harbor Lane Bakery: fresh bread since 1987: positive" in out
    report = Path(out.strip().splitlines()[-1].removeprefix("report: "))
    assert report.is_file() and report.is_relative_to(tmp_path)
    parser = Nodes()
    parser.feed(report.read_text())
    assert parser.nodes == dict.fromkeys(["fetch", "sentiment", "summary", "save"], "succeeded")
    # the same file is a FLOW for the CLI, and the run it recorded can be shown
    shown = run(["-m", "microdag", "runs", "--json"], tmp_path).stdout
    assert [r["flow"] for r in json.loads(shown)] == ["website"]
    cli = run(["-m", "microdag", "run", str(EXAMPLES / "website.py"), "--json", "--store", "memory",
               "-i", f"page={EXAMPLES / 'data' / 'site.html'}"], tmp_path).stdout
    assert json.loads(cli)["outputs"]["save"]["sentiment"]["label"] == "positive"


def test_retrieval_maps_with_batches(tmp_path) -> None:
    out = run([str(EXAMPLES / "retrieval.py")], tmp_path).stdout
    assert "how does a crashed run resume\n    -> SQLite keeps the state of every task" in out
    assert "rank documents by term frequency\n    -> BM25 ranks documents" in out
    assert out.strip().splitlines()[-1].startswith("succeeded")


@pytest.mark.parametrize("executor", ["inline", "threads"])
def test_release_flow_file_mixes_calls_and_commands(tmp_path, executor) -> None:
    flow = str(EXAMPLES / "release" / "flow.toml")
    out = run(["-m", "microdag", "run", flow, "--json", "--executor", executor,
               "-i", f"python={sys.executable}", "-i", "version=2.0.0"], tmp_path).stdout
    doc = json.loads(out)
    assert doc["status"] == "succeeded"
    published = doc["outputs"]["publish"]
    assert published["version"] == "2.0.0" and published["file"] == "NOTES-2.0.0.md"
    assert len(published["sha256"]) == 64 and published["bytes"] > 0
    assert doc["steps"]["lint"]["attempts"] == 2  # its first attempt fails, as a flaky check would
    logs = run(["-m", "microdag", "logs", doc["run_id"], "lint"], tmp_path).stdout
    assert "lint: 5 lines, 0 problems" in logs
