"""Flow files as documented in docs/flow-file.md: loading TOML, JSON, ``.py``
files and ``module:attr`` names; call and command steps, placeholders (and
the braces that are not), what a command's output becomes (text, JSON or
lines), failures, retries, timeouts, maps; every kind of
invalid file reported at once; and the shipped JSON Schema kept equal to the
loader's rules.

Flow files that the tests only read live in ``tests/flowfiles`` (with the
``specsteps`` module their ``call`` keys name); the rest are written to
``tmp_path``.  Commands run ``sys.executable`` (given as the ``python`` input,
or written into the file), so the tests need no other program.
"""

import graphlib
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

import microdag
from microdag import CycleError, Flow, FlowError
from microdag._flowrules import FLOW_OPTIONS, STEP_OPTIONS, TOP_KEYS
from microdag._spec import CommandError, load_flow
from support import child_env

HERE = Path(__file__).resolve().parent
FLOWFILES = HERE / "flowfiles"
SCHEMA_PATH = HERE.parent / "src" / "microdag" / "flowfile.schema.json"
PY = json.dumps(sys.executable)  # a TOML or JSON string holding the interpreter


@pytest.fixture(autouse=True)
def isolated_imports(tmp_path: Path):
    """Loading puts flow files' folders on ``sys.path``: undo it, and forget
    the modules imported from ``tmp_path``, after each test."""
    path = list(sys.path)
    yield
    sys.path[:] = path
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def problems_of(spec: str) -> list[str]:
    with pytest.raises(FlowError) as info:
        load_flow(spec)
    return info.value.problems


def one_problem(problems: list[str], *fragments: str) -> str:
    """The one problem that holds every fragment."""
    found = [p for p in problems if all(f in p for f in fragments)]
    assert len(found) == 1, (fragments, problems)
    return found[0]


# -- loading and running ---------------------------------------------------------


def test_toml_flow_runs_call_and_command_steps() -> None:
    flow = load_flow(str(FLOWFILES / "website.toml"))

    assert isinstance(flow, Flow) and flow.name == "website"
    assert flow.steps == ("fetch-page", "words", "count", "top")
    assert flow.inputs == {"python": False, "text": False, "limit": False}
    run = flow.run({"python": sys.executable}, keep_outputs=True)
    assert run.outputs == {
        "fetch-page": "the quick brown fox jumps over the lazy dog",  # text: newline stripped
        "words": ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"],
        "count": {"words": 9},  # output = "json": stdout is parsed
        "top": ["the", "quick", "brown"],  # limit's default from [inputs]
    }
    run = flow.run({"python": sys.executable, "text": "a b c d e", "limit": 1}, keep_outputs=True)
    assert run["count"] == {"words": 5} and run["top"] == ["a"]


def test_json_flow_maps_and_batches_call_and_command_steps() -> None:
    flow = load_flow(str(FLOWFILES / "squares.json"))

    run = flow.run({"python": sys.executable}, keep_outputs=True)
    assert run["one-by-one"] == [1, 4, 9, 16, 25]
    assert run["in-batches"] == [1, 4, 9, 16, 25]
    assert run["command-batches"] == [1, 4, 9, 16, 25]  # a JSON list per batch of 2
    assert run["command-lines"] == ["item 1", "item 2", "item 3", "item 4", "item 5"]  # a line per item
    assert run["total"] == 55  # the command got the list as JSON
    assert flow.run({"python": sys.executable, "x": [10, 20]})["total"] == 500


def test_source_is_the_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FLOWFILES)

    assert load_flow("website.toml")._source == str(FLOWFILES / "website.toml")
    assert load_flow("squares.json")._source == str(FLOWFILES / "squares.json")


def test_placeholders_fill_inputs_step_outputs_directories_and_braces(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "placeholders.toml",
        f"""
[flow]
name = "placeholders"

[inputs]
who = "world"
numbers = [1, 2]
options = {{ deep = true }}

[steps.fetch-page]
command = [{PY}, "-c", "print('<p>hi</p>')"]

[steps.show]
command = [{PY}, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))",
           "hello {{inputs.who}}!", "{{inputs.numbers}}", "{{inputs.options}}",
           "{{steps.fetch-page}}", "{{run_dir}}", "--out={{workdir}}/x.txt"]
output = "json"
""",
    )
    flow = load_flow(spec)

    run = flow.run(keep_outputs=True)
    hello, numbers, options, page, run_dir, out = run["show"]
    assert hello == "hello world!"
    assert numbers == "[1,2]" and options == '{"deep":true}'  # compact JSON
    assert page == "<p>hi</p>"  # a step name that is not an identifier
    assert os.path.isdir(run_dir) and out == "--out=" + os.path.join(run_dir, "show", "x.txt")
    assert os.path.isdir(os.path.join(run_dir, "show"))
    assert flow.run({"who": "you"})["show"][0] == "hello you!"


def json_flow(tmp_path: Path, steps: dict, inputs: "dict | None" = None) -> str:
    """A flow file of ``steps`` (written as JSON: no TOML quoting to get in the way)."""
    document = {"flow": {"name": "t"}, "inputs": inputs or {}, "steps": steps}
    return write(tmp_path / "flow.json", json.dumps(document))


def py(code: str, *args: str, **options: object) -> dict:
    """A command step running ``code`` with the interpreter."""
    return {"command": [sys.executable, "-c", code, *args], **options}


