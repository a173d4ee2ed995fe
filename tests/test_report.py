"""The HTML report of a stored run: real runs kept in a MemoryStore, the
document parsed with ``html.parser``; the DAG, the timeline and the step
sections say what happened, and no user text reaches the page unescaped."""

import json
import time
from datetime import datetime, timezone
from html.parser import HTMLParser

import microdag
from microdag._render import render_report
from microdag.stores import MemoryStore, RunInfo, TaskRecord

VOID = {"meta", "br", "hr", "img", "input", "link"}
NASTY = "<b>&\"'"
SCRIPT = "<script>alert(1)</script>"


class Element:
    def __init__(self, doc: "Document", tag: str, attrs: "dict[str, str | None]") -> None:
        self.doc = doc
        self.tag = tag
        self.attrs = attrs
        self.start = self.end = len(doc.chunks)  # its text: doc.chunks[start:end]
        self.own: list[str] = []  # text directly inside, not in child elements

    @property
    def text(self) -> str:
        return "".join(self.doc.chunks[self.start : self.end])

    @property
    def label(self) -> str:
        return "".join(self.own)

    @property
    def classes(self) -> "list[str]":
        return (self.attrs.get("class") or "").split()


class Document(HTMLParser):
    """Every element with its attributes and text; fails on a misnested or unclosed tag."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.elements: list[Element] = []
        self.stack: list[Element] = []
        self.feed(source)
        self.close()
        assert [e.tag for e in self.stack] == [], "unclosed elements"

    def handle_starttag(self, tag, attrs):
        element = Element(self, tag, dict(attrs))
        self.elements.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag, attrs):
        self.elements.append(Element(self, tag, dict(attrs)))

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1].tag == tag, f"</{tag}> closes {self.stack[-1:]!r}"
        self.stack.pop().end = len(self.chunks)

    def handle_data(self, data):
        self.chunks.append(data)
        if self.stack:
            self.stack[-1].own.append(data)

    def find(self, tag: str, cls: "str | None" = None) -> "list[Element]":
        return [e for e in self.elements if e.tag == tag and (cls is None or cls in e.classes)]

    def nodes(self) -> "dict[str, tuple[str, dict]]":
        """Each DAG node's step -> (status, attributes of its rect)."""
        out = {}
        group = None
        for e in self.elements:
            if e.tag == "g" and "node" in e.classes:
                group = e
            elif e.tag == "rect" and group is not None:
                out[group.attrs["data-step"]] = (group.attrs["data-status"], e.attrs)
                group = None
        return out

    def by_id(self, id: str) -> Element:
        (found,) = [e for e in self.elements if e.attrs.get("id") == id]
        return found

    def section(self, step: str) -> Element:
        return self.by_id("step-" + step.encode().hex())


def graph_of(flow: microdag.Flow) -> dict:
    names = list(flow.graph.names)
    index = {name: i for i, name in enumerate(names)}
    nodes = flow.graph.to_dict()["nodes"]
    return {"nodes": names, "deps": [[index[d] for d in node["depends_on"]] for node in nodes]}


def report(flow: microdag.Flow, inputs=None, graph=True, extra=(), **options):
    """Run ``flow`` into a MemoryStore; return (store, run id, html, Document)."""
    store = MemoryStore()
    run = flow.run(inputs, store=store, raise_on_failure=False, on_failure="continue", **options)
    if extra:
        store.save(run.id, extra(run.id) if callable(extra) else extra)
    html = render_report(
        store.run_info(run.id),
        store.tasks(run.id, outputs=False),
        graph_of(flow) if graph else None,
        lambda step, item: store.logs(run.id, step, None if item < 0 else item),
        store.attempts(run.id),
    )
    return store, run.id, html, Document(html)


def fails(message):
    def step():
        raise ValueError(message)

    return step


def diamond() -> microdag.Flow:
    flow = microdag.Flow("diamond")
    flow.add("load", lambda n: list(range(n)))
    flow.add("left", lambda load: sum(load))
    flow.add("right", fails("right went wrong"), depends_on=["load"])
    flow.add("join", lambda left, right: left + right)
    flow.add("alone", lambda: print("alone says hi"))
    return flow


def test_the_dag_has_one_node_per_step_with_its_status_and_one_edge_per_dependency():
    store, run_id, html, doc = report(diamond(), {"n": 3})
    nodes = {g.attrs["data-step"]: g.attrs["data-status"] for g in doc.find("g", "node")}
    assert nodes == {
        "load": "succeeded", "left": "succeeded", "right": "failed",
        "join": "skipped", "alone": "succeeded",
    }
    assert len(doc.find("g", "node")) == 5
    assert len(doc.find("path", "edge")) == 4  # load->left, load->right, left->join, right->join
    assert doc.find("rect", "bar") and doc.find("svg", "dag")


