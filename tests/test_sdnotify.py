"""sd_notify: datagrams on the socket $NOTIFY_SOCKET names (a path or @abstract)."""
import os
import socket
import uuid

import pytest

from cancorder.sdnotify import Notifier


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request, tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        name = str(tmp_path / "notify")
        sock.bind(name)
    else:
        name = "@cancorder-test-" + uuid.uuid4().hex
        sock.bind("\0" + name[1:])
    sock.settimeout(5)
    yield name, sock
    sock.close()


def test_messages_arrive_in_order(notify_socket):
    name, sock = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": name})
    assert notifier.enabled
    notifier.ready("serving 2 buses")
    notifier.status("1,234 frames/s")
    notifier.watchdog()
    notifier.stopping()
    got = [sock.recv(4096).decode() for _ in range(4)]
    assert got == ["READY=1\nSTATUS=serving 2 buses", "STATUS=1,234 frames/s", "WATCHDOG=1",
                   "STOPPING=1"]
    notifier.close()


def test_without_systemd_nothing_happens():
    notifier = Notifier({})
    assert not notifier.enabled and not notifier.ready() and notifier.watchdog_interval is None
    assert not Notifier({"NOTIFY_SOCKET": "relative"}).enabled


def test_watchdog_interval_is_half_of_watchdog_usec(notify_socket):
    name, _ = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "3000000"})
    assert notifier.watchdog_interval == 1.5
    assert notifier.watchdog_due(now=100.0)
    notifier.watchdog(now=100.0)
    assert not notifier.watchdog_due(now=101.0) and notifier.watchdog_due(now=101.6)
    # the watchdog is meant for another process
    other = Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "3000000",
                      "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog_interval is None


def test_a_vanished_socket_never_raises(tmp_path):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.ready() is False and notifier.failures == 1


def test_status_every_few_seconds_with_frames_per_second(notify_socket):
    """ServiceMonitor.tick (the server's main loop) sends STATUS= with the rate of frames."""
    import types

    from cancorder import supervision
    from cancorder.sources.base import SourceCounters

    name, sock = notify_socket
    counters = SourceCounters(frames=0)
    bus = types.SimpleNamespace(
        name="a", up=True, finished=False, crash=None, heartbeat=None, reopens=0,
        last_frame=None, sinks=[], source=types.SimpleNamespace(counters=lambda: counters),
        broadcaster=types.SimpleNamespace(main_clients=3, bytes_sent=0, clients_dropped_lag=0))
    monitor = supervision.ServiceMonitor([bus], notifier=Notifier({"NOTIFY_SOCKET": name}))
    monitor.ready()
    assert sock.recv(4096).decode().startswith("READY=1\nSTATUS=1/1 buses up, 0 frames/s")
    start = monitor._last_status
    counters.frames = 50000
    monitor.tick(now=start + 1.0)  # too early: nothing
    monitor.tick(now=start + supervision.STATUS_INTERVAL)
    assert sock.recv(4096).decode() == "STATUS=1/1 buses up, 10,000 frames/s, 3 clients"
    bus.up = False
    bus.down_reason, bus.down_since = "connection lost", start
    monitor.tick(now=start + 2 * supervision.STATUS_INTERVAL)
    assert sock.recv(4096).decode().startswith(
        'STATUS=0/1 buses up, 0 frames/s, 3 clients; bus "a" down: connection lost, for ')
    bus.up, bus.broadcaster.main_clients = True, 1
    monitor.tick(now=start + 3 * supervision.STATUS_INTERVAL)
    assert sock.recv(4096).decode() == "STATUS=1/1 buses up, 0 frames/s, 1 client"  # issue 11
