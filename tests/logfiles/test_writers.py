"""logfiles.writers: BLF written from the records by the compiled encoder, read back by
python-can's BLFReader."""
import os
import random
import struct
import zlib

import can
import pytest
from can.io import blf

from cancorder.logfiles.naming import PART
from cancorder.logfiles.rotation import RecordOptions, RotatingLog
from tests.logfiles.test_rotation import Clock, Lines

START_US = 1_772_359_198_000_000 + 123_456  # 2026-03-01, not on a millisecond


def every_kind_of_frame(count, seed=7):
    """(micros, id, flags, data): standard and extended ids, every classic length, CAN FD of
    every length with and without BRS and ESI, in time order (some sharing a microsecond)."""
    rnd = random.Random(seed)
    frames = []
    micros = START_US
    for i in range(count):
        fd = i % 3 == 1
        ext = i % 2 == 1
        n = (0, 1, 5, 8, 12, 16, 20, 24, 32, 48, 64)[i % 11] if fd else i % 9
        flags = (1 if ext else 0) | ((2 | (4 if i % 4 == 1 else 0) | (8 if i % 5 == 1 else 0))
                                     if fd else 0)
        micros += rnd.randrange(0, 400)
        frames.append((micros, rnd.randrange(1 << 29 if ext else 1 << 11), flags,
                       bytes(rnd.randrange(256) for _ in range(n))))
    return frames


def as_read(message):
    return (round(message.timestamp * 1e6), message.arbitration_id, message.is_extended_id,
            message.is_fd, message.bitrate_switch, message.error_state_indicator,
            bytes(message.data), message.channel, message.is_rx, message.is_remote_frame,
            message.is_error_frame)


def as_written(frame):
    micros, can_id, flags, data = frame
    return (micros, can_id, bool(flags & 1), bool(flags & 2), bool(flags & 4), bool(flags & 8),
            data, 0, True, False, False)


def objects_of(path):
    """(object type, uncompressed bytes of its container) of every object in every container."""
    data = open(path, "rb").read()
    found = []
    pos = blf.FILE_HEADER_SIZE
    while pos < len(data):
        signature, _, _, size, kind = blf.OBJ_HEADER_BASE_STRUCT.unpack_from(data, pos)
        assert signature == b"LOBJ" and kind == blf.LOG_CONTAINER
        body = data[pos + blf.OBJ_HEADER_BASE_STRUCT.size:pos + size]
        method, length = blf.LOG_CONTAINER_STRUCT.unpack_from(body)
        assert method == blf.ZLIB_DEFLATE
        inner = zlib.decompress(body[blf.LOG_CONTAINER_STRUCT.size:])
        assert len(inner) == length <= 128 * 1024
        at = 0
        while at < len(inner):  # every container holds whole objects
            signature, _, _, size, kind = blf.OBJ_HEADER_BASE_STRUCT.unpack_from(inner, at)
            assert signature == b"LOBJ"
            found.append((kind, len(inner)))
            at += size + size % 4
        assert at == len(inner)
        pos += size_of(data, pos)
    return found


def size_of(data, pos):
    size = blf.OBJ_HEADER_BASE_STRUCT.unpack_from(data, pos)[3]
    return size + size % 4


def test_blf_is_written_from_the_records_and_read_back_equal(tmp_path, monkeypatch):
    """Every frame (standard, extended, every classic length, CAN FD of every length with its
    BRS and ESI) comes back from python-can's BLFReader as it was, its timestamp to the
    microsecond; the objects are CAN_MESSAGE2 and CAN_FD_MESSAGE_64 in containers of whole
    objects; no python-can Message is built for writing."""
    from cancorder._fast import logfile, wire

    frames = every_kind_of_frame(9000)
    records = b"".join(wire.pack_frame(*frame) for frame in frames)

    def no_message(*args, **kwargs):
        raise AssertionError("a python-can Message built to write a BLF")

    monkeypatch.setattr(can, "Message", no_message)
    path = tmp_path / "x.blf"
    log = RotatingLog(RecordOptions(str(path)), {}, Lines(), Clock())
    start = 0
    while start < len(records):  # batches of about 40 KB: each container takes several
        end = logfile.whole_prefix(records, start, 40_000)
        log.write(records[start:end])
        start = end
    log.close()
    monkeypatch.undo()
    assert [as_read(m) for m in can.BLFReader(str(path))] == [as_written(f) for f in frames]
    kinds = objects_of(path)
    assert {kind for kind, _ in kinds} == {blf.CAN_MESSAGE2, blf.CAN_FD_MESSAGE_64}
    assert len(kinds) == 9000 and len({size for _, size in kinds}) > 1  # several containers
    reader = can.BLFReader(str(path))
    assert (reader.object_count, reader.file_size) == (9000, os.path.getsize(path))
    assert reader.start_timestamp == START_US // 1000 / 1000


