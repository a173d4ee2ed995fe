"""Stored runs as the JSON documents the UI's API serves.

Everything here reads a store and returns plain data (dicts, lists, str,
numbers) that ``json.dumps`` can write: the run list, one run with its tasks,
attempts and graph, a task's output and logs, and what changed between two
reads of a live run (the events stream).  Nothing is cached between calls:
the store is the one source of truth, whichever process writes it.

Graphs of up to :data:`FULL_GRAPH` steps come with the layered layout of the
HTML report (``_layout.layout``: each node's corner, each edge's route);
bigger ones as layers with counts per status, which is what can be drawn
usefully of them.
"""

import json

from .._layout import NODE_H, NODE_W, layers, layout
from .._present import (duration_text, item_label, limits_text, preview, step_status, step_uses, task_order,
                        uses_text, wait_text)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .._records import RunInfo, TaskRecord
    from ..stores import Store

#: Steps drawn one box each; beyond this, by layers with counts.
FULL_GRAPH = 1000
#: Characters of an output shown in a task's preview.
PREVIEW = 2000
#: Names listed per layer of a summarised graph.
SAMPLE = 20


def run_json(info: "RunInfo") -> "dict[str, Any]":
    """The run's record, for the page."""
    return {
        "id": info.id, "flow": info.flow, "status": info.status, "started": info.started,
        "finished": info.finished, "source": info.source, "inputs": jsonable(info.inputs),
        "duration_text": duration_text(None if info.finished is None else info.finished - info.started),
        "problem": info.problem,
        # the run's pools and rates (None: it had none), and as the page shows them
        "pools": None if info.limits is None else info.limits["pools"],
        "rates": None if info.limits is None else info.limits["rates"],
        "limits_text": limits_text(info.limits),
    }


def list_runs(store: "Store", flow: "str | None", status: "str | None", limit: int) -> "dict[str, Any]":
    """``GET /api/runs``: the newest runs first, filtered by flow and status."""
    runs = store.list_runs()
    flows = sorted({r.flow for r in runs})
    statuses = sorted({r.status for r in runs})
    chosen = [r for r in runs if (flow is None or r.flow == flow) and (status is None or r.status == status)]
    return {
        "runs": [
            {"id": r.id, "flow": r.flow, "status": r.status, "started": r.started, "finished": r.finished,
             "source": r.source, "problem": r.problem,
             "duration_text": duration_text(None if r.finished is None else r.finished - r.started)}
            for r in chosen[:limit]
        ],
        "flows": flows,
        "statuses": statuses,
    }


def task_json(
    store: "Store", record: "TaskRecord", logged: "set[tuple[str, int]]", added: "dict[str, str] | None" = None,
    uses: "dict[str, dict[str, int]] | None" = None,
) -> "dict[str, Any]":
    """One task for the page: its record, a preview of its output, whether it
    logged, for a step a step added (``added``: name -> who), who added it,
    and what it holds of the run's pools and rates (``uses``: name -> units
    by pool) and how long its attempts waited for them, in all."""
    output: str | None = None
    truncated = False
    if record.output is not None:
        try:
            value = store.decode(record.output)
            text = None
            if len(record.output) <= 4 * PREVIEW:  # small: the C encoder, in one go
                try:
                    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
                except (TypeError, ValueError, RecursionError):
                    pass
            if text is None:
                text = preview(value, PREVIEW + 1, indent=2)
        except Exception as exc:  # damaged, or another codec: say so instead of failing the page
            text = f"<the output cannot be decoded: {type(exc).__name__}: {exc}>"
        truncated = len(text) > PREVIEW
        output = text[:PREVIEW]
    took = None if record.started is None or record.finished is None else record.finished - record.started
    return {
        "step": record.step,
        "item": None if record.item < 0 else record.item,
        "item_label": None if record.item < 0 else item_label(record),
        "status": record.status,
        "attempts": record.attempts,
        "added_by": None if added is None else added.get(record.step),
        "started": record.started,
        "finished": record.finished,
        "duration": took,
        "duration_text": duration_text(took),
        "uses": None if not uses or record.step not in uses else uses[record.step],
        "uses_text": uses_text(None if not uses else uses.get(record.step)),
        "waited": record.waited,
        "waited_text": wait_text(record.waited),
        "error": None if record.error_type is None else {
            "type": record.error_type, "message": record.error_message, "traceback": record.traceback,
        },
        "output": output,
        "output_truncated": truncated,
        "has_log": (record.step, record.item) in logged,
    }


