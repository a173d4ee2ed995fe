"""Cache keys of steps with ``cache=True``.

A key is a SHA-256 digest of the step's name, its function (code and default
values: editing either changes what it returns) and its arguments.  Where the
outputs are kept (the run's store, or this process) is the recorder's
business.
"""

from .._compat import sha256
from .._plan import canonical, code_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["cache_key"]


def cache_key(name: str, fn: "Callable[..., Any]", kwargs: "dict[str, Any]") -> str:
    """The cache key of step ``name`` calling ``fn(**kwargs)``."""
    digest = sha256(name.encode())
    digest.update(code_digest(fn).encode())
    digest.update(canonical(sorted(kwargs.items())))
    key: str = digest.hexdigest()
    return key
