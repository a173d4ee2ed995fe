"""Dask's own tests, run with microdag's kernel as Dask's scheduler.

Usage (from anywhere; CI runs it after the README's test command)::

    python tests/dask_suite/run.py [--install] [--twins] [pytest options]

It takes the source distribution of the installed Dask version from PyPI
(``pip download --no-binary :all: --no-deps dask==<version>``, kept in
``$MICRODAG_DASK_SUITE_CACHE``, default ``~/.cache/microdag-dask-suite``; never
copied into this repository), unpacks it and runs pytest there on ``MODULES``
with the ``microdag_scheduler`` plugin (next to this file), which sets Dask's
``scheduler`` option to ``microdag.dask.get`` for the whole session.  The tests
listed in ``deselected.txt`` (each with its reason) are left out.

A test that fails is run again on Dask's own scheduler: if it fails there
too (a Dask release against a newer pandas or numpy), it is reported and
not counted; if it passes there, it is microdag's failure.

``--install`` first installs with pip what those modules need, as Dask's own
``pyproject.toml`` names it: the ``array`` and ``dataframe`` extras, and the
pytest plugins its test configuration uses.  ``--twins`` runs the suite a
second time on the pure-Python kernel (``MICRODAG_NO_EXTENSIONS=1``).

Under ``CI`` nothing is skipped: no Dask, no network or a missing module is
a failure.  Elsewhere those skip the run (or the module) with a message, and
exit 0.
"""

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Dask's test modules run, with the modules each one needs.
MODULES = {
    "dask/tests/test_threaded.py": (),
    "dask/tests/test_local.py": (),
    "dask/tests/test_delayed.py": (),
    "dask/bag/tests/test_bag.py": (),
    "dask/array/tests/test_array_core.py": ("numpy",),
    "dask/dataframe/tests/test_dataframe.py": ("numpy", "pandas", "pyarrow"),
}

#: The pytest plugins Dask's test configuration needs (its ``timeout`` option,
#: its ``flaky`` marker, the ``mocker`` fixture), from its ``test`` extra.
PLUGINS = {"pytest-timeout": "pytest_timeout", "pytest-rerunfailures": "pytest_rerunfailures",
           "pytest-mock": "pytest_mock"}

#: Dask's ``addopts`` without coverage (``--cov-config`` needs pytest-cov) or colour.
ADDOPTS = "-ra --strict-config --strict-markers --durations=5"

IN_CI = bool(os.environ.get("CI"))


def give_up(message: str) -> "int":
    """Fail under CI; elsewhere skip the whole run with the message."""
    print(f"dask suite: {message}", file=sys.stderr)
    if IN_CI:
        return 1
    print("dask suite: skipped (not under CI)", file=sys.stderr)
    return 0


def deselected(path: Path = HERE / "deselected.txt") -> "list[str]":
    """The test ids of ``deselected.txt``; every one must give its reason after ``#``."""
    ids = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        test, _, reason = line.partition("#")
        if not reason.strip() or "::" not in test:
            raise SystemExit(f"{path}:{number}: a test id, then '# ' and the reason it is left out")
        ids.append(test.strip())
    return ids


def sdist(version: str) -> Path:
    """The unpacked source distribution of Dask ``version``, downloaded once."""
    cache = Path(os.environ.get("MICRODAG_DASK_SUITE_CACHE") or Path.home() / ".cache" / "microdag-dask-suite")
    folder = cache / f"dask-{version}"
    if (folder / "conftest.py").exists():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                        "-q", "-d", tmp, f"dask=={version}"], check=True)
        archive = next(Path(tmp).glob("dask-*.tar.gz"))
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):  # (Python 3.12+, and patched 3.8-3.11)
                tar.extractall(tmp, filter="data")
            else:  # pragma: no cover - an unpatched Python
                tar.extractall(tmp)
        Path(tmp, f"dask-{version}").rename(folder)
    return folder


