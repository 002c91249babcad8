"""`dump --monitor`: the full-screen table under tmux, as a person runs it (against a real
mock-uds, a fake logger with DBC frames, a log file), and the table's logic in process."""
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid

import can
import cantools
import pytest

from cancorder._fast import wire
from cancorder.dbc import load_databases, signal_texts
from cancorder.monitor import Monitor
from tests.helpers import ROOT, cancorder_env
from tests.test_dbc import DBC, EXT, cantools_decode, records
from tests.commands.test_dump import fake_loggers  # noqa: F401 (a fixture)



class Tmux:
    """A detached tmux session running one shell command; ``screen()`` is what a person sees."""

    def __init__(self, command, width=160, height=45):
        self.name = f"cancorder-test-{uuid.uuid4().hex[:8]}"
        env = cancorder_env(TZ="UTC")
        env.pop("COLUMNS", None)
        env.pop("LINES", None)
        env["TERM"] = "xterm-256color"
        subprocess.run(["tmux", "-L", self.name, "new-session", "-d", "-s", self.name,
                        "-x", str(width), "-y", str(height), command],
                       check=True, env=env, cwd=ROOT)

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.name, *args], capture_output=True, text=True)

    def screen(self):
        return self.tmux("capture-pane", "-p", "-t", self.name).stdout

    def keys(self, *keys):
        self.tmux("send-keys", "-t", self.name, *keys)

    def wait_for(self, predicate, timeout=30.0, what="the screen"):
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            result = predicate(screen)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} never came; the screen:\n{screen}")
            time.sleep(0.2)

    def close(self):
        # the session's own server, started for this test alone (-L NAME): stop it
        self.tmux("kill-server")


@pytest.fixture
def tmux_session():
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (.ci/run installs it)")
    made = []

    def start(command, **size):
        session = Tmux(command, **size)
        made.append(session)
        return session

    yield start
    for session in made:
        session.close()


def monitor_command(tmp_path, *args):
    """The shell line: remember the terminal's settings, run the monitor, record the exit
    status and the settings after it, then wait (so the pane stays to be read)."""
    cancorder = f"{shlex.quote(sys.executable)} -m cancorder dump --monitor"
    quoted = " ".join(shlex.quote(str(arg)) for arg in args)
    before, after, status = (tmp_path / "stty-before", tmp_path / "stty-after",
                             tmp_path / "status")
    return (f"stty -g > {before}; {cancorder} {quoted} 2> {tmp_path / 'stderr'}; "
            f"echo $? > {status}; stty -g > {after}; echo MONITOR-DONE; sleep 600")


def rows(screen):
    """{ID: [the row's cells]} for the table's rows (ids are 3 or 8 hex digits)."""
    found = {}
    for line in screen.splitlines():
        cells = line.split()
        for index, cell in enumerate(cells[:2]):
            if re.fullmatch(r"[0-9A-F]{3}|[0-9A-F]{8}", cell) and len(cells) > index + 3:
                found[cell] = cells[index:]
                break
    return found


def count_of(row):
    """The Count column: the first number after the id (and its flags, when there are)."""
    for cell in row[1:]:
        if re.fullmatch(r"[\d,]+", cell):
            return int(cell.replace(",", ""))
    raise AssertionError(row)


def wait_status(tmp_path, timeout=20.0):
    path = tmp_path / "status"
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().strip():
        if time.monotonic() > deadline:
            raise AssertionError("the monitor did not exit; stderr:\n"
                                 + _read(tmp_path / "stderr"))
        time.sleep(0.1)
    return int(path.read_text())


def _read(path):
    return path.read_text() if path.exists() else ""


