"""`cancorder dump` end to end: a real `cancorder serve` on the SLCAN emulator (python-can +
pyserial), or a fake logger in the test when the bytes must be exact or broken."""
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import types

import can
import pytest

from cancorder._fast import wire
from tests.helpers import StreamClient, cancorder_env, free_port
from tests.test_formats import CANDUMP, FRAMES, PRETTY
from tests.netns import netns_available, run_in_netns, SETUP

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def message(can_id, data, ext=False, fd=False, brs=False):
    return can.Message(arbitration_id=can_id, is_extended_id=ext, is_fd=fd, bitrate_switch=brs,
                       data=data)


MESSAGES = [
    message(0x123, bytes.fromhex("01FF23456789ABCD")),
    message(0x000, b""),
    message(0x7FF, b"ABC"),
    message(0x18DAF110, b"\x02\x10\x03", ext=True),
    message(0x1FFFFFFF, bytes(8), ext=True),
    message(0x456, bytes(range(12)), fd=True),
    message(0x457, bytes(range(64)), fd=True, brs=True),
    message(0x0ABCDEF0, bytes(range(20, 40)), ext=True, fd=True, brs=True),
]


# ---- helpers ----

class DumpProcess:
    """``cancorder dump ARGS`` with its stdout collected line by line (stderr: ``.log``)."""

    def __init__(self, start, *args, env=None):
        self.process = start("dump", *args, env=env or cancorder_env(TZ="UTC"),
                             stdout=subprocess.PIPE)
        self.lines = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self.process.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    @property
    def log(self):
        return self.process.log

    def wait_for(self, pattern, timeout=20.0):
        return self.process.wait_for(pattern, timeout)

    def wait_lines(self, count, timeout=20.0):
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.lines) < count:
                if time.monotonic() > deadline or not self._thread.is_alive():
                    raise AssertionError(f"{len(self.lines)} of {count} lines; log:\n{self.log}")
                self._changed.wait(0.2)
        return list(self.lines)

    def wait(self, timeout=20.0):
        code = self.process.proc.wait(timeout)
        self._thread.join(5)
        self.process._reader.join(5)
        return code

    def terminate(self):
        code = self.process.terminate()
        self._thread.join(5)
        return code


class FakeLogger:
    """A logger in the test: sends ``data`` to each client (one at a time), then closes, or
    keeps the connection open until ``close()``."""

    def __init__(self, data, close=True):
        self.data = data
        self.close_after = close
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target = f"127.0.0.1:{self.port}"
        self.connections = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            conn.sendall(self.data)
            if self.close_after:
                conn.shutdown(socket.SHUT_WR)
                conn.settimeout(10)
                try:
                    conn.recv(1)  # until the client closes: no reset, every byte delivered
                except OSError:
                    pass
                conn.close()

    def send(self, data):
        for conn in self.connections:
            conn.sendall(data)

    def close(self):
        self.listener.close()
        for conn in self.connections:
            try:
                conn.close()
            except OSError:
                pass


@pytest.fixture
def fake_loggers():
    made = []

    def make(data, close=True):
        fake = FakeLogger(data, close)
        made.append(fake)
        return fake

    yield make
    for fake in made:
        fake.close()


@pytest.fixture
def logger(slcan_emulator, cancorder_process):
    """`cancorder serve` on the SLCAN emulator; ``clients(n)`` waits for n connected clients."""
    server = cancorder_process("serve", "-i", "slcan", "-c", slcan_emulator.url, "--no-zeroconf")
    port = server.port()
    slcan_emulator.wait_open()

    def clients(count):
        server.wait_for(rf"connected \({count} connected\)")

    return types.SimpleNamespace(emu=slcan_emulator, server=server, port=port,
                                 target=f"127.0.0.1:{port}", clients=clients)


@pytest.fixture
def dump(cancorder_process):
    def start(*args, env=None):
        return DumpProcess(cancorder_process, *args, env=env)

    return start


def expected_candump(frame, channel="can0"):
    """The can-utils log line, written out from its specification (lib.c, sprint_canframe)."""
    micros, can_id, flags, data = frame
    ident = "%08X" % can_id if flags & 1 else "%03X" % can_id
    if flags & 2:
        separator = "##%X" % ((1 if flags & 4 else 0) | (2 if flags & 8 else 0))
    else:
        separator = "#"
    return "(%d.%06d) %s %s%s%s" % (micros // 1000000, micros % 1000000, channel, ident,
                                    separator, data.hex().upper())


