"""Inline step code: a flow file's ``python = '''...'''`` steps (``microdag._inline``).

The code's checks (``problems``), the lines errors and tracebacks name (the
flow file's), every backend and store, Dask, pickling as code, cache keys,
the schema and the UI editor's check, save and round trip.  Elsewhere: a
resume refusing changed code (``test_resume_inputs``), the cache keyed by the
code (``test_cache``), ``validate`` and ``step --from-run`` (``test_cli``),
the Argo emulator (``test_argo``); the flow file is ``flowfiles/inline.toml``.
"""

import asyncio
import json
import os
import pickle
import subprocess
import sys
import tomllib
import traceback
from pathlib import Path

import pytest

import microdag
from microdag import FlowError, RunFailed
from microdag._inline import CodeProblem, problems
from microdag._plan import code_digest
from microdag.ui._edit import edit_text
from microdag.ui._flows import Folder
from support import child_env

FLOW = (Path(__file__).resolve().parent / "flowfiles" / "inline.toml").read_text(encoding="utf-8")
OUTPUTS = {"numbers": [1, 2, 3], "scaled": [3, 6, 9], "each": [4, 7, 10], "total": 39}


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def flow_file(tmp_path: Path) -> str:
    return write(tmp_path / "flow.toml", FLOW)


def line_of(path: str, text: str) -> int:
    """The line (from 1) of the file ``path`` that holds ``text``."""
    with open(path, encoding="utf-8") as f:
        return next(n for n, line in enumerate(f, 1) if text in line)


# -- the checks ------------------------------------------------------------------------------


def test_problems_are_empty_for_good_code() -> None:
    assert problems("def a(b, c=1, *args, d, **kw):\n    pass\n", "a", {"b", "d"}) == []
    assert problems("async def a():\n    pass\n", "a", ()) == []
    assert problems("def helper():\n    pass\n\ndef fetch():\n    pass\n", "fetch", ()) == []
    assert problems("def only(x):\n    pass\n", "Total²/v2.0", {"x"}) == []  # the only function


def test_a_syntax_error_is_the_one_problem_at_its_line_and_column() -> None:
    found = problems("def a():\n    return (1 +\n\ndef b(:\n", "a", ())
    assert len(found) == 1 and isinstance(found[0], CodeProblem)
    assert found[0].line in (2, 4) and "syntax error" in found[0].message
    [p] = problems("x = 1\ny = = 2\n", "a", ())
    assert (p.line, p.col) == (2, 4) and p.message.startswith("syntax error")
    # what only compiling finds
    [p] = problems("def a():\n    pass\nreturn 1\n", "a", ())
    assert p.line == 3 and "'return' outside function" in p.message
    [p] = problems("def a():\n    await b()\n", "a", ())
    assert p.line == 2 and "'await' outside async function" in p.message


def test_no_function_for_the_step() -> None:
    [p] = problems("x = 1\n", "fetch", ())
    assert (p.line, p.col) == (1, 0) and "defines no function" in p.message and "def fetch(" in p.message
    [p] = problems("def fetc():\n    pass\ndef other():\n    pass\n", "fetch", ())
    assert "several functions (fetc, other)" in p.message and "did you mean 'fetc'?" in p.message
    [p] = problems("", "fetch", ())
    assert "empty" in p.message


def test_parameters_that_bind_to_nothing_say_what_they_may_have_meant() -> None:
    found = problems("def total(\n    numbrs,\n    limit=3,\n    *,\n    factr,\n):\n    pass\n", "total",
                     {"numbers", "factor"})
    assert [(p.line, p.col) for p in found] == [(2, 4), (5, 4)]
    assert "parameter 'numbrs' binds to nothing" in found[0].message and "did you mean 'numbers'?" in found[0].message
    assert "did you mean 'factor'?" in found[1].message
    [p] = problems("def a(zzz):\n    pass\n", "a", {"numbers"})
    assert "declare it in [inputs], or give it a default" in p.message
    [p] = problems("def a(b, /):\n    pass\n", "a", {"b"})
    assert "positional-only parameter 'b' cannot be bound by name" in p.message
    assert problems("def a(b=1, /):\n    pass\n", "a", ()) == []
    [p] = problems("def a(a):\n    pass\n", "a", {"a"})
    assert "named like the step itself" in p.message


