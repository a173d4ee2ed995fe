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
            ``"step_finished"`` or ``"run_finished"``.
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
    """

    __slots__ = ("kind", "run_id", "flow", "step", "status", "attempt", "duration", "error", "time")

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

    def __repr__(self) -> str:
        fields = [f"{self.kind}", f"run={self.run_id}"]
        if self.step is not None:
            fields.append(f"step={self.step!r}")
        for name in ("status", "attempt", "duration"):
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
    import logging

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


def dispatch(hooks: "Iterable[Callable[[Event], Any]]", event: Event) -> None:
    """Call every hook with ``event``; a hook that raises is logged and skipped."""
    for hook in hooks:
        try:
            hook(event)
        except Exception as exc:
            log(30, "hook %r raised %r on %r", hook, exc, event)
