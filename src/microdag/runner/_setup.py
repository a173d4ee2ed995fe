"""Setting a run up: every option and input checked, then the state machine built.

:func:`prepare` collects every problem with the options, the inputs and the
store into one :class:`~microdag.FlowError` before anything runs; then it
leases the plan's kernel (or copies it, when another run of the same flow
holds it), binds the flow inputs, opens the run's record (new or resumed)
and resets the kernel.  Nothing here runs a step.
"""

import sys

from .._errors import FlowError
from .._events import log
from .._plan import NO_DEFAULT
from ._recorder import NullRecorder, StoreRecorder
from ._state import Runner

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any

    from .._events import Event
    from .._plan import _Plan

__all__ = ["EXECUTORS", "prepare", "release"]

EXECUTORS = ("inline", "threads", "processes")
_POLICIES = ("fail_fast", "continue")


def _bind_inputs(
    plan: "_Plan", subset: "list[int] | None", given: "Mapping[str, Any]", problems: "list[str]"
) -> "dict[int, tuple[tuple[str, ...], tuple[Any, ...]]]":
    """Per step taking flow inputs: its keyword names and constant values for this run.

    A required input that was not given goes into ``problems``, naming the
    step and the parameter.
    """
    active = None if subset is None else set(subset)
    bound = {}
    misspelt: dict[str, str] | None = None  # (looked for once something is missing)
    said: set[str] = set()
    for i, params in enumerate(plan.input_params):
        if not params or (active is not None and i not in active):
            continue
        names = list(plan.dep_kwnames[i])
        values = []
        for param, input_name, default in params:
            if input_name in given:
                names.append(param)
                values.append(given[input_name])
            elif default is NO_DEFAULT:
                if misspelt is None:
                    misspelt = plan.misspelt(given)
                if input_name not in misspelt:
                    problems.append(
                        f"step {plan.graph.names[i]!r} needs input {input_name!r} "
                        f"(parameter {param!r}), which was not given"
                    )
                elif input_name not in said:  # (said once, for the step it is most likely in)
                    problems.append(misspelt[input_name])
                    said.add(input_name)
        bound[i] = (tuple(names), tuple(values))
    return bound


def _check_types(plan: "_Plan", given: "Mapping[str, Any]", problems: "list[str]") -> None:
    """A problem for each given input that its declared or annotated type refuses."""
    types = plan.input_types()
    for name, value in given.items():
        schema = types.get(name)
        if schema:
            from .._schema import problem

            wrong = problem(schema, value)
            if wrong is not None:
                problems.append(f"input {name!r}: {wrong}")


def _check_picklable(plan: "_Plan", subset: "list[int] | None", problems: "list[str]") -> None:
    import pickle

    for i in range(len(plan.steps)) if subset is None else subset:
        step = plan.steps[i]
        try:
            pickle.dumps(step.fn)
        except Exception as exc:
            problems.append(
                f"step {step.name!r} cannot run on processes: its function "
                f"{getattr(step.fn, '__qualname__', step.fn)!r} cannot be pickled ({exc}); "
                "define it at module level"
            )


