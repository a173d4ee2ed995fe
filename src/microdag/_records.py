"""What is kept of a run: its record, its tasks' records, and the one status table.

:class:`RunInfo` is a run without its tasks; :class:`TaskRecord` is one task
(a step, or one item of a map step) with its encoded output;
:class:`StoredError` is a step's exception read back from a store.  Stores
write and read these; the report draws them; :mod:`microdag._result` turns
them into a :class:`~microdag.Run`.

The status table is the only place that maps the kernel's state codes to
the statuses users see (``Task.status``, records, reports) and back.  Both
kernel twins number their states alike; a test pins this table to both, so
that reading a stored run does not need to load the kernel at all.

This module imports nothing from microdag: every layer may use it.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CODES", "EXCLUDED", "STATUS", "RunInfo", "StoredError", "TaskRecord"]

#: Kernel state code -> task status (``READY`` is still ``"pending"`` to users).
STATUS = ("pending", "pending", "running", "succeeded", "failed", "skipped", "cancelled", "excluded")
#: Task status -> kernel state code (a status the table does not know reads as pending).
CODES = {"pending": 0, "running": 2, "succeeded": 3, "failed": 4, "skipped": 5, "cancelled": 6}
#: The code of a step that is not part of a run (outside its targets).
EXCLUDED = 7


class RunInfo:
    """One run as a store records it (without its tasks)."""

    __slots__ = ("id", "flow", "fingerprint", "inputs", "status", "started", "finished", "source")

    def __init__(
        self,
        id: str,
        flow: str,
        fingerprint: str,
        inputs: "dict[str, Any]",
        status: str,
        started: float,
        finished: "float | None" = None,
        source: "str | None" = None,
    ) -> None:
        self.id = id
        self.flow = flow
        self.fingerprint = fingerprint
        self.inputs = inputs
        self.status = status
        self.started = started
        self.finished = finished
        self.source = source

    def __repr__(self) -> str:
        return f"<RunInfo {self.id} of {self.flow!r}: {self.status}>"


class TaskRecord:
    """One task (a step, or item ``item`` of a map step) as a store records it.

    ``output`` is the encoded output (``None`` when there is none).
    """

    __slots__ = (
        "step",
        "item",
        "status",
        "attempts",
        "started",
        "finished",
        "error_type",
        "error_message",
        "traceback",
        "output",
    )

    def __init__(
        self,
        step: str,
        item: int = -1,
        status: str = "pending",
        attempts: int = 0,
        started: "float | None" = None,
        finished: "float | None" = None,
        error_type: "str | None" = None,
        error_message: "str | None" = None,
        traceback: "str | None" = None,
        output: "bytes | None" = None,
    ) -> None:
        self.step = step
        self.item = item
        self.status = status
        self.attempts = attempts
        self.started = started
        self.finished = finished
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback
        self.output = output

    def as_tuple(self) -> tuple["Any", ...]:
        return (
            self.step, self.item, self.status, self.attempts, self.started, self.finished,
            self.error_type, self.error_message, self.traceback, self.output,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskRecord) and self.as_tuple() == other.as_tuple()

    def __repr__(self) -> str:
        item = "" if self.item < 0 else f"[{self.item}]"
        return f"<TaskRecord {self.step}{item} {self.status} attempts={self.attempts}>"


class StoredError(Exception):
    """A step's error read back from a store: its type's name, message and traceback."""

    def __init__(self, type_name: str, message: str, traceback: str = "") -> None:
        super().__init__(type_name, message, traceback)

    @property
    def type_name(self) -> str:
        return str(self.args[0])

    @property
    def traceback(self) -> str:
        return str(self.args[2])

    def __str__(self) -> str:
        return f"{self.args[0]}: {self.args[1]}"
