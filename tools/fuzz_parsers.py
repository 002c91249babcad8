"""Fuzz the compiled parsers with libFuzzer (atheris), checking each against its pure twin.

The suite runs a fixed, small hypothesis budget (tests/_fast/test_twins_fuzz.py); this runs as long as
you like, outside CI, with coverage guidance:

    .venv/bin/pip install -e '.[fuzz]'           # atheris
    .venv/bin/python tools/fuzz_parsers.py slcan -max_total_time=600
    .venv/bin/python tools/fuzz_parsers.py wire -runs=2000000 corpus/wire

Targets: ``slcan`` (SlcanParser, the input split into reads where the fuzzer says), ``wire``
(StreamDecoder, likewise split), ``packer`` (Packer on Messages built from the input: ids and
timestamps anywhere, NaN and infinities included), ``logfile`` (CandumpParser, the candump log
reader of replay, likewise split; and CandumpEncoder on the same bytes taken as records). A crash, an exception out of a parser, or any
difference from the pure twin stops the run with the input that caused it (libFuzzer writes it to
``crash-*``; run the script with that file as the argument to replay it).
"""
import struct
import sys
import types

from _atheris import atheris  # tools/_atheris.py: one line when it is missing

# Coverage comes from the pure twin (Python bytecode atheris can instrument): the same body
# as the compiled one, so what is new to one is new to the other.
import cancorder._fast as fast_package  # noqa: E402

COMPILED = fast_package.variant("compiled")
PURE = fast_package.variant("pure")
for _module in vars(PURE).values():  # the twins are loaded by path: instrument them by hand
    if isinstance(_module, types.ModuleType):
        for _value in list(vars(_module).values()):
            if isinstance(_value, type):
                for _name, _member in list(vars(_value).items()):
                    if isinstance(_member, types.FunctionType):
                        setattr(_value, _name, atheris.instrument_func(_member))
            elif isinstance(_value, types.FunctionType) and _value.__module__ == _module.__name__:
                setattr(_module, _value.__name__, atheris.instrument_func(_value))


def _split(data, fdp):
    """The bytes after the fuzzer's own choices, cut into reads at positions it chooses."""
    cuts = sorted({fdp.ConsumeIntInRange(0, 255) for _ in range(fdp.ConsumeIntInRange(0, 6))})
    rest = fdp.ConsumeBytes(fdp.remaining_bytes())
    points = [0] + [cut for cut in cuts if cut < len(rest)] + [len(rest)]
    return [rest[a:b] for a, b in zip(points, points[1:])]


def _slcan(fast, reads, adapter_time):
    parser = fast.slcan.SlcanParser(adapter_time=adapter_time)
    out = b"".join(parser.feed(read, 1_700_000_000_000_000 + k) for k, read in enumerate(reads))
    return out, parser.frames, parser.remote, parser.garbage, parser.bell, parser.replies, \
        parser.pending


def _wire(fast, reads):
    decoder = fast.wire.StreamDecoder()
    seen = []
    try:
        for read in reads:
            seen.append(decoder.feed(read))
        decoder.finish()
    except fast.wire.WireFormatError as exc:
        seen.append((str(exc), exc.offset, exc.data, exc.frames))
    return seen, decoder.offset, decoder.frames


def _messages(fdp):
    messages = []
    for _ in range(fdp.ConsumeIntInRange(0, 8)):
        flags = fdp.ConsumeIntInRange(0, 63)
        messages.append(types.SimpleNamespace(
            arbitration_id=fdp.ConsumeIntInRange(-(1 << 70), 1 << 70)
            if flags & 32 else fdp.ConsumeIntInRange(0, 0x1FFFFFFF),
            is_extended_id=bool(flags & 1), is_fd=bool(flags & 2), bitrate_switch=bool(flags & 4),
            error_state_indicator=bool(flags & 8), is_remote_frame=bool(flags & 16),
            is_error_frame=False, data=fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 65)),
            timestamp=struct.unpack("<d", fdp.ConsumeBytes(8).ljust(8, b"\0"))[0]))
    return messages


def _packer(fast, messages):
    packer = fast.wire.Packer()
    out = packer.pack(messages)  # must not raise, whatever the messages hold
    return out, packer.packed, packer.remote, packer.error, packer.invalid


def _logfile(fast, reads):
    parser = fast.logfile.CandumpParser()
    out = [(parser.feed(read), list(parser.runs)) for read in reads]
    out.append((parser.finish(), list(parser.runs)))  # must not raise: see error_reason
    encoder = fast.logfile.CandumpEncoder()
    try:
        lines = encoder.encode(b"".join(reads))
    except ValueError as exc:  # records cut short: both twins must say the same
        lines = str(exc)
    return out, parser.line, parser.frames, parser.remote, parser.error, parser.error_reason, \
        parser.error_line, lines, encoder.frames


def one_input(data, target):
    fdp = atheris.FuzzedDataProvider(data)
    if target == "slcan":
        adapter_time = fdp.ConsumeBool()
        reads = _split(data, fdp)
        got, want = _slcan(COMPILED, reads, adapter_time), _slcan(PURE, reads, adapter_time)
        whole = _slcan(COMPILED, [b"".join(reads)], adapter_time)
        if adapter_time is False and whole[1:] != got[1:]:
            raise AssertionError(f"the split changed the counters: {whole[1:]} != {got[1:]}")
    elif target == "wire":
        reads = _split(data, fdp)
        got, want = _wire(COMPILED, reads), _wire(PURE, reads)
    elif target == "logfile":
        reads = _split(data, fdp)
        got, want = _logfile(COMPILED, reads), _logfile(PURE, reads)
    else:
        messages = _messages(fdp)
        got, want = _packer(COMPILED, messages), _packer(PURE, messages)
    if got != want:
        raise AssertionError(f"compiled and pure disagree:\n{got!r}\n{want!r}")


def main():
    targets = ("slcan", "wire", "packer", "logfile")
    if len(sys.argv) < 2 or sys.argv[1] not in targets:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(targets)}}} [libFuzzer options]")
    target = sys.argv.pop(1)
    atheris.Setup(sys.argv, lambda data: one_input(data, target))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
