"""One task of a run kept in a folder: what each pod of an exported Argo
workflow runs (``python -m microdag pod``, a hidden command this module owns;
``step FLOW STEP --run-dir DIR`` is its older spelling).

The run folder.  ``DIR/outputs/KEY.json`` holds what a step ended with (its
*envelope*: ``{"status": "succeeded", "output": ...}``, ``{"status":
"skipped", "reason": ...}`` or ``{"status": "failed", "error": ...}``), where
KEY is the step's name made into a file name (:func:`file_key`: short and
ASCII whatever the name); ``DIR/work`` is the run's working folder
(``microdag.context().run_dir``).  :func:`run_task` reads the envelopes of the
step's dependencies, runs the step's own code (a step, or for a map step its
plan, one unit, or the gathering of its units' results) and writes the step's
envelope.

The command line.  Every value the pod is given travels as ``--option=VALUE``
in one argument (``--flow=``, ``--step=``, ``--run-dir=``, ``--input=``), so
that no flow's text, a step named ``-h`` or ``--plan`` say, can ever be read
as an option; a task's role (``--plan``, ``--item N``, ``--gather``) is one of
a mutually exclusive group that argparse checks.
"""

import os
import sys
import time

from ._cmdline import UsageError, input_option, load, no_step, parse_inputs, positive, printable, unit, whole

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping
    from typing import Any

    from ._flow import Flow
    from ._plan import _Plan

__all__ = ["file_key", "run_task"]

#: The longest file key that is the step's name itself (or its percent-encoding);
#: a longer one is a digest, so that a key and its suffixes fit in a file name.
KEY_LIMIT = 100


def file_key(name: str) -> str:
    """Step ``name`` as a file name: itself when made of letters, digits, ``-``
    and ``_``, else percent-encoded (``.`` and ``/`` included), so that distinct
    names get distinct files and none leaves the folder.  A key that would be
    longer than :data:`KEY_LIMIT` characters (a long name, or a short one in
    another script: 30 CJK characters encode to 270) is the name's first ASCII
    letters, digits, ``-`` and ``_`` (at most 32), ``=`` and 32 hex digits of
    the SHA-256 of its UTF-8: no other key holds a ``=``."""
    if name and len(name) <= KEY_LIMIT and all(c.isascii() and (c.isalnum() or c in "-_") for c in name):
        return name
    from urllib.parse import quote  # (import time: urllib.parse loads on first use)

    key = quote(name, safe="-_", errors="surrogatepass").replace(".", "%2E")
    if len(key) <= KEY_LIMIT:
        return key
    from ._compat import sha256  # (step --help reads this module's options: it loads no kernel nor store)

    start = "".join(c for c in name if c.isascii() and (c.isalnum() or c in "-_"))[:32]
    return f"{start}={sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}"


# -- the pods' command line -----------------------------------------------------------------


def add_parser(sub: "Any", name: str, **options: "Any") -> None:
    """The hidden command ``pod`` on subparsers ``sub`` (``microdag.cli``'s table)."""
    options.setdefault(
        "description", "Run one task of a run kept in a folder, as the pods of an exported Argo workflow do "
        "(docs/argo.md). Give every value as --option=VALUE."
    )
    p = sub.add_parser(name, **options)
    p.add_argument("--flow", required=True, metavar="SPEC", help="the flow (a file, or module:attr)")
    p.add_argument("--step", required=True, metavar="NAME", help="the step")
    p.add_argument(
        "--run-dir", required=True, metavar="DIR",
        help="read the outputs of the step's dependencies from DIR/outputs and write the step's own there; "
        "exit 0 when it succeeded or skipped itself, 1 when it failed",
    )
    task_options(p)
    input_option(p)
    p.set_defaults(handler=command)


def task_options(p: "argparse.ArgumentParser", prefix: str = "") -> None:
    """The options of one task of a run folder on parser ``p`` (each help
    starting with ``prefix``); its role is one of a mutually exclusive group."""
    p.add_argument("--run-id", metavar="ID", help=f"{prefix}the run's id (default: the folder's name)")
    p.add_argument(
        "--retry", type=whole, metavar="N", default=0,
        help=f"{prefix}the attempts before this one (Argo's {{{{retries}}}}; default: 0)",
    )
    role = p.add_mutually_exclusive_group()
    role.add_argument("--item", type=unit, metavar="N", help=f"{prefix}run unit N of a map step (-1: none)")
    role.add_argument("--plan", action="store_true", help=f"{prefix}write the units a map step runs")
    role.add_argument("--gather", action="store_true", help=f"{prefix}a map step's output, from its units")
    p.add_argument(
        "--max-output", type=positive, metavar="BYTES",
        help=f"{prefix}fail when the output takes more bytes of JSON (Argo parameters are limited)",
    )


