"""A step's code in the UI (``microdag.ui._code``): a ``call`` step's function
found in its module file, saved back with every other byte kept; refused
outside the served folder, on a stale digest, and when the code is not a
function of that name; the API's routes for it."""

import json
import os
import sys

import pytest

from microdag import _inline
from microdag.ui import _code
from microdag.ui._code import CodeError, StepCode, digest, find
from uiserver import UI, quote

MODULE = (
    "\ufeff# steps of the flow\r\n"
    "import functools\r\n"
    "\r\n"
    "\r\n"
    "@functools.lru_cache()\r\n"
    "@functools.wraps(print)\r\n"
    "def fetch(n):\r\n"
    "\tif n:\r\n"
    "\t\treturn [1, 2]  # tabs\r\n"
    "\treturn []\r\n"
    "\r\n"
    "\r\n"
    "async def total(fetch):\r\n"
    "    return sum(fetch)\r\n"
    "# the end, with no newline"
)


def step(tmp_path: "os.PathLike[str]", call: str, text: str = MODULE, name: str = "steps.py") -> StepCode:
    folder = str(tmp_path)
    with open(os.path.join(folder, name), "w", encoding="utf-8", newline="") as f:
        f.write(text)
    flow = os.path.join(folder, "flow.toml")
    with open(flow, "w") as f:
        f.write(f'[flow]\nname = "f"\n[steps.s]\ncall = "{call}"\n')
    doc = {"flow": {"name": "f"}, "inputs": {"n": 1}, "steps": {"s": {"call": call}, "fetch": {"command": ["true"]}}}
    return StepCode(folder, flow, "flow.toml", "s", doc)


def test_a_function_is_found_with_its_decorators(tmp_path: "os.PathLike[str]") -> None:
    shown = step(tmp_path, "steps:fetch").read()
    assert shown["kind"] == "module" and shown["path"] == "steps.py" and shown["editable"] is True
    assert shown["function"] == "fetch" and shown["line"] == 5 and shown["why"] is None
    assert shown["code"] == "@functools.lru_cache()\r\n@functools.wraps(print)\r\ndef fetch(n):\r\n\tif n:\r\n" \
        "\t\treturn [1, 2]  # tabs\r\n\treturn []"
    assert shown["digest"] == digest(MODULE.encode("utf-8"))
    assert step(tmp_path, "steps:total").read()["code"] == "async def total(fetch):\r\n    return sum(fetch)"


def test_a_save_keeps_every_byte_outside_the_function(tmp_path: "os.PathLike[str]") -> None:
    code = step(tmp_path, "steps:fetch")
    path = os.path.join(str(tmp_path), "steps.py")
    os.chmod(path, 0o640)
    before = open(path, "rb").read()
    shown = code.read()
    saved = code.save("def fetch(n):\n    return list(range(n))\n", shown["digest"])
    after = open(path, "rb").read()
    old = shown["code"].encode()
    new = b"def fetch(n):\r\n    return list(range(n))"  # the file's line endings
    assert after == before.replace(old, new)
    assert saved["code"] == new.decode() and saved["digest"] == digest(after) and saved["line"] == 5
    assert os.stat(path).st_mode & 0o777 == 0o640
    # the last function, before text with no newline
    code = step(tmp_path, "steps:total", after.decode("utf-8"))
    last = code.save("async def total(fetch):\n\treturn 0", code.read()["digest"])
    assert open(path, "rb").read() == after.replace(b"    return sum(fetch)", b"\treturn 0")
    assert open(path, "rb").read().endswith(b"\treturn 0\r\n# the end, with no newline")
    assert last["code"] == "async def total(fetch):\r\n\treturn 0"


def test_a_function_at_the_very_end_and_the_very_start(tmp_path: "os.PathLike[str]") -> None:
    code = step(tmp_path, "steps:f", "def f():\n    return 1")  # no newline at all
    code.save("def f():\n    return 2\n", code.read()["digest"])
    assert open(os.path.join(str(tmp_path), "steps.py"), "rb").read() == b"def f():\n    return 2"
    code = step(tmp_path, "steps:f", "\ufeffdef f():\n    return 1\n\nx = 1\n")
    assert code.read()["line"] == 1 and code.read()["code"] == "def f():\n    return 1"
    code.save("def f():\n    return 3", code.read()["digest"])
    assert open(os.path.join(str(tmp_path), "steps.py"), encoding="utf-8").read() == \
        "\ufeffdef f():\n    return 3\n\nx = 1\n"


