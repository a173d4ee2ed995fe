"""Crash safety of the JSON store: a crash injected at every write of a run.

A run's every change to the store directory (``mkdir``, ``makedirs``, a file
opened for writing, ``os.replace``, ``os.remove``) is counted on a first,
undisturbed run; then for each of those points, on a fresh store, the process
"dies" there: the write raises, and so does every write after it (a dead
process writes nothing more, not even in ``finally`` clauses).  A new store
object on the same directory (a new process) must then open it and either
resume the run to the right outputs or, when the run was never recorded, run
it again under the same id.
"""

import builtins
import os

import pytest

import microdag
import microdag.stores._files as files_module
import microdag.stores._json as json_module
from microdag.stores import JSONStore, StoreError


class Crash(BaseException):
    """The process dies here."""


class CrashingOS:
    """``os`` for the store modules, whose writes fail from the ``crash_at``-th on."""

    WRITES = ("mkdir", "makedirs", "replace", "remove", "rename", "rmdir")

    def __init__(self, crash_at: "int | None") -> None:
        self.crash_at = crash_at
        self.count = 0
        self.dead = False

    def hit(self) -> None:
        if self.dead or (self.crash_at is not None and self.count >= self.crash_at):
            self.dead = True
            raise Crash(f"crash at write {self.count}")
        self.count += 1

    def open(self, path, flags, *args):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            self.hit()
        return os.open(path, flags, *args)

    def __getattr__(self, name):
        real = getattr(os, name)
        if name in self.WRITES:
            def write(*args, **kwargs):
                self.hit()
                return real(*args, **kwargs)
            return write
        return real


def patched_open(crashing: CrashingOS):
    def open_(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            crashing.hit()
        return builtins.open(file, mode, *args, **kwargs)
    return open_


def square(x):
    return x * x


def big(n):
    return "x" * n  # over 64 KiB: a blob


def total(square, big):
    print("adding up")
    return sum(square) + len(big)


def make_flow() -> microdag.Flow:
    flow = microdag.Flow("crashy")
    flow.add("square", square, map="x")
    flow.add("big", big)
    flow.add("total", total)
    return flow


INPUTS = {"x": [1, 2, 3], "n": 70_000}
EXPECTED = 14 + 70_000


def run_with(crashing: CrashingOS, path, monkeypatch) -> None:
    with monkeypatch.context() as m:
        for module in (json_module, files_module):
            m.setattr(module, "os", crashing)
            m.setattr(module, "open", patched_open(crashing), raising=False)
        try:
            store = JSONStore(path)
            try:
                make_flow().run(INPUTS, store=store, run_id="r1")
            finally:
                store._timer.cancel()
        except (Crash, StoreError):
            pass  # a crash, or a write that failed because of it


def count_writes(tmp_path, monkeypatch) -> int:
    crashing = CrashingOS(None)
    run_with(crashing, tmp_path / "count", monkeypatch)
    assert not crashing.dead
    return crashing.count


def test_a_crash_at_any_write_leaves_a_store_that_opens_and_resumes(tmp_path, monkeypatch) -> None:
    writes = count_writes(tmp_path, monkeypatch)
    assert writes > 20  # the marker, the run, its owner, tasks, blobs, logs, the graph, the end
    outcomes = {"resumed": 0, "run again": 0}
    for k in range(writes):
        path = tmp_path / f"crash-{k}"
        crashing = CrashingOS(k)
        run_with(crashing, path, monkeypatch)
        assert crashing.dead, k
        files_module.HELD.clear()  # the dead process holds nothing
        store = JSONStore(path)  # a new process opens the store
        try:
            try:
                store.run_info("r1")
            except StoreError:
                run = make_flow().run(INPUTS, store=store, run_id="r1")
                outcomes["run again"] += 1
            else:
                run = make_flow().run(store=store, run_id="r1", resume=True)
                outcomes["resumed"] += 1
            assert run.status == "succeeded", k
            assert run["total"] == EXPECTED, k
            assert [r.id for r in store.list_runs()] == ["r1"], k
            assert store.load_run("r1").status == "succeeded", k
        finally:
            store.close()
    assert outcomes["resumed"] > 0 and outcomes["run again"] > 0, outcomes


# -- a full disk ------------------------------------------------------------------------------


def test_a_write_that_fails_removes_its_temporary_file(tmp_path, monkeypatch) -> None:
    """Simulated here (``fsync`` fails with ENOSPC) so that it runs anywhere;
    the tests below fill a real, small tmpfs."""
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files_module.os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        files_module.write_atomic(str(tmp_path / "f.json"), b"x" * 1000)
    assert os.listdir(tmp_path) == []


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (root only: skipped where mounting is refused)."""
    import subprocess

    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)],
                          capture_output=True, timeout=30)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + done.stderr.decode(errors="replace").strip())
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def small_then(output: int):
    def small():
        return 1

    def huge(small):
        return "x" * output

    flow = microdag.Flow("full")
    flow.add("small", small)
    flow.add("huge", huge)
    return flow


@pytest.mark.parametrize("kind", ["json", "sqlite"])
def test_a_full_disk_fails_the_run_in_its_record_and_leaves_no_partial_file(small_disk, kind) -> None:
    from microdag.stores import SQLiteStore

    store = JSONStore(small_disk / "s") if kind == "json" else SQLiteStore(small_disk / "s.db")
    try:
        with pytest.raises(StoreError, match="No space left on device"):
            small_then(600_000).run(store=store, run_id="r1")
        left = [os.path.join(d, n) for d, _, names in os.walk(small_disk) for n in names if n.endswith(".tmp")]
        assert left == []
        assert store.run_info("r1").status == "failed"
        records = {r.step: r for r in store.tasks("r1")}
        assert records["small"].status == "succeeded"
        assert records["huge"].status == "failed"
        assert "No space left on device" in records["huge"].error_message
        assert store.owner("r1") is None  # let go of
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["json", "sqlite"])
def test_records_that_cannot_be_committed_still_leave_the_run_failed(small_disk, kind) -> None:
    """Outputs below the blob size fill the disk at a group commit: the records
    waiting in it are lost, as in a crash, and the run's end is still recorded."""
    from microdag.stores import SQLiteStore

    flow = microdag.Flow("full")
    for i in range(12):
        flow.add(f"s{i}", lambda: "y" * 50_000)
    store = JSONStore(small_disk / "s") if kind == "json" else SQLiteStore(small_disk / "s.db")
    try:
        with pytest.raises(StoreError, match="No space left on device|disk is full"):
            flow.run(store=store, run_id="r1")
        assert [n for d, _, names in os.walk(small_disk) for n in names if n.endswith(".tmp")] == []
        assert store.run_info("r1").status == "failed"
        assert store.owner("r1") is None
    finally:
        store.close()
