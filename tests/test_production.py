"""Several buses in one process, watched by systemd and Prometheus (in process, fake and emulated
sources); the service as a process (serve --config) at the end."""
import errno
import json
import os
import socket
import threading
import time
import uuid

import can
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cancorder._fast import wire
from cancorder.sdnotify import Notifier
from cancorder.server import Bus, BusOptions, Server, ServerOptions
from cancorder.sources.base import Source
from cancorder.sources.slcan import SlcanSource
from tests.emulators.slcan_adapter import SlcanEmulator, slcan_line
from tests.helpers import free_port, http_get


# ---- helpers ----

class RunningServer:
    """A Server run in a thread (no signal handlers there); stop() returns its exit code."""

    def __init__(self, buses, **options):
        self.server = Server(buses, ServerOptions(**options))
        self.code = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        self.code = self.server.run()

    def wait_serving(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(bus.broadcaster is not None and bus.port for bus in self.server.buses) \
                    and all(t.is_alive() for bus in self.server.buses for t in bus._threads[:1]):
                return
            time.sleep(0.02)
        raise TimeoutError("the server did not start")

    def stop(self):
        self.server.stop("test")
        self._thread.join(30)
        assert not self._thread.is_alive()
        return self.code


class Client:
    """An ECUconnect client that decodes in a thread."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.frames = []
        self.bytes = 0
        self._decoder = wire.StreamDecoder()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError:
                return
            if not chunk:
                return
            self.bytes += len(chunk)
            self.frames.extend(self._decoder.feed(chunk))

    def wait_frames(self, count, timeout=20):
        deadline = time.monotonic() + timeout
        while len(self.frames) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return len(self.frames)

    def close(self):
        self.sock.close()
        self._thread.join(5)


def slcan_bus(emu, name, **options):
    source = SlcanSource(emu.url, bitrate=500000)
    return Bus(source, BusOptions(name=name, bind="127.0.0.1", port=None, zeroconf=False,
                                  **options))


def numbered(start, count):
    """SLCAN lines of 29-bit frames whose payload is their sequence number."""
    return b"".join(slcan_line(can.Message(arbitration_id=i % 0x20000000, is_extended_id=True,
                                           data=i.to_bytes(8, "big")))
                    for i in range(start, start + count))


def sequence_of(frames):
    return [int.from_bytes(data, "big") for _, _, _, data in frames]


def wait_clients(bus, count, timeout=10):
    deadline = time.monotonic() + timeout
    while bus.broadcaster.client_count < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bus.broadcaster.client_count == count


def metric(text, name, **labels):
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise KeyError(f"{name}{labels} not on the page")


def wait_until(condition, timeout=20, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def emulators():
    made = []

    def make():
        emu = SlcanEmulator()
        made.append(emu)
        return emu

    yield make
    for emu in made:
        emu.close()


# ---- several buses ----

def test_one_bus_unplugged_the_other_sees_no_gap(emulators):
    a, b = emulators(), emulators()
    running = RunningServer([slcan_bus(a, "a"), slcan_bus(b, "b")])
    try:
        running.wait_serving()
        bus_a, bus_b = running.server.buses
        clients_b = [Client(bus_b.port) for _ in range(2)]
        client_a = Client(bus_a.port)
        wait_clients(bus_b, 2)
        wait_clients(bus_a, 1)
        b.wait_open()
        a.wait_open()
        a.send_lines(numbered(0, 100))
        sent = 0
        for step in range(40):  # 2 s of traffic on b while a is unplugged and comes back
            b.send_lines(numbered(sent, 250))
            sent += 250
            if step == 5:
                a.drop(refuse_for=1.0)
            time.sleep(0.05)
        for client in clients_b:
            assert client.wait_frames(sent) == sent
            assert sequence_of(client.frames) == list(range(sent))  # in order, no gap
        wait_until(lambda: bus_a.up and bus_a.reopens == 1, what="bus a reopened")
        a.wait_open()
        a.send_lines(numbered(100, 100))
        assert client_a.wait_frames(200) == 200
        assert sequence_of(client_a.frames) == list(range(200))
        assert bus_b.reopens == 0 and bus_b.up
    finally:
        code = running.stop()
    assert code == 0


# ---- metrics and health ----

def test_metrics_counters_equal_what_a_client_received(emulators):
    emu = emulators()
    running = RunningServer([slcan_bus(emu, "engine")], metrics=("127.0.0.1", 0))
    try:
        running.wait_serving()
        bus = running.server.buses[0]
        client = Client(bus.port)
        wait_clients(bus, 1)
        emu.wait_open()
        remote = can.Message(arbitration_id=0x10, is_remote_frame=True, dlc=2)
        emu.send_lines(numbered(0, 700) + slcan_line(remote) * 3 + b"t12\r"
                      + numbered(700, 300))
        assert client.wait_frames(1000) == 1000
        port = running.server.monitor.metrics.port
        wait_until(lambda: metric(http_get(port, "/metrics")[1], "cancorder_frames_sent_total",
                                  bus="engine") == 1000, what="the counter")
        status, page = http_get(port, "/metrics")
        assert status == 200
        assert metric(page, "cancorder_bytes_sent_total", bus="engine") == client.bytes
        assert client.bytes == sum(wire.HEADER_SIZE + len(f[3]) for f in client.frames)
        assert metric(page, "cancorder_frames_received_total", bus="engine") == 1000 + 3 + 1
        assert metric(page, "cancorder_frames_skipped_total", bus="engine", kind="remote") == 3
        assert metric(page, "cancorder_frames_skipped_total", bus="engine", kind="garbage") == 1
        assert metric(page, "cancorder_clients_connected", bus="engine") == 1
        assert metric(page, "cancorder_adapter_up", bus="engine") == 1
        assert 0 <= metric(page, "cancorder_seconds_since_last_frame", bus="engine") < 30
        assert metric(page, "process_open_fds") > 0
    finally:
        client.close()
        assert running.stop() == 0


def test_recording_bytes_files_errors_on_the_metrics_page(emulators, tmp_path):
    """Issue 13's recording metrics, from a real --record (two of them on one bus: their sum):
    bytes equal to the files on disk, files, frames, errors."""
    from cancorder.logfiles.rotation import RecordOptions
    from cancorder.sinks.recorder import Recorder

    emu = emulators()
    paths = [str(tmp_path / "a.log"), str(tmp_path / "b.log")]
    recorders = [lambda bus, server_options, path=path: Recorder(RecordOptions(path))
                 for path in paths]
    running = RunningServer([slcan_bus(emu, "engine", sinks=recorders)],
                            metrics=("127.0.0.1", 0))
    try:
        running.wait_serving()
        emu.wait_open()
        emu.send_lines(numbered(0, 500))
        port = running.server.monitor.metrics.port

        def on_disk():
            return sum(os.path.getsize(p + ".part") for p in paths if os.path.exists(p + ".part"))

        def page_matches():
            page = http_get(port, "/metrics")[1]
            try:
                return (metric(page, "cancorder_recording_frames", bus="engine") == 2 * 500
                        and metric(page, "cancorder_recording_bytes", bus="engine") ==
                        on_disk() > 0)
            except KeyError:  # scraped before the bus's recorders were up: not yet
                return False

        wait_until(page_matches, what="the recording metrics")  # flushed within a second
        page = http_get(port, "/metrics")[1]
        assert metric(page, "cancorder_recording_files", bus="engine") == 2
        assert metric(page, "cancorder_recording_errors", bus="engine") == 0
        assert metric(page, "cancorder_recording_lost_frames", bus="engine") == 0
        # the disk fills under the first recording: one error, its frames counted as lost
        first = running.server.buses[0].sinks[0]._rotating

        def disk_full(finish=False):  # the file takes the frames, the disk none of them
            raise OSError(errno.ENOSPC, "No space left on device")

        first._file.disk.flush = disk_full
        emu.send_lines(numbered(500, 100))

        def after_the_failure():
            page = http_get(port, "/metrics")[1]
            return (metric(page, "cancorder_recording_errors", bus="engine") == 1
                    and metric(page, "cancorder_recording_lost_frames", bus="engine") == 100
                    and metric(page, "cancorder_recording_frames", bus="engine") == 500 + 600
                    and metric(page, "cancorder_recording_bytes", bus="engine")
                    == os.path.getsize(paths[0]) + on_disk())

        wait_until(after_the_failure, what="the failed write counted")
    finally:
        assert running.stop() == 0


def test_healthz_503_while_an_adapter_is_unplugged(emulators):
    a, b = emulators(), emulators()
    running = RunningServer([slcan_bus(a, "powertrain"), slcan_bus(b, "body")],
                            metrics=("127.0.0.1", 0))
    try:
        running.wait_serving()
        a.wait_open()
        port = running.server.monitor.metrics.port
        assert http_get(port, "/healthz") == (200, "ok: 2 buses up\n")
        a.drop(refuse_for=3.0)
        wait_until(lambda: http_get(port, "/healthz")[0] == 503, what="503")
        status, line = http_get(port, "/healthz")
        assert line.startswith('bus "powertrain" down: ') and line.count("\n") == 1, line
        page = http_get(port, "/metrics")[1]
        assert metric(page, "cancorder_adapter_up", bus="powertrain") == 0
        assert metric(page, "cancorder_adapter_up", bus="body") == 1
        wait_until(lambda: http_get(port, "/healthz")[0] == 200, timeout=30, what="200 again")
        page = http_get(port, "/metrics")[1]
        assert metric(page, "cancorder_adapter_reopens_total", bus="powertrain") == 1
        assert metric(page, "cancorder_adapter_up", bus="powertrain") == 1
    finally:
        assert running.stop() == 0


# ---- sd_notify and the watchdog ----

class HangingSource(Source):
    """Gives a frame now and then; ``hang`` makes read block as a wedged library would."""

    def __init__(self):
        super().__init__()
        self.hang = threading.Event()
        self.release = threading.Event()

    @property
    def description(self):
        return "a source that can hang"

    def open(self):
        pass

    def _read(self, timeout):
        if self.hang.is_set():
            self.release.wait()
            return b""
        time.sleep(min(timeout, 0.02))
        return b""

    def close(self):
        self.release.set()


@pytest.fixture
def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = "@cancorder-test-" + uuid.uuid4().hex
    sock.bind("\0" + name[1:])
    sock.settimeout(0.2)
    yield name, sock
    sock.close()


def received(sock, seconds):
    messages = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            messages.append((time.monotonic(), sock.recv(4096).decode()))
        except socket.timeout:
            pass
    return messages


def test_notify_ready_status_watchdog_stopping_and_the_watchdog_stops_on_a_hang(notify_socket):
    name, sock = notify_socket
    source = HangingSource()
    notifier = Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "400000"})  # ping every 0.2 s
    bus = Bus(source, BusOptions(name="stuck", bind="127.0.0.1", zeroconf=False))
    running = RunningServer([bus], notifier=notifier, stuck_after=1.0)
    try:
        before = received(sock, 2.0)
        kinds = [m.split("\n")[0].split("=")[0] for _, m in before]
        assert kinds[0] == "READY", before
        assert kinds.count("WATCHDOG") >= 4, before  # about 10 in 2 s
        assert before[0][1].startswith("READY=1\nSTATUS=1/1 buses up, 0 frames/s, 0 clients")
        source.hang.set()
        hung_at = time.monotonic()
        after = received(sock, 3.0)
        pings = [t for t, m in after if m == "WATCHDOG=1"]
        # pings stop within stuck_after (1 s) plus a tick, and do not come back
        assert pings == [] or max(pings) - hung_at < 2.0, after
        assert pings == [] or all(t - hung_at < 2.0 for t in pings)
    finally:
        source.release.set()
        source.hang.clear()
        code = running.stop()
    rest = received(sock, 0.5)
    assert any(m.startswith("STOPPING=1") for _, m in rest), rest
    assert code == 0


# ---- the service as a process ----

def test_serve_config_as_a_service_process(cancorder_process, emulators, tmp_path):
    """serve --config: two buses, metrics, JSON logs, notify; SIGTERM ends it with 0."""
    from tests.helpers import StreamClient, cancorder_env

    a, b = emulators(), emulators()
    port_a, port_b, metrics_port = free_port(), free_port(), free_port()
    path = tmp_path / "car.toml"
    path.write_text(f"""
log_format = "json"
zeroconf = false
bind = "127.0.0.1"
metrics = "127.0.0.1:{metrics_port}"
[[bus]]
name = "powertrain"
source = "slcan"
channel = "{a.url}"
port = {port_a}
[[bus]]
name = "body"
source = "slcan"
channel = "{b.url}"
bitrate = 250000
port = {port_b}
filter = "100~7FF"
""")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = str(tmp_path / "notify")
    notify.bind(notify_path)
    notify.settimeout(30)
    try:
        proc = cancorder_process("serve", "--config", str(path),
                                 env=cancorder_env(NOTIFY_SOCKET=notify_path))
        ready = notify.recv(4096).decode()
        assert ready.startswith("READY=1\nSTATUS=2/2 buses up"), ready
        client_a, client_b = StreamClient(port_a), StreamClient(port_b)
        a.wait_open()
        b.wait_open()
        assert "S5" in b.commands and "S6" in a.commands  # 250k and the default 500k
        wait_until(lambda: http_get(metrics_port, "/metrics")[0] == 200, what="metrics")
        page = http_get(metrics_port, "/metrics")[1]
        wait_until(lambda: metric(http_get(metrics_port, "/metrics")[1],
                                  "cancorder_clients_connected", bus="body") == 1
                   and metric(http_get(metrics_port, "/metrics")[1],
                              "cancorder_clients_connected", bus="powertrain") == 1,
                   what="both clients")
        a.send_lines(numbered(0, 500))
        b.send_lines(numbered(0x100, 1) + numbered(0x101, 9))  # id 100 filtered out on body
        assert sequence_of(client_a.wait_frames(500)) == list(range(500))
        assert sequence_of(client_b.wait_frames(9)) == list(range(0x101, 0x10A))
        page = http_get(metrics_port, "/metrics")[1]
        assert metric(page, "cancorder_frames_sent_total", bus="powertrain") == 500
        assert metric(page, "cancorder_frames_skipped_total", bus="body", kind="filtered") == 1
        assert http_get(metrics_port, "/healthz") == (200, "ok: 2 buses up\n")
        assert proc.terminate() == 0
        messages = []
        notify.settimeout(2)
        try:
            while True:
                messages.append(notify.recv(4096).decode())
        except socket.timeout:
            pass
        assert any(m.startswith("STOPPING=1") for m in messages), messages
        client_a.close()
        client_b.close()
    finally:
        notify.close()
    lines = [json.loads(line) for line in proc.lines]  # every line is one JSON object
    assert {"time", "level", "bus", "event", "message", "fields"} <= set(lines[0])
    serving = [line for line in lines if line["message"].startswith("serving ")]
    assert sorted(line["bus"] for line in serving) == ["body", "powertrain"]
    totals = [line for line in lines if line["message"].startswith("totals: ")]
    assert sorted(line["bus"] for line in totals) == ["body", "powertrain"]


def test_config_check_builds_each_source_and_names_the_bus_in_its_errors(tmp_path):
    from tests.helpers import ROOT, cancorder_env
    import subprocess
    import sys

    path = tmp_path / "c.toml"
    path.write_text('[[bus]]\nname = "x"\nsource = "slcan"\nchannel = "socket://127.0.0.1:9"\n'
                    '[[bus]]\nname = "sim"\nsource = "mock-uds"\nseed = 3\n')
    done = subprocess.run([sys.executable, "-m", "cancorder", "serve", "--config", str(path),
                           "--check"], cwd=ROOT, env=cancorder_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "# slcan" in done.stdout and "socket://127.0.0.1:9" in done.stdout
    path.write_text('[[bus]]\nname = "x"\nsource = "slcan"\nchannel = "socket://127.0.0.1:9"\n'
                    'data_bitrate = 2000000\n')
    done = subprocess.run([sys.executable, "-m", "cancorder", "serve", "--config", str(path),
                           "--check"], cwd=ROOT, env=cancorder_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == f'error: config {path}, bus "x": --data-bitrate needs --fd\n'


def test_a_crashing_bus_ends_the_service_with_exit_1(cancorder_process, emulators, tmp_path):
    """What systemd's Restart=on-failure relies on: a source bug is exit 1, never 0."""
    from tests.helpers import ROOT, cancorder_env

    a, b = emulators(), emulators()
    path = tmp_path / "car.toml"
    path.write_text(f'zeroconf = false\nbind = "127.0.0.1"\nsource = "slcan"\n'
                    f'[[bus]]\nname = "good"\nchannel = "{a.url}"\n'
                    f'[[bus]]\nname = "buggy"\nchannel = "{b.url}"\n')
    env = cancorder_env(CANCORDER_FAKE_SLCAN_CRASH=b.url)
    env["PYTHONPATH"] = os.path.join(ROOT, "tests", "fakes") + os.pathsep + env["PYTHONPATH"]
    proc = cancorder_process("serve", "--config", str(path), env=env)
    proc.wait_for("serving slcan channel " + b.url)
    b.wait_open()
    b.send_lines(numbered(0, 5))
    assert proc.proc.wait(30) == 1
    proc.wait_for(r"failed unexpectedly: RuntimeError: the fake driver fell over")


def test_a_bus_that_cannot_open_is_named_in_the_error():
    """With several buses, the one line of a bus that fails to open says which bus it is."""
    from cancorder.errors import SourceInitError

    class Unpluggable(HangingSource):
        def open(self):
            raise SourceInitError("cannot open slcan channel /dev/ttyACM0: no such device")

    buses = [Bus(HangingSource(), BusOptions(name="good", bind="127.0.0.1", zeroconf=False)),
             Bus(Unpluggable(), BusOptions(name="body", bind="127.0.0.1", zeroconf=False))]
    with pytest.raises(SourceInitError) as caught:
        Server(buses, ServerOptions()).run()
    assert str(caught.value) == ('bus "body": cannot open slcan channel /dev/ttyACM0: no such '
                                 "device")
    assert caught.value.exit_code == 1
    alone = Bus(Unpluggable(), BusOptions(name="body", bind="127.0.0.1", zeroconf=False))
    with pytest.raises(SourceInitError, match=r"^cannot open slcan"):  # one bus: as before
        Server([alone], ServerOptions()).run()
