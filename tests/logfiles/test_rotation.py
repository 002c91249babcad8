"""The recorder: file names, .part, rotation by size and on wall-clock boundaries (fake clock),
retention by count and size, every python-can format read back, failures."""
import gzip
import os
import shutil
import subprocess
import sys
import time
import zlib

import can
import pytest

from cancorder._fast import wire
from cancorder.errors import UsageError
from cancorder.logfiles.formats import log_format
from cancorder.logfiles.naming import PART
from cancorder.logfiles.rotation import RecordOptions, RotatingLog, check_record_options
from cancorder.sinks.recorder import Recorder
from tests.helpers import ROOT, cancorder_env
from tests.tshark import tshark_frames

T0 = time.mktime((2026, 3, 1, 10, 59, 58, 0, 0, -1))  # local time 10:59:58


class Clock:
    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now


class Lines:
    """Log lines the recorder says (a logger's info/warning)."""

    def __init__(self):
        self.lines = []

    def info(self, text, *args, **kwargs):
        self.lines.append(("info", text))

    def warning(self, text, *args, **kwargs):
        self.lines.append(("warning", text))

    def error(self, text, *args, **kwargs):
        self.lines.append(("error", text))

    def text(self):
        return "\n".join(text for _, text in self.lines)


def records(start, count, micros=None, size=8):
    base = micros if micros is not None else int(T0 * 1e6)
    return b"".join(wire.pack_frame(base + i * 100, i % 0x800, 0,
                                    (i % 256).to_bytes(1, "big") * size)
                    for i in range(start, start + count))


def read_back(path):
    if ".pcapng" in str(path):  # python-can has no pcapng reader: Wireshark's reads it
        return [(micros, can_id, data) for _, micros, can_id, _, data in tshark_frames(path)]
    return [(round(m.timestamp * 1e6), m.arbitration_id, bytes(m.data))
            for m in can.LogReader(str(path))]


def expected(start, count, micros=None, size=8):
    return [(f[0], f[1], f[3]) for f in wire.StreamDecoder().feed(
        records(start, count, micros, size))]


def test_names_fields_and_the_part_suffix(tmp_path):
    clock = Clock()
    options = RecordOptions(str(tmp_path / "%Y%m%d" / "%H%M%S-{channel}-{interface}-{port}-"
                                             "{n:03d}.log.gz"))
    log = RotatingLog(options, {"channel": "socket://127.0.0.1:5", "interface": "slcan",
                                "port": 42420}, Lines(), clock)
    log.write(records(0, 10))
    name = tmp_path / "20260301" / "105958-socket_127_0_0_1_5-slcan-42420-001.log.gz"
    assert log.current == str(name)
    assert os.path.exists(str(name) + PART) and not name.exists()  # being written
    log.close()
    assert name.exists() and not os.path.exists(str(name) + PART)
    assert read_back(name) == expected(0, 10)


def test_an_existing_file_is_never_overwritten(tmp_path):
    (tmp_path / "x.log").write_text("precious\n")
    lines = Lines()
    log = RotatingLog(RecordOptions(str(tmp_path / "x.log")), {}, lines, Clock())
    log.write(records(0, 3))
    log.close()
    assert (tmp_path / "x.log").read_text() == "precious\n"
    assert read_back(tmp_path / "x-2.log") == expected(0, 3)


def test_time_rotation_on_wall_clock_boundaries(tmp_path):
    clock = Clock()  # 10:59:58
    log = RotatingLog(RecordOptions(str(tmp_path / "%H%M%S.log"), rotate_time=3600.0), {},
                      Lines(), clock)
    log.write(records(0, 5))
    clock.now += 1.5  # 10:59:59.5: same file
    log.write(records(5, 5))
    clock.now += 0.5  # 11:00:00: a new file, named for the hour
    log.tick()
    assert log.files == [str(tmp_path / "105958.log")]
    log.write(records(10, 5))
    clock.now += 3599.9  # 11:59:59.9
    log.tick()
    log.write(records(15, 5))
    clock.now += 0.2  # 12:00:00.1: the next write rotates first
    log.write(records(20, 5))
    log.close()
    names = [os.path.basename(p) for p in log.files]
    assert names == ["105958.log", "110000.log", "120000.log"]
    assert [len(read_back(p)) for p in log.files] == [10, 10, 5]
    assert sum((read_back(p) for p in log.files), []) == expected(0, 25)


