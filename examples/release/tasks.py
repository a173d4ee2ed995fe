"""The Python steps of ``flow.toml``: plain functions, bound by parameter names."""

import os

import microdag


def write_notes(version: str, changes: list[str]) -> str:
    """Release notes for ``version`` in the step's working directory; returns the path."""
    path = os.path.join(microdag.context().workdir, f"NOTES-{version}.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"# Release {version}\n\n")
        f.writelines(f"- {change}\n" for change in changes)
    return path


def lint(notes: str) -> int:
    """Checks the notes; its first attempt fails as a flaky check would."""
    if microdag.context().attempt == 1:
        raise ConnectionError("the lint service did not answer (a transient failure: retried)")
    with open(notes, encoding="utf-8") as f:
        lines = f.read().splitlines()
    problems = [n for n, line in enumerate(lines, 1) if line != line.rstrip()]
    print(f"lint: {len(lines)} lines, {len(problems)} problems")
    return len(problems)


def publish(version: str, notes: str, checksum: str, size: int) -> dict:
    """What would be uploaded: the notes' name, size and checksum."""
    return {"version": version, "file": os.path.basename(notes), "bytes": size, "sha256": checksum}
