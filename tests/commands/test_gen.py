"""``cancorder gen`` served like a bus, as a subprocess, to real stream clients."""
import os
import re
import signal
import time

import pytest

from cancorder.generator import Timeline, TrafficSettings
from tests.helpers import StreamClient


def receive_until_closed(client, timeout=60.0):
    assert client.closed.wait(timeout), \
        f"the server did not end the stream ({len(client.frames)} frames so far)"
    assert client.error is None, client.error
    client.decoder.finish()
    return client.frames


def test_exact_count_at_an_exact_rate_from_the_first_client_then_exit_0(cancorder_process):
    server = cancorder_process("gen", "--no-zeroconf", "--data-mode", "quality-test", "--id",
                               "7E0", "--test-id", "9", "-r", "2000", "-n", "3000", "--seed",
                               "11")
    port = server.port()
    server.wait_for("starts when a client connects")
    time.sleep(1.0)  # nothing is generated (or lost) before a client comes
    client = StreamClient(port)
    frames = receive_until_closed(client)
    assert server.proc.wait(30) == 0, server.log
    assert len(frames) == 3000
    # the payloads are the generator's with the same seed, byte for byte
    timeline = Timeline(TrafficSettings(seed=11, rate=2000.0, count=3000,
                                        data_mode="quality-test", exact_id=0x7E0, test_id=9))
    expected = timeline.frames(3000)
    assert [(f[1], f[2], bytes(f[3])) for f in frames] == expected
    # stamped at their due instants: exactly 500 us apart
    stamps = [f[0] for f in frames]
    assert {b - a for a, b in zip(stamps, stamps[1:])} == {500}
    assert "frames in 3,000, out 3,000" in server.log


def test_bad_combinations_are_one_error_line(cancorder_process):
    for args, words in ((("--data-mode", "quality-test"), "needs --id"),
                        (("--id-max", "1FFFFFFF"), "--id-kind extended"),
                        (("--dlc-max", "12"), "add --fd"),
                        (("--brs",), "add --fd"),
                        (("--pty", "--record", "x.log"), "--record cannot apply"),
                        (("-i", "slcan", "-c", "socket://127.0.0.1:1", "--mqtt",
                          "mqtt://127.0.0.1/x"), "--mqtt cannot apply"),
                        (("-c", "can0"), "add -i"),
                        (("--pty", "-i", "slcan"), "choose one")):
        proc = cancorder_process("gen", "--no-zeroconf", *args)
        assert proc.proc.wait(20) == 2
        lines = [line for line in proc.log.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], proc.log


PROOF_RATE, PROOF_SECONDS = 10_000, 60


@pytest.mark.long
@pytest.mark.serial  # 10,000 frames/s for 60 s, every frame: not beside other tests
def test_proof_gen_to_serve_to_dump_check_60_s_at_10000_frames_per_second(cancorder_process,
                                                                         tmp_path):
    """The user's proof, end to end: gen's SLCAN adapter (pty) -> serve -i slcan -> dump
    --check --strict: every one of 600,000 quality-test frames, nothing missing."""
    count = PROOF_RATE * PROOF_SECONDS
    adapter = cancorder_process("gen", "--pty", "--data-mode", "quality-test", "--id", "7E0",
                                "-r", str(PROOF_RATE), "-n", str(count), "--seed", "26")
    path = adapter.wait_for(r"virtual SLCAN adapter on (/dev/pts/\d+)").group(1)
    # The user's order: the logger and the checker are up before the traffic starts. The
    # adapter is held while serve opens it (its commands wait in the terminal) and the checker
    # connects; then it takes the open command and sends from frame 0.
    os.kill(adapter.proc.pid, signal.SIGSTOP)
    try:
        server = cancorder_process("serve", "-i", "slcan", "-c", path, "-b", "1M",
                                   "--no-zeroconf", "--opt", "sleep_after_open=0")
        out = tmp_path / "proof.txt"
        dump = cancorder_process("dump", f"127.0.0.1:{server.port()}", "--check", "--strict",
                                 "--expect", str(count), stdout=open(out, "w"))
        server.wait_for(r"client 127\.0\.0\.1:\d+ connected")
    finally:
        os.kill(adapter.proc.pid, signal.SIGCONT)
    deadline = time.monotonic() + PROOF_SECONDS * 3
    while not re.search(rf"received {count:,},", dump.log):  # its status line, every 5 s
        assert time.monotonic() < deadline, dump.log[-3000:]
        time.sleep(1)
    assert dump.terminate() == 0, dump.log  # --strict: 0, nothing lost
    assert server.terminate() == 0
    assert adapter.terminate() == 0
    summary = out.read_text()
    print(summary)
    assert f"check: 7E0 quality-test: received {count:,}, missing 0, duplicate 0, reordered " \
           "0, corrupt 0" in summary
    assert "check: OK: nothing lost" in summary
