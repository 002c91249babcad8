"""Wireshark's tshark as the reader of pcapng files (a reader nobody here wrote): every frame as
``(channel, micros, can_id, flags, data)`` with wire flags (EXT, FD, BRS, ESI), as Wireshark's
SocketCAN dissector decodes it."""
import shutil
import subprocess

import pytest

from cancorder._fast import wire

FIELDS = ("frame.interface_name", "frame.time_epoch", "can.id", "can.flags.xtd",
          "can.flags.rtr", "can.flags.err", "canfd.flags.brs", "canfd.flags.esi", "can.len",
          "data.data")
#: the protocols of Wireshark's heuristic CAN dissectors on by default (tshark -G
#: heuristic-decodes): they take some payloads (id 0 with 8 zero bytes: AUTOSAR NM) away from
#: the plain Data field read here
HEURISTICS = ("autosar-nm", "signal_pdu", "ipdum")


def tshark_frames(path):
    """The frames tshark reads from ``path``; a file tshark finds damaged (cut short) fails the
    test (its exit code and words)."""
    if not shutil.which("tshark"):
        pytest.skip("needs tshark (Debian's package)")
    done = subprocess.run(["tshark", "-n", "-r", str(path),
                           *[arg for name in HEURISTICS for arg in ("--disable-protocol", name)],
                           "-T", "fields", "-E", "separator=|",
                           *[arg for field in FIELDS for arg in ("-e", field)]],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (path, done.stderr)
    frames = []
    for line in done.stdout.splitlines():
        name, stamp, can_id, xtd, rtr, err, brs, esi, length, data = line.split("|")
        assert rtr in ("", "0") and err in ("", "0"), line  # cancorder records neither
        seconds, _, fraction = stamp.partition(".")
        micros = int(seconds) * 1_000_000 + int((fraction + "000000")[:6])
        fd = brs != ""  # canfd's flags are shown for CAN FD frames only
        flags = ((wire.FLAG_EXT if xtd == "1" else 0) | (wire.FLAG_FD if fd else 0)
                 | (wire.FLAG_BRS if brs == "1" else 0) | (wire.FLAG_ESI if esi == "1" else 0))
        payload = bytes.fromhex(data)
        assert len(payload) == int(length), line
        frames.append((name, micros, int(can_id), flags, payload))
    return frames
