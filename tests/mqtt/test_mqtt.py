"""MQTT pieces without a broker: payload codec, duplicate/gap tracking, URLs, the outbox."""
import os

import pytest

from cancorder._fast import wire
from cancorder.errors import PayloadError, SpoolError, UsageError
from cancorder.mqtt import payload
from cancorder.mqtt.connection import DEFAULT_TOPIC, PASSWORD_ENV, parse_url
from cancorder.mqtt.spool import DiskSpool, MemoryOutbox
from cancorder.mqtt.subscriber import label_for


def records(first, count):
    return b"".join(wire.pack_frame(1_700_000_000_000_000 + i, i & 0x7FF, 0,
                                    i.to_bytes(8, "big")) for i in range(first, first + count))


def batch(sequence, first, count, session=7):
    return payload.encode(session, sequence, first, count, records(first, count))


# ---- payload ----

def test_payload_layout_matches_the_readme_diagram():
    data = payload.encode(0x0102030405060708, 5, 1000, 1, wire.pack_frame(1, 0x123, 0, b"\xAA"))
    assert data[:4] == b"CCMQ" and data[4] == 1 and data[5] == 36 and data[6:8] == b"\0\0"
    assert data[8:16] == bytes.fromhex("0102030405060708")
    assert int.from_bytes(data[16:24], "big") == 5
    assert int.from_bytes(data[24:32], "big") == 1000
    assert int.from_bytes(data[32:36], "big") == 1
    assert data[36:] == wire.pack_frame(1, 0x123, 0, b"\xAA")
    decoded = payload.decode(data)
    assert decoded.session == 0x0102030405060708 and decoded.sequence == 5
    assert decoded.records == [(1, 0x123, 0, b"\xAA")]


@pytest.mark.parametrize("data, complaint", [
    (b"CCMQ\x01", "shorter than the 36-byte header"),
    (b"XXXX" + bytes(40), "not a cancorder batch"),
    (b"CCMQ\x02\x24" + bytes(30), "version 2"),
    (payload.encode(1, 1, 0, 3, records(0, 2)), "header says 3 frames"),
    (payload.encode(1, 1, 0, 2, records(0, 2)[:-1]), "bad records"),
    (payload.encode(1, 1, 0, 1, b"\0" * 12 + b"\x40\x01\x00"), "bad records"),
])
def test_bad_payloads_say_what_is_wrong(data, complaint):
    with pytest.raises(PayloadError, match=complaint):
        payload.decode(data)


def test_tracker_drops_duplicates_and_counts_missing_frames():
    tracker = payload.SequenceTracker()
    first = payload.decode(batch(1, 0, 10))
    assert tracker.accept("t", first) == 0
    assert tracker.accept("t", first) is None  # QoS 1 redelivery
    assert tracker.accept("t", payload.decode(batch(2, 10, 5))) == 0
    assert tracker.accept("t", payload.decode(batch(5, 1215, 5))) == 1200
    assert tracker.accept("t", payload.decode(batch(3, 15, 5))) is None  # late and old
    assert tracker.accept("other", payload.decode(batch(1, 0, 1))) == 0  # another logger
    restarted = payload.decode(batch(1, 500, 1, session=8))
    assert tracker.is_new_session("t", restarted)
    assert not tracker.is_new_session("new", restarted)  # a topic's first session: no restart
    assert tracker.accept("t", restarted) == 0  # restarted
    assert not tracker.is_new_session("t", payload.decode(batch(2, 501, 1, session=8)))
    assert (tracker.duplicates, tracker.missing, tracker.new_sessions) == (2, 1200, 1)


def test_labels_are_what_the_wildcards_matched():
    assert label_for("cancorder/+/+")("cancorder/truck42/can0") == "truck42/can0"
    assert label_for("fleet/#")("fleet/a/b/c") == "a/b/c"
    assert label_for("cancorder/truck42/can0")("cancorder/truck42/can0") == "truck42/can0"
    assert label_for("bus")("bus") == "bus"


# ---- URLs and credentials ----

def test_url_defaults_and_topic_template():
    s = parse_url("mqtt://broker.example", environ={})
    assert (s.tls, s.host, s.port, s.topic, s.username, s.password) == \
        (False, "broker.example", 1883, DEFAULT_TOPIC, None, None)
    assert s.topic_for("truck42", "can0", "slcan") == "cancorder/truck42/can0"
    s = parse_url("mqtts://u%40x:p%3Aw@[::1]:8884/fleet/{interface}/{system}", environ={})
    assert (s.tls, s.host, s.port, s.username, s.password) == (True, "::1", 8884, "u@x", "p:w")
    assert s.topic_for("a/b", None, "gs+usb") == "fleet/gs_usb/a_b"  # no levels or wildcards
    assert s.where == "mqtts://[::1]:8884"


