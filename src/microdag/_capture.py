"""Per-attempt capture of what a step prints and logs (runs with a store).

While a run with a store is going, ``sys.stdout`` and ``sys.stderr`` are
wrapped by :class:`_Tee` and the root logger gets a :class:`_Handler`.  Both
look up, in a :class:`contextvars.ContextVar`, the buffer of the attempt
running in the current thread (or task): text goes to that buffer, or, outside
any captured attempt, on to the real stream as before.  So several worker
threads each capture their own step, and code that is not a step is not
affected.  Logging records are captured as they are emitted: a record that a
logger's level filters out is not.  The wrappers are installed by the first
run that needs them and removed by the last (reference-counted), and left in
place if someone replaced ``sys.stdout`` meanwhile.
"""

import _thread
import contextvars
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

_BUFFER: "contextvars.ContextVar[list[str] | None]" = contextvars.ContextVar("microdag_capture", default=None)
_lock = _thread.allocate_lock()  # threading itself is not imported for this
_users = 0
_installed: "dict[str, Any]" = {}


class _Tee:
    """A stream that sends the running attempt's writes to its buffer."""

    def __init__(self, stream: "TextIO") -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        buffer = _BUFFER.get()
        if buffer is None:
            return self._stream.write(text)
        buffer.append(text)
        return len(text)

    def writelines(self, lines: "Any") -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if _BUFFER.get() is None:
            self._stream.flush()

    def __getattr__(self, name: str) -> "Any":
        return getattr(self._stream, name)


def _handler() -> "Any":
    import logging

    class _Handler(logging.Handler):
        def emit(self, record: "logging.LogRecord") -> None:
            buffer = _BUFFER.get()
            if buffer is not None:
                try:
                    buffer.append(self.format(record) + "\n")
                except Exception:
                    self.handleError(record)

    handler = _Handler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    return handler


def install() -> None:
    """Start capturing (once for any number of concurrent runs)."""
    global _users
    with _lock:
        _users += 1
        if _users > 1:
            return
        import logging

        _installed["stdout"] = sys.stdout
        _installed["stderr"] = sys.stderr
        sys.stdout = _Tee(sys.stdout)
        sys.stderr = _Tee(sys.stderr)
        handler = _installed["handler"] = _handler()
        logging.getLogger().addHandler(handler)


def uninstall() -> None:
    """Stop capturing when the last run that needed it is over."""
    global _users
    with _lock:
        _users -= 1
        if _users > 0:
            return
        import logging

        for name in ("stdout", "stderr"):
            current = getattr(sys, name)
            if isinstance(current, _Tee):
                setattr(sys, name, _installed[name])
        logging.getLogger().removeHandler(_installed.pop("handler"))


def start() -> "tuple[list[str], contextvars.Token[list[str] | None]]":
    """Capture the current thread's (task's) output into a new buffer."""
    buffer: list[str] = []
    return buffer, _BUFFER.set(buffer)


def stop(token: "contextvars.Token[list[str] | None]") -> None:
    _BUFFER.reset(token)


def capture_call(fn: "Any", kwargs: "dict[str, Any]") -> "tuple[Any, str]":
    """``fn(**kwargs)`` with its output captured (worker processes): ``(result, text)``.

    An exception gets the text as ``__microdag_logs__`` and is re-raised.
    """
    import contextlib
    import io
    import logging

    text = io.StringIO()
    handler = logging.StreamHandler(text)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
            result = fn(**kwargs)
    except BaseException as exc:
        exc.__microdag_logs__ = text.getvalue()  # type: ignore[attr-defined]
        raise
    finally:
        root.removeHandler(handler)
    return result, text.getvalue()


def captured_call(fn: "Any", kwargs: "dict[str, Any]") -> "tuple[Any, str]":
    """``fn(**kwargs)`` with its output captured: ``(result, text)``.

    In a process where capture is installed (the runner's), through this
    thread's buffer; in a worker process, by redirecting its streams (it runs
    one step at a time).  An exception carries the text as ``__microdag_logs__``.
    """
    if not _users:
        return capture_call(fn, kwargs)
    buffer, token = start()
    try:
        result = fn(**kwargs)
    except BaseException as exc:
        exc.__microdag_logs__ = "".join(buffer)  # type: ignore[attr-defined]
        raise
    finally:
        stop(token)
    return result, "".join(buffer)
