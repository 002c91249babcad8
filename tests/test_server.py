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


def test_a_consumer_whose_thread_crashes_stops_the_server_with_exit_1():
    """A sink's bug must not leave a process that serves on without it and later exits 0."""
    from cancorder.sinks.base import RecordSink

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

    source = ScriptedSource([record(0x123)])
    bus = Bus(source, BusOptions(bind="127.0.0.1", zeroconf=False, port=free_port(),
                                 sinks=[lambda bus, server_options: CrashingSink()]))
    server = Server([bus], ServerOptions())
    thread, result = run_in_thread(server)
    thread.join(10)
    assert result["code"] == EXIT_FAILURE
    assert isinstance(bus.crash, ValueError)


def test_bad_usage_raises_a_usage_error_exit_2_before_anything_is_served():
    """The third exit code of the server, in process: a usage mistake found when the bus opens
    (a port in use; --allow-transmit on a source that cannot transmit) is a UsageError
    (exit_code 2), raised before a listener is left open, and the source is closed again."""
    from cancorder.errors import EXIT_USAGE, UsageError

    taken = socket.create_server(("127.0.0.1", 0))
    try:
        source = ScriptedSource([record(0x123)])
        bus = Bus(source, BusOptions(bind="127.0.0.1", zeroconf=False,
                                     port=taken.getsockname()[1]))
        with pytest.raises(UsageError) as error:
            Server([bus], ServerOptions()).run()
        assert error.value.exit_code == EXIT_USAGE == 2
        assert "already in use" in str(error.value)
        assert source.opened == 1 and source.closed == 1
    finally:
        taken.close()
    source = ScriptedSource([record(0x123)])
    bus = Bus(source, BusOptions(bind="127.0.0.1", zeroconf=False, port=free_port(),
                                 transmit_flag="--allow-transmit"))
    with pytest.raises(UsageError) as error:
        Server([bus], ServerOptions()).run()
    assert error.value.exit_code == 2 and "cannot transmit" in str(error.value)
    assert source.opened == 0  # refused before the adapter was touched


def test_the_client_limit_flags_reach_the_served_bus():
    """--max-clients-per-host (default 32) and --client-buffer-total from the command line to
    the bus's broadcaster: one host is held to its share while another still gets in."""
    from cancorder.cli import build_parser
    from cancorder.commands import _server_args as sa

    defaults = sa.bus_options(build_parser().parse_args(["serve"]))
    assert (defaults.max_clients_per_host, defaults.client_buffer_total) == (32, 64 << 20)
    args = build_parser().parse_args(["serve", "--bind", "127.0.0.1", "--no-zeroconf",
                                      "--port", str(free_port()), "--max-clients-per-host", "1",
                                      "--client-buffer", "1M", "--client-buffer-total", "2M"])
    both_in = threading.Event()
    source = ScriptedSource([lambda: record(0x7E8) if both_in.wait(10) else b""])
    bus = Bus(source, sa.bus_options(args))
    server = Server([bus], ServerOptions())
    thread, result = run_in_thread(server)
    first = connect(bus)
    deadline = time.monotonic() + 10
    while bus.broadcaster.client_count < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (bus.broadcaster.client_buffer, bus.broadcaster.total_buffer) == (1 << 20, 2 << 20)
    second = connect(bus)  # the same host: over its share
    assert second.recv(10) == b""
    third = socket.socket()
    third.bind(("127.0.0.2", 0))  # another host
    third.settimeout(10)
    third.connect(("127.0.0.1", bus.port))
    while bus.broadcaster.client_count < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bus.broadcaster.client_count == 2 and bus.broadcaster.clients_refused == 1
    both_in.set()
    assert first.recv(100) == record(0x7E8) and third.recv(100) == record(0x7E8)
    server.stop("test")
    thread.join(10)
    for sock in (first, second, third):
        sock.close()
    assert result["code"] == EXIT_OK


