"""Step functions of ``test_add_steps.py``: steps that add steps.

They live in a module so that a durable store can name them
(``addsteps:part``) and a resumed run, in another process, finds them again.

``python -m addsteps STORE RUN_ID MARKS N`` runs :func:`fan_flow` in a SQLite
store (resuming run RUN_ID if it exists): ``plan`` adds N steps that each
write a mark file in MARKS and sleep a little, and ``gather`` sums them; the
kill test SIGKILLs it midway and runs it again.
"""

import os
from typing import Any
import sys
import time

import microdag
from microdag import Flow


def load() -> list[int]:
    return [1, 2, 3]


def part(load: list[int], k: int = 0) -> int:
    return load[k] * 10


def total(**parts: int) -> int:
    return sum(parts.values())


def plan(load: list[int]) -> int:
    """Adds a part per item of ``load``, then ``sum`` after them."""
    ctx = microdag.context()
    for k in range(len(load)):
        ctx.add(f"part{k}", part, depends_on=["load"], inputs={"load": "load"})
    ctx.add("sum", total, depends_on=[f"part{k}" for k in range(len(load))])
    return len(load)


def plain_flow(name: str = "adds") -> Flow:
    flow = Flow(name)
    flow.add("load", load)
    flow.add("plan", plan)
    return flow


# -- failing and flaky steps (a file says how many times they ran) --------------------


def count(path: str) -> int:
    """Add one to the number in ``path``; the new number."""
    n = int(open(path).read()) + 1 if os.path.exists(path) else 1
    with open(path, "w") as f:
        f.write(str(n))
    return n


def flaky(path: str, fails: int = 1) -> str:
    """Fails the first ``fails`` times it runs (counted in ``path``)."""
    if count(path) <= fails:
        raise RuntimeError(f"flaky failure {fails}")
    return "ok"


def adds_flaky(path: str) -> str:
    microdag.context().add("flaky", flaky, inputs={}, retries=2)
    return "added"


def fails_while(gate: str) -> int:
    """Fails while the file ``gate`` exists."""
    if os.path.exists(gate):
        raise RuntimeError("told to fail")
    return 1


def adds_failing(gate: str) -> str:
    ctx = microdag.context()
    ctx.add("shaky", fails_while)
    ctx.add("after", total, depends_on=["shaky"])
    return "planned"


def square(x: int) -> int:
    return x * x


def adds_map(load: list[int]) -> int:
    microdag.context().add("squares", square, map="x", inputs={"x": "load"})
    microdag.context().add("sum_sq", lambda_free_sum, inputs={"values": "squares"})
    return 0


def lambda_free_sum(values: list[int]) -> int:
    return sum(values)


# -- the kill test ------------------------------------------------------------------


def marked(marks: str) -> int:
    """Leaves a mark that it started, sleeps a little, returns its number (``m3``: 3)."""
    k = int(microdag.context().step[1:])
    with open(os.path.join(marks, f"{k}-{os.getpid()}-{time.monotonic_ns()}"), "w"):
        pass
    time.sleep(0.05)
    return k


def fan(n: int, marks: str) -> int:
    ctx = microdag.context()
    for k in range(n):
        ctx.add(f"m{k}", marked, inputs={}, depends_on=[])
    ctx.add("gather", total, depends_on=[f"m{k}" for k in range(n)])
    return n


def fan_flow() -> Flow:
    flow = Flow("fan")
    flow.add("plan", fan)
    return flow


def main(argv: list[str]) -> None:
    from microdag.stores import SQLiteStore

    path, run_id, marks, n = argv
    store = SQLiteStore(path)
    exists = any(info.id == run_id for info in store.list_runs())
    flow = fan_flow()
    inputs = {"n": int(n), "marks": marks}
    run = flow.run(inputs, store=store, run_id=run_id, resume=exists)
    print(run.status, run.outputs.get("gather"))


if __name__ == "__main__":
    main(sys.argv[1:])


# -- random flows whose steps add steps (the model test of test_add_steps) ----------------

KINDS = ("ok", "ok", "ok", "fail", "flaky", "skip")
TRIGGERS = ("all_success", "all_success", "all_done", "none_failed")


def draw(seed: int) -> "dict[str, Any]":
    """A random flow: static steps (some of which add steps), and what each adder adds.

    ``{"static": [{name, deps, kind, trigger, adds}], "adds": {adder: [{name, deps, kind, trigger}]}}``:
    an added step depends on its adder, static steps, or steps its adder added before it.
    """
    import random

    rnd = random.Random(seed)
    static = []
    for k in range(rnd.randint(2, 6)):
        deps = sorted(rnd.sample(range(k), rnd.randint(0, min(k, 2)))) if k else []
        static.append({"name": f"s{k}", "deps": [f"s{d}" for d in deps], "kind": rnd.choice(KINDS[:3] + ("flaky",)),
                       "trigger": rnd.choice(TRIGGERS), "adds": rnd.random() < 0.6})
    adds: dict[str, list[dict[str, Any]]] = {}
    for spec in static:
        if not spec["adds"]:
            continue
        made: list[str] = []
        for j in range(rnd.randint(1, 4)):
            pool = [spec["name"]] + [s["name"] for s in static] + made
            deps = sorted(set(rnd.sample(pool, rnd.randint(0, min(2, len(pool))))))
            name = f"{spec['name']}a{j}"
            adds.setdefault(spec["name"], []).append(
                {"name": name, "deps": deps, "kind": rnd.choice(KINDS), "trigger": rnd.choice(TRIGGERS)})
            made.append(name)
    return {"static": static, "adds": adds}


