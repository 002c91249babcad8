"""ISO-TP / UDS and J1939 reassembly (cancorder/reassembly.py) in `cancorder dump`: mock-uds
traffic against what the simulation sent, J1939 transfers written here from SAE J1939-21's
layout, and transfers that lose a frame."""
import json
import subprocess
import sys

import cantools
import pytest

from cancorder._fast import wire
from cancorder.formats import candump_line
from cancorder.uds.isotp import IsoTpLink
from cancorder.uds.simulation import SimulationConfig, timeline
from cancorder.uds import FRAME
from tests.helpers import cancorder_env
from tests.test_dbc import DBC

EXT = wire.FLAG_EXT


def run_dump(*args):
    return subprocess.run([sys.executable, "-m", "cancorder", "dump", *map(str, args)],
                          env=cancorder_env(TZ="UTC"), capture_output=True, text=True,
                          timeout=60)


def write_candump(path, frames):
    """frames: (t_us, can_id, flags, data) -> a candump .log file."""
    path.write_text("".join(candump_line(frame) + "\n" for frame in frames))
    return path


def simulated(config, monkeypatch):
    """The simulation's frames, and every message it sent through ISO-TP: (sender id, bytes)."""
    sent = []
    original = IsoTpLink.send

    def recording_send(self, payload, sender, receiver, can_id=None):
        sent.append((sender.tx_id if can_id is None else can_id, bytes(payload)))
        yield from original(self, payload, sender, receiver, can_id)

    monkeypatch.setattr(IsoTpLink, "send", recording_send)
    base = 1_700_000_000_000_000
    frames = [(base + t_us, *value) for t_us, kind, value in timeline(config) if kind == FRAME]
    return frames, sent


def messages_of(stdout, kind="isotp"):
    return [json.loads(line) for line in stdout.splitlines() if f'"{kind}": {{' in line]


@pytest.mark.parametrize("extended, fd", [(False, False), (True, False), (False, True)],
                         ids=["11-bit", "29-bit normal-fixed", "CAN FD"])
def test_mock_uds_reassembled_equals_what_the_simulation_sent(tmp_path, monkeypatch,
                                                              extended, fd):
    ids = (0x18DA10F1, 0x18DAF110) if extended else (0x7E0, 0x7E8)
    config = SimulationConfig(seed=7, tester_id=ids[0], ecu_id=ids[1], extended=extended,
                              fd=fd, blocks=40, block_size=200, error_rate=0.3, loop=False)
    frames, sent = simulated(config, monkeypatch)
    assert any(len(payload) > (62 if fd else 7) for _, payload in sent)  # multi-frame
    assert any(payload[:1] == b"\x7f" and payload[2:3] == b"\x78" for _, payload in sent)
    log = write_candump(tmp_path / "uds.log", frames)
    run = run_dump(log, "--isotp", "auto", "-f", "json")
    assert run.returncode == 0, run.stderr
    got = messages_of(run.stdout)
    assert [(item["isotp"]["id"], bytes.fromhex(item["data"])) for item in got] == sent
    assert not any("error" in item for item in got)
    # every frame of the traffic is in a message: none is left to show on its own
    assert len(run.stdout.splitlines()) == len(got)
    assert sum(item["frames"] for item in got) == len(frames)
    pending = [item["uds"] for item in got if item["data"][4:6] == "78"
               and item["data"][:2] == "7f"]
    assert pending and all(text.endswith("(0x78, pending)") for text in pending)
    # the given pair: the same messages between tester and ECU, the functional ones as frames
    run = run_dump(log, "--isotp", f"{ids[0]:X}:{ids[1]:X}", "-f", "json")
    assert run.returncode == 0, run.stderr
    pair = [(item["isotp"]["id"], bytes.fromhex(item["data"])) for item in messages_of(run.stdout)]
    assert pair == [entry for entry in sent if entry[0] in ids]


def test_pretty_names_the_uds_services(tmp_path, monkeypatch):
    config = SimulationConfig(seed=3, blocks=5, error_rate=0.0, loop=False)
    frames, sent = simulated(config, monkeypatch)
    log = write_candump(tmp_path / "uds.log", frames)
    run = run_dump(log, "--isotp", "7E0:7E8")
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stdout.splitlines() if "ISO-TP" in line]
    assert len(lines) == sum(1 for can_id, _ in sent if can_id in (0x7E0, 0x7E8))
    text = "\n".join(lines)
    for expected in ("7E0>7E8", "7E8>7E0", "RequestDownload request",
                     "TransferData positive response", "DiagnosticSessionControl request"):
        assert expected in text
    first_multi = next(line for line in lines if "TransferData request" in line)
    assert "frames" in first_multi and " ms" in first_multi


