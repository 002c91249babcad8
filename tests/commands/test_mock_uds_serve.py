"""cancorder mock-uds served over TCP, as a subprocess, to real stream clients."""
import socket
import time

from cancorder.uds.simulation import SimulationConfig, timeline
from tests.helpers import StreamClient, free_port
from tests.uds_check import Expect, check_traffic, frames_from_records, frames_from_timeline

EXTENDED = dict(extended=True, tester_id=0x18DA10F1, ecu_id=0x18DAF110)


def receive_until_closed(client, timeout=60.0):
    assert client.closed.wait(timeout), \
        f"the server did not end the stream ({len(client.frames)} frames so far)"
    assert client.error is None, client.error
    client.decoder.finish()  # the stream ends on a record boundary
    return frames_from_records(client.frames)


def expected_frames(**settings):
    config = SimulationConfig(loop=False, **settings)
    return config, frames_from_timeline(timeline(config))


def test_a_client_receives_a_whole_session_then_the_process_exits_by_itself(cancorder_process):
    port = free_port("::" if socket.has_ipv6 else "0.0.0.0")
    server = cancorder_process("mock-uds", "--port", str(port), "--no-zeroconf", "--speed", "50",
                               "--no-loop", "--seed", "21", "-v")
    assert server.port() == port
    server.wait_for("starts when a client connects")
    client = StreamClient(port)
    frames = receive_until_closed(client)
    assert server.proc.wait(30) == 0, server.log
    config, expected = expected_frames(seed=21, speed=50)
    seen = check_traffic(frames, Expect.of(config))
    assert seen["sessions"] == 1 and seen["counter wrapped"] == 1
    # Same seed, same frames: byte for byte, and the same relative timing, over TCP.
    assert [(f.can_id, f.data) for f in frames] == [(f.can_id, f.data) for f in expected]
    assert [f.t_us - frames[0].t_us for f in frames] == \
        [f.t_us - expected[0].t_us for f in expected]
    # The records carry wall-clock time: the session started when the client connected.
    assert abs(frames[0].t_us / 1e6 - time.time()) < 60
    for phase in ("OBD-II polling", "security access", "erasing", "download (34)", "ECU reset",
                  "back to the default session"):
        assert phase in server.log  # -v narrates
    assert f"frames in {len(frames):,}, out {len(frames):,}" in server.log


def test_29bit_fd_with_faults_over_tcp(cancorder_process):
    server = cancorder_process("mock-uds", "--no-zeroconf", "--speed", "50", "--no-loop",
                               "--seed", "22", "--extended-ids", "--fd", "--error-rate", "0.3",
                               "--blocks", "270", "--block-size", "300", "--padding", "0x00")
    client = StreamClient(server.port())
    frames = receive_until_closed(client)
    assert server.proc.wait(30) == 0, server.log
    config, expected = expected_frames(seed=22, speed=50, fd=True, error_rate=0.3, blocks=270,
                                       block_size=300, padding=0x00, **EXTENDED)
    seen = check_traffic(frames, Expect.of(config))
    assert seen["sessions"] == 1 and seen["counter wrapped"] == 1 and seen["sf escape"]
    assert any(key.startswith("reaction") for key in seen)
    assert [f.data for f in frames] == [f.data for f in expected]
    assert all(f.extended and f.fd for f in frames)


def test_the_default_waits_for_a_client_before_starting(cancorder_process):
    server = cancorder_process("mock-uds", "--no-zeroconf", "--speed", "50", "--no-loop",
                               "--seed", "23", "--blocks", "10")
    port = server.port()
    time.sleep(1.5)  # nothing may be generated (or lost) meanwhile
    connected = time.time()
    client = StreamClient(port)
    frames = receive_until_closed(client)
    assert server.proc.wait(30) == 0
    _, expected = expected_frames(seed=23, speed=50, blocks=10)
    assert [f.data for f in frames] == [f.data for f in expected]  # from the very first frame
    assert frames[0].t_us / 1e6 >= connected - 0.5


def test_async_runs_without_clients_and_ends_by_itself(cancorder_process):
    server = cancorder_process("mock-uds", "--no-zeroconf", "--speed", "50", "--no-loop",
                               "--async", "--seed", "24", "--blocks", "10")
    server.port()
    assert server.proc.wait(60) == 0, server.log
    _, expected = expected_frames(seed=24, speed=50, blocks=10)
    assert f"out {len(expected):,}" in server.log  # generated with nobody listening
    assert "clients served 0" in server.log


def test_async_late_client_joins_a_running_simulation(cancorder_process):
    server = cancorder_process("mock-uds", "--no-zeroconf", "--speed", "5", "--async",
                               "--seed", "25")
    port = server.port()
    time.sleep(1.0)
    client = StreamClient(port)
    frames = frames_from_records(client.wait_frames(40))[:40]
    client.close()
    assert server.terminate() == 0
    _, expected = expected_frames(seed=25, speed=5)
    data = [f.data for f in expected]
    # What arrived is the running timeline from some point on, not a fresh start.
    joined = next(k for k in range(len(data)) if data[k:k + 40] == [f.data for f in frames])
    assert joined > 0
    assert [f.t_us - frames[0].t_us for f in frames] == \
        [f.t_us - expected[joined].t_us for f in expected[joined:joined + 40]]


def test_without_no_loop_sessions_follow_each_other(cancorder_process):
    server = cancorder_process("mock-uds", "--no-zeroconf", "--speed", "100", "--seed", "26",
                               "--blocks", "20")
    client = StreamClient(server.port())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.2)
        starts = [f for f in client.frames if f[3][:3] == b"\x02\x10\x03"]
        if len(starts) >= 2:
            break
    assert len(starts) >= 2, f"{len(client.frames)} frames, {len(starts)} sessions started"
    assert server.proc.poll() is None  # it keeps going
    client.close()
    assert server.terminate() == 0


def test_duration_ends_a_served_run(cancorder_process):
    server = cancorder_process("mock-uds", "--no-zeroconf", "--duration", "1.5", "--seed", "27")
    client = StreamClient(server.port())
    frames = receive_until_closed(client, timeout=30)
    assert server.proc.wait(30) == 0
    assert frames and frames[-1].t_us - frames[0].t_us <= 1_600_000
    check_traffic(frames, Expect.of(SimulationConfig(seed=27, duration=1.5)))
