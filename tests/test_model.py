"""Model-based test of the runner: random flows on every backend, against the rules.

Each seed draws a flow of 4 to 12 steps (``modelsteps.draw``): random
dependencies and trigger rules, retries with delays, steps that succeed,
fail, fail their first k attempts, skip themselves, sleep, or hang past their
timeout, and most often a map step with flaky items.  A child process runs
it on every backend (inline; threads, processes, a foreign
``ThreadPoolExecutor`` and ``arun`` with ``max_workers`` 1, 2 and 3; workers
sharing an SQLite file, and a PostgreSQL database where the tests have a
server, ``executor="workers"``), and again (but on workers) under random
pools of sizes 1 to 3 and a rate, checking that no pool was ever over its
size, under
``on_failure="continue"``, with a timeout, so a run that hangs fails the test.
Every run must match what the documented rules say (``modelsteps.expected``),
step by step: status, attempts, output and error type; so every backend also
agrees with inline.  The rules checked include: a step whose retries cover
its failures succeeds with ``k + 1`` attempts; a hung step fails with
``TimeoutError`` after ``retries + 1`` attempts; an ``all_success`` step after
a non-success is skipped; a map step's attempts are its most-tried item's.
"""

import pytest

import modelsteps
import pgserver
from support import IN_CI, postgres_url, run_child

SEEDS = range(10)


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> "tuple[str, ...]":
    """The stores workers share (:func:`shared_stores`)."""
    return shared_stores(tmp_path_factory)


def shared_stores(tmp_path_factory) -> "tuple[str, ...]":
    """The stores workers share: an SQLite file, and a PostgreSQL database where there is a server (always in CI)."""
    sqlite = str(tmp_path_factory.mktemp("model") / "runs.db")
    if pgserver.missing() is not None and not IN_CI:
        return (sqlite,)
    return sqlite, postgres_url()


@pytest.mark.parametrize("seed", SEEDS)
def test_pools_and_rates_hold_on_every_backend(seed, twin) -> None:
    """The same flows under random pools (sizes 1 to 3) and a rate: every run
    ends, agrees with the rules (so with inline), and no pool was ever over
    its size (the steps' logged calls, from every process)."""
    specs = modelsteps.draw(seed)
    limited = modelsteps.limits(seed, specs)
    want = modelsteps.expected(specs)
    results = run_child(
        "import json, modelsteps\n"
        f"specs = modelsteps.draw({seed})\n"
        f"print(json.dumps(modelsteps.run_everywhere(specs, limited=modelsteps.limits({seed}, specs))))",
        timeout=90.0, twin=twin.TWIN,
    )
    assert isinstance(results, dict) and len(results) == 13
    for where, (_, got, peaks) in results.items():
        assert got == want, f"{where} (seed {seed}): {specs} {limited}"
        for pool, most in peaks.items():
            assert most <= limited["pools"][pool], f"{where} (seed {seed}): pool {pool} held {most} units"


@pytest.mark.parametrize("seed", SEEDS)
def test_every_backend_follows_the_rules_on_random_flows(seed, twin, stores) -> None:
    specs = modelsteps.draw(seed)
    want = modelsteps.expected(specs)
    status = "failed" if any(v[0] == "failed" for v in want.values()) else "succeeded"
    results = run_child(
        "import json, modelsteps\n"
        f"print(json.dumps(modelsteps.run_everywhere(modelsteps.draw({seed}), {stores!r})))",
        timeout=90.0, twin=twin.TWIN,
    )
    assert isinstance(results, dict) and len(results) == 13 + len(stores)
    for where, (got_status, got) in results.items():
        assert got == want, f"{where} (seed {seed}): {specs}"
        assert got_status == status, where


def test_the_flows_drawn_cover_every_behaviour() -> None:
    """The seeds above exercise each kind of step, each trigger and the map."""
    kinds, triggers, maps = set(), set(), 0
    for seed in SEEDS:
        for spec in modelsteps.draw(seed):
            kinds.add(spec["kind"])
            triggers.add(spec.get("trigger"))
            maps += spec["kind"] == "map"
    assert kinds >= {"ok", "fail", "flaky", "skip", "sleep", "hang", "map"}
    assert triggers >= set(modelsteps.TRIGGERS)
    assert maps >= 2
