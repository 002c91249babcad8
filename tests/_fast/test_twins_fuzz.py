"""Differential fuzzing: the compiled and the pure-Python twin of every parser see the same
input and must show a caller the same thing (output bytes, counters, the error raised).

Each entry of ``TWINS`` below runs one parser of ``cancorder._fast`` on an input that
hypothesis draws; a parser added to ``_fast`` gets one entry (a strategy and a run function).
The budget is fixed (``max_examples``) so that the suite stays fast; ``HYPOTHESIS_PROFILE=long``
runs many more examples, and ``tools/fuzz_parsers.py`` (atheris) runs the compiled parsers
under libFuzzer for as long as one likes.
"""
import math
import os
import types

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cancorder._fast as fast_package

settings.register_profile("suite", max_examples=150, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=20000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


def _twins():
    try:
        return fast_package.variant("compiled"), fast_package.variant("pure")
    except ImportError as exc:
        if os.environ.get("CANCORDER_REQUIRE_CYTHON", "") not in ("", "0"):
            raise
        pytest.skip(f"no compiled core to compare with: {exc}")


def chunks(data, cuts):
    """``data`` split at the positions ``cuts`` (any ints: taken modulo the length)."""
    if not data:
        return [data]
    points = sorted({cut % len(data) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


# ---- wire: the stream decoder ----

def run_decoder(fast, data, cuts):
    decoder = fast.wire.StreamDecoder()
    seen = []
    try:
        for chunk in chunks(data, cuts):
            seen.append(decoder.feed(chunk))
        decoder.finish()
    except fast.wire.WireFormatError as exc:  # each twin has its own class
        seen.append(("error", str(exc), exc.offset, exc.data, exc.frames))
    return seen, decoder.offset, decoder.frames, decoder.pending


def record_bytes():
    """Records that are mostly valid, with every header field sometimes out of range."""
    header = st.tuples(st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 32) - 1),
                       st.integers(0, 255), st.sampled_from(tuple(range(9)) + (12, 16, 64, 9, 13,
                                                                               255)))

    def build(fields):
        micros, can_id, flags, n = fields
        return micros.to_bytes(8, "big") + can_id.to_bytes(4, "big") + bytes((flags, n)) + \
            bytes(range(n))

    valid = st.tuples(st.integers(0, (1 << 64) - 1), st.integers(0, 0x7FF), st.just(0),
                      st.integers(0, 8)).map(build)
    return st.lists(st.one_of(valid, header.map(build), st.binary(max_size=30)),
                    max_size=12).map(b"".join)


# ---- wire: the packer (python-can Messages in, records out) ----

def message(can_id, extended, data, fd, brs, esi, remote, error, timestamp):
    return types.SimpleNamespace(
        arbitration_id=can_id, is_extended_id=extended, data=data, is_fd=fd, bitrate_switch=brs,
        error_state_indicator=esi, is_remote_frame=remote, is_error_frame=error,
        timestamp=timestamp)


def messages():
    ids = st.one_of(st.integers(0, 0x7FF), st.integers(0, 0x1FFFFFFF),
                    st.sampled_from([-1, 0x800, 0x20000000, (1 << 32) - 1, 1 << 32, (1 << 63) - 1,
                                     1 << 63, (1 << 64) - 1, 1 << 64, 1 << 70]))
    stamps = st.one_of(st.floats(0, 2e9), st.floats(allow_nan=True, allow_infinity=True),
                       st.sampled_from([math.nan, math.inf, -math.inf, 1.8446744073709552e13,
                                        1.8446744073709551e13, 1e20, -1.0, 0.0]))
    one = st.builds(message, ids, st.booleans(),
                    st.one_of(st.binary(max_size=9), st.sampled_from([bytes(12), bytes(64),
                                                                      bytes(13), None])),
                    st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans(),
                    stamps)
    return st.lists(one, max_size=8)


def run_packer(fast, batch, offset):
    packer = fast.wire.Packer(offset)
    try:
        out = packer.pack(list(batch))
    except Exception as exc:  # a twin that raises where the other does not is the bug
        out = ("raised", type(exc).__name__)
    return out, packer.packed, packer.remote, packer.error, packer.invalid


# ---- slcan: adapter lines to records ----

HEX = "0123456789ABCDEFabcdef"


def slcan_lines():
    ident3 = st.text(HEX, min_size=3, max_size=3)
    ident8 = st.text(HEX, min_size=8, max_size=8)
    stamp = st.one_of(st.just(""), st.integers(0, 0xFFFF).map(lambda v: f"{v:04X}"),
                      st.text(HEX + "Zx", min_size=4, max_size=4))
    frame = st.builds(lambda kind, ident, dlc, data, stamp: f"{kind}{ident}{dlc}{data}{stamp}",
                      st.sampled_from("tTrRdDbB"), st.one_of(ident3, ident8),
                      st.sampled_from("0123456789ABCDEFG"),
                      st.integers(0, 64).map(lambda n: "A5" * n), stamp)
    junk = st.one_of(st.text("tTzZFVvNrdb0123456789ABCDEF\a", max_size=20),
                     st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                     st.integers(150, 400).map(lambda n: "A" * n))
    line = st.one_of(frame, frame, junk).map(lambda text: text.encode("latin-1"))
    end = st.sampled_from([b"\r", b"\r", b"\a", b"\r\n", b""])
    return st.lists(st.tuples(line, end).map(b"".join), max_size=15).map(b"".join)


def run_slcan(fast, data, cuts, adapter_time, now_us, rules):
    record_filter = fast.wire.RecordFilter(rules) if rules else None
    parser = fast.slcan.SlcanParser(adapter_time=adapter_time, record_filter=record_filter)
    out = []
    for k, chunk in enumerate(chunks(data, cuts)):
        out.append(parser.feed(chunk, now_us + k * 1000))
    counters = {name: getattr(parser, name) for name in dir(parser)
                if not name.startswith("_") and isinstance(getattr(parser, name), (int, bytes))
                and not isinstance(getattr(parser, name), bool)}
    return b"".join(out), counters, parser.pending


FILTERS = st.one_of(st.just(None), st.just([(0x123, 0x7FF, None, False)]),
                    st.just([(0x18DA0000, 0x1FFF0000, True, False), (0x100, 0x700, False, True)]))


# ---- the tests: one per parser ----

@given(data=record_bytes(), cuts=st.lists(st.integers(0, 1 << 16), max_size=6))
def test_stream_decoder_twins_agree(data, cuts):
    compiled, pure = _twins()
    assert run_decoder(compiled, data, cuts) == run_decoder(pure, data, cuts)


@given(batch=messages(), offset=st.one_of(st.just(0.0), st.floats(-1e10, 1e10)))
def test_packer_twins_agree(batch, offset):
    compiled, pure = _twins()
    got = run_packer(compiled, batch, offset)
    assert got == run_packer(pure, batch, offset)
    assert not isinstance(got[0], tuple), f"both twins raised {got[0]}"  # count, never raise


@given(data=slcan_lines(), cuts=st.lists(st.integers(0, 1 << 16), max_size=6),
       adapter_time=st.booleans(), now_us=st.integers(0, 1 << 62), filters=FILTERS)
def test_slcan_parser_twins_agree(data, cuts, adapter_time, now_us, filters):
    compiled, pure = _twins()
    assert run_slcan(compiled, data, cuts, adapter_time, now_us, filters) == \
        run_slcan(pure, data, cuts, adapter_time, now_us, filters)


@given(data=slcan_lines(), cuts=st.lists(st.integers(0, 1 << 16), max_size=6),
       adapter_time=st.booleans())
def test_slcan_result_does_not_depend_on_how_reads_are_split(data, cuts, adapter_time):
    """Frames, counters and what is left pending are the same in one read or in pieces (host
    timestamps are the same instant for every piece here, so the records compare whole)."""
    for fast in _twins():
        whole = fast.slcan.SlcanParser(adapter_time=adapter_time)
        pieces = fast.slcan.SlcanParser(adapter_time=adapter_time)
        expected = whole.feed(data, 10 ** 15)
        got = b"".join(pieces.feed(chunk, 10 ** 15) for chunk in chunks(data, cuts))
        assert got == expected
        for name in ("frames", "remote", "garbage", "bell", "filtered", "pending"):
            assert getattr(pieces, name) == getattr(whole, name), name


# ---- logfile: candump log lines to records (replay) and records to lines (the recorder) ----

def candump_lines():
    """candump lines that are mostly valid, with every field sometimes out of range or junk."""
    stamp = st.one_of(
        st.builds(lambda s, f: f"({s}.{f:06d})", st.integers(0, 4_000_000_000),
                  st.integers(0, 999_999)),
        st.builds(lambda s, f: f"({s}.{f})", st.integers(0, 10 ** 21),
                  st.text("0123456789", max_size=9)),
        st.text("()0123456789.", max_size=12),
        st.sampled_from(["(18446744073709.551615)", "(18446744073709.551616)",  # 2^64 us
                         "(9999999999999999999.999999)", "(99999999999999999999.0)", "(.5)",
                         "(1.)", "(1.1234567)"]))
    ident = st.one_of(st.text(HEX, min_size=3, max_size=3), st.text(HEX, min_size=8, max_size=8),
                      st.text(HEX + "Zx", max_size=10))
    separator = st.sampled_from(["#", "##0", "##1", "##3", "##F", "##", "#R", "#r", "###"])
    data = st.one_of(st.integers(0, 64).map(lambda n: "a5" * n), st.text(HEX + " RTx", max_size=20))
    frame = st.builds(lambda s, chan, i, sep, d, tail: f"{s} {chan} {i}{sep}{d}{tail}", stamp,
                      st.sampled_from(["can0", "can1", "vcan0", "", "x y"]), ident, separator,
                      data, st.sampled_from(["", " R", " T", "  ", "\r", "\t"]))
    junk = st.one_of(st.text(" \t()#.0123456789ABCDEFcan", max_size=30),
                     st.binary(max_size=80).map(lambda b: b.decode("latin-1")))
    line = st.one_of(frame, frame, frame, junk).map(lambda text: text.encode("latin-1"))
    return st.lists(st.tuples(line, st.sampled_from([b"\n", b"\n", b"\r\n", b""]))
                    .map(b"".join), max_size=12).map(b"".join)


def run_candump_parser(fast, data, cuts, channel):
    parser = fast.logfile.CandumpParser(channel)
    out = []
    try:
        for chunk in chunks(data, cuts):
            out.append((parser.feed(chunk), list(parser.runs)))
        out.append((parser.finish(), list(parser.runs)))
    except Exception as exc:  # a twin that raises where the other does not is the bug
        out.append(("raised", type(exc).__name__, str(exc)))
    return (out, parser.line, parser.frames, parser.remote, parser.error, parser.other_channel,
            parser.first_channel, parser.error_reason, parser.error_line)


def run_candump_encoder(fast, records, channel):
    encoder = fast.logfile.CandumpEncoder(channel)
    try:
        out = encoder.encode(records)
    except Exception as exc:
        out = ("raised", type(exc).__name__, str(exc))
    return out, encoder.frames


def whole_records():
    """Whole records (as a source hands them over), every header value anywhere."""
    one = st.tuples(st.integers(0, (1 << 64) - 1),
                    st.one_of(st.integers(0, 0x7FF), st.integers(0, (1 << 32) - 1)),
                    st.integers(0, 255), st.sampled_from(tuple(range(9)) + (12, 16, 20, 64)))
    return st.lists(one.map(lambda f: f[0].to_bytes(8, "big") + f[1].to_bytes(4, "big") +
                            bytes((f[2], f[3])) + bytes(range(f[3]))), max_size=10).map(b"".join)


@given(data=candump_lines(), cuts=st.lists(st.integers(0, 1 << 16), max_size=6),
       channel=st.sampled_from([None, b"can0", b"vcan0"]))
def test_candump_parser_twins_agree(data, cuts, channel):
    compiled, pure = _twins()
    got = run_candump_parser(compiled, data, cuts, channel)
    assert got == run_candump_parser(pure, data, cuts, channel)
    assert not (got[0] and got[0][-1][0] == "raised"), f"both twins raised {got[0][-1]}"


@given(records=whole_records(), channel=st.sampled_from(["can0", "vcan12", ""]))
def test_candump_encoder_twins_agree(records, channel):
    compiled, pure = _twins()
    assert run_candump_encoder(compiled, records, channel) == \
        run_candump_encoder(pure, records, channel)


# ---- pcap: the pcapng encoder and parser (issue 30) ----

def run_pcapng_encoder(fast, records, interface):
    encoder = fast.pcap.PcapngEncoder()
    try:
        out = encoder.encode(records, interface)
    except Exception as exc:
        out = ("raised", type(exc).__name__, str(exc))
    return out, encoder.frames


@given(records=whole_records(), interface=st.integers(0, (1 << 32) - 1))
def test_pcapng_encoder_twins_agree(records, interface):
    compiled, pure = _twins()
    assert run_pcapng_encoder(compiled, records, interface) == \
        run_pcapng_encoder(pure, records, interface)


def run_pcapng_parser(fast, data, cuts, channel):
    parser = fast.pcap.PcapngParser(channel)
    seen = []
    try:
        for chunk in chunks(data, cuts):
            seen.append((parser.feed(chunk), parser.runs))
        seen.append((parser.finish(), parser.runs))
    except Exception as exc:
        seen.append(("raised", type(exc).__name__, str(exc)))
    return (seen, parser.frames, parser.remote, parser.error, parser.other,
            parser.other_channel, parser.first_channel, parser.error_reason,
            parser.error_offset, parser.offset)


@st.composite
def pcapng_files(draw):
    """A file the encoder writes (two interfaces), then damaged: bytes changed, cut short."""
    from cancorder._fast import pcap

    encoder = pcap.PcapngEncoder()
    records = draw(whole_records())
    valid = fast_package.variant("pure").wire.StreamDecoder()
    try:
        valid.feed(records)
    except Exception:  # headers out of range: only the valid ones are written
        records = b""
    data = (pcap.section_header() + pcap.interface_block("can0")
            + pcap.interface_block(draw(st.sampled_from(["vcan1", "ü", ""])))
            + encoder.encode(records, 0) + encoder.encode(records, 1))
    data = bytearray(data)
    for position, value in draw(st.lists(st.tuples(st.integers(0, 1 << 16),
                                                   st.integers(0, 255)), max_size=4)):
        data[position % len(data)] = value
    return bytes(data[:draw(st.integers(0, len(data)))])


@given(data=pcapng_files(), cuts=st.lists(st.integers(0, 1 << 16), max_size=6),
       channel=st.sampled_from([None, b"can0", b"vcan1"]))
def test_pcapng_parser_twins_agree(data, cuts, channel):
    compiled, pure = _twins()
    got = run_pcapng_parser(compiled, data, cuts, channel)
    assert got == run_pcapng_parser(pure, data, cuts, channel)
    assert not (got[0] and got[0][-1][0] == "raised"), f"both twins raised {got[0][-1]}"
