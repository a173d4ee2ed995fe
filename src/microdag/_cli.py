"""``python -m microdag``: the command-line runner.

A thin shell over the Python API: every command is a few calls to
:func:`~microdag._spec.load_flow`, :meth:`Flow.run` and a store's readers, so
everything it does can be done from Python.

Conventions: results go to stdout (``--json`` makes them one JSON document),
progress and diagnostics to stderr; quiet unless something is worth saying.
Exit codes: 0 success, 1 a run (or step) failed, 2 usage or validation error
(bad flow file, unknown run, unusable store), 130 interrupted (the run is
recorded as cancelled and can be resumed).

Start-up time matters (shells, CI, lambdas): only :mod:`argparse` is imported
before the command is known, and each command imports what it uses.
"""

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any, TextIO

    from ._flow import Flow
    from ._result import Run
    from .stores import Store, TaskRecord

#: Where ``run`` keeps its runs when no ``--store`` is given, and where the
#: other commands look for them.
DEFAULT_STORE = os.path.join(".microdag", "runs.db")

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130

#: ``show``: a run of more tasks than this is summarised unless --all; the rows and failures then listed.
SHOW_ALL, SHOW_FIRST, SHOW_FAILURES = 1000, 20, 100

COMMANDS = (
    "run", "resume", "step", "validate", "graph", "schema", "runs", "show", "logs", "prune", "report", "export",
    "ui",
)

_COLORS = {"succeeded": "32", "failed": "31", "cancelled": "33", "skipped": "2", "running": "36"}


class _UsageError(Exception):
    """Bad input from the command line: the message is printed, exit code 2."""


def _version() -> str:
    from ._compat import TWIN, WHY_PY
    from ._version import __version__

    why = f"; {WHY_PY}" if TWIN == "py" and WHY_PY else ""
    return f"microdag {__version__} (scheduler: {TWIN}{why})"


# -- the parser ---------------------------------------------------------------------------


class _Unused:
    """Stands in for the parsers of the commands not being run: building every
    command's arguments would cost more than most commands take."""

    def add_argument(self, *args: "Any", **kwargs: "Any") -> None:
        return None


def _columns(stream: "TextIO | None" = None) -> int:
    """The width of the terminal of ``stream`` (default: ``sys.__stdout__``)
    as :func:`shutil.get_terminal_size` gives it (``COLUMNS`` first), 80 when
    unknown; without importing :mod:`shutil` (and, with it, a few compression
    modules: several milliseconds of a command's start)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            fd = (sys.__stdout__ if stream is None else stream).fileno()  # type: ignore[union-attr]
            columns = os.get_terminal_size(fd).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def _width() -> int:
    """The help's width, as ``shutil.get_terminal_size`` gives it to argparse."""
    return _columns() - 2


