"""Build the Cython core (cancorder/_fast/*.py typed by their .pxd) when possible, every module
at once (one compiler per core), and the manual page (share/man/man1, for `man cancorder`).

CANCORDER_REQUIRE_CYTHON=1: a failed compile is an error (CI, the executable build).
CANCORDER_SKIP_CYTHON=1: install the pure-Python twin only.
Otherwise a failed compile prints a warning and the install comes out pure Python.
"""
import os
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

FAST_MODULES = ["wire", "broadcast", "slcan", "socketcand", "logfile", "socketcan", "traffic", "pcap",
                "gvret", "idcount", "pump"]
REQUIRE = os.environ.get("CANCORDER_REQUIRE_CYTHON", "") not in ("", "0")
SKIP = os.environ.get("CANCORDER_SKIP_CYTHON", "") not in ("", "0")
# Cython and the C compiler take the modules side by side: on 2 cores, one after another took
# twice as long
JOBS = os.cpu_count() or 1
HERE = os.path.dirname(os.path.abspath(__file__))
MANUAL_PAGE = os.path.join("build", "man", "cancorder.1")


class OptionalBuildExt(build_ext):
    """Compiles the modules in parallel; turns a failed compile into a warning, unless the
    compile is demanded."""

    def finalize_options(self):
        if self.parallel is None:  # unless -j N is given
            self.parallel = JOBS
        super().finalize_options()

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
        nthreads=JOBS,
    )


class BuildPyWithManual(build_py):
    """Also writes the manual page, made from the command line of the source being built (the
    text `cancorder man` prints), for the wheel's share/man/man1."""

    def run(self):
        super().run()
        # in a child process: it imports the package being built, from this folder; the parser
        # alone, which needs nothing the build environment lacks (`cancorder man` would set up
        # logging with rich, a run-time dependency)
        command = ("import sys; from cancorder.cli import build_parser; "
                   "from cancorder.manual import manual_page; "
                   "sys.stdout.write(manual_page(build_parser()))")
        # the pure core: the page needs no compiled module, and one left from an earlier build
        # may be older than its source
        page = subprocess.run([sys.executable, "-c", command], cwd=HERE, check=True,
                              stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, CANCORDER_PURE="1")).stdout
        os.makedirs(os.path.join(HERE, os.path.dirname(MANUAL_PAGE)), exist_ok=True)
        with open(os.path.join(HERE, MANUAL_PAGE), "w", encoding="utf-8") as f:
            f.write(page)


# cythonize's worker processes import this file again where they start by spawning (macOS, and
# Linux from Python 3.14): there it must not build anything
if __name__ == "__main__":
    setup(ext_modules=extensions(),
          data_files=[("share/man/man1", [MANUAL_PAGE])],
          cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPyWithManual})
