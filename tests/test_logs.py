"""--log-format json: one JSON object per line."""
import json
import logging
import time

from cancorder.logs import JsonFormatter


def record(message, *args, level=logging.WARNING, name="cancorder.source", **extra):
    rec = logging.LogRecord(name, level, __file__, 1, message, args, None)
    rec.__dict__.update(extra)
    return rec


def test_fields():
    rec = record("%s lost; reopening", "slcan on socket://x", bus="powertrain",
                 event="adapter_lost", rate_key="lost", attempt=3, delay=0.5)
    rec.created = 1_700_000_000.25
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2023-11-14T22:13:20.250Z", "level": "warning", "bus": "powertrain",
        "event": "adapter_lost", "message": "slcan on socket://x lost; reopening",
        "fields": {"attempt": 3, "delay": 0.5}}


def test_defaults_and_odd_values():
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys

        rec = record("crashed", level=logging.ERROR, exc_info=sys.exc_info(), path=object())
    data = json.loads(JsonFormatter().format(rec))
    assert data["bus"] is None and data["event"] == "cancorder.source"
    assert data["level"] == "error" and "ValueError: boom" in data["fields"]["traceback"]
    assert data["fields"]["path"].startswith("<object object")


def test_the_final_error_line_is_json_too(tmp_path):
    import subprocess
    import sys

    from tests.helpers import ROOT, cancorder_env

    done = subprocess.run([sys.executable, "-m", "cancorder", "serve", "--log-format", "json",
                           "--config", str(tmp_path / "nope.toml")], cwd=ROOT,
                          env=cancorder_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    line = json.loads(done.stderr)
    assert line["level"] == "error" and line["event"] == "exit"
    assert line["message"].startswith(f"config {tmp_path / 'nope.toml'}: cannot read it")
    assert line["fields"] == {"exit_code": 2}


def test_the_totals_line_carries_its_figures_as_fields(cancorder_process, slcan_emulator):
    """--log-format json: the totals are fields, not only words in the message."""
    import can

    from tests.helpers import StreamClient

    proc = cancorder_process("serve", "-i", "slcan", "-c", slcan_emulator.url, "--no-zeroconf",
                             "--log-format", "json")
    client = StreamClient(proc.port())
    proc.wait_for(r"connected \(1 connected\)")
    slcan_emulator.send_messages([can.Message(arbitration_id=0x100 + i, is_extended_id=False,
                                              data=bytes([i] * i)) for i in range(5)])
    client.wait_frames(5)
    slcan_emulator.send_lines(b"#junk\r")
    time.sleep(0.3)
    assert proc.terminate() == 0
    client.close()
    lines = [json.loads(line) for line in proc.lines if line.startswith("{")]
    (totals,) = [line for line in lines if line["event"] == "totals"]
    assert totals["message"].startswith("totals: frames in 6, out 5, ")
    fields = totals["fields"]
    assert fields["frames"] == {"in": 6, "out": 5, "remote": 0, "error": 0, "invalid": 0,
                                "garbage": 1, "filtered": 0, "overruns": 0, "bus_errors": 0,
                                "restarts": 0, "dropped": 0}
    assert fields["clients_served"] == 1 and fields["clients_dropped_lag"] == 0
    assert fields["clients_refused"] == 0
    assert fields["bytes_sent"] == len(client.raw) == 5 * 14 + sum(range(5))
    assert fields["sinks"] == {}
