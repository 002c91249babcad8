"""GVRET's binary protocol (SavvyCAN's "Network Connection", ESP32RET and M2RET firmware): frames
from wire records, the device's replies, and a strict reader of the commands a client sends.

The facts, from SavvyCAN's connections/gvretserial.cpp (the client) and ESP32RET's
gvret_comm.cpp (a device); every multi-byte number is little-endian:
- A client switches the device to binary mode with 0xE7 (SavvyCAN sends it twice), then sends
  commands, each 0xF1 and a command byte, some followed by a fixed payload.
- A frame from the bus: ``F1 00 | time(4) | id(4) | len + (bus << 4) | data | 00``; the time is
  the device's microsecond counter, 32 bits, wrapping; bit 31 of the id marks a 29-bit id; the
  last byte is an unused checksum (always 0). A CAN FD frame: ``F1 14 | time(4) | id(4) | len |
  bus | data | 00`` (command 20, as the CAN FD builds of the firmware send it).
- A frame from the client (transmit): ``F1 00 | id(4) | bus | len | data | checksum``.
- Queries and their replies: time sync (01 -> ``F1 01`` time(4)), bus parameters (06 -> ``F1 06``
  enabled + listen-only << 4, bit rate(4), the same for a second bus), device info (07 -> ``F1 07``
  build(2), EEPROM version, file type, auto-log, single-wire mode), keep-alive (09 -> ``F1 09 DE
  AD``; SavvyCAN sends one every 250 ms and gives up after 10 unanswered), number of buses (0C ->
  ``F1 0C`` n), extended buses (0D -> ``F1 0D`` and 15 bytes: none here), digital and analog
  inputs (02, 03: none here, zeros as ESP32RET answers).
- Settings a client may ask for: set up the buses (05: two 32-bit words, bit rate in the low
  20 bits, bit 31 "flags given", 30 enabled, 29 listen-only), digital outputs (04: 1 byte),
  single-wire mode (08: 1 byte), system type (0A: 1 byte), extended buses (0E: 12 bytes).
  SavvyCAN writes a 0 after the set-up commands: a 0 outside a command is taken as padding.

The reader is bounded (a command's payload is at most 71 bytes) and strict: a byte outside a
command that is neither 0xE7, 0xF1 nor padding (ESP32RET's text console, not served), an
unknown command, a length no frame can have, an id out of range: each is an ERROR item, and
the reader waits for the next 0xF1.

Plain Python; gvret.pxd types it and setup.py compiles it. One body for both builds.
"""
try:
    import cython
except ImportError:  # Cython is a build dependency only; the pure twin runs without it
    from . import _nocython as cython

from .wire import FD_LENGTHS, FLAG_EXT, FLAG_FD, MAX_EXTENDED_ID, MAX_STANDARD_ID

BINARY_MODE = 0xE7
START = 0xF1
# command bytes (after 0xF1)
FRAME = 0
TIME_SYNC = 1
DIGITAL_INPUTS = 2
ANALOG_INPUTS = 3
SET_DIGITAL_OUTPUTS = 4
SETUP_BUSES = 5
BUS_PARAMETERS = 6
DEVICE_INFO = 7
SET_SINGLE_WIRE = 8
KEEPALIVE = 9
SET_SYSTEM_TYPE = 10
ECHO_FRAME = 11
NUMBER_OF_BUSES = 12
EXTENDED_BUSES = 13
SETUP_EXTENDED_BUSES = 14
FD_FRAME = 20

#: the payload after the command byte of each setting a client may send (bytes)
SETTING_SIZES = {SET_DIGITAL_OUTPUTS: 1, SETUP_BUSES: 8, SET_SINGLE_WIRE: 1, SET_SYSTEM_TYPE: 1,
                 SETUP_EXTENDED_BUSES: 12}
#: the commands answered from the device's state (no payload)
QUERIES = (TIME_SYNC, DIGITAL_INPUTS, ANALOG_INPUTS, BUS_PARAMETERS, DEVICE_INFO, KEEPALIVE,
           NUMBER_OF_BUSES, EXTENDED_BUSES)
MAX_PAYLOAD = 4 + 1 + 1 + 64 + 1  # a transmitted CAN FD frame: id, bus, len, data, checksum

