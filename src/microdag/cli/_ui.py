"""``ui``: the local web app (:mod:`microdag.ui`), served until Ctrl-C."""

import os

from .._cmdline import UsageError, whole
from ._common import DEFAULT_STORE

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any


def add_parser(sub: "Any", name: str, **options: "Any") -> None:
    """Command ``ui`` on subparsers ``sub``."""
    p = sub.add_parser(name, **options)
    p.add_argument(
        "flow", metavar="FLOW", nargs="*",
        help="flows to show beside the flow files of this folder (a .py flow is shown only when named)",
    )
    p.add_argument(
        "--store", metavar="SPEC", default=None,
        help=f"the run store: a path ending in .db, sqlite:PATH, json:DIR, postgresql://USER@HOST/DB "
        f"(default: {DEFAULT_STORE})",
    )
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=whole, default=0, metavar="N", help="the port (default: 0, a free one)")
    p.add_argument("--no-open", action="store_true", help="do not open a browser")
    p.set_defaults(handler=_cmd_ui)


def _cmd_ui(args: "argparse.Namespace") -> int:
    """``ui [FLOW ...]``: serve the local web app until Ctrl-C."""
    from ..ui import serve  # (the handler's: ui --help loads no server)

    if args.store == "memory":
        raise UsageError("the UI needs a store that other processes can read: a .db file, json:DIR or a PostgreSQL URL")
    if args.port > 65535:
        raise UsageError(f"--port must be at most 65535, not {args.port}")
    for spec in args.flow:
        path = spec if os.path.exists(spec) else spec.partition(":")[0]
        if path.endswith((".toml", ".json", ".py")) and not os.path.exists(path):
            raise UsageError(f"{spec}: no such flow file")
    try:
        return serve(
            args.flow, store=args.store or DEFAULT_STORE, host=args.host, port=args.port,
            open_browser=not args.no_open,
        )
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
