"""How fast `cancorder dump --isotp auto` and `--j1939` reassemble, beside `-f candump` on the
same traffic in the same run.

    .venv/bin/python -m bench.reassembly                       # every case (figures for docs)
    .venv/bin/python -m bench.reassembly --frames 3000 --seconds 0.2 --cases candump,isotp-json

Two kinds of traffic, each a realistic worst case for its reassembler:
- UDS: mock-uds's own frames (a reprogramming session: ISO-TP multi-frame TransferData with
  flow control, OBD polling, negative responses), re-stamped 1 us apart, repeated;
- J1939: BAM transfers of 20 bytes (4 frames each) from 8 sources, beside single-frame PGNs.
Per case, like bench/dump_rate.py (whose logger socket, dump subprocess and pacing it reuses):
the max rate (a logger in this process sends as fast as dump takes), and 30,000 frames/s
paced for --seconds in 1 ms batches (the lag after the last batch, dump's CPU share), plus the
Reassembler alone in this process (frames/s of ``feed``).
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import _load  # noqa: E402
from bench.dump_rate import Dump, listener, paced  # noqa: E402
from cancorder._fast import wire  # noqa: E402


def uds_frames():
    """One mock-uds cycle's frames: (can_id, flags, data)."""
    from cancorder.uds import FRAME
    from cancorder.uds.simulation import SimulationConfig, timeline

    config = SimulationConfig(seed=1, blocks=300, loop=False)
    return [value for _, kind, value in timeline(config) if kind == FRAME]


def j1939_frames():
    """BAM transfers (TP.CM + 3 TP.DT, 20 bytes) from 8 sources, and EEC1 singles between."""
    frames = []
    for round_ in range(64):
        for source in range(8):
            cm = (7 << 26) | (0xEC << 16) | (0xFF << 8) | source
            dt = (7 << 26) | (0xEB << 16) | (0xFF << 8) | source
            frames.append((cm, wire.FLAG_EXT, bytes([0x20, 20, 0, 3, 0xFF, 0xE3, 0xFE, 0x00])))
            for packet in range(1, 4):
                frames.append((dt, wire.FLAG_EXT, bytes([packet]) +
                               bytes((round_ + packet * 7 + k) & 0xFF for k in range(7))))
            frames.append((0x0CF00400 | source, wire.FLAG_EXT, bytes([round_] * 8)))
    return frames


def make_records(pattern, count, start_us, first=0):
    """``count`` records of the pattern from its ``first`` frame on, repeated, 1 us apart."""
    pack = wire.pack_frame
    n = len(pattern)
    return b"".join([pack(start_us + i, *pattern[(first + i) % n]) for i in range(count)])


def run_max(pattern, fmt, frames, extra):
    sock, port = listener()
    records = make_records(pattern, frames, int(time.time() * 1e6))
    dump = Dump(port, fmt, frames, "pipe", extra)
    conn, _ = sock.accept()
    start = time.perf_counter()
    conn.sendall(records)
    done, cpu = dump.wait()
    conn.close()
    sock.close()
    return frames / (done - start)


def run_paced(pattern, fmt, rate, seconds, extra):
    batch_every = 0.001
    per_batch = int(rate * batch_every)
    batches = int(seconds / batch_every)
    total = per_batch * batches
    sock, port = listener()
    dump = Dump(port, fmt, total, "pipe", extra)
    conn, _ = sock.accept()
    now_us = int(time.time() * 1e6)
    payload = [make_records(pattern, per_batch, now_us + b * 1000, b * per_batch)
               for b in range(batches)]
    start = time.perf_counter()
    for records in paced(payload, batch_every):
        conn.sendall(records)
    last = time.perf_counter()
    done, cpu = dump.wait()
    conn.close()
    sock.close()
    return total / (last - start), done - last, cpu / (done - start)


def feed_rate(pattern, frames, **settings):
    from cancorder.reassembly import Reassembler

    n = len(pattern)
    timed = [(i, *pattern[i % n]) for i in range(frames)]
    reassembler = Reassembler(**settings)
    start = time.perf_counter()
    for index in range(0, frames, 1000):
        reassembler.feed(timed[index:index + 1000])
    return frames / (time.perf_counter() - start)


CASES = {  # name: (traffic, format, dump flags, Reassembler settings for the in-process rate)
    "candump": ("uds", "candump", [], None),
    "isotp-pretty": ("uds", "pretty", ["--isotp", "auto"], {"isotp_auto": True}),
    "isotp-json": ("uds", "json", ["--isotp", "auto"], {"isotp_auto": True}),
    "j1939-candump": ("j1939", "candump", [], None),
    "j1939-pretty": ("j1939", "pretty", ["--j1939"], {"j1939": True}),
    "j1939-json": ("j1939", "json", ["--j1939"], {"j1939": True}),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300_000, help="frames for the max rate")
    parser.add_argument("--rate", type=int, default=30_000, help="frames/s for the paced run")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the paced run")
    parser.add_argument("--cases", default=",".join(CASES),
                        help="comma-separated: " + ", ".join(CASES))
    _load.add_arguments(parser)
    args = parser.parse_args()
    from cancorder import _fast

    watch = _load.start("bench.reassembly", args)
    figures = {}
    traffic = {"uds": uds_frames(), "j1939": j1939_frames()}
    print(f"cancorder dump reassembly, core {_fast.IMPLEMENTATION}, Python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs; max over {args.frames:,} frames, "
          f"paced {args.rate:,} frames/s for {args.seconds:g} s")
    print(f"{'case':<15} {'max frames/s':>13} {'paced frames/s':>15} {'lag s':>6} "
          f"{'CPU at pace':>11} {'feed() frames/s':>16}")
    for name in args.cases.split(","):
        kind, fmt, extra, settings = CASES[name]
        pattern = traffic[kind]
        top = run_max(pattern, fmt, args.frames, extra)
        rate, lag, cpu = run_paced(pattern, fmt, args.rate, args.seconds, extra)
        alone = f"{feed_rate(pattern, args.frames, **settings):,.0f}" if settings else "-"
        print(f"{name:<15} {top:>13,.0f} {rate:>15,.0f} {lag:>6.2f} {cpu:>10.0%} "
              f"{alone:>16}", flush=True)
        figures[name] = {"max_frames_per_s": top, "paced_frames_per_s": rate, "lag_s": lag,
                         "cpu_at_pace": cpu, "feed_frames_per_s": alone}
    _load.finish(watch, figures)


if __name__ == "__main__":
    main()
