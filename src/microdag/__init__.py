"""microdag: a small, fast, embeddable DAG kernel.

Explicit re-exports only; everything public is listed in ``__all__``.
"""

from ._compat import TWIN as SCHEDULER
from ._errors import CycleError, FlowError, RunFailed
from ._events import Event
from ._flow import Flow
from ._graph import Graph, TopologicalSorter
from ._run import Run, Task
from ._version import __version__

__all__ = [
    "CycleError",
    "Event",
    "Flow",
    "FlowError",
    "Graph",
    "Run",
    "RunFailed",
    "SCHEDULER",
    "Task",
    "TopologicalSorter",
    "__version__",
]
