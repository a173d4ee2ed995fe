"""Runs the UI starts, resumes, cancels, and single steps it runs: child processes.

Every action is ``python -m microdag ...`` in a child process of its own
session (``start_new_session``): a step that crashes or hangs takes down
neither the server nor the other runs, Ctrl-C on the server does not reach
the runs, and a run goes on when the UI stops.  The argv is a list built from
checked values (flow path from :class:`~._flows.Folder`, run ids checked by
the store, input values as JSON): no shell, no string a request wrote is ever
parsed as a command line.

What the launcher keeps: each child it started (run id -> :class:`Child`),
so that a run can be shown before its record exists (the child is starting)
and, when the child failed before beginning the run (bad inputs, a flow that
does not load), its error is shown instead of a run that never appears.
Cancelling a run shared with workers (on the store's work queue) goes
through the store, to every worker, as ``python -m microdag cancel`` does;
any other run's is SIGINT to the process running it (a child of ours, or the
store's owner of the run when it runs on this machine): the runner treats it
as Ctrl-C, records every unfinished step as cancelled, and exits.  Whether a
run is live is the store's answer where it has one (``Store.live``: on the
queue; on PostgreSQL, a claim held from any machine), never a guess about a
process of another machine.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading

from .._result import new_run_id
from ..stores import open_store, spec_parts
from ..stores._files import alive, local_pid
from ..stores._queue import cancel_shared

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..stores import Store

#: Seconds a single step run from the UI may take before it is killed.
STEP_TIMEOUT = 600.0


class Child:
    """A ``python -m microdag`` process the UI started."""

    def __init__(self, process: "subprocess.Popen[bytes]", log: str, what: str) -> None:
        self.process = process
        self.log = log  # its stdout and stderr
        self.what = what

    def error(self) -> "str | None":
        """Why the child ended before beginning its run, or ``None`` (still running, or fine)."""
        code = self.process.poll()
        if code is None or code in (0, 1, 130):
            return None
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                text = f.read()[-4000:].strip()
        except OSError:
            text = ""
        return f"{self.what} ended with exit code {code}" + (f": {text}" if text else "")


class Launcher:
    """The children of one UI server."""

    def __init__(self, root: str, store_spec: str, logs: str) -> None:
        self.root = root
        self.store_spec = store_spec
        self.logs = logs  # a folder for the children's output
        self.children: dict[str, Child] = {}
        self._lock = threading.Lock()

    def _spawn(self, run_id: str, argv: "list[str]", what: str) -> Child:
        self._create_store()

        log = os.path.join(self.logs, f"{run_id}-{len(self.children)}.log")
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "microdag", *argv], cwd=self.root, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, env=_child_env(),
            )
        child = Child(process, log, what)
        with self._lock:
            self.children[run_id] = child
        return child

    def _create_store(self) -> None:
        """Make the store before the first child writes to it, so that the UI,
        reading meanwhile, never finds it half made."""
        scheme, path, _ = spec_parts(self.store_spec)
        if path and scheme != "json:":  # a SQLite file: its folder must exist
            os.makedirs(os.path.dirname(path), exist_ok=True)
        open_store(self.store_spec).close()

    def run(
        self, flow_path: str, inputs: "dict[str, Any]", run_id: "str | None" = None, target: "str | None" = None,
        draft: "str | None" = None,
    ) -> str:
        """Start a run of the flow file ``flow_path`` with ``inputs`` (of
        ``target`` and its ancestors only, when given); return its id.  A
        ``draft`` file is removed once the child has exited."""
        run_id = run_id or new_run_id()
        argv = ["run", flow_path, "--store", self.store_spec, "--run-id", run_id, "--quiet"]
        if target is not None:
            argv += ["--target", target]
        if inputs:  # as JSON, exactly (not --input text, which the command line reads by type)
            given = os.path.join(self.logs, f"{run_id}-inputs.json")
            with open(given, "w", encoding="ascii") as f:
                json.dump(inputs, f)
            argv += ["--inputs", given]
        try:
            child = self._spawn(run_id, argv, "the run")
        except BaseException:
            _remove(draft)
            raise
        if draft is not None:
            threading.Thread(target=_remove_after, args=(child, draft), daemon=True).start()
        return run_id

    def resume(self, run_id: str) -> str:
        """Go on with stored run ``run_id`` in a child; return its id."""
        self._spawn(run_id, ["resume", run_id, "--store", self.store_spec, "--quiet"], "the resume")
        return run_id

    def starting(self, run_id: str) -> "Child | None":
        """The child that runs ``run_id`` when the UI started it."""
        with self._lock:
            return self.children.get(run_id)

    def live(self, store: "Store", run_id: str) -> bool:
        """Whether ``run_id`` is being run: by a child of ours; else as the
        store knows (a run on the work queue; PostgreSQL: a claim held on
        any machine); else by its owner, a live process of this machine."""
        if self._pid(run_id) is not None:
            return True
        try:
            known = store.live(run_id)
        except Exception:
            return False
        return known if known is not None else self._pid(run_id, store) is not None

    def _pid(self, run_id: str, store: "Store | None" = None) -> "int | None":
        """The pid of the process running ``run_id`` on this machine: a child of
        ours, or (given the ``store``) the run's owner when it is a live
        process here; else ``None``."""
        child = self.starting(run_id)
        if child is not None and child.process.poll() is None:
            return child.process.pid
        if store is None:
            return None
        try:
            owner = store.owner(run_id)
        except Exception:
            return None
        pid = None if owner is None or not alive(owner) else local_pid(owner)
        return None if pid is None or pid == os.getpid() else pid

    def cancel(self, store: "Store", run_id: str) -> bool:
        """Stop ``run_id``: a run on the work queue for every worker, through the
        store (as ``python -m microdag cancel`` does), else the process running
        it here (SIGINT); whether there was one."""
        if store.shared(run_id):
            writable = open_store(self.store_spec)  # (the UI reads with a store opened read-only)
            try:
                if cancel_shared(writable, run_id):
                    return True
            finally:
                writable.close()
        pid = self._pid(run_id, store)
        if pid is None:
            return False
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return False
        return True

    def run_step(self, flow_path: str, step: str, run_id: str) -> "dict[str, Any]":
        """Run step ``step`` of ``flow_path`` on the outputs of stored run
        ``run_id``, in a child, and wait for it: its output, error and log."""
        fd, out = tempfile.mkstemp(prefix="step-", suffix=".json", dir=self.logs)
        os.close(fd)
        argv = [sys.executable, "-m", "microdag", "step", flow_path, step, "--from-run", run_id,
                "--store", self.store_spec, "--output", out]
        try:
            done = subprocess.run(
                argv, cwd=self.root, stdin=subprocess.DEVNULL, capture_output=True, timeout=STEP_TIMEOUT,
                start_new_session=True, env=_child_env(),
            )
            log = (done.stdout + done.stderr).decode("utf-8", "replace")
            if done.returncode == 0:
                with open(out, encoding="utf-8") as f:
                    text = f.read()
                return {"status": "succeeded", "output": json.loads(text) if text.strip() else None,
                        "error": None, "log": log}
            return {"status": "failed", "output": None, "error": _last_line(log), "log": log}
        except subprocess.TimeoutExpired as exc:
            log = ((exc.stdout or b"") + (exc.stderr or b"")).decode("utf-8", "replace")
            return {"status": "failed", "output": None,
                    "error": f"the step took more than {STEP_TIMEOUT:g} s and was stopped", "log": log}
        finally:
            try:
                os.unlink(out)
            except FileNotFoundError:
                pass

    def reap(self) -> None:
        """Forget children that ended long ago (their runs are in the store)."""
        with self._lock:
            for run_id, child in list(self.children.items())[:-100]:
                if child.process.poll() is not None:
                    del self.children[run_id]


def _remove(path: "str | None") -> None:
    if path is not None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _remove_after(child: Child, path: str) -> None:
    """Remove ``path`` (a draft the child loads) once the child has exited."""
    child.process.wait()
    _remove(path)


def _child_env() -> "dict[str, str]":
    """The children's environment: ours, with this microdag importable first."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "the step failed"
