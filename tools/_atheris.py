"""atheris for the fuzzing tools, or one line saying how to get it instead of a traceback
(the usual cause: the script run by an interpreter other than the venv's)."""
import sys

try:
    import atheris  # noqa: F401  (what the tools import from here)
except ImportError:
    sys.exit(f"error: atheris is not installed for {sys.executable}: run the fuzzers with "
             ".venv/bin/python (the test extra installs atheris there, on Linux), or install "
             "it with .venv/bin/pip install -e '.[fuzz]'")