def expected_pretty(frame):
    micros, can_id, flags, data = frame
    clock = time.strftime("%H:%M:%S", time.gmtime(micros // 1000000))
    ident = "%08X" % can_id if flags & 1 else "%03X" % can_id
    names = " ".join(n for bit, n in ((2, "FD"), (4, "BRS"), (8, "ESI")) if flags & bit)
    hex_text = " ".join("%02X" % b for b in data).ljust(23)
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in data)
    return f"{clock}.{micros % 1000000:06d}  {ident:<8}  {names:<10}  {len(data):2d}  " \
           f"{hex_text}  |{text}|"


def same_frame(msg, frame, timestamp=True):
    micros, can_id, flags, data = frame
    assert msg.arbitration_id == can_id
    assert msg.is_extended_id == bool(flags & 1)
    assert bytes(msg.data) == data
    if timestamp:
        assert abs(msg.timestamp - micros / 1e6) < 2e-6, (msg.timestamp, micros)


def same_as_sent(frames, messages=MESSAGES):
    assert [(f[1], bool(f[2] & 1), bool(f[2] & 2), bool(f[2] & 4), f[3]) for f in frames] == [
        (m.arbitration_id, m.is_extended_id, m.is_fd, m.bitrate_switch, bytes(m.data))
        for m in messages]


def records(frames):
    return b"".join(wire.pack_frame(*frame) for frame in frames)


# Frames with exact, known bytes for the fake logger, and how each format shows them.
KNOWN, KNOWN_CANDUMP, KNOWN_PRETTY = FRAMES, CANDUMP, PRETTY


# ---- every format against a real `cancorder serve` ----

def test_candump_lines_are_exact_and_read_back_by_python_can(logger, dump, tmp_path):
    watcher = StreamClient(logger.port)
    run = dump(logger.target, "--format", "candump", "--count", str(len(MESSAGES)))
    run.wait_for("connected to 127.0.0.1")
    logger.clients(2)
    logger.emu.send_messages(MESSAGES)
    assert run.wait() == 0, run.log
    frames = watcher.wait_frames(len(MESSAGES))
    same_as_sent(frames)
    assert run.lines == [expected_candump(f) for f in frames]
    path = tmp_path / "dump.log"
    path.write_text("\n".join(run.lines) + "\n")
    back = list(can.CanutilsLogReader(str(path)))
    assert len(back) == len(frames)
    for msg, frame, sent in zip(back, frames, MESSAGES):
        same_frame(msg, frame)
        assert (msg.is_fd, msg.bitrate_switch) == (sent.is_fd, sent.bitrate_switch)
    assert re.search(r"8 frames; stopped: --count 8", run.log), run.log


def test_json_lines_against_serve(logger, dump):
    watcher = StreamClient(logger.port)
    run = dump(logger.target, "-f", "json", "-n", str(len(MESSAGES)), "--channel", "ecu")
    logger.clients(2)
    logger.emu.send_messages(MESSAGES)
    assert run.wait() == 0, run.log
    frames = watcher.wait_frames(len(MESSAGES))
    assert len(run.lines) == len(frames)
    for line, (micros, can_id, flags, data) in zip(run.lines, frames):
        obj = json.loads(line)
        assert obj == {"timestamp": pytest.approx(micros / 1e6, abs=1e-6), "timestamp_us": micros,
                       "channel": "ecu", "id": can_id, "extended": bool(flags & 1),
                       "fd": bool(flags & 2), "brs": bool(flags & 4), "esi": bool(flags & 8),
                       "length": len(data), "data": data.hex()}
        assert f'"timestamp": {micros // 1000000}.{micros % 1000000:06d},' in line


@pytest.mark.skipif(shutil.which("xxd") is None, reason="compares with xxd, which is missing")
def test_raw_is_what_nc_piped_into_xxd_shows(logger, dump):
    watcher = StreamClient(logger.port)
    run = dump(logger.target, "--format", "raw", "--count", str(len(MESSAGES)))
    logger.clients(2)
    logger.emu.send_messages(MESSAGES)
    assert run.wait() == 0, run.log
    watcher.wait_frames(len(MESSAGES))
    xxd = subprocess.run(["xxd"], input=bytes(watcher.raw), capture_output=True, check=True)
    assert "\n".join(run.lines) + "\n" == xxd.stdout.decode()


def test_pretty_is_plain_when_piped(logger, dump):
    watcher = StreamClient(logger.port)
    run = dump(logger.target, "--count", str(len(MESSAGES)))
    logger.clients(2)
    logger.emu.send_messages(MESSAGES)
    assert run.wait() == 0, run.log
    frames = watcher.wait_frames(len(MESSAGES))
    assert not any("\x1b" in line for line in run.lines)
    assert run.lines == [expected_pretty(f) for f in frames]


def test_pretty_on_a_terminal_is_coloured(cancorder_process, fake_loggers):
    fake = fake_loggers(records(KNOWN + KNOWN[:1]))
    master, slave = pty.openpty()
    try:
        proc = cancorder_process("dump", fake.target, stdout=slave,
                                 env=cancorder_env(TZ="UTC", TERM="xterm-256color",
                                                   COLUMNS="200"))
        os.close(slave)
        slave = None
        output = b""
        while True:
            ready = select.select([master], [], [], 20)[0]
            assert ready, "dump printed nothing on the terminal"
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end closed
                break
            if not chunk:
                break
            output += chunk
        assert proc.proc.wait(10) == 0, proc.log
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    lines = output.decode().replace("\r\n", "\n").splitlines()
    assert all("\x1b[" in line for line in lines)
    assert [ANSI.sub("", line) for line in lines] == KNOWN_PRETTY + KNOWN_PRETTY[:1]
    id_colour = [re.search(r"\.\d{6}  (\x1b\[[0-9;]*m)", line).group(1) for line in lines]
    assert id_colour[0] == id_colour[-1]  # the same id, the same colour
    assert len(set(id_colour[:5])) == 5


@pytest.mark.parametrize("fmt,expected", [
    ("candump", KNOWN_CANDUMP),
    ("pretty", KNOWN_PRETTY),
])
def test_exact_bytes_from_a_known_stream(dump, fake_loggers, fmt, expected):
    fake = fake_loggers(records(KNOWN))
    run = dump(fake.target, "--format", fmt)
    assert run.wait() == 0, run.log
    assert run.lines == expected
    assert "5 frames; stopped: the logger closed the connection" in run.log


# ---- recording with python-can's writers ----

RELATIVE_TIME = {".asc", ".blf", ".trc"}  # readers give times relative to the file's start


def check_recording(path, frames):
    """The file read back by python-can's reader holds exactly ``frames``."""
    suffix = os.path.splitext(path)[1]
    if suffix == ".txt":  # can.Printer output has no reader: check each line's id and bytes
        lines = open(path).read().splitlines()
        assert len(lines) == len(frames)
        for line, (_, can_id, flags, data) in zip(lines, frames):
            assert re.search(r"ID:\s+0*%x\b" % can_id, line, re.I), line
            assert " ".join("%02x" % b for b in data) in line
        return
    if suffix == ".trc":  # python-can's TRC writer has no CAN FD: dump leaves FD frames out
        frames = [frame for frame in frames if not frame[2] & 2]
    back = list(can.LogReader(str(path)))
    assert len(back) == len(frames), path
    start_back, start = back[0].timestamp, frames[0][0] / 1e6
    for msg, frame in zip(back, frames):
        same_frame(msg, frame, timestamp=suffix not in RELATIVE_TIME)
        if suffix in RELATIVE_TIME:
            assert abs((msg.timestamp - start_back) - (frame[0] / 1e6 - start)) < 2e-6, path
        if suffix != ".csv":  # python-can's CSV has no FD columns
            assert msg.is_fd == bool(frame[2] & 2), path
            assert msg.bitrate_switch == bool(frame[2] & 4), path


SUFFIXES = (".log", ".asc", ".blf", ".csv", ".trc", ".txt")


def test_sigterm_mid_stream_leaves_every_file_complete(logger, dump, tmp_path):
    watcher = StreamClient(logger.port)
    paths = [str(tmp_path / f"rec{suffix}") for suffix in SUFFIXES]
    run = dump(logger.target, "--format", "candump", *sum((["-o", p] for p in paths), []))
    logger.clients(2)
    sending = threading.Event()
    sending.set()

    def send():  # the bus keeps talking while dump is stopped
        i = 0
        while sending.is_set():
            logger.emu.send_messages([
                message(0x100 + (i + k) % 0x600, bytes([(i + k) % 256] * ((i + k) % 9)),
                        ext=(i + k) % 7 == 0, fd=(i + k) % 5 == 0) for k in range(20)])
            i += 20
            time.sleep(0.02)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        run.wait_lines(150)
        assert run.terminate() == 0, run.log
    finally:
        sending.clear()
        sender.join(5)
    recorded = re.search(r"recorded ([\d,]+) frames to", run.log)
    assert recorded, run.log
    count = int(recorded.group(1).replace(",", ""))
    frames = watcher.wait_frames(count)[:count]
    for path in paths:
        check_recording(path, frames)
    assert "stopped: SIGTERM" in run.log
    fd = sum(1 for frame in frames if frame[2] & 2)
    assert fd > 0
    assert (f"rec.trc: {fd:,} CAN FD frames not recorded (python-can's TRC writer has no CAN "
            "FD support; use .blf, .asc or .log)") in run.log
    assert f"rec.csv: {fd:,} CAN FD frames recorded without their FD/BRS/ESI flags" in run.log
    assert "not implemented" not in run.log  # python-can's own per-frame warning stays away
    lines = [expected_candump(f) for f in frames]
    last = len(run.lines) - 1
    if (run.lines != lines and 0 <= last < len(lines) and run.lines[:last] == lines[:last]
            and lines[last].startswith(run.lines[last])):
        # open defect (found 2026-12-08, two fresh-clone CI runs): stdout ended mid-line, exit 0,
        # after SIGTERM during heavy output; the files above are complete. Cause not found yet.
        pytest.xfail(f"stdout's last line cut short: {run.lines[-1]!r} of {lines[last]!r}; "
                     f"{len(run.lines)} of {len(lines)} lines, stdout reader still running: "
                     f"{run._thread.is_alive()}")
    assert run.lines == lines


def test_files_are_closed_when_the_logger_goes_away(logger, dump, tmp_path):
    watcher = StreamClient(logger.port)
    paths = [str(tmp_path / "gone.blf"), str(tmp_path / "gone.asc")]
    run = dump(logger.target, "-f", "candump", "-o", paths[0], "-o", paths[1])
    logger.clients(2)
    logger.emu.send_messages(MESSAGES)
    run.wait_lines(len(MESSAGES))
    assert logger.server.terminate() == 0
    assert run.wait() == 0, run.log
    assert "stopped: the logger closed the connection" in run.log
    frames = watcher.wait_frames(len(MESSAGES))
    for path in paths:
        check_recording(path, frames)


def test_unknown_extension_and_impossible_folder_fail_before_connecting(dump, tmp_path):
    run = dump("127.0.0.1:1", "-o", str(tmp_path / "x.pcap"))
    assert run.wait() == 2
    assert "cannot tell the format from the extension '.pcap'" in run.log
    (tmp_path / "file").write_text("")
    run = dump("127.0.0.1:1", "-o", str(tmp_path / "file" / "x.blf"))
    assert run.wait() == 2
    assert "file is a file, not a folder" in run.log
    # a missing folder is made (recordings go to logs/%Y%m%d/... as well)
    run = dump("127.0.0.1:1", "-o", str(tmp_path / "new" / "x.blf"))
    assert run.wait() == 1 and "connection refused" in run.log
    assert (tmp_path / "new").is_dir() and not list((tmp_path / "new").iterdir())


def test_mf4_through_asammdf(dump, fake_loggers, tmp_path):
    fake = fake_loggers(records(KNOWN))
    run = dump(fake.target, "-o", str(tmp_path / "x.mf4"))
    assert run.wait() == 0, run.log
    back = list(can.LogReader(str(tmp_path / "x.mf4")))
    assert [(m.arbitration_id, bytes(m.data)) for m in back] == [(f[1], f[3]) for f in KNOWN]


def test_mf4_without_asammdf_is_a_usage_error(monkeypatch, tmp_path):
    from cancorder.errors import UsageError
    from cancorder.logfiles.formats import log_format

    monkeypatch.setitem(sys.modules, "asammdf", None)  # import asammdf raises ImportError
    with pytest.raises(UsageError) as raised:
        log_format(str(tmp_path / "x.mf4"), "-o")
    # the pip of this very Python: a `make run` set-up leaves asammdf out (the mf4 extra)
    assert str(raised.value) == (f"-o {tmp_path / 'x.mf4'}: writing MF4 needs asammdf (install "
                                 f"it: {sys.executable} -m pip install asammdf), or record to "
                                 ".blf/.asc/.log instead")


# ---- what to show, and for how long ----

def test_filter_and_count(logger, dump):
    sent = [message(0x100, b"\x01"), message(0x123, b"\x02"), message(0x18DAF1AA, b"\x03", ext=True),
            message(0x523, b"\x04"), message(0x124, b"\x05"), message(0x18DAF155, b"\x06", ext=True),
            message(0x123, b"\x07"), message(0x18DB0000, b"\x08", ext=True), message(0x123, b"\x09")]
    run = dump(logger.target, "-f", "candump", "--filter", "123:7FF", "--filter",
               "18DAF100:1FFFFF00", "--count", "4")
    logger.clients(1)
    logger.emu.send_messages(sent)
    assert run.wait() == 0, run.log
    data = [bytes.fromhex(line.split("#")[1]) for line in run.lines]
    assert data == [b"\x02", b"\x03", b"\x06", b"\x07"]  # 0x523 differs in the top bits
    assert "4 frames (" in run.log and "received); stopped: --count 4" in run.log


def test_duration_stops_a_quiet_stream(logger, dump):
    started = time.monotonic()
    run = dump(logger.target, "--duration", "1")
    assert run.wait() == 0, run.log
    assert time.monotonic() - started >= 1.0
    assert "0 frames; stopped: --duration 1 s" in run.log


def test_stats_table_instead_of_lines(dump, fake_loggers):
    frames = [(1700000000000000 + i, 0x100 if i % 4 else 0x18DAF110, 0 if i % 4 else 1,
               bytes([i % 256, 0xAA])) for i in range(40)]
    fake = fake_loggers(records(frames))
    run = dump(fake.target, "--stats", "--count", "40",
               env=cancorder_env(TZ="UTC", COLUMNS="120"))
    assert run.wait() == 0, run.log
    text = "\n".join(run.lines)
    assert text.startswith("40 frames"), text
    assert re.search(r"│ 100\s+│\s+│\s+2 │\s+30 │.*│ 27 AA\s+│", text), text
    assert re.search(r"│ 18DAF110 │\s+│\s+2 │\s+10 │.*│ 24 AA\s+│", text), text
    assert not any(line.startswith("(") or "22:13" in line for line in run.lines)


def test_reconnect_after_the_server_restarts(slcan_emulator, cancorder_process, dump):
    # a port of its own: between the two servers another cancorder on the machine could take
    # the first free one from the 42420 default
    port = free_port()
    first = cancorder_process("serve", "-i", "slcan", "-c", slcan_emulator.url, "--no-zeroconf",
                              "-p", str(port))
    first.port()
    run = dump(f"127.0.0.1:{port}", "-f", "candump", "--reconnect")
    first.wait_for(r"connected \(1 connected\)")
    slcan_emulator.send_messages(MESSAGES[:3])
    run.wait_lines(3)
    assert first.terminate() == 0
    run.wait_for(r"the logger closed the connection; reconnecting to 127.0.0.1:%d" % port)
    time.sleep(1.0)  # refused a few times: the retries must not end the dump
    assert run.process.proc.poll() is None
    run.wait_for(r"connection refused by 127\.0\.0\.1:%d.*retrying with backoff" % port)
    second = cancorder_process("serve", "-i", "slcan", "-c", slcan_emulator.url,
                               "--no-zeroconf", "-p", str(port))
    second.port()
    run.wait_for("reconnected to 127.0.0.1:%d" % port)
    second.wait_for(r"connected \(1 connected\)")
    slcan_emulator.send_messages(MESSAGES[3:])
    lines = run.wait_lines(len(MESSAGES))
    assert run.terminate() == 0
    ids = [line.split()[2].split("#")[0] for line in lines]
    assert ids == ["%08X" % m.arbitration_id if m.is_extended_id else "%03X" % m.arbitration_id
                   for m in MESSAGES]


def test_output_closed_by_the_reader_ends_quietly(cancorder_process, fake_loggers):
    fake = fake_loggers(records(KNOWN), close=False)
    proc = cancorder_process("dump", fake.target, "-f", "candump",
                             env=cancorder_env(), stdout=subprocess.PIPE)
    assert proc.proc.stdout.readline().startswith("(1700000000.123456)")
    proc.proc.stdout.close()  # like `| head -1`
    time.sleep(0.2)
    fake.send(records(KNOWN * 200))
    assert proc.proc.wait(10) == 0, proc.log
    proc._reader.join(5)
    assert "Traceback" not in proc.log and "Exception ignored" not in proc.log
    assert "stopped: the output was closed" in proc.log


# ---- broken streams and unreachable loggers ----

GOOD = records(KNOWN[:2])
BAD_CASES = {
    "undefined flag bits": (
        GOOD + wire.pack_frame(1, 0x123, 0x10, b"\x01") + records(KNOWN[2:]),
        "undefined flag bits set (flags 0x10)",
        "00 00 00 00 00 00 00 01 00 00 01 23 10 01"),
    "classic length 9": (
        GOOD + bytes.fromhex("0000000000000001" "00000123" "00" "09") + bytes(9),
        "payload length 9 on a classic CAN frame (more than 8 bytes needs the FD flag)",
        "00 00 00 00 00 00 00 01 00 00 01 23 00 09"),
    "FD length 13": (
        GOOD + bytes.fromhex("0000000000000001" "00000123" "02" "0d") + bytes(13),
        "payload length 13 is not a CAN FD length (0-8, 12, 16, 20, 24, 32, 48, 64)",
        "00 00 00 00 00 00 00 01 00 00 01 23 02 0d"),
    "11-bit id out of range": (
        GOOD + wire.pack_frame(1, 0x800, 0, b""),
        "11-bit id 0x800 out of range (max 0x7ff; 29-bit ids need the EXT flag)",
        "00 00 00 00 00 00 00 01 00 00 08 00 00 00"),
}


@pytest.mark.parametrize("core", ["compiled", "pure"])
@pytest.mark.parametrize("case", list(BAD_CASES))
def test_malformed_stream_stops_with_the_offset_and_bytes(dump, fake_loggers, tmp_path, case,
                                                          core):
    data, reason, shown = BAD_CASES[case]
    fake = fake_loggers(data)
    path = str(tmp_path / "before.blf")
    env = cancorder_env(TZ="UTC", CANCORDER_PURE="1" if core == "pure" else "0")
    run = dump(fake.target, "-f", "candump", "-o", path, env=env)
    assert run.wait() == 3, run.log
    assert run.lines == KNOWN_CANDUMP[:2]  # what came before is shown, nothing after
    errors = [line for line in run.log.splitlines() if line.startswith("error:")]
    assert errors == [f"error: malformed stream at byte {len(GOOD)}: {reason} (bytes: {shown})"]
    assert "Traceback" not in run.log
    check_recording(path, KNOWN[:2])


@pytest.mark.parametrize("cut,received", [(10, 10), (17, 17)], ids=["in the header",
                                                                      "in the payload"])
def test_a_close_inside_a_record_is_reported_as_a_probable_lag_drop(dump, fake_loggers,
                                                                   tmp_path, cut, received):
    """A logger that drops a client for lag used to cut it anywhere: dump says what probably
    happened (not "malformed stream"), exits non-zero, and keeps every whole frame."""
    fake = fake_loggers(GOOD + wire.pack_frame(1, 0x123, 0, bytes(8))[:cut])
    path = str(tmp_path / "before.blf")
    run = dump(fake.target, "-f", "candump", "-o", path)
    assert run.wait() == 1, run.log
    assert run.lines == KNOWN_CANDUMP[:2]
    assert run.log.splitlines()[-1] == (
        f"error: the logger closed the connection in the middle of a record (stream byte "
        f"{len(GOOD)}, {received} bytes of it received): it probably dropped this client for "
        "lag (it was more than the logger's --client-buffer behind; that incomplete record is "
        "not recorded) (--reconnect keeps trying)")
    assert "malformed" not in run.log and "Traceback" not in run.log
    check_recording(path, KNOWN[:2])


def test_a_close_on_a_record_boundary_is_a_clean_end(dump, fake_loggers):
    fake = fake_loggers(GOOD)
    run = dump(fake.target, "-f", "candump")
    assert run.wait() == 0, run.log
    assert "2 frames; stopped: the logger closed the connection" in run.log


def test_a_connection_closed_without_a_byte_is_a_probable_refusal(dump, fake_loggers):
    fake = fake_loggers(b"")
    run = dump(fake.target)
    assert run.wait() == 1, run.log
    assert run.log.splitlines()[-1].startswith(
        "error: the logger closed the connection at once without sending a byte: it probably "
        "refused this client (a logger serves at most --max-clients clients")


def test_the_client_over_max_clients_is_told_it_was_refused(slcan_emulator, cancorder_process,
                                                           dump):
    server = cancorder_process("serve", "-i", "slcan", "-c", slcan_emulator.url,
                               "--no-zeroconf", "--max-clients", "1")
    port = server.port()
    first = StreamClient(port)
    server.wait_for(r"connected \(1 connected\)")
    try:
        run = dump(f"127.0.0.1:{port}", "-f", "candump")
        assert run.wait() == 1, run.log
        assert "probably refused this client" in run.log and "--max-clients" in run.log
        assert "0 frames; stopped" not in run.log
    finally:
        first.close()


def error_lines(log):
    return [line for line in log.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("greeting,said", [
    (b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
     "sent text, not ECUconnect records: 'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3' (another "
     "service on that port: check the port)"),
    (b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n",
     "answers in HTTP ('HTTP/1.1 408 Request Timeout'), not in ECUconnect records: a web server "
     "(a logger's --metrics port?), not a logger's port"),
    (b"220 mail.example.com ESMTP\r\n",  # shorter than a record header: used to hang
     "sent text, not ECUconnect records: '220 mail.example.com ESMTP'"),
], ids=["ssh banner", "http", "short banner"])
def test_another_protocol_is_named_not_called_a_malformed_stream(dump, fake_loggers, greeting,
                                                                 said):
    """Issue 22 item 12: dump to the wrong port said "undefined flag bits set (flags 0x53)"
    for an SSH banner, and hung on a greeting shorter than a record header."""
    fake = fake_loggers(greeting, close=False)  # a server keeps the connection open
    run = dump(fake.target, "-f", "candump")
    assert run.wait() == 3, run.log
    errors = error_lines(run.log)
    assert len(errors) == 1 and errors[0].startswith(f"error: {fake.target} {said}"), run.log
    assert "malformed" not in run.log and "Traceback" not in run.log and run.lines == []


def test_the_socketcand_port_of_a_logger_is_named(slcan_emulator, cancorder_process, dump):
    """The same logger's socketcand port greets with '< hi >' (six bytes, less than a record
    header: dump used to wait for the rest for ever)."""
    port = free_port()
    server = cancorder_process("serve", "-i", "slcan", "-c", slcan_emulator.url,
                               "--no-zeroconf", "--socketcand", f"127.0.0.1:{port}",
                               "--no-beacon")
    server.port()
    server.wait_for("socketcand serves")
    run = dump(f"127.0.0.1:{port}", "-f", "candump")
    assert run.wait(30) == 3, run.log
    errors = error_lines(run.log)
    assert len(errors) == 1, run.log
    assert errors[0].startswith(f"error: 127.0.0.1:{port} is a socketcand port (it greets with "
                                "'< hi >'), not an ECUconnect Logger's port: ")
    assert "ECUconnect port" in errors[0] and "Traceback" not in run.log


def test_a_silent_port_is_said_once_and_dump_keeps_waiting(dump, fake_loggers):
    """A port that accepts and says nothing (a --metrics port, any server waiting to be spoken
    to) used to look like a quiet bus for ever: after 5 s one line says so; a quiet bus is
    possible, so dump keeps waiting, and the frames that come later are shown."""
    fake = fake_loggers(b"", close=False)
    run = dump(fake.target, "-f", "candump")
    run.wait_for(r"connected to")
    started = time.monotonic()
    run.wait_for(r"not a byte in 5 s", timeout=15)
    assert 4.5 <= time.monotonic() - started < 10
    assert (f"connected to {fake.target}, but not a byte in 5 s: a quiet bus sends nothing, and "
            "neither does a port that is not a logger's") in run.log
    fake.send(GOOD)  # the bus was only quiet
    assert run.wait_lines(2) == KNOWN_CANDUMP[:2]
    time.sleep(6)
    assert run.log.count("not a byte in") == 1  # said once
    assert run.terminate() == 0, run.log


def test_filter_before_the_target(dump, fake_loggers):
    """Issue 22 item 14: --filter took several values and swallowed the target
    (`dump --filter 7E8:7FF HOST` was refused); one rule list per flag, in any order."""
    frames = [(1700000000000000 + i, can_id, 0, b"\x01") for i, can_id in
              enumerate((0x7E8, 0x123, 0x7E0, 0x7E8, 0x456))]
    data = b"".join(wire.pack_frame(*frame) for frame in frames)
    fake = fake_loggers(data)
    run = dump("--filter", "7E8:7FF", fake.target, "-f", "candump")
    assert run.wait() == 0, run.log
    assert run.lines == [expected_candump(frames[0]), expected_candump(frames[3])]
    run = dump("--filter", "7E0:7FF,456:7FF", "--filter", "123:7FF", fake.target, "-f",
               "candump")
    assert run.wait() == 0, run.log
    assert run.lines == [expected_candump(frame) for frame in frames if frame[1] != 0x7E8]


def test_connection_refused_is_one_line(dump):
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    run = dump(f"127.0.0.1:{port}")
    assert run.wait() == 1
    assert run.log.splitlines() == [
        f"error: connection refused by 127.0.0.1:{port}: no logger listens there (is it "
        "running? `cancorder dump` without a target looks for loggers on the network)"]


def test_connect_timeout_is_one_line(dump):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))  # the backlog is full: SYNs dropped
    try:
        run = dump(f"127.0.0.1:{port}", "--timeout", "1")
        assert run.wait() == 1
        assert run.log.splitlines() == [
            f"error: no answer from 127.0.0.1:{port} within 1 s (the host is off or a firewall "
            "drops the connection; --timeout waits longer)"]
    finally:
        filler.close()
        listener.close()


