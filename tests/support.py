"""Helpers for tests that run Python in a child process.

Tests of things that may hang run their flow in a child with a timeout, so
that a hang fails the test (with the child's stack dump) instead of hanging
the suite; ``twin`` picks the kernel twin the child uses.
"""

import functools
import json
import os
import subprocess
import sys

import pytest

import microdag

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(microdag.__file__)))


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
