"""Setting a run up: every option and input checked, then the state machine built.

:func:`check` collects every problem with the options (a frozen
``_options.RunOptions``), the inputs and the store into one
:class:`~microdag.FlowError` before anything runs, and binds the flow
inputs; :func:`open_run` then leases the plan's kernel (or copies it, when
another run of the same flow holds it), builds the :class:`Runner` with
everything it needs (it is the only writer of its state from then on),
opens the run's record (new or resumed) and resets the kernel.
:func:`prepare` does both.  Nothing here runs a step.

What a cancelled or interrupted run must kill, the programs of its command
steps (``_children``), is given to the runner as its ``halt``: the state
machine decides when, and does no I/O itself.
"""

import sys

from .._binding import NO_DEFAULT
from .._capture import install, uninstall
from .._errors import FlowError, StoreError
from .._events import log
from .._graph import name_index, new_kernel
from .._records import PACKAGE, RunInfo, check_run_id
from .._result import new_run_id
from ..stores import Store
from ._call import bind_inputs, missing_input
from ._limits import problems as limit_problems
from ._options import RunOptions
from ._recorder import GRAPH_LIMIT, NullRecorder, StoreRecorder
from ._resumed import take_over
from ._state import Runner

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    from .._events import Event
    from .._plan import _Plan

__all__ = ["EXECUTORS", "Checked", "check", "open_run", "prepare", "release"]

EXECUTORS = ("inline", "threads", "processes", "workers")
_POLICIES = ("fail_fast", "continue")


def _bind_inputs(
    plan: "_Plan", subset: "list[int] | None", given: "Mapping[str, Any]", problems: "list[str]"
) -> "dict[int, tuple[tuple[str, ...], tuple[Any, ...]]]":
    """Per step taking flow inputs: its keyword names and constant values for
    this run (``_call.bind_inputs``); each required input not given goes into
    ``problems``, naming the step and the parameter."""
    active = None if subset is None else set(subset)
    bound = {}
    misspelt: dict[str, str] | None = None  # (looked for once something is missing)
    said: set[str] = set()
    for i, params in enumerate(plan.input_params):
        if not params or (active is not None and i not in active):
            continue
        names, values, missing = bind_inputs(plan, i, given)
        for param, name in missing:
            if misspelt is None:
                misspelt = plan.misspelt(given)
            if name not in misspelt:
                problems.append(missing_input(plan, i, param, name))
            elif name not in said:  # (said once, for the step it is most likely in)
                problems.append(misspelt[name])
                said.add(name)
        bound[i] = (names, values)
    return bound


def _check_picklable(plan: "_Plan", subset: "list[int] | None", problems: "list[str]") -> None:
    import pickle  # (import time: pickle loads on first use)

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


class Checked:
    """A run's options and inputs once checked (:func:`check`): what
    :func:`open_run` needs."""

    __slots__ = ("store", "run_id", "resumed", "given", "hooks", "subset", "keep", "bound")

    def __init__(
        self, store: "Any", run_id: "str | None", resumed: "Any", given: "dict[str, Any]",
        hooks: "tuple[Callable[[Event], Any], ...]", subset: "list[int] | None", keep: "list[int] | None",
        bound: "dict[int, tuple[tuple[str, ...], tuple[Any, ...]]]",
    ) -> None:
        self.store = store  # opened, or None
        self.run_id = run_id
        self.resumed = resumed  # the RunInfo of the run to resume, or None
        self.given = given
        self.hooks = hooks
        self.subset = subset
        self.keep = keep
        self.bound = bound


def prepare(
    plan: "_Plan", flow: str, source: "str | None", inputs: "Mapping[str, Any] | None", options: RunOptions,
) -> "tuple[Runner, dict[str, Any]]":
    """Check everything a run of ``plan`` needs (:func:`check`), then set it
    up (:func:`open_run`): its :class:`Runner` (holding the kernel:
    :func:`release` lets go) and the run's effective inputs.

    Raises:
        FlowError: every problem with the options, inputs and store.
        StoreError: the store cannot be used, or the run is live elsewhere.
    """
    if "__mp_main__" in sys.modules:  # a process of multiprocessing: not a run its import of the script started
        from ..pools.process import refuse_run_in_worker  # (in a process of multiprocessing only)

        refuse_run_in_worker()
    return open_run(plan, flow, source, options, check(plan, flow, inputs, options))


