"""`cancorder serve` end to end: the real python-can slcan stack against the SLCAN emulator."""
import os
import socket
import subprocess
import sys
import time

import can
import pytest

from tests.helpers import StreamClient, cancorder_env

MIXED = [
    can.Message(arbitration_id=0x123, is_extended_id=False, data=bytes.fromhex("01FF23456789ABCD")),
    can.Message(arbitration_id=0x18DAF110, is_extended_id=True, data=b"\x02\x10\x03"),
    can.Message(arbitration_id=0x7E8, is_extended_id=False, is_fd=True, data=bytes(range(12))),
    can.Message(arbitration_id=0x1FFFFFFF, is_extended_id=True, is_fd=True, bitrate_switch=True,
                data=bytes(range(64))),
    can.Message(arbitration_id=0x000, is_extended_id=False, data=b""),
]


def expected(msg):
    flags = (1 if msg.is_extended_id else 0) | (2 if msg.is_fd else 0) | \
        (4 if msg.bitrate_switch else 0)
    return msg.arbitration_id, flags, bytes(msg.data)


def serve(cancorder_process, emu, *extra):
    proc = cancorder_process("serve", "-i", "slcan", "-c", emu.url, "--no-zeroconf", *extra)
    return proc, proc.port()


def test_three_clients_get_every_frame_in_order(cancorder_process, slcan_emulator):
    proc, port = serve(cancorder_process, slcan_emulator)
    clients = [StreamClient(port) for _ in range(3)]
    proc.wait_for(r"3 connected")
    before = time.time()
    slcan_emulator.send_messages(MIXED * 20)
    want = [expected(m) for m in MIXED * 20]
    for client in clients:
        frames = client.wait_frames(len(want))
        assert [(f[1], f[2], f[3]) for f in frames] == want
        stamps = [f[0] / 1e6 for f in frames]
        assert stamps == sorted(stamps)
        assert before - 1 < stamps[0] and stamps[-1] < time.time() + 1
    assert proc.terminate() == 0
    assert "totals: frames in 100, out 100" in proc.log


def test_ipv6_loopback_and_remote_frames_skipped(cancorder_process, slcan_emulator):
    proc, port = serve(cancorder_process, slcan_emulator)
    client = StreamClient(port, host="::1")
    proc.wait_for("connected")
    slcan_emulator.send_messages([
        can.Message(arbitration_id=0x100, is_extended_id=False, is_remote_frame=True, dlc=2),
        can.Message(arbitration_id=0x101, is_extended_id=False, data=b"\x01")])
    frames = client.wait_frames(1)
    assert frames[0][1] == 0x101
    assert proc.terminate() == 0
    assert "frames in 2, out 1, skipped remote 1" in proc.log


def test_sigterm_exits_zero_with_totals(cancorder_process, slcan_emulator):
    proc, port = serve(cancorder_process, slcan_emulator)
    client = StreamClient(port)
    proc.wait_for("connected")
    slcan_emulator.send_messages(MIXED)
    client.wait_frames(5)
    start = time.monotonic()
    assert proc.terminate() == 0
    assert time.monotonic() - start < 5
    assert client.closed.wait(5)
    assert "totals: frames in 5, out 5, skipped remote 0, error 0" in proc.log
    assert "clients served 1, dropped for lag 0" in proc.log
    assert slcan_emulator.commands[-1] == "C"  # the bus was closed


def test_stalled_client_dropped_others_keep_full_rate(cancorder_process, slcan_emulator):
    proc, port = serve(cancorder_process, slcan_emulator, "--client-buffer", "16K")
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", port))
    readers = [StreamClient(port) for _ in range(2)]
    proc.wait_for("3 connected")
    batch = [can.Message(arbitration_id=0x200 + (i % 16), is_extended_id=False, is_fd=True,
                         data=i.to_bytes(4, "big") * 16) for i in range(40000)]
    start = time.monotonic()
    slcan_emulator.send_messages(batch)
    for reader in readers:
        frames = reader.wait_frames(40000, timeout=60)
        assert [int.from_bytes(f[3][:4], "big") for f in frames] == list(range(40000))
    elapsed = time.monotonic() - start
    match = proc.wait_for(r"client 127\.0\.0\.1:(\d+) dropped: ([\d,]+) bytes .* behind")
    assert int(match.group(1)) == stalled.getsockname()[1]
    assert int(match.group(2).replace(",", "")) > 16 * 1024
    stalled.close()
    assert proc.terminate() == 0
    assert "dropped for lag 1" in proc.log
    print(f"40000 FD frames to 2 readers with a stalled third in {elapsed:.2f} s")


