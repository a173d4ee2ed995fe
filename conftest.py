"""Shared pytest set-up: the ``twin`` fixture runs a test on both kernels.

The ``c`` case imports the compiled module directly, so a missing build fails
instead of silently testing the pure twin twice; it is skipped only when
``MICRODAG_NO_EXTENSIONS`` asks for the pure twin (CI's second pass).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

NO_EXTENSIONS = os.environ.get("MICRODAG_NO_EXTENSIONS", "").strip().lower() not in (
    "",
    "0",
    "false",
    "no",
)


@pytest.fixture(params=["c", "py"])
def twin(request: pytest.FixtureRequest) -> ModuleType:
    """The kernel module of one twin: ``microdag._sched`` or ``microdag._sched_py``."""
    if request.param == "c":
        if NO_EXTENSIONS:
            pytest.skip("MICRODAG_NO_EXTENSIONS is set: the pure twin only")
        return importlib.import_module("microdag._sched")
    return importlib.import_module("microdag._sched_py")
