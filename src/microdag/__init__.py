"""microdag: a small, fast, embeddable DAG kernel.

Explicit re-exports only; everything public is listed in ``__all__``.
"""

from ._compat import TWIN as SCHEDULER
from ._errors import CycleError, FlowError
from ._graph import Graph, TopologicalSorter
from ._version import __version__

__all__ = [
    "CycleError",
    "FlowError",
    "Graph",
    "SCHEDULER",
    "TopologicalSorter",
    "__version__",
]