def test_monitor_against_mock_uds(cancorder_process, tmux_session, tmp_path):
    server = cancorder_process("mock-uds", "--no-zeroconf", "--bind", "127.0.0.1", "--async")
    port = server.port()
    recording = tmp_path / "session.blf"
    session = tmux_session(monitor_command(tmp_path, f"127.0.0.1:{port}", "-o", recording))
    first = session.wait_for(lambda s: (lambda r: r if {"7DF", "7E0", "7E8"} <= set(r)
                                        else None)(rows(s)), what="rows 7DF, 7E0, 7E8")
    screen = session.screen()
    assert "cancorder monitor" in screen and "q quit" in screen
    # counts grow
    session.wait_for(lambda s: all(count_of(rows(s)[i]) > count_of(first[i])
                                   for i in ("7DF", "7E8")), what="growing counts")
    # p freezes the rows
    session.keys("p")
    session.wait_for(lambda s: "PAUSED" in s, what="PAUSED")
    frozen = rows(session.screen())
    time.sleep(1.5)
    later = session.screen()
    assert rows(later) == frozen, later
    # p again: they move on
    session.keys("p")
    session.wait_for(lambda s: "PAUSED" not in s
                     and count_of(rows(s)["7DF"]) > count_of(frozen["7DF"]),
                     what="counts moving again")
    # q: exit 0, the terminal as it was
    session.keys("q")
    assert wait_status(tmp_path) == 0, _read(tmp_path / "stderr")
    assert (tmp_path / "stty-before").read_text() == (tmp_path / "stty-after").read_text()
    screen = session.wait_for(lambda s: "MONITOR-DONE" in s and s, what="the shell back")
    assert "cancorder monitor" not in screen  # the alternate screen is gone
    stderr = _read(tmp_path / "stderr")
    assert "stopped: q pressed" in stderr and "connected to" in stderr, stderr
    assert "Traceback" not in stderr
    # -o recorded every frame counted, and the file is whole
    counted = int(re.search(r"([\d,]+) frames; stopped", stderr).group(1).replace(",", ""))
    with can.LogReader(str(recording)) as reader:
        recorded = list(reader)
    assert len(recorded) == counted > 0
    assert {m.arbitration_id for m in recorded} >= {0x7DF, 0x7E0, 0x7E8}


def test_monitor_keys_sort_filter_clear(cancorder_process, tmux_session, tmp_path):
    server = cancorder_process("mock-uds", "--no-zeroconf", "--bind", "127.0.0.1", "--async")
    port = server.port()
    session = tmux_session(monitor_command(tmp_path, f"127.0.0.1:{port}"))
    session.wait_for(lambda s: {"7DF", "7E0", "7E8"} <= set(rows(s)), what="three rows")
    session.keys("s")
    session.wait_for(lambda s: "sort: rate" in s, what="sort: rate")
    session.keys("s")
    session.wait_for(lambda s: "sort: last change" in s, what="sort: last change")
    session.keys("/", "7E")
    screen = session.wait_for(lambda s: "filter: 7E" in s and "7DF" not in rows(s) and s,
                              what="the filter")
    assert {"7E0", "7E8"} >= set(rows(screen))
    session.keys("Escape")
    session.wait_for(lambda s: "filter:" not in s and "7DF" in rows(s), what="no filter")
    before = count_of(rows(session.screen())["7DF"])
    session.keys("c")
    session.wait_for(lambda s: "7DF" not in rows(s) or count_of(rows(s)["7DF"]) < before,
                     what="cleared counts")
    session.keys("q")
    assert wait_status(tmp_path) == 0


