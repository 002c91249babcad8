"""The standalone executable: `make exe` builds dist/cancorder, which is then run end to end.

Run alone with ``make test-exe`` (``pytest -m exe``); the default test run leaves these out.
The executable runs from a scratch folder with PYTHONPATH unset, so nothing of the source
checkout can help it. A one-file executable is a bootloader with Python as its child: every
process is stopped with SIGTERM (passed on to the child), never SIGKILL, which would orphan the
child with its port (`_stop` falls back to killing the child first, then the bootloader).
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import can
import pytest

from tests.helpers import ROOT, CancorderProcess, StreamClient, cancorder_env, free_port
from tests.netns import run_in_netns
from tests.commands.test_mock_uds_serve import expected_frames

pytestmark = pytest.mark.exe

EXE = os.path.join(ROOT, "dist", "cancorder")
#: the backends the executable must carry (python-can imports them by name at run time)
NAMED_BACKENDS = ["socketcan", "slcan", "gs_usb", "serial", "virtual", "pcan", "kvaser",
                  "vector", "ixxat"]


@pytest.fixture(scope="module")
def exe():
    """Build dist/cancorder with `make exe` (a clean build of the spec, in .venv-exe)."""
    done = subprocess.run(["make", "exe"], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, f"make exe failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert os.access(EXE, os.X_OK)
    return EXE


@pytest.fixture
def scratch(tmp_path):
    """Where the executable runs: an empty folder, and no PYTHONPATH."""
    return str(tmp_path)


def exe_env(scratch, **extra):
    """No PYTHONPATH; the loader unpacks into ``scratch`` (TMPDIR), so what it leaves shows."""
    env = cancorder_env(TMPDIR=scratch, **extra)
    env.pop("PYTHONPATH", None)
    return env


def unpacked_left(scratch):
    return [name for name in os.listdir(scratch) if name.startswith("_MEI")]


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _stop(proc, timeout=15):
    """SIGTERM and the exit code; if that fails, kill the child first, then the bootloader."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        for child in _children(proc.pid):
            os.kill(child, signal.SIGKILL)
        proc.kill()
        proc.wait()
        raise AssertionError(f"{proc.args} did not stop on SIGTERM within {timeout} s")


def run(command, cwd, env, timeout=60):
    """Run to the end: (exit code, stdout, stderr); stopped with SIGTERM past ``timeout``."""
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        out, err = proc.communicate()
        raise AssertionError(f"{command} still ran after {timeout} s:\n{out}\n{err}")
    return proc.returncode, out, err


def run_exe(scratch, *args, timeout=60, **env):
    return run([EXE, *args], scratch, exe_env(scratch, **env), timeout)


def run_python(*args, timeout=60):
    return run([sys.executable, "-m", "cancorder", *args], ROOT, cancorder_env(), timeout)


@pytest.fixture
def exe_process(exe, scratch):
    """Start dist/cancorder subprocesses (stderr watched); each is stopped at teardown."""
    started = []

    def start(*args, stdout=subprocess.DEVNULL):
        proc = CancorderProcess(list(args), command=[exe], env=exe_env(scratch), cwd=scratch,
                                stdout=stdout)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        _stop(proc.proc)
        proc._reader.join(5)


def test_version_reports_the_compiled_core(exe, scratch):
    code, out, err = run_exe(scratch, "--version")
    assert code == 0, err
    assert re.fullmatch(r"cancorder \S+ \(core: compiled, Python 3\.\d+\.\d+\)\n", out), out


def test_help_lists_every_subcommand(exe, scratch):
    code, out, err = run_exe(scratch, "--help")
    assert code == 0, err
    from cancorder.cli import COMMANDS

    for name in COMMANDS:
        assert name.replace("_", "-") in out, f"{name} missing from --help:\n{out}"


@pytest.mark.parametrize("args", [["man"], ["completion", "bash"], ["completion", "zsh"]])
def test_manual_page_and_completion_inside_the_executable(exe, scratch, args):
    """The executable carries argparse-manpage and shtab: the same texts as the Python install."""
    code, out, err = run_exe(scratch, *args)
    assert (code, err) == (0, "")
    python_code, python_out, _ = run_python(*args)
    assert (code, out) == (python_code, python_out)


