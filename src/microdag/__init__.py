"""microdag: a small, fast, embeddable DAG kernel.

Every public name is listed in ``__all__`` and re-exported here.  The modules
behind them load on first use (PEP 562), so ``import microdag`` costs next to
nothing: a CLI or a serverless function pays only for what it touches.
"""

from ._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._compat import TWIN as SCHEDULER
    from ._context import StepContext, context
    from ._errors import CycleError, FlowError, RunFailed, Skip
    from ._events import Event
    from ._flow import Flow
    from ._graph import Graph, TopologicalSorter
    from ._schema import ALLOW_INF_NAN
    from ._result import Run, Task
    from ._spec import load_flow
    from ._types import RunStatus, TaskStatus
    from . import stores

__all__ = [
    "ALLOW_INF_NAN",
    "CycleError",
    "Event",
    "Flow",
    "FlowError",
    "Graph",
    "Run",
    "RunFailed",
    "RunStatus",
    "SCHEDULER",
    "Skip",
    "StepContext",
    "Task",
    "TaskStatus",
    "TopologicalSorter",
    "__version__",
    "context",
    "load_flow",
    "stores",
]

# public name -> (module, name in that module)
_EXPORTS = {
    "ALLOW_INF_NAN": ("_schema", "ALLOW_INF_NAN"),
    "CycleError": ("_errors", "CycleError"),
    "Event": ("_events", "Event"),
    "Flow": ("_flow", "Flow"),
    "FlowError": ("_errors", "FlowError"),
    "Graph": ("_graph", "Graph"),
    "Run": ("_result", "Run"),
    "RunFailed": ("_errors", "RunFailed"),
    "RunStatus": ("_types", "RunStatus"),
    "SCHEDULER": ("_compat", "TWIN"),
    "Skip": ("_errors", "Skip"),
    "StepContext": ("_context", "StepContext"),
    "context": ("_context", "context"),
    "load_flow": ("_spec", "load_flow"),
    "Task": ("_result", "Task"),
    "TaskStatus": ("_types", "TaskStatus"),
    "TopologicalSorter": ("_graph", "TopologicalSorter"),
}


def __getattr__(name: str) -> object:
    if name == "stores":  # the subpackage, imported on first use
        __import__(f"{__name__}.stores")  # the import system binds it here
        return globals()["stores"]
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'microdag' has no attribute {name!r}") from None
    value = getattr(__import__(f"microdag.{module}", fromlist=[attr]), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
