"""Packing and decoding records, on the compiled core and its pure-Python twin."""
import struct

import can
import pytest


# The example of the protocol doc: id 0x123, classic, 8 bytes, at 1700000000.000000 s.
DOC_EXAMPLE = bytes.fromhex("00060a24181e4000" "00000123" "00" "08" "01ff23456789abcd")


def msg(**kw):
    kw.setdefault("is_extended_id", False)
    kw.setdefault("timestamp", 1700000000.0)
    return can.Message(**kw)


def test_doc_example(fast):
    packer = fast.wire.Packer()
    out = packer.pack([msg(arbitration_id=0x123, data=bytes.fromhex("01FF23456789ABCD"))])
    assert out == DOC_EXAMPLE
    assert packer.packed == 1


def test_extended_id(fast):
    out = fast.wire.Packer().pack([msg(timestamp=1700000000.5, arbitration_id=0x18DAF110,
                                       is_extended_id=True, data=b"\x02\x10\x03")])
    assert out == bytes.fromhex("00060a241825e120" "18daf110" "01" "03" "021003")


def test_fd_64_bytes_brs_esi(fast):
    data = bytes(range(64))
    out = fast.wire.Packer().pack([msg(timestamp=1.000001, arbitration_id=0x7FF, is_fd=True,
                                       bitrate_switch=True, error_state_indicator=True,
                                       data=data)])
    assert out == bytes.fromhex("00000000000f4241" "000007ff" "0e" "40") + data
    assert len(out) == 78


def test_fd_flag_from_length_and_no_brs_on_classic(fast):
    packer = fast.wire.Packer()
    long_frame = msg(arbitration_id=1, data=bytes(12))  # > 8 bytes: FD although is_fd False
    classic = msg(arbitration_id=2, data=b"\x01", bitrate_switch=True, error_state_indicator=True)
    out = packer.pack([long_frame, classic])
    assert out[12] == 0x02 and out[13] == 12
    second = out[14 + 12:]
    assert second[12] == 0x00  # BRS/ESI exist only on FD frames


def test_remote_error_and_impossible_frames_are_counted_not_packed(fast):
    packer = fast.wire.Packer()
    out = packer.pack([
        msg(arbitration_id=0x100, is_remote_frame=True, dlc=4),
        msg(arbitration_id=0x100, is_error_frame=True),
        msg(arbitration_id=0x800, data=b"\x01"),  # 11-bit id out of range
        msg(arbitration_id=0x100, is_fd=True, data=bytes(10)),  # no FD frame has 10 bytes
        msg(arbitration_id=0x100, data=b"\x42"),
    ])
    assert (packer.packed, packer.remote, packer.error, packer.invalid) == (1, 1, 1, 2)
    assert out == bytes.fromhex("00060a24181e4000" "00000100" "00" "01" "42")


def test_timestamp_offset_rounding_and_negative(fast):
    packer = fast.wire.Packer(ts_offset=1000.0)
    out = packer.pack([msg(timestamp=0.0000015, arbitration_id=1, data=b""),
                       msg(timestamp=-5000.0, arbitration_id=1, data=b"")])
    assert struct.unpack(">Q", out[:8])[0] == 1000000002
    assert struct.unpack(">Q", out[14:22])[0] == 0


def test_compiled_and_pure_give_identical_bytes():
    import random

    import cancorder._fast as fast_package

    try:
        variants = [fast_package.variant("compiled"), fast_package.variant("pure")]
    except ImportError as exc:
        pytest.skip(str(exc))
    rng = random.Random(7)
    messages = []
    for _ in range(2000):
        ext = rng.random() < 0.5
        fd = rng.random() < 0.3
        length = rng.choice((0, 1, 5, 8, 12, 16, 20, 24, 32, 48, 64) if fd else range(9))
        messages.append(can.Message(
            timestamp=rng.uniform(0, 2e9), arbitration_id=rng.getrandbits(29 if ext else 11),
            is_extended_id=ext, is_fd=fd, bitrate_switch=fd and rng.random() < 0.5,
            error_state_indicator=fd and rng.random() < 0.2,
            is_remote_frame=not fd and rng.random() < 0.05,
            data=rng.randbytes(length)))
    outputs = [v.wire.Packer().pack(messages) for v in variants]
    assert outputs[0] == outputs[1]
    decoded = [v.wire.StreamDecoder().feed(outputs[0]) for v in variants]
    assert decoded[0] == decoded[1]


def _stream(fast):
    return fast.wire.Packer().pack([
        msg(arbitration_id=0x123, data=bytes.fromhex("01FF23456789ABCD")),
        msg(arbitration_id=0x1ABCDEF0, is_extended_id=True, data=b""),
        msg(arbitration_id=0x7E8, is_fd=True, bitrate_switch=True, data=bytes(range(48))),
        msg(arbitration_id=0x000, data=b"\x00"),
    ])


