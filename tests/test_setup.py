"""The set-up a new user runs (`make run`): one line per stage, only what running needs, and the
compiled core's modules compiled side by side. The real minute-long set-up is measured from a
fresh clone (README); here make runs with a stand-in Python and compiler that record what they
are asked to do."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# python3 -m venv DIR makes DIR/bin/{pip,python,cancorder}: each appends its arguments to
# DIR/calls and succeeds (`cancorder man` prints a page)
FAKE_PYTHON = f"""#!{sys.executable}
import os, sys
if sys.argv[1:3] == ["-m", "venv"]:
    venv = os.path.abspath(sys.argv[3])
    os.makedirs(os.path.join(venv, "bin"))
    for name in ("pip", "python", "cancorder"):
        path = os.path.join(venv, "bin", name)
        with open(path, "w") as f:
            f.write("#!{sys.executable}\\nimport os, sys\\n"
                    f"with open({{os.path.join(venv, 'calls')!r}}, 'a') as log:\\n"
                    f"    log.write(' '.join([{{name!r}}] + sys.argv[1:]) + ' skip='"
                    "+ os.environ.get('CANCORDER_SKIP_CYTHON', '') + '\\\\n')\\n"
                    "if sys.argv[1:] == ['man']: print('.TH CANCORDER 1')\\n")
        os.chmod(path, 0o755)
else:
    sys.exit(f"unexpected: {{sys.argv}}")
"""


def _make(target, tmp_path, **variables):
    fake = tmp_path / "python3"
    if not fake.exists():
        fake.write_text(FAKE_PYTHON)
        fake.chmod(0o755)
    settings = {"PY": str(fake), "VENV": str(tmp_path / "venv"), **variables}
    done = subprocess.run(["make", "--no-print-directory", target]
                          + [f"{key}={value}" for key, value in settings.items()],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "venv" / "calls").read_text().splitlines()
    (tmp_path / "venv" / "calls").unlink()
    return done.stdout.splitlines(), calls


def test_make_run_says_each_stage_and_installs_only_what_running_needs(tmp_path):
    said, calls = _make("run", tmp_path, ARGS="--version")
    # one line per stage, and nothing else (the commands themselves are not echoed)
    assert [line.split("]")[0] for line in said] == [
        "make: [venv", "make: [dependencies", "make: [compiling", "make: [starting"]
    installs = [call for call in calls if call.startswith("pip install")]
    assert len(installs) == 2
    assert "Cython>=3.0" in installs[0] and "argparse-manpage>=4" in installs[0]
    # cancorder and its own dependencies: no extra (the test extra brings asammdf, atheris...)
    assert installs[1].endswith("--no-build-isolation -e . skip=1")
    assert calls[-3:] == ["cancorder man skip=", "python setup.py -q build_ext --inplace skip=",
                          "cancorder --version skip="]
    assert (tmp_path / "venv" / "share" / "man" / "man1" / "cancorder.1").read_text() == \
        ".TH CANCORDER 1\n"

    # the second run: no venv, no pip, no manual page (no flag changed): compile check, start
    said, calls = _make("run", tmp_path, ARGS="--version")
    assert [line.split("]")[0] for line in said] == ["make: [compiling", "make: [starting"]
    assert calls == ["python setup.py -q build_ext --inplace skip=", "cancorder --version skip="]


def test_make_test_adds_the_test_extra(tmp_path):
    _make("run", tmp_path, ARGS="--version")
    said, calls = _make("test", tmp_path)
    assert "make: [dependencies] installing the test extra (pip)" in said
    assert [call for call in calls if call.startswith("pip")] == [
        "pip install -q --disable-pip-version-check --no-build-isolation -e .[test] skip=1"]
    assert calls[-1].startswith("python -m pytest")


# a stand-in compiler: records when each call starts and ends, takes 1 s per compile, writes
# its output file
FAKE_CC = f"""#!{sys.executable}
import os, sys, time
start = time.monotonic()
output = sys.argv[sys.argv.index("-o") + 1]
if "-c" in sys.argv:
    time.sleep(1)
os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
open(output, "wb").close()
with open(os.environ["FAKE_CC_LOG"], "a") as log:
    log.write(f"{{'-c' in sys.argv}} {{start}} {{time.monotonic()}} {{output}}\\n")
"""


def test_the_compiled_core_compiles_its_modules_side_by_side(tmp_path):
    # Cython compiles them: in make test-nocython's venv (no Cython, by design) there is nothing
    # to compile; make test runs this with Cython
    pytest.importorskip("Cython", reason="the no-Cython venv compiles nothing")
    from cancorder import _fast

    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy2(os.path.join(ROOT, name), source)
    # with the .c files Cython made for this checkout (copied with their times: up to date)
    shutil.copytree(os.path.join(ROOT, "cancorder"), source / "cancorder",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    compiler = tmp_path / "cc"
    compiler.write_text(FAKE_CC)
    compiler.chmod(0o755)
    log = tmp_path / "cc.log"
    done = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "-b", str(tmp_path / "lib"),
         "-t", str(tmp_path / "temp")], cwd=source, capture_output=True, text=True, timeout=600,
        env={**os.environ, "CC": str(compiler), "LDSHARED": f"{compiler} -shared",
             "FAKE_CC_LOG": str(log), "CANCORDER_REQUIRE_CYTHON": "1"})
    assert done.returncode == 0, done.stderr
    compiles = [tuple(map(float, line.split()[1:3]))
                for line in log.read_text().splitlines() if line.startswith("True")]
    assert len(compiles) == len(_fast.MODULES)
    most_at_once = max(sum(1 for start, end in compiles if start <= moment < end)
                       for moment, _ in compiles)
    assert most_at_once == min(len(_fast.MODULES), os.cpu_count() or 1)
