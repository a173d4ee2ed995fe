"""What a new user trips on in the first minutes: a misspelt parameter or
target, a float input given NaN.  Each of these once passed silently."""

import math
import os
import pickle
from typing import Annotated

import pytest

import microdag
from microdag._result import busy_seconds


def _prices_flow(**flow_options: object) -> microdag.Flow:
    flow = microdag.Flow("prices", **flow_options)  # type: ignore[arg-type]

    @flow.step
    def price(data_dir: str) -> list[int]:
        return [1, 2, 3]

    @flow.step
    def aggregate(prices: list[int]) -> int:  # 'prices': meant to be step 'price'
        return sum(prices)

    return flow


MISSPELT = "parameter 'prices' of step 'aggregate' matches no step; did you mean step 'price'?"


def test_validate_names_a_parameter_that_looks_like_a_misspelt_step() -> None:
    with pytest.raises(microdag.FlowError) as caught:
        _prices_flow().validate()
    assert MISSPELT in str(caught.value)
    assert len(caught.value.problems) == 1


def test_run_says_the_misspelling_instead_of_a_missing_input() -> None:
    with pytest.raises(microdag.FlowError) as caught:
        _prices_flow().run({"data_dir": "."})
    assert MISSPELT in str(caught.value)
    assert "needs input 'prices'" not in str(caught.value)


def test_an_input_the_user_means_is_declared_or_given_and_nothing_is_said() -> None:
    declared = _prices_flow(inputs={"prices": {"type": "array"}})
    declared.validate()
    assert declared.run({"data_dir": ".", "prices": [4, 5]})["aggregate"] == 9
    _prices_flow(inputs=["prices"]).validate()
    assert _prices_flow().run({"data_dir": ".", "prices": [1]})["aggregate"] == 1  # given: meant


def test_a_declared_input_is_checked_against_its_schema() -> None:
    flow = _prices_flow(inputs={"prices": {"type": "array"}})
    with pytest.raises(microdag.FlowError, match="input 'prices': expected a list"):
        flow.run({"data_dir": ".", "prices": 3})


@pytest.mark.parametrize("bad", [{"1x": {}}, {"x": 3}, [3]])
def test_bad_declared_inputs_are_refused_naming_them(bad: object) -> None:
    with pytest.raises(microdag.FlowError, match="flow 'f'"):
        microdag.Flow("f", inputs=bad)  # type: ignore[arg-type]


def test_an_input_unlike_any_step_is_an_ordinary_required_input() -> None:
    flow = microdag.Flow("f")
    flow.add("load", lambda source: source)
    flow.validate()
    with pytest.raises(microdag.FlowError, match="step 'load' needs input 'source'"):
        flow.run()


def test_a_misspelt_target_suggests_the_nearest_step() -> None:
    flow = _prices_flow(inputs=["prices"])
    with pytest.raises(microdag.FlowError, match="no step named 'agregate'; did you mean step 'aggregate'"):
        flow.run({"data_dir": ".", "prices": []}, targets=["agregate"])


def test_nothing_near_suggests_nothing() -> None:
    flow = _prices_flow(inputs=["prices"])
    with pytest.raises(microdag.FlowError) as caught:
        flow.run({"data_dir": ".", "prices": []}, targets=["zzzzzzzz"])
    assert "did you mean" not in str(caught.value)


def _number_flow(annotation: object) -> microdag.Flow:
    flow = microdag.Flow("numbers")

    def scale(x):  # type: ignore[no-untyped-def]
        return x * 2

    scale.__annotations__ = {"x": annotation}
    flow.add("scale", scale)
    return flow


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_float_input_refuses_nan_and_infinity(value: float) -> None:
    with pytest.raises(microdag.FlowError, match="input 'x': expected a finite number"):
        _number_flow(float).run({"x": value})
    with pytest.raises(microdag.FlowError, match="ALLOW_INF_NAN"):  # and says how to allow them
        _number_flow(float | None).run({"x": value})