def test_stdout_is_text_by_default(tmp_path: Path) -> None:
    spec = json_flow(tmp_path, {
        "decimal": {"command": ["echo", "1.10"]},
        "nan": {"command": ["echo", "NaN"]},
        "number": py("print(42)"),
        "object": py("print({'a': [1, None]})"),  # braces that are no placeholder
        "json-text": py("print('[1, 2]')"),
        "two-newlines": py("print('line\\n')"),
        "crlf": py("import sys; sys.stdout.buffer.write(b'dos\\r\\n')"),
        "no-newline": py("import sys; sys.stdout.write('raw')"),
        "nothing": py("pass"),
        "unicode": py("import sys; sys.stdout.buffer.write('\u00e9t\u00e9 \\xff'.encode('utf-8') + b'\\xff')"),
    })
    store = microdag.stores.SQLiteStore(str(tmp_path / "runs.db"))  # the JSON codec
    run = load_flow(spec).run(store=store, keep_outputs=True)

    assert run.outputs == {
        "decimal": "1.10",  # not the float 1.1
        "nan": "NaN",  # not a float the JSON codec refuses
        "number": "42",
        "object": "{'a': [1, None]}",
        "json-text": "[1, 2]",
        "two-newlines": "line\n",  # only one trailing newline goes
        "crlf": "dos",
        "no-newline": "raw",
        "nothing": "",
        "unicode": "\u00e9t\u00e9 \u00ff\ufffd",  # undecodable bytes replaced
    }
    assert store.outputs(run.id, run.outputs) == run.outputs  # what is stored is what the step returned
    store.close()


def test_output_json_is_the_value_stdout_holds(tmp_path: Path) -> None:
    spec = json_flow(tmp_path, {
        "object": {"command": ["echo", '{"a": [1, 2]}'], "output": "json"},
        "number": {"command": ["echo", "1.10"], "output": "json"},
        "null": py("print('null')", output="json"),
        "spaced": py("print('  [true]  \\n\\n')", output="json"),
    })
    run = load_flow(spec).run(keep_outputs=True)

    assert run.outputs == {"object": {"a": [1, 2]}, "number": 1.1, "null": None, "spaced": [True]}


@pytest.mark.parametrize(
    ("stdout", "said"),
    [
        ("hello world", "it began 'hello world\\n'"),
        ("", "it was empty"),
        ("NaN", "NaN is not a JSON value"),
        ('{"a": 1', "Expecting ',' delimiter"),
    ],
)
def test_output_json_that_is_not_json_fails_the_step_naming_it(tmp_path: Path, stdout: str, said: str) -> None:
    spec = json_flow(tmp_path, {"parse": {"command": ["echo", stdout], "output": "json"}})

    run = load_flow(spec).run(raise_on_failure=False)

    assert run.tasks["parse"].status == "failed"
    error = run.tasks["parse"].error
    assert isinstance(error, ValueError)
    assert str(error).startswith("""step 'parse' has output = "json", but the output of command 'echo' is not JSON (""")
    assert said in str(error)


def test_output_lines_is_the_list_of_stdout_lines(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "lines.toml",
        f"""
[flow]
name = "lines"

[steps.printf]
command = ["printf", 'a\\nb\\n']
output = "lines"

[steps.endings]
command = [{PY}, "-c", "import sys; sys.stdout.buffer.write(b'dos\\\\r\\\\nunix\\\\n\\\\nlast')"]
output = "lines"

[steps.empty]
command = [{PY}, "-c", "pass"]
output = "lines"

[steps.one-blank-line]
command = ["echo"]
output = "lines"
""",
    )
    store = microdag.stores.SQLiteStore(str(tmp_path / "runs.db"))
    run = load_flow(spec).run(store=store, keep_outputs=True)

    assert run.outputs == {
        "printf": ["a", "b"],
        "endings": ["dos", "unix", "", "last"],  # \r\n or \n; an unended last line counts
        "empty": [],
        "one-blank-line": [""],
    }
    assert store.output(run.id, "printf") == ["a", "b"]
    store.close()


def test_output_problems_are_reported_with_file_line_step_and_key(tmp_path: Path) -> None:
    (tmp_path / "specsteps.py").write_text((FLOWFILES / "specsteps.py").read_text())
    path = write(
        tmp_path / "outputs.toml",
        """\
[flow]
name = "outputs"

[inputs]
items = [1, 2, 3]

[steps.words]
call = "specsteps:words"
output = "json"

[steps.xml]
command = ["echo", "<a/>"]
output = "xml"

[steps.batched]
command = ["echo", "{inputs.items}"]
map = "items"
batch_size = 2

[steps.batched-text]
command = ["echo", "{inputs.items}"]
map = "items"
batch_size = 2
output = "text"

[steps.batched-lines]
command = ["echo", "{inputs.items}"]
map = "items"
batch_size = 2
output = "lines"
""",
    )

    problems = problems_of(path)

    assert one_problem(problems, f"{path}:9: step 'words': output is for command steps")
    assert one_problem(problems, f"{path}:13: step 'xml': output must be one of \"text\", \"json\", \"lines\", not \"xml\"")
    needs = 'batch_size needs output = "json" or "lines"'
    assert one_problem(problems, f"{path}:18: step 'batched': {needs}")
    assert one_problem(problems, f"{path}:23: step 'batched-text': {needs}")
    assert len(problems) == 4


def test_braces_that_are_no_placeholder_pass_as_they_are(tmp_path: Path) -> None:
    literal = ["{}", "{print $1}", "${HOME}", "{'a': 1}", "{ a; b; }", "{{", "}}", "{{}}", "}{", "{", "}",
               "{inputs.}", "{input.x}", "{step.x}", "{env}", "{run_dir", "{ workdir }", "{{ inputs.x }}"]
    spec = json_flow(tmp_path, {
        "argv": py("import json, sys; print(json.dumps(sys.argv[1:]))", *literal, output="json"),
        "escaped": py(
            "import json, sys; print(json.dumps(sys.argv[1:]))",
            "{{inputs.x}}", "{{steps.ghost}}", "{{env.NOPE}}", "{{run_dir}}", "-{{workdir}}-", output="json",
        ),
        "awk": {"command": ["awk", 'BEGIN { print "x{y}" }']},
        "sh": {"command": ["sh", "-c", "echo {} ${HOME:+set} && { echo grouped; }"]},
        "python": py("print({'a': 1})"),
    })
    run = load_flow(spec).run(keep_outputs=True)

    assert run["argv"] == literal
    assert run["escaped"] == ["{inputs.x}", "{steps.ghost}", "{env.NOPE}", "{run_dir}", "-{workdir}-"]
    assert run["awk"] == "x{y}"
    assert run["sh"] == "{} set\ngrouped"
    assert run["python"] == "{'a': 1}"


