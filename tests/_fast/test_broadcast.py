"""The broadcaster in-process, on the compiled core and its pure-Python twin."""
import socket
import threading
import time

import pytest

from tests.helpers import StreamClient, wait_until


class Harness:
    def __init__(self, fast, **kwargs):
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        self.events = []
        self.keys = []
        self.b = fast.broadcast.Broadcaster([listener], log=self._log, **kwargs)
        self.thread = threading.Thread(target=self.b.run, daemon=True)
        self.thread.start()

    def _log(self, level, text, rate_key=None):
        self.events.append((level, text))
        self.keys.append(rate_key)

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
    assert "bytes (" in dropped[0] and "behind" in dropped[0] and "65,536" in dropped[0]
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


def test_a_client_gone_while_sent_to_is_disconnected_not_a_failure(fast, harness):
    """A reset met by a send (EPIPE, ECONNRESET) is a normal disconnect: said as a read says
    it, never "send failed"."""
    import struct

    h = harness()
    leaving = socket.create_connection(("127.0.0.1", h.port))
    assert h.b.wait_for_clients(1, 5)
    leaving.shutdown(socket.SHUT_WR)  # its EOF: the core reads no more from it
    time.sleep(0.3)
    leaving.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    leaving.close()  # a reset, which only the next send meets
    deadline = time.monotonic() + 5
    while h.b.client_count and time.monotonic() < deadline:
        h.b.submit(records(fast, 3))
        time.sleep(0.05)
    assert h.b.client_count == 0
    closed = [(level, text) for level, text in h.events if "client 127.0.0.1:" in text and
              " connected (" not in text]
    assert len(closed) == 1, h.events
    assert closed[0][0] == "info" and " disconnected (" in closed[0][1], closed
    assert not any("send failed" in text for _, text in h.events)
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


# ---- hostile and unlucky clients (issue 11; those every protocol shares: test_connections.py) ----

def stalled_client(port, rcvbuf=4096):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    return sock


def test_client_buffer_is_a_hard_bound_and_the_lag_is_real(fast, harness):
    h = harness(client_buffer=256 << 10)
    stalled = stalled_client(h.port)
    assert h.b.wait_for_clients(1, 5)
    chunk = records(fast, 100)
    started = time.monotonic()
    while not h.b.clients_dropped_lag and time.monotonic() - started < 30:
        h.b.submit(chunk)
        time.sleep(0.01)  # ~180 kB/s: the 256 kB bound is passed after more than a second
    assert h.b.clients_dropped_lag == 1
    (text,) = [text for _, text in h.events if "dropped" in text]
    behind = int(text.split(" dropped: ")[1].split(" bytes")[0].replace(",", ""))
    assert behind <= (256 << 10) + len(chunk)  # the backlog never held more than the bound
    seconds = float(text.split(" bytes (")[1].split(" s)")[0])
    assert seconds >= 0.5, text  # the age of the oldest byte owed, not "0.0 s"
    h.b.submit(b"".join([chunk] * 2000))  # one flush far over the bound: dropped, not kept
    stalled.close()
    h.stop()


def test_dead_connections_are_reaped_before_counting(fast, harness):
    """Clients that connect and close at once (some with a reset) do not keep a real client
    out: they are reaped before the new one is counted, on a quiet bus too."""
    h = harness(max_clients=3)
    for k in range(3):
        gone = socket.create_connection(("127.0.0.1", h.port))
        if k == 0:  # a reset instead of a close
            gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        gone.close()
    assert wait_until(lambda: h.b.clients_accepted == 3)
    real = StreamClient(h.port)
    assert wait_until(lambda: h.b.clients_accepted == 4), h.events
    assert h.b.clients_refused == 0
    h.b.submit(records(fast, 5))
    assert len(real.wait_frames(5)) == 5
    h.stop()


class _NoDescriptors(socket.socket):
    """A listener whose accept fails with EMFILE while ``empty`` is set."""

    empty = True
    attempts = 0

    def accept(self):
        _NoDescriptors.attempts += 1
        if _NoDescriptors.empty:
            import errno

            raise OSError(errno.EMFILE, "Too many open files")
        return super().accept()


