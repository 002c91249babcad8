"""socketcand clients beside ECUconnect clients: CPU and latency of `cancorder serve`.

    python -m bench.socketcand [--seconds 10] [--rate 30000]

An SLCAN emulator in its own process writes 29-bit 8-byte frames at RATE frames/s for SECONDS;
`cancorder serve -i slcan --socketcand` reads them. Five runs in one go: no client (the
reference: what reading and parsing SLCAN costs), four ECUconnect clients, four socketcand
clients (raw mode, as python-can opens it), both at once, and four ECUconnect clients of a
serve without --socketcand (what the option costs when nobody uses it). The
clients live in one helper process (one select loop); each counts frames and, for the first
whole frame of every read, its delay (read time minus the frame's timestamp, which the SLCAN
source takes from the host clock at the read): the oldest frame of each read, so the figures
are an upper bound. Reported: CPU-seconds of the serve process per second of traffic, frames
each client got, delay p50/p99/max.
"""
import argparse
import json
import os
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.serve import process_cpu  # noqa: E402
from tests.helpers import CancorderProcess, cancorder_env  # noqa: E402
from bench import _load  # noqa: E402


# ---- the client process ----

def _socketcand_client(port, bus):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(10)
    assert sock.recv(64) == b"< hi >"
    sock.sendall(f"< open {bus} >".encode())
    assert sock.recv(64) == b"< ok >"
    sock.sendall(b"< rawmode >")
    assert sock.recv(64) == b"< ok >"
    return sock


