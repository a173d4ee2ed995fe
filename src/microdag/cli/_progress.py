"""The progress of a run on stderr (``run`` and ``resume``)."""

import sys
import time

from .._cmdline import printable
from .._present import duration_text
from ._common import cols, color, columns, cut, one_line, paint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TextIO

class Progress:
    """Reports a run on stderr as it goes.

    On a terminal: one line rewritten in place (steps done, running and
    failed, elapsed, ETA, then the names of the running steps, as many as
    fit), never wider than the terminal, redrawn at most every ``INTERVAL``
    seconds (a daemon thread keeps the clock moving; the last state is always
    drawn); a running map step shows its items ended and in all.  Elsewhere:
    one plain line per finished step, and for a map step's items at most every
    ``PLAIN_ITEMS`` seconds.  Quiet: nothing.

    Steps run from ``step_started`` to ``step_finished`` (a retry starts a
    step again, a step skipped or cancelled before it started finishes it
    without a start).  The ETA is the pace of the steps finished so far applied
    to those left, counted down from the last finish: a long step makes it
    reach zero (then it is left out), never grow.
    """

    #: Seconds between two redraws, at least.
    INTERVAL = 0.1
    #: Seconds between two plain lines of a map step's items, at least.
    PLAIN_ITEMS = 2.0

    def __init__(
        self,
        total: int,
        done: int,
        quiet: bool,
        stream: "TextIO | None" = None,
        clock: "Callable[[], float] | None" = None,
        live: "bool | None" = None,
    ) -> None:
        import threading  # (the command line's start: threading loads with the command that uses it)

        self.stream = stream or sys.stderr
        self.total = total
        self.run_id: str | None = None  # from the run's first event
        self.done = done
        self.finished = 0  # steps finished in this process: the ETA's pace
        self.running: dict[str, None] = {}  # started and not finished, in the order they started
        self.items: dict[str, tuple[int, int]] = {}  # a running map step's (items ended, items)
        self.told: dict[str, float] = {}  # plain lines: when a map step's items were last told
        self.failed = 0
        self.quiet = quiet
        self.live = not quiet and self.stream.isatty() if live is None else live and not quiet  # (False: plain lines)
        self.color = color(self.stream)
        self.clock = clock or time.monotonic
        self.start = self.last = self.clock()  # the run's start, the last step's finish
        self.lock = threading.Lock()
        self.shown = 0  # columns of the line on screen
        self.drawn = float("-inf")  # when it was drawn
        self.dirty = False  # changed since
        self.stopped = threading.Event()
        if self.live:
            threading.Thread(target=self._tick, name="microdag-progress", daemon=True).start()

    def __call__(self, event: "Any") -> None:
        kind = event.kind
        self.run_id = event.run_id
        with self.lock:
            if kind == "step_started":
                self.running[event.step] = None
            elif kind == "step_progress":
                ended, total = event.items
                if ended > self.items.get(event.step, (0, 0))[0]:  # (workers may tell out of order)
                    self.items[event.step] = (ended, total)
                if not self.live and not self.quiet:
                    self._plain_items(event.step)
            elif kind == "step_finished":
                self.running.pop(event.step, None)
                self.items.pop(event.step, None)
                self.told.pop(event.step, None)
                self.done += 1
                self.finished += 1
                self.last = self.clock()
                if event.status == "failed":
                    self.failed += 1
                if not self.live and not self.quiet:
                    self._plain(event)
            elif kind == "step_added":  # a step added a step: one more to do
                self.total += 1
                return
            elif kind == "run_finished":
                if self.live:
                    self._draw()  # the final state, whatever the throttle says
                return
            elif kind != "run_started":
                return
            if self.live:
                if self.clock() - self.drawn >= self.INTERVAL:
                    self._draw()
                else:
                    self.dirty = True

    def _plain(self, event: "Any") -> None:
        status = paint(event.status, event.status, self.color)
        line = f"[{self.done}/{self.total}] {printable(event.step)}: {status}"
        if event.duration is not None and event.status in ("succeeded", "failed"):
            line += f" in {duration_text(event.duration)}"
        if event.attempt and event.attempt > 1:
            line += f" (attempt {event.attempt})"
        if event.error is not None:
            line += f": {type(event.error).__name__}: {one_line(str(event.error))}"
        print(line, file=self.stream, flush=True)

    def _plain_items(self, step: str) -> None:
        """A plain line of a map step's items, at most every ``PLAIN_ITEMS`` seconds a step."""
        now = self.clock()
        if now - self.told.get(step, self.start) < self.PLAIN_ITEMS:
            return
        self.told[step] = now
        ended, total = self.items[step]
        print(f"[{self.done}/{self.total}] {printable(step)}: {ended:,}/{total:,} items", file=self.stream, flush=True)

    def _eta(self, now: float) -> "float | None":
        left = self.total - self.done
        if not self.finished or left <= 0:
            return None
        eta = (self.last - self.start) / self.finished * left - (now - self.last)
        return eta if eta > 0 else None

    def _text(self, limit: int) -> str:
        """The line, at most ``limit`` columns wide."""
        now = self.clock()
        text = f"{self.done}/{self.total} steps done, {len(self.running)} running"
        if self.failed:
            text += f", {self.failed} failed"
        text += f", {duration_text(now - self.start)}"
        eta = self._eta(now)
        if eta is not None:
            text += f", ETA {duration_text(eta)}"
        used = len(text) + 3  # " | "
        names: list[str] = []
        count = len(self.running)
        for k, step in enumerate(self.running):
            name = printable(step)
            if step in self.items:
                ended, total = self.items[step]
                name += f" {ended}/{total}"
            width = cols(name) + (2 if names else 0)
            more = len(f", +{count - k - 1} more") if k + 1 < count else 0
            if used + width + more > limit:
                break
            names.append(name)
            used += width
        if names:
            text += " | " + ", ".join(names)
            if len(names) < count:
                text += f", +{count - len(names)} more"
        return cut(text, limit)

    def _draw(self) -> None:
        limit = columns(self.stream) - 1  # a full line would wrap on some terminals
        text = self._text(limit)
        width = cols(text)
        pad = " " * max(0, min(self.shown, limit) - width)  # over what is left of the last one
        self.shown = width
        self.drawn = self.clock()
        self.dirty = False
        self.stream.write("\r" + text + pad)
        self.stream.flush()

    def _tick(self) -> None:
        while not self.stopped.wait(self.INTERVAL):
            with self.lock:
                if self.stopped.is_set():  # closed while this waited for the lock
                    return
                since = self.clock() - self.drawn
                if since >= 2 * self.INTERVAL or (self.dirty and since >= self.INTERVAL):
                    self._draw()

    def close(self) -> None:
        self.stopped.set()
        if self.live:
            with self.lock:
                if self.dirty:
                    self._draw()
                blank = " " * min(self.shown, columns(self.stream) - 1)
                self.stream.write("\r" + blank + "\r")
                self.stream.flush()
