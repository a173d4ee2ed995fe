"""``run`` and ``resume``: a flow run with progress on stderr, its summary,
and the outputs of its final steps."""

import argparse
import os
import sys

from .._cmdline import FAILED, INTERRUPTED, OK, UsageError, input_option, load, no_step, parse_inputs, positive, printable
from ._common import (
    DEFAULT_STORE, color, dump, indented, jsonable, paint, preview, store_at, store_options,
    took, typed_inputs,
)
from ._progress import Progress

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from .._flow import Flow
    from .._result import Run
    from ..stores import Store


def add_parser(sub: "Any", name: str, **options: "Any") -> None:
    """Command ``name`` (``run`` or ``resume``) on subparsers ``sub``."""
    p = sub.add_parser(name, **options)
    if name == "run":
        p.add_argument("flow", metavar="FLOW")
        input_option(p)
        p.add_argument("--inputs", metavar="FILE.json", help="flow inputs from a JSON object (--input overrides)")
        _run_options(p)
        store_options(p)
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
        p.set_defaults(handler=_cmd_run)
    else:
        p.add_argument("run_id", metavar="RUN_ID")
        p.add_argument("flow", metavar="FLOW", nargs="?", help="default: the flow the run was started from")
        _run_options(p)
        store_options(p)
        p.add_argument(
            "--force", action="store_true", help="resume even if the flow changed or the run seems live elsewhere"
        )
        p.set_defaults(handler=_cmd_resume)


def _run_options(p: "argparse.ArgumentParser") -> None:
    p.add_argument(
        "--executor",
        type=_executor,
        default="inline",
        metavar="{inline,threads,processes,workers,dask,dask://HOST:PORT}",
        help="where steps run (default: inline); workers: by `python -m microdag worker` processes sharing "
        "--store, and this one (docs/workers.md); dask: a Dask cluster of worker processes on this "
        "machine, dask://HOST:PORT: the Dask cluster of the scheduler there (docs/distributed.md)",
    )
    p.add_argument(
        "--lease", type=float, default=None, metavar="SECONDS",
        help="--executor workers: the run's lease: seconds every worker's claim of one of its steps holds without "
        "a heartbeat: a worker that dies loses the step after that (default: each worker's --lease, 30)",
    )
    p.add_argument(
        "--workers", type=positive, metavar="N",
        help="parallel steps at most (--executor dask: the cluster's worker processes)",
    )
    p.add_argument(
        "--pool", type=_pool, action="append", default=[], metavar="NAME=N",
        help="a resource pool of N units: its steps (uses = NAME) hold at most N at once; repeatable "
        "(adds to the flow file's [pools], or changes a size)",
    )
    p.add_argument(
        "--rate", type=_rate, action="append", default=[], metavar="NAME=RATE",
        help="a rate limit, e.g. api=10/s, 600/min, 5/h, '10/s burst 5': every attempt of its steps takes a "
        "token; repeatable (adds to the flow file's [rates])",
    )
    p.add_argument(
        "--quiet", "-q", action="store_true", help="print no progress, summary or outputs unless the run fails"
    )
    p.add_argument("--json", action="store_true", help="print one JSON document describing the run")
    p.add_argument(
        "--echo", "-v", action="store_true",
        help="show what steps print and log as they run (it is kept in the store all the same: see logs)",
    )
    p.add_argument(
        "--otel", action="store_true",
        help="trace the run with OpenTelemetry, exported as the OTEL_* variables say (docs/observability.md)",
    )


def _pool(text: str) -> "tuple[str, int]":
    name, _, size = text.partition("=")
    if not name or not size.isdigit() or int(size) < 1:
        raise argparse.ArgumentTypeError(f"expected NAME=N, N an integer >= 1, not {text!r}")
    return name, int(size)


def _rate(text: str) -> "tuple[str, str]":
    from ..runner._limits import parse_rate  # (the rule's home; --rate only)

    name, _, rate = text.partition("=")
    try:
        if not name:
            raise ValueError(f"expected NAME=RATE, not {text!r}")
        parse_rate(rate)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name, rate


