"""Run by tests/mqtt/test_mqtt_broker.py inside ``unshare -m`` with a 600 KiB tmpfs at argv[1]
(the MQTT spool, --mqtt-spool-size 1M: the disk fills first) and a work folder at argv[2].

Issue 22 item 1: frames at 2,000/s, the broker away 15 s, back. The disk full must stop
nothing: serving goes on, the oldest batches are dropped (said once, counted), and the
subscriber is told the frames it will never get. Then a restart on the full spool serves.
Prints "ok" last, or fails with an assertion."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.emulators.slcan_adapter import SlcanEmulator  # noqa: E402
from tests.helpers import CancorderProcess, StreamClient  # noqa: E402
from tests.mosquitto import Mosquitto  # noqa: E402
from tests.mqtt.test_mqtt_broker import Stream, candump_numbers  # noqa: E402

RATE = 2000
FULL = r"MQTT spool .*: cannot write \(No space left on device\)"


def wait_last(path, last, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        numbers = candump_numbers(path) if os.path.exists(path) else []
        if (numbers and numbers[-1] >= last) or time.monotonic() > deadline:
            return numbers
        time.sleep(0.2)


def send(stream, count, proc):
    """Feed frames up to ``count`` at the stream's rate; ``proc`` must live all along."""
    stream.send_until(count)
    deadline = time.monotonic() + 120
    while stream.sent < count:
        assert proc.proc.poll() is None, f"exit {proc.proc.returncode}:\n{proc.log}"
        assert time.monotonic() < deadline, f"sent only {stream.sent} of {count}"
        time.sleep(0.05)


def main(spool, work):
    broker = Mosquitto(os.path.join(work, "broker")).start()
    emulator = SlcanEmulator()
    out = os.path.join(work, "dump.log")
    dump = CancorderProcess(["dump", broker.url("cc/t"), "-f", "candump"],
                            stdout=open(out, "w"))
    args = ["serve", "-i", "slcan", "-c", emulator.url, "-b", "1000000", "--no-zeroconf",
            "--mqtt", broker.url("cc/t"), "--mqtt-spool", spool, "--mqtt-spool-size", "1M"]
    serve = restarted = None
    try:
        dump.wait_for("subscribed to", 30)
        serve = CancorderProcess(args)
        client = StreamClient(serve.port())
        serve.wait_for("MQTT: publishing to")
        emulator.wait_open()
        total = 24 * RATE
        stream = Stream(emulator, 50 * RATE, RATE)
        send(stream, 4 * RATE, serve)
        broker.stop()  # 15 s away: 30,000 frames, about 930 KB for a 600 KiB disk
        send(stream, 19 * RATE, serve)
        assert serve.proc.poll() is None, serve.log
        broker.start()
        send(stream, total, serve)
        numbers = wait_last(out, total - 1, timeout=30)
        assert serve.proc.poll() is None, serve.log  # acknowledgements on a full disk
        serve.wait_for("MQTT: reconnected to", 30)
        serve.wait_for(FULL)
        # serving never stopped: every frame, in order, to the TCP client
        frames = client.wait_frames(total, timeout=30)
        assert [int.from_bytes(f[3], "big") for f in frames] == list(range(total))
        # the subscriber: the newest frames, in order, and a gap line for what it never gets
        assert numbers and numbers[-1] == total - 1 and numbers == sorted(set(numbers)), \
            (len(numbers), numbers[-3:])
        said = sum(int(m.group(1).replace(",", "")) for m in
                   re.finditer(r"cc/t: ([\d,]+) frames? missing", dump.log))
        assert said and len(numbers) + said == total, (len(numbers), said, dump.log)
        assert len(re.findall(FULL, serve.log)) == 1, serve.log  # said once

        # the broker away again until the disk is full, then a crash: the restart serves
        broker.stop()
        send(stream, 40 * RATE, serve)  # 16 s: 700 KB
        time.sleep(1.0)
        stat = os.statvfs(spool)
        assert stat.f_bavail * stat.f_frsize < 64 << 10, "the disk is not full"
        assert serve.proc.poll() is None, serve.log
        serve.proc.kill()
        serve.proc.wait()
        connections = emulator.connections
        restarted = CancorderProcess(args)
        client = StreamClient(restarted.port())
        restarted.wait_for(r"MQTT spool .*from an earlier run to publish")
        while emulator.connections == connections or not emulator.opened.is_set():
            time.sleep(0.05)
        send(stream, 46 * RATE, restarted)
        assert restarted.proc.poll() is None, restarted.log
        frames = client.wait_frames(6 * RATE, timeout=20)  # it serves
        assert [int.from_bytes(f[3], "big") for f in frames] == list(range(40 * RATE,
                                                                           46 * RATE))
        broker.start()
        send(stream, 50 * RATE, restarted)
        restarted.wait_for("MQTT: reconnected to", 30)
        numbers = wait_last(out, 50 * RATE - 1)
        assert numbers[-1] == 50 * RATE - 1, numbers[-3:]
        dump.wait_for(r"cc/t: the logger restarted \(a new session\)")  # the subscriber knows
        assert restarted.proc.poll() is None, restarted.log
        code = restarted.terminate()
        assert code == 0, restarted.log
        published, dropped = (int(n.replace(",", "")) for n in restarted.wait_for(
            r"([\d,]+) frames published in .*, ([\d,]+) frames dropped").groups())
        assert published and dropped, restarted.log
        for proc in (serve, restarted):
            assert "Traceback" not in proc.log, proc.log
    finally:
        for proc in (dump, serve, restarted):
            if proc is not None and proc.proc.poll() is None:
                proc.stop()
        emulator.close()
        broker.stop()
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
