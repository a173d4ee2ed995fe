"""Attempts run in the calling thread: the careful path of the inline and threads loops.

The kernel's hot loop (``drive``) calls plain steps itself.  A step that needs
more (a timeout, a map, an async function, the cache, hooks) comes back to
the loop, which runs it here: :meth:`InThread.run_step` begins it,
:meth:`InThread.run` calls one attempt with the step's context, capture,
span (a traced run), event loop and timeout, and settles it through the
state machine.  Map
units are claimed in chunks and run by :meth:`InThread.run_units`, on the
kernel's map loop (``run_items``) when nothing about them needs care.

A timeout on this path cannot stop the call (Python cannot stop a thread):
the call runs in a helper thread (``_call.call_with_timeout``), and the
attempt fails with ``TimeoutError`` when its time is up; the call is
abandoned and its result, if it ever comes, is discarded.  A call that holds the GIL (a long C call) keeps every thread
waiting until it returns; the attempt still fails, as its result came after
its deadline.  An ``async def`` step runs on an event loop of this thread,
and a timeout cancels it.
"""

from .. import _capture
from .._compat import sched
from .._context import current_frame
from ._call import call_with_timeout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..pools._attempt import Attempt
    from ._maps import MapRun
    from ._state import Runner

__all__ = ["InThread"]


class InThread:
    """Runs attempts of one run in the threads that call it (see the module docs)."""

    def __init__(self, runner: "Runner") -> None:
        self.r = runner
        self.loops: dict[int, Any] = {}  # thread id -> its event loop, for async steps

    def run_step(self, i: int) -> None:
        """``drive()`` handed back step ``i`` (it needs care): begin it and run it here."""
        att = self.r.begin(i)
        if att is not None:
            self.run(att)
        # else: the cache settled it, or it is a map whose units run_maps() runs

    def run(self, att: "Attempt") -> None:
        """Run attempt ``att`` in this thread and settle it."""
        r = self.r
        i = att.step
        fn, kwargs = r.call_args(att)
        frame = current_frame()
        if frame is not None:
            frame.current[:] = [i, att.item, att.number, att.key]
        buffer = token = None
        if att.capture:
            buffer, token = _capture.start()
        trace = att.trace
        span = None if trace is None else trace.enter()
        try:
            if r.plan.is_async[i]:
                value = self._run_coroutine(fn(**kwargs), att)
            elif att.timeout is None:
                value = fn(**kwargs)
            else:
                helper = r.frame()
                helper.current[:] = [i, att.item, att.number, att.key]
                value = call_with_timeout(fn, kwargs, att, helper)
            ok = True
        except BaseException as exc:
            ok, value = False, exc
        finally:
            att.finished = r.clock()
            if trace is not None:
                trace.leave(span)
            if frame is not None:
                frame.current[:] = [-1, None, 0, None]
            if token is not None:
                _capture.stop(token)
        del kwargs
        if buffer:
            r.recorder.logs(att, "".join(buffer))
        r.settle(att, ok, value)

    def run_maps(self) -> None:
        """Help with the units of running maps until none is left to claim."""
        for ms in self.r.maps.unclaimed():
            self.run_units(ms)

    def run_units(self, ms: "MapRun") -> None:
        """Claim units of ``ms`` and run them in this thread until none is left."""
        r = self.r
        maps = r.maps
        i = ms.i
        step = r.plan.steps[i]
        careful = (step.timeout is not None or r.hooks or r.tracers is not None or r.plan.is_async[i]
                   or r.capture or ms.extra is not None or ms.numbers is not None or ms.cache is not None
                   or ms.held)
        fn = step.fn
        frame = current_frame()
        current = None
        if frame is not None:
            current = frame.current
            current[0] = i
            current[2] = 1  # first attempts; retries come back as attempts of their own
            current[3] = ms.keys  # a keyed map's keys, by the item index the loop writes
        base = ms.size or 1
        while True:
            start, stop = maps.claim(ms)
            if start == stop:
                break
            if careful:
                for j in range(start, stop):
                    self.run(maps.begin_unit(ms, j))
                continue
            j = start
            while j < stop:
                out = sched.run_items(fn, ms.names, ms.values, ms.pos, ms.units, ms.results, j, stop, current, base)
                if out is None:
                    maps.units_done(ms, j, stop)
                    break
                failed, exc = out
                maps.units_done(ms, j, failed)
                r.failed(maps.hot_attempt(ms, failed), exc)
                if ms.finished:
                    break
                j = failed + 1
        if current is not None:
            current[:] = [-1, None, 0, None]

    def _run_coroutine(self, coro: "Any", att: "Attempt") -> "Any":
        """Run an async step's coroutine on this thread's event loop (timeout: cancel it)."""
        import asyncio  # (import time: asyncio loads on first use)
        import threading  # (import time: threading loads on first use)

        from ..pools.aio import cancel_after  # (async steps only: asyncio)

        key = threading.get_ident()
        loop = self.loops.get(key)
        if loop is None:
            loop = self.loops[key] = asyncio.new_event_loop()
        return loop.run_until_complete(cancel_after(coro, att))

    def close(self) -> None:
        """Close the event loops this run made."""
        for loop in self.loops.values():
            loop.close()
        self.loops.clear()

