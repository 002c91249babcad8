"""Benchmarks of the UDS simulator (cancorder mock-uds).

    python -m bench.mock_uds            (make bench)

(a) generation: one full cycle (OBD polling + a reprogramming session with 300 blocks of 128
    bytes, error rate 0.05) produced on the virtual clock, classic 11-bit, 29-bit and CAN FD:
    seconds per cycle and frames/s (median of 5 runs);
(b) --output: the same cycle written with each python-can writer (median of 3 runs), and the
    whole command `cancorder mock-uds --output x.log` as a process (start-up included);
(c) serving in real time: `cancorder mock-uds --no-loop --no-zeroconf` and one client for a
    whole cycle: CPU time of the process from the first frame to the end (percent of one core).
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cancorder.uds import FRAME  # noqa: E402
from cancorder.logfiles.rotation import RecordOptions  # noqa: E402
from cancorder.uds.simulation import SimulationConfig, timeline, write_log  # noqa: E402
from tests.helpers import CancorderProcess, StreamClient  # noqa: E402
from bench import _load  # noqa: E402

SEED = 1000
VARIANTS = {
    "classic 11-bit": {},
    "29-bit": dict(extended=True, tester_id=0x18DA10F1, ecu_id=0x18DAF110),
    "CAN FD": dict(fd=True),
}


def _median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def bench_generation():
    results = {}
    for name, settings in VARIANTS.items():
        config = SimulationConfig(seed=SEED, loop=False, **settings)

        def generate():
            entries = list(timeline(config))
            return sum(1 for entry in entries if entry[1] == FRAME), entries[-1][0] / 1e6

        seconds, (frames, traffic) = _median_time(generate, 5)
        results[name] = {"seconds": seconds, "frames": frames, "traffic_s": traffic,
                         "frames_per_s": frames / seconds}
    return results


def bench_output(folder):
    results = {}
    config = SimulationConfig(seed=SEED, loop=False)
    for extension in (".log", ".log.gz", ".asc", ".blf", ".csv", ".trc"):
        path = os.path.join(folder, "cycle" + extension)

        def write():
            if os.path.exists(path):  # the recorder never overwrites: a fresh file each run
                os.remove(path)
            return write_log(config, RecordOptions(path, flag="--output"))

        seconds, (frames, _, _, _) = _median_time(write, 3)
        results[extension] = {"seconds": seconds, "frames": frames,
                              "bytes": os.path.getsize(path)}
    path = os.path.join(folder, "command.log")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cancorder", "mock-uds", "--seed", str(SEED),
                    "--output", path], check=True, cwd=ROOT, capture_output=True)
    results["command .log"] = {"seconds": time.perf_counter() - started}
    return results


def _process_cpu(pid):
    """utime + stime of a running process, in seconds (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_serving():
    """A whole cycle served in real time to one client; CPU from its first frame to the end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server = CancorderProcess(["mock-uds", "--no-loop", "--no-zeroconf", "--seed", str(SEED)])
    try:
        client = StreamClient(server.port())
        client.wait_frames(1, timeout=30)
        started = time.monotonic()
        cpu_at_start = _process_cpu(server.proc.pid)
        client.closed.wait(300)
        wall = time.monotonic() - started
        code = server.proc.wait(30)
    finally:
        server.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cpu = total - cpu_at_start
    return {"exit": code, "frames": len(client.frames), "wall_s": wall, "process_cpu_s": cpu,
            "cpu_percent_of_a_core": cpu / wall * 100}


def main():
    import argparse

    import cancorder._fast as fast

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _load.add_arguments(parser)
    watch = _load.start("bench.mock_uds", parser.parse_args())

    print(f"cancorder mock-uds benchmark, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores, core {fast.IMPLEMENTATION}")
    generation = bench_generation()
    print("(a) one cycle generated on the virtual clock (median of 5)")
    for name, r in generation.items():
        print(f"    {name:16s} {r['frames']:>6,} frames ({r['traffic_s']:.1f} s of traffic) in "
              f"{r['seconds'] * 1000:6.1f} ms = {r['frames_per_s']:>9,.0f} frames/s")
    with tempfile.TemporaryDirectory() as folder:
        output = bench_output(folder)
    print("(b) one cycle written with --output (median of 3)")
    for name, r in output.items():
        size = f", {r['bytes']:>9,} bytes" if "bytes" in r else " (process start-up included)"
        print(f"    {name:16s} {r['seconds'] * 1000:7.1f} ms{size}")
    serving = bench_serving()
    print(f"(c) one cycle served in real time to one client: {serving['frames']:,} frames in "
          f"{serving['wall_s']:.1f} s, process CPU {serving['process_cpu_s']:.2f} s = "
          f"{serving['cpu_percent_of_a_core']:.1f} % of a core")
    figures = {"generation": generation, "output": output, "serving": serving}
    print(json.dumps(figures))
    _load.finish(watch, figures)


if __name__ == "__main__":
    main()
