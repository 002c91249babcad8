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

from .wire import FD_LENGTHS, FLAG_BRS, FLAG_EXT, FLAG_FD, HEADER_SIZE, write_header

DATA_MODES = ("random", "zero", "ones", "counter", "sequence", "quality-test")
ID_KINDS = ("standard", "extended", "mixed")
ID_MODES = ("random", "sequential")
QUALITY_MARKER = b"\xca\xfe"
#: the length of sequence and classic quality-test payloads
CHECKED_LENGTH = 8
_MASK64 = 0xFFFFFFFFFFFFFFFF
_MODE_CODES = {name: code for code, name in enumerate(DATA_MODES)}


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
    seed. ``records(n, stamps_us, millis)`` packs the next ``n`` frames as wire records
    (their timestamps and, for quality-test, their milliseconds since the start);
    ``frames(n, millis)`` gives them as (id, flags, data) for the outputs that write lines."""

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

    def _next(self):
        """xorshift64*: the next 64 random bits."""
        x = self._state
        x ^= x >> 12
        x ^= (x << 25) & _MASK64
        x ^= x >> 27
        self._state = x
        return (x * 0x2545F4914F6CDD1D) & _MASK64

    def _below(self, span):
        """A random whole number in [0, span)."""
        return self._next() % span

    def _frame_id(self, number):
        """(id, extended) of frame ``number``."""
        if self._exact >= 0:
            return self._exact, self._exact > 0x7FF or self._kind == 1
        extended = self._kind == 1 or (self._kind == 2 and (self._next() & 1) == 1)
        low, high = self._id_min, self._id_max
        if extended:
            if low < 0x800:
                low = 0x800  # an extended id above 7FF cannot be taken for a standard one
        elif high > 0x7FF:
            high = 0x7FF
        if self._sequential:
            return low + number % (high - low + 1), extended
        return low + self._below(high - low + 1), extended

    def _payload(self, number, n, millis):
        mode = self._mode
        if mode == 0:  # random
            data = bytearray(n)
            k = 0
            while k < n:
                bits = self._next()
                for _ in range(8):
                    if k == n:
                        break
                    data[k] = bits & 0xFF
                    bits >>= 8
                    k += 1
            return bytes(data)
        if mode == 1:
            return bytes(n)
        if mode == 2:
            return b"\xff" * n
        if mode == 3:
            return bytes((number & 0xFF,)) * n
        if mode == 4:
            return (number & _MASK64).to_bytes(8, "big")
        return quality_payload(number & 0xFFFF, millis & 0xFFFF, self._test_id, n)

    def frames(self, n, millis):
        """The next ``n`` frames as (id, flags, data); ``millis[k]``: frame k's milliseconds
        since the start."""
        out = []
        lengths = self._lengths
        for k in range(n):
            number = self.sent
            can_id, extended = self._frame_id(number)
            length = lengths[0] if len(lengths) == 1 else lengths[self._below(len(lengths))]
            flags = FLAG_EXT if extended else 0
            if self._fd:
                flags |= FLAG_FD | (FLAG_BRS if self._brs else 0)
            out.append((can_id, flags, self._payload(number, length, millis[k])))
            self.sent = number + 1
        return out

    def records(self, n, stamps_us, millis):
        """The next ``n`` frames packed as wire records, stamped ``stamps_us[k]``."""
        frames = self.frames(n, millis)
        size = 0
        for frame in frames:
            size += HEADER_SIZE + len(frame[2])
        buf = bytearray(size)
        pos = 0
        for k in range(n):
            can_id, flags, data = frames[k]
            length = len(data)
            write_header(buf, pos, stamps_us[k], can_id, flags, length)
            pos += HEADER_SIZE
            buf[pos:pos + length] = data
            pos += length
        return bytes(buf)
