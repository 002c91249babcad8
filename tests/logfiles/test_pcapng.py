"""pcapng recordings (issue 30): written by _fast.pcap from the records, read by Wireshark's
tshark (every frame's channel, time, id, flags and data as recorded: classic, extended, CAN FD
with BRS and ESI), and read back by replay/dump FILE (logfiles.readers), on both cores."""
import gzip
import struct
import subprocess
import sys

import pytest

from cancorder._fast import wire
from cancorder.errors import LogFileError
from cancorder.logfiles import readers, writers
from cancorder.logfiles.rotation import RecordOptions, RotatingLog
from tests.helpers import ROOT, cancorder_env
from tests.tshark import tshark_frames

BASE = 1_700_000_000_123_456


@pytest.fixture
def core(fast, monkeypatch):
    """Writers and readers running on one core (compiled or pure)."""
    for module in (readers, writers):
        monkeypatch.setattr(module, "pcap", fast.pcap)
        monkeypatch.setattr(module, "wire", fast.wire)
    return fast


class Lines:
    def info(self, *args, **kwargs):
        pass

    warning = error = info


def mixed_frames(count=90):
    """Classic and CAN FD frames, standard and extended ids, every FD length, BRS and ESI."""
    frames = []
    for i in range(count):
        flags = (wire.FLAG_EXT if i % 2 else 0) | (
            wire.FLAG_FD | (wire.FLAG_BRS if i % 3 else 0) | (wire.FLAG_ESI if i % 5 == 0 else 0)
            if i % 4 else 0)
        length = wire.FD_LENGTHS[i % 16] if flags & wire.FLAG_FD else i % 9
        can_id = (0x1ABCDE00 + i) if flags & wire.FLAG_EXT else (0x7F0 + i % 16)
        frames.append((BASE + i * 1234 + i % 7, can_id, flags,
                       bytes((i + k) % 256 for k in range(length))))
    return frames


def pack(frames):
    return b"".join(wire.pack_frame(*frame) for frame in frames)


def record(path, batches):
    """``batches``: (channel or None for the file's own, frames) written in turn."""
    log = RotatingLog(RecordOptions(str(path)), {}, Lines(), lambda: BASE / 1e6,
                      log_channel="can0")
    for channel, frames in batches:
        log.write(pack(frames), channel=channel)
    log.close()
    return log


def read(path, **kwargs):
    records = readers.LogRecords(str(path), **kwargs)
    out = []
    for channel, batch in records.batches(by_channel=True):
        out.extend((channel, frame) for frame in wire.StreamDecoder().feed(batch))
    return records, out


@pytest.mark.parametrize("ext", [".pcapng", ".pcapng.gz"])
def test_tshark_reads_every_frame_as_recorded_one_interface_per_channel(core, tmp_path, ext):
    frames = mixed_frames()
    other = [(BASE + 500_000 + i, 0x100 + i, 0, bytes([i])) for i in range(5)]
    path = tmp_path / f"x{ext}"
    log = record(path, [(None, frames[:40]), ("logger-b ü", other), (None, frames[40:])])
    assert log.frames == len(frames) + len(other)
    expected = ([("can0",) + f for f in frames[:40]] + [("logger-b ü",) + f for f in other]
                + [("can0",) + f for f in frames[40:]])
    assert tshark_frames(path) == expected
    records, got = read(path)
    assert [(channel,) + frame for channel, frame in got] == expected
    assert records.frames == len(expected) and records.first_channel == "can0"
    records, got = read(path, channel="logger-b ü")  # dump/replay --channel
    assert [frame for _, frame in got] == other and records.other_channel == len(frames)


