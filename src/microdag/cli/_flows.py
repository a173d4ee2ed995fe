"""``validate``, ``graph`` and ``schema``: a flow looked at, not run."""

import sys

from .._cmdline import OK, load
from ._common import dump

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any


def add_parser(sub: "Any", name: str, **options: "Any") -> None:
    """Command ``name`` (``validate``, ``graph`` or ``schema``) on subparsers ``sub``."""
    p = sub.add_parser(name, **options)
    p.add_argument("flow", metavar="FLOW")
    if name == "graph":
        p.add_argument("--format", "-f", choices=("dot", "mermaid", "json"), default="dot", help="default: dot")
    p.set_defaults(handler={"validate": _cmd_validate, "graph": _cmd_graph, "schema": _cmd_schema}[name])


def _cmd_schema(args: "argparse.Namespace") -> int:
    """``schema FLOW``: the JSON Schema of the flow's inputs, as ``Flow.input_schema`` gives it."""
    import json  # (the command line's start: json loads with the command that uses it)

    flow = load(args.flow)
    sys.stdout.write(json.dumps(flow.input_schema(), indent=2, ensure_ascii=False, default=repr) + "\n")
    return OK


def _cmd_validate(args: "argparse.Namespace") -> int:
    flow = load(args.flow)
    inputs = flow.inputs
    required = sorted(name for name, needed in inputs.items() if needed)
    line = f"{args.flow}: flow {flow.name!r} is valid: {len(flow)} steps"
    if inputs:
        line += f", inputs {', '.join(sorted(inputs))}"
        if required:
            line += f" (required: {', '.join(required)})"
    print(line)
    return OK


def _cmd_graph(args: "argparse.Namespace") -> int:
    flow = load(args.flow)
    graph = flow.graph
    if args.format == "json":
        dump(graph.to_dict())
        return OK
    text = graph.to_mermaid() if args.format == "mermaid" else graph.to_dot(name=flow.name)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return OK
