"""What a pool may submit before it is ready: steps that can only follow a running one.

A pool whose tasks can wait for their inputs on the workers (Dask) saves a
round trip per hop by submitting, with an attempt, the steps that could
follow it: their arguments hold the running tasks' futures.  This module says
which steps, and how they are called; the pool keeps the tasks and adopts
one when its step really starts (see ``pools/dask.py``).

A step may go ahead when it is pending, its trigger is ``all_success`` (any
other rule needs to know how its dependencies ended), it is not a map step
(its units are known only from its input) nor cached (the cache is asked
when it starts) nor using a pool or rate (it waits for room in the runner,
which hands it out only when there is), and each of its dependencies has succeeded or runs (or went
ahead) in the pool.  The run stopping stops it.  A step added while the run
runs never goes ahead (it is submitted when ready).
"""

from .._compat import sched
from ._call import kwargs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from ..pools._attempt import Attempt

    from ._state import Runner

__all__ = ["Ahead"]

_PENDING = sched.PENDING
_READY = sched.READY
_SUCCEEDED = sched.SUCCEEDED


class Ahead:
    """Steps a pool may submit ahead, for one run (see the module docs)."""

    def __init__(self, runner: "Runner") -> None:
        self.r = runner
        steps = runner.plan.steps
        self._plain = [s.trigger == "all_success" and s.map is None and not s.cache and not s.uses for s in steps]

    def after(self, step: int) -> "Iterable[int]":
        """The steps that depend on ``step``."""
        return self.r.k.successors(step)

    def call(
        self, step: int, futures: "dict[int, Any]"
    ) -> "tuple[Attempt, Callable[..., Any], dict[str, Any]] | None":
        """How to submit ``step`` now, its dependencies' running tasks being
        ``futures`` (step id -> future); ``None`` when it may not go ahead."""
        r = self.r
        k = r.k
        if r.stopping or step >= len(self._plain) or not self._plain[step] or k.state(step) not in (_PENDING, _READY):
            return None
        for dep in k.predecessors(step):
            if dep not in futures and k.state(dep) != _SUCCEEDED:
                return None
        deps = [futures[d] if d in futures else r.value(d) for d in r.plan.argdeps[step]]
        attempt = r.caller.attempt(step, r.attempts[step] + 1)
        attempt.carry = True  # (its adds come back with its result, as dispatch's attempts' do)
        return attempt, r.plan.fns[step], kwargs(r.kwnames[step], deps, r.consts[step])