def test_password_from_file_or_environment(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    assert parse_url("mqtt://me@h/t", password_file=str(secret), environ={}).password == "s3cret"
    assert parse_url("mqtt://me@h/t", environ={PASSWORD_ENV: "env"}).password == "env"
    assert parse_url("mqtt://me:url@h/t", password_file=str(secret),
                     environ={PASSWORD_ENV: "env"}).password == "url"
    with pytest.raises(UsageError, match="needs a user name"):
        parse_url("mqtt://h/t", environ={PASSWORD_ENV: "env"})
    with pytest.raises(UsageError, match="cannot read it"):
        parse_url("mqtt://me@h/t", password_file=str(tmp_path / "missing"), environ={})


@pytest.mark.parametrize("url, kwargs, complaint", [
    ("http://h/t", {}, "expected an mqtt:// or mqtts:// URL"),
    ("mqtt://:1883/t", {}, "host is missing"),
    ("mqtt://h:99999/t", {}, "port must be a number"),
    ("mqtt://h/cancorder/+/x", {}, "cannot contain the wildcards"),
    ("mqtt://h/cancorder/{vehicle}", {}, "unknown topic field {vehicle}"),
    ("mqtt://h/", {"subscribe": True}, "give the topic to subscribe to"),
    ("mqtt://h/a/b+/c", {"subscribe": True}, "whole topic level"),
    ("mqtt://h/t", {"ca": "/nonexistent.pem"}, "--mqtt-ca /nonexistent.pem: no such file"),
    ("mqtt://h/t", {"ca": __file__}, "use an mqtts:// URL"),
    ("mqtts://h/t", {"ca": __file__}, "must be PEM"),
])
def test_bad_urls_are_one_clear_line(url, kwargs, complaint):
    with pytest.raises(UsageError, match=complaint.replace("+", r"\+").replace("{", r"\{")):
        parse_url(url, environ={}, **kwargs)


def test_password_never_shown_in_messages():
    with pytest.raises(UsageError) as info:
        parse_url("mqtt://me:topsecret@h:x/t", environ={})
    assert "topsecret" not in str(info.value)


# ---- the outbox ----

def drain(outbox):
    """Take and acknowledge everything: the sequence numbers in order."""
    sequences = []
    while True:
        item = outbox.next_unsent()
        if item is None:
            return sequences
        token, data, frames = item
        sequences.append(payload.decode(data).sequence)
        outbox.commit(token)


@pytest.fixture(params=["memory", "disk"])
def outbox_kind(request, tmp_path):
    def make(max_bytes=1 << 20):
        if request.param == "memory":
            return MemoryOutbox(max_bytes)
        return DiskSpool(str(tmp_path / "spool"), max_bytes)
    return make


def test_outbox_rewind_hands_out_the_unacknowledged_again(outbox_kind):
    outbox = outbox_kind()
    for seq in range(1, 6):
        outbox.append(batch(seq, seq * 10, 10), 10)
    first = outbox.next_unsent()
    outbox.next_unsent()
    outbox.commit(first[0])
    outbox.rewind()  # the connection dropped with batch 2 unacknowledged
    assert drain(outbox) == [2, 3, 4, 5]
    assert outbox.batches == 0 and outbox.next_unsent() is None
    outbox.append(batch(6, 60, 10), 10)
    assert drain(outbox) == [6]
    outbox.close()


def test_outbox_full_drops_the_oldest_and_counts(outbox_kind):
    one = len(batch(1, 0, 100))
    outbox = outbox_kind(max_bytes=(1 << 20))
    appended = 0
    while appended < 3 * (1 << 20) // one:
        appended += 1
        outbox.append(batch(appended, appended * 100, 100), 100)
    kept = drain(outbox)
    assert kept == list(range(appended - len(kept) + 1, appended + 1))  # the newest, in order
    assert outbox.dropped_batches == appended - len(kept) > appended // 2
    assert outbox.dropped_frames == 100 * outbox.dropped_batches
    outbox.close()


def test_disk_spool_resumes_after_a_restart(tmp_path):
    folder = str(tmp_path / "spool")
    spool = DiskSpool(folder, 4 << 20)
    for seq in range(1, 2001):
        spool.append(batch(seq, seq, 1), 1)
    for _ in range(500):  # 500 acknowledged, 10 more sent and not
        spool.commit(spool.next_unsent()[0])
    for _ in range(10):
        spool.next_unsent()
    spool.close()
    again = DiskSpool(folder, 4 << 20)
    assert again.batches == 1500
    assert drain(again) == list(range(501, 2001))
    assert [name for name in os.listdir(folder) if name != "lock"] == []  # empty afterwards
    again.close()


def test_disk_spool_cuts_a_torn_last_entry(tmp_path):
    folder = str(tmp_path / "spool")
    spool = DiskSpool(folder, 4 << 20)
    for seq in (1, 2):
        spool.append(batch(seq, seq, 1), 1)
    spool.close()
    [segment] = [name for name in os.listdir(folder) if name.endswith(".seg")]
    with open(os.path.join(folder, segment), "ab") as handle:
        handle.write(b"\x00\x00\x10\x00CCMQ")  # a crash in the middle of a write
    again = DiskSpool(folder, 4 << 20)
    assert drain(again) == [1, 2]
    again.close()


def full_disk_check(folder):
    """Run in a private mount namespace with a 256 KiB tmpfs at ``folder`` (below)."""
    import logging

    log = logging.getLogger("cancorder.test-spool")
    said = []
    log.warning = lambda text, *a, **k: said.append(text)
    spool = DiskSpool(os.path.join(folder, "spool"), 1 << 20, log)
    appended = 0
    for seq in range(1, 2001):  # 6 MB: the disk is full long before the 1 MiB limit
        spool.append(batch(seq, seq * 100, 100), 100)
        appended += 100
    assert spool.dropped_batches > 1000
    assert spool.pending_frames + spool.dropped_frames == appended  # each frame kept or counted
    assert len([t for t in said if "cannot write (No space left on device)" in t]) == 1, said
    for _ in range(3):  # acknowledged with no room left for the cursor: kept in memory
        spool.commit(spool.next_unsent()[0])
    filler = os.path.join(folder, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # take every byte that is left
    try:
        while True:
            os.write(fd, bytes(4096))
    except OSError:
        pass
    finally:
        os.close(fd)
    token = spool.next_unsent()[0]
    import time

    time.sleep(0.3)  # CURSOR_EVERY: this commit saves the cursor, or tries to
    spool.commit(token)
    pending = spool.pending_frames
    spool.close()  # no room for the cursor at the stop either: said, no exception
    assert any("cannot save the cursor" in t for t in said), said
    again = DiskSpool(os.path.join(folder, "spool"), 1 << 20, log)
    assert again.pending_frames >= pending  # at worst re-sent: the subscribers drop them
    sequences = drain(again)
    assert sequences == sorted(set(sequences)) and sequences[-1] == 2000
    again.close()
    os.remove(filler)
    print("ok")


def test_a_spool_on_a_full_disk_drops_the_oldest_and_never_raises(tmp_path):
    """Issue 22 item 1, the spool alone: a 256 KiB tmpfs (a private mount namespace)."""
    import shutil
    import subprocess
    import sys

    from tests.helpers import ROOT, cancorder_env

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare -m for a private tmpfs")
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=256k tmpfs "$1" && shift && '
         'exec "$@"', "sh", str(tmp_path), sys.executable, "-c",
         "import sys; from tests.mqtt.test_mqtt import full_disk_check; "
         "full_disk_check(sys.argv[1])", str(tmp_path)],
        capture_output=True, text=True, env=cancorder_env(), cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "ok", done.stdout


def test_disk_spool_is_one_cancorder_s(tmp_path):
    folder = str(tmp_path / "spool")
    spool = DiskSpool(folder, 4 << 20)
    with pytest.raises(SpoolError, match="in use by another cancorder"):
        DiskSpool(folder, 4 << 20)
    spool.close()
    DiskSpool(folder, 4 << 20).close()


def test_spool_flags_are_checked_before_serving(cancorder_process):
    proc = cancorder_process("serve", "-i", "virtual", "-c", "x", "--no-zeroconf",
                             "--mqtt-spool", "/tmp/nowhere")
    assert proc.proc.wait(30) == 2
    assert "--mqtt-spool needs --mqtt URL" in proc.log
    proc = cancorder_process("serve", "-i", "virtual", "-c", "x", "--no-zeroconf",
                             "--mqtt", "mqtt://h/{nope}")
    assert proc.proc.wait(30) == 2
    assert "unknown topic field {nope}" in proc.log


def test_a_spool_folder_serves_one_cancorder(cancorder_process, tmp_path):
    args = ["serve", "-i", "virtual", "-c", "x", "--no-zeroconf",
            "--mqtt", "mqtt://127.0.0.1:1/t", "--mqtt-spool", str(tmp_path / "spool")]
    first = cancorder_process(*args)
    first.wait_for(r"refused the connection: is the broker running and listening on port 1\?")
    second = cancorder_process(*args)
    assert second.proc.wait(30) == 2
    assert "is in use by another cancorder: give each logger its own spool folder" in second.log
    assert first.terminate() == 0


def test_take_records_cuts_at_record_boundaries(fast):
    take = fast.wire.take_records
    stream = b"".join(fast.wire.pack_frame(i, 0x10, 0, bytes(i % 9)) for i in range(100))
    sizes = [14 + i % 9 for i in range(100)]
    assert take(stream, 0, 10**6) == (len(stream), 100)
    assert take(stream, 0, sizes[0] + sizes[1]) == (sizes[0] + sizes[1], 2)
    assert take(stream, 0, sizes[0] + sizes[1] - 1) == (sizes[0], 1)
    assert take(stream, 0, 1) == (sizes[0], 1)  # one whole record at least
    assert take(bytearray(stream[:sizes[0] - 1]), 0, 1000) == (0, 0)  # not a whole record
    assert take(stream, sizes[0], sizes[1]) == (sizes[0] + sizes[1], 1)


def test_mangled_payloads_raise_payload_error_only():
    """Anything from the network: truncated, bit-flipped or random bytes give PayloadError
    (one line in dump, skipped) and never another exception."""
    import random

    rng = random.Random(14)
    good = batch(3, 30, 20)
    samples = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
               for _ in range(300)]
    samples += [good[:cut] for cut in range(len(good))]
    for _ in range(2000):
        mangled = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            mangled[rng.randrange(len(mangled))] = rng.getrandbits(8)
        samples.append(bytes(mangled))
    decoded = 0
    for data in samples:
        try:
            result = payload.decode(data)
        except PayloadError:
            continue
        decoded += 1  # a flip inside a payload byte or the timestamps is still a valid batch
        assert result.count == len(result.records)
    assert 0 < decoded < len(samples)


