"""``step``: one step run on the outputs of a stored run (``--from-run``),
or, as ``--run-dir``, one task of a run kept in a folder: the older spelling
of the pods' command, ``pod`` (:mod:`microdag._pod`).

A step whose name starts with ``-`` is given after ``--``, as any positional
argument: ``step FLOW --from-run RUN -- -h``.
"""

import sys

from .._cmdline import FAILED, OK, UsageError, input_option, load, no_step, parse_inputs, printable
from .._pod import command, task_options
from ._common import store_at, store_options

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any


def add_parser(sub: "Any", name: str, **options: "Any") -> None:
    """Command ``step`` on subparsers ``sub``."""
    p = sub.add_parser(name, **options)
    p.add_argument("flow", metavar="FLOW")
    p.add_argument("step", metavar="STEP")
    p.add_argument("--from-run", metavar="RUN_ID", help="take inputs and dependency outputs from this stored run")
    p.add_argument(
        "-o", "--output", metavar="FILE",
        help="with --from-run: write the output's JSON to FILE instead of stdout (what the step prints stays there)",
    )
    store_options(p)
    input_option(p)
    p.add_argument(
        "--run-dir",
        metavar="DIR",
        help="read the outputs of the step's dependencies from DIR/outputs and write the step's own there; "
        "exit 0 when it succeeded or skipped itself, 1 when it failed (docs/argo.md)",
    )
    task_options(p, "with --run-dir: ")
    p.set_defaults(handler=_cmd_step)


def _cmd_step(args: "argparse.Namespace") -> int:
    import json  # (the command line's start: json loads with the command that uses it)
    import traceback  # (the command line's start: traceback loads with the command that uses it)

    if (args.from_run is None) == (args.run_dir is None):
        raise UsageError("step needs --from-run RUN_ID (a stored run) or --run-dir DIR (a run folder), not both")
    if args.run_dir is not None:
        if args.output is not None:
            raise UsageError("--output goes with --from-run (with --run-dir, the output is kept in the folder)")
        return _step_in_folder(args)
    folder_only = [
        option for option, given in (
            ("--run-id", args.run_id is not None), ("--retry", args.retry != 0), ("--item", args.item is not None),
            ("--plan", args.plan), ("--gather", args.gather), ("--max-output", args.max_output is not None),
        ) if given
    ]
    if folder_only:
        raise UsageError(f"{', '.join(folder_only)} go{'es' if len(folder_only) == 1 else ''} with --run-dir")
    flow = load(args.flow, None)  # (the inputs are the stored run's)
    if args.step not in flow:
        raise UsageError(no_step(f"flow {printable(flow.name)!r}", args.step, flow.steps))
    store = store_at(args.store, codec=args.codec)
    try:
        inputs = parse_inputs(args.input)
        store.run_info(args.from_run)  # an unknown run is a usage error, before the step runs
        try:
            output = flow.run_step(args.step, inputs, from_run=args.from_run, store=store)
        except Exception as exc:
            from .._errors import FlowError  # (the handler's: step --help loads no _errors)

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
        converter = flow._compiled().typed_outputs()[0].get(args.step)  # a typed value: as its annotation keeps it
        try:
            if converter is None:
                raise ValueError(args.step)
            text = json.dumps(converter.dump(output), indent=2, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):
            text = json.dumps(repr(output))
    if args.output is None:
        sys.stdout.write(text + "\n")
        return OK
    try:
        with open(args.output, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text + "\n")
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    return OK


def _step_in_folder(args: "argparse.Namespace") -> int:
    """``step --run-dir DIR``: one task of a run kept in a folder, as ``pod`` runs it."""
    if args.store is not None or args.codec is not None:
        raise UsageError("--store and --codec go with --from-run, not --run-dir")
    return command(args)
