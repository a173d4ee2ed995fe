"""Caching by input hash (``cache=True``): with each store and without one,
on inline and threads; a changed input, a changed function or an expired
``cache_ttl`` runs the step again."""

import time

import pytest

import microdag
from microdag import FlowError
from microdag.stores import SQLiteStore
from support import STORE_KINDS, make_store


@pytest.fixture(params=["none", *STORE_KINDS])
def store(request, tmp_path):
    """No store (the cache of the flow's process), or one of each kind."""
    if request.param == "none":
        yield None
        return
    made = make_store(request.param, tmp_path)
    yield made
    made.close()


def counting_flow(calls: list, name: str = "cache-test", ttl=None) -> microdag.Flow:
    def square(x):
        calls.append(x)
        return x * x

    flow = microdag.Flow(name)
    flow.add(f"square-{id(calls)}", square, cache=True, cache_ttl=ttl)
    flow.add("report", lambda **kw: sorted(kw.values()), depends_on=[f"square-{id(calls)}"])
    return flow


@pytest.mark.parametrize("executor", ["inline", "threads"])
def test_same_inputs_reuse_the_output_without_calling(store, executor) -> None:
    calls: list = []
    flow = counting_flow(calls)
    first = flow.run({"x": 3}, store=store, executor=executor)
    second = flow.run({"x": 3}, store=store, executor=executor)
    step = f"square-{id(calls)}"
    assert calls == [3]
    assert first["report"] == second["report"] == [9]
    assert not first.tasks[step].cached and second.tasks[step].cached
    assert second.tasks[step].status == "succeeded" and second.tasks[step].attempts == 0
    third = flow.run({"x": 4}, store=store, executor=executor)
    assert calls == [3, 4] and third["report"] == [16]


def test_the_cache_outlives_the_store_object(tmp_path) -> None:
    calls: list = []
    flow = counting_flow(calls)
    flow.run({"x": 5}, store=SQLiteStore(tmp_path / "runs.db"))
    again = flow.run({"x": 5}, store=SQLiteStore(tmp_path / "runs.db"))
    assert calls == [5] and again["report"] == [25]


def test_an_expired_entry_runs_the_step_again(store) -> None:
    calls: list = []
    flow = counting_flow(calls, ttl=0.2)
    flow.run({"x": 2}, store=store)
    flow.run({"x": 2}, store=store)
    time.sleep(0.3)
    flow.run({"x": 2}, store=store)
    assert calls == [2, 2]


def test_another_function_under_the_same_step_name_misses() -> None:
    calls: list = []

    def double(x):
        calls.append(("double", x))
        return 2 * x

    def triple(x):
        calls.append(("triple", x))
        return 3 * x

    one = microdag.Flow("a").add("same-name-step", double, cache=True)
    two = microdag.Flow("b").add("same-name-step", triple, cache=True)
    assert one.run({"x": 1})["same-name-step"] == 2
    assert two.run({"x": 1})["same-name-step"] == 3
    assert calls == [("double", 1), ("triple", 1)]


def test_bad_cache_options_are_flow_errors() -> None:
    with pytest.raises(FlowError, match="cache must be True or False"):
        microdag.Flow("bad").add("s", lambda: 1, cache="yes")
    with pytest.raises(FlowError, match="cache_ttl must be"):
        microdag.Flow("bad").add("s", lambda: 1, cache=True, cache_ttl=0)


def test_a_changed_default_value_misses() -> None:
    calls: list = []

    def scaled(x, factor=2):
        calls.append(factor)
        return x * factor

    flow = microdag.Flow("defaults").add("scaled", scaled, cache=True)
    assert flow.run({"x": 5})["scaled"] == 10
    assert flow.run({"x": 5})["scaled"] == 10  # a hit
    scaled.__defaults__ = (3,)  # as if the source had been edited
    again = microdag.Flow("defaults").add("scaled", scaled, cache=True)
    assert again.run({"x": 5})["scaled"] == 15
    assert calls == [2, 3]


def test_a_flow_file_input_default_is_part_of_the_key(tmp_path) -> None:
    import sys

    (tmp_path / "cachesteps_3e9a.py").write_text("def scaled(x, factor):\n    return x * factor\n")
    text = '[flow]\nname = "c"\n[inputs]\nfactor = {factor}\nx = 5\n[steps.scaled]\ncall = "cachesteps_3e9a:scaled"\ncache = true\n'
    (tmp_path / "flow.toml").write_text(text.format(factor=2))
    try:
        assert microdag.load_flow(str(tmp_path / "flow.toml")).run()["scaled"] == 10
        (tmp_path / "flow.toml").write_text(text.format(factor=3))
        assert microdag.load_flow(str(tmp_path / "flow.toml")).run()["scaled"] == 15
    finally:
        sys.modules.pop("cachesteps_3e9a", None)
        if str(tmp_path) in sys.path:
            sys.path.remove(str(tmp_path))


def test_inline_code_is_the_key_not_its_layout(tmp_path) -> None:
    """A flow file's python step: a hit after comments and blank lines are added,
    a miss after a helper beside the step's function changed."""
    calls = tmp_path / "calls"
    text = ('[flow]\nname = "c"\n\n[steps.total]\ncache = true\npython = """\n'
            f"CALLS = {str(calls)!r}\n\n"
            "def helper(x):\n    return x + 1\n\n"
            "def total(x=1):\n    with open(CALLS, 'a') as f:\n        f.write('.')\n    return helper(x)\n"
            '"""\n')
    path = tmp_path / "flow.toml"
    store = SQLiteStore(tmp_path / "runs.db")

    def run(text: str) -> int:
        path.write_text(text)
        return microdag.load_flow(str(path)).run(store=store)["total"]

    assert run(text) == 2 and run(text) == 2 and calls.read_text() == "."
    assert run("# moved\n\n" + text.replace("def helper(x):", "# helps\n\ndef helper(x):  # why")) == 2
    assert calls.read_text() == "."  # a hit
    assert run(text.replace("return x + 1", "return x + 2")) == 3 and calls.read_text() == ".."
    store.close()
