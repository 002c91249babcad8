"""cancorder replay: log files served like a bus, back to real clients."""
import gzip
import time

import can
import pytest

from cancorder.formats import candump_line
from tests.helpers import CancorderProcess, StreamClient
from tests.netns import run_in_netns

BASE = 1_700_000_000_000_000
SPACING = 2500  # us: 400 frames a second


def source_frames(count=400, fd=False):
    frames = []
    for i in range(count):
        ext = i % 3 == 0
        if fd and i % 4 == 1:
            frames.append((BASE + i * SPACING, 0x18DA00F1 + i % 16, 1 | 2 | (4 if i % 8 == 1
                                                                              else 0),
                           bytes([i % 256]) * 12))
        else:
            frames.append((BASE + i * SPACING, (0x10000 + i) if ext else i % 0x800,
                           1 if ext else 0, i.to_bytes(2, "big") * (i % 5)))
    return frames


def write_log(path, frames, channel="can0"):
    with open(path, "w") as file:
        for frame in frames:
            file.write(candump_line(frame, channel) + "\n")


class TimedClient(StreamClient):
    """A StreamClient that also notes when each frame arrived."""

    def __init__(self, port):
        self.arrivals = []
        super().__init__(port)

    def _run(self):
        self.sock.settimeout(None)
        try:
            while True:
                chunk = self.sock.recv(1 << 20)
                now = time.monotonic()
                if not chunk:
                    break
                frames = self.decoder.feed(chunk)
                with self._changed:
                    self.frames.extend(frames)
                    self.arrivals.extend([now] * len(frames))
                    self._changed.notify_all()
        except Exception as exc:
            self.error = exc
        finally:
            self.closed.set()
            with self._changed:
                self._changed.notify_all()


@pytest.fixture
def replay(cancorder_process):
    def start(*args):
        return cancorder_process("replay", "--no-zeroconf", *map(str, args))
    return start


def fields(frames):
    return [frame[1:] for frame in frames]


def spacing_deviation(client, frames):
    """Largest difference between arrival spacing and timestamp spacing (seconds)."""
    t0, s0 = client.arrivals[0], frames[0][0]
    return max(abs((t - t0) - (f[0] - s0) / 1e6) for t, f in zip(client.arrivals, frames))


def test_every_format_dump_writes_replays_back_with_its_spacing(replay, cancorder_process,
                                                                tmp_path):
    frames = source_frames()
    write_log(tmp_path / "source.log", frames)
    server = replay(tmp_path / "source.log")
    outputs = [tmp_path / f"dumped{ext}" for ext in (
        ".log", ".log.gz", ".blf", ".asc", ".asc.gz", ".csv", ".trc", ".db", ".mf4")]
    dump = cancorder_process("dump", f"127.0.0.1:{server.port()}", "-f", "candump",
                             *[arg for path in outputs for arg in ("-o", str(path))])
    assert dump.proc.wait(30) == 0, dump.log
    assert server.terminate() == 0
    for path in outputs:
        assert path.exists(), dump.log
        server = replay(path)
        client = TimedClient(server.port())
        try:
            got = client.wait_frames(len(frames), timeout=30)
        except AssertionError as exc:
            raise AssertionError(f"{path}: {exc}\n{server.log}") from None
        assert fields(got) == fields(frames), path
        # re-based to now, the recorded spacing kept (TRC and CSV: millisecond/float stamps)
        assert abs(got[0][0] / 1e6 - time.time()) < 30
        gaps = [b[0] - a[0] for a, b in zip(got, got[1:])]
        assert all(abs(gap - SPACING) <= 1000 for gap in gaps), (path, gaps[:10])
        assert spacing_deviation(client, got) < 0.25, path  # generous: a loaded machine
        assert server.proc.wait(30) == 0, server.log  # ends once the client has it all
        assert f"frames in {len(frames)}, out {len(frames)}" in server.log
        client.close()