def prepare(
    plan: "_Plan",
    flow: str,
    source: "str | None",
    inputs: "Mapping[str, Any] | None",
    *,
    executor: "Any",
    max_workers: "int | None",
    targets: "Iterable[str] | None",
    on_failure: str,
    hooks: "Iterable[Callable[[Event], Any]]",
    keep_outputs: bool,
    cancel: "Any",
    store: "Any" = None,
    run_id: "str | None" = None,
    resume: bool = False,
    force: bool = False,
) -> "tuple[Runner, dict[str, Any]]":
    """Check everything a run of ``plan`` needs, then set it up: its
    :class:`Runner` (holding the kernel: :func:`release` lets go) and the
    inputs given.

    Raises:
        FlowError: every problem with the options, inputs and store.
        StoreError: the store cannot be used, or the run is live elsewhere.
    """
    if "__mp_main__" in sys.modules:  # a process of multiprocessing: not a run its import of the script started
        from ..pools.process import refuse_run_in_worker

        refuse_run_in_worker()
    problems: list[str] = []
    resumed_info = None
    if store is not None:
        from ..stores import open_store

        try:
            store = open_store(store)
        except ValueError as exc:
            problems.append(str(exc))
            store = None
    if run_id is not None:
        from .._records import check_run_id

        try:
            check_run_id(run_id)
        except ValueError as exc:
            problems.append(str(exc))
            run_id = None
    if resume:
        if store is None or run_id is None:
            problems.append("resume=True needs store= and the run_id= of the run to resume")
        else:
            resumed_info = store.run_info(run_id)  # StoreError for an unknown run
            if inputs is None:
                inputs = resumed_info.inputs
    if isinstance(executor, str):
        if executor not in EXECUTORS:
            problems.append(
                f"unknown executor {executor!r}: expected one of {', '.join(map(repr, EXECUTORS))} "
                "or a concurrent.futures.Executor"
            )
    elif not callable(getattr(executor, "submit", None)):
        problems.append(f"executor {executor!r} is neither a name nor a concurrent.futures.Executor")
    if on_failure not in _POLICIES:
        problems.append(f"unknown on_failure {on_failure!r}: expected 'fail_fast' or 'continue'")
    if max_workers is not None and (
        not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
    ):
        problems.append(f"max_workers must be an int >= 1 or None, not {max_workers!r}")
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        problems.append(f"cancel must be a threading.Event (or have is_set()), not {cancel!r}")
    hooks = tuple(hooks)
    for hook in hooks:
        if not callable(hook):
            problems.append(f"hook {hook!r} is not callable")
    if inputs is None:
        given: dict[str, Any] = {}
    elif callable(getattr(inputs, "keys", None)) and callable(getattr(inputs, "__getitem__", None)):
        given = {key: inputs[key] for key in inputs.keys()}
    else:
        problems.append(f"inputs must map input names to values, not {type(inputs).__name__}")
        given = {}
    unknown = sorted(set(given) - set(plan.inputs), key=str)
    for name in unknown:
        known = ", ".join(sorted(plan.inputs)) or "none"
        problems.append(f"flow {flow!r} has no input {name!r} (its inputs: {known})")
    if given:
        _check_types(plan, given, problems)
    graph = plan.graph
    subset: list[int] | None = None
    keep: list[int] | None = None
    if targets is not None:
        try:
            target_ids = graph.ids(targets)
        except FlowError as exc:
            problems.extend(p.replace("no step named", "unknown target: no step named") for p in exc.problems)
            target_ids = []
        subset = graph.kernel.ancestors(target_ids)
        keep = None if keep_outputs else target_ids
    elif not keep_outputs:
        keep = plan.sinks()
    bound = _bind_inputs(plan, subset, given, problems)
    if executor == "processes":
        _check_picklable(plan, subset, problems)
    if resumed_info is not None and not force and not plan.made(resumed_info.fingerprint):
        problems.append(
            f"run {run_id} was made by another version of flow {flow!r} (its steps, "
            "dependencies or bindings changed); resume it with force=True to run it anyway"
        )
    if problems:
        raise FlowError(*problems)

    from .._result import new_run_id

    run_id = run_id or new_run_id()
    kernel = graph.kernel
    owned = not plan.busy
    if owned:
        plan.busy = True
    else:  # another run of this flow holds the kernel: use a private copy
        kernel = graph._new_kernel()
        plan.configure(kernel)
    try:
        recorder = NullRecorder() if store is None else StoreRecorder(store, run_id, graph.names)
        runner = Runner(
            plan, kernel, run_id, flow, subset=subset, on_failure=on_failure, hooks=hooks, keep=keep,
            cancel=cancel, recorder=recorder,
        )
        runner.owned = owned
        for i, (names, values) in bound.items():
            runner.kwnames[i] = names
            runner.consts[i] = values
        done = None
        effective = effective_inputs(plan, subset, given)
        if isinstance(recorder, StoreRecorder):
            recorder.offset = runner.offset
            done = _open_record(runner, recorder, source, effective, given, resumed_info, force)
        kernel.reset(subset, done=done)
        if recorder.durable:
            from .._capture import install

            install()
    except BaseException:
        if owned:
            plan.busy = False
        raise
    runner.emit("run_started")
    if runner.debug:
        log(10, "run %s of flow %r started", runner.run_id, flow)
    return runner, effective


