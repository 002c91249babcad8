"""logfiles.readers: the one reader of log files (replay and dump FILE), on both cores: every format
python-can reads into records with the recorded timestamps, batches per channel, and damage
named by file and line or byte after the frames before it."""
import gzip
import shutil
import sqlite3

import can
import pytest

from cancorder.logfiles import readers
from cancorder.errors import LogFileError, UsageError
from cancorder.formats import candump_line

BASE = 1_700_000_000_000_000


@pytest.fixture
def core(fast, monkeypatch):
    """The readers running on one core (compiled or pure)."""
    monkeypatch.setattr(readers, "logfile", fast.logfile)
    monkeypatch.setattr(readers, "wire", fast.wire)
    return fast


def frames_of(count=60):
    return [(BASE + i * 10_000, (0x10000 + i) if i % 3 == 0 else 0x100 + i,
             1 if i % 3 == 0 else 0, bytes([i % 256]) * (i % 9)) for i in range(count)]


def write_all_formats(folder, frames):
    """The frames as every format python-can writes and reads, channel 0 (ASC/BLF: 1)."""
    with open(folder / "x.log", "w") as file:
        file.writelines(candump_line(frame, "can0") + "\n" for frame in frames)
    messages = list(can.LogReader(str(folder / "x.log")))
    for ext in (".asc", ".blf", ".csv", ".trc", ".db"):
        with can.Logger(str(folder / f"x{ext}")) as writer:
            for msg in messages:
                writer.on_message_received(msg)
    for ext in (".log", ".asc", ".blf", ".csv", ".trc"):
        with open(folder / f"x{ext}", "rb") as src, gzip.open(folder / f"z{ext}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)


def read(path, **kwargs):
    records = readers.LogRecords(str(path), **kwargs)
    out = []
    for channel, batch in records.batches(by_channel=True):
        out.extend((channel, frame) for frame in readers.wire.StreamDecoder().feed(batch))
    return records, out


def test_every_format_reads_back_with_recorded_timestamps(core, tmp_path):
    frames = frames_of()
    write_all_formats(tmp_path, frames)
    for name in ("x.log", "z.log.gz", "x.asc", "z.asc.gz", "x.blf", "z.blf.gz", "x.csv",
                 "z.csv.gz", "x.trc", "z.trc.gz", "x.db"):
        records, got = read(tmp_path / name)
        assert [f[1:] for _, f in got] == [f[1:] for f in frames], name
        # absolute (recorded) time, to the format's resolution (TRC: 1 us, CSV: float)
        assert all(abs(f[0] - e[0]) <= 1 for (_, f), e in zip(got, frames)), name
        assert records.frames == len(frames), name
        assert {channel for channel, _ in got} == {"can0" if ".log" in name else
                                                    "1" if name[2:5] in ("asc", "blf", "trc") else
                                                    None}, name


def test_batches_by_channel_in_file_order(core, tmp_path):
    with open(tmp_path / "two.log", "w") as file:
        for i in range(30):
            file.write(candump_line((BASE + i, 0x100 + i, 0, b"\x01"),
                                    "can1" if i // 5 % 2 else "can0") + "\n")
    records = readers.LogRecords(str(tmp_path / "two.log"))
    runs = [(channel, len(readers.wire.StreamDecoder().feed(batch)))
            for channel, batch in records.batches(by_channel=True)]
    assert runs == [("can0", 5), ("can1", 5)] * 3
    messages = [can.Message(timestamp=1.0 + i / 100, arbitration_id=i, channel=i // 4 % 2,
                            data=b"\x02") for i in range(16)]
    for name in ("two.asc", "two.blf"):
        with can.Logger(str(tmp_path / name)) as writer:
            for msg in messages:
                writer.on_message_received(msg)
        records = readers.LogRecords(str(tmp_path / name))
        runs = [(channel, len(readers.wire.StreamDecoder().feed(batch)))
                for channel, batch in records.batches(by_channel=True)]
        assert runs == [("1", 4), ("2", 4)] * 2, name
        records, got = read(tmp_path / name, channel="2")  # --channel 2: as the file counts
        assert [f[1] for _, f in got] == [4, 5, 6, 7, 12, 13, 14, 15], name
        assert records.other_channel == 8 and records.first_channel == "2", name


def damaged(tmp_path):
    """(file, where the error must say it went wrong, frames before the damage)."""
    frames = frames_of(40)
    write_all_formats(tmp_path, frames)
    cases = []

    def lines(name):
        return open(tmp_path / name).read().splitlines(True)

    text = lines("x.log")
    text[30] = "(1700000000.300000) can0 1G0#00\n"
    (tmp_path / "bad.log").write_text("".join(text))
    cases.append(("bad.log", "line 31: expected a hex id and '#' (ID#DATA)", 30))

    text = lines("x.asc")
    frame_lines = [k for k, line in enumerate(text) if " Rx " in line]
    k = frame_lines[25]
    text[k] = text[k].rstrip().rsplit(" ", 1)[0] + " ZZ\n"  # the last data byte
    (tmp_path / "bad.asc").write_text("".join(text))
    cases.append(("bad.asc", f"line {k + 1}: ", 25))

    text = lines("x.asc")
    k = frame_lines[20]  # frame 20 has 2 data bytes: cut inside them, the rest gone
    (tmp_path / "cut.asc").write_text("".join(text[:k]) + text[k][:text[k].rindex(" ")])
    cases.append(("cut.asc", f"line {k + 1}: the frame says 2 data bytes but holds 1", 20))

    text = lines("x.csv")
    text[11] = "1700000000.1,zz,1\n"
    (tmp_path / "bad.csv").write_text("".join(text))
    cases.append(("bad.csv", "line 12: ", 10))

    text = lines("x.trc")
    frame_lines = [k for k, line in enumerate(text) if " DT " in line]
    k = frame_lines[15]
    text[k] = text[k].replace(text[k].split()[4], "1Q0", 1)  # the id column
    (tmp_path / "bad.trc").write_text("".join(text))
    cases.append(("bad.trc", f"line {k + 1}: ", 15))

    many = [(BASE + i * 100, i % 0x800, 0, i.to_bytes(4, "big")) for i in range(20000)]
    with open(tmp_path / "many.log", "w") as file:
        file.writelines(candump_line(frame) + "\n" for frame in many)
    zipped = gzip.compress((tmp_path / "many.log").read_bytes())
    (tmp_path / "cut.log.gz").write_bytes(zipped[:len(zipped) // 2])
    cases.append(("cut.log.gz", f"the file ends early at byte {len(zipped) // 2} (a "
                                "truncated gzip)", None))
    with can.Logger(str(tmp_path / "many.blf")) as writer:
        for msg in can.LogReader(str(tmp_path / "many.log")):
            writer.on_message_received(msg)
    data = (tmp_path / "many.blf").read_bytes()
    (tmp_path / "cut.blf").write_bytes(data[:len(data) // 2])
    cases.append(("cut.blf", f"the file ends early at byte {len(data) // 2} (its header says "
                             f"{len(data)})", None))

    shutil.copy(tmp_path / "x.db", tmp_path / "bad.db")
    with sqlite3.connect(tmp_path / "bad.db") as db:  # a row without its id and timestamp
        db.execute("UPDATE messages SET ts = NULL, arbitration_id = NULL WHERE rowid = 7")
    cases.append(("bad.db", "a frame without a timestamp (None)", 6))
    return cases


def test_damage_names_the_file_and_place_after_the_frames_before_it(core, tmp_path):
    for name, where, before in damaged(tmp_path):
        records = readers.LogRecords(str(tmp_path / name))
        got = []
        with pytest.raises(LogFileError) as caught:
            for _, batch in records.batches():
                got.extend(readers.wire.StreamDecoder().feed(batch))
        message = str(caught.value)
        assert message.startswith(f"{tmp_path / name}: ") and where in message, (name, message)
        if before is not None:
            assert [f[1:] for f in got] == [f[1:] for f in frames_of(40)[:before]], name
        else:
            assert 0 < len(got) < 20000, name


def many_frames(count):
    return [(BASE + i * 10_000, (0x10000 + i) if i % 3 == 0 else 0x100 + i % 0x600,
             1 if i % 3 == 0 else 0, bytes([i % 256]) * (i % 9)) for i in range(count)]


def read_until_damage(path):
    """(frames read before the LogFileError, its message); the message is None if none."""
    records = readers.LogRecords(str(path))
    got = []
    try:
        for _, batch in records.batches():
            got.extend(readers.wire.StreamDecoder().feed(batch))
    except LogFileError as exc:
        return got, str(exc)
    return got, None


def skipped_line_cases(tmp_path):
    """Issue 22 item 5: lines python-can's text readers skip without a word, each in place of
    frame 20 of 40: (file, the line's number, the words of the error)."""
    frames = frames_of(40)
    write_all_formats(tmp_path, frames)
    cases = []
    for ext, marker in ((".asc", " Rx "), (".trc", " DT ")):
        text = (tmp_path / f"x{ext}").read_bytes().splitlines(True)
        k = [n for n, line in enumerate(text) if marker.encode() in line][20]
        for kind, line, why in (
                ("garbage", b"this line is not a frame\n", f"not a frame, nor anything else a "
                                                          f"{ext} file holds: 'this line is "
                                                          "not a frame'"),
                ("nul", b"\0" * 40 + b"\n", "control or NUL bytes where a line should be"),
                ("random", bytes(range(1, 256, 7)) + b"\n", "control or NUL bytes"),
                ("column", text[k].replace(marker.encode(), b" Qx " if ext == ".asc" else
                                           b" DQ "),
                 f"a frame line python-can's {ext} reader cannot read (it would skip it)")):
            damaged_text = list(text)
            damaged_text[k] = line
            (tmp_path / f"{kind}{ext}").write_bytes(b"".join(damaged_text))
            cases.append((f"{kind}{ext}", k + 1, why))
    return cases


def test_a_line_the_reader_would_skip_is_damage(core, tmp_path):
    for name, number, why in skipped_line_cases(tmp_path):
        got, message = read_until_damage(tmp_path / name)
        assert message is not None and message.startswith(
            f"{tmp_path / name}: line {number}: {why}"), (name, message)
        assert [f[1:] for f in got] == [f[1:] for f in frames_of(40)[:20]], name


def test_a_cut_text_file_is_damage_after_the_frames_before_the_cut(core, tmp_path):
    """A truncated .asc served the frames before the cut and said nothing; a .trc or .csv cut
    inside a line lost the rest of it."""
    frames = many_frames(4260)
    write_all_formats(tmp_path, frames)
    data = (tmp_path / "x.asc").read_bytes()
    half = data[:len(data) // 2]
    at_line_end = half[:half.rindex(b"\n") + 1]
    (tmp_path / "cut.asc").write_bytes(at_line_end)  # between two lines: no End TriggerBlock
    got, message = read_until_damage(tmp_path / "cut.asc")
    lines = at_line_end.count(b"\n")
    assert message == (f"{tmp_path / 'cut.asc'}: line {lines}: the file ends early: no End "
                       "TriggerBlock closes the Begin Triggerblock of line 4 (a truncated "
                       "file: the frames after it are missing)")
    assert 1500 < len(got) < 2700 and [f[1:] for f in got] == [f[1:] for f in frames[:len(got)]]
    for ext in (".asc", ".trc", ".csv"):
        data = (tmp_path / f"x{ext}").read_bytes()
        end = data.index(b"\n", len(data) // 2)
        for cut in (end - 1, end - 9):  # inside the last data byte; a few columns earlier
            (tmp_path / f"cut{ext}").write_bytes(data[:cut])
            got, message = read_until_damage(tmp_path / f"cut{ext}")
            number = data[:cut].count(b"\n") + 1
            assert message is not None and message.startswith(
                f"{tmp_path / f'cut{ext}'}: line {number}: "), (ext, cut, message)
            assert [f[1:] for f in got] == [f[1:] for f in frames[:len(got)]], ext
            assert len(got) > 1500, ext


def test_lines_that_are_no_frame_on_purpose_are_not_damage(core, tmp_path):
    """What Vector's tools write besides frames (comments, statistics, status, J1939, system
    variables, markers) and PCAN's comments and other record types are skipped quietly."""
    (tmp_path / "canoe.asc").write_text(
        "date Wed Jan 10 10:00:00.000 am 2024\n"
        "base hex  timestamps absolute\n"
        "internal events logged\n"
        "// version 13.0.0\n"
        "// Measurement UUID: 3f1c2d4e-0000-0000-0000-000000000000\n"
        "Begin Triggerblock Wed Jan 10 10:00:00.000 am 2024\n"
        "   0.000000 Start of measurement\n"
        "   0.001000 1  Statistic: D 0 R 0 XD 0 XR 0 E 0 O 0 B 0.00%\n"
        "   0.002000 CAN 1 Status:chip status error active\n"
        "   0.010000 1  123             Rx   d 2 01 02  Length = 0 BitCount = 0 ID = 291\n"
        "   0.011000 SV: 2 0 1 ::System::var = 1\n"
        "   0.012000 1  J1939TP FEE3p 6 0 0 - Rx d 23 01 02 03 04 05 06 07 08\n"
        "   0.013000 log trigger event\n"
        "\n"
        "   0.020000 2  7E8             Tx   d 1 55\n"
        "End TriggerBlock\n")
    got, message = read_until_damage(tmp_path / "canoe.asc")
    assert message is None and [f[1:] for f in got] == [(0x123, 0, b"\x01\x02"),
                                                        (0x7E8, 0, b"\x55")]


def test_damaged_gzip_serves_every_frame_before_the_damage(core, tmp_path):
    """A gzip whose checksum was changed served 0 frames and said "near byte 0"."""
    frames = many_frames(4260)
    write_all_formats(tmp_path, frames)
    for name in ("z.log.gz", "z.asc.gz"):
        zipped = bytearray((tmp_path / name).read_bytes())
        zipped[-8] ^= 0xFF  # the CRC-32 of the data
        (tmp_path / f"crc-{name}").write_bytes(zipped)
        got, message = read_until_damage(tmp_path / f"crc-{name}")
        assert [f[1:] for f in got] == [f[1:] for f in frames], name
        assert message is not None and "damaged gzip data (its checksum does not match the " \
                                       "data" in message, message
        if name == "z.log.gz":  # in its trailer (CRC-32, length), where zlib finds it
            assert len(zipped) - 8 <= int(message.split(": byte ")[1].split(":")[0]) < len(zipped)


def test_damaged_blf_names_the_container_and_the_byte(core, tmp_path):
    """Two BLF files damaged at different places both said "byte 9902" (where python-can's
    reader stood: the end of what it had read)."""
    frames = many_frames(4260)
    write_all_formats(tmp_path, frames)
    data = (tmp_path / "x.blf").read_bytes()
    places = []
    for at in (300, len(data) - 300):
        damaged = bytearray(data)
        damaged[at:at + 40] = bytes(40)
        (tmp_path / f"d{at}.blf").write_bytes(damaged)
        got, message = read_until_damage(tmp_path / f"d{at}.blf")
        assert message is not None, at
        place = message.split(": ")[1]
        start, end = (int(x) for x in place.split("the container at bytes ")[1].split(" ")[0]
                      .split("-"))
        assert start <= at < end, message
        places.append(place)
        assert [f[1:] for f in got] == [f[1:] for f in frames[:len(got)]]
    assert places[0] != places[1]
    assert places[0].startswith("damage noticed at byte "), places[0]


class _Shown:
    """A formatter that keeps the frames dump hands it."""

    def __init__(self):
        self.frames = []

    def format(self, frames):
        self.frames.extend(frames)
        return ""

    def finish(self):
        return ""


def test_dump_shows_the_frames_before_the_damage_then_the_error(core, tmp_path):
    """dump FILE (the client reading the replay source in line) shows what comes before the
    damage, then raises the error that names it."""
    import io

    from cancorder.client import Dump
    from cancorder.report import Reporter
    from cancorder.sources.replay import ReplaySource

    cases = damaged(tmp_path)
    for name, where, before in cases:
        source = ReplaySource([str(tmp_path / name)], speed=None, original_time=True,
                              wait_for_client=False, by_channel=True, empty_ok=True)
        try:
            source.open()
        except LogFileError as exc:  # damage before the first frame read: no log at all
            assert before == 0 or before is None, (name, exc)
            continue
        shown = _Shown()
        with pytest.raises(LogFileError) as caught:
            Dump(source, Reporter(), formatter=shown, out=io.StringIO()).run()
        assert where in str(caught.value), name
        shown = shown.frames
        if before is not None:
            assert [f[1:] for f in shown] == [f[1:] for f in frames_of(40)[:before]], name


@pytest.mark.parametrize("name,content,message", [
    ("none.log", None, "none.log: no such file"),
    ("x.pcap", "", "cannot tell the format from the extension '.pcap'"),
    ("x.db.gz", "", "cannot tell the format from the extension '.db.gz'"),
    ("empty.asc", "", "empty.asc: the file is empty"),
    ("folder.log", "DIR", "folder.log: is a folder, not a log file"),
    # unreadable even for root: reading /proc/self/mem at 0 fails with EIO
    ("mem.log", "MEM", "mem.log: cannot read it: Input/output error"),
])
def test_a_file_that_cannot_be_read_at_all_is_a_usage_error(tmp_path, name, content, message):
    path = tmp_path / name
    if content == "DIR":
        path.mkdir()
    elif content == "MEM":
        path.symlink_to("/proc/self/mem")
    elif content is not None:
        path.write_text(content)
    with pytest.raises(UsageError) as caught:
        readers.check_log_file(str(path))
    assert message in str(caught.value)


def test_remote_error_and_impossible_frames_counted_and_skipped(core, tmp_path):
    messages = [can.Message(timestamp=1.0, arbitration_id=0x123, data=b"\x11",
                            is_extended_id=False),
                can.Message(timestamp=1.1, arbitration_id=0x124, is_remote_frame=True,
                            is_extended_id=False),
                can.Message(timestamp=1.2, is_error_frame=True),
                can.Message(timestamp=1.3, arbitration_id=0x125, data=b"\x22",
                            is_extended_id=False)]
    with can.Logger(str(tmp_path / "re.blf")) as writer:
        for msg in messages:
            writer.on_message_received(msg)
    records, got = read(tmp_path / "re.blf")
    assert [(f[1], f[3]) for _, f in got] == [(0x123, b"\x11"), (0x125, b"\x22")]
    assert (records.remote, records.error) == (1, 1)


def test_dump_of_a_log_file_prints_its_frames_and_says_what_it_skipped(tmp_path):
    import subprocess
    import sys

    from tests.helpers import ROOT, cancorder_env

    (tmp_path / "re.log").write_text("(1.000000) can0 123#11\n(1.1) can0 456#R\n(1.2) can0 "
                                     "20000080#0000000000000000\n(1.3) can1 124#22\n")
    done = subprocess.run([sys.executable, "-m", "cancorder", "dump", "-f", "candump",
                           str(tmp_path / "re.log")], capture_output=True, text=True,
                          env=cancorder_env(), cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["(1.000000) can0 123#11", "(1.300000) can0 124#22"]
    assert "2 remote, error or impossible frames in" in done.stderr


def blf_containers(data):
    """(start, end) of each object in a BLF file's bytes (its containers of frames)."""
    from can.io.blf import FILE_HEADER_SIZE

    found, start = [], FILE_HEADER_SIZE
    while start + 16 <= len(data):
        size = int.from_bytes(data[start + 8:start + 12], "little")
        found.append((start, start + size + size % 4))
        start += size + size % 4
    return found


def test_a_damaged_blf_container_serves_its_frames_before_the_damage(core, tmp_path):
    """Issue 22 item 5: a BLF container whose compressed data was damaged lost every frame of
    it (python-can decompresses a whole container before it parses any): the whole objects
    before the damage are served, then one error names the file and the byte."""
    frames = many_frames(4260)
    write_all_formats(tmp_path, frames)
    data = (tmp_path / "x.blf").read_bytes()
    containers = blf_containers(data)
    assert len(containers) >= 2, containers
    for number, (start, end) in enumerate(containers[:2]):
        whole_before = containers_frames(data, containers[:number])
        # a sixth into its compressed data zlib notices the damage there; halfway, only by
        # the checksum at the end (then the frames served may hold the damage: said)
        for sixths, where in ((1, "damage noticed at byte "), (3, "the container at bytes ")):
            at = start + 32 + (end - start - 32) * sixths // 6
            damaged = bytearray(data)
            damaged[at:at + 40] = b"\xff" * 40
            name = f"c{number}-{sixths}.blf"
            (tmp_path / name).write_bytes(damaged)
            got, message = read_until_damage(tmp_path / name)
            assert message is not None and message.startswith(f"{tmp_path / name}: {where}"), \
                message
            assert f"the container at bytes {start}-{end}" in message, message
            if sixths == 1:
                place = int(message.split("damage noticed at byte ")[1].split(",")[0])
                assert at <= place < end, message
            else:
                assert "the frames read from it may hold it" in message, message
            # the container's frames before the damage are served (python-can: none of them);
            # at most the few decoded from the damaged bytes differ
            assert len(got) > whole_before + 100, (name, len(got), whole_before)
            right = next((k for k, f in enumerate(got) if f[1:] != frames[k][1:]), len(got))
            assert right >= len(got) - 5, (name, right, len(got))


def containers_frames(data, containers):
    """The frames the given first containers of a BLF hold (the file cut after them)."""
    import io

    from can.io.blf import BLFReader

    if not containers:
        return 0
    cut = data[:containers[-1][1]]
    return sum(1 for _ in BLFReader(io.BytesIO(cut)))


def test_a_blank_line_between_candump_frames_is_damage(core, tmp_path):
    """Issue 22 item 5: a candump .log whose frame line was replaced by an empty line read
    without complaint (the parser skipped blank lines; candump writes none): the frames
    before it are served, then one error names the file and the line. A final newline, and
    blank lines after the last frame, are not damage."""
    frames = frames_of(40)
    lines = [candump_line(frame, "can0") + "\n" for frame in frames]
    for blank in ("\n", "  \r\n"):
        damaged = list(lines)
        damaged[20] = blank
        (tmp_path / "blank.log").write_text("".join(damaged))
        got, message = read_until_damage(tmp_path / "blank.log")
        assert message == (f"{tmp_path / 'blank.log'}: line 21: a blank line between two "
                           "frame lines (candump writes none: a frame line was lost there)")
        assert [f[1:] for f in got] == [f[1:] for f in frames[:20]]
        with gzip.open(tmp_path / "blank.log.gz", "wt") as file:
            file.write("".join(damaged))
        got, message = read_until_damage(tmp_path / "blank.log.gz")
        assert message is not None and message.endswith("line 21: a blank line between two "
                                                        "frame lines (candump writes none: a "
                                                        "frame line was lost there)"), message
        assert [f[1:] for f in got] == [f[1:] for f in frames[:20]]
    (tmp_path / "end.log").write_text("".join(lines) + "\n\n")
    got, message = read_until_damage(tmp_path / "end.log")
    assert message is None and [f[1:] for f in got] == [f[1:] for f in frames]
