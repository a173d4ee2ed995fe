"""``microdag.context()``: what a running step can learn about itself.

The runner does not build a context object per step (that would cost more
than many steps do).  Each thread that runs steps holds, in a
:class:`contextvars.ContextVar`, one :class:`Frame` for the whole run: the
run's facts plus ``current = [step id, item index]``, which the scheduler's
hot loop overwrites before each call.  :func:`context` reads the frame and
builds a :class:`StepContext` only when a step asks.  Worker processes and
asyncio tasks get frames of their own.

Working directories: each run has a directory (under the system's temporary
directory unless a store provides one), created on first use; each step gets
``<run dir>/<step name>``, so a later step finds an earlier one's files with
``context().path_of("earlier")``.
"""

import contextvars
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any

__all__ = ["StepContext", "context"]


class Frame:
    """The per-thread view of a run: fixed facts and the step being run."""

    __slots__ = ("run_id", "flow", "names", "attempts", "run_dir", "current", "cancel", "add")

    def __init__(
        self,
        run_id: str,
        flow: str,
        names: "Sequence[str]",
        attempts: "Sequence[int] | None",
        run_dir: "str | None",
        cancel: "Any" = None,
        add: "Callable[..., str] | None" = None,
    ) -> None:
        self.run_id = run_id
        self.flow = flow
        self.names = names
        self.attempts = attempts
        self.run_dir = run_dir
        #: The run's cancel event (``None``: none, or in a worker process).
        self.cancel = cancel
        # step id, item index, attempt of a map unit (0: read the step's attempts),
        # a keyed map item's key (or, on the map loop, the keys by item index)
        self.current: list[object] = [-1, None, 0, None]
        #: ``Runner.add_step`` of the run; in another process, what carries
        #: the adds back with the result, or refuses them (``pools._attempt``).
        self.add = add


_FRAME: "contextvars.ContextVar[Frame | None]" = contextvars.ContextVar("microdag_frame", default=None)

#: The current thread's (or task's) frame, or ``None`` outside a run.
current_frame = _FRAME.get


def enter(frame: Frame) -> "contextvars.Token[Frame | None]":
    """Make ``frame`` the current thread's (or task's) frame."""
    return _FRAME.set(frame)


def leave(token: "contextvars.Token[Frame | None]") -> None:
    _FRAME.reset(token)


def in_step() -> bool:
    """Whether the caller runs inside a step."""
    frame = _FRAME.get()
    return frame is not None and frame.current[0] != -1


class StepContext:
    """Facts about the running step (from :func:`microdag.context`).

    Attributes:
        run_id: the run's id.
        flow: the flow's name.
        step: the step's name.
        attempt: the attempt number, 1 for the first.
        item: the map item index (for a batch, the index of its first item),
            or ``None`` outside a map.
        key: the item's key, in a map with ``key=``; else ``None``.
    """

    __slots__ = ("run_id", "flow", "step", "attempt", "item", "_run_dir", "key", "_add")

    def __init__(
        self, run_id: str, flow: str, step: str, attempt: int, item: "int | None", run_dir: str,
        key: "str | int | None" = None, add: "Callable[..., str] | None" = None,
    ) -> None:
        self.run_id = run_id
        self.flow = flow
        self.step = step
        self.attempt = attempt
        self.item = item
        self._run_dir = run_dir
        self.key = key
        self._add = add

    def add(
        self, name: str, fn: "Callable[..., Any]", *, depends_on: "Iterable[str]" = (),
        inputs: "Mapping[str, str] | None" = None, **options: "Any",
    ) -> str:
        """Add a step to this run: it runs in the run as any of the flow's
        steps, with the same options as :meth:`Flow.add` (``retries``,
        ``timeout``, ``map``, ``cache``, ``trigger``, ``uses``...; not ``priority``),
        its parameters bound by name to the run's steps (added ones too) and
        inputs.  It may depend on any step of the run: one that succeeded
        lets it start at once.  A durable store records it with this step's
        name and how to make it again (``fn`` as ``module:qualname``), so a
        resumed run runs it too.

        Returns:
            the new step's name.

        In a step that runs in another process (processes, an executor,
        Dask, workers) the add is checked there as far as it can be without the run
        (``fn`` must be found again by name) and applied when the step's
        attempt settles: a check that needs the run (a name taken, an unknown
        dependency) then fails this step.

        Raises:
            FlowError: the step is refused (its name is taken, a dependency
                is unknown, an option or a pool is invalid, ``fn`` cannot be
                named for a durable store or another process, or this step
                runs in an Argo pod); nothing was added, and the
                run goes on if this step catches it.
        """
        if self._add is None:
            raise RuntimeError(f"step {self.step!r} cannot add step {name!r}: it runs outside a flow's run")
        return self._add(self.step, name, fn, depends_on, inputs, options)

    @property
    def run_dir(self) -> str:
        """The run's directory (created when first asked for)."""
        os.makedirs(self._run_dir, exist_ok=True)
        return self._run_dir

    @property
    def workdir(self) -> str:
        """This step's directory, ``<run dir>/<step>`` (created when first asked for)."""
        path = os.path.join(self._run_dir, _safe(self.step))
        os.makedirs(path, exist_ok=True)
        return path

    def path_of(self, step: str) -> str:
        """The directory of another step of this run (it need not exist yet)."""
        return os.path.join(self._run_dir, _safe(step))

    def __repr__(self) -> str:
        item = "" if self.item is None else f" item={self.item}"
        return f"<StepContext run={self.run_id} step={self.step!r} attempt={self.attempt}{item}>"


def _safe(name: str) -> str:
    """A step name as one path component, distinct for distinct names: a name
    of letters, digits, ``-``, ``_`` and ``.`` is itself; any other gets its
    odd characters replaced and a digest of the name appended (so ``a b``,
    ``a_b`` and ``a/b`` get three folders)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    if cleaned == name and cleaned.strip(".") and len(name) <= 100:
        return name
    import hashlib  # (only for names that had to change)

    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{cleaned[:80].strip('.') or '_'}-{digest}"


def context() -> StepContext:
    """The running step's :class:`StepContext`.

    Raises:
        RuntimeError: called outside a running step.
    """
    frame = _FRAME.get()
    if frame is None or frame.current[0] == -1:
        raise RuntimeError(
            "microdag.context() was called outside a running step: it is only "
            "available while a step of a flow run executes"
        )
    i, item, attempt, key = frame.current
    assert isinstance(i, int)
    if type(key) is list:  # the map loop's: the keys, by item index
        key = key[item]  # type: ignore[call-overload]
    if not attempt and frame.attempts is not None:  # a step, not a map unit
        attempt = frame.attempts[i]
    if frame.run_dir is None:
        frame.run_dir = default_run_dir(frame.run_id)
    return StepContext(
        frame.run_id, frame.flow, frame.names[i], int(attempt or 1), item, frame.run_dir,  # type: ignore[call-overload, arg-type]
        key,  # type: ignore[arg-type]
        frame.add,
    )


def default_run_dir(run_id: str) -> str:
    """Where a run's directory goes when no store provides one."""
    import tempfile  # (import time: tempfile loads on first use)

    return os.path.join(tempfile.gettempdir(), f"microdag-{run_id}")