@pytest.mark.parametrize("backend", ["cancorder", "python-can"])
def test_adapter_unplugged_and_back_frames_resume_to_same_clients(cancorder_process,
                                                                  slcan_emulator, backend):
    proc, port = serve(cancorder_process, slcan_emulator, "--opt", f"slcan_backend={backend}")
    clients = [StreamClient(port) for _ in range(2)]
    proc.wait_for("2 connected")
    slcan_emulator.send_messages(MIXED[:2])
    for c in clients:
        c.wait_frames(2)
    slcan_emulator.drop(refuse_for=1.5)
    proc.wait_for("the server stays up and reopens it")
    proc.wait_for("is back; frames flow again", timeout=20)
    slcan_emulator.send_messages(MIXED[2:])
    for c in clients:
        frames = c.wait_frames(5)
        assert [(f[1], f[2], f[3]) for f in frames] == [expected(m) for m in MIXED]
        assert not c.closed.is_set()
    assert slcan_emulator.connections >= 2
    assert proc.log.count("the server stays up") == 1  # logged once, not per retry
    assert proc.terminate() == 0


def _fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_500_connect_disconnect_cycles_leak_no_fds(cancorder_process, slcan_emulator):
    proc, port = serve(cancorder_process, slcan_emulator)
    keeper = StreamClient(port)
    proc.wait_for("1 connected")
    time.sleep(0.2)
    before = _fd_count(proc.proc.pid)
    for wave in range(10):  # waves of 50, within the listen backlog
        for i in range(50):
            s = socket.create_connection(("127.0.0.1", port))
            if i % 2:
                s.sendall(b"x")  # some talk before leaving: read and discarded
            s.close()
        time.sleep(0.2)
    # A client's EOF is not a disconnect (it may still read, like `nc -N`): on a quiet bus the
    # server cannot tell those that left from those that read on, and keeps them until a slot
    # is needed (reaped before counting) or a send fails. At most --max-clients-per-host.
    assert _fd_count(proc.proc.pid) <= before + 32
    late = StreamClient(port)  # never refused: the dead ones are reaped to make room
    time.sleep(0.5)
    assert "refused" not in proc.log
    for _ in range(3):  # frames reveal the ones that left: their sockets answer with a reset
        slcan_emulator.send_messages(MIXED)
        time.sleep(0.3)
    assert len(keeper.wait_frames(15)) == 15 and len(late.wait_frames(15)) == 15
    deadline = time.monotonic() + 10
    while _fd_count(proc.proc.pid) != before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _fd_count(proc.proc.pid) == before + 1  # the keeper and the late one, nothing else
    assert proc.terminate() == 0
    assert "clients served 502" in proc.log
    assert len(proc.log.splitlines()) < 300  # 1,000 connection events, summarised


def test_filter_listen_only_and_backend_options(cancorder_process, slcan_emulator):
    proc, port = serve(cancorder_process, slcan_emulator, "--filter", "123:7FF", "--filter",
                       "18DA0000:1FFF0000", "--listen-only", "--opt", "btr=031C", "--opt", "slcan_backend=python-can")
    client = StreamClient(port)
    proc.wait_for("connected")
    slcan_emulator.send_messages(MIXED)
    client.wait_frames(2)
    time.sleep(0.3)  # and nothing else comes
    assert [f[1] for f in client.frames] == [0x123, 0x18DAF110]
    assert "L" in slcan_emulator.commands and "O" not in slcan_emulator.commands
    assert "s031C" in slcan_emulator.commands  # --opt reached python-can's slcan backend
    assert proc.terminate() == 0


def test_bitrate_and_data_bitrate_reach_the_adapter(cancorder_process, slcan_emulator):
    proc, _ = serve(cancorder_process, slcan_emulator, "-b", "125000", "--fd",
                    "--data-bitrate", "2000000")
    slcan_emulator.wait_open()
    assert slcan_emulator.commands == ["C", "S4", "Y2", "O"]
    assert proc.terminate() == 0


