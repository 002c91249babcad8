"""`dump --dbc`: signals decoded from a database the test writes (the OBD and UDS frames mock-uds
sends, one multiplexed message, one J1939 message), compared with cantools' own
``decode_message`` for the same bytes in every output: pretty, json, --stats (and the monitor,
in test_monitor.py)."""
import json
import re
import subprocess
import sys

import cantools
import pytest

from cancorder._fast import wire
from cancorder.dbc import format_value, load_databases
from cancorder.errors import UsageError
from tests.helpers import ROOT, cancorder_env
from tests.commands.test_dump import fake_loggers  # noqa: F401 (a fixture)

# Multiplexed: the OBD-II answer on 7E8 carries a different signal per PID (byte 2).
# J1939: EEC1 (PGN F004) matches whatever the priority and the source address.
DBC = '''VERSION ""

NS_ :

BS_:

BU_: Tester ECU

BO_ 2015 OBD_Request: 8 Tester
 SG_ Length : 0|8@1+ (1,0) [0|7] "" ECU
 SG_ Mode : 8|8@1+ (1,0) [0|255] "" ECU
 SG_ PID : 16|8@1+ (1,0) [0|255] "" ECU

BO_ 2024 OBD_Response: 8 ECU
 SG_ Length : 0|8@1+ (1,0) [0|7] "" Tester
 SG_ Mode : 8|8@1+ (1,0) [0|255] "" Tester
 SG_ PID M : 16|8@1+ (1,0) [0|255] "" Tester
 SG_ CoolantTemp m5 : 24|8@1+ (1,-40) [-40|215] "degC" Tester
 SG_ EngineRPM m12 : 31|16@0+ (0.25,0) [0|16383.75] "rpm" Tester
 SG_ VehicleSpeed m13 : 24|8@1+ (1,0) [0|255] "km/h" Tester

BO_ 2016 UDS_Request: 8 Tester
 SG_ PCI : 0|8@1+ (1,0) [0|255] "" ECU
 SG_ Service : 8|8@1+ (1,0) [0|255] "" ECU

BO_ 2364540158 EEC1: 8 ECU
 SG_ Torque : 16|8@1+ (1,-125) [-125|125] "%" Tester
 SG_ EngineSpeed : 24|16@1+ (0.125,0) [0|8031.875] "rpm" Tester

BA_DEF_  "ProtocolType" STRING ;
BA_DEF_DEF_  "ProtocolType" "";
BA_ "ProtocolType" "J1939";

VAL_ 2015 Mode 1 "ShowCurrentData" 9 "VehicleInformation" ;
VAL_ 2016 Service 16 "DiagnosticSessionControl" 17 "ECUReset" 39 "SecurityAccess" 62 "TesterPresent" ;
VAL_ 2024 Mode 65 "ShowCurrentDataResponse" ;
'''

EEC1_ID = 0x0CF004FE
EXT = wire.FLAG_EXT

#: (can_id, flags, data): decodable, multiplexed, J1939 from other sources, unknown, broken
FRAMES = [
    (0x7DF, 0, bytes.fromhex("02010CCCCCCCCCCC")),
    (0x7E8, 0, bytes.fromhex("04410C0BD3CCCCCC")),  # EngineRPM (mux 0C)
    (0x7E8, 0, bytes.fromhex("03410D2ACCCCCCCC")),  # VehicleSpeed (mux 0D)
    (0x7E8, 0, bytes.fromhex("0341055ACCCCCCCC")),  # CoolantTemp (mux 05)
    (0x7E0, 0, bytes.fromhex("021003CCCCCCCCCC")),  # Service: a choice
    (0x0CF00400, EXT, bytes.fromhex("FFFF7D401FFFFFFF")),  # EEC1 from source 00
    (0x18F00417, EXT, bytes.fromhex("FFFF90E02EFFFFFF")),  # EEC1, priority 6, source 17
    (0x123, 0, bytes.fromhex("0102")),  # unknown: stays raw
    (0x7E8, 0, bytes.fromhex("0241")),  # too short for OBD_Response
    (0x7E8, 0, bytes.fromhex("2121870000CCCCCC")),  # no signal for mux 0x87
    (0x0CF00500, EXT, bytes(8)),  # another PGN: unknown
]


@pytest.fixture
def dbc_path(tmp_path):
    path = tmp_path / "obd.dbc"
    path.write_text(DBC)
    return str(path)


@pytest.fixture
def database(dbc_path):
    return cantools.database.load_file(dbc_path)


