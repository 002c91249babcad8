"""The text codecs of the core, alone: frames (or commands) per second, compiled and pure.

    .venv/bin/python -m bench.text_codecs

socketcand's FrameEncoder and the candump CandumpEncoder on 1,000 records (half 11-bit, half
29-bit, 8 bytes each), the SLCAN parser on 1,000 lines (T and t, 8 bytes) and socketcand's
CommandReader on 1,000 ``< send ... >`` commands. They share the hex helpers of
cancorder/_fast/wire.py (write_hex, write_hex_digits, hex_number): compiled, a call from one
module into another, which this measures. Medians of 15 runs (compiled, 50 batches a run) and
5 (pure, one batch).
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cancorder._fast as fast  # noqa: E402
from cancorder._fast.wire import pack_frame  # noqa: E402
from bench import _load  # noqa: E402

RECORDS = b"".join(pack_frame(1_700_000_000_000_000 + i * 37,
                              (0x18DA0000 + i) if i & 1 else (i & 0x7FF), i & 1,
                              (i * 2654435761 & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big"))
                   for i in range(1000))
SLCAN = b"".join(b"T%08X8%016X\r" % (0x18DA0000 + i, i * 7919) + b"t7E08%016X\r" % i
                 for i in range(500))
COMMANDS = b"".join(b"< send %x 8 1 2 3 4 5 6 7 ff >" % (0x100 + (i & 0x3FF))
                    for i in range(1000))


def rate(fn, count, reps):
    runs = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        runs.append(count / (time.perf_counter() - start))
    return statistics.median(runs)


def measure(kind, reps, loops):
    core = fast.variant(kind)
    socketcand = core.socketcand.FrameEncoder()
    candump = core.logfile.CandumpEncoder()

    def encode_socketcand():
        for _ in range(loops):
            socketcand.encode(RECORDS)

    def encode_candump():
        for _ in range(loops):
            candump.encode(RECORDS)

    def parse_slcan():
        for _ in range(loops):
            core.slcan.SlcanParser(adapter_time=False).feed(SLCAN, 1)

    def read_commands():
        for _ in range(loops):
            core.socketcand.CommandReader().feed(COMMANDS)

    return {name: rate(fn, 1000 * loops, reps) for name, fn in (
        ("socketcand FrameEncoder", encode_socketcand), ("candump CandumpEncoder", encode_candump),
        ("SlcanParser", parse_slcan), ("socketcand CommandReader", read_commands))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _load.add_arguments(parser)
    watch = _load.start("bench.text_codecs", parser.parse_args())
    print(f"Python {sys.version.split()[0]}")
    results = {"compiled": measure("compiled", 15, 50), "pure": measure("pure", 5, 1)}
    for name in results["compiled"]:
        print(f"{name:26s} compiled {results['compiled'][name]:>14,.0f}/s   "
              f"pure {results['pure'][name]:>10,.0f}/s")
    _load.finish(watch, results)


if __name__ == "__main__":
    main()
