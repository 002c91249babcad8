"""The broadcaster in-process, on the compiled core and its pure-Python twin."""
import socket
import threading
import time

import pytest

from tests.helpers import StreamClient


class Harness:
    def __init__(self, fast, **kwargs):
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        self.events = []
        self.b = fast.broadcast.Broadcaster([listener], log=self._log, **kwargs)
        self.thread = threading.Thread(target=self.b.run, daemon=True)
        self.thread.start()

    def _log(self, level, text):
        self.events.append((level, text))

    def stop(self, drain=2.0):
        self.b.stop(drain)
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def harness(fast):
    made = []

    def make(**kwargs):
        h = Harness(fast, **kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        if h.thread.is_alive():
            h.stop(0)


def records(fast, count, start=0):
    import can

    msgs = [can.Message(timestamp=1.0 + i, arbitration_id=(start + i) % 0x800,
                        is_extended_id=False, data=(start + i).to_bytes(4, "big"))
            for i in range(count)]
    return fast.wire.Packer().pack(msgs)


def test_every_client_gets_every_byte_in_order(fast, harness):
    h = harness()
    clients = [StreamClient(h.port) for _ in range(3)]
    assert h.b.wait_for_clients(3, 5)
    for i in range(200):  # many small hand-overs, coalesced into few sends
        h.b.submit(records(fast, 5, i * 5))
    for c in clients:
        frames = c.wait_frames(1000)
        assert [int.from_bytes(f[3], "big") for f in frames] == list(range(1000))
    h.stop()
    for c in clients:
        assert c.closed.wait(5)  # the server closed it at shutdown: EOF after the last byte
        assert len(c.frames) == 1000 and c.error is None


def test_laggard_is_dropped_and_others_keep_receiving(fast, harness):
    h = harness(client_buffer=64 << 10)
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", h.port))  # never reads
    readers = [StreamClient(h.port) for _ in range(2)]
    assert h.b.wait_for_clients(3, 5)
    chunk = records(fast, 1000)  # 18 kB
    total = 0
    deadline = time.monotonic() + 30
    while not h.b.clients_dropped_lag and time.monotonic() < deadline:
        h.b.submit(chunk)
        total += 1000
        time.sleep(0.002)
    assert h.b.clients_dropped_lag == 1
    for _ in range(50):  # and the stream goes on for the others
        h.b.submit(chunk)
        total += 1000
    for r in readers:
        assert len(r.wait_frames(total)) == total
    dropped = [(level, text) for level, text in h.events if "dropped" in text]
    assert len(dropped) == 1 and dropped[0][0] == "warning"
    dropped = [dropped[0][1]]
    assert "bytes (" in dropped[0] and "behind" in dropped[0] and "65536" in dropped[0]
    assert stalled.getsockname()[1] == int(dropped[0].split()[1].rsplit(":", 1)[1])
    h.stop()
    stalled.close()


def test_closed_client_noticed_and_client_bytes_discarded(fast, harness):
    h = harness()
    chatty = socket.create_connection(("127.0.0.1", h.port))
    reader = StreamClient(h.port)
    assert h.b.wait_for_clients(2, 5)
    chatty.sendall(b"hello, this is ignored" * 100)
    h.b.submit(records(fast, 3))
    reader.wait_frames(3)
    chatty.close()
    deadline = time.monotonic() + 5
    while not any("disconnected" in text for _, text in h.events) and \
            time.monotonic() < deadline:
        time.sleep(0.01)
    assert any("disconnected" in text for _, text in h.events)
    assert h.b.client_count == 1
    h.b.submit(records(fast, 3, 3))
    assert len(reader.wait_frames(6)) == 6
    h.stop()


def test_max_clients_refuses_the_extra_one(fast, harness):
    h = harness(max_clients=1)
    first = StreamClient(h.port)
    assert h.b.wait_for_clients(1, 5)
    second = socket.create_connection(("127.0.0.1", h.port))
    second.settimeout(5)
    assert second.recv(10) == b""  # closed at once
    assert h.b.clients_refused == 1
    h.b.submit(records(fast, 2))
    assert len(first.wait_frames(2)) == 2
    h.stop()
    second.close()


def test_stop_flushes_what_is_queued(fast, harness):
    h = harness(coalesce=0.5)  # a long window: the last batch is still queued at stop
    client = StreamClient(h.port)
    assert h.b.wait_for_clients(1, 5)
    h.b.submit(records(fast, 1))
    client.wait_frames(1)
    h.b.submit(records(fast, 10, 1))  # inside the window: not sent yet
    h.stop()
    assert client.closed.wait(5)
    assert len(client.frames) == 11


def test_wait_drained(fast, harness):
    h = harness()
    client = StreamClient(h.port)
    assert h.b.wait_for_clients(1, 5)
    h.b.submit(records(fast, 100))
    assert h.b.wait_drained(5)
    assert len(client.wait_frames(100)) == 100
    h.stop()


def test_quiet_link_sent_by_submit_itself_busy_link_coalesced(fast, harness):
    """A record after a quiet window goes out inside submit (no hand-over to the loop); one
    right behind it waits for the loop's flush one window later (a long window here, so that
    the test does not depend on the machine's speed)."""
    h = harness(coalesce=2.0)
    client = StreamClient(h.port)
    assert h.b.wait_for_clients(1, 5)
    time.sleep(2.1)  # a window with nothing: the link is quiet
    first, second = records(fast, 3, 0), records(fast, 3, 3)
    h.b.submit(first)
    assert h.b.bytes_sent == len(first)  # already handed to the socket by submit
    h.b.submit(second)
    assert h.b.bytes_sent == len(first)  # queued: the loop sends it when the window ends
    frames = client.wait_frames(6, timeout=10)
    assert [int.from_bytes(f[3], "big") for f in frames] == list(range(6))
    h.stop()


def test_direct_and_coalesced_sends_mixed_keep_order_for_fast_and_slow_clients(fast, harness):
    """Bursts (queued for the loop) and pauses (sent by submit from this thread) mixed, to a
    reading client and to one that reads only at the end (its backlog grows while submit sends
    directly to the others): every client gets every frame once, in order."""
    h = harness()
    fast_clients = [StreamClient(h.port) for _ in range(2)]
    slow = socket.create_connection(("127.0.0.1", h.port))
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    assert h.b.wait_for_clients(3, 5)
    total = 0
    for round_ in range(40):
        for _ in range(20):  # a burst: within one window
            h.b.submit(records(fast, 10, total))
            total += 10
        time.sleep(0.003 if round_ % 2 else 0.0)  # then a quiet link, every other round
    for c in fast_clients:
        frames = c.wait_frames(total, timeout=30)
        assert [int.from_bytes(f[3], "big") for f in frames] == list(range(total))
    from cancorder._fast import wire

    decoder = wire.StreamDecoder()  # the slow one reads only now
    got = []
    slow.settimeout(10)
    while len(got) < total:
        chunk = slow.recv(1 << 16)
        assert chunk, f"the slow client was closed after {len(got)} frames"
        got.extend(decoder.feed(chunk))
    assert [int.from_bytes(f[3], "big") for f in got] == list(range(total))
    slow.close()
    h.stop()
