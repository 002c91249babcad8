"""`cancorder detect` and `cancorder serve --auto`: faked /sys/class/net (and `ip`), faked
serial ports and gs_usb scans, a fake TouCAN library compiled here; serve --auto end to end on
the SLCAN emulator exposed as a faked CANable serial port."""
import json
import os
import shutil
import stat
import subprocess
import textwrap

import can
import pytest
import usb.core
from serial.tools import list_ports, list_ports_common

from cancorder import cli, detection
from tests.helpers import ROOT, StreamClient, cancorder_env

FAKES = os.path.join(ROOT, "tests", "fakes")

IP_JSON = [
    {"ifindex": 5, "ifname": "can0", "flags": ["NOARP", "UP", "LOWER_UP", "ECHO"], "mtu": 72,
     "operstate": "UP", "link_type": "can",
     "linkinfo": {"info_kind": "can", "info_data": {
         "ctrlmode": ["FD"], "state": "ERROR-ACTIVE", "restart_ms": 0,
         "bittiming": {"bitrate": 500000, "sample_point": "0.875", "tq": 25},
         "data_bittiming": {"bitrate": 2000000, "sample_point": "0.750"},
         "clock": 80000000}}},
    {"ifindex": 6, "ifname": "vcan0", "flags": ["NOARP", "UP", "LOWER_UP"], "mtu": 72,
     "operstate": "UNKNOWN", "link_type": "can", "linkinfo": {"info_kind": "vcan"}},
    {"ifindex": 7, "ifname": "can1", "flags": ["NOARP", "ECHO"], "mtu": 16,
     "operstate": "DOWN", "link_type": "can",
     "linkinfo": {"info_kind": "can", "info_data": {"state": "STOPPED", "restart_ms": 0}}},
    {"ifindex": 2, "ifname": "eth0", "flags": ["BROADCAST", "UP"], "operstate": "UP",
     "link_type": "ether"},
]


def fake_sysfs(root, entries):
    """``entries``: name -> (type, operstate, has a device link); up unless operstate down."""
    net = root / "net"
    net.mkdir()
    for name, (kind, state, device) in entries.items():
        (net / name).mkdir()
        (net / name / "type").write_text(f"{kind}\n")
        (net / name / "operstate").write_text(f"{state}\n")
        (net / name / "flags").write_text("0x1080\n" if state == "down" else "0x10c1\n")
        if device:
            (net / name / "device").mkdir()
    return net


SYSFS = {"can0": (280, "up", True), "vcan0": (280, "unknown", False),
         "can1": (280, "down", True), "eth0": (1, "up", True), "lo": (772, "unknown", False)}


@pytest.fixture
def no_hardware(monkeypatch, tmp_path):
    """Nothing at all: empty sysfs, no serial port, no USB device, no TouCAN library."""
    empty = tmp_path / "empty-net"
    empty.mkdir()
    monkeypatch.setenv("CANCORDER_SYSFS_NET", str(empty))
    monkeypatch.setattr(list_ports, "comports", lambda include_links=False: [])
    from gs_usb.gs_usb import GsUsb

    monkeypatch.setattr(GsUsb, "scan", classmethod(lambda cls: []))
    monkeypatch.delenv(detection.TOUCAN_ENV, raising=False)
    monkeypatch.setattr(detection, "TOUCAN_PATHS", (str(tmp_path / "libUVCANTOU.dylib"),))
    monkeypatch.setattr("ctypes.util.find_library", lambda name: None)
    return tmp_path


def fake_ip(tmp_path, monkeypatch, links=IP_JSON):
    """An `ip` first on PATH that answers `ip -details -json link show` like iproute2."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "ip"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        [ "$*" = "-details -json link show" ] || exit 1
        cat <<'EOF'
        {json.dumps(links)}
        EOF
        """))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")


def port(device, vid=None, pid=None, description="n/a", **extra):
    info = list_ports_common.ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.description = vid, pid, description
    for key, value in extra.items():
        setattr(info, key, value)
    return info