def test_an_annotation_allows_nan_and_infinity() -> None:
    flow = _number_flow(Annotated[float, microdag.ALLOW_INF_NAN])
    assert flow.run({"x": math.inf})["scale"] == math.inf
    assert math.isnan(flow.run({"x": math.nan})["scale"])
    assert flow.input_schema()["properties"]["x"]["x-allow-inf-nan"] is True
    assert _number_flow(Annotated[list[float], microdag.ALLOW_INF_NAN]).run({"x": [math.nan]})


def test_finite_floats_and_untyped_inputs_are_untouched() -> None:
    assert _number_flow(float).run({"x": 1.5})["scale"] == 3.0
    flow = microdag.Flow("untyped")
    flow.add("scale", lambda x: x)
    assert math.isnan(flow.run({"x": math.nan})["scale"])


def test_the_marker_pickles_as_itself() -> None:
    assert pickle.loads(pickle.dumps(microdag.ALLOW_INF_NAN)) is microdag.ALLOW_INF_NAN


def test_a_flow_file_input_allows_nan_only_when_it_says_so(tmp_path) -> None:
    text = '''[flow]
name = "numbers"

[inputs]
x = {{ type = "number"{allow} }}

[steps.scale]
command = ["echo", "{{inputs.x}}"]
'''
    (tmp_path / "strict.toml").write_text(text.format(allow=""))
    (tmp_path / "loose.toml").write_text(text.format(allow=", allow_inf_nan = true"))
    with pytest.raises(microdag.FlowError, match="expected a finite number"):
        microdag.load_flow(str(tmp_path / "strict.toml")).run({"x": math.nan})
    loose = microdag.load_flow(str(tmp_path / "loose.toml"))
    assert loose.run({"x": math.inf})["scale"].strip() == "Infinity"  # (a placeholder is written as JSON)
    (tmp_path / "bad.toml").write_text(text.format(allow=", allow_inf_nan = 1"))
    with pytest.raises(microdag.FlowError, match="allow_inf_nan must be true or false"):
        microdag.load_flow(str(tmp_path / "bad.toml"))


def test_the_command_line_refuses_nan_for_a_float_input(tmp_path) -> None:
    from support import run_cli

    (tmp_path / "typed.toml").write_text(
        '[flow]\nname = "typed"\n\n[inputs]\nx = { type = "number" }\n\n[steps.echo]\ncommand = ["echo", "{inputs.x}"]\n'
    )
    done = run_cli("run", "typed.toml", "-i", "x=NaN", "--store", "memory", cwd=tmp_path)
    assert done.returncode == 2 and "expected a finite number" in done.stderr and "Traceback" not in done.stderr


# -- a failed step's traceback, from the command line ------------------------------------------

FAILING = '''\
import microdag

flow = microdag.Flow("failing")


def inner(prices):
    print("summing", prices)
    return sum(prices)


@flow.step
def price():
    return 3


@flow.step
def aggregate(price):
    return inner(price)
'''


@pytest.fixture
def failed_run(tmp_path):
    from support import run_cli

    (tmp_path / "failing.py").write_text(FAILING)
    done = run_cli("run", "failing.py", "--store", "runs.db", cwd=tmp_path)
    assert done.returncode == 1
    run_id = done.stderr.split("run ", 2)[-1].split()[0]
    return tmp_path, run_id, done.stderr


def test_the_failure_summary_points_to_the_traceback(failed_run) -> None:
    where, run_id, err = failed_run
    assert f"its traceback: python -m microdag show {run_id} aggregate --store runs.db" in err


