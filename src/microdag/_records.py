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

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from ._types import RunStatus

__all__ = [
    "CODES", "EXCLUDED", "PACKAGE", "STATUS", "UNKNOWN", "RunInfo", "StoredError", "TaskRecord", "check_run_id",
    "check_task", "busy_time", "key_text", "limits_of", "key_value", "run_status", "step_traceback",
]

#: microdag's own folder (with a trailing separator): a frame whose file is in
#: it is microdag's, not a step's or a caller's.
PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep

#: Kernel state code -> task status (``READY`` is still ``"pending"`` to users).
STATUS = ("pending", "pending", "running", "succeeded", "failed", "skipped", "cancelled", "excluded", "unknown")
#: Task status -> kernel state code.
CODES = {"pending": 0, "running": 2, "succeeded": 3, "failed": 4, "skipped": 5, "cancelled": 6}
#: The code of a step that is not part of a run (outside its targets).
EXCLUDED = 7
#: The code of a stored status this table does not know (a newer microdag's).
UNKNOWN = 8


def run_status(cancelled: bool, failed: bool) -> "RunStatus":
    """A run's status once it ended: ``cancelled`` (stopped, by Ctrl-C or a
    cancel), else ``failed`` when a step failed, else ``succeeded``: the one
    rule, for a run in one process and for a run its workers share."""
    return "cancelled" if cancelled else "failed" if failed else "succeeded"


class RunInfo:
    """One run as a store records it (without its tasks)."""

    __slots__ = ("id", "flow", "fingerprint", "inputs", "status", "started", "finished", "source", "problem", "code",
                 "limits")

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
        problem: "str | None" = None,
        code: "dict[str, str] | None" = None,
        limits: "dict[str, dict[str, Any]] | None" = None,
    ) -> None:
        self.id = id
        self.flow = flow
        self.fingerprint = fingerprint
        self.inputs = inputs
        self.status = status
        self.started = started
        self.finished = finished
        self.source = source
        #: For a run whose record cannot be read (``status == "damaged"``,
        #: from ``Store.list_runs``): what is wrong with it.
        self.problem = problem
        #: Step name -> a digest of the code (and default values) its step ran,
        #: so that a resume can tell when a finished step's code has changed
        #: (``None``: not recorded, by an older microdag or for a huge flow).
        self.code = code
        #: The run's pools and rates as given, and what its steps hold:
        #: ``{"pools": {name: size}, "rates": {name: "10/s"}, "uses": {step:
        #: {name: units}}}`` (``None``: it had none, or an older microdag ran it).
        self.limits = limits

    @classmethod
    def damaged(cls, run_id: str, problem: str, flow: str = "?", started: float = 0.0) -> "RunInfo":
        """The listing of a run whose record cannot be read."""
        return cls(run_id, flow, "", {}, "damaged", started, problem=problem)

    def __repr__(self) -> str:
        return f"<RunInfo {self.id} of {self.flow!r}: {self.status}>"


