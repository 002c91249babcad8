"""The server in process, with fake sources: exit codes, draining, reopening, filters, gates."""
import os
import signal
import socket
import threading
import time

import pytest

from cancorder._fast import wire
from cancorder.errors import EXIT_FAILURE, EXIT_OK, SourceLostError
from cancorder.filters import parse_rules, record_filter
from cancorder.server import Bus, BusOptions, Server, ServerOptions
from cancorder.sources.base import Source
from tests.helpers import free_port


def record(can_id, data=b"\x01", micros=1_700_000_000_000_000):
    return wire.pack_frame(micros, can_id, wire.FLAG_EXT if can_id > 0x7FF else 0, data)


class ScriptedSource(Source):
    """Plays a script: bytes are handed over, None ends, an exception is raised; then b""."""

    description = "a scripted source"

    def __init__(self, script, record_filter=None, wait_for_client=False):
        super().__init__(record_filter)
        self.script = list(script)
        self.opened = 0
        self.closed = 0
        self.gate = None
        self.wait_for_client = wait_for_client

    def txt(self):
        return {"interface": "virtual", "channel": "scripted", "bitrate": "500000"}

    def use_clients(self, gate):
        self.gate = gate

    def open(self):
        self.opened += 1

    def close(self):
        self.closed += 1

    def _read(self, timeout):
        if self.wait_for_client and self.gate.count() == 0:
            self.gate.wait_for_client(timeout)
            return b""
        if not self.script:
            time.sleep(timeout)
            return b""
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            return step()
        return step


def make_server(source, **options):
    bus = Bus(source, BusOptions(bind="127.0.0.1", zeroconf=False, port=free_port()))
    return Server([bus], ServerOptions(**options)), bus


def run_in_thread(server):
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", server.run()),
                              daemon=True)
    thread.start()
    return thread, result


def connect(bus, timeout=10):
    deadline = time.monotonic() + timeout
    while bus.port is None or bus.broadcaster is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return socket.create_connection(("127.0.0.1", bus.port), timeout=timeout)


def receive_all(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_a_finished_source_exits_0_after_the_clients_got_everything():
    frames = [record(0x100 + i) for i in range(50)]
    source = ScriptedSource([b""] * 3 + [b"".join(frames), None], wait_for_client=True)
    server, bus = make_server(source)
    thread, result = run_in_thread(server)
    sock = connect(bus)
    assert receive_all(sock) == b"".join(frames)  # drained before the server closed
    thread.join(10)
    assert result["code"] == EXIT_OK
    assert server.stop_reason == "every source finished"
    assert source.closed == 1


def test_a_crashing_source_exits_1_and_says_so(caplog):
    source = ScriptedSource([record(0x123), RuntimeError("the driver fell over")])
    server, bus = make_server(source)
    with caplog.at_level("ERROR", logger="cancorder"):
        thread, result = run_in_thread(server)
        thread.join(10)
    assert result["code"] == EXIT_FAILURE
    assert bus.crash is not None
    assert "the driver fell over" in caplog.text
    assert "scripted" in server.stop_reason


def test_sigterm_exits_0():
    source = ScriptedSource([])
    server, bus = make_server(source)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        code = server.run()  # the main thread: the real signal handler stops it
    finally:
        timer.cancel()
    assert code == EXIT_OK
    assert server.stop_reason == "SIGTERM"


def test_a_lost_source_is_reopened_and_frames_flow_again():
    source = ScriptedSource([SourceLostError("unplugged"), record(0x7E8)])
    server, bus = make_server(source)
    thread, result = run_in_thread(server)
    sock = connect(bus)
    sock.settimeout(10)
    assert sock.recv(100) == record(0x7E8)
    assert source.opened == 2 and bus.reopens == 1 and bus.up
    server.stop("test")
    thread.join(10)
    assert result["code"] == EXIT_OK


def test_the_filter_is_applied_once_for_every_source():
    batch = b"".join(record(i) for i in (0x7DF, 0x7E0, 0x7E3, 0x7E8, 0x123, 0x18DA10F1))
    for text, passed in (("7E0:7F0,18DA00F1:1FFF00FF", [0x7E0, 0x7E3, 0x7E8, 0x18DA10F1]),
                         ("7E3~7FF", [0x7DF, 0x7E0, 0x7E8, 0x123, 0x18DA10F1])):
        source = ScriptedSource([batch], record_filter=record_filter(parse_rules(text)))
        out = source.read(0.1)
        assert [f[1] for f in wire.StreamDecoder().feed(out)] == passed, text
        assert source.counters().filtered == 6 - len(passed)


def test_filter_spellings():
    assert parse_rules("7E8:7FF") == [(0x7E8, 0x7FF, None, False)]
    assert parse_rules("0x7E8:0x7FF, 123~7FF") == [(0x7E8, 0x7FF, None, False),
                                                     (0x123, 0x7FF, None, True)]
    assert parse_rules("00000123:1FFFFFFF") == [(0x123, 0x1FFFFFFF, True, False)]  # candump EFF
    for bad in ("7E8", "7E8:", "G00:7FF", "20000000:7FF", ""):
        with pytest.raises(ValueError):
            parse_rules(bad)


def test_the_gate_tells_a_source_about_clients():
    source = ScriptedSource([record(1)], wait_for_client=True)
    server, bus = make_server(source)
    thread, result = run_in_thread(server)
    time.sleep(0.3)
    assert source.script  # nothing read while nobody watches
    sock = connect(bus)
    sock.settimeout(10)
    assert sock.recv(100) == record(1)
    server.stop("test")
    thread.join(10)


def test_the_shared_rate_limit_says_how_many_it_held_back():
    import logging

    from cancorder.logs import RateLimitFilter

    now = [100.0]
    limit = RateLimitFilter(interval=5.0, clock=lambda: now[0])

    def record(text, **extra):
        rec = logging.LogRecord("cancorder.x", logging.WARNING, __file__, 1, text, (), None)
        rec.__dict__.update(extra)
        return rec

    assert limit.filter(record("first", rate_key="k"))
    assert not any(limit.filter(record("again", rate_key="k")) for _ in range(3000))
    assert limit.filter(record("other", rate_key="other"))  # keys are separate
    assert limit.filter(record("plain"))  # no key: never limited
    now[0] += 5.0
    later = record("once more", rate_key="k")
    assert limit.filter(later)
    assert later.getMessage() == "once more (and 3,000 more like it in the last 5 s)"
    slow = record("unplugged", rate_key="r", rate_interval=60.0)
    assert limit.filter(slow)
    now[0] += 30.0
    assert not limit.filter(record("unplugged", rate_key="r", rate_interval=60.0))


def test_a_consumer_whose_thread_crashes_stops_the_server_with_exit_1(monkeypatch):
    """A sink's bug must not leave a process that serves on without it and later exits 0."""
    from cancorder import sinks
    from cancorder.sinks import RecordSink

    class CrashingSink(RecordSink):
        def start(self, bus):
            self.bus = bus

        def put(self, records):
            threading.Thread(target=self._work, daemon=True).start()

        def _work(self):
            try:
                raise ValueError("a bug in the consumer")
            except ValueError as exc:
                self.bus.failed("the test consumer", exc)

    monkeypatch.setattr(sinks, "build_sinks", lambda *args: [CrashingSink()])
    source = ScriptedSource([record(0x123)])
    server, bus = make_server(source)
    thread, result = run_in_thread(server)
    thread.join(10)
    assert result["code"] == EXIT_FAILURE
    assert isinstance(bus.crash, ValueError)
