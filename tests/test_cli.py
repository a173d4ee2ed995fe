"""``python -m microdag``: every command in-process (``main(argv)``) and the
ones that matter as real processes (exit codes, Ctrl-C then resume).

Each test works in its own temporary directory (the default store is
``.microdag/runs.db`` in the current directory).
"""

import io
import json
import os
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

import clisteps
import microdag
from microdag.cli._common import DEFAULT_STORE
from microdag.cli._progress import Progress as _Progress
from microdag.stores import SQLiteStore
from support import child_env, cli

FLOW = """\
[flow]
name = "cli-demo"

[inputs]
n = 3

[steps.extract]
call = "clisteps:extract"

[steps.double]
call = "clisteps:double"

[steps.total]
call = "clisteps:total"
"""

CHECKED = FLOW + """
[steps.checked]
call = "clisteps:checked"
retries = 0
"""

SLOW = FLOW + """
[steps.slow]
call = "clisteps:slow"
"""

AFTER_CHECKED = CHECKED + """
[steps.again]
call = "clisteps:extract"
depends_on = ["checked"]
"""

MAPPED = FLOW + """
[steps.square]
call = "clisteps:square"
map = "extract"

[steps.squares]
call = "clisteps:squares"
map = "extract"
batch_size = 2
"""

UNIQUE = FLOW + """
[steps.unique]
call = "clisteps:unique"
"""

LOUD = """\
[flow]
name = "loud"

[inputs]
python = "python3"

[steps.loud]
command = ["{inputs.python}", "-c", 'import sys; sys.stderr.write("first problem\\nsecond problem\\nlast: disk full\\n"); sys.exit(3)']
"""


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NO_COLOR", raising=False)
    return tmp_path


@pytest.fixture
def flags(here):
    path = here / "flags"
    path.mkdir()
    return path


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def only_run_id(store=DEFAULT_STORE, codec="json"):
    s = SQLiteStore(store, codec=codec)
    try:
        runs = s.list_runs()
        assert len(runs) == 1
        return runs[0].id
    finally:
        s.close()


# -- help and usage ----------------------------------------------------------------------


def test_help_lists_every_command(capsys):
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    for command in ("run", "resume", "step", "validate", "graph", "runs", "show", "logs", "prune", "report"):
        assert command in out


@pytest.mark.parametrize(
    "command", ["run", "resume", "step", "validate", "graph", "runs", "show", "logs", "prune", "report"]
)
def test_every_command_has_help(capsys, command):
    code, out, _ = cli(capsys, command, "--help")
    assert code == 0
    assert out.startswith("usage: python -m microdag " + command)


def test_no_command_prints_usage_and_exits_2(capsys):
    code, out, _ = cli(capsys)
    assert code == 2
    assert "usage:" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run"], "the following arguments are required: FLOW"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["run", "f.toml", "--executor", "gpu"], "invalid choice: 'gpu'"),
        (["run", "f.toml", "--workers", "0"], "expected a number >= 1"),
        (["prune", "--older-than", "soon"], "expected a number of days"),
        (["graph", "f.toml", "--format", "png"], "invalid choice: 'png'"),
    ],
)
def test_usage_errors_exit_2_naming_the_problem(capsys, here, argv, message):
    code, _, err = cli(capsys, *argv)
    assert code == 2
    assert message in err


# -- run, show, runs, logs, report, graph, validate ----------------------------------------------


def test_run_uses_the_default_store_and_every_reader_finds_the_run(capsys, here):
    flow = write(here / "flow.toml", FLOW)
    code, out, err = cli(capsys, "run", flow)
    assert code == 0, err
    assert out == "outputs:\n  total: 6\n"
    assert (here / DEFAULT_STORE).exists()
    run_id = only_run_id()
    assert f"run {run_id} of cli-demo: succeeded" in err
    # one plain line per finished step when stderr is not a terminal
    assert [line.split("]")[0] for line in err.splitlines() if line.startswith("[")] == ["[1/3", "[2/3", "[3/3"]

    code, out, _ = cli(capsys, "runs")
    assert code == 0
    assert run_id in out and "succeeded" in out and "cli-demo" in out

    code, out, _ = cli(capsys, "show", run_id)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"run {run_id} of cli-demo: succeeded"
    assert any(line.startswith("extract ") and "succeeded" in line for line in lines)

    code, out, _ = cli(capsys, "logs", run_id, "extract")
    assert code == 0
    assert "extracting 3 numbers" in out and "extract saw n=3" in out

    code, out, _ = cli(capsys, "report", run_id, "-o", "r.html")
    assert code == 0 and out.strip() == "r.html"
    page = (here / "r.html").read_text()
    assert page.count('class="node"') == 3


def test_run_json_is_one_document(capsys, here):
    flow = write(here / "flow.toml", FLOW)
    code, out, err = cli(capsys, "run", flow, "--json", "--input", "n=4")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["status"] == "succeeded"
    assert doc["flow"] == "cli-demo"
    assert doc["outputs"] == {"total": 12}
    assert doc["inputs"] == {"n": 4}
    assert set(doc["steps"]) == {"extract", "double", "total"}
    assert doc["steps"]["total"]["attempts"] == 1
    assert err == ""


