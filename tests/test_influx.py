"""`dump -f influx --dbc FILE` (issue 30): InfluxDB line protocol, read back by a parser written
here from the published grammar (docs.influxdata.com, "Line protocol": escapes, field types,
the timestamp), every value checked against cantools' own decoding of the same frames."""
import subprocess
import sys

import cantools

from cancorder.formats import candump_line
from tests.helpers import ROOT, cancorder_env

DBC = f"{ROOT}/docs/example-obd.dbc"
T0 = 1_700_000_000_123_456


def _split(text, separator):
    """``text`` cut at every ``separator`` that is neither escaped nor inside a quoted string."""
    parts, current, quoted, k = [], "", False, 0
    while k < len(text):
        ch = text[k]
        if ch == "\\" and k + 1 < len(text):
            current += text[k:k + 2]
            k += 2
            continue
        if ch == '"':
            quoted = not quoted
        if ch == separator and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
        k += 1
    return parts + [current]


def _unescape(text, special):
    out, k = "", 0
    while k < len(text):
        if text[k] == "\\" and k + 1 < len(text) and text[k + 1] in special:
            out += text[k + 1]
            k += 2
        else:
            out += text[k]
            k += 1
    return out


def _value(text):
    if text.startswith('"'):
        assert text.endswith('"') and len(text) >= 2, text
        return _unescape(text[1:-1], '"\\')
    if text.endswith("i"):
        return int(text[:-1])
    if text in ("t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"):
        return text[0] in "tT"
    return float(text)


def parse_line(line):
    """measurement, {tag: value}, {field: value}, timestamp (ns) of one line."""
    head, fields, stamp = _split(line, " ")
    measurement, *tags = _split(head, ",")
    keys = ",= \\"
    tag_pairs = [_split(tag, "=") for tag in tags]
    assert all(len(pair) == 2 for pair in tag_pairs), line
    field_pairs = [_split(field, "=") for field in _split(fields, ",")]
    assert all(len(pair) == 2 for pair in field_pairs), line
    return (_unescape(measurement, ", \\"),
            {_unescape(k, keys): _unescape(v, keys) for k, v in tag_pairs},
            {_unescape(k, keys): _value(v) for k, v in field_pairs}, int(stamp))


def frames():
    out = []
    for i in range(40):
        pid = (5, 12, 13)[i % 3]
        out.append((T0 + i * 1000, 0x7E8, 0, bytes([4, 0x41, pid, i * 7 % 256, i, 0, 0, 0])))
        out.append((T0 + i * 1000 + 1, 0x7DF, 0, bytes([2, 1 if i % 2 else 9, pid, 0, 0, 0, 0,
                                                        0])))
        out.append((T0 + i * 1000 + 2, 0x0CF004FE, 1, bytes([0, 0, i, i * 3, i, 0, 0, 0])))
        out.append((T0 + i * 1000 + 3, 0x321, 0, b"\x01"))  # no database knows it
    out.append((T0 + 99_000, 0x7E8, 0, b"\x01"))  # too short for its message
    return out


def test_influx_lines_parse_and_hold_what_cantools_decodes(tmp_path):
    folder = tmp_path / "logs, a=b"  # the logger tag (the file) needs every escape
    folder.mkdir()
    path = folder / "bus one.log"
    path.write_text("".join(candump_line(frame, "can0") + "\n" for frame in frames()))
    done = subprocess.run([sys.executable, "-m", "cancorder", "dump", str(path), "--dbc", DBC,
                           "-f", "influx"], capture_output=True, text=True,
                          env=cancorder_env(), cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    database = cantools.database.load_file(DBC)
    expected = []
    for micros, can_id, flags, data in frames():
        try:
            message = database.get_message_by_frame_id(can_id)
        except KeyError:
            continue
        try:
            signals = message.decode(data, decode_choices=True)
        except Exception:
            continue  # a frame that does not decode: no line
        fields = {name: (str(value) if not isinstance(value, (int, float)) else value)
                  for name, value in signals.items()}
        expected.append(("can", {"logger": str(path), "channel": "can0",
                                 "message": message.name}, fields, micros * 1000))
    got = [parse_line(line) for line in done.stdout.splitlines()]
    assert len(got) == 120 and got == expected
    # integers stay integers (no schema clash in InfluxDB), choices are strings
    assert any(isinstance(fields.get("Mode"), str) for _, _, fields, _ in got)
    assert all(isinstance(fields["PID"], int) for _, tags, fields, _ in got
               if tags["message"] == "OBD_Response")


def test_influx_needs_a_database():
    done = subprocess.run([sys.executable, "-m", "cancorder", "dump", "x.log", "-f", "influx"],
                          capture_output=True, text=True, env=cancorder_env(), cwd=ROOT,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(
        "error: --format influx writes decoded signals: add --dbc FILE"), done.stderr