def test_size_rotation_keeps_every_frame_once_in_order(tmp_path):
    for ext in (".log", ".log.gz", ".blf", ".asc", ".csv", ".pcapng", ".pcapng.gz"):
        clock = Clock()
        compressed = ext in (".log.gz", ".blf", ".pcapng.gz")
        options = RecordOptions(str(tmp_path / ext[1:] / f"part-{{n}}{ext}"),
                                rotate_size=4_000 if compressed else 20_000)
        log = RotatingLog(options, {}, Lines(), clock)
        for k in range(0, 6000, 200):
            clock.now += 0.05
            log.write(records(k, 200))
            log.tick()
        log.close()
        assert len(log.files) > 2, ext
        got = []
        for path in log.files:
            assert not path.endswith(PART)
            got.extend(read_back(path))
        assert [g[1:] for g in got] == [e[1:] for e in expected(0, 6000)], ext
        assert log.frames == 6000 and log.lost == 0


def test_every_python_can_writer_and_gzip_text(tmp_path):
    for ext in (".asc", ".asc.gz", ".blf", ".csv", ".csv.gz", ".db", ".log", ".log.gz",
                ".mf4", ".trc", ".txt", ".txt.gz", ".pcapng", ".pcapng.gz"):
        path = tmp_path / f"x{ext}"
        log = RotatingLog(RecordOptions(str(path)), {}, Lines(), Clock())
        log.write(records(0, 50))
        log.close()
        assert path.exists(), ext
        if ext.startswith(".txt"):  # python-can has no reader for its printer format
            opener = gzip.open if ext.endswith(".gz") else open
            with opener(path, "rt") as file:
                assert len(file.read().splitlines()) == 50
            continue
        assert [r[1:] for r in read_back(path)] == [e[1:] for e in expected(0, 50)], ext


def test_retention_by_count_and_by_size_never_the_open_file(tmp_path):
    earlier = RotatingLog(RecordOptions(str(tmp_path / "rec-{n}.log")), {}, Lines(),
                          Clock(T0 - 3600))
    earlier.write(records(0, 1))
    earlier.close()
    old = tmp_path / "rec-1.log"  # from an earlier run: counts too
    os.utime(old, (1, 1))
    (tmp_path / "other.log").write_text("not ours\n")
    foreign = tmp_path / "rec-500.log"  # named like ours, but not written by this recording
    foreign.write_text("(1.0) can0 001#00\n")
    os.utime(foreign, (1, 1))
    lines = Lines()
    clock = Clock()
    log = RotatingLog(RecordOptions(str(tmp_path / "rec-{n}.log"), rotate_size=10_000,
                                    keep_files=3), {}, lines, clock)
    for k in range(0, 3000, 100):
        clock.now += 1
        log.write(records(k, 100))
    kept = sorted(os.listdir(tmp_path))
    assert "other.log" in kept and "rec-1.log" not in kept and "rec-500.log" in kept
    closed = [name for name in kept if name.startswith("rec-") and not name.endswith(PART)
              and name != "rec-500.log"]
    assert len(closed) == 2 and os.path.exists(log.current + PART)  # 2 closed + the open one
    assert "deleted the oldest recording" in lines.text() and "--keep-files 3" in lines.text()
    log.close()

    sized = tmp_path / "sized"
    log = RotatingLog(RecordOptions(str(sized / "s-{n}.log"), rotate_size=10_000,
                                    keep_size=35_000), {}, lines, clock)
    for k in range(0, 5000, 100):
        clock.now += 1
        log.write(records(k, 100))
        total = sum(os.path.getsize(sized / name) for name in os.listdir(sized))
        assert total <= 35_000 + 10_000  # at most one file over while it is written
    log.close()
    total = sum(os.path.getsize(sized / name) for name in os.listdir(sized))
    assert total <= 35_000 and "--keep-size" in lines.text()
    # the newest frames are the ones kept
    last = [path for path in log.files if os.path.exists(path)][-1]
    assert read_back(last)[-1] == expected(4999, 1)[0]


