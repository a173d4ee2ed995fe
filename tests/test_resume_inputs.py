"""A resume uses what the run used: its effective inputs, and the code of the
steps it finished.

Every run records its effective inputs (those given, and the defaults of the
others); a resume gives them again, so that a default edited in between does
not reach only the steps that run again.  A resume refuses (without
``force``) when the code of a step the run finished has changed since,
naming it; a change to the code of a step that did not finish (the fix the
resume is for) is fine.
"""

from pathlib import Path

import pytest

import resumesteps as rs
from microdag import Flow, FlowError
from microdag.stores import SQLiteStore


def release_flow(build=rs.build, publish=rs.publish) -> Flow:
    flow = Flow("release")
    flow.add("build", build)
    flow.add("publish", publish)
    return flow


@pytest.fixture
def first(tmp_path):
    """A failed run of the release flow, with its defaults (version 1.0)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    store = SQLiteStore(tmp_path / "runs.db")
    run = release_flow().run({"marks": str(marks)}, store=store, raise_on_failure=False)
    assert run.status == "failed"
    yield store, run, marks
    store.close()


def test_a_run_records_its_effective_inputs(first) -> None:
    store, run, marks = first
    assert run.inputs == {"marks": str(marks), "version": "1.0"}
    assert store.run_info(run.id).inputs == {"marks": str(marks), "version": "1.0"}


def test_a_resume_uses_the_recorded_inputs_not_defaults_edited_since(first) -> None:
    store, run, marks = first
    (marks / "fixed").write_text("")
    edited = release_flow(rs.build, rs.publish_v2)  # publish now defaults to 2.0
    resumed = edited.run(store=store, run_id=run.id, resume=True)
    assert resumed["publish"] == "uploading artifact-1.0.tar.gz as release 1.0"


def test_a_resume_refuses_when_a_finished_steps_code_changed(first) -> None:
    store, run, marks = first
    (marks / "fixed").write_text("")
    edited = release_flow(build=rs.build_new_code)
    with pytest.raises(FlowError, match=r"finished steps whose code .* changed since: 'build'"):
        edited.run(store=store, run_id=run.id, resume=True)
    assert store.run_info(run.id).status == "failed"  # untouched, and not held
    resumed = edited.run(store=store, run_id=run.id, resume=True, force=True)
    assert resumed["publish"] == "uploading artifact-1.0.tar.gz as release 1.0"  # build's stored output


def test_a_change_to_a_default_alone_is_no_reason_to_refuse(first) -> None:
    store, run, marks = first
    (marks / "fixed").write_text("")
    edited = release_flow(rs.build_v2, rs.publish_v2)  # defaults 2.0; the recorded 1.0 is used
    resumed = edited.run(store=store, run_id=run.id, resume=True)
    assert resumed["publish"] == "uploading artifact-1.0.tar.gz as release 1.0"
    assert (marks / "build").read_text() == "x"  # build did not run again


def test_a_fix_to_the_failed_step_resumes(first) -> None:
    store, run, marks = first
    fixed = release_flow(publish=rs.publish_v2)  # new code for the step that failed
    resumed = fixed.run(store=store, run_id=run.id, resume=True, inputs={"marks": str(marks), "version": "1.0"})
    assert resumed["publish"] == "uploading artifact-1.0.tar.gz as release 1.0"


INLINE = Path(__file__).resolve().parent / "flowfiles" / "inline.toml"


def test_a_resume_refuses_changed_inline_code_and_keeps_code_only_moved(tmp_path) -> None:
    """A flow file's python steps: the code that changed is refused, naming its step;
    code moved down the file, or given a comment, is the same code."""
    import microdag

    marker = tmp_path / "fixed"
    failing = INLINE.read_text(encoding="utf-8").replace(
        "return sum(each) + sum(scaled)",
        f"import os\n    if not os.path.exists({str(marker)!r}):\n"
        "        raise RuntimeError('not yet')\n    return sum(each) + sum(scaled)")
    path = tmp_path / "flow.toml"
    path.write_text(failing, encoding="utf-8")
    store = SQLiteStore(tmp_path / "runs.db")
    run = microdag.load_flow(str(path)).run(store=store, raise_on_failure=False)
    assert run.status == "failed" and run.tasks["total"].status == "failed"
    marker.write_text("")
    path.write_text(failing.replace("return [1, 2, 3]", "return [1, 2, 4]"), encoding="utf-8")
    with pytest.raises(FlowError, match=r"finished steps whose code .* changed since: 'numbers'"):
        microdag.load_flow(str(path)).run(store=store, run_id=run.id, resume=True)
    moved = "# moved down\n\n" + failing.replace("    return [1, 2, 3]", "    return [1, 2, 3]  # same")
    path.write_text(moved, encoding="utf-8")
    resumed = microdag.load_flow(str(path)).run(store=store, run_id=run.id, resume=True)
    assert resumed["total"] == 39
    store.close()
