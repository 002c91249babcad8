"""The virtual SLCAN adapter on a pseudo-terminal (``gen --pty``, ``mock-slcan``) with SLCAN
clients nobody here wrote for it: cancorder's own SLCAN source (``serve -i slcan``) and
python-can's ``slcan`` interface."""
import can

from cancorder._fast import traffic
from tests.helpers import StreamClient


def quality(number, data):
    """(sequence, test id) of a quality-test payload, asserting its published layout."""
    assert data[:2] == b"\xca\xfe"
    checksum = 0
    for byte in data[:7]:
        checksum ^= byte
    assert data[7] == checksum
    return int.from_bytes(data[2:4], "big"), data[6]


def test_serve_dash_i_slcan_takes_every_frame_of_the_pty_adapter(cancorder_process, tmp_path):
    adapter = cancorder_process("gen", "--pty", "--data-mode", "quality-test", "--id", "123",
                                "--test-id", "4", "-r", "1000", "-n", "2000", "--seed", "5")
    path = adapter.wait_for(r"virtual SLCAN adapter on (/dev/pts/\d+)").group(1)
    log = tmp_path / "bus.log"
    server = cancorder_process("serve", "-i", "slcan", "-c", path, "--no-zeroconf",
                               "--opt", "sleep_after_open=0", "--record", str(log))
    client = StreamClient(server.port())  # the adapter sends from its open: a client joins late
    frames = client.wait_frames(1, timeout=30)
    first = quality(0, bytes(frames[0][3]))[0]
    frames = client.wait_frames(2000 - first, timeout=30)
    assert [quality(k, bytes(f[3])) for k, f in enumerate(frames)] == \
        [(k, 4) for k in range(first, 2000)]
    assert all(f[1] == 0x123 and f[2] == 0 for f in frames)
    assert server.terminate() == 0
    assert adapter.terminate() == 0
    assert "sent 2,000 frames" in adapter.log
    recorded = list(can.LogReader(str(log)))  # every frame from the first, by python-can
    assert [quality(k, bytes(m.data)) for k, m in enumerate(recorded)] == \
        [(k, 4) for k in range(2000)]


def test_python_can_slcan_opens_it_reads_the_version_receives_and_transmits(cancorder_process):
    adapter = cancorder_process("mock-slcan", "--data-mode", "sequence", "-r", "500", "-n",
                                "300", "--id", "7FF")
    path = adapter.wait_for(r"virtual SLCAN adapter on (/dev/pts/\d+)").group(1)
    bus = can.Bus(interface="slcan", channel=path, bitrate=500000, sleep_after_open=0)
    try:
        assert bus.get_version(2) == (10, 13)  # V1013: hardware 10, software 13
        assert bus.get_serial_number(2) == "GEN0"
        received = []
        while len(received) < 300:
            msg = bus.recv(5)
            assert msg is not None, f"only {len(received)} frames"
            received.append(msg)
        assert [bytes(m.data) for m in received] == [n.to_bytes(8, "big") for n in range(300)]
        assert {m.arbitration_id for m in received} == {0x7FF}
        bus.send(can.Message(arbitration_id=0x42, data=b"\x01\x02", is_extended_id=False))
        bus.send(can.Message(arbitration_id=0x1ABCDEF, data=b"", is_extended_id=True))
    finally:
        bus.shutdown()  # C: the adapter says what it took
    adapter.wait_for("the client closed the channel: 300 frames sent, 2 transmitted frames")
    assert adapter.terminate() == 0
    assert "took 2 transmitted frames" in adapter.log


def test_the_layout_module_reads_back_what_the_adapter_sent():
    payload = traffic.quality_payload(0x1234, 0xBEEF, 0x7F)
    assert traffic.read_quality(payload) == ((0x1234, 0xBEEF, 0x7F), None)
    assert traffic.read_quality(payload[:7] + b"\x00")[1].startswith("checksum")
