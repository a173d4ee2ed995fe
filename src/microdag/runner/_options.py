"""The options of one run, as ``Flow.run`` and ``Flow.arun`` take them: one frozen object.

``Flow.run`` and ``Flow.arun`` build a :class:`RunOptions` from their keyword
arguments and hand it down; ``execute``, ``execute_async`` and ``_setup``
read it, and nothing changes it (``arun`` makes a changed copy with
:meth:`RunOptions.replace`).  They are checked in ``_setup.check``, all
together, before anything runs.  A plain class with slots, not a dataclass:
``dataclasses`` imports ``inspect``, which a run must not pay for.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

__all__ = ["RunOptions"]


class RunOptions:
    """What ``Flow.run`` was asked for, besides the inputs (see its docs)."""

    __slots__ = ("executor", "max_workers", "targets", "on_failure", "hooks", "keep_outputs", "cancel", "store",
                 "run_id", "resume", "force", "lease", "pools", "rates")

    executor: "Any"
    max_workers: "int | None"
    targets: "Iterable[str] | None"
    on_failure: str
    hooks: "Iterable[Callable[[Any], Any]]"
    keep_outputs: bool
    cancel: "Any"
    store: "Any"
    run_id: "str | None"
    resume: bool
    force: bool
    lease: "float | None"
    pools: "Mapping[str, int]"
    rates: "Mapping[str, str]"

    def __init__(
        self, *, executor: "Any", max_workers: "int | None", targets: "Iterable[str] | None", on_failure: str,
        hooks: "Iterable[Callable[[Any], Any]]", keep_outputs: bool, cancel: "Any", store: "Any",
        run_id: "str | None", resume: bool, force: bool, lease: "float | None" = None,
        pools: "Mapping[str, int] | None" = None, rates: "Mapping[str, str] | None" = None,
    ) -> None:
        # Every field is given: the defaults are Flow.run's, and live there only.
        setattr_ = object.__setattr__
        setattr_(self, "executor", executor)
        setattr_(self, "max_workers", max_workers)
        setattr_(self, "targets", targets)
        setattr_(self, "on_failure", on_failure)
        setattr_(self, "hooks", hooks)
        setattr_(self, "keep_outputs", keep_outputs)
        setattr_(self, "cancel", cancel)
        setattr_(self, "store", store)
        setattr_(self, "run_id", run_id)
        setattr_(self, "resume", resume)
        setattr_(self, "force", force)
        setattr_(self, "lease", lease)
        setattr_(self, "pools", pools or {})
        setattr_(self, "rates", rates or {})

    def __setattr__(self, name: str, value: "Any") -> None:
        raise AttributeError(f"RunOptions are frozen: {name!r} cannot be set (make a copy with replace())")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"RunOptions are frozen: {name!r} cannot be deleted")

    def replace(self, **changes: "Any") -> "RunOptions":
        """A copy with ``changes``."""
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        return RunOptions(**fields)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"RunOptions({shown})"