def test_bad_code_is_refused_with_problems_and_nothing_written(tmp_path: "os.PathLike[str]") -> None:
    code = step(tmp_path, "steps:fetch")
    digest_ = code.read()["digest"]
    path = os.path.join(str(tmp_path), "steps.py")
    for bad, line, words in [
        ("def fetch(n):\n    return (\n", 2, "syntax error"),
        ("def other(n):\n    return n\n", 1, "no function named 'fetch' (it defines other)"),
        ("x = 1\n", 1, "no function named 'fetch'"),
    ]:
        with pytest.raises(CodeError) as caught:
            code.save(bad, digest_)
        assert caught.value.status == 422
        (problem,) = caught.value.problems
        assert problem["line"] == line and words in problem["message"] and isinstance(problem["col"], int)
        assert open(path, encoding="utf-8", newline="").read() == MODULE
    assert _inline.problems("def fetch():\n  pass\n", "s", None, function="fetch") == []


def test_one_home_for_the_code_checks(tmp_path: "os.PathLike[str]") -> None:
    """A module's function is checked by ``_inline``'s rules, the function named as the call names it:
    what only compiling finds is refused too (it was written to the file)."""
    assert getattr(_code, "problems", _inline.problems) is _inline.problems  # no second copy
    code = step(tmp_path, "steps:fetch")
    path = os.path.join(str(tmp_path), "steps.py")
    for bad in ("def fetch(n):\n    nonlocal q\n", "def fetch(n):\n    return 1\nreturn 2\n"):
        with pytest.raises(CodeError) as caught:
            code.save(bad, code.read()["digest"])
        assert caught.value.status == 422, bad
        expected = [p._asdict() for p in _inline.problems(bad, "s", None, function="fetch")]
        assert caught.value.problems == expected and "syntax error" in expected[0]["message"]
        assert open(path, encoding="utf-8", newline="").read() == MODULE
    # the only function, named otherwise: fine for inline code, not for a module's (the call names it)
    assert _inline.problems("def other():\n    pass\n", "fetch", None) == []
    [p] = _inline.problems("def other():\n    pass\n", "s", None, function="fetch")
    assert "no function named 'fetch' (it defines other" in p.message


def test_a_module_function_s_parameters_are_checked_against_the_flow(tmp_path: "os.PathLike[str]") -> None:
    """``check``: what the panel shows as you type; a save with a parameter that binds to nothing is
    refused, as a flow with such inline code is."""
    code = step(tmp_path, "steps:fetch")
    code.doc = {"flow": {"name": "f"}, "inputs": {"limit": 3}, "steps": {"s": {"call": "steps:fetch"}, "numbers": {}}}
    assert code.check("def fetch(numbers, limit, other=1):\n    pass\n") == []
    [p] = code.check("def fetch(numbrs):\n    pass\n")
    assert p["line"] == 1 and p["col"] == 10 and "did you mean 'numbers'?" in p["message"]
    [p] = code.check("def fetch(n):\n    return (\n")
    assert p["line"] == 2 and "syntax error" in p["message"]
    # the document given (the editor's, maybe unsaved) is what parameters bind to
    doc = {"flow": {"name": "f"}, "steps": {"s": {"call": "steps:fetch", "inputs": {"n": "numbers"}}, "numbers": {}}}
    assert code.check("def fetch(n):\n    pass\n", doc) == []
    digest_ = code.read()["digest"]
    with pytest.raises(CodeError) as caught:
        code.save("def fetch(numbrs):\n    pass\n", digest_)
    assert caught.value.status == 422 and "binds to nothing" in caught.value.problems[0]["message"]
    assert open(os.path.join(str(tmp_path), "steps.py"), encoding="utf-8", newline="").read() == MODULE
    code.save("def fetch(n):\n    pass\n", digest_, doc)  # it binds in the editor's document


