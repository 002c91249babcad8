"""cancorder's SLCAN source: the parser on both variants, and the source against the emulator."""
import threading
import time

import can
import pytest

from tests.emulators.slcan_adapter import SlcanEmulator, build_lines, slcan_line
from tests.helpers import StreamClient

NOW = 1_700_000_000_000_000


def parse_all(fast, data, now=NOW, **kwargs):
    parser = fast.slcan.SlcanParser(**kwargs)
    return parser, fast.wire.StreamDecoder().feed(parser.feed(data, now))


def test_every_line_type(fast):
    data = (b"t1232AABB\r"                      # 11-bit
            b"T18DAF1103010203\r"               # 29-bit
            b"r1230\r" b"R1234567F4\r"          # remote: counted, not packed
            b"d7E89000102030405060708090A0B\r"  # FD, DLC 9 = 12 bytes
            b"D1ABCDEF0F" + b"EE" * 64 + b"\r"  # FD 29-bit, 64 bytes
            b"b1000\r"                          # FD+BRS, 0 bytes
            b"B00000001D" + b"01" * 32 + b"\r"  # FD+BRS 29-bit, DLC D = 32 bytes
            b"t0000\r")
    parser, frames = parse_all(fast, data)
    assert frames == [
        (NOW, 0x123, 0, b"\xaa\xbb"),
        (NOW, 0x18DAF110, 1, b"\x01\x02\x03"),
        (NOW, 0x7E8, 2, bytes(range(12))),
        (NOW, 0x1ABCDEF0, 3, b"\xee" * 64),
        (NOW, 0x100, 6, b""),
        (NOW, 0x1, 7, b"\x01" * 32),
        (NOW, 0x000, 0, b""),
    ]
    assert (parser.frames, parser.remote, parser.garbage, parser.bell) == (7, 2, 0, 0)


def test_same_frames_as_python_can_lines(fast):
    import random

    rng = random.Random(3)
    msgs = []
    for _ in range(500):
        ext, fd = rng.random() < 0.5, rng.random() < 0.4
        size = rng.choice((0, 3, 8, 12, 20, 48, 64)) if fd else rng.randrange(9)
        msgs.append(can.Message(arbitration_id=rng.getrandbits(29 if ext else 11),
                                is_extended_id=ext, is_fd=fd, bitrate_switch=fd and rng.random() < .5,
                                data=rng.randbytes(size)))
    _, frames = parse_all(fast, b"".join(slcan_line(m) for m in msgs))
    assert [(f[1], f[2], f[3]) for f in frames] == [
        (m.arbitration_id, int(m.is_extended_id) | 2 * m.is_fd | 4 * m.bitrate_switch,
         bytes(m.data)) for m in msgs]


def test_chunk_boundaries_everywhere(fast):
    data = b"t1232AABB\rT18DAF1103010203\r\ab1000\rzZ\rd7E89000102030405060708090A0B\r"
    _, whole = parse_all(fast, data)
    assert len(whole) == 4
    for cut1 in range(len(data)):
        for cut2 in range(cut1, len(data) + 1, 7):
            parser = fast.slcan.SlcanParser()
            out = b"".join(parser.feed(part, NOW) for part in
                           (data[:cut1], data[cut1:cut2], data[cut2:]))
            assert fast.wire.StreamDecoder().feed(out) == whole
            assert parser.bell == 1 and parser.garbage == 0 and parser.pending == 0


def test_adapter_millisecond_timestamps(fast):
    parser = fast.slcan.SlcanParser()
    decode = fast.wire.StreamDecoder().feed

    def read(line, at):
        return decode(parser.feed(line, NOW + at))[0][0] - NOW

    # the first frame anchors the adapter clock (1000 ms) at the read time...
    assert read(b"t1001AA03E8\r", 0) == 0
    # ...later ones keep the adapter's own spacing, not the read time
    assert read(b"t1001BBEA56\r", 58_995_000) == 58_990_000  # 59990 ms
    # across the minute wrap: 59990 ms -> 10 ms is 20 ms later
    assert read(b"t1001CC000A\r", 59_015_000) == 59_010_000
    assert read(b"t1001DD00C8\r", 59_230_000) == 59_200_000
    # after more than a minute of silence the wrap count is unknown: re-anchored
    assert read(b"t1001EE012C\r", 200_000_000) == 200_000_000
    # --timestamps host: the adapter clock is ignored
    host = fast.slcan.SlcanParser(adapter_time=False)
    assert decode(host.feed(b"t10011103E8\r", NOW + 5))[0][0] == NOW + 5