def test_monitor_decodes_with_a_dbc(fake_loggers, tmux_session, tmp_path):  # noqa: F811
    dbc = tmp_path / "obd.dbc"
    dbc.write_text(DBC)
    database = cantools.database.load_file(str(dbc))
    frames = [
        (0x7DF, 0, bytes.fromhex("02010CCCCCCCCCCC")),
        (0x7E8, 0, bytes.fromhex("04410C0BD3CCCCCC")),  # multiplexed: EngineRPM
        (0x7E0, 0, bytes.fromhex("021003CCCCCCCCCC")),  # a choice
        (0x0CF00400, EXT, bytes.fromhex("FFFF7D401FFFFFFF")),  # J1939 EEC1
        (0x18F00417, EXT, bytes.fromhex("FFFF90E02EFFFFFF")),  # EEC1 from another source
        (0x7E9, 0, bytes.fromhex("0102")),  # unknown
    ]
    fake = fake_loggers(records(frames), close=False)
    session = tmux_session(monitor_command(tmp_path, fake.target, "--dbc", dbc), width=200)
    screen = session.wait_for(lambda s: len(rows(s)) == len(frames) and s, what="six rows")
    lines = screen.splitlines()
    for can_id, flags, data in frames:
        ident = f"{can_id:08X}" if flags & EXT else f"{can_id:03X}"
        index = next(i for i, line in enumerate(lines) if line.split()[:1] == [ident])
        assert data.hex(" ").upper() in lines[index], lines[index]
        expected = cantools_decode(database, can_id, flags, data)
        if expected is None:
            assert lines[index].rstrip().endswith(data.hex(" ").upper()), lines[index]
            continue
        name, values = expected
        assert lines[index].rstrip().endswith(name), lines[index]
        decoder = load_databases([str(dbc)])
        shown = [line.strip() for line in lines[index + 1:index + 1 + len(values)]]
        assert shown == signal_texts(decoder.decode(can_id, flags, data)), screen
        for text, (signal, value) in zip(shown, values.items()):
            got = text.split("=", 1)[1].split()[0]
            if isinstance(value, (int, float)):
                assert float(got) == pytest.approx(float(value)), text
            else:
                assert got == str(value), text
    session.keys("/", "EEC1", "Enter")
    screen = session.wait_for(lambda s: set(rows(s)) == {"0CF00400", "18F00417"} and s,
                              what="only the EEC1 rows")
    session.keys("q")
    assert wait_status(tmp_path) == 0


DIM = re.compile(r"\x1b\[(?:[0-9]+;)*2(?:;[0-9]+)*m")  # an SGR sequence that turns on dim


def test_changed_bytes_light_up_and_silent_rows_dim(fake_loggers, tmux_session, tmp_path):  # noqa: F811
    """On the real screen (tmux keeps the colours with capture-pane -e): the byte that keeps
    changing is drawn black on yellow, the others plain; a row that went silent is dim."""
    fake = fake_loggers(records([(0x200, 0, b"\x55\x66")]), close=False)
    session = tmux_session(monitor_command(tmp_path, fake.target))
    session.wait_for(lambda s: "200" in rows(s), what="row 200")
    deadline = time.monotonic() + 30
    counter = 0
    coloured = ""
    while time.monotonic() < deadline:
        counter += 1
        fake.send(wire.pack_frame(counter * 100_000, 0x100, 0, bytes((0x11, counter & 0xFF,
                                                                       0x33))))
        time.sleep(0.1)
        if counter < 30:  # 3 s: the 200 row is past the 2 s that make a row stale
            continue
        coloured = session.tmux("capture-pane", "-p", "-e", "-t", session.name).stdout
        line_100 = next((line for line in coloured.splitlines() if "100" in line[:20]), "")
        line_200 = next((line for line in coloured.splitlines() if "200" in line[:20]), "")
        hot = re.search(r"\x1b\[[0-9;]*43m([0-9A-F]{2})", line_100)  # yellow background
        if hot and DIM.search(line_200):
            break
    else:
        raise AssertionError("no highlighted byte or no dim row; the screen:\n" + coloured)
    plain_100 = re.sub(r"\x1b\[[0-9;]*m", "", line_100)
    assert plain_100.rstrip().endswith(f"11 {hot.group(1)} 33"), plain_100  # byte 1 is lit
    assert len(re.findall(r"43m", line_100)) == 1  # and only it
    assert not DIM.search(line_100)  # the live row is not dim
    session.keys("q")
    assert wait_status(tmp_path) == 0


def test_monitor_replays_a_log_file_with_channels(tmux_session, tmp_path):
    path = tmp_path / "two.asc"
    with can.ASCWriter(str(path)) as writer:
        for index in range(60):
            stamp = 1_700_000_000 + index * 0.05
            writer.on_message_received(can.Message(
                timestamp=stamp, arbitration_id=0x100, is_extended_id=False,
                data=bytes([index, 1, 2]), channel=0))
            writer.on_message_received(can.Message(
                timestamp=stamp + 0.01, arbitration_id=0x200, is_extended_id=False,
                data=bytes([7, index]), channel=1))
    session = tmux_session(monitor_command(tmp_path, path))
    screen = session.wait_for(lambda s: "press q to quit" in s and s, timeout=40,
                              what="the end of the file")
    assert "Chan" in screen
    for ident in ("100", "200"):
        line = next(line for line in screen.splitlines() if f" {ident} " in line)
        assert " 60 " in line, line  # every frame counted
        assert re.search(r"\b50\.0\b", line), line  # period 50 ms
    session.keys("q")
    assert wait_status(tmp_path) == 0