def test_inputs_from_a_file_and_the_command_line(capsys, here):
    flow = write(here / "flow.toml", FLOW)
    write(here / "in.json", '{"n": 2}')
    code, out, _ = cli(capsys, "run", flow, "--inputs", "in.json", "--json", "--store", "memory")
    assert json.loads(out)["outputs"] == {"total": 2}
    code, out, _ = cli(capsys, "run", flow, "--inputs", "in.json", "-i", "n=5", "--json", "--store", "memory")
    assert json.loads(out)["outputs"] == {"total": 20}
    assert not (here / ".microdag").exists()  # --store memory opts out of the default store


def test_quiet_prints_nothing_on_success(capsys, here):
    flow = write(here / "flow.toml", FLOW)
    assert cli(capsys, "run", flow, "--quiet") == (0, "", "")


def test_targets_run_only_what_they_need(capsys, here):
    flow = write(here / "flow.toml", FLOW)
    code, out, _ = cli(capsys, "run", flow, "--target", "double", "--json")
    assert code == 0
    doc = json.loads(out)
    assert set(doc["steps"]) == {"extract", "double"}
    assert doc["outputs"] == {"double": [0, 2, 4]}


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_run_on_other_executors(capsys, here, executor):
    flow = write(here / "flow.toml", FLOW)
    code, out, err = cli(capsys, "run", flow, "--executor", executor, "--workers", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["outputs"] == {"total": 6}


def test_a_failed_run_exits_1_then_resume_reruns_only_what_failed(capsys, here, flags):
    flow = write(here / "flow.toml", CHECKED)
    (flags / "broken").touch()
    code, _, err = cli(capsys, "run", flow, "-i", f"flags={flags}")
    assert code == 1
    run_id = only_run_id()
    assert f"run {run_id} of cli-demo: failed" in err
    assert "checked: ValueError: total 6 failed the check <b>" in err
    assert f"resume with: python -m microdag resume {run_id}" in err

    code, out, _ = cli(capsys, "show", run_id, "--json")
    doc = json.loads(out)
    failed = [t for t in doc["tasks"] if t["status"] == "failed"]
    assert [t["step"] for t in failed] == ["checked"]
    assert failed[0]["error"]["type"] == "ValueError"
    assert "Traceback" in failed[0]["error"]["traceback"]

    (flags / "broken").unlink()
    code, out, err = cli(capsys, "resume", run_id)  # the flow comes from the run's record
    assert code == 0, err
    # first, before the flow is loaded (a big one takes a while): which run, how far it got
    assert err.splitlines()[0] == f"resuming run {run_id} of cli-demo: 3 steps succeeded before; loading {flow}"
    assert f"run {run_id} of cli-demo: succeeded" in err
    assert "(4 steps: 4 succeeded)" in err
    assert out == "outputs:\n  checked: 7\n"
    assert clisteps.runs_of(str(flags), "checked") == 2
    code, out, _ = cli(capsys, "step", flow, "checked", "--from-run", run_id)
    assert code == 0
    assert json.loads(out) == 7
    assert clisteps.runs_of(str(flags), "checked") == 3


def test_step_runs_one_step_on_a_stored_run_with_overrides(capsys, here):
    flow = write(here / "flow.toml", FLOW)
    assert cli(capsys, "run", flow, "-q")[0] == 0
    run_id = only_run_id()
    code, out, _ = cli(capsys, "step", flow, "double", "--from-run", run_id, "--input", "extract=[5, 6]")
    assert code == 0
    assert json.loads(out) == [10, 12]
    code, out, _ = cli(capsys, "step", flow, "total", "--from-run", run_id)
    assert json.loads(out) == 6


def test_step_output_to_a_file_keeps_what_it_prints_apart(capsys, here):
    flow = write(here / "flow.toml", FLOW)
    assert cli(capsys, "run", flow, "-q")[0] == 0
    code, out, _ = cli(capsys, "step", flow, "total", "--from-run", only_run_id(), "-o", str(here / "out.json"))
    assert code == 0 and out == ""
    assert json.loads((here / "out.json").read_text()) == 6
    code, _, err = cli(capsys, "step", flow, "total", "--from-run", only_run_id(), "-o", str(here / "no" / "x.json"))
    assert code == 2 and "cannot write" in err and "x.json" in err
    code, _, err = cli(capsys, "step", flow, "total", "--run-dir", str(here / "r"), "-o", str(here / "o.json"))
    assert code == 2 and "--output goes with --from-run" in err


def test_step_that_raises_exits_1_with_its_error(capsys, here, flags):
    flow = write(here / "flow.toml", CHECKED)
    assert cli(capsys, "run", flow, "-q", "-i", f"flags={flags}")[0] == 0
    (flags / "broken").touch()
    code, out, err = cli(capsys, "step", flow, "checked", "--from-run", only_run_id())
    assert code == 1 and out == ""
    assert "step 'checked' failed: ValueError: total 6 failed the check <b>" in err


def test_validate_and_graph(capsys, here):
    flow = write(here / "flow.toml", FLOW)
    code, out, _ = cli(capsys, "validate", flow)
    assert code == 0
    assert "flow 'cli-demo' is valid: 3 steps, inputs n" in out
    code, out, _ = cli(capsys, "graph", flow)
    assert out.startswith('digraph "cli-demo"') and '"extract" -> "double";' in out
    code, out, _ = cli(capsys, "graph", flow, "--format", "mermaid")
    assert out.startswith("flowchart")
    code, out, _ = cli(capsys, "graph", flow, "-f", "json")
    assert [n["name"] for n in json.loads(out)["nodes"]] == ["extract", "double", "total"]


def test_runs_filters_and_limits(capsys, here):
    flow = write(here / "flow.toml", FLOW)
    for _ in range(3):
        assert cli(capsys, "run", flow, "-q")[0] == 0
    code, out, _ = cli(capsys, "runs", "--json", "--limit", "2")
    runs = json.loads(out)
    assert len(runs) == 2 and all(r["flow"] == "cli-demo" for r in runs)
    assert runs[0]["source"] == os.path.abspath(flow)
    code, out, err = cli(capsys, "runs", "--flow", "other")
    assert code == 0 and out == "" and "no runs" in err


def test_prune(capsys, here):
    flow = write(here / "flow.toml", FLOW)
    for _ in range(3):
        assert cli(capsys, "run", flow, "-q")[0] == 0
    assert cli(capsys, "prune", "--keep-last", "1")[1] == "deleted 2 runs\n"
    assert cli(capsys, "prune", "--older-than", "0")[1] == "deleted 1 run\n"
    assert json.loads(cli(capsys, "runs", "--json")[1]) == []


def test_python_flows_by_file_and_by_module(capsys, here):
    write(here / "pyflow.py", "import microdag\nimport clisteps\n"
          "flow = microdag.Flow('py-demo')\nflow.add('extract', clisteps.extract)\n"
          "flow.add('double', clisteps.double)\n")
    code, out, _ = cli(capsys, "run", "pyflow.py", "--json")
    assert code == 0 and json.loads(out)["outputs"] == {"double": [0, 2, 4]}
    code, out, _ = cli(capsys, "run", "pyflow.py:flow", "--json", "-i", "n=1")
    assert json.loads(out)["outputs"] == {"double": [0]}
    monkey = here / "pkgflows"
    monkey.mkdir()
    (monkey / "__init__.py").write_text((here / "pyflow.py").read_text())
    sys.path.insert(0, str(here))
    try:
        code, out, _ = cli(capsys, "validate", "pkgflows:flow")
    finally:
        sys.path.remove(str(here))
    assert code == 0 and "flow 'py-demo' is valid: 2 steps" in out


# -- bad input: exit 2 and a message naming the problem ---------------------------------------------


def test_an_invalid_flow_file_reports_every_problem_and_runs_nothing(capsys, here):
    flow = write(here / "bad.toml", FLOW + '\n[steps.broken]\ncall = "clisteps:total"\nretries = "many"\ncolour = 1\n'
                 'depends_on = ["nowhere"]\n')
    code, out, err = cli(capsys, "run", flow)
    assert code == 2 and out == ""
    assert "bad.toml" in err and "retries" in err and "colour" in err and "nowhere" in err
    assert not (here / ".microdag").exists()
    assert cli(capsys, "validate", flow)[0] == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "missing.toml"], "missing.toml"),
        (["run", "flow.toml", "--store", "nowhere/x.db"], "nowhere"),
        (["run", "flow.toml", "--store", "ftp:thing"], "unknown store spec 'ftp:thing'"),
        (["run", "flow.toml", "--target", "nope"], "nope"),
        (["run", "flow.toml", "-i", "novalue"], "--input takes KEY=VALUE, not 'novalue'"),
        (["run", "flow.toml", "--inputs", "none.json"], "cannot read --inputs none.json"),
        (["run", "flow.toml", "-i", "x=1"], "x"),
        (["show", "r-unknown"], "no store at"),
        (["prune"], "prune needs --older-than DAYS and/or --keep-last N"),
    ],
)
def test_bad_input_exits_2_naming_it(capsys, here, argv, message):
    write(here / "flow.toml", FLOW)
    code, out, err = cli(capsys, *argv)
    assert code == 2, err
    assert message in err
    assert err.startswith("error:")