class FakeUsbDevice:
    def __init__(self, vid=0x1D50, pid=0x606F, product="candleLight USB to CAN adapter",
                 serial="004A00215734", denied=False):
        self.idVendor, self.idProduct, self.bus, self.address = vid, pid, 1, 5
        self._product, self._serial, self._denied = product, serial, denied

    @property
    def product(self):
        if self._denied:  # what pyusb raises reading a string descriptor without permission
            raise usb.core.USBError("Access denied (insufficient permissions)", -3, 13)
        return self._product

    @property
    def serial_number(self):
        return self._serial


class FakeGsUsb:
    def __init__(self, device):
        self.gs_usb = device


def run_detect(capsys, *args):
    code = cli.main(["detect", *args])
    out, err = capsys.readouterr()
    return code, out, err


def rows(out):
    return {row["name"]: row for row in json.loads(out)}


# ---- SocketCAN ----

def test_socketcan_from_sysfs_with_state_and_bitrate_from_ip(no_hardware, monkeypatch, capsys):
    monkeypatch.setenv("CANCORDER_SYSFS_NET", str(fake_sysfs(no_hardware, SYSFS)))
    fake_ip(no_hardware, monkeypatch)
    code, out, err = run_detect(capsys, "--json")
    assert code == 0, err
    found = json.loads(out)
    assert [row["name"] for row in found] == ["can0", "vcan0", "can1"]  # usable, real first
    can0, vcan0, can1 = found
    assert can0["details"] == "can, up, ERROR-ACTIVE, 500,000 bit/s, data 2,000,000 bit/s"
    assert can0["command"] == "cancorder serve -i socketcan -c can0"
    assert can0["usable"] and (can0["interface"], can0["channel"]) == ("socketcan", "can0")
    assert vcan0["details"] == "vcan, up" and vcan0["usable"]
    assert can1["details"] == "can, down, STOPPED" and not can1["usable"]
    assert can1["fix"] == "sudo ip link set can1 up type can bitrate 500000"


def test_socketcan_without_ip_uses_sysfs_alone(no_hardware, monkeypatch, capsys):
    monkeypatch.setenv("CANCORDER_SYSFS_NET", str(fake_sysfs(no_hardware, SYSFS)))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    code, out, _ = run_detect(capsys, "--json")
    found = rows(out)
    assert found["can0"]["details"] == "can, up"
    assert found["vcan0"]["details"] == "virtual, up"
    assert found["can1"]["details"] == "can, down" and not found["can1"]["usable"]
    assert found["vcan0"]["fix"] == ""


# ---- serial ports ----

def test_serial_ports_marked_when_known_slcan(no_hardware, monkeypatch, capsys):
    denied = no_hardware / "ttyACM9"
    denied.write_text("")
    monkeypatch.setattr(list_ports, "comports", lambda include_links=False: [
        port("/dev/ttyS4"),
        port("/dev/ttyACM1", 0x0483, 0x5740, "STM32 Virtual ComPort"),
        port("/dev/ttyUSB0", 0x0403, 0x6001, "CANUSB", serial_number="LWO8ZM3K"),
        port("/dev/ttyACM0", 0x16D0, 0x117E, "CANable2 b158aa7 github.com/normaldotcom/canable2",
             serial_number="208B38B43136"),
        port(str(denied), 0x04D8, 0x000A, "USBtin"),
    ])
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: path != str(denied)
                        and real_access(path, mode))
    code, out, err = run_detect(capsys, "--json")
    assert code == 0, err
    found = json.loads(out)
    assert [row["kind"] for row in found] == ["slcan", "slcan", "slcan", "serial", "serial"]
    by_name = {row["name"]: row for row in found}
    acm0 = by_name["/dev/ttyACM0"]
    assert acm0["details"] == ("CANable / CANable 2.0 (slcan firmware), USB 16d0:117e, CANable2 "
                               "b158aa7 github.com/normaldotcom/canable2, serial 208B38B43136")
    assert acm0["command"] == "cancorder serve -i slcan -c /dev/ttyACM0 -b 500000"
    assert acm0["usable"] and acm0["fix"] == ""
    usb0 = by_name["/dev/ttyUSB0"]
    assert usb0["details"].startswith("SLCAN adapter (by its USB name), USB 0403:6001, CANUSB")
    assert usb0["usable"]
    tin = by_name[str(denied)]
    assert tin["details"].startswith("USBtin (Microchip CDC), USB 04d8:000a")
    assert not tin["usable"] and "dialout" in tin["fix"]
    stm = by_name["/dev/ttyACM1"]
    assert stm["details"].startswith("maybe SLCAN: STM32 virtual COM port")
    assert not stm["usable"]
    assert by_name["/dev/ttyS4"]["fix"].startswith("not a known SLCAN adapter")


