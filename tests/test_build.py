"""Building flows: ``Flow.add_many``, shared options, and compiling large flows.

A flow built with ``add_many`` must be the flow built with ``add`` one step
at a time (same steps, bindings, graph, options and runs), whatever the
shapes: random flows are built both ways and compared field by field.  Bad
input to ``add_many`` is refused whole, naming each problem, and leaves the
flow as it was.  A compiled flow keeps using the lists it was compiled from
while the flow grows.
"""

import random

import pytest

import microdag
from microdag import CycleError, Flow, FlowError
from microdag._result import failed_tasks, status_counts


def total(**deps: int) -> int:
    return 1 + sum(v for v in deps.values() if v is not None)


def nothing() -> int:
    return 1


def pair(left: int, right: int = 0) -> int:
    return left + right


def layout(flow: Flow) -> dict:
    """Everything compiling made of ``flow``, as plain data."""
    plan = flow._compiled()
    fields = ("retries", "retry_delay", "retry_backoff", "retry_max_delay", "retry_on", "timeout", "priority",
              "trigger", "map", "batch_size", "cache", "cache_ttl")
    return {
        "names": flow.steps,
        "deps": [tuple(d) for d in plan.graph._deps],
        "kwnames": [tuple(k) for k in plan.dep_kwnames],
        "argdeps": [tuple(a) for a in plan.argdeps],
        "inputs": [tuple(i) for i in plan.input_params],
        "steps": [(s.name, s.fn, s.depends_on, dict(s.inputs), tuple(getattr(s, f) for f in fields))
                  for s in plan.steps],
        "retry": [(r.retries, r.base, r.backoff, r.max_delay, r.on) for r in plan.retry],
        "async": list(plan.is_async),
        "flags": plan.flags(False, None),
    }


def random_flow(seed: int) -> "tuple[list[tuple], dict]":
    """Groups of steps sharing a function and options: (names, fn, depends_on, inputs, options)."""
    rnd = random.Random(seed)
    names: list[str] = []
    groups = []
    for g in range(rnd.randint(1, 4)):
        fn = rnd.choice([total, nothing, pair])
        size = rnd.randint(1, 30)
        group = [f"g{g}s{k}" for k in range(size)]
        deps = []
        inputs = []
        for k in range(size):
            pool = names + group[:k]
            chosen = [rnd.choice(pool) for _ in range(rnd.randint(0, 3))] if pool else []
            deps.append(chosen if rnd.random() < 0.8 else tuple(chosen))  # duplicates included
            if fn is pair and pool and rnd.random() < 0.5:
                inputs.append({"left": rnd.choice(pool)})
            else:
                inputs.append(None)
        options = rnd.choice([{}, {"retries": 2}, {"timeout": 5.0, "priority": 3}, {"trigger": "all_done"}])
        groups.append((group, fn, deps, inputs if any(inputs) else None, options))
        names.extend(group)
    return groups, {name: 1 for name in names if name.startswith("g")}


@pytest.mark.parametrize("seed", range(25))
def test_a_flow_built_with_add_many_is_the_flow_built_step_by_step(seed) -> None:
    groups, _ = random_flow(seed)
    one, bulk = Flow("f"), Flow("f")
    for names, fn, deps, inputs, options in groups:
        for k, name in enumerate(names):
            one.add(name, fn, depends_on=deps[k], inputs=None if inputs is None else inputs[k], **options)
        bulk.add_many(names, fn, depends_on=deps, inputs=inputs, **options)
    try:
        expected = layout(one)
    except FlowError as exc:  # (pair's "left" may be a flow input nobody gives: fine, a run says so)
        with pytest.raises(FlowError) as got:
            layout(bulk)
        assert got.value.problems == exc.problems
        return
    assert layout(bulk) == expected
    needed = {name for name, required in one.inputs.items() if required}
    inputs = {name: 1 for name in needed}
    a = one.run(inputs, keep_outputs=True, raise_on_failure=False)
    b = bulk.run(inputs, keep_outputs=True, raise_on_failure=False)
    assert a.outputs == b.outputs and a.status == b.status


