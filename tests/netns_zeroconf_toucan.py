"""Inside a private network namespace: start `cancorder touCAN` on the fake CAN API V3 library
(argv[1]) as TouCAN index 1, browse for it, stop it, check it is gone. Prints one JSON object."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.helpers import CancorderProcess, cancorder_env  # noqa: E402
from tests.netns_zeroconf_serve import browse_while_serving  # noqa: E402


def main(library):
    server = CancorderProcess(["touCAN", "--library", library, "-c", "1", "-b", "125000",
                               "--service-name", "toucan-7"],
                              env=cancorder_env(FAKE_TOUCAN_CHANNELS="2"))
    print(json.dumps(browse_while_serving(server)))


if __name__ == "__main__":
    main(sys.argv[1])