def command(args: "argparse.Namespace") -> int:
    """The handler of ``pod`` (and of ``step --run-dir``): :func:`run_task` on
    the parsed arguments."""
    inputs = parse_inputs(args.input)
    flow = load(args.flow, None)  # (checked at export; the inputs are the workflow's)
    if args.step not in flow:
        raise UsageError(no_step(f"flow {printable(flow.name)!r}", args.step, flow.steps))
    role = "plan" if args.plan else "gather" if args.gather else "unit" if args.item is not None else "step"
    return run_task(
        flow, args.step, args.run_dir, run_id=args.run_id, inputs=inputs, retry=args.retry, item=args.item,
        role=role, max_output=args.max_output,
    )


class _Failed(Exception):
    """The task failed: its message is printed, its envelope says failed, exit 1."""


class _Folder:
    """A run folder: ``outputs/`` (one envelope per step) and ``work/``."""

    def __init__(self, run_dir: str) -> None:
        self.root = run_dir
        self.outputs = os.path.join(run_dir, "outputs")
        self.work = os.path.join(run_dir, "work")

    def path(self, step: str, suffix: str = ".json") -> str:
        return os.path.join(self.outputs, file_key(step) + suffix)

    def read(self, path: str) -> "Any":
        """The JSON document at ``path``, or ``None`` when there is none."""
        import json  # (import time: json loads on first use)

        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise _Failed(f"{path} cannot be read as JSON: {exc}") from None

    def envelope(self, step: str) -> "dict[str, Any] | None":
        value = self.read(self.path(step))
        if value is not None and not (isinstance(value, dict) and isinstance(value.get("status"), str)):
            raise _Failed(f"{self.path(step)} does not hold what a step ended with")
        return value

    def write(self, path: str, text: str) -> None:
        """Write ``text`` to ``path`` whole (a reader never sees half of it)."""
        # (step --help reads this module's options: it loads no kernel nor store)
        from .stores._files import write_atomic

        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomic(path, text.encode("utf-8"))


