"""`--socketcand` end to end: python-can's own socketcand client against `cancorder serve` on
the SLCAN emulator (receive, transmit, refusals), --allow and --max-clients across both
protocols, hostile clients against a real process (memory bounded)."""
import re
import socket
import time

import can
import pytest

from tests.helpers import StreamClient, cancorder_env, wait_until
from tests.netns import run_in_netns
from tests.sinks.test_socketcand import Peer
from tests.sources.test_toucan import control, fake_library_path  # noqa: F401 (fixtures)

FRAMES = [
    can.Message(arbitration_id=0x123, is_extended_id=False, data=bytes.fromhex("01FF23456789ABCD")),
    can.Message(arbitration_id=0x18DAF110, is_extended_id=True, data=b"\x02\x10\x03"),
    can.Message(arbitration_id=0x000, is_extended_id=False, data=b""),
    can.Message(arbitration_id=0x00000001, is_extended_id=True, data=b"\xff"),
    can.Message(arbitration_id=0x7FF, is_extended_id=False, data=bytes(range(8))),
]


def serve(cancorder_process, emu, *extra):
    proc = cancorder_process("serve", "-i", "slcan", "-c", emu.url, "--no-zeroconf",
                             "--socketcand", "127.0.0.1:0", "--no-beacon", *extra)
    port = proc.port()
    scd = int(proc.wait_for(r"socketcand serves bus '\S+' at \S+:(\d+)").group(1))
    return proc, port, scd


def python_can_bus(port, channel):
    return can.Bus(interface="socketcand", host="127.0.0.1", port=port, channel=channel)


def test_python_can_receives_every_frame_like_an_ecuconnect_client(cancorder_process,
                                                                   slcan_emulator):
    proc, port, scd = serve(cancorder_process, slcan_emulator)
    reference = StreamClient(port)
    bus = python_can_bus(scd, slcan_emulator.url)
    try:
        proc.wait_for("socketcand client .* connected")
        time.sleep(0.3)  # past the rawmode grace
        slcan_emulator.send_messages(FRAMES * 40)
        want = reference.wait_frames(len(FRAMES) * 40)
        got = []
        deadline = time.monotonic() + 20
        while len(got) < len(want) and time.monotonic() < deadline:
            msg = bus.recv(1.0)
            if msg is not None:
                got.append(msg)
    finally:
        bus.shutdown()
        reference.close()
    assert len(got) == len(want)
    for msg, (micros, can_id, flags, data) in zip(got, want):
        assert msg.arbitration_id == can_id
        assert msg.is_extended_id == bool(flags & 1)
        assert bytes(msg.data) == data
        assert round(msg.timestamp * 1e6) == micros  # the same stamp, to the microsecond
    assert [m.arbitration_id for m in got] == [m.arbitration_id for m in FRAMES * 40]
    assert proc.terminate() == 0
    assert "clients served 1, dropped for lag 0, closed for bad commands 0" in proc.log


def test_python_can_transmits_the_exact_slcan_line(cancorder_process, slcan_emulator):
    proc, port, scd = serve(cancorder_process, slcan_emulator, "--allow-transmit")
    bus = python_can_bus(scd, slcan_emulator.url)
    try:
        bus.send(can.Message(arbitration_id=0x7E0, is_extended_id=False,
                             data=b"\x02\x10\x03"))
        bus.send(can.Message(arbitration_id=0x18DA10F1, is_extended_id=True,
                             data=bytes.fromhex("0102030405060708")))
        bus.send(can.Message(arbitration_id=0x123, is_extended_id=False, data=b""))
        deadline = time.monotonic() + 10
        while len([c for c in slcan_emulator.commands if c[:1] in "tT"]) < 3:
            assert time.monotonic() < deadline, slcan_emulator.commands
            time.sleep(0.05)
    finally:
        bus.shutdown()
    assert [c for c in slcan_emulator.commands if c[:1] in "tT"] == [
        "t7E03021003", "T18DA10F180102030405060708", "t1230"]
    proc.wait_for(r"socketcand: transmitted 7E0#021003 from 127\.0\.0\.1:\d+ to the bus")
    # many more: each reaches the bus and is counted; the log says so at most once per 5 s
    bus = python_can_bus(scd, slcan_emulator.url)
    started = time.monotonic()
    try:
        for index in range(200):
            bus.send(can.Message(arbitration_id=0x7DF, is_extended_id=False,
                                 data=bytes((2, 1, index))))
        deadline = time.monotonic() + 20
        while len([c for c in slcan_emulator.commands if c.startswith("t7DF")]) < 200:
            assert time.monotonic() < deadline, len(slcan_emulator.commands)
            time.sleep(0.05)
    finally:
        bus.shutdown()
    elapsed = time.monotonic() - started
    assert [c for c in slcan_emulator.commands if c.startswith("t7DF")] == \
        [f"t7DF30201{index:02X}" for index in range(200)]
    assert proc.terminate() == 0
    assert "frames transmitted 203 (refused 0, failed 0)" in proc.log
    lines = [line for line in proc.log.splitlines() if "socketcand: transmitted" in line]
    assert 1 <= len(lines) <= 2 + elapsed / 5, lines  # not 203 lines