# -- loading: errors name the flow file's lines -------------------------------------------------


def test_a_syntax_error_names_the_line_of_the_flow_file(tmp_path: Path) -> None:
    path = write(tmp_path / "flow.toml", FLOW.replace("return [1, 2, 3]", "return [1, 2, 3"))
    with pytest.raises(FlowError) as caught:
        microdag.load_flow(path)
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}:{line_of(path, 'return [1, 2, 3')}: step 'numbers': python: syntax error")


def test_a_missing_function_and_unbound_parameters_name_their_lines(tmp_path: Path) -> None:
    text = FLOW.replace("def each(item):", "def every(item):\n    pass\ndef other(item):").replace(
        "def total(each, scaled):", "def total(eech, scaled):")
    path = write(tmp_path / "flow.toml", text)
    with pytest.raises(FlowError) as caught:
        microdag.load_flow(path)
    found = caught.value.problems
    assert f"{path}:{line_of(path, 'def every(')}: step 'each': python: defines several functions" in found[0]
    assert found[1].startswith(f"{path}:{line_of(path, 'def total(eech')}: step 'total': python: parameter 'eech' "
                               "binds to nothing")
    assert "did you mean 'each'?" in found[1]


def test_code_that_raises_when_loaded_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "flow.toml", FLOW.replace("def numbers():", "import no_such_module_here\ndef numbers():"))
    with pytest.raises(FlowError, match=rf"flow.toml:{line_of(path, 'import no_such')}: step 'numbers': python: "
                                        "running its code raised ModuleNotFoundError"):
        microdag.load_flow(path)


def test_exactly_one_kind_of_step(tmp_path: Path) -> None:
    path = write(tmp_path / "flow.toml", FLOW.replace("[steps.total]\n", '[steps.total]\ncall = "m:f"\n'))
    with pytest.raises(FlowError, match="step 'total': has both call and python: give exactly one"):
        microdag.load_flow(path)
    path = write(tmp_path / "flow.toml", FLOW.replace("[steps.total]\n", '[steps.total]\ncall = "m:f"\ncommand = ["x"]\n'))
    with pytest.raises(FlowError, match="step 'total': has call, python and command: give exactly one"):
        microdag.load_flow(path)
    path = write(tmp_path / "flow.toml", FLOW.replace("[steps.total]\n", '[steps.total]\noutput = "json"\n'))
    with pytest.raises(FlowError, match="output is for command steps: a python step's output"):
        microdag.load_flow(path)


def test_a_traceback_names_the_flow_file_and_shows_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "flow.toml", FLOW.replace("return item + 1", "x = 1\n    return item / 0"))
    flow = microdag.load_flow(path)
    with pytest.raises(RunFailed) as caught:
        flow.run()
    error = caught.value.__cause__
    assert isinstance(error, ZeroDivisionError)
    text = "".join(traceback.format_exception(error))
    assert f'File "{path}", line {line_of(path, "return item / 0")}, in each' in text
    assert "    return item / 0" in text  # linecache reads the flow file