def run_task(
    flow: "Flow",
    name: str,
    run_dir: str,
    *,
    run_id: "str | None" = None,
    inputs: "Mapping[str, Any] | None" = None,
    retry: int = 0,
    item: "int | None" = None,
    role: str = "step",
    max_output: "int | None" = None,
) -> int:
    """Run step ``name`` of ``flow`` as one task of a run kept in ``run_dir``
    (what an Argo pod runs); return the exit code: 0 when the step succeeded
    or skipped itself, 1 when it failed.

    Args:
        flow: the flow.
        name: the step.
        run_dir: the run folder: the dependencies' envelopes are read from
            ``run_dir/outputs``, the step's is written there; steps work in
            ``run_dir/work``.
        run_id: the run's id (default: the folder's name).
        inputs: flow inputs, by name.
        retry: attempts before this one (``microdag.context().attempt`` is ``retry + 1``).
        item: with ``role="unit"``: the map unit to run (``-1``: none, the
            plan found nothing to run).
        role: ``"step"``, or for a map step ``"plan"`` (write the units to
            run), ``"unit"`` (run unit ``item``) or ``"gather"`` (the units'
            results as the step's output).
        max_output: the most bytes of JSON the envelope may take (without a
            volume, it travels as an Argo parameter).

    Raises:
        FlowError: unknown step, a role that does not fit it, or an input the
            step needs that was not given.
    """
    from ._errors import FlowError  # (step --help reads this module's options: it loads no kernel nor store)

    if name not in flow:
        raise FlowError(f"flow {flow.name!r} has no step named {name!r}")
    plan = flow._compiled()
    i = plan.graph.id(name)
    step = plan.steps[i]
    if step.map is not None and role == "step":
        raise FlowError(f"step {name!r} is a map step: run it with --plan, --item N or --gather")
    if step.map is None and role != "step":
        raise FlowError(f"step {name!r} is not a map step: --plan, --item and --gather are for map steps")
    if (role == "unit") != (item is not None):
        raise FlowError(f"step {name!r}: --item N goes with a map step's units, and only there")
    folder = _Folder(run_dir)
    task = _Task(flow, plan, i, folder, run_id or os.path.basename(os.path.normpath(run_dir)) or "run",
                 dict(inputs or {}), retry, item, max_output)
    if role == "plan":
        task.path = folder.path(name, ".plan.json")
    elif role == "unit":
        task.path = folder.path(name, f".units/{item}.json")
    what = f"step {name!r}" + (f" item {item}" if role == "unit" and item is not None and item >= 0 else "")
    what += f" ({role})" if role in ("plan", "gather") else ""
    attempt = f", attempt {retry + 1}" if retry else ""
    print(f"microdag: {what} of flow {flow.name!r}, run {task.run_id}{attempt}", file=sys.stderr, flush=True)
    what += attempt
    started = time.monotonic()
    try:
        if role == "plan":
            envelope = task.plan_units()
        elif role == "gather":
            envelope = task.gather()
        else:
            envelope = task.call(role == "unit")
        task.finish(envelope)
    except OSError as exc:
        print(f"microdag: {what} failed: the run folder {run_dir} cannot be written: {exc}", file=sys.stderr,
              flush=True)
        return 1
    except _Failed as exc:
        took = time.monotonic() - started
        sys.stderr.flush()
        print(f"microdag: {what} failed in {took:.2f} s: {exc}", file=sys.stderr, flush=True)
        try:
            if role == "plan":  # (Argo reads the units from it: none)
                folder.write(folder.path(name, ".items.json"), "[-1]")
            task.finish({"status": "failed", "error": str(exc)}, check=False)
        except OSError:
            pass
        return 1
    took = time.monotonic() - started
    status = envelope["status"]
    line = f"microdag: {what} {status} in {took:.2f} s"
    if status == "skipped" and envelope.get("reason"):
        line += f": {envelope['reason']}"
    print(line, file=sys.stderr, flush=True)
    return 0


