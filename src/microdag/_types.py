"""The ``Literal`` types of microdag's string options and statuses.

For type checkers: the modules that use them import them under
``TYPE_CHECKING`` only, so that nothing imports :mod:`typing` at run time;
``microdag.RunStatus`` and ``microdag.TaskStatus`` load this module when a
program asks for them.
"""

from collections.abc import Callable
from typing import Any, Literal, Protocol

__all__ = ["DaskClient", "ExecutorName", "OnFailure", "RunStatus", "TaskStatus", "Trigger"]

#: The executors named by a string (any ``concurrent.futures.Executor`` also works).
ExecutorName = Literal["inline", "threads", "processes", "workers"]


class DaskClient(Protocol):
    """A ``distributed.Client``, as ``executor=`` takes it (what the type
    checker sees of it; microdag tells a client from an executor by its class)."""

    def submit(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any: ...
    def gather(self, futures: Any, /) -> Any: ...

#: What a run does after a step fails.
OnFailure = Literal["fail_fast", "continue"]
#: When a step runs, given how its dependencies ended.
Trigger = Literal["all_success", "all_done", "none_failed"]
#: How a run ended (``Run.status``); ``"running"``: a run read from a store
#: (``Store.load_run``) while it runs.
RunStatus = Literal["succeeded", "failed", "cancelled", "running"]
#: How a task ended, or where it is (``Task.status``); ``"unknown"``: a stored
#: status that this microdag does not know (written by a newer one).
TaskStatus = Literal["succeeded", "failed", "skipped", "cancelled", "pending", "running", "unknown"]
