"""cancorder archive end to end: loggers (the real `cancorder gen --mqtt`) -> Mosquitto (MQTT 5
shared subscriptions) -> archive workers -> a Parquet lake read back by DuckDB / pyarrow."""
import os
import signal
import time

import pytest

from tests.helpers import free_port, wait_until

duckdb = pytest.importorskip("duckdb")

GROUP = "lake"


def start_worker(cancorder_process, mosquitto, lake, name, *extra, group=GROUP, env=None):
    args = ["archive", mosquitto.url("cancorder/+/+"), "--to", str(lake), "--name", name,
            "--max-file-age", "1s", "--status-interval", "1", *extra]
    if group:
        args += ["--group", group]
    proc = cancorder_process(*args, env=env)
    proc.wait_for("archive: subscribed to", 30)
    return proc


def start_logger(cancorder_process, mosquitto, system, rate, count, tmp_path):
    proc = cancorder_process("gen", "--async", "-r", str(rate), "-n", str(count), "--data-mode",
                             "sequence", "--seed", "1", "--no-zeroconf", "--bind", "127.0.0.1",
                             "-p", str(free_port()), "--mqtt",
                             mosquitto.url(f"cancorder/{system}/{{channel}}"),
                             "--mqtt-spool", str(tmp_path / f"spool-{system}"))
    proc.wait_for("MQTT: publishing to", 30)
    return proc


def lake_frames(lake):
    """{(system, channel): [(frame number, the number in the data, timestamp)]} by frame."""
    if not list(lake.rglob("*.parquet")):
        return {}
    rows = duckdb.sql(f"select system, channel, frame, data, timestamp_us from read_parquet("
                      f"'{lake}/frames/**/*.parquet') order by system, channel, session, "
                      f"frame").fetchall()
    found = {}
    for system, channel, frame, data, timestamp in rows:
        found.setdefault((system, channel), []).append((frame, int.from_bytes(data, "big"),
                                                        timestamp))
    return found


def count_in(lake):
    if not list(lake.rglob("*.parquet")):
        return 0
    return duckdb.sql(f"select count(*) from read_parquet('{lake}/frames/**/*.parquet')"
                      ).fetchall()[0][0]


def assert_exact(lake, systems, count):
    """Every logger's frames 0..count-1, once each, in order (time never goes back)."""
    found = lake_frames(lake)
    assert sorted(found) == sorted((system, "gen") for system in systems), sorted(found)
    for key, rows in found.items():
        assert [frame for frame, _, _ in rows] == list(range(count)), key
        assert [number for _, number, _ in rows] == list(range(count)), key
        times = [timestamp for _, _, timestamp in rows]
        assert times == sorted(times), key


def run_fleet(broker, cancorder_process, tmp_path, loggers, rate, seconds, workers=2):
    mosquitto = broker()
    lake = tmp_path / "lake"
    procs = [start_worker(cancorder_process, mosquitto, lake, f"w{i}") for i in range(workers)]
    systems = [f"truck{i}" for i in range(loggers)]
    gens = [start_logger(cancorder_process, mosquitto, system, rate, rate * seconds, tmp_path)
            for system in systems]
    for gen in gens:
        assert gen.proc.wait(seconds * 4 + 30) == 0, gen.log
    total = loggers * rate * seconds
    assert wait_until(lambda: count_in(lake) >= total, 60), count_in(lake)
    for proc in procs:
        assert proc.terminate() == 0, proc.log
    assert_exact(lake, systems, rate * seconds)
    return procs


def test_two_workers_in_a_group_lake_holds_every_frame_once(broker, cancorder_process,
                                                            tmp_path):
    procs = run_fleet(broker, cancorder_process, tmp_path, loggers=3, rate=2000, seconds=5)
    shares = [int(p.wait_for(r"archive: done: ([\d,]+) frames").group(1).replace(",", ""))
              for p in procs]
    assert sum(shares) == 30000 and min(shares) > 0, shares  # both took a part


@pytest.mark.long
@pytest.mark.serial
def test_three_loggers_5000_frames_a_second_for_60_s(broker, cancorder_process, tmp_path):
    run_fleet(broker, cancorder_process, tmp_path, loggers=3, rate=5000, seconds=60)


