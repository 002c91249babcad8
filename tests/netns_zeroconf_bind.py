"""Inside a private network namespace with two interfaces (lo, and d0 at 10.9.9.1, one end of a veth pair):
serve with --bind on each, and with no --bind, and read from /proc/net/igmp on which interfaces
the server joined the mDNS group (224.0.0.251): Zeroconf must run only where it listens.
Prints one JSON object."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.emulators.slcan_adapter import SlcanEmulator  # noqa: E402
from tests.helpers import CancorderProcess, cancorder_env  # noqa: E402

MDNS_GROUP = "FB0000E0"  # 224.0.0.251 as /proc/net/igmp writes it


def mdns_devices():
    devices, device = [], None
    for line in open("/proc/net/igmp").read().splitlines()[1:]:
        if not line.startswith(("\t", " ")):
            device = line.split()[1]
        elif line.split()[0] == MDNS_GROUP:
            devices.append(device)
    return sorted(set(devices))


def serve(emu, *bind):
    env = cancorder_env()
    env.pop("CANCORDER_ZEROCONF_INTERFACES", None)  # the choice under test
    server = CancorderProcess(["serve", "-i", "slcan", "-c", emu.url, *bind], env=env)
    try:
        server.port()
        server.wait_for("advertised as")
        return {"devices": mdns_devices(), "log": server.log}
    finally:
        server.terminate()
        server.stop()


def main():
    for command in ("ip link add d0 type veth peer name d1", "ip addr add 10.9.9.1/24 dev d0",
                    "ip link set d0 multicast on", "ip link set d1 up", "ip link set d0 up"):
        subprocess.run(command.split(), check=True)
    emu = SlcanEmulator()
    try:
        result = {"before": mdns_devices(),
                  "bind_lo": serve(emu, "--bind", "127.0.0.1"),
                  "bind_d0": serve(emu, "--bind", "10.9.9.1"),
                  "everywhere": serve(emu)}
    finally:
        emu.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
