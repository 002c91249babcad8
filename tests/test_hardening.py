"""Small things a new user hit (issue 11): each checked where it lives."""
import struct

from cancorder.cli import _exception_name


def test_an_unexpected_library_error_does_not_read_error_error():
    try:
        struct.pack(">Q", 1 << 64)
    except struct.error as exc:
        assert _exception_name(exc) == "struct.error"
    assert _exception_name(ValueError("x")) == "ValueError"


# ---- bit rates as people write them ----

import pytest  # noqa: E402

from cancorder.cli import build_parser  # noqa: E402


@pytest.mark.parametrize("text,value", [
    ("500000", 500000), ("500k", 500000), ("500K", 500000), ("1M", 1000000), ("1m", 1000000),
    ("83.3k", 83300), ("83333", 83333), ("125 kbit/s", 125000), ("2M", 2000000),
])
def test_bitrate_accepts_suffixes(text, value):
    args = build_parser().parse_args(["serve", "-b", text])
    assert args.bitrate == value


@pytest.mark.parametrize("text", ["fast", "500x", "0.5", "30M", "1e6"])
def test_bitrate_refuses_what_is_not_one(text):
    from cancorder.errors import UsageError

    with pytest.raises(UsageError) as error:
        build_parser().parse_args(["serve", "-b", text])
    assert "bit rate" in str(error.value) and error.value.exit_code == 2


def test_data_bitrate_as_python_can_spells_it():
    args = build_parser().parse_args(["serve", "--fd", "--data_bitrate", "2M"])
    assert args.data_bitrate == 2_000_000


@pytest.mark.parametrize("bitrate", [83300, 83333])
def test_slcan_83k3_both_spellings(bitrate, slcan_emulator):
    from cancorder.sources.slcan import SlcanSource

    source = SlcanSource(slcan_emulator.url, bitrate=bitrate)
    source.open()
    try:
        slcan_emulator.wait_open()
        assert "S9" in slcan_emulator.commands
    finally:
        source.close()


# ---- colours far apart for close ids ----

@pytest.mark.parametrize("first,second", [(0x7E0, 0x7E8), (0x7DF, 0x7E0), (0x7E0, 0x7E1),
                                          (0x18DA10F1, 0x18DAF110), (0x100, 0x10F)])
def test_close_ids_get_colours_far_apart_on_a_256_colour_terminal(first, second):
    import math

    from rich.color import ColorSystem

    from cancorder.formats import _id_colour

    def shown(key):  # what a 256-colour terminal shows
        colour = _id_colour(key).downgrade(ColorSystem.EIGHT_BIT)
        rgb = colour.get_truecolor()
        return colour.number, (rgb.red, rgb.green, rgb.blue)

    (number_a, rgb_a), (number_b, rgb_b) = shown(first), shown(second)
    assert number_a != number_b
    assert math.dist(rgb_a, rgb_b) >= 100, (rgb_a, rgb_b)


def test_every_id_within_15_of_another_gets_another_colour():
    from cancorder.formats import _id_colour

    for key in range(0x7C0, 0x800):
        for distance in range(1, 16):
            assert _id_colour(key) != _id_colour(key + distance)


# ---- detect: the command to copy never wraps ----

@pytest.mark.parametrize("width", [60, 80, 100, 160])
def test_detect_table_keeps_each_command_on_one_line(width):
    import io

    from rich.console import Console

    from cancorder.commands.detect import _print_table
    from cancorder.detection import Found

    found = [
        Found("slcan", "/dev/serial/by-id/usb-CANable2_b158aa7_github.com_normaldotcom-if00",
              "CANable 2.0 (16d0:117e), serial 0042, SLCAN firmware",
              "cancorder serve -i slcan -c /dev/serial/by-id/usb-CANable2_b158aa7_github.com_"
              "normaldotcom-if00 -b 500000", usable=True),
        Found("socketcan", "can0", "up, 500000 bit/s", "cancorder serve -i socketcan -c can0",
              usable=True),
        Found("serial", "/dev/ttyS0", "16550A UART", "cancorder serve -i slcan -c /dev/ttyS0 -b "
              "500000", fix="not a known SLCAN adapter: the command works if it speaks SLCAN"),
    ]
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=False, color_system=None)
    _print_table(found, console)
    text = out.getvalue()
    for row in found:
        assert any(row.command in line for line in text.splitlines()), (row.command, text)
    assert max(len(line) for line in text.splitlines()) <= max(width, 1 + max(
        len(row.command) for row in found))


# ---- SIGINT during start-up, started in the background by a script ----

@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_during_start_up_is_not_lost_when_sigint_is_ignored(slcan_emulator, signame):
    """`cancorder serve ... &` in a script inherits SIGINT ignored; a SIGINT while the adapter
    is still opening used to be dropped, and the logger then served for ever."""
    import signal
    import subprocess
    import sys

    from tests.helpers import cancorder_env

    proc = subprocess.Popen(
        [sys.executable, "-m", "cancorder", "serve", "-i", "slcan", "-c", slcan_emulator.url,
         "--no-zeroconf", "--opt", "sleep_after_open=20"],
        env=cancorder_env(), stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        import time

        deadline = time.monotonic() + 20
        while not slcan_emulator.connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert slcan_emulator.connections  # connected: now sleeping in start-up, not serving
        time.sleep(0.2)
        proc.send_signal(getattr(signal, signame))
        code = proc.wait(10)
        err = proc.stderr.read()
        assert code == 0, err  # a stop by signal, as once serving (README: exit codes)
        assert "Traceback" not in err and "serving" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---- "1 frame", "1 client" ----

def test_counts_agree_with_their_nouns():
    from cancorder.report import plural

    assert [plural(n, "frame") for n in (0, 1, 2, 1000)] == [
        "0 frames", "1 frame", "2 frames", "1,000 frames"]
    assert [plural(n, "duplicate batch") for n in (1, 3)] == [
        "1 duplicate batch", "3 duplicate batches"]


def test_the_refusal_says_1_client(fast):
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    events = []
    b = fast.broadcast.Broadcaster([listener], max_clients=1,
                                   log=lambda *event: events.append(event[1]))
    thread = threading.Thread(target=b.run, daemon=True)
    thread.start()
    first = socket.create_connection(("127.0.0.1", port))
    second = socket.create_connection(("127.0.0.1", port))
    second.settimeout(5)
    try:
        assert second.recv(1) == b""
        assert any("refused: already 1 client (--max-clients 1)" in e for e in events), events
    finally:
        first.close()
        second.close()
        b.stop(0)
        thread.join(10)