def cantools_decode(database, can_id, flags, data):
    """cantools' own answer: (message name, values) or (name, None) when it raises; None for an
    id the database does not know (J1939 looked up by its PGN, the way the database means)."""
    if flags & EXT and (can_id >> 16) & 0xFF >= 240:
        matches = [m for m in database.messages if m.is_extended_frame
                   and (m.frame_id >> 8) & 0x3FFFF == (can_id >> 8) & 0x3FFFF]
        if not matches:
            return None
        frame_id = matches[0].frame_id
    else:
        try:
            database.get_message_by_frame_id(can_id)
        except KeyError:
            return None
        frame_id = can_id
    name = database.get_message_by_frame_id(frame_id).name
    try:
        return name, database.decode_message(frame_id, data)
    except cantools.database.DecodeError:
        return name, None


def plain(values):
    """Choices by their names, numbers as numbers: what the json output carries."""
    return {name: value if isinstance(value, (int, float)) else str(value)
            for name, value in values.items()}


def test_decoder_matches_cantools_for_every_frame(dbc_path, database):
    decoder = load_databases([dbc_path])
    for can_id, flags, data in FRAMES:
        expected = cantools_decode(database, can_id, flags, data)
        decoded = decoder.decode(can_id, flags, data)
        if expected is None:
            assert decoded is None, hex(can_id)
            continue
        name, values = expected
        assert decoded.name == name
        if values is None:
            assert decoded.error and not decoded.signals, (hex(can_id), data)
        else:
            assert decoded.error is None
            assert plain(decoded.signals) == plain(values), hex(can_id)
    # the cases the issue names, said outright
    assert decoder.decode(0x0CF00400, EXT, FRAMES[5][2]).name == "EEC1"
    assert decoder.decode(0x18F00417, EXT, FRAMES[6][2]).name == "EEC1"
    assert decoder.decode(0x7E0, 0, FRAMES[4][2]).signals["Service"] == "DiagnosticSessionControl"
    assert "EngineRPM" in decoder.decode(0x7E8, 0, FRAMES[1][2]).signals
    assert "EngineRPM" not in decoder.decode(0x7E8, 0, FRAMES[2][2]).signals
    assert decoder.decode(0x7E8, 0, b"\x02\x41").error == "2 bytes, the database says 8"


def records(frames):
    return b"".join(wire.pack_frame(1_700_000_000_000_000 + index * 1000, can_id, flags, data)
                    for index, (can_id, flags, data) in enumerate(frames))


def run_dump(*args):
    return subprocess.run([sys.executable, "-m", "cancorder", "dump", *args], cwd=ROOT,
                          env=cancorder_env(TZ="UTC"), capture_output=True, text=True,
                          timeout=120)


def check_json_lines(lines, database, frames):
    assert len(lines) == len(frames)
    for line, (can_id, flags, data) in zip(lines, frames):
        row = json.loads(line)
        assert (row["id"], bytes.fromhex(row["data"])) == (can_id, data)
        expected = cantools_decode(database, can_id, flags, data)
        if expected is None:
            assert "message" not in row and "signals" not in row, line
            continue
        name, values = expected
        assert row["message"] == name
        if values is None:
            assert row["decode_error"] and "signals" not in row, line
        else:
            assert row["signals"] == plain(values), line


def parse_pretty_signals(tail):
    """``Name a=1 unit b=Choice`` -> (Name, {a: "1", b: "Choice"}) (units are one word here)."""
    tokens = tail.split()
    name, signals, last = tokens[0], {}, None
    for token in tokens[1:]:
        if "=" in token:
            last, value = token.split("=", 1)
            signals[last] = value
    return name, signals


def same_value(text, expected):
    if isinstance(expected, (int, float)):
        return float(text) == pytest.approx(float(expected), rel=1e-9, abs=1e-9)
    return text == str(expected)


def check_pretty_lines(lines, database, frames):
    assert len(lines) == len(frames)
    for line, (can_id, flags, data) in zip(lines, frames):
        expected = cantools_decode(database, can_id, flags, data)
        head, _, tail = line.rpartition("|  ")
        if expected is None:
            assert line.endswith("|"), line
            continue
        name, values = expected
        if values is None:
            assert tail.startswith(f"{name} !"), line
            continue
        got_name, got = parse_pretty_signals(tail)
        assert got_name == name and set(got) == set(values), line
        for signal, value in values.items():
            assert same_value(got[signal], value), (line, signal, value)
        for signal in values:
            unit = database.get_message_by_name(name).get_signal_by_name(signal).unit
            if unit:
                assert f"{signal}={got[signal]} {unit}" in tail, line


