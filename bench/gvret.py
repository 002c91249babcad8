"""GVRET clients beside ECUconnect and socketcand clients: CPU and latency per protocol.

    python -m bench.gvret [--seconds 10] [--rate 30000] [--rounds 3]

bench.socketcand's set-up (an SLCAN emulator in its own process writes 29-bit 8-byte frames
at RATE frames/s for SECONDS into `cancorder serve -i slcan`), now serving all three
protocols: runs with no client (the reference), four of each protocol alone, and 4 GVRET + 4
ECUconnect + 4 socketcand at once. Clients live in one helper process (one select loop) and
connect as their tools do (GVRET: SavvyCAN's handshake); each counts frames and, for the
first whole frame of every read, its delay (read time minus the frame's timestamp; GVRET's
is the low 32 bits of the same microseconds). Reported: CPU-seconds of the serve process per
second of traffic (and per frame), frames lost, and p50/p99 delay for each protocol.
"""
import argparse
import json
import os
import selectors
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import _load  # noqa: E402
from bench.serve import process_cpu  # noqa: E402
from bench.socketcand import _socketcand_client  # noqa: E402
from tests.helpers import CancorderProcess, cancorder_env  # noqa: E402

NAMES = {"ecu": "ECUconnect", "scd": "socketcand", "gvret": "GVRET"}


def _gvret_client(port):
    from tests.gvret_client import GvretClient

    client = GvretClient(port)
    client.connect_like_savvycan()
    return client.sock


def _gvret_frames(data):
    """(whole frames, the first one's 32-bit time or None, bytes left) of a GVRET stream."""
    pos = 0
    count = 0
    first = None
    while pos + 12 <= len(data):
        fd = data[pos + 1] == 0x14
        size = 13 + data[pos + 10] if fd else 12 + (data[pos + 10] & 0x0F)
        if pos + size > len(data):
            break
        if first is None:
            first = struct.unpack_from("<I", data, pos + 2)[0]
        count += 1
        pos += size
    return count, first, data[pos:]