def test_fd_frames_keep_their_flags_through_log_blf_asc(replay, tmp_path):
    frames = source_frames(120, fd=True)
    write_log(tmp_path / "fd.log", frames)
    messages = list(can.LogReader(str(tmp_path / "fd.log")))
    for ext in (".blf", ".asc", ".mf4"):
        with can.Logger(str(tmp_path / f"fd{ext}")) as writer:
            for msg in messages:
                writer.on_message_received(msg)
    for name in ("fd.log", "fd.blf", "fd.asc", "fd.mf4"):
        server = replay(tmp_path / name, "--speed", "max")
        client = StreamClient(server.port())
        assert fields(client.wait_frames(len(frames))) == fields(frames), name
        assert server.proc.wait(30) == 0
        client.close()


def test_speed_loop_original_time(replay, tmp_path):
    frames = source_frames()  # 1 s
    write_log(tmp_path / "s.log", frames)
    server = replay(tmp_path / "s.log", "--speed", "4", "--loop", "--original-time")
    client = TimedClient(server.port())
    got = client.wait_frames(1000, timeout=30)[:1000]
    elapsed = client.arrivals[999] - client.arrivals[0]
    assert 0.4 < elapsed < 2.0, elapsed  # 2.5 passes of 1 s at 4x: 0.62 s
    assert fields(got) == fields((frames * 3)[:1000])  # passes follow each other
    assert [f[0] for f in got[:400]] == [f[0] for f in frames]  # --original-time
    assert server.terminate() == 0
    client.close()
    server = replay(tmp_path / "s.log", "--speed", "0.5")
    client = TimedClient(server.port())
    got = client.wait_frames(100, timeout=30)
    assert all(b[0] - a[0] == 2 * SPACING for a, b in zip(got, got[1:]))
    assert client.arrivals[99] - client.arrivals[0] > 0.4  # 99 gaps of 5 ms
    assert server.terminate() == 0


def test_start_end_and_max_gap(replay, tmp_path):
    frames = source_frames()
    # a 20 s silence before the last 100 frames
    frames = frames[:300] + [(f[0] + 20_000_000, *f[1:]) for f in frames[300:]]
    write_log(tmp_path / "g.log", frames)
    server = replay(tmp_path / "g.log", "--start", "0.25", "--end", "0.5", "--speed", "max")
    client = StreamClient(server.port())
    wanted = [f for f in frames if 250_000 <= f[0] - BASE <= 500_000]
    assert fields(client.wait_frames(len(wanted))) == fields(wanted)
    assert server.proc.wait(30) == 0 and f"out {len(wanted)}" in server.log
    client.close()
    server = replay(tmp_path / "g.log", "--max-gap", "0.1")
    client = TimedClient(server.port())
    got = client.wait_frames(len(frames), timeout=20)
    assert got[300][0] - got[299][0] == 100_000  # the silence shortened to 0.1 s
    assert client.arrivals[-1] - client.arrivals[0] < 10
    assert server.proc.wait(30) == 0
    client.close()


def test_channel_of_a_multi_channel_asc_and_log(replay, tmp_path):
    messages = [can.Message(timestamp=1.0 + i / 100, arbitration_id=0x100 + i, channel=i % 2,
                            data=bytes([i]), is_extended_id=False) for i in range(40)]
    with can.Logger(str(tmp_path / "two.asc")) as writer:
        for msg in messages:
            writer.on_message_received(msg)
    server = replay(tmp_path / "two.asc", "--channel", "2", "--speed", "max")
    client = StreamClient(server.port())
    got = client.wait_frames(20)
    assert [f[1] for f in got] == [0x100 + i for i in range(1, 40, 2)]
    assert server.proc.wait(30) == 0 and "filtered 20" in server.log
    client.close()
    with open(tmp_path / "two.log", "w") as file:
        for i in range(40):
            file.write(candump_line((BASE + i, 0x100 + i, 0, b""), f"can{i % 2}") + "\n")
    server = replay(tmp_path / "two.log", "--channel", "can1", "--filter", "100:700",
                    "--speed", "max")
    client = StreamClient(server.port())
    got = client.wait_frames(20)
    assert [f[1] for f in got] == [0x100 + i for i in range(1, 40, 2)]
    assert server.proc.wait(30) == 0
    client.close()
    server = replay(tmp_path / "two.log", "--filter", "102:7FF", "--speed", "max")
    client = StreamClient(server.port())
    assert [f[1] for f in client.wait_frames(1)] == [0x102]
    assert server.proc.wait(30) == 0 and "filtered 39" in server.log
    client.close()


