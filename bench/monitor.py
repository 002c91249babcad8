"""What `cancorder dump --monitor` costs on a busy bus, in a real terminal (tmux).

    .venv/bin/python -m bench.monitor                      # the figures of docs/performance.md
    .venv/bin/python -m bench.monitor --rate 30000 --ids 2000 --seconds 12

A logger in this process sends ``--rate`` frames/s (30,000: a saturated CAN FD bus) from
``--ids`` distinct ids (half 11-bit, half 29-bit; one byte of each frame counts up, so every
row has a changing byte to light up) in 10 ms batches, for ``--seconds``. The client runs in a
tmux pane of 160x45 (a real terminal: the monitor draws and reads keys as it would for a
person), with ``-n`` set to the number of frames sent, so it exits once it has counted them all.

Measured per case, in the same run:
- CPU: the client's user+system time (from /proc) over the steady part (after 2 s), as a share
  of one core;
- refresh: the monitor's own count of screens drawn per second, read off the screen once a
  second (median and lowest);
- lag: how long after the last batch was sent the client had counted every frame and exited
  (0.0x s: it kept up; seconds: it fell behind).

References beside it: ``--stats`` (the line-table view, the same per-id counting) and
``--format candump`` into /dev/null (no view at all). Loopback only.
"""
import argparse
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.dump_rate import paced  # noqa: E402
from cancorder._fast import wire  # noqa: E402
from bench import _load  # noqa: E402

BATCH_EVERY = 0.01
TICKS = os.sysconf("SC_CLK_TCK")


def make_ids(count):
    half = count // 2
    return ([(0x100 + i, 0) for i in range(half)]
            + [(0x18FF0000 + i, wire.FLAG_EXT) for i in range(count - half)])


def make_batches(rate, seconds, ids, start_us):
    per_batch = int(rate * BATCH_EVERY)
    batches = []
    frame = 0
    for b in range(int(seconds / BATCH_EVERY)):
        records = []
        for k in range(per_batch):
            can_id, flags = ids[frame % len(ids)]
            counter = (frame // len(ids)) & 0xFF
            records.append(wire.pack_frame(start_us + frame * 33, can_id, flags,
                                           bytes((0x11, 0x22, counter, 0x44, 0x55, 0x66, 0x77,
                                                  0x88))))
            frame += 1
        batches.append(b"".join(records))
    return batches, frame


class Pane:
    """One tmux server and pane running ``command``; its pid is the client's (exec)."""

    def __init__(self, command):
        self.name = f"cancorder-bench-{uuid.uuid4().hex[:8]}"
        env = dict(os.environ, PYTHONPATH=ROOT, TZ="UTC", TERM="xterm-256color")
        for var in ("COLUMNS", "LINES", "CAN_INTERFACE", "CAN_CHANNEL", "CAN_BITRATE",
                    "CAN_CONFIG"):
            env.pop(var, None)
        subprocess.run(["tmux", "-L", self.name, "new-session", "-d", "-s", self.name, "-x",
                        "160", "-y", "45", "exec " + command], check=True, env=env, cwd=ROOT)
        out = self._tmux("display-message", "-p", "-t", self.name, "#{pane_pid}")
        self.pid = int(out.strip())

    def _tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.name, *args], capture_output=True,
                              text=True).stdout

    def screen(self):
        return self._tmux("capture-pane", "-p", "-t", self.name)

    def cpu_seconds(self):
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime

    def alive(self):
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    def close(self):
        self._tmux("kill-server")


def run_case(args, view, batches, total):
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    tmp = tempfile.mkdtemp(prefix="bench-monitor-")
    view_args = {"monitor": "--monitor", "stats": "--stats",
                 "candump": "--format candump"}[view]
    redirect = " > /dev/null" if view == "candump" else ""
    command = (f"{shlex.quote(sys.executable)} -m cancorder dump 127.0.0.1:{port} {view_args} "
               f"-n {total}{redirect} 2> {tmp}/stderr")
    pane = Pane(command)
    try:
        sock.settimeout(30)
        conn, _ = sock.accept()
        start = time.perf_counter()
        cpu_start = None
        refreshes, shown_rates = [], []
        next_sample = start + 2.0
        for records in paced(batches, BATCH_EVERY):
            conn.sendall(records)
            now = time.perf_counter()
            if now >= next_sample:
                if cpu_start is None:
                    cpu_start = (now, pane.cpu_seconds())
                elif view == "monitor":
                    title = pane.screen().splitlines()[:1]
                    match = re.search(r"([\d,]+)/s .* refresh ([\d.]+)/s", title[0] if title
                                      else "")
                    if match:
                        shown_rates.append(int(match.group(1).replace(",", "")))
                        refreshes.append(float(match.group(2)))
                next_sample += 1.0
        last = time.perf_counter()
        cpu_end = (last, pane.cpu_seconds())
        while pane.alive() and time.perf_counter() - last < 60:
            time.sleep(0.01)
        lag = time.perf_counter() - last
        conn.close()
        with open(f"{tmp}/stderr") as err:
            log = err.read()
        if f"{total:,} frames" not in log:
            raise RuntimeError(f"{view}: the client did not count every frame:\n{log}")
    finally:
        pane.close()
        sock.close()
        shutil.rmtree(tmp, ignore_errors=True)
    cpu = (cpu_end[1] - cpu_start[1]) / (cpu_end[0] - cpu_start[0])
    return cpu, refreshes, shown_rates, lag, (total / (last - start))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=30_000, help="frames/s sent")
    parser.add_argument("--ids", type=int, default=2_000, help="distinct ids")
    parser.add_argument("--seconds", type=float, default=12.0, help="how long to send")
    parser.add_argument("--views", default="monitor,stats,candump",
                        help="comma-separated: monitor, stats, candump")
    _load.add_arguments(parser)
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        sys.exit("bench.monitor needs tmux (apt-get install tmux)")
    from cancorder import _fast

    watch = _load.start("bench.monitor", args)
    figures = []
    batches, total = make_batches(args.rate, args.seconds, make_ids(args.ids),
                                  int(time.time() * 1e6))
    print(f"cancorder dump --monitor, core {_fast.IMPLEMENTATION}, Python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.rate:,} frames/s from "
          f"{args.ids:,} ids for {args.seconds:g} s ({total:,} frames), tmux pane 160x45")
    print(f"{'view':<22} {'sent/s':>8} {'CPU':>6} {'refresh/s median (min)':>23} "
          f"{'shown frames/s':>15} {'lag s':>6}")
    for view in args.views.split(","):
        cpu, refreshes, shown, lag, sent = run_case(args, view, batches, total)
        refresh = (f"{statistics.median(refreshes):.1f} ({min(refreshes):.1f})"
                   if refreshes else "-")
        shown_text = f"{statistics.median(shown):,.0f}" if shown else "-"
        name = {"monitor": "dump --monitor", "stats": "dump --stats (reference)",
                "candump": "dump -f candump >null"}[view]
        print(f"{name:<22} {sent:>8,.0f} {cpu:>6.0%} {refresh:>23} {shown_text:>15} "
              f"{lag:>6.2f}", flush=True)
        figures.append({"view": view, "sent_per_s": sent, "cpu": cpu, "refreshes": refreshes,
                        "shown_per_s": shown, "lag_s": lag})
    _load.finish(watch, figures)


if __name__ == "__main__":
    main()