def test_env_placeholder_is_read_when_the_step_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MICRODAG_TEST_GREETING", raising=False)
    spec = json_flow(tmp_path, {
        "greet": {"command": ["echo", "--greeting={env.MICRODAG_TEST_GREETING}!", "{env.MICRODAG_TEST_GREETING}"]},
    })
    flow = load_flow(spec)  # not set yet: checked when the step runs

    monkeypatch.setenv("MICRODAG_TEST_GREETING", "hello there")
    assert flow.run()["greet"] == "--greeting=hello there! hello there"
    monkeypatch.setenv("MICRODAG_TEST_GREETING", "")
    assert flow.run()["greet"] == "--greeting=! "
    monkeypatch.delenv("MICRODAG_TEST_GREETING")
    run = flow.run(raise_on_failure=False)
    assert run.tasks["greet"].status == "failed"
    error = run.tasks["greet"].error
    assert isinstance(error, LookupError)
    assert str(error) == (
        "step 'greet': command item 1 '--greeting={env.MICRODAG_TEST_GREETING}!': "
        "environment variable 'MICRODAG_TEST_GREETING' is not set"
    )


def test_placeholders_naming_nothing_are_still_load_time_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path / "names.toml",
        """\
[flow]
name = "names"

[inputs]
x = 1

[steps.a]
command = ["awk", "{print $1}", "--x={inputs.typo}", "{steps.ghost}/out", "{{inputs.fine}}"]
""",
    )

    problems = problems_of(path)

    assert one_problem(problems, f"{path}:8: step 'a': command item 2 '--x={{inputs.typo}}': {{inputs.typo}} names no input of [inputs] (declared: x)")
    assert one_problem(problems, f"{path}:8: step 'a': command item 3 '{{steps.ghost}}/out': {{steps.ghost}} names no step of this file")
    assert len(problems) == 2


def test_failing_command_fails_the_step_with_its_exit_code_and_stderr(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "failing.toml",
        f"""
[flow]
name = "failing"

[steps.broken]
command = [{PY}, "-c", "import sys; print('early', file=sys.stderr); print('the cause', file=sys.stderr); sys.exit(3)"]

[steps.after]
command = [{PY}, "-c", "import sys; print(sys.argv[1])", "{{steps.broken}}"]

[steps.cleanup]
command = [{PY}, "-c", "import sys; print(sys.argv[1])", "{{steps.broken}}"]
trigger = "all_done"
""",
    )
    run = load_flow(spec).run(raise_on_failure=False, on_failure="continue", keep_outputs=True)

    assert run.status == "failed"
    broken = run.tasks["broken"]
    assert broken.status == "failed"
    error = broken.error
    assert isinstance(error, CommandError) and isinstance(error, RuntimeError)
    assert error.returncode == 3
    assert sys.executable in str(error) and "code 3" in str(error)
    assert str(error).endswith("early\nthe cause")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.returncode == 3
    assert run.tasks["after"].status == "skipped"
    assert run["cleanup"] == "null"  # a failed dependency's output is None, written as JSON


def test_stderr_lands_in_the_steps_logs(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "logs.toml",
        f"""
[flow]
name = "logs"

[steps.chatty]
command = [{PY}, "-c", "import sys; print('progress 50%', file=sys.stderr); print(1)"]
""",
    )
    store = microdag.stores.MemoryStore()
    run = load_flow(spec).run(store=store)

    assert run["chatty"] == "1"
    assert "progress 50%" in store.logs(run.id, "chatty")


def test_retries_rerun_a_flaky_command(tmp_path: Path) -> None:
    marker = tmp_path / "tried-once"
    spec = write(
        tmp_path / "flaky.toml",
        f"""
[flow]
name = "flaky"

[inputs]
marker = {json.dumps(str(marker))}

[steps.flaky]
command = [{PY}, "-c", "import os, sys; m = sys.argv[1]; ok = os.path.exists(m); open(m, 'a').close(); print('ok'); sys.exit(0 if ok else 1)", "{{inputs.marker}}"]
retries = 2
""",
    )
    run = load_flow(spec).run()

    assert run["flaky"] == "ok"
    assert run.tasks["flaky"].attempts == 2


@pytest.mark.parametrize("executor", ["inline", "threads", "processes"])
def test_timeout_kills_the_program(tmp_path: Path, executor: str) -> None:
    pid_file = tmp_path / "pid"
    spec = write(
        tmp_path / "slow.toml",
        f"""
[flow]
name = "slow"

[inputs]
pid_file = {json.dumps(str(pid_file))}

[steps.slow]
command = [{PY}, "-c", "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)", "{{inputs.pid_file}}"]
timeout = 3
""",
    )
    flow = load_flow(spec)
    if executor == "processes":  # start the forkserver first: the timeout is not for that
        Flow("warm-up").add("noop", os.getcwd).run(executor="processes")
    start = time.monotonic()
    run = flow.run(executor=executor, raise_on_failure=False)

    assert time.monotonic() - start < 20
    assert run.tasks["slow"].status == "failed"
    error = run.tasks["slow"].error
    assert isinstance(error, TimeoutError)
    assert "timeout of 3 s and was killed" in str(error)
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the timed-out program (pid {pid}) is still running")