def test_add_many_with_nothing_shared_but_the_function() -> None:
    flow = Flow("f").add_many(["a", "b", "c"], total)
    assert flow.steps == ("a", "b", "c")
    assert flow.run(keep_outputs=True).outputs == {"a": 1, "b": 1, "c": 1}
    flow.add_many(["d"], total, depends_on=[("a", "b", "a")])
    assert flow.run()["d"] == 3
    assert flow.add_many([], total) is flow and len(flow) == 4


@pytest.mark.parametrize("call, messages", [
    (lambda f: f.add_many(["x", "y", "x", "y", "z"], total),
     ["step 'x' is given more than once to add_many", "step 'y' is given more than once to add_many"]),
    (lambda f: f.add_many(["new", "a"], total), ["step 'a' is defined more than once in flow 'f'"]),
    (lambda f: f.add_many(["ok", ""], total), ["a step name must be a non-empty string, not ''"]),
    (lambda f: f.add_many(["ok", 3, None], total),
     ["a step name must be a non-empty string, not 3", "a step name must be a non-empty string, not None"]),
    (lambda f: f.add_many(["p", "q"], total, depends_on=[["a"]]), ["add_many: depends_on has 1 entries for 2 step names"]),
    (lambda f: f.add_many(["p", "q"], total, depends_on="a"), ["add_many: depends_on must be one entry per step, not 'a'"]),
    (lambda f: f.add_many(["p", "q"], total, depends_on=[["a"], [1]]), ["step 'q': depends_on entry 1 is not a step name"]),
    (lambda f: f.add_many(["p", "q"], pair, inputs=[{"left": 2}, None]),
     ["step 'p': inputs entry 'left': 2 must map a parameter name to a step name"]),
    (lambda f: f.add_many(["p"], pair, inputs=[None, None]), ["add_many: inputs has 2 entries for 1 step names"]),
    (lambda f: f.add_many(["p", "q"], "not a function"), ["add_many: 'not a function' is not callable (the steps 'p'...)"]),
    (lambda f: f.add_many(["p", "q"], total, retries=-1), ["step 'p': retries must be an int >= 0, not -1"]),
])
def test_add_many_refuses_bad_input_whole_and_names_each_problem(call, messages) -> None:
    flow = Flow("f").add("a", nothing)
    flow.validate()
    with pytest.raises(FlowError) as exc:
        call(flow)
    assert exc.value.problems == messages
    assert flow.steps == ("a",)  # nothing was added
    assert flow.run()["a"] == 1
    flow.add_many(["x", "y"], total, depends_on=[["a"], ["x"]])  # and it still takes steps
    assert flow.run()["y"] == 3


def test_steps_given_equal_options_share_them_but_types_still_count() -> None:
    flow = Flow("f")
    for k in range(5):
        flow.add(f"s{k}", nothing, retries=2, timeout=1.5)
    flow.add("t", nothing)
    opts = flow._steps.opts
    assert len({id(o) for o in opts[:5]}) == 1 and opts[5] is not opts[0]
    with pytest.raises(FlowError, match=r"step 'bad': retries must be an int >= 0, not True"):
        flow.add("bad", nothing, retries=True, timeout=1.5)  # True == 1, but is not an int of retries
    flow.add("one", nothing, retries=1)
    with pytest.raises(FlowError, match=r"step 'bad': retries must be an int >= 0, not True"):
        flow.add("bad", nothing, retries=True)
    with pytest.raises(FlowError, match=r"step 'bad': cache must be True or False, not 0"):
        flow.add("bad", nothing, cache=0)  # 0 == False, the default
    flow.add("int delay", nothing, retry_delay=0)  # an int is a number of seconds
    assert flow._compiled().steps[flow._index["int delay"]].retry_delay == 0.0

    class Seconds(float):  # a valid value that cannot be a key
        __hash__ = None  # type: ignore[assignment]

    for add in (flow.add, flow._add):
        add(f"unhashable {add.__name__}", nothing, timeout=Seconds(2.5))
        assert flow._steps.opts[-1].timeout == 2.5
    with pytest.raises(FlowError, match=r"step 'bad': retry_on must be an exception class"):
        flow.add("bad", nothing, retry_on=[ValueError])  # unhashable, and refused


