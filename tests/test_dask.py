"""Flows on a real Dask cluster: ``flow.run(executor=client)`` and ``arun``.

One child process per kernel twin starts a ``LocalCluster`` (2 worker
processes) and runs every scenario of ``dasksteps`` on it, with a timeout (a
hang fails the test); each test below checks one scenario's facts.  Skipped,
with the reason, where ``distributed`` is not installed.
"""

import subprocess
import sys

import pytest

import microdag
from support import child_env, run_cli, scenarios

pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install 'microdag[dask]')")


def _results(twin: str) -> dict:
    return scenarios("dasksteps", twin, 240.0)


@pytest.fixture
def dask(twin) -> dict:
    return _results(twin.TWIN)


def test_outputs_equal_those_of_an_inline_run(dask) -> None:
    basic = dask["basic"]
    assert basic["status"] == "succeeded"
    assert basic["outputs"] == {"sum": 9, "where": "worker"}  # the steps ran on the workers
    assert basic["kept"] == {**basic["kept_inline"], "where": "worker"}
    assert basic["targeted"] == {"d": 4}


def test_outputs_stay_on_the_cluster_unless_asked_for(dask) -> None:
    # "big" returns a value that cannot be loaded in the client's process:
    # its dependent got it from the cluster, and the run kept only the leaf.
    assert dask["stays"] == {"outputs": {"measure": 1000}, "status": "succeeded"}


def test_retries_with_backoff(dask) -> None:
    retries = dask["retries"]
    assert retries["outputs"] == {"flaky": [1, 2, 3]}  # attempt numbers seen on the workers
    assert retries["facts"] == {"flaky": ["succeeded", 3, None]}
    delays = [e[3] for e in retries["retrying"]]
    assert [e[2] for e in retries["retrying"]] == [1, 2]
    assert 0.025 <= delays[0] <= 0.05 and 0.05 <= delays[1] <= 0.1  # 0.05 s, then doubled (jitter: half to whole)
    assert retries["failing"] == {"flaky": ["failed", 3, "ValueError"]}
    assert retries["failing_error"] == "attempt 3 fails"


def test_a_timed_out_step_is_failed_and_abandoned_at_its_deadline(dask) -> None:
    timeouts = dask["timeouts"]
    assert timeouts["facts"] == {
        "slow": ["failed", 1, "TimeoutError"],
        "after_slow": ["skipped", 0, None],
        "quick": ["succeeded", 1, None],
    }
    assert timeouts["took"] < 2.0  # the step sleeps 3 s: the run did not wait for it
    assert "timed out after 0.3 s" in timeouts["error"] and "abandoned" in timeouts["error"]
    assert "after_slow" not in timeouts["marks"]


def test_maps_with_batches_and_a_retried_batch(dask) -> None:
    maps = dask["maps"]
    assert maps["outputs"] == maps["inline"]
    assert maps["outputs"]["squares"] == [v * v for v in range(7)]
    assert maps["facts"]["squares"] == ["succeeded", 2, None]


def test_skips_and_trigger_rules_as_inline(dask) -> None:
    triggers = dask["triggers"]
    assert triggers["facts"] == triggers["inline"]
    assert triggers["outputs"] == triggers["inline_outputs"]
    assert triggers["ran"] == ["all_done", "none_failed"]
    assert triggers["status"] == "failed"


def test_steps_submitted_ahead_of_a_failure_never_run(dask) -> None:
    ahead = dask["ahead"]
    assert ahead["facts"] == {
        "first": ["succeeded", 1, None],
        "broken": ["failed", 1, "ValueError"],
        "next": ["skipped", 0, None],
        "last": ["skipped", 0, None],
    }
    assert ahead["ran"] == []


def test_max_workers_bounds_the_steps_running_at_once(dask) -> None:
    assert dask["bounded"] == {"overlaps": 0, "status": "succeeded", "n": 5}


def test_cancel_ends_the_run_at_once_and_starts_nothing_more(dask) -> None:
    cancel = dask["cancel"]
    assert cancel["status"] == "cancelled"
    assert cancel["facts"] == {
        "quick": ["succeeded", 1, None],
        "slow": ["cancelled", 1, None],
        "after_slow": ["cancelled", 0, None],
    }
    assert cancel["took"] < 1.5  # "slow" sleeps 2 s
    assert "after_slow" not in cancel["ran"]  # (a running task ends on its worker: its result is dropped)


def test_a_durable_run_resumes_without_running_finished_steps_again(dask) -> None:
    resume = dask["resume"]
    assert resume["first"] == {
        "five": ["succeeded", 1, None], "six": ["failed", 1, "ValueError"], "twelve": ["skipped", 0, None],
    }
    assert resume["again"]["six"] == ["succeeded", 1, None] and resume["outputs"] == {"twelve": 12}
    assert resume["runs_of_five"] == 1
    assert resume["stored"] == {"five": "succeeded", "six": "succeeded", "twelve": "succeeded"}
    assert resume["stored_output"] == 5  # what the store must record came back from the cluster


def test_hooks_see_the_same_events_as_inline(dask) -> None:
    assert dask["hooks"]["dask"] == dask["hooks"]["inline"]


