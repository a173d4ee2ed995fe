"""Random flows for the model-based test (``test_model.py``), and their oracle.

A flow is drawn from a seed as a list of step specs (JSON-able, so a child
process can rebuild it): each step has dependencies on earlier steps, a
trigger rule, a retry policy and a behaviour:

- ``ok``: returns ``base + the sum of its int inputs``;
- ``fail``: always raises ``ValueError``;
- ``flaky``: raises ``ValueError`` on its first ``k`` attempts;
- ``skip``: raises ``microdag.Skip``;
- ``sleep``: sleeps a little (under a generous timeout), then as ``ok``;
- ``hang``: sleeps far past its timeout on every attempt.

Most flows also have a map step over five items, some of which fail their
first ``k`` attempts.  :func:`limits` draws pools (sizes 1 to 3) and a rate
for a flow, and which steps use them (never a hung step, whose abandoned
call outlives the units it held); such steps log the interval of each call
(:data:`LOG`, one line per call, appended by any process), from which
:func:`peaks` counts the most units of each pool held at one instant.  :func:`expected` says what the documented rules make of
a flow under ``on_failure="continue"``: per step its status, attempts,
output and error type.  :func:`run_everywhere` runs a flow on every backend
and returns the same facts from each run.
"""

import asyncio
import os
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import microdag
from microdag._records import StoredError

TRIGGERS = ("all_success", "all_done", "none_failed")
KINDS = ("ok", "ok", "ok", "fail", "flaky", "flaky", "skip", "sleep", "hang")
HANG_TIMEOUT = 0.05
HANG_SECONDS = 0.3
SLEEP_TIMEOUT = 5.0
ITEMS = 5


#: The environment variable naming the file calls of steps that use pools log to.
LOG = "MICRODAG_MODEL_LOG"


class _Logged:
    """Logs the interval of a call when the step uses pools: ``uses``, pool -> units."""

    uses: "dict[str, int]"

    def log(self, start: float) -> None:
        path = os.environ.get(LOG)
        if path and self.uses:
            with open(path, "a") as f:
                f.write(f"{start!r} {time.time()!r} {' '.join(f'{p}={u}' for p, u in self.uses.items())}\n")


class Behaviour(_Logged):
    """A step (see the module docs); module-level, so that worker processes load it."""

    def __init__(self, base: int, kind: str, k: int = 0, seconds: float = 0.0,
                 uses: "dict[str, int] | None" = None) -> None:
        self.base = base
        self.kind = kind
        self.k = k
        self.seconds = seconds
        self.uses = uses or {}

    def __call__(self, **deps):
        start = time.time()
        try:
            return self._call(deps)
        finally:
            self.log(start)

    def _call(self, deps):
        kind = self.kind
        if kind == "fail":
            raise ValueError("planned failure")
        if kind == "flaky" and microdag.context().attempt <= self.k:
            raise ValueError(f"planned failure on attempt {microdag.context().attempt}")
        if kind == "skip":
            raise microdag.Skip("planned skip")
        if kind in ("sleep", "hang"):
            time.sleep(self.seconds)
        return self.base + sum(v for v in deps.values() if type(v) is int)


class Items:
    def __call__(self):
        return list(range(ITEMS))


class Item(_Logged):
    """A map item function: item ``x`` fails its first ``flaky[x]`` attempts."""

    def __init__(self, flaky: "dict[int, int]", uses: "dict[str, int] | None" = None) -> None:
        self.flaky = flaky
        self.uses = uses or {}

    def __call__(self, x):
        start = time.time()
        try:
            if microdag.context().attempt <= self.flaky.get(x, 0):
                raise ValueError(f"item {x} fails")
            return x * 10
        finally:
            self.log(start)