def test_both_twins_write_the_same_bytes():
    import cancorder._fast as fast_package

    try:
        twins = [fast_package.variant(kind) for kind in ("compiled", "pure")]
    except ImportError as exc:
        if os.environ.get("CANCORDER_REQUIRE_CYTHON", "") not in ("", "0"):
            raise
        pytest.skip(f"a variant is unavailable: {exc}")
    records = b"".join(twins[1].wire.pack_frame(*f) for f in every_kind_of_frame(3000))
    out = []
    for twin in twins:
        encoder = twin.logfile.BlfEncoder(3)
        pos, data = 0, b""
        while pos < len(records):
            pos = encoder.add(records, pos)
            data += encoder.take()
        out.append((data, encoder.start_us, encoder.stop_us, encoder.objects))
    assert out[0] == out[1]


def test_a_blf_being_recorded_is_whole_after_every_flush(tmp_path):
    """A second after a frame, it is on disk in a readable BLF with a true header (its start
    time): a recording killed at any moment keeps all but its last second."""
    clock = Clock()
    log = RotatingLog(RecordOptions(str(tmp_path / "r.blf")), {}, Lines(), clock)
    frames = every_kind_of_frame(50)
    from cancorder._fast import wire

    log.write(b"".join(wire.pack_frame(*f) for f in frames[:20]))
    clock.now += 1.5
    log.tick()
    part = str(tmp_path / ("r.blf" + PART))
    assert [as_read(m) for m in can.BLFReader(part)] == [as_written(f) for f in frames[:20]]
    assert can.BLFReader(part).start_timestamp == START_US // 1000 / 1000
    log.write(b"".join(wire.pack_frame(*f) for f in frames[20:]))
    clock.now += 1.5
    log.tick()
    assert [as_read(m) for m in can.BLFReader(part)] == [as_written(f) for f in frames]
    log.close()
    assert log.recorded == 50


def test_a_blf_cut_by_a_full_disk_keeps_its_whole_containers(tmp_path, monkeypatch):
    """A container the disk takes only part of is cut off: the file ends on the last whole
    container, with a true header, and the frames after it are counted as lost."""
    from cancorder._fast import wire
    from cancorder.logfiles import writers

    real = writers._write_all
    containers = []

    def full_after_two(fd, data, offset):
        if offset and len(data) != blf.FILE_HEADER_SIZE:  # a container (the header fits)
            containers.append(offset)
            if len(containers) == 3:
                os.pwrite(fd, data[:len(data) // 2], offset)  # half of it, then no room
                exc = OSError(28, "No space left on device")
                exc.written = len(data) // 2
                raise exc
        return real(fd, data, offset)

    monkeypatch.setattr(writers, "_write_all", full_after_two)
    clock = Clock()
    lines = Lines()
    log = RotatingLog(RecordOptions(str(tmp_path / "f.blf")), {}, lines, clock)
    frames = every_kind_of_frame(300)
    for k in range(3):
        log.write(b"".join(wire.pack_frame(*f) for f in frames[k * 100:(k + 1) * 100]))
        clock.now += 1.5
        log.tick()
    log.close()
    kept = [str(p) for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert kept == [str(tmp_path / "f.blf")], kept
    assert [as_read(m) for m in can.BLFReader(kept[0])] == [as_written(f) for f in frames[:200]]
    assert can.BLFReader(kept[0]).object_count == 200
    assert log.recorded == 200 and log.lost == 100, (log.recorded, log.lost, lines.text())


def test_frames_after_the_year_9999_are_counted_not_written(tmp_path):
    from cancorder._fast import wire

    log = RotatingLog(RecordOptions(str(tmp_path / "y.blf")), {}, Lines(), Clock())
    late = 253402300800 * 1_000_000
    log.write(wire.pack_frame(START_US, 1, 0, b"\x01") + wire.pack_frame(late, 2, 0, b"")
              + wire.pack_frame(START_US + 5, 3, 0, b"\x03"))
    log.close()
    assert [m.arbitration_id for m in can.BLFReader(str(tmp_path / "y.blf"))] == [1, 3]
    assert log.recorded == 2
    assert struct.calcsize("<4sHHLL") == blf.OBJ_HEADER_BASE_STRUCT.size