def test_a_compiled_flow_is_not_changed_by_steps_added_after() -> None:
    flow = Flow("f").add_many(["a", "b"], total, depends_on=[[], ["a"]])
    graph = flow.graph
    plan = flow._compiled()
    flow.add("c", total, depends_on=["b"])
    flow.add_many(["d"], total, depends_on=[["c"]])
    assert graph.names == ("a", "b") and "c" not in graph and len(plan.steps) == 2
    assert flow.graph.names == ("a", "b", "c", "d")
    assert flow.run()["d"] == 4
    assert graph.order() == ["a", "b"]


def test_compile_errors_are_the_same_whichever_way_the_flow_was_built() -> None:
    for build in (lambda f, names, deps: [f.add(n, total, depends_on=d) for n, d in zip(names, deps)],
                  lambda f, names, deps: f.add_many(names, total, depends_on=deps)):
        flow = Flow("f")
        build(flow, ["a", "b", "c"], [["x"], ["a", "y"], []])
        with pytest.raises(FlowError) as exc:
            flow.validate()
        assert exc.value.problems == ["step 'a' depends on 'x', which is not defined",
                                      "step 'b' depends on 'y', which is not defined"]
        flow = Flow("f")
        build(flow, ["a", "b", "c"], [["c"], ["a"], ["b"]])
        with pytest.raises(CycleError) as cycle:
            flow.validate()
        assert sorted(cycle.value.args[1][:-1]) == ["a", "b", "c"]
        flow = Flow("f")
        build(flow, ["a"], [["a"]])
        with pytest.raises(CycleError):
            flow.validate()


def test_a_large_flow_built_in_bulk_runs_on_every_backend() -> None:
    n = 20_000
    names = [f"s{i}" for i in range(n)]
    flow = Flow("big").add_many(names, total, depends_on=[[names[i - 1]] if i else [] for i in range(n)])
    assert flow.run()[names[-1]] == n
    assert flow.run(executor="threads", max_workers=2)[names[-1]] == n
    assert microdag.Flow("small").add_many(["a"], total).run(executor="processes")["a"] == 1


@pytest.mark.parametrize("seed", range(10))
def test_the_quick_layout_binds_as_each_step_would_be_bound(seed) -> None:
    from microdag._binding import _layout_each, _layout_together, _Signature

    rnd = random.Random(seed)
    flow = Flow("f")
    names: list[str] = []
    for k in range(60):
        deps = [rnd.choice(names) for _ in range(rnd.randint(0, 3))] if names else []
        flow.add(f"s{k}", rnd.choice([total, nothing]), depends_on=deps)
        names.append(f"s{k}")
    steps = flow._steps
    fns = {id(f): f for f in steps.fns}
    signatures = {key: _Signature(fn) for key, fn in fns.items()}
    quick = _layout_together(steps, fns, signatures, set(steps.opts))
    assert quick is not None
    problems: list[str] = []
    each = _layout_each(steps, flow._index, signatures, problems)
    assert problems == []
    assert [list(map(tuple, part)) for part in quick[:4]] == [list(map(tuple, part)) for part in each[:4]]
    assert list(quick[4]) == list(each[4])


@pytest.mark.parametrize("on_failure", ["fail_fast", "continue"])
def test_a_runs_status_counts_are_those_of_its_tasks(on_failure) -> None:
    def boom(**deps: int) -> int:
        raise ValueError("boom")

    names = [f"s{i}" for i in range(40)]
    flow = Flow("f").add_many(names, total, depends_on=[[names[i - 1]] if i % 8 else [] for i in range(40)])
    flow.add("bad", boom, depends_on=["s3"]).add("after", total, depends_on=["bad"])
    run = flow.run(on_failure=on_failure, raise_on_failure=False, targets=["after", "s39", "s20"])
    counts: dict[str, int] = {}
    for task in run.tasks.values():
        counts[task.status] = counts.get(task.status, 0) + 1
    assert status_counts(run) == counts
    assert [t.name for t in failed_tasks(run)] == [t.name for t in run.tasks.values() if t.status == "failed"]