def _executor(text: str) -> str:
    if text in ("inline", "threads", "processes", "workers", "dask") or (text.startswith("dask://") and len(text) > 7):
        return text
    raise argparse.ArgumentTypeError(
        f"invalid choice: {text!r} (choose from inline, threads, processes, workers, dask, dask://HOST:PORT)")


def _resume_hint(run_id: str, store_spec: str, args: "argparse.Namespace", command: str = "resume",
                 step: "str | None" = None) -> str:
    """The command that resumes run ``run_id`` (or runs another ``command`` on it, for
    ``step``): it needs the store and codec it was run with."""
    import shlex  # (the command line's start: shlex loads with the command that uses it)

    hint = f"python -m microdag {command} {shlex.quote(run_id)}"
    dashed = step is not None and step.startswith("-")  # (then after the options and --)
    if step is not None and not dashed:
        hint += f" {shlex.quote(step)}"
    if command == "resume" and getattr(args, "executor", None) == "workers":  # (a run shared with workers)
        hint += " --executor workers"
    if store_spec != DEFAULT_STORE:
        hint += f" --store {shlex.quote(store_spec)}"
    if getattr(args, "codec", None) is not None:
        hint += f" --codec {args.codec}"
    if step is not None and dashed:
        hint += f" -- {shlex.quote(step)}"
    return hint


def _report_run(run: "Run", store_spec: str, args: "argparse.Namespace") -> int:
    """The end of ``run``/``resume``: a summary on stderr and the outputs of the
    final steps on stdout, or one JSON document; the exit code."""
    from .._result import busy_seconds, failed_tasks, status_counts  # (the handler's: run --help loads no results)

    failed = failed_tasks(run) if run.status != "succeeded" else []
    if args.json:
        dump(_run_document(run, store_spec))
    elif not args.quiet or run.status != "succeeded":
        colored = color(sys.stderr)
        status = paint(run.status, run.status, colored)
        counts = status_counts(run)
        order = ["succeeded", "failed", "skipped", "cancelled", "pending"]
        order += sorted(set(counts) - set(order))
        steps = f"{sum(counts.values())} step{'s' if sum(counts.values()) != 1 else ''}"
        tally = ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s))
        print(
            f"run {run.id} of {run.flow}: {status} in {took(run.duration, busy_seconds(run))} "
            f"({steps}{': ' + tally if tally else ''})",
            file=sys.stderr,
        )
        for task in failed:
            err = task.error
            print(indented(f"{printable(task.name)}: {type(err).__name__}: {err}"), file=sys.stderr)
        if run.status != "succeeded" and store_spec != "memory":
            if failed:
                print(f"  its traceback: {_resume_hint(run.id, store_spec, args, 'show', failed[0].name)}",
                      file=sys.stderr)
            print(f"  resume with: {_resume_hint(run.id, store_spec, args)}", file=sys.stderr)
        if not args.quiet and len(run.outputs):
            sys.stderr.flush()  # before the outputs, where both are one terminal
            lines = ["outputs:"]
            lines.extend(f"  {printable(name)}: {preview(value)}" for name, value in run.outputs.items())
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
        "inputs": jsonable(run.inputs),
        "steps": steps,
        "outputs": {name: jsonable(value) for name, value in run.outputs.items()},
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
        from ..otel import Tracing, provider_from_environment  # (--otel only)

        try:
            provider = provider_from_environment()
        except RuntimeError as exc:
            raise UsageError(f"--otel: {exc}") from None
        hooks.append(Tracing(provider))
    if args.pool:
        options["pools"] = dict(args.pool)
    if args.rate:
        options["rates"] = dict(args.rate)
    progress = Progress(total, done, args.quiet or args.json, live=False if args.echo else None)
    hooks.append(progress)
    echo = os.environ.get("MICRODAG_ECHO")
    if args.echo:  # (the capture reads it, here and in worker processes, which inherit it)
        os.environ["MICRODAG_ECHO"] = "1"
    try:
        if args.executor.startswith("dask"):
            run = _run_on_dask(flow, args, store, hooks, options)
        else:
            if args.executor == "workers":
                options["lease"] = args.lease
            elif args.lease is not None:
                raise UsageError("--lease goes with --executor workers")
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
        if args.echo:
            if echo is None:
                os.environ.pop("MICRODAG_ECHO", None)
            else:
                os.environ["MICRODAG_ECHO"] = echo
        if provider is not None:
            provider.shutdown()  # (exports what is left)
    progress.close()
    return _report_run(run, store_spec, args)


