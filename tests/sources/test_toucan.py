"""`cancorder touCAN`: the ctypes binding and the subcommand, against a fake CAN API V3 library.

The fake (tests/fake_toucan/fake_uvcantou.c) is compiled here with `cc -shared -fPIC`; tests
that need it skip only when there is no C compiler.
"""
import ctypes
import logging
import ctypes.util
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import can
import pytest

from cancorder import errors
from cancorder._fast import wire
from cancorder.errors import SourceInitError, SourceLostError, UsageError
from tests import fake_toucan
from tests.fake_toucan import (BRS, ESI, FDF, RTR, XTD, FakeToucanControl,
                               FakeToucanLibrary)
from cancorder.sources import toucan
from cancorder.sources.base import SourceCounters
from tests.helpers import ROOT, StreamClient, cancorder_env


@pytest.fixture(scope="session")
def fake_library_path(tmp_path_factory):
    if fake_toucan.compiler() is None:
        pytest.skip("no C compiler (cc) to build the fake CAN API V3 library")
    return fake_toucan.build(str(tmp_path_factory.mktemp("fake_toucan")))


@pytest.fixture
def fake_lib(fake_library_path):
    """The fake loaded in this process, reset before and after the test."""
    lib = FakeToucanLibrary(fake_library_path)
    yield lib
    lib.reset()


@pytest.fixture
def control():
    # a short folder: a Unix socket path is limited to about 100 characters
    folder = tempfile.mkdtemp(prefix="toucan-")
    ctl = FakeToucanControl(folder)
    yield ctl
    ctl.close()
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
    os.rmdir(folder)


@pytest.fixture
def toucan_server(cancorder_process, fake_library_path, control):
    """Start `cancorder touCAN --library <fake> --no-zeroconf ARGS` driven by ``control``."""

    def start(*args, command="touCAN", env=None, **kwargs):
        extra = dict(control.env())
        extra.update(env or {})
        return cancorder_process(command, "--library", fake_library_path, "--no-zeroconf",
                                 *args, env=cancorder_env(**extra), **kwargs)

    return start


