"""SocketCAN reader CPU per frame, in the test VM (tests/vm.py): a TCG guest, so the ratios
are the result, not the absolute times.

    python -m bench.socketcan [--frames N] [--rates 1000,10000,max] [--clients 1,4]

For each rate, ``cangen vcan0`` sends N frames (``-g`` gap: 1 ms = 1k/s, 0.1 ms = 10k/s, 0 =
as fast as it goes) into, one after the other:
  - ``candump -L vcan0 > /dev/null`` (C, the reference),
  - ``cancorder serve -i socketcan`` (cancorder's reader) with 1 and 4 ECUconnect clients,
  - the same with ``--opt backend=python-can``.
CPU per frame is the reader's utime + stime from /proc/PID/stat over the frames it read;
every frame is counted at each client; kernel drops are the serve totals' ``dropped``.
Prints one table (and JSON with --json).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from bench import _load  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GAPS = {"1000": "1", "10000": "0.1", "max": "0"}
PORT = 29900


def _ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def guest_run(reader, rate, frames, clients):
    """In the guest: one measurement; prints one JSON line."""
    port = PORT + clients
    env = dict(os.environ, PYTHONPATH=ROOT)
    if reader == "candump":
        proc = subprocess.Popen(["candump", "-L", "vcan0"], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        collectors = []
    else:
        extra = ["--opt", "backend=python-can"] if reader == "python-can" else []
        proc = subprocess.Popen([sys.executable, "-m", "cancorder", "serve", "-i", "socketcan",
                                 "-c", "vcan0", "--no-zeroconf", "--bind", "127.0.0.1", "-p",
                                 str(port), *extra], env=env, stderr=subprocess.PIPE, text=True)
        for line in proc.stderr:
            if "on TCP" in line:
                break
        collectors = []
        for i in range(clients):
            out = f"/run/tmp/bench-{i}.bin"
            collectors.append((subprocess.Popen(
                [sys.executable, os.path.join(ROOT, "tests", "vm.py"), "collect", "127.0.0.1",
                 str(port), out, str(frames), "5"], stdout=subprocess.PIPE, text=True), out))
        for collector, _ in collectors:
            collector.stdout.readline()  # connected
        time.sleep(1.0)  # the server has logged them in
    start_ticks = _ticks(proc.pid)
    started = time.monotonic()
    subprocess.run(["cangen", "vcan0", "-g", GAPS[rate], "-p", "100", "-n", str(frames),
                    "-I", "123", "-L", "8", "-D", "i"], check=True)
    sent_in = time.monotonic() - started
    received = []
    for collector, out in collectors:
        collector.wait(120)
        received.append(int(collector.stdout.read().split()[-1]))
    if not collectors:
        time.sleep(1.0)
    ticks = _ticks(proc.pid) - start_ticks
    proc.terminate()
    dropped = 0
    if reader != "candump":
        rest = proc.stderr.read()
        match = re.search(r"dropped ([\d,]+)", rest.split("clients served")[0]
                          if "clients served" in rest else "")
        dropped = int(match.group(1).replace(",", "")) if match else 0
    proc.wait(30)
    print(json.dumps({"reader": reader, "rate": rate, "clients": clients, "frames": frames,
                      "ticks": ticks, "hz": os.sysconf("SC_CLK_TCK"), "seconds": sent_in,
                      "received": received, "dropped": dropped}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--rates", default="1000,10000,max")
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--json", action="store_true")
    _load.add_arguments(parser)
    args = parser.parse_args()
    watch = _load.start("bench.socketcan", args)
    sys.path.insert(0, ROOT)
    import tempfile

    from tests.vm import Vm

    rows = []
    with tempfile.TemporaryDirectory() as work:
        vm = Vm(work).boot()
        try:
            for rate in args.rates.split(","):
                runs = [("candump", 1)] + [(reader, int(n)) for reader in
                                           ("cancorder", "python-can")
                                           for n in args.clients.split(",")]
                for reader, clients in runs:
                    done = vm.run([sys.executable, "-m", "bench.socketcan", "--guest", reader,
                                   rate, str(args.frames), str(clients)], timeout=1800)
                    rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        finally:
            vm.stop()
    print("SocketCAN readers in a QEMU/TCG VM (ratios are the result; absolute times are "
          "the emulator's)")
    print(f"{'rate':>6} {'reader':>10} {'clients':>7} {'us CPU/frame':>12} {'x candump':>9} "
          f"{'received (each client)':>24} {'kernel drops':>12}")
    base = {}
    for row in rows:
        per_frame = row["ticks"] / row["hz"] / row["frames"] * 1e6
        if row["reader"] == "candump":
            base[row["rate"]] = per_frame
        ratio = per_frame / base[row["rate"]] if base.get(row["rate"]) else float("nan")
        row["us_per_frame"], row["x_candump"] = per_frame, ratio
        print(f"{row['rate']:>6} {row['reader']:>10} {row['clients']:>7} {per_frame:>12.1f} "
              f"{ratio:>9.2f} {','.join(map(str, row['received'])) or '-':>24} "
              f"{row['dropped']:>12}")
    if args.json:
        print(json.dumps(rows))
    _load.finish(watch, rows)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--guest":
        guest_run(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
