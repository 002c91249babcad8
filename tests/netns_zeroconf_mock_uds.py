"""Inside a private network namespace: start `cancorder mock-uds`, browse for it, read its TXT
keys, stop it. Prints one JSON object."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.helpers import CancorderProcess  # noqa: E402
from tests.netns_zeroconf_serve import browse_while_serving  # noqa: E402


def main():
    server = CancorderProcess(["mock-uds", "--service-name", "uds-bench", "--extended-ids",
                               "--fd", "--seed", "5"])
    print(json.dumps(browse_while_serving(server)))


if __name__ == "__main__":
    main()