def _open_record(
    runner: Runner, recorder: StoreRecorder, source: "str | None", inputs: "dict[str, Any]",
    given: "dict[str, Any]", resumed: "Any", force: bool,
) -> "list[int] | None":
    """Start the run's record (with its effective ``inputs``: those ``given``
    and the defaults of the others), or reopen it: the steps it already finished.

    Raises:
        FlowError: the inputs given cannot be stored, or (resuming, without
            ``force``) the code of a step the run finished has changed since.
    """
    plan = runner.plan
    active = None if runner.subset is None else set(runner.subset)
    if resumed is not None:
        maps = {runner.names[i] for i in plan.maps if active is None or i in active}
        steps, items = recorder.resume(plan.graph._index, active, maps, force)
        changed = [] if force else _changed_code(resumed.code, plan.code(), runner.names, steps[0])
        if changed:
            recorder.let_go()
            shown = ", ".join(repr(name) for name in changed[:5]) + (" ..." if len(changed) > 5 else "")
            raise FlowError(
                f"run {runner.run_id} finished steps whose code (or default values) changed since: {shown}; "
                "their recorded outputs would not match what the flow now does: resume it with "
                "force=True to use them anyway, or run the flow anew"
            )
        recorder.reopen()
        runner.resume_from(*steps)
        runner.maps.resumed = items
        return steps[0] or None
    from .._records import RunInfo

    kept = recorder.storable({k: v for k, v in inputs.items() if k not in given})  # defaults a codec can keep
    info = RunInfo(runner.run_id, runner.flow, plan.fingerprint(), {**given, **kept}, "running", runner.wall0,
                   source=source, code=plan.code())
    try:
        recorder.begin(info, plan)
    except TypeError as exc:  # inputs the codec cannot store
        raise FlowError(str(exc)) from None
    return None


def _changed_code(
    recorded: "dict[str, str] | None", now: "dict[str, str] | None", names: "Sequence[str]", done: "list[int]"
) -> "list[str]":
    """The finished steps ``done`` (ids of ``names``) whose code digest differs
    between a run's record and the flow now (none when either side has no
    digests)."""
    if not recorded or not now:
        return []
    return [name for name in map(names.__getitem__, done)
            if name in recorded and name in now and recorded[name] != now[name]]


def effective_inputs(plan: "_Plan", subset: "list[int] | None", given: "dict[str, Any]") -> "dict[str, Any]":
    """The inputs a run uses: those given, and for the others the default of
    the steps that take them (when they agree on one: steps may differ)."""
    active = None if subset is None else set(subset)
    defaults: dict[str, Any] = {}
    clash: set[str] = set()
    for i, params in enumerate(plan.input_params):
        if not params or (active is not None and i not in active):
            continue
        for _, name, default in params:
            if name in given or default is NO_DEFAULT or name in clash:
                continue
            if name not in defaults:
                defaults[name] = default
            elif not _same(defaults[name], default):
                clash.add(name)
                del defaults[name]
    return {**given, **defaults}


def _same(a: "Any", b: "Any") -> bool:
    try:
        return a is b or bool(a == b)
    except Exception:
        return False


def release(runner: Runner) -> None:
    """Let go of what :func:`prepare` took: the kernel and output capture."""
    if runner.recorder.durable:
        from .._capture import uninstall

        uninstall()
    if runner.owned:
        runner.plan.busy = False
