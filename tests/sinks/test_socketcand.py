"""The socketcand server in process, with a fake source: the protocol as clients see it,
transmit permissions, hostile clients, laggards."""
import ipaddress
import socket
import threading
import time

import types

import pytest

from cancorder import access
from cancorder._fast.broadcast import Broadcaster
from cancorder.sinks import socketcand
from cancorder._fast.wire import pack_frame
from cancorder.errors import TransmitError, UsageError
from cancorder.sources.base import Source
from tests.helpers import wait_until


class FakeSource(Source):
    can_transmit = True

    def __init__(self, fail=False, fd=False):
        super().__init__()
        self.sent = []
        self.fail = fail
        self.fd = fd  # a bus open in CAN FD mode

    description = "fake bus"

    def open(self):
        pass

    def _read(self, timeout):
        return b""

    def close(self):
        pass

    def send(self, can_id, flags, data):
        if self.fail:
            raise TransmitError("fake bus: the adapter said no")
        self.sent.append((can_id, flags, bytes(data)))


class Peer:
    """A hand-written socketcand client that reads elements."""

    def __init__(self, port, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def element(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while b">" not in self.buf:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed (had {self.buf!r})")
            self.buf += chunk
        end = self.buf.index(b">") + 1
        item, self.buf = self.buf[:end], self.buf[end:]
        return item

    def elements(self, count, timeout=10.0):
        return [self.element(timeout) for _ in range(count)]

    def closed(self, timeout=10.0):
        """True once the server closed the connection (what it still sent is read away)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True
            if not chunk:
                return True
            self.buf += chunk
        return False

    def open_raw(self, bus="can0", mode=b"< rawmode >"):
        assert self.element() == b"< hi >"
        self.send(f"< open {bus} >".encode())
        assert self.element() == b"< ok >"
        self.send(mode)
        assert self.element() == b"< ok >"
        return self

    def close(self):
        self.sock.close()


class Served:
    """A SocketcandServer as a bus runs it: on a connection core of its own (no ECUconnect
    listener), records handed to the core."""

    def __init__(self, server, core, log):
        self.server = server
        self.core = core
        self.log = log

    def put(self, records):
        self.core.submit(records)

    def drained(self):
        return self.core.wait_drained(0)

    def sessions(self):
        return [client.session for client in list(self.server.service.clients.values())]

    @property
    def client_count(self):
        return len(self.server.service.clients)

    @property
    def clients_accepted(self):
        return self.server.service.accepted

    @property
    def clients_dropped_lag(self):
        return self.server.service.dropped_lag

    def __getattr__(self, name):
        return getattr(self.server, name)


@pytest.fixture
def make_server():
    served = []

    def make(client_buffer=4 << 20, **kwargs):
        kwargs.setdefault("bind", "127.0.0.1")
        kwargs.setdefault("port", 0)
        kwargs.setdefault("beacon", False)
        log = []

        def log_event(level, text, rate_key=None):
            log.append((level, text))

        core = Broadcaster([], client_buffer=client_buffer, log=log_event)
        allow = kwargs.get("allow")
        if allow:  # as a bus does: --allow is checked by the core for every protocol
            core.admit = lambda address: None if access.peer_allowed(address, allow) \
                else "outside --allow " + ", ".join(str(n) for n in allow)
        thread = threading.Thread(target=core.run, daemon=True)
        thread.start()
        server = socketcand.SocketcandServer(kwargs.pop("bus_name", "can0"), log=log_event,
                                             **kwargs)
        bus = types.SimpleNamespace(
            serve=lambda listeners, protocol: (core, core.serve(listeners, protocol)),
            log=None, source=None)
        server.start(bus)
        served.append((server, core, thread))
        return Served(server, core, log)

    yield make
    for server, core, thread in served:
        core.stop(1.0)
        thread.join(5)
        server.close(1.0)


def wait(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def frames(count, start=0):
    return b"".join(pack_frame(1_700_000_000_000_000 + i, i & 0x7FF, 0, i.to_bytes(4, "big"))
                    for i in range(start, start + count))


def test_session_as_socketcand_speaks_it(make_server):
    server = make_server()
    peer = Peer(server.port)
    assert peer.element() == b"< hi >"
    peer.send(b"< rawmode >")  # before open: an error, the connection stays
    assert peer.element() == b"< error open a bus first (open BUS) >"
    peer.send(b"< open can0 >")
    assert peer.element() == b"< ok >"
    peer.send(b"< echo >")
    assert peer.element() == b"< echo >"
    server.put(frames(1))  # not in raw mode yet: nothing for this client
    wait(server.drained)
    time.sleep(0.05)
    peer.send(b"< rawmode >")
    assert peer.element() == b"< ok >"
    time.sleep(socketcand.RAWMODE_GRACE + 0.1)
    server.put(pack_frame(23_424242, 0x123, 0, bytes.fromhex("1A220344")))
    server.put(pack_frame(1_700_000_000_000_001, 0x1AAAAAAA, 1, b""))
    assert peer.elements(2) == [b"< frame 123 23.424242 1A220344 >",
                                b"< frame 1AAAAAAA 1700000000.000001  >"]
    peer.send(b"< bcmmode >")
    assert peer.element() == b"< ok >"
    server.put(frames(1))
    peer.send(b"< echo >")
    assert peer.element() == b"< echo >"  # no frame came before it


def test_wrong_bus_name_gets_an_error_and_is_closed(make_server):
    server = make_server(bus_name="socket://127.0.0.1:5000")
    peer = Peer(server.port)
    assert peer.element() == b"< hi >"
    peer.send(b"< open can0 >")
    assert peer.element() == b"< error could not open bus: open socket://127.0.0.1:5000 >"
    assert peer.closed()
    good = Peer(server.port).open_raw("socket://127.0.0.1:5000")
    good.send(b"< echo >")
    assert good.element() == b"< echo >"


def test_frames_held_during_the_rawmode_grace_come_after_the_ok(make_server):
    server = make_server()
    peer = Peer(server.port)
    assert peer.element() == b"< hi >"
    peer.send(b"< open can0 >")
    assert peer.element() == b"< ok >"
    peer.send(b"< rawmode >")
    wait(lambda: any(s.state == "raw" for s in server.sessions()))
    server.put(frames(3))  # inside the grace: held, not lost
    first = peer.sock.recv(6)
    assert first == b"< ok >"
    time.sleep(0.02)
    assert peer.elements(3)[0].startswith(b"< frame 000 ")


def test_fd_frames_only_to_clients_that_asked(make_server):
    server = make_server()
    classic = Peer(server.port).open_raw()
    fd = Peer(server.port).open_raw(mode=b"< rawmode fd >")
    time.sleep(socketcand.RAWMODE_GRACE + 0.1)
    server.put(pack_frame(1, 0x100, 0, b"\x01") + pack_frame(2, 0x101, 2 | 4, bytes(12))
               + pack_frame(3, 0x102, 0, b"\x02"))
    assert fd.elements(3) == [b"< frame 100 0.000001 01 >",
                              b"< fdframe 101 0.000002 " + b"00" * 12 + b" >",
                              b"< frame 102 0.000003 02 >"]
    assert classic.elements(2) == [b"< frame 100 0.000001 01 >", b"< frame 102 0.000003 02 >"]


def test_transmit_is_off_by_default(make_server):
    source = FakeSource()
    server = make_server(source=source)
    peer = Peer(server.port).open_raw()
    peer.send(b"< send 123 2 1 f1 >")
    assert peer.element() == b"< error transmit disabled >"
    peer.send(b"< echo >")
    assert peer.element() == b"< echo >"
    assert source.sent == [] and server.transmit_refused == 1


def test_transmit_allowed_reaches_the_source_and_is_counted(make_server):
    source = FakeSource(fd=True)
    server = make_server(source=source, allow_transmit=True)
    peer = Peer(server.port).open_raw()
    peer.send(b"< send 123 2 1 f1 >< send 1AAAAAAA 0 >< sendfd 7e0 12 "
              + b"1 " * 12 + b">< send 9aaaaaaa 1 ff >")
    wait(lambda: len(source.sent) == 4)
    assert source.sent == [(0x123, 0, b"\x01\xf1"), (0x1AAAAAAA, 1, b""),
                           (0x7E0, 2, b"\x01" * 12), (0x1AAAAAAA, 1, b"\xff")]
    assert server.transmitted == 4 and server.stats()["transmitted"] == 4
    assert any("transmitted 123#01F1 from 127.0.0.1:" in text for _, text in server.log)


def test_a_bus_opens_by_its_channel_and_by_its_name(make_server):
    server = make_server(bus_name="socket://127.0.0.1:5000", aliases=("can0",))
    for name in ("can0", "socket://127.0.0.1:5000"):
        peer = Peer(server.port).open_raw(name)
        peer.send(b"< echo >")
        assert peer.element() == b"< echo >"
        peer.close()
    peer = Peer(server.port)
    assert peer.element() == b"< hi >"
    peer.send(b"< open vcan0 >")
    assert peer.element() == b"< error could not open bus: open socket://127.0.0.1:5000 or " \
                             b"can0 >"
    assert any("asked for bus 'vcan0'; this server has 'socket://127.0.0.1:5000' or 'can0'" in
               text for _, text in server.log)
    with pytest.raises(UsageError, match="--name"):
        socketcand.SocketcandServer("COM 8", beacon=False)


def warnings_of(served):
    return [text for level, text in served.log if level == "warning"]


def test_refused_transmits_say_why_and_name_the_flag(make_server):
    server = make_server(source=FakeSource())
    peer = Peer(server.port).open_raw()
    peer.send(b"< send 123 2 1 f1 >")
    assert peer.element() == b"< error transmit disabled >"
    assert wait_until(lambda: warnings_of(server))  # the reply is sent first, then the line
    warnings = warnings_of(server)
    assert len(warnings) == 1 and "transmit of 123#01F1 refused: transmit is off: serve with " \
        "--allow-transmit" in warnings[0]
    outside = make_server(source=FakeSource(), allow_transmit=True,
                          allow=[ipaddress.ip_network("127.0.0.0/8")])
    outside.server.transmit_networks = [ipaddress.ip_network("10.0.0.0/8")]  # may connect
    peer = Peer(outside.port).open_raw()
    peer.send(b"< send 123 0 >")
    assert peer.element() == b"< error transmit disabled >"
    assert wait_until(lambda: warnings_of(outside))
    warnings = warnings_of(outside)  # not the log's last line: the core thread logs "connected"
    assert len(warnings) == 1 and "127.0.0.1 is outside the networks allowed to transmit " \
        "(10.0.0.0/8): add it with --allow" in warnings[0]


def test_fd_frame_for_a_classic_bus_is_refused_before_the_source(make_server):
    source = FakeSource()
    server = make_server(source=source, allow_transmit=True)
    peer = Peer(server.port).open_raw()
    peer.send(b"< sendfd 123 8 " + b"1 " * 8 + b">< send 7e0 12 " + b"2 " * 12 + b">")
    assert peer.elements(2) == [
        b"< error transmit refused: a CAN FD frame (8 bytes) on a bus not opened in CAN FD "
        b"mode (serve it with --fd) >",
        b"< error transmit refused: a CAN FD frame (12 bytes) on a bus not opened in CAN FD "
        b"mode (serve it with --fd) >"]
    peer.send(b"< send 123 1 5 >")
    wait(lambda: len(source.sent) == 1)
    assert source.sent == [(0x123, 0, b"\x05")]
    assert (server.transmit_refused, server.transmit_failed, server.transmitted) == (2, 0, 1)


def test_transmit_failure_is_reported_to_the_client(make_server):
    server = make_server(source=FakeSource(fail=True), allow_transmit=True)
    peer = Peer(server.port).open_raw()
    peer.send(b"< send 123 0 >")
    assert peer.element() == b"< error transmit failed: fake bus: the adapter said no >"
    assert server.transmit_failed == 1


def test_listen_only_wins_over_allow_transmit(make_server):
    source = FakeSource()
    server = make_server(source=source, allow_transmit=True, listen_only=True)
    peer = Peer(server.port).open_raw()
    peer.send(b"< send 123 0 >")
    assert peer.element() == b"< error transmit disabled >"
    assert source.sent == []
    assert "--listen-only wins" in server.log[0][1]


def test_transmit_needs_the_peer_inside_allow(make_server):
    source = FakeSource()
    # allowed to connect (127.0.0.1 is inside), but transmit is only for peers inside --allow:
    # without --allow that is this machine; a given --allow replaces it
    server = make_server(source=source, allow_transmit=True,
                         allow=[ipaddress.ip_network("10.0.0.0/8")])
    assert server.transmit_networks == [ipaddress.ip_network("10.0.0.0/8")]
    peer = Peer(server.port)
    assert peer.closed()  # outside --allow: closed before any byte
    assert peer.buf == b""
    assert "outside --allow 10.0.0.0/8" in server.log[-1][1]
    assert source.sent == []


def test_peer_allowed_handles_v4_mapped_and_v6():
    nets = access.parse_networks(["192.168.1.0/24", "fd00::/8"])
    assert access.peer_allowed(("192.168.1.7", 1), nets)
    assert access.peer_allowed(("::ffff:192.168.1.7", 1, 0, 0), nets)
    assert access.peer_allowed(("fd00::5", 1, 0, 0), nets)
    assert not access.peer_allowed(("127.0.0.1", 1), nets)
    assert access.peer_allowed(("127.0.0.1", 1), [])
    with pytest.raises(UsageError, match="--allow 300.1.1.1/8: expected a network"):
        access.parse_networks(["300.1.1.1/8"])


def test_bus_name_must_be_one_printable_word():
    with pytest.raises(UsageError, match="one word of printable ASCII"):
        socketcand.SocketcandServer("my bus")


def test_bad_commands_close_the_client_others_unaffected(make_server):
    server = make_server()
    good = Peer(server.port).open_raw()
    bad = Peer(server.port).open_raw()
    bad.send(b"< send 12g 0 >< send 123 5 1 >< frobnicate >< open can0 >garbage")
    replies = bad.elements(socketcand.MAX_ERRORS)
    assert all(r.startswith(b"< error ") for r in replies)
    assert bad.closed()
    assert server.clients_closed_errors == 1
    server.put(frames(100))
    got = good.elements(100)
    assert got[-1].startswith(b"< frame 063 ")


def test_endless_line_and_a_flood_of_garbage_are_bounded(make_server):
    server = make_server()
    good = Peer(server.port).open_raw()
    endless = Peer(server.port)
    flood = Peer(server.port)
    for peer, chunk in ((endless, b"< send " + b"1" * 65536), (flood, b"\xff" * 65536)):
        sent = 0
        try:
            while sent < 64 << 20:  # 64 MB each, or until the server closed it
                peer.sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        assert sent < 32 << 20, "a hostile client was not closed early"  # kernel buffers
        assert peer.closed()
    assert server.clients_closed_errors == 2
    for session in server.sessions():
        assert session.reader.pending <= 512
    server.put(frames(10))
    assert len(good.elements(10)) == 10


def test_thousands_of_opens_and_connections(make_server):
    server = make_server()
    good = Peer(server.port).open_raw()
    spammer = Peer(server.port)
    try:
        spammer.send(b"< open can0 >" * 5000)
    except OSError:
        pass
    assert spammer.closed()  # "already open" counts as a bad command
    for _ in range(300):  # connect, open, go: nothing accumulates
        peer = Peer(server.port)
        peer.send(b"< open can0 >")
        peer.close()
    # every connection is taken (a loaded machine may still hold some in the listen backlog
    # when the client is done); a few of the storm may find 32 from this host not yet seen
    # closing: those are refused by --max-clients-per-host, never lost or kept
    def refused():
        return [text for _, text in server.log if "refused" in text]

    wait(lambda: server.clients_accepted + len(refused()) == 302 and server.client_count == 1)
    server.put(frames(5))
    assert len(good.elements(5)) == 5
    assert all("--max-clients-per-host 32" in text for text in refused()), refused()[:3]
    assert len(refused()) < 100


def test_a_client_that_never_reads_is_dropped_the_others_get_everything(make_server):
    server = make_server(client_buffer=256 << 10)
    stalled = Peer(server.port).open_raw()
    good = Peer(server.port).open_raw()
    time.sleep(socketcand.RAWMODE_GRACE + 0.1)
    total = 300_000  # about 12 MB of lines: more than the kernel buffers of the stalled one
    counted = []

    def count_frames():
        seen = good.buf.count(b">")
        good.sock.settimeout(30)
        while seen < total:
            chunk = good.sock.recv(1 << 20)
            if not chunk:
                break
            seen += chunk.count(b">")
        counted.append(seen)

    reader = threading.Thread(target=count_frames)
    reader.start()
    for start in range(0, total, 1000):
        server.put(frames(1000, start))
        time.sleep(0.001)
    reader.join(60)
    assert counted == [total]
    wait(lambda: server.clients_dropped_lag == 1)
    assert any("dropped:" in text and "--client-buffer" in text for _, text in server.log)
    stalled.close()


def test_beacon_datagram_names_the_bus_and_url():
    datagrams = socketcand.beacon_datagrams("can0", "127.0.0.1", 29536, "cancorder serve")
    assert datagrams, "no IPv4 address found for 127.0.0.1"
    target, payload = datagrams[0]
    assert target == "127.255.255.255"
    import xml.etree.ElementTree as ET

    root = ET.fromstring(payload.decode())
    assert root.tag == "CANBeacon" and root.attrib["type"] == "SocketCAN"
    assert root.find("URL").text == "can://127.0.0.1:29536"
    assert [bus.attrib["name"] for bus in root.findall("Bus")] == ["can0"]


class SavvyCanClient:
    """SavvyCAN's socketcand connection (connections/socketcand.cpp), as it behaves: each read
    is compared whole ("< hi >", then "< ok >" to the open), then "< rawmode >"; frame lines
    are split on spaces, the id read as hex (above 7FF: 29-bit), the data two digits a byte;
    frames go out as ``< send ID LEN DATA >`` with the id's bit 31 marking 29 bits, LEN in
    decimal and each byte through Qt's ``QString::number(int, 16)`` of a signed char."""

    def __init__(self, port, bus, qt5):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.qt5 = qt5
        assert self.sock.recv(4096) == b"< hi >"  # one read, exactly: else "did not greet"
        self.sock.sendall(f"< open {bus} >".encode())
        assert self.sock.recv(4096) == b"< ok >"
        self.sock.sendall(b"< rawmode >")
        first = self.sock.recv(4096)
        assert first.startswith(b"< ok >"), first
        self.pending = first[len(b"< ok >"):].decode()

    def _signed_hex(self, value, bits):
        if value < 1 << (bits - 1):
            return f"{value:x}"
        negative = value - (1 << bits)
        return f"{negative & ((1 << 64) - 1):x}" if self.qt5 else f"-{-negative:x}"

    def send(self, can_id, extended, data):
        ident = (can_id | (1 << 31)) if extended else can_id
        text = f"< send {self._signed_hex(ident, 32)} {len(data)} "
        text += "".join(self._signed_hex(byte, 8) + " " for byte in data) + ">"
        self.sock.sendall(text.encode())

    def frames(self, count):
        got = []
        while len(got) < count:
            while ">" not in self.pending:
                self.pending += self.sock.recv(65536).decode()
            line, self.pending = self.pending.split(">", 1)
            parts = line.replace("<", " ").split()
            assert parts[0] == "frame", line
            can_id = int(parts[1], 16)
            data = bytes.fromhex(parts[3]) if len(parts) == 4 else b""
            got.append((can_id, can_id > 0x7FF, float(parts[2]), data))
        return got

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("qt5", [False, True], ids=["qt6", "qt5"])
def test_a_savvycan_style_client_receives_and_transmits(make_server, qt5):
    source = FakeSource()
    server = make_server(source=source, allow_transmit=True)
    client = SavvyCanClient(server.port, "can0", qt5)
    time.sleep(socketcand.RAWMODE_GRACE + 0.1)
    server.put(pack_frame(1_700_000_000_250_000, 0x18DA10F1, 1, b"\x02\x10\x03")
               + pack_frame(1_700_000_000_500_000, 0x7E8, 0, bytes.fromhex("0641008000FF80")))
    assert client.frames(2) == [(0x18DA10F1, True, 1_700_000_000.25, b"\x02\x10\x03"),
                                (0x7E8, False, 1_700_000_000.5,
                                 bytes.fromhex("0641008000FF80"))]
    client.send(0x18DA10F1, True, b"\x02\x10\x83")
    client.send(0x7E0, False, bytes.fromhex("0322F190FF807F00"))
    client.send(0x123, False, b"")
    wait(lambda: len(source.sent) == 3)
    assert source.sent == [(0x18DA10F1, 1, b"\x02\x10\x83"),
                           (0x7E0, 0, bytes.fromhex("0322F190FF807F00")), (0x123, 0, b"")]
    assert server.clients_closed_errors == 0 and server.transmit_refused == 0
    client.close()
