"""``--mqtt-signals --dbc FILE`` and ``--mqtt-homeassistant``: decoded messages and Home
Assistant discovery configs as a subscriber receives them from Mosquitto, values checked
against cantools' own decoding."""
import json
import threading
import time

import cantools
import pytest

from cancorder._fast import wire
from tests.helpers import free_port
from tests.test_dbc import DBC
from tests.test_reassembly import write_candump

EXT = wire.FLAG_EXT
TOPIC = "fleet/truck7"


class Subscriber:
    """A paho client collecting (topic, payload, retain) of its subscriptions."""

    def __init__(self, port, *topics):
        from paho.mqtt import client as mqtt

        self.got = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        for topic in topics:
            self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def _on_message(self, client, userdata, message):
        with self._lock:
            self.got.append((message.topic, message.payload, message.retain))

    def messages(self):
        with self._lock:
            return list(self.got)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def engine_frames(seconds=3.0, hz=100):
    """EEC1 (J1939, matched by its PGN) at ``hz``, its speed climbing; an unknown id beside."""
    frames = []
    start = 1_700_000_000_000_000
    for index in range(int(seconds * hz)):
        t_us = start + index * 1_000_000 // hz
        speed = (800 + index * 10) * 8  # 0.125 rpm a bit
        frames.append((t_us, 0x0CF00400, EXT, bytes([0xFF, 0xFF, 125 + index % 50])
                       + speed.to_bytes(2, "little") + b"\xff\xff\xff"))
        frames.append((t_us + 10, 0x321, 0, bytes(8)))
    return frames


def test_signals_and_discovery_configs_through_mosquitto(broker, cancorder_process, tmp_path):
    mosquitto = broker()
    database = tmp_path / "engine.dbc"
    database.write_text(DBC)
    frames = engine_frames()
    log = write_candump(tmp_path / "engine.log", frames)
    by_time = {frame[0]: frame for frame in frames}
    subscriber = Subscriber(mosquitto.port, f"{TOPIC}/signals/#", "homeassistant/#")
    try:
        started = time.monotonic()
        replay = cancorder_process("replay", log, "--async", "--original-time", "--no-zeroconf", "--bind",
                                   "127.0.0.1", "-p", str(free_port()), "--mqtt", mosquitto.url(TOPIC),
                                   "--mqtt-signals", "--mqtt-signals-rate", "4", "--dbc",
                                   database, "--mqtt-homeassistant")
        assert replay.proc.wait(timeout=30) == 0, replay.log
        elapsed = time.monotonic() - started
        time.sleep(0.5)
        got = subscriber.messages()
    finally:
        subscriber.close()
    reference = cantools.database.load_file(str(database)).get_message_by_name("EEC1")
    values = [(topic, json.loads(payload)) for topic, payload, _ in got
              if topic.startswith(f"{TOPIC}/signals/")]
    assert values and {topic for topic, _ in values} == {f"{TOPIC}/signals/EEC1"}
    # at most 4 a second per message, though 100 a second were on the bus
    assert 3 <= len(values) <= 4 * elapsed + 1, (len(values), elapsed)
    for _, item in values:
        micros = round(item["timestamp"] * 1e6)
        expected = reference.decode(by_time[micros][3], decode_choices=True)
        assert {name: value["value"] for name, value in item["signals"].items()} == \
            pytest.approx(expected)
        assert item["signals"]["EngineSpeed"]["unit"] == "rpm"
        assert item["signals"]["Torque"]["unit"] == "%"
    # the discovery configs: one per signal of every message, retained on arrival...
    configs = {topic: payload for topic, payload, _ in got
               if topic.startswith("homeassistant/sensor/") and payload}
    assert len(configs) == sum(len(message.signals) for message in
                               cantools.database.load_file(str(database)).messages)
    speed = next(json.loads(payload) for topic, payload in configs.items()
                 if topic.endswith("_EEC1_EngineSpeed/config"))
    assert speed["state_topic"] == f"{TOPIC}/signals/EEC1"
    assert speed["unit_of_measurement"] == "rpm"
    assert speed["value_template"] == "{{ value_json.signals['EngineSpeed'].value }}"
    # ...and removed by the clean stop: a new subscriber finds none retained
    late = Subscriber(mosquitto.port, "homeassistant/#")
    try:
        time.sleep(1.0)
        assert late.messages() == []
    finally:
        late.close()
    removed = [topic for topic, payload, _ in got if topic in configs and payload == b""]
    assert sorted(removed) == sorted(configs)


def test_signal_flags_need_mqtt_and_a_database(cancorder_process, tmp_path):
    import subprocess
    import sys

    from tests.helpers import cancorder_env

    log = write_candump(tmp_path / "one.log", engine_frames(0.1))
    for args, message in ((["--mqtt-signals"], "--mqtt-signals is a setting of MQTT "
                                                "publishing: add --mqtt URL"),
                          (["--mqtt", "mqtt://127.0.0.1:1/x", "--mqtt-signals"],
                           "give both"),
                          (["--mqtt", "mqtt://127.0.0.1:1/x", "--mqtt-signals", "--dbc",
                            str(tmp_path / "none.dbc")], "no such file")):
        run = subprocess.run([sys.executable, "-m", "cancorder", "replay", str(log), *args],
                             env=cancorder_env(), capture_output=True, text=True, timeout=60)
        errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
        assert run.returncode == 2 and len(errors) == 1, run.stderr
        assert message in errors[0] and "Traceback" not in run.stderr
