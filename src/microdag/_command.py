"""Command steps: a flow file's ``command = [argv...]`` as a step function that runs a program.

A :class:`Command` is what the flow-file builder adds for a ``command``
step.  It is module-level and made of plain data, so it pickles for worker
processes, and it has an ``inspect.Signature`` made of one keyword
parameter per flow input its argv uses (with the file's default) and
``**deps`` when it uses step outputs: the binding rules of Python steps
apply to it unchanged, and step names need not be identifiers.

Command argv items are full of braces that are not ours (``awk '{print
$1}'``, ``find -exec {} ;``, ``${HOME}``, Python dicts), so only the
placeholder forms are special (:data:`_PLACEHOLDER`, read by
:func:`parse_item`): ``{inputs.X}``, ``{steps.X}``, ``{env.X}``,
``{run_dir}``, ``{workdir}``, and the same forms in doubled braces, which
stand for their own text.  Every other brace is literal.  What a command
returns is its stdout as text unless its ``output`` says ``"json"`` or
``"lines"``: guessing JSON turned ``1.10`` into ``1.1``.  ``{env.X}`` is
read when the step runs, in the process that runs it.

Running the program (:func:`_run_program`) is the one place here that does
I/O: its own process group, registered for the run so that a cancel kills
it whole, and killed a little before the step's timeout
(``runner._call.kill_limit``) so that the attempt ends with the program gone.  The
runner calls a ``Command`` as it calls any step function; the step's
timeout itself is the runner's (this only stops the program in time).

Nothing heavy is imported at module level (``json``, ``subprocess``,
``inspect``): a flow file with no command step never pays for them.
"""

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["Command", "CommandError", "Required", "parse_item"]

#: A placeholder in a command's argv item (group 2), or one written with doubled
#: braces (group 1), which stands for its own text with single braces.
_FORM = r"(?:inputs|steps|env)\.[^{}]+|run_dir|workdir"
_PLACEHOLDER = rf"\{{\{{({_FORM})\}}\}}|\{{({_FORM})\}}"
_STDERR_LINES = 10


class Required:
    """The default of a typed input declared without one: it must be given."""


def parse_item(item: str) -> "list[str | tuple[str, str]]":
    """An argv item as literal text and ``(kind, name)`` placeholders.

    Only the forms of :data:`_PLACEHOLDER` are placeholders: any other brace
    is text, and ``{{inputs.x}}`` (doubled braces) is the text ``{inputs.x}``.
    """
    import re  # (import time: re loads on first use)

    parts: list[str | tuple[str, str]] = []
    text = ""
    pos = 0
    for m in re.finditer(_PLACEHOLDER, item):
        text += item[pos : m.start()]
        pos = m.end()
        escaped, body = m.groups()
        if escaped is not None:
            text += "{" + escaped + "}"
            continue
        if text:
            parts.append(text)
            text = ""
        kind, _, name = body.partition(".")
        parts.append((kind, name))
    text += item[pos:]
    if text or not parts:
        parts.append(text)
    return parts


class CommandError(RuntimeError):
    """A command step's program exited with a non-zero code (or was killed by a signal).

    Args:
        message: names the program, the exit code and the last lines of its
            standard error.
        returncode: the exit code (negative: killed by that signal).
        stderr: the last lines of its standard error.
    """

    def __init__(self, message: str, returncode: int = 1, stderr: str = "") -> None:
        super().__init__(message, returncode, stderr)

    @property
    def returncode(self) -> int:
        """The exit code (negative: the signal that killed it)."""
        return int(self.args[1])

    @property
    def stderr(self) -> str:
        """The last lines of the program's standard error."""
        return str(self.args[2])

    def __str__(self) -> str:
        return str(self.args[0])


