"""Run by tests/sinks/test_recorder.py inside ``unshare -m`` with a 1 MiB tmpfs at argv[1]:
serve from the SLCAN emulator with --record there, fill the disk, free it, check everything.
Prints "ok" last, or fails with an assertion."""
import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.emulators.slcan_adapter import SlcanEmulator, build_lines  # noqa: E402
from tests.helpers import CancorderProcess, StreamClient  # noqa: E402
from tests.sinks.test_recorder import send_paced, sequence_numbers  # noqa: E402


def main(folder):
    emulator = SlcanEmulator()
    proc = CancorderProcess(["serve", "-i", "slcan", "-c", emulator.url, "-b", "1000000",
                             "--no-zeroconf", "--stats", "--record",
                             os.path.join(folder, "r-{n}.log"), "--rotate-size", "100K"])
    try:
        client = StreamClient(proc.port())
        emulator.wait_open()
        lines = build_lines(32_000)
        send_paced(emulator, lines[:5000], 5000)
        client.wait_frames(5000)
        filler = os.path.join(folder, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # take every byte that is left
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        send_paced(emulator, lines[5000:20000], 5000)
        proc.wait_for(r"recording stopped: cannot (write|create) .*No space left on device",
                      timeout=20)
        client.wait_frames(20000)  # serving went on
        os.remove(filler)
        send_paced(emulator, lines[20000:32000], 2000)  # 6 s: past the 5 s retry
        proc.wait_for(r"recording resumed in .*r-\d+\.log \([\d,]+ frames could not be "
                      "recorded meanwhile\)", timeout=20)
        frames = client.wait_frames(32000)
        assert [int.from_bytes(f[3], "big") for f in frames] == list(range(32000))
        proc.wait_for(r"frames/s.*recorded [\d,]+ frames to .*; [\d,]+ frames could not be "
                      "recorded", timeout=10)  # --stats
    finally:
        code = proc.terminate()
        emulator.close()
    assert code == 0, proc.log
    totals = proc.wait_for(r"totals: .*recorded ([\d,]+) frames to .*; ([\d,]+) frames could "
                           r"not be recorded")
    recorded, lost = (int(n.replace(",", "")) for n in totals.groups())
    assert recorded + lost == 32000, proc.log
    assert proc.log.count("recording stopped") == 1, proc.log  # said once
    numbers = []
    for path in sorted(glob.glob(os.path.join(folder, "r-*.log")),
                       key=lambda p: int(p.rsplit("-", 1)[1].split(".")[0])):
        numbers.extend(sequence_numbers(path))  # every file readable, the cut one too
    assert numbers == sorted(set(numbers)), "twice or out of order"
    assert len(numbers) == recorded, (len(numbers), recorded)
    assert numbers[:1000] == list(range(1000))  # before the disk filled
    assert numbers[-1] == 31999  # after it was freed
    assert not glob.glob(os.path.join(folder, "*.part"))
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1])
