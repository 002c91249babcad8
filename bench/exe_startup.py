"""Startup time and size of the standalone executable (build it first: `make exe`).

    python -m bench.exe_startup [--runs 15]

Runs `dist/cancorder --help` (and `--version`, which also loads the compiled core) one time to
warm the page cache, then RUNS times, and prints the median, fastest and slowest wall-clock
time of each, the size of dist/cancorder, and for comparison `python -m cancorder --help` from
the development venv (the interpreter that runs this script).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
from bench import _load  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXE = os.path.join(ROOT, "dist", "cancorder")


def timings(command, runs):
    def once():
        start = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)
        return time.perf_counter() - start

    once()  # warm-up: the first start after a build also reads the file from disk
    return [once() for _ in range(runs)]


def report(label, values):
    print(f"{label:<36} median {statistics.median(values) * 1000:6.0f} ms   "
          f"min {min(values) * 1000:5.0f} ms   max {max(values) * 1000:5.0f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    _load.add_arguments(parser)
    args = parser.parse_args()
    if not os.path.exists(EXE):
        sys.exit(f"{EXE} does not exist: run `make exe` first")
    watch = _load.start("bench.exe_startup", args)
    print(f"dist/cancorder: {os.path.getsize(EXE) / 1e6:.1f} MB; {args.runs} runs each")
    report("dist/cancorder --help", timings([EXE, "--help"], args.runs))
    report("dist/cancorder --version", timings([EXE, "--version"], args.runs))
    report("python -m cancorder --help (venv)",
           timings([sys.executable, "-m", "cancorder", "--help"], args.runs))
    _load.finish(watch)


if __name__ == "__main__":
    main()
