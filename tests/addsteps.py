"""Step functions of ``test_add_steps.py``: steps that add steps.

They live in a module so that a durable store can name them
(``addsteps:part``) and a resumed run, in another process, finds them again.

``python -m addsteps STORE RUN_ID MARKS N`` runs :func:`fan_flow` in a SQLite
store (resuming run RUN_ID if it exists): ``plan`` adds N steps that each
write a mark file in MARKS and sleep a little, and ``gather`` sums them; the
kill test SIGKILLs it midway and runs it again.
"""

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

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


#: Where the model tests run flows beside inline, threads and ``arun``
#: (:func:`elsewhere`): a process pool, a foreign ``ThreadPoolExecutor`` and
#: ``ProcessPoolExecutor``, a Dask cluster, and ``executor="workers"`` on a
#: store (an SQLite file, a PostgreSQL database).
ELSEWHERE = ("processes", "executor", "process_executor", "dask", "workers/sqlite", "workers/postgres")

#: The options of every run of the model.
OPTIONS: "dict[str, Any]" = {"on_failure": "continue", "keep_outputs": True, "raise_on_failure": False}


@contextlib.contextmanager
def elsewhere(where: str, store: "str | None" = None, workers: int = 0,
              flows: str = "") -> "Iterator[Callable[..., microdag.Run]]":
    """Runs flows on ``where`` (one of :data:`ELSEWHERE`), two at once: yields
    ``run(flow, inputs, **options)``.  What it starts (a pool, a Dask cluster
    in this process, worker processes) serves every run of the block.

    ``store``: the spec of a ``workers/KIND``'s store, where ``workers``
    worker processes (``python -m microdag worker --flows FLOWS``) share the
    runs with this one; steps hold their units (:func:`_hold`) longer there,
    so that each process has its turn."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    if where == "processes":
        yield lambda flow, inputs, **options: flow.run(inputs, executor="processes", max_workers=2, **options)
    elif where == "executor":
        with ThreadPoolExecutor(2) as pool:
            yield lambda flow, inputs, **options: flow.run(inputs, executor=pool, **options)
    elif where == "process_executor":
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver")) as pool:
            yield lambda flow, inputs, **options: flow.run(inputs, executor=pool, **options)
    elif where == "dask":
        import distributed  # (the Dask runs only)

        with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            yield lambda flow, inputs, **options: flow.run(inputs, executor=client, **options)
    else:
        assert store is not None, where
        with _workers(store, workers, flows):
            yield lambda flow, inputs, **options: flow.run(inputs, executor="workers", store=store, max_workers=2,
                                                           **options)


@contextlib.contextmanager
def _workers(store: str, n: int, flows: str) -> "Iterator[None]":
    """``n`` worker processes serving ``store`` (the flows ``flows``), ready when the block starts."""
    import signal
    import subprocess

    if not n:
        yield
        return
    if not store.startswith("postgresql:"):
        from microdag.stores import SQLiteStore

        SQLiteStore(store).close()  # (made before the workers open it)
    env = {**os.environ, HOLD: "0.02"}
    procs = [subprocess.Popen([sys.executable, "-m", "microdag", "worker", "--store", store, "--flows", flows],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
             for _ in range(n)]
    try:
        for proc in procs:
            said = proc.stderr.readline()  # type: ignore[union-attr]
            assert "serving" in said, said + proc.communicate()[1]
        os.environ[HOLD] = "0.02"
        yield
    finally:
        os.environ.pop(HOLD, None)
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def tasks_of(run: "microdag.Run") -> "dict[str, list[Any]]":
    """Per task of ``run``: status, attempts, output, who added it."""
    return {name: [t.status, t.attempts, run.outputs.get(name), t.added_by] for name, t in run.tasks.items()}


def run_model(seed: int) -> "dict[str, Any]":
    """The drawn flow of ``seed`` on every in-process backend: each one's tasks (:func:`tasks_of`)."""
    import asyncio

    model = draw(seed)
    flow = model_flow(model)
    runs = {"inline": lambda: flow.run({"model": model}, **OPTIONS)}
    for w in (1, 2, 3):
        runs[f"threads{w}"] = lambda w=w: flow.run(  # type: ignore[misc]
            {"model": model}, executor="threads", max_workers=w, **OPTIONS)
        runs[f"arun{w}"] = lambda w=w: asyncio.run(flow.arun(  # type: ignore[misc]
            {"model": model}, max_workers=w, **OPTIONS))
    return {"model": model, "runs": {where: tasks_of(go()) for where, go in runs.items()}}


def models_on(where: str, seeds: "list[int]", store: "str | None" = None) -> "dict[str, Any]":
    """The drawn flows of ``seeds`` on ``where`` (:func:`elsewhere`): per seed its model and tasks."""
    out: dict[str, Any] = {}
    with elsewhere(where, store) as run:
        for seed in seeds:
            model = draw(seed)
            out[str(seed)] = {"model": model, "tasks": tasks_of(run(model_flow(model), {"model": model}, **OPTIONS))}
    return out


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

#: The environment variable that says how long a step holds its units (default 3 ms).
HOLD = "MICRODAG_TEST_HOLD"
_HELD = [0, 0]  # units held now, the most ever held at once (in this process)
_HELD_LOCK = threading.Lock()