def test_a_stale_digest_is_a_conflict(tmp_path: "os.PathLike[str]") -> None:
    code = step(tmp_path, "steps:fetch")
    old = code.read()["digest"]
    path = os.path.join(str(tmp_path), "steps.py")
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n# edited elsewhere\n")
    before = open(path, "rb").read()
    with pytest.raises(CodeError) as caught:
        code.save("def fetch(n):\n    return n\n", old)
    assert caught.value.status == 409 and open(path, "rb").read() == before


def test_a_module_outside_the_folder_is_read_only(tmp_path: "os.PathLike[str]") -> None:
    served = os.path.join(str(tmp_path), "served")
    outside = os.path.join(str(tmp_path), "lib")
    os.makedirs(served)
    os.makedirs(outside)
    with open(os.path.join(outside, "faraway_steps_mod.py"), "w") as f:
        f.write("def far():\n    return 1\n")
    sys.path.append(outside)
    try:
        flow = os.path.join(served, "flow.toml")
        code = StepCode(served, flow, "flow.toml", "s", {"steps": {"s": {"call": "faraway_steps_mod:far"}}})
        shown = code.read()
        assert shown["editable"] is False and shown["path"] == os.path.join(outside, "faraway_steps_mod.py")
        assert "outside" in shown["why"] and shown["code"] == "def far():\n    return 1"
        with pytest.raises(CodeError) as caught:
            code.save("def far():\n    return 2\n", shown["digest"])
        assert caught.value.status == 403
    finally:
        sys.path.remove(outside)


@pytest.mark.parametrize("body,words", [
    ({"command": ["true"]}, "command step"),
    ({"call": "steps:missing"}, "no top-level function 'missing'"),
    ({"call": "nowhere_at_all:f"}, "cannot be found"),
    ({"call": "steps:Class.method"}, "no top-level function"),
])
def test_what_has_no_code_to_show_is_404(tmp_path: "os.PathLike[str]", body: "dict[str, object]", words: str) -> None:
    code = step(tmp_path, "steps:fetch")
    code.body = body
    with pytest.raises(CodeError) as caught:
        code.read()
    assert caught.value.status == 404 and words in caught.value.message
    with pytest.raises(CodeError) as caught:
        StepCode(code.root, code.flow_path, "flow.toml", "ghost", {"steps": {}})
    assert caught.value.status == 404 and "ghost" in caught.value.message


def test_find_ignores_nested_functions_and_takes_the_last_definition() -> None:
    text = "class A:\n    def f(self):\n        pass\n\ndef f():\n    return 1\n\ndef f():\n    return 2\n"
    line, start, end = find(text, "f")  # type: ignore[misc]
    assert line == 8 and text[start:end] == "def f():\n    return 2"
    assert find("def f(:\n", "f") is None and find("x = 1\n", "f") is None


# -- through the server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> "UI":
    folder = tmp_path_factory.mktemp("code")
    (folder / "pkg").mkdir()
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "pkg" / "work.py").write_text("import json\n\n\ndef double(x):\n    return 2 * x\n\n\nTAIL = 1\n")
    (folder / "flow.toml").write_text(
        '[flow]\nname = "code"\n[inputs]\nx = 2\n'
        '[steps.double]\ncall = "pkg.work:double"\n'
        '[steps.echo]\ncommand = ["echo", "{steps.double}"]\n'
    )
    server = UI(str(folder))
    yield server
    assert server.stop() == 0, server.stderr