def test_dump_writes_and_reads_pcapng(tmp_path):
    """`dump FILE -o x.pcapng`, then `dump x.pcapng`: the same candump lines."""
    frames = mixed_frames(40)
    source = tmp_path / "in.log"
    from cancorder.formats import candump_line
    source.write_text("".join(candump_line(frame, "can7") + "\n" for frame in frames))

    def dump(*args):
        done = subprocess.run([sys.executable, "-m", "cancorder", "dump", *args],
                              capture_output=True, text=True, env=cancorder_env(), cwd=ROOT,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    lines = dump("-f", "candump", str(source), "-o", str(tmp_path / "out.pcapng"), "-o",
                 str(tmp_path / "out.log"))
    seen = tshark_frames(tmp_path / "out.pcapng")
    assert [f[2:] for f in seen] == [f[1:] for f in frames]
    # the interface is named as the .log written beside it names the channel
    names = {line.split()[1] for line in (tmp_path / "out.log").read_text().splitlines()}
    assert {f[0] for f in seen} == names and len(names) == 1
    assert dump("-f", "candump", str(tmp_path / "out.pcapng")) == lines


def _block(kind, body, big=False):
    order = ">" if big else "<"
    return (struct.pack(order + "II", kind, 12 + len(body)) + body
            + struct.pack(order + "I", 12 + len(body)))


def test_big_endian_nanoseconds_and_other_link_types(core, tmp_path):
    """What other tools write: a big-endian section, nanosecond timestamps (if_tsresol 9), an
    unnamed interface, an Ethernet interface beside it, remote and error frames (counted and
    skipped), a classic FD capture told by its 72-byte size."""
    def option(code, value):
        return struct.pack(">HH", code, len(value)) + value + b"\0" * (-len(value) % 4)

    def packet(interface, nanos, data):
        return _block(6, struct.pack(">IIIII", interface, nanos >> 32, nanos & 0xFFFFFFFF,
                                     len(data), len(data)) + data + b"\0" * (-len(data) % 4),
                      big=True)

    def frame(can_id, data, fd_flags=0, size=16):
        return (struct.pack(">IBBBB", can_id, len(data), fd_flags, 0, 0) + data).ljust(size,
                                                                                       b"\0")

    nanos = BASE * 1000 + 789
    data = (_block(0x0A0D0D0A, struct.pack(">IHHq", 0x1A2B3C4D, 1, 0, -1), big=True)
            + _block(1, struct.pack(">HHI", 227, 0, 0) + option(9, b"\x09") + option(0, b""),
                     big=True)
            + _block(1, struct.pack(">HHI", 1, 0, 0), big=True)  # Ethernet
            + packet(0, nanos, frame(0x123, b"\x01\x02"))
            + packet(1, nanos, b"\xff" * 60)
            + packet(0, nanos + 1000, frame(0x80000000 | 0x1234567, b"\xaa" * 12, 0, 72))
            + packet(0, nanos + 2000, frame(0x40000000 | 0x124, b""))  # remote
            + packet(0, nanos + 3000, frame(0x20000000 | 0x4, b"\0" * 8)))  # error
    path = tmp_path / "other.pcapng"
    path.write_bytes(data)
    records, got = read(path)
    assert got == [("0", (BASE, 0x123, 0, b"\x01\x02")),
                   ("0", (BASE + 1, 0x1234567, wire.FLAG_EXT | wire.FLAG_FD, b"\xaa" * 12))]
    assert (records.remote, records.error, records.invalid) == (1, 1, 1)


def test_damage_is_named_by_byte_after_the_frames_before_it(core, tmp_path):
    frames = mixed_frames(20)
    whole = tmp_path / "whole.pcapng"
    record(whole, [(None, frames)])
    data = whole.read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[:-30])
    records = readers.LogRecords(str(cut))
    got = []
    with pytest.raises(LogFileError) as caught:
        for _, batch in records.batches():
            got.extend(wire.StreamDecoder().feed(batch))
    assert got == frames[:19]
    assert f"{cut}: byte {len(data) - (28 + 72 + 4)}: the file ends inside a block" in str(
        caught.value)
    wrong = tmp_path / "wrong.pcapng"
    wrong.write_bytes(b"(1.0) can0 123#11\n" * 3)
    with pytest.raises(LogFileError, match="byte 0: not a pcapng file"):
        list(readers.LogRecords(str(wrong)).batches())
    zipped = tmp_path / "z.pcapng.gz"
    zipped.write_bytes(gzip.compress(data))
    assert [f for _, f in read(zipped)[1]] == frames


def test_scapy_reads_every_frame_as_recorded(core, tmp_path):
    """A second reader nobody here wrote: scapy's CAN layers (link type 227, CAN FD from the
    frame's FD flag) give every frame's id, flags, data and time as recorded."""
    from scapy.all import load_layer, rdpcap

    load_layer("can")
    from scapy.layers.can import CANFD

    frames = mixed_frames()
    path = tmp_path / "x.pcapng"
    record(path, [(None, frames)])
    got = []
    for packet in rdpcap(str(path)):
        flags = 0
        if "extended" in packet.flags:
            flags |= wire.FLAG_EXT
        if isinstance(packet, CANFD):
            flags |= wire.FLAG_FD
            if "bit_rate_switch" in packet.fd_flags:
                flags |= wire.FLAG_BRS
            if "error_state_indicator" in packet.fd_flags:
                flags |= wire.FLAG_ESI
        got.append((round(packet.time * 1_000_000), packet.identifier, flags,
                    bytes(packet.data)[:packet.length]))
    assert got == frames