def test_arun_waits_for_the_cluster_without_blocking_the_loop(dask) -> None:
    arun = dask["arun"]
    assert arun["facts"] == {"a": ["succeeded", 1, None], "b": ["succeeded", 1, None],
                             "slow": ["failed", 1, "TimeoutError"]}
    assert arun["outputs"] == {"b": 2}
    assert arun["took"] < 2.0
    assert arun["ticks"] >= 10  # another task of the loop ran meanwhile
    assert arun["cancelled"] == "cancelled" and arun["cancel_took"] < 1.5  # (the step sleeps 2 s)


def test_arguments_that_cannot_be_sent_fail_the_step_and_name_it(dask) -> None:
    unpicklable = dask["unpicklable"]
    assert unpicklable["facts"]["uses_lock"][0] == "failed"
    assert unpicklable["error"].startswith("step 'uses_lock' could not be sent to the Dask cluster")


@pytest.mark.parametrize("seed", range(10))
def test_random_flows_follow_the_rules_on_the_cluster(dask, seed) -> None:
    """The model test's flows (see test_model.py), with steps submitted ahead,
    with ``max_workers=2`` and with ``arun``."""
    case = dask["model"][str(seed)]
    for where, got in case["got"].items():
        assert got == case["want"], f"{where} (seed {seed})"


def test_traced_attempts_on_the_cluster_run_with_their_span_current(dask) -> None:
    pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed")
    r = dask["tracing"]
    assert r["status"] == "failed" and r["open"] == 0
    [run] = [s for s in r["spans"] if s["name"] == "microdag.run"]
    assert run["parent"] == r["caller"] and run["attributes"]["microdag.executor"] == "dask"
    steps = {(s["attributes"]["microdag.step"], s["attributes"]["microdag.attempt"],
              s["attributes"].get("microdag.item")): s for s in r["spans"] if s["name"] == "microdag.step"}
    assert set(steps) == {("a", 1, None), ("b", 1, None), ("c", 1, 0), ("c", 1, 1), ("c", 1, 2),
                          ("flaky", 1, None), ("flaky", 2, None), ("boom", 1, None)}
    assert all(s["parent"] == run["id"] for s in steps.values())
    assert steps[("flaky", 1, None)]["status"] == "ERROR" and steps[("flaky", 2, None)]["status"] == "UNSET"
    b = steps[("b", 1, None)]
    assert r["b"] == [b["trace"], b["id"]]  # the worker ran it with the span's context
    assert steps[("a", 1, None)]["end"] <= b["start"]  # (traced steps are not submitted ahead)


def test_import_microdag_does_not_import_distributed() -> None:
    code = (
        "import sys, microdag\n"
        "flow = microdag.Flow('f').add('a', lambda: 1)\n"
        "flow.run(); flow.run(executor='threads')\n"
        "assert not any(m.split('.')[0] in ('distributed', 'dask') for m in sys.modules), 'imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env())
    assert done.returncode == 0, done.stderr


def test_an_asynchronous_client_and_other_arun_executors_are_refused() -> None:
    flow = microdag.Flow("refusals").add("a", lambda: 1)

    class FakeAsyncClient:
        asynchronous = True

        def submit(self, *args, **kwargs):
            raise AssertionError("not called")

    FakeAsyncClient.__module__ = "distributed.client"
    FakeAsyncClient.__name__ = "Client"
    with pytest.raises(microdag.FlowError, match="asynchronous"):
        flow.run(executor=FakeAsyncClient())
    import asyncio

    with pytest.raises(microdag.FlowError, match="arun runs steps on the event loop"):
        asyncio.run(flow.arun(executor="threads"))  # type: ignore[arg-type]


# -- the command line --------------------------------------------------------------------------

EXAMPLE = str(__import__("pathlib").Path(__file__).resolve().parent.parent / "examples" / "wordcount.py")


def test_cli_runs_a_flow_on_a_dask_cluster_of_this_machine(tmp_path) -> None:
    done = run_cli("run", EXAMPLE, "--executor", "dask", "--workers", "2", "--json", cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    import json

    assert json.loads(done.stdout)["outputs"] == {"report": "a: 3, run: 3, steps: 3"}


def test_cli_runs_a_flow_on_the_scheduler_it_names(tmp_path) -> None:
    from distributed import LocalCluster

    # (workers of this process: they cannot import the flow's file, so its functions travel by value)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp",
                      dashboard_address=":0") as cluster:
        address = cluster.scheduler_address.replace("tcp://", "dask://")
        done = run_cli("run", EXAMPLE, "--executor", address, "--workers", "2", cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 'report: "a: 3, run: 3, steps: 3"' in done.stdout


def test_cli_says_which_scheduler_did_not_answer(tmp_path) -> None:
    done = run_cli("run", EXAMPLE, "--executor", "dask://127.0.0.1:9", cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: no Dask scheduler answered at tcp://127.0.0.1:9")
    assert "Traceback" not in done.stderr
    bad = run_cli("run", EXAMPLE, "--executor", "dask:/x", cwd=tmp_path, timeout=120)
    assert bad.returncode == 2 and "invalid choice: 'dask:/x'" in bad.stderr
