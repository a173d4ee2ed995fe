"""Per-attempt capture of what a step prints and logs (runs with a store).

While a run with a store is going, ``sys.stdout`` and ``sys.stderr`` are
wrapped by :class:`_Tee` and the root logger gets a :class:`_Handler`.  Both
look up, in a :class:`contextvars.ContextVar`, the buffer of the attempt
running in the current thread (or task): text goes to that buffer, or, outside
any captured attempt, on to the real stream as before.  So several worker
threads each capture their own step, and code that is not a step is not
affected.  Logging records are captured as they are emitted: a record that a
logger's level filters out is not.  A process that has not imported
:mod:`logging` gets the handler when it first does (see :class:`_LoggingWatch`).  The wrappers are installed by the first
run that needs them and removed by the last (reference-counted), and left in
place if someone replaced ``sys.stdout`` meanwhile.  With ``MICRODAG_ECHO=1``
the captured text is also written on to the real streams as it comes.
"""

import _thread
import contextvars
import io
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

_BUFFER: "contextvars.ContextVar[list[str] | None]" = contextvars.ContextVar("microdag_capture", default=None)
# The scheduler's hot loop calls steps without a buffer each: while it runs, a
# thread's output goes by the step id in its context frame (``current[0]``)
# to ``texts[step id]``, taken by the runner when the step ends.
_ROUTE: "contextvars.ContextVar[tuple[list[Any], dict[int, list[str]]] | None]" = contextvars.ContextVar(
    "microdag_capture_route", default=None
)
_lock = _thread.allocate_lock()  # threading itself is not imported for this
_users = 0
_installed: "dict[str, Any]" = {}


def _target() -> "list[str] | None":
    """Where the current thread's (task's) output goes, if it is captured."""
    buffer = _BUFFER.get()
    if buffer is None:
        route = _ROUTE.get()
        if route is not None:
            step = route[0][0]
            if step >= 0:
                buffer = route[1].setdefault(step, [])
    return buffer


class _Tee:
    """A stream that sends the running attempt's writes to its buffer."""

    def __init__(self, stream: "TextIO") -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        buffer = _target()
        if buffer is None:
            return self._stream.write(text)
        buffer.append(text)
        if _installed.get("echo"):
            self._stream.write(text)
        return len(text)

    def writelines(self, lines: "Any") -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if _target() is None:
            self._stream.flush()

    def __getattr__(self, name: str) -> "Any":
        return getattr(self._stream, name)


def _handler() -> "Any":
    import logging  # (import time: logging loads on first use)

    class _Handler(logging.Handler):
        def emit(self, record: "logging.LogRecord") -> None:
            buffer = _target()
            if buffer is not None:
                try:
                    line = self.format(record) + "\n"
                    buffer.append(line)
                    if _installed.get("echo"):
                        _installed["stderr"].write(line)
                except Exception:
                    self.handleError(record)

    handler = _Handler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    return handler


def _hook_logging() -> None:
    """Give the root logger the capturing handler (the caller holds ``_lock``,
    or the import lock while :mod:`logging` is first imported)."""
    import logging  # (import time: logging loads on first use)

    if "handler" not in _installed:
        handler = _installed["handler"] = _handler()
        logging.getLogger().addHandler(handler)


class _LoggingWatch:
    """A ``sys.meta_path`` finder that hooks the root logger as soon as
    :mod:`logging` is first imported while capture is on.

    Importing :mod:`logging` costs more than a short run takes, so a run does
    not import it for nothing: a process that has not imported it has no
    records to capture until it does, and this finder catches that moment.
    """

    def find_spec(self, name: str, path: "Any" = None, target: "Any" = None) -> "Any":
        if name != "logging":
            return None
        import importlib.machinery  # (import time: importlib.machinery loads on first use)

        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _HookingLoader(spec.loader)  # type: ignore[assignment]
        return spec


class _HookingLoader:
    """Loads :mod:`logging` as its own loader would, then hooks the root logger."""

    def __init__(self, loader: "Any") -> None:
        self.loader = loader

    def create_module(self, spec: "Any") -> "Any":
        return self.loader.create_module(spec)

    def exec_module(self, module: "Any") -> None:
        self.loader.exec_module(module)
        _unwatch()
        if _users:
            _hook_logging()

    def __getattr__(self, name: str) -> "Any":
        return getattr(self.loader, name)


def _unwatch() -> None:
    watch = _installed.pop("watch", None)
    if watch is not None:
        try:
            sys.meta_path.remove(watch)
        except ValueError:
            pass


def install() -> None:
    """Start capturing (once for any number of concurrent runs)."""
    global _users
    with _lock:
        _users += 1
        if _users > 1:
            return
        _installed["stdout"] = sys.stdout
        _installed["stderr"] = sys.stderr
        _installed["echo"] = echoing()
        sys.stdout = _Tee(sys.stdout)
        sys.stderr = _Tee(sys.stderr)
        if "logging" in sys.modules:
            _hook_logging()
        else:
            watch = _installed["watch"] = _LoggingWatch()
            sys.meta_path.insert(0, watch)


def uninstall() -> None:
    """Stop capturing when the last run that needed it is over."""
    global _users
    with _lock:
        _users -= 1
        if _users > 0:
            return
        for name in ("stdout", "stderr"):
            current = getattr(sys, name)
            if isinstance(current, _Tee):
                setattr(sys, name, _installed[name])
        _unwatch()
        handler = _installed.pop("handler", None)
        if handler is not None:
            import logging  # (import time: logging loads on first use)

            logging.getLogger().removeHandler(handler)


def echoing() -> bool:
    """Whether captured text is also written on (``MICRODAG_ECHO=1``, which
    ``python -m microdag run --echo`` sets): kept, and seen as it comes."""
    return os.environ.get("MICRODAG_ECHO", "").strip().lower() not in ("", "0", "false", "no")


class _Echo:
    """A stream that writes to a capture and on to the stream it stands for."""

    def __init__(self, capture: "TextIO", stream: "TextIO") -> None:
        self._capture = capture
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(text)
        return self._capture.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> "Any":
        return getattr(self._stream, name)


def start() -> "tuple[list[str], contextvars.Token[list[str] | None]]":
    """Capture the current thread's (task's) output into a new buffer."""
    buffer: list[str] = []
    return buffer, _BUFFER.set(buffer)


def stop(token: "contextvars.Token[list[str] | None]") -> None:
    _BUFFER.reset(token)


def route(current: "list[Any]") -> "contextvars.Token[Any]":
    """Capture the current thread's output by the step id in ``current[0]``
    (the hot loop's), until :func:`unroute`."""
    return _ROUTE.set((current, {}))


def unroute(token: "contextvars.Token[Any]") -> None:
    _ROUTE.reset(token)


def take(step: int) -> str:
    """What step ``step`` wrote in this thread's routed capture (and forget it)."""
    route = _ROUTE.get()
    if route is None:
        return ""
    parts = route[1].pop(step, None)
    return "".join(parts) if parts else ""


def capture_call(fn: "Any", kwargs: "dict[str, Any]") -> "tuple[Any, str]":
    """``fn(**kwargs)`` with its output captured (worker processes): ``(result, text)``.

    An exception gets the text as ``__microdag_logs__`` and is re-raised.
    """
    import contextlib  # (import time: contextlib loads on first use)
    import logging  # (import time: logging loads on first use)

    text = io.StringIO()
    out: "Any" = text
    err: "Any" = text
    if echoing():
        out, err = _Echo(text, sys.stdout), _Echo(text, sys.stderr)
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
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
