"""Child process groups that steps started, so that they can be killed whole.

A ``command`` step runs its program in a process group of its own and
registers the group here, under its run's id, while it runs.  When the run is
cancelled or interrupted, the runner kills the groups of that run; a worker
process told to stop (``SIGTERM``) kills every group it holds before it exits.
Killing a group kills what the program started too (``sh -c "a; b"`` and its
children), which killing the program alone would leave running.

State: ``_groups``, run id -> the process group ids running for it.  It is
changed under a lock, as steps run on several threads.  POSIX only: elsewhere
nothing is registered and :func:`kill` does nothing.
"""

import _thread
import os

__all__ = ["kill", "kill_group", "register", "stopped", "unregister"]

_lock = _thread.allocate_lock()
_groups: "dict[str | None, set[int]]" = {}
_killed: "set[int]" = set()  # groups killed because their run stopped, until unregistered


def register(run_id: "str | None", pgid: int) -> None:
    """Group ``pgid`` runs for run ``run_id`` (``None``: outside a run)."""
    with _lock:
        _groups.setdefault(run_id, set()).add(pgid)


def unregister(run_id: "str | None", pgid: int) -> None:
    """Group ``pgid`` is over."""
    with _lock:
        _killed.discard(pgid)
        groups = _groups.get(run_id)
        if groups is not None:
            groups.discard(pgid)
            if not groups:
                del _groups[run_id]


def stopped(pgid: int) -> bool:
    """Whether group ``pgid`` was killed because its run was cancelled or interrupted."""
    with _lock:
        return pgid in _killed


def kill_group(pgid: int) -> None:
    """Kill process group ``pgid`` (``SIGKILL``); a group that is gone is fine."""
    if os.name != "posix":
        return
    import signal  # (import time: signal loads on first use)

    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill(run_id: "str | None" = None, every: bool = False) -> int:
    """Kill the groups of run ``run_id`` (of every run when ``every``); how many."""
    with _lock:
        if every:
            doomed = [g for groups in _groups.values() for g in groups]
        else:
            doomed = list(_groups.get(run_id, ()))
        _killed.update(doomed)
    for pgid in doomed:
        kill_group(pgid)
    return len(doomed)