def test_command_steps_run_on_processes(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "procs.json",
        json.dumps(
            {
                "flow": {"name": "procs"},
                "inputs": {"n": [1, 2, 3]},
                "steps": {
                    "make-list": {"command": [sys.executable, "-c", "print([1, 2, 3])"], "output": "json"},
                    "each": {
                        "command": [sys.executable, "-c", "import sys; print(int(sys.argv[1]) * 10)", "{inputs.n}"],
                        "map": "n",
                        "output": "json",
                    },
                    "sum": {
                        "command": [sys.executable, "-c", "import json, sys; print(sum(json.loads(sys.argv[1])) + sum(json.loads(sys.argv[2])))", "{steps.make-list}", "{steps.each}"],
                        "retries": 1,
                        "output": "lines",
                    },
                },
            }
        ),
    )
    flow = load_flow(spec)

    inline = flow.run(keep_outputs=True).outputs
    processes = flow.run(executor="processes", max_workers=2, keep_outputs=True).outputs
    assert processes == inline == {"make-list": [1, 2, 3], "each": [10, 20, 30], "sum": ["66"]}


def test_command_step_reads_well_and_pickles(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "repr.toml",
        '[flow]\nname = "r"\n[inputs]\nurl = "a.html"\n'
        '[steps.fetch]\ncall = "specsteps:words"\n'
        '[steps.count]\ncommand = ["wc", "-c", "{inputs.url}", "{steps.fetch}"]\n',
    )
    (tmp_path / "specsteps.py").write_text((FLOWFILES / "specsteps.py").read_text())
    flow = load_flow(spec)

    fn = flow._steps[flow._index["count"]].fn
    assert repr(fn) == "command['wc', '-c', '{inputs.url}', ...]"
    assert fn.__qualname__.startswith("command['wc', '-c', '{inputs.url}', '{steps.fetch}'] (output text)")
    assert str(fn.__signature__) == "(*, url='a.html', **deps)"
    copy = pickle.loads(pickle.dumps(fn))
    assert copy.render({"fetch": ["a"]}) == ["wc", "-c", "a.html", '["a"]']


def test_cached_command_is_reused_until_its_argv_or_defaults_change(tmp_path: Path) -> None:
    def flow_with(default: str) -> Flow:
        return load_flow(write(
            tmp_path / "cached.toml",
            f'[flow]\nname = "cached"\n[inputs]\nword = "{default}"\n'
            f'[steps.stamp]\ncommand = [{PY}, "-c", "import sys, time; print(sys.argv[1], time.time())", "{{inputs.word}}"]\n'
            "cache = true\n",
        ))

    first = flow_with("a").run()
    again = flow_with("a").run()
    changed = flow_with("b").run()

    assert again.tasks["stamp"].cached and again["stamp"] == first["stamp"]
    assert not changed.tasks["stamp"].cached and changed["stamp"].startswith("b ")


def test_cached_command_is_not_reused_for_another_output(tmp_path: Path) -> None:
    def flow_with(output: str) -> Flow:
        return load_flow(write(
            tmp_path / "cached.toml",
            f'[flow]\nname = "cached"\n[steps.answer]\ncommand = ["echo", "42"]\ncache = true\noutput = "{output}"\n',
        ))

    text = flow_with("text").run()
    number = flow_with("json").run()
    again = flow_with("json").run()

    assert text["answer"] == "42" and number["answer"] == 42
    assert not number.tasks["answer"].cached and again.tasks["answer"].cached


def test_call_step_with_input_default_can_be_async(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "async.toml",
        '[flow]\nname = "a"\n[inputs]\ntext = "quiet"\n[steps.shout]\ncall = "specsteps:shout"\n',
    )
    (tmp_path / "specsteps.py").write_text((FLOWFILES / "specsteps.py").read_text())

    flow = load_flow(spec)
    assert flow.run()["shout"] == "QUIET"
    assert flow.run({"text": "loud"})["shout"] == "LOUD"


def test_depends_on_outputs_reach_a_command_by_any_step_name(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "names.toml",
        f"""
[flow]
name = "names"

[steps."two words"]
command = [{PY}, "-c", "print(2)"]

[steps."a.b"]
command = [{PY}, "-c", "print(3)"]

[steps.product]
command = [{PY}, "-c", "import sys; print(int(sys.argv[1]) * int(sys.argv[2]))", "{{steps.two words}}", "{{steps.a.b}}"]

[steps.together]
call = "specsteps:collect"
depends_on = ["two words", "product"]
""",
    )
    (tmp_path / "specsteps.py").write_text((FLOWFILES / "specsteps.py").read_text())

    run = load_flow(spec).run(keep_outputs=True)
    assert run["product"] == "6"
    assert run["together"] == {"product": "6", "two words": "2"}  # **kwargs gets depends_on outputs


# -- .py files and module:attr ---------------------------------------------------


def test_py_file_with_one_flow_imports_its_siblings(tmp_path: Path) -> None:
    (tmp_path / "sibling_helpers.py").write_text("def one():\n    return 1\n")
    path = write(
        tmp_path / "oneflow.py",
        "import microdag\nfrom sibling_helpers import one\n"
        "flow = microdag.Flow('pyflow')\nflow.add('one', one)\n"
        "@flow.step\ndef two(one):\n    return one + 1\n"
        "same = flow\n",  # the same flow under two names is still one flow
    )

    flow = load_flow(path)
    assert flow.name == "pyflow" and flow._source == os.path.abspath(path)
    assert flow.run()["two"] == 2
    chosen = load_flow(f"{path}:same")
    assert chosen._source == f"{os.path.abspath(path)}:same"


