"""Inside a private network namespace: start `cancorder touCAN` on the fake CAN API V3 library
(argv[1]), browse for it with python-zeroconf, stop it, check it is gone. Prints one JSON object."""
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from zeroconf import ServiceBrowser, Zeroconf  # noqa: E402

from tests.helpers import CancorderProcess, cancorder_env  # noqa: E402
from tests.netns_zeroconf_serve import SERVICE, Listener  # noqa: E402


def main(library):
    folder = tempfile.mkdtemp(prefix="toucan-netns-")
    env = cancorder_env(FAKE_TOUCAN_CHANNELS="2", FAKE_TOUCAN_LOG=os.path.join(folder, "calls.log"))
    server = CancorderProcess(["touCAN", "--library", library, "-c", "1", "-b", "125000",
                               "--service-name", "toucan-7"], env=env)
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
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
