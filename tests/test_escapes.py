"""No escapes: run ids that would leave their store, work folders that collide
or outlive their runs.

- a run id is checked the same way on every store and by ``Flow.run``: no path
  separators, no ``.``/``..``, no control characters or lone surrogates, at
  most 128 characters; a bad one is a clear ``ValueError`` (``FlowError`` from
  ``run``) and nothing is written anywhere;
- ``prune`` deletes the work folders of the runs it deletes, on every store;
- steps whose names differ get different work folders, even when the names
  differ only in characters a folder name cannot hold.
"""

import os

import pytest

import microdag
from microdag import Flow, FlowError
from microdag.stores import RunInfo
from support import STORE_KINDS, make_store

BAD_IDS = ["../../../x", "/tmp/abs", "a/b", "a\\b", "..", ".", "x" * 129, "a\x00b", "tab\there", "s\udcff"]


def writes_a_file():
    path = os.path.join(microdag.context().workdir, "out.txt")
    with open(path, "wb") as f:
        f.write(microdag.context().step.encode("utf-8", "surrogatepass"))
    return path


@pytest.mark.parametrize("kind", STORE_KINDS)
@pytest.mark.parametrize("run_id", BAD_IDS)
def test_a_run_id_that_cannot_name_a_run_is_refused_everywhere(kind, run_id, tmp_path) -> None:
    store = make_store(kind, tmp_path)
    before = set(os.listdir(tmp_path))
    try:
        with pytest.raises(ValueError, match="run id"):
            store.begin(RunInfo(run_id, "f", "fp", {}, "running", 1.0))
        flow = Flow("ids").add("w", writes_a_file)
        with pytest.raises(FlowError, match="run id"):
            flow.run(store=store, run_id=run_id)
        assert store.list_runs() == []
    finally:
        store.close()
    created = set(os.listdir(tmp_path)) - before
    assert created <= {"store", "runs.db", "runs.db-wal", "runs.db-shm"}


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_prune_deletes_the_work_folders_of_the_runs_it_deletes(kind, tmp_path) -> None:
    store = make_store(kind, tmp_path)
    try:
        old = Flow("pruned").add("w", writes_a_file).run(store=store, keep_outputs=True)
        kept = Flow("kept").add("w", writes_a_file).run(store=store, keep_outputs=True)
        old_file, kept_file = old["w"], kept["w"]
        assert os.path.exists(old_file) and os.path.exists(kept_file)
        assert store.prune(keep_last=0) == 2
    finally:
        store.close()
    assert not os.path.exists(old_file)
    assert not os.path.exists(os.path.dirname(os.path.dirname(old_file)))  # the run's folder


@pytest.mark.parametrize("kind", [None, "sqlite"])
def test_steps_whose_names_differ_get_different_work_folders(kind, tmp_path) -> None:
    flow = Flow("folders")
    names = ["a b", "a_b", "a/b", "a\\b", "..", ".", "a\udcffb", "x" * 300]
    for name in names:
        flow.add(name, writes_a_file)
    store = None if kind is None else make_store(kind, tmp_path)
    try:
        run = flow.run(store=store, keep_outputs=True)
    finally:
        if store is not None:
            store.close()
    paths = [run[name] for name in names]
    assert len({os.path.dirname(p) for p in paths}) == len(names)
    for name, path in zip(names, paths):
        with open(path, "rb") as f:
            assert f.read() == name.encode("utf-8", "surrogatepass")
        assert os.path.basename(os.path.dirname(path)) not in ("", ".", "..")
        assert len(os.path.basename(os.path.dirname(path))) <= 100