def test_py_file_steps_run_on_processes(tmp_path: Path) -> None:
    """As ``python -m microdag run flows.py`` would: load, then run on processes."""
    path = write(
        tmp_path / "procflow.py",
        "import os, microdag\nflow = microdag.Flow('p')\n"
        "@flow.step\ndef where():\n    return os.getpid()\n",
    )
    code = (
        "import os, sys\nfrom microdag._spec import load_flow\n"
        f"run = load_flow({path!r}).run(executor='processes')\n"
        "print(run['where'] != os.getpid())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_py_file_must_hold_exactly_one_flow(tmp_path: Path) -> None:
    several = write(tmp_path / "several.py", "import microdag\na = microdag.Flow('a')\nb = microdag.Flow('b')\n")
    none = write(tmp_path / "noflow.py", "x = 1\n")

    (problem,) = problems_of(several)
    assert "several.py" in problem and "a, b" in problem and "several.py:NAME" in problem
    assert load_flow(f"{several}:b").name == "b"
    (problem,) = problems_of(none)
    assert "noflow.py" in problem and "no module-level" in problem
    (problem,) = problems_of(f"{none}:x")
    assert "'x' is of type int, not a microdag.Flow" in problem
    (problem,) = problems_of(f"{none}:missing")
    assert "noflow.py:missing" in problem and "no 'missing'" in problem


def test_py_file_that_raises_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "raising.py", "import microdag\n\nraise RuntimeError('kaput')\n")
    dup = write(tmp_path / "dupstep.py", "import microdag\nf = microdag.Flow('f')\nf.add('x', print)\nf.add('x', print)\n")

    (problem,) = problems_of(path)
    assert problem == f"{path}:3: importing it raised RuntimeError: kaput"
    (problem,) = problems_of(dup)
    assert problem.startswith(f"{dup}:4: step 'x' is defined more than once")