def test_pure_core_asked_for_is_one_clear_line(exe, scratch):
    """The executable carries the compiled core only: CANCORDER_PURE=1 says so, no traceback."""
    for args in (["--version"], ["dump", "127.0.0.1:9", "--count", "1"]):
        code, out, err = run_exe(scratch, *args, CANCORDER_PURE="1")
        assert code == 2, err
        assert err.startswith("error: CANCORDER_PURE=1 asks for the pure-Python core, but this "
                              "build has only the compiled one: unset CANCORDER_PURE"), err
        assert "Traceback" not in err and err.count("\n") == 1


def test_mock_uds_session_printed_by_dump(exe_process, exe, scratch, tmp_path):
    port, count = free_port("::" if socket.has_ipv6 else "0.0.0.0"), 2000
    server = exe_process("mock-uds", "--no-zeroconf", "--port", str(port), "--no-loop",
                         "--speed", "50", "--seed", "31")
    assert server.port() == port
    # also recorded by python-can's SQLite and gzip writers, inside the executable
    code, out, err = run_exe(scratch, "dump", f"127.0.0.1:{port}", "--count", str(count),
                             "--format", "candump", "-o", "session.db", "-o", "session.log.gz",
                             TZ="UTC")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == count
    path = tmp_path / "session.log"
    path.write_text(out)
    read_back = list(can.CanutilsLogReader(str(path)))
    _, expected = expected_frames(seed=31, speed=50)
    want = [(f.can_id, f.extended, f.fd, f.data) for f in expected[:count]]
    assert [(m.arbitration_id, m.is_extended_id, m.is_fd, bytes(m.data))
            for m in read_back] == want
    stamps = [m.timestamp for m in read_back]
    assert stamps == sorted(stamps)
    for name in ("session.db", "session.log.gz"):
        with can.LogReader(os.path.join(scratch, name)) as reader:
            recorded = list(reader)
        assert [(m.arbitration_id, m.is_extended_id, m.is_fd, bytes(m.data))
                for m in recorded] == want, name
    assert f"{count:,} frames" in err and f"stopped: --count {count}" in err, err
    assert _stop(server.proc) == 0, server.log  # mock-uds ends the session (or has ended)


@pytest.mark.parametrize("extension", [".blf", ".asc", ".trc"])
def test_mock_uds_output_is_read_back_by_python_can(exe, scratch, extension):
    """python-can's writers inside the executable (more with dump -o above)."""
    path = os.path.join(scratch, "session" + extension)
    code, _, err = run_exe(scratch, "mock-uds", "--seed", "33", "--blocks", "20",
                           "--output", path)
    assert code == 0, err
    _, expected = expected_frames(seed=33, blocks=20)
    with can.LogReader(path) as reader:
        read = list(reader)
    assert [(m.arbitration_id, m.is_extended_id, bytes(m.data)) for m in read] == \
        [(f.can_id, f.extended, f.data) for f in expected]


def test_dump_decodes_a_log_with_a_dbc(exe, scratch):
    """cantools inside the executable: a mock-uds log read back by dump --dbc, every decoded
    frame equal to cantools' own decode_message (run in this Python)."""
    import cantools

    from tests.test_dbc import DBC, check_json_lines

    log, dbc = os.path.join(scratch, "session.log"), os.path.join(scratch, "obd.dbc")
    with open(dbc, "w") as f:
        f.write(DBC)
    code, _, err = run_exe(scratch, "mock-uds", "--seed", "5", "--blocks", "4", "--output", log)
    assert code == 0, err
    code, out, err = run_exe(scratch, "dump", log, "--dbc", dbc, "-f", "json")
    assert code == 0, err
    with can.LogReader(log) as reader:
        frames = [(m.arbitration_id, 1 if m.is_extended_id else 0, bytes(m.data))
                  for m in reader]
    check_json_lines(out.splitlines(), cantools.database.load_file(dbc), frames)
    assert '"signals": {"Length"' in out