def test_a_json_flow_file_names_the_line_of_the_key(tmp_path: Path) -> None:
    doc = {"flow": {"name": "j"}, "steps": {
        "a": {"python": "def a():\n    return 2\n"},
        "b": {"python": "def b(a, c):\n    return a"},
        "c1": {"python": "def c1(a):\n    return a / 0\n"},
    }}
    path = write(tmp_path / "flow.json", json.dumps(doc, indent=2))
    with pytest.raises(FlowError) as caught:
        microdag.load_flow(path)
    [problem] = caught.value.problems
    line = line_of(path, '"python": "def b(')
    assert problem.startswith(f"{path}:{line}: step 'b': python, line 1 of its code: parameter 'c' binds to nothing")
    del doc["steps"]["b"]
    path = write(tmp_path / "flow.json", json.dumps(doc, indent=2))
    run = microdag.load_flow(path).run(raise_on_failure=False, keep_outputs=True)
    assert run.outputs["a"] == 2
    text = "".join(traceback.format_exception(run.tasks["c1"].error))
    assert f'File "{path}", line {line_of(path, "def c1(")}, in c1' in text


# -- running: every backend, every store, asyncio, processes ------------------------------------


def test_inline_steps_run_on_every_backend(flow_file: str, executor: object) -> None:
    run = microdag.load_flow(flow_file).run(executor=executor, keep_outputs=True)
    assert dict(run.outputs) == OUTPUTS


def test_inline_steps_run_on_every_store(flow_file: str, store: "microdag.stores.Store") -> None:
    flow = microdag.load_flow(flow_file)
    first = flow.run(store=store, keep_outputs=True)
    assert dict(first.outputs) == OUTPUTS
    again = microdag.load_flow(flow_file).run({"factor": 3}, store=store, keep_outputs=True)
    assert dict(again.outputs) == OUTPUTS
    assert again.tasks["total"].cached  # the same code, the same arguments


def test_async_code_runs_with_arun(tmp_path: Path) -> None:
    path = write(tmp_path / "flow.toml", FLOW.replace("def each(item):", "async def each(item):\n    import asyncio\n"
                                                      "    await asyncio.sleep(0)"))
    flow = microdag.load_flow(path)
    assert dict(asyncio.run(flow.arun(keep_outputs=True)).outputs) == OUTPUTS


def test_a_step_pickles_as_its_code_and_needs_no_flow_file(tmp_path: Path) -> None:
    flow = microdag.load_flow(write(tmp_path / "flow.toml", FLOW))
    fn = flow._compiled().steps[flow._index["scaled"]].fn
    path = str(tmp_path / "flow.toml")
    assert (fn.filename, fn.line) == (path, line_of(path, "def helper(")) and fn.code.startswith("def helper(")
    assert fn.func.__code__.co_firstlineno == line_of(path, "def scaled(")
    data = pickle.dumps(fn)
    os.remove(tmp_path / "flow.toml")
    code = ("import pickle, sys; fn = pickle.loads(sys.stdin.buffer.read()); "
            "print(fn([1, 2]), fn.keywords)")
    done = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, env=child_env(),
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().split() == ["[3,", "6]", "{'factor':", "3}"]