def test_transmit_refused_without_allow_transmit(cancorder_process, slcan_emulator):
    proc, port, scd = serve(cancorder_process, slcan_emulator)
    bus = python_can_bus(scd, slcan_emulator.url)
    peer = Peer(scd).open_raw(slcan_emulator.url)
    try:
        bus.send(can.Message(arbitration_id=0x7E0, is_extended_id=False, data=b"\x01"))
        peer.send(b"< send 7e0 1 1 >")
        assert peer.element() == b"< error transmit disabled >"
    finally:
        bus.shutdown()
        peer.close()
    time.sleep(0.3)
    assert not [c for c in slcan_emulator.commands if c[:1] in "tTdDbB"]
    assert proc.terminate() == 0
    assert "frames transmitted 0 (refused 2, failed 0)" in proc.log


def test_peer_outside_allow_is_refused_on_both_protocols(cancorder_process, slcan_emulator):
    proc, port, scd = serve(cancorder_process, slcan_emulator, "--allow-transmit",
                            "--allow", "10.0.0.0/8", "--allow", "fd00::/8")
    with pytest.raises(can.CanError):
        python_can_bus(scd, slcan_emulator.url)  # closed before "< hi >"
    proc.wait_for(r"socketcand client 127\.0\.0\.1:\d+ refused: outside --allow 10\.0\.0\.0/8")
    ecu = socket.create_connection(("127.0.0.1", port), timeout=10)
    assert ecu.recv(100) == b""  # closed before any byte
    ecu.close()
    proc.wait_for(r"client 127\.0\.0\.1:\d+ refused: outside --allow")
    assert not [c for c in slcan_emulator.commands if c[:1] in "tTdDbB"]
    assert proc.terminate() == 0


def test_allow_inside_lets_clients_in(cancorder_process, slcan_emulator):
    proc, port, scd = serve(cancorder_process, slcan_emulator, "--allow", "127.0.0.0/8")
    client = StreamClient(port)
    peer = Peer(scd).open_raw(slcan_emulator.url)
    time.sleep(0.3)
    slcan_emulator.send_messages(FRAMES)
    assert len(client.wait_frames(len(FRAMES))) == len(FRAMES)
    assert len(peer.elements(len(FRAMES))) == len(FRAMES)
    client.close()
    peer.close()
    assert proc.terminate() == 0


def test_max_clients_counts_both_protocols(cancorder_process, slcan_emulator):
    proc, port, scd = serve(cancorder_process, slcan_emulator, "--max-clients", "2")
    ecu = StreamClient(port)
    peer = Peer(scd)
    assert peer.element() == b"< hi >"
    proc.wait_for("socketcand client .* connected")
    proc.wait_for(r"\d\d:\d\d:\d\d client \S+ connected")  # the ECUconnect one, counted
    third = socket.create_connection(("127.0.0.1", scd), timeout=10)
    assert third.recv(100) == b""
    fourth = socket.create_connection(("127.0.0.1", port), timeout=10)
    assert fourth.recv(100) == b""
    proc.wait_for(r"socketcand client \S+ refused: already 2 clients \(--max-clients 2\)")
    proc.wait_for(r"warning: client \S+ refused: already 2 clients \(--max-clients 2\)")
    ecu.close()
    peer.close()
    assert proc.terminate() == 0


