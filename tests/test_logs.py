"""Runs with a store keep, per attempt, what each step printed to stdout and
stderr and the logging records it emitted, on every backend, and nothing
leaks between concurrent steps or into the real streams; a run that is live
in another process cannot be resumed."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import logsteps
import microdag
from microdag.stores import SQLiteStore, StoreError
from support import child_env


def flow() -> microdag.Flow:
    f = microdag.Flow("talkers")
    f.add("talk", logsteps.talk)
    f.add("flaky", logsteps.flaky, retries=1)
    f.add("items", logsteps.item, map="x")
    return f


@pytest.mark.parametrize("executor", ["inline", "threads", "processes"])
def test_each_attempt_keeps_what_it_printed_and_logged(store, executor, capsys) -> None:
    run = flow().run({"x": [5, 6]}, store=store, executor=executor)
    talk = store.logs(run.id, "talk")
    assert "to stdout\n" in talk and "to stderr\n" in talk
    assert "WARNING talker: a warning record" in talk
    assert store.logs(run.id, "flaky") == "--- attempt 1 ---\nattempt 1\n--- attempt 2 ---\nattempt 2\n"
    assert store.logs(run.id, "items", 0) == "item 5\n"
    assert store.logs(run.id, "items", 1) == "item 6\n"
    out = capsys.readouterr()
    assert "to stdout" not in out.out and "attempt 1" not in out.out  # captured, not printed


def test_concurrent_steps_keep_their_own_output(store) -> None:
    f = microdag.Flow("many")
    for i in range(20):
        f.add(f"s{i}", logsteps.item, inputs=None)
    run = f.run({"x": 0}, store=store, executor="threads", max_workers=8)
    for i in range(20):
        assert store.logs(run.id, f"s{i}") == "item 0\n"


def test_output_outside_steps_still_reaches_the_streams(store, capsys) -> None:
    flow().run({"x": [1]}, store=store)
    print("after the run")
    assert "after the run" in capsys.readouterr().out
    assert not type(sys.stdout).__name__ == "_Tee"


def test_logs_of_an_unknown_run_is_a_store_error(store) -> None:
    with pytest.raises(StoreError, match="nope"):
        store.logs("nope", "talk")


def test_a_run_live_in_another_process_cannot_be_resumed(tmp_path) -> None:
    db = tmp_path / "runs.db"
    script = textwrap.dedent(
        f"""
        import microdag, logsteps
        f = microdag.Flow("live")
        for i in range(20):
            f.add(f"s{{i}}", logsteps.slow, depends_on=[f"s{{i-1}}"] if i else [])
        f.run({{"seconds": 0.2}}, store={str(db)!r}, run_id="R1")
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], env=child_env())
    try:
        f = microdag.Flow("live")
        for i in range(20):
            f.add(f"s{i}", logsteps.slow, depends_on=[f"s{i-1}"] if i else [])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if SQLiteStore(db).run_info("R1").status == "running":
                    break
            except StoreError:
                pass
            time.sleep(0.05)
        with pytest.raises(StoreError, match="live in another process"):
            f.run({"seconds": 0.2}, store=str(db), run_id="R1", resume=True)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
        run = f.run({"seconds": 0.0}, store=str(db), run_id="R1", resume=True)
        assert run.status == "succeeded"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)


LATE_LOGGING = textwrap.dedent(
    """
    import sys
    import microdag

    def quiet():
        return 1

    def late(quiet):
        import logging  # the process's first import of logging, inside the step
        logging.getLogger("late").warning("logged by a step that imported logging")
        return quiet + 1

    flow = microdag.Flow("late").add("quiet", quiet).add("late", late, depends_on=["quiet"])
    store = microdag.stores.MemoryStore()
    assert "logging" not in sys.modules
    first = flow.run(store=store, targets=["quiet"])
    print("logging imported by a run that logs nothing:", "logging" in sys.modules)
    run = flow.run(store=store)
    print(repr(store.logs(run.id, "late")))
    import logging
    print("handlers left:", len(logging.getLogger().handlers))
    print("finders left:", sum(type(f).__name__ == "_LoggingWatch" for f in sys.meta_path))
    """
)


def test_logging_imported_inside_a_step_is_still_captured(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", LATE_LOGGING], capture_output=True, text=True, timeout=60,
        env=child_env(),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "logging imported by a run that logs nothing: False",
        "'WARNING late: logged by a step that imported logging\\n'",
        "handlers left: 0",
        "finders left: 0",
    ]
    assert out.stderr == ""