def test_show_of_a_failed_step_prints_its_traceback_steps_frames_first(failed_run) -> None:
    from support import run_cli

    where, run_id, _ = failed_run
    done = run_cli("show", run_id, "aggregate", "--store", "runs.db", cwd=where)
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert out.startswith(f"step 'aggregate' of run {run_id}: failed after 1 attempt")
    assert "Traceback (most recent call last)" in out and "TypeError: 'int' object is not iterable" in out
    frames = [line for line in out.splitlines() if line.lstrip().startswith('File "')]
    assert "failing.py" in frames[0] and "in aggregate" in frames[0]  # the step's own frame first
    assert "in inner" in frames[1] and len(frames) == 2  # and no frame of microdag's runner
    done = run_cli("show", run_id, "aggregate", "--store", "runs.db", "--json", cwd=where)
    assert done.returncode == 1
    import json

    document = json.loads(done.stdout)
    assert document["status"] == "failed" and document["error"]["type"] == "TypeError"
    assert "in inner" in document["error"]["traceback"]


def test_logs_of_a_failed_step_ends_with_its_error(failed_run) -> None:
    from support import run_cli

    where, run_id, _ = failed_run
    done = run_cli("logs", run_id, "aggregate", "--store", "runs.db", cwd=where)
    assert done.returncode == 0, done.stderr
    printed, _, ending = done.stdout.partition("[failed on attempt 1]\n")
    assert printed == "summing 3\n"
    assert "in inner" in ending and "TypeError: 'int' object is not iterable" in ending


def test_a_step_that_failed_in_a_worker_process_keeps_its_traceback(tmp_path) -> None:
    from support import run_cli

    (tmp_path / "failing.py").write_text(FAILING)
    done = run_cli("run", "failing.py", "--store", "runs.db", "--executor", "processes", cwd=tmp_path, timeout=120)
    assert done.returncode == 1, done.stderr
    run_id = done.stderr.split("run ", 2)[-1].split()[0]
    out = run_cli("show", run_id, "aggregate", "--store", "runs.db", cwd=tmp_path).stdout
    frames = [line for line in out.splitlines() if line.lstrip().startswith('File "')]
    assert len(frames) == 2 and "in aggregate" in frames[0] and "in inner" in frames[1], out


# -- a map step's items as they finish ---------------------------------------------------------


def _double(x):
    return 2 * x


def _odd_fails(x):
    if x % 2:
        raise ValueError(x)
    return x


def _ten():
    return list(range(10))


def _double_all(x):
    return [2 * v for v in x]


@pytest.mark.parametrize("batch_size", [None, 3])
def test_a_map_step_reports_its_items_as_they_end(executor, batch_size) -> None:
    flow = microdag.Flow("items")
    flow.add("xs", _ten)
    if batch_size is None:
        flow.add("doubled", _double, map="x", inputs={"x": "xs"})
    else:
        flow.add("doubled", _double_all, map="x", inputs={"x": "xs"}, batch_size=batch_size)
    seen = []
    run = flow.run(executor=executor, hooks=[lambda e: seen.append(e.items) if e.kind == "step_progress" else None])
    assert run["doubled"] == [2 * x for x in range(10)]
    assert max(seen) == (10, 10) and all(total == 10 for _, total in seen)  # (threads may tell out of order)
    assert len(seen) == (10 if batch_size is None else 4)  # once per item, or per batch


def test_failed_items_count_as_ended() -> None:
    flow = microdag.Flow("items")
    flow.add("xs", lambda: list(range(4)))
    flow.add("odd", _odd_fails, map="x", inputs={"x": "xs"})
    seen = []
    flow.run(on_failure="continue", raise_on_failure=False,
             hooks=[lambda e: seen.append(e.items) if e.kind == "step_progress" else None])
    assert max(seen) == (4, 4)


def test_the_progress_line_shows_a_map_steps_items() -> None:
    import io

    from microdag._events import Event
    from microdag.cli._progress import Progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    progress = Progress(2, 0, False, stream=stream)
    progress(Event("step_started", "r", "f", "embed", attempt=1))
    progress(Event("step_progress", "r", "f", "embed", items=(40, 100)))
    progress._draw()
    progress.close()
    assert "embed 40/100" in stream.getvalue()


