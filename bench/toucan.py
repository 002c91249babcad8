"""How fast `cancorder touCAN` reads, against the fake CAN API V3 library (tests/fake_toucan).

    .venv/bin/python -m bench.toucan [--frames 200000] [--runs 5]

1. In-process: frames/s through ToucanSource.read for the packing it uses (one struct unpack of
   the can_message_t + wire.pack_frame) and for the alternatives: reading the fields through the
   ctypes bit-field attributes, and building a python-can Message per frame for wire.Packer.
   The bare can_read loop (no packing) is the floor the library itself sets.
2. End to end: `cancorder touCAN` as a subprocess, the fake fed bursts through its control
   socket, a TCP client counting records: frames/s and the server's CPU seconds per 100k frames.
3. SIGTERM to exit, with a client connected.

The fake library answers can_read from memory, so these figures are cancorder's cost; a real
TouCAN delivers at most about 20,000 frames/s (1 Mbit/s, classic CAN).
"""
import argparse
import os
import signal
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cancorder import _fast  # noqa: E402
from cancorder._fast import wire  # noqa: E402
from cancorder.sources import toucan  # noqa: E402
from tests import fake_toucan  # noqa: E402
from tests.helpers import CancorderProcess, StreamClient, cancorder_env  # noqa: E402
from bench import _load  # noqa: E402


class CtypesFieldsSource(toucan.ToucanSource):
    """Alternative: the fields read through ctypes attributes instead of one struct unpack."""

    def _read(self, timeout):
        lib, handle, msg, ref = self.lib, self._handle, self._message, self._message_ref
        rc = lib.can_read(handle, ref, int(timeout * 1000))
        records = []
        offset_us = self._offset_us
        while rc == 0:
            if not (msg.rtr or msg.sts):
                flags = wire.FLAG_EXT if msg.xtd else 0
                n = min(msg.dlc, 8)
                ts = msg.timestamp
                micros = ts.tv_sec * 1000000 + ts.tv_nsec // 1000 + offset_us
                records.append(wire.pack_frame(micros, msg.id, flags, bytes(msg.data[:n])))
            if len(records) >= toucan.MAX_BATCH:
                break
            rc = lib.can_read(handle, ref, 0)
        self.frames += len(records)
        return b"".join(records)


class MessagesSource(toucan.ToucanSource):
    """Alternative: a python-can Message per frame, packed by wire.Packer."""

    def _read(self, timeout):
        import can

        lib, handle, msg, ref = self.lib, self._handle, self._message, self._message_ref
        unpack = toucan._MESSAGE.unpack_from
        rc = lib.can_read(handle, ref, int(timeout * 1000))
        batch = []
        while rc == 0:
            can_id, bits, dlc, data, sec, nsec = unpack(msg)
            batch.append(can.Message(
                timestamp=sec + nsec / 1e9, arbitration_id=can_id,
                is_extended_id=bool(bits & toucan.TOUCAN_XTD),
                is_remote_frame=bool(bits & toucan.TOUCAN_RTR),
                is_error_frame=bool(bits & toucan.TOUCAN_STS), dlc=dlc,
                data=data[:toucan.CLASSIC_LENGTHS[dlc & 15]], check=False))
            if len(batch) >= toucan.MAX_BATCH:
                break
            rc = lib.can_read(handle, ref, 0)
        self.packer.ts_offset = self._offset_us / 1e6
        return self.packer.pack(batch)


def read_rate(source_class, fake, frames):
    source = source_class(library=fake.path)
    source.open()
    try:
        fake.push_burst(frames, 0x123)
        got = 0
        started = time.perf_counter()
        while got < frames * 22:  # 14-byte header + 8 bytes each
            records = source.read(0.1)
            if not records:
                raise RuntimeError(f"{source_class.__name__} lost frames: {got // 22} of {frames}")
            got += len(records)
        took = time.perf_counter() - started
    finally:
        source.close()
    return frames / took


def bare_read_rate(fake, frames):
    source = toucan.ToucanSource(library=fake.path)
    source.open()
    try:
        fake.push_burst(frames, 0x123)
        can_read, handle, ref = source.lib.can_read, source._handle, source._message_ref
        started = time.perf_counter()
        for _ in range(frames):
            can_read(handle, ref, 0)
        took = time.perf_counter() - started
    finally:
        source.close()
    return frames / took


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_with_a_client(library):
    """`cancorder touCAN` on the fake, its control, and a connected client."""
    control = fake_toucan.FakeToucanControl(tempfile.mkdtemp(prefix="toucan-bench-"))
    server = CancorderProcess(["touCAN", "--library", library, "--no-zeroconf"],
                              env=cancorder_env(**control.env()))
    client = StreamClient(server.port())
    server.wait_for("connected")
    return server, control, client


def end_to_end(library, frames, burst=20000):
    server, control, client = serve_with_a_client(library)
    try:
        cpu_before = cpu_seconds(server.proc.pid)
        started = time.perf_counter()
        sent = 0
        while sent < frames:
            count = min(burst, frames - sent)
            control.send(f"burst {count} 123")
            sent += count
            client.wait_frames(sent, timeout=60)  # the fake's queue holds 65536: pace bursts
        took = time.perf_counter() - started
        cpu = cpu_seconds(server.proc.pid) - cpu_before
        client.close()
        sigterm = time.perf_counter()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(10)
        stop_took = time.perf_counter() - sigterm
    finally:
        server.stop()
        control.close()
    return frames / took, cpu / frames * 100000, stop_took


def sigterm_latency(library, runs):
    results = []
    for _ in range(runs):
        server, control, client = serve_with_a_client(library)
        try:
            started = time.perf_counter()
            server.proc.send_signal(signal.SIGTERM)
            server.proc.wait(10)
            results.append(time.perf_counter() - started)
            client.close()
        finally:
            server.stop()
            control.close()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200000)
    parser.add_argument("--runs", type=int, default=5, help="SIGTERM measurements")
    _load.add_arguments(parser)
    args = parser.parse_args()
    watch = _load.start("bench.toucan", args)
    library = fake_toucan.build(tempfile.mkdtemp(prefix="toucan-bench-"))
    fake = fake_toucan.FakeToucanLibrary(library)
    per_batch = min(args.frames, 60000)  # the fake's queue holds 65536
    print(f"core: {_fast.IMPLEMENTATION}, Python {sys.version.split()[0]}, "
          f"{per_batch:,} 8-byte frames queued in the fake library")
    print(f"  can_read alone (ctypes call)          {bare_read_rate(fake, per_batch):>10,.0f} frames/s")
    for label, source_class in (("struct unpack + wire.pack_frame (used)", toucan.ToucanSource),
                                ("ctypes fields + wire.pack_frame", CtypesFieldsSource),
                                ("can.Message + wire.Packer", MessagesSource)):
        rates = [read_rate(source_class, fake, per_batch) for _ in range(3)]
        print(f"  {label:<38}{max(rates):>10,.0f} frames/s (best of 3)")
    rate, cpu, _ = end_to_end(library, args.frames)
    print(f"end to end, {args.frames:,} frames to one TCP client: {rate:,.0f} frames/s, "
          f"server CPU {cpu:.2f} s per 100k frames")
    stops = sigterm_latency(library, args.runs)
    print(f"SIGTERM to exit with a client connected: median {statistics.median(stops) * 1000:.0f} ms, "
          f"max {max(stops) * 1000:.0f} ms ({args.runs} runs)")
    _load.finish(watch, {"end_to_end_frames_per_s": rate, "cpu_s_per_100k": cpu,
                         "sigterm_s": stops})


if __name__ == "__main__":
    main()
