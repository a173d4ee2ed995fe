"""The one place that picks a scheduler twin (and a SHA-256).

The compiled ``_sched`` is used unless ``MICRODAG_NO_EXTENSIONS`` is set to a
true value, or it cannot be imported (a vendored copy, an install without a
compiler); then the pure-Python ``_sched_py`` runs.  Both have the same API.
"""

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from . import _sched_py as sched
else:
    if os.environ.get("MICRODAG_NO_EXTENSIONS", "").strip().lower() not in ("", "0", "false", "no"):
        from . import _sched_py as sched

        WHY_PY = ""  # asked for: nothing to explain
    else:
        try:
            from . import _sched as sched

            WHY_PY = ""
        except ImportError as exc:
            from . import _sched_py as sched

            WHY_PY = (
                f"the compiled scheduler is not installed ({exc}): the pure-Python one runs; "
                "reinstall where a C compiler is found to get it"
            )

#: ``"c"`` for the compiled twin, ``"py"`` for the pure-Python one.
TWIN: str = sched.TWIN
#: Why the pure-Python twin runs (``""`` when the compiled one does).
WHY_PY: str

__all__ = ["sched", "sha256", "TWIN", "WHY_PY"]


def sha256(data: bytes = b"") -> "Any":
    """A SHA-256 hash object, from CPython's builtin module when it has one:
    :mod:`hashlib` loads OpenSSL, a few milliseconds a short-lived process
    (a CLI run, a lambda) would spend for one digest."""
    for name in ("_sha2", "_sha256"):  # Python 3.12+, 3.11
        try:
            return __import__(name).sha256(data)
        except ImportError:
            continue
    import hashlib  # (import time: hashlib loads on first use)

    return hashlib.sha256(data)