def test_verbose_prints_candump_lines_and_stats(cancorder_process, slcan_emulator, tmp_path):
    out = open(tmp_path / "stdout.txt", "w")
    proc = cancorder_process("serve", "-i", "slcan", "-c", slcan_emulator.url,
                             "--no-zeroconf", "-v", stdout=out)
    proc.port()
    slcan_emulator.send_messages(MIXED)
    proc.wait_for(r"frames/s, 5 in all, 0 clients")  # the status line
    assert proc.terminate() == 0
    out.close()
    lines = (tmp_path / "stdout.txt").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "can0 123#01FF23456789ABCD", "can0 18DAF110#021003",
        "can0 7E8##0000102030405060708090A0B", "can0 1FFFFFFF##1" + bytes(range(64)).hex().upper(),
        "can0 000#"]


def test_bind_restricts_the_listening_address(cancorder_process, slcan_emulator):
    proc = cancorder_process("serve", "-i", "slcan", "-c", slcan_emulator.url,
                             "--no-zeroconf", "--bind", "127.0.0.1")
    port = proc.port()
    assert proc.wait_for(r"on TCP 127\.0\.0\.1:\d+")
    with pytest.raises(OSError):
        socket.create_connection(("::1", port), timeout=2)
    StreamClient(port).close()
    assert proc.terminate() == 0


def test_timestamps_host_and_device_clock_mapping(monkeypatch):
    from cancorder._fast import wire
    from cancorder.sources.pycan import PythonCanSource

    sender = can.Bus(interface="virtual", channel="ts-test", preserve_timestamps=True)
    try:
        for mode in ("adapter", "host"):
            source = PythonCanSource("virtual", "ts-test", bitrate=None, timestamps=mode)
            source.open()
            try:
                sender.send(can.Message(timestamp=5.0, arbitration_id=1, is_extended_id=False))
                sender.send(can.Message(timestamp=5.25, arbitration_id=2, is_extended_id=False))
                now = time.time()
                frames = wire.StreamDecoder().feed(source.read(1.0))
            finally:
                source.close()
            stamps = [f[0] / 1e6 for f in frames]
            assert abs(stamps[0] - now) < 1.0  # a device clock (5 s) mapped to Unix time
            if mode == "adapter":
                assert stamps[1] - stamps[0] == pytest.approx(0.25, abs=1e-6)
            else:
                assert stamps[1] - stamps[0] < 0.01
    finally:
        sender.shutdown()


def _run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "cancorder", *args], capture_output=True,
                          text=True, env=env or cancorder_env(), timeout=60)


def _without_libusb(tmp_path):
    """An environment whose Python finds no libusb (pyusb looks it up through
    ctypes.util.find_library), whether or not this machine has it (installing qemu brings it)."""
    (tmp_path / "sitecustomize.py").write_text(
        "import ctypes.util\n"
        "_find = ctypes.util.find_library\n"
        "ctypes.util.find_library = lambda name: None if 'usb' in name else _find(name)\n")
    env = cancorder_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    return env


@pytest.mark.parametrize("args, code, message", [
    (["serve", "-i", "nosuch"], 2, "unknown interface 'nosuch': use one of"),
    (["serve", "-i", "gs_usb"], 1, "gs_usb needs libusb"),
    (["serve", "-i", "kvaser"], 2, "the kvaser interface needs -c/--channel"),
    (["serve", "-i", "kvaser", "-c", "0"], 1, "the kvaser interface needs Kvaser CANlib"),
    (["serve", "-i", "pcan"], 1, "the pcan interface needs PEAK's PCAN-Basic"),
    (["serve", "-i", "slcan"], 2, "the slcan interface needs -c/--channel"),
    (["serve", "-i", "slcan", "-c", "/dev/ttyNOPE"], 1, "cannot open slcan channel /dev/ttyNOPE"),
    (["serve", "-i", "socketcan", "-c", "can9"], 1, "SocketCAN"),
    (["serve", "--filter", "12G:7FF"], 2, "expected ID:MASK or ID~MASK in hex"),
    (["serve", "-b", "fast"], 2, "expected a bit rate"),
    (["serve", "--data-bitrate", "2000000"], 2, "--data-bitrate needs --fd"),
    (["serve", "-i", "socketcan", "--listen-only"], 2, "cannot be put in listen-only"),
    (["serve", "--client-buffer", "lots"], 2, "expected a size"),
    (["serve", "--client-buffer-total", "2M"], 2,
     "--client-buffer-total (2,097,152 bytes) is less than --client-buffer (4,194,304 bytes)"),
    (["serve", "--bogus"], 2, "unrecognized arguments: --bogus (see cancorder serve --help)"),
    (["mock-uds", "--bogus"], 2, "(see cancorder mock-uds --help)"),
    (["serve", "-b", "fast"], 2, "(see cancorder serve --help)"),
    (["touCAN", "--filter", "7E8"], 2, "(see cancorder touCAN --help)"),
    # issue 22 item 15: a prefix of a long flag was taken for it (--bitrat was --bitrate)
    (["serve", "-i", "slcan", "-c", "/dev/ttyNOPE", "--bitrat", "500000"], 2,
     "unrecognized arguments: --bitrat 500000 (flags are written in full: --bitrate) (see "
     "cancorder serve --help)"),
    (["serve", "-i", "slcan", "-c", "/dev/ttyNOPE", "--socketcand", "0", "--allow-t"], 2,
     "unrecognized arguments: --allow-t (flags are written in full: --allow-transmit)"),
    (["dump", "127.0.0.1:9", "--coun", "5"], 2,
     "unrecognized arguments: --coun 5 --no-zeroconf (flags are written in full: --count) "
     "(see cancorder dump --help)"),  # (dump has no --no-zeroconf: _run adds it)
    (["replay", "x.log", "--spee", "max"], 2, "(flags are written in full: --speed)"),
    (["mock-uds", "--tester-i", "7E0"], 2, "(flags are written in full: --tester-id)"),
    (["serve", "--log-form", "json"], 2, "(flags are written in full: --log-format)"),
])
def test_bad_input_one_clear_line(args, code, message, tmp_path):
    """Ours and argparse's alike: exactly one line, no usage block, no library warnings."""
    env = _without_libusb(tmp_path) if "libusb" in message else None
    done = _run(*args, "--no-zeroconf", env=env)
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr


def test_bad_bitrate_for_slcan(slcan_emulator):
    done = _run("serve", "-i", "slcan", "-c", slcan_emulator.url, "-b", "123456",
                "--no-zeroconf")
    assert done.returncode == 2
    assert "--bitrate 123456 is not possible on slcan" in done.stderr
    assert "Traceback" not in done.stderr


def test_port_in_use(slcan_emulator):
    taken = socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True)
    port = taken.getsockname()[1]
    try:
        done = _run("serve", "-i", "slcan", "-c", slcan_emulator.url, "-p", str(port),
                    "--no-zeroconf")
    finally:
        taken.close()
    assert done.returncode == 2
    assert f"port {port} is already in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_debug_shows_the_traceback():
    done = _run("serve", "-i", "nosuch", "--no-zeroconf", "--debug")
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_permission_denied_is_explained():
    from cancorder.sources.pycan import explain_open_error

    try:
        try:
            raise PermissionError(13, "Permission denied", "/dev/ttyACM0")
        except PermissionError as inner:
            raise can.CanInitializationError("could not open port") from inner
    except can.CanInitializationError as exc:
        error = explain_open_error(exc, "slcan", "/dev/ttyACM0", 500000)
    assert "permission denied opening slcan channel /dev/ttyACM0" in str(error)
    assert "dialout" in str(error)


@pytest.mark.serial
def test_default_port_is_first_free_from_42420(cancorder_process, slcan_emulator):
    from cancorder.protocol import DEFAULT_PORT

    holders = []
    try:
        probe = cancorder_process("serve", "-i", "slcan", "-c", slcan_emulator.url,
                                  "--no-zeroconf")
        first = probe.port()
        assert first >= DEFAULT_PORT
        second_emu_proc = cancorder_process("serve", "-i", "slcan", "-c", slcan_emulator.url,
                                            "--no-zeroconf")
        assert second_emu_proc.port() > first  # the first is taken: the next free one
    finally:
        for h in holders:
            h.close()


def test_version_names_the_core():
    done = _run("--version")
    assert done.returncode == 0
    import cancorder._fast as fast

    assert f"core: {fast.IMPLEMENTATION}" in done.stdout
    pure = _run("--version", env=cancorder_env(CANCORDER_PURE="1"))
    assert "core: pure" in pure.stdout


def test_verbose_never_stalls_the_proxy_when_stdout_is_not_read(cancorder_process,
                                                               slcan_emulator):
    """-v to a pipe nobody reads: the printer blocks, lines are skipped, frames still flow."""
    proc = cancorder_process("serve", "-i", "slcan", "-c", slcan_emulator.url, "--no-zeroconf",
                             "-v", stdout=subprocess.PIPE)  # never read: fills after 64 kB
    client = StreamClient(proc.port())
    proc.wait_for("connected")
    from tests.emulators.slcan_adapter import build_lines

    lines = build_lines(60000)
    for k in range(0, len(lines), 2000):
        slcan_emulator.send_lines(b"".join(lines[k:k + 2000]))
    frames = client.wait_frames(60000, timeout=60)
    assert [f[1] for f in frames[:3]] == [0, 1, 2] and len(frames) == 60000
    assert proc.terminate() == 0
    assert "frames in 60,000, out 60,000" in proc.log


