"""The threads loop: N worker threads, each driving the kernel itself.

Every worker runs the inline loop's body: the kernel's hot loop (``drive``)
for plain steps, the careful path (``_local``) for the others, the units of
running maps, and retries when they are due.  Shared state changes under the
runner's lock (``Runner.lock``: the pure kernel twin's operations, map claims
and counts, a careful step's release and done; the compiled hot loop needs
none, its kernel operations being atomic under the GIL).  A worker with
nothing to do waits on one condition variable; every transition that can
make work notifies it (``Runner.wake``), and ``drive`` returns early to ask
for that when it made steps ready while some worker is idle.

Idle accounting: a worker counts itself idle (``idle[0]``) under the
condition's lock *before* it looks for work, so a worker that makes work
either sees it idle (and notifies) or is seen by it.

Why it cannot hang: a worker waits without a timeout only when no retry is
waiting and some other worker is busy (that worker notifies when it is done).
The last worker to go idle, with the others all waiting, looks at the kernel
while nobody can change it: the run is over, or it raises the state
machine's stall error instead of waiting forever.  With a cancel event,
waits are 50 ms at most, so that a set event is seen.
"""

import threading
import time

from .. import _capture
from .._compat import sched
from .._context import enter, leave
from ._local import InThread

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._state import Runner

__all__ = ["run_threads"]


class _Crew:
    """What the workers of one run share besides the runner."""

    def __init__(self, runner: "Runner", workers: int) -> None:
        self.runner = runner
        self.cond = threading.Condition()
        self.idle = [0]  # workers waiting for work (drive() reads it)
        self.live = workers  # workers that have not returned
        self.done = threading.Event()
        self.crashes: list[BaseException] = []
        self.local = InThread(runner)

    def notify(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def stop(self) -> None:
        """Stop the run (an internal error, or Ctrl-C in the caller) and wake everyone."""
        with self.cond:
            self.runner.stop()
            self.cond.notify_all()

    def retire(self) -> None:
        """A worker returns."""
        with self.cond:
            self.live -= 1
            if self.live <= 0:
                self.done.set()
            self.cond.notify_all()


def run_threads(runner: "Runner", workers: int) -> None:
    """Run ``runner``'s steps on ``workers`` threads until the run is over."""
    crew = _Crew(runner, workers)
    runner.share(workers, crew.notify)

    def worker() -> None:
        try:
            _work(crew)
        except BaseException as exc:  # an internal error: stop the run, report it
            crew.crashes.append(exc)
            crew.stop()
        finally:
            crew.retire()

    threads = [threading.Thread(target=worker, name=f"microdag worker {w}", daemon=True) for w in range(workers)]
    started = 0
    try:
        for t in threads:
            t.start()
            started += 1
        crew.done.wait()
    except BaseException as exc:  # Ctrl-C in the calling thread
        runner.interrupted(exc)
        crew.stop()
        # A start() cut short may still have launched its thread: give such
        # threads a moment to come up, then stop counting on the others.
        deadline = time.monotonic() + 1.0
        for t in threads[started:]:
            while t.ident is None and time.monotonic() < deadline:
                time.sleep(0.005)
        with crew.cond:
            crew.live -= sum(1 for t in threads if t.ident is None)
            if crew.live <= 0:
                crew.done.set()
        crew.done.wait()
    finally:
        crew.local.close()
    if crew.crashes:
        raise crew.crashes[0]


def _work(crew: _Crew) -> None:
    """One worker thread: its context frame and capture around :func:`_loop`."""
    runner = crew.runner
    frame = runner.frame()
    token = enter(frame)
    routed = _capture.route(frame.current) if runner.capture else None
    try:
        _loop(crew, frame.current)
    finally:
        if routed is not None:
            _capture.unroute(routed)
        leave(token)


def _loop(crew: _Crew, current: "list[object]") -> None:
    runner = crew.runner
    local = crew.local
    maps = runner.maps
    on_done = runner.record_done if runner.capture else None
    tail = (runner.lock, crew.idle, current, runner.cancel, on_done)
    args = runner.drive_args() + tail
    grown = runner.grown
    drive = sched.drive
    k = runner.k
    cond = crew.cond
    idle = crew.idle
    poll = None if runner.cancel is None else 0.05
    while True:
        if maps.running:  # help with the units of running maps first
            local.run_maps()
        if runner.grown != grown:  # a step added steps: the lists grew
            grown = runner.grown
            args = runner.drive_args() + tail
        try:
            r = drive(*args)
        except ValueError:  # another worker grew the run between the look above and the call
            if runner.grown == grown:
                raise
            continue
        if r is not None:
            i, exc = r
            current[0] = -1
            if i < 0:  # steps became ready while workers are idle
                crew.notify()
            elif exc is None:
                local.run_step(i)
            else:
                runner.hot_failed(i, exc)
            continue
        current[0] = -1
        if runner.grown != grown:
            continue
        runner.check_cancel()
        att = None
        with cond:
            if k.remaining == 0 or (runner.cancel_requested and k.running == 0):
                cond.notify_all()
                return
            wait = runner.next_due()
            if wait is not None and wait <= 0:
                att = runner.pop_due()
            else:
                # Count ourselves idle before looking again, so that a step
                # finishing in another thread either sees us or we see it.
                idle[0] += 1
                try:
                    with runner.lock:
                        nothing = k.ready == 0 and not maps.claimable()
                    if nothing:
                        if wait is None and idle[0] >= crew.live:
                            # Everyone else waits here too: nobody can make work.
                            if k.remaining:
                                raise runner.stall_error()
                            return
                        if poll is not None:
                            wait = poll if wait is None else min(wait, poll)
                        cond.wait(wait)
                finally:
                    idle[0] -= 1
        if att is not None:
            local.run(att)
