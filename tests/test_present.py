"""How a run is shown (``_present``): status order, a map step's status,
durations as text, output previews; and that the CLI, the report and the UI's
API use these rules, not copies of them."""

import pytest

import microdag
from microdag import _present
from microdag._present import WORST_FIRST, duration_text, preview, shorten, step_status, worst
from microdag._records import TaskRecord
from microdag.cli import _common
from microdag.ui import _runs


def record(step: str, item: int, status: str) -> TaskRecord:
    return TaskRecord(step, item, status, 1, 0.0, 1.0, None, None, None, None)


def test_status_order_is_worst_first() -> None:
    assert WORST_FIRST == ("failed", "running", "cancelled", "skipped", "pending")
    assert worst(["succeeded", "pending", "failed"]) == "failed"
    assert worst(["succeeded", "succeeded"]) == "succeeded"
    assert worst([]) == "pending"
    assert worst(["succeeded", "from-a-newer-version"]) == "from-a-newer-version"


@pytest.mark.parametrize("items,expected", [
    (["succeeded", "skipped"], "skipped"),  # the case the copies disagreed on
    (["skipped", "succeeded"], "skipped"),
    (["succeeded", "cancelled", "failed"], "failed"),
    (["succeeded", "running"], "running"),
    (["succeeded"], "succeeded"),
    ([], "pending"),
])
def test_a_map_steps_status_is_its_items_worst(items: "list[str]", expected: str) -> None:
    assert step_status(None, items) == expected
    assert step_status("succeeded", items) == "succeeded"  # its own record wins


def test_the_ui_and_the_report_agree_on_a_map_step_with_a_skipped_item() -> None:
    records = [record("a", -1, "succeeded"), record("m", 0, "succeeded"), record("m", 1, "skipped")]
    assert _runs.statuses(records) == {"a": "succeeded", "m": "skipped"}


@pytest.mark.parametrize("seconds,text", [
    (None, "-"), (0.0, "0.0 ms"), (0.000046, "0.0 ms"), (0.0003, "0.3 ms"), (0.01, "10.0 ms"),
    (0.5, "500.0 ms"), (1.2349, "1.23 s"), (59.5, "59.50 s"), (119.994, "119.99 s"), (123.4, "2 min 3 s"),
    (179.7, "3 min 0 s"), (3599.4, "59 min 59 s"), (3725, "1 h 2 min"), (-1.0, "0.0 ms"),
])
def test_durations_read_as_the_command_line_prints_them(seconds: "float | None", text: str) -> None:
    assert duration_text(seconds) == text


def test_the_command_line_and_the_report_use_the_one_duration_format() -> None:
    import microdag._render as render

    assert _common.took(0.0003, None) == "0.3 ms"
    assert render._span(0.0, 0.0003, "succeeded") == "0.3 ms"
    assert render._span(0.0, 123.4, "succeeded") == "2 min 3 s"


def test_previews_are_json_or_a_bounded_repr_and_cut_with_dots() -> None:
    assert preview({"a": 1}, 100) == '{"a": 1}'
    assert preview({"a": 1}, 100, indent=2) == '{\n  "a": 1\n}'
    big = list(range(100_000))
    assert 100 < len(preview(big, 100)) < 200  # stops soon after the limit, never the whole value
    assert preview(object(), 100).startswith("<object object at")
    assert len(preview([object()] * 1000, 100)) < 300  # a big repr is bounded too
    assert shorten("x" * 10, 10) == "x" * 10
    assert shorten("x" * 11, 10) == "x" * 7 + "..."
    assert _common.preview(big, 20) == shorten(preview(big, 20), 20)


def test_a_broken_repr_is_named_not_raised() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert preview(Broken(), 50).startswith("<Broken")


def test_the_ui_api_sends_duration_text_beside_the_numbers() -> None:
    flow = microdag.Flow("d")
    flow.add("a", lambda: 1)
    from microdag.stores import open_store

    store = open_store("memory")
    run = flow.run(store=store)
    assert run.finished is not None
    detail = _runs.run_detail(store, run.id)
    (task,) = detail["tasks"]
    assert task["duration_text"] == duration_text(task["duration"])
    assert detail["run"]["duration_text"] == duration_text(run.finished - run.started)
    assert _runs.list_runs(store, None, None, 10)["runs"][0]["duration_text"] == detail["run"]["duration_text"]


def test_nothing_else_holds_a_copy_of_the_rules() -> None:
    import inspect

    import microdag._render as render

    source = inspect.getsource(render) + inspect.getsource(_runs) + inspect.getsource(_common)
    assert '"failed", "running"' not in source and "def _duration" not in source
    assert "reprlib" not in inspect.getsource(_runs) and "reprlib" not in inspect.getsource(_common)
    assert _present.__all__
