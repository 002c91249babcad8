"""`cancorder archive`: frames/s from Mosquitto into a Parquet lake folder, and bytes per frame.

    python -m bench.archive [--smoke]

Reported, in one run:

- frames/s one worker archives: LOGGERS loggers' batches (BATCH frames each, as `--mqtt`
  publishes them) are queued at the broker for the worker's session while it is stopped, then
  the worker is started and timed until the lake holds every frame (the broker sends as fast as
  the worker takes: the worker's own limit, start-up excluded: timed from its "subscribed"
  line); the worker's CPU-seconds per million frames;
- 1 vs 2 workers in one --group (the same queue split between two sessions);
- the broker's own limit beside it: `mosquitto_sub` (C) draining the same queue to /dev/null;
- bytes per frame in the lake beside candump `.log.gz` and `.blf` of the same frames (written by
  `cancorder dump FILE -o`);
- `--signals`: the decoded signals' layout, long (a row per value, what --dbc writes) vs wide
  (a column per signal, a table per message), timed in DuckDB (docs/archive.md).

The drain time includes the last file's --max-file-age (1 s); the CPU-seconds include each
worker's start-up (imports). On a shared machine single runs vary: each figure is the median of
RUNS runs. Only smoke-tested (load 1.5-1.8, 6,000 frames): it works; these synthetic frames
written by lake.OpenFile took 3.1 bytes/frame (delta-encoded times and numbers) beside
.log.gz 5.8 and .blf 8.9 in that run.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import _load  # noqa: E402
from tests.helpers import CancorderProcess, cancorder_env, wait_until  # noqa: E402
from tests.mosquitto import Mosquitto  # noqa: E402

SMOKE = "--smoke" in sys.argv
LOGGERS = 3 if SMOKE else 30
BATCHES = 20 if SMOKE else 400  # per logger
BATCH = 100  # frames per batch (5,000 frames/s published every 20 ms)
RUNS = 1 if SMOKE else 3
START_US = 1_765_000_000_000_000


def make_batches():
    """{topic: [payload]}: counter payloads, ids of a real bus's spread, 1 kHz per id."""
    from cancorder._fast import wire
    from cancorder.mqtt import payload

    out = {}
    for logger in range(LOGGERS):
        payloads = []
        for sequence in range(1, BATCHES + 1):
            first = (sequence - 1) * BATCH
            records = b"".join(
                wire.pack_frame(START_US + (first + i) * 200, 0x100 + (first + i) % 40, 0,
                                ((first + i) & 0xFFFF).to_bytes(2, "big") + bytes(6))
                for i in range(BATCH))
            payloads.append(payload.encode(0x1000 + logger, sequence, first, BATCH, records))
        out[f"cancorder/truck{logger}/can0"] = payloads
    return out


def publish(port, batches):
    from paho.mqtt import client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(topic, body, qos=1) for topic, bodies in batches.items()
             for body in bodies]
    for info in infos:
        info.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()


def lake_frames(lake):
    import pyarrow.parquet as pq

    total = 0
    for root, _, names in os.walk(os.path.join(lake, "frames")):
        for name in names:
            if name.endswith(".parquet"):
                total += pq.ParquetFile(os.path.join(root, name)).metadata.num_rows
    return total


def lake_bytes(lake):
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in
               os.walk(os.path.join(lake, "frames")) for name in names)


def process_cpu(pid):
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def archive_run(folder, batches, workers):
    """Seconds for ``workers`` workers to drain the queued batches, and their CPU-seconds."""
    broker = Mosquitto(os.path.join(folder, "broker")).start()
    lake = os.path.join(folder, "lake")
    group = ["--group", "bench"] if workers > 1 else []
    names = [f"w{i}" for i in range(workers)]
    try:
        def start(name):
            proc = CancorderProcess(["archive", broker.url("cancorder/+/+"), "--to", lake,
                                     "--name", name, "--max-file-age", "1s", *group])
            proc.wait_for("archive: subscribed to", 60)
            return proc

        for proc in [start(name) for name in names]:  # sessions made; then away
            proc.proc.kill()
            proc.proc.wait()
        publish(broker.port, batches)
        total = sum(len(v) for v in batches.values()) * BATCH
        procs = [start(name) for name in names]
        started = time.monotonic()
        if not wait_until(lambda: lake_frames(lake) >= total, 600):
            raise SystemExit(f"the lake has {lake_frames(lake)} of {total} frames")
        seconds = time.monotonic() - started
        cpu = sum(process_cpu(p.proc.pid) for p in procs)
        size = lake_bytes(lake)
        for proc in procs:
            proc.terminate()
        return seconds, cpu, total, size
    finally:
        broker.stop()
        shutil.rmtree(lake, ignore_errors=True)
        shutil.rmtree(os.path.join(folder, "broker"), ignore_errors=True)


