"""Inside a private network namespace: `cancorder serve` on the SLCAN emulator, advertised over
Zeroconf; the python-can interface finds it (detect_available_configs), opens it by its
Zeroconf name and with no channel at all, and receives a frame. Prints one JSON object."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import can  # noqa: E402

from cancorder.pycan_interface import CancorderBus  # noqa: E402
from tests.emulators.slcan_adapter import SlcanEmulator  # noqa: E402
from tests.helpers import CancorderProcess  # noqa: E402


def main():
    emu = SlcanEmulator()
    server = CancorderProcess(["serve", "-i", "slcan", "-c", emu.url, "--service-name",
                               "bench-pycan"])
    result = {}
    try:
        result["port"] = server.port()
        server.wait_for("advertised as")
        result["configs"] = CancorderBus._detect_available_configs()
        name = result["configs"][0]["name"] if result["configs"] else "?"
        received = {}
        for key, channel in (("named", name), ("omitted", None)):
            with CancorderBus(channel=channel) as bus:
                server.wait_for(r"client \S+ connected")
                server.lines.clear()
                emu.send_messages([can.Message(arbitration_id=0x123, is_extended_id=False,
                                               data=bytes([len(received)]))])
                message = bus.recv(10)
                received[key] = [bus.channel_info, message.arbitration_id,
                                 bytes(message.data).hex()]
        result["received"] = received
        result["exit_code"] = server.terminate()
    finally:
        server.stop()
        emu.close()
        result["log"] = server.log
    print(json.dumps(result))


if __name__ == "__main__":
    main()
