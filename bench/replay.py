"""How exactly and how fast `cancorder replay` plays a log file.

    .venv/bin/python -m bench.replay [--seconds 5] [--frames 1000000]

- accuracy: a candump .log of 10,000 frames/s (100 us apart) played at
  speed 1. (a) at the source: ReplaySource in this process, the time each record is handed
  over minus its due time on the re-based timeline ("send time"), for every frame; (b) at a TCP
  client of a real `cancorder replay`: the arrival spacing minus the recorded spacing (each
  frame's arrival minus its timestamp, less the median of that; adds the broadcaster's 1 ms
  coalescing and the client's own scheduling). p50/p99/max of |deviation|.
- throughput: `cancorder replay big.log --speed max` of ``--frames`` frames to one client
  (bench._clients), frames/s from the first byte to the last.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import cancorder._fast as fast  # noqa: E402
from cancorder._fast import logfile, wire  # noqa: E402
from cancorder.formats import candump_line  # noqa: E402
from bench import _load  # noqa: E402


def write_log(path, count, spacing_us=100):
    start = 1_700_000_000_000_000
    with open(path, "w") as file:
        lines = []
        for i in range(count):
            t = start + i * spacing_us
            lines.append(candump_line((t, 0x100 + i % 64, 0, (i & 0xFFFFFFFF).to_bytes(
                8, "big")), "can0"))
        file.write("\n".join(lines) + "\n")


def percentiles(values):
    values = sorted(abs(v) for v in values)
    return {"p50_ms": values[len(values) // 2] * 1e3,
            "p99_ms": values[int(len(values) * 0.99)] * 1e3, "max_ms": values[-1] * 1e3}


def source_accuracy(path):
    from cancorder.sources.replay import ReplaySource

    source = ReplaySource([path], wait_for_client=False)
    source.open()
    deviations = []
    while True:
        records = source.read(0.1)
        if records is None:
            break
        if not records:
            continue
        now_us = source._now_us()
        pos = 0
        while pos < len(records):
            due = logfile.first_stamp(records[pos:pos + 14])
            deviations.append((now_us - due) / 1e6)
            pos += 14 + records[pos + 13]
    return len(deviations), percentiles(deviations)


def client_accuracy(path, count):
    server = subprocess.Popen([sys.executable, "-m", "cancorder", "replay", path,
                               "--no-zeroconf", "-p", "47123"], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True)
    try:
        for line in server.stderr:
            if "on TCP" in line:
                break
        import socket

        sock = socket.create_connection(("127.0.0.1", 47123))
        decoder = wire.StreamDecoder()
        arrivals = []
        while len(arrivals) < count:
            data = sock.recv(1 << 20)
            now = time.monotonic()
            if not data:
                break
            arrivals.extend((now, frame[0]) for frame in decoder.feed(data))
        sock.close()
    finally:
        server.terminate()
        server.wait(10)
    # against the typical delay (median of arrival - timestamp): the first frame's own
    # delay is no better a reference than any other
    delays = sorted(t - s / 1e6 for t, s in arrivals)
    typical = delays[len(delays) // 2]
    return len(arrivals), percentiles([(t - s / 1e6) - typical for t, s in arrivals])


def throughput(path, count):
    server = subprocess.Popen([sys.executable, "-m", "cancorder", "replay", path, "--speed",
                               "max", "--no-zeroconf", "-p", "47124"], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True)
    try:
        for line in server.stderr:
            if "on TCP" in line:
                break
        done = subprocess.run([sys.executable, "-m", "bench._clients", "47124", "1",
                               str(count * 22)], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        result = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(10)
    return count / result["elapsed"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--frames", type=int, default=1_000_000)
    _load.add_arguments(parser)
    args = parser.parse_args()
    watch = _load.start("bench.replay", args)
    print(f"core: {fast.IMPLEMENTATION}")
    with tempfile.TemporaryDirectory() as folder:
        paced = os.path.join(folder, "paced.log")
        count = int(args.seconds * 10_000)
        write_log(paced, count)
        frames, stats = source_accuracy(paced)
        print(f"accuracy at 10,000 frames/s, {frames:,} frames, at the source (hand-over "
              "minus due time): " + ", ".join(f"{k} {v:.3f}" for k, v in stats.items()))
        frames, stats = client_accuracy(paced, count)
        print(f"accuracy at 10,000 frames/s, {frames:,} frames, at a TCP client (arrival "
              "minus timestamp, less its median): "
              + ", ".join(f"{k} {v:.3f}" for k, v in stats.items()))
        big = os.path.join(folder, "big.log")
        write_log(big, args.frames, spacing_us=1)
        rate = throughput(big, args.frames)
        print(f"--speed max, {args.frames:,} frames of a .log to one client: {rate:,.0f} "
              "frames/s")
    _load.finish(watch)


if __name__ == "__main__":
    main()