def test_text_is_flushed_every_second(tmp_path):
    clock = Clock()
    for ext in (".log", ".log.gz", ".asc"):
        log = RotatingLog(RecordOptions(str(tmp_path / f"f{ext}")), {}, Lines(), clock)
        log.write(records(0, 10))
        clock.now += 1.0
        log.tick()
        data = open(str(tmp_path / f"f{ext}") + PART, "rb").read()
        if ext.endswith(".gz"):
            data = zlib.decompressobj(wbits=31).decompress(data)  # no trailer yet: a prefix
        assert data.count(b"\n") >= 10, ext
        log.close()


@pytest.mark.parametrize("path,message", [
    ("x.pcap", "cannot tell the format from the extension '.pcap'"),
    ("x.blf.gz", "cannot write .blf through gzip"),
    ("x-{bus}.log", "unknown field {bus}"),
    ("x-{n.log", "x-{n.log"),
])
def test_bad_paths_are_usage_errors(tmp_path, path, message):
    with pytest.raises(UsageError) as caught:
        check_record_options(RecordOptions(str(tmp_path / path)))
    assert message in str(caught.value)


def test_log_format():
    assert log_format("a/B.LOG.GZ").fast and log_format("a/B.LOG.GZ").gz
    assert log_format("x.blf").extension == ".blf"


def test_recorder_sink_never_blocks_and_counts_what_it_drops(tmp_path):
    recorder = Recorder(RecordOptions(str(tmp_path / "r.log")), max_queued=64 << 10)

    class Bus:
        channel, log_channel, interface, port, log = "can0", "can0", "virtual", 1, Lines()
        failed = None

    recorder.start(Bus)
    batch = records(0, 1000)  # 22 KB
    started = time.perf_counter()
    for _ in range(200):
        recorder.put(batch)
    assert time.perf_counter() - started < 2.0
    recorder.close()
    stats = recorder.stats()
    assert stats["frames"] + stats["lost_frames"] == 200_000
    assert stats["frames"] == len(read_back(tmp_path / "r.log"))
    if stats["lost_frames"]:
        assert "cannot keep up" in Bus.log.text()
    assert "recorded" in recorder.summary()


def test_a_recorder_bug_is_reported_to_the_bus_never_silent(tmp_path, monkeypatch):
    recorder = Recorder(RecordOptions(str(tmp_path / "r.log")))
    calls = []

    class Bus:
        channel, log_channel, interface, port, log = "can0", "can0", "virtual", 1, Lines()

        @staticmethod
        def failed(what, exc):
            calls.append((what, str(exc)))

    recorder.start(Bus)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(recorder._rotating, "write", broken)
    recorder.put(records(0, 10))
    recorder.close()
    assert calls == [("the recorder", "a bug")]
    recorder.put(records(10, 10))  # later batches are counted, never queued
    assert recorder.stats()["lost_frames"] == 20


def test_gzip_names_python_can_can_read_back(tmp_path):
    with pytest.raises(UsageError) as caught:
        check_record_options(RecordOptions(str(tmp_path / "x.v2.log.gz")))
    assert "exactly two extensions" in str(caught.value)
    check_record_options(RecordOptions(str(tmp_path / "%Y%m%d-{n}.log.gz")))