@pytest.mark.parametrize("source", ["mock-uds", "replay"])
def test_allow_transmit_refused_for_a_source_that_cannot(cancorder_process, tmp_path, source):
    """mock-uds and replay have no bus to write to: --allow-transmit is one line, exit 2."""
    args = ["mock-uds"]
    if source == "replay":
        log = tmp_path / "one.asc"
        with can.ASCWriter(str(log)) as writer:
            writer.on_message_received(can.Message(arbitration_id=0x123, data=b"\x01"))
        args = ["replay", str(log)]
    proc = cancorder_process(*args, "--no-zeroconf", "--socketcand", "127.0.0.1:0",
                             "--no-beacon", "--allow-transmit")
    assert proc.proc.wait(30) == 2
    errors = [line for line in proc.log.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: --allow-transmit: ") \
        and "cannot transmit" in errors[0], proc.log
    assert "Traceback" not in proc.log


def test_socketcand_options_need_socketcand(cancorder_process, slcan_emulator):
    proc = cancorder_process("serve", "-i", "slcan", "-c", slcan_emulator.url,
                             "--no-zeroconf", "--allow-transmit")
    assert proc.proc.wait(30) == 2
    assert "add --socketcand" in proc.log


def _rss_kb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_hostile_clients_against_a_real_process(cancorder_process, slcan_emulator):
    """Garbage, an endless command, thousands of opens (each closed after a few errors), and
    1 GB of input from a client the server must keep (whitespace between echo commands): the
    server's memory stays bounded and a python-can client gets every frame meanwhile."""
    proc, port, scd = serve(cancorder_process, slcan_emulator)
    bus = python_can_bus(scd, slcan_emulator.url)
    time.sleep(0.3)
    rss_before = _rss_kb(proc.proc.pid)
    closed = 0
    for chunk in (b"\x00garbage" * 8192, b"< send " + b"1" * 65536, b"< open x >" * 6500):
        sock = socket.create_connection(("127.0.0.1", scd), timeout=10)
        try:
            for _ in range(1024):  # up to 64 MB each; the server closes it long before
                sock.sendall(chunk)
        except OSError:
            closed += 1
        sock.close()
    assert closed == 3
    for _ in range(1000):  # thousands of opens of the right bus on fresh connections
        sock = socket.create_connection(("127.0.0.1", scd), timeout=10)
        sock.sendall(f"< open {slcan_emulator.url} >".encode())
        sock.close()
    # the storm may hold --max-clients (64) for a moment, until the server has seen those
    # connections close: the next client gets in once it has
    deadline = time.monotonic() + 20
    while True:
        flood = socket.create_connection(("127.0.0.1", scd), timeout=30)
        if flood.recv(6) == b"< hi >":
            break
        flood.close()
        assert time.monotonic() < deadline, "the server never took a client again"
        time.sleep(0.1)
    block = b" " * ((1 << 20) - 8) + b"< echo >"
    for _ in range(1024):  # 1 GB
        flood.sendall(block)
    echoes = b""
    while echoes.count(b"< echo >") < 1024:
        data = flood.recv(1 << 16)
        assert data, "the flooding client was closed"
        echoes += data
    flood.close()
    slcan_emulator.send_messages(FRAMES * 20)
    got = []
    deadline = time.monotonic() + 20
    while len(got) < len(FRAMES) * 20 and time.monotonic() < deadline:
        msg = bus.recv(1.0)
        if msg is not None:
            got.append(msg)
    bus.shutdown()
    assert len(got) == len(FRAMES) * 20
    rss_after = _rss_kb(proc.proc.pid)
    assert rss_after - rss_before < 50_000, (rss_before, rss_after)
    assert proc.terminate() == 0
    # garbage and the endless command: closed for bad commands; a wrong bus: closed at once
    assert "closed for bad commands 2" in proc.log
    assert "asked for bus 'x'" in proc.log


def test_beacon_found_by_python_can_inside_a_namespace():
    result = run_in_netns("tests/netns_socketcand_beacon.py")
    assert result["configs"] == [{"interface": "socketcand", "host": "127.0.0.1",
                                  "port": result["port"], "channel": result["channel"]}]
    assert result["received"] == [0x123, 0x1ABCDEF0]
    assert result["no_beacon_configs"] == []
    # every 3 s, as socketcand does (generous: a loaded machine may wake the thread late)
    assert len(result["beacon_gaps"]) == 2 and all(
        2.5 <= gap <= 4.5 for gap in result["beacon_gaps"]), result["beacon_gaps"]


def test_touCAN_transmits_through_can_write(cancorder_process, fake_library_path, control):
    """A socketcand client's frames reach the TouCAN library's can_write, flags and all."""
    proc = cancorder_process("touCAN", "--library", fake_library_path, "--no-zeroconf",
                             "--socketcand", "127.0.0.1:0", "--no-beacon", "--allow-transmit",
                             env=cancorder_env(**control.env()))
    proc.port()
    scd = int(proc.wait_for(r"socketcand serves bus '(\S+)' at \S+:(\d+)").group(2))
    peer = Peer(scd).open_raw("0")
    peer.send(b"< send 18DAF110 3 2 10 3 >< sendfd 7e0 12 " + b"aa " * 12 + b">< send 123 0 >")
    deadline = time.monotonic() + 10
    while len(control.calls_named("write")) < 3:
        assert time.monotonic() < deadline, control.calls()
        time.sleep(0.05)
    peer.close()
    assert control.calls_named("write") == [
        "write handle=0 id=18DAF110 xtd=1 fdf=0 brs=0 dlc=3 data=021003 rc=0",
        "write handle=0 id=7E0 xtd=0 fdf=1 brs=0 dlc=9 data=" + "AA" * 12 + " rc=0",
        "write handle=0 id=123 xtd=0 fdf=0 brs=0 dlc=0 data=- rc=0"]
    assert proc.terminate() == 0
    assert "frames transmitted 3 (refused 0, failed 0)" in proc.log


def test_python_can_backend_transmits_and_listen_only_wins(cancorder_process, slcan_emulator):
    """python-can's own slcan backend as the source: bus.send writes the line; with
    --listen-only nothing is sent whatever --allow-transmit says."""
    proc, port, scd = serve(cancorder_process, slcan_emulator, "--allow-transmit",
                            "--opt", "slcan_backend=python-can")
    peer = Peer(scd).open_raw(slcan_emulator.url)
    peer.send(b"< send 7e0 2 3e 0 >")
    deadline = time.monotonic() + 10
    while "t7E023E00" not in slcan_emulator.commands:
        assert time.monotonic() < deadline, slcan_emulator.commands
        time.sleep(0.05)
    peer.close()
    assert proc.terminate() == 0
    quiet = slcan_emulator.__class__()
    try:
        proc, port, scd = serve(cancorder_process, quiet, "--allow-transmit", "--listen-only")
        assert "transmit off (--listen-only wins)" in proc.log
        peer = Peer(scd).open_raw(quiet.url)
        peer.send(b"< send 7e0 2 3e 0 >")
        assert peer.element() == b"< error transmit disabled >"
        peer.close()
        assert proc.terminate() == 0
        assert "L" in quiet.commands and not [c for c in quiet.commands if c[:1] in "tT"]
    finally:
        quiet.close()


def test_fd_frames_and_fd_transmit_over_slcan(cancorder_process, slcan_emulator):
    proc, port, scd = serve(cancorder_process, slcan_emulator, "--allow-transmit", "--fd")
    fd_peer = Peer(scd).open_raw(slcan_emulator.url, mode=b"< rawmode fd >")
    classic = Peer(scd).open_raw(slcan_emulator.url)
    time.sleep(0.3)
    slcan_emulator.send_messages([
        can.Message(arbitration_id=0x7E8, is_extended_id=False, is_fd=True,
                    bitrate_switch=True, data=bytes(range(12))),
        can.Message(arbitration_id=0x123, is_extended_id=False, data=b"\x01")])
    fd_lines = fd_peer.elements(2)
    assert fd_lines[0].startswith(b"< fdframe 7E8 ")
    assert fd_lines[0].endswith(b" 000102030405060708090A0B >")
    assert fd_lines[1].startswith(b"< frame 123 ") and fd_lines[1].endswith(b" 01 >")
    assert classic.element().startswith(b"< frame 123 ")
    fd_peer.send(b"< sendfd 1abcdef0 16 " + b"5 " * 16 + b">")
    deadline = time.monotonic() + 10
    while "D1ABCDEF0A" + "05" * 16 not in slcan_emulator.commands:
        assert time.monotonic() < deadline, slcan_emulator.commands
        time.sleep(0.05)
    fd_peer.close()
    classic.close()
    assert proc.terminate() == 0


def test_slcan_refusals_reach_the_client_and_the_counters(cancorder_process, slcan_emulator):
    """A CAN FD frame on a bus opened without --fd is refused before the adapter; a frame the
    adapter refuses (BEL) is an error to the client and counted failed, never "sent"."""
    proc, port, scd = serve(cancorder_process, slcan_emulator, "--allow-transmit")
    peer = Peer(scd).open_raw(slcan_emulator.url)
    try:
        peer.send(b"< sendfd 123 12 " + b"1 " * 12 + b">")
        refused = peer.element()
        assert refused.startswith(b"< error transmit refused: a CAN FD frame (12 bytes) on a "
                                  b"bus not opened in CAN FD mode"), refused
        assert b"--fd" in refused
        slcan_emulator.refuse_transmits = True
        peer.send(b"< send 7e0 2 3e 0 >")
        failed = peer.element()
        assert failed.startswith(b"< error transmit failed: ") and b"BEL" in failed, failed
        slcan_emulator.refuse_transmits = False
        peer.send(b"< send 7e0 2 3e 1 >")
        assert wait_until(lambda: "t7E023E01" in slcan_emulator.commands)
        proc.wait_for(r"socketcand: transmitted 7E0#3E01 from ")
    finally:
        peer.close()
    transmits = [c for c in slcan_emulator.commands if c[:1] in "tTdDbB"]
    assert transmits == ["t7E023E00", "t7E023E01"]  # nothing of the FD frame reached it
    assert "transmit of 123##" + "01" * 12 + " refused: a CAN FD frame" in proc.log
    assert "transmit of 7E0#3E00 failed: " in proc.log
    assert proc.terminate() == 0
    assert "frames transmitted 1 (refused 1, failed 1)" in proc.log


def test_transmit_without_allow_transmit_is_said_naming_the_flag(cancorder_process,
                                                                 slcan_emulator):
    """Refused sends are counted and answered, and said in the log, once per interval."""
    proc, port, scd = serve(cancorder_process, slcan_emulator)
    peer = Peer(scd).open_raw(slcan_emulator.url)
    try:
        for index in range(50):
            peer.send(f"< send 7e0 1 {index:x} >".encode())
        assert peer.elements(50) == [b"< error transmit disabled >"] * 50
    finally:
        peer.close()
    assert proc.terminate() == 0
    lines = [line for line in proc.log.splitlines() if "refused: transmit is off" in line]
    assert len(lines) == 1, lines
    assert "warning: socketcand client 127.0.0.1:" in lines[0] and "transmit of 7E0#00" in \
        lines[0] and "serve with --allow-transmit" in lines[0]
    assert "frames transmitted 0 (refused 50, failed 0)" in proc.log


def test_python_can_opens_a_named_bus_by_its_name(cancorder_process, slcan_emulator):
    """--name can0: python-can's usual channel="can0" opens the bus (the channel still does);
    a wrong name is told the ones that work."""
    proc, port, scd = serve(cancorder_process, slcan_emulator, "--allow-transmit",
                            "--name", "can0")
    assert f"socketcand serves bus '{slcan_emulator.url}' at 127.0.0.1:{scd}, also opened as " \
           "'can0'" in proc.log
    bus = python_can_bus(scd, "can0")
    try:
        time.sleep(0.3)  # past the rawmode grace
        slcan_emulator.send_messages([FRAMES[0]])
        received = bus.recv(10)
        assert received is not None and received.arbitration_id == FRAMES[0].arbitration_id
        bus.send(can.Message(arbitration_id=0x7E0, is_extended_id=False, data=b"\x01"))
        assert wait_until(lambda: "t7E0101" in slcan_emulator.commands)
    finally:
        bus.shutdown()
    with pytest.raises(can.CanError) as refused:
        python_can_bus(scd, "can1")
    assert f"could not open bus: open {slcan_emulator.url} or can0" in str(refused.value)
    proc.wait_for(r"socketcand client \S+ asked for bus 'can1'; this server has "
                  rf"'{re.escape(slcan_emulator.url)}' or 'can0'")
    assert proc.terminate() == 0


def test_config_buses_each_serve_socketcand_with_metrics(cancorder_process, tmp_path):
    """serve --config: socketcand keys per [[bus]]; python-can opens each bus by its channel;
    transmit counts show up as cancorder_socketcand_* metrics."""
    from tests.emulators.slcan_adapter import SlcanEmulator
    from tests.helpers import http_get
    from tests.helpers import free_port
    from tests.test_production import metric, wait_until

    a, b = SlcanEmulator(), SlcanEmulator()
    metrics_port = free_port()
    path = tmp_path / "car.toml"
    path.write_text(f"""
zeroconf = false
bind = "127.0.0.1"
metrics = "127.0.0.1:{metrics_port}"
[[bus]]
name = "powertrain"
source = "slcan"
channel = "{a.url}"
socketcand = "127.0.0.1:0"
beacon = false
allow_transmit = true
[[bus]]
name = "body"
source = "slcan"
channel = "{b.url}"
socketcand = "127.0.0.1:0"
no_beacon = true
""")
    try:
        proc = cancorder_process("serve", "--config", str(path))
        found = {}
        deadline = time.monotonic() + 30
        while len(found) < 2:
            for m in re.finditer(r"socketcand serves bus '(\S+)' at \S+:(\d+)", proc.log):
                found[m.group(1)] = int(m.group(2))
            assert time.monotonic() < deadline, proc.log
            time.sleep(0.1)
        bus_a = python_can_bus(found[a.url], a.url)
        bus_b = python_can_bus(found[b.url], b.url)
        try:
            time.sleep(0.3)
            a.send_messages([FRAMES[0]])
            b.send_messages([FRAMES[1]])
            assert bus_a.recv(10).arbitration_id == FRAMES[0].arbitration_id
            assert bus_b.recv(10).arbitration_id == FRAMES[1].arbitration_id
            bus_a.send(can.Message(arbitration_id=0x7E0, is_extended_id=False, data=b"\x01"))
            bus_b.send(can.Message(arbitration_id=0x7E0, is_extended_id=False, data=b"\x01"))
            wait_until(lambda: "t7E0101" in a.commands, what="the transmit on powertrain")

            def transmitted(bus):
                return metric(http_get(metrics_port, "/metrics")[1],
                              "cancorder_socketcand_transmitted", bus=bus)

            wait_until(lambda: transmitted("powertrain") == 1, what="the metric")
            assert transmitted("body") == 0
            assert metric(http_get(metrics_port, "/metrics")[1],
                          "cancorder_socketcand_transmit_refused", bus="body") == 1
            assert "t7E0101" not in b.commands
        finally:
            bus_a.shutdown()
            bus_b.shutdown()
        assert proc.terminate() == 0
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("command", ["serve", "touCAN", "mock-uds", "replay", "relay"])
def test_socketcand_alone_means_socketcands_port_on_every_serving_command(command):
    """``--socketcand`` without a value: socketcand's own port 29536, on every address
    (``--bind``'s); with one, that port or address (0: any free port)."""
    from cancorder.cli import serving_sources
    from cancorder.sinks.socketcand import DEFAULT_PORT

    parser = {source.parser.prog.split()[-1]: source.parser
              for source in serving_sources().values()}[command]
    required = {"serve": ["-i", "slcan", "-c", "x"], "replay": ["x.blf"],
                "relay": ["mqtt://127.0.0.1"]}.get(command, [])
    assert parser.parse_args(required).socketcand is None
    assert parser.parse_args(required + ["--socketcand"]).socketcand == ("", DEFAULT_PORT)
    assert DEFAULT_PORT == 29536
    assert parser.parse_args(required + ["--socketcand", "1234"]).socketcand == ("", 1234)
    assert parser.parse_args(required + ["--socketcand", "127.0.0.1:0"]).socketcand == \
        ("127.0.0.1", 0)