def test_kill_9_of_a_worker_mid_run_nothing_lost_nothing_doubled(broker, cancorder_process,
                                                                 tmp_path):
    """One of two workers is killed mid-run; the other goes on with its share. Mosquitto (2.0)
    keeps handing the dead worker's session its share (and keeps what it never acknowledged):
    the other adopts that session meanwhile, and the worker restarted under its name takes it
    back with what is left, and rewrites under the same keys what it had stored but not
    acknowledged."""
    mosquitto = broker()
    lake = tmp_path / "lake"
    survivor = start_worker(cancorder_process, mosquitto, lake, "w0")
    victim = start_worker(cancorder_process, mosquitto, lake, "w1")
    gen = start_logger(cancorder_process, mosquitto, "truck0", 2000, 16000, tmp_path)
    victim.wait_for(r"archive: [1-9][\d,]* frames in", 30)
    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait(5)
    time.sleep(1)
    again = start_worker(cancorder_process, mosquitto, lake, "w1")
    assert gen.proc.wait(60) == 0, gen.log
    assert wait_until(lambda: count_in(lake) >= 16000, 60), count_in(lake)
    for proc in (survivor, again):
        assert proc.terminate() == 0, proc.log
    assert_exact(lake, ["truck0"], 16000)


def test_kill_9_of_a_worker_not_restarted_the_other_adopts_its_session(broker,
                                                                       cancorder_process,
                                                                       tmp_path):
    """One of two workers is killed mid-run and stays dead: its will tells the other, which
    adopts its session at the broker (what was queued for it, and again what it had not
    acknowledged), stops its share going there, and stores it all: each frame once."""
    mosquitto = broker()
    lake = tmp_path / "lake"
    port = free_port()
    survivor = start_worker(cancorder_process, mosquitto, lake, "w0", "--metrics",
                            f"127.0.0.1:{port}")
    victim = start_worker(cancorder_process, mosquitto, lake, "w1")
    systems = ["truck0", "truck1", "truck2"]
    gens = [start_logger(cancorder_process, mosquitto, system, 2000, 12000, tmp_path)
            for system in systems]
    victim.wait_for(r"archive: [1-9][\d,]* frames in", 30)
    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait(5)
    survivor.wait_for(r"worker w1 died \(its will came\); adopted its session", 10)
    for gen in gens:
        assert gen.proc.wait(60) == 0, gen.log
    assert wait_until(lambda: count_in(lake) >= 36000, 30), (count_in(lake), survivor.log)
    survivor.wait_for(r"let go of worker w1's adopted session: ([\d,]+) frames", 10)
    survivor.wait_for(r"adopted 1 session of dead workers \([1-9][\d,]* frames stored\)", 10)
    import urllib.request

    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    assert b"cancorder_archive_adopted_sessions{bus=\"truck0/gen\"} 1.0" in metrics, metrics
    assert survivor.terminate() == 0, survivor.log
    assert_exact(lake, systems, 12000)


def test_stored_batches_whose_acknowledgements_were_lost_are_not_written_again(
        broker, cancorder_process, tmp_path):
    """The exactly-once proof across a crash: a worker stores files while the broker is away
    (their acknowledgements go nowhere) and is killed; the broker delivers those batches again
    to the restarted worker, which finds them in the lake (the files' sequence lists) and
    acknowledges them: the files stay as they were, each frame once. (Written again, they would
    replace their files: test_lake's test_the_same_batches_written_twice_replace_their_files.)"""
    mosquitto = broker()
    lake = tmp_path / "lake"
    worker = start_worker(cancorder_process, mosquitto, lake, "w0", group=None)
    gen = start_logger(cancorder_process, mosquitto, "truck0", 2000, 4000, tmp_path)
    assert gen.proc.wait(30) == 0, gen.log
    time.sleep(0.3)  # the last batches reached the worker, not yet a file (--max-file-age 1s)
    mosquitto.stop()  # persists the session with what it has not had acknowledged
    assert wait_until(lambda: count_in(lake) >= 4000, 20), count_in(lake)
    first = {p.name: p.stat().st_ino for p in lake.rglob("*") if p.is_file()}
    os.kill(worker.proc.pid, signal.SIGKILL)  # its acknowledgements never reached the broker
    worker.proc.wait(5)
    mosquitto.start()
    again = start_worker(cancorder_process, mosquitto, lake, "w0", group=None)
    again.wait_for(r"archive: 0 frames in 0 files .* from 1 logger", 30)  # delivered again
    assert again.terminate() == 0, again.log
    assert {p.name: p.stat().st_ino for p in lake.rglob("*") if p.is_file()} == first
    assert_exact(lake, ["truck0"], 4000)


