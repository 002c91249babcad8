"""The text forms of frames (cancorder/formats.py), checked byte for byte."""
import json
import re
import shutil
import subprocess
import time

import can
import pytest

from cancorder._fast import wire
from cancorder.formats import (CandumpFormatter, JsonFormatter, PrettyFormatter, StatsTable,
                               XxdFormatter, candump_line)

ANSI = re.compile(r"\x1b\[[0-9;]*m")

# (timestamp_us, id, flags, data): 1700000000 s is 2023-11-14 22:13:20 UTC.
FRAMES = [
    (1700000000123456, 0x123, 0, bytes.fromhex("01FF23456789ABCD")),
    (1700000000223456, 0x18DAF110, wire.FLAG_EXT, b"\x02\x10\x03"),
    (1700000001000000, 0x7FF, 0, b""),
    (1700000001000001, 0x456, wire.FLAG_FD | wire.FLAG_BRS | wire.FLAG_ESI, bytes(range(12))),
    (1700000001000002, 0x7, 0, b"AB 7~\x7f"),
]

CANDUMP = [
    "(1700000000.123456) can0 123#01FF23456789ABCD",
    "(1700000000.223456) can0 18DAF110#021003",
    "(1700000001.000000) can0 7FF#",
    "(1700000001.000001) can0 456##3000102030405060708090A0B",
    "(1700000001.000002) can0 007#414220377E7F",
]

PRETTY = [
    "22:13:20.123456  123                    8  01 FF 23 45 67 89 AB CD  |..#Eg...|",
    "22:13:20.223456  18DAF110               3  02 10 03                 |...|",
    "22:13:21.000000  7FF                    0                           ||",
    "22:13:21.000001  456       FD BRS ESI  12  00 01 02 03 04 05 06 07 08 09 0A 0B  |............|",
    "22:13:21.000002  007                    6  41 42 20 37 7E 7F        |AB 7~.|",
]


@pytest.fixture
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_pretty_plain(utc):
    assert PrettyFormatter().format(FRAMES) == "".join(line + "\n" for line in PRETTY)


@pytest.mark.parametrize("color_system", ["standard", "256", "truecolor"])
def test_pretty_coloured_is_the_plain_text_plus_stable_colours(utc, color_system):
    text = PrettyFormatter(color_system).format(FRAMES + FRAMES[:1])
    lines = text.splitlines()
    assert [ANSI.sub("", line) for line in lines] == PRETTY + PRETTY[:1]
    assert all("\x1b[" in line for line in lines)

    def id_code(line):  # the escape sequence just before the id, after the time
        return re.match(r"(?:\x1b\[[0-9;]*m)?\d\d:\d\d:\d\d(?:\x1b\[0m)?\.\d{6}  (\x1b\[[0-9;]*m)",
                        line).group(1)

    # the same id gets the same colour, in this formatter and in a new one
    assert id_code(lines[0]) == id_code(lines[-1])
    assert id_code(PrettyFormatter(color_system).format(FRAMES[:1])) == id_code(lines[0])
    if color_system != "standard":  # 8 colours cannot tell every id apart
        assert len({id_code(line) for line in lines[:5]}) == 5
    # bytes are shaded by value: 0x01 and 0xFF differ, equal bytes look equal
    first = lines[0]
    assert re.search(r"(\x1b\[[0-9;]*m)01\x1b", first).group(1) != \
        re.search(r"(\x1b\[[0-9;]*m)FF\x1b", first).group(1)


def test_candump_lines_read_back_by_python_can(tmp_path):
    text = CandumpFormatter("can1").format(FRAMES)
    assert text.splitlines() == [line.replace(" can0 ", " can1 ") for line in CANDUMP]
    path = tmp_path / "frames.log"
    path.write_text(text)
    back = list(can.CanutilsLogReader(str(path)))
    assert len(back) == len(FRAMES)
    for msg, (micros, can_id, flags, data) in zip(back, FRAMES):
        assert msg.arbitration_id == can_id
        assert msg.is_extended_id == bool(flags & wire.FLAG_EXT)
        assert msg.is_fd == bool(flags & wire.FLAG_FD)
        assert msg.bitrate_switch == bool(flags & wire.FLAG_BRS)
        assert msg.error_state_indicator == bool(flags & wire.FLAG_ESI)
        assert bytes(msg.data) == data
        assert round(msg.timestamp * 1e6) == micros
        assert msg.channel == "can1"
    assert candump_line(FRAMES[0]) == "(1700000000.123456) can0 123#01FF23456789ABCD"


