"""``python -m microdag ui``: a local web app to watch, run and edit flows.

The parts, each in its own module, from the bottom:

- ``_runs``: stored runs as JSON documents (list, detail, changes, graph layout);
- ``_flows``: the flow files it may show and save (the one door to the disk);
- ``_edit``: edits of a flow file that keep every untouched byte;
- ``_code``: a ``call`` step's function read from and saved to its module file;
- ``_drafts``: what "run this step" and "run up to here" run, on which values;
- ``_launch``: the child processes that run, resume, cancel and run one step;
- ``_api``: one method per route of the JSON API;
- ``_server``: HTTP, the Host, token and intent gates, the events stream;
- ``static/``: the page (HTML, CSS, JavaScript; nothing from a network).

:func:`serve` ties them together.  Nothing here is imported by
``import microdag``.
"""

import os
import secrets
import shutil
import sys
import tempfile
import threading

from ..stores import spec_parts
from ._api import Api
from ._flows import Folder
from ._launch import Launcher
from ._server import Server

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["serve"]

#: Addresses that only this machine can reach.
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def serve(
    flows: "Sequence[str]" = (),
    *,
    store: str = ".microdag/runs.db",
    host: str = "127.0.0.1",
    port: int = 0,
    open_browser: bool = True,
    root: "str | None" = None,
) -> int:
    """Serve the UI until Ctrl-C; return the exit code (0).

    Its first line on stdout is ``microdag ui: http://HOST:PORT/?token=TOKEN``.

    Args:
        flows: flow specs to show beside the flow files found in ``root``
            (the only way to show a Python flow).
        store: the run store's spec (as ``--store``).
        host: the address to listen on; anything but loopback gets a warning.
        port: the port (0: a free one).
        open_browser: open the URL in a browser, when there is a display.
        root: the served folder (default: the current directory); runs start there.
    """
    root = os.path.abspath(root or os.getcwd())
    store = _anchored(store, root)
    token = secrets.token_urlsafe(24)
    logs = tempfile.mkdtemp(prefix="microdag-ui-")
    api = Api(Folder(root, list(flows)), store, Launcher(root, store, logs))
    server = Server(host, port, api, token)
    url = f"{server.url}?token={token}"
    print(f"microdag ui: {url}", flush=True)
    if host not in LOOPBACK:
        print(
            f"warning: listening on {host}: anyone who can reach port {server.port} and has the token can "
            "read the runs and run the flows",
            file=sys.stderr, flush=True,
        )
    if open_browser and _has_display():
        threading.Thread(target=_open, args=(url,), daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        shutil.rmtree(logs, ignore_errors=True)
    return 0


def _anchored(spec: str, root: str) -> str:
    """The store spec with a relative path made absolute from ``root`` (the
    server and its children then name one store, whatever their directory)."""
    scheme, path, suffix = spec_parts(spec)
    if not path or os.path.isabs(path):
        return spec
    return scheme + os.path.join(root, path) + suffix


def _has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _open(url: str) -> None:
    import webbrowser  # (only when a browser is opened)

    try:
        webbrowser.open(url)
    except Exception:  # no browser: the URL is printed
        pass
