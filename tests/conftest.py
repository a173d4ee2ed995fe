"""Fixtures the test modules share; their helpers are in ``support.py``.

- ``executor``: each of :data:`support.EXECUTORS`, as ``Flow.run(executor=)``
  takes it. Sleeping steps a test abandoned (``flowsteps.sleeper``) are ended
  at teardown, then a pool of the caller's is shut down.
- ``store``: a new store of each of :data:`support.STORE_KINDS` in the test's
  ``tmp_path``, closed at teardown. A module that needs more (codecs, no store
  at all) parametrizes :func:`support.make_store` itself.
- ``warm_forkserver``: the forkserver started once, so that timing bounds do
  not pay for it.

The ``twin`` fixture (each kernel twin) is the root ``conftest.py``'s: the
benchmarks share it.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

import flowsteps
from microdag import Flow
from microdag.stores import Store
from support import EXECUTORS, STORE_KINDS, executor_for, make_store


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