# -- after a resume, and what steps print ----------------------------------------------------


def test_running_time_is_the_union_of_the_steps_times() -> None:
    from microdag._records import busy_time

    assert busy_time([(0.0, 3.0), (1.0, 2.0), (2.0, 4.0)]) == 4.0  # overlapping: counted once
    assert busy_time([(100.0, 100.5), (1.0, 1.5)]) == 1.0  # idle between: not counted
    assert busy_time([(None, 1.0), (5.0, None)]) == 0.0  # unfinished or never started: nothing


def test_a_runs_duration_shows_its_running_time_when_it_idled() -> None:
    from microdag.cli._common import took

    assert took(16.3, 0.015) == "16.30 s (15.0 ms running)"
    assert took(0.5, 0.4) == "500.0 ms"  # about the same: one figure
    assert took(None, None) == "-"


def test_a_resumed_run_counts_its_steps_time_not_the_wait(tmp_path, capsys) -> None:
    import time

    from microdag.stores import SQLiteStore

    marks = tmp_path / "ready"
    flow = microdag.Flow("later")
    flow.add("first", lambda: 1)
    flow.add("second", lambda first, ready: first if os.path.exists(ready) else 1 / 0)
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        run = flow.run({"ready": str(marks)}, store=store, raise_on_failure=False)
        time.sleep(1.2)
        marks.touch()
        again = flow.run({"ready": str(marks)}, store=store, run_id=run.id, resume=True)
        assert again.duration < 1.0 and busy_seconds(again) <= again.duration  # this sitting's
        info = store.run_info(run.id)
        assert info.finished - info.started > 1.2  # the record's: from the first start
    finally:
        store.close()
    from support import cli

    code, out, _ = cli(capsys, "show", run.id, "--store", str(tmp_path / "runs.db"))
    assert code == 0 and " running)" in out.splitlines()[1], out  # took 1.2 s (N ms running)


def test_echo_shows_what_steps_print_and_keeps_it(tmp_path) -> None:
    from support import run_cli

    (tmp_path / "loud.py").write_text(
        "import logging\nimport microdag\nflow = microdag.Flow('loud')\n\n\n@flow.step\ndef a():\n"
        "    print('hello from a')\n    logging.getLogger('x').warning('careful in a')\n    return 1\n"
    )
    for executor in ("inline", "processes"):
        done = run_cli("run", "loud.py", "--store", "runs.db", "--echo", "--executor", executor, cwd=tmp_path,
                       timeout=120)
        assert done.returncode == 0, done.stderr
        assert "hello from a" in done.stdout and "careful in a" in done.stderr
        run_id = done.stderr.split("run ", 1)[1].split()[0]
        kept = run_cli("logs", run_id, "a", "--store", "runs.db", cwd=tmp_path).stdout
        assert "hello from a" in kept and "careful in a" in kept
    quiet = run_cli("run", "loud.py", "--store", "runs.db", cwd=tmp_path)
    assert "hello from a" not in quiet.stdout + quiet.stderr  # without --echo: kept only


