"""GVRET's binary protocol in _fast: the frame encoder and the strict command reader.

The encoder's bytes are read back by the tests' own GVRET client (tests/gvret_client.py, SavvyCAN's
parser states), the reader gets SavvyCAN's own command sequences (connections/gvretserial.cpp),
and both are fuzzed with hypothesis, compiled against pure, on a fixed budget; any chunking of
the client's bytes must decode the same.
"""
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cancorder._fast import variant
from cancorder._fast.wire import FD_LENGTHS, pack_frame
from tests.gvret_client import SAVVYCAN_CONNECT, Frame, GvretParser, transmit_command

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def frame(draw):
    micros = draw(st.one_of(st.integers(0, (1 << 64) - 1),
                            st.integers(1_600_000_000_000_000, 1_900_000_000_000_000)))
    ext = draw(st.booleans())
    fd = draw(st.booleans())
    can_id = draw(st.integers(0, 0x1FFFFFFF if ext else 0x7FF))
    n = draw(st.sampled_from(FD_LENGTHS if fd else range(9)))
    data = draw(st.binary(min_size=n, max_size=n))
    flags = (1 if ext else 0) | (2 if fd else 0) | (draw(st.sampled_from((0, 4, 12))) if fd else 0)
    return micros, can_id, flags, data


def test_a_frame_is_what_esp32ret_sends(fast):
    """ESP32RET's sendFrameToBuffer: F1 00, time(4), id(4) with bit 31 for 29 bits,
    len + bus << 4, data, a 0 checksum; little-endian, the time cut to 32 bits."""
    encoder = fast.gvret.FrameEncoder()
    records = pack_frame(0x1_2345_6789, 0x123, 0, b"\x01\x02") + \
        pack_frame(0xFFFF_FFFF, 0x18DAF110, 1, b"") + \
        pack_frame(7, 0x7FF, 2 | 4, bytes(range(64)))
    (stream,) = encoder.encode(records)
    assert stream == bytes.fromhex("F100 89674523 23010000 02 0102 00"
                                   "F100 FFFFFFFF 10F1DA98 00 00"
                                   "F114 07000000 FF070000 40 00") + bytes(range(64)) + b"\x00"
    assert (encoder.frames, encoder.fd_frames) == (3, 1)


@given(st.lists(frame(), max_size=40), st.integers(1, 50))
@FUZZ
def test_encoder_frames_read_back_by_a_client_compiled_equals_pure(batch, cut):
    records = b"".join(pack_frame(*f) for f in batch)
    streams = []
    for kind in ("compiled", "pure"):
        try:
            module = variant(kind).gvret
        except ImportError:
            pytest.skip("no compiled core in this build")
        (stream,) = module.FrameEncoder().encode(records)
        streams.append(stream)
        parser = GvretParser()
        events = []
        for start in range(0, len(stream), cut):  # any chunking of the client's reads
            events += parser.feed(stream[start:start + cut])
        assert events == [("frame", Frame(micros & 0xFFFFFFFF, can_id, bool(flags & 1), 0, data,
                                          bool(flags & 2)))
                          for micros, can_id, flags, data in batch]
        # every unit boundary is found from any point inside the stream
        boundaries = set()
        pos = 0
        for micros, can_id, flags, data in batch:
            boundaries.add(pos)
            pos += (13 if flags & 2 else 12) + len(data)
        for skip in range(0, len(stream), max(1, cut)):
            rest = module.rest_of_unit(stream, skip)
            assert skip + rest in boundaries | {len(stream)}
            assert not any(skip < b < skip + rest for b in boundaries)
    assert streams[0] == streams[1]


def test_savvycans_connect_is_read_as_its_commands(fast):
    gvret = fast.gvret
    reader = gvret.CommandReader()
    items = reader.feed(SAVVYCAN_CONNECT + bytes.fromhex("F10D"))
    assert items == [(gvret.BINARY,), (gvret.BINARY,), (gvret.QUERY, 12), (gvret.QUERY, 6),
                     (gvret.QUERY, 7), (gvret.QUERY, 1), (gvret.QUERY, 9), (gvret.QUERY, 13)]
    assert reader.errors == 0


