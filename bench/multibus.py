"""Several buses in one process: four SLCAN emulators, one `cancorder serve --config`.

    python -m bench.multibus [--buses 4] [--rate 30000] [--seconds 10] [--clients 4]

One emulator process writes pre-built SLCAN lines (29-bit id and 8-byte payload = sequence
number) to each bus at RATE frames/s, in writes of RATE/200 lines every 5 ms, and notes the
monotonic time of every write. One `cancorder serve --config` process serves all the buses
(SLCAN source, zeroconf off). Per bus, one client process holds CLIENTS connections in a select
loop, checks every frame of every connection (the sequence must go on without a gap or a
repeat) and notes when each chunk arrived. Reported:
- frames each client got, and frames missing, repeated or altered (must be 0);
- CPU of the whole serve process (user + system, from /proc) as % of one core over the paced
  window, beside the same load served by one `cancorder serve` process per bus (the reference,
  measured in the same run), and one bus alone in one process (the machine's floor);
- latency from the emulator's write to the client's read (CLOCK_MONOTONIC is one clock for
  every process of the machine): p50, p99 and max over every frame.
"""
import argparse
import array
import json
import os
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.helpers import CancorderProcess, cancorder_env  # noqa: E402
from bench import _load  # noqa: E402

WRITES_PER_S = 200
RECORD = struct.Struct(">QIBBQ")  # a record of an 8-byte frame: 22 bytes


# ---- the emulators (a process of their own) ----