@pytest.mark.parametrize("argv", [
    ["show", "r-unknown"], ["logs", "r-unknown", "extract"], ["report", "r-unknown"],
    ["resume", "r-unknown"], ["step", "flow.toml", "total", "--from-run", "r-unknown"],
])
def test_an_unknown_run_exits_2_naming_it(capsys, here, argv):
    flow = write(here / "flow.toml", FLOW)
    assert cli(capsys, "run", flow, "-q")[0] == 0
    code, _, err = cli(capsys, *argv)
    assert code == 2
    assert "r-unknown" in err


@pytest.mark.parametrize(
    "extra, words",
    [
        ('[steps.a]\ncall = "clisteps:total"\ndepends_on = ["b"]\n[steps.b]\ncall = "clisteps:total"\n'
         'depends_on = ["a"]\n', ["cycle", "'a'", "'b'"]),
        ('[steps.gone]\ncall = "no_such_module_here:fn"\n', ["gone", "call", "no_such_module_here"]),
    ],
    ids=["cycle", "call-not-importable"],
)
def test_a_cycle_or_a_call_that_cannot_be_imported_exits_2(capsys, here, extra, words):
    flow = write(here / "bad.toml", FLOW + "\n" + extra)
    for command in ("run", "validate", "graph"):
        code, out, err = cli(capsys, command, flow)
        assert code == 2 and out == ""
        assert err.startswith("error: ") and err.count("bad.toml:") == 1  # the file and line, once
        for word in words:
            assert word in err


def test_a_file_that_is_not_a_store_is_refused_and_kept(capsys, here):
    (here / "notes.db").write_bytes(b"my notes, not a database" * 100)
    code, _, err = cli(capsys, "runs", "--store", "notes.db")
    assert code == 2 and "notes.db" in err
    assert (here / "notes.db").read_bytes() == b"my notes, not a database" * 100