def broker_limit(folder, batches):
    """Seconds for mosquitto_sub (C, QoS 1, a persistent session) to drain the same queue."""
    broker = Mosquitto(os.path.join(folder, "broker")).start()
    count = sum(len(v) for v in batches.values())
    base = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-V", "mqttv5",
            "-q", "1", "-c", "-i", "bench-sub", "-x", "3600", "-t", "cancorder/+/+"]
    try:
        first = subprocess.Popen(base, stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        first.kill()
        first.wait()
        publish(broker.port, batches)
        started = time.monotonic()
        subprocess.run(base + ["-C", str(count)], stdout=subprocess.DEVNULL, check=True,
                       timeout=600)
        return time.monotonic() - started
    finally:
        broker.stop()
        shutil.rmtree(os.path.join(folder, "broker"), ignore_errors=True)


def other_formats(folder, batches):
    """Bytes of the same frames as candump .log.gz and .blf (cancorder dump FILE -o)."""
    import pathlib

    from cancorder.mqtt import payload
    from tests.test_reassembly import write_candump

    frames = []
    for body in next(iter(batches.values())):
        frames += payload.decode(body).records
    source = write_candump(pathlib.Path(folder) / "one-logger.log",
                           [(t, i, f, bytes(d)) for t, i, f, d in frames])
    sizes = {}
    for suffix in (".log.gz", ".blf"):
        out = os.path.join(folder, "out" + suffix)
        subprocess.run([sys.executable, "-m", "cancorder", "dump", str(source), "-o", out],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                       env=cancorder_env(), timeout=300)
        sizes[suffix] = os.path.getsize(out) / len(frames)
    return sizes


def signals_layout(folder, frames=200_000, messages=10, signals=8):
    """(query, long ms, wide ms) best of 5, and the two layouts' bytes."""
    import duckdb
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    for layout in ("long", "wide"):
        os.makedirs(os.path.join(folder, layout), exist_ok=True)
    for m in range(messages):
        times = START_US + np.arange(frames) * 10_000 + m
        values = rng.random((signals, frames))
        wide = {"timestamp_us": times}
        wide.update({f"sig{s}": values[s] for s in range(signals)})
        pq.write_table(pa.table(wide), os.path.join(folder, "wide", f"msg{m}.parquet"),
                       compression="zstd")
        long = pa.table({"timestamp_us": np.tile(times, signals),
                         "message": [f"msg{m}"] * (frames * signals),
                         "signal": np.repeat([f"sig{s}" for s in range(signals)], frames),
                         "value": values.reshape(-1)})
        pq.write_table(long, os.path.join(folder, "long", f"msg{m}.parquet"),
                       compression="zstd", row_group_size=128 * 1024)

    def best(query):
        times = []
        for _ in range(5):
            started = time.perf_counter()
            duckdb.sql(query).fetchall()
            times.append(time.perf_counter() - started)
        return min(times) * 1000

    long_files, wide_file = f"{folder}/long/*.parquet", f"{folder}/wide/msg3.parquet"
    minute = "time_bucket(interval 1 minute, make_timestamp(timestamp_us))"
    queries = [
        ("one signal per minute",
         f"select {minute} m, avg(value) from read_parquet('{long_files}') where "
         "message = 'msg3' and signal = 'sig5' group by m",
         f"select {minute} m, avg(sig5) from read_parquet('{wide_file}') group by m"),
        ("two signals of one message",
         "select avg(value) filter (where signal = 'sig1'), avg(value) filter (where signal "
         f"= 'sig2') from read_parquet('{long_files}') where message = 'msg3'",
         f"select avg(sig1), avg(sig2) from read_parquet('{wide_file}')")]
    sizes = {layout: sum(os.path.getsize(os.path.join(folder, layout, name))
                         for name in os.listdir(os.path.join(folder, layout)))
             for layout in ("long", "wide")}
    return [(name, best(long_q), best(wide_q)) for name, long_q, wide_q in queries], sizes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny run: does it work")
    parser.add_argument("--signals", action="store_true",
                        help="also time the signals table's layouts (long vs wide) in DuckDB")
    _load.add_arguments(parser)
    args = parser.parse_args()
    watch = _load.start("bench.archive", args)
    batches = make_batches()
    figures = {}
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as folder:
        for workers in (1, 2):
            runs = [archive_run(folder, batches, workers) for _ in range(RUNS)]
            seconds = statistics.median(r[0] for r in runs)
            total = runs[0][2]
            cpu = statistics.median(r[1] for r in runs)
            figures[f"workers_{workers}"] = {
                "frames_per_s": total / seconds,
                "cpu_s_per_million_frames": cpu / total * 1e6,
                "lake_bytes_per_frame": runs[0][3] / total}
            print(f"{workers} worker(s): {total:,} frames in {seconds:.2f} s = "
                  f"{total / seconds:,.0f} frames/s; {cpu / total * 1e6:.1f} CPU-s per "
                  f"million frames; lake {runs[0][3] / total:.2f} bytes/frame")
        if shutil.which("mosquitto_sub"):
            limit = statistics.median(broker_limit(folder, batches) for _ in range(RUNS))
            total = LOGGERS * BATCHES * BATCH
            figures["mosquitto_sub_frames_per_s"] = total / limit
            print(f"broker limit (mosquitto_sub to /dev/null, QoS 1): {total / limit:,.0f} "
                  "frames/s")
        else:
            print("broker limit: not measured: mosquitto_sub is not installed (Debian: "
                  "apt install mosquitto-clients)")
        sizes = other_formats(folder, batches)
        figures["bytes_per_frame"] = sizes
        print("bytes/frame: " + ", ".join(f"{k} {v:.2f}" for k, v in sizes.items()))
        if args.signals:
            timings, layout_bytes = signals_layout(
                folder, frames=20_000 if SMOKE else 200_000)
            figures["signals_layout"] = {"timings_ms": timings, "bytes": layout_bytes}
            for name, long_ms, wide_ms in timings:
                print(f"signals, {name}: long {long_ms:.1f} ms, wide {wide_ms:.1f} ms")
            print(f"signals, bytes: long {layout_bytes['long']:,}, wide "
                  f"{layout_bytes['wide']:,}")
    _load.finish(watch, None if args.smoke else figures)


if __name__ == "__main__":
    main()
