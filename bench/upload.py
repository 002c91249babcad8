"""Uploading recordings to a local S3 API (moto's server, started here on a loopback port).

    python -m bench.upload [--smoke]

Reported, in one run:

- `cancorder upload DIR URL` of a folder of candump files (FILES files of FILE_MB MB each, and
  one of 40 MB: multipart): MB/s from the command's start to its end, and its CPU-seconds per
  uploaded MB (the process's utime + stime over the whole run, start-up included);
- the reference: boto3's own managed transfer (`upload_file`, what `aws s3 cp` does) of the
  same files, in this process: MB/s and CPU-seconds per MB (this process's CPU over the
  transfer);
- recording + upload, what users run: `cancorder serve -i slcan` fed 30,000 frames/s (1 ms
  bursts) by the C SLCAN emulator of bench.serve, one ECUconnect client, for SECONDS s: the
  whole serve process's CPU as a share of one core, serving alone, recording 1 MB `.log`
  files (`--record --rotate-size 1M`), and recording them with `--upload` (the issue asks
  recording + upload under 10 % of a core); every file checked to be in the bucket.

moto's server takes CPU of its own (not counted: it is another process); on a shared machine
single runs vary, so each figure is the median of RUNS runs.
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import _load  # noqa: E402
from bench.serve import SUBJECTS, Subject, build_c, process_cpu, run_stream  # noqa: E402
from tests.helpers import cancorder_env  # noqa: E402
from tests.upload.s3 import MotoServer, s3_env  # noqa: E402
from tests.upload.test_upload import candump_file  # noqa: E402

SMOKE = "--smoke" in sys.argv
FILES, FILE_MB = (2, 1) if SMOKE else (20, 4)
BIG_FRAMES = 30_000 if SMOKE else 900_000  # about 40 MB of candump text
RATE = 30_000
SECONDS = 3 if SMOKE else 20
RUNS = 1 if SMOKE else 3


def make_folder(folder):
    os.makedirs(folder, exist_ok=True)
    frames = FILE_MB * (1 << 20) // 46
    for n in range(FILES):
        candump_file(os.path.join(folder, f"r-{n + 1}.log"), frames, n * frames)
    candump_file(os.path.join(folder, "big-1.log"), BIG_FRAMES)
    return sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder))


def self_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_command(server, folder, prefix):
    env = cancorder_env(**s3_env())
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "cancorder", "upload", folder,
                             f"s3://bench/{prefix}", "--upload-endpoint", server.endpoint],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    cpu = 0.0
    while proc.poll() is None:  # the CPU of the process read while it is there
        try:
            cpu = process_cpu(proc.pid)
        except OSError:
            break
        time.sleep(0.05)
    err = proc.stderr.read()
    if proc.wait() != 0:
        raise SystemExit(f"cancorder upload failed: {err}")
    return time.monotonic() - start, cpu


def run_boto3(server, folder, prefix):
    client = server.client()
    names = sorted(os.listdir(folder))
    before, start = self_cpu(), time.monotonic()
    for name in names:
        if name.startswith("."):
            continue
        client.upload_file(os.path.join(folder, name), "bench", f"{prefix}/{name}")
    return time.monotonic() - start, self_cpu() - before


def serve_cpu(server, tmp, binaries, name, extra):
    """serve's CPU (% of one core) at RATE frames/s for SECONDS s with ``extra`` flags; with
    --upload, every recorded file is checked to be in the bucket once serve stopped."""
    SUBJECTS[name] = (extra, s3_env())
    subject = Subject(name, binaries)
    try:
        result = run_stream(subject, binaries, "burst", RATE, RATE * SECONDS, 1)
    finally:
        subject.close()  # a clean stop: the recorder closes its file, the uploader sends it
    if not result["every_frame"]:
        raise SystemExit(f"{name}: the client missed frames")
    return result["cpu_percent"] / 100


def record(server, tmp, binaries, mode):
    """One run of ``mode``: "serve" (no recording), "record", "record+upload"."""
    folder = os.path.join(tmp, f"rec-{mode}-{time.monotonic_ns()}")
    extra = []
    if mode != "serve":
        extra = ["--record", os.path.join(folder, "r-{n}.log"), "--rotate-size", "1M"]
    if mode == "record+upload":
        extra += ["--upload", f"s3://bench/{os.path.basename(folder)}", "--upload-endpoint",
                  server.endpoint]
    cpu = serve_cpu(server, tmp, binaries, f"serve {mode}", extra)
    if mode == "record+upload":
        files = [n for n in os.listdir(folder) if n.endswith(".log")]
        keys = server.client().list_objects_v2(Bucket="bench",
                                               Prefix=os.path.basename(folder) + "/")
        if keys.get("KeyCount", 0) != len(files):
            raise SystemExit(f"{len(files)} files recorded, {keys.get('KeyCount')} uploaded")
    return cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few MB: a check, not figures")
    _load.add_arguments(parser)
    args = parser.parse_args()
    watch = _load.start("bench.upload", args)
    tmp = tempfile.mkdtemp(prefix="bench-upload-")
    server = MotoServer()
    try:
        server.client().create_bucket(Bucket="bench")
        folder = os.path.join(tmp, "files")
        size = make_folder(folder)
        mb = size / 1e6
        command, boto = [], []
        for run in range(RUNS):
            for mark in [n for n in os.listdir(folder) if n.startswith(".")]:
                os.remove(os.path.join(folder, mark))  # sent again: the same work each run
            seconds, cpu = run_command(server, folder, f"cmd{run}")
            command.append((mb / seconds, cpu / mb))
            seconds, cpu = run_boto3(server, folder, f"boto{run}")
            boto.append((mb / seconds, cpu / mb))
        binaries = build_c(tmp)
        modes = ("serve", "record", "record+upload")
        shares = {mode: [] for mode in modes}
        for _ in range(RUNS):  # interleaved: the machine's drift falls on all three alike
            for mode in modes:
                shares[mode].append(record(server, tmp, binaries, mode))
        alone, plain, uploading = (shares[mode] for mode in modes)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    def median(rows, i):
        return statistics.median(row[i] for row in rows)

    print(f"{FILES} files of {FILE_MB} MB and one of {BIG_FRAMES * 46 / 1e6:.0f} MB "
          f"({mb:.0f} MB) to moto on 127.0.0.1, median of {RUNS}:")
    print("| what | MB/s | CPU-s per MB |")
    print("|---|---:|---:|")
    print(f"| cancorder upload (start-up included) | {median(command, 0):.1f} | "
          f"{median(command, 1):.4f} |")
    print(f"| boto3 upload_file (aws s3 cp's transfer) | {median(boto, 0):.1f} | "
          f"{median(boto, 1):.4f} |")
    print(f"serve -i slcan at {RATE:,} frames/s (1 ms bursts) for {SECONDS} s, one client, 1 MB "
          f".log files, CPU share of one core, median of {RUNS}: serving "
          f"{statistics.median(alone):.1%}, recording {statistics.median(plain):.1%}, recording "
          f"+ upload {statistics.median(uploading):.1%} (the upload adds "
          f"{statistics.median(uploading) - statistics.median(plain):.1%})")
    _load.finish(watch, None if args.smoke else {
        "upload_mb_per_s": median(command, 0), "upload_cpu_s_per_mb": median(command, 1),
        "boto3_mb_per_s": median(boto, 0), "boto3_cpu_s_per_mb": median(boto, 1),
        "serving_cpu": statistics.median(alone), "recording_cpu": statistics.median(plain),
        "recording_and_upload_cpu": statistics.median(uploading)})


if __name__ == "__main__":
    main()