class RecordingHandler(logging.Handler):
    """What the sources log, as ``level: text`` lines."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append((record.levelname.lower(), record.getMessage()))

    def text(self):
        return "\n".join(f"{level}: {text}" for level, text in self.lines)


@pytest.fixture
def reporter():
    handler = RecordingHandler()
    logger = logging.getLogger("cancorder")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def connect(server):
    """A client of ``server``, once the server has logged it connected."""
    client = StreamClient(server.port())
    server.wait_for("connected")
    return client


def unix_offset():
    """Unix time minus CLOCK_MONOTONIC, in seconds (the same in every process)."""
    return time.time() - time.clock_gettime(time.CLOCK_MONOTONIC)


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "cancorder", *args], capture_output=True,
                          text=True, env=env or cancorder_env(), cwd=ROOT, timeout=60)


def assert_one_error_line(done, exit_code):
    lines = done.stderr.strip().splitlines()
    assert done.returncode == exit_code, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


# ---- the binding, in this process ----

def test_struct_layouts_match_the_c_compiler(fake_lib):
    assert ctypes.sizeof(toucan.CanMessage) == fake_lib.sizeof_message() == 88
    assert ctypes.sizeof(toucan.CanBitrate) == fake_lib.sizeof_bitrate() == 24
    assert ctypes.sizeof(toucan.CanSpeed) == fake_lib.sizeof_speed() == 24
    assert toucan.CanMessage.dlc.offset == fake_lib.offsetof_dlc() == 5
    assert toucan.CanMessage.data.offset == fake_lib.offsetof_data() == 6
    assert toucan.CanMessage.timestamp.offset == fake_lib.offsetof_timestamp() == 72
    for field, mask in (("xtd", toucan.TOUCAN_XTD), ("rtr", toucan.TOUCAN_RTR),
                        ("fdf", toucan.TOUCAN_FDF), ("brs", toucan.TOUCAN_BRS),
                        ("esi", toucan.TOUCAN_ESI), ("sts", toucan.TOUCAN_STS)):
        assert fake_lib.flag_byte(field.encode()) == mask, field


def test_a_layout_mismatch_is_refused_at_import(monkeypatch):
    monkeypatch.setattr(toucan, "_MESSAGE", struct.Struct("<IBB64sqq"))  # the padding forgotten
    with pytest.raises(errors.LayoutError, match="unpacked can_message_t is 86, not 88"):
        toucan._check_layout()


def test_every_function_is_declared(fake_library_path):
    lib = toucan.ToucanLibrary(fake_library_path)
    for name, (restype, argtypes) in toucan.SIGNATURES.items():
        function = getattr(lib, name)
        assert function is not None, name
        assert function.restype is restype and function.argtypes == argtypes, name


def test_a_library_without_the_api_is_refused():
    libc = ctypes.util.find_library("c")
    with pytest.raises(SourceInitError, match=r"is not a CAN API V3 library \(it lacks can_test"):
        toucan.ToucanLibrary(libc)


@pytest.mark.parametrize("bitrate,index", [(1000000, 0), (500000, -2), (250000, -3),
                                           (125000, -4), (100000, -5), (50000, -6),
                                           (20000, -7), (10000, -8)])
def test_every_preset_bitrate_starts_the_library_with_its_index(fake_lib, bitrate, index,
                                                               reporter):
    source = toucan.ToucanSource(bitrate=bitrate, library=fake_lib.path)
    source.open()
    try:
        assert fake_lib.last_bitrate_index() == index
        # the fake reports the speed its bit timing gives: the preset is the right one
        assert f"{bitrate / 1000:g} kbit/s, sample point" in reporter.text()
    finally:
        source.close()


def test_800k_is_refused_before_the_library_is_touched(fake_lib):
    with pytest.raises(UsageError, match="--bitrate 800000 is not supported by TouCAN"):
        toucan.ToucanSource(bitrate=800000, library=fake_lib.path)
    with pytest.raises(UsageError, match="--bitrate 83333 is not a TouCAN bit rate"):
        toucan.ToucanSource(bitrate=83333, library=fake_lib.path)
    assert fake_lib.calls("can_init") == 0 and fake_lib.calls("can_start") == 0
    assert toucan.BITRATE_PRESETS[800000] == -1  # the index exists; the adapter lacks it


@pytest.mark.parametrize("listen_only,error_frames,mode", [(False, False, 0x00),
                                                          (True, False, 0x01),
                                                          (False, True, 0x02),
                                                          (True, True, 0x03)])
def test_mode_flags(fake_lib, listen_only, error_frames, mode):
    source = toucan.ToucanSource(library=fake_lib.path, listen_only=listen_only,
                                 error_frames=error_frames)
    source.open()
    source.close()
    assert fake_lib.last_mode() == mode


def test_frames_are_packed_with_their_flags_and_mapped_timestamps(fake_lib):
    source = toucan.ToucanSource(library=fake_lib.path)
    source.open()
    try:
        stamp = time.clock_gettime(time.CLOCK_MONOTONIC) - 2.5
        fake_lib.push_frame(0x123, bytes(range(8)), stamp=stamp)
        fake_lib.push_frame(0x1ABCDEF0, b"\xaa\xbb\xcc", flags=XTD, stamp=stamp + 0.000123)
        fake_lib.push_frame(0x7FF, b"", stamp=stamp)
        fake_lib.push_frame(0x100, b"", flags=RTR, dlc=4, stamp=stamp)        # remote: skipped
        fake_lib.push_frame(0x800, b"\x01", stamp=stamp)                      # 11-bit overflow
        fake_lib.push_frame(0x10, bytes(range(12)), flags=FDF | BRS | ESI, dlc=9, stamp=stamp)
        fake_lib.push_frame(0x11, bytes(range(12)), dlc=9, stamp=stamp)       # classic DLC 9: 8
        records = source.read(1.0)
        offset = unix_offset()
    finally:
        source.close()
    frames = wire.StreamDecoder().feed(records)
    assert [(f[1], f[2], f[3]) for f in frames] == [
        (0x123, 0, bytes(range(8))),
        (0x1ABCDEF0, wire.FLAG_EXT, b"\xaa\xbb\xcc"),
        (0x7FF, 0, b""),
        (0x10, wire.FLAG_FD | wire.FLAG_BRS | wire.FLAG_ESI, bytes(range(12))),
        (0x11, 0, bytes(range(8)))]
    expected = (stamp + offset) * 1e6
    assert abs(frames[0][0] - expected) < 1000, "device time mapped to Unix time"
    assert frames[1][0] - frames[0][0] == 123, "microseconds kept"
    assert source.counters() == SourceCounters(frames=5, remote=1, error=0, invalid=1)


def test_a_batch_drains_what_is_queued_up_to_the_batch_limit(fake_lib):
    source = toucan.ToucanSource(library=fake_lib.path)
    source.open()
    try:
        fake_lib.push_burst(3000, 0x321)
        batches = [source.read(1.0) for _ in range(3)]
        assert source.read(0.05) == b""
    finally:
        source.close()
    counts = [len(wire.StreamDecoder().feed(b)) for b in batches]
    assert counts == [toucan.MAX_BATCH, toucan.MAX_BATCH, 3000 - 2 * toucan.MAX_BATCH]
    payloads = [f[3] for b in batches for f in wire.StreamDecoder().feed(b)]
    assert [int.from_bytes(p[:4], "little") for p in payloads] == list(range(3000))


def test_a_fatal_read_hands_over_the_frames_before_it_then_raises(fake_lib):
    source = toucan.ToucanSource(library=fake_lib.path)
    source.open()
    try:
        for i in range(3):
            fake_lib.push_frame(0x200 + i, b"\x01")
        fake_lib.push_failure(-99)
        assert [f[1] for f in wire.StreamDecoder().feed(source.read(1.0))] == [0x200, 0x201, 0x202]
        with pytest.raises(SourceLostError,
                           match=r"TouCAN channel 0: CANERR_FATAL \(-99\): fatal error"):
            source.read(1.0)
    finally:
        source.close()


def test_bus_codes_from_can_read_are_logged_not_fatal(fake_lib, reporter):
    source = toucan.ToucanSource(library=fake_lib.path)
    source.open()
    try:
        fake_lib.push_failure(-2)   # CANERR_EWRN
        fake_lib.push_failure(-40)  # CANERR_QUE_OVR
        fake_lib.push_frame(0x42, b"\x42")
        assert [f[1] for f in wire.StreamDecoder().feed(source.read(1.0))] == [0x42]
    finally:
        source.close()
    assert "bus state error warning" in reporter.text()
    assert "receive overrun" in reporter.text()
    assert source.counters().overruns == 1


def test_close_wakes_a_blocked_read_and_exits_the_library_once(fake_lib):
    source = toucan.ToucanSource(library=fake_lib.path)
    source.open()
    result = {}

    def reader():
        started = time.monotonic()
        result["records"] = source.read(30.0)  # far longer than the test waits
        result["took"] = time.monotonic() - started

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.3)
    source.close()
    thread.join(5)
    assert not thread.is_alive()
    assert result["records"] == b"" and result["took"] < 2.0
    source.close()  # a second close does nothing
    assert (fake_lib.calls("can_kill"), fake_lib.calls("can_reset"),
            fake_lib.calls("can_exit")) == (1, 1, 1)


def test_status_frames_are_logged_and_never_packed(fake_lib, reporter):
    source = toucan.ToucanSource(library=fake_lib.path, error_frames=True)
    source.open()
    try:
        for code in (fake_toucan.STATUS_BUSLIGHT, fake_toucan.STATUS_BUSHEAVY,
                     fake_toucan.STATUS_BUSOFF, fake_toucan.STATUS_OK,
                     fake_toucan.STATUS_OVERRUN, fake_toucan.STATUS_FORM_ERROR):
            fake_lib.push_status(code)
        fake_lib.push_frame(0x55, b"\x55")
        frames = wire.StreamDecoder().feed(source.read(1.0))
    finally:
        source.close()
    assert [(f[1], f[3]) for f in frames] == [(0x55, b"\x55")]
    log = reporter.text()
    for line in ("warning: TouCAN channel 0: bus state error warning",
                 "warning: TouCAN channel 0: bus state error passive",
                 "warning: TouCAN channel 0: bus state bus off",
                 "info: TouCAN channel 0: bus state error active",
                 "warning: TouCAN channel 0: receive overrun",
                 "warning: TouCAN channel 0: bus error (form error"):
        assert line in log, log
    assert source.counters() == SourceCounters(frames=1, error=6, overruns=1, bus_errors=1)


@pytest.mark.parametrize("rc,call,text", [
    (-95, "can_init", "CANERR_NOTINIT (-95): no such channel"),
    (-95, "can_read", "CANERR_NOTINIT (-95): not initialized"),
    (-1, None, "CANERR_BOFF (-1)"), (-2, None, "CANERR_EWRN (-2)"), (-3, None, "CANERR_BERR (-3)"),
    (-8, None, "CANERR_ONLINE (-8)"), (-9, None, "CANERR_OFFLINE (-9)"),
    (-10, None, "CANERR_MSG_LST (-10)"), (-20, None, "CANERR_TX_BUSY (-20)"),
    (-30, None, "CANERR_RX_EMPTY (-30)"), (-40, None, "CANERR_QUE_OVR (-40)"),
    (-50, None, "CANERR_TIMEOUT (-50)"), (-90, None, "CANERR_RESOURCE (-90)"),
    (-91, None, "CANERR_BAUDRATE (-91)"), (-92, None, "CANERR_HANDLE (-92)"),
    (-93, None, "CANERR_ILLPARA (-93)"), (-94, None, "CANERR_NULLPTR (-94)"),
    (-96, None, "CANERR_YETINIT (-96)"), (-97, None, "CANERR_LIBRARY (-97)"),
    (-98, None, "CANERR_NOTSUPP (-98)"), (-99, None, "CANERR_FATAL (-99)"),
    (-100, None, "CANERR_VENDOR (-100)"), (-512, None, "TouCAN error (-512)"),
    (-250, None, "CANERR_VENDOR (-250)"), (-7, None, "unknown return code (-7)")])
def test_every_return_code_has_a_name(rc, call, text):
    assert toucan.return_code_text(rc, call).startswith(text)


def test_an_adapter_in_use_is_reported(fake_lib):
    first = toucan.ToucanSource(library=fake_lib.path)
    first.open()
    try:
        with pytest.raises(SourceInitError, match="in use by another program"):
            toucan.ToucanSource(library=fake_lib.path).open()
    finally:
        first.close()


# ---- the subcommand, end to end (cancorder runs as a subprocess) ----

def test_frames_reach_a_tcp_client(toucan_server, control):
    server = toucan_server("-b", "250000")
    client = connect(server)
    try:
        stamp = time.clock_gettime(time.CLOCK_MONOTONIC) - 1.0
        control.send(control.frame_line(0x123, bytes.fromhex("01ff23456789abcd"), stamp=stamp),
                     control.frame_line(0x18DAF110, b"\x02\x10\x03", flags=XTD,
                                        stamp=stamp + 0.25),
                     control.frame_line(0x7DF, b"\x02\x01\x00", flags=RTR),   # remote: dropped
                     control.frame_line(0x000, b""))
        frames = client.wait_frames(3)
        offset = unix_offset()
    finally:
        client.close()
    assert [(f[1], f[2], f[3]) for f in frames] == [
        (0x123, 0, bytes.fromhex("01ff23456789abcd")),
        (0x18DAF110, wire.FLAG_EXT, b"\x02\x10\x03"),
        (0x000, 0, b"")]
    assert abs(frames[0][0] - (stamp + offset) * 1e6) < 5000, "mapped to Unix time"
    assert frames[1][0] - frames[0][0] == 250000
    assert abs(frames[2][0] / 1e6 - time.time()) < 5.0
    assert server.terminate() == 0
    assert "start handle=0 index=-3 rc=0" in control.calls()
    assert "totals: frames in 4, out 3, skipped remote 1" in server.log


def test_the_lowercase_alias_and_listen_only(toucan_server, control):
    server = toucan_server("--listen-only", command="toucan")
    server.port()
    assert server.terminate() == 0
    assert "init channel=0 mode=0x01 rc=0" in control.calls()
    assert "listen-only" in server.log


def test_error_frames_log_bus_states_and_never_reach_clients(toucan_server, control):
    server = toucan_server("--error-frames", "-c", "1", env={"FAKE_TOUCAN_CHANNELS": "2"})
    client = connect(server)
    try:
        control.push_status(fake_toucan.STATUS_BUSLIGHT, fake_toucan.STATUS_BUSHEAVY,
                            fake_toucan.STATUS_BUSOFF, fake_toucan.STATUS_OK,
                            fake_toucan.STATUS_OVERRUN)
        control.push_frame(0x321, b"\x01\x02")
        frames = client.wait_frames(1)
        server.wait_for("receive overrun")
        time.sleep(0.3)  # anything else the client would get arrives by now
    finally:
        client.close()
    assert [(f[1], f[3]) for f in client.frames] == [(0x321, b"\x01\x02")] == \
        [(f[1], f[3]) for f in frames]
    for state in ("error warning", "error passive", "bus off", "error active"):
        server.wait_for(f"TouCAN channel 1: bus state {state}", timeout=1)
    assert server.terminate() == 0
    assert "init channel=1 mode=0x02 rc=1" in control.calls()  # rc: the handle
    assert "error 5" in server.log  # the totals count status frames as skipped error frames


def test_a_fatal_read_error_reopens_and_the_same_client_gets_frames_again(toucan_server,
                                                                           control):
    server = toucan_server()
    client = connect(server)
    try:
        control.push_frame(0x100, b"\x01")
        client.wait_frames(1)
        control.push_failure(-99)
        server.wait_for(r"CANERR_FATAL \(-99\).*reopens it")
        server.wait_for("is back; frames flow again")
        control.push_frame(0x101, b"\x02")
        frames = client.wait_frames(2)
        assert not client.closed.is_set()
    finally:
        client.close()
    assert [(f[1], f[3]) for f in frames] == [(0x100, b"\x01"), (0x101, b"\x02")]
    assert server.terminate() == 0
    calls = [line.split()[0] for line in control.calls()]
    assert calls == ["test", "init", "start", "read-fail", "kill", "reset", "exit",
                     "test", "init", "start", "kill", "reset", "exit"]


def test_sigterm_stops_promptly_and_exits_the_library_once(toucan_server, control):
    server = toucan_server()
    client = connect(server)
    try:
        control.push_frame(0x1, b"\x01")
        client.wait_frames(1)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(10)
        took = time.monotonic() - started
    finally:
        client.close()
    server.terminate()
    assert code == 0
    assert took < 1.5, f"SIGTERM to exit took {took:.2f} s"
    assert len(control.calls_named("exit")) == 1
    assert len(control.calls_named("reset")) == 1
    assert "totals: frames in 1, out 1" in server.log


def test_sigint_stops_too(toucan_server, control):
    server = toucan_server()
    server.port()
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(10) == 0
    assert len(control.calls_named("exit")) == 1


def test_port_verbose_and_stats(toucan_server, control):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    server = toucan_server("-p", str(port), "-v", "--stats", stdout=subprocess.PIPE)
    assert server.port() == port
    client = connect(server)
    try:
        control.push_frame(0x7E8, bytes.fromhex("0641"), stamp=None)
        client.wait_frames(1)
        server.wait_for(r"frames/s, 1 in all", timeout=10)
    finally:
        client.close()
    assert server.terminate() == 0
    assert "can0 7E8#0641" in server.proc.stdout.read()


def test_800k_on_the_command_line_is_one_clear_line(fake_library_path, control):
    done = run_cli("touCAN", "--library", fake_library_path, "--no-zeroconf", "-b", "800000",
                   env=cancorder_env(**control.env()))
    line = assert_one_error_line(done, 2)
    assert "--bitrate 800000 is not supported by TouCAN" in line
    assert control.calls() == []  # refused before the library was touched


@pytest.mark.parametrize("channel,text", [
    ("9", "TouCAN channel 9: CANERR_NOTINIT (-95): no such channel"),
    ("1", "TouCAN channel 1: no TouCAN adapter at index 1 (CANBRD_NOT_PRESENT)")])
def test_a_bad_channel_is_one_clear_line(fake_library_path, control, channel, text):
    done = run_cli("touCAN", "--library", fake_library_path, "--no-zeroconf", "-c", channel,
                   env=cancorder_env(**control.env()))
    assert text in assert_one_error_line(done, 1)
    assert control.calls_named("init") == []


def test_a_negative_channel_is_a_usage_error(fake_library_path):
    done = run_cli("touCAN", "--library", fake_library_path, "--no-zeroconf", "-c", "-1")
    assert done.returncode == 2 and "must be 0 or more" in done.stderr


def test_a_missing_library_is_one_clear_line():
    if os.path.exists(toucan.DEFAULT_LIBRARY) or ctypes.util.find_library(toucan.LOADER_NAME):
        pytest.skip("this machine has the real TouCAN library")
    env = cancorder_env()
    env.pop(toucan.LIBRARY_ENV, None)
    line = assert_one_error_line(run_cli("touCAN", "--no-zeroconf", env=env), 1)
    assert "the TouCAN library libUVCANTOU was not found" in line
    assert "/usr/local/lib/libUVCANTOU.dylib" in line and "loader's search" in line
    assert "MacCAN-TouCAN" in line and "make install" in line
    if sys.platform.startswith("linux"):
        assert "SocketCAN kernel driver" in line and "cancorder serve -i socketcan" in line


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_library_path_that_does_not_exist_is_one_clear_line(how):
    missing = "/nonexistent/libUVCANTOU.dylib"
    if how == "flag":
        done = run_cli("touCAN", "--no-zeroconf", "--library", missing)
        origin = "--library"
    else:
        done = run_cli("touCAN", "--no-zeroconf",
                       env=cancorder_env(**{toucan.LIBRARY_ENV: missing}))
        origin = toucan.LIBRARY_ENV
    line = assert_one_error_line(done, 1)
    assert f"the TouCAN library {missing} (from {origin}) does not exist" in line
    assert "make install" in line


def test_the_library_is_found_through_the_environment(fake_library_path, cancorder_process,
                                                      control):
    server = cancorder_process("touCAN", "--no-zeroconf", env=cancorder_env(
        **control.env(), **{toucan.LIBRARY_ENV: fake_library_path}))
    server.port()
    assert server.terminate() == 0
    assert "start handle=0 index=-2 rc=0" in control.calls()  # the default 500 kbit/s


@pytest.mark.netns
def test_touCAN_is_advertised_with_its_process_and_channel(fake_library_path):
    from tests.netns import run_in_netns

    result = run_in_netns("tests/netns_zeroconf_toucan.py", fake_library_path)
    assert result["names"] == ["ECUconnect-Logger toucan-7._ecuconnect-log._tcp.local."], \
        result["log"]
    txt = result["txt"]
    assert set(txt) == {"system", "process", "interface", "channel", "bitrate", "port"}
    assert txt["system"] == socket.gethostname().split(".")[0]
    assert txt["process"] == "cancorder touCAN"
    assert txt["interface"] == "toucan"
    assert txt["channel"] == "1"
    assert txt["bitrate"] == "125000"
    assert txt["port"] == str(result["port"])
    assert result["info_port"] == result["port"] and "127.0.0.1" in result["addresses"]
    assert result["exit_code"] == 0
    assert result["removed"] == result["names"], result["log"]


def two_frames(server, control):
    """Frames 0x123 and 0x18DAF110 (29-bit) from the fake library, as a client of ``server``
    receives them."""
    client = connect(server)
    try:
        control.send(control.frame_line(0x123, b"\x01\x02"),
                     control.frame_line(0x18DAF110, b"\x02\x10\x03", flags=XTD))
        return client.wait_frames(2)
    finally:
        client.close()


def test_record_while_serving(toucan_server, control, tmp_path):
    server = toucan_server("--record", str(tmp_path / "%Y-{interface}-{n}.blf"))
    frames = two_frames(server, control)
    assert server.terminate() == 0
    [path] = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]  # not the index
    assert path.name == time.strftime("%Y") + "-toucan-1.blf"
    recorded = [(m.arbitration_id, m.is_extended_id, bytes(m.data))
                for m in can.LogReader(str(path))]
    assert recorded == [(f[1], bool(f[2] & wire.FLAG_EXT), f[3]) for f in frames]
    assert "recorded 2 frames to" in server.log


def test_filter_reaches_toucan_too(toucan_server, control):
    """Issue 10: --filter is applied by every source in one place, touCAN included (candump's
    inverse spelling and comma-separated rules too)."""
    server = toucan_server("--filter", "123:7FF,7DF:7FF", "--filter", "18DAF110:1FFFFFFF")
    client = connect(server)
    try:
        control.send(control.frame_line(0x123, b"\x01"),
                     control.frame_line(0x456, b"\x02"),  # held back
                     control.frame_line(0x18DAF110, b"\x03", flags=XTD),
                     control.frame_line(0x18DAF111, b"\x04", flags=XTD),  # held back
                     control.frame_line(0x7DF, b"\x05"))
        frames = client.wait_frames(3)
        time.sleep(0.3)  # anything held back that got through would have arrived by now
    finally:
        client.close()
    assert [f[1] for f in frames] == [0x123, 0x18DAF110, 0x7DF]
    assert len(client.frames) == 3
    assert server.terminate() == 0
    assert "totals: frames in 5, out 3" in server.log and "filtered 2" in server.log


def test_a_toucan_bus_of_a_config_file(cancorder_process, fake_library_path, control, tmp_path):
    """source = "toucan" in serve --config (issue 13: every source can be a bus), beside a
    simulator bus: its frames reach a TCP client, its bit rate reaches the library."""
    path = tmp_path / "rig.toml"
    path.write_text(f'zeroconf = false\nbind = "127.0.0.1"\n'
                    f'[[bus]]\nname = "rig"\nsource = "toucan"\nlibrary = "{fake_library_path}"\n'
                    f'channel = 0\nbitrate = 250000\n'
                    f'[[bus]]\nname = "sim"\nsource = "mock-uds"\nasync = true\n')
    server = cancorder_process("serve", "--config", str(path),
                               env=cancorder_env(**control.env()))
    server.wait_for("serving the UDS simulator")
    frames = two_frames(server, control)
    assert [(f[1], f[2], f[3]) for f in frames] == [
        (0x123, 0, b"\x01\x02"), (0x18DAF110, wire.FLAG_EXT, b"\x02\x10\x03")]
    assert server.terminate() == 0
    assert "start handle=0 index=-3 rc=0" in control.calls()  # 250 kbit/s: index 3
    assert "totals: frames in 2, out 2" in server.log, server.log