def test_json_and_pretty_decode_like_cantools(fake_loggers, dbc_path, database):  # noqa: F811
    fake = fake_loggers(records(FRAMES))
    run = run_dump(fake.target, "--dbc", dbc_path, "--format", "json")
    assert run.returncode == 0, run.stderr
    check_json_lines(run.stdout.splitlines(), database, FRAMES)
    run = run_dump(fake.target, "--dbc", dbc_path)
    assert run.returncode == 0, run.stderr
    check_pretty_lines(run.stdout.splitlines(), database, FRAMES)


def stats_rows(text):
    """The --stats table printed at the end: {id: (hex data, [the lines beneath it])}."""
    rows, current = {}, None
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) != 7:
            continue
        if cells[0]:
            current = cells[0]
            rows[current] = (cells[6], [])
        elif current is not None:
            rows[current][1].append(cells[6])
    return rows


# serial: run beside another test (pytest -n 2) a --stats signal line once lacked its '='
@pytest.mark.serial
def test_mock_uds_session_decoded_in_json_pretty_and_stats(cancorder_process, dbc_path,
                                                            database, tmp_path):
    """A whole mock-uds session (OBD polling and a UDS download) through a real logger: json
    live, then the recording read back as pretty and as --stats, all equal to cantools."""
    server = cancorder_process("mock-uds", "--no-zeroconf", "--bind", "127.0.0.1", "--speed",
                               "20", "--no-loop", "--seed", "9", "--blocks", "20")
    port = server.port()
    recording = str(tmp_path / "session.log")
    run = run_dump(f"127.0.0.1:{port}", "--dbc", dbc_path, "-f", "json", "-o", recording)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    frames = []
    for line in lines:
        row = json.loads(line)
        frames.append((row["id"], EXT if row["extended"] else 0, bytes.fromhex(row["data"])))
    assert {0x7DF, 0x7E0, 0x7E8} <= {frame[0] for frame in frames}
    check_json_lines(lines, database, frames)
    decoded = [json.loads(line) for line in lines if "signals" in json.loads(line)]
    assert any("EngineRPM" in row["signals"] for row in decoded)
    assert any(row["signals"].get("Mode") == "ShowCurrentData" for row in decoded)

    run = run_dump(recording, "--dbc", dbc_path)
    assert run.returncode == 0, run.stderr
    check_pretty_lines(run.stdout.splitlines(), database, frames)

    run = run_dump(recording, "--dbc", dbc_path, "--stats")
    assert run.returncode == 0, run.stderr
    rows = stats_rows(run.stdout)
    last = {}
    for can_id, flags, data in frames:
        last[f"{can_id:03X}"] = (can_id, flags, data)
    assert set(rows) == set(last)
    for ident, (can_id, flags, data) in last.items():
        hex_text, beneath = rows[ident]
        assert hex_text == data.hex(" ").upper()
        name, values = cantools_decode(database, can_id, flags, data)
        if values is None:
            assert beneath[0].startswith(f"{name} !"), beneath
            continue
        assert beneath[0] == name
        got = dict(line.split("=", 1) for line in beneath[1:])
        assert set(got) == set(values)
        for signal, value in values.items():
            assert same_value(got[signal].split()[0], value), (ident, signal)


def test_other_database_formats_and_several_databases(fake_loggers, database, tmp_path):  # noqa: F811
    """The same messages as .kcd and .sym (written by cantools), two --dbc at once."""
    kcd = tmp_path / "obd.kcd"
    kcd.write_text(database.as_kcd_string())
    sym = tmp_path / "obd.sym"
    sym.write_text(database.as_sym_string())
    obd_only = [frame for frame in FRAMES if frame[0] in (0x7DF, 0x7E0, 0x7E8)]
    fake = fake_loggers(records(obd_only))
    for path in (kcd, sym):
        reference = cantools.database.load_file(str(path))
        run = run_dump(fake.target, "--dbc", str(path), "-f", "json")
        assert run.returncode == 0, (path, run.stderr)
        check_json_lines(run.stdout.splitlines(), reference, obd_only)
    # two databases: J1939 from one, OBD from the other
    j1939 = tmp_path / "j1939.dbc"
    j1939.write_text(DBC.split("BO_ 2015")[0] + "BO_ 2364540158" + DBC.split("BO_ 2364540158")[1]
                     .split("VAL_")[0])
    fake = fake_loggers(records(FRAMES))
    run = run_dump(fake.target, "--dbc", str(kcd), "--dbc", str(j1939), "-f", "json")
    assert run.returncode == 0, run.stderr
    names = [json.loads(line).get("message") for line in run.stdout.splitlines()]
    assert names[5:7] == ["EEC1", "EEC1"] and names[0:2] == ["OBD_Request", "OBD_Response"]