def test_unknown_host_is_one_line():
    why = netns_available()
    if why:
        pytest.skip(why)  # a name lookup outside a private namespace could leave the machine
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", SETUP, "sh", sys.executable, "-m", "cancorder", "dump",
         "no-such-logger.invalid:42420"], capture_output=True, text=True, timeout=60,
        env=cancorder_env())
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown host 'no-such-logger.invalid':")
    assert lines[0].endswith("(check the name, or give the logger's IP address)")


@pytest.mark.parametrize("target,message", [
    ("host:0", "the port must be a number from 1 to 65535"),
    ("host:http", "the port must be a number from 1 to 65535"),
    ("[::1", "an IPv6 address with a port is written [ADDRESS]:PORT"),
    (":42420", "the host is missing"),
])
def test_bad_target(dump, target, message):
    run = dump(target)
    assert run.wait() == 2
    assert message in run.log


def test_ipv6_target(dump, cancorder_process, slcan_emulator):
    server = cancorder_process("serve", "-i", "slcan", "-c", slcan_emulator.url, "--no-zeroconf",
                               "--bind", "::1")
    port = server.port()
    run = dump(f"[::1]:{port}", "-f", "candump", "-n", "1")
    server.wait_for(r"connected \(1 connected\)")
    slcan_emulator.send_messages(MESSAGES[:1])
    assert run.wait() == 0, run.log
    assert run.lines[0].endswith("can0 123#01FF23456789ABCD")


