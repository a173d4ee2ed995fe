"""A finished run's outcome: its end recorded, and its :class:`~microdag.Run` made.

:func:`run_result` reads the state machine (``_state``) once the loop is
done: the steps that never ran are recorded as skipped, pending or
cancelled, the recorder is closed with the run's status, and the outputs
kept (read from the store where a resumed run left them, fetched from a
cluster where they stayed there) go into the ``Run``.
"""

import time

from .._compat import sched
from .._result import Run
from ..pools._attempt import local_all
from ._recorder import STORED

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._state import Runner

__all__ = ["run_result"]


def run_result(r: "Runner", inputs: "dict[str, Any]") -> Run:
    """The :class:`~microdag.Run` of the run ``r`` holds (given ``inputs``);
    its end is recorded first.  (Reads the state; writes only the outputs a
    resumed run left in the store, read now.)"""
    k = r.k
    states = k.states()
    names = r.names
    kept = [i for i in (range(r.n) if r.keep is None else r.keep) if states[i] == sched.SUCCEEDED]
    stored = [names[i] for i in kept if r.outputs[i] is STORED]
    if stored:  # outputs of a resumed run that nothing read yet: one read
        try:
            loaded = r.recorder.outputs(stored)
        except BaseException:  # (damaged): the run's end is recorded all the same, or a refused resume undone
            r.recorder.close(r.status(), time.time())
            raise
        for i in kept:
            if r.outputs[i] is STORED:
                r.outputs[i] = loaded.get(names[i])
    values = [r.outputs[i] for i in kept]
    outputs: dict[str, Any] = dict(zip([names[i] for i in kept], local_all(values) if r.remote else values))
    status = r.status()
    error = r.errors.get(r.first_failure) if r.first_failure >= 0 else None
    finished = time.time()
    if r.recorder.durable:
        ended = (sched.SKIPPED, sched.CANCELLED, sched.PENDING, sched.READY)
        for i in range(r.n) if r.subset is None else r.subset:
            st = states[i]
            if i in r.cancelled or st == sched.CANCELLED:
                label = "cancelled"
            elif st in ended:
                label = "skipped" if st == sched.SKIPPED else "pending"
            else:
                continue
            r.recorder.step_ended(i, label, r.attempts[i], r.started[i], r.finished[i], None, r.waited(i))
    r.recorder.close(status, finished)
    return Run(
        r.run_id, r.flow, status, outputs, inputs, r.wall0, finished, error, names,
        r.plan.graph._index,
        states, r.attempts, r.started, r.finished, r.errors, r.offset,
        frozenset(r.cancelled), r.reasons, frozenset(r.cached), None if r.growth is None else r.growth.by,
        None if r.limits is None else {i: r.limits.waited(i) for i in range(r.n) if r.attempts[i]},
    )