def test_flags_and_timestamps_survive_every_format_that_holds_them(tmp_path):
    """Each frame's own timestamp and its extended/FD/BRS/ESI flags, read back by python-can."""
    frames = []
    for i in range(64):
        flags = (wire.FLAG_EXT if i % 2 else 0) | (
            wire.FLAG_FD | (wire.FLAG_BRS if i % 3 else 0) | (wire.FLAG_ESI if i % 5 == 0 else 0)
            if i % 4 else 0)
        length = (0, 1, 8, 12, 64)[i % 5] if flags & wire.FLAG_FD else i % 9
        frames.append((int(T0 * 1e6) + i * 1234 + (i % 7), (0x1ABCDE00 + i) if flags & 1 else
                       0x7F0 + i % 16, flags, bytes([i]) * length))
    batch = b"".join(wire.pack_frame(*frame) for frame in frames)
    for ext in (".log", ".log.gz", ".blf", ".asc", ".pcapng"):
        path = tmp_path / f"f{ext}"
        log = RotatingLog(RecordOptions(str(path)), {}, Lines(), Clock())
        log.write(batch)
        log.close()
        if ext == ".pcapng":  # Wireshark's reader: every flag, to the microsecond
            assert [f[1:] for f in tshark_frames(path)] == frames
            continue
        reader = (can.ASCReader(str(path), relative_timestamp=False) if ext == ".asc" else
                  can.LogReader(str(path)))
        back = list(reader)
        assert len(back) == len(frames), ext
        for msg, (micros, can_id, flags, data) in zip(back, frames):
            assert (msg.arbitration_id, bytes(msg.data)) == (can_id, data), ext
            assert (msg.is_extended_id, msg.is_fd, msg.bitrate_switch,
                    msg.error_state_indicator) == (bool(flags & wire.FLAG_EXT),
                                                   bool(flags & wire.FLAG_FD),
                                                   bool(flags & wire.FLAG_BRS),
                                                   bool(flags & wire.FLAG_ESI)), (ext, flags)
            # spacing exact to the microsecond; the absolute time too where the format keeps
            # it (BLF's header holds the start to the millisecond)
            offset = (msg.timestamp - back[0].timestamp) * 1e6
            assert abs(offset - (micros - frames[0][0])) < 1.5, ext
            assert abs(msg.timestamp * 1e6 - micros) < (1000 if ext == ".blf" else 1.5), ext


def test_size_and_time_rotation_together_whichever_comes_first(tmp_path):
    clock = Clock()  # 10:59:58
    log = RotatingLog(RecordOptions(str(tmp_path / "%H%M%S-{n}.log"), rotate_size=5_000,
                                    rotate_time=3600.0), {}, Lines(), clock)
    log.write(records(0, 20))  # ~700 bytes: no size rotation
    clock.now += 2.0  # 11:00:00: the hour comes first
    log.write(records(20, 20))
    assert [os.path.basename(p) for p in log.files] == ["105958-1.log"]
    for k in range(40, 400, 20):  # then the size comes first, within the hour
        clock.now += 1.0
        log.write(records(k, 20))
    log.close()
    names = [os.path.basename(p) for p in log.files]
    assert names[:2] == ["105958-1.log", "110000-2.log"] and len(names) > 3, names
    assert all(os.path.getsize(p) <= 5_000 + 2_000 for p in log.files[1:])
    assert sum((read_back(p) for p in log.files), []) == expected(0, 400)


def test_a_stalled_disk_never_blocks_put_and_what_is_dropped_is_counted(tmp_path, monkeypatch):
    """The writing thread stuck in a write (a disk that does not answer): put() still returns
    at once, batches beyond the queue's bound are dropped, counted and said once, and what was
    queued is written when the disk answers again."""
    import threading

    recorder = Recorder(RecordOptions(str(tmp_path / "s.log")), max_queued=64 << 10)

    class Bus:
        channel, log_channel, interface, port, log = "can0", "can0", "virtual", 1, Lines()
        failed = None

    recorder.start(Bus)
    release = threading.Event()
    entered = threading.Event()
    real_write = recorder._rotating.write

    def stalled(*args, **kwargs):
        entered.set()
        release.wait(60)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(recorder._rotating, "write", stalled)
    batch = records(0, 1000)  # 22 KB
    recorder.put(batch)
    assert entered.wait(10)  # the writer is stuck in that first batch
    started = time.perf_counter()
    for _ in range(49):
        recorder.put(batch)
    took = time.perf_counter() - started
    assert took < 1.0, took  # never waited for the disk
    assert recorder.dropped == 47_000  # two batches fit in 64 KiB behind the stuck one
    assert Bus.log.text().count("cannot keep up") == 1
    release.set()
    recorder.close()
    stats = recorder.stats()
    assert stats == {"frames": 3000, "lost_frames": 47_000, "files": 1, "errors": 0,
                     "bytes": os.path.getsize(tmp_path / "s.log")}
    assert len(read_back(tmp_path / "s.log")) == 3000
    assert "47,000 frames could not be recorded" in recorder.summary()