def emulate(buses, rate, seconds, out_dir):
    from tests.emulators.slcan_adapter import SlcanEmulator

    count = rate * seconds
    step = max(1, rate // WRITES_PER_S)
    lines = [f"T{i % 0x20000000:08X}8{i:016X}\r".encode() for i in range(count)]
    batches = [b"".join(lines[k:k + step]) for k in range(0, count, step)]
    emulators = [SlcanEmulator() for _ in range(buses)]
    print(json.dumps([emu.port for emu in emulators]), flush=True)
    for emu in emulators:
        emu.wait_open(120)
    sys.stdin.readline()  # "go": every client is connected
    conns = [emu._conn for emu in emulators]
    writes = [array.array("d") for _ in emulators]
    start = time.monotonic()
    for b, batch in enumerate(batches):
        for conn, times in zip(conns, writes):
            times.append(time.monotonic())
            conn.sendall(batch)
        delay = start + (b + 1) / WRITES_PER_S - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    for i, times in enumerate(writes):
        with open(os.path.join(out_dir, f"writes{i}"), "wb") as f:
            times.tofile(f)
    print(json.dumps({"step": step, "elapsed": time.monotonic() - start}), flush=True)
    sys.stdin.read()  # hold the connections until the benchmark is done
    for emu in emulators:
        emu.close()


# ---- the clients of one bus (a process of their own) ----

def clients(port, count, expected, out_path):
    selector = selectors.DefaultSelector()
    state = {}
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        # [leftover bytes, next sequence number, bad, chunk log (time, first seq, frames)]
        state[sock] = [b"", 0, 0, array.array("d")]
    print("ready", flush=True)
    done = 0
    deadline = None
    while done < count:
        events = selector.select(5)
        if not events:
            if deadline is None:
                deadline = time.monotonic() + 10
            if time.monotonic() > deadline:
                break  # nothing more is coming: report what arrived
            continue
        deadline = None
        for key, _ in events:
            sock = key.fileobj
            data = sock.recv(1 << 20)
            now = time.monotonic()
            entry = state[sock]
            if not data:
                selector.unregister(sock)
                done += 1
                continue
            data = entry[0] + data
            usable = len(data) - len(data) % RECORD.size
            entry[0] = data[usable:]
            seq = first = entry[1]
            bad = 0
            for _, can_id, _, length, value in RECORD.iter_unpack(data[:usable]):
                if value != seq or length != 8 or can_id != seq % 0x20000000:
                    bad += 1
                    seq = value  # resynchronise: count each gap once
                seq += 1
            entry[1] = seq
            entry[2] += bad
            entry[3].extend((now, first, seq - first))
            if seq >= expected:
                selector.unregister(sock)
                done += 1
    with open(out_path, "wb") as f:
        for entry in state.values():
            entry[3].tofile(f)
    print(json.dumps({"received": [e[1] for e in state.values()],
                      "bad": [e[2] for e in state.values()]}), flush=True)


# ---- the run ----

def process_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid):
    """CPU seconds of each thread of ``pid``, in creation order (thread ids grow)."""
    tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    seconds = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            seconds.append(0.0)
            continue
        seconds.append((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    return tids, seconds


def broadcaster_seconds(pid, before):
    """CPU of the broadcaster threads since ``before`` (a thread_cpu result). The server starts,
    per bus in config order, the broadcaster thread and then the source thread (zeroconf off, no
    sinks, no metrics here): after the main thread they alternate."""
    tids, now = thread_cpu(pid)
    old = dict(zip(*before))
    threads = [s - old.get(t, 0.0) for t, s in zip(tids, now)][1:]
    return sum(threads[0::2]), sum(threads[1::2])


def free_ports(n):
    socks = [socket.create_server(("127.0.0.1", 0)) for _ in range(n)]
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def bus_flags(emulator_port):
    return {"interface": "slcan", "channel": f"socket://127.0.0.1:{emulator_port}",
            "bitrate": 1000000, "zeroconf": False, "bind": "127.0.0.1",
            "client_buffer": "64M"}


def server_command(switch_interval):
    """``python -m cancorder``, or with the interpreter's GIL switch interval changed first."""
    if switch_interval is None:
        return None
    return [sys.executable, "-c", f"import sys; sys.setswitchinterval({switch_interval}); "
            "from cancorder.cli import main; sys.exit(main())"]


def start_servers(mode, emulator_ports, ports, tmp, switch_interval=None):
    if mode in ("one process", "one bus alone"):
        path = os.path.join(tmp, "multibus.toml")
        with open(path, "w") as f:
            for i, (emu, port) in enumerate(zip(emulator_ports, ports)):
                f.write(f'[[bus]]\nname = "bus{i}"\nport = {port}\n')
                for key, value in bus_flags(emu).items():
                    f.write(f"{key} = {json.dumps(value)}\n")
        servers = [CancorderProcess(["serve", "--config", path],
                                    command=server_command(switch_interval))]
    else:
        servers = []
        for emu, port in zip(emulator_ports, ports):
            flags = bus_flags(emu)
            servers.append(CancorderProcess(
                ["serve", "-i", "slcan", "-c", flags["channel"], "-b", "1000000",
                 "--no-zeroconf", "--bind", "127.0.0.1", "--client-buffer", "64M",
                 "-p", str(port)]))
    for server in servers:
        server.wait_for("serving .* on TCP", 60)
    return servers


def run(mode, buses, rate, seconds, per_bus, switch_interval=None):
    with tempfile.TemporaryDirectory() as tmp:
        emulator = subprocess.Popen(
            [sys.executable, "-m", "bench.multibus", "--emulate", "--buses", str(buses),
             "--rate", str(rate), "--seconds", str(seconds), "--out", tmp],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=cancorder_env())
        emulator_ports = json.loads(emulator.stdout.readline())
        ports = free_ports(buses)
        servers = start_servers(mode, emulator_ports, ports, tmp, switch_interval)
        readers = []
        try:
            expected = rate * seconds
            for i, port in enumerate(ports):
                readers.append(subprocess.Popen(
                    [sys.executable, "-m", "bench.multibus", "--read", str(port),
                     "--clients", str(per_bus), "--expected", str(expected), "--out",
                     os.path.join(tmp, f"chunks{i}")],
                    cwd=ROOT, stdout=subprocess.PIPE, text=True, env=cancorder_env()))
            for reader in readers:
                assert reader.stdout.readline().strip() == "ready"
            for server in servers:
                server.wait_for("connected", 30)
            time.sleep(1.0)  # every client accepted before the first frame
            cpu0 = sum(process_cpu(s.proc.pid) for s in servers)
            threads0 = thread_cpu(servers[0].proc.pid) if len(servers) == 1 else None
            wall0 = time.monotonic()
            emulator.stdin.write("go\n")
            emulator.stdin.flush()
            emitted = json.loads(emulator.stdout.readline())
            results = [json.loads(reader.stdout.readline()) for reader in readers]
            cpu = sum(process_cpu(s.proc.pid) for s in servers) - cpu0
            split = broadcaster_seconds(servers[0].proc.pid, threads0) if threads0 else None
            wall = time.monotonic() - wall0
            for reader in readers:
                reader.wait(30)
            delays = latencies(tmp, buses, emitted["step"])
        finally:
            for server in servers:
                server.stop()
            for reader in readers:
                if reader.poll() is None:
                    reader.kill()
            emulator.stdin.close()
            emulator.wait(30)
    received = [n for r in results for n in r["received"]]
    bad = sum(sum(r["bad"]) for r in results)
    if switch_interval is not None:
        mode += f", switch {switch_interval * 1000:g} ms"
    return {"mode": mode, "processes": len(servers), "buses": buses, "rate_per_bus": rate,
            "clients": len(received), "expected_each": expected,
            "missing": sum(expected - n for n in received), "bad": bad,
            "emitter_seconds": emitted["elapsed"],
            "cpu_percent": 100 * cpu / wall,
            "broadcasters_percent": 100 * split[0] / wall if split else None,
            "sources_percent": 100 * split[1] / wall if split else None, "p50_ms": delays[0], "p99_ms": delays[1],
            "max_ms": delays[2]}


def latencies(tmp, buses, step):
    histogram = {}  # latency in 10 us buckets -> frames
    for i in range(buses):
        writes = array.array("d")
        with open(os.path.join(tmp, f"writes{i}"), "rb") as f:
            writes.frombytes(f.read())
        chunks = array.array("d")
        with open(os.path.join(tmp, f"chunks{i}"), "rb") as f:
            chunks.frombytes(f.read())
        for k in range(0, len(chunks), 3):
            when, first, frames = chunks[k], int(chunks[k + 1]), int(chunks[k + 2])
            seq = first
            end = first + frames
            while seq < end:
                batch = seq // step
                upto = min(end, (batch + 1) * step)
                bucket = int((when - writes[batch]) * 1e5)
                histogram[bucket] = histogram.get(bucket, 0) + (upto - seq)
                seq = upto
    total = sum(histogram.values())
    marks = []
    for fraction in (0.5, 0.99):
        running = 0
        for bucket in sorted(histogram):
            running += histogram[bucket]
            if running >= fraction * total:
                marks.append(bucket / 100)
                break
    marks.append(max(histogram) / 100)
    return marks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buses", type=int, default=4)
    parser.add_argument("--rate", type=int, default=30000, help="frames/s per bus")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4, help="clients per bus")
    parser.add_argument("--emulate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--read", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each mode (default: 3)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    _load.add_arguments(parser)
    args = parser.parse_args()
    if args.emulate:
        return emulate(args.buses, args.rate, args.seconds, args.out)
    if args.read is not None:
        return clients(args.read, args.clients, args.expected, args.out)
    watch = _load.start("bench.multibus", args)
    # the modes interleaved, so that a change in the machine's load hits all of them; "one bus
    # alone" is the machine's floor: the same per-bus load, one bus in one process
    modes = (("one process", args.buses), ("one process per bus", args.buses),
             ("one bus alone", 1))
    runs = []
    for _ in range(args.repeat):
        for mode, buses in modes:
            runs.append(run(mode, buses, args.rate, args.seconds, args.clients))
    print(f"{args.buses} buses x {args.rate:,} frames/s, {args.clients} clients per bus, "
          f"{args.seconds} s, {args.repeat} runs of each (load average at the end: "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"{'serving':22s} {'clients':>7s} {'missing':>7s} {'bad':>4s} {'CPU %':>6s} "
          f"{'p50 ms':>7s} {'p99 ms':>7s} {'max ms':>7s}")
    for r in runs:
        print(f"{r['mode']:22s} {r['clients']:>7d} {r['missing']:>7d} {r['bad']:>4d} "
              f"{r['cpu_percent']:>6.1f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} "
              f"{r['max_ms']:>7.2f}")
    one = [r for r in runs if r["mode"] == "one process"]
    print(f"one process, median: the {args.buses} broadcaster threads "
          f"{median(r['broadcasters_percent'] for r in one):.1f} % of one core, the "
          f"{args.buses} source threads {median(r['sources_percent'] for r in one):.1f} %")
    for mode, _ in modes:
        mine = [r for r in runs if r["mode"] == mode]
        print(f"median, {mode}: CPU {median(r['cpu_percent'] for r in mine):.1f} % of one "
              f"core, p50 {median(r['p50_ms'] for r in mine):.2f} ms, p99 "
              f"{median(r['p99_ms'] for r in mine):.2f} ms; every frame to every client: "
              f"{'yes' if all(r['missing'] == 0 and r['bad'] == 0 for r in mine) else 'NO'}")
    if args.json:
        print(json.dumps(runs))
    _load.finish(watch, runs)


def median(values):
    import statistics

    return statistics.median(list(values))


if __name__ == "__main__":
    main()
