"""Resource pools and rate limits (``Flow.run(pools=, rates=)``, a step's ``uses``).

On every backend (inline, threads, processes, a ``concurrent.futures``
executor, ``arun``, a Dask cluster): the run ends, its outputs are an inline
run's, and no pool is ever over its size (each step returns the interval it
ran in, and the most intervals open at once is counted); a step waiting for a
pool holds no worker while another could run (a scheduler that waits for the
head of its queue fails that test); a rate spaces its calls (50 calls at
``20/s`` take about 2.5 s, no window holding more than the bucket allows),
and retries take tokens too; ``validate`` and a run refuse a step asking more
than a pool holds or a pool nobody gives, listing every problem; workers
refuse pools.  The kernel's side is ``test_limits_kernel.py``.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest

import limitsteps as ls
import microdag
from flowsteps import within
from microdag import Flow, FlowError

BACKENDS = ["inline", "threads", "processes", "executor", "asyncio", "dask"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest):
    """How to run a flow on each backend: a function of (flow, **options)."""
    name = request.param
    if name == "asyncio":
        yield lambda flow, **kw: asyncio.run(flow.arun(**kw))
    elif name == "executor":
        with ThreadPoolExecutor(max_workers=4) as pool:
            yield lambda flow, **kw: flow.run(executor=pool, **kw)
    elif name == "dask":
        client = request.getfixturevalue("dask_client")
        yield lambda flow, **kw: flow.run(executor=client, **kw)
    else:
        if name == "processes":
            request.getfixturevalue("warm_forkserver")
        yield lambda flow, **kw: flow.run(executor=name, **kw)


def mixed(async_steps: bool = False) -> Flow:
    """Steps holding ``db`` (size 2) or ``gpu`` (size 1) or both, free steps,
    a retried step and a map step whose items hold ``db``."""
    flow = Flow("mixed")
    fn = ls.held_async if async_steps else ls.held
    for j in range(6):
        flow.add(f"db{j}", fn, uses="db")
    flow.add("both", ls.held, uses={"db": 1, "gpu": 1})
    flow.add("gpu", ls.held, uses="gpu", depends_on=["db0"])
    flow.add("heavy", ls.held, uses={"db": 2})
    flow.add("flaky", ls.flaky, uses="db", retries=1)
    for j in range(3):
        flow.add(f"free{j}", ls.held)
    flow.add("items", ls.five)
    flow.add("each", ls.item, inputs={"x": "items"}, map="x", uses="db")
    return flow


def intervals(run: microdag.Run, flow: Flow, pool: str) -> list:
    out = []
    for name in run.tasks:
        uses = dict(_uses(flow, name))
        if pool not in uses:
            continue
        value = run[name]
        spans = value if name == "each" else [value]
        out.extend(tuple(s) for s in spans for _ in range(uses[pool]))  # a span per unit held
    return out


def _uses(flow: Flow, name: str):
    return flow._compiled().options[flow._index[name]].uses


def test_no_pool_is_ever_over_its_size_on_any_backend(backend) -> None:
    flow = mixed()
    run = within(120, lambda: backend(flow, max_workers=4, keep_outputs=True, pools={"db": 2, "gpu": 1}))
    assert run.status == "succeeded"
    inline = mixed().run(keep_outputs=True, pools={"db": 2, "gpu": 1})
    assert {n: t.status for n, t in run.tasks.items()} == {n: t.status for n, t in inline.tasks.items()}
    assert set(run.outputs) == set(inline.outputs)
    assert run.tasks["flaky"].attempts == 2
    assert len(run["each"]) == 5
    assert ls.most_at_once(intervals(run, flow, "db")) <= 2
    assert ls.most_at_once(intervals(run, flow, "gpu")) <= 1


def test_async_steps_wait_for_their_pool_without_blocking_the_loop() -> None:
    flow = mixed(async_steps=True)
    run = within(60, lambda: asyncio.run(flow.arun(keep_outputs=True, pools={"db": 2, "gpu": 1}, max_workers=8)))
    assert run.status == "succeeded"
    assert ls.most_at_once(intervals(run, flow, "db")) <= 2


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_a_free_worker_runs_a_step_that_fits_while_others_wait(executor, request) -> None:
    # The db steps come first (higher priority), but only one fits at a time:
    # a scheduler that waits for the head of its queue would leave the second
    # worker idle until all four are done.  The free steps run beside them.
    # (The db steps last long enough for the second worker to have started,
    # a process's start included.)
    if executor == "processes":
        request.getfixturevalue("warm_forkserver")
    flow = Flow("greedy")
    for j in range(4):
        flow.add(f"db{j}", partial(ls.held, seconds=0.25), uses="db", priority=10)
    for j in range(3):
        flow.add(f"free{j}", ls.held)
    run = within(60, lambda: flow.run(executor=executor, max_workers=2, keep_outputs=True, pools={"db": 1}))
    db = [run[f"db{j}"] for j in range(4)]
    free = [run[f"free{j}"] for j in range(3)]
    assert ls.most_at_once(db) == 1
    first_db_end = min(b for _, b in db)
    assert all(a < max(b for _, b in db) for a, _ in free)  # the free steps did not wait for every db step
    assert min(a for a, _ in free) < first_db_end  # one ran beside the first db step


def test_a_rate_spaces_its_calls() -> None:
    flow = Flow("calls")
    for j in range(50):
        flow.add(f"c{j}", ls.call, uses="api")
    run = within(60, lambda: flow.run(executor="threads", max_workers=4, keep_outputs=True, rates={"api": "20/s"}))
    times = sorted(run[f"c{j}"] for j in range(50))
    took = times[-1] - times[0]
    assert 2.3 <= took <= 3.5  # 49 gaps of 50 ms, and the scheduling's latency
    # No window of a second holds more than the bucket's token and 20 more.
    assert max(sum(1 for t in times if s <= t < s + 1.0) for s in times) <= 21


def test_retries_take_tokens_too() -> None:
    flow = Flow("retried")
    for j in range(3):
        flow.add(f"c{j}", ls.flaky_call, uses="api", retries=1)
    run = within(60, lambda: flow.run(keep_outputs=True, rates={"api": "10/s"}))
    assert run.status == "succeeded"
    assert [run.tasks[f"c{j}"].attempts for j in range(3)] == [2, 2, 2]
    times = sorted(run[f"c{j}"] for j in range(3))
    assert times[-1] - times[0] >= 0.15  # 6 attempts, a token each, 0.1 s apart


def test_a_rate_per_minute_and_a_burst() -> None:
    from microdag.runner._limits import parse_rate

    assert parse_rate("600/min") == (10.0, 1)
    assert parse_rate("5/h") == (5 / 3600, 1)
    assert parse_rate("10/s burst 5") == (10.0, 5)
    for bad in ("10", "10/d", "0/s", "x/s", "10/s burst 0", 10):
        with pytest.raises(ValueError, match="a rate is"):
            parse_rate(bad)
    flow = Flow("burst")
    for j in range(5):
        flow.add(f"c{j}", ls.call, uses="api")
    run = flow.run(keep_outputs=True, rates={"api": "1/min burst 5"})
    assert run.status == "succeeded"  # five tokens at once, no wait


def test_validate_and_run_refuse_every_bad_use_at_once() -> None:
    flow = Flow("bad", pools={"db": 2}, rates={"api": "5/s"})
    flow.add("big", ls.held, uses={"db": 3})
    flow.add("unknown", ls.held, uses="gpu")
    flow.add("fine", ls.held, uses={"db": 2, "api": 1})
    with pytest.raises(FlowError) as info:
        flow.validate()
    assert info.value.problems == [
        "step 'big' uses 3 units of pool 'db', which holds 2",
        "step 'unknown' uses 'gpu', which is no pool or rate of this run (pools and rates: 'api', 'db')",
    ]
    with pytest.raises(FlowError, match="'big' uses 3 units"):
        flow.run()
    run = flow.run(pools={"db": 3, "gpu": 1})  # a run's pools add to the flow's and replace its sizes
    assert run.status == "succeeded"
    plain = Flow("plain").add("a", ls.held, uses="db")
    plain.validate()  # no pools declared: a run gives them
    with pytest.raises(FlowError, match="no pool or rate of this run"):
        plain.run()
    with pytest.raises(FlowError) as info:
        plain.run(pools={"db": 0, "x": "2"}, rates={"r": "fast", "db": "1/s"})
    assert len(info.value.problems) == 4


def test_a_step_option_is_checked_as_it_is_added() -> None:
    with pytest.raises(FlowError, match="uses must name a pool or rate"):
        Flow("f").add("a", ls.held, uses={"db": 0})
    with pytest.raises(FlowError, match="uses must name a pool or rate"):
        Flow("f").add("a", ls.held, uses=3)


def test_each_run_has_its_own_sizes() -> None:
    flow = Flow("again")
    for j in range(3):
        flow.add(f"s{j}", ls.held, uses="db")
    for size in (1, 3, 1):
        run = flow.run(executor="threads", max_workers=3, keep_outputs=True, pools={"db": size})
        assert ls.most_at_once([run[f"s{j}"] for j in range(3)]) <= size
    assert ls.most_at_once([run[f"s{j}"] for j in range(3)]) == 1


FLOW_FILE = """\
[flow]
name = "limited"