def draw(seed: int) -> "list[dict]":
    """A random flow's step specs (see the module docs)."""
    rnd = random.Random(seed)
    n = rnd.randint(4, 12)
    specs: list[dict] = []
    hangs = 0
    for i in range(n):
        names = [s["name"] for s in specs]
        kind = rnd.choice(KINDS)
        if kind == "hang":
            hangs += 1
            if hangs > 1:  # one hung step per flow keeps the test quick
                kind = "fail"
        spec = {
            "name": f"s{i}",
            "deps": sorted(rnd.sample(names, min(len(names), rnd.randint(0, 3)))),
            "trigger": rnd.choice(TRIGGERS),
            "kind": kind,
            "k": rnd.randint(1, 3),
            "retries": rnd.randint(0, 1 if kind == "hang" else 2),
            "delay": rnd.choice([0.0, 0.005, 0.02]),
            "base": rnd.randint(1, 100),
            "seconds": {"sleep": rnd.choice([0.005, 0.02]), "hang": HANG_SECONDS}.get(kind, 0.0),
        }
        specs.append(spec)
    if rnd.random() < 0.7:
        flaky = {x: rnd.randint(1, 3) for x in rnd.sample(range(ITEMS), rnd.randint(0, 2))}
        specs.append({"name": "items", "kind": "items"})
        specs.append({
            "name": "m", "kind": "map", "flaky": {str(x): k for x, k in flaky.items()},
            "retries": rnd.randint(0, 2), "delay": rnd.choice([0.0, 0.01]),
        })
        if rnd.random() < 0.5:  # a step after the map
            specs.append({
                "name": "after", "deps": ["m", specs[0]["name"]], "trigger": rnd.choice(TRIGGERS),
                "kind": "ok", "k": 0, "retries": 0, "delay": 0.0, "base": 7, "seconds": 0.0,
            })
    return specs


def limits(seed: int, specs: "list[dict]") -> "dict[str, dict]":
    """Random pools (sizes 1 to 3) and a rate for the flow ``specs``, and the
    steps' uses: ``{"pools": ..., "rates": ..., "uses": {step: {name: units}}}``."""
    rnd = random.Random(seed * 7919 + 1)
    pools = {f"p{j}": rnd.randint(1, 3) for j in range(rnd.randint(1, 3))}
    rates = {"r": rnd.choice(["200/s", "100/s burst 2"])}
    uses: dict[str, dict[str, int]] = {}
    for s in specs:
        if s["kind"] in ("hang", "items") or rnd.random() < 0.3:
            continue
        use = {p: rnd.randint(1, size) for p, size in pools.items() if rnd.random() < 0.6}
        if rnd.random() < 0.3:
            use["r"] = 1
        if use:
            uses[s["name"]] = use
    return {"pools": pools, "rates": rates, "uses": uses}


def peaks(path: str) -> "dict[str, int]":
    """The most units of each pool the logged calls held at one instant."""
    events: list[tuple[float, int, str, int]] = []
    with open(path) as f:
        for line in f:
            start, end, *held = line.split()
            for pair in held:
                pool, units = pair.split("=")
                events.append((float(start), 1, pool, int(units)))
                events.append((float(end), 0, pool, -int(units)))
    events.sort()
    now: dict[str, int] = {}
    most: dict[str, int] = {}
    for _, _, pool, units in events:
        now[pool] = now.get(pool, 0) + units
        most[pool] = max(most.get(pool, 0), now[pool])
    return most


def build(specs: "list[dict]", uses: "dict[str, dict[str, int]] | None" = None) -> microdag.Flow:
    uses = uses or {}
    flow = microdag.Flow("model")
    for s in specs:
        use = uses.get(s["name"])
        logged = {p: u for p, u in (use or {}).items() if p != "r"}
        if s["kind"] == "items":
            flow.add("items", Items())
        elif s["kind"] == "map":
            flaky = {int(x): k for x, k in s["flaky"].items()}
            flow.add("m", Item(flaky, logged), map="x", inputs={"x": "items"}, retries=s["retries"],
                     retry_delay=s["delay"], uses=use)
        else:
            timeout = {"hang": HANG_TIMEOUT, "sleep": SLEEP_TIMEOUT}.get(s["kind"])
            flow.add(s["name"], Behaviour(s["base"], s["kind"], s["k"], s["seconds"], logged), depends_on=s["deps"],
                     trigger=s["trigger"], retries=s["retries"], retry_delay=s["delay"], timeout=timeout, uses=use)
    return flow