def check(
    plan: "_Plan", flow: str, inputs: "Mapping[str, Any] | None", options: RunOptions
) -> Checked:
    """Every problem with a run's ``options``, ``inputs`` and store, in one
    :class:`~microdag.FlowError`; nothing is opened but the store (which
    says whether the run to resume exists).

    Raises:
        FlowError: every problem found.
        StoreError: the run to resume is not in the store.
    """
    problems: list[str] = []
    resumed_info = None
    store = options.store
    run_id = options.run_id
    executor = options.executor
    max_workers = options.max_workers
    if store is not None:
        from ..stores import open_store  # (a run that keeps a store only)

        try:
            store = open_store(store)
        except ValueError as exc:
            problems.append(str(exc))
            store = None
    if run_id is not None:
        try:
            check_run_id(run_id)
        except ValueError as exc:
            problems.append(str(exc))
            run_id = None
    if options.resume:
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
    if executor == "workers":
        if store is None:
            problems.append("executor='workers' needs store=: the store its workers share (an SQLite file)")
        elif type(store).queue is Store.queue:  # (the refusal of a store that is no work queue)
            try:
                store.queue()
            except StoreError as exc:
                problems.append(str(exc))
        keyed = [str(plan.graph.names[i]) for i in plan.maps if plan.steps[i].key is not None]
        if keyed:
            problems.append(f"step {keyed[0]!r} maps with key=, which executor='workers' does not run: its items' "
                            "record numbers are kept by one process; run it on another executor")
        lease = options.lease
        if lease is not None and (type(lease) not in (int, float) or not 0 < lease < float("inf")):
            problems.append(f"lease must be a number of seconds > 0, not {lease!r}")
    elif options.lease is not None:
        problems.append("lease= goes with executor='workers' only")
    if options.on_failure not in _POLICIES:
        problems.append(f"unknown on_failure {options.on_failure!r}: expected 'fail_fast' or 'continue'")
    if max_workers is not None and (
        not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
    ):
        problems.append(f"max_workers must be an int >= 1 or None, not {max_workers!r}")
    cancel = options.cancel
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        problems.append(f"cancel must be a threading.Event (or have is_set()), not {cancel!r}")
    hooks = tuple(options.hooks)
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
    values = plan.checked_inputs(given, problems) if given else given
    graph = plan.graph
    subset: list[int] | None = None
    keep: list[int] | None = None
    if options.targets is not None:
        try:
            target_ids = graph.ids(options.targets)
        except FlowError as exc:
            problems.extend(p.replace("no step named", "unknown target: no step named") for p in exc.problems)
            target_ids = []
        subset = graph.kernel.ancestors(target_ids)
        keep = None if options.keep_outputs else target_ids
    elif not options.keep_outputs:
        keep = plan.sinks()
    bound = _bind_inputs(plan, subset, values, problems)
    if options.pools or options.rates or plan.limited():
        problems.extend(limit_problems(plan, subset, options.pools, options.rates))
    if executor == "processes":
        _check_picklable(plan, subset, problems)
    if resumed_info is not None and executor != "workers" and not options.force and store.shared(run_id):
        problems.append(f"run {run_id} is shared with workers (on the store's work queue): resume it with "
                        "executor='workers', or cancel it first")
    if resumed_info is not None and not options.force and not plan.made(resumed_info.fingerprint):
        problems.append(
            f"run {run_id} was made by another version of flow {flow!r} (its steps, "
            "dependencies or bindings changed); resume it with force=True to run it anyway"
        )
    if problems:
        raise FlowError(*problems)
    return Checked(store, run_id, resumed_info, given, hooks, subset, keep, bound)


def open_run(
    plan: "_Plan", flow: str, source: "str | None", options: RunOptions, checked: Checked,
) -> "tuple[Runner, dict[str, Any]]":
    """Set up the run :func:`check` passed: lease the plan's kernel (or copy
    it, when another run of the flow holds it), open the run's record (new
    or resumed) and reset the kernel; its :class:`Runner` and effective inputs.

    Raises:
        FlowError: the inputs cannot be stored, or a finished step's code changed.
        StoreError: the store cannot be used, or the run is live elsewhere.
    """
    graph = plan.graph
    store, subset, given = checked.store, checked.subset, checked.given
    run_id = checked.run_id or new_run_id()
    kernel = graph.kernel
    owned = not plan.busy
    if owned:
        plan.busy = True
    else:  # another run of this flow holds the kernel: use a private copy
        kernel = new_kernel(graph)
        plan.configure(kernel)
    try:
        recorder = NullRecorder() if store is None else StoreRecorder(
            store, run_id, graph.names, plan.typed_outputs(store.codec))
        runner = Runner(
            plan, kernel, run_id, flow, recorder=recorder, subset=subset, on_failure=options.on_failure,
            hooks=checked.hooks, keep=checked.keep, cancel=options.cancel, bound=checked.bound, owned=owned,
            halt=lambda: _halt(run_id), pools=options.pools, rates=options.rates, given=given,
        )
        done = None
        effective = effective_inputs(plan, subset, given)
        if isinstance(recorder, StoreRecorder):
            limits = _limits(plan, options) if runner.limits else None
            done = _open_record(runner, recorder, source, effective, given, checked.resumed, options.force, limits)
        kernel.reset(subset, done=done)
        if recorder.durable:
            install()
    except BaseException:
        if owned:
            plan.busy = False
        raise
    runner.emit("run_started")
    if runner.debug:
        log(10, "run %s of flow %r started", runner.run_id, flow)
    return runner, effective