def test_a_lost_consecutive_frame_is_flagged(tmp_path, monkeypatch):
    config = SimulationConfig(seed=11, blocks=3, block_size=100, error_rate=0.0, loop=False)
    frames, sent = simulated(config, monkeypatch)
    # the third consecutive frame of the first TransferData request goes missing
    start = next(index for index, frame in enumerate(frames)
                 if frame[1] == 0x7E0 and frame[3][0] >> 4 == 1 and frame[3][2] == 0x36)
    cfs = [index for index in range(start, len(frames))
           if frames[index][1] == 0x7E0 and frames[index][3][0] >> 4 == 2]
    lost = frames[cfs[2]]
    log = write_candump(tmp_path / "lossy.log", frames[:cfs[2]] + frames[cfs[2] + 1:])
    run = run_dump(log, "--isotp", "7E0:7E8", "-f", "json")
    assert run.returncode == 0, run.stderr
    got = messages_of(run.stdout)
    broken = [item for item in got if "error" in item]
    assert len(broken) == 1
    assert "consecutive frame 4 came where 3 was due" in broken[0]["error"]
    whole = next(payload for can_id, payload in sent if payload[:1] == b"\x36")
    assert bytes.fromhex(broken[0]["data"]) == whole[:len(bytes.fromhex(broken[0]["data"]))]
    # nothing that carried the lost frame's neighbours passed for whole
    assert all(bytes.fromhex(item["data"]) in [payload for _, payload in sent]
               for item in got if "error" not in item)
    assert lost[3][1:].hex() not in "".join(item["data"] for item in got if "error" not in item)
    # the stream cut inside a transfer: flagged at the end, never dropped
    cut = write_candump(tmp_path / "cut.log", frames[:cfs[2]])
    run = run_dump(cut, "--isotp", "7E0:7E8")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1].endswith("bytes when the stream ended")


# ---- J1939 transport protocol, written from SAE J1939-21's layout ----

PGN = 0xFEE3  # a PDU2 PGN (engine configuration): one message longer than 8 bytes
J1939_DBC = '''VERSION ""

NS_ :

BS_:

BU_: ECU

BO_ 2566841088 EngineConfig: 20 ECU
 SG_ SpeedAtIdle : 0|16@1+ (0.125,0) [0|8031.875] "rpm" Vector__XXX
 SG_ TorqueAtIdle : 16|8@1+ (1,-125) [-125|125] "%" Vector__XXX
 SG_ SpeedAtPoint2 : 24|16@1+ (0.125,0) [0|8031.875] "rpm" Vector__XXX
 SG_ ReferenceTorque : 152|8@1+ (1,0) [0|255] "" Vector__XXX

BA_DEF_  "ProtocolType" STRING ;
BA_DEF_DEF_  "ProtocolType" "";
BA_ "ProtocolType" "J1939";
'''


def tp_cm(source, destination, data, priority=7):
    return ((priority << 26) | (0xEC << 16) | (destination << 8) | source, EXT, bytes(data))


def tp_dt(source, destination, sequence, chunk, priority=7):
    return ((priority << 26) | (0xEB << 16) | (destination << 8) | source, EXT,
            bytes([sequence]) + chunk + b"\xff" * (7 - len(chunk)))


def pgn_bytes(pgn):
    return [pgn & 0xFF, (pgn >> 8) & 0xFF, pgn >> 16]


