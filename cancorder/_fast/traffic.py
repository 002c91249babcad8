"""Test traffic whose every frame can be checked at the other end (``cancorder gen``), and the
payload layouts that ``dump --check`` verifies: the one home of both.

Data modes, as mcangen (the CANcorder clients' generator) fills them, so that a CANcorder
quality panel, mcandump and cancorder read the same frames the same way:

- ``random``: random bytes; ``zero``: 00 bytes; ``ones``: FF bytes;
- ``counter``: one byte, the frame's number modulo 256, in every byte of the payload;
- ``sequence``: 8 bytes, the frame's number as a 64-bit big-endian value (from 0);
- ``quality-test`` (the CANcorder quality-test protocol): bytes 0-1 the marker CA FE, 2-3 a
  16-bit big-endian sequence number, 4-5 the milliseconds since the start as a 16-bit
  big-endian value, 6 the test id, 7 the XOR of bytes 0-6. Its CAN FD variant (longer than 8
  bytes; mcangen sends classic CAN only, so this part is cancorder's): the same 8 bytes, then
  byte i (8 and up) is ``(sequence + i) & 0xFF``, so a checker sees any changed byte.

Sequence and quality-test frames carry 8 bytes (FD quality-test frames: their length).

The generator is seeded (xorshift64*, as fast compiled as a C loop): the same seed, the same
frames. Plain Python: traffic.pxd types it and setup.py compiles it with Cython when it can.
"""
try:
    import cython
except ImportError:  # Cython is a build dependency only; the pure twin runs without it
    from . import _nocython as cython

from .wire import FD_LENGTHS, FLAG_BRS, FLAG_EXT, FLAG_FD, HEADER_SIZE

if not cython.compiled:  # compiled, traffic.pxd cimports them: C calls
    from .wire import put_header, write_hex, write_hex_digits

DATA_MODES = ("random", "zero", "ones", "counter", "sequence", "quality-test")
ID_KINDS = ("standard", "extended", "mixed")
ID_MODES = ("random", "sequential")
QUALITY_MARKER = b"\xca\xfe"
#: the length of sequence and classic quality-test payloads
CHECKED_LENGTH = 8
_MASK64 = 0xFFFFFFFFFFFFFFFF
_MODE_CODES = {name: code for code, name in enumerate(DATA_MODES)}
_MULTIPLIER = 0x2545F4914F6CDD1D
_UPPER_HEX = b"0123456789ABCDEF"
#: the SLCAN DLC digit of a CAN FD length over 8 (12 -> 9 ... 64 -> F)
_FD_DLC = {12: 9, 16: 10, 20: 11, 24: 12, 32: 13, 48: 14, 64: 15}
#: the longest SLCAN line: kind, 8 id digits, DLC, 128 data digits, CR
_LINE_MAX = 1 + 8 + 1 + 128 + 1


def quality_payload(sequence, millis, test_id, length=8):
    """The quality-test payload of one frame (``length`` over 8: the CAN FD variant)."""
    head = bytearray(8)
    head[0], head[1] = 0xCA, 0xFE
    head[2], head[3] = (sequence >> 8) & 0xFF, sequence & 0xFF
    head[4], head[5] = (millis >> 8) & 0xFF, millis & 0xFF
    head[6] = test_id & 0xFF
    xor = 0
    for k in range(7):
        xor ^= head[k]
    head[7] = xor
    for k in range(8, length):
        head.append((sequence + k) & 0xFF)
    return bytes(head)


def read_quality(data):
    """(sequence, millis, test_id) of a quality-test payload, or (None, why) when it is not
    one or is damaged: a wrong marker, a wrong checksum, a changed CAN FD tail byte."""
    n = len(data)
    if n < 8:
        return None, f"{n} bytes, not 8"
    if data[0] != 0xCA or data[1] != 0xFE:
        return None, f"marker {data[0]:02X} {data[1]:02X}, not CA FE"
    xor = 0
    for k in range(7):
        xor ^= data[k]
    if xor != data[7]:
        return None, f"checksum {data[7]:02X}, not {xor:02X}"
    sequence = (data[2] << 8) | data[3]
    for k in range(8, n):
        if data[k] != (sequence + k) & 0xFF:
            return None, f"byte {k} is {data[k]:02X}, not {(sequence + k) & 0xFF:02X}"
    return (sequence, (data[4] << 8) | data[5], data[6]), None


def read_sequence(data):
    """The 64-bit sequence number of a ``sequence`` payload, or None (not 8 bytes)."""
    if len(data) != 8:
        return None
    return int.from_bytes(data, "big")