def test_module_attr_names_a_flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "specmodule_flows.py").write_text(
        "import microdag\nclass Holder:\n    flow = microdag.Flow('held')\nnot_a_flow = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    flow = load_flow("specmodule_flows:Holder.flow")
    assert flow.name == "held" and flow._source == "specmodule_flows:Holder.flow"
    (problem,) = problems_of("specmodule_flows:not_a_flow")
    assert "specmodule_flows:not_a_flow" in problem and "not a microdag.Flow" in problem
    (problem,) = problems_of("no_such_module_here:flow")
    assert "cannot import module 'no_such_module_here'" in problem


def test_specs_that_name_nothing_loadable(tmp_path: Path) -> None:
    other = write(tmp_path / "flow.yaml", "flow: x\n")

    assert problems_of(str(tmp_path / "missing.toml")) == [f"{tmp_path / 'missing.toml'}: no such flow file"]
    assert "missing.py: no such file" in problems_of(str(tmp_path / "missing.py"))[0]
    assert "unknown kind of flow file" in problems_of(other)[0]
    assert "cannot load a flow from 'website'" in problems_of("website")[0]


# -- invalid files: every problem at once ------------------------------------------


BAD_TOML = """\
stray = 1

[flow]
nmae = "typo"

[inputs]
limit = 3
"bad name" = 1

[steps.fetch]
call = "specsteps:no_such_function"
retries = "two"
timeout = 0

[steps.both]
call = "specsteps:words"
command = ["echo"]

[steps.neither]
depends_on = ["ghost"]

[steps.tidy]
command = ["echo", "{steps.nope}", "{inputs.missing}", "{input.limit}", "}"]
trigger = "sometimes"

[steps.importless]
call = "no_such_module_for_spec:f"
retires = 1

[steps.ping]
command = ["echo", "{steps.pong}"]

[steps.pong]
command = ["echo", "{steps.ping}"]
"""


def test_every_problem_of_a_toml_file_in_one_error(tmp_path: Path) -> None:
    (tmp_path / "specsteps.py").write_text((FLOWFILES / "specsteps.py").read_text())
    path = write(tmp_path / "bad.toml", BAD_TOML)

    problems = problems_of(path)

    assert all(p.startswith(path + ":") for p in problems), problems
    lines = [int(p[len(path) + 1 :].split(":", 1)[0]) for p in problems]
    assert lines == sorted(lines)  # in the order of the file
    assert one_problem(problems, ":1:", "unknown key 'stray'")
    assert one_problem(problems, ":4:", "[flow] unknown key 'nmae' (did you mean 'name'?)")
    assert one_problem(problems, ":3:", "[flow] needs name")
    assert one_problem(problems, ":8:", "'bad name' is not a valid input name")
    assert one_problem(problems, ":11:", "step 'fetch'", "call 'specsteps:no_such_function'", "no attribute")
    assert one_problem(problems, ":12:", "step 'fetch'", 'retries must be an integer >= 0, not "two"')
    assert one_problem(problems, ":13:", "step 'fetch'", "timeout must be a number > 0 and at most 1,000,000 s, not 0")
    assert one_problem(problems, ":15:", "step 'both'", "has both call and command")
    assert one_problem(problems, ":19:", "step 'neither'", "needs call")
    assert one_problem(problems, ":20:", "step 'neither' depends on 'ghost', which is not defined")
    assert one_problem(problems, ":23:", "step 'tidy'", "{steps.nope} names no step")
    assert one_problem(problems, ":23:", "step 'tidy'", "{inputs.missing} names no input", "declared: limit")
    assert not any("{input.limit}" in p or "'}'" in p for p in problems)  # not placeholders: text
    assert one_problem(problems, ":24:", "step 'tidy'", "trigger must be one of", '"sometimes"')
    assert one_problem(problems, ":27:", "step 'importless'", "cannot import module 'no_such_module_for_spec'")
    assert one_problem(problems, ":28:", "step 'importless'", "unknown key 'retires' (did you mean 'retries'?)")
    cycle = one_problem(problems, "steps are in a cycle", "'ping' -> 'pong'")
    assert cycle.startswith((f"{path}:30:", f"{path}:33:"))
    assert len(problems) == 16


def test_lines_come_from_the_toml_text_as_written(tmp_path: Path) -> None:
    """The lines are read by the exact TOML reader (``_tomltext``): a table inside
    a multi-line string is text, a step written with dotted keys has its own
    line, and keys inside an inline table are found where they are."""
    (tmp_path / "m.py").write_text("def f(p=None):\n    return 1\n")
    path = write(
        tmp_path / "lines.toml",
        '[flow]\nname = "lines"\n\n[inputs]\nnote = """\n[steps.inside]\nretries = 3\n"""\n\n'
        '[steps]\na.call = "m:f"\na.command = ["echo"]\nb = { call = "m:f", inputs = { p = 1 } }\n\n'
        '[steps.c]\ncall = "m:f"\nretries = -1\n',
    )

    problems = problems_of(path)

    assert one_problem(problems, ":11:", "step 'a'", "has both call and command")  # was the [steps] line
    assert one_problem(problems, ":13:", "step 'b'", 'inputs must be a table of parameter = "step name"')
    assert one_problem(problems, ":17:", "step 'c'", "retries must be an integer >= 0, not -1")
    assert not any("inside" in p for p in problems)
    assert len(problems) == 3


def test_key_lines_follow_strings_inline_tables_and_arrays_of_tables() -> None:
    from microdag._tomltext import key_lines

    text = (
        '# [steps.fake]\n[steps]\n"x.y" = { call = "m:f", inputs = { p = "a" } }\n'
        "lit = '''\n[steps.z]\n'''\n[[steps.arr]]\ncall = 'm:f'\n[[steps.arr]]\n"
    )

    lines = key_lines(text)

    assert lines == {
        ("steps",): 2, ("steps", "x.y"): 3, ("steps", "x.y", "call"): 3, ("steps", "x.y", "inputs"): 3,
        ("steps", "x.y", "inputs", "p"): 3, ("steps", "lit"): 4, ("steps", "arr"): 7, ("steps", "arr", "call"): 8,
    }
    not_toml = "[steps]\nx = 1\n= 2\n[steps.y]\n"
    assert key_lines(not_toml) == {("steps",): 1, ("steps", "x"): 2}  # the lines found before it stopped


def test_every_problem_of_a_json_file_in_one_error(tmp_path: Path) -> None:
    (tmp_path / "specsteps.py").write_text((FLOWFILES / "specsteps.py").read_text())
    path = write(
        tmp_path / "bad.json",
        """{
  "flow": {"name": ""},
  "inputs": {"words": "named like a step"},
  "steps": {
    "words": {"call": "specsteps:NOT_A_FUNCTION", "batch_size": 2},
    "shell": {"command": "echo hi", "inputs": {"x": "words"}},
    "top": {"call": "specsteps:top", "inputs": {"limit": "nowhere"}, "priority": 1.5},
    "top": {"call": "specsteps:top", "inputs": {"limit": "nowhere"}, "cache": "yes"}
  }
}
""",
    )

    problems = problems_of(path)

    assert one_problem(problems, f"{path}: key 'top' appears more than once")
    assert one_problem(problems, f"{path}:2:", '[flow] name must be a non-empty string, not ""')
    assert one_problem(problems, f"{path}:3:", "input 'words' is named like step 'words'")
    assert one_problem(problems, f"{path}:5:", "step 'words'", "'NOT_A_FUNCTION' is not callable")
    assert one_problem(problems, f"{path}:5:", "step 'words'", "batch_size needs map")
    assert one_problem(problems, f"{path}:6:", "step 'shell'", "command must be a non-empty list of strings, not \"echo hi\"")
    assert one_problem(problems, f"{path}:6:", "step 'shell'", "inputs is for call steps")
    assert one_problem(problems, f"{path}:8:", "step 'top'", 'cache must be true or false, not "yes"')
    assert one_problem(problems, f"{path}:7:", "step 'top' depends on 'nowhere', which is not defined")
    assert len(problems) == 9


@pytest.mark.parametrize(
    ("name", "text", "line", "what"),
    [
        ("broken.toml", '[flow]\nname = "x"\n\n[steps.a]\ncall = \n', 5, "invalid TOML: Invalid value (column 8)"),
        ("broken.json", '{"flow": {"name": "x"},\n "steps": {"a": {"call": "m:f",}}}', 2, "invalid JSON: Expecting property name"),
        ("list.json", "[1, 2]", None, "the top level must be a table"),
    ],
)
def test_syntax_errors_give_the_line(tmp_path: Path, name: str, text: str, line: "int | None", what: str) -> None:
    path = write(tmp_path / name, text)

    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:{line}: " if line else f"{path}: ") and what in problem


def test_cycle_alone_raises_cycle_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "specsteps.py").write_text((FLOWFILES / "specsteps.py").read_text())
    path = write(
        tmp_path / "cycle.toml",
        '[flow]\nname = "c"\n\n[steps.words]\ncall = "specsteps:words"\ninputs = { text = "top" }\n\n'
        '[steps.top]\ncall = "specsteps:top"\n',
    )

    with pytest.raises(CycleError) as info:
        load_flow(path)
    assert isinstance(info.value, graphlib.CycleError)
    assert str(info.value).startswith(f"{path}:4: steps are in a cycle: ")
    assert sorted(info.value.args[1][:-1]) == ["top", "words"]


