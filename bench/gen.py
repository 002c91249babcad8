"""Benchmarks of the traffic generator (cancorder gen): its maximum rate into each output.

    .venv/bin/python -m bench.gen              (make bench)
    .venv/bin/python -m bench.gen --quick      (fewer frames: a smoke run)

(a) the frame maker alone, compiled and pure (CANCORDER_PURE=1, in a process of its own):
    frames/s made as wire records and as SLCAN lines (quality-test payloads, median of 3);
(b) served: `cancorder gen -r 0 -n N --no-zeroconf` (as fast as the client takes it) and one
    TCP client reading 1 MiB at a time: frames/s from its first frame to its last;
(c) the SLCAN pseudo-terminal: `cancorder gen --pty -r 0 -n N` and a reader that opens the
    channel (O) and counts the frame lines: frames/s; beside the C SLCAN emulator
    (bench/c/slcan_emu.c, "unpaced": 64 KiB writes) read the same way (it writes to TCP: it has
    no pty mode, so that is the nearest C figure);
(d) onto a bus, where the kernel has vcan (inside a private network namespace, root): `gen -i
    socketcan -c vcan0 -r 0 -n N` beside can-utils' `cangen vcan0 -g 0 -n N` (the same frame
    count, 8 bytes each); otherwise it says why it is left out.
Every figure is from this machine as it is: run it on a quiet one.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tty

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import _load  # noqa: E402
C_SOURCES = os.path.join(ROOT, "bench", "c")
QUALITY = ["--data-mode", "quality-test", "--id", "7E0"]


def env(**extra):
    out = dict(os.environ, PYTHONPATH=ROOT, **extra)
    out.pop("CANCORDER_PURE", None)
    out.update(extra)
    return out


MAKER = """
import statistics, sys, time
from cancorder._fast import IMPLEMENTATION
from cancorder._fast.traffic import FrameMaker
n = int(sys.argv[1])
millis = list(range(n)); stamps = [1_700_000_000_000_000 + k for k in range(n)]
out = {"core": IMPLEMENTATION}
for kind in ("records", "slcan_lines"):
    times = []
    for _ in range(3):
        maker = FrameMaker(1, data_mode="quality-test", exact_id=0x7E0)
        started = time.perf_counter()
        if kind == "records":
            maker.records(n, stamps, millis)
        else:
            maker.slcan_lines(n, millis)
        times.append(time.perf_counter() - started)
    out[kind + "_frames_per_s"] = round(n / statistics.median(times))
print(out)
"""


def bench_maker(count):
    results = {}
    for name, extra in (("compiled", {}), ("pure", {"CANCORDER_PURE": "1"})):
        done = subprocess.run([sys.executable, "-c", MAKER, str(count)], env=env(**extra),
                              capture_output=True, text=True, check=True)
        results[name] = eval(done.stdout.strip(), {})  # a dict literal this script printed
    return results


def start(args, **extra):
    return subprocess.Popen([sys.executable, "-m", "cancorder", *args], env=env(**extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_line(proc, word, stream="stderr"):
    pipe = getattr(proc, stream)
    while True:
        line = pipe.readline()
        if not line:
            raise RuntimeError(f"the process ended before saying {word!r}")
        if word in line:
            return line


def bench_served(count):
    gen = start(["gen", "--no-zeroconf", "--bind", "127.0.0.1", "-r", "0", "-n", str(count),
                 *QUALITY])
    try:
        line = wait_line(gen, "on TCP")
        port = int(line.rsplit(":", 1)[1].split()[0])
        sock = socket.create_connection(("127.0.0.1", port))
        received = 0
        first = None
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            if first is None:
                first = time.perf_counter()
            received += len(chunk)
        seconds = time.perf_counter() - first
        sock.close()
        gen.wait(30)
    finally:
        gen.kill()
        gen.wait()
    frames = received // 22  # 14-byte header + 8 bytes
    return {"frames": frames, "seconds": round(seconds, 3),
            "frames_per_s": round(frames / seconds)}


def count_lines(read, count, first_cr_is_reply=True):
    """Read until ``count`` frame lines (CR-ended, not the CR replies) came; seconds taken
    from the first frame byte."""
    seen = 0
    started = None
    skip = 1 if first_cr_is_reply else 0  # the CR answering O
    while seen < count + skip:
        chunk = read()
        if not chunk:
            break
        if started is None:
            started = time.perf_counter()
        seen += chunk.count(b"\r")
    return seen - skip, time.perf_counter() - started


def bench_pty(count):
    gen = start(["gen", "--pty", "-r", "0", "-n", str(count), *QUALITY])
    try:
        path = gen.stdout.readline().strip()
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd)
        os.write(fd, b"O\r")
        frames, seconds = count_lines(lambda: os.read(fd, 1 << 16), count)
        os.close(fd)
    finally:
        gen.terminate()
        gen.wait(10)
    return {"frames": frames, "seconds": round(seconds, 3),
            "frames_per_s": round(frames / seconds)}


def bench_c_emulator(count, folder):
    binary = os.path.join(folder, "slcan_emu")
    subprocess.run(["cc", "-O2", "-o", binary, os.path.join(C_SOURCES, "slcan_emu.c")],
                   check=True)
    emu = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(emu.stdout.readline())
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"O\r")
        assert emu.stdout.readline().strip() == "open"
        emu.stdin.write(f"go unpaced 0 {count}\n")
        emu.stdin.flush()
        frames, seconds = count_lines(lambda: sock.recv(1 << 16), count)
        sock.close()
    finally:
        emu.stdin.close()
        emu.wait(10)
    return {"frames": frames, "seconds": round(seconds, 3),
            "frames_per_s": round(frames / seconds)}


BUS = """
set -e
ip link add dev vcan0 type vcan
ip link set vcan0 up
start=$(date +%s.%N); cangen vcan0 -g 0 -n {count} -I 7E0 -L 8 -D i; end=$(date +%s.%N)
echo "cangen $start $end"
start=$(date +%s.%N)
{python} -m cancorder gen -i socketcan -c vcan0 -r 0 -n {count} {quality} 2>/dev/null
end=$(date +%s.%N)
echo "gen $start $end"
"""


def bench_bus(count):
    if shutil.which("cangen") is None:
        return {"left out": "can-utils' cangen is not installed"}
    script = BUS.format(count=count, python=sys.executable, quality=" ".join(QUALITY))
    done = subprocess.run(["unshare", "-n", "sh", "-c", script], env=env(),
                          capture_output=True, text=True)
    if done.returncode != 0:
        return {"left out": f"no vcan here ({done.stderr.strip()[-200:]})"}
    results = {}
    for line in done.stdout.split("\n"):
        parts = line.split()
        if len(parts) == 3:
            seconds = float(parts[2]) - float(parts[1])
            results[parts[0]] = {"frames": count, "seconds": round(seconds, 3),
                                 "frames_per_s": round(count / seconds)}
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    _load.add_arguments(parser)
    args = parser.parse_args()
    watch = _load.start("bench.gen", args)
    count = 20_000 if args.quick else 1_000_000
    results = {"frames": count, "maker": bench_maker(count)}
    results["served"] = bench_served(count)
    results["pty"] = bench_pty(count)
    with tempfile.TemporaryDirectory() as folder:
        results["C slcan_emu (TCP)"] = bench_c_emulator(count, folder)
    results["bus"] = bench_bus(count)
    print(json.dumps(results, indent=2))
    _load.finish(watch, results)


if __name__ == "__main__":
    main()