def run_detail(store: "Store", run_id: str) -> "dict[str, Any]":
    """``GET /api/runs/ID`` without what the server adds (live, actions)."""
    info = store.run_info(run_id)
    records = task_order(store.tasks(run_id))
    logged = logged_tasks(store, run_id, records)
    added = store.added_by(run_id)
    uses = step_uses(info, store.added_steps(run_id) if added and info.limits is not None else ())
    return {
        "run": run_json(info),
        "tasks": [task_json(store, r, logged, added, uses) for r in records],
        "attempts": [
            {"step": s, "item": None if i < 0 else i, "attempt": a, "started": b, "finished": e,
             "error_type": et, "error_message": em}
            for s, i, a, b, e, et, em in store.attempts(run_id)
        ],
        "graph": run_graph(store, info, records),
    }


def run_graph(store: "Store", info: "RunInfo", records: "list[TaskRecord]") -> "dict[str, Any] | None":
    """The run's graph as the page draws it, with each step's status; ``None``
    when the store has none (large flows skip it)."""
    graph = store.run_graph(info)
    if graph is None:
        return None
    return graph_json([str(n) for n in graph["nodes"]], graph["deps"], statuses(records), graph.get("added"))


def logged_tasks(store: "Store", run_id: str, records: "list[TaskRecord]") -> "set[tuple[str, int]]":
    """The tasks of the run that have logs (of those that ran)."""
    return store.logged(run_id, [(r.step, r.item) for r in records if r.started is not None])


def statuses(records: "list[TaskRecord]") -> "dict[str, str]":
    """Each step's status (``_present.step_status``: a map step without its own
    record takes its items' worst)."""
    own: dict[str, str] = {}
    items: dict[str, list[str]] = {}
    for r in records:
        if r.item < 0:
            own[r.step] = r.status
        else:
            items.setdefault(r.step, []).append(r.status)
    return {step: step_status(own.get(step), items.get(step, ())) for step in {**own, **items}}


def graph_json(
    names: "list[str]", deps: "list[list[int]]", status: "dict[str, str]", added: "dict[str, str] | None" = None,
) -> "dict[str, Any]":
    """The graph as the page draws it: positions for up to :data:`FULL_GRAPH`
    nodes, else layers with counts per status and a few names each; a step
    that a step added carries ``added_by`` (``added``: name -> who)."""
    added = added or {}
    if len(names) <= FULL_GRAPH:
        clean, xs, ys, width, height, routes = layout(len(names), deps)
        return {
            "mode": "full", "width": width, "height": height, "node_w": NODE_W, "node_h": NODE_H,
            "nodes": [
                {"name": name, "x": xs[v], "y": ys[v], "status": status.get(name, "pending"),
                 **({"added_by": added[name]} if name in added else {})}
                for v, name in enumerate(names)
            ],
            "edges": [[d, v] for v, ds in enumerate(clean) for d in ds],
            "routes": routes,  # each edge's [x, y] points, around the boxes it passes
        }
    n = len(names)
    level = layers([[d for d in ds if 0 <= d < n and d != v] for v, ds in enumerate(deps)])
    rows: list[dict[str, Any]] = [
        {"layer": k, "count": 0, "statuses": {}, "sample": []} for k in range(max(level, default=-1) + 1)
    ]
    for v, name in enumerate(names):
        row = rows[level[v]]
        row["count"] += 1
        st = status.get(name, "pending")
        row["statuses"][st] = row["statuses"].get(st, 0) + 1
        if len(row["sample"]) < SAMPLE:
            row["sample"].append(name)
    return {"mode": "layers", "total": n, "layers": rows}


def changes(
    store: "Store", run_id: str, seen: "dict[tuple[str, int], tuple[Any, ...]]", graph: bool = False
) -> "tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]":
    """The run's record, the tasks that changed since ``seen`` (updated in
    place: task -> its record's state) and, when ``graph`` is asked, the run's
    graph (``None`` while the store has none), for the events stream."""
    info = store.run_info(run_id)
    changed = []
    fresh = []
    everything = store.tasks(run_id, outputs=False)
    for r in everything:
        key = (r.step, r.item)
        state = (r.status, r.attempts, r.started, r.finished, r.error_type)
        if seen.get(key) != state:
            seen[key] = state
            fresh.append(key)
    if fresh:
        wanted = set(fresh)
        records = [r for r in store.tasks(run_id) if (r.step, r.item) in wanted]
        logged = logged_tasks(store, run_id, records)
        added = store.added_by(run_id)
        uses = step_uses(info, store.added_steps(run_id) if added and info.limits is not None else ())
        changed = [task_json(store, r, logged, added, uses) for r in records]
    return run_json(info), changed, run_graph(store, info, everything) if graph else None


def output(store: "Store", run_id: str, step: str, item: int) -> "dict[str, Any]":
    """``GET /api/runs/ID/output/STEP``: the whole output, as JSON when it is JSON."""
    value = store.output(run_id, step, item)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return {"output": preview(value, 1 << 30, indent=2), "json": False}
    return {"output": value, "json": True}


def jsonable(value: "Any") -> "Any":
    """``value`` if JSON can hold it, else its repr."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return preview(value, PREVIEW, indent=2)
    return value