@pytest.mark.parametrize("line", [
    b"x1232AABB", b"t12", b"t1239", b"t12G1AA", b"t1232AAB", b"t1232AABBC", b"t8001AA",
    b"T200000001AA", b"t1231ZZ", b"d123FAA", b"t1231AA12G4", b"\x00\xff\xfe", b"r12",
])
def test_garbage_is_counted_and_skipped(fast, line):
    parser, frames = parse_all(fast, b"t1111AA\r" + line + b"\rt2221BB\r")
    assert [f[1] for f in frames] == [0x111, 0x222]
    assert parser.garbage == 1
    assert parser.last_garbage == line[:40]


def test_endless_line_is_dropped_not_buffered(fast):
    parser = fast.slcan.SlcanParser()
    assert parser.feed(b"x" * 1000, NOW) == b""
    assert parser.garbage == 1 and parser.pending == 0
    out = parser.feed(b"\rt1231AA\r", NOW)
    assert fast.wire.StreamDecoder().feed(out)[0][1] == 0x123


def test_filters(fast):
    rules = [(0x123, 0x7FF, None, False), (0x18DA0000, 0x1FFF0000, True, False)]
    parser, frames = parse_all(fast, b"t1231AA\rt1241AA\rT18DAF1100\rT18DB33F10\r",
                               record_filter=fast.wire.RecordFilter(rules))
    assert [f[1] for f in frames] == [0x123, 0x18DAF110]
    assert parser.filtered == 2


def test_compiled_and_pure_identical_on_random_input():
    import random

    import cancorder._fast as fast_package

    try:
        variants = [fast_package.variant("compiled"), fast_package.variant("pure")]
    except ImportError as exc:
        pytest.skip(str(exc))
    rng = random.Random(11)
    alphabet = b"tTrRdDbB0123456789ABCDEFabcdefxz\r\r\r\a"
    data = bytes(rng.choice(alphabet) for _ in range(50000))
    results = []
    for v in variants:
        parser = v.slcan.SlcanParser()
        out = b"".join(parser.feed(data[i:i + 777], NOW + i) for i in range(0, len(data), 777))
        results.append((out, parser.frames, parser.remote, parser.garbage, parser.bell))
    assert results[0] == results[1]


# ---- the source against the emulator ----

@pytest.mark.parametrize("bitrate", [10000, 20000, 50000, 100000, 125000, 250000, 500000,
                                     750000, 1000000, 83300])
