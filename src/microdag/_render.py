"""A stored run as one self-contained HTML report: header, DAG, timeline, steps.

The document needs nothing else: inline CSS, inline SVG, no script, no
network.  It has four parts:

- the header: flow, run id, status, start (ISO 8601, UTC), duration, inputs
  (JSON), how many steps ended in each state, and the run's pools and rates
  when it had some;
- the DAG: one ``<g class="node" data-step data-status>`` per step (a rect
  coloured by status, the label cut to fit, the full name in ``<title>``,
  linking to the step's section) and one ``<path class="edge">`` per
  dependency, drawn from the dependency to its dependent along its route;
- the timeline: one row per task (map items as ``step[item]``), a bar from
  its start to its finish relative to the run's start, the attempt count when
  there were retries (its tooltip says how long it waited for its pools and
  rates, when it did), a time axis with "nice" ticks (1, 2 or 5 times a power
  of ten);
- one section per step (anchor ``step-`` + the hex of its UTF-8 name): status,
  attempts, duration, what it holds of the run's pools and rates and how long
  it waited for them, error and traceback, captured logs, and for map steps
  their items' failures and logs.

The DAG is laid out by :mod:`microdag._layout` (layers left to right, long
edges routed through lanes between the boxes they pass); each edge is drawn
along its route.  The drawing scales down to the page's width (at most to
a third of its size; a wider graph scrolls).

A run of more than ``FULL`` (1,000) steps is summarised instead of drawn:
the graph as a table of layers (steps and statuses per layer), every failed
or cancelled step's section (up to 1,000), a timeline of the 100 slowest
steps, and the first 1,000 steps in a table; the header says how many there
are and how to list them all.  Its size is bounded whatever the run's.

Every piece of user text (names, inputs, messages, tracebacks, logs) passes
through ``html.escape(..., quote=True)``, in text and attributes alike; lone
surrogates are written as backslash escapes so the document encodes as UTF-8.
"""

import heapq
import json
import math
from collections import Counter
from datetime import datetime, timezone
from html import escape
from operator import attrgetter, neg, not_, sub

from ._layout import NODE_H, NODE_W, layers, layout, smooth_path
from ._nogc import NoGC
from ._present import duration_text, item_label, limits_text, step_status, step_uses, uses_text, wait_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

    from ._records import RunInfo, TaskRecord

__all__ = ["render_report", "COLOURS"]

