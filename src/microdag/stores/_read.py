"""Reading a stored run, over any store: reports, ``load_run``, logs, summaries.

A store answers a few questions itself (``run_info``, ``tasks``,
``list_runs``, ``attempts``, ``attempt_logs``, ``graph``: the primitives of
``_base.Store``); everything a reader builds from them lives here, once, as
functions of a store.  A store that can answer one of the summaries faster
(the SQL stores from their indexes: ``task_summary``, ``outputs``,
``succeeded_columns``, ``logged``) overrides the :class:`~._base.Store`
method of that name, which otherwise calls the function here; the command
line, the UI and the runner's recorder call the methods for those, and the
functions here for the rest (``report``, ``logs``, ``load_run``).
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    from .._records import RunInfo, TaskRecord
    from .._typed import Converter
    from .._result import Run
    from ._base import Store, Successes

__all__ = [
    "load_run", "logged", "logs", "output", "outputs", "report", "run_graph", "succeeded", "succeeded_columns",
    "task_summary",
]


def task_summary(store: "Store", run_id: str, first: int, worst: int) -> "tuple[dict[str, int], list[TaskRecord]]":
    """What ``show`` prints of a big run without reading all of it: the
    count of each task status, and the first ``first`` task records with
    up to ``worst`` of those that failed or were cancelled, each once, in
    ``tasks``' order.  This version reads every record (the SQL stores
    answer from their indexes).

    Raises:
        StoreError: no such run.
    """
    records = store.tasks(run_id)
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    bad = [n for n, r in enumerate(records) if r.status in ("failed", "cancelled")][:worst]
    return counts, [records[n] for n in sorted(set(range(min(first, len(records)))) | set(bad))]


def logs(store: "Store", run_id: str, step: str, item: "int | None" = None) -> str:
    """What a step (or item ``item`` of a map step) printed and logged, all
    attempts in order, each under an ``--- attempt N ---`` line when there are
    several.

    Raises:
        StoreError: no such run.
    """
    store.run_info(run_id)
    parts = store.attempt_logs(run_id, step, -1 if item is None else item)
    if len(parts) == 1:
        return parts[0][1]
    return "".join(f"--- attempt {attempt} ---\n{text}" for attempt, text in parts)


def logged(store: "Store", run_id: str, tasks: "Iterable[tuple[str, int]]") -> "set[tuple[str, int]]":
    """Which of ``tasks`` (``(step, item)``) have logs (this version asks each
    task; the SQL stores answer in one read)."""
    return {task for task in tasks if store.attempt_logs(run_id, *task)}


def report(store: "Store", run_id: str) -> str:
    """One self-contained HTML page on the run: its DAG coloured by status,
    a timeline of its tasks, each step's error and logs.

    Raises:
        StoreError: no such run.
    """
    from .._render import render_report  # (a report only)

    info = store.run_info(run_id)
    tasks = store.tasks(run_id, outputs=False)
    graph = run_graph(store, info)
    return render_report(
        info, tasks, graph, lambda step, item: logs(store, run_id, step, None if item < 0 else item),
        store.attempts(run_id), store.added_steps(run_id) if info.limits is not None else (),
    )


def run_graph(store: "Store", info: "RunInfo") -> "dict[str, Any] | None":
    """The graph of run ``info`` as reports and the UI draw it: the flow's
    (``Store.graph``: ``{"nodes": [names], "deps": [[indices], ...]}``) with
    the steps its steps added after its nodes, and ``"added"``: each added
    step's name -> the name of the step that added it; ``None`` when the
    store has no graph for the flow (large flows skip it)."""
    graph = store.graph(info.fingerprint) if info.fingerprint else None
    recipes = store.added_steps(info.id) if graph is not None else []
    if graph is None or not recipes:
        return graph
    nodes, deps = list(graph["nodes"]), [list(d) for d in graph["deps"]]
    index = {name: i for i, name in enumerate(nodes)}
    for recipe in recipes:
        index[recipe["step"]] = len(nodes)
        nodes.append(recipe["step"])
        deps.append([index[d] for d in recipe.get("after", ()) if d in index])
    return {"nodes": nodes, "deps": deps, "added": {r["step"]: r["by"] for r in recipes}}


def output(store: "Store", run_id: str, step: str, item: int = -1, typed: "Converter | None" = None) -> "Any":
    """The decoded output of a task (``typed``: see ``Store.output``).

    Raises:
        KeyError: the task has no stored output.
    """
    for record in store.tasks(run_id):
        if record.step == step and record.item == item and record.output is not None:
            return store._decoded(record.output, store._where(run_id, step, item), typed)
    raise KeyError(f"run {run_id} has no stored output for step {step!r}")


def outputs(
    store: "Store", run_id: str, steps: "Iterable[str]", typed: "Mapping[str, Converter] | None" = None
) -> "dict[str, Any]":
    """The decoded outputs of several steps (those with one), in one read."""
    out = {}
    for step in steps:
        try:
            out[step] = store.output(run_id, step, typed=typed.get(step) if typed else None)
        except KeyError:
            pass
    return out


def succeeded(store: "Store", run_id: str) -> "dict[str, tuple[int, float | None, float | None]]":
    """Per step that succeeded (not map items): its attempts, start and finish."""
    return {
        r.step: (r.attempts, r.started, r.finished)
        for r in store.tasks(run_id, outputs=False)
        if r.item < 0 and r.status == "succeeded"
    }


def succeeded_columns(store: "Store", run_id: str) -> "Successes":
    """:func:`succeeded` as four columns: steps, attempts, starts and finishes
    (what a resume reads: the SQL stores read a million of them without a
    record or a tuple per step)."""
    found = store.succeeded(run_id)
    if not found:
        return (), (), (), ()
    attempts, started, finished = zip(*found.values())
    return tuple(found), attempts, started, finished


def load_run(store: "Store", run_id: str) -> "Run":
    """The run as a :class:`~microdag.Run`; outputs are decoded when read.

    Raises:
        StoreError: no such run.
    """
    from .._result import Run  # (load_run only: the reading commands need no Run)

    info = store.run_info(run_id)
    return Run.from_records(info, store.tasks(run_id), lambda step: store.output(run_id, step),
                            added=store.added_by(run_id))
