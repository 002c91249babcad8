"""cancorder mock-uds, offline: the generated traffic, its ISO-TP, its UDS, its log files.

Every generated run goes through tests/uds_check.py: a strict ISO 15765-2 checker, can-isotp's
receiver and udsoncan, plus the scenario's rules (pairing, timing, reactions, transfer).
"""
import dataclasses
import os
import subprocess
import sys
import threading
import time

import can
import pytest

from cancorder._fast import wire
from cancorder.uds import CYCLE, FRAME
from cancorder.uds.clock import VirtualClock
from cancorder.uds.ecu import Ecu, security_key
from cancorder.uds.isotp import IsoTpLink, Node, st_min_byte, st_min_us
from cancorder.uds.simulation import SimulationConfig, timeline
from tests.helpers import ROOT, cancorder_env
from tests.uds_check import (Expect, check_isotp, check_traffic, frames_from_messages,
                             frames_from_timeline, reassemble_with_can_isotp)

EXTENDED = dict(extended=True, tester_id=0x18DA10F1, ecu_id=0x18DAF110)


def generate(**settings):
    config = SimulationConfig(**{"loop": False, **settings})
    return config, frames_from_timeline(timeline(config))


CASES = {
    # name: settings, and what the traffic must show
    "11bit-clean-wrap": dict(seed=1, error_rate=0.0),
    "11bit-faults-wrap": dict(seed=2, error_rate=0.3, blocks=260),
    "29bit-faults": dict(seed=3, error_rate=0.3, blocks=60, **EXTENDED),
    "29bit-clean": dict(seed=4, error_rate=0.0, blocks=60, **EXTENDED),
    "fd-faults-wrap": dict(seed=5, error_rate=0.3, block_size=200, fd=True),
    "fd-29bit-clean": dict(seed=6, error_rate=0.0, blocks=60, fd=True, **EXTENDED),
    "ff-escape": dict(seed=7, error_rate=0.2, blocks=4, block_size=5000),
    "fd-ff-escape-fast": dict(seed=8, blocks=4, block_size=5000, fd=True, speed=50),
    "every-request-faulted-fast": dict(seed=9, error_rate=1.0, blocks=40, speed=50),
    "29bit-fd-faults-fast": dict(seed=10, error_rate=0.3, blocks=270, fd=True, speed=20,
                                 **EXTENDED),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_frame_is_valid_isotp_and_every_message_valid_uds(name):
    config, frames = generate(**CASES[name])
    ids = {f.can_id for f in frames}
    if config.extended:  # normal-fixed: 18DA<target><source>, functional 18DB33<tester>
        assert ids == {0x18DA10F1, 0x18DAF110, 0x18DB33F1}
    else:
        assert ids == {0x7E0, 0x7E8, 0x7DF}
    seen = check_traffic(frames, Expect.of(config))
    assert seen["sessions"] == 1
    assert seen["unlocked"] == 1 and seen["vin"] == 1 and seen["zero dtcs after clear"] == 1
    assert seen["blocks"] == config.blocks
    assert config.block_size * (config.blocks - 1) < seen["bytes transferred"] \
        <= config.block_size * config.blocks
    assert seen["ff"] and seen["fc"] >= seen["ff"] and seen["cf gaps checked"]
    assert seen["cf sequence wrapped"] or config.fd  # 15 -> 0 (FD blocks need few CFs)
    assert seen["tester present"] >= 2
    for pid in (0x05, 0x0C, 0x0D, 0x0F, 0x10, 0x11, 0x1F, 0x2F, 0x46):
        assert seen[f"pid {pid:02X}"] >= 2
    assert seen["distinct pid 0C"] >= 2  # the engine speed moves
    assert seen["obd 03"] and seen["obd 07"]
    assert bool(seen["counter wrapped"]) == (config.blocks > 255)
    assert bool(seen["ff escape"]) == (config.block_size + 2 > 4095)
    if config.fd:
        assert seen["sf escape"]  # 8..62-byte messages in one FD frame
    nrcs = {key for key in seen if key.startswith("nrc ")}
    if config.error_rate == 0:
        assert not nrcs
        assert seen["78 on 10"] >= 1 and seen["78 on 31"] >= 2  # 10 02 and the erase
    else:
        assert nrcs
        for nrc in nrcs:  # every negative answer that can be reacted to was
            code = nrc.split()[1]
            assert seen[f"reaction {code}"] == seen[nrc], (nrc, seen)


@pytest.mark.parametrize("settings", [
    dict(blocks=1, block_size=1), dict(blocks=3, block_size=5), dict(blocks=3, block_size=6),
    dict(blocks=2, block_size=60, fd=True), dict(blocks=2, block_size=61, fd=True),
    dict(blocks=2, block_size=65533), dict(blocks=2, block_size=65533, fd=True, speed=1000),
], ids=lambda s: "-".join(f"{k}{v}" for k, v in s.items()))
def test_block_sizes_at_the_edges(settings):
    # 36 + counter + 5 bytes is the longest classic single frame, 6 bytes the shortest FF;
    # 60/61 the FD single frame edge; 65533 the largest block (FF escape, 9,000+ CFs).
    config, frames = generate(seed=77, error_rate=0.3, **settings)
    seen = check_traffic(frames, Expect.of(config))
    assert seen["sessions"] == 1 and seen["blocks"] == config.blocks
    assert bool(seen["ff escape"]) == (config.block_size > 4093)


def test_every_fault_and_reaction_appears_over_a_few_seeds():
    seen = {}
    wanted = {"reaction 21", "reaction 35", "reaction 71", "reaction 72", "reaction 73",
              "fresh seed after 35"}
    for seed in range(1, 31):
        config, frames = generate(seed=seed, error_rate=0.6, blocks=12, speed=20)
        for key, value in check_traffic(frames, Expect.of(config)).items():
            seen[key] = seen.get(key, 0) + value
        extra_pending = {k for k in seen if k.startswith("78 on") and k not in ("78 on 10",
                                                                               "78 on 31")}
        if wanted <= set(seen) and extra_pending:
            return
    raise AssertionError(f"not every fault within 30 seeds: {sorted(wanted - set(seen))}")


def test_same_seed_same_frames_and_timing_other_seed_other_frames():
    def run(seed, **extra):
        return [(t, value[0], value[2]) for t, kind, value in
                timeline(SimulationConfig(seed=seed, loop=False, blocks=30, **extra))
                if kind == FRAME]

    first = run(42)
    assert first == run(42)
    assert first != run(43)
    assert run(42, fd=True) == run(42, fd=True)


def test_speed_scales_delays_but_keeps_the_frames_and_honours_st_min():
    slow_config, slow = generate(seed=12, blocks=30, error_rate=0.2)
    fast_config, fast = generate(seed=12, blocks=30, error_rate=0.2, speed=20)
    # The same frames, byte for byte, but for the STmin in the flow control (it scales too).
    def without_st_min(frames):
        return [(f.can_id, f.data[:2] + f.data[3:] if f.data[0] == 0x30 else f.data)
                for f in frames]

    assert without_st_min(slow) == without_st_min(fast)
    slow_length = slow[-1].t_us - slow[0].t_us
    fast_length = fast[-1].t_us - fast[0].t_us
    assert fast_length < slow_length / 10
    # The flow control declares a smaller STmin when faster, never one it does not honour.
    slow_st = {f.data[2] for f in slow if f.data[0] == 0x30}
    fast_st = {f.data[2] for f in fast if f.data[0] == 0x30}
    assert all(st_min_us(b) <= max(st_min_us(a) for a in slow_st) for b in fast_st)
    check_traffic(fast, Expect.of(fast_config))  # asserts every CF gap >= declared STmin


@pytest.mark.parametrize("seed", range(1, 9))
def test_duration_is_exact_and_leaves_no_exchange_cut(seed):
    """--duration 5: not one frame after 5 s (seed 3 used to run to 9 s), and an exchange that
    would run past the end is left out whole."""
    config, frames = generate(seed=seed, loop=True, duration=5.0)
    assert frames[-1].t_us <= 5_000_000
    assert frames[-1].t_us >= 3_000_000  # cut at the last boundary, not far before it
    check_traffic(frames, Expect.of(config))  # nothing unfinished, every request answered


def test_duration_over_several_cycles():
    config, frames = generate(seed=14, loop=True, duration=12.0, speed=10, blocks=40)
    seen = check_traffic(frames, Expect.of(config))
    assert seen["sessions"] >= 2  # the loop starts cycle after cycle
    assert frames[-1].t_us <= 12_000_000


# ---- the layers on their own ----

@pytest.mark.parametrize("fd", [False, True], ids=["classic", "fd"])
@pytest.mark.parametrize("length", [1, 6, 7, 8, 61, 62, 63, 64, 200, 4095, 4096, 70000])
def test_isotp_segmentation_at_every_boundary(fd, length):
    import random

    clock = VirtualClock(speed=1.0)
    link = IsoTpLink(clock, random.Random(length), fd=fd, padding=0xAA)
    tester = Node("tester", 0x7E0, block_size=0, st_min=0.0)
    ecu = Node("ecu", 0x7E8, block_size=5, st_min=0.003)
    payload = bytes(random.Random(1).randbytes(length))
    frames = frames_from_timeline(list(link.send(payload, tester, ecu)))
    expect = Expect(fd=fd, padding=0xAA)
    messages, stats = check_isotp(frames, expect)
    assert [(m.sender, m.payload) for m in messages] == [("tester", payload)]
    assert reassemble_with_can_isotp(frames, expect) == [("tester", payload)]
    if length > (62 if fd else 7):
        cfs = -(-(length - (64 if fd else 8) + (6 if length > 4095 else 2)) // (63 if fd else 7))
        assert stats["cf"] == cfs
        assert stats["fc"] == 1 + (cfs - 1) // 5  # one after the FF, one per block of 5
        assert stats["fc bs 5 stmin 0x03"] == stats["fc"]
    assert bool(stats["ff escape"]) == (length > 4095)
    assert bool(stats["sf escape"]) == (fd and 8 <= length <= 62)


def test_functional_requests_must_fit_a_single_frame():
    import random

    link = IsoTpLink(VirtualClock(), random.Random(0))
    node = Node("tester", 0x7E0)
    with pytest.raises(ValueError, match="single frame"):
        list(link.send(bytes(8), node, node, can_id=0x7DF))


def test_st_min_encoding_rounds_up_to_what_the_byte_can_say():
    assert [st_min_byte(s) for s in (0, 0.00001, 0.0001, 0.00015, 0.0009, 0.00091, 0.005,
                                     0.0051, 0.127, 1.0)] == \
        [0x00, 0xF1, 0xF1, 0xF2, 0xF9, 0x01, 0x05, 0x06, 0x7F, 0x7F]
    assert [st_min_us(b) for b in (0x00, 0x05, 0x7F, 0xF1, 0xF9)] == [0, 5000, 127000, 100, 900]


def test_the_ecu_refuses_requests_out_of_order_as_a_real_one_does():
    import random

    ecu = Ecu(random.Random(5), block_size=64)

    def answer(hex_request):
        return ecu.handle(bytes.fromhex(hex_request)).response.hex().upper()

    assert answer("AA") == "7FAA11"  # unknown service
    assert answer("1002") == "7F1022"  # programming only from the extended session
    assert answer("2701") == "7F277F"  # no security access in the default session
    assert answer("1003").startswith("5003003201F4")
    assert answer("270200000000") == "7F2724"  # a key before any seed
    assert answer("3400440008000000000100") == "7F347F"  # only in the programming session
    assert answer("3600") == "7F3624"  # no download in progress
    assert answer("37") == "7F3724"
    assert answer("22F1") == "7F2213"
    assert answer("221234") == "7F2231"
    assert answer("1002").startswith("5002")
    assert answer("3400440008000000000100") == "7F3433"  # locked
    assert answer("3101FF00440008000000000100") == "7F3133"
    seed = bytes.fromhex(answer("2701")[4:])
    assert answer("2702" + bytes(b ^ 0xFF for b in security_key(seed)).hex()) == "7F2735"
    seed = bytes.fromhex(answer("2701")[4:])
    assert answer("2702" + security_key(seed).hex()) == "6702"
    assert answer("3400440008000000000100") == "7F3470"  # not erased
    assert answer("3101FF00440008000000000100") == "7101FF0000"
    assert answer("3101FF00440000000000000100") == "7F3131"  # outside the flash
    assert answer("3400440008000000000100") == "74200042"  # 64 + 2
    assert answer("3602" + "00" * 64) == "7F3673"  # genuinely wrong counter
    assert answer("3601" + "00" * 65) == "7F3613"  # longer than maxNumberOfBlockLength
    assert answer("3601" + "00" * 64) == "7601"
    assert answer("3601" + "00" * 64) == "7601"  # a repeat of the last block: acknowledged
    assert answer("37") == "7F3724"  # 128 of 256 bytes
    assert answer("3602" + "00" * 64) == "7602"
    assert answer("3603" + "00" * 64) == "7603"
    assert answer("3604" + "00" * 65) == "7F3613"
    assert answer("3604" + "00" * 64) == "7604"
    assert answer("3605" + "00") == "7F3671"  # more than announced
    assert answer("37") == "77"
    assert answer("3101FF01") == "7101FF0100"
    assert ecu.handle(bytes.fromhex("3E80")).response is None  # suppressPosRsp
    assert answer("1101") == "5101"
    assert ecu.session == 1 and not ecu.unlocked and ecu.software_version_text().startswith("SW")


# ---- the command: --output, and bad input ----

def run_cancorder(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "cancorder", *args], capture_output=True,
                          text=True, env=cancorder_env(), cwd=ROOT, timeout=timeout)


OUTPUT_CASES = [
    (".log", []), (".asc", []), (".blf", []), (".csv", []), (".trc", []),
    (".log", ["--fd", "--extended-ids"]), (".asc", ["--fd"]), (".blf", ["--fd", "--extended-ids"]),
    (".asc", ["--padding", "55", "--tester-id", "6F1", "--ecu-id", "6F9", "--error-rate", "0.3"]),
]


def _output_case_id(case):
    extension, flags = case
    return extension[1:] + "".join(flags[:1]) + ("-ids" if "--tester-id" in flags else "")


@pytest.mark.parametrize("extension,flags", OUTPUT_CASES,
                         ids=[_output_case_id(case) for case in OUTPUT_CASES])
def test_output_writes_a_file_python_can_reads_back_frame_for_frame(tmp_path, extension, flags):
    path = tmp_path / f"traffic{extension}"
    done = run_cancorder("mock-uds", "--seed", "31", "--blocks", "20", "--output", str(path),
                         *flags)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stderr and "seed 31" in done.stderr
    settings = dict(seed=31, blocks=20, fd="--fd" in flags)
    if "--extended-ids" in flags:
        settings.update(EXTENDED)
    if "--padding" in flags:
        settings.update(padding=0x55, tester_id=0x6F1, ecu_id=0x6F9, error_rate=0.3)
    config, expected = generate(**settings)
    with can.LogReader(str(path)) as reader:
        read = frames_from_messages(list(reader))
    assert len(read) == len(expected)
    assert [(f.can_id, f.extended, f.fd, f.data) for f in read] == \
        [(f.can_id, f.extended, f.fd, f.data) for f in expected]
    # Timestamps are the virtual ones: the file spans the simulated time, not the writing time.
    for got, want in zip(read, expected):
        assert abs((got.t_us - read[0].t_us) - (want.t_us - expected[0].t_us)) <= 2
    seen = check_traffic(read, Expect.of(config, time_tolerance_us=2))
    assert seen["sessions"] == 1


def test_output_with_duration_loops_until_the_duration(tmp_path):
    path = tmp_path / "long.log"
    done = run_cancorder("mock-uds", "--seed", "32", "--blocks", "10", "--speed", "10",
                         "--duration", "8", "--output", str(path), "-v")
    assert done.returncode == 0, done.stderr
    assert "cycle 2: diagnostic session" in done.stderr  # -v narrates the phases
    for phase in ("security access", "erasing", "download (34)", "ECU reset"):
        assert phase in done.stderr
    with can.LogReader(str(path)) as reader:
        read = frames_from_messages(list(reader))
    assert read[-1].t_us - read[0].t_us <= 8_000_000
    config = SimulationConfig(seed=32, blocks=10, speed=10, duration=8)
    assert check_traffic(read, Expect.of(config, time_tolerance_us=2))["sessions"] >= 2


@pytest.mark.parametrize("args,message", [
    (["--tester-id", "18DA10F1"], "is a 29-bit id: add --extended-ids"),
    (["--tester-id", "7E8"], "need different ids"),
    (["--ecu-id", "7DF"], "functional"),
    (["--output", "x.pcap"], "cannot tell the format from the extension '.pcap'"),
        (["--output", "x.log", "--rotate-time", "0.5"], "at least 1 s"),
        (["--output", "x.log", "--keep-files", "0"], "must be at least 1"),
        (["--output", "x{bus}.log"], "unknown field {bus}"),
        (["--keep-files", "3"], "--keep-files applies to a recording: add --record PATH"),
    (["--output", "x.csv", "--fd"], "cannot store CAN FD frames"),
    (["--output", "x.log", "--async", "--port", "4000"], "--async, -p/--port cannot apply"),
    (["--blocks", "100000", "--block-size", "65533"], "more than the simulated ECU's"),
    (["--block-size", "70000"], "1..65533"),
    (["--seed", "-3"], "the seed is 0 or more"),
    (["--error-rate", "nan"], "a probability is 0..1"),
    (["--error-rate", "2"], "a probability is 0..1"),
    (["--speed", "0"], "the speed factor is"),
    (["--padding", "100"], "one byte in hex"),
    (["--tester-id", "xyz"], "a CAN id in hex"),
    (["--duration", "-1"], "more than 0 seconds"),
])
def test_bad_input_is_one_clear_line_and_a_usage_exit(args, message):
    done = run_cancorder("mock-uds", "--no-zeroconf", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(("error:", "cancorder mock-uds: error:")), done.stderr


def test_an_unwritable_output_is_one_clear_line(tmp_path):
    (tmp_path / "a-file").write_text("")
    path = tmp_path / "a-file" / "x.log"
    done = run_cancorder("mock-uds", "--output", str(path))
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: --output {path}: {path.parent} is a file, not "
                                   "a folder")
    # a folder that is missing is made
    path = tmp_path / "new-folder" / "x.log"
    done = run_cancorder("mock-uds", "--output", str(path), "--blocks", "3")
    assert done.returncode == 0, done.stderr
    assert path.exists() and not os.path.exists(str(path) + ".part")


def _mutated(frames, index, **change):
    out = list(frames)
    out[index] = dataclasses.replace(out[index], **change)
    return out


CAUGHT_BY = {"padding": "padding", "no-fc": "CF before the receiver's flow control",
             "st-min": "STmin is", "sequence": "sequence number 15", "counter": "echoes counter 01",
             "p2": "limit 50000 us", "dlc": "DLC 7"}


@pytest.mark.parametrize("mutation", ["padding", "no-fc", "st-min", "sequence", "counter",
                                      "p2", "dlc"])
def test_the_checks_catch_traffic_a_real_tester_would_reject(mutation):
    config, frames = generate(seed=33, blocks=10, error_rate=0.0)
    expect = Expect.of(config)
    check_traffic(frames, expect)
    ffs = [i for i, f in enumerate(frames) if f.data[0] >> 4 == 1 and f.data[2] == 0x36]
    first = ffs[0]  # the first TransferData block: FF, FC, CF, CF...
    fc = next(i for i in range(first, len(frames)) if frames[i].data[0] == 0x30)
    cf2 = fc + 2
    if mutation == "padding":
        last = frames[-1]
        broken = _mutated(frames, len(frames) - 1, data=last.data[:-1] + b"\x00")
    elif mutation == "no-fc":
        broken = frames[:fc] + frames[fc + 1:]
    elif mutation == "st-min":
        broken = _mutated(frames, cf2, t_us=frames[cf2 - 1].t_us + 1)
    elif mutation == "sequence":
        data = frames[cf2].data
        broken = _mutated(frames, cf2, data=bytes((0x2F,)) + data[1:])
    elif mutation == "counter":
        data = frames[first].data
        broken = _mutated(frames, first, data=data[:3] + bytes((data[3] + 1,)) + data[4:])
    elif mutation == "p2":
        later = 60_000  # the ECU's answer to the 10 03 arrives 60 ms late
        start = next(i for i, f in enumerate(frames) if f.data[:3] == b"\x06\x50\x03")
        broken = frames[:start] + [dataclasses.replace(f, t_us=f.t_us + later)
                                   for f in frames[start:]]
    else:
        broken = _mutated(frames, 0, data=frames[0].data[:7])
    with pytest.raises(AssertionError, match=CAUGHT_BY[mutation]):
        check_traffic(broken, expect)


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("extension", [".blf", ".log"])
def test_output_interrupted_leaves_a_complete_readable_file(tmp_path, extension, signame):
    import signal
    import time

    path = tmp_path / f"long{extension}"
    proc = subprocess.Popen([sys.executable, "-m", "cancorder", "mock-uds", "--seed", "34",
                             "--duration", "1000000", "--output", str(path)],
                            env=cancorder_env(), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        part = tmp_path / f"long{extension}.part"  # the recorder's name while it writes
        while time.monotonic() < deadline and not any(
                p.exists() and p.stat().st_size >= 200_000 for p in (path, part)):
            time.sleep(0.05)
        proc.send_signal(getattr(signal, signame))
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read()
    assert "Traceback" not in stderr
    assert f"stopped by {signame}, the file is complete" in stderr
    with can.LogReader(str(path)) as reader:  # a BLF is only readable once closed properly
        read = frames_from_messages(list(reader))
    config = SimulationConfig(seed=34, duration=1000000)
    expected = []
    for t_us, kind, value in timeline(config):
        if kind == FRAME:
            expected.append((value[0], value[2]))
            if len(expected) == len(read):
                break
    assert len(read) > 1000
    assert [(f.can_id, f.data) for f in read] == expected


@pytest.mark.parametrize("args,channel", [((), "can0"), (("--channel", "vcan3"), "vcan3")])
def test_output_log_lines_name_the_channel_users_pass(tmp_path, args, channel):
    """can-utils' log2asc/canplayer match the channel name: python-can's default vcan0 made
    `log2asc ... can0` find nothing."""
    path = tmp_path / "chan.log"
    done = run_cancorder("mock-uds", "--seed", "5", "--blocks", "2", "--output", str(path),
                         *args)
    assert done.returncode == 0, done.stderr
    lines = path.read_text().splitlines()
    assert lines and all(line.split()[1] == channel for line in lines)


def test_channel_without_output_is_a_usage_error():
    done = run_cancorder("mock-uds", "--channel", "can1", "-p", "1")
    assert done.returncode == 2
    assert "--channel names the channel in the --output file" in done.stderr


# ---- no client, no simulation (issue 11) ----

class _Gate:
    """The server's ClientGate, with the number of clients set by the test."""

    def __init__(self):
        self.clients = 0
        self.changed = threading.Event()

    def count(self):
        return self.clients

    def wait_for_client(self, timeout):
        deadline = time.monotonic() + timeout
        while self.clients == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.clients > 0


def _cycles(config):
    """The frames (id, data) of each cycle of the timeline, in order."""
    cycles = []
    for _, kind, value in timeline(config):
        if kind == CYCLE:
            cycles.append([])
        elif kind == FRAME:
            cycles[-1].append((value[0], value[2]))
    return cycles


def _served(source, seconds):
    decoder = wire.StreamDecoder()
    frames = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        records = source.read(0.05)
        if records is None:
            break
        frames += [(f[1], f[3]) for f in decoder.feed(records)]
    return frames


@pytest.mark.parametrize("loop", [True, False], ids=["loop", "no-loop"])
def test_without_a_client_the_simulation_pauses_and_the_next_gets_a_whole_cycle(loop):
    from cancorder.sources.uds import UdsSimulatorSource

    config = SimulationConfig(seed=21, speed=20, blocks=20, loop=loop)
    cycles = _cycles(SimulationConfig(seed=21, speed=20, blocks=20, loop=True, duration=200))
    gate = _Gate()
    source = UdsSimulatorSource(config)
    source.use_clients(gate)
    source.open()
    assert _served(source, 0.3) == []  # nobody there: nothing happens
    gate.clients = 1
    first = _served(source, 0.6)
    assert first and first == cycles[0][:len(first)] and len(first) < len(cycles[0])
    gate.clients = 0  # the client leaves mid-cycle
    assert _served(source, 0.5) == []  # paused
    gate.clients = 1  # another comes: a cycle from its very start
    again = _served(source, 0.6)
    expected = cycles[1] if loop else cycles[0]
    assert again and again == expected[:len(again)], (again[:3], expected[:3])


def test_the_timeline_yields_frame_tuples_in_integer_microseconds():
    """Issue 10: no python-can Message per frame; the ISO-TP layer yields (can_id, flags,
    data) with integer microseconds end to end (a Message is made only for writers)."""
    frames = [(t_us, value) for t_us, kind, value in
              timeline(SimulationConfig(seed=5, loop=False, blocks=4)) if kind == FRAME]
    assert len(frames) > 100
    for t_us, value in frames:
        assert type(t_us) is int and type(value) is tuple and len(value) == 3
        can_id, flags, data = value
        assert type(can_id) is int and type(flags) is int and type(data) is bytes
