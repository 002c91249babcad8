"""Component microbenchmarks of the core (not what a user runs: see bench.serve for that).

    python -m bench.core            (make bench)

(a) packing python-can Messages into records: frames/s for the compiled Packer, its
    pure-Python twin, and a baseline doing the same checks with one struct.pack per frame.
    The packer is on the path of python-can backends only (the SLCAN source makes records from
    lines itself), and there a frame costs the server far more than packing it (bench.serve's
    python-can column): this is the cost of one component, and is printed per frame for that
    comparison.
(b) the broadcaster handing pre-packed 10,000-frame batches (220 KB) to 1, 4 and 16 loopback
    clients in another process: frame-deliveries per second (frames x clients). With batches
    this large the loop does almost nothing per frame: the figure is the kernel's loopback
    copying, and the pure-Python twin, printed beside it, scores about the same. Each run lasts
    about a second (50 million deliveries); medians of 3.
"""
import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import threading
import time

import can
from bench import _load  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import cancorder._fast as fast  # noqa: E402

_HEADER = struct.Struct(">QIBB")


def struct_baseline(messages):
    """The same rules as Packer.pack, one struct.pack per frame."""
    out = []
    for m in messages:
        if m.is_remote_frame or m.is_error_frame:
            continue
        data = m.data
        n = len(data)
        flags = 1 if m.is_extended_id else 0
        if m.is_fd or n > 8:
            flags |= 2 | (4 if m.bitrate_switch else 0) | (8 if m.error_state_indicator else 0)
        out.append(_HEADER.pack(int(m.timestamp * 1e6 + 0.5), m.arbitration_id, flags, n))
        out.append(data)
    return b"".join(out)


def synthetic_messages(count):
    now = time.time()
    return [can.Message(timestamp=now + i * 1e-4, arbitration_id=(0x100 + i) & 0x7FF,
                        is_extended_id=False, data=i.to_bytes(8, "little"))
            for i in range(count)]


def rate(fn, frames, repeat=7):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return frames / statistics.median(times)


def bench_packing():
    msgs = synthetic_messages(10000)
    compiled = fast.variant("compiled").wire.Packer()
    pure = fast.variant("pure").wire.Packer()
    assert compiled.pack(msgs) == pure.pack(msgs) == struct_baseline(msgs)
    results = {
        "compiled": rate(lambda: compiled.pack(msgs), len(msgs)),
        "pure": rate(lambda: pure.pack(msgs), len(msgs)),
        "struct_baseline": rate(lambda: struct_baseline(msgs), len(msgs)),
    }
    one = [msgs[0]]
    results["compiled_one_at_a_time"] = rate(lambda: [compiled.pack(one) for _ in range(10000)],
                                             10000)
    results["ratio_compiled_vs_struct"] = results["compiled"] / results["struct_baseline"]
    return results


class _Listener:
    """A broadcaster on 127.0.0.1 in this process, run in its own thread."""

    def __init__(self, broadcast, **kwargs):
        import socket

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.b = broadcast.Broadcaster([self.sock], **kwargs)
        self.thread = threading.Thread(target=self.b.run, daemon=True)
        self.thread.start()

    def close(self):
        self.b.stop(5)
        self.thread.join(10)


def _start_clients(port, count, expected):
    proc = subprocess.Popen([sys.executable, "-m", "bench._clients", str(port), str(count),
                             str(expected)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _finish_clients(proc):
    line = proc.stdout.readline()
    proc.wait(60)
    return json.loads(line)


def bench_delivery(core, clients, deliveries=50_000_000, batch=10000):
    """One run: about ``deliveries`` frame-deliveries in all, whatever the client count."""
    variant = fast.variant(core)
    packed = variant.wire.Packer().pack(synthetic_messages(batch))
    rounds = max(8, deliveries // clients // batch)
    frames = rounds * batch
    server = _Listener(variant.broadcast)
    proc = _start_clients(server.port, clients, len(packed) * rounds)
    try:
        assert server.b.wait_for_clients(clients, 10)
        for i in range(rounds):
            server.b.submit(packed)
            if i % 8 == 7:  # keep a few batches in flight, not the whole run in memory
                server.b.wait_drained(30)
        result = _finish_clients(proc)
    finally:
        proc.kill()
        server.close()
    return frames * clients / result["elapsed"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _load.add_arguments(parser)
    args = parser.parse_args()
    watch = _load.start("bench.core", args)
    assert fast.IMPLEMENTATION == "compiled", "build the compiled core first (make dev)"
    print(f"cancorder core component microbenchmarks, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    packing = bench_packing()
    print("(a) packing python-can Messages, frames/s (median of 7 runs of 10,000 frames)")
    for key in ("compiled", "pure", "struct_baseline", "compiled_one_at_a_time"):
        print(f"    {key:24s} {packing[key]:>14,.0f}   ({1e6 / packing[key]:.3f} us per frame)")
    print(f"    compiled / struct baseline: {packing['ratio_compiled_vs_struct']:.2f}x")
    print("(b) broadcaster, pre-packed 220 KB batches: frame-deliveries/s (frames x clients), "
          "median of 3 runs of about 50,000,000 deliveries")
    delivery = {}
    for clients in (1, 4, 16):
        runs = {"compiled": [], "pure": []}
        for _ in range(3):
            for core in runs:
                runs[core].append(bench_delivery(core, clients))
        delivery[clients] = {core: statistics.median(values) for core, values in runs.items()}
        print(f"    {clients:2d} clients  compiled {delivery[clients]['compiled']:>14,.0f}   "
              f"pure {delivery[clients]['pure']:>14,.0f}")
    print(json.dumps({"packing": packing, "delivery": delivery}))
    _load.finish(watch, {"packing": packing, "delivery": delivery})


if __name__ == "__main__":
    main()