def test_mf4_without_asammdf_is_one_clear_line(exe, scratch):
    code, _, err = run_exe(scratch, "dump", "127.0.0.1:9", "-o", "x.mf4")
    assert code == 2
    assert err == ("error: -o x.mf4: writing MF4 needs asammdf (which the standalone "
                   "executable leaves out: use a Python install), or record to .blf/.asc/.log "
                   "instead\n")


@pytest.mark.parametrize("backend", ["cancorder", "python-can"])
def test_serve_slcan_emulator(exe_process, scratch, slcan_emulator, backend):
    """cancorder's own SLCAN source, and python-can's slcan backend through pyserial's
    socket:// URL handler (both loaded by name at run time)."""
    server = exe_process("serve", "-i", "slcan", "-c", slcan_emulator.url, "--no-zeroconf",
                         "--bind", "127.0.0.1", "--opt", f"slcan_backend={backend}")
    client = StreamClient(server.port())
    server.wait_for("connected")
    messages = [can.Message(arbitration_id=0x100 + i, is_extended_id=bool(i % 2),
                            data=bytes([i] * (i % 9))) for i in range(50)]
    slcan_emulator.send_messages(messages)
    frames = client.wait_frames(len(messages))
    assert [(f[1], f[2] & 1, f[3]) for f in frames] == \
        [(m.arbitration_id, int(m.is_extended_id), bytes(m.data)) for m in messages]
    client.close()
    assert unpacked_left(scratch)  # the running child's files
    assert _stop(server.proc) == 0
    server._reader.join(5)
    assert "totals: frames in 50, out 50" in server.log, server.log
    assert unpacked_left(scratch) == []  # SIGTERM: the child ended, then the loader cleaned up


def test_serve_publishes_to_mqtt_over_tls(exe_process, broker, slcan_emulator, tmp_path):
    """paho (imported lazily) and TLS are in the executable: serve --mqtt mqtts:// from it,
    read back by the Python install's dump."""
    mosquitto = broker(tls=True)
    ca = mosquitto.certs["ca.crt"]
    out = str(tmp_path / "dump.log")
    dump = CancorderProcess(["dump", mosquitto.url("cancorder/+/+", tls=True), "--mqtt-ca", ca,
                             "-f", "candump", "-n", "50"], stdout=open(out, "w"))
    try:
        dump.wait_for("subscribed to")
        server = exe_process("serve", "-i", "slcan", "-c", slcan_emulator.url, "--no-zeroconf",
                             "--bind", "127.0.0.1", "--mqtt", mosquitto.url(tls=True),
                             "--mqtt-ca", ca)
        server.wait_for("MQTT: publishing to mqtts://")
        slcan_emulator.wait_open()
        slcan_emulator.send_messages([can.Message(arbitration_id=i, is_extended_id=False,
                                                  data=bytes([i])) for i in range(50)])
        assert dump.proc.wait(60) == 0, dump.log
        with open(out) as handle:
            assert [line.split()[2] for line in handle] == [f"{i:03X}#{i:02X}" for i in range(50)]
        assert _stop(server.proc) == 0
    finally:
        dump.stop()


def test_serve_virtual(exe_process):
    server = exe_process("serve", "-i", "virtual", "-c", "exe-test", "--no-zeroconf",
                         "--bind", "127.0.0.1")
    StreamClient(server.port()).close()
    server.wait_for("serving virtual channel exe-test")
    assert _stop(server.proc) == 0


def test_serve_socketcan_in_the_vm(exe, socketcan_vm):
    """The executable's own SocketCAN reader (its compiled unpacker) serves vcan0 in the test
    VM: every frame cangen sends reaches a client as candump saw it."""
    from tests.sources.test_socketcan import Served, parse_candump, records_of

    vm = socketcan_vm
    served = Served(vm, program=(exe,))
    client = served.client()
    dump = vm.start(["candump", "-L", "-n", "300", "vcan0"])
    vm.run("sleep 0.5; cangen vcan0 -g 1 -n 300 -L i -D i", timeout=300)
    assert dump.wait(120) == 0
    assert records_of(client) == [frame[1:] for frame in parse_candump(dump.stdout)]
    served.stop()
    assert "the kernel's software receive timestamps" in served.proc.stderr


