"""The fingerprint of a flow's structure, which a resume checks.

It must be a function of the structure alone (step names and order,
dependencies, which parameter takes which output or input, maps, batch
sizes, triggers): the same for a flow however it was built or laid out,
different as soon as any of those change, and blind to retries, timeouts,
priorities and code.  Runs recorded with the first format resume too.
"""

import random
import sqlite3

import pytest

import microdag._plan as plan_module
from microdag import Flow, FlowError
from microdag.stores import SQLiteStore
from test_build import nothing, pair, total


def total_too(**deps: int) -> int:
    return 2 + sum(v for v in deps.values() if v is not None)


def shape(seed: int) -> "list[tuple[str, list[str]]]":
    rnd = random.Random(seed)
    steps: list[tuple[str, list[str]]] = []
    for k in range(40):
        names = [name for name, _ in steps]
        steps.append((f"s{k}", [rnd.choice(names) for _ in range(rnd.randint(0, 3))] if names else []))
    return steps


def fp(flow: Flow) -> str:
    return flow._compiled().fingerprint()


@pytest.mark.parametrize("seed", range(8))
def test_the_same_structure_has_one_fingerprint_however_built_or_laid_out(seed, monkeypatch) -> None:
    steps = shape(seed)
    one = Flow("f")
    for name, deps in steps:
        one.add(name, total, depends_on=deps)
    bulk = Flow("f").add_many([n for n, _ in steps], total, depends_on=[d for _, d in steps])
    mixed = Flow("f")  # two functions: keyword names kept per step, not shared with depends_on
    for k, (name, deps) in enumerate(steps):
        mixed.add(name, total if k % 2 else total_too, depends_on=deps, retries=k % 3, timeout=5.0 + k,
                  priority=k)
    want = fp(one)
    assert fp(bulk) == want and fp(mixed) == want
    monkeypatch.setattr(plan_module, "_FEW", 0)  # every step bound on its own
    each = Flow("f").add_many([n for n, _ in steps], total, depends_on=[d for _, d in steps])
    assert fp(each) == want
    # the first format agrees on what is the same
    assert one._compiled()._first_fingerprint() == each._compiled()._first_fingerprint()


def test_no_parameter_steps_fingerprint_alike_however_laid_out(monkeypatch) -> None:
    build = lambda: Flow("f").add("a", nothing).add("b", nothing, depends_on=["a"]).add("c", nothing)
    want = fp(build())
    monkeypatch.setattr(plan_module, "_FEW", 0)
    assert fp(build()) == want
    assert fp(Flow("f").add("a", nothing).add("b", nothing).add("c", nothing)) != want


def base() -> Flow:
    return (Flow("f").add("a", nothing).add("b", nothing).add("c", pair, inputs={"left": "a"})
            .add("d", total, depends_on=["a", "b"]))


@pytest.mark.parametrize("change", [
    lambda: Flow("f").add("a", nothing).add("b", nothing).add("c", pair, inputs={"left": "b"})
    .add("d", total, depends_on=["a", "b"]),  # another step bound
    lambda: Flow("f").add("a", nothing).add("b", nothing).add("c", pair, inputs={"left": "a", "right": "b"})
    .add("d", total, depends_on=["a", "b"]),  # one more binding
    lambda: Flow("f").add("a", nothing).add("b", nothing).add("c", pair, inputs={"left": "a"})
    .add("d", total, depends_on=["b", "a"]),  # dependencies in another order (keyword order)
    lambda: Flow("f").add("a", nothing).add("b", nothing).add("c", pair, inputs={"left": "a"})
    .add("d", total, depends_on=["a"]),  # one fewer
    lambda: Flow("f").add("a", nothing).add("b", nothing).add("c", pair, inputs={"left": "a"})
    .add("e", total, depends_on=["a", "b"]),  # renamed
    lambda: Flow("f").add("b", nothing).add("a", nothing).add("c", pair, inputs={"left": "a"})
    .add("d", total, depends_on=["a", "b"]),  # reordered
    lambda: Flow("f").add("a", nothing).add("b", nothing).add("c", pair, inputs={"left": "a"})
    .add("d", total, depends_on=["a", "b"], trigger="all_done"),  # a trigger
    lambda: Flow("f").add("a", nothing).add("b", nothing).add("c", pair, inputs={"left": "a"})
    .add("d", total, depends_on=["a", "b"]).add("x", nothing),  # one more step
    lambda: Flow("f").add("a", nothing).add("b", nothing).add("c", pair)
    .add("d", total, depends_on=["a", "b"]),  # a flow input instead of a step
])
def test_any_structural_change_changes_the_fingerprint(change) -> None:
    assert fp(change()) != fp(base())


def test_maps_and_batches_are_structure() -> None:
    def each(x):  # type: ignore[no-untyped-def]
        return x

    def items():  # type: ignore[no-untyped-def]
        return [1, 2]

    flows = [Flow("f").add("x", items).add("m", each, **options)
             for options in ({}, {"map": "x"}, {"map": "x", "batch_size": 2}, {"map": "x", "batch_size": 3})]
    assert len({fp(f) for f in flows}) == 4


def test_retries_timeouts_priorities_and_code_are_not_structure() -> None:
    plain = fp(base())
    tuned = (Flow("f").add("a", nothing, retries=3).add("b", nothing, timeout=2.0)
             .add("c", pair, inputs={"left": "a"}, priority=9).add("d", total_too, depends_on=["a", "b"]))
    assert fp(tuned) == plain


def test_names_of_a_str_subclass_and_hostile_text_fingerprint() -> None:
    class Name(str):
        pass

    odd = ["\x00", "\ud800", "é\n\"", Name("sub")]
    flow = Flow("f")
    for k, name in enumerate(odd):
        flow.add(name, total, depends_on=odd[:k])
    digest = fp(flow)
    assert len(digest) == 32 and digest == fp(Flow("f").add_many(odd, total, depends_on=[odd[:k] for k in range(4)]))


def test_a_run_recorded_with_the_first_format_resumes(tmp_path) -> None:
    path = str(tmp_path / "runs.db")
    flow = base().add("boom", pair, inputs={"left": "a", "right": "bad"})
    flow.add("bad", nothing)
    run = flow.run(store=SQLiteStore(path), run_id="old", raise_on_failure=False)
    assert run.status == "succeeded"
    first = flow._compiled()._first_fingerprint()
    assert first != fp(flow)
    with sqlite3.connect(path) as db:  # as a store written before the second format has it
        db.execute("UPDATE runs SET fingerprint = ? WHERE id = 'old'", (first,))
    again = flow.run(store=SQLiteStore(path), run_id="old", resume=True, keep_outputs=True)
    assert again.status == "succeeded" and again["boom"] == 2
    changed = base().add("boom", pair, inputs={"left": "b", "right": "bad"}).add("bad", nothing)
    with pytest.raises(FlowError, match="another version of flow"):
        changed.run(store=SQLiteStore(path), run_id="old", resume=True)
