"""Cache keys of steps with ``cache=True``.

A key is a SHA-256 digest of the step's name, its function (code and default
values: editing either changes what it returns) and its arguments.  Where the
outputs are kept (the run's store, or this process) is the recorder's
business.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["cache_key"]


def cache_key(name: str, fn: "Callable[..., Any]", kwargs: "dict[str, Any]") -> str:
    """The cache key of step ``name`` calling ``fn(**kwargs)``."""
    from .._compat import sha256

    digest = sha256(name.encode())
    code = getattr(fn, "__code__", None)
    if code is not None:
        import marshal

        digest.update(marshal.dumps(code))
        defaults = [getattr(fn, attr, None) for attr in ("__defaults__", "__kwdefaults__", "keywords")]
        digest.update(_canonical(defaults))  # "keywords": a functools.partial's
    else:
        digest.update(repr(getattr(fn, "__qualname__", fn)).encode())
    digest.update(_canonical(sorted(kwargs.items())))
    key: str = digest.hexdigest()
    return key


def _canonical(value: "Any") -> bytes:
    """``value`` as bytes for a cache key: its JSON, else its pickle, else its repr."""
    import json

    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    except (TypeError, ValueError):
        import pickle

        try:
            return pickle.dumps(value, protocol=4)
        except Exception:
            return repr(value).encode()