def test_every_problem_of_a_step_is_listed_at_once() -> None:
    for add in (lambda f: f.add("s", "not callable", depends_on=[1], retries=-1, timeout=0),
                lambda f: f.add_many(["s"], "not callable", depends_on=[[1]], retries=-1, timeout=0)):
        with pytest.raises(FlowError) as exc:
            add(Flow("f"))
        text = "\n".join(exc.value.problems)
        assert "not callable" in text and "retries must be an int >= 0, not -1" in text
        assert "timeout must be a number of seconds > 0" in text


def _random_dag(rnd: random.Random, n: int) -> "tuple[list[str], list[list[str]]]":
    """Names and each one's dependencies on earlier names: repeats, and now
    and then more than 16 of them (the kernels check those another way)."""
    names = [f"n{i}" for i in range(n)]
    deps = []
    for i in range(n):
        many = rnd.choice([0, 1, 2, 3, 40]) if i else 0
        deps.append([names[rnd.randrange(i)] for _ in range(many)])
    return names, deps


@pytest.mark.parametrize("seed", range(12))
def test_steps_may_name_dependencies_defined_later(seed) -> None:
    """Steps added in any order, by ``add`` and ``add_many``, dependencies
    named twice or not defined yet: the same graph and outputs as the flow
    added in order, and the ids found while adding are those compiling finds."""
    rnd = random.Random(seed)
    names, deps = _random_dag(rnd, 60)
    in_order = Flow("f").add_many(names, total, depends_on=deps)
    order = list(range(len(names)))
    rnd.shuffle(order)
    shuffled = Flow("f")
    k = 0
    while k < len(order):  # runs of add and add_many
        part = order[k:k + rnd.randint(1, 8)]
        if rnd.random() < 0.5:
            for i in part:
                shuffled.add(names[i], total, depends_on=deps[i])
        else:
            shuffled.add_many([names[i] for i in part], total, depends_on=[deps[i] for i in part])
        if rnd.random() < 0.3:  # compiled halfway (when it can be): the next add copies what the plan holds
            try:
                shuffled.validate()
            except FlowError as exc:
                assert all("which is not defined" in problem for problem in exc.problems)
        k += len(part)
    want = {name: tuple(dict.fromkeys(d)) for name, d in zip(names, deps)}
    steps = shuffled._steps
    assert dict(zip(steps.names, steps.deps)) == want
    graph = shuffled.graph
    assert {name: tuple(graph.names[j] for j in graph._deps[graph.id(name)]) for name in names} == want
    for i, found in enumerate(steps.ids):
        assert found is None or found == graph._deps[i]
    expected = in_order.run(keep_outputs=True).outputs
    assert shuffled.run(keep_outputs=True).outputs == expected


def test_a_dependency_that_is_not_a_name_is_refused_whichever_way() -> None:
    for deps in ([1], ["a", None], ("a", "a", 2.5), [["a"]]):
        with pytest.raises(FlowError) as one:
            Flow("f").add("a", nothing).add("b", total, depends_on=deps)
        with pytest.raises(FlowError) as bulk:
            Flow("f").add("a", nothing).add_many(["b"], total, depends_on=[deps])
        assert one.value.problems == bulk.value.problems
        assert "is not a step name" in one.value.problems[0]


@pytest.mark.parametrize("seed", range(8))
def test_add_builds_what_its_whole_way_builds(seed) -> None:
    """``add`` takes a short way for a step given no option, or the options
    of the step before; ``_add`` is the whole way.  Both build the same
    columns: names met twice, tuples, dependencies defined later, options
    equal in value but not in type, or in another order."""
    rnd = random.Random(seed)
    names, deps = _random_dag(rnd, 50)
    order = list(range(len(names)))
    rnd.shuffle(order)
    choices = [{}, {"retries": 2}, {"retries": 2, "timeout": 5.0}, {"timeout": 5.0, "retries": 2}, {"timeout": 5},
               {"timeout": 5.0}, {"retries": 0}, {"cache": False}, {"priority": 3, "trigger": "all_done"}]
    short, whole = Flow("f"), Flow("f")
    options: dict = {}
    for i in order:
        d = deps[i] if rnd.random() < 0.7 else tuple(deps[i])
        if rnd.random() < 0.3:
            options = rnd.choice(choices)
        short.add(names[i], total, depends_on=d, **options)
        whole._add(names[i], total, depends_on=d, **options)
    for column in ("names", "fns", "deps", "inputs", "ids"):
        assert getattr(short._steps, column) == getattr(whole._steps, column), column
    for a, b in zip(short._steps.opts, whole._steps.opts):
        assert (a.retries, a.timeout, a.priority, a.trigger) == (b.retries, b.timeout, b.priority, b.trigger)
        assert (type(a.timeout), type(a.retries)) == (type(b.timeout), type(b.retries))
    assert layout(short) == layout(whole)


