"""Inside a private network namespace: `cancorder serve --socketcand` on the SLCAN emulator;
python-can's can.detect_available_configs("socketcand") must find its beacon, and the config
it returns must open a bus that receives frames. Then the same with --no-beacon finds nothing.
Prints one JSON object."""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import can  # noqa: E402

from tests.emulators.slcan_adapter import SlcanEmulator  # noqa: E402
from tests.helpers import CancorderProcess  # noqa: E402


def serve(emu, *extra):
    proc = CancorderProcess(["serve", "-i", "slcan", "-c", emu.url, "--no-zeroconf",
                             "--socketcand", "0", *extra])
    proc.port()
    port = int(proc.wait_for(r"socketcand serves bus '\S+' at \S+:(\d+)").group(1))
    return proc, port


def beacon_gaps(count=3, timeout=15.0):
    """Seconds between ``count`` beacons heard on port 42000, as a listener sees them."""
    import socket
    import time

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("", 42000))
        sock.settimeout(timeout)
        heard = []
        deadline = time.monotonic() + timeout
        while len(heard) < count and time.monotonic() < deadline:
            data = sock.recv(4096)
            if data.startswith(b"<CANBeacon"):
                heard.append(time.monotonic())
    return [round(b - a, 3) for a, b in zip(heard, heard[1:])]


def main():
    result = {}
    emu = SlcanEmulator()
    proc, port = serve(emu)
    try:
        result["port"] = port
        result["channel"] = emu.url
        result["beacon_gaps"] = beacon_gaps()
        configs = can.detect_available_configs(interfaces=["socketcand"])
        result["configs"] = [dict(c) for c in configs]
        bus = can.Bus(**configs[0])
        try:
            import time

            time.sleep(0.3)
            emu.send_messages([can.Message(arbitration_id=0x123, is_extended_id=False,
                                           data=b"\x01"),
                               can.Message(arbitration_id=0x1ABCDEF0, data=b"")])
            received = []
            deadline = time.monotonic() + 10
            while len(received) < 2 and time.monotonic() < deadline:
                msg = bus.recv(1.0)
                if msg is not None:
                    received.append(msg.arbitration_id)
            result["received"] = received
        finally:
            bus.shutdown()
    finally:
        proc.terminate()
        emu.close()
    result["log"] = proc.log
    emu = SlcanEmulator()
    proc, port = serve(emu, "--no-beacon")
    try:
        result["no_beacon_configs"] = [dict(c) for c in
                                       can.detect_available_configs(interfaces=["socketcand"])]
    finally:
        proc.terminate()
        emu.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