class _Task:
    """One task of a run folder (see :func:`run_task`)."""

    def __init__(
        self, flow: "Flow", plan: "_Plan", i: int, folder: _Folder, run_id: str, inputs: "dict[str, Any]",
        retry: int, item: "int | None", max_output: "int | None",
    ) -> None:
        self.flow = flow
        self.plan = plan
        self.i = i
        self.step = plan.steps[i]
        self.name = self.step.name
        self.folder = folder
        self.run_id = run_id
        self.inputs = inputs
        self.retry = retry
        self.item = item
        self.max_output = max_output
        self.path = folder.path(self.name)

    # -- what the dependencies left

    def dependencies(self, check: bool) -> "dict[str, dict[str, Any] | None]":
        """Dependency name -> its envelope (``None``: it left none).  With
        ``check`` (trigger ``all_success``: Argo started this task because
        every dependency succeeded), a missing envelope is an error."""
        out: dict[str, dict[str, Any] | None] = {}
        for dep in self.plan.graph.dependencies(self.name):
            dep = str(dep)
            envelope = self.folder.envelope(dep)
            if check and (envelope is None or envelope["status"] not in ("succeeded", "skipped")):
                found = (
                    f"holds no output of step {dep!r}, which step {self.name!r} needs" if envelope is None
                    else f"says step {dep!r} {envelope['status']}, and step {self.name!r} runs after it succeeds"
                )
                raise _Failed(
                    f"the run folder {self.folder.outputs} {found} (all the pods of a run must share the run "
                    "folder: the volume claim, or Argo's parameters)"
                )
            out[dep] = envelope
        return out

    def skipped_by(self, deps: "dict[str, dict[str, Any] | None]") -> "str | None":
        """The reason this step is skipped before it runs (trigger ``all_success``
        and a dependency skipped), or ``None``."""
        if self.step.trigger != "all_success":
            return None
        for dep, envelope in deps.items():
            if envelope is not None and envelope["status"] == "skipped":
                return f"its dependency {dep!r} was skipped"
        return None

    def kwargs(self, deps: "dict[str, dict[str, Any] | None]") -> "dict[str, Any]":
        """The step's arguments: its dependencies' outputs (``None`` for one that
        did not succeed) and its flow inputs."""
        from .runner._call import bind_inputs, kwargs  # (lazy: an export imports this module, and needs no runner)

        plan, i = self.plan, self.i
        names = plan.graph.names
        values = []
        for dep in plan.argdeps[i]:
            envelope = deps.get(str(names[dep]))
            values.append(envelope.get("output") if envelope and envelope["status"] == "succeeded" else None)
        # (a wrong input fails the step as its function finds it, recorded for the workflow to see)
        inputs = plan.checked_inputs(self.inputs, [])
        kwnames, consts, missing = bind_inputs(plan, i, inputs, defaults=True)
        if missing:
            from ._errors import FlowError  # (step --help reads this module's options: it loads no kernel nor store)

            shown = ", ".join(repr(name) for _, name in missing)
            raise FlowError(f"step {self.name!r} needs input {shown}, which was not given (--input NAME=VALUE)")
        return kwargs(kwnames, values, consts)

    def units(self, kwargs: "dict[str, Any]") -> "list[Any]":
        """The units of the value the map step maps over (items, or batches)."""
        from .runner._call import units  # (an export imports this module, and needs no runner)

        param = self.step.map
        assert param is not None
        try:
            return units(self.name, param, kwargs.get(param), self.step.batch_size)
        except TypeError as exc:
            raise _Failed(f"TypeError: {exc}") from None

    # -- the roles

    def call(self, unit: bool) -> "dict[str, Any]":
        """Run the step's code (a plain step, or one unit of a map step)."""
        deps = self.dependencies(check=self.step.trigger == "all_success" and not unit)
        if not unit:
            reason = self.skipped_by(deps)
            if reason is not None:
                return {"status": "skipped", "reason": reason}
        kwargs = self.kwargs(deps)
        index = None
        if unit:
            if self.item is None or self.item < -1:
                raise _Failed(f"step {self.name!r} is a map step: --item must be a unit index or -1")
            if self.item == -1:
                return {"status": "none", "item": -1}
            unit_list = self.units(kwargs)
            if self.item >= len(unit_list):
                raise _Failed(f"step {self.name!r} has {len(unit_list)} units to run, no unit {self.item}")
            assert self.step.map is not None
            kwargs[self.step.map] = unit_list[self.item]
            index = self.item * (self.step.batch_size or 1)
        result = self.invoke(kwargs, index)
        if isinstance(result, _Skipped):
            envelope: dict[str, Any] = {"status": "skipped", "reason": result.reason}
        else:
            if unit and self.step.batch_size is not None:
                from .runner._call import batch_error  # (an export imports this module, and needs no runner)

                assert self.item is not None and index is not None
                error = batch_error(self.name, index, len(unit_list[self.item]), result)
                if error is not None:
                    raise _Failed(f"ValueError: {error}")
            envelope = {"status": "succeeded", "output": result}
        if unit:
            envelope["item"] = self.item
        return envelope

    def invoke(self, kwargs: "dict[str, Any]", index: "int | None") -> "Any":
        """Call the step's function as microdag would; its result, or a
        :class:`_Skipped` when it raised :class:`microdag.Skip`."""
        from ._errors import Skip  # (step --help reads this module's options: it loads no kernel nor store)
        from ._records import step_traceback  # (step --help reads this module's options: it loads no kernel nor store)
        from .runner._call import Caller, invoke_timed  # (an export imports this module, and needs no runner)

        step = self.step
        unit = -1 if index is None or self.item is None else self.item
        attempt = Caller(self.plan, self.run_id, self.flow.name, self.folder.work).attempt(
            self.i, self.retry + 1, unit=unit, item=index)
        try:
            return invoke_timed(step.fn, kwargs, attempt)
        except BaseException as exc:  # noqa: BLE001 - reported below, whatever it is
            if isinstance(exc, Skip):
                return _Skipped(exc.reason)
            if isinstance(exc, KeyboardInterrupt):
                raise exc
            sys.stdout.flush()
            sys.stderr.write(step_traceback(exc))
            raise _Failed(f"{type(exc).__name__}: {exc}") from None

    def plan_units(self) -> "dict[str, Any]":
        """A map step's plan: its trigger, then the units of the value mapped over."""
        import json  # (import time: json loads on first use)

        deps = self.dependencies(check=self.step.trigger == "all_success")
        reason = self.skipped_by(deps)
        if reason is not None:
            envelope: dict[str, Any] = {"status": "skipped", "reason": reason}
            units = 0
        else:
            unit_list = self.units(self.kwargs(deps))
            units = len(unit_list)
            items = sum(map(len, unit_list)) if self.step.batch_size is not None else units
            envelope = {"status": "planned", "items": items, "units": units}
        self.folder.write(self.folder.path(self.name, ".items.json"), json.dumps(list(range(units)) or [-1]))
        return envelope

    def gather(self) -> "dict[str, Any]":
        """A map step's output: its units' results, in order (or skipped)."""
        plan = self.folder.read(self.folder.path(self.name, ".plan.json"))
        if not isinstance(plan, dict) or plan.get("status") not in ("planned", "skipped"):
            raise _Failed(f"the run folder holds no plan of map step {self.name!r}")
        if plan["status"] == "skipped":
            return {"status": "skipped", "reason": plan.get("reason", "")}
        count = plan["units"]
        envelopes = self.unit_envelopes(count)
        results: list[Any] = []
        for k in range(count):
            envelope = envelopes.get(k)
            if envelope is None:
                raise _Failed(f"unit {k} of map step {self.name!r} left no result in the run folder")
            if envelope["status"] == "skipped":
                return {"status": "skipped", "reason": envelope.get("reason", "")}
            if envelope["status"] != "succeeded":
                raise _Failed(f"unit {k} of map step {self.name!r} {envelope['status']}")
            results.append(envelope.get("output"))
        from .runner._call import gather  # (an export imports this module, and needs no runner)

        return {"status": "succeeded", "output": gather(results, self.step.batch_size is not None)}

    def unit_envelopes(self, count: int) -> "dict[int, dict[str, Any]]":
        """Unit index -> its envelope: from Argo's list of the units' output
        parameters (``.units.json``, without a volume), else from the units' files."""
        import json  # (import time: json loads on first use)

        out: dict[int, dict[str, Any]] = {}
        listed = self.folder.read(self.folder.path(self.name, ".units.json"))
        if listed is None:
            for k in range(count):
                envelope = self.folder.read(self.folder.path(self.name, f".units/{k}.json"))
                if isinstance(envelope, dict):
                    out[k] = envelope
            return out
        if not isinstance(listed, list):
            raise _Failed(f"the outputs of the units of map step {self.name!r} are not a list")
        for entry in listed:
            if isinstance(entry, dict) and "status" not in entry:
                entry = entry.get("output")  # Argo's form: one {parameter name: text} per unit
            if isinstance(entry, str):
                try:
                    entry = json.loads(entry)
                except ValueError:
                    raise _Failed(f"an output of a unit of map step {self.name!r} is not JSON") from None
            if isinstance(entry, dict) and isinstance(entry.get("item"), int) and entry["item"] >= 0:
                out[entry["item"]] = entry
        return out

    # -- the end

    def finish(self, envelope: "dict[str, Any]", check: bool = True) -> None:
        """Write the task's envelope (checked: JSON, and small enough without a volume)."""
        # (step --help reads this module's options: it loads no kernel nor store)
        from .stores._codec import json_encoder, not_json

        if check:
            bad = not_json(envelope.get("output"))
            if bad is not None:
                raise _Failed(
                    f"TypeError: the output of step {self.name!r} holds a {bad}: on Argo, steps pass "
                    "their outputs as JSON (dict with str keys, list, str, int, finite float, bool, None)"
                )
        if self.item is not None and "item" not in envelope:
            envelope["item"] = self.item
        text: str = json_encoder().encode(envelope)
        if check and self.max_output is not None and len(text.encode()) > self.max_output:
            raise _Failed(
                f"the output of step {self.name!r} takes {len(text.encode()) / 1024:.1f} KiB of JSON, more "
                f"than the {self.max_output / 1024:g} KiB an Argo parameter may hold: export the flow with "
                "--volume-claim to pass outputs through a volume"
            )
        self.folder.write(self.path, text)


class _Skipped:
    """A step that raised :class:`microdag.Skip`."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason
