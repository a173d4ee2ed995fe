"""The package as users meet it: the public surface, the version line, import
cost, vendoring without a build, the build's fallback rules, what the sdist
holds, how CI runs, and mypy."""

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

import microdag
from support import NO_EXTENSIONS

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "microdag"

HEAVY = {
    "asyncio",
    "concurrent.futures",
    "inspect",
    "json",
    "logging",
    "multiprocessing",
    "sqlite3",
    "psycopg",
    "subprocess",
    "tomllib",
    "typing",
    "threading",
    "argparse",
}


def run_py(code: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    full_env = dict(os.environ)
    full_env.update(env or {})
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_public_surface_is_pinned() -> None:
    assert sorted(microdag.__all__) == sorted(
        [
            "ALLOW_INF_NAN",
            "CycleError",
            "Event",
            "Flow",
            "FlowError",
            "Graph",
            "Run",
            "RunFailed",
            "RunStatus",
            "SCHEDULER",
            "Skip",
            "StepContext",
            "Task",
            "TaskStatus",
            "TopologicalSorter",
            "__version__",
            "context",
            "load_flow",
            "stores",
        ]
    )
    for name in microdag.__all__:
        assert hasattr(microdag, name), name
    assert set(microdag.__all__) <= set(dir(microdag))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        microdag.nope  # noqa: B018
    namespace: dict[str, object] = {}
    exec("from microdag import *", namespace)
    assert set(microdag.__all__) <= set(namespace)


def test_scheduler_twin_matches_environment() -> None:
    assert microdag.SCHEDULER == ("py" if NO_EXTENSIONS else "c")


def test_version_flag_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    from microdag.cli import main

    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"microdag {microdag.__version__} (scheduler: {microdag.SCHEDULER})"


def test_version_flag_subprocess() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "microdag", "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    assert out.stdout.strip() == f"microdag {microdag.__version__} (scheduler: {microdag.SCHEDULER})"


def test_version_reports_py_twin_when_asked() -> None:
    out = run_py(
        "import microdag; print(microdag.SCHEDULER)", env={"MICRODAG_NO_EXTENSIONS": "1"}
    )
    assert out.strip() == "py"


@pytest.mark.parametrize(
    "statement",
    ["import microdag", "from microdag import Flow, Graph, TopologicalSorter, Run, CycleError"],
)
def test_import_loads_nothing_heavy(statement: str) -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        f"{statement}\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))\n"
    )
    new = set(run_py(code).split())
    assert not (new & HEAVY), sorted(new & HEAVY)
    ours = {n for n in new if n == "microdag" or n.startswith("microdag.")}
    cython_runtime = {n for n in new if n.startswith("_cython") or n == "cython_runtime"}
    light = {"graphlib", "heapq", "_heapq", "contextvars", "_contextvars", "types", "operator", "_operator",
             "gc", "itertools"}  # (the last two are built into the interpreter: no file is read)
    assert new - ours - cython_runtime <= light, sorted(
        new - ours - cython_runtime
    )


def test_vendored_copy_runs_on_the_pure_twin(tmp_path: Path) -> None:
    """``src/microdag/`` copied as it is, without a build: flows run, and
    ``--version`` says why the scheduler is the pure-Python one."""
    dest = tmp_path / "vendor" / "microdag"
    shutil.copytree(SRC, dest, ignore=shutil.ignore_patterns("*.so", "*.pyd", "*.c", "__pycache__"))
    code = (
        "import microdag\n"
        "assert microdag.SCHEDULER == 'py', microdag.SCHEDULER\n"
        "ts = microdag.TopologicalSorter({'b': {'a'}, 'c': {'b'}})\n"
        "print(list(ts.static_order()))\n"
        "flow = microdag.Flow('v').add('a', lambda: 1).add('b', lambda a: a + 1)\n"
        "print(flow.run(executor='threads')['b'])\n"
    )
    env = {"PYTHONPATH": str(tmp_path / "vendor")}
    out = run_py(code, env=env, cwd=tmp_path)
    assert out.split() == ["['a',", "'b',", "'c']", "2"]
    version = subprocess.run(
        [sys.executable, "-m", "microdag", "--version"], capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "vendor"), "MICRODAG_NO_EXTENSIONS": ""}, timeout=60,
    )
    assert "(scheduler: py; the compiled scheduler is not installed" in version.stdout