class Command:
    """A ``command`` step: runs its argv (no shell) and returns what it prints.

    Called with the flow inputs its argv uses (by name) and, under
    ``**deps``, the outputs of the steps it uses (by step name).  Module-level
    and made of plain data, so it pickles for worker processes.  ``output``
    is ``"text"``, ``"json"`` or ``"lines"``; ``step`` is the step's name,
    for error messages.
    """

    def __init__(
        self,
        argv: "tuple[str, ...]",
        parts: "tuple[tuple[str | tuple[str, str], ...], ...]",
        inputs: "dict[str, Any]",
        takes_steps: bool,
        timeout: "float | None",
        output: str = "text",
        step: str = "",
    ) -> None:
        self.argv = argv
        self.parts = parts
        self.inputs = inputs  # input name -> default
        self.takes_steps = takes_steps
        self.timeout = timeout
        self.output = output
        self.step = step
        # The cache keys a step by its name, this and its arguments: the
        # defaults of inputs not given are not arguments, so they go here,
        # and so does the output's kind, which changes what is returned.
        self.__qualname__ = f"command{list(argv)!r} (output {output})" + _defaults_text(inputs)
        # What it runs, without its defaults (a resume compares this: a run
        # records the inputs it used, defaults included).
        self.__microdag_code__ = f"command{list(argv)!r} (output {output})"

    @property
    def __signature__(self) -> "Any":
        import inspect  # (import time: inspect loads on first use)

        params = [
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=inspect.Parameter.empty if default is Required else default
            )
            for name, default in self.inputs.items()
        ]
        if self.takes_steps:
            var = "deps"
            while var in self.inputs:
                var += "_"
            params.append(inspect.Parameter(var, inspect.Parameter.VAR_KEYWORD))
        return inspect.Signature(params)

    def __repr__(self) -> str:
        shown = [_short(a) for a in self.argv[:3]]
        return "command[" + ", ".join(repr(a) for a in shown) + (", ...]" if len(self.argv) > 3 else "]")

    def render(self, values: "Mapping[str, Any]") -> "list[str]":
        """The argv with its placeholders filled from ``values`` (inputs and step
        outputs) and, for ``{env.NAME}``, from ``os.environ``.

        Raises:
            TypeError: a value that is not a str cannot be written as JSON.
            LookupError: an environment variable it uses is not set.
        """
        import json  # (import time: json loads on first use)

        argv = []
        for n, parts in enumerate(self.parts):
            item = []
            for part in parts:
                if isinstance(part, str):
                    item.append(part)
                    continue
                kind, name = part
                if kind == "run_dir" or kind == "workdir":
                    from ._context import context  # (a program's run only: checking a flow file loads none)

                    item.append(getattr(context(), kind))
                    continue
                if kind == "env":
                    if name not in os.environ:
                        raise LookupError(
                            f"step {self.step!r}: command item {n} {self.argv[n]!r}: "
                            f"environment variable {name!r} is not set"
                        )
                    item.append(os.environ[name])
                    continue
                value = values[name] if name in values else self.inputs[name]
                if isinstance(value, str):
                    item.append(value)
                    continue
                try:
                    item.append(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
                except (TypeError, ValueError) as exc:
                    raise TypeError(
                        f"{{{kind}.{name}}} is a {type(value).__name__}, which cannot be "
                        f"written into a command line as JSON ({exc})"
                    ) from None
            argv.append("".join(item))
        return argv

    def __call__(self, **values: "Any") -> "Any":
        """Run the command; return its stdout as ``output`` says (see :meth:`result`).

        Raises:
            CommandError: it exited with a non-zero code.
            TimeoutError: it ran past the step's timeout (it is killed).
            OSError: it could not be started (e.g. no such program).
            LookupError: an environment variable it uses is not set.
            ValueError: ``output`` is ``"json"`` and stdout is not JSON.
        """
        argv = self.render(values)
        from .runner._call import kill_limit  # (the runner is loaded once a step runs, not to check a file)

        done = _run_program(argv, kill_limit(self.timeout))
        if done is None:
            raise TimeoutError(
                f"command {argv[0]!r} ran into the step's timeout of {self.timeout:g} s and was killed "
                "(with every process it started)"
            )
        err = done.stderr.decode("utf-8", "replace")
        if err:
            sys.stderr.write(err)
        if done.returncode != 0:
            tail = "\n".join(err.rstrip().splitlines()[-_STDERR_LINES:])
            code = done.returncode
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            message = f"command {argv[0]!r} {how}"
            message += f"; the end of its stderr:\n{tail}" if tail else " (its stderr was empty)"
            raise CommandError(message, code, tail)
        return self.result(done.stdout.decode("utf-8", "replace"), argv[0])

    def result(self, out: str, program: str) -> "Any":
        """What stdout ``out`` makes: the text without one trailing newline
        (``"text"``), its lines without their endings (``"lines"``), or the
        value it holds (``"json"``: strict JSON, so no ``NaN``).

        Raises:
            ValueError: ``output`` is ``"json"`` and ``out`` is not JSON.
        """
        if self.output == "lines":
            lines = out.split("\n")
            if lines[-1] == "":
                lines.pop()
            return [line[:-1] if line.endswith("\r") else line for line in lines]
        if self.output == "json":
            import json  # (import time: json loads on first use)

            def constant(name: str) -> "Any":
                raise ValueError(f"{name} is not a JSON value")

            try:
                return json.loads(out, parse_constant=constant)
            except (ValueError, RecursionError) as exc:
                start = f"it began {_short(out)!r}" if out.strip() else "it was empty"
                raise ValueError(
                    f'step {self.step!r} has output = "json", but the output of command {program!r} '
                    f"is not JSON ({exc}); {start}"
                ) from None
        if out.endswith("\r\n"):
            return out[:-2]
        return out[:-1] if out.endswith("\n") else out


def _run_program(argv: "list[str]", limit: "float | None") -> "Any":
    """Run ``argv`` in a process group of its own, capturing its output;
    ``None`` when it ran past ``limit`` seconds.

    The group is registered for the step's run (``_children``), so that a
    cancelled or interrupted run kills it (the runner does, and so does this
    function when it sees the run's cancel event set); it is killed whole (the
    program and what it started) on a timeout and on any exception here.  In
    a traced run (``microdag.otel``) its environment has ``TRACEPARENT``, the
    step span's context, for the program's own spans.

    Raises:
        CommandError: the run was cancelled while the program ran.
    """
    import subprocess  # (import time: subprocess loads on first use)

    from . import _children  # (a program's run only: checking a flow file loads none)
    from ._context import current_frame  # (a program's run only: checking a flow file loads none)

    frame = current_frame()
    run_id = frame.run_id if frame is not None else None
    cancel = frame.cancel if frame is not None else None
    posix = os.name == "posix"
    env = None
    if "opentelemetry.trace" in sys.modules:  # a traced step: the program is told its span
        from .otel import traceparent  # (a program's run only: checking a flow file loads none)

        parent = traceparent()
        if parent is not None:
            env = {**os.environ, "TRACEPARENT": parent}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            process_group=0 if posix else None)
    if posix:
        _children.register(run_id, proc.pid)
    deadline = None if limit is None else time.monotonic() + limit
    try:
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if cancel is not None:
                wait = 0.05 if wait is None else min(wait, 0.05)
            try:
                out, err = proc.communicate(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    _children.kill(run_id)
                    continue  # the next communicate() returns: the group is dead
                if deadline is not None and time.monotonic() >= deadline:
                    _children.kill_group(proc.pid)
                    proc.communicate()
                    return None
            except BaseException:
                _children.kill_group(proc.pid)
                proc.communicate()
                raise
        stopped = posix and _children.stopped(proc.pid)
    finally:
        if posix:
            _children.unregister(run_id, proc.pid)
    if stopped:
        raise CommandError(f"command {argv[0]!r} was stopped: its run was cancelled", proc.returncode, "")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _defaults_text(inputs: "Mapping[str, Any]") -> str:
    """`` with name=default...`` (a digest of them when long), or ``""``."""
    inputs = {k: v for k, v in inputs.items() if v is not Required}
    if not inputs:
        return ""
    import json  # (import time: json loads on first use)

    text = json.dumps(inputs, sort_keys=True, ensure_ascii=False, default=repr)
    if len(text) > 200:
        import hashlib  # (import time: hashlib loads on first use)

        text = "#" + hashlib.sha256(text.encode()).hexdigest()[:16]
    return f" with defaults {text}"


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."
