"""MQTT publishing through a real Mosquitto: publisher CPU, end-to-end latency, spool rates.

    python -m bench.mqtt

An SLCAN emulator (own process) paces 30,000 frames/s for 10 s into `cancorder serve`; one
subscriber (paho, in this process) receives the batches from a Mosquitto started here on a
loopback port. Reported, in one run:

- CPU-seconds of the serve process per 10,000 frames, with --mqtt and, as the reference, the
  same stream without it (so the ratio is what publishing costs); three runs of each,
  alternating, and their medians (single runs vary by 2x on the shared machine);
- end-to-end latency per frame: the subscriber's clock minus the frame's timestamp (stamped by
  cancorder when the SLCAN line arrived), p50 and p99; the 50 ms batching is part of it;
- the spool: the broker stopped while the 10 s stream goes into --mqtt-spool (write rate =
  what the spool absorbed per second, paced by the bus), then started: the replay rate is the
  spooled frames over the time from the first to the last of them reaching the subscriber;
- the DiskSpool class alone: append and replay (read + acknowledge) rates in MB/s of 64 KB
  batches, with nothing else running.
"""
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.serve import process_cpu  # noqa: E402
from cancorder.mqtt import payload  # noqa: E402
from tests.helpers import CancorderProcess, cancorder_env  # noqa: E402
from tests.mosquitto import Mosquitto  # noqa: E402
from bench import _load  # noqa: E402

RATE = 30000
SECONDS = 10
COUNT = RATE * SECONDS
PAIRS = 3


class Subscriber:
    """Counts frames, checks their order, keeps each frame's delay (now - its timestamp)."""

    def __init__(self, port, topic="cancorder/#"):
        from paho.mqtt import client as mqtt

        self.frames = 0
        self.bad = 0
        self.delays = []
        self.first = self.last = None
        self.seen = set()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def _on_message(self, client, userdata, message):
        if message.topic.endswith("/status"):
            return
        now = time.time()
        batch = payload.decode(message.payload)
        if (batch.session, batch.sequence) in self.seen:
            return
        self.seen.add((batch.session, batch.sequence))
        if self.first is None:
            self.first = now
        self.last = now
        expected = self.frames
        delays = self.delays
        for micros, _, _, data in batch.records:
            if data != expected.to_bytes(8, "big"):
                self.bad += 1
            expected += 1
            delays.append(now - micros / 1e6)
        self.frames = expected

    def wait(self, count, timeout=120):
        deadline = time.monotonic() + timeout
        while self.frames < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def emulator(count, rate):
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench._slcan_blast", "--count", str(count),
         "--rate", str(rate)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, env=cancorder_env())
    return proc, int(proc.stdout.readline())


def stop_emulator(proc):
    proc.stdin.close()
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)


def serve(port, *extra):
    server = CancorderProcess(["serve", "-i", "slcan", "-c", f"socket://127.0.0.1:{port}",
                               "-b", "1000000", "--no-zeroconf", "--bind", "127.0.0.1", *extra])
    server.port()
    return server


def wait_sent(emu, timeout=120):
    """The emulator says on stderr when it has written everything; we read its exit instead:
    COUNT frames at RATE take SECONDS, plus a margin for the loaded machine."""
    time.sleep(SECONDS + 1.0)


def stream_run(broker, mqtt):
    """One paced stream; returns CPU per 10k frames (and the subscriber when mqtt)."""
    emu, port = emulator(COUNT, RATE)
    extra = ["--mqtt", broker.url("cancorder/bench/{channel}")] if mqtt else []
    server = serve(port, *extra)
    subscriber = Subscriber(broker.port) if mqtt else None
    try:
        if mqtt:
            server.wait_for("MQTT: publishing to")
        time.sleep(0.5)
        cpu0 = process_cpu(server.proc.pid)
        emu.stdin.write("go\n")
        emu.stdin.flush()
        if mqtt:
            subscriber.wait(COUNT)
        else:
            wait_sent(emu)
            time.sleep(0.5)
        cpu = process_cpu(server.proc.pid) - cpu0
        return cpu / COUNT * 10000, subscriber
    finally:
        server.stop()
        stop_emulator(emu)
        if subscriber is not None:
            subscriber.close()