def behave(kind: str, deps: "dict[str, Any]") -> int:
    """A step of the model: its output is one more than its dependencies' (None counts 0)."""
    ctx = microdag.context()
    if kind == "fail":
        raise ValueError(f"{ctx.step} fails")
    if kind == "flaky" and ctx.attempt == 1:
        raise ValueError(f"{ctx.step} fails once")
    if kind == "skip":
        raise microdag.Skip("told to")
    return 1 + sum(v for v in deps.values() if isinstance(v, int))


def model_step(model: "dict[str, Any]", **deps: Any) -> int:
    """A step of a drawn flow (its spec found by its name in ``model``); an adder adds its steps first."""
    name = microdag.context().step
    spec = _spec_of(model, name)
    if name in model["adds"]:
        ctx = microdag.context()
        for added in model["adds"][name]:
            ctx.add(added["name"], model_step, depends_on=added["deps"], retries=1,
                    trigger=added["trigger"])
    return behave(spec["kind"], deps)


def _spec_of(model: "dict[str, Any]", name: str) -> "dict[str, Any]":
    for spec in model["static"]:
        if spec["name"] == name:
            return spec
    for added in model["adds"].values():
        for spec in added:
            if spec["name"] == name:
                return spec
    raise KeyError(name)


def model_flow(model: "dict[str, Any]") -> Flow:
    flow = Flow("model")
    for spec in model["static"]:
        flow.add(spec["name"], model_step, depends_on=spec["deps"], retries=1, trigger=spec["trigger"])
    return flow


def run_model(seed: int) -> "dict[str, Any]":
    """The drawn flow of ``seed`` on every in-process backend: each one's tasks (status, attempts, output)."""
    import asyncio

    model = draw(seed)
    flow = model_flow(model)
    out: dict[str, Any] = {}
    runs = {"inline": lambda: flow.run({"model": model}, on_failure="continue", keep_outputs=True,
                                       raise_on_failure=False)}
    for w in (1, 2, 3):
        runs[f"threads{w}"] = lambda w=w: flow.run(  # type: ignore[misc]
            {"model": model}, executor="threads", max_workers=w, on_failure="continue", keep_outputs=True,
            raise_on_failure=False)
        runs[f"arun{w}"] = lambda w=w: asyncio.run(flow.arun(  # type: ignore[misc]
            {"model": model}, max_workers=w, on_failure="continue", keep_outputs=True, raise_on_failure=False))
    for where, go in runs.items():
        run = go()
        out[where] = {name: [t.status, t.attempts, run.outputs.get(name), t.added_by]
                      for name, t in run.tasks.items()}
    return {"model": model, "runs": out}


def expected(model: "dict[str, Any]") -> "dict[str, list[Any]]":
    """What the rules say each step ends as: ``[status, attempts, output, added_by]``."""
    specs = {s["name"]: (s, None) for s in model["static"]}
    for adder, added in model["adds"].items():
        for s in added:
            specs[s["name"]] = (s, adder)
    got: dict[str, list[Any]] = {}

    def settle(name: str) -> None:
        spec, by = specs[name]
        deps = [d for d in spec["deps"]]
        for d in deps:
            if d not in got:
                settle(d)
        states = [got[d][0] for d in deps]
        rule = spec["trigger"]
        bad = {"all_success": ("failed", "skipped"), "none_failed": ("failed",), "all_done": ()}[rule]
        if any(st in bad for st in states):
            got[name] = ["skipped", 0, None, by]
            return
        kind = spec["kind"]
        if kind == "fail":
            got[name] = ["failed", 2, None, by]
        elif kind == "skip":
            got[name] = ["skipped", 1, None, by]
        else:
            value = 1 + sum(got[d][2] for d in deps if isinstance(got[d][2], int))
            got[name] = ["succeeded", 2 if kind == "flaky" else 1, value, by]

    for spec in model["static"]:
        settle(spec["name"])
        if spec["name"] in model["adds"] and got[spec["name"]][0] == "succeeded" or (
                spec["name"] in model["adds"] and got[spec["name"]][1] > 0):
            for s in model["adds"][spec["name"]]:
                settle(s["name"])
    return got


#: The flow of :func:`plain_flow`, for the command line (``addsteps:FLOW``).
FLOW = plain_flow()


# -- pools: added steps that hold a pool's units (a counter proves the bound) -----------

import threading

_HELD = [0, 0]  # units held now, the most ever held at once
_HELD_LOCK = threading.Lock()


