"""OpenTelemetry traces (``microdag.otel.Tracing``) on every backend and both kernel twins.

One child process per twin runs the scenarios of ``otelsteps`` with the SDK's
in-memory exporter (a hang fails the test, with the child's stack dump); the
tests below check the spans it received: the tree, names, attributes, times,
parent links, errors, retries, timeouts, cancellation, and that a step's own
spans are children of its attempt's span, in worker processes too.
"""

import subprocess
import sys

import pytest

from support import child_env, run_cli, scenarios

pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed (the test extras have it)")

import otelsteps  # noqa: E402

BACKENDS = otelsteps.BACKENDS


def _results(twin: str) -> dict:
    return scenarios("otelsteps", twin, 120.0)


@pytest.fixture
def results(twin) -> dict:
    return _results(twin.TWIN)


def _steps(spans: list) -> dict:
    """Step spans by (step, attempt, item)."""
    out = {}
    for s in spans:
        if s["name"] == "microdag.step":
            a = s["attributes"]
            key = (a["microdag.step"], a["microdag.attempt"], a.get("microdag.item"))
            assert key not in out, f"two spans for {key}"
            out[key] = s
    return out


def _run_span(spans: list) -> dict:
    runs = [s for s in spans if s["name"] == "microdag.run"]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_run_span_under_the_callers_span_with_its_attributes(results, backend) -> None:
    r = results[backend]
    run = _run_span(r["spans"])
    assert run["parent"] == r["caller"]
    executor = {"executor": "ThreadPoolExecutor", "arun": "asyncio"}.get(backend, backend)
    assert run["attributes"] == {
        "microdag.flow": "traced", "microdag.run_id": r["run_id"], "microdag.executor": executor,
        "microdag.status": "failed", "error.type": "ValueError",
    }
    assert run["status"] == "ERROR" and run["description"] == "ValueError: bad <thing> \u2603"
    assert r["open"] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_step_span_per_attempt_and_map_item_under_the_run_span(results, backend) -> None:
    spans = results[backend]["spans"]
    run = _run_span(spans)
    steps = _steps(spans)
    assert set(steps) == {
        ("a", 1, None), ("b", 1, None), ("c", 1, 0), ("c", 1, 1), ("c", 1, 2),
        ("flaky", 1, None), ("flaky", 2, None), ("boom", 1, None),
    }  # a skipped step ran no attempt: no span
    for s in steps.values():
        assert s["parent"] == run["id"] and s["trace"] == run["trace"]
    inner = backend != "processes"  # the step's own span (see below)
    assert len(spans) == len(steps) + 1 + inner + 1  # and the caller's span


@pytest.mark.parametrize("backend", BACKENDS)
def test_attempt_spans_say_how_each_attempt_ended(results, backend) -> None:
    steps = _steps(results[backend]["spans"])
    ok = steps[("a", 1, None)]
    assert ok["status"] == "UNSET" and ok["attributes"]["microdag.status"] == "succeeded" and not ok["events"]
    assert "error.type" not in ok["attributes"]
    first, second = steps[("flaky", 1, None)], steps[("flaky", 2, None)]
    assert first["status"] == "ERROR" and first["description"] == "RuntimeError: first attempt fails"
    assert first["attributes"]["error.type"] == "RuntimeError"
    assert first["attributes"]["microdag.status"] == "failed"
    [(event, attributes)] = first["events"]
    assert event == "exception"
    assert attributes["exception.type"] == "RuntimeError"
    assert attributes["exception.message"] == "first attempt fails"
    assert second["status"] == "UNSET"
    assert second["start"] >= first["end"]  # the retry starts after the failed attempt, and its delay
    boom = steps[("boom", 1, None)]
    assert boom["status"] == "ERROR" and boom["attributes"]["error.type"] == "ValueError"
    assert boom["events"][0][1]["exception.message"] == "bad <thing> \u2603"


