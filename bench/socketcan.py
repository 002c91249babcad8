"""SocketCAN reader CPU per frame, in the test VM (tests/vm.py): a TCG guest, so the ratios
are the result, not the absolute times.

    python -m bench.socketcan [--frames N] [--rates 1000,10000,max] [--clients 1,4]

For each rate, ``cangen vcan0`` sends N frames (``-g`` gap: 1 ms = 1k/s, 0.1 ms = 10k/s, 0 =
as fast as it goes) into, one after the other:
  - ``candump -L vcan0 > /dev/null`` (C, the reference),
  - ``cancorder serve -i socketcan`` (cancorder's reader) with 1 and 4 ECUconnect clients,
  - the same with ``--opt backend=python-can``.
CPU per frame is the reader's utime + stime from /proc/PID/stat over the frames it read
(candump's lines counted by ``wc -l`` through a pipe; cancorder's reads are the frames sent
less its kernel drops; python-can's what its clients got); every frame is counted at each
client; kernel drops are the serve totals' ``dropped``.

Then the senders (``--senders``, on by default): ``cangen vcan0 -g 0 -n N`` beside
``cancorder gen -i socketcan -c vcan0 -r 0 -n N`` (one sendmmsg per batch:
``FramePacker.send_batch``), and both paced at 30,000 frames/s (``cangen -g 0.0333``, ``gen
-r 30000``: a batch a millisecond), CPU per frame from the children's rusage, each one's
start-up (the same command with ``-n 1``) taken off.
Prints the tables (and JSON with --json).
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
    counter = None
    if reader == "candump":
        # its lines counted by wc in a process of its own (a pipe costs candump what
        # /dev/null does: the same buffered writes), so a frame candump missed shows
        proc = subprocess.Popen(["candump", "-L", "vcan0"], stdout=subprocess.PIPE)
        counter = subprocess.Popen(["wc", "-l"], stdin=proc.stdout, stdout=subprocess.PIPE,
                                   text=True)
        proc.stdout.close()
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
    if counter is not None:
        received.append(int(counter.communicate(timeout=30)[0]))
    print(json.dumps({"reader": reader, "rate": rate, "clients": clients, "frames": frames,
                      "ticks": ticks, "hz": os.sysconf("SC_CLK_TCK"), "seconds": sent_in,
                      "received": received, "dropped": dropped}), flush=True)


def _child_cpu(command):
    before = os.times()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=dict(os.environ, PYTHONPATH=ROOT))
    after = os.times()
    return (after.children_user - before.children_user) + \
        (after.children_system - before.children_system)


def guest_senders(frames):
    """In the guest: cangen's and gen's CPU per frame sent (median of 3 each)."""
    import statistics
    cangen = ["cangen", "vcan0", "-g", "0", "-i", "-I", "123", "-L", "8", "-D", "i"]
    gen = [sys.executable, "-m", "cancorder", "gen", "-i", "socketcan", "-c", "vcan0",
           "-r", "0", "--id", "123", "--dlc-min", "8", "--dlc-max", "8",
           "--data-mode", "counter"]
    paced = {"cangen -g 0.0333": cangen[:3] + ["0.0333"] + cangen[4:],
             "gen -r 30000": gen[:9] + ["30000"] + gen[10:]}
    rows = {}
    for name, command in (("cangen", cangen), ("cancorder gen", gen), *paced.items()):
        runs = []
        for _ in range(3):
            whole = _child_cpu([*command, "-n", str(frames)])
            start_up = _child_cpu([*command, "-n", "1"])
            runs.append(max(whole - start_up, 0.0) / frames * 1e6)
        rows[name] = statistics.median(runs)
    print(json.dumps(rows), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--rates", default="1000,10000,max")
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-senders", dest="senders", action="store_false",
                        help="leave out cangen vs gen -i socketcan")
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
            for rate in filter(None, args.rates.split(",")):  # --rates '': the senders only
                runs = [("candump", 1)] + [(reader, int(n)) for reader in
                                           ("cancorder", "python-can")
                                           for n in args.clients.split(",")]
                for reader, clients in runs:
                    done = vm.run([sys.executable, "-m", "bench.socketcan", "--guest", reader,
                                   rate, str(args.frames), str(clients)], timeout=1800)
                    rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            senders = None
            if args.senders:
                done = vm.run([sys.executable, "-m", "bench.socketcan", "--guest-senders",
                               str(args.frames)], timeout=1800)
                senders = json.loads(done.stdout.strip().splitlines()[-1])
        finally:
            vm.stop()
    print("SocketCAN readers in a QEMU/TCG VM (ratios are the result; absolute times are "
          "the emulator's)")
    print(f"{'rate':>6} {'reader':>10} {'clients':>7} {'read':>6} {'us CPU/frame read':>17} "
          f"{'x candump':>9} {'received (each client)':>24} {'kernel drops':>12}")
    base = {}
    for row in rows:
        # per frame the reader got from the kernel: a reader that loses frames (python-can's
        # at 10k/s in this guest) is not cheaper for it; cancorder's reads = sent - its
        # kernel drops, the others' = what reached (every one of) their clients
        read = (row["frames"] - row["dropped"] if row["reader"] == "cancorder"
                else min(row["received"]))
        row["read"] = read
        per_frame = row["ticks"] / row["hz"] / max(read, 1) * 1e6
        if row["reader"] == "candump":
            base[row["rate"]] = per_frame
        ratio = per_frame / base[row["rate"]] if base.get(row["rate"]) else float("nan")
        row["us_per_frame"], row["x_candump"] = per_frame, ratio
        print(f"{row['rate']:>6} {row['reader']:>10} {row['clients']:>7} {read:>6} {per_frame:>17.1f} "
              f"{ratio:>9.2f} {','.join(map(str, row['received'])) or '-':>24} "
              f"{row['dropped']:>12}")
    if senders:
        print(f"\nSenders onto vcan0, {args.frames} frames as fast as they go, then paced at "
              "30,000 frames/s (us CPU per frame sent, start-up taken off, median of 3):")
        for name, per_frame in senders.items():
            # (a run too short to measure cangen above its start-up: no ratio)
            ratio = per_frame / senders["cangen"] if senders["cangen"] else float("nan")
            print(f"{name:>17} {per_frame:8.1f} us  {ratio:5.2f}x cangen")
    if args.json:
        print(json.dumps({"readers": rows, "senders": senders}))
    _load.finish(watch, {"readers": rows, "senders": senders})


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--guest-senders":
        guest_senders(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--guest":
        guest_run(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