def test_socketcand_in_the_executable(exe_process, slcan_emulator):
    """The compiled socketcand encoder and reader are in the executable: python-can's own
    socketcand client receives from it and transmits through it."""
    server = exe_process("serve", "-i", "slcan", "-c", slcan_emulator.url, "--no-zeroconf",
                         "--bind", "127.0.0.1", "--socketcand", "127.0.0.1:0", "--no-beacon",
                         "--allow-transmit")
    server.port()
    port = int(server.wait_for(r"socketcand serves bus '\S+' at \S+:(\d+)").group(1))
    bus = can.Bus(interface="socketcand", host="127.0.0.1", port=port,
                  channel=slcan_emulator.url)
    try:
        time.sleep(0.3)
        slcan_emulator.send_messages([can.Message(arbitration_id=0x1ABCDEF0, data=b"\x01")])
        msg = bus.recv(10)
        assert msg is not None and msg.arbitration_id == 0x1ABCDEF0 and msg.is_extended_id
        bus.send(can.Message(arbitration_id=0x7E0, is_extended_id=False, data=b"\x02\x10"))
        deadline = time.monotonic() + 10
        while "t7E020210" not in slcan_emulator.commands:
            assert time.monotonic() < deadline, slcan_emulator.commands
            time.sleep(0.05)
    finally:
        bus.shutdown()
    assert _stop(server.proc) == 0


def test_gvret_in_the_executable(exe_process, slcan_emulator):
    """The compiled GVRET encoder and reader are in the executable: the tests' GVRET client
    connects as SavvyCAN does, receives a frame and transmits one."""
    from tests.gvret_client import GvretClient, transmit_command

    server = exe_process("serve", "-i", "slcan", "-c", slcan_emulator.url, "--no-zeroconf",
                         "--bind", "127.0.0.1", "--gvret", "127.0.0.1:0", "--no-beacon",
                         "--allow-transmit")
    server.port()
    port = int(server.wait_for(r"GVRET serves bus '\S+' at \S+:(\d+)").group(1))
    client = GvretClient(port)
    try:
        assert client.connect_like_savvycan()["buses"] == ("buses", 1)
        slcan_emulator.send_messages([can.Message(arbitration_id=0x1ABCDEF0, data=b"\x01")])
        (frame,) = client.wait_frames(1)
        assert frame[1:] == (0x1ABCDEF0, True, 0, b"\x01", False)
        client.send(transmit_command(0x7E0, False, b"\x02\x10"))
        deadline = time.monotonic() + 10
        while "t7E020210" not in slcan_emulator.commands:
            assert time.monotonic() < deadline, slcan_emulator.commands
            time.sleep(0.05)
    finally:
        client.close()
    assert _stop(server.proc) == 0


def _error_line(stderr):
    """The one `error:` line, with file paths (a temporary folder, a venv) taken out."""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return re.sub(r"\(/[^)]*\)", "(PATH)", errors[0])


def test_unknown_interface_fails_as_in_the_python_install(exe, scratch):
    exe_code, _, exe_err = run_exe(scratch, "serve", "-i", "nosuch")
    py_code, _, py_err = run_python("serve", "-i", "nosuch")
    assert exe_code == py_code == 2
    assert exe_err == py_err
    assert exe_err.startswith("error: unknown interface 'nosuch': use one of")
    assert "Traceback" not in exe_err


@pytest.mark.parametrize("backend", [b for b in NAMED_BACKENDS if b != "virtual"])
def test_each_named_backend_fails_as_in_the_python_install(exe, scratch, backend):
    """Without the hardware (or on the wrong OS), each backend fails; the executable's message
    is the Python install's: the backend module is there and imports the same way (a missing
    one would say "No module named can.interfaces...")."""
    args = ["serve", "-i", backend, "-c", "/nonexistent/cancorder-test", "--no-zeroconf",
            "--bind", "127.0.0.1"]
    exe_code, _, exe_err = run_exe(scratch, *args)
    py_code, _, py_err = run_python(*args)
    assert exe_code == py_code != 0, (exe_err, py_err)
    assert _error_line(exe_err) == _error_line(py_err)
    assert "No module named" not in exe_err and "Traceback" not in exe_err