# Items feed() returns: (kind, ...)
ERROR = 0      # (ERROR, message)
BINARY = 1     # (BINARY,): 0xE7, binary mode from now on
QUERY = 2      # (QUERY, command)
SEND = 3       # (SEND, can_id, flags, data, bus): flags as in the wire records (EXT, FD)
SETTING = 4    # (SETTING, command, payload)
ECHO = 5       # (ECHO, can_id, flags, data, bus): command 11, "show this frame as received"

# the reader's states
_IDLE = 0
_COMMAND = 1
_PAYLOAD = 2
_SKIP = 3  # after an error: up to the next 0xF1 or 0xE7

KEEPALIVE_REPLY = b"\xf1\x09\xde\xad"
EXTENDED_BUSES_REPLY = b"\xf1\x0d" + bytes(15)  # no single-wire CAN, no LIN
DIGITAL_INPUTS_REPLY = b"\xf1\x02\x00\x00"
ANALOG_INPUTS_REPLY = b"\xf1\x03" + bytes(15)
BUILD_NUMBER = 618  # what device info reports: a firmware build SavvyCAN accepts


def time_sync_reply(micros):
    return b"\xf1\x01" + (micros & 0xFFFFFFFF).to_bytes(4, "little")


def bus_parameters_reply(enabled, listen_only, bitrate):
    """The first bus as it is; the second disabled (a GVRET device of one bus)."""
    return b"\xf1\x06" + bytes([(1 if enabled else 0) | (0x10 if listen_only else 0)]) + \
        (bitrate & 0xFFFFFFFF).to_bytes(4, "little") + bytes(5)


def device_info_reply(build=BUILD_NUMBER):
    return b"\xf1\x07" + (build & 0xFFFF).to_bytes(2, "little") + b"\x20\x00\x00\x00"


def number_of_buses_reply(count):
    return b"\xf1\x0c" + bytes([count])


def unit_size(data, pos):
    """The length of the unit a server sends that starts at ``pos`` (a frame, a reply)."""
    command = data[pos + 1]
    if command == FRAME:
        return 12 + (data[pos + 10] & 0x0F)
    if command == FD_FRAME:
        return 13 + data[pos + 10]
    return _REPLY_SIZES[command]


_REPLY_SIZES = {TIME_SYNC: 6, DIGITAL_INPUTS: 4, ANALOG_INPUTS: 17, BUS_PARAMETERS: 12,
                DEVICE_INFO: 8, KEEPALIVE: 4, NUMBER_OF_BUSES: 3, EXTENDED_BUSES: 17}


def rest_of_unit(data, skip):
    """Bytes from ``skip`` to the next unit boundary of ``data`` (which starts on one)."""
    pos = 0
    while pos < skip:
        pos += unit_size(data, pos)
    return pos - skip


class FrameEncoder:
    """Turns bytes of wire records into GVRET frames, once per batch, as bus ``bus``.

    ``encode(records)`` returns the frames: classic ones as command 0, CAN FD ones as command
    20. ``frames``/``fd_frames`` count what was encoded.
    """

    def __init__(self, bus=0):
        self.frames = 0
        self.fd_frames = 0
        self.bus = bus
        self._out = bytearray(8192)
        self._ext, self._fd = FLAG_EXT, FLAG_FD

    def encode(self, records):
        size = len(records)
        # a record of 14 + n bytes makes a frame of at most 13 + n
        need = size + 64
        if len(self._out) < need:
            self._out = bytearray(need)
        out_buf = self._out
        if cython.compiled:
            p = cython.cast(cython.p_uchar, cython.cast(bytes, records))
            out = cython.cast(cython.p_uchar, out_buf)
        else:
            p = records
            out = out_buf
        ext = self._ext
        fd = self._fd
        bus = self.bus
        o = 0
        pos = 0
        while pos + 14 <= size:
            flags = p[pos + 12]
            n = p[pos + 13]
            if pos + 14 + n > size:
                break  # a cut record cannot come from a source; never read past the end
            out[o] = 0xF1
            out[o + 1] = 20 if flags & fd else 0
            # the low 32 bits of the microseconds, little-endian: GVRET's wrapping counter
            out[o + 2] = p[pos + 7]
            out[o + 3] = p[pos + 6]
            out[o + 4] = p[pos + 5]
            out[o + 5] = p[pos + 4]
            out[o + 6] = p[pos + 11]
            out[o + 7] = p[pos + 10]
            out[o + 8] = p[pos + 9]
            out[o + 9] = p[pos + 8] | (0x80 if flags & ext else 0)
            if flags & fd:
                out[o + 10] = n
                out[o + 11] = bus
                o += 12
                self.fd_frames += 1
            else:
                out[o + 10] = n | (bus << 4)
                o += 11
            k = 0
            while k < n:
                out[o + k] = p[pos + 14 + k]
                k += 1
            o += n
            out[o] = 0  # the checksum GVRET devices leave at 0
            o += 1
            self.frames += 1
            pos += 14 + n
        return (bytes(out_buf[:o]),)