def clients_main(kinds, ports, bus, expected):
    from cancorder._fast import wire

    selector = selectors.DefaultSelector()
    state = {}
    for kind in kinds:
        if kind == "ecu":
            sock = socket.create_connection(("127.0.0.1", ports["ecu"]))
        elif kind == "scd":
            sock = _socketcand_client(ports["scd"], bus)
        else:
            sock = _gvret_client(ports["gvret"])
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        state[sock] = {"kind": kind, "frames": 0, "pending": b"",
                       "decoder": wire.StreamDecoder() if kind == "ecu" else None}
    print("ready", flush=True)
    delays = {kind: [] for kind in set(kinds)}
    remaining = len(state)
    deadline = time.monotonic() + 120
    while remaining and time.monotonic() < deadline:
        for key, _ in selector.select(5):
            sock = key.fileobj
            entry = state[sock]
            data = sock.recv(1 << 20)
            now = time.time()
            if not data:
                raise SystemExit(f"server closed a {entry['kind']} client")
            kind = entry["kind"]
            if kind == "ecu":
                frames = entry["decoder"].feed(data)
                if frames:
                    delays[kind].append(now - frames[0][0] / 1e6)
                entry["frames"] += len(frames)
            elif kind == "scd":
                text = entry["pending"] + data
                cut = text.rfind(b">") + 1
                complete, entry["pending"] = text[:cut], text[cut:]
                count = complete.count(b">")
                if count:
                    first = complete[:complete.index(b">")].split()
                    delays[kind].append(now - float(first[3]))
                entry["frames"] += count
            else:
                count, first, entry["pending"] = _gvret_frames(entry["pending"] + data)
                if first is not None:
                    late = ((int(now * 1e6) & 0xFFFFFFFF) - first) % (1 << 32)
                    delays[kind].append(late / 1e6)
                entry["frames"] += count
            if entry["frames"] >= expected:
                selector.unregister(sock)
                remaining -= 1
    result = {"frames": {s["kind"] + str(i): s["frames"] for i, s in enumerate(state.values())}}
    for kind, values in delays.items():
        values.sort()
        result[kind] = {"p50_ms": values[len(values) // 2] * 1000,
                        "p99_ms": values[int(len(values) * 0.99)] * 1000,
                        "max_ms": values[-1] * 1000, "reads": len(values)}
    print(json.dumps(result), flush=True)


def encoder_rates():
    """Frames/s of the GVRET FrameEncoder on 1,000-frame batches, compiled and pure."""
    import cancorder._fast as fast
    from cancorder._fast.wire import pack_frame

    records = b"".join(pack_frame(1_700_000_000_000_000 + i, i % 0x20000000, 1,
                                  i.to_bytes(8, "big")) for i in range(1000))
    rates = {}
    for kind, batches in (("compiled", 300), ("pure", 5)):
        encoder = fast.variant(kind).gvret.FrameEncoder()
        start = time.perf_counter()
        for _ in range(batches):
            encoder.encode(records)
        rates[kind] = batches * 1000 / (time.perf_counter() - start)
    return rates


def run(kinds, rate, seconds):
    count = rate * seconds
    emulator = subprocess.Popen(
        [sys.executable, "-m", "bench._slcan_blast", "--count", str(count),
         "--rate", str(rate)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, env=cancorder_env())
    url = f"socket://127.0.0.1:{int(emulator.stdout.readline())}"
    server = CancorderProcess(["serve", "-i", "slcan", "-c", url, "-b", "1000000",
                               "--no-zeroconf", "--bind", "127.0.0.1", "--client-buffer",
                               "64M", "--socketcand", "127.0.0.1:0", "--gvret", "127.0.0.1:0",
                               "--no-beacon"])
    clients = None
    try:
        ports = {"ecu": server.port(),
                 "scd": int(server.wait_for(r"socketcand serves bus '\S+' at \S+:(\d+)")
                            .group(1)),
                 "gvret": int(server.wait_for(r"GVRET serves bus '\S+' at \S+:(\d+)")
                              .group(1))}
        if kinds:
            clients = subprocess.Popen(
                [sys.executable, "-m", "bench.gvret", "--clients", ",".join(kinds),
                 json.dumps(ports), url, str(count)],
                cwd=ROOT, stdout=subprocess.PIPE, text=True, env=cancorder_env())
            assert clients.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # past socketcand's rawmode grace
        cpu0 = process_cpu(server.proc.pid)
        start = time.monotonic()
        emulator.stdin.write("go\n")
        emulator.stdin.flush()
        if kinds:
            result = json.loads(clients.stdout.readline())
        else:
            time.sleep(seconds + 0.05)
            result = {"frames": {}}
        elapsed = time.monotonic() - start
        cpu = process_cpu(server.proc.pid) - cpu0
        result.update(kinds=kinds, sent=count, elapsed_s=elapsed,
                      serve_cpu_per_s=cpu / elapsed, serve_cpu_us_per_frame=cpu / count * 1e6,
                      lost=sum(count - n for n in result["frames"].values()))
        return result
    finally:
        if clients is not None and clients.poll() is None:
            clients.terminate()
            clients.wait(10)
        server.stop()
        emulator.stdin.close()
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(10)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=30000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="the runs are repeated this many times, interleaved; the table "
                             "shows medians (the machine is shared and noisy)")
    parser.add_argument("--clients", nargs=4, metavar="X", help=argparse.SUPPRESS)
    _load.add_arguments(parser)
    args = parser.parse_args()
    if args.clients:
        kinds, ports, bus, expected = args.clients
        clients_main(kinds.split(","), json.loads(ports), bus, int(expected))
        return
    watch = _load.start("bench.gvret", args)
    rates = encoder_rates()
    print(f"encoding GVRET frames: compiled {rates['compiled']:,.0f} frames/s, pure "
          f"{rates['pure']:,.0f} frames/s")
    configs = [[], ["ecu"] * 4, ["scd"] * 4, ["gvret"] * 4,
               ["gvret"] * 4 + ["ecu"] * 4 + ["scd"] * 4]
    results = {i: [] for i in range(len(configs))}
    for _ in range(args.rounds):
        for i, kinds in enumerate(configs):
            results[i].append(run(kinds, args.rate, args.seconds))
    print(f"{args.rate:,} frames/s for {args.seconds} s through cancorder serve -i slcan, "
          f"median of {args.rounds} rounds")
    print(f"{'clients':40s} {'serve CPU':>9s} {'us/frame':>8s} {'lost':>5s}   "
          + "   ".join(f"{NAMES[k]} p50/p99 ms" for k in ("gvret", "ecu", "scd")))
    for i, kinds in enumerate(configs):
        runs = results[i]
        label = " + ".join(f"{kinds.count(k)} {NAMES[k]}" for k in ("gvret", "ecu", "scd")
                           if k in kinds) or "none (the source alone)"
        cpu = statistics.median(r["serve_cpu_per_s"] * 100 for r in runs)
        per_frame = statistics.median(r["serve_cpu_us_per_frame"] for r in runs)
        cells = []
        for kind in ("gvret", "ecu", "scd"):
            if kind in kinds:
                cells.append(f"{statistics.median(r[kind]['p50_ms'] for r in runs):7.2f}/"
                             f"{statistics.median(r[kind]['p99_ms'] for r in runs):<7.2f}")
            else:
                cells.append(f"{'-':>15s}")
        print(f"{label:40s} {cpu:8.1f}% {per_frame:8.2f} {max(r['lost'] for r in runs):>5d}   "
              + "   ".join(f"{c:>21s}" for c in cells))
    print(json.dumps({"encoder": rates, "runs": results}))
    _load.finish(watch, {"encoder": rates, "runs": results})


if __name__ == "__main__":
    main()
