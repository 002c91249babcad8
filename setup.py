"""Build the Cython core (cancorder/_fast/*.py typed by their .pxd) when possible.

CANCORDER_REQUIRE_CYTHON=1: a failed compile is an error (CI, the executable build).
CANCORDER_SKIP_CYTHON=1: install the pure-Python twin only.
Otherwise a failed compile prints a warning and the install comes out pure Python.
"""
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

FAST_MODULES = ["wire", "broadcast", "slcan", "socketcand", "logfile", "traffic"]
REQUIRE = os.environ.get("CANCORDER_REQUIRE_CYTHON", "") not in ("", "0")
SKIP = os.environ.get("CANCORDER_SKIP_CYTHON", "") not in ("", "0")


class OptionalBuildExt(build_ext):
    """Turns a failed compile into a warning, unless the compile is demanded."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # compiler missing, headers missing...
            self._give_up(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._give_up(exc, ext.name)

    def _give_up(self, exc, name="the compiled core"):
        if REQUIRE:
            raise
        print(f"warning: could not compile {name} ({exc}); using the pure-Python twin",
              file=sys.stderr)


def extensions():
    if SKIP:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE:
            raise
        print("warning: Cython is missing; using the pure-Python twin", file=sys.stderr)
        return []
    modules = [
        Extension(f"cancorder._fast.{name}", [f"cancorder/_fast/{name}.py"])
        for name in FAST_MODULES
        if os.path.exists(f"cancorder/_fast/{name}.py")
    ]
    return cythonize(
        modules,
        compiler_directives={
            "language_level": 3,
            # Type hints in the .py must never override (or clash with) the .pxd.
            "annotation_typing": False,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
        },
        quiet=True,
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