def test_publisher_counts_what_a_full_spool_dropped_in_its_stats(tmp_path, caplog):
    """In process, no broker (port 1 refuses): 3 MB of frames into a 1 MB spool."""
    import logging
    import time
    import types

    from cancorder.mqtt.publisher import MqttPublisher

    log = logging.getLogger("cancorder.test-mqtt")
    publisher = MqttPublisher(parse_url("mqtt://127.0.0.1:1/t/{channel}", environ={}),
                              spool_dir=str(tmp_path / "spool"), spool_size=1 << 20)
    publisher.start(types.SimpleNamespace(log=log, txt={"system": "s"}, channel="can0",
                                          interface="virtual"))
    assert publisher.topic == "t/can0" and publisher.status_topic == "t/can0/status"
    sent = 0
    with caplog.at_level(logging.INFO, logger="cancorder.test-mqtt"):
        for _ in range(100):
            publisher.put(records(sent, 1000))
            sent += 1000
            time.sleep(0.005)
        publisher.close(1.0)
    stats = publisher.stats()
    assert stats["connected"] == 0 and stats["published_frames"] == 0
    assert stats["dropped_frames"] > sent // 2
    assert stats["spool_bytes"] <= 1 << 20
    waiting = DiskSpool(str(tmp_path / "spool"), 1 << 20)
    assert waiting.pending_frames + stats["dropped_frames"] == sent  # nothing else lost
    waiting.close()
    text = caplog.text
    assert text.count("refused the connection") == 1
    assert "MQTT outbox full" in text and "dropped the oldest batches" in text
    assert f"{stats['dropped_frames']:,} frames dropped" in publisher.summary()


def test_config_buses_need_their_own_spool_folders(tmp_path):
    from cancorder.cli import serving_sources
    from cancorder.commands import _config as config
    from cancorder.errors import ConfigError

    path = tmp_path / "two.toml"
    path.write_text('mqtt = "mqtt://broker/fleet/{channel}"\nmqtt_spool = "/var/spool/x"\n'
                    '[[bus]]\nname = "a"\nchannel = "can0"\n'
                    '[[bus]]\nname = "b"\nchannel = "can1"\n')
    with pytest.raises(ConfigError, match=r'bus "b": mqtt_spool "/var/spool/x" is also bus "a"'):
        config.load(str(path), serving_sources())
    path.write_text(path.read_text().replace('name = "b"', 'name = "b"\nmqtt_spool = "/y"'))
    buses = config.load(str(path), serving_sources()).buses
    assert [b.args.mqtt for b in buses] == ["mqtt://broker/fleet/{channel}"] * 2
    assert [b.args.mqtt_spool for b in buses] == ["/var/spool/x", "/y"]