def test_max_clients_end_to_end(cancorder_process, slcan_emulator):
    proc, port = serve(cancorder_process, slcan_emulator, "--max-clients", "1")
    first = StreamClient(port)
    proc.wait_for("1 connected")
    extra = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert extra.recv(10) == b""  # closed at once
    proc.wait_for(r"refused: already 1 client \(--max-clients 1\)")
    slcan_emulator.send_messages(MIXED[:1])
    assert first.wait_frames(1)[0][1] == 0x123
    extra.close()
    assert proc.terminate() == 0
    assert "clients served 1, dropped for lag 0, refused 1," in proc.log  # reported (issue 10)


@pytest.mark.parametrize("mode", ["adapter", "host"])
def test_timestamps_flag_with_adapter_clock(cancorder_process, slcan_emulator, mode):
    """Two SLCAN frames that the adapter stamped 200 ms apart (1000 and 1200 ms) arrive 400 ms
    apart: adapter time keeps the adapter's spacing, host time the arrival spacing."""
    proc, port = serve(cancorder_process, slcan_emulator, "--timestamps", mode)
    client = StreamClient(port)
    proc.wait_for("connected")
    slcan_emulator.send_lines(b"t1001AA03E8\r")
    client.wait_frames(1)
    time.sleep(0.4)
    slcan_emulator.send_lines(b"t1001BB04B0\r")
    first, second = client.wait_frames(2)
    spacing = (second[0] - first[0]) / 1e6
    if mode == "adapter":
        assert spacing == pytest.approx(0.2, abs=1e-6)
    else:
        assert 0.39 < spacing < 0.6
    assert abs(second[0] / 1e6 - time.time()) < 5
    assert proc.terminate() == 0


def test_opt_values_stay_text_until_the_backend_converts_them():
    from cancorder.sources.pycan import PythonCanSource
    from cancorder.sources.slcan import SlcanSource

    slcan = SlcanSource("socket://127.0.0.1:1", options={"btr": "0014", "rtscts": "false"})
    assert "s0014" in slcan.setup and slcan.rtscts is False  # not 14.0, not "false" == True
    pycan = PythonCanSource("virtual", "x", options={"receive_own_messages": "true",
                                                     "rx_queue_size": "0014", "name": "abc"})
    # python-can's own cast_from_string decides
    assert pycan.kwargs["receive_own_messages"] is True
    assert pycan.kwargs["rx_queue_size"] == 14 and pycan.kwargs["name"] == "abc"


def test_touCAN_and_mock_uds_take_filter_too(cancorder_process):
    proc = cancorder_process("mock-uds", "--no-zeroconf", "--speed", "20", "--seed", "3",
                             "--filter", "7DF~7FF")
    client = StreamClient(proc.port())
    client.wait_frames(20)
    ids = {f[1] for f in client.frames}
    assert 0x7E8 in ids and 0x7DF not in ids  # the OBD requests (7DF) are held back
    assert proc.terminate() == 0
    assert "filtered" in proc.log


def test_opt_btr_0014_from_the_command_line_reaches_the_source_as_text():
    """Issue 10: `--opt btr=0014` was typed as 14.0 by the command line before the source saw
    it; through the real parser, the text reaches the backend that owns the key."""
    from cancorder.cli import build_parser
    from cancorder.commands.serve import source_from_args

    args = build_parser().parse_args(["serve", "-i", "slcan", "-c", "socket://127.0.0.1:1",
                                      "--opt", "btr=0014", "--opt", "rtscts=false"])
    assert dict(args.options) == {"btr": "0014", "rtscts": "false"}
    slcan = source_from_args(args)
    assert "s0014" in slcan.setup and slcan.rtscts is False
    args = build_parser().parse_args(["serve", "-i", "virtual", "-c", "x", "--opt",
                                      "rx_queue_size=0014", "--opt", "name=1e3"])
    pycan = source_from_args(args)
    # python-can's cast_from_string decides: "0014" is an int to it, "1e3" stays text
    assert pycan.kwargs["rx_queue_size"] == 14 and pycan.kwargs["name"] == "1e3"
