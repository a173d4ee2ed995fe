"""Types that help users: a user's module checked with ``mypy --strict``.

``tests/typing/user_module.py`` uses the public API as a user's code does:
decorated steps keep their own types (bare and with options), ``executor``,
``on_failure``, ``trigger`` and statuses are ``Literal`` types (a typo is an
error), ``TopologicalSorter`` and ``Graph`` are generic in their node type.
Its ``assert_type`` calls are the expectations; its ``# type: ignore[...]``
lines must be errors (``--strict`` reports an ignore that is not needed).
"""

from pathlib import Path

import pytest

USER_MODULE = Path(__file__).parent / "typing" / "user_module.py"


def _strict(module: Path) -> None:
    """``module`` passes ``mypy --strict`` (and needs each of its ignores)."""
    api = pytest.importorskip("mypy.api")
    stdout, stderr, status = api.run(["--strict", "--no-incremental", "--warn-unused-ignores", str(module)])
    assert status == 0, stdout + stderr


def test_a_users_module_type_checks_under_mypy_strict() -> None:
    _strict(USER_MODULE)


def test_a_users_module_running_on_dask_type_checks() -> None:
    """``executor=`` takes a ``distributed.Client`` as its own type says."""
    pytest.importorskip("distributed", reason="Dask distributed is not installed")
    _strict(USER_MODULE.parent / "dask_user.py")


def test_a_users_module_tracing_runs_type_checks() -> None:
    """``Tracing`` takes an OpenTelemetry ``TracerProvider`` and is a hook."""
    pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed")
    _strict(USER_MODULE.parent / "otel_user.py")


def test_the_generic_classes_are_subscriptable_at_run_time() -> None:
    import microdag

    assert microdag.TopologicalSorter[str] is not None
    assert microdag.Graph[int] is not None
    graph: "microdag.Graph[str]" = microdag.Graph({"a": [], "b": ["a"]})
    assert graph.order() == ["a", "b"]
