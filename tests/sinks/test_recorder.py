"""--record on a live server: real files, read back by python-can's readers."""
import glob
import os
import shutil
import subprocess
import sys
import time
import zlib

import can
import pytest

from cancorder.logfiles.naming import PART
from tests.emulators.slcan_adapter import build_lines
from tests.helpers import ROOT, StreamClient, cancorder_env, served_client


def send_paced(emulator, lines, rate, chunk=200):
    start = time.monotonic()
    for k in range(0, len(lines), chunk):
        emulator.send_lines(b"".join(lines[k:k + chunk]))
        delay = start + (k + chunk) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def sequence_numbers(path):
    """The payloads (build_lines numbers its frames in the payload) of a recording."""
    return [int.from_bytes(bytes(m.data), "big") for m in can.LogReader(path)]


def closed_files(folder, pattern):
    files = glob.glob(os.path.join(folder, pattern))
    return sorted((path for path in files if not path.endswith(PART)),
                  key=lambda path: int(path.rsplit("-", 1)[1].split(".")[0]))


@pytest.mark.long
@pytest.mark.serial
def test_20000_frames_per_second_for_30_s_rotated_every_frame_once(
        cancorder_process, slcan_emulator, tmp_path):
    """The acceptance test: .log.gz and .blf at 1M rotation, all files read back by
    can.LogReader, together exactly the frames the emulator sent, in order."""
    proc = cancorder_process(
        "serve", "-i", "slcan", "-c", slcan_emulator.url, "-b", "1000000", "--no-zeroconf",
        "--record", str(tmp_path / "gz-{n}.log.gz"), "--record", str(tmp_path / "b-{n}.blf"),
        "--rotate-size", "1M")
    client = served_client(proc)
    count, rate = 600_000, 20_000
    slcan_emulator.wait_open()
    send_paced(slcan_emulator, build_lines(count), rate)
    assert len(client.wait_frames(count, timeout=60)) == count
    assert proc.terminate() == 0
    assert f"recorded {count:,} frames to" in proc.log
    assert "could not be recorded" not in proc.log
    for pattern in ("gz-*.log.gz", "b-*.blf"):
        files = closed_files(tmp_path, pattern)
        assert len(files) >= 3, (pattern, files)  # rotated, and every file closed
        numbers = []
        for path in files:
            assert os.path.getsize(path) <= (1 << 20) + (256 << 10), path
            numbers.extend(sequence_numbers(path))
        assert numbers == list(range(count)), pattern
    assert not glob.glob(str(tmp_path / ("*" + PART)))


def test_kill_9_leaves_closed_files_whole_and_the_open_one_readable(
        cancorder_process, slcan_emulator, tmp_path):
    proc = cancorder_process(
        "serve", "-i", "slcan", "-c", slcan_emulator.url, "-b", "1000000", "--no-zeroconf",
        "--record", str(tmp_path / "k-{n}.log.gz"), "--record", str(tmp_path / "t-{n}.log"),
        "--rotate-size", "64K")
    client = served_client(proc)
    count = 30_000
    slcan_emulator.wait_open()
    send_paced(slcan_emulator, build_lines(count), 10_000)
    client.wait_frames(count, timeout=30)
    time.sleep(2.5)  # more than a flush interval: everything received is on disk
    proc.proc.kill()
    proc.proc.wait(10)
    for pattern in ("k-*.log.gz", "t-*.log"):
        closed = closed_files(tmp_path, pattern)
        assert len(closed) >= 2
        numbers = []
        for path in closed:
            numbers.extend(sequence_numbers(path))  # whole files: python-can reads them
        parts = glob.glob(str(tmp_path / (pattern + PART)))
        assert len(parts) == 1
        data = open(parts[0], "rb").read()
        if pattern.endswith(".gz"):
            data = zlib.decompressobj(wbits=31).decompress(data)  # the prefix up to the flush
        for line in data.decode().splitlines():
            numbers.append(int(line.rsplit("#", 1)[1], 16))
        assert numbers == list(range(count)), pattern


