"""``python -m microdag``: the command-line runner.

A thin shell over the Python API: everything it does can be done from Python.
Exit codes: 0 success, 1 a run failed, 2 usage or validation error,
130 interrupted.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def _version() -> str:
    from ._compat import TWIN
    from ._version import __version__

    return f"microdag {__version__} (scheduler: {TWIN})"


def main(argv: "Sequence[str] | None" = None) -> int:
    """Run the command line; return the exit code."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m microdag",
        description="Define, check and run DAGs of steps.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=_version(),
        help="print the version and the active scheduler twin (c or py), then exit",
    )
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    parser.print_help()
    return 0
