"""The inline loop: every step runs in the caller's thread.

The kernel's hot loop (``drive``) runs ready steps until one fails, needs
care (``_local``), or none is ready; then this loop settles that step, runs
the units of a map that started, runs a retry that is due, or sleeps until
the next one is.  With a store, ``drive`` records each success as it goes
(``Runner.record_done``) and what a step prints is captured by the step id
the loop writes into the thread's context frame.

Why it cannot hang: it sleeps only until a known retry is due (50 ms at a
time when it must watch a cancel event); when nothing is ready, running or
waiting, the run is over or the state machine's stall error is raised.
"""

import time

from .. import _capture
from .._compat import sched
from .._context import enter, leave
from ._local import InThread

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._state import Runner

__all__ = ["run_inline"]


def run_inline(runner: "Runner") -> None:
    """Run ``runner``'s steps in this thread until the run is over."""
    drive = sched.drive
    local = InThread(runner)
    frame = runner.frame()
    token = enter(frame)
    routed = on_done = None
    if runner.capture:
        routed = _capture.route(frame.current)
        on_done = runner.record_done
    tail = (None, None, frame.current, runner.cancel, on_done)
    args = runner.drive_args() + tail
    k = runner.k
    grown = runner.grown
    try:
        while True:
            if runner.grown != grown:  # a step added steps: the lists grew
                grown = runner.grown
                args = runner.drive_args() + tail
            r = drive(*args)
            if r is not None:
                i, exc = r
                frame.current[0] = -1
                if exc is None:
                    local.run_step(i)
                else:
                    runner.hot_failed(i, exc)
                if runner.maps.running:
                    local.run_maps()
                continue
            frame.current[0] = -1
            if runner.grown != grown:
                continue
            if runner.check_cancel() and k.running == 0:
                return
            if k.remaining == 0:
                return
            wait = runner.next_due()
            if wait is None:
                raise runner.stall_error()
            if wait > 0:
                time.sleep(wait if runner.cancel is None else min(wait, 0.05))
                continue
            att = runner.pop_due()
            if att is not None:
                local.run(att)
            if runner.maps.running:  # (units that waited for a retry or a token)
                local.run_maps()
    finally:
        local.close()
        if routed is not None:
            _capture.unroute(routed)
        leave(token)
