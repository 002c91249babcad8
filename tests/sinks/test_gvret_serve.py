"""`--gvret` end to end: the tests' GVRET client (SavvyCAN's handshake and parser states,
tests/gvret_client.py) against `cancorder serve` on the SLCAN emulator: the connect transcript,
every frame equal to what an ECUconnect client got, transmit only with --allow-transmit,
bus set-up refused politely, counters in the totals and the metrics, and the beacon that
SavvyCAN's connection window listens for."""
import struct
import time

import can
import pytest

from tests.gvret_client import GvretClient, transmit_command
from tests.helpers import StreamClient, wait_until
from tests.netns import run_in_netns

FRAMES = [
    can.Message(arbitration_id=0x123, is_extended_id=False, data=bytes.fromhex("01FF23456789ABCD")),
    can.Message(arbitration_id=0x18DAF110, is_extended_id=True, data=b"\x02\x10\x03"),
    can.Message(arbitration_id=0x000, is_extended_id=False, data=b""),
    can.Message(arbitration_id=0x00000001, is_extended_id=True, data=b"\xff"),
    can.Message(arbitration_id=0x7FF, is_extended_id=False, data=bytes(range(8))),
]


def serve(cancorder_process, emu, *extra):
    proc = cancorder_process("serve", "-i", "slcan", "-c", emu.url, "-b", "500000",
                             "--no-zeroconf", "--gvret", "127.0.0.1:0", "--no-beacon", *extra)
    port = proc.port()
    gvret = int(proc.wait_for(r"GVRET serves bus '\S+' at \S+:(\d+)").group(1))
    return proc, port, gvret


def test_savvycan_handshake_transcript_then_every_frame_like_ecuconnect(cancorder_process,
                                                                       slcan_emulator):
    proc, port, gvret = serve(cancorder_process, slcan_emulator)
    reference = StreamClient(port)
    client = GvretClient(gvret)
    try:
        before = time.time_ns() // 1000
        replies = client.connect_like_savvycan()
        after = time.time_ns() // 1000
        # the device's answers, byte for byte as ESP32RET sends them: one bus, 500 kbit/s,
        # enabled, not listen-only; the second bus disabled; no single-wire CAN, no LIN
        stamp = replies["time"][1]
        assert (stamp - (before & 0xFFFFFFFF)) % (1 << 32) <= after - before
        assert bytes(client.received) == (
            bytes.fromhex("F10C01") +
            bytes.fromhex("F106 01 20A10700 00 00000000") +
            bytes.fromhex("F107 6A02 20 00 00 00") +
            bytes.fromhex("F101") + struct.pack("<I", stamp) +
            bytes.fromhex("F109DEAD") +
            bytes.fromhex("F10D") + bytes(15))
        slcan_emulator.send_messages(FRAMES * 40)
        want = reference.wait_frames(len(FRAMES) * 40)
        got = client.wait_frames(len(want))
        # SavvyCAN's keep-alive goes on answering while frames flow
        client.send(bytes.fromhex("F109"))
        client.wait(lambda events: sum(e[0] == "validated" for e in events) == 2)
    finally:
        reference.close()
        client.close()
    assert len(got) == len(want)
    for frame, (micros, can_id, flags, data) in zip(got, want):
        assert frame == (micros & 0xFFFFFFFF, can_id, bool(flags & 1), 0, data, False)
    assert [f[1] for f in got] == [m.arbitration_id for m in FRAMES * 40]
    assert proc.terminate() == 0
    assert "GVRET: 0 connected, clients served 1, dropped for lag 0, closed for bad commands " \
           "0, frames transmitted 0 (refused 0, failed 0)" in proc.log