def _build_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(SRC, tree / "src" / "microdag", ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    return tree


def _build(tree: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("CI", "MICRODAG_NO_EXTENSIONS")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=tree,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )


def _built(tree: Path) -> list[Path]:
    return list((tree / "src" / "microdag").glob("_sched*.so")) + list(
        (tree / "src" / "microdag").glob("_sched*.pyd")
    )


cython = pytest.importorskip("Cython", reason="the build tests need Cython (test extras)")


def test_build_skips_extension_when_asked(tmp_path: Path) -> None:
    tree = _build_tree(tmp_path)
    out = _build(tree, MICRODAG_NO_EXTENSIONS="1")
    assert out.returncode == 0, out.stderr
    assert _built(tree) == []


def test_build_without_compiler_falls_back_outside_ci(tmp_path: Path) -> None:
    tree = _build_tree(tmp_path)
    out = _build(tree, CC="false", LDSHARED="false")
    assert out.returncode == 0, out.stderr
    assert "installing the pure-Python twin" in out.stderr
    assert _built(tree) == []


def test_build_without_compiler_fails_under_ci(tmp_path: Path) -> None:
    tree = _build_tree(tmp_path)
    out = _build(tree, CC="false", LDSHARED="false", CI="true")
    assert out.returncode != 0
    assert _built(tree) == []


@pytest.mark.skipif(NO_EXTENSIONS, reason="type checking runs once, in the main pass")
def test_mypy_strict_passes() -> None:
    api = pytest.importorskip("mypy.api")
    stdout, stderr, status = api.run(["--strict", "--no-incremental", str(SRC)])
    assert status == 0, stdout + stderr


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = 'pip install ".[test]" && python -m pytest && MICRODAG_NO_EXTENSIONS=1 python -m pytest'
    assert command in readme.splitlines()
    assert command in ci.splitlines()
    lines = ci.splitlines()
    after = [line for line in lines[lines.index(command) + 1:] if not line.startswith("#")]
    assert after == [DASK_SUITE], "the README's command is CI's last test run but Dask's own suites"


#: CI's last step: Dask's own tests on microdag.dask.get (docs/dask-scheduler.md).
DASK_SUITE = "python tests/dask_suite/run.py --install --twins"


def test_dask_suite_lists_each_test_left_out_with_its_reason() -> None:
    spec = importlib.util.spec_from_file_location("dask_suite_run", ROOT / "tests" / "dask_suite" / "run.py")
    assert spec is not None and spec.loader is not None
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    ids = run.deselected()
    assert ids and all(test.split("::")[0] in run.MODULES for test in ids)
    assert len(ids) <= 10, "kept short: a failure of microdag's get is a bug to fix, not a test to leave out"


def test_ci_runs_in_a_folder_named_microdag_after_the_release_job() -> None:
    """What ``git clone`` makes is a folder named like the package: CI tests there, so a
    test that takes the checkout for the package fails in CI too."""
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    moved = lines.index('cd "$work/microdag"')
    release = lines.index('bash .ci/wheels "$work/release"')
    command = next(i for i, line in enumerate(lines) if line.startswith('pip install ".[test]"'))
    assert moved < release < command


def _check_dist() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_dist", ROOT / ".ci" / "check_dist.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(NO_EXTENSIONS, reason="the sdist is checked once, in the main pass")
def test_the_sdist_holds_the_kernel_source_and_the_tests(tmp_path: Path) -> None:
    """Built as ``python -m build`` builds it (setuptools' sdist, MANIFEST.in), from a copy
    of this tree without its build output."""
    tree = tmp_path / "microdag"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", "*.so", "*.pyd", "_sched.c", ".*_cache",
        ".hypothesis", ".benchmarks", ".microdag", ".venv", "venv", "node_modules"))
    env = {k: v for k, v in os.environ.items() if k != "MICRODAG_NO_EXTENSIONS"}
    out = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist")],
                         cwd=tree, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    (sdist,) = (tmp_path / "dist").glob("microdag-*.tar.gz")
    assert _check_dist().sdist_problems(sdist, root=tree) == []


def test_the_wheel_check_finds_what_a_release_must_not_ship(tmp_path: Path) -> None:
    check = _check_dist()
    wheel = tmp_path / "microdag-0.1.0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as whl:
        for name in check.WHEEL_NEEDS:
            whl.writestr(name, "")
        whl.writestr("microdag/_sched.cpython-311-x86_64-linux-gnu.so", b"\x7fELF ... .symtab\x00.strtab\x00")
        whl.writestr("microdag-0.1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nTag: cp311-cp311-linux_x86_64\n")
    problems = check.wheel_problems(wheel, "manylinux_2_17_x86_64")
    assert [p.split(": ", 1)[1] for p in problems] == [
        "microdag/_sched.cpython-311-x86_64-linux-gnu.so is not stripped (25 bytes)",
        "not tagged manylinux_2_17_x86_64 (tags: cp311-cp311-linux_x86_64)",
    ]
    assert check.wheel_problems(wheel) == problems[:1]


def test_the_ui_page_is_installed() -> None:
    """The page's files ship with the package (package data), wherever it is installed."""
    import microdag

    static = Path(microdag.__file__).parent / "ui" / "static"
    page = sorted(p.relative_to(static).as_posix() for p in static.rglob("*.*")
                  if p.is_file() and "vendor" not in p.parts and not p.name.startswith("."))
    assert page == ["api.js", "app.css", "dom.js", "draw.js", "editor/canvas.js", "editor/code.js", "editor/editor.js",
                    "editor/form.js", "index.html", "main.js", "present.js", "views/flows.js", "views/panel.js",
                    "views/run.js", "views/runs.js"]
    assert sorted(p.name for p in (static / "vendor").iterdir()) == ["LICENSE", "VERSIONS", "codemirror.js"]