def _parser(wanted: "str | None" = None) -> "argparse.ArgumentParser":
    """The parser, with the arguments of command ``wanted`` only (names and
    summaries of the others are enough for the top-level help)."""
    import argparse

    width = _width()

    def formatter(prog: str) -> "argparse.HelpFormatter":
        return argparse.HelpFormatter(prog, width=width)

    parser = argparse.ArgumentParser(
        formatter_class=formatter,
        prog="python -m microdag",
        description="Define, check and run DAGs of steps; keep, resume and inspect their runs.",
        epilog="FLOW is a .toml or .json flow file, a .py file holding one Flow "
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

    def command(name: str, help: str) -> "argparse.ArgumentParser":
        if name != wanted:
            if not known:  # listed in the help, or in the error naming the choices
                sub.add_parser(name, help=help, add_help=False, formatter_class=formatter)
            return _Unused()  # type: ignore[return-value]
        return sub.add_parser(
            name, help=help, description=help[0].upper() + help[1:] + ".", formatter_class=formatter
        )

    def store_option(p: "argparse.ArgumentParser") -> None:
        p.add_argument(
            "--store",
            metavar="SPEC",
            default=None,
            help=f"the run store: a path ending in .db, sqlite:PATH, json:DIR or memory "
            f"(default: {DEFAULT_STORE})",
        )
        p.add_argument(
            "--codec",
            choices=("json", "pickle"),
            default=None,  # json, unless the spec ends in ?codec=NAME
            help="how the store encodes outputs and inputs (default: json); pickle keeps any "
            "picklable value, but reading it runs code: trusted stores only",
        )

    def input_options(p: "argparse.ArgumentParser") -> None:
        p.add_argument(
            "--input",
            "-i",
            metavar="K=V",
            action="append",
            default=[],
            help="a flow input (V is parsed as JSON when it is JSON, else taken as text); repeatable",
        )

    def run_options(p: "argparse.ArgumentParser") -> None:
        p.add_argument(
            "--executor",
            type=_executor,
            default="inline",
            metavar="{inline,threads,processes,dask,dask://HOST:PORT}",
            help="where steps run (default: inline); dask: a Dask cluster of worker processes on this "
            "machine, dask://HOST:PORT: the Dask cluster of the scheduler there (docs/distributed.md)",
        )
        p.add_argument(
            "--workers", type=_positive, metavar="N",
            help="parallel steps at most (--executor dask: the cluster's worker processes)",
        )
        p.add_argument(
            "--quiet", "-q", action="store_true", help="print no progress, summary or outputs unless the run fails"
        )
        p.add_argument("--json", action="store_true", help="print one JSON document describing the run")
        p.add_argument(
            "--otel", action="store_true",
            help="trace the run with OpenTelemetry, exported as the OTEL_* variables say (docs/observability.md)",
        )

    p = command("run", "run a flow")
    p.add_argument("flow", metavar="FLOW")
    input_options(p)
    p.add_argument("--inputs", metavar="FILE.json", help="flow inputs from a JSON object (--input overrides)")
    run_options(p)
    store_option(p)
    p.add_argument("--run-id", metavar="ID", help="the run's id (default: a new one)")
    p.add_argument(
        "--target", metavar="STEP", action="append", help="run only this step and what it needs; repeatable"
    )
    p.add_argument(
        "--on-failure",
        choices=("fail_fast", "continue"),
        default="fail_fast",
        help="fail_fast: start nothing new after a failure (default); continue: run every "
        "branch that does not depend on it",
    )

    p = command("resume", "go on with a stored run: re-run what did not succeed")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("flow", metavar="FLOW", nargs="?", help="default: the flow the run was started from")
    run_options(p)
    store_option(p)
    p.add_argument(
        "--force", action="store_true", help="resume even if the flow changed or the run seems live elsewhere"
    )

    p = command(
        "step",
        "run one step: on the outputs of a stored run (--from-run; prints its output as JSON), "
        "or as one task of a run kept in a folder (--run-dir: what an Argo pod runs)",
    )
    p.add_argument("flow", metavar="FLOW")
    p.add_argument("step", metavar="STEP")
    p.add_argument("--from-run", metavar="RUN_ID", help="take inputs and dependency outputs from this stored run")
    p.add_argument(
        "-o", "--output", metavar="FILE",
        help="with --from-run: write the output's JSON to FILE instead of stdout (what the step prints stays there)",
    )
    store_option(p)
    input_options(p)
    p.add_argument(
        "--run-dir",
        metavar="DIR",
        help="read the outputs of the step's dependencies from DIR/outputs and write the step's own there; "
        "exit 0 when it succeeded or skipped itself, 1 when it failed (docs/argo.md)",
    )
    p.add_argument("--run-id", metavar="ID", help="with --run-dir: the run's id (default: the folder's name)")
    p.add_argument(
        "--retry", type=_whole, metavar="N", default=0,
        help="with --run-dir: the attempts before this one (Argo's {{retries}}; default: 0)",
    )
    p.add_argument("--item", type=_unit, metavar="N", help="with --run-dir: run unit N of a map step (-1: none)")
    p.add_argument("--plan", action="store_true", help="with --run-dir: write the units a map step runs")
    p.add_argument("--gather", action="store_true", help="with --run-dir: a map step's output, from its units")
    p.add_argument(
        "--max-output", type=_positive, metavar="BYTES",
        help="with --run-dir: fail when the output takes more bytes of JSON (Argo parameters are limited)",
    )

    p = command("validate", "check a flow without running it")
    p.add_argument("flow", metavar="FLOW")

    p = command("graph", "print a flow's graph")
    p.add_argument("flow", metavar="FLOW")
    p.add_argument("--format", "-f", choices=("dot", "mermaid", "json"), default="dot", help="default: dot")

    p = command("schema", "print the JSON Schema of a flow's inputs (types, defaults, descriptions)")
    p.add_argument("flow", metavar="FLOW")

    p = command("runs", "list stored runs, newest first")
    store_option(p)
    p.add_argument("--flow", metavar="NAME", help="only runs of this flow")
    p.add_argument("--limit", type=_positive, metavar="N", default=20, help="at most N runs (default: 20)")
    p.add_argument("--json", action="store_true", help="print a JSON list")

    p = command("show", "show a stored run: its inputs, each step's status, attempts, duration, output and error")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("step", metavar="STEP", nargs="?", help="print this step's whole output (as JSON when it is JSON)")
    store_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument(
        "--all", action="store_true",
        help=f"list every task of a run of more than {SHOW_ALL:,} (default: their counts, the failures and the "
        f"first {SHOW_FIRST})",
    )

    p = command("logs", "print what a step printed and logged in a stored run")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("step", metavar="STEP")
    p.add_argument("--item", type=int, metavar="N", help="item N of a map step")
    store_option(p)

    p = command("prune", "delete old runs and their files")
    store_option(p)
    p.add_argument("--older-than", type=_days, metavar="DAYS", help="runs started more than DAYS ago")
    p.add_argument("--keep-last", type=_positive, metavar="N", help="keep the N newest runs of each flow")

    p = command("report", "write a self-contained HTML report of a stored run")
    p.add_argument("run_id", metavar="RUN_ID")
    store_option(p)
    p.add_argument("-o", "--output", metavar="FILE", help="default: report-RUN_ID.html")

    p = command("export", "write a manifest that runs a flow elsewhere: an Argo Workflow (export argo)")
    p.add_argument("target", choices=("argo",), metavar="TARGET", help="argo: an Argo Workflows Workflow")
    p.add_argument("flow", metavar="FLOW")
    p.add_argument(
        "--image", required=True, metavar="IMAGE",
        help="the container image every pod runs: it holds Python, microdag, the flow and its modules",
    )
    p.add_argument("--name", metavar="NAME", help="the workflow's name (default: generateName from the flow's name)")
    p.add_argument("--namespace", metavar="NS", help="the workflow's namespace")
    p.add_argument(
        "--volume-claim", metavar="CLAIM",
        help="a PersistentVolumeClaim every pod mounts at /microdag, where the run's outputs are kept "
        "(default: outputs travel as Argo parameters, 256 KiB of JSON each at most)",
    )
    p.add_argument("--workers", type=_positive, metavar="N", help="pods running at once, at most (spec.parallelism)")
    p.add_argument(
        "--flow-path", metavar="SPEC",
        help="how the pods name the flow (default: FLOW as given, from the image's working directory)",
    )
    p.add_argument("--format", "-f", choices=("yaml", "json"), default="yaml", help="default: yaml")
    p.add_argument("-o", "--output", metavar="FILE", help="write the manifest to FILE (default: stdout)")

    p = command("ui", "serve a local web app to watch, run and edit flows (docs/ui.md)")
    p.add_argument(
        "flow", metavar="FLOW", nargs="*",
        help="flows to show beside the flow files of this folder (a .py flow is shown only when named)",
    )
    p.add_argument(
        "--store", metavar="SPEC", default=None,
        help=f"the run store: a path ending in .db, sqlite:PATH, json:DIR (default: {DEFAULT_STORE})",
    )
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=_whole, default=0, metavar="N", help="the port (default: 0, a free one)")
    p.add_argument("--no-open", action="store_true", help="do not open a browser")
    return parser