def test_json_lines():
    lines = JsonFormatter("ecu").format(FRAMES).splitlines()
    assert lines[0] == (
        '{"timestamp": 1700000000.123456, "timestamp_us": 1700000000123456, "channel": "ecu", '
        '"id": 291, "extended": false, "fd": false, "brs": false, "esi": false, "length": 8, '
        '"data": "01ff23456789abcd"}')
    for line, (micros, can_id, flags, data) in zip(lines, FRAMES):
        obj = json.loads(line)
        assert obj["timestamp_us"] == micros
        assert obj["id"] == can_id
        assert (obj["extended"], obj["fd"], obj["brs"], obj["esi"]) == tuple(
            bool(flags & bit) for bit in (1, 2, 4, 8))
        assert bytes.fromhex(obj["data"]) == data and obj["length"] == len(data)


@pytest.mark.skipif(shutil.which("xxd") is None, reason="needs xxd to compare with")
def test_raw_is_what_xxd_shows_in_any_chunking():
    records = b"".join(wire.pack_frame(*frame) for frame in FRAMES)
    expected = subprocess.run(["xxd"], input=records, capture_output=True).stdout.decode()
    assert expected.startswith("00000000: 0006 0a24 1820 2240 0000 0123 0008 01ff  "
                               "...$. \"@...#....\n")
    for split in ([5], [1, 2, 2], [0, 3, 2]):
        formatter = XxdFormatter()
        out, start = "", 0
        for size in split:
            out += formatter.format(FRAMES[start:start + size])
            start += size
        assert out + formatter.finish() == expected


def test_stats_table_counts_per_id():
    table = StatsTable()
    table.add(FRAMES + FRAMES[:2])
    assert table.total == 7
    from rich.console import Console

    console = Console(width=160, record=True, file=open("/dev/null", "w"))
    console.print(table.render())
    text = console.export_text()
    assert re.search(r"│ 123\s+│\s+│\s+8 │\s+2 │", text), text
    assert re.search(r"│ 18DAF110 │\s+│\s+3 │\s+2 │", text), text
    assert re.search(r"│ 456\s+│ FD BRS ESI │\s+12 │\s+1 │", text), text
    assert text.startswith("7 frames")


def _reference_candump_line(frame, channel):
    """The candump line as can-utils writes it, spelled out independently of cancorder."""
    micros, can_id, flags, data = frame
    ident = f"{can_id:08X}" if flags & wire.FLAG_EXT else f"{can_id:03X}"
    if flags & wire.FLAG_FD:
        digit = (1 if flags & wire.FLAG_BRS else 0) | (2 if flags & wire.FLAG_ESI else 0)
        body = f"{ident}##{digit:X}{data.hex().upper()}"
    else:
        body = f"{ident}#{data.hex().upper()}"
    return f"({micros // 1000000}.{micros % 1000000:06d}) {channel} {body}"


def test_candump_text_is_the_recorders_compiled_encoder_byte_for_byte():
    """--format candump and candump_line go through _fast.logfile's CandumpEncoder (the one
    candump encoder, the recorder's): the same bytes as the recorder's .log files, and the
    can-utils text for every kind of frame, any channel name (UTF-8 too, renamed per batch)."""
    import random

    from cancorder._fast import logfile

    rng = random.Random(7)
    frames = []
    for i in range(3000):
        flags = rng.choice((0, wire.FLAG_EXT, wire.FLAG_FD, wire.FLAG_FD | wire.FLAG_BRS,
                            wire.FLAG_FD | wire.FLAG_ESI | wire.FLAG_EXT,
                            wire.FLAG_FD | wire.FLAG_BRS | wire.FLAG_ESI))
        length = rng.choice((0, 1, 8, 12, 16, 20, 24, 32, 48, 64)) if flags & wire.FLAG_FD \
            else rng.randrange(9)
        can_id = rng.randrange(1 << 29) if flags & wire.FLAG_EXT else rng.randrange(1 << 11)
        micros = rng.choice((0, 999_999, 1_700_000_000_000_000 + i, (1 << 63) + i))
        frames.append((micros, can_id, flags, rng.randbytes(length)))
    records = b"".join(wire.pack_frame(*frame) for frame in frames)
    for channel in ("can0", "vcan12", "bus-ä"):
        expected = "".join(_reference_candump_line(frame, channel) + "\n" for frame in frames)
        formatter = CandumpFormatter(channel)
        assert formatter.format(frames) == expected, channel
        assert logfile.CandumpEncoder(channel).encode(records) == expected.encode(), channel
        assert candump_line(frames[5], channel) == expected.splitlines()[5]
    formatter.channel = "can7"  # dump mqtt:// names each batch's channel
    assert formatter.format(frames[:1]) == _reference_candump_line(frames[0], "can7") + "\n"


def test_formats_has_no_candump_encoder_of_its_own():
    """One candump encoder: formats.py builds no candump line in Python."""
    import inspect

    import cancorder.formats as formats

    source = inspect.getsource(formats)
    assert "CandumpEncoder" in source
    assert "##" not in source.replace('``123##<flags><data>``', "")