def test_without_a_terminal_it_refuses_in_one_line():
    run = subprocess.run([sys.executable, "-m", "cancorder", "dump", "--monitor",
                          "127.0.0.1:9"], cwd=ROOT, env=cancorder_env(), capture_output=True,
                         text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs a terminal" in lines[0] and "--stats" in lines[0], lines
    assert run.stdout == ""


# ---- the table's logic, in process (no terminal: keys=None, a recording console) ----

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def make_monitor(height=20, signals=None):
    from rich.console import Console

    console = Console(record=True, width=140, height=height, force_terminal=True,
                      color_system="truecolor", file=open(os.devnull, "w"))
    clock = Clock()
    return Monitor(console, signals=signals, keys=None, clock=clock), clock


def row_lines(monitor):
    """The table's rows as rich Texts (after the title, the status and the header)."""
    return list(monitor.render().renderables[3:-1])


def screen_text(monitor):
    monitor.console.print(monitor.render())
    return monitor.console.export_text(clear=True)


def test_period_jitter_and_changed_bytes():
    monitor, clock = make_monitor()
    # 0x100 every 10 ms with a 2 ms wobble; byte 1 changes, the others do not
    micros = 0
    for index in range(11):
        micros = index * 10_000 + (2000 if index % 2 else 0)
        monitor.add([(micros, 0x100, 0, bytes([0xAA, index, 0xBB]))])
    clock.now += 0.5
    monitor.tick()
    view = next(v for v in monitor.snapshot() if v.can_id == 0x100)
    assert view.count == 11
    assert view.period == pytest.approx(10.0)  # intervals of 12, 8, 12, 8 ... ms
    assert view.jitter == pytest.approx(2.0)  # their standard deviation
    from cancorder.monitor import _data_text
    text = _data_text(view, clock.now)
    hot = {text.plain[span.start:span.end] for span in text.spans if span.style}
    assert hot == {"0A"}  # only the byte that changed is lit
    clock.now += 1.5  # a second and more without a change: no byte lit
    view = next(v for v in monitor.snapshot() if v.can_id == 0x100)
    assert not [s for s in _data_text(view, clock.now).spans if s.style]


def test_stale_rows_dim_and_pause_freezes():
    monitor, clock = make_monitor()
    monitor.add([(0, 0x10, 0, b"\x01"), (0, 0x20, 0, b"\x02")])
    clock.now += 5.0
    monitor.add([(5_000_000, 0x20, 0, b"\x03")])
    monitor.tick()
    lines = row_lines(monitor)
    dimmed = [line.plain.split()[0] for line in lines
              if any(str(span.style) == "dim" and span.end - span.start == len(line.plain)
                     for span in line.spans)]
    assert [line.plain.split()[0] for line in lines] == ["010", "020"]
    assert dimmed == ["010"]  # not seen for 5 s; 020 just came
    monitor.handle_keys(b"p")
    frozen = screen_text(monitor)
    monitor.add([(6_000_000, 0x20, 0, b"\x04")] * 10)
    row = next(line for line in frozen.splitlines() if line.startswith("020"))
    assert "PAUSED" in frozen and row.split()[1] == "2", row
    assert screen_text(monitor).splitlines()[1:] == frozen.splitlines()[1:]
    monitor.handle_keys(b"p")
    assert "12" in screen_text(monitor)  # the count caught up: nothing was lost meanwhile


def test_scrolling_shows_only_what_fits():
    monitor, clock = make_monitor(height=20)
    monitor.add([(0, can_id, 0, b"\x00") for can_id in range(300)])
    assert len(row_lines(monitor)) == 15  # height 20: title, status, header, footer, a spare
    first = lambda: row_lines(monitor)[0].plain.split()[0]  # noqa: E731
    assert first() == "000"
    monitor.handle_keys(b"\x1b[6~")  # PageDown
    assert first() == "00F"  # a page is the 15 rows that fit
    monitor.handle_keys(b"\x1b[B\x1b[B")  # two down arrows in one read
    assert first() == "011"
    monitor.handle_keys(b"\x1b[A")
    assert first() == "010"
    monitor.handle_keys(b"\x1b[5~\x1b[5~")  # PageUp twice: stops at the top
    assert first() == "000"
    monitor.handle_keys(b"\x1b[F")  # End: the last page, full
    assert first() == "11D" and "rows 286-300 of 300" in screen_text(monitor)
    monitor.handle_keys(b"\x1b[H")  # Home
    assert first() == "000"


def test_sort_filter_by_name_and_clear(tmp_path):
    dbc = tmp_path / "obd.dbc"
    dbc.write_text(DBC)
    monitor, clock = make_monitor(signals=load_databases([str(dbc)]))
    monitor.add([(0, 0x7DF, 0, bytes(8))] * 3 + [(0, 0x7E8, 0, bytes(8))] * 9
                + [(0, 0x123, 0, b"\x01")])
    clock.now += 1.0
    monitor.tick()
    order = lambda: [v.can_id for v in monitor.visible(monitor.snapshot())]  # noqa: E731
    assert order() == [0x123, 0x7DF, 0x7E8]
    monitor.handle_keys(b"s")
    assert monitor.sort == "rate" and order() == [0x7E8, 0x7DF, 0x123]
    monitor.handle_keys(b"s")
    clock.now += 1.0
    monitor.add([(0, 0x123, 0, b"\x02")])
    assert monitor.sort == "last change" and order()[0] == 0x123
    monitor.handle_keys(b"s/obd_res")
    assert monitor.editing_filter and order() == [0x7E8]
    monitor.handle_keys(b"\r")
    assert not monitor.editing_filter and monitor.filter_text == "obd_res"
    monitor.handle_keys(b"\x1b")  # Esc: no filter
    assert order() == [0x123, 0x7DF, 0x7E8]
    monitor.handle_keys(b"/7d\x7fe")  # backspace
    assert monitor.filter_text == "7e" and order() == [0x7E8]
    monitor.handle_keys(b"\r")
    monitor.handle_keys(b"c")
    assert monitor.total == 0 and order() == []
    monitor.handle_keys(b"q")
    assert monitor.quit_requested.is_set()


def test_channels_get_their_own_rows():
    monitor, _ = make_monitor()
    monitor.feed([(0, 0x100, 0, b"\x01", "can0"), (0, 0x100, 0, b"\x01", "can1"),
                  (1000, 0x100, wire.FLAG_EXT, b"\x01", "can1")])
    text = screen_text(monitor)
    assert "Chan" in text and len(monitor.snapshot()) == 3
    assert "00000100" in text and "EXT" in text


def test_flags_column_names_ext_fd_brs():
    monitor, _ = make_monitor()
    monitor.add([(0, 0x100, 0, b"\x01"),
                 (0, 0x101, wire.FLAG_FD | wire.FLAG_BRS, bytes(12)),
                 (0, 0x1ABCDE, wire.FLAG_EXT | wire.FLAG_FD, bytes(16))])
    lines = {line.split()[0]: line for line in screen_text(monitor).splitlines()
             if line.split()[:1] and line.split()[0] in ("100", "101", "001ABCDE")}
    assert set(lines) == {"100", "101", "001ABCDE"}, lines
    assert lines["101"].split()[1:3] == ["FD", "BRS"], lines["101"]
    assert lines["001ABCDE"].split()[1:3] == ["EXT", "FD"], lines["001ABCDE"]
    assert not {"EXT", "FD", "BRS"} & set(lines["100"].split()), lines["100"]


@pytest.mark.parametrize("name, content, expected", [
    ("missing.blf", None, r"missing\.blf: no such log file"),
    ("notes.xyz", "hello", r"notes\.xyz: cannot tell the format from the extension '\.xyz'"),
    ("broken.blf", "not a BLF file at all" * 10, r"broken\.blf: not a readable \.blf file \(\w+"),
    ("broken.log", "hello\n", r"broken\.log: line 1: expected '\(' and a timestamp"),
])
def test_a_log_file_target_that_cannot_be_read_is_one_line(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    run = subprocess.run([sys.executable, "-m", "cancorder", "dump", str(path)], cwd=ROOT,
                         env=cancorder_env(), capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(expected, lines[0]), lines


def test_the_readme_picture_is_what_the_script_makes(tmp_path):
    """docs/monitor.svg is the script's output (rich's save_svg of the real monitor), byte for
    byte: made again here from the same frames, it must not differ (a hand-edited or stale
    picture fails), and it shows the rows and decoded signals docs/dump.md says it does."""
    out = tmp_path / "monitor.svg"
    run = subprocess.run([sys.executable, os.path.join("docs", "monitor_screenshot.py"),
                          str(out)], cwd=ROOT, env=cancorder_env(), capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    made = out.read_text()
    with open(os.path.join(ROOT, "docs", "monitor.svg")) as committed:
        assert made == committed.read(), "docs/monitor.svg is not what the script makes: " \
                                         "run .venv/bin/python docs/monitor_screenshot.py"
    assert made.startswith("<svg") and "cancorder monitor" in made.replace("&#160;", " ")
    for text in ("7DF", "7E8", "0CF00400", "EEC1", "EngineSpeed"):
        assert text in made, text


# ---- the messages view (key m, dump --isotp / --j1939) ----

def test_key_m_shows_the_reassembled_messages(tmp_path, monkeypatch):
    from cancorder.reassembly import Reassembler
    from cancorder.uds.simulation import SimulationConfig
    from tests.test_reassembly import bam, simulated, timed

    config = SimulationConfig(seed=4, blocks=6, error_rate=0.0, loop=False)
    frames, sent = simulated(config, monkeypatch)
    j1939 = timed(bam(0x00, bytes(range(20))), start=frames[-1][0] + 1000)
    monitor, clock = make_monitor(height=30)
    monitor.reassembler = Reassembler(isotp_auto=True, j1939=True)
    monitor.add([frame[:4] for frame in frames + j1939])
    assert "7E0" in screen_text(monitor)  # the frames' view first, every frame counted
    assert monitor.total == len(frames) + len(j1939)
    monitor.handle_keys(b"m")
    text = screen_text(monitor)
    rows = {line.split()[0]: line for line in text.splitlines()
            if line.split() and re.fullmatch(r"7[0-9A-F]{2}(>7[0-9A-F]{2})?|PGN", line.split()[0])}
    by_sender = {}
    for can_id, payload in sent:
        by_sender.setdefault(can_id, []).append(payload)
    request = rows["7E0>7E8"].split()
    assert request[1] == "ISO-TP" and int(request[2]) == len(by_sender[0x7E0])
    last = by_sender[0x7E8][-1]
    assert last[:8].hex(" ").upper() in rows["7E8>7E0"]
    assert int(rows["7DF"].split()[2]) == len(by_sender[0x7DF])
    pgn = next(line for line in text.splitlines() if line.startswith("PGN 0FEE3 00>FF"))
    assert " J1939 " in pgn and "00 01 02 03" in pgn
    assert "m frames" in text
    monitor.handle_keys(b"m")
    assert "m messages" in screen_text(monitor)


def test_dump_monitor_isotp_key_m_end_to_end(tmux_session, tmp_path, monkeypatch):
    from cancorder.uds.simulation import SimulationConfig
    from tests.test_reassembly import simulated, write_candump

    frames, sent = simulated(SimulationConfig(seed=9, blocks=4, error_rate=0.0, loop=False),
                             monkeypatch)
    log = write_candump(tmp_path / "uds.log", frames)
    session = tmux_session(monitor_command(tmp_path, log, "--isotp", "auto", "--speed", "1000"))
    session.wait_for(lambda s: "press q to quit" in s and s, timeout=40, what="the end")
    session.keys("m")
    screen = session.wait_for(lambda s: "7E0>7E8" in s and s, what="the messages view")
    line = next(line for line in screen.splitlines() if line.startswith("7E0>7E8"))
    assert int(line.split()[2]) == sum(1 for can_id, _ in sent if can_id == 0x7E0), line
    session.keys("q")
    assert wait_status(tmp_path) == 0, _read(tmp_path / "stderr")
