"""``runs``, ``show``, ``logs``, ``prune`` and ``report``: the runs a store
keeps, listed, read and deleted."""

import argparse
import sys

from .._cmdline import FAILED, OK, UsageError, no_step, positive, printable
from .._present import duration_text, item_label, limits_text, step_uses, task_order, uses_text, wait_text
from .._records import busy_time, key_value
from ._common import (
    color, dump, indented, jsonable, paint, preview,
    store_at, store_options, table, took, when,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from ..stores import Store, TaskRecord

#: ``show``: a run of more tasks than this is summarised unless --all; the rows and failures then listed.
SHOW_ALL, SHOW_FIRST, SHOW_FAILURES = 1000, 20, 100
#: ``show RUN STEP`` of a failed map step: the failed items whose errors are printed.
SHOW_ITEM_ERRORS = 3


def add_parser(sub: "Any", name: str, **options: "Any") -> None:
    """Command ``name`` on subparsers ``sub``."""
    p = sub.add_parser(name, **options)
    if name == "runs":
        store_options(p)
        p.add_argument("--flow", metavar="NAME", help="only runs of this flow")
        p.add_argument("--limit", type=positive, metavar="N", default=20, help="at most N runs (default: 20)")
        p.add_argument("--json", action="store_true", help="print a JSON list")
        p.set_defaults(handler=_cmd_runs)
    elif name == "show":
        p.add_argument("run_id", metavar="RUN_ID")
        p.add_argument(
            "step", metavar="STEP", nargs="?", help="print this step's whole output (as JSON when it is JSON)"
        )
        store_options(p)
        p.add_argument("--json", action="store_true", help="print one JSON document")
        p.add_argument(
            "--all", action="store_true",
            help=f"list every task of a run of more than {SHOW_ALL:,} (default: their counts, the failures and "
            f"the first {SHOW_FIRST})",
        )
        p.set_defaults(handler=_cmd_show)
    elif name == "logs":
        p.add_argument("run_id", metavar="RUN_ID")
        p.add_argument("step", metavar="STEP")
        p.add_argument("--item", type=int, metavar="N", help="item N of a map step")
        store_options(p)
        p.set_defaults(handler=_cmd_logs)
    elif name == "prune":
        store_options(p)
        p.add_argument("--older-than", type=_days, metavar="DAYS", help="runs started more than DAYS ago")
        p.add_argument("--keep-last", type=positive, metavar="N", help="keep the N newest runs of each flow")
        p.set_defaults(handler=_cmd_prune)
    else:
        p.add_argument("run_id", metavar="RUN_ID")
        store_options(p)
        p.add_argument("-o", "--output", metavar="FILE", help="default: report-RUN_ID.html")
        p.set_defaults(handler=_cmd_report)


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of days, not {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of days >= 0, not {text}")
    return value


def _cmd_runs(args: "argparse.Namespace") -> int:
    store = store_at(args.store, readonly=True, codec=args.codec)
    try:
        runs = store.list_runs(flow=args.flow, limit=args.limit)
    finally:
        store.close()
    if args.json:
        dump([
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
        rows.append([r.id, r.status, r.flow, when(r.started), duration_text(duration)])
    print(table(rows, [r.status for r in runs], color(sys.stdout)))
    return OK


def _decode(store: "Store", run_id: str, record: "TaskRecord", data: bytes) -> "Any":
    """``data``, the output of ``record``, decoded; a :class:`StoreError`
    naming it when the store's codec cannot decode it."""
    try:
        return store.decode(data)
    except Exception as exc:
        from ..stores import StoreError  # (the handler's: --help opens no store)

        of_item = f" (item {item_label(record)})" if record.item >= 0 else ""
        raise StoreError(
            f"the output of step {record.step!r}{of_item} of run {run_id} cannot be decoded with the "
            f"{store.codec} codec ({type(exc).__name__}: {exc}); it is damaged, or the store was written "
            "with another codec (--codec)"
        ) from None


def _cmd_show(args: "argparse.Namespace") -> int:
    store = store_at(args.store, readonly=True, codec=args.codec)
    try:
        info = store.run_info(args.run_id)
        counts: dict[str, int] = {}
        if args.step is None and not args.json and not args.all:
            counts, records = store.task_summary(args.run_id, SHOW_FIRST, SHOW_FAILURES)
            if sum(counts.values()) <= SHOW_ALL:
                counts = {}  # a run this small is listed whole
        if not counts:
            records = task_order(store.tasks(args.run_id))
        if args.step is not None:
            return _show_step(store, args, records)
        outputs = {
            n: _decode(store, args.run_id, r, r.output) for n, r in enumerate(records) if r.output is not None
        }
        added = store.added_by(args.run_id)
        uses = step_uses(info, store.added_steps(args.run_id) if added and info.limits is not None else ())
    finally:
        store.close()
    duration = None if info.finished is None else info.finished - info.started
    limits = info.limits
    if args.json:
        dump({
            "run_id": info.id,
            "flow": info.flow,
            "status": info.status,
            "started": info.started,
            "finished": info.finished,
            "duration": duration,
            "source": info.source,
            "inputs": jsonable(info.inputs),
            **({} if limits is None else {"pools": limits["pools"], "rates": limits["rates"]}),
            "tasks": [
                {
                    "step": r.step,
                    "item": None if r.item < 0 else r.item,
                    **({} if r.key is None else {"key": key_value(r.key)}),
                    "status": r.status,
                    "attempts": r.attempts,
                    "added_by": added.get(r.step),
                    "started": r.started,
                    "finished": r.finished,
                    "duration": None if r.started is None or r.finished is None else r.finished - r.started,
                    **({} if r.step not in uses else {"uses": uses[r.step]}),
                    **({} if r.waited is None else {"waited": r.waited}),
                    "error": None if r.error_type is None else {
                        "type": r.error_type, "message": r.error_message, "traceback": r.traceback,
                    },
                    **({"output": jsonable(outputs[n])} if n in outputs else {}),
                }
                for n, r in enumerate(records)
            ],
            "outputs": {r.step: jsonable(outputs[n]) for n, r in enumerate(records) if r.item < 0 and n in outputs},
        })
        return OK
    colored = color(sys.stdout)
    print(f"run {info.id} of {info.flow}: {paint(info.status, info.status, colored)}")
    busy = None if counts else busy_time((r.started, r.finished) for r in records if r.item < 0)
    print(f"  started {when(info.started)}, took {took(duration, busy)}")
    if info.source:
        print(f"  flow from {printable(info.source)}")
    if info.inputs:
        print("  inputs:")
        for key, value in info.inputs.items():
            print(f"    {printable(str(key))}: {preview(value)}")
    else:
        print("  inputs: none")
    if limits is not None:
        print(f"  {printable(limits_text(limits))}")
    if not records:
        return OK
    rows = [["STEP", "STATUS", "ATTEMPTS", "DURATION", "OUTPUT"]]
    if limits is not None:  # a run with pools or rates: what each step holds, how long it waited
        rows[0][4:4] = ["USES", "WAITED"]
    errors = []
    if counts:  # a big run: summarised
        tally = ", ".join(f"{c:,} {s}" for s, c in sorted(counts.items(), key=lambda sc: (-sc[1], sc[0])))
        print(f"  tasks: {sum(counts.values()):,} ({tally}); shown: the first {SHOW_FIRST} and up to "
              f"{SHOW_FAILURES} that failed or were cancelled (--all lists every one)")
    if added:
        print(f"  added steps: {len(added):,}, added by "
              + ", ".join(printable(by) for by in dict.fromkeys(added.values())))
    for n, r in enumerate(records):
        name = printable(r.step if r.item < 0 else f"{r.step}[{item_label(r)}]")
        if r.step in added:
            name += f" (added by {printable(added[r.step])})"
        spent = None if r.started is None or r.finished is None else r.finished - r.started
        output = preview(outputs[n], 60) if n in outputs else "-"
        rows.append([name, r.status, str(r.attempts), duration_text(spent), output])
        if limits is not None:
            rows[-1][4:4] = [printable(uses_text(uses.get(r.step))) or "-", wait_text(r.waited)]
        if r.error_type is not None:
            errors.append(indented(f"{name}: {r.error_type}: {r.error_message or ''}"))
    print()
    print(table(rows, [r.status for r in records], colored))
    if errors:
        print()
        print("errors:")
        print("\n".join(errors))
    return OK


def _show_step(store: "Store", args: "argparse.Namespace", records: "list[TaskRecord]") -> int:
    """``show RUN STEP``: the step's whole output, as JSON when it is JSON (always with ``--json``)."""
    import json  # (the command line's start: json loads with the command that uses it)

    record = next((r for r in records if r.step == args.step and r.item < 0), None)
    if record is None:
        raise UsageError(no_step(f"run {args.run_id}", args.step, list(dict.fromkeys(r.step for r in records))))
    if record.output is None and record.error_type is not None:
        return _show_error(args, record, [r for r in records if r.step == args.step and r.error_type is not None])
    if record.output is None:
        raise UsageError(f"step {args.step!r} of run {args.run_id} has no output: it is {record.status}")
    value = _decode(store, args.run_id, record, record.output)
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        text = json.dumps(repr(value), ensure_ascii=False) if args.json else repr(value)
    sys.stdout.write(text + "\n")
    return OK


def _show_error(args: "argparse.Namespace", record: "TaskRecord", failed: "list[TaskRecord]") -> int:
    """``show RUN STEP`` of a step that failed: its error and traceback (of a map
    step, each failed item's too); exit 1, as it has no output."""
    items = [r for r in failed if r.item >= 0]
    if args.json:
        dump({"step": record.step, "status": record.status, "attempts": record.attempts,
              "error": _error_document(record),
              "items": [{"item": r.item, **({} if r.key is None else {"key": key_value(r.key)}),
                         "error": _error_document(r)} for r in items]})
        return FAILED
    attempts = f" after {record.attempts} attempt{'s' if record.attempts != 1 else ''}" if record.attempts else ""
    print(f"step {printable(repr(record.step))} of run {args.run_id}: {record.status}{attempts}")
    print()
    sys.stdout.write(_error_text(record))
    for r in items[:SHOW_ITEM_ERRORS]:
        print()
        print(f"item {item_label(r)}:")
        sys.stdout.write(_error_text(r))
    if len(items) > SHOW_ITEM_ERRORS:
        print(f"\n... and {len(items) - SHOW_ITEM_ERRORS} more failed items (show --json lists every one)")
    return FAILED


def _error_document(r: "TaskRecord") -> "dict[str, Any]":
    return {"type": r.error_type, "message": r.error_message, "traceback": r.traceback}


def _error_text(r: "TaskRecord") -> str:
    """A task's error as kept: its traceback (the step's own frames), else its type and message."""
    text = r.traceback or f"{r.error_type}: {r.error_message or ''}"
    return "\n".join(map(printable, text.rstrip("\n").split("\n"))) + "\n"


def _items(numbers: "list[int]") -> str:
    """``0, 1, 2`` or, for many, ``0, 1, 2, ..., 99 (100 items)``."""
    if len(numbers) <= 8:
        return ", ".join(map(str, numbers))
    return f"{', '.join(map(str, numbers[:3]))}, ..., {numbers[-1]} ({len(numbers)} items)"


def _cmd_logs(args: "argparse.Namespace") -> int:
    store = store_at(args.store, readonly=True, codec=args.codec)
    try:
        every = store.tasks(args.run_id, outputs=False)
        records = [r for r in every if r.step == args.step]
        if not records:
            raise UsageError(no_step(f"run {args.run_id}", args.step, list(dict.fromkeys(r.step for r in every))))
        items = sorted(r.item for r in records if r.item >= 0)  # a batch: under its first item
        if args.item is None and items:
            raise UsageError(
                f"step {args.step!r} is a map step with items {_items(items)}: pass --item N"
            )
        if args.item is not None and args.item not in items:
            raise UsageError(
                f"step {args.step!r} of run {args.run_id} has no item {args.item}: "
                + (f"its items are {_items(items)}" if items else "it is not a map step (or mapped no items)")
            )
        text = store.logs(args.run_id, args.step, args.item)
    finally:
        store.close()
    sys.stdout.write(text)
    item = -1 if args.item is None else args.item
    failed = next((r for r in records if r.item == item and r.error_type is not None), None)
    if failed is not None:  # what it printed, then how it ended
        if text and not text.endswith("\n"):
            sys.stdout.write("\n")
        attempt = f" on attempt {failed.attempts}" if failed.attempts else ""
        sys.stdout.write(f"[{failed.status}{attempt}]\n" + _error_text(failed))
    return OK


def _cmd_prune(args: "argparse.Namespace") -> int:
    if args.older_than is None and args.keep_last is None:
        raise UsageError("prune needs --older-than DAYS and/or --keep-last N")
    store = store_at(args.store, codec=args.codec)
    try:
        older = None if args.older_than is None else args.older_than * 86400.0
        n = store.prune(older_than=older, keep_last=args.keep_last)
    finally:
        store.close()
    print(f"deleted {n} run{'s' if n != 1 else ''}")
    return OK


def _cmd_report(args: "argparse.Namespace") -> int:
    store = store_at(args.store, readonly=True, codec=args.codec)
    try:
        html = store.report(args.run_id)
    finally:
        store.close()
    path = args.output or f"report-{args.run_id}.html"
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(html)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    print(path)
    return OK