# An AUTOSAR 4 system description (written here by hand; cantools cannot write ARXML): one
# classic frame, 0x3E8, of two signals, reached as cantools reaches it, from the cluster's frame
# triggering (the id) through the frame and its PDU to the signals.
ARXML = """<?xml version="1.0" encoding="UTF-8"?>
<AUTOSAR xmlns="http://autosar.org/schema/r4.0" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://autosar.org/schema/r4.0 AUTOSAR_4-2-1.xsd">
  <AR-PACKAGES>
    <AR-PACKAGE>
      <SHORT-NAME>Net</SHORT-NAME>
      <ELEMENTS>
        <CAN-CLUSTER>
          <SHORT-NAME>Diag</SHORT-NAME>
          <CAN-CLUSTER-VARIANTS>
            <CAN-CLUSTER-CONDITIONAL>
              <BAUDRATE>500000</BAUDRATE>
              <PHYSICAL-CHANNELS>
                <CAN-PHYSICAL-CHANNEL>
                  <SHORT-NAME>DiagChannel</SHORT-NAME>
                  <FRAME-TRIGGERINGS>
                    <CAN-FRAME-TRIGGERING>
                      <SHORT-NAME>EngineDataTriggering</SHORT-NAME>
                      <FRAME-REF DEST="CAN-FRAME">/Net/EngineData</FRAME-REF>
                      <CAN-ADDRESSING-MODE>STANDARD</CAN-ADDRESSING-MODE>
                      <IDENTIFIER>1000</IDENTIFIER>
                    </CAN-FRAME-TRIGGERING>
                  </FRAME-TRIGGERINGS>
                </CAN-PHYSICAL-CHANNEL>
              </PHYSICAL-CHANNELS>
            </CAN-CLUSTER-CONDITIONAL>
          </CAN-CLUSTER-VARIANTS>
        </CAN-CLUSTER>
        <CAN-FRAME>
          <SHORT-NAME>EngineData</SHORT-NAME>
          <FRAME-LENGTH>4</FRAME-LENGTH>
          <PDU-TO-FRAME-MAPPINGS>
            <PDU-TO-FRAME-MAPPING>
              <SHORT-NAME>EngineDataMapping</SHORT-NAME>
              <PACKING-BYTE-ORDER>MOST-SIGNIFICANT-BYTE-LAST</PACKING-BYTE-ORDER>
              <PDU-REF DEST="I-SIGNAL-I-PDU">/Net/EngineDataPdu</PDU-REF>
              <START-POSITION>0</START-POSITION>
            </PDU-TO-FRAME-MAPPING>
          </PDU-TO-FRAME-MAPPINGS>
        </CAN-FRAME>
        <I-SIGNAL-I-PDU>
          <SHORT-NAME>EngineDataPdu</SHORT-NAME>
          <LENGTH>4</LENGTH>
          <I-SIGNAL-TO-PDU-MAPPINGS>
            <I-SIGNAL-TO-I-PDU-MAPPING>
              <SHORT-NAME>EngineSpeedMapping</SHORT-NAME>
              <I-SIGNAL-REF DEST="I-SIGNAL">/Net/EngineSpeed</I-SIGNAL-REF>
              <PACKING-BYTE-ORDER>MOST-SIGNIFICANT-BYTE-LAST</PACKING-BYTE-ORDER>
              <START-POSITION>0</START-POSITION>
            </I-SIGNAL-TO-I-PDU-MAPPING>
            <I-SIGNAL-TO-I-PDU-MAPPING>
              <SHORT-NAME>CoolantMapping</SHORT-NAME>
              <I-SIGNAL-REF DEST="I-SIGNAL">/Net/Coolant</I-SIGNAL-REF>
              <PACKING-BYTE-ORDER>MOST-SIGNIFICANT-BYTE-LAST</PACKING-BYTE-ORDER>
              <START-POSITION>16</START-POSITION>
            </I-SIGNAL-TO-I-PDU-MAPPING>
          </I-SIGNAL-TO-PDU-MAPPINGS>
        </I-SIGNAL-I-PDU>
        <I-SIGNAL>
          <SHORT-NAME>EngineSpeed</SHORT-NAME>
          <LENGTH>16</LENGTH>
          <NETWORK-REPRESENTATION-PROPS>
            <SW-DATA-DEF-PROPS-VARIANTS>
              <SW-DATA-DEF-PROPS-CONDITIONAL>
                <COMPU-METHOD-REF DEST="COMPU-METHOD">/Net/Quarter</COMPU-METHOD-REF>
                <UNIT-REF DEST="UNIT">/Net/rpm</UNIT-REF>
              </SW-DATA-DEF-PROPS-CONDITIONAL>
            </SW-DATA-DEF-PROPS-VARIANTS>
          </NETWORK-REPRESENTATION-PROPS>
        </I-SIGNAL>
        <I-SIGNAL>
          <SHORT-NAME>Coolant</SHORT-NAME>
          <LENGTH>8</LENGTH>
        </I-SIGNAL>
        <COMPU-METHOD>
          <SHORT-NAME>Quarter</SHORT-NAME>
          <CATEGORY>LINEAR</CATEGORY>
          <COMPU-INTERNAL-TO-PHYS>
            <COMPU-SCALES>
              <COMPU-SCALE>
                <COMPU-RATIONAL-COEFFS>
                  <COMPU-NUMERATOR><V>0</V><V>0.25</V></COMPU-NUMERATOR>
                  <COMPU-DENOMINATOR><V>1</V></COMPU-DENOMINATOR>
                </COMPU-RATIONAL-COEFFS>
              </COMPU-SCALE>
            </COMPU-SCALES>
          </COMPU-INTERNAL-TO-PHYS>
        </COMPU-METHOD>
        <UNIT>
          <SHORT-NAME>rpm</SHORT-NAME>
          <DISPLAY-NAME>rpm</DISPLAY-NAME>
        </UNIT>
      </ELEMENTS>
    </AR-PACKAGE>
  </AR-PACKAGES>
</AUTOSAR>
"""