# ---- gs_usb ----

def test_gs_usb_device_row(no_hardware, monkeypatch, capsys):
    from gs_usb.gs_usb import GsUsb

    monkeypatch.setattr(GsUsb, "scan", classmethod(lambda cls: [FakeGsUsb(FakeUsbDevice())]))
    code, out, _ = run_detect(capsys, "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert row == {"kind": "gs_usb", "name": "gs_usb 0",
                   "details": "candleLight USB to CAN adapter, USB 1d50:606f, bus 1 address 5, "
                              "serial 004A00215734",
                   "command": "cancorder serve -i gs_usb -c 0 -b 500000", "fix": "",
                   "usable": True, "interface": "gs_usb", "channel": 0}


def test_gs_usb_without_libusb_is_a_row_with_the_fix(no_hardware, monkeypatch, capsys):
    from gs_usb.gs_usb import GsUsb

    def scan(cls):
        raise usb.core.NoBackendError("No backend available")

    monkeypatch.setattr(GsUsb, "scan", classmethod(scan))
    code, out, err = run_detect(capsys)
    assert code == 1  # a problem is not an adapter
    assert "Traceback" not in out + err
    assert "libusb is missing" in out and "sudo apt install libusb-1.0-0" in out
    assert "no CAN adapter found" in err


def test_gs_usb_permission_denied_is_a_row_with_the_fix(no_hardware, monkeypatch, capsys):
    from gs_usb.gs_usb import GsUsb

    def scan(cls):
        raise usb.core.USBError("Access denied (insufficient permissions)", -3, 13)

    monkeypatch.setattr(GsUsb, "scan", classmethod(scan))
    code, out, _ = run_detect(capsys, "--json")
    (row,) = json.loads(out)
    assert row["kind"] == "problem" and row["details"] == "permission denied while scanning USB devices"
    assert row["fix"].startswith('add a udev rule, e.g. SUBSYSTEM=="usb"')

    monkeypatch.setattr(GsUsb, "scan", classmethod(
        lambda cls: [FakeGsUsb(FakeUsbDevice(denied=True))]))
    code, out, _ = run_detect(capsys, "--json")
    (row,) = json.loads(out)
    assert row["kind"] == "gs_usb" and not row["usable"]
    assert row["details"] == "USB 1d50:606f, bus 1 address 5, serial 004A00215734"
    assert row["fix"].startswith("no permission to open it: add a udev rule")


# ---- TouCAN ----