def test_detect_json_says_libusb_is_missing(exe, scratch):
    """libusb is not bundled: detect says how to install it (where the machine lacks it)."""
    code, out, err = run_exe(scratch, "detect", "--json", "--interfaces", "virtual")
    py_code, py_out, _ = run_python("detect", "--json", "--interfaces", "virtual")
    assert "Traceback" not in err
    rows = json.loads(out)
    assert code == py_code == 0  # python-can's virtual backend always answers
    assert any(r["kind"] == "python-can" and r["interface"] == "virtual" for r in rows)
    kinds = lambda found: sorted((r["kind"], r["name"]) for r in found  # noqa: E731
                                 if r["kind"] != "python-can")
    assert kinds(rows) == kinds(json.loads(py_out))
    gs_usb = [r for r in rows if r["name"] == "gs_usb"]
    if _have_libusb():
        assert not gs_usb or gs_usb[0]["kind"] != "problem" or "libusb" not in gs_usb[0]["details"]
    else:
        assert gs_usb and gs_usb[0]["kind"] == "problem", rows
        assert "libusb is missing" in gs_usb[0]["details"]
        assert gs_usb[0]["fix"].startswith("install libusb")


def _have_libusb():
    import ctypes.util

    return ctypes.util.find_library("usb-1.0") is not None


@pytest.mark.netns
def test_zeroconf_advertise_browse_and_connect(exe):
    """zeroconf's compiled modules in the executable, in a private network namespace."""
    result = run_in_netns("tests/netns_exe_zeroconf.py", exe)
    assert result["port"] > 0
    loggers = [r for r in result["detect"] if r["kind"] == "logger"]
    assert [r["name"] for r in loggers] == ["ECUconnect-Logger exe-bench"], result["detect_log"]
    assert f"port {result['port']}; " in loggers[0]["details"]
    assert "process=cancorder mock-uds" in loggers[0]["details"]
    assert result["dump_code"] == 0, result["dump_log"]
    assert len(result["dump_lines"]) == 5
    assert all(re.fullmatch(r"\(\d+\.\d{6}\) \S+ [0-9A-F]{3,8}#\S*", line)
               for line in result["dump_lines"]), result["dump_lines"]
    assert result["exit_code"] == 0, result["server_log"]


def test_build_output_is_ignored_by_git(exe):
    if not os.path.isdir(os.path.join(ROOT, ".git")) and \
            not os.path.isfile(os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout")
    done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    built = [line for line in done.stdout.splitlines()
             if re.match(r"\?\? (dist/|build/|\.venv-exe/|[^/]*\.egg-info/)", line)
             and line != "?? build/cancorder.spec"]  # the spec is source, not output
    assert built == [], built
    ignored = subprocess.run(["git", "check-ignore", "dist/cancorder", "build/pyinstaller",
                              ".venv-exe"], cwd=ROOT, capture_output=True, text=True)
    assert ignored.stdout.split() == ["dist/cancorder", "build/pyinstaller", ".venv-exe"]


def test_service_files_and_config_inside_the_executable(exe, scratch, tmp_path):
    """The unit, udev rules, plist and example are package data the executable carries; the
    installed unit starts the executable itself; tomllib and prometheus-client are inside."""
    code, out, err = run_exe(scratch, "service", "show", "udev")
    assert code == 0, err
    assert 'ATTRS{idVendor}=="1d50"' in out
    code, out, err = run_exe(scratch, "service", "install", "car", "--root", str(tmp_path))
    assert code == 0, err
    unit = (tmp_path / "etc/systemd/system/cancorder@.service").read_text()
    assert f"ExecStart={EXE} serve --config /etc/cancorder/%i.toml" in unit
    code, out, err = run_exe(scratch, "serve", "--config",
                             str(tmp_path / "etc/cancorder/car.toml"), "--check",
                             "--metrics", "127.0.0.1:9100")
    assert code == 0, err
    assert 'name = "powertrain"' in out and 'metrics = "127.0.0.1:9100"' in out
