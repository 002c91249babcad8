"""Run by tests/upload/test_upload_disk.py inside ``unshare -m`` with a small tmpfs at argv[1]:
``gen`` records there with --upload to a store that refuses (no bucket, at argv[2]) until the
disk would fill, and past it. Prints one JSON line: the log, the exit code, and each file left
(its name and the sequence numbers it holds, read back by python-can)."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import can  # noqa: E402

from tests.helpers import cancorder_env, free_port  # noqa: E402
from tests.upload.s3 import s3_env  # noqa: E402


def main(folder, endpoint, frames, rate, rotate_size):
    done = subprocess.run(
        [sys.executable, "-m", "cancorder", "gen", "-r", rate, "-n", frames,
         "--data-mode", "sequence", "--id", "0x123", "--seed", "1", "--async", "--no-zeroconf",
         "--bind", "127.0.0.1", "-p", str(free_port()), "--stats",
         "--record", os.path.join(folder, "r-{n}.log"),
         "--rotate-size", rotate_size, "--keep-files", "2",
         "--upload", "s3://logs/car", "--upload-endpoint", endpoint],
        env=cancorder_env(**s3_env()), capture_output=True, text=True, timeout=60)
    files = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith("r-") and name.endswith(".log"):
            files[name] = [int.from_bytes(bytes(m.data), "big") for m in can.LogReader(path)]
    print(json.dumps({"code": done.returncode, "log": done.stderr, "files": files,
                      "names": sorted(os.listdir(folder))}))


if __name__ == "__main__":
    main(*sys.argv[1:])
