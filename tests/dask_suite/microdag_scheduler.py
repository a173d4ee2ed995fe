"""A pytest plugin: Dask's tests run with microdag's kernel as Dask's scheduler.

Loaded by ``run.py`` (``-p microdag_scheduler``) into a pytest session over
Dask's own test modules.  Before any test module is imported it

- sets Dask's ``scheduler`` option globally to ``microdag.dask.get``, so that
  every ``compute()`` without an explicit scheduler runs on microdag;
- puts microdag's ``get`` and ``get_sync`` in the place of ``dask.threaded.get``
  and ``dask.local.get_sync``, so that Dask's tests of its local schedulers,
  which import those names, call microdag's instead;
- counts the calls microdag's scheduler received, and fails the session if
  there were none (the tests would then have checked Dask, not microdag).

With ``MICRODAG_DASK_SUITE_SCHEDULER=dask`` it changes nothing: Dask's own
schedulers run (``run.py`` checks that way whether a failure is microdag's).
With ``MICRODAG_DASK_SUITE_FAILED`` set to a file, it writes there the id of
each test that failed, one a line.
"""

import os
from typing import Any

import pytest

CALLS = [0]
ON = os.environ.get("MICRODAG_DASK_SUITE_SCHEDULER", "microdag") != "dask"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = os.environ.get("MICRODAG_DASK_SUITE_FAILED")
    if path and report.failed:
        with open(path, "a", encoding="utf-8") as f:
            f.write(report.nodeid + "\n")


def pytest_configure(config: pytest.Config) -> None:
    if not ON:
        return
    import dask
    import dask.local
    import dask.threaded

    from microdag import dask as mdask

    def get(dsk: Any, keys: Any, **kwargs: Any) -> Any:
        CALLS[0] += 1
        return mdask.get(dsk, keys, **kwargs)

    def get_sync(dsk: Any, keys: Any, **kwargs: Any) -> Any:
        CALLS[0] += 1
        return mdask.get_sync(dsk, keys, **kwargs)

    get.__doc__, get_sync.__doc__ = mdask.get.__doc__, mdask.get_sync.__doc__
    dask.config.set(scheduler=get)  # (not as a context: for the whole session)
    dask.threaded.get = get
    dask.local.get_sync = get_sync


def pytest_report_header(config: pytest.Config) -> str:
    from microdag import _compat

    if not ON:
        return "scheduler: Dask's own"
    return f"scheduler: microdag.dask.get (kernel: {_compat.sched.__name__})"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if ON and session.testscollected and not CALLS[0]:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print("\nmicrodag's scheduler was never called: the tests did not run on it")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if ON:
        terminalreporter.write_line(f"microdag's scheduler ran {CALLS[0]} graphs")
