"""``python -m microdag``: the command-line runner.

A thin shell over the Python API: every command is a few calls to
:func:`~microdag._spec.load_flow`, :meth:`Flow.run` and a store's readers, so
everything it does can be done from Python.

Conventions: results go to stdout (``--json`` makes them one JSON document),
progress and diagnostics to stderr; quiet unless something is worth saying.
Exit codes: 0 success, 1 a run (or step) failed, 2 usage or validation error
(bad flow file, unknown run, unusable store), 130 interrupted (the run is
recorded as cancelled and can be resumed).

The commands.  :data:`COMMANDS` is the dispatch table: each command names the
module that owns it and its one-line help.  That module's ``add_parser(sub,
name, **options)`` adds the command's subparser with its arguments and sets
its handler (``set_defaults(handler=...)``); :func:`main` calls the handler
with the parsed arguments and turns the errors every command shares into exit
codes.  The pods of an exported Argo workflow run a hidden command, ``pod``,
owned by :mod:`microdag._pod` (not listed in the help).

Start-up time matters (shells, CI, lambdas): only :mod:`argparse` is imported
before the command is known, only the module of the command being run is
imported (the others are listed by name and help), and each command imports
what it uses inside its handler.
"""

import argparse
import os
import sys

from .._cmdline import INTERRUPTED, OK, USAGE, UsageError
from .._version import __version__
from ._common import columns

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

#: Command -> (the module that owns it, its help; ``None``: hidden).
COMMANDS: "dict[str, tuple[str, str | None]]" = {
    "run": ("microdag.cli._run", "run a flow"),
    "resume": ("microdag.cli._run", "go on with a stored run: re-run what did not succeed"),
    "step": (
        "microdag.cli._step",
        "run one step: on the outputs of a stored run (--from-run; prints its output as JSON), "
        "or as one task of a run kept in a folder (--run-dir: what an Argo pod runs)",
    ),
    "validate": ("microdag.cli._flows", "check a flow without running it"),
    "graph": ("microdag.cli._flows", "print a flow's graph"),
    "schema": ("microdag.cli._flows", "print the JSON Schema of a flow's inputs (types, defaults, descriptions)"),
    "runs": ("microdag.cli._stored", "list stored runs, newest first"),
    "show": (
        "microdag.cli._stored",
        "show a stored run: its inputs, each step's status, attempts, duration, output and error",
    ),
    "logs": ("microdag.cli._stored", "print what a step printed and logged in a stored run"),
    "prune": ("microdag.cli._stored", "delete old runs and their files"),
    "report": ("microdag.cli._stored", "write a self-contained HTML report of a stored run"),
    "export": ("microdag.cli._export", "write a manifest that runs a flow elsewhere: an Argo Workflow (export argo)"),
    "ui": ("microdag.cli._ui", "serve a local web app to watch, run and edit flows (docs/ui.md)"),
    "worker": ("microdag.cli._worker", "claim and run the ready steps of runs shared through a store (docs/workers.md)"),
    "submit": ("microdag.cli._worker", "start a run for workers to run (--store) and print its id at once"),
    "cancel": ("microdag.cli._worker", "cancel a run shared with workers, for every worker"),
    "pod": ("microdag._pod", None),
}


def _version() -> str:
    from .._compat import TWIN, WHY_PY  # (--version only: _compat loads the kernel)

    why = f"; {WHY_PY}" if TWIN == "py" and WHY_PY else ""
    return f"microdag {__version__} (scheduler: {TWIN}{why})"


def _parser(wanted: "str | None" = None) -> "argparse.ArgumentParser":
    """The parser, with the arguments of command ``wanted`` only (names and
    summaries of the others are enough for the top-level help)."""
    width = columns() - 2  # the help's width, as shutil.get_terminal_size gives it to argparse

    def formatter(prog: str) -> "argparse.HelpFormatter":
        return argparse.HelpFormatter(prog, width=width)

    parser = argparse.ArgumentParser(
        formatter_class=formatter,
        prog="python -m microdag",
        description="Define, check and run DAGs of steps; keep, resume and inspect their runs.",
        epilog="FLOW is a .toml or .json flow file (its steps call a function, hold their code as "
        "python = '''...''', or run a command: docs/flow-file.md), a .py file holding one Flow "
        "(path.py:attr to choose), or module:attr naming a Flow. "
        "Exit codes: 0 succeeded, 1 failed, 2 usage or validation error, 130 interrupted.",
    )
    parser.add_argument(
        "--version",
        action="store_true",  # printed by main(): the twin is known only once it is imported
        help="print the version and the active scheduler twin (c or py), then exit",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    known = wanted in COMMANDS
    for name, (module, help) in COMMANDS.items():
        if name == wanted:
            options = {} if help is None else {"help": help, "description": help[0].upper() + help[1:] + "."}
            __import__(module, fromlist=["add_parser"]).add_parser(sub, name, formatter_class=formatter, **options)
        elif not known and help is not None:  # listed in the help, or in the error naming the choices
            sub.add_parser(name, help=help, add_help=False, formatter_class=formatter)
    return parser


def main(argv: "Sequence[str] | None" = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    if argv is None:
        argv = sys.argv[1:]
    parser = _parser(next((a for a in argv if not a.startswith("-")), None))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.version:
        print(_version())
        return OK
    if args.command is None:
        parser.print_help()
        return USAGE
    handler: "Callable[[argparse.Namespace], int]" = args.handler
    for stream in (sys.stdout, sys.stderr):  # names from file names may hold lone surrogates
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", "") == "strict":
            reconfigure(errors="backslashreplace")
    from .._errors import CycleError, FlowError  # (after the parse: --help loads neither)
    from ..stores import StoreError  # (after the parse: --help loads neither)

    try:
        return handler(args)
    except (FlowError, CycleError, StoreError, UsageError) as exc:
        message = str(exc)
        if isinstance(exc, StoreError) and getattr(args, "codec", None) != "pickle" and "--codec" not in message \
                and "decod" in message.lower():
            exc = StoreError(f"{message} (a store written with --codec pickle is read with --codec pickle)")
        _error(exc)
        return USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # e.g. piped into `head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return OK


def _error(exc: BaseException) -> None:
    from .._errors import FlowError  # (a command's error only)

    if isinstance(exc, FlowError) and len(exc.problems) > 1:
        print(f"error: {len(exc.problems)} problems:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {_cli_words(problem)}", file=sys.stderr)
    else:
        print(f"error: {_cli_words(str(exc))}", file=sys.stderr)


def _cli_words(message: str) -> str:
    """``message`` in the command line's words: the Python API's ``force=True``
    (a changed flow) and ``force`` (a run live elsewhere) are ``--force`` here."""
    return message.replace("force=True", "--force").replace("resume it with force ", "resume it with --force ")
