"""Retry policy: when a failed attempt is tried again, and after how long.

Each step gets a :class:`Retry` when the flow compiles (steps with equal
options share one), whose ``delay(exc, attempt)`` says how long to wait
before the next attempt, or ``None`` for no retry.  It is the only place
that decides retries, for steps and map items alike.
"""

from ._steps import _RETRY_ON, _Same

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._steps import _Options, _Steps

__all__ = ["Retry"]


class Retry:
    """When a failed attempt is tried again, and after how long.

    Args:
        retries: attempts after the first, at most.
        base: seconds before the first retry; each next one waits
            ``backoff`` times longer, at most ``max_delay`` (jitter: each delay
            is drawn from ``[d/2, d)``).
        on: the exception classes that are retried.
    """

    __slots__ = ("retries", "base", "backoff", "max_delay", "on")

    def __init__(
        self,
        retries: int = 0,
        base: float = 0.0,
        backoff: float = 2.0,
        max_delay: "float | None" = None,
        on: "tuple[type[BaseException], ...]" = _RETRY_ON,
    ) -> None:
        self.retries = retries
        self.base = base
        self.backoff = backoff
        self.max_delay = max_delay
        self.on = on

    def delay(self, exc: BaseException, attempt: int) -> "float | None":
        """Seconds to wait before the attempt after ``attempt`` (1 for the
        first), which raised ``exc``; ``None`` when there is no retry."""
        if attempt > self.retries or not isinstance(exc, self.on):
            return None
        delay = self.base * self.backoff ** (attempt - 1)
        if self.max_delay is not None:
            delay = min(delay, self.max_delay)
        if delay <= 0:
            return 0.0
        import random  # (import time: random loads on first use)

        return delay * (0.5 + random.random() / 2)  # equal jitter: [delay/2, delay)

    def __repr__(self) -> str:
        return f"<Retry retries={self.retries} delay={self.base:g} backoff={self.backoff:g}>"


def _retry_policies(steps: "_Steps", options: "set[_Options]") -> "list[Retry]":
    """One :class:`Retry` per step; steps with the same options share one
    (``options``: the distinct ones)."""
    shared: dict[tuple[Any, ...], Retry] = {}
    by_options: dict[int, Retry] = {}
    for o in options:
        key = (o.retries, o.retry_delay, o.retry_backoff, o.retry_max_delay, o.retry_on)
        policy = shared.get(key)
        if policy is None:
            policy = shared[key] = Retry(*key)
        by_options[id(o)] = policy
    if len(by_options) == 1:
        return _Same(next(iter(by_options.values())), len(steps))  # type: ignore[return-value]
    return [by_options[id(o)] for o in steps.opts]
