"""``dump --check`` on every path dump reads: a live logger (gen served), mqtt://, a log file;
--json, --strict; the logger's own drops named as such."""
import json
import os
import signal
import time

from cancorder.formats import CandumpFormatter
from tests.helpers import generated_frames

QUALITY = ("--data-mode", "quality-test", "--id", "7E0", "--test-id", "2")


def summary(path):
    with open(path) as handle:
        lines = [line for line in handle if line.strip()]
    assert len(lines) == 1, lines
    return json.loads(lines[0])


def start_dump(cancorder_process, tmp_path, target, *extra, name="check.json"):
    out = str(tmp_path / name)
    proc = cancorder_process("dump", target, "--check", "--json", *extra,
                             stdout=open(out, "w"))
    return proc, out


def test_live_logger_exact_count_nothing_missing(cancorder_process, tmp_path):
    gen = cancorder_process("gen", "--no-zeroconf", *QUALITY, "-r", "5000", "-n", "20000",
                            "--seed", "3")
    dump, out = start_dump(cancorder_process, tmp_path, f"127.0.0.1:{gen.port()}",
                           "--strict", "--expect", "20000")
    assert dump.proc.wait(60) == 0, dump.log
    assert gen.proc.wait(30) == 0
    result = summary(out)
    stream, = result["streams"]
    assert result["ok"] and result["logger_drops"]["events"] == []
    assert (stream["id"], stream["received"], stream["missing"], stream["duplicates"],
            stream["reordered"], stream["corrupt"]) == (0x7E0, 20000, 0, 0, 0, 0)
    assert stream["arrival"]["mean_ms"] == 0.2 and stream["test_ids"] == [2]


def test_strict_exits_2_when_no_matching_frame_arrived(cancorder_process, tmp_path):
    gen = cancorder_process("gen", "--no-zeroconf", "--data-mode", "random", "--dlc-max", "4",
                            "-r", "1000", "-n", "500")
    dump, out = start_dump(cancorder_process, tmp_path, f"127.0.0.1:{gen.port()}",
                           "--strict")
    assert dump.proc.wait(60) == 2, dump.log
    assert summary(out)["unchecked"] == 500 and not summary(out)["ok"]
    text = cancorder_process("dump", f"127.0.0.1:1", "--json")
    assert text.proc.wait(20) == 2 and "--json is a setting of --check: add --check" in text.log


def write_candump(path, frames):
    formatter = CandumpFormatter("can0")
    with open(path, "w") as handle:
        handle.write(formatter.format(frames))


def test_a_log_file_with_loss_injected_is_found_exactly(cancorder_process, tmp_path):
    frames = generated_frames(70000, data_mode="quality-test", exact_id=0x7E0, test_id=1)
    kept = [f for k, f in enumerate(frames) if k % 1000 != 999]  # every 1,000th dropped
    kept[500:500] = kept[400:450]  # a duplicated batch of 50
    kept[2000:2100], kept[2100:2200] = kept[2100:2200], kept[2000:2100]  # two swapped
    t_us, can_id, flags, data = kept[3000]
    kept[3000] = (t_us, can_id, flags, data[:5] + bytes([data[5] ^ 0x01]) + data[6:])  # a bit
    log = str(tmp_path / "bus.log")
    write_candump(log, kept)
    dump, out = start_dump(cancorder_process, tmp_path, log, "--strict", "--expect", "70000")
    assert dump.proc.wait(60) == 2, dump.log
    stream, = summary(out)["streams"]
    corrupt_number = int.from_bytes(data[2:4], "big")  # the damaged frame's number
    assert stream["corrupt"] == 1 and "checksum" in stream["corrupt_examples"][0]
    assert stream["duplicates"] == 50 and stream["reordered"] == 100
    missing = sorted([k for k in range(999, 70000, 1000)] + [corrupt_number])
    assert stream["missing"] == len(missing) == 71
    assert [low for low, high in stream["gaps"]] == missing
    assert stream["wraps"] == 1


def test_mqtt_traffic_checked_and_a_publishing_gap_named_the_loggers(broker, cancorder_process,
                                                                     tmp_path):
    from paho.mqtt import client as mqtt

    from cancorder._fast import wire
    from cancorder.mqtt import payload

    mosquitto = broker()
    dump, out = start_dump(cancorder_process, tmp_path, mosquitto.url("cancorder/+/+"),
                           "--strict", "--expect", "3000")
    dump.wait_for("subscribed to", 30)
    gen = cancorder_process("gen", "--no-zeroconf", "--async", "--name", "can0", *QUALITY,
                            "-r", "2000", "-n", "3000", "--mqtt",
                            mosquitto.url("cancorder/gen/{channel}"))
    assert gen.proc.wait(60) == 0, gen.log
    time.sleep(1)
    assert dump.terminate() == 0  # --strict: nothing lost
    stream, = summary(out)["streams"]
    assert (stream["received"], stream["missing"]) == (3000, 0)

    dump, out = start_dump(cancorder_process, tmp_path, mosquitto.url("cancorder/+/+"),
                           name="gap.json")
    dump.wait_for("subscribed to", 30)
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect("127.0.0.1", mosquitto.port)
    publisher.loop_start()
    frames = generated_frames(600, data_mode="quality-test", exact_id=0x7E0)
    for sequence, first in ((1, 0), (2, 100), (3, 400)):  # 200 frames never published
        records = b"".join(wire.pack_frame(*f) for f in frames[first:first + 100])
        publisher.publish("cancorder/x/can0", payload.encode(7, sequence, first, 100, records),
                          qos=1).wait_for_publish(10)
    dump.wait_for("200 frames missing")
    publisher.loop_stop()
    assert dump.terminate() == 0
    result = summary(out)
    assert result["streams"][0]["gaps"] == [[200, 399]]
    assert result["logger_drops"]["frames"] == 200
    assert "MQTT sequence numbers" in result["logger_drops"]["events"][0]


def test_a_lagging_client_dropped_by_the_logger_is_the_loggers_drop(cancorder_process,
                                                                    tmp_path):
    # 64-byte CAN FD frames at 50,000/s: 3.9 MB/s, more than the socket buffers hold
    gen = cancorder_process("gen", "--no-zeroconf", *QUALITY, "--fd", "--dlc-min", "64",
                            "-r", "50000", "-n", "400000", "--client-buffer", "64K",
                            "--client-buffer-total", "64K")
    dump, out = start_dump(cancorder_process, tmp_path, f"127.0.0.1:{gen.port()}",
                           "--reconnect", "--expect", "400000")
    gen.wait_for("client .* connected")
    time.sleep(1.0)
    os.kill(dump.proc.pid, signal.SIGSTOP)  # the client stops reading: it lags
    try:
        gen.wait_for("dropped: .* behind", 30)
    finally:
        os.kill(dump.proc.pid, signal.SIGCONT)
    assert gen.proc.wait(60) == 0
    dump.wait_for("reconnect")
    assert dump.terminate() == 0
    result = summary(out)
    stream, = result["streams"]
    dropped = result["logger_drops"]
    assert dropped["frames"] == stream["missing"] > 0
    assert "went out while this client was away" in dropped["events"][0]
