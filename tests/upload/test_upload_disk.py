"""--upload with the store refusing and the disk filling (a tmpfs in a private mount namespace):
retention deletes the oldest file not yet sent only then, says so, and recording goes on."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT, cancorder_env

FRAMES, RATE = 60_000, 20_000  # 3 s, about 2.8 MB of candump lines
ROTATE = 256 << 10
TMPFS = 2 << 20  # room for about 8 files: the disk "would fill" below an eighth of it (256K)


def test_disk_filling_deletes_the_oldest_unsent_file_and_recording_goes_on(s3_server,
                                                                           tmp_path):
    """--keep-files 2, no bucket on the store: while the disk has room every file stays
    (none is sent); once less than an eighth of the 2 MiB tmpfs is left, each new file
    makes retention delete the oldest unsent one, with a warning naming it. At the end the
    files left are the newest, whole (read back by python-can), one frame after the other up
    to the last frame sent; no .part, nothing lost."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare -m for a private tmpfs")
    folder = tmp_path / "small"
    folder.mkdir()
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size={TMPFS} tmpfs "$1" && shift && '
         'exec "$@"', "sh", str(folder), sys.executable, "tests/tmpfs_upload_unsent_check.py",
         str(folder), s3_server.endpoint, str(FRAMES), str(RATE), str(ROTATE)],
        capture_output=True, text=True, env=cancorder_env(), cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    log, files = report["log"], report["files"]
    assert report["code"] == 0, log
    assert log.count("no bucket named logs") == 1, log  # the store refused: nothing sent
    deleted = re.findall(r"deleted the oldest recording \S+/(r-(\d+)\.log) before it was "
                         r"uploaded \(--keep-files 2: the disk would fill otherwise\)", log)
    assert len(deleted) >= 2, log
    # oldest first: r-1, r-2, ... one after the other
    assert [int(n) for _, n in deleted] == list(range(1, len(deleted) + 1)), deleted
    assert not any(name in files for name, _ in deleted)
    left = sorted(files, key=lambda name: int(name[2:-4]))
    assert int(left[0][2:-4]) == len(deleted) + 1  # every file not deleted is still there
    assert len(left) > 2  # more than --keep-files: the unsent ones stay while there is room
    numbers = [n for name in left for n in files[name]]
    assert numbers[-1] == FRAMES - 1  # the newest file kept, to the last frame
    assert numbers == list(range(numbers[0], FRAMES)), "a file cut short or out of order"
    assert all(files[name] for name in left)
    assert not [n for n in report["names"] if n.endswith(".part")], report["names"]
    assert "could not be recorded" not in log and "No space left" not in log, log
    assert "Traceback" not in log
    print(f"{len(deleted)} unsent files deleted, {len(left)} kept "
          f"({len(numbers):,} of {FRAMES:,} frames)")
