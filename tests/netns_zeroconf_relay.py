"""Inside a private network namespace: serve --mqtt to a Mosquitto, relay it back with
Zeroconf on, browse for the relay, check its TXT keys. Prints one JSON object."""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.emulators.slcan_adapter import SlcanEmulator  # noqa: E402
from tests.helpers import CancorderProcess  # noqa: E402
from tests.mosquitto import Mosquitto  # noqa: E402
from tests.netns_zeroconf_serve import browse_while_serving  # noqa: E402


def main():
    emu = SlcanEmulator()
    broker = Mosquitto(tempfile.mkdtemp(prefix="relay-broker-")).start()
    serve = CancorderProcess(["serve", "-i", "slcan", "-c", emu.url, "-b", "250000",
                              "--no-zeroconf", "--mqtt", broker.url("fleet/truck42")])
    try:
        serve.wait_for("MQTT: publishing to")
        result = browse_while_serving(CancorderProcess(
            ["relay", broker.url("fleet/truck42"), "--service-name", "relay-42"]))
    finally:
        serve.stop()
        broker.stop()
        emu.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