def requirements(folder: Path) -> "list[str]":
    """What the modules need, as Dask's ``pyproject.toml`` pins it: its array and dataframe
    extras (without its reference to itself) and the pytest plugins of ``PLUGINS``."""
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    extras = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"]
    wanted = [r for name in ("array", "dataframe") for r in extras.get(name, []) if not r.startswith("dask")]
    wanted += [r for r in extras.get("test", []) if r.split()[0].split("[")[0] in PLUGINS]
    return wanted


def missing(modules: "tuple[str, ...]") -> "list[str]":
    return [m for m in modules if importlib.util.find_spec(m) is None]


def main(argv: "list[str]") -> int:
    install = "--install" in argv
    twins = "--twins" in argv
    extra = [a for a in argv if a not in ("--install", "--twins")]
    try:
        version = importlib.metadata.version("dask")
    except importlib.metadata.PackageNotFoundError:
        return give_up("Dask is not installed (pip install 'microdag[dask]')")
    try:
        folder = sdist(version)
    except (OSError, subprocess.CalledProcessError, StopIteration) as exc:
        return give_up(f"could not download Dask {version}'s source distribution: {exc}")
    if install:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *requirements(folder)], check=True)
        importlib.invalidate_caches()
    lacking = missing(tuple(PLUGINS.values()))
    if lacking:
        return give_up(f"Dask's test configuration needs {', '.join(lacking)} (or run with --install)")
    modules = []
    for module, needs in MODULES.items():
        gone = missing(needs)
        if gone and IN_CI:
            return give_up(f"{module} needs {', '.join(gone)}")
        if gone:
            print(f"dask suite: {module} left out: it needs {', '.join(gone)}", file=sys.stderr)
        else:
            modules.append(module)
    command = [sys.executable, "-m", "pytest", "-p", "microdag_scheduler", "-p", "no:cacheprovider",
               "-o", f"addopts={ADDOPTS}", "-q", *extra]
    for test in deselected():
        command += ["--deselect", test]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    status = 0
    for pure in (False, True) if twins else (False,):
        if pure:
            env["MICRODAG_NO_EXTENSIONS"] = "1"
        kernel = "pure" if env.get("MICRODAG_NO_EXTENSIONS") else "default"
        print(f"dask suite: Dask {version}, the {kernel} kernel: {' '.join(modules)}", flush=True)
        start = time.perf_counter()
        status = run_checked(command, modules, folder, env) or status
        print(f"dask suite: the {kernel} kernel took {time.perf_counter() - start:.0f} s", flush=True)
    return status


def run_checked(command: "list[str]", modules: "list[str]", folder: Path, env: "dict[str, str]") -> int:
    """Run the modules; a test that fails is run again on Dask's own scheduler, and counts
    only if it passes there (else the installed Dask fails it by itself, and it is reported)."""
    with tempfile.TemporaryDirectory() as tmp:
        first, again = Path(tmp, "failed"), Path(tmp, "again")
        status = subprocess.run(command + modules, cwd=folder,
                                env=dict(env, MICRODAG_DASK_SUITE_FAILED=str(first))).returncode
        if status not in (0, 1) or not first.exists():  # (not only failed tests: errors, no tests, ...)
            return status
        failed = sorted(set(first.read_text(encoding="utf-8").split()))
        print(f"dask suite: {len(failed)} failed; run again on Dask's own scheduler", flush=True)
        subprocess.run(command + failed, cwd=folder, env=dict(
            env, MICRODAG_DASK_SUITE_SCHEDULER="dask", MICRODAG_DASK_SUITE_FAILED=str(again)))
        theirs = set(again.read_text(encoding="utf-8").split()) if again.exists() else set()
    for test in failed:
        where = "also on Dask's own scheduler (not counted)" if test in theirs else "on microdag only"
        print(f"dask suite: FAILED {where}: {test}", flush=True)
    return 1 if set(failed) - theirs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
