"""Inside a private network namespace: `cancorder serve --config` with three buses (two SLCAN
emulators and the UDS simulator); browse for them; stop; check all are gone. Prints one JSON
object."""
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from zeroconf import ServiceBrowser, Zeroconf  # noqa: E402

from tests.emulators.slcan_adapter import SlcanEmulator  # noqa: E402
from tests.helpers import CancorderProcess  # noqa: E402
from tests.netns_zeroconf_serve import SERVICE, Listener  # noqa: E402


def main():
    a, b = SlcanEmulator(), SlcanEmulator()
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "car.toml")
        with open(path, "w") as f:
            f.write(f'[[bus]]\nname = "powertrain"\nsource = "slcan"\nchannel = "{a.url}"\n'
                    f'service_name = "car-powertrain"\n'
                    f'[[bus]]\nname = "body"\nsource = "slcan"\nchannel = "{b.url}"\n'
                    f'bitrate = 250000\nservice_name = "car-body"\n'
                    f'[[bus]]\nname = "sim"\nsource = "mock-uds"\nasync = true\n'
                    f'service_name = "car-sim"\n')
        server = CancorderProcess(["serve", "--config", path])
        try:
            deadline = time.monotonic() + 30
            while server.log.count("advertised as") < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            zc = Zeroconf(interfaces=["127.0.0.1"])
            listener = Listener()
            ServiceBrowser(zc, SERVICE, listener)
            deadline = time.monotonic() + 15
            while len(listener.added) < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            result["services"] = {}
            for name in listener.added:
                info = zc.get_service_info(SERVICE, name, timeout=5000)
                result["services"][name] = {
                    "port": info.port,
                    "txt": {k.decode(): (v or b"").decode() for k, v in info.properties.items()}}
            result["exit_code"] = server.terminate()
            deadline = time.monotonic() + 15
            while len(listener.removed) < len(listener.added) and time.monotonic() < deadline:
                time.sleep(0.1)
            result["removed"] = sorted(listener.removed)
            zc.close()
        finally:
            server.stop()
            result["log"] = server.log
            a.close()
            b.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
