"""A throwaway PostgreSQL server for the tests, or the one ``MICRODAG_TEST_POSTGRES`` names.

:func:`server` starts one server per test session on first use: ``initdb`` in
a temporary folder (the binaries found by ``pg_config --bindir``, else under
``/usr/lib/postgresql/*/bin``), listening on 127.0.0.1 on a free port and on a
socket in that folder, with ``fsync=off`` and the other settings that make a
test server fast (but keep what a crash of the server alone keeps).  PostgreSQL refuses to run as root: as root the server runs
as an unprivileged user (``nobody``), which owns the folder.  :func:`stop`
stops it and removes the folder (conftest's session fixture calls it, also
after Ctrl-C; ``atexit`` too, should the fixture not run).

With ``MICRODAG_TEST_POSTGRES`` set (a conninfo or a ``postgresql://`` URL of
a role that may create databases) no server is started; that one is used.

:func:`new_database` makes an empty database for one test (``CREATE DATABASE``
from ``template0``): tests never see each other's runs.  :func:`missing`
says why there is no server to use (``None`` when there is one); conftest
turns it into a skip on a developer's machine and into an error in CI.
"""

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

__all__ = ["halt", "missing", "new_database", "restart", "server", "stop"]

ENV = "MICRODAG_TEST_POSTGRES"
HOW = ("install PostgreSQL (apt-get install postgresql) or set MICRODAG_TEST_POSTGRES to a "
       "postgresql:// URL of a role that may create databases")
_SETTINGS = {  # a server for tests: nothing it writes has to survive a crash of the machine (fsync=off);
    # a commit is still written out before it returns (synchronous_commit stays on), so a crash of the
    # server alone (pg_ctl -m immediate) keeps every commit, as on a real server
    "fsync": "off", "full_page_writes": "off", "shared_buffers": "32MB", "max_connections": "200", "autovacuum": "off",
    "log_min_messages": "warning", "logging_collector": "off",
}


class _Server:
    """One running server: its folder, the user it runs as, and the URL to reach it."""

    def __init__(self, url: str, folder: "str | None" = None, bindir: str = "", user: "str | None" = None) -> None:
        self.url = url
        self.folder = folder
        self.bindir = bindir
        self.user = user
        self.session = uuid.uuid4().hex[:8]  # database names of this session
        self.made: list[str] = []
        self.pid = os.getpid()  # (a forked child never stops its parent's server)


_server: "_Server | None" = None


def bindir() -> "str | None":
    """The folder of PostgreSQL's server binaries (``initdb``, ``pg_ctl``), or ``None``."""
    try:
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        found = ""
    for folder in [found, *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]:
        if folder and os.path.isfile(os.path.join(folder, "initdb")) and os.path.isfile(os.path.join(folder, "pg_ctl")):
            return folder
    return None


def missing() -> "str | None":
    """Why the PostgreSQL tests cannot run here, or ``None`` when they can."""
    try:
        import psycopg  # noqa: F401  (the PostgreSQL store's driver: the postgres extra)
    except ImportError:
        return "psycopg is not installed (pip install 'microdag[postgres]')"
    if os.environ.get(ENV) or bindir() is not None:
        return None
    return f"no PostgreSQL server: {HOW}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as(user: "str | None", argv: "list[str]") -> "list[str]":
    return argv if user is None else ["runuser", "-u", user, "--", *argv]


def server() -> _Server:
    """The session's server, started on first use.

    Raises:
        RuntimeError: there is none to use (see :func:`missing`), or it did not start.
    """
    global _server
    if _server is not None:
        return _server
    why = missing()
    if why is not None:
        raise RuntimeError(why)
    url = os.environ.get(ENV)
    if url:
        _server = _Server(url)
        return _server
    binaries = bindir()
    assert binaries is not None
    user = "nobody" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    folder = tempfile.mkdtemp(prefix="microdag-pg-")
    os.chmod(folder, 0o755)
    data = os.path.join(folder, "data")
    if user is not None:
        shutil.chown(folder, user)
    port = _free_port()
    made = _Server(f"postgresql://postgres@127.0.0.1:{port}/postgres", folder, binaries, user)
    _server = made
    atexit.register(stop)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True, "timeout": 120, "cwd": folder}
    done = subprocess.run(_as(user, [os.path.join(binaries, "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
                                     "-E", "UTF8", "--locale=C", "--no-sync"]), **quiet)
    if done.returncode:
        stop()
        raise RuntimeError(f"initdb failed: {done.stderr.strip()}")
    options = " ".join([f"-c {k}={v}" for k, v in _SETTINGS.items()]
                       + [f"-p {port}", "-c listen_addresses=127.0.0.1", f"-c unix_socket_directories={folder}"])
    done = subprocess.run(_as(user, [os.path.join(binaries, "pg_ctl"), "-D", data, "-l", os.path.join(folder, "log"),
                                     "-o", options, "-w", "-t", "60", "start"]), **quiet)
    if done.returncode:
        log = open(os.path.join(folder, "log")).read() if os.path.exists(os.path.join(folder, "log")) else ""
        stop()
        raise RuntimeError(f"PostgreSQL did not start: {done.stderr.strip()}\n{log}")
    return made


def restart(mode: str = "fast") -> None:
    """Stop the session's own server and start it again (a server restart under running
    stores: their connections drop).  ``mode`` is ``pg_ctl``'s: ``"immediate"`` is a crash of
    the server, which keeps every commit (written to the operating system before it returned).
    A server :func:`halt` stopped is started."""
    _pg_ctl("-m", mode, "restart")


def halt() -> None:
    """Stop the session's own server (until :func:`restart`)."""
    _pg_ctl("-m", "fast", "stop")


def _pg_ctl(*args: str) -> None:
    made = server()
    assert made.folder is not None, "the server of MICRODAG_TEST_POSTGRES is not stopped by the tests"
    data = os.path.join(made.folder, "data")
    subprocess.run(_as(made.user, [os.path.join(made.bindir, "pg_ctl"), "-D", data, "-l", os.path.join(made.folder, "log"),
                                   "-w", *args]),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, cwd=made.folder)


def _admin(url: str, sql: str) -> None:
    import psycopg  # (the postgres extra: imported only where a server is used)

    with psycopg.connect(url, autocommit=True, connect_timeout=30) as db:
        db.execute(sql)  # type: ignore[arg-type]


def new_database() -> str:
    """A new empty database on the session's server: its ``postgresql://`` URL."""
    made = server()
    name = f"microdag_{made.session}_{len(made.made)}"
    _admin(made.url, f'CREATE DATABASE "{name}" TEMPLATE template0')
    made.made.append(name)
    head, _, _ = made.url.rpartition("/")
    return f"{head}/{name}"


def stop() -> None:
    """Stop the session's server and remove its folder (or drop the databases made on
    ``MICRODAG_TEST_POSTGRES``'s server); nothing to do when none was started."""
    global _server
    made, _server = _server, None
    if made is None or made.pid != os.getpid():
        return
    if made.folder is None:
        for name in made.made:
            try:
                _admin(made.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception:
                pass  # (a database left behind on a server the tests do not own)
        return
    data = os.path.join(made.folder, "data")
    if os.path.exists(os.path.join(data, "postmaster.pid")):
        subprocess.run(_as(made.user, [os.path.join(made.bindir, "pg_ctl"), "-D", data, "-m", "immediate", "-w",
                                       "stop"]), capture_output=True, timeout=120, cwd=made.folder)
    for _ in range(50):
        try:
            shutil.rmtree(made.folder)
            break
        except FileNotFoundError:
            break
        except OSError:
            time.sleep(0.1)