def _integer(text: str, low: int, what: str = "a whole number", least: "str | None" = None) -> int:
    """``text`` as an int of at least ``low``; the argparse error names ``what`` was expected."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {least or f'a number >= {low}'}, not {value}")
    return value


def _positive(text: str) -> int:
    return _integer(text, 1)


def _executor(text: str) -> str:
    import argparse

    if text in ("inline", "threads", "processes", "dask") or (text.startswith("dask://") and len(text) > 7):
        return text
    raise argparse.ArgumentTypeError(
        f"invalid choice: {text!r} (choose from inline, threads, processes, dask, dask://HOST:PORT)")


def _whole(text: str) -> int:
    return _integer(text, 0)


def _unit(text: str) -> int:
    return _integer(text, -1, "a unit index", "a unit index >= 0 (or -1: none)")


def _days(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of days, not {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of days >= 0, not {text}")
    return value


# -- entry point ----------------------------------------------------------------------------


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
    handler: "Callable[[argparse.Namespace], int]" = globals()["_cmd_" + args.command]
    for stream in (sys.stdout, sys.stderr):  # names from file names may hold lone surrogates
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", "") == "strict":
            reconfigure(errors="backslashreplace")
    from ._errors import CycleError, FlowError
    from .stores import StoreError

    try:
        return handler(args)
    except (FlowError, CycleError, StoreError, _UsageError) as exc:
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
    from ._errors import FlowError

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


# -- helpers ----------------------------------------------------------------------------------


def _load(spec: str) -> "Flow":
    from ._spec import load_flow

    flow = load_flow(spec)
    flow.validate()  # a Flow object from Python is checked here, before anything runs
    return flow


def _open(
    spec: "str | None", create: bool = False, readonly: bool = False, codec: "str | None" = None
) -> "Store":
    """The store of ``--store`` (default: ``.microdag/runs.db``) with the codec
    of ``--codec`` (when given: else the store's default, or the one its spec
    names); the reading commands open it read-only, so that they work where it
    cannot be written."""
    from .stores import StoreError, open_store, spec_parts

    if spec is None:
        spec = DEFAULT_STORE
        if create:
            os.makedirs(os.path.dirname(spec), exist_ok=True)
        elif not os.path.exists(spec):
            raise StoreError(f"no store at {spec} (run a flow here first, or pass --store)")
    elif not create and spec != "memory":
        path = spec_parts(spec)[1]
        if not os.path.exists(path):
            raise StoreError(f"no store at {spec}")
    options: dict[str, Any] = {} if codec is None else {"codec": codec}
    try:
        return open_store(spec, readonly=readonly, **options)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None


def _parse_inputs(pairs: "list[str]", path: "str | None" = None) -> "dict[str, Any]":
    import json

    inputs: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as exc:
            raise _UsageError(f"cannot read --inputs {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise _UsageError(f"--inputs {path} is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise _UsageError(f"--inputs {path} must hold a JSON object, not {type(data).__name__}")
        inputs.update(data)
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise _UsageError(f"--input takes KEY=VALUE, not {pair!r}")
        try:
            inputs[key] = json.loads(text)
        except ValueError:
            inputs[key] = text
    return inputs


def _typed_inputs(flow: "Flow", pairs: "list[str]", inputs: "dict[str, Any]") -> "dict[str, Any]":
    """``inputs`` with each ``--input K=V`` read as the type input K declares:
    the text itself for a string, a number or true/false where one is wanted
    (a clear error when V is not one), JSON or text otherwise."""
    import json

    from ._schema import describe

    if not pairs:
        return inputs
    types = flow._compiled().input_types()
    for pair in pairs:
        key, _, text = pair.partition("=")
        schema = types.get(key) or {}
        kind = schema.get("type")
        if kind == "string":  # -i version=1.10 is "1.10", not 1.1
            inputs[key] = text
        elif kind in ("integer", "number", "boolean"):
            wanted = {"integer": (int,), "number": (int, float), "boolean": (bool,)}[kind]
            if type(inputs.get(key)) not in wanted:
                raise _UsageError(f"--input {key}={text}: {key!r} takes {describe(schema)}, not {json.dumps(text)}")
    return inputs


def _jsonable(value: "Any") -> "Any":
    """``value`` if JSON can hold it, else its repr."""
    import json

    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _dump(document: "Any") -> None:
    import json

    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def _color(stream: "TextIO") -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def _paint(text: str, status: str, color: bool) -> str:
    code = _COLORS.get(status)
    return f"\x1b[{code}m{text}\x1b[0m" if color and code else text


def _seconds(value: "float | None") -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    if value < 120:
        return f"{value:.2f} s"
    return f"{int(value // 60)} min {value % 60:02.0f} s"


def _when(timestamp: "float | None") -> str:
    if timestamp is None:
        return "-"
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _table(rows: "list[list[str]]", statuses: "list[str]", color: bool) -> str:
    """Rows aligned in columns; the second column (a status) painted."""
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(w) for cell, w in zip(row, widths)]
        if n and color:
            cells[1] = _paint(cells[1], statuses[n - 1], color)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _one_line(text: "str | None") -> str:
    """A message on one line: its first line, and its last when it has more
    (a command step's error ends with the last lines of its stderr)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    glue = " " if len(lines) == 2 and lines[0].endswith(":") else " ... "
    return lines[0] + glue + lines[-1]


def _indented(text: str, first: str = "  ", rest: str = "    ") -> str:
    """``text`` with ``first`` before its first line and ``rest`` before the others."""
    lines = text.rstrip().splitlines() or [""]
    return "\n".join([first + lines[0]] + [rest + line for line in lines[1:]])


def _printable(text: str) -> str:
    """``text`` on one line: control characters (and lone surrogates) escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _cols(text: str) -> int:
    """The columns ``text`` takes on a terminal (wide East Asian characters: 2)."""
    if text.isascii():
        return len(text)
    import unicodedata

    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
        for c in text
    )


def _cut(text: str, limit: int) -> str:
    """The longest start of ``text`` that takes at most ``limit`` columns."""
    if text.isascii():
        return text[: max(0, limit)]
    if _cols(text) <= limit:
        return text
    out, used = [], 0
    for c in text:
        used += _cols(c)
        if used > limit:
            break
        out.append(c)
    return "".join(out)


#: How many characters of a value a summary shows (``...`` ends a longer one).
PREVIEW = 100


def _preview(value: "Any", limit: int = PREVIEW) -> str:
    """``value`` on one line of at most ``limit`` characters: as JSON when it is
    JSON, else its repr; cut with ``...``.  A big value is not written whole."""
    import json

    text = ""
    try:
        for chunk in json.JSONEncoder(ensure_ascii=False, allow_nan=False).iterencode(value):
            text += chunk
            if len(text) > limit:
                break
    except (TypeError, ValueError, RecursionError):
        import reprlib

        short = reprlib.Repr()
        short.maxlevel = 3
        short.maxstring = short.maxother = short.maxlong = limit + 2
        short.maxlist = short.maxtuple = short.maxset = short.maxfrozenset = short.maxdict = limit // 3
        try:
            text = short.repr(value)
        except Exception as exc:  # a broken __repr__
            text = f"<{type(value).__name__}: repr failed: {type(exc).__name__}>"
    text = _printable(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- progress ---------------------------------------------------------------------------------


class _Progress:
    """Reports a run on stderr as it goes.

    On a terminal: one line rewritten in place (steps done, running and
    failed, elapsed, ETA, then the names of the running steps, as many as
    fit), never wider than the terminal, redrawn at most every ``INTERVAL``
    seconds (a daemon thread keeps the clock moving; the last state is always
    drawn).  Elsewhere: one plain line per finished step.  Quiet: nothing.

    Steps run from ``step_started`` to ``step_finished`` (a retry starts a
    step again, a step skipped or cancelled before it started finishes it
    without a start).  The ETA is the pace of the steps finished so far applied
    to those left, counted down from the last finish: a long step makes it
    reach zero (then it is left out), never grow.
    """

    #: Seconds between two redraws, at least.
    INTERVAL = 0.1

    def __init__(
        self,
        total: int,
        done: int,
        quiet: bool,
        stream: "TextIO | None" = None,
        clock: "Callable[[], float] | None" = None,
    ) -> None:
        import threading
        import time

        self.stream = stream or sys.stderr
        self.total = total
        self.run_id: str | None = None  # from the run's first event
        self.done = done
        self.finished = 0  # steps finished in this process: the ETA's pace
        self.running: dict[str, None] = {}  # started and not finished, in the order they started
        self.failed = 0
        self.quiet = quiet
        self.live = not quiet and self.stream.isatty()
        self.color = _color(self.stream)
        self.clock = clock or time.monotonic
        self.start = self.last = self.clock()  # the run's start, the last step's finish
        self.lock = threading.Lock()
        self.shown = 0  # columns of the line on screen
        self.drawn = float("-inf")  # when it was drawn
        self.dirty = False  # changed since
        self.stopped = threading.Event()
        if self.live:
            threading.Thread(target=self._tick, name="microdag-progress", daemon=True).start()

    def __call__(self, event: "Any") -> None:
        kind = event.kind
        self.run_id = event.run_id
        with self.lock:
            if kind == "step_started":
                self.running[event.step] = None
            elif kind == "step_finished":
                self.running.pop(event.step, None)
                self.done += 1
                self.finished += 1
                self.last = self.clock()
                if event.status == "failed":
                    self.failed += 1
                if not self.live and not self.quiet:
                    self._plain(event)
            elif kind == "run_finished":
                if self.live:
                    self._draw()  # the final state, whatever the throttle says
                return
            elif kind != "run_started":
                return
            if self.live:
                if self.clock() - self.drawn >= self.INTERVAL:
                    self._draw()
                else:
                    self.dirty = True

    def _plain(self, event: "Any") -> None:
        status = _paint(event.status, event.status, self.color)
        line = f"[{self.done}/{self.total}] {_printable(event.step)}: {status}"
        if event.duration is not None and event.status in ("succeeded", "failed"):
            line += f" in {_seconds(event.duration)}"
        if event.attempt and event.attempt > 1:
            line += f" (attempt {event.attempt})"
        if event.error is not None:
            line += f": {type(event.error).__name__}: {_one_line(str(event.error))}"
        print(line, file=self.stream, flush=True)

    def _eta(self, now: float) -> "float | None":
        left = self.total - self.done
        if not self.finished or left <= 0:
            return None
        eta = (self.last - self.start) / self.finished * left - (now - self.last)
        return eta if eta > 0 else None

    def _text(self, limit: int) -> str:
        """The line, at most ``limit`` columns wide."""
        now = self.clock()
        text = f"{self.done}/{self.total} steps done, {len(self.running)} running"
        if self.failed:
            text += f", {self.failed} failed"
        text += f", {_seconds(now - self.start)}"
        eta = self._eta(now)
        if eta is not None:
            text += f", ETA {_seconds(eta)}"
        used = len(text) + 3  # " | "
        names: list[str] = []
        count = len(self.running)
        for k, name in enumerate(self.running):
            name = _printable(name)
            width = _cols(name) + (2 if names else 0)
            more = len(f", +{count - k - 1} more") if k + 1 < count else 0
            if used + width + more > limit:
                break
            names.append(name)
            used += width
        if names:
            text += " | " + ", ".join(names)
            if len(names) < count:
                text += f", +{count - len(names)} more"
        return _cut(text, limit)

    def _draw(self) -> None:
        limit = _columns(self.stream) - 1  # a full line would wrap on some terminals
        text = self._text(limit)
        width = _cols(text)
        pad = " " * max(0, min(self.shown, limit) - width)  # over what is left of the last one
        self.shown = width
        self.drawn = self.clock()
        self.dirty = False
        self.stream.write("\r" + text + pad)
        self.stream.flush()

    def _tick(self) -> None:
        while not self.stopped.wait(self.INTERVAL):
            with self.lock:
                if self.stopped.is_set():  # closed while this waited for the lock
                    return
                since = self.clock() - self.drawn
                if since >= 2 * self.INTERVAL or (self.dirty and since >= self.INTERVAL):
                    self._draw()

    def close(self) -> None:
        self.stopped.set()
        if self.live:
            with self.lock:
                if self.dirty:
                    self._draw()
                blank = " " * min(self.shown, _columns(self.stream) - 1)
                self.stream.write("\r" + blank + "\r")
                self.stream.flush()


def _resume_hint(run_id: str, store_spec: str, args: "argparse.Namespace") -> str:
    """The command that resumes run ``run_id`` (it needs the store and codec it was run with)."""
    import shlex

    hint = f"python -m microdag resume {shlex.quote(run_id)}"
    if store_spec != DEFAULT_STORE:
        hint += f" --store {shlex.quote(store_spec)}"
    if getattr(args, "codec", None) is not None:
        hint += f" --codec {args.codec}"
    return hint


def _report_run(run: "Run", store_spec: str, args: "argparse.Namespace") -> int:
    """The end of ``run``/``resume``: a summary on stderr and the outputs of the
    final steps on stdout, or one JSON document; the exit code."""
    failed = run._failed() if run.status != "succeeded" else []
    if args.json:
        _dump(_run_document(run, store_spec))
    elif not args.quiet or run.status != "succeeded":
        color = _color(sys.stderr)
        status = _paint(run.status, run.status, color)
        counts = run._counts()
        order = ["succeeded", "failed", "skipped", "cancelled", "pending"]
        order += sorted(set(counts) - set(order))
        steps = f"{sum(counts.values())} step{'s' if sum(counts.values()) != 1 else ''}"
        tally = ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s))
        print(
            f"run {run.id} of {run.flow}: {status} in {_seconds(run.duration)} "
            f"({steps}{': ' + tally if tally else ''})",
            file=sys.stderr,
        )
        for task in failed:
            err = task.error
            print(_indented(f"{_printable(task.name)}: {type(err).__name__}: {err}"), file=sys.stderr)
        if run.status != "succeeded" and store_spec != "memory":
            print(f"  resume with: {_resume_hint(run.id, store_spec, args)}", file=sys.stderr)
        if not args.quiet and len(run.outputs):
            sys.stderr.flush()  # before the outputs, where both are one terminal
            lines = ["outputs:"]
            lines.extend(f"  {_printable(name)}: {_preview(value)}" for name, value in run.outputs.items())
            sys.stdout.write("\n".join(lines) + "\n")
    return OK if run.status == "succeeded" else FAILED


def _run_document(run: "Run", store_spec: str) -> "dict[str, Any]":
    steps = {}
    for name, task in run.tasks.items():
        entry: dict[str, Any] = {
            "status": task.status,
            "attempts": task.attempts,
            "duration": task.duration,
        }
        if task.error is not None:
            entry["error"] = {"type": type(task.error).__name__, "message": str(task.error)}
        if task.cached:
            entry["cached"] = True
        steps[name] = entry
    return {
        "run_id": run.id,
        "flow": run.flow,
        "status": run.status,
        "started": run.started,
        "finished": run.finished,
        "duration": run.duration,
        "store": store_spec,
        "inputs": _jsonable(run.inputs),
        "steps": steps,
        "outputs": {name: _jsonable(value) for name, value in run.outputs.items()},
    }


def _execute(
    flow: "Flow", args: "argparse.Namespace", store: "Store", store_spec: str, done: int = 0, **options: "Any"
) -> int:
    """Run (or resume: ``done`` steps succeeded before) ``flow`` with
    progress; Ctrl-C ends it cancelled, exit 130."""
    if options.get("resume"):
        total = len(flow)
    else:
        targets = options.get("targets")
        total = len(set(flow.graph.ancestors(targets)) | set(targets)) if targets else len(flow)
    hooks: list[Any] = []
    provider = None
    if args.otel:
        from .otel import Tracing, provider_from_environment

        try:
            provider = provider_from_environment()
        except RuntimeError as exc:
            raise _UsageError(f"--otel: {exc}") from None
        hooks.append(Tracing(provider))
    progress = _Progress(total, done, args.quiet or args.json)
    hooks.append(progress)
    try:
        if args.executor.startswith("dask"):
            run = _run_on_dask(flow, args, store, hooks, options)
        else:
            run = flow.run(
                executor=args.executor,
                max_workers=args.workers,
                store=store,
                hooks=hooks,
                raise_on_failure=False,
                **options,
            )
    except KeyboardInterrupt:
        progress.close()
        run_id = progress.run_id
        if run_id is None:
            print("interrupted before the run started", file=sys.stderr)
            return INTERRUPTED
        print(f"interrupted: run {run_id} is recorded as cancelled", file=sys.stderr)
        if store_spec != "memory":
            print(f"  resume with: {_resume_hint(run_id, store_spec, args)}", file=sys.stderr)
        return INTERRUPTED
    finally:
        if provider is not None:
            provider.shutdown()  # (exports what is left)
    progress.close()
    return _report_run(run, store_spec, args)


def _run_on_dask(flow: "Flow", args: "argparse.Namespace", store: "Store", hooks: "list[Any]",
                 options: "dict[str, Any]") -> "Run":
    """``--executor dask`` (a cluster on this machine, ``--workers`` processes)
    or ``dask://HOST:PORT`` (a running scheduler; ``--workers`` bounds the steps;
    the functions of a ``.py`` flow travel with its tasks, by value)."""
    from .pools.dask import connect

    local = args.executor == "dask"
    try:
        cluster = connect(args.executor, workers=args.workers if local else None)
        client = cluster.__enter__()
    except (ImportError, OSError) as exc:
        raise _UsageError(str(exc)) from None
    if not local and args.flow.endswith(".py"):  # (its workers cannot import a file of this machine)
        import cloudpickle

        path = os.path.abspath(args.flow)
        for module in list(sys.modules.values()):
            if getattr(module, "__file__", None) == path:
                cloudpickle.register_pickle_by_value(module)
    try:
        return flow.run(executor=client, max_workers=None if local else args.workers, store=store,
                        hooks=hooks, raise_on_failure=False, **options)
    finally:
        cluster.__exit__(None, None, None)


# -- commands ---------------------------------------------------------------------------------


def _cmd_run(args: "argparse.Namespace") -> int:
    inputs = _parse_inputs(args.input, args.inputs)
    flow = _load(args.flow)
    inputs = _typed_inputs(flow, args.input, inputs)
    store_spec = args.store or DEFAULT_STORE
    store = _open(args.store, create=True, codec=args.codec)
    try:
        return _execute(
            flow, args, store, store_spec,
            inputs=inputs, run_id=args.run_id, targets=args.target, on_failure=args.on_failure,
        )
    finally:
        store.close()


def _cmd_resume(args: "argparse.Namespace") -> int:
    store_spec = args.store or DEFAULT_STORE
    store = _open(args.store, codec=args.codec)
    try:
        info = store.run_info(args.run_id)
        spec = args.flow or info.source
        if spec is None:
            raise _UsageError(
                f"run {args.run_id} does not record which flow it ran (it was started from "
                "Python); name it: python -m microdag resume RUN_ID FLOW"
            )
        done = store.succeeded_count(args.run_id)
        if not (args.quiet or args.json):  # (a big flow takes a while to load: say what is going on first)
            print(f"resuming run {args.run_id} of {_printable(info.flow)}: {done} step{'s' if done != 1 else ''} "
                  f"succeeded before; loading {_printable(spec)}", file=sys.stderr, flush=True)
        flow = _load(spec)
        return _execute(flow, args, store, store_spec, done, run_id=args.run_id, resume=True, force=args.force)
    finally:
        store.close()


def _cmd_step(args: "argparse.Namespace") -> int:
    import json
    import traceback

    if (args.from_run is None) == (args.run_dir is None):
        raise _UsageError("step needs --from-run RUN_ID (a stored run) or --run-dir DIR (a run folder), not both")
    if args.run_dir is not None:
        if args.output is not None:
            raise _UsageError("--output goes with --from-run (with --run-dir, the output is kept in the folder)")
        return _step_in_folder(args)
    folder_only = [
        option for option, given in (
            ("--run-id", args.run_id is not None), ("--retry", args.retry != 0), ("--item", args.item is not None),
            ("--plan", args.plan), ("--gather", args.gather), ("--max-output", args.max_output is not None),
        ) if given
    ]
    if folder_only:
        raise _UsageError(f"{', '.join(folder_only)} go{'es' if len(folder_only) == 1 else ''} with --run-dir")
    flow = _load(args.flow)
    if args.step not in flow:
        raise _UsageError(f"flow {flow.name!r} has no step named {args.step!r}")
    store = _open(args.store, codec=args.codec)
    try:
        inputs = _parse_inputs(args.input)
        store.run_info(args.from_run)  # an unknown run is a usage error, before the step runs
        try:
            output = flow.run_step(args.step, inputs, from_run=args.from_run, store=store)
        except Exception as exc:
            from ._errors import FlowError

            if isinstance(exc, FlowError):
                raise
            traceback.print_exc()
            print(f"step {args.step!r} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return FAILED
    finally:
        store.close()
    try:
        text = json.dumps(output, indent=2, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        text = json.dumps(repr(output))
    if args.output is None:
        sys.stdout.write(text + "\n")
        return OK
    try:
        with open(args.output, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text + "\n")
    except OSError as exc:
        raise _UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    return OK


def _step_in_folder(args: "argparse.Namespace") -> int:
    """``step --run-dir DIR``: one task of a run kept in a folder (an Argo pod's command)."""
    from ._pod import run_task

    if args.store is not None or args.codec is not None:
        raise _UsageError("--store and --codec go with --from-run, not --run-dir")
    roles = [option for option, given in (("--plan", args.plan), ("--item", args.item is not None),
                                          ("--gather", args.gather)) if given]
    if len(roles) > 1:
        raise _UsageError(f"{' and '.join(roles)} cannot be given together: a task plans, runs a unit or gathers")
    inputs = _parse_inputs(args.input)
    flow = _load(args.flow)
    if args.step not in flow:
        raise _UsageError(f"flow {flow.name!r} has no step named {args.step!r}")
    role = "plan" if args.plan else "gather" if args.gather else "unit" if args.item is not None else "step"
    return run_task(
        flow, args.step, args.run_dir, run_id=args.run_id, inputs=inputs, retry=args.retry, item=args.item,
        role=role, max_output=args.max_output,
    )


def _cmd_export(args: "argparse.Namespace") -> int:
    """``export argo FLOW --image IMAGE``: the flow as an Argo Workflow manifest."""
    import re

    from ._argo import manifest

    label = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
    words = "lower case letters, digits and '-', starting and ending with a letter or digit"
    if args.name is not None and (len(args.name) > 63 or not re.fullmatch(label, args.name)):
        raise _UsageError(f"--name {args.name!r} is not a workflow name: {words}, at most 63 characters")
    if args.namespace is not None and (len(args.namespace) > 63 or not re.fullmatch(label, args.namespace)):
        raise _UsageError(f"--namespace {args.namespace!r} is not a namespace: {words}, at most 63 characters")
    claim = args.volume_claim
    if claim is not None and (len(claim) > 253 or not re.fullmatch(rf"{label}(\.{label})*", claim)):
        raise _UsageError(
            f"--volume-claim {claim!r} is not a claim name: {words} (and '.'), at most 253 characters"
        )
    if not args.image.strip() or any(c.isspace() for c in args.image):
        raise _UsageError(f"--image {args.image!r} is not an image name")
    flow = _load(args.flow)
    document = manifest(
        flow, image=args.image, flow_spec=args.flow_path or args.flow, name=args.name,
        namespace=args.namespace, volume_claim=claim, workers=args.workers,
    )
    if args.format == "json":
        import json

        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    else:
        from ._yaml import dump

        text = dump(document, comment=f"Argo Workflow of flow {flow.name!r}, written by python -m microdag "
                    "export argo; submit it with: argo submit FILE")
    if args.output is None:
        sys.stdout.write(text)
        return OK
    try:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise _UsageError(f"cannot write {args.output}: {exc.strerror}") from None
    print(args.output)
    return OK


def _cmd_ui(args: "argparse.Namespace") -> int:
    """``ui [FLOW ...]``: serve the local web app until Ctrl-C."""
    from .ui import serve

    if args.store == "memory":
        raise _UsageError("the UI needs a store that other processes can read: a .db file or json:DIR")
    if args.port > 65535:
        raise _UsageError(f"--port must be at most 65535, not {args.port}")
    for spec in args.flow:
        path = spec if os.path.exists(spec) else spec.partition(":")[0]
        if path.endswith((".toml", ".json", ".py")) and not os.path.exists(path):
            raise _UsageError(f"{spec}: no such flow file")
    try:
        return serve(
            args.flow, store=args.store or DEFAULT_STORE, host=args.host, port=args.port,
            open_browser=not args.no_open,
        )
    except OSError as exc:
        raise _UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None


def _cmd_schema(args: "argparse.Namespace") -> int:
    """``schema FLOW``: the JSON Schema of the flow's inputs, as ``Flow.input_schema`` gives it."""
    import json

    flow = _load(args.flow)
    sys.stdout.write(json.dumps(flow.input_schema(), indent=2, ensure_ascii=False, default=repr) + "\n")
    return OK


def _cmd_validate(args: "argparse.Namespace") -> int:
    flow = _load(args.flow)
    inputs = flow.inputs
    required = sorted(name for name, needed in inputs.items() if needed)
    line = f"{args.flow}: flow {flow.name!r} is valid: {len(flow)} steps"
    if inputs:
        line += f", inputs {', '.join(sorted(inputs))}"
        if required:
            line += f" (required: {', '.join(required)})"
    print(line)
    return OK


def _cmd_graph(args: "argparse.Namespace") -> int:
    flow = _load(args.flow)
    graph = flow.graph
    if args.format == "json":
        _dump(graph.to_dict())
        return OK
    text = graph.to_mermaid() if args.format == "mermaid" else graph.to_dot(name=flow.name)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return OK


def _cmd_runs(args: "argparse.Namespace") -> int:
    store = _open(args.store, readonly=True, codec=args.codec)
    try:
        runs = store.list_runs(flow=args.flow, limit=args.limit)
    finally:
        store.close()
    if args.json:
        _dump([
            {"run_id": r.id, "flow": r.flow, "status": r.status, "started": r.started,
             "finished": r.finished, "source": r.source}
            for r in runs
        ])
        return OK
    if not runs:
        print("no runs", file=sys.stderr)
        return OK
    rows = [["RUN ID", "STATUS", "FLOW", "STARTED", "DURATION"]]
    for r in runs:
        duration = None if r.finished is None else r.finished - r.started
        rows.append([r.id, r.status, r.flow, _when(r.started), _seconds(duration)])
    print(_table(rows, [r.status for r in runs], _color(sys.stdout)))
    return OK


def _decode(store: "Store", run_id: str, record: "TaskRecord", data: bytes) -> "Any":
    """``data``, the output of ``record``, decoded; a :class:`StoreError`
    naming it when the store's codec cannot decode it."""
    try:
        return store.decode(data)
    except Exception as exc:
        from .stores import StoreError

        of_item = f" (item {record.item})" if record.item >= 0 else ""
        raise StoreError(
            f"the output of step {record.step!r}{of_item} of run {run_id} cannot be decoded with the "
            f"{store.codec} codec ({type(exc).__name__}: {exc}); it is damaged, or the store was written "
            "with another codec (--codec)"
        ) from None


def _cmd_show(args: "argparse.Namespace") -> int:
    store = _open(args.store, readonly=True, codec=args.codec)
    try:
        info = store.run_info(args.run_id)
        counts: dict[str, int] = {}
        if args.step is None and not args.json and not args.all:
            counts, records = store.task_summary(args.run_id, SHOW_FIRST, SHOW_FAILURES)
            if sum(counts.values()) <= SHOW_ALL:
                counts = {}  # a run this small is listed whole
        if not counts:
            records = store.tasks(args.run_id)
        if args.step is not None:
            return _show_step(store, args, records)
        outputs = {
            n: _decode(store, args.run_id, r, r.output) for n, r in enumerate(records) if r.output is not None
        }
    finally:
        store.close()
    duration = None if info.finished is None else info.finished - info.started
    if args.json:
        _dump({
            "run_id": info.id,
            "flow": info.flow,
            "status": info.status,
            "started": info.started,
            "finished": info.finished,
            "duration": duration,
            "source": info.source,
            "inputs": _jsonable(info.inputs),
            "tasks": [
                {
                    "step": r.step,
                    "item": None if r.item < 0 else r.item,
                    "status": r.status,
                    "attempts": r.attempts,
                    "started": r.started,
                    "finished": r.finished,
                    "duration": None if r.started is None or r.finished is None else r.finished - r.started,
                    "error": None if r.error_type is None else {
                        "type": r.error_type, "message": r.error_message, "traceback": r.traceback,
                    },
                    **({"output": _jsonable(outputs[n])} if n in outputs else {}),
                }
                for n, r in enumerate(records)
            ],
            "outputs": {r.step: _jsonable(outputs[n]) for n, r in enumerate(records) if r.item < 0 and n in outputs},
        })
        return OK
    color = _color(sys.stdout)
    print(f"run {info.id} of {info.flow}: {_paint(info.status, info.status, color)}")
    print(f"  started {_when(info.started)}, took {_seconds(duration)}")
    if info.source:
        print(f"  flow from {_printable(info.source)}")
    if info.inputs:
        print("  inputs:")
        for key, value in info.inputs.items():
            print(f"    {_printable(str(key))}: {_preview(value)}")
    else:
        print("  inputs: none")
    if not records:
        return OK
    rows = [["STEP", "STATUS", "ATTEMPTS", "DURATION", "OUTPUT"]]
    errors = []
    if counts:  # a big run: summarised
        tally = ", ".join(f"{c:,} {s}" for s, c in sorted(counts.items(), key=lambda sc: (-sc[1], sc[0])))
        print(f"  tasks: {sum(counts.values()):,} ({tally}); shown: the first {SHOW_FIRST} and up to "
              f"{SHOW_FAILURES} that failed or were cancelled (--all lists every one)")
    for n, r in enumerate(records):
        name = _printable(r.step if r.item < 0 else f"{r.step}[{r.item}]")
        took = None if r.started is None or r.finished is None else r.finished - r.started
        output = _preview(outputs[n], 60) if n in outputs else "-"
        rows.append([name, r.status, str(r.attempts), _seconds(took), output])
        if r.error_type is not None:
            errors.append(_indented(f"{name}: {r.error_type}: {r.error_message or ''}"))
    print()
    print(_table(rows, [r.status for r in records], color))
    if errors:
        print()
        print("errors:")
        print("\n".join(errors))
    return OK


def _show_step(store: "Store", args: "argparse.Namespace", records: "list[TaskRecord]") -> int:
    """``show RUN STEP``: the step's whole output, as JSON when it is JSON (always with ``--json``)."""
    import json

    record = next((r for r in records if r.step == args.step and r.item < 0), None)
    if record is None:
        raise _UsageError(f"run {args.run_id} has no step named {args.step!r}")
    if record.output is None:
        raise _UsageError(f"step {args.step!r} of run {args.run_id} has no output: it is {record.status}")
    value = _decode(store, args.run_id, record, record.output)
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        text = json.dumps(repr(value), ensure_ascii=False) if args.json else repr(value)
    sys.stdout.write(text + "\n")
    return OK


def _items(numbers: "list[int]") -> str:
    """``0, 1, 2`` or, for many, ``0, 1, 2, ..., 99 (100 items)``."""
    if len(numbers) <= 8:
        return ", ".join(map(str, numbers))
    return f"{', '.join(map(str, numbers[:3]))}, ..., {numbers[-1]} ({len(numbers)} items)"


def _cmd_logs(args: "argparse.Namespace") -> int:
    store = _open(args.store, readonly=True, codec=args.codec)
    try:
        records = [r for r in store.tasks(args.run_id, outputs=False) if r.step == args.step]
        if not records:
            raise _UsageError(f"run {args.run_id} has no step named {args.step!r}")
        items = sorted(r.item for r in records if r.item >= 0)  # a batch: under its first item
        if args.item is None and items:
            raise _UsageError(
                f"step {args.step!r} is a map step with items {_items(items)}: pass --item N"
            )
        if args.item is not None and args.item not in items:
            raise _UsageError(
                f"step {args.step!r} of run {args.run_id} has no item {args.item}: "
                + (f"its items are {_items(items)}" if items else "it is not a map step (or mapped no items)")
            )
        text = store.logs(args.run_id, args.step, args.item)
    finally:
        store.close()
    sys.stdout.write(text)
    return OK


def _cmd_prune(args: "argparse.Namespace") -> int:
    if args.older_than is None and args.keep_last is None:
        raise _UsageError("prune needs --older-than DAYS and/or --keep-last N")
    store = _open(args.store, codec=args.codec)
    try:
        older = None if args.older_than is None else args.older_than * 86400.0
        n = store.prune(older_than=older, keep_last=args.keep_last)
    finally:
        store.close()
    print(f"deleted {n} run{'s' if n != 1 else ''}")
    return OK


def _cmd_report(args: "argparse.Namespace") -> int:
    store = _open(args.store, readonly=True, codec=args.codec)
    try:
        html = store.report(args.run_id)
    finally:
        store.close()
    path = args.output or f"report-{args.run_id}.html"
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(html)
    except OSError as exc:
        raise _UsageError(f"cannot write {path}: {exc.strerror}") from None
    print(path)
    return OK