def test_out_of_descriptors_backs_off_instead_of_spinning(fast):
    _NoDescriptors.attempts, _NoDescriptors.empty = 0, True
    listener = _NoDescriptors(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    events = []
    b = fast.broadcast.Broadcaster([listener], log=lambda *event: events.append(event))
    thread = threading.Thread(target=b.run, daemon=True)
    thread.start()
    waiting = socket.create_connection(("127.0.0.1", port))  # stays in the backlog
    try:
        time.sleep(1.2)
        assert 1 <= _NoDescriptors.attempts <= 5  # not thousands a second
        assert all(key == "accept failed" for _, _, key in events)
        assert "pausing accepts" in events[0][1] and "ulimit -n" in events[0][1]
        _NoDescriptors.empty = False
        assert b.wait_for_clients(1, 5)  # accepting resumes by itself
    finally:
        waiting.close()
        b.stop(0)
        thread.join(10)


def test_connection_churn_is_summarised(fast, harness):
    """500 connects and closes: the lines that reach the log stay bounded (the shared rate
    limit summarises the storm), each client is still counted."""
    import logging

    from cancorder.logs import RateLimitFilter

    h = harness()
    started = time.monotonic()
    for _ in range(500):
        socket.create_connection(("127.0.0.1", h.port)).close()
    assert wait_until(lambda: h.b.clients_accepted == 500, 30)
    elapsed = time.monotonic() - started
    keyed = [key for key in h.keys if key is not None]
    assert len(keyed) >= len(h.keys) - 20 * (elapsed + 2)  # 20 a second, then summarised
    assert len(keyed) > 250
    limit = RateLimitFilter()
    shown = 0
    for (level, text), key in zip(list(h.events), list(h.keys)):
        record = logging.LogRecord("cancorder.bus", logging.INFO, __file__, 0, text, (), None)
        if key is not None:
            record.rate_key = key
        shown += limit.filter(record)
    assert shown <= 20 * (elapsed + 2) + 3 * (elapsed / 5 + 2), (shown, elapsed)


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


def test_the_queue_shared_by_all_clients_is_bounded_when_the_loop_falls_behind(fast):
    """Issue 11 item 2: if the loop does not run, what waits for it stays under
    --client-buffer-total; the excess is counted, and the next flush drops every client."""
    import socket as socket_module

    listener = socket_module.create_server(("127.0.0.1", 0))
    b = fast.broadcast.Broadcaster([listener], client_buffer=4096, total_buffer=8192)
    record = bytes(22)
    b.submit(record)  # an idle link: sent at once (to nobody), and the link is busy now
    for _ in range(1000):  # the loop is not running: everything else waits for it
        b.submit(record)
    assert b.queued_bytes <= 8192
    loop = threading.Thread(target=b.run, daemon=True)
    loop.start()
    deadline = time.monotonic() + 5
    while b.bytes_overflowed == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    b.stop(0.5)
    loop.join(5)
    assert b.bytes_overflowed + b.queued_bytes >= 999 * 22 - 8192
    assert b.bytes_overflowed > 0


def test_nothing_after_an_overflow_reaches_a_client_before_it_is_dropped(fast, harness):
    """Issue 11 item 2: once a batch could not be queued (the loop fell --client-buffer-total
    behind), a smaller batch after it must not be queued either: the clients would receive the
    frames after the hole, then be dropped, never knowing some were missing in between."""
    h = harness(client_buffer=4096, total_buffer=8192, coalesce=1000.0)  # the loop never flushes
    client = StreamClient(h.port)
    assert h.b.wait_for_clients(1, 5)
    h.b.submit(records(fast, 1, 0))  # a quiet link: sent at once; the window is open now
    assert len(client.wait_frames(1)) == 1
    h.b.submit(records(fast, 1, 1))  # queued for the (distant) flush
    h.b.submit(records(fast, 500, 2))  # over --client-buffer-total: cannot be queued
    h.b.submit(records(fast, 1, 502))  # small enough to fit, but after the hole
    h.stop(2.0)  # the stop flushes what is queued, then every client is dropped
    assert client.closed.wait(10)
    assert [int.from_bytes(f[3], "big") for f in client.frames] == [0, 1]
    assert h.b.clients_dropped_lag == 1


def test_a_batch_larger_than_the_total_bound_drops_the_clients_by_itself(fast, harness):
    """A single batch over --client-buffer-total, on a busy link: nothing else is queued, yet
    the clients must still be dropped at once, and a later batch sent on a quiet link must not
    reach them after the hole."""
    h = harness(client_buffer=4096, total_buffer=8192, coalesce=0.05)
    client = StreamClient(h.port)
    assert h.b.wait_for_clients(1, 5)
    h.b.submit(records(fast, 1, 0))  # a quiet link: sent at once; the link is busy now
    h.b.submit(records(fast, 500, 1))  # within the window: for the loop, but over the bound
    assert client.closed.wait(10)  # dropped by the loop's next flush, with nothing queued
    h.b.submit(records(fast, 1, 501))  # a quiet link again
    time.sleep(0.3)
    assert [int.from_bytes(f[3], "big") for f in client.frames] == [0]
    assert h.b.clients_dropped_lag == 1 and h.b.bytes_overflowed > 8192
    h.stop()


def test_a_protocol_encodes_only_for_clients_streaming_it(fast, harness):
    """A second protocol on the core (socketcand's place) costs no encode while none of its
    clients streams: not with nobody connected, not with only ECUconnect clients, not with
    its own client still in its handshake; once one streams, one encode per flush."""
    encoded = []

    class Session:
        def __init__(self, core, client):
            self.core, self.client = core, client

        def feed(self, data):
            if b"go" in data:
                self.core.start_stream(self.client, 0)

    class Counting(fast.broadcast.Protocol):
        name = "counting"
        passthrough = False

        def encode(self, records):
            encoded.append(len(records))
            return (b"<" + records + b">",)

        def connected(self, core, client):
            return Session(core, client)

    h = harness()
    second = socket.create_server(("127.0.0.1", 0))
    h.b.serve([second], Counting())
    for i in range(20):  # nobody connected
        h.b.submit(records(fast, 3, i * 3))
        time.sleep(0.002)
    ecu = StreamClient(h.port)
    assert h.b.wait_for_clients(1, 5)
    for i in range(20):  # an ECUconnect client only
        h.b.submit(records(fast, 3, i * 3))
        time.sleep(0.002)
    assert ecu.wait_frames(60)
    own = socket.create_connection(second.getsockname())
    assert h.b.wait_for_clients(2, 5)
    for i in range(20):  # its own client, not streaming yet
        h.b.submit(records(fast, 3, i * 3))
        time.sleep(0.002)
    assert ecu.wait_frames(120)
    assert encoded == []
    own.sendall(b"go\n")
    batch = records(fast, 3)
    assert wait_until(lambda: (h.b.submit(batch), time.sleep(0.01), encoded)[2], 5)
    own.settimeout(5)
    assert own.recv(1) == b"<"
    flushes = len(encoded)
    assert flushes >= 1 and all(size % len(batch) == 0 for size in encoded)
    own.close()
    h.stop()