def test_one_table_of_formats_serves_reading_and_writing():
    """logfiles.formats.FORMATS decides for both sides: every writable suffix (and its .gz where
    the table allows it) is accepted by the recorder, every readable one by the readers; .blf
    is read through gzip but never written through it (python-can's BLF writer seeks back to
    its header), .txt is written but never read."""
    from can.io.logger import MESSAGE_WRITERS
    from can.io.player import MESSAGE_READERS

    from cancorder.logfiles.formats import COMPILED, FORMATS, read_format

    # every format python-can has, and pcapng (cancorder's own, compiled, both ways)
    assert sorted(s for s, f in FORMATS.items() if f.writer) == sorted(
        [*MESSAGE_WRITERS, ".pcapng"])
    assert sorted(s for s, f in FORMATS.items() if f.reader) == sorted(
        [*MESSAGE_READERS, ".pcapng"])
    assert FORMATS[".pcapng"].reader == FORMATS[".pcapng"].writer == COMPILED
    for suffix, fmt in FORMATS.items():
        if fmt.writer and suffix != ".mf4":
            assert log_format(f"x{suffix}").spec is fmt
            if fmt.gzip_write:
                assert log_format(f"x{suffix}.gz").gz
            else:
                with pytest.raises(UsageError, match="cannot write"):
                    log_format(f"x{suffix}.gz")
        if fmt.reader:
            assert read_format(f"x{suffix}") == (fmt, False)
            if fmt.gzip_read:
                assert read_format(f"x{suffix}.gz") == (fmt, True)
            else:
                with pytest.raises(UsageError, match="cannot tell the format"):
                    read_format(f"x{suffix}.gz")
    assert read_format("x.blf.gz")[1] and not FORMATS[".blf"].gzip_write
    with pytest.raises(UsageError):
        read_format("x.txt")


# ---- issue 22: retention, a full disk, crash leftovers, a writer that falls behind ----

def _frames_of(path):
    return [frame[1:] for frame in read_back(path)]


def test_retention_deletes_only_files_this_recording_created(tmp_path):
    """Two buses record 'DIR/%H%M%S.log' into one folder with --keep-files 3, beside a user's
    file and another program's: each bus deletes only its own files (earlier runs included)."""
    important = tmp_path / "important.log"
    important.write_text("notes\n")
    os.utime(important, (1, 1))  # older than anything recorded
    other = tmp_path / "other-bus-can1.log"
    other.write_text("x\n")
    clock = Clock()
    lines = Lines()

    def bus(channel):
        return RotatingLog(RecordOptions(str(tmp_path / "%H%M%S.log"), rotate_size=5_000,
                                         keep_files=3), {"channel": channel}, lines, clock,
                           log_channel=channel)

    for run in range(2):  # the second run deletes the first one's files, and only those
        logs = {"can0": bus("can0"), "can1": bus("can1")}
        for k in range(0, 2000, 50):
            clock.now += 1
            for log in logs.values():
                log.write(records(k, 50))
        for log in logs.values():
            log.close()
    assert important.read_text() == "notes\n" and other.read_text() == "x\n"
    for channel, log in logs.items():
        assert log.deleted, channel
        kept = [path for path in log.files if os.path.exists(path)]
        assert len(kept) == 3, (channel, kept)
        for path in kept:  # the files of the other bus were never counted as its own
            with open(path) as file:
                assert {line.split()[1] for line in file} == {channel}, path
    names = sorted(os.listdir(tmp_path))
    recorded = [n for n in names if n.endswith(".log") and n[0].isdigit()]
    assert len(recorded) == 6, names  # 3 of each bus, nothing else deleted
    assert "important.log" not in lines.text() and "other-bus" not in lines.text()


def test_keep_size_below_one_file_keeps_the_last_recording_and_names_only_kept_files(tmp_path):
    """--keep-size smaller than one file: the last recording stays at the end of the run; the
    status and totals name the file being written or the one kept, never a deleted one."""
    clock = Clock()
    log = RotatingLog(RecordOptions(str(tmp_path / "k-{n}.log"), rotate_size=4_000,
                                    keep_size=1_000), {}, Lines(), clock)
    for k in range(0, 600, 50):
        clock.now += 1
        log.write(records(k, 50))
        named = log.describe().rsplit(" ", 1)[-1]
        assert os.path.exists(named + PART) or os.path.exists(named), log.describe()
    log.close()
    last = log.describe().rsplit(" ", 1)[-1]
    assert os.path.exists(last), (last, os.listdir(tmp_path))
    assert read_back(last)[-1] == expected(599, 1)[0]


