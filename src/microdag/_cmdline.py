"""What the command line's parsers share with the pods' command (``_pod``,
which sits below the ``cli`` package): the usage error, the types of
numeric options, and flow inputs given as ``K=V``.

Only :mod:`argparse` and :mod:`json` are used, and only inside the functions
that need them: a command's start-up pays for nothing it does not parse.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

    from ._flow import Flow

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130


#: How many step names an error lists at most.
LISTED = 20


def printable(text: str) -> str:
    """``text`` on one line: control characters (and lone surrogates) escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def no_step(whose: str, name: str, steps: "Sequence[str]") -> str:
    """What every command says when ``name`` is none of ``steps`` (of ``whose``,
    e.g. ``"flow 'etl'"`` or ``"run ID"``): the step it most likely means, and
    the steps (the first :data:`LISTED`)."""
    from ._errors import nearest  # (difflib: only when a name is wrong)

    guess = nearest(name, steps)
    listed = ", ".join(map(printable, steps[:LISTED]))
    if len(steps) > LISTED:
        listed += f", ... ({len(steps):,} steps)"
    return (f"{whose} has no step named {printable(repr(name))}"
            + (f"; did you mean {printable(repr(guess))}?" if guess is not None else "") + f" (its steps: {listed})")


class UsageError(Exception):
    """Bad input from the command line: the message is printed, exit code 2."""


def integer(text: str, low: int, what: str = "a whole number", least: "str | None" = None) -> int:
    """``text`` as an int of at least ``low``; the argparse error names ``what`` was expected."""
    import argparse  # (import time: argparse loads on first use)

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {least or f'a number >= {low}'}, not {value}")
    return value


def positive(text: str) -> int:
    return integer(text, 1)


def whole(text: str) -> int:
    return integer(text, 0)


def unit(text: str) -> int:
    return integer(text, -1, "a unit index", "a unit index >= 0 (or -1: none)")


def parse_inputs(pairs: "list[str]", path: "str | None" = None) -> "dict[str, Any]":
    """Flow inputs from ``--inputs FILE.json`` (``path``) and ``--input K=V``
    (``pairs``, which override it): V is parsed as JSON when it is JSON, else
    taken as text."""
    import json  # (import time: json loads on first use)

    inputs: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as exc:
            raise UsageError(f"cannot read --inputs {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise UsageError(f"--inputs {path} is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise UsageError(f"--inputs {path} must hold a JSON object, not {type(data).__name__}")
        inputs.update(data)
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--input takes KEY=VALUE, not {pair!r}")
        try:
            inputs[key] = json.loads(text)
        except ValueError:
            inputs[key] = text
    return inputs


def input_option(p: "Any") -> None:
    """``--input K=V`` (``-i``), repeatable, on parser ``p``."""
    p.add_argument(
        "--input",
        "-i",
        metavar="K=V",
        action="append",
        default=[],
        help="a flow input (V is parsed as JSON when it is JSON, else taken as text); repeatable",
    )


def load(spec: str, given: "Iterable[str] | None" = ()) -> "Flow":
    """The flow that ``spec`` names, validated (a ``Flow`` object from Python
    is checked here, before anything runs) for a run given the inputs named
    ``given`` (``None``: inputs that come from elsewhere, such as a stored run,
    are never taken for misspelt step names)."""
    from ._spec import load_flow  # (the command line's start: --help and the store commands load no flow)

    flow = load_flow(spec)
    flow.validate(flow.inputs if given is None else given)
    return flow
