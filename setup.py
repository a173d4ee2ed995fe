"""Build the compiled scheduler twin, or fall back to the pure-Python one.

- ``MICRODAG_NO_EXTENSIONS=1``: build nothing; the pure twin is used.
- A compile failure outside CI: warn and install the pure twin.
- Under ``CI=true`` a compile failure fails the build: CI must never test
  the fallback by accident.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


NO_EXTENSIONS = _flag("MICRODAG_NO_EXTENSIONS")
STRICT = _flag("CI")


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # compiler missing or failing
            self._fallback(exc)

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._fallback(exc)

    def _fallback(self, exc: Exception) -> None:
        if STRICT:
            raise
        sys.stderr.write(
            f"WARNING: microdag: could not compile the scheduler ({exc}); "
            "installing the pure-Python twin\n"
        )


def extensions() -> list:
    if NO_EXTENSIONS:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if STRICT:
            raise
        sys.stderr.write("WARNING: microdag: Cython not found; installing the pure-Python twin\n")
        return []
    return cythonize(
        [Extension("microdag._sched", ["src/microdag/_sched.pyx"])],
        compiler_directives={"language_level": "3"},
        quiet=True,
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