# ---- Zeroconf, in a private network namespace ----

@pytest.mark.serial  # dump asks Zeroconf for the ECUconnect port within 1.5 s: not beside other tests
def test_browse_and_connect_without_a_target():
    result = run_in_netns("tests/netns_dump_browse.py")
    port = result["port"]
    assert result["browse_code"] == 0, result
    listed = result["browse"].splitlines()
    assert len(listed) == 1, result
    assert listed[0].startswith("ECUconnect-Logger dump-browse  127.0.0.1")
    assert f"port {port}" in listed[0]
    for key in (f"port={port}", "process=cancorder serve", "interface=slcan", "bitrate=500000"):
        assert key in listed[0]
    assert result["dump_code"] == 0, result["dump_log"]
    assert len(result["dump_lines"]) == 3
    assert all(line.endswith("can0 321#C0FFEE") for line in result["dump_lines"])
    assert f"connected to 'ECUconnect-Logger dump-browse' (127.0.0.1:{port})" in result["dump_log"]
    loggers = [row for row in result["detect"] if row["kind"] == "logger"]
    assert len(loggers) == 1
    assert loggers[0]["name"] == "ECUconnect-Logger dump-browse"
    assert loggers[0]["command"] == f"cancorder dump 127.0.0.1:{port}"
    assert result["empty_browse_code"] == 1
    assert "no logger answered on _ecuconnect-log._tcp.local. within 1 s" in result["empty_log"]
    # issue 22 item 12: its socketcand port by mistake names the ECUconnect port, exit 3
    assert result["socketcand_code"] == 3, result["socketcand_log"]
    assert result["socketcand_log"].splitlines()[-1] == (
        "error: 127.0.0.1:29536 is a socketcand port (it greets with '< hi >'), not an "
        f"ECUconnect Logger's port: the ECUconnect port of this logger is {port} (cancorder "
        f"dump 127.0.0.1:{port})")


