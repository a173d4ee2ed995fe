"""What only the PostgreSQL store does (the store contract suite runs on it too:
``postgres`` is one of ``support.STORE_KINDS``).

- its specs: ``postgresql://`` and ``postgres://`` URLs, ``codec=`` among their parameters;
- its schema: made once when two processes open a new database at once, in
  the schema ``microdag``; a newer one refused;
- text PostgreSQL cannot keep (NUL, lone surrogates) comes back whole;
- a claim is a session lock: a process killed while it holds a run lets go of it;
- the command line and the UI run and show flows on it;
- a dropped connection (a server restart) is reconnected, and a server that
  cannot be reached is a ``StoreError`` naming it without its password.
"""

import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

import pgserver
from microdag import Flow
from microdag.stores import PostgresStore, RunInfo, StoreError, TaskRecord, open_store
from support import child_env

T0 = 1_700_000_000.0


def new_run(run_id: str = "r1") -> RunInfo:
    return RunInfo(run_id, "etl", "fp", {"day": 1}, "running", T0)


def test_specs_open_a_postgres_store(postgres: str) -> None:
    rest = postgres.partition("://")[2]
    for spec in (postgres, "postgres://" + rest):
        store = open_store(spec)
        assert isinstance(store, PostgresStore) and store.codec == "json"
        store.close()
    store = open_store(postgres + "?connect_timeout=5&codec=json")
    assert store.conninfo == postgres + "?connect_timeout=5" and store.codec == "json"
    store.close()
    with pytest.raises(StoreError, match="pickle"):  # the database keeps the codec it was made with
        open_store(postgres + "?codec=pickle")
    assert repr(open_store(postgres)) == f"PostgresStore({postgres!r})"