def test_waits_for_the_first_client_then_starts_from_now(replay, tmp_path):
    frames = source_frames(40)
    write_log(tmp_path / "w.log", frames)
    server = replay(tmp_path / "w.log")
    port = server.port()
    time.sleep(1.5)
    connected = time.time()
    client = StreamClient(port)
    got = client.wait_frames(40)
    assert got[0][0] / 1e6 >= connected - 0.05  # the timeline starts with the client
    assert "the replay starts when a client connects" in server.log
    assert server.proc.wait(30) == 0
    client.close()


def test_damage_one_line_with_its_place_the_frames_before_served(replay, tmp_path):
    frames = source_frames(50)
    write_log(tmp_path / "bad.log", frames)
    with open(tmp_path / "bad.log", "a") as file:
        file.write("(1700000000.200000) can0 12X#00\n(1700000000.3) can0 001#00\n")
    server = replay(tmp_path / "bad.log", "--speed", "max")
    client = StreamClient(server.port())
    assert fields(client.wait_frames(50)) == fields(frames)
    assert server.proc.wait(30) == 1
    assert server.lines[-1] == f"error: {tmp_path / 'bad.log'}: line 51: expected a hex id " \
                               "and '#' (ID#DATA)"
    assert "Traceback" not in server.log
    client.close()
    # a truncated BLF and a truncated gzip: the byte where they end
    write_log(tmp_path / "many.log", source_frames(20000))
    with can.Logger(str(tmp_path / "many.blf")) as writer:
        for msg in can.LogReader(str(tmp_path / "many.log")):
            writer.on_message_received(msg)
    data = (tmp_path / "many.blf").read_bytes()
    (tmp_path / "cut.blf").write_bytes(data[:len(data) // 2])
    zipped = gzip.compress((tmp_path / "many.log").read_bytes())
    (tmp_path / "cut.log.gz").write_bytes(zipped[:len(zipped) // 2])
    for name, where in (("cut.blf", f"byte {len(data) // 2}"),
                        ("cut.log.gz", f"byte {len(zipped) // 2}")):
        server = replay(tmp_path / name, "--speed", "max", "--async")
        assert server.proc.wait(30) == 1
        assert f"{name}: the file ends early at {where}" in server.lines[-1]
        served = int(server.wait_for(r"out ([\d,]+)").group(1).replace(",", ""))
        assert 0 < served < 20000


def test_a_damaged_or_truncated_asc_exits_1_after_the_frames_before_it(replay, tmp_path):
    """Issue 22 item 5: a garbage or NUL line in an .asc lost its frame silently, and an .asc
    cut in half served 2,128 of 4,260 frames and exited 0 (python-can's reader skips what it
    cannot parse). Now: the frames before the damage, one line naming it, exit 1."""
    frames = source_frames(4260)
    write_log(tmp_path / "x.log", frames)
    with can.Logger(str(tmp_path / "x.asc")) as writer:
        for msg in can.LogReader(str(tmp_path / "x.log")):
            writer.on_message_received(msg)
    text = (tmp_path / "x.asc").read_bytes().splitlines(True)
    k = [n for n, line in enumerate(text) if b" Rx " in line][2000]
    for name, line in (("garbage.asc", b"garbage\n"), ("nul.asc", b"\0" * 64 + b"\n")):
        (tmp_path / name).write_bytes(b"".join(text[:k] + [line] + text[k + 1:]))
    data = (tmp_path / "x.asc").read_bytes()
    (tmp_path / "cut.asc").write_bytes(data[:data.index(b"\n", len(data) // 2) + 6])  # a time
    for name, served, says in (
            ("garbage.asc", 2000, f"line {k + 1}: not a frame, nor anything else a .asc file "
                                  "holds: 'garbage'"),
            ("nul.asc", 2000, f"line {k + 1}: control or NUL bytes where a line should be"),
            ("cut.asc", None, "the file ends in the middle of this line (a truncated file: "
                              "the frames after it are missing)")):
        server = replay(tmp_path / name, "--speed", "max")
        client = StreamClient(server.port())
        assert server.proc.wait(30) == 1, server.log
        errors = [line for line in server.lines if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(f"error: {tmp_path / name}: "), errors
        assert says in errors[0], errors
        assert "Traceback" not in server.log
        client.closed.wait(10)
        got = client.frames
        if served is not None:
            assert fields(got) == fields(frames[:served]), name
        else:
            assert 1500 < len(got) < 2700 and fields(got) == fields(frames[:len(got)])
        client.close()


def test_remote_and_error_frames_counted_and_skipped(replay, tmp_path):
    with open(tmp_path / "re.log", "w") as file:
        file.write("(1.000000) can0 123#11\n(1.1) can0 456#R\n(1.2) can0 20000080#0000000000"
                   "000000\n(1.3) can0 124#22\n")
    server = replay(tmp_path / "re.log", "--speed", "max")
    client = StreamClient(server.port())
    assert fields(client.wait_frames(2)) == [(0x123, 0, b"\x11"), (0x124, 0, b"\x22")]
    assert server.proc.wait(30) == 0
    assert "skipped remote 1, error 1" in server.log
    client.close()


@pytest.mark.parametrize("args,message", [
    (["nothere.log"], "nothere.log: no such file"),
    (["x.pcap"], "cannot tell the format from the extension '.pcap'"),
    (["EMPTY"], "the file is empty"),
    (["LOG", "--start", "2", "--end", "1"], "--start 2 is not before --end 1"),
    (["LOG", "--speed", "fast"], "expected a factor such as 2 or 0.5, or max"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    (tmp_path / "empty.log").write_text("")
    write_log(tmp_path / "ok.log", source_frames(3))
    args = [str(tmp_path / "empty.log") if a == "EMPTY" else
            str(tmp_path / "ok.log") if a == "LOG" else a for a in args]
    proc = CancorderProcess(["replay", "--no-zeroconf", *args], cwd=str(tmp_path))
    code = proc.proc.wait(30)
    proc.stop()
    assert code == 2 and message in proc.lines[-1], proc.log  # argparse adds its usage


def test_a_start_after_the_last_frame_is_one_line(tmp_path):
    write_log(tmp_path / "ok.log", source_frames(3))
    proc = CancorderProcess(["replay", "--no-zeroconf", "--async", "--start", "9", "ok.log"],
                            cwd=str(tmp_path))
    code = proc.proc.wait(30)
    proc.stop()
    assert code == 1 and proc.lines[-1] == ("error: ok.log: no CAN frames to replay (skipped: "
                                            "none from --start 9 s on)"), proc.log


def test_record_while_replaying(replay, tmp_path):
    frames = source_frames(200)
    write_log(tmp_path / "in.log", frames)
    server = replay(tmp_path / "in.log", "--async", "--speed", "max", "--record",
                    tmp_path / "out-{n}.log.gz")
    assert server.proc.wait(30) == 0
    assert "recorded 200 frames to" in server.log
    got = [(m.arbitration_id, bytes(m.data)) for m in can.LogReader(str(tmp_path /
                                                                       "out-1.log.gz"))]
    assert got == [(f[1], f[3]) for f in frames]


def test_speed_max_serves_every_frame(replay, tmp_path):
    frames = [(BASE + i, i % 0x800, 0, i.to_bytes(4, "big")) for i in range(100_000)]
    write_log(tmp_path / "big.log", frames)
    server = replay(tmp_path / "big.log", "--speed", "max")
    client = StreamClient(server.port())
    got = client.wait_frames(100_000, timeout=60)
    assert [f[3] for f in got] == [f[3] for f in frames]
    assert server.proc.wait(30) == 0
    client.close()


@pytest.mark.netns
def test_replay_is_advertised_with_its_channel(tmp_path):
    write_log(tmp_path / "adv.log", source_frames(10), channel="vcan3")
    result = run_in_netns("tests/netns_zeroconf_replay.py", str(tmp_path / "adv.log"))
    assert result["names"] == ["ECUconnect-Logger replayed._ecuconnect-log._tcp.local."]
    txt = result["txt"]
    assert txt["process"] == "cancorder replay"
    assert txt["interface"] == "replay" and txt["channel"] == "vcan3"
    assert result["exit_code"] == 0


def test_replay_is_a_bus_of_a_config_file(tmp_path):
    import subprocess
    import sys

    from tests.helpers import cancorder_env

    log = tmp_path / "x.log"
    log.write_text("(1700000000.000000) can0 123#11\n(1700000000.100000) can0 124#22\n")
    config = tmp_path / "c.toml"
    config.write_text(f'[[bus]]\nname = "rp"\nsource = "replay"\nfiles = ["{log}"]\n'
                      'zeroconf = false\nloop = true\n')
    done = subprocess.run([sys.executable, "-m", "cancorder", "serve", "--config", str(config),
                           "--check"], capture_output=True, text=True, env=cancorder_env(),
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert 'source = "replay"' in done.stdout and "loop = true" in done.stdout
    config.write_text(f'[[bus]]\nsource = "replay"\nfiles = ["{tmp_path / "none.log"}"]\n')
    done = subprocess.run([sys.executable, "-m", "cancorder", "serve", "--config", str(config),
                           "--check"], capture_output=True, text=True, env=cancorder_env(),
                          timeout=60)
    assert done.returncode == 2 and "no such file" in done.stderr, done.stderr


# ---- dump FILE: the same source, the same flags (--speed --start --end --channel --filter) ----

def run_dump(*args):
    import subprocess
    import sys

    from tests.helpers import ROOT, cancorder_env

    return subprocess.run([sys.executable, "-m", "cancorder", "dump", *map(str, args)],
                          capture_output=True, text=True, env=cancorder_env(), cwd=ROOT,
                          timeout=60)


def json_frames(lines):
    """(timestamp_us, id, flags, data) of dump's json lines."""
    import json

    frames = []
    for line in lines:
        obj = json.loads(line)
        flags = (1 if obj["extended"] else 0) | (2 if obj["fd"] else 0) | \
            (4 if obj["brs"] else 0) | (8 if obj["esi"] else 0)
        frames.append((obj["timestamp_us"], obj["id"], flags, bytes.fromhex(obj["data"])))
    return frames


def timed_dump(*args):
    """dump's json lines as they come out, with when each arrived: (frames, arrivals, stderr)."""
    import subprocess
    import sys

    from tests.helpers import ROOT, cancorder_env

    proc = subprocess.Popen([sys.executable, "-m", "cancorder", "dump", "-f", "json",
                             *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=cancorder_env(), cwd=ROOT)
    lines, arrivals = [], []
    try:
        for line in proc.stdout:
            arrivals.append(time.monotonic())
            lines.append(line)
        assert proc.wait(60) == 0, proc.stderr.read()
        return json_frames(lines), arrivals, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_dump_file_speed_start_end_plays_like_replay(replay, tmp_path):
    """dump FILE --speed 4 --start 10 --end 20 gives the frames replay serves with the same
    flags, at the same pace (10 s of recording in 2.5 s), with the recorded timestamps."""
    frames = [(BASE + i * 100_000, 0x100 + i % 7, 0, i.to_bytes(2, "big")) for i in range(300)]
    write_log(tmp_path / "t.log", frames)  # 30 s, a frame every 0.1 s
    flags = ("--speed", "4", "--start", "10", "--end", "20")
    wanted = [f for f in frames if 10_000_000 <= f[0] - BASE <= 20_000_000]
    assert len(wanted) == 101

    server = replay(tmp_path / "t.log", *flags)
    client = TimedClient(server.port())
    served = client.wait_frames(len(wanted), timeout=30)
    assert server.proc.wait(30) == 0, server.log
    client.close()
    shown, arrivals, log = timed_dump(tmp_path / "t.log", *flags)

    assert fields(shown) == fields(served) == fields(wanted)
    assert [f[0] for f in shown] == [f[0] for f in wanted]  # dump shows the recorded time
    assert all(b[0] - a[0] == 25_000 for a, b in zip(served, served[1:]))  # replay: at 4x
    for name, times in (("replay", client.arrivals), ("dump", arrivals)):
        elapsed = times[-1] - times[0]
        assert 2.3 < elapsed < 3.2, (name, elapsed)  # 10 s at 4x: 2.5 s
        # paced frame by frame, not in bursts: each arrives near its instant at 4x
        deviation = max(abs((t - times[0]) - k * 0.025) for k, t in enumerate(times))
        assert deviation < 0.25, (name, deviation)
    assert "101 frames" in log


def test_dump_file_channel_and_filter_like_replay(tmp_path):
    """--channel picks one channel of a multi-channel file (the name written is that channel),
    --filter the ids, as replay's do; without --channel every frame, named can0 as before."""
    with open(tmp_path / "two.log", "w") as file:
        for i in range(40):
            file.write(candump_line((BASE + i, 0x100 + i, 0, b"\x01"), f"can{i % 2}") + "\n")
    done = run_dump("-f", "candump", tmp_path / "two.log", "--channel", "can1", "--filter",
                    "100:7F0")
    assert done.returncode == 0, done.stderr
    odd = [candump_line((BASE + i, 0x100 + i, 0, b"\x01"), "can1") for i in range(1, 16, 2)]
    assert done.stdout.splitlines() == odd  # id:mask, 100:7F0 passes 100..10F
    done = run_dump("-f", "candump", tmp_path / "two.log", "--filter", "102:7FF")
    assert done.stdout.splitlines() == [candump_line((BASE + 2, 0x102, 0, b"\x01"))]
    everything = run_dump("-f", "candump", tmp_path / "two.log").stdout.splitlines()
    assert len(everything) == 40 and all(" can0 " in line for line in everything)

    messages = [can.Message(timestamp=1.0 + i / 100, arbitration_id=0x100 + i, channel=i % 2,
                            data=bytes([i]), is_extended_id=False) for i in range(40)]
    with can.Logger(str(tmp_path / "two.asc")) as writer:
        for msg in messages:
            writer.on_message_received(msg)
    done = run_dump("-f", "json", tmp_path / "two.asc", "--channel", "2")
    assert done.returncode == 0, done.stderr
    assert [f[1] for f in json_frames(done.stdout.splitlines())] == \
        [0x100 + i for i in range(1, 40, 2)]


def test_dump_file_speed_start_end_each(tmp_path):
    """Each timing flag on its own: --start, --end (as fast as read), --speed (paced)."""
    frames = [(BASE + i * 100_000, 0x200, 0, bytes([i])) for i in range(30)]  # 3 s
    write_log(tmp_path / "e.log", frames)
    done = run_dump("-f", "candump", tmp_path / "e.log", "--start", "2.5")
    assert done.stdout.splitlines() == [candump_line(f) for f in frames[25:]]
    done = run_dump("-f", "candump", tmp_path / "e.log", "--end", "0.45")
    assert done.stdout.splitlines() == [candump_line(f) for f in frames[:5]]
    started = time.monotonic()
    done = run_dump("-f", "candump", tmp_path / "e.log", "--speed", "2")
    elapsed = time.monotonic() - started
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 30
    assert elapsed > 1.4, elapsed  # 2.9 s at 2x; as fast as read without --speed:
    started = time.monotonic()
    run_dump("-f", "candump", tmp_path / "e.log")
    assert time.monotonic() - started < elapsed - 1.0


@pytest.mark.parametrize("args,message", [
    (("127.0.0.1:9", "--speed", "2"), "--speed: only for a log file (dump FILE)"),
    (("127.0.0.1:9", "--start", "1", "--end", "2"), "--start, --end: only for a log file"),
    (("FILE", "--start", "5", "--end", "2"), "--start 5 is not before --end 2"),
    (("FILE", "--speed", "0"), "the speed factor is 0.001..10000 (or max)"),
    (("FILE", "--end", "-1"), "must be 0 or more seconds"),
])
def test_dump_timing_flags_bad_input_is_one_line(tmp_path, args, message):
    write_log(tmp_path / "f.log", source_frames(10))
    done = run_dump(*[tmp_path / "f.log" if a == "FILE" else a for a in args])
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_the_simulator_and_replay_start_on_one_first_client_helper():
    """One "start with the first client": sources.base.first_client, used by both sources;
    neither waits on the gate by itself."""
    import inspect

    from cancorder.sources import base, replay, uds

    for module in (replay, uds):
        text = inspect.getsource(module)
        assert "first_client(" in text and ".wait_for_client(" not in text, module.__name__
    assert base.first_client(None, 0.0)  # no gate (dump FILE): at once

    class Gate:
        def __init__(self, count):
            self.count = lambda: count
            self.waited = []

        def wait_for_client(self, timeout):
            self.waited.append(timeout)
            return False

    assert base.first_client(Gate(1), 0.0)
    nobody = Gate(0)
    assert not base.first_client(nobody, time.monotonic() + 0.2)
    assert len(nobody.waited) == 1 and 0 < nobody.waited[0] <= 0.2


def test_replay_source_by_channel_names_the_channel_of_each_read(tmp_path):
    """dump FILE's view: every read of one channel, named (the monitor shows channels apart)."""
    from cancorder._fast import wire
    from cancorder.sources.replay import ReplaySource

    with open(tmp_path / "two.log", "w") as file:
        for i in range(30):
            file.write(candump_line((BASE + i, 0x100 + i, 0, b"\x01"),
                                    "can1" if i // 5 % 2 else "can0") + "\n")
    source = ReplaySource([str(tmp_path / "two.log")], speed=None, original_time=True,
                          wait_for_client=False, by_channel=True)
    source.open()
    runs = []
    while (records := source.read(0.1)) is not None:
        if records:
            runs.append((source.read_channel, len(wire.StreamDecoder().feed(records))))
    assert runs == [("can0", 5), ("can1", 5)] * 3


@pytest.mark.serial
def test_paced_frames_closer_than_gather_go_out_together_never_early(tmp_path):
    """10,000 frames/s: the source wakes at most about once per GATHER (0.5 ms), not once per
    frame (a wake-up a frame cost a quarter of a core), and never hands a frame over before
    its time; a lone frame after a pause is handed over on time, not a gather later."""
    from cancorder._fast import logfile
    from cancorder.sources.replay import GATHER, ReplaySource

    count = 5000
    frames = [(BASE + i * 100, i % 0x800, 0, b"\x01") for i in range(count)]
    frames.append((BASE + count * 100 + 300_000, 0x7FF, 0, b"\x02"))  # after a 0.3 s pause
    write_log(tmp_path / "dense.log", frames)
    source = ReplaySource([str(tmp_path / "dense.log")], wait_for_client=False)
    source.open()
    hand_overs, early, last_late = 0, 0, None
    while True:
        records = source.read(0.1)
        if records is None:
            break
        if not records:
            continue
        hand_overs += 1
        now_us = source._now_us()
        pos = 0
        while pos < len(records):
            late = now_us - logfile.first_stamp(records, pos)
            early += late < -1000  # a millisecond of slack for the two clocks' reading
            pos += 14 + records[pos + 13]
        last_late = late
    assert early == 0
    seconds = count * 100 / 1e6
    assert hand_overs <= 1.5 * seconds / GATHER + 1, hand_overs  # 5,000 before
    assert last_late < 50_000, last_late  # the frame after the pause: a scheduler's delay only