def test_no_file_is_left_when_the_logger_cannot_be_reached(dump, tmp_path):
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    run = dump(f"127.0.0.1:{port}", "-o", str(tmp_path / "never.blf"))
    assert run.wait() == 1
    assert not (tmp_path / "never.blf").exists()


def test_a_reset_connection_is_an_error_after_the_frames(dump, cancorder_process):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def reset_after_two_frames():
        conn, _ = listener.accept()
        conn.sendall(records(KNOWN[:2]))
        time.sleep(0.5)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()  # linger 0: a reset, like a logger that crashed

    thread = threading.Thread(target=reset_after_two_frames, daemon=True)
    thread.start()
    run = dump(f"127.0.0.1:{port}", "-f", "candump")
    try:
        assert run.wait() == 1, run.log
    finally:
        thread.join(5)
        listener.close()
    assert run.lines == KNOWN_CANDUMP[:2]
    assert run.log.splitlines()[-1] == (
        f"error: the connection to 127.0.0.1:{port} broke (Connection reset by peer) "
        "(--reconnect keeps trying)")


def test_ctrl_c_closes_the_recording_like_sigterm(dump, fake_loggers, tmp_path):
    fake = fake_loggers(records(KNOWN), close=False)
    paths = [str(tmp_path / "int.blf"), str(tmp_path / "int.log")]
    run = dump(fake.target, "-f", "candump", "-o", paths[0], "-o", paths[1])
    run.wait_lines(len(KNOWN))
    run.process.proc.send_signal(signal.SIGINT)
    assert run.wait() == 0, run.log
    assert "stopped: SIGINT" in run.log and "Traceback" not in run.log
    for path in paths:
        check_recording(path, KNOWN)


