"""_fast.logfile: candump lines from and to wire records, and the record helpers of replay."""
import io
import random

import can
import pytest

from cancorder.formats import candump_line


def random_frames(count, seed=1):
    rnd = random.Random(seed)
    frames = []
    micros = 1_700_000_000_000_000
    for _ in range(count):
        fd = rnd.random() < 0.3
        ext = rnd.random() < 0.5
        n = rnd.choice([0, 1, 8, 12, 24, 64]) if fd else rnd.randint(0, 8)
        flags = (1 if ext else 0) | ((2 | (4 if rnd.random() < .5 else 0)
                                      | (8 if rnd.random() < .5 else 0)) if fd else 0)
        micros += rnd.randrange(0, 5000)
        frames.append((micros, rnd.randrange(1 << 29 if ext else 1 << 11), flags,
                       bytes(rnd.randrange(256) for _ in range(n))))
    return frames


def pack(fast, frames):
    return b"".join(fast.wire.pack_frame(*frame) for frame in frames)


def test_encoder_writes_the_candump_lines_of_formats(fast):
    frames = random_frames(3000)
    encoder = fast.logfile.CandumpEncoder("vcan1")
    text = encoder.encode(pack(fast, frames))
    assert text == "".join(candump_line(f, "vcan1") + "\n" for f in frames).encode()
    assert encoder.frames == 3000
    # python-can's reader gets every field back
    read = list(can.io.CanutilsLogReader(io.StringIO(text.decode())))
    assert [(round(m.timestamp * 1e6), m.arbitration_id, m.is_extended_id, m.is_fd,
             m.bitrate_switch, m.error_state_indicator, bytes(m.data)) for m in read] == [
        (f[0], f[1], bool(f[2] & 1), bool(f[2] & 2), bool(f[2] & 4), bool(f[2] & 8), f[3])
        for f in frames]


def test_encoder_edge_values(fast):
    frames = [(0, 0, 0, b""), (999_999, 0x7FF, 0, b"\xff" * 8),
              (18_446_744_073_709_551_615, 0x1FFFFFFF, 1 | 2 | 4 | 8, bytes(range(64)))]
    text = fast.logfile.CandumpEncoder().encode(pack(fast, frames))
    assert text.decode().splitlines() == [candump_line(f) for f in frames]
    with pytest.raises(ValueError):
        fast.logfile.CandumpEncoder().encode(pack(fast, frames)[:-1])


@pytest.mark.parametrize("step", [1, 7, 100, 1 << 20])
def test_parser_round_trip_in_any_chunking(fast, step):
    frames = random_frames(500, seed=step)
    records = pack(fast, frames)
    text = fast.logfile.CandumpEncoder().encode(records)
    parser = fast.logfile.CandumpParser()
    back = b"".join(parser.feed(text[i:i + step]) for i in range(0, len(text), step))
    back += parser.finish()
    assert back == records and parser.frames == 500 and parser.error_reason is None


def test_parser_reads_python_can_lines_and_skips_remote_and_error_frames(fast):
    out = io.StringIO()
    writer = can.io.CanutilsLogWriter(out, channel="can0")
    messages = [can.Message(timestamp=1.5, arbitration_id=0x123, data=b"\x01\x02",
                            is_extended_id=False),
                can.Message(timestamp=1.6, arbitration_id=0x456, is_remote_frame=True, dlc=4,
                            is_extended_id=False),
                can.Message(timestamp=1.7, is_error_frame=True),
                can.Message(timestamp=1.8, arbitration_id=0x18DAF110, is_fd=True,
                            bitrate_switch=True, data=bytes(12))]
    for msg in messages:
        writer.on_message_received(msg)
    parser = fast.logfile.CandumpParser()
    records = parser.feed(out.getvalue().encode()) + parser.finish()
    frames = fast.wire.StreamDecoder().feed(records)
    assert frames == [(1_500_000, 0x123, 0, b"\x01\x02"),
                      (1_800_000, 0x18DAF110, 1 | 2 | 4, bytes(12))]
    assert (parser.remote, parser.error, parser.first_channel) == (1, 1, b"can0")


def test_parser_last_line_without_newline_and_blank_lines(fast):
    """Blank lines before the first line and after the last are skipped; one between two lines
    is damage (candump writes none: a frame line was lost there), wherever the chunks end."""
    parser = fast.logfile.CandumpParser()
    records = parser.feed(b"\n(1.000001) can0 001#AA\r\n(2.5) can0 002#")
    records += parser.finish()
    assert fast.wire.StreamDecoder().feed(records) == [(1_000_001, 1, 0, b"\xaa"),
                                                       (2_500_000, 2, 0, b"")]
    parser = fast.logfile.CandumpParser()
    records = parser.feed(b"(1.000001) can0 001#AA\r\n(2.5) can0 002#\n\n \r\n")
    records += parser.finish()
    assert len(fast.wire.StreamDecoder().feed(records)) == 2 and parser.error_reason is None
    for chunks in ([b"(1.000001) can0 001#AA\r\n\n(2.5) can0 002#\n"],
                   [b"(1.000001) can0 001#AA\r\n\n", b"(2.5) can0 002#\n"]):
        parser = fast.logfile.CandumpParser()
        records = b"".join(parser.feed(chunk) for chunk in chunks) + parser.finish()
        assert fast.wire.StreamDecoder().feed(records) == [(1_000_001, 1, 0, b"\xaa")]
        assert (parser.error_line, parser.error_reason) == (
            2, "a blank line between two frame lines (candump writes none: a frame line was "
               "lost there)")