class CommandReader:
    """Feed bytes a client sent; get complete commands back as tuples (see the kinds above).

    Memory is bounded by MAX_PAYLOAD whatever the client sends. ``errors`` counts the ERROR
    items handed out, ``commands`` the others.
    """

    def __init__(self):
        self.errors = 0
        self.commands = 0
        self._buf = bytearray()
        self._state = _IDLE
        self._command = 0
        self._need = 0  # payload bytes the current command takes (frames: known once len came)

    @property
    def pending(self):
        return len(self._buf)

    def feed(self, data):
        items = []
        size = len(data)
        if cython.compiled:
            p = cython.cast(cython.p_uchar, cython.cast(bytes, data))
        else:
            p = data
        buf = self._buf
        i = 0
        while i < size:
            c = p[i]
            state = self._state
            if state == _PAYLOAD:
                take = self._need - len(buf)
                if take > size - i:
                    take = size - i
                buf += data[i:i + take]
                i += take
                if len(buf) < self._need:
                    break
                self._payload_done(items)
                continue
            i += 1
            if state == _IDLE or state == _SKIP:
                if c == START:
                    self._state = _COMMAND
                elif c == BINARY_MODE:
                    self._state = _IDLE
                    self.commands += 1
                    items.append((BINARY,))
                elif state == _IDLE and c != 0:
                    self._state = _SKIP
                    self._error(items, f"byte {c:02X} outside a command (the text console is "
                                       "not served: send E7 for binary mode, then F1 commands)")
            else:  # _COMMAND
                self._start(c, items)
        return items

    def _start(self, command, items):
        self._command = command
        del self._buf[:]
        if command == FRAME or command == ECHO_FRAME:
            self._need = 6  # id, bus, len: then the data and the checksum
            self._state = _PAYLOAD
        elif command in SETTING_SIZES:
            self._need = SETTING_SIZES[command]
            self._state = _PAYLOAD
        elif command in QUERIES:
            self._state = _IDLE
            self.commands += 1
            items.append((QUERY, command))
        else:
            self._state = _SKIP
            self._error(items, f"unknown command {command:02X}")

    def _payload_done(self, items):
        buf = self._buf
        command = self._command
        if command != FRAME and command != ECHO_FRAME:
            self._state = _IDLE
            self.commands += 1
            items.append((SETTING, command, bytes(buf)))
            del buf[:]
            return
        n = buf[5]
        if self._need == 6:  # the header came: now the data and the checksum
            if n > 64:
                self._state = _SKIP
                del buf[:]
                self._error(items, f"frame of {n} data bytes (at most 64)")
                return
            self._need = 6 + n + 1
            return
        self._state = _IDLE
        item = _frame(bytes(buf), command)
        del buf[:]
        if item[0] == ERROR:
            self.errors += 1
        else:
            self.commands += 1
        items.append(item)

    def _error(self, items, message):
        self.errors += 1
        items.append((ERROR, message))


def _frame(buf, command):
    """id(4) bus len data checksum -> (SEND or ECHO, can_id, flags, data, bus), or ERROR."""
    raw = buf[0] | (buf[1] << 8) | (buf[2] << 16) | (buf[3] << 24)
    bus = buf[4]
    n = buf[5]
    flags = 0
    can_id = raw & 0x7FFFFFFF
    if raw & 0x80000000:
        flags = FLAG_EXT
        if can_id > MAX_EXTENDED_ID:
            return (ERROR, f"29-bit id {can_id:X} out of range (remote and error frames cannot "
                           "be sent)")
    elif can_id > MAX_STANDARD_ID:
        return (ERROR, f"11-bit id {can_id:X} out of range (bit 31 marks a 29-bit id)")
    if n > 8:
        if n not in FD_LENGTHS:
            return (ERROR, f"{n} data bytes is not a CAN FD length (0-8, 12, 16, 20, 24, 32, "
                           "48, 64)")
        flags |= FLAG_FD
    return (SEND if command == FRAME else ECHO, can_id, flags, buf[6:6 + n], bus)
