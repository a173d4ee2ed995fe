"""Events handed to ``hooks=`` callables, and the ``microdag`` logger.

Nothing here imports :mod:`logging` at module level: the runner logs through
:func:`log`, which imports it on first use, so a run that logs nothing never
pays for it.
"""

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

__all__ = ["Event"]


class Event:
    """Something that happened in a run, handed to each hook.

    Attributes:
        kind: ``"run_started"``, ``"step_started"``, ``"step_retrying"``,
            ``"step_progress"`` (items of a map step finished),
            ``"step_finished"``, ``"step_added"`` (a running step added
            this step to the run) or ``"run_finished"``.
        run_id: the run's id.
        flow: the flow's name.
        step: the step's name (``None`` for run events).
        status: for ``step_finished`` the task's status, for
            ``run_finished`` the run's; else ``None``.
        attempt: the attempt number (1 for the first), for step events.
        duration: seconds, for ``step_finished`` (of the last attempt) and
            ``run_finished``; for ``step_retrying``, the delay before the
            next attempt.
        error: the exception, for a failed attempt or step.
        time: when it happened (``time.time()``).
        items: for ``step_progress``, ``(finished, total)``: how many items of
            the map step have finished (succeeded or failed, in this run or,
            resumed, before it) and how many it maps over; else ``None``.
        item, key: for ``step_retrying`` and ``step_progress`` about one item
            of a map step, its number and (a map with ``key=``) its key;
            else ``None``.
        waited: for ``step_started``, seconds the step waited for room in
            its pools or for a rate's token before it started (a run with
            pools or rates); else ``None``.
    """

    __slots__ = ("kind", "run_id", "flow", "step", "status", "attempt", "duration", "error", "time", "items",
                 "item", "key", "waited")

    def __init__(
        self,
        kind: str,
        run_id: str,
        flow: str,
        step: "str | None" = None,
        status: "str | None" = None,
        attempt: "int | None" = None,
        duration: "float | None" = None,
        error: "BaseException | None" = None,
        time: float = 0.0,
        items: "tuple[int, int] | None" = None,
        item: "int | None" = None,
        key: "str | int | None" = None,
        waited: "float | None" = None,
    ) -> None:
        self.kind = kind
        self.run_id = run_id
        self.flow = flow
        self.step = step
        self.status = status
        self.attempt = attempt
        self.duration = duration
        self.error = error
        self.time = time
        self.items = items
        self.item = item
        self.key = key
        self.waited = waited

    def __repr__(self) -> str:
        fields = [f"{self.kind}", f"run={self.run_id}"]
        if self.step is not None:
            fields.append(f"step={self.step!r}")
        for name in ("status", "attempt", "duration", "items", "item", "key", "waited"):
            value = getattr(self, name)
            if value is not None:
                fields.append(f"{name}={value!r}")
        if self.error is not None:
            fields.append(f"error={self.error!r}")
        return f"<Event {' '.join(fields)}>"


def log(level: int, msg: str, *args: "Any") -> None:
    """Log to the ``microdag`` logger (imports :mod:`logging` when first used).

    The logger gets a :class:`logging.NullHandler` and nothing else, as the
    logging guide asks of libraries: records reach whatever the application
    configured, and an application that configured nothing sees nothing.
    """
    import logging  # (import time: logging loads on first use)

    logger = logging.getLogger("microdag")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    logger.log(level, msg, *args)


def debug_enabled() -> bool:
    """Whether the ``microdag`` logger wants DEBUG records (never imports logging)."""
    logging = sys.modules.get("logging")
    if logging is None:
        return False
    return bool(logging.getLogger("microdag").isEnabledFor(logging.DEBUG))


#: (run id, id of a hook or tracer) of those that raised in a run not finished yet.
_RAISED: "set[tuple[str, int]]" = set()


def raised(what: str, exc: Exception, run_id: str, key: object, where: str) -> None:
    """``what`` (a hook, a tracer: ``key``) raised ``exc`` ``where``: logged once per
    run and ``key``.  Nothing else happens: an error of a hook or a tracer never
    changes a run's outcome or its records."""
    mark = (run_id, id(key))
    if mark in _RAISED:
        return
    _RAISED.add(mark)
    log(30, "run %s: %s raised %s: %s (%s); the run goes on, and this run logs no more of its errors",
        run_id, what, type(exc).__name__, exc, where)


def forget(run_id: str) -> None:
    """The run ended: forget which of its hooks and tracers raised."""
    if _RAISED:
        for mark in [m for m in _RAISED if m[0] == run_id]:
            _RAISED.discard(mark)


def dispatch(hooks: "Iterable[Callable[[Event], Any]]", event: Event) -> None:
    """Call every hook with ``event``; a hook that raises is logged (once a run) and skipped."""
    for hook in hooks:
        try:
            hook(event)
        except Exception as exc:
            raised(f"hook {hook!r}", exc, event.run_id, hook, f"on {event!r}")
    if event.kind == "run_finished":
        forget(event.run_id)