def test_a_full_disk_keeps_every_whole_frame_of_every_format(tmp_path):
    """Each format on a 128 KiB and a 2 MiB tmpfs at 5,000 frames/s: the file that meets the
    full disk is cut back to its last whole frame (even when less than one flush fits), read
    back by can.LogReader without error; recording resumes once there is room; recorded (read
    back from the files) + lost = frames sent."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare -m for a private tmpfs")
    folder = tmp_path / "small"
    folder.mkdir()
    for size in (128 << 10, 2 << 20):
        done = subprocess.run(["unshare", "-m", sys.executable, "tests/tmpfs_full_formats_check.py",
                               str(folder), str(size)], capture_output=True, text=True,
                              env=cancorder_env(), cwd=ROOT, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        # .log .log.gz .asc .asc.gz .csv .trc .blf .db .mf4 .pcapng .pcapng.gz
        assert done.stdout.count("ok ") == 11, done.stdout


def _crash_script(template, count):
    """A recording killed by SIGKILL after ``count`` frames reached the disk and more were
    pending."""
    return f"""
import os, signal, sys
sys.path.insert(0, {ROOT!r})
from cancorder._fast import wire
from cancorder.logfiles.rotation import RecordOptions, RotatingLog
now = [1_700_000_000.0]
log = RotatingLog(RecordOptions({template!r}), {{}}, clock=lambda: now[0])
log.write(b"".join(wire.pack_frame(1_700_000_000_000_000 + i, 0x123, 0, bytes([i % 256, 0x8F]))
                   for i in range({count})))
