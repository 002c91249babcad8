"""`cancorder send` (issue 30): cansend's frames through a logger's socketcand transmit reach
the (emulated) SLCAN adapter, in order, as many times as asked; every refusal and every
malformed frame is one error line naming the cause."""
import subprocess
import sys
import time

from tests.helpers import ROOT, cancorder_env
from tests.sinks.test_socketcand_serve import serve


def send(*args):
    return subprocess.run([sys.executable, "-m", "cancorder", "send", *args],
                          capture_output=True, text=True, env=cancorder_env(), cwd=ROOT,
                          timeout=60)


def transmitted(emulator, count):
    deadline = time.monotonic() + 10
    while len([c for c in emulator.commands if c[:1] in "tTdDbB"]) < count:
        assert time.monotonic() < deadline, emulator.commands
        time.sleep(0.05)
    return [c for c in emulator.commands if c[:1] in "tTdDbB"]


def test_cansend_frames_reach_the_adapter_in_order(cancorder_process, slcan_emulator):
    proc, _, scd = serve(cancorder_process, slcan_emulator, "--allow-transmit")
    done = send(f"127.0.0.1:{scd}", "7E0#02.10.03", "18DA10F1#0102030405060708", "123#",
                "--count", "2", "--interval", "0.01")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""
    assert transmitted(slcan_emulator, 6) == ["t7E03021003", "T18DA10F180102030405060708",
                                              "t1230"] * 2
    assert proc.terminate() == 0
    assert "frames transmitted 6 (refused 0, failed 0)" in proc.log


def test_refusals_and_malformed_frames_name_the_cause(cancorder_process, slcan_emulator):
    proc, _, scd = serve(cancorder_process, slcan_emulator)  # transmit off
    done = send(f"127.0.0.1:{scd}", "7E0#01")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: 127.0.0.1:{scd}: the logger refused 7E0#01: its transmit is off, or this "
        "host may not transmit (the logger must serve --socketcand with --allow-transmit, "
        "and --allow this host when it is not the logger's own machine)")
    for frame, why in (("7E0#R", "a remote frame (ID#R), which a logger cannot send"),
                       ("7E0#1", "the data is not pairs of hex digits"),
                       ("800#11", "11-bit id 0x800 out of range"),
                       ("7E0#11 22", "expected ID#DATA")):
        done = send(f"127.0.0.1:{scd}", frame)
        assert done.returncode == 2, (frame, done.stderr)
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: argument FRAME: '{frame}': "
                                                       f"{why}"), (frame, lines)
    done = send(f"127.0.0.1:{proc.port()}", "7E0#01")  # the ECUconnect port: not socketcand
    assert done.returncode == 1 and "not a socketcand port?" in done.stderr, done.stderr
    assert proc.terminate() == 0
    assert not [c for c in slcan_emulator.commands if c[:1] in "tTdDbB"]


def test_a_frame_the_bus_cannot_carry_is_refused_by_the_logger(cancorder_process,
                                                               slcan_emulator):
    proc, _, scd = serve(cancorder_process, slcan_emulator, "--allow-transmit")
    done = send(f"127.0.0.1:{scd}", "123#11", "123##0" + "AA" * 12, "124#22")
    assert done.returncode == 1
    assert f"error: 127.0.0.1:{scd}: the logger refused 123##{'AA' * 12}: transmit refused: " \
           "a CAN FD frame (12 bytes) on a bus not opened in CAN FD mode" in done.stderr
    assert transmitted(slcan_emulator, 1) == ["t1231" + "11"]  # the frame after it: not sent
    assert proc.terminate() == 0