def test_options_equal_to_the_step_befores_are_taken_only_of_the_same_types() -> None:
    flow = Flow("f").add("a", nothing, retries=1, timeout=2.0)
    flow.add("b", nothing, timeout=2.0, retries=1)
    assert flow._steps.opts[1] is flow._steps.opts[0]  # checked once, shared
    with pytest.raises(FlowError, match="retries must be an int >= 0, not True"):
        flow.add("c", nothing, retries=True, timeout=2.0)  # True == 1, but not a count
    flow.add("c", nothing, retries=1, timeout=2)
    assert flow._steps.opts[2] is not flow._steps.opts[0]  # (as the whole way: types count)
    with pytest.raises(FlowError, match="retries must be an int >= 0, not -1"):
        flow.add("d", nothing, retries=-1)
    with pytest.raises(FlowError, match="retries must be an int >= 0, not -1"):
        flow.add("d", nothing, retries=-1)  # refused again: a refused step is not remembered
    flow.add("d", pair, inputs={"left": "a"}, retries=1, timeout=2)
    flow.add("e", total, depends_on=["d"], retries=1, timeout=2)  # given inputs before: not these
    assert dict(flow._steps.inputs[3]) == {"left": "a"} and not flow._steps.inputs[4]
    assert flow.run(keep_outputs=True).outputs["e"] == 2
    with pytest.raises(FlowError, match="defined more than once"):
        flow.add("e", total, retries=1, timeout=2)


@pytest.mark.parametrize("call", [
    lambda f, **o: f.add("", nothing, **o),
    lambda f, **o: f.add(3, nothing, **o),
    lambda f, **o: f.add("a", nothing, **o),  # defined twice
    lambda f, **o: f.add("b", "not callable", **o),
    lambda f, **o: f.add("b", nothing, depends_on="a", **o),
    lambda f, **o: f.add("b", nothing, depends_on=["a", 1], **o),
    lambda f, **o: f.add("b", nothing, depends_on=iter(["a", "a"]), **o),
])
def test_add_refuses_a_step_alike_with_and_without_options(call) -> None:
    outcomes = []
    for options in ({}, {"timeout": None}):
        flow = Flow("f").add("a", nothing)
        try:
            call(flow, **options)
        except FlowError as exc:
            outcomes.append(exc.problems)
        else:
            outcomes.append(flow._steps.deps[-1])
    assert outcomes[0] == outcomes[1]


def test_add_shows_and_checks_every_option() -> None:
    import inspect

    flow = Flow("f")
    for shown in (inspect.signature(Flow.add), inspect.signature(flow.add)):
        assert {"depends_on", "inputs", "retries", "timeout", "cache_ttl"} <= set(shown.parameters)
        assert shown.parameters["retries"].kind is inspect.Parameter.KEYWORD_ONLY
    assert "retry_backoff" in (Flow.add.__doc__ or "")
    with pytest.raises(TypeError, match=r"Flow\.add\(\) got an unexpected keyword argument 'retrys'"):
        flow.add("a", nothing, retrys=2)
    with pytest.raises(TypeError):
        flow.add("a", nothing, [], None)  # options are keywords only
    assert not flow.steps
    flow.add(name="a", fn=nothing).add("b", fn=total, depends_on=("a",))
    assert flow.run(keep_outputs=True).outputs == {"a": 1, "b": 2}


