"""MQTT end to end against a real Mosquitto started per test (tests/mosquitto.py):
SLCAN emulator -> cancorder serve --mqtt -> broker -> cancorder dump mqtt:// / relay."""
import json
import os
import re
import threading
import time

import pytest

from tests.emulators.slcan_adapter import build_lines
from tests.helpers import ROOT, served_client
from tests.netns import run_in_netns
from tests.test_monitor import tmux_session  # noqa: F401 (a fixture)

HERE = os.path.join(ROOT, "tests")  # the namespace scripts
TOPIC = "cancorder/truck42/can0"
SERVE_TOPIC = "cancorder/truck42/{channel}"

class Stream:
    """Feeds the emulator frame lines (frame i carries i) at ``rate`` frames/s from a thread."""

    def __init__(self, emulator, total, rate):
        self.emulator = emulator
        self.lines = build_lines(total)
        self.rate = rate
        self.sent = 0
        self._until = 0
        self._more = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def send_until(self, count):
        with self._more:
            self._until = min(count, len(self.lines))
            self._more.notify()

    def wait_sent(self, count=None, timeout=120):
        count = count or self._until
        deadline = time.monotonic() + timeout
        while self.sent < count:
            assert time.monotonic() < deadline, f"sent only {self.sent} of {count}"
            time.sleep(0.02)

    def _run(self):
        step = max(1, self.rate // 200)
        start = time.monotonic()
        base = 0
        while True:
            with self._more:
                while self.sent >= self._until:
                    self._more.wait()
                    start, base = time.monotonic(), self.sent
            end = min(self.sent + step, self._until)
            self.emulator.send_lines(b"".join(self.lines[self.sent:end]))
            self.sent = end
            delay = start + (self.sent - base) / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def candump_numbers(path):
    """The frame numbers in a candump file written by dump (payload = the frame number)."""
    with open(path) as handle:
        return [int(line.split()[2].split("#")[1], 16) for line in handle if "#" in line]


def wait_lines(path, count, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        numbers = candump_numbers(path) if os.path.exists(path) else []
        if len(numbers) >= count or time.monotonic() > deadline:
            return numbers
        time.sleep(0.2)


def start_dump(cancorder_process, tmp_path, url, *extra, name="dump.log"):
    out = str(tmp_path / name)
    proc = cancorder_process("dump", url, "-f", "candump", *extra, stdout=open(out, "w"))
    proc.wait_for("subscribed to", 30)
    return proc, out


def start_serve(cancorder_process, emulator, url, *extra):
    proc = cancorder_process("serve", "-i", "slcan", "-c", emulator.url, "--no-zeroconf",
                             "--mqtt", url, *extra)
    proc.port()
    return proc


def test_every_frame_in_order_through_the_broker(broker, slcan_emulator, cancorder_process,
                                                 tmp_path):
    mosquitto = broker()
    dump, out = start_dump(cancorder_process, tmp_path, mosquitto.url("cancorder/+/+"))
    json_dump, json_out = start_dump(cancorder_process, tmp_path, mosquitto.url("cancorder/#"),
                                     "-f", "json", "-o", str(tmp_path / "copy.log"),
                                     name="dump.json")
    serve = start_serve(cancorder_process, slcan_emulator, mosquitto.url(SERVE_TOPIC))
    serve.wait_for("MQTT: publishing to mqtt://127.0.0.1")
    slcan_emulator.wait_open()
    stream = Stream(slcan_emulator, 20000, 10000)
    stream.send_until(20000)
    assert wait_lines(out, 20000) == list(range(20000))
    with open(out) as handle:
        first = handle.readline().split()
    assert first[1] == "truck42/socket:__127.0.0.1:%d" % slcan_emulator.port  # logger/channel
    assert serve.terminate() == 0
    assert "MQTT mqtt://127.0.0.1" in serve.wait_for(r"20,000 frames published in").string
    for proc in (dump, json_dump):
        assert proc.terminate() == 0
    with open(json_out) as handle:
        objects = [json.loads(line) for line in handle]
    assert len(objects) == 20000 and objects[5]["data"] == (5).to_bytes(8, "big").hex()
    assert {o["channel"] for o in objects} == {first[1]}
    assert candump_numbers(tmp_path / "copy.log") == list(range(20000))  # -o as well
    assert "20,000 frames" in json_dump.log


@pytest.mark.serial
def test_broker_down_ten_seconds_every_frame_exactly_once(broker, slcan_emulator,
                                                          cancorder_process, tmp_path):
    mosquitto = broker()
    spool = tmp_path / "spool"
    dump, out = start_dump(cancorder_process, tmp_path, mosquitto.url("cancorder/+/+"))
    serve = start_serve(cancorder_process, slcan_emulator, mosquitto.url(SERVE_TOPIC),
                        "--mqtt-spool", str(spool))
    serve.wait_for("MQTT: publishing to")
    slcan_emulator.wait_open()
    rate, seconds = 20000, 16
    total = rate * seconds
    stream = Stream(slcan_emulator, total, rate)
    client = served_client(serve)  # a TCP client is served all along
    stream.send_until(total)
    stream.wait_sent(3 * rate)
    mosquitto.stop()
    down_at = time.monotonic()
    serve.wait_for("lost the MQTT broker")
    stream.wait_sent(11 * rate)
    assert any(name.endswith(".seg") for name in os.listdir(spool))  # spooling to disk
    time.sleep(max(0.0, 10 - (time.monotonic() - down_at)))
    mosquitto.start()
    stream.wait_sent(total)
    numbers = wait_lines(out, total, timeout=120)
    assert len(numbers) == total and numbers == list(range(total)), \
        f"{len(numbers)} frames, first wrong at {next((i for i, n in enumerate(numbers) if n != i), None)}"
    assert len(client.wait_frames(total, timeout=60)) == total
    serve.wait_for("MQTT: reconnected to")
    deadline = time.monotonic() + 20
    while [n for n in os.listdir(spool) if n.endswith(".seg")] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [n for n in os.listdir(spool) if n != "lock"] == []  # the spool is empty
    client.close()
    assert serve.terminate() == 0
    assert dump.terminate() == 0
    assert re.search(r": [\d,]+ frames missing", dump.log) is None


def test_cancorder_restarted_while_the_broker_is_down(broker, slcan_emulator,
                                                      cancorder_process, tmp_path):
    mosquitto = broker()
    spool = str(tmp_path / "spool")
    url = mosquitto.url(SERVE_TOPIC)
    dump, out = start_dump(cancorder_process, tmp_path, mosquitto.url("cancorder/+/+"))
    serve = start_serve(cancorder_process, slcan_emulator, url, "--mqtt-spool", spool)
    slcan_emulator.wait_open()
    stream = Stream(slcan_emulator, 30000, 10000)
    stream.send_until(10000)
    assert len(wait_lines(out, 10000)) == 10000
    mosquitto.stop()
    serve.wait_for("lost the MQTT broker")
    stream.send_until(20000)
    stream.wait_sent()
    time.sleep(1.0)  # the last batches reach the spool
    assert serve.terminate() == 0  # stopped with frames only in the spool
    connections = slcan_emulator.connections
    serve = start_serve(cancorder_process, slcan_emulator, url, "--mqtt-spool", spool)
    serve.wait_for(r"MQTT spool .*: [\d,]+ batches \(10,000 frames\) from an earlier run")
    while slcan_emulator.connections == connections or not slcan_emulator.opened.is_set():
        time.sleep(0.05)
    stream.send_until(30000)
    stream.wait_sent()
    time.sleep(1.0)
    mosquitto.start()
    numbers = wait_lines(out, 30000)
    assert numbers == list(range(30000)), f"{len(numbers)}\n{serve.log}\n{dump.log}"
    assert serve.terminate() == 0
    assert dump.terminate() == 0


def test_spool_full_drops_the_oldest_and_says_so(broker, slcan_emulator, cancorder_process,
                                                 tmp_path):
    mosquitto = broker()
    mosquitto.stop()  # down from the start: everything goes to the spool
    from tests.helpers import free_port, http_get
    from tests.test_metrics import samples

    spool = str(tmp_path / "spool")
    metrics_port = free_port()
    serve = start_serve(cancorder_process, slcan_emulator, mosquitto.url(SERVE_TOPIC),
                        "--mqtt-spool", spool, "--mqtt-spool-size", "1M",
                        "--metrics", f"127.0.0.1:{metrics_port}")
    slcan_emulator.wait_open()
    total = 120000  # 31 bytes a frame: 3.7 MB through a 1 MB spool
    stream = Stream(slcan_emulator, total, 40000)
    stream.send_until(total)
    stream.wait_sent()
    line = serve.wait_for(r"MQTT outbox full \(.*1,048,576 bytes\): dropped the oldest").string
    assert "frames now" in line
    time.sleep(1.0)
    size = sum(os.path.getsize(os.path.join(spool, n)) for n in os.listdir(spool))
    assert size <= (1 << 20) + 4096

    def mqtt_metrics():
        page = samples(http_get(metrics_port, "/metrics")[1])
        return {name[len("cancorder_mqtt_"):]: value for (name, labels), value in page.items()
                if name.startswith("cancorder_mqtt_")}

    down = mqtt_metrics()  # the drops are on the metrics page while the broker is away
    assert down["connected"] == 0 and down["published_frames"] == 0
    assert down["dropped_frames"] > total // 2 and down["dropped_batches"] > 0
    assert 0 < down["spool_bytes"] <= 1 << 20 and down["waiting_batches"] > 0
    mosquitto.start()
    dump, out = start_dump(cancorder_process, tmp_path, mosquitto.url("cancorder/+/+"))
    serve.wait_for("MQTT: reconnected to")
    deadline = time.monotonic() + 30
    while True:  # the spool published: published + dropped = every frame the bus gave
        up = mqtt_metrics()
        if up["waiting_batches"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert up["connected"] == 1 and up["waiting_batches"] == 0
    assert up["published_frames"] + up["dropped_frames"] == total, up
    assert serve.terminate() == 0
    dropped = int(serve.wait_for(r"published in [\d,]+ batches, ([\d,]+) frames dropped")
                  .group(1).replace(",", ""))
    published = int(serve.wait_for(r"([\d,]+) frames published").group(1).replace(",", ""))
    assert dropped > total // 2 and dropped + published == total
    assert (dropped, published) == (up["dropped_frames"], up["published_frames"])
    # what the broker kept is the newest frames, in order (the dump subscribed after
    # publishing started, so it checks against the retained session only if it was quick)
    numbers = wait_lines(out, 1, timeout=5)
    assert numbers == sorted(numbers) and (not numbers or numbers[-1] == total - 1)
    dump.terminate()


def test_a_full_spool_disk_stops_nothing_and_a_restart_on_it_serves(tmp_path):
    """Issue 22 item 1: the spool on a 600 KiB tmpfs (a private mount namespace), the broker
    away 15 s at 2,000 frames/s (tests/tmpfs_spool_check.py)."""
    import shutil
    import subprocess
    import sys

    import pytest

    from tests.helpers import cancorder_env

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare -m for a private tmpfs")
    spool = tmp_path / "spool"
    spool.mkdir()
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=600k tmpfs "$1" && shift && '
         'exec "$@"', "sh", str(spool), sys.executable, "tests/tmpfs_spool_check.py",
         str(spool), str(tmp_path)], capture_output=True, text=True, env=cancorder_env(),
        cwd=ROOT, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok" in done.stdout.splitlines()[-1], done.stdout


def test_relay_serves_the_remote_bus_to_tcp_clients(broker, slcan_emulator, cancorder_process,
                                                    tmp_path):
    mosquitto = broker()
    serve = start_serve(cancorder_process, slcan_emulator, mosquitto.url(SERVE_TOPIC))
    serve.wait_for("MQTT: publishing to")
    channel = "socket:__127.0.0.1:%d" % slcan_emulator.port
    recorded = tmp_path / "relay.log"
    relay = cancorder_process("relay", mosquitto.url(f"cancorder/truck42/{channel}"),
                              "--no-zeroconf", "--record", str(recorded))
    port = relay.port()
    client = served_client(relay, port)
    slcan_emulator.wait_open()
    time.sleep(0.5)
    stream = Stream(slcan_emulator, 20000, 10000)
    stream.send_until(20000)
    frames = client.wait_frames(20000, timeout=60)
    assert [int.from_bytes(f[3], "big") for f in frames] == list(range(20000))
    assert [f[1] for f in frames[:3]] == [0, 1, 2] and all(f[2] == 1 for f in frames)
    client.close()
    assert relay.terminate() == 0
    assert "frames in 20,000" in relay.log or "out 20,000" in relay.log
    assert candump_numbers(recorded) == list(range(20000))  # --record: the remote bus on disk
    assert serve.terminate() == 0


# ---- errors: one clear line each, TCP serving goes on, publishing retries ----

def connection_attempts(mosquitto):
    """Connections the broker saw so far: a line each, "New connection from" once the
    connection is set up, "Client connection from ... failed" for a failed TLS handshake."""
    log = mosquitto.log()
    return log.count("New connection from") + log.count("Client connection from")


def serve_despite(cancorder_process, emulator, url, *extra, pattern, retries_in=None):
    """Serve with a broker problem: the TCP client gets every frame, the problem is one line;
    with ``retries_in`` (the Mosquitto), publishing is seen retrying with backoff: a few
    connections in the 4 s watched, neither one (no retry) nor one every 0.5 s (no backoff)."""
    before = connection_attempts(retries_in) if retries_in is not None else 0
    serve = start_serve(cancorder_process, emulator, url, *extra)
    client = served_client(serve)
    emulator.wait_open()
    stream = Stream(emulator, 5000, 5000)
    stream.send_until(5000)
    assert len(client.wait_frames(5000)) == 5000
    serve.wait_for(pattern)
    time.sleep(4.0)  # several retries (backoff 0.5, 1, 2 s)
    matching = [line for line in serve.lines if "MQTT broker" in line]
    assert len(matching) == 1, matching
    if retries_in is not None:
        attempts = connection_attempts(retries_in) - before
        assert 3 <= attempts <= 7, (attempts, retries_in.log())  # 0, .5, 1.5, 3.5, 7.5 s...
    assert "Traceback" not in serve.log
    client.close()
    assert serve.terminate() == 0
    return serve, matching[0]


def test_wrong_password(broker, slcan_emulator, cancorder_process, tmp_path):
    mosquitto = broker(users={"truck42": "right"})
    _, line = serve_despite(cancorder_process, slcan_emulator,
                            mosquitto.url(SERVE_TOPIC, user="truck42:wrong"),
                            pattern="refused the login as 'truck42'", retries_in=mosquitto)
    assert "wrong" not in line.replace("wrong user", "")  # the password is never shown
    assert mosquitto.log().count("not authorised") >= 2  # it retried


def test_password_file_and_environment_log_in(broker, slcan_emulator, cancorder_process,
                                              tmp_path):
    mosquitto = broker(users={"truck42": "right"})
    secret = tmp_path / "secret"
    secret.write_text("right\n")
    dump, out = start_dump(cancorder_process, tmp_path, mosquitto.url("cancorder/+/+",
                                                                      user="truck42"),
                           "--mqtt-password-file", str(secret))
    serve = cancorder_process("serve", "-i", "slcan", "-c", slcan_emulator.url, "--no-zeroconf",
                              "--mqtt", mosquitto.url(SERVE_TOPIC, user="truck42"),
                              env=_env(CANCORDER_MQTT_PASSWORD="right"))
    serve.wait_for("MQTT: publishing to")
    slcan_emulator.wait_open()
    Stream(slcan_emulator, 1000, 5000).send_until(1000)
    assert wait_lines(out, 1000) == list(range(1000))
    serve.terminate()
    dump.terminate()


def test_tls_with_and_without_the_ca(broker, slcan_emulator, cancorder_process, tmp_path):
    mosquitto = broker(tls=True)
    ca = mosquitto.certs["ca.crt"]
    dump, out = start_dump(cancorder_process, tmp_path, mosquitto.url("cancorder/+/+", tls=True),
                           "--mqtt-ca", ca)
    serve = start_serve(cancorder_process, slcan_emulator, mosquitto.url(SERVE_TOPIC, tls=True),
                        "--mqtt-ca", ca, "--mqtt-cert", mosquitto.certs["client.crt"],
                        "--mqtt-key", mosquitto.certs["client.key"])
    serve.wait_for("MQTT: publishing to mqtts://127.0.0.1")
    slcan_emulator.wait_open()
    Stream(slcan_emulator, 1000, 5000).send_until(1000)
    assert wait_lines(out, 1000) == list(range(1000))
    serve.terminate()
    slcan_emulator.opened.clear()
    # without the CA: the broker's certificate is not trusted
    serve_despite(cancorder_process, slcan_emulator, mosquitto.url(SERVE_TOPIC, tls=True),
                  pattern=r"TLS certificate is not trusted .*give the CA that signed it "
                          "with --mqtt-ca", retries_in=mosquitto)
    dump.terminate()


def test_plain_mqtt_to_a_tls_port(broker, slcan_emulator, cancorder_process):
    mosquitto = broker(tls=True)
    url = f"mqtt://127.0.0.1:{mosquitto.tls_port}/{SERVE_TOPIC}"
    serve_despite(cancorder_process, slcan_emulator, url,
                  pattern=r"MQTT broker mqtt://.* closed the connection before answering "
                          r"\(a TLS port needs mqtts://\)", retries_in=mosquitto)


def test_broker_refusing_the_topic(broker, slcan_emulator, cancorder_process, tmp_path):
    acl = "user truck42\ntopic read cancorder/#\ntopic write cancorder/+/+/status\n"
    mosquitto = broker(users={"truck42": "pw"}, acl=acl)
    serve_despite(cancorder_process, slcan_emulator,
                  mosquitto.url(SERVE_TOPIC, user="truck42:pw"),
                  pattern=r"refused to publish on 'cancorder/truck42/.*': Not authorized "
                          r"\(check the broker's ACL", retries_in=mosquitto)


def test_dump_errors_are_one_line(broker, cancorder_process, tmp_path):
    mosquitto = broker(users={"u": "p"})
    wrong = cancorder_process("dump", mosquitto.url("cancorder/#", user="u:nope"))
    assert wrong.proc.wait(30) == 1
    assert wrong.log.strip().endswith("$CANCORDER_MQTT_PASSWORD)") and wrong.log.count("\n") == 0
    mosquitto.stop()
    down = cancorder_process("dump", mosquitto.url("cancorder/#", user="u:p"))
    assert down.proc.wait(30) == 1
    assert "refused the connection: is the broker running" in down.log


def test_unknown_host_in_a_network_namespace():
    result = run_in_netns(os.path.join(HERE, "netns_mqtt_unknown_host.py"))
    assert result["frames"] == 3000
    assert len(result["lines"]) == 1 and "unknown host 'no-such-broker.invalid'" in \
        result["lines"][0], result
    assert result["exit"] == 0
    # retrying with backoff (0, 0.5, 1.5, 3.5, 7.5 s...): a few tries, not one every 0.5 s
    assert len(result["attempts"]) == 1 and 3 <= result["attempts"][0] <= 7, result


def test_dump_removes_duplicates_and_reports_gaps(broker, cancorder_process, tmp_path):
    from paho.mqtt import client as mqtt

    from cancorder._fast import wire
    from cancorder.mqtt import payload

    mosquitto = broker()
    dump, out = start_dump(cancorder_process, tmp_path, mosquitto.url("cancorder/+/+"))
    pretty_out = str(tmp_path / "pretty.txt")  # pretty: the logger as the first column
    pretty = cancorder_process("dump", mosquitto.url("cancorder/+/+"), "-f", "pretty",
                               stdout=open(pretty_out, "w"))
    pretty.wait_for("subscribed to", 30)
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect("127.0.0.1", mosquitto.port)
    publisher.loop_start()

    def send(sequence, first, count):
        records = b"".join(wire.pack_frame(1, 0x10, 0, i.to_bytes(8, "big"))
                           for i in range(first, first + count))
        publisher.publish(TOPIC, payload.encode(42, sequence, first, count, records),
                          qos=1).wait_for_publish(10)

    send(1, 0, 100)
    send(1, 0, 100)  # a QoS-1 redelivery
    send(2, 100, 100)
    send(3, 1400, 100)  # 1,200 frames lost on the way
    publisher.publish(TOPIC, b"hello", qos=1).wait_for_publish(10)  # not ours
    numbers = wait_lines(out, 300)
    assert numbers == list(range(200)) + list(range(1400, 1500))
    dump.wait_for(r"truck42/can0: 1,200 frames missing")
    dump.wait_for(r"cancorder/truck42/can0: not a cancorder batch")
    publisher.loop_stop()
    assert dump.terminate() == 0
    assert "1 duplicate batch removed, 1,200 frames missing in all" in dump.log
    pretty.wait_for(r"truck42/can0: 1,200 frames missing")
    assert pretty.terminate() == 0
    with open(pretty_out) as handle:
        rows = [line.split() for line in handle if line.strip()]
    assert {row[0] for row in rows} == {"truck42/can0"}, rows[:3]
    assert [int("".join(row[4:12]), 16) for row in rows] == \
        list(range(200)) + list(range(1400, 1500))


def test_dump_of_a_fleet_keeps_each_logger_s_channel_in_every_file(broker, cancorder_process,
                                                                  tmp_path):
    """Issue 22 item 10: three loggers under one wildcard, recorded to every format."""
    import can
    from paho.mqtt import client as mqtt

    from cancorder._fast import wire
    from cancorder.logfiles.formats import FORMATS, channel_label
    from cancorder.mqtt import payload

    loggers = ["truck2/can1", "vm/mock-uds", "truck1/can0"]  # channel2int: 1, None, 0
    mosquitto = broker()
    outputs = {suffix: str(tmp_path / f"fleet{suffix}")
               for suffix in (".log", ".blf", ".asc", ".trc", ".mf4", ".csv")}
    options = [arg for path in outputs.values() for arg in ("-o", path)]
    dump, out = start_dump(cancorder_process, tmp_path, mosquitto.url("cancorder/+/+"),
                           *options)
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect("127.0.0.1", mosquitto.port)
    publisher.loop_start()
    per_batch, batches = 50, 4
    for number in range(batches):  # interleaved: a batch of each logger in turn
        for index, logger in enumerate(loggers):
            first = number * per_batch
            records = b"".join(wire.pack_frame(1000 * i + 1, 0x100 + index, 0,
                                               bytes([index]) + i.to_bytes(7, "big"))
                               for i in range(first, first + per_batch))
            publisher.publish(f"cancorder/{logger}",
                              payload.encode(7 + index, number + 1, first, per_batch, records),
                              qos=1).wait_for_publish(10)
    total = per_batch * batches * len(loggers)
    assert len(wait_lines(out, total)) == total  # every batch reached the dump
    publisher.loop_stop()
    assert dump.terminate() == 0
    legend = {int(m.group(1)): m.group(2)
              for m in re.finditer(r"fleet\.blf, \S*fleet\.asc, \S*fleet\.trc, \S*fleet\.mf4: "
                                   r"channel (\d) is (\S+)", dump.log)}
    for suffix, path in outputs.items():  # .log first: it names the loggers
        if suffix == ".csv":
            continue
        with can.LogReader(path) as reader:
            messages = list(reader)
        assert len(messages) == total, (suffix, len(messages))
        channels = {}
        for message in messages:  # the channel column says which logger sent the frame
            sender = loggers[message.data[0]]
            column = str(message.channel)
            if suffix != ".log":
                column = legend.get(int(channel_label(message.channel, FORMATS[suffix])))
            channels.setdefault(sender, set()).add(column)
        assert channels == {logger: {logger} for logger in loggers}, (suffix, channels)
    assert legend == {1: "truck2/can1", 2: "vm/mock-uds", 3: "truck1/can0"}, dump.log
    assert re.search(r"recorded .*; channels in \S*fleet\.blf, \S*fleet\.asc, \S*fleet\.trc, "
                     r"\S*fleet\.mf4: 1 truck2/can1, 2 vm/mock-uds, 3 truck1/can0", dump.log)
    assert re.search(r"-o .*fleet\.csv: \.csv has no channel column", dump.log), dump.log


def test_status_topic_online_then_offline(broker, slcan_emulator, cancorder_process):
    from paho.mqtt import client as mqtt

    mosquitto = broker()
    serve = start_serve(cancorder_process, slcan_emulator, mosquitto.url(SERVE_TOPIC))
    serve.wait_for("MQTT: publishing to")
    channel = "socket:__127.0.0.1:%d" % slcan_emulator.port

    def retained():
        got = []
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_message = lambda c, u, m: got.append((m.retain, json.loads(m.payload)))
        client.connect("127.0.0.1", mosquitto.port)
        client.subscribe(f"cancorder/truck42/{channel}/status", qos=1)
        client.loop_start()
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        client.loop_stop()
        return got[0]

    deadline = time.monotonic() + 10
    flag, status = retained()
    while not flag and time.monotonic() < deadline:  # it came live, before being stored
        flag, status = retained()
    assert flag and status["online"] is True
    assert status["interface"] == "slcan" and status["channel"] == slcan_emulator.url
    assert status["bitrate"] == "500000" and status["port"] == str(serve.port())
    from cancorder.discovery import short_hostname  # the six TXT keys, all of them

    assert status["system"] == short_hostname() and status["process"] == "cancorder serve"
    assert status["topic"] == f"cancorder/truck42/{channel}" and len(status["session"]) == 16
    serve.proc.kill()  # vanished: the broker publishes the last will
    serve.proc.wait()
    deadline = time.monotonic() + 40  # the will comes when keep-alive (15 s x 1.5) runs out
    while time.monotonic() < deadline:
        flag, status = retained()
        if status["online"] is False:
            break
        time.sleep(1)
    assert flag and status["online"] is False and status["channel"] == slcan_emulator.url


def _env(**extra):
    from tests.helpers import cancorder_env

    return cancorder_env(**extra)


def test_relay_is_advertised_with_the_remote_bus_txt():
    result = run_in_netns(os.path.join(HERE, "netns_zeroconf_relay.py"))
    assert result["names"] == ["ECUconnect-Logger relay-42._ecuconnect-log._tcp.local."], \
        result["log"]
    txt = result["txt"]
    assert txt["process"] == "cancorder relay" and txt["interface"] == "mqtt"
    assert txt["channel"].startswith("socket://127.0.0.1:") and txt["bitrate"] == "250000"
    assert txt["relay"].startswith("mqtt://127.0.0.1:") and txt["relay"].endswith("/fleet/truck42")
    assert txt["port"] == str(result["port"]) and result["exit_code"] == 0


def test_a_frozen_broker_never_slows_the_tcp_clients(broker, slcan_emulator, cancorder_process,
                                                    tmp_path):
    """The broker stops reading (SIGSTOP: the TCP connection stays open, nothing is acked):
    the TCP client still gets every frame at the bus's pace; after SIGCONT the subscriber
    gets every frame too, once each, in order."""
    import signal

    mosquitto = broker()
    dump, out = start_dump(cancorder_process, tmp_path, mosquitto.url("cancorder/+/+"))
    serve = start_serve(cancorder_process, slcan_emulator, mosquitto.url(SERVE_TOPIC),
                        "--mqtt-spool", str(tmp_path / "spool"))
    serve.wait_for("MQTT: publishing to")
    client = served_client(serve)
    slcan_emulator.wait_open()
    total = 80000
    stream = Stream(slcan_emulator, total, 20000)
    stream.send_until(total)
    stream.wait_sent(10000)
    mosquitto.proc.send_signal(signal.SIGSTOP)
    try:
        stream.wait_sent(total)
        sent_at = time.monotonic()
        assert len(client.wait_frames(total, timeout=30)) == total
        assert time.monotonic() - sent_at < 5.0  # no waiting on the broker
    finally:
        mosquitto.proc.send_signal(signal.SIGCONT)
    assert wait_lines(out, total, timeout=120) == list(range(total))
    client.close()
    assert serve.terminate() == 0
    assert dump.terminate() == 0


def test_tls_certificate_for_another_name(broker, cancorder_process):
    mosquitto = broker(tls=True, server_names="IP:127.0.0.1")
    wrong = cancorder_process("dump", mosquitto.url("cancorder/#", tls=True, host="localhost"),
                              "--mqtt-ca", mosquitto.certs["ca.crt"])
    assert wrong.proc.wait(30) == 1
    assert "its TLS certificate is not for 'localhost'" in wrong.log
    assert "Traceback" not in wrong.log


def test_monitor_of_a_broker(broker, cancorder_process, tmux_session, tmp_path):
    """dump --monitor mqtt://: the full-screen table fed by a subscription (mock-uds publishes)."""
    from tests.test_monitor import monitor_command, rows, wait_status

    mosquitto = broker(users={"viewer": "secret", "uds": "pw"})
    server = cancorder_process("mock-uds", "--no-zeroconf", "--bind", "127.0.0.1", "--async",
                               "--mqtt", mosquitto.url("cancorder/sim/{channel}", user="uds:pw"))
    server.wait_for("MQTT: publishing to")
    session = tmux_session(monitor_command(tmp_path, mosquitto.url("cancorder/+/+",
                                                                   user="viewer:secret")))
    session.wait_for(lambda s: {"7DF", "7E0", "7E8"} <= set(rows(s)), what="rows 7DF, 7E0, 7E8")
    screen = session.screen()
    assert "mqtt://127.0.0.1" in screen and "secret" not in screen
    # a second logger on the same wildcard: its ids get rows of their own, named by topic
    second = cancorder_process("mock-uds", "--no-zeroconf", "--bind", "127.0.0.1", "--async",
                               "--mqtt", mosquitto.url("cancorder/sim2/{channel}",
                                                       user="uds:pw"))
    second.wait_for("MQTT: publishing to")

    def per_logger(screen):
        found = {}
        for line in screen.splitlines():
            cells = line.split()
            if len(cells) > 2 and cells[1] == "7E8" and "/" in cells[0]:
                found[cells[0].split("/")[0]] = line
        return found if {"sim", "sim2"} <= set(found) else None

    session.wait_for(per_logger, what="a 7E8 row for each logger")
    assert "Chan" in session.screen()
    session.keys("q")
    assert wait_status(tmp_path) == 0, (tmp_path / "stderr").read_text()
    assert "stopped: q pressed" in (tmp_path / "stderr").read_text()


def test_config_buses_publish_each_with_its_metrics(broker, cancorder_process, tmp_path):
    """serve --config: two SLCAN buses, each with its own mqtt key; one dump shows both by
    name; the metrics page counts what each published."""
    from tests.emulators.slcan_adapter import SlcanEmulator
    from tests.helpers import http_get
    from tests.helpers import free_port
    from tests.test_metrics import samples

    mosquitto = broker()
    emulators = [SlcanEmulator(), SlcanEmulator()]
    metrics_port = free_port()
    try:
        config = tmp_path / "fleet.toml"
        config.write_text(
            f'zeroconf = false\n[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
            + "".join(f'[[bus]]\nname = "{name}"\nsource = "slcan"\nchannel = "{emu.url}"\n'
                      f'mqtt = "{mosquitto.url("fleet/truck42/" + name)}"\n'
                      for name, emu in zip(("powertrain", "body"), emulators)))
        dump, out = start_dump(cancorder_process, tmp_path, mosquitto.url("fleet/+/+"))
        serve = cancorder_process("serve", "--config", str(config))
        serve.wait_for("MQTT: publishing to .*/fleet/truck42/body")
        serve.wait_for("MQTT: publishing to .*/fleet/truck42/powertrain")
        for emu in emulators:
            emu.wait_open()
        Stream(emulators[0], 3000, 10000).send_until(3000)
        Stream(emulators[1], 2000, 10000).send_until(2000)
        lines = []
        deadline = time.monotonic() + 30
        while len(lines) < 5000 and time.monotonic() < deadline:
            time.sleep(0.2)
            lines = open(out).read().splitlines()
        by_bus = {}
        for line in lines:
            by_bus.setdefault(line.split()[1], []).append(int(line.split()[2].split("#")[1], 16))
        assert by_bus == {"truck42/powertrain": list(range(3000)),
                          "truck42/body": list(range(2000))}
        deadline = time.monotonic() + 10
        while True:
            page = samples(http_get(metrics_port, "/metrics")[1])
            published = {bus: page.get(("cancorder_mqtt_published_frames",
                                        frozenset({("bus", bus)}))) for bus in ("powertrain", "body")}
            if published == {"powertrain": 3000, "body": 2000} or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert published == {"powertrain": 3000, "body": 2000}, published
        assert page[("cancorder_mqtt_connected", frozenset({("bus", "body")}))] == 1
        assert serve.terminate() == 0
        assert dump.terminate() == 0
    finally:
        for emu in emulators:
            emu.close()


def test_relay_as_a_bus_of_a_config(broker, slcan_emulator, cancorder_process, tmp_path):
    mosquitto = broker()
    serve = start_serve(cancorder_process, slcan_emulator, mosquitto.url("fleet/truck42/can0"))
    serve.wait_for("MQTT: publishing to")
    config = tmp_path / "desk.toml"
    config.write_text(f'[[bus]]\nname = "truck42"\nsource = "relay"\n'
                      f'url = "{mosquitto.url("fleet/truck42/can0")}"\nzeroconf = false\n')
    relay = cancorder_process("serve", "--config", str(config))
    client = served_client(relay)
    slcan_emulator.wait_open()
    time.sleep(0.5)
    Stream(slcan_emulator, 3000, 10000).send_until(3000)
    frames = client.wait_frames(3000, timeout=60)
    assert [int.from_bytes(f[3], "big") for f in frames] == list(range(3000))
    client.close()
    assert relay.terminate() == 0
    assert serve.terminate() == 0


def test_batches_on_the_wire(broker, slcan_emulator, cancorder_process):
    """What a plain MQTT subscriber sees: QoS 1 messages, one session id, sequence 1, 2, 3...
    with no gap, first-frame numbers that continue, at most 64 KB of records each; a steady
    stream is cut every 50 ms (batches of about 500 frames at 10,000 frames/s), a burst at
    64 KB."""
    from paho.mqtt import client as mqtt

    from cancorder.mqtt import payload

    mosquitto = broker()
    messages = []
    subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    subscriber.on_message = lambda c, u, m: messages.append((m.topic, m.qos, m.payload))
    subscriber.connect("127.0.0.1", mosquitto.port)
    subscriber.subscribe("cancorder/truck42/+", qos=2)  # the message keeps the sender's QoS
    subscriber.loop_start()
    try:
        serve = start_serve(cancorder_process, slcan_emulator, mosquitto.url(SERVE_TOPIC))
        serve.wait_for("MQTT: publishing to")
        slcan_emulator.wait_open()
        stream = Stream(slcan_emulator, 20000, 10000)  # 2 s, steady
        stream.send_until(20000)
        stream.wait_sent()
        deadline = time.monotonic() + 30
        while sum(payload.decode(m[2]).count for m in messages) < 20000:
            assert time.monotonic() < deadline, len(messages)
            time.sleep(0.1)
        steady = len(messages)
        slcan_emulator.send_lines(b"".join(build_lines(40000)[20000:]))  # a burst: 880 KB
        while sum(payload.decode(m[2]).count for m in messages) < 40000:
            assert time.monotonic() < deadline + 30, len(messages)
            time.sleep(0.1)
        assert serve.terminate() == 0
    finally:
        subscriber.loop_stop()
        subscriber.disconnect()
    batches = [payload.decode(data) for _, _, data in messages]
    assert {qos for _, qos, _ in messages} == {1}
    assert len({topic for topic, _, _ in messages}) == 1
    assert len({b.session for b in batches}) == 1
    assert [b.sequence for b in batches] == list(range(1, len(batches) + 1))
    first = 0
    numbers = []
    for batch in batches:
        assert batch.first_frame == first and batch.count == len(batch.records)
        first += batch.count
        numbers += [int.from_bytes(f[3], "big") for f in batch.records]
    assert numbers == list(range(40000))
    sizes = [len(data) - payload.HEADER_SIZE for _, _, data in messages]
    assert max(sizes) <= 64 << 10
    counts = sorted(b.count for b in batches[:steady])
    # 2 s of a steady 10,000 frames/s: cut by time, about 500 frames (50 ms) a batch
    assert 20 <= steady and 250 <= counts[len(counts) // 2] <= 1000, counts
    assert max(sizes[steady:]) > (64 << 10) - 22  # the burst: cut at 64 KB


def test_a_broker_that_requires_a_client_certificate(broker, slcan_emulator, cancorder_process,
                                                     tmp_path):
    """--mqtt-cert/--mqtt-key are really sent: a broker that demands a client certificate takes
    cancorder with them, and refuses it without (one line, TCP serving goes on, retries)."""
    mosquitto = broker(tls=True, require_certificate=True)
    dump, out = start_dump(cancorder_process, tmp_path, mosquitto.url("cancorder/+/+"))
    serve = start_serve(cancorder_process, slcan_emulator, mosquitto.url(SERVE_TOPIC, tls=True),
                        "--mqtt-ca", mosquitto.certs["ca.crt"],
                        "--mqtt-cert", mosquitto.certs["client.crt"],
                        "--mqtt-key", mosquitto.certs["client.key"])
    serve.wait_for("MQTT: publishing to mqtts://127.0.0.1")
    slcan_emulator.wait_open()
    Stream(slcan_emulator, 1000, 5000).send_until(1000)
    assert wait_lines(out, 1000) == list(range(1000))
    assert serve.terminate() == 0
    slcan_emulator.opened.clear()
    serve_despite(cancorder_process, slcan_emulator, mosquitto.url(SERVE_TOPIC, tls=True),
                  "--mqtt-ca", mosquitto.certs["ca.crt"],
                  pattern=r"MQTT broker mqtts://.* closed the TLS connection before answering: "
                          r"does it require a client certificate\? give one with --mqtt-cert",
                  retries_in=mosquitto)
    assert dump.terminate() == 0
    refused = cancorder_process("dump", mosquitto.url("cancorder/#", tls=True),
                                "--mqtt-ca", mosquitto.certs["ca.crt"])
    assert refused.proc.wait(30) == 1
    assert refused.log.count("\n") == 0 and "does it require a client certificate" in \
        refused.log, refused.log


def test_the_publisher_thread_is_not_woken_for_every_batch(broker):
    """Issue 24 item 6: a batch that finds the queue empty while the publisher already holds
    pending bytes (it wakes within batch_interval by itself) writes nothing to its wake-up
    pipe; at 1,000 batches a second it used to be one wake-up each. Every frame still reaches
    the broker (acknowledged), soon after the last batch."""
    import logging
    import types

    from cancorder.mqtt.publisher import MqttPublisher
    from cancorder.mqtt.connection import parse_url
    from tests.mqtt.test_mqtt import records

    mosquitto = broker()
    publisher = MqttPublisher(parse_url(mosquitto.url(TOPIC), environ={}))
    wakes = []
    wake = publisher._wake
    publisher._wake = lambda: (wakes.append(1), wake())
    publisher.start(types.SimpleNamespace(log=logging.getLogger("cancorder.test-mqtt"),
                                          txt={"system": "s"}, channel="can0",
                                          interface="virtual"))
    try:
        deadline = time.monotonic() + 10
        while not publisher.stats().get("connected") and time.monotonic() < deadline:
            time.sleep(0.02)
        sent = 0
        start = time.monotonic()
        for i in range(1000):  # 5 frames a millisecond: a source's batches at 5,000 frames/s
            publisher.put(records(sent, 5))
            sent += 5
            delay = start + (i + 1) / 1000 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        last_put = time.monotonic()
        while publisher.stats().get("published_frames", 0) < sent and \
                time.monotonic() < last_put + 5:
            time.sleep(0.005)
        published_after = time.monotonic() - last_put
    finally:
        publisher.close(2.0)
    assert publisher.stats()["published_frames"] == sent
    periods = (last_put - start) / publisher.batch_interval
    assert len(wakes) <= periods * 2 + 5, (len(wakes), periods)  # was about 1,000
    assert published_after < 1.0, published_after  # no batch left waiting for an idle timeout
