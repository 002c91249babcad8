"""The python-can interface (issue 30): python-can's own tools as the clients of a cancorder
logger. ``can.logger -i cancorder`` writes every frame, ``can.viewer`` (under tmux) shows the
ids, ``send()`` reaches the (emulated) adapter through socketcand, a refused one is a
CanOperationError naming the cause.

Nothing is installed: the tools find the interface through python-can's ``can.interface`` entry
point, declared in pyproject.toml and handed to them as the metadata pip writes from it (a
``.dist-info`` folder on PYTHONPATH)."""
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib

import can
import pytest

from cancorder.pycan_interface import CancorderBus
from tests.helpers import ROOT, cancorder_env, served_client, wait_until
from tests.sinks.test_socketcand_serve import FRAMES, serve


@pytest.fixture
def plugin_env(tmp_path):
    """An environment in which python-can finds ``interface="cancorder"`` by its entry point."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as file:
        points = tomllib.load(file)["project"]["entry-points"]["can.interface"]
    info = tmp_path / "site" / "cancorder_entry_points-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cancorder-entry-points\n"
                                   "Version: 0\n")
    (info / "entry_points.txt").write_text(
        "[can.interface]\n" + "".join(f"{name} = {target}\n" for name, target in points.items()))
    env = cancorder_env()
    env["PYTHONPATH"] = str(tmp_path / "site") + os.pathsep + env["PYTHONPATH"]
    return env


def _queued(local_port, remote_port):
    """Bytes in the kernel's queues of the TCP connection local_port -> remote_port (IPv4):
    received and not read yet, plus sent and not acknowledged yet."""
    total = 0
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local, remote, queues = fields[1], fields[2], fields[4]
            if int(local.split(":")[1], 16) == local_port and \
                    int(remote.split(":")[1], 16) == remote_port:
                tx, rx = queues.split(":")
                total += int(tx, 16) + int(rx, 16)
    return total


def _interruptible():
    """In the child: SIGINT as a terminal gives it. A suite started in the background of a
    shell (``make test &``) has SIGINT ignored, the children inherit that, and Python then
    never turns SIGINT into KeyboardInterrupt, which is how can.logger stops."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_can_logger_writes_every_frame(cancorder_process, slcan_emulator, plugin_env,
                                       tmp_path):
    proc, port, _ = serve(cancorder_process, slcan_emulator)
    out = tmp_path / "python-can.log"
    logger = subprocess.Popen([sys.executable, "-m", "can.logger", "-i", "cancorder", "-c",
                               f"127.0.0.1:{port}", "-f", str(out)], env=plugin_env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              preexec_fn=_interruptible)
    try:
        logger_port = int(proc.wait_for(r"client 127\.0\.0\.1:(\d+) connected").group(1))
        observer = served_client(proc, port)  # sees the same broadcast, in the same flushes
        slcan_emulator.send_messages(FRAMES * 20)
        observer.wait_frames(100)
        observer.close()
        # every byte sent to can.logger has been read by it (its file is written at its end)
        assert wait_until(lambda: _queued(logger_port, port) + _queued(port, logger_port) == 0)
    finally:
        logger.send_signal(signal.SIGINT)  # can.logger's own way to stop: the file is closed
        output = logger.communicate(timeout=20)[0]
    assert logger.returncode == 0, output
    assert "Connected to CancorderBus" in output, output
    got = [(m.arbitration_id, m.is_extended_id, bytes(m.data))
           for m in can.LogReader(str(out))]
    assert got == [(m.arbitration_id, m.is_extended_id, bytes(m.data)) for m in FRAMES * 20]