def test_setup_commands_match_python_can(bitrate):
    from cancorder.sources.slcan import SlcanSource

    def normalise(commands):  # python-can sends an empty command and "O" twice
        out = []
        for c in commands:
            if c and (not out or out[-1] != c):
                out.append(c)
        return out

    ours, theirs = SlcanEmulator(), SlcanEmulator()
    try:
        bus = can.Bus(interface="slcan", channel=theirs.url, bitrate=bitrate, sleep_after_open=0)
        theirs.wait_open()
        bus.shutdown()
        source = SlcanSource(ours.url, bitrate=bitrate)
        source.open()
        ours.wait_open()
        source.close()
        deadline = time.monotonic() + 5
        while ours.commands[-1:] != ["C"] and time.monotonic() < deadline:
            time.sleep(0.01)
        deadline = time.monotonic() + 5
        while theirs.commands[-1:] != ["C"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert normalise(ours.commands) == normalise(theirs.commands)
        assert ours.commands[1] == SlcanSource.__init__.__globals__["BITRATE_COMMANDS"][bitrate]
    finally:
        ours.close()
        theirs.close()


def test_listen_only_and_register_timing():
    from cancorder.sources.slcan import SlcanSource

    assert SlcanSource("COM8", listen_only=True).setup == ["C", "S6", "L"]
    assert SlcanSource("COM8", options={"btr": "031c"}).setup == ["C", "s031C", "O"]
    source = SlcanSource("/dev/ttyUSB0@230400")
    assert (source.port_name, source.baudrate) == ("/dev/ttyUSB0", 230400)


@pytest.mark.parametrize("kwargs, message", [
    ({"bitrate": 800000}, "--bitrate 800000 is not possible on slcan"),
    ({"data_bitrate": 4000000}, "--data-bitrate 4000000 is not possible"),
    ({"options": {"btr": "31C"}}, "expected 4 hex digits"),
    ({"options": {"poll_interval": 1}}, "slcan_backend=python-can"),
])
def test_bad_settings(kwargs, message):
    from cancorder.errors import UsageError
    from cancorder.sources.slcan import SlcanSource

    with pytest.raises(UsageError, match=message):
        SlcanSource("socket://127.0.0.1:1", **kwargs)


@pytest.mark.serial
def test_serve_30000_frames_per_second_every_frame_intact(cancorder_process, slcan_emulator):
    """A paced stream at 30,000 frames/s for 3 s through serve: nothing lost or altered."""
    proc = cancorder_process("serve", "-i", "slcan", "-c", slcan_emulator.url, "--no-zeroconf",
                             "-b", "1000000")
    client = StreamClient(proc.port())
    proc.wait_for("connected")
    count, rate = 90000, 30000
    lines = build_lines(count)
    slcan_emulator.wait_open()
    start = time.monotonic()
    for k in range(0, count, 300):  # 100 writes a second
        slcan_emulator.send_lines(b"".join(lines[k:k + 300]))
        delay = start + (k + 300) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    frames = client.wait_frames(count, timeout=30)
    assert len(frames) == count
    assert all(f[1] == i % 0x20000000 and f[2] == 1 and f[3] == i.to_bytes(8, "big")
               for i, f in enumerate(frames))
    assert proc.terminate() == 0
    assert f"frames in {count:,}, out {count:,}" in proc.log


def test_garbage_on_the_wire_warns_and_keeps_serving(cancorder_process, slcan_emulator):
    proc = cancorder_process("serve", "-i", "slcan", "-c", slcan_emulator.url, "--no-zeroconf")
    client = StreamClient(proc.port())
    proc.wait_for("connected")
    slcan_emulator.send_lines(b"t1231AA\r" + b"#$%!\r" * 5 + b"\a" + b"t1241BB\r")
    frames = client.wait_frames(2)
    assert [f[1] for f in frames] == [0x123, 0x124]
    proc.wait_for(r"5 unreadable lines skipped so far \(last: b'#\$%!'\); 1 error replies")
    assert proc.terminate() == 0
    assert "garbage 5" in proc.log


def test_python_can_backend_still_available(cancorder_process, slcan_emulator):
    proc = cancorder_process("serve", "-i", "slcan", "-c", slcan_emulator.url, "--no-zeroconf",
                             "--opt", "slcan_backend=python-can")
    client = StreamClient(proc.port())
    proc.wait_for("connected")
    slcan_emulator.send_messages([can.Message(arbitration_id=0x321, is_extended_id=False,
                                              data=b"\x01")])
    assert client.wait_frames(1)[0][1] == 0x321
    assert "" in slcan_emulator.commands  # python-can's empty command: its backend ran
    assert proc.terminate() == 0


# ---- lines that are not valid SLCAN, however they arrive (issue 11) ----

def feed_all(parser, *reads, now_us=1_700_000_000_000_000):
    return b"".join(parser.feed(read, now_us) for read in reads)


@pytest.mark.parametrize("adapter_time", [True, False], ids=["adapter", "host"])
def test_the_stamp_is_checked_even_when_host_time_is_used(fast, adapter_time):
    parser = fast.slcan.SlcanParser(adapter_time=adapter_time)
    assert feed_all(parser, b"t1231AAZZZZ\r", b"t1231AA12G4\r") == b""
    assert parser.garbage == 2 and parser.frames == 0
    assert feed_all(parser, b"t1231AA1234\r") != b""
    assert parser.frames == 1


def test_stamps_above_59999_are_refused(fast):
    parser = fast.slcan.SlcanParser(adapter_time=True)
    assert feed_all(parser, b"t1231AAEA60\r", b"t1231AAFFFF\r") == b""
    assert parser.garbage == 2
    assert feed_all(parser, b"t1231AAEA5F\r") != b""  # 59,999 ms: the last of the minute


def test_reply_lines_are_counted(fast):
    parser = fast.slcan.SlcanParser()
    assert feed_all(parser, b"\rz\rZ\rF00\rV1013\rv1013\rN1234\r") == b""
    assert parser.replies == 7 and parser.garbage == 0 and parser.frames == 0


def test_an_overlong_line_is_junk_up_to_its_cr_however_the_reads_split_it(fast):
    """200 bytes of junk and then `t1230` in a later read, without a CR between them, are one
    junk line: the tail is not a fresh frame. Split anywhere, the result is the same."""
    stream = (b"t1230\r" + b"A" * 200 + b"t1230\r" + b"t4561AA\r" + b"N" + b"B" * 170
              + b"\a" + b"T000000012BEEF\r" + b"C" * 400 + b"\r" + b"t7FF0\r")
    whole = fast.slcan.SlcanParser(adapter_time=False)
    expected = whole.feed(stream, 10 ** 15)
    assert [frame[1] for frame in fast.wire.StreamDecoder().feed(expected)] == [
        0x123, 0x456, 0x00000001, 0x7FF]
    counts = (whole.frames, whole.garbage, whole.bell, whole.replies, whole.pending)
    assert counts == (4, 3, 1, 0, 0)
    for cut in range(len(stream) + 1):
        for second in (cut, (cut + len(stream)) // 2):
            parser = fast.slcan.SlcanParser(adapter_time=False)
            got = feed_all(parser, stream[:cut], stream[cut:second], stream[second:],
                           now_us=10 ** 15)
            assert got == expected, (cut, second)
            assert (parser.frames, parser.garbage, parser.bell, parser.replies,
                    parser.pending) == counts, (cut, second)


# ---- a port that is not an SLCAN adapter (issue 11) ----

class _SilentPort:
    """A serial port with nothing SLCAN behind it: accepts, reads, never answers."""

    def __init__(self, answer=b""):
        import socket as socket_module

        self.listener = socket_module.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.listener.getsockname()[1]}"
        self.answer = answer
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.conns.append(conn)
        if self.answer:
            conn.sendall(self.answer)

    def close(self):
        self.listener.close()
        for conn in self.conns:
            conn.close()


def _read_for(source, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        source.read(0.05)


@pytest.mark.parametrize("answer", [b"", b"$GPGGA,123519,4807.038,N*47\r\n" * 3],
                         ids=["silent", "a GPS"])
def test_a_port_that_is_not_slcan_is_named_once(monkeypatch, caplog, answer):
    import cancorder.sources.slcan as slcan_source

    monkeypatch.setattr(slcan_source, "NOT_SLCAN_AFTER", 0.5)
    port = _SilentPort(answer)
    source = slcan_source.SlcanSource(port.url)
    try:
        with caplog.at_level("WARNING", logger="cancorder.source"):
            source.open()
            _read_for(source, 1.5)
        said = [r.getMessage() for r in caplog.records if "no SLCAN reply" in r.getMessage()]
        assert said == [f"{port.url}: no SLCAN reply and no frame in 0.5 s: is it an SLCAN "
                        "adapter (CANable, USBtin, LAWICEL)? An adapter answers every setup "
                        "command; if this one does not, a quiet bus alone would explain the "
                        "silence, and all may be well"]
    finally:
        source.close()
        port.close()


def test_a_real_adapter_on_a_quiet_bus_is_not_suspected(monkeypatch, caplog, slcan_emulator):
    import cancorder.sources.slcan as slcan_source

    monkeypatch.setattr(slcan_source, "NOT_SLCAN_AFTER", 0.5)
    source = slcan_source.SlcanSource(slcan_emulator.url)
    try:
        with caplog.at_level("WARNING", logger="cancorder.source"):
            source.open()
            _read_for(source, 1.5)  # no frame at all: only the answers to the setup commands
        assert not [r for r in caplog.records if "no SLCAN reply" in r.getMessage()]
        assert source.parser.replies >= 2
    finally:
        source.close()


@pytest.mark.parametrize("pause", [0.0, 0.003])
def test_source_line_by_line_every_frame_in_order(slcan_emulator, pause):
    """An adapter writing one line per write, back to back (the source gathers a window per read
    when the link is busy) or 3 ms apart (each line read at once): nothing lost, split or
    reordered, and one read returns many frames only when they came back to back."""
    from cancorder._fast import wire
    from cancorder.sources.slcan import SlcanSource

    count = 3000 if pause == 0.0 else 60
    lines = build_lines(count)
    source = SlcanSource(slcan_emulator.url)
    source.open()
    try:
        slcan_emulator.wait_open()

        def write():
            for line in lines:
                slcan_emulator.send_lines(line)
                if pause:
                    time.sleep(pause)

        import threading

        writer = threading.Thread(target=write)
        writer.start()
        decoder = wire.StreamDecoder()
        frames, reads = [], []
        deadline = time.monotonic() + 60
        while len(frames) < count and time.monotonic() < deadline:
            got = decoder.feed(source.read(0.1))
            if got:
                reads.append(len(got))
                frames.extend(got)
        writer.join(10)
    finally:
        source.close()
    assert [f[1] for f in frames] == [i % 0x20000000 for i in range(count)]
    assert all(f[3] == i.to_bytes(8, "big") for i, f in enumerate(frames))
    assert source.counters().frames == count
    if pause == 0.0:
        assert len(reads) < count  # gathered: fewer reads than lines


def test_transmit_waits_for_the_adapters_answer(slcan_emulator):
    """send returns once the adapter said z/Z; its BEL is a TransmitError; a CAN FD frame on
    a bus opened without --fd never reaches it."""
    from cancorder._fast.wire import FLAG_FD
    from cancorder.errors import TransmitError
    from cancorder.sources.slcan import SlcanSource
    from tests.helpers import wait_until

    source = SlcanSource(slcan_emulator.url)
    source.open()
    stop = threading.Event()

    def pump():  # the bus's source thread: it parses the answers
        while not stop.is_set():
            source.read(0.05)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: source.parser.replies >= len(source.setup))
        source.send(0x123, 0, b"\x01")
        slcan_emulator.refuse_transmits = True
        with pytest.raises(TransmitError, match=r"the adapter refused the frame \(it answered "
                                                r"BEL"):
            source.send(0x123, 0, b"\x02")
        with pytest.raises(TransmitError, match=r"a CAN FD frame \(12 bytes\) on a bus not "
                                                r"opened in CAN FD mode \(serve it with --fd\)"):
            source.send(0x123, FLAG_FD, bytes(12))
    finally:
        stop.set()
        thread.join(5)
        source.close()
    assert [c for c in slcan_emulator.commands if c[:1] in "tdb"] == ["t123101", "t123102"]


@pytest.mark.parametrize("backend", [[], ["--opt", "slcan_backend=python-can"]])
def test_a_missing_device_is_said_once(tmp_path, capsys, backend):
    """No errno text twice, no path three times: one plain reason."""
    from cancorder import cli

    path = str(tmp_path / "ttyACM9")
    assert cli.main(["serve", "-i", "slcan", "-c", path, "--no-zeroconf", *backend]) == 1
    err = capsys.readouterr().err
    assert err == f"error: cannot open slcan channel {path}: no such device (is the adapter " \
                  "plugged in? cancorder detect lists what it finds)\n"