def test_the_cli_installs_one_handler_with_the_shared_rate_limit():
    """Issue 10: one handler on the cancorder logger (however often set up), human lines by
    default, and the one rate limit every part shares; sources' records reach it."""
    import io
    import logging

    from cancorder import logs
    from cancorder.logs import HumanHandler, RateLimitFilter

    root = logging.getLogger("cancorder")
    saved = (list(root.handlers), root.level, root.propagate)
    try:
        logs.setup()
        handler = logs.setup()
        assert root.handlers == [handler] and isinstance(handler, HumanHandler)
        assert [type(f) for f in handler.filters] == [RateLimitFilter]
        stream = io.StringIO()
        mine = logs.setup(handler=logging.StreamHandler(stream))
        source_log = logging.getLogger("cancorder.source")
        for _ in range(50):
            source_log.warning("adapter says no", extra={"rate_key": "test"})
        assert root.handlers == [mine]
        assert stream.getvalue().count("adapter says no") == 1  # the other 49 held back
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        root.propagate = saved[2]


def test_a_connection_already_gone_does_not_keep_a_socketcand_client_out():
    """--max-clients counts both protocols. An ECUconnect client that closed on a quiet bus
    (nothing sent to it since, so no failed send says it is gone) must not hold the place a
    socketcand client asks for."""
    from cancorder.cli import build_parser
    from cancorder.commands import _server_args as sa

    scd_port = free_port()
    args = build_parser().parse_args([
        "serve", "--bind", "127.0.0.1", "--no-zeroconf", "--port", str(free_port()),
        "--max-clients", "1", "--socketcand", f"127.0.0.1:{scd_port}", "--no-beacon"])
    bus = Bus(ScriptedSource([]), sa.bus_options(args))
    server = Server([bus], ServerOptions())
    thread, result = run_in_thread(server)
    try:
        gone = connect(bus)
        deadline = time.monotonic() + 10
        while bus.broadcaster.client_count != 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        gone.close()
        time.sleep(0.5)  # the broadcaster's loop sees its EOF
        assert bus.broadcaster.client_count == 1  # half-closed: it may still be reading
        with socket.create_connection(("127.0.0.1", scd_port), timeout=10) as scd:
            assert scd.recv(64) == b"< hi >"
        assert bus.broadcaster.main_clients == 0  # the ECUconnect one was reaped
    finally:
        server.stop("test")
        thread.join(10)
    assert result["code"] == EXIT_OK


def test_each_consumer_builds_itself_from_its_own_flags(tmp_path):
    """The serving flags reach the bus as sink factories (sinks.registry): each consumer reads
    its own flags, checks them at once, and is built from them and the bus when it starts."""
    import logging

    from cancorder.cli import build_parser
    from cancorder.commands import _server_args as sa
    from cancorder.errors import UsageError
    from cancorder.sinks.base import BusInfo
    from cancorder.sinks.printer import FramePrinter
    from cancorder.sinks.recorder import Recorder
    from cancorder.sinks.socketcand import SocketcandServer

    parse = build_parser().parse_args
    paths = [str(tmp_path / "a.log"), str(tmp_path / "b.log")]
    options = sa.bus_options(parse(["serve", "-v", "--socketcand", "127.0.0.1:0",
                                    "--allow-transmit", "--listen-only", "--record", paths[0],
                                    "--record", paths[1]]))
    assert options.transmit_flag == "--allow-transmit" and options.listen_only
    info = BusInfo(name="engine", channel="can0", log_channel="can0", interface="socketcan",
                   bitrate="500000", port=1, txt={"process": "cancorder serve"},
                   source=ScriptedSource([]), log=logging.getLogger("test"), listen_only=True)
    sinks = [make(info, ServerOptions()) for make in options.sinks]
    assert [type(sink) for sink in sinks] == [FramePrinter, SocketcandServer, Recorder, Recorder]
    scd = sinks[1]
    assert (scd.bus_name, scd.bind, scd.port) == ("can0", "127.0.0.1", 0)
    assert scd.transmit_networks is None  # --listen-only wins over --allow-transmit
    assert [sink.options.path for sink in sinks[2:]] == paths
    # no consumer flag, no sink; mock-uds's -v narrates instead of printing frames
    assert sa.bus_options(parse(["serve"])).sinks == []
    assert sa.bus_options(parse(["mock-uds", "-v"])).sinks == []
    with pytest.raises(UsageError, match="--allow-transmit are socketcand options"):
        sa.bus_options(parse(["serve", "--allow-transmit"]))
    with pytest.raises(UsageError, match="--mqtt-spool needs --mqtt URL"):
        sa.bus_options(parse(["serve", "--mqtt-spool", str(tmp_path)]))