def test_edges_run_from_each_dependency_to_its_dependent_layer_after_layer():
    flow = diamond()
    _, _, _, doc = report(flow, {"n": 3})
    x = {step: float(rect["x"]) for step, (_, rect) in doc.nodes().items()}
    assert x["load"] == x["alone"] < x["left"] == x["right"] < x["join"]


def test_dag_nodes_link_to_their_step_sections():
    _, _, _, doc = report(diamond(), {"n": 3})
    links = [a.attrs["href"] for a in doc.find("a") if a.attrs.get("href", "").startswith("#step-")]
    assert len(links) == 5
    for href in links:
        assert doc.by_id(href[1:]).tag == "section"


def test_the_header_names_the_flow_run_status_start_duration_and_inputs():
    store, run_id, html, doc = report(diamond(), {"n": 3})
    info = store.run_info(run_id)
    meta = doc.find("table", "meta")[0].text
    assert doc.find("h1")[0].text == "diamond"
    assert run_id in meta and "failed" in meta
    started = datetime.fromtimestamp(info.started, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    assert started in meta
    assert " ms" in meta or " s" in meta  # the run's duration
    assert json.loads(doc.find("pre", "inputs")[0].text) == {"n": 3}


def test_a_failed_step_shows_its_error_traceback_and_logs():
    flow = microdag.Flow("talk")

    def noisy():
        print("about to fail")
        raise KeyError("the missing key")

    flow.add("noisy", noisy)
    _, _, _, doc = report(flow)
    section = doc.section("noisy")
    assert "KeyError" in section.text and "the missing key" in section.text
    (tb,) = [e for e in doc.find("pre", "traceback")]
    assert tb.text.startswith("Traceback (most recent call last):") and "in noisy" in tb.text
    (log,) = doc.find("pre", "log")
    assert log.text == "about to fail\n"


def test_the_timeline_has_a_bar_per_task_that_ran_and_a_row_for_every_task():
    _, _, _, doc = report(diamond(), {"n": 3})
    bars = {r.attrs["data-task"]: r.attrs["data-status"] for r in doc.find("rect", "bar")}
    assert bars == {"load": "succeeded", "left": "succeeded", "right": "failed", "alone": "succeeded"}
    rows = [t.label for t in doc.find("text", "row")]
    assert sorted(rows) == ["alone", "join", "left", "load", "right"]
    assert len(doc.find("text", "tick")) >= 2
    tips = [t.text for t in doc.find("title") if t.text.startswith("right: failed")]
    assert tips and "started 20" in tips[0] and "finished 20" in tips[0]


def test_the_timeline_shows_the_attempt_count_of_a_retried_step():
    flow = microdag.Flow("retry")

    def flaky():
        if microdag.context().attempt < 3:
            raise OSError("not yet")
        return 1

    flow.add("flaky", flaky, retries=2)
    flow.add("steady", lambda: 1)
    _, _, _, doc = report(flow)
    (count,) = doc.find("text", "attempts")
    assert count.text == "\u00d73"
    assert "attempts 3" in doc.section("flaky").text
    # the two failed attempts are drawn too, before the last one, with their errors
    earlier = doc.find("rect", "attempt")
    assert [(e.attrs["data-task"], e.attrs["data-attempt"]) for e in earlier] == [("flaky", "1"), ("flaky", "2")]
    (last,) = [b for b in doc.find("rect", "bar") if b.attrs["data-task"] == "flaky"]
    assert float(earlier[0].attrs["x"]) <= float(earlier[1].attrs["x"]) <= float(last.attrs["x"])
    assert "attempt 1 failed: OSError: not yet" in earlier[0].text


def test_the_store_report_draws_retried_attempts():
    flow = microdag.Flow("retry-store")
    flow.add("flaky", fails("<b>again</b>"), retries=1)
    store = MemoryStore()
    run = flow.run(store=store, raise_on_failure=False)
    doc = Document(store.report(run.id))
    (earlier,) = doc.find("rect", "attempt")
    assert "attempt 1 failed: ValueError: <b>again</b>" in earlier.text  # as parsed back
    assert "<b>again" not in store.report(run.id)  # escaped in the file


def test_a_step_without_a_record_is_shown_pending_with_no_bar():
    flow = diamond()
    _, _, _, doc = report(flow, {"n": 3}, targets=["left"])
    nodes = {step: status for step, (status, _) in doc.nodes().items()}
    assert nodes == {"load": "succeeded", "left": "succeeded", "right": "pending",
                     "join": "pending", "alone": "pending"}
    assert {r.attrs["data-task"] for r in doc.find("rect", "bar")} == {"load", "left"}
    assert "Never started." in doc.section("join").text


def test_names_messages_logs_and_inputs_are_escaped_everywhere():
    flow = microdag.Flow(SCRIPT)

    def step(value):
        print(f"log {NASTY} {SCRIPT}")
        raise RuntimeError(f"message {NASTY} {SCRIPT}")

    flow.add(SCRIPT, step)
    flow.add(NASTY, lambda: 1, depends_on=[SCRIPT], trigger="all_done")
    _, _, html, doc = report(flow, {"value": f"input {NASTY} {SCRIPT}"})
    assert "<script" not in html.lower() and "<b>" not in html
    # every string reads back exactly, from text and attributes alike
    assert {g.attrs["data-step"] for g in doc.find("g", "node")} == {SCRIPT, NASTY}
    assert {r.attrs["data-task"] for r in doc.find("rect", "bar")} == {SCRIPT, NASTY}
    assert doc.find("h1")[0].text == SCRIPT
    section = doc.section(SCRIPT)
    assert f"RuntimeError: message {NASTY} {SCRIPT}" in section.text
    assert doc.find("pre", "log")[0].text == f"log {NASTY} {SCRIPT}\n"
    assert json.loads(doc.find("pre", "inputs")[0].text) == {"value": f"input {NASTY} {SCRIPT}"}
    assert doc.section(NASTY).tag == "section"


def test_lone_surrogates_do_not_keep_the_report_from_being_written():
    flow = microdag.Flow("paths")
    flow.add("odd", lambda: print("file \udcff.txt"))
    _, _, html, doc = report(flow)
    assert "odd" in {g.attrs["data-step"] for g in doc.find("g", "node")}
    html.encode("utf-8")  # a lone surrogate would raise here


def test_without_a_graph_the_steps_are_listed_and_the_rest_is_unchanged():
    _, _, html, doc = report(diamond(), {"n": 3}, graph=False)
    assert not doc.find("svg", "dag") and not doc.find("g", "node")
    assert "not recorded" in doc.find("p", "nograph")[0].text
    listed = [a.text for a in doc.find("a") if a.attrs.get("href", "").startswith("#step-")]
    assert sorted(listed) == ["alone", "join", "left", "load", "right"]
    assert len(doc.find("rect", "bar")) == 4
    assert "right went wrong" in doc.section("right").text


def test_map_items_appear_as_rows_with_their_failures_and_logs():
    flow = microdag.Flow("fan")
    flow.add("numbers", lambda: [1, 2, 3])

    def square(numbers):
        print(f"squaring {numbers}")
        if numbers == 2:
            raise ValueError("two is not allowed")
        return numbers * numbers

    flow.add("square", square, map="numbers")

    def items(run_id):  # a store recording each item's task beside the step's
        now = time.time()
        yield TaskRecord("square", 0, "succeeded", 1, now, now + 0.01)
        yield TaskRecord("square", 1, "failed", 2, now, now + 0.02, "ValueError",
                         "two is not allowed", "Traceback (most recent call last):\n...")
        yield TaskRecord("square", 2, "succeeded", 1, now + 0.01, now + 0.02)

    _, _, _, doc = report(flow, extra=items)
    bars = {r.attrs["data-task"]: r.attrs["data-status"] for r in doc.find("rect", "bar")}
    assert bars == {"numbers": "succeeded", "square": "failed", "square[0]": "succeeded",
                    "square[1]": "failed", "square[2]": "succeeded"}
    rows = [t.label for t in doc.find("text", "row")]
    assert rows.index("square") < rows.index("square[0]") < rows.index("square[2]")
    items_shown = {d.text.split(" ")[0]: d.text for d in doc.find("div", "item")}
    assert set(items_shown) == {"square[0]", "square[1]", "square[2]"}  # each printed something
    assert "two is not allowed" in items_shown["square[1]"] and "squaring 2" in items_shown["square[1]"]
    assert "squaring 3" in items_shown["square[2]"]
    assert "3 items: 2 succeeded, 1 failed" in doc.section("square").text


def test_a_report_built_from_records_alone_orders_rows_by_start():
    info = RunInfo("r", "manual", "fp", {}, "running", 100.0)
    tasks = [TaskRecord("late", -1, "running", 1, 105.0),
             TaskRecord("early", -1, "succeeded", 1, 101.0, 102.0)]
    graph = {"nodes": ["late", "early"], "deps": [[1], []]}
    doc = Document(render_report(info, tasks, graph, lambda s, i: ""))
    assert [t.label for t in doc.find("text", "row")] == ["early", "late"]
    bars = {r.attrs["data-task"]: r for r in doc.find("rect", "bar")}
    assert float(bars["early"].attrs["x"]) < float(bars["late"].attrs["x"])
    assert {g.attrs["data-status"] for g in doc.find("g", "node")} == {"running", "succeeded"}


def test_barycenter_ordering_untangles_parallel_chains():
    # Layer 1 is defined in the reverse order of layer 0: drawn naively, every edge crosses.
    n = 6
    names = [f"a{i}" for i in range(n)] + [f"b{i}" for i in range(n)]
    deps = [[] for _ in range(n)] + [[n - 1 - i] for i in range(n)]
    info = RunInfo("r", "chains", "fp", {}, "pending", 0.0)
    doc = Document(render_report(info, [], {"nodes": names, "deps": deps}, lambda s, i: ""))
    y = {step: float(rect["y"]) for step, (_, rect) in doc.nodes().items()}
    for i in range(n):
        assert y[f"b{i}"] == y[f"a{n - 1 - i}"]  # each edge is horizontal: no crossings


def test_a_1000_step_graph_and_chain_render_and_a_2000_step_chain_is_summarised():
    width, n = 40, 1000
    names = [f"s{i}" for i in range(n)]
    layered = [[] if i < width else [i - width, (i - width + 7) % width + (i // width - 1) * width]
               for i in range(n)]
    chain = [[i - 1] if i else [] for i in range(n)]
    info = RunInfo("r", "big", "fp", {}, "succeeded", 0.0, 1.0)
    tasks = [TaskRecord(name, -1, "succeeded", 1, i / n, (i + 1) / n) for i, name in enumerate(names)]
    doc = Document(render_report(info, tasks, {"nodes": names, "deps": layered}, lambda s, i: ""))
    assert len(doc.nodes()) == n
    assert len(doc.find("path", "edge")) == sum(len(set(d)) for d in layered)
    assert len(doc.find("rect", "bar")) == n
    html = render_report(info, tasks, {"nodes": names, "deps": chain}, lambda s, i: "")
    assert html.count('<g class="node"') == n and html.count('<path class="edge"') == n - 1
    n = 2000  # deeper than the recursion limit
    names = [f"s{i}" for i in range(n)]
    tasks = [TaskRecord(name, -1, "succeeded", 1, i / n, (i + 1) / n) for i, name in enumerate(names)]
    chain = [[i - 1] if i else [] for i in range(n)]
    doc = Document(render_report(info, tasks, {"nodes": names, "deps": chain}, lambda s, i: ""))
    assert [row.attrs["data-layer"] for row in doc.find("tr", "layer")] == [str(k) for k in range(n)]


def _wide(n: int, failing: "set[int]") -> microdag.Flow:
    """n steps in chains of 10; the steps in ``failing`` raise."""

    def ok(**deps: object) -> int:
        return 1

    def boom(**deps: object) -> int:
        raise ValueError(f"boom {SCRIPT}")

    flow = microdag.Flow("wide")
    for i in range(n):
        flow.add(f"s{i}", boom if i in failing else ok, depends_on=[f"s{i - 1}"] if i % 10 else [])
    return flow


def test_a_huge_run_is_summarised_with_its_counts_and_failures() -> None:
    n = 100_000
    store = MemoryStore()
    run = _wide(n, {15, 70_003}).run(store=store, on_failure="continue", raise_on_failure=False)
    html = store.report(run.id)
    assert len(html) < 1_500_000  # bounded by what is shown, not by the run (about 12 MB drawn whole)
    doc = Document(html)
    assert f"{n}: {n - 2 - 10} succeeded, 2 failed, 10 skipped" in doc.find("table", "meta")[0].text
    assert "100,000 steps are too many to draw one by one" in doc.find("p", "summary")[0].text
    assert sorted(e.attrs["id"] for e in doc.find("section", "step")) == sorted(
        "step-" + name.encode().hex() for name in ("s15", "s70003")
    )
    assert "ValueError: boom " + SCRIPT in doc.section("s15").text and SCRIPT not in html
    rows = doc.find("tr", "task")
    assert len(rows) == 1000 and rows[0].attrs["data-step"] == "s0"  # in the order the store keeps
    assert len(doc.find("rect", "bar")) == 100
    assert not doc.find("g", "node")  # no drawing of 100,000 boxes


def test_a_big_run_with_its_graph_is_drawn_by_layers() -> None:
    store = MemoryStore()
    run = _wide(5000, {3}).run(store=store, on_failure="continue", raise_on_failure=False)
    doc = Document(store.report(run.id))
    layers = doc.find("tr", "layer")
    assert len(layers) == 10  # chains of 10
    assert "500" in layers[0].text and "500 succeeded" in layers[0].text
    assert "499 succeeded, 1 failed" in layers[3].text and "499 succeeded, 1 skipped" in layers[9].text


def test_a_run_of_a_thousand_steps_keeps_the_full_drawing() -> None:
    store = MemoryStore()
    run = _wide(1000, {3}).run(store=store, on_failure="continue", raise_on_failure=False)
    doc = Document(store.report(run.id))
    assert len(doc.nodes()) == 1000 and not doc.find("p", "summary")
