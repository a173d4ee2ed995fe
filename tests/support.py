"""Helpers the test modules share (their shared fixtures are in ``conftest.py``).

- What the suite runs on: the executors (:data:`EXECUTORS`, and
  :func:`executor_value` for the value ``Flow.run`` takes) and the stores
  (:data:`STORE_KINDS`, :func:`make_store`).
- The command line: :func:`cli` runs ``main(argv)`` in this process,
  :func:`run_cli` runs ``python -m microdag`` as a child.
- Children: :func:`child_env` is the environment of any child Python that
  imports this microdag and the tests' step modules. Tests of things that may
  hang run their flow in a child with a timeout (:func:`run_child`), so that a
  hang fails the test (with the child's stack dump) instead of hanging the
  suite; ``twin`` picks the kernel twin the child uses.
"""

import contextlib
import functools
import json
import os
import subprocess
import sys

from collections.abc import Iterator
from pathlib import Path

import pytest

import flowsteps
import microdag
from microdag.stores import JSONStore, MemoryStore, SQLiteStore, Store

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(microdag.__file__)))

# Whether this pass tests the pure twin only (CI's second pass sets it).
NO_EXTENSIONS = os.environ.get("MICRODAG_NO_EXTENSIONS", "").strip().lower() not in ("", "0", "false", "no")

# The backends named by a string, and "executor": a concurrent.futures.Executor
# of the caller's (flowsteps.WrappedExecutor, which has no _max_workers).
BACKENDS = ("inline", "threads", "processes")
EXECUTORS = (*BACKENDS, "executor")
# "postgres": a database on the tests' PostgreSQL server (pgserver); its tests skip where there is
# none, and fail in CI, where there must be one.
STORE_KINDS = ("memory", "json", "sqlite", "postgres")
PERSISTENT = ("json", "sqlite", "postgres")
FILE_STORES = ("json", "sqlite")
#: Whether a missing PostgreSQL fails the tests that need it (CI) instead of skipping them.
IN_CI = bool(os.environ.get("CI"))


def executor_value(name: str) -> object:
    """What ``Flow.run(executor=)`` takes for one of :data:`EXECUTORS`; the caller
    shuts an ``"executor"``'s pool down."""
    return flowsteps.WrappedExecutor() if name == "executor" else name


@contextlib.contextmanager
def executor_for(name: str) -> "Iterator[object]":
    """:func:`executor_value` for the ``with`` block; after it, sleeping steps a
    test abandoned (``flowsteps.sleeper``) end, then a pool is shut down."""
    value = executor_value(name)
    try:
        yield value
    finally:
        flowsteps.release_sleepers()
        if not isinstance(value, str):
            value.shutdown(wait=True)  # type: ignore[attr-defined]


def make_store(kind: str, where: "str | os.PathLike[str]", codec: str = "json") -> Store:
    """A new store of ``kind`` (one of :data:`STORE_KINDS`) in the folder ``where``:
    a JSON store is ``where/store``, an SQLite one ``where/runs.db``, a PostgreSQL
    one a database of its own for ``where`` (the same one each time)."""
    if kind == "postgres":
        from microdag.stores import PostgresStore

        return PostgresStore(postgres_for(where), codec=codec)
    if kind == "memory":
        return MemoryStore(codec=codec)
    if kind == "json":
        return JSONStore(Path(where) / "store", codec=codec)
    if kind == "sqlite":
        return SQLiteStore(Path(where) / "runs.db", codec=codec)
    raise ValueError(f"no store kind {kind!r}")


_DATABASES: "dict[str, str]" = {}


def postgres_for(where: "str | os.PathLike[str]") -> str:
    """The URL of the database of the folder ``where`` (made on first use: :func:`postgres_url`)."""
    key = os.path.abspath(where)
    if key not in _DATABASES:
        _DATABASES[key] = postgres_url()
    return _DATABASES[key]


def postgres_url() -> str:
    """The URL of a new empty database on the tests' PostgreSQL server (``pgserver``):
    skips the test where there is none, and fails it in CI, where there must be one."""
    import pgserver  # (only the PostgreSQL tests start a server)

    why = pgserver.missing()
    if why is not None:
        if IN_CI:
            pytest.fail(f"CI runs the PostgreSQL tests, but {why}")
        pytest.skip(why)
    return pgserver.new_database()


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> "tuple[int, str, str]":
    """Run the command line's ``main(argv)`` in this process; return (exit code, stdout, stderr)."""
    from microdag.cli import main  # the one place the tests name the command line's module

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(*args: object, cwd: "str | os.PathLike[str] | None" = None, timeout: float = 60,
            **env: str) -> "subprocess.CompletedProcess[str]":
    """``python -m microdag ARGS`` as a child (environment :func:`child_env` plus ``env``)."""
    return subprocess.run([sys.executable, "-m", "microdag", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=child_env(**env), timeout=timeout)


def child_env(twin: "str | None" = None, **extra: str) -> "dict[str, str]":
    """The environment of a child that imports this microdag and the tests' step modules;
    ``twin="py"`` makes it use the pure-Python kernel, ``"c"`` the compiled one."""
    paths = [TESTS_DIR, PACKAGE_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), **extra}
    env.pop("NO_COLOR", None)
    if twin == "py":
        env["MICRODAG_NO_EXTENSIONS"] = "1"
    elif twin == "c":
        env.pop("MICRODAG_NO_EXTENSIONS", None)
    return env


def run_child(code: str, timeout: float, twin: "str | None" = None) -> "object":
    """Run ``code`` in a child Python; its last line of stdout, read as JSON.

    The child dumps its threads' stacks (``faulthandler``) a second before
    ``timeout``; the test fails with that dump if the child does not finish.
    """
    prelude = f"import faulthandler; faulthandler.dump_traceback_later({max(timeout - 1.0, 0.5)!r}, exit=True)\n"
    try:
        done = subprocess.run(
            [sys.executable, "-c", prelude + code], capture_output=True, text=True,
            env=child_env(twin), timeout=timeout + 5,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the child did not finish in {timeout} s:\n{exc.stderr}")
    if done.returncode != 0:
        pytest.fail(f"the child failed (exit code {done.returncode}):\n{done.stderr[-6000:]}")
    lines = done.stdout.strip().splitlines()
    assert lines, f"the child printed nothing:\n{done.stderr[-3000:]}"
    return json.loads(lines[-1])


@functools.lru_cache(maxsize=None)
def scenarios(module: str, twin: str, timeout: float) -> dict:
    """What ``module.run_all()`` returns, run in a child of kernel twin
    ``twin`` with :func:`run_child` (once per module and twin: the tests of a
    module's scenarios each check one entry)."""
    out = run_child(f"import json, {module}\nprint(json.dumps({module}.run_all()))", timeout, twin)
    assert isinstance(out, dict)
    return out


#: An annotation left out (for :func:`edge_flow`).
NO_ANNOTATION = object()


def edge_flow(produced: object, wanted: object, **options: object) -> "microdag.Flow":
    """A flow of two steps: ``source`` annotated to return ``produced``, feeding
    ``sink``'s parameter ``value`` annotated ``wanted`` (``sink`` takes ``options``)."""
    flow = microdag.Flow("edge")

    def source():  # type: ignore[no-untyped-def]
        return None

    def sink(value):  # type: ignore[no-untyped-def]
        return value

    source.__annotations__ = {} if produced is NO_ANNOTATION else {"return": produced}
    sink.__annotations__ = {} if wanted is NO_ANNOTATION else {"value": wanted}
    flow.add("source", source)
    flow.add("sink", sink, inputs={"value": "source"}, **options)  # type: ignore[arg-type]
    return flow
