"""A resumed run's state taken over from its records, before it starts.

The state machine (``_state.Runner``) is the one writer of a run's state
while it runs; before it starts, a resumed run's steps that its store records
as succeeded are handed to it here (``_setup`` reads the records): their
attempts, times and outputs (``STORED``: read from the store when a step
needs one), and the map units and keyed items they finished.
"""

from .._compat import sched
from ._recorder import STORED

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._state import Runner

__all__ = ["take_over"]


def take_over(
    runner: "Runner", ids: "list[int]", attempts: "Sequence[int]", started: "Sequence[float | None]",
    finished: "Sequence[float | None]", items: "dict[int, dict[int, int]] | None" = None,
    numbered: "dict[int, tuple[dict[str, int], int]] | None" = None,
) -> None:
    """Give ``runner`` the steps ``ids`` a resumed run records as succeeded
    (with their attempts, starts and finishes): their attempts and times
    now, their outputs when a step needs them (``Runner.value``); ``items``:
    map step id -> {item index: attempts} of the units it records as succeeded;
    ``numbered``: map step id -> ({key text: item index}, the largest index)
    of its item records (a keyed map's items are found by key)."""
    if items:
        runner.maps.resumed = items
    if numbered:
        runner.maps.numbered = numbered
    offset, wall0 = runner.offset, runner.wall0
    tries, starts, ends, outputs = runner.attempts, runner.started, runner.finished, runner.outputs
    for i, a, start, end in zip(ids, attempts, started, finished):
        tries[i] = a
        starts[i] = (start or wall0) - offset
        ends[i] = (end or wall0) - offset
        outputs[i] = STORED
    if ids:  # steps reading a stored output take the careful path, which reads it
        done = bytearray(runner.n)
        for i in ids:
            done[i] = 1
        flags = bytearray(runner.flags)
        argdeps = runner.plan.argdeps
        slow = sched.SLOW
        for i in range(runner.n):
            if not done[i] and not flags[i] & slow and any(done[d] for d in argdeps[i]):
                flags[i] |= slow
        runner.flags = bytes(flags)