@pytest.mark.parametrize("line,reason", [
    (b"1.0 can0 123#00", "expected '('"),
    (b"(x) can0 123#00", "timestamp"),
    (b"(1.0) can0", "channel name and a frame"),
    (b"(1.0) can0 12G#00", "hex id"),
    (b"(1.0) can0 123#0", "pairs of hex digits"),
    (b"(1.0) can0 123#00112233445566778899", "10 data bytes on a classic"),
    (b"(1.0) can0 123##1" + b"00" * 9, "not a CAN FD length"),
])
def test_parser_names_the_bad_line(fast, line, reason):
    parser = fast.logfile.CandumpParser()
    good = b"(1.0) can0 001#00\n(1.1) can0 002#00\n"
    records = parser.feed(good + line + b"\n(3.0) can0 003#00\n")
    assert len(fast.wire.StreamDecoder().feed(records)) == 2  # the lines before it
    assert parser.error_line == 3 and reason in parser.error_reason


def test_parser_keeps_one_channel(fast):
    parser = fast.logfile.CandumpParser(b"can1")
    records = parser.feed(b"(1.0) can0 001#00\n(1.1) can1 002#00\n(1.2) can10 003#00\n")
    assert [f[1] for f in fast.wire.StreamDecoder().feed(records)] == [2]
    assert parser.other_channel == 2


def test_parser_tells_where_each_channel_runs(fast):
    lines = b"".join(candump_line((1_000_000 + i, 0x100 + i, 0, b"\x01"),
                                  "can1" if i in (2, 3, 5) else "vcan0").encode() + b"\n"
                     for i in range(7))
    parser = fast.logfile.CandumpParser()
    size = fast.wire.HEADER_SIZE + 1
    records = parser.feed(lines[:len(lines) // 2]) + b"|"  # runs are per feed
    assert parser.runs == [(0, b"vcan0"), (2 * size, b"can1")]
    records = parser.feed(lines[len(lines) // 2:]) + parser.finish()
    assert parser.runs == [(0, b"can1"), (size, b"vcan0"), (2 * size, b"can1"),
                           (3 * size, b"vcan0")]
    assert len(records) == 4 * size
    kept = fast.logfile.CandumpParser(b"can1")
    kept.feed(lines)
    assert kept.runs == [(0, b"can1")] and kept.other_channel == 4


def test_retimer_and_due_prefix(fast):
    lf = fast.logfile
    frames = [(1000, 1, 0, b""), (3000, 2, 0, b""), (2000, 3, 1, b""), (10_003_000, 4, 0, b"")]
    records = pack(fast, frames)
    retimer = lf.Retimer(50_000_000, speed=2.0, max_gap_us=1_000_000)
    out = fast.wire.StreamDecoder().feed(retimer.retime(records))
    # gaps halved; a step back is no gap; a 10 s silence is cut to 1 s, then halved
    assert [f[0] for f in out] == [50_000_000, 50_001_000, 50_001_000, 50_501_000]
    retimer.restart()
    again = fast.wire.StreamDecoder().feed(retimer.retime(records[:14]))
    assert again[0][0] == 50_501_000  # a loop continues without a gap
    assert lf.due_prefix(records, 2999) == 14 and lf.due_prefix(records, 3000) == 42
    assert lf.first_stamp(records) == 1000 and lf.count_records(records) == 4


def test_whole_prefix_cuts_at_record_boundaries(fast):
    frames = random_frames(300)
    records = pack(fast, frames)
    start, cuts = 0, []
    while start < len(records):
        end = fast.logfile.whole_prefix(records, start, 500)
        assert end > start and (end - start <= 500 or fast.logfile.count_records(
            records[start:end]) == 1)
        cuts.append(records[start:end])
        start = end
    assert len(cuts) > 5
    decoded = [f for cut in cuts for f in fast.wire.StreamDecoder().feed(cut)]
    assert decoded == frames
    assert fast.logfile.whole_prefix(records, 0, 1) == 14 + len(frames[0][3])  # one at least


def test_due_prefix_and_first_stamp_go_on_from_an_offset(fast):
    """Paced replay hands its batch over piece by piece from an offset (slicing off the rest
    at every hand-over copied the whole batch once per frame)."""
    lf = fast.logfile
    records = pack(fast, [(1000, 1, 0, b""), (2000, 2, 0, b"\x01"), (3000, 3, 0, b""),
                          (4000, 4, 0, b"")])
    assert lf.first_stamp(records, 14) == 2000 and lf.first_stamp(records, 29) == 3000
    assert lf.due_prefix(records, 2999, 14) == 29 and lf.due_prefix(records, 1500, 14) == 14
    assert lf.due_prefix(records, 10 ** 6, 29) == len(records) == 57
    with pytest.raises(ValueError):
        lf.first_stamp(records, 57)