def test_graph_kernels_link_and_number_names_alike(twin) -> None:
    """``number`` (ids given while names are added) then ``link`` with what it
    found equals ``link`` looking every name up, on both twins."""
    rnd = random.Random(3)
    wide = 0
    for _ in range(20):
        names, deps = _random_dag(rnd, rnd.randint(0, 80))
        wide += sum(len(set(d)) > 16 for d in deps)
        deps_t = [tuple(dict.fromkeys(d)) for d in deps]
        rnd_order = list(range(len(names)))
        index: dict[str, int] = {}
        found, again = twin.number(index, 0, names, deps_t)
        assert index == {name: i for i, name in enumerate(names)}
        assert again == []  # (repeats were removed)
        _, again = twin.number({}, 0, names, [tuple(d) for d in deps])  # with them
        assert again == [i for i, d in enumerate(deps) if len(set(d)) != len(d)]
        looked, kernel = twin.link(index, deps_t)
        assert looked == [tuple(index[x] for x in d) for d in deps_t] == found
        given, again_kernel = twin.link(index, deps_t, found)
        assert given is found
        assert [kernel.successors(i) for i in rnd_order] == [again_kernel.successors(i) for i in rnd_order]
        # forward references: the names a step needs come later
        rev_index: dict[str, int] = {}
        rev_names, rev_deps = names[::-1], deps_t[::-1]
        ids, again = twin.number(rev_index, 0, rev_names, rev_deps)
        assert all(x is None for x, d in zip(ids, rev_deps) if d)
        assert again == [i for i, d in enumerate(rev_deps) if len(d) > 1]
        full, _ = twin.link(rev_index, rev_deps, ids)
        assert full == [tuple(rev_index[x] for x in d) for d in rev_deps]
    assert wide  # (steps of more than 16 dependencies were among them)


def test_graph_kernels_report_repeats_missing_and_taken_names(twin) -> None:
    index = {"a": 0, "b": 1}
    assert twin.ids_of(index, ("a", "b")) == (0, 1)
    assert twin.ids_of(index, ()) == ()
    assert twin.ids_of(index, ("x",)) is None
    assert twin.ids_of(index, ("a", "x")) is False
    assert twin.ids_of(index, ("a", "b", "a")) is False
    assert twin.ids_of(index, ("a", 1)) is False
    assert twin.ids_of(index, tuple(["a"] * 17 + ["b"])) is False
    ids, again = twin.number(index, 2, ["c", "d"], [("a", "a"), ("c", "zz")])
    assert ids == [(0, 0), None] and again == [0, 1]
    with pytest.raises(KeyError):
        twin.number(index, 4, ["e", "a"], [(), ()])
    with pytest.raises(KeyError):
        twin.link(index, [("nope",)])
    with pytest.raises(TypeError):
        twin.link(index, [["a"]])
    with pytest.raises((IndexError, ValueError)):
        twin.link({"a": 5}, [(), ("a",)])


def test_graph_kernels_take_lists_or_tuples_of_names_only(twin) -> None:
    kept = ("a", "b")
    out = twin.name_tuples([["x"], kept, [], ()])
    assert out == [("x",), ("a", "b"), (), ()] and out[1] is kept
    for bad in ([["x"], "ab"], [["x", 1]], [("x", None)], [{"x"}], [["x"], b"ab"]):
        assert twin.name_tuples(bad) is None


def test_add_many_leaves_the_flow_as_it_was_when_numbering_fails(monkeypatch) -> None:
    import microdag._steps as steps_module

    real = steps_module.sched

    class Failing:
        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(real, name)

        @staticmethod
        def number(index, first, names, deps):  # type: ignore[no-untyped-def]
            real.number(index, first, names[:1], deps[:1])  # one name in, then it fails
            raise MemoryError("no memory left")

    flow = Flow("f").add("a", nothing)
    monkeypatch.setattr(steps_module, "sched", Failing())
    with pytest.raises(MemoryError):
        flow.add_many(["b", "c"], total, depends_on=[["a"], ["b"]])
    monkeypatch.undo()
    assert flow.steps == ("a",) and "b" not in flow and flow.run()["a"] == 1
    flow.add_many(["b", "c"], total, depends_on=[["a"], ["b"]])
    assert flow.run()["c"] == 3