def test_inline_steps_run_on_a_dask_cluster(flow_file: str) -> None:
    pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install 'microdag[dask]')")
    code = f"""
import json, microdag
from distributed import Client, LocalCluster
with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \\
        Client(cluster) as client:
    run = microdag.load_flow({flow_file!r}).run(executor=client, keep_outputs=True)
    print(json.dumps(dict(run.outputs)))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(),
                          timeout=180)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == OUTPUTS


# -- cache keys and resume --------------------------------------------------------------------


def digests(text: str, tmp_path: Path) -> "dict[str, str]":
    flow = microdag.load_flow(write(tmp_path / "digest.toml", text))
    return {s.name: code_digest(s.fn) for s in flow._compiled().steps}


def test_cache_keys_follow_what_the_code_does(tmp_path: Path) -> None:
    before = digests(FLOW, tmp_path)
    # comments, blank lines and the code's place in the file: the same key
    moved = FLOW.replace("[steps.numbers]\n", "# a comment\n\n[steps.numbers]\n").replace(
        "def helper(n, factor):", "# helps\n\ndef helper(n, factor):  # why")
    assert digests(moved, tmp_path) == before
    # a helper beside the step's function changes the step's key
    helper = digests(FLOW.replace("return n * factor", "return n * factor + 0"), tmp_path)
    assert helper["scaled"] != before["scaled"] and helper["numbers"] == before["numbers"]
    changed = digests(FLOW.replace("return [1, 2, 3]", "return [1, 2, 4]"), tmp_path)
    assert changed["numbers"] != before["numbers"]
    # the defaults [inputs] gives are in the key (as for a call step)
    assert digests(FLOW.replace("factor = 3", "factor = 4"), tmp_path)["scaled"] != before["scaled"]


# -- the schema --------------------------------------------------------------------------------


def test_the_schema_takes_python_steps() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    root = Path(__file__).resolve().parent.parent
    schema = json.loads((root / "src" / "microdag" / "flowfile.schema.json").read_text())
    check = jsonschema.Draft202012Validator(schema)
    good = tomllib.loads(FLOW)
    assert not list(check.iter_errors(good))
    for bad in ({"python": "def a(): pass", "call": "m:f"}, {"python": ""}, {"command": ["x"], "inputs": {"a": "b"}},
                {"python": "def a(): pass", "output": "json"}):
        assert list(check.iter_errors({**good, "steps": {"a": bad}})), bad


# -- the UI editor: check, save, round trip ------------------------------------------------------


def test_the_editor_check_gives_code_problems_at_their_line_and_refuses_to_save(tmp_path: Path) -> None:
    path = write(tmp_path / "flow.toml", FLOW)
    folder = Folder(str(tmp_path), [])
    doc = tomllib.loads(FLOW)
    doc["steps"]["total"]["python"] = "def total(each, scaled):\n    return (\n"
    doc["steps"]["each"]["python"] = "def each(item, limt):\n    return item\n"
    described = folder.check("flow.toml", doc)
    code = [p for p in described["problems"] if p.get("field") == "python"]
    assert [(p["step"], p["line"]) for p in code] == [("each", 1), ("total", 2)]
    assert code[0]["col"] == 15 and "parameter 'limt' binds to nothing" in code[0]["message"]
    assert code[1]["message"].startswith("syntax error")
    saved, _ = folder.save("flow.toml", doc)
    assert not saved and Path(path).read_text(encoding="utf-8") == FLOW
    doc["steps"]["total"]["python"] = "def total(each, scaled):\n    return 0\n"
    doc["steps"]["each"]["python"] = "def each(item):\n    return item\n"
    saved, described = folder.save("flow.toml", doc)
    assert saved and described["problems"] == []
    assert {s["name"]: s["kind"] for s in described["steps"]}["each"] == "python"
    text = Path(path).read_text(encoding="utf-8")
    assert "python = '''\ndef each(item):\n    return item\n'''" in text
    assert tomllib.loads(text) == doc


HOSTILE = [
    "def a():\n    return '''x'''\n",
    "def a():\n    return 'C:\\\\dir\\\\'  \n",
    "def a():\r\n    return 1\r\n",
    "def a():\n\treturn 'ünïcødé ✓ \\u00e9'   \n",
    "def a():\n    return \"\"\"\\\"\"\"\"\n",
    "def a():\n    return 'x'",
    "\n\ndef a():\n    return '\\x00'\n\n",
]


@pytest.mark.parametrize("code", HOSTILE)
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_the_editor_round_trip_keeps_step_code_intact(code: str, newline: str, tmp_path: Path) -> None:
    text = FLOW.replace("\n", newline)
    new = tomllib.loads(text)
    new["steps"]["numbers"]["python"] = code
    out, rewritten = edit_text(text, "toml", new)
    assert not rewritten
    assert tomllib.loads(out) == new
    # only the code's lines changed, and the code still loads with its lines in the file
    path = tmp_path / "flow.toml"
    path.write_bytes(out.encode("utf-8"))
    if "\r" not in code:
        numbers = microdag.load_flow(str(path))._compiled().steps[0].fn
        assert numbers.func.__code__.co_firstlineno == line_of(str(path), "def a():")