@pytest.mark.parametrize("backend", BACKENDS)
def test_span_times_are_those_of_the_attempts(results, backend) -> None:
    spans = results[backend]["spans"]
    run = _run_span(spans)
    steps = _steps(spans)
    for s in steps.values():
        assert run["start"] <= s["start"] <= s["end"] <= run["end"]
    # a step starts after what it depends on ended
    assert steps[("a", 1, None)]["end"] <= steps[("b", 1, None)]["start"]
    for item in range(3):
        assert steps[("b", 1, None)]["end"] <= steps[("c", 1, item)]["start"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_step_runs_with_its_attempt_span_current(results, backend) -> None:
    r = results[backend]
    b = _steps(r["spans"])[("b", 1, None)]
    assert r["b"] == [b["trace"], b["id"]]  # also in a worker process, from the ids passed across
    inner = [s for s in r["spans"] if s["name"] == otelsteps.INNER]
    if backend == "processes":
        assert inner == []  # made and exported (or not) by the worker process's own provider
    else:
        [span] = inner
        assert span["parent"] == b["id"] and span["trace"] == b["trace"]


@pytest.mark.parametrize("backend", ["inline", "threads", "processes"])
def test_a_timed_out_attempt_is_an_error_span_of_its_length(results, backend) -> None:
    r = results[f"{backend} timeout and cancel"]
    span = _steps(r["timed_out"])[("slow", 1, None)]
    assert span["status"] == "ERROR" and span["attributes"]["error.type"] == "TimeoutError"
    assert 0.19e9 <= span["end"] - span["start"] < 1.9e9


@pytest.mark.parametrize("backend", ["inline", "threads", "processes"])
def test_a_cancelled_run_ends_every_span(results, backend) -> None:
    r = results[f"{backend} timeout and cancel"]
    assert r["open"] == 0
    run = _run_span(r["cancelled"])
    assert run["attributes"]["microdag.status"] == "cancelled"
    span = _steps(r["cancelled"])[("slow", 1, None)]
    if backend == "processes":  # its worker was killed
        assert span["attributes"]["microdag.status"] == "cancelled"
        assert span["end"] - span["start"] < 1.5e9
    else:  # a thread cannot be stopped: the call finished
        assert span["attributes"]["microdag.status"] == "succeeded"


# -- in this process ---------------------------------------------------------------------------


def _memory_provider():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def label(value: str) -> str:
    from opentelemetry import trace

    trace.get_current_span().set_attribute("app.label", value)
    return value


def test_a_step_can_add_attributes_to_its_span() -> None:
    import microdag
    from microdag.otel import Tracing

    provider, exporter = _memory_provider()
    flow = microdag.Flow("labels").add("label", label)
    flow.run({"value": "x<1>"}, hooks=[Tracing(provider)])
    [step] = [s for s in exporter.get_finished_spans() if s.name == "microdag.step"]
    assert step.attributes["app.label"] == "x<1>"


def test_runs_sharing_one_tracing_hook_get_a_trace_each() -> None:
    import threading

    import microdag
    from microdag.otel import Tracing

    provider, exporter = _memory_provider()
    tracing = Tracing(provider)
    flow = microdag.Flow("shared").add("label", label)
    runs = []
    threads = [threading.Thread(target=lambda v=v: runs.append(flow.run({"value": v}, hooks=[tracing])))
               for v in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans = exporter.get_finished_spans()
    by_run = {s.attributes["microdag.run_id"]: s for s in spans if s.name == "microdag.run"}
    assert set(by_run) == {r.id for r in runs}
    for s in spans:
        if s.name == "microdag.step":
            parent = next(r for r in by_run.values() if r.context.span_id == s.parent.span_id)
            assert parent.context.trace_id == s.context.trace_id
            assert s.attributes["app.label"] == next(r.outputs["label"] for r in runs
                                                     if r.id == parent.attributes["microdag.run_id"])
    assert len({s.context.trace_id for s in by_run.values()}) == 4
    assert tracing._runs == {}


def _child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(),
                          timeout=60)


def test_without_the_api_tracing_says_how_to_install_it() -> None:
    done = _child(
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from microdag.otel import Tracing\n"
        "try:\n    Tracing()\nexcept ImportError as exc:\n    print(exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert 'pip install "microdag[otel]"' in done.stdout


def test_runs_without_tracing_never_import_opentelemetry() -> None:
    done = _child(
        "import sys, microdag\n"
        "f = microdag.Flow('f').add('a', lambda: 1)\n"
        "f.run(); f.run(executor='threads', hooks=[lambda e: None])\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _flow_file(tmp_path) -> str:
    import json

    path = tmp_path / "traced.json"
    path.write_text(json.dumps({
        "flow": {"name": "traced"},
        "steps": {
            "parent": {"command": [sys.executable, "-c", "import os; print(os.environ.get('TRACEPARENT', '-'))"]},
            "other": {"command": [sys.executable, "-c", "print('done')"]},
        },
    }))
    return str(path)


def _json_objects(text: str) -> list:
    import json

    decoder, out, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        obj, i = decoder.raw_decode(text, i)
        out.append(obj)


def test_cli_otel_exports_as_the_environment_says_and_tells_commands_their_span(tmp_path) -> None:
    flow = _flow_file(tmp_path)
    done = run_cli("run", flow, "--otel", "--store", "memory", "-q", "--json", cwd=tmp_path,
                OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="nightly")
    assert done.returncode == 0, done.stderr
    *spans, report = _json_objects(done.stdout)
    names = sorted(s["name"] for s in spans)
    assert names == ["microdag.run", "microdag.step", "microdag.step"]
    run = next(s for s in spans if s["name"] == "microdag.run")
    assert run["resource"]["attributes"]["service.name"] == "nightly"
    assert run["attributes"]["microdag.run_id"] == report["run_id"]
    step = next(s for s in spans if s["attributes"].get("microdag.step") == "parent")
    assert step["parent_id"] == run["context"]["span_id"]
    version, trace_id, span_id, flags = report["outputs"]["parent"].split("-")
    assert (f"0x{trace_id}", f"0x{span_id}") == (step["context"]["trace_id"], step["context"]["span_id"])


def test_cli_otel_names_what_is_missing(tmp_path) -> None:
    flow = _flow_file(tmp_path)
    done = run_cli("run", flow, "--otel", cwd=tmp_path, OTEL_TRACES_EXPORTER="zipkin_json")
    assert done.returncode == 2
    assert "--otel: OTEL_TRACES_EXPORTER names exporter 'zipkin_json', which is not installed" in done.stderr
    assert "Traceback" not in done.stderr
    code = ("import sys; sys.modules['opentelemetry.sdk'] = None\n"
            "from microdag.cli import main\n"
            f"sys.exit(main(['run', {flow!r}, '--otel']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env=child_env(), timeout=60)
    assert done.returncode == 2
    assert "pip install opentelemetry-sdk" in done.stderr and "Traceback" not in done.stderr


# -- a tracer that raises ----------------------------------------------------------------------


def _raising_provider(moment: str):
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    class Raising(SpanProcessor):
        calls = 0

        def on_start(self, span, parent_context=None):
            if moment == "on_start":
                Raising.calls += 1
                raise RuntimeError("processor broke on start")

        def on_end(self, span):
            if moment == "on_end":
                Raising.calls += 1
                raise RuntimeError("processor broke on end")

    provider = TracerProvider()
    provider.add_span_processor(Raising())
    return provider, Raising


@pytest.mark.parametrize("executor", ["inline", "threads", "processes"])
@pytest.mark.parametrize("moment", ["on_start", "on_end"])
def test_a_tracer_that_raises_never_changes_a_run_or_its_records(tmp_path, caplog, moment, executor) -> None:
    import microdag
    from microdag.otel import Tracing
    from microdag.stores import SQLiteStore

    provider, raising = _raising_provider(moment)
    flow = microdag.Flow("traced").add("first", otelsteps.first).add("second", otelsteps.second)
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        with caplog.at_level("WARNING", logger="microdag"):
            run = flow.run({"value": 1}, store=store, executor=executor, hooks=[Tracing(provider)])
        assert run.status == "succeeded" and run["second"] == 4
        assert store.run_info(run.id).status == "succeeded"
        assert {r.step: r.status for r in store.tasks(run.id)} == {"first": "succeeded", "second": "succeeded"}
    finally:
        store.close()
    assert raising.calls >= (1 if moment == "on_start" else 3)  # (a run span that failed to start has no steps)
    said = [r.getMessage() for r in caplog.records if "tracer" in r.getMessage()]
    assert len(said) == 1 and f"processor broke on {moment[3:]}" in said[0], said


def test_a_hook_that_raises_is_logged_once_and_the_run_goes_on(caplog) -> None:
    import microdag

    def hook(event):
        raise RuntimeError("hook broke")

    flow = microdag.Flow("hooked").add("first", otelsteps.first).add("second", otelsteps.second)
    with caplog.at_level("WARNING", logger="microdag"):
        run = flow.run({"value": 1}, hooks=[hook])
    assert run.status == "succeeded" and run["second"] == 4
    said = [r.getMessage() for r in caplog.records if "hook broke" in r.getMessage()]
    assert len(said) == 1, said