def _hold(units: int) -> None:
    with _HELD_LOCK:
        _HELD[0] += units
        _HELD[1] = max(_HELD[1], _HELD[0])
    time.sleep(0.003)
    with _HELD_LOCK:
        _HELD[0] -= units


def held(**deps: Any) -> int:
    """Holds the units its name ends with (``a3u2``: 2) for a moment."""
    units = int(microdag.context().step.rpartition("u")[2])
    _hold(units)
    return units


def held_item(x: int) -> int:
    """A map unit of ``held``."""
    _hold(int(microdag.context().step.rpartition("u")[2]))
    return x


def pool_adder(model: "dict[str, Any]", **deps: Any) -> int:
    """Adds the steps the model gives this step (they may add more in turn)."""
    ctx = microdag.context()
    for spec in model["adds"].get(ctx.step, []):
        name = spec["name"]
        if spec["kind"] == "map":
            ctx.add(name, held_item, map="x", inputs={"x": "items"}, uses={"db": spec["units"]})
        elif spec["kind"] == "adder":
            ctx.add(name, pool_adder, depends_on=spec["deps"], uses={"db": spec["units"]})
        else:
            ctx.add(name, held, depends_on=spec["deps"], uses={"db": spec["units"]})
    return 0


def draw_pooled(seed: int) -> "dict[str, Any]":
    """A pool of 1 or 2 units, and steps added (adds on adds) that each hold 1 or 2 of them."""
    import random

    r = random.Random(seed)
    size = r.randint(1, 2)
    adds: dict[str, list[dict[str, Any]]] = {}
    names: list[str] = []
    adders = ["root"]
    k = 0
    while adders:
        adder = adders.pop(0)
        for _ in range(r.randint(2, 6) if adder == "root" else r.randint(1, 3)):
            units = r.randint(1, size)
            kind = r.choice(["plain", "plain", "map", "adder"] if k < 12 else ["plain"])
            name = f"a{k}u{units}" if kind != "adder" else f"add{k}u{units}"
            k += 1
            deps = [d for d in names if r.random() < 0.2]
            adds.setdefault(adder, []).append({"name": name, "kind": kind, "units": units, "deps": deps})
            if kind == "adder":
                adders.append(name)
            elif kind == "plain":
                names.append(name)
    return {"size": size, "adds": adds}


def run_pooled(seed: int) -> "dict[str, Any]":
    """The drawn pooled flow of ``seed`` on every in-process backend: each
    run's statuses and the most units held at once."""
    import asyncio

    model = draw_pooled(seed)
    flow = Flow("pooled")
    flow.add("items", load)
    flow.add("root", pool_adder, depends_on=["items"])
    pools = {"db": model["size"]}
    runs = {"inline": lambda: flow.run({"model": model}, pools=pools, keep_outputs=True)}
    for w in (2, 3):
        runs[f"threads{w}"] = lambda w=w: flow.run(  # type: ignore[misc]
            {"model": model}, executor="threads", max_workers=w, pools=pools, keep_outputs=True)
        runs[f"arun{w}"] = lambda w=w: asyncio.run(flow.arun(  # type: ignore[misc]
            {"model": model}, max_workers=w, pools=pools, keep_outputs=True))
    out: dict[str, Any] = {}
    for where, go in runs.items():
        _HELD[1] = 0
        run = go()
        out[where] = {"most": _HELD[1], "statuses": {n: t.status for n, t in run.tasks.items()}}
    return {"model": model, "runs": out}


# -- adds from another process: carried back with the attempt's result -----------------


def adds_lambda() -> str:
    """Adds a lambda: refused at the call, where the step runs (caught, said)."""
    try:
        microdag.context().add("x", lambda: 1)
    except microdag.FlowError as exc:
        return str(exc)
    return "added"


def adds_taken() -> int:
    """Adds a step whose name the run has: refused only when the run applies it."""
    microdag.context().add("load", total)
    return 1


def adds_then_fails() -> None:
    """Adds a step, then fails: the step it added is skipped (it depends on this one)."""
    microdag.context().add("after_fail", total, depends_on=["adds_then_fails"])
    microdag.context().add("free", total)
    raise RuntimeError("after the adds")


def adds_pooled(model: "dict[str, Any]") -> int:
    """:func:`pool_adder`'s adds, as ``root`` (from another process)."""
    return pool_adder(model)


def run_elsewhere(backend: str) -> "dict[str, Any]":
    """:func:`plain_flow` on ``backend`` ("processes", or "executor": a
    ``ThreadPoolExecutor`` passed as the executor): outputs and who added what."""
    from concurrent.futures import ThreadPoolExecutor

    if backend == "executor":
        with ThreadPoolExecutor(2) as pool:
            run = plain_flow().run(executor=pool)
    else:
        run = plain_flow().run(executor=backend, max_workers=2)
    return {"outputs": run.outputs, "by": {n: t.added_by for n, t in run.tasks.items()}, "order": list(run.tasks)}


def adds_then_retried(path: str) -> str:
    """Adds a step, and fails its first attempt after the add (counted in ``path``)."""
    microdag.context().add("child", total)
    if count(path) == 1:
        raise RuntimeError("first attempt fails after its add")
    return "ok"