# ---- against mock-uds ----

def test_dump_records_a_whole_mock_uds_session(cancorder_process, dump, tmp_path):
    """mock-uds serves one seeded session; dump prints it as candump lines and records it to
    .blf and .asc; everything read back equals the simulator's own timeline for that seed."""
    from cancorder.uds.simulation import SimulationConfig, timeline
    from tests.uds_check import frames_from_timeline

    server = cancorder_process("mock-uds", "--no-zeroconf", "--speed", "50", "--no-loop",
                               "--seed", "77", "--blocks", "40")
    port = server.port()
    paths = [str(tmp_path / "uds.blf"), str(tmp_path / "uds.asc")]
    run = dump(f"127.0.0.1:{port}", "--format", "candump", "-o", paths[0], "-o", paths[1])
    assert run.wait(120) == 0, run.log  # the session ends, the logger closes, dump ends
    assert server.proc.wait(30) == 0, server.log
    expected = frames_from_timeline(timeline(SimulationConfig(seed=77, speed=50, blocks=40,
                                                              loop=False)))
    lines = tmp_path / "lines.log"
    lines.write_text("\n".join(run.lines) + "\n")
    for source in [str(lines)] + paths:
        back = list(can.LogReader(source))
        assert [(m.arbitration_id, bytes(m.data)) for m in back] == \
            [(f.can_id, f.data) for f in expected], source
        relative = [round((m.timestamp - back[0].timestamp) * 1e6) for m in back]
        assert relative == [f.t_us - expected[0].t_us for f in expected], source
    assert "the logger closed the connection" in run.log, run.log
    assert f"{len(expected):,} frames" in run.log, run.log


