"""``gen``'s payloads against the layouts mcangen documents (its README and mcangen(1)), byte
for byte: the facts are written here from the documents, not taken from cancorder's code."""
import pytest

from cancorder.generator import Timeline, TrafficSettings


def quality_test_layout(sequence, millis, test_id):
    """mcangen(1), --data-mode quality-test: "bytes 0-1 are the magic marker 0xCAFE, bytes 2-3
    a big-endian 16-bit sequence number, bytes 4-5 a big-endian 16-bit millisecond timestamp
    offset, byte 6 the test ID, and byte 7 an XOR checksum of bytes 0-6"."""
    head = [0xCA, 0xFE, sequence >> 8 & 0xFF, sequence & 0xFF, millis >> 8 & 0xFF,
            millis & 0xFF, test_id]
    checksum = 0
    for byte in head:
        checksum ^= byte
    return bytes(head + [checksum])


def made(count, rate=1000.0, **settings):
    """The first ``count`` frames of a run, and each one's whole milliseconds since the start
    (frame k of an exact rate is due k / rate seconds after the start)."""
    timeline = Timeline(TrafficSettings(rate=rate, count=count, **settings))
    timeline.started, timeline.started_us = 0.0, 0
    return timeline.frames(count), [k * 1000 // int(rate) for k in range(count)]


def test_quality_test_payload_is_the_published_layout():
    frames, millis = made(70000, rate=1000.0, data_mode="quality-test", exact_id=0x7E0,
                          test_id=0x5A, seed=3)
    for number, ((can_id, flags, data), ms) in enumerate(zip(frames, millis)):
        assert (can_id, flags) == (0x7E0, 0)
        assert data == quality_test_layout(number % 65536, ms % 65536, 0x5A), number
    # the 16-bit sequence and clock wrap as two bytes do
    assert frames[65536][2][2:4] == b"\x00\x00" and frames[65535][2][2:4] == b"\xff\xff"
    assert frames[65536][2][4:6] == (65536 % 65536).to_bytes(2, "big")
    assert frames[1][2].hex() == "cafe0001" + "0001" + "5a" + f"{0xCA ^ 0xFE ^ 1 ^ 1 ^ 0x5A:02x}"


def test_sequence_payload_is_a_64_bit_big_endian_number_from_0():
    frames, _ = made(300, data_mode="sequence", seed=4)
    assert [data for _, _, data in frames] == [n.to_bytes(8, "big") for n in range(300)]
    assert frames[258][2] == bytes([0, 0, 0, 0, 0, 0, 1, 2])


@pytest.mark.parametrize("mode, byte_of", [("zero", lambda n: 0), ("ones", lambda n: 0xFF),
                                           ("counter", lambda n: n % 256)])
def test_fixed_patterns_fill_every_byte(mode, byte_of):
    frames, _ = made(600, data_mode=mode, seed=5, length_min=0, length_max=8)
    assert {len(data) for _, _, data in frames} == set(range(9))  # the length range is used
    for number, (_, _, data) in enumerate(frames):
        assert data == bytes([byte_of(number)]) * len(data)


def test_the_fd_quality_test_variant_keeps_the_classic_head():
    frames, millis = made(500, data_mode="quality-test", exact_id=0x18DAF110, fd=True,
                          brs=True, length_min=8, length_max=64, seed=6, test_id=7)
    lengths = {len(data) for _, _, data in frames}
    assert lengths == {8, 12, 16, 20, 24, 32, 48, 64}
    for number, ((can_id, flags, data), ms) in enumerate(zip(frames, millis)):
        assert flags == 0x07  # EXT, FD, BRS
        assert data[:8] == quality_test_layout(number, ms, 7)
        assert data[8:] == bytes((number + k) & 0xFF for k in range(8, len(data)))


def test_a_seed_gives_the_same_frames_and_ids_stay_in_their_range():
    settings = dict(data_mode="random", id_kind="mixed", id_min=0x100, id_max=0x1FFFFFFF,
                    seed=99, length_min=2, length_max=6)
    first, _ = made(2000, **settings)
    assert first == made(2000, **settings)[0]
    assert first != made(2000, **dict(settings, seed=100))[0]
    standard = [can_id for can_id, flags, _ in first if not flags & 1]
    extended = [can_id for can_id, flags, _ in first if flags & 1]
    assert 800 < len(standard) < 1200  # mixed: a coin per frame
    assert all(0x100 <= i <= 0x7FF for i in standard)
    assert all(0x800 <= i <= 0x1FFFFFFF for i in extended)  # never mistaken for standard
    assert {len(data) for _, _, data in first} == {2, 3, 4, 5, 6}
    assert len({data for _, _, data in first}) > 1990


def test_sequential_ids_walk_the_range():
    frames, _ = made(10, data_mode="zero", id_mode="sequential", id_min=0x7FD, id_max=0x7FF,
                     seed=1)
    assert [can_id for can_id, _, _ in frames] == [0x7FD, 0x7FE, 0x7FF] * 3 + [0x7FD]


def test_burst_alternates_its_two_rates():
    timeline = Timeline(TrafficSettings(burst=(1000.0, 10.0, 0.5, 1.0), count=0))
    schedule = timeline.schedule
    assert schedule.due(0.4999) == 500 and schedule.due(0.5) == 501  # 500 due at 0.5 s
    assert schedule.due(0.5 + 0.55) == 506  # the low phase: 10 frames/s
    assert schedule.due(1.5) == 510 + 1  # the next high phase begins
    assert schedule.at(510) == pytest.approx(1.5) and schedule.at(505) == pytest.approx(1.0)


@pytest.mark.parametrize("settings", [
    dict(data_mode="random", id_kind="mixed", id_max=0x1FFFFFFF, fd=True, brs=True,
         length_max=64),
    dict(data_mode="quality-test", exact_id=0x7E0, test_id=200),
    dict(data_mode="quality-test", exact_id=0x18DAF110, fd=True, length_min=8, length_max=64),
    dict(data_mode="counter", id_mode="sequential", id_min=0x7F0, id_max=0x7FF),
    dict(data_mode="sequence", id_kind="extended", id_max=0x1FFFFFFF),
])
def test_the_compiled_loop_and_its_pure_twin_make_the_same_bytes(fast, settings):
    """records, SLCAN lines and (id, flags, data) of one variant against the frames the
    generator makes, encoded by the tested encoders (wire records, SLCAN transmit lines)."""
    from cancorder._fast import wire
    from cancorder.sources.slcan import frame_line

    count = 3000
    millis = [k * 7 for k in range(count)]
    stamps = [1_700_000_000_000_000 + k * 250 for k in range(count)]

    def maker():
        return fast.traffic.FrameMaker(77, **settings)

    frames = maker().frames(count, millis)
    assert len(frames) == count
    assert maker().records(count, stamps, millis) == b"".join(
        wire.pack_frame(stamp, *frame) for stamp, frame in zip(stamps, frames))
    assert maker().slcan_lines(count, millis) == b"".join(frame_line(*f) for f in frames)
    twin = fast.traffic.FrameMaker(77, **settings)
    halves = twin.frames(1000, millis) + twin.frames(2000, millis[1000:])
    assert halves == frames and twin.sent == count