def test_resume_of_a_run_started_from_python_needs_the_flow(capsys, here):
    import microdag

    flow = microdag.Flow("from-python")
    flow.add("extract", clisteps.extract)
    (here / ".microdag").mkdir()
    run = flow.run(store=DEFAULT_STORE)
    code, _, err = cli(capsys, "resume", run.id)
    assert code == 2
    assert "does not record which flow it ran" in err


def test_unknown_step_for_logs_and_step(capsys, here):
    flow = write(here / "flow.toml", FLOW)
    assert cli(capsys, "run", flow, "-q")[0] == 0
    run_id = only_run_id()
    code, _, err = cli(capsys, "logs", run_id, "nope")
    assert code == 2 and "no step named 'nope'" in err
    code, _, err = cli(capsys, "step", flow, "nope", "--from-run", run_id)
    assert code == 2 and "no step named 'nope'" in err


# -- progress -----------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self):
        return True


class Ev:
    def __init__(self, kind, step=None, status=None, attempt=1, duration=0.01, error=None):
        self.kind, self.step, self.status, self.attempt = kind, step, status, attempt
        self.duration, self.error, self.run_id = duration, error, "r-test"


class Clock:
    """A clock the test moves (the progress line's redraws depend on time)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def frames(term):
    """What a terminal showed, one redraw each (blank ones left out)."""
    return [f.rstrip() for f in term.getvalue().split("\r") if f.strip()]


@pytest.fixture
def columns(monkeypatch):
    """Sets the terminal's width, as ``COLUMNS`` does; 200 unless a test says otherwise."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return lambda n: monkeypatch.setenv("COLUMNS", str(n))


def test_progress_on_a_terminal_is_one_line_rewritten(columns):
    term, clock = Terminal(), Clock()
    progress = _Progress(4, 0, quiet=False, stream=term, clock=clock)
    progress(Ev("step_started", "a"))
    clock.now = 1.0
    progress(Ev("step_finished", "a", "succeeded"))
    progress(Ev("step_started", "b"))
    clock.now = 2.0
    progress(Ev("step_finished", "b", "failed", error=ValueError("x")))
    progress.close()
    text = term.getvalue()
    assert "\n" not in text
    shown = frames(term)
    assert any(f.startswith("1/4 steps done, 0 running") and "ETA" in f for f in shown)
    assert any(f.startswith("2/4 steps done, 0 running, 1 failed") for f in shown)
    assert text.endswith("\r")  # the line is cleared for the summary


def test_plain_progress_colours_only_on_a_terminal_without_no_color(monkeypatch):
    class Colour(Terminal):
        pass

    stream = io.StringIO()
    progress = _Progress(1, 0, quiet=False, stream=stream)
    progress(Ev("step_finished", "a", "failed", error=ValueError("bad\nmore")))
    progress.close()
    assert stream.getvalue() == "[1/1] a: failed in 10.0 ms: ValueError: bad ... more\n"
    monkeypatch.setenv("NO_COLOR", "1")
    term = Colour()
    progress = _Progress(1, 0, quiet=False, stream=term)
    progress(Ev("step_finished", "a", "succeeded"))
    progress.close()
    assert "\x1b[" not in term.getvalue()


# -- real processes -----------------------------------------------------------------------------


