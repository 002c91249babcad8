"""Inside a private network namespace: start `cancorder replay` of the .log in argv[1], browse
for it, read its TXT keys, stop it. Prints one JSON object."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.helpers import CancorderProcess  # noqa: E402
from tests.netns_zeroconf_serve import browse_while_serving  # noqa: E402


def main():
    server = CancorderProcess(["replay", sys.argv[1], "--loop", "--service-name", "replayed"])
    print(json.dumps(browse_while_serving(server)))


if __name__ == "__main__":
    main()
