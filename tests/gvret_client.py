"""A GVRET client for the tests, written from the protocol facts and not from cancorder's code:
its parser walks the states of SavvyCAN's (connections/gvretserial.cpp, procRXChar: IDLE,
GET_COMMAND, BUILD_CAN_FRAME, BUILD_FD_FRAME, TIME_SYNC, GET_CANBUS_PARAMS, GET_DEVICE_INFO,
GET_NUM_BUSES, GET_EXT_BUSES, validation), and it connects as SavvyCAN's deviceConnected()
does. It is stricter than SavvyCAN: a byte between units must be a frame's 0 checksum.
"""
import socket
import struct
import time

#: what SavvyCAN sends on connect: binary mode twice, number of buses, bus parameters, device
#: info, time sync, validation (then extended buses, once the number of buses came)
SAVVYCAN_CONNECT = bytes.fromhex("E7E7 F10C F106 F107 F101 F109")
EXTENDED_BUSES = bytes.fromhex("F10D")
KEEPALIVE = bytes.fromhex("F109")

# the payload after F1 <command> of each reply a device sends (frames: see feed)
_REPLY_PAYLOAD = {0x01: 4, 0x02: 2, 0x03: 15, 0x06: 10, 0x07: 6, 0x09: 2, 0x0C: 1, 0x0D: 15}


class Frame(tuple):
    """(time, can_id, extended, bus, data, fd): time is the device's 32-bit microseconds."""

    def __new__(cls, *fields):
        return super().__new__(cls, fields)


class GvretParser:
    """Bytes from a GVRET device in, events out: ("frame", Frame), ("time", micros),
    ("params", (enabled, listen_only, bitrate), (enabled1, listen_only1, bitrate1)),
    ("info", build, single_wire), ("validated",), ("buses", n), ("extended", 15 bytes),
    ("inputs", code, payload)."""

    def __init__(self):
        self.state = "idle"
        self.command = None
        self.unit = bytearray()
        self.need = 0
        self.after_frame = False  # a frame's checksum byte is due

    def feed(self, data):
        events = []
        for byte in data:
            self._byte(byte, events)
        return events

    def _byte(self, c, events):
        if self.state == "idle":
            if self.after_frame:
                self.after_frame = False
                assert c == 0, f"checksum byte {c:02X} after a frame (GVRET devices send 0)"
                return
            assert c == 0xF1, f"byte {c:02X} between units"
            self.state = "command"
            return
        if self.state == "command":
            self.command = c
            self.unit = bytearray()
            if c == 0x00:
                self.need = 9  # time(4) id(4) len|bus<<4: then the data
            elif c == 0x14:
                self.need = 10  # time(4) id(4) len bus
            else:
                assert c in _REPLY_PAYLOAD, f"unknown reply F1 {c:02X}"
                self.need = _REPLY_PAYLOAD[c]
            self.state = "payload"
            return
        self.unit.append(c)
        if len(self.unit) == 9 and self.command == 0x00:
            self.need = 9 + (c & 0x0F)
        if len(self.unit) == 10 and self.command == 0x14:
            self.need = 10 + self.unit[8]
        if len(self.unit) < self.need:
            return
        self.state = "idle"
        events.append(self._event(bytes(self.unit)))

    def _event(self, unit):
        command = self.command
        if command in (0x00, 0x14):
            micros, raw = struct.unpack_from("<II", unit)
            fd = command == 0x14
            if fd:
                n, bus, data = unit[8], unit[9], unit[10:]
            else:
                n, bus, data = unit[8] & 0x0F, unit[8] >> 4, unit[9:]
            assert len(data) == n
            self.after_frame = True
            return ("frame", Frame(micros, raw & 0x7FFFFFFF, bool(raw >> 31), bus, data, fd))
        if command == 0x01:
            return ("time", struct.unpack("<I", unit)[0])
        if command == 0x06:
            return ("params", (unit[0] & 0x0F, unit[0] >> 4, struct.unpack_from("<I", unit, 1)[0]),
                    (unit[5] & 0x0F, unit[5] >> 4, struct.unpack_from("<I", unit, 6)[0]))
        if command == 0x07:
            return ("info", struct.unpack_from("<H", unit)[0], unit[5])
        if command == 0x09:
            return ("validated",)
        if command == 0x0C:
            return ("buses", unit[0])
        if command == 0x0D:
            return ("extended", unit)
        return ("inputs", command, unit)


def transmit_command(can_id, extended, data, bus=0):
    """A frame to send, as SavvyCAN's piSendFrame writes it (a trailing 0 checksum)."""
    raw = can_id | (0x80000000 if extended else 0)
    return b"\xf1\x00" + struct.pack("<I", raw) + bytes([bus & 3, len(data)]) + data + b"\x00"


class GvretClient:
    """A TCP connection to a GVRET device; ``connect_like_savvycan`` performs the handshake."""

    def __init__(self, port, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.parser = GvretParser()
        self.events = []
        self.received = bytearray()

    def send(self, data):
        self.sock.sendall(data)

    def read(self, timeout=1.0):
        """Read what arrives within ``timeout`` (False at EOF)."""
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return True
        if not chunk:
            return False
        self.received += chunk
        self.events += self.parser.feed(chunk)
        return True

    def wait(self, predicate, timeout=10.0, what="events"):
        deadline = time.monotonic() + timeout
        while not predicate(self.events):
            assert time.monotonic() < deadline, f"no {what} within {timeout} s: {self.events}"
            if not self.read(0.2):
                assert predicate(self.events), f"closed before {what}: {self.events}"

    def connect_like_savvycan(self):
        """SavvyCAN's connect: the handshake, then extended buses once the bus count came;
        returns the replies by kind."""
        self.send(SAVVYCAN_CONNECT)
        self.wait(lambda events: any(e[0] == "buses" for e in events), what="the bus count")
        self.send(EXTENDED_BUSES)
        kinds = {"buses", "params", "info", "time", "validated", "extended"}
        self.wait(lambda events: kinds <= {e[0] for e in events}, what="every reply")
        return {e[0]: e for e in self.events if e[0] in kinds}

    def frames(self):
        return [e[1] for e in self.events if e[0] == "frame"]

    def wait_frames(self, count, timeout=20.0):
        self.wait(lambda events: sum(e[0] == "frame" for e in events) >= count, timeout,
                  f"{count} frames")
        return self.frames()

    def close(self):
        self.sock.close()