# ---- files: a full disk, records a format cannot hold, outputs checked first ----

#: runs cancorder with a limit on the size of every file it writes: a write past it fails with
#: EFBIG after writing what fits, as a write to a disk that fills up does (ENOSPC)
FILE_SIZE_LIMITED = [sys.executable, "-c",
                     "import resource, runpy, sys; limit = int(sys.argv.pop(1)); "
                     "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); "
                     "sys.argv[0] = 'cancorder'; runpy.run_module('cancorder', "
                     "run_name='__main__', alter_sys=True)"]


def many_frames(count):
    return [(1_700_000_000_000_000 + i * 1000, 0x100 + i % 0x600, 0, bytes([i % 256] * (i % 9)))
            for i in range(count)]


def recorded_counts(log):
    """{path: frames} from the "recorded ..." line (one count for all, or one per file)."""
    line = next(line for line in log.splitlines() if re.match(r"[\d:]+ recorded ", line))
    text = line.split(" recorded ", 1)[1]
    counts = {}
    for part in re.findall(r"([\d,]+) frames? to ((?:[^,]|, (?!\d))+)", text):
        for path in part[1].split(", "):
            counts[path] = int(part[0].replace(",", ""))
    return counts


def test_a_full_disk_leaves_every_file_readable_and_the_counts_true(cancorder_process,
                                                                    fake_loggers, tmp_path):
    frames = many_frames(3000)
    fake = fake_loggers(records(frames), close=False)
    paths = [str(tmp_path / f"full{suffix}") for suffix in (".log", ".csv", ".asc", ".blf")]
    proc = cancorder_process("dump", fake.target, "-f", "candump",
                             *sum((["-o", p] for p in paths), []),
                             command=FILE_SIZE_LIMITED + ["40000"], env=cancorder_env(TZ="UTC"))
    # the one recorder of --record and -o: one clear line, dumping goes on, what could not be
    # written is counted, and every file stays readable to its last whole frame
    proc.wait_for(r"recording stopped", timeout=30)
    assert proc.terminate() == 0, proc.log
    proc._reader.join(5)
    assert "Traceback" not in proc.log and "error:" not in proc.log, proc.log
    assert "could not be recorded" in proc.log, proc.log
    counts = recorded_counts(proc.log)
    assert set(counts) == set(paths), proc.log
    assert any(count < len(frames) for count in counts.values())
    for path in paths:
        if counts[path] == 0 and not os.path.exists(path):
            continue  # nothing reached the disk: no empty file is left behind
        back = list(can.LogReader(path))  # python-can reads each to its end: no cut line
        assert len(back) == counts[path], (path, proc.log)
        for msg, frame in zip(back, frames):
            same_frame(msg, frame, timestamp=not path.endswith((".asc", ".blf")))