def test_python_dash_m_microdag_runs_a_flow_and_exits_with_its_status(here, flags):
    flow = write(here / "flow.toml", CHECKED)
    args = [sys.executable, "-m", "microdag", "run", flow, "-i", f"flags={flags}", "--json"]
    done = subprocess.run(args, capture_output=True, text=True, env=child_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outputs"] == {"checked": 7}
    (flags / "broken").touch()
    failed = subprocess.run(args, capture_output=True, text=True, env=child_env(), timeout=120)
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["status"] == "failed"
    version = subprocess.run([sys.executable, "-m", "microdag", "--version"], capture_output=True, text=True,
                             env=child_env())
    assert version.returncode == 0 and version.stdout.startswith("microdag ")


def test_ctrl_c_exits_130_records_cancelled_and_resume_finishes(here, flags):
    flow = write(here / "flow.toml", SLOW)
    (flags / "sleep").touch()
    proc = subprocess.Popen(
        [sys.executable, "-m", "microdag", "run", flow, "-i", f"flags={flags}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while clisteps.runs_of(str(flags), "slow") == 0:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the slow step never started"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    run_id = only_run_id()
    assert f"interrupted: run {run_id} is recorded as cancelled" in err
    store = SQLiteStore(DEFAULT_STORE)
    try:
        assert store.run_info(run_id).status == "cancelled"
    finally:
        store.close()
    (flags / "sleep").unlink()
    done = subprocess.run(
        [sys.executable, "-m", "microdag", "resume", run_id, "--json"],
        capture_output=True, text=True, env=child_env(), timeout=120,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "succeeded" and doc["outputs"] == {"slow": 6}
    assert clisteps.runs_of(str(flags), "slow") == 2


def test_the_report_is_html_with_one_node_per_step(capsys, here):
    flow = write(here / "flow.toml", FLOW)
    assert cli(capsys, "run", flow, "-q")[0] == 0
    run_id = only_run_id()
    code, out, _ = cli(capsys, "report", run_id)
    assert code == 0
    path = here / out.strip()
    assert path.name == f"report-{run_id}.html"

    class Nodes(HTMLParser):
        def __init__(self):
            super().__init__()
            self.nodes = {}

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "g" and a.get("class") == "node":
                self.nodes[a["data-step"]] = a["data-status"]

    parser = Nodes()
    parser.feed(path.read_text())
    assert parser.nodes == dict.fromkeys(["extract", "double", "total"], "succeeded")


# -- the end of a run: a summary and the outputs ------------------------------------------------


def test_run_ends_with_a_summary_and_the_outputs_of_the_final_steps(capsys, here):
    flow = write(here / "flow.toml", FLOW)
    code, out, err = cli(capsys, "run", flow, "-i", "n=4")
    assert code == 0, err
    assert out == "outputs:\n  total: 12\n"  # results on stdout
    summary = err.splitlines()[-1]
    assert summary.startswith(f"run {only_run_id()} of cli-demo: succeeded in ")
    assert summary.endswith(" (3 steps: 3 succeeded)")


def test_run_outputs_are_cut_to_one_short_line(capsys, here):
    flow = write(here / "flow.toml", FLOW)
    code, out, _ = cli(capsys, "run", flow, "-i", "n=500", "--target", "double", "--target", "extract")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "outputs:"
    assert {line.split(":")[0] for line in lines[1:]} == {"  double", "  extract"}
    for line in lines[1:]:
        assert len(line) <= 120 and line.endswith("...")
    assert lines[1].startswith("  double: [0, 2, 4, 6, 8, ")


def test_a_failed_run_counts_its_steps_and_quiet_keeps_only_the_failure(capsys, here, flags):
    flow = write(here / "flow.toml", AFTER_CHECKED)
    (flags / "broken").touch()
    code, out, err = cli(capsys, "run", flow, "-i", f"flags={flags}")
    assert code == 1 and out == ""  # the one final step did not run: no outputs
    assert "(5 steps: 3 succeeded, 1 failed, 1 skipped)" in err
    code, out, err = cli(capsys, "run", flow, "-i", f"flags={flags}", "--quiet")
    assert code == 1 and out == ""
    assert "checked: ValueError: total 6 failed the check <b>" in err
    assert not err.startswith("[")  # no progress


def test_quiet_silences_the_summary_and_outputs_of_a_resume(capsys, here, flags):
    flow = write(here / "flow.toml", CHECKED)
    (flags / "broken").touch()
    assert cli(capsys, "run", flow, "-q", "-i", f"flags={flags}")[0] == 1
    (flags / "broken").unlink()
    assert cli(capsys, "resume", only_run_id(), "--quiet") == (0, "", "")


def test_show_lists_the_inputs_and_each_steps_output(capsys, here):
    flow = write(here / "flow.toml", FLOW)
    assert cli(capsys, "run", flow, "-q", "-i", "n=4")[0] == 0
    code, out, _ = cli(capsys, "show", only_run_id())
    assert code == 0
    lines = out.splitlines()
    assert lines[lines.index("  inputs:") + 1] == "    n: 4"
    header = next(line for line in lines if line.startswith("STEP"))
    assert header.split() == ["STEP", "STATUS", "ATTEMPTS", "DURATION", "OUTPUT"]
    rows = {line.split()[0]: line for line in lines[lines.index(header) + 1:]}
    assert rows["extract"].endswith("  [0, 1, 2, 3]")
    assert rows["double"].endswith("  [0, 2, 4, 6]")
    assert rows["total"].endswith("  12")


def test_show_cuts_long_outputs_and_marks_steps_without_one(capsys, here, flags):
    flow = write(here / "flow.toml", CHECKED)
    (flags / "broken").touch()
    assert cli(capsys, "run", flow, "-q", "-i", "n=500", "-i", f"flags={flags}")[0] == 1
    code, out, _ = cli(capsys, "show", only_run_id())
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert rows["double"].endswith("...") and "[0, 2, 4, 6, " in rows["double"] and len(rows["double"]) < 120
    assert rows["checked"].split()[1] == "failed" and rows["checked"].split()[-1] == "-"
    assert "  inputs:" in out and f'    flags: "{flags}"' in out


def test_show_step_prints_its_whole_output(capsys, here):
    flow = write(here / "flow.toml", FLOW)
    assert cli(capsys, "run", flow, "-q", "-i", "n=500")[0] == 0
    run_id = only_run_id()
    code, out, _ = cli(capsys, "show", run_id, "double")
    assert code == 0
    assert json.loads(out) == [2 * x for x in range(500)]
    code, out, _ = cli(capsys, "show", run_id, "total", "--json")
    assert code == 0 and json.loads(out) == 249500


def test_show_step_of_an_unknown_step_or_one_without_output_exits_2(capsys, here, flags):
    flow = write(here / "flow.toml", AFTER_CHECKED)
    (flags / "broken").touch()
    assert cli(capsys, "run", flow, "-q", "-i", f"flags={flags}")[0] == 1
    run_id = only_run_id()
    code, out, err = cli(capsys, "show", run_id, "nope")
    assert (code, out) == (2, "")
    assert err == f"error: run {run_id} has no step named 'nope'\n"
    code, out, err = cli(capsys, "show", run_id, "again")
    assert (code, out) == (2, "")
    assert err.startswith(f"error: step 'again' of run {run_id} has no output: it is ")


def test_show_step_of_a_failed_step_prints_its_error_and_exits_1(capsys, here, flags):
    flow = write(here / "flow.toml", CHECKED)
    (flags / "broken").touch()
    assert cli(capsys, "run", flow, "-q", "-i", f"flags={flags}")[0] == 1
    run_id = only_run_id()
    code, out, err = cli(capsys, "show", run_id, "checked")
    assert (code, err) == (1, "")
    assert out.startswith(f"step 'checked' of run {run_id}: failed after 1 attempt\n")
    assert "ValueError: total 6 failed the check <b>" in out and 'File "' in out


def test_show_json_has_the_inputs_and_every_output(capsys, here, flags):
    flow = write(here / "flow.toml", CHECKED)
    (flags / "broken").touch()
    assert cli(capsys, "run", flow, "-q", "-i", f"flags={flags}")[0] == 1
    code, out, _ = cli(capsys, "show", only_run_id(), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["inputs"]["flags"] == str(flags)
    assert doc["outputs"] == {"extract": [0, 1, 2], "double": [0, 2, 4], "total": 6}
    outputs = {t["step"]: t.get("output", "none") for t in doc["tasks"]}
    assert outputs == {"extract": [0, 1, 2], "double": [0, 2, 4], "total": 6, "checked": "none"}


def test_show_json_has_the_output_of_each_map_item(capsys, here):
    flow = write(here / "flow.toml", MAPPED)
    assert cli(capsys, "run", flow, "-q")[0] == 0
    doc = json.loads(cli(capsys, "show", only_run_id(), "--json")[1])
    assert doc["outputs"]["square"] == [0, 1, 4]
    assert [(t["item"], t["output"]) for t in doc["tasks"] if t["step"] == "square" and t["item"] is not None] == [
        (0, 0), (1, 1), (2, 4)
    ]


# -- errors of several lines (a command's stderr) ------------------------------------------------


def test_a_failed_command_shows_the_end_of_its_stderr(capsys, here):
    flow = write(here / "loud.toml", LOUD)
    code, out, err = cli(capsys, "run", flow, "-i", f"python={sys.executable}")
    assert code == 1 and out == ""
    # the plain progress line: the first line of the message and the last of its stderr
    [line] = [line for line in err.splitlines() if line.startswith("[1/1] loud: failed")]
    assert "CommandError: command " in line and "exited with code 3" in line
    assert line.endswith(" ... last: disk full")
    # the summary: the whole message, indented
    assert "\n  loud: CommandError: command " in err
    assert "stderr:\n    first problem\n    second problem\n    last: disk full\n" in err
    code, out, _ = cli(capsys, "show", only_run_id())
    assert code == 0
    errors = out[out.index("\nerrors:\n"):]
    assert errors.startswith("\nerrors:\n  loud: CommandError: command ")
    assert errors.endswith("stderr:\n    first problem\n    second problem\n    last: disk full\n")


# -- logs of map steps ------------------------------------------------------------------------------


def test_logs_of_a_map_step_need_an_item_that_exists(capsys, here):
    flow = write(here / "flow.toml", MAPPED)
    assert cli(capsys, "run", flow, "-q")[0] == 0
    run_id = only_run_id()
    code, out, err = cli(capsys, "logs", run_id, "square")
    assert (code, out) == (2, "")
    assert err == "error: step 'square' is a map step with items 0, 1, 2: pass --item N\n"
    code, out, err = cli(capsys, "logs", run_id, "square", "--item", "7")
    assert (code, out) == (2, "")
    assert err == f"error: step 'square' of run {run_id} has no item 7: its items are 0, 1, 2\n"
    code, out, _ = cli(capsys, "logs", run_id, "square", "--item", "1")
    assert code == 0 and "squaring 1" in out
    # a batch is kept under the index of its first item
    code, _, err = cli(capsys, "logs", run_id, "squares", "--item", "1")
    assert code == 2 and "no item 1: its items are 0, 2" in err
    code, out, _ = cli(capsys, "logs", run_id, "squares", "--item", "2")
    assert code == 0 and "squaring [2]" in out
    code, out, err = cli(capsys, "logs", run_id, "extract", "--item", "0")
    assert (code, out) == (2, "")
    assert "has no item 0: it is not a map step" in err


def test_logs_name_many_items_briefly(capsys, here):
    flow = write(here / "flow.toml", MAPPED)
    assert cli(capsys, "run", flow, "-q", "-i", "n=20")[0] == 0
    code, _, err = cli(capsys, "logs", only_run_id(), "square")
    assert code == 2
    assert "with items 0, 1, 2, ..., 19 (20 items): pass --item N" in err


# -- the progress line on a terminal -----------------------------------------------------------------


def columns_of(text):
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def test_the_progress_line_never_exceeds_the_terminal(columns):
    columns(32)
    term, clock = Terminal(), Clock()
    progress = _Progress(12, 0, quiet=False, stream=term, clock=clock)
    for k in range(12):
        clock.now += 1
        progress(Ev("step_started", f"a_step_with_a_long_name_{k}"))
    for k in range(12):
        clock.now += 1
        progress(Ev("step_finished", f"a_step_with_a_long_name_{k}", "failed", error=ValueError("x")))
    progress.close()
    text = term.getvalue()
    assert "\n" not in text
    assert max(len(f) for f in text.split("\r")) == 31
    assert frames(term)[-1] == "12/12 steps done, 0 running, 12"


def test_the_progress_line_names_the_running_steps_as_many_as_fit(columns):
    term, clock = Terminal(), Clock()
    progress = _Progress(5, 0, quiet=False, stream=term, clock=clock)
    for name in ("fetch", "parse", "index"):
        clock.now += 1
        progress(Ev("step_started", name))
    assert frames(term)[-1] == "0/5 steps done, 3 running, 3.00 s | fetch, parse, index"
    columns(60)
    clock.now += 1
    progress(Ev("step_started", "a_long_step_name"))
    assert frames(term)[-1] == "0/5 steps done, 4 running, 4.00 s | fetch, parse, +2 more"
    columns(66)
    clock.now += 1
    progress(Ev("step_finished", "fetch", "succeeded"))
    assert frames(term)[-1] == "1/5 steps done, 3 running, 5.00 s, ETA 20.00 s | parse, +2 more"
    progress.close()


def test_the_progress_line_counts_wide_characters_as_two_columns(columns):
    columns(60)
    term, clock = Terminal(), Clock()
    progress = _Progress(5, 0, quiet=False, stream=term, clock=clock)
    clock.now += 1
    progress(Ev("step_started", "データを読み込む"))
    assert frames(term)[-1].endswith(" | データを読み込む")
    clock.now += 1
    progress(Ev("step_started", "x"))  # now "+1 more" would not fit after the wide name
    assert frames(term)[-1] == "0/5 steps done, 2 running, 2.00 s"
    progress.close()
    assert max(columns_of(f) for f in term.getvalue().split("\r")) <= 59


def test_the_progress_line_is_redrawn_at_most_ten_times_a_second_and_ends_on_the_final_state(columns):
    term, clock = Terminal(), Clock()
    progress = _Progress(5001, 0, quiet=False, stream=term, clock=clock)
    for k in range(5001):
        clock.now += 0.001
        progress(Ev("step_started", f"s{k}"))
        progress(Ev("step_finished", f"s{k}", "succeeded"))
    progress.close()
    shown = frames(term)
    assert len(shown) <= 5.001 * 10 + 2  # was a redraw per event: 10,002
    assert shown[-1].startswith("5001/5001 steps done, 0 running, 5.00 s")


def test_the_progress_line_draws_the_end_of_the_run_at_once(columns):
    term, clock = Terminal(), Clock()
    progress = _Progress(2, 0, quiet=False, stream=term, clock=clock)
    progress(Ev("step_started", "a"))
    progress(Ev("step_finished", "a", "succeeded"))
    progress(Ev("step_started", "b"))
    progress(Ev("step_finished", "b", "succeeded"))  # all within the same instant: throttled
    progress(Ev("run_finished", status="succeeded"))
    assert frames(term)[-1].startswith("2/2 steps done, 0 running")
    progress.close()


def test_the_eta_does_not_grow_while_a_long_step_runs(columns):
    term, clock = Terminal(), Clock()
    progress = _Progress(3, 0, quiet=False, stream=term, clock=clock)
    progress(Ev("step_started", "quick"))
    clock.now = 2.0
    progress(Ev("step_finished", "quick", "succeeded"))
    progress(Ev("step_started", "long"))
    etas = []
    for now in (2.5, 3.0, 4.0, 5.5, 6.0, 30.0):
        clock.now = now
        with progress.lock:
            progress._draw()
        eta = frames(term)[-1].partition(", ETA ")[2].partition(" |")[0]
        etas.append(eta)
    progress.close()
    assert etas == ["3.50 s", "3.00 s", "2.00 s", "500.0 ms", "", ""]


def test_running_counts_the_steps_started_and_not_finished(columns):
    term, clock = Terminal(), Clock()
    progress = _Progress(5, 1, quiet=False, stream=term, clock=clock)

    def shown():
        clock.now += 1
        with progress.lock:
            progress._draw()
        return frames(term)[-1]

    progress(Ev("step_started", "resumed", attempt=2))  # a resumed step that failed before
    assert "1 running" in shown() and shown().endswith(" | resumed")
    progress(Ev("step_retrying", "resumed", attempt=2, duration=1.0))
    progress(Ev("step_started", "resumed", attempt=3))
    progress(Ev("step_started", "other"))
    assert "2 running" in shown() and shown().endswith(" | resumed, other")
    progress(Ev("step_finished", "other", "cancelled", attempt=None))  # cancelled while it ran
    progress(Ev("step_finished", "later", "skipped", attempt=None))  # skipped before it started
    assert "1 running" in shown() and shown().endswith(" | resumed")
    progress(Ev("step_finished", "resumed", "succeeded", attempt=3))
    assert shown().startswith("4/5 steps done, 0 running")
    progress.close()


# -- --force, as the command line spells it ---------------------------------------------------------


def test_resume_of_a_changed_flow_says_force_as_the_cli_spells_it(capsys, here, flags):
    flow = write(here / "flow.toml", CHECKED)
    (flags / "broken").touch()
    assert cli(capsys, "run", flow, "-q", "-i", f"flags={flags}")[0] == 1
    run_id = only_run_id()
    write(here / "flow.toml", AFTER_CHECKED)
    (flags / "broken").unlink()
    code, _, err = cli(capsys, "resume", run_id)
    assert code == 2
    assert "resume it with --force to run it anyway" in err and "force=True" not in err
    code, _, err = cli(capsys, "resume", run_id, "--force")
    assert code == 0, err


def test_resume_of_a_run_live_elsewhere_says_force_as_the_cli_spells_it(capsys, here, flags):
    flow = write(here / "flow.toml", CHECKED)
    (flags / "broken").touch()
    assert cli(capsys, "run", flow, "-q", "-i", f"flags={flags}")[0] == 1
    run_id = only_run_id()
    (flags / "broken").unlink()
    holder = SQLiteStore(DEFAULT_STORE)
    try:
        holder.claim(run_id)  # as a process resuming it would
        code, _, err = cli(capsys, "resume", run_id)
        assert code == 2
        assert "is live in another process" in err and "resume it with --force if that process is gone" in err
        code, _, err = cli(capsys, "resume", run_id, "--force")
        assert code == 0, err
    finally:
        holder.release(run_id)
        holder.close()


# -- --codec ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "resume", "step", "runs", "show", "logs", "prune", "report"])
def test_every_command_with_a_store_takes_a_codec(capsys, command):
    code, out, _ = cli(capsys, command, "--help")
    assert code == 0
    assert "--codec {json,pickle}" in out and "trusted" in out


def test_the_pickle_codec_keeps_what_json_cannot(capsys, here):
    flow = write(here / "flow.toml", UNIQUE)
    code, _, err = cli(capsys, "run", flow, "--store", "json.db")
    assert code == 1 and "it holds a set" in err
    code, out, err = cli(capsys, "run", flow, "--store", "pickled.db", "--codec", "pickle")
    assert code == 0, err
    assert out == "outputs:\n  total: 6\n  unique: {0, 1, 2}\n"  # not JSON: its repr
    run_id = only_run_id("pickled.db", codec="pickle")
    code, out, err = cli(capsys, "show", run_id, "--store", "pickled.db")
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and "--codec pickle" in err
    pickled = ["--store", "pickled.db", "--codec", "pickle"]
    code, out, _ = cli(capsys, "show", run_id, *pickled)
    assert code == 0
    assert any(line.startswith("unique ") and line.endswith("  {0, 1, 2}") for line in out.splitlines())
    assert cli(capsys, "show", run_id, "unique", *pickled)[:2] == (0, "{0, 1, 2}\n")
    assert cli(capsys, "show", run_id, "unique", "--json", *pickled)[:2] == (0, '"{0, 1, 2}"\n')
    doc = json.loads(cli(capsys, "show", run_id, "--json", *pickled)[1])
    assert doc["outputs"] == {"extract": [0, 1, 2], "double": [0, 2, 4], "total": 6, "unique": "{0, 1, 2}"}
    for argv in (["runs"], ["logs", run_id, "extract"], ["report", run_id, "-o", "r.html"],
                 ["step", flow, "unique", "--from-run", run_id]):
        code, out, err = cli(capsys, *argv, *pickled)
        assert code == 0, (argv, err)


def test_the_resume_hint_names_the_codec(capsys, here, flags):
    flow = write(here / "flow.toml", CHECKED)
    (flags / "broken").touch()
    code, _, err = cli(capsys, "run", flow, "-i", f"flags={flags}", "--store", "p.db", "--codec", "pickle")
    assert code == 1
    run_id = only_run_id("p.db", codec="pickle")
    assert f"resume with: python -m microdag resume {run_id} --store p.db --codec pickle" in err
    (flags / "broken").unlink()
    code, _, err = cli(capsys, "resume", run_id, "--store", "p.db", "--codec", "pickle")
    assert code == 0, err


def test_show_summarises_a_run_of_100000_steps(capsys, here):
    """Counts, the failures and the first rows; --all lists every task."""
    flow = microdag.Flow("wide")

    def ok(**deps):
        return 1

    def boom(**deps):
        raise ValueError("boom")

    for i in range(100_000):
        flow.add(f"s{i}", boom if i in (15, 70_003) else ok, depends_on=[f"s{i - 1}"] if i % 10 else [])
    store = SQLiteStore(str(here / "big.db"))
    run = flow.run(store=store, on_failure="continue", raise_on_failure=False)
    store.close()
    code, out, _ = cli(capsys, "show", run.id, "--store", here / "big.db")
    assert code == 0
    assert "tasks: 100,000 (99,988 succeeded, 10 skipped, 2 failed); shown: the first 20" in out
    table = [line.split()[0] for line in out.splitlines() if line[:1] == "s" and line.split()[0][1:].isdigit()]
    assert len(table) == 22 and {"s15", "s70003"} <= set(table)
    assert "s15: ValueError: boom" in out and "s70003: ValueError: boom" in out
    code, out, _ = cli(capsys, "show", run.id, "--store", here / "big.db", "--all")
    assert code == 0 and "tasks: 100,000" not in out
    assert sum(1 for line in out.splitlines() if line[:1] == "s" and line.split()[0][1:].isdigit()) == 100_000


# -- inline steps ------------------------------------------------------------------------------

INLINE = Path(__file__).resolve().parent / "flowfiles" / "inline.toml"


def test_validate_names_the_flow_files_line_of_bad_inline_code(capsys, here):
    flow = write(here / "flow.toml", INLINE.read_text(encoding="utf-8"))
    code, out, err = cli(capsys, "validate", flow)
    assert code == 0 and "is valid: 4 steps" in out + err
    text = INLINE.read_text(encoding="utf-8").replace("def total(each, scaled):", "def total(each, scaled:")
    bad = write(here / "bad.toml", text)
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "def total(each, scaled:" in t)
    code, _, err = cli(capsys, "validate", bad)
    assert code == 2 and "Traceback" not in err
    assert f"bad.toml:{line}: step 'total': python: syntax error" in err


def test_step_from_run_runs_a_steps_inline_code(capsys, here):
    flow = write(here / "flow.toml", INLINE.read_text(encoding="utf-8"))
    assert cli(capsys, "run", flow, "-q")[0] == 0
    run_id = only_run_id()
    code, out, err = cli(capsys, "step", flow, "total", "--from-run", run_id)
    assert code == 0, err
    assert json.loads(out) == 39
    code, out, _ = cli(capsys, "step", flow, "scaled", "--from-run", run_id, "--input", "numbers=[10]")
    assert json.loads(out) == [30]
