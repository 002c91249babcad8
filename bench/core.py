"""Benchmarks of the core: packing, delivery to many clients, cost at a real bus rate.

    python -m bench.core            (make bench)

(a) packing: frames/s for the compiled Packer, its pure-Python twin, and a baseline doing the
    same checks with one struct.pack per frame;
(b) delivery: frame-deliveries per second (frames x clients) to 1, 4 and 16 loopback clients
    reading in another process, the source handing over large batches;
(c) cost at a real bus rate: 30,000 frames/s handed over one Message at a time (as python-can's
    recv does) through the server's pump to 4 clients: CPU-seconds per 10,000 frames of the
    source and broadcaster threads, and latency from hand-over to bytes read by a client.
All in one run on one machine; medians of repeated runs where it is cheap to repeat.
"""
import json
import os
import statistics
import struct
import subprocess
import sys
import threading
import time

import can

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import cancorder._fast as fast  # noqa: E402
from cancorder.server import Bus, BusOptions, Server, ServerOptions  # noqa: E402
from cancorder.sources.base import Source  # noqa: E402

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

    def __init__(self, client_buffer=256 << 20, **kwargs):
        import socket

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.b = fast.broadcast.Broadcaster([self.sock], client_buffer=client_buffer, **kwargs)
        self.thread = threading.Thread(target=self.b.run, daemon=True)
        self.thread.start()

    def close(self):
        self.b.stop(5)
        self.thread.join(10)


def _start_clients(port, count, expected, latency=False):
    proc = subprocess.Popen([sys.executable, "-m", "bench._clients", str(port), str(count),
                             str(expected)] + (["--latency"] if latency else []),
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _finish_clients(proc):
    line = proc.stdout.readline()
    proc.wait(60)
    return json.loads(line)


def bench_delivery(clients, frames=2_000_000, batch=10000):
    packed = fast.wire.Packer().pack(synthetic_messages(batch))
    rounds = frames // batch
    server = _Listener()
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


class PacedSource(Source):
    """Hands over one Message per read() at a fixed rate, stamped with the hand-over time."""

    description = "synthetic 30,000 frames/s"

    def __init__(self, rate, total, control=False):
        super().__init__()
        self.control = control  # everything but packing and handing over: the baseline
        self.interval = 1.0 / rate
        self.total = total
        self.sent = 0
        self.msg = can.Message(arbitration_id=0x123, is_extended_id=False, data=bytes(8))
        self.start = None

    def open(self):
        pass

    def close(self):
        pass

    def use_clients(self, gate):
        self.clients = gate

    def _read(self, timeout):
        if self.start is None:
            if self.clients.count() < 4:
                time.sleep(0.01)
                return b""
            self.loop_clock = time.pthread_getcpuclockid(
                next(t for t in threading.enumerate()
                     if t.name.startswith("broadcaster")).ident)
            self.cpu_start = (time.thread_time(), time.clock_gettime(self.loop_clock))
            self.start = time.perf_counter()
        if self.sent >= self.total:
            self.wall = time.perf_counter() - self.start
            self.cpu_end = (time.thread_time(), time.clock_gettime(self.loop_clock))
            return None
        due = self.start + self.sent * self.interval
        wait = due - time.perf_counter()
        if wait > 0.0005:  # like a driver's blocking recv: sleep until the frame is there
            time.sleep(wait)
        self.sent += 1
        msg = self.msg
        msg.timestamp = time.time()
        if self.control:
            return b""
        return self.packer.pack([msg])


def bench_bus_rate(rate=30000, seconds=10, clients=4, coalesce=0.001):
    """Runs twice: for real, and as a control whose source skips packing and hand-over, so that
    the synthetic source's own pacing and Message handling can be subtracted."""
    real = _paced_run(rate, seconds, clients, coalesce, control=False)
    control = _paced_run(rate, seconds, clients, coalesce, control=True)
    total = rate * seconds
    pack_and_submit = max(0.0, real["source_cpu"] - control["source_cpu"])
    cost = pack_and_submit + real["loop_cpu"]
    return {
        "frames": total, "clients": clients, "coalesce_ms": coalesce * 1000,
        "achieved_rate": total / real["wall"],
        "cpu_s_per_10k_pack_and_submit": pack_and_submit / total * 10000,
        "cpu_s_per_10k_broadcaster": real["loop_cpu"] / total * 10000,
        "cpu_s_per_10k_synthetic_source": control["source_cpu"] / total * 10000,
        "cpu_percent_of_a_core": cost / real["wall"] * 100,
        "latency_p50_ms": real["p50_ms"], "latency_p99_ms": real["p99_ms"],
        "latency_max_ms": real["max_ms"],
    }


def _paced_run(rate, seconds, clients, coalesce, control):
    total = rate * seconds
    source = PacedSource(rate, total, control)
    bus = Bus(source, BusOptions(bind="127.0.0.1", port=None, zeroconf=False))
    server = Server([bus], ServerOptions(coalesce=coalesce, drain_timeout=5))
    runner = threading.Thread(target=server.run, daemon=True)
    runner.start()
    while bus.broadcaster is None or bus.port is None:
        time.sleep(0.01)
    proc = _start_clients(bus.port, clients, 0 if control else 22 * total, latency=True)
    result = {} if control else _finish_clients(proc)
    runner.join(20)
    proc.kill()
    proc.wait()
    result.update(wall=source.wall, source_cpu=source.cpu_end[0] - source.cpu_start[0],
                  loop_cpu=source.cpu_end[1] - source.cpu_start[1])
    return result


def main():
    assert fast.IMPLEMENTATION == "compiled", "build the compiled core first (make dev)"
    print(f"cancorder core benchmark, Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    packing = bench_packing()
    print("(a) packing, frames/s (median of 7 runs of 10,000 frames)")
    for key in ("compiled", "pure", "struct_baseline", "compiled_one_at_a_time"):
        print(f"    {key:24s} {packing[key]:>14,.0f}")
    print(f"    compiled / struct baseline: {packing['ratio_compiled_vs_struct']:.2f}x")
    print("(b) delivery, frame-deliveries/s (2,000,000 frames in batches of 10,000)")
    delivery = {}
    for clients in (1, 4, 16):
        delivery[clients] = bench_delivery(clients)
        print(f"    {clients:2d} clients {delivery[clients]:>16,.0f}")
    print("(c) 30,000 frames/s one Message at a time, 4 clients, 10 s")
    bus = bench_bus_rate()
    for key, value in bus.items():
        print(f"    {key:30s} {value:,.4g}" if isinstance(value, float) else
              f"    {key:30s} {value}")
    print(json.dumps({"packing": packing, "delivery": delivery, "bus_rate": bus}))


if __name__ == "__main__":
    main()