def test_a_record_a_format_cannot_hold_is_counted_and_skipped(dump, fake_loggers, tmp_path):
    huge = ((1 << 64) - 1, 0x321, 0, b"\x01")
    frames = KNOWN[:2] + [huge] + KNOWN[2:4]
    fake = fake_loggers(records(frames))
    paths = [str(tmp_path / "x.blf"), str(tmp_path / "x.asc"), str(tmp_path / "x.log")]
    run = dump(fake.target, "-f", "candump", *sum((["-o", p] for p in paths), []))
    assert run.wait() == 0, run.log
    assert len(run.lines) == 5  # shown, and recorded where the format can hold it
    assert "Traceback" not in run.log and "error" not in run.log
    for path in paths[:2]:
        check_recording(path, KNOWN[:4])
        assert (f"{path}: 1 frame not recorded: their timestamps are beyond what "
                f"{path[-4:]} can store") in run.log
    assert len(list(can.LogReader(paths[2]))) == 5
    assert recorded_counts(run.log) == {paths[0]: 4, paths[1]: 4, paths[2]: 5}


@pytest.mark.parametrize("name,message", [
    ("x.blf.gz", "python-can cannot write .blf through gzip"),
    ("x.db.gz", "python-can cannot write .db through gzip"),
    ("x.v2.log.gz", "exactly two extensions"),
    ("folder.log", "that is a folder"),
    ("/proc/x.log", "cannot write the file"),
])
def test_an_output_that_cannot_be_written_fails_before_connecting(fake_loggers, dump, tmp_path,
                                                                  name, message):
    (tmp_path / "folder.log").mkdir()
    fake = fake_loggers(records(KNOWN))
    run = dump(fake.target, "-o", str(tmp_path / name))
    assert run.wait() == 2, run.log
    assert message in run.log
    assert "connected" not in run.log and not fake.connections  # the session is not lost


def test_db_and_trc_say_what_they_leave_out_and_count_what_they_hold(dump, fake_loggers,
                                                                     tmp_path):
    fake = fake_loggers(records(KNOWN))
    fd = sum(1 for frame in KNOWN if frame[2] & 2)
    assert 0 < fd < len(KNOWN)
    db, trc = str(tmp_path / "x.db"), str(tmp_path / "x.trc")
    run = dump(fake.target, "-o", db, "-o", trc)
    assert run.wait() == 0, run.log
    assert f"{db}: {fd} CAN FD frame" in run.log and "without their FD/BRS/ESI flags" in run.log
    assert f"{trc}: {fd} CAN FD frame" in run.log and "not recorded" in run.log
    counts = recorded_counts(run.log)
    assert counts == {db: len(KNOWN), trc: len(KNOWN) - fd}
    assert len(list(can.LogReader(trc))) == counts[trc]
    assert len(list(can.LogReader(db))) == counts[db]


def test_a_client_dropped_for_lag_sees_a_clean_end(slcan_emulator, cancorder_process, dump,
                                                   tmp_path):
    """The logger drops a dump that stopped reading (SIGSTOP): the stream it gets ends on a
    record boundary, so dump says "the logger closed the connection" (not "malformed") and its
    file holds every frame it printed."""
    from tests.emulators.slcan_adapter import build_lines

    server = cancorder_process("serve", "-i", "slcan", "-c", slcan_emulator.url,
                               "--no-zeroconf", "--client-buffer", "64K")
    port = server.port()
    slcan_emulator.wait_open()
    path = str(tmp_path / "lag.log")
    run = dump(f"127.0.0.1:{port}", "-f", "candump", "-o", path)
    server.wait_for(r"connected \(1 connected\)")
    run.process.proc.send_signal(signal.SIGSTOP)
    flooding = threading.Event()
    flooding.set()

    def flood():
        lines = b"".join(build_lines(2000))
        while flooding.is_set():
            slcan_emulator.send_lines(lines)

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    try:
        server.wait_for(r"dropped: [\d,]+ bytes .* behind", timeout=120)
    finally:
        flooding.clear()
        run.process.proc.send_signal(signal.SIGCONT)
        sender.join(10)
    assert run.wait(60) == 0, run.log[-2000:]
    assert "stopped: the logger closed the connection" in run.log
    assert "malformed" not in run.log and "middle of a record" not in run.log
    recorded = list(can.LogReader(path))
    assert len(recorded) == len(run.lines) > 0