[pools]
db = 2

[rates]
api = "50/s"

[steps.a]
call = "limitsteps:held"
uses = "db"

[steps.b]
call = "limitsteps:held"
uses = {db = 2, api = 1}

[steps.c]
call = "limitsteps:held"
uses = "api"
"""


def test_a_flow_file_declares_pools_and_rates(tmp_path) -> None:
    from microdag._spec import load_flow

    path = tmp_path / "limited.toml"
    path.write_text(FLOW_FILE)
    flow = load_flow(str(path))
    run = flow.run(executor="threads", max_workers=3, keep_outputs=True)
    assert run.status == "succeeded"
    assert ls.most_at_once([run["a"], run["b"], run["b"]]) <= 2  # b holds both units
    path.write_text(FLOW_FILE.replace("db = 2, api", "db = 3, api").replace('uses = "api"', 'uses = "gpu"')
                    .replace('"50/s"', '"fast"').replace("db = 2\n", "db = 0\n"))
    with pytest.raises(FlowError) as info:
        load_flow(str(path))
    problems = info.value.problems
    assert any(":5: [pools] 'db': a pool's size is an integer >= 1, not 0" in p for p in problems), problems
    assert any(":8: [rates] 'api': a rate is" in p for p in problems), problems
    assert any(":20: step 'c' uses 'gpu', which is no pool or rate" in p for p in problems), problems


def test_the_command_line_gives_pools_and_rates(tmp_path, capsys) -> None:
    from support import cli

    path = tmp_path / "limited.toml"
    path.write_text(FLOW_FILE)
    code, out, err = cli(capsys, "run", path, "--pool", "db=1", "--store", "memory", "-q")
    assert code == 2 and "step 'b' uses 2 units of pool 'db', which holds 1" in err
    code, out, err = cli(capsys, "run", path, "--pool", "db=3", "--rate", "api=10/s burst 2", "--store", "memory",
                         "-q")
    assert code == 0, err
    code, out, err = cli(capsys, "run", path, "--rate", "api=10")
    assert code == 2 and "argument --rate: a rate is" in err


def test_the_time_a_step_waited_is_told_to_hooks_and_tracers() -> None:
    events = []
    flow = Flow("waits")
    for j in range(3):
        flow.add(f"s{j}", ls.held, uses="db")
    flow.run(hooks=[events.append], pools={"db": 1}, executor="threads", max_workers=3)
    waited = sorted(e.waited for e in events if e.kind == "step_started")
    assert waited[0] < 0.01 and waited[-1] >= 0.03  # the last one waited for two others
    assert "waited=" in repr(next(e for e in events if e.kind == "step_started"))


def test_a_traced_attempt_says_how_long_it_waited() -> None:
    pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed (the test extras have it)")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from microdag.otel import Tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    flow = Flow("traced")
    for j in range(2):
        flow.add(f"s{j}", ls.held, uses="db")
    flow.run(hooks=[Tracing(provider)], pools={"db": 1}, executor="threads", max_workers=2)
    waits = [s.attributes.get("microdag.pool.wait_s") for s in exporter.get_finished_spans() if s.name == "microdag.step"]
    assert len(waits) == 2 and waits.count(None) == 1 and max(w for w in waits if w) >= 0.01
