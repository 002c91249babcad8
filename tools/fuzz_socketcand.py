"""Coverage-guided fuzzing of socketcand's command reader and frame encoder (atheris).

    .venv/bin/pip install -e '.[fuzz]'      # atheris (the test extra has it too, on Linux)
    .venv/bin/python tools/fuzz_socketcand.py -atheris_runs=2000000        # or -max_total_time=600

Not part of the test suite (the suite fuzzes the same code with hypothesis on a fixed budget).
The pure-Python twin is instrumented, so atheris steers by its coverage; every input also goes
through the compiled module and the two must agree. Invariants checked: the reader never
raises, never holds more than its bound, splits nothing differently when fed in two pieces,
and every SEND it hands out is a frame that can exist; the encoder's lines for any records it
is given parse back to the same frames.
"""
import os
import sys

from _atheris import atheris  # tools/_atheris.py: one line when it is missing

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cancorder._fast as fast  # noqa: E402

pure = fast.variant("pure").socketcand  # loaded by file name: instrumented below
compiled = fast.variant("compiled").socketcand
wire = fast.variant("compiled").wire

LIMIT = 96


def check_reader(data, cut):
    results = []
    for module in (pure, compiled):
        whole = module.CommandReader(max_length=LIMIT)
        items = whole.feed(data)
        assert whole.pending <= LIMIT
        split = module.CommandReader(max_length=LIMIT)
        parts = split.feed(data[:cut]) + split.feed(data[cut:])
        assert split.pending <= LIMIT
        assert [x for x in parts if x[0] != module.ERROR] == \
            [x for x in items if x[0] != module.ERROR]
        for item in items:
            if item[0] == module.SEND:
                _, can_id, flags, payload = item
                assert can_id <= (0x1FFFFFFF if flags & 1 else 0x7FF)
                assert len(payload) <= 8 or (flags & 2 and len(payload) in wire.FD_LENGTHS)
            elif item[0] == module.ERROR:
                assert "<" not in item[1] and ">" not in item[1]
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
    out = [m.FrameEncoder().encode(records) for m in (pure, compiled)]
    assert out[0] == out[1]
    lines = out[0][1].split(b">")[:-1]
    assert len(lines) == len(frames)
    for line, (micros, can_id, flags, payload) in zip(lines, frames):
        parts = line.split(b" ")
        assert parts[1] == (b"fdframe" if flags & 2 else b"frame")
        assert int(parts[2], 16) == can_id and len(parts[2]) == (8 if flags & 1 else 3)
        sec, usec = parts[3].split(b".")
        assert int(sec) * 1000000 + int(usec) == micros
        assert bytes.fromhex(parts[4].decode()) == payload


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