def spool_run(broker, folder):
    """Broker down during the stream, then up: the spool's write and replay rates."""
    spool = os.path.join(folder, "spool")
    emu, port = emulator(COUNT, RATE)
    server = serve(port, "--mqtt", broker.url("cancorder/spool/{channel}"), "--mqtt-spool", spool)
    try:
        server.wait_for("MQTT: publishing to")
        broker.stop()
        server.wait_for("lost the MQTT broker")
        start = time.monotonic()
        emu.stdin.write("go\n")
        emu.stdin.flush()
        wait_sent(emu)
        time.sleep(1.0)  # the last batches reach the spool
        spooled = sum(os.path.getsize(os.path.join(spool, n)) for n in os.listdir(spool))
        write_seconds = time.monotonic() - start
        broker.start()
        subscriber = Subscriber(broker.port, "cancorder/spool/#")
        subscriber.wait(COUNT, timeout=180)
        subscriber.close()
        replay = subscriber.frames / max(subscriber.last - subscriber.first, 1e-9)
        return {"spooled_bytes": spooled, "spool_write_MBps": spooled / write_seconds / 1e6,
                "replayed_frames": subscriber.frames, "replay_frames_per_s": replay,
                "replay_lost_or_altered": COUNT - subscriber.frames + subscriber.bad}
    finally:
        server.stop()
        stop_emulator(emu)


def spool_alone(folder, total=256 << 20):
    from cancorder._fast import wire
    from cancorder.mqtt.spool import DiskSpool

    records = b"".join(wire.pack_frame(i, i & 0x7FF, 0, bytes(8)) for i in range(2970))
    data = payload.encode(1, 1, 0, 2970, records)  # ~65 KB, one full batch
    spool = DiskSpool(os.path.join(folder, "alone"), 2 * total)
    count = total // len(data)
    start = time.perf_counter()
    for _ in range(count):
        spool.append(data, 2970)
    write = time.perf_counter() - start
    start = time.perf_counter()
    while True:
        item = spool.next_unsent()
        if item is None:
            break
        spool.commit(item[0])
    read = time.perf_counter() - start
    spool.close()
    size = count * len(data)
    return {"append_MBps": size / write / 1e6, "replay_MBps": size / read / 1e6,
            "batches": count}


def main():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _load.add_arguments(parser)
    watch = _load.start("bench.mqtt", parser.parse_args())
    folder = tempfile.mkdtemp(prefix="bench-mqtt-")
    broker = Mosquitto(os.path.join(folder, "broker")).start()
    runs = []
    try:
        for _ in range(PAIRS):  # reference and --mqtt alternate: the machine's load hits both
            reference_cpu, _ = stream_run(broker, mqtt=False)
            mqtt_cpu, subscriber = stream_run(broker, mqtt=True)
            delays = sorted(subscriber.delays)
            runs.append({"cpu_s_per_10k_without_mqtt": reference_cpu,
                         "cpu_s_per_10k_with_mqtt": mqtt_cpu,
                         "received": subscriber.frames,
                         "lost_or_altered": COUNT - subscriber.frames + subscriber.bad,
                         "latency_ms_p50": 1000 * statistics.median(delays),
                         "latency_ms_p99": 1000 * delays[int(len(delays) * 0.99)]})
        spool = spool_run(broker, folder)
    finally:
        broker.stop()
    alone = spool_alone(folder)

    def median(key):
        return statistics.median(run[key] for run in runs)

    reference_cpu, mqtt_cpu = median("cpu_s_per_10k_without_mqtt"), median("cpu_s_per_10k_with_mqtt")
    print(f"{RATE:,} frames/s for {SECONDS} s through Mosquitto, one subscriber; medians of "
          f"{PAIRS} runs each")
    print(f"  received {sum(r['received'] for r in runs):,} of {PAIRS * COUNT:,}, lost or "
          f"altered {sum(r['lost_or_altered'] for r in runs)}")
    print(f"  serve CPU-s per 10k frames: {reference_cpu:.4f} without --mqtt, {mqtt_cpu:.4f} "
          f"with ({mqtt_cpu / reference_cpu:.1f}x); runs: "
          + ", ".join(f"{r['cpu_s_per_10k_without_mqtt']:.4f}/{r['cpu_s_per_10k_with_mqtt']:.4f}"
                      for r in runs))
    print(f"  latency p50 {median('latency_ms_p50'):.1f} ms, p99 {median('latency_ms_p99'):.1f} ms")
    print(f"  spool while the broker is down: {spool['spooled_bytes'] / 1e6:.1f} MB written at "
          f"{spool['spool_write_MBps']:.2f} MB/s (the bus's pace); replay "
          f"{spool['replay_frames_per_s']:,.0f} frames/s, lost or altered "
          f"{spool['replay_lost_or_altered']}")
    print(f"  DiskSpool alone, 64 KB batches: append {alone['append_MBps']:.0f} MB/s, replay "
          f"{alone['replay_MBps']:.0f} MB/s")
    figures = {"rate": RATE, "frames": COUNT, "runs": runs, **spool, "spool_alone": alone}
    print(json.dumps(figures))
    _load.finish(watch, figures)


if __name__ == "__main__":
    main()