def test_disk_full_serving_goes_on_and_recording_resumes(tmp_path):
    """A 1 MiB tmpfs filling up (inside a private mount namespace)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare -m for a private tmpfs")
    folder = tmp_path / "small"
    folder.mkdir()
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=1M tmpfs "$1" && shift && '
         'exec "$@"', "sh", str(folder), sys.executable, "tests/tmpfs_record_check.py",
         str(folder)], capture_output=True, text=True, env=cancorder_env(), cwd=ROOT,
        timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok" in done.stdout.splitlines()[-1], done.stdout


def test_mock_uds_records_what_its_clients_get(cancorder_process, tmp_path):
    proc = cancorder_process("mock-uds", "--no-loop", "--speed", "50", "--blocks", "5",
                             "--no-zeroconf", "--record", str(tmp_path / "uds-{n}.log.gz"),
                             "--record", str(tmp_path / "uds.asc"))
    client = StreamClient(proc.port())
    assert proc.proc.wait(60) == 0, proc.log
    client.closed.wait(10)
    sent = [(f[1], f[3]) for f in client.frames]
    assert len(sent) > 100
    for name in ("uds-1.log.gz", "uds.asc"):
        got = [(m.arbitration_id, bytes(m.data)) for m in can.LogReader(str(tmp_path / name))]
        assert got == sent, name
    assert proc.log.count(f"recorded {len(sent):,} frames to") == 2


def test_records_from_the_start_with_no_client_connected(cancorder_process, slcan_emulator,
                                                         tmp_path):
    proc = cancorder_process(
        "serve", "-i", "slcan", "-c", slcan_emulator.url, "-b", "1000000", "--no-zeroconf",
        "--record", str(tmp_path / "alone.log"))
    proc.port()
    slcan_emulator.wait_open()
    send_paced(slcan_emulator, build_lines(3000), 5000)  # nobody connected
    proc.wait_for(r"frames in 3,000|", timeout=5)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not os.path.exists(tmp_path / ("alone.log" + PART)):
        time.sleep(0.1)
    time.sleep(2.0)  # a flush
    assert proc.terminate() == 0
    assert sequence_numbers(str(tmp_path / "alone.log")) == list(range(3000)), proc.log
    assert "recorded 3,000 frames to" in proc.log


def test_dump_o_rotates_and_keeps_with_the_same_flags(cancorder_process, tmp_path):
    """dump -o with --rotate-size/--keep-files, from a replayed file: every frame once, in
    order, across the rotations, the oldest files deleted."""
    from cancorder.formats import candump_line

    count = 40_000
    with open(tmp_path / "src.log", "w") as file:
        for i in range(count):
            file.write(candump_line((1_700_000_000_000_000 + i * 50, i % 0x800, 0,
                                     i.to_bytes(8, "big"))) + "\n")
    server = cancorder_process("replay", "--no-zeroconf", "--speed", "max",
                               str(tmp_path / "src.log"))
    out = tmp_path / "out"
    dump = cancorder_process("dump", f"127.0.0.1:{server.port()}", "-f", "raw",
                             "-o", str(out / "d-{n}.log.gz"), "-o", str(out / "b-{n}.blf"),
                             "--rotate-size", "64K", "--keep-files", "100")
    assert dump.proc.wait(60) == 0, dump.log
    assert server.proc.wait(30) == 0, server.log
    for pattern in ("d-*.log.gz", "b-*.blf"):
        files = closed_files(str(out), pattern)
        assert len(files) >= 3, (pattern, files)
        numbers = []
        for path in files:
            numbers.extend(sequence_numbers(path))
        assert numbers == list(range(count)), pattern
    assert not glob.glob(str(out / ("*" + PART)))
    # retention: the same recording again, keeping 2 files of each
    server = cancorder_process("replay", "--no-zeroconf", "--speed", "max",
                               str(tmp_path / "src.log"))
    dump = cancorder_process("dump", f"127.0.0.1:{server.port()}", "-f", "raw",
                             "-o", str(out / "d-{n}.log.gz"), "--rotate-size", "64K",
                             "--keep-files", "2")
    assert dump.proc.wait(60) == 0, dump.log
    assert len(glob.glob(str(out / "d-*.log.gz"))) == 2
    assert "deleted the oldest recording" in dump.log and "--keep-files 2" in dump.log


def test_replay_with_v_and_stats(tmp_path):
    """-v prints every frame replayed; --stats the status line, with the recorder's counts."""
    from cancorder.formats import candump_line

    frames = [(1_700_000_000_000_000 + i * 10_000, 0x100 + i % 16, 0, bytes([i % 256]))
              for i in range(300)]  # 3 s
    with open(tmp_path / "v.log", "w") as file:
        file.writelines(candump_line(frame, "can0") + "\n" for frame in frames)
    done = subprocess.run(
        [sys.executable, "-m", "cancorder", "replay", "--no-zeroconf", "--async", "-v",
         "--stats", "--original-time", "--record", str(tmp_path / "r.log"),
         str(tmp_path / "v.log")], capture_output=True, text=True, env=cancorder_env(),
        cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [candump_line(frame) for frame in frames]
    assert "frames/s" in done.stderr and "recorded" in done.stderr.split("frames/s", 1)[1]
    assert "recorded 300 frames to" in done.stderr


def test_every_bus_of_a_config_records_to_its_own_files(tmp_path):
    """Two [[bus]] tables with the same record template: {channel} keeps their files apart."""
    from tests.helpers import free_port

    ports = [free_port(), free_port()]
    lines = {"vcan0": ["(1700000000.000000) vcan0 123#11", "(1700000000.100000) vcan0 124#22"],
             "vcan1": ["(1700000000.000000) vcan1 321#33", "(1700000000.1) vcan1 322#44",
                       "(1700000000.2) vcan1 323#55"]}
    tables = []
    for (channel, text), port in zip(lines.items(), ports):
        (tmp_path / f"{channel}.log").write_text("\n".join(text) + "\n")
        tables.append(f'[[bus]]\nsource = "replay"\nfiles = ["{tmp_path / channel}.log"]\n'
                      f'zeroconf = false\nasync = true\nbind = "127.0.0.1"\nport = {port}\n'
                      f'record = ["{tmp_path}/rec/%Y/{{channel}}-{{n}}.log.gz"]\n')
    (tmp_path / "c.toml").write_text("\n".join(tables))
    done = subprocess.run([sys.executable, "-m", "cancorder", "serve", "--config",
                           str(tmp_path / "c.toml")], capture_output=True, text=True,
                          env=cancorder_env(), cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    year = time.strftime("%Y")
    for channel, text in lines.items():
        path = tmp_path / "rec" / year / f"{channel}-1.log.gz"
        got = [(m.arbitration_id, bytes(m.data)) for m in can.LogReader(str(path))]
        assert got == [(int(line.split()[2].split("#")[0], 16),
                        bytes.fromhex(line.split("#")[1])) for line in text], channel


def test_mock_uds_output_takes_the_rotation_flags(tmp_path):
    """--output is the recorder of --record: the same seed to one file and rotated into
    several gives the same frames."""
    def run(*args):
        done = subprocess.run([sys.executable, "-m", "cancorder", "mock-uds", "--seed", "7",
                               "--blocks", "30", *args], capture_output=True, text=True,
                              env=cancorder_env(), cwd=ROOT, timeout=120)
        assert done.returncode == 0, done.stderr

    def frames(*paths):  # the simulated time starts now: compare the spacing
        got = [(m.timestamp, m.arbitration_id, bytes(m.data)) for path in paths
               for m in can.LogReader(path)]
        return [(round((t - got[0][0]) * 1e6), i, d) for t, i, d in got]

    run("--output", str(tmp_path / "one.log"))
    run("--output", str(tmp_path / "r-{n}.log"), "--rotate-size", "8K")
    files = closed_files(str(tmp_path), "r-*.log")
    assert len(files) >= 3 and all(os.path.getsize(p) <= 8192 + 2048 for p in files), files
    assert frames(*files) == frames(str(tmp_path / "one.log"))


def test_mf4_at_30000_frames_per_second_stops_at_once_and_counts_what_the_file_holds(
        cancorder_process, slcan_emulator, tmp_path):
    """Issue 22 item 9 with the real asammdf writer (which falls behind at this rate): on
    SIGINT serve exits 0 within a few seconds, the .mf4 is finished and readable, "recorded N"
    is what it holds, and every frame received is recorded or said to be lost."""
    import re
    import signal

    path = tmp_path / "x.mf4"
    proc = cancorder_process(
        "serve", "-i", "slcan", "-c", slcan_emulator.url, "-b", "1000000", "--no-zeroconf",
        "--record", str(path))
    proc.port()
    slcan_emulator.wait_open()
    count, rate = 300_000, 30_000
    started = time.monotonic()
    send_paced(slcan_emulator, build_lines(count), rate)
    sending = time.monotonic() - started
    time.sleep(0.5)  # the last lines reach the server
    stopped = time.monotonic()
    proc.proc.send_signal(signal.SIGINT)
    code = proc.proc.wait(60)
    exit_time = time.monotonic() - stopped
    proc._reader.join(5)
    log = proc.log
    totals = re.search(r"frames in ([\d,]+),.*recorded ([\d,]+) frames? to (\S+?)(?:;|,|$)"
                       r"(?: ([\d,]+) frames? could not be recorded)?", log)
    assert code == 0 and totals, log
    received, recorded = int(totals[1].replace(",", "")), int(totals[2].replace(",", ""))
    lost = int((totals[4] or "0").replace(",", ""))
    assert totals[3] == str(path), log
    with can.LogReader(str(path)) as reader:
        numbers = [int.from_bytes(bytes(m.data), "big") for m in reader]
    print(f"sent {count:,} in {sending:.1f} s; received {received:,}, recorded {recorded:,}, "
          f"lost {lost:,}; exit {exit_time:.1f} s after SIGINT; file {path.stat().st_size:,} B")
    assert received == count, log
    assert recorded == len(numbers) > 0 and received == recorded + lost, log
    assert numbers == sorted(set(numbers)), "twice or out of order"
    if lost:
        assert "recording cannot keep up" in log, log
    assert exit_time < 13, (exit_time, log)  # 10 s at most writing the backlog, then finished
    assert not glob.glob(str(tmp_path / ("*" + PART)))


def test_mf4_says_at_start_the_rate_it_can_hold(cancorder_process, slcan_emulator, tmp_path):
    """asammdf is slower than a busy bus: --record x.mf4 says at once, in one line, how many
    frames/s it writes and what happens beyond; a format that keeps up says nothing of it."""
    from cancorder.logfiles.writers import MF4_FRAMES_PER_S

    proc = cancorder_process("serve", "-i", "slcan", "-c", slcan_emulator.url, "--no-zeroconf",
                             "--record", str(tmp_path / "x.mf4"), "--record",
                             str(tmp_path / "x.blf"))
    proc.port()
    line = proc.wait_for(r"recording \.mf4: asammdf writes about ([\d,]+) frames/s; on a "
                         r"busier bus the frames it cannot take are dropped from the "
                         r"recording, counted and said")
    assert int(line.group(1).replace(",", "")) == MF4_FRAMES_PER_S
    assert "recording .blf:" not in proc.log
