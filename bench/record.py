"""What recording costs: CPU per frame of the recorder's writers, as a share of one core at
30,000 frames/s (a saturated CAN FD bus), candump .log/.log.gz (compiled, from the records)
beside python-can's .blf and .asc writers, measured in the same run.

    .venv/bin/python -m bench.record [--frames 300000] [--batch 100] [--runs 3]

Each run writes ``--frames`` records (a bus-like mix: 11-bit ids with 8 bytes, every 8th frame
29-bit) in batches of ``--batch`` (what a source hands over in ~3 ms at 30,000 frames/s)
through the recorder's RotatingLog into a temporary folder, flushes and closes; the figure is
the process CPU time (time.process_time) of that, median of ``--runs``.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import cancorder._fast as fast  # noqa: E402
from cancorder._fast import wire  # noqa: E402
from cancorder.logfiles.rotation import RecordOptions, RotatingLog  # noqa: E402
from bench import _load  # noqa: E402

RATE = 30_000


def batches(count, size, start_us):
    out = []
    for first in range(0, count, size):
        records = []
        for i in range(first, min(first + size, count)):
            if i % 8 == 7:
                records.append(wire.pack_frame(start_us + i * 33, 0x18DA0000 | (i & 0xFFFF),
                                               wire.FLAG_EXT,
                                               bytes((i + k) & 0xFF for k in range(8))))
            else:
                records.append(wire.pack_frame(start_us + i * 33, 0x100 + i % 64, 0,
                                               bytes((i * 7 + k) & 0xFF for k in range(8))))
        out.append(b"".join(records))
    return out


class _Quiet:
    def info(self, *args, **kwargs):
        pass

    warning = error = info


def cpu_seconds(extension, data, count, folder):
    clock = [time.time()]
    log = RotatingLog(RecordOptions(os.path.join(folder, f"bench-{{n}}{extension}")), {},
                      _Quiet(), clock=lambda: clock[0])
    per_batch = 1.0 * len(data[0]) / 22 / RATE  # bus time a batch stands for
    started = time.process_time()
    for records in data:
        clock[0] += per_batch
        log.write(records)
        log.tick()
    log.close()
    spent = time.process_time() - started
    assert log.frames == count and log.lost == 0
    for path in log.files:
        os.remove(path)
    return spent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    _load.add_arguments(parser)
    args = parser.parse_args()
    watch = _load.start("bench.record", args)
    data = batches(args.frames, args.batch, int(time.time() * 1e6))
    print(f"recording {args.frames:,} frames in batches of {args.batch} "
          f"(core: {fast.IMPLEMENTATION}); CPU as a share of one core at {RATE:,} frames/s, "
          f"median of {args.runs}")
    print(f"{'format':<10} {'writer':<26} {'us/frame':>9} {'core @30k/s':>12} {'vs .log':>8}")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for extension, writer in ((".log", "cancorder, compiled"),
                                  (".log.gz", "cancorder, compiled + zlib"),
                                  (".blf", "cancorder, compiled + zlib"),
                                  (".asc", "python-can ASCWriter")):
            spent = statistics.median(cpu_seconds(extension, data, args.frames, folder)
                                      for _ in range(args.runs))
            results[extension] = per_frame = spent / args.frames
            print(f"{extension:<10} {writer:<26} {per_frame * 1e6:>9.2f} "
                  f"{per_frame * RATE * 100:>11.1f}% {per_frame / results['.log']:>7.1f}x")
    _load.finish(watch, {"seconds_per_frame": results})


if __name__ == "__main__":
    main()
