"""Differential tests: the same random flow, run inline and on threads (and
through a foreign executor), ends in the same state, step by step.

Random DAGs of steps with random trigger rules, some steps failing, some
skipping themselves, some mapping over their inputs; under both failure
policies. Inline is the reference: the threads backend and an executor must
agree on every task's status and on every kept output (under ``continue``,
where the outcome does not depend on timing).
"""

from concurrent.futures import ThreadPoolExecutor

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import microdag

TRIGGERS = ("all_success", "all_done", "none_failed")


def make_step(kind: str, deps: list[str]):
    """A step function over ``deps`` that succeeds, fails or skips itself."""

    def step(**kwargs):
        values = [v for v in kwargs.values() if isinstance(v, int)]
        if kind == "fail":
            raise ValueError("planned failure")
        if kind == "skip":
            raise microdag.Skip("planned skip")
        return 1 + sum(values)

    return step


def square(x: int) -> int:
    if x == 3:
        raise ValueError("item 3 fails")
    return x * x


@st.composite
def flows(draw):
    n = draw(st.integers(1, 12))
    specs = []
    for i in range(n):
        deps = sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else []
        kind = draw(st.sampled_from(["ok", "ok", "ok", "fail", "skip"]))
        trigger = draw(st.sampled_from(TRIGGERS))
        specs.append((f"s{i}", [f"s{d}" for d in deps], kind, trigger))
    with_map = draw(st.booleans())
    return specs, with_map


def build(specs, with_map: bool) -> microdag.Flow:
    flow = microdag.Flow("random")
    for name, deps, kind, trigger in specs:
        flow.add(name, make_step(kind, deps), depends_on=deps, trigger=trigger)
    if with_map:
        flow.add("items", lambda: [1, 2, 3, 4])
        flow.add("squares", square, map="x", inputs={"x": "items"})
    return flow


def outcome(run: microdag.Run) -> dict[str, tuple[str, object]]:
    return {name: (task.status, run.outputs.get(name)) for name, task in run.tasks.items()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows())
def test_threads_and_executors_agree_with_inline_under_continue(case) -> None:
    specs, with_map = case
    flow = build(specs, with_map)
    reference = flow.run(on_failure="continue", raise_on_failure=False, keep_outputs=True)
    threads = flow.run(
        on_failure="continue", raise_on_failure=False, keep_outputs=True, executor="threads", max_workers=3
    )
    with ThreadPoolExecutor(2) as pool:
        foreign = flow.run(on_failure="continue", raise_on_failure=False, keep_outputs=True, executor=pool)
    assert outcome(threads) == outcome(reference)
    assert outcome(foreign) == outcome(reference)
    assert threads.status == foreign.status == reference.status
    failed = any(t.status == "failed" for t in reference.tasks.values())
    assert reference.status == ("failed" if failed else "succeeded")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows())
def test_fail_fast_ends_every_task_and_reports_the_failure(case) -> None:
    specs, with_map = case
    flow = build(specs, with_map)
    for executor in ("inline", "threads"):
        run = flow.run(raise_on_failure=False, executor=executor, max_workers=3)
        statuses = {t.status for t in run.tasks.values()}
        assert statuses <= {"succeeded", "failed", "skipped", "cancelled"}
        if "failed" in statuses:
            assert run.status == "failed" and run.error is not None
        else:
            assert run.status == "succeeded" and "cancelled" not in statuses