def test_transmit_reaches_the_adapter_only_with_allow_transmit(cancorder_process,
                                                              slcan_emulator):
    proc, port, gvret = serve(cancorder_process, slcan_emulator)
    client = GvretClient(gvret)
    try:
        client.send(b"\xe7\xe7" + transmit_command(0x7E0, False, b"\x01"))
        proc.wait_for(r"GVRET client \S+: transmit of 7E0#01 refused: transmit is off: serve "
                      r"with --allow-transmit")
    finally:
        client.close()
    time.sleep(0.3)
    assert not [c for c in slcan_emulator.commands if c[:1] in "tTdDbB"]
    assert proc.terminate() == 0
    assert "frames transmitted 0 (refused 1, failed 0)" in proc.log

    proc, port, gvret = serve(cancorder_process, slcan_emulator, "--allow-transmit")
    client = GvretClient(gvret)
    try:
        client.connect_like_savvycan()
        client.send(transmit_command(0x7E0, False, b"\x02\x10\x03") +
                    transmit_command(0x18DA10F1, True, bytes.fromhex("0102030405060708")) +
                    transmit_command(0x123, False, b"") +
                    transmit_command(0x456, False, b"\x01", bus=1))
        assert wait_until(lambda: len([c for c in slcan_emulator.commands
                                       if c[:1] in "tT"]) == 3), slcan_emulator.commands
        proc.wait_for(r"transmit of 456#01 refused: bus 1: this GVRET device has bus 0 only")
    finally:
        client.close()
    assert [c for c in slcan_emulator.commands if c[:1] in "tT"] == [
        "t7E03021003", "T18DA10F180102030405060708", "t1230"]
    proc.wait_for(r"GVRET: transmitted 7E0#021003 from 127\.0\.0\.1:\d+ to the bus")
    assert proc.terminate() == 0
    assert "frames transmitted 3 (refused 1, failed 0)" in proc.log


def test_listen_only_wins_over_allow_transmit(cancorder_process, slcan_emulator):
    proc, port, gvret = serve(cancorder_process, slcan_emulator, "--allow-transmit",
                              "--listen-only")
    client = GvretClient(gvret)
    try:
        replies = client.connect_like_savvycan()
        assert replies["params"][1] == (1, 1, 500000)  # reported listen-only
        client.send(transmit_command(0x7E0, False, b"\x01"))
        proc.wait_for(r"transmit of 7E0#01 refused: the bus is listen-only")
    finally:
        client.close()
    assert not [c for c in slcan_emulator.commands if c[:1] in "tT"]
    assert proc.terminate() == 0


def test_a_bus_setup_is_refused_politely_unless_it_matches(cancorder_process, slcan_emulator):
    """cancorder owns the adapter: SavvyCAN's set-up (command 05) for another bit rate is
    answered with the bus's real parameters, which SavvyCAN then shows; the same set-up as the
    bus is taken silently."""
    proc, port, gvret = serve(cancorder_process, slcan_emulator)
    client = GvretClient(gvret)
    try:
        client.connect_like_savvycan()
        count = len(client.events)
        same = struct.pack("<II", 0xC0000000 | 500000, 0x80000000)
        client.send(b"\xf1\x05" + same + b"\x00" + bytes.fromhex("F109"))
        client.wait(lambda events: len(events) == count + 1)
        assert client.events[-1] == ("validated",)  # nothing said about the set-up
        other = struct.pack("<II", 0xC0000000 | 250000, 0x80000000)
        client.send(b"\xf1\x05" + other + b"\x00")
        client.wait(lambda events: len(events) == count + 2)
        assert client.events[-1] == ("params", (1, 0, 500000), (0, 0, 0))
        proc.wait_for(r"GVRET client \S+ asked for 250000 bit/s: refused, cancorder keeps the "
                      r"bus as it is \(500000 bit/s\)")
    finally:
        client.close()
    assert proc.terminate() == 0


def test_a_client_sending_garbage_is_closed_and_counted(cancorder_process, slcan_emulator):
    proc, port, gvret = serve(cancorder_process, slcan_emulator)
    client = GvretClient(gvret)
    try:
        client.send(b"\xe7" + b"\xf1\xfe" * 5)
        client.sock.settimeout(10)
        assert client.sock.recv(100) == b""  # closed
    finally:
        client.close()
    proc.wait_for(r"GVRET client \S+ closed: 5 bad commands")
    assert proc.terminate() == 0
    assert "closed for bad commands 1" in proc.log