now[0] += 2
log.tick()  # flushed: on disk
log.write(b"".join(wire.pack_frame(1_700_000_001_000_000 + i, 0x124, 0, b"\\x01") for i in range(50)))
os.kill(os.getpid(), signal.SIGKILL)
"""


HALF_LINES = {".log": b"(1700000009.000000) can0 7FF#8", ".asc": b"   9.000000 1  7FF   Rx   d 8 8",
              ".csv": b"1700000009.000000,0x7FF,0,0,0,8,j",
              ".pcapng": b"\x06\x00\x00\x00\x30\x00\x00\x00\x00\x00"}  # half a block


@pytest.mark.parametrize("ext", [".log", ".log.gz", ".asc", ".csv", ".blf", ".pcapng",
                                 ".pcapng.gz"])
def test_crash_leftovers_are_cut_back_renamed_said_and_counted(tmp_path, ext):
    """A .part left by kill -9 (with half a line after it, as a power cut leaves): the next
    run of the same recording cuts it back to its last whole frame, gives it its final name,
    says so, and retention counts it. (BLF holds frames in 128 KiB containers: those written.)"""
    template = str(tmp_path / f"c-{{n}}{ext}")
    count = 6000 if ext == ".blf" else 300
    done = subprocess.run([sys.executable, "-c", _crash_script(template, count)],
                          env=cancorder_env(), cwd=ROOT, timeout=60)
    assert done.returncode == -9
    part = tmp_path / f"c-1{ext}{PART}"
    assert part.exists()
    if ext in HALF_LINES:
        with open(part, "ab") as file:
            file.write(HALF_LINES[ext])
    lines = Lines()
    log = RotatingLog(RecordOptions(template, keep_files=5), {}, lines, Clock())
    log.write(records(0, 10))
    log.close()
    assert not list(tmp_path.glob("*" + PART)), os.listdir(tmp_path)
    finished = tmp_path / f"c-1{ext}"
    got = _frames_of(finished)
    sent = [(0x123, bytes([i % 256, 0x8F])) for i in range(count)]
    if ext == ".blf":
        assert len(got) >= 2000 and got == sent[:len(got)], len(got)
    else:
        assert got == sent, got[-3:]
    assert f"finished {part}, left by an earlier run" in lines.text(), lines.text()
    assert str(finished) in lines.text() and f"{len(got):,} frames" in lines.text()
    assert [p for p, _ in log.closed_files()] == [str(finished), str(tmp_path / f"c-1-2{ext}")]


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_recording_file_that_vanishes_is_noticed_said_and_replaced(tmp_path, how):
    clock = Clock()
    lines = Lines()
    log = RotatingLog(RecordOptions(str(tmp_path / "v-{n}.log")), {}, lines, clock)
    log.write(records(0, 100))
    clock.now += 1.0
    log.tick()
    part = log.current + PART
    if how == "deleted":
        os.remove(part)
    else:
        (tmp_path / "other").write_text("someone else's\n")
        os.replace(tmp_path / "other", part)
    log.write(records(100, 100))
    clock.now += 1.0
    log.tick()  # within a second: noticed
    assert "v-1.log.part was" in lines.text() and "while being written" in lines.text()
    assert log.current.endswith("v-2.log")
    log.write(records(200, 100))
    log.close()
    assert read_back(tmp_path / "v-2.log") == expected(200, 100)
    assert log.frames == 100 and log.lost == 200, (log.frames, log.lost)
    assert log.describe() == str(tmp_path / "v-2.log")
    if how == "replaced":
        assert open(part).read() == "someone else's\n"  # never renamed nor written to


def test_a_writer_that_falls_behind_is_counted_and_the_file_is_finished(tmp_path,
                                                                      monkeypatch):
    """A format's writer slower than the bus (asammdf's .mf4 at 30,000 frames/s): batches it
    cannot get to in time are dropped, counted and said like a full disk's; on a stop it is
    finished in time, and "recorded N" is what the file holds."""
    recorder = Recorder(RecordOptions(str(tmp_path / "slow.log")))
    recorder.CLOSE_WAIT = 3.0  # writes for 1 s after the stop at most
    recorder.MAX_LAG = 1.0

    class Bus:
        channel, log_channel, interface, port, log = "can0", "can0", "virtual", 1, Lines()
        failed = None

    recorder.start(Bus)
    real_write = recorder._rotating.write

    def slow(*args, **kwargs):
        time.sleep(0.05)  # 20 batches a second at most
        return real_write(*args, **kwargs)

    monkeypatch.setattr(recorder._rotating, "write", slow)
    for k in range(200):  # 200 batches in 2 s: the writer falls 8 s behind
        recorder.put(records(k * 100, 100))
        time.sleep(0.01)
    started = time.monotonic()
    recorder.close(timeout=1.0)
    assert time.monotonic() - started < 3.0
    summary = recorder.summary()
    frames = len(read_back(tmp_path / "slow.log"))
    stats = recorder.stats()
    assert stats["frames"] == frames > 0
    assert stats["frames"] + stats["lost_frames"] == 20_000, stats
    assert f"recorded {frames:,} frames to {tmp_path / 'slow.log'}" in summary, summary
    assert "cannot keep up" in Bus.log.text() and "behind" in Bus.log.text()


def test_the_totals_never_name_a_file_that_was_not_written(tmp_path):
    (tmp_path / "file").write_text("")
    lines = Lines()
    log = RotatingLog(RecordOptions(str(tmp_path / "file" / "x-{n}.log")), {}, lines, Clock())
    log.write(records(0, 10))
    log.close()
    assert log.frames == 0 and log.lost == 10
    assert log.describe() == f"no file ({tmp_path / 'file' / 'x-{n}.log'}: nothing could be " \
                             "written)", log.describe()
    assert "recording stopped: cannot create" in lines.text()


def test_a_recorder_that_cannot_finish_claims_only_finished_files(tmp_path, monkeypatch):
    """The writing thread stuck past the stop's wait: the totals count only what finished
    files hold; everything else is counted as not recorded, and no unwritten file is named."""
    import threading

    recorder = Recorder(RecordOptions(str(tmp_path / "stuck.log")))
    recorder.CLOSE_WAIT = 1.5

    class Bus:
        channel, log_channel, interface, port, log = "can0", "can0", "virtual", 1, Lines()
        failed = None

    recorder.start(Bus)
    release = threading.Event()
    real_write = recorder._rotating.write
    calls = []

    def stuck(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            release.wait(30)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(recorder._rotating, "write", stuck)
    try:
        for k in range(5):
            recorder.put(records(k * 100, 100))
            time.sleep(0.1)
        recorder.close(timeout=0.5)
        summary = recorder.summary()
        assert "did not finish within" in Bus.log.text()
        assert summary.startswith("recorded 0 frames to no file"), summary
        assert "500 frames could not be recorded" in summary, summary
    finally:
        release.set()
