"""A step's code in the UI (``microdag.ui._code``): a ``call`` step's function
found in its module file, saved back with every other byte kept; refused
outside the served folder, on a stale digest, and when the code is not a
function of that name; the API's routes for it."""

import json
import os
import sys

import pytest

from microdag.ui._code import CodeError, StepCode, digest, find, problems
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
    return StepCode(folder, flow, "flow.toml", "s", {"flow": {"name": "f"}, "steps": {"s": {"call": call}}})


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
    assert problems("def fetch():\n  pass\n", "fetch") == []


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
    for path in ("/api/flows/flow.toml/steps/echo/code", "/api/flows/flow.toml/steps/ghost/code"):
        status, _, body = ui.request("GET", path)
        assert status == 404 and (b"echo" in body or b"ghost" in body)
    status, _, _ = ui.request("GET", f"/api/flows/{quote('../x.toml')}/steps/a/code")
    assert status == 403