def _hold(units: int) -> None:
    """Holds ``units`` of ``db`` for a moment: counted in this process, and
    the interval logged for every process (``modelsteps.LOG``, when set)."""
    start = time.time()
    with _HELD_LOCK:
        _HELD[0] += units
        _HELD[1] = max(_HELD[1], _HELD[0])
    time.sleep(float(os.environ.get(HOLD, "0.003")))
    with _HELD_LOCK:
        _HELD[0] -= units
    log = os.environ.get("MICRODAG_MODEL_LOG")  # (modelsteps.LOG, whose peaks() reads it)
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{start!r} {time.time()!r} db={units}\n".encode())
        os.close(fd)
        fd = os.open(log + ".pids", os.O_WRONLY | os.O_APPEND | os.O_CREAT)  # (which processes held them)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)


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
    """A pool of 1 or 2 units, and steps added (adds on adds) that each hold 1 or 2 of them.

    An added step depends only on steps there when it is added: those its
    adder's adders added before its adder, and those its adder added before it.
    """
    import random

    r = random.Random(seed)
    size = r.randint(1, 2)
    adds: dict[str, list[dict[str, Any]]] = {}
    adders: list[tuple[str, list[str]]] = [("root", [])]  # an adder, and the steps there when it was added
    k = 0
    while adders:
        adder, there = adders.pop(0)
        names = list(there)
        for _ in range(r.randint(2, 6) if adder == "root" else r.randint(1, 3)):
            units = r.randint(1, size)
            kind = r.choice(["plain", "plain", "map", "adder"] if k < 12 else ["plain"])
            name = f"a{k}u{units}" if kind != "adder" else f"add{k}u{units}"
            k += 1
            deps = [d for d in names if r.random() < 0.2]
            adds.setdefault(adder, []).append({"name": name, "kind": kind, "units": units, "deps": deps})
            if kind == "adder":
                adders.append((name, list(names)))
            elif kind == "plain":
                names.append(name)
    return {"size": size, "adds": adds}


def pooled_flow() -> Flow:
    """The static part of a pooled model: ``items``, and ``root``, which adds the rest."""
    flow = Flow("pooled")
    flow.add("items", load)
    flow.add("root", pool_adder, depends_on=["items"])
    return flow


#: :func:`pooled_flow`, for worker processes (``--flows addsteps:POOLED``).
POOLED = pooled_flow()


def run_pooled(seed: int) -> "dict[str, Any]":
    """The drawn pooled flow of ``seed`` on every in-process backend: each
    run's statuses and the most units held at once (:func:`_pooled`)."""
    import asyncio

    model = draw_pooled(seed)
    flow = pooled_flow()
    pools = {"db": model["size"]}
    runs = {"inline": lambda: flow.run({"model": model}, pools=pools, keep_outputs=True)}
    for w in (2, 3):
        runs[f"threads{w}"] = lambda w=w: flow.run(  # type: ignore[misc]
            {"model": model}, executor="threads", max_workers=w, pools=pools, keep_outputs=True)
        runs[f"arun{w}"] = lambda w=w: asyncio.run(flow.arun(  # type: ignore[misc]
            {"model": model}, max_workers=w, pools=pools, keep_outputs=True))
    return {"model": model, "runs": {where: _pooled(go) for where, go in runs.items()}}


def pooled_on(where: str, seeds: "list[int]", store: "str | None" = None, workers: int = 2) -> "dict[str, Any]":
    """The drawn pooled flows of ``seeds`` on ``where`` (:func:`elsewhere`;
    on workers, ``workers`` worker processes beside this one): per seed its
    model and what :func:`_pooled` says of its run."""
    out: dict[str, Any] = {}
    log = _log()  # (before any process starts: they keep the environment they start with)
    assert log
    with elsewhere(where, store, workers, "addsteps:POOLED") as run:
        for seed in seeds:
            model = draw_pooled(seed)
            out[str(seed)] = {"model": model, "run": _pooled(
                lambda: run(pooled_flow(), {"model": model}, pools={"db": model["size"]}, keep_outputs=True))}
    return out


def _log() -> str:
    """The file every process logs its holds to (``modelsteps.LOG``: one for this process's life)."""
    import tempfile

    import modelsteps

    return os.environ.setdefault(modelsteps.LOG, os.path.join(tempfile.mkdtemp(), "held.log"))


def _pooled(go: "Callable[[], microdag.Run]") -> "dict[str, Any]":
    """The run ``go()`` makes: its statuses, the most units held at once (in
    this process, and over every process's logged intervals:
    ``modelsteps.peaks``) and the processes that held some."""
    import modelsteps

    log = _log()
    _HELD[1] = 0
    for path in (log, log + ".pids"):
        if os.path.exists(path):
            os.remove(path)
    run = go()
    logged = modelsteps.peaks(log).get("db", 0) if os.path.exists(log) else 0
    with open(log + ".pids") as f:
        pids = sorted(set(map(int, f.read().split())))
    return {"most": max(_HELD[1], logged), "statuses": {n: t.status for n, t in run.tasks.items()}, "pids": pids}


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
