"""``dump --where``: frames kept by their decoded signals, the answers checked against values
cantools decodes itself, in a format and in an -o recording."""
import json
import random
import subprocess
import sys

import can
import cantools
import pytest

from cancorder._fast import wire
from cancorder.errors import UsageError
from cancorder.where import SignalCondition, tokens
from tests.helpers import cancorder_env
from tests.test_dbc import DBC
from tests.test_reassembly import write_candump

EXT = wire.FLAG_EXT


def run_dump(*args):
    return subprocess.run([sys.executable, "-m", "cancorder", "dump", *map(str, args)],
                          env=cancorder_env(TZ="UTC"), capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def dbc_path(tmp_path):
    path = tmp_path / "obd.dbc"
    path.write_text(DBC)
    return path


def traffic(count=600, seed=5):
    """EEC1 from two sources (J1939: matched by PGN), OBD requests and responses, an unknown
    id: (t_us, can_id, flags, data)."""
    rng = random.Random(seed)
    frames = []
    for index in range(count):
        t_us = 1_700_000_000_000_000 + index * 1000
        pick = index % 4
        if pick == 0:
            speed = rng.randrange(0, 64000)
            frames.append((t_us, rng.choice((0x0CF00400, 0x18F00417)), EXT,
                           bytes([0xFF, 0xFF, rng.randrange(256)]) + speed.to_bytes(2, "little")
                           + b"\xff\xff\xff"))
        elif pick == 1:
            frames.append((t_us, 0x7DF, 0, bytes([2, rng.choice((1, 9)), rng.randrange(256)])
                           + b"\xcc" * 5))
        elif pick == 2:
            frames.append((t_us, 0x7E8, 0, bytes([4, 0x41, 0x0C]) + rng.randbytes(2)
                           + b"\xcc" * 3))
        else:
            frames.append((t_us, 0x123, 0, rng.randbytes(8)))
    return frames


def reference_values(frames):
    """What cantools itself decodes each frame to: (message name, signals) or None."""
    database = cantools.database.load_file(DBC_FILE[0])
    eec1 = database.get_message_by_name("EEC1")
    out = []
    for _, can_id, flags, data in frames:
        if flags & EXT and (can_id >> 8) & 0x3FFFF == 0xF004:
            out.append(("EEC1", eec1.decode(data, decode_choices=True)))
        elif not flags & EXT and can_id in (0x7DF, 0x7E8):
            message = database.get_message_by_frame_id(can_id)
            out.append((message.name, message.decode(data, decode_choices=True)))
        else:
            out.append(None)
    return out


DBC_FILE = []

CONDITIONS = [
    ("EngineSpeed > 3000", lambda m, s: m == "EEC1" and s["EngineSpeed"] > 3000),
    ("EEC1.EngineSpeed <= 1000.5 or Torque >= 100",
     lambda m, s: m == "EEC1" and (s["EngineSpeed"] <= 1000.5 or s["Torque"] >= 100)),
    ('OBD_Request.Mode == "VehicleInformation" and PID < 0x40',
     lambda m, s: m == "OBD_Request" and str(s["Mode"]) == "VehicleInformation"
     and s["PID"] < 0x40),
    ("not (EngineSpeed > 3000) and Torque != -125",
     lambda m, s: m == "EEC1" and not s["EngineSpeed"] > 3000 and s["Torque"] != -125),
    ("Mode = 9 or EngineRPM > 8000",
     lambda m, s: (m == "OBD_Request" and s["Mode"].value == 9)
     or (m == "OBD_Response" and s.get("EngineRPM", 0) > 8000)),
]


@pytest.mark.parametrize("condition, expected", CONDITIONS, ids=[c for c, _ in CONDITIONS])
def test_where_keeps_the_frames_cantools_values_meet(tmp_path, dbc_path, condition, expected):
    DBC_FILE[:] = [str(dbc_path)]
    frames = traffic()
    log = write_candump(tmp_path / "bus.log", frames)
    wanted = [frame[0] for frame, decoded in zip(frames, reference_values(frames))
              if decoded is not None and expected(*decoded)]
    assert 0 < len(wanted) < len(frames)
    recorded = tmp_path / "kept.log"
    run = run_dump(log, "--dbc", dbc_path, "--where", condition, "-f", "json", "-o", recorded)
    assert run.returncode == 0, run.stderr
    shown = [json.loads(line)["timestamp_us"] for line in run.stdout.splitlines()]
    assert shown == wanted
    with can.CanutilsLogReader(str(recorded)) as reader:
        assert [round(message.timestamp * 1e6) for message in reader] == wanted


@pytest.mark.parametrize("condition, message", [
    ("EngineSpeed >", "expected a signal name, a number or a quoted text, found the end"),
    ("EngineSpeed > 3000 and", "found the end"),
    ("(EngineSpeed > 3000", "expected ')'"),
    ("EngineSpeed ~ 3", "unexpected '~ 3'"),
    ("Nope > 1", "no signal 'Nope'"),
    ("EEC1.Mode > 1", "message EEC1 has no signal 'Mode'"),
    ("Engine.EngineSpeed > 1", "no message 'Engine'"),
    ("__import__('os')", "expected a comparison"),
    ("", "the condition is empty"),
])
def test_where_errors_name_the_problem(tmp_path, dbc_path, condition, message):
    log = write_candump(tmp_path / "bus.log", traffic(8))
    run = run_dump(log, "--dbc", dbc_path, "--where", condition)
    assert run.returncode == 2, run.stdout
    assert run.stderr.startswith("error: --where") and message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_where_needs_a_database(tmp_path):
    log = write_candump(tmp_path / "bus.log", traffic(8))
    run = run_dump(log, "--where", "EngineSpeed > 1")
    assert run.returncode == 2 and "add --dbc FILE" in run.stderr


def test_unknown_stays_unknown_under_not(dbc_path):
    """A frame without the signal never passes, whatever the negation."""
    from cancorder.dbc import load_databases

    signals = load_databases([str(dbc_path)])
    condition = SignalCondition("not EngineSpeed > 3000", signals)
    obd = signals.decode(0x7DF, 0, bytes.fromhex("02010CCCCCCCCCCC"))
    assert not condition.passes(obd)
    assert tokens("a.b>=-1.5e3") == [("name", "a.b", 1), ("op", ">=", 4),
                                     ("number", -1500.0, 6)]
    with pytest.raises(UsageError):
        SignalCondition("EngineSpeed > 1 or or", signals)