def test_gvret_counters_are_metrics(cancorder_process, slcan_emulator):
    from tests.helpers import free_port, http_get
    from tests.test_production import metric

    metrics_port = free_port()
    proc, port, gvret = serve(cancorder_process, slcan_emulator, "--metrics",
                              f"127.0.0.1:{metrics_port}")
    client = GvretClient(gvret)
    try:
        client.connect_like_savvycan()
        slcan_emulator.send_messages(FRAMES)
        client.wait_frames(len(FRAMES))
        client.send(transmit_command(0x7E0, False, b"\x01"))

        def value(name):
            return metric(http_get(metrics_port, "/metrics")[1], name,
                          bus=slcan_emulator.url)

        assert wait_until(lambda: value("cancorder_gvret_transmit_refused") == 1)
        assert value("cancorder_gvret_frames_sent") == len(FRAMES)
        assert value("cancorder_gvret_clients") == 1
    finally:
        client.close()
    assert proc.terminate() == 0


def test_port_23_without_the_privilege_is_one_line_saying_how(monkeypatch):
    """Ports below 1024 need a privilege: the bind's EACCES becomes a usage error that says
    how to give it (this suite runs as root, so the kernel's refusal is stood in for)."""
    import errno

    from cancorder.errors import UsageError
    from cancorder.sinks import gvret

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(gvret, "bind_listener", refused)
    server = gvret.GvretServer("can0", beacon=False, log=lambda *event: None)
    with pytest.raises(UsageError) as caught:
        server._listen()
    assert str(caught.value).startswith("--gvret: port 23 needs a privilege")
    assert "setcap cap_net_bind_service=+ep" in str(caught.value)


def test_the_beacon_is_what_savvycans_connection_window_listens_for():
    """SavvyCAN binds UDP 17222 and lists each sender's address as a GVRET device; the
    beacon goes to the broadcast address of the bound network only (a network namespace with
    two networks), from the listener's address, and --no-beacon stops it."""
    out = run_in_netns("tests/netns_gvret_beacon.py")
    assert out["from_bound"] == ["10.27.1.1"], out  # the address SavvyCAN then connects to
    assert out["payloads"] == ["1cefaced"], out  # ESP32RET's four bytes
    assert out["on_other_network"] == [], out
    assert 3 <= len(out["bound"]) <= 5, out  # one a second, as ESP32RET
    assert out["every_destinations"] == ["10.27.1.255", "10.27.2.255"], out
    assert out["with_no_beacon"] == [], out


def test_config_key_gvret_and_its_port_claim(tmp_path):
    """`gvret = "ADDR:PORT"` in a [[bus]] table is --gvret; GVRET's port on a socketcand port
    of another bus is refused before anything is served, by --check and by the start alike."""
    import subprocess
    import sys

    from tests.helpers import ROOT, cancorder_env, free_port

    port_a, port_b, shared = free_port(), free_port(), free_port()
    path = tmp_path / "cancorder.toml"
    path.write_text(f'source = "mock-uds"\nzeroconf = false\n'
                    f'[[bus]]\nname = "a"\nport = {port_a}\nsocketcand = "127.0.0.1:{shared}"\n'
                    f'beacon = false\n'
                    f'[[bus]]\nname = "b"\nport = {port_b}\ngvret = "127.0.0.1:{shared}"\n')
    expected = (f'error: config {path}, bus "b": GVRET port {shared} is also bus "a"\'s: a port '
                "serves one bus and one protocol: give GVRET another port")
    for extra in (["--check"], []):
        run = subprocess.run([sys.executable, "-m", "cancorder", "serve", "--config", str(path),
                              *extra], cwd=ROOT, env=cancorder_env(), capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 2 and run.stderr.startswith(expected), run.stderr
        assert run.stderr.count("\n") == 1, run.stderr
    path.write_text(path.read_text().replace(f'gvret = "127.0.0.1:{shared}"',
                                             'gvret = "127.0.0.1:0"\nno_beacon = true'))
    run = subprocess.run([sys.executable, "-m", "cancorder", "serve", "--config", str(path),
                          "--check"], cwd=ROOT, env=cancorder_env(), capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "\ngvret = " in run.stdout, run.stdout  # the key, resolved