#: Status -> (fill, stroke).
COLOURS = {
    "succeeded": ("#d3f0db", "#2e9d5b"),
    "failed": ("#f8d4d4", "#d64545"),
    "skipped": ("#ececec", "#9a9a9a"),
    "cancelled": ("#fbe7c6", "#d98e04"),
    "pending": ("#ffffff", "#9a9a9a"),
    "running": ("#d6e6fd", "#3b7be0"),
}
#: DAG: the label's length.
_LABEL = 22
#: Steps drawn and listed one by one; a bigger run is summarised (:func:`_summary`).
FULL = 1000
#: In a summary: the steps listed (the first page), failures shown, slowest tasks drawn.
PAGE, FAILURES, SLOWEST = 1000, 1000, 100
#: Timeline: row height, label column and plot widths.
_ROW_H, _GANTT_LABEL_W, _GANTT_W = 20, 220, 760

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 2em 3em;color:#222}
h1{margin:.6em 0 .2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table.meta td{padding:1px 12px 1px 0;vertical-align:top}
pre{background:#f6f6f6;padding:8px;overflow:auto;max-height:30em;white-space:pre-wrap}
.scroll{overflow:auto;max-height:80vh;border:1px solid #eee}
.badge{display:inline-block;padding:0 8px;border-radius:9px;border:1px solid}
section.step{border-left:4px solid #ccc;padding:2px 12px;margin:12px 0}
section.step:target{background:#fffbe6}
.error{color:#b02020;font-weight:600}
svg.dag{display:block;height:auto}
svg text{font:12px system-ui,sans-serif}
.edge{fill:none;stroke:#8a8a8a;stroke-width:1.2}
.node a:hover rect{stroke-width:2.5}
.axis{stroke:#ddd}
table.layers td,table.tasks td{padding:1px 12px 1px 0;vertical-align:top}
"""


def render_report(
    info: "RunInfo",
    tasks: "list[TaskRecord]",
    graph: "dict[str, Any] | None",
    logs: "Callable[[str, int], str]",
    attempts: "Iterable[tuple[str, int, int, float, float, str, str]]" = (),
    added: "Iterable[Mapping[str, Any]]" = (),
) -> str:
    """One self-contained HTML document describing a stored run.

    Args:
        info: the run's record.
        tasks: its task records (outputs not needed); a step without one is
            shown as pending.
        graph: ``{"nodes": [names], "deps": [[dependency indices], ...]}``
            (and ``"added"``: steps that steps added -> who added each,
            drawn dashed), or ``None`` when it was not recorded (the steps are listed
            without the drawing).
        logs: ``logs(step, item)``: what that task printed and logged (item
            ``-1`` for a whole step), ``""`` when nothing.
        attempts: the retried attempts, ``(step, item, attempt, started,
            finished, error type, error message)`` (``Store.attempts``):
            drawn in the timeline before their task's last attempt.
        added: the recipes of the steps its steps added (``Store.added_steps``),
            for what they hold of the run's pools and rates.

    Returns:
        The HTML document.
    """
    with NoGC():  # (the tables of a big run: a million entries, none of them garbage)
        return _render_report(info, tasks, graph, logs, attempts, step_uses(info, added))


def _render_report(
    info: "RunInfo",
    tasks: "list[TaskRecord]",
    graph: "dict[str, Any] | None",
    logs: "Callable[[str, int], str]",
    attempts: "Iterable[tuple[str, int, int, float, float, str, str]]",
    held: "dict[str, dict[str, int]]",
) -> str:
    steps: dict[str, TaskRecord | None] = {}
    items: dict[str, list[TaskRecord]] = {}
    if graph is not None:
        steps.update((str(n), None) for n in graph["nodes"])
    whole = max(map(attrgetter("item"), tasks), default=-1) < 0
    if whole:  # no map items: a million steps are taken in whole lists
        steps.update(zip(map(attrgetter("step"), tasks), tasks))
    else:
        for t in tasks:
            if t.item < 0:
                steps[t.step] = t
            else:
                steps.setdefault(t.step, None)
                items.setdefault(t.step, []).append(t)
    if whole and len(steps) == len(tasks):  # (then every step has its record)
        status = dict(zip(steps, map(attrgetter("status"), steps.values())))
    else:
        status = {name: step_status(None if rec is None else rec.status, (t.status for t in items.get(name, ())))
                  for name, rec in steps.items()}
    tally = _tally(status.values())
    inputs = json.dumps(info.inputs, indent=2, sort_keys=True, default=repr, ensure_ascii=False)
    head = _header(info, len(steps), tally, inputs)
    if len(steps) > FULL:
        return _summary(info, steps, items, status, graph, logs, head, held)
    anchor = {name: "step-" + name.encode("utf-8", "surrogatepass").hex() for name in steps}
    added: dict[str, str] = {} if graph is None else graph.get("added", {})
    uses = _uses(held)
    out = [head, "<h2>Graph</h2>"]
    if graph is None:
        out.append('<p class="nograph">The graph was not recorded for this run (large flows '
                   "skip it); the steps are listed without the drawing.</p><ul>")
        for name in steps:
            link = f'<a href="#{anchor[name]}">{_esc(name)}</a>'
            out.append(f"<li>{link} {_badge(status[name])}</li>")
        out.append("</ul>")
    else:
        names = [str(n) for n in graph["nodes"]]
        out.append(_dag(names, graph["deps"], status, anchor, added))
    out.append("<h2>Timeline</h2>")
    earlier: dict[tuple[str, int], list[tuple[int, float, float, str, str]]] = {}
    for step, item, attempt, started, finished, etype, emsg in attempts:
        earlier.setdefault((step, item), []).append((attempt, started, finished, etype, emsg))
    out.append(_timeline(info, steps, items, earlier))
    out.append("<h2>Steps</h2>")
    for name, rec in steps.items():
        out.append(_section(name, rec, items.get(name, []), status[name], anchor[name], logs, added.get(name),
                            uses.get(name, "")))
    out.append("</body></html>\n")
    return "".join(out).encode("utf-8", "backslashreplace").decode("utf-8")


def _header(info: "RunInfo", count: int, tally: str, inputs: str) -> str:
    """The document's start: the run's flow, id, status, start, duration, steps and inputs."""
    return "".join([
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(info.flow)} run {_esc(info.id)}</title><style>{_CSS}</style></head><body>",
        f'<h1>{_esc(info.flow)}</h1><table class="meta">',
        f"<tr><td>run</td><td><code>{_esc(info.id)}</code></td></tr>",
        f"<tr><td>status</td><td>{_badge(info.status)}</td></tr>",
        f"<tr><td>started</td><td>{_esc(_iso(info.started))}</td></tr>",
        f"<tr><td>duration</td><td>{_esc(_span(info.started, info.finished, info.status))}</td></tr>",
        f"<tr><td>fingerprint</td><td><code>{_esc(info.fingerprint)}</code></td></tr>",
        f"<tr><td>steps</td><td>{count}: {_esc(tally)}</td></tr>",
        f"<tr><td>pools and rates</td><td>{_esc(limits_text(info.limits))}</td></tr>" if info.limits else "",
        f'</table><h3>inputs</h3><pre class="inputs">{_esc(inputs)}</pre>',
    ])


def _summary(
    info: "RunInfo",
    steps: "dict[str, TaskRecord | None]",
    items: "dict[str, list[TaskRecord]]",
    status: "dict[str, str]",
    graph: "dict[str, Any] | None",
    logs: "Callable[[str, int], str]",
    head: str,
    held: "dict[str, dict[str, int]]",
) -> str:
    """The report of a run too big to draw step by step: the graph by layers
    with counts, failures first, the slowest tasks, and the first page of the
    steps; everything else is counted, and ``show`` lists it."""
    names = list(steps)
    anchor = {}
    out = [
        head,
        f'<p class="summary">{len(steps):,} steps are too many to draw one by one: this report shows the graph '
        f"by layers, the failures, the {SLOWEST} slowest tasks and the first {PAGE:,} steps "
        f"(<code>python -m microdag show {_esc(info.id)} --json</code> lists them all).</p>",
        "<h2>Graph</h2>",
    ]
    if graph is None:
        out.append('<p class="nograph">The graph was not recorded for this run (large flows skip it).</p>')
    else:
        nodes = [str(n) for n in graph["nodes"]]
        n = len(nodes)
        level = layers([[d for d in ds if 0 <= d < n and d != v] for v, ds in enumerate(graph["deps"])])
        rows: list[list[int]] = [[] for _ in range(max(level, default=-1) + 1)]
        for v, lv in enumerate(level):
            rows[lv].append(v)
        out.append('<table class="layers"><tr><th>layer</th><th>steps</th><th>status</th><th>first steps</th></tr>')
        for lv, row in enumerate(rows):
            first = ", ".join(nodes[v] for v in row[:5]) + (", \u2026" if len(row) > 5 else "")
            out.append(f'<tr class="layer" data-layer="{lv}"><td>{lv}</td><td>{len(row):,}</td>'
                       f"<td>{_esc(_tally(status.get(nodes[v], 'pending') for v in row))}</td>"
                       f"<td>{_esc(first)}</td></tr>")
        out.append("</table>")
    bad = [s for s in names if status[s] in ("failed", "cancelled")] if (
        "failed" in status.values() or "cancelled" in status.values()) else []
    out.append(f"<h2>Failures</h2><p>{len(bad):,} steps failed or were cancelled"
               + (f"; the first {FAILURES:,} are shown" if len(bad) > FAILURES else "") + ".</p>")
    for name in bad[:FAILURES]:
        anchor[name] = "step-" + name.encode("utf-8", "surrogatepass").hex()
        out.append(_section(name, steps[name], items.get(name, []), status[name], anchor[name], logs))
    records = list(steps.values())
    # Every step has its record (not ``None in``, which calls __eq__ a million
    # times) and its times: the durations a list at a time; else one by one.
    whole = not any(map(not_, records))
    if whole:
        starts, ends = list(map(attrgetter("started"), records)), list(map(attrgetter("finished"), records))
        whole = None not in starts and None not in ends
    timed: "Iterable[tuple[float, int]]" = zip(map(sub, ends, starts), map(neg, range(len(records)))) if whole else [
        (r.finished - r.started, -k) for k, r in enumerate(records)
        if r is not None and r.started is not None and r.finished is not None]
    # (ties: the earlier step first)
    slowest = [(names[-k], steps[names[-k]]) for _, k in heapq.nlargest(SLOWEST, timed)]
    out.append(f"<h2>The {len(slowest)} slowest steps</h2>")
    out.append(_timeline(info, dict(slowest), {}, {}))
    out.append(f"<h2>Steps</h2><p>The first {min(PAGE, len(names)):,} of {len(names):,}.</p>"
               '<table class="tasks"><tr><th>step</th><th>status</th><th>attempts</th><th>duration</th>'
               + ("<th>uses</th><th>waited</th>" if info.limits else "") + "</tr>")
    uses = _uses(held)
    for name in names[:PAGE]:
        r = steps[name]
        took = "-" if r is None else _span(r.started, r.finished, r.status)
        link = f'<a href="#{anchor[name]}">{_esc(name)}</a>' if name in anchor else _esc(name)
        limited = "" if not info.limits else (
            f"<td>{_esc(uses.get(name) or '-')}</td><td>{_esc(wait_text(None if r is None else r.waited))}</td>")
        out.append(f'<tr class="task" data-step="{_esc(name)}"><td>{link}</td><td>{_badge(status[name])}</td>'
                   f"<td>{0 if r is None else r.attempts}</td><td>{_esc(took)}</td>{limited}</tr>")
    out.append("</table></body></html>\n")
    return "".join(out).encode("utf-8", "backslashreplace").decode("utf-8")


def _esc(value: "Any") -> str:
    return escape(str(value), quote=True)


def _tally(statuses: "Iterable[str]") -> str:
    counts = Counter(statuses)
    order = list(COLOURS)
    known = sorted((s for s in counts if s in COLOURS), key=order.index)
    return ", ".join(f"{counts[s]} {s}" for s in known + sorted(s for s in counts if s not in COLOURS))


def _badge(status: str) -> str:
    """A status as a coloured label; one this version does not know reads ``unknown: <status>``."""
    fill, stroke = COLOURS.get(status, COLOURS["pending"])
    style = f"background:{fill};border-color:{stroke}"
    label = status if status in COLOURS else f"unknown: {status}"
    return f'<span class="badge" style="{style}">{_esc(label)}</span>'


def _iso(t: "float | None") -> str:
    if t is None:
        return "-"
    stamp = datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _span(started: "float | None", finished: "float | None", status: str) -> str:
    if started is None:
        return "-"
    if finished is None:
        return "running" if status == "running" else "-"
    return duration_text(finished - started)


def _dag(
    names: "list[str]", raw: "list[list[int]]", status: "dict[str, str]", anchor: "dict[str, str]",
    added: "dict[str, str]",
) -> str:
    _, xs, ys, width, height, routes = layout(len(names), raw)
    out = [f'<div class="scroll"><svg class="dag" xmlns="http://www.w3.org/2000/svg" width="100%" '
           f'viewBox="0 0 {width} {height}" style="max-width:{width}px;min-width:{width // 3}px">']
    half = NODE_H // 2
    out.extend(f'<path class="edge" d="{smooth_path(route)}"/>' for route in routes)
    for v, name in enumerate(names):
        st = status.get(name, "pending")
        fill, stroke = COLOURS.get(st, COLOURS["pending"])
        label = name if len(name) <= _LABEL else name[: _LABEL - 1] + "\u2026"
        x, y = xs[v], ys[v]
        by = added.get(name)  # a step a step added: dashed, and said in its title
        dashed = "" if by is None else ' stroke-dasharray="5 3"'
        out.append(
            f'<g class="node" data-step="{_esc(name)}" data-status="{_esc(st)}">'
            f'<a href="#{anchor[name]}"><title>{_esc(name)} ({_esc(st)})'
            f'{"" if by is None else ", added by " + _esc(by)}</title>'
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="5" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="1.5"{dashed}/>'
            f'<text x="{x + 8}" y="{y + half + 4}">{_esc(label)}</text></a></g>'
        )
    out.append("</svg></div>")
    return "".join(out)


def _ticks(span: float) -> "list[float]":
    """Tick times from 0 to ``span``: multiples of 1, 2 or 5 times a power of ten, at most 9."""
    if span <= 0:
        return [0.0]
    step = 10.0 ** math.floor(math.log10(span / 5))
    for f in (1, 2, 5, 10):
        if span / (step * f) <= 8:
            step *= f
            break
    return [k * step for k in range(int(span / step + 1e-9) + 1)]


def _timeline(
    info: "RunInfo",
    steps: "dict[str, TaskRecord | None]",
    items: "dict[str, list[TaskRecord]]",
    earlier: "dict[tuple[str, int], list[tuple[int, float, float, str, str]]]",
) -> str:
    rows: list[tuple[str, TaskRecord | None]] = []
    for name, rec in sorted(steps.items(), key=lambda kv: _start_key(kv[1], items.get(kv[0]))):
        rows.append((name, rec))
        rows.extend((f"{name}[{item_label(t)}]", t) for t in sorted(items.get(name, ()), key=_item))
    t0 = info.started
    times = [t for _, r in rows if r is not None for t in (r.started, r.finished) if t is not None]
    times.extend(t for tries in earlier.values() for _, a, b, _, _ in tries for t in (a, b))
    end = max(times + [t0, info.finished or t0])
    scale = _GANTT_W / (end - t0) if end > t0 else 0.0
    height = 30 + len(rows) * _ROW_H
    width = _GANTT_LABEL_W + _GANTT_W + 60
    out = [f'<div class="scroll"><svg class="timeline" xmlns="http://www.w3.org/2000/svg" '
           f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    for tick in _ticks(end - t0):
        x = _GANTT_LABEL_W + tick * scale
        out.append(f'<line class="axis" x1="{x:.1f}" y1="18" x2="{x:.1f}" y2="{height}"/>'
                   f'<text class="tick" x="{x:.1f}" y="12" text-anchor="middle">'
                   f"{_esc(duration_text(tick) if tick else '0')}</text>")
    for k, (label, rec) in enumerate(rows):
        y = 24 + k * _ROW_H
        short = label if len(label) <= 30 else label[:29] + "\u2026"
        out.append(f'<text class="row" x="4" y="{y + 12}">'
                   f"<title>{_esc(label)}</title>{_esc(short)}</text>")
        if rec is None or rec.started is None:
            continue
        failed_fill, failed_stroke = COLOURS["failed"]
        for attempt, a, b, etype, emsg in earlier.get((rec.step, rec.item), ()):
            ax = _GANTT_LABEL_W + (a - t0) * scale
            aw = max(1.0, (b - a) * scale)
            tip = (f"{label}: attempt {attempt} failed: {etype}: {emsg}\nstarted {_iso(a)}\n"
                   f"finished {_iso(b)}\nduration {_span(a, b, 'failed')}")
            out.append(f'<rect class="attempt" data-task="{_esc(label)}" data-attempt="{attempt}" '
                       f'x="{ax:.1f}" y="{y + 2}" width="{aw:.1f}" height="{_ROW_H - 5}" fill="{failed_fill}" '
                       f'stroke="{failed_stroke}" stroke-dasharray="3 2" opacity="0.6">'
                       f"<title>{_esc(tip)}</title></rect>")
        st = rec.status
        fill, stroke = COLOURS.get(st, COLOURS["pending"])
        x = _GANTT_LABEL_W + (rec.started - t0) * scale
        w = max(1.0, ((rec.finished if rec.finished is not None else end) - rec.started) * scale)
        tip = (f"{label}: {st}, attempts {rec.attempts}\nstarted {_iso(rec.started)}\n"
               f"finished {_iso(rec.finished)}\nduration {_span(rec.started, rec.finished, st)}"
               + (f"\nwaited {wait_text(rec.waited)} for its pools and rates" if rec.waited else ""))
        out.append(f'<rect class="bar" data-task="{_esc(label)}" data-status="{_esc(st)}" '
                   f'x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{_ROW_H - 5}" fill="{fill}" '
                   f'stroke="{stroke}"><title>{_esc(tip)}</title></rect>')
        if rec.attempts > 1:
            out.append(f'<text class="attempts" x="{x + w + 4:.1f}" y="{y + 13}">'
                       f"\u00d7{rec.attempts}</text>")
    out.append("</svg></div>")
    return "".join(out)


def _uses(held: "dict[str, dict[str, int]]") -> "dict[str, str]":
    """Step name -> what it holds of the run's pools and rates (``held``: :func:`step_uses`'s), as text."""
    return {name: uses_text(u) for name, u in held.items()}


def _held(uses: str, waited: "float | None") -> str:
    """`` · uses db=1 · waited 1.20 s`` after a task's attempts (each part when there is one)."""
    out = f" &middot; uses {_esc(uses)}" if uses else ""
    return out + (f" &middot; waited {_esc(wait_text(waited))}" if waited else "")


def _item(t: "TaskRecord") -> int:
    return t.item


def _start_key(rec: "TaskRecord | None", items: "list[TaskRecord] | None") -> "tuple[bool, float]":
    """Steps sort by their first start; those that never started go last, in order."""
    records = ([rec] if rec is not None else []) + (items or [])
    starts = [t.started for t in records if t.started is not None]
    return (not starts, min(starts, default=0.0))


def _section(
    name: str,
    rec: "TaskRecord | None",
    items: "list[TaskRecord]",
    status: str,
    anchor: str,
    logs: "Callable[[str, int], str]",
    added_by: "str | None" = None,
    uses: str = "",
) -> str:
    stroke = COLOURS.get(status, COLOURS["pending"])[1]
    out = [f'<section class="step" id="{anchor}" style="border-left-color:{stroke}">'
           f"<h3>{_esc(name)} {_badge(status)}</h3>"]
    if added_by is not None:
        out.append(f'<p class="added">added by step {_esc(added_by)} as the run ran</p>')
    if rec is not None and rec.started is not None:
        duration = _span(rec.started, rec.finished, rec.status)
        out.append(f"<p>attempts {rec.attempts} &middot; started {_esc(_iso(rec.started))} "
                   f"&middot; duration {_esc(duration)}{_held(uses, rec.waited)}</p>")
    elif not items:
        out.append('<p class="idle">Never started.</p>')
    if rec is not None:
        out.append(_error(rec))
    text = logs(name, -1)
    if text:
        out.append(f'<h4>logs</h4><pre class="log">{_esc(text)}</pre>')
    if items:
        out.append(f"<p>{len(items)} items: {_esc(_tally(t.status for t in items))}</p>")
    for t in sorted(items, key=_item):
        text = logs(name, t.item)
        if t.error_type is None and t.status != "failed" and not text:
            continue
        duration = _span(t.started, t.finished, t.status)
        out.append(f'<div class="item"><h4>{_esc(name)}[{_esc(item_label(t))}] {_badge(t.status)}</h4>'
                   f"<p>attempts {t.attempts} &middot; duration {_esc(duration)}{_held('', t.waited)}</p>"
                   f"{_error(t)}")
        if text:
            out.append(f'<pre class="log">{_esc(text)}</pre>')
        out.append("</div>")
    out.append("</section>")
    return "".join(out)


def _error(rec: "TaskRecord") -> str:
    if rec.error_type is None and not rec.error_message:
        return ""
    out = f'<p class="error">{_esc(rec.error_type or "error")}: {_esc(rec.error_message or "")}</p>'
    if rec.traceback:
        out += f'<pre class="traceback">{_esc(rec.traceback)}</pre>'
    return out