def test_decoder_every_chunking(fast):
    stream = _stream(fast)
    whole = fast.wire.StreamDecoder().feed(stream)
    assert [f[1] for f in whole] == [0x123, 0x1ABCDEF0, 0x7E8, 0]
    assert whole[0] == (1700000000000000, 0x123, 0, bytes.fromhex("01FF23456789ABCD"))
    assert whole[2][2] == 0x06 and len(whole[2][3]) == 48
    # every split into two pieces, and byte by byte
    for cut in range(len(stream) + 1):
        decoder = fast.wire.StreamDecoder()
        assert decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]) == whole
        decoder.finish()
    decoder = fast.wire.StreamDecoder()
    frames = []
    for i in range(len(stream)):
        frames += decoder.feed(stream[i:i + 1])
    assert frames == whole
    assert decoder.offset == len(stream) and decoder.frames == 4


def test_decoder_truncated_stream(fast):
    stream = _stream(fast)
    decoder = fast.wire.StreamDecoder()
    frames = decoder.feed(stream[:-1])
    assert len(frames) == 3
    with pytest.raises(fast.wire.WireFormatError) as info:
        decoder.finish()
    assert info.value.offset == len(stream) - 15
    assert "ended inside a record (14 of 15 bytes)" in str(info.value)
    decoder = fast.wire.StreamDecoder()
    decoder.feed(stream[:-5])
    with pytest.raises(fast.wire.WireFormatError, match=r"\(10 of at least 14 bytes\)"):
        decoder.finish()


@pytest.mark.parametrize("header, reason", [
    ("0000000000000001" "00000123" "10" "01", "undefined flag bits"),
    ("0000000000000001" "00000123" "00" "09", "more than 8 bytes needs the FD flag"),
    ("0000000000000001" "00000123" "02" "0a", "not a CAN FD length"),
    ("0000000000000001" "00000123" "02" "41", "not a CAN FD length"),
    ("0000000000000001" "00000800" "00" "01", "11-bit id 0x800 out of range"),
    ("0000000000000001" "20000000" "01" "01", "29-bit id 0x20000000 out of range"),
    ("0000000000000001" "00000123" "04" "01", "BRS/ESI flag on a classic CAN frame"),
])
def test_decoder_malformed_names_offset(fast, header, reason):
    good = DOC_EXAMPLE * 2
    bad = bytes.fromhex(header) + b"\x00" * 80
    decoder = fast.wire.StreamDecoder()
    with pytest.raises(fast.wire.WireFormatError) as info:
        # the bad header split over two feeds: the offset is still the stream offset
        decoder.feed(good + bad[:5])
        decoder.feed(bad[5:])
    assert info.value.offset == len(good)
    assert reason in str(info.value)
    assert f"at byte {len(good)}" in str(info.value)
    assert info.value.data == bad[:14]
    assert info.value.frames == []  # the good ones came back from the first feed
    with pytest.raises(fast.wire.WireFormatError):  # stays failed
        decoder.feed(DOC_EXAMPLE)
    # in one chunk: the good frames before the bad record travel with the error
    decoder = fast.wire.StreamDecoder()
    with pytest.raises(fast.wire.WireFormatError) as info:
        decoder.feed(good + bad)
    assert [f[1] for f in info.value.frames] == [0x123, 0x123]
    assert info.value.offset == len(good)
    with pytest.raises(fast.wire.WireFormatError) as again:
        decoder.finish()
    assert again.value.frames == []


# ---- out of range: both twins count, neither raises (issue 11) ----

@pytest.mark.parametrize("timestamp,can_id", [
    (float("nan"), 0x123), (float("inf"), 0x123), (float("-inf"), 0x123),
    (1.8446744073709552e13, 0x123), (1e30, 0x123),
    (1.0, 1 << 63), (1.0, (1 << 64) - 1), (1.0, 1 << 64), (1.0, 1 << 80), (1.0, -(1 << 64)),
])
def test_out_of_range_frames_are_counted_invalid_by_both_twins(fast, timestamp, can_id):
    import can

    good = can.Message(timestamp=1.0, arbitration_id=0x7FF, is_extended_id=False, data=b"\x01")
    bad = can.Message(timestamp=1.0, arbitration_id=0, data=b"\x02", check=False)
    bad.timestamp, bad.arbitration_id = timestamp, can_id
    for extended in (False, True):
        bad.is_extended_id = extended
        packer = fast.wire.Packer()
        records = packer.pack([good, bad, good])
        assert (packer.packed, packer.invalid) == (2, 1)
        assert records == fast.wire.pack_frame(1_000_000, 0x7FF, 0, b"\x01") * 2
