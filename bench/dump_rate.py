"""How fast `cancorder dump` turns a stream into text, with its output on a pipe or in a file.

    .venv/bin/python bench/dump_rate.py                  # every case, figures for docs/performance.md
    .venv/bin/python bench/dump_rate.py --frames 100000 --formats candump --sinks pipe

Two measurements per format and output:
- max: a logger in this process sends ``--frames`` records as fast as `dump` takes them
  (sendall blocks while dump is behind, so the rate is dump's own limit); frames/s from the
  moment dump connected to the moment it exited after --count.
- paced: ``--rate`` frames/s (30,000: a saturated CAN FD bus) for ``--seconds``, sent in 1 ms
  batches like `serve`'s coalesced flushes (at most one per 1 ms); dump keeps up if it exits
  right after the last batch (the lag column) and its CPU use is that share of one core.

The logger is a plain socket in this process, not `cancorder serve`: the source (python-can's
slcan reads ~4,000 frames/s) would otherwise be the limit, not dump. Loopback only.
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cancorder._fast import wire  # noqa: E402
from bench import _load  # noqa: E402


def make_records(count, start_us):
    """A bus-like mix: 11-bit ids with 8 bytes, every 8th frame 29-bit, 1 us apart."""
    frames = []
    for i in range(count):
        if i % 8 == 7:
            frames.append(wire.pack_frame(start_us + i, 0x18DA0000 | (i & 0xFFFF), wire.FLAG_EXT,
                                          bytes((i + k) & 0xFF for k in range(8))))
        else:
            frames.append(wire.pack_frame(start_us + i, 0x100 + i % 64, 0,
                                          bytes((i * 7 + k) & 0xFF for k in range(8))))
    return b"".join(frames)


class Dump:
    """`cancorder dump` as a subprocess with its stdout on a pipe (drained) or in a file."""

    def __init__(self, port, fmt, count, sink, extra=()):
        self.tmp = tempfile.TemporaryDirectory()
        env = dict(os.environ, PYTHONPATH=ROOT, TZ="UTC")
        self.out_file = None
        if sink == "file":
            self.out_file = open(os.path.join(self.tmp.name, "out.txt"), "wb")
            stdout = self.out_file
        else:
            stdout = subprocess.PIPE
        extra = [arg.replace("{tmp}", self.tmp.name) for arg in extra]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cancorder", "dump", f"127.0.0.1:{port}", "-f", fmt,
             "-n", str(count), *extra], stdout=stdout, stderr=subprocess.PIPE, env=env)
        self.bytes_out = 0
        self._drain = None
        if sink == "pipe":
            self._drain = threading.Thread(target=self._read, daemon=True)
            self._drain.start()

    def _read(self):
        while True:
            chunk = self.proc.stdout.read1(1 << 20)
            if not chunk:
                return
            self.bytes_out += len(chunk)

    def wait(self):
        """(exit time, CPU seconds of dump) once it has exited."""
        _, status, usage = os.wait4(self.proc.pid, 0)
        done = time.perf_counter()
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        if self._drain is not None:
            self._drain.join(5)
        err = self.proc.stderr.read().decode()
        if self.proc.returncode != 0:
            raise RuntimeError(f"dump failed ({self.proc.returncode}): {err}")
        if self.out_file is not None:
            self.out_file.close()
            self.bytes_out = os.path.getsize(self.out_file.name)
        self.tmp.cleanup()
        return done, usage.ru_utime + usage.ru_stime


def listener():
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(60)  # a dump that never connects fails the run instead of hanging it
    return sock, sock.getsockname()[1]


def run_max(fmt, sink, frames, extra):
    sock, port = listener()
    records = make_records(frames, int(time.time() * 1e6))
    dump = Dump(port, fmt, frames, sink, extra)
    conn, _ = sock.accept()
    start = time.perf_counter()
    conn.sendall(records)
    done, cpu = dump.wait()
    conn.close()
    sock.close()
    return frames / (done - start), cpu, dump.bytes_out


def paced(batches, every):
    """Each batch when it is due: batch i at i * ``every`` seconds after the first."""
    start = time.perf_counter()
    for index, batch in enumerate(batches):
        delay = start + index * every - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield batch


def run_paced(fmt, sink, rate, seconds, extra):
    batch_every = 0.001  # serve flushes at most once per 1 ms
    per_batch = int(rate * batch_every)
    batches = int(seconds / batch_every)
    total = per_batch * batches
    sock, port = listener()
    dump = Dump(port, fmt, total, sink, extra)
    conn, _ = sock.accept()
    payload = [make_records(per_batch, int(time.time() * 1e6) + b * 1000) for b in range(batches)]
    start = time.perf_counter()
    for records in paced(payload, batch_every):
        conn.sendall(records)
    last = time.perf_counter()
    done, cpu = dump.wait()
    conn.close()
    sock.close()
    return total / (last - start), done - last, cpu / (done - start)


CASES = {
    "candump": ("candump", []),
    "pretty": ("pretty", []),
    "json": ("json", []),
    "raw": ("raw", []),
    "candump -o .log -o .blf": ("candump", ["-o", "{tmp}/rec.log", "-o", "{tmp}/rec.blf"]),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300_000, help="frames for the max rate")
    parser.add_argument("--rate", type=int, default=30_000, help="frames/s for the paced run")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the paced run")
    parser.add_argument("--formats", default=",".join(CASES),
                        help="comma-separated cases: " + ", ".join(CASES))
    parser.add_argument("--sinks", default="pipe,file", help="pipe, file or both")
    _load.add_arguments(parser)
    args = parser.parse_args()
    watch = _load.start("bench.dump_rate", args)
    from cancorder import _fast

    print(f"cancorder dump, core {_fast.IMPLEMENTATION}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs; max over {args.frames:,} frames, paced {args.rate:,} "
          f"frames/s for {args.seconds:g} s")
    print(f"{'case':<26} {'output':<6} {'max frames/s':>13} {'paced frames/s':>15} "
          f"{'lag s':>6} {'CPU at pace':>11}")
    figures = []
    for name in args.formats.split(","):
        fmt, extra = CASES[name]
        for sink in args.sinks.split(","):
            top, _, _ = run_max(fmt, sink, args.frames, extra)
            paced, lag, cpu = run_paced(fmt, sink, args.rate, args.seconds, extra)
            print(f"{name:<26} {sink:<6} {top:>13,.0f} {paced:>15,.0f} {lag:>6.2f} "
                  f"{cpu:>10.0%}", flush=True)
            figures.append({"case": name, "output": sink, "max_frames_per_s": top,
                            "paced_frames_per_s": paced, "lag_s": lag, "cpu_at_pace": cpu})
    _load.finish(watch, figures)


if __name__ == "__main__":
    main()