def _no_step(flow: "Flow", name: str, option: str) -> str:
    """``option NAME`` names no step of ``flow``."""
    return f"{option} {printable(name)}: " + no_step(f"flow {printable(flow.name)!r}", name, flow.steps)


def _run_on_dask(flow: "Flow", args: "argparse.Namespace", store: "Store", hooks: "list[Any]",
                 options: "dict[str, Any]") -> "Run":
    """``--executor dask`` (a cluster on this machine, ``--workers`` processes)
    or ``dask://HOST:PORT`` (a running scheduler; ``--workers`` bounds the steps;
    the functions of a ``.py`` flow travel with its tasks, by value)."""
    from ..pools.dask import connect  # (--dask only: an optional extra)

    local = args.executor == "dask"
    try:
        cluster = connect(args.executor, workers=args.workers if local else None)
        client = cluster.__enter__()
    except (ImportError, OSError) as exc:
        raise UsageError(str(exc)) from None
    if not local and args.flow.endswith(".py"):  # (its workers cannot import a file of this machine)
        import cloudpickle  # (cloudpickle: an optional extra)

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


def flow_to_run(args: "argparse.Namespace") -> "tuple[Flow, dict[str, Any]]":
    """The flow of ``FLOW`` with its inputs (``--input``, ``--inputs``), its
    ``--target`` steps checked: what ``run`` and ``submit`` start."""
    inputs = parse_inputs(args.input, args.inputs)
    flow = load(args.flow, inputs)
    inputs = typed_inputs(flow, args.input, inputs)
    for target in args.target or ():
        if target not in flow:
            raise UsageError(_no_step(flow, target, "--target"))
    return flow, inputs


def _cmd_run(args: "argparse.Namespace") -> int:
    flow, inputs = flow_to_run(args)
    store_spec = args.store or DEFAULT_STORE
    store = store_at(args.store, create=True, codec=args.codec)
    try:
        return _execute(
            flow, args, store, store_spec,
            inputs=inputs, run_id=args.run_id, targets=args.target, on_failure=args.on_failure,
        )
    finally:
        store.close()


def _cmd_resume(args: "argparse.Namespace") -> int:
    store_spec = args.store or DEFAULT_STORE
    store = store_at(args.store, codec=args.codec)
    try:
        info = store.run_info(args.run_id)
        spec = args.flow or info.source
        if spec is None:
            raise UsageError(
                f"run {args.run_id} does not record which flow it ran (it was started from "
                "Python); name it: python -m microdag resume RUN_ID FLOW"
            )
        done = store.succeeded_count(args.run_id)
        if not (args.quiet or args.json):  # (a big flow takes a while to load: say what is going on first)
            items = store.task_summary(args.run_id, 0, 0)[0].get("succeeded", 0) - done  # (records of map items)
            also = f" and {items:,} map item{'s' if items != 1 else ''}" if items > 0 else ""
            print(f"resuming run {args.run_id} of {printable(info.flow)}: {done:,} step{'s' if done != 1 else ''}"
                  f"{also} succeeded before; loading {printable(spec)}", file=sys.stderr, flush=True)
        flow = load(spec, info.inputs)
        return _execute(flow, args, store, store_spec, done, run_id=args.run_id, resume=True, force=args.force)
    finally:
        store.close()