def bam(source, payload, pgn=PGN):
    packets = -(-len(payload) // 7)
    frames = [tp_cm(source, 0xFF, [0x20, len(payload) & 0xFF, len(payload) >> 8, packets, 0xFF]
                    + pgn_bytes(pgn))]
    for index in range(packets):
        frames.append(tp_dt(source, 0xFF, index + 1, payload[7 * index:7 * index + 7]))
    return frames


def cmdt(source, destination, payload, pgn=PGN):
    """RTS, CTS for all packets, the data packets, EndOfMsgAck."""
    size = [len(payload) & 0xFF, len(payload) >> 8]
    packets = -(-len(payload) // 7)
    frames = [tp_cm(source, destination, [0x10] + size + [packets, 0xFF] + pgn_bytes(pgn)),
              tp_cm(destination, source, [0x11, packets, 1, 0xFF, 0xFF] + pgn_bytes(pgn))]
    for index in range(packets):
        frames.append(tp_dt(source, destination, index + 1, payload[7 * index:7 * index + 7]))
    frames.append(tp_cm(destination, source, [0x13] + size + [packets, 0xFF] + pgn_bytes(pgn)))
    return frames


def timed(frames, start=1_700_000_000_000_000, step=50_000):
    return [(start + index * step, *frame) for index, frame in enumerate(frames)]


def test_j1939_bam_and_cmdt_reassemble_to_the_bytes_sent(tmp_path):
    database = tmp_path / "j1939.dbc"
    database.write_text(J1939_DBC)
    reference = cantools.database.load_file(str(database)).get_message_by_name("EngineConfig")
    broadcast = bytes(range(1, 21))
    direct = bytes(range(100, 137))  # 37 bytes, 6 packets, the last one padded
    other = (0x18FEF100, EXT, bytes(8))  # a single-frame PGN between them: shown as it is
    frames = timed(bam(0x00, broadcast) + [other] + cmdt(0x17, 0x3D, direct, pgn=0xEF00))
    log = write_candump(tmp_path / "j1939.log", frames)
    run = run_dump(log, "--j1939", "--dbc", database, "-f", "json")
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(lines) == 3
    first, single, second = lines
    assert first["j1939"] == {"pgn": PGN, "source": 0x00, "destination": 0xFF}
    assert bytes.fromhex(first["data"]) == broadcast and first["frames"] == 4
    assert first["message"] == "EngineConfig"
    expected = reference.decode(broadcast, decode_choices=True, scaling=True)
    assert first["signals"] == pytest.approx(expected)
    assert single["id"] == 0x18FEF100 and "j1939" not in single
    assert second["j1939"] == {"pgn": 0xEF00, "source": 0x17, "destination": 0x3D}
    assert bytes.fromhex(second["data"]) == direct
    assert second["frames"] == 1 + 1 + 6  # RTS, CTS, 6 packets (the EndOfMsgAck comes after)
    assert second["duration_us"] == 7 * 50_000
    # without --j1939 the frames are shown as they are
    run = run_dump(log, "-f", "json")
    assert len(run.stdout.splitlines()) == len(frames)


def test_a_lost_j1939_packet_is_flagged(tmp_path):
    payload = bytes(range(30))
    frames = bam(0x21, payload)
    del frames[3]  # packet 3
    log = write_candump(tmp_path / "lossy.log", timed(frames))
    run = run_dump(log, "--j1939", "-f", "json")
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert "data packet 4 came where 3 was due" in lines[0]["error"]
    assert bytes.fromhex(lines[0]["data"]) == payload[:14]
    assert not [line for line in lines if "error" not in line and "j1939" in line]


@pytest.mark.parametrize("args, message", [
    (["--isotp", "7E0"], "--isotp 7E0: expected TX:RX"),
    (["--isotp", "7E0:7E0"], "the two ids of a pair differ"),
    (["--isotp", "auto", "-f", "candump"], "-f candump writes frames as they are"),
    (["--j1939", "--stats"], "choose one"),
])
def test_reassembly_usage_errors(tmp_path, args, message):
    log = write_candump(tmp_path / "one.log", [(1_700_000_000_000_000, 0x7E0, 0, b"\x02\x10\x03")])
    run = run_dump(log, *args)
    assert run.returncode == 2
    assert run.stderr.startswith("error: ") and message in run.stderr
    assert "Traceback" not in run.stderr


def test_extended_addressing_pair(tmp_path):
    """--isotp TX:RX/ext: the first data byte is the target address (ISO 15765-2 extended
    addressing), the PCI follows it."""
    payload = bytes(range(0x40, 0x4C))  # 12 bytes: FF with 5, CFs with 6 each
    frames = [(0x6F1, 0, bytes([0x12, 0x10, len(payload)]) + payload[:5]),
              (0x612, 0, bytes([0xF1, 0x30, 0x00, 0x00, 0xCC, 0xCC, 0xCC, 0xCC])),
              (0x6F1, 0, bytes([0x12, 0x21]) + payload[5:11]),
              (0x6F1, 0, bytes([0x12, 0x22]) + payload[11:] + b"\xcc" * 5),
              (0x612, 0, bytes([0xF1, 0x03, 0x7F, 0x36, 0x78, 0xCC, 0xCC, 0xCC]))]
    log = write_candump(tmp_path / "ext.log", timed(frames, step=1000))
    run = run_dump(log, "--isotp", "6F1:612/ext", "-f", "json")
    assert run.returncode == 0, run.stderr
    got = messages_of(run.stdout)
    assert [bytes.fromhex(item["data"]) for item in got] == [payload, bytes.fromhex("7f3678")]
    assert got[0]["frames"] == 4 and got[0]["duration_us"] == 3000
    assert got[1]["uds"].endswith("(0x78, pending)")
    # read as normal addressing, the same frames are no such transfer
    run = run_dump(log, "--isotp", "6F1:612", "-f", "json")
    assert payload.hex() not in run.stdout