def _limits(plan: "_Plan", options: "RunOptions") -> "dict[str, dict[str, Any]]":
    """A run's pools and rates as its record keeps them (``RunInfo.limits``),
    with what each step holds (for flows small enough to keep their graph)."""
    uses: dict[str, dict[str, int]] = {}
    if len(plan.options) <= GRAPH_LIMIT:
        for name, o in zip(plan.graph.names, plan.options):
            if o.uses:
                uses[str(name)] = dict(o.uses)
    return {"pools": dict(options.pools), "rates": dict(options.rates), "uses": uses}


def _halt(run_id: str) -> None:
    """Kill the programs run ``run_id``'s command steps are running (their
    process groups); ``_children`` is loaded by a run that is cancelled or
    interrupted only."""
    from .._children import kill  # (a cancelled or interrupted run only)

    kill(run_id)


def _open_record(
    runner: Runner, recorder: StoreRecorder, source: "str | None", inputs: "dict[str, Any]",
    given: "dict[str, Any]", resumed: "Any", force: bool, limits: "dict[str, dict[str, Any]] | None" = None,
) -> "list[int] | None":
    """Start the run's record (with its effective ``inputs``: those ``given``
    and the defaults of the others, and its pools and rates ``limits``), or
    reopen it: the steps it already finished.

    Raises:
        FlowError: the inputs given cannot be stored, or (resuming, without
            ``force``) the code of a step the run finished has changed since.
    """
    if resumed is not None:
        added = recorder.added_steps()
        if added:  # the steps its steps added, made again first
            from ._grow import recreate  # (only runs whose steps added steps)

            recreate(runner, added)
    plan = runner.plan
    active = None if runner.subset is None else set(runner.subset)
    if resumed is not None:
        maps = {runner.names[i] for i in plan.maps if active is None or i in active}
        steps, items, numbered = recorder.resume(name_index(plan.graph), active, maps, force)
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
        take_over(runner, *steps, items, numbered)
        _tell_kept_inputs(runner, resumed.inputs, given, steps[0])
        return steps[0] or None
    kept = recorder.storable({k: v for k, v in inputs.items() if k not in given})  # defaults a codec can keep
    info = RunInfo(runner.run_id, runner.flow, plan.fingerprint(), {**_recorded(plan, given, recorder), **kept},
                   "running", runner.wall0, source=source, code=plan.code(), limits=limits)
    try:
        recorder.begin(info, plan)
    except TypeError as exc:  # inputs the codec cannot store
        raise FlowError(str(exc)) from None
    return None


def _recorded(plan: "_Plan", given: "dict[str, Any]", recorder: StoreRecorder) -> "dict[str, Any]":
    """The ``given`` inputs as the run's record keeps them: with the JSON
    codec, a value of an input's class as its JSON (which a resume reads
    back into the class, as it would the JSON given)."""
    if recorder.store.codec != "json" or not plan.input_classes():
        return given
    out = dict(given)
    for name, value in given.items():
        convert = plan.input_converter(name)
        if convert is not None:
            try:
                out[name] = convert.dump(value)
            except ValueError:  # (JSON already, or not of the class: the codec says so)
                pass
    return out


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


def _tell_kept_inputs(runner: Runner, recorded: "dict[str, Any]", given: "dict[str, Any]", done: "list[int]") -> None:
    """A resume given an input that differs from the one recorded, but that
    only steps the run finished take: those keep their outputs (made with the
    recorded value) and nothing runs with the given one; say so (a warning)."""
    changed = [name for name, value in given.items() if name in recorded and not _same(value, recorded[name])]
    if not changed or not done:
        return
    finished = set(done)
    plan = runner.plan
    for name in changed:
        takers = plan.inputs.get(name, [])
        if takers and finished.issuperset(takers):
            import warnings  # (import time: warnings loads on first use)

            shown = ", ".join(repr(runner.names[i]) for i in takers[:3]) + (" ..." if len(takers) > 3 else "")
            warnings.warn(
                f"resuming run {runner.run_id}: input {name!r} was given as {given[name]!r}, but only steps the "
                f"run finished take it ({shown}): they keep their outputs, made with the recorded "
                f"{recorded[name]!r}; run the flow anew to use the new value",
                UserWarning, stacklevel=_outside(),
            )


def _outside() -> int:
    """The ``stacklevel`` of the caller's first frame outside microdag (for a warning)."""
    level, frame = 2, sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(PACKAGE):
        level += 1
        frame = frame.f_back  # type: ignore[assignment]
    return level


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
        uninstall()
    if runner.owned:
        runner.plan.busy = False