def test_the_api_reads_and_saves_a_steps_function(ui: UI) -> None:
    url = f"/api/flows/flow.toml/steps/double/code"
    shown = ui.get(url)
    assert shown["path"] == "pkg/work.py" and shown["line"] == 4 and shown["editable"] is True  # type: ignore[index]
    assert shown["code"] == "def double(x):\n    return 2 * x"  # type: ignore[index]
    status, _, body = ui.request("PUT", url, {"code": "def double(x):\n    return 3 * x\n", "digest": shown["digest"]})  # type: ignore[index]
    assert status == 200, body
    saved = json.loads(body)
    assert saved["code"] == "def double(x):\n    return 3 * x" and saved["digest"] != shown["digest"]  # type: ignore[index]
    text = open(os.path.join(ui.folder, "pkg", "work.py")).read()
    assert text == "import json\n\n\ndef double(x):\n    return 3 * x\n\n\nTAIL = 1\n"
    status, _, body = ui.request("PUT", url, {"code": "def double(x):\n    return x\n", "digest": shown["digest"]})  # type: ignore[index]
    assert status == 409 and b"changed" in body
    status, _, body = ui.request("PUT", url, {"code": "def double(x:\n", "digest": saved["digest"]})
    assert status == 422 and json.loads(body)["problems"][0]["line"] == 1
    status, _, body = ui.request("PUT", url, {"code": 3})
    assert status == 400
    # problems as you type: the code checked against the flow (its steps and inputs), nothing written
    before = open(os.path.join(ui.folder, "pkg", "work.py")).read()
    check = url + "/check"
    assert ui.post(check, {"code": "def double(x):\n    return x\n"}, 200) == {"problems": []}
    found = ui.post(check, {"code": "def double(xx, echo):\n    return (\n"}, 200)["problems"]
    assert [(p["line"], p["message"][:12]) for p in found] == [(2, "syntax error")]
    found = ui.post(check, {"code": "def double(x,\n           ecoh):\n    return x\n"}, 200)["problems"]
    assert len(found) == 1 and found[0]["line"] == 2 and "did you mean 'echo'?" in found[0]["message"]
    doc = ui.get("/api/flows/flow.toml")["doc"]
    doc["inputs"]["xx"] = 1  # the editor's unsaved document
    assert ui.post(check, {"code": "def double(xx):\n    return xx\n", "doc": doc}, 200) == {"problems": []}
    assert ui.request("POST", check, {"code": None})[0] == 400
    assert ui.request("POST", "/api/flows/flow.toml/steps/echo/code/check", {"code": "def f():\n  pass"})[0] == 404
    assert open(os.path.join(ui.folder, "pkg", "work.py")).read() == before
    for path in ("/api/flows/flow.toml/steps/echo/code", "/api/flows/flow.toml/steps/ghost/code"):
        status, _, body = ui.request("GET", path)
        assert status == 404 and (b"echo" in body or b"ghost" in body)
    status, _, _ = ui.request("GET", f"/api/flows/{quote('../x.toml')}/steps/a/code")
    assert status == 403


# -- run this step, run up to here ------------------------------------------------------

RUNS = """\
[flow]
name = "runs"

[inputs]
x = 2

[steps.base]
call = "pkg.calc:base"

[steps.twice]
command = ["echo", "{steps.base}"]
output = "json"
depends_on = ["base"]
"""


def _output(ui: UI, run_id: str, step: str, timeout: float = 60) -> "object":
    """The step's output once the run has ended (its run must succeed)."""
    doc = ui.wait_run(run_id, timeout)
    assert doc["run"]["status"] == "succeeded", doc
    return ui.get(f"/api/runs/{run_id}/steps/{step}/output")["output"]  # type: ignore[index]


def test_run_up_to_here_then_this_step_alone(ui: UI) -> None:
    with open(os.path.join(ui.folder, "pkg", "calc.py"), "w") as f:
        f.write("def base(x):\n    return x + 40\n")
    with open(os.path.join(ui.folder, "runs.toml"), "w") as f:
        f.write(RUNS)
    url = "/api/flows/runs.toml/steps/twice/run"
    first = ui.post(url, {"doc": None, "inputs": None, "from_run": None, "upstream": True}, 202)["run_id"]
    assert _output(ui, first, "twice") == 42
    detail = ui.get(f"/api/runs/{first}")
    assert {t["step"] for t in detail["tasks"]} == {"base", "twice"} and detail["run"]["flow"] == "runs"
    # this step alone, on what the latest run recorded, from the editor's unsaved document
    doc = ui.get("/api/flows/runs.toml")["doc"]
    doc["steps"]["twice"]["command"] = ["echo", "[{steps.base}, {steps.base}]"]
    alone = ui.post(url, {"doc": doc, "inputs": None, "from_run": None, "upstream": False}, 202)["run_id"]
    assert _output(ui, alone, "twice") == [42, 42]
    shown = ui.get(f"/api/runs/{alone}")
    assert [t["step"] for t in shown["tasks"]] == ["twice"]
    assert shown["flow_path"] is None and shown["run"]["source"].endswith(".toml")  # a draft's: never offered
    # typed arguments win; a named run is used as asked
    typed = ui.post(url, {"doc": None, "inputs": {"base": 7}, "from_run": first, "upstream": False}, 202)["run_id"]
    assert _output(ui, typed, "twice") == 7
    # the runs are listed with the flow's, the drafts are gone and never listed
    assert {alone, first, typed} <= {r["id"] for r in ui.get("/api/runs?flow=runs")["runs"]}
    assert not [n for n in os.listdir(ui.folder) if n.startswith(".microdag-draft-")]
    assert not [f for f in ui.get("/api/flows")["flows"] if "draft" in f["path"]]
    assert open(os.path.join(ui.folder, "runs.toml")).read() == RUNS  # the file untouched