def expected(specs: "list[dict]") -> "dict[str, list]":
    """Per step ``[status, attempts, output, error type]``, as the rules say."""
    out: dict[str, list] = {}
    for s in specs:
        name, kind = s["name"], s["kind"]
        if kind == "items":
            out[name] = ["succeeded", 1, list(range(ITEMS)), None]
            continue
        if kind == "map":
            retries = s["retries"]
            tries = [min(s["flaky"].get(str(x), 0), retries) + 1 for x in range(ITEMS)]
            bad = any(s["flaky"].get(str(x), 0) > retries for x in range(ITEMS))
            if bad:
                out[name] = ["failed", max(tries), None, "ValueError"]
            else:
                out[name] = ["succeeded", max(tries), [x * 10 for x in range(ITEMS)], None]
            continue
        deps = [out[d] for d in s["deps"]]
        statuses = {d[0] for d in deps}
        trigger = s["trigger"]
        runs = (
            trigger == "all_done"
            or (trigger == "all_success" and statuses <= {"succeeded"})
            or (trigger == "none_failed" and "failed" not in statuses)
        )
        if not runs:
            out[name] = ["skipped", 0, None, None]
            continue
        value = s["base"] + sum(d[2] for d in deps if type(d[2]) is int)
        retries = s["retries"]
        if kind in ("ok", "sleep"):
            out[name] = ["succeeded", 1, value, None]
        elif kind == "fail":
            out[name] = ["failed", retries + 1, None, "ValueError"]
        elif kind == "flaky":
            if s["k"] <= retries:
                out[name] = ["succeeded", s["k"] + 1, value, None]
            else:
                out[name] = ["failed", retries + 1, None, "ValueError"]
        elif kind == "skip":
            out[name] = ["skipped", 1, None, None]
        elif kind == "hang":
            out[name] = ["failed", retries + 1, None, "TimeoutError"]
    return out


def facts(run: microdag.Run) -> "dict[str, list]":
    return {name: [task.status, task.attempts, run.outputs.get(name), error_type(task.error)]
            for name, task in run.tasks.items()}


def error_type(error: "BaseException | None") -> "str | None":
    """The name of an error's type (a stored run's error is read back as a ``StoredError`` that names it)."""
    if error is None:
        return None
    if isinstance(error, StoredError):
        return error.type_name
    return type(error).__name__


def run_everywhere(
    specs: "list[dict]", stores: "tuple[str, ...]" = (), limited: "dict[str, dict] | None" = None,
) -> "dict[str, object]":
    """Run the flow on every backend with ``max_workers`` 1, 2 and 3 (inline
    once), and on workers (2 threads) sharing each of ``stores`` (default:
    an SQLite file in a temporary folder); with ``limited`` (:func:`limits`),
    under its pools and rates, and not on workers (which refuse them).

    Returns ``{"backend/workers": [run status, per-step facts]}``, and with
    ``limited`` the peaks of its pools (``[status, facts, peaks]``).
    """
    flow = build(specs, limited["uses"] if limited else None)
    options: dict = {"on_failure": "continue", "raise_on_failure": False, "keep_outputs": True}
    if limited:
        options.update(pools=limited["pools"], rates=limited["rates"])
    results: dict[str, object] = {}
    # One path for the life of this process: worker processes (a forkserver's
    # children) keep the environment they started with.
    log = os.environ.setdefault(LOG, os.path.join(tempfile.gettempdir(), f"microdag-model-{os.getpid()}.log"))
    if os.path.exists(log):
        os.remove(log)

    def record(where: str, run: microdag.Run) -> None:
        results[where] = [run.status, facts(run)]
        if limited:
            results[where].append(peaks(log) if os.path.exists(log) else {})  # type: ignore[attr-defined]
            if os.path.exists(log):
                os.remove(log)

    record("inline", flow.run(**options))
    for workers in (1, 2, 3):
        for backend in ("threads", "processes", "executor", "arun"):
            if backend == "arun":
                run = asyncio.run(flow.arun(max_workers=workers, **options))
            elif backend == "executor":
                with ThreadPoolExecutor(workers) as pool:
                    run = flow.run(executor=pool, max_workers=workers, **options)
            else:
                run = flow.run(executor=backend, max_workers=workers, **options)
            record(f"{backend}/{workers}", run)
    if limited:
        return results
    with tempfile.TemporaryDirectory() as folder:
        for store in stores or (os.path.join(folder, "runs.db"),):
            run = flow.run(executor="workers", store=store, max_workers=2, **options)
            where = "workers/postgres" if store.startswith("postgresql:") else "workers/sqlite"
            results[where] = [run.status, facts(run)]
    return results
