"""What the file-backed stores share: atomic writes, blobs, the prune policy, run owners.

- :func:`write_atomic`: a temporary file, ``fsync``, ``os.replace``, then an
  ``fsync`` of the folder: a crash leaves the old file or the new one;
- blobs: encoded outputs of :data:`BLOB_SIZE` bytes and more, kept once each
  under their SHA-256 (:func:`put_blob`), deleted by :func:`drop_blobs` when
  no record names them;
- :func:`doomed`: which runs ``prune`` deletes;
- :func:`new_owner` and :func:`alive`: the token (``host:pid#nonce``) of one
  claim on a run, and whether the claim may still be held; :class:`FileLock`
  makes a read-check-write of an owner file atomic across processes.
"""

import os
import sys
import threading
import time

from .._errors import StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from .._records import RunInfo

__all__ = [
    "BLOB_SIZE", "HELD", "FileLock", "alive", "checksum", "doomed", "drop_blobs", "drop_folders", "local_pid", "new_owner",
    "put_blob",
    "read_blob",
    "write_atomic",
]

#: Encoded outputs of this many bytes and more are kept by content hash.
BLOB_SIZE = 64 * 1024


_HOST = os.uname().nodename if hasattr(os, "uname") else "host"

#: The claims on runs that this process holds now (owner tokens).
HELD: "set[str]" = set()


def new_owner() -> str:
    """A fresh owner token for one claim of this process: ``host:pid#nonce``."""
    return f"{_HOST}:{os.getpid()}#{os.urandom(4).hex()}"


def local_pid(owner: str) -> "int | None":
    """The process id in claim ``owner`` when the claim was made on this host
    (a number), else ``None``."""
    host, _, pid = owner.partition("#")[0].rpartition(":")
    return int(pid) if host == _HOST and pid.isdigit() else None


def alive(owner: str) -> bool:
    """Whether the claim ``owner`` may still be held: by a live process of this
    host (in this process: a claim it holds now), or on another host (assumed)."""
    base = owner.partition("#")[0]
    host, _, pid = base.rpartition(":")
    if host != _HOST:
        return True
    try:
        number = int(pid)
    except ValueError:
        return True
    if number == os.getpid():
        return owner in HELD
    try:
        os.kill(number, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


class FileLock:
    """An exclusive lock on ``path`` across processes (``flock``; created if
    missing), for a read-check-write of a file that must be atomic."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> "FileLock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if sys.platform == "win32":
                import msvcrt  # (Windows only)

                msvcrt.locking(self.fd, msvcrt.LK_LOCK, 1)
            else:
                import fcntl  # (POSIX only)

                fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if sys.platform == "win32":
                import msvcrt  # (Windows only)

                msvcrt.locking(self.fd, msvcrt.LK_UNLCK, 1)
            else:
                import fcntl  # (POSIX only)

                fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)


def checksum(data: bytes) -> str:
    """The SHA-256 of ``data`` (a blob, a run's record) in hex, by :mod:`hashlib`:
    several times faster on big data than the builtin module, worth its one import."""
    import hashlib  # (import time: hashlib loads on first use)

    return hashlib.sha256(data).hexdigest()


def put_blob(folder: str, data: bytes, store: str) -> str:
    """Keep ``data`` once under ``folder/<ab>/<sha256>``; return the digest."""
    digest = checksum(data)
    sub = os.path.join(folder, digest[:2])
    path = os.path.join(sub, digest)
    try:
        if os.path.exists(path):
            os.utime(path)  # fresh again: prune's grace period starts over
        else:
            os.makedirs(sub, exist_ok=True)
            write_atomic(path, data)
    except OSError as exc:
        raise StoreError(f"cannot write to store {store!r}: {exc}") from None
    return digest


def read_blob(folder: str, digest: str, what: str) -> bytes:
    """The blob ``digest`` under ``folder``, checked against its name.

    Raises:
        StoreError: it is missing, unreadable, or its content does not match
            its SHA-256 name; the message names ``what`` (the output it holds)
            and the file.
    """
    path = os.path.join(folder, digest[:2], digest)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise StoreError(f"{what} is lost: its blob {path} is missing") from None
    except OSError as exc:
        raise StoreError(f"{what} cannot be read: blob {path}: {exc.strerror or exc}") from None
    if checksum(data) != digest:
        raise StoreError(
            f"{what} is damaged: blob {path} does not match its SHA-256 name "
            f"({len(data)} bytes; truncated or changed)"
        )
    return data


def drop_blobs(folder: str, used: "set[Any]", runs: "list[RunInfo]") -> None:
    """Delete the blobs under ``folder`` that ``used`` does not name.

    A run still ``running`` (in another process, or buffered in another store
    object) may use blobs whose records are not committed yet: blobs written
    since the oldest such run started are kept.
    """
    if not os.path.isdir(folder):
        return
    running = [r.started for r in runs if r.status == "running"]
    keep_after = min(running) - 1.0 if running else None
    for sub in os.listdir(folder):
        for name in os.listdir(os.path.join(folder, sub)):
            path = os.path.join(folder, sub, name)
            if name in used or name.endswith(".tmp"):
                continue
            if keep_after is not None and os.path.getmtime(path) >= keep_after:
                continue
            os.remove(path)


def drop_folders(folders: "Iterable[str]") -> None:
    """Delete the work folders of pruned runs (those that exist)."""
    import shutil  # (import time: shutil loads on first use)

    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def write_atomic(path: str, data: bytes, keep_mode: bool = False) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one
    (with ``keep_mode``, the new file gets the permissions of the one it replaces).
    A write that fails (a full disk) removes its temporary file before it raises."""
    tmp = f"{path}.{os.getpid()}-{threading.get_ident()}-{os.urandom(4).hex()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if keep_mode:
            try:
                os.chmod(tmp, os.stat(path).st_mode & 0o7777)
            except FileNotFoundError:
                pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass  # never made, or already gone
        raise
    try:
        fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def doomed(runs: "list[RunInfo]", older_than: "float | None", keep_last: "int | None") -> "list[str]":
    """Ids of the runs ``prune`` deletes (``runs`` newest first)."""
    cutoff = None if older_than is None else time.time() - older_than
    seen: dict[str, int] = {}
    doomed = []
    for run in runs:
        if run.status == "damaged":  # never deleted unread: its data may still be saved by hand
            continue
        rank = seen[run.flow] = seen.get(run.flow, 0) + 1
        if keep_last is not None and rank <= keep_last:
            continue
        if cutoff is not None and run.started >= cutoff:
            continue
        if cutoff is None and keep_last is None:
            continue
        doomed.append(run.id)
    return doomed