def clients_main(kinds, ecu_port, scd_port, bus, expected):
    """Connect the clients, say "ready", read until each got ``expected`` frames."""
    from cancorder._fast import wire

    selector = selectors.DefaultSelector()
    state = {}
    for kind in kinds:
        sock = socket.create_connection(("127.0.0.1", ecu_port)) if kind == "ecu" \
            else _socketcand_client(scd_port, bus)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        state[sock] = {"kind": kind, "frames": 0, "pending": b"",
                       "decoder": wire.StreamDecoder() if kind == "ecu" else None}
    print("ready", flush=True)
    delays = []
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
            if entry["kind"] == "ecu":
                frames = entry["decoder"].feed(data)
                if frames:
                    delays.append(now - frames[0][0] / 1e6)
                entry["frames"] += len(frames)
            else:
                text = entry["pending"] + data
                cut = text.rfind(b">") + 1
                complete, entry["pending"] = text[:cut], text[cut:]
                count = complete.count(b">")
                if count:
                    first = complete[:complete.index(b">")].split()
                    delays.append(now - float(first[3]))
                entry["frames"] += count
            if entry["frames"] >= expected:
                selector.unregister(sock)
                remaining -= 1
    delays.sort()
    result = {"frames": {s["kind"] + str(i): s["frames"] for i, s in enumerate(state.values())},
              "p50_ms": delays[len(delays) // 2] * 1000,
              "p99_ms": delays[int(len(delays) * 0.99)] * 1000,
              "max_ms": delays[-1] * 1000, "reads": len(delays)}
    print(json.dumps(result), flush=True)


# ---- the encoder alone ----

def encoder_rates():
    """Frames/s of FrameEncoder.encode on 1,000-frame batches, compiled and pure."""
    import cancorder._fast as fast
    from cancorder._fast.wire import pack_frame

    records = b"".join(pack_frame(1_700_000_000_000_000 + i, i % 0x20000000, 1,
                                  i.to_bytes(8, "big")) for i in range(1000))
    rates = {}
    for kind, batches in (("compiled", 300), ("pure", 5)):
        encoder = fast.variant(kind).socketcand.FrameEncoder()
        start = time.perf_counter()
        for _ in range(batches):
            encoder.encode(records)
        rates[kind] = batches * 1000 / (time.perf_counter() - start)
    return rates


# ---- one run ----

def run(kinds, rate, seconds, socketcand=True):
    count = rate * seconds
    emulator = subprocess.Popen(
        [sys.executable, "-m", "bench._slcan_blast", "--count", str(count),
         "--rate", str(rate)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, env=cancorder_env())
    url = f"socket://127.0.0.1:{int(emulator.stdout.readline())}"
    server = CancorderProcess(["serve", "-i", "slcan", "-c", url, "-b", "1000000",
                               "--no-zeroconf", "--bind", "127.0.0.1", "--client-buffer",
                               "64M"] +
                              (["--socketcand", "127.0.0.1:0", "--no-beacon"] if socketcand
                               else []))
    clients = None
    try:
        ecu_port = server.port()
        scd_port = int(server.wait_for(r"socketcand serves bus '\S+' at \S+:(\d+)").group(1)) \
            if socketcand else 0
        if kinds:
            clients = subprocess.Popen(
                [sys.executable, "-m", "bench.socketcand", "--clients", ",".join(kinds),
                 str(ecu_port), str(scd_port), url, str(count)],
                cwd=ROOT, stdout=subprocess.PIPE, text=True, env=cancorder_env())
            assert clients.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # past the rawmode grace
        cpu0 = process_cpu(server.proc.pid)
        start = time.monotonic()
        emulator.stdin.write("go\n")
        emulator.stdin.flush()
        if kinds:
            result = json.loads(clients.stdout.readline())
        else:  # the reference: the source alone (reading and parsing SLCAN), no client
            time.sleep(seconds + 0.05)
            result = {"frames": {}, "p50_ms": float("nan"), "p99_ms": float("nan"),
                      "max_ms": float("nan")}
        elapsed = time.monotonic() - start
        cpu = process_cpu(server.proc.pid) - cpu0
        result.update(kinds=kinds, sent=count, elapsed_s=elapsed,
                      serve_cpu_per_s=cpu / elapsed,
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=30000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="the four runs are repeated this many times, interleaved; the "
                             "table shows medians (the machine is shared and noisy)")
    parser.add_argument("--clients", nargs=5, metavar="X", help=argparse.SUPPRESS)
    _load.add_arguments(parser)
    args = parser.parse_args()
    if args.clients:
        kinds, ecu_port, scd_port, bus, expected = args.clients
        clients_main(kinds.split(","), int(ecu_port), int(scd_port), bus, int(expected))
        return
    watch = _load.start("bench.socketcand", args)
    rates = encoder_rates()
    print(f"encoding frame lines: compiled {rates['compiled']:,.0f} frames/s, pure "
          f"{rates['pure']:,.0f} frames/s")
    # (clients, serve with --socketcand)
    configs = [([], True), (["ecu"] * 4, True), (["scd"] * 4, True),
               (["ecu"] * 4 + ["scd"] * 4, True), (["ecu"] * 4, False)]
    results = {i: [] for i in range(len(configs))}
    for _ in range(args.rounds):
        for i, (kinds, socketcand) in enumerate(configs):
            results[i].append(run(kinds, args.rate, args.seconds, socketcand))
    names = {"ecu": "ECUconnect", "scd": "socketcand"}
    print(f"{args.rate:,} frames/s for {args.seconds} s through cancorder serve -i slcan, "
          f"median of {args.rounds} rounds (CPU range in brackets)")
    print(f"{'clients':44s} {'serve CPU':>18s} {'lost':>5s} {'p50 ms':>7s} {'p99 ms':>7s} "
          f"{'max ms':>7s}")
    for i, (kinds, socketcand) in enumerate(configs):
        runs = results[i]
        label = " + ".join(f"{kinds.count(k)} {names[k]}" for k in ("ecu", "scd")
                           if k in kinds) or "none (the source alone)"
        if not socketcand:
            label += ", no --socketcand"
        cpu = sorted(r["serve_cpu_per_s"] * 100 for r in runs)
        print(f"{label:44s} {statistics.median(cpu):5.1f}% [{cpu[0]:4.1f}-{cpu[-1]:4.1f}] "
              f"{max(r['lost'] for r in runs):>5d} "
              f"{statistics.median(r['p50_ms'] for r in runs):7.2f} "
              f"{statistics.median(r['p99_ms'] for r in runs):7.2f} "
              f"{statistics.median(r['max_ms'] for r in runs):7.2f}")
    print(json.dumps({"encoder": rates, "runs": results}))
    _load.finish(watch, {"encoder": rates, "runs": results})


if __name__ == "__main__":
    main()
