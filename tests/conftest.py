"""Fixtures the test modules share; their helpers are in ``support.py``.

- ``executor``: each of :data:`support.EXECUTORS`, as ``Flow.run(executor=)``
  takes it. Sleeping steps a test abandoned (``flowsteps.sleeper``) are ended
  at teardown, then a pool of the caller's is shut down.
- ``store``: a new store of each of :data:`support.STORE_KINDS` in the test's
  ``tmp_path``, closed at teardown. A module that needs more (codecs, no store
  at all) parametrizes :func:`support.make_store` itself.
- ``postgres``: the URL of a new empty database on the tests' PostgreSQL
  server (``pgserver``: a throwaway server started once per session, or the
  one ``MICRODAG_TEST_POSTGRES`` names), so that tests never see each other's
  runs; skipped where there is no PostgreSQL, an error in CI. The server is
  stopped and its folder removed when the session ends (Ctrl-C too).
- ``warm_forkserver``: the forkserver started once, so that timing bounds do
  not pay for it.
- ``dask_client``: a Dask cluster in this process (one worker of 2 threads),
  per module; skipped where ``distributed`` is not installed.
- ``twin``: the kernel module of each twin. The ``c`` case imports the
  compiled module directly, so a missing build fails instead of silently
  testing the pure twin twice; it is skipped only when
  ``MICRODAG_NO_EXTENSIONS`` asks for the pure twin (CI's second pass).
"""

import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import flowsteps
import pgserver
from microdag import Flow
from microdag.stores import Store
from support import EXECUTORS, NO_EXTENSIONS, STORE_KINDS, executor_for, make_store, postgres_url


@pytest.fixture(scope="session", autouse=True)
def _postgres_server() -> Iterator[None]:
    """Stops the tests' PostgreSQL server at the end of the session, if a test started one."""
    try:
        yield
    finally:
        pgserver.stop()


@pytest.fixture
def postgres() -> str:
    """The ``postgresql://`` URL of a new empty database (see the module docs)."""
    return postgres_url()


@pytest.fixture(params=["c", "py"])
def twin(request: pytest.FixtureRequest) -> ModuleType:
    """The kernel module of one twin: ``microdag._sched`` or ``microdag._sched_py``."""
    if request.param == "c":
        if NO_EXTENSIONS:
            pytest.skip("MICRODAG_NO_EXTENSIONS is set: the pure twin only")
        return importlib.import_module("microdag._sched")
    return importlib.import_module("microdag._sched_py")


@pytest.fixture(scope="module")
def dask_client() -> "Iterator[object]":
    """A Dask cluster in this process (one worker of 2 threads), shared by a module's tests."""
    distributed = pytest.importorskip("distributed", reason="Dask distributed is not installed")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="session")
def warm_forkserver() -> None:
    """Start the forkserver once, so that timing bounds do not pay for it."""
    Flow("warm-up").add("noargs", flowsteps.noargs).run(executor="processes")


@pytest.fixture(params=EXECUTORS)
def executor(request: pytest.FixtureRequest) -> Iterator[object]:
    """An executor value for ``Flow.run``; abandoned sleepers end at teardown."""
    if request.param == "processes":
        request.getfixturevalue("warm_forkserver")
    with executor_for(request.param) as value:
        yield value


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A new store of each kind in ``tmp_path``, closed at teardown."""
    made = make_store(request.param, tmp_path)
    yield made
    made.close()