def test_a_step_run_that_cannot_start_says_why(ui: UI) -> None:
    with open(os.path.join(ui.folder, "fresh.toml"), "w") as f:
        f.write(RUNS.replace('name = "runs"', 'name = "fresh"'))
    url = "/api/flows/fresh.toml/steps/twice/run"
    status, _, body = ui.request("POST", url, {"doc": None, "inputs": None, "from_run": None, "upstream": False})
    assert status == 422 and b"'twice' needs 'base'" in body  # no run of the flow recorded it
    status, _, body = ui.request("POST", "/api/flows/fresh.toml/steps/ghost/run", {"upstream": True})
    assert status == 404 and b"ghost" in body
    status, _, body = ui.request("POST", url, {"from_run": "nope", "upstream": False})
    assert status == 404 and b"nope" in body
    doc = ui.get("/api/flows/fresh.toml")["doc"]
    doc["steps"]["base"]["retries"] = -1
    status, _, body = ui.request("POST", "/api/flows/fresh.toml/steps/base/run", {"doc": doc, "upstream": True})
    assert status == 422 and json.loads(body)["problems"][0]["step"] == "base"
    status, _, body = ui.request("POST", url, {"inputs": [1]})
    assert status == 400 and b"twice" in body
    assert not [n for n in os.listdir(ui.folder) if n.startswith(".microdag-draft-")]


def test_run_this_step_is_quick(ui: UI) -> None:
    """From the POST to the output readable: the figure in docs/performance.md."""
    import time

    with open(os.path.join(ui.folder, "pkg", "quick.py"), "w") as f:
        f.write("def one(x):\n    return x + 1\n")
    with open(os.path.join(ui.folder, "quick.toml"), "w") as f:
        f.write('[flow]\nname = "quick"\n[steps.one]\ncall = "pkg.quick:one"\n')
    times = []
    for _ in range(5):
        started = time.perf_counter()
        run_id = ui.post("/api/flows/quick.toml/steps/one/run", {"inputs": {"x": 1}, "upstream": False}, 202)["run_id"]
        while True:
            status, _, body = ui.request("GET", f"/api/runs/{run_id}/steps/one/output")
            if status == 200:
                break
            assert time.perf_counter() - started < 30
            time.sleep(0.01)
        times.append(time.perf_counter() - started)
        assert json.loads(body)["output"] == 2
    best = min(times)
    print(f"run this step: POST to output readable, best of 5: {best * 1000:.0f} ms, median {sorted(times)[2] * 1000:.0f} ms")
    assert best < 2.0  # the target is 0.5 s on a quiet machine; a shared one gets slack


# -- a new flow ---------------------------------------------------------------------------