class FrameMaker:
    """Makes the frames of one ``gen`` run, in order: ids, lengths and payloads from the
    seed. The next ``n`` frames come out as wire records (``records``: their timestamps and,
    for quality-test, their milliseconds since the start), as SLCAN lines (``slcan_lines``),
    or as (id, flags, data) (``frames``): whichever an output writes, in one compiled loop."""

    def __init__(self, seed, data_mode="random", id_kind="standard", id_mode="random",
                 id_min=0, id_max=0x7FF, exact_id=None, length_min=0, length_max=8, fd=False,
                 brs=False, test_id=0):
        self._state = (seed * 0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D) & _MASK64 or 1
        self._mode = _MODE_CODES[data_mode]
        self._kind = ID_KINDS.index(id_kind)
        self._sequential = id_mode == "sequential"
        self._id_min, self._id_max = id_min, id_max
        self._exact = exact_id if exact_id is not None else -1
        self._fd, self._brs = fd, brs
        self._test_id = test_id
        self.sent = 0  # frames made so far: the next frame's number
        if data_mode in ("sequence", "quality-test") and not (fd and data_mode == "quality-test"):
            length_min = length_max = CHECKED_LENGTH
        lengths = [n for n in (FD_LENGTHS if fd else range(9)) if length_min <= n <= length_max]
        self._lengths = bytes(lengths)
        self._nlengths = len(lengths)
        self._data = bytearray(64)
        self._id = 0
        self._flags = 0

    def _next(self):
        """xorshift64*: the next 64 random bits."""
        mask = _MASK64
        x = self._state
        x ^= x >> 12
        x ^= (x << 25) & mask
        x ^= x >> 27
        self._state = x
        multiplier = _MULTIPLIER
        return (x * multiplier) & mask

    def _fill(self, millis):
        """Make the next frame: its id and flags in ``_id``/``_flags``, its payload in
        ``_data``; returns its length."""
        number = self.sent
        if self._exact >= 0:
            can_id = self._exact
            extended = can_id > 0x7FF or self._kind == 1
        else:
            extended = self._kind == 1 or (self._kind == 2 and (self._next() & 1) == 1)
            low = self._id_min
            high = self._id_max
            if extended:
                if low < 0x800:
                    low = 0x800  # an extended id above 7FF cannot be taken for a standard one
            elif high > 0x7FF:
                high = 0x7FF
            if self._sequential:
                can_id = low + number % (high - low + 1)
            else:
                can_id = low + self._next() % (high - low + 1)
        if self._nlengths == 1:
            n = self._lengths[0]
        else:
            n = self._lengths[self._next() % self._nlengths]
        flags = FLAG_EXT if extended else 0
        if self._fd:
            flags |= FLAG_FD
            if self._brs:
                flags |= FLAG_BRS
        if cython.compiled:
            p = cython.cast(cython.p_uchar, self._data)
        else:
            p = self._data
        mode = self._mode
        k = 0
        if mode == 0:  # random
            while k < n:
                bits = self._next()
                j = 0
                while j < 8 and k < n:
                    p[k] = bits & 0xFF
                    bits >>= 8
                    k += 1
                    j += 1
        elif mode <= 3:  # zero, ones, counter
            byte = 0 if mode == 1 else 0xFF if mode == 2 else number & 0xFF
            while k < n:
                p[k] = byte
                k += 1
        elif mode == 4:  # sequence: 64-bit big-endian
            while k < 8:
                p[k] = (number >> (56 - 8 * k)) & 0xFF
                k += 1
        else:  # quality-test
            sequence = number & 0xFFFF
            p[0] = 0xCA
            p[1] = 0xFE
            p[2] = sequence >> 8
            p[3] = sequence & 0xFF
            p[4] = (millis >> 8) & 0xFF
            p[5] = millis & 0xFF
            p[6] = self._test_id
            p[7] = 0xCA ^ 0xFE ^ p[2] ^ p[3] ^ p[4] ^ p[5] ^ p[6]
            k = 8
            while k < n:
                p[k] = (sequence + k) & 0xFF
                k += 1
        self.sent = number + 1
        self._id = can_id
        self._flags = flags
        return n

    def frames(self, n, millis):
        """The next ``n`` frames as (id, flags, data); ``millis[k]``: frame k's milliseconds
        since the start."""
        out = []
        for k in range(n):
            length = self._fill(millis[k])
            out.append((self._id, self._flags, bytes(self._data[:length])))
        return out

    def records(self, n, stamps_us, millis):
        """The next ``n`` frames packed as wire records, stamped ``stamps_us[k]``."""
        buf = bytearray(n * (HEADER_SIZE + 64))
        if cython.compiled:
            out = cython.cast(cython.p_uchar, buf)
            src = cython.cast(cython.p_uchar, self._data)
        else:
            out = buf
            src = self._data
        pos = 0
        for k in range(n):
            length = self._fill(millis[k])
            pos = put_header(out, pos, stamps_us[k], self._id, self._flags, length)
            j = 0
            while j < length:
                out[pos + j] = src[j]
                j += 1
            pos += length
        if cython.compiled:
            return PyBytes_FromStringAndSize(cython.cast(cython.p_char, out), pos)
        return bytes(buf[:pos])

    def slcan_lines(self, n, millis):
        """The next ``n`` frames as the lines an SLCAN adapter sends for them: t/T (classic),
        d/D (CAN FD), b/B (CAN FD with BRS), id, DLC digit, data, CR."""
        buf = bytearray(n * _LINE_MAX)
        if cython.compiled:
            out = cython.cast(cython.p_uchar, buf)
            src = cython.cast(cython.p_uchar, self._data)
            hexd = cython.cast(cython.p_uchar, cython.cast(bytes, _UPPER_HEX))
        else:
            out = buf
            src = self._data
            hexd = _UPPER_HEX
        o = 0
        for k in range(n):
            length = self._fill(millis[k])
            flags = self._flags
            kind = 0x74  # t
            if flags & FLAG_FD:
                kind = 0x62 if flags & FLAG_BRS else 0x64  # b, d
            if flags & FLAG_EXT:
                kind -= 0x20  # upper case
            out[o] = kind
            o = write_hex_digits(out, o + 1, self._id, 8 if flags & FLAG_EXT else 3, hexd)
            if length <= 8:
                out[o] = hexd[length]
            else:
                out[o] = hexd[_FD_DLC[length]]
            o = write_hex(out, o + 1, src, 0, length, hexd)
            out[o] = 0x0D
            o += 1
        if cython.compiled:
            return PyBytes_FromStringAndSize(cython.cast(cython.p_char, out), o)
        return bytes(buf[:o])