def publish_batches(mosquitto, topic, session, batches, start_us, step_us=100):
    """Crafted batches through the project's payload code: (sequence, first frame, count)
    each; frame n at ``start_us + n * step_us``, its data the number n."""
    from paho.mqtt import client as mqtt

    from cancorder._fast import wire
    from cancorder.mqtt import payload

    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect("127.0.0.1", mosquitto.port)
    publisher.loop_start()
    try:
        for sequence, first, count in batches:
            records = b"".join(wire.pack_frame(start_us + (first + i) * step_us, 0x123, 0,
                                                (first + i).to_bytes(8, "big"))
                               for i in range(count))
            info = publisher.publish(topic, payload.encode(session, sequence, first, count,
                                                           records), qos=1)
            info.wait_for_publish(5)
    finally:
        publisher.loop_stop()
        publisher.disconnect()


def test_a_batch_published_twice_is_stored_once(broker, cancorder_process, tmp_path):
    mosquitto = broker()
    lake = tmp_path / "lake"
    worker = start_worker(cancorder_process, mosquitto, lake, "w0")
    now = int(time.time() * 1e6)
    # QoS 1 duplicates, one late
    publish_batches(mosquitto, "cancorder/van/can1", 0x5EED,
                    [(sequence, (sequence - 1) * 10, 10) for sequence in (1, 2, 2, 3, 1)], now)
    assert wait_until(lambda: count_in(lake) >= 30, 20)
    time.sleep(1.5)
    assert worker.terminate() == 0, worker.log
    rows = lake_frames(lake)[("van", "can1")]
    assert [frame for frame, _, _ in rows] == list(range(30))


