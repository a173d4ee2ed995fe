"""The one place that picks a scheduler twin.

The compiled ``_sched`` is used unless ``MICRODAG_NO_EXTENSIONS`` is set to a
true value, or it cannot be imported (a vendored copy, an install without a
compiler); then the pure-Python ``_sched_py`` runs.  Both have the same API.
"""

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from . import _sched_py as sched
else:
    if os.environ.get("MICRODAG_NO_EXTENSIONS", "").strip().lower() not in ("", "0", "false", "no"):
        from . import _sched_py as sched
    else:
        try:
            from . import _sched as sched
        except ImportError:
            from . import _sched_py as sched

#: ``"c"`` for the compiled twin, ``"py"`` for the pure-Python one.
TWIN: str = sched.TWIN

__all__ = ["sched", "TWIN"]
