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
    from .stores import Store

#: Where ``run`` keeps its runs when no ``--store`` is given, and where the
#: other commands look for them.
DEFAULT_STORE = os.path.join(".microdag", "runs.db")

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130

COMMANDS = ("run", "resume", "step", "validate", "graph", "runs", "show", "logs", "prune", "report")

_COLORS = {"succeeded": "32", "failed": "31", "cancelled": "33", "skipped": "2", "running": "36"}


class _UsageError(Exception):
    """Bad input from the command line: the message is printed, exit code 2."""


def _version() -> str:
    from ._compat import TWIN
    from ._version import __version__

    return f"microdag {__version__} (scheduler: {TWIN})"


# -- the parser ---------------------------------------------------------------------------


class _Unused:
    """Stands in for the parsers of the commands not being run: building every
    command's arguments would cost more than most commands take."""

    def add_argument(self, *args: "Any", **kwargs: "Any") -> None:
        return None


def _width() -> int:
    """The help's width, as ``shutil.get_terminal_size`` gives it to argparse
    (whose default imports :mod:`shutil` and, with it, a few compression
    modules: several milliseconds of a command's start)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns or 80) - 2


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
            choices=("inline", "threads", "processes"),
            default="inline",
            help="where steps run (default: inline)",
        )
        p.add_argument("--workers", type=_positive, metavar="N", help="parallel steps at most")
        p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
        p.add_argument("--json", action="store_true", help="print one JSON document describing the run")

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

    p = command("step", "run one step on the outputs of a stored run; print its output as JSON")
    p.add_argument("flow", metavar="FLOW")
    p.add_argument("step", metavar="STEP")
    p.add_argument("--from-run", metavar="RUN_ID", required=True, help="take inputs and dependency outputs from this run")
    store_option(p)
    input_options(p)

    p = command("validate", "check a flow without running it")
    p.add_argument("flow", metavar="FLOW")

    p = command("graph", "print a flow's graph")
    p.add_argument("flow", metavar="FLOW")
    p.add_argument("--format", "-f", choices=("dot", "mermaid", "json"), default="dot", help="default: dot")

    p = command("runs", "list stored runs, newest first")
    store_option(p)
    p.add_argument("--flow", metavar="NAME", help="only runs of this flow")
    p.add_argument("--limit", type=_positive, metavar="N", default=20, help="at most N runs (default: 20)")
    p.add_argument("--json", action="store_true", help="print a JSON list")

    p = command("show", "show a stored run: each step's status, attempts, duration and error")
    p.add_argument("run_id", metavar="RUN_ID")
    store_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")

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
    return parser


def _positive(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, not {value}")
    return value


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
            print(f"  {problem}", file=sys.stderr)
    else:
        print(f"error: {exc}", file=sys.stderr)


# -- helpers ----------------------------------------------------------------------------------


def _load(spec: str) -> "Flow":
    from ._spec import load_flow

    flow = load_flow(spec)
    flow.validate()  # a Flow object from Python is checked here, before anything runs
    return flow


def _open(spec: "str | None", create: bool = False, readonly: bool = False) -> "Store":
    """The store of ``--store`` (default: ``.microdag/runs.db``); the reading
    commands open it read-only, so that they work where it cannot be written."""
    from .stores import StoreError, open_store

    if spec is None:
        spec = DEFAULT_STORE
        if create:
            os.makedirs(os.path.dirname(spec), exist_ok=True)
        elif not os.path.exists(spec):
            raise StoreError(f"no store at {spec} (run a flow here first, or pass --store)")
    elif not create and spec != "memory" and not os.path.exists(spec.partition(":")[2] or spec):
        raise StoreError(f"no store at {spec}")
    try:
        return open_store(spec, readonly=readonly)
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


def _first_line(text: "str | None") -> str:
    return "" if not text else text.strip().splitlines()[0] if text.strip() else ""


# -- progress ---------------------------------------------------------------------------------


class _Progress:
    """Reports a run on stderr as it goes.

    On a terminal: one line rewritten in place (steps done, running, failed,
    elapsed, ETA), refreshed by a daemon thread every 0.2 s.  Elsewhere: one
    plain line per finished step.  Quiet: nothing.
    """

    def __init__(self, total: int, done: int, quiet: bool, stream: "TextIO | None" = None) -> None:
        import threading
        import time

        self.stream = stream or sys.stderr
        self.total = total
        self.run_id: str | None = None  # from the run's first event
        self.done = done
        self.running = 0
        self.failed = 0
        self.quiet = quiet
        self.live = not quiet and self.stream.isatty()
        self.color = _color(self.stream)
        self.start = time.monotonic()
        self.clock = time.monotonic
        self.lock = threading.Lock()
        self.width = 0
        self.stopped = threading.Event()
        if self.live:
            threading.Thread(target=self._tick, name="microdag-progress", daemon=True).start()

    def __call__(self, event: "Any") -> None:
        kind = event.kind
        self.run_id = event.run_id
        with self.lock:
            if kind == "step_started":
                if event.attempt == 1:
                    self.running += 1
            elif kind == "step_finished":
                if event.attempt:  # it had started
                    self.running = max(0, self.running - 1)
                self.done += 1
                if event.status == "failed":
                    self.failed += 1
                if not self.live and not self.quiet:
                    self._plain(event)
            else:
                return
            if self.live:
                self._draw()

    def _plain(self, event: "Any") -> None:
        status = _paint(event.status, event.status, self.color)
        line = f"[{self.done}/{self.total}] {event.step}: {status}"
        if event.duration is not None and event.status in ("succeeded", "failed"):
            line += f" in {_seconds(event.duration)}"
        if event.attempt and event.attempt > 1:
            line += f" (attempt {event.attempt})"
        if event.error is not None:
            line += f": {type(event.error).__name__}: {_first_line(str(event.error))}"
        print(line, file=self.stream, flush=True)

    def _draw(self) -> None:
        elapsed = self.clock() - self.start
        eta = ""
        if 0 < self.done < self.total:
            eta = f", ETA {_seconds(elapsed / self.done * (self.total - self.done))}"
        failed = f", {self.failed} failed" if self.failed else ""
        text = (
            f"{self.done}/{self.total} steps done, {self.running} running{failed}, "
            f"{_seconds(elapsed)}{eta}"
        )
        pad = " " * max(0, self.width - len(text))
        self.width = len(text)
        self.stream.write("\r" + text + pad)
        self.stream.flush()

    def _tick(self) -> None:
        while not self.stopped.wait(0.2):
            with self.lock:
                self._draw()

    def close(self) -> None:
        self.stopped.set()
        if self.live:
            with self.lock:
                self.stream.write("\r" + " " * self.width + "\r")
                self.stream.flush()


def _report_run(run: "Run", store_spec: str, args: "argparse.Namespace") -> int:
    """The end of ``run``/``resume``: summary or JSON document; the exit code."""
    failed = [t for t in run.tasks.values() if t.status == "failed"]
    if args.json:
        _dump(_run_document(run, store_spec))
    elif not args.quiet or run.status != "succeeded":
        color = _color(sys.stderr)
        status = _paint(run.status, run.status, color)
        print(
            f"run {run.id} of {run.flow}: {status} in {_seconds(run.duration)} "
            f"({len(run.tasks)} steps)",
            file=sys.stderr,
        )
        for task in failed:
            err = task.error
            print(f"  {task.name}: {type(err).__name__}: {_first_line(str(err))}", file=sys.stderr)
        if run.status != "succeeded" and store_spec != "memory":
            hint = "" if store_spec == DEFAULT_STORE else f" --store {store_spec}"
            print(f"  resume with: python -m microdag resume {run.id}{hint}", file=sys.stderr)
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


def _execute(flow: "Flow", args: "argparse.Namespace", store: "Store", store_spec: str, **options: "Any") -> int:
    """Run (or resume) ``flow`` with progress; Ctrl-C ends it cancelled, exit 130."""
    if options.get("resume"):
        done = len(store.succeeded(options["run_id"]))
        total = len(flow)
    else:
        done = 0
        targets = options.get("targets")
        total = len(flow.graph.ancestors(targets)) if targets else len(flow)
    progress = _Progress(total, done, args.quiet or args.json)
    try:
        run = flow.run(
            executor=args.executor,
            max_workers=args.workers,
            store=store,
            hooks=[progress],
            raise_on_failure=False,
            **options,
        )
    except KeyboardInterrupt:
        progress.close()
        run_id = progress.run_id
        if run_id is None:
            print("interrupted before the run started", file=sys.stderr)
            return INTERRUPTED
        hint = "" if store_spec == DEFAULT_STORE else f" --store {store_spec}"
        print(f"interrupted: run {run_id} is recorded as cancelled", file=sys.stderr)
        if store_spec != "memory":
            print(f"  resume with: python -m microdag resume {run_id}{hint}", file=sys.stderr)
        return INTERRUPTED
    progress.close()
    return _report_run(run, store_spec, args)


# -- commands ---------------------------------------------------------------------------------


def _cmd_run(args: "argparse.Namespace") -> int:
    inputs = _parse_inputs(args.input, args.inputs)
    flow = _load(args.flow)
    store_spec = args.store or DEFAULT_STORE
    store = _open(args.store, create=True)
    try:
        return _execute(
            flow, args, store, store_spec,
            inputs=inputs, run_id=args.run_id, targets=args.target, on_failure=args.on_failure,
        )
    finally:
        store.close()


def _cmd_resume(args: "argparse.Namespace") -> int:
    store_spec = args.store or DEFAULT_STORE
    store = _open(args.store)
    try:
        info = store.run_info(args.run_id)
        spec = args.flow or info.source
        if spec is None:
            raise _UsageError(
                f"run {args.run_id} does not record which flow it ran (it was started from "
                "Python); name it: python -m microdag resume RUN_ID FLOW"
            )
        flow = _load(spec)
        return _execute(flow, args, store, store_spec, run_id=args.run_id, resume=True, force=args.force)
    finally:
        store.close()


def _cmd_step(args: "argparse.Namespace") -> int:
    import json
    import traceback

    flow = _load(args.flow)
    if args.step not in flow:
        raise _UsageError(f"flow {flow.name!r} has no step named {args.step!r}")
    store = _open(args.store)
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
    sys.stdout.write(text + "\n")
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
        _dump(graph.to_json())
        return OK
    text = graph.to_mermaid() if args.format == "mermaid" else graph.to_dot(name=flow.name)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return OK


def _cmd_runs(args: "argparse.Namespace") -> int:
    store = _open(args.store, readonly=True)
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


def _cmd_show(args: "argparse.Namespace") -> int:
    store = _open(args.store, readonly=True)
    try:
        info = store.run_info(args.run_id)
        records = store.tasks(args.run_id, outputs=False)
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
                }
                for r in records
            ],
        })
        return OK
    color = _color(sys.stdout)
    print(f"run {info.id} of {info.flow}: {_paint(info.status, info.status, color)}")
    print(f"  started {_when(info.started)}, took {_seconds(duration)}")
    if info.source:
        print(f"  flow from {info.source}")
    if info.inputs:
        import json

        print(f"  inputs {json.dumps(_jsonable(info.inputs), ensure_ascii=False)}")
    if not records:
        return OK
    rows = [["STEP", "STATUS", "ATTEMPTS", "DURATION", "ERROR"]]
    for r in records:
        name = r.step if r.item < 0 else f"{r.step}[{r.item}]"
        took = None if r.started is None or r.finished is None else r.finished - r.started
        error = "" if r.error_type is None else f"{r.error_type}: {_first_line(r.error_message)}"
        rows.append([name, r.status, str(r.attempts), _seconds(took), error])
    print()
    print(_table(rows, [r.status for r in records], color))
    return OK


def _cmd_logs(args: "argparse.Namespace") -> int:
    store = _open(args.store, readonly=True)
    try:
        if not any(r.step == args.step for r in store.tasks(args.run_id, outputs=False)):
            raise _UsageError(f"run {args.run_id} has no step named {args.step!r}")
        text = store.logs(args.run_id, args.step, args.item)
    finally:
        store.close()
    sys.stdout.write(text)
    return OK


def _cmd_prune(args: "argparse.Namespace") -> int:
    if args.older_than is None and args.keep_last is None:
        raise _UsageError("prune needs --older-than DAYS and/or --keep-last N")
    store = _open(args.store)
    try:
        older = None if args.older_than is None else args.older_than * 86400.0
        n = store.prune(older_than=older, keep_last=args.keep_last)
    finally:
        store.close()
    print(f"deleted {n} run{'s' if n != 1 else ''}")
    return OK


def _cmd_report(args: "argparse.Namespace") -> int:
    store = _open(args.store, readonly=True)
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