@pytest.fixture
def fake_toucan(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler to build the fake TouCAN library")

    def build(name, symbols):
        source = tmp_path / f"{name}.c"
        source.write_text("".join(f"int {s}(void) {{ return 0; }}\n" for s in symbols))
        library = tmp_path / f"{name}.so"
        subprocess.run([cc, "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
        return str(library)

    return build


def test_toucan_library(no_hardware, monkeypatch, capsys, fake_toucan):
    library = fake_toucan("libUVCANTOU", ["can_test", "can_init", "can_exit", "can_start",
                                          "can_read", "can_write", "can_status"])
    monkeypatch.setenv(detection.TOUCAN_ENV, library)
    code, out, _ = run_detect(capsys, "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert row["kind"] == "toucan" and row["details"] == f"CAN API V3 library {library}"
    assert row["command"] == f"{detection.TOUCAN_ENV}={library} cancorder touCAN"

    other = fake_toucan("libother", ["something_else"])
    monkeypatch.setenv(detection.TOUCAN_ENV, other)
    (row,) = json.loads(run_detect(capsys, "--json")[1])
    assert row["kind"] == "problem"
    assert row["details"] == (f"{other} is not the TouCAN CAN API V3 library "
                              "(no can_init, can_start, can_read, can_exit)")

    monkeypatch.setenv(detection.TOUCAN_ENV, str(no_hardware / "missing.dylib"))
    (row,) = json.loads(run_detect(capsys, "--json")[1])
    assert row["details"].endswith("missing.dylib: no such file")


def test_toucan_in_the_installers_path(no_hardware, monkeypatch, capsys, fake_toucan):
    library = fake_toucan("libUVCANTOU", ["can_init", "can_exit", "can_start", "can_read"])
    monkeypatch.setattr(detection, "TOUCAN_PATHS", (library,))
    (row,) = json.loads(run_detect(capsys, "--json")[1])
    assert row["command"] == "cancorder touCAN"


# ---- python-can's own detection, opt-in ----

def test_interfaces_runs_python_cans_detection(no_hardware, capsys):
    bus = can.Bus(interface="virtual", channel="detect-test")
    try:
        code, out, _ = run_detect(capsys, "--json", "--interfaces", "virtual")
    finally:
        bus.shutdown()
    assert code == 0
    found = rows(out)
    row = found["virtual detect-test"]
    assert row["kind"] == "python-can" and row["usable"]
    assert row["command"] == "cancorder serve -i virtual -c detect-test -b 500000"
    assert "virtual detect-test" not in rows(run_detect(capsys, "--json")[1] or "[]")


def test_unknown_interface_is_a_usage_error(no_hardware, capsys):
    code, _, err = run_detect(capsys, "--interfaces", "virtual,nosuchcan")
    assert code == 2
    assert err.startswith("error: --interfaces: unknown python-can interface nosuchcan: use")


# ---- the table, and nothing found ----

def test_table_has_every_command(no_hardware, monkeypatch, capsys):
    monkeypatch.setenv("CANCORDER_SYSFS_NET", str(fake_sysfs(no_hardware, SYSFS)))
    monkeypatch.setattr(list_ports, "comports", lambda include_links=False: [
        port("/dev/ttyACM0", 0x16D0, 0x117E, "CANable")])
    code, out, _ = run_detect(capsys)
    assert code == 0
    for command in ("cancorder serve -i socketcan -c can0",
                    "cancorder serve -i socketcan -c vcan0",
                    "cancorder serve -i slcan -c /dev/ttyACM0 -b 500000"):
        assert command in out
    assert "\x1b[" not in out  # captured, not a terminal: plain


def test_nothing_found_says_what_was_looked_for(no_hardware, capsys):
    code, out, err = run_detect(capsys)
    assert code == 1
    assert out == ""
    assert err.startswith("cancorder detect: no CAN adapter found. Looked for: SocketCAN "
                          "interfaces")
    for words in ("serial ports with SLCAN adapters", "gs_usb devices", "the TouCAN library",
                  "To make one appear", "sudo ip link set can0 up type can bitrate 500000",
                  "sudo ip link add dev vcan0 type vcan", "--interfaces pcan,kvaser,vector"):
        assert words in err
    code, out, err = run_detect(capsys, "--json")
    assert code == 1 and json.loads(out) == []


# ---- serve --auto ----

def test_serve_auto_without_adapters_is_a_clear_error(no_hardware, capsys):
    code = cli.main(["serve", "--auto", "--no-zeroconf"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: --auto: no CAN adapter found. Looked for:")
    assert len(err.splitlines()) == 1


def test_serve_auto_errors_are_one_short_line(no_hardware, monkeypatch, capsys):
    """What was found but cannot serve is a warning line each; the error stays short."""
    import usb.core
    from gs_usb.gs_usb import GsUsb

    def no_libusb(cls):
        raise usb.core.NoBackendError("No backend available")

    monkeypatch.setattr(GsUsb, "scan", classmethod(no_libusb))
    assert cli.main(["serve", "--auto", "--no-zeroconf"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert "warning: --auto: gs_usb: libusb is missing" in lines[0] and "apt install" in lines[0]
    assert lines[-1].startswith("error: --auto: no CAN adapter found. Looked for: SocketCAN "
                                "interfaces; serial ports with SLCAN adapters; gs_usb devices")
    assert "cancorder detect" in lines[-1] and len(lines[-1]) < 250, len(lines[-1])
    net = fake_sysfs(no_hardware, {"can9": (280, "up", True)})
    monkeypatch.setenv("CANCORDER_SYSFS_NET", str(net))
    assert cli.main(["serve", "--auto", "--no-zeroconf"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert any("warning: --auto: can9 does not open: " in line for line in lines)
    assert lines[-1] == "error: --auto: no detected adapter opens (tried can9; each one's " \
                        "reason is above)"


def test_serve_auto_refuses_an_interface_too(capsys):
    assert cli.main(["serve", "--auto", "-i", "slcan"]) == 2
    assert "--auto chooses the interface and channel itself" in capsys.readouterr().err


def auto_env(tmp_path, ports):
    empty = tmp_path / "auto-net"
    if not empty.exists():
        empty.mkdir()
    return cancorder_env(PYTHONPATH=f"{FAKES}{os.pathsep}{ROOT}",
                         CANCORDER_FAKE_SERIAL_PORTS=json.dumps(ports),
                         CANCORDER_FAKE_GS_USB="none", CANCORDER_SYSFS_NET=str(empty),
                         CANCORDER_TOUCAN_LIBRARY="")


def test_serve_auto_takes_the_canable(slcan_emulator, cancorder_process, tmp_path):
    env = auto_env(tmp_path, [
        {"device": "/dev/ttyS0"},  # a legacy port: listed, never opened
        {"device": slcan_emulator.url, "vid": 0x16D0, "pid": 0x117E, "description": "CANable2"}])
    server = cancorder_process("serve", "--auto", "--no-zeroconf", "-b", "250000", env=env)
    port = server.port()
    assert server.wait_for(r"--auto: using slcan (\S+)").group(1) == slcan_emulator.url
    assert "CANable / CANable 2.0 (slcan firmware), USB 16d0:117e" in server.log
    slcan_emulator.wait_open()
    assert "S5" in slcan_emulator.commands  # -b 250000 reached the adapter
    client = StreamClient(port)
    server.wait_for(r"connected \(1 connected\)")
    slcan_emulator.send_messages([can.Message(arbitration_id=0x321, is_extended_id=False,
                                              data=b"\x01\x02")])
    (frame,) = client.wait_frames(1)
    assert frame[1:] == (0x321, 0, b"\x01\x02")
    client.close()
    assert server.terminate() == 0


def test_serve_auto_skips_what_does_not_open(slcan_emulator, cancorder_process, tmp_path):
    env = auto_env(tmp_path, [
        {"device": "socket://127.0.0.1:1", "vid": 0x16D0, "pid": 0x117E},  # refused
        {"device": slcan_emulator.url, "vid": 0x16D0, "pid": 0x117E}])
    net = tmp_path / "auto-net"
    (net / "can9").mkdir()
    (net / "can9" / "type").write_text("280\n")  # a SocketCAN interface that is not there
    (net / "can9" / "operstate").write_text("up\n")
    server = cancorder_process("serve", "--auto", "--no-zeroconf", env=env)
    server.port()
    log = server.log
    assert "--auto: can9 does not open:" in log
    assert "--auto: socket://127.0.0.1:1 does not open:" in log
    assert f"--auto: using slcan {slcan_emulator.url}" in log
    assert log.index("can9 does not open") < log.index("127.0.0.1:1 does not open") < \
        log.index("--auto: using")
    assert server.terminate() == 0

