"""Run by tests/logfiles/test_rotation.py inside ``unshare -m`` (root): for each format, a
tmpfs of argv[1] bytes at argv[2] is filled by a recording at 5,000 frames/s (a fake clock),
room is made again, recording resumes; then every file is read back by can.LogReader and
compared with the counts. Prints "ok FORMAT" per format, or fails with an assertion."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import can  # noqa: E402

from cancorder._fast import wire  # noqa: E402
from cancorder.logfiles.naming import PART  # noqa: E402
from cancorder.logfiles.rotation import RecordOptions, RotatingLog  # noqa: E402
from tests.tshark import tshark_frames  # noqa: E402

FORMATS = (".log", ".log.gz", ".asc", ".asc.gz", ".csv", ".trc", ".blf", ".db", ".mf4",
           ".pcapng", ".pcapng.gz")
RATE, BATCH = 5000, 100  # frames/s, frames a batch (every 20 ms)
T0 = 1_700_000_000.0


class Clock:
    now = T0

    def __call__(self):
        return self.now


class Lines:
    def __init__(self):
        self.lines = []

    def info(self, text, *args, **kwargs):
        self.lines.append(text)

    warning = error = info


def batch(start):
    """BATCH frames numbered from ``start`` (the number in the payload, then 8F 8F 8F 8F: a
    line cut short would lose or change them)."""
    return b"".join(wire.pack_frame(int(T0 * 1e6) + i * 200, 0x100 + i % 0x600, 0,
                                    i.to_bytes(4, "big") + b"\x8F" * 4)
                    for i in range(start, start + BATCH))


def payloads(path):
    """Every frame's data in the file, by a reader cancorder did not write (python-can's;
    Wireshark's tshark for pcapng, which python-can does not read)."""
    if ".pcapng" in path:
        return [frame[4] for frame in tshark_frames(path)]
    with can.LogReader(path) as reader:
        return [bytes(message.data) for message in reader]


def check(folder, size, ext):
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder], check=True)
    try:
        filler = os.path.join(folder, "filler")
        with open(filler, "wb") as file:  # the room that is made again later
            file.write(b"\0" * (size // 4))
        clock, lines = Clock(), Lines()
        log = RotatingLog(RecordOptions(os.path.join(folder, "r-{n}" + ext)), {}, lines, clock)
        sent = 0
        while not log.failing and sent < 400_000:  # until the disk is full
            log.write(batch(sent))
            sent += BATCH
            clock.now += BATCH / RATE
            log.tick()
        assert log.failing, (ext, "never filled")
        for _ in range(3 * RATE // BATCH):  # 3 s more while full: counted as lost
            log.write(batch(sent))
            sent += BATCH
            clock.now += BATCH / RATE
            log.tick()
        os.remove(filler)  # room again
        for _ in range(7 * RATE // BATCH):  # 7 s: past the retry
            log.write(batch(sent))
            sent += BATCH
            clock.now += BATCH / RATE
            log.tick()
            if not log.failing:
                break
        assert not log.failing, (ext, "never resumed", lines.lines)
        assert any("recording resumed in" in line for line in lines.lines), lines.lines
        log.write(batch(sent))  # one more batch into the new file
        sent += BATCH
        log.close()
        assert not [n for n in os.listdir(folder) if n.endswith(PART)], os.listdir(folder)
        numbers = []
        for path in log.files:
            for data in payloads(path):  # every file read back without an error
                assert data[4:] == b"\x8F" * 4, (ext, path, data)
                numbers.append(int.from_bytes(data[:4], "big"))
        assert numbers == sorted(set(numbers)), (ext, "twice or out of order")
        assert len(numbers) == log.frames, (ext, len(numbers), log.frames)  # N is the files'
        assert log.frames + log.lost == sent, (ext, log.frames, log.lost, sent)
        assert numbers[0] == 0 and numbers[-1] == sent - 1, (ext, numbers[:1], numbers[-1:])
        assert log.frames > 0 and log.lost > 0, (ext, log.frames, log.lost)
        assert payloads(log.files[0]), (ext, "the file that filled the disk kept nothing")
        print("ok", ext, size, log.frames, log.lost, flush=True)
    finally:
        subprocess.run(["umount", folder], check=True)


def main(folder, size, *formats):
    for ext in formats or FORMATS:  # a few formats: when working on them
        check(folder, int(size), ext)


if __name__ == "__main__":
    main(*sys.argv[1:])
