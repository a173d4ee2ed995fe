"""The UI's view of a run shared with workers, against a real ``python -m microdag ui`` server.

A run submitted to workers has no process of its own: the UI shows it live
while it is on the store's work queue, and its Cancel goes through the store
to every worker (each stops the step it runs), on SQLite and PostgreSQL.
"""

import os
import sys
import time

import pytest

from support import postgres_url
from test_workers import facts, start_worker, stop, submit, wait_end
from uiserver import UI

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and process groups")

#: Two steps that run at once (one per worker) and note which process ran them, then one after both.
SLOW = """\
import os, time
import microdag

flow = microdag.Flow("slow")


def sleepy():
    with open(os.environ["WORKERS_TEST_LOG"], "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(60)


flow.add("left", sleepy)
flow.add("right", sleepy)
flow.add("after", lambda left, right: 1, depends_on=["left", "right"])
"""


@pytest.fixture(params=["sqlite", "postgres"])
def served(request, tmp_path) -> "tuple[UI, str]":
    """A UI server over a store that workers share, and that store's spec."""
    spec = postgres_url() if request.param == "postgres" else str(tmp_path / "runs.db")
    (tmp_path / "slow.py").write_text(SLOW)
    server = UI(str(tmp_path), "--store", spec)
    yield server, spec
    assert server.stop() == 0, server.stderr


def running_on_two_workers(folder: str, spec: str, flow: str = "slow.py") -> "tuple[str, list, str]":
    """A run of ``flow`` (:data:`SLOW`) submitted to two workers, once each runs its step."""
    log = os.path.join(folder, f"{flow}.calls")
    run_id = submit(os.path.join(folder, flow), spec)
    workers = [start_worker(spec, log), start_worker(spec, log)]
    deadline = time.monotonic() + 30
    while not os.path.exists(log) or len(set(open(log).read().split())) < 2:
        assert time.monotonic() < deadline, [w.poll() for w in workers]
        time.sleep(0.02)
    return run_id, workers, log


def test_a_run_on_workers_is_live_in_the_ui_and_its_cancel_stops_every_worker(served) -> None:
    ui, spec = served
    run_id, workers, _ = running_on_two_workers(ui.folder, spec)
    try:
        doc = ui.get(f"/api/runs/{run_id}")
        assert doc["live"] is True and doc["cancellable"] is True and doc["resumable"] is False
        status, _, body = ui.request("POST", f"/api/runs/{run_id}/resume", {})
        assert status == 409 and b"is running" in body
        began = time.monotonic()
        assert ui.post(f"/api/runs/{run_id}/cancel", {}) == {"ok": True}
        assert wait_end(spec, run_id, 10) == "cancelled"
        assert time.monotonic() - began < 5  # each worker stopped its step as it saw the cancel
        doc = ui.wait_run(run_id, 10)
        assert doc["live"] is False and doc["cancellable"] is False
        assert facts(spec, run_id)[0] == {"left": ("cancelled", 1), "right": ("cancelled", 1),
                                          "after": ("cancelled", 0)}
        assert all(w.poll() is None for w in workers)  # the workers serve on
    finally:
        said = stop(workers)
    assert all("left alone" not in text for text in said), said
    status, _, body = ui.request("POST", f"/api/runs/{run_id}/cancel", {})
    assert status == 409 and b"not running" in body


def test_a_run_left_on_the_queue_by_its_caller_stays_live_until_it_ends(served) -> None:
    ui, spec = served
    run_id = submit(os.path.join(ui.folder, "slow.py"), spec)  # no worker yet: ready, nobody runs it
    doc = ui.get(f"/api/runs/{run_id}")
    assert doc["run"]["status"] == "running" and doc["live"] is True and doc["cancellable"] is True
    assert ui.post(f"/api/runs/{run_id}/cancel", {}) == {"ok": True}
    doc = ui.wait_run(run_id, 10)
    assert doc["run"]["status"] == "cancelled" and doc["live"] is False
