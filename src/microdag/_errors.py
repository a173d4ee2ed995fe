"""Every public exception of microdag, and no logic beyond formatting.

All exceptions pickle: their constructors take positional arguments only, and
``args`` carries everything needed to rebuild them (process backends send them
across process boundaries).
"""

import graphlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Hashable, Iterable, Sequence
    from typing import Any

__all__ = ["CycleError", "FlowError", "RunFailed", "Skip", "StoreError"]


def nearest(word: str, choices: "Iterable[object]") -> "str | None":
    """The choice most like ``word`` (a misspelling of it), or ``None``.

    Only choices of a similar length are compared, so a flow of a million
    steps is searched in a few tens of milliseconds.
    """
    import difflib  # (only when a name is wrong)

    n = len(word)
    near: list[str] = [c for c in choices if isinstance(c, str) and abs(len(c) - n) <= max(2, n // 3) and c != word]
    found = difflib.get_close_matches(word, near, n=1, cutoff=0.75)
    return found[0] if found else None


def _path(cycle: "Sequence[Any]") -> str:
    return " -> ".join(repr(node) for node in cycle)


class CycleError(graphlib.CycleError):
    """The graph has a cycle.

    A subclass of :class:`graphlib.CycleError` (and so of :class:`ValueError`),
    so ``except graphlib.CycleError`` keeps working.  As in :mod:`graphlib`,
    ``args[1]`` is the cycle: a list of nodes where each node is an immediate
    predecessor of the next, and the first and last nodes are the same.
    """

    @property
    def cycle(self) -> "list[Hashable]":
        """The cycle as a list, first and last node the same."""
        return list(self.args[1]) if len(self.args) > 1 else []

    def __str__(self) -> str:
        if len(self.args) > 1:
            return f"{self.args[0]}: {_path(self.args[1])}"
        return super().__str__()


class FlowError(ValueError):
    """A flow or graph definition is invalid.

    ``problems`` lists every problem found, one readable sentence each; the
    message joins them so that one error reports all of them at once.
    """

    def __init__(self, *problems: str) -> None:
        super().__init__(*problems)

    @property
    def problems(self) -> list[str]:
        """Each problem found, one sentence each."""
        return [str(p) for p in self.args]

    def __str__(self) -> str:
        if len(self.args) == 1:
            return str(self.args[0])
        lines = [f"{len(self.args)} problems:"]
        lines.extend(f"  - {p}" for p in self.args)
        return "\n".join(lines)


class RunFailed(Exception):
    """A run did not succeed (``flow.run(..., raise_on_failure=True)``).

    ``run`` is the :class:`~microdag.Run` with every task's state;
    ``__cause__`` is the first failing step's own exception, which carries a
    note naming the step and the attempt.
    """

    def __init__(self, message: str, run: "Any" = None) -> None:
        super().__init__(message, run)

    @property
    def run(self) -> "Any":
        """The run that did not succeed."""
        return self.args[1]

    def __str__(self) -> str:
        return str(self.args[0])


class Skip(Exception):
    """Raise inside a step to mark it ``skipped`` instead of failed.

    Steps that depend on it follow their trigger rule (by default they are
    skipped too).  A run whose only non-successes are skips succeeds.

    Raises:
        RuntimeError: created outside a running step.
    """

    def __init__(self, reason: str = "") -> None:
        from ._context import in_step  # (import time: a flow's definition loads no _context)

        if not in_step():
            raise RuntimeError(
                "microdag.Skip can only be raised inside a running step "
                f"(Skip({reason!r}) was raised outside any step)"
            )
        super().__init__(reason)

    @property
    def reason(self) -> str:
        """Why the step skipped itself."""
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> "Any":
        # Rebuilt in another process (or after the step) without the check.
        return (_rebuild_skip, (self.args,))


def _rebuild_skip(args: "tuple[Any, ...]") -> Skip:
    skip = Exception.__new__(Skip)
    skip.args = args
    return skip


class StoreError(Exception):
    """A store cannot be opened or used (not a microdag store, a newer schema,
    a corrupt file, an unknown run, a run id that is taken); the message says
    which, naming the file or the run."""


# Tracebacks print an exception's class by its module: the public one. (They
# pickle by that name too, which resolves: the package exports each of them.)
for _cls in (CycleError, FlowError, RunFailed, Skip):
    _cls.__module__ = "microdag"
StoreError.__module__ = "microdag.stores"
del _cls
