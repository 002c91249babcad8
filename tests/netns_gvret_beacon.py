"""Inside a private network namespace with two networks (10.27.1.1/24 and 10.27.2.1/24 on
veth links): `cancorder serve --gvret` on the SLCAN emulator, and a listener on UDP 17222 as
SavvyCAN's connection window binds it. Records who sent each beacon, to which address, and
what it held: bound to one address, then to every address, then with --no-beacon. Prints one
JSON object."""
import json
import os
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.emulators.slcan_adapter import SlcanEmulator  # noqa: E402
from tests.helpers import CancorderProcess  # noqa: E402

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


def networks():
    for name, address in (("gv1", "10.27.1.1/24"), ("gv2", "10.27.2.1/24")):
        for command in (f"ip link add {name} type veth peer name {name}p",
                        f"ip addr add {address} dev {name}", f"ip link set {name}p up",
                        f"ip link set {name} up"):
            subprocess.run(command.split(), check=True)


def heard(seconds):
    """(sender, destination, payload hex) of each datagram on port 17222 for ``seconds``."""
    out = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        sock.bind(("", 17222))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, ancillary, _, sender = sock.recvmsg(2048, 256)
            except socket.timeout:
                break
            destination = None
            for level, kind, value in ancillary:
                if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                    destination = socket.inet_ntoa(value[8:12])  # in_pktinfo.ipi_addr
            out.append((sender[0], destination, data.hex()))
    return out


def serve(emu, *extra):
    proc = CancorderProcess(["serve", "-i", "slcan", "-c", emu.url, "--no-zeroconf", *extra])
    proc.port()
    proc.wait_for(r"GVRET serves bus '\S+' at \S+:(\d+)")
    return proc


def main():
    networks()
    result = {}
    for case, extra in (("bound", ["--gvret", "10.27.1.1:2323"]),
                        ("every", ["--gvret", "2323"]),
                        ("no_beacon", ["--gvret", "10.27.1.1:2323", "--no-beacon"])):
        emu = SlcanEmulator()
        proc = serve(emu, *extra)
        try:
            result[case] = heard(3.5)
        finally:
            proc.terminate()
            emu.close()
    bound = result["bound"]
    result["from_bound"] = sorted({sender for sender, _, _ in bound})
    result["payloads"] = sorted({payload for _, _, payload in bound + result["every"]})
    result["on_other_network"] = [d for d in bound if d[1] != "10.27.1.255"]
    result["every_destinations"] = sorted({d[1] for d in result["every"]})
    result["with_no_beacon"] = result["no_beacon"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