def test_the_workers_write_the_gaps_table_of_each_ended_hour(broker, cancorder_process,
                                                            tmp_path):
    """A logger whose spool dropped batches (its frame numbers jump), one across an hour's
    start, and a complete one, through two workers of a group: once the hours are over, the
    gaps table (DuckDB) names exactly the missing frames, in the hour of the frame after each
    gap, and nothing for the complete logger."""
    import datetime

    mosquitto = broker()
    lake = tmp_path / "lake"
    workers = [start_worker(cancorder_process, mosquitto, lake, name) for name in ("w0", "w1")]
    hour = (int(time.time()) // 3600 - 3) * 3600  # an hour that ended three hours ago
    start_us = (hour + 3599) * 1_000_000 + 500_000  # frame n at 59:59.5 + n x 10 ms: 50.. next hour
    van = [(1, 0, 10), (2, 10, 10), (4, 30, 10), (5, 40, 10), (7, 55, 10), (8, 65, 10)]
    publish_batches(mosquitto, "cancorder/van/can1", 0x7A, van, start_us, step_us=10_000)
    publish_batches(mosquitto, "cancorder/bus/can0", 0xB5, [(1, 0, 10), (2, 10, 10),
                                                           (3, 20, 10)], start_us, 10_000)
    assert wait_until(lambda: count_in(lake) >= 90, 20), count_in(lake)
    first, second = (datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
                     for t in (hour, hour + 3600))
    gaps_of = lake / "gaps" / "system=van" / "channel=can1"
    wanted = [(first, gaps_of / f"date={first:%Y-%m-%d}" / f"hour={first:%H}" / "gaps.parquet"),
              (second, gaps_of / f"date={second:%Y-%m-%d}" / f"hour={second:%H}" /
               "gaps.parquet")]
    assert wait_until(lambda: all(path.exists() for _, path in wanted), 20), \
        [w.log for w in workers]
    for worker in workers:
        assert worker.terminate() == 0, worker.log
    logs = "\n".join(worker.log for worker in workers)
    assert "archive: gaps in van/can1 on" in logs, logs
    rows = duckdb.sql(f"select system, channel, session, from_frame, to_frame, missing, "
                      f"after_us, before_us, date::varchar, hour::integer from read_parquet("
                      f"'{lake}/gaps/**/*.parquet', hive_partitioning = true) "
                      f"order by system, channel, from_frame").fetchall()
    at = [start_us + n * 10_000 for n in range(70)]
    assert rows == [
        ("van", "can1", 0x7A, 20, 29, 10, at[19], at[30], f"{first:%Y-%m-%d}", first.hour),
        ("van", "can1", 0x7A, 50, 54, 5, at[49], at[55], f"{second:%Y-%m-%d}", second.hour)]
    complete = lake / "gaps" / "system=bus" / "channel=can0" / f"date={first:%Y-%m-%d}" / \
        f"hour={first:%H}" / "gaps.parquet"
    assert complete.exists()  # written, and empty: no gap rows for the complete logger
    assert duckdb.sql(f"select count(*) from read_parquet('{complete}')").fetchall() == [(0,)]
    found = lake_frames(lake)
    assert [frame for frame, _, _ in found[("van", "can1")]] == \
        [n for _, first_frame, count in van for n in range(first_frame, first_frame + count)]
    assert [frame for frame, _, _ in found[("bus", "can0")]] == list(range(30))


def test_pyarrow_dataset_reads_the_lake_over_s3(broker, cancorder_process, tmp_path, s3_server):
    import pyarrow.dataset as ds
    import pyarrow.fs

    from tests.upload.s3 import KEY_ID, SECRET, s3_env

    s3_server.client().create_bucket(Bucket="fleet")
    mosquitto = broker()
    from tests.helpers import cancorder_env

    worker = start_worker(cancorder_process, mosquitto, "s3://fleet/lake", "w0",
                          "--upload-endpoint", s3_server.endpoint,
                          env=cancorder_env(**s3_env()))
    gen = start_logger(cancorder_process, mosquitto, "bus7", 1000, 3000, tmp_path)
    assert gen.proc.wait(30) == 0, gen.log
    worker.wait_for(r"archive: 3,000 frames in", 30)
    assert worker.terminate() == 0, worker.log
    store = pyarrow.fs.S3FileSystem(access_key=KEY_ID, secret_key=SECRET, region="us-east-1",
                                    endpoint_override=s3_server.endpoint.split("//")[1],
                                    scheme="http")
    table = ds.dataset("fleet/lake/frames", filesystem=store, format="parquet",
                       partitioning="hive").to_table().sort_by("frame")
    assert table.column("frame").to_pylist() == list(range(3000))
    assert [int.from_bytes(d, "big") for d in table.column("data").to_pylist()] == \
        list(range(3000))
    assert set(table.column("system").to_pylist()) == {"bus7"}


def test_frames_through_a_broker_restart_once_each(broker, cancorder_process, tmp_path):
    """One worker (no group: Mosquitto 2.0.11 forgets a durable client's shared subscription
    over its restart, and drops what loggers publish before the workers subscribe again; fixed
    in 2.0.12, docs/archive.md)."""
    mosquitto = broker()
    lake = tmp_path / "lake"
    worker = start_worker(cancorder_process, mosquitto, lake, "w0", group=None)
    gen = start_logger(cancorder_process, mosquitto, "truck0", 2000, 16000, tmp_path)
    worker.wait_for(r"archive: [1-9][\d,]* frames in", 30)
    mosquitto.restart()
    assert gen.proc.wait(60) == 0, gen.log
    assert wait_until(lambda: count_in(lake) >= 16000, 60), (count_in(lake), worker.log)
    assert worker.terminate() == 0, worker.log
    assert "MQTT: reconnected" in worker.log
    assert_exact(lake, ["truck0"], 16000)


def test_bad_destination_one_line_and_exit_2(cancorder_process, tmp_path):
    proc = cancorder_process("archive", "mqtt://127.0.0.1:1/cancorder/+/+", "--to",
                             "ftp://x/y")
    assert proc.proc.wait(20) == 2
    assert "error: --to ftp://x/y: give a folder or s3://BUCKET/PREFIX" in proc.log
    assert "Traceback" not in proc.log


def test_dbc_signals_table_equals_cantools_decoding(broker, cancorder_process, tmp_path):
    """A logger replaying a recording with --mqtt (original times); the signals/ table holds
    one row per signal value, equal to cantools' decoding of each frame."""
    import cantools

    from tests.mqtt.test_mqtt_signals import engine_frames
    from tests.test_dbc import DBC
    from tests.test_reassembly import write_candump

    mosquitto = broker()
    lake = tmp_path / "lake"
    database = tmp_path / "engine.dbc"
    database.write_text(DBC)
    frames = engine_frames(seconds=2.0)
    log = write_candump(tmp_path / "engine.log", frames)
    worker = start_worker(cancorder_process, mosquitto, lake, "w0", "--dbc", str(database))
    # at the recording's own pace (2 s), not --speed max: a replay that ends at once has 3 s to
    # publish what it spooled, and a loaded CI machine's first connection took longer
    replay = cancorder_process("replay", log, "--async", "--original-time",
                               "--no-zeroconf", "--bind", "127.0.0.1", "-p", str(free_port()),
                               "--mqtt", mosquitto.url("cancorder/truck7/{channel}"))
    assert replay.proc.wait(timeout=30) == 0, replay.log
    assert f"{len(frames):,} frames published" in replay.log, replay.log
    worker.wait_for(f"archive: {len(frames):,} frames in", 30)
    assert worker.terminate() == 0, worker.log
    rows = duckdb.sql(f"select timestamp_us, message, signal, value, label from read_parquet("
                      f"'{lake}/signals/**/*.parquet') order by timestamp_us, signal"
                      ).fetchall()
    message = cantools.database.load_file(str(database)).get_message_by_name("EEC1")
    expected = []
    for t_us, can_id, flags, data in frames:
        if can_id != 0x0CF00400:
            continue
        for name, value in sorted(message.decode(data, decode_choices=True).items()):
            number = float(getattr(value, "value", value))
            label = str(value) if not isinstance(value, (int, float)) else None
            expected.append((t_us, "EEC1", name, number, label))
    assert len(rows) == len(expected) > 0
    assert rows == expected


def test_metrics_per_logger_and_the_status_line(broker, cancorder_process, tmp_path):
    import urllib.request

    mosquitto = broker()
    lake = tmp_path / "lake"
    port = free_port()
    worker = start_worker(cancorder_process, mosquitto, lake, "w0", "--metrics",
                          f"127.0.0.1:{port}")
    gen = start_logger(cancorder_process, mosquitto, "truck3", 1000, 2000, tmp_path)
    assert gen.proc.wait(30) == 0, gen.log
    worker.wait_for(r"archive: 2,000 frames in \d+ files? .* from 1 logger; 0 batches "
                    r"waiting for their file; lag: truck3/gen \d+\.\d s", 30)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'cancorder_frames_received_total{bus="truck3/gen"} 2000.0' in text
    assert 'cancorder_frames_sent_total{bus="truck3/gen"} 2000.0' in text  # stored
    assert 'cancorder_seconds_since_last_frame{bus="truck3/gen"}' in text
    assert 'cancorder_archive_files{bus="truck3/gen"}' in text
    assert worker.terminate() == 0, worker.log


def test_no_broker_one_line_and_exit_1(cancorder_process, tmp_path):
    proc = cancorder_process("archive", f"mqtt://127.0.0.1:{free_port()}/cancorder/+/+",
                             "--to", str(tmp_path / "lake"))
    assert proc.proc.wait(20) == 1
    assert "refused the connection: is the broker running" in proc.log
    assert "Traceback" not in proc.log


def test_uploaded_recordings_join_the_lake_once(cancorder_process, tmp_path, s3_server):
    """Recordings in a bucket (as --upload leaves them: PREFIX/SYSTEM/CHANNEL/NAME) into the
    lake folder; a second run archives nothing again, and the lake holds each frame once."""
    from tests.helpers import cancorder_env
    from tests.test_reassembly import write_candump
    from tests.upload.s3 import s3_env

    start = 1_765_000_000_000_000
    frames = [(start + i * 1000, 0x200 + i % 5, 0, i.to_bytes(8, "big")) for i in range(5000)]
    log = write_candump(tmp_path / "drive.log", frames)
    client = s3_server.client()
    client.create_bucket(Bucket="fleet")
    client.put_object(Bucket="fleet", Key="raw/van9/can0/20251206-054640.log",
                      Body=log.read_bytes())
    lake = tmp_path / "lake"
    for run in range(2):
        proc = cancorder_process("archive", "s3://fleet/raw", "--to", str(lake),
                                 "--upload-endpoint", s3_server.endpoint,
                                 env=cancorder_env(**s3_env()))
        assert proc.proc.wait(60) == 0, proc.log
        archived = "1 recording archived (5,000 frames)" if run == 0 else \
            "0 recordings archived (0 frames)"
        assert archived in proc.log, proc.log
    rows = duckdb.sql(f"select system, frame, data, timestamp_us from read_parquet('{lake}/"
                      f"frames/**/*.parquet') order by frame").fetchall()
    assert [(s, f) for s, f, _, _ in rows] == [("van9", i) for i in range(5000)]
    assert [int.from_bytes(d, "big") for _, _, d, _ in rows] == list(range(5000))
    assert [t for _, _, _, t in rows] == [f[0] for f in frames]


def test_a_store_that_refuses_ends_it_with_exit_1_and_loses_nothing(broker, cancorder_process,
                                                                    tmp_path, s3_server):
    """No such bucket: one error line, exit 1, nothing acknowledged; once the bucket exists,
    the worker started again under its name gets every batch again from the broker."""
    from tests.helpers import cancorder_env
    from tests.upload.s3 import s3_env

    import io

    import pyarrow.parquet as pq

    mosquitto = broker()
    flags = ("--upload-endpoint", s3_server.endpoint)
    env = cancorder_env(**s3_env())
    missing = start_worker(cancorder_process, mosquitto, "s3://fleet/lake", "w0", *flags,
                           env=env)
    gen = start_logger(cancorder_process, mosquitto, "truck0", 1000, 2000, tmp_path)
    assert gen.proc.wait(30) == 0, gen.log
    assert missing.proc.wait(30) == 1, missing.log
    assert "error: s3://fleet" in missing.log and "no bucket named fleet" in missing.log
    assert "Traceback" not in missing.log
    s3_server.client().create_bucket(Bucket="fleet")
    again = start_worker(cancorder_process, mosquitto, "s3://fleet/lake", "w0", *flags,
                         env=env)
    again.wait_for("archive: 2,000 frames in", 30)
    assert again.terminate() == 0, again.log
    frames = sorted(value for key, body in s3_server.objects("fleet").items()
                    if key.startswith("lake/frames/") and key.endswith(".parquet")
                    for value in pq.read_table(io.BytesIO(body)).column("frame").to_pylist())
    assert frames == list(range(2000))


def test_an_adopted_session_taken_back_by_its_worker_is_let_go_without_reconnecting(broker):
    """The adopter's client under a dead worker's id: when the worker comes back (the same id,
    its session kept), the broker closes the adopter's connection; the adopter never connects
    again (it would take the session back from its owner), and the owner stays connected."""
    from paho.mqtt import client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from cancorder.archive import takeover
    from cancorder.mqtt.connection import parse_url

    mosquitto = broker()
    settings = parse_url(mosquitto.url("cancorder/+/+"), subscribe=True)
    adopted = takeover.adopt(settings, GROUP, "w1", lambda *args: None)
    try:
        assert adopted.connected
        owner = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                            client_id=takeover.client_id_of(GROUP, "w1"), protocol=mqtt.MQTTv5)
        kicked = []
        owner.on_disconnect = lambda *args: kicked.append(args[3])
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        owner.connect("127.0.0.1", mosquitto.port, clean_start=False, properties=properties)
        owner.loop_start()
        try:
            assert wait_until(lambda: not adopted.connected, 10)
            time.sleep(3)  # paho's reconnect delay is 1 s: time for it to try
            assert not adopted.connected and not kicked, kicked
            assert owner.is_connected()
        finally:
            owner.loop_stop()
            owner.disconnect()
    finally:
        adopted.close(forget=False)