def test_a_new_flow_from_the_flows_view(ui: UI) -> None:
    status, _, body = ui.request("POST", "/api/flows", {"path": "new/first.toml", "doc": None})
    assert status == 201, body
    made = json.loads(body)
    assert made["path"] == "new/first.toml" and made["name"] == "first" and made["editable"] is True
    assert made["doc"] == {"flow": {"name": "first"}, "steps": {}} and made["problems"]  # it needs a step yet
    assert ui.get(f"/api/flows/{quote('new/first.toml')}")["doc"] == made["doc"]
    assert "new/first.toml" in [f["path"] for f in ui.get("/api/flows")["flows"]]
    doc = {"flow": {"name": "second"}, "steps": {"hello": {"command": ["echo", "hi"]}}}
    status, _, body = ui.request("POST", "/api/flows", {"path": "second.json", "doc": doc})
    assert status == 201 and json.loads(body)["problems"] == []
    with open(os.path.join(ui.folder, "second.json")) as f:
        assert json.load(f) == doc
    status, _, body = ui.request("POST", "/api/flows", {"path": "second.json", "doc": doc})
    assert status == 409 and b"exists" in body
    for path in ("../out.toml", "/tmp/abs.toml", "x.yaml", "flows.py"):
        status, _, body = ui.request("POST", "/api/flows", {"path": path, "doc": None})
        assert status == 400, (path, body)
    bad = {"flow": {"name": "bad"}, "steps": {"a": {"command": ["true"], "retries": -1}}}
    status, _, body = ui.request("POST", "/api/flows", {"path": "bad.toml", "doc": bad})
    assert status == 422 and not os.path.exists(os.path.join(ui.folder, "bad.toml"))


# -- hostile names and code -----------------------------------------------------------------

HOSTILE = [
    "one", "__proto__", "constructor", "</script><b>", "q\"u'o`te", "\u00e9t\u00e9 \u2603", "x" * 300,
]


@pytest.mark.parametrize("name", HOSTILE)
def test_an_inline_step_s_first_line_whatever_its_name_and_quotes(tmp_path: "os.PathLike[str]", name: str) -> None:
    """The line shown is the code's first line in the flow file: on the key's line for code written on
    one line, the next one after an opening quote that ends its line; code holding the other quotes."""
    import tomllib

    key = json.dumps(name)
    text = (f'[flow]\nname = "f"\n\n[steps.{key}]\npython = \'\'\'def s(): return 1\'\'\'\n\n'
            f'[steps.{json.dumps(name + "2")}]\npython = """\nx = \'\'\'not the end\'\'\'\ndef s():\n    return x\n"""\n')
    flow = os.path.join(str(tmp_path), "flow.toml")
    with open(flow, "w", encoding="utf-8") as f:
        f.write(text)
    doc = tomllib.loads(text)
    one = StepCode(str(tmp_path), flow, "flow.toml", name, doc).read()
    assert (one["kind"], one["line"], one["code"]) == ("inline", 5, "def s(): return 1")
    two = StepCode(str(tmp_path), flow, "flow.toml", name + "2", doc).read()
    assert two["line"] == 9 and two["code"].startswith("x = '''not the end'''")
    assert text.splitlines()[two["line"] - 1] == "x = '''not the end'''"


@pytest.mark.parametrize("code", ["def p():\n    return 1\x00\n", "def p(:\n", "'''"])
def test_a_step_whose_code_cannot_compile_is_refused_its_run_with_its_problems(ui: UI, code: str) -> None:
    doc = {"flow": {"name": "code"}, "steps": {"p": {"python": code}}}
    for upstream in (False, True):
        status, _, body = ui.request("POST", "/api/flows/flow.toml/steps/p/run", {"doc": doc, "upstream": upstream})
        assert status == 422, body
        assert [p["field"] for p in json.loads(body)["problems"]] == ["python"]


@pytest.mark.parametrize("body", [5, "text", ["a"], None])
def test_a_step_that_is_not_a_table_is_refused_its_run_with_its_problems(ui: UI, body: object) -> None:
    """Run alone or with its ancestors, the same answer: the flow's problems (422), or a value no flow
    file can hold (400, as a save says it)."""
    doc = {"flow": {"name": "code"}, "steps": {"p": body, "q": {"command": ["true"]}}}
    for upstream in (False, True):
        status, _, answer = ui.request("POST", "/api/flows/flow.toml/steps/p/run", {"doc": doc, "upstream": upstream})
        if body is None:
            assert status == 400 and b"steps.p" in answer, (upstream, answer)
        else:
            assert status == 422 and json.loads(answer)["problems"], (upstream, answer)