def test_a_bad_file_runs_nothing(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    path = write(
        tmp_path / "half.toml",
        f'[flow]\nname = "half"\n[steps.good]\ncommand = [{PY}, "-c", "open({str(ran)!r}, \'w\')"]\n'
        "[steps.bad]\ncommand = []\n",
    )

    (problem,) = problems_of(path)
    assert "step 'bad': command must be a non-empty list of strings" in problem
    assert not ran.exists()


# -- the JSON Schema ---------------------------------------------------------------


def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def test_schema_is_json_and_ships_with_the_package() -> None:
    import importlib.resources

    data = schema()
    assert data["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    shipped = importlib.resources.files("microdag").joinpath("flowfile.schema.json").read_text()
    assert json.loads(shipped) == data
    pyproject = (HERE.parent / "pyproject.toml").read_text()
    package_data = next(line for line in pyproject.splitlines() if line.startswith("microdag = ["))
    assert '"*.json"' in package_data


def test_schema_says_what_the_loader_checks() -> None:
    step = schema()["$defs"]["step"]
    properties = {
        key: {k: v for k, v in rule.items() if k != "description"} for key, rule in step["properties"].items()
    }

    assert list(properties) == list(STEP_OPTIONS)
    assert properties == STEP_OPTIONS
    assert tuple(schema()["properties"]) == TOP_KEYS
    flow = {k: v for k, v in schema()["properties"]["flow"]["properties"]["name"].items() if k != "description"}
    assert {"name": flow} == FLOW_OPTIONS
    assert step["additionalProperties"] is False
    assert step["oneOf"] == [{"required": ["call"]}, {"required": ["python"]}, {"required": ["command"]}]


def test_every_option_of_flow_add_that_is_data_is_a_step_key() -> None:
    import inspect

    from microdag import Flow

    options = set(inspect.signature(Flow.add).parameters) - {"self", "name", "fn"}
    assert options - {"retry_on"} == set(STEP_OPTIONS) - {"call", "python", "command", "output"}


def _valid(value: object, rule: dict, root: dict) -> bool:
    """A structural JSON Schema check, for the keywords the flow-file schema uses."""
    if "$ref" in rule:
        target = root
        for part in rule["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return _valid(value, target, root)
    kinds = {
        "object": dict, "array": list, "string": str, "boolean": bool,
        "integer": int, "number": (int, float),
    }
    kind = rule.get("type")
    if kind is not None:
        if not isinstance(value, kinds[kind]) or (kind in ("integer", "number") and isinstance(value, bool)):
            return False
    if "enum" in rule and value not in rule["enum"]:
        return False
    if isinstance(value, str):
        import re

        if len(value) < rule.get("minLength", 0):
            return False
        if "pattern" in rule and not re.search(rule["pattern"], value):
            return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < rule.get("minimum", value) or value > rule.get("maximum", value):
            return False
        if "exclusiveMinimum" in rule and value <= rule["exclusiveMinimum"]:
            return False
    if isinstance(value, list):
        if len(value) < rule.get("minItems", 0):
            return False
        if "items" in rule and not all(_valid(v, rule["items"], root) for v in value):
            return False
    if isinstance(value, dict):
        props = rule.get("properties", {})
        if any(key not in value for key in rule.get("required", ())):
            return False
        if len(value) < rule.get("minProperties", 0):
            return False
        for key, item in value.items():
            if "propertyNames" in rule and not _valid(key, rule["propertyNames"], root):
                return False
            if key in props:
                if not _valid(item, props[key], root):
                    return False
            elif rule.get("additionalProperties") is False:
                return False
            elif isinstance(rule.get("additionalProperties"), dict):
                if not _valid(item, rule["additionalProperties"], root):
                    return False
        for key, needed in rule.get("dependentRequired", {}).items():
            if key in value and any(n not in value for n in needed):
                return False
        for key, schema_ in rule.get("dependentSchemas", {}).items():
            if key in value and not _valid(value, schema_, root):
                return False
    if "not" in rule and _valid(value, rule["not"], root):
        return False
    if "if" in rule and _valid(value, rule["if"], root) and not _valid(value, rule.get("then", {}), root):
        return False
    if "oneOf" in rule and sum(_valid(value, r, root) for r in rule["oneOf"]) != 1:
        return False
    return True


def _documents() -> list[tuple[str, object]]:
    import tomllib

    out: list[tuple[str, object]] = []
    examples = HERE.parent / "examples"
    for path in [*sorted(FLOWFILES.iterdir()), *sorted(examples.rglob("*.toml")), *sorted(examples.rglob("*.json"))]:
        if path.suffix == ".toml":
            out.append((str(path), tomllib.loads(path.read_text(encoding="utf-8"))))
        elif path.suffix == ".json":
            out.append((str(path), json.loads(path.read_text(encoding="utf-8"))))
    assert len(out) >= 2
    return out


def test_example_files_conform_to_the_schema() -> None:
    root = schema()
    for name, document in _documents():
        assert _valid(document, root, root), name
        load_flow(name)  # and the loader agrees


GOOD = {"flow": {"name": "x"}, "steps": {"a": {"call": "m:f"}}}
BAD = [
    {"steps": {"a": {"call": "m:f"}}},  # no [flow]
    {"flow": {"name": "x"}, "steps": {}},  # no steps
    {"flow": {"name": "x"}, "steps": {"a": {"call": "m:f", "command": ["x"]}}},
    {"flow": {"name": "x"}, "steps": {"a": {}}},
    {"flow": {"name": "x"}, "steps": {"a": {"call": "no-colon"}}},
    {"flow": {"name": "x"}, "steps": {"a": {"call": "m:f", "retries": -1}}},
    {"flow": {"name": "x"}, "steps": {"a": {"call": "m:f", "timeout": 0}}},
    {"flow": {"name": "x"}, "steps": {"a": {"call": "m:f", "cache": "yes"}}},
    {"flow": {"name": "x"}, "steps": {"a": {"call": "m:f", "retires": 1}}},
    {"flow": {"name": "x"}, "steps": {"a": {"call": "m:f", "batch_size": 2}}},
    {"flow": {"name": "x"}, "steps": {"a": {"command": ["x"], "inputs": {"p": "b"}}}},
    {"flow": {"name": "x"}, "steps": {"a": {"command": []}}},
    {"flow": {"name": "x"}, "steps": {"a": {"call": "m:f", "output": "json"}}},
    {"flow": {"name": "x"}, "steps": {"a": {"command": ["x"], "output": "xml"}}},
    {"flow": {"name": "x"}, "inputs": {"v": [1]}, "steps": {"a": {"command": ["x", "{inputs.v}"], "map": "v", "batch_size": 2}}},
    {"flow": {"name": "x"}, "inputs": {"v": [1]}, "steps": {"a": {"command": ["x", "{inputs.v}"], "map": "v", "batch_size": 2, "output": "text"}}},
    {"flow": {"name": "x"}, "inputs": {"not ok": 1}, "steps": {"a": {"call": "m:f"}}},
    {"flow": {"name": "x", "extra": 1}, "steps": {"a": {"call": "m:f"}}},
    {"flow": {"name": "x"}, "steps": {"a": {"call": "m:f"}}, "stray": 1},
]


@pytest.mark.parametrize("document", BAD)
def test_schema_and_loader_both_reject(tmp_path: Path, document: dict) -> None:
    root = schema()
    (tmp_path / "m.py").write_text("def f():\n    return 1\n")
    path = write(tmp_path / "doc.json", json.dumps(document))

    assert _valid(GOOD, root, root)
    assert not _valid(document, root, root)
    assert problems_of(path)


def test_example_files_pass_jsonschema_when_installed() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(schema())
    validator.check_schema(schema())
    for name, document in _documents():
        assert not list(validator.iter_errors(document)), name
    assert validator.is_valid(GOOD)
    assert not any(validator.is_valid(document) for document in BAD)


# -- import cost -------------------------------------------------------------------


def test_loading_the_module_imports_nothing_heavy() -> None:
    code = (
        "import sys; before = set(sys.modules); import microdag._spec; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    added = set(out.stdout.split())
    assert "microdag._spec" in added
    assert not added & {"tomllib", "json", "subprocess", "inspect", "importlib.util", "typing", "difflib"}


# -- the documentation's examples --------------------------------------------------


def _doc_blocks(kind: str) -> list[str]:
    import re

    text = (HERE.parent / "docs" / "flow-file.md").read_text(encoding="utf-8")
    return re.findall(rf"^```{kind}\n(.*?)^```$", text, flags=re.M | re.S)


def test_docs_examples_load_and_their_errors_are_the_real_ones(tmp_path: Path) -> None:
    import shutil

    examples = HERE.parent / "examples" / "website"
    shutil.copy(examples / "websteps.py", tmp_path / "websteps.py")
    example, typed, limited, keyed, inline, snippet, bad = _doc_blocks("toml")
    assert inline == (HERE.parent / "examples" / "inline" / "flow.toml").read_text(encoding="utf-8")
    (json_example,) = _doc_blocks("json")
    (report,) = _doc_blocks("text")

    # the docs show the example's files as they are (docs/test_docs.py runs it)
    assert example == (examples / "website.toml").read_text(encoding="utf-8")
    assert json_example == (examples / "website.json").read_text(encoding="utf-8")
    toml_flow = load_flow(str(examples / "website.toml"))
    json_flow = load_flow(str(examples / "website.json"))
    assert toml_flow.steps == json_flow.steps == ("fetch", "count", "top-words")
    assert toml_flow.inputs == json_flow.inputs == {"url": False, "limit": False}
    commands = load_flow(write(tmp_path / "commands.toml", '[flow]\nname = "c"\n[steps.fetch]\ncommand = ["true"]\n' + snippet))
    fns = {name: commands._steps[commands._index[name]].fn for name in ("count", "users", "greet")}
    assert {name: fn.output for name, fn in fns.items()} == {"count": "json", "users": "lines", "greet": "text"}
    assert fns["users"].parts[2] == ("{print $1}",) and fns["greet"].parts[1] == ("hello ", ("env", "USER"))
    typed_flow = load_flow(write(tmp_path / "typed.toml", '[flow]\nname = "t"\n' + typed + '[steps.s]\ncommand = '
                                 '["echo", "{inputs.limit} {inputs.version} {inputs.mode} {inputs.tags}"]\n'))
    assert typed_flow.inputs == {"limit": False, "version": True, "mode": False, "tags": False}
    assert typed_flow.run({"version": "2"})["s"] == '10 2 fast ["a","b"]'
    (tmp_path / "search.py").write_text("def run(query):\n    return query['text']\n")
    keyed_flow = load_flow(write(tmp_path / "keyed.toml", '[flow]\nname = "k"\n' + keyed))
    queries = [{"query_uuid": "q-2", "text": "b"}, {"query_uuid": "q-1", "text": "a"}]
    assert keyed_flow.run({"query": queries})["search"] == ["b", "a"]
    path = write(tmp_path / "website.toml", bad)
    with pytest.raises(FlowError) as info:
        load_flow(path)
    shown = f"microdag.FlowError: {info.value}\n".replace(str(tmp_path) + os.sep, "")
    assert shown == report
    write(tmp_path / "steps.py", "def fetch():\n    return 1\n\ndef load():\n    return 2\n")
    sys.modules.pop("steps", None)  # (the docs' module name: this folder's, not one a test imported before)
    try:
        limited_flow = load_flow(write(tmp_path / "limited.toml", '[flow]\nname = "l"\n' + limited))
        assert limited_flow.run(keep_outputs=True).outputs == {"fetch": 1, "load": 2}
    finally:
        sys.modules.pop("steps", None)


@pytest.mark.parametrize("suffix", ["toml", "json"])
def test_values_nested_too_deep_are_a_flow_error_with_the_line(tmp_path, suffix) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    path = tmp_path / f"deep.{suffix}"
    if suffix == "toml":
        path.write_text(f'[flow]\nname = "deep"\n[inputs]\nv = {deep}\n')
        line = 4
    else:
        path.write_text('{"flow": {"name": "deep"},\n"inputs":\n{"v": ' + deep + "}}")
        line = 3
    with pytest.raises(FlowError) as info:
        load_flow(str(path))
    assert str(info.value) == f"{path}:{line}: values nest more than 64 levels deep"


def test_brackets_in_strings_and_comments_do_not_count_as_nesting(tmp_path) -> None:
    path = tmp_path / "brackets.toml"
    path.write_text(
        '[flow]\nname = "b"\n# [' + "[" * 100 + '\n[inputs]\nv = "' + "{" * 100 + '"\n'
        '[steps.a]\ncommand = ["echo", "{inputs.v}"]\n'
    )
    assert load_flow(str(path)).steps == ("a",)