def test_a_store_keeps_its_tables_in_the_schema_microdag(postgres: str) -> None:
    import psycopg

    PostgresStore(postgres).close()
    with psycopg.connect(postgres) as db:
        tables = {r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'microdag'")}
        meta = dict(db.execute("SELECT key, value FROM microdag.meta").fetchall())
    assert tables == {"meta", "runs", "tasks", "cache", "owners", "graphs", "attempts", "logs", "blobs"}
    assert meta == {"app": "microdag", "schema": "1", "codec": "json"}


def test_a_newer_schema_is_refused(postgres: str) -> None:
    import psycopg

    PostgresStore(postgres).close()
    with psycopg.connect(postgres, autocommit=True) as db:
        db.execute("UPDATE microdag.meta SET value = '99' WHERE key = 'schema'")
    with pytest.raises(StoreError, match="schema 99, newer"):
        PostgresStore(postgres)


def test_two_processes_making_the_schema_at_once_both_succeed(postgres: str) -> None:
    code = textwrap.dedent(f"""
        import sys, time
        from microdag.stores import PostgresStore, RunInfo
        time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
        store = PostgresStore({postgres!r})
        store.begin(RunInfo("run-" + sys.argv[2], "f", "fp", {{}}, "running", 1.0))
        store.close()
    """)
    import time

    at = str(time.time() + 1.0)
    children = [subprocess.Popen([sys.executable, "-c", code, at, str(n)], env=child_env(), stderr=subprocess.PIPE,
                                 text=True) for n in range(4)]
    for child in children:
        assert child.wait(60) == 0, child.stderr.read() if child.stderr else ""
    store = PostgresStore(postgres)
    assert sorted(r.id for r in store.list_runs()) == [f"run-{n}" for n in range(4)]
    store.close()


def test_text_postgres_cannot_keep_comes_back_whole(postgres: str) -> None:
    store = PostgresStore(postgres)
    odd = ["a\x00b", "s\udcffx", "\x7fstarts with the mark", "plain", "é"]
    store.begin(new_run())
    records = [TaskRecord(name, -1, "failed", 1, T0, T0 + 1, "E" + name, name, name) for name in odd]
    store.save("r1", records)
    store.save_logs("r1", odd[0], -1, 1, odd[1])
    store.flush()
    again = PostgresStore(postgres)
    assert again.tasks("r1") == records
    assert again.logs("r1", odd[0]) == odd[1]
    assert again.logged("r1", [(odd[0], -1), (odd[1], -1)]) == {(odd[0], -1)}
    store.close()
    again.close()


def test_a_group_of_records_with_times_of_several_types_is_kept(postgres: str) -> None:
    """Records go in as one column array each: times saved as ints are floats, as in SQLite."""
    store = PostgresStore(postgres)
    store.begin(new_run())
    records = [TaskRecord("a", -1, "succeeded", 1, 5, 6), TaskRecord("b", -1, "succeeded", 1, 5.5, None),
               TaskRecord("a", -1, "succeeded", 2, 7, 8.5), TaskRecord("m", 3, "failed", 1, 1.0, 2)]
    store.save("r1", records)
    store.flush()
    assert store.tasks("r1") == [records[2], records[1], records[3]]  # (a: its last record, first place)
    store.close()


def test_a_killed_owner_lets_go_of_its_run(postgres: str) -> None:
    """The claim is the owner's session lock: it ends with the owner's connection,
    on whatever machine the owner ran."""
    code = textwrap.dedent(f"""
        import time
        from microdag.stores import PostgresStore, RunInfo
        store = PostgresStore({postgres!r})
        store.begin(RunInfo("held", "f", "fp", {{}}, "running", 1.0))
        print("held", flush=True)
        time.sleep(600)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], env=child_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        store = PostgresStore(postgres)
        with pytest.raises(StoreError, match="live in another process"):
            store.claim("held")
    finally:
        child.kill()
        child.wait(30)
    deadline = time.monotonic() + 30
    while True:  # the server ends the killed process's session, and its lock, once it sees the socket closed
        try:
            store.claim("held")
            break
        except StoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert store.owner("held") is not None
    store.release("held")
    assert store.owner("held") is None
    store.close()


@pytest.mark.parametrize("mode", ["fast", "immediate"])  # (immediate: the server crashes)
def test_a_store_goes_on_after_the_server_restarted(postgres: str, mode: str) -> None:
    if pgserver.server().folder is None:
        pytest.skip("the tests restart only a server of their own (not MICRODAG_TEST_POSTGRES's)")
    store = PostgresStore(postgres)
    flow = Flow("restart").add("a", lambda: 1).add("b", lambda a: a + 1)
    first = flow.run(store=store)
    pgserver.restart(mode)
    second = flow.run(store=store)  # the dropped connection is made again
    assert first["b"] == second["b"] == 2
    assert len(store.list_runs()) == 2
    store.close()


def test_a_server_gone_for_good_is_a_store_error_naming_it(postgres: str) -> None:
    if pgserver.server().folder is None:
        pytest.skip("the tests stop only a server of their own (not MICRODAG_TEST_POSTGRES's)")
    store = PostgresStore(postgres, timeout=1.0)
    store.begin(new_run())
    pgserver.halt()
    try:
        with pytest.raises(StoreError, match=f"cannot connect to store {re.escape(repr(store.path))}"):
            store.list_runs()  # one reconnect, for up to the timeout, then the error
    finally:
        pgserver.restart()
    assert [r.id for r in store.list_runs()] == ["r1"]  # and it goes on once the server is back
    store.close()


def test_the_command_line_runs_and_shows_flows_on_a_postgres_store(postgres: str, tmp_path) -> None:
    from support import run_cli

    flow = tmp_path / "hello.toml"
    flow.write_text('[flow]\nname = "hello"\n\n[steps.greet]\ncommand = ["echo", "hi"]\n')
    done = run_cli("run", flow, "--store", postgres, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    listed = run_cli("runs", "--store", postgres, "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    (run,) = __import__("json").loads(listed.stdout)
    shown = run_cli("show", run["run_id"], "--store", postgres, cwd=tmp_path)
    assert shown.returncode == 0 and "greet" in shown.stdout, shown.stderr
    report = run_cli("report", run["run_id"], "--store", postgres, "-o", tmp_path / "r.html", cwd=tmp_path)
    assert report.returncode == 0 and "greet" in (tmp_path / "r.html").read_text(), report.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and process groups")
def test_the_ui_runs_and_shows_flows_on_a_postgres_store(postgres: str, tmp_path) -> None:
    from uiserver import FLOW, UI

    (tmp_path / "flow.toml").write_text(FLOW)
    ui = UI(str(tmp_path), "--store", postgres)
    try:
        run_id = ui.post("/api/runs", {"flow": "flow.toml", "inputs": {"n": 7}}, 201)["id"]  # type: ignore[index]
        doc = ui.wait_run(run_id)
        assert doc["run"]["status"] == "succeeded" and doc["live"] is False  # type: ignore[index]
        assert ui.get(f"/api/runs/{run_id}/logs/shout") == {"text": "to stderr\n"}
        assert ui.get(f"/api/runs/{run_id}/output/count") == {"output": 7, "json": True}
        assert run_id in [r["id"] for r in ui.get("/api/runs")["runs"]]  # type: ignore[index]
    finally:
        assert ui.stop() == 0, ui.stderr


def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError) as info:
        PostgresStore("postgresql://someone:s3cret@127.0.0.1:1/db", timeout=0.5)
    assert "s3cret" not in str(info.value)
    assert "postgresql://someone@127.0.0.1:1/db" in str(info.value)


@pytest.mark.parametrize("ci", ["", "true"])
def test_without_postgresql_the_tests_skip_saying_how_to_get_it_but_fail_in_ci(ci, monkeypatch) -> None:
    import support

    monkeypatch.setattr(pgserver, "missing", lambda: f"no PostgreSQL server: {pgserver.HOW}")
    monkeypatch.setattr(support, "IN_CI", bool(ci))
    with pytest.raises(pytest.fail.Exception if ci else pytest.skip.Exception) as info:
        support.postgres_url()
    assert "apt-get install postgresql" in str(info.value) and "MICRODAG_TEST_POSTGRES" in str(info.value)


def test_psycopg_loads_only_with_a_postgres_store() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import sys, microdag, microdag.stores; microdag.stores.open_store('memory');"
         " microdag.stores.SQLiteStore; print('psycopg' in sys.modules)"],
        capture_output=True, text=True, env=child_env(), timeout=60,
    )
    assert out.stdout.strip() == "False", out.stderr
    assert os.environ.get("MICRODAG_NO_PSYCOPG_CHECK") is None
