"""Soak: the default run's randomized attacks again, with many more seeds.

Out of the default run (the ``soak`` marker); ``python -m pytest -m soak``
runs them, ``MICRODAG_SOAK_ROUNDS`` seeds each (default 100; about ten minutes
on two cores), on the twin ``MICRODAG_NO_EXTENSIONS`` leaves (the model test
on both twins, as in the default run):

- random flows on every backend, against the documented rules (``test_model``);
- random flows whose steps add steps, on every backend out of the process
  (``test_add_steps``: the rules; a pool's bound, on a third of the seeds);
- a child run SIGKILLed at random moments, then resumed, on both durable
  stores (``test_durable``): nothing recorded as succeeded runs again, and
  every output is the uninterrupted run's;
- random flows built with ``add``, its whole way (``_add``) and ``add_many``,
  equal column by column (``test_build``).

Its seeds are not the default run's; ``MICRODAG_SOAK_BASE`` (default 1000)
moves them, to explore new flows and kill points.
"""

import os

import pytest

import addsteps
import test_add_steps
import test_build
import test_durable
import test_model

pytestmark = pytest.mark.soak

ROUNDS = int(os.environ.get("MICRODAG_SOAK_ROUNDS", "100"))
BASE = int(os.environ.get("MICRODAG_SOAK_BASE", "1000"))
SEEDS = range(BASE, BASE + ROUNDS)


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> "tuple[str, ...]":
    return test_model.shared_stores(tmp_path_factory)


@pytest.mark.parametrize("seed", SEEDS)
def test_every_backend_follows_the_rules(seed, twin, stores) -> None:
    test_model.test_every_backend_follows_the_rules_on_random_flows(seed, twin, stores)


@pytest.mark.parametrize("where", addsteps.ELSEWHERE)
def test_adding_flows_follow_the_rules_out_of_process(where, twin, tmp_path) -> None:
    test_add_steps.check_model(where, list(SEEDS), twin, tmp_path)


@pytest.mark.parametrize("where", addsteps.ELSEWHERE)
def test_adds_under_a_pool_never_exceed_it_out_of_process(where, twin, tmp_path) -> None:
    test_add_steps.check_pooled(where, list(SEEDS[: max(3, ROUNDS // 3)]), twin, tmp_path)


@pytest.mark.parametrize("seed", SEEDS[: max(1, ROUNDS // 3)])
@pytest.mark.parametrize("mode", list(test_durable.CRASH_MODES))
@pytest.mark.parametrize("kind", ["json", "sqlite"])
def test_a_run_killed_at_random_resumes_losing_nothing(kind, mode, seed, tmp_path) -> None:
    test_durable.kill_and_resume(kind, mode, tmp_path, f"soak {kind} {mode} {seed}")


@pytest.mark.parametrize("seed", range(BASE, BASE + 10 * ROUNDS))
def test_flows_built_every_way_are_equal(seed) -> None:
    test_build.test_add_builds_what_its_whole_way_builds(seed)
    test_build.test_a_flow_built_with_add_many_is_the_flow_built_step_by_step(seed)
    test_build.test_steps_may_name_dependencies_defined_later(seed)