def test_an_arxml_database_decodes_like_cantools(fake_loggers, tmp_path):  # noqa: F811
    path = tmp_path / "engine.arxml"
    path.write_text(ARXML)
    reference = cantools.database.load_file(str(path))
    assert [m.frame_id for m in reference.messages] == [0x3E8]
    frames = [(0x3E8, 0, bytes.fromhex("2C0B5A00")), (0x3E8, 0, bytes.fromhex("FFFF0000")),
              (0x3E8, 0, b"\x01"), (0x3E9, 0, bytes(4))]  # a short one; an unknown id
    fake = fake_loggers(records(frames))
    run = run_dump(fake.target, "--dbc", str(path), "-f", "json")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    check_json_lines(lines, reference, frames)
    assert json.loads(lines[0])["signals"] == {"EngineSpeed": 0x0B2C, "Coolant": 0x5A}
    assert json.loads(lines[2])["decode_error"] and "message" not in json.loads(lines[3])
    fake = fake_loggers(records(frames))
    run = run_dump(fake.target, "--dbc", str(path))
    assert run.returncode == 0, run.stderr
    check_pretty_lines(run.stdout.splitlines(), reference, frames)


@pytest.mark.parametrize("name, text, expected", [
    ("broken.dbc", DBC.replace(" SG_ PCI : 0|8@1+", " SG_ PCI 0|8@1+"),
     r"--dbc \S*broken\.dbc: cannot parse it: .*line 2[0-9]"),
    ("broken.kcd", "<NetworkDefinition><Bus", r"--dbc \S*broken\.kcd: cannot parse it: .*line 1"),
    ("obd.txt", DBC, r"--dbc \S*obd\.txt: unknown database format '\.txt'"),
    ("missing.dbc", None, r"--dbc \S*missing\.dbc: no such file"),
])
def test_a_bad_database_is_one_line_and_exit_2(tmp_path, name, text, expected):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    run = run_dump("127.0.0.1:9", "--dbc", str(path))  # nothing listens: it never gets there
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert re.search(expected, lines[0]), lines[0]
    with pytest.raises(UsageError):
        load_databases([str(path)])


def test_values_read_as_people_write_them():
    assert format_value(756.75) == "756.75"
    assert format_value(0.1 + 0.2) == "0.3"
    assert format_value(-113) == "-113"
