"""Coverage-guided fuzzing of GVRET's command reader and frame encoder (atheris).

    .venv/bin/pip install -e '.[fuzz]'      # atheris (the test extra has it too, on Linux)
    .venv/bin/python tools/fuzz_gvret.py -atheris_runs=2000000        # or -max_total_time=600

The suite runs it on a fixed budget (tests/_fast/test_gvret.py) beside hypothesis. The
pure-Python twin is instrumented, so atheris steers by its coverage; every input also goes
through the compiled module and the two must agree. Invariants checked: the reader never
raises, never holds more than its bound, gives the same items however the bytes are split,
and every frame it hands out can exist; the encoder's frames for any records parse back to
the same frames, and every unit boundary is found from inside the stream.
"""
import os
import struct
import sys

from _atheris import atheris  # tools/_atheris.py: one line when it is missing

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cancorder._fast as fast  # noqa: E402

pure = fast.variant("pure").gvret  # loaded by file name: instrumented below
compiled = fast.variant("compiled").gvret
wire = fast.variant("compiled").wire


def check_reader(data, cut):
    results = []
    for module in (pure, compiled):
        whole = module.CommandReader()
        items = whole.feed(data)
        assert whole.pending <= module.MAX_PAYLOAD
        split = module.CommandReader()
        parts = split.feed(data[:cut]) + split.feed(data[cut:])
        assert split.pending <= module.MAX_PAYLOAD
        assert parts == items
        for item in items:
            if item[0] in (module.SEND, module.ECHO):
                _, can_id, flags, payload, bus = item
                assert can_id <= (0x1FFFFFFF if flags & 1 else 0x7FF)
                assert len(payload) <= 8 or (flags & 2 and len(payload) in wire.FD_LENGTHS)
            elif item[0] == module.ERROR:
                assert "\n" not in item[1]
        results.append(items)
    assert results[0] == results[1], (results, data)


def check_encoder(fdp):
    frames = []
    for _ in range(fdp.ConsumeIntInRange(0, 8)):
        ext = fdp.ConsumeBool()
        fd = fdp.ConsumeBool()
        can_id = fdp.ConsumeIntInRange(0, 0x1FFFFFFF if ext else 0x7FF)
        n = wire.FD_LENGTHS[fdp.ConsumeIntInRange(0, 15)] if fd else fdp.ConsumeIntInRange(0, 8)
        frames.append((fdp.ConsumeIntInRange(0, (1 << 64) - 1), can_id,
                       (1 if ext else 0) | (2 if fd else 0), fdp.ConsumeBytes(n).ljust(n, b"\0")))
    records = b"".join(wire.pack_frame(*f) for f in frames)
    out = [m.FrameEncoder().encode(records)[0] for m in (pure, compiled)]
    assert out[0] == out[1]
    stream = out[0]
    pos = 0
    boundaries = []
    for micros, can_id, flags, payload in frames:
        boundaries.append(pos)
        fd = bool(flags & 2)
        assert stream[pos:pos + 2] == (b"\xf1\x14" if fd else b"\xf1\x00")
        stamp, raw = struct.unpack_from("<II", stream, pos + 2)
        assert stamp == micros & 0xFFFFFFFF
        assert raw == can_id | (0x80000000 if flags & 1 else 0)
        start = pos + (12 if fd else 11)
        assert stream[start:start + len(payload)] == payload
        assert stream[start + len(payload)] == 0
        pos = start + len(payload) + 1
    assert pos == len(stream)
    for skip in range(len(stream)):
        end = skip + compiled.rest_of_unit(stream, skip)
        assert end in boundaries or end == len(stream)
        assert end == pure.rest_of_unit(stream, skip) + skip


def one_input(data):
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        check_encoder(fdp)
    else:
        text = fdp.ConsumeBytes(fdp.remaining_bytes())
        check_reader(text, len(text) // 2)


if __name__ == "__main__":
    atheris.instrument_all()
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