def test_frames_and_settings_as_savvycan_writes_them(fast):
    gvret = fast.gvret
    reader = gvret.CommandReader()
    # piSendFrame: a 0 checksum after the data; piSetBusSettings: 8 bytes then a 0 byte
    setup = bytes.fromhex("F105") + struct.pack("<II", 0xC0000000 | 250000, 0x80000000) + b"\0"
    items = reader.feed(transmit_command(0x7E0, False, b"\x02\x10\x03") +
                        transmit_command(0x18DA10F1, True, bytes(range(8))) +
                        transmit_command(0x123, False, b"") +
                        transmit_command(0x100, False, bytes(64)) + setup)
    assert items == [(gvret.SEND, 0x7E0, 0, b"\x02\x10\x03", 0),
                     (gvret.SEND, 0x18DA10F1, 1, bytes(range(8)), 0),
                     (gvret.SEND, 0x123, 0, b"", 0),
                     (gvret.SEND, 0x100, 2, bytes(64), 0),
                     (gvret.SETTING, 5, setup[2:10])]
    assert reader.errors == 0


@pytest.mark.parametrize("data, message", [
    (b"hello", "byte 68 outside a command"),
    (bytes.fromhex("F1FE"), "unknown command FE"),
    (bytes.fromhex("F100 00010000 00 41"), "frame of 65 data bytes"),
    (bytes.fromhex("F100 00080000 00 00 00"), "11-bit id 800 out of range"),
    (bytes.fromhex("F100 000000E0 00 00 00"), "29-bit id 60000000 out of range"),
    (bytes.fromhex("F100 00010000 00 0A") + bytes(11), "10 data bytes is not a CAN FD length"),
])
def test_bad_input_is_an_error_and_the_reader_resyncs_on_the_next_command(fast, data, message):
    gvret = fast.gvret
    reader = gvret.CommandReader()
    items = reader.feed(data + bytes.fromhex("F109"))
    assert items[0][0] == gvret.ERROR and message in items[0][1], items
    assert items[-1] == (gvret.QUERY, 9)
    assert reader.errors == 1


streams = st.lists(st.one_of(
    st.sampled_from([SAVVYCAN_CONNECT, bytes.fromhex("F109"), bytes.fromhex("F10D"), b"\0",
                     b"\xe7", b"\xf1", transmit_command(0x7E0, False, b"\x01"),
                     transmit_command(0x1ABCDEF0, True, bytes(64)),
                     bytes.fromhex("F105") + bytes(8) + b"\0", bytes.fromhex("F10E") + bytes(12)]),
    st.binary(max_size=40),
), max_size=30)


@given(streams, st.lists(st.integers(1, 50), min_size=1, max_size=10))
@FUZZ
def test_reader_fuzz_compiled_equals_pure_in_any_chunking(pieces, cuts):
    stream = b"".join(pieces)
    outputs = []
    for kind in ("compiled", "pure"):
        try:
            module = variant(kind).gvret
        except ImportError:
            pytest.skip("no compiled core in this build")
        whole = module.CommandReader()
        whole_items = whole.feed(stream)
        assert whole.pending <= module.MAX_PAYLOAD
        chunked = module.CommandReader()
        chunked_items = []
        pos = 0
        i = 0
        while pos < len(stream):
            step = cuts[i % len(cuts)]
            chunked_items += chunked.feed(stream[pos:pos + step])
            assert chunked.pending <= module.MAX_PAYLOAD
            pos += step
            i += 1
        assert chunked_items == whole_items  # a byte machine: the chunking changes nothing
        for item in whole_items:
            if item[0] in (module.SEND, module.ECHO):
                _, can_id, flags, data, bus = item
                assert can_id <= (0x1FFFFFFF if flags & 1 else 0x7FF)
                assert len(data) <= 8 or (flags & 2 and len(data) in FD_LENGTHS)
            elif item[0] == module.ERROR:
                assert isinstance(item[1], str) and "\n" not in item[1]
        outputs.append(whole_items)
    assert outputs[0] == outputs[1]


def test_atheris_fuzzes_the_compiled_reader_and_encoder(tmp_path):
    """The coverage-guided fuzzer (tools/fuzz_gvret.py) on a fixed budget, as socketcand's."""
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT, cancorder_env

    try:
        import atheris  # noqa: F401
    except ImportError:
        if sys.platform.startswith("linux"):
            raise  # the test extra installs it on Linux: its absence is a broken set-up
        pytest.skip("atheris has wheels for Linux only")
    try:
        variant("compiled")
    except ImportError:
        pytest.skip("no compiled core in this build (the pure twin is fuzzed above)")
    run = subprocess.run([sys.executable, os.path.join("tools", "fuzz_gvret.py"),
                          "-atheris_runs=20000", "-seed=1",
                          f"-artifact_prefix={tmp_path}{os.sep}"], cwd=ROOT, env=cancorder_env(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "Done 20000 in" in run.stderr, run.stderr[-4000:]