def test_the_resume_banner_counts_map_items_too(tmp_path) -> None:
    from support import run_cli

    (tmp_path / "items.py").write_text(
        "import os\nimport microdag\nflow = microdag.Flow('items')\n\n\n@flow.step\ndef xs():\n"
        "    return list(range(5))\n\n\n@flow.step(map='x', inputs={'x': 'xs'})\ndef each(x):\n"
        "    if x == 3 and not os.path.exists('ok'):\n        raise ValueError(x)\n    return x\n"
    )
    done = run_cli("run", "items.py", "--store", "runs.db", "--on-failure", "continue", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    run_id = done.stderr.split("run ", 1)[1].split()[0]
    (tmp_path / "ok").touch()
    again = run_cli("resume", run_id, "--store", "runs.db", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"resuming run {run_id} of items: 1 step and 4 map items succeeded before" in again.stderr


def test_a_resume_given_an_input_only_finished_steps_take_says_it_was_kept(tmp_path) -> None:
    import warnings

    from microdag.stores import SQLiteStore

    flag = tmp_path / "go"
    flow = microdag.Flow("release")
    flow.add("build", lambda version: f"artifact-{version}")
    flow.add("publish", lambda build, go: build if os.path.exists(go) else 1 / 0)
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        run = flow.run({"version": "1.0", "go": str(flag)}, store=store, raise_on_failure=False)
        flag.touch()
        with pytest.warns(UserWarning, match=r"input 'version' was given as '2\.0', but only steps the run "
                                             r"finished take it \('build'\).*recorded '1\.0'") as caught:
            again = flow.run({"version": "2.0", "go": str(flag)}, store=store, run_id=run.id, resume=True)
        assert caught[0].filename == __file__  # pointed at the caller's line
        assert again["publish"] == "artifact-1.0"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the recorded inputs again, or none given: nothing to say
            flow.run({"version": "1.0", "go": str(flag)}, store=store, run_id=run.id, resume=True)
            flow.run(store=store, run_id=run.id, resume=True)
    finally:
        store.close()


def test_a_misspelt_target_on_the_command_line_lists_the_steps_and_suggests_one(tmp_path) -> None:
    from support import run_cli

    (tmp_path / "flow.py").write_text(FAILING)
    done = run_cli("run", "flow.py", "--target", "agregate", "--store", "memory", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr == ("error: --target agregate: flow 'failing' has no step named 'agregate'; "
                           "did you mean 'aggregate'? (its steps: price, aggregate)\n")


def test_a_misspelt_parameter_in_a_flow_file_names_its_line(tmp_path) -> None:
    from support import run_cli

    (tmp_path / "mod.py").write_text("def price():\n    return [1]\n\n\ndef aggregate(prices):\n    return prices\n")
    (tmp_path / "flow.toml").write_text('[flow]\nname = "f"\n\n[steps.price]\ncall = "mod:price"\n\n'
                                        '[steps.aggregate]\ncall = "mod:aggregate"\n')
    done = run_cli("validate", "flow.toml", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: flow.toml:8: parameter 'prices' of step 'aggregate' matches no step; "
                                  "did you mean step 'price'?")
    (tmp_path / "flow.toml").write_text('[flow]\nname = "f"\n\n[inputs]\nprices = {type = "array"}\n\n'
                                        '[steps.price]\ncall = "mod:price"\n\n[steps.aggregate]\n'
                                        'call = "mod:aggregate"\n')
    assert run_cli("validate", "flow.toml", cwd=tmp_path).returncode == 0  # declared: meant


def test_every_command_given_a_misspelt_step_suggests_one_and_lists_the_steps(tmp_path) -> None:
    from support import run_cli

    (tmp_path / "flow.py").write_text(FAILING)
    hint = "flow 'failing' has no step named 'agregate'; did you mean 'aggregate'? (its steps: price, aggregate)\n"
    done = run_cli("step", "flow.py", "agregate", "--from-run", "r1", "--store", "memory", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, "error: " + hint)
    done = run_cli("pod", "--flow=flow.py", "--step=agregate", f"--run-dir={tmp_path / 'run'}", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, "error: " + hint)
    run_cli("run", "flow.py", "--store", "runs.db", cwd=tmp_path)
    run_id = microdag.stores.SQLiteStore(tmp_path / "runs.db").list_runs()[0].id
    for argv in (("show", run_id, "agregate"), ("logs", run_id, "agregate")):
        done = run_cli(*argv, "--store", "runs.db", cwd=tmp_path)
        assert (done.returncode, done.stderr) == (
            2, f"error: run {run_id} has no step named 'agregate'; did you mean 'aggregate'? "
               "(its steps: price, aggregate)\n"), argv
