"""Hostile text: lone surrogates (what ``os.listdir`` returns for a file name that
is not UTF-8) and other odd characters in every text a run keeps.

Step and flow names, inputs, what a step prints and logs, its error message
and its output all hold such text; every store must keep the run (names and
values exactly; printed text and messages exactly or, where a store's format
cannot, as documented) and stay usable for later calls, and the command line
must show it without a traceback.
"""

import logging
import subprocess
import sys

import microdag
from microdag.stores import SQLiteStore

from support import child_env

ODD = "caf\udce9 \ud800 \udfff nul:\x00 tab:\t rtl:\u202e emoji:\U0001f600"
STEP = "step \udcff\ud801"


def odd_step(value):
    print(f"printed {ODD}")
    logging.getLogger("odd").warning("logged %s", ODD)
    return {"text": ODD, "echo": value}


def failing(value):
    raise ValueError(f"failed with {ODD}")


def make_flow() -> microdag.Flow:
    flow = microdag.Flow("flow \udce9")
    flow.add(STEP, odd_step)
    flow.add("failing", failing)
    return flow


def test_every_text_a_run_keeps_survives_lone_surrogates(store) -> None:
    run = make_flow().run({"value": ODD}, store=store, raise_on_failure=False, on_failure="continue")
    assert run.status == "failed"
    assert run[STEP] == {"text": ODD, "echo": ODD}
    info = store.run_info(run.id)
    assert info.flow == "flow \udce9" and info.inputs == {"value": ODD} and info.status == "failed"
    records = {r.step: r for r in store.tasks(run.id)}
    assert set(records) == {STEP, "failing"}
    assert store.decode(records[STEP].output) == {"text": ODD, "echo": ODD}
    assert ODD in records["failing"].error_message
    assert ODD in records["failing"].traceback
    logs = store.logs(run.id, STEP)
    assert f"printed {ODD}" in logs and f"logged {ODD}" in logs
    loaded = store.load_run(run.id)
    assert loaded.tasks[STEP].status == "succeeded" and loaded.outputs[STEP]["text"] == ODD
    # the store object still works, and a resume finds the steps by their names
    again = make_flow().run(store=store, run_id=run.id, resume=True, raise_on_failure=False)
    assert again.tasks[STEP].attempts == 1  # not run again
    assert "\\udce9" in store.report(run.id) or "&#" in store.report(run.id)
    assert [r.id for r in store.list_runs()] == [run.id]


def test_the_cli_shows_odd_text_without_a_traceback(tmp_path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        run = make_flow().run({"value": ODD}, store=store, raise_on_failure=False)
    finally:
        store.close()
    for args in (["runs"], ["show", run.id], ["logs", run.id, "failing"], ["show", run.id, "--json"]):
        done = subprocess.run(
            [sys.executable, "-m", "microdag", *args, "--store", f"sqlite:{tmp_path / 'runs.db'}"],
            capture_output=True, text=True, env=child_env(PYTHONIOENCODING="utf-8"), timeout=60,
            errors="backslashreplace",
        )
        assert done.returncode == 0, (args, done.stderr)
        assert "Traceback" not in done.stderr
