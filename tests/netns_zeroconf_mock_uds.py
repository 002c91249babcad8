"""Inside a private network namespace: start `cancorder mock-uds`, browse for it, read its TXT
keys, stop it. Prints one JSON object."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.helpers import CancorderProcess  # noqa: E402
from tests.netns_zeroconf_serve import browse_then_stop  # noqa: E402


def main():
    server = CancorderProcess(["mock-uds", "--service-name", "uds-bench", "--extended-ids",
                               "--fd", "--seed", "5"])
    result = {}
    try:
        result = browse_then_stop(server)
    finally:
        server.stop()
        result["log"] = server.log
    print(json.dumps(result))


if __name__ == "__main__":
    main()
