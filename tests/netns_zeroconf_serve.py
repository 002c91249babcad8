"""Inside a private network namespace: start `cancorder serve` on the SLCAN emulator, browse
for it with python-zeroconf, stop it, check it is gone. Prints one JSON object."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from zeroconf import ServiceBrowser, ServiceListener, Zeroconf  # noqa: E402

from tests.emulators.slcan_adapter import SlcanEmulator  # noqa: E402
from tests.helpers import CancorderProcess  # noqa: E402

SERVICE = "_ecuconnect-log._tcp.local."


class Listener(ServiceListener):
    def __init__(self):
        self.added, self.removed = [], []

    def add_service(self, zc, type_, name):
        self.added.append(name)

    def remove_service(self, zc, type_, name):
        self.removed.append(name)

    def update_service(self, zc, type_, name):
        pass


def browse_while_serving(server):
    """Browse for ``server`` (a CancorderProcess), stop it, see it go. Returns the findings."""
    result = {}
    try:
        port = server.port()
        server.wait_for("advertised as")
        zc = Zeroconf(interfaces=["127.0.0.1"])
        listener = Listener()
        ServiceBrowser(zc, SERVICE, listener)
        deadline = time.monotonic() + 10
        while not listener.added and time.monotonic() < deadline:
            time.sleep(0.1)
        result["port"] = port
        result["names"] = list(listener.added)
        if listener.added:
            info = zc.get_service_info(SERVICE, listener.added[0], timeout=5000)
            result["info_port"] = info.port
            result["addresses"] = info.parsed_addresses()
            result["txt"] = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
        result["exit_code"] = server.terminate()
        deadline = time.monotonic() + 10
        while not listener.removed and time.monotonic() < deadline:
            time.sleep(0.1)
        result["removed"] = list(listener.removed)
        zc.close()
    finally:
        server.stop()
        result["log"] = server.log
    return result


def main():
    emu = SlcanEmulator()
    try:
        result = browse_while_serving(CancorderProcess(
            ["serve", "-i", "slcan", "-c", emu.url, "-b", "250000", "--service-name", "bench-42"]))
    finally:
        emu.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