class TaskRecord:
    """One task (a step, or item ``item`` of a map step) as a store records it.

    ``output`` is the encoded output (``None`` when there is none); ``waited``,
    the seconds its attempts waited, in all, for room in a pool or a rate's
    token (``None``: the run had no pools or rates); ``key``,
    for an item of a map step with ``key=``, the item's key as JSON text
    (:func:`key_text`; ``None``: no key), by which a resume finds it again.
    ``item`` is the item's number among the step's records: its position in
    the list the step mapped over, or for a keyed item first met by a resume
    whose list had changed, a number after every one the step recorded before.
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
        "key",
        "waited",
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
        key: "str | None" = None,
        waited: "float | None" = None,
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
        self.key = key
        self.waited = waited

    def as_tuple(self) -> tuple["Any", ...]:
        return (
            self.step, self.item, self.status, self.attempts, self.started, self.finished,
            self.error_type, self.error_message, self.traceback, self.output, self.key,
            self.waited,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskRecord) and self.as_tuple() == other.as_tuple()

    def __repr__(self) -> str:
        item = "" if self.item < 0 else f"[{self.item}]" if self.key is None else f"[{self.item} key {self.key}]"
        return f"<TaskRecord {self.step}{item} {self.status} attempts={self.attempts}>"


_NUMBER = (int, float)
#: The longest run id.
RUN_ID_LIMIT = 128


def check_run_id(run_id: object) -> str:
    """``run_id`` if it can name a run in every store, the same rule for all.

    A run id is 1 to 128 characters, printable, without ``/``, ``\\`` or lone
    surrogates, and not ``.`` or ``..`` (stores make folders and files of it).

    Raises:
        ValueError: it cannot (the message says why).
    """
    if not isinstance(run_id, str) or not run_id:
        raise ValueError(f"a run id must be a non-empty string, not {run_id!r}")
    problem = None
    if len(run_id) > RUN_ID_LIMIT:
        problem = f"it is longer than {RUN_ID_LIMIT} characters"
    elif "/" in run_id or "\\" in run_id:
        problem = "it holds a path separator"
    elif run_id in (".", ".."):
        problem = "it names a folder"
    else:
        try:
            run_id.encode()
        except UnicodeEncodeError:
            problem = "it holds a lone surrogate"
        else:
            if not run_id.isprintable():
                problem = "it holds a control character"
    if problem is not None:
        raise ValueError(f"run id {run_id!r} cannot be used: {problem}")
    return run_id



def check_task(
    step: object, item: object, status: object, attempts: object, started: object, finished: object,
    error_type: object, error_message: object, traceback: object, output: object, key: object = None,
    waited: object = None,
) -> TaskRecord:
    """A :class:`TaskRecord` from fields read back from a store, each checked.

    Raises:
        ValueError: a field has the wrong type (the message names it).
    """
    if (
        type(step) is str and type(item) is int and type(status) is str and type(attempts) is int
        and item >= -1 and attempts >= 0
        and (started is None or type(started) in _NUMBER) and (finished is None or type(finished) in _NUMBER)
        and (output is None or type(output) is bytes)
        and (error_type is None or type(error_type) is str) and (error_message is None or type(error_message) is str)
        and (traceback is None or type(traceback) is str) and (key is None or type(key) is str)
        and (waited is None or type(waited) in _NUMBER and waited >= 0)  # type: ignore[operator]
        and started == started and finished == finished  # not NaN
    ):
        return TaskRecord(
            step, item, status, attempts, started, finished, error_type, error_message,  # type: ignore[arg-type]
            traceback, output, key, waited,  # type: ignore[arg-type]
        )
    problems = []
    if type(step) is not str:
        problems.append(f"step is a {type(step).__name__}")
    if type(item) is not int or item < -1:
        problems.append(f"item is {item!r}")
    if type(status) is not str:
        problems.append(f"status is a {type(status).__name__}")
    if type(attempts) is not int or attempts < 0:
        problems.append(f"attempts is {attempts!r}")
    for name, value in (("started", started), ("finished", finished)):
        if value is not None and (type(value) not in _NUMBER or value != value):
            problems.append(f"{name} is {value!r}")
    for name, value in (("error_type", error_type), ("error_message", error_message), ("traceback", traceback)):
        if value is not None and type(value) is not str:
            problems.append(f"{name} is a {type(value).__name__}")
    if output is not None and type(output) is not bytes:
        problems.append(f"output is a {type(output).__name__}")
    if key is not None and type(key) is not str:
        problems.append(f"key is a {type(key).__name__}")
    if waited is not None and not (type(waited) in _NUMBER and waited >= 0):  # type: ignore[operator]
        problems.append(f"waited is {waited!r}")
    raise ValueError(", ".join(problems) or "a field has the wrong type")


#: ``json.encoder.encode_basestring``, once a key was recorded.
_quote: "Callable[[str], str] | None" = None


def limits_of(value: object) -> "dict[str, dict[str, Any]] | None":
    """A run's pools and rates as read back from a store (``RunInfo.limits``):
    ``{"pools": {name: size}, "rates": {name: rate}, "uses": {step: {name:
    units}}}``, or ``None`` when missing or not of that shape (they only
    inform what is shown)."""
    if type(value) is str:
        from json import loads  # (import time: json loads on first use)

        try:
            value = loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict):
        return None
    pools, rates, uses = value.get("pools", {}), value.get("rates", {}), value.get("uses", {})
    if not (isinstance(pools, dict) and isinstance(rates, dict) and isinstance(uses, dict)
            and all(type(k) is str and type(v) is int for k, v in pools.items())
            and all(type(k) is str and type(v) is str for k, v in rates.items())
            and all(type(k) is str and isinstance(v, dict)
                    and all(type(p) is str and type(u) is int for p, u in v.items()) for k, v in uses.items())):
        return None
    return {"pools": pools, "rates": rates, "uses": uses}


def key_text(key: "str | int") -> str:
    """How an item's key (a ``str`` or an ``int``) is recorded: as JSON text,
    so that ``7`` and ``"7"`` stay two keys (``"q-1"``, ``7``)."""
    global _quote
    if not isinstance(key, str):
        return str(key)
    if _quote is None:
        from json.encoder import encode_basestring  # (import time: json loads on first use)

        _quote = encode_basestring  # (json.dumps's own quoting, without its per-call setup)
    return _quote(key)


def key_value(text: str) -> "Any":
    """A key recorded by :func:`key_text`, back as the key (what an older or
    damaged record holds that is not JSON: as it is)."""
    from json import loads  # (import time: json loads on first use)

    try:
        return loads(text)
    except ValueError:
        return text


def busy_time(intervals: "Iterable[tuple[float | None, float | None]]") -> float:
    """Seconds during which some task was running: the length of the union of
    the ``(start, end)`` intervals (those with both ends).  A run resumed after
    an interrupt counts its working time, not the idle time between."""
    busy = 0.0
    upto = float("-inf")
    for start, end in sorted((s, e) for s, e in intervals if s is not None and e is not None):  # (nearly sorted)
        if start > upto:
            busy += end - start
            upto = end
        elif end > upto:
            busy += end - upto
            upto = end
    return busy


def step_traceback(error: BaseException) -> str:
    """The traceback kept for a step's ``error``: from the step's own frames on.

    The frames of microdag's that called the step (the runner, a pool, a
    pod) are left out, so the first frame is the step function's; an error
    raised in microdag itself (a command step, a timeout) keeps none.  An
    error raised in another process carries its traceback as text
    (``__microdag_traceback__``, set by ``pools._attempt.invoke``).
    """
    kept = getattr(error, "__microdag_traceback__", None)  # (made where it was raised: another process)
    if isinstance(kept, str):  # with the notes added since
        notes = getattr(error, "__notes__", None)
        return kept + "".join(f"{note}\n" for note in notes or () if isinstance(note, str) and note not in kept)
    import traceback  # (import time: traceback loads on first use)

    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(PACKAGE):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb))


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
