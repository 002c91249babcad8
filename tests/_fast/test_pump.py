"""The source thread's compiled loop (_fast/pump) and the SLCAN source's compiled wake-up
(_fast/slcan.SlcanReader), compiled and pure."""
import os
import socket
import threading
import time

import pytest

from tests.emulators.slcan_adapter import build_lines


class Lost(Exception):
    pass


def test_the_loop_hands_every_batch_to_every_consumer_in_order_until_stopped(fast):
    pump = fast.pump
    batches = [b"a", b"", b"bc", b"", b"def"]
    got = []
    stop = threading.Event()

    def read(timeout):
        assert timeout == 0.25
        if not batches:
            stop.set()
            return b""
        return batches.pop(0)

    loop = pump.Pump([lambda r: got.append(("first", r)), lambda r: got.append(("second", r))],
                     Lost, stop.is_set)
    assert loop.heartbeat == 0.0 and loop.last_frame == 0.0
    before = time.monotonic()
    assert loop.run(read, 0.25) == pump.STOPPED
    assert got == [("first", b"a"), ("second", b"a"), ("first", b"bc"), ("second", b"bc"),
                   ("first", b"def"), ("second", b"def")]  # b"": nothing to hand over
    assert before <= loop.last_frame <= loop.heartbeat <= time.monotonic()
    assert loop.lost is None


def test_a_lost_source_and_an_ended_one_return_and_the_loop_runs_again(fast):
    pump = fast.pump
    got = []
    script = [b"x", Lost("adapter gone"), b"y", None]

    def read(timeout):
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    loop = pump.Pump([got.append], Lost, lambda: False)
    assert loop.run(read, 0.1) == pump.LOST
    assert str(loop.lost) == "adapter gone" and got == [b"x"]
    assert loop.run(read, 0.1) == pump.ENDED  # after a reopen, the same loop goes on
    assert got == [b"x", b"y"] and loop.lost is None


def test_other_exceptions_go_through(fast):
    def read(timeout):
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        fast.pump.Pump([], Lost, lambda: False).run(read, 0.1)


def test_stopped_before_the_first_read_reads_nothing(fast):
    def read(timeout):
        raise AssertionError("read after the stop")

    assert fast.pump.Pump([], Lost, lambda: True).run(read, 0.1) == fast.pump.STOPPED


# ---- SlcanReader ----

class Hooks:
    def __init__(self):
        self.checks = 0
        self.changes = 0

    def check(self):
        self.checks += 1

    def changed(self):
        self.changes += 1


def reader_pair(fast, busy_ns=0, gather_ns=0, adapter_time=False):
    adapter, port = socket.socketpair()
    parser = fast.slcan.SlcanParser(adapter_time=adapter_time)
    hooks = Hooks()
    reader = fast.slcan.SlcanReader(port.fileno(), parser, 1 << 16, busy_ns, gather_ns,
                                    hooks.check, hooks.changed, Lost, "slcan channel test")
    return adapter, port, parser, hooks, reader


def test_the_reader_returns_what_the_parser_makes_of_the_same_bytes(fast):
    adapter, port, parser, hooks, reader = reader_pair(fast)
    try:
        assert reader.read(0.05) == b""  # nothing came: b"" after the timeout
        lines = b"".join(build_lines(300))
        adapter.sendall(lines[:5000])
        before = time.time_ns() // 1000
        first = reader.read(1.0)
        adapter.sendall(lines[5000:])
        rest = b""
        while len(first) + len(rest) < 300 * 22:
            rest += reader.read(1.0)
        after = time.time_ns() // 1000
        twin = fast.slcan.SlcanParser(adapter_time=False)
        stamp = int.from_bytes(first[:8], "big")
        assert before <= stamp <= after  # the host time of the read
        assert first == twin.feed(lines[:5000], stamp)  # a line split across reads: kept
        assert parser.frames == 300 and len(first) + len(rest) == 300 * 22
        assert hooks.checks == 3 and hooks.changes == 0  # checked before each wait
        reader.watching = False
        adapter.sendall(b"\r\aZ\rxyz\r")  # a reply, a BEL, a transmit's answer, garbage
        assert reader.read(1.0) == b""
        assert hooks.checks == 3 and hooks.changes == 1
        assert (parser.replies, parser.bell, parser.garbage) == (2, 1, 1)
    finally:
        adapter.close()
        port.close()


def test_a_busy_link_waits_one_gather_before_reading(fast):
    adapter, port, parser, hooks, reader = reader_pair(fast, busy_ns=10**9, gather_ns=50 * 10**6)
    try:
        adapter.sendall(build_lines(1)[0])
        start = time.monotonic()
        reader.read(1.0)  # the first read in a second: at once
        adapter.sendall(build_lines(2)[1])
        reader.read(1.0)  # within busy_ns of the first: waits gather_ns first
        took = time.monotonic() - start
        assert 0.05 <= took < 0.5, took
        assert parser.frames == 2
    finally:
        adapter.close()
        port.close()


def test_the_port_ending_or_failing_raises_the_lost_error(fast):
    adapter, port, parser, hooks, reader = reader_pair(fast)
    adapter.close()
    with pytest.raises(Lost, match=r"^slcan channel test failed: the adapter stopped answering "
                                   r"\(unplugged\?\)$"):
        reader.read(1.0)
    port.close()
    r, w = os.pipe()
    os.close(r)
    failing = fast.slcan.SlcanReader(w, fast.slcan.SlcanParser(), 1 << 16, 0, 0, Hooks().check,
                                     Hooks().changed, Lost, "slcan channel test")
    try:  # a write end polls as an error at once and cannot be read: EBADF
        with pytest.raises(Lost, match=r"^slcan channel test failed: \[Errno 9\] "):
            failing.read(1.0)
    finally:
        os.close(w)
