"""The time a task waited for room in its pools or a rate's token, on every backend.

A run with pools or rates keeps with each task (``TaskRecord.waited``,
``Task.waited``) the seconds its attempts waited, in all; each attempt's
own wait is told with it (the ``step_started`` event, its OpenTelemetry
span's ``microdag.pool.wait_s``).  Steps that workers run
(``executor="workers"``) wait in the store's queue, which measures it on
the database's clock: from the first claim that found no room for a ready
task to the claim that took it.

Every attempt of a retried step waits when each takes a token of a rate of
2 a second that a step before it emptied: about ``TOKEN`` seconds each.
"""

import json
import os
import time

import pytest

import limitsteps as ls
from support import run_cli
from test_workers import shared, start_worker, stop, submit, wait_end  # noqa: F401  (shared: a fixture)

from microdag import Flow
from microdag.stores import open_store

#: Seconds between two tokens of the rate ``2/s``.
TOKEN = 0.5


def retried() -> Flow:
    """``first`` takes the rate's one token; each of ``late``'s three attempts waits for the next."""
    flow = Flow("retried")
    flow.add("first", ls.call, uses="api")
    flow.add("late", ls.fails_twice, depends_on=["first"], uses="api", retries=2)
    return flow


def records(store: str, run_id: str) -> "dict[tuple[str, int], float | None]":
    s = open_store(store)
    try:
        return {(r.step, r.item): r.waited for r in s.tasks(run_id)}
    finally:
        s.close()


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_a_retried_step_keeps_the_waits_of_every_attempt(tmp_path, executor, request) -> None:
    if executor == "processes":
        request.getfixturevalue("warm_forkserver")
    events: list = []
    store = str(tmp_path / "runs.db")
    run = retried().run(executor=executor, max_workers=2, rates={"api": "2/s"}, store=store, hooks=[events.append])
    assert run.status == "succeeded" and run["late"] == 3
    own = [e.waited for e in events if e.kind == "step_started" and e.step == "late"]
    # each attempt its own: the first waits from when "first" ended (its token taken when it began), the
    # retries a whole token each
    assert len(own) == 3 and 0 < own[0] < TOKEN * 1.6 and all(TOKEN * 0.6 <= w < TOKEN * 1.6 for w in own[1:]), own
    total = run.tasks["late"].waited
    assert total is not None and total >= 2 * TOKEN * 0.7 + own[0] and abs(total - sum(own)) < 1e-6  # all of them
    assert records(store, run.id)[("late", -1)] == total


def test_each_attempt_span_carries_its_own_wait() -> None:
    pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed (the test extras have it)")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from microdag.otel import Tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    run = retried().run(executor="threads", max_workers=2, rates={"api": "2/s"}, hooks=[Tracing(provider)])
    spans = [s.attributes for s in exporter.get_finished_spans()
             if s.name == "microdag.step" and s.attributes["microdag.step"] == "late"]
    waits = sorted(s.get("microdag.pool.wait_s") or 0.0 for s in spans)
    assert len(waits) == 3 and 0 < waits[0] and all(TOKEN * 0.6 <= w < TOKEN * 1.6 for w in waits[1:]), waits
    assert run.tasks["late"].waited == pytest.approx(sum(waits))


def test_a_retried_map_item_keeps_the_waits_of_every_attempt(tmp_path) -> None:
    flow = Flow("items")
    flow.add("m", ls.fails_twice, map="seconds", uses="api", retries=2)
    store = str(tmp_path / "runs.db")
    run = flow.run(executor="threads", max_workers=2, rates={"api": "2/s"}, inputs={"seconds": [0, 0]}, store=store)
    assert run.status == "succeeded"
    items = sorted(w for (step, item), w in records(store, run.id).items() if item >= 0)
    # six attempts, a token each: all but the first waited about TOKEN, and each item kept its attempts' sum
    assert sum(items) >= 5 * TOKEN * 0.7 and items[0] >= 2 * TOKEN * 0.6, items


WORKER_FLOW = '''
import time
import microdag

flow = microdag.Flow("waits", pools={{"db": 1}}, rates={{"api": "2/s"}})


def hold(**_):
    time.sleep({hold})
    return "held"


def fails_twice(**_):
    if microdag.context().attempt < 3:
        raise ValueError("the first two attempts fail")
    return microdag.context().attempt


flow.add("a", hold, uses="db")
flow.add("b", hold, uses="db")
flow.add("free", lambda: 1)
flow.add("first", lambda: 1, uses="api")
flow.add("late", fails_twice, depends_on=["first"], uses="api", retries=2)
'''


def test_steps_run_by_workers_keep_their_waits_for_pools_and_tokens(tmp_path, shared) -> None:
    hold = 0.4
    path = os.path.join(tmp_path, "waits.py")
    with open(path, "w") as f:
        f.write(WORKER_FLOW.format(hold=hold))
    procs = [start_worker(shared, None, "--concurrency", "1") for _ in range(2)]
    time.sleep(2)  # (both workers look for work before the run comes: a step that waits, waits for a pool)
    try:
        run_id = submit(path, shared)
        assert wait_end(shared, run_id, 60) == "succeeded"
    finally:
        stop(procs)
    waits = records(shared, run_id)
    assert waits[("free", -1)] == 0.0
    first, second = sorted([waits[("a", -1)], waits[("b", -1)]])
    assert first < hold / 2 and hold * 0.6 <= second < hold * 2, waits  # the second waited for the first
    late = waits[("late", -1)]
    assert late is not None and 2 * TOKEN * 0.7 <= late < 3 * TOKEN * 3, waits  # its retries waited a token each
    shown = run_cli("show", run_id, "--store", shared, "--json")
    assert shown.returncode == 0, shown.stderr
    tasks = {t["step"]: t for t in json.loads(shown.stdout)["tasks"]}
    assert tasks["late"]["waited"] == late and tasks["b"]["waited"] == waits[("b", -1)]
    text = run_cli("show", run_id, "--store", shared).stdout
    assert "WAITED" in text and "pools db=1; rates api=2/s" in text
