"""Bench helper process: one emulated SLCAN adapter that writes numbered frames on cue.

    python -m bench._slcan_blast --count N --rate R

Prints its TCP port, waits for the channel to be opened and for a line on stdin ("go": the
benchmark's clients are ready), then writes N pre-built lines (29-bit id, 8-byte payload =
the frame number), paced at R lines/s in 200 writes a second (R = 0: as fast as the socket
takes them). Says on stderr when done; keeps the connection until stdin closes.
(bench.mqtt, bench.socketcand; bench.serve and bench.multibus have emulators of their own.)
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.emulators.slcan_adapter import SlcanEmulator, build_lines  # noqa: E402


def blast(count, rate):
    lines = build_lines(count)
    emu = SlcanEmulator()
    print(emu.port, flush=True)
    emu.wait_open(60)
    sys.stdin.readline()
    start = time.monotonic()
    step = 1000 if rate == 0 else max(1, rate // 200)
    for first in range(0, count, step):
        emu.send_lines(b"".join(lines[first:first + step]))
        if rate:
            delay = start + (first + step) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    print(f"sent {count} in {time.monotonic() - start:.3f} s", file=sys.stderr, flush=True)
    sys.stdin.read()
    emu.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100000)
    parser.add_argument("--rate", type=int, default=0, help="lines/s (0: as fast as possible)")
    args = parser.parse_args()
    blast(args.count, args.rate)


if __name__ == "__main__":
    main()