def test_can_viewer_shows_the_ids_under_tmux(cancorder_process, slcan_emulator, plugin_env):
    if not shutil.which("tmux"):
        pytest.skip("needs tmux")
    proc, port, _ = serve(cancorder_process, slcan_emulator)
    session = f"cancorder-viewer-{os.getpid()}-{port}"
    command = (" ".join(f"{key}='{value}'" for key, value in plugin_env.items()
                        if key in ("PYTHONPATH", "CANCORDER_PURE"))
               + f" {sys.executable} -m can.viewer -i cancorder -c 127.0.0.1:{port}")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "40",
                    command], check=True, env=plugin_env, cwd=ROOT)
    try:
        proc.wait_for(r"client 127\.0\.0\.1:\d+ connected")
        slcan_emulator.send_messages(FRAMES)

        def screen():
            return subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                  capture_output=True, text=True).stdout

        wanted = ["0x123", "0x18DAF110", "0x000", "0x00000001", "0x7FF"]
        assert wait_until(lambda: all(name in screen() for name in wanted), timeout=20), \
            screen()
        assert "01 FF 23 45 67 89 AB CD" in screen(), screen()
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session])


def test_send_through_socketcand_and_a_refusal(cancorder_process, slcan_emulator):
    proc, port, scd = serve(cancorder_process, slcan_emulator, "--allow-transmit")
    with CancorderBus(channel=f"127.0.0.1:{port}", socketcand=scd,
                      can_filters=[{"can_id": 0x7E8, "can_mask": 0x7FF}]) as bus:
        bus.send(can.Message(arbitration_id=0x7E0, is_extended_id=False, data=b"\x02\x10\x03"))
        bus.send(can.Message(arbitration_id=0x18DA10F1, data=b"\x01"))
        assert wait_until(
            lambda: len([c for c in slcan_emulator.commands if c[:1] in "tT"]) == 2)
        assert [c for c in slcan_emulator.commands if c[:1] in "tT"] == ["t7E03021003",
                                                                        "T18DA10F1101"]
        proc.wait_for(r"client 127\.0\.0\.1:\d+ connected")
        slcan_emulator.send_messages([can.Message(arbitration_id=0x7E9, is_extended_id=False),
                                      can.Message(arbitration_id=0x7E8, is_extended_id=False,
                                                  data=b"\x06\x50\x03")])
        got = bus.recv(10)  # python-can's can_filters: 0x7E9 is not passed on
        assert (got.arbitration_id, bytes(got.data), got.channel) == (
            0x7E8, b"\x06\x50\x03", f"127.0.0.1:{port}")
        assert abs(got.timestamp - time.time()) < 30
        with pytest.raises(can.CanOperationError, match="transmit refused: a CAN FD frame"):
            bus.send(can.Message(arbitration_id=0x123, is_fd=True, data=bytes(12)))
    assert proc.terminate() == 0
    proc2, port2, scd2 = serve(cancorder_process, slcan_emulator)  # transmit off
    with CancorderBus(channel=f"127.0.0.1:{port2}", socketcand=scd2) as bus:
        with pytest.raises(can.CanOperationError, match="its transmit is off"):
            bus.send(can.Message(arbitration_id=0x7E0, is_extended_id=False, data=b"\x01"))
    with pytest.raises(can.CanInitializationError, match="connection refused"):
        CancorderBus(channel="127.0.0.1:1")


def test_zeroconf_finds_and_opens_the_logger():
    """In a network namespace of its own: detect_available_configs lists the logger, and the
    bus opens it by its Zeroconf name, and with no channel at all."""
    from tests.netns import run_in_netns

    result = run_in_netns("tests/netns_zeroconf_pycan.py")
    port = result["port"]
    assert [(c["interface"], c["channel"].rsplit(":", 1)[1]) for c in result["configs"]] == [
        ("cancorder", str(port))], result
    name = result["configs"][0]["name"]
    assert "bench-pycan" in name
    assert result["received"]["named"][1:] == [0x123, "00"], result
    assert result["received"]["omitted"][1:] == [0x123, "01"], result
    assert f"'{name}'" in result["received"]["named"][0]
    assert result["exit_code"] == 0, result["log"]